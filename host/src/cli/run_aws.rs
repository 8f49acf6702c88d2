//! `kestrel run --cloud aws`: the AWS adapter (`kestrel-aws`) joined to the cluster.
//!
//! - The SDK is configured as any AWS tool is (IRSA in a pod, the environment, a profile;
//!   `AWS_ENDPOINT_URL` for another endpoint).
//! - Each NodePool is bound to its EC2NodeClass as resolved (subnets, security groups, AMIs), with
//!   its userData rendered for the AMI family from the cluster's bootstrap settings and the pool's
//!   labels and taints; the NodeClass's status (resolved values, `Ready`) is written. Resolution
//!   runs at start (before the first launch), then every `--resolve-interval` and when the replica
//!   takes the lease; a failed resolution keeps the previous binding and says so in the log and the
//!   status. Every replica resolves and binds (a standby launches at once when it takes over); only
//!   the leader writes (statuses, finalizers, instance profiles), fenced by its lease.
//! - Each EC2NodeClass carries Karpenter's termination finalizer: a deleted class launches nothing
//!   more and goes once no NodeClaim names it, its instance profile deleted first
//!   ([`super::node_class_finalizer`]).
//! - The interruption queue (`INTERRUPTION_QUEUE`) is consumed through the loop's
//!   [`NoticeQueue`] edge.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine;
use kestrel_aws::ec2::user_data::{self, Bootstrap};
use kestrel_aws::ec2::{BoundNodeClass, DiscoverySettings, Ec2Cloud, Ec2Settings, Resolution};
use kestrel_aws::iam::InstanceProfiles;
use kestrel_aws::sqs::{InterruptionQueue, QueueConfig, QueueHealth};
use kestrel_core::api::ec2nodeclass::{EC2NodeClass, EC2NodeClassStatus};
use kestrel_core::api::nodeclaim::NodeClaim;
use kestrel_core::api::nodepool::NodePool;
use kestrel_core::clock::{Clock, SystemClock};
use kestrel_core::cloud::CloudApi;
use kestrel_core::controller::assemble::DescribedTypes;
use kestrel_core::interruption::inbox::Deletion;
use kestrel_kube::interruptions::{DeleteCall, NoticeQueue, QueuedMessage};
use kestrel_kube::kube::api::{Api, ListParams, Patch, PatchParams};
use kestrel_kube::kube::{self, ResourceExt};
use kestrel_kube::lease::Fence;
use tokio::sync::{mpsc, watch};

use super::node_class_finalizer as finalizer;
use super::run::setting;

/// `kestrel run`'s AWS settings (flags, else Karpenter's environment variables).
#[derive(Debug, Clone, clap::Args)]
pub struct AwsArgs {
    /// The API server's endpoint the nodes join (`https://…eks.amazonaws.com`) [env:
    /// CLUSTER_ENDPOINT]. Required with `--cloud aws`.
    #[arg(long)]
    pub cluster_endpoint: Option<String>,
    /// The cluster's CA bundle for the nodes, base64 PEM as `aws eks describe-cluster` prints it
    /// [env: CLUSTER_CA_BUNDLE; default: the CA the controller's own kube client trusts].
    #[arg(long)]
    pub cluster_ca_bundle: Option<String>,
    /// The cluster's service CIDR (AL2023's nodeadm needs it) [env: SERVICE_CIDR]. Required with
    /// `--cloud aws` for AL2023 NodeClasses.
    #[arg(long)]
    pub service_cidr: Option<String>,
    /// Owners of the AMIs an `amiSelectorTerms` alias resolves to (an account id where the EKS
    /// AMIs are copied).
    #[arg(long, value_delimiter = ',', default_value = "amazon")]
    pub ami_alias_owners: Vec<String>,
    /// How often EC2NodeClasses are resolved again (new AMIs, subnets, security groups).
    #[arg(long, default_value = "5m")]
    pub resolve_interval: String,
    /// How often the region's instance types and their zones are described again
    /// (DescribeInstanceTypes, DescribeInstanceTypeOfferings); a change rebuilds the controller.
    #[arg(long, default_value = "1h")]
    pub instance_types_interval: String,
}

/// The cluster facts every node's bootstrap takes.
#[derive(Debug, Clone)]
struct ClusterFacts {
    name: String,
    endpoint: String,
    ca_bundle: String,
    service_cidr: String,
    /// `1.33`: what alias AMIs are looked up for.
    kubernetes_version: Option<String>,
}

