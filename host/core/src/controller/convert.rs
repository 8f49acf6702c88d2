//! From what the loop holds (Karpenter manifests, cluster records) to the core's model types.

use crate::api;
use crate::cluster::NodeState;
use crate::model::{self, Quantity};

/// A registered node as the core sees it.
pub fn node(n: &NodeState) -> model::Node {
    model::Node {
        name: n.name.to_string(),
        node_pool: Some(n.node_pool.clone()),
        node_claim: Some(n.claim.clone()),
        instance_type: n.instance_type.clone(),
        zone: n.zone.clone(),
        capacity_type: n.capacity_type,
        labels: n.labels.clone(),
        taints: n.taints.clone(),
        allocatable: n.allocatable.clone(),
        price: n.price,
        created_at: n.created_at,
        ready: n.ready,
        initialized: n.ready,
        marked_for_deletion: n.deleting,
        unschedulable: n.cordoned,
    }
}

/// Why a NodePool manifest could not be turned into the core's NodePool.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("NodePool {pool}: {field}: {reason}")]
pub struct PoolError {
    pub pool: String,
    pub field: String,
    pub reason: String,
}

/// The core's NodePool from a Karpenter v1 manifest.
pub fn node_pool(pool: &api::NodePool) -> Result<model::NodePool, PoolError> {
    let name = pool.metadata.name.clone().unwrap_or_default();
    let err = |field: &str, reason: String| PoolError {
        pool: name.clone(),
        field: field.to_string(),
        reason,
    };
    let spec = &pool.spec.template.spec;
    let mut out = model::NodePool::new(&name);
    out.weight = pool.spec.weight.unwrap_or(0);
    for (i, r) in spec.requirements.iter().enumerate() {
        let field = format!("spec.template.spec.requirements[{i}]");
        let mut req = model::Requirement::parse(&r.key, r.operator.as_str(), &r.values)
            .map_err(|e| err(&field, e.to_string()))?;
        if let Some(min) = r.min_values {
            req = req
                .with_min_values(min as u32)
                .map_err(|e| err(&field, e.to_string()))?;
        }
        out.requirements.push(req);
    }
    if let Some(meta) = &pool.spec.template.metadata {
        out.labels = meta.labels.clone();
        out.annotations = meta.annotations.clone();
    }
    let taints = |list: &[k8s_openapi::api::core::v1::Taint], field: &str| {
        list.iter()
            .map(|t| {
                model::TaintEffect::parse(&t.effect)
                    .map(|e| model::Taint::new(&t.key, t.value.as_deref(), e))
                    .ok_or_else(|| err(field, format!("unknown taint effect {:?}", t.effect)))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    out.taints = taints(&spec.taints, "spec.template.spec.taints")?;
    out.startup_taints = taints(&spec.startup_taints, "spec.template.spec.startupTaints")?;
    for (k, v) in pool.spec.limits.iter().flatten() {
        let q = Quantity::parse(&v.0).map_err(|e| err("spec.limits", e.to_string()))?;
        out.limits.insert(k.clone(), q);
    }
    out.node_class = Some(spec.node_class_ref.name.clone());
    let ms = |d: std::time::Duration| d.as_millis() as crate::clock::Millis;
    out.expire_after = spec
        .expire_after()
        .map_err(|e| err("spec.template.spec.expireAfter", e.to_string()))?
        .map(ms);
    out.termination_grace_period = spec
        .termination_grace_period()
        .map_err(|e| err("spec.template.spec.terminationGracePeriod", e.to_string()))?
        .map(ms);
    let disruption = pool.spec.disruption.clone().unwrap_or_default();
    out.disruption.consolidation_policy =
        model::ConsolidationPolicy::parse(&format!("{:?}", disruption.consolidation_policy()))
            .unwrap_or(model::ConsolidationPolicy::WhenEmptyOrUnderutilized);
    out.disruption.consolidate_after = disruption
        .consolidate_after()
        .map_err(|e| err("spec.disruption.consolidateAfter", e.to_string()))?
        .map(ms);
    out.disruption.budgets = disruption
        .budgets()
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let field = format!("spec.disruption.budgets[{i}]");
            let nodes = match b.nodes().map_err(|e| err(&field, e.to_string()))? {
                api::BudgetNodes::Count(n) => model::BudgetNodes::Count(n),
                api::BudgetNodes::Percent(p) => model::BudgetNodes::Percent(p),
            };
            Ok(model::Budget {
                nodes,
                schedule: b.schedule.clone(),
                duration: b
                    .duration()
                    .map_err(|e| err(&field, e.to_string()))?
                    .map(ms),
                reasons: b
                    .reasons
                    .iter()
                    .flatten()
                    .filter_map(|r| model::DisruptionReason::parse(&format!("{r:?}")))
                    .collect(),
            })
        })
        .collect::<Result<Vec<_>, PoolError>>()?;
    out.policies = model::PolicyRefs::default();
    Ok(out)
}

/// The core's view of a claim in flight rebuilt from its record (what a restarted controller plans
/// around): the labels and taints of the template it was made from and the instance it launched,
/// if it did. None when the template no longer converts (the claim then offers no room until its
/// node registers, which is safe: its pods are still held for it).
pub fn recovered_claim(record: &crate::cluster::ClaimRecord) -> Option<model::NodeClaim> {
    let pool = api::NodePool::new(
        &record.node_pool,
        api::NodePoolSpec {
            template: (*record.template).clone(),
            disruption: None,
            limits: None,
            weight: None,
        },
    );
    let pool = node_pool(&pool).ok()?;
    let launched = match (&record.offering, &record.instance_id) {
        (Some(o), Some(id)) => Some(model::Launched {
            instance_type: o.instance_type.clone(),
            zone: o.zone.clone(),
            capacity_type: o.capacity_type,
            price: o.price,
            provider_id: format!("aws:///{}/{}", o.zone, id),
        }),
        _ => None,
    };
    Some(model::NodeClaim {
        name: record.name.clone(),
        node_pool: record.node_pool.clone(),
        requirements: model::Requirements::from_requirements(&pool.requirements),
        requests: model::ResourceList::new(),
        labels: pool.labels,
        taints: pool.taints,
        startup_taints: pool.startup_taints,
        created_at: record.created_at,
        launched,
        node_name: None,
        marked_for_deletion: false,
        nominated: Vec::new(),
    })
}
