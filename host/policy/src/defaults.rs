//! The built-in default policies: natively (the fallback of every wasm policy, and the fast path) and as
//! the embedded wasm components built from the same sources by `host/build.rs`.
use super::PolicyKind;
pub use kestrel_core::policy::native::{NativeBudgeter, NativeConsolidator, NativeRanker};

pub const RANKER_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/default-ranker.wasm"));
pub const CONSOLIDATOR_WASM: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/default-consolidator.wasm"));
pub const BUDGETER_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/default-budgeter.wasm"));

/// `"source"` when the embedded components were built from `policies/` by this build, `"prebuilt"` when
/// they are the committed copies from `policies/prebuilt/` (no wasm target installed).
pub const EMBEDDED_FROM: &str = env!("KESTREL_DEFAULT_POLICIES_FROM");

/// The embedded default component of a kind.
pub fn embedded_wasm(kind: PolicyKind) -> &'static [u8] {
    match kind {
        PolicyKind::Ranker => RANKER_WASM,
        PolicyKind::Consolidator => CONSOLIDATOR_WASM,
        PolicyKind::Budgeter => BUDGETER_WASM,
    }
}
