//! Disruption budgets: how many of a NodePool's nodes may be disrupted now, per reason.
//!
//! The host computes the NodePool's own limit (Karpenter v1: the most restrictive active budget that
//! applies to the reason, percentages of the pool's nodes rounded up, minus the nodes already
//! disrupting); the budgeter policy may only tighten it. A failed or contract-breaking policy answer
//! falls back to the native default, and the fallback is reported.

use std::collections::BTreeMap;

use super::PoolSettings;
use crate::api::nodepool::{Budget, DisruptionReason as ApiReason};
use crate::clock::Millis;
use crate::policy::Budgeter;
use crate::policy::contract::budget as wit;

pub const REASONS: [ApiReason; 3] = [
    ApiReason::Empty,
    ApiReason::Underutilized,
    ApiReason::Drifted,
];

/// How many more nodes may go now, per reason, and who said so.
#[derive(Debug, Clone, PartialEq)]
pub struct Allowance {
    pub allowed: BTreeMap<ApiReason, u32>,
    /// The NodePool's own limit per reason (before the policy).
    pub limit: BTreeMap<ApiReason, u32>,
    pub decided_by: String,
    pub fallback: Option<String>,
    /// The budgeter's own reason per disruption reason (contract 0.2.0), when it gave any.
    pub reasons: BTreeMap<ApiReason, String>,
}

impl Allowance {
    pub fn get(&self, reason: ApiReason) -> u32 {
        self.allowed.get(&reason).copied().unwrap_or(0)
    }

    /// A move of `n` nodes was taken: every reason shares the pool's disrupting count.
    pub fn spend(&mut self, n: u32) {
        for v in self.allowed.values_mut() {
            *v = v.saturating_sub(n);
        }
        for v in self.limit.values_mut() {
            *v = v.saturating_sub(n);
        }
    }
}

pub fn to_wit(reason: ApiReason) -> wit::DisruptionReason {
    match reason {
        ApiReason::Empty => wit::DisruptionReason::Empty,
        ApiReason::Underutilized => wit::DisruptionReason::Underutilized,
        ApiReason::Drifted => wit::DisruptionReason::Drifted,
    }
}

/// The most restrictive budget applying to `reason` at `now`, as a node count of `total`.
pub fn budget_limit(budgets: &[Budget], reason: ApiReason, total: u32, now: Millis) -> u32 {
    budgets
        .iter()
        .filter(|b| b.applies_to(reason) && b.is_active_at_millis(now))
        // An unparsable `nodes` blocks the reason: the cautious reading (validation reports it).
        .map(|b| b.nodes().map_or(0, |n| n.allowed(total)))
        .min()
        .unwrap_or(total)
}

/// The NodePool's own allowance per reason: limit minus what is already disrupting.
pub fn host_limits(
    pool: &PoolSettings,
    total: u32,
    disrupting: u32,
    now: Millis,
) -> BTreeMap<ApiReason, u32> {
    REASONS
        .iter()
        .map(|&r| {
            (
                r,
                budget_limit(&pool.budgets, r, total, now).saturating_sub(disrupting),
            )
        })
        .collect()
}

pub fn budget_input(
    pool: &PoolSettings,
    total: u32,
    disrupting: u32,
    candidates: &BTreeMap<ApiReason, u32>,
    now: Millis,
) -> wit::BudgetInput {
    wit::BudgetInput {
        node_pool: pool.spec.name.clone(),
        now: now.div_euclid(1000),
        budgets: pool
            .budgets
            .iter()
            .map(|b| wit::Budget {
                nodes: match b.nodes() {
                    Ok(crate::api::BudgetNodes::Count(n)) => wit::BudgetNodes::Count(n),
                    Ok(crate::api::BudgetNodes::Percent(p)) => wit::BudgetNodes::Percent(p),
                    Err(_) => wit::BudgetNodes::Count(0),
                },
                schedule: b.schedule.clone(),
                duration_seconds: b.duration().ok().flatten().map(|d| d.as_secs()),
                reasons: b
                    .reasons
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .map(|&r| to_wit(r))
                    .collect(),
                active: b.is_active_at_millis(now),
            })
            .collect(),
        total_nodes: total,
        disrupting,
        candidates: REASONS
            .iter()
            .map(|&r| wit::ReasonCount {
                reason: to_wit(r),
                count: candidates.get(&r).copied().unwrap_or(0),
            })
            .collect(),
    }
}

