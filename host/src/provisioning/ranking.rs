//! The provisioning side of the Ranker boundary: which ranker a NodePool uses, the contract catalog the
//! rankers are primed with, and a tiny native ranker used until the policy runtime is wired in.
//!
//! SEAM: `CheapestFirst` stands in for the policy helper's `NativeRanker` / wasm runtime (crate::policy).
//! Callers pick the ranker through [`RankerProvider`], so swapping it in touches no provisioning code.

use std::collections::BTreeMap;

use crate::model::Catalog;
use crate::model::NodePool;
use crate::policy::contract::rank;
use crate::policy::{Ranker, Verdict};

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
            self.ranker.set_catalog(&contract_catalog(catalog));
            self.sent_revision = Some(catalog.revision);
        }
        &mut self.ranker
    }
}

/// Orders offerings by effective hourly cost: the price, with spot weighted up by its interruption signal.
#[derive(Debug, Default, Clone)]
pub struct CheapestFirst {
    catalog_revision: Option<u64>,
}

impl CheapestFirst {
    pub const NAME: &'static str = "cheapest-first@0.1.0 (native, provisioning built-in)";
}

impl Ranker for CheapestFirst {
    fn set_catalog(&mut self, catalog: &rank::Catalog) {
        self.catalog_revision = Some(catalog.revision);
    }

    fn rank(&mut self, input: &rank::RankInput) -> Verdict<rank::Ranking> {
        let o = &input.offerings;
        let score = |i: usize| {
            let risk = if o.capacity_type[i] == 1 {
                1.0 + 0.5 * f64::from(o.interruption[i].max(0.0))
            } else {
                1.0
            };
            o.price[i] * risk
        };
        let mut order: Vec<u32> = (0..o.price.len() as u32).collect();
        order.sort_by(|&a, &b| {
            score(a as usize)
                .total_cmp(&score(b as usize))
                .then(a.cmp(&b))
        });
        let scores = order.iter().map(|&i| score(i as usize)).collect();
        Verdict {
            value: rank::Ranking { order, scores },
            decided_by: Self::NAME.to_string(),
            fallback: None,
        }
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
        for (k, v) in &t.labels {
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
