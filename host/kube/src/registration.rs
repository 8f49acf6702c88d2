//! Registration and initialization, as Karpenter's: a launched instance's Node is matched to its
//! NodeClaim by providerID and registered: given its NodePool's labels, taints and startup taints,
//! Karpenter's `karpenter.sh/unregistered` taint (the kubelet registers with it) removed, Kestrel's
//! termination finalizer added, and the NodeClaim's status records the node (Registered). It is
//! initialized (label `karpenter.sh/initialized`, conditions Initialized and Ready) once it is
//! Ready and every startup taint is gone (removed by whatever agent owns it, e.g. a CNI).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kestrel_core::api::NodeClaim;
use kestrel_core::cluster::{ClaimRecord, NodeState};
use kestrel_core::controller::Controller;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::executor::{self, merge_conditions};
use crate::record::{NODECLAIM_LABEL, TERMINATION_FINALIZER};
use crate::snapshot::Snapshot;

/// The taint a node registers with until Kestrel has initialized it (Karpenter's).
pub const UNREGISTERED_TAINT: &str = "karpenter.sh/unregistered";
pub const REGISTERED_LABEL: &str = "karpenter.sh/registered";
pub const INITIALIZED_LABEL: &str = "karpenter.sh/initialized";

/// What registering one node writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub node: String,
    pub claim: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub taints: Vec<k8s_openapi::api::core::v1::Taint>,
}

/// The labels, annotations and taints a claim's node gets from the template its claim was made from
/// (the core's rendering, the simulator's too); None when the instance type is unknown.
pub fn plan(
    controller: &Controller,
    record: &ClaimRecord,
    node: &NodeState,
    object: &Node,
) -> Option<Registration> {
    use kestrel_core::cluster::registration as core;
    let it = controller.instance_type(&node.instance_type)?;
    let mut labels = core::node_labels(
        &core::template_labels(&record.template),
        &record.node_pool,
        it,
        &node.zone,
        node.capacity_type,
    );
    labels.insert(NODECLAIM_LABEL.into(), node.claim.clone());
    labels.insert(REGISTERED_LABEL.into(), "true".into());
    // Startup taints are put on at the first registration only: once an agent removed them, a
    // restarted controller registering the node again must not put them back.
    let first = !object.labels().contains_key(REGISTERED_LABEL);
    let mut taints: Vec<_> = object
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.key != UNREGISTERED_TAINT)
        .collect();
    let startup = record.template.spec.startup_taints.iter().filter(|_| first);
    for t in record.template.spec.taints.iter().chain(startup) {
        if !taints
            .iter()
            .any(|x| x.key == t.key && x.effect == t.effect)
        {
            taints.push(t.clone());
        }
    }
    Some(Registration {
        node: node.name.to_string(),
        claim: node.claim.clone(),
        labels,
        annotations: core::node_annotations(&record.template),
        taints,
    })
}

async fn write(
    client: &Client,
    r: &Registration,
    snapshot_claim: Option<Arc<NodeClaim>>,
    object: Arc<Node>,
) -> Result<(), kube::Error> {
    // Karpenter's finalizer on the Nodes it owns: a `kubectl delete node` then waits for the drain
    // and the instance's termination instead of orphaning the instance. (A merge patch replaces the
    // list: the others already there are kept.)
    let mut finalizers = object.metadata.finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| f == TERMINATION_FINALIZER) {
        finalizers.push(TERMINATION_FINALIZER.into());
    }
    Api::<Node>::all(client.clone())
        .patch(
            &r.node,
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"labels": r.labels, "annotations": r.annotations, "finalizers": finalizers},
                "spec": {"taints": r.taints},
            })),
        )
        .await?;
    let existing = snapshot_claim
        .as_ref()
        .and_then(|c| c.status.as_ref())
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let status = object.status.clone().unwrap_or_default();
    let conditions = merge_conditions(
        &existing,
        vec![executor_condition("Registered", "Registered")],
    );
    Api::<NodeClaim>::all(client.clone())
        .patch_status(
            &r.claim,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "nodeName": r.node,
                "providerID": object.spec.as_ref().and_then(|s| s.provider_id.clone()),
                "capacity": status.capacity,
                "allocatable": status.allocatable,
                "conditions": conditions,
            }})),
        )
        .await?;
    // The Event is for people; a failure to record it does not undo the registration.
    if let Err(err) = executor::emit(
        client,
        executor::reference::<NodeClaim>(
            &r.claim,
            snapshot_claim.and_then(|c| c.metadata.uid.clone()),
        ),
        "Normal",
        "Registered",
        &format!(
            "Status condition transitioned, Type: Registered, Status: True, node {}",
            r.node
        ),
    )
    .await
    {
        tracing::warn!(claim = %r.claim, %err, "Registered event not recorded");
    }
    Ok(())
}

fn executor_condition(
    type_: &str,
    reason: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        type_: type_.into(),
        status: "True".into(),
        reason: reason.into(),
        // Never empty: an empty message is serialized as null, which the schema refuses.
        message: format!("{type_} by Kestrel"),
        last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ),
        observed_generation: None,
    }
}

