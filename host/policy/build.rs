//! Builds the default policies (policies/{ranker,consolidator,budgeter}) to wasm components and embeds
//! them (`include_bytes!` from OUT_DIR, see `src/defaults.rs`).
//!
//! On a machine without the `wasm32-unknown-unknown` target the committed components in
//! `policies/prebuilt/` are embedded instead, with a warning; `kestrel policy verify-prebuilt` (run by CI)
//! proves those equal a fresh build byte for byte. `KESTREL_USE_PREBUILT_POLICIES=1` forces them.
#[path = "src/build_component.rs"]
#[allow(dead_code)]
mod build_component;

use std::path::{Path, PathBuf};

const POLICIES: [&str; 3] = ["ranker", "consolidator", "budgeter"];

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("host/policy/ is two levels below the workspace root")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    // Relative to host/policy/ (cargo resolves them against the package being built), so that a target dir
    // shared by several clones checks the files of the clone being built.
    for path in [
        "policies/ranker",
        "policies/consolidator",
        "policies/budgeter",
        "policies/prebuilt",
        "sdk",
        "wit",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed=../../{path}");
    }
    println!("cargo:rerun-if-changed=src/build_component.rs");
    println!("cargo:rerun-if-env-changed=KESTREL_USE_PREBUILT_POLICIES");

    let (rustc, _) = build_component::toolchain();
    let forced = std::env::var_os("KESTREL_USE_PREBUILT_POLICIES").is_some_and(|v| v == "1");
    let source = if forced {
        "prebuilt"
    } else if !build_component::wasm_target_installed(&rustc) {
        println!(
            "cargo:warning=the Rust target {} is not installed: embedding the committed default policies from policies/prebuilt/. Install it with `rustup target add {}` to build them from source.",
            build_component::WASM_TARGET,
            build_component::WASM_TARGET
        );
        "prebuilt"
    } else {
        "source"
    };
    // <target>/<profile>/build/<pkg>/out -> <target>/wasm-policies, shared by every profile.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .unwrap_or(&out_dir)
        .join("wasm-policies");
    for name in POLICIES {
        let bytes = if source == "source" {
            build_component::build_component(&root.join("policies").join(name), &target_dir, &root)
                .unwrap_or_else(|e| panic!("building the default {name} policy: {e}"))
        } else {
            read(&root.join("policies/prebuilt").join(format!("{name}.wasm")))
        };
        let out = out_dir.join(format!("default-{name}.wasm"));
        std::fs::write(&out, bytes).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    }
    println!("cargo:rustc-env=KESTREL_DEFAULT_POLICIES_FROM={source}");
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
