//! One consistent picture of the cluster per tick, read from the reflectors' stores.
//!
//! The controller reads a [`kestrel_core::cluster::ClusterState`]; this builds it once per tick from
//! the stores (so every step of a tick sees the same pods, nodes and claims), compiling each pod's
//! scheduling facts once per pod for its life (by uid), not once per tick.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kestrel_core::api::{NodeClaim, NodePool};
use kestrel_core::clock::Millis;
use kestrel_core::cloud::CapacityType;
use kestrel_core::cluster::{
    ClaimRecord, ClusterState, DisruptionBudget, NodeState, OwnerKind, PodSpecFacts, PodState,
    ResourceList, Taint,
};
use kestrel_core::controller::{CAPACITY_TYPE_LABEL, NODEPOOL_LABEL, ZONE_LABEL};
use kube::ResourceExt;

use crate::record::{self, RECORD_ANNOTATION};
use crate::watch::Reflectors;

/// The pod annotation naming the NodeClaim the provisioner expects the pod on. Karpenter keeps its
/// nominations in memory; Kestrel writes them down so a restarted controller does not plan a pod
/// again whose claim is still launching.
pub const NOMINATION_ANNOTATION: &str = "kestrel.dev/nominated-nodeclaim";
/// Taints the node lifecycle sets and clears on its own while a node starts (Karpenter's "known
/// ephemeral taints"): planning ignores them, or every starting node would look useless and be
/// replaced by another.
/// `karpenter.sh/unregistered` is among them: Kestrel removes it itself at registration, and a
/// node seen before that write lands must not look useless to the pods waiting for it.
pub const EPHEMERAL_TAINTS: [&str; 4] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
    "node.cloudprovider.kubernetes.io/uninitialized",
    "karpenter.sh/unregistered",
];
/// The label carrying a node's instance type.
pub const INSTANCE_TYPE_LABEL: &str = "node.kubernetes.io/instance-type";

/// Compiled pod facts, by pod uid, kept across ticks.
#[derive(Default)]
pub struct FactsCache {
    by_uid: HashMap<String, Arc<PodSpecFacts>>,
}

impl FactsCache {
    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }
}

/// The annotation the kubelet puts on the API server's copy of a static pod (a mirror pod).
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// What a pod's owner reference says about who recreates it. A mirror pod (a static pod the
/// kubelet runs from its own manifest) is the node's own, like a DaemonSet's: it is never evicted
/// and goes with its node, so the core is told it is a DaemonSet's.
fn owner_of(meta: &ObjectMeta) -> (OwnerKind, String) {
    if meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
    {
        return (OwnerKind::DaemonSet, meta.name.clone().unwrap_or_default());
    }
    let owner = meta
        .owner_references
        .as_ref()
        .and_then(|o| o.iter().find(|r| r.controller == Some(true)).or(o.first()));
    match owner {
        Some(o) => {
            let kind = match o.kind.as_str() {
                "DaemonSet" => OwnerKind::DaemonSet,
                "Job" => OwnerKind::Job,
                // A ReplicaSet's or StatefulSet's pod is recreated by its controller.
                _ => OwnerKind::Deployment,
            };
            (kind, o.name.clone())
        }
        None => (OwnerKind::None, meta.name.clone().unwrap_or_default()),
    }
}

/// A pod's facts as the core compiles them (its labels, annotations and spec as a template).
pub fn compile_pod(pod: &Pod) -> Result<PodSpecFacts, kestrel_core::model::PodError> {
    let (owner, workload) = owner_of(&pod.metadata);
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: pod.metadata.labels.clone(),
            annotations: pod.metadata.annotations.clone(),
            ..ObjectMeta::default()
        }),
        spec: pod.spec.clone(),
    };
    PodSpecFacts::compile(&workload, owner, &template)
}

/// Whether the pod is one the provisioner should find a node for (Karpenter's rule): the scheduler
/// said Unschedulable, it is not bound, not terminating, not finished and not a DaemonSet's.
pub fn is_provisionable(pod: &Pod) -> bool {
    let spec_bound = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some();
    let status = pod.status.as_ref();
    let unschedulable = status.and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
        c.iter().any(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
    });
    let finished = status
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    unschedulable
        && !spec_bound
        && !finished
        && pod.metadata.deletion_timestamp.is_none()
        && owner_of(&pod.metadata).0 != OwnerKind::DaemonSet
}

