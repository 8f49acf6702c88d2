//! A thin adapter over the core's scheduling rules for callers that hold the edge's pod record
//! ([`PodSpecFacts`], the k8s `PodSpec` as the API server keeps it) and a label lookup rather than the
//! core's compiled [`crate::model::PodSpec`]. Operators, taints and tolerations are the model's
//! ([`crate::model::Requirement`], [`crate::model::taints`], [`crate::scheduling::fit::check_taints`]);
//! nothing here re-implements a rule.
//!
//! The simulator's scheduler stand-in ([`crate::cluster::sim::SimCluster`]) does not use this module: it
//! binds with [`crate::scheduling::fit`] directly, against every pod in the cluster. New code should do the
//! same (compile the template once with [`crate::controller::convert::pod_spec`], build
//! [`crate::scheduling::fit::Slot`]s); [`topology_fit`] remains only for `disruption::room`, and counts
//! the pod's own workload as the selected set.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, PodSpec, PodTemplateSpec};

use crate::cluster::{NodeState, PodSpecFacts, Taint};
use crate::model::{self, Requirement};
use crate::scheduling::fit as core_fit;

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

/// One `matchExpressions` entry against a label lookup, with the model's operator semantics (an
/// invalid requirement matches nothing, as the API server would have rejected it).
pub fn requirement_matches<'l>(
    r: &NodeSelectorRequirement,
    labels: impl Fn(&str) -> Option<&'l str>,
) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let Ok(requirement) = Requirement::parse(&r.key, &r.operator, values) else {
        return false;
    };
    let set = requirement.value_set();
    match labels(&r.key) {
        Some(v) => set.allows(v),
        None => set.allows_absent(),
    }
}

/// Taints with a scheduling effect the pod does not tolerate, judged by the core's
/// [`core_fit::check_taints`] on the pod's compiled tolerations.
pub fn taints_tolerated(spec: &PodSpec, taints: &[Taint]) -> Result<(), Unfit> {
    if taints.is_empty() {
        return Ok(());
    }
    // Only the tolerations matter here; compiling just them keeps this cheap.
    let template = PodTemplateSpec {
        metadata: None,
        spec: Some(PodSpec {
            tolerations: spec.tolerations.clone(),
            ..PodSpec::default()
        }),
    };
    let compiled = model::PodSpec::from_template("default", &template)
        .map_err(|_| Unfit::Taint(taints[0].key.clone()))?;
    match core_fit::check_taints(&compiled, taints) {
        Ok(()) => Ok(()),
        Err(core_fit::Failure::Taint(t)) => Err(Unfit::Taint(t.key)),
        Err(_) => Err(Unfit::Taint(taints[0].key.clone())),
    }
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

pub const HOSTNAME: &str = model::labels::HOSTNAME;
pub const ZONE: &str = model::labels::ZONE;

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn requirements_follow_the_model_operators() {
        let labels = BTreeMap::from([("gen".to_string(), "5".to_string())]);
        let lookup = |k: &str| labels.get(k).map(String::as_str);
        assert!(requirement_matches(&req("gen", "Gt", &["4"]), lookup));
        assert!(!requirement_matches(&req("gen", "Lt", &["5"]), lookup));
        assert!(requirement_matches(&req("zone", "NotIn", &["a"]), lookup));
        assert!(!requirement_matches(&req("zone", "In", &["a"]), lookup));
        // Invalid (Gt with two values) matches nothing.
        assert!(!requirement_matches(&req("gen", "Gt", &["1", "2"]), lookup));
    }

    #[test]
    fn tolerations_are_the_core_rules() {
        let taint = Taint::new("dedicated", Some("gpu"), model::TaintEffect::NoSchedule);
        let plain = PodSpec::default();
        assert_eq!(
            taints_tolerated(&plain, std::slice::from_ref(&taint)),
            Err(Unfit::Taint("dedicated".into()))
        );
        let tolerant: PodSpec = serde_yaml_ng::from_str(
            "containers: []\ntolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]\n",
        )
        .unwrap();
        assert_eq!(taints_tolerated(&tolerant, &[taint]), Ok(()));
        let soft = Taint::new("x", None, model::TaintEffect::PreferNoSchedule);
        assert_eq!(taints_tolerated(&plain, &[soft]), Ok(()));
    }
}
