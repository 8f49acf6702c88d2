//! The cluster edge: what the controller reads from Kubernetes and the few writes it makes.
//!
//! [`ClusterState`] is shaped after what Karpenter does against the API server, so the production adapter
//! (`cluster::kube`: reflectors over pods, nodes, NodeClaims, PDBs; the Eviction API; node
//! cordon/delete with finalizers) implements it without the controller changing. Binding pods to nodes is
//! the kube-scheduler's job, not the controller's: in production the real scheduler does it, in the
//! simulator [`sim::SimCluster`] stands in for it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::clock::Millis;
use crate::cloud::CapacityType;

pub mod registration;

/// Requests and capacities: the core's exact resource lists (ephemeral storage and extended resources
/// such as GPUs of each vendor or pod ENIs included), so the edge never loses a resource the core
/// schedules by.
pub use crate::model::ResourceList;

/// A stable pod identity (namespace/name in production).
pub type PodKey = Arc<str>;

/// What kind of owner a pod has (controls what happens after an eviction, and safety rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OwnerKind {
    Deployment,
    Job,
    DaemonSet,
    /// A bare pod: nothing recreates it after an eviction.
    None,
}

/// The scheduling facts of a pod, shared by every replica of one template.
///
/// Built only by [`PodSpecFacts::compile`]; requests, labels and annotations are read from the one
/// compiled spec, so they always agree with the template.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSpecFacts {
    /// The workload (Deployment, Job, DaemonSet) the pod belongs to.
    pub workload: Arc<str>,
    pub owner: OwnerKind,
    pub spec: k8s_openapi::api::core::v1::PodSpec,
    /// The pod as the scheduling core sees it, compiled once per template (namespace `default`).
    pub compiled: Arc<crate::model::PodSpec>,
}

impl PodSpecFacts {
    /// The pod's effective requests (containers and sidecars against init containers, plus overhead).
    pub fn requests(&self) -> &ResourceList {
        &self.compiled.requests
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.compiled.labels
    }

    /// `karpenter.sh/do-not-disrupt: "true"`.
    pub fn do_not_disrupt(&self) -> bool {
        self.compiled.do_not_disrupt
    }

    /// `controller.kubernetes.io/pod-deletion-cost` (0 when absent), which orders evictions.
    pub fn deletion_cost(&self) -> i32 {
        self.compiled.deletion_cost
    }

    /// The pod's priority (0 when unset).
    pub fn priority(&self) -> i32 {
        self.compiled.priority
    }

    /// Compiles a workload's pod template once; every replica shares the result.
    pub fn compile(
        workload: &str,
        owner: OwnerKind,
        template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    ) -> Result<PodSpecFacts, crate::model::PodError> {
        let mut compiled = crate::model::PodSpec::from_template("default", template)?;
        compiled.owner = match owner {
            OwnerKind::Deployment => Some("ReplicaSet"),
            OwnerKind::Job => Some("Job"),
            OwnerKind::DaemonSet => Some("DaemonSet"),
            OwnerKind::None => None,
        }
        .map(|kind| crate::model::Owner {
            kind: kind.to_string(),
            name: workload.to_string(),
        });
        Ok(PodSpecFacts {
            workload: Arc::from(workload),
            owner,
            spec: template.spec.clone().unwrap_or_default(),
            compiled: Arc::new(compiled),
        })
    }
}

/// Test capacities: CPU in millicores, memory in bytes, pod slots.
#[cfg(test)]
pub(crate) fn capacity(cpu_millis: i64, memory_bytes: i64, pods: i64) -> ResourceList {
    use crate::model::{Quantity, resources};
    ResourceList::new()
        .with(
            resources::CPU,
            Quantity::from_millis(i128::from(cpu_millis)),
        )
        .with(resources::MEMORY, Quantity::from_units(memory_bytes))
        .with(resources::PODS, Quantity::from_units(pods))
}

/// Test facts from a pod template written as YAML.
#[cfg(test)]
pub(crate) fn facts_from_yaml(
    workload: &str,
    owner: OwnerKind,
    template: &str,
) -> Arc<PodSpecFacts> {
    let template: k8s_openapi::api::core::v1::PodTemplateSpec =
        serde_yaml_ng::from_str(template).expect("test template parses");
    Arc::new(PodSpecFacts::compile(workload, owner, &template).expect("test template compiles"))
}

