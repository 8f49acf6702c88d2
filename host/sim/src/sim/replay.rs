//! The replay: scenario events and the virtual cloud's events drive the real controller loop.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use rand::Rng;

use super::catalog;
use super::clock::{EventQueue, VirtualClock};
use super::deferred::ApiLatency;
use super::scenario::{RunFor, Scenario, WorkloadKind, parse_ms};
use super::workload::{facts_of, replicas_at};
use crate::clock::{Clock, Millis};
use crate::cloud::sim::{CapacityOutage, CloudEvent, LatencyRange, SimCloud, SimCloudConfig};
use crate::cloud::{CapacityType, InstanceState};
use crate::cluster::sim::SimCluster;
use crate::cluster::{DisruptionBudget, OwnerKind, PodKey, PodSpecFacts};
use crate::controller::assemble;
use crate::controller::command::{self, Command, Completion};
use crate::controller::provision::Provisioner;
use crate::controller::{Controller, ControllerConfig, DisruptionStep, InstanceTypeInfo};
use crate::interruption::{Notice, NoticeKind, StateChange};

/// Which core implementations the replay runs (defaults: the built-in ones).
#[derive(Default)]
pub struct SimOptions {
    pub provisioner: Option<Box<dyn Provisioner>>,
    pub disruption: Option<Box<dyn DisruptionStep>>,
    /// Replaces the scenario's seed.
    pub seed: Option<u64>,
}

#[derive(Debug, Clone)]
enum SimEvent {
    Reconcile(usize),
    JobStart(usize),
    PodDone(PodKey),
    Cloud(CloudEvent),
    Storm(usize),
    Sample,
    Wake,
    /// A deferred command's request reaches its server.
    Delivery(Box<InFlight>),
    /// A deferred command's answer arrives (to the controller generation that asked).
    Completion(Box<Completion>, u32),
    /// The controller restarts.
    Restart,
}

/// A deferred command on its way to its server.
#[derive(Debug, Clone)]
struct InFlight {
    command: Command,
    /// The controller generation that sent it.
    generation: u32,
    issued_at: Millis,
    answer_at: Millis,
}

/// A tick whose commands keep deciding more commands at one instant stops after this many rounds
/// (the rest are issued at the next wake).
const MAX_ROUNDS_PER_INSTANT: usize = 16;

/// One pod that got a node.
#[derive(Debug, Clone, PartialEq)]
pub struct BindRecord {
    pub pod: PodKey,
    pub node: Arc<str>,
    pub workload: Arc<str>,
    /// The replica this pod stands for: a pod recreated after an eviction keeps its predecessor's.
    pub lineage: u64,
    pub pending_ms: Millis,
    pub bound_at: Millis,
    /// Recreated after an eviction or a node loss.
    pub recreated: bool,
}

/// One launch request the controller issued (a retry of a claim is another request), with the
/// offerings it allowed, best first, and what the cloud answered.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchRecord {
    pub at: Millis,
    pub claim: String,
    pub node_pool: String,
    /// Shared with the request (no copy per record).
    pub offerings: Arc<[crate::cloud::Offering]>,
    /// The instance launched, or the cloud's error.
    pub result: Result<String, String>,
}

/// When an instance's node registered, and as which node.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub node: String,
    pub at: Millis,
}

/// A point of the timeline.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub seconds: i64,
    pub on_demand_nodes: u32,
    pub spot_nodes: u32,
    pub cost_per_hour: f64,
    pub pending_pods: u32,
    pub running_pods: u32,
}

struct WorkloadState {
    facts: Arc<PodSpecFacts>,
    kind: WorkloadKind,
    pods: Vec<PodKey>,
    /// Job: pods finished.
    completed: u32,
    started: bool,
    /// Lineages of pods lost to evictions, handed to the next pods created.
    lost: VecDeque<u64>,
}

