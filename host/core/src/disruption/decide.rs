//! One disruption pass: expiration first, then per NodePool the safe moves (drift, emptiness,
//! multi-node and single-node consolidation), the budgeter's allowance, the consolidator's choice, and
//! the host's clamp: each chosen move is proven again against the moves taken before it in the pass.

use std::collections::{BTreeMap, BTreeSet};

use super::budget::{self, Allowance};
use super::expiration::{Expiry, expiry};
use super::moves::{
    Move, Saving, base_room, consolidation_candidates, evaluate, multi_node, target_fleet,
};
use super::{
    ClusterView, Command, MAX_MULTI_NODE_CANDIDATES, MAX_SINGLE_NODE_MOVES, Method,
    MoveExplanation, NodeView, drift, safety,
};
use crate::api::nodepool::DisruptionReason as ApiReason;
use crate::model::ConsolidationPolicy;
use crate::policy::Verdict;
use crate::policy::contract::consolidate as wit;

/// What a pass decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub commands: Vec<Command>,
    /// Policy failures answered by the native default.
    pub fallbacks: Vec<String>,
    /// Why nodes that qualified were not disrupted (held by budgets, safety, no fit).
    pub notes: Vec<String>,
}

fn api_reason(method: Method) -> Option<ApiReason> {
    match method {
        Method::Expiration => None,
        Method::Drift => Some(ApiReason::Drifted),
        Method::Emptiness => Some(ApiReason::Empty),
        Method::MultiNodeConsolidation | Method::SingleNodeConsolidation => {
            Some(ApiReason::Underutilized)
        }
    }
}

fn describe(n: &NodeView) -> String {
    format!(
        "{} ({} {} ${:.4}/h)",
        n.name(),
        n.node.instance_type,
        n.node.capacity_type.label(),
        n.node.price
    )
}

fn utilization(nodes: &[&NodeView]) -> (f64, f64) {
    let mut used = crate::model::ResourceList::new();
    let mut all = crate::model::ResourceList::new();
    for n in nodes {
        used.cpu += n.node.requested.cpu;
        used.memory += n.node.requested.memory;
        all.cpu += n.node.allocatable.cpu;
        all.memory += n.node.allocatable.memory;
    }
    used.cpu_memory_shares(&all)
}

/// Turns a proven move into a command with its explanation.
pub fn command(view: &ClusterView, mv: &Move, decided_by: String, budget: String) -> Command {
    command_with_reason(view, mv, decided_by, None, budget)
}

/// [`command`], with the consolidator's reason for the move.
pub fn command_with_reason(
    view: &ClusterView,
    mv: &Move,
    decided_by: String,
    policy_reason: Option<String>,
    budget: String,
) -> Command {
    let nodes: Vec<&NodeView> = mv.nodes.iter().map(|&i| &view.nodes[i]).collect();
    let (cpu, mem) = utilization(&nodes);
    let explanation = MoveExplanation {
        method: mv.method,
        reason: mv.method.reason(),
        nodes: nodes.iter().map(|n| n.name().to_string()).collect(),
        removed: nodes.iter().map(|n| describe(n)).collect(),
        replacement: mv.replacement.as_ref().and_then(|r| {
            r.offerings.first().map(|o| {
                format!(
                    "{} {} {} ${:.4}/h for {} pods",
                    o.instance_type,
                    o.zone,
                    o.capacity_type.label(),
                    o.price,
                    r.pods.len()
                )
            })
        }),
        savings_per_hour: mv.savings_per_hour,
        pods_moved: mv.pods_moved,
        disruption_cost: mv.disruption_cost,
        oldest_node_age_seconds: nodes
            .iter()
            .map(|n| (view.now - n.node.created_at) / 1000)
            .max()
            .unwrap_or(0),
        cpu_utilization: cpu,
        memory_utilization: mem,
        cause: mv.cause.clone(),
        decided_by,
        policy_reason,
        budget,
    };
    Command {
        method: mv.method,
        nodes: explanation.nodes.clone(),
        replacement: mv.replacement.clone(),
        forceful: false,
        pods: nodes
            .iter()
            .flat_map(|n| n.pods.iter().map(|p| p.key.to_string()))
            .collect(),
        explanation,
    }
}