#[derive(Debug, Clone, PartialEq)]
pub struct PodState {
    pub key: PodKey,
    pub facts: Arc<PodSpecFacts>,
    pub created_at: Millis,
    /// The node the pod is bound to; None while pending.
    pub node: Option<Arc<str>>,
    pub bound_at: Option<Millis>,
    /// The NodeClaim (or node) the provisioner expects this pod to land on (Karpenter's nomination).
    pub nominated: Option<Arc<str>>,
}

/// Node taints are the model's ([`crate::model::Taint`]); re-exported for the edge's callers.
pub use crate::model::Taint;

#[derive(Debug, Clone, PartialEq)]
pub struct NodeState {
    pub name: Arc<str>,
    pub instance_id: String,
    pub claim: String,
    pub node_pool: String,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
    pub price: f64,
    /// Shared: snapshots clone nodes often.
    pub labels: Arc<BTreeMap<String, String>>,
    /// The Node's annotations (its NodeClaim's, from the NodePool template, synced at registration as
    /// Karpenter does): `karpenter.sh/do-not-disrupt` here blocks voluntary disruption of the node.
    pub annotations: Arc<BTreeMap<String, String>>,
    pub taints: Vec<Taint>,
    pub allocatable: ResourceList,
    /// Sum of the requests of the pods bound here.
    pub requested: ResourceList,
    pub pods: usize,
    pub created_at: Millis,
    pub ready: bool,
    /// `spec.unschedulable` (cordoned).
    pub cordoned: bool,
    /// Being drained and deleted; nothing new binds here.
    pub deleting: bool,
}

impl NodeState {
    /// `karpenter.sh/do-not-disrupt: "true"` on the node: no voluntary disruption (consolidation,
    /// drift) picks it; expiry and interruptions still do.
    pub fn do_not_disrupt(&self) -> bool {
        self.annotations
            .get(crate::model::labels::DO_NOT_DISRUPT)
            .is_some_and(|v| v == "true")
    }

    pub fn free(&self) -> ResourceList {
        self.allocatable.minus(&self.requested)
    }

    /// The node as the scheduling core's slot, with no pods on it yet and [`Self::free`] room.
    pub fn slot(&self) -> crate::scheduling::fit::Slot {
        crate::scheduling::fit::Slot::new(
            self.name.to_string(),
            self.labels.clone(),
            self.taints.clone(),
            self.free(),
            self.ready && !self.cordoned && !self.deleting,
        )
    }

    /// Whether `requests` fit in what the pods bound here leave (without building [`Self::free`]).
    pub fn has_room_for(&self, requests: &ResourceList) -> bool {
        requests.fits_in_remaining(&self.allocatable, &self.requested)
    }
}

/// A PodDisruptionBudget: at most `max_unavailable` of the pods matching `selector` may be evicted
/// (or, with `min_available`, at least that many must stay running).
#[derive(Debug, Clone, PartialEq)]
pub struct DisruptionBudget {
    pub name: String,
    pub selector: BTreeMap<String, String>,
    pub min_available: Option<i64>,
    pub max_unavailable: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClusterError {
    #[error("pod {0} not found")]
    PodNotFound(String),
    #[error("node {0} not found")]
    NodeNotFound(String),
    /// The Eviction API's 429 while a PodDisruptionBudget forbids the eviction.
    #[error("eviction of pod {pod} blocked by PodDisruptionBudget {budget}")]
    EvictionBlocked { pod: String, budget: String },
    /// The API server's own rate limit or a transient failure; nothing happened.
    #[error("API server: {0}")]
    Unavailable(String),
}

/// The durable record of a claim: the NodeClaim object in production, written before its launch and
/// kept for its node's life. It carries what a restarted controller needs to resume: the unique name
/// (the launch's idempotency token), the pool, the ranked offerings, the instance once known, and the
/// drain under way, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRecord {
    pub name: String,
    pub node_pool: String,
    /// The NodePool's template the claim was made from (the NodeClaim's spec, labels and
    /// annotations): what its launch and its node's registration use, even after the NodePool
    /// changed (a changed template is drift, not a rewrite of existing claims).
    pub template: Arc<crate::api::NodeClaimTemplate>,
    pub created_at: Millis,
    /// What the launch asks for, best first (emptied once launched).
    pub offerings: Arc<[crate::cloud::Offering]>,
    pub reason: crate::controller::Reason,
    /// Pods it was launched for. A provisioning claim's pods are nominated to it; the record keeps
    /// them too, because the nominations are separate writes a crash can lose (written alongside the
    /// record, not before it): a restarted controller nominates them again rather than planning them
    /// a second time.
    pub pods: Vec<PodKey>,
    pub instance_id: Option<String>,
    pub offering: Option<crate::cloud::Offering>,
    /// The drain of its node, once disruption started (Karpenter's `Disrupting` condition and the
    /// `karpenter.sh/disrupted` taint).
    pub drain: Option<DrainRecord>,
}

