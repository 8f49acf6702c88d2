//! The in-cluster loop: snapshot -> controller tick -> commands executed concurrently -> completions
//! applied as they arrive. It ticks when a completion arrives, when a watch event arrives (a pending
//! pod starts the batch window), and when the controller asked to be woken ([`Tick::wake`]).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kestrel_core::clock::{Clock, Millis, SystemClock};
use kestrel_core::cloud::CloudApi;
use kestrel_core::cluster::OwnerKind;
use kestrel_core::controller::{Command, Completion, Controller, Outcome};
use kube::{Client, ResourceExt};
use tokio::sync::mpsc;

use crate::assemble::{self, Assembly, DescribedTypes};
use crate::executor::Executor;
use crate::hotswap::PolicySwapper;
use crate::lease::{Elector, Fence, LeaseConfig};
use crate::metrics::Metrics;
use crate::registration;
use crate::serve::Health;
use crate::snapshot::{FactsCache, Snapshot};
use crate::watch::Reflectors;

/// `kestrel run`'s settings (flags and environment, as Karpenter's).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `CLUSTER_NAME`: the cluster the instances are tagged for.
    pub cluster_name: String,
    /// `INTERRUPTION_QUEUE`: the SQS queue of interruption notices (read by the AWS adapter).
    pub interruption_queue: Option<String>,
    /// The queue's consumer (the AWS adapter's, built from `interruption_queue`): started once
    /// this replica leads. None: no interruption handling.
    pub notice_queue: Option<Arc<dyn crate::interruptions::NoticeQueue>>,
    pub assembly: Assembly,
    /// The region's instance types as the cloud last described them (the AWS adapter refreshes
    /// them): each change rebuilds the controller over them. None, or nothing described yet: the
    /// assembly's own catalog.
    pub instance_types: Option<tokio::sync::watch::Receiver<Option<Arc<DescribedTypes>>>>,
    /// How long in-flight commands may finish after a shutdown signal before they are abandoned.
    pub shutdown_grace: Duration,
    /// At most one tick per this interval while events stream in (coalesces watch bursts).
    pub min_tick_interval: Duration,
    /// The namespace of the policy ConfigMaps (`SYSTEM_NAMESPACE`, the controller's own).
    pub policy_namespace: String,
    /// What a NodePool without policy annotations gets: the embedded wasm defaults (production) or
    /// the same logic compiled in.
    pub default_policies: kestrel_policy::DefaultBackend,
    /// Per-call limits of wasm policies (deadlines, memory).
    pub policy_limits: kestrel_policy::Limits,
    /// Leader election among replicas (None: this process acts alone, as in most tests).
    pub leader_election: Option<LeaseConfig>,
    /// The right to write, shared with the writers outside the decision loop (the AWS adapter's
    /// EC2NodeClass binder): extended by the elector while this replica holds the lease; without
    /// election, made to hold when the loop starts (a caller may make it hold sooner).
    pub leadership: Fence,
    /// The metrics the loop feeds (served on `/metrics` by [`crate::serve`]).
    pub metrics: Arc<Metrics>,
    /// What the probes report (served on `/healthz` and `/readyz`).
    pub health: Arc<Health>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("starting the watches")]
    Watch(#[source] kube::Error),
    #[error("the watches stopped before their first list")]
    NotSynced,
    #[error("building the controller")]
    Assemble(#[source] assemble::AssembleError),
    #[error("leader election")]
    Lease(#[source] crate::lease::LeaseError),
    /// The lease was lost (not renewed in time, or taken by another replica): this process stops
    /// acting at once and exits, to start again as a standby.
    #[error("lost the leader lease")]
    LostLeadership,
}

/// What the loop did, for logs, tests and the benchmark.
#[derive(Debug, Default, Clone)]
pub struct RunStats {
    pub ticks: u64,
    pub commands: u64,
    pub rebuilds: u64,
    /// The longest tick (snapshot + decisions), in microseconds.
    pub max_tick_us: u128,
}

/// Fingerprint of what the controller is built from: NodePools (generation and annotations: not
/// their status, which Kestrel writes itself), EC2NodeClasses (generation: their status is
/// Kestrel's too, and drift reads only their spec), DaemonSets (resourceVersion). A change rebuilds
/// the controller, which resumes from the claim records.
fn fingerprint(r: &Reflectors) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = r
        .node_pools
        .state()
        .iter()
        .map(|p| {
            (
                format!("pool/{}", p.name_any()),
                format!("{:?} {:?}", p.metadata.generation, p.metadata.annotations),
            )
        })
        .chain(r.node_classes.state().iter().map(|c| {
            (
                format!("class/{}", c.name_any()),
                format!("{:?}", c.metadata.generation),
            )
        }))
        .chain(r.daemonsets.state().iter().map(|d| {
            (
                format!("ds/{}/{}", d.namespace().unwrap_or_default(), d.name_any()),
                d.resource_version().unwrap_or_default(),
            )
        }))
        .collect();
    f.sort();
    f
}

/// Takes the instance types the cloud described last into the assembly; true if a new description
/// arrived since the last call (the adapter publishes only one that differs from the last). The
/// first call takes what is there.
fn take_described_types(settings: &mut Settings, first: bool) -> bool {
    let Some(updates) = settings.instance_types.as_mut() else {
        return false;
    };
    if !first && !updates.has_changed().unwrap_or(false) {
        return false;
    }
    let described = updates.borrow_and_update().clone();
    if let Some(d) = &described {
        tracing::info!(
            types = d.types.len(),
            "planning with the instance types the cloud describes"
        );
    }
    settings.assembly.described = described;
    true
}

/// The number a claim name ends with (`POOL-NNNNN`).
fn claim_number(name: &str) -> Option<u64> {
    name.rsplit('-').next()?.parse().ok()
}

fn build(
    r: &Reflectors,
    settings: &Settings,
    now: Millis,
    deleting: crate::deletion::Deleting,
    policies: Arc<kestrel_policy::PolicyRegistry>,
    claims_after: u64,
) -> Result<Controller, RunError> {
    let pools: Vec<_> = r.node_pools.state().iter().map(|p| (**p).clone()).collect();
    let classes: Vec<_> = r
        .node_classes
        .state()
        .iter()
        .map(|c| (**c).clone())
        .collect();
    let daemonsets: Vec<_> = r
        .daemonsets
        .state()
        .iter()
        .filter_map(|d| {
            let template = &d.spec.as_ref()?.template;
            match kestrel_core::cluster::PodSpecFacts::compile(&d.name_any(), OwnerKind::DaemonSet, template) {
                Ok(f) => Some(Arc::new(f)),
                Err(err) => {
                    tracing::warn!(daemonset = %d.name_any(), %err, "DaemonSet left out of node sizing");
                    None
                }
            }
        })
        .collect();
    // Claim names continue from the wall clock's milliseconds (never below a name this process
    // used): a name an earlier process or controller used is never reused as a new launch's token.
    let mut assembly = settings.assembly.clone();
    assembly.config.first_claim = (now.max(0) as u64).max(claims_after + 1);
    assemble::controller(
        &assembly,
        &pools,
        &classes,
        &daemonsets,
        now,
        deleting,
        policies,
    )
    .map_err(RunError::Assemble)
}

/// Runs the controller until `shutdown` resolves. The future is not `Send` (the controller is a
/// single-threaded state machine): run it on the thread that owns the runtime (`block_on`) or a
/// `LocalSet`.
pub async fn run(
    client: Client,
    cloud: Arc<dyn CloudApi>,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<RunStats, RunError> {
    let clock = SystemClock;
    let mut shutdown = std::pin::pin!(shutdown);
    let reflectors = Reflectors::start(&client, &settings.policy_namespace)
        .await
        .map_err(RunError::Watch)?;
    tokio::select! {
        synced = reflectors.wait_synced() => synced.map_err(|_| RunError::NotSynced)?,
        _ = &mut shutdown => return Ok(RunStats::default()),
    }
    tracing::info!(cluster = %settings.cluster_name, policy = reflectors.policy.0, "caches synced");
    let (metrics, health) = (settings.metrics.clone(), settings.health.clone());
    health.set_ready(true);
    // A standby waits here (healthy and ready) until it holds the lease; nothing below it decides
    // or writes without the fence holding.
    let (fence, campaign) = match &settings.leader_election {
        None => {
            settings.leadership.hold_forever();
            (settings.leadership.clone(), None)
        }
        Some(config) => {
            let elector = Arc::new(
                Elector::with_fence(client.clone(), config.clone(), settings.leadership.clone())
                    .map_err(RunError::Lease)?,
            );
            let fence = elector.fence();
            let (stop_campaign, campaign_stopped) = tokio::sync::oneshot::channel::<()>();
            let campaign = tokio::spawn({
                let elector = elector.clone();
                async move {
                    elector
                        .campaign(async {
                            // Dropped (the loop ended): stop and release the lease.
                            campaign_stopped.await.ok();
                        })
                        .await
                }
            });
            tracing::info!(identity = %elector.identity(), "waiting for the leader lease");
            loop {
                health.beat();
                if fence.holds() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = &mut shutdown => return Ok(RunStats::default()),
                }
            }
            tracing::info!(identity = %elector.identity(), "leading");
            (
                fence,
                Some(Campaign {
                    stop: Some(stop_campaign),
                    task: Some(campaign),
                }),
            )
        }
    };
    metrics.set_leader(true);
    let executor = Executor::new(client.clone(), reflectors.clone(), cloud);
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Completion)>();
    let mut cache = FactsCache::default();
    let mut stats = RunStats::default();
    let mut registered = HashSet::new();
    let mut initialized = HashSet::new();
    let mut pool_status = std::collections::HashMap::new();
    let mut in_flight = 0usize;

    let registry = Arc::new(kestrel_policy::PolicyRegistry::with(
        kestrel_policy::PolicyEngine::shared().clone(),
        settings.policy_limits,
        settings.default_policies,
    ));
    let mut swapper = PolicySwapper::new(
        registry.clone(),
        client.clone(),
        settings.policy_namespace.clone(),
    );
    // The configured policies are installed before the first decision.
    swapper.reconcile(&reflectors.node_pools.state(), &reflectors.configmaps);
    swapper.settle().await;

    let mut settings = settings;
    take_described_types(&mut settings, true);
    let now = clock.now();
    let mut built_from = fingerprint(&reflectors);
    let deleting = crate::deletion::Deleting::default();
    // The highest claim number this process wrote (a rebuilt controller continues past it).
    let mut last_claim = 0u64;
    let mut controller = build(
        &reflectors,
        &settings,
        now,
        deleting.clone(),
        registry.clone(),
        last_claim,
    )?;
    // A starting process resumes from the NodeClaims: launches in flight are re-sent with their
    // claim's name as the client token (the cloud answers with the instance the first call made).
    let snapshot = Snapshot::build(&reflectors, &mut cache, now);
    {
        use kestrel_core::cluster::ClusterState;
        tracing::info!(
            records = snapshot.claim_records().len(),
            nodeclaims = snapshot.node_claims.len(),
            "resuming from the NodeClaims"
        );
    }
    controller.recover(now, &snapshot);
    // Only the leader consumes the interruption queue: started now, stopped with the loop.
    let mut notices = settings
        .notice_queue
        .clone()
        .map(|q| crate::interruptions::Consumer::start(q, metrics.clone(), health.clone()));
    let mut generation = 0u64;
    let mut wake_at: Option<Millis> = None;
    let mut woke_at: Option<Millis> = None;

    loop {
        health.beat();
        if !fence.holds() {
            metrics.set_leader(false);
            tracing::error!("the leader lease was lost; stopping before any further write");
            return Err(RunError::LostLeadership);
        }
        // A tick woken by a watch event decides as of the event's arrival (the coalescing pause
        // after it is not time the pods waited unseen: the batch window counts from the event).
        let now = woke_at.take().unwrap_or_else(|| clock.now());
        // Policy changes are compiled off this thread; the controller's handles follow the swaps.
        swapper.reconcile(&reflectors.node_pools.state(), &reflectors.configmaps);
        let fp = fingerprint(&reflectors);
        let types_changed = take_described_types(&mut settings, false);
        if fp != built_from || types_changed {
            // NodePools changed: a new controller over the new pools resumes from the records;
            // answers to the old one's commands are dropped (their effects show in the records).
            match build(
                &reflectors,
                &settings,
                now,
                deleting.clone(),
                registry.clone(),
                last_claim,
            ) {
                Ok(c) => {
                    // Notices the old controller has not handled go to the new one (their messages
                    // are still waiting in the inbox); acknowledgements it made are delivered.
                    if let Some(consumer) = &mut notices {
                        consumer.acknowledge(now, &mut controller);
                    }
                    let unhandled = controller.take_notices();
                    controller = c;
                    generation += 1;
                    stats.rebuilds += 1;
                    registered.clear();
                    initialized.clear();
                    let snapshot = Snapshot::build(&reflectors, &mut cache, now);
                    controller.recover(now, &snapshot);
                    for notice in unhandled {
                        controller.notify(notice);
                    }
                    tracing::info!(
                        types_changed,
                        "NodePools or instance types changed; controller rebuilt"
                    );
                }
                Err(err) => {
                    tracing::error!(%err, "NodePools changed but the controller cannot be built; the old one keeps running")
                }
            }
            built_from = fp;
        }
        // A decision pass is timed without the writes around it: the snapshot and the tick.
        let started = std::time::Instant::now();
        let snapshot = Snapshot::build(&reflectors, &mut cache, now);
        let mut decision_time = started.elapsed();
        *deleting.lock().unwrap_or_else(|p| p.into_inner()) = snapshot.deleting_nodes();
        registration::register_new(&client, &controller, &snapshot, &mut registered).await;
        registration::initialize_ready(&client, &snapshot, &registered, &mut initialized).await;
        let class_names: Vec<String> = reflectors
            .node_classes
            .state()
            .iter()
            .map(|c| c.name_any())
            .collect();
        crate::status::write_changed(&client, &snapshot, &class_names, &mut pool_status).await;
        let started = std::time::Instant::now();
        let tick = controller.tick(now, &snapshot);
        decision_time += started.elapsed();
        if let Some(consumer) = &mut notices {
            consumer.acknowledge(now, &mut controller);
        }
        stats.ticks += 1;
        stats.max_tick_us = stats.max_tick_us.max(decision_time.as_micros());
        metrics.observe_tick(decision_time, snapshot.pending_count());
        metrics.publish_stats(&controller.stats);
        for command in tick.commands {
            log_command(&command);
            if let Command::WriteClaim(r) = &command {
                last_claim = last_claim.max(claim_number(&r.name).unwrap_or(0));
            }
            stats.commands += 1;
            in_flight += 1;
            let executor = executor.clone();
            let tx = tx.clone();
            let g = generation;
            let fence = fence.clone();
            tokio::spawn(async move {
                // Fenced before every write: a replica whose lease ran out does nothing.
                let outcome = if fence.holds() {
                    executor.execute(&command).await
                } else {
                    not_executed(&command)
                };
                let completion = Completion {
                    command,
                    issued_at: now,
                    outcome,
                };
                // The loop may have ended (shutdown): the answer is then abandoned, and the
                // restarted process resumes from the records.
                if tx.send((g, completion)).is_err() {
                    tracing::debug!("completion after shutdown dropped");
                }
            });
        }
        wake_at = tick.wake.or(wake_at.filter(|w| *w > now));
        // Until the wake-up from now, not from the tick's start: the tick and its writes took time.
        let mut sleep_for = wake_at
            .map(|w| Duration::from_millis((w - clock.now()).max(0) as u64))
            .unwrap_or(Duration::from_secs(60));
        if notices.is_some() {
            // The queue's health (readiness) is looked at on every turn: at least every 5 s.
            sleep_for = sleep_for.min(Duration::from_secs(5));
        }
        tokio::select! {
            got = rx.recv() => {
                let snapshot = Snapshot::build(&reflectors, &mut cache, clock.now());
                let mut next = got;
                while let Some((g, completion)) = next {
                    in_flight -= 1;
                    metrics.observe_completion(&completion);
                    if g == generation {
                        controller.complete(clock.now(), &snapshot, completion);
                    }
                    next = rx.try_recv().ok();
                }
            }
            message = next_message(&mut notices) => {
                if let Some(consumer) = &mut notices {
                    let handed = consumer.receive(message, clock.now(), &mut controller);
                    notice_events(&client, &reflectors, handed);
                }
            }
            _ = reflectors.wake.notified() => {
                woke_at = Some(clock.now());
                tokio::time::sleep(settings.min_tick_interval).await;
            }
            _ = tokio::time::sleep(sleep_for) => {}
            _ = &mut shutdown => break,
        }
    }
    // Graceful shutdown: let the commands in flight finish (their answers are applied, so records
    // are written); what does not finish in time is abandoned safely: every command is idempotent
    // and the next process resumes from the NodeClaims.
    tracing::info!(in_flight, "shutting down");
    let deadline = tokio::time::Instant::now() + settings.shutdown_grace;
    while in_flight > 0 {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((g, completion))) => {
                in_flight -= 1;
                if g == generation {
                    let snapshot = Snapshot::build(&reflectors, &mut cache, clock.now());
                    controller.complete(clock.now(), &snapshot, completion);
                }
            }
            _ => break,
        }
    }
    if let Some(campaign) = campaign {
        campaign.finish().await;
    }
    metrics.set_leader(false);
    Ok(stats)
}