/// What `--cloud aws` plugs into the loop.
pub struct AwsEdge {
    pub cloud: Arc<dyn CloudApi>,
    pub notice_queue: Option<Arc<dyn NoticeQueue>>,
    /// The instance types as EC2 last described them (None until a description succeeds).
    pub instance_types: watch::Receiver<Option<Arc<DescribedTypes>>>,
}

/// Builds the AWS edge: the SDK configuration, a first resolution of every EC2NodeClass (so the
/// first launch finds its pool bound), the periodic resolution, and the interruption queue.
pub async fn connect(
    client: kube::Client,
    kube_config: &kube::Config,
    args: &AwsArgs,
    cluster_name: &str,
    interruption_queue: Option<&str>,
    leadership: Fence,
) -> anyhow::Result<AwsEdge> {
    let endpoint = setting(&args.cluster_endpoint, "CLUSTER_ENDPOINT").context(
        "--cloud aws needs the API server endpoint the nodes join: --cluster-endpoint or CLUSTER_ENDPOINT",
    )?;
    let ca_bundle = match setting(&args.cluster_ca_bundle, "CLUSTER_CA_BUNDLE") {
        Some(b) => b,
        None => ca_bundle_of(kube_config).context(
            "no CA bundle for the nodes: set --cluster-ca-bundle or CLUSTER_CA_BUNDLE (the kube client trusts no explicit CA)",
        )?,
    };
    let version = client
        .apiserver_version()
        .await
        .context("reading the API server's version (for alias AMIs)")?;
    let facts = ClusterFacts {
        name: cluster_name.to_string(),
        endpoint,
        ca_bundle,
        service_cidr: setting(&args.service_cidr, "SERVICE_CIDR").unwrap_or_default(),
        kubernetes_version: Some(format!(
            "{}.{}",
            version.major,
            version.minor.trim_end_matches('+')
        )),
    };
    let every = kestrel_core::api::parse_duration(&args.resolve_interval)
        .with_context(|| format!("--resolve-interval {:?}", args.resolve_interval))?;
    let config = kestrel_aws::config::load().await;
    let cloud = Arc::new(Ec2Cloud::from_config(
        &config,
        Ec2Settings::new(cluster_name),
    ));
    let mut binder = Binder {
        client,
        cloud: cloud.clone(),
        profiles: InstanceProfiles::from_config(&config, cluster_name),
        discovery: DiscoverySettings {
            kubernetes_version: facts.kubernetes_version.clone(),
            alias_owners: args.ami_alias_owners.clone(),
        },
        facts,
        resolved: BTreeMap::new(),
        waiting: BTreeMap::new(),
        leadership,
    };
    binder.pass().await;
    tokio::spawn(async move {
        // Every `every`, and at once when this replica starts leading: a standby's passes only
        // bind (read), so its first pass as leader makes what the classes need (profiles,
        // statuses, finalizers) without waiting a whole interval.
        let mut leading = binder.leadership.holds();
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(TAKEOVER_POLL.min(every)).await;
            let now_leading = binder.leadership.holds();
            if last.elapsed() >= every || (now_leading && !leading) {
                binder.pass().await;
                last = tokio::time::Instant::now();
            }
            leading = now_leading;
        }
    });
    let types_every = kestrel_core::api::parse_duration(&args.instance_types_interval)
        .with_context(|| {
            format!(
                "--instance-types-interval {:?}",
                args.instance_types_interval
            )
        })?;
    let (types_tx, instance_types) = watch::channel(None);
    describe_instance_types(&cloud, &types_tx).await;
    tokio::spawn({
        let cloud = cloud.clone();
        async move {
            loop {
                tokio::time::sleep(types_every).await;
                describe_instance_types(&cloud, &types_tx).await;
            }
        }
    });
    let notice_queue = interruption_queue.map(|name| {
        let queue =
            InterruptionQueue::new(aws_sdk_sqs::Client::new(&config), QueueConfig::new(name));
        Arc::new(SqsNotices(queue)) as Arc<dyn NoticeQueue>
    });
    Ok(AwsEdge {
        cloud,
        notice_queue,
        instance_types,
    })
}

