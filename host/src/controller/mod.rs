//! The controller loop: snapshot -> core -> actions, shared by production and the simulator.
//!
//! One [`Controller::tick`] reads the cluster and cloud edges, runs the steps that are due, and executes
//! the resulting actions against the same edges:
//! 1. interruption notices -> cordon, pre-spin replacement capacity, drain, terminate;
//! 2. drains in progress -> evict when the replacement is ready (or at the deadline), then terminate;
//! 3. provisioning -> batch new pending pods (1 s idle / 10 s max), plan, launch, nominate;
//! 4. disruption -> the [`DisruptionStep`] seam (consolidation, drift, expiry plug in here);
//! 5. garbage collection -> instances without a claim or node are terminated.
//!
//! Every executed action is logged as a [`Decided`] with its [`Explanation`].
pub mod batch;
pub mod convert;
pub mod disruption;
pub mod planner;
pub mod provision;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::NodeSelectorRequirement;

use crate::clock::Millis;
use crate::cloud::{CapacityType, CloudError, CloudProvider, LaunchRequest, Offering};
use crate::cluster::{ClusterState, NodeState, PodKey, PodState, ResourceList, Taint};
use crate::interruption::{self, Notice, Response};
use batch::Batcher;
use provision::{PlannedClaim, ProvisionInput, Provisioner};

/// An instance type as the controller sizes nodes with it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceTypeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub allocatable: ResourceList,
    pub on_demand_price: f64,
}

/// A NodePool, as far as the loop needs it (built from the Karpenter v1 NodePool).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PoolSpec {
    pub name: String,
    pub weight: i32,
    pub requirements: Vec<NodeSelectorRequirement>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// `spec.disruption.consolidationPolicy`.
    pub consolidation_policy: String,
    /// `spec.disruption.consolidateAfter`; None = `Never`.
    pub consolidate_after_ms: Option<Millis>,
    /// `spec.template.spec.expireAfter`; None = `Never`.
    pub expire_after_ms: Option<Millis>,
}

pub const NODEPOOL_LABEL: &str = "karpenter.sh/nodepool";
pub const CAPACITY_TYPE_LABEL: &str = "karpenter.sh/capacity-type";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

impl PoolSpec {
    /// Looks a label up on a node this pool would launch from the offering (no allocation).
    pub fn label<'a>(
        &'a self,
        it: &'a InstanceTypeInfo,
        zone: &'a str,
        ct: CapacityType,
        key: &str,
    ) -> Option<&'a str> {
        match key {
            ZONE_LABEL => Some(zone),
            CAPACITY_TYPE_LABEL => Some(ct.label()),
            NODEPOOL_LABEL => Some(&self.name),
            _ => self
                .labels
                .get(key)
                .or_else(|| it.labels.get(key))
                .map(String::as_str),
        }
    }

    pub fn node_labels(
        &self,
        it: &InstanceTypeInfo,
        zone: &str,
        ct: CapacityType,
    ) -> BTreeMap<String, String> {
        let mut labels = it.labels.clone();
        labels.extend(self.labels.clone());
        labels.extend(crate::model::labels::zone_labels(zone));
        labels.insert(CAPACITY_TYPE_LABEL.into(), ct.label().into());
        labels.insert(NODEPOOL_LABEL.into(), self.name.clone());
        labels
    }

    /// Whether the pool's requirements allow the offering.
    pub fn allows(&self, it: &InstanceTypeInfo, zone: &str, ct: CapacityType) -> bool {
        self.requirements
            .iter()
            .all(|r| crate::sim::fit::requirement_matches(r, |k| self.label(it, zone, ct, k)))
    }
}

