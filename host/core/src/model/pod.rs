//! Pods as the scheduler sees them: requests, node constraints, tolerations, inter-pod constraints.
//!
//! A [`PodSpec`] is compiled once from a manifest and shared by all replicas through `Arc`, so a batch of
//! 50,000 replicas costs 50,000 names and one spec; the scheduler also groups pods by that pointer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

use super::labels;
use super::quantity::Quantity;
use super::requirements::{Operator, Requirement, Requirements};
use super::resources::ResourceList;
use super::taints::{TaintEffect, Toleration, TolerationOperator};

/// Selects pods by their labels (a Kubernetes `LabelSelector`). Empty selects every pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LabelSelector {
    pub requirements: Requirements,
    /// A missing (nil) selector in an affinity term or spread constraint selects no pod at all.
    pub matches_nothing: bool,
}

impl LabelSelector {
    pub fn from_labels(labels: &BTreeMap<String, String>) -> LabelSelector {
        LabelSelector {
            requirements: Requirements::from_labels(labels),
            matches_nothing: false,
        }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.matches_nothing && self.requirements.allows_labels(labels)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodAffinityTerm {
    pub selector: LabelSelector,
    /// Namespaces whose pods count; empty means the pod's own namespace.
    pub namespaces: Vec<String>,
    /// `kubernetes.io/hostname`, `topology.kubernetes.io/zone`, ...
    pub topology_key: String,
}

impl PodAffinityTerm {
    /// Whether `other` (a pod in `namespace` with `labels`) is selected by this term of a pod in `own_ns`.
    pub fn selects(
        &self,
        own_ns: &str,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        let ns_ok = if self.namespaces.is_empty() {
            namespace == own_ns
        } else {
            self.namespaces.iter().any(|n| n == namespace)
        };
        ns_ok && self.selector.matches(labels)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WeightedPodAffinityTerm {
    pub weight: i32,
    pub term: PodAffinityTerm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WhenUnsatisfiable {
    DoNotSchedule,
    ScheduleAnyway,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopologySpread {
    pub max_skew: u32,
    pub topology_key: String,
    pub when_unsatisfiable: WhenUnsatisfiable,
    pub selector: LabelSelector,
    pub min_domains: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    pub port: i32,
    pub protocol: String,
    /// Empty means every address (0.0.0.0).
    pub ip: String,
}

impl HostPort {
    /// Two host ports conflict when port and protocol match and the addresses overlap.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
        self.port == other.port
            && self.protocol == other.protocol
            && (wildcard(&self.ip) || wildcard(&other.ip) || self.ip == other.ip)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

/// The scheduling-relevant part of a pod, shared by its replicas.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PodSpec {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// Effective requests (containers + sidecars vs. init containers, plus overhead), with `pods = 1`.
    pub requests: ResourceList,
    /// Required node constraints as alternatives (OR of node-selector terms), each already AND-ed with
    /// the pod's `nodeSelector`. Never empty: no affinity is one term holding just the nodeSelector.
    pub node_terms: Vec<Requirements>,
    /// Preferred node-affinity terms, heaviest first.
    pub preferred_node_terms: Vec<(i32, Requirements)>,
    pub tolerations: Vec<Toleration>,
    pub pod_affinity: Vec<PodAffinityTerm>,
    pub pod_anti_affinity: Vec<PodAffinityTerm>,
    pub preferred_pod_affinity: Vec<WeightedPodAffinityTerm>,
    pub preferred_pod_anti_affinity: Vec<WeightedPodAffinityTerm>,
    pub topology_spread: Vec<TopologySpread>,
    pub host_ports: Vec<HostPort>,
    /// Zones the pod's persistent volumes live in (resolved by the cluster adapter from PVC -> PV);
    /// `None` when the pod has no zonal volumes.
    pub volume_zones: Option<BTreeSet<String>>,
    /// The controller owner (`ReplicaSet`, `StatefulSet`, `DaemonSet`, `Job`, ...).
    pub owner: Option<Owner>,
    pub priority: i32,
    /// `controller.kubernetes.io/pod-deletion-cost`.
    pub deletion_cost: i32,
    /// `karpenter.sh/do-not-disrupt: "true"`.
    pub do_not_disrupt: bool,
}

impl PodSpec {
    /// A plain pod spec with these requests (tests, the simulator, `bench pack`).
    pub fn with_requests(namespace: &str, requests: ResourceList) -> PodSpec {
        let mut requests = requests;
        requests.pods = Quantity::from_units(1);
        PodSpec {
            namespace: namespace.to_string(),
            requests,
            node_terms: vec![Requirements::new()],
            ..PodSpec::default()
        }
    }

    pub fn is_daemonset(&self) -> bool {
        self.owner.as_ref().is_some_and(|o| o.kind == "DaemonSet")
    }

    /// Whether the pod constrains its placement relative to other pods (the packer then handles it
    /// node by node instead of in bulk).
    pub fn has_pod_constraints(&self) -> bool {
        !self.pod_affinity.is_empty()
            || !self.pod_anti_affinity.is_empty()
            || !self.topology_spread.is_empty()
            || !self.host_ports.is_empty()
            || self.has_preferred_pod_terms()
    }

    /// Whether the pod has preferred (weighted) pod affinity or anti-affinity terms.
    pub fn has_preferred_pod_terms(&self) -> bool {
        !self.preferred_pod_affinity.is_empty() || !self.preferred_pod_anti_affinity.is_empty()
    }

    /// The spec with its preferred pod (anti-)affinity terms made required, as Karpenter first tries
    /// them; `None` when there are none. The placer falls back to `self` (all preferences relaxed at
    /// once) when this stricter spec cannot be placed.
    pub fn with_preferred_pod_terms_required(&self) -> Option<PodSpec> {
        if !self.has_preferred_pod_terms() {
            return None;
        }
        let mut strict = self.clone();
        strict
            .pod_affinity
            .extend(self.preferred_pod_affinity.iter().map(|w| w.term.clone()));
        strict.pod_anti_affinity.extend(
            self.preferred_pod_anti_affinity
                .iter()
                .map(|w| w.term.clone()),
        );
        strict.preferred_pod_affinity.clear();
        strict.preferred_pod_anti_affinity.clear();
        Some(strict)
    }
}

/// A pod: its identity and where it is bound, plus the shared spec.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pod {
    pub name: String,
    pub uid: String,
    pub spec: Arc<PodSpec>,
    /// The node the pod is bound to, if any.
    pub node_name: Option<String>,
    /// Set when the pod is being deleted (it no longer needs a place).
    pub terminating: bool,
}

impl Pod {
    pub fn new(name: impl Into<String>, spec: Arc<PodSpec>) -> Pod {
        let name = name.into();
        Pod {
            uid: name.clone(),
            name,
            spec,
            node_name: None,
            terminating: false,
        }
    }

    /// `count` unbound replicas named `{prefix}-{i}` sharing one spec.
    pub fn replicas(prefix: &str, spec: Arc<PodSpec>, count: usize) -> Vec<Pod> {
        (0..count)
            .map(|i| Pod::new(format!("{prefix}-{i}"), spec.clone()))
            .collect()
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.spec.namespace, self.name)
    }

    pub fn is_pending(&self) -> bool {
        self.node_name.is_none() && !self.terminating
    }

    /// Compiles a Kubernetes pod.
    pub fn from_k8s(pod: &core::Pod) -> Result<Pod, PodError> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let ctx = format!("{namespace}/{name}");
        let spec = pod.spec.as_ref().ok_or_else(|| PodError {
            pod: ctx.clone(),
            field: "spec".into(),
            reason: "missing".into(),
        })?;
        let compiled = compile(&ctx, &namespace, &pod.metadata, spec)?;
        Ok(Pod {
            uid: pod.metadata.uid.clone().unwrap_or_else(|| name.clone()),
            name,
            node_name: spec.node_name.clone(),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            spec: Arc::new(compiled),
        })
    }
}

impl PodSpec {
    /// Compiles a pod template (a Deployment's, a DaemonSet's) in `namespace`.
    pub fn from_template(
        namespace: &str,
        template: &core::PodTemplateSpec,
    ) -> Result<PodSpec, PodError> {
        let metadata = template.metadata.clone().unwrap_or_default();
        let ctx = format!(
            "{namespace}/template:{}",
            metadata.name.clone().unwrap_or_default()
        );
        let spec = template.spec.as_ref().ok_or_else(|| PodError {
            pod: ctx.clone(),
            field: "spec".into(),
            reason: "missing".into(),
        })?;
        compile(&ctx, namespace, &metadata, spec)
    }
}

/// A pod field that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pod {pod}: {field}: {reason}")]
pub struct PodError {
    pub pod: String,
    /// Field path, e.g. `spec.containers[0].resources.requests.cpu`.
    pub field: String,
    pub reason: String,
}

fn compile(
    ctx: &str,
    namespace: &str,
    metadata: &meta::ObjectMeta,
    spec: &core::PodSpec,
) -> Result<PodSpec, PodError> {
    let err = |field: String, reason: String| PodError {
        pod: ctx.to_string(),
        field,
        reason,
    };
    let requests = effective_requests(spec, &err)?;
    let annotations = metadata.annotations.clone().unwrap_or_default();

    let mut selector_reqs = Requirements::new();
    for (k, v) in spec.node_selector.iter().flatten() {
        selector_reqs.add(&Requirement {
            key: k.clone(),
            operator: Operator::In,
            values: vec![v.clone()],
            min_values: None,
        });
    }
    let affinity = spec.affinity.as_ref();
    let node_affinity = affinity.and_then(|a| a.node_affinity.as_ref());
    let mut node_terms = Vec::new();
    if let Some(required) = node_affinity.and_then(|n| {
        n.required_during_scheduling_ignored_during_execution
            .as_ref()
    }) {
        for (i, term) in required.node_selector_terms.iter().enumerate() {
            let field = format!(
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}]"
            );
            node_terms.push(selector_reqs.intersect(&node_selector_term(term, &field, &err)?));
        }
    }
    if node_terms.is_empty() {
        node_terms.push(selector_reqs);
    }
    let mut preferred_node_terms = Vec::new();
    for (i, p) in node_affinity
        .and_then(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .enumerate()
    {
        let field = format!(
            "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[{i}].preference"
        );
        preferred_node_terms.push((p.weight, node_selector_term(&p.preference, &field, &err)?));
    }
    preferred_node_terms.sort_by_key(|t| std::cmp::Reverse(t.0));

    let mut tolerations = Vec::new();
    for (i, t) in spec.tolerations.iter().flatten().enumerate() {
        let field = format!("spec.tolerations[{i}]");
        let operator = match t.operator.as_deref().unwrap_or("Equal") {
            "Equal" => TolerationOperator::Equal,
            "Exists" => TolerationOperator::Exists,
            other => {
                return Err(err(
                    format!("{field}.operator"),
                    format!("unknown operator {other:?}"),
                ));
            }
        };
        let effect =
            match t.effect.as_deref() {
                None | Some("") => None,
                Some(e) => Some(TaintEffect::parse(e).ok_or_else(|| {
                    err(format!("{field}.effect"), format!("unknown effect {e:?}"))
                })?),
            };
        tolerations.push(Toleration {
            key: t.key.clone().filter(|k| !k.is_empty()),
            operator,
            value: t.value.clone(),
            effect,
        });
    }

    let pod_affinity_terms = |terms: Option<&Vec<core::PodAffinityTerm>>, field: &str| {
        terms
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, t)| pod_affinity_term(t, &format!("{field}[{i}]"), &err))
            .collect::<Result<Vec<_>, _>>()
    };
    let weighted_terms = |terms: Option<&Vec<core::WeightedPodAffinityTerm>>, field: &str| {
        terms
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, t)| {
                Ok(WeightedPodAffinityTerm {
                    weight: t.weight,
                    term: pod_affinity_term(&t.pod_affinity_term, &format!("{field}[{i}]"), &err)?,
                })
            })
            .collect::<Result<Vec<_>, PodError>>()
    };
    let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
    let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
    let pod_affinity = pod_affinity_terms(
        pa.and_then(|p| {
            p.required_during_scheduling_ignored_during_execution
                .as_ref()
        }),
        "spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution",
    )?;
    let pod_anti_affinity = pod_affinity_terms(
        paa.and_then(|p| {
            p.required_during_scheduling_ignored_during_execution
                .as_ref()
        }),
        "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution",
    )?;
    let preferred_pod_affinity = weighted_terms(
        pa.and_then(|p| {
            p.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }),
        "spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution",
    )?;
    let preferred_pod_anti_affinity = weighted_terms(
        paa.and_then(|p| {
            p.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }),
        "spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution",
    )?;

    let mut topology_spread = Vec::new();
    for (i, c) in spec
        .topology_spread_constraints
        .iter()
        .flatten()
        .enumerate()
    {
        let field = format!("spec.topologySpreadConstraints[{i}]");
        if c.max_skew < 1 {
            return Err(err(format!("{field}.maxSkew"), "must be at least 1".into()));
        }
        let when_unsatisfiable = match c.when_unsatisfiable.as_str() {
            "DoNotSchedule" => WhenUnsatisfiable::DoNotSchedule,
            "ScheduleAnyway" => WhenUnsatisfiable::ScheduleAnyway,
            other => {
                return Err(err(
                    format!("{field}.whenUnsatisfiable"),
                    format!("unknown value {other:?}"),
                ));
            }
        };
        let mut selector = label_selector(
            c.label_selector.as_ref(),
            &format!("{field}.labelSelector"),
            &err,
        )?;
        // matchLabelKeys: the pod's own values for those keys join the selector.
        let own = metadata.labels.clone().unwrap_or_default();
        for key in c.match_label_keys.iter().flatten() {
            if let Some(v) = own.get(key) {
                selector.requirements.add(&Requirement {
                    key: key.clone(),
                    operator: Operator::In,
                    values: vec![v.clone()],
                    min_values: None,
                });
            }
        }
        topology_spread.push(TopologySpread {
            max_skew: c.max_skew as u32,
            topology_key: c.topology_key.clone(),
            when_unsatisfiable,
            selector,
            min_domains: c.min_domains.map(|m| m.max(1) as u32),
        });
    }

    let mut host_ports = Vec::new();
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        for p in c.ports.iter().flatten() {
            if let Some(port) = p.host_port.filter(|p| *p > 0) {
                host_ports.push(HostPort {
                    port,
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    ip: p.host_ip.clone().unwrap_or_default(),
                });
            }
        }
    }
    host_ports.sort();
    host_ports.dedup();

    let owner = metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| Owner {
            kind: o.kind.clone(),
            name: o.name.clone(),
        });
    let deletion_cost = match annotations.get("controller.kubernetes.io/pod-deletion-cost") {
        Some(v) => v.trim().parse().map_err(|_| {
            err(
                "metadata.annotations[controller.kubernetes.io/pod-deletion-cost]".into(),
                format!("not an integer: {v:?}"),
            )
        })?,
        None => 0,
    };
    Ok(PodSpec {
        namespace: namespace.to_string(),
        labels: metadata.labels.clone().unwrap_or_default(),
        requests,
        node_terms,
        preferred_node_terms,
        tolerations,
        pod_affinity,
        pod_anti_affinity,
        preferred_pod_affinity,
        preferred_pod_anti_affinity,
        topology_spread,
        host_ports,
        volume_zones: None,
        owner,
        priority: spec.priority.unwrap_or(0),
        deletion_cost,
        do_not_disrupt: annotations.get(labels::DO_NOT_DISRUPT).map(String::as_str) == Some("true"),
    })
}

