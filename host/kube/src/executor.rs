//! Carries out the controller's commands: the cluster's against the API server, the cloud's through
//! the async cloud edge. Each call answers with the [`Outcome`] the controller applies; none is
//! retried here (the controller owns retries and backoff).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, EventSource, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition, MicroTime, ObjectMeta, OwnerReference, Time,
};
use kestrel_core::api::{NodeClaim, NodeClaimSpec, NodePool};
use kestrel_core::cloud::CloudApi;
use kestrel_core::cluster::{ClaimRecord, ClusterError};
use kestrel_core::controller::{CAPACITY_TYPE_LABEL, Command, NODEPOOL_LABEL, Outcome, ZONE_LABEL};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use crate::record::{self, RECORD_ANNOTATION, TERMINATION_FINALIZER};
use crate::snapshot::{INSTANCE_TYPE_LABEL, NOMINATION_ANNOTATION};
use crate::watch::Reflectors;

/// Karpenter's taint on a node being disrupted: nothing new schedules there.
pub const DISRUPTED_TAINT: &str = "karpenter.sh/disrupted";
/// The field manager of Kestrel's server-side applies.
pub const FIELD_MANAGER: &str = "kestrel";
/// How long one cluster command may take before it is answered as unavailable (and retried).
pub const CLUSTER_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Where Events about cluster-scoped objects (NodeClaims, Nodes, NodePools) go.
pub const EVENT_NAMESPACE: &str = "default";

/// The executor: cheap to clone, one clone per command in flight.
#[derive(Clone)]
pub struct Executor {
    client: Client,
    reflectors: Reflectors,
    cloud: Arc<dyn CloudApi>,
    /// Writes to one NodeClaim are serialized, so an older write never lands after a newer one.
    claim_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

fn unavailable(err: kube::Error) -> ClusterError {
    ClusterError::Unavailable(err.to_string())
}

fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

/// Ignores "not found": the commands are idempotent and a gone object is the goal reached.
fn gone_is_ok<T>(result: Result<T, kube::Error>) -> Result<(), ClusterError> {
    match result {
        Ok(_) => Ok(()),
        Err(err) if is_not_found(&err) => Ok(()),
        Err(err) => Err(unavailable(err)),
    }
}

fn now_time() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

pub fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
    // An empty message is serialized as null, which the NodeClaim schema refuses.
    let message = if message.is_empty() { reason } else { message };
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: now_time(),
        observed_generation: None,
    }
}