/// Everything the report needs after a replay.
pub struct SimOutcome {
    pub scenario: String,
    pub seed: u64,
    pub start: Millis,
    pub end: Millis,
    pub provisioner: String,
    pub disruption: String,
    pub cloud: SimCloud,
    pub cluster: SimCluster,
    pub controller: Controller,
    pub binds: Vec<BindRecord>,
    pub samples: Vec<Sample>,
    pub pods_created: u64,
    pub interruption_warnings: u64,
    /// Each spot interruption: warning, replacement ready, pods left at the reclaim.
    pub interruption_traces: Vec<InterruptionTrace>,
    pub launch_latency_max_ms: Millis,
    pub batch_max_ms: Millis,
    pub peak_nodes: usize,
    pub peak_pods: usize,
    /// Every launch request, in issue order.
    pub launches: Vec<LaunchRecord>,
    /// Instance id -> its node's registration.
    pub registrations: HashMap<String, Registration>,
}

pub struct Replay {
    scenario: Scenario,
    clock: VirtualClock,
    queue: EventQueue<SimEvent>,
    cluster: SimCluster,
    cloud: SimCloud,
    controller: Controller,
    workloads: Vec<WorkloadState>,
    daemonsets: Vec<Arc<PodSpecFacts>>,
    lineage: HashMap<PodKey, (u64, bool)>,
    next_lineage: u64,
    next_pod: u64,
    binds: Vec<BindRecord>,
    samples: Vec<Sample>,
    start: Millis,
    end: Millis,
    sample_every: Millis,
    scheduled_wake: Option<Millis>,
    pods_created: u64,
    interruption_warnings: u64,
    interruption_tracker: interruptions::Tracker,
    launch_latency_max_ms: Millis,
    batch_max_ms: Millis,
    seed: u64,
    disruption_name: String,
    peak_nodes: usize,
    peak_pods: usize,
    /// A timeline sample is due once the current instant settles.
    sample_due: bool,
    /// The deferred mode's API latencies; None carries commands out inline.
    api_latency: Option<ApiLatency>,
    /// Bumped at each controller restart (answers to an older generation are dropped).
    generation: u32,
    launches: Vec<LaunchRecord>,
    registrations: HashMap<String, Registration>,
}

/// The provisioning core for `scenario`, each NodePool ranking with its ranker from `registry` (the
/// default provisioner uses `PolicyRegistry::native()`).
pub fn core_planner(
    scenario: &Scenario,
    registry: Arc<crate::policy::PolicyRegistry>,
    ranker_label: String,
) -> Box<dyn Provisioner> {
    let (catalog, types, _) = catalog::select(&scenario.cloud.instance_types, &scenario.zones);
    let daemonsets = scenario_daemonsets(scenario);
    assemble::planner(
        &setup(
            scenario,
            &catalog,
            types,
            &daemonsets,
            ControllerConfig::default(),
            0,
        ),
        registry,
        ranker_label,
    )
    .expect("checked when the scenario was parsed")
}

/// The DaemonSets' pod templates of a scenario.
fn scenario_daemonsets(scenario: &Scenario) -> Vec<Arc<PodSpecFacts>> {
    scenario
        .workloads
        .iter()
        .filter(|w| w.kind == WorkloadKind::DaemonSet)
        .map(|w| facts_of(w).expect("checked when the scenario was parsed"))
        .collect()
}

/// What the controller is assembled from, as the scenario declares it.
fn setup<'a>(
    scenario: &'a Scenario,
    catalog: &'a crate::model::Catalog,
    instance_types: Vec<InstanceTypeInfo>,
    daemonsets: &'a [Arc<PodSpecFacts>],
    config: ControllerConfig,
    seed: u64,
) -> assemble::Setup<'a> {
    assemble::Setup {
        config,
        node_pools: &scenario.node_pools,
        node_classes: &scenario.node_classes,
        daemonsets,
        catalog,
        instance_types,
        zones: scenario.zones.clone(),
        seed,
        start: scenario.start_ms(),
    }
}

/// Builds the loop's view of a NodePool from its Karpenter v1 manifest.
pub use crate::controller::assemble::pool_spec;

