//! The default consolidator: Karpenter's preferences.
//!
//! 1. Empty-node deletes first (no pod disrupted), the largest saving first.
//! 2. Drift replacements next (drift is a correctness matter, not a saving), the least disruptive first.
//! 3. Then the other moves by saving per unit of disruption: `savings / max(disruption-cost, pods-moved, 1)`.
//!
//! A move that saves nothing (savings <= 0 or not finite) is never taken, except a drift replacement.
//! Moves that share a node with an earlier chosen move are skipped: each move was proven safe alone.
use kestrel_policy_sdk::consolidator::{
    CandidateMove, ConsolidateInput, DisruptionReason, MoveKind, PolicyInfo,
};

pub const NAME: &str = "default-consolidator";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn info() -> PolicyInfo {
    PolicyInfo {
        name: NAME.into(),
        version: VERSION.into(),
        contract: kestrel_policy_sdk::CONTRACT.into(),
    }
}

fn class(m: &CandidateMove) -> u8 {
    match (m.kind, m.reason, m.pods_moved) {
        (MoveKind::Delete, _, 0) => 0,
        (_, DisruptionReason::Drifted, _) => 1,
        _ => 2,
    }
}

fn saves(m: &CandidateMove) -> bool {
    m.savings_per_hour.is_finite() && m.savings_per_hour > 0.0
}

/// Savings per unit of disruption.
fn value(m: &CandidateMove) -> f64 {
    let cost = if m.disruption_cost.is_finite() {
        m.disruption_cost
    } else {
        f64::MAX
    };
    m.savings_per_hour / cost.max(f64::from(m.pods_moved)).max(1.0)
}

/// The ids of the moves to take, in order.
pub fn consolidate(input: &ConsolidateInput) -> Result<Vec<u32>, String> {
    for m in &input.moves {
        if let Some(&bad) = m.nodes.iter().find(|&&n| n as usize >= input.nodes.len()) {
            return Err(format!(
                "move {} names node {bad}, there are {} nodes",
                m.id,
                input.nodes.len()
            ));
        }
    }
    let mut moves: Vec<&CandidateMove> = input
        .moves
        .iter()
        .filter(|m| saves(m) || class(m) == 1)
        .collect();
    moves.sort_by(|a, b| {
        class(a)
            .cmp(&class(b))
            .then_with(|| match class(a) {
                0 => b.savings_per_hour.total_cmp(&a.savings_per_hour),
                1 => a.disruption_cost.total_cmp(&b.disruption_cost),
                _ => value(b).total_cmp(&value(a)),
            })
            .then(a.id.cmp(&b.id))
    });
    let mut used = vec![false; input.nodes.len()];
    let mut taken = Vec::new();
    for m in moves {
        if m.nodes.iter().any(|&n| used[n as usize]) || taken.contains(&m.id) {
            continue;
        }
        for &n in &m.nodes {
            used[n as usize] = true;
        }
        taken.push(m.id);
    }
    Ok(taken)
}

/// The default takes no settings: `null` (none given) or `{}`; anything else is refused, so that a
/// NodePool owner who meant another policy hears about it.
pub fn validate_settings(settings: &str) -> Result<(), String> {
    match settings.trim() {
        "null" | "{}" => Ok(()),
        other => Err(format!("{NAME} takes no settings, got {other}")),
    }
}

#[cfg(target_arch = "wasm32")]
mod guest {
    use kestrel_policy_sdk::consolidator::{ChosenMoves, ConsolidateInput, Guest, PolicyInfo};

    struct DefaultConsolidator;

    impl Guest for DefaultConsolidator {
        fn info() -> PolicyInfo {
            super::info()
        }
        fn validate_settings(settings: String) -> Result<(), String> {
            super::validate_settings(&settings)
        }
        fn consolidate(input: ConsolidateInput) -> Result<ChosenMoves, String> {
            Ok(ChosenMoves {
                ids: super::consolidate(&input)?,
                reasons: vec![],
            })
        }
    }

    kestrel_policy_sdk::consolidator::export_consolidator!(DefaultConsolidator);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_policy_sdk::consolidator::NodeInfo;

    fn node() -> NodeInfo {
        NodeInfo {
            instance_type: "m5.large".into(),
            zone: "us-east-1a".into(),
            capacity_type: 0,
            price: 0.096,
            age_seconds: 3600,
            cpu_utilization: 0.2,
            memory_utilization: 0.2,
            pods: 1,
        }
    }

    fn mv(
        id: u32,
        kind: MoveKind,
        reason: DisruptionReason,
        nodes: Vec<u32>,
        savings: f64,
        pods: u32,
        cost: f64,
    ) -> CandidateMove {
        CandidateMove {
            id,
            kind,
            reason,
            nodes,
            replacement_type: None,
            replacement_price: None,
            savings_per_hour: savings,
            pods_moved: pods,
            disruption_cost: cost,
        }
    }

    fn input(moves: Vec<CandidateMove>) -> ConsolidateInput {
        ConsolidateInput {
            node_pool: "default".into(),
            now: 0,
            nodes: vec![node(); 6],
            moves,
        }
    }

    #[test]
    fn empty_deletes_come_first_then_savings_per_disruption() {
        use DisruptionReason::*;
        use MoveKind::*;
        let i = input(vec![
            mv(1, Delete, Underutilized, vec![0], 0.10, 4, 4.0), // 0.025 per unit
            mv(2, Replace, Underutilized, vec![1], 0.05, 1, 1.0), // 0.05 per unit
            mv(3, Delete, Empty, vec![2], 0.02, 0, 0.0),
            mv(4, Delete, Empty, vec![3], 0.09, 0, 0.0),
        ]);
        assert_eq!(consolidate(&i).unwrap(), vec![4, 3, 2, 1]);
    }

    #[test]
    fn moves_that_save_nothing_are_never_taken_but_drift_is() {
        use DisruptionReason::*;
        use MoveKind::*;
        let i = input(vec![
            mv(1, Replace, Underutilized, vec![0], 0.0, 2, 2.0),
            mv(2, Replace, Underutilized, vec![1], -0.1, 2, 2.0),
            mv(3, Replace, Underutilized, vec![2], f64::NAN, 2, 2.0),
            mv(4, Replace, Drifted, vec![3], -0.05, 2, 2.0),
        ]);
        assert_eq!(consolidate(&i).unwrap(), vec![4]);
    }

    #[test]
    fn overlapping_moves_are_skipped_and_bad_nodes_rejected() {
        use DisruptionReason::*;
        use MoveKind::*;
        let i = input(vec![
            mv(1, Delete, Underutilized, vec![0, 1], 0.2, 2, 2.0),
            mv(2, Delete, Underutilized, vec![1], 0.09, 1, 1.0),
            mv(3, Delete, Underutilized, vec![2], 0.01, 1, 1.0),
        ]);
        assert_eq!(consolidate(&i).unwrap(), vec![1, 3]);
        let i = input(vec![mv(1, Delete, Empty, vec![9], 0.2, 0, 0.0)]);
        assert!(consolidate(&i).is_err());
    }
}
