//! Deleting a NodeClaim by hand drains its node: cordoned with `karpenter.sh/disrupted`, evictions
//! held back by a PodDisruptionBudget (the NodeClaim's finalizer holds it meanwhile), then the pods
//! evicted, the instance terminated, the Node and the NodeClaim gone.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Node, Pod};
use kestrel_core::api::NodeClaim;
use kestrel_kube_tests::kubelet;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};

use crate::common::{self, RunningController};
use crate::provisioning::{bound_node, pod, setup};

pub const PDB: &str = r#"
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata:
  name: web
  namespace: default
spec:
  minAvailable: 2
  selector:
    matchLabels:
      app: web
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_nodeclaim_drains_its_node_honouring_the_pdb_then_terminates() -> Result<()> {
    let (cluster, client) = setup().await?;
    let cloud = common::sim_cloud()?;
    let kubelet = kubelet::spawn(client.clone(), cloud.clone(), common::instance_types()?);
    let controller = RunningController::start(&cluster, &cloud, common::settings());
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-1", "500m"))
        .await?;
    pods.create(&PostParams::default(), &pod("web-2", "500m"))
        .await?;
    let node = common::eventually(Duration::from_secs(60), "web-1 bound", || {
        bound_node(&client, "web-1")
    })
    .await?;
    let node2 = common::eventually(Duration::from_secs(60), "web-2 bound", || {
        bound_node(&client, "web-2")
    })
    .await?;
    // One batch, one node: both pods were pending within the batch window.
    assert_eq!(node, node2, "both pods on one node");
    common::apply_yaml(&client, PDB).await?;
    crate::provisioning::wait_running(&client, "web-1").await?;
    crate::provisioning::wait_running(&client, "web-2").await?;

    let claims = Api::<NodeClaim>::all(client.clone());
    let claim = claims.list(&ListParams::default()).await?.items;
    let claim = claim
        .iter()
        .find(|c| c.status.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str()))
        .context("the node's claim")?;
    let name = claim.metadata.name.clone().context("named")?;
    claims.delete(&name, &DeleteParams::default()).await?;

    // Cordoned and tainted, but the PDB holds the pods (429) and the finalizer holds the claim.
    let nodes = Api::<Node>::all(client.clone());
    common::eventually(Duration::from_secs(30), "the node cordoned", || async {
        let n = nodes.get(&node).await?;
        let spec = n.spec.unwrap_or_default();
        let tainted = spec
            .taints
            .unwrap_or_default()
            .iter()
            .any(|t| t.key == "karpenter.sh/disrupted");
        Ok((spec.unschedulable == Some(true) && tainted).then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        pods.get_opt("web-1").await?.is_some() && pods.get_opt("web-2").await?.is_some(),
        "the PDB let a pod go"
    );
    assert!(
        claims.get_opt(&name).await?.is_some(),
        "the claim went before its node was drained"
    );
    assert!(
        cloud.live_instances().iter().any(|i| i.claim == name),
        "terminated before its node was drained"
    );

    // Without the PDB the drain completes.
    let pdb = ApiResource {
        group: "policy".into(),
        version: "v1beta1".into(),
        api_version: "policy/v1beta1".into(),
        kind: "PodDisruptionBudget".into(),
        plural: "poddisruptionbudgets".into(),
    };
    Api::<DynamicObject>::namespaced_with(client.clone(), "default", &pdb)
        .delete("web", &DeleteParams::default())
        .await?;
    common::eventually(Duration::from_secs(90), "the NodeClaim gone", || async {
        Ok(claims.get_opt(&name).await?.is_none().then_some(()))
    })
    .await?;
    assert!(
        pods.get_opt("web-1").await?.is_none() && pods.get_opt("web-2").await?.is_none(),
        "pods evicted"
    );
    assert!(
        !cloud.live_instances().iter().any(|i| i.claim == name),
        "instance not terminated: {:?}",
        cloud.live_instances()
    );
    common::eventually(Duration::from_secs(30), "the Node gone", || async {
        Ok(nodes.get_opt(&node).await?.is_none().then_some(()))
    })
    .await?;
    controller.stop()?;
    kubelet.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_during_a_drain_finishes_it_after_restart() -> Result<()> {
    let (cluster, client) = setup().await?;
    let cloud = common::sim_cloud()?;
    let kubelet = kubelet::spawn(client.clone(), cloud.clone(), common::instance_types()?);
    let mut settings = common::settings();
    settings.shutdown_grace = Duration::ZERO;
    let first = RunningController::start(&cluster, &cloud, settings.clone());
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-1", "500m"))
        .await?;
    let node = common::eventually(Duration::from_secs(60), "web-1 bound", || {
        bound_node(&client, "web-1")
    })
    .await?;
    common::apply_yaml(&client, PDB).await?;
    crate::provisioning::wait_running(&client, "web-1").await?;
    let claims = Api::<NodeClaim>::all(client.clone());
    let name = claims.list(&ListParams::default()).await?.items[0]
        .metadata
        .name
        .clone()
        .context("named")?;
    claims.delete(&name, &DeleteParams::default()).await?;
    let nodes = Api::<Node>::all(client.clone());
    common::eventually(Duration::from_secs(30), "the node cordoned", || async {
        let n = nodes.get(&node).await?;
        Ok((n.spec.unwrap_or_default().unschedulable == Some(true)).then_some(()))
    })
    .await?;
    // The process dies mid-drain (the PDB holds the pod); the budget is lifted while it is down.
    first.stop()?;
    let pdb = ApiResource {
        group: "policy".into(),
        version: "v1beta1".into(),
        api_version: "policy/v1beta1".into(),
        kind: "PodDisruptionBudget".into(),
        plural: "poddisruptionbudgets".into(),
    };
    Api::<DynamicObject>::namespaced_with(client.clone(), "default", &pdb)
        .delete("web", &DeleteParams::default())
        .await?;
    assert!(
        claims.get_opt(&name).await?.is_some(),
        "the finalizer holds the claim while no one drains"
    );

    let second = RunningController::start(&cluster, &cloud, settings);
    common::eventually(Duration::from_secs(90), "the NodeClaim gone", || async {
        Ok(claims.get_opt(&name).await?.is_none().then_some(()))
    })
    .await?;
    assert!(
        pods.get_opt("web-1").await?.is_none(),
        "the pod was evicted"
    );
    assert!(
        cloud.live_instances().is_empty(),
        "leaked: {:?}",
        cloud.live_instances()
    );
    assert_eq!(
        cloud.launched(),
        1,
        "nothing launched for a pod that is gone"
    );
    second.stop()?;
    kubelet.abort();
    Ok(())
}

/// Whether the Node carries Kestrel's (Karpenter's) termination finalizer.
fn has_finalizer(node: &Node) -> bool {
    node.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == "karpenter.sh/termination")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_node_by_hand_drains_it_and_a_node_kestrel_does_not_own_is_untouched()
-> Result<()> {
    let (cluster, client) = setup().await?;
    let cloud = common::sim_cloud()?;
    let kubelet = kubelet::spawn(client.clone(), cloud.clone(), common::instance_types()?);
    let nodes = Api::<Node>::all(client.clone());
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    // A node someone else runs (tainted so the scheduler keeps the test's pods off it), with a pod.
    let foreign: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "foreign-1", "labels": {"kubernetes.io/hostname": "foreign-1"}},
        "spec": {"providerID": "aws:///us-east-1a/i-0f0f0f0f0f0f0f0f0",
                 "taints": [{"key": "other", "value": "x", "effect": "NoSchedule"}]}
    }))?;
    nodes.create(&PostParams::default(), &foreign).await?;
    let mut foreign_pod = pod("foreign-pod", "100m");
    foreign_pod.spec.as_mut().context("spec")?.node_name = Some("foreign-1".into());
    pods.create(&PostParams::default(), &foreign_pod).await?;

    let controller = RunningController::start(&cluster, &cloud, common::settings());
    pods.create(&PostParams::default(), &pod("web-1", "500m"))
        .await?;
    let node = common::eventually(Duration::from_secs(60), "web-1 bound", || {
        bound_node(&client, "web-1")
    })
    .await?;
    common::eventually(
        Duration::from_secs(30),
        "the finalizer on the node",
        || async { Ok(has_finalizer(&nodes.get(&node).await?).then_some(())) },
    )
    .await?;
    let claims = Api::<NodeClaim>::all(client.clone());
    let claim = claims.list(&ListParams::default()).await?.items[0]
        .metadata
        .name
        .clone()
        .context("named")?;

    // `kubectl delete node`: the finalizer holds the Node while Kestrel drains it.
    nodes.delete(&node, &DeleteParams::default()).await?;
    let held = nodes.get_opt(&node).await?;
    assert!(
        held.is_some_and(|n| n.metadata.deletion_timestamp.is_some()),
        "the Node went at once: no finalizer held it for the drain"
    );
    common::eventually(Duration::from_secs(60), "the NodeClaim gone", || async {
        Ok(claims.get_opt(&claim).await?.is_none().then_some(()))
    })
    .await?;
    common::eventually(Duration::from_secs(30), "the Node gone", || async {
        Ok(nodes.get_opt(&node).await?.is_none().then_some(()))
    })
    .await?;
    assert!(pods.get_opt("web-1").await?.is_none(), "web-1 not evicted");
    assert!(
        cloud.live_instances().is_empty(),
        "leaked: {:?}",
        cloud.live_instances()
    );

    // The foreign node: never tainted, labelled or finalized; its deletion is none of Kestrel's.
    let f = nodes.get("foreign-1").await?;
    assert!(!has_finalizer(&f), "a foreign node got Kestrel's finalizer");
    assert!(
        !f.spec
            .unwrap_or_default()
            .taints
            .unwrap_or_default()
            .iter()
            .any(|t| t.key.starts_with("karpenter.sh/")),
        "a foreign node was tainted"
    );
    nodes.delete("foreign-1", &DeleteParams::default()).await?;
    assert!(nodes.get_opt("foreign-1").await?.is_none());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        pods.get_opt("foreign-pod").await?.is_some(),
        "a pod on a foreign node was evicted"
    );
    assert_eq!(cloud.launched(), 1);
    controller.stop()?;
    kubelet.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_termination_grace_period_pods_a_pdb_protects_are_deleted_daemonset_and_mirror_pods_are_not()