impl Replay {
    pub fn new(scenario: &Scenario, options: SimOptions) -> Replay {
        let seed = options.seed.unwrap_or(scenario.seed);
        let start = scenario.start_ms();
        let end = start + scenario.duration_ms();
        let (core_catalog, types, prices) =
            catalog::select(&scenario.cloud.instance_types, &scenario.zones);
        let latency = scenario
            .cloud
            .launch_latency
            .as_ref()
            .map(|r| LatencyRange {
                min_ms: parse_ms(&r.min).unwrap_or(45_000),
                max_ms: parse_ms(&r.max).unwrap_or(60_000),
            })
            .unwrap_or_default();
        let outages = scenario
            .events
            .iter()
            .filter_map(|e| {
                let o = e.capacity_outage.as_ref()?;
                let from = start + parse_ms(&e.at).ok()?;
                Some(CapacityOutage {
                    from,
                    to: from + parse_ms(&o.duration).ok()?,
                    instance_types: o.instance_types.clone(),
                    zones: o.zones.clone(),
                    capacity_type: o
                        .capacity_type
                        .as_deref()
                        .and_then(CapacityType::from_label),
                })
            })
            .collect();
        let mut cloud_config = SimCloudConfig {
            seed,
            zones: scenario.zones.clone(),
            launch_latency: latency,
            outages,
            spot_price_table: scenario.cloud.spot_prices.clone(),
            ..SimCloudConfig::default()
        };
        if let Some(r) = &scenario.cloud.spot_price_ratio {
            cloud_config.spot_price_ratio = (r.min, r.max);
        }
        let (api_latency, faults) = scenario
            .cloud
            .api
            .as_ref()
            .map(|api| {
                api.resolve(start)
                    .expect("checked when the scenario was parsed")
            })
            .unwrap_or_default();
        cloud_config.faults = faults;
        let cloud = SimCloud::new(cloud_config, prices);
        let budgets = scenario
            .workloads
            .iter()
            .filter_map(|w| {
                let p = w.pod_disruption_budget.as_ref()?;
                Some(DisruptionBudget {
                    name: format!("{}-pdb", w.name),
                    selector: BTreeMap::from([("app".to_string(), w.name.clone())]),
                    min_available: p.min_available,
                    max_unavailable: p.max_unavailable,
                })
            })
            .collect();
        let workloads: Vec<WorkloadState> = scenario
            .workloads
            .iter()
            .map(|w| WorkloadState {
                facts: facts_of(w).expect("checked when the scenario was parsed"),
                kind: w.kind,
                pods: Vec::new(),
                completed: 0,
                started: false,
                lost: VecDeque::new(),
            })
            .collect();
        let daemonsets: Vec<Arc<PodSpecFacts>> = workloads
            .iter()
            .filter(|w| w.kind == WorkloadKind::DaemonSet)
            .map(|w| w.facts.clone())
            .collect();
        let mut config = ControllerConfig::default();
        if let Some(v) = scenario
            .controller
            .batch_idle
            .as_deref()
            .and_then(|v| parse_ms(v).ok())
        {
            config.batch_idle_ms = v;
        }
        if let Some(v) = scenario
            .controller
            .batch_max
            .as_deref()
            .and_then(|v| parse_ms(v).ok())
        {
            config.batch_max_ms = v;
        }
        // Disruption (consolidation, drift, expiry) with the built-in consolidator and budgeter, and
        // provisioning with the native default ranker, unless the caller brings its own steps.
        let controller = assemble::controller(
            &setup(scenario, &core_catalog, types, &daemonsets, config, seed),
            Arc::new(crate::policy::PolicyRegistry::native()),
            crate::policy::defaults::NativeRanker::label(),
            options.provisioner,
            options.disruption,
        )
        .expect("checked when the scenario was parsed");
        let disruption_name = controller.disruption_name();
        let duration = end - start;
        let sample_every = scenario
            .controller
            .sample_every
            .as_deref()
            .and_then(|v| parse_ms(v).ok())
            .unwrap_or((duration / 720).max(10_000))
            // The scenario checker refuses less than 1s; a scenario built in code gets the same floor.
            .max(1_000);
        let mut replay = Replay {
            scenario: scenario.clone(),
            clock: VirtualClock::starting_at(start),
            queue: EventQueue::default(),
            cluster: SimCluster::new(budgets),
            cloud,
            controller,
            workloads,
            daemonsets,
            lineage: HashMap::new(),
            next_lineage: 0,
            next_pod: 0,
            binds: Vec::new(),
            samples: Vec::new(),
            start,
            end,
            sample_every,
            scheduled_wake: None,
            pods_created: 0,
            interruption_warnings: 0,
            interruption_tracker: interruptions::Tracker::default(),
            launch_latency_max_ms: latency.max_ms,
            batch_max_ms: config.batch_max_ms,
            seed,
            disruption_name,
            peak_nodes: 0,
            peak_pods: 0,
            sample_due: false,
            api_latency,
            generation: 0,
            launches: Vec::new(),
            registrations: HashMap::new(),
        };
        replay.schedule_scenario();
        replay
    }

