//! Integration tests: disruption (owner: disruption) — the disruption step in the simulator, end to end.
//!
//! Print the measured figures with
//! `cargo test -p kestrel-tests --test integration disruption -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};

use kestrel::clock::Millis;
use kestrel::cloud::CapacityType;
use kestrel::controller::disruption::Disruptor;
use kestrel::controller::{Action, Reason};
use kestrel::policy::contract::consolidate::ConsolidateInput;
use kestrel::policy::{Consolidator, Verdict};
use kestrel::sim::replay::{SimOptions, SimOutcome, pool_spec, simulate};
use kestrel::sim::scenario::Scenario;

fn scenario(file: &str) -> Scenario {
    let path = format!(
        "{}/../examples/scenarios/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("scenario file");
    Scenario::parse(&text, &path).expect("scenario parses")
}

fn run(s: &Scenario, disruptor: Disruptor) -> SimOutcome {
    simulate(
        s,
        SimOptions {
            disruption: Some(Box::new(disruptor)),
            ..SimOptions::default()
        },
        &mut |_| {},
    )
}

/// The cheapest fleet of one instance type holding `replicas` pods of the workload (with the
/// DaemonSets' requests on every node): the packing bound for identical pods.
fn packing_bound(s: &Scenario, workload: &str, replicas: u32) -> f64 {
    let (_, types, _) = kestrel::sim::catalog::select(&s.cloud.instance_types, &s.zones);
    let pool = pool_spec(&s.node_pools[0]);
    let facts = |name: &str| {
        let w = s
            .workloads
            .iter()
            .find(|w| w.name == name)
            .expect("workload");
        kestrel::sim::workload::facts_of(w).expect("template compiles")
    };
    let pod = facts(workload).requests().clone();
    let daemon = s
        .workloads
        .iter()
        .filter(|w| w.kind == kestrel::sim::scenario::WorkloadKind::DaemonSet)
        .fold(kestrel::model::ResourceList::default(), |a, w| {
            a.plus(
                kestrel::sim::workload::facts_of(w)
                    .expect("template compiles")
                    .requests(),
            )
        });
    types
        .iter()
        .filter(|t| pool.allows(t, &s.zones[0], CapacityType::OnDemand))
        .filter_map(|t| {
            let room = t.allocatable.minus(&daemon);
            let per = [
                (room.cpu.millis(), pod.cpu.millis()),
                (room.memory.millis(), pod.memory.millis()),
                (room.pods.millis(), pod.pods.millis().max(1000)),
            ]
            .iter()
            .map(|&(have, need)| if need <= 0 { i128::MAX } else { have / need })
            .min()
            .unwrap_or(0);
            (per >= 1).then(|| t.on_demand_price * (i64::from(replicas) as f64 / per as f64).ceil())
        })
        .fold(f64::INFINITY, f64::min)
}

/// What the provisioning core launches for `replicas` pods of `workload` on an empty cluster (the same
/// scenario without its scale steps, disruption off): an independent packing of the remaining pods.
fn provisioned_cost(s: &Scenario, workload: &str, replicas: u32) -> f64 {
    let mut steady = s.clone();
    for w in steady.workloads.iter_mut().filter(|w| w.name == workload) {
        w.replicas = Some(replicas);
        w.scale.clear();
    }
    let o = simulate(
        &steady,
        SimOptions {
            disruption: Some(Box::new(kestrel::controller::NoDisruption)),
            ..SimOptions::default()
        },
        &mut |_| {},
    );
    assert_eq!(
        o.cluster.pending_count(),
        0,
        "the steady scenario schedules every pod"
    );
    o.samples.last().expect("samples").cost_per_hour
}

/// Most nodes of `reasons` being disrupted at once (cordoned and not yet terminated), with the
/// NodePool's node count at that moment.
fn max_concurrent(o: &SimOutcome, reasons: &[Reason]) -> (usize, Vec<(Millis, usize, usize)>) {
    let mut live: BTreeSet<String> = BTreeSet::new();
    let mut nodes: usize = 0;
    let mut worst = 0;
    let mut peaks = Vec::new();
    for d in &o.controller.log {
        match &d.action {
            Action::Cordon { node } if reasons.contains(&d.why.reason) => {
                live.insert(node.clone());
                if live.len() > worst {
                    worst = live.len();
                }
                peaks.push((d.at, live.len(), nodes));
            }
            Action::Terminate {
                node: Some(node), ..
            } => {
                live.remove(node);
                nodes = nodes.saturating_sub(1);
            }
            Action::LaunchClaim {
                offering: Some(_), ..
            } => nodes += 1,
            _ => {}
        }
    }
    (worst, peaks)
}

#[test]
fn burst_scale_down_returns_near_the_packing_bound_within_budget() {
    let s = scenario("burst-scale-down.yaml");
    let disruptor = Disruptor::from_manifests(&s.node_pools, &s.node_classes, s.start_ms());
    let journal = disruptor.journal();
    let o = run(&s, disruptor);
    // Two independent bounds for the 20 remaining pods: the cheapest one-instance-type fleet, and what
    // the provisioning core launches for them on an empty cluster.
    let bound = packing_bound(&s, "web", 20).min(provisioned_cost(&s, "web", 20));
    let scale_down = 40 * 60;
    let within_ratio = |r: f64| {
        o.samples
            .iter()
            .filter(|x| x.seconds >= scale_down)
            .find(|x| x.cost_per_hour <= bound * r)
            .map(|x| x.seconds - scale_down)
    };
    let within = within_ratio(1.10);
    let end_cost = o.samples.last().expect("samples").cost_per_hour;
    let peak_cost = o
        .samples
        .iter()
        .map(|x| x.cost_per_hour)
        .fold(0.0, f64::max);
    let executed = journal
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.outcome == "executed")
        .count();
    let dropped = journal
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.outcome != "executed")
        .count();
    println!(
        "burst-scale-down: bound ${bound:.4}/h for 20 pods (single-type packing ${:.4}/h, provisioned ${:.4}/h); peak ${peak_cost:.4}/h; end ${end_cost:.4}/h (ratio {:.3}); within 10% after {:?} s; {executed} moves executed, {dropped} dropped by validation",
        packing_bound(&s, "web", 20),
        provisioned_cost(&s, "web", 20),
        end_cost / bound,
        within
    );
    let within = within.expect("cost returns within 10% of the packing bound");
    assert!(
        within <= 15 * 60,
        "took {within}s, more than 15 virtual minutes"
    );
    // And it stays there.
    assert!(end_cost <= bound * 1.10, "ends at ${end_cost:.4}/h");
    assert!(o.cluster.pending_count() == 0, "pods left pending");
    // Budgets: the default 10% (rounded up) of the pool's nodes at that moment.
    let (worst, peaks) =
        max_concurrent(&o, &[Reason::Empty, Reason::Underutilized, Reason::Drifted]);
    for (at, disrupting, nodes) in peaks {
        let limit = (nodes as u64 * 10).div_ceil(100) as usize;
        assert!(
            disrupting <= limit.max(1),
            "at {at}: {disrupting} disrupting with {nodes} nodes (10% budget = {limit})"
        );
    }
    println!("burst-scale-down: at most {worst} nodes disrupting at once");
}

