//! Nodes and in-flight NodeClaims as the core sees them.

use std::collections::BTreeMap;

use super::catalog::CapacityType;
use super::requirements::Requirements;
use super::resources::ResourceList;
use super::taints::Taint;
use crate::clock::Millis;

/// A registered node (Kubernetes `Node` joined with its NodeClaim when Kestrel launched it).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    /// The NodePool that launched it; `None` for nodes Kestrel does not manage.
    pub node_pool: Option<String>,
    pub node_claim: Option<String>,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
    /// All node labels (well-known ones included; `kubernetes.io/hostname` is the node name).
    pub labels: std::sync::Arc<BTreeMap<String, String>>,
    pub taints: Vec<Taint>,
    pub allocatable: ResourceList,
    /// USD per hour of the offering it was launched from.
    pub price: f64,
    pub created_at: Millis,
    pub ready: bool,
    /// Karpenter's `initialized`: ready, startup taints removed, extended resources registered.
    pub initialized: bool,
    /// Cordoned or being disrupted: takes no new pods.
    pub marked_for_deletion: bool,
    pub unschedulable: bool,
}

impl Node {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// Whether the scheduler may place new pods here.
    pub fn accepts_pods(&self) -> bool {
        !self.marked_for_deletion && !self.unschedulable
    }
}

/// What a launched NodeClaim turned into (known once CreateFleet answered).
#[derive(Debug, Clone, PartialEq)]
pub struct Launched {
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
    pub price: f64,
    pub provider_id: String,
}

/// A NodeClaim: a request for one node, from planning until its node registers.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeClaim {
    pub name: String,
    pub node_pool: String,
    /// The requirements it was created with (NodePool's ∩ its pods', instance types narrowed).
    pub requirements: Requirements,
    /// The pods' requests it was sized for (daemonset overhead included).
    pub requests: ResourceList,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub startup_taints: Vec<Taint>,
    pub created_at: Millis,
    pub launched: Option<Launched>,
    /// Set once its node registered.
    pub node_name: Option<String>,
    pub marked_for_deletion: bool,
    /// Pods nominated to it that have not bound yet. A plan counts their room on the claim as taken
    /// (the controller holds them back from planning while the claim launches), except for those
    /// pending in the plan's own snapshot, which are planned (and may take that room) themselves.
    pub nominated: Vec<super::Pod>,
}