/// Asks the budgeter and clamps its answer to the NodePool's own limits.
pub fn allowance(
    budgeter: &mut dyn Budgeter,
    pool: &PoolSettings,
    total: u32,
    disrupting: u32,
    candidates: &BTreeMap<ApiReason, u32>,
    now: Millis,
) -> Allowance {
    let limit = host_limits(pool, total, disrupting, now);
    let input = budget_input(pool, total, disrupting, candidates, now);
    let verdict = budgeter.allowed(&input);
    let mut answered: BTreeMap<ApiReason, u32> = BTreeMap::new();
    let mut reasons: BTreeMap<ApiReason, String> = BTreeMap::new();
    for (k, rc) in verdict.value.iter().enumerate() {
        let r = match rc.reason {
            wit::DisruptionReason::Empty => ApiReason::Empty,
            wit::DisruptionReason::Underutilized => ApiReason::Underutilized,
            wit::DisruptionReason::Drifted => ApiReason::Drifted,
        };
        if let Some(why) = verdict.reason(k) {
            reasons.entry(r).or_insert_with(|| why.to_string());
        }
        // A reason answered twice counts at its tighter value.
        let v = answered.entry(r).or_insert(rc.count);
        *v = (*v).min(rc.count);
    }
    let allowed = REASONS
        .iter()
        .map(|&r| (r, answered.get(&r).copied().unwrap_or(0).min(limit[&r])))
        .collect();
    Allowance {
        allowed,
        limit,
        decided_by: verdict.decided_by,
        reasons,
        fallback: verdict.fallback.map(|f| {
            format!(
                "{} failed ({:?}: {}), default used",
                f.policy, f.kind, f.detail
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(nodes: &str, reasons: Option<Vec<ApiReason>>) -> Budget {
        Budget {
            nodes: nodes.into(),
            schedule: None,
            duration: None,
            reasons,
        }
    }

    #[test]
    fn most_restrictive_applicable_budget_wins_and_percent_rounds_up() {
        let budgets = vec![
            budget("10%", None),
            budget("0", Some(vec![ApiReason::Drifted])),
        ];
        assert_eq!(budget_limit(&budgets, ApiReason::Empty, 15, 0), 2);
        assert_eq!(budget_limit(&budgets, ApiReason::Drifted, 15, 0), 0);
        assert_eq!(budget_limit(&[], ApiReason::Empty, 7, 0), 7);
    }

    #[test]
    fn inactive_scheduled_budget_does_not_apply() {
        // Active 09:00-17:00 UTC on weekdays; 2026-01-04 is a Sunday.
        let mut b = budget("0", None);
        b.schedule = Some("0 9 * * mon-fri".into());
        b.duration = Some("8h".into());
        let sunday_noon = 1_767_528_000_000; // 2026-01-04T12:00:00Z
        assert_eq!(
            budget_limit(std::slice::from_ref(&b), ApiReason::Empty, 10, sunday_noon),
            10
        );
        let monday_ten = sunday_noon + 22 * 3_600_000; // 2026-01-05T10:00:00Z
        assert_eq!(budget_limit(&[b], ApiReason::Empty, 10, monday_ten), 0);
    }

    mod agreement {
        use std::sync::Arc;

        use proptest::prelude::*;

        use super::*;
        use crate::disruption::DriftStamp;
        use crate::model::ConsolidationPolicy;
        use crate::policy::native::NativeBudgeter;

        fn pool(budgets: Vec<Budget>) -> PoolSettings {
            PoolSettings {
                spec: Default::default(),
                consolidation_policy: ConsolidationPolicy::WhenEmptyOrUnderutilized,
                consolidate_after: Some(0),
                expire_after: None,
                termination_grace_period: None,
                budgets,
                drift: DriftStamp::default(),
                launchable: Arc::from(Vec::new()),
            }
        }

        fn budget_gen() -> impl Strategy<Value = Budget> {
            (
                prop_oneof![
                    (0u32..30).prop_map(|n| n.to_string()),
                    (0u32..=100).prop_map(|p| format!("{p}%")),
                ],
                proptest::option::of(proptest::sample::subsequence(REASONS.to_vec(), 0..=3)),
            )
                .prop_map(|(nodes, reasons)| Budget {
                    nodes,
                    schedule: None,
                    duration: None,
                    reasons,
                })
        }

        proptest! {
            /// The host's own limit and the native default budgeter (the policy crate's copy, which
            /// compiles to wasm on its own) give the same numbers for every reason.
            #[test]
            fn native_default_budgeter_and_host_clamp_agree(
                budgets in proptest::collection::vec(budget_gen(), 0..4),
                total in 0u32..300,
                disrupting in 0u32..40,
            ) {
                let pool = pool(budgets);
                let host = host_limits(&pool, total, disrupting, 0);
                let input = budget_input(&pool, total, disrupting, &BTreeMap::new(), 0);
                let native = NativeBudgeter::answer(&input);
                prop_assert!(native.fallback.is_none());
                for rc in native.value {
                    let reason = match rc.reason {
                        wit::DisruptionReason::Empty => ApiReason::Empty,
                        wit::DisruptionReason::Underutilized => ApiReason::Underutilized,
                        wit::DisruptionReason::Drifted => ApiReason::Drifted,
                    };
                    prop_assert_eq!(rc.count, host[&reason], "{:?}", reason);
                }
            }

            /// The scheduling model's budget arithmetic is the API's (percentages round up).
            #[test]
            fn model_budget_nodes_round_up_like_the_api(p in 0u32..=100, total in 0u32..1000) {
                let model = crate::model::BudgetNodes::Percent(p).of(total);
                prop_assert_eq!(model, crate::api::BudgetNodes::Percent(p).allowed(total));
                prop_assert_eq!(model, (total * p).div_ceil(100));
            }
        }
    }
}
