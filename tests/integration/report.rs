//! The simulator's report shows every node, pod, launch and decision, and its chart marks them
//! (issue 15, item 3).

use std::collections::BTreeSet;
use std::path::PathBuf;

use kestrel::sim::chart;
use kestrel::sim::replay::{SimOptions, simulate};
use kestrel::sim::report::Report;
use kestrel::sim::report::detail::LISTED_OFFERINGS;
use kestrel::sim::scenario::Scenario;

fn report(name: &str) -> Report {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/scenarios")
        .join(name);
    let scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    Report::from_outcome(&simulate(&scenario, SimOptions::default(), &mut |_| {}))
}

#[test]
fn every_node_is_listed_with_its_offering_times_and_why() {
    for name in ["burst-scale-down.yaml", "spot-interruption-storm.yaml"] {
        let r = report(name);
        assert_eq!(r.nodes.len() as u64, r.nodes_launched, "{name}");
        for n in &r.nodes {
            assert!(!n.node_pool.is_empty(), "{name}: {n:?}");
            assert!(
                !n.instance_type.is_empty() && !n.zone.is_empty(),
                "{name}: {n:?}"
            );
            assert!(["on-demand", "spot"].contains(&n.capacity_type.as_str()));
            assert!(n.price_per_hour > 0.0, "{name}: {n:?}");
            let launched = n
                .launched_for
                .as_ref()
                .expect("every launch has its decision");
            assert!(!launched.detail.is_empty(), "{name}: {n:?}");
            if let Some(at) = n.registered_at {
                assert!(
                    at >= n.launched_at,
                    "{name}: registered before launch: {n:?}"
                );
            }
            match (n.gone_at, &n.removed_for) {
                // Gone without a decision only when the cloud took it back.
                (Some(_), None) => assert!(n.interrupted, "{name}: gone without a why: {n:?}"),
                (None, Some(why)) => panic!("{name}: removed ({why:?}) but never gone: {n:?}"),
                _ => {}
            }
        }
        // The disruption counts are the nodes removed for each reason.
        for (reason, count) in &r.disruptions {
            let listed = r
                .nodes
                .iter()
                .filter(|n| n.node.is_some())
                .filter(|n| n.removed_for.as_ref().is_some_and(|w| &w.reason == reason))
                .count() as u64;
            assert_eq!(listed, *count, "{name}: {reason}");
        }
    }
}

#[test]
fn every_pod_says_where_it_ran_and_how_long_it_waited() {
    let r = report("multi-nodepool.yaml");
    assert_eq!(
        r.pod_placements.len() as u64,
        r.pods.bound + r.pods.pending_at_end
    );
    let nodes: BTreeSet<&str> = r.nodes.iter().filter_map(|n| n.node.as_deref()).collect();
    let mut max_wait: f64 = 0.0;
    for p in &r.pod_placements {
        match (&p.node, p.bound_at) {
            (Some(node), Some(bound)) => {
                assert!(
                    nodes.contains(node.as_str()),
                    "{p:?} ran on an unlisted node"
                );
                assert!(
                    (bound - p.created_at - p.waited_seconds).abs() < 1e-6,
                    "{p:?}"
                );
                assert!(p.unplaced_because.is_none());
            }
            (None, None) => assert!(p.unplaced_because.is_some(), "{p:?}"),
            _ => panic!("half-placed pod {p:?}"),
        }
        max_wait = max_wait.max(p.waited_seconds);
    }
    assert_eq!(max_wait, r.pending_seconds.max);
    // multi-nodepool has pods that fit nowhere: they are listed with the planner's reason.
    assert!(r.pod_placements.iter().any(|p| p.node.is_none()));
}

