//! Which policies each NodePool uses, with atomic hot swap.
//!
//! A NodePool names its policies with annotations (Kestrel never adds fields to Karpenter's schema):
//!
//! | annotation | value |
//! |---|---|
//! | `kestrel.dev/ranker`, `kestrel.dev/consolidator`, `kestrel.dev/budgeter` | `default` (the embedded wasm default), `native` (the same logic compiled in), or `configmap:NAME[/KEY]` (wasm bytes in the ConfigMap's `binaryData`, key `policy.wasm` by default) |
//! | `kestrel.dev/ranker-sha256`, ... | optional sha256 pin of the module bytes |
//! | `kestrel.dev/ranker-settings`, ... | optional settings for the policy, JSON or YAML (see [`crate::settings`]) |
//!
//! Installing a policy: bytes → sha256 pin check → compile (in-process, cached by digest) →
//! `validate-settings` with the NodePool's settings → canary calls on the built-in fixtures → swap under
//! the slot's lock. A policy and its settings are installed together: bad settings are refused with the
//! policy's own message like any other failure. On any failure a typed [`PolicyError`] comes
//! back and the previous policy keeps serving.
use super::contract::{budget, consolidate, rank};
use super::defaults::{NativeBudgeter, NativeConsolidator, NativeRanker, embedded_wasm};
use super::engine::{Limits, PolicyEngine, sha256_hex};
use super::error::PolicyError;
use super::metrics::{MetricsSnapshot, PolicyMetrics};
use super::sandbox::{CompiledPolicy, NO_SETTINGS, WasmBudgeter, WasmConsolidator, WasmRanker};
use super::{Budgeter, Consolidator, PolicyKind, Ranker, Verdict, fixtures};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

pub const RANKER_ANNOTATION: &str = "kestrel.dev/ranker";
pub const CONSOLIDATOR_ANNOTATION: &str = "kestrel.dev/consolidator";
pub const BUDGETER_ANNOTATION: &str = "kestrel.dev/budgeter";
/// Suffix of the pin annotations: `kestrel.dev/ranker-sha256`, ...
pub const SHA256_SUFFIX: &str = "-sha256";
/// The ConfigMap `binaryData` key used when a reference names none.
pub const DEFAULT_CONFIGMAP_KEY: &str = "policy.wasm";

/// The annotation naming the policy of `kind`.
pub fn annotation(kind: PolicyKind) -> &'static str {
    match kind {
        PolicyKind::Ranker => RANKER_ANNOTATION,
        PolicyKind::Consolidator => CONSOLIDATOR_ANNOTATION,
        PolicyKind::Budgeter => BUDGETER_ANNOTATION,
    }
}

/// A NodePool's reference to one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyRef {
    /// The embedded wasm default.
    Default,
    /// The default, compiled in (no sandbox).
    Native,
    /// Wasm bytes in a ConfigMap of the controller's namespace.
    ConfigMap {
        name: String,
        key: String,
        sha256: Option<String>,
    },
}

/// A NodePool's three policy references and their settings, parsed from its annotations (absent =
/// `Default`, no settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRefs {
    pub ranker: PolicyRef,
    pub consolidator: PolicyRef,
    pub budgeter: PolicyRef,
    /// The settings of each kind (indexed by `PolicyKind as usize`), as the JSON text the policy
    /// receives (`null` when none).
    pub settings: [String; 3],
}

impl PolicyRefs {
    pub fn get(&self, kind: PolicyKind) -> &PolicyRef {
        match kind {
            PolicyKind::Ranker => &self.ranker,
            PolicyKind::Consolidator => &self.consolidator,
            PolicyKind::Budgeter => &self.budgeter,
        }
    }

    /// The settings (JSON text) of the policy of `kind`.
    pub fn settings(&self, kind: PolicyKind) -> &str {
        &self.settings[kind as usize]
    }
}

