//! The `kestrel` binary the process suites run: `KESTREL_BIN` (what `.ci/run` builds), else built
//! here (incrementally, with the AWS adapter) into the calling test's target dir.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::Result;

/// The repository's root.
fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The path of the binary (built once per test process).
pub fn kestrel() -> Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("KESTREL_BIN") {
            return Ok(PathBuf::from(bin));
        }
        // target/debug/deps/<test>-HASH -> target
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let target = exe
            .ancestors()
            .nth(3)
            .ok_or("the test binary is not in a target dir")?
            .to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "-p",
                "kestrel",
                "--bin",
                "kestrel",
                "--features",
                "aws",
                "--target-dir",
            ])
            .arg(&target)
            .current_dir(repo_root())
            .status()
            .map_err(|e| format!("running cargo: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build -p kestrel --features aws: {status}"));
        }
        Ok(target.join("debug/kestrel"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// A `kestrel` process under test: SIGKILLed (and reaped) on drop or [`Process::kill`].
pub struct Process {
    child: std::sync::Mutex<std::process::Child>,
}

impl Process {
    /// Spawns `command` (the caller sets its arguments, environment and log).
    pub fn spawn(mut command: Command) -> Result<Process> {
        let child = command
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting kestrel: {e}"))?;
        Ok(Process {
            child: std::sync::Mutex::new(child),
        })
    }

    /// SIGKILL: no shutdown, nothing in flight finishes.
    pub fn kill(self) -> Result<()> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.lock().unwrap_or_else(|p| p.into_inner()).id()
    }

    /// The process's resident memory now and at its peak (`VmRSS`, `VmHWM` of `/proc/PID/status`).
    pub fn memory(&self) -> Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.id()))?;
        let kib = |field: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{}/status", self.id()))
        };
        Ok(Memory {
            rss_kib: kib("VmRSS:")?,
            peak_kib: kib("VmHWM:")?,
        })
    }

    /// An error once the process has exited.
    pub fn check_alive(&self) -> Result<()> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("kestrel exited: {status}");
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        if child.try_wait().ok().flatten().is_none() {
            if let Err(err) = child.kill() {
                eprintln!("killing kestrel: {err}");
            }
            if let Err(err) = child.wait() {
                eprintln!("waiting for kestrel: {err}");
            }
        }
    }
}

/// A process's resident memory (KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub rss_kib: u64,
    /// The high-water mark since the process started.
    pub peak_kib: u64,
}

/// `GET path` on a loopback port (HTTP/1.0: the server closes the connection after the answer): the
/// status code and the body.
pub fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("not an HTTP answer: {answer:?}"))?;
    let status = head
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1)?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not an HTTP status line: {head:?}"))?;
    Ok((status, body.to_string()))
}