/// Why an action was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    Provisioning,
    SpotInterruption,
    ScheduledChange,
    Rebalance,
    Empty,
    Underutilized,
    Drifted,
    Expired,
    /// The instance or node disappeared underneath us.
    InstanceGone,
    /// An instance with no claim and no node.
    Orphan,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Explanation {
    pub reason: Reason,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    LaunchClaim {
        claim: String,
        node_pool: String,
        offering: Option<Offering>,
        pods: usize,
    },
    Cordon {
        node: String,
    },
    Evict {
        pod: String,
        node: String,
    },
    Terminate {
        node: Option<String>,
        instance_id: String,
    },
    AvoidOffering {
        instance_type: String,
        zone: String,
        capacity_type: CapacityType,
        until: Millis,
    },
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Decided {
    pub at: Millis,
    pub action: Action,
    pub why: Explanation,
}

/// A voluntary disruption the disruption step decided: remove `nodes`, optionally after launching
/// `replacement` (which must be ready before the nodes are drained).
#[derive(Debug, Clone, PartialEq)]
pub struct DisruptionCommand {
    pub reason: Reason,
    pub nodes: Vec<String>,
    pub replacement: Option<PlannedClaim>,
    /// Expiry is forceful: PDBs do not hold it back.
    pub forceful: bool,
    pub explanation: String,
}

/// What the disruption step sees.
pub struct DisruptionInput<'a> {
    pub now: Millis,
    pub nodes: &'a [Arc<NodeState>],
    pub cluster: &'a dyn ClusterState,
    pub pools: &'a [PoolSpec],
    pub instance_types: &'a [InstanceTypeInfo],
    pub offerings: &'a [Offering],
    /// Changes whenever `offerings` change; what a step derives from the offerings (and the fixed
    /// instance types) may be cached by it.
    pub offerings_revision: u64,
    /// Nodes already being drained or replaced (they use up budget).
    pub disrupting: &'a BTreeSet<String>,
    /// Claims launched but not registered yet.
    pub in_flight_claims: usize,
    /// Requests of the DaemonSets a new node of a pool runs (sizes replacements).
    pub daemon_overhead: &'a dyn Fn(&PoolSpec, &InstanceTypeInfo) -> ResourceList,
}

