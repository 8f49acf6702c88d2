//! Reflectors: one watch per kind the controller reads, each feeding an in-memory store.
//!
//! kube-runtime's watcher lists, then watches, and lists again when the watch expires (`410 Gone`) or
//! breaks (an API server restart), so a store converges to the server's state without the controller
//! noticing anything but events. Every event wakes the loop; a pod event also bumps the pending
//! revision, so the controller re-reads pending pods only when some may have changed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kestrel_core::api::{EC2NodeClass, NodeClaim, NodePool};
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The PodDisruptionBudget API the server serves: `policy/v1` from Kubernetes 1.21, `policy/v1beta1`
/// before (chosen by discovery, as the Eviction API's version is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion(pub &'static str);

impl PolicyVersion {
    pub async fn discover(client: &Client) -> Result<PolicyVersion, kube::Error> {
        match client.list_api_group_resources("policy/v1").await {
            Ok(list)
                if list
                    .resources
                    .iter()
                    .any(|r| r.name == "poddisruptionbudgets") =>
            {
                Ok(PolicyVersion("policy/v1"))
            }
            Ok(_) => Ok(PolicyVersion("policy/v1beta1")),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                Ok(PolicyVersion("policy/v1beta1"))
            }
            Err(err) => Err(err),
        }
    }

    pub fn pdb_resource(&self) -> ApiResource {
        ApiResource {
            group: "policy".into(),
            version: self.0.trim_start_matches("policy/").into(),
            api_version: self.0.into(),
            kind: "PodDisruptionBudget".into(),
            plural: "poddisruptionbudgets".into(),
        }
    }
}

/// The stores the snapshot reads, and what wakes the loop.
#[derive(Clone)]
pub struct Reflectors {
    pub pods: Store<Pod>,
    pub nodes: Store<Node>,
    pub node_pools: Store<NodePool>,
    pub node_claims: Store<NodeClaim>,
    pub node_classes: Store<EC2NodeClass>,
    pub daemonsets: Store<DaemonSet>,
    pub pdbs: Store<DynamicObject>,
    /// The ConfigMaps of the controller's namespace (where NodePools' policies live).
    pub configmaps: Store<ConfigMap>,
    /// What pins pods with persistent volumes to zones (`crate::volumes`).
    pub claims: Store<k8s_openapi::api::core::v1::PersistentVolumeClaim>,
    pub volumes: Store<k8s_openapi::api::core::v1::PersistentVolume>,
    pub storage_classes: Store<k8s_openapi::api::storage::v1::StorageClass>,
    pub policy: PolicyVersion,
    /// Notified on every watch event.
    pub wake: Arc<Notify>,
    /// Bumped on every pod event.
    pub pod_revision: Arc<AtomicU64>,
    tasks: Arc<Vec<JoinHandle<()>>>,
}

impl Drop for Reflectors {
    fn drop(&mut self) {
        // The last handle stops the watches (tests start and drop controllers).
        if let Some(tasks) = Arc::get_mut(&mut self.tasks) {
            for t in tasks.iter() {
                t.abort();
            }
        }
    }
}

/// What a store keeps of an object: all but its `managedFields` (the API server's record of which
/// manager set which field: often as large as the object, and never read here). At 500 Nodes and
/// 2,000 Pods the stores are most of the controller's memory (`cargo bench -p kestrel-kube-tests
/// --bench run_scale`).
fn trim<K: kube::Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// A Node less its `managedFields` and `status.images` (up to 50 image names and sizes a kubelet
/// reports; placement does not read them).
fn trim_node(node: &mut Node) {
    trim(node);
    if let Some(status) = node.status.as_mut() {
        status.images = None;
    }
}

/// Drives one watch into its store until the process ends; errors are retried with backoff.
fn drive<K, S>(stream: S, wake: Arc<Notify>, revision: Option<Arc<AtomicU64>>) -> JoinHandle<()>
where
    K: kube::Resource + Clone + Send + Sync + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => {
                    if let Some(r) = &revision {
                        r.fetch_add(1, Ordering::SeqCst);
                    }
                    wake.notify_one();
                }
                Err(err) => tracing::warn!(%err, "watch failed; it restarts with backoff"),
            }
        }
    })
}

