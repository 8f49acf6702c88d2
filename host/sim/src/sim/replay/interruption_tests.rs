//! The interruption rules of `controller::interruption`, replayed through the real controller on a
//! spot fleet: each test delivers notices (as the virtual cloud or a queue would) and checks one rule.

use std::collections::BTreeSet;

use super::*;
use crate::cloud::Offering;
use crate::cluster::{ClusterState, DISRUPTED_TAINT_KEY, NodeState};
use crate::controller::{Action, NoDisruption, NoticeOutcome, Reason};

/// `replicas` 1-CPU web pods on a spot pool (m5.large / m5.xlarge, one zone), with `pool_annotations`
/// on the NodePool, `cloud` extra cloud lines (or top-level sections) and `pdb` workload lines.
fn scenario(replicas: u32, pool_annotations: &str, cloud: &str, pdb: &str) -> Scenario {
    let yaml = format!(
        r#"
name: interruption
seed: 3
duration: 40m
zones: [us-east-1a]
cloud:
  instanceTypes: [m5.large, m5.xlarge]
{cloud}
nodeClasses:
  - apiVersion: karpenter.k8s.aws/v1
    kind: EC2NodeClass
    metadata: {{name: default}}
    spec:
      role: KarpenterNodeRole-test
      amiSelectorTerms: [{{alias: al2023@latest}}]
      subnetSelectorTerms: [{{tags: {{karpenter.sh/discovery: test}}}}]
      securityGroupSelectorTerms: [{{tags: {{karpenter.sh/discovery: test}}}}]
nodePools:
  - apiVersion: karpenter.sh/v1
    kind: NodePool
    metadata:
      name: spot
      annotations: {{{pool_annotations}}}
    spec:
      template:
        spec:
          nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}
          requirements:
            - {{key: karpenter.sh/capacity-type, operator: In, values: [spot]}}
            - {{key: node.kubernetes.io/instance-type, operator: In, values: [m5.large, m5.xlarge]}}
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
    Scenario::parse(&yaml, "interruption.yaml").unwrap_or_else(|e| panic!("{e}"))
}

/// A replay whose pods all have nodes (five minutes in), without voluntary disruption.
fn settled(s: &Scenario) -> Replay {
    let mut replay = Replay::new(
        s,
        SimOptions {
            disruption: Some(Box::new(NoDisruption)),
            ..SimOptions::default()
        },
    );
    replay.advance(s.start_ms() + 5 * 60_000, &mut |_| {});
    assert_eq!(replay.cluster.pending_count(), 0, "the pods got nodes");
    replay
}

/// The names of the claims the cluster records.
fn claim_names(replay: &Replay) -> BTreeSet<String> {
    replay
        .cluster
        .claim_records()
        .into_iter()
        .map(|r| r.name)
        .collect()
}

/// The node with the most pods that are not DaemonSets'.
fn busiest(replay: &Replay) -> NodeState {
    replay
        .cluster
        .nodes_iter()
        .max_by_key(|n| replay.cluster.pods_on(&n.name).len())
        .expect("a node")
        .clone()
}

fn notice(instance_id: &str, kind: NoticeKind, ack: &str) -> Notice {
    Notice {
        instance_id: instance_id.to_string(),
        kind,
        ack: Some(ack.to_string()),
    }
}

fn spot_warning(instance_id: &str, terminate_at: Millis, ack: &str) -> Notice {
    notice(
        instance_id,
        NoticeKind::SpotInterruptionWarning { terminate_at },
        ack,
    )
}

/// Delivers the notices now and lets the replay run until `until`.
fn deliver(replay: &mut Replay, notices: Vec<Notice>, until: Millis) {
    for n in notices {
        replay.controller.notify(n);
    }
    let now = replay.now();
    replay.queue.push(now, SimEvent::Wake);
    replay.advance(until, &mut |_| {});
}

fn decided(replay: &Replay, at: Millis) -> Vec<&crate::controller::Decided> {
    replay
        .controller
        .log
        .iter()
        .filter(|d| d.at == at)
        .collect()
}

