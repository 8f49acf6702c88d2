//! The scheduler's filters as the simulator's kube-scheduler stand-in applies them to a real node.
//!
//! They read the pod's own `PodSpec` (nodeSelector, required node affinity, tolerations, topology spread,
//! anti-affinity), so a scenario's pod templates mean what they mean in Kubernetes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, PodSpec, Toleration};

use crate::cluster::{NodeState, PodSpecFacts, Taint};

/// Why a pod does not fit a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfit {
    Resources(&'static str),
    NodeSelector(String),
    NodeAffinity,
    Taint(String),
}

impl std::fmt::Display for Unfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unfit::Resources(r) => write!(f, "insufficient {r}"),
            Unfit::NodeSelector(k) => write!(f, "nodeSelector {k} does not match"),
            Unfit::NodeAffinity => write!(f, "required node affinity does not match"),
            Unfit::Taint(k) => write!(f, "untolerated taint {k}"),
        }
    }
}

/// Resources, labels and taints: what a node must offer a pod regardless of other pods.
pub fn node_fit(facts: &PodSpecFacts, node: &NodeState) -> Result<(), Unfit> {
    if let Some(r) = facts.requests.shortfall(&node.free()) {
        return Err(Unfit::Resources(r));
    }
    labels_fit(&facts.spec, |k| node.labels.get(k).map(String::as_str))?;
    taints_tolerated(&facts.spec, &node.taints)
}

/// nodeSelector and required node affinity against a label lookup (a node's, or an offering's).
pub fn labels_fit<'l>(
    spec: &PodSpec,
    labels: impl Fn(&str) -> Option<&'l str>,
) -> Result<(), Unfit> {
    if let Some(selector) = &spec.node_selector {
        for (k, v) in selector {
            if labels(k) != Some(v.as_str()) {
                return Err(Unfit::NodeSelector(format!("{k}={v}")));
            }
        }
    }
    let terms = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|s| &s.node_selector_terms);
    if let Some(terms) = terms
        && !terms.is_empty()
    {
        let any = terms.iter().any(|term| {
            term.match_expressions
                .as_deref()
                .unwrap_or_default()
                .iter()
                .all(|r| requirement_matches(r, &labels))
        });
        if !any {
            return Err(Unfit::NodeAffinity);
        }
    }
    Ok(())
}

pub fn requirement_matches<'l>(
    r: &NodeSelectorRequirement,
    labels: impl Fn(&str) -> Option<&'l str>,
) -> bool {
    let value = labels(&r.key);
    let values = r.values.as_deref().unwrap_or_default();
    let node_int = value.and_then(|v| v.parse::<i64>().ok());
    let bound = values.first().and_then(|v| v.parse::<i64>().ok());
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => matches!((node_int, bound), (Some(a), Some(b)) if a > b),
        "Lt" => matches!((node_int, bound), (Some(a), Some(b)) if a < b),
        _ => false,
    }
}

pub fn taints_tolerated(spec: &PodSpec, taints: &[Taint]) -> Result<(), Unfit> {
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    for taint in taints {
        if taint.effect == "PreferNoSchedule" {
            continue;
        }
        if !tolerations.iter().any(|t| tolerates(t, taint)) {
            return Err(Unfit::Taint(taint.key.clone()));
        }
    }
    Ok(())
}

fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect_ok = t
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    let key_ok = t
        .key
        .as_deref()
        .is_none_or(|k| k.is_empty() || k == taint.key);
    let value_ok = match t.operator.as_deref() {
        Some("Exists") => true,
        _ => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    };
    effect_ok && key_ok && value_ok
}

/// Topology spread (`DoNotSchedule`, zone or hostname) and required hostname anti-affinity, counting the
/// pod's own workload as the selected set (what scenarios' templates select). `peers(node)` counts the
/// workload's pods on a node.
pub fn topology_fit<'a>(
    facts: &PodSpecFacts,
    node: &NodeState,
    nodes: impl Iterator<Item = &'a NodeState> + Clone,
    peers: impl Fn(&NodeState) -> usize,
) -> bool {
    let anti_hostname = facts
        .spec
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|p| {
            p.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_some_and(|terms| terms.iter().any(|t| t.topology_key == HOSTNAME));
    if anti_hostname && peers(node) > 0 {
        return false;
    }
    for c in facts
        .spec
        .topology_spread_constraints
        .as_deref()
        .unwrap_or_default()
    {
        if c.when_unsatisfiable != "DoNotSchedule" {
            continue;
        }
        let max_skew = c.max_skew.max(1) as usize;
        if c.topology_key == HOSTNAME {
            // Every eligible node is its own domain; empty ones count, so the minimum is usually zero.
            let eligible: Vec<&NodeState> = nodes
                .clone()
                .filter(|n| n.ready && !n.cordoned && !n.deleting)
                .filter(|n| {
                    labels_fit(&facts.spec, |k| n.labels.get(k).map(String::as_str)).is_ok()
                })
                .collect();
            let min = eligible.iter().map(|n| peers(n)).min().unwrap_or(0);
            if peers(node) + 1 > min + max_skew {
                return false;
            }
        } else if c.topology_key == ZONE {
            let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
            for n in nodes.clone() {
                if labels_fit(&facts.spec, |k| n.labels.get(k).map(String::as_str)).is_ok() {
                    *per_zone.entry(n.zone.as_str()).or_default() += peers(n);
                }
            }
            let min_domains = c.min_domains.unwrap_or(1).max(1) as usize;
            let min = if per_zone.len() < min_domains {
                0
            } else {
                per_zone.values().copied().min().unwrap_or(0)
            };
            let here = per_zone.get(node.zone.as_str()).copied().unwrap_or(0);
            if here + 1 > min + max_skew {
                return false;
            }
        }
    }
    true
}

pub const HOSTNAME: &str = "kubernetes.io/hostname";
pub const ZONE: &str = "topology.kubernetes.io/zone";
