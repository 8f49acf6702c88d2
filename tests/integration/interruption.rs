//! Integration tests: the interruption examples end to end (owner: interruption). The simulator's
//! report is read per interruption: when the warning came, when the replacement capacity was ready,
//! how many pods were still on the node when the cloud reclaimed it.

use std::path::PathBuf;

use kestrel::sim::deferred::ApiSpec;
use kestrel::sim::replay::{SimOptions, simulate};
use kestrel::sim::report::{InterruptionEvent, Report};
use kestrel::sim::scenario::{Range, Scenario};

fn load(name: &str) -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/scenarios")
        .join(name);
    Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn report(scenario: &Scenario) -> Report {
    Report::from_outcome(&simulate(scenario, SimOptions::default(), &mut |_| {}))
}

/// CreateFleet answering in 1-3 s, the API server in 20-100 ms, every 7th cloud call throttled.
fn slow_apis(scenario: &mut Scenario) {
    let range = |min: &str, max: &str| Range {
        min: min.to_string(),
        max: max.to_string(),
    };
    scenario.cloud.api = Some(ApiSpec {
        cloud_latency: Some(range("1s", "3s")),
        cluster_latency: Some(range("20ms", "100ms")),
        throttle_every: Some(7),
        ..ApiSpec::default()
    });
}

/// The goal: no pod is still on an interrupted node when it dies whenever its replacement was ready
/// before the reclaim.
fn assert_no_pod_dies_with_a_replaced_node(name: &str, events: &[InterruptionEvent]) {
    for e in events {
        let in_time =
            e.replaced_before_warning || e.replacement_ready_at.is_some_and(|r| r <= e.reclaim_at);
        if in_time {
            assert_eq!(e.pods_at_reclaim, Some(0), "{name}: {e:?}");
        }
    }
}

#[test]
fn every_storm_interruption_is_replaced_before_its_reclaim_and_no_pod_dies_with_it() {
    let mut scenario = load("spot-interruption-storm.yaml");
    for deferred in [false, true] {
        if deferred {
            slow_apis(&mut scenario);
        }
        let r = report(&scenario);
        let name = format!("storm (deferred {deferred})");
        let i = &r.interruptions;
        assert_eq!(i.events.len() as u64, i.warnings, "{name}: one trace each");
        assert_eq!(i.handled, i.warnings, "{name}: {i:?}");
        for e in &i.events {
            assert!(e.node.is_some(), "{name}: warned a registered node: {e:?}");
            assert!(
                e.replacements > 0,
                "{name}: capacity launched for its pods: {e:?}"
            );
            let ready = e
                .replacement_ready_at
                .unwrap_or_else(|| panic!("{name}: replacement never ready: {e:?}"));
            assert!(
                ready >= e.warned_at && ready <= e.reclaim_at,
                "{name}: replacement ready within the warning: {e:?}"
            );
            assert_eq!(e.reclaim_at - e.warned_at, 120.0, "{name}: {e:?}");
        }
        assert_eq!(i.replaced_in_time, i.warnings, "{name}");
        assert_eq!(i.pods_on_reclaimed_nodes, 0, "{name}");
        assert_no_pod_dies_with_a_replaced_node(&name, &i.events);
        assert_eq!(r.pods.pending_at_end, 0, "{name}");
        assert!(r.accounting.leaked_instances.is_empty(), "{name}");
    }
}

#[test]
fn a_pool_that_opts_in_is_replaced_on_the_rebalance_before_the_warning_comes() {
    let scenario = load("spot-rebalance-replacement.yaml");
    let r = report(&scenario);
    let i = &r.interruptions;
    assert!(i.warnings >= 5, "{i:?}");
    assert_eq!(i.rebalance_recommendations, i.warnings, "{i:?}");
    assert_eq!(
        i.rebalance_replacements, i.rebalance_recommendations,
        "every flagged node replaced"
    );
    for e in &i.events {
        assert!(e.replaced_before_warning, "{e:?}");
        assert_eq!(e.pods_at_reclaim, Some(0), "{e:?}");
    }
    assert_eq!(i.replaced_in_time, i.warnings);
    assert_eq!(r.disruptions.get("rebalance").copied(), Some(i.warnings));
    assert_eq!(r.pods.pending_at_end, 0);

    // Without the annotation the same storm is met at the warning instead.
    let mut without = scenario.clone();
    for pool in &mut without.node_pools {
        pool.metadata.annotations = None;
    }
    let w = report(&without).interruptions;
    assert_eq!(w.rebalance_replacements, 0);
    assert_eq!(w.handled, w.warnings);
    assert!(w.events.iter().all(|e| !e.replaced_before_warning));
    assert_no_pod_dies_with_a_replaced_node("without opt-in", &w.events);
}

#[test]
fn the_report_lists_each_interruption_in_its_table_and_json() {
    let r = report(&load("spot-interruption-storm.yaml"));
    let table = r.table();
    assert!(table.contains("interruptions replaced in time"), "{table}");
    let rows = table
        .lines()
        .skip_while(|l| !l.contains("spot interruptions"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .count();
    assert_eq!(rows as u64, r.interruptions.warnings, "{table}");
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).expect("json");
    let first = &json["interruptions"]["events"][0];
    for key in [
        "warnedAt",
        "replacementReadyAt",
        "reclaimAt",
        "podsAtReclaim",
        "replacements",
    ] {
        assert!(!first[key].is_null(), "{key} in {first}");
    }
}