/// Whether a registered node may be initialized: Ready, and none of its claim's startup taints left.
pub fn initializable(record: &ClaimRecord, object: &Node) -> bool {
    let ready = object
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let taints = object
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let startup_left = record.template.spec.startup_taints.iter().any(|st| {
        taints
            .iter()
            .any(|t| t.key == st.key && t.effect == st.effect)
    });
    ready && !startup_left
}

async fn initialize(
    client: &Client,
    node: &str,
    claim: &str,
    snapshot_claim: Option<Arc<NodeClaim>>,
) -> Result<(), kube::Error> {
    Api::<Node>::all(client.clone())
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {INITIALIZED_LABEL: "true"}}})),
        )
        .await?;
    let existing = snapshot_claim
        .as_ref()
        .and_then(|c| c.status.as_ref())
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let conditions = merge_conditions(
        &existing,
        vec![
            executor_condition("Registered", "Registered"),
            executor_condition("Initialized", "Initialized"),
            executor_condition("Ready", "Ready"),
        ],
    );
    Api::<NodeClaim>::all(client.clone())
        .patch_status(
            claim,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": conditions}})),
        )
        .await?;
    Ok(())
}

/// Initializes the registered nodes that became ready with no startup taint left since the last
/// call (`done` remembers them; a node already labelled initialized is only remembered).
pub async fn initialize_ready(
    client: &Client,
    snapshot: &Snapshot,
    registered: &HashSet<String>,
    done: &mut HashSet<String>,
) {
    use kestrel_core::cluster::ClusterState;
    let records = snapshot.claim_records();
    let mut work = Vec::new();
    for node in snapshot.nodes() {
        if node.deleting || !registered.contains(&*node.name) || done.contains(&*node.name) {
            continue;
        }
        let Some(object) = snapshot.node_objects.get(&*node.name) else {
            continue;
        };
        if object.labels().get(INITIALIZED_LABEL).map(String::as_str) == Some("true") {
            done.insert(node.name.to_string());
            continue;
        }
        // Only once the snapshot shows the registration written (this tick's snapshot predates a
        // registration made this tick: its startup taints would not be seen yet).
        let unregistered = object
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default()
            .iter()
            .any(|t| t.key == UNREGISTERED_TAINT);
        if object.labels().get(REGISTERED_LABEL).map(String::as_str) != Some("true") || unregistered
        {
            continue;
        }
        let Some(record) = records.iter().find(|r| r.name == node.claim) else {
            continue;
        };
        if initializable(record, object) {
            let claim = snapshot.node_claims.get(&node.claim).cloned();
            work.push((node.name.to_string(), node.claim.clone(), claim));
        }
    }
    let results = futures::future::join_all(
        work.iter()
            .map(|(node, claim, object)| initialize(client, node, claim, object.clone())),
    )
    .await;
    for ((node, claim, _), result) in work.into_iter().zip(results) {
        match result {
            Ok(()) => {
                tracing::info!(%node, %claim, "node initialized");
                done.insert(node);
            }
            Err(err) => {
                tracing::warn!(%node, %err, "initialization write failed; retried next tick")
            }
        }
    }
}

/// Registers the claims' nodes that appeared since the last call (`done` remembers them; the
/// controller sees the registration in its snapshot by itself). A failed write is tried again next
/// tick.
pub async fn register_new(
    client: &Client,
    controller: &Controller,
    snapshot: &Snapshot,
    done: &mut HashSet<String>,
) {
    use kestrel_core::cluster::ClusterState;
    let mut work = Vec::new();
    for node in snapshot.nodes() {
        // A node being deleted is drained, not initialized (and no finalizer may be added to an
        // object being deleted).
        if node.claim.is_empty() || node.deleting {
            continue;
        }
        let Some(object) = snapshot.node_objects.get(&*node.name).cloned() else {
            continue;
        };
        // Registered once is not enough when the Node still carries `karpenter.sh/unregistered`:
        // another writer (the kubelet, the node lifecycle controller) may have written its taints
        // back over ours, and the node would never take a pod. Registration is idempotent.
        let still_unregistered = object
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|taints| taints.iter().any(|t| t.key == UNREGISTERED_TAINT));
        if done.contains(&*node.name) && !still_unregistered {
            continue;
        }
        let records = snapshot.claim_records();
        let Some(record) = records.iter().find(|r| r.name == node.claim) else {
            continue;
        };
        let Some(r) = plan(controller, record, &node, &object) else {
            continue;
        };
        let claim = snapshot.node_claims.get(&node.claim).cloned();
        work.push((node, r, claim, object));
    }
    if work.is_empty() {
        return;
    }
    let results = futures::future::join_all(
        work.iter()
            .map(|(_, r, claim, object)| write(client, r, claim.clone(), object.clone())),
    )
    .await;
    for ((node, _, _, _), result) in work.into_iter().zip(results) {
        match result {
            Ok(()) => {
                tracing::info!(node = %node.name, claim = %node.claim, "node registered");
                done.insert(node.name.to_string());
            }
            Err(err) => {
                tracing::warn!(node = %node.name, %err, "registration write failed; retried next tick")
            }
        }
    }
}