/// A container's requests, with limits standing in for missing requests (the API server's defaulting).
fn container_requests(
    c: &core::Container,
    field: &str,
    err: &dyn Fn(String, String) -> PodError,
) -> Result<ResourceList, PodError> {
    let mut out = ResourceList::new();
    let Some(res) = &c.resources else {
        return Ok(out);
    };
    for (name, q) in res.limits.iter().flatten() {
        let value = Quantity::parse(&q.0)
            .map_err(|e| err(format!("{field}.resources.limits.{name}"), e.to_string()))?;
        out.set(name, value);
    }
    for (name, q) in res.requests.iter().flatten() {
        let value = Quantity::parse(&q.0)
            .map_err(|e| err(format!("{field}.resources.requests.{name}"), e.to_string()))?;
        out.set(name, value);
    }
    Ok(out)
}

/// Kubernetes' effective pod requests: max(containers + sidecars, each init container + the sidecars
/// started before it), plus the pod overhead.
fn effective_requests(
    spec: &core::PodSpec,
    err: &dyn Fn(String, String) -> PodError,
) -> Result<ResourceList, PodError> {
    let mut running = ResourceList::new();
    for (i, c) in spec.containers.iter().enumerate() {
        running.add(&container_requests(
            c,
            &format!("spec.containers[{i}]"),
            err,
        )?);
    }
    let mut sidecars = ResourceList::new();
    let mut init_peak = ResourceList::new();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let r = container_requests(c, &format!("spec.initContainers[{i}]"), err)?;
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            init_peak.max_with(&sidecars);
        } else {
            init_peak.max_with(&sidecars.plus(&r));
        }
    }
    running.add(&sidecars);
    running.max_with(&init_peak);
    for (name, q) in spec.overhead.iter().flatten() {
        let value = Quantity::parse(&q.0)
            .map_err(|e| err(format!("spec.overhead.{name}"), e.to_string()))?;
        running.set(name, running.get(name) + value);
    }
    running.pods = Quantity::from_units(1);
    Ok(running)
}

