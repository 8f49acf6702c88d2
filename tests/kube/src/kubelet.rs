//! A test "kubelet": for each instance the simulated cloud boots, it registers a Node the way a real
//! kubelet on EC2 does (providerID `aws:///zone/i-...`, the instance type's capacity, well-known
//! labels, Ready, and Karpenter's `karpenter.sh/unregistered` taint until Kestrel initializes it),
//! and deletes the Node when the instance terminates (the cloud node lifecycle controller's job).
//! [`spawn`] serves the in-process simulated cloud, [`spawn_file`] the file-backed one another
//! process (`kestrel run --cloud-state`) launches into.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeSpec, NodeStatus, Pod, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kestrel_core::clock::{Clock, SystemClock};
use kestrel_core::controller::InstanceTypeInfo;
use kestrel_sim::cloud::sim::CloudEvent;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::sim_cloud::SimCloudApi;
use kestrel_core::cloud::Instance;
use kestrel_kube::file_cloud::FileCloud;

/// The Node name an instance registers as.
pub fn node_name(instance_id: &str) -> String {
    format!("ip-{}.ec2.internal", instance_id.trim_start_matches("i-"))
}

fn quantities(it: &InstanceTypeInfo) -> BTreeMap<String, Quantity> {
    it.allocatable
        .iter()
        .filter(|(_, q)| !q.is_zero())
        .map(|(n, q)| (n.to_string(), Quantity(q.to_string())))
        .collect()
}

async fn register(
    client: &Client,
    cloud: &SimCloudApi,
    types: &[InstanceTypeInfo],
    instance_id: &str,
) -> Result<()> {
    let now = SystemClock.now();
    let instance = {
        let mut c = cloud.lock();
        if !c.mark_running(instance_id, now) {
            return Ok(()); // terminated before it booted
        }
        c.instance(instance_id).cloned()
    };
    let Some(instance) = instance else {
        return Ok(());
    };
    register_instance(client, types, &instance).await
}

/// Registers the Node of a booted instance, as a kubelet on EC2 does.
pub async fn register_instance(
    client: &Client,
    types: &[InstanceTypeInfo],
    instance: &Instance,
) -> Result<()> {
    let Some(it) = types
        .iter()
        .find(|t| t.name == instance.offering.instance_type)
    else {
        anyhow::bail!(
            "instance type {} unknown to the kubelet",
            instance.offering.instance_type
        );
    };
    let name = node_name(&instance.id);
    let mut labels = (*it.labels).clone();
    labels.insert("kubernetes.io/hostname".into(), name.clone());
    labels.insert(
        "topology.kubernetes.io/zone".into(),
        instance.offering.zone.clone(),
    );
    labels.insert("node.kubernetes.io/instance-type".into(), it.name.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            provider_id: Some(format!("aws:///{}/{}", instance.offering.zone, instance.id)),
            taints: Some(vec![Taint {
                key: "karpenter.sh/unregistered".into(),
                effect: "NoExecute".into(),
                ..Taint::default()
            }]),
            ..NodeSpec::default()
        }),
        status: None,
    };
    let api = Api::<Node>::all(client.clone());
    api.create(&PostParams::default(), &node).await?;
    let status = NodeStatus {
        capacity: Some(quantities(it)),
        allocatable: Some(quantities(it)),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("KubeletReady".into()),
            ..NodeCondition::default()
        }]),
        ..NodeStatus::default()
    };
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await?;
    Ok(())
}

