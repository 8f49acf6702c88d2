//! Karpenter's scheduling benchmark mix for `kestrel bench pack --karpenter-mix N,...`: the pods of its
//! `makeDiversePods` (pkg/controllers/provisioning/scheduling/scheduling_benchmark_test.go in
//! kubernetes-sigs/karpenter), a Karpenter-style greedy that honours the same constraints, and the
//! result line with every constraint checked on both plans by `provisioning::check`.
//!
//! The six equal parts (the remainder goes to the first): unconstrained; zone topology spread and
//! hostname topology spread (`maxSkew: 1`, `DoNotSchedule`, selecting a random `my-label`); hostname and
//! zone pod affinity (each pod labelled with a random `my-affininity` value and requiring a random one);
//! hostname anti-affinity among all pods of that part (`app: nginx`). Label values are drawn from a–g,
//! CPU from {100m, 250m, 500m, 1000m, 1500m}, memory from {100Mi, 256Mi, 512Mi, 1Gi, 2Gi, 4Gi}, as
//! Karpenter's generator does (seeded: the same pods every run; Go's random sequence is not
//! reproduced, its distribution is).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::model::{
    Catalog, LabelSelector, NodePool, Pod, PodAffinityTerm, PodSpec, Quantity, Requirements,
    ResourceList, Snapshot, TopologySpread, WhenUnsatisfiable, labels,
};
use crate::provisioning::check::{self, Domain, Topology};
use crate::provisioning::{self, PlannedClaim, ProvisioningPlan, RankedOffering};

const VALUES: [&str; 7] = ["a", "b", "c", "d", "e", "f", "g"];
const CPU_MILLIS: [i64; 5] = [100, 250, 500, 1000, 1500];
const MEMORY_MI: [i64; 6] = [100, 256, 512, 1024, 2048, 4096];

/// The six parts, in Karpenter's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Part {
    Generic,
    ZoneSpread,
    HostnameSpread,
    HostnameAffinity,
    ZoneAffinity,
    HostnameAntiAffinity,
}

fn label(key: &str, value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(key.to_string(), value.to_string())])
}

fn spec_for(part: Part, own: &str, target: &str, cpu: i64, mem: i64) -> PodSpec {
    let requests = ResourceList::new()
        .with("cpu", Quantity::from_millis(cpu as i128))
        .with("memory", Quantity::from_units(mem * 1024 * 1024));
    let mut s = PodSpec::with_requests("default", requests);
    let spread = |key: &str| TopologySpread {
        max_skew: 1,
        topology_key: key.to_string(),
        when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
        selector: LabelSelector::from_labels(&label("my-label", target)),
        min_domains: None,
    };
    let affinity = |key: &str| PodAffinityTerm {
        selector: LabelSelector::from_labels(&label("my-affininity", target)),
        namespaces: vec![],
        topology_key: key.to_string(),
    };
    match part {
        Part::Generic => s.labels = label("my-label", own),
        Part::ZoneSpread => {
            s.labels = label("my-label", own);
            s.topology_spread.push(spread(labels::ZONE));
        }
        Part::HostnameSpread => {
            s.labels = label("my-label", own);
            s.topology_spread.push(spread(labels::HOSTNAME));
        }
        Part::HostnameAffinity => {
            s.labels = label("my-affininity", own);
            s.pod_affinity.push(affinity(labels::HOSTNAME));
        }
        Part::ZoneAffinity => {
            s.labels = label("my-affininity", own);
            s.pod_affinity.push(affinity(labels::ZONE));
        }
        Part::HostnameAntiAffinity => {
            s.labels = label("app", "nginx");
            s.pod_anti_affinity.push(PodAffinityTerm {
                selector: LabelSelector::from_labels(&label("app", "nginx")),
                namespaces: vec![],
                topology_key: labels::HOSTNAME.to_string(),
            });
        }
    }
    s
}