/// The seam where consolidation, drift and expiration plug in (issue 5).
pub trait DisruptionStep {
    /// What the step does and which policies decide, for reports.
    fn name(&self) -> String {
        "custom disruption step".into()
    }
    /// How often the step runs (Karpenter polls every 10 s).
    fn interval_ms(&self) -> Millis {
        10_000
    }
    fn decide(&mut self, input: &DisruptionInput<'_>) -> Vec<DisruptionCommand>;
    /// Policy fallbacks since the last call (for the report).
    fn take_policy_fallbacks(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// No voluntary disruption (until `crate::disruption` lands).
#[derive(Debug, Default)]
pub struct NoDisruption;

impl DisruptionStep for NoDisruption {
    fn name(&self) -> String {
        "none".into()
    }
    fn interval_ms(&self) -> Millis {
        Millis::MAX / 4
    }
    fn decide(&mut self, _: &DisruptionInput<'_>) -> Vec<DisruptionCommand> {
        Vec::new()
    }
}

#[derive(Debug, Clone)]
struct ClaimState {
    node_pool: String,
    created_at: Millis,
    instance_id: Option<String>,
    taints: Vec<Taint>,
    /// The core's view of the claim (when the core planned it), for later batches.
    core: Option<crate::model::NodeClaim>,
}

#[derive(Debug, Clone)]
struct Drain {
    instance_id: String,
    reason: Reason,
    /// Evict by this time even if replacements are not ready.
    drain_by: Millis,
    /// Replacement claims that must register before draining.
    waiting_for: Vec<String>,
    forceful: bool,
}

/// Counters the report reads.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ControllerStats {
    pub batches: u64,
    pub claims_launched: u64,
    pub launch_failures: u64,
    pub insufficient_capacity_fallthroughs: u64,
    pub interruptions_handled: u64,
    pub rebalance_recommendations: u64,
    pub policy_fallbacks: Vec<String>,
    pub orphans_collected: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct ControllerConfig {
    pub batch_idle_ms: Millis,
    pub batch_max_ms: Millis,
    /// Retry pods that could not be placed this often.
    pub retry_unplaced_ms: Millis,
    pub gc_interval_ms: Millis,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            batch_idle_ms: batch::DEFAULT_IDLE_MS,
            batch_max_ms: batch::DEFAULT_MAX_MS,
            retry_unplaced_ms: 60_000,
            gc_interval_ms: 60_000,
        }
    }
}

pub struct Controller {
    config: ControllerConfig,
    pools: Vec<PoolSpec>,
    instance_types: Vec<InstanceTypeInfo>,
    contract_catalog: crate::policy::contract::rank::Catalog,
    seed: u64,
    type_index: HashMap<String, usize>,
    zones: Vec<String>,
    /// DaemonSet requests per (pool, instance type) are computed by the caller.
    daemon_overhead: DaemonOverhead,
    provisioner: Box<dyn Provisioner>,
    disruption: Box<dyn DisruptionStep>,
    batcher: Batcher,
    seen_pending: BTreeSet<PodKey>,
    seen_revision: Option<u64>,
    retry_at: Option<Millis>,
    next_disruption_at: Millis,
    next_gc_at: Millis,
    claims: BTreeMap<String, ClaimState>,
    next_claim: u64,
    node_by_instance: HashMap<String, String>,
    draining: BTreeMap<String, Drain>,
    unavailable: BTreeMap<(String, String, CapacityType), Millis>,
    /// Bumped whenever `unavailable` gains or loses an entry.
    unavailable_revision: u64,
    notices: Vec<Notice>,
    offerings: Vec<Offering>,
    /// When the spot price list was last read, what it said, and a revision bumped when it changed.
    prices_read_at: Option<Millis>,
    spot_prices: Vec<crate::cloud::SpotPrice>,
    prices_revision: u64,
    /// The launchable offerings, keyed by the price list's and the unavailable set's revisions, with
    /// their own revision (bumped only when the list's content changes).
    available: Option<(OfferingsKey, u64, Arc<[Offering]>)>,
    /// Pods the last plan could not place, with the reason.
    pub unplaceable: BTreeMap<PodKey, String>,
    pub log: Vec<Decided>,
    pub stats: ControllerStats,
}

/// The DaemonSet requests a new node of a pool and instance type will carry.
pub type DaemonOverhead = Box<dyn Fn(&PoolSpec, &InstanceTypeInfo) -> ResourceList>;

/// How long a launched claim may take to register its node.
const REGISTRATION_TTL_MS: Millis = 15 * 60_000;

/// What the launchable offerings were computed from: the price list's and the unavailable set's
/// revisions.
type OfferingsKey = (u64, u64);

/// How long a price list is trusted before it is read again.
const OFFERINGS_REFRESH_MS: Millis = 300_000;

impl Controller {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: ControllerConfig,
        pools: Vec<PoolSpec>,
        instance_types: Vec<InstanceTypeInfo>,
        contract_catalog: crate::policy::contract::rank::Catalog,
        seed: u64,
        zones: Vec<String>,
        daemon_overhead: DaemonOverhead,
        provisioner: Box<dyn Provisioner>,
        disruption: Box<dyn DisruptionStep>,
    ) -> Self {
        let type_index = instance_types
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Controller {
            batcher: Batcher::new(config.batch_idle_ms, config.batch_max_ms),
            config,
            pools,
            instance_types,
            contract_catalog,
            seed,
            type_index,
            zones,
            daemon_overhead,
            provisioner,
            disruption,
            seen_pending: BTreeSet::new(),
            seen_revision: None,
            retry_at: None,
            next_disruption_at: 0,
            next_gc_at: 0,
            claims: BTreeMap::new(),
            next_claim: 1,
            node_by_instance: HashMap::new(),
            draining: BTreeMap::new(),
            unavailable: BTreeMap::new(),
            unavailable_revision: 0,
            notices: Vec::new(),
            offerings: Vec::new(),
            prices_read_at: None,
            spot_prices: Vec::new(),
            prices_revision: 0,
            available: None,
            unplaceable: BTreeMap::new(),
            log: Vec::new(),
            stats: ControllerStats::default(),
        }
    }

    pub fn provisioner_name(&self) -> String {
        self.provisioner.name()
    }

    pub fn instance_type(&self, name: &str) -> Option<&InstanceTypeInfo> {
        self.type_index.get(name).map(|&i| &self.instance_types[i])
    }

    pub fn pools(&self) -> &[PoolSpec] {
        &self.pools
    }

    /// An interruption notice arrived (SQS in production, the virtual cloud in the simulator).
    pub fn notify(&mut self, notice: Notice) {
        self.notices.push(notice);
    }

