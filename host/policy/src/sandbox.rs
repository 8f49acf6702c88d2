//! Wasm-backed policies: one long-lived instance per policy object, limits on every call, validation of
//! every answer, and the native default answering whenever the module fails.
//!
//! A failed call (trap, timeout, memory cap, `err`, invalid answer) drops the instance — a trapped
//! instance is never called again — and the next call instantiates afresh (re-sending the catalog).
//! After `Limits::degrade_after` consecutive failures the policy is degraded: the default answers until
//! the policy is replaced.
use super::bindings::{self, PolicyInfo, budgeter, consolidator, ranker};
use super::contract::{budget, consolidate, rank};
use super::defaults::{NativeBudgeter, NativeConsolidator, NativeRanker};
use super::engine::{HostState, Limits, MemoryCapExceeded, PolicyEngine, chain, ticks};
use super::error::PolicyError;
use super::metrics::PolicyMetrics;
use super::{
    Budgeter, Consolidator, Fallback, FallbackKind, PolicyKind, Ranker, Verdict, validate,
};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::Store;

enum Pre {
    Ranker(ranker::RankerPre<HostState>),
    Consolidator(consolidator::ConsolidatorPre<HostState>),
    Budgeter(budgeter::BudgeterPre<HostState>),
}

/// A compiled, linked policy component, ready to instantiate (shared by every instance of it).
pub struct CompiledPolicy {
    pub kind: PolicyKind,
    pub sha256: String,
    pub info: PolicyInfo,
    engine: PolicyEngine,
    pre: Pre,
}

impl std::fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPolicy")
            .field("kind", &self.kind)
            .field("sha256", &self.sha256)
            .field("info", &self.info)
            .finish()
    }
}

impl CompiledPolicy {
    /// Compiles (cached by sha256) and links `bytes` as a policy of `kind`, and reads its `info()`.
    pub fn new(
        engine: &PolicyEngine,
        kind: PolicyKind,
        bytes: &[u8],
        limits: &Limits,
    ) -> Result<Self, PolicyError> {
        let (sha256, component) = engine.compile(bytes)?;
        let wrong = |e: wasmtime::Error| PolicyError::WrongWorld {
            kind,
            detail: chain(&e),
        };
        let instance_pre = engine.linker().instantiate_pre(&component).map_err(wrong)?;
        let pre = match kind {
            PolicyKind::Ranker => Pre::Ranker(ranker::RankerPre::new(instance_pre).map_err(wrong)?),
            PolicyKind::Consolidator => {
                Pre::Consolidator(consolidator::ConsolidatorPre::new(instance_pre).map_err(wrong)?)
            }
            PolicyKind::Budgeter => {
                Pre::Budgeter(budgeter::BudgeterPre::new(instance_pre).map_err(wrong)?)
            }
        };
        let mut policy = CompiledPolicy {
            kind,
            sha256,
            info: PolicyInfo {
                name: String::new(),
                version: String::new(),
                contract: String::new(),
            },
            engine: engine.clone(),
            pre,
        };
        let mut store = engine.store(limits);
        store.set_epoch_deadline(ticks(limits.rank_deadline));
        let info: wasmtime::Result<PolicyInfo> = match &policy.pre {
            Pre::Ranker(p) => p
                .instantiate(&mut store)
                .and_then(|i| i.kestrel_policy_ranking().call_info(&mut store))
                .map(Into::into),
            Pre::Consolidator(p) => p
                .instantiate(&mut store)
                .and_then(|i| i.kestrel_policy_consolidation().call_info(&mut store))
                .map(Into::into),
            Pre::Budgeter(p) => p
                .instantiate(&mut store)
                .and_then(|i| i.kestrel_policy_budgeting().call_info(&mut store))
                .map(Into::into),
        };
        let info = info.map_err(|e| PolicyError::Canary {
            policy: format!("sha256:{}", policy.sha256),
            kind: classify(&e, &store, limits.rank_deadline).0,
            detail: format!("info(): {}", chain(&e)),
        })?;
        if info.contract != kestrel_policy_sdk::CONTRACT {
            return Err(PolicyError::ContractMismatch {
                reported: info.contract,
                expected: kestrel_policy_sdk::CONTRACT.into(),
            });
        }
        policy.info = info;
        Ok(policy)
    }

