//! Killing the controller during a launch and starting it again launches no second instance and
//! loses no pod; an API server restart (every watch reset) loses no pending pod.

use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::Pod;
use kestrel_core::api::NodeClaim;
use kestrel_kube_tests::kubelet;
use kube::Api;
use kube::api::{ListParams, PostParams};

use crate::common::{self, RunningController};
use crate::provisioning::{bound_node, pod, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_during_a_launch_resumes_it_without_a_second_instance() -> Result<()> {
    let (cluster, client) = setup().await?;
    let cloud = common::sim_cloud()?;
    // Abandon in-flight commands at once: the process dies, it does not drain its work.
    let mut settings = common::settings();
    settings.shutdown_grace = Duration::ZERO;
    let first = RunningController::start(&cluster, &cloud, settings.clone());
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-1", "500m"))
        .await?;
    let claims = Api::<NodeClaim>::all(client.clone());
    // Killed as soon as the NodeClaim (the durable record) exists: its launch is in flight or done,
    // and no kubelet has registered anything yet.
    common::eventually(Duration::from_secs(30), "a NodeClaim", || async {
        Ok(claims
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .next())
    })
    .await?;
    first.stop()?;
    let launched_before_restart = cloud.launched();

    // The restarted controller decides before any Node registers (longer than the batch window):
    // only its recovery from the NodeClaim record keeps it from planning the pod again.
    let second = RunningController::start(&cluster, &cloud, settings);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let kubelet = kubelet::spawn(client.clone(), cloud.clone(), common::instance_types()?);
    common::eventually(Duration::from_secs(60), "the pod bound", || {
        bound_node(&client, "web-1")
    })
    .await?;
    let claims_now = claims.list(&ListParams::default()).await?.items;
    assert_eq!(
        claims_now.len(),
        1,
        "one NodeClaim: {:?}",
        claims_now
            .iter()
            .map(|c| &c.metadata.name)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        cloud.launched(),
        1,
        "one instance ever launched (before the restart: {launched_before_restart})"
    );
    second.stop()?;
    kubelet.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apiserver_restart_loses_no_pending_pod() -> Result<()> {
    let (mut cluster, client) = setup().await?;
    let cloud = common::sim_cloud()?;
    let kubelet = kubelet::spawn(client.clone(), cloud.clone(), common::instance_types()?);
    let controller = RunningController::start(&cluster, &cloud, common::settings());
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-1", "500m"))
        .await?;
    common::eventually(Duration::from_secs(60), "web-1 bound", || {
        bound_node(&client, "web-1")
    })
    .await?;

    // Every watch breaks; the pod created right after the restart must still be seen (re-list).
    cluster.restart_apiserver()?;
    pods.create(&PostParams::default(), &pod("web-2", "3"))
        .await?;
    common::eventually(Duration::from_secs(90), "web-2 bound", || {
        bound_node(&client, "web-2")
    })
    .await?;
    controller.stop()?;
    kubelet.abort();
    Ok(())
}
