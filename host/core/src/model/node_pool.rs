//! NodePools at the model level: what may be launched, for whom, and how it may be disrupted.
//!
//! The API layer (`crate::api`) parses and validates the CRD; this is the plain-value form the core uses.

use std::collections::BTreeMap;

use super::quantity::Quantity;
use super::requirements::{Requirement, Requirements};
use super::resources::ResourceList;
use super::taints::Taint;
use crate::clock::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConsolidationPolicy {
    WhenEmpty,
    #[default]
    WhenEmptyOrUnderutilized,
}

impl ConsolidationPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsolidationPolicy::WhenEmpty => "WhenEmpty",
            ConsolidationPolicy::WhenEmptyOrUnderutilized => "WhenEmptyOrUnderutilized",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "WhenEmpty" => Some(ConsolidationPolicy::WhenEmpty),
            "WhenEmptyOrUnderutilized" => Some(ConsolidationPolicy::WhenEmptyOrUnderutilized),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DisruptionReason {
    Empty,
    Underutilized,
    Drifted,
}

impl DisruptionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisruptionReason::Empty => "Empty",
            DisruptionReason::Underutilized => "Underutilized",
            DisruptionReason::Drifted => "Drifted",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Empty" => Some(DisruptionReason::Empty),
            "Underutilized" => Some(DisruptionReason::Underutilized),
            "Drifted" => Some(DisruptionReason::Drifted),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetNodes {
    Count(u32),
    Percent(u32),
}

impl BudgetNodes {
    /// How many of `total` nodes this allows: percentages round up, as Karpenter does
    /// (`GetScaledValueFromIntOrPercent(.., roundUp=true)`); one implementation, `api::BudgetNodes`.
    pub fn of(self, total: u32) -> u32 {
        crate::api::BudgetNodes::from(self).allowed(total)
    }
}

impl From<BudgetNodes> for crate::api::BudgetNodes {
    fn from(n: BudgetNodes) -> Self {
        match n {
            BudgetNodes::Count(c) => crate::api::BudgetNodes::Count(c),
            BudgetNodes::Percent(p) => crate::api::BudgetNodes::Percent(p),
        }
    }
}

/// One `spec.disruption.budgets` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Budget {
    pub nodes: BudgetNodes,
    /// Cron schedule (UTC), e.g. `0 9 * * mon-fri`; `None` = always active.
    pub schedule: Option<String>,
    /// How long after each schedule hit the budget is active (ms).
    pub duration: Option<Millis>,
    /// Empty = every reason.
    pub reasons: Vec<DisruptionReason>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Disruption {
    pub consolidation_policy: ConsolidationPolicy,
    /// `None` = `Never`.
    pub consolidate_after: Option<Millis>,
    pub budgets: Vec<Budget>,
}

impl Default for Disruption {
    /// Karpenter's defaults: consolidate when empty or underutilized after 0s, 10% of nodes at a time.
    fn default() -> Self {
        Disruption {
            consolidation_policy: ConsolidationPolicy::WhenEmptyOrUnderutilized,
            consolidate_after: Some(0),
            budgets: vec![Budget {
                nodes: BudgetNodes::Percent(10),
                schedule: None,
                duration: None,
                reasons: vec![],
            }],
        }
    }
}

/// Which policies (by name) a NodePool uses; `None` = the built-in default.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PolicyRefs {
    pub ranker: Option<String>,
    pub consolidator: Option<String>,
    pub budgeter: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodePool {
    pub name: String,
    /// Higher weight is tried first.
    pub weight: i32,
    pub requirements: Vec<Requirement>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// Taints present at start-up only (removed by an agent); pods need not tolerate them.
    pub startup_taints: Vec<Taint>,
    /// Caps on the total capacity of the pool's nodes, per named resource.
    pub limits: BTreeMap<String, Quantity>,
    pub node_class: Option<String>,
    pub expire_after: Option<Millis>,
    pub termination_grace_period: Option<Millis>,
    pub disruption: Disruption,
    pub policies: PolicyRefs,
}

impl NodePool {
    /// A pool allowing everything (tests, `bench pack`).
    pub fn new(name: &str) -> NodePool {
        NodePool {
            name: name.to_string(),
            weight: 0,
            requirements: vec![],
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            taints: vec![],
            startup_taints: vec![],
            limits: BTreeMap::new(),
            node_class: None,
            expire_after: None,
            termination_grace_period: None,
            disruption: Disruption::default(),
            policies: PolicyRefs::default(),
        }
    }

    /// Requirements plus template labels (each label is `key In [value]`) plus the nodepool label.
    pub fn compiled_requirements(&self) -> Requirements {
        let mut reqs = Requirements::from_requirements(&self.requirements);
        reqs = reqs.intersect(&Requirements::from_labels(&self.labels));
        let name_label =
            BTreeMap::from([(super::labels::NODE_POOL.to_string(), self.name.clone())]);
        reqs.intersect(&Requirements::from_labels(&name_label))
    }

    /// Whether adding `extra` to `used` stays within the limits; the first exceeded resource otherwise.
    pub fn exceeds_limits(&self, used: &ResourceList, extra: &ResourceList) -> Option<String> {
        self.limits.iter().find_map(|(name, limit)| {
            (used.get(name) + extra.get(name) > *limit).then(|| {
                format!(
                    "limit {name}={limit} reached (in use {}, node adds {})",
                    used.get(name),
                    extra.get(name)
                )
            })
        })
    }
}