impl Reflectors {
    /// Starts every watch (cluster-wide; ConfigMaps in `policy_namespace` only) and returns at once;
    /// see [`Self::wait_synced`].
    pub async fn start(client: &Client, policy_namespace: &str) -> Result<Reflectors, kube::Error> {
        let policy = PolicyVersion::discover(client).await?;
        let wake = Arc::new(Notify::new());
        let pod_revision = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        // Lists are quorum reads (not the API server's watch cache, which may lag etcd): a
        // restarted controller must see the NodeClaim records its predecessor wrote a moment ago,
        // or it plans their pods again.
        let config = || watcher::Config::default().list_semantic(watcher::ListSemantic::MostRecent);

        macro_rules! reflect {
            ($ty:ty, $revision:expr) => {
                reflect!($ty, $revision, trim::<$ty>)
            };
            ($ty:ty, $revision:expr, $trim:expr) => {{
                let (reader, writer) = reflector::store::<$ty>();
                let stream = reflector::reflector(
                    writer,
                    watcher(Api::<$ty>::all(client.clone()), config())
                        .default_backoff()
                        .modify($trim),
                );
                tasks.push(drive(stream, wake.clone(), $revision));
                reader
            }};
        }
        let pods = reflect!(Pod, Some(pod_revision.clone()));
        let nodes = reflect!(Node, None, trim_node);
        let node_pools = reflect!(NodePool, None);
        let node_claims = reflect!(NodeClaim, None);
        let node_classes = reflect!(EC2NodeClass, None);
        let daemonsets = reflect!(DaemonSet, None);
        // A volume event changes where a pending pod may go: counted as a pod event.
        let claims = reflect!(
            k8s_openapi::api::core::v1::PersistentVolumeClaim,
            Some(pod_revision.clone())
        );
        let volumes = reflect!(
            k8s_openapi::api::core::v1::PersistentVolume,
            Some(pod_revision.clone())
        );
        let storage_classes = reflect!(
            k8s_openapi::api::storage::v1::StorageClass,
            Some(pod_revision.clone())
        );
        let ar = policy.pdb_resource();
        let writer = reflector::store::Writer::<DynamicObject>::new(ar.clone());
        let pdbs = writer.as_reader();
        let stream = reflector::reflector(
            writer,
            watcher(
                Api::<DynamicObject>::all_with(client.clone(), &ar),
                config(),
            )
            .default_backoff()
            .modify(trim::<DynamicObject>),
        );
        tasks.push(drive(stream, wake.clone(), None));
        let (configmaps, writer) = reflector::store::<ConfigMap>();
        let stream = reflector::reflector(
            writer,
            watcher(
                Api::<ConfigMap>::namespaced(client.clone(), policy_namespace),
                config(),
            )
            .default_backoff()
            .modify(trim::<ConfigMap>),
        );
        tasks.push(drive(stream, wake.clone(), None));
        Ok(Reflectors {
            pods,
            nodes,
            node_pools,
            node_claims,
            node_classes,
            daemonsets,
            pdbs,
            configmaps,
            claims,
            volumes,
            storage_classes,
            policy,
            wake,
            pod_revision,
            tasks: Arc::new(tasks),
        })
    }

    /// The caches-synced gate: every store has had its first complete list. No decision is made
    /// before (an empty store would read as "no nodes, no claims" and launch everything again).
    pub async fn wait_synced(&self) -> Result<(), reflector::store::WriterDropped> {
        self.pods.wait_until_ready().await?;
        self.nodes.wait_until_ready().await?;
        self.node_pools.wait_until_ready().await?;
        self.node_claims.wait_until_ready().await?;
        self.node_classes.wait_until_ready().await?;
        self.daemonsets.wait_until_ready().await?;
        self.pdbs.wait_until_ready().await?;
        self.configmaps.wait_until_ready().await?;
        self.claims.wait_until_ready().await?;
        self.volumes.wait_until_ready().await?;
        self.storage_classes.wait_until_ready().await?;
        Ok(())
    }
}

impl crate::volumes::VolumeObjects for Reflectors {
    fn claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<k8s_openapi::api::core::v1::PersistentVolumeClaim>> {
        self.claims
            .get(&kube::runtime::reflector::ObjectRef::new(name).within(namespace))
    }

    fn volume(&self, name: &str) -> Option<Arc<k8s_openapi::api::core::v1::PersistentVolume>> {
        self.volumes
            .get(&kube::runtime::reflector::ObjectRef::new(name))
    }

    fn class(&self, name: &str) -> Option<Arc<k8s_openapi::api::storage::v1::StorageClass>> {
        self.storage_classes
            .get(&kube::runtime::reflector::ObjectRef::new(name))
    }
}
