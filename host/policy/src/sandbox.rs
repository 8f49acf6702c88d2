//! Wasm-backed policies: one long-lived instance per policy object, limits on every call, validation of
//! every answer, and the native default answering whenever the module fails.
//!
//! A failed call (trap, timeout, memory cap, `err`, invalid answer) drops the instance — a trapped
//! instance is never called again — and the next call instantiates afresh (re-sending the catalog).
//! After `Limits::degrade_after` consecutive failures the policy is degraded: the default answers until
//! the policy is replaced.
use super::bindings::{PolicyInfo, v0_1 as v1, v0_2 as v2};
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

/// Which contract a component was built against (the host speaks both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Contract {
    /// `kestrel:policy@0.1.0`: no settings, no reasons.
    #[serde(rename = "kestrel:policy@0.1.0")]
    V0_1,
    /// `kestrel:policy@0.2.0`: settings (`validate-settings`) and reasons.
    #[serde(rename = "kestrel:policy@0.2.0")]
    V0_2,
}

impl Contract {
    pub fn as_str(self) -> &'static str {
        match self {
            Contract::V0_1 => kestrel_policy_sdk::CONTRACT_0_1_0,
            Contract::V0_2 => kestrel_policy_sdk::CONTRACT,
        }
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The settings text a policy gets when its NodePool gives none.
pub const NO_SETTINGS: &str = "null";

enum Pre {
    Ranker(v2::ranker::RankerPre<HostState>),
    Consolidator(v2::consolidator::ConsolidatorPre<HostState>),
    Budgeter(v2::budgeter::BudgeterPre<HostState>),
    Ranker01(v1::ranker::RankerPre<HostState>),
    Consolidator01(v1::consolidator::ConsolidatorPre<HostState>),
    Budgeter01(v1::budgeter::BudgeterPre<HostState>),
}

/// A live ranker instance, of either contract.
enum RankerInst {
    V2(v2::ranker::Ranker),
    V1(v1::ranker::Ranker),
}
enum ConsolidatorInst {
    V2(v2::consolidator::Consolidator),
    V1(v1::consolidator::Consolidator),
}
enum BudgeterInst {
    V2(v2::budgeter::Budgeter),
    V1(v1::budgeter::Budgeter),
}

/// A compiled, linked policy component with the settings it was validated with, ready to instantiate
/// (shared by every instance of it).
pub struct CompiledPolicy {
    pub kind: PolicyKind,
    pub sha256: String,
    pub info: PolicyInfo,
    /// The contract the component implements (its exports), checked against what `info()` reports.
    pub contract: Contract,
    /// The settings (JSON text, [`NO_SETTINGS`] when none) the policy accepted at load time; handed to
    /// every new instance.
    pub settings: String,
    engine: PolicyEngine,
    pre: Pre,
}

impl std::fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPolicy")
            .field("kind", &self.kind)
            .field("sha256", &self.sha256)
            .field("info", &self.info)
            .field("contract", &self.contract)
            .field("settings", &self.settings)
            .finish()
    }
}

/// Links the component as the `kind` world of the current contract, else of 0.1.0.
fn link(
    engine: &PolicyEngine,
    kind: PolicyKind,
    component: &wasmtime::component::Component,
) -> Result<(Pre, Contract), PolicyError> {
    let wrong = |e: wasmtime::Error| PolicyError::WrongWorld {
        kind,
        detail: chain(&e),
    };
    let instance_pre = engine.linker().instantiate_pre(component).map_err(wrong)?;
    let current = match kind {
        PolicyKind::Ranker => v2::ranker::RankerPre::new(instance_pre.clone()).map(Pre::Ranker),
        PolicyKind::Consolidator => {
            v2::consolidator::ConsolidatorPre::new(instance_pre.clone()).map(Pre::Consolidator)
        }
        PolicyKind::Budgeter => {
            v2::budgeter::BudgeterPre::new(instance_pre.clone()).map(Pre::Budgeter)
        }
    };
    let current_error = match current {
        Ok(pre) => return Ok((pre, Contract::V0_2)),
        Err(e) => e,
    };
    let old = match kind {
        PolicyKind::Ranker => v1::ranker::RankerPre::new(instance_pre).map(Pre::Ranker01),
        PolicyKind::Consolidator => {
            v1::consolidator::ConsolidatorPre::new(instance_pre).map(Pre::Consolidator01)
        }
        PolicyKind::Budgeter => v1::budgeter::BudgeterPre::new(instance_pre).map(Pre::Budgeter01),
    };
    // Neither: the current contract's error is the one worth reading.
    old.map(|pre| (pre, Contract::V0_1))
        .map_err(|_| wrong(current_error))
}