/// Parses the policy annotations of a NodePool.
pub fn policy_refs(annotations: &BTreeMap<String, String>) -> Result<PolicyRefs, PolicyError> {
    let one = |kind: PolicyKind| -> Result<PolicyRef, PolicyError> {
        let key = annotation(kind);
        let pin_key = format!("{key}{SHA256_SUFFIX}");
        let pin = annotations
            .get(&pin_key)
            .map(|p| normalize_pin(p))
            .transpose()?;
        let bad = |value: &str, detail: &str| PolicyError::Annotation {
            key: key.into(),
            value: value.into(),
            detail: detail.into(),
        };
        let r = match annotations.get(key).map(|v| v.trim()) {
            None | Some("default") => PolicyRef::Default,
            Some("native") => PolicyRef::Native,
            Some(v) => {
                let Some(rest) = v.strip_prefix("configmap:") else {
                    return Err(bad(
                        v,
                        "expected `default`, `native` or `configmap:NAME[/KEY]`",
                    ));
                };
                let (name, key) = rest
                    .split_once('/')
                    .unwrap_or((rest, DEFAULT_CONFIGMAP_KEY));
                if name.is_empty() || key.is_empty() {
                    return Err(bad(v, "empty ConfigMap name or key"));
                }
                return Ok(PolicyRef::ConfigMap {
                    name: name.into(),
                    key: key.into(),
                    sha256: pin,
                });
            }
        };
        if pin.is_some() {
            return Err(PolicyError::Annotation {
                key: pin_key,
                value: annotations[&format!("{key}{SHA256_SUFFIX}")].clone(),
                detail: "a pin only applies to a configmap: policy".into(),
            });
        }
        Ok(r)
    };
    Ok(PolicyRefs {
        ranker: one(PolicyKind::Ranker)?,
        consolidator: one(PolicyKind::Consolidator)?,
        budgeter: one(PolicyKind::Budgeter)?,
        settings: crate::settings::from_annotations(annotations)?,
    })
}

/// `sha256:ABC…` or `abc…` → 64 lowercase hex digits.
pub fn normalize_pin(pin: &str) -> Result<String, PolicyError> {
    let hexits = pin
        .trim()
        .strip_prefix("sha256:")
        .unwrap_or(pin.trim())
        .to_ascii_lowercase();
    if hexits.len() != 64 || !hexits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PolicyError::InvalidPin { pin: pin.into() });
    }
    Ok(hexits)
}

/// Where a policy's implementation comes from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// The default compiled in (no sandbox).
    Native,
    /// The embedded wasm default.
    EmbeddedDefault,
    /// Wasm component bytes, with an optional sha256 pin.
    Wasm {
        bytes: Vec<u8>,
        sha256: Option<String>,
    },
}

/// Which implementation a NodePool without policy annotations gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultBackend {
    /// The embedded wasm defaults (production: every decision goes through the sandbox).
    Wasm,
    /// The native defaults (same logic, no sandbox; for fast simulations and core tests).
    Native,
}

/// A policy compiled and canaried, ready to be swapped in.
pub enum PreparedPolicy {
    Native(PolicyKind),
    Wasm(Arc<CompiledPolicy>),
}

impl PreparedPolicy {
    pub fn label(&self) -> String {
        match self {
            PreparedPolicy::Native(PolicyKind::Ranker) => NativeRanker::label(),
            PreparedPolicy::Native(PolicyKind::Consolidator) => NativeConsolidator::label(),
            PreparedPolicy::Native(PolicyKind::Budgeter) => NativeBudgeter::label(),
            PreparedPolicy::Wasm(p) => p.label(),
        }
    }
}

/// Compiles and canaries `bytes` as a policy of `kind` (off the hot path; nothing is swapped).
pub fn prepare_wasm(
    engine: &PolicyEngine,
    kind: PolicyKind,
    bytes: &[u8],
    pin: Option<&str>,
    limits: &Limits,
) -> Result<Arc<CompiledPolicy>, PolicyError> {
    prepare_wasm_with_settings(engine, kind, bytes, pin, NO_SETTINGS, limits)
}

