//! Property tests over random clusters: budgets, PDBs, do-not-disrupt and fit hold for every pass.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;

use super::budget::budget_limit;
use super::room::Room;
use super::*;
use crate::api::nodepool::DisruptionReason as ApiReason;
use crate::cloud::CapacityType;
use crate::cluster::{OwnerKind, PodSpecFacts, ResourceList, capacity, facts_from_yaml};
use crate::policy::native::{NativeBudgeter, NativeConsolidator};

const GIB: i64 = 1 << 30;

fn types() -> Vec<InstanceTypeInfo> {
    [
        ("m.large", 2, 8, 0.10),
        ("m.xlarge", 4, 16, 0.20),
        ("m.2xlarge", 8, 32, 0.40),
    ]
    .iter()
    .map(|&(name, cpu, mem, price)| InstanceTypeInfo {
        name: name.into(),
        labels: Default::default(),
        allocatable: capacity(cpu * 1000, mem * GIB, 110),
        on_demand_price: price,
        offered_zones: None,
    })
    .collect()
}

#[derive(Debug, Clone)]
struct PodGen {
    cpu: i64,
    app: u8,
    do_not_disrupt: bool,
    bare: bool,
}

fn facts(p: &PodGen) -> Arc<PodSpecFacts> {
    let owner = if p.bare {
        OwnerKind::None
    } else {
        OwnerKind::Deployment
    };
    let facts = facts_from_yaml(
        &format!("app{}", p.app),
        owner,
        &format!(
            "metadata: {{labels: {{app: app{}}}, annotations: {{karpenter.sh/do-not-disrupt: '{}'}}}}\nspec: {{containers: [{{name: c, resources: {{requests: {{cpu: {}m, memory: '{}'}}}}}}]}}\n",
            p.app,
            p.do_not_disrupt,
            p.cpu,
            p.cpu * GIB / 1000
        ),
    );
    debug_assert_eq!(facts.requests().cpu.millis(), i128::from(p.cpu));
    facts
}

fn view(nodes: Vec<NodeGen>, budget: &str, pdb_allowed: i64, disrupting: usize) -> ClusterView {
    let types = types();
    let spec = PoolSpec {
        name: "pool".into(),
        ..Default::default()
    };
    let mut out = Vec::new();
    for (i, (t, spot, pods)) in nodes.into_iter().enumerate() {
        let it = &types[t % types.len()];
        let pods: Vec<PodState> = pods
            .iter()
            .enumerate()
            .map(|(k, p)| PodState {
                key: Arc::from(format!("n{i}-p{k}")),
                facts: facts(p),
                created_at: 0,
                node: Some(Arc::from(format!("node-{i}"))),
                bound_at: Some(0),
                nominated: None,
            })
            .collect();
        let requested = pods
            .iter()
            .fold(ResourceList::default(), |a, p| a.plus(p.facts.requests()));
        let node = NodeState {
            name: Arc::from(format!("node-{i}")),
            instance_id: format!("i-{i}"),
            claim: format!("c-{i}"),
            node_pool: "pool".into(),
            instance_type: it.name.clone(),
            zone: "z".into(),
            capacity_type: if spot {
                CapacityType::Spot
            } else {
                CapacityType::OnDemand
            },
            price: it.on_demand_price * if spot { 0.4 } else { 1.0 },
            labels: BTreeMap::new().into(),
            annotations: Default::default(),
            taints: vec![],
            allocatable: it.allocatable.clone(),
            requested,
            pods: pods.len(),
            created_at: 0,
            ready: true,
            cordoned: false,
            deleting: false,
        };
        out.push(NodeView {
            node: Arc::new(node),
            pods,
            stamp: DriftStamp::default(),
            do_not_disrupt: false,
            last_pod_change: 0,
            expiring_since: None,
        });
    }
    let disrupting: BTreeSet<String> = out
        .iter()
        .take(disrupting)
        .map(|n| n.name().to_string())
        .collect();
    let offerings: Vec<Offering> = types
        .iter()
        .map(|t| Offering {
            instance_type: t.name.clone(),
            zone: "z".into(),
            capacity_type: CapacityType::OnDemand,
            price: t.on_demand_price,
        })
        .collect();
    let shared: Vec<Arc<Offering>> = offerings.iter().cloned().map(Arc::new).collect();
    let launchable = super::room::launchables(
        &spec,
        &BTreeMap::new(),
        &types,
        &shared,
        &mut Default::default(),
    )
    .into();
    ClusterView {
        now: 3_600_000,
        nodes: out,
        pools: vec![PoolSettings {
            spec,
            consolidation_policy: ConsolidationPolicy::WhenEmptyOrUnderutilized,
            consolidate_after: Some(0),
            expire_after: None,
            termination_grace_period: None,
            budgets: vec![Budget {
                nodes: budget.into(),
                schedule: None,
                duration: None,
                reasons: None,
            }],
            drift: DriftStamp::default(),
            launchable,
        }],
        pdbs: vec![PdbView {
            name: "pdb0".into(),
            selector: BTreeMap::from([("app".into(), "app0".into())]),
            allowed: pdb_allowed,
        }],
        instance_types: types.into(),
        offerings: offerings.into(),
        disrupting,
        in_flight_claims: 0,
        pending_pods: 0,
    }
}

