//! The provisioning step's seam: pending pods + capacity -> NodeClaims to launch.
//!
//! [`Provisioner`] is what the controller calls once per closed batch. [`GreedyProvisioner`] is the
//! stand-in packer used until the provisioning core's `plan` is complete: it groups identical pods, asks
//! the NodePool's ranker policy (one `rank` call per NodePool and pod group, through the policy
//! contract, so a wasm ranker changes its choices) to score the offerings that fit, and launches the
//! offering with the lowest score per pod.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{InstanceTypeInfo, PoolSpec};
use crate::cloud::{CapacityType, Offering};
use crate::cluster::{NodeState, PodKey, PodSpecFacts, PodState, Resources};
use crate::policy::Ranker;
use crate::policy::contract::rank;
use crate::sim::fit;

/// What the provisioner sees.
pub struct ProvisionInput<'a> {
    pub now: crate::clock::Millis,
    pub pending: &'a [PodState],
    /// Pods bound to nodes (only when [`Provisioner::needs_bound_pods`]).
    pub bound: &'a [PodState],
    /// Claims launched whose nodes have not registered yet.
    pub in_flight: &'a [crate::model::NodeClaim],
    pub nodes: &'a [NodeState],
    pub pools: &'a [PoolSpec],
    /// Same order as `contract_catalog.instance_types`.
    pub instance_types: &'a [InstanceTypeInfo],
    /// The catalog in policy-contract form (rankers are primed with it once per revision).
    pub contract_catalog: &'a rank::Catalog,
    /// Launchable offerings now (unavailable ones already removed), with current prices.
    pub offerings: &'a [Offering],
    /// Capacity already launched per pool (nodes + in-flight claims), for limits.
    pub pool_usage: &'a BTreeMap<String, Resources>,
    /// Requests of the DaemonSets that will run on each new node of a pool.
    pub daemon_overhead: &'a dyn Fn(&PoolSpec, &InstanceTypeInfo) -> Resources,
    /// A per-decision seed for rankers that break ties at random.
    pub seed: u64,
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
    /// The core's NodeClaim (requirements, requests, labels), kept while the claim is in flight.
    pub core: Option<crate::model::NodeClaim>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProvisionPlan {
    pub claims: Vec<PlannedClaim>,
    /// Pods that fit no offering of any NodePool, with the reason per NodePool.
    pub unplaceable: Vec<(PodKey, String)>,
    /// Policy fallbacks that happened while deciding (counted in the report).
    pub policy_fallbacks: Vec<String>,
    /// Pods that fit a claim still launching: (pod, claim name).
    pub nominations: Vec<(PodKey, String)>,
}

pub trait Provisioner {
    fn plan(&mut self, input: &ProvisionInput<'_>) -> ProvisionPlan;
    /// For the report, e.g. "greedy stand-in + default-ranker@0.1.0 (native)".
    fn name(&self) -> String;
    /// Whether `ProvisionInput::bound` must be filled (inter-pod constraints, existing room).
    fn needs_bound_pods(&self) -> bool {
        false
    }
}

/// The stand-in packer (see the module docs).
pub struct GreedyProvisioner {
    ranker: Box<dyn Ranker>,
    ranker_label: String,
    catalog_revision: Option<u64>,
}

impl GreedyProvisioner {
    pub fn new(ranker: Box<dyn Ranker>, ranker_label: String) -> Self {
        GreedyProvisioner {
            ranker,
            ranker_label,
            catalog_revision: None,
        }
    }

    /// With the built-in default ranker, natively.
    pub fn with_default_ranker() -> Self {
        GreedyProvisioner::new(
            Box::new(crate::policy::defaults::NativeRanker::new()),
            crate::policy::defaults::NativeRanker::label(),
        )
    }
}

/// How many offerings a claim carries for the cloud to fall through.
const OFFERINGS_PER_CLAIM: usize = 20;

impl Provisioner for GreedyProvisioner {
    fn name(&self) -> String {
        format!("greedy stand-in packer, ranker {}", self.ranker_label)
    }

