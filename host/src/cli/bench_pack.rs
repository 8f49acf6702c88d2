//! `kestrel bench pack FILE...`: plan each benchmark workload (host/data/bench format) and print one JSON
//! line with its cost against the file's lower bound and beside Karpenter's greedy in the same run, then
//! one summary line over the workloads with a proven optimum (how many Kestrel and the greedy meet, the
//! worst and mean ratios) and one over the others (ratios to the fluid bound).
//!
//! The ranker is the embedded wasm default ranker (in its sandbox, as in production); `--native` uses
//! the same default compiled in.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Deserialize;

use std::collections::BTreeMap;

use crate::model::{
    Catalog, NodePool, Pod, PodSpec, Quantity, Requirement, ResourceList, Snapshot, labels,
};
use crate::policy::PolicyRegistry;
use crate::provisioning::{self, RegistryRankers};
use crate::scheduling::exact;
use crate::scheduling::packer::BinType;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Workload files (JSON, see host/data/bench/README.md).
    #[arg(required_unless_present_any = ["karpenter_mix", "anti_affinity"])]
    pub files: Vec<PathBuf>,
    /// Also plan Karpenter's benchmark mix (`makeDiversePods`) at these pod counts, over the whole
    /// embedded catalog in three zones, beside a Karpenter-style greedy; every constraint is checked.
    #[arg(long, value_delimiter = ',')]
    pub karpenter_mix: Vec<usize>,
    /// Also plan this many replicas with required hostname anti-affinity among them (each needs its
    /// own node), per count: the decision time per replica.
    #[arg(long, value_delimiter = ',')]
    pub anti_affinity: Vec<usize>,
    /// Rank with the natively compiled default ranker instead of the wasm one.
    #[arg(long)]
    pub native: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    pub name: String,
    #[serde(default)]
    pub node_pool: WorkloadPool,
    pub pods: Vec<WorkloadPods>,
    pub lower_bound: LowerBound,
}

