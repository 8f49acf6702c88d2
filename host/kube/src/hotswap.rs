//! Policy hot swap: a NodePool names its policies by annotation (`kestrel.dev/ranker:
//! configmap:NAME[/KEY]`, an optional `kestrel.dev/ranker-sha256` pin; see
//! `kestrel_policy::registry`), the wasm bytes live in a ConfigMap's `binaryData` in the controller's
//! namespace, and every change to either is installed into the per-NodePool registry the controller
//! ranks (and consolidates, and budgets) with.
//!
//! An install is loaded on the loop thread (the bytes are already in the reflector's store), then
//! pinned, compiled and canaried on a blocking thread (compiling takes tens of milliseconds to
//! seconds: never on the decision thread), and swapped under the lock that orders installs of one
//! (NodePool, kind): an install that finishes after a newer one started is dropped, so an older
//! ConfigMap version never wins. Each outcome is an Event on the NodePool, `PolicySwapped` or
//! `PolicyRejected` with the reason; a rejected policy changes nothing (the previous one keeps
//! serving). Removing the annotation installs the default again.
//!
//! A policy's settings (`kestrel.dev/ranker-settings`, …: JSON or YAML, see
//! `kestrel_policy::settings`) are installed with it: a change of settings alone is an install too,
//! and settings the policy's `validate-settings` refuses are rejected like a bad policy.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ConfigMap;
use kestrel_core::api::NodePool;
use kestrel_policy::NO_SETTINGS;
use kestrel_policy::registry::{SHA256_SUFFIX, annotation, policy_refs};
use kestrel_policy::{PolicyKind, PolicyRef, PolicyRegistry, PolicySource};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use tokio::task::JoinHandle;

use crate::executor;

/// The Event reasons (on the NodePool).
pub const SWAPPED_REASON: &str = "PolicySwapped";
pub const REJECTED_REASON: &str = "PolicyRejected";

/// What a NodePool's annotations ask for one kind, with the ConfigMap version they resolve to. Two
/// equal values need no install.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wanted {
    Default,
    Native,
    ConfigMap {
        name: String,
        key: String,
        pin: Option<String>,
        /// The ConfigMap's resourceVersion (None: not there).
        version: Option<String>,
    },
    /// The annotation does not parse.
    Invalid(String),
}

type SlotKey = (String, PolicyKind);

/// Installs what the NodePools' annotations and the ConfigMaps ask for, as they change.
pub struct PolicySwapper {
    registry: Arc<PolicyRegistry>,
    client: Client,
    namespace: String,
    /// What was last asked per (NodePool, kind), with its settings (JSON text); an absent entry is
    /// the default without settings.
    asked: HashMap<SlotKey, (Wanted, String)>,
    order: InstallOrder,
    jobs: Vec<JoinHandle<()>>,
}

/// Orders the installs of each (NodePool, kind): installs compile concurrently and finish in any
/// order, and only the newest one started may swap.
#[derive(Debug, Clone, Default)]
struct InstallOrder {
    /// The last generation handed out, and the newest install started per slot.
    latest: Arc<Mutex<(u64, HashMap<SlotKey, u64>)>>,
}

impl InstallOrder {
    /// A new install of `key`: every install of it started before is superseded.
    fn begin(&self, key: &SlotKey) -> u64 {
        let mut latest = lock(&self.latest);
        latest.0 += 1;
        let generation = latest.0;
        latest.1.insert(key.clone(), generation);
        generation
    }

    /// The slot's NodePool is gone: installs in flight for it swap nothing.
    fn forget(&self, key: &SlotKey) {
        lock(&self.latest).1.remove(key);
    }

    /// Runs `swap` if install `generation` is still the newest of `key`; under the lock, so no
    /// newer install can start deciding between the check and the swap. None: superseded.
    fn if_newest<T>(&self, key: &SlotKey, generation: u64, swap: impl FnOnce() -> T) -> Option<T> {
        let latest = lock(&self.latest);
        (latest.1.get(key) == Some(&generation)).then(swap)
    }
}

