//! The fluid relaxation of a packing problem, solved exactly by a small revised simplex.
//!
//! `min Σ cost_t·x_t  s.t.  Σ_t cap_t[d]·x_t ≥ demand[d] for every dimension d, x ≥ 0`. There are few
//! dimensions (cpu, memory, pods, maybe storage and GPUs), so the basis is a tiny dense matrix. Its dual
//! prices say what a unit of each resource is worth at the optimum; the packer values pods with them.

/// The LP optimum and the dual price of each dimension (per unit of that dimension).
#[derive(Debug, Clone, PartialEq)]
pub struct Fluid {
    pub cost: f64,
    pub duals: Vec<f64>,
    /// Fractional node counts per type.
    pub mix: Vec<f64>,
}

/// Solves the fluid LP. `caps[t][d]`, `costs[t]`, `demand[d]`. `None` if some demanded dimension has no
/// capacity in any type (infeasible).
#[allow(clippy::needless_range_loop)] // dense matrix code reads clearer with indexes
pub fn solve(caps: &[Vec<f64>], costs: &[f64], demand: &[f64]) -> Option<Fluid> {
    let dims = demand.len();
    // Dimensions nobody asks for get a zero price; the others are scaled so that demand is 1.
    let active: Vec<usize> = (0..dims).filter(|&d| demand[d] > 0.0).collect();
    let m = active.len();
    let mut duals = vec![0.0; dims];
    if m == 0 {
        return Some(Fluid {
            cost: 0.0,
            duals,
            mix: vec![0.0; costs.len()],
        });
    }
    let n = costs.len();
    let column =
        |t: usize| -> Vec<f64> { active.iter().map(|&d| caps[t][d] / demand[d]).collect() };
    let columns: Vec<Vec<f64>> = (0..n).map(column).collect();
    for (i, &d) in active.iter().enumerate() {
        if columns.iter().all(|c| c[i] <= 0.0) {
            let _ = d;
            return None;
        }
    }
    let big_m = 1e6 * costs.iter().cloned().fold(1.0, f64::max);
    // Variables: 0..n structural, n..n+m surplus (column -e_i), n+m..n+2m artificial (column +e_i).
    let var_column = |j: usize| -> Vec<f64> {
        if j < n {
            columns[j].clone()
        } else if j < n + m {
            let mut c = vec![0.0; m];
            c[j - n] = -1.0;
            c
        } else {
            let mut c = vec![0.0; m];
            c[j - n - m] = 1.0;
            c
        }
    };
    let var_cost = |j: usize| -> f64 {
        if j < n {
            costs[j]
        } else if j < n + m {
            0.0
        } else {
            big_m
        }
    };
    let mut basis: Vec<usize> = (0..m).map(|i| n + m + i).collect();
    let mut binv: Vec<Vec<f64>> = (0..m)
        .map(|i| (0..m).map(|k| if i == k { 1.0 } else { 0.0 }).collect())
        .collect();
    let mut xb: Vec<f64> = vec![1.0; m];
    for _iteration in 0..(50 * (n + m) + 100) {
        // y = c_B · B^-1
        let y: Vec<f64> = (0..m)
            .map(|k| (0..m).map(|i| var_cost(basis[i]) * binv[i][k]).sum())
            .collect();
        // Most negative reduced cost (Dantzig), ties to the lowest index for determinism.
        let mut entering = None;
        let mut best = -1e-12;
        for j in 0..n + m {
            if basis.contains(&j) {
                continue;
            }
            let col = var_column(j);
            let reduced = var_cost(j) - (0..m).map(|k| y[k] * col[k]).sum::<f64>();
            let scaled = reduced / (1.0 + col.iter().map(|v| v.abs()).sum::<f64>());
            if scaled < best {
                best = scaled;
                entering = Some(j);
            }
        }
        let Some(j) = entering else {
            for (k, &d) in active.iter().enumerate() {
                duals[d] = y[k].max(0.0) / demand[d];
            }
            let mut mix = vec![0.0; n];
            let mut cost = 0.0;
            for i in 0..m {
                if basis[i] < n {
                    mix[basis[i]] = xb[i];
                    cost += costs[basis[i]] * xb[i];
                } else if basis[i] >= n + m && xb[i] > 1e-9 {
                    return None;
                }
            }
            return Some(Fluid { cost, duals, mix });
        };
        let col = var_column(j);
        let dir: Vec<f64> = (0..m)
            .map(|i| (0..m).map(|k| binv[i][k] * col[k]).sum())
            .collect();
        let mut leaving = None;
        let mut ratio = f64::INFINITY;
        for i in 0..m {
            if dir[i] > 1e-12 {
                let r = xb[i] / dir[i];
                if r < ratio - 1e-15 {
                    ratio = r;
                    leaving = Some(i);
                }
            }
        }
        let Some(r) = leaving else {
            return None; // unbounded cannot happen with non-negative costs; be safe
        };
        let pivot = dir[r];
        for k in 0..m {
            binv[r][k] /= pivot;
        }
        xb[r] /= pivot;
        for i in 0..m {
            if i != r && dir[i] != 0.0 {
                let f = dir[i];
                for k in 0..m {
                    binv[i][k] -= f * binv[r][k];
                }
                xb[i] -= f * xb[r];
            }
        }
        basis[r] = j;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_types_when_demand_straddles_their_ratios() {
        // Type 0: 4 cpu / 8 mem for 1.0; type 1: 2 cpu / 16 mem for 1.0. Demand 10 cpu, 40 mem.
        let caps = vec![vec![4.0, 8.0], vec![2.0, 16.0]];
        let fluid = solve(&caps, &[1.0, 1.0], &[10.0, 40.0]).unwrap();
        // 4a + 2b = 10, 8a + 16b = 40 -> a = 5/3, b = 5/3.
        assert!((fluid.cost - 10.0 / 3.0).abs() < 1e-9, "{fluid:?}");
        // Duals price each type exactly at its cost.
        for (t, cap) in caps.iter().enumerate() {
            let value: f64 = cap.iter().zip(&fluid.duals).map(|(c, y)| c * y).sum();
            assert!((value - 1.0).abs() < 1e-9, "type {t}: {value}");
        }
    }

    #[test]
    fn infeasible_when_no_type_has_a_demanded_resource() {
        assert!(solve(&[vec![1.0, 0.0]], &[1.0], &[1.0, 1.0]).is_none());
    }
}