/// One description of the region's instance types, published if it differs from the last. A failed
/// one keeps the last (or, before any succeeded, the embedded catalog, every type in every zone:
/// a launch into a zone that lacks the type fails and marks that offering unavailable).
async fn describe_instance_types(
    cloud: &Ec2Cloud,
    published: &watch::Sender<Option<Arc<DescribedTypes>>>,
) {
    match cloud.describe_instance_types().await {
        Ok(described) => {
            let (types, offered) = (described.types.len(), described.zones.len());
            let changed = published.send_if_modified(|last| {
                if last.as_deref() == Some(&described) {
                    return false;
                }
                *last = Some(Arc::new(described));
                true
            });
            if changed {
                tracing::info!(types, offered, "instance types described");
            }
        }
        Err(err) if published.borrow().is_some() => {
            tracing::warn!(%err, "describing the instance types failed; the last description stays in use")
        }
        Err(err) => tracing::warn!(
            %err,
            "describing the instance types failed; planning with the embedded catalog until a description succeeds"
        ),
    }
}

/// How often the binder looks whether this replica started leading.
const TAKEOVER_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Binds NodePools to their EC2NodeClasses as resolved and, while this replica leads, writes what
/// the classes need: their status, their finalizer, the instance profiles of role-only classes.
/// A standby only reads and binds, so that it launches at once when it takes over; what it binds
/// to was made by the leader (a profile's name is a function of the class).
struct Binder {
    client: kube::Client,
    cloud: Arc<Ec2Cloud>,
    /// The instance profiles of role-only NodeClasses.
    profiles: InstanceProfiles,
    facts: ClusterFacts,
    discovery: DiscoverySettings,
    /// The last good resolution of each NodeClass (kept while a resolution fails).
    resolved: BTreeMap<String, Resolution>,
    /// The NodeClaims each deleted NodeClass was last seen waiting for (an Event when this changes).
    waiting: BTreeMap<String, Vec<String>>,
    /// Whether this replica may write (the leader lease's fence), checked before every write.
    leadership: Fence,
}

impl Binder {
    /// One resolution of every EC2NodeClass and one binding of every NodePool. Failures are logged:
    /// the previous binding stays, and a pool whose class never resolved launches nothing (its
    /// launches fail with the reason, and its pods are planned again).
    async fn pass(&mut self) {
        let classes = match Api::<EC2NodeClass>::all(self.client.clone())
            .list(&ListParams::default())
            .await
        {
            Ok(list) => list.items,
            Err(err) => {
                tracing::warn!(%err, "listing EC2NodeClasses failed; the bindings stay as they are");
                return;
            }
        };
        let pools = match Api::<NodePool>::all(self.client.clone())
            .list(&ListParams::default())
            .await
        {
            Ok(list) => list.items,
            Err(err) => {
                tracing::warn!(%err, "listing NodePools failed; the bindings stay as they are");
                return;
            }
        };
        // Deleted classes finish only on a complete list of NodeClaims: a failed one defers them.
        let claims = match Api::<NodeClaim>::all(self.client.clone())
            .list(&ListParams::default())
            .await
        {
            Ok(list) => Some(list.items),
            Err(err) => {
                tracing::warn!(%err, "listing NodeClaims failed; deleted EC2NodeClasses wait for the next pass");
                None
            }
        };
        for class in &classes {
            let name = class.name_any();
            if class.metadata.deletion_timestamp.is_some() {
                // Nothing more launches with it (its pools are unbound below).
                self.resolved.remove(&name);
                if let Some(claims) = claims.as_ref().filter(|_| self.leadership.holds()) {
                    self.finalize(class, claims).await;
                }
                continue;
            }
            if finalizer::step(class, &[]) == finalizer::Step::Add && self.leadership.holds() {
                match finalizer::write(&self.client, class, true).await {
                    Ok(()) => tracing::info!(class = %name, "termination finalizer added"),
                    Err(err) => {
                        tracing::warn!(class = %name, %err, "adding the termination finalizer failed; tried again at the next pass")
                    }
                }
            }
            match kestrel_aws::ec2::resolve(self.cloud.client(), &class.spec, &self.discovery).await
            {
                Ok(mut resolution) => {
                    // A role-only class launches with the profile Kestrel keeps for its role; one
                    // that cannot be made leaves the class not ready (with the reason).
                    if let (None, Some(role)) = (&class.spec.instance_profile, &class.spec.role) {
                        if !self.leadership.holds() {
                            // The leader makes and keeps it; its name is the class's.
                            resolution.instance_profile = Some(self.profiles.name_for(&name));
                            self.resolved.insert(name, resolution);
                            continue;
                        }
                        match self.profiles.ensure(&name, role).await {
                            Ok(profile) => resolution.instance_profile = Some(profile),
                            Err(err) => {
                                // The profile made before (if any) stays in use.
                                resolution.instance_profile = self
                                    .resolved
                                    .get(&name)
                                    .and_then(|r| r.instance_profile.clone());
                                tracing::warn!(class = %name, role, %err, kept = ?resolution.instance_profile, "the EC2NodeClass's instance profile could not be made or checked")
                            }
                        }
                    }
                    if self.leadership.holds() {
                        self.write_status(class, &resolution).await;
                    }
                    self.resolved.insert(name, resolution);
                }
                Err(err) => {
                    tracing::warn!(class = %name, %err, "resolving the EC2NodeClass failed; its previous resolution stays in use")
                }
            }
        }
        for pool in &pools {
            let pool_name = pool.name_any();
            let class_name = &pool.spec.template.spec.node_class_ref.name;
            let class = classes.iter().find(|c| &c.name_any() == class_name);
            if class.is_none_or(|c| c.metadata.deletion_timestamp.is_some())
                && self.cloud.unbind(&pool_name)
            {
                tracing::warn!(pool = %pool_name, class = %class_name, "the NodePool's EC2NodeClass is gone or being deleted; nothing launches for it");
                continue;
            }
            let (Some(class), Some(resolution)) = (class, self.resolved.get(class_name)) else {
                tracing::warn!(pool = %pool_name, class = %class_name, "the NodePool's EC2NodeClass is missing or never resolved; nothing launches for it");
                continue;
            };
            match self.user_data(pool, class) {
                Ok(user_data) => self.cloud.bind(
                    &pool_name,
                    BoundNodeClass {
                        name: class_name.clone(),
                        spec: class.spec.clone(),
                        resolution: resolution.clone(),
                        user_data,
                    },
                ),
                Err(err) => {
                    tracing::error!(pool = %pool_name, class = %class_name, error = %err, "the NodePool's userData cannot be rendered; its binding stays as it was")
                }
            }
        }
    }

