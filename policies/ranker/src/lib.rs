//! The default ranker: on-demand by price, spot price-capacity-optimized, `minValues` honoured within the
//! host's launch window.
//!
//! Order: offerings sorted by effective cost per pending pod (`score / pods-per-node`, compared to one part
//! in 2^28 so that rounding noise does not split real ties), ties by the smaller node (fewer pods per
//! node, i.e. the lower score), then by index (deterministic). Score: the effective hourly cost of one node, which the packer minimises in
//! place of the price — the price for on-demand and reserved, a risk-weighted price for spot.
//!
//! `minValues`: the host launches from the first [`LAUNCH_WINDOW`] entries (like CreateFleet), so the
//! ranker first reserves, for each requirement, the cheapest offering of each of the cheapest distinct
//! values until `min` values are in, then fills the window with the cheapest remaining offerings. When the
//! offerings cannot satisfy a requirement at all the ranking is best effort (the host's own check refuses
//! the launch).
pub use kestrel_policy_sdk::LAUNCH_WINDOW;
use kestrel_policy_sdk::capacity_type::SPOT;
use kestrel_policy_sdk::helpers::{check_min_values, label_value, offerings_len};
use kestrel_policy_sdk::ranker::{Catalog, PolicyInfo, RankInput, Ranking};

pub const NAME: &str = "default-ranker";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Low bits of the cost per pod dropped before comparing (one part in 2^28 kept).
const QUANTUM_BITS: u32 = 24;
/// Offerings up to 2^14 sort on one `u64` key: 40 bits of cost, 10 of pods per node, 14 of index.
const INDEX_BITS: u32 = 14;
const PODS_MAX: u64 = (1 << (QUANTUM_BITS - INDEX_BITS)) - 1;

/// Interruption signal assumed when unknown (moderate risk).
const UNKNOWN_INTERRUPTION: f64 = 0.25;
/// Capacity score assumed when unknown.
const UNKNOWN_CAPACITY: f64 = 0.5;
/// Weight of the interruption signal: a spot pool interrupted once a day costs twice its price (the pods
/// restart, the node is re-launched and the work redone).
const INTERRUPTION_WEIGHT: f64 = 1.0;
/// Weight of scarce capacity: no capacity at all adds half the price (launch failures and early reclaim).
const CAPACITY_WEIGHT: f64 = 0.5;

pub fn info() -> PolicyInfo {
    PolicyInfo {
        name: NAME.into(),
        version: VERSION.into(),
        contract: kestrel_policy_sdk::CONTRACT.into(),
    }
}

/// The effective hourly cost of one node of an offering.
pub fn effective_cost(
    capacity_type: u8,
    price: f64,
    interruption: f32,
    capacity_score: f32,
) -> f64 {
    if capacity_type != SPOT {
        return price;
    }
    let interruption = if interruption >= 0.0 {
        f64::from(interruption).min(1.0)
    } else {
        UNKNOWN_INTERRUPTION
    };
    let capacity = if capacity_score >= 0.0 {
        f64::from(capacity_score).min(1.0)
    } else {
        UNKNOWN_CAPACITY
    };
    price * (1.0 + INTERRUPTION_WEIGHT * interruption) * (1.0 + CAPACITY_WEIGHT * (1.0 - capacity))
}