    /// The Node object a claim's instance registers as (labels and taints from its NodePool).
    pub fn node_for(&self, instance: &crate::cloud::Instance, now: Millis) -> Option<NodeState> {
        let claim = self.claims.get(&instance.claim)?;
        let pool = self.pools.iter().find(|p| p.name == claim.node_pool)?;
        let it = self.instance_type(&instance.offering.instance_type)?;
        let name = format!(
            "ip-10-{}-{}-{}.ec2.internal",
            (self.next_claim / 65536) % 256,
            (u64::from_str_radix(&instance.id[2..], 16).unwrap_or(0) / 256) % 256,
            u64::from_str_radix(&instance.id[2..], 16).unwrap_or(0) % 256
        );
        let mut labels =
            pool.node_labels(it, &instance.offering.zone, instance.offering.capacity_type);
        labels.insert(crate::sim::fit::HOSTNAME.into(), name.clone());
        Some(NodeState {
            name: name.into(),
            instance_id: instance.id.clone(),
            claim: instance.claim.clone(),
            node_pool: pool.name.clone(),
            instance_type: it.name.clone(),
            zone: instance.offering.zone.clone(),
            capacity_type: instance.offering.capacity_type,
            price: instance.offering.price,
            labels: std::sync::Arc::new(labels),
            taints: claim.taints.clone(),
            allocatable: it.allocatable.clone(),
            requested: ResourceList::default(),
            pods: 0,
            created_at: now,
            ready: true,
            cordoned: false,
            deleting: false,
        })
    }

    /// The claim's node registered.
    pub fn observe_node_registered(&mut self, node: &NodeState) {
        self.claims.remove(&node.claim);
        self.node_by_instance
            .insert(node.instance_id.clone(), node.name.to_string());
    }

    /// Claims launched and not registered yet.
    pub fn in_flight(&self) -> usize {
        self.claims.len()
    }

    pub fn draining(&self) -> usize {
        self.draining.len()
    }

    /// Runs whatever is due at `now`; returns when the loop wants to run next.
    pub fn tick(
        &mut self,
        now: Millis,
        cluster: &mut dyn ClusterState,
        cloud: &mut dyn CloudProvider,
    ) -> Option<Millis> {
        let before = self.unavailable.len();
        self.unavailable.retain(|_, until| *until > now);
        if self.unavailable.len() != before {
            self.unavailable_revision += 1;
        }
        self.handle_notices(now, cluster, cloud);
        self.progress_drains(now, cluster, cloud);
        self.provision(now, cluster, cloud);
        if now >= self.next_disruption_at {
            self.next_disruption_at = now.saturating_add(self.disruption.interval_ms());
            self.disrupt(now, cluster, cloud);
        }
        if now >= self.next_gc_at {
            self.next_gc_at = now + self.config.gc_interval_ms;
            self.collect_garbage(now, cluster, cloud);
        }
        let mut wake = [
            self.batcher.closes_at(),
            self.retry_at,
            Some(self.next_disruption_at),
            Some(self.next_gc_at),
        ]
        .into_iter()
        .flatten()
        .min();
        for d in self.draining.values() {
            wake = wake.map(|w| w.min(d.drain_by)).or(Some(d.drain_by));
        }
        wake.map(|w| w.max(now + 1))
    }

    fn record(&mut self, at: Millis, action: Action, reason: Reason, detail: String) {
        self.log.push(Decided {
            at,
            action,
            why: Explanation { reason, detail },
        });
    }

    /// The offerings launchable now: the price list (re-read every 5 minutes) minus the unavailable
    /// cache. Shared and rebuilt only when either changes, since every pass reads it.
    fn offerings(&mut self, now: Millis, cloud: &dyn CloudProvider) -> (u64, Arc<[Offering]>) {
        let stale_prices = self
            .prices_read_at
            .is_none_or(|at| now - at >= OFFERINGS_REFRESH_MS);
        if stale_prices {
            let names: Vec<&str> = self
                .instance_types
                .iter()
                .map(|t| t.name.as_str())
                .collect();
            let spot = cloud.spot_prices(&names, now);
            self.prices_read_at = Some(now);
            // Rebuilt only when the list changed (prices usually move less often than they are read).
            if self.offerings.is_empty() || spot != self.spot_prices {
                self.spot_prices = spot;
                self.prices_revision += 1;
                self.offerings = self.price_list();
            }
        }
        let key = (self.prices_revision, self.unavailable_revision);
        if let Some((k, revision, cached)) = &self.available
            && *k == key
        {
            return (*revision, cached.clone());
        }
        let available: Arc<[Offering]> = self
            .offerings
            .iter()
            .filter(|o| {
                !self.unavailable.contains_key(&(
                    o.instance_type.clone(),
                    o.zone.clone(),
                    o.capacity_type,
                ))
            })
            .cloned()
            .collect();
        let revision = match &self.available {
            Some((_, revision, previous)) if *previous == available => *revision,
            Some((_, revision, _)) => revision + 1,
            None => 0,
        };
        self.available = Some((key, revision, available.clone()));
        (revision, available)
    }

