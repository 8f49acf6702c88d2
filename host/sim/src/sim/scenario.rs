//! The scenario format: what a simulation replays (documented in `docs/simulator.md`).
//!
//! NodePools and EC2NodeClasses are Karpenter v1 manifests, verbatim; workloads carry Kubernetes pod
//! templates. Parse errors carry the file, line and column from the YAML parser; semantic errors (a
//! bad duration, a NodePool naming a missing EC2NodeClass, ...) carry the line of the offending field.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::Deserialize;

use crate::api::{EC2NodeClass, NodePool};
use crate::clock::Millis;

/// The built-in scenario `kestrel simulate` runs without an argument.
pub const DEFAULT_SCENARIO: &str =
    include_str!("../../../../examples/scenarios/burst-scale-down.yaml");
pub const DEFAULT_SCENARIO_NAME: &str = "examples/scenarios/burst-scale-down.yaml (built in)";

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Seeds every random choice (launch latency, spot prices, which instances a storm hits).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// How long to replay (Go duration).
    pub duration: String,
    /// The virtual clock's start (RFC 3339); default 2026-01-05T00:00:00Z (a Monday).
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default = "default_zones")]
    pub zones: Vec<String>,
    #[serde(default)]
    pub cloud: CloudSpec,
    #[serde(default)]
    pub controller: ControllerSpec,
    pub node_pools: Vec<NodePool>,
    #[serde(default)]
    pub node_classes: Vec<EC2NodeClass>,
    pub workloads: Vec<Workload>,
    #[serde(default)]
    pub events: Vec<Event>,
}

fn default_seed() -> u64 {
    1
}

