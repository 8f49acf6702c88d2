//! Controller memory and decision latency with 500 nodes and 2,000 pods in the real API server: the
//! watches list them all, every tick snapshots them, and a new pending pod still gets its NodeClaim
//! within the batch window plus a little. The numbers are printed (`--nocapture`) for the report.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kestrel_core::api::NodeClaim;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::common::{self, RunningController};
use crate::provisioning::{pod, setup};

const NODES: usize = 500;
const PODS: usize = 2_000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_nodes_two_thousand_pods() -> Result<()> {
    let (cluster, client) = setup().await?;
    let nodes = Api::<Node>::all(client.clone());
    let started = Instant::now();
    // Nodes another node group runs (no NodeClaim): full enough that a 1-CPU pod fits none.
    let created: Vec<Result<()>> = futures::stream::iter(0..NODES)
        .map(|i| {
            let nodes = nodes.clone();
            async move {
                let name = format!("bench-{i:04}");
                let node: Node = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": name, "labels": {"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux",
                        "topology.kubernetes.io/zone": "us-east-1a", "node.kubernetes.io/instance-type": "m5.large"}},
                    "spec": {"providerID": format!("aws:///us-east-1a/i-b{i:016x}")}
                }))?;
                nodes.create(&PostParams::default(), &node).await?;
                nodes
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": {
                        "capacity": {"cpu": "2", "memory": "8Gi", "pods": "29"},
                        "allocatable": {"cpu": "1900m", "memory": "7Gi", "pods": "29"},
                        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}})))
                    .await?;
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    created.into_iter().collect::<Result<Vec<_>>>()?;
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    let created: Vec<Result<()>> = futures::stream::iter(0..PODS)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let mut p = pod(&format!("bound-{i:05}"), "400m");
                p.spec.as_mut().expect("spec").node_name = Some(format!("bench-{:04}", i % NODES));
                pods.create(&PostParams::default(), &p).await?;
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    created.into_iter().collect::<Result<Vec<_>>>()?;
    eprintln!(
        "scale: {NODES} nodes and {PODS} pods created in {:?}",
        started.elapsed()
    );

    let cloud = common::sim_cloud()?;
    let before = rss_kib();
    let controller = RunningController::start(&cluster, &cloud, common::settings());
    // Let the watches list everything and a few ticks run.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let synced = rss_kib();

    // The NodeClaim's creation is seen on a watch opened before the pod is created (not by polling,
    // which would add up to its interval to the figure).
    let claims = Api::<NodeClaim>::all(client.clone());
    let version = claims
        .list_metadata(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut created = claims
        .watch(&kube::api::WatchParams::default(), &version)
        .await?
        .boxed();
    let t0 = Instant::now();
    pods.create(&PostParams::default(), &pod("pending-1", "1"))
        .await?;
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = created.try_next().await? {
            if matches!(event, kube::api::WatchEvent::Added(_)) {
                return Ok(());
            }
        }
        anyhow::bail!("the NodeClaim watch ended")
    })
    .await
    .context("no NodeClaim within 30 s")??;
    let latency = t0.elapsed();
    let after = rss_kib();
    let stats = controller.stop()?;
    eprintln!(
        "scale: controller RSS +{} MiB after sync, +{} MiB after the decision (test process {} MiB); \
         pending pod -> NodeClaim {latency:?} (batch idle 1 s); ticks {} max tick {} ms",
        synced.saturating_sub(before) / 1024,
        after.saturating_sub(before) / 1024,
        after / 1024,
        stats.ticks,
        stats.max_tick_us / 1000
    );
    // The watch caches and the snapshot of 2,500 objects stay small, and the decision is not slowed
    // past the batch window by them (the poll itself adds up to 100 ms).
    assert!(
        after.saturating_sub(before) < 200 * 1024,
        "controller memory grew by {} MiB",
        (after - before) / 1024
    );
    assert!(
        latency < Duration::from_millis(2_500),
        "pending pod -> NodeClaim took {latency:?}"
    );
    Ok(())
}
