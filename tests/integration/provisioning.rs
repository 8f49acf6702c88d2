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

/// The small mixed batches (host/data/bench/small, optima proven by HiGHS in generate.py): every one at
/// its optimum, and none dearer than Karpenter's greedy.
#[test]
fn small_mixed_batches_are_packed_at_their_proven_optimum() {
    let catalog = Arc::new(Catalog::ec2_on_demand(&["us-east-1a"]).unwrap());
    let mut files: Vec<PathBuf> = std::fs::read_dir(bench_dir().join("small"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 40, "small-batch files missing: {files:?}");
    let registry = Arc::new(PolicyRegistry::native());
    for file in files {
        let (workload, snapshot) = load_workload(&file, catalog.clone()).unwrap();
        let mut rankers = RegistryRankers::new(registry.clone());
        let r = bench_one(&workload, &snapshot, &mut rankers);
        assert_eq!(r.unschedulable, 0, "{}", r.workload);
        let x = r.ratio_to_exact.expect("small batches carry their optimum");
        assert!(
            (x - 1.0).abs() <= 1e-4,
            "{}: {x} × the proven optimum",
            r.workload
        );
        assert!(
            r.cost_usd_per_hour <= r.greedy_usd_per_hour + 1e-9,
            "{}: dearer than the greedy: {r:?}",
            r.workload
        );
    }
}

/// A ten-minute scenario on three zones with one on-demand NodePool that never consolidates (`limits`:
/// the YAML lines under `spec.limits`) and `workloads` (YAML list items, indented by two spaces).
fn scenario(name: &str, limits: &str, workloads: &str) -> kestrel::sim::scenario::Scenario {
    let text = format!(
        r#"name: {name}
seed: 7
duration: 10m
zones: [us-east-1a, us-east-1b, us-east-1c]
nodeClasses:
  - apiVersion: karpenter.k8s.aws/v1
    kind: EC2NodeClass
    metadata:
      name: default
    spec:
      role: KarpenterNodeRole-demo
      amiSelectorTerms:
        - alias: al2023@latest
      subnetSelectorTerms:
        - tags:
            karpenter.sh/discovery: demo
      securityGroupSelectorTerms:
        - tags:
            karpenter.sh/discovery: demo
nodePools:
  - apiVersion: karpenter.sh/v1
    kind: NodePool
    metadata:
      name: default
    spec:
      template:
        spec:
          nodeClassRef:
            group: karpenter.k8s.aws
            kind: EC2NodeClass
            name: default
          requirements:
            - key: karpenter.sh/capacity-type
              operator: In
              values: [on-demand]
            - key: karpenter.k8s.aws/instance-category
              operator: In
              values: [c, m, r]
            - key: karpenter.k8s.aws/instance-generation
              operator: Gt
              values: ["5"]
      disruption:
        consolidateAfter: Never
      limits:
{limits}
workloads:
{workloads}
"#
    );
    kestrel::sim::scenario::Scenario::parse(&text, name).unwrap_or_else(|e| panic!("{e}"))
}

const CPU_1000: &str = "        cpu: \"1000\"";

fn deployment(
    name: &str,
    replicas: u32,
    cpu: &str,
    spec_extra: &str,
    container_extra: &str,
) -> String {
    format!(
        r#"  - name: {name}
    kind: Deployment
    replicas: {replicas}
    template:
      metadata:
        labels:
          app: {name}
      spec:
{spec_extra}
        containers:
          - name: {name}
            image: nginx
{container_extra}
            resources:
              requests:
                cpu: {cpu}
                memory: 256Mi
"#
    )
}

#[test]
fn simulated_cluster_spreads_by_hostname_and_binds_pods_selecting_region_zone_id_and_beta_labels() {
    let spread = deployment(
        "spread",
        4,
        "250m",
        r#"        topologySpreadConstraints:
          - maxSkew: 1
            topologyKey: kubernetes.io/hostname
            whenUnsatisfiable: DoNotSchedule
            labelSelector:
              matchLabels:
                app: spread"#,
        "",
    );
    let selective = deployment(
        "selective",
        3,
        "250m",
        r#"        nodeSelector:
          topology.kubernetes.io/region: us-east-1
          topology.k8s.aws/zone-id: use1-az2
          karpenter.k8s.aws/instance-tenancy: default
          beta.kubernetes.io/arch: amd64
          failure-domain.beta.kubernetes.io/zone: us-east-1b"#,
        "",
    );
    let s = scenario(
        "labels-and-spread",
        CPU_1000,
        &format!("{spread}{selective}"),
    );
    let o = kestrel::sim::replay::simulate(&s, Default::default(), &mut |_| {});
    let pending: Vec<String> = o
        .cluster
        .pending_iter()
        .map(|p| format!("{}: {:?}", p.key, o.controller.unplaceable.get(&p.key)))
        .collect();
    assert!(pending.is_empty(), "{pending:?}");
    // One node per spread replica (Karpenter), whatever else the selective pods needed.
    assert!(
        o.cluster.node_count() >= 4,
        "{} nodes",
        o.cluster.node_count()
    );
    for n in o.cluster.nodes_iter() {
        assert_eq!(
            n.labels
                .get("topology.kubernetes.io/region")
                .map(String::as_str),
            Some("us-east-1")
        );
    }
}

#[test]
fn simulated_cluster_launches_nothing_for_a_host_port_a_daemonset_holds() {
    let web = deployment(
        "web",
        1,
        "500m",
        "",
        r#"            ports:
              - containerPort: 8080
                hostPort: 8080"#,
    );
    let agent = r#"  - name: agent
    kind: DaemonSet
    template:
      spec:
        containers:
          - name: agent
            image: agent
            ports:
              - containerPort: 8080
                hostPort: 8080
            resources:
              requests:
                cpu: 50m
                memory: 64Mi
"#;
    let s = scenario("daemonset-port", CPU_1000, &format!("{web}{agent}"));
    let o = kestrel::sim::replay::simulate(&s, Default::default(), &mut |_| {});
    assert_eq!(o.cluster.node_count(), 0, "a node the pod could never use");
    let reasons: Vec<&String> = o.controller.unplaceable.values().collect();
    assert_eq!(o.cluster.pending_count(), 1);
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("host port 8080/TCP") && r.contains("agent")),
        "{reasons:?}"
    );
}

