//! NodePool status: each pool's node count and the total of its nodes' resources (Karpenter's
//! `status.resources`, `status.nodes`), written when it changes.

use std::collections::{BTreeMap, HashMap};

use kestrel_core::api::NodePool;
use kestrel_core::cluster::{ClusterState, ResourceList};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::snapshot::Snapshot;

/// What a pool's status says, as last written.
pub type PoolStatus = (i64, BTreeMap<String, String>);

/// Each pool's status from the snapshot (nodes of the pool's claims, registered or not deleted).
pub fn pool_statuses(snapshot: &Snapshot) -> HashMap<String, PoolStatus> {
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
            (pool, (count, list))
        })
        .collect()
}

/// Writes the statuses that changed since `written`; a failed write is tried again next time.
pub async fn write_changed(
    client: &Client,
    snapshot: &Snapshot,
    written: &mut HashMap<String, PoolStatus>,
) {
    let api = Api::<NodePool>::all(client.clone());
    for (pool, status) in pool_statuses(snapshot) {
        if written.get(&pool) == Some(&status) {
            continue;
        }
        let patch = json!({"status": {"nodes": status.0, "resources": status.1}});
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
