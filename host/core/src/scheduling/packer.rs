//! Cost-based bin packing: which instance types to buy, and how many, for a batch of pod shapes.
//!
//! The packer sees numbers only: shapes (a demand vector and a count) and bin types (a capacity vector
//! and a cost, the ranker's score). It minimises the total cost of the bins:
//! - one shape: exactly, by dynamic programming over "how many pods does one node of type t hold";
//! - several shapes: node by node, choosing the (type, fill) with the best value per cost, where a pod's
//!   value is priced by the duals of the fluid LP over the remaining demand (so scarce resources are
//!   worth more), then downsizing every node to the cheapest type that holds it and merging the
//!   emptiest nodes. Several fill orders are tried and the cheapest packing wins.

use super::lp;

/// Identical pods: their per-dimension demand and how many there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub demand: Vec<u64>,
    pub count: u32,
}

/// A kind of bin: capacity per dimension (after daemonset overhead) and its cost per hour.
#[derive(Debug, Clone, PartialEq)]
pub struct BinType {
    pub capacity: Vec<u64>,
    pub cost: f64,
}

/// One bin to buy and how many pods of each shape it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedNode {
    pub bin_type: usize,
    pub counts: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Packing {
    pub nodes: Vec<PackedNode>,
    /// Pods per shape that no bin type can hold.
    pub unplaced: Vec<u32>,
}

impl Packing {
    pub fn cost(&self, types: &[BinType]) -> f64 {
        self.nodes.iter().map(|n| types[n.bin_type].cost).sum()
    }
}

/// Packs `shapes` into bins of `types` at low total cost; at most `max_per_node` pods per bin if set.
pub fn pack(shapes: &[Shape], types: &[BinType], max_per_node: Option<u32>) -> Packing {
    let dims = shapes.first().map_or(0, |s| s.demand.len());
    let mut unplaced = vec![0u32; shapes.len()];
    let fits_somewhere: Vec<bool> = shapes
        .iter()
        .map(|s| types.iter().any(|t| fits(&s.demand, 1, &t.capacity)))
        .collect();
    let mut work: Vec<Shape> = Vec::new();
    let mut index_of: Vec<usize> = Vec::new();
    for (i, s) in shapes.iter().enumerate() {
        if s.count == 0 {
            continue;
        }
        if fits_somewhere[i] {
            index_of.push(i);
            work.push(s.clone());
        } else {
            unplaced[i] = s.count;
        }
    }
    if work.is_empty() {
        return Packing {
            nodes: vec![],
            unplaced,
        };
    }
    let candidates = useful_types(&work, types, dims);
    let nodes = if work.len() == 1 {
        pack_one_shape(&work[0], types, &candidates, max_per_node)
    } else {
        let mut best: Option<(f64, Vec<PackedNode>)> = None;
        for chunk_divisor in [8u32, 32] {
            let mut nodes = greedy(&work, types, &candidates, max_per_node, chunk_divisor);
            improve(&mut nodes, &work, types, &candidates, max_per_node);
            let cost: f64 = nodes.iter().map(|n| types[n.bin_type].cost).sum();
            if best.as_ref().is_none_or(|(c, _)| cost < *c - 1e-9) {
                best = Some((cost, nodes));
            }
        }
        best.map(|(_, n)| n).unwrap_or_default()
    };
    let nodes = nodes
        .into_iter()
        .map(|n| {
            let mut counts = vec![0u32; shapes.len()];
            for (k, c) in n.counts.iter().enumerate() {
                counts[index_of[k]] = *c;
            }
            PackedNode {
                bin_type: n.bin_type,
                counts,
            }
        })
        .collect();
    Packing { nodes, unplaced }
}

fn fits(demand: &[u64], count: u64, capacity: &[u64]) -> bool {
    demand
        .iter()
        .zip(capacity)
        .all(|(d, c)| d.saturating_mul(count) <= *c)
}

/// How many pods of `demand` fit in `capacity`.
fn fit_count(demand: &[u64], capacity: &[u64]) -> u64 {
    demand
        .iter()
        .zip(capacity)
        .filter(|(d, _)| **d > 0)
        .map(|(d, c)| c / d)
        .min()
        .unwrap_or(u64::MAX)
}