/// A drain as the claim record keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct DrainRecord {
    pub reason: crate::controller::Reason,
    /// Evict by then even if the replacements are not ready.
    pub drain_by: Millis,
    /// Replacement claims that must register first.
    pub waiting_for: Vec<String>,
    pub forceful: bool,
    pub abort_without_replacement: bool,
    pub detail: String,
}

/// The taint key a node being disrupted (drained for an interruption, consolidation, drift,
/// expiry) carries, as Karpenter v1 writes it.
pub const DISRUPTED_TAINT_KEY: &str = "karpenter.sh/disrupted";

/// `karpenter.sh/disrupted:NoSchedule`, added by [`ClusterWriter::cordon`].
pub fn disrupted_taint() -> Taint {
    Taint::new(
        DISRUPTED_TAINT_KEY,
        None,
        crate::model::TaintEffect::NoSchedule,
    )
}

/// The cluster as the controller reads it: one consistent picture per tick (reflector stores in
/// production, the simulated cluster in the simulator). The controller never writes through it; it
/// emits commands that an executor carries out with [`ClusterWriter`].
pub trait ClusterState {
    /// Pods waiting for a node.
    fn pending_pods(&self) -> Vec<PodState>;
    /// Changes whenever a pod becomes pending (a watch's resourceVersion in production), so the loop
    /// re-reads pending pods only when there is something new.
    fn pending_revision(&self) -> u64;
    /// Pods bound to nodes.
    fn bound_pods(&self) -> Vec<PodState>;
    /// Every node, ready or not, by name (shared records: a snapshot costs a pointer per node).
    fn nodes(&self) -> Vec<Arc<NodeState>>;
    /// The pods bound to a node.
    fn pods_on(&self, node: &str) -> Vec<PodState>;
    /// The PodDisruptionBudgets (disruption avoids moves they would forbid).
    fn disruption_budgets(&self) -> Vec<DisruptionBudget> {
        Vec::new()
    }
    /// The claim records (NodeClaims), for a controller that starts (or takes over) to resume from.
    fn claim_records(&self) -> Vec<ClaimRecord>;
    /// The node the claim's instance registered as, if it has (the kube adapter matches Nodes to
    /// NodeClaims by providerID; an index makes this cheap).
    fn node_of_claim(&self, claim: &str) -> Option<Arc<NodeState>> {
        self.nodes().into_iter().find(|n| n.claim == claim)
    }
    /// Changes whenever a node registers (a Node watch's resourceVersion in production), so the
    /// controller looks for its claims' nodes only when there may be a new one. `None`: not tracked,
    /// look every tick.
    fn nodes_revision(&self) -> Option<u64> {
        None
    }
}

/// The writes the controller's commands make to the cluster (the executor's side of the edge).
pub trait ClusterWriter {
    /// Records that the provisioner expects `pod` to land on the NodeClaim `claim` (an Event in
    /// production; a binding hint for the simulator's scheduler).
    fn nominate(&mut self, pod: &str, claim: &str) -> Result<(), ClusterError>;
    /// Taints the node [`disrupted_taint`] and marks it unschedulable (Karpenter v1's disruption
    /// taint, so pods that tolerate cordons do not land on a node about to go).
    fn cordon(&mut self, node: &str) -> Result<(), ClusterError>;
    /// Makes the node schedulable again and removes [`disrupted_taint`] (an aborted disruption).
    fn uncordon(&mut self, node: &str) -> Result<(), ClusterError>;
    /// Evicts a pod through the Eviction API (PDBs apply unless `force`); its controller recreates it.
    fn evict(&mut self, pod: &str, force: bool, now: Millis) -> Result<(), ClusterError>;
    /// Deletes the Node object; pods still bound are deleted with it (and recreated by their owners).
    fn delete_node(&mut self, node: &str, now: Millis) -> Result<(), ClusterError>;
    /// Creates or replaces a claim record.
    fn write_claim(&mut self, record: &ClaimRecord) -> Result<(), ClusterError>;
    /// Deletes a claim record; deleting a missing one is not an error.
    fn delete_claim(&mut self, name: &str) -> Result<(), ClusterError>;
}
