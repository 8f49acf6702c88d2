//! The NodeClaim lifecycle's waits and timeouts as Karpenter's: startup taints waited for before a
//! node is Initialized; a claim not launched within the launch timeout, or whose node does not
//! register within the registration timeout, is given up (its NodeClaim deleted, its instance
//! terminated) and its pod planned again elsewhere.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Node, Pod};
use kestrel_core::api::NodeClaim;
use kestrel_kube_tests::kubelet;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::common::{self, RunningController};
use crate::provisioning::{POOL, bound_node, pod, setup};

const STARTUP_TAINT: &str = "example.com/agent-not-ready";

async fn claim_names(client: &Client) -> Result<Vec<String>> {
    Ok(Api::<NodeClaim>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect())
}

fn condition_true(claim: &NodeClaim, type_: &str) -> bool {
    claim.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_initialized_only_once_its_startup_taints_are_gone() -> Result<()> {
    let (cluster, client) = setup().await?;
    let pool = POOL.replace(
        "      nodeClassRef:",
        &format!("      startupTaints:\n        - key: {STARTUP_TAINT}\n          effect: NoSchedule\n      nodeClassRef:"),
    );
    common::apply_yaml(&client, &pool).await?;
    let cloud = common::sim_cloud()?;
    let kubelet = kubelet::spawn(client.clone(), cloud.clone(), common::instance_types()?);
    let controller = RunningController::start(&cluster, &cloud, common::settings());
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-1", "500m"))
        .await?;
    let claims = Api::<NodeClaim>::all(client.clone());
    let claim = common::eventually(Duration::from_secs(60), "a registered claim", || async {
        Ok(claims
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .find(|c| condition_true(c, "Registered")))
    })
    .await?;
    let name = claim.metadata.name.clone().context("named")?;
    let node_name = claim
        .status
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .context("nodeName")?;
    let nodes = Api::<Node>::all(client.clone());
    let node = nodes.get(&node_name).await?;
    let taints = node.spec.clone().and_then(|s| s.taints).unwrap_or_default();
    assert!(
        taints.iter().any(|t| t.key == STARTUP_TAINT),
        "the startup taint was not put on at registration: {taints:?}"
    );
    assert!(
        taints.iter().all(|t| t.key != "karpenter.sh/unregistered"),
        "karpenter.sh/unregistered left on: {taints:?}"
    );
    // Registered but not initialized while the startup taint is there; the pod waits for this
    // node (no second launch: the startup taint does not make the node useless to it).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let claim = claims.get(&name).await?;
    assert!(
        !condition_true(&claim, "Initialized"),
        "initialized with its startup taint on"
    );
    let node = nodes.get(&node_name).await?;
    assert!(
        !node.labels().contains_key("karpenter.sh/initialized"),
        "labelled initialized with its startup taint on"
    );
    assert_eq!(bound_node(&client, "web-1").await?, None);
    assert_eq!(cloud.launched(), 1, "a second node launched for the pod");

    // The agent that owns the taint removes it: initialized, and the scheduler binds the pod.
    let kept: Vec<_> = node
        .spec
        .and_then(|s| s.taints)
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.key != STARTUP_TAINT)
        .collect();
    nodes
        .patch(
            &node_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": kept}})),
        )
        .await?;
    common::eventually(Duration::from_secs(30), "Initialized", || async {
        Ok(condition_true(&claims.get(&name).await?, "Initialized").then_some(()))
    })
    .await?;
    let node = nodes.get(&node_name).await?;
    assert_eq!(
        node.labels()
            .get("karpenter.sh/initialized")
            .map(String::as_str),
        Some("true")
    );
    assert!(
        !node
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .iter()
            .any(|t| t.key == STARTUP_TAINT),
        "the startup taint was put back"
    );
    common::eventually(Duration::from_secs(30), "web-1 bound", || {
        bound_node(&client, "web-1")
    })
    .await?;
    assert_eq!(cloud.launched(), 1);
    controller.stop()?;
    kubelet.abort();
    Ok(())
}

/// Settings with short timeouts and a garbage collection pass every second.
fn short_timeouts() -> kestrel_kube::Settings {
    let mut settings = common::settings();
    settings.assembly.config.launch_ttl_ms = 3_000;
    settings.assembly.config.registration_ttl_ms = 3_000;
    settings.assembly.config.gc_interval_ms = 1_000;
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_not_launched_in_time_is_deleted_and_its_pod_planned_again() -> Result<()> {
    let (cluster, client) = setup().await?;
    let cloud = common::sim_cloud()?;
    let kubelet = kubelet::spawn(client.clone(), cloud.clone(), common::instance_types()?);
    // The cloud loses the first launch request: it never answers.
    cloud.hang_launches(true);
    let controller = RunningController::start(&cluster, &cloud, short_timeouts());
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-1", "500m"))
        .await?;
    let first = common::eventually(Duration::from_secs(30), "a NodeClaim", || async {
        Ok(claim_names(&client).await?.into_iter().next())
    })
    .await?;
    common::eventually(Duration::from_secs(30), "the launch hanging", || async {
        Ok((cloud.hung_launches() > 0).then_some(()))
    })
    .await?;
    cloud.hang_launches(false);
    common::eventually(
        Duration::from_secs(30),
        "the first claim given up",
        || async { Ok((!claim_names(&client).await?.contains(&first)).then_some(())) },
    )
    .await?;
    common::eventually(Duration::from_secs(60), "web-1 bound", || {
        bound_node(&client, "web-1")
    })
    .await?;
    let claims = claim_names(&client).await?;
    assert_eq!(claims.len(), 1, "{claims:?}");
    assert_ne!(claims[0], first);
    assert_eq!(cloud.launched(), 1, "the lost request launched nothing");
    controller.stop()?;
    kubelet.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_node_never_registers_is_deleted_its_instance_terminated_and_its_pod_planned_again()
-> Result<()> {
    let (cluster, client) = setup().await?;
    let cloud = common::sim_cloud()?;
    // No kubelet yet: the first instance boots but its node never registers.
    let controller = RunningController::start(&cluster, &cloud, short_timeouts());
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-1", "500m"))
        .await?;
    let first = common::eventually(Duration::from_secs(30), "a launched claim", || async {
        Ok(Api::<NodeClaim>::all(client.clone())
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .find(|c| condition_true(c, "Launched"))
            .and_then(|c| c.metadata.name))
    })
    .await?;
    common::eventually(
        Duration::from_secs(30),
        "the first claim given up",
        || async { Ok((!claim_names(&client).await?.contains(&first)).then_some(())) },
    )
    .await?;
    common::eventually(
        Duration::from_secs(30),
        "the first instance terminated",
        || async { Ok((!cloud.live_instances().iter().any(|i| i.claim == first)).then_some(())) },
    )
    .await?;
    // Nodes register again: the pod gets one elsewhere.
    let kubelet = kubelet::spawn(client.clone(), cloud.clone(), common::instance_types()?);
    common::eventually(Duration::from_secs(60), "web-1 bound", || {
        bound_node(&client, "web-1")
    })
    .await?;
    let live = cloud.live_instances();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_ne!(live[0].claim, first);
    controller.stop()?;
    kubelet.abort();
    Ok(())
}