    /// One step of a deleted class's finalizer (see [`finalizer`]): wait for its NodeClaims (an
    /// Event when the set it waits for changes), or delete the instance profile Kestrel made for it
    /// and remove the finalizer. A failed step is logged and taken again at the next pass.
    async fn finalize(&mut self, class: &EC2NodeClass, claims: &[NodeClaim]) {
        let name = class.name_any();
        match finalizer::step(class, claims) {
            finalizer::Step::Wait(names) => {
                if self.waiting.get(&name) == Some(&names) {
                    return;
                }
                let message = format!("waiting on NodeClaim termination for {}", names.join(", "));
                tracing::info!(class = %name, "{message}");
                let object = kestrel_kube::executor::reference::<EC2NodeClass>(&name, class.uid());
                if let Err(err) = kestrel_kube::executor::emit(
                    &self.client,
                    object,
                    "Normal",
                    "WaitingOnNodeClaimTermination",
                    &message,
                )
                .await
                {
                    tracing::warn!(class = %name, %err, "Event not recorded");
                }
                self.waiting.insert(name, names);
            }
            finalizer::Step::Finish => {
                if class.spec.role.is_some() && class.spec.instance_profile.is_none() {
                    match self.profiles.delete(&name).await {
                        Ok(deleted) => {
                            tracing::info!(class = %name, deleted, "the EC2NodeClass's instance profile is gone")
                        }
                        Err(err) => {
                            tracing::warn!(class = %name, %err, "deleting the EC2NodeClass's instance profile failed; the class stays until it succeeds");
                            return;
                        }
                    }
                }
                match finalizer::write(&self.client, class, false).await {
                    Ok(()) => {
                        tracing::info!(class = %name, "termination finalizer removed");
                        self.waiting.remove(&name);
                    }
                    Err(err) => {
                        tracing::warn!(class = %name, %err, "removing the termination finalizer failed; tried again at the next pass")
                    }
                }
            }
            finalizer::Step::Add | finalizer::Step::Keep => {}
        }
    }

