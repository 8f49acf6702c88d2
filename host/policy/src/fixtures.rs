//! Fixtures: the built-in canary inputs every new policy must answer before it is swapped in, and the
//! fixture files `kestrel policy test` runs (YAML or JSON).
//!
//! ```yaml
//! kind: ranker            # ranker | consolidator | budgeter
//! settings: { ... }       # optional: the policy's settings (what `kestrel.dev/<kind>-settings` holds)
//! settings_error: "..."   # optional: loading must fail with a settings error containing this text
//! catalog: { ... }        # ranker only: sent with set-catalog before the cases
//! cases:
//!   - name: cheapest first
//!     input: { ... }      # rank-input | consolidate-input | budget-input, field names in snake_case
//!     expect: { order: [1, 0] }   # optional; for an object, only the keys given are compared
//! ```
use super::PolicyKind;
use super::contract::{budget, consolidate, rank};
use kestrel_policy_sdk::capacity_type::{ON_DEMAND, SPOT};

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureFile {
    pub kind: PolicyKind,
    /// The policy's settings; absent means none (`null`).
    #[serde(default)]
    pub settings: Option<serde_json::Value>,
    /// When given, the policy must refuse `settings` with a message containing this text.
    #[serde(default)]
    pub settings_error: Option<String>,
    #[serde(default)]
    pub catalog: Option<rank::Catalog>,
    #[serde(default)]
    pub cases: Vec<FixtureCase>,
}

impl FixtureFile {
    /// The settings as the JSON text the policy receives.
    pub fn settings_json(&self) -> String {
        match &self.settings {
            None => super::NO_SETTINGS.into(),
            Some(v) => v.to_string(),
        }
    }
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureCase {
    pub name: String,
    pub input: serde_json::Value,
    #[serde(default)]
    pub expect: Option<serde_json::Value>,
}

/// Whether `answer` matches `expect`: objects compare only the keys `expect` gives, anything else exactly.
pub fn matches(expect: &serde_json::Value, answer: &serde_json::Value) -> bool {
    match (expect, answer) {
        (serde_json::Value::Object(e), serde_json::Value::Object(a)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| matches(v, av))),
        (serde_json::Value::Number(e), serde_json::Value::Number(a)) => {
            match (e.as_f64(), a.as_f64()) {
                (Some(e), Some(a)) => (e - a).abs() <= 1e-9 * e.abs().max(1.0),
                _ => e == a,
            }
        }
        (serde_json::Value::Array(e), serde_json::Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(e, a)| matches(e, a))
        }
        _ => expect == answer,
    }
}

/// A small catalog: two x86 types, one arm64 type.
pub fn canary_catalog() -> rank::Catalog {
    let it = |name: &str, arch: u32, family: u32| rank::InstanceType {
        name: name.into(),
        cpu_millis: 1930,
        memory_mib: 7000,
        pods: 29,
        gpus: 0,
        labels: vec![(0, arch), (1, family)],
    };
    rank::Catalog {
        revision: 1,
        label_keys: vec![
            "kubernetes.io/arch".into(),
            "karpenter.k8s.aws/instance-family".into(),
        ],
        label_values: vec![
            "amd64".into(),
            "arm64".into(),
            "m5".into(),
            "c5".into(),
            "m6g".into(),
        ],
        zones: vec!["us-east-1a".into(), "us-east-1b".into()],
        instance_types: vec![
            it("m5.large", 0, 2),
            it("c5.large", 0, 3),
            it("m6g.large", 1, 4),
        ],
    }
}

