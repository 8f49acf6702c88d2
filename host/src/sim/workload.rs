//! Workloads as the replay runs them: pod templates turned into scheduling facts, and replica targets
//! over time.

use std::collections::BTreeMap;
use std::f64::consts::PI;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};

use super::scenario::{Workload, WorkloadKind, parse_ms};
use crate::clock::Millis;
use crate::cluster::{OwnerKind, PodSpecFacts, Resources};
use crate::model::quantity::Quantity;

pub const DO_NOT_DISRUPT: &str = "karpenter.sh/do-not-disrupt";
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Effective requests of a pod: the sum over containers (requests, or limits where requests are
/// unset, as the API server defaults them), at least the largest init container, plus overhead; one pod slot.
pub fn requests_of(spec: &PodSpec) -> Result<Resources, String> {
    let one = |c: &Container| -> Result<Resources, String> {
        let get = |name: &str| -> Result<Quantity, String> {
            let r = c.resources.as_ref();
            let q = r
                .and_then(|r| r.requests.as_ref())
                .and_then(|m| m.get(name))
                .or_else(|| r.and_then(|r| r.limits.as_ref()).and_then(|m| m.get(name)));
            match q {
                Some(q) => {
                    Quantity::parse(&q.0).map_err(|e| format!("container {}: {name}: {e}", c.name))
                }
                None => Ok(Quantity::ZERO),
            }
        };
        Ok(Resources {
            cpu_millis: get("cpu")?.millis() as i64,
            memory_bytes: get("memory")?.units_ceil() as i64,
            gpus: (get("nvidia.com/gpu")?.units_ceil() + get("amd.com/gpu")?.units_ceil()) as i64,
            pods: 0,
        })
    };
    let mut total = Resources::default();
    for c in &spec.containers {
        total = total.plus(&one(c)?);
    }
    for c in spec.init_containers.as_deref().unwrap_or_default() {
        let r = one(c)?;
        total.cpu_millis = total.cpu_millis.max(r.cpu_millis);
        total.memory_bytes = total.memory_bytes.max(r.memory_bytes);
        total.gpus = total.gpus.max(r.gpus);
    }
    if let Some(overhead) = &spec.overhead {
        for (name, q) in overhead {
            let q = Quantity::parse(&q.0).map_err(|e| format!("overhead {name}: {e}"))?;
            match name.as_str() {
                "cpu" => total.cpu_millis += q.millis() as i64,
                "memory" => total.memory_bytes += q.units_ceil() as i64,
                _ => {}
            }
        }
    }
    total.pods = 1;
    Ok(total)
}

/// The shared facts of a workload's pods.
pub fn facts_of(w: &Workload) -> Arc<PodSpecFacts> {
    let template: &PodTemplateSpec = &w.template;
    let spec = template.spec.clone().unwrap_or_default();
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = meta.labels.unwrap_or_default();
    labels.entry("app".into()).or_insert_with(|| w.name.clone());
    let do_not_disrupt = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(DO_NOT_DISRUPT))
        .is_some_and(|v| v == "true");
    // The scenario parser has already refused a non-integer value (model::PodSpec::from_template).
    let deletion_cost = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Arc::new(PodSpecFacts {
        workload: Arc::from(w.name.as_str()),
        owner: match w.kind {
            WorkloadKind::Deployment => OwnerKind::Deployment,
            WorkloadKind::Job => OwnerKind::Job,
            WorkloadKind::DaemonSet => OwnerKind::DaemonSet,
        },
        labels,
        requests: requests_of(&spec).unwrap_or_default(),
        spec,
        do_not_disrupt,
        deletion_cost,
    })
}

/// The replica target of a Deployment at `t` (ms since the scenario start): the diurnal curve if any,
/// else the last `scale` step at or before `t`, else `replicas`.
pub fn replicas_at(w: &Workload, t: Millis, start_of_day_offset: Millis) -> u32 {
    if let Some(d) = &w.diurnal {
        let peak = parse_ms(&d.peak_at).unwrap_or(0);
        let day = 86_400_000f64;
        let phase = ((t + start_of_day_offset - peak) as f64 / day) * 2.0 * PI;
        let level = (1.0 + phase.cos()) / 2.0;
        return d.min + ((d.max - d.min) as f64 * level).round() as u32;
    }
    let mut replicas = w.replicas.unwrap_or(0);
    for step in &w.scale {
        if parse_ms(&step.at).unwrap_or(Millis::MAX) <= t {
            replicas = step.replicas;
        }
    }
    replicas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_sum_containers_and_take_the_init_max() {
        let spec: PodSpec = serde_yaml_ng::from_str(
            "containers:\n- name: a\n  resources: {requests: {cpu: 250m, memory: 256Mi}}\n- name: b\n  resources: {limits: {cpu: '1', nvidia.com/gpu: '1'}}\ninitContainers:\n- name: i\n  resources: {requests: {cpu: '2'}}\n",
        )
        .unwrap();
        let r = requests_of(&spec).unwrap();
        assert_eq!(r.cpu_millis, 2000);
        assert_eq!(r.memory_bytes, 256 * 1024 * 1024);
        assert_eq!(r.gpus, 1);
        assert_eq!(r.pods, 1);
    }
}