/// [`prepare_wasm`] with settings (JSON text): the policy validates them before the canary runs.
pub fn prepare_wasm_with_settings(
    engine: &PolicyEngine,
    kind: PolicyKind,
    bytes: &[u8],
    pin: Option<&str>,
    settings: &str,
    limits: &Limits,
) -> Result<Arc<CompiledPolicy>, PolicyError> {
    if let Some(pin) = pin {
        let expected = normalize_pin(pin)?;
        let actual = sha256_hex(bytes);
        if actual != expected {
            return Err(PolicyError::Sha256Mismatch { expected, actual });
        }
    }
    let compiled = Arc::new(CompiledPolicy::with_settings(
        engine, kind, bytes, settings, limits,
    )?);
    canary(&compiled, limits)?;
    Ok(compiled)
}

/// Calls a fresh instance on the built-in fixtures; any fallback refuses the policy.
fn canary(policy: &Arc<CompiledPolicy>, limits: &Limits) -> Result<(), PolicyError> {
    let metrics = Arc::new(PolicyMetrics::default());
    let fallback = match policy.kind {
        PolicyKind::Ranker => {
            let mut r = WasmRanker::new(policy.clone(), *limits, metrics);
            r.set_catalog(&Arc::new(fixtures::canary_catalog()));
            r.rank(&fixtures::canary_rank_input()).fallback
        }
        PolicyKind::Consolidator => {
            WasmConsolidator::new(policy.clone(), *limits, metrics)
                .consolidate(&fixtures::canary_consolidate_input())
                .fallback
        }
        PolicyKind::Budgeter => {
            WasmBudgeter::new(policy.clone(), *limits, metrics)
                .allowed(&fixtures::canary_budget_input())
                .fallback
        }
    };
    match fallback {
        None => Ok(()),
        Some(f) => Err(PolicyError::Canary {
            policy: policy.label(),
            kind: f.kind,
            detail: f.detail,
        }),
    }
}

/// Loads a `.wasm` file as a ranker (for `kestrel policy test`), on the shared engine with default
/// limits, with `settings` (JSON text, `null` for none), after the canary.
pub fn ranker_from_file(path: &Path, settings: &str) -> Result<WasmRanker, PolicyError> {
    let (p, limits) = load_file(PolicyKind::Ranker, path, settings)?;
    Ok(WasmRanker::new(p, limits, Arc::default()))
}

/// Loads a `.wasm` file as a consolidator (see [`ranker_from_file`]).
pub fn consolidator_from_file(
    path: &Path,
    settings: &str,
) -> Result<WasmConsolidator, PolicyError> {
    let (p, limits) = load_file(PolicyKind::Consolidator, path, settings)?;
    Ok(WasmConsolidator::new(p, limits, Arc::default()))
}

/// Loads a `.wasm` file as a budgeter (see [`ranker_from_file`]).
pub fn budgeter_from_file(path: &Path, settings: &str) -> Result<WasmBudgeter, PolicyError> {
    let (p, limits) = load_file(PolicyKind::Budgeter, path, settings)?;
    Ok(WasmBudgeter::new(p, limits, Arc::default()))
}

fn load_file(
    kind: PolicyKind,
    path: &Path,
    settings: &str,
) -> Result<(Arc<CompiledPolicy>, Limits), PolicyError> {
    let bytes = std::fs::read(path).map_err(|source| PolicyError::Io {
        path: path.into(),
        source,
    })?;
    let limits = Limits::default();
    Ok((
        prepare_wasm_with_settings(
            PolicyEngine::shared(),
            kind,
            &bytes,
            None,
            settings,
            &limits,
        )?,
        limits,
    ))
}