fn millis(t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Millis {
    t.map(|t| t.0.as_millisecond()).unwrap_or(0)
}

/// The core's resource list from a Kubernetes quantity map (entries that do not parse are left out).
pub fn resources(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> ResourceList {
    let mut list = ResourceList::new();
    for (name, q) in map.into_iter().flatten() {
        match kestrel_core::model::Quantity::parse(&q.0) {
            Ok(v) => list.set(name, v),
            Err(err) => tracing::warn!(resource = %name, value = %q.0, %err, "quantity ignored"),
        }
    }
    list
}

/// The cluster as of one tick.
pub struct Snapshot {
    pub now: Millis,
    pending: Vec<PodState>,
    bound: Vec<PodState>,
    by_node: HashMap<Arc<str>, Vec<usize>>,
    nodes: Vec<Arc<NodeState>>,
    budgets: Vec<DisruptionBudget>,
    records: Vec<ClaimRecord>,
    pending_revision: u64,
    pub node_pools: Vec<Arc<NodePool>>,
    pub node_claims: HashMap<String, Arc<NodeClaim>>,
    /// Nodes by name, as the API server holds them.
    pub node_objects: HashMap<String, Arc<Node>>,
}

impl Snapshot {
    pub fn build(reflectors: &Reflectors, cache: &mut FactsCache, now: Millis) -> Snapshot {
        let pending_revision = reflectors
            .pod_revision
            .load(std::sync::atomic::Ordering::SeqCst);
        let claims: HashMap<String, Arc<NodeClaim>> = reflectors
            .node_claims
            .state()
            .into_iter()
            .map(|c| (c.name_any(), c))
            .collect();
        let mut records = Vec::new();
        for claim in claims.values() {
            let pool = claim
                .labels()
                .get(NODEPOOL_LABEL)
                .cloned()
                .unwrap_or_default();
            let Some(annotation) = claim.annotations().get(RECORD_ANNOTATION) else {
                // Not one of Kestrel's claims (a hand-written one): nothing to resume.
                continue;
            };
            match record::decode(&claim.name_any(), &pool, annotation) {
                Ok(r) => records.push(r),
                Err(err) => tracing::warn!(%err, "NodeClaim record ignored"),
            }
        }
        let by_instance: HashMap<&str, &ClaimRecord> = records
            .iter()
            .filter_map(|r| Some((r.instance_id.as_deref()?, r)))
            .collect();

        // Pods: facts compiled once per uid.
        let mut live = HashMap::with_capacity(cache.by_uid.len());
        let mut pending = Vec::new();
        let mut bound = Vec::new();
        for pod in reflectors.pods.state() {
            let Some(uid) = pod.metadata.uid.clone() else {
                continue;
            };
            let finished = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|p| p == "Succeeded" || p == "Failed");
            if finished {
                continue;
            }
            let facts = match cache.by_uid.remove(&uid) {
                Some(f) => f,
                None => match compile_pod(&pod) {
                    Ok(f) => Arc::new(f),
                    Err(err) => {
                        tracing::warn!(pod = %pod.name_any(), %err, "pod cannot be scheduled by Kestrel; ignored");
                        continue;
                    }
                },
            };
            // Zones its volumes pin it to: looked up each time (a claim binds, a volume appears),
            // the facts rebuilt only when they change.
            let zones = crate::volumes::zones(&pod, reflectors);
            let facts = if facts.compiled.volume_zones != zones {
                let mut f = (*facts).clone();
                std::sync::Arc::make_mut(&mut f.compiled).volume_zones = zones;
                Arc::new(f)
            } else {
                facts
            };
            live.insert(uid, facts.clone());
            let key: Arc<str> = Arc::from(format!(
                "{}/{}",
                pod.namespace().unwrap_or_default(),
                pod.name_any()
            ));
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            let state = PodState {
                key,
                facts,
                created_at: millis(pod.metadata.creation_timestamp.as_ref()),
                node: node.as_deref().map(Arc::from),
                bound_at: node
                    .as_ref()
                    .map(|_| millis(pod.metadata.creation_timestamp.as_ref())),
                nominated: pod
                    .annotations()
                    .get(NOMINATION_ANNOTATION)
                    .map(|c| Arc::from(c.as_str())),
            };
            if node.is_some() {
                bound.push(state);
            } else if is_provisionable(&pod) {
                pending.push(state);
            }
        }
        cache.by_uid = live;
        let mut by_node: HashMap<Arc<str>, Vec<usize>> = HashMap::new();
        for (i, p) in bound.iter().enumerate() {
            if let Some(n) = &p.node {
                by_node.entry(n.clone()).or_default().push(i);
            }
        }

        let mut node_objects = HashMap::new();
        let mut nodes = Vec::new();
        for node in reflectors.nodes.state() {
            let name = node.name_any();
            let state = node_state(
                &node,
                &by_instance,
                &bound,
                by_node.get(name.as_str()),
                &claims,
            );
            node_objects.insert(name, node);
            nodes.push(Arc::new(state));
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));

        let budgets = reflectors
            .pdbs
            .state()
            .iter()
            .filter_map(|pdb| budget(pdb))
            .collect();
        Snapshot {
            now,
            pending,
            bound,
            by_node,
            nodes,
            budgets,
            records,
            pending_revision,
            node_pools: reflectors.node_pools.state(),
            node_claims: claims,
            node_objects,
        }
    }

    /// Nodes whose Node or NodeClaim is being deleted (by hand: Kestrel's own deletions come after
    /// the drain), with when the deletion was asked and the claim's terminationGracePeriod.
    pub fn deleting_nodes(&self) -> BTreeMap<String, crate::deletion::Deletion> {
        let mut out = BTreeMap::new();
        for n in self.nodes.iter().filter(|n| n.deleting) {
            let node_since = self
                .node_objects
                .get(&*n.name)
                .and_then(|o| o.metadata.deletion_timestamp.as_ref())
                .map(|t| t.0.as_millisecond());
            let claim = self.node_claims.get(&n.claim);
            let claim_since = claim
                .and_then(|c| c.metadata.deletion_timestamp.as_ref())
                .map(|t| t.0.as_millisecond());
            let grace_ms = claim.and_then(|c| match c.spec.termination_grace_period() {
                Ok(g) => g.map(|d| d.as_millis() as Millis),
                Err(err) => {
                    tracing::warn!(claim = %n.claim, %err, "terminationGracePeriod ignored");
                    None
                }
            });
            let since = match (node_since, claim_since) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(self.now),
            };
            out.insert(
                n.name.to_string(),
                crate::deletion::Deletion { since, grace_ms },
            );
        }
        out
    }

    /// The node registered for a claim, if any.
    pub fn node_of_claim(&self, claim: &str) -> Option<&Arc<NodeState>> {
        self.nodes.iter().find(|n| n.claim == claim)
    }
}

