//! Disruption: which nodes to take away, and how, when they are no longer worth their price or no longer
//! what their NodePool asks for (owner: disruption).
//!
//! The core is pure: [`decide`] takes a [`ClusterView`] (nodes with their pods, PDBs, the NodePools'
//! disruption settings, the offerings and the time) plus the consolidator and budgeter policies, and
//! returns [`Command`]s with their [`MoveExplanation`]s. It never reads a clock and keeps no state; the
//! controller seam (`crate::controller::disruption`) keeps what must persist between passes (when a node's
//! pods last changed, each node's drift stamp, commands waiting for validation).
//!
//! Methods, in Karpenter v1 order:
//! 1. **expiration** ([`expiration`]): forceful, not budgeted; PDBs and `do-not-disrupt` hold it back until
//!    the NodePool's `terminationGracePeriod` has passed;
//! 2. **drift** ([`drift`]): NodePool template, EC2NodeClass, AMI/subnet/security group, requirements;
//! 3. **emptiness** and 4. **consolidation** ([`moves`]): multi-node, single-node delete, single-node
//!    replace, each proven with the scheduling predicates ([`room`]) before a policy sees it.
//!
//! Drift, emptiness and consolidation moves go to the consolidator policy, which picks and orders them;
//! the budgeter policy says how many nodes may go per reason; the host clamps both ([`budget`]).
pub mod budget;
pub mod cost;
pub mod decide;
pub mod drift;
pub mod expiration;
pub mod moves;
pub mod policies;
pub mod room;
pub mod safety;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::api::nodepool::Budget;
use crate::clock::Millis;
use crate::cloud::Offering;
use crate::cluster::{NodeState, PodState};
use crate::controller::provision::PlannedClaim;
use crate::controller::{InstanceTypeInfo, PoolSpec, Reason};
use crate::model::ConsolidationPolicy;

pub use decide::{Decision, decide};
pub use drift::DriftStamp;
pub use policies::{DisruptionPolicies, RegistryPolicies, SamePolicies};

pub use crate::model::labels::DO_NOT_DISRUPT;
/// Karpenter waits this long before it re-checks a chosen move and executes it.
pub const VALIDATION_DELAY_MS: Millis = 15_000;
/// A spot node is only replaced by a cheaper spot node when this many cheaper instance types remain
/// (otherwise consolidation would walk the fleet down to the types most likely to be interrupted).
pub const MIN_SPOT_TO_SPOT_TYPES: usize = 15;
/// Multi-node consolidation looks at the cheapest-to-disrupt candidates only (Karpenter: 100).
pub const MAX_MULTI_NODE_CANDIDATES: usize = 100;
/// Single-node moves computed per pass and NodePool (bounds the cost of a pass on big clusters).
pub const MAX_SINGLE_NODE_MOVES: usize = 50;
/// How many offerings a replacement claim carries for the cloud to fall through.
pub const REPLACEMENT_OFFERINGS: usize = 20;

/// A NodePool's disruption settings and the facts drift is judged against.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSettings {
    pub spec: PoolSpec,
    pub consolidation_policy: ConsolidationPolicy,
    /// `None` = `Never`.
    pub consolidate_after: Option<Millis>,
    /// `None` = `Never`.
    pub expire_after: Option<Millis>,
    /// `None` = wait for PDBs and `do-not-disrupt` pods forever.
    pub termination_grace_period: Option<Millis>,
    /// `spec.disruption.budgets`, with Karpenter's default (`10%`) filled in.
    pub budgets: Vec<Budget>,
    /// What a node launched now would be stamped with.
    pub drift: DriftStamp,
    /// What this pool may launch, cheapest first ([`room::launchables`] of the view's catalog; shared
    /// between passes while the catalog and the pool do not change).
    pub launchable: Arc<[room::Launchable]>,
}

/// A PodDisruptionBudget with how many evictions it allows right now.
#[derive(Debug, Clone, PartialEq)]
pub struct PdbView {
    pub name: String,
    pub selector: BTreeMap<String, String>,
    pub allowed: i64,
}

impl PdbView {
    pub fn selects(&self, pod: &PodState) -> bool {
        !self.selector.is_empty()
            && self
                .selector
                .iter()
                .all(|(k, v)| pod.facts.labels().get(k) == Some(v))
    }
}