/// One NodePool's policy of one kind: the current implementation behind a lock (the swap point).
struct Slot<P: ?Sized> {
    current: Box<P>,
    label: String,
    /// The ranker's catalog, re-sent to a swapped-in ranker.
    catalog: Option<Arc<rank::Catalog>>,
}

struct PoolSlots {
    ranker: Arc<Mutex<Slot<dyn Ranker>>>,
    consolidator: Arc<Mutex<Slot<dyn Consolidator>>>,
    budgeter: Arc<Mutex<Slot<dyn Budgeter>>>,
    metrics: [Arc<PolicyMetrics>; 3],
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic inside a policy call cannot leave a slot half-updated: swaps replace whole values.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// NodePool → its three policies.
pub struct PolicyRegistry {
    engine: PolicyEngine,
    limits: Limits,
    default_backend: DefaultBackend,
    pools: Mutex<HashMap<String, Arc<PoolSlots>>>,
}

impl PolicyRegistry {
    /// A registry on the shared engine, default limits, embedded wasm defaults.
    pub fn new() -> Self {
        Self::with(
            PolicyEngine::shared().clone(),
            Limits::default(),
            DefaultBackend::Wasm,
        )
    }

    /// A registry whose unconfigured NodePools use the native defaults.
    pub fn native() -> Self {
        Self::with(
            PolicyEngine::shared().clone(),
            Limits::default(),
            DefaultBackend::Native,
        )
    }

    pub fn with(engine: PolicyEngine, limits: Limits, default_backend: DefaultBackend) -> Self {
        PolicyRegistry {
            engine,
            limits,
            default_backend,
            pools: Mutex::default(),
        }
    }

