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

/// A scenario that could not be read, with where.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
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
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            file: file.clone(),
            source,
        })?;
        Scenario::parse(&text, &file)
    }

    /// Parses and checks a scenario; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = serde_yaml_ng::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
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
        })?;
        let mut scenario = scenario;
        scenario.check(text, file)?;
        scenario.hand_ami_releases_to_node_classes();
        Ok(scenario)
    }

    fn check(&self, text: &str, file: &str) -> Result<(), ScenarioError> {
        let invalid = |path: &[Seg<'_>], message: String| ScenarioError::Invalid {
            file: file.to_string(),
            line: locate(text, path),
            field: render(path),
            message,
        };
        let dur = |path: &[Seg<'_>], value: &str| parse_ms(value).map_err(|m| invalid(path, m));
        if dur(&[Seg::Key("duration")], &self.duration)? <= 0 {
            return Err(invalid(&[Seg::Key("duration")], "must be positive".into()));
        }
        if let Some(start) = &self.start {
            chrono::DateTime::parse_from_rfc3339(start)
                .map_err(|e| invalid(&[Seg::Key("start")], format!("not RFC 3339: {e}")))?;
        }
        if self.zones.is_empty() {
            return Err(invalid(&[Seg::Key("zones")], "at least one zone".into()));
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
        for (k, v) in [
            ("batchIdle", &self.controller.batch_idle),
            ("batchMax", &self.controller.batch_max),
            ("sampleEvery", &self.controller.sample_every),
        ] {
            if let Some(v) = v {
                dur(&[Seg::Key("controller"), Seg::Key(k)], v)?;
            }
        }
        if self.node_pools.is_empty() {
            return Err(invalid(
                &[Seg::Key("nodePools")],
                "at least one NodePool".into(),
            ));
        }
        let classes: Vec<&str> = self
            .node_classes
            .iter()
            .filter_map(|c| c.metadata.name.as_deref())
            .collect();
        let mut pool_names = Vec::new();
        for (i, pool) in self.node_pools.iter().enumerate() {
            let at = |rest: &[Seg<'static>]| {
                let mut p = vec![Seg::Key("nodePools"), Seg::Index(i)];
                p.extend_from_slice(rest);
                p
            };
            let Some(name) = pool.metadata.name.as_deref() else {
                return Err(invalid(
                    &at(&[Seg::Key("metadata")]),
                    "NodePool needs metadata.name".into(),
                ));
            };
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
            if let Err(e) = crate::controller::convert::node_pool(pool) {
                // The field path (e.g. `spec.template.spec.requirements[2]`) borrows from the error.
                let mut path = at(&[]);
                for part in e.field.split('.') {
                    let (key, index) = match part.split_once('[') {
                        Some((k, i)) => (k, i.trim_end_matches(']').parse::<usize>().ok()),
                        None => (part, None),
                    };
                    path.push(Seg::Key(key));
                    if let Some(i) = index {
                        path.push(Seg::Index(i));
                    }
                }
                return Err(invalid(&path, e.reason.clone()));
            }
            if let Err(e) = pool.spec.template.spec.expire_after() {
                return Err(invalid(
                    &at(&[
                        Seg::Key("spec"),
                        Seg::Key("template"),
                        Seg::Key("spec"),
                        Seg::Key("expireAfter"),
                    ]),
                    e.to_string(),
                ));
            }
            if let Some(d) = &pool.spec.disruption
                && let Err(e) = d.consolidate_after()
            {
                return Err(invalid(
                    &at(&[
                        Seg::Key("spec"),
                        Seg::Key("disruption"),
                        Seg::Key("consolidateAfter"),
                    ]),
                    e.to_string(),
                ));
            }
            for (j, r) in pool.spec.template.spec.requirements.iter().enumerate() {
                let needs_values = matches!(
                    r.operator,
                    crate::api::common::Operator::In
                        | crate::api::common::Operator::NotIn
                        | crate::api::common::Operator::Gt
                        | crate::api::common::Operator::Lt
                );
                if needs_values && r.values.is_empty() {
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
        }
        let mut names = Vec::new();
        for (i, w) in self.workloads.iter().enumerate() {
            let at = |key: &'static str| [Seg::Key("workloads"), Seg::Index(i), Seg::Key(key)];
            if names.contains(&w.name.as_str()) {
                return Err(invalid(
                    &at("name"),
                    format!("duplicate workload {}", w.name),
                ));
            }
            names.push(&w.name);
            if w.template.spec.is_none() {
                return Err(invalid(&at("template"), "template needs a spec".into()));
            }
            if let Err(e) = crate::sim::workload::facts_of(w) {
                return Err(invalid(
                    &at("template"),
                    format!("{}: {}", e.field, e.reason),
                ));
            }
            match w.kind {
                WorkloadKind::Deployment => {
                    if w.replicas.is_none() && w.diurnal.is_none() {
                        return Err(invalid(
                            &at("kind"),
                            "a Deployment needs replicas or diurnal".into(),
                        ));
                    }
                    for (j, s) in w.scale.iter().enumerate() {
                        dur(
                            &[
                                Seg::Key("workloads"),
                                Seg::Index(i),
                                Seg::Key("scale"),
                                Seg::Index(j),
                                Seg::Key("at"),
                            ],
                            &s.at,
                        )?;
                    }
                    if let Some(d) = &w.diurnal {
                        if d.min > d.max {
                            return Err(invalid(&at("diurnal"), "min is above max".into()));
                        }
                        dur(&at("diurnal"), &d.peak_at)?;
                        if let Some(e) = &d.every {
                            dur(&at("diurnal"), e)?;
                        }
                    }
                }
                WorkloadKind::Job => {
                    if w.completions.unwrap_or(0) == 0 {
                        return Err(invalid(
                            &at("completions"),
                            "a Job needs completions >= 1".into(),
                        ));
                    }
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
            if let Some(p) = &w.pod_disruption_budget
                && p.min_available.is_some() == p.max_unavailable.is_some()
            {
                return Err(invalid(
                    &at("podDisruptionBudget"),
                    "set exactly one of minAvailable, maxUnavailable".into(),
                ));
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

/// A Go duration in milliseconds.
pub fn parse_ms(value: &str) -> Result<Millis, String> {
    crate::api::parse_duration(value)
        .map(|d| d.as_millis() as Millis)
        .map_err(|e| e.to_string())
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

/// The 1-based line where `path` is written, found by walking block-style YAML by indentation; the
/// deepest segment found wins when the path goes further than the text (flow style, defaults).
pub fn locate(text: &str, path: &[Seg<'_>]) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let content = |l: &str| {
        let t = l.trim_start();
        !(t.is_empty() || t.starts_with('#'))
    };
    // (line index of the current node, its indentation; the root has none)
    let mut pos = 0usize;
    let mut parent_indent: Option<usize> = None;
    let mut found = 0usize;
    let mut on_item_line = false;
    for seg in path {
        // The block of the current node runs until a line at or left of the parent's indentation.
        let end = (pos + usize::from(parent_indent.is_some())..lines.len())
            .find(|&i| {
                content(lines[i]) && parent_indent.is_some_and(|p| indent(lines[i]) <= p) && i > pos
            })
            .unwrap_or(lines.len());
        let start = match (parent_indent, on_item_line) {
            (None, _) => 0,
            (Some(_), true) => pos,
            (Some(_), false) => pos + 1,
        };
        let hit = match seg {
            Seg::Key(k) => (start..end).find(|&i| {
                let t = lines[i].trim_start().trim_start_matches("- ");
                t.starts_with(&format!("{k}:"))
                    && lines[i]
                        .find(&format!("{k}:"))
                        .is_some_and(|col| parent_indent.map_or(col == 0, |p| col > p))
            }),
            Seg::Index(n) => {
                let items: Vec<usize> = (start..end)
                    .filter(|&i| lines[i].trim_start().starts_with("- ") || lines[i].trim() == "-")
                    .collect();
                let item_indent = items.iter().map(|&i| indent(lines[i])).min();
                items
                    .into_iter()
                    .filter(|&i| Some(indent(lines[i])) == item_indent)
                    .nth(*n)
            }
        };
        match hit {
            Some(i) => {
                found = i + 1;
                pos = i;
                on_item_line = matches!(seg, Seg::Index(_));
                let col = match seg {
                    Seg::Index(_) => indent(lines[i]),
                    Seg::Key(k) => lines[i].find(&format!("{k}:")).unwrap_or(0),
                };
                parent_indent = Some(col);
            }
            None => break,
        }
    }
    found.max(1)
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
