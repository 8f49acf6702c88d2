//! NodePool status: each pool's node count and the total of its nodes' resources (Karpenter's
//! `status.resources`, `status.nodes`) and its conditions (Karpenter's `ValidationSucceeded`: the
//! pool can be planned for; `NodeClassReady`: its EC2NodeClass exists; `Ready`: both), written when
//! it changes.

use std::collections::{BTreeMap, HashMap};

use kestrel_core::api::NodePool;
use kestrel_core::cluster::{ClusterState, ResourceList};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::snapshot::Snapshot;

/// One condition as the status carries it: (type, status, reason, message).
pub type ConditionFacts = (String, String, String, String);

/// What a pool's status says, as last written.
pub type PoolStatus = (i64, BTreeMap<String, String>, Vec<ConditionFacts>);

/// A pool's conditions: whether the core can plan for it, whether its EC2NodeClass exists.
pub fn pool_conditions(pool: &NodePool, class_names: &[String]) -> Vec<ConditionFacts> {
    let validation = match kestrel_core::controller::convert::node_pool(pool) {
        Ok(_) => (
            "True".to_string(),
            "ValidationSucceeded".to_string(),
            "the NodePool can be planned for".to_string(),
        ),
        Err(err) => ("False".into(), "ValidationFailed".into(), err.to_string()),
    };
    let class = &pool.spec.template.spec.node_class_ref.name;
    let class_ready = if class_names.iter().any(|c| c == class) {
        (
            "True".to_string(),
            "NodeClassReady".to_string(),
            format!("EC2NodeClass {class} found"),
        )
    } else {
        (
            "False".into(),
            "NodeClassNotFound".into(),
            format!("EC2NodeClass {class} not found"),
        )
    };
    let ready = if validation.0 == "True" && class_ready.0 == "True" {
        ("True".to_string(), "Ready".to_string(), "ready".to_string())
    } else {
        let why = if validation.0 != "True" {
            &validation.2
        } else {
            &class_ready.2
        };
        ("False".into(), "NotReady".into(), why.clone())
    };
    [
        ("NodeClassReady", class_ready),
        ("Ready", ready),
        ("ValidationSucceeded", validation),
    ]
    .into_iter()
    .map(|(t, (s, r, m))| (t.to_string(), s, r, m))
    .collect()
}

/// Each pool's status from the snapshot (nodes of the pool's claims, registered or not deleted).
pub fn pool_statuses(snapshot: &Snapshot, class_names: &[String]) -> HashMap<String, PoolStatus> {
    let conditions: HashMap<String, Vec<ConditionFacts>> = snapshot
        .node_pools
        .iter()
        .map(|p| (p.name_any(), pool_conditions(p, class_names)))
        .collect();
    let mut totals: HashMap<String, (i64, ResourceList)> = snapshot
        .node_pools
        .iter()
        .map(|p| (p.name_any(), (0, ResourceList::new())))
        .collect();
    for node in snapshot.nodes() {
        if node.claim.is_empty() {
            continue;
        }
        if let Some((count, resources)) = totals.get_mut(&node.node_pool) {
            *count += 1;
            resources.add(&node.allocatable);
        }
    }
    totals
        .into_iter()
        .map(|(pool, (count, resources))| {
            let mut list: BTreeMap<String, String> = resources
                .iter()
                .filter(|(_, q)| !q.is_zero())
                .map(|(n, q)| (n.to_string(), q.to_string()))
                .collect();
            list.insert("nodes".into(), count.to_string());
            let c = conditions.get(&pool).cloned().unwrap_or_default();
            (pool, (count, list, c))
        })
        .collect()
}

/// Writes the statuses that changed since `written`; a failed write is tried again next time.
pub async fn write_changed(
    client: &Client,
    snapshot: &Snapshot,
    class_names: &[String],
    written: &mut HashMap<String, PoolStatus>,
) {
    let api = Api::<NodePool>::all(client.clone());
    for (pool, status) in pool_statuses(snapshot, class_names) {
        if written.get(&pool) == Some(&status) {
            continue;
        }
        let existing = snapshot
            .node_pools
            .iter()
            .find(|p| p.name_any() == pool)
            .and_then(|p| p.status.as_ref())
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        let conditions = crate::executor::merge_conditions(
            &existing,
            status
                .2
                .iter()
                .map(|(t, s, r, m)| crate::executor::condition(t, s, r, m))
                .collect(),
        );
        let patch = json!({"status": {
            "nodes": status.0,
            "resources": status.1,
            "conditions": conditions,
        }});
        match api
            .patch_status(&pool, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {
                written.insert(pool, status);
            }
            Err(err) => tracing::warn!(%pool, %err, "NodePool status not written; retried"),
        }
    }
}