    /// Instantiates the component once in a fresh store and drops it (health check; benchmarks).
    pub fn instantiate_once(&self, limits: &Limits) -> Result<(), PolicyError> {
        let mut store = self.engine.store(limits);
        store.set_epoch_deadline(ticks(limits.rank_deadline));
        let made = match &self.pre {
            Pre::Ranker(p) => p.instantiate(&mut store).map(drop),
            Pre::Consolidator(p) => p.instantiate(&mut store).map(drop),
            Pre::Budgeter(p) => p.instantiate(&mut store).map(drop),
        };
        made.map_err(|e| PolicyError::WrongWorld {
            kind: self.kind,
            detail: chain(&e),
        })
    }

    /// "name@version (wasm sha256:0123456789ab)".
    pub fn label(&self) -> String {
        format!(
            "{}@{} (wasm sha256:{})",
            self.info.name,
            self.info.version,
            &self.sha256[..12]
        )
    }
}

/// Sorts a failed call into a fallback kind with a readable detail.
fn classify(
    e: &wasmtime::Error,
    store: &Store<HostState>,
    deadline: Duration,
) -> (FallbackKind, String) {
    if store.data().cap_hit.is_some()
        || e.chain()
            .any(|c| c.downcast_ref::<MemoryCapExceeded>().is_some())
    {
        let detail = e
            .chain()
            .find_map(|c| {
                c.downcast_ref::<MemoryCapExceeded>()
                    .map(ToString::to_string)
            })
            .unwrap_or_else(|| chain(e));
        return (FallbackKind::MemoryLimit, detail);
    }
    if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        return (
            FallbackKind::Timeout,
            format!("ran past its {} ms deadline", deadline.as_millis()),
        );
    }
    (FallbackKind::Trap, chain(e))
}

/// What every wasm-backed policy shares: the compiled policy, the live instance, failure bookkeeping.
struct Sandbox<B> {
    policy: Arc<CompiledPolicy>,
    limits: Limits,
    live: Option<(Store<HostState>, B)>,
    consecutive_failures: u32,
    degraded: bool,
    metrics: Arc<PolicyMetrics>,
    label: String,
}

type Failure = (FallbackKind, String);

impl<B> Sandbox<B> {
    fn new(policy: Arc<CompiledPolicy>, limits: Limits, metrics: Arc<PolicyMetrics>) -> Self {
        let label = policy.label();
        Sandbox {
            policy,
            limits,
            live: None,
            consecutive_failures: 0,
            degraded: false,
            metrics,
            label,
        }
    }

