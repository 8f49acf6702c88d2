//! The provisioning plan: what to bind where, what to launch, and what cannot be placed (and why).

use std::fmt;

use crate::model::{CapacityType, Requirements, ResourceList, Taint};
use std::collections::BTreeMap;

/// One offering a planned claim may launch as, with the ranker's score (effective USD/hour, lower is
/// better).
#[derive(Debug, Clone, PartialEq)]
pub struct RankedOffering {
    /// Index into `snapshot.catalog.offerings`.
    pub offering: usize,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
    pub price: f64,
    pub score: f64,
}

/// A NodeClaim to create.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedClaim {
    pub node_pool: String,
    /// Indexes into `snapshot.pods` of the pods it is launched for.
    pub pods: Vec<usize>,
    /// Offerings to launch as, best first (at most 60, CreateFleet's limit). The first is the packer's
    /// choice; the rest hold the same pods and are fallbacks for insufficient capacity.
    pub offerings: Vec<RankedOffering>,
    /// The claim's requirements: NodePool ∩ pods' node terms, narrowed to the offered instance types.
    pub requirements: Requirements,
    /// Pods' requests plus the daemonset overhead.
    pub requests: ResourceList,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub startup_taints: Vec<Taint>,
    /// Why this shape: pods, chosen offering, cost, alternatives.
    pub explanation: String,
}

impl PlannedClaim {
    /// The hourly cost the plan assumes (the best offering's price).
    pub fn price(&self) -> f64 {
        self.offerings.first().map_or(0.0, |o| o.price)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingTarget {
    /// A registered node.
    Node(String),
    /// An in-flight NodeClaim (its node has not registered yet).
    NodeClaim(String),
}

/// A pending pod that fits capacity that exists or is already launching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Index into `snapshot.pods`.
    pub pod: usize,
    pub target: BindingTarget,
}

/// A pod nothing can hold, with the reason per NodePool (and for existing capacity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    pub pod: usize,
    /// (NodePool name, or "existing nodes"; the constraint that failed).
    pub reasons: Vec<(String, String)>,
}

impl fmt::Display for Unschedulable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(pool, reason)| format!("{pool}: {reason}"))
            .collect();
        write!(f, "{}", parts.join("; "))
    }
}

/// Which ranker decided for a NodePool, and whether it fell back.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolRanking {
    pub node_pool: String,
    pub decided_by: String,
    pub fallback: Option<crate::policy::Fallback>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProvisioningPlan {
    pub bindings: Vec<Binding>,
    pub claims: Vec<PlannedClaim>,
    pub unschedulable: Vec<Unschedulable>,
    pub rankings: Vec<PoolRanking>,
}

impl ProvisioningPlan {
    /// Total hourly cost of the new claims.
    pub fn cost_per_hour(&self) -> f64 {
        self.claims.iter().map(PlannedClaim::price).sum()
    }
}
