//! `kestrel bench policy`: the policy runtime's costs, one JSON line per case (median per call).
//!
//! - `rank`: the default ranker on N offerings, through wasm (the full `WasmRanker::rank`: lowering,
//!   the call, lifting, validation) and natively (`kestrel_default_ranker::rank`);
//! - `compile`: compiling each embedded default component (uncached);
//! - `instantiate`: instantiating from the `InstancePre`;
//! - `swap`: installing a new ranker in a registry (cached compile, canary, swap).
use crate::policy::contract::rank;
use crate::policy::engine::{Limits, PolicyEngine};
use crate::policy::registry::{DefaultBackend, PolicyRegistry, PolicySource, prepare_wasm};
use crate::policy::{PolicyKind, Ranker, WasmRanker, defaults};
use kestrel_policy_sdk::capacity_type::{ON_DEMAND, SPOT};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Offering counts for the rank case.
    #[arg(long, value_delimiter = ',', default_value = "800,4000",
          value_parser = clap::value_parser!(u32).range(1..=MAX_OFFERINGS))]
    offerings: Vec<u32>,
    /// Timed calls per rank case.
    #[arg(long, default_value_t = 2000,
          value_parser = clap::value_parser!(u32).range(1..=MAX_ITERATIONS))]
    iterations: u32,
    /// Time this ranker component instead of the embedded default (its answers are not compared).
    #[arg(long)]
    ranker: Option<std::path::PathBuf>,
}

/// The most offerings one rank case may have (the largest catalogs have a few thousand).
pub const MAX_OFFERINGS: i64 = 100_000;
/// The most timed calls per case.
pub const MAX_ITERATIONS: i64 = 1_000_000;

fn median(mut samples: Vec<Duration>) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    samples[samples.len() / 2].as_secs_f64() * 1e6
}

fn time<T>(n: usize, mut f: impl FnMut() -> T) -> f64 {
    let samples = (0..n)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .collect();
    median(samples)
}

/// A deterministic catalog and rank input with `n` offerings (instance types × 3 zones × {od, spot}).
pub fn synthetic(n: usize) -> (rank::Catalog, rank::RankInput) {
    let types = n.div_ceil(6).max(1);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let families = ["m5", "c5", "r5", "m6g", "c6g", "r6g", "m7i", "c7i"];
    let catalog = rank::Catalog {
        revision: 1,
        label_keys: vec![
            "kubernetes.io/arch".into(),
            "karpenter.k8s.aws/instance-family".into(),
        ],
        label_values: ["amd64", "arm64"]
            .iter()
            .chain(families.iter())
            .map(|s| s.to_string())
            .collect(),
        zones: vec![
            "us-east-1a".into(),
            "us-east-1b".into(),
            "us-east-1c".into(),
        ],
        instance_types: (0..types)
            .map(|i| {
                let f = i % families.len();
                rank::InstanceType {
                    name: format!("{}.{}xlarge", families[f], i),
                    cpu_millis: 2000 * (1 + i as u64 % 16),
                    memory_mib: 8192 * (1 + i as u64 % 16),
                    pods: 58,
                    gpus: 0,
                    labels: vec![(0, u32::from(families[f].contains('g'))), (1, 2 + f as u32)],
                }
            })
            .collect(),
    };
    let mut o = rank::Offerings {
        instance_type: vec![],
        zone: vec![],
        capacity_type: vec![],
        price: vec![],
        interruption: vec![],
        capacity_score: vec![],
        pods_per_node: vec![],
    };
    for i in 0..n {
        let spot = i % 2 == 1;
        o.instance_type.push((i / 6) as u32);
        o.zone.push(((i / 2) % 3) as u32);
        o.capacity_type.push(if spot { SPOT } else { ON_DEMAND });
        let base = 0.05 + next() * 2.0;
        o.price.push(if spot { base * 0.35 } else { base });
        o.interruption
            .push(if spot { next() as f32 * 0.4 } else { 0.0 });
        o.capacity_score
            .push(if spot { next() as f32 } else { -1.0 });
        o.pods_per_node.push(1 + (next() * 30.0) as u32);
    }
    let input = rank::RankInput {
        node_pool: "bench".into(),
        now: 1_700_000_000,
        seed: 7,
        pods: vec![rank::PodShape {
            count: 40,
            cpu_millis: 500,
            memory_mib: 1024,
            gpus: 0,
        }],
        offerings: o,
        min_values: vec![rank::MinValues { key: 1, min: 3 }],
    };
    (catalog, input)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let engine = PolicyEngine::shared();
    let limits = Limits::default();
    let custom = args
        .ranker
        .as_deref()
        .map(super::simulate::read_policy)
        .transpose()?;
    let ranker_bytes = custom.as_deref().unwrap_or(defaults::RANKER_WASM);
    let ranker = prepare_wasm(engine, PolicyKind::Ranker, ranker_bytes, None, &limits)?;
    let iterations = args.iterations as usize;
    for n in args.offerings.iter().map(|&n| n as usize) {
        let (catalog, input) = synthetic(n);
        let mut wasm = WasmRanker::new(ranker.clone(), limits, Arc::default());
        let catalog = Arc::new(catalog);
        wasm.set_catalog(&catalog);
        let check = wasm.rank(&input);
        anyhow::ensure!(
            check.fallback.is_none(),
            "the wasm ranker fell back: {:?}",
            check.fallback
        );
        let native = kestrel_default_ranker::rank(&catalog, &input).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            custom.is_some() || native == check.value,
            "wasm and native rankings differ"
        );
        let warm = iterations / 10 + 1;
        time(warm, || wasm.rank(&input));
        let wasm_us = time(iterations, || wasm.rank(&input));
        time(warm, || kestrel_default_ranker::rank(&catalog, &input));
        let native_us = time(iterations, || {
            kestrel_default_ranker::rank(&catalog, &input)
        });
        // Written by hand to keep the documented key order.
        println!(
            r#"{{"case":"rank","offerings":{n},"wasmMicros":{},"nativeMicros":{},"ratio":{}}}"#,
            round(wasm_us),
            round(native_us),
            round(wasm_us / native_us)
        );
    }
    for kind in PolicyKind::ALL {
        let bytes = defaults::embedded_wasm(kind);
        let compile = time(5, || {
            engine
                .compile_uncached(bytes)
                .expect("the default compiles")
        });
        let compiled = prepare_wasm(engine, kind, bytes, None, &limits)?;
        let instantiate = time(200, || {
            compiled.instantiate_once(&limits).expect("instantiates")
        });
        println!(
            "{}",
            serde_json::json!({"case": "compile", "policy": kind.as_str(), "bytes": bytes.len(), "micros": round(compile)})
        );
        println!(
            "{}",
            serde_json::json!({"case": "instantiate", "policy": kind.as_str(), "micros": round(instantiate)})
        );
    }
    let registry = PolicyRegistry::with(engine.clone(), limits, DefaultBackend::Native);
    let (catalog, _) = synthetic(800);
    registry.ranker("bench").set_catalog(&Arc::new(catalog));
    let swap = time(50, || {
        registry
            .install(
                "bench",
                PolicyKind::Ranker,
                PolicySource::Wasm {
                    bytes: defaults::RANKER_WASM.to_vec(),
                    sha256: None,
                },
            )
            .expect("swap")
    });
    println!(
        "{}",
        serde_json::json!({"case": "swap", "policy": "ranker", "micros": round(swap), "note": "compile cached; includes canary"})
    );
    Ok(())
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
