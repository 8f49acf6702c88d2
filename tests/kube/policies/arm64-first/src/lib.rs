//! Test ranker: arm64 offerings score at half their hourly price (the packer minimises scores), so a
//! NodePool ranking with it launches Graviton where the default ranker launches amd64.
use kestrel_policy_sdk::helpers::{label, offerings};
use kestrel_policy_sdk::ranker::{Catalog, Guest, PolicyInfo, RankInput, Ranking};
use std::sync::Mutex;

fn rank(catalog: &Catalog, input: &RankInput) -> Result<Ranking, String> {
    let mut rows: Vec<(f64, u32)> = offerings(&input.offerings)?
        .map(|o| {
            let arm = label(catalog, o.instance_type, "kubernetes.io/arch") == Some("arm64");
            let score = if arm { o.price / 2.0 } else { o.price };
            (score, o.index)
        })
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    Ok(Ranking {
        order: rows.iter().map(|r| r.1).collect(),
        scores: rows.iter().map(|r| r.0).collect(),
        reasons: Vec::new(),
    })
}

static CATALOG: Mutex<Option<Catalog>> = Mutex::new(None);

pub struct Arm64First;

impl Guest for Arm64First {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "arm64-first".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            contract: kestrel_policy_sdk::CONTRACT.into(),
        }
    }
    fn validate_settings(settings: String) -> Result<(), String> {
        match settings.as_str() {
            "null" => Ok(()),
            _ => Err("arm64-first takes no settings".into()),
        }
    }
    fn set_catalog(catalog: Catalog) {
        *CATALOG.lock().unwrap_or_else(|p| p.into_inner()) = Some(catalog);
    }
    fn rank(input: RankInput) -> Result<Ranking, String> {
        let catalog = CATALOG.lock().unwrap_or_else(|p| p.into_inner());
        rank(catalog.as_ref().ok_or("rank before set-catalog")?, &input)
    }
}

#[cfg(target_arch = "wasm32")]
kestrel_policy_sdk::ranker::export_ranker!(Arm64First);