#[test]
fn drift_replaces_every_drifted_node_at_the_budgets_pace() {
    let s = scenario("drift-ami-change.yaml");
    let disruptor = Disruptor::from_manifests(&s.node_pools, &s.node_classes, s.start_ms());
    let journal = disruptor.journal();
    let o = run(&s, disruptor);
    let release = s.start_ms() + 20 * 60_000;
    // Nodes launched before the release (their LaunchClaim precedes it) must all be replaced.
    let mut before: BTreeSet<String> = BTreeSet::new();
    let mut terminated_at: BTreeMap<String, Millis> = BTreeMap::new();
    for d in &o.controller.log {
        if let Action::Terminate { node: Some(n), .. } = &d.action {
            terminated_at.insert(n.clone(), d.at);
        }
    }
    for n in o.cluster.nodes_iter() {
        assert!(
            n.created_at >= release,
            "node {} (created {}s) still runs the old image",
            n.name,
            (n.created_at - s.start_ms()) / 1000
        );
    }
    for d in &o.controller.log {
        if let Action::Cordon { node } = &d.action
            && d.why.reason == Reason::Drifted
        {
            before.insert(node.clone());
        }
    }
    let drifted = before.len();
    let last = before
        .iter()
        .filter_map(|n| terminated_at.get(n))
        .max()
        .copied()
        .expect("drifted nodes were terminated");
    let (worst, _) = max_concurrent(&o, &[Reason::Drifted]);
    let minutes = (last - release) as f64 / 60_000.0;
    println!(
        "drift-ami-change: {drifted} drifted nodes replaced in {minutes:.1} virtual minutes after the release ({:.2} nodes/min); at most {worst} at once (budget 2); {} journal entries",
        drifted as f64 / minutes,
        journal.lock().unwrap().len()
    );
    assert_eq!(drifted, 10, "every node of the pool drifted");
    assert!(
        worst <= 2,
        "{worst} drifted nodes disrupted at once, budget is 2"
    );
    assert!(worst == 2, "the budget's pace (2 at a time) was used");
    assert_eq!(o.cluster.pending_count(), 0);
}