    /// Runs `call` on the live instance (instantiating it first, then `init`), within `deadline`.
    fn call<R>(
        &mut self,
        deadline: Duration,
        instantiate: impl FnOnce(&CompiledPolicy, &mut Store<HostState>) -> wasmtime::Result<B>,
        init: impl FnOnce(&B, &mut Store<HostState>) -> wasmtime::Result<()>,
        call: impl FnOnce(&B, &mut Store<HostState>) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, Failure> {
        if self.live.is_none() {
            let mut store = self.policy.engine.store(&self.limits);
            store.set_epoch_deadline(ticks(deadline));
            let made = instantiate(&self.policy, &mut store)
                .and_then(|b| init(&b, &mut store).map(|()| b));
            match made {
                Ok(b) => self.live = Some((store, b)),
                Err(e) => return Err(classify(&e, &store, deadline)),
            }
        }
        let (store, b) = self.live.as_mut().expect("instantiated above");
        store.set_epoch_deadline(ticks(deadline));
        match call(b, store) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(message)) => Err((FallbackKind::PolicyError, message)),
            Err(e) => Err(classify(&e, store, deadline)),
        }
    }

    fn degraded_fallback(&self) -> Fallback {
        Fallback {
            policy: self.label.clone(),
            kind: FallbackKind::Degraded,
            detail: format!(
                "degraded after {} consecutive failures; not called until replaced",
                self.consecutive_failures
            ),
        }
    }

    /// Records a failure: the instance is dropped (never reused), the policy maybe degraded.
    fn failed(&mut self, (kind, detail): Failure) -> Fallback {
        self.live = None;
        self.consecutive_failures += 1;
        self.metrics.fallback(kind);
        if self.consecutive_failures >= self.limits.degrade_after && !self.degraded {
            self.degraded = true;
            self.metrics.degraded();
            tracing::warn!(policy = %self.label, "policy degraded after {} consecutive failures", self.consecutive_failures);
        }
        tracing::warn!(policy = %self.label, ?kind, %detail, "policy failed; the default decided");
        Fallback {
            policy: self.label.clone(),
            kind,
            detail,
        }
    }

    /// Runs the policy, validates its answer, or falls back to `default`.
    fn decide<R>(
        &mut self,
        attempt: impl FnOnce(&mut Self) -> Result<R, Failure>,
        default: impl FnOnce() -> Verdict<R>,
    ) -> Verdict<R> {
        self.metrics.call();
        if self.degraded {
            self.metrics.fallback(FallbackKind::Degraded);
            let mut v = default();
            v.fallback = Some(self.degraded_fallback());
            return v;
        }
        match attempt(self) {
            Ok(value) => {
                self.consecutive_failures = 0;
                Verdict {
                    value,
                    decided_by: self.label.clone(),
                    fallback: None,
                }
            }
            Err(failure) => {
                let fallback = self.failed(failure);
                let mut v = default();
                v.fallback = Some(fallback);
                v
            }
        }
    }
}

/// Common introspection of wasm-backed policies.
pub trait WasmPolicy {
    fn compiled(&self) -> &Arc<CompiledPolicy>;
    fn is_degraded(&self) -> bool;
    /// Whether an instance is live (it is dropped after every failure).
    fn has_instance(&self) -> bool;
    fn metrics(&self) -> &Arc<PolicyMetrics>;
}

macro_rules! wasm_policy_common {
    ($t:ty) => {
        impl WasmPolicy for $t {
            fn compiled(&self) -> &Arc<CompiledPolicy> {
                &self.sandbox.policy
            }
            fn is_degraded(&self) -> bool {
                self.sandbox.degraded
            }
            fn has_instance(&self) -> bool {
                self.sandbox.live.is_some()
            }
            fn metrics(&self) -> &Arc<PolicyMetrics> {
                &self.sandbox.metrics
            }
        }
    };
}

/// A ranker component.
pub struct WasmRanker {
    sandbox: Sandbox<ranker::Ranker>,
    /// The current catalog (for the fallback, and re-sent after every instantiation).
    catalog: Option<rank::Catalog>,
}
wasm_policy_common!(WasmRanker);

impl WasmRanker {
    pub fn new(policy: Arc<CompiledPolicy>, limits: Limits, metrics: Arc<PolicyMetrics>) -> Self {
        assert_eq!(
            policy.kind,
            PolicyKind::Ranker,
            "a ranker needs a ranker component"
        );
        WasmRanker {
            sandbox: Sandbox::new(policy, limits, metrics),
            catalog: None,
        }
    }
}

fn instantiate_ranker(
    p: &CompiledPolicy,
    store: &mut Store<HostState>,
) -> wasmtime::Result<ranker::Ranker> {
    match &p.pre {
        Pre::Ranker(pre) => pre.instantiate(store),
        _ => unreachable!("checked in WasmRanker::new"),
    }
}

impl Ranker for WasmRanker {
    fn set_catalog(&mut self, catalog: &rank::Catalog) {
        if self.catalog.as_ref() == Some(catalog) {
            return;
        }
        self.catalog = Some(catalog.clone());
        // Sent lazily, right after the next instantiation.
        self.sandbox.live = None;
    }