pub fn canary_rank_input() -> rank::RankInput {
    rank::RankInput {
        node_pool: "canary".into(),
        now: 1_700_000_000,
        seed: 1,
        pods: vec![rank::PodShape {
            count: 3,
            cpu_millis: 500,
            memory_mib: 1024,
            gpus: 0,
        }],
        offerings: rank::Offerings {
            instance_type: vec![0, 1, 2, 0],
            zone: vec![0, 0, 1, 1],
            capacity_type: vec![ON_DEMAND, ON_DEMAND, ON_DEMAND, SPOT],
            price: vec![0.096, 0.085, 0.077, 0.035],
            interruption: vec![0.0, 0.0, 0.0, 0.1],
            capacity_score: vec![-1.0, -1.0, -1.0, 0.8],
            pods_per_node: vec![3, 3, 3, 3],
        },
        min_values: vec![],
    }
}

pub fn canary_consolidate_input() -> consolidate::ConsolidateInput {
    let node = |price: f64, pods: u32| consolidate::NodeInfo {
        instance_type: "m5.large".into(),
        zone: "us-east-1a".into(),
        capacity_type: ON_DEMAND,
        price,
        age_seconds: 7200,
        cpu_utilization: 0.1,
        memory_utilization: 0.1,
        pods,
    };
    consolidate::ConsolidateInput {
        node_pool: "canary".into(),
        now: 1_700_000_000,
        nodes: vec![node(0.096, 0), node(0.096, 2)],
        moves: vec![
            consolidate::CandidateMove {
                id: 1,
                kind: consolidate::MoveKind::Delete,
                reason: consolidate::DisruptionReason::Empty,
                nodes: vec![0],
                replacement_type: None,
                replacement_price: None,
                savings_per_hour: 0.096,
                pods_moved: 0,
                disruption_cost: 0.0,
            },
            consolidate::CandidateMove {
                id: 2,
                kind: consolidate::MoveKind::Replace,
                reason: consolidate::DisruptionReason::Underutilized,
                nodes: vec![1],
                replacement_type: Some("t3.small".into()),
                replacement_price: Some(0.0208),
                savings_per_hour: 0.0752,
                pods_moved: 2,
                disruption_cost: 2.0,
            },
        ],
    }
}

pub fn canary_budget_input() -> budget::BudgetInput {
    budget::BudgetInput {
        node_pool: "canary".into(),
        now: 1_700_000_000,
        budgets: vec![budget::Budget {
            nodes: budget::BudgetNodes::Percent(20),
            schedule: None,
            duration_seconds: None,
            reasons: vec![],
            active: true,
        }],
        total_nodes: 10,
        disrupting: 0,
        candidates: vec![budget::ReasonCount {
            reason: budget::DisruptionReason::Empty,
            count: 1,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expectations_compare_only_the_keys_given() {
        let answer = json!({"order": [1, 0], "scores": [0.1, 0.2]});
        assert!(matches(&json!({"order": [1, 0]}), &answer));
        assert!(matches(&json!({"scores": [0.1, 0.2000000000001]}), &answer));
        assert!(!matches(&json!({"order": [0, 1]}), &answer));
        assert!(!matches(&json!({"order": [1]}), &answer));
        assert!(!matches(&json!({"missing": 1}), &answer));
        assert!(matches(&json!([1, 2]), &json!([1, 2])));
    }

    #[test]
    fn fixture_files_round_trip_through_yaml() {
        let file = FixtureFile {
            kind: PolicyKind::Budgeter,
            settings: Some(json!({"freezes": []})),
            settings_error: None,
            catalog: None,
            cases: vec![FixtureCase {
                name: "c".into(),
                input: serde_json::to_value(canary_budget_input()).unwrap(),
                expect: None,
            }],
        };
        let text = serde_yaml_ng::to_string(&file).unwrap();
        let back: FixtureFile = serde_yaml_ng::from_str(&text).unwrap();
        let input: budget::BudgetInput =
            serde_json::from_value(back.cases[0].input.clone()).unwrap();
        assert_eq!(input, canary_budget_input());
        assert_eq!(back.settings_json(), r#"{"freezes":[]}"#);
        let none: FixtureFile = serde_yaml_ng::from_str("kind: ranker\ncases: []\n").unwrap();
        assert_eq!(none.settings_json(), "null");
    }
}