#[test]
fn a_spot_warning_taints_avoids_and_launches_the_replacement_at_once() {
    let s = scenario(6, "", "", "");
    let mut replay = settled(&s);
    let node = busiest(&replay);
    let now = replay.now();
    deliver(
        &mut replay,
        vec![spot_warning(&node.instance_id, now + 120_000, "m-1")],
        now,
    );

    let n = replay.cluster.node(&node.name).expect("still there");
    assert!(n.cordoned, "cordoned");
    assert!(
        n.taints.iter().any(|t| t.key == DISRUPTED_TAINT_KEY),
        "tainted karpenter.sh/disrupted: {:?}",
        n.taints
    );
    let at_once = decided(&replay, now);
    assert!(
        at_once.iter().any(|d| matches!(
            &d.action,
            Action::AvoidOffering { instance_type, zone, capacity_type: CapacityType::Spot, .. }
                if *instance_type == node.instance_type && *zone == node.zone
        )),
        "the spot offering is avoided: {at_once:?}"
    );
    assert!(
        at_once
            .iter()
            .any(|d| matches!(d.action, Action::LaunchClaim { .. })
                && d.why.reason == Reason::SpotInterruption),
        "the replacement is launched at the warning, not a batch window later: {at_once:?}"
    );
    // A new launch does not pick the interrupted offering.
    let replacement = at_once
        .iter()
        .find_map(|d| match &d.action {
            Action::LaunchClaim { offering, .. } if d.why.reason == Reason::SpotInterruption => {
                offering.clone()
            }
            _ => None,
        })
        .expect("a launched replacement");
    assert_ne!(
        (&replacement.instance_type, &replacement.zone),
        (&node.instance_type, &node.zone)
    );

    // Before the reclaim: drained onto the replacement, terminated, claim deleted, nothing left.
    replay.advance(now + 119_000, &mut |_| {});
    assert!(replay.cluster.node(&node.name).is_none(), "drained in time");
    assert!(
        replay
            .cluster
            .claim_records()
            .iter()
            .all(|r| r.name != node.claim),
        "its claim is deleted"
    );
    assert_eq!(replay.cluster.pending_count(), 0, "every pod placed again");
    let record = replay
        .cloud
        .records()
        .iter()
        .find(|r| r.instance.id == node.instance_id)
        .expect("its instance");
    assert_eq!(record.instance.state, InstanceState::Terminated);
    let acks = replay.controller.take_acks();
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].token, "m-1");
    assert_eq!(acks[0].outcome, NoticeOutcome::Acted);
}

#[test]
fn a_duplicate_notice_changes_nothing() {
    let s = scenario(6, "", "", "");
    let mut replay = settled(&s);
    let node = busiest(&replay);
    let now = replay.now();
    deliver(
        &mut replay,
        vec![spot_warning(&node.instance_id, now + 120_000, "m-1")],
        now,
    );
    let log_len = replay.controller.log.len();
    let in_flight = replay.controller.in_flight();
    // The queue delivers it again (twice), a second later.
    deliver(
        &mut replay,
        vec![
            spot_warning(&node.instance_id, now + 120_000, "m-1"),
            spot_warning(&node.instance_id, now + 120_000, "m-1b"),
        ],
        now + 1_000,
    );
    assert_eq!(
        replay.controller.log.len(),
        log_len,
        "no second cordon, avoid or launch"
    );
    assert_eq!(replay.controller.in_flight(), in_flight);
    let stats = &replay.controller.stats;
    assert_eq!(stats.interruptions_handled, 1);
    assert_eq!(stats.notices_duplicate, 2);
    let outcomes: Vec<NoticeOutcome> = replay
        .controller
        .take_acks()
        .into_iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [
            NoticeOutcome::Acted,
            NoticeOutcome::Duplicate,
            NoticeOutcome::Duplicate
        ]
    );
}

#[test]
fn notices_for_instances_kestrel_does_not_own_are_counted_and_dropped() {
    let s = scenario(2, "", "", "");
    let mut replay = settled(&s);
    let now = replay.now();
    let foreign = replay.cloud.add_foreign_instance(
        Offering {
            instance_type: "m5.large".into(),
            zone: "us-east-1a".into(),
            capacity_type: CapacityType::Spot,
            price: 0.04,
        },
        now,
    );
    let log_len = replay.controller.log.len();
    deliver(
        &mut replay,
        vec![
            spot_warning(&foreign, now + 120_000, "m-1"),
            notice(&foreign, NoticeKind::RebalanceRecommendation, "m-2"),
            notice(
                "i-0000000000000dead",
                NoticeKind::StateChange {
                    state: StateChange::Stopped,
                },
                "m-3",
            ),
        ],
        now + 1_000,
    );
    assert_eq!(replay.controller.log.len(), log_len, "nothing was done");
    assert_eq!(replay.controller.stats.notices_not_owned, 3);
    assert_eq!(replay.controller.stats.interruptions_handled, 0);
    let acks = replay.controller.take_acks();
    assert_eq!(acks.len(), 3);
    assert!(acks.iter().all(|a| a.outcome == NoticeOutcome::NotOwned));
    assert!(replay.cluster.nodes_iter().all(|n| !n.cordoned));
}

