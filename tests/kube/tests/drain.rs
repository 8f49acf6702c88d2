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

const PDB: &str = r#"
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
