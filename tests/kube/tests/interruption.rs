//! Interruption messages through `kestrel run`: a spot interruption warning from the queue drains
//! its node (cordoned with `karpenter.sh/disrupted`, a replacement launched, the pods evicted, the
//! instance terminated); the message is deleted only once the drain is written, and messages that
//! need nothing (not understood, about an instance Kestrel does not own) are deleted at once; a
//! missing queue makes the leader unready.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Node, Pod};
use kestrel_core::api::NodeClaim;
use kestrel_kube_tests::kubelet;
use kestrel_kube_tests::notice_queue::MemoryQueue;
use kube::Api;
use kube::api::{ListParams, PostParams};

use crate::common::{self, RunningController};
use crate::provisioning::{bound_node, pod, setup};

/// An EventBridge spot interruption warning for `instance`, sent now (the instance goes in 2 min).
fn spot_warning(id: &str, instance: &str) -> String {
    serde_json::json!({
        "version": "0",
        "id": id,
        "detail-type": "EC2 Spot Instance Interruption Warning",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": "us-east-1",
        "resources": [format!("arn:aws:ec2:us-east-1a:instance/{instance}")],
        "detail": {"instance-id": instance, "instance-action": "terminate"}
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_warning_from_the_queue_drains_its_node_and_the_message_goes_once_written()
-> Result<()> {
    let (cluster, client) = setup().await?;
    let cloud = common::sim_cloud()?;
    let kubelet = kubelet::spawn(client.clone(), cloud.clone(), common::instance_types()?);
    let queue = MemoryQueue::default();
    let mut settings = common::settings();
    settings.notice_queue = Some(Arc::new(queue.clone()));
    let health = settings.health.clone();
    let controller = RunningController::start(&cluster, &cloud, settings);
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-1", "500m"))
        .await?;
    let node = common::eventually(Duration::from_secs(60), "web-1 bound", || {
        bound_node(&client, "web-1")
    })
    .await?;
    assert!(queue.started(), "the leader consumes the queue");
    let nodes = Api::<Node>::all(client.clone());
    let provider_id = nodes
        .get(&node)
        .await?
        .spec
        .and_then(|s| s.provider_id)
        .context("the node has a providerID")?;
    let instance = provider_id
        .rsplit('/')
        .next()
        .context("aws:///zone/instance")?
        .to_string();

    // Messages that need nothing go at once.
    queue.send("m-garbage", "{not json");
    queue.send(
        "m-stranger",
        &spot_warning("m-stranger", "i-0123456789abcdef0"),
    );
    common::eventually(
        Duration::from_secs(20),
        "the needless messages deleted",
        || async {
            let deleted = queue.deleted();
            Ok((deleted.contains(&"m-garbage".to_string())
                && deleted.contains(&"m-stranger".to_string()))
            .then_some(()))
        },
    )
    .await?;

    queue.send("m-1", &spot_warning("m-1", &instance));
    common::eventually(Duration::from_secs(30), "the node cordoned", || async {
        let spec = nodes.get(&node).await?.spec.unwrap_or_default();
        let tainted = spec
            .taints
            .unwrap_or_default()
            .iter()
            .any(|t| t.key == "karpenter.sh/disrupted");
        Ok((spec.unschedulable == Some(true) && tainted).then_some(()))
    })
    .await?;
    // The Node says why (`kubectl describe node`).
    common::eventually(
        Duration::from_secs(30),
        "a SpotInterrupted Event",
        || async {
            Ok(common::events_about(&client, "Node", &node)
                .await?
                .iter()
                .any(|e| e.reason.as_deref() == Some("SpotInterrupted"))
                .then_some(()))
        },
    )
    .await?;
    // Deleted once the drain is in the claim's record (its Disrupting condition).
    common::eventually(Duration::from_secs(30), "the message deleted", || async {
        Ok(queue.deleted().contains(&"m-1".to_string()).then_some(()))
    })
    .await?;
    let claims = Api::<NodeClaim>::all(client.clone());
    let disrupting = claims
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .any(|c| {
            c.status.as_ref().is_some_and(|s| {
                s.node_name.as_deref() == Some(node.as_str())
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == "Disrupting" && c.status == "True")
            })
        });
    assert!(disrupting, "deleted before the drain was recorded");

    // The drain finishes: the pod (a bare pod: nothing recreates it) evicted, the instance
    // terminated, the Node gone.
    common::eventually(Duration::from_secs(90), "the node gone", || async {
        Ok(nodes.get_opt(&node).await?.is_none().then_some(()))
    })
    .await?;
    assert!(pods.get_opt("web-1").await?.is_none(), "web-1 evicted");
    assert!(
        !cloud.live_instances().iter().any(|i| i.id == instance),
        "the interrupted instance is still running"
    );
    assert_eq!(
        queue.deleted().iter().filter(|m| *m == "m-1").count(),
        1,
        "deleted once"
    );

    // A queue that goes missing makes the leader unready, saying why, until it is back.
    queue.set_problem(Some("interruption queue q not found"));
    common::eventually(
        Duration::from_secs(20),
        "unready while the queue is missing",
        || async {
            Ok(
                (health.readiness() == Err("interruption queue q not found".to_string()))
                    .then_some(()),
            )
        },
    )
    .await?;
    queue.set_problem(None);
    common::eventually(Duration::from_secs(20), "ready again", || async {
        Ok(health.readiness().is_ok().then_some(()))
    })
    .await?;
    controller.stop()?;
    kubelet.abort();
    Ok(())
}
