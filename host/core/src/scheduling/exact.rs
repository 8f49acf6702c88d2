//! Packing pods whose allowed bin types differ: the exact optimum for small batches (an integer program
//! over fill patterns, solved by `microlp`), and Karpenter's greedy as the floor every packing is held to.
//!
//! An [`Item`] is a set of identical pods that may only use some bins (its `allowed` list), so two items
//! share a node only on a bin both allow. A pattern is a count per item that one bin holds; the program
//! buys whole patterns: `min Σ cost_p·z_p  s.t.  Σ_p a_ip·z_p ≥ count_i, z_p ∈ ℕ`. Covering with `≥` lets
//! it ignore every pattern to which another pod still fits on the same bin (the bigger one costs no
//! more), which keeps the program small. Pods a pattern over-covers are simply not placed there.

use microlp::{ComparisonOp, OptimizationDirection, Problem, SolveOptions};

use super::packer::BinType;

/// Pods in a batch up to which the exact program is tried (Karpenter-sized batches a cluster sees most).
pub const MAX_EXACT_PODS: u32 = 30;
/// Patterns enumerated before giving up on the exact program (the batch is then left to the heuristics).
pub const MAX_PATTERNS: usize = 20_000;
/// Branch-and-bound nodes before the solver stops with its best solution so far (a bound on the work,
/// not on wall time, so the answer does not depend on the machine's load).
pub const NODE_LIMIT: u64 = 5_000;

/// Identical pods and the bins (indexes into the bin list) they may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub demand: Vec<u64>,
    pub count: u32,
    pub allowed: Vec<usize>,
}

/// One bin to buy and how many pods of each item it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub bin: usize,
    pub counts: Vec<u32>,
}

/// The exact solve's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Exact {
    pub nodes: Vec<Node>,
    /// The solver proved it optimal (false when the node limit cut the search short).
    pub proven: bool,
    pub patterns: usize,
    pub nodes_solved: u64,
}

pub fn cost(nodes: &[Node], bins: &[BinType]) -> f64 {
    nodes.iter().map(|n| bins[n.bin].cost).sum()
}

fn fits(load: &[u64], capacity: &[u64]) -> bool {
    load.iter().zip(capacity).all(|(l, c)| l <= c)
}

fn usable(bins: &[BinType], b: usize) -> bool {
    bins[b].cost.is_finite() && bins[b].cost >= 0.0
}