/// A consolidator that takes nothing between 09:00 and 17:00 UTC on weekdays and otherwise defers to
/// the default: a native implementation of the `Consolidator` trait (the wasm version, with its own
/// saving order off-hours, is `tests/policies/business-hours`, tested below).
struct NotDuringBusinessHours;

impl Consolidator for NotDuringBusinessHours {
    fn consolidate(&mut self, input: &ConsolidateInput) -> Verdict<Vec<u32>> {
        let secs_of_day = input.now.rem_euclid(86_400);
        let weekday = (input.now.div_euclid(86_400) + 4).rem_euclid(7); // 1970-01-01 was a Thursday
        let business = (1..=5).contains(&weekday) && (9 * 3600..17 * 3600).contains(&secs_of_day);
        if business {
            return Verdict {
                value: Vec::new(),
                decided_by: "not-during-business-hours (native test policy)".into(),
                fallback: None,
                reasons: vec![],
            };
        }
        kestrel::policy::defaults::NativeConsolidator::answer(input)
    }
}

#[test]
fn a_custom_consolidator_changes_the_outcome() {
    let mut s = scenario("burst-scale-down.yaml");
    // Monday 09:00 UTC: the whole replay is in business hours.
    s.start = Some("2026-01-05T09:00:00Z".into());
    let default = run(
        &s,
        Disruptor::from_manifests(&s.node_pools, &s.node_classes, s.start_ms()),
    );
    let custom = Disruptor::from_manifests(&s.node_pools, &s.node_classes, s.start_ms())
        .with_consolidator(Box::new(NotDuringBusinessHours));
    let journal = custom.journal();
    let custom = run(&s, custom);
    let end = |o: &SimOutcome| o.samples.last().expect("samples").cost_per_hour;
    let voluntary = |o: &SimOutcome| {
        o.controller
            .log
            .iter()
            .filter(|d| {
                matches!(d.action, Action::Cordon { .. })
                    && matches!(d.why.reason, Reason::Empty | Reason::Underutilized)
            })
            .count()
    };
    println!(
        "custom consolidator: default ends at ${:.4}/h after {} consolidations; not-during-business-hours ends at ${:.4}/h after {}",
        end(&default),
        voluntary(&default),
        end(&custom),
        voluntary(&custom)
    );
    assert!(voluntary(&default) > 0);
    assert_eq!(
        voluntary(&custom),
        0,
        "the policy took no move in business hours"
    );
    assert!(end(&custom) > end(&default) * 1.5);
    assert!(journal.lock().unwrap().is_empty());
}

/// The same policy as real WebAssembly (`tests/policies/business-hours`, built by tests/build.rs),
/// loaded through the registry's canary and run in the sandbox.
const BUSINESS_HOURS_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/business-hours.wasm"));

fn business_hours_wasm() -> kestrel::policy::WasmConsolidator {
    let limits = kestrel::policy::Limits::default();
    let compiled = kestrel::policy::registry::prepare_wasm(
        kestrel::policy::PolicyEngine::shared(),
        kestrel::policy::PolicyKind::Consolidator,
        BUSINESS_HOURS_WASM,
        None,
        &limits,
    )
    .expect("the business-hours consolidator passes the canary");
    kestrel::policy::WasmConsolidator::new(compiled, limits, std::sync::Arc::default())
}

#[test]
fn a_wasm_consolidator_holds_consolidation_in_business_hours_only() {
    let consolidations = |start: &str| {
        let mut s = scenario("burst-scale-down.yaml");
        s.start = Some(start.into());
        let step = Disruptor::from_manifests(&s.node_pools, &s.node_classes, s.start_ms())
            .with_consolidator(Box::new(business_hours_wasm()));
        let journal = step.journal();
        let o = run(&s, step);
        assert_eq!(o.cluster.pending_count(), 0);
        let entries = journal.lock().unwrap().clone();
        (o.samples.last().expect("samples").cost_per_hour, entries)
    };
    // Monday 09:00 UTC: the whole 90-minute replay is in business hours.
    let (busy_cost, busy) = consolidations("2026-01-05T09:00:00Z");
    // Saturday 09:00 UTC: the policy defers to its saving order.
    let (weekend_cost, weekend) = consolidations("2026-01-10T09:00:00Z");
    println!(
        "wasm business-hours consolidator: weekday ends at ${busy_cost:.4}/h after {} moves; weekend at ${weekend_cost:.4}/h after {} moves",
        busy.len(),
        weekend.len()
    );
    assert!(busy.is_empty(), "no move in business hours: {busy:?}");
    assert!(!weekend.is_empty(), "consolidation on the weekend");
    assert!(
        weekend.iter().all(|e| e
            .explanation
            .decided_by
            .contains("not-during-business-hours")),
        "the wasm policy chose the moves"
    );
    // Contract 0.2.0: the policy's reason for each move is in the move's explanation (and its Event).
    assert!(
        weekend
            .iter()
            .all(
                |e| e.explanation.policy_reason.as_deref() == Some("outside business hours")
                    && e.explanation
                        .to_string()
                        .ends_with("; because outside business hours")
            ),
        "the policy's reasons reach the explanations"
    );
    assert!(weekend_cost < busy_cost / 2.0);
}