#[test]
fn every_launch_lists_the_offerings_it_allowed() {
    let r = report("spot-interruption-storm.yaml");
    assert!(!r.launches.is_empty());
    let instances: BTreeSet<&str> = r.nodes.iter().map(|n| n.instance_id.as_str()).collect();
    for l in &r.launches {
        assert!(l.offerings_allowed >= 1, "{l:?}");
        assert_eq!(l.offerings.len(), l.offerings_allowed.min(LISTED_OFFERINGS));
        assert!(l.instance_types >= 1 && l.zones >= 1 && !l.capacity_types.is_empty());
        match (&l.launched, &l.error) {
            (Some(id), None) => assert!(instances.contains(id.as_str()), "{l:?}"),
            (None, Some(_)) => {}
            _ => panic!("a launch either launched or failed: {l:?}"),
        }
    }
    // The spot-first pool with an on-demand fallback allows both capacity types somewhere.
    assert!(
        r.launches
            .iter()
            .any(|l| l.capacity_types.len() > 1 || l.capacity_types == ["spot"])
    );
}

#[test]
fn the_decision_log_and_the_disruption_journal_are_printed() {
    let r = report("burst-scale-down.yaml");
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    let decisions = json["decisions"].as_array().expect("decisions");
    assert!(decisions.iter().any(|d| d["action"] == "launch-claim"));
    assert!(decisions.iter().any(|d| d["action"] == "evict"));
    let terminations = decisions
        .iter()
        .filter(|d| d["action"] == "terminate" && d["node"].is_string())
        .count() as u64;
    assert_eq!(terminations, r.disruptions.values().sum::<u64>());
    let journal = json["disruptionJournal"].as_array().expect("journal");
    let executed: Vec<_> = journal
        .iter()
        .filter(|j| j["outcome"] == "executed")
        .collect();
    assert!(!executed.is_empty(), "burst-scale-down consolidates");
    for j in executed {
        assert!(
            j["decidedBy"].as_str().is_some_and(|s| !s.is_empty()),
            "{j}"
        );
        assert!(j["nodes"].as_array().is_some_and(|n| !n.is_empty()), "{j}");
    }
}

#[test]
fn the_chart_marks_every_disruption_and_interruption() {
    for name in ["burst-scale-down.yaml", "spot-interruption-storm.yaml"] {
        let r = report(name);
        let page = chart::html(&r);
        let expected = r.disruptions.values().sum::<u64>() as usize + r.interruptions.events.len();
        assert!(expected > 0, "{name} has something to mark");
        // Three panels, each with every marker.
        assert_eq!(
            page.matches("<g class=\"marker\">").count(),
            3 * expected,
            "{name}"
        );
    }
    let storm = chart::html(&report("spot-interruption-storm.yaml"));
    assert!(storm.contains("spot interruption warning at"));
}

#[test]
fn the_comparison_chart_overlays_both_runs() {
    let a = report("burst-scale-down.yaml");
    let mut b = a.clone();
    b.provisioner =
        "provisioning core, ranker a-very-long-candidate-ranker-name.wasm (wasm)".into();
    let page = chart::compare_html(&a, &b);
    // One solid and one dashed line per panel.
    assert_eq!(page.matches("stroke-dasharray=\"6 4\"").count(), 3);
    assert!(page.contains("default") && page.contains("candidate"));
    assert!(page.contains("a-very-long-candidate-ranker-name.wasm"));
}

#[test]
fn the_comparison_table_stays_aligned_whatever_the_label_lengths() {
    let a = report("burst-scale-down.yaml");
    let mut b = a.clone();
    b.provisioner =
        "provisioning core, ranker an-unusually-long-policy-file-name-for-a-ranker.wasm (wasm)"
            .into();
    b.total_cost_usd += 1.0;
    let table = Report::compare(&a, &b);
    let lines: Vec<&str> = table.lines().skip(1).collect();
    let header = lines[0];
    let candidate_col = header.find("candidate").expect("header");
    let row = |k: &str| {
        *lines
            .iter()
            .find(|l| l.trim_start().starts_with(k))
            .unwrap()
    };
    // The candidate's value starts under its header on every row, however long the default's is.
    for (k, v) in [
        ("provisioner", b.provisioner.clone()),
        ("total cost", format!("${:.2}", b.total_cost_usd)),
    ] {
        assert_eq!(row(k).find(&v), Some(candidate_col), "{table}");
    }
}