    fn plan(&mut self, input: &ProvisionInput<'_>) -> ProvisionPlan {
        if self.catalog_revision != Some(input.contract_catalog.revision) {
            self.ranker.set_catalog(input.contract_catalog);
            self.catalog_revision = Some(input.contract_catalog.revision);
        }
        let mut plan = ProvisionPlan::default();
        // Identical templates pack alike: group by template, keep first-seen order.
        let mut groups: Vec<(Arc<PodSpecFacts>, Vec<PodKey>)> = Vec::new();
        for pod in input.pending {
            match groups.iter_mut().find(|(f, _)| Arc::ptr_eq(f, &pod.facts)) {
                Some((_, keys)) => keys.push(pod.key.clone()),
                None => groups.push((pod.facts.clone(), vec![pod.key.clone()])),
            }
        }
        let ctx = Context::new(input);
        let mut usage = input.pool_usage.clone();
        let mut pools: Vec<&PoolSpec> = input.pools.iter().collect();
        pools.sort_by(|a, b| b.weight.cmp(&a.weight).then(a.name.cmp(&b.name)));
        for (facts, keys) in groups {
            let mut reasons = Vec::new();
            let mut remaining: &[PodKey] = &keys;
            for pool in &pools {
                match self.plan_group(input, &ctx, pool, &facts, remaining, &mut usage, &mut plan) {
                    Ok(placed) => remaining = &remaining[placed..],
                    Err(reason) => reasons.push(format!("{}: {reason}", pool.name)),
                }
                if remaining.is_empty() {
                    break;
                }
            }
            if !remaining.is_empty() {
                let why = if reasons.is_empty() {
                    "no NodePool".to_string()
                } else {
                    reasons.join("; ")
                };
                plan.unplaceable
                    .extend(remaining.iter().map(|k| (k.clone(), why.clone())));
            }
        }
        plan
    }
}

struct Context<'a> {
    types: HashMap<&'a str, usize>,
    zones: HashMap<&'a str, u32>,
}

impl<'a> Context<'a> {
    fn new(input: &'a ProvisionInput<'a>) -> Self {
        Context {
            types: input
                .instance_types
                .iter()
                .enumerate()
                .map(|(i, t)| (t.name.as_str(), i))
                .collect(),
            zones: input
                .contract_catalog
                .zones
                .iter()
                .enumerate()
                .map(|(i, z)| (z.as_str(), i as u32))
                .collect(),
        }
    }
}

