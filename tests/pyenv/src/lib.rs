//! The Python packages Kestrel's real-server suites run (moto's EC2 and SQS server, Helm's engine
//! through `helm-python-sdk`), each in a venv of its own outside the repository:
//! `$KESTREL_CACHE/<name>-<version>` (default `~/.cache/kestrel`). `.ci/run` installs them; a test on a
//! machine without them installs them itself, so a missing tool is never a reason to skip.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// A pinned Python package and the venv it lives in.
#[derive(Debug, Clone, Copy)]
pub struct Package {
    /// The venv's name (with the version appended), e.g. `moto`.
    pub name: &'static str,
    pub version: &'static str,
    /// What pip installs, with `{version}` replaced, e.g. `moto[server]=={version}`.
    pub requirement: &'static str,
    /// An environment variable naming another interpreter that already has the package.
    pub interpreter_env: &'static str,
}

#[derive(Debug, thiserror::Error)]
#[error("installing {requirement} into {venv}: {detail}")]
pub struct InstallError {
    pub requirement: String,
    pub venv: PathBuf,
    pub detail: String,
}

/// The cache directory of the servers and tools (`KESTREL_CACHE`, else `~/.cache/kestrel`).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("KESTREL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kestrel")))
        .unwrap_or_else(|| PathBuf::from("/tmp/kestrel-cache"))
}

/// The interpreter that has `package`: its override variable, else its cached venv (created on first
/// use; one install at a time within this process, and a venv counts only once its marker is written,
/// so an interrupted install is redone rather than half used).
pub fn python(package: &Package) -> Result<PathBuf, InstallError> {
    if let Some(python) = std::env::var_os(package.interpreter_env) {
        return Ok(PathBuf::from(python));
    }
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let venv = cache_dir().join(format!("{}-{}", package.name, package.version));
    let python = venv.join("bin/python");
    let marker = venv.join(".installed");
    if marker.exists() {
        return Ok(python);
    }
    let requirement = package.requirement.replace("{version}", package.version);
    let error = |detail: String| InstallError {
        requirement: requirement.clone(),
        venv: venv.clone(),
        detail,
    };
    let run = |cmd: &mut Command| -> Result<(), InstallError> {
        let status = cmd.status().map_err(|e| error(format!("{cmd:?}: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(error(format!("{cmd:?} exited with {status}")))
        }
    };
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet"])
        .arg(&requirement))?;
    std::fs::write(&marker, package.version).map_err(|e| error(e.to_string()))?;
    Ok(python)
}

/// moto, the EC2 + SQS server of the AWS suites (its behaviour changes between releases).
pub const MOTO: Package = Package {
    name: "moto",
    version: "5.2.5",
    requirement: "moto[server]=={version}",
    interpreter_env: "KESTREL_MOTO_PYTHON",
};

/// Helm v4's engine as a library (no registry here ships the `helm` command).
pub const HELM: Package = Package {
    name: "helm-python",
    version: "0.2.2",
    requirement: "helm-python-sdk=={version}",
    interpreter_env: "KESTREL_HELM_PYTHON",
};