#[test]
fn a_rebalance_is_recorded_and_avoided_and_replaces_only_when_the_pool_opts_in() {
    for opt_in in [false, true] {
        let annotations = if opt_in {
            r#"kestrel.dev/rebalance-replacement: "true""#
        } else {
            ""
        };
        let s = scenario(6, annotations, "", "");
        let mut replay = settled(&s);
        let node = busiest(&replay);
        let now = replay.now();
        deliver(
            &mut replay,
            vec![notice(
                &node.instance_id,
                NoticeKind::RebalanceRecommendation,
                "m-1",
            )],
            now,
        );
        let stats = replay.controller.stats.clone();
        assert_eq!(stats.rebalance_recommendations, 1, "opt-in {opt_in}");
        assert!(
            decided(&replay, now)
                .iter()
                .any(|d| matches!(d.action, Action::AvoidOffering { .. })
                    && d.why.reason == Reason::Rebalance),
            "opt-in {opt_in}: the offering is avoided"
        );
        let cordoned = replay.cluster.node(&node.name).is_some_and(|n| n.cordoned);
        if opt_in {
            assert_eq!(stats.rebalance_replacements, 1);
            assert!(cordoned, "replaced: cordoned at once");
            // Drained once the replacement registered (well within the launch latency bound).
            replay.advance(now + 5 * 60_000, &mut |_| {});
            assert!(replay.cluster.node(&node.name).is_none(), "drained");
            assert_eq!(replay.cluster.pending_count(), 0);
        } else {
            assert_eq!(stats.rebalance_replacements, 0);
            assert!(!cordoned, "not opted in: the node stays");
            replay.advance(now + 5 * 60_000, &mut |_| {});
            assert!(replay.cluster.node(&node.name).is_some());
        }
    }
}

#[test]
fn each_state_change_is_handled_by_its_state() {
    let s = scenario(6, "", "", "");
    // Stopping: drained at once (no PDB wait), replacement launched.
    let mut replay = settled(&s);
    let node = busiest(&replay);
    let now = replay.now();
    let stopping = NoticeKind::StateChange {
        state: StateChange::Stopping,
    };
    deliver(
        &mut replay,
        vec![notice(&node.instance_id, stopping, "m-1")],
        now,
    );
    assert!(
        decided(&replay, now)
            .iter()
            .any(|d| matches!(d.action, Action::LaunchClaim { .. })),
        "replacement launched at once"
    );
    assert!(
        decided(&replay, now)
            .iter()
            .any(|d| matches!(d.action, Action::Evict { .. })),
        "evicted at once: a stopping instance has no time to wait for its replacement"
    );

    // Stopped: the node and claim go now and the stopped instance is terminated.
    let mut replay = settled(&s);
    let node = busiest(&replay);
    let now = replay.now();
    let stopped = NoticeKind::StateChange {
        state: StateChange::Stopped,
    };
    deliver(
        &mut replay,
        vec![notice(&node.instance_id, stopped, "m-2")],
        now,
    );
    assert!(replay.cluster.node(&node.name).is_none(), "node deleted");
    let state = |replay: &Replay, id: &str| {
        replay
            .cloud
            .records()
            .iter()
            .find(|r| r.instance.id == id)
            .map(|r| r.instance.state)
    };
    assert_eq!(
        state(&replay, &node.instance_id),
        Some(InstanceState::Terminated),
        "a stopped instance is terminated"
    );
    replay.advance(now + 5 * 60_000, &mut |_| {});
    assert_eq!(replay.cluster.pending_count(), 0, "its pods placed again");

    // Terminated: the node goes; nothing is terminated again.
    let mut replay = settled(&s);
    let node = busiest(&replay);
    let now = replay.now();
    let terminated = NoticeKind::StateChange {
        state: StateChange::Terminated,
    };
    deliver(
        &mut replay,
        vec![notice(&node.instance_id, terminated, "m-3")],
        now,
    );
    assert!(replay.cluster.node(&node.name).is_none(), "node deleted");
    assert!(
        !replay.controller.log.iter().any(|d| d.at == now
            && matches!(&d.action, Action::Terminate { instance_id, .. } if *instance_id == node.instance_id)
            && d.why.reason != Reason::InstanceGone),
        "no termination beyond recording the loss"
    );
}