/// `conditions` with each of `set` replacing the one of its type; a condition whose status does not
/// change keeps its transition time.
pub fn merge_conditions(existing: &[Condition], set: Vec<Condition>) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing
        .iter()
        .filter(|c| !set.iter().any(|s| s.type_ == c.type_))
        .cloned()
        .collect();
    for mut c in set {
        if let Some(old) = existing.iter().find(|o| o.type_ == c.type_)
            && old.status == c.status
        {
            c.last_transition_time = old.last_transition_time.clone();
        }
        out.push(c);
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

impl Executor {
    pub fn new(client: Client, reflectors: Reflectors, cloud: Arc<dyn CloudApi>) -> Executor {
        Executor {
            client,
            reflectors,
            cloud,
            claim_locks: Arc::default(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs one command and answers with its outcome.
    pub async fn execute(&self, command: &Command) -> Outcome {
        if let Some(outcome) = kestrel_core::cloud::execute_cloud(&*self.cloud, command).await {
            return outcome;
        }
        // A cluster call that hangs (an API server that accepted the connection and never
        // answers) must not hold its command in flight forever: the controller retries it.
        match tokio::time::timeout(CLUSTER_CALL_TIMEOUT, self.execute_cluster(command)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Cluster(Err(ClusterError::Unavailable(format!(
                "no answer within {CLUSTER_CALL_TIMEOUT:?}"
            )))),
        }
    }

    async fn execute_cluster(&self, command: &Command) -> Outcome {
        Outcome::Cluster(match command {
            Command::WriteClaim(record) => self.write_claim(record).await,
            Command::DeleteClaim { name } => self.delete_claim(name).await,
            Command::Nominate { pod, claim } => self.nominate(pod, claim).await,
            Command::Cordon { node } => self.cordon(node, true).await,
            Command::Uncordon { node } => self.cordon(node, false).await,
            Command::Evict { pod, force, .. } => self.evict(pod, *force).await,
            Command::DeleteNode { node } => self.delete_node(node).await,
            Command::Launch(_)
            | Command::Terminate { .. }
            | Command::ListInstances
            | Command::ReadSpotPrices { .. } => {
                unreachable!("cloud commands are answered by execute_cloud")
            }
        })
    }

    fn claim_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.claim_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(name.to_string()).or_default().clone()
    }

    fn node_pool(&self, name: &str) -> Option<Arc<NodePool>> {
        self.reflectors
            .node_pools
            .state()
            .into_iter()
            .find(|p| p.name_any() == name)
    }

    /// The NodeClaim for a record: Karpenter's shape (labels, finalizer, owner, the NodePool
    /// template's spec), with Kestrel's resume data in its annotation.
    pub fn node_claim(record: &ClaimRecord, pool: Option<&NodePool>) -> NodeClaim {
        let mut labels = BTreeMap::from([(NODEPOOL_LABEL.to_string(), record.node_pool.clone())]);
        if let Some(o) = &record.offering {
            labels.insert(INSTANCE_TYPE_LABEL.into(), o.instance_type.clone());
            labels.insert(ZONE_LABEL.into(), o.zone.clone());
            labels.insert(CAPACITY_TYPE_LABEL.into(), o.capacity_type.label().into());
        }
        // The claim's own template (what it was made from), not the pool's current one.
        let template = &record.template;
        let mut annotations = template
            .metadata
            .as_ref()
            .map(|m| m.annotations.clone())
            .unwrap_or_default();
        if let Some(m) = &template.metadata {
            for (k, v) in &m.labels {
                labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        annotations.insert(RECORD_ANNOTATION.to_string(), record::encode(record));
        let spec = Some(&template.spec);
        let mut claim = NodeClaim::new(
            &record.name,
            NodeClaimSpec {
                taints: spec.map(|s| s.taints.clone()).unwrap_or_default(),
                startup_taints: spec.map(|s| s.startup_taints.clone()).unwrap_or_default(),
                requirements: spec.map(|s| s.requirements.clone()).unwrap_or_default(),
                resources: None,
                node_class_ref: spec.map(|s| s.node_class_ref.clone()).unwrap_or_else(|| {
                    kestrel_core::api::NodeClassReference {
                        group: "karpenter.k8s.aws".into(),
                        kind: "EC2NodeClass".into(),
                        name: "default".into(),
                    }
                }),
                termination_grace_period: spec.and_then(|s| s.termination_grace_period.clone()),
                expire_after: spec.and_then(|s| s.expire_after.clone()),
            },
        );
        claim.metadata = ObjectMeta {
            name: Some(record.name.clone()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                RECORD_ANNOTATION.to_string(),
                record::encode(record),
            )])),
            finalizers: Some(vec![TERMINATION_FINALIZER.to_string()]),
            owner_references: pool.and_then(|p| {
                Some(vec![OwnerReference {
                    api_version: NodePool::api_version(&()).into(),
                    kind: NodePool::kind(&()).into(),
                    name: p.name_any(),
                    uid: p.metadata.uid.clone()?,
                    block_owner_deletion: Some(true),
                    controller: None,
                }])
            }),
            ..ObjectMeta::default()
        };
        claim
    }

    async fn write_claim(&self, record: &ClaimRecord) -> Result<(), ClusterError> {
        let lock = self.claim_lock(&record.name);
        let _serialized = lock.lock().await;
        let api = Api::<NodeClaim>::all(self.client.clone());
        let pool = self.node_pool(&record.node_pool);
        let claim = Self::node_claim(record, pool.as_deref());
        let applied = api
            .patch(
                &record.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&claim),
            )
            .await
            .map_err(unavailable)?;
        let existing = applied
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        let mut set = Vec::new();
        let mut status = serde_json::Map::new();
        match (&record.instance_id, &record.offering) {
            (Some(id), Some(o)) => {
                set.push(condition(
                    "Launched",
                    "True",
                    "Launched",
                    &format!("{} in {}", o.instance_type, o.zone),
                ));
                status.insert("providerID".into(), json!(record::provider_id(&o.zone, id)));
            }
            _ => set.push(condition(
                "Launched",
                "Unknown",
                "Launching",
                "the instance is being launched",
            )),
        }
        match &record.drain {
            Some(d) => set.push(condition(
                "Disrupting",
                "True",
                &to_pascal(&record::reason_name(d.reason)),
                &d.detail,
            )),
            None if existing.iter().any(|c| c.type_ == "Disrupting") => {
                set.push(condition("Disrupting", "False", "NotDisrupting", ""))
            }
            None => {}
        }
        let was = |type_: &str| {
            existing
                .iter()
                .any(|c| c.type_ == type_ && c.status == "True")
        };
        // Events for people, at the transitions: the launch, and the disruption with the core's
        // explanation. A failed Event is logged, not retried: the record is what matters.
        let mut events = Vec::new();
        if let (Some(_), Some(o)) = (&record.instance_id, &record.offering)
            && !was("Launched")
        {
            events.push((
                "Launched",
                format!(
                    "Launched {} {} in {} at ${:.4}/h for {} pod(s) ({})",
                    o.capacity_type.label(),
                    o.instance_type,
                    o.zone,
                    o.price,
                    record.pods.len(),
                    record::reason_name(record.reason)
                ),
            ));
        }
        if let Some(d) = &record.drain
            && !was("Disrupting")
        {
            events.push((
                "Disrupting",
                format!(
                    "Disrupting ({}): {}",
                    record::reason_name(d.reason),
                    d.detail
                ),
            ));
        }
        status.insert("conditions".into(), json!(merge_conditions(&existing, set)));
        api.patch_status(
            &record.name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .map_err(unavailable)?;
        for (reason, message) in events {
            let object = reference::<NodeClaim>(&record.name, applied.metadata.uid.clone());
            if let Err(err) = emit(&self.client, object, "Normal", reason, &message).await {
                tracing::warn!(claim = %record.name, %err, reason, "Event not recorded");
            }
        }
        Ok(())
    }

    async fn delete_claim(&self, name: &str) -> Result<(), ClusterError> {
        let lock = self.claim_lock(name);
        let _serialized = lock.lock().await;
        let api = Api::<NodeClaim>::all(self.client.clone());
        // The instance is gone (the controller deletes a record only then): the finalizer may go.
        gone_is_ok(
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await,
        )?;
        gone_is_ok(api.delete(name, &DeleteParams::default()).await)?;
        self.claim_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        Ok(())
    }

    /// Deletes a drained Node: Kestrel's finalizer removed (the drain it guards is done; the
    /// instance's termination is the NodeClaim record's to guard), then the object deleted.
    async fn delete_node(&self, node: &str) -> Result<(), ClusterError> {
        // A conflict (the Node changed between the read and the patch, e.g. the cloud node
        // lifecycle deleting it too) is read again and retried a few times.
        let mut attempt = 0;
        loop {
            match self.delete_node_once(node).await {
                Err(kube::Error::Api(s)) if s.code == 409 && attempt < 5 => attempt += 1,
                Err(err) if is_not_found(&err) => return Ok(()),
                Err(err) => return Err(unavailable(err)),
                Ok(()) => return Ok(()),
            }
        }
    }

    async fn delete_node_once(&self, node: &str) -> Result<(), kube::Error> {
        let api = Api::<Node>::all(self.client.clone());
        let current = api.get(node).await?;
        let finalizers = current.metadata.finalizers.clone().unwrap_or_default();
        if finalizers.iter().any(|f| f == TERMINATION_FINALIZER) {
            let kept: Vec<&String> = finalizers
                .iter()
                .filter(|f| *f != TERMINATION_FINALIZER)
                .collect();
            // The resourceVersion makes the patch fail rather than drop a finalizer another
            // controller added meanwhile.
            api.patch(
                node,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {
                    "finalizers": kept,
                    "resourceVersion": current.metadata.resource_version,
                }})),
            )
            .await?;
        }
        match api.delete(node, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(err) if is_not_found(&err) => Ok(()),
            Err(err) => Err(err),
        }
    }

    async fn nominate(&self, pod: &str, claim: &str) -> Result<(), ClusterError> {
        let (namespace, name) = pod.split_once('/').unwrap_or(("default", pod));
        let api = Api::<Pod>::namespaced(self.client.clone(), namespace);
        match api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {NOMINATION_ANNOTATION: claim}}})),
            )
            .await
        {
            Ok(_) => {}
            Err(err) if is_not_found(&err) => {
                return Err(ClusterError::PodNotFound(pod.to_string()));
            }
            Err(err) => return Err(unavailable(err)),
        }
        let object = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..ObjectReference::default()
        };
        emit(
            &self.client,
            object,
            "Normal",
            "Nominated",
            &format!("Pod should schedule on: nodeclaim/{claim}"),
        )
        .await
        .map_err(unavailable)
    }

    async fn cordon(&self, node: &str, cordon: bool) -> Result<(), ClusterError> {
        let api = Api::<Node>::all(self.client.clone());
        let current = match self
            .reflectors
            .nodes
            .state()
            .into_iter()
            .find(|n| n.name_any() == node)
        {
            Some(n) => n,
            None => match api.get(node).await {
                Ok(n) => Arc::new(n),
                Err(err) if is_not_found(&err) => {
                    return Err(ClusterError::NodeNotFound(node.to_string()));
                }
                Err(err) => return Err(unavailable(err)),
            },
        };
        let mut taints: Vec<_> = current
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.key != DISRUPTED_TAINT)
            .collect();
        if cordon {
            taints.push(k8s_openapi::api::core::v1::Taint {
                key: DISRUPTED_TAINT.into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            });
        }
        match api
            .patch(
                node,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"unschedulable": cordon, "taints": taints}})),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if is_not_found(&err) => Err(ClusterError::NodeNotFound(node.to_string())),
            Err(err) => Err(unavailable(err)),
        }
    }

    async fn evict(&self, pod: &str, force: bool) -> Result<(), ClusterError> {
        let (namespace, name) = pod.split_once('/').unwrap_or(("default", pod));
        let api = Api::<Pod>::namespaced(self.client.clone(), namespace);
        if force {
            return gone_is_ok(api.delete(name, &DeleteParams::default()).await);
        }
        // The Eviction body in the policy version the server serves (kube's `evict` sends policy/v1
        // only, which a 1.20 server refuses).
        let body = json!({
            "apiVersion": self.reflectors.policy.0,
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        });
        match api
            .create_subresource::<_, serde_json::Value>(
                "eviction",
                name,
                &PostParams::default(),
                &body,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if is_not_found(&err) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 429 => {
                Err(ClusterError::EvictionBlocked {
                    pod: pod.to_string(),
                    budget: status.message.clone(),
                })
            }
            Err(err) => Err(unavailable(err)),
        }
    }
}

