//! The disruption step the controller runs: the pure core (`crate::disruption`) plus the little state
//! that must persist between passes.
//!
//! Each pass (every 5 s of the loop's clock):
//! - commands chosen 15 s ago ([`VALIDATION_DELAY_MS`]) are proven again against the cluster now and
//!   executed, or dropped with the reason;
//! - otherwise, every 10 s, the core decides: expiration commands are executed at once (forceful,
//!   unbudgeted), voluntary ones wait for validation.
//!
//! State kept here (the core keeps none): when each node's pods last changed (for `consolidateAfter`),
//! each node's drift stamp (what its NodePool and EC2NodeClass resolved to when it was created), which
//! nodes are draining for expiry and since when, and the commands waiting for validation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use super::{DisruptionCommand, DisruptionInput, DisruptionStep, InstanceTypeInfo, PoolSpec};
use crate::api::{EC2NodeClass, NodePool};
use crate::clock::Millis;
use crate::cloud::Offering;
use crate::cluster::{OwnerKind, PodState, ResourceList};
use crate::disruption::decide::revalidate;
use crate::disruption::moves::base_room;
use crate::disruption::room::{Launchable, launchables};
use crate::disruption::{
    ClusterView, Command, DisruptionPolicies, DriftStamp, Method, MoveExplanation, NodeView,
    PdbView, PoolSettings, RegistryPolicies, SamePolicies, VALIDATION_DELAY_MS, decide,
};
use crate::model::{ConsolidationPolicy, RoomCache};
use crate::policy::native::{NativeBudgeter, NativeConsolidator};
use crate::policy::{Budgeter, Consolidator, NativePolicies};

/// Simulator-only annotation on an EC2NodeClass: image releases during a scenario, as
/// `OFFSET=ALIAS[,OFFSET=ALIAS...]` (offsets from the scenario start, e.g. `20m=al2023@v20260201`). From
/// each offset on, `amiSelectorTerms` resolve to that alias, so older nodes drift.
pub const SIMULATED_AMI_RELEASES: &str = "kestrel.dev/simulated-ami-releases";

/// One executed or dropped disruption, for the report and tests.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JournalEntry {
    pub at: Millis,
    /// `executed`, or `dropped: <why>` when validation refused it.
    pub outcome: String,
    pub explanation: MoveExplanation,
}

/// Shared view of what the step did (the step itself lives inside the controller).
pub type Journal = Arc<Mutex<Vec<JournalEntry>>>;

/// The NodePool settings disruption reads that `PoolSpec` does not carry.
#[derive(Debug, Clone)]
struct PoolConfig {
    consolidation_policy: ConsolidationPolicy,
    consolidate_after: Option<Millis>,
    expire_after: Option<Millis>,
    termination_grace_period: Option<Millis>,
    budgets: Vec<crate::api::nodepool::Budget>,
    /// What the pool resolves to, from each instant on (sorted by time).
    drift: Vec<(Millis, DriftStamp)>,
}

impl PoolConfig {
    fn stamp_at(&self, t: Millis) -> DriftStamp {
        self.drift
            .iter()
            .rev()
            .find(|(from, _)| *from <= t)
            .or(self.drift.first())
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }
}

pub struct Disruptor {
    /// Each NodePool's consolidator and budgeter.
    policies: Box<dyn DisruptionPolicies>,
    pools: BTreeMap<String, PoolConfig>,
    stamps: BTreeMap<String, DriftStamp>,
    /// Node -> (signature of its pods, when it last changed).
    pod_changes: BTreeMap<String, ((usize, ResourceList), Millis)>,
    /// After a restart: pods changes are not known before this instant (None: the next pass sets it),
    /// so a node first seen after a restart counts `consolidateAfter` from the restart.
    known_since: Option<Millis>,
    expiring: BTreeMap<String, Millis>,
    pending: Vec<Command>,
    validate_at: Millis,
    next_decision_at: Millis,
    fallbacks: Vec<String>,
    journal: Journal,
    catalog: Catalog,
    quiet: Option<Quiet>,
    /// Which consolidator and budgeter decide, for reports.
    policies_label: String,
}

