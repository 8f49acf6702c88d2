//! A consolidator that takes nothing between 09:00 and 17:00 UTC on weekdays; otherwise every move
//! that saves money (and every drift replacement), empty-node deletes first, then the largest saving,
//! one move per node. Built to wasm by tests/build.rs for the disruption tests.
use kestrel_policy_sdk::consolidator::{
    CandidateMove, ChosenMoves, ConsolidateInput, DisruptionReason, Guest, MoveKind, PolicyInfo,
};

struct BusinessHours;

fn in_business_hours(unix_seconds: i64) -> bool {
    let secs_of_day = unix_seconds.rem_euclid(86_400);
    // 1970-01-01 was a Thursday (weekday 4, with Sunday = 0).
    let weekday = (unix_seconds.div_euclid(86_400) + 4).rem_euclid(7);
    (1..=5).contains(&weekday) && (9 * 3600..17 * 3600).contains(&secs_of_day)
}

impl Guest for BusinessHours {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "not-during-business-hours".into(),
            version: "0.1.0".into(),
            contract: kestrel_policy_sdk::CONTRACT.into(),
        }
    }

    fn validate_settings(_settings: String) -> Result<(), String> {
        Ok(())
    }

    fn consolidate(input: ConsolidateInput) -> Result<ChosenMoves, String> {
        if in_business_hours(input.now) {
            return Ok(ChosenMoves {
                ids: Vec::new(),
                reasons: Vec::new(),
            });
        }
        let empty = |m: &CandidateMove| m.kind == MoveKind::Delete && m.pods_moved == 0;
        let mut moves: Vec<&CandidateMove> = input
            .moves
            .iter()
            .filter(|m| m.reason == DisruptionReason::Drifted || m.savings_per_hour > 0.0)
            .collect();
        moves.sort_by(|a, b| {
            empty(b)
                .cmp(&empty(a))
                .then(b.savings_per_hour.total_cmp(&a.savings_per_hour))
                .then(a.id.cmp(&b.id))
        });
        let mut used = vec![false; input.nodes.len()];
        let mut taken = Vec::new();
        for m in moves {
            if m.nodes
                .iter()
                .any(|&n| used.get(n as usize).copied().unwrap_or(true))
            {
                continue;
            }
            for &n in &m.nodes {
                used[n as usize] = true;
            }
            taken.push(m.id);
        }
        Ok(ChosenMoves {
            reasons: vec!["outside business hours".into(); taken.len()],
            ids: taken,
        })
    }
}

kestrel_policy_sdk::consolidator::export_consolidator!(BusinessHours);
