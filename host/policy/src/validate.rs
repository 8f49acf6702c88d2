//! Checks on every answer a policy module gives, before the core sees it (pure functions).
use super::contract::{budget, consolidate, rank};

/// A ranking must name each offering at most once, in range, with one finite score per entry.
pub fn ranking(r: &rank::Ranking, offerings: usize) -> Result<(), String> {
    if r.order.len() != r.scores.len() {
        return Err(format!(
            "order has {} entries but scores has {}",
            r.order.len(),
            r.scores.len()
        ));
    }
    let mut seen = vec![false; offerings];
    for (pos, (&i, &score)) in r.order.iter().zip(&r.scores).enumerate() {
        let Some(slot) = seen.get_mut(i as usize) else {
            return Err(format!(
                "order[{pos}] = {i}: unknown offering (there are {offerings})"
            ));
        };
        if std::mem::replace(slot, true) {
            return Err(format!("order[{pos}] = {i}: duplicate offering"));
        }
        if !score.is_finite() {
            return Err(format!("scores[{pos}] = {score}: not a finite number"));
        }
    }
    Ok(())
}

/// Reasons of moves and budgets: none at all, or exactly one per choice, each at most
/// [`MAX_REASON_BYTES`](kestrel_policy_sdk::MAX_REASON_BYTES) bytes.
pub fn reasons(reasons: &[String], choices: usize) -> Result<(), String> {
    if !reasons.is_empty() && reasons.len() != choices {
        return Err(format!(
            "{} reasons for {choices} choices (give none, or one per choice)",
            reasons.len()
        ));
    }
    reason_lengths(reasons)
}

/// Reasons of a ranking: for its first entries (none, a prefix, or all), each at most
/// [`MAX_REASON_BYTES`](kestrel_policy_sdk::MAX_REASON_BYTES) bytes. A prefix is enough because the
/// host reports the first, and a reason per offering of a catalog-wide pool costs more than the
/// ranking (`kestrel policy bench`: 6.5 of prefer-graviton's 8.1 ms at 5,000 offerings).
pub fn ranking_reasons(reasons: &[String], entries: usize) -> Result<(), String> {
    if reasons.len() > entries {
        return Err(format!(
            "{} reasons for {entries} entries (give at most one per entry, from the first)",
            reasons.len()
        ));
    }
    reason_lengths(reasons)
}

fn reason_lengths(reasons: &[String]) -> Result<(), String> {
    let max = kestrel_policy_sdk::MAX_REASON_BYTES;
    if let Some((pos, r)) = reasons.iter().enumerate().find(|(_, r)| r.len() > max) {
        return Err(format!(
            "reasons[{pos}] is {} bytes long, more than {max}",
            r.len()
        ));
    }
    Ok(())
}

/// Chosen moves must be among the candidates, each at most once.
pub fn moves(ids: &[u32], input: &consolidate::ConsolidateInput) -> Result<(), String> {
    let mut seen = Vec::with_capacity(ids.len());
    for (pos, id) in ids.iter().enumerate() {
        if !input.moves.iter().any(|m| m.id == *id) {
            return Err(format!("answer[{pos}] = {id}: not a candidate move id"));
        }
        if seen.contains(id) {
            return Err(format!("answer[{pos}] = {id}: duplicate move id"));
        }
        seen.push(*id);
    }
    Ok(())
}

