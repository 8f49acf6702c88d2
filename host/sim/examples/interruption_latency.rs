//! Benchmark harness: how long the core takes from a spot warning handed to the controller to the
//! replacement's launch submitted, over 200 warnings on a 200-node spot fleet, p50 / p99 (wall time).
//!
//! `cargo run -p kestrel-sim --example interruption_latency [WARNINGS]`
//!
//! This is the in-process part of "message visible in the queue -> replacement launch submitted":
//! the controller's tick (plan the node's pods, write the claim, issue the launch), with the
//! simulator carrying out each command inline. The queue's share (long-poll wake-up, the consumer)
//! comes on top.

use std::time::Instant;

use kestrel_sim::controller::{Action, Reason};
use kestrel_sim::interruption::{Notice, NoticeKind};
use kestrel_sim::sim::replay::{Replay, SimOptions};
use kestrel_sim::sim::report::nearest_rank;
use kestrel_sim::sim::scenario::Scenario;

const SCENARIO: &str = include_str!("../../../examples/benchmarks/interruption-latency.yaml");

fn main() {
    let warnings: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("WARNINGS is a number"))
        .unwrap_or(200);
    let scenario = Scenario::parse(SCENARIO, "interruption-latency.yaml").expect("scenario");
    let mut replay = Replay::new(&scenario, SimOptions::default());
    replay.advance(scenario.start_ms() + 10 * 60_000, &mut |_| {});
    let instances: Vec<String> = replay
        .cluster()
        .nodes_iter()
        .map(|n| n.instance_id.clone())
        .collect();
    assert!(
        instances.len() >= warnings,
        "{} nodes for {warnings} warnings",
        instances.len()
    );
    let mut millis = Vec::with_capacity(warnings);
    let mut with_launch = 0;
    for id in instances.iter().take(warnings) {
        // One warning every 70 s of virtual time, past the last one's replacement launch (45-60 s):
        // each finds no replacement in flight whose room the planner could count on (a claim
        // launching shows its whole allocatable as free to later plans; see the report).
        let next = replay.now() + 70_000;
        replay.advance(next, &mut |_| {});
        let logged = replay.controller().log.len();
        let now = replay.now();
        let started = Instant::now();
        replay.notify_now(Notice {
            instance_id: id.clone(),
            kind: NoticeKind::SpotInterruptionWarning {
                terminate_at: now + 120_000,
            },
            ack: None,
        });
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        let launched = replay.controller().log[logged..].iter().any(|d| {
            matches!(
                d.action,
                Action::LaunchClaim {
                    offering: Some(_),
                    ..
                }
            ) && d.why.reason == Reason::SpotInterruption
        });
        // A pod that fits in room the fleet already has needs no launch: timed all the same (the
        // decision is made), counted apart.
        if launched {
            with_launch += 1;
        }
        millis.push(elapsed);
    }
    millis.sort_by(f64::total_cmp);
    println!(
        "{} warnings ({with_launch} needed a launch), {} nodes: warning -> replacement launch submitted \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        millis.len(),
        instances.len(),
        nearest_rank(&millis, 0.50),
        nearest_rank(&millis, 0.99),
        millis.last().copied().unwrap_or(0.0)
    );
}
