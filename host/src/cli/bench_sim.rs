//! `kestrel bench sim`: how fast the simulator replays, one JSON line per case.
//!
//! - `diurnal-24h`: a 24-hour day with more than 10,000 pod events (two diurnal Deployments re-targeted
//!   every minute and a stream of short Jobs), with disruption on (the default controller) and off;
//! - `5000-nodes-50000-pods`: 50,000 pods that need 5,000 nodes; the peak RSS (VmHWM) of the process,
//!   so run it alone (`--case big`) for a clean figure;
//! - `karpenter-mix-600|1200`: Karpenter's benchmark mix as Deployments, the pods never placed;
//! - `over-limit-20000|100000`: replicas over a NodePool limit, the replay time;
//! - `node-pools-N`: N NodePools over the whole embedded catalog, each with its own pods: the peak RSS
//!   (run it alone, `--case pools --pools 200`, for a clean figure) and the replay time.
use std::time::Instant;

use crate::sim::replay::{SimOptions, SimOutcome, simulate};
use crate::sim::report::Report;
use crate::sim::scenario::{Limits, Scenario};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Case {
    /// The 24-hour diurnal day, disruption on and off.
    Diurnal,
    /// 5,000 nodes and 50,000 pods, with the peak RSS.
    Big,
    /// An approximation of Karpenter's benchmark mix (600 and 1,200 pods, six parts): pods never
    /// placed and the replay time.
    Mix,
    /// 20,000 and 100,000 replicas over a NodePool limit: the replay time.
    Limit,
    /// `--pools` NodePools over the whole catalog, each with its own pods: peak RSS and replay time.
    Pools,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which cases to run (default: all).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "diurnal,big,mix,limit,pools"
    )]
    case: Vec<Case>,
    /// NodePool counts for `--case pools` (the peak RSS is the process's, so give one count for a
    /// clean figure).
    #[arg(long, value_delimiter = ',', default_value = "200")]
    pools: Vec<usize>,
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

/// Karpenter's benchmark mix as Deployments (`makeDiversePods` draws labels per pod; a Deployment
/// shares one template, so each part is split into seven Deployments, one per label value; spread
/// selectors target the next value, affinity selectors a self-selecting group): unconstrained, zone spread, hostname spread, hostname pod affinity,
/// zone pod affinity, hostname anti-affinity; CPU 100m-1500m and memory 100Mi-4Gi by Deployment; one
/// on-demand NodePool over three zones, 10 simulated minutes.
pub fn karpenter_mix_scenario(pods: usize) -> String {
    const VALUES: [&str; 7] = ["a", "b", "c", "d", "e", "f", "g"];
    const CPU: [&str; 5] = ["100m", "250m", "500m", "1000m", "1500m"];
    const MEMORY: [&str; 6] = ["100Mi", "256Mi", "512Mi", "1Gi", "2Gi", "4Gi"];
    let mut out = String::from(
        r#"name: karpenter-mix
duration: 10m
seed: 42
nodePools:
  - apiVersion: karpenter.sh/v1
    kind: NodePool
    metadata: {name: default}
    spec:
      template:
        spec:
          nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
          requirements:
            - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
workloads:
"#,
    );
    let per_part = pods / 6;
    let mut n = 0usize;
    for part in 0..6 {
        let count = if part == 0 {
            pods - 5 * per_part
        } else {
            per_part
        };
        let deployments = if part == 5 { 1 } else { VALUES.len() };
        for d in 0..deployments {
            let replicas = count / deployments + usize::from(d < count % deployments);
            if replicas == 0 {
                continue;
            }
            // Spread selects the next value's pods; affinity selects a group that selects itself
            // (every even value does), so no group waits in a cycle that nothing can start: with
            // random labels a seventh of Karpenter's affinity pods select themselves.
            let target = match part {
                3 | 4 => VALUES[d / 2 * 2],
                _ => VALUES[(d + 1) % VALUES.len()],
            };
            let own = VALUES[d];
            let (cpu, memory) = (CPU[n % CPU.len()], MEMORY[(n / CPU.len()) % MEMORY.len()]);
            n += 1;
            let (labels, constraint) = match part {
                0 => (format!("my-label: {own}"), String::new()),
                1 | 2 => (
                    format!("my-label: {own}"),
                    format!(
                        "        topologySpreadConstraints:\n          - {{maxSkew: 1, topologyKey: {}, whenUnsatisfiable: DoNotSchedule, labelSelector: {{matchLabels: {{my-label: {target}}}}}}}\n",
                        if part == 1 { "topology.kubernetes.io/zone" } else { "kubernetes.io/hostname" }
                    ),
                ),
                3 | 4 => (
                    format!("my-affininity: {own}"),
                    format!(
                        "        affinity:\n          podAffinity:\n            requiredDuringSchedulingIgnoredDuringExecution:\n              - {{topologyKey: {}, labelSelector: {{matchLabels: {{my-affininity: {target}}}}}}}\n",
                        if part == 3 { "kubernetes.io/hostname" } else { "topology.kubernetes.io/zone" }
                    ),
                ),
                _ => (
                    "app: nginx".to_string(),
                    "        affinity:\n          podAntiAffinity:\n            requiredDuringSchedulingIgnoredDuringExecution:\n              - {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: nginx}}}\n".to_string(),
                ),
            };
            out.push_str(&format!(
                "  - name: part{part}-{own}\n    kind: Deployment\n    replicas: {replicas}\n    template:\n      metadata:\n        labels: {{{labels}}}\n      spec:\n{constraint}        containers:\n          - name: app\n            resources: {{requests: {{cpu: {cpu}, memory: {memory}}}}}\n"
            ));
        }
    }
    out
}

