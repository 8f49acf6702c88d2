//! Candidate moves: which nodes could go, and proof that their pods fit elsewhere.
//!
//! A move removes one or more nodes of a NodePool and launches at most one replacement. It is valid
//! only if every pod on the removed nodes fits on the remaining nodes' free room ([`Room`]) or on the
//! replacement, and the evictions fit every PDB's allowance. Consolidation moves must also save money;
//! a spot node is only replaced by a cheaper spot node when at least [`MIN_SPOT_TO_SPOT_TYPES`] cheaper
//! instance types could hold its pods (Karpenter's spot-to-spot rule).

use std::collections::BTreeSet;

use super::room::{Room, cheaper_types, offerings_holding};
use super::{
    ClusterView, MIN_SPOT_TO_SPOT_TYPES, Method, NodeView, PdbView, REPLACEMENT_OFFERINGS, cost,
    safety,
};
use crate::cloud::CapacityType;
use crate::cluster::PodState;
use crate::controller::provision::PlannedClaim;

/// A move the host proved safe.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    pub method: Method,
    /// Indexes into `ClusterView::nodes`.
    pub nodes: Vec<usize>,
    pub replacement: Option<PlannedClaim>,
    pub replacement_price: Option<f64>,
    pub savings_per_hour: f64,
    pub pods_moved: usize,
    pub disruption_cost: f64,
    pub cause: String,
    /// Nodes that receive the displaced pods (they may not be removed later in the same pass).
    pub receivers: BTreeSet<String>,
}

/// The room every move starts from: all nodes with their pods; nodes being disrupted take nothing.
pub fn base_room(view: &ClusterView) -> Room {
    let mut room = Room::new(view.nodes.iter().map(|n| (&*n.node, n.pods.as_slice())));
    let gone: BTreeSet<&str> = view.disrupting.iter().map(String::as_str).collect();
    room.remove(&gone);
    room
}

/// Whether the move must pay for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saving {
    /// Consolidation: the replacement must be cheaper than what it replaces.
    Required,
    /// Drift and expiry: the node goes anyway; the cheapest replacement that holds its pods.
    NotRequired,
}

/// Proves (or refutes) removing `nodes` from `room`; on success the room holds the placements, on
/// failure it is as it was.
pub fn evaluate(
    view: &ClusterView,
    room: &mut Room,
    nodes: &[usize],
    method: Method,
    saving: Saving,
    pdbs: Option<&[PdbView]>,
) -> Result<Move, String> {
    let removed: Vec<&NodeView> = nodes.iter().map(|&i| &view.nodes[i]).collect();
    let pool_name = &removed[0].node.node_pool;
    if removed.iter().any(|n| &n.node.node_pool != pool_name) {
        return Err("a move stays within one NodePool".into());
    }
    if view.pool(pool_name).is_none() {
        return Err(format!("NodePool {pool_name} is unknown"));
    }
    if let Some(pdbs) = pdbs
        && let Some(v) = safety::pdb_violation(removed.iter().copied(), pdbs)
    {
        return Err(v);
    }
    let mark = room.mark();
    let proven = settle(view, room, &removed, nodes, method, saving);
    if proven.is_err() {
        room.undo(mark);
    }
    proven
}