    /// Every offering of the catalog's types and zones: on-demand at list price, spot where the last
    /// price list quotes it.
    fn price_list(&self) -> Vec<Offering> {
        let spot: HashMap<(&str, &str), f64> = self
            .spot_prices
            .iter()
            .map(|p| ((p.instance_type.as_str(), p.zone.as_str()), p.price))
            .collect();
        let mut offerings = Vec::new();
        for t in &self.instance_types {
            for zone in &self.zones {
                offerings.push(Offering {
                    instance_type: t.name.clone(),
                    zone: zone.clone(),
                    capacity_type: CapacityType::OnDemand,
                    price: t.on_demand_price,
                });
                if let Some(&price) = spot.get(&(t.name.as_str(), zone.as_str())) {
                    offerings.push(Offering {
                        instance_type: t.name.clone(),
                        zone: zone.clone(),
                        capacity_type: CapacityType::Spot,
                        price,
                    });
                }
            }
        }
        offerings
    }

    fn handle_notices(
        &mut self,
        now: Millis,
        cluster: &mut dyn ClusterState,
        cloud: &mut dyn CloudProvider,
    ) {
        for notice in std::mem::take(&mut self.notices) {
            let node = self.node_by_instance.get(&notice.instance_id).cloned();
            let offering = cloud
                .list()
                .into_iter()
                .find(|i| i.id == notice.instance_id)
                .map(|i| i.offering);
            match interruption::respond(&notice, now) {
                Response::Replace {
                    drain_by,
                    avoid_offering,
                    reason,
                    ..
                } => {
                    let why = if reason.starts_with("spot") {
                        Reason::SpotInterruption
                    } else {
                        Reason::ScheduledChange
                    };
                    if avoid_offering && let Some(o) = &offering {
                        self.avoid(now, o, now + interruption::AVOID_OFFERING_MS, why, reason);
                    }
                    self.stats.interruptions_handled += 1;
                    match node {
                        Some(node) if !self.draining.contains_key(&node) => {
                            self.begin_replacement(
                                now,
                                cluster,
                                cloud,
                                &node,
                                why,
                                drain_by,
                                true,
                                reason.to_string(),
                            );
                        }
                        Some(_) => {}
                        None => {
                            // Not registered yet: give up the claim, its pods are provisioned again.
                            let _ = cloud.delete(&notice.instance_id, now);
                            self.claims.retain(|_, c| {
                                c.instance_id.as_deref() != Some(notice.instance_id.as_str())
                            });
                            self.seen_revision = None;
                            self.record(
                                now,
                                Action::Terminate {
                                    node: None,
                                    instance_id: notice.instance_id.clone(),
                                },
                                why,
                                format!("{reason} before the node registered"),
                            );
                        }
                    }
                }
                Response::AvoidOffering { until, reason } => {
                    self.stats.rebalance_recommendations += 1;
                    if let Some(o) = &offering {
                        self.avoid(now, o, until, Reason::Rebalance, reason);
                    }
                }
                Response::Forget { reason } => {
                    if let Some(node) = node {
                        let _ = cluster.delete_node(&node, now);
                        self.draining.remove(&node);
                        self.record(
                            now,
                            Action::Terminate {
                                node: Some(node),
                                instance_id: notice.instance_id.clone(),
                            },
                            Reason::InstanceGone,
                            reason.into(),
                        );
                    }
                    self.node_by_instance.remove(&notice.instance_id);
                }
            }
        }
    }

    fn avoid(&mut self, now: Millis, o: &Offering, until: Millis, reason: Reason, why: &str) {
        self.unavailable_revision += 1;
        self.unavailable.insert(
            (o.instance_type.clone(), o.zone.clone(), o.capacity_type),
            until,
        );
        self.record(
            now,
            Action::AvoidOffering {
                instance_type: o.instance_type.clone(),
                zone: o.zone.clone(),
                capacity_type: o.capacity_type,
                until,
            },
            reason,
            why.to_string(),
        );
    }