#[test]
fn simulated_cluster_keeps_to_node_and_capacity_limits() {
    // 1.5-CPU pods that must not share a node; `cpu: 3950m` keeps every 4-vCPU type out, `nodes: 2`
    // stops at two nodes.
    let anti = r#"        affinity:
          podAntiAffinity:
            requiredDuringSchedulingIgnoredDuringExecution:
              - topologyKey: kubernetes.io/hostname
                labelSelector:
                  matchLabels:
                    app: api"#;
    let api = deployment("api", 4, "1500m", anti, "");
    let s = scenario("limits", "        nodes: \"2\"", &api);
    let o = kestrel::sim::replay::simulate(&s, Default::default(), &mut |_| {});
    assert_eq!(o.cluster.node_count(), 2);
    assert_eq!(o.cluster.pending_count(), 2);
    let s = scenario(
        "limits-cpu",
        "        cpu: 3950m",
        &deployment("w", 2, "1500m", "", ""),
    );
    let o = kestrel::sim::replay::simulate(&s, Default::default(), &mut |_| {});
    assert_eq!(o.cluster.node_count(), 1);
    assert_eq!(o.cluster.pending_count(), 1);
    for n in o.cluster.nodes_iter() {
        assert!(
            n.allocatable.cpu.millis() < 2000,
            "{} launched",
            n.instance_type
        );
    }
}

/// 200 replicas that each need their own node (hostname anti-affinity) get exactly 200 nodes: a
/// launching claim's room is its allocatable minus the pods nominated to it, and a nominated pod that is
/// planned again is not counted twice (a naive reservation bought 285 nodes here).
#[test]
fn one_per_node_replicas_get_one_node_each_while_their_claims_launch() {
    let apart = deployment(
        "apart",
        200,
        "250m",
        r#"        affinity:
          podAntiAffinity:
            requiredDuringSchedulingIgnoredDuringExecution:
              - topologyKey: kubernetes.io/hostname
                labelSelector:
                  matchLabels:
                    app: apart"#,
        "",
    );
    let s = scenario("one-per-node", CPU_1000, &apart);
    let o = kestrel::sim::replay::simulate(&s, Default::default(), &mut |_| {});
    assert_eq!(o.cluster.pending_iter().count(), 0);
    assert_eq!(o.cluster.node_count(), 200);
}

