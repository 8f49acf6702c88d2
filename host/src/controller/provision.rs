//! The provisioning step's seam: pending pods + capacity -> NodeClaims to launch.
//!
//! [`Provisioner`] is what the controller calls once per closed batch. [`GreedyProvisioner`] is a
//! stand-in that groups identical pods and launches the cheapest offering per pod for each group; the
//! provisioning core (`crate::provisioning::plan`) replaces it as the default when it lands.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{InstanceTypeInfo, PoolSpec};
use crate::cloud::Offering;
use crate::cluster::{NodeState, PodKey, PodSpecFacts, PodState, Resources};
use crate::sim::fit;

/// What the provisioner sees.
pub struct ProvisionInput<'a> {
    pub now: crate::clock::Millis,
    pub pending: &'a [PodState],
    pub nodes: &'a [NodeState],
    pub pools: &'a [PoolSpec],
    pub instance_types: &'a [InstanceTypeInfo],
    /// Launchable offerings now (unavailable ones already removed), with current prices.
    pub offerings: &'a [Offering],
    /// Capacity already launched per pool (nodes + in-flight claims), for limits.
    pub pool_usage: &'a BTreeMap<String, Resources>,
    /// Requests of the DaemonSets that will run on each new node of a pool.
    pub daemon_overhead: &'a dyn Fn(&PoolSpec, &InstanceTypeInfo) -> Resources,
}

/// One NodeClaim to launch.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedClaim {
    pub node_pool: String,
    /// Ranked, best first.
    pub offerings: Vec<Offering>,
    pub pods: Vec<PodKey>,
    /// Why this shape: the chosen offering and the alternatives' scores.
    pub explanation: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProvisionPlan {
    pub claims: Vec<PlannedClaim>,
    /// Pods that fit no offering of any NodePool, with the reason per NodePool.
    pub unplaceable: Vec<(PodKey, String)>,
    /// Policy fallbacks that happened while deciding (counted in the report).
    pub policy_fallbacks: Vec<String>,
}

pub trait Provisioner {
    fn plan(&mut self, input: &ProvisionInput<'_>) -> ProvisionPlan;
    /// For the report ("default (native)", "candidate.wasm (wasm sha256:...)").
    fn name(&self) -> String;
}

/// The stand-in packer (see the module docs).
#[derive(Debug, Default)]
pub struct GreedyProvisioner;

/// How many offerings a claim carries for the cloud to fall through.
const OFFERINGS_PER_CLAIM: usize = 20;

impl Provisioner for GreedyProvisioner {
    fn name(&self) -> String {
        "greedy stand-in (native)".into()
    }