/// Karpenter's `makeDiversePods(count)`: six equal parts, the remainder unconstrained. Pods with equal
/// specs share one `Arc` (as replicas of one template would).
pub fn diverse_pods(count: usize, seed: u64) -> Vec<Pod> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut specs: HashMap<(Part, usize, usize, usize, usize), Arc<PodSpec>> = HashMap::new();
    let part_size = count / 6;
    let mut parts: Vec<(Part, usize)> = [
        Part::Generic,
        Part::ZoneSpread,
        Part::HostnameSpread,
        Part::HostnameAffinity,
        Part::ZoneAffinity,
        Part::HostnameAntiAffinity,
    ]
    .into_iter()
    .map(|p| (p, part_size))
    .collect();
    parts.push((Part::Generic, count - 6 * part_size));
    let mut pods = Vec::with_capacity(count);
    for (n, (part, size)) in parts.into_iter().enumerate() {
        for i in 0..size {
            // Draw in Karpenter's order: the pod's labels, then its selector, then CPU, then memory.
            let own = rng.random_range(0..VALUES.len());
            let target = match part {
                Part::ZoneSpread
                | Part::HostnameSpread
                | Part::HostnameAffinity
                | Part::ZoneAffinity => rng.random_range(0..VALUES.len()),
                Part::Generic | Part::HostnameAntiAffinity => 0,
            };
            let cpu = rng.random_range(0..CPU_MILLIS.len());
            let mem = rng.random_range(0..MEMORY_MI.len());
            let spec = specs
                .entry((part, own, target, cpu, mem))
                .or_insert_with(|| {
                    Arc::new(spec_for(
                        part,
                        VALUES[own],
                        VALUES[target],
                        CPU_MILLIS[cpu],
                        MEMORY_MI[mem],
                    ))
                })
                .clone();
            pods.push(Pod::new(format!("mix{n}-{part:?}-{i}"), spec));
        }
    }
    pods
}

/// A snapshot with one unconstrained on-demand NodePool over every instance type of the embedded
/// catalog, and `count` pods of the mix pending.
pub fn snapshot(catalog: Arc<Catalog>, count: usize) -> anyhow::Result<Snapshot> {
    let mut pool = NodePool::new("default");
    pool.requirements.push(crate::model::Requirement::parse(
        labels::CAPACITY_TYPE,
        "In",
        &["on-demand".to_string()],
    )?);
    let mut snapshot = Snapshot::new(0, catalog);
    snapshot.node_pools.push(pool);
    snapshot.pods = diverse_pods(count, 42);
    Ok(snapshot)
}

/// A claim of the greedy: its zone, the pods, their load and the instance types that still hold it.
struct GreedyClaim {
    name: String,
    zone: String,
    pods: Vec<usize>,
    load: ResourceList,
    /// Indexes into the pool's instance types, still holding `load`.
    types: Vec<usize>,
    /// The most of each resource any of `types` offers (a fast "cannot hold" test).
    ceiling: ResourceList,
}