impl CompiledPolicy {
    /// Compiles (cached by sha256) and links `bytes` as a policy of `kind`, reads its `info()`; no
    /// settings.
    pub fn new(
        engine: &PolicyEngine,
        kind: PolicyKind,
        bytes: &[u8],
        limits: &Limits,
    ) -> Result<Self, PolicyError> {
        Self::with_settings(engine, kind, bytes, NO_SETTINGS, limits)
    }

    /// [`CompiledPolicy::new`] with settings (JSON text): the policy's `validate-settings` is called on
    /// a fresh instance and its `err` refuses the policy with the policy's own message. A 0.1.0
    /// component takes no settings.
    pub fn with_settings(
        engine: &PolicyEngine,
        kind: PolicyKind,
        bytes: &[u8],
        settings: &str,
        limits: &Limits,
    ) -> Result<Self, PolicyError> {
        let (sha256, component) = engine.compile(bytes)?;
        let (pre, contract) = link(engine, kind, &component)?;
        let mut policy = CompiledPolicy {
            kind,
            sha256,
            info: PolicyInfo {
                name: String::new(),
                version: String::new(),
                contract: String::new(),
            },
            contract,
            settings: settings.to_string(),
            engine: engine.clone(),
            pre,
        };
        let mut store = engine.store(limits);
        store.set_epoch_deadline(ticks(limits.rank_deadline));
        // `info()` and `validate-settings` on one fresh instance.
        let answer: wasmtime::Result<(PolicyInfo, Result<(), String>)> = match &policy.pre {
            Pre::Ranker(p) => p.instantiate(&mut store).and_then(|i| {
                let api = i.kestrel_policy_ranking();
                let info = api.call_info(&mut store)?.into();
                Ok((info, api.call_validate_settings(&mut store, settings)?))
            }),
            Pre::Consolidator(p) => p.instantiate(&mut store).and_then(|i| {
                let api = i.kestrel_policy_consolidation();
                let info = api.call_info(&mut store)?.into();
                Ok((info, api.call_validate_settings(&mut store, settings)?))
            }),
            Pre::Budgeter(p) => p.instantiate(&mut store).and_then(|i| {
                let api = i.kestrel_policy_budgeting();
                let info = api.call_info(&mut store)?.into();
                Ok((info, api.call_validate_settings(&mut store, settings)?))
            }),
            Pre::Ranker01(p) => p
                .instantiate(&mut store)
                .and_then(|i| i.kestrel_policy_ranking().call_info(&mut store))
                .map(|i| (i.into(), Ok(()))),
            Pre::Consolidator01(p) => p
                .instantiate(&mut store)
                .and_then(|i| i.kestrel_policy_consolidation().call_info(&mut store))
                .map(|i| (i.into(), Ok(()))),
            Pre::Budgeter01(p) => p
                .instantiate(&mut store)
                .and_then(|i| i.kestrel_policy_budgeting().call_info(&mut store))
                .map(|i| (i.into(), Ok(()))),
        };
        let (info, accepted) = answer.map_err(|e| PolicyError::Canary {
            policy: format!("sha256:{}", policy.sha256),
            kind: classify(&e, &store, limits.rank_deadline).0,
            detail: format!("info() / validate-settings: {}", chain(&e)),
        })?;
        if info.contract != contract.as_str() {
            return Err(PolicyError::ContractMismatch {
                reported: info.contract,
                expected: contract.as_str().into(),
            });
        }
        policy.info = info;
        if contract == Contract::V0_1 && settings.trim() != NO_SETTINGS {
            return Err(PolicyError::Settings {
                policy: policy.label(),
                message: format!(
                    "built against {contract}, which takes no settings; rebuild it against {} to give it settings",
                    Contract::V0_2
                ),
            });
        }
        accepted.map_err(|message| PolicyError::Settings {
            policy: policy.label(),
            message,
        })?;
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
            Pre::Ranker01(p) => p.instantiate(&mut store).map(drop),
            Pre::Consolidator01(p) => p.instantiate(&mut store).map(drop),
            Pre::Budgeter01(p) => p.instantiate(&mut store).map(drop),
        };
        made.map_err(|e| PolicyError::WrongWorld {
            kind: self.kind,
            detail: chain(&e),
        })
    }

    /// "name@version (wasm sha256:0123456789ab, kestrel:policy@0.2.0)": what it says it is, which bytes,
    /// and the contract it was built against.
    pub fn label(&self) -> String {
        format!(
            "{}@{} (wasm sha256:{}, {})",
            self.info.name,
            self.info.version,
            &self.sha256[..12],
            self.contract
        )
    }
}