    fn schedule_scenario(&mut self) {
        let start = self.start;
        for (i, w) in self.scenario.workloads.iter().enumerate() {
            match w.kind {
                WorkloadKind::Deployment => {
                    self.queue.push(start, SimEvent::Reconcile(i));
                    for s in &w.scale {
                        self.queue
                            .push(start + parse_ms(&s.at).unwrap_or(0), SimEvent::Reconcile(i));
                    }
                    if let Some(d) = &w.diurnal {
                        let every = d
                            .every
                            .as_deref()
                            .and_then(|e| parse_ms(e).ok())
                            .unwrap_or(600_000)
                            .max(1_000);
                        let mut t = start + every;
                        while t < self.end {
                            self.queue.push(t, SimEvent::Reconcile(i));
                            t += every;
                        }
                    }
                }
                WorkloadKind::Job => {
                    let at = w.at.as_deref().and_then(|a| parse_ms(a).ok()).unwrap_or(0);
                    self.queue.push(start + at, SimEvent::JobStart(i));
                }
                WorkloadKind::DaemonSet => {}
            }
        }
        for (i, e) in self.scenario.events.iter().enumerate() {
            let at = start + parse_ms(&e.at).unwrap_or(0);
            if e.spot_interruption.is_some() {
                self.queue.push(at, SimEvent::Storm(i));
            }
            if e.controller_restart.is_some() {
                self.queue.push(at, SimEvent::Restart);
            }
        }
        // Samples are scheduled one at a time (the next when one is taken), so the queue never holds
        // more than one, whatever `sampleEvery` and the duration are.
        self.queue.push(start, SimEvent::Sample);
    }

    /// Replays to the end; `progress` gets the fraction of virtual time done.
    pub fn run(mut self, progress: &mut dyn FnMut(f64)) -> SimOutcome {
        self.advance(self.end, progress);
        progress(1.0);
        self.finish()
    }

    /// Replays every event up to and including `until` (at most the scenario's end).
    pub fn advance(&mut self, until: Millis, progress: &mut dyn FnMut(f64)) {
        let until = until.min(self.end);
        let total = (self.end - self.start).max(1) as f64;
        let mut last_reported = -1.0;
        while let Some(t) = self.queue.peek_time() {
            if t > until {
                break;
            }
            self.clock.advance_to(t);
            while self.queue.peek_time() == Some(t) {
                let (_, event) = self.queue.pop().expect("peeked");
                self.handle(event, t);
            }
            self.settle(t);
            if std::mem::take(&mut self.sample_due) {
                self.sample(t);
                let next = t.saturating_add(self.sample_every);
                if next <= self.end {
                    self.queue.push(next, SimEvent::Sample);
                }
            }
            let done = (t - self.start) as f64 / total;
            if done - last_reported >= 0.01 {
                last_reported = done;
                progress(done);
            }
        }
        self.clock.advance_to(until);
    }

