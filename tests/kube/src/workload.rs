//! What the suites create: the NodePool and EC2NodeClass most of them run ([`POOL`]), the pod they
//! ask capacity for ([`pod`]), and a busy cluster for the scale measurements ([`fill`]); how long a
//! pending pod waits for its NodeClaim ([`claim_after`]).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kestrel_core::api::NodeClaim;
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use serde_json::json;

pub const POOL: &str = r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: default
spec:
  template:
    metadata:
      labels:
        team: web
    spec:
      requirements:
        - key: kubernetes.io/arch
          operator: In
          values: ["amd64"]
        - key: karpenter.sh/capacity-type
          operator: In
          values: ["on-demand"]
      taints:
        - key: dedicated
          value: web
          effect: NoSchedule
      nodeClassRef:
        group: karpenter.k8s.aws
        kind: EC2NodeClass
        name: default
  disruption:
    consolidationPolicy: WhenEmpty
    consolidateAfter: Never
---
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata:
  name: default
spec:
  role: KarpenterNodeRole-test
  amiSelectorTerms:
    - alias: al2023@latest
  subnetSelectorTerms:
    - tags:
        karpenter.sh/discovery: test
  securityGroupSelectorTerms:
    - tags:
        karpenter.sh/discovery: test
"#;

/// A bare pod asking for `cpu`, tolerating the pool's taint, with a zero grace period (there is no
/// kubelet to confirm a graceful stop).
pub fn pod(name: &str, cpu: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}],
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9",
                            "resources": {"requests": {"cpu": cpu, "memory": "256Mi"}}}]
        }
    }))
    .expect("a valid pod")
}

/// A cluster another node group runs: `node_count` Ready Nodes without NodeClaims (`bench-NNNN`, m5.large
/// in us-east-1a, 1.9 CPUs allocatable) and `pod_count` pods of 400m bound to them round robin, so that a
/// 1-CPU pod fits none and Kestrel plans every pending pod from scratch.
pub async fn fill(client: &Client, node_count: usize, pod_count: usize) -> Result<()> {
    let nodes = Api::<Node>::all(client.clone());
    // Nodes another node group runs (no NodeClaim): full enough that a 1-CPU pod fits none.
    let created: Vec<Result<()>> = futures::stream::iter(0..node_count)
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
    let created: Vec<Result<()>> = futures::stream::iter(0..pod_count)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let mut p = pod(&format!("bound-{i:05}"), "400m");
                p.spec.as_mut().expect("spec").node_name =
                    Some(format!("bench-{:04}", i % node_count));
                pods.create(&PostParams::default(), &p).await?;
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    created.into_iter().collect::<Result<Vec<_>>>()?;
    Ok(())
}

/// Runs `create` (which makes a pod pending) and waits up to `timeout` for the next NodeClaim's
/// creation: the time from just before `create`. The creation is seen on a watch opened before
/// (not by polling, which would add up to its interval to the figure).
pub async fn claim_after(
    client: &Client,
    timeout: Duration,
    create: impl Future<Output = Result<()>>,
) -> Result<Duration> {
    let claims = Api::<NodeClaim>::all(client.clone());
    let version = claims
        .list_metadata(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut events = claims
        .watch(&WatchParams::default(), &version)
        .await?
        .boxed();
    let t0 = Instant::now();
    create.await?;
    tokio::time::timeout(timeout, async {
        while let Some(event) = events.try_next().await? {
            if matches!(event, WatchEvent::Added(_)) {
                return Ok(t0.elapsed());
            }
        }
        anyhow::bail!("the NodeClaim watch ended")
    })
    .await
    .with_context(|| format!("no NodeClaim within {timeout:?}"))?
}
