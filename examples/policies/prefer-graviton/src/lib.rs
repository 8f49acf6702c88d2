//! Example Kestrel ranker: prefer Graviton (arm64) unless it is more than 20% dearer.
//!
//! Offerings are ordered by price per pending pod, where an arm64 offering's price counts as if it were
//! 20% lower; scores stay the real hourly price (what the packer minimises).
use kestrel_policy_sdk::helpers::{label, offerings};
use kestrel_policy_sdk::ranker::{Catalog, Guest, PolicyInfo, RankInput, Ranking};
use std::sync::Mutex;

/// How much dearer Graviton may be and still be preferred.
pub const GRAVITON_PREMIUM: f64 = 1.20;

pub fn rank(catalog: &Catalog, input: &RankInput) -> Result<Ranking, String> {
    let mut rows: Vec<(f64, f64, u32)> = offerings(&input.offerings)?
        .map(|o| {
            let arm = label(catalog, o.instance_type, "kubernetes.io/arch") == Some("arm64");
            let per_pod = o.price / f64::from(o.pods_per_node.max(1));
            let key = if arm { per_pod / GRAVITON_PREMIUM } else { per_pod };
            (key, o.price, o.index)
        })
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.2.cmp(&b.2)));
    Ok(Ranking { order: rows.iter().map(|r| r.2).collect(), scores: rows.iter().map(|r| r.1).collect() })
}

static CATALOG: Mutex<Option<Catalog>> = Mutex::new(None);

pub struct PreferGraviton;

impl Guest for PreferGraviton {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "prefer-graviton".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            contract: kestrel_policy_sdk::CONTRACT.into(),
        }
    }
    fn set_catalog(catalog: Catalog) {
        *CATALOG.lock().unwrap() = Some(catalog);
    }
    fn rank(input: RankInput) -> Result<Ranking, String> {
        let catalog = CATALOG.lock().unwrap();
        rank(catalog.as_ref().ok_or("rank before set-catalog")?, &input)
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
    fn graviton_wins_unless_more_than_20_percent_dearer() {
        PreferGraviton::set_catalog(catalog());
        assert_eq!(PreferGraviton::rank(input(0.10, 0.119)).unwrap().order, vec![1, 0]);
        assert_eq!(PreferGraviton::rank(input(0.10, 0.121)).unwrap().order, vec![0, 1]);
    }
}
