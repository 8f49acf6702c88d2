//! What a replay cost and how long pods waited: the summary table, the JSON report, the comparison.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::replay::{Sample, SimOutcome};
use crate::clock::Millis;
use crate::cloud::{CapacityType, InstanceState};
use crate::controller::{Action, Reason};

pub mod detail;
pub use detail::{
    DecisionReport, JournalReport, LaunchReport, NodeReport, OfferingReport, PodReport, Why,
};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub duration_seconds: i64,
    pub provisioner: String,
    pub disruption: String,
    pub total_cost_usd: f64,
    pub node_hours: NodeHours,
    pub nodes_launched: u64,
    pub peak_nodes: usize,
    pub pods: PodCounts,
    pub pending_seconds: Percentiles,
    pub never_placed: Vec<NeverPlaced>,
    pub disruptions: BTreeMap<String, u64>,
    /// Pods bound again after an eviction (drains for disruption or interruption).
    pub pods_rescheduled: u64,
    pub node_lifetimes: NodeLifetimes,
    pub interruptions: Interruptions,
    pub launch_failures: u64,
    pub insufficient_capacity_fallthroughs: u64,
    /// The latest policy fallbacks (at most `controller::MAX_KEPT_FALLBACKS`).
    pub policy_fallbacks: Vec<String>,
    /// Every policy fallback of the run.
    #[serde(skip_serializing_if = "is_zero")]
    pub policy_fallback_count: u64,
    pub accounting: Accounting,
    /// How the controller coped with the edge's answers (retries, refusals, skipped passes).
    pub edge: EdgeCounters,
    pub timeline: Vec<Sample>,
    /// Every instance launched: its NodePool, offering, price, times, and the decisions that
    /// launched and removed it.
    pub nodes: Vec<NodeReport>,
    /// Every pod bound (where, when, how long it waited), then those still pending at the end.
    pub pod_placements: Vec<PodReport>,
    /// Every launch request with the offerings it allowed.
    pub launches: Vec<LaunchReport>,
    /// The controller's decision log.
    pub decisions: Vec<DecisionReport>,
    /// The disruption step's journal: each disruption executed or dropped, with its numbers.
    pub disruption_journal: Vec<JournalReport>,
}

/// What the cluster's and the cloud's answers cost the controller (see docs/simulator.md, deferred
/// mode): throttled launches retried, evictions refused, disruptions aborted for want of a
/// replacement, garbage-collection passes skipped on a failed or incomplete listing, restarts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgeCounters {
    pub launch_retries: u64,
    pub evictions_refused: u64,
    pub disruptions_aborted: u64,
    pub listings_failed: u64,
    pub price_reads_failed: u64,
    pub restarts: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeHours {
    pub on_demand: f64,
    pub spot: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodCounts {
    pub created: u64,
    pub bound: u64,
    pub pending_at_end: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// How long terminated nodes ran (ready to terminated): churn shows as many short lives.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeLifetimes {
    pub terminated: u64,
    pub p50_minutes: f64,
    pub p90_minutes: f64,
    /// Terminated within [`SHORT_LIVED_MINUTES`] of becoming ready.
    pub short_lived: u64,
}

/// A node that runs less than this was hardly worth its launch.
pub const SHORT_LIVED_MINUTES: i64 = 10;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NeverPlaced {
    pub workload: String,
    pub pods: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Interruptions {
    pub warnings: u64,
    pub handled: u64,
    pub rebalance_recommendations: u64,
    /// Nodes replaced proactively on a rebalance recommendation (NodePool opt-in).
    pub rebalance_replacements: u64,
    /// Notices for something already under way, and for instances Kestrel does not own.
    pub duplicate_notices: u64,
    pub not_owned_notices: u64,
    /// Interrupted nodes whose replacement capacity was ready before the reclaim.
    pub replaced_in_time: u64,
    /// Pods (DaemonSets aside) still on interrupted nodes when the cloud reclaimed them.
    pub pods_on_reclaimed_nodes: u64,
    /// Each spot interruption, in warning order.
    pub events: Vec<InterruptionEvent>,
}

/// One spot interruption: when it was warned, when its replacement was ready, what it left behind.
/// Times are seconds since the scenario's start.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InterruptionEvent {
    pub instance_id: String,
    /// None: the instance was warned before its node registered (or after Kestrel replaced it).
    pub node: Option<String>,
    /// Kestrel had replaced the node and terminated the instance before the warning came (a
    /// rebalance recommendation, NodePool opt-in).
    pub replaced_before_warning: bool,
    pub warned_at: f64,
    pub reclaim_at: f64,
    /// Claims launched for the node's pods.
    pub replacements: usize,
    /// None: never ready (or no drain was started).
    pub replacement_ready_at: Option<f64>,
    /// None: the replay ended before the reclaim.
    pub pods_at_reclaim: Option<u64>,
}

/// Every instance accounted for at the end: live instances = nodes + claims still launching.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Accounting {
    pub live_instances: u64,
    pub nodes: u64,
    pub launching_claims: u64,
    pub orphans_collected: u64,
    pub leaked_instances: Vec<String>,
}

pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn percentile(sorted: &[Millis], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[rank_index(sorted.len(), p)] as f64 / 1000.0
}

/// The nearest-rank percentile `p` (0..=1) of sorted values; 0 for none.
pub fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[rank_index(sorted.len(), p)]
}

fn rank_index(len: usize, p: f64) -> usize {
    ((p * len as f64).ceil() as usize).clamp(1, len) - 1
}

impl Report {
    pub fn from_outcome(o: &SimOutcome) -> Report {
        let mut cost = 0.0;
        let mut hours = NodeHours {
            on_demand: 0.0,
            spot: 0.0,
        };
        for r in o.cloud.records() {
            let until = r.terminated_at.unwrap_or(o.end).min(o.end);
            let h = (until - r.instance.launched_at).max(0) as f64 / 3_600_000.0;
            cost += h * r.instance.offering.price;
            match r.instance.offering.capacity_type {
                CapacityType::Spot => hours.spot += h,
                _ => hours.on_demand += h,
            }
        }
        let mut waits: Vec<Millis> = o.binds.iter().map(|b| b.pending_ms).collect();
        let now = o.end;
        let pending: Vec<_> = o.cluster.pending_iter().collect();
        // Pods still waiting at the end count with their wait so far.
        waits.extend(pending.iter().map(|p| now - p.created_at));
        waits.sort_unstable();
        let mut never: BTreeMap<(String, String), u64> = BTreeMap::new();
        for p in &pending {
            let reason = o
                .controller
                .unplaceable
                .get(&p.key)
                .cloned()
                .unwrap_or_else(|| "still waiting for capacity at the end".to_string());
            *never
                .entry((p.facts.workload.to_string(), reason))
                .or_default() += 1;
        }
        let mut lifetimes: Vec<Millis> = o
            .cloud
            .records()
            .iter()
            .filter_map(|r| Some(r.terminated_at? - r.running_at?))
            .collect();
        lifetimes.sort_unstable();
        let minutes = |p: f64| round(percentile(&lifetimes, p) / 60.0, 1);
        let node_lifetimes = NodeLifetimes {
            terminated: lifetimes.len() as u64,
            p50_minutes: minutes(0.50),
            p90_minutes: minutes(0.90),
            short_lived: lifetimes
                .iter()
                .filter(|&&ms| ms < SHORT_LIVED_MINUTES * 60_000)
                .count() as u64,
        };
        let mut disruptions: BTreeMap<String, u64> = BTreeMap::new();
        for d in &o.controller.log {
            if let Action::Terminate { node: Some(_), .. } = d.action
                && d.why.reason != Reason::Provisioning
            {
                let key = serde_json::to_value(d.why.reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                *disruptions.entry(key).or_default() += 1;
            }
        }
        let live: Vec<String> = o
            .cloud
            .records()
            .iter()
            .filter(|r| r.instance.state != InstanceState::Terminated)
            .map(|r| r.instance.id.clone())
            .collect();
        let node_instances: Vec<&str> = o
            .cluster
            .nodes_iter()
            .map(|n| n.instance_id.as_str())
            .collect();
        let launching = o.controller.in_flight() as u64;
        let leaked: Vec<String> = live
            .iter()
            .filter(|id| !node_instances.contains(&id.as_str()))
            .filter(|id| {
                !o.cloud
                    .instance(id)
                    .is_some_and(|i| i.state == InstanceState::Pending)
            })
            .cloned()
            .collect();
        let stats = &o.controller.stats;
        let detail = detail::detail(o);
        Report {
            scenario: o.scenario.clone(),
            seed: o.seed,
            duration_seconds: (o.end - o.start) / 1000,
            provisioner: o.provisioner.clone(),
            disruption: o.disruption.clone(),
            total_cost_usd: round(cost, 4),
            node_hours: NodeHours {
                on_demand: round(hours.on_demand, 3),
                spot: round(hours.spot, 3),
            },
            nodes_launched: o.cloud.records().len() as u64,
            peak_nodes: o.peak_nodes,
            pods: PodCounts {
                created: o.pods_created,
                bound: o.binds.len() as u64,
                pending_at_end: pending.len() as u64,
            },
            pending_seconds: Percentiles {
                count: waits.len() as u64,
                p50: percentile(&waits, 0.50),
                p99: percentile(&waits, 0.99),
                max: waits.last().map_or(0.0, |&m| m as f64 / 1000.0),
            },
            never_placed: never
                .into_iter()
                .map(|((workload, reason), pods)| NeverPlaced {
                    workload,
                    pods,
                    reason,
                })
                .collect(),
            disruptions,
            pods_rescheduled: o.binds.iter().filter(|b| b.recreated).count() as u64,
            node_lifetimes,
            interruptions: interruptions(o),
            launch_failures: stats.launch_failures,
            insufficient_capacity_fallthroughs: stats.insufficient_capacity_fallthroughs,
            policy_fallbacks: stats.policy_fallbacks.clone(),
            policy_fallback_count: stats.policy_fallback_count,
            accounting: Accounting {
                live_instances: live.len() as u64,
                nodes: o.cluster.node_count() as u64,
                launching_claims: launching,
                orphans_collected: stats.orphans_collected,
                leaked_instances: leaked,
            },
            edge: EdgeCounters {
                launch_retries: stats.launch_retries,
                evictions_refused: stats.evictions_refused,
                disruptions_aborted: stats.disruptions_aborted,
                listings_failed: stats.listings_failed,
                price_reads_failed: stats.price_reads_failed,
                restarts: stats.restarts,
            },
            timeline: o.samples.clone(),
            nodes: detail.nodes,
            pod_placements: detail.pods,
            launches: detail.launches,
            decisions: detail.decisions,
            disruption_journal: detail.disruption_journal,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialize")
    }

    /// The human summary.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "scenario {} (seed {}, {} simulated)",
            self.scenario,
            self.seed,
            human_duration(self.duration_seconds)
        );
        let _ = writeln!(
            s,
            "provisioner {}; disruption {}",
            self.provisioner, self.disruption
        );
        for (k, v) in self.rows() {
            let _ = writeln!(s, "  {k:<34} {v}");
        }
        if !self.never_placed.is_empty() {
            let _ = writeln!(s, "  pods never placed:");
            for n in &self.never_placed {
                let _ = writeln!(s, "    {:>5} x {:<20} {}", n.pods, n.workload, n.reason);
            }
        }
        if !self.interruptions.events.is_empty() {
            let _ = writeln!(
                s,
                "  spot interruptions (s since start): warned  replacement ready  reclaimed  pods left"
            );
            for e in &self.interruptions.events {
                let ready = match e.replacement_ready_at {
                    Some(r) => format!("{r:.1}"),
                    None if e.replaced_before_warning => "before warning".to_string(),
                    None => "never".to_string(),
                };
                let pods = e.pods_at_reclaim.map_or("-".to_string(), |p| p.to_string());
                let _ = writeln!(
                    s,
                    "    {:<32} {:>7.1}  {:>17}  {:>9.1}  {:>9}",
                    e.node.as_deref().unwrap_or(&e.instance_id),
                    e.warned_at,
                    ready,
                    e.reclaim_at,
                    pods
                );
            }
        }
        s
    }

    fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            ("total cost".into(), format!("${:.2}", self.total_cost_usd)),
            (
                "node-hours on-demand / spot".into(),
                format!(
                    "{:.1} / {:.1}",
                    self.node_hours.on_demand, self.node_hours.spot
                ),
            ),
            (
                "nodes launched (peak)".into(),
                format!("{} ({})", self.nodes_launched, self.peak_nodes),
            ),
            (
                "pods created / bound / pending".into(),
                format!(
                    "{} / {} / {}",
                    self.pods.created, self.pods.bound, self.pods.pending_at_end
                ),
            ),
            (
                "pending seconds p50 / p99 / max".into(),
                format!(
                    "{:.1} / {:.1} / {:.1}",
                    self.pending_seconds.p50, self.pending_seconds.p99, self.pending_seconds.max
                ),
            ),
            (
                "pods never placed".into(),
                self.never_placed
                    .iter()
                    .map(|n| n.pods)
                    .sum::<u64>()
                    .to_string(),
            ),
            (
                "disruptions".into(),
                if self.disruptions.is_empty() {
                    "none".into()
                } else {
                    self.disruptions
                        .iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ),
            (
                "pods rescheduled after eviction".into(),
                self.pods_rescheduled.to_string(),
            ),
            (
                format!("node lifetime p50 / p90 (< {SHORT_LIVED_MINUTES} min)"),
                format!(
                    "{:.1} / {:.1} min ({} of {})",
                    self.node_lifetimes.p50_minutes,
                    self.node_lifetimes.p90_minutes,
                    self.node_lifetimes.short_lived,
                    self.node_lifetimes.terminated
                ),
            ),
            (
                "interruptions warned / handled".into(),
                format!(
                    "{} / {} (rebalance {})",
                    self.interruptions.warnings,
                    self.interruptions.handled,
                    self.interruptions.rebalance_recommendations
                ),
            ),
            (
                "interruptions replaced in time".into(),
                format!(
                    "{} of {} ({} pods on reclaimed nodes)",
                    self.interruptions.replaced_in_time,
                    self.interruptions.events.len(),
                    self.interruptions.pods_on_reclaimed_nodes
                ),
            ),
            (
                "launch failures (ICE fall-through)".into(),
                format!(
                    "{} ({})",
                    self.launch_failures, self.insufficient_capacity_fallthroughs
                ),
            ),
            (
                "policy fallbacks".into(),
                self.policy_fallback_count.to_string(),
            ),
            (
                "instances live / nodes / launching".into(),
                format!(
                    "{} / {} / {}{}",
                    self.accounting.live_instances,
                    self.accounting.nodes,
                    self.accounting.launching_claims,
                    if self.accounting.leaked_instances.is_empty() {
                        String::new()
                    } else {
                        format!("  LEAKED {}", self.accounting.leaked_instances.len())
                    }
                ),
            ),
        ];
        rows.shrink_to_fit();
        rows
    }

    /// Two reports side by side, with the difference. Each column is as wide as its longest value,
    /// so long policy labels never push the other column off.
    pub fn compare(base: &Report, candidate: &Report) -> String {
        let mut rows: Vec<(String, String, String)> = vec![
            (
                "provisioner".into(),
                base.provisioner.clone(),
                candidate.provisioner.clone(),
            ),
            (
                "disruption".into(),
                base.disruption.clone(),
                candidate.disruption.clone(),
            ),
        ];
        rows.extend(
            base.rows()
                .into_iter()
                .zip(candidate.rows())
                .map(|((k, a), (_, b))| (k, a, b)),
        );
        let width = |f: fn(&(String, String, String)) -> &String, header: &str| {
            rows.iter()
                .map(|r| f(r).chars().count())
                .chain([header.chars().count()])
                .max()
                .unwrap_or(0)
        };
        let (wk, wa, wb) = (
            width(|r| &r.0, ""),
            width(|r| &r.1, "default"),
            width(|r| &r.2, "candidate"),
        );
        let mut s = String::new();
        let _ = writeln!(s, "scenario {} (seed {})", base.scenario, base.seed);
        let line = |k: &str, a: &str, b: &str, mark: &str| {
            format!("  {k:<wk$}  {a:<wa$}  {b:<wb$}{mark}")
                .trim_end()
                .to_string()
        };
        let _ = writeln!(s, "{}", line("", "default", "candidate", ""));
        for (k, a, b) in &rows {
            let mark = if a == b { "" } else { "  *" };
            let _ = writeln!(s, "{}", line(k, a, b, mark));
        }
        let delta = candidate.total_cost_usd - base.total_cost_usd;
        let pct = if base.total_cost_usd > 0.0 {
            100.0 * delta / base.total_cost_usd
        } else {
            0.0
        };
        let _ = writeln!(s, "  cost difference: {delta:+.2} USD ({pct:+.1}%)");
        s
    }
}

