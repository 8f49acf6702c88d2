//! Policies as the core sees them: the ranker, consolidator and budgeter traits, their contract types,
//! the native defaults, and [`PolicyProvider`], where the core gets each NodePool's policies from.
//!
//! The wasm runtime (`kestrel-policy`: wasmtime sandbox, limits, per-NodePool registry, hot swap)
//! implements [`PolicyProvider`] on top of this module; the core depends on no wasm engine.
//! The core sees only the three traits below. Every answer comes back as a [`Verdict`]: the value to use
//! (already validated and clamped by the host) and, when the configured policy failed, why the built-in
//! default answered instead.

/// The contract types, shared by the host, the SDK and the policies (generated from `wit/policy.wit`).
pub mod contract {
    pub use kestrel_policy_sdk::budgeter as budget;
    pub use kestrel_policy_sdk::consolidator as consolidate;
    pub use kestrel_policy_sdk::ranker as rank;
}

use contract::{budget, consolidate, rank};

pub mod native;

pub use native::{NativeBudgeter, NativeConsolidator, NativeRanker};

/// The three kinds of policy (one WIT world each).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    Ranker = 0,
    Consolidator = 1,
    Budgeter = 2,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 3] = [
        PolicyKind::Ranker,
        PolicyKind::Consolidator,
        PolicyKind::Budgeter,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Ranker => "ranker",
            PolicyKind::Consolidator => "consolidator",
            PolicyKind::Budgeter => "budgeter",
        }
    }
}

impl std::fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PolicyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        PolicyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown policy kind {s:?} (expected ranker, consolidator or budgeter)")
            })
    }
}

/// Orders the offerings a NodePool may launch for a batch of pods.
pub trait Ranker: Send {
    /// Called once per catalog revision, before any `rank` that refers to it. Shared: every NodePool's
    /// ranker gets the same catalog, so a ranker keeps the `Arc`, not a copy.
    fn set_catalog(&mut self, catalog: &std::sync::Arc<rank::Catalog>);
    fn rank(&mut self, input: &rank::RankInput) -> Verdict<rank::Ranking>;
}

/// Picks and orders consolidation moves among the safe ones the host computed.
pub trait Consolidator: Send {
    /// The ids of the moves to take, in order.
    fn consolidate(&mut self, input: &consolidate::ConsolidateInput) -> Verdict<Vec<u32>>;
}

/// Says how many nodes may be disrupted now, per reason (clamped to the NodePool's own budgets).
pub trait Budgeter: Send {
    fn allowed(&mut self, input: &budget::BudgetInput) -> Verdict<Vec<budget::ReasonCount>>;
}

/// A policy's answer, as the core uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict<T> {
    pub value: T,
    /// Which policy produced `value`, e.g. "default-ranker@0.1.0 (native)" or "graviton@1.0.0 (wasm sha256:ab12…)".
    pub decided_by: String,
    /// Set when the configured policy failed and the native default decided instead.
    pub fallback: Option<Fallback>,
    /// The policy's reasons, one per choice (ranking entry, chosen move, budget entry), each at most
    /// `kestrel_policy_sdk::MAX_REASON_BYTES`; empty when it gave none (the defaults give none).
    pub reasons: Vec<String>,
}

impl<T> Verdict<T> {
    /// The reason given for the choice at `index` of the answer, if any.
    pub fn reason(&self, index: usize) -> Option<&str> {
        self.reasons
            .get(index)
            .map(String::as_str)
            .filter(|r| !r.is_empty())
    }
}

/// Why a configured policy's answer was not used.
#[derive(Debug, Clone, PartialEq)]
pub struct Fallback {
    pub policy: String,
    pub kind: FallbackKind,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FallbackKind {
    /// The module trapped (panic, unreachable, out of bounds, ...).
    Trap,
    /// The call ran past its epoch deadline.
    Timeout,
    /// The module tried to grow its memory past the cap.
    MemoryLimit,
    /// The answer broke the contract (unknown or duplicate index, NaN, wrong length, ...).
    InvalidAnswer,
    /// The policy returned `err(..)`.
    PolicyError,
    /// The policy is degraded after repeated failures and is not called until it is replaced.
    Degraded,
}

impl FallbackKind {
    pub const ALL: [FallbackKind; 6] = [
        FallbackKind::Trap,
        FallbackKind::Timeout,
        FallbackKind::MemoryLimit,
        FallbackKind::InvalidAnswer,
        FallbackKind::PolicyError,
        FallbackKind::Degraded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FallbackKind::Trap => "trap",
            FallbackKind::Timeout => "timeout",
            FallbackKind::MemoryLimit => "memoryLimit",
            FallbackKind::InvalidAnswer => "invalidAnswer",
            FallbackKind::PolicyError => "policyError",
            FallbackKind::Degraded => "degraded",
        }
    }
}

/// Where the core gets each NodePool's policies: the wasm registry (`kestrel_policy::PolicyRegistry`,
/// whose handles follow hot swaps) in production and the simulator, or [`NativePolicies`].
pub trait PolicyProvider: Send + Sync {
    fn ranker(&self, node_pool: &str) -> Box<dyn Ranker>;
    fn consolidator(&self, node_pool: &str) -> Box<dyn Consolidator>;
    fn budgeter(&self, node_pool: &str) -> Box<dyn Budgeter>;
}

/// The built-in defaults for every NodePool, natively (no wasm engine).
#[derive(Debug, Clone, Copy, Default)]
pub struct NativePolicies;

impl PolicyProvider for NativePolicies {
    fn ranker(&self, _node_pool: &str) -> Box<dyn Ranker> {
        Box::new(NativeRanker::new())
    }
    fn consolidator(&self, _node_pool: &str) -> Box<dyn Consolidator> {
        Box::new(NativeConsolidator)
    }
    fn budgeter(&self, _node_pool: &str) -> Box<dyn Budgeter> {
        Box::new(NativeBudgeter)
    }
}
