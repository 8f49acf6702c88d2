//! Workloads as the replay runs them: pod templates turned into scheduling facts, and replica targets
//! over time.

use std::f64::consts::PI;
use std::sync::Arc;

use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::scenario::{Workload, WorkloadKind, parse_ms};
use crate::clock::Millis;
use crate::cluster::{OwnerKind, PodSpecFacts};
use crate::model::PodError;

/// The shared facts of a workload's pods: the template compiled once, with an `app` label defaulting to
/// the workload's name (what the scenario's PDBs and spread constraints select by).
pub fn facts_of(w: &Workload) -> Result<Arc<PodSpecFacts>, PodError> {
    let mut template: PodTemplateSpec = w.template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(Default::default)
        .entry("app".into())
        .or_insert_with(|| w.name.clone());
    let owner = match w.kind {
        WorkloadKind::Deployment => OwnerKind::Deployment,
        WorkloadKind::Job => OwnerKind::Job,
        WorkloadKind::DaemonSet => OwnerKind::DaemonSet,
    };
    PodSpecFacts::compile(&w.name, owner, &template).map(Arc::new)
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
    fn requests_follow_the_compiled_spec_including_sidecars() {
        let template: PodTemplateSpec = serde_yaml_ng::from_str(
            "spec:\n  containers:\n  - name: a\n    resources: {requests: {cpu: 250m, memory: 256Mi}}\n  - name: b\n    resources: {limits: {cpu: '1', nvidia.com/gpu: '1'}}\n  initContainers:\n  - name: proxy\n    restartPolicy: Always\n    resources: {requests: {cpu: 100m, memory: 64Mi}}\n  - name: i\n    resources: {requests: {cpu: '2'}}\n",
        )
        .unwrap();
        let facts = PodSpecFacts::compile("w", OwnerKind::Deployment, &template).unwrap();
        // The init container runs beside the sidecar: max(1.25 + 0.1, 2 + 0.1) CPU.
        let r = facts.requests();
        assert_eq!(r.cpu.millis(), 2100);
        assert_eq!(r.memory.units_ceil(), (256 + 64) * 1024 * 1024);
        assert_eq!(r.get("nvidia.com/gpu").units_ceil(), 1);
        assert_eq!(r.pods.units_ceil(), 1);
        assert_eq!(facts.labels(), &facts.compiled.labels);
    }
}
