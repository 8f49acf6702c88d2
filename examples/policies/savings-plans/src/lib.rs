//! Example Kestrel ranker: ranks by the price the team actually pays, after its Savings Plans and
//! Reserved Instances (given in its settings, annotation `kestrel.dev/ranker-settings`), not the list
//! price (Karpenter users have asked for custom pricing for years: aws/karpenter-provider-aws#4136).
//!
//! ```yaml
//! savings_plan_percent: { m5: 28, c6g: 31 }   # by instance family, on on-demand offerings
//! reserved_hourly: { m5.large: 0.0 }           # already paid for (an RI with spare capacity): this price
//! ```
//!
//! Offerings are ordered by effective price per pending pod; the score is the effective hourly price
//! (what the packer minimises). Spot is left at its (already risk-free of commitments) list price.
use kestrel_policy_sdk::capacity_type::ON_DEMAND;
use kestrel_policy_sdk::helpers::offerings;
use kestrel_policy_sdk::ranker::{Catalog, Guest, PolicyInfo, RankInput, Ranking};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Discount in percent by instance family (the part of the type's name before the dot).
    pub savings_plan_percent: BTreeMap<String, f64>,
    /// Effective on-demand hourly price by instance type (Reserved Instances).
    pub reserved_hourly: BTreeMap<String, f64>,
}

/// Parses and checks settings (JSON text, `null`: no discounts, list prices).
pub fn settings(json: &str) -> Result<Settings, String> {
    let s: Settings = kestrel_policy_sdk::settings::parse(json)?;
    if let Some((f, p)) = s.savings_plan_percent.iter().find(|(_, p)| !(0.0..100.0).contains(*p)) {
        return Err(format!("savings_plan_percent.{f} must be in [0, 100), got {p}"));
    }
    if let Some((t, p)) = s.reserved_hourly.iter().find(|(_, p)| !p.is_finite() || **p < 0.0) {
        return Err(format!("reserved_hourly.{t} must be a price >= 0, got {p}"));
    }
    Ok(s)
}

/// What an offering's effective price is based on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Basis {
    /// Spot: its own price.
    Spot,
    /// A Reserved Instance's hourly price, from the settings.
    Reserved,
    /// The list price less a Savings Plan's discount (percent), from the settings.
    SavingsPlan(f64),
    /// On-demand at list price.
    List,
}

/// The effective hourly price of an offering and what it is based on.
pub fn effective(s: &Settings, type_name: &str, capacity_type: u8, price: f64) -> (f64, Basis) {
    if capacity_type != ON_DEMAND {
        return (price, Basis::Spot);
    }
    if let Some(&p) = s.reserved_hourly.get(type_name) {
        return (p, Basis::Reserved);
    }
    let family = type_name.split('.').next().unwrap_or(type_name);
    match s.savings_plan_percent.get(family) {
        Some(&pct) => (price * (1.0 - pct / 100.0), Basis::SavingsPlan(pct)),
        None => (price, Basis::List),
    }
}

/// Why an offering costs `effective` (its list price `price`).
pub fn why(type_name: &str, price: f64, effective: f64, basis: Basis) -> String {
    match basis {
        Basis::Spot => format!("{type_name} at its ${price:.4}/h price"),
        Basis::Reserved => format!("{type_name} reserved at ${effective:.4}/h (list ${price:.4})"),
        Basis::SavingsPlan(pct) => {
            format!("{type_name} at ${effective:.4}/h after a {pct}% Savings Plan (list ${price:.4})")
        }
        Basis::List => format!("{type_name} on-demand at list ${price:.4}/h"),
    }
}

/// How many of the first entries carry a reason (the host reports the first; formatting one for each
/// of the thousands of offerings of a catalog-wide NodePool would cost more than the ranking).
pub const REASONS: usize = 5;