/// Types worth considering: finite cost, and not dominated (another type at most as expensive holds at
/// least as much of every demanded resource, capped at the total demand).
fn useful_types(shapes: &[Shape], types: &[BinType], dims: usize) -> Vec<usize> {
    let total: Vec<u64> = (0..dims)
        .map(|d| {
            shapes
                .iter()
                .map(|s| s.demand[d].saturating_mul(u64::from(s.count)))
                .fold(0u64, u64::saturating_add)
        })
        .collect();
    let capped: Vec<Vec<u64>> = types
        .iter()
        .map(|t| {
            (0..dims)
                .map(|d| {
                    if total[d] == 0 {
                        0
                    } else {
                        t.capacity[d].min(total[d])
                    }
                })
                .collect()
        })
        .collect();
    let mut order: Vec<usize> = (0..types.len())
        .filter(|&t| types[t].cost.is_finite() && types[t].cost >= 0.0)
        .filter(|&t| {
            shapes
                .iter()
                .any(|s| fits(&s.demand, 1, &types[t].capacity))
        })
        .collect();
    order.sort_by(|&a, &b| types[a].cost.total_cmp(&types[b].cost).then(a.cmp(&b)));
    let mut kept: Vec<usize> = Vec::new();
    for &t in &order {
        let dominated = kept.iter().any(|&k| {
            types[k].cost <= types[t].cost && (0..dims).all(|d| capped[k][d] >= capped[t][d])
        });
        if !dominated {
            kept.push(t);
        }
    }
    kept
}

/// One shape: the exact minimum-cost cover by dynamic programming over the pod count.
fn pack_one_shape(
    shape: &Shape,
    types: &[BinType],
    candidates: &[usize],
    max_per_node: Option<u32>,
) -> Vec<PackedNode> {
    let n = shape.count as usize;
    // (pods per node, cost, type), keeping only types no other beats on both.
    let mut options: Vec<(usize, f64, usize)> = candidates
        .iter()
        .map(|&t| {
            let mut k = fit_count(&shape.demand, &types[t].capacity);
            if let Some(m) = max_per_node {
                k = k.min(u64::from(m));
            }
            (k.min(n as u64) as usize, types[t].cost, t)
        })
        .filter(|(k, _, _)| *k > 0)
        .collect();
    options.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut pruned: Vec<(usize, f64, usize)> = Vec::new();
    for o in options {
        if pruned.iter().all(|p| p.1 > o.1) {
            pruned.push(o);
        }
    }
    let mut dp = vec![0.0f64; n + 1];
    let mut choice = vec![usize::MAX; n + 1];
    for pods in 1..=n {
        let mut best = f64::INFINITY;
        for (i, (k, cost, _)) in pruned.iter().enumerate() {
            let c = dp[pods.saturating_sub(*k)] + cost;
            // Costs near f64::MAX sum to infinity: still pick an option, never leave `choice` unset.
            if c < best - 1e-12 || choice[pods] == usize::MAX {
                best = c;
                choice[pods] = i;
            }
        }
        dp[pods] = best;
    }
    let mut nodes = Vec::new();
    let mut left = n;
    while left > 0 {
        let (k, _, t) = pruned[choice[left]];
        let take = k.min(left);
        nodes.push(PackedNode {
            bin_type: t,
            counts: vec![take as u32],
        });
        left -= take;
    }
    // Biggest nodes first reads better and is stable.
    nodes.sort_by(|a, b| {
        b.counts[0]
            .cmp(&a.counts[0])
            .then(a.bin_type.cmp(&b.bin_type))
    });
    nodes
}

fn as_f64(v: &[u64]) -> Vec<f64> {
    v.iter().map(|x| *x as f64).collect()
}