#[test]
fn a_reclaim_drain_honours_pdbs_until_its_grace_then_forces() {
    // Every pod protected (maxUnavailable 0), and from 5 minutes no capacity for a replacement: the
    // drain goes ahead without one, PDBs refuse, and 20 s past its deadline (30 s before the
    // reclaim) evictions are forced.
    let s = scenario(
        3,
        "",
        "events:\n  - {at: 5m, capacityOutage: {duration: 1h}}",
        "    podDisruptionBudget: {maxUnavailable: 0}",
    );
    let mut replay = settled(&s);
    let node = busiest(&replay);
    let pods = replay.cluster.pods_on(&node.name).len();
    assert!(pods > 0);
    let now = replay.now();
    let reclaim = now + 120_000;
    deliver(
        &mut replay,
        vec![spot_warning(&node.instance_id, reclaim, "m-1")],
        reclaim - 10_001,
    );
    assert!(
        replay.controller.stats.evictions_refused > 0,
        "PDBs honoured after the deadline"
    );
    assert_eq!(
        replay.cluster.pods_on(&node.name).len(),
        pods,
        "no protected pod evicted while time allows"
    );
    replay.advance(reclaim - 1, &mut |_| {});
    assert!(
        replay.cluster.node(&node.name).is_none(),
        "forced 10 s before the reclaim: the pods got their signal before the instance died"
    );
}

#[test]
fn a_queued_notice_is_acknowledged_only_once_its_drain_is_written() {
    // The API server answers writes after 400 ms.
    let s = scenario(
        4,
        "",
        "  api:\n    cloudLatency: {min: 1s, max: 2s}\n    clusterLatency: {min: 400ms, max: 400ms}",
        "",
    );
    let mut replay = settled(&s);
    let node = busiest(&replay);
    let now = replay.now();
    deliver(
        &mut replay,
        vec![spot_warning(&node.instance_id, now + 120_000, "m-1")],
        now + 399,
    );
    assert!(replay.controller.draining() == 1, "the drain began");
    assert!(
        replay.controller.take_acks().is_empty(),
        "not acknowledged before the cluster confirmed the drain"
    );
    replay.advance(now + 401, &mut |_| {});
    let acks = replay.controller.take_acks();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].outcome, NoticeOutcome::Acted);
}