fn pod_gen() -> impl Strategy<Value = PodGen> {
    (
        prop_oneof![Just(250i64), Just(500), Just(1000), Just(2000)],
        0u8..3,
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(cpu, app, do_not_disrupt, bare)| PodGen {
            cpu,
            app,
            do_not_disrupt,
            bare,
        })
}

/// (instance type, spot, pods) per node.
type NodeGen = (usize, bool, Vec<PodGen>);

fn cluster() -> impl Strategy<Value = (Vec<NodeGen>, String, i64, usize)> {
    (
        prop::collection::vec(
            (
                0usize..3,
                prop::bool::weighted(0.2),
                prop::collection::vec(pod_gen(), 0..5),
            ),
            1..12,
        ),
        prop_oneof![
            Just("1".to_string()),
            Just("2".to_string()),
            Just("10%".to_string()),
            Just("50%".to_string()),
            Just("0".to_string())
        ],
        0i64..3,
        0usize..2,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn voluntary_moves_keep_budgets_pdbs_do_not_disrupt_and_fit((nodes, budget, pdb_allowed, disrupting) in cluster()) {
        let view = view(nodes, &budget, pdb_allowed, disrupting);
        let decision = decide(
            &view,
            &mut crate::disruption::SamePolicies {
                consolidator: Box::new(NativeConsolidator),
                budgeter: Box::new(NativeBudgeter),
            },
        );
        let total = view.nodes.len() as u32;
        let limit = budget_limit(&view.pools[0].budgets, ApiReason::Underutilized, total, view.now);
        let voluntary: Vec<&Command> = decision.commands.iter().filter(|c| c.method != Method::Expiration).collect();
        // Budgets: what is already disrupting plus what this pass starts stays within the limit.
        let started: usize = voluntary.iter().map(|c| c.nodes.len()).sum();
        prop_assert!(view.disrupting.len() + started <= (limit as usize).max(view.disrupting.len()),
            "{} disrupting + {started} started > limit {limit}", view.disrupting.len());
        let removed: BTreeSet<&str> = voluntary.iter().flat_map(|c| c.nodes.iter().map(String::as_str)).collect();
        let mut evicted = Vec::new();
        for n in view.nodes.iter().filter(|n| removed.contains(n.name())) {
            prop_assert!(!view.disrupting.contains(n.name()));
            for p in &n.pods {
                // No do-not-disrupt (or controller-less) pod is evicted by a voluntary method.
                prop_assert!(!p.facts.do_not_disrupt(), "do-not-disrupt pod {} evicted", p.key);
                prop_assert!(p.facts.owner != OwnerKind::None);
                evicted.push(p);
            }
        }
        // PDBs: no eviction under a PDB that allows none.
        let under_pdb = evicted.iter().filter(|p| view.pdbs[0].selects(p)).count() as i64;
        prop_assert!(under_pdb == 0 || view.pdbs[0].allowed >= 1);
        // Fit: every evicted pod fits on the nodes that stay (with the other moves' pods) or on its
        // move's replacement.
        let mut room = Room::new(view.nodes.iter().map(|n| (&*n.node, n.pods.as_slice())));
        let mut gone: BTreeSet<&str> = removed.clone();
        gone.extend(view.disrupting.iter().map(String::as_str));
        room.remove(&gone);
        let replaced: BTreeSet<String> = voluntary.iter().filter_map(|c| c.replacement.as_ref()).flat_map(|r| r.pods.iter().map(|k| k.to_string())).collect();
        let to_place: Vec<&PodState> = evicted.iter().copied().filter(|p| !replaced.contains(&*p.key)).collect();
        let placed = room.place(&to_place);
        prop_assert!(placed.iter().all(Option::is_some), "pods without room after the moves");
        for c in &voluntary {
            if let Some(r) = &c.replacement {
                let it = view.instance_type(&r.offerings[0].instance_type).unwrap();
                let need = evicted.iter().filter(|p| r.pods.contains(&p.key)).fold(ResourceList::default(), |a, p| a.plus(p.facts.requests()));
                prop_assert!(need.fits_in(&it.allocatable));
                let saved: f64 = c.nodes.iter().map(|n| view.nodes.iter().find(|v| v.name() == n).unwrap().node.price).sum();
                prop_assert!(r.offerings[0].price < saved || c.method == Method::Drift);
            }
        }
    }
}