/// Ranks every offering of `input` (see the module docs).
pub fn rank(catalog: &Catalog, input: &RankInput) -> Result<Ranking, String> {
    let o = &input.offerings;
    let n = offerings_len(o)?;
    let types = catalog.instance_types.len();
    let mut scores = Vec::with_capacity(n);
    // Sort keys packed in one integer: the quantized cost per pod, then pods per node, then the index.
    // For finite non-negative floats the IEEE bit patterns order like the values, and sorting plain
    // integers is several times faster than comparing floats (in wasm especially).
    let small = n <= 1 << INDEX_BITS;
    let mut packed: Vec<u64> = Vec::with_capacity(if small { n } else { 0 });
    let mut keys: Vec<(u64, u64, u32)> = Vec::with_capacity(if small { 0 } else { n });
    for i in 0..n {
        let it = o.instance_type[i];
        if it as usize >= types {
            return Err(format!(
                "offerings.instance-type[{i}] = {it}, the catalog has {types} instance types"
            ));
        }
        // `+ 0.0` turns a -0.0 price into +0.0.
        let score = effective_cost(
            o.capacity_type[i],
            o.price[i],
            o.interruption[i],
            o.capacity_score[i],
        ) + 0.0;
        if !score.is_finite() || score < 0.0 {
            return Err(format!(
                "offerings.price[{i}] = {} is not a usable price",
                o.price[i]
            ));
        }
        scores.push(score);
        let pods = o.pods_per_node[i].max(1);
        let per_pod = score / f64::from(pods);
        let cost = per_pod.to_bits() >> QUANTUM_BITS;
        if small {
            packed.push(
                (cost << QUANTUM_BITS) | (u64::from(pods).min(PODS_MAX) << INDEX_BITS) | i as u64,
            );
        } else {
            keys.push((cost, u64::from(pods), i as u32));
        }
    }
    let mut order: Vec<u32> = if small {
        packed.sort_unstable();
        packed
            .iter()
            .map(|&k| (k & ((1 << INDEX_BITS) - 1)) as u32)
            .collect()
    } else {
        keys.sort_unstable();
        keys.iter().map(|k| k.2).collect()
    };
    if !input.min_values.is_empty() && n > LAUNCH_WINDOW {
        order = honour_min_values(catalog, input, order);
    }
    let scores = order.iter().map(|&i| scores[i as usize]).collect();
    Ok(Ranking {
        order,
        scores,
        reasons: vec![],
    })
}

/// The default takes no settings: `null` (none given) or `{}`; anything else is refused, so that a
/// NodePool owner who meant another policy hears about it.
pub fn validate_settings(settings: &str) -> Result<(), String> {
    match settings.trim() {
        "null" | "{}" => Ok(()),
        other => Err(format!("{NAME} takes no settings, got {other}")),
    }
}

/// Reorders `sorted` so that its first [`LAUNCH_WINDOW`] entries carry the `minValues` (best effort).
fn honour_min_values(catalog: &Catalog, input: &RankInput, sorted: Vec<u32>) -> Vec<u32> {
    let its = &input.offerings.instance_type;
    let value = |i: u32, key: u32| label_value(catalog, its[i as usize], key);
    if check_min_values(catalog, input, &sorted).is_ok() {
        return sorted;
    }
    // Reserve, per requirement, the cheapest offering of each new value (in rank order) until `min`.
    let mut chosen = vec![false; sorted.len()];
    let mut reserved = 0usize;
    for mv in &input.min_values {
        let mut seen: Vec<u32> = Vec::new();
        for (pos, &i) in sorted.iter().enumerate() {
            if seen.len() >= mv.min as usize || reserved >= LAUNCH_WINDOW {
                break;
            }
            if let Some(v) = value(i, mv.key)
                && !seen.contains(&v)
            {
                seen.push(v);
                if !chosen[pos] {
                    chosen[pos] = true;
                    reserved += 1;
                }
            }
        }
    }
    // Fill the rest of the window with the best remaining offerings, keeping rank order inside it.
    for c in chosen.iter_mut() {
        if reserved >= LAUNCH_WINDOW {
            break;
        }
        if !*c {
            *c = true;
            reserved += 1;
        }
    }
    let (window, rest): (Vec<_>, Vec<_>) =
        sorted.iter().enumerate().partition(|(pos, _)| chosen[*pos]);
    window.into_iter().chain(rest).map(|(_, &i)| i).collect()
}