pub fn rank(s: &Settings, catalog: &Catalog, input: &RankInput) -> Result<Ranking, String> {
    let name = |t: u32| catalog.instance_types.get(t as usize).map_or("?", |t| t.name.as_str());
    // (effective per pod, effective, offering, its type, list price, basis)
    let mut rows: Vec<(f64, f64, u32, u32, f64, Basis)> = offerings(&input.offerings)?
        .map(|o| {
            let (price, basis) = effective(s, name(o.instance_type), o.capacity_type, o.price);
            let per_pod = price / f64::from(o.pods_per_node.max(1));
            (per_pod, price, o.index, o.instance_type, o.price, basis)
        })
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.2.cmp(&b.2)));
    Ok(Ranking {
        order: rows.iter().map(|r| r.2).collect(),
        scores: rows.iter().map(|r| r.1).collect(),
        reasons: rows
            .iter()
            .take(REASONS)
            .map(|r| kestrel_policy_sdk::reason(&why(name(r.3), r.4, r.1, r.5)))
            .collect(),
    })
}

static CATALOG: Mutex<Option<Catalog>> = Mutex::new(None);
static SETTINGS: Mutex<Option<Settings>> = Mutex::new(None);

pub struct SavingsPlans;

impl Guest for SavingsPlans {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "savings-plans".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            contract: kestrel_policy_sdk::CONTRACT.into(),
        }
    }
    fn validate_settings(json: String) -> Result<(), String> {
        *SETTINGS.lock().unwrap() = Some(settings(&json)?);
        Ok(())
    }
    fn set_catalog(catalog: Catalog) {
        *CATALOG.lock().unwrap() = Some(catalog);
    }
    fn rank(input: RankInput) -> Result<Ranking, String> {
        let catalog = CATALOG.lock().unwrap();
        let settings = SETTINGS.lock().unwrap().clone().unwrap_or_default();
        rank(&settings, catalog.as_ref().ok_or("rank before set-catalog")?, &input)
    }
}

#[cfg(target_arch = "wasm32")]
kestrel_policy_sdk::ranker::export_ranker!(SavingsPlans);

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_policy_sdk::ranker::{InstanceType, Offerings};

    fn catalog() -> Catalog {
        let it = |name: &str| InstanceType { name: name.into(), cpu_millis: 1930, memory_mib: 7000, pods: 29, gpus: 0, labels: vec![] };
        Catalog { revision: 1, label_keys: vec![], label_values: vec![], zones: vec!["us-east-1a".into()], instance_types: vec![it("c5.large"), it("m5.large")] }
    }

    fn input() -> RankInput {
        RankInput {
            node_pool: "default".into(), now: 0, seed: 0, pods: vec![],
            offerings: Offerings {
                instance_type: vec![0, 1], zone: vec![0, 0], capacity_type: vec![0, 0],
                price: vec![0.085, 0.096], interruption: vec![0.0, 0.0], capacity_score: vec![-1.0, -1.0],
                pods_per_node: vec![2, 2],
            },
            min_values: vec![],
        }
    }

    #[test]
    fn list_prices_without_settings_discounts_with() {
        let none = settings("null").unwrap();
        assert_eq!(rank(&none, &catalog(), &input()).unwrap().order, vec![0, 1]);
        let sp = settings(r#"{"savings_plan_percent": {"m5": 28}}"#).unwrap();
        let r = rank(&sp, &catalog(), &input()).unwrap();
        assert_eq!(r.order, vec![1, 0], "m5 at $0.069 beats c5 at $0.085");
        assert!((r.scores[0] - 0.096 * 0.72).abs() < 1e-12);
        assert!(r.reasons[0].contains("28% Savings Plan"), "{:?}", r.reasons);
        let ri = settings(r#"{"reserved_hourly": {"m5.large": 0.0}}"#).unwrap();
        assert_eq!(rank(&ri, &catalog(), &input()).unwrap().scores[0], 0.0);
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(settings(r#"{"savings_plan_percent": {"m5": 120}}"#).unwrap_err().contains("m5"));
        assert!(settings(r#"{"reserved_hourly": {"m5.large": -1}}"#).unwrap_err().contains("m5.large"));
        assert!(settings(r#"{"discounts": {}}"#).unwrap_err().contains("unknown field"));
    }
}
