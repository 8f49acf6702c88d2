//! `kestrel bench sim`: how fast the simulator replays, one JSON line per case.
//!
//! - `diurnal-24h`: a 24-hour day with more than 10,000 pod events (two diurnal Deployments re-targeted
//!   every minute and a stream of short Jobs), with disruption on (the default controller) and off;
//! - `5000-nodes-50000-pods`: 50,000 pods that need 5,000 nodes; the peak RSS (VmHWM) of the process,
//!   so run it alone (`--case big`) for a clean figure.
use std::time::Instant;

use crate::sim::replay::{SimOptions, SimOutcome, simulate};
use crate::sim::report::Report;
use crate::sim::scenario::Scenario;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Case {
    /// The 24-hour diurnal day, disruption on and off.
    Diurnal,
    /// 5,000 nodes and 50,000 pods, with the peak RSS.
    Big,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which cases to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "diurnal,big")]
    case: Vec<Case>,
}

/// A 24-hour day with more than 10,000 pod events: two diurnal Deployments re-targeted every minute
/// and a stream of short Jobs.
pub const BUSY_DAY: &str = r#"
name: busy-day
duration: 24h
seed: 9
nodePools:
  - apiVersion: karpenter.sh/v1
    kind: NodePool
    metadata: {name: general}
    spec:
      template:
        spec:
          nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
          requirements:
            - {key: karpenter.k8s.aws/instance-category, operator: In, values: [c, m, r]}
workloads:
  - name: web
    kind: Deployment
    diurnal: {min: 100, max: 2000, peakAt: 14h, every: 1m}
    template:
      spec:
        containers:
          - name: web
            resources: {requests: {cpu: 250m, memory: 512Mi}}
  - name: api
    kind: Deployment
    diurnal: {min: 50, max: 800, peakAt: 18h, every: 1m}
    template:
      spec:
        containers:
          - name: api
            resources: {requests: {cpu: "1", memory: 2Gi}}
  - name: jobs
    kind: Job
    at: 1h
    completions: 3000
    parallelism: 100
    runFor: {min: 2m, max: 6m}
    template:
      spec:
        containers:
          - name: job
            resources: {requests: {cpu: 500m, memory: 1Gi}}
"#;

/// One Deployment of 50,000 pods that needs about 5,000 nodes.
pub const BIG: &str = r#"
name: big
duration: 20m
cloud:
  instanceTypes: [m5.4xlarge]
nodePools:
  - apiVersion: karpenter.sh/v1
    kind: NodePool
    metadata: {name: big}
    spec:
      template:
        spec:
          nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
          requirements:
            - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
workloads:
  - name: app
    kind: Deployment
    replicas: 50000
    template:
      spec:
        containers:
          - name: app
            resources: {requests: {cpu: 1500m, memory: 4Gi}}
"#;

/// Pod events of a replay: creations plus deletions (scale-downs, completions, evictions).
pub fn pod_events(outcome: &SimOutcome) -> u64 {
    outcome.pods_created * 2 - outcome.cluster.pod_count() as u64
}

/// The process's peak resident set (VmHWM) in MiB, where /proc says it.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn diurnal(disruption: bool) -> anyhow::Result<serde_json::Value> {
    let scenario = Scenario::parse(BUSY_DAY, "busy-day.yaml")?;
    let options = if disruption {
        SimOptions::default()
    } else {
        SimOptions {
            disruption: Some(Box::new(crate::controller::NoDisruption)),
            ..SimOptions::default()
        }
    };
    let started = Instant::now();
    let outcome = simulate(&scenario, options, &mut |_| {});
    let seconds = started.elapsed().as_secs_f64();
    let report = Report::from_outcome(&outcome);
    Ok(serde_json::json!({
        "case": "diurnal-24h",
        "disruption": disruption,
        "podEvents": pod_events(&outcome),
        "batches": outcome.controller.stats.batches,
        "nodesLaunched": report.nodes_launched,
        "seconds": (seconds * 1000.0).round() / 1000.0,
    }))
}

fn big() -> anyhow::Result<serde_json::Value> {
    let scenario = Scenario::parse(BIG, "big.yaml")?;
    let started = Instant::now();
    let outcome = simulate(&scenario, SimOptions::default(), &mut |_| {});
    let seconds = started.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "case": "5000-nodes-50000-pods",
        "peakNodes": outcome.peak_nodes,
        "podsBound": outcome.binds.len(),
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "peakRssMiB": peak_rss_mib().map(|m| m.round()),
    }))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    for case in &args.case {
        match case {
            Case::Diurnal => {
                for disruption in [true, false] {
                    println!("{}", diurnal(disruption)?);
                }
            }
            Case::Big => println!("{}", big()?),
        }
    }
    Ok(())
}
