//! The controller loop: snapshot -> core -> commands, shared by production and the simulator.
//!
//! One [`Controller::tick`] reads a consistent snapshot of the cluster, runs the steps that are due
//! and returns [`Command`]s; it never calls the cluster or the cloud. Their answers come back through
//! [`Controller::complete`] whenever they arrive (at once in the simulator's inline mode, seconds later
//! in its deferred mode and in production), and are applied then:
//! 1. interruption notices -> taint and cordon, pre-spin replacement capacity, drain, terminate
//!    ([`interruption`]);
//! 2. drains in progress -> evict when the replacement is ready (or at the deadline), each refused
//!    eviction backed off per pod, then terminate ([`drain`]);
//! 3. provisioning -> batch new pending pods (1 s idle / 10 s max), plan, write the claim, launch,
//!    nominate ([`launch`]);
//! 4. disruption -> the [`DisruptionStep`] seam (consolidation, drift, expiry plug in here); a
//!    replacement that fails to launch aborts its disruption;
//! 5. garbage collection -> from a complete listing only: instances with neither claim nor node, and
//!    owned nodes whose instance is gone ([`gc`]).
//!
//! Every executed action is logged as a [`Decided`] with its [`Explanation`].
pub mod assemble;
pub mod batch;
pub mod command;
pub mod convert;
pub mod disruption;
mod drain;
mod gc;
mod interruption;
mod launch;
mod offerings;
pub mod planner;
pub mod provision;
mod unplaced;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::NodeSelectorRequirement;

use crate::clock::Millis;
use crate::cloud::{CapacityType, LaunchRequest, Offering};
use crate::cluster::{ClaimRecord, ClusterState, NodeState, PodKey, PodState, ResourceList, Taint};
use crate::interruption::Notice;
use batch::Batcher;
pub use command::{Command, Completion, Outcome};
pub use interruption::{NoticeAck, NoticeOutcome};
use provision::{PlannedClaim, ProvisionInput, Provisioner};

/// An instance type as the controller sizes nodes with it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceTypeInfo {
    pub name: String,
    /// The catalog type's labels, shared.
    pub labels: Arc<BTreeMap<String, String>>,
    pub allocatable: ResourceList,
    pub on_demand_price: f64,
    /// The zones the cloud offers it in (`None`: every zone the controller launches into).
    pub offered_zones: Option<BTreeSet<String>>,
}

impl InstanceTypeInfo {
    pub fn offered_in(&self, zone: &str) -> bool {
        self.offered_zones.as_ref().is_none_or(|z| z.contains(zone))
    }
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
    /// The pool's `spec.template` as written: every claim of the pool carries it (shared).
    pub template: Arc<crate::api::NodeClaimTemplate>,
    /// Replace a node proactively on a rebalance recommendation (the NodePool's
    /// `kestrel.dev/rebalance-replacement: "true"` annotation).
    pub replace_on_rebalance: bool,
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

    /// The labels a node of this pool launched from the offering registers with.
    pub fn node_labels(
        &self,
        it: &InstanceTypeInfo,
        zone: &str,
        ct: CapacityType,
    ) -> BTreeMap<String, String> {
        crate::cluster::registration::node_labels(&self.labels, &self.name, it, zone, ct)
    }

    /// Whether the pool's requirements allow the offering.
    pub fn allows(&self, it: &InstanceTypeInfo, zone: &str, ct: CapacityType) -> bool {
        self.requirements
            .iter()
            .all(|r| crate::label_fit::requirement_matches(r, |k| self.label(it, zone, ct, k)))
    }
}

