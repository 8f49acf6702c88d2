//! Host-side bindings of the three worlds (wasmtime `bindgen!`), for every contract version the host
//! loads, and conversions from the SDK types the core uses. The ranker's inputs are bound in borrowed
//! form, so its columns are lowered straight from the caller's vectors; the other worlds' inputs are
//! small and copied.
//!
//! Contract 0.2.0 (`wit/policy.wit`) kept 0.1.0's input records as they were, so one set of conversions
//! (the `conversions!` macro) serves both versions' bindings; only the answers differ.
use super::contract::{budget, consolidate, rank};

/// The name, version and contract a policy reports from `info()`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyInfo {
    pub name: String,
    pub version: String,
    pub contract: String,
}

/// Conversions between the core's contract types and one version's bindings (`r`, `c`, `b` in scope).
macro_rules! conversions {
    () => {
        impl From<r::PolicyInfo> for super::PolicyInfo {
            fn from(i: r::PolicyInfo) -> Self {
                super::PolicyInfo {
                    name: i.name,
                    version: i.version,
                    contract: i.contract,
                }
            }
        }
        impl From<c::PolicyInfo> for super::PolicyInfo {
            fn from(i: c::PolicyInfo) -> Self {
                super::PolicyInfo {
                    name: i.name,
                    version: i.version,
                    contract: i.contract,
                }
            }
        }
        impl From<b::PolicyInfo> for super::PolicyInfo {
            fn from(i: b::PolicyInfo) -> Self {
                super::PolicyInfo {
                    name: i.name,
                    version: i.version,
                    contract: i.contract,
                }
            }
        }

        /// Calls `f` with the catalog in the borrowed form the bindings lower (no copy of the strings).
        pub fn with_catalog<R>(c: &rank::Catalog, f: impl FnOnce(r::Catalog<'_>) -> R) -> R {
            let keys: Vec<&str> = c.label_keys.iter().map(String::as_str).collect();
            let values: Vec<&str> = c.label_values.iter().map(String::as_str).collect();
            let zones: Vec<&str> = c.zones.iter().map(String::as_str).collect();
            let types: Vec<r::InstanceType<'_>> = c
                .instance_types
                .iter()
                .map(|t| r::InstanceType {
                    name: &t.name,
                    cpu_millis: t.cpu_millis,
                    memory_mib: t.memory_mib,
                    pods: t.pods,
                    gpus: t.gpus,
                    labels: &t.labels,
                })
                .collect();
            f(r::Catalog {
                revision: c.revision,
                label_keys: &keys,
                label_values: &values,
                zones: &zones,
                instance_types: &types,
            })
        }

        /// Calls `f` with the rank input in borrowed form: the columns are lowered straight from the caller's
        /// vectors (one memory copy, into the guest).
        pub fn with_rank_input<R>(i: &rank::RankInput, f: impl FnOnce(r::RankInput<'_>) -> R) -> R {
            let o = &i.offerings;
            let pods: Vec<r::PodShape> = i
                .pods
                .iter()
                .map(|p| r::PodShape {
                    count: p.count,
                    cpu_millis: p.cpu_millis,
                    memory_mib: p.memory_mib,
                    gpus: p.gpus,
                })
                .collect();
            let min_values: Vec<r::MinValues> = i
                .min_values
                .iter()
                .map(|m| r::MinValues {
                    key: m.key,
                    min: m.min,
                })
                .collect();
            f(r::RankInput {
                node_pool: &i.node_pool,
                now: i.now,
                seed: i.seed,
                pods: &pods,
                offerings: r::Offerings {
                    instance_type: &o.instance_type,
                    zone: &o.zone,
                    capacity_type: &o.capacity_type,
                    price: &o.price,
                    interruption: &o.interruption,
                    capacity_score: &o.capacity_score,
                    pods_per_node: &o.pods_per_node,
                },
                min_values: &min_values,
            })
        }

        pub fn consolidate_input(i: &consolidate::ConsolidateInput) -> c::ConsolidateInput {
            c::ConsolidateInput {
                node_pool: i.node_pool.clone(),
                now: i.now,
                nodes: i
                    .nodes
                    .iter()
                    .map(|n| c::NodeInfo {
                        instance_type: n.instance_type.clone(),
                        zone: n.zone.clone(),
                        capacity_type: n.capacity_type,
                        price: n.price,
                        age_seconds: n.age_seconds,
                        cpu_utilization: n.cpu_utilization,
                        memory_utilization: n.memory_utilization,
                        pods: n.pods,
                    })
                    .collect(),
                moves: i
                    .moves
                    .iter()
                    .map(|m| c::CandidateMove {
                        id: m.id,
                        kind: match m.kind {
                            consolidate::MoveKind::Delete => c::MoveKind::Delete,
                            consolidate::MoveKind::Replace => c::MoveKind::Replace,
                        },
                        reason: match m.reason {
                            consolidate::DisruptionReason::Empty => c::DisruptionReason::Empty,
                            consolidate::DisruptionReason::Underutilized => {
                                c::DisruptionReason::Underutilized
                            }
                            consolidate::DisruptionReason::Drifted => c::DisruptionReason::Drifted,
                        },
                        nodes: m.nodes.clone(),
                        replacement_type: m.replacement_type.clone(),
                        replacement_price: m.replacement_price,
                        savings_per_hour: m.savings_per_hour,
                        pods_moved: m.pods_moved,
                        disruption_cost: m.disruption_cost,
                    })
                    .collect(),
            }
        }

        fn reason_to_wasm(r: budget::DisruptionReason) -> b::DisruptionReason {
            match r {
                budget::DisruptionReason::Empty => b::DisruptionReason::Empty,
                budget::DisruptionReason::Underutilized => b::DisruptionReason::Underutilized,
                budget::DisruptionReason::Drifted => b::DisruptionReason::Drifted,
            }
        }

        fn reason_from_wasm(r: b::DisruptionReason) -> budget::DisruptionReason {
            match r {
                b::DisruptionReason::Empty => budget::DisruptionReason::Empty,
                b::DisruptionReason::Underutilized => budget::DisruptionReason::Underutilized,
                b::DisruptionReason::Drifted => budget::DisruptionReason::Drifted,
            }
        }

        pub fn budget_input(i: &budget::BudgetInput) -> b::BudgetInput {
            b::BudgetInput {
                node_pool: i.node_pool.clone(),
                now: i.now,
                budgets: i
                    .budgets
                    .iter()
                    .map(|x| b::Budget {
                        nodes: match x.nodes {
                            budget::BudgetNodes::Count(n) => b::BudgetNodes::Count(n),
                            budget::BudgetNodes::Percent(p) => b::BudgetNodes::Percent(p),
                        },
                        schedule: x.schedule.clone(),
                        duration_seconds: x.duration_seconds,
                        reasons: x.reasons.iter().map(|&r| reason_to_wasm(r)).collect(),
                        active: x.active,
                    })
                    .collect(),
                total_nodes: i.total_nodes,
                disrupting: i.disrupting,
                candidates: i
                    .candidates
                    .iter()
                    .map(|c| b::ReasonCount {
                        reason: reason_to_wasm(c.reason),
                        count: c.count,
                    })
                    .collect(),
            }
        }

        pub fn reason_counts(v: Vec<b::ReasonCount>) -> Vec<budget::ReasonCount> {
            v.into_iter()
                .map(|c| budget::ReasonCount {
                    reason: reason_from_wasm(c.reason),
                    count: c.count,
                })
                .collect()
        }
    };
}

/// The current contract, `kestrel:policy@0.2.0`.
pub mod v0_2 {
    pub mod ranker {
        wasmtime::component::bindgen!({ path: "../../wit", world: "ranker", ownership: Borrowing { duplicate_if_necessary: true } });
        pub use exports::kestrel::policy::ranking as api;
    }

    pub mod consolidator {
        wasmtime::component::bindgen!({ path: "../../wit", world: "consolidator" });
        pub use exports::kestrel::policy::consolidation as api;
    }

    pub mod budgeter {
        wasmtime::component::bindgen!({ path: "../../wit", world: "budgeter" });
        pub use exports::kestrel::policy::budgeting as api;
    }

    use super::{budget, consolidate, rank};
    use budgeter::api as b;
    use consolidator::api as c;
    use ranker::api as r;
    conversions!();

    pub fn ranking(x: r::Ranking) -> (rank::Ranking, Vec<String>) {
        (
            rank::Ranking {
                order: x.order,
                scores: x.scores,
                reasons: vec![],
            },
            x.reasons,
        )
    }
}

/// The first contract, `kestrel:policy@0.1.0` (`wit/compat/0.1.0/policy.wit`): no settings, no reasons.
pub mod v0_1 {
    pub mod ranker {
        wasmtime::component::bindgen!({ path: "../../wit/compat/0.1.0", world: "ranker", ownership: Borrowing { duplicate_if_necessary: true } });
        pub use exports::kestrel::policy::ranking as api;
    }

    pub mod consolidator {
        wasmtime::component::bindgen!({ path: "../../wit/compat/0.1.0", world: "consolidator" });
        pub use exports::kestrel::policy::consolidation as api;
    }

    pub mod budgeter {
        wasmtime::component::bindgen!({ path: "../../wit/compat/0.1.0", world: "budgeter" });
        pub use exports::kestrel::policy::budgeting as api;
    }

    use super::{budget, consolidate, rank};
    use budgeter::api as b;
    use consolidator::api as c;
    use ranker::api as r;
    conversions!();

    pub fn ranking(x: r::Ranking) -> rank::Ranking {
        rank::Ranking {
            order: x.order,
            scores: x.scores,
            reasons: vec![],
        }
    }
}
