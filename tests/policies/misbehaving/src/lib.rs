//! A ranker that misbehaves on request: the behaviour is chosen by the `node-pool` of the input.
//!
//! - `loop`: never returns;  `memhog`: allocates until the memory cap stops it;  `trap`: panics;
//! - `invalid`: names offering 0 twice;  `nan`: a NaN score;  `err`: answers `err(..)`;
//! - `reasons`: index order, reason "offering K" per entry;  `longreason`: a 201-byte reason;
//!   `fewreasons`: a reason for the first entry only (valid); `manyreasons`: one more reason than entries;
//! - settings `{"refuse": "MESSAGE"}` are refused with MESSAGE; `{"first_score": X}` makes every
//!   plain answer's first score X (so a test can tell which settings an instance has);
//! - anything else: offerings in index order, the first score being the number of `rank` calls this
//!   instance has answered (so a test can tell a fresh instance from a reused one).
use kestrel_policy_sdk::ranker::{Catalog, Guest, PolicyInfo, RankInput, Ranking};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

static CALLS: AtomicU32 = AtomicU32::new(0);
/// `first_score` from the settings, as f64 bits (0 = none).
static FIRST_SCORE: AtomicU64 = AtomicU64::new(0);

struct Misbehaving;

impl Guest for Misbehaving {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "misbehaving".into(),
            version: "0.1.0".into(),
            contract: kestrel_policy_sdk::CONTRACT.into(),
        }
    }

    fn validate_settings(settings: String) -> Result<(), String> {
        // A tiny reader (no JSON parser needed for two test keys).
        if let Some(rest) = settings.split("\"refuse\":\"").nth(1) {
            return Err(rest.split('"').next().unwrap_or_default().to_string());
        }
        if let Some(rest) = settings.split("\"first_score\":").nth(1) {
            let x: f64 = rest
                .trim_end_matches('}')
                .parse()
                .map_err(|_| format!("first_score: not a number in {settings}"))?;
            FIRST_SCORE.store(x.to_bits(), Ordering::Relaxed);
        }
        Ok(())
    }

    fn set_catalog(_catalog: Catalog) {}

    fn rank(input: RankInput) -> Result<Ranking, String> {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        let n = input.offerings.instance_type.len() as u32;
        match input.node_pool.as_str() {
            "loop" => {
                let mut i: u64 = 0;
                loop {
                    i = std::hint::black_box(i.wrapping_add(1));
                }
            }
            "memhog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("the misbehaving ranker panics on purpose"),
            "invalid" => Ok(Ranking {
                order: vec![0, 0],
                scores: vec![1.0, 1.0],
                reasons: vec![],
            }),
            "nan" => Ok(Ranking {
                order: (0..n).collect(),
                scores: (0..n).map(|_| f64::NAN).collect(),
                reasons: vec![],
            }),
            "reasons" | "longreason" | "fewreasons" | "manyreasons" => Ok(Ranking {
                order: (0..n).collect(),
                scores: (0..n).map(f64::from).collect(),
                reasons: match input.node_pool.as_str() {
                    "reasons" => (0..n).map(|k| format!("offering {k}")).collect(),
                    "longreason" => (0..n).map(|_| "x".repeat(201)).collect(),
                    "manyreasons" => (0..=n).map(|k| format!("offering {k}")).collect(),
                    _ => vec!["only one".into()],
                },
            }),
            "err" => Err("the misbehaving ranker declines".into()),
            _ => {
                let first = match FIRST_SCORE.load(Ordering::Relaxed) {
                    0 => f64::from(calls),
                    bits => f64::from_bits(bits),
                };
                Ok(Ranking {
                    order: (0..n).collect(),
                    scores: (0..n).map(|i| if i == 0 { first } else { 0.0 }).collect(),
                    reasons: vec![],
                })
            }
        }
    }
}

kestrel_policy_sdk::ranker::export_ranker!(Misbehaving);
