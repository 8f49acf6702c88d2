//! The provisioning side of the Ranker boundary: which ranker a NodePool uses and the contract catalog the
//! rankers are primed with. The rankers themselves are policies (`crate::policy`): the native default,
//! the embedded wasm default, or a NodePool's own module from a [`PolicyProvider`] (the wasm registry).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::model::Catalog;
use crate::model::NodePool;
use crate::policy::PolicyProvider;
use crate::policy::Ranker;
use crate::policy::contract::rank;

/// Gives the ranker a NodePool uses (its named policy, or the default), primed with `catalog`: the
/// provider calls `set_catalog` whenever the catalog revision differs from the one it last sent.
pub trait RankerProvider {
    fn ranker_for(&mut self, node_pool: &NodePool, catalog: &Catalog) -> &mut dyn Ranker;
}

/// The same ranker for every NodePool.
pub struct SingleRanker<R: Ranker> {
    pub ranker: R,
    sent_revision: Option<u64>,
}

impl<R: Ranker> SingleRanker<R> {
    pub fn new(ranker: R) -> Self {
        SingleRanker {
            ranker,
            sent_revision: None,
        }
    }
}

impl<R: Ranker> RankerProvider for SingleRanker<R> {
    fn ranker_for(&mut self, _node_pool: &NodePool, catalog: &Catalog) -> &mut dyn Ranker {
        if self.sent_revision != Some(catalog.revision) {
            self.ranker
                .set_catalog(&std::sync::Arc::new(contract_catalog(catalog)));
            self.sent_revision = Some(catalog.revision);
        }
        &mut self.ranker
    }
}

/// Each NodePool's own ranker from a [`PolicyProvider`] (`policies.ranker(pool)`), primed with the
/// contract catalog (built once per catalog revision, sent to each ranker when its revision is stale).
pub struct RegistryRankers {
    registry: Arc<dyn PolicyProvider>,
    handles: HashMap<String, (Box<dyn Ranker>, Option<u64>)>,
    catalog: Option<std::sync::Arc<rank::Catalog>>,
}

impl RegistryRankers {
    pub fn new(registry: Arc<dyn PolicyProvider>) -> Self {
        RegistryRankers {
            registry,
            handles: HashMap::new(),
            catalog: None,
        }
    }

    pub fn registry(&self) -> &dyn PolicyProvider {
        &*self.registry
    }
}

impl RankerProvider for RegistryRankers {
    fn ranker_for(&mut self, node_pool: &NodePool, catalog: &Catalog) -> &mut dyn Ranker {
        if self.catalog.as_ref().map(|c| c.revision) != Some(catalog.revision) {
            self.catalog = Some(std::sync::Arc::new(contract_catalog(catalog)));
        }
        let registry = &self.registry;
        let (ranker, sent) = self
            .handles
            .entry(node_pool.name.clone())
            .or_insert_with(|| (registry.ranker(&node_pool.name), None));
        if *sent != Some(catalog.revision) {
            ranker.set_catalog(self.catalog.as_ref().expect("set above"));
            *sent = Some(catalog.revision);
        }
        &mut **ranker
    }
}

/// The label keys of the contract catalog, in index order (sorted).
pub fn contract_label_keys(catalog: &Catalog) -> Vec<String> {
    let keys: std::collections::BTreeSet<&str> = catalog
        .instance_types
        .iter()
        .flat_map(|t| t.labels.keys().map(String::as_str))
        .collect();
    keys.into_iter().map(str::to_string).collect()
}

/// The catalog in contract form (sent to a ranker once per revision). Label keys and values are
/// indexed in sorted order.
pub fn contract_catalog(catalog: &Catalog) -> rank::Catalog {
    let mut keys: BTreeMap<&str, u32> = BTreeMap::new();
    let mut values: BTreeMap<&str, u32> = BTreeMap::new();
    for t in &catalog.instance_types {
        for (k, v) in t.labels.iter() {
            keys.insert(k, 0);
            values.insert(v, 0);
        }
    }
    for (i, v) in keys.values_mut().enumerate() {
        *v = i as u32;
    }
    for (i, v) in values.values_mut().enumerate() {
        *v = i as u32;
    }
    let mut label_keys = vec![String::new(); keys.len()];
    for (k, i) in &keys {
        label_keys[*i as usize] = k.to_string();
    }
    let mut label_values = vec![String::new(); values.len()];
    for (v, i) in &values {
        label_values[*i as usize] = v.to_string();
    }
    let instance_types = catalog
        .instance_types
        .iter()
        .map(|t| rank::InstanceType {
            name: t.name.clone(),
            cpu_millis: t.allocatable.cpu.millis().max(0) as u64,
            memory_mib: (t.allocatable.memory.units_ceil().max(0) >> 20) as u64,
            pods: t.allocatable.pods.units_ceil().max(0) as u32,
            gpus: t.gpus(),
            labels: t
                .labels
                .iter()
                .map(|(k, v)| (keys[k.as_str()], values[v.as_str()]))
                .collect(),
        })
        .collect();
    rank::Catalog {
        revision: catalog.revision,
        label_keys,
        label_values,
        zones: catalog.zones(),
        instance_types,
    }
}
