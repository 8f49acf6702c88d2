//! The in-memory cluster: pods, nodes, PDBs, and a kube-scheduler stand-in that binds pending pods.
//!
//! Binding follows the scheduler's filters (resources, nodeSelector, required node affinity, taints and
//! tolerations, zone/hostname topology spread with `DoNotSchedule`, hostname anti-affinity to the pod's own
//! workload); a pod nominated to a node goes there first, as with Karpenter's nominations. Scoring is
//! first fit in node order, which keeps replays deterministic.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::{
    ClusterError, ClusterState, DisruptionBudget, NodeState, OwnerKind, PodKey, PodSpecFacts,
    PodState,
};
use crate::clock::Millis;
use crate::sim::fit;

/// A pod bound by the stand-in scheduler.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub pod: PodKey,
    pub node: Arc<str>,
    pub pending_ms: Millis,
}

/// A pod that left the cluster, and why (the replay recreates owned pods).
#[derive(Debug, Clone, PartialEq)]
pub struct Removal {
    pub pod: PodState,
    pub cause: RemovalCause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalCause {
    Evicted,
    NodeDeleted,
}

#[derive(Debug, Default)]
pub struct SimCluster {
    pods: BTreeMap<PodKey, PodState>,
    nodes: BTreeMap<Arc<str>, NodeState>,
    pods_by_node: HashMap<Arc<str>, BTreeSet<PodKey>>,
    pending: BTreeSet<PodKey>,
    budgets: Vec<DisruptionBudget>,
    removed: Vec<Removal>,
    /// Something changed since the last scheduling pass (a new pod, a new node, freed room).
    dirty: bool,
    node_by_claim: HashMap<String, Arc<str>>,
    pending_revision: u64,
}

impl SimCluster {
    pub fn new(budgets: Vec<DisruptionBudget>) -> Self {
        SimCluster {
            budgets,
            ..Default::default()
        }
    }

    pub fn add_pod(&mut self, key: PodKey, facts: Arc<PodSpecFacts>, now: Millis) {
        self.pending_revision += 1;
        self.pending.insert(key.clone());
        self.pods.insert(
            key.clone(),
            PodState {
                key,
                facts,
                created_at: now,
                node: None,
                bound_at: None,
                nominated: None,
            },
        );
        self.dirty = true;
    }

    /// A pod placed directly on a node (a DaemonSet pod: the DaemonSet controller binds it itself).
    pub fn add_bound_pod(
        &mut self,
        key: PodKey,
        facts: Arc<PodSpecFacts>,
        node: &Arc<str>,
        now: Millis,
    ) {
        self.pods.insert(
            key.clone(),
            PodState {
                key: key.clone(),
                facts,
                created_at: now,
                node: None,
                bound_at: None,
                nominated: None,
            },
        );
        self.bind(&key, node, now);
    }

    /// Deletes a pod (scale-down, job completion); returns it if it existed.
    pub fn remove_pod(&mut self, key: &str) -> Option<PodState> {
        let pod = self.pods.remove(key)?;
        self.pending.remove(key);
        if let Some(node) = &pod.node {
            self.unbind_accounting(node, &pod);
        }
        Some(pod)
    }

