//! The controller's safety rules against a cluster and a cloud that misbehave, replayed on the
//! virtual clock: each test sets up the situation that was dangerous before commands and completions
//! (see `controller::gc`, `controller::launch`, `controller::drain`).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::*;
use crate::cloud::Offering;
use crate::cluster::{ClusterState, NodeState, ResourceList};
use crate::controller::provision::PlannedClaim;
use crate::controller::{
    Action, DisruptionCommand, DisruptionInput, DisruptionStep, NoDisruption, Reason,
};

const NODE_CLASS: &str = r#"
nodeClasses:
  - apiVersion: karpenter.k8s.aws/v1
    kind: EC2NodeClass
    metadata: {name: default}
    spec:
      role: KarpenterNodeRole-test
      amiSelectorTerms: [{alias: al2023@latest}]
      subnetSelectorTerms: [{tags: {karpenter.sh/discovery: test}}]
      securityGroupSelectorTerms: [{tags: {karpenter.sh/discovery: test}}]
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
            - {key: node.kubernetes.io/instance-type, operator: In, values: [m5.large, m5.xlarge]}
"#;

/// A scenario of `replicas` web pods of 1 CPU, with `extra` appended (cloud, workload options).
fn scenario(replicas: u32, duration: &str, cloud: &str, pdb: &str) -> Scenario {
    let yaml = format!(
        r#"
name: safety
seed: 7
duration: {duration}
zones: [us-east-1a]
cloud:
  instanceTypes: [m5.large, m5.xlarge]
{cloud}
{NODE_CLASS}
workloads:
  - name: web
    kind: Deployment
    replicas: {replicas}
{pdb}
    template:
      metadata: {{labels: {{app: web}}}}
      spec:
        containers:
          - name: web
            image: nginx
            resources: {{requests: {{cpu: "1", memory: 1Gi}}}}
"#
    );
    Scenario::parse(&yaml, "safety.yaml").unwrap_or_else(|e| panic!("{e}"))
}

