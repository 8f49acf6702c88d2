//! The immutable view every core decision reads: cluster objects, the catalog, and the time.

use std::sync::Arc;

use super::catalog::Catalog;
use super::node::{Node, NodeClaim};
use super::node_pool::NodePool;
use super::pod::{LabelSelector, Pod, PodSpec};
use crate::clock::Millis;

/// A DaemonSet: one pod per matching node, whose requests every new node must reserve.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSet {
    pub namespace: String,
    pub name: String,
    /// The compiled pod template (its node affinity and tolerations decide which nodes it lands on).
    pub pod: Arc<PodSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntOrPercent {
    Int(u32),
    Percent(u32),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PodDisruptionBudget {
    pub namespace: String,
    pub name: String,
    pub selector: LabelSelector,
    pub min_available: Option<IntOrPercent>,
    pub max_unavailable: Option<IntOrPercent>,
    /// `status.disruptionsAllowed` as last reported (the controller's count of evictions allowed now).
    pub disruptions_allowed: u32,
}

impl PodDisruptionBudget {
    pub fn selects(&self, pod: &Pod) -> bool {
        pod.spec.namespace == self.namespace && self.selector.matches(&pod.spec.labels)
    }
}

/// Everything a decision may look at, frozen at `now`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub now: Millis,
    pub catalog: Arc<Catalog>,
    pub node_pools: Vec<NodePool>,
    pub nodes: Vec<Node>,
    /// Every pod: bound ones (with `node_name`) and pending ones.
    pub pods: Vec<Pod>,
    pub daemonsets: Vec<DaemonSet>,
    pub pdbs: Vec<PodDisruptionBudget>,
    /// NodeClaims not yet registered as nodes (launching or launched).
    pub node_claims: Vec<NodeClaim>,
}

impl Snapshot {
    pub fn new(now: Millis, catalog: Arc<Catalog>) -> Snapshot {
        Snapshot {
            now,
            catalog,
            node_pools: vec![],
            nodes: vec![],
            pods: vec![],
            daemonsets: vec![],
            pdbs: vec![],
            node_claims: vec![],
        }
    }

    pub fn pending_pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods
            .iter()
            .filter(|p| p.is_pending() && !p.spec.is_daemonset())
    }

    pub fn pods_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Pod> {
        self.pods
            .iter()
            .filter(move |p| p.node_name.as_deref() == Some(node) && !p.terminating)
    }

    pub fn node_pool(&self, name: &str) -> Option<&NodePool> {
        self.node_pools.iter().find(|p| p.name == name)
    }
}
