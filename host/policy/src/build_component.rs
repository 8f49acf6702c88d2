//! Builds a policy crate into a wasm component: `cargo build --target wasm32-unknown-unknown --release`,
//! then componentizing with `wit-component` (no WASI adapter: a policy imports nothing).
//!
//! Shared by `host/build.rs` (the default policies, embedded in the binary), `kestrel policy build` and the
//! test build script, so that what the docs tell authors to run is exactly what the project itself runs.
//! This file is included by build scripts with `#[path]`: it depends only on std, `serde_json` and
//! `wit-component`.
use std::path::{Path, PathBuf};
use std::process::Command;

pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Why a policy crate could not be built into a component.
#[derive(Debug)]
pub enum BuildError {
    /// The Rust target is not installed for the toolchain in use.
    TargetMissing,
    /// `cargo` could not be started or failed.
    Cargo { crate_dir: PathBuf, detail: String },
    /// The build produced no `.wasm` (e.g. the crate is not a `cdylib`).
    NoArtifact { crate_dir: PathBuf },
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `wit-component` refused the module (missing bindings, unexpected imports such as WASI, ...).
    Componentize { detail: String },
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::TargetMissing => write!(
                f,
                "the Rust target {WASM_TARGET} is not installed; install it with `rustup target add {WASM_TARGET}`"
            ),
            BuildError::Cargo { crate_dir, detail } => {
                write!(f, "cargo build of {} failed: {detail}", crate_dir.display())
            }
            BuildError::NoArtifact { crate_dir } => write!(
                f,
                "building {} produced no .wasm file: is the crate a `cdylib` (`[lib] crate-type = [\"cdylib\"]`)?",
                crate_dir.display()
            ),
            BuildError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            BuildError::Componentize { detail } => {
                write!(f, "componentizing the module failed: {detail}")
            }
        }
    }
}

impl std::error::Error for BuildError {}

/// Whether the `wasm32-unknown-unknown` standard library is installed for `rustc`.
pub fn wasm_target_installed(rustc: &Path) -> bool {
    let Ok(out) = Command::new(rustc).arg("--print").arg("sysroot").output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(WASM_TARGET)
        .join("lib")
        .is_dir()
}

/// The `rustc` and `cargo` a build should use: those of the running cargo when called from a build
/// script, else the ones on `PATH`.
pub fn toolchain() -> (PathBuf, PathBuf) {
    let get = |var: &str, default: &str| {
        std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
    };
    (get("RUSTC", "rustc"), get("CARGO", "cargo"))
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

/// Build settings that make the output independent of the environment: a release build with LTO, one
/// codegen unit, no debug info, symbols stripped, and source paths remapped so the bytes do not depend
/// on where the repository or `CARGO_HOME` live.
fn reproducible_command(cargo: &Path, source_root: &Path) -> Command {
    let mut cmd = Command::new(cargo);
    // Settings a parent cargo (when called from a build script) or the user's shell would leak into the
    // build. CARGO_HOME, RUSTC, RUSTUP_TOOLCHAIN and the jobserver (CARGO_MAKEFLAGS) are kept.
    let keep = ["CARGO_HOME", "CARGO_MAKEFLAGS"];
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let leaks = (key.starts_with("CARGO_") && !keep.contains(&key))
            || key.starts_with("RUSTC_")
            || key.starts_with("DEP_")
            || [
                "RUSTFLAGS",
                "RUSTDOCFLAGS",
                "TARGET",
                "HOST",
                "OUT_DIR",
                "PROFILE",
                "OPT_LEVEL",
                "DEBUG",
                "NUM_JOBS",
            ]
            .contains(&key);
        if leaks {
            cmd.env_remove(key);
        }
    }
    let mut flags = vec![format!(
        "--remap-path-prefix={}=/kestrel",
        source_root.display()
    )];
    if let Some(home) = cargo_home() {
        flags.push(format!("--remap-path-prefix={}=/cargo", home.display()));
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    for (key, value) in [
        ("CARGO_PROFILE_RELEASE_OPT_LEVEL", "3"),
        ("CARGO_PROFILE_RELEASE_DEBUG", "false"),
        ("CARGO_PROFILE_RELEASE_STRIP", "symbols"),
        ("CARGO_PROFILE_RELEASE_LTO", "true"),
        ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1"),
        ("CARGO_PROFILE_RELEASE_PANIC", "abort"),
        ("CARGO_PROFILE_RELEASE_INCREMENTAL", "false"),
        ("CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS", "false"),
        ("CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS", "false"),
    ] {
        cmd.env(key, value);
    }
    cmd
}

/// Compiles the `cdylib` crate at `crate_dir` to a core wasm module; returns the module's path.
///
/// `source_root` is remapped to `/kestrel` in the output (use the repository root, or the crate dir).
pub fn build_core_module(
    crate_dir: &Path,
    target_dir: &Path,
    source_root: &Path,
) -> Result<PathBuf, BuildError> {
    let (rustc, cargo) = toolchain();
    if !wasm_target_installed(&rustc) {
        return Err(BuildError::TargetMissing);
    }
    let manifest = crate_dir.join("Cargo.toml");
    let output = reproducible_command(&cargo, source_root)
        .arg("build")
        .arg("--release")
        .arg("--lib")
        .arg("--target")
        .arg(WASM_TARGET)
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .arg("--message-format=json-render-diagnostics")
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| BuildError::Cargo {
            crate_dir: crate_dir.into(),
            detail: format!("cannot run cargo: {e}"),
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(BuildError::Cargo {
            crate_dir: crate_dir.into(),
            detail: tail.join("\n"),
        });
    }
    // The last artifact listed for the crate itself is its cdylib.
    let mut wasm = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let manifest_matches = msg["manifest_path"]
            .as_str()
            .is_some_and(|m| Path::new(m).canonicalize().ok() == manifest.canonicalize().ok());
        if !manifest_matches {
            continue;
        }
        if let Some(files) = msg["filenames"].as_array() {
            for f in files.iter().filter_map(|f| f.as_str()) {
                if f.ends_with(".wasm") {
                    wasm = Some(PathBuf::from(f));
                }
            }
        }
    }
    wasm.ok_or_else(|| BuildError::NoArtifact {
        crate_dir: crate_dir.into(),
    })
}

/// Turns a core module built with the SDK's bindings into a component (no adapter, no WASI).
pub fn componentize(module: &[u8]) -> Result<Vec<u8>, BuildError> {
    let mut encoder = wit_component::ComponentEncoder::default();
    encoder.validate(true);
    encoder
        .module(module)
        .and_then(|e| e.encode())
        .map_err(|e| BuildError::Componentize {
            detail: format!("{e:#}"),
        })
}

/// Builds `crate_dir` and componentizes it.
pub fn build_component(
    crate_dir: &Path,
    target_dir: &Path,
    source_root: &Path,
) -> Result<Vec<u8>, BuildError> {
    let module = build_core_module(crate_dir, target_dir, source_root)?;
    let bytes = std::fs::read(&module).map_err(|source| BuildError::Io {
        path: module.clone(),
        source,
    })?;
    componentize(&bytes)
}