/// Why an action was taken.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    Provisioning,
    SpotInterruption,
    ScheduledChange,
    /// An interruptible capacity reservation takes its instance back.
    CapacityReservationInterruption,
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
    /// An aborted disruption gives the node back.
    Uncordon {
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
    /// The process restarted: drop what lives only in memory (timers, commands awaiting
    /// validation). What production keeps durably (a node's drift stamp, the NodeClaim's hash
    /// annotation in Karpenter) may stay.
    fn forget(&mut self) {}
    /// Every disruption the step executed or dropped so far, oldest first (for reports; a step that
    /// keeps no journal has none).
    fn journal(&self) -> Vec<disruption::JournalEntry> {
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

/// Where a claim is in its launch (Karpenter's Launched condition, before Registered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClaimPhase {
    /// Its durable record is being written; the launch waits for it.
    Writing,
    /// The claim record exists and its CreateFleet was issued; no answer yet (or a retry is due).
    Launching,
    /// The cloud answered with an instance.
    Launched,
}

/// A claim the controller launched whose node has not registered yet.
#[derive(Debug, Clone)]
struct ClaimState {
    node_pool: String,
    created_at: Millis,
    /// What was asked of the cloud (re-sent unchanged, same client token, on a retry).
    request: LaunchRequest,
    phase: ClaimPhase,
    instance_id: Option<String>,
    /// What the cloud launched.
    offering: Option<Offering>,
    /// When the launch's answer arrived: a listing issued before then may not show the instance.
    launched_seen_at: Option<Millis>,
    /// The first complete listing (its issue time) that missed the instance since it last showed.
    missing_since: Option<Millis>,
    /// The core's view of the claim (when the core planned it), for later batches.
    core: Option<crate::model::NodeClaim>,
    /// The pods it was launched for (a provisioning claim holds them while it launches).
    pods: Vec<PodKey>,
    reason: Reason,
    explanation: String,
    /// Retryable failures so far (throttling, an unknown outcome).
    attempts: u32,
    /// When a retried launch is due (its command is not in flight meanwhile).
    retry_at: Option<Millis>,
}

#[derive(Debug, Clone)]
struct Drain {
    instance_id: String,
    /// The node's claim (whose record keeps the drain).
    claim: String,
    detail: String,
    reason: Reason,
    /// Evict by this time even if replacements are not ready.
    drain_by: Millis,
    /// Replacement claims that must register before draining.
    waiting_for: Vec<String>,
    forceful: bool,
    /// A voluntary disruption (consolidation, drift): a replacement that fails to launch aborts it.
    /// An interruption or an expiry goes ahead without it.
    abort_without_replacement: bool,
}

/// A call that is retried with backoff until it succeeds: an eviction per pod, a termination per
/// instance.
#[derive(Debug, Clone, Default)]
struct Retry {
    in_flight: bool,
    attempts: u32,
    next_at: Millis,
}

impl Retry {
    fn due(&self, now: Millis) -> bool {
        !self.in_flight && self.next_at <= now
    }

    fn refused(&mut self, now: Millis) {
        self.in_flight = false;
        self.next_at = now.saturating_add(command::backoff_ms(self.attempts));
        self.attempts = self.attempts.saturating_add(1);
    }
}

/// A drain turned forceful (past its grace period) waits for nothing: the backoffs its pods built
/// up from PDB refusals are dropped, so the next tick deletes them.
fn reset_backoffs(evictions: &mut HashMap<(String, PodKey), Retry>, node: &str, now: Millis) {
    for ((n, _), retry) in evictions.iter_mut() {
        if n == node {
            retry.attempts = 0;
            retry.next_at = retry.next_at.min(now);
        }
    }
}

#[cfg(test)]
mod forceful_tests {
    use super::*;

    #[test]
    fn a_forceful_drain_drops_its_pods_backoffs_only() {
        let mut evictions: HashMap<(String, PodKey), Retry> = HashMap::new();
        let mut backed_off = Retry::default();
        for t in [0, 1_000, 3_000, 7_000] {
            backed_off.refused(t);
        }
        assert_eq!(backed_off.next_at, 15_000, "four refusals: 1+2+4+8 s");
        evictions.insert(("a".into(), Arc::from("ns/p1")), backed_off.clone());
        evictions.insert(("b".into(), Arc::from("ns/p2")), backed_off.clone());
        reset_backoffs(&mut evictions, "a", 8_000);
        let a = &evictions[&("a".to_string(), Arc::from("ns/p1"))];
        assert!(a.due(8_000) && a.attempts == 0);
        let b = &evictions[&("b".to_string(), Arc::from("ns/p2"))];
        assert!(!b.due(8_000), "another node's backoff was dropped");
    }
}

/// Counters the report reads.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ControllerStats {
    /// Batches planned.
    pub batches: u64,
    /// Batches not planned: every pod in them was found unplaceable before, and nothing that could
    /// change that answer had changed (see `controller::unplaced`).
    #[serde(skip_serializing_if = "is_zero")]
    pub batches_unchanged: u64,
    pub claims_launched: u64,
    pub launch_failures: u64,
    /// Launches answered with throttling or an unknown outcome and retried with the same token.
    pub launch_retries: u64,
    pub insufficient_capacity_fallthroughs: u64,
    pub interruptions_handled: u64,
    pub rebalance_recommendations: u64,
    /// Nodes replaced proactively on a rebalance recommendation (NodePool opt-in).
    pub rebalance_replacements: u64,
    /// Notices for something already handled (a queue's duplicate delivery).
    pub notices_duplicate: u64,
    /// Notices for instances Kestrel does not own (dropped).
    pub notices_not_owned: u64,
    /// Policy calls answered by the built-in default instead (a trap, a timeout, an invalid answer).
    pub policy_fallback_count: u64,
    /// What the last [`MAX_KEPT_FALLBACKS`] of them were (a long-running controller with a broken
    /// policy falls back at every batch: the list must not grow with it).
    pub policy_fallbacks: Vec<String>,
    pub orphans_collected: u64,
    /// Evictions refused (a PDB's 429, or the API server) and backed off.
    pub evictions_refused: u64,
    /// Disruptions aborted because their replacement could not be launched.
    pub disruptions_aborted: u64,
    /// Garbage-collection passes skipped because the listing failed or was incomplete.
    pub listings_failed: u64,
    /// Spot price reads that failed (the previous prices, or on-demand only, stay in use).
    pub price_reads_failed: u64,
    /// Times the controller lost its memory and resumed from the cluster (simulated restarts).
    pub restarts: u64,
    /// Drains begun, per NodePool and reason (consolidation, drift, expiry, interruption, …):
    /// Karpenter's `karpenter_nodeclaims_disrupted_total`.
    pub disrupted: BTreeMap<String, BTreeMap<Reason, u64>>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How many policy fallbacks [`ControllerStats`] keeps the text of.
pub const MAX_KEPT_FALLBACKS: usize = 100;

impl ControllerStats {
    /// Counts policy fallbacks and keeps the latest of their descriptions.
    pub fn record_fallbacks(&mut self, fallbacks: impl IntoIterator<Item = String>) {
        for f in fallbacks {
            self.policy_fallback_count += 1;
            self.policy_fallbacks.push(f);
        }
        let excess = self
            .policy_fallbacks
            .len()
            .saturating_sub(MAX_KEPT_FALLBACKS);
        if excess > 0 {
            self.policy_fallbacks.drain(..excess);
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ControllerConfig {
    pub batch_idle_ms: Millis,
    pub batch_max_ms: Millis,
    /// Retry pods that could not be placed this often.
    pub retry_unplaced_ms: Millis,
    pub gc_interval_ms: Millis,
    /// A claim whose instance the cloud has not launched this long after the claim was made is
    /// given up: its pods are planned again. Karpenter's is 5 min (`kestrel run` sets it); the
    /// default keeps the simulator's earlier rule (the registration timeout covers both).
    pub launch_ttl_ms: Millis,
    /// A claim whose node has not registered this long after the claim was made is given up and
    /// its instance terminated (Karpenter's registration timeout, 15 min).
    pub registration_ttl_ms: Millis,
    /// The number in the first claim name (`POOL-NNNNN`). Claim names are the launches'
    /// idempotency tokens: a controller process that starts from the wall clock's milliseconds
    /// never reuses the name of a claim an earlier process made, so only its recovery (which resumes
    /// that claim) can find the earlier process's instance. 1 in the simulator (names stable).
    pub first_claim: u64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            batch_idle_ms: batch::DEFAULT_IDLE_MS,
            batch_max_ms: batch::DEFAULT_MAX_MS,
            retry_unplaced_ms: 60_000,
            gc_interval_ms: 60_000,
            launch_ttl_ms: REGISTRATION_TTL_MS,
            registration_ttl_ms: REGISTRATION_TTL_MS,
            first_claim: 1,
        }
    }
}

/// What one [`Controller::tick`] wants: the commands to execute, and when to be ticked again.
#[derive(Debug, Default)]
pub struct Tick {
    pub commands: Vec<Command>,
    pub wake: Option<Millis>,
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
    /// The durable claim records as last written (every claim, registered or not).
    records: BTreeMap<String, ClaimRecord>,
    next_claim: u64,
    node_by_instance: HashMap<String, String>,
    draining: BTreeMap<String, Drain>,
    /// Evictions of pods on draining nodes, by (node, pod).
    evictions: HashMap<(String, PodKey), Retry>,
    /// Instances the controller asked to terminate and has not seen gone from a listing yet.
    terminating: BTreeMap<String, Retry>,
    unavailable: BTreeMap<(String, String, CapacityType), Millis>,
    /// Bumped whenever `unavailable` gains or loses an entry.
    unavailable_revision: u64,
    notices: Vec<Notice>,
    /// Notices' acknowledgements: waiting for their action to be durable, or ready.
    interruptions: interruption::Interruptions,
    offerings: Vec<Offering>,
    /// When the spot price list was last read (the read's issue time), what it said, and a
    /// revision bumped when it changed (0: never read, nothing is decided yet).
    prices_read_at: Option<Millis>,
    prices_in_flight: bool,
    spot_prices: Vec<crate::cloud::SpotPrice>,
    prices_revision: u64,
    listing_in_flight: bool,
    /// The snapshot's node revision when registrations were last looked for.
    seen_nodes_revision: Option<u64>,
    /// Owned nodes whose instance the complete listings have missed, since (issue time) when.
    nodes_missing_since: HashMap<String, Millis>,
    /// The launchable offerings, keyed by the price list's and the unavailable set's revisions, with
    /// their own revision (bumped only when the list's content changes).
    available: Option<(OfferingsKey, u64, Arc<[Offering]>)>,
    /// Commands decided since the last tick returned (completions decide some too).
    outbox: Vec<Command>,
    /// Pods the last plan could not place, with the reason.
    pub unplaceable: BTreeMap<PodKey, String>,
    /// Those of them a batch leaves out while nothing that could change their answer changes.
    unplaced: unplaced::UnplacedMemo,
    pub log: Vec<Decided>,
    pub stats: ControllerStats,
}

/// The DaemonSet requests a new node of a pool and instance type will carry.
pub type DaemonOverhead = Box<dyn Fn(&PoolSpec, &InstanceTypeInfo) -> ResourceList>;

/// How long a launched claim may take to register its node.
const REGISTRATION_TTL_MS: Millis = 15 * 60_000;

/// How many times a throttled (or unanswered) launch is retried with the same token before the claim
/// is given up.
const MAX_LAUNCH_ATTEMPTS: u32 = 5;

/// What the launchable offerings were computed from: the price list's and the unavailable set's
/// revisions.
type OfferingsKey = (u64, u64);

/// How long a price list is trusted before it is read again.
const OFFERINGS_REFRESH_MS: Millis = 300_000;

/// After a failed price read, how long until the next try.
const PRICE_RETRY_MS: Millis = 30_000;

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
            records: BTreeMap::new(),
            next_claim: config.first_claim.max(1),
            node_by_instance: HashMap::new(),
            draining: BTreeMap::new(),
            evictions: HashMap::new(),
            terminating: BTreeMap::new(),
            unavailable: BTreeMap::new(),
            unavailable_revision: 0,
            notices: Vec::new(),
            interruptions: interruption::Interruptions::default(),
            offerings: Vec::new(),
            prices_read_at: None,
            prices_in_flight: false,
            spot_prices: Vec::new(),
            prices_revision: 0,
            listing_in_flight: false,
            seen_nodes_revision: None,
            nodes_missing_since: HashMap::new(),
            available: None,
            outbox: Vec::new(),
            unplaceable: BTreeMap::new(),
            unplaced: unplaced::UnplacedMemo::default(),
            log: Vec::new(),
            stats: ControllerStats::default(),
        }
    }

    pub fn provisioner_name(&self) -> String {
        self.provisioner.name()
    }

    pub fn disruption_name(&self) -> String {
        self.disruption.name()
    }

    /// The disruption step's journal: each disruption it executed or dropped, with its explanation.
    pub fn disruption_journal(&self) -> Vec<disruption::JournalEntry> {
        self.disruption.journal()
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

    /// Notices received and not handled yet (a queue would deliver them again after a restart).
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Claims launched and not registered yet.
    pub fn in_flight(&self) -> usize {
        self.claims.len()
    }

    pub fn draining(&self) -> usize {
        self.draining.len()
    }

    /// Whether Kestrel launched this node (a claim of one of its NodePools, labelled so): the only
    /// nodes it ever deletes. A managed node group's node, or another autoscaler's, is never touched.
    pub fn owns(&self, node: &NodeState) -> bool {
        !node.claim.is_empty()
            && node.labels.get(NODEPOOL_LABEL) == Some(&node.node_pool)
            && self.pools.iter().any(|p| p.name == node.node_pool)
    }

    /// Decides what is due at `now` from the snapshot `cluster`: the commands to execute (including
    /// those decided by completions since the last tick) and when to be ticked again.
    pub fn tick(&mut self, now: Millis, cluster: &dyn ClusterState) -> Tick {
        let before = self.unavailable.len();
        self.unavailable.retain(|_, until| *until > now);
        if self.unavailable.len() != before {
            self.unavailable_revision += 1;
        }
        self.observe_registrations(now, cluster);
        self.request_prices_if_stale(now);
        self.retry_launches(now);
        self.retry_terminations(now);
        // Nothing is decided before the first price list has answered (success or failure).
        if self.prices_known() {
            self.handle_notices(now, cluster);
            self.progress_drains(now, cluster);
            self.provision(now, cluster);
            if now >= self.next_disruption_at {
                self.next_disruption_at = now.saturating_add(self.disruption.interval_ms());
                self.disrupt(now, cluster);
            }
        }
        if now >= self.next_gc_at {
            self.next_gc_at = now + self.config.gc_interval_ms;
            self.collect_garbage(now);
        }
        Tick {
            commands: std::mem::take(&mut self.outbox),
            wake: self.wake(now, cluster),
        }
    }

    /// Applies a command's answer, whenever it arrives. Commands it decides come out of the next tick.
    pub fn complete(&mut self, now: Millis, cluster: &dyn ClusterState, completion: Completion) {
        let Completion {
            command,
            issued_at,
            outcome,
        } = completion;
        match (command, outcome) {
            (Command::Launch(request), Outcome::Launched(result)) => {
                self.launch_answered(now, &request.claim, result)
            }
            (Command::Terminate { instance_id }, Outcome::Cloud(result)) => {
                self.terminate_answered(now, &instance_id, result)
            }
            (Command::ListInstances, Outcome::Listed(result)) => {
                self.listing_answered(now, issued_at, cluster, result)
            }
            (Command::ReadSpotPrices { .. }, Outcome::SpotPrices(result)) => {
                self.prices_answered(now, issued_at, result)
            }
            (Command::Evict { pod, node, .. }, Outcome::Cluster(result)) => {
                self.eviction_answered(now, pod, node, result)
            }
            (Command::Cordon { node }, Outcome::Cluster(Err(err))) => {
                tracing::warn!(%node, %err, "cordon failed; the drain goes on and retries evictions");
            }
            (Command::Uncordon { node }, Outcome::Cluster(Err(err))) => {
                tracing::warn!(%node, %err, "uncordon after an aborted disruption failed");
            }
            (Command::DeleteNode { node }, Outcome::Cluster(Err(err))) => {
                // An owned node whose instance is gone is deleted by garbage collection later.
                tracing::warn!(%node, %err, "node delete failed; garbage collection retries it");
            }
            (Command::WriteClaim(record), Outcome::Cluster(result)) => {
                self.record_answered(&record.name, record.drain.is_some(), result.is_ok());
                self.claim_written(now, &record.name, result)
            }
            (Command::DeleteClaim { name }, Outcome::Cluster(result)) => {
                if let Err(err) = &result {
                    tracing::warn!(claim = %name, %err, "claim record delete failed");
                }
                self.record_answered(&name, true, result.is_ok())
            }
            (Command::Nominate { .. }, Outcome::Cluster(_)) => {}
            (_, Outcome::Cluster(Ok(()))) => {}
            (command, outcome) => {
                tracing::error!(?command, ?outcome, "completion does not answer its command");
            }
        }
    }

    /// When the loop wants to run next: the batch window, retries and backoffs, the periodic steps.
    /// Never "at once": a drain blocked by a PDB waits for its pods' backoff, not for the next tick.
    fn wake(&self, now: Millis, cluster: &dyn ClusterState) -> Option<Millis> {
        let mut wake = [
            self.batcher.closes_at(),
            self.retry_at,
            Some(self.next_disruption_at),
            Some(self.next_gc_at),
        ]
        .into_iter()
        .flatten()
        .chain(self.claims.values().filter_map(|c| c.retry_at))
        .chain(
            self.terminating
                .values()
                .filter(|r| !r.in_flight)
                .map(|r| r.next_at),
        )
        .chain(self.interruption_wake())
        .min();
        for (node, d) in &self.draining {
            let at = if self.replacements_ready(d) || now >= d.drain_by {
                cluster
                    .pods_on(node)
                    .iter()
                    .filter_map(|p| self.evictions.get(&(node.clone(), p.key.clone())))
                    .filter(|r| !r.in_flight)
                    .map(|r| r.next_at)
                    .min()
            } else {
                Some(d.drain_by)
            };
            if let Some(at) = at {
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
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

    fn replacements_ready(&self, drain: &Drain) -> bool {
        drain
            .waiting_for
            .iter()
            .all(|c| !self.claims.contains_key(c))
    }

    fn plan(
        &mut self,
        now: Millis,
        pods: &[PodState],
        cluster: &dyn ClusterState,
    ) -> provision::ProvisionPlan {
        let (offerings_revision, offerings) = self.offerings(now);
        let nodes = self.nodes_as_decided(cluster);
        let bound = if self.provisioner.needs_bound_pods() {
            cluster.bound_pods()
        } else {
            Vec::new()
        };
        // Pods held by a launching claim and not planned now take their room on it.
        let planned: BTreeSet<&PodKey> = pods.iter().map(|p| &p.key).collect();
        let mut held: HashMap<&str, Vec<crate::model::Pod>> = HashMap::new();
        let pending = cluster.pending_pods();
        let listed = self.pods_of_provisioning_claims();
        for p in &pending {
            if let Some(claim) = self.holder(p, &listed)
                && !planned.contains(&p.key)
            {
                held.entry(claim).or_default().push(crate::model::Pod::new(
                    p.key.to_string(),
                    p.facts.compiled.clone(),
                ));
            }
        }
        let in_flight: Vec<crate::model::NodeClaim> = self
            .claims
            .iter()
            .filter(|(_, c)| c.phase == ClaimPhase::Launched)
            .filter_map(|(name, c)| {
                let mut core = c.core.clone()?;
                core.nominated = held.remove(name.as_str()).unwrap_or_default();
                Some(core)
            })
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
            .record_fallbacks(plan.policy_fallbacks.iter().cloned());
        plan
    }

    /// The pods each provisioning claim in flight was launched for, by pod.
    fn pods_of_provisioning_claims(&self) -> HashMap<&PodKey, &str> {
        self.claims
            .iter()
            .filter(|(_, c)| c.reason == Reason::Provisioning)
            .flat_map(|(name, c)| c.pods.iter().map(move |p| (p, name.as_str())))
            .collect()
    }

    /// The claim in flight a pending pod waits for: the one it is nominated to, else the
    /// provisioning claim whose record lists it (its nomination was lost, or is still being
    /// written). Such a pod is not planned again while its claim launches.
    fn holder<'a>(&'a self, pod: &PodState, listed: &HashMap<&PodKey, &'a str>) -> Option<&'a str> {
        if let Some(claim) = &pod.nominated
            && let Some((name, _)) = self.claims.get_key_value(&**claim)
        {
            return Some(name.as_str());
        }
        listed.get(&pod.key).copied()
    }

    /// The snapshot's nodes as the controller has decided them: a node it is draining is cordoned
    /// even if the cordon command has not been carried out yet, so no plan counts on its room.
    fn nodes_as_decided(&self, cluster: &dyn ClusterState) -> Vec<Arc<NodeState>> {
        let mut nodes = cluster.nodes();
        if !self.draining.is_empty() {
            for node in &mut nodes {
                if !node.cordoned && self.draining.contains_key(&*node.name) {
                    Arc::make_mut(node).cordoned = true;
                }
            }
        }
        nodes
    }

    fn provision(&mut self, now: Millis, cluster: &dyn ClusterState) {
        // Only look at pending pods when some became pending, a batch is due, or a retry is.
        let revision = cluster.pending_revision();
        let new_pods = self.seen_revision != Some(revision);
        let retry_due = self.retry_at.is_some_and(|at| now >= at);
        let batch_due = self.batcher.closes_at().is_some_and(|at| now >= at);
        if !(new_pods || retry_due || batch_due) {
            return;
        }
        self.seen_revision = Some(revision);
        let listed = self.pods_of_provisioning_claims();
        let pending: Vec<PodState> = cluster
            .pending_pods()
            .into_iter()
            .filter(|p| self.holder(p, &listed).is_none())
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
        // Pods found unplaceable in this same world keep their answer without a planning pass.
        let world = self.world(now, cluster);
        let (to_plan, remembered) = self.unplaced.split(&world, pending);
        if to_plan.is_empty() {
            self.stats.batches_unchanged += 1;
            self.unplaceable = remembered.into_iter().collect();
            self.retry_at = Some(now + self.config.retry_unplaced_ms);
            return;
        }
        self.stats.batches += 1;
        let plan = self.plan(now, &to_plan, cluster);
        self.unplaceable = plan.unplaceable.iter().cloned().collect();
        self.unplaceable.extend(remembered.iter().cloned());
        for (pod, claim) in plan.nominations {
            if self.claims.contains_key(&claim) {
                self.outbox.push(Command::Nominate { pod, claim });
            }
        }
        if !self.unplaceable.is_empty() {
            self.retry_at = Some(now + self.config.retry_unplaced_ms);
        }
        self.launch(now, plan.claims, Reason::Provisioning, true);
        // As of the world after the launches: they only take room, so they cannot make an
        // unplaceable pod placeable; what changes later (a claim launched, a node registered or
        // gone, the offerings) makes the next batch plan them again.
        // (The snapshot's nodes and the offerings stay what they were within the tick.)
        let world = unplaced::World {
            claims: self.claim_phases(),
            ..world
        };
        let unplaceable: HashMap<&PodKey, &str> = plan
            .unplaceable
            .iter()
            .map(|(k, why)| (k, why.as_str()))
            .collect();
        let kept: Vec<PodKey> = remembered.into_iter().map(|(k, _)| k).collect();
        self.unplaced.update(world, &to_plan, &unplaceable, &kept);
    }

    /// What the answer for an unplaceable pod depends on besides its spec (see [`unplaced`]).
    fn world(&mut self, now: Millis, cluster: &dyn ClusterState) -> unplaced::World {
        let mut nodes: Vec<Arc<str>> = cluster.nodes().iter().map(|n| n.name.clone()).collect();
        nodes.sort_unstable();
        unplaced::World {
            offerings_revision: self.offerings(now).0,
            nodes,
            claims: self.claim_phases(),
        }
    }

    /// The claims in flight and where each is in its launch, by name.
    fn claim_phases(&self) -> Vec<(String, ClaimPhase)> {
        self.claims
            .iter()
            .map(|(name, c)| (name.clone(), c.phase))
            .collect()
    }

    fn disrupt(&mut self, now: Millis, cluster: &dyn ClusterState) {
        let (offerings_revision, offerings) = self.offerings(now);
        let nodes = self.nodes_as_decided(cluster);
        let disrupting: BTreeSet<String> = self.draining.keys().cloned().collect();
        let commands = {
            let input = DisruptionInput {
                now,
                nodes: &nodes,
                cluster,
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
        self.stats.record_fallbacks(fallbacks);
        for command in commands {
            let waiting_for = match command.replacement {
                Some(claim) => self.launch(now, vec![claim], command.reason, false),
                None => Vec::new(),
            };
            for node in &command.nodes {
                if let Some(drain) = self.draining.get_mut(node) {
                    // Expiry past its grace period: the drain stops waiting for PDBs.
                    if command.forceful && !drain.forceful {
                        drain.forceful = true;
                        drain.drain_by = drain.drain_by.min(now);
                        let drain = drain.clone();
                        self.write_drain(&drain.claim.clone(), Some(&drain));
                        reset_backoffs(&mut self.evictions, node, now);
                    }
                    continue;
                }
                let Some(state) = nodes.iter().find(|n| &*n.name == node.as_str()) else {
                    continue;
                };
                self.begin_drain(
                    now,
                    node,
                    Drain {
                        instance_id: state.instance_id.clone(),
                        claim: state.claim.clone(),
                        detail: command.explanation.clone(),
                        reason: command.reason,
                        drain_by: if waiting_for.is_empty() {
                            now
                        } else {
                            Millis::MAX / 4
                        },
                        waiting_for: waiting_for.clone(),
                        forceful: command.forceful,
                        abort_without_replacement: !command.forceful,
                    },
                );
            }
        }
    }
}
