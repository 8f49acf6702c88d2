//! The moto harness Kestrel's AWS suites share: [`MotoServer`] starts moto's own server app behind the
//! fault layer (`moto/fault_server.py`) on a free loopback port, arms and clears faults over its
//! control endpoint, and kills it on drop. Each test starts its own server, so faults and state never
//! leak between tests running in parallel.
//!
//! moto is installed into a venv outside the repository by `kestrel_test_pyenv` (`.ci/run` or, when
//! absent, the harness itself); `KESTREL_MOTO_PYTHON` names another interpreter that has it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The moto version the suites are written against (its behaviour changes between releases).
pub const MOTO_VERSION: &str = kestrel_test_pyenv::MOTO.version;

/// The trust policy of a node role: EC2 may assume it (what the node roles of the suites are made with).
pub const EC2_TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// How long a cold server may take to print its port (2 cores shared with compilers).
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(transparent)]
    Install(#[from] kestrel_test_pyenv::InstallError),
    #[error("starting the fault server: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the fault server did not report its port within {0:?}: {1}")]
    Start(Duration, String),
    #[error("control request to the fault server: {0}")]
    Control(#[source] std::io::Error),
    #[error("the fault server answered {status}: {body}")]
    ControlStatus { status: String, body: String },
    #[error("the fault server's control answer is not JSON: {0}")]
    ControlJson(#[from] serde_json::Error),
}

/// A running moto server with the fault layer in front; killed on drop.
pub struct MotoServer {
    child: Child,
    port: u16,
}

impl MotoServer {
    /// Starts a fresh server (installing moto first if this machine has none).
    pub fn start() -> Result<MotoServer, HarnessError> {
        let python = kestrel_test_pyenv::python(&kestrel_test_pyenv::MOTO)?;
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("moto/fault_server.py");
        let mut child = Command::new(python)
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(HarnessError::Spawn)?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            // The receiver may have timed out and gone; nothing to report to then.
            tx.send(read).ok();
        });
        let port = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line
                .trim()
                .strip_prefix("PORT ")
                .and_then(|p| p.parse().ok()),
            Ok(Err(e)) => return Err(kill_with(child, HarnessError::Spawn(e))),
            Err(_) => None,
        };
        let Some(port) = port else {
            let error = HarnessError::Start(START_TIMEOUT, "no `PORT <n>` line".into());
            return Err(kill_with(child, error));
        };
        Ok(MotoServer { child, port })
    }

    /// The endpoint URL to give the SDK (what `AWS_ENDPOINT_URL` would say).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Adds fault rules (`{"errors": [...], "ice": [...]}`, see `fault_server.py`).
    pub fn arm(&self, rules: serde_json::Value) -> Result<serde_json::Value, HarnessError> {
        self.control("POST", &rules.to_string())
    }

    /// Removes every fault rule.
    pub fn clear(&self) -> Result<(), HarnessError> {
        self.control("DELETE", "").map(|_| ())
    }

    /// How many calls of an API action reached the server (faulted ones included).
    pub fn calls(&self, action: &str) -> Result<u64, HarnessError> {
        let state = self.control("GET", "")?;
        Ok(state["calls"][action].as_u64().unwrap_or(0))
    }

    /// The parameters of the last call of an API action that reached the server (query protocol:
    /// the form fields, `LaunchTemplateConfigs.1.Overrides.2.InstanceType` and so on).
    pub fn last_request(
        &self,
        action: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, HarnessError> {
        let state = self.control("GET", "")?;
        Ok(serde_json::from_value(state["last"][action].clone()).unwrap_or_default())
    }

    fn control(&self, method: &str, body: &str) -> Result<serde_json::Value, HarnessError> {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.port)).map_err(HarnessError::Control)?;
        write!(
            stream,
            "{method} /_faults HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .map_err(HarnessError::Control)?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .map_err(HarnessError::Control)?;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head.lines().next().unwrap_or_default().to_string();
        if !status.contains(" 200 ") {
            return Err(HarnessError::ControlStatus {
                status,
                body: body.to_string(),
            });
        }
        Ok(serde_json::from_str(body)?)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // A server that already exited has nothing to kill; either way it must be reaped.
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn kill_with(mut child: Child, error: HarnessError) -> HarnessError {
    child.kill().ok();
    child.wait().ok();
    error
}
