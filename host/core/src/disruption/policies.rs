//! Which consolidator and budgeter decide for a NodePool: each NodePool names its own policies, so the
//! disruption pass asks per pool instead of holding one pair for the whole cluster.

use std::collections::HashMap;
use std::sync::Arc;

use crate::policy::{Budgeter, Consolidator, PolicyProvider};

/// The consolidator and budgeter a NodePool uses.
pub trait DisruptionPolicies {
    fn consolidator(&mut self, node_pool: &str) -> &mut dyn Consolidator;
    fn budgeter(&mut self, node_pool: &str) -> &mut dyn Budgeter;
}

/// One consolidator and one budgeter for every NodePool (tests, and a candidate policy under evaluation).
pub struct SamePolicies {
    pub consolidator: Box<dyn Consolidator>,
    pub budgeter: Box<dyn Budgeter>,
}

impl DisruptionPolicies for SamePolicies {
    fn consolidator(&mut self, _node_pool: &str) -> &mut dyn Consolidator {
        &mut *self.consolidator
    }

    fn budgeter(&mut self, _node_pool: &str) -> &mut dyn Budgeter {
        &mut *self.budgeter
    }
}

/// Each NodePool's own policies from the registry (its annotations, or the embedded defaults); the
/// handles follow hot swaps.
pub struct RegistryPolicies {
    registry: Arc<dyn PolicyProvider>,
    consolidators: HashMap<String, Box<dyn Consolidator>>,
    budgeters: HashMap<String, Box<dyn Budgeter>>,
}

impl RegistryPolicies {
    pub fn new(registry: Arc<dyn PolicyProvider>) -> Self {
        RegistryPolicies {
            registry,
            consolidators: HashMap::new(),
            budgeters: HashMap::new(),
        }
    }
}

impl DisruptionPolicies for RegistryPolicies {
    fn consolidator(&mut self, node_pool: &str) -> &mut dyn Consolidator {
        let registry = &self.registry;
        self.consolidators
            .entry(node_pool.to_string())
            .or_insert_with(|| registry.consolidator(node_pool))
            .as_mut()
    }

    fn budgeter(&mut self, node_pool: &str) -> &mut dyn Budgeter {
        let registry = &self.registry;
        self.budgeters
            .entry(node_pool.to_string())
            .or_insert_with(|| registry.budgeter(node_pool))
            .as_mut()
    }
}