/// `drifted` -> `Drifted`, `spot-interruption` -> `SpotInterruption` (condition reasons are CamelCase).
fn to_pascal(kebab: &str) -> String {
    kebab
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// Records a core/v1 Event about an object.
pub async fn emit(
    client: &Client,
    object: ObjectReference,
    type_: &str,
    reason: &str,
    message: &str,
) -> Result<(), kube::Error> {
    // A 1.20 server requires an involved object of a kind it does not know as cluster-scoped (a
    // CRD's) to carry the Event's namespace; Events about cluster-scoped objects go to `default`.
    let mut object = object;
    let namespace = object
        .namespace
        .clone()
        .unwrap_or_else(|| EVENT_NAMESPACE.to_string());
    object.namespace = Some(namespace.clone());
    let now = k8s_openapi::jiff::Timestamp::now();
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", object.name.clone().unwrap_or_default())),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: object,
        type_: Some(type_.into()),
        reason: Some(reason.into()),
        message: Some(message.into()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        count: Some(1),
        reporting_component: Some("kestrel".into()),
        reporting_instance: Some("kestrel".into()),
        action: Some(reason.into()),
        source: Some(EventSource {
            component: Some("kestrel".into()),
            host: None,
        }),
        ..Event::default()
    };
    Api::<Event>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), &event)
        .await
        .map(|_| ())
}

/// The reference an Event about a cluster-scoped Kestrel object carries.
pub fn reference<K: Resource<DynamicType = ()>>(
    name: &str,
    uid: Option<String>,
) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into()),
        kind: Some(K::kind(&()).into()),
        name: Some(name.into()),
        uid,
        ..ObjectReference::default()
    }
}
