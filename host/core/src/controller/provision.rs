//! The provisioning step's seam: pending pods + capacity -> NodeClaims to launch.
//!
//! [`Provisioner`] is what the controller calls once per closed batch; the provisioning core's planner
//! (`controller::planner`) is the provisioner. (The earlier greedy stand-in packer is gone: it was a
//! second, weaker copy of the core's packing.)

use std::sync::Arc;

use super::{InstanceTypeInfo, PoolSpec};
use crate::cloud::Offering;
use crate::cluster::{NodeState, PodKey, PodState, ResourceList};
use crate::policy::contract::rank;

/// What the provisioner sees.
pub struct ProvisionInput<'a> {
    pub now: crate::clock::Millis,
    pub pending: &'a [PodState],
    /// Pods bound to nodes (only when [`Provisioner::needs_bound_pods`]).
    pub bound: &'a [PodState],
    /// Claims launched whose nodes have not registered yet.
    pub in_flight: &'a [crate::model::NodeClaim],
    pub nodes: &'a [Arc<NodeState>],
    pub pools: &'a [PoolSpec],
    /// Same order as `contract_catalog.instance_types`.
    pub instance_types: &'a [InstanceTypeInfo],
    /// The catalog in policy-contract form (rankers are primed with it once per revision).
    pub contract_catalog: &'a rank::Catalog,
    /// Launchable offerings now (unavailable ones already removed), with current prices.
    pub offerings: &'a [Offering],
    /// Changes whenever `offerings` change; what a provisioner derives from the offerings (and the
    /// fixed instance types) may be cached by it.
    pub offerings_revision: u64,
    /// Requests of the DaemonSets that will run on each new node of a pool.
    pub daemon_overhead: &'a dyn Fn(&PoolSpec, &InstanceTypeInfo) -> ResourceList,
    /// A per-decision seed for rankers that break ties at random.
    pub seed: u64,
}

/// One NodeClaim to launch.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedClaim {
    pub node_pool: String,
    /// Ranked, best first.
    pub offerings: Vec<Offering>,
    pub pods: Vec<PodKey>,
    /// Why this shape: the chosen offering and the alternatives' scores.
    pub explanation: String,
    /// The core's NodeClaim (requirements, requests, labels), kept while the claim is in flight.
    pub core: Option<crate::model::NodeClaim>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProvisionPlan {
    pub claims: Vec<PlannedClaim>,
    /// Pods that fit no offering of any NodePool, with the reason per NodePool.
    pub unplaceable: Vec<(PodKey, String)>,
    /// Policy fallbacks that happened while deciding (counted in the report).
    pub policy_fallbacks: Vec<String>,
    /// Pods that fit a claim still launching: (pod, claim name).
    pub nominations: Vec<(PodKey, String)>,
}

pub trait Provisioner {
    fn plan(&mut self, input: &ProvisionInput<'_>) -> ProvisionPlan;
    /// For the report, e.g. the planner and its ranker policy.
    fn name(&self) -> String;
    /// Whether `ProvisionInput::bound` must be filled (inter-pod constraints, existing room).
    fn needs_bound_pods(&self) -> bool {
        false
    }
    /// The process restarted: drop any state beyond derived caches.
    fn forget(&mut self) {}
}