fn node_selector_term(
    term: &core::NodeSelectorTerm,
    field: &str,
    err: &dyn Fn(String, String) -> PodError,
) -> Result<Requirements, PodError> {
    let mut reqs = Requirements::new();
    for (i, e) in term.match_expressions.iter().flatten().enumerate() {
        let r = Requirement::parse(&e.key, &e.operator, e.values.as_deref().unwrap_or(&[]))
            .map_err(|x| err(format!("{field}.matchExpressions[{i}]"), x.to_string()))?;
        reqs.add(&r);
    }
    // matchFields supports only metadata.name: the node's name, which we model as the hostname label.
    for (i, e) in term.match_fields.iter().flatten().enumerate() {
        if e.key != "metadata.name" {
            return Err(err(
                format!("{field}.matchFields[{i}].key"),
                format!("only metadata.name is supported, got {:?}", e.key),
            ));
        }
        let r = Requirement::parse(
            labels::HOSTNAME,
            &e.operator,
            e.values.as_deref().unwrap_or(&[]),
        )
        .map_err(|x| err(format!("{field}.matchFields[{i}]"), x.to_string()))?;
        reqs.add(&r);
    }
    Ok(reqs)
}

fn label_selector(
    selector: Option<&meta::LabelSelector>,
    field: &str,
    err: &dyn Fn(String, String) -> PodError,
) -> Result<LabelSelector, PodError> {
    let mut reqs = Requirements::new();
    let Some(s) = selector else {
        return Ok(LabelSelector {
            requirements: reqs,
            matches_nothing: true,
        });
    };
    for (k, v) in s.match_labels.iter().flatten() {
        reqs.add(&Requirement {
            key: k.clone(),
            operator: Operator::In,
            values: vec![v.clone()],
            min_values: None,
        });
    }
    for (i, e) in s.match_expressions.iter().flatten().enumerate() {
        if matches!(e.operator.as_str(), "Gt" | "Lt") {
            return Err(err(
                format!("{field}.matchExpressions[{i}].operator"),
                format!("{} is not valid in a label selector", e.operator),
            ));
        }
        let r = Requirement::parse(&e.key, &e.operator, e.values.as_deref().unwrap_or(&[]))
            .map_err(|x| err(format!("{field}.matchExpressions[{i}]"), x.to_string()))?;
        reqs.add(&r);
    }
    Ok(LabelSelector {
        requirements: reqs,
        matches_nothing: false,
    })
}

