//! The report's detail lists: every node, every pod, every launch request, the controller's decision
//! log and the disruption journal, each with the why that the summary figures only count.
//!
//! Times are seconds since the scenario's start. The lists are as long as the replay made them; the
//! scenario's limits (pods at once, Job pods, replica changes, duration) bound them, and a launch
//! lists at most [`LISTED_OFFERINGS`] of its offerings (with the count of all it allowed).

use std::collections::HashMap;

use super::super::replay::SimOutcome;
use super::round;
use crate::clock::Millis;
use crate::controller::{Action, Decided, Reason};

/// A launch request lists this many of its offerings, best first (CreateFleet takes at most 60
/// instance types per request, so more is never tried at once); `offeringsAllowed` counts them all.
pub const LISTED_OFFERINGS: usize = 60;

/// Why something happened: a decision's reason and its explanation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Why {
    pub reason: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferingReport {
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_per_hour: Option<f64>,
}

impl From<&crate::cloud::Offering> for OfferingReport {
    fn from(o: &crate::cloud::Offering) -> Self {
        OfferingReport {
            instance_type: o.instance_type.clone(),
            zone: o.zone.clone(),
            capacity_type: o.capacity_type.label().to_string(),
            price_per_hour: Some(o.price),
        }
    }
}

/// One instance the replay launched, from launch to termination.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    pub instance_id: String,
    /// None: the instance never registered a node.
    pub node: Option<String>,
    pub claim: String,
    pub node_pool: String,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: String,
    pub price_per_hour: f64,
    pub launched_at: f64,
    pub registered_at: Option<f64>,
    /// None: still running at the end.
    pub gone_at: Option<f64>,
    /// The cloud reclaimed it (a spot interruption).
    pub interrupted: bool,
    /// The decision that launched its claim.
    pub launched_for: Option<Why>,
    /// The decision that terminated it (None: still running, or reclaimed before a decision).
    pub removed_for: Option<Why>,
}

/// One pod: where it ran and how long it waited. A pod recreated after an eviction is a new pod.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodReport {
    pub pod: String,
    pub workload: String,
    /// None: still pending at the end.
    pub node: Option<String>,
    pub created_at: f64,
    pub bound_at: Option<f64>,
    /// Creation to binding (or to the end, for a pod still pending).
    pub waited_seconds: f64,
    pub recreated: bool,
    /// Why a pod still pending at the end was not placed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unplaced_because: Option<String>,
}

/// One launch request (a retry is another request) and the offerings it allowed, its flexibility.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LaunchReport {
    pub at: f64,
    pub claim: String,
    pub node_pool: String,
    pub offerings_allowed: usize,
    pub instance_types: usize,
    pub zones: usize,
    pub capacity_types: Vec<String>,
    /// The first [`LISTED_OFFERINGS`] offerings, in the order the cloud tries them.
    pub offerings: Vec<OfferingReport>,
    pub launched: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One entry of the controller's decision log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionReport {
    pub at: f64,
    /// launch-claim, cordon, uncordon, evict, terminate, avoid-offering.
    pub action: String,
    pub reason: String,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_pool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offering: Option<OfferingReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pods: Option<usize>,
    /// avoid-offering: until when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<f64>,
}

/// One disruption the disruption step executed, or dropped when validation refused it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalReport {
    pub at: f64,
    /// `executed`, or `dropped: <why>`.
    pub outcome: String,
    pub method: String,
    pub reason: String,
    pub nodes: Vec<String>,
    pub removed: Vec<String>,
    pub replacement: Option<String>,
    pub savings_per_hour: f64,
    pub pods_moved: usize,
    pub disruption_cost: f64,
    pub cause: String,
    pub decided_by: String,
    pub budget: String,
}

/// A serde enum's wire name (`spot-interruption`, `launch-claim`, ...).
pub fn wire_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn why(d: &Decided) -> Why {
    Why {
        reason: wire_name(&d.why.reason),
        detail: d.why.detail.clone(),
    }
}

/// The detail lists of a replay.
pub struct Detail {
    pub nodes: Vec<NodeReport>,
    pub pods: Vec<PodReport>,
    pub launches: Vec<LaunchReport>,
    pub decisions: Vec<DecisionReport>,
    pub disruption_journal: Vec<JournalReport>,
}