    /// Cordons the node, launches capacity for its pods now, and drains once that capacity is ready
    /// (or at `drain_by`).
    #[allow(clippy::too_many_arguments)]
    fn begin_replacement(
        &mut self,
        now: Millis,
        cluster: &mut dyn ClusterState,
        cloud: &mut dyn CloudProvider,
        node: &str,
        reason: Reason,
        drain_by: Millis,
        forceful: bool,
        detail: String,
    ) {
        let Some(state) = cluster.nodes().into_iter().find(|n| &*n.name == node) else {
            return;
        };
        let _ = cluster.cordon(node);
        self.record(
            now,
            Action::Cordon {
                node: node.to_string(),
            },
            reason,
            detail.clone(),
        );
        let displaced: Vec<PodState> = cluster
            .pods_on(node)
            .into_iter()
            .filter(|p| p.facts.owner != crate::cluster::OwnerKind::DaemonSet)
            .collect();
        let plan = self.plan(now, &displaced, cluster, cloud);
        let waiting_for = self.launch(now, plan.claims, cluster, cloud, reason, false);
        self.draining.insert(
            node.to_string(),
            Drain {
                instance_id: state.instance_id.clone(),
                reason,
                drain_by,
                waiting_for,
                forceful,
            },
        );
    }

    fn progress_drains(
        &mut self,
        now: Millis,
        cluster: &mut dyn ClusterState,
        cloud: &mut dyn CloudProvider,
    ) {
        let names: Vec<String> = self.draining.keys().cloned().collect();
        for name in names {
            let drain = self.draining[&name].clone();
            let replacements_ready = drain
                .waiting_for
                .iter()
                .all(|c| !self.claims.contains_key(c));
            if !(replacements_ready || now >= drain.drain_by) {
                continue;
            }
            let mut blocked = false;
            for pod in cluster.pods_on(&name) {
                if pod.facts.owner == crate::cluster::OwnerKind::DaemonSet {
                    continue;
                }
                match cluster.evict(&pod.key, drain.forceful, now) {
                    Ok(()) => self.record(
                        now,
                        Action::Evict {
                            pod: pod.key.to_string(),
                            node: name.clone(),
                        },
                        drain.reason,
                        "draining".into(),
                    ),
                    Err(_) => blocked = true,
                }
            }
            if blocked {
                continue;
            }
            let _ = cloud.delete(&drain.instance_id, now);
            let _ = cluster.delete_node(&name, now);
            self.node_by_instance.remove(&drain.instance_id);
            self.draining.remove(&name);
            self.record(
                now,
                Action::Terminate {
                    node: Some(name.clone()),
                    instance_id: drain.instance_id.clone(),
                },
                drain.reason,
                "drained".into(),
            );
        }
    }

    fn plan(
        &mut self,
        now: Millis,
        pods: &[PodState],
        cluster: &dyn ClusterState,
        cloud: &dyn CloudProvider,
    ) -> provision::ProvisionPlan {
        let (offerings_revision, offerings) = self.offerings(now, cloud);
        let nodes = cluster.nodes();
        let bound = if self.provisioner.needs_bound_pods() {
            cluster.bound_pods()
        } else {
            Vec::new()
        };
        let in_flight: Vec<crate::model::NodeClaim> = self
            .claims
            .values()
            .filter_map(|c| c.core.clone())
            .collect();
        let input = ProvisionInput {
            now,
            pending: pods,
            bound: &bound,
            in_flight: &in_flight,
            nodes: &nodes,
            pools: &self.pools,
            instance_types: &self.instance_types,
            offerings: &offerings,
            offerings_revision,
            daemon_overhead: &*self.daemon_overhead,
            contract_catalog: &self.contract_catalog,
            seed: self.seed ^ (now as u64),
        };
        let plan = self.provisioner.plan(&input);
        self.stats
            .policy_fallbacks
            .extend(plan.policy_fallbacks.iter().cloned());
        plan
    }