/// Karpenter's greedy: pods largest first (by the first dimensions: cpu, then memory), each joins the
/// first open node that some bin both it and the node's pods allow still holds, else opens a node; each
/// node is then bought as the cheapest bin that holds it. Pods no bin holds are left out (`unplaced`).
pub fn first_fit(items: &[Item], bins: &[BinType]) -> (Vec<Node>, Vec<u32>) {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| items[b].demand.cmp(&items[a].demand).then(a.cmp(&b)));
    // Per open node: its bin options, its load, the most any option still has per dimension (a quick
    // refusal), its counts.
    // `floor`: the least any option has per dimension (a load within it keeps every option), and the
    // items every option is known to be allowed for (options only shrink, so that stays true).
    struct Open {
        options: Vec<usize>,
        load: Vec<u64>,
        room: Vec<u64>,
        floor: Vec<u64>,
        allowed_for: Vec<usize>,
        counts: Vec<u32>,
    }
    let floor_of = |options: &[usize], dims: usize| -> Vec<u64> {
        (0..dims)
            .map(|d| {
                options
                    .iter()
                    .map(|&b| bins[b].capacity[d])
                    .min()
                    .unwrap_or(0)
            })
            .collect()
    };
    let room_of = |options: &[usize], dims: usize| -> Vec<u64> {
        (0..dims)
            .map(|d| {
                options
                    .iter()
                    .map(|&b| bins[b].capacity[d])
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    };
    let mut open: Vec<Open> = Vec::new();
    let mut unplaced = vec![0u32; items.len()];
    for &i in &order {
        let item = &items[i];
        let dims = item.demand.len();
        // A node that refused a pod of this item refuses the next one too (its load only grows and its
        // options only shrink), so each pod starts where the previous one was placed: first-fit at
        // a cost linear in the open nodes per item, not per pod.
        let mut start = 0usize;
        for n in 0..item.count {
            let mut placed = false;
            for (k, node) in open.iter_mut().enumerate().skip(start) {
                let after: Vec<u64> = node
                    .load
                    .iter()
                    .zip(&item.demand)
                    .map(|(l, d)| l + d)
                    .collect();
                if !fits(&after, &node.room) {
                    continue;
                }
                if fits(&after, &node.floor) && node.allowed_for.contains(&i) {
                    node.load = after;
                    node.counts[i] += 1;
                    placed = true;
                    start = k;
                    break;
                }
                let narrowed: Vec<usize> = node
                    .options
                    .iter()
                    .copied()
                    .filter(|b| item.allowed.binary_search(b).is_ok())
                    .filter(|&b| fits(&after, &bins[b].capacity))
                    .collect();
                if narrowed.is_empty() {
                    continue;
                }
                node.room = room_of(&narrowed, dims);
                node.floor = floor_of(&narrowed, dims);
                node.options = narrowed;
                node.allowed_for.push(i);
                node.load = after;
                node.counts[i] += 1;
                placed = true;
                start = k;
                break;
            }
            if placed {
                continue;
            }
            let options: Vec<usize> = item
                .allowed
                .iter()
                .copied()
                .filter(|&b| usable(bins, b) && fits(&item.demand, &bins[b].capacity))
                .collect();
            if options.is_empty() {
                // No bin holds it alone: the rest of this item cannot be placed either.
                unplaced[i] += item.count - n;
                break;
            }
            let mut counts = vec![0u32; items.len()];
            counts[i] = 1;
            start = open.len();
            open.push(Open {
                room: room_of(&options, dims),
                floor: floor_of(&options, dims),
                allowed_for: vec![i],
                options,
                load: item.demand.clone(),
                counts,
            });
        }
    }
    let nodes = open
        .into_iter()
        .map(|n| Node {
            bin: cheapest(&n.options, bins),
            counts: n.counts,
        })
        .collect();
    (nodes, unplaced)
}

fn cheapest(options: &[usize], bins: &[BinType]) -> usize {
    *options
        .iter()
        .min_by(|&&a, &&b| bins[a].cost.total_cmp(&bins[b].cost).then(a.cmp(&b)))
        .expect("a node has an option")
}

/// The cheapest bin every item with pods in `counts` allows that holds their load, if any.
pub fn cheapest_holding(items: &[Item], bins: &[BinType], counts: &[u32]) -> Option<usize> {
    let dims = items.first().map_or(0, |i| i.demand.len());
    let mut load = vec![0u64; dims];
    for (item, &n) in items.iter().zip(counts) {
        for (l, d) in load.iter_mut().zip(&item.demand) {
            *l += d * u64::from(n);
        }
    }
    (0..bins.len())
        .filter(|&b| usable(bins, b) && fits(&load, &bins[b].capacity))
        .filter(|b| {
            items
                .iter()
                .zip(counts)
                .all(|(item, &n)| n == 0 || item.allowed.binary_search(b).is_ok())
        })
        .min_by(|&a, &b| bins[a].cost.total_cmp(&bins[b].cost).then(a.cmp(&b)))
}

/// The minimum-cost packing of `items` (every `allowed` list sorted), or `None` when the batch is over
/// [`MAX_EXACT_PODS`], has more than [`MAX_PATTERNS`] patterns, some pod fits no bin, or the solver fails.
pub fn solve(items: &[Item], bins: &[BinType]) -> Option<Exact> {
    let pods: u32 = items.iter().map(|i| i.count).sum();
    if pods == 0 || pods > MAX_EXACT_PODS {
        return None;
    }
    let patterns = patterns(items, bins)?;
    let mut problem = Problem::new(OptimizationDirection::Minimize);
    let vars: Vec<microlp::Variable> = patterns
        .iter()
        .map(|(counts, bin)| {
            // More copies of one pattern than its scarcest item needs are never useful.
            let most = items
                .iter()
                .zip(counts)
                .filter(|(_, a)| **a > 0)
                .map(|(item, a)| item.count.div_ceil(*a))
                .max()
                .unwrap_or(0);
            problem.add_integer_var(bins[*bin].cost, (0, most as i32))
        })
        .collect();
    for (i, item) in items.iter().enumerate() {
        if item.count == 0 {
            continue;
        }
        let terms: Vec<(microlp::Variable, f64)> = patterns
            .iter()
            .zip(&vars)
            .filter(|((counts, _), _)| counts[i] > 0)
            .map(|((counts, _), v)| (*v, f64::from(counts[i])))
            .collect();
        if terms.is_empty() {
            return None;
        }
        problem.add_constraint(terms.as_slice(), ComparisonOp::Ge, f64::from(item.count));
    }
    let mut options = SolveOptions::default();
    options.node_limit = Some(NODE_LIMIT);
    let outcome = problem.solve_with(options).ok()?;
    let stats = outcome.stats();
    let proven = outcome.is_optimal();
    let solution = outcome.into_solution().ok()?;
    let mut left: Vec<u32> = items.iter().map(|i| i.count).collect();
    let mut nodes = Vec::new();
    for ((counts, _), v) in patterns.iter().zip(&vars) {
        let copies = solution.var_value(*v).round().max(0.0) as u32;
        for _ in 0..copies {
            let take: Vec<u32> = counts.iter().zip(&left).map(|(a, l)| *a.min(l)).collect();
            if take.iter().all(|t| *t == 0) {
                continue;
            }
            for (l, t) in left.iter_mut().zip(&take) {
                *l -= t;
            }
            // The pods it really holds may fit a cheaper bin than the full pattern.
            let bin = cheapest_holding(items, bins, &take)?;
            nodes.push(Node { bin, counts: take });
        }
    }
    if left.iter().any(|l| *l > 0) {
        return None;
    }
    Some(Exact {
        nodes,
        proven,
        patterns: patterns.len(),
        nodes_solved: stats.nodes_solved,
    })
}

/// The maximal patterns and the cheapest bin holding each: depth first over the items, keeping the bins
/// that still hold the load and that every item so far allows.
fn patterns(items: &[Item], bins: &[BinType]) -> Option<Vec<(Vec<u32>, usize)>> {
    let dims = items.first().map_or(0, |i| i.demand.len());
    let all: Vec<usize> = (0..bins.len()).filter(|&b| usable(bins, b)).collect();
    let mut out: Vec<(Vec<u32>, usize)> = Vec::new();
    let mut counts = vec![0u32; items.len()];
    let mut load = vec![0u64; dims];
    let mut overflow = false;
    walk(
        items,
        bins,
        0,
        &all,
        &mut counts,
        &mut load,
        &mut out,
        &mut overflow,
    );
    if overflow { None } else { Some(out) }
}

#[allow(clippy::too_many_arguments)]
fn walk(
    items: &[Item],
    bins: &[BinType],
    i: usize,
    options: &[usize],
    counts: &mut Vec<u32>,
    load: &mut Vec<u64>,
    out: &mut Vec<(Vec<u32>, usize)>,
    overflow: &mut bool,
) {
    if *overflow {
        return;
    }
    if i == items.len() {
        if counts.iter().all(|c| *c == 0) {
            return;
        }
        let bin = cheapest(options, bins);
        // Maximal only: if another pod of some item still fits this bin, the bigger pattern covers more
        // for the same cost.
        let grows = items.iter().enumerate().any(|(k, item)| {
            counts[k] < item.count
                && item.allowed.binary_search(&bin).is_ok()
                && load
                    .iter()
                    .zip(&item.demand)
                    .zip(&bins[bin].capacity)
                    .all(|((l, d), c)| l + d <= *c)
        });
        if !grows {
            if out.len() >= MAX_PATTERNS {
                *overflow = true;
                return;
            }
            out.push((counts.clone(), bin));
        }
        return;
    }
    // None of this item.
    walk(items, bins, i + 1, options, counts, load, out, overflow);
    let item = &items[i];
    let mut here: Vec<usize> = options
        .iter()
        .copied()
        .filter(|b| item.allowed.binary_search(b).is_ok())
        .collect();
    let mut added = 0u32;
    while added < item.count {
        for (l, d) in load.iter_mut().zip(&item.demand) {
            *l += d;
        }
        added += 1;
        here.retain(|&b| fits(load, &bins[b].capacity));
        if here.is_empty() {
            break;
        }
        counts[i] = added;
        walk(items, bins, i + 1, &here, counts, load, out, overflow);
    }
    for (l, d) in load.iter_mut().zip(&item.demand) {
        *l -= d * u64::from(added);
    }
    counts[i] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bin(cpu: u64, mem: u64, cost: f64) -> BinType {
        BinType {
            capacity: vec![cpu, mem, 110],
            cost,
        }
    }

    fn item(cpu: u64, mem: u64, count: u32, allowed: &[usize]) -> Item {
        Item {
            demand: vec![cpu, mem, 1],
            count,
            allowed: allowed.to_vec(),
        }
    }

    /// m5.large, m5.xlarge, m5.2xlarge (allocatable-ish, millicores / MiB).
    fn m5() -> Vec<BinType> {
        vec![
            bin(1930, 7000, 0.096),
            bin(3920, 14500, 0.192),
            bin(7910, 29000, 0.384),
        ]
    }

    fn brute_force(items: &[Item], bins: &[BinType]) -> f64 {
        // Every assignment of pods to at most `pods` nodes, by recursion over pods (tiny cases only).
        let mut pods: Vec<usize> = Vec::new();
        for (i, it) in items.iter().enumerate() {
            pods.extend(std::iter::repeat_n(i, it.count as usize));
        }
        fn go(
            k: usize,
            pods: &[usize],
            items: &[Item],
            bins: &[BinType],
            nodes: &mut Vec<Vec<u32>>,
            best: &mut f64,
        ) {
            let partial: f64 = nodes
                .iter()
                .map(|c| cheapest_holding(items, bins, c).map_or(f64::INFINITY, |b| bins[b].cost))
                .sum();
            if partial >= *best {
                return;
            }
            if k == pods.len() {
                *best = partial;
                return;
            }
            for n in 0..nodes.len() {
                nodes[n][pods[k]] += 1;
                go(k + 1, pods, items, bins, nodes, best);
                nodes[n][pods[k]] -= 1;
            }
            let mut fresh = vec![0u32; items.len()];
            fresh[pods[k]] = 1;
            nodes.push(fresh);
            go(k + 1, pods, items, bins, nodes, best);
            nodes.pop();
        }
        let mut best = f64::INFINITY;
        go(0, &pods, items, bins, &mut Vec::new(), &mut best);
        best
    }

    fn valid(items: &[Item], bins: &[BinType], nodes: &[Node]) {
        let mut placed = vec![0u32; items.len()];
        for n in nodes {
            assert!(cheapest_holding(items, bins, &n.counts).is_some());
            let b = &bins[n.bin];
            for (i, item) in items.iter().enumerate() {
                if n.counts[i] > 0 {
                    assert!(
                        item.allowed.contains(&n.bin),
                        "item {i} not allowed on {}",
                        n.bin
                    );
                }
                placed[i] += n.counts[i];
            }
            for d in 0..b.capacity.len() {
                let load: u64 = items
                    .iter()
                    .zip(&n.counts)
                    .map(|(it, c)| it.demand[d] * u64::from(*c))
                    .sum();
                assert!(load <= b.capacity[d]);
            }
        }
        assert_eq!(
            placed,
            items.iter().map(|i| i.count).collect::<Vec<_>>(),
            "every pod placed once"
        );
    }

    #[test]
    fn table_small_mixed_batches_at_their_optimum() {
        let bins = m5();
        // (items, optimum): the case, one 2-CPU pod and one 1-CPU pod → one m5.xlarge.
        let cases: Vec<(Vec<Item>, f64)> = vec![
            (
                vec![
                    item(2000, 4000, 1, &[1, 2]),
                    item(1000, 2000, 1, &[0, 1, 2]),
                ],
                0.192,
            ),
            // Three of each (9 CPU): one m5.2xlarge (two 2-CPU + three 1-CPU) and one m5.xlarge, or
            // three m5.xlarge; the brute force below checks the figure independently.
            (
                vec![
                    item(2000, 4000, 3, &[1, 2]),
                    item(1000, 2000, 3, &[0, 1, 2]),
                ],
                0.384 + 0.192,
            ),
            // An item only the smallest bin may take cannot share with one only the biggest may take.
            (
                vec![item(500, 500, 2, &[0]), item(500, 500, 2, &[2])],
                0.096 + 0.384,
            ),
        ];
        for (n, (items, optimum)) in cases.iter().enumerate() {
            let exact = solve(items, &bins).expect("small batch solves");
            valid(items, &bins, &exact.nodes);
            assert!(exact.proven, "case {n}");
            let got = cost(&exact.nodes, &bins);
            assert!((got - optimum).abs() < 1e-9, "case {n}: {got} vs {optimum}");
            assert!(
                (brute_force(items, &bins) - optimum).abs() < 1e-9,
                "case {n}"
            );
        }
    }

    #[test]
    fn first_fit_is_karpenters_greedy() {
        let bins = m5();
        // Largest first: the 2-CPU pod opens a node, the 1-CPU pod joins it, bought as m5.xlarge.
        let items = vec![
            item(1000, 2000, 1, &[0, 1, 2]),
            item(2000, 4000, 1, &[1, 2]),
        ];
        let (nodes, unplaced) = first_fit(&items, &bins);
        assert_eq!(unplaced, vec![0, 0]);
        assert_eq!(
            nodes,
            vec![Node {
                bin: 1,
                counts: vec![1, 1]
            }]
        );
    }

    #[test]
    fn too_big_batches_are_left_to_the_heuristics() {
        let items = vec![item(100, 100, MAX_EXACT_PODS + 1, &[0, 1, 2])];
        assert!(solve(&items, &m5()).is_none());
    }

    fn arb_problem() -> impl Strategy<Value = (Vec<Item>, Vec<BinType>)> {
        let bins = prop::collection::vec((1u64..16, 1u64..32, 1u32..20), 1..5).prop_map(|v| {
            v.into_iter()
                .map(|(c, m, p)| bin(c * 500, m * 500, f64::from(p) / 10.0))
                .collect::<Vec<_>>()
        });
        bins.prop_flat_map(|bins| {
            let n = bins.len();
            let items = prop::collection::vec(
                (
                    1u64..8,
                    1u64..8,
                    1u32..4,
                    prop::collection::btree_set(0..n, 1..=n),
                ),
                1..4,
            )
            .prop_map(|v| {
                v.into_iter()
                    .map(|(c, m, k, allowed)| Item {
                        demand: vec![c * 250, m * 500, 1],
                        count: k,
                        allowed: allowed.into_iter().collect(),
                    })
                    .collect::<Vec<_>>()
            });
            (items, Just(bins))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// The exact packing is valid, never dearer than the greedy, and equal to a brute force.
        #[test]
        fn exact_is_optimal_and_never_worse_than_greedy((items, bins) in arb_problem()) {
            let (greedy, unplaced) = first_fit(&items, &bins);
            prop_assume!(unplaced.iter().all(|u| *u == 0));
            let exact = solve(&items, &bins).expect("solves");
            valid(&items, &bins, &exact.nodes);
            valid(&items, &bins, &greedy);
            let e = cost(&exact.nodes, &bins);
            prop_assert!(e <= cost(&greedy, &bins) + 1e-9);
            prop_assert!((e - brute_force(&items, &bins)).abs() < 1e-9);
        }
    }
}