    /// What the replay produced (call after [`Self::run`] or [`Self::advance`] to the end).
    pub fn finish(self) -> SimOutcome {
        SimOutcome {
            scenario: self.scenario.name.clone(),
            seed: self.seed,
            start: self.start,
            end: self.end,
            provisioner: self.controller.provisioner_name(),
            disruption: self.disruption_name,
            cloud: self.cloud,
            cluster: self.cluster,
            controller: self.controller,
            binds: self.binds,
            samples: self.samples,
            pods_created: self.pods_created,
            interruption_warnings: self.interruption_warnings,
            interruption_traces: self.interruption_tracker.into_traces(),
            launch_latency_max_ms: self.launch_latency_max_ms,
            batch_max_ms: self.batch_max_ms,
            peak_nodes: self.peak_nodes,
            peak_pods: self.peak_pods,
            launches: self.launches,
            registrations: self.registrations,
        }
    }

    fn handle(&mut self, event: SimEvent, now: Millis) {
        match event {
            SimEvent::Reconcile(i) => self.reconcile(i, now),
            SimEvent::JobStart(i) => {
                self.workloads[i].started = true;
                self.reconcile(i, now);
            }
            SimEvent::PodDone(key) => {
                if let Some(pod) = self.cluster.remove_pod(&key) {
                    let i = self.workload_index(&pod.facts.workload);
                    let w = &mut self.workloads[i];
                    w.pods.retain(|k| k != &key);
                    w.completed += 1;
                    self.lineage.remove(&key);
                    self.reconcile(i, now);
                }
            }
            SimEvent::Cloud(e) => self.cloud_event(e, now),
            SimEvent::Storm(i) => self.storm(i, now),
            // Sampled after the instant settles, so pods bound at this instant do not show as pending.
            SimEvent::Sample => self.sample_due = true,
            SimEvent::Wake => {
                if self.scheduled_wake.is_some_and(|w| w <= now) {
                    self.scheduled_wake = None;
                }
            }
            SimEvent::Delivery(sent) => {
                // A request still on its way from a process that died is lost with it.
                if sent.generation == self.generation {
                    self.carry_out(sent.command, now, sent.issued_at, Some(sent.answer_at));
                }
            }
            SimEvent::Completion(completion, generation) => {
                // An answer to a process that died is lost with it.
                if generation == self.generation {
                    self.controller.complete(now, &self.cluster, *completion)
                }
            }
            SimEvent::Restart => {
                self.generation += 1;
                let unhandled = self.controller.take_notices();
                self.controller.restart(now, &self.cluster);
                for notice in unhandled {
                    self.controller.notify(notice);
                }
            }
        }
    }

    fn workload_index(&self, name: &str) -> usize {
        self.scenario
            .workloads
            .iter()
            .position(|w| w.name == name)
            .expect("pods belong to workloads")
    }

    /// Brings a workload's pod count to its target.
    fn reconcile(&mut self, i: usize, now: Millis) {
        let spec = &self.scenario.workloads[i];
        let w = &self.workloads[i];
        let target = match w.kind {
            WorkloadKind::Deployment => replicas_at(spec, now - self.start, 0) as usize,
            WorkloadKind::Job if w.started => {
                let completions = spec.completions.unwrap_or(0);
                let parallelism = spec.parallelism.unwrap_or(completions);
                parallelism.min(completions.saturating_sub(w.completed)) as usize
            }
            _ => 0,
        };
        while self.workloads[i].pods.len() < target {
            self.create_pod(i, now);
        }
        while self.workloads[i].pods.len() > target {
            // The ReplicaSet deletes pending pods first, then the newest.
            let w = &self.workloads[i];
            let victim = w
                .pods
                .iter()
                .rposition(|k| self.cluster.pod(k).is_some_and(|p| p.node.is_none()))
                .unwrap_or(w.pods.len() - 1);
            let key = self.workloads[i].pods.remove(victim);
            self.cluster.remove_pod(&key);
            self.lineage.remove(&key);
        }
    }