fn default_zones() -> Vec<String> {
    vec![
        "us-east-1a".into(),
        "us-east-1b".into(),
        "us-east-1c".into(),
    ]
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudSpec {
    /// Launch-to-ready latency, uniform in [min, max]; default 45s..60s.
    #[serde(default)]
    pub launch_latency: Option<Range<String>>,
    /// Spot price as a fraction of on-demand, drawn per (family, zone); default 0.30..0.45.
    #[serde(default)]
    pub spot_price_ratio: Option<Range<f64>>,
    /// Explicit spot prices: instance type -> zone -> USD/hour.
    #[serde(default)]
    pub spot_prices: BTreeMap<String, BTreeMap<String, f64>>,
    /// Only these instance types (names or families) exist; default every priced type.
    #[serde(default)]
    pub instance_types: Vec<String>,
    /// The deferred mode: API latencies and faults (`sim::deferred`); default inline, no faults.
    #[serde(default)]
    pub api: Option<super::deferred::ApiSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range<T> {
    pub min: T,
    pub max: T,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControllerSpec {
    #[serde(default)]
    pub batch_idle: Option<String>,
    #[serde(default)]
    pub batch_max: Option<String>,
    /// How often the chart samples the cluster; default: duration / 720, at least 10s.
    #[serde(default)]
    pub sample_every: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum WorkloadKind {
    Deployment,
    Job,
    DaemonSet,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    pub kind: WorkloadKind,
    /// Deployment: replicas at the start.
    #[serde(default)]
    pub replicas: Option<u32>,
    /// Deployment: replica changes over time.
    #[serde(default)]
    pub scale: Vec<ScaleStep>,
    /// Deployment: replicas follow a daily sine between min and max, peaking at `peakAt`.
    #[serde(default)]
    pub diurnal: Option<Diurnal>,
    /// Job: when it is created (default at the start).
    #[serde(default)]
    pub at: Option<String>,
    /// Job: pods to run to completion in total.
    #[serde(default)]
    pub completions: Option<u32>,
    /// Job: pods running at once (default = completions).
    #[serde(default)]
    pub parallelism: Option<u32>,
    /// Job: how long each pod runs once bound, uniform in [min, max] (or `runFor: 10m`).
    #[serde(default)]
    pub run_for: Option<RunFor>,
    /// A PodDisruptionBudget selecting this workload's pods.
    #[serde(default)]
    pub pod_disruption_budget: Option<PdbSpec>,
    pub template: PodTemplateSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RunFor {
    Fixed(String),
    Range(Range<String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleStep {
    pub at: String,
    pub replicas: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Diurnal {
    pub min: u32,
    pub max: u32,
    /// Time of day (offset from the scenario start's midnight) of the peak, e.g. `14h`.
    pub peak_at: String,
    /// How often replicas are adjusted (default 10m).
    #[serde(default)]
    pub every: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PdbSpec {
    #[serde(default)]
    pub min_available: Option<i64>,
    #[serde(default)]
    pub max_unavailable: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Event {
    pub at: String,
    #[serde(default)]
    pub spot_interruption: Option<InterruptionStorm>,
    #[serde(default)]
    pub capacity_outage: Option<Outage>,
    #[serde(default)]
    pub ami_release: Option<AmiRelease>,
    /// The controller restarts (`controllerRestart: {}`), see `sim::deferred::ControllerRestart`.
    #[serde(default)]
    pub controller_restart: Option<super::deferred::ControllerRestart>,
}

/// A new image is released for an EC2NodeClass: from the event's `at` on, the class's
/// `amiSelectorTerms` resolve to `alias`, so nodes launched from the older image drift.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AmiRelease {
    /// The EC2NodeClass (by name) whose image changes.
    pub node_class: String,
    /// The AMI alias the class resolves to from then on, e.g. `al2023@v20260115`.
    pub alias: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InterruptionStorm {
    /// How many spot instances to reclaim (or `fraction` of them).
    #[serde(default)]
    pub count: Option<u32>,
    #[serde(default)]
    pub fraction: Option<f64>,
    #[serde(default)]
    pub zones: Vec<String>,
    #[serde(default)]
    pub instance_types: Vec<String>,
    /// Send a rebalance recommendation this long before the 2-minute warning.
    #[serde(default)]
    pub rebalance_lead: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Outage {
    pub duration: String,
    #[serde(default)]
    pub instance_types: Vec<String>,
    #[serde(default)]
    pub zones: Vec<String>,
    /// `spot` or `on-demand`; both if unset.
    #[serde(default)]
    pub capacity_type: Option<String>,
}

/// What a scenario may ask for: every input is bounded before the replay starts, so a careless or
/// hostile scenario gets an error naming the field and the limit, never a hang or all the memory.
/// `kestrel simulate --max-pods` and `--max-bytes` raise the two a real scenario may outgrow; the table
/// is in `docs/simulator.md`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Bytes read from the scenario file.
    pub max_bytes: u64,
    /// `duration`, and every other duration in the scenario.
    pub max_duration_ms: Millis,
    /// Timeline samples (`duration / sampleEvery`).
    pub max_samples: u64,
    /// The smallest `sampleEvery` and diurnal `every`.
    pub min_step_ms: Millis,
    /// Pods the workloads may ask for at once: every Deployment's highest replica count plus every
    /// Job's parallelism.
    pub max_pods: u64,
    /// Job pods over the whole replay (the sum of `completions`).
    pub max_job_pods: u64,
    /// Replica changes over the whole replay (`scale` steps plus diurnal adjustments).
    pub max_replica_changes: u64,
    pub max_zones: usize,
    pub max_node_pools: usize,
    pub max_node_classes: usize,
    pub max_workloads: usize,
    pub max_events: usize,
    /// The dearest explicit spot price, USD per hour.
    pub max_spot_price: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 16 * 1024 * 1024,
            max_duration_ms: 366 * 86_400_000,
            max_samples: 100_000,
            min_step_ms: 1_000,
            max_pods: 100_000,
            max_job_pods: 1_000_000,
            max_replica_changes: 1_000_000,
            max_zones: 32,
            max_node_pools: 100,
            max_node_classes: 100,
            max_workloads: 10_000,
            max_events: 10_000,
            max_spot_price: 1_000.0,
        }
    }
}

/// A scenario that could not be read, with where.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error(
        "{file}: larger than the limit of {limit} bytes for a scenario (kestrel simulate --max-bytes raises it)"
    )]
    TooLarge { file: String, limit: u64 },
    #[error("{file}: not UTF-8 text (byte {valid_up_to})")]
    NotUtf8 { file: String, valid_up_to: usize },
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}:{line}: {field}: {message}")]
    Invalid {
        file: String,
        line: usize,
        field: String,
        message: String,
    },
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        Scenario::load_with(path, &Limits::default())
    }

    /// Reads (at most `limits.max_bytes`), parses and checks a scenario file.
    pub fn load_with(path: &Path, limits: &Limits) -> Result<Scenario, ScenarioError> {
        use crate::api::manifest::{ReadError, read_bounded_text};
        let file = path.display().to_string();
        let text = read_bounded_text(path, limits.max_bytes).map_err(|e| match e {
            ReadError::Io(source) => ScenarioError::Io {
                file: file.clone(),
                source,
            },
            ReadError::TooLarge { limit } => ScenarioError::TooLarge {
                file: file.clone(),
                limit,
            },
            ReadError::NotUtf8 { valid_up_to } => ScenarioError::NotUtf8 {
                file: file.clone(),
                valid_up_to,
            },
        })?;
        Scenario::parse_with(&text, &file, limits)
    }

    /// Parses and checks a scenario; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse_with(text, file, &Limits::default())
    }

    /// Parses and checks a scenario within `limits`; `file` names it in errors.
    pub fn parse_with(text: &str, file: &str, limits: &Limits) -> Result<Scenario, ScenarioError> {
        let syntax = |e: serde_yaml_ng::Error| {
            let (line, column) = e
                .location()
                .map(|l| {
                    match crate::api::manifest::duplicate_key_line(
                        text,
                        l.line(),
                        l.column(),
                        &e.to_string(),
                    ) {
                        Some(dup) => (dup, l.column()),
                        None => (l.line(), l.column()),
                    }
                })
                .unwrap_or((0, 0));
            // The parser's message repeats the location at its end; the prefix already says it.
            let mut message = e.to_string();
            if e.location().is_some()
                && let Some(i) = message.rfind(" at line ")
            {
                message.truncate(i);
            }
            ScenarioError::Syntax {
                file: file.to_string(),
                line,
                column,
                message,
            }
        };
        if text.len() as u64 > limits.max_bytes {
            return Err(ScenarioError::TooLarge {
                file: file.to_string(),
                limit: limits.max_bytes,
            });
        }
        // Duplicate mapping keys are an error (as for the API server and kubectl): a YAML value refuses
        // them with their line, where the typed parse would keep the last one silently.
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text).map_err(syntax)?;
        let mut scenario: Scenario = serde_yaml_ng::from_str(text).map_err(syntax)?;
        scenario.check(text, file, limits)?;
        scenario.hand_ami_releases_to_node_classes();
        Ok(scenario)
    }

    fn check(&self, text: &str, file: &str, limits: &Limits) -> Result<(), ScenarioError> {
        let invalid = |path: &[Seg<'_>], message: String| ScenarioError::Invalid {
            file: file.to_string(),
            line: locate(text, path),
            field: render(path),
            message,
        };
        let max_ms = limits.max_duration_ms;
        // Every duration: Go syntax, and at most the duration limit (so sums of times never overflow).
        let dur = |path: &[Seg<'_>], value: &str| {
            let ms = parse_ms(value).map_err(|m| invalid(path, m))?;
            if ms > max_ms {
                return Err(invalid(
                    path,
                    format!(
                        "{value:?} is longer than the limit of {}h",
                        max_ms / 3_600_000
                    ),
                ));
            }
            Ok(ms)
        };
        let count = |path: &[Seg<'_>], what: &str, n: usize, max: usize| {
            if n > max {
                Err(invalid(
                    path,
                    format!("{n} {what}, over the limit of {max}"),
                ))
            } else {
                Ok(())
            }
        };
        let duration = dur(&[Seg::Key("duration")], &self.duration)?;
        if duration <= 0 {
            return Err(invalid(&[Seg::Key("duration")], "must be positive".into()));
        }
        if let Some(start) = &self.start {
            let t = chrono::DateTime::parse_from_rfc3339(start)
                .map_err(|e| invalid(&[Seg::Key("start")], format!("not RFC 3339: {e}")))?;
            // Keeps start + duration far from the ends of the millisecond clock.
            if !(0..=253_402_300_799_000).contains(&t.timestamp_millis()) {
                return Err(invalid(
                    &[Seg::Key("start")],
                    "must be between 1970 and 9999".into(),
                ));
            }
        }
        if self.zones.is_empty() {
            return Err(invalid(&[Seg::Key("zones")], "at least one zone".into()));
        }
        count(
            &[Seg::Key("zones")],
            "zones",
            self.zones.len(),
            limits.max_zones,
        )?;
        for (i, z) in self.zones.iter().enumerate() {
            let path = [Seg::Key("zones"), Seg::Index(i)];
            if z.is_empty() {
                return Err(invalid(&path, "a zone name must not be empty".into()));
            }
            if let Err(reason) = crate::api::labels::check_value(z) {
                return Err(invalid(
                    &path,
                    format!("zone names are topology.kubernetes.io/zone values: {reason}"),
                ));
            }
            if self.zones[..i].contains(z) {
                return Err(invalid(&path, format!("duplicate zone {z}")));
            }
        }
        if let Some(l) = &self.cloud.launch_latency {
            let path = [Seg::Key("cloud"), Seg::Key("launchLatency")];
            if dur(&path, &l.min)? > dur(&path, &l.max)? {
                return Err(invalid(&path, "min is above max".into()));
            }
        }
        if let Some(api) = &self.cloud.api
            && let Err(e) = api.resolve(0)
        {
            return Err(invalid(
                &[Seg::Key("cloud"), Seg::Key("api"), Seg::Key(&e.field)],
                e.message,
            ));
        }
        if let Some(r) = &self.cloud.spot_price_ratio
            && !(0.0 < r.min && r.min <= r.max && r.max <= 1.5)
        {
            return Err(invalid(
                &[Seg::Key("cloud"), Seg::Key("spotPriceRatio")],
                "need 0 < min <= max <= 1.5".into(),
            ));
        }
        for (name, zones) in &self.cloud.spot_prices {
            for (zone, price) in zones {
                if !(price.is_finite() && *price > 0.0 && *price <= limits.max_spot_price) {
                    return Err(invalid(
                        &[
                            Seg::Key("cloud"),
                            Seg::Key("spotPrices"),
                            Seg::Key(name),
                            Seg::Key(zone),
                        ],
                        format!(
                            "a spot price must be a number above 0 and at most {} USD/hour, got {price:?}",
                            limits.max_spot_price
                        ),
                    ));
                }
            }
        }
        for (k, v) in [
            ("batchIdle", &self.controller.batch_idle),
            ("batchMax", &self.controller.batch_max),
        ] {
            if let Some(v) = v {
                dur(&[Seg::Key("controller"), Seg::Key(k)], v)?;
            }
        }
        if let Some(v) = &self.controller.sample_every {
            let path = [Seg::Key("controller"), Seg::Key("sampleEvery")];
            let every = dur(&path, v)?;
            if every < limits.min_step_ms {
                return Err(invalid(
                    &path,
                    format!("{v:?} is below the limit of {}s", limits.min_step_ms / 1000),
                ));
            }
            let samples = duration as u64 / every as u64 + 1;
            if samples > limits.max_samples {
                return Err(invalid(
                    &path,
                    format!(
                        "{v:?} over {} gives {samples} samples, over the limit of {}",
                        self.duration, limits.max_samples
                    ),
                ));
            }
        }
        if self.node_pools.is_empty() {
            return Err(invalid(
                &[Seg::Key("nodePools")],
                "at least one NodePool".into(),
            ));
        }
        count(
            &[Seg::Key("nodePools")],
            "NodePools",
            self.node_pools.len(),
            limits.max_node_pools,
        )?;
        count(
            &[Seg::Key("nodeClasses")],
            "EC2NodeClasses",
            self.node_classes.len(),
            limits.max_node_classes,
        )?;
        count(
            &[Seg::Key("workloads")],
            "workloads",
            self.workloads.len(),
            limits.max_workloads,
        )?;
        count(
            &[Seg::Key("events")],
            "events",
            self.events.len(),
            limits.max_events,
        )?;
        // The manifests go through the same checks as `kestrel validate` (metadata as the API server
        // checks it, then Karpenter's schema and CEL rules).
        let manifest_error = |prefix: &[Seg<'static>], e: &crate::api::validate::FieldError| {
            let mut path = prefix.to_vec();
            path.extend(field_segments(&e.path));
            invalid(&path, e.reason.clone())
        };
        let mut classes: Vec<&str> = Vec::new();
        for (i, class) in self.node_classes.iter().enumerate() {
            let at = [Seg::Key("nodeClasses"), Seg::Index(i)];
            if let Err(errors) = class.validate() {
                return Err(manifest_error(&at, &errors.0[0]));
            }
            // The virtual cloud has no capacity reservations: selecting some would be ignored and
            // the replay would launch on-demand where production uses the reservation.
            if !class.spec.capacity_reservation_selector_terms.is_empty() {
                return Err(invalid(
                    &[
                        Seg::Key("nodeClasses"),
                        Seg::Index(i),
                        Seg::Key("spec"),
                        Seg::Key("capacityReservationSelectorTerms"),
                    ],
                    "the simulator has no capacity reservations to model (reserved capacity is \
                     not simulated); remove the terms to simulate on-demand and spot"
                        .to_string(),
                ));
            }
            let name = class.metadata.name.as_deref().unwrap_or_default();
            if classes.contains(&name) {
                return Err(invalid(
                    &[Seg::Key("nodeClasses"), Seg::Index(i), Seg::Key("metadata")],
                    format!("duplicate EC2NodeClass {name}"),
                ));
            }
            classes.push(name);
        }
        let mut pool_names = Vec::new();
        for (i, pool) in self.node_pools.iter().enumerate() {
            let at = |rest: &[Seg<'static>]| {
                let mut p = vec![Seg::Key("nodePools"), Seg::Index(i)];
                p.extend_from_slice(rest);
                p
            };
            if let Err(errors) = pool.validate() {
                return Err(manifest_error(&at(&[]), &errors.0[0]));
            }
            let name = pool.metadata.name.as_deref().unwrap_or_default();
            if pool_names.contains(&name) {
                return Err(invalid(
                    &at(&[Seg::Key("metadata")]),
                    format!("duplicate NodePool {name}"),
                ));
            }
            pool_names.push(name);
            let class = &pool.spec.template.spec.node_class_ref.name;
            if !self.node_classes.is_empty() && !classes.contains(&class.as_str()) {
                return Err(invalid(
                    &at(&[
                        Seg::Key("spec"),
                        Seg::Key("template"),
                        Seg::Key("spec"),
                        Seg::Key("nodeClassRef"),
                    ]),
                    format!("EC2NodeClass {class} is not defined in nodeClasses"),
                ));
            }
            for (j, r) in pool.spec.template.spec.requirements.iter().enumerate() {
                if r.operator == crate::api::common::Operator::NotIn && r.values.is_empty() {
                    return Err(invalid(
                        &at(&[
                            Seg::Key("spec"),
                            Seg::Key("template"),
                            Seg::Key("spec"),
                            Seg::Key("requirements"),
                            Seg::Index(j),
                        ]),
                        format!("operator {} needs values", r.operator),
                    ));
                }
            }
            if let Err(e) = crate::controller::convert::node_pool(pool) {
                let mut path = at(&[]);
                path.extend(field_segments(&e.field));
                return Err(invalid(&path, e.reason.clone()));
            }
        }
        let mut names = Vec::new();
        // Pods at once (each Deployment's highest replica count, each Job's parallelism), Job pods and
        // replica changes over the replay: summed as the workloads are read, refused past the limit.
        let mut pods_at_once = 0u64;
        let mut job_pods = 0u64;
        let mut replica_changes = 0u64;
        let over_pods = |path: &[Seg<'_>], total: u64| {
            invalid(
                path,
                format!(
                    "the workloads ask for {total} pods at once, over the limit of {} (kestrel simulate --max-pods raises it)",
                    limits.max_pods
                ),
            )
        };
        for (i, w) in self.workloads.iter().enumerate() {
            let at = |key: &'static str| [Seg::Key("workloads"), Seg::Index(i), Seg::Key(key)];
            if names.contains(&w.name.as_str()) {
                return Err(invalid(
                    &at("name"),
                    format!("duplicate workload {}", w.name),
                ));
            }
            if w.name.is_empty() {
                return Err(invalid(&at("name"), "must not be empty".into()));
            }
            if let Err(reason) = crate::api::labels::check_value(&w.name) {
                return Err(invalid(
                    &at("name"),
                    format!("a workload's name is its pods' app label: {reason}"),
                ));
            }
            names.push(&w.name);
            let Some(spec) = &w.template.spec else {
                return Err(invalid(&at("template"), "template needs a spec".into()));
            };
            let containers = spec.containers.iter().map(|c| ("containers", c)).chain(
                spec.init_containers
                    .iter()
                    .flatten()
                    .map(|c| ("initContainers", c)),
            );
            let mut index: BTreeMap<&str, usize> = BTreeMap::new();
            for (list, c) in containers {
                let j = *index.entry(list).and_modify(|j| *j += 1).or_insert(0);
                let Some(resources) = &c.resources else {
                    continue;
                };
                for (which, map) in [
                    ("requests", &resources.requests),
                    ("limits", &resources.limits),
                ] {
                    for (name, q) in map.iter().flatten() {
                        let path = [
                            Seg::Key("workloads"),
                            Seg::Index(i),
                            Seg::Key("template"),
                            Seg::Key("spec"),
                            Seg::Key(list),
                            Seg::Index(j),
                            Seg::Key("resources"),
                            Seg::Key(which),
                            Seg::Key(name),
                        ];
                        match crate::model::quantity::Quantity::parse(&q.0) {
                            Err(e) => {
                                return Err(invalid(&path, format!("{:?}: {}", q.0, e.reason)));
                            }
                            Ok(v) if v < crate::model::quantity::Quantity::ZERO => {
                                return Err(invalid(
                                    &path,
                                    format!("must not be negative, got {:?}", q.0),
                                ));
                            }
                            Ok(_) => {}
                        }
                    }
                }
            }
            if let Err(e) = crate::sim::workload::facts_of(w) {
                return Err(invalid(
                    &at("template"),
                    format!("{}: {}", e.field, e.reason),
                ));
            }
            let add_pods = |total: &mut u64, n: u32, path: &[Seg<'_>]| {
                *total = total.saturating_add(u64::from(n));
                if *total > limits.max_pods {
                    Err(over_pods(path, *total))
                } else {
                    Ok(())
                }
            };
            match w.kind {
                WorkloadKind::Deployment => {
                    if w.replicas.is_none() && w.diurnal.is_none() {
                        return Err(invalid(
                            &at("kind"),
                            "a Deployment needs replicas or diurnal".into(),
                        ));
                    }
                    // The highest replica count this Deployment reaches, and where it is written.
                    let mut peak: (u32, Vec<Seg<'_>>) =
                        (w.replicas.unwrap_or(0), at("replicas").to_vec());
                    for (j, s) in w.scale.iter().enumerate() {
                        let step = |key| {
                            vec![
                                Seg::Key("workloads"),
                                Seg::Index(i),
                                Seg::Key("scale"),
                                Seg::Index(j),
                                Seg::Key(key),
                            ]
                        };
                        dur(&step("at"), &s.at)?;
                        if s.replicas > peak.0 {
                            peak = (s.replicas, step("replicas"));
                        }
                    }
                    replica_changes = replica_changes.saturating_add(w.scale.len() as u64);
                    if let Some(d) = &w.diurnal {
                        if d.min > d.max {
                            return Err(invalid(&at("diurnal"), "min is above max".into()));
                        }
                        dur(&at("diurnal"), &d.peak_at)?;
                        let every = match &d.every {
                            Some(e) => dur(&at("diurnal"), e)?,
                            None => 600_000,
                        };
                        if every < limits.min_step_ms {
                            return Err(invalid(
                                &at("diurnal"),
                                format!(
                                    "every {:?} is below the limit of {}s",
                                    d.every.as_deref().unwrap_or_default(),
                                    limits.min_step_ms / 1000
                                ),
                            ));
                        }
                        replica_changes =
                            replica_changes.saturating_add(duration as u64 / every as u64);
                        if d.max > peak.0 {
                            peak = (d.max, at("diurnal").to_vec());
                        }
                    }
                    add_pods(&mut pods_at_once, peak.0, &peak.1)?;
                    if replica_changes > limits.max_replica_changes {
                        return Err(invalid(
                            &at(if w.diurnal.is_some() {
                                "diurnal"
                            } else {
                                "scale"
                            }),
                            format!(
                                "{replica_changes} replica changes over the replay, over the limit of {}",
                                limits.max_replica_changes
                            ),
                        ));
                    }
                }
                WorkloadKind::Job => {
                    let completions = w.completions.unwrap_or(0);
                    if completions == 0 {
                        return Err(invalid(
                            &at("completions"),
                            "a Job needs completions >= 1".into(),
                        ));
                    }
                    if w.parallelism == Some(0) {
                        return Err(invalid(
                            &at("parallelism"),
                            "a Job needs parallelism >= 1".into(),
                        ));
                    }
                    job_pods = job_pods.saturating_add(u64::from(completions));
                    if job_pods > limits.max_job_pods {
                        return Err(invalid(
                            &at("completions"),
                            format!(
                                "{job_pods} Job pods over the replay, over the limit of {}",
                                limits.max_job_pods
                            ),
                        ));
                    }
                    let parallel = w.parallelism.unwrap_or(completions).min(completions);
                    let path = if w.parallelism.is_some() {
                        at("parallelism")
                    } else {
                        at("completions")
                    };
                    add_pods(&mut pods_at_once, parallel, &path)?;
                    match &w.run_for {
                        None => return Err(invalid(&at("kind"), "a Job needs runFor".into())),
                        Some(RunFor::Fixed(d)) => {
                            dur(&at("runFor"), d)?;
                        }
                        Some(RunFor::Range(r)) => {
                            if dur(&at("runFor"), &r.min)? > dur(&at("runFor"), &r.max)? {
                                return Err(invalid(&at("runFor"), "min is above max".into()));
                            }
                        }
                    }
                    if let Some(a) = &w.at {
                        dur(&at("at"), a)?;
                    }
                }
                WorkloadKind::DaemonSet => {}
            }
            if let Some(p) = &w.pod_disruption_budget {
                if p.min_available.is_some() == p.max_unavailable.is_some() {
                    return Err(invalid(
                        &at("podDisruptionBudget"),
                        "set exactly one of minAvailable, maxUnavailable".into(),
                    ));
                }
                for (key, v) in [
                    ("minAvailable", p.min_available),
                    ("maxUnavailable", p.max_unavailable),
                ] {
                    if let Some(v) = v.filter(|v| !(0..=i64::from(i32::MAX)).contains(v)) {
                        return Err(invalid(
                            &[
                                Seg::Key("workloads"),
                                Seg::Index(i),
                                Seg::Key("podDisruptionBudget"),
                                Seg::Key(key),
                            ],
                            format!("must be between 0 and {}, got {v}", i32::MAX),
                        ));
                    }
                }
            }
        }
        for (i, e) in self.events.iter().enumerate() {
            let at = |key: &'static str| [Seg::Key("events"), Seg::Index(i), Seg::Key(key)];
            dur(&at("at"), &e.at)?;
            let restart = e.controller_restart.is_some();
            match (&e.spot_interruption, &e.capacity_outage, &e.ami_release) {
                (None, None, None) if restart => {}
                _ if restart => {
                    return Err(invalid(
                        &at("controllerRestart"),
                        "an event needs exactly one kind".into(),
                    ));
                }
                (Some(s), None, None) => {
                    if s.count.is_some() == s.fraction.is_some() {
                        return Err(invalid(
                            &at("spotInterruption"),
                            "set exactly one of count, fraction".into(),
                        ));
                    }
                    if let Some(f) = s.fraction
                        && !(0.0..=1.0).contains(&f)
                    {
                        return Err(invalid(
                            &at("spotInterruption"),
                            "fraction must be in [0, 1]".into(),
                        ));
                    }
                    if let Some(l) = &s.rebalance_lead {
                        dur(&at("spotInterruption"), l)?;
                    }
                }
                (None, Some(o), None) => {
                    dur(&at("capacityOutage"), &o.duration)?;
                    if let Some(ct) = &o.capacity_type
                        && crate::cloud::CapacityType::from_label(ct).is_none()
                    {
                        return Err(invalid(
                            &at("capacityOutage"),
                            format!("unknown capacityType {ct:?} (spot, on-demand)"),
                        ));
                    }
                }
                (None, None, Some(r)) => {
                    let path = [
                        Seg::Key("events"),
                        Seg::Index(i),
                        Seg::Key("amiRelease"),
                        Seg::Key("nodeClass"),
                    ];
                    if !self
                        .node_classes
                        .iter()
                        .any(|c| c.metadata.name.as_deref() == Some(r.node_class.as_str()))
                    {
                        return Err(invalid(
                            &path,
                            format!(
                                "EC2NodeClass {} is not defined in nodeClasses",
                                r.node_class
                            ),
                        ));
                    }
                    if r.alias.trim().is_empty() || r.alias.contains([',', '=']) {
                        return Err(invalid(
                            &at("amiRelease"),
                            format!("alias {:?} is not an AMI alias (family@version)", r.alias),
                        ));
                    }
                }
                _ => {
                    return Err(invalid(
                        &at("at"),
                        "an event needs exactly one of spotInterruption, capacityOutage, amiRelease, \
                         controllerRestart"
                            .into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The disruptor reads image releases from its EC2NodeClass manifests (the release annotation,
    /// [`crate::controller::disruption::SIMULATED_AMI_RELEASES`]); `amiRelease` events are appended to it
    /// here, so a class's releases are the annotation's (if any) plus its events.
    fn hand_ami_releases_to_node_classes(&mut self) {
        use crate::controller::disruption::SIMULATED_AMI_RELEASES;
        for e in &self.events {
            let Some(r) = &e.ami_release else { continue };
            let Some(class) = self
                .node_classes
                .iter_mut()
                .find(|c| c.metadata.name.as_deref() == Some(r.node_class.as_str()))
            else {
                continue;
            };
            let releases = class
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .entry(SIMULATED_AMI_RELEASES.to_string())
                .or_default();
            if !releases.is_empty() {
                releases.push(',');
            }
            releases.push_str(&format!("{}={}", e.at.trim(), r.alias.trim()));
        }
    }

    pub fn duration_ms(&self) -> Millis {
        parse_ms(&self.duration).unwrap_or(0)
    }

    pub fn start_ms(&self) -> Millis {
        self.start
            .as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.timestamp_millis())
            .unwrap_or(1_767_571_200_000) // 2026-01-05T00:00:00Z
    }
}

/// A Go duration in milliseconds (saturating at `Millis::MAX`; the checker bounds every duration).
pub fn parse_ms(value: &str) -> Result<Millis, String> {
    crate::api::parse_duration(value)
        .map(|d| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX))
        .map_err(|e| e.to_string())
}

/// The segments of a field path as validation reports it (`spec.limits["nvidia.com/gpu"]`,
/// `spec.template.spec.requirements[2].values`).
fn field_segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("[\"") {
            let end = r.find("\"]").unwrap_or(r.len());
            out.push(Seg::Key(&r[..end]));
            rest = r.get(end + 2..).unwrap_or("");
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            if let Ok(n) = r[..end].parse() {
                out.push(Seg::Index(n));
            }
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            out.push(Seg::Key(&rest[..end]));
            rest = &rest[end..];
        }
    }
    out
}

/// One step of a path into the YAML document.
#[derive(Debug, Clone, Copy)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn render(path: &[Seg<'_>]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The 1-based line where `path` is written: the same locator as `kestrel validate`'s
/// ([`crate::api::manifest::locate_in`]); the deepest segment found wins when the path goes further
/// than the text (flow style, defaults), line 1 when not even the first is there.
pub fn locate(text: &str, path: &[Seg<'_>]) -> usize {
    use crate::api::manifest::{Segment, locate_in};
    let segments: Vec<Segment> = path
        .iter()
        .map(|s| match s {
            Seg::Key(k) => Segment::Key(k.to_string()),
            Seg::Index(i) => Segment::Index(*i),
        })
        .collect();
    locate_in(text, &segments).unwrap_or(1)
}

/// Every example scenario bundled with the binary, by file name.
pub fn load_default() -> Scenario {
    Scenario::parse(DEFAULT_SCENARIO, DEFAULT_SCENARIO_NAME)
        .expect("the built-in scenario is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: x\nworkloads:\n  - name: a\n    kind: Deployment\n  - name: b\n    kind: Job\n    runFor: 5q\nevents:\n  - at: 1m\n";

    /// Moved from `api::migrate` (the scenario format lives here).
    #[test]
    fn a_scenario_gets_its_node_pools_and_classes_converted_and_then_loads() {
        let scenario = "name: old\nduration: 10m\nnodePools:\n  - apiVersion: karpenter.sh/v1beta1\n    kind: NodePool\n    metadata: {name: default}\n    spec:\n      template:\n        spec:\n          nodeClassRef: {name: default}\n          kubelet: {maxPods: 20}\n      disruption: {consolidationPolicy: WhenUnderutilized, expireAfter: 24h}\nnodeClasses:\n  - apiVersion: karpenter.k8s.aws/v1beta1\n    kind: EC2NodeClass\n    metadata: {name: default}\n    spec:\n      amiFamily: AL2023\n      role: R\n      subnetSelectorTerms: [{tags: {a: b}}]\n      securityGroupSelectorTerms: [{tags: {a: b}}]\nworkloads: []\n";
        assert!(Scenario::parse(scenario, "old.yaml").is_err());
        let out = crate::api::migrate::convert_files(&[crate::api::migrate::InputFile {
            name: "old.yaml".into(),
            text: scenario.into(),
        }]);
        assert!(out[0].changed());
        let s = Scenario::parse(&out[0].text, "old.yaml").expect(&out[0].text);
        assert_eq!(
            s.node_pools[0].spec.template.spec.expire_after.as_deref(),
            Some("24h")
        );
        let d: serde_yaml_ng::Value = serde_yaml_ng::from_str(&out[0].text).unwrap();
        assert_eq!(
            d["nodeClasses"][0]["spec"]["kubelet"]["maxPods"],
            serde_yaml_ng::Value::Number(20.into())
        );
        let subjects = &out[0].documents[0].subjects;
        assert_eq!(subjects[0].at, "nodePools[0]");
    }

    #[test]
    fn locates_nested_fields() {
        assert_eq!(
            locate(
                DOC,
                &[Seg::Key("workloads"), Seg::Index(1), Seg::Key("runFor")]
            ),
            7
        );
        assert_eq!(
            locate(
                DOC,
                &[Seg::Key("workloads"), Seg::Index(0), Seg::Key("kind")]
            ),
            4
        );
        assert_eq!(
            locate(DOC, &[Seg::Key("events"), Seg::Index(0), Seg::Key("at")]),
            9
        );
        assert_eq!(
            locate(
                DOC,
                &[Seg::Key("workloads"), Seg::Index(1), Seg::Key("nope")]
            ),
            5
        );
    }

    /// The built-in scenario with one edit; the edit's text must be there.
    fn edited(from: &str, to: &str) -> String {
        assert!(
            DEFAULT_SCENARIO.contains(from),
            "{from:?} not in the default scenario"
        );
        DEFAULT_SCENARIO.replacen(from, to, 1)
    }

    /// Parses `text` expecting a semantic error on `field` whose message contains `reason`.
    fn refused(text: &str, field: &str, reason: &str) {
        match Scenario::parse(text, "s.yaml") {
            Err(ScenarioError::Invalid {
                field: f, message, ..
            }) => {
                assert_eq!(f, field, "{message}");
                assert!(message.contains(reason), "{f}: {message}");
            }
            Err(other) => panic!("{field}: expected a field error, got {other}"),
            Ok(_) => panic!("{field}: accepted"),
        }
    }

    const ZONES: &str = "zones: [us-east-1a, us-east-1b, us-east-1c]";
    const CONSOLIDATE: &str = "        consolidateAfter: 1m\n";
    const CPU: &str = "                cpu: 500m\n";

    #[test]
    fn unbounded_inputs_are_refused_naming_the_field_and_the_limit() {
        let controller =
            |v: &str| edited(ZONES, &format!("{ZONES}\ncontroller: {{sampleEvery: {v}}}"));
        refused(
            &controller("0s"),
            "controller.sampleEvery",
            "below the limit of 1s",
        );
        refused(
            &controller("1ns"),
            "controller.sampleEvery",
            "below the limit of 1s",
        );
        refused(
            &edited(
                "duration: 1h30m",
                "duration: 8760h\ncontroller: {sampleEvery: 1s}",
            ),
            "controller.sampleEvery",
            "over the limit of 100000",
        );
        refused(
            &edited("duration: 1h30m", "duration: 100000h"),
            "duration",
            "longer than the limit of 8784h",
        );
        refused(
            &edited("replicas: 200", "replicas: 1000000000"),
            "workloads[0].scale[0].replicas",
            "over the limit of 100000",
        );
        refused(
            &edited("replicas: 200", "replicas: 4294967295"),
            "workloads[0].scale[0].replicas",
            "--max-pods",
        );
        let diurnal = |spec: &str| {
            edited(
                "    replicas: 10\n    scale:\n      - at: 10m\n        replicas: 200\n      - at: 40m\n        replicas: 20\n",
                &format!("    diurnal: {spec}\n"),
            )
        };
        refused(
            &diurnal("{min: 1, max: 4294967295, peakAt: 1h}"),
            "workloads[0].diurnal",
            "over the limit of 100000",
        );
        refused(
            &diurnal("{min: 1, max: 5, peakAt: 1h, every: 1ms}"),
            "workloads[0].diurnal",
            "below the limit of 1s",
        );
        let zones: Vec<String> = (0..10_000).map(|i| format!("z{i}")).collect();
        refused(
            &edited(ZONES, &format!("zones: [{}]", zones.join(", "))),
            "zones",
            "over the limit of 32",
        );
    }

    #[test]
    fn a_raised_limit_lets_a_bigger_scenario_through() {
        let big = edited("replicas: 200", "replicas: 150000");
        assert!(Scenario::parse(&big, "s.yaml").is_err());
        let limits = Limits {
            max_pods: 200_000,
            ..Limits::default()
        };
        assert!(Scenario::parse_with(&big, "s.yaml", &limits).is_ok());
    }

    #[test]
    fn the_scenario_checks_what_validate_checks() {
        let spec = "    spec:\n      template:\n        spec:";
        let pool = |field: &str| {
            edited(
                spec,
                &format!("    spec:\n      {field}\n      template:\n        spec:"),
            )
        };
        refused(
            &pool("weight: 0"),
            "nodePools[0].spec.weight",
            "between 1 and 100",
        );
        refused(
            &pool("weight: 101"),
            "nodePools[0].spec.weight",
            "between 1 and 100",
        );
        refused(
            &edited("        cpu: \"1000\"", "        cpu: \"-1\""),
            "nodePools[0].spec.limits.cpu",
            "must not be negative",
        );
        refused(
            &edited(
                CONSOLIDATE,
                &format!(
                    "{CONSOLIDATE}        budgets:\n          - nodes: '0'\n            schedule: '61 * * * *'\n            duration: 1h\n"
                ),
            ),
            "nodePools[0].spec.disruption.budgets[0].schedule",
            "cron",
        );
        refused(
            &edited("      role: KarpenterNodeRole-demo\n", ""),
            "nodeClasses[0].spec",
            "exactly one of role and instanceProfile",
        );
        let class_start = DEFAULT_SCENARIO
            .find("  - apiVersion: karpenter.k8s.aws/v1")
            .unwrap();
        let class_end = DEFAULT_SCENARIO.find("nodePools:").unwrap();
        let class = &DEFAULT_SCENARIO[class_start..class_end];
        refused(
            &edited(class, &format!("{class}{class}")),
            "nodeClasses[1].metadata",
            "duplicate EC2NodeClass default",
        );
        refused(
            &edited(
                "      name: default\n    spec:\n      template",
                "      name: My_Pool!/x\n    spec:\n      template",
            ),
            "nodePools[0].metadata.name",
            "DNS-1123",
        );
        refused(
            &edited(CPU, "                cpu: -500m\n"),
            "workloads[0].template.spec.containers[0].resources.requests.cpu",
            "must not be negative",
        );
        for price in [".nan", "-0.1", ".inf", "1e308", "0"] {
            refused(
                &edited(
                    ZONES,
                    &format!(
                        "{ZONES}\ncloud:\n  spotPrices:\n    m6i.large: {{us-east-1a: {price}}}"
                    ),
                ),
                "cloud.spotPrices.m6i.large.us-east-1a",
                "spot price",
            );
        }
        refused(
            &edited("maxUnavailable: 10", "maxUnavailable: -1"),
            "workloads[0].podDisruptionBudget.maxUnavailable",
            "between 0",
        );
        refused(
            &edited(ZONES, "zones: ['', us-east-1a]"),
            "zones[0]",
            "must not be empty",
        );
    }

    #[test]
    fn duplicate_keys_are_refused_with_their_line() {
        let text = edited(CPU, &format!("{CPU}                cpu: 64\n"));
        let line = text.lines().position(|l| l.contains("cpu: 64")).unwrap() + 1;
        match Scenario::parse(&text, "s.yaml") {
            Err(ScenarioError::Syntax {
                line: at, message, ..
            }) => {
                assert!(
                    message.contains("duplicate entry with key \"cpu\""),
                    "{message}"
                );
                assert_eq!(at, line, "{message}");
            }
            other => panic!("expected a syntax error, got {:?}", other.map(|s| s.name)),
        }
    }

    #[test]
    fn an_endless_file_is_refused_after_the_byte_limit() {
        let limits = Limits {
            max_bytes: 4096,
            ..Limits::default()
        };
        let err = Scenario::load_with(Path::new("/dev/zero"), &limits).unwrap_err();
        assert!(
            matches!(err, ScenarioError::TooLarge { limit: 4096, .. }),
            "{err}"
        );
        // The default limit applies to `load` too (the old reader never returned on /dev/zero).
        let err = Scenario::load(Path::new("/dev/zero")).unwrap_err();
        assert!(matches!(err, ScenarioError::TooLarge { .. }), "{err}");
    }

    /// Values a careless or hostile user might put in any field.
    fn hostile_value() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            Just("0".to_string()),
            Just("-1".to_string()),
            Just("4294967295".to_string()),
            Just("18446744073709551616".to_string()),
            Just("1e308".to_string()),
            Just(".nan".to_string()),
            Just("-.inf".to_string()),
            Just("0s".to_string()),
            Just("1ns".to_string()),
            Just("9999999999h".to_string()),
            Just("''".to_string()),
            Just("[]".to_string()),
            Just("{}".to_string()),
            Just("~".to_string()),
            Just("\"-500m\"".to_string()),
            Just("\"1e30\"".to_string()),
            Just("\"* * * * * *\"".to_string()),
            "[a-z0-9@./*-]{0,12}".prop_map(|s| format!("{s:?}")),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|x| format!("{x:?}")),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 256,
            failure_persistence: None,
            ..Default::default()
        })]

        /// Any scalar of any line of the built-in scenario replaced by a hostile value: the checker
        /// answers (ok or an error), never panics, and never accepts what the replay cannot bound.
        #[test]
        fn the_checker_never_panics_on_a_hostile_value(
            line in 0usize..200,
            value in hostile_value(),
        ) {
            let lines: Vec<&str> = DEFAULT_SCENARIO.lines().collect();
            let i = line % lines.len();
            let mut text = String::new();
            for (k, l) in lines.iter().enumerate() {
                match (k == i, l.split_once(": ")) {
                    (true, Some((key, _))) => text.push_str(&format!("{key}: {value}")),
                    _ => text.push_str(l),
                }
                text.push('\n');
            }
            if let Ok(s) = Scenario::parse(&text, "p.yaml") {
                proptest::prop_assert!(s.duration_ms() <= Limits::default().max_duration_ms);
            }
        }

        /// Whatever replica count, sample step and number of zones a scenario asks for, what the
        /// checker accepts is within the limits the replay's memory and time depend on.
        #[test]
        fn what_the_checker_accepts_is_bounded(
            replicas in proptest::prelude::any::<u32>(),
            every_ms in 0u64..5_000,
            duration_h in 1u64..10_000,
            zones in 1usize..80,
        ) {
            let zone_list: Vec<String> = (0..zones).map(|i| format!("z{i}")).collect();
            let text = edited("replicas: 200", &format!("replicas: {replicas}"))
                .replacen("duration: 1h30m", &format!("duration: {duration_h}h"), 1)
                .replacen(
                    ZONES,
                    &format!("zones: [{}]\ncontroller: {{sampleEvery: {every_ms}ms}}", zone_list.join(", ")),
                    1,
                );
            let limits = Limits::default();
            if let Ok(s) = Scenario::parse(&text, "p.yaml") {
                let every = parse_ms(s.controller.sample_every.as_deref().unwrap()).unwrap();
                proptest::prop_assert!(every >= limits.min_step_ms);
                proptest::prop_assert!((s.duration_ms() / every) as u64 <= limits.max_samples);
                proptest::prop_assert!(s.duration_ms() <= limits.max_duration_ms);
                proptest::prop_assert!(u64::from(replicas) <= limits.max_pods);
                proptest::prop_assert!(s.zones.len() <= limits.max_zones);
            }
        }

        /// Arbitrary bytes as a scenario: an error, never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "[ -~\n]{0,400}") {
            let _ = Scenario::parse(&text, "p.yaml");
        }
    }

    #[test]
    fn errors_in_compact_lists_point_at_the_item() {
        // kubectl's layout: list items at the indentation of their key.
        let block: String = DEFAULT_SCENARIO
            .lines()
            .skip_while(|l| !l.contains("requirements:"))
            .take_while(|l| !l.contains("disruption:"))
            .map(|l| format!("{l}\n"))
            .collect();
        let compact = block
            .lines()
            .map(|l| match l.strip_prefix("  ") {
                Some(rest) if !l.contains("requirements:") => format!("{rest}\n"),
                _ => format!("{l}\n"),
            })
            .collect::<String>();
        let mut compact: Vec<String> = compact.lines().map(str::to_string).collect();
        let at = compact
            .iter()
            .position(|l| l.contains("values: [c, m, r]"))
            .unwrap();
        compact[at] = compact[at].replace("[c, m, r]", "[]");
        compact[at - 1] = compact[at - 1].replace("operator: In", "operator: NotIn");
        let compact = compact.join("\n") + "\n";
        let text = edited(&block, &compact);
        let line = text
            .lines()
            .position(|l| l.contains("operator: NotIn"))
            .unwrap();
        match Scenario::parse(&text, "s.yaml") {
            Err(ScenarioError::Invalid {
                line: at, field, ..
            }) => {
                assert_eq!(field, "nodePools[0].spec.template.spec.requirements[1]");
                assert_eq!(at, line, "{field}"); // the item's `- key:` line, just above
            }
            other => panic!("expected a field error, got {:?}", other.map(|s| s.name)),
        }
    }

    const RELEASE: &str = include_str!("../../../../examples/scenarios/drift-ami-change.yaml");

    #[test]
    fn ami_release_events_reach_the_node_class() {
        let s = Scenario::parse(RELEASE, "r.yaml").unwrap_or_else(|e| panic!("{e}"));
        let annotations = s.node_classes[0].metadata.annotations.as_ref().unwrap();
        assert_eq!(
            annotations[crate::controller::disruption::SIMULATED_AMI_RELEASES],
            "20m=al2023@v20260115"
        );
    }

    #[test]
    fn ami_release_of_an_unknown_class_is_an_error_with_its_line() {
        let doc = RELEASE.replace("nodeClass: default", "nodeClass: gpu");
        let line = doc
            .lines()
            .position(|l| l.contains("nodeClass: gpu"))
            .unwrap()
            + 1;
        let text = Scenario::parse(&doc, "r.yaml").unwrap_err().to_string();
        assert!(text.contains(&format!("r.yaml:{line}")), "{text}");
        assert!(text.contains("EC2NodeClass gpu is not defined"), "{text}");
    }
}
