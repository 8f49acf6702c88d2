//! Policy inputs of production size, generated deterministically for `kestrel policy bench`: what the
//! controller hands each kind of policy on a large NodePool, built from the embedded EC2 catalog.
//!
//! - rank: the embedded catalog in three zones, every priced type on-demand and (for most types) spot,
//!   as the planner lowers it (`contract_catalog`, offerings by index); the first `n` offerings of it.
//! - consolidate: `n` nodes of real types at their on-demand prices, and the moves the disruption pass
//!   would propose for them: a delete per empty node, up to 50 drifted and 50 underutilized single-node
//!   moves (`MAX_SINGLE_NODE_MOVES`), one multi-node move over up to 100 nodes
//!   (`MAX_MULTI_NODE_CANDIDATES`).
//! - budget: Karpenter's usual three budgets (a percentage, a scheduled freeze, a per-reason count) over
//!   `n` nodes.
use crate::disruption::{MAX_MULTI_NODE_CANDIDATES, MAX_SINGLE_NODE_MOVES};
use crate::model::{CapacityType, Catalog, InstanceType, SpotQuote};
use crate::policy::contract::{budget, consolidate, rank};
use crate::provisioning::ranking::contract_catalog;

/// The zones of the generated catalog.
const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
/// Unix seconds of every generated input (a fixed instant: the inputs repeat exactly).
const NOW: i64 = 1_700_000_000;

/// A xorshift stream: the same inputs on every run and machine.
struct Stream(u64);

impl Stream {
    fn new(seed: u64) -> Self {
        Stream(seed | 1)
    }

    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A draw in [0, 1) fixed by `key` and `salt` (FNV-1a, then a xorshift round).
fn unit(key: &str, salt: u64) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
    for b in key.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    Stream::new(h).next()
}

/// The embedded EC2 catalog in [`ZONES`], with a spot quote for 90 % of the (type, zone) pairs at 30 to
/// 45 % of the on-demand price (each pair's draws fixed by its names).
pub fn catalog() -> anyhow::Result<Catalog> {
    let prices =
        crate::model::catalog::ec2_on_demand_prices().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Catalog::ec2(&ZONES, |t: &InstanceType, zone| {
        let key = format!("{}/{zone}", t.name);
        let on_demand = prices.get(&t.name).copied()?;
        (unit(&key, 1) < 0.9).then(|| SpotQuote {
            price: on_demand * (0.30 + unit(&key, 2) * 0.15),
            interruption: (unit(&key, 3) * 0.25) as f32,
            capacity_score: unit(&key, 4) as f32,
            available: true,
        })
    })?)
}

/// The contract catalog and a rank input with the first `n` offerings of [`catalog`] (all of them when
/// it has fewer): a batch of 40 web pods.
pub fn rank(catalog: &Catalog, n: usize) -> (rank::Catalog, rank::RankInput) {
    let lowered = contract_catalog(catalog);
    let zones = catalog.zones();
    let mut o = rank::Offerings {
        instance_type: vec![],
        zone: vec![],
        capacity_type: vec![],
        price: vec![],
        interruption: vec![],
        capacity_score: vec![],
        pods_per_node: vec![],
    };
    for offering in catalog.offerings.iter().take(n) {
        let t = &lowered.instance_types[offering.instance_type];
        o.instance_type.push(offering.instance_type as u32);
        o.zone.push(
            zones
                .iter()
                .position(|z| *z == offering.zone)
                .expect("an offering's zone is one of the catalog's") as u32,
        );
        o.capacity_type.push(offering.capacity_type.code());
        o.price.push(offering.price);
        o.interruption.push(offering.interruption);
        o.capacity_score.push(offering.capacity_score);
        // 500m / 1 GiB pods: as many as cpu, memory and the pod limit allow.
        let fit = (t.cpu_millis / 500)
            .min(t.memory_mib / 1024)
            .min(t.pods as u64);
        o.pods_per_node.push(fit.clamp(1, 40) as u32);
    }
    let family = lowered
        .label_keys
        .iter()
        .position(|k| k == "karpenter.k8s.aws/instance-family");
    let input = rank::RankInput {
        node_pool: "bench".into(),
        now: NOW,
        seed: 7,
        pods: vec![rank::PodShape {
            count: 40,
            cpu_millis: 500,
            memory_mib: 1024,
            gpus: 0,
        }],
        offerings: o,
        min_values: family
            .map(|key| rank::MinValues {
                key: key as u32,
                min: 3,
            })
            .into_iter()
            .collect(),
    };
    (lowered, input)
}

