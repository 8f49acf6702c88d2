//! A budgeter that always allows 1000 disruptions per reason: the host must clamp it to the NodePool's
//! own budgets.
use kestrel_policy_sdk::budgeter::{
    Allowance, BudgetInput, DisruptionReason, Guest, PolicyInfo, ReasonCount,
};

struct Generous;

impl Guest for Generous {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "generous".into(),
            version: "0.1.0".into(),
            contract: kestrel_policy_sdk::CONTRACT.into(),
        }
    }

    fn validate_settings(_settings: String) -> Result<(), String> {
        Ok(())
    }

    fn allowed(_input: BudgetInput) -> Result<Allowance, String> {
        let counts: Vec<ReasonCount> = [
            DisruptionReason::Empty,
            DisruptionReason::Underutilized,
            DisruptionReason::Drifted,
        ]
        .into_iter()
        .map(|reason| ReasonCount {
            reason,
            count: 1000,
        })
        .collect();
        Ok(Allowance {
            reasons: vec!["generous on purpose".into(); counts.len()],
            counts,
        })
    }
}

kestrel_policy_sdk::budgeter::export_budgeter!(Generous);
