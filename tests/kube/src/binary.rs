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