/// A consolidation input over `n` nodes of the catalog's types (see the module comment).
pub fn consolidate(catalog: &Catalog, n: usize) -> consolidate::ConsolidateInput {
    let mut stream = Stream::new(n as u64 ^ 0x5851_f42d_4c95_7f2d);
    let on_demand: Vec<_> = catalog
        .offerings
        .iter()
        .filter(|o| o.capacity_type == CapacityType::OnDemand && o.zone == ZONES[0])
        .collect();
    let nodes: Vec<consolidate::NodeInfo> = (0..n)
        .map(|i| {
            let o = on_demand[(stream.next() * on_demand.len() as f64) as usize];
            // One node in ten is empty; the rest are 10 to 90 % used.
            let empty = i % 10 == 3;
            let used = if empty {
                0.0
            } else {
                0.1 + stream.next() * 0.8
            };
            consolidate::NodeInfo {
                instance_type: catalog.instance_types[o.instance_type].name.clone(),
                zone: ZONES[i % ZONES.len()].into(),
                capacity_type: if i % 3 == 0 {
                    CapacityType::Spot.code()
                } else {
                    CapacityType::OnDemand.code()
                },
                price: o.price,
                age_seconds: (stream.next() * 7.0 * 86_400.0) as u64,
                cpu_utilization: used as f32,
                memory_utilization: (used * (0.6 + stream.next() * 0.4)) as f32,
                pods: if empty { 0 } else { 1 + (used * 30.0) as u32 },
            }
        })
        .collect();
    type Proposal = (
        consolidate::MoveKind,
        consolidate::DisruptionReason,
        Vec<u32>,
        Option<(String, f64)>,
    );
    let mut moves: Vec<Proposal> = Vec::new();
    let empty: Vec<u32> = (0..n as u32)
        .filter(|&i| nodes[i as usize].pods == 0)
        .collect();
    let busy: Vec<u32> = (0..n as u32)
        .filter(|&i| nodes[i as usize].pods > 0)
        .collect();
    let cheapest = on_demand
        .iter()
        .min_by(|a, b| a.price.total_cmp(&b.price))
        .expect("the catalog has on-demand offerings");
    let cheapest = (
        catalog.instance_types[cheapest.instance_type].name.clone(),
        cheapest.price,
    );
    for &i in &empty {
        moves.push((
            consolidate::MoveKind::Delete,
            consolidate::DisruptionReason::Empty,
            vec![i],
            None,
        ));
    }
    for &i in busy.iter().step_by(7).take(MAX_SINGLE_NODE_MOVES) {
        // Drift replaces a node with its own kind, at its price: no saving.
        let node = &nodes[i as usize];
        moves.push((
            consolidate::MoveKind::Replace,
            consolidate::DisruptionReason::Drifted,
            vec![i],
            Some((node.instance_type.clone(), node.price)),
        ));
    }
    let underutilized: Vec<u32> = busy
        .iter()
        .copied()
        .filter(|&i| nodes[i as usize].cpu_utilization < 0.5)
        .collect();
    if underutilized.len() > 1 {
        let group: Vec<u32> = underutilized
            .iter()
            .copied()
            .take(MAX_MULTI_NODE_CANDIDATES)
            .collect();
        moves.push((
            consolidate::MoveKind::Delete,
            consolidate::DisruptionReason::Underutilized,
            group,
            None,
        ));
    }
    for (k, &i) in underutilized.iter().take(MAX_SINGLE_NODE_MOVES).enumerate() {
        let replacement =
            (k % 2 == 0 && nodes[i as usize].price > cheapest.1).then(|| cheapest.clone());
        // Every other one has a cheaper replacement; the rest are plain deletions.
        let kind = if replacement.is_some() {
            consolidate::MoveKind::Replace
        } else {
            consolidate::MoveKind::Delete
        };
        moves.push((
            kind,
            consolidate::DisruptionReason::Underutilized,
            vec![i],
            replacement,
        ));
    }
    let moves = moves
        .into_iter()
        .enumerate()
        .map(|(id, (kind, reason, members, replacement))| {
            let pods_moved: u32 = members.iter().map(|&i| nodes[i as usize].pods).sum();
            let removed: f64 = members.iter().map(|&i| nodes[i as usize].price).sum();
            consolidate::CandidateMove {
                id: id as u32,
                kind,
                reason,
                nodes: members,
                replacement_price: replacement.as_ref().map(|(_, p)| *p),
                savings_per_hour: removed - replacement.as_ref().map_or(0.0, |(_, p)| *p),
                replacement_type: replacement.map(|(t, _)| t),
                pods_moved,
                disruption_cost: f64::from(pods_moved),
            }
        })
        .collect();
    consolidate::ConsolidateInput {
        node_pool: "bench".into(),
        now: NOW,
        nodes,
        moves,
    }
}