/// Karpenter's greedy with the constraints honoured: pods by CPU then memory, largest first; each joins
/// the first open claim that some instance type still holds and whose domains its constraints admit,
/// else opens a claim in the first zone they admit; pods that fail are tried again while a pass places
/// something; each claim buys the cheapest offering holding it.
/// The plan it returns is checked like Kestrel's.
pub fn greedy(snapshot: &Snapshot) -> ProvisioningPlan {
    let catalog = &snapshot.catalog;
    let pool = &snapshot.node_pools[0];
    let reqs = pool.compiled_requirements();
    // The pool's instance types (one entry per type) and the offerings per (type, zone).
    let mut types: Vec<usize> = Vec::new();
    let mut offering_at: HashMap<(usize, &str), usize> = HashMap::new();
    for (i, o) in catalog.offerings.iter().enumerate() {
        let mut l = catalog.offering_labels(o);
        l.insert(labels::NODE_POOL.into(), pool.name.clone());
        if !o.available || !reqs.allows_labels(&l) {
            continue;
        }
        if !types.contains(&o.instance_type) {
            types.push(o.instance_type);
        }
        let e = offering_at
            .entry((o.instance_type, o.zone.as_str()))
            .or_insert(i);
        if catalog.offerings[*e].price > o.price {
            *e = i;
        }
    }
    // Largest first; within equal sizes the planner's order, so both see pods alike.
    let mut order: Vec<usize> = (0..snapshot.pods.len()).collect();
    check::planner_order(snapshot, &mut order);
    let mut topology = Topology::new(snapshot, order.iter().map(|&p| &snapshot.pods[p].spec));
    let zones = catalog.zones();
    let mut claims: Vec<GreedyClaim> = Vec::new();
    let mut plan = ProvisioningPlan::default();
    let domain_of = |name: &str, zone: &str, key: &str| -> Domain {
        Ok(match key {
            labels::HOSTNAME => Some(name.to_string()),
            labels::ZONE => Some(zone.to_string()),
            labels::CAPACITY_TYPE => Some("on-demand".to_string()),
            labels::NODE_POOL => Some(pool.name.clone()),
            _ => None,
        })
    };
    // As Karpenter's scheduler, pods that fail (a pod affinity whose target comes later) are tried
    // again while a pass places something.
    let mut queue = order;
    loop {
        let mut failed = Vec::new();
        for &p in &queue {
            let spec = &snapshot.pods[p].spec;
            let allowed = |t: usize| {
                let ty = &catalog.instance_types[t];
                spec.node_terms
                    .iter()
                    .any(|term| term.allows_labels(&ty.labels))
            };
            let mut placed = false;
            for c in claims.iter_mut() {
                let load = c.load.plus(&spec.requests);
                if !load.fits_in(&c.ceiling) {
                    continue;
                }
                if topology
                    .admits(spec, &|k| domain_of(&c.name, &c.zone, k))
                    .is_err()
                {
                    continue;
                }
                let left: Vec<usize> = c
                    .types
                    .iter()
                    .copied()
                    .filter(|&t| allowed(t) && load.fits_in(&catalog.instance_types[t].allocatable))
                    .collect();
                if left.is_empty() {
                    continue;
                }
                topology.record(spec, &|k| domain_of(&c.name, &c.zone, k));
                c.ceiling = ceiling(catalog, &left);
                c.types = left;
                c.load = load;
                c.pods.push(p);
                placed = true;
                break;
            }
            if placed {
                continue;
            }
            let fitting: Vec<usize> = types
                .iter()
                .copied()
                .filter(|&t| {
                    allowed(t)
                        && spec
                            .requests
                            .fits_in(&catalog.instance_types[t].allocatable)
                })
                .collect();
            let name = format!("greedy-{}", claims.len());
            let zone = zones.iter().find(|z| {
                fitting
                    .iter()
                    .any(|&t| offering_at.contains_key(&(t, z.as_str())))
                    && topology.admits(spec, &|k| domain_of(&name, z, k)).is_ok()
            });
            let Some(zone) = zone else {
                failed.push(p);
                continue;
            };
            topology.record(spec, &|k| domain_of(&name, zone, k));
            claims.push(GreedyClaim {
                ceiling: ceiling(catalog, &fitting),
                name,
                zone: zone.clone(),
                pods: vec![p],
                load: spec.requests.clone(),
                types: fitting,
            });
        }
        if failed.is_empty() || failed.len() == queue.len() {
            for p in failed {
                plan.unschedulable.push(provisioning::Unschedulable {
                    pod: p,
                    reasons: vec![(
                        "greedy".into(),
                        "no open claim or zone admits the pod".into(),
                    )],
                });
            }
            break;
        }
        queue = failed;
    }
    for c in claims {
        let best = c
            .types
            .iter()
            .filter_map(|&t| offering_at.get(&(t, c.zone.as_str())).copied())
            .min_by(|a, b| {
                catalog.offerings[*a]
                    .price
                    .total_cmp(&catalog.offerings[*b].price)
            })
            .expect("a claim keeps a type offered in its zone");
        let o = &catalog.offerings[best];
        plan.claims.push(PlannedClaim {
            node_pool: pool.name.clone(),
            pods: c.pods,
            offerings: vec![RankedOffering {
                offering: best,
                instance_type: catalog.instance_types[o.instance_type].name.clone(),
                zone: o.zone.clone(),
                capacity_type: o.capacity_type,
                price: o.price,
                score: o.price,
            }],
            requirements: Requirements::new(),
            requests: c.load,
            labels: BTreeMap::from([(labels::HOSTNAME.to_string(), c.name)]),
            taints: pool.taints.clone(),
            startup_taints: vec![],
            explanation: "karpenter-style greedy".into(),
        });
    }
    plan
}