    pub fn pod(&self, key: &str) -> Option<&PodState> {
        self.pods.get(key)
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    pub fn node(&self, name: &str) -> Option<&NodeState> {
        self.nodes.get(name)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn nodes_iter(&self) -> impl Iterator<Item = &NodeState> {
        self.nodes.values()
    }

    pub fn pending_iter(&self) -> impl Iterator<Item = &PodState> {
        self.pending.iter().filter_map(|k| self.pods.get(k))
    }

    /// The kubelet registered: the node joins, ready.
    pub fn register_node(&mut self, node: NodeState) {
        self.pods_by_node.entry(node.name.clone()).or_default();
        self.node_by_claim
            .insert(node.claim.clone(), node.name.clone());
        self.nodes.insert(node.name.clone(), node);
        self.dirty = true;
    }

    /// Pods removed since the last call.
    pub fn drain_removed(&mut self) -> Vec<Removal> {
        std::mem::take(&mut self.removed)
    }

    /// The kube-scheduler stand-in: binds what fits, returns the bindings.
    pub fn schedule(&mut self, now: Millis) -> Vec<Binding> {
        if !self.dirty || self.pending.is_empty() {
            self.dirty = false;
            return Vec::new();
        }
        self.dirty = false;
        let mut bindings = Vec::new();
        let pending: Vec<PodKey> = self.pending.iter().cloned().collect();
        // Pods of one template that failed on every node need not be scanned again in this pass.
        let mut unfit_templates: BTreeSet<*const PodSpecFacts> = BTreeSet::new();
        for key in pending {
            let pod = &self.pods[&key];
            let facts_ptr = Arc::as_ptr(&pod.facts);
            let scan = !unfit_templates.contains(&facts_ptr);
            let target = self.choose_node(pod, scan);
            match target {
                Some(node) => {
                    self.bind(&key, &node, now);
                    let pod = &self.pods[&key];
                    bindings.push(Binding {
                        pod: key,
                        node,
                        pending_ms: now - pod.created_at,
                    });
                }
                None => {
                    if scan {
                        unfit_templates.insert(facts_ptr);
                    }
                }
            }
        }
        bindings
    }

    fn choose_node(&self, pod: &PodState, scan: bool) -> Option<Arc<str>> {
        if let Some(nominated) = &pod.nominated
            && let Some(node) = self
                .node_by_claim
                .get(&**nominated)
                .and_then(|name| self.nodes.get(name))
            && self.feasible(pod, node)
        {
            return Some(node.name.clone());
        }
        if !scan {
            return None;
        }
        self.nodes
            .values()
            .find(|n| self.feasible(pod, n))
            .map(|n| n.name.clone())
    }

    fn feasible(&self, pod: &PodState, node: &NodeState) -> bool {
        if !node.ready || node.cordoned || node.deleting {
            return false;
        }
        if fit::node_fit(&pod.facts, node).is_err() {
            return false;
        }
        let peers = |n: &NodeState| {
            self.pods_by_node
                .get(&n.name)
                .map(|set| {
                    set.iter()
                        .filter(|k| self.pods[*k].facts.workload == pod.facts.workload)
                        .count()
                })
                .unwrap_or(0)
        };
        fit::topology_fit(&pod.facts, node, self.nodes.values(), peers)
    }

    fn bind(&mut self, key: &PodKey, node_name: &Arc<str>, now: Millis) {
        let pod = self.pods.get_mut(key).expect("pending pod exists");
        pod.node = Some(node_name.clone());
        pod.bound_at = Some(now);
        pod.nominated = None;
        let requests = pod.facts.requests;
        self.pending.remove(key);
        let node = self.nodes.get_mut(node_name).expect("bound node exists");
        node.requested = node.requested.plus(&requests);
        node.pods += 1;
        self.pods_by_node
            .entry(node_name.clone())
            .or_default()
            .insert(key.clone());
    }

    fn unbind_accounting(&mut self, node_name: &Arc<str>, pod: &PodState) {
        if let Some(node) = self.nodes.get_mut(node_name) {
            node.requested = node.requested.minus(&pod.facts.requests);
            node.pods -= 1;
        }
        if let Some(set) = self.pods_by_node.get_mut(node_name) {
            set.remove(&pod.key);
        }
        self.dirty = true;
    }

    fn pdb_blocking(&self, pod: &PodState) -> Option<String> {
        for budget in &self.budgets {
            let matches = |p: &PodState| {
                budget
                    .selector
                    .iter()
                    .all(|(k, v)| p.facts.labels.get(k) == Some(v))
            };
            if budget.selector.is_empty() || !matches(pod) {
                continue;
            }
            let (total, healthy) = self
                .pods
                .values()
                .filter(|p| matches(p))
                .fold((0i64, 0i64), |(t, h), p| {
                    (t + 1, h + i64::from(p.node.is_some()))
                });
            let allowed = match (budget.min_available, budget.max_unavailable) {
                (Some(min), _) => healthy - min,
                (None, Some(max)) => max - (total - healthy),
                (None, None) => i64::MAX,
            };
            if pod.node.is_some() && allowed < 1 {
                return Some(budget.name.clone());
            }
        }
        None
    }
}

impl ClusterState for SimCluster {
    fn disruption_budgets(&self) -> Vec<DisruptionBudget> {
        self.budgets.clone()
    }

    fn pending_pods(&self) -> Vec<PodState> {
        self.pending_iter().cloned().collect()
    }

    fn bound_pods(&self) -> Vec<PodState> {
        self.pods
            .values()
            .filter(|p| p.node.is_some())
            .cloned()
            .collect()
    }

    fn pending_revision(&self) -> u64 {
        self.pending_revision
    }

    fn nodes(&self) -> Vec<NodeState> {
        self.nodes.values().cloned().collect()
    }

    fn pods_on(&self, node: &str) -> Vec<PodState> {
        self.pods_by_node
            .get(node)
            .map(|set| set.iter().map(|k| self.pods[k].clone()).collect())
            .unwrap_or_default()
    }

    fn nominate(&mut self, pod: &str, claim: &str) {
        if let Some(p) = self.pods.get_mut(pod) {
            p.nominated = Some(Arc::from(claim));
        }
    }

    fn cordon(&mut self, node: &str) -> Result<(), ClusterError> {
        let n = self
            .nodes
            .get_mut(node)
            .ok_or_else(|| ClusterError::NodeNotFound(node.to_string()))?;
        n.cordoned = true;
        Ok(())
    }

    fn evict(&mut self, pod: &str, force: bool, _now: Millis) -> Result<(), ClusterError> {
        let state = self
            .pods
            .get(pod)
            .ok_or_else(|| ClusterError::PodNotFound(pod.to_string()))?;
        if !force && let Some(budget) = self.pdb_blocking(state) {
            return Err(ClusterError::EvictionBlocked {
                pod: pod.to_string(),
                budget,
            });
        }
        let removed = self.remove_pod(pod).expect("pod exists");
        self.removed.push(Removal {
            pod: removed,
            cause: RemovalCause::Evicted,
        });
        Ok(())
    }

    fn delete_node(&mut self, node: &str, _now: Millis) -> Result<(), ClusterError> {
        let name = self
            .nodes
            .get_key_value(node)
            .map(|(k, _)| k.clone())
            .ok_or_else(|| ClusterError::NodeNotFound(node.to_string()))?;
        let keys = self.pods_by_node.remove(&name).unwrap_or_default();
        for key in keys {
            if let Some(pod) = self.pods.remove(&key) {
                self.removed.push(Removal {
                    pod,
                    cause: RemovalCause::NodeDeleted,
                });
            }
        }
        if let Some(n) = self.nodes.remove(&name) {
            self.node_by_claim.remove(&n.claim);
        }
        self.dirty = true;
        Ok(())
    }
}

/// Whether a removed pod comes back (its owner recreates it).
pub fn is_recreated(owner: OwnerKind) -> bool {
    matches!(owner, OwnerKind::Deployment | OwnerKind::Job)
}