/// Takes `removed` out of the room and places their pods on the rest, or on one replacement.
fn settle(
    view: &ClusterView,
    room: &mut Room,
    removed: &[&NodeView],
    nodes: &[usize],
    method: Method,
    saving: Saving,
) -> Result<Move, String> {
    let pool = view
        .pool(&removed[0].node.node_pool)
        .expect("evaluate checked the pool");
    let price: f64 = removed.iter().map(|n| n.node.price).sum();
    let names: BTreeSet<&str> = removed.iter().map(|n| n.name()).collect();
    let Evacuation {
        displaced,
        placed,
        leftover,
    } = evacuate(room, removed);
    let disruption_cost: f64 = removed
        .iter()
        .map(|n| cost::node_disruption_cost(n, pool.expire_after, view.now))
        .sum();
    let mut mv = Move {
        method,
        nodes: nodes.to_vec(),
        replacement: None,
        replacement_price: None,
        savings_per_hour: price,
        pods_moved: displaced.len(),
        disruption_cost,
        cause: String::new(),
        receivers: placed.iter().flatten().cloned().collect(),
    };
    if leftover.is_empty() {
        return Ok(mv);
    }
    let all_spot = removed
        .iter()
        .all(|n| n.node.capacity_type == CapacityType::Spot);
    let below = (saving == Saving::Required).then_some(price);
    let mut options = offerings_holding(
        &leftover,
        &pool.spec,
        &pool.launchable,
        &view.instance_types,
        below,
    );
    if saving == Saving::Required && all_spot {
        options.retain(|l| l.offering.capacity_type == CapacityType::Spot);
        let cheaper = cheaper_types(&options, CapacityType::Spot, price);
        if cheaper < MIN_SPOT_TO_SPOT_TYPES {
            return Err(format!(
                "spot-to-spot replacement needs {MIN_SPOT_TO_SPOT_TYPES} cheaper instance types, {cheaper} remain"
            ));
        }
    }
    let Some(best) = options.first().map(|l| (*l.offering).clone()) else {
        return Err(format!(
            "{} pods fit neither the remaining nodes nor one {} replacement",
            leftover.len(),
            if saving == Saving::Required {
                "cheaper"
            } else {
                ""
            }
        ));
    };
    let holding = options.len();
    let options: Vec<crate::cloud::Offering> = options
        .iter()
        .take(REPLACEMENT_OFFERINGS)
        .map(|l| (*l.offering).clone())
        .collect();
    mv.savings_per_hour = price - best.price;
    mv.replacement_price = Some(best.price);
    mv.replacement = Some(PlannedClaim {
        node_pool: pool.spec.name.clone(),
        explanation: format!(
            "replacement for {} pods of {}: {} {} {} at ${:.4}/h (cheapest of {} offerings that hold them)",
            leftover.len(),
            names.iter().copied().collect::<Vec<_>>().join(", "),
            best.instance_type,
            best.zone,
            best.capacity_type.label(),
            best.price,
            holding
        ),
        offerings: options,
        pods: leftover.iter().map(|p| p.key.clone()).collect(),
        core: None,
    });
    Ok(mv)
}

/// Where the pods of removed nodes went.
struct Evacuation<'v> {
    displaced: Vec<&'v PodState>,
    /// Per displaced pod, the node that took it (`None`: none did).
    placed: Vec<Option<String>>,
    /// The displaced pods no remaining node took.
    leftover: Vec<&'v PodState>,
}

/// Takes `gone` out of the room and places their pods on the nodes that remain (kept in the room).
fn evacuate<'v>(room: &mut Room, gone: &[&'v NodeView]) -> Evacuation<'v> {
    let displaced: Vec<&PodState> = gone.iter().flat_map(|n| n.pods.iter()).collect();
    room.remove(&gone.iter().map(|n| n.name()).collect());
    let placed = room.place(&displaced);
    let leftover = displaced
        .iter()
        .zip(&placed)
        .filter(|(_, at)| at.is_none())
        .map(|(p, _)| *p)
        .collect();
    Evacuation {
        displaced,
        placed,
        leftover,
    }
}