-> Result<()> {
    const GRACE_S: u64 = 8;
    let (cluster, client) = setup().await?;
    let pool = crate::provisioning::POOL.replace(
        "      nodeClassRef:",
        &format!("      terminationGracePeriod: {GRACE_S}s\n      nodeClassRef:"),
    );
    common::apply_yaml(&client, &pool).await?;
    let cloud = common::sim_cloud()?;
    let kubelet = kubelet::spawn(client.clone(), cloud.clone(), common::instance_types()?);
    let controller = RunningController::start(&cluster, &cloud, common::settings());
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-1", "500m"))
        .await?;
    let node = common::eventually(Duration::from_secs(60), "web-1 bound", || {
        bound_node(&client, "web-1")
    })
    .await?;
    common::apply_yaml(&client, PDB).await?;
    crate::provisioning::wait_running(&client, "web-1").await?;
    // A DaemonSet's pod and a mirror pod on the node (no controller-manager here: made by hand).
    let ds = common::apply_yaml(
        &client,
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      tolerations: [{operator: Exists}]
      containers: [{name: agent, image: registry.k8s.io/pause:3.9, resources: {requests: {cpu: 10m}}}]
"#,
    )
    .await?;
    let ds_uid = ds[0].metadata.uid.clone().context("uid")?;
    let mut agent = pod("agent-x", "10m");
    agent.metadata.labels = Some([("app".to_string(), "agent".to_string())].into());
    agent.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "apps/v1".into(),
            kind: "DaemonSet".into(),
            name: "agent".into(),
            uid: ds_uid,
            controller: Some(true),
            block_owner_deletion: None,
        },
    ]);
    agent.spec.as_mut().context("spec")?.node_name = Some(node.clone());
    pods.create(&PostParams::default(), &agent).await?;
    let mut mirror = pod("static-x", "10m");
    mirror.metadata.labels = Some([("app".to_string(), "static".to_string())].into());
    mirror.metadata.annotations =
        Some([("kubernetes.io/config.mirror".to_string(), "x".to_string())].into());
    mirror.spec.as_mut().context("spec")?.node_name = Some(node.clone());
    pods.create(&PostParams::default(), &mirror).await?;

    let claims = Api::<NodeClaim>::all(client.clone());
    let name = claims.list(&ListParams::default()).await?.items[0]
        .metadata
        .name
        .clone()
        .context("named")?;
    let deleted_at = std::time::Instant::now();
    claims.delete(&name, &DeleteParams::default()).await?;
    // The PDB holds web-1 within the grace period...
    tokio::time::sleep(Duration::from_secs(GRACE_S / 2)).await;
    assert!(
        pods.get_opt("web-1").await?.is_some(),
        "the PDB let web-1 go"
    );
    // ...and no longer after it: the pod is deleted, the node goes.
    common::eventually(Duration::from_secs(60), "web-1 deleted", || async {
        Ok(pods.get_opt("web-1").await?.is_none().then_some(()))
    })
    .await?;
    let forced_after = deleted_at.elapsed();
    assert!(
        forced_after >= Duration::from_secs(GRACE_S - 1),
        "forced after {forced_after:?}, before the grace period"
    );
    // Promptly after it: at most one eviction still in flight (the v1.20 server holds a refused
    // one for seconds; the executor gives up on a call after CLUSTER_CALL_TIMEOUT) plus a tick.
    let bound = Duration::from_secs(GRACE_S + 3) + kestrel_kube::executor::CLUSTER_CALL_TIMEOUT;
    assert!(forced_after <= bound, "forced only after {forced_after:?}");
    common::eventually(Duration::from_secs(60), "the NodeClaim gone", || async {
        Ok(claims.get_opt(&name).await?.is_none().then_some(()))
    })
    .await?;
    assert!(
        cloud.live_instances().is_empty(),
        "leaked: {:?}",
        cloud.live_instances()
    );
    for p in ["agent-x", "static-x"] {
        assert!(
            pods.get_opt(p).await?.is_some(),
            "{p} was evicted or deleted"
        );
    }
    eprintln!("grace {GRACE_S}s: web-1 deleted after {forced_after:?}");
    controller.stop()?;
    kubelet.abort();
    Ok(())
}