    fn create_pod(&mut self, i: usize, now: Millis) {
        let w = &mut self.workloads[i];
        let key: PodKey = Arc::from(format!("{}-{}", w.facts.workload, self.next_pod));
        self.next_pod += 1;
        self.pods_created += 1;
        let (lineage, recreated) = match w.lost.pop_front() {
            Some(l) => (l, true),
            None => {
                self.next_lineage += 1;
                (self.next_lineage, false)
            }
        };
        self.lineage.insert(key.clone(), (lineage, recreated));
        w.pods.push(key.clone());
        self.cluster.add_pod(key, w.facts.clone(), now);
    }

    fn cloud_event(&mut self, event: CloudEvent, now: Millis) {
        match event {
            CloudEvent::Running { instance_id } => {
                if !self.cloud.mark_running(&instance_id, now) {
                    return;
                }
                let Some(instance) = self.cloud.instance(&instance_id).cloned() else {
                    return;
                };
                // The simulated kubelet: the instance joins as the Node its claim's record describes.
                // With no record (the claim was given up) it never joins, and garbage collection
                // terminates it.
                let Some(record) = self.cluster.claim_record(&instance.claim) else {
                    return;
                };
                let Some(it) = self
                    .controller
                    .instance_type(&instance.offering.instance_type)
                else {
                    return;
                };
                let node = crate::cluster::registration::registered_node(
                    record,
                    &instance,
                    it,
                    &simulated_hostname(&instance.id),
                    now,
                );
                let name = node.name.clone();
                self.registrations.insert(
                    instance.id.clone(),
                    Registration {
                        node: name.to_string(),
                        at: now,
                    },
                );
                self.interruption_tracker.registered(&node.claim, now);
                let labels = node.labels.clone();
                let taints = node.taints.clone();
                self.cluster.register_node(node);
                for ds in self.daemonsets.clone() {
                    let fits = crate::scheduling::fit::check_static(&ds.compiled, &labels, &taints)
                        .is_ok();
                    if fits {
                        let key: PodKey = Arc::from(format!("{}-{}", ds.workload, name));
                        self.cluster.add_bound_pod(key, ds.clone(), &name, now);
                    }
                }
            }
            CloudEvent::RebalanceRecommendation { instance_id } => {
                self.controller.notify(Notice {
                    instance_id,
                    kind: NoticeKind::RebalanceRecommendation,
                    ack: None,
                });
            }
            CloudEvent::SpotInterruptionWarning {
                instance_id,
                terminate_at,
            } => {
                self.interruption_warnings += 1;
                let terminated = self
                    .cloud
                    .instance(&instance_id)
                    .is_some_and(|i| i.state == InstanceState::Terminated);
                self.interruption_tracker.warned(
                    &self.cluster,
                    &instance_id,
                    terminated,
                    now,
                    terminate_at,
                );
                self.controller.notify(Notice {
                    instance_id,
                    kind: NoticeKind::SpotInterruptionWarning { terminate_at },
                    ack: None,
                });
            }
            CloudEvent::Terminated { instance_id } => {
                // Before the controller hears of it: the pods still on the node die with it.
                self.interruption_tracker
                    .terminated(&self.cluster, &instance_id, now);
                let reclaimed = self.cloud.reclaim(&instance_id, now);
                let has_node = self
                    .cluster
                    .nodes_iter()
                    .any(|n| n.instance_id == instance_id);
                if reclaimed || has_node {
                    self.controller.notify(Notice {
                        instance_id,
                        kind: NoticeKind::StateChange {
                            state: StateChange::Terminated,
                        },
                        ack: None,
                    });
                }
            }
        }
    }

    fn storm(&mut self, i: usize, now: Millis) {
        let Some(s) = self.scenario.events[i].spot_interruption.clone() else {
            return;
        };
        let mut candidates = self.cloud.interruptible(&s.zones, &s.instance_types);
        let n = match (s.count, s.fraction) {
            (Some(c), _) => c as usize,
            (None, Some(f)) => (candidates.len() as f64 * f).ceil() as usize,
            _ => 0,
        }
        .min(candidates.len());
        // A seeded partial shuffle picks the victims.
        for k in 0..n {
            let j = self.cloud.rng().random_range(k..candidates.len());
            candidates.swap(k, j);
        }
        let lead = s.rebalance_lead.as_deref().and_then(|l| parse_ms(l).ok());
        for id in candidates.into_iter().take(n) {
            self.cloud.interrupt(&id, now, lead);
        }
    }