/// The cloud node lifecycle controller's part: a terminated instance's Node is deleted.
pub async fn delete_node_of(client: &Client, instance_id: &str) -> Result<()> {
    match Api::<Node>::all(client.clone())
        .delete(&node_name(instance_id), &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The node lifecycle controller's part: a Ready node loses the `not-ready` taint the API server
/// put on it at creation (there is no controller-manager in the test control plane).
pub async fn clear_not_ready(client: &Client, names: &[String]) -> Result<()> {
    let api = Api::<Node>::all(client.clone());
    for name in names {
        let node = match api.get(name).await {
            Ok(n) => n,
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return Err(e.into()),
        };
        let version = node.metadata.resource_version.clone();
        let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
        if taints.iter().any(|t| t.key == NOT_READY) {
            let kept: Vec<_> = taints.into_iter().filter(|t| t.key != NOT_READY).collect();
            // At the version read, as the node lifecycle controller writes: a taint list another
            // writer (Kestrel's registration) changed meanwhile is not written back over (409:
            // read again next round).
            match api
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({
                        "metadata": {"resourceVersion": version},
                        "spec": {"taints": kept}
                    })),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// A kubelet starts the pods bound to its nodes: they turn Running (the Eviction API lets a Pending
/// pod go without asking its PodDisruptionBudget, so a drain test needs them Running).
pub async fn start_pods(client: &Client, names: &[String]) -> Result<()> {
    let pods = Api::<Pod>::all(client.clone())
        .list(&Default::default())
        .await?;
    for pod in pods.items {
        let on_ours = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some_and(|n| names.contains(n));
        let pending = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending");
        if on_ours && pending && pod.metadata.deletion_timestamp.is_none() {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            Api::<Pod>::namespaced(client.clone(), &ns)
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"phase": "Running"}})),
                )
                .await?;
        }
    }
    Ok(())
}

const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// Runs the kubelet until the handle is aborted (every 100 ms: the cloud's due events).
pub fn spawn(client: Client, cloud: SimCloudApi, types: Vec<InstanceTypeInfo>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut registered: Vec<String> = Vec::new();
        loop {
            for event in cloud.take_due(SystemClock.now()) {
                let result = match &event {
                    CloudEvent::Running { instance_id } => {
                        registered.push(node_name(instance_id));
                        register(&client, &cloud, &types, instance_id).await
                    }
                    CloudEvent::Terminated { instance_id } => {
                        registered.retain(|n| *n != node_name(instance_id));
                        delete_node_of(&client, instance_id).await
                    }
                    _ => Ok(()),
                };
                if let Err(err) = result {
                    tracing::warn!(?event, %err, "test kubelet");
                }
            }
            if let Err(err) = clear_not_ready(&client, &registered).await {
                tracing::warn!(%err, "test kubelet: clearing not-ready");
            }
            if let Err(err) = start_pods(&client, &registered).await {
                tracing::warn!(%err, "test kubelet: starting pods");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// How long a file-cloud instance takes to boot before its Node registers.
const FILE_BOOT_MS: i64 = 300;

/// The kubelet over the file-backed cloud `kestrel run --cloud-state FILE` uses (another process's
/// cloud): every 100 ms, pending instances older than the boot time are marked running and
/// registered, terminated ones' Nodes deleted.
pub fn spawn_file(
    client: Client,
    cloud: FileCloud,
    types: Vec<InstanceTypeInfo>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut registered: Vec<String> = Vec::new();
        let mut deleted: Vec<String> = Vec::new();
        loop {
            let now = SystemClock.now();
            let changed = cloud.update(|state| {
                let mut booted = Vec::new();
                for i in state.instances.iter_mut() {
                    if i.state == "pending" && i.launched_at + FILE_BOOT_MS <= now {
                        i.state = "running".into();
                        booted.push(i.to_instance());
                    }
                }
                let gone: Vec<String> = state
                    .instances
                    .iter()
                    .filter(|i| i.state == "terminated")
                    .map(|i| i.id.clone())
                    .collect();
                (booted, gone)
            });
            match changed {
                Ok((booted, gone)) => {
                    for instance in booted {
                        registered.push(node_name(&instance.id));
                        if let Err(err) = register_instance(&client, &types, &instance).await {
                            tracing::warn!(id = %instance.id, %err, "test kubelet: registering");
                        }
                    }
                    let new_gone: Vec<String> = gone
                        .into_iter()
                        .filter(|id| !deleted.contains(id))
                        .collect();
                    for id in &new_gone {
                        registered.retain(|n| *n != node_name(id));
                        match delete_node_of(&client, id).await {
                            Ok(()) => deleted.push(id.clone()),
                            Err(err) => tracing::warn!(%id, %err, "test kubelet: deleting"),
                        }
                    }
                }
                Err(err) => tracing::warn!(%err, "test kubelet: reading the cloud state"),
            }
            if let Err(err) = clear_not_ready(&client, &registered).await {
                tracing::warn!(%err, "test kubelet: clearing not-ready");
            }
            if let Err(err) = start_pods(&client, &registered).await {
                tracing::warn!(%err, "test kubelet: starting pods");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}