/// Nodes consolidation may consider, cheapest to disrupt first.
pub fn consolidation_candidates(
    view: &ClusterView,
    pool: &str,
    exclude: &BTreeSet<usize>,
) -> Vec<usize> {
    let Some(settings) = view.pool(pool) else {
        return Vec::new();
    };
    let Some(after) = settings.consolidate_after else {
        return Vec::new();
    };
    let mut out: Vec<(f64, usize)> = view
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, n)| {
            n.node.node_pool == pool
                && !exclude.contains(i)
                && !view.disrupting.contains(n.name())
                && view.now - n.last_pod_change >= after
                && safety::blocker(n).is_none()
        })
        .map(|(i, n)| {
            (
                cost::node_disruption_cost(n, settings.expire_after, view.now),
                i,
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    out.into_iter().map(|(_, i)| i).collect()
}

/// The largest prefix of `candidates` (at least two nodes) that can go with at most one replacement
/// and saves money; Karpenter's binary search.
pub fn multi_node(
    view: &ClusterView,
    room: &mut Room,
    candidates: &[usize],
    pdbs: &[PdbView],
) -> Option<Move> {
    let (mut lo, mut hi) = (2usize, candidates.len());
    let mut best = None;
    while lo <= hi {
        let mid = (lo + hi) / 2;
        match room.trial(|trial| {
            evaluate(
                view,
                trial,
                &candidates[..mid],
                Method::MultiNodeConsolidation,
                Saving::Required,
                Some(pdbs),
            )
        }) {
            Ok(m) if m.savings_per_hour > 0.0 => {
                best = Some(m);
                lo = mid + 1;
            }
            _ => hi = mid - 1,
        }
    }
    best
}

/// The cheapest fleet a NodePool can reach with one more move of any size: keep some nodes, move the
/// pods of the others onto the kept nodes' free room and at most one new node.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Indexes into `ClusterView::nodes` of the nodes the cheapest fleet keeps.
    pub keep: BTreeSet<usize>,
    /// Price per hour of the kept nodes plus the replacement.
    pub price: f64,
    /// Price per hour of the pool's nodes now.
    pub current: f64,
}

/// Pools with more nodes skip the target search (it evaluates one keep-set per node).
pub const MAX_TARGET_NODES: usize = 40;

/// How full a node is: its busiest resource's share of what it can allocate.
fn utilization(n: &NodeView) -> f64 {
    let (cpu, memory) = n.node.requested.cpu_memory_shares(&n.node.allocatable);
    cpu.max(memory)
}

/// Why a greedy walk needs this: removing the node whose pods fit elsewhere first (the cheapest
/// disruption) can pile every pod onto one oversized node that no one-replacement move can split. The
/// target keeps the fullest nodes (the `j` fullest, for every `j`; `pinned` nodes are always kept) and
/// prices the rest as one replacement; moves that remove a node the target keeps are steps away from it.
pub fn target_fleet(
    view: &ClusterView,
    room: &mut Room,
    members: &[usize],
    pinned: &BTreeSet<usize>,
) -> Option<Target> {
    let pool_name = &view.nodes[*members.first()?].node.node_pool;
    let pool = view.pool(pool_name)?;
    if members.len() > MAX_TARGET_NODES {
        return None;
    }
    let current: f64 = members.iter().map(|&i| view.nodes[i].node.price).sum();
    let mut order: Vec<usize> = members
        .iter()
        .copied()
        .filter(|i| !pinned.contains(i))
        .collect();
    order.sort_by(|&a, &b| {
        let (na, nb) = (&view.nodes[a], &view.nodes[b]);
        utilization(nb)
            .total_cmp(&utilization(na))
            .then(na.node.price.total_cmp(&nb.node.price))
            .then(a.cmp(&b))
    });
    let mut best: Option<Target> = None;
    for j in 0..order.len() {
        let keep: BTreeSet<usize> = order[..j].iter().chain(pinned.iter()).copied().collect();
        let gone: Vec<&NodeView> = order[j..].iter().map(|&i| &view.nodes[i]).collect();
        let leftover = room.trial(|trial| evacuate(trial, &gone).leftover);
        let kept: f64 = keep.iter().map(|&i| view.nodes[i].node.price).sum();
        let replacement = if leftover.is_empty() {
            0.0
        } else {
            match offerings_holding(
                &leftover,
                &pool.spec,
                &pool.launchable,
                &view.instance_types,
                None,
            )
            .first()
            {
                Some(l) => l.offering.price,
                None => continue,
            }
        };
        let price = kept + replacement;
        if best.as_ref().is_none_or(|b| price < b.price - 1e-9) {
            best = Some(Target {
                keep,
                price,
                current,
            });
        }
    }
    best
}
