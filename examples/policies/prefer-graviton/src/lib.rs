//! Example Kestrel ranker: prefer Graviton (arm64) unless it is more than N% dearer (20% unless the
//! NodePool's settings say otherwise: `kestrel.dev/ranker-settings: '{"max_premium_percent": 15}'`).
//!
//! Offerings are ordered by price per pending pod, where an arm64 offering's price counts as if it were
//! N% lower; scores stay the real hourly price (what the packer minimises). The first entries say why
//! they are where they are (the host reports the first; a reason for each of the thousands of
//! offerings of a catalog-wide NodePool would cost more than the ranking).
use kestrel_policy_sdk::helpers::{label, offerings};
use kestrel_policy_sdk::ranker::{Catalog, Guest, PolicyInfo, RankInput, Ranking};
use std::sync::Mutex;

/// The policy's settings (typed with serde; unknown fields are refused so that a typo is caught at
/// load time, not silently ignored).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// How much dearer (in percent) Graviton may be and still be preferred.
    pub max_premium_percent: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_premium_percent: 20.0,
        }
    }
}

/// Parses and checks settings (JSON text, `null` for none).
pub fn settings(json: &str) -> Result<Settings, String> {
    let s: Settings = kestrel_policy_sdk::settings::parse(json)?;
    if !(0.0..=100.0).contains(&s.max_premium_percent) {
        return Err(format!(
            "max_premium_percent must be between 0 and 100, got {}",
            s.max_premium_percent
        ));
    }
    Ok(s)
}

/// How many of the first entries carry a reason.
pub const REASONS: usize = 5;

pub fn rank(settings: &Settings, catalog: &Catalog, input: &RankInput) -> Result<Ranking, String> {
    let premium = 1.0 + settings.max_premium_percent / 100.0;
    // Looked up once per instance type, not once per offering (a type has an offering per zone and
    // capacity type).
    let arm64: Vec<bool> = (0..catalog.instance_types.len() as u32)
        .map(|t| label(catalog, t, "kubernetes.io/arch") == Some("arm64"))
        .collect();
    let mut rows: Vec<(f64, f64, u32, bool)> = offerings(&input.offerings)?
        .map(|o| {
            let arm = arm64.get(o.instance_type as usize) == Some(&true);
            let per_pod = o.price / f64::from(o.pods_per_node.max(1));
            let key = if arm { per_pod / premium } else { per_pod };
            (key, o.price, o.index, arm)
        })
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.2.cmp(&b.2)));
    let reasons = rows
        .iter()
        .take(REASONS)
        .map(|r| {
            kestrel_policy_sdk::reason(&if r.3 {
                format!(
                    "arm64, counted {}% cheaper: ${:.4}/pod-hour",
                    settings.max_premium_percent,
                    r.0
                )
            } else {
                format!("x86, ${:.4}/pod-hour", r.0)
            })
        })
        .collect();
    Ok(Ranking {
        order: rows.iter().map(|r| r.2).collect(),
        scores: rows.iter().map(|r| r.1).collect(),
        reasons,
    })
}

static CATALOG: Mutex<Option<Catalog>> = Mutex::new(None);
static SETTINGS: Mutex<Option<Settings>> = Mutex::new(None);

pub struct PreferGraviton;

impl Guest for PreferGraviton {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "prefer-graviton".into(),
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
        let settings = SETTINGS.lock().unwrap().unwrap_or_default();
        rank(
            &settings,
            catalog.as_ref().ok_or("rank before set-catalog")?,
            &input,
        )
    }
}

#[cfg(target_arch = "wasm32")]
kestrel_policy_sdk::ranker::export_ranker!(PreferGraviton);

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_policy_sdk::ranker::{InstanceType, Offerings};

    fn catalog() -> Catalog {
        let it = |name: &str, arch: u32| InstanceType {
            name: name.into(),
            cpu_millis: 2000,
            memory_mib: 8192,
            pods: 29,
            gpus: 0,
            labels: vec![(0, arch)],
        };
        Catalog {
            revision: 1,
            label_keys: vec!["kubernetes.io/arch".into()],
            label_values: vec!["amd64".into(), "arm64".into()],
            zones: vec!["us-east-1a".into()],
            instance_types: vec![it("c5.large", 0), it("c6g.large", 1)],
        }
    }

    fn input(x86: f64, arm: f64) -> RankInput {
        RankInput {
            node_pool: "default".into(),
            now: 0,
            seed: 0,
            pods: vec![],
            offerings: Offerings {
                instance_type: vec![0, 1],
                zone: vec![0, 0],
                capacity_type: vec![0, 0],
                price: vec![x86, arm],
                interruption: vec![0.0, 0.0],
                capacity_score: vec![-1.0, -1.0],
                pods_per_node: vec![1, 1],
            },
            min_values: vec![],
        }
    }

    // The native test harness: the Guest impl called as plain Rust.
    #[test]
    fn settings_are_checked() {
        assert_eq!(settings("null").unwrap().max_premium_percent, 20.0);
        assert_eq!(
            settings(r#"{"max_premium_percent": 15}"#)
                .unwrap()
                .max_premium_percent,
            15.0
        );
        assert!(settings(r#"{"max_premium_percent": 150}"#)
            .unwrap_err()
            .contains("between 0 and 100"));
        assert!(settings(r#"{"premium": 15}"#)
            .unwrap_err()
            .contains("unknown field"));
    }

    #[test]
    fn the_premium_comes_from_the_settings_and_the_first_entries_have_reasons() {
        let s = settings(r#"{"max_premium_percent": 10}"#).unwrap();
        let r = rank(&s, &catalog(), &input(0.10, 0.115)).unwrap();
        assert_eq!(r.order, vec![0, 1], "15% dearer loses at a 10% premium");
        assert_eq!(r.reasons.len(), 2);
        assert!(r.reasons[0].starts_with("x86"), "{:?}", r.reasons);
        assert!(r.reasons[1].starts_with("arm64"), "{:?}", r.reasons);
    }

    #[test]
    fn only_the_first_entries_have_reasons() {
        let mut i = input(0.10, 0.115);
        let n = 3 * REASONS as u32;
        let o = &mut i.offerings;
        o.instance_type = (0..n).map(|k| k % 2).collect();
        o.zone = vec![0; n as usize];
        o.capacity_type = vec![0; n as usize];
        o.price = (0..n).map(|k| 0.1 + f64::from(k) * 0.01).collect();
        o.interruption = vec![0.0; n as usize];
        o.capacity_score = vec![-1.0; n as usize];
        o.pods_per_node = vec![1; n as usize];
        let r = rank(&Settings::default(), &catalog(), &i).unwrap();
        assert_eq!(r.order.len(), n as usize);
        assert_eq!(r.reasons.len(), REASONS);
    }

    #[test]
    fn graviton_wins_unless_more_than_20_percent_dearer() {
        PreferGraviton::validate_settings("null".into()).unwrap();
        PreferGraviton::set_catalog(catalog());
        assert_eq!(
            PreferGraviton::rank(input(0.10, 0.119)).unwrap().order,
            vec![1, 0]
        );
        assert_eq!(
            PreferGraviton::rank(input(0.10, 0.121)).unwrap().order,
            vec![0, 1]
        );
    }
}