/// `replicas` one-CPU replicas under a NodePool limit of 100 CPUs: most can never be placed.
pub fn over_limit_scenario(replicas: usize) -> String {
    format!(
        r#"name: over-limit
duration: 10m
cloud:
  instanceTypes: [m5.xlarge]
nodePools:
  - apiVersion: karpenter.sh/v1
    kind: NodePool
    metadata: {{name: limited}}
    spec:
      template:
        spec:
          nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}
          requirements:
            - {{key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}}
      limits:
        cpu: "100"
workloads:
  - name: app
    kind: Deployment
    replicas: {replicas}
    template:
      spec:
        containers:
          - name: app
            resources: {{requests: {{cpu: "1", memory: 1Gi}}}}
"#
    )
}

/// `pools` NodePools over the whole embedded catalog (each its own name and weight, all sharing one
/// EC2NodeClass), each with a Deployment of four pods that selects it by `karpenter.sh/nodepool`, so
/// every NodePool plans and launches: what the per-NodePool state over a shared catalog costs.
pub fn many_pools_scenario(pools: usize) -> String {
    let mut out = String::from("name: many-node-pools\nduration: 10m\nseed: 5\nnodePools:\n");
    for i in 0..pools {
        out.push_str(&format!(
            "  - apiVersion: karpenter.sh/v1\n    kind: NodePool\n    metadata: {{name: pool-{i}}}\n    spec:\n      weight: {}\n      template:\n        spec:\n          nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}\n          requirements:\n            - {{key: karpenter.sh/capacity-type, operator: In, values: [on-demand, spot]}}\n",
            1 + i % 100
        ));
    }
    out.push_str("workloads:\n");
    for i in 0..pools {
        out.push_str(&format!(
            "  - name: app-{i}\n    kind: Deployment\n    replicas: 4\n    template:\n      spec:\n        nodeSelector: {{karpenter.sh/nodepool: pool-{i}}}\n        containers:\n          - name: app\n            resources: {{requests: {{cpu: 500m, memory: 1Gi}}}}\n"
        ));
    }
    out
}

fn many_pools(pools: usize) -> anyhow::Result<serde_json::Value> {
    // Past the simulator's default bound on NodePools per scenario, raised for this case alone.
    let limits = Limits {
        max_node_pools: pools.max(Limits::default().max_node_pools),
        ..Limits::default()
    };
    let scenario =
        Scenario::parse_with(&many_pools_scenario(pools), "many-node-pools.yaml", &limits)?;
    let started = Instant::now();
    let outcome = simulate(&scenario, SimOptions::default(), &mut |_| {});
    let seconds = started.elapsed().as_secs_f64();
    let report = Report::from_outcome(&outcome);
    Ok(serde_json::json!({
        "case": format!("node-pools-{pools}"),
        "podsBound": report.pods.bound,
        "pendingAtEnd": report.pods.pending_at_end,
        "nodesLaunched": report.nodes_launched,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "peakRssMiB": peak_rss_mib().map(|m| m.round()),
    }))
}

fn mix(pods: usize) -> anyhow::Result<serde_json::Value> {
    let scenario = Scenario::parse(&karpenter_mix_scenario(pods), "karpenter-mix.yaml")?;
    let started = Instant::now();
    let outcome = simulate(&scenario, SimOptions::default(), &mut |_| {});
    let seconds = started.elapsed().as_secs_f64();
    let report = Report::from_outcome(&outcome);
    Ok(serde_json::json!({
        "case": format!("karpenter-mix-{pods}"),
        "podsCreated": report.pods.created,
        "neverPlaced": report.never_placed.len(),
        "pendingAtEnd": report.pods.pending_at_end,
        "nodesLaunched": report.nodes_launched,
        "batches": outcome.controller.stats.batches,
        "seconds": (seconds * 1000.0).round() / 1000.0,
    }))
}

fn over_limit(replicas: usize) -> anyhow::Result<serde_json::Value> {
    let scenario = Scenario::parse(&over_limit_scenario(replicas), "over-limit.yaml")?;
    let started = Instant::now();
    let outcome = simulate(&scenario, SimOptions::default(), &mut |_| {});
    let seconds = started.elapsed().as_secs_f64();
    let report = Report::from_outcome(&outcome);
    Ok(serde_json::json!({
        "case": format!("over-limit-{replicas}"),
        "podsBound": report.pods.bound,
        "pendingAtEnd": report.pods.pending_at_end,
        "batches": outcome.controller.stats.batches,
        "batchesUnchanged": outcome.controller.stats.batches_unchanged,
        "seconds": (seconds * 1000.0).round() / 1000.0,
    }))
}

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
            Case::Mix => {
                for pods in [600, 1200] {
                    println!("{}", mix(pods)?);
                }
            }
            Case::Limit => {
                for replicas in [20_000, 100_000] {
                    println!("{}", over_limit(replicas)?);
                }
            }
            Case::Pools => {
                for &pools in &args.pools {
                    println!("{}", many_pools(pools)?);
                }
            }
        }
    }
    Ok(())
}