#[derive(Debug, Default, Deserialize)]
pub struct WorkloadPool {
    #[serde(default)]
    pub requirements: Vec<WorkloadRequirement>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
    pub min_values: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub struct WorkloadPods {
    pub name: String,
    pub count: usize,
    pub requests: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LowerBound {
    pub fluid_lp_usd_per_hour: f64,
    pub exact_optimum_usd_per_hour: Option<f64>,
}

/// One workload's result.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackResult {
    pub workload: String,
    pub cost_usd_per_hour: f64,
    pub nodes: usize,
    pub lower_bound_usd_per_hour: f64,
    pub ratio: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_optimum_usd_per_hour: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_exact: Option<f64>,
    pub unschedulable: usize,
    /// Karpenter's greedy on the same workload (largest pod first, each joins the first open claim
    /// that still fits, else opens the cheapest type that fits; each claim is bought as the cheapest
    /// type that holds it).
    pub greedy_usd_per_hour: f64,
    pub greedy_nodes: usize,
    pub ratio_to_greedy: f64,
    pub seconds: f64,
    pub pods_per_second: f64,
    pub ranker: String,
}

/// Reads a workload file into a snapshot (one NodePool, pending pods) over `catalog`.
pub fn load_workload(
    path: &std::path::Path,
    catalog: Arc<Catalog>,
) -> anyhow::Result<(Workload, Snapshot)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let workload: Workload =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut pool = NodePool::new("default");
    for (i, r) in workload.node_pool.requirements.iter().enumerate() {
        let mut req = Requirement::parse(&r.key, &r.operator, &r.values)
            .with_context(|| format!("{}: nodePool.requirements[{i}]", path.display()))?;
        if let Some(m) = r.min_values {
            req = req.with_min_values(m).with_context(|| {
                format!("{}: nodePool.requirements[{i}].minValues", path.display())
            })?;
        }
        pool.requirements.push(req);
    }
    let mut snapshot = Snapshot::new(0, catalog);
    snapshot.node_pools.push(pool);
    for (i, group) in workload.pods.iter().enumerate() {
        let requests =
            ResourceList::parse(group.requests.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .with_context(|| format!("{}: pods[{i}].requests", path.display()))?;
        let mut spec = PodSpec::with_requests("default", requests);
        spec.labels.insert("app".into(), group.name.clone());
        spec.requests.pods = Quantity::from_units(1);
        snapshot
            .pods
            .extend(Pod::replicas(&group.name, Arc::new(spec), group.count));
    }
    Ok((workload, snapshot))
}

/// Plans one workload with the given ranker provider and measures the decision time.
pub fn bench_one(
    workload: &Workload,
    snapshot: &Snapshot,
    rankers: &mut dyn provisioning::RankerProvider,
) -> PackResult {
    let started = Instant::now();
    let plan = provisioning::plan(snapshot, rankers);
    let seconds = started.elapsed().as_secs_f64();
    let cost = plan.cost_per_hour();
    let pods = snapshot.pods.len();
    let (greedy, greedy_nodes) = karpenter_greedy(snapshot);
    PackResult {
        workload: workload.name.clone(),
        cost_usd_per_hour: round(cost, 6),
        nodes: plan.claims.len(),
        lower_bound_usd_per_hour: workload.lower_bound.fluid_lp_usd_per_hour,
        ratio: round(cost / workload.lower_bound.fluid_lp_usd_per_hour, 4),
        exact_optimum_usd_per_hour: workload.lower_bound.exact_optimum_usd_per_hour,
        ratio_to_exact: workload
            .lower_bound
            .exact_optimum_usd_per_hour
            .map(|e| round(cost / e, 4)),
        unschedulable: plan.unschedulable.len(),
        greedy_usd_per_hour: round(greedy, 6),
        greedy_nodes,
        ratio_to_greedy: round(cost / greedy, 4),
        seconds: round(seconds, 6),
        pods_per_second: round(pods as f64 / seconds.max(1e-9), 1),
        ranker: plan
            .rankings
            .first()
            .map(|r| r.decided_by.clone())
            .unwrap_or_default(),
    }
}

/// Karpenter's greedy over the workload's NodePool and the catalog (prices as costs), for comparison.
pub fn karpenter_greedy(snapshot: &Snapshot) -> (f64, usize) {
    let catalog = &snapshot.catalog;
    let pool = &snapshot.node_pools[0];
    let reqs = pool.compiled_requirements();
    let dims = ["cpu", "memory", "pods"];
    let vector = |r: &ResourceList| -> Vec<u64> {
        dims.iter()
            .map(|d| r.get(d).millis().max(0) as u64)
            .collect()
    };
    let mut bins: Vec<BinType> = Vec::new();
    for o in &catalog.offerings {
        let mut labels = catalog.offering_labels(o);
        labels.insert(labels::NODE_POOL.into(), pool.name.clone());
        if reqs.allows_labels(&labels) {
            bins.push(BinType {
                capacity: vector(&catalog.instance_types[o.instance_type].allocatable),
                cost: o.price,
            });
        }
    }
    let mut shapes: BTreeMap<Vec<u64>, u32> = BTreeMap::new();
    for p in &snapshot.pods {
        *shapes.entry(vector(&p.spec.requests)).or_default() += 1;
    }
    let items: Vec<exact::Item> = shapes
        .into_iter()
        .map(|(demand, count)| exact::Item {
            allowed: (0..bins.len())
                .filter(|&b| demand.iter().zip(&bins[b].capacity).all(|(d, c)| d <= c))
                .collect(),
            demand,
            count,
        })
        .collect();
    let (nodes, _) = exact::first_fit(&items, &bins);
    (exact::cost(&nodes, &bins), nodes.len())
}

/// Ratios over a set of workloads: how many at 1 (within 1e-6), the worst and the mean.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RatioSummary {
    pub at_bound: usize,
    pub worst: f64,
    pub mean: f64,
}

fn summarise(ratios: &[f64]) -> RatioSummary {
    RatioSummary {
        at_bound: ratios.iter().filter(|r| **r <= 1.0 + 1e-6).count(),
        worst: round(ratios.iter().cloned().fold(0.0, f64::max), 4),
        mean: round(ratios.iter().sum::<f64>() / ratios.len().max(1) as f64, 4),
    }
}