/// An Event on the Node of each notice's instance (for `kubectl describe node`), written beside the
/// loop; an instance without a Node (not Kestrel's, or not registered) gets none.
fn notice_events(
    client: &kube::Client,
    reflectors: &Reflectors,
    notices: Vec<kestrel_core::interruption::Notice>,
) {
    if notices.is_empty() {
        return;
    }
    let nodes = reflectors.nodes.state();
    for notice in notices {
        let suffix = format!("/{}", notice.instance_id);
        let Some(node) = nodes.iter().find(|n| {
            n.spec
                .as_ref()
                .and_then(|s| s.provider_id.as_deref())
                .is_some_and(|p| p.ends_with(&suffix))
        }) else {
            continue;
        };
        let (reason, message) = crate::interruptions::event_of(&notice.kind);
        let object = crate::executor::reference::<k8s_openapi::api::core::v1::Node>(
            &node.name_any(),
            node.metadata.uid.clone(),
        );
        let client = client.clone();
        tokio::spawn(async move {
            if let Err(err) =
                crate::executor::emit(&client, object, "Warning", reason, &message).await
            {
                tracing::warn!(%err, reason, "interruption Event not recorded");
            }
        });
    }
}

/// The next interruption message, when a queue is consumed (else never).
async fn next_message(
    consumer: &mut Option<crate::interruptions::Consumer>,
) -> crate::interruptions::QueuedMessage {
    match consumer {
        Some(c) => c.next().await,
        None => std::future::pending().await,
    }
}

