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