    fn sample(&mut self, now: Millis) {
        let mut on_demand = 0;
        let mut spot = 0;
        let mut cost = 0.0;
        for r in self.cloud.records() {
            if r.instance.state == InstanceState::Terminated {
                continue;
            }
            match r.instance.offering.capacity_type {
                CapacityType::Spot => spot += 1,
                _ => on_demand += 1,
            }
            cost += r.instance.offering.price;
        }
        let pending = self.cluster.pending_count() as u32;
        self.samples.push(Sample {
            seconds: (now - self.start) / 1000,
            on_demand_nodes: on_demand,
            spot_nodes: spot,
            cost_per_hour: (cost * 1e4).round() / 1e4,
            pending_pods: pending,
            running_pods: self.cluster.pod_count() as u32 - pending,
        });
    }

    /// After the events of an instant: bind, let the controller act, bind what its actions freed.
    ///
    /// The controller's commands are carried out by [`Self::execute`]; in the inline mode their
    /// completions are applied at once and the controller is ticked again at the same instant (until it
    /// has nothing more to do), so a decision and its consequences happen in one instant as before.
    fn settle(&mut self, now: Millis) {
        self.bind_and_recreate(now);
        let mut wake = None;
        for _ in 0..MAX_ROUNDS_PER_INSTANT {
            let tick = self.controller.tick(now, &self.cluster);
            // Right after the tick that handled a warning: the drain and its replacements exist
            // (an inline drain with nothing to wait for may be over before the instant settles).
            self.interruption_tracker.observe(&self.controller, now);
            wake = tick.wake;
            if tick.commands.is_empty() {
                break;
            }
            for command in tick.commands {
                self.execute(command, now);
            }
        }
        self.bind_and_recreate(now);
        for (at, e) in self.cloud.drain_events() {
            self.queue.push(at.max(now), SimEvent::Cloud(e));
        }
        if let Some(w) = wake
            && w <= self.end
            && self.scheduled_wake.is_none_or(|s| w < s || s <= now)
        {
            self.scheduled_wake = Some(w);
            self.queue.push(w, SimEvent::Wake);
        }
        self.peak_nodes = self.peak_nodes.max(self.cluster.node_count());
        self.peak_pods = self.peak_pods.max(self.cluster.pod_count());
    }

    /// Carries out one command against the simulated cluster and cloud. Inline: the call takes
    /// effect and its completion is applied now. Deferred: the API's latency is split between the
    /// request's way to its server (half) and the answer's way back; the call takes effect when the
    /// request arrives, as events of the virtual clock. A restart (a killed process) between the two
    /// halves loses the request if it was still on its way, and the answer if the call took effect.
    fn execute(&mut self, command: Command, now: Millis) {
        match self.api_latency {
            None => self.carry_out(command, now, now, None),
            Some(latency) => {
                let delay = latency.draw(&command, self.cloud.rng());
                let sent = InFlight {
                    command,
                    generation: self.generation,
                    issued_at: now,
                    answer_at: now + delay,
                };
                self.queue
                    .push(now + delay / 2, SimEvent::Delivery(Box::new(sent)));
            }
        }
    }

    /// The call takes effect now; its answer is applied now (inline) or at `answer_at`.
    fn carry_out(
        &mut self,
        command: Command,
        now: Millis,
        issued_at: Millis,
        answer_at: Option<Millis>,
    ) {
        let outcome = command::execute(&command, now, &mut self.cluster, &mut self.cloud);
        if let (Command::Launch(request), command::Outcome::Launched(result)) = (&command, &outcome)
        {
            self.launches.push(LaunchRecord {
                at: now,
                claim: request.claim.clone(),
                node_pool: request.node_pool.clone(),
                offerings: request.offerings.clone(),
                result: result
                    .as_ref()
                    .map(|l| l.instance.id.clone())
                    .map_err(|e| e.to_string()),
            });
        }
        let completion = Completion {
            command,
            issued_at,
            outcome,
        };
        match answer_at {
            None => self.controller.complete(now, &self.cluster, completion),
            Some(at) => self.queue.push(
                at,
                SimEvent::Completion(Box::new(completion), self.generation),
            ),
        }
    }