/// A pass that found nothing to do: what it saw, and until when time alone changes nothing (no node
/// reaches `consolidateAfter`, expiry or its grace period, no image release, no budget window edge).
/// Until then a pass over the same cluster would find nothing again, so it is skipped.
#[derive(Debug, Clone, Copy)]
struct Quiet {
    fingerprint: u64,
    until: Millis,
}

/// A pass re-runs at least this often even when nothing changed (a safety net for what the
/// fingerprint and `wake_at` might miss). An hour, not a minute: the full pass is the replay's
/// dominant cost while nothing happens (an idle 240 h cost 19 s in a debug build at one minute), and
/// everything a pass reads is in the fingerprint or has its instant in `wake_at`.
const QUIET_MAX_MS: Millis = 3_600_000;

/// The catalog as the last pass saw it, and what was derived from it: rebuilt only when the offerings
/// revision moves (prices, availability), a pool or the DaemonSet overhead change, not on every pass.
#[derive(Default)]
struct Catalog {
    revision: Option<u64>,
    instance_types: Arc<[InstanceTypeInfo]>,
    offerings: Arc<[Offering]>,
    /// The same offerings, one shared allocation each, for every pool's `launchable` to point at.
    shared_offerings: Vec<Arc<Offering>>,
    /// The rooms of the instance types, shared by every pool's `launchable`.
    rooms: RoomCache,
    /// Pool -> (the spec and overhead it was built for, what it may launch).
    launchable: BTreeMap<String, PoolLaunchable>,
}

/// What a pool may launch, with the spec and DaemonSet overhead it was built for.
type PoolLaunchable = (PoolSpec, BTreeMap<String, ResourceList>, Arc<[Launchable]>);

impl Catalog {
    fn refresh(&mut self, input: &DisruptionInput<'_>) {
        if self.revision != Some(input.offerings_revision) {
            *self = Catalog {
                revision: Some(input.offerings_revision),
                instance_types: input.instance_types.into(),
                offerings: input.offerings.into(),
                shared_offerings: input.offerings.iter().cloned().map(Arc::new).collect(),
                rooms: RoomCache::default(),
                launchable: BTreeMap::new(),
            };
        }
    }

    fn launchable(
        &mut self,
        spec: &PoolSpec,
        overhead: BTreeMap<String, ResourceList>,
    ) -> Arc<[Launchable]> {
        if let Some((s, o, l)) = self.launchable.get(&spec.name)
            && s == spec
            && *o == overhead
        {
            return l.clone();
        }
        let l: Arc<[Launchable]> = launchables(
            spec,
            &overhead,
            &self.instance_types,
            &self.shared_offerings,
            &mut self.rooms,
        )
        .into();
        self.launchable
            .insert(spec.name.clone(), (spec.clone(), overhead, l.clone()));
        l
    }
}