fn ceiling(catalog: &Catalog, types: &[usize]) -> ResourceList {
    let mut c = ResourceList::new();
    for &t in types {
        c.max_with(&catalog.instance_types[t].allocatable);
    }
    c
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Plans the mix of `count` pods with Kestrel and with the greedy, checks both, one JSON line.
pub fn bench(
    catalog: Arc<Catalog>,
    count: usize,
    rankers: &mut dyn provisioning::RankerProvider,
) -> anyhow::Result<serde_json::Value> {
    let snapshot = snapshot(catalog, count)?;
    let started = Instant::now();
    let plan = provisioning::plan(&snapshot, rankers);
    let seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let greedy = greedy(&snapshot);
    let greedy_seconds = started.elapsed().as_secs_f64();
    let violations = check::check_plan(&snapshot, &plan);
    let greedy_violations = check::check_plan(&snapshot, &greedy);
    let mut by_rule: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &violations {
        *by_rule.entry(v.rule).or_default() += 1;
    }
    let cost = plan.cost_per_hour();
    let greedy_cost = greedy.cost_per_hour();
    Ok(serde_json::json!({
        "workload": format!("karpenter-mix-{count}"),
        "pods": count,
        "instanceTypes": snapshot.catalog.instance_types.len(),
        "zones": snapshot.catalog.zones().len(),
        "seconds": round(seconds, 4),
        "podsPerSecond": round(count as f64 / seconds.max(1e-9), 0),
        "nodes": plan.claims.len(),
        "costUsdPerHour": round(cost, 4),
        "unschedulable": plan.unschedulable.len(),
        "firstUnschedulable": plan.unschedulable.first().map(|u| format!("{} {u}", snapshot.pods[u.pod].name)),
        "violations": violations.len(),
        "violationsByRule": by_rule,
        "firstViolation": violations.first().map(|v| v.to_string()),
        "greedy": {
            "seconds": round(greedy_seconds, 4),
            "podsPerSecond": round(count as f64 / greedy_seconds.max(1e-9), 0),
            "nodes": greedy.claims.len(),
            "costUsdPerHour": round(greedy_cost, 4),
            "unschedulable": greedy.unschedulable.len(),
            "violations": greedy_violations.len(),
        },
        "ratioToGreedy": round(cost / greedy_cost.max(1e-9), 4),
    }))
}

/// `replicas` pods that each need their own node (required hostname anti-affinity among them) planned
/// in one batch over the whole catalog: one JSON line with the decision time, so the cost per replica
/// shows at several sizes.
pub fn bench_anti_affinity(
    catalog: Arc<Catalog>,
    replicas: usize,
    rankers: &mut dyn provisioning::RankerProvider,
) -> anyhow::Result<serde_json::Value> {
    let mut snapshot = snapshot(catalog, 0)?;
    let mut spec = spec_for(Part::HostnameAntiAffinity, "", "", 500, 512);
    spec.labels = label("app", "nginx");
    snapshot.pods = Pod::replicas("anti", Arc::new(spec), replicas);
    let started = Instant::now();
    let plan = provisioning::plan(&snapshot, rankers);
    let seconds = started.elapsed().as_secs_f64();
    let violations = check::check_plan(&snapshot, &plan);
    Ok(serde_json::json!({
        "workload": format!("hostname-anti-affinity-{replicas}"),
        "nodes": plan.claims.len(),
        "unschedulable": plan.unschedulable.len(),
        "violations": violations.len(),
        "seconds": round(seconds, 4),
        "microsecondsPerReplica": round(seconds * 1e6 / replicas.max(1) as f64, 1),
    }))
}