    fn bind_and_recreate(&mut self, now: Millis) {
        for _ in 0..3 {
            let mut changed = false;
            for removal in self.cluster.drain_removed() {
                changed = true;
                let pod = removal.pod;
                if pod.facts.owner == OwnerKind::DaemonSet {
                    continue;
                }
                let i = self.workload_index(&pod.facts.workload);
                self.workloads[i].pods.retain(|k| k != &pod.key);
                if let Some((lineage, _)) = self.lineage.remove(&pod.key) {
                    self.workloads[i].lost.push_back(lineage);
                }
                self.reconcile(i, now);
            }
            for b in self.cluster.schedule(now) {
                changed = true;
                let pod = self.cluster.pod(&b.pod).expect("just bound");
                let facts = pod.facts.clone();
                if facts.owner == OwnerKind::Job {
                    let i = self.workload_index(&facts.workload);
                    let run = match &self.scenario.workloads[i].run_for {
                        Some(RunFor::Fixed(d)) => parse_ms(d).unwrap_or(0),
                        Some(RunFor::Range(r)) => {
                            let lo = parse_ms(&r.min).unwrap_or(0);
                            let hi = parse_ms(&r.max).unwrap_or(lo);
                            if hi > lo {
                                self.cloud.rng().random_range(lo..=hi)
                            } else {
                                lo
                            }
                        }
                        None => 0,
                    };
                    self.queue.push(now + run, SimEvent::PodDone(b.pod.clone()));
                }
                let (lineage, recreated) = self.lineage.get(&b.pod).copied().unwrap_or((0, false));
                self.binds.push(BindRecord {
                    pod: b.pod.clone(),
                    node: b.node.clone(),
                    workload: facts.workload.clone(),
                    lineage,
                    pending_ms: b.pending_ms,
                    bound_at: now,
                    recreated,
                });
            }
            if !changed {
                break;
            }
        }
    }

    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// Hands a notice to the controller now (as a queue consumer would) and lets the instant settle:
    /// what the controller decided is carried out before this returns.
    pub fn notify_now(&mut self, notice: Notice) {
        let now = self.now();
        self.controller.notify(notice);
        self.queue.push(now, SimEvent::Wake);
        self.advance(now, &mut |_| {});
    }

    /// The controller as it is now (its decision log, counters, acknowledgements are read here).
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    pub fn cluster(&self) -> &SimCluster {
        &self.cluster
    }

    /// The controller's acknowledgements of queue notices whose action is durably started.
    pub fn take_acks(&mut self) -> Vec<crate::controller::NoticeAck> {
        self.controller.take_acks()
    }
}

/// Replays a scenario with the given options.
pub fn simulate(
    scenario: &Scenario,
    options: SimOptions,
    progress: &mut dyn FnMut(f64),
) -> SimOutcome {
    Replay::new(scenario, options).run(progress)
}

/// The hostname a simulated instance's kubelet registers with (EC2's `ip-a-b-c-d.ec2.internal` form,
/// from the instance id's counter).
fn simulated_hostname(instance_id: &str) -> String {
    let n = u64::from_str_radix(instance_id.trim_start_matches("i-"), 16).unwrap_or(0);
    format!(
        "ip-10-{}-{}-{}.ec2.internal",
        (n >> 16) % 256,
        (n >> 8) % 256,
        n % 256
    )
}

mod interruptions;
pub use interruptions::InterruptionTrace;

#[cfg(test)]
mod interruption_tests;
#[cfg(test)]
mod safety_tests;