/// Dual prices of the resources for the remaining demand (fallback: each resource's share of demand).
fn pod_values(shapes: &[Shape], left: &[u32], types: &[BinType], candidates: &[usize]) -> Vec<f64> {
    let dims = shapes[0].demand.len();
    let demand: Vec<f64> = (0..dims)
        .map(|d| {
            shapes
                .iter()
                .zip(left)
                .map(|(s, n)| s.demand[d] as f64 * f64::from(*n))
                .sum()
        })
        .collect();
    let caps: Vec<Vec<f64>> = candidates
        .iter()
        .map(|&t| as_f64(&types[t].capacity))
        .collect();
    let costs: Vec<f64> = candidates.iter().map(|&t| types[t].cost).collect();
    let duals = match lp::solve(&caps, &costs, &demand) {
        Some(f) if f.duals.iter().any(|y| *y > 0.0) => f.duals,
        _ => demand
            .iter()
            .map(|d| if *d > 0.0 { 1.0 / d } else { 0.0 })
            .collect(),
    };
    shapes
        .iter()
        .map(|s| {
            s.demand
                .iter()
                .zip(&duals)
                .map(|(d, y)| *d as f64 * y)
                .sum::<f64>()
                .max(1e-12)
        })
        .collect()
}

/// Fills one node of capacity `capacity` from `left`, best value per scarce capacity first.
fn fill(
    shapes: &[Shape],
    left: &[u32],
    values: &[f64],
    capacity: &[u64],
    max_per_node: Option<u32>,
    chunk_divisor: u32,
) -> Vec<u32> {
    let mut room = capacity.to_vec();
    let mut counts = vec![0u32; shapes.len()];
    let mut total = 0u32;
    loop {
        let cap_left = max_per_node.map_or(u32::MAX, |m| m - total);
        if cap_left == 0 {
            break;
        }
        let mut best: Option<(f64, usize, u64)> = None;
        for (s, shape) in shapes.iter().enumerate() {
            let avail = left[s] - counts[s];
            if avail == 0 {
                continue;
            }
            let fit = fit_count(&shape.demand, &room);
            if fit == 0 {
                continue;
            }
            let usage: f64 = shape
                .demand
                .iter()
                .zip(&room)
                .filter(|(d, _)| **d > 0)
                .map(|(d, r)| *d as f64 / (*r as f64).max(1.0))
                .sum();
            let score = values[s] / usage.max(1e-12);
            if best.is_none_or(|(b, _, _)| score > b) {
                best = Some((score, s, fit.min(u64::from(avail)).min(u64::from(cap_left))));
            }
        }
        let Some((_, s, most)) = best else {
            break;
        };
        let take = (most / u64::from(chunk_divisor)).max(1);
        for (r, d) in room.iter_mut().zip(&shapes[s].demand) {
            *r -= d * take;
        }
        counts[s] += take as u32;
        total += take as u32;
    }
    counts
}

fn greedy(
    shapes: &[Shape],
    types: &[BinType],
    candidates: &[usize],
    max_per_node: Option<u32>,
    chunk_divisor: u32,
) -> Vec<PackedNode> {
    let mut left: Vec<u32> = shapes.iter().map(|s| s.count).collect();
    let mut nodes = Vec::new();
    while left.iter().any(|&n| n > 0) {
        let values = pod_values(shapes, &left, types, candidates);
        let mut best: Option<(f64, usize, Vec<u32>)> = None;
        for &t in candidates {
            let counts = fill(
                shapes,
                &left,
                &values,
                &types[t].capacity,
                max_per_node,
                chunk_divisor,
            );
            let value: f64 = counts
                .iter()
                .zip(&values)
                .map(|(c, v)| f64::from(*c) * v)
                .sum();
            if value <= 0.0 {
                continue;
            }
            let efficiency = value / types[t].cost.max(1e-9);
            if best
                .as_ref()
                .is_none_or(|(e, _, _)| efficiency > *e * (1.0 + 1e-9))
            {
                best = Some((efficiency, t, counts));
            }
        }
        let Some((_, t, counts)) = best else {
            break; // cannot happen: every shape fits some candidate
        };
        // Repeat the pattern while plenty is left (re-pricing every node costs time, not quality).
        let copies = counts
            .iter()
            .zip(&left)
            .filter(|(c, _)| **c > 0)
            .map(|(c, l)| l / c)
            .min()
            .unwrap_or(1);
        let repeat = (copies / 2).max(1);
        for _ in 0..repeat {
            for (l, c) in left.iter_mut().zip(&counts) {
                *l -= c;
            }
            nodes.push(PackedNode {
                bin_type: t,
                counts: counts.clone(),
            });
        }
    }
    nodes
}

