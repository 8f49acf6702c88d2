//! `kestrel bench pack FILE...`: plan each benchmark workload (host/data/bench format) and print one JSON
//! line with its cost against the file's lower bound.
//!
//! The ranker is the embedded wasm default ranker (in its sandbox, as in production); `--native` uses
//! the same default compiled in.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::model::{
    Catalog, NodePool, Pod, PodSpec, Quantity, Requirement, ResourceList, Snapshot,
};
use crate::policy::PolicyRegistry;
use crate::provisioning::{self, RegistryRankers};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Workload files (JSON, see host/data/bench/README.md).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
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
        seconds: round(seconds, 6),
        pods_per_second: round(pods as f64 / seconds.max(1e-9), 1),
        ranker: plan
            .rankings
            .first()
            .map(|r| r.decided_by.clone())
            .unwrap_or_default(),
    }
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
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                failed = true;
            }
        }
    }
    if failed {
        bail!("some workloads could not be read");
    }
    Ok(())
}