    /// Launches planned claims; returns the names of those launched.
    fn launch(
        &mut self,
        now: Millis,
        claims: Vec<PlannedClaim>,
        cluster: &mut dyn ClusterState,
        cloud: &mut dyn CloudProvider,
        reason: Reason,
        nominate: bool,
    ) -> Vec<String> {
        let mut launched = Vec::new();
        for planned in claims {
            let name = format!("{}-{:05}", planned.node_pool, self.next_claim);
            self.next_claim += 1;
            let request = LaunchRequest {
                claim: name.clone(),
                node_pool: planned.node_pool.clone(),
                offerings: planned.offerings.clone(),
            };
            match cloud.create(&request, now) {
                Ok(result) => {
                    for skipped in &result.skipped {
                        self.stats.insufficient_capacity_fallthroughs += 1;
                        let o = skipped.offering.clone();
                        self.avoid(
                            now,
                            &o,
                            now + interruption::AVOID_OFFERING_MS,
                            reason,
                            "insufficient capacity",
                        );
                    }
                    let taints = self
                        .pools
                        .iter()
                        .find(|p| p.name == planned.node_pool)
                        .map(|p| p.taints.clone())
                        .unwrap_or_default();
                    let core = planned.core.clone().map(|mut c| {
                        let o = &result.instance.offering;
                        c.name = name.clone();
                        c.launched = Some(crate::model::Launched {
                            instance_type: o.instance_type.clone(),
                            zone: o.zone.clone(),
                            capacity_type: convert::capacity_type(o.capacity_type),
                            price: o.price,
                            provider_id: format!("aws:///{}/{}", o.zone, result.instance.id),
                        });
                        c
                    });
                    self.claims.insert(
                        name.clone(),
                        ClaimState {
                            node_pool: planned.node_pool.clone(),
                            created_at: now,
                            instance_id: Some(result.instance.id.clone()),
                            taints,
                            core,
                        },
                    );
                    if nominate {
                        for pod in &planned.pods {
                            cluster.nominate(pod, &name);
                        }
                    }
                    self.stats.claims_launched += 1;
                    self.record(
                        now,
                        Action::LaunchClaim {
                            claim: name.clone(),
                            node_pool: planned.node_pool,
                            offering: Some(result.instance.offering.clone()),
                            pods: planned.pods.len(),
                        },
                        reason,
                        planned.explanation,
                    );
                    launched.push(name);
                }
                Err(err) => {
                    self.stats.launch_failures += 1;
                    if let CloudError::NoCapacity { failures, .. } = &err {
                        for f in failures.clone() {
                            self.avoid(
                                now,
                                &f.offering,
                                now + interruption::AVOID_OFFERING_MS,
                                reason,
                                "insufficient capacity",
                            );
                        }
                    }
                    self.record(
                        now,
                        Action::LaunchClaim {
                            claim: name,
                            node_pool: planned.node_pool,
                            offering: None,
                            pods: planned.pods.len(),
                        },
                        reason,
                        format!("launch failed: {err}"),
                    );
                    // The pods stay pending and are planned again.
                    self.retry_at = Some(now + self.config.batch_max_ms);
                }
            }
        }
        launched
    }

    fn provision(
        &mut self,
        now: Millis,
        cluster: &mut dyn ClusterState,
        cloud: &mut dyn CloudProvider,
    ) {
        // Only look at pending pods when some became pending, a batch is due, or a retry is.
        let revision = cluster.pending_revision();
        let new_pods = self.seen_revision != Some(revision);
        let retry_due = self.retry_at.is_some_and(|at| now >= at);
        let batch_due = self.batcher.closes_at().is_some_and(|at| now >= at);
        if !(new_pods || retry_due || batch_due) {
            return;
        }
        self.seen_revision = Some(revision);
        let pending: Vec<PodState> = cluster
            .pending_pods()
            .into_iter()
            .filter(|p| {
                p.nominated
                    .as_ref()
                    .is_none_or(|c| !self.claims.contains_key(&**c))
            })
            .collect();
        if new_pods {
            let current: BTreeSet<PodKey> = pending.iter().map(|p| p.key.clone()).collect();
            if current.iter().any(|k| !self.seen_pending.contains(k)) {
                self.batcher.observe(now);
            }
            self.seen_pending = current;
        }
        if retry_due {
            self.retry_at = None;
            if !pending.is_empty() {
                self.batcher.observe(now);
            }
        }
        if !self.batcher.take_if_due(now) || pending.is_empty() {
            return;
        }
        self.stats.batches += 1;
        let plan = self.plan(now, &pending, cluster, cloud);
        self.unplaceable = plan.unplaceable.iter().cloned().collect();
        for (pod, claim) in &plan.nominations {
            if self.claims.contains_key(claim) {
                cluster.nominate(pod, claim);
            }
        }
        if !plan.unplaceable.is_empty() {
            self.retry_at = Some(now + self.config.retry_unplaced_ms);
        }
        self.launch(now, plan.claims, cluster, cloud, Reason::Provisioning, true);
    }