    pub fn engine(&self) -> &PolicyEngine {
        &self.engine
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn pool(&self, node_pool: &str) -> Arc<PoolSlots> {
        if let Some(p) = lock(&self.pools).get(node_pool) {
            return p.clone();
        }
        // Prepared without holding the registry lock (compiling the defaults the first time takes tens of
        // milliseconds); if another thread created the pool meanwhile, its slots win.
        let metrics: [Arc<PolicyMetrics>; 3] = Default::default();
        let default_source = self.default_source();
        let prepared = |kind| {
            // The embedded defaults are built from the same sources as the native ones; if they ever
            // failed to load, the native default serves.
            self.prepare(kind, &default_source).unwrap_or_else(|e| {
                tracing::error!(%kind, error = %e, "embedded default policy failed to load; using the native default");
                PreparedPolicy::Native(kind)
            })
        };
        let (r, c, b) = (
            prepared(PolicyKind::Ranker),
            prepared(PolicyKind::Consolidator),
            prepared(PolicyKind::Budgeter),
        );
        let slots = Arc::new(PoolSlots {
            ranker: Arc::new(Mutex::new(Slot {
                label: r.label(),
                current: self.ranker_of(r, &metrics[0]),
                catalog: None,
            })),
            consolidator: Arc::new(Mutex::new(Slot {
                label: c.label(),
                current: self.consolidator_of(c, &metrics[1]),
                catalog: None,
            })),
            budgeter: Arc::new(Mutex::new(Slot {
                label: b.label(),
                current: self.budgeter_of(b, &metrics[2]),
                catalog: None,
            })),
            metrics,
        });
        lock(&self.pools)
            .entry(node_pool.to_string())
            .or_insert(slots)
            .clone()
    }

    fn ranker_of(&self, p: PreparedPolicy, metrics: &Arc<PolicyMetrics>) -> Box<dyn Ranker> {
        match p {
            PreparedPolicy::Native(_) => Box::new(NativeRanker::new()),
            PreparedPolicy::Wasm(p) => Box::new(WasmRanker::new(p, self.limits, metrics.clone())),
        }
    }
    fn consolidator_of(
        &self,
        p: PreparedPolicy,
        metrics: &Arc<PolicyMetrics>,
    ) -> Box<dyn Consolidator> {
        match p {
            PreparedPolicy::Native(_) => Box::new(NativeConsolidator),
            PreparedPolicy::Wasm(p) => {
                Box::new(WasmConsolidator::new(p, self.limits, metrics.clone()))
            }
        }
    }
    fn budgeter_of(&self, p: PreparedPolicy, metrics: &Arc<PolicyMetrics>) -> Box<dyn Budgeter> {
        match p {
            PreparedPolicy::Native(_) => Box::new(NativeBudgeter),
            PreparedPolicy::Wasm(p) => Box::new(WasmBudgeter::new(p, self.limits, metrics.clone())),
        }
    }

    /// Compiles and canaries a source without touching any NodePool.
    pub fn prepare(
        &self,
        kind: PolicyKind,
        source: &PolicySource,
    ) -> Result<PreparedPolicy, PolicyError> {
        self.prepare_with_settings(kind, source, NO_SETTINGS)
    }

    /// [`PolicyRegistry::prepare`] with settings (JSON text); the native defaults take none, like their
    /// wasm builds.
    pub fn prepare_with_settings(
        &self,
        kind: PolicyKind,
        source: &PolicySource,
        settings: &str,
    ) -> Result<PreparedPolicy, PolicyError> {
        match source {
            PolicySource::Native => {
                let (label, accepted) = match kind {
                    PolicyKind::Ranker => (
                        NativeRanker::label(),
                        kestrel_default_ranker::validate_settings(settings),
                    ),
                    PolicyKind::Consolidator => (
                        NativeConsolidator::label(),
                        kestrel_default_consolidator::validate_settings(settings),
                    ),
                    PolicyKind::Budgeter => (
                        NativeBudgeter::label(),
                        kestrel_default_budgeter::validate_settings(settings),
                    ),
                };
                accepted.map_err(|message| PolicyError::Settings {
                    policy: label,
                    message,
                })?;
                Ok(PreparedPolicy::Native(kind))
            }
            PolicySource::EmbeddedDefault => Ok(PreparedPolicy::Wasm(prepare_wasm_with_settings(
                &self.engine,
                kind,
                embedded_wasm(kind),
                None,
                settings,
                &self.limits,
            )?)),
            PolicySource::Wasm { bytes, sha256 } => {
                Ok(PreparedPolicy::Wasm(prepare_wasm_with_settings(
                    &self.engine,
                    kind,
                    bytes,
                    sha256.as_deref(),
                    settings,
                    &self.limits,
                )?))
            }
        }
    }

    /// Replaces a NodePool's policy of `kind` (see the module docs), without settings. Returns the new
    /// policy's label; on error the previous policy keeps serving.
    pub fn install(
        &self,
        node_pool: &str,
        kind: PolicyKind,
        source: PolicySource,
    ) -> Result<String, PolicyError> {
        self.install_with_settings(node_pool, kind, source, NO_SETTINGS)
    }

    /// Replaces a NodePool's policy of `kind` and its settings (JSON text, see [`crate::settings`]):
    /// the swap path for a new policy, new settings, or both. Settings the policy refuses
    /// ([`PolicyError::Settings`], with the policy's message) leave the previous policy and settings
    /// serving.
    pub fn install_with_settings(
        &self,
        node_pool: &str,
        kind: PolicyKind,
        source: PolicySource,
        settings: &str,
    ) -> Result<String, PolicyError> {
        let prepared = match self.prepare_with_settings(kind, &source, settings) {
            Ok(p) => p,
            Err(e) => {
                self.pool(node_pool).metrics[kind as usize].swapped(false);
                return Err(e);
            }
        };
        Ok(self.install_prepared(node_pool, kind, prepared))
    }

    /// Swaps in a policy already compiled and canaried by [`Self::prepare`] (so a caller can prepare
    /// off its decision thread and decide at swap time whether the result is still wanted). Returns
    /// the new policy's label.
    pub fn install_prepared(
        &self,
        node_pool: &str,
        kind: PolicyKind,
        prepared: PreparedPolicy,
    ) -> String {
        let pool = self.pool(node_pool);
        let metrics = &pool.metrics[kind as usize];
        let label = prepared.label();
        match kind {
            PolicyKind::Ranker => {
                let mut next = self.ranker_of(prepared, metrics);
                let mut slot = lock(&pool.ranker);
                if let Some(c) = &slot.catalog {
                    next.set_catalog(c);
                }
                slot.current = next;
                slot.label = label.clone();
            }
            PolicyKind::Consolidator => {
                let next = self.consolidator_of(prepared, metrics);
                let mut slot = lock(&pool.consolidator);
                slot.current = next;
                slot.label = label.clone();
            }
            PolicyKind::Budgeter => {
                let next = self.budgeter_of(prepared, metrics);
                let mut slot = lock(&pool.budgeter);
                slot.current = next;
                slot.label = label.clone();
            }
        }
        metrics.swapped(true);
        tracing::info!(node_pool, %kind, policy = %label, "policy installed");
        label
    }

    /// Counts a refused install in the NodePool's metrics (for callers preparing on their own).
    pub fn record_rejected(&self, node_pool: &str, kind: PolicyKind) {
        self.pool(node_pool).metrics[kind as usize].swapped(false);
    }

    /// What a NodePool without an annotation for a kind gets.
    pub fn default_source(&self) -> PolicySource {
        match self.default_backend {
            DefaultBackend::Wasm => PolicySource::EmbeddedDefault,
            DefaultBackend::Native => PolicySource::Native,
        }
    }

    /// Installs a `.wasm` file as a NodePool's policy.
    pub fn install_file(
        &self,
        node_pool: &str,
        kind: PolicyKind,
        path: &Path,
        sha256: Option<String>,
    ) -> Result<String, PolicyError> {
        let bytes = std::fs::read(path).map_err(|source| PolicyError::Io {
            path: path.into(),
            source,
        })?;
        self.install(node_pool, kind, PolicySource::Wasm { bytes, sha256 })
    }

    /// The label of the policy currently serving, e.g. `default-ranker@0.1.0 (wasm sha256:…)`.
    pub fn current(&self, node_pool: &str, kind: PolicyKind) -> String {
        let pool = self.pool(node_pool);
        match kind {
            PolicyKind::Ranker => lock(&pool.ranker).label.clone(),
            PolicyKind::Consolidator => lock(&pool.consolidator).label.clone(),
            PolicyKind::Budgeter => lock(&pool.budgeter).label.clone(),
        }
    }

    /// The NodePool's ranker. Handles stay valid across swaps (they call whatever serves now).
    pub fn ranker(&self, node_pool: &str) -> PoolRanker {
        PoolRanker {
            slot: self.pool(node_pool).ranker.clone(),
        }
    }
    pub fn consolidator(&self, node_pool: &str) -> PoolConsolidator {
        PoolConsolidator {
            slot: self.pool(node_pool).consolidator.clone(),
        }
    }
    pub fn budgeter(&self, node_pool: &str) -> PoolBudgeter {
        PoolBudgeter {
            slot: self.pool(node_pool).budgeter.clone(),
        }
    }

    /// Calls and fallbacks of a NodePool's policy of `kind` (kept across swaps).
    pub fn metrics(&self, node_pool: &str, kind: PolicyKind) -> MetricsSnapshot {
        self.pool(node_pool).metrics[kind as usize].snapshot()
    }

    /// Forgets a NodePool (deleted).
    pub fn remove(&self, node_pool: &str) {
        lock(&self.pools).remove(node_pool);
    }
}

impl Default for PolicyRegistry {
    fn default() -> Self {
        Self::new()
    }
}

/// The registry is where the core gets each NodePool's policies; its handles follow hot swaps.
impl crate::PolicyProvider for PolicyRegistry {
    fn ranker(&self, node_pool: &str) -> Box<dyn Ranker> {
        Box::new(PolicyRegistry::ranker(self, node_pool))
    }
    fn consolidator(&self, node_pool: &str) -> Box<dyn Consolidator> {
        Box::new(PolicyRegistry::consolidator(self, node_pool))
    }
    fn budgeter(&self, node_pool: &str) -> Box<dyn Budgeter> {
        Box::new(PolicyRegistry::budgeter(self, node_pool))
    }
}

/// A NodePool's ranker, as handed to the core.
#[derive(Clone)]
pub struct PoolRanker {
    slot: Arc<Mutex<Slot<dyn Ranker>>>,
}

impl Ranker for PoolRanker {
    fn set_catalog(&mut self, catalog: &Arc<rank::Catalog>) {
        let mut slot = lock(&self.slot);
        if slot.catalog.as_ref() != Some(catalog) {
            slot.catalog = Some(catalog.clone());
        }
        slot.current.set_catalog(catalog);
    }
    fn rank(&mut self, input: &rank::RankInput) -> Verdict<rank::Ranking> {
        lock(&self.slot).current.rank(input)
    }
}

#[derive(Clone)]
pub struct PoolConsolidator {
    slot: Arc<Mutex<Slot<dyn Consolidator>>>,
}

impl Consolidator for PoolConsolidator {
    fn consolidate(&mut self, input: &consolidate::ConsolidateInput) -> Verdict<Vec<u32>> {
        lock(&self.slot).current.consolidate(input)
    }
}

#[derive(Clone)]
pub struct PoolBudgeter {
    slot: Arc<Mutex<Slot<dyn Budgeter>>>,
}

impl Budgeter for PoolBudgeter {
    fn allowed(&mut self, input: &budget::BudgetInput) -> Verdict<Vec<budget::ReasonCount>> {
        lock(&self.slot).current.allowed(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_normalised_or_refused() {
        let hexits = "AB".repeat(32);
        assert_eq!(
            normalize_pin(&format!("sha256:{hexits}")).unwrap(),
            "ab".repeat(32)
        );
        assert!(matches!(
            normalize_pin("abc"),
            Err(PolicyError::InvalidPin { .. })
        ));
        assert!(normalize_pin(&"g".repeat(64)).is_err());
    }

    #[test]
    fn annotations_default_and_reject_pins_without_a_configmap() {
        let none = BTreeMap::new();
        assert_eq!(
            policy_refs(&none).unwrap().get(PolicyKind::Budgeter),
            &PolicyRef::Default
        );
        let ann: BTreeMap<String, String> = [
            (
                "kestrel.dev/consolidator".to_string(),
                "configmap:c/other.wasm".to_string(),
            ),
            ("kestrel.dev/ranker-sha256".to_string(), "0".repeat(64)),
        ]
        .into();
        assert!(matches!(
            policy_refs(&ann),
            Err(PolicyError::Annotation { .. })
        ));
        let ann: BTreeMap<String, String> = [(
            "kestrel.dev/consolidator".to_string(),
            "configmap:c/other.wasm".to_string(),
        )]
        .into();
        assert_eq!(
            policy_refs(&ann).unwrap().consolidator,
            PolicyRef::ConfigMap {
                name: "c".into(),
                key: "other.wasm".into(),
                sha256: None
            }
        );
    }

    #[test]
    fn native_registry_serves_the_defaults_without_wasm() {
        let registry = PolicyRegistry::native();
        assert_eq!(
            registry.current("p", PolicyKind::Ranker),
            NativeRanker::label()
        );
        let v = registry
            .budgeter("p")
            .allowed(&fixtures::canary_budget_input());
        assert_eq!(v.fallback, None);
        assert!(v.value.iter().all(|r| r.count == 2));
    }
}