    fn rank(&mut self, input: &rank::RankInput) -> Verdict<rank::Ranking> {
        let deadline = self.sandbox.limits.rank_deadline;
        let catalog = self.catalog.as_ref();
        let n = input.offerings.instance_type.len();
        self.sandbox.decide(
            |sb| {
                let answer = sb.call(
                    deadline,
                    instantiate_ranker,
                    |b, store| match catalog {
                        Some(c) => bindings::with_catalog(c, |c| {
                            b.kestrel_policy_ranking().call_set_catalog(store, c)
                        }),
                        None => Ok(()),
                    },
                    |b, store| {
                        bindings::with_rank_input(input, |i| {
                            b.kestrel_policy_ranking().call_rank(store, i)
                        })
                    },
                )?;
                let answer = bindings::ranking(answer);
                validate::ranking(&answer, n).map_err(|d| (FallbackKind::InvalidAnswer, d))?;
                Ok(answer)
            },
            || NativeRanker::answer(catalog, input),
        )
    }
}

/// A consolidator component.
pub struct WasmConsolidator {
    sandbox: Sandbox<consolidator::Consolidator>,
}
wasm_policy_common!(WasmConsolidator);

impl WasmConsolidator {
    pub fn new(policy: Arc<CompiledPolicy>, limits: Limits, metrics: Arc<PolicyMetrics>) -> Self {
        assert_eq!(
            policy.kind,
            PolicyKind::Consolidator,
            "a consolidator needs a consolidator component"
        );
        WasmConsolidator {
            sandbox: Sandbox::new(policy, limits, metrics),
        }
    }
}

impl Consolidator for WasmConsolidator {
    fn consolidate(&mut self, input: &consolidate::ConsolidateInput) -> Verdict<Vec<u32>> {
        let deadline = self.sandbox.limits.consolidate_deadline;
        self.sandbox.decide(
            |sb| {
                let answer = sb.call(
                    deadline,
                    |p, store| match &p.pre {
                        Pre::Consolidator(pre) => pre.instantiate(store),
                        _ => unreachable!("checked in WasmConsolidator::new"),
                    },
                    |_, _| Ok(()),
                    |b, store| {
                        b.kestrel_policy_consolidation()
                            .call_consolidate(store, &bindings::consolidate_input(input))
                    },
                )?;
                validate::moves(&answer, input).map_err(|d| (FallbackKind::InvalidAnswer, d))?;
                Ok(answer)
            },
            || NativeConsolidator::answer(input),
        )
    }
}

/// A budgeter component; its answers are clamped to the NodePool's own budgets (the native default's).
pub struct WasmBudgeter {
    sandbox: Sandbox<budgeter::Budgeter>,
}
wasm_policy_common!(WasmBudgeter);

impl WasmBudgeter {
    pub fn new(policy: Arc<CompiledPolicy>, limits: Limits, metrics: Arc<PolicyMetrics>) -> Self {
        assert_eq!(
            policy.kind,
            PolicyKind::Budgeter,
            "a budgeter needs a budgeter component"
        );
        WasmBudgeter {
            sandbox: Sandbox::new(policy, limits, metrics),
        }
    }
}

impl Budgeter for WasmBudgeter {
    fn allowed(&mut self, input: &budget::BudgetInput) -> Verdict<Vec<budget::ReasonCount>> {
        let deadline = self.sandbox.limits.budget_deadline;
        let ceiling = NativeBudgeter::answer(input);
        let metrics = self.sandbox.metrics.clone();
        self.sandbox.decide(
            |sb| {
                let answer = sb.call(
                    deadline,
                    |p, store| match &p.pre {
                        Pre::Budgeter(pre) => pre.instantiate(store),
                        _ => unreachable!("checked in WasmBudgeter::new"),
                    },
                    |_, _| Ok(()),
                    |b, store| {
                        b.kestrel_policy_budgeting()
                            .call_allowed(store, &bindings::budget_input(input))
                    },
                )?;
                let (answer, clamped) =
                    validate::budget(&bindings::reason_counts(answer), &ceiling.value)
                        .map_err(|d| (FallbackKind::InvalidAnswer, d))?;
                if clamped {
                    metrics.clamped();
                }
                Ok(answer)
            },
            || ceiling.clone(),
        )
    }
}