    fn disrupt(
        &mut self,
        now: Millis,
        cluster: &mut dyn ClusterState,
        cloud: &mut dyn CloudProvider,
    ) {
        let (offerings_revision, offerings) = self.offerings(now, cloud);
        let nodes = cluster.nodes();
        let disrupting: BTreeSet<String> = self.draining.keys().cloned().collect();
        let commands = {
            let input = DisruptionInput {
                now,
                nodes: &nodes,
                cluster: &*cluster,
                pools: &self.pools,
                instance_types: &self.instance_types,
                offerings: &offerings,
                offerings_revision,
                disrupting: &disrupting,
                in_flight_claims: self.claims.len(),
                daemon_overhead: &*self.daemon_overhead,
            };
            self.disruption.decide(&input)
        };
        let fallbacks = self.disruption.take_policy_fallbacks();
        self.stats.policy_fallbacks.extend(fallbacks);
        for command in commands {
            let waiting_for = match command.replacement {
                Some(claim) => self.launch(now, vec![claim], cluster, cloud, command.reason, false),
                None => Vec::new(),
            };
            for node in &command.nodes {
                if let Some(drain) = self.draining.get_mut(node) {
                    // Expiry past its grace period: the drain stops waiting for PDBs.
                    if command.forceful && !drain.forceful {
                        drain.forceful = true;
                        drain.drain_by = drain.drain_by.min(now);
                    }
                    continue;
                }
                let Some(state) = nodes.iter().find(|n| &*n.name == node.as_str()) else {
                    continue;
                };
                let _ = cluster.cordon(node);
                self.record(
                    now,
                    Action::Cordon { node: node.clone() },
                    command.reason,
                    command.explanation.clone(),
                );
                self.draining.insert(
                    node.clone(),
                    Drain {
                        instance_id: state.instance_id.clone(),
                        reason: command.reason,
                        drain_by: if waiting_for.is_empty() {
                            now
                        } else {
                            Millis::MAX / 4
                        },
                        waiting_for: waiting_for.clone(),
                        forceful: command.forceful,
                    },
                );
            }
        }
        self.progress_drains(now, cluster, cloud);
    }

    fn collect_garbage(
        &mut self,
        now: Millis,
        cluster: &mut dyn ClusterState,
        cloud: &mut dyn CloudProvider,
    ) {
        // Claims whose instance vanished before registering: their pods get planned again.
        // Karpenter gives a launched claim 15 minutes to register before it gives up on it.
        let stale: Vec<String> = self
            .claims
            .iter()
            .filter(|(_, c)| now - c.created_at > REGISTRATION_TTL_MS)
            .filter_map(|(_, c)| c.instance_id.clone())
            .collect();
        for id in stale {
            let _ = cloud.delete(&id, now);
            self.record(
                now,
                Action::Terminate {
                    node: None,
                    instance_id: id,
                },
                Reason::InstanceGone,
                "claim did not register within 15 minutes".into(),
            );
        }
        let instances = cloud.list();
        let live: BTreeSet<&str> = instances.iter().map(|i| i.id.as_str()).collect();
        let before = self.claims.len();
        self.claims
            .retain(|_, c| c.instance_id.as_deref().is_none_or(|id| live.contains(id)));
        if self.claims.len() != before {
            // Their nominated pods are pending again: look at them on the next tick.
            self.seen_revision = None;
        }
        let nodes: BTreeSet<String> = cluster
            .nodes()
            .iter()
            .map(|n| n.instance_id.clone())
            .collect();
        let claimed: BTreeSet<&str> = self
            .claims
            .values()
            .filter_map(|c| c.instance_id.as_deref())
            .collect();
        let orphans: Vec<String> = instances
            .iter()
            .filter(|i| !nodes.contains(&i.id) && !claimed.contains(i.id.as_str()))
            .map(|i| i.id.clone())
            .collect();
        for id in orphans {
            let _ = cloud.delete(&id, now);
            self.stats.orphans_collected += 1;
            self.record(
                now,
                Action::Terminate {
                    node: None,
                    instance_id: id,
                },
                Reason::Orphan,
                "instance has neither a NodeClaim nor a Node".into(),
            );
        }
        // Nodes whose instance is gone (reclaimed without us noticing): delete them.
        let gone: Vec<(String, String)> = cluster
            .nodes()
            .iter()
            .filter(|n| !live.contains(n.instance_id.as_str()))
            .map(|n| (n.name.to_string(), n.instance_id.clone()))
            .collect();
        for (node, id) in gone {
            let _ = cluster.delete_node(&node, now);
            self.draining.remove(&node);
            self.node_by_instance.remove(&id);
            self.record(
                now,
                Action::Terminate {
                    node: Some(node),
                    instance_id: id,
                },
                Reason::InstanceGone,
                "instance no longer exists".into(),
            );
        }
    }
}