/// A budget answer, normalised to one entry per reason of `ceiling` (in its order) and clamped to it: a
/// policy may only tighten the NodePool's own budgets. Returns the answer and whether it was clamped.
pub fn budget(
    answer: &[budget::ReasonCount],
    ceiling: &[budget::ReasonCount],
) -> Result<(Vec<budget::ReasonCount>, bool), String> {
    for (pos, a) in answer.iter().enumerate() {
        if answer[..pos].iter().any(|b| b.reason == a.reason) {
            return Err(format!("answer[{pos}]: duplicate reason {:?}", a.reason));
        }
    }
    let mut clamped = false;
    let out = ceiling
        .iter()
        .map(|c| {
            let asked = answer
                .iter()
                .find(|a| a.reason == c.reason)
                .map_or(0, |a| a.count);
            clamped |= asked > c.count;
            budget::ReasonCount {
                reason: c.reason,
                count: asked.min(c.count),
            }
        })
        .collect();
    Ok((out, clamped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use budget::{DisruptionReason::*, ReasonCount};

    #[test]
    fn rankings_with_bad_indexes_or_scores_are_refused() {
        let r = |order: Vec<u32>, scores: Vec<f64>| rank::Ranking {
            order,
            scores,
            reasons: vec![],
        };
        assert!(ranking(&r(vec![1, 0], vec![1.0, 2.0]), 2).is_ok());
        assert!(ranking(&r(vec![], vec![]), 2).is_ok());
        assert!(
            ranking(&r(vec![2], vec![1.0]), 2)
                .unwrap_err()
                .contains("unknown")
        );
        assert!(
            ranking(&r(vec![0, 0], vec![1.0, 1.0]), 2)
                .unwrap_err()
                .contains("duplicate")
        );
        assert!(
            ranking(&r(vec![0], vec![f64::NAN]), 2)
                .unwrap_err()
                .contains("finite")
        );
        assert!(ranking(&r(vec![0], vec![f64::INFINITY]), 2).is_err());
        assert!(
            ranking(&r(vec![0, 1], vec![1.0]), 2)
                .unwrap_err()
                .contains("scores")
        );
    }

    #[test]
    fn budgets_are_clamped_to_the_static_ones() {
        let rc = |reason, count| ReasonCount { reason, count };
        let ceiling = [rc(Empty, 2), rc(Underutilized, 1), rc(Drifted, 0)];
        let (out, clamped) = budget(&[rc(Drifted, 5), rc(Empty, 1)], &ceiling).unwrap();
        assert_eq!(
            out,
            vec![rc(Empty, 1), rc(Underutilized, 0), rc(Drifted, 0)]
        );
        assert!(clamped);
        let (_, clamped) = budget(&[rc(Empty, 2)], &ceiling).unwrap();
        assert!(!clamped);
        assert!(budget(&[rc(Empty, 1), rc(Empty, 1)], &ceiling).is_err());
    }

    #[test]
    fn moves_must_be_known_and_unique() {
        let input = consolidate::ConsolidateInput {
            node_pool: "p".into(),
            now: 0,
            nodes: vec![],
            moves: vec![consolidate::CandidateMove {
                id: 7,
                kind: consolidate::MoveKind::Delete,
                reason: consolidate::DisruptionReason::Empty,
                nodes: vec![],
                replacement_type: None,
                replacement_price: None,
                savings_per_hour: 1.0,
                pods_moved: 0,
                disruption_cost: 0.0,
            }],
        };
        assert!(moves(&[7], &input).is_ok());
        assert!(moves(&[], &input).is_ok());
        assert!(moves(&[8], &input).is_err());
        assert!(moves(&[7, 7], &input).is_err());
    }

    #[test]
    fn reasons_are_none_or_one_per_choice_and_short() {
        assert!(reasons(&[], 3).is_ok());
        assert!(reasons(&["a".into(), "b".into()], 2).is_ok());
        assert!(
            reasons(&["a".into()], 2)
                .unwrap_err()
                .contains("1 reasons for 2")
        );
        let max = kestrel_policy_sdk::MAX_REASON_BYTES;
        assert!(reasons(&["é".repeat(max / 2)], 1).is_ok());
        let err = reasons(&["x".repeat(max + 1)], 1).unwrap_err();
        assert!(err.contains(&format!("{} bytes", max + 1)), "{err}");
    }

    #[test]
    fn ranking_reasons_may_cover_the_first_entries_only() {
        assert!(ranking_reasons(&[], 3).is_ok());
        assert!(ranking_reasons(&["a".into()], 3).is_ok());
        assert!(ranking_reasons(&["a".into(), "b".into(), "c".into()], 3).is_ok());
        let err = ranking_reasons(&["a".into(), "b".into()], 1).unwrap_err();
        assert!(err.contains("2 reasons for 1 entries"), "{err}");
        let max = kestrel_policy_sdk::MAX_REASON_BYTES;
        let err = ranking_reasons(&["ok".into(), "x".repeat(max + 1)], 5).unwrap_err();
        assert!(err.contains("reasons[1]"), "{err}");
    }
}