fn pod_affinity_term(
    t: &core::PodAffinityTerm,
    field: &str,
    err: &dyn Fn(String, String) -> PodError,
) -> Result<PodAffinityTerm, PodError> {
    if t.topology_key.is_empty() {
        return Err(err(
            format!("{field}.topologyKey"),
            "must not be empty".into(),
        ));
    }
    Ok(PodAffinityTerm {
        selector: label_selector(
            t.label_selector.as_ref(),
            &format!("{field}.labelSelector"),
            err,
        )?,
        namespaces: t.namespaces.clone().unwrap_or_default(),
        topology_key: t.topology_key.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KQ;

    fn container(name: &str, cpu: &str, mem: &str, restart: Option<&str>) -> core::Container {
        core::Container {
            name: name.into(),
            resources: Some(core::ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_string(), KQ(cpu.into())),
                    ("memory".to_string(), KQ(mem.into())),
                ])),
                ..Default::default()
            }),
            restart_policy: restart.map(Into::into),
            ..Default::default()
        }
    }

    fn pod(spec: core::PodSpec) -> core::Pod {
        core::Pod {
            metadata: meta::ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(spec),
            ..Default::default()
        }
    }

    #[test]
    fn requests_follow_the_init_sidecar_and_overhead_rules() {
        let spec = core::PodSpec {
            containers: vec![
                container("a", "500m", "1Gi", None),
                container("b", "250m", "256Mi", None),
            ],
            init_containers: Some(vec![
                container("sidecar", "100m", "64Mi", Some("Always")),
                container("migrate", "2", "512Mi", None),
            ]),
            overhead: Some(BTreeMap::from([("cpu".to_string(), KQ("10m".into()))])),
            ..Default::default()
        };
        let p = Pod::from_k8s(&pod(spec)).unwrap();
        // cpu: max(500+250+100, 100+2000) + 10 overhead; memory: max(1280+64, 64+512).
        assert_eq!(p.spec.requests.cpu, Quantity::from_millis(2110));
        assert_eq!(p.spec.requests.memory, Quantity::parse("1344Mi").unwrap());
        assert_eq!(p.spec.requests.pods, Quantity::from_units(1));
    }

    #[test]
    fn limits_stand_in_for_missing_requests() {
        let mut c = container("a", "1", "1Gi", None);
        c.resources.as_mut().unwrap().limits = Some(BTreeMap::from([(
            "nvidia.com/gpu".to_string(),
            KQ("2".into()),
        )]));
        let p = Pod::from_k8s(&pod(core::PodSpec {
            containers: vec![c],
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(
            p.spec.requests.get("nvidia.com/gpu"),
            Quantity::from_units(2)
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let bad = pod(core::PodSpec {
            containers: vec![container("a", "lots", "1Gi", None)],
            ..Default::default()
        });
        let e = Pod::from_k8s(&bad).unwrap_err();
        assert_eq!(e.field, "spec.containers[0].resources.requests.cpu");
        let bad = pod(core::PodSpec {
            containers: vec![container("a", "1", "1Gi", None)],
            affinity: Some(core::Affinity {
                node_affinity: Some(core::NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(core::NodeSelector {
                        node_selector_terms: vec![core::NodeSelectorTerm {
                            match_expressions: Some(vec![core::NodeSelectorRequirement {
                                key: "k".into(),
                                operator: "Gt".into(),
                                values: Some(vec!["x".into()]),
                            }]),
                            ..Default::default()
                        }],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let e = Pod::from_k8s(&bad).unwrap_err();
        assert!(
            e.field.contains("nodeSelectorTerms[0].matchExpressions[0]"),
            "{e}"
        );
    }

    #[test]
    fn node_selector_joins_every_affinity_term() {
        let spec = core::PodSpec {
            containers: vec![container("a", "1", "1Gi", None)],
            node_selector: Some(BTreeMap::from([(
                labels::ARCH.to_string(),
                "arm64".to_string(),
            )])),
            affinity: Some(core::Affinity {
                node_affinity: Some(core::NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(core::NodeSelector {
                        node_selector_terms: vec![
                            core::NodeSelectorTerm {
                                match_expressions: Some(vec![core::NodeSelectorRequirement {
                                    key: labels::ZONE.into(),
                                    operator: "In".into(),
                                    values: Some(vec!["a".into()]),
                                }]),
                                ..Default::default()
                            },
                            core::NodeSelectorTerm {
                                match_expressions: Some(vec![core::NodeSelectorRequirement {
                                    key: labels::ZONE.into(),
                                    operator: "In".into(),
                                    values: Some(vec!["b".into()]),
                                }]),
                                ..Default::default()
                            },
                        ],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = Pod::from_k8s(&pod(spec)).unwrap();
        assert_eq!(p.spec.node_terms.len(), 2);
        for t in &p.spec.node_terms {
            assert!(t.get(labels::ARCH).is_some());
        }
    }

    #[test]
    fn preferred_pod_terms_become_required_in_the_strict_spec() {
        let mut spec = PodSpec::with_requests("default", ResourceList::new());
        assert!(!spec.has_pod_constraints());
        assert_eq!(spec.with_preferred_pod_terms_required(), None);
        let term = PodAffinityTerm {
            selector: LabelSelector::from_labels(&BTreeMap::from([("app".into(), "a".into())])),
            namespaces: vec![],
            topology_key: labels::HOSTNAME.into(),
        };
        spec.preferred_pod_anti_affinity
            .push(WeightedPodAffinityTerm {
                weight: 10,
                term: term.clone(),
            });
        assert!(spec.has_pod_constraints());
        let strict = spec.with_preferred_pod_terms_required().unwrap();
        assert_eq!(strict.pod_anti_affinity, vec![term]);
        assert!(strict.pod_affinity.is_empty());
        assert!(!strict.has_preferred_pod_terms());
    }
}
