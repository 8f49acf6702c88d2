//! The one wasmtime engine: component model, epoch interruption driven by a ticker thread, compiled
//! components cached by sha256, and the per-store limits (memory cap, no imports at all).
use super::error::PolicyError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, ResourceLimiter, Store};

/// Per-call limits of policy modules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub rank_deadline: Duration,
    pub consolidate_deadline: Duration,
    pub budget_deadline: Duration,
    /// Linear memory cap per instance, in bytes.
    pub memory_bytes: usize,
    /// Consecutive failures after which a policy is degraded (not called until replaced).
    pub degrade_after: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rank_deadline: Duration::from_millis(50),
            consolidate_deadline: Duration::from_millis(200),
            budget_deadline: Duration::from_millis(20),
            memory_bytes: 64 << 20,
            degrade_after: 3,
        }
    }
}

/// The epoch ticker's period: deadlines are accurate to one tick.
pub const TICK: Duration = Duration::from_millis(1);

/// The wasmtime engine every policy runs on. Cheap to clone.
#[derive(Clone)]
pub struct PolicyEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Mutex<CompileCache>,
    stop: Arc<AtomicBool>,
}

/// How many compiled components the engine keeps. Hot swap compiles every new ConfigMap version, so
/// an unbounded cache would grow with each edit; a component still serving stays alive through its
/// own handle when evicted (eviction only costs a recompile if those bytes come back).
pub const COMPILE_CACHE_CAPACITY: usize = 32;

/// Compiled components by sha256, least recently used evicted first.
#[derive(Default)]
struct CompileCache {
    entries: HashMap<[u8; 32], (u64, Component)>,
    clock: u64,
}

impl CompileCache {
    fn get(&mut self, digest: &[u8; 32]) -> Option<Component> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(digest).map(|(used, c)| {
            *used = clock;
            c.clone()
        })
    }

    fn insert(&mut self, digest: [u8; 32], component: Component) {
        self.clock += 1;
        self.entries.insert(digest, (self.clock, component));
        while self.entries.len() > COMPILE_CACHE_CAPACITY {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(d, _)| *d)
            else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The sha256 of module bytes, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl PolicyEngine {
    pub fn new() -> Result<Self, PolicyError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| PolicyError::Engine {
            detail: e.to_string(),
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::Builder::new()
                .name("kestrel-policy-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| PolicyError::Engine {
                    detail: format!("starting the epoch ticker: {e}"),
                })?;
        }
        // No host functions at all: a component that imports anything (WASI included) fails to link.
        let linker = Linker::new(&engine);
        Ok(PolicyEngine {
            inner: Arc::new(Inner {
                engine,
                linker,
                cache: Mutex::default(),
                stop,
            }),
        })
    }

    /// The process-wide engine (one ticker thread, one compile cache).
    pub fn shared() -> &'static PolicyEngine {
        static SHARED: OnceLock<PolicyEngine> = OnceLock::new();
        SHARED.get_or_init(|| PolicyEngine::new().expect("the policy engine starts"))
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.inner.linker
    }

    /// Compiles component bytes (in-process, never deserializing), cached by sha256. Returns the digest.
    pub fn compile(&self, bytes: &[u8]) -> Result<(String, Component), PolicyError> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let cached = self
            .inner
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&digest);
        if let Some(c) = cached {
            return Ok((hex::encode(digest), c));
        }
        check_component_header(bytes)?;
        let component = Component::new(&self.inner.engine, bytes)
            .map_err(|e| PolicyError::Compile { detail: chain(&e) })?;
        self.inner
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest, component.clone());
        Ok((hex::encode(digest), component))
    }

    /// How many compiled components the cache holds (at most [`COMPILE_CACHE_CAPACITY`]).
    pub fn cached(&self) -> usize {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .len()
    }

    /// Compiles without the cache (for benchmarks).
    pub fn compile_uncached(&self, bytes: &[u8]) -> Result<Component, PolicyError> {
        check_component_header(bytes)?;
        Component::new(&self.inner.engine, bytes)
            .map_err(|e| PolicyError::Compile { detail: chain(&e) })
    }

    /// A fresh store with the memory cap installed and the epoch deadline trapping.
    pub(crate) fn store(&self, limits: &Limits) -> Store<HostState> {
        let mut store = Store::new(
            &self.inner.engine,
            HostState {
                cap: limits.memory_bytes,
                cap_hit: None,
            },
        );
        store.limiter(|s| s);
        store.epoch_deadline_trap();
        store
    }
}

