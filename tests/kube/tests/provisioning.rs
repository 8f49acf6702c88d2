//! A pending pod leads to a NodeClaim, a launch on the simulated cloud, a Node registered by the test
//! kubelet and initialized by Kestrel, and the real kube-scheduler binding the pod to it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Node, Pod};
use kestrel_core::api::NodeClaim;
use kestrel_kube_tests::cluster::TestCluster;
use kestrel_kube_tests::kubelet;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};

use crate::common::{self, RunningController};

pub use kestrel_kube_tests::workload::{POOL, pod};

pub async fn setup() -> Result<(TestCluster, Client)> {
    common::init_tracing();
    let cluster = TestCluster::start()?;
    let client = cluster.client().await?;
    common::install_crds(&client).await?;
    common::apply_yaml(&client, POOL).await?;
    Ok((cluster, client))
}

/// Waits until the test kubelet has started the pod (Running): the Eviction API lets a Pending pod go
/// whatever its PodDisruptionBudget says, so a test of a PDB holding a drain waits for this first.
pub async fn wait_running(client: &Client, pod: &str) -> Result<()> {
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    common::eventually(
        Duration::from_secs(30),
        &format!("{pod} running"),
        || async {
            let p = pods.get(pod).await?;
            Ok((p.status.and_then(|s| s.phase).as_deref() == Some("Running")).then_some(()))
        },
    )
    .await
}

