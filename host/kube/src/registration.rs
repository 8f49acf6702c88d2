//! Registration: a launched instance's Node is matched to its NodeClaim by providerID, given its
//! NodePool's labels and taints (Karpenter's `karpenter.sh/unregistered` taint removed), and the
//! NodeClaim's status records the node (Registered, Initialized, Ready).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kestrel_core::api::NodeClaim;
use kestrel_core::cluster::{ClaimRecord, NodeState};
use kestrel_core::controller::Controller;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use crate::executor::{self, merge_conditions};
use crate::record::NODECLAIM_LABEL;
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
    labels.insert(INITIALIZED_LABEL.into(), "true".into());
    let mut taints: Vec<_> = object
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.key != UNREGISTERED_TAINT)
        .collect();
    for t in &record.template.spec.taints {
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
    Api::<Node>::all(client.clone())
        .patch(
            &r.node,
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"labels": r.labels, "annotations": r.annotations},
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
        vec![
            executor_condition("Registered", "Registered"),
            executor_condition("Initialized", "Initialized"),
            executor_condition("Ready", "Ready"),
        ],
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

/// Initializes the claims' nodes that appeared since the last call (`done` remembers them; the
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
        if node.claim.is_empty() || done.contains(&*node.name) {
            continue;
        }
        let Some(object) = snapshot.node_objects.get(&*node.name).cloned() else {
            continue;
        };
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
