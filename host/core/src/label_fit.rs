//! Node selectors and required node affinity judged against a label *lookup* rather than a node's label
//! map: an offering's labels are computed on demand (`PoolSpec::label`), and a drift check reads a
//! node's labels. Operators are the model's ([`crate::model::Requirement`]); nothing here re-implements a
//! rule. Placing pods on nodes uses [`crate::scheduling::fit`] on the compiled spec instead.

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, PodSpec};

use crate::model::{self, Requirement};

/// Why a pod's labels requirements do not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfit {
    NodeSelector(String),
    NodeAffinity,
}

impl std::fmt::Display for Unfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unfit::NodeSelector(k) => write!(f, "nodeSelector {k} does not match"),
            Unfit::NodeAffinity => write!(f, "required node affinity does not match"),
        }
    }
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
        let labels = std::collections::BTreeMap::from([("gen".to_string(), "5".to_string())]);
        let lookup = |k: &str| labels.get(k).map(String::as_str);
        assert!(requirement_matches(&req("gen", "Gt", &["4"]), lookup));
        assert!(!requirement_matches(&req("gen", "Lt", &["5"]), lookup));
        assert!(requirement_matches(&req("zone", "NotIn", &["a"]), lookup));
        assert!(!requirement_matches(&req("zone", "In", &["a"]), lookup));
        // Invalid (Gt with two values) matches nothing.
        assert!(!requirement_matches(&req("gen", "Gt", &["1", "2"]), lookup));
    }
}
