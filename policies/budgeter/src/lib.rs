//! The default budgeter: Karpenter v1 disruption budgets.
//!
//! - An empty budget list means no limit, as in Karpenter (`GetAllowedDisruptionsByReason` starts
//!   from MaxInt32); the host fills in the default `nodes: 10%` when a NodePool leaves `budgets` unset.
//! - A percentage is of the NodePool's nodes, rounded up (Karpenter's
//!   `GetScaledValueFromIntOrPercent(.., roundUp=true)`).
//! - Only `active` budgets count; a budget with no reasons applies to every reason; the most restrictive
//!   applicable budget wins; no applicable active budget means no limit (all nodes).
//! - Nodes already disrupting use up budget: allowed = limit − disrupting, floored at 0.
//!
//! The answer has one entry per reason (`empty`, `underutilized`, `drifted`).
use kestrel_policy_sdk::budgeter::{
    Budget, BudgetInput, BudgetNodes, DisruptionReason, PolicyInfo, ReasonCount,
};

pub const NAME: &str = "default-budgeter";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub const REASONS: [DisruptionReason; 3] = [
    DisruptionReason::Empty,
    DisruptionReason::Underutilized,
    DisruptionReason::Drifted,
];

pub fn info() -> PolicyInfo {
    PolicyInfo {
        name: NAME.into(),
        version: VERSION.into(),
        contract: kestrel_policy_sdk::CONTRACT.into(),
    }
}

/// `nodes` scaled to `total` nodes, percentages rounded up.
pub fn scaled(nodes: BudgetNodes, total: u32) -> u32 {
    match nodes {
        BudgetNodes::Count(n) => n,
        BudgetNodes::Percent(p) => (u64::from(total) * u64::from(p))
            .div_ceil(100)
            .min(u64::from(u32::MAX)) as u32,
    }
}

fn applies(b: &Budget, reason: DisruptionReason) -> bool {
    b.active && (b.reasons.is_empty() || b.reasons.contains(&reason))
}

/// How many more nodes may be disrupted now for `reason`.
pub fn allowed_for(input: &BudgetInput, reason: DisruptionReason) -> u32 {
    let limit = input
        .budgets
        .iter()
        .filter(|b| applies(b, reason))
        .map(|b| scaled(b.nodes, input.total_nodes))
        .min()
        .unwrap_or(input.total_nodes);
    limit.saturating_sub(input.disrupting)
}

pub fn allowed(input: &BudgetInput) -> Result<Vec<ReasonCount>, String> {
    if let Some(b) = input
        .budgets
        .iter()
        .find(|b| matches!(b.nodes, BudgetNodes::Percent(p) if p > 100))
    {
        return Err(format!("budget percentage {:?} is above 100%", b.nodes));
    }
    Ok(REASONS
        .iter()
        .map(|&reason| ReasonCount {
            reason,
            count: allowed_for(input, reason),
        })
        .collect())
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
    use kestrel_policy_sdk::budgeter::{Allowance, BudgetInput, Guest, PolicyInfo};

    struct DefaultBudgeter;

    impl Guest for DefaultBudgeter {
        fn info() -> PolicyInfo {
            super::info()
        }
        fn validate_settings(settings: String) -> Result<(), String> {
            super::validate_settings(&settings)
        }
        fn allowed(input: BudgetInput) -> Result<Allowance, String> {
            Ok(Allowance {
                counts: super::allowed(&input)?,
                reasons: vec![],
            })
        }
    }

    kestrel_policy_sdk::budgeter::export_budgeter!(DefaultBudgeter);
}

#[cfg(test)]
mod tests {
    use super::*;
    use DisruptionReason::*;

    fn budget(nodes: BudgetNodes, reasons: Vec<DisruptionReason>, active: bool) -> Budget {
        Budget {
            nodes,
            schedule: None,
            duration_seconds: None,
            reasons,
            active,
        }
    }

    fn input(budgets: Vec<Budget>, total: u32, disrupting: u32) -> BudgetInput {
        BudgetInput {
            node_pool: "default".into(),
            now: 0,
            budgets,
            total_nodes: total,
            disrupting,
            candidates: vec![],
        }
    }

    fn counts(i: &BudgetInput) -> Vec<u32> {
        allowed(i).unwrap().iter().map(|r| r.count).collect()
    }

    #[test]
    fn no_budgets_means_no_limit_and_ten_percent_rounds_up() {
        assert_eq!(counts(&input(vec![], 25, 0)), vec![25, 25, 25]);
        assert_eq!(counts(&input(vec![], 25, 7)), vec![18, 18, 18]);
        let ten = || vec![budget(BudgetNodes::Percent(10), vec![], true)];
        assert_eq!(counts(&input(ten(), 25, 0)), vec![3, 3, 3]);
        assert_eq!(counts(&input(ten(), 1, 0)), vec![1, 1, 1]);
        assert_eq!(counts(&input(ten(), 0, 0)), vec![0, 0, 0]);
        assert_eq!(counts(&input(ten(), 25, 2)), vec![1, 1, 1]);
        assert_eq!(counts(&input(ten(), 25, 7)), vec![0, 0, 0]);
    }

    #[test]
    fn most_restrictive_active_budget_per_reason_wins() {
        let b = vec![
            budget(BudgetNodes::Percent(20), vec![], true),
            budget(BudgetNodes::Count(1), vec![Drifted], true),
            budget(BudgetNodes::Count(0), vec![Underutilized], false),
        ];
        assert_eq!(counts(&input(b, 11, 0)), vec![3, 3, 1]);
    }

    #[test]
    fn a_zero_budget_blocks_and_inactive_budgets_do_not_count() {
        let b = vec![budget(BudgetNodes::Count(0), vec![], true)];
        assert_eq!(counts(&input(b, 10, 0)), vec![0, 0, 0]);
        let b = vec![budget(BudgetNodes::Count(0), vec![], false)];
        assert_eq!(counts(&input(b, 10, 3)), vec![7, 7, 7]);
    }

    #[test]
    fn percentages_above_100_are_refused() {
        let b = vec![budget(BudgetNodes::Percent(150), vec![], true)];
        assert!(allowed(&input(b, 10, 0)).is_err());
    }
}