impl GreedyProvisioner {
    /// Plans claims for as many of `keys` as the pool can take; returns how many were placed.
    #[allow(clippy::too_many_arguments)]
    fn plan_group(
        &mut self,
        input: &ProvisionInput<'_>,
        ctx: &Context<'_>,
        pool: &PoolSpec,
        facts: &PodSpecFacts,
        keys: &[PodKey],
        usage: &mut BTreeMap<String, Resources>,
        plan: &mut ProvisionPlan,
    ) -> Result<usize, String> {
        if let Err(unfit) = fit::taints_tolerated(&facts.spec, &pool.taints) {
            return Err(unfit.to_string());
        }
        let one_per_node = anti_affinity_hostname(facts);
        // (offering, instance type index, pods per node)
        let mut fitting: Vec<(&Offering, usize, i64)> = Vec::new();
        let mut last_reason = "no offering matches the NodePool requirements".to_string();
        for offering in input.offerings {
            let Some(&ti) = ctx.types.get(offering.instance_type.as_str()) else {
                continue;
            };
            let it = &input.instance_types[ti];
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
            fitting.push((offering, ti, per_node.min(keys.len() as i64)));
        }
        if fitting.is_empty() {
            return Err(last_reason);
        }
        // One rank call for the pool and this pod shape.
        let rank_input = rank::RankInput {
            node_pool: pool.name.clone(),
            now: input.now / 1000,
            seed: input.seed,
            pods: vec![rank::PodShape {
                count: keys.len() as u32,
                cpu_millis: facts.requests.cpu_millis.max(0) as u64,
                memory_mib: (facts.requests.memory_bytes.max(0) >> 20) as u64,
                gpus: facts.requests.gpus.max(0) as u32,
            }],
            offerings: rank::Offerings {
                instance_type: fitting.iter().map(|f| f.1 as u32).collect(),
                zone: fitting
                    .iter()
                    .map(|f| ctx.zones.get(f.0.zone.as_str()).copied().unwrap_or(0))
                    .collect(),
                capacity_type: fitting
                    .iter()
                    .map(|f| match f.0.capacity_type {
                        CapacityType::OnDemand => 0,
                        CapacityType::Spot => 1,
                        CapacityType::Reserved => 2,
                    })
                    .collect(),
                price: fitting.iter().map(|f| f.0.price).collect(),
                interruption: fitting
                    .iter()
                    .map(|f| {
                        if f.0.capacity_type == CapacityType::Spot {
                            -1.0
                        } else {
                            0.0
                        }
                    })
                    .collect(),
                capacity_score: vec![-1.0; fitting.len()],
                pods_per_node: fitting.iter().map(|f| f.2 as u32).collect(),
            },
            min_values: Vec::new(),
        };
        let verdict = self.ranker.rank(&rank_input);
        if let Some(f) = &verdict.fallback {
            plan.policy_fallbacks.push(format!(
                "{} ({}): {:?}: {}",
                f.policy, pool.name, f.kind, f.detail
            ));
        }
        // Cost per pod by the ranker's score; offerings the ranker left out are not launched.
        let mut scored: Vec<(f64, i64, &Offering)> = verdict
            .value
            .order
            .iter()
            .zip(&verdict.value.scores)
            .filter_map(|(&i, &score)| {
                let (o, _, per_node) = fitting.get(i as usize)?;
                Some((score / *per_node as f64, *per_node, *o))
            })
            .collect();
        if scored.is_empty() {
            return Err(format!("ranker {} left no offering", verdict.decided_by));
        }
        scored.sort_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then(a.2.instance_type.cmp(&b.2.instance_type))
                .then(a.2.zone.cmp(&b.2.zone))
                .then(a.2.capacity_type.cmp(&b.2.capacity_type))
        });
        let (best_score, per_node, best) = scored[0];
        let it = &input.instance_types[ctx.types[best.instance_type.as_str()]];
        let spread_zones = spreads_by_zone(facts);
        let zones: Vec<&str> = {
            let mut z: Vec<&str> = scored.iter().map(|s| s.2.zone.as_str()).collect();
            z.sort();
            z.dedup();
            z
        };
        let mut placed = 0;
        for (n, chunk) in keys.chunks(per_node as usize).enumerate() {
            let used = usage.get(&pool.name).copied().unwrap_or_default();
            let after = used.plus(&it.allocatable);
            if let Some(limit) = &pool.limits
                && (after.cpu_millis > limit.cpu_millis
                    || after.memory_bytes > limit.memory_bytes
                    || after.gpus > limit.gpus)
            {
                if placed == 0 {
                    return Err("NodePool limits reached".into());
                }
                break;
            }
            usage.insert(pool.name.clone(), after);
            // Alternatives that hold this chunk, best first; zone-spread pods rotate the zone per claim.
            let zone = spread_zones.then(|| zones[n % zones.len()]);
            let offerings: Vec<Offering> = scored
                .iter()
                .filter(|(_, cap, o)| {
                    *cap >= chunk.len() as i64 && zone.is_none_or(|z| o.zone == z)
                })
                .take(OFFERINGS_PER_CLAIM)
                .map(|(_, _, o)| (*o).clone())
                .collect();
            plan.claims.push(PlannedClaim {
                node_pool: pool.name.clone(),
                explanation: format!(
                    "{} pods of {}: {} {} {} at ${:.4}/h (score ${:.4}/pod-hour by {}, best of {} offerings)",
                    chunk.len(),
                    facts.workload,
                    best.instance_type,
                    best.zone,
                    best.capacity_type.label(),
                    best.price,
                    best_score,
                    verdict.decided_by,
                    scored.len()
                ),
                offerings,
                pods: chunk.to_vec(),
                core: None,
            });
            placed += chunk.len();
        }
        Ok(placed)
    }
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
        .and_then(|p| {
            p.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
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