/// A NodePool's annotations for one kind only (so a bad one of another kind does not hide it): the
/// policy and its settings (JSON text).
fn wanted(
    pool: &NodePool,
    kind: PolicyKind,
    configmaps: &Store<ConfigMap>,
    ns: &str,
) -> (Wanted, String) {
    let key = annotation(kind);
    let pin_key = format!("{key}{SHA256_SUFFIX}");
    let settings_key = kestrel_policy::settings::settings_annotation(kind);
    let own: BTreeMap<String, String> = pool
        .annotations()
        .iter()
        .filter(|(k, _)| **k == key || **k == pin_key || **k == settings_key)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let settings = match kestrel_policy::settings::from_annotations(&own) {
        Ok(all) => all[kind as usize].clone(),
        Err(err) => return (Wanted::Invalid(err.to_string()), NO_SETTINGS.into()),
    };
    (wanted_policy(&own, kind, configmaps, ns), settings)
}

fn wanted_policy(
    own: &BTreeMap<String, String>,
    kind: PolicyKind,
    configmaps: &Store<ConfigMap>,
    ns: &str,
) -> Wanted {
    match policy_refs(own).map(|r| r.get(kind).clone()) {
        Err(err) => Wanted::Invalid(err.to_string()),
        Ok(PolicyRef::Default) => Wanted::Default,
        Ok(PolicyRef::Native) => Wanted::Native,
        Ok(PolicyRef::ConfigMap { name, key, sha256 }) => {
            let version = configmaps
                .get(&kube::runtime::reflector::ObjectRef::new(&name).within(ns))
                .map(|cm| cm.resource_version().unwrap_or_default());
            Wanted::ConfigMap {
                name,
                key,
                pin: sha256,
                version,
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section replaces whole values: a panic leaves nothing half-written.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PolicySwapper {
    pub fn new(registry: Arc<PolicyRegistry>, client: Client, namespace: String) -> Self {
        PolicySwapper {
            registry,
            client,
            namespace,
            asked: HashMap::new(),
            order: InstallOrder::default(),
            jobs: Vec::new(),
        }
    }

    pub fn registry(&self) -> &Arc<PolicyRegistry> {
        &self.registry
    }

    /// Starts an install for every (NodePool, kind) whose annotation or ConfigMap changed since the
    /// last call, and forgets deleted NodePools. Cheap when nothing changed (string comparisons).
    pub fn reconcile(&mut self, pools: &[Arc<NodePool>], configmaps: &Store<ConfigMap>) {
        self.jobs.retain(|j| !j.is_finished());
        let names: std::collections::HashSet<String> = pools.iter().map(|p| p.name_any()).collect();
        let gone: Vec<SlotKey> = self
            .asked
            .keys()
            .filter(|(pool, _)| !names.contains(pool))
            .cloned()
            .collect();
        for key in gone {
            self.asked.remove(&key);
            self.order.forget(&key);
            self.registry.remove(&key.0);
        }
        for pool in pools {
            for kind in PolicyKind::ALL {
                let want = wanted(pool, kind, configmaps, &self.namespace);
                let key = (pool.name_any(), kind);
                let unchanged = match self.asked.get(&key) {
                    Some(asked) => asked == &want,
                    None => want == (Wanted::Default, NO_SETTINGS.to_string()),
                };
                if unchanged {
                    continue;
                }
                self.asked.insert(key.clone(), want.clone());
                self.start(pool, key, want, configmaps);
            }
        }
    }

    /// Waits for the installs started so far (at startup: the first decisions use the configured
    /// policies, not the defaults for a moment).
    pub async fn settle(&mut self) {
        for job in self.jobs.drain(..) {
            if let Err(err) = job.await {
                tracing::error!(%err, "a policy install task failed");
            }
        }
    }

    fn start(
        &mut self,
        pool: &NodePool,
        key: SlotKey,
        (want, settings): (Wanted, String),
        cms: &Store<ConfigMap>,
    ) {
        let generation = self.order.begin(&key);
        let ns = self.namespace.clone();
        // Read on the loop thread: the store's copy of the bytes, as of this tick.
        let (source, what): (Result<PolicySource, String>, String) = match &want {
            Wanted::Default => (Ok(self.registry.default_source()), "the default".into()),
            Wanted::Native => (Ok(PolicySource::Native), "native".into()),
            Wanted::Invalid(reason) => (Err(reason.clone()), "its annotation".into()),
            Wanted::ConfigMap {
                name,
                key: data_key,
                pin,
                version,
            } => {
                let what = format!("ConfigMap {ns}/{name} key {data_key}");
                let source = match version {
                    None => Err(format!("ConfigMap {ns}/{name} not found")),
                    Some(_) => cms
                        .get(&kube::runtime::reflector::ObjectRef::new(name).within(&ns))
                        .and_then(|cm| cm.binary_data.as_ref()?.get(data_key).cloned())
                        .map(|bytes| PolicySource::Wasm {
                            bytes: bytes.0,
                            sha256: pin.clone(),
                        })
                        .ok_or_else(|| {
                            format!("ConfigMap {ns}/{name} has no binaryData key {data_key:?}")
                        }),
                };
                (source, what)
            }
        };
        let registry = self.registry.clone();
        let order = self.order.clone();
        let client = self.client.clone();
        let reference = executor::reference::<NodePool>(&key.0, pool.metadata.uid.clone());
        self.jobs.push(tokio::spawn(async move {
            let (pool_name, kind) = key.clone();
            let prepared = match source {
                Err(reason) => Err(reason),
                Ok(source) => {
                    let registry = registry.clone();
                    match tokio::task::spawn_blocking(move || {
                        registry.prepare_with_settings(kind, &source, &settings)
                    })
                    .await
                    {
                        Ok(result) => result.map_err(|e| e.to_string()),
                        Err(join) => Err(format!("the compile task failed: {join}")),
                    }
                }
            };
            let outcome = order.if_newest(&key, generation, || {
                match prepared {
                    Ok(prepared) => {
                        let label = registry.install_prepared(&pool_name, kind, prepared);
                        (
                            "Normal",
                            SWAPPED_REASON,
                            format!("{kind} {label} from {what} now serves"),
                        )
                    }
                    Err(reason) => {
                        registry.record_rejected(&pool_name, kind);
                        tracing::warn!(pool = %pool_name, %kind, %reason, "policy rejected; the previous one keeps serving");
                        (
                            "Warning",
                            REJECTED_REASON,
                            format!(
                                "{kind} from {what} rejected: {reason}; {} keeps serving",
                                registry.current(&pool_name, kind)
                            ),
                        )
                    }
                }
            });
            let Some((type_, reason, message)) = outcome else {
                // A newer install of this slot started meanwhile: it decides, not this one.
                tracing::debug!(pool = %pool_name, %kind, "policy install superseded");
                return;
            };
            if let Err(err) = executor::emit(&client, reference, type_, reason, &message).await {
                tracing::warn!(pool = %pool_name, %err, reason, "policy Event not recorded");
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every order in which four installs of one slot (and one of another slot) can finish: the
    /// newest started is the one that serves, whatever finishes last.
    #[test]
    fn only_the_newest_install_of_a_slot_swaps_whatever_order_they_finish_in() {
        fn permutations(items: Vec<usize>) -> Vec<Vec<usize>> {
            if items.len() <= 1 {
                return vec![items];
            }
            let mut all = Vec::new();
            for i in 0..items.len() {
                let mut rest = items.clone();
                let first = rest.remove(i);
                for mut p in permutations(rest) {
                    p.insert(0, first);
                    all.push(p);
                }
            }
            all
        }
        let slot: SlotKey = ("web".into(), PolicyKind::Ranker);
        let other: SlotKey = ("web".into(), PolicyKind::Budgeter);
        for finish_order in permutations((0..4).collect()) {
            let order = InstallOrder::default();
            let started: Vec<u64> = (0..4).map(|_| order.begin(&slot)).collect();
            let elsewhere = order.begin(&other);
            let mut serving = None;
            for i in &finish_order {
                if order
                    .if_newest(&slot, started[*i], || serving = Some(*i))
                    .is_some()
                {
                    assert_eq!(
                        *i, 3,
                        "install {i} swapped after install 3 started ({finish_order:?})"
                    );
                }
            }
            assert_eq!(serving, Some(3), "{finish_order:?}");
            assert!(
                order.if_newest(&other, elsewhere, || ()).is_some(),
                "another slot is its own"
            );
        }
    }

    #[test]
    fn a_removed_pools_install_in_flight_swaps_nothing() {
        let order = InstallOrder::default();
        let slot: SlotKey = ("gone".into(), PolicyKind::Consolidator);
        let in_flight = order.begin(&slot);
        order.forget(&slot);
        assert!(order.if_newest(&slot, in_flight, || ()).is_none());
        // The pool created again installs afresh.
        let again = order.begin(&slot);
        assert!(order.if_newest(&slot, again, || ()).is_some());
    }
}