#[cfg(target_arch = "wasm32")]
mod guest {
    use kestrel_policy_sdk::ranker::{Catalog, Guest, PolicyInfo, RankInput, Ranking};
    use std::sync::Mutex;

    /// The catalog of the current revision, sent by the host before the first `rank` that needs it.
    static CATALOG: Mutex<Option<Catalog>> = Mutex::new(None);

    struct DefaultRanker;

    impl Guest for DefaultRanker {
        fn info() -> PolicyInfo {
            super::info()
        }
        fn validate_settings(settings: String) -> Result<(), String> {
            super::validate_settings(&settings)
        }
        fn set_catalog(catalog: Catalog) {
            *CATALOG.lock().unwrap() = Some(catalog);
        }
        fn rank(input: RankInput) -> Result<Ranking, String> {
            let catalog = CATALOG.lock().unwrap();
            let catalog = catalog.as_ref().ok_or("rank called before set-catalog")?;
            super::rank(catalog, &input)
        }
    }

    kestrel_policy_sdk::ranker::export_ranker!(DefaultRanker);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_policy_sdk::capacity_type::ON_DEMAND;
    use kestrel_policy_sdk::ranker::{InstanceType, MinValues, Offerings};

    fn catalog(families: &[&str]) -> Catalog {
        Catalog {
            revision: 1,
            label_keys: vec!["karpenter.k8s.aws/instance-family".into()],
            label_values: families.iter().map(|f| f.to_string()).collect(),
            zones: vec!["us-east-1a".into()],
            instance_types: (0..families.len())
                .map(|i| InstanceType {
                    name: format!("{}.large", families[i]),
                    cpu_millis: 2000,
                    memory_mib: 8192,
                    pods: 29,
                    gpus: 0,
                    labels: vec![(0, i as u32)],
                })
                .collect(),
        }
    }

    /// (instance type, capacity type, price, interruption, capacity score, pods per node)
    fn input(rows: &[(u32, u8, f64, f32, f32, u32)], min_values: Vec<MinValues>) -> RankInput {
        RankInput {
            node_pool: "default".into(),
            now: 0,
            seed: 0,
            pods: vec![],
            offerings: Offerings {
                instance_type: rows.iter().map(|r| r.0).collect(),
                zone: rows.iter().map(|_| 0).collect(),
                capacity_type: rows.iter().map(|r| r.1).collect(),
                price: rows.iter().map(|r| r.2).collect(),
                interruption: rows.iter().map(|r| r.3).collect(),
                capacity_score: rows.iter().map(|r| r.4).collect(),
                pods_per_node: rows.iter().map(|r| r.5).collect(),
            },
            min_values,
        }
    }

    #[test]
    fn on_demand_is_ordered_by_price_per_pod() {
        let c = catalog(&["m5", "c5", "r5"]);
        let r = rank(
            &c,
            &input(
                &[
                    (0, ON_DEMAND, 0.2, 0.0, -1.0, 2),
                    (1, ON_DEMAND, 0.1, 0.0, -1.0, 2),
                    (2, ON_DEMAND, 0.36, 0.0, -1.0, 6),
                ],
                vec![],
            ),
        )
        .unwrap();
        // c5: 0.05 per pod, r5: 0.06 per pod, m5: 0.1 per pod.
        assert_eq!(r.order, vec![1, 2, 0]);
        assert_eq!(r.scores, vec![0.1, 0.36, 0.2]);
    }