/// Nodes of the pool that use up its budget: being disrupted, or not ready.
fn disrupting_in(view: &ClusterView, pool: &str, extra: &BTreeSet<String>) -> u32 {
    view.nodes
        .iter()
        .filter(|n| n.node.node_pool == pool)
        .filter(|n| view.disrupting.contains(n.name()) || extra.contains(n.name()) || !n.node.ready)
        .count() as u32
}

/// One pass over the cluster.
pub fn decide(view: &ClusterView, policies: &mut dyn super::DisruptionPolicies) -> Decision {
    let mut decision = Decision::default();
    let mut room = base_room(view);
    let mut pdbs = view.pdbs.clone();
    let mut gone: BTreeSet<String> = BTreeSet::new();

    // 1. Expiration: forceful, not budgeted.
    for (i, node) in view.nodes.iter().enumerate() {
        let Some(pool) = view.pool(&node.node.node_pool) else {
            continue;
        };
        match expiry(node, pool, view) {
            Expiry::Nothing => {}
            Expiry::Held { reason } => decision
                .notes
                .push(format!("{}: expired but held: {reason}", node.name())),
            Expiry::Drain { age } | Expiry::Force { draining_for: age } => {
                let forceful = matches!(expiry(node, pool, view), Expiry::Force { .. });
                let mut mv = evaluate(
                    view,
                    &mut room,
                    &[i],
                    Method::Expiration,
                    Saving::NotRequired,
                    None,
                )
                .unwrap_or_else(|why| {
                    decision.notes.push(format!(
                        "{}: expired; no replacement could be planned ({why}), its pods are provisioned again",
                        node.name()
                    ));
                    Move {
                        method: Method::Expiration,
                        nodes: vec![i],
                        replacement: None,
                        replacement_price: None,
                        savings_per_hour: node.node.price,
                        pods_moved: node.pods.len(),
                        disruption_cost: 0.0,
                        cause: String::new(),
                        receivers: BTreeSet::new(),
                    }
                });
                mv.cause = if forceful {
                    format!(
                        "expired; draining for {}s, past terminationGracePeriod: PDBs and do-not-disrupt no longer wait",
                        age / 1000
                    )
                } else {
                    format!(
                        "age {}s >= expireAfter {}s",
                        age / 1000,
                        pool.expire_after.unwrap_or(0) / 1000
                    )
                };
                let mut cmd = command(
                    view,
                    &mv,
                    "host (expiration is not a policy choice)".into(),
                    "not budgeted (expiration is forceful)".into(),
                );
                cmd.forceful = forceful;
                if node.expiring_since.is_some() {
                    // Already draining: only the forcing matters, no second replacement.
                    cmd.replacement = None;
                }
                gone.insert(node.name().to_string());
                decision.commands.push(cmd);
            }
        }
    }
    let gone_idx: BTreeSet<usize> = view
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| gone.contains(n.name()))
        .map(|(i, _)| i)
        .collect();

    // 2. Per NodePool: drift, emptiness, consolidation, chosen by policy within budgets.
    let mut pool_names: Vec<&str> = view.pools.iter().map(|p| p.spec.name.as_str()).collect();
    pool_names.sort();
    for pool_name in pool_names {
        let pool = view.pool(pool_name).expect("listed pool");
        let members: Vec<usize> = view
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| {
                n.node.node_pool == pool_name
                    && !gone_idx.contains(i)
                    && !view.disrupting.contains(n.name())
            })
            .map(|(i, _)| i)
            .collect();
        let total = view
            .nodes
            .iter()
            .filter(|n| n.node.node_pool == pool_name)
            .count() as u32;
        if members.is_empty() {
            continue;
        }
        let mut drifted: Vec<(usize, String)> = Vec::new();
        for &i in &members {
            let n = &view.nodes[i];
            if let Some(cause) = drift::drifted(n, pool) {
                match safety::blocker(n) {
                    None => drifted.push((i, cause)),
                    Some(b) => decision
                        .notes
                        .push(format!("{}: drifted ({cause}) but {b}", n.name())),
                }
            }
        }
        let drifted_idx: BTreeSet<usize> = drifted.iter().map(|(i, _)| *i).collect();
        let consolidatable = consolidation_candidates(
            view,
            pool_name,
            &drifted_idx.union(&gone_idx).copied().collect(),
        );
        let empty: Vec<usize> = consolidatable
            .iter()
            .copied()
            .filter(|&i| view.nodes[i].pods.is_empty())
            .collect();
        let underutilized: Vec<usize> = if pool.consolidation_policy
            == ConsolidationPolicy::WhenEmptyOrUnderutilized
            && view.in_flight_claims == 0
            && view.pending_pods == 0
        {
            consolidatable
                .iter()
                .copied()
                .filter(|&i| !view.nodes[i].pods.is_empty())
                .collect()
        } else {
            Vec::new()
        };
        if drifted.is_empty() && empty.is_empty() && underutilized.is_empty() {
            continue;
        }
        let candidates: BTreeMap<ApiReason, u32> = [
            (ApiReason::Empty, empty.len() as u32),
            (ApiReason::Underutilized, underutilized.len() as u32),
            (ApiReason::Drifted, drifted.len() as u32),
        ]
        .into();
        let disrupting = disrupting_in(view, pool_name, &gone);
        let mut allowance = budget::allowance(
            policies.budgeter(pool_name),
            pool,
            total,
            disrupting,
            &candidates,
            view.now,
        );
        if let Some(f) = &allowance.fallback {
            decision
                .fallbacks
                .push(format!("{pool_name}: budgeter {f}"));
        }
        if allowance.allowed.values().all(|&v| v == 0) {
            decision.notes.push(format!(
                "{pool_name}: {} drifted, {} empty, {} underutilized candidates held by the budget ({:?})",
                drifted.len(),
                empty.len(),
                underutilized.len(),
                allowance.allowed
            ));
            continue;
        }

        // The safe moves.
        let mut moves: Vec<Move> = Vec::new();
        if allowance.get(ApiReason::Drifted) > 0 {
            for (i, cause) in drifted.iter().take(MAX_SINGLE_NODE_MOVES) {
                match room.trial(|trial| {
                    evaluate(
                        view,
                        trial,
                        &[*i],
                        Method::Drift,
                        Saving::NotRequired,
                        Some(&pdbs),
                    )
                }) {
                    Ok(mut m) => {
                        m.cause = format!("drifted: {cause}");
                        moves.push(m);
                    }
                    Err(why) => decision.notes.push(format!(
                        "{}: drifted but not movable: {why}",
                        view.nodes[*i].name()
                    )),
                }
            }
        }
        if allowance.get(ApiReason::Empty) > 0 {
            for &i in &empty {
                if let Ok(mut m) = room.trial(|trial| {
                    evaluate(
                        view,
                        trial,
                        &[i],
                        Method::Emptiness,
                        Saving::Required,
                        Some(&pdbs),
                    )
                }) {
                    m.cause = "empty".into();
                    moves.push(m);
                }
            }
        }
        let allowed_under = allowance.get(ApiReason::Underutilized) as usize;
        if allowed_under > 0 && !underutilized.is_empty() {
            let capped: Vec<usize> = underutilized
                .iter()
                .copied()
                .take(MAX_MULTI_NODE_CANDIDATES.min(allowed_under))
                .collect();
            if let Some(mut m) = multi_node(view, &mut room, &capped, &pdbs) {
                m.cause = format!(
                    "{} underutilized nodes consolidate into {}",
                    m.nodes.len(),
                    if m.replacement.is_some() {
                        "one replacement"
                    } else {
                        "the remaining nodes"
                    }
                );
                moves.push(m);
            }
            for &i in underutilized.iter().take(MAX_SINGLE_NODE_MOVES) {
                if let Ok(mut m) = room.trial(|trial| {
                    evaluate(
                        view,
                        trial,
                        &[i],
                        Method::SingleNodeConsolidation,
                        Saving::Required,
                        Some(&pdbs),
                    )
                }) && m.savings_per_hour > 0.0
                {
                    m.cause = if m.replacement.is_some() {
                        "underutilized: a cheaper node holds its pods".into()
                    } else {
                        "underutilized: its pods fit on the other nodes".into()
                    };
                    moves.push(m);
                }
            }
        }
        // Steer consolidation toward the cheapest fleet one more move could reach: a move that removes
        // a node that fleet keeps is dropped while another move (or a node still settling) leads there.
        if allowed_under > 0 && !underutilized.is_empty() {
            let pinned: BTreeSet<usize> = members
                .iter()
                .copied()
                .filter(|&i| safety::blocker(&view.nodes[i]).is_some())
                .collect();
            if let Some(target) = target_fleet(view, &mut room, &members, &pinned)
                && target.price < target.current - 1e-6
            {
                let away = |m: &Move| {
                    matches!(
                        m.method,
                        Method::SingleNodeConsolidation | Method::MultiNodeConsolidation
                    ) && m.nodes.iter().any(|i| target.keep.contains(i))
                };
                let toward = moves.iter().any(|m| !away(m));
                let settling = members.iter().any(|i| {
                    !target.keep.contains(i) && !underutilized.contains(i) && !empty.contains(i)
                });
                if toward || settling {
                    let before = moves.len();
                    moves.retain(|m| !away(m));
                    if moves.len() < before {
                        decision.notes.push(format!(
                            "{pool_name}: {} consolidation moves held back: they remove nodes of the cheapest reachable fleet (${:.4}/h, now ${:.4}/h)",
                            before - moves.len(),
                            target.price,
                            target.current
                        ));
                    }
                }
            }
        }
        if moves.is_empty() {
            continue;
        }

        // The consolidator picks and orders; the host validates the answer.
        let input = consolidate_input(view, pool_name, &moves);
        let verdict = policies.consolidator(pool_name).consolidate(&input);
        let (order, decided_by, reasons) =
            checked_order(verdict, &input, &mut decision.fallbacks, pool_name);

        // The host clamps: budget per reason, one move per node, and each move proven again after
        // the ones taken before it.
        let mut used: BTreeSet<usize> = BTreeSet::new();
        let mut receivers: BTreeSet<String> = BTreeSet::new();
        for id in order {
            let planned = &moves[id as usize];
            let reason = api_reason(planned.method).expect("voluntary");
            let n = planned.nodes.len() as u32;
            // A node that received pods in this pass holds more than `view` says: not removable now.
            if planned
                .nodes
                .iter()
                .any(|i| used.contains(i) || receivers.contains(view.nodes[*i].name()))
            {
                continue;
            }
            if allowance.get(reason) < n {
                decision.notes.push(format!(
                    "{pool_name}: {} of {} held by the {reason:?} budget ({} allowed)",
                    planned.method.as_str(),
                    planned
                        .nodes
                        .iter()
                        .map(|&i| view.nodes[i].name())
                        .collect::<Vec<_>>()
                        .join(", "),
                    allowance.get(reason)
                ));
                continue;
            }
            let saving = if planned.method == Method::Drift {
                Saving::NotRequired
            } else {
                Saving::Required
            };
            let mark = room.mark();
            let Ok(mut mv) = evaluate(
                view,
                &mut room,
                &planned.nodes,
                planned.method,
                saving,
                Some(&pdbs),
            ) else {
                continue;
            };
            if saving == Saving::Required && mv.savings_per_hour <= 0.0 {
                room.undo(mark);
                continue;
            }
            mv.cause = planned.cause.clone();
            let removed: Vec<&NodeView> = mv.nodes.iter().map(|&i| &view.nodes[i]).collect();
            safety::spend_pdbs(removed.into_iter(), &mut pdbs);
            used.extend(mv.nodes.iter().copied());
            receivers.extend(mv.receivers.iter().cloned());
            let budget_note = budget_note(&allowance, reason, n);
            allowance.spend(n);
            decision.commands.push(command_with_reason(
                view,
                &mv,
                decided_by.clone(),
                reasons.get(&id).cloned(),
                budget_note,
            ));
        }
    }
    decision
}