/// The interruption counters and, per interruption, its trace.
fn interruptions(o: &SimOutcome) -> Interruptions {
    let stats = &o.controller.stats;
    let secs = |at: Millis| round((at - o.start) as f64 / 1000.0, 1);
    let events: Vec<InterruptionEvent> = o
        .interruption_traces
        .iter()
        .map(|t| InterruptionEvent {
            instance_id: t.instance_id.clone(),
            node: t.node.clone(),
            replaced_before_warning: t.replaced_before_warning,
            warned_at: secs(t.warned_at),
            reclaim_at: secs(t.reclaim_at),
            replacements: t.replacements.as_ref().map_or(0, Vec::len),
            replacement_ready_at: t.replacement_ready_at.map(secs),
            pods_at_reclaim: t.pods_at_reclaim.map(|p| p as u64),
        })
        .collect();
    Interruptions {
        warnings: o.interruption_warnings,
        handled: stats.interruptions_handled,
        rebalance_recommendations: stats.rebalance_recommendations,
        rebalance_replacements: stats.rebalance_replacements,
        duplicate_notices: stats.notices_duplicate,
        not_owned_notices: stats.notices_not_owned,
        replaced_in_time: o
            .interruption_traces
            .iter()
            .filter(|t| {
                t.replaced_before_warning
                    || t.replacement_ready_at.is_some_and(|r| r <= t.reclaim_at)
            })
            .count() as u64,
        pods_on_reclaimed_nodes: events.iter().filter_map(|e| e.pods_at_reclaim).sum(),
        events,
    }
}

fn human_duration(seconds: i64) -> String {
    let (h, m) = (seconds / 3600, (seconds % 3600) / 60);
    match (h, m) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h{m}m"),
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