/// Karpenter's benchmark mix (`makeDiversePods`, six parts) at 600 pods over the whole catalog in three
/// zones: every pod is planned and every constraint holds on the plan, checked by the independent
/// checker; the Karpenter-style greedy's plan passes the same checker and is never cheaper.
#[test]
fn karpenter_mix_plans_every_pod_and_every_constraint_holds() {
    use kestrel::cli::bench_mix;
    use kestrel::provisioning::check::check_plan;
    let catalog =
        Arc::new(Catalog::ec2_on_demand(&["us-east-1a", "us-east-1b", "us-east-1c"]).unwrap());
    let snapshot = bench_mix::snapshot(catalog, 600).unwrap();
    let mut rankers = RegistryRankers::new(Arc::new(PolicyRegistry::native()));
    let plan = kestrel::provisioning::plan(&snapshot, &mut rankers);
    assert!(
        plan.unschedulable.is_empty(),
        "{:?}",
        plan.unschedulable.first().map(|u| u.to_string())
    );
    let violations = check_plan(&snapshot, &plan);
    assert!(
        violations.is_empty(),
        "{} violations, first {}",
        violations.len(),
        violations[0]
    );
    let greedy = bench_mix::greedy(&snapshot);
    assert!(greedy.unschedulable.is_empty());
    assert_eq!(check_plan(&snapshot, &greedy), vec![]);
}

/// Item 4 of issue 14: the mix as Deployments replayed for 10 simulated minutes. Pods that lose their
/// nominated room are planned again: every pod with zone or hostname topology spread, hostname
/// anti-affinity or zone pod affinity, and every unconstrained pod, is placed. Not yet met: hostname pod
/// affinity to a group whose other pods (the zone-affinity part shares the label) already filled their
/// nodes in an earlier batch; those may stay pending (kube-scheduler cannot place them either).
#[test]
fn karpenter_mix_replay_places_every_pod_but_hostname_affinity_to_full_nodes() {
    use kestrel::cli::bench_sim::karpenter_mix_scenario;
    let scenario =
        kestrel::sim::scenario::Scenario::parse(&karpenter_mix_scenario(600), "mix.yaml").unwrap();
    let outcome = kestrel::sim::replay::simulate(
        &scenario,
        kestrel::sim::replay::SimOptions::default(),
        &mut |_| {},
    );
    let report = kestrel::sim::report::Report::from_outcome(&outcome);
    assert_eq!(report.pods.created, 600);
    let others: Vec<_> = report
        .never_placed
        .iter()
        .filter(|n| !n.workload.starts_with("part3-"))
        .collect();
    assert!(others.is_empty(), "{others:?}");
    let left: u64 = report.never_placed.iter().map(|n| n.pods).sum();
    assert!(left <= 100, "{left} hostname-affinity pods never placed");
}

/// Pods over a NodePool limit are found unplaceable once and left out of the batches that follow
/// while nothing that could change that answer changes; when the limit frees (the other workload
/// scales to zero and its nodes are consolidated away) they are planned again and launched.
#[test]
fn unplaceable_pods_are_not_planned_again_until_the_world_changes() {
    let text = r#"name: remembered
seed: 3
duration: 12m
cloud:
  instanceTypes: [m5.xlarge]
nodePools:
  - apiVersion: karpenter.sh/v1
    kind: NodePool
    metadata: {name: limited}
    spec:
      template:
        spec:
          nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
          requirements:
            - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
      disruption:
        consolidationPolicy: WhenEmptyOrUnderutilized
        consolidateAfter: 0s
      limits:
        cpu: "8"
workloads:
  - name: first
    kind: Deployment
    replicas: 6
    scale:
      - {at: 5m, replicas: 0}
    template:
      spec:
        nodeSelector: {topology.kubernetes.io/zone: us-east-1a}
        containers:
          - name: app
            resources: {requests: {cpu: "1", memory: 1Gi}}
  - name: later
    kind: Deployment
    replicas: 3
    template:
      spec:
        # Not on `first`'s nodes when they empty: only new capacity (under the limit) takes them.
        nodeSelector: {topology.kubernetes.io/zone: us-east-1b}
        containers:
          - name: app
            resources: {requests: {cpu: "1", memory: 1Gi}}
"#;
    let s = kestrel::sim::scenario::Scenario::parse(text, "remembered.yaml").unwrap();
    let o = kestrel::sim::replay::simulate(&s, Default::default(), &mut |_| {});
    let stats = &o.controller.stats;
    // Two m5.xlarge hold `first` and the limit; `later` waits, and the retries while nothing
    // changes cost no planning pass.
    assert!(
        stats.batches_unchanged >= 2,
        "retries planned again: {stats:?}"
    );
    // Once `first` is gone and its nodes with it, `later` gets its capacity.
    assert_eq!(
        o.cluster.pending_count(),
        0,
        "{:?}",
        o.controller.unplaceable
    );
}
