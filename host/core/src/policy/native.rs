//! The built-in default policies, natively: the fallback of every wasm policy, and the fast path. The
//! same sources are built to the wasm components `kestrel-policy` embeds.
use super::contract::{budget, consolidate, rank};
use super::{Budgeter, Consolidator, Fallback, FallbackKind, Ranker, Verdict};

fn label(name: &str, version: &str) -> String {
    format!("{name}@{version} (native)")
}

/// The default ranker, natively.
#[derive(Debug, Clone, Default)]
pub struct NativeRanker {
    catalog: Option<std::sync::Arc<rank::Catalog>>,
}

impl NativeRanker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn label() -> String {
        label(
            kestrel_default_ranker::NAME,
            kestrel_default_ranker::VERSION,
        )
    }

    /// The default answer for `input` with `catalog` (no catalog: an empty one).
    pub fn answer(
        catalog: Option<&rank::Catalog>,
        input: &rank::RankInput,
    ) -> Verdict<rank::Ranking> {
        let empty;
        let catalog = match catalog {
            Some(c) => c,
            None => {
                empty = rank::Catalog {
                    revision: 0,
                    label_keys: vec![],
                    label_values: vec![],
                    zones: vec![],
                    instance_types: vec![],
                };
                &empty
            }
        };
        native_verdict(
            kestrel_default_ranker::rank(catalog, input),
            Self::label(),
            || rank::Ranking {
                order: vec![],
                scores: vec![],
                reasons: vec![],
            },
        )
    }
}

impl Ranker for NativeRanker {
    fn set_catalog(&mut self, catalog: &std::sync::Arc<rank::Catalog>) {
        self.catalog = Some(catalog.clone());
    }
    fn rank(&mut self, input: &rank::RankInput) -> Verdict<rank::Ranking> {
        Self::answer(self.catalog.as_deref(), input)
    }
}

/// The default consolidator, natively.
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeConsolidator;

impl NativeConsolidator {
    pub fn label() -> String {
        label(
            kestrel_default_consolidator::NAME,
            kestrel_default_consolidator::VERSION,
        )
    }
    pub fn answer(input: &consolidate::ConsolidateInput) -> Verdict<Vec<u32>> {
        native_verdict(
            kestrel_default_consolidator::consolidate(input),
            Self::label(),
            Vec::new,
        )
    }
}

impl Consolidator for NativeConsolidator {
    fn consolidate(&mut self, input: &consolidate::ConsolidateInput) -> Verdict<Vec<u32>> {
        Self::answer(input)
    }
}

/// The default budgeter, natively: Karpenter's semantics of the NodePool's own budgets. Its answer is
/// also the ceiling every other budgeter is clamped to.
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeBudgeter;

impl NativeBudgeter {
    pub fn label() -> String {
        label(
            kestrel_default_budgeter::NAME,
            kestrel_default_budgeter::VERSION,
        )
    }
    pub fn answer(input: &budget::BudgetInput) -> Verdict<Vec<budget::ReasonCount>> {
        // On bad input (a percentage above 100) nothing may be disrupted.
        native_verdict(
            kestrel_default_budgeter::allowed(input),
            Self::label(),
            || {
                kestrel_default_budgeter::REASONS
                    .iter()
                    .map(|&reason| budget::ReasonCount { reason, count: 0 })
                    .collect()
            },
        )
    }
}

impl Budgeter for NativeBudgeter {
    fn allowed(&mut self, input: &budget::BudgetInput) -> Verdict<Vec<budget::ReasonCount>> {
        Self::answer(input)
    }
}

/// A native default's answer; its `Err` (malformed input) gives the safe empty answer, flagged.
fn native_verdict<T>(
    answer: Result<T, String>,
    decided_by: String,
    safe: impl FnOnce() -> T,
) -> Verdict<T> {
    match answer {
        Ok(value) => Verdict {
            value,
            decided_by,
            fallback: None,
            reasons: vec![],
        },
        Err(detail) => Verdict {
            value: safe(),
            fallback: Some(Fallback {
                policy: decided_by.clone(),
                kind: FallbackKind::PolicyError,
                detail,
            }),
            decided_by,
            reasons: vec![],
        },
    }
}
