//! A ranker that misbehaves on request: the behaviour is chosen by the `node-pool` of the input.
//!
//! - `loop`: never returns;  `memhog`: allocates until the memory cap stops it;  `trap`: panics;
//! - `invalid`: names offering 0 twice;  `nan`: a NaN score;  `err`: answers `err(..)`;
//! - anything else: offerings in index order, the first score being the number of `rank` calls this
//!   instance has answered (so a test can tell a fresh instance from a reused one).
use kestrel_policy_sdk::ranker::{Catalog, Guest, PolicyInfo, RankInput, Ranking};
use std::sync::atomic::{AtomicU32, Ordering};

static CALLS: AtomicU32 = AtomicU32::new(0);

struct Misbehaving;

impl Guest for Misbehaving {
    fn info() -> PolicyInfo {
        PolicyInfo { name: "misbehaving".into(), version: "0.1.0".into(), contract: kestrel_policy_sdk::CONTRACT.into() }
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
            "invalid" => Ok(Ranking { order: vec![0, 0], scores: vec![1.0, 1.0] }),
            "nan" => Ok(Ranking { order: (0..n).collect(), scores: (0..n).map(|_| f64::NAN).collect() }),
            "err" => Err("the misbehaving ranker declines".into()),
            _ => Ok(Ranking {
                order: (0..n).collect(),
                scores: (0..n).map(|i| if i == 0 { f64::from(calls) } else { 0.0 }).collect(),
            }),
        }
    }
}

kestrel_policy_sdk::ranker::export_ranker!(Misbehaving);