fn budget_note(a: &Allowance, reason: ApiReason, n: u32) -> String {
    format!(
        "{reason:?}: {n} of {} allowed (NodePool limit {}; {}{}{})",
        a.get(reason),
        a.limit.get(&reason).copied().unwrap_or(0),
        a.decided_by,
        a.reasons
            .get(&reason)
            .map(|r| format!(": {r}"))
            .unwrap_or_default(),
        a.fallback
            .as_deref()
            .map(|f| format!("; {f}"))
            .unwrap_or_default()
    )
}

/// The consolidator's input: the moves' nodes and the moves, ids = indexes into `moves`.
pub fn consolidate_input(view: &ClusterView, pool: &str, moves: &[Move]) -> wit::ConsolidateInput {
    let mut index: BTreeMap<usize, u32> = BTreeMap::new();
    for m in moves {
        for &i in &m.nodes {
            let next = index.len() as u32;
            index.entry(i).or_insert(next);
        }
    }
    let mut nodes: Vec<(u32, wit::NodeInfo)> = index
        .iter()
        .map(|(&i, &k)| {
            let n = &view.nodes[i];
            let (cpu, mem) = utilization(&[n]);
            (
                k,
                wit::NodeInfo {
                    instance_type: n.node.instance_type.clone(),
                    zone: n.node.zone.clone(),
                    capacity_type: match n.node.capacity_type {
                        crate::cloud::CapacityType::OnDemand => 0,
                        crate::cloud::CapacityType::Spot => 1,
                        crate::cloud::CapacityType::Reserved => 2,
                    },
                    price: n.node.price,
                    age_seconds: ((view.now - n.node.created_at).max(0) / 1000) as u64,
                    cpu_utilization: cpu as f32,
                    memory_utilization: mem as f32,
                    pods: n.pods.len() as u32,
                },
            )
        })
        .collect();
    nodes.sort_by_key(|(k, _)| *k);
    wit::ConsolidateInput {
        node_pool: pool.to_string(),
        now: view.now.div_euclid(1000),
        nodes: nodes.into_iter().map(|(_, n)| n).collect(),
        moves: moves
            .iter()
            .enumerate()
            .map(|(id, m)| wit::CandidateMove {
                id: id as u32,
                kind: if m.replacement.is_some() {
                    wit::MoveKind::Replace
                } else {
                    wit::MoveKind::Delete
                },
                reason: match api_reason(m.method) {
                    Some(ApiReason::Drifted) => wit::DisruptionReason::Drifted,
                    Some(ApiReason::Empty) => wit::DisruptionReason::Empty,
                    _ => wit::DisruptionReason::Underutilized,
                },
                nodes: m.nodes.iter().map(|i| index[i]).collect(),
                replacement_type: m
                    .replacement
                    .as_ref()
                    .and_then(|r| r.offerings.first())
                    .map(|o| o.instance_type.clone()),
                replacement_price: m.replacement_price,
                savings_per_hour: m.savings_per_hour,
                pods_moved: m.pods_moved as u32,
                disruption_cost: m.disruption_cost,
            })
            .collect(),
    }
}

