//! The controller's Prometheus metrics (`docs/metrics.md`): Karpenter's names and meanings where they
//! exist, `kestrel_*` for the rest. Fed from what the loop already has — every command's completion,
//! each tick's duration and queue, the controller's counters, the leader fence — so no decision code
//! knows about metrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use kestrel_core::cloud::CloudError;
use kestrel_core::cluster::ClusterError;
use kestrel_core::controller::{Command, Completion, ControllerStats, Outcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    nodepool: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DisruptedLabels {
    nodepool: String,
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    /// The cloud or cluster call (`create`, `terminate`, `list`, `spot_prices`, `evict`, …).
    method: String,
    /// `ok`, or the error's kind (`insufficient_capacity`, `throttled`, `not_found`, `api`, …).
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    /// The notice's kind (`spot_interrupted`, `rebalance_recommendation`, `scheduled_change`,
    /// `state_change`, `capacity_reservation_interrupted`).
    message_type: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CounterLabels {
    /// Which of the controller's own counters (`docs/metrics.md` lists them).
    event: String,
}

/// Every metric the controller exports, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Every family's name, as registered (the documentation test checks them against the docs).
    names: Vec<&'static str>,
    nodeclaims_created: Family<PoolLabels, Counter>,
    nodeclaims_terminated: Family<PoolLabels, Counter>,
    nodeclaims_disrupted: Family<DisruptedLabels, Counter>,
    /// What the controller's disrupted counts were at the last publication.
    published_disrupted: Mutex<BTreeMap<(String, String), u64>>,
    cloud_calls: Family<CallLabels, Counter>,
    cluster_calls: Family<CallLabels, Counter>,
    scheduling_duration: Histogram,
    queue_depth: Gauge,
    controller_events: Family<CounterLabels, Counter>,
    leader: Gauge,
    interruptions_received: Family<MessageLabels, Counter>,
    interruptions_deleted: Counter,
    interruption_queue_duration: Histogram,
    interruptions_waiting: Gauge,
    interruption_queue_available: Gauge,
    /// The pool of each instance launched, so a termination is counted against its NodePool.
    pools_of_instances: Mutex<HashMap<String, String>>,
    /// The controller's counters at the last publication, in [`counters`]' order.
    published: Mutex<Vec<u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut reg = Named::default();
        let nodeclaims_created = Family::<PoolLabels, Counter>::default();
        reg.add(
            "karpenter_nodeclaims_created",
            "Number of nodeclaims created (launched) in total, by the owning nodepool",
            nodeclaims_created.clone(),
        );
        let nodeclaims_disrupted = Family::<DisruptedLabels, Counter>::default();
        reg.add(
            "karpenter_nodeclaims_disrupted",
            "Number of nodeclaims disrupted (their drain begun) in total, by nodepool and reason",
            nodeclaims_disrupted.clone(),
        );
        let nodeclaims_terminated = Family::<PoolLabels, Counter>::default();
        reg.add(
            "karpenter_nodeclaims_terminated",
            "Number of nodeclaims whose instance was terminated in total, by the owning nodepool",
            nodeclaims_terminated.clone(),
        );
        let cloud_calls = Family::<CallLabels, Counter>::default();
        reg.add(
            "kestrel_cloudprovider_calls",
            "Cloud provider calls answered, by method and outcome (ok or the error's kind)",
            cloud_calls.clone(),
        );
        let cluster_calls = Family::<CallLabels, Counter>::default();
        reg.add(
            "kestrel_cluster_calls",
            "Kubernetes API writes answered, by method and outcome",
            cluster_calls.clone(),
        );
        let scheduling_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        reg.add(
            "karpenter_provisioner_scheduling_duration_seconds",
            "Duration of one decision pass (snapshot to commands) in seconds",
            scheduling_duration.clone(),
        );
        let queue_depth = Gauge::default();
        reg.add(
            "karpenter_provisioner_scheduling_queue_depth",
            "Pending pods waiting to be scheduled at the last decision pass",
            queue_depth.clone(),
        );
        let controller_events = Family::<CounterLabels, Counter>::default();
        reg.add(
            "kestrel_controller_events",
            "The controller's own counters (launch failures and retries, interruptions, orphans collected, ...), by event",
            controller_events.clone(),
        );
        let leader = Gauge::default();
        reg.add(
            "kestrel_leader",
            "1 while this replica holds the leader lease and may act, else 0",
            leader.clone(),
        );
        let interruptions_received = Family::<MessageLabels, Counter>::default();
        reg.add(
            "karpenter_interruption_received_messages",
            "Interruption notices received from the queue, by message type",
            interruptions_received.clone(),
        );
        let interruptions_deleted = Counter::default();
        reg.add(
            "karpenter_interruption_deleted_messages",
            "Interruption messages deleted from the queue (handled, or needing nothing)",
            interruptions_deleted.clone(),
        );
        // From 1 ms to about 9 minutes: a notice gives two minutes, SQS keeps a message up to days.
        let interruption_queue_duration = Histogram::new(exponential_buckets(0.001, 2.0, 20));
        reg.add(
            "karpenter_interruption_message_queue_duration_seconds",
            "Time an interruption message waited in the queue before the controller read it (from its SentTimestamp)",
            interruption_queue_duration.clone(),
        );
        let interruptions_waiting = Gauge::default();
        reg.add(
            "kestrel_interruption_messages_waiting",
            "Interruption messages received whose notices the controller has not acknowledged yet",
            interruptions_waiting.clone(),
        );
        let interruption_queue_available = Gauge::default();
        reg.add(
            "kestrel_interruption_queue_available",
            "1 while the leader's interruption queue exists (0: it is missing and looked up again with backoff)",
            interruption_queue_available.clone(),
        );
        Metrics {
            names: reg.names,
            registry: reg.registry,
            nodeclaims_created,
            nodeclaims_terminated,
            nodeclaims_disrupted,
            published_disrupted: Mutex::new(BTreeMap::new()),
            cloud_calls,
            cluster_calls,
            scheduling_duration,
            queue_depth,
            controller_events,
            leader,
            interruptions_received,
            interruptions_deleted,
            interruption_queue_duration,
            interruptions_waiting,
            interruption_queue_available,
            pools_of_instances: Mutex::new(HashMap::new()),
            published: Mutex::new(Vec::new()),
        }
    }

    /// A command's answer.
    pub fn observe_completion(&self, completion: &Completion) {
        let method = method(&completion.command);
        match (&completion.command, &completion.outcome) {
            (Command::Launch(request), Outcome::Launched(result)) => {
                // A launch retried with its claim's token answers with the instance the first
                // call made: one NodeClaim, counted once.
                if let Ok(launched) = result
                    && lock(&self.pools_of_instances)
                        .insert(launched.instance.id.clone(), request.node_pool.clone())
                        .is_none()
                {
                    self.nodeclaims_created
                        .get_or_create(&PoolLabels {
                            nodepool: request.node_pool.clone(),
                        })
                        .inc();
                }
                self.cloud(method, result.as_ref().err());
            }
            (Command::Terminate { instance_id }, Outcome::Cloud(result)) => {
                if result.is_ok() {
                    let pool = lock(&self.pools_of_instances).remove(instance_id);
                    self.nodeclaims_terminated
                        .get_or_create(&PoolLabels {
                            // An instance launched before this process started: its pool is not
                            // known here (the NodeClaim had it), and is counted as such.
                            nodepool: pool.unwrap_or_else(|| "unknown".into()),
                        })
                        .inc();
                }
                self.cloud(method, result.as_ref().err());
            }
            (_, Outcome::Listed(result)) => self.cloud(method, result.as_ref().err()),
            (_, Outcome::SpotPrices(result)) => self.cloud(method, result.as_ref().err()),
            (_, Outcome::Launched(result)) => self.cloud(method, result.as_ref().err()),
            (_, Outcome::Cloud(result)) => self.cloud(method, result.as_ref().err()),
            (_, Outcome::Cluster(result)) => {
                self.cluster_calls
                    .get_or_create(&CallLabels {
                        method: method.into(),
                        outcome: result
                            .as_ref()
                            .err()
                            .map_or("ok", cluster_error_kind)
                            .into(),
                    })
                    .inc();
            }
        }
    }

    /// One decision pass: how long it took and how many pods were waiting.
    pub fn observe_tick(&self, duration: Duration, pending_pods: usize) {
        self.scheduling_duration.observe(duration.as_secs_f64());
        self.queue_depth
            .set(i64::try_from(pending_pods).unwrap_or(i64::MAX));
    }

    /// The controller's cumulative counters: what grew since the last call is added. A controller
    /// rebuilt from scratch starts its counters at zero again, which is not counted as a decrease.
    pub fn publish_stats(&self, stats: &ControllerStats) {
        let mut published = lock(&self.published);
        let now = counters(stats);
        for (i, (event, value)) in now.iter().enumerate() {
            let before = published.get(i).copied().unwrap_or(0);
            if *value > before {
                self.controller_events
                    .get_or_create(&CounterLabels {
                        event: (*event).into(),
                    })
                    .inc_by(value - before);
            }
        }
        *published = now.into_iter().map(|(_, v)| v).collect();
        let mut published = lock(&self.published_disrupted);
        let now: BTreeMap<(String, String), u64> = stats
            .disrupted
            .iter()
            .flat_map(|(pool, reasons)| {
                reasons
                    .iter()
                    .map(move |(r, n)| ((pool.clone(), crate::record::reason_name(*r)), *n))
            })
            .collect();
        for (key, value) in &now {
            let before = published.get(key).copied().unwrap_or(0);
            if *value > before {
                self.nodeclaims_disrupted
                    .get_or_create(&DisruptedLabels {
                        nodepool: key.0.clone(),
                        reason: key.1.clone(),
                    })
                    .inc_by(value - before);
            }
        }
        *published = now;
    }

    /// The name of every metric family exported (without the `_total` of counters).
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// A notice handed to the controller.
    pub fn interruption_received(&self, message_type: &str) {
        self.interruptions_received
            .get_or_create(&MessageLabels {
                message_type: message_type.into(),
            })
            .inc();
    }

    /// How long a message waited in the queue (ms; a clock behind the queue's counts as zero).
    pub fn interruption_queued_for(&self, waited_ms: i64) {
        self.interruption_queue_duration
            .observe(waited_ms.max(0) as f64 / 1000.0);
    }

    pub fn interruption_deleted(&self, messages: usize) {
        self.interruptions_deleted
            .inc_by(u64::try_from(messages).unwrap_or(u64::MAX));
    }

    pub fn set_interruptions_waiting(&self, messages: usize) {
        self.interruptions_waiting
            .set(i64::try_from(messages).unwrap_or(i64::MAX));
    }

    pub fn set_interruption_queue_available(&self, available: bool) {
        self.interruption_queue_available.set(i64::from(available));
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    fn cloud(&self, method: &str, error: Option<&CloudError>) {
        self.cloud_calls
            .get_or_create(&CallLabels {
                method: method.into(),
                outcome: error.map_or("ok", cloud_error_kind).into(),
            })
            .inc();
    }
}

/// A registry that remembers the names it was given.
#[derive(Default)]
struct Named {
    registry: Registry,
    names: Vec<&'static str>,
}

impl Named {
    fn add(
        &mut self,
        name: &'static str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.names.push(name);
        self.registry.register(name, help, metric);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn method(command: &Command) -> &'static str {
    match command {
        Command::WriteClaim(_) => "write_claim",
        Command::DeleteClaim { .. } => "delete_claim",
        Command::Launch(_) => "create",
        Command::Terminate { .. } => "terminate",
        Command::ListInstances => "list",
        Command::ReadSpotPrices { .. } => "spot_prices",
        Command::Nominate { .. } => "nominate",
        Command::Cordon { .. } => "cordon",
        Command::Uncordon { .. } => "uncordon",
        Command::Evict { .. } => "evict",
        Command::DeleteNode { .. } => "delete_node",
    }
}

fn cloud_error_kind(error: &CloudError) -> &'static str {
    match error {
        CloudError::NoCapacity { .. } => "insufficient_capacity",
        CloudError::NoOfferings { .. } => "no_offerings",
        CloudError::NotFound { .. } => "not_found",
        CloudError::Throttled(_) => "throttled",
        CloudError::Api(_) => "api",
    }
}

fn cluster_error_kind(error: &ClusterError) -> &'static str {
    match error {
        ClusterError::PodNotFound(_) => "pod_not_found",
        ClusterError::NodeNotFound(_) => "node_not_found",
        ClusterError::EvictionBlocked { .. } => "eviction_blocked",
        ClusterError::Unavailable(_) => "unavailable",
    }
}