impl Disruptor {
    /// From the Karpenter v1 manifests, with the built-in policies.
    pub fn from_manifests(
        pools: &[NodePool],
        classes: &[EC2NodeClass],
        start: Millis,
    ) -> Disruptor {
        let mut configs = BTreeMap::new();
        for pool in pools {
            let name = pool.metadata.name.clone().unwrap_or_default();
            let spec = &pool.spec;
            let ms = |d: std::time::Duration| d.as_millis() as Millis;
            let class = classes.iter().find(|c| {
                c.metadata.name.as_deref() == Some(spec.template.spec.node_class_ref.name.as_str())
            });
            let mut drift = vec![(Millis::MIN, DriftStamp::resolve(pool, class))];
            if let Some(class) = class
                && let Some(releases) = class
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(SIMULATED_AMI_RELEASES))
            {
                for release in releases.split(',') {
                    let Some((offset, alias)) = release.trim().split_once('=') else {
                        continue;
                    };
                    let Ok(offset) = crate::api::parse_duration(offset.trim()) else {
                        continue;
                    };
                    let mut changed = class.clone();
                    changed.spec.ami_selector_terms =
                        vec![crate::api::ec2nodeclass::AMISelectorTerm {
                            alias: Some(alias.trim().to_string()),
                            ..Default::default()
                        }];
                    drift.push((
                        start + ms(offset),
                        DriftStamp::resolve(pool, Some(&changed)),
                    ));
                }
            }
            drift.sort_by_key(|(t, _)| *t);
            configs.insert(
                name,
                PoolConfig {
                    consolidation_policy: match spec.consolidation_policy() {
                        crate::api::ConsolidationPolicy::WhenEmpty => {
                            ConsolidationPolicy::WhenEmpty
                        }
                        _ => ConsolidationPolicy::WhenEmptyOrUnderutilized,
                    },
                    consolidate_after: spec.consolidate_after().ok().flatten().map(ms),
                    expire_after: spec.expire_after().ok().flatten().map(ms),
                    termination_grace_period: spec
                        .template
                        .spec
                        .termination_grace_period()
                        .ok()
                        .flatten()
                        .map(ms),
                    budgets: spec.budgets(),
                    drift,
                },
            );
        }
        Disruptor {
            policies: Box::new(RegistryPolicies::new(Arc::new(NativePolicies))),
            pools: configs,
            stamps: BTreeMap::new(),
            pod_changes: BTreeMap::new(),
            known_since: Some(Millis::MIN),
            expiring: BTreeMap::new(),
            pending: Vec::new(),
            validate_at: 0,
            next_decision_at: Millis::MIN,
            fallbacks: Vec::new(),
            journal: Journal::default(),
            catalog: Catalog::default(),
            quiet: None,
            policies_label: "built-in consolidator and budgeter".into(),
        }
    }

    /// Where each NodePool's consolidator and budgeter come from (by default: a registry whose
    /// unconfigured NodePools use the native defaults).
    pub fn with_policies(mut self, policies: Box<dyn DisruptionPolicies>) -> Self {
        self.policies = policies;
        self
    }

    /// Names the policies in reports (e.g. `consolidator my.wasm (wasm), built-in budgeter`).
    pub fn labelled(mut self, policies_label: String) -> Self {
        self.policies_label = policies_label;
        self
    }

    /// One consolidator for every NodePool, with the default budgeter (a candidate under evaluation).
    pub fn with_consolidator(self, consolidator: Box<dyn Consolidator>) -> Self {
        self.with_policies(Box::new(SamePolicies {
            consolidator,
            budgeter: Box::new(NativeBudgeter),
        }))
    }

    /// One budgeter for every NodePool, with the default consolidator.
    pub fn with_budgeter(self, budgeter: Box<dyn Budgeter>) -> Self {
        self.with_policies(Box::new(SamePolicies {
            consolidator: Box::new(NativeConsolidator),
            budgeter,
        }))
    }

    /// A handle on what the step executes and drops (readable after the step moved into a controller).
    pub fn journal(&self) -> Journal {
        self.journal.clone()
    }

    fn settings(&mut self, spec: &PoolSpec, input: &DisruptionInput<'_>) -> Option<PoolSettings> {
        let config = self.pools.get(&spec.name)?;
        let daemon_overhead: BTreeMap<String, ResourceList> = input
            .instance_types
            .iter()
            .map(|it| (it.name.clone(), (input.daemon_overhead)(spec, it)))
            .collect();
        let settings = PoolSettings {
            spec: spec.clone(),
            consolidation_policy: config.consolidation_policy,
            consolidate_after: config.consolidate_after,
            expire_after: config.expire_after,
            termination_grace_period: config.termination_grace_period,
            budgets: config.budgets.clone(),
            drift: config.stamp_at(input.now),
            // The DaemonSets' requests per instance type reach the moves only through `launchable`
            // (its rooms); the map itself is kept once, as the cache key.
            launchable: self.catalog.launchable(spec, daemon_overhead),
        };
        Some(settings)
    }

    /// What a pass reads, hashed: nodes and their pods' footprint, pending pods, in-flight claims,
    /// nodes being disrupted, PDBs and the catalog.
    fn fingerprint(&mut self, input: &DisruptionInput<'_>) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.catalog.revision.hash(&mut h);
        for n in input.nodes {
            n.name.hash(&mut h);
            n.pods.hash(&mut h);
            n.requested.hash(&mut h);
            (n.ready, n.cordoned, n.deleting).hash(&mut h);
            n.do_not_disrupt().hash(&mut h);
        }
        input.disrupting.hash(&mut h);
        input.in_flight_claims.hash(&mut h);
        input.cluster.pending_revision().hash(&mut h);
        input.cluster.pending_pods().len().hash(&mut h);
        for b in input.cluster.disruption_budgets() {
            b.name.hash(&mut h);
            b.min_available.hash(&mut h);
            b.max_unavailable.hash(&mut h);
        }
        h.finish()
    }

    /// The next instant time alone could change a pass's outcome.
    fn wake_at(&self, view: &ClusterView) -> Millis {
        let now = view.now;
        let mut at = now + QUIET_MAX_MS;
        let mut later = |t: Millis| {
            if t > now {
                at = at.min(t);
            }
        };
        for n in &view.nodes {
            let Some(p) = view.pool(&n.node.node_pool) else {
                continue;
            };
            if let Some(a) = p.consolidate_after {
                later(n.last_pod_change.saturating_add(a));
            }
            if let Some(e) = p.expire_after {
                later(n.node.created_at.saturating_add(e));
            }
            if let (Some(g), Some(since)) = (p.termination_grace_period, n.expiring_since) {
                later(since.saturating_add(g));
            }
        }
        for config in self.pools.values() {
            for (from, _) in &config.drift {
                later(*from);
            }
            if config.budgets.iter().any(|b| b.schedule.is_some()) {
                later((now.div_euclid(60_000) + 1) * 60_000);
            }
        }
        at
    }

    /// The core's view of the cluster now (after `catalog.refresh`); updates the per-node state.
    fn view(&mut self, input: &DisruptionInput<'_>) -> ClusterView {
        let now = input.now;
        let known_since = *self.known_since.get_or_insert(now);
        let live: BTreeSet<&str> = input.nodes.iter().map(|n| &*n.name).collect();
        self.stamps.retain(|k, _| live.contains(k.as_str()));
        self.pod_changes.retain(|k, _| live.contains(k.as_str()));
        self.expiring.retain(|k, _| live.contains(k.as_str()));
        let pending = input.cluster.pending_pods();
        // PDBs: (selector view, pods selected, of which bound), counted without copying pods.
        let mut budgets: Vec<(PdbView, i64, i64, _)> = input
            .cluster
            .disruption_budgets()
            .into_iter()
            .map(|b| {
                let view = PdbView {
                    name: b.name.clone(),
                    selector: b.selector.clone(),
                    allowed: 0,
                };
                (view, 0, 0, b)
            })
            .collect();
        let mut count = |pods: &[PodState]| {
            for (view, total, healthy, _) in budgets.iter_mut() {
                for p in pods.iter().filter(|p| view.selects(p)) {
                    *total += 1;
                    *healthy += i64::from(p.node.is_some());
                }
            }
        };
        count(&pending);
        let mut nodes = Vec::with_capacity(input.nodes.len());
        for node in input.nodes {
            let bound = input.cluster.pods_on(&node.name);
            count(&bound);
            let pods: Vec<PodState> = bound
                .into_iter()
                .filter(|p| p.facts.owner != OwnerKind::DaemonSet)
                .collect();
            let name = node.name.to_string();
            let stamp = self
                .stamps
                .entry(name.clone())
                .or_insert_with(|| {
                    let launched_with = self
                        .pools
                        .get(&node.node_pool)
                        .map(|c| c.stamp_at(node.created_at).for_new_node())
                        .unwrap_or_default();
                    DriftStamp::of_node(launched_with, &node.annotations)
                })
                .clone();
            let signature = (node.pods, node.requested.clone());
            let entry = self
                .pod_changes
                .entry(name.clone())
                .or_insert_with(|| (signature.clone(), node.created_at.max(known_since)));
            if entry.0 != signature {
                *entry = (signature, now);
            }
            let last_pod_change = entry.1;
            nodes.push(NodeView {
                node: node.clone(),
                pods,
                stamp,
                do_not_disrupt: node.do_not_disrupt(),
                last_pod_change,
                expiring_since: self.expiring.get(&name).copied(),
            });
        }
        let pdbs = budgets
            .into_iter()
            .map(|(view, total, healthy, b)| {
                let allowed = match (b.min_available, b.max_unavailable) {
                    (Some(min), _) => healthy - min,
                    (None, Some(max)) => max - (total - healthy),
                    (None, None) => i64::MAX,
                };
                PdbView { allowed, ..view }
            })
            .collect();
        let pools = input
            .pools
            .iter()
            .filter_map(|p| self.settings(p, input))
            .collect();
        ClusterView {
            now,
            nodes,
            pools,
            pdbs,
            instance_types: self.catalog.instance_types.clone(),
            offerings: self.catalog.offerings.clone(),
            disrupting: input.disrupting.clone(),
            in_flight_claims: input.in_flight_claims,
            pending_pods: pending.len(),
        }
    }

    fn emit(&mut self, now: Millis, cmd: Command, out: &mut Vec<DisruptionCommand>) {
        if cmd.method == Method::Expiration {
            for n in &cmd.nodes {
                self.expiring.entry(n.clone()).or_insert(now);
            }
        }
        self.record(now, "executed".into(), cmd.explanation.clone());
        out.push(DisruptionCommand {
            reason: cmd.method.reason(),
            nodes: cmd.nodes,
            replacement: cmd.replacement,
            forceful: cmd.forceful,
            explanation: cmd.explanation.to_string(),
        });
    }

    fn record(&self, at: Millis, outcome: String, explanation: MoveExplanation) {
        if let Ok(mut j) = self.journal.lock() {
            j.push(JournalEntry {
                at,
                outcome,
                explanation,
            });
        }
    }
}

