//! The in-memory cluster: pods, nodes, PDBs, and a kube-scheduler stand-in that binds pending pods.
//!
//! Binding uses the scheduling core's filters ([`crate::scheduling::fit`]) on each template's compiled
//! [`model::PodSpec`] ([`PodSpecFacts::compiled`]), and every node is kept as a core [`Slot`] (labels, taints,
//! free resources, host ports, the pods on it), so resources, host ports, taints, node affinity, volume
//! zones, pod (anti-)affinity in both directions and topology spread are judged against every pod in the
//! cluster exactly as the provisioner judges them. A pod nominated to a node goes there first, as with
//! Karpenter's nominations. Among the other nodes that pass, the pod goes where kube-scheduler's default
//! profile would put it by resources: the best sum of `NodeResourcesFit` (LeastAllocated) and
//! `NodeResourcesBalancedAllocation` over CPU and memory, ties to the first node in name order (so
//! replays stay deterministic). That is why a replacement node launched by consolidation receives the
//! evicted pods rather than the old nodes' leftover room.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::{
    ClaimRecord, ClusterError, ClusterState, ClusterWriter, DisruptionBudget, NodeState, OwnerKind,
    PodKey, PodSpecFacts, PodState, ResourceList,
};
use crate::clock::Millis;
use crate::model;
use crate::scheduling::fit::{self, NewDomains, Slot};

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
    /// Shared with the snapshots `nodes()` hands out; changed copy-on-write.
    nodes: BTreeMap<Arc<str>, Arc<NodeState>>,
    pods_by_node: HashMap<Arc<str>, BTreeSet<PodKey>>,
    pending: BTreeSet<PodKey>,
    budgets: Vec<DisruptionBudget>,
    removed: Vec<Removal>,
    /// Something changed since the last scheduling pass (a new pod, a new node, freed room).
    dirty: bool,
    node_by_claim: HashMap<String, Arc<str>>,
    pending_revision: u64,
    /// Bumped at each registration.
    nodes_revision: u64,
    /// Every node as the core's scheduling slot, kept in step with binds (order is irrelevant: the
    /// scheduler walks `nodes`, and `slot_of` finds the slot).
    slots: Vec<Slot>,
    slot_of: HashMap<Arc<str>, usize>,
    /// The NodeClaim objects.
    claim_records: BTreeMap<String, ClaimRecord>,
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
        self.nodes.get(name).map(|n| &**n)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn nodes_iter(&self) -> impl Iterator<Item = &NodeState> {
        self.nodes.values().map(|n| &**n)
    }

    pub fn pending_iter(&self) -> impl Iterator<Item = &PodState> {
        self.pending.iter().filter_map(|k| self.pods.get(k))
    }

    /// The claim record written under this name, if any.
    pub fn claim_record(&self, name: &str) -> Option<&ClaimRecord> {
        self.claim_records.get(name)
    }

    /// The kubelet registered: the node joins, ready.
    pub fn register_node(&mut self, node: NodeState) {
        self.pods_by_node.entry(node.name.clone()).or_default();
        let slot = node.slot();
        match self.slot_of.get(&node.name) {
            Some(&i) => self.slots[i] = slot,
            None => {
                self.slot_of.insert(node.name.clone(), self.slots.len());
                self.slots.push(slot);
            }
        }
        self.node_by_claim
            .insert(node.claim.clone(), node.name.clone());
        self.nodes.insert(node.name.clone(), Arc::new(node));
        self.nodes_revision += 1;
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
        // Per template, whether each slot passes the static rules (labels and taints do not change
        // within a pass); also the set of eligible domains for topology spread, as in the core.
        let mut static_ok: HashMap<*const PodSpecFacts, Vec<Option<bool>>> = HashMap::new();
        for key in pending {
            let pod = &self.pods[&key];
            let facts_ptr = Arc::as_ptr(&pod.facts);
            let scan = !unfit_templates.contains(&facts_ptr);
            let spec = pod.facts.compiled.clone();
            let cache = static_ok
                .entry(facts_ptr)
                .or_insert_with(|| vec![None; self.slots.len()]);
            cache.resize(self.slots.len(), None);
            let target = self.choose_node(pod, &spec, cache, scan);
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

    fn choose_node(
        &self,
        pod: &PodState,
        spec: &Arc<model::PodSpec>,
        static_ok: &mut [Option<bool>],
        scan: bool,
    ) -> Option<Arc<str>> {
        if let Some(nominated) = &pod.nominated
            && let Some(node) = self
                .node_by_claim
                .get(&**nominated)
                .and_then(|name| self.nodes.get(name))
            && self.feasible(pod, spec, node, static_ok)
        {
            return Some(node.name.clone());
        }
        if !scan {
            return None;
        }
        // Score the nodes with room first (cheap), then run the full filters best score first: the
        // first that passes is the one the scheduler would pick.
        let requests = pod.facts.requests();
        let mut ranked: Vec<(i64, &NodeState)> = self
            .nodes_iter()
            .filter(|n| open_for(n, requests))
            .map(|n| (resource_score(n, requests), n))
            .collect();
        // Stable: equal scores keep name order.
        ranked.sort_by_key(|&(score, _)| std::cmp::Reverse(score));
        ranked
            .into_iter()
            .find(|(_, n)| self.feasible(pod, spec, n, static_ok))
            .map(|(_, n)| n.name.clone())
    }

    /// The core's filters for `pod` on `node`: cheap integer and static checks first, then the core's
    /// dynamic rules against every slot.
    fn feasible(
        &self,
        pod: &PodState,
        spec: &Arc<model::PodSpec>,
        node: &NodeState,
        static_ok: &mut [Option<bool>],
    ) -> bool {
        if !open_for(node, pod.facts.requests()) {
            return false;
        }
        let Some(&index) = self.slot_of.get(&node.name) else {
            return false;
        };
        let slot = &self.slots[index];
        if !slot.accepting {
            return false;
        }
        let slots = &self.slots;
        let ok = *static_ok[index]
            .get_or_insert_with(|| fit::check_static(spec, &slot.labels, &slot.taints).is_ok());
        if !ok {
            return false;
        }
        if !spec.topology_spread.is_empty() {
            // Topology spread counts the domains of nodes the pod could use (the core's eligibility).
            for (i, s) in slots.iter().enumerate() {
                static_ok[i]
                    .get_or_insert_with(|| fit::check_static(spec, &s.labels, &s.taints).is_ok());
            }
        }
        let static_ok: &[Option<bool>] = static_ok;
        let eligible = |i: usize, _: &Slot| static_ok.get(i).copied().flatten().unwrap_or(false);
        fit::check_dynamic(spec, index, slots, &eligible, &NewDomains::new()).is_ok()
    }

    fn bind(&mut self, key: &PodKey, node_name: &Arc<str>, now: Millis) {
        let pod = self.pods.get_mut(key).expect("pending pod exists");
        pod.node = Some(node_name.clone());
        pod.bound_at = Some(now);
        pod.nominated = None;
        let facts = pod.facts.clone();
        if let Some(&i) = self.slot_of.get(node_name) {
            self.slots[i].place(&facts.compiled);
        }
        self.pending.remove(key);
        let node = Arc::make_mut(self.nodes.get_mut(node_name).expect("bound node exists"));
        node.requested.add(facts.requests());
        node.pods += 1;
        self.pods_by_node
            .entry(node_name.clone())
            .or_default()
            .insert(key.clone());
    }

    fn unbind_accounting(&mut self, node_name: &Arc<str>, pod: &PodState) {
        if let Some(node) = self.nodes.get_mut(node_name).map(Arc::make_mut) {
            node.requested.sub(pod.facts.requests());
            node.pods -= 1;
        }
        if let Some(&i) = self.slot_of.get(node_name) {
            self.slots[i].unplace(&pod.facts.compiled);
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
                    .all(|(k, v)| p.facts.labels().get(k) == Some(v))
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
            // Pods evicted and not yet recreated by their owner are still expected (the PDB
            // controller counts the owner's replicas, not the pods that happen to exist): without
            // them, each eviction would make room for the next one at the same instant.
            let total = total
                + self
                    .removed
                    .iter()
                    .filter(|r| is_recreated(r.pod.facts.owner) && matches(&r.pod))
                    .count() as i64;
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

    fn claim_records(&self) -> Vec<ClaimRecord> {
        self.claim_records.values().cloned().collect()
    }

    fn node_of_claim(&self, claim: &str) -> Option<Arc<NodeState>> {
        self.nodes.get(self.node_by_claim.get(claim)?).cloned()
    }

    fn nodes_revision(&self) -> Option<u64> {
        Some(self.nodes_revision)
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

    fn nodes(&self) -> Vec<Arc<NodeState>> {
        self.nodes.values().cloned().collect()
    }

    fn pods_on(&self, node: &str) -> Vec<PodState> {
        self.pods_by_node
            .get(node)
            .map(|set| set.iter().map(|k| self.pods[k].clone()).collect())
            .unwrap_or_default()
    }
}

impl ClusterWriter for SimCluster {
    fn nominate(&mut self, pod: &str, claim: &str) -> Result<(), ClusterError> {
        let p = self
            .pods
            .get_mut(pod)
            .ok_or_else(|| ClusterError::PodNotFound(pod.to_string()))?;
        p.nominated = Some(Arc::from(claim));
        Ok(())
    }

    fn cordon(&mut self, node: &str) -> Result<(), ClusterError> {
        self.set_cordoned(node, true)
    }

    fn uncordon(&mut self, node: &str) -> Result<(), ClusterError> {
        self.set_cordoned(node, false)
    }

    fn write_claim(&mut self, record: &ClaimRecord) -> Result<(), ClusterError> {
        self.claim_records
            .insert(record.name.clone(), record.clone());
        Ok(())
    }

    fn delete_claim(&mut self, name: &str) -> Result<(), ClusterError> {
        self.claim_records.remove(name);
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
        if let Some(i) = self.slot_of.remove(&name) {
            self.slots.swap_remove(i);
            if let Some(moved) = self.slots.get(i) {
                let moved: Arc<str> = self
                    .nodes
                    .get_key_value(moved.name.as_str())
                    .map(|(k, _)| k.clone())
                    .unwrap_or_else(|| Arc::from(moved.name.as_str()));
                self.slot_of.insert(moved, i);
            }
        }
        self.dirty = true;
        Ok(())
    }
}

impl SimCluster {
    fn set_cordoned(&mut self, node: &str, cordoned: bool) -> Result<(), ClusterError> {
        let n = self
            .nodes
            .get_mut(node)
            .map(Arc::make_mut)
            .ok_or_else(|| ClusterError::NodeNotFound(node.to_string()))?;
        n.cordoned = cordoned;
        let taint = crate::cluster::disrupted_taint();
        n.taints.retain(|t| t.key != taint.key);
        if cordoned {
            n.taints.push(taint);
        }
        let accepting = n.ready && !n.cordoned && !n.deleting;
        if let Some(&i) = self.slot_of.get(node) {
            self.slots[i].accepting = accepting;
        }
        if !cordoned {
            // Pending pods may bind here again.
            self.dirty = true;
        }
        Ok(())
    }
}

/// Whether a node takes pods and has the room: the cheapest refusal, since most nodes of a busy
/// cluster are full.
fn open_for(node: &NodeState, requests: &ResourceList) -> bool {
    node.ready && !node.cordoned && !node.deleting && node.has_room_for(requests)
}

/// kube-scheduler's default resource scores for placing `requests` on `node` (each 0..=100, weight 1):
/// `NodeResourcesFit` with the LeastAllocated strategy (the mean share of CPU and memory left free) plus
/// `NodeResourcesBalancedAllocation` (100 minus the spread between the CPU and memory shares used).
fn resource_score(node: &NodeState, requests: &ResourceList) -> i64 {
    let (cpu, memory) = node
        .requested
        .plus(requests)
        .cpu_memory_shares(&node.allocatable);
    let (cpu, memory) = (cpu.clamp(0.0, 1.0), memory.clamp(0.0, 1.0));
    let least_allocated = ((1.0 - cpu) * 100.0 + (1.0 - memory) * 100.0) / 2.0;
    // The standard deviation of two shares is half their difference.
    let balanced = (1.0 - (cpu - memory).abs() / 2.0) * 100.0;
    least_allocated as i64 + balanced as i64
}

/// Whether a removed pod comes back (its owner recreates it).
pub fn is_recreated(owner: OwnerKind) -> bool {
    matches!(owner, OwnerKind::Deployment | OwnerKind::Job)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::CapacityType;

    /// Test capacities: CPU in millicores, memory in bytes, pod slots.
    fn capacity(cpu_millis: i64, memory_bytes: i64, pods: i64) -> ResourceList {
        use crate::model::{Quantity, resources};
        ResourceList::new()
            .with(
                resources::CPU,
                Quantity::from_millis(i128::from(cpu_millis)),
            )
            .with(resources::MEMORY, Quantity::from_units(memory_bytes))
            .with(resources::PODS, Quantity::from_units(pods))
    }
    use crate::model::labels;

    const GIB: i64 = 1 << 30;

    fn node(name: &str, zone: &str) -> NodeState {
        NodeState {
            name: Arc::from(name),
            instance_id: format!("i-{name}"),
            claim: format!("claim-{name}"),
            node_pool: "default".into(),
            instance_type: "m5.xlarge".into(),
            zone: zone.into(),
            capacity_type: CapacityType::OnDemand,
            price: 0.192,
            labels: Arc::new(BTreeMap::from([
                (labels::HOSTNAME.to_string(), name.to_string()),
                (labels::ZONE.to_string(), zone.to_string()),
            ])),
            annotations: Default::default(),
            taints: vec![],
            allocatable: capacity(4000, 16 * GIB, 110),
            requested: ResourceList::default(),
            pods: 0,
            created_at: 0,
            ready: true,
            cordoned: false,
            deleting: false,
        }
    }

    /// Facts of a workload whose template spec is `spec_yaml` (a k8s PodSpec), labelled `app: <name>`.
    fn workload(name: &str, spec_yaml: &str) -> Arc<PodSpecFacts> {
        let spec: k8s_openapi::api::core::v1::PodSpec =
            serde_yaml_ng::from_str(spec_yaml).expect("test spec parses");
        let template = k8s_openapi::api::core::v1::PodTemplateSpec {
            metadata: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                labels: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
                ..Default::default()
            }),
            spec: Some(spec),
        };
        Arc::new(PodSpecFacts::compile(name, OwnerKind::Deployment, &template).expect("compiles"))
    }

    const SMALL: &str =
        "containers: [{name: c, resources: {requests: {cpu: 100m, memory: 128Mi}}}]\n";

    fn bound_node(cluster: &SimCluster, pod: &str) -> Option<String> {
        cluster.pod(pod)?.node.as_deref().map(str::to_string)
    }

    #[test]
    fn max_unavailable_counts_pods_evicted_and_not_yet_recreated() {
        let budget = DisruptionBudget {
            name: "web-pdb".into(),
            selector: BTreeMap::from([("app".to_string(), "web".to_string())]),
            min_available: None,
            max_unavailable: Some(1),
        };
        let mut c = SimCluster::new(vec![budget]);
        c.register_node(node("a1", "zone-a"));
        let web = workload("web", SMALL);
        for i in 0..3 {
            c.add_pod(Arc::from(format!("web-{i}")), web.clone(), 0);
        }
        c.schedule(0);
        c.evict("web-0", false, 1).expect("one may go");
        // web-0's owner has not recreated it yet: it is still unavailable, so nothing more may go.
        assert!(matches!(
            c.evict("web-1", false, 1),
            Err(ClusterError::EvictionBlocked { .. })
        ));
    }

    #[test]
    fn zone_anti_affinity_applies_across_workloads() {
        let mut c = SimCluster::new(vec![]);
        c.register_node(node("a1", "zone-a"));
        c.register_node(node("b1", "zone-b"));
        let db = workload("db", SMALL);
        c.add_pod(Arc::from("db-0"), db, 0);
        c.schedule(0);
        assert_eq!(bound_node(&c, "db-0").as_deref(), Some("a1"));
        // Another workload that must not share a zone with `app: db`.
        let cache = workload(
            "cache",
            &format!(
                "{SMALL}affinity:\n  podAntiAffinity:\n    requiredDuringSchedulingIgnoredDuringExecution:\n    - topologyKey: topology.kubernetes.io/zone\n      labelSelector: {{matchLabels: {{app: db}}}}\n"
            ),
        );
        c.add_pod(Arc::from("cache-0"), cache.clone(), 1);
        c.schedule(1);
        assert_eq!(bound_node(&c, "cache-0").as_deref(), Some("b1"));
        // Symmetry: cache-0's anti-affinity keeps further db pods out of zone b, nomination or not.
        c.add_pod(Arc::from("db-1"), workload("db", SMALL), 2);
        c.nominate("db-1", "claim-b1").unwrap();
        c.schedule(2);
        assert_eq!(bound_node(&c, "db-1").as_deref(), Some("a1"));
        // With a db pod in every zone (one placed directly), the core refuses the cache pod everywhere.
        c.add_bound_pod(
            Arc::from("db-2"),
            workload("db", SMALL),
            &Arc::from("b1"),
            3,
        );
        c.add_pod(Arc::from("cache-1"), cache, 3);
        c.schedule(3);
        assert_eq!(bound_node(&c, "cache-1"), None);
    }

    #[test]
    fn topology_spread_max_skew_counts_every_node() {
        let mut c = SimCluster::new(vec![]);
        c.register_node(node("a1", "zone-a"));
        c.register_node(node("a2", "zone-a"));
        c.register_node(node("b1", "zone-b"));
        let web = workload(
            "web",
            &format!(
                "{SMALL}topologySpreadConstraints:\n- maxSkew: 1\n  topologyKey: topology.kubernetes.io/zone\n  whenUnsatisfiable: DoNotSchedule\n  labelSelector: {{matchLabels: {{app: web}}}}\n"
            ),
        );
        for i in 0..4 {
            c.add_pod(Arc::from(format!("web-{i}")), web.clone(), i);
            c.schedule(i);
        }
        let zone_of = |n: Option<String>| n.map(|n| if n.starts_with('a') { 'a' } else { 'b' });
        let zones: Vec<_> = (0..4)
            .map(|i| zone_of(bound_node(&c, &format!("web-{i}"))))
            .collect();
        assert_eq!(zones, vec![Some('a'), Some('b'), Some('a'), Some('b')]);
        // Zone b full: a fifth pod may still go to a (skew 1), a sixth may not.
        c.cordon("b1").unwrap();
        c.add_pod(Arc::from("web-4"), web.clone(), 5);
        c.schedule(5);
        assert!(bound_node(&c, "web-4").is_some());
        c.add_pod(Arc::from("web-5"), web, 6);
        c.schedule(6);
        assert_eq!(
            bound_node(&c, "web-5"),
            None,
            "zone a would hold 4 against 2"
        );
    }

    #[test]
    fn host_ports_are_exclusive_per_node() {
        let mut c = SimCluster::new(vec![]);
        c.register_node(node("a1", "zone-a"));
        let proxy = workload(
            "proxy",
            "containers: [{name: c, ports: [{containerPort: 8080, hostPort: 80}], resources: {requests: {cpu: 100m}}}]\n",
        );
        c.add_pod(Arc::from("proxy-0"), proxy.clone(), 0);
        c.add_pod(Arc::from("proxy-1"), proxy, 0);
        c.schedule(0);
        assert_eq!(bound_node(&c, "proxy-0").as_deref(), Some("a1"));
        assert_eq!(bound_node(&c, "proxy-1"), None);
        // The port frees when the first pod goes.
        c.remove_pod("proxy-0");
        c.schedule(1);
        assert_eq!(bound_node(&c, "proxy-1").as_deref(), Some("a1"));
    }

    #[test]
    fn deleting_a_node_keeps_the_other_slots_in_step() {
        let mut c = SimCluster::new(vec![]);
        for n in ["a1", "a2", "a3"] {
            c.register_node(node(n, "zone-a"));
        }
        let lonely = workload(
            "lonely",
            &format!(
                "{SMALL}affinity:\n  podAntiAffinity:\n    requiredDuringSchedulingIgnoredDuringExecution:\n    - topologyKey: kubernetes.io/hostname\n      labelSelector: {{matchLabels: {{app: lonely}}}}\n"
            ),
        );
        for i in 0..3 {
            c.add_pod(Arc::from(format!("l-{i}")), lonely.clone(), 0);
        }
        c.schedule(0);
        c.delete_node("a1", 1).unwrap();
        c.add_pod(Arc::from("l-3"), lonely, 1);
        c.schedule(1);
        // a2 and a3 still hold a lonely pod each: nothing may bind.
        assert_eq!(bound_node(&c, "l-3"), None);
        assert_eq!(c.pending_count(), 1);
    }

    #[test]
    fn pods_go_to_the_least_allocated_node_unless_nominated() {
        let mut c = SimCluster::new(vec![]);
        c.register_node(node("a1", "zone-a"));
        let big = workload(
            "big",
            "containers: [{name: c, resources: {requests: {cpu: '2', memory: 8Gi}}}]\n",
        );
        c.add_pod(Arc::from("big-0"), big, 0);
        c.schedule(0);
        assert_eq!(bound_node(&c, "big-0").as_deref(), Some("a1"));
        // a2 joins empty (like a consolidation replacement): kube-scheduler's default scores send the
        // next pod there, though a1 comes first and still has room.
        c.register_node(node("a2", "zone-a"));
        let small = workload("small", SMALL);
        c.add_pod(Arc::from("small-0"), small.clone(), 1);
        c.schedule(1);
        assert_eq!(bound_node(&c, "small-0").as_deref(), Some("a2"));
        // A pod the provisioner nominated to a1's claim goes there.
        c.add_pod(Arc::from("small-1"), small, 2);
        c.nominate("small-1", "claim-a1").unwrap();
        c.schedule(2);
        assert_eq!(bound_node(&c, "small-1").as_deref(), Some("a1"));
    }
}