    fn plan(&mut self, input: &ProvisionInput<'_>) -> ProvisionPlan {
        let mut plan = ProvisionPlan::default();
        // Identical templates pack alike: group by template, keep first-seen order.
        let mut groups: Vec<(Arc<PodSpecFacts>, Vec<PodKey>)> = Vec::new();
        for pod in input.pending {
            match groups.iter_mut().find(|(f, _)| Arc::ptr_eq(f, &pod.facts)) {
                Some((_, keys)) => keys.push(pod.key.clone()),
                None => groups.push((pod.facts.clone(), vec![pod.key.clone()])),
            }
        }
        let mut usage = input.pool_usage.clone();
        let mut pools: Vec<&PoolSpec> = input.pools.iter().collect();
        pools.sort_by(|a, b| b.weight.cmp(&a.weight).then(a.name.cmp(&b.name)));
        for (facts, keys) in groups {
            let mut reasons = Vec::new();
            let mut placed = false;
            for pool in &pools {
                match plan_group(input, pool, &facts, &keys, &mut usage) {
                    Ok(claims) => {
                        plan.claims.extend(claims);
                        placed = true;
                        break;
                    }
                    Err(reason) => reasons.push(format!("{}: {reason}", pool.name)),
                }
            }
            if !placed {
                let why = if reasons.is_empty() {
                    "no NodePool".to_string()
                } else {
                    reasons.join("; ")
                };
                plan.unplaceable
                    .extend(keys.into_iter().map(|k| (k, why.clone())));
            }
        }
        plan
    }
}

fn plan_group(
    input: &ProvisionInput<'_>,
    pool: &PoolSpec,
    facts: &PodSpecFacts,
    keys: &[PodKey],
    usage: &mut BTreeMap<String, Resources>,
) -> Result<Vec<PlannedClaim>, String> {
    if let Err(unfit) = fit::taints_tolerated(&facts.spec, &pool.taints) {
        return Err(unfit.to_string());
    }
    let one_per_node = anti_affinity_hostname(facts);
    // (score = price per pod, pods per node, offering)
    let mut scored: Vec<(f64, i64, &Offering)> = Vec::new();
    let mut last_reason = "no offering matches the NodePool requirements".to_string();
    let types: std::collections::HashMap<&str, &InstanceTypeInfo> = input
        .instance_types
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    for offering in input.offerings {
        let Some(&it) = types.get(offering.instance_type.as_str()) else {
            continue;
        };
        let (zone, ct) = (offering.zone.as_str(), offering.capacity_type);
        if !pool.allows(it, zone, ct) {
            continue;
        }
        if let Err(unfit) = fit::labels_fit(&facts.spec, |k| pool.label(it, zone, ct, k)) {
            last_reason = unfit.to_string();
            continue;
        }
        let room = it.allocatable.minus(&(input.daemon_overhead)(pool, it));
        let per_node = pods_per_node(&facts.requests, &room);
        if per_node < 1 {
            last_reason = format!(
                "pod requests exceed every allowed instance type ({})",
                facts.requests.shortfall(&room).unwrap_or("resources")
            );
            continue;
        }
        let per_node = if one_per_node { 1 } else { per_node };
        let per_node = per_node.min(keys.len() as i64);
        scored.push((offering.price / per_node as f64, per_node, offering));
    }
    if scored.is_empty() {
        return Err(last_reason);
    }
    scored.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then(a.2.instance_type.cmp(&b.2.instance_type))
            .then(a.2.zone.cmp(&b.2.zone))
    });
    let (best_score, per_node, best) = scored[0];
    let spread_zones = spreads_by_zone(facts);
    let mut claims = Vec::new();
    for (n, chunk) in keys.chunks(per_node as usize).enumerate() {
        let it = types[best.instance_type.as_str()];
        if let Some(limit) = &pool.limits {
            let used = usage.get(&pool.name).copied().unwrap_or_default();
            let after = used.plus(&it.allocatable);
            if after.cpu_millis > limit.cpu_millis || after.memory_bytes > limit.memory_bytes {
                if claims.is_empty() {
                    return Err("NodePool limits reached".into());
                }
                break;
            }
        }
        *usage.entry(pool.name.clone()).or_default() = usage
            .get(&pool.name)
            .copied()
            .unwrap_or_default()
            .plus(&it.allocatable);
        // Alternatives that hold this chunk, best first; spread pods rotate the zone per claim.
        let zones: Vec<&str> = {
            let mut z: Vec<&str> = scored.iter().map(|s| s.2.zone.as_str()).collect();
            z.sort();
            z.dedup();
            z
        };
        let zone = spread_zones.then(|| zones[n % zones.len()]);
        let offerings: Vec<Offering> = scored
            .iter()
            .filter(|(_, cap, o)| {
                *cap >= chunk.len() as i64 && zone.is_none_or(|z| o.zone == z)
            })
            .take(OFFERINGS_PER_CLAIM)
            .map(|(_, _, o)| (*o).clone())
            .collect();
        claims.push(PlannedClaim {
            node_pool: pool.name.clone(),
            explanation: format!(
                "{} pods of {}: {} {} {} at ${:.4}/h (${:.4}/pod-hour, cheapest of {} offerings)",
                chunk.len(),
                facts.workload,
                best.instance_type,
                best.zone,
                best.capacity_type.label(),
                best.price,
                best_score,
                scored.len()
            ),
            offerings,
            pods: chunk.to_vec(),
        });
    }
    Ok(claims)
}

fn pods_per_node(req: &Resources, room: &Resources) -> i64 {
    let ratio = |need: i64, have: i64| {
        if need <= 0 {
            i64::MAX
        } else {
            (have / need).max(0)
        }
    };
    ratio(req.cpu_millis, room.cpu_millis)
        .min(ratio(req.memory_bytes, room.memory_bytes))
        .min(ratio(req.gpus, room.gpus))
        .min(ratio(req.pods, room.pods))
}

fn anti_affinity_hostname(facts: &PodSpecFacts) -> bool {
    facts
        .spec
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|p| p.required_during_scheduling_ignored_during_execution.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.topology_key == fit::HOSTNAME))
        || facts
            .spec
            .topology_spread_constraints
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|c| c.topology_key == fit::HOSTNAME && c.when_unsatisfiable == "DoNotSchedule")
}

fn spreads_by_zone(facts: &PodSpecFacts) -> bool {
    facts
        .spec
        .topology_spread_constraints
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|c| c.topology_key == fit::ZONE && c.when_unsatisfiable == "DoNotSchedule")
}