/// `validate-settings` again on a new instance: the settings were accepted at load time, so a refusal
/// now means the policy is not the pure function the contract asks for (treated as a trap).
fn resend_settings(accepted: wasmtime::Result<Result<(), String>>) -> wasmtime::Result<()> {
    accepted?.map_err(|m| {
        wasmtime::Error::msg(format!(
            "validate-settings refused settings it accepted at load time: {m}"
        ))
    })
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

    /// Runs the policy (its answer and reasons, validated), or falls back to `default`.
    fn decide<R>(
        &mut self,
        attempt: impl FnOnce(&mut Self) -> Result<(R, Vec<String>), Failure>,
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
            Ok((value, reasons)) => {
                self.consecutive_failures = 0;
                Verdict {
                    value,
                    decided_by: self.label.clone(),
                    fallback: None,
                    reasons,
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
    sandbox: Sandbox<RankerInst>,
    /// The current catalog (for the fallback, and re-sent after every instantiation).
    catalog: Option<std::sync::Arc<rank::Catalog>>,
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
) -> wasmtime::Result<RankerInst> {
    match &p.pre {
        Pre::Ranker(pre) => {
            let i = pre.instantiate(&mut *store)?;
            resend_settings(
                i.kestrel_policy_ranking()
                    .call_validate_settings(&mut *store, &p.settings),
            )?;
            Ok(RankerInst::V2(i))
        }
        Pre::Ranker01(pre) => pre.instantiate(store).map(RankerInst::V1),
        _ => unreachable!("checked in WasmRanker::new"),
    }
}

impl Ranker for WasmRanker {
    fn set_catalog(&mut self, catalog: &std::sync::Arc<rank::Catalog>) {
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
        let mut verdict = self.sandbox.decide(
            |sb| {
                let (answer, reasons) = sb.call(
                    deadline,
                    instantiate_ranker,
                    |b, store| match (catalog, b) {
                        (None, _) => Ok(()),
                        (Some(c), RankerInst::V2(b)) => v2::with_catalog(c, |c| {
                            b.kestrel_policy_ranking().call_set_catalog(store, c)
                        }),
                        (Some(c), RankerInst::V1(b)) => v1::with_catalog(c, |c| {
                            b.kestrel_policy_ranking().call_set_catalog(store, c)
                        }),
                    },
                    |b, store| match b {
                        RankerInst::V2(b) => v2::with_rank_input(input, |i| {
                            b.kestrel_policy_ranking().call_rank(store, i)
                        })
                        .map(|r| r.map(v2::ranking)),
                        RankerInst::V1(b) => v1::with_rank_input(input, |i| {
                            b.kestrel_policy_ranking().call_rank(store, i)
                        })
                        .map(|r| r.map(|r| (v1::ranking(r), vec![]))),
                    },
                )?;
                validate::ranking(&answer, n).map_err(|d| (FallbackKind::InvalidAnswer, d))?;
                validate::ranking_reasons(&reasons, answer.order.len())
                    .map_err(|d| (FallbackKind::InvalidAnswer, d))?;
                Ok((answer, reasons))
            },
            || NativeRanker::answer(catalog.map(|c| &**c), input),
        );
        // The planner reports the ranking's `decided_by`: the reason for the first offering goes there.
        if let Some(why) = verdict.reason(0) {
            verdict.decided_by = format!("{}: {why}", verdict.decided_by);
        }
        verdict
    }
}

/// A consolidator component.
pub struct WasmConsolidator {
    sandbox: Sandbox<ConsolidatorInst>,
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
                let (ids, reasons) = sb.call(
                    deadline,
                    |p, store| match &p.pre {
                        Pre::Consolidator(pre) => {
                            let i = pre.instantiate(&mut *store)?;
                            resend_settings(
                                i.kestrel_policy_consolidation()
                                    .call_validate_settings(&mut *store, &p.settings),
                            )?;
                            Ok(ConsolidatorInst::V2(i))
                        }
                        Pre::Consolidator01(pre) => {
                            pre.instantiate(store).map(ConsolidatorInst::V1)
                        }
                        _ => unreachable!("checked in WasmConsolidator::new"),
                    },
                    |_, _| Ok(()),
                    |b, store| match b {
                        ConsolidatorInst::V2(b) => b
                            .kestrel_policy_consolidation()
                            .call_consolidate(store, &v2::consolidate_input(input))
                            .map(|r| r.map(|c| (c.ids, c.reasons))),
                        ConsolidatorInst::V1(b) => b
                            .kestrel_policy_consolidation()
                            .call_consolidate(store, &v1::consolidate_input(input))
                            .map(|r| r.map(|ids| (ids, vec![]))),
                    },
                )?;
                validate::moves(&ids, input).map_err(|d| (FallbackKind::InvalidAnswer, d))?;
                validate::reasons(&reasons, ids.len())
                    .map_err(|d| (FallbackKind::InvalidAnswer, d))?;
                Ok((ids, reasons))
            },
            || NativeConsolidator::answer(input),
        )
    }
}