/// The policy's order (with its reasons by move id) if it keeps the contract; the native default's
/// otherwise (reported).
fn checked_order(
    verdict: Verdict<Vec<u32>>,
    input: &wit::ConsolidateInput,
    fallbacks: &mut Vec<String>,
    pool: &str,
) -> (Vec<u32>, String, BTreeMap<u32, String>) {
    let mut decided_by = verdict.decided_by.clone();
    if let Some(f) = &verdict.fallback {
        let note = format!(
            "{} failed ({:?}: {}), default used",
            f.policy, f.kind, f.detail
        );
        fallbacks.push(format!("{pool}: consolidator {note}"));
        decided_by = format!("{decided_by}; {note}");
    }
    let mut seen = BTreeSet::new();
    let valid = verdict
        .value
        .iter()
        .all(|&id| (id as usize) < input.moves.len() && seen.insert(id));
    if valid {
        let reasons = verdict
            .value
            .iter()
            .enumerate()
            .filter_map(|(k, &id)| verdict.reason(k).map(|r| (id, r.to_string())))
            .collect();
        return (verdict.value, decided_by, reasons);
    }
    let note = format!(
        "{} answered {:?}, not a list of distinct move ids below {}; default used",
        verdict.decided_by,
        verdict.value,
        input.moves.len()
    );
    fallbacks.push(format!("{pool}: consolidator {note}"));
    let default = crate::policy::native::NativeConsolidator::answer(input);
    (
        default.value,
        format!("{}; {note}", default.decided_by),
        BTreeMap::new(),
    )
}