fn node_state(
    node: &Node,
    by_instance: &HashMap<&str, &ClaimRecord>,
    bound: &[PodState],
    on_node: Option<&Vec<usize>>,
    claims: &HashMap<String, Arc<NodeClaim>>,
) -> NodeState {
    let labels = node.labels().clone();
    let spec = node.spec.clone().unwrap_or_default();
    let instance_id = spec
        .provider_id
        .as_deref()
        .and_then(record::instance_of_provider_id)
        .unwrap_or_default()
        .to_string();
    let record = by_instance.get(instance_id.as_str()).copied();
    let offering = record.and_then(|r| r.offering.clone());
    let status = node.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .as_ref()
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let mut requested = ResourceList::new();
    let mut pods = 0;
    for &i in on_node.into_iter().flatten() {
        requested.add(bound[i].facts.requests());
        pods += 1;
    }
    let initialized = labels
        .get(crate::registration::INITIALIZED_LABEL)
        .is_some_and(|v| v == "true");
    let claim_deleting = record
        .and_then(|r| claims.get(&r.name))
        .is_some_and(|c| c.metadata.deletion_timestamp.is_some());
    NodeState {
        name: Arc::from(node.name_any()),
        claim: record.map(|r| r.name.clone()).unwrap_or_default(),
        node_pool: record
            .map(|r| r.node_pool.clone())
            .or_else(|| labels.get(NODEPOOL_LABEL).cloned())
            .unwrap_or_default(),
        instance_type: offering
            .as_ref()
            .map(|o| o.instance_type.clone())
            .or_else(|| labels.get(INSTANCE_TYPE_LABEL).cloned())
            .unwrap_or_default(),
        zone: offering
            .as_ref()
            .map(|o| o.zone.clone())
            .or_else(|| labels.get(ZONE_LABEL).cloned())
            .unwrap_or_default(),
        capacity_type: offering
            .as_ref()
            .map(|o| o.capacity_type)
            .or_else(|| {
                labels
                    .get(CAPACITY_TYPE_LABEL)
                    .and_then(|l| CapacityType::from_label(l))
            })
            .unwrap_or(CapacityType::OnDemand),
        price: offering.as_ref().map(|o| o.price).unwrap_or(0.0),
        instance_id,
        taints: spec
            .taints
            .iter()
            .flatten()
            .filter(|t| !EPHEMERAL_TAINTS.contains(&t.key.as_str()))
            // An uninitialized node's startup taints are about to go (Karpenter's rule): counted,
            // they would make the node look useless to the pods waiting for it.
            .filter(|t| {
                initialized
                    || !record.is_some_and(|r| {
                        r.template
                            .spec
                            .startup_taints
                            .iter()
                            .any(|s| s.key == t.key && s.effect == t.effect)
                    })
            })
            .filter_map(|t| {
                Some(Taint::new(
                    &t.key,
                    t.value.as_deref(),
                    kestrel_core::model::TaintEffect::parse(&t.effect)?,
                ))
            })
            .collect(),
        labels: Arc::new(labels),
        annotations: Arc::new(node.annotations().clone()),
        allocatable: resources(status.allocatable.as_ref()),
        requested,
        pods,
        created_at: millis(node.metadata.creation_timestamp.as_ref()),
        ready,
        cordoned: spec.unschedulable.unwrap_or(false),
        deleting: node.metadata.deletion_timestamp.is_some() || claim_deleting,
    }
}