fn load(shapes: &[Shape], counts: &[u32]) -> Vec<u64> {
    let dims = shapes[0].demand.len();
    (0..dims)
        .map(|d| {
            shapes
                .iter()
                .zip(counts)
                .map(|(s, c)| s.demand[d] * u64::from(*c))
                .sum()
        })
        .collect()
}

/// The cheapest candidate type that holds `load`.
fn cheapest_holding(
    load: &[u64],
    pods: u32,
    types: &[BinType],
    candidates: &[usize],
    max_per_node: Option<u32>,
) -> Option<usize> {
    if max_per_node.is_some_and(|m| pods > m) {
        return None;
    }
    candidates
        .iter()
        .copied()
        .filter(|&t| fits(load, 1, &types[t].capacity))
        .min_by(|&a, &b| types[a].cost.total_cmp(&types[b].cost).then(a.cmp(&b)))
}

/// Local improvement: downsize each node, then merge pairs of nodes into one cheaper node.
fn improve(
    nodes: &mut Vec<PackedNode>,
    shapes: &[Shape],
    types: &[BinType],
    candidates: &[usize],
    max_per_node: Option<u32>,
) {
    for node in nodes.iter_mut() {
        let l = load(shapes, &node.counts);
        let pods = node.counts.iter().sum();
        if let Some(t) = cheapest_holding(&l, pods, types, candidates, max_per_node)
            && types[t].cost < types[node.bin_type].cost
        {
            node.bin_type = t;
        }
    }
    // Merge: the emptiest nodes (by used share of their own capacity) are tried pairwise.
    loop {
        let utilization = |n: &PackedNode| -> f64 {
            let l = load(shapes, &n.counts);
            l.iter()
                .zip(&types[n.bin_type].capacity)
                .filter(|(_, c)| **c > 0)
                .map(|(x, c)| *x as f64 / *c as f64)
                .fold(0.0, f64::max)
        };
        let mut order: Vec<usize> = (0..nodes.len()).collect();
        order.sort_by(|&a, &b| {
            utilization(&nodes[a])
                .total_cmp(&utilization(&nodes[b]))
                .then(a.cmp(&b))
        });
        order.truncate(24);
        let mut merged = None;
        'outer: for (x, &i) in order.iter().enumerate() {
            for &j in &order[x + 1..] {
                let counts: Vec<u32> = nodes[i]
                    .counts
                    .iter()
                    .zip(&nodes[j].counts)
                    .map(|(a, b)| a + b)
                    .collect();
                let l = load(shapes, &counts);
                let pods = counts.iter().sum();
                if let Some(t) = cheapest_holding(&l, pods, types, candidates, max_per_node)
                    && types[t].cost
                        < types[nodes[i].bin_type].cost + types[nodes[j].bin_type].cost - 1e-9
                {
                    merged = Some((i, j, t, counts));
                    break 'outer;
                }
            }
        }
        let Some((i, j, t, counts)) = merged else {
            break;
        };
        nodes[i] = PackedNode {
            bin_type: t,
            counts,
        };
        nodes.remove(j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(cpu: u64, mem: u64, pods: u64, cost: f64) -> BinType {
        BinType {
            capacity: vec![cpu, mem, pods],
            cost,
        }
    }

    fn check(packing: &Packing, shapes: &[Shape], types: &[BinType], max: Option<u32>) {
        let mut placed = vec![0u32; shapes.len()];
        for n in &packing.nodes {
            let l = load(shapes, &n.counts);
            assert!(
                fits(&l, 1, &types[n.bin_type].capacity),
                "over capacity: {n:?}"
            );
            if let Some(m) = max {
                assert!(n.counts.iter().sum::<u32>() <= m);
            }
            for (p, c) in placed.iter_mut().zip(&n.counts) {
                *p += c;
            }
        }
        for (s, shape) in shapes.iter().enumerate() {
            assert_eq!(placed[s] + packing.unplaced[s], shape.count);
        }
    }

    #[test]
    fn one_shape_is_packed_optimally() {
        // 10 pods of 1 cpu: big (8 cpu, cost 7) vs small (2 cpu, cost 2): best is 1 big + 1 small = 9.
        let types = vec![bin(8, 100, 100, 7.0), bin(2, 100, 100, 2.0)];
        let shapes = vec![Shape {
            demand: vec![1, 1, 1],
            count: 10,
        }];
        let p = pack(&shapes, &types, None);
        check(&p, &shapes, &types, None);
        assert!((p.cost(&types) - 9.0).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn max_per_node_is_respected() {
        let types = vec![bin(8, 100, 100, 7.0), bin(2, 100, 100, 2.0)];
        let shapes = vec![Shape {
            demand: vec![1, 1, 1],
            count: 5,
        }];
        let p = pack(&shapes, &types, Some(1));
        check(&p, &shapes, &types, Some(1));
        assert_eq!(p.nodes.len(), 5);
    }

    #[test]
    fn mixed_shapes_go_to_matching_types() {
        // cpu-heavy pods want the "c" type, memory-heavy ones the "r" type.
        let types = vec![
            bin(16, 32, 100, 1.0),
            bin(4, 128, 100, 1.0),
            bin(16, 128, 100, 3.0),
        ];
        let shapes = vec![
            Shape {
                demand: vec![2, 2, 1],
                count: 40,
            },
            Shape {
                demand: vec![1, 16, 1],
                count: 40,
            },
        ];
        let p = pack(&shapes, &types, None);
        check(&p, &shapes, &types, None);
        // The "r" type is cpu-bound for the memory-heavy pods (4 per node), so the best is to put one of
        // them with 7 cpu-heavy pods on each "c" node and the rest on "r" nodes: 6 c + 9 r = 15. Putting
        // everything on "c" costs 23 (memory-bound), the pricier "m" type 3 per node worse still.
        assert!(
            p.cost(&types) <= 15.0 + 1e-9,
            "{} {:?}",
            p.cost(&types),
            p.nodes
        );
        assert!(p.nodes.iter().all(|n| n.bin_type != 2));
    }

    #[test]
    fn shapes_that_fit_nowhere_are_reported() {
        let types = vec![bin(2, 2, 10, 1.0)];
        let shapes = vec![
            Shape {
                demand: vec![4, 1, 1],
                count: 3,
            },
            Shape {
                demand: vec![1, 1, 1],
                count: 3,
            },
        ];
        let p = pack(&shapes, &types, None);
        check(&p, &shapes, &types, None);
        assert_eq!(p.unplaced, vec![3, 0]);
    }
}

#[cfg(test)]
mod huge_costs {
    use super::*;

    fn bin(cpu: u64, cost: f64) -> BinType {
        BinType {
            capacity: vec![cpu, 100, 100],
            cost,
        }
    }

    /// Costs near f64::MAX (a spot price or a ranker score of 1e308) overflow to infinity when two
    /// nodes are added up; the packer must still place every pod instead of indexing out of bounds.
    #[test]
    fn costs_that_overflow_when_summed_still_pack_every_pod() {
        let types = vec![bin(2, 1e308), bin(4, f64::MAX)];
        for shapes in [
            vec![Shape {
                demand: vec![1, 1, 1],
                count: 9,
            }],
            vec![
                Shape {
                    demand: vec![1, 1, 1],
                    count: 9,
                },
                Shape {
                    demand: vec![2, 1, 1],
                    count: 5,
                },
            ],
        ] {
            let p = pack(&shapes, &types, None);
            for (s, shape) in shapes.iter().enumerate() {
                let placed: u32 = p.nodes.iter().map(|n| n.counts[s]).sum();
                assert_eq!(placed + p.unplaced[s], shape.count, "{p:?}");
                assert_eq!(p.unplaced[s], 0, "{p:?}");
            }
        }
    }
}
