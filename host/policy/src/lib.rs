//! The policy runtime: wasm components in a wasmtime sandbox, limits, the per-NodePool registry and hot
//! swap, behind the core's policy traits (`kestrel_core::policy`, re-exported here).
//! Every answer comes back as a [`Verdict`]: the value to use (already validated and clamped by the
//! host) and, when the configured policy failed, why the built-in default answered instead.

pub use kestrel_core::policy::{
    Budgeter, Consolidator, Fallback, FallbackKind, NativePolicies, PolicyKind, PolicyProvider,
    Ranker, Verdict, contract,
};

pub mod bindings;
pub mod build_component;
pub mod defaults;
pub mod engine;
pub mod error;
pub mod fixtures;
pub mod metrics;
pub mod registry;
pub mod sandbox;
pub mod settings;
pub mod validate;

pub use defaults::{NativeBudgeter, NativeConsolidator, NativeRanker};
pub use engine::{Limits, PolicyEngine};
pub use error::PolicyError;
pub use metrics::{MetricsSnapshot, PolicyMetrics};
pub use registry::{
    BUDGETER_ANNOTATION, CONSOLIDATOR_ANNOTATION, DefaultBackend, PolicyRef, PolicyRefs,
    PolicyRegistry, PolicySource, PoolBudgeter, PoolConsolidator, PoolRanker, RANKER_ANNOTATION,
    budgeter_from_file, consolidator_from_file, policy_refs, ranker_from_file,
};
pub use sandbox::{
    CompiledPolicy, Contract, NO_SETTINGS, WasmBudgeter, WasmConsolidator, WasmPolicy, WasmRanker,
};