/// The summary lines: workloads with a proven optimum (ratios to it), the others (to the fluid bound).
pub fn summary(results: &[PackResult]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let exact: Vec<&PackResult> = results
        .iter()
        .filter(|r| r.exact_optimum_usd_per_hour.is_some())
        .collect();
    if !exact.is_empty() {
        let kestrel: Vec<f64> = exact.iter().filter_map(|r| r.ratio_to_exact).collect();
        let greedy: Vec<f64> = exact
            .iter()
            .map(|r| r.greedy_usd_per_hour / r.exact_optimum_usd_per_hour.expect("filtered"))
            .collect();
        out.push(serde_json::json!({
            "summary": "workloads with a proven optimum (ratio to it)",
            "workloads": exact.len(),
            "kestrel": summarise(&kestrel),
            "greedy": summarise(&greedy),
            "kestrelDearerThanGreedy": exact.iter().filter(|r| r.cost_usd_per_hour > r.greedy_usd_per_hour + 1e-9).count(),
            "slowestSeconds": exact.iter().map(|r| r.seconds).fold(0.0, f64::max),
        }));
    }
    let others: Vec<&PackResult> = results
        .iter()
        .filter(|r| r.exact_optimum_usd_per_hour.is_none())
        .collect();
    if !others.is_empty() {
        let kestrel: Vec<f64> = others.iter().map(|r| r.ratio).collect();
        let greedy: Vec<f64> = others
            .iter()
            .map(|r| r.greedy_usd_per_hour / r.lower_bound_usd_per_hour)
            .collect();
        out.push(serde_json::json!({
            "summary": "other workloads (ratio to the fluid LP bound)",
            "workloads": others.len(),
            "kestrel": summarise(&kestrel),
            "greedy": summarise(&greedy),
            "kestrelDearerThanGreedy": others.iter().filter(|r| r.cost_usd_per_hour > r.greedy_usd_per_hour + 1e-9).count(),
        }));
    }
    out
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let catalog =
        Arc::new(Catalog::ec2_on_demand(&["us-east-1a"]).context("loading the embedded catalog")?);
    let registry = Arc::new(if args.native {
        PolicyRegistry::native()
    } else {
        PolicyRegistry::new()
    });
    let mut failed = false;
    let mut results = Vec::new();
    for file in &args.files {
        match load_workload(file, catalog.clone()) {
            Ok((workload, snapshot)) => {
                // A fresh provider per file, primed before timing (catalog loading and compiling the
                // policy are excluded).
                let mut rankers = RegistryRankers::new(registry.clone());
                let _ = provisioning::RankerProvider::ranker_for(
                    &mut rankers,
                    &snapshot.node_pools[0],
                    &catalog,
                );
                let result = bench_one(&workload, &snapshot, &mut rankers);
                println!("{}", serde_json::to_string(&result)?);
                results.push(result);
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                failed = true;
            }
        }
    }
    for line in summary(&results) {
        println!("{line}");
    }
    if !args.karpenter_mix.is_empty() || !args.anti_affinity.is_empty() {
        let zones = Arc::new(
            Catalog::ec2_on_demand(&["us-east-1a", "us-east-1b", "us-east-1c"])
                .context("loading the embedded catalog")?,
        );
        for &count in &args.karpenter_mix {
            let mut rankers = RegistryRankers::new(registry.clone());
            let pool = super::bench_mix::snapshot(zones.clone(), 0)?.node_pools[0].clone();
            let _ = provisioning::RankerProvider::ranker_for(&mut rankers, &pool, &zones);
            println!(
                "{}",
                super::bench_mix::bench(zones.clone(), count, &mut rankers)?
            );
        }
        for &replicas in &args.anti_affinity {
            let mut rankers = RegistryRankers::new(registry.clone());
            let pool = super::bench_mix::snapshot(zones.clone(), 0)?.node_pools[0].clone();
            let _ = provisioning::RankerProvider::ranker_for(&mut rankers, &pool, &zones);
            println!(
                "{}",
                super::bench_mix::bench_anti_affinity(zones.clone(), replicas, &mut rankers)?
            );
        }
    }
    if failed {
        bail!("some workloads could not be read");
    }
    Ok(())
}