/// A node with what disruption needs to know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub node: Arc<NodeState>,
    /// Pods bound here that a drain would evict (DaemonSet pods excluded).
    pub pods: Vec<PodState>,
    /// What the node was launched with (for drift).
    pub stamp: DriftStamp,
    /// `karpenter.sh/do-not-disrupt` on the node.
    pub do_not_disrupt: bool,
    /// The last time a pod was bound to or removed from this node (consolidateAfter counts from here).
    pub last_pod_change: Millis,
    /// When the node started being drained for expiry, if it is.
    pub expiring_since: Option<Millis>,
}

impl NodeView {
    pub fn name(&self) -> &str {
        &self.node.name
    }
}

/// Everything one disruption pass reads.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub now: Millis,
    pub nodes: Vec<NodeView>,
    pub pools: Vec<PoolSettings>,
    pub pdbs: Vec<PdbView>,
    pub instance_types: Arc<[InstanceTypeInfo]>,
    /// Launchable offerings now, with current prices.
    pub offerings: Arc<[Offering]>,
    /// Nodes already being drained or replaced.
    pub disrupting: BTreeSet<String>,
    /// NodeClaims launched and not registered yet (consolidation waits for provisioning to settle).
    pub in_flight_claims: usize,
    /// Pods waiting for a node.
    pub pending_pods: usize,
}

impl ClusterView {
    pub fn pool(&self, name: &str) -> Option<&PoolSettings> {
        self.pools.iter().find(|p| p.spec.name == name)
    }

    pub fn instance_type(&self, name: &str) -> Option<&InstanceTypeInfo> {
        self.instance_types.iter().find(|t| t.name == name)
    }
}

/// The disruption method that produced a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    Expiration,
    Drift,
    Emptiness,
    MultiNodeConsolidation,
    SingleNodeConsolidation,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Expiration => "expiration",
            Method::Drift => "drift",
            Method::Emptiness => "emptiness",
            Method::MultiNodeConsolidation => "multi-node consolidation",
            Method::SingleNodeConsolidation => "single-node consolidation",
        }
    }

    pub fn reason(self) -> Reason {
        match self {
            Method::Expiration => Reason::Expired,
            Method::Drift => Reason::Drifted,
            Method::Emptiness => Reason::Empty,
            Method::MultiNodeConsolidation | Method::SingleNodeConsolidation => {
                Reason::Underutilized
            }
        }
    }
}

/// The numbers of a move, for Events, logs and the simulator report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MoveExplanation {
    pub method: Method,
    pub reason: Reason,
    pub nodes: Vec<String>,
    /// e.g. "m5.xlarge on-demand $0.1920/h".
    pub removed: Vec<String>,
    pub replacement: Option<String>,
    pub savings_per_hour: f64,
    pub pods_moved: usize,
    pub disruption_cost: f64,
    pub oldest_node_age_seconds: i64,
    pub cpu_utilization: f64,
    pub memory_utilization: f64,
    /// Why this node qualified (drift cause, expiry age, ...).
    pub cause: String,
    /// Which policy chose the move, and any fallback.
    pub decided_by: String,
    /// The consolidator's own reason for this move (contract 0.2.0), if it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_reason: Option<String>,
    /// The budget that allowed it ("Underutilized: 2 of 3 allowed by default-budgeter@0.1.0").
    pub budget: String,
}

impl std::fmt::Display for MoveExplanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): remove {}",
            self.method.as_str(),
            self.cause,
            self.removed.join(", ")
        )?;
        if let Some(r) = &self.replacement {
            write!(f, ", launch {r}")?;
        }
        write!(
            f,
            "; saves ${:.4}/h, {} pods moved, disruption cost {:.2}, oldest node {}s, cpu {:.0}% mem {:.0}%; chosen by {}; budget {}",
            self.savings_per_hour,
            self.pods_moved,
            self.disruption_cost,
            self.oldest_node_age_seconds,
            self.cpu_utilization * 100.0,
            self.memory_utilization * 100.0,
            self.decided_by,
            self.budget
        )?;
        if let Some(r) = &self.policy_reason {
            write!(f, "; because {r}")?;
        }
        Ok(())
    }
}

/// One decided disruption: remove `nodes`, after `replacement` (if any) is ready.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub method: Method,
    pub nodes: Vec<String>,
    pub replacement: Option<PlannedClaim>,
    /// PDBs and `do-not-disrupt` no longer hold the drain back (expiry past its grace period).
    pub forceful: bool,
    /// The pods on `nodes` when the move was computed (validation drops the command if they changed).
    pub pods: BTreeSet<String>,
    pub explanation: MoveExplanation,
}

#[cfg(test)]
mod properties;