#[test]
fn a_restart_before_the_acknowledgement_redelivers_into_the_same_drain() {
    let s = scenario(
        4,
        "",
        "  api:\n    cloudLatency: {min: 1s, max: 2s}\n    clusterLatency: {min: 400ms, max: 400ms}",
        "",
    );
    let mut replay = settled(&s);
    let node = busiest(&replay);
    let now = replay.now();
    let claims_before: BTreeSet<String> = claim_names(&replay);
    deliver(
        &mut replay,
        vec![spot_warning(&node.instance_id, now + 120_000, "m-1")],
        now + 1_000,
    );
    // The process dies after the drain was written; the queue has not been told, so it delivers the
    // message again to the restarted controller.
    replay.queue.push(now + 1_000, SimEvent::Restart);
    replay.advance(now + 1_000, &mut |_| {});
    assert!(
        replay.controller.take_acks().is_empty(),
        "lost with the process"
    );
    // The replacements the first process recorded before it died.
    let replacements: BTreeSet<String> = claim_names(&replay)
        .difference(&claims_before)
        .cloned()
        .collect();
    assert!(!replacements.is_empty(), "replacements recorded");
    // Handled once the restarted controller has its first price list (a cloud call, 1-2 s).
    deliver(
        &mut replay,
        vec![spot_warning(&node.instance_id, now + 120_000, "m-1")],
        now + 5_000,
    );
    let acks = replay.controller.take_acks();
    assert_eq!(acks.len(), 1);
    assert_eq!(
        acks[0].outcome,
        NoticeOutcome::Duplicate,
        "the drain resumed"
    );
    replay.advance(now + 119_000, &mut |_| {});
    // A replacement's launch may have reached the cloud before the process died or been resent by
    // the restarted one (same claim, same token): one instance each, and no new replacement plan.
    let launched: Vec<&str> = replay
        .cloud
        .records()
        .iter()
        .map(|r| r.instance.claim.as_str())
        .filter(|c| !claims_before.contains(*c))
        .collect();
    let distinct: BTreeSet<String> = launched.iter().map(|c| c.to_string()).collect();
    assert_eq!(launched.len(), distinct.len(), "a claim launched twice");
    assert_eq!(distinct, replacements, "no second replacement");
    assert!(replay.cluster.node(&node.name).is_none(), "drained in time");
    assert_eq!(replay.cluster.pending_count(), 0);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Notice kind `k` for an instance, as received at `now`.
    fn kind(k: u8, now: Millis) -> NoticeKind {
        let state = |state| NoticeKind::StateChange { state };
        match k % 8 {
            0 => NoticeKind::SpotInterruptionWarning {
                terminate_at: now + 120_000,
            },
            1 => NoticeKind::RebalanceRecommendation,
            2 => NoticeKind::ScheduledChange { at: now + 600_000 },
            3 => NoticeKind::CapacityReservationInterruption {
                terminate_at: now + 120_000,
            },
            4 => state(StateChange::Stopping),
            5 => state(StateChange::Stopped),
            6 => state(StateChange::ShuttingDown),
            _ => state(StateChange::Terminated),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any mix of notices, repeated, for Kestrel's nodes and for instances it does not own, in
        /// any order: every queued notice is acknowledged exactly once, foreign ones as not owned and
        /// without any action, and the fleet ends with every pod placed and no instance leaked.
        #[test]
        fn any_notices_are_acknowledged_once_and_lose_nothing(
            notices in prop::collection::vec((0usize..5, 0u8..8, 0u32..3, 0i64..20), 1..10),
        ) {
            let s = scenario(8, "", "", "");
            let mut replay = settled(&s);
            let nodes: Vec<String> = replay
                .cluster
                .nodes_iter()
                .map(|n| n.instance_id.clone())
                .collect();
            let mut sent = Vec::new();
            let mut foreign = Vec::new();
            for (i, (target, k, repeats, gap_s)) in notices.into_iter().enumerate() {
                let now = replay.now() + gap_s * 1_000;
                let instance = match nodes.get(target) {
                    Some(id) => id.clone(),
                    None => format!("i-f{i:016x}"),
                };
                let batch: Vec<Notice> = (0..=repeats)
                    .map(|r| notice(&instance, kind(k, now), &format!("m-{i}-{r}")))
                    .collect();
                if !nodes.contains(&instance) {
                    foreign.extend(batch.iter().map(|n| n.ack.clone().unwrap()));
                }
                sent.extend(batch.iter().map(|n| n.ack.clone().unwrap()));
                replay.advance(now, &mut |_| {});
                let log = replay.controller.log.len();
                deliver(&mut replay, batch, now);
                if !nodes.contains(&instance) {
                    prop_assert_eq!(replay.controller.log.len(), log, "a foreign notice acted");
                }
            }
            replay.advance(replay.end, &mut |_| {});
            let acks = replay.controller.take_acks();
            let mut tokens: Vec<String> = acks.iter().map(|a| a.token.clone()).collect();
            tokens.sort();
            sent.sort();
            prop_assert_eq!(&tokens, &sent, "each notice acknowledged exactly once");
            for a in &acks {
                prop_assert_eq!(
                    a.outcome == NoticeOutcome::NotOwned,
                    foreign.contains(&a.token),
                    "{:?}", a
                );
            }
            prop_assert_eq!(replay.cluster.pending_count(), 0, "a pod was left pending");
            let live = replay
                .cloud
                .records()
                .iter()
                .filter(|r| r.instance.state != InstanceState::Terminated)
                .count();
            prop_assert_eq!(
                live,
                replay.cluster.node_count() + replay.controller.in_flight(),
                "an instance outlived its node"
            );
        }
    }
}