/// A PodDisruptionBudget (either API version: the fields the core reads are the same).
fn budget(pdb: &kube::api::DynamicObject) -> Option<DisruptionBudget> {
    let spec = pdb.data.get("spec")?;
    let selector = spec
        .get("selector")
        .and_then(|s| s.get("matchLabels"))
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Some(DisruptionBudget {
        name: format!(
            "{}/{}",
            pdb.metadata.namespace.clone().unwrap_or_default(),
            pdb.metadata.name.clone().unwrap_or_default()
        ),
        selector,
        min_available: spec.get("minAvailable").and_then(|v| v.as_i64()),
        max_unavailable: spec.get("maxUnavailable").and_then(|v| v.as_i64()),
    })
}

impl Snapshot {
    /// How many pods wait for capacity (the scheduling queue's depth).
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }
}

impl ClusterState for Snapshot {
    fn pending_pods(&self) -> Vec<PodState> {
        self.pending.clone()
    }
    fn pending_revision(&self) -> u64 {
        self.pending_revision
    }
    fn bound_pods(&self) -> Vec<PodState> {
        self.bound.clone()
    }
    fn nodes(&self) -> Vec<Arc<NodeState>> {
        self.nodes.clone()
    }
    fn pods_on(&self, node: &str) -> Vec<PodState> {
        self.by_node
            .get(node)
            .map(|ix| ix.iter().map(|&i| self.bound[i].clone()).collect())
            .unwrap_or_default()
    }
    fn disruption_budgets(&self) -> Vec<DisruptionBudget> {
        self.budgets.clone()
    }
    fn claim_records(&self) -> Vec<ClaimRecord> {
        self.records.clone()
    }
}