pub fn detail(o: &SimOutcome) -> Detail {
    let secs = |at: Millis| round((at - o.start) as f64 / 1000.0, 3);
    // The first decision that launched each claim (a failed attempt's entry has no offering) and
    // the first that terminated each instance.
    let mut launched_for: HashMap<&str, &Decided> = HashMap::new();
    let mut removed_for: HashMap<&str, &Decided> = HashMap::new();
    for d in &o.controller.log {
        match &d.action {
            Action::LaunchClaim {
                claim,
                offering: Some(_),
                ..
            } => {
                launched_for.entry(claim.as_str()).or_insert(d);
            }
            Action::Terminate { instance_id, .. } => {
                removed_for.entry(instance_id.as_str()).or_insert(d);
            }
            _ => {}
        }
    }
    let nodes = o
        .cloud
        .records()
        .iter()
        .map(|r| {
            let i = &r.instance;
            let registration = o.registrations.get(&i.id);
            NodeReport {
                instance_id: i.id.clone(),
                node: registration.map(|g| g.node.clone()),
                claim: i.claim.clone(),
                node_pool: i.node_pool.clone(),
                instance_type: i.offering.instance_type.clone(),
                zone: i.offering.zone.clone(),
                capacity_type: i.offering.capacity_type.label().to_string(),
                price_per_hour: i.offering.price,
                launched_at: secs(i.launched_at),
                registered_at: registration.map(|g| secs(g.at)),
                gone_at: r.terminated_at.map(secs),
                interrupted: r.interrupted,
                launched_for: launched_for.get(i.claim.as_str()).map(|d| why(d)),
                removed_for: removed_for.get(i.id.as_str()).map(|d| why(d)),
            }
        })
        .collect();
    let mut pods: Vec<PodReport> = o
        .binds
        .iter()
        .map(|b| PodReport {
            pod: b.pod.to_string(),
            workload: b.workload.to_string(),
            node: Some(b.node.to_string()),
            created_at: secs(b.bound_at - b.pending_ms),
            bound_at: Some(secs(b.bound_at)),
            waited_seconds: round(b.pending_ms as f64 / 1000.0, 3),
            recreated: b.recreated,
            unplaced_because: None,
        })
        .collect();
    let mut pending: Vec<_> = o.cluster.pending_iter().collect();
    pending.sort_by(|a, b| (a.created_at, &a.key).cmp(&(b.created_at, &b.key)));
    pods.extend(pending.into_iter().map(|p| {
        PodReport {
            pod: p.key.to_string(),
            workload: p.facts.workload.to_string(),
            node: None,
            created_at: secs(p.created_at),
            bound_at: None,
            waited_seconds: round((o.end - p.created_at) as f64 / 1000.0, 3),
            recreated: false,
            unplaced_because: Some(
                o.controller
                    .unplaceable
                    .get(&p.key)
                    .cloned()
                    .unwrap_or_else(|| "still waiting for capacity at the end".to_string()),
            ),
        }
    }));
    let launches = o
        .launches
        .iter()
        .map(|l| {
            let distinct = |f: &dyn Fn(&crate::cloud::Offering) -> String| {
                let mut v: Vec<String> = l.offerings.iter().map(f).collect();
                v.sort();
                v.dedup();
                v
            };
            LaunchReport {
                at: secs(l.at),
                claim: l.claim.clone(),
                node_pool: l.node_pool.clone(),
                offerings_allowed: l.offerings.len(),
                instance_types: distinct(&|o| o.instance_type.clone()).len(),
                zones: distinct(&|o| o.zone.clone()).len(),
                capacity_types: distinct(&|o| o.capacity_type.label().to_string()),
                offerings: l
                    .offerings
                    .iter()
                    .take(LISTED_OFFERINGS)
                    .map(OfferingReport::from)
                    .collect(),
                launched: l.result.as_ref().ok().cloned(),
                error: l.result.as_ref().err().cloned(),
            }
        })
        .collect();
    let decisions = o
        .controller
        .log
        .iter()
        .map(|d| decision(d, &secs))
        .collect();
    let disruption_journal = o
        .controller
        .disruption_journal()
        .into_iter()
        .map(|j| {
            let e = j.explanation;
            JournalReport {
                at: secs(j.at),
                outcome: j.outcome,
                method: wire_name(&e.method),
                reason: wire_name(&e.reason),
                nodes: e.nodes,
                removed: e.removed,
                replacement: e.replacement,
                savings_per_hour: round(e.savings_per_hour, 4),
                pods_moved: e.pods_moved,
                disruption_cost: round(e.disruption_cost, 4),
                cause: e.cause,
                decided_by: e.decided_by,
                budget: e.budget,
            }
        })
        .collect();
    Detail {
        nodes,
        pods,
        launches,
        decisions,
        disruption_journal,
    }
}

fn decision(d: &Decided, secs: &dyn Fn(Millis) -> f64) -> DecisionReport {
    let mut r = DecisionReport {
        at: secs(d.at),
        action: String::new(),
        reason: wire_name(&d.why.reason),
        detail: d.why.detail.clone(),
        claim: None,
        node_pool: None,
        node: None,
        pod: None,
        instance_id: None,
        offering: None,
        pods: None,
        until: None,
    };
    r.action = match &d.action {
        Action::LaunchClaim {
            claim,
            node_pool,
            offering,
            pods,
        } => {
            r.claim = Some(claim.clone());
            r.node_pool = Some(node_pool.clone());
            r.offering = offering.as_ref().map(OfferingReport::from);
            r.pods = Some(*pods);
            "launch-claim"
        }
        Action::Cordon { node } => {
            r.node = Some(node.clone());
            "cordon"
        }
        Action::Uncordon { node } => {
            r.node = Some(node.clone());
            "uncordon"
        }
        Action::Evict { pod, node } => {
            r.pod = Some(pod.clone());
            r.node = Some(node.clone());
            "evict"
        }
        Action::Terminate { node, instance_id } => {
            r.node = node.clone();
            r.instance_id = Some(instance_id.clone());
            "terminate"
        }
        Action::AvoidOffering {
            instance_type,
            zone,
            capacity_type,
            until,
        } => {
            r.offering = Some(OfferingReport {
                instance_type: instance_type.clone(),
                zone: zone.clone(),
                capacity_type: capacity_type.label().to_string(),
                price_per_hour: None,
            });
            r.until = Some(secs(*until));
            "avoid-offering"
        }
    }
    .to_string();
    r
}

/// A node termination for a disruption or an interruption (not a claim given up while launching):
/// what the report's `disruptions` counts and the chart marks.
pub fn is_disruption(d: &DecisionReport) -> bool {
    d.action == "terminate" && d.node.is_some() && d.reason != wire_name(&Reason::Provisioning)
}
