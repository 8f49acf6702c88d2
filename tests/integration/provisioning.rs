//! Integration tests: provisioning (owner: provisioning). Runs the packing benchmark files and checks the
//! cost goals: ≤ 1.03× the exact optimum where the file gives one, ≤ 1.10× the fluid bound elsewhere.
use std::path::PathBuf;
use std::sync::Arc;

use kestrel::cli::bench_pack::{bench_one, load_workload};
use kestrel::model::Catalog;
use kestrel::policy::PolicyRegistry;
use kestrel::provisioning::RegistryRankers;

fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../host/data/bench")
}

#[test]
fn bench_workloads_meet_the_cost_goals() {
    let catalog = Arc::new(Catalog::ec2_on_demand(&["us-east-1a"]).unwrap());
    let mut files: Vec<PathBuf> = std::fs::read_dir(bench_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "bench files missing: {files:?}");
    // The native default ranker (the wasm default runs the same logic; `kestrel bench pack` uses it).
    let registry = Arc::new(PolicyRegistry::native());
    for file in files {
        let (workload, snapshot) = load_workload(&file, catalog.clone()).unwrap();
        let mut rankers = RegistryRankers::new(registry.clone());
        let r = bench_one(&workload, &snapshot, &mut rankers);
        assert_eq!(r.unschedulable, 0, "{}", r.workload);
        assert!(
            r.ratio >= 1.0 - 1e-9,
            "{}: below the lower bound?! {r:?}",
            r.workload
        );
        match r.ratio_to_exact {
            Some(x) => assert!(x <= 1.03, "{}: {x} × exact optimum", r.workload),
            None => assert!(r.ratio <= 1.10, "{}: {} × fluid bound", r.workload, r.ratio),
        }
    }
}