    /// The pool's userData (base64), for its class's AMI family.
    fn user_data(&self, pool: &NodePool, class: &EC2NodeClass) -> anyhow::Result<Option<String>> {
        let Some(family) = class.spec.ami_family() else {
            // No family (only id/name/tag terms and no amiFamily): the userData is the user's.
            return Ok(class.spec.user_data.as_deref().map(user_data::encode));
        };
        let template = &pool.spec.template;
        let mut labels: BTreeMap<String, String> = template
            .metadata
            .as_ref()
            .map(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(
            kestrel_core::model::labels::NODE_POOL.into(),
            pool.name_any(),
        );
        let model = kestrel_core::controller::convert::node_pool(pool)?;
        let mut taints = model.taints.clone();
        taints.extend(model.startup_taints.iter().cloned());
        let kubelet = class.spec.kubelet.as_ref();
        if family == kestrel_core::api::ec2nodeclass::AMIFamily::AL2023
            && self.facts.service_cidr.is_empty()
        {
            bail!(
                "AL2023 nodes need the cluster's service CIDR: set --service-cidr or SERVICE_CIDR"
            );
        }
        let bootstrap = Bootstrap {
            cluster_name: self.facts.name.clone(),
            api_server_endpoint: self.facts.endpoint.clone(),
            ca_bundle: self.facts.ca_bundle.clone(),
            service_cidr: self.facts.service_cidr.clone(),
            cluster_dns: kubelet.map(|k| k.cluster_dns.clone()).unwrap_or_default(),
            max_pods: kubelet.and_then(|k| k.max_pods),
            labels,
            taints,
        };
        let text = user_data::render(family, &bootstrap, class.spec.user_data.as_deref())?;
        Ok(Some(user_data::encode(&text)))
    }

    /// Writes the class's status when what it says changed (not on every pass: the condition's
    /// time alone is no change).
    async fn write_status(&self, class: &EC2NodeClass, resolution: &Resolution) {
        let now = SystemClock.now();
        let status =
            kestrel_aws::ec2::status(&class.spec, resolution, class.metadata.generation, now);
        if class
            .status
            .as_ref()
            .is_some_and(|current| same_status(current, &status))
        {
            return;
        }
        let patch = serde_json::json!({ "status": status });
        if let Err(err) = Api::<EC2NodeClass>::all(self.client.clone())
            .patch_status(
                &class.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            tracing::warn!(class = %class.name_any(), %err, "writing the EC2NodeClass status failed; written again at the next resolution");
        }
    }
}

/// Whether two statuses say the same (conditions compared without their times).
fn same_status(a: &EC2NodeClassStatus, b: &EC2NodeClassStatus) -> bool {
    let conditions = |s: &EC2NodeClassStatus| {
        s.conditions
            .iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                    c.observed_generation,
                )
            })
            .collect::<Vec<_>>()
    };
    a.subnets == b.subnets
        && a.security_groups == b.security_groups
        && a.amis == b.amis
        && conditions(a) == conditions(b)
}

/// The CA the kube client trusts, as a base64 PEM bundle (what the nodes' kubelets trust too).
fn ca_bundle_of(config: &kube::Config) -> Option<String> {
    let certs = config.root_cert.as_ref().filter(|c| !c.is_empty())?;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut pem = String::new();
    for der in certs {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let body = engine.encode(der);
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    Some(engine.encode(pem))
}

/// The SQS consumer behind the loop's queue edge.
#[derive(Clone)]
struct SqsNotices(Arc<InterruptionQueue>);

impl std::fmt::Debug for SqsNotices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqsNotices({})", self.0.config().queue_name)
    }
}

impl NoticeQueue for SqsNotices {
    fn start(&self, messages: mpsc::Sender<QueuedMessage>, stop: watch::Receiver<bool>) {
        let (received, mut from_sqs) = mpsc::channel(64);
        self.0.spawn(received, stop);
        tokio::spawn(async move {
            while let Some(m) = from_sqs.recv().await {
                let message = QueuedMessage {
                    message_id: m.message_id,
                    receipt_handle: m.receipt_handle,
                    body: m.body,
                    sent_at: m.sent_at,
                };
                if messages.send(message).await.is_err() {
                    return; // The loop stopped: its pollers stop with it.
                }
            }
        });
    }

    fn delete<'a>(&'a self, deletions: &'a [Deletion]) -> DeleteCall<'a> {
        Box::pin(async move { self.0.delete(deletions).await.map_err(|e| e.to_string()) })
    }

    fn problem(&self) -> Option<String> {
        match &*self.0.health().borrow() {
            QueueHealth::Missing { queue } => Some(format!(
                "interruption queue {queue} not found (looked up again with backoff)"
            )),
            _ => None,
        }
    }
}
