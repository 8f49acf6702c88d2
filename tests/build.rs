//! Builds the test policies (tests/policies/*) to wasm components with the same builder as the host
//! (`host/policy/src/build_component.rs`), into OUT_DIR; the sandbox tests `include_bytes!` them.
#[path = "../host/policy/src/build_component.rs"]
#[allow(dead_code)]
mod build_component;

use std::path::PathBuf;

fn main() {
    let tests_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = tests_dir
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    for path in ["tests/policies", "sdk", "wit"] {
        println!("cargo:rerun-if-changed=../{path}");
    }
    println!("cargo:rerun-if-changed=../host/policy/src/build_component.rs");
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .unwrap_or(&out_dir)
        .join("wasm-test-policies");
    for name in ["misbehaving", "generous-budgeter", "business-hours"] {
        let bytes = build_component::build_component(&root.join("tests/policies").join(name), &target_dir, &root)
            .unwrap_or_else(|e| {
                panic!(
                    "building the test policy tests/policies/{name}: {e}\n(the policy sandbox tests need real wasm: `rustup target add {}`)",
                    build_component::WASM_TARGET
                )
            });
        std::fs::write(out_dir.join(format!("{name}.wasm")), bytes).expect("write to OUT_DIR");
    }
}