/// The controller's counters by their metric label (always in this order).
fn counters(s: &ControllerStats) -> Vec<(&'static str, u64)> {
    vec![
        ("batch", s.batches),
        ("launch_failure", s.launch_failures),
        ("launch_retry", s.launch_retries),
        (
            "insufficient_capacity_fallthrough",
            s.insufficient_capacity_fallthroughs,
        ),
        ("interruption_handled", s.interruptions_handled),
        ("rebalance_recommendation", s.rebalance_recommendations),
        ("rebalance_replacement", s.rebalance_replacements),
        ("notice_duplicate", s.notices_duplicate),
        ("notice_not_owned", s.notices_not_owned),
        ("policy_fallback", s.policy_fallback_count),
        ("orphan_collected", s.orphans_collected),
        ("eviction_refused", s.evictions_refused),
        ("disruption_aborted", s.disruptions_aborted),
        ("listing_failed", s.listings_failed),
        ("price_read_failed", s.price_reads_failed),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_core::cloud::{CapacityType, Instance, InstanceState, Launched, Offering};

    fn value_of(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn completions_count_launches_terminations_and_errors_by_pool_and_kind() {
        let metrics = Metrics::new();
        let request = kestrel_core::cloud::LaunchRequest {
            claim: "web-00001".into(),
            node_pool: "web".into(),
            offerings: Vec::new().into(),
            template: Default::default(),
        };
        let instance = Instance {
            id: "i-1".into(),
            claim: "web-00001".into(),
            node_pool: "web".into(),
            offering: Offering {
                instance_type: "m5.large".into(),
                zone: "us-east-1a".into(),
                capacity_type: CapacityType::OnDemand,
                price: 0.096,
            },
            launched_at: 0,
            state: InstanceState::Pending,
        };
        let ok = Completion {
            command: Command::Launch(request.clone()),
            issued_at: 0,
            outcome: Outcome::Launched(Ok(Launched {
                instance,
                skipped: Vec::new(),
            })),
        };
        metrics.observe_completion(&ok);
        // The same launch retried with its token: the same instance, not a second NodeClaim.
        metrics.observe_completion(&ok);
        metrics.observe_completion(&Completion {
            command: Command::Launch(request),
            issued_at: 0,
            outcome: Outcome::Launched(Err(CloudError::Throttled("slow down".into()))),
        });
        metrics.observe_completion(&Completion {
            command: Command::Terminate {
                instance_id: "i-1".into(),
            },
            issued_at: 0,
            outcome: Outcome::Cloud(Ok(())),
        });
        let text = metrics.encode().unwrap();
        assert_eq!(
            value_of(
                &text,
                "karpenter_nodeclaims_created_total{nodepool=\"web\"}"
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value_of(
                &text,
                "karpenter_nodeclaims_terminated_total{nodepool=\"web\"}"
            ),
            Some(1.0),
            "a termination is counted against the pool that launched it: {text}"
        );
        assert_eq!(
            value_of(
                &text,
                "kestrel_cloudprovider_calls_total{method=\"create\",outcome=\"throttled\"}"
            ),
            Some(1.0),
            "{text}"
        );
    }

    #[test]
    fn controller_counters_are_published_as_increments_and_a_rebuild_is_not_a_decrease() {
        let metrics = Metrics::new();
        let stats = ControllerStats {
            launch_failures: 3,
            ..ControllerStats::default()
        };
        metrics.publish_stats(&stats);
        metrics.publish_stats(&ControllerStats {
            launch_failures: 5,
            ..ControllerStats::default()
        });
        // The controller was rebuilt: its counters start again at 0, then grow by 2.
        metrics.publish_stats(&ControllerStats::default());
        let disrupted = |n| {
            BTreeMap::from([(
                "web".to_string(),
                BTreeMap::from([(kestrel_core::controller::Reason::Underutilized, n)]),
            )])
        };
        metrics.publish_stats(&ControllerStats {
            launch_failures: 2,
            disrupted: disrupted(1),
            ..ControllerStats::default()
        });
        metrics.publish_stats(&ControllerStats {
            launch_failures: 2,
            disrupted: disrupted(2),
            ..ControllerStats::default()
        });
        metrics.observe_tick(Duration::from_millis(3), 42);
        metrics.set_leader(true);
        let text = metrics.encode().unwrap();
        assert_eq!(
            value_of(
                &text,
                "kestrel_controller_events_total{event=\"launch_failure\"}"
            ),
            Some(7.0),
            "{text}"
        );
        assert_eq!(
            value_of(&text, "karpenter_provisioner_scheduling_queue_depth"),
            Some(42.0)
        );
        assert_eq!(
            value_of(
                &text,
                "karpenter_nodeclaims_disrupted_total{nodepool=\"web\",reason=\"underutilized\"}"
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(value_of(&text, "kestrel_leader"), Some(1.0));
        assert_eq!(
            value_of(
                &text,
                "karpenter_provisioner_scheduling_duration_seconds_count"
            ),
            Some(1.0)
        );
    }
}

#[cfg(test)]
mod documentation {
    use std::collections::BTreeSet;
    use std::path::Path;

    fn repo(path: &str) -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(path),
        )
        .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The metric names of docs/metrics.md's table (first column, without `_total`).
    fn documented() -> BTreeSet<String> {
        repo("docs/metrics.md")
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .filter(|name| name.starts_with("karpenter_") || name.starts_with("kestrel_"))
            .map(|name| name.trim_end_matches("_total").to_string())
            .collect()
    }

    #[test]
    fn every_exported_metric_is_documented_and_the_dashboard_uses_only_documented_ones() {
        let metrics = super::Metrics::new();
        let exported: BTreeSet<String> = metrics.names().iter().map(|n| n.to_string()).collect();
        let documented = documented();
        assert!(!exported.is_empty());
        for name in &exported {
            assert!(
                documented.contains(name),
                "{name} is exported but not in docs/metrics.md"
            );
        }
        let dashboard: serde_json::Value =
            serde_json::from_str(&repo("deploy/grafana/kestrel-dashboard.json")).unwrap();
        let mut used = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                let names: Vec<&str> = expr
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| w.starts_with("karpenter_") || w.starts_with("kestrel_"))
                    .collect();
                assert!(
                    !names.is_empty(),
                    "a panel without a Kestrel metric: {expr}"
                );
                for name in names {
                    let base = name.trim_end_matches("_bucket").trim_end_matches("_total");
                    assert!(
                        exported.contains(base),
                        "the dashboard queries {name}, which is not exported"
                    );
                    used += 1;
                }
            }
        }
        assert!(used >= exported.len(), "the dashboard leaves metrics out");
    }
}