/// Builds a scripted step's command from what the disruption step sees.
type MakeCommands = Box<dyn Fn(&DisruptionInput<'_>) -> Vec<DisruptionCommand>>;

/// A disruption step that asks, once, at its first pass at or after `at`, for the command `make`
/// builds from what it sees.
struct Scripted {
    at: Millis,
    fired: bool,
    make: MakeCommands,
}

impl DisruptionStep for Scripted {
    fn interval_ms(&self) -> Millis {
        5_000
    }
    fn decide(&mut self, input: &DisruptionInput<'_>) -> Vec<DisruptionCommand> {
        if self.fired || input.now < self.at {
            return Vec::new();
        }
        self.fired = true;
        (self.make)(input)
    }
}

fn replay_with(scenario: &Scenario, disruption: Box<dyn DisruptionStep>) -> Replay {
    Replay::new(
        scenario,
        SimOptions {
            disruption: Some(disruption),
            ..SimOptions::default()
        },
    )
}

fn terminations(replay: &Replay, reason: Reason) -> usize {
    replay
        .controller
        .log
        .iter()
        .filter(|d| d.why.reason == reason && matches!(d.action, Action::Terminate { .. }))
        .count()
}

#[test]
fn a_failed_replacement_aborts_its_disruption_and_uncordons_the_node() {
    let s = scenario(3, "20m", "", "");
    let at = s.start_ms() + 5 * 60_000;
    // Consolidate the first node into a replacement nobody can launch (a zone the region lacks).
    let step = Scripted {
        at,
        fired: false,
        make: Box::new(|input| {
            let node = input.nodes.first().expect("a node by now");
            vec![DisruptionCommand {
                reason: Reason::Underutilized,
                nodes: vec![node.name.to_string()],
                replacement: Some(PlannedClaim {
                    node_pool: "default".into(),
                    offerings: vec![Offering {
                        instance_type: "m5.large".into(),
                        zone: "us-east-1z".into(),
                        capacity_type: CapacityType::OnDemand,
                        price: 0.096,
                    }],
                    pods: Vec::new(),
                    explanation: "test replacement".into(),
                    core: None,
                }),
                forceful: false,
                explanation: "test consolidation".into(),
            }]
        }),
    };
    let mut replay = replay_with(&s, Box::new(step));
    replay.advance(at - 1, &mut |_| {});
    let nodes_before: Vec<String> = replay
        .cluster
        .nodes_iter()
        .map(|n| n.name.to_string())
        .collect();
    let bound_before = replay.cluster.pod_count() - replay.cluster.pending_count();
    assert!(!nodes_before.is_empty(), "the pods got nodes");
    replay.advance(at + 10 * 60_000, &mut |_| {});

    let stats = &replay.controller.stats;
    assert_eq!(stats.disruptions_aborted, 1, "{stats:?}");
    let after: Vec<String> = replay
        .cluster
        .nodes_iter()
        .map(|n| n.name.to_string())
        .collect();
    assert_eq!(after, nodes_before, "no node was removed");
    assert!(
        replay.cluster.nodes_iter().all(|n| !n.cordoned),
        "the node is given back (uncordoned)"
    );
    assert_eq!(
        replay.cluster.pod_count() - replay.cluster.pending_count(),
        bound_before,
        "no pod was evicted"
    );
    assert!(
        replay
            .controller
            .log
            .iter()
            .any(|d| matches!(d.action, Action::Uncordon { .. })),
        "the abort is in the decision log"
    );
}

#[test]
fn failed_or_partial_listings_make_garbage_collection_skip_and_delete_nothing() {
    // Listings fail for the first half hour and come back half empty for the second.
    let s = scenario(
        6,
        "1h",
        "  api:\n    failedListings: [{at: 0s, duration: 30m}]\n    partialListings: [{at: 30m, duration: 30m}]",
        "",
    );
    let mut replay = replay_with(&s, Box::new(NoDisruption));
    replay.advance(s.start_ms() + 5 * 60_000, &mut |_| {});
    let nodes_before = replay.cluster.node_count();
    assert!(
        nodes_before >= 2,
        "six 1-CPU pods need more than one m5.xlarge"
    );
    replay.advance(replay.end, &mut |_| {});

    assert_eq!(
        replay.cluster.node_count(),
        nodes_before,
        "every node survives"
    );
    assert_eq!(replay.cluster.pending_count(), 0, "no pod lost its node");
    assert_eq!(terminations(&replay, Reason::InstanceGone), 0);
    assert_eq!(terminations(&replay, Reason::Orphan), 0);
    // One listing a minute: every one of them failed or was incomplete, and was counted.
    assert!(
        replay.controller.stats.listings_failed >= 55,
        "{:?}",
        replay.controller.stats
    );
}

#[test]
fn garbage_collection_never_touches_a_node_kestrel_does_not_own() {
    let s = scenario(2, "30m", "", "");
    let mut replay = replay_with(&s, Box::new(NoDisruption));
    replay.advance(s.start_ms(), &mut |_| {});
    // A managed node group's node: its instance is not tagged for Kestrel, so no listing shows it.
    let offering = Offering {
        instance_type: "m5.large".into(),
        zone: "us-east-1a".into(),
        capacity_type: CapacityType::OnDemand,
        price: 0.096,
    };
    let now = replay.now();
    let instance_id = replay.cloud.add_foreign_instance(offering, now);
    let labels = BTreeMap::from([
        (
            "kubernetes.io/hostname".to_string(),
            "mng-node-1".to_string(),
        ),
        (
            "eks.amazonaws.com/nodegroup".to_string(),
            "system".to_string(),
        ),
    ]);
    replay.cluster.register_node(NodeState {
        name: Arc::from("mng-node-1"),
        instance_id: instance_id.clone(),
        claim: String::new(),
        node_pool: String::new(),
        instance_type: "m5.large".into(),
        zone: "us-east-1a".into(),
        capacity_type: CapacityType::OnDemand,
        price: 0.096,
        labels: Arc::new(labels),
        annotations: Default::default(),
        taints: Vec::new(),
        allocatable: ResourceList::default(),
        requested: ResourceList::default(),
        pods: 0,
        created_at: now,
        ready: true,
        cordoned: false,
        deleting: false,
    });
    replay.advance(replay.end, &mut |_| {});

    assert!(
        replay.cluster.node("mng-node-1").is_some(),
        "the managed node group's node is still there"
    );
    let record = replay
        .cloud
        .records()
        .iter()
        .find(|r| r.instance.id == instance_id)
        .expect("foreign instance");
    assert_eq!(record.instance.state, InstanceState::Running);
    assert_eq!(terminations(&replay, Reason::InstanceGone), 0);
}

#[test]
fn a_drain_blocked_by_a_pdb_backs_off_per_pod_instead_of_spinning() {
    // Every web pod is protected (maxUnavailable 0) and the node is drained with no replacement.
    let s = scenario(2, "40m", "", "    podDisruptionBudget: {maxUnavailable: 0}");
    let at = s.start_ms() + 5 * 60_000;
    let step = Scripted {
        at,
        fired: false,
        make: Box::new(|input| {
            vec![DisruptionCommand {
                reason: Reason::Empty,
                nodes: vec![input.nodes.first().expect("a node").name.to_string()],
                replacement: None,
                forceful: false,
                explanation: "test drain".into(),
            }]
        }),
    };
    let mut replay = replay_with(&s, Box::new(step));
    replay.advance(replay.end, &mut |_| {});

    let stats = &replay.controller.stats;
    let pods_on_node = 2;
    // 35 minutes blocked: backoff 1, 2, 4 … 60 s per pod is about 40 tries each, not one per tick.
    assert!(stats.evictions_refused > 0, "the PDB refused evictions");
    assert!(
        stats.evictions_refused <= 45 * pods_on_node,
        "{} refused evictions in 35 minutes",
        stats.evictions_refused
    );
    assert_eq!(
        replay.controller.draining(),
        1,
        "the drain is still waiting"
    );
    assert_eq!(
        replay.cluster.pending_count(),
        0,
        "no protected pod was evicted"
    );
}

#[test]
fn a_lagging_listing_does_not_orphan_or_relaunch_what_was_just_launched() {
    // Launch answers take 1-3 s and DescribeInstances misses instances younger than 2 minutes, while
    // garbage collection lists every minute.
    let s = scenario(
        4,
        "20m",
        "  api:\n    cloudLatency: {min: 1s, max: 3s}\n    clusterLatency: {min: 10ms, max: 50ms}\n    listingLag: 2m",
        "",
    );
    let mut replay = replay_with(&s, Box::new(NoDisruption));
    replay.advance(replay.end, &mut |_| {});

    let stats = &replay.controller.stats;
    assert_eq!(stats.orphans_collected, 0, "{stats:?}");
    assert_eq!(terminations(&replay, Reason::InstanceGone), 0);
    let launched = replay.cloud.records().len();
    assert_eq!(
        launched as u64, stats.claims_launched,
        "one instance per claim"
    );
    assert_eq!(
        launched,
        replay.cluster.node_count(),
        "every instance became a node"
    );
    assert_eq!(replay.cluster.pending_count(), 0);
}

#[test]
fn throttled_launches_are_retried_with_the_same_token_and_launch_once() {
    let s = scenario(
        12,
        "30m",
        "  api:\n    cloudLatency: {min: 1s, max: 3s}\n    throttleEvery: 2",
        "",
    );
    let mut replay = replay_with(&s, Box::new(NoDisruption));
    replay.advance(replay.end, &mut |_| {});

    let stats = &replay.controller.stats;
    assert!(stats.launch_retries > 0, "{stats:?}");
    assert_eq!(stats.launch_failures, 0, "{stats:?}");
    let records = replay.cloud.records();
    let claims: BTreeSet<&str> = records.iter().map(|r| r.instance.claim.as_str()).collect();
    assert_eq!(
        claims.len(),
        records.len(),
        "no claim launched two instances"
    );
    assert_eq!(replay.cluster.pending_count(), 0, "every pod placed");
}

/// Restart invariants after a replay: every instance is a node or a claim still launching (no
/// leak), no claim launched twice, every pod placed.
fn assert_nothing_lost_or_leaked(replay: &Replay) {
    let records = replay.cloud.records();
    let live: Vec<&str> = records
        .iter()
        .filter(|r| r.instance.state != InstanceState::Terminated)
        .map(|r| r.instance.id.as_str())
        .collect();
    let nodes: BTreeSet<&str> = replay
        .cluster
        .nodes_iter()
        .map(|n| n.instance_id.as_str())
        .collect();
    for id in &live {
        assert!(
            nodes.contains(id) || replay.controller.in_flight() > 0,
            "instance {id} is neither a node nor launching"
        );
    }
    let claims: BTreeSet<&str> = records.iter().map(|r| r.instance.claim.as_str()).collect();
    assert_eq!(
        claims.len(),
        records.len(),
        "a claim launched two instances"
    );
    assert_eq!(replay.cluster.pending_count(), 0, "a pod was left pending");
}

fn restarts_at(base: &str, offsets: &[&str]) -> String {
    let events: Vec<String> = offsets
        .iter()
        .map(|at| format!("  - {{at: {at}, controllerRestart: {{}}}}"))
        .collect();
    format!("{base}\nevents:\n{}\n", events.join("\n"))
}

const DEFERRED: &str =
    "  api:\n    cloudLatency: {min: 1s, max: 3s}\n    clusterLatency: {min: 20ms, max: 100ms}";

#[test]
fn a_restart_during_a_launch_resumes_it_with_the_same_token() {
    // Several seeds: the latencies each draws decide which writes a restart finds arrived.
    let mut windows_with_lost_nominations = 0;
    for seed in 1..=6 {
        // When the claims are decided and their launches answered, without a restart.
        let mut base = scenario(5, "15m", DEFERRED, "");
        base.seed = seed;
        let mut first = replay_with(&base, Box::new(NoDisruption));
        first.advance(first.end, &mut |_| {});
        let decided = first
            .cluster
            .claim_records()
            .iter()
            .map(|r| r.created_at)
            .min()
            .expect("claims were recorded")
            - base.start_ms();
        let answered = first
            .controller
            .log
            .iter()
            .find(|d| matches!(d.action, Action::LaunchClaim { .. }))
            .expect("a launch")
            .at
            - base.start_ms();
        // Restart every few milliseconds while the records and the nominations are on their way (each
        // request either arrived or was lost with the process: a record without its nominations is the
        // window a killed `kestrel run` showed), while the launch is in flight, and just after its
        // answer (the record's update in flight).
        let writes = (decided..decided + 120).step_by(4);
        for restart in writes.chain([decided + 150, answered - 5, answered + 5]) {
            let mut s = base.clone();
            s.events = Scenario::parse(
                &format!(
                    "name: x\nduration: 1m\n{NODE_CLASS}\nworkloads: []\n{}",
                    restarts_at("", &[&format!("{restart}ms")])
                ),
                "events.yaml",
            )
            .unwrap_or_else(|e| panic!("{e}"))
            .events;
            let mut replay = replay_with(&s, Box::new(NoDisruption));
            // What the restarted process finds: every claim recorded, and how many of their pods carry
            // their nomination.
            replay.advance(base.start_ms() + restart - 1, &mut |_| {});
            let recorded: BTreeSet<String> = replay
                .cluster
                .claim_records()
                .into_iter()
                .map(|r| r.name)
                .collect();
            let all_recorded = recorded.len() == first.cluster.claim_records().len();
            let unnominated = replay
                .cluster
                .pending_pods()
                .iter()
                .filter(|p| p.nominated.is_none())
                .count();
            if all_recorded && unnominated > 0 {
                windows_with_lost_nominations += 1;
            }
            replay.advance(replay.end, &mut |_| {});
            assert_eq!(replay.controller.stats.restarts, 1);
            assert_nothing_lost_or_leaked(&replay);
            assert_eq!(
                replay.cloud.records().len(),
                first.cloud.records().len(),
                "restart at {restart} ms: the same instances as without a restart, none twice"
            );
            assert_eq!(
                replay.controller.stats.orphans_collected, 0,
                "restart at {restart} ms"
            );
            // Once the records are written, the recovered claims keep their pods, nominated or not:
            // no claim is made after the restart. A lost record means its pods are planned again,
            // which is right (nothing was launched for them).
            if all_recorded {
                let after: BTreeSet<String> = replay
                    .cluster
                    .claim_records()
                    .into_iter()
                    .map(|r| r.name)
                    .collect();
                assert_eq!(
                    after, recorded,
                    "restart at {restart} ms ({unnominated} pods without their nomination)"
                );
            }
        }
    }
    assert!(
        windows_with_lost_nominations > 0,
        "no restart fell between a record's write and its pods' nominations"
    );
}

#[test]
fn a_restart_during_a_drain_resumes_the_drain_and_honours_the_pdb() {
    let base = scenario(
        4,
        "30m",
        DEFERRED,
        "    podDisruptionBudget: {maxUnavailable: 1}",
    );
    let drain_at = base.start_ms() + 5 * 60_000;
    let restart_offsets = ["5m12s", "5m30s", "6m"];
    let mut s = base;
    s.events = Scenario::parse(
        &format!(
            "name: x\nduration: 1m\n{NODE_CLASS}\nworkloads: []\n{}",
            restarts_at("", &restart_offsets)
        ),
        "events.yaml",
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .events;
    let step = Scripted {
        at: drain_at,
        fired: false,
        make: Box::new(|input| {
            // The fullest node: its pods must move one at a time (maxUnavailable 1).
            let node = input.nodes.iter().max_by_key(|n| n.pods).expect("a node");
            vec![DisruptionCommand {
                reason: Reason::Drifted,
                nodes: vec![node.name.to_string()],
                replacement: None,
                forceful: false,
                explanation: "test drain".into(),
            }]
        }),
    };
    let mut replay = replay_with(&s, Box::new(step));
    replay.advance(drain_at + 10_000, &mut |_| {});
    let drained: Vec<String> = replay
        .cluster
        .nodes_iter()
        .filter(|n| n.cordoned)
        .map(|n| n.name.to_string())
        .collect();
    assert_eq!(drained.len(), 1, "the drain started");
    replay.advance(replay.end, &mut |_| {});

    assert_eq!(replay.controller.stats.restarts, 3);
    assert!(
        replay.cluster.node(&drained[0]).is_none(),
        "the drain finished after the restarts"
    );
    assert_eq!(replay.controller.draining(), 0);
    assert_nothing_lost_or_leaked(&replay);
}

#[test]
fn restarts_during_consolidation_lose_nothing_and_do_not_consolidate_early() {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/scenarios/burst-scale-down.yaml"
    ))
    .expect("example exists");
    // The scale-down is at 40m with consolidateAfter 1m: restart while consolidation is under way.
    let offsets = ["41m", "42m30s", "44m", "46m"];
    let yaml = yaml.replace("zones: [", &format!("cloud:\n{DEFERRED}\nzones: ["));
    let s = Scenario::parse(&restarts_at(&yaml, &offsets), "burst.yaml")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut replay = Replay::new(&s, SimOptions::default());
    replay.advance(replay.end, &mut |_| {});

    assert_eq!(replay.controller.stats.restarts, offsets.len() as u64);
    assert_nothing_lost_or_leaked(&replay);
    let consolidations: Vec<Millis> = replay
        .controller
        .log
        .iter()
        .filter(|d| {
            matches!(d.action, Action::Cordon { .. })
                && matches!(d.why.reason, Reason::Underutilized | Reason::Empty)
        })
        .map(|d| d.at - s.start_ms())
        .collect();
    assert!(!consolidations.is_empty(), "the scale-down consolidated");
    for offset in offsets {
        let restart = parse_ms(offset).unwrap();
        // consolidateAfter (1m) counts again from the restart: nothing is disrupted sooner.
        assert!(
            !consolidations
                .iter()
                .any(|&at| at > restart && at < restart + 60_000),
            "consolidated within a minute of the restart at {offset}: {consolidations:?}"
        );
    }
}