/// A budget input over `n` nodes: `nodes: 10%`, a weekday freeze (`0 9 * * 1-5` for 8 h, not in
/// force), and `nodes: 5` for drift; a tenth of the nodes are candidates for each reason.
pub fn budget(n: usize) -> budget::BudgetInput {
    let n = n as u32;
    let reason_count = |reason| budget::ReasonCount {
        reason,
        count: n / 10,
    };
    budget::BudgetInput {
        node_pool: "bench".into(),
        now: NOW,
        budgets: vec![
            budget::Budget {
                nodes: budget::BudgetNodes::Percent(10),
                schedule: None,
                duration_seconds: None,
                reasons: vec![],
                active: true,
            },
            budget::Budget {
                nodes: budget::BudgetNodes::Count(0),
                schedule: Some("0 9 * * 1-5".into()),
                duration_seconds: Some(8 * 3600),
                reasons: vec![],
                active: false,
            },
            budget::Budget {
                nodes: budget::BudgetNodes::Count(5),
                schedule: None,
                duration_seconds: None,
                reasons: vec![budget::DisruptionReason::Drifted],
                active: true,
            },
        ],
        total_nodes: n,
        disrupting: n / 50,
        candidates: vec![
            reason_count(budget::DisruptionReason::Empty),
            reason_count(budget::DisruptionReason::Underutilized),
            reason_count(budget::DisruptionReason::Drifted),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rank_input_is_the_embedded_catalog_in_three_zones_cut_to_size() {
        let catalog = catalog().unwrap();
        assert!(
            catalog.offerings.len() > 4000,
            "{}",
            catalog.offerings.len()
        );
        let (lowered, all) = rank(&catalog, usize::MAX);
        assert_eq!(all.offerings.price.len(), catalog.offerings.len());
        assert_eq!(lowered.zones.len(), 3);
        let (_, some) = rank(&catalog, 500);
        assert_eq!(some.offerings.instance_type.len(), 500);
        let spot = some
            .offerings
            .capacity_type
            .iter()
            .filter(|&&c| c == CapacityType::Spot.code())
            .count();
        assert!(spot > 100 && spot < 300, "{spot} spot offerings of 500");
        assert_eq!(some.min_values.len(), 1, "minValues on the family");
        // The policy validator's own rules: finite positive prices, in-range indexes.
        for (k, &t) in some.offerings.instance_type.iter().enumerate() {
            assert!((t as usize) < lowered.instance_types.len());
            let price = some.offerings.price[k];
            assert!(price.is_finite() && price > 0.0, "{price}");
        }
    }

    #[test]
    fn the_consolidation_input_holds_the_moves_the_disruption_pass_would_propose() {
        let catalog = catalog().unwrap();
        let input = consolidate(&catalog, 1000);
        assert_eq!(input.nodes.len(), 1000);
        let by_reason = |r| input.moves.iter().filter(|m| m.reason == r).count();
        assert_eq!(by_reason(consolidate::DisruptionReason::Empty), 100);
        assert_eq!(
            by_reason(consolidate::DisruptionReason::Drifted),
            MAX_SINGLE_NODE_MOVES
        );
        let multi = input.moves.iter().map(|m| m.nodes.len()).max().unwrap();
        assert_eq!(multi, MAX_MULTI_NODE_CANDIDATES);
        for m in &input.moves {
            assert!(m.nodes.iter().all(|&i| (i as usize) < input.nodes.len()));
            assert_eq!(
                m.kind == consolidate::MoveKind::Replace,
                m.replacement_price.is_some()
            );
            assert!(m.savings_per_hour.is_finite());
        }
        let ids: std::collections::BTreeSet<u32> = input.moves.iter().map(|m| m.id).collect();
        assert_eq!(ids.len(), input.moves.len(), "move ids are unique");
        assert_eq!(consolidate(&catalog, 1000), input, "deterministic");
    }
}