/// `kestrel simulate --policy consolidator=FILE.wasm --compare`: the CLI installs the candidate for every
/// NodePool, names it in the report, and the candidate decides (no move in business hours).
#[test]
fn simulate_takes_a_consolidator_candidate_from_the_command_line() {
    let dir = std::env::temp_dir().join(format!("kestrel-cli-candidate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wasm = dir.join("business-hours.wasm");
    std::fs::write(&wasm, BUSINESS_HOURS_WASM).unwrap();
    let mut s = scenario("burst-scale-down.yaml");
    // Monday 09:00 UTC: the whole replay is in business hours.
    s.start = Some("2026-01-05T09:00:00Z".into());
    let spec = format!("consolidator={}", wasm.display());
    let options =
        kestrel::cli::simulate::candidate_options(&s, std::slice::from_ref(&spec), &[], false)
            .unwrap()
            .expect("a candidate");
    let candidate = kestrel::sim::report::Report::from_outcome(&simulate(&s, options, &mut |_| {}));
    let default = kestrel::sim::report::Report::from_outcome(&simulate(
        &s,
        SimOptions::default(),
        &mut |_| {},
    ));
    assert!(
        candidate.disruption.contains("consolidator")
            && candidate.disruption.contains("business-hours.wasm"),
        "{}",
        candidate.disruption
    );
    assert!(
        candidate.disruption.contains("built-in budgeter"),
        "{}",
        candidate.disruption
    );
    assert!(
        default
            .disruptions
            .get("underutilized")
            .copied()
            .unwrap_or(0)
            > 0
    );
    assert_eq!(
        candidate.disruptions.get("underutilized"),
        None,
        "{:?}",
        candidate.disruptions
    );
    assert!(candidate.total_cost_usd > default.total_cost_usd);
    // Bad specs fail with what was wrong.
    let err = |specs: &[&str], no_disruption: bool| {
        let specs: Vec<String> = specs.iter().map(|s| s.to_string()).collect();
        kestrel::cli::simulate::candidate_options(&s, &specs, &[], no_disruption)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default()
    };
    assert!(
        err(&["scorer=x.wasm"], false).contains("scorer"),
        "{}",
        err(&["scorer=x.wasm"], false)
    );
    assert!(err(&[&spec, &spec], false).contains("one per kind"));
    assert!(err(&[&spec], true).contains("--no-disruption"));
    assert!(err(&["budgeter=/nonexistent.wasm"], false).contains("/nonexistent.wasm"));
    // A ranker component offered as a consolidator is refused by the canary, naming the file.
    let misfit = err(&[&format!("ranker={}", wasm.display())], false);
    assert!(misfit.contains("business-hours.wasm"), "{misfit}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `karpenter.sh/do-not-disrupt` in the NodePool template's annotations reaches every node (through
/// the claim's record, synced at registration as Karpenter does) and blocks voluntary disruption: the
/// burst's scale-down consolidates nothing; without it, it consolidates.
#[test]
fn do_not_disrupt_in_the_template_annotations_blocks_consolidation() {
    let mut s = scenario("burst-scale-down.yaml");
    let consolidations = |s: &Scenario| {
        let o = run(
            s,
            Disruptor::from_manifests(&s.node_pools, &s.node_classes, s.start_ms()),
        );
        let disrupted = o
            .controller
            .log
            .iter()
            .filter(|d| matches!(d.why.reason, Reason::Empty | Reason::Underutilized))
            .filter(|d| matches!(d.action, Action::Terminate { .. }))
            .count();
        (o, disrupted)
    };
    let (_, without) = consolidations(&s);
    assert!(
        without > 0,
        "the scale-down consolidates without the annotation"
    );
    for pool in &mut s.node_pools {
        pool.spec
            .template
            .metadata
            .get_or_insert_with(Default::default)
            .annotations
            .insert("karpenter.sh/do-not-disrupt".into(), "true".into());
    }
    let (o, with) = consolidations(&s);
    assert_eq!(with, 0, "no node of an annotated pool is consolidated");
    assert!(
        o.cluster.nodes_iter().all(|n| n
            .annotations
            .get("karpenter.sh/do-not-disrupt")
            .map(String::as_str)
            == Some("true")),
        "every node carries its template's annotation"
    );
}