/// Epoch ticks for a deadline: rounded up, plus one for the tick already under way.
pub(crate) fn ticks(deadline: Duration) -> u64 {
    (deadline.as_micros().div_ceil(TICK.as_micros()) as u64).max(1) + 1
}

fn check_component_header(bytes: &[u8]) -> Result<(), PolicyError> {
    // wasm magic, then version 0x0d 0x00 and layer 0x01 0x00 for components (0x01 0x00 0x00 0x00 is a core module).
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err(PolicyError::NotAComponent {
            detail: "this is a core wasm module; componentize it (`kestrel policy build` does)"
                .into(),
        }),
        _ => Err(PolicyError::NotAComponent {
            detail: "the bytes do not start with the wasm component header".into(),
        }),
    }
}

/// An error with its causes, on one line.
pub(crate) fn chain(e: &wasmtime::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// Store data: the memory cap and whether a module hit it.
pub struct HostState {
    cap: usize,
    pub(crate) cap_hit: Option<usize>,
}

/// The error a module gets when it grows its memory past the cap.
#[derive(Debug, thiserror::Error)]
#[error("memory cap of {} MiB exceeded: the module asked for {} MiB", .cap >> 20, .desired.div_ceil(1 << 20))]
pub struct MemoryCapExceeded {
    pub cap: usize,
    pub desired: usize,
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.cap_hit = Some(desired);
            return Err(wasmtime::Error::new(MemoryCapExceeded {
                cap: self.cap,
                desired,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_to_whole_ticks_plus_one() {
        assert_eq!(ticks(Duration::from_millis(50)), 51);
        assert_eq!(ticks(Duration::from_micros(1500)), 3);
        assert_eq!(ticks(Duration::ZERO), 2);
    }

    /// An empty component whose one custom section makes its bytes (and digest) unique.
    fn empty_component(tag: u32) -> Vec<u8> {
        let name = format!("t{tag}");
        let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
        bytes.extend([0, name.len() as u8 + 1, name.len() as u8]);
        bytes.extend(name.as_bytes());
        bytes
    }

    #[test]
    fn the_compile_cache_keeps_only_the_most_recently_used() {
        let engine = PolicyEngine::new().unwrap();
        let first = empty_component(0);
        engine.compile(&first).unwrap();
        for tag in 1..(COMPILE_CACHE_CAPACITY as u32 + 8) {
            engine.compile(&empty_component(tag)).unwrap();
            // The first one stays the most recently used: it is never evicted.
            engine.compile(&first).unwrap();
        }
        assert_eq!(engine.cached(), COMPILE_CACHE_CAPACITY);
        let digest: [u8; 32] = Sha256::digest(&first).into();
        let kept = engine
            .inner
            .cache
            .lock()
            .unwrap()
            .entries
            .contains_key(&digest);
        assert!(kept, "the most recently used component was evicted");
        let digest: [u8; 32] = Sha256::digest(empty_component(1)).into();
        let kept = engine
            .inner
            .cache
            .lock()
            .unwrap()
            .entries
            .contains_key(&digest);
        assert!(!kept, "the least recently used component was kept");
    }

    #[test]
    fn only_components_are_accepted() {
        assert!(check_component_header(b"\0asm\x0d\0\x01\0rest").is_ok());
        assert!(matches!(
            check_component_header(b"\0asm\x01\0\0\0"),
            Err(PolicyError::NotAComponent { .. })
        ));
        assert!(matches!(
            check_component_header(b"\x7fELF...."),
            Err(PolicyError::NotAComponent { .. })
        ));
    }

    #[test]
    fn the_memory_cap_error_names_the_cap() {
        let e = MemoryCapExceeded {
            cap: 64 << 20,
            desired: (64 << 20) + 1,
        };
        assert_eq!(
            e.to_string(),
            "memory cap of 64 MiB exceeded: the module asked for 65 MiB"
        );
    }
}