pub async fn bound_node(client: &Client, pod: &str) -> Result<Option<String>> {
    let p = Api::<Pod>::namespaced(client.clone(), "default")
        .get(pod)
        .await?;
    Ok(p.spec.and_then(|s| s.node_name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_pod_gets_a_node_and_the_scheduler_binds_it() -> Result<()> {
    let (cluster, client) = setup().await?;
    let cloud = common::sim_cloud()?;
    let kubelet = kubelet::spawn(client.clone(), cloud.clone(), common::instance_types()?);
    let controller = RunningController::start(&cluster, &cloud, common::settings());

    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-1", "500m"))
        .await?;
    let created = Instant::now();
    let claims = Api::<NodeClaim>::all(client.clone());
    let claim = common::eventually(Duration::from_secs(30), "a NodeClaim", || async {
        Ok(claims
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .next())
    })
    .await?;
    let to_claim = created.elapsed();
    eprintln!("pending pod -> NodeClaim created: {to_claim:?}");

    let bound = common::eventually(Duration::from_secs(60), "the pod bound", || {
        bound_node(&client, "web-1")
    })
    .await;
    let node_name = match bound {
        Ok(n) => n,
        Err(err) => {
            let p = pods.get("web-1").await?;
            let nodes = Api::<Node>::all(client.clone())
                .list(&ListParams::default())
                .await?;
            eprintln!(
                "pod: {:?}\nnodes: {:#?}",
                p.status,
                nodes
                    .items
                    .iter()
                    .map(|n| (&n.metadata.labels, &n.spec, &n.status))
                    .collect::<Vec<_>>()
            );
            return Err(err);
        }
    };
    eprintln!(
        "pending pod -> bound by kube-scheduler: {:?}",
        created.elapsed()
    );

    // The NodeClaim: Karpenter's finalizer, owned by its NodePool, launched and registered.
    let name = claim.metadata.name.clone().context("named")?;
    let claim = claims.get(&name).await?;
    assert_eq!(
        claim.metadata.finalizers.as_deref(),
        Some(&["karpenter.sh/termination".to_string()][..])
    );
    let owner = &claim.metadata.owner_references.as_ref().context("owner")?[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("NodePool", "default")
    );
    let status = claim.status.clone().context("status")?;
    for c in ["Launched", "Registered", "Initialized", "Ready"] {
        assert!(
            status
                .conditions
                .iter()
                .any(|x| x.type_ == c && x.status == "True"),
            "{c} not True: {:?}",
            status.conditions
        );
    }
    assert_eq!(status.node_name.as_deref(), Some(node_name.as_str()));
    let instance = cloud.live_instances();
    assert_eq!(instance.len(), 1, "exactly one instance launched");
    assert_eq!(instance[0].claim, name);
    assert_eq!(
        status.provider_id.as_deref(),
        Some(format!("aws:///{}/{}", instance[0].offering.zone, instance[0].id).as_str())
    );

    // The Node: the pool's labels and taints, the unregistered taint gone.
    let node = Api::<Node>::all(client.clone()).get(&node_name).await?;
    let labels = node.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("karpenter.sh/nodepool").map(String::as_str),
        Some("default")
    );
    assert_eq!(labels.get("team").map(String::as_str), Some("web"));
    assert_eq!(
        labels.get("karpenter.sh/capacity-type").map(String::as_str),
        Some("on-demand")
    );
    assert_eq!(labels.get("karpenter.sh/nodeclaim"), Some(&name));
    assert_eq!(
        labels.get("karpenter.sh/initialized").map(String::as_str),
        Some("true")
    );
    let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
    assert!(
        taints.iter().all(|t| t.key != "karpenter.sh/unregistered"),
        "{taints:?}"
    );
    assert!(
        taints
            .iter()
            .any(|t| t.key == "dedicated" && t.effect == "NoSchedule"),
        "{taints:?}"
    );

    // Status and Events: the pool counts its node; the launch and the nomination are on record.
    let pools = Api::<kestrel_core::api::NodePool>::all(client.clone());
    common::eventually(
        Duration::from_secs(10),
        "NodePool status nodes=1",
        || async {
            let p = pools.get("default").await?;
            Ok((p.status.and_then(|s| s.nodes) == Some(1)).then_some(()))
        },
    )
    .await?;
    // `kubectl get nodeclaims,nodepools`: Karpenter's columns, filled.
    let (columns, rows) = common::table(&client, "/apis/karpenter.sh/v1/nodeclaims").await?;
    assert_eq!(
        columns[..7],
        ["Name", "Type", "Capacity", "Zone", "Node", "Ready", "Age"],
        "{columns:?}"
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0], name.as_str());
    assert_eq!(rows[0][1], instance[0].offering.instance_type.as_str());
    assert_eq!(rows[0][2], "on-demand");
    assert_eq!(rows[0][3], instance[0].offering.zone.as_str());
    assert_eq!(rows[0][4], node_name.as_str());
    assert_eq!(rows[0][5], "True");
    common::eventually(Duration::from_secs(10), "NodePool Ready", || async {
        let (columns, rows) = common::table(&client, "/apis/karpenter.sh/v1/nodepools").await?;
        assert_eq!(
            columns[..5],
            ["Name", "NodeClass", "Nodes", "Ready", "Age"],
            "{columns:?}"
        );
        Ok((rows[0][0] == "default"
            && rows[0][1] == "default"
            && rows[0][2] == "1"
            && rows[0][3] == "True")
            .then_some(()))
    })
    .await?;
    let pool = pools.get("default").await?;
    let conditions = pool.status.map(|s| s.conditions).unwrap_or_default();
    for c in ["Ready", "ValidationSucceeded", "NodeClassReady"] {
        assert!(
            conditions
                .iter()
                .any(|x| x.type_ == c && x.status == "True"),
            "NodePool {c} not True: {conditions:?}"
        );
    }

    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await?
        .items;
    let has = |reason: &str, name: &str| {
        events.iter().any(|e| {
            e.reason.as_deref() == Some(reason) && e.involved_object.name.as_deref() == Some(name)
        })
    };
    assert!(
        has("Launched", &name),
        "no Launched event for {name}: {:?}",
        events
            .iter()
            .map(|e| (&e.reason, &e.involved_object.name))
            .collect::<Vec<_>>()
    );
    assert!(has("Registered", &name), "no Registered event for {name}");
    assert!(has("Nominated", "web-1"), "no Nominated event for web-1");

    controller.stop()?;
    kubelet.abort();
    Ok(())
}

/// A PersistentVolume in `zone` (EBS-like: its node affinity names the zone), bound to claim
/// `default/data`, and the pod `db-0` mounting it.
fn volume_yaml(zone: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: PersistentVolume
metadata: {{name: pv-data}}
spec:
  capacity: {{storage: 10Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: gp3
  csi: {{driver: ebs.csi.aws.com, volumeHandle: vol-0123456789abcdef0}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions:
            - {{key: topology.kubernetes.io/zone, operator: In, values: [{zone}]}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
  namespace: default
  # What the PV controller writes once it bound the pair (there is none in the test control plane).
  annotations: {{pv.kubernetes.io/bind-completed: "yes"}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: gp3
  volumeName: pv-data
  resources: {{requests: {{storage: 10Gi}}}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_with_a_zonal_volume_gets_a_node_in_the_volumes_zone() -> Result<()> {
    let (cluster, client) = setup().await?;
    // Not the first zone: the cheapest-first ranking alone would not land there.
    let zone = common::ZONES[2];
    common::apply_yaml(&client, &volume_yaml(zone)).await?;
    let cloud = common::sim_cloud()?;
    let kubelet = kubelet::spawn(client.clone(), cloud.clone(), common::instance_types()?);
    let controller = RunningController::start(&cluster, &cloud, common::settings());
    let mut db = pod("db-0", "500m");
    let spec = db.spec.as_mut().context("a spec")?;
    spec.volumes = Some(vec![serde_json::from_value(serde_json::json!({
        "name": "data", "persistentVolumeClaim": {"claimName": "data"}
    }))?]);
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &db)
        .await?;
    let node = common::eventually(Duration::from_secs(60), "db-0 bound", || {
        bound_node(&client, "db-0")
    })
    .await?;
    let labels = Api::<Node>::all(client.clone())
        .get(&node)
        .await?
        .metadata
        .labels
        .unwrap_or_default();
    assert_eq!(
        labels
            .get("topology.kubernetes.io/zone")
            .map(String::as_str),
        Some(zone),
        "the node is not in its volume's zone"
    );
    controller.stop()?;
    kubelet.abort();
    Ok(())
}