impl DisruptionStep for Disruptor {
    fn name(&self) -> String {
        format!("consolidation, drift, expiration ({})", self.policies_label)
    }

    /// A restart loses when each node's pods last changed (so `consolidateAfter` counts again from
    /// the restart: later, never earlier), the commands awaiting validation and the quiet-pass
    /// memo. Drift stamps and expiry-drain start times stay: Karpenter keeps them on the NodeClaim
    /// (its hash annotation, its deletion timestamp).
    fn forget(&mut self) {
        self.pod_changes.clear();
        self.known_since = None;
        self.pending.clear();
        self.validate_at = 0;
        self.next_decision_at = Millis::MIN;
        self.quiet = None;
        self.fallbacks.clear();
    }

    fn interval_ms(&self) -> Millis {
        5_000
    }

    fn decide(&mut self, input: &DisruptionInput<'_>) -> Vec<DisruptionCommand> {
        let now = input.now;
        let mut out = Vec::new();
        if !self.pending.is_empty() {
            if now < self.validate_at {
                return out;
            }
            self.catalog.refresh(input);
            let view = self.view(input);
            let mut room = base_room(&view);
            let mut pdbs = view.pdbs.clone();
            let mut spent = BTreeMap::new();
            let mut receivers = BTreeSet::new();
            for cmd in std::mem::take(&mut self.pending) {
                match revalidate(
                    &view,
                    &cmd,
                    &mut room,
                    &mut pdbs,
                    &mut spent,
                    &mut receivers,
                ) {
                    Ok(fresh) => self.emit(now, fresh, &mut out),
                    Err(why) => self.record(now, format!("dropped: {why}"), cmd.explanation),
                }
            }
            self.next_decision_at = now + 10_000;
            return out;
        }
        if now < self.next_decision_at {
            return out;
        }
        self.next_decision_at = now + 10_000;
        self.catalog.refresh(input);
        let fingerprint = self.fingerprint(input);
        if self
            .quiet
            .is_some_and(|q| q.fingerprint == fingerprint && now < q.until)
        {
            return out;
        }
        let view = self.view(input);
        let decision = decide(&view, &mut *self.policies);
        self.quiet = decision.commands.is_empty().then(|| Quiet {
            fingerprint,
            until: self.wake_at(&view),
        });
        self.fallbacks.extend(decision.fallbacks);
        for cmd in decision.commands {
            if cmd.method == Method::Expiration {
                self.emit(now, cmd, &mut out);
            } else {
                self.pending.push(cmd);
            }
        }
        if !self.pending.is_empty() {
            self.validate_at = now + VALIDATION_DELAY_MS;
        }
        out
    }

    fn take_policy_fallbacks(&mut self) -> Vec<String> {
        std::mem::take(&mut self.fallbacks)
    }

    fn journal(&self) -> Vec<JournalEntry> {
        self.journal.lock().map(|j| j.clone()).unwrap_or_default()
    }
}