/// Re-checks a command decided [`super::VALIDATION_DELAY_MS`] ago against the cluster now: its nodes
/// are still there and not being disrupted, they carry the same pods, the budget still allows it and
/// the move is still safe (and still saves money, for consolidation). Returns the command recomputed
/// (fresh replacement offerings and numbers) or why it was dropped.
pub fn revalidate(
    view: &ClusterView,
    cmd: &Command,
    room: &mut super::room::Room,
    pdbs: &mut [super::PdbView],
    spent: &mut BTreeMap<String, u32>,
    receivers: &mut BTreeSet<String>,
) -> Result<Command, String> {
    let mut idx = Vec::new();
    let mut pods = BTreeSet::new();
    for name in &cmd.nodes {
        let Some(i) = view.nodes.iter().position(|n| n.name() == name) else {
            return Err(format!("node {name} is gone"));
        };
        if view.disrupting.contains(name) {
            return Err(format!("node {name} is already being disrupted"));
        }
        if receivers.contains(name) {
            return Err(format!(
                "node {name} receives pods of a move validated before it"
            ));
        }
        let node = &view.nodes[i];
        if let Some(b) = safety::blocker(node) {
            return Err(format!("node {name}: {b}"));
        }
        pods.extend(node.pods.iter().map(|p| p.key.to_string()));
        idx.push(i);
    }
    if pods != cmd.pods {
        return Err("the pods on the nodes changed".into());
    }
    let pool_name = view.nodes[idx[0]].node.node_pool.clone();
    let pool = view
        .pool(&pool_name)
        .ok_or_else(|| format!("NodePool {pool_name} is gone"))?;
    if cmd.method == Method::Drift && drift::drifted(&view.nodes[idx[0]], pool).is_none() {
        return Err("the node is no longer drifted".into());
    }
    if matches!(cmd.method, Method::Emptiness) && !pods.is_empty() {
        return Err("the node is no longer empty".into());
    }
    let reason = api_reason(cmd.method).expect("voluntary");
    let total = view
        .nodes
        .iter()
        .filter(|n| n.node.node_pool == pool_name)
        .count() as u32;
    let already = spent.get(&pool_name).copied().unwrap_or(0);
    let disrupting = disrupting_in(view, &pool_name, &BTreeSet::new()) + already;
    let limit = budget::host_limits(pool, total, disrupting, view.now)[&reason];
    if limit < idx.len() as u32 {
        return Err(format!(
            "the {reason:?} budget now allows {limit}, the move needs {}",
            idx.len()
        ));
    }
    let saving = if cmd.method == Method::Drift {
        Saving::NotRequired
    } else {
        Saving::Required
    };
    let mark = room.mark();
    let mut mv = evaluate(view, room, &idx, cmd.method, saving, Some(pdbs))?;
    if saving == Saving::Required && mv.savings_per_hour <= 0.0 {
        room.undo(mark);
        return Err("the move no longer saves money".into());
    }
    mv.cause = cmd.explanation.cause.clone();
    let removed: Vec<&NodeView> = idx.iter().map(|&i| &view.nodes[i]).collect();
    safety::spend_pdbs(removed.into_iter(), pdbs);
    *spent.entry(pool_name).or_default() += idx.len() as u32;
    receivers.extend(mv.receivers.iter().cloned());
    // Re-proven, the move keeps what the decision said of it: who chose it, why, and its budget.
    let mut fresh = command_with_reason(
        view,
        &mv,
        cmd.explanation.decided_by.clone(),
        cmd.explanation.policy_reason.clone(),
        cmd.explanation.budget.clone(),
    );
    fresh.explanation.cause = format!(
        "{}; validated after {}s",
        mv.cause,
        super::VALIDATION_DELAY_MS / 1000
    );
    Ok(fresh)
}