/// A campaign for the lease running beside the loop; stopped (and the lease released) with the loop.
struct Campaign {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Campaign {
    /// Stops campaigning and waits (briefly) for the lease's release, so the standby takes over at
    /// its next look rather than after the lease expires.
    async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            // The campaign may have ended already; then there is nothing to stop.
            stop.send(()).ok();
        }
        if let Some(task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(3), task)
                .await
                .is_err()
        {
            tracing::warn!("the lease was not released in 3 s; the standby waits for it to expire");
        }
    }
}

impl Drop for Campaign {
    fn drop(&mut self) {
        // An early return (the lease lost, an error): stop campaigning; the release runs on.
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
    }
}

/// The answer to a command this replica did not carry out because its lease had run out: each says
/// "nothing happened, try later", which every command's completion handling already treats safely.
fn not_executed(command: &Command) -> Outcome {
    let cloud = || kestrel_core::cloud::CloudError::Throttled("not the leader".into());
    match command {
        Command::Launch(_) => Outcome::Launched(Err(cloud())),
        Command::Terminate { .. } => Outcome::Cloud(Err(cloud())),
        Command::ListInstances => Outcome::Listed(Err(cloud())),
        Command::ReadSpotPrices { .. } => Outcome::SpotPrices(Err(cloud())),
        _ => Outcome::Cluster(Err(kestrel_core::cluster::ClusterError::Unavailable(
            "not the leader".into(),
        ))),
    }
}

fn log_command(command: &Command) {
    match command {
        Command::WriteClaim(r) => tracing::debug!(claim = %r.name, "write claim"),
        Command::Launch(r) => {
            tracing::info!(claim = %r.claim, offerings = r.offerings.len(), "launch")
        }
        Command::Terminate { instance_id } => tracing::info!(%instance_id, "terminate"),
        Command::Evict { pod, node, .. } => tracing::info!(%pod, %node, "evict"),
        Command::DeleteClaim { name } => tracing::info!(claim = %name, "delete claim"),
        other => tracing::debug!(?other, "command"),
    }
}