    #[test]
    fn equal_cost_per_pod_prefers_the_smaller_node_on_both_key_paths() {
        let c = catalog(&["m5"]);
        let r = rank(
            &c,
            &input(
                &[
                    (0, ON_DEMAND, 0.192, 0.0, -1.0, 2),
                    (0, ON_DEMAND, 0.096, 0.0, -1.0, 1),
                ],
                vec![],
            ),
        )
        .unwrap();
        assert_eq!(r.order, vec![1, 0]);
        // More offerings than the packed u64 key holds: the tuple path must agree.
        let big: Vec<_> = (0..20_000u32)
            .map(|i| {
                (
                    0,
                    ON_DEMAND,
                    0.096 * f64::from(1 + i % 3),
                    0.0,
                    -1.0,
                    1 + i % 3,
                )
            })
            .chain([(0, ON_DEMAND, 0.05, 0.0, -1.0, 1)])
            .collect();
        let r = rank(&c, &input(&big, vec![])).unwrap();
        assert_eq!(r.order[0], 20_000);
        assert_eq!(&r.order[1..4], &[0, 3, 6]);
        assert_eq!(r.order.len(), 20_001);
    }

    #[test]
    fn spot_is_weighted_by_interruption_and_capacity() {
        let c = catalog(&["m5", "c5"]);
        // Same price: the pool with the lower interruption rate and more capacity wins.
        let r = rank(
            &c,
            &input(
                &[(0, SPOT, 0.1, 0.8, 0.2, 1), (1, SPOT, 0.1, 0.05, 0.9, 1)],
                vec![],
            ),
        )
        .unwrap();
        assert_eq!(r.order, vec![1, 0]);
        assert!(r.scores[0] < r.scores[1]);
        // A risky pool still wins when it is cheap enough (0.04 * 1.5 * 1.25 = 0.075 < 0.09).
        let r = rank(
            &c,
            &input(
                &[(0, SPOT, 0.04, 0.5, 0.5, 1), (1, SPOT, 0.09, 0.0, 1.0, 1)],
                vec![],
            ),
        )
        .unwrap();
        assert_eq!(r.order, vec![0, 1]);
        assert!((effective_cost(SPOT, 0.1, -1.0, -1.0) - 0.1 * 1.25 * 1.25).abs() < 1e-12);
        assert_eq!(effective_cost(ON_DEMAND, 0.1, 0.9, 0.0), 0.1);
    }

    #[test]
    fn min_values_are_satisfied_within_the_launch_window() {
        // 70 cheap offerings of family 0, then one each of families 1 and 2 (dearer).
        let c = catalog(&["m5", "c5", "r5"]);
        let mut rows: Vec<_> = (0..70)
            .map(|i| (0, ON_DEMAND, 0.1 + f64::from(i) * 0.001, 0.0, -1.0, 1))
            .collect();
        rows.push((1, ON_DEMAND, 0.9, 0.0, -1.0, 1));
        rows.push((2, ON_DEMAND, 0.8, 0.0, -1.0, 1));
        let with_min = input(&rows, vec![MinValues { key: 0, min: 3 }]);
        let r = rank(&c, &with_min).unwrap();
        check_min_values(&c, &with_min, &r.order).unwrap();
        assert_eq!(r.order.len(), 72);
        let window = &r.order[..LAUNCH_WINDOW];
        assert!(window.contains(&70) && window.contains(&71));
        // Without minValues they would be last.
        let plain = rank(&c, &input(&rows, vec![])).unwrap();
        assert_eq!(&plain.order[70..], &[71, 70]);
        // Every index exactly once.
        let mut all = r.order.clone();
        all.sort_unstable();
        assert_eq!(all, (0..72).collect::<Vec<u32>>());
    }

    #[test]
    fn malformed_input_is_an_error() {
        let c = catalog(&["m5"]);
        let mut i = input(&[(0, ON_DEMAND, 0.1, 0.0, -1.0, 1)], vec![]);
        i.offerings.price.push(0.2);
        assert!(rank(&c, &i).unwrap_err().contains("price"));
        let i = input(&[(5, ON_DEMAND, 0.1, 0.0, -1.0, 1)], vec![]);
        assert!(rank(&c, &i).is_err());
        let i = input(&[(0, ON_DEMAND, f64::NAN, 0.0, -1.0, 1)], vec![]);
        assert!(rank(&c, &i).is_err());
    }
}