/// A budgeter component; its answers are clamped to the NodePool's own budgets (the native default's).
pub struct WasmBudgeter {
    sandbox: Sandbox<BudgeterInst>,
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
                let (counts, reasons) = sb.call(
                    deadline,
                    |p, store| match &p.pre {
                        Pre::Budgeter(pre) => {
                            let i = pre.instantiate(&mut *store)?;
                            resend_settings(
                                i.kestrel_policy_budgeting()
                                    .call_validate_settings(&mut *store, &p.settings),
                            )?;
                            Ok(BudgeterInst::V2(i))
                        }
                        Pre::Budgeter01(pre) => pre.instantiate(store).map(BudgeterInst::V1),
                        _ => unreachable!("checked in WasmBudgeter::new"),
                    },
                    |_, _| Ok(()),
                    |b, store| match b {
                        BudgeterInst::V2(b) => b
                            .kestrel_policy_budgeting()
                            .call_allowed(store, &v2::budget_input(input))
                            .map(|r| r.map(|a| (v2::reason_counts(a.counts), a.reasons))),
                        BudgeterInst::V1(b) => b
                            .kestrel_policy_budgeting()
                            .call_allowed(store, &v1::budget_input(input))
                            .map(|r| r.map(|c| (v1::reason_counts(c), vec![]))),
                    },
                )?;
                validate::reasons(&reasons, counts.len())
                    .map_err(|d| (FallbackKind::InvalidAnswer, d))?;
                let (answer, clamped) = validate::budget(&counts, &ceiling.value)
                    .map_err(|d| (FallbackKind::InvalidAnswer, d))?;
                if clamped {
                    metrics.clamped();
                }
                // The answer is normalised to the ceiling's reasons: the reasons follow their entries.
                let reasons = if reasons.is_empty() {
                    reasons
                } else {
                    answer
                        .iter()
                        .map(|a| {
                            counts
                                .iter()
                                .position(|c| c.reason == a.reason)
                                .map_or_else(String::new, |k| reasons[k].clone())
                        })
                        .collect()
                };
                Ok((answer, reasons))
            },
            || ceiling.clone(),
        )
    }
}