#[test]
fn nodes_register_as_their_claim_records_say_and_the_controller_sees_them_in_its_snapshot() {
    // The pool's template labels and taints reach each node through its claim's record (the
    // simulated kubelet reads the record, not the controller), and a launch is done only when the
    // snapshot shows its node.
    let yaml = format!(
        r#"
name: registration
seed: 7
duration: 10m
zones: [us-east-1a]
cloud:
  instanceTypes: [m5.large, m5.xlarge]
{DEFERRED}
{}
workloads:
  - name: web
    kind: Deployment
    replicas: 3
    template:
      metadata: {{labels: {{app: web}}}}
      spec:
        tolerations: [{{key: dedicated, operator: Equal, value: checkout, effect: NoSchedule}}]
        containers:
          - name: web
            image: nginx
            resources: {{requests: {{cpu: "1", memory: 1Gi}}}}
"#,
        NODE_CLASS.replace(
            "      template:\n        spec:\n",
            "      template:\n        metadata: {labels: {team: checkout}}\n        spec:\n          \
             taints: [{key: dedicated, value: checkout, effect: NoSchedule}]\n"
        )
    );
    let s = Scenario::parse(&yaml, "registration.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.node_pools[0].spec.template.spec.taints.len(), 1);
    let mut replay = replay_with(&s, Box::new(NoDisruption));
    replay.advance(replay.end, &mut |_| {});
    assert_nothing_lost_or_leaked(&replay);
    assert!(replay.cluster.node_count() > 0, "nodes registered");
    for node in replay.cluster.nodes_iter() {
        assert_eq!(
            node.labels.get("team").map(String::as_str),
            Some("checkout")
        );
        assert!(
            node.taints.iter().any(|t| t.key == "dedicated"),
            "{} carries its pool's taint",
            node.name
        );
        let record = replay
            .cluster
            .claim_record(&node.claim)
            .expect("a registered node's claim has its record");
        assert_eq!(record.template.spec.taints.len(), 1);
    }
    assert_eq!(
        replay.controller.in_flight(),
        0,
        "every launch saw its node"
    );
}
