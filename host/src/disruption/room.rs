//! Where displaced pods would go: the free room of the nodes that stay, and at most one replacement.
//!
//! Placement uses the scheduler's filters (`crate::sim::fit`: resources, nodeSelector, required node
//! affinity, taints, topology spread, hostname anti-affinity), the same predicates that bind pods in the
//! simulator, so a move proven here is a move the scheduler can carry out.

use std::collections::{BTreeMap, BTreeSet};

use crate::cloud::{CapacityType, Offering};
use crate::cluster::{NodeState, PodState, Resources};
use crate::controller::{InstanceTypeInfo, PoolSpec};
use crate::sim::fit;

/// The nodes pods may move to, with their free room as pods are placed.
#[derive(Debug, Clone)]
pub struct Room {
    nodes: Vec<NodeState>,
    /// Pods per (node index, workload), for spread and anti-affinity.
    peers: BTreeMap<(usize, std::sync::Arc<str>), usize>,
    index: std::collections::HashMap<std::sync::Arc<str>, usize>,
}

impl Room {
    /// `nodes` with `pods_on(node)` already bound; nodes that take no pods (cordoned, deleting, not
    /// ready) stay in for topology counts but never receive pods.
    pub fn new<'a>(nodes: impl Iterator<Item = (&'a NodeState, &'a [PodState])>) -> Room {
        let mut room = Room {
            nodes: Vec::new(),
            peers: BTreeMap::new(),
            index: std::collections::HashMap::new(),
        };
        for (node, pods) in nodes {
            let i = room.nodes.len();
            room.index.insert(node.name.clone(), i);
            room.nodes.push(node.clone());
            for p in pods {
                *room.peers.entry((i, p.facts.workload.clone())).or_default() += 1;
            }
        }
        room
    }

    /// Takes the nodes out (they are being removed): their pods no longer count anywhere.
    pub fn remove(&mut self, names: &BTreeSet<&str>) {
        for n in self.nodes.iter_mut() {
            if names.contains(&*n.name) {
                n.deleting = true;
            }
        }
        let gone: BTreeSet<usize> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| names.contains(&*n.name))
            .map(|(i, _)| i)
            .collect();
        self.peers.retain(|(i, _), _| !gone.contains(i));
    }

    fn accepts(&self, i: usize, pod: &PodState) -> bool {
        let node = &self.nodes[i];
        if !node.ready || node.cordoned || node.deleting {
            return false;
        }
        if fit::node_fit(&pod.facts, node).is_err() {
            return false;
        }
        let workload = &pod.facts.workload;
        let peers = |n: &NodeState| {
            self.index
                .get(&n.name)
                .and_then(|&j| self.peers.get(&(j, workload.clone())).copied())
                .unwrap_or(0)
        };
        fit::topology_fit(&pod.facts, node, self.nodes.iter(), peers)
    }

    fn bind(&mut self, i: usize, pod: &PodState) {
        let node = &mut self.nodes[i];
        node.requested = node.requested.plus(&pod.facts.requests);
        node.pods += 1;
        *self
            .peers
            .entry((i, pod.facts.workload.clone()))
            .or_default() += 1;
    }

    /// Places each pod on the first node that takes it (largest pods first); returns where each went
    /// (`None`: nowhere) and keeps the placements.
    pub fn place(&mut self, pods: &[&PodState]) -> Vec<Option<String>> {
        let mut order: Vec<usize> = (0..pods.len()).collect();
        order.sort_by(|&a, &b| {
            let (ra, rb) = (&pods[a].facts.requests, &pods[b].facts.requests);
            (rb.cpu_millis, rb.memory_bytes, &pods[b].key).cmp(&(
                ra.cpu_millis,
                ra.memory_bytes,
                &pods[a].key,
            ))
        });
        let mut placed = vec![None; pods.len()];
        for k in order {
            let pod = pods[k];
            if let Some(i) = (0..self.nodes.len()).find(|&i| self.accepts(i, pod)) {
                self.bind(i, pod);
                placed[k] = Some(self.nodes[i].name.to_string());
            }
        }
        placed
    }
}

/// A launchable offering that holds a set of pods on one new node.
#[derive(Debug, Clone, PartialEq)]
pub struct Replacement {
    pub pool: String,
    /// Cheapest first; the first is the one priced into the move.
    pub offerings: Vec<Offering>,
}

/// An offering a NodePool may launch, with the room one node of it leaves for pods.
#[derive(Debug, Clone, PartialEq)]
pub struct Launchable {
    pub offering: Offering,
    /// Index into the instance types the list was built from.
    pub instance_type: usize,
    /// Allocatable minus the DaemonSets' requests.
    pub room: Resources,
}

/// The offerings `pool` may launch, cheapest first. It depends only on the pool and the catalog, so the
/// controller builds it once per catalog revision instead of once per candidate move.
pub fn launchables(
    pool: &PoolSpec,
    overhead: &BTreeMap<String, Resources>,
    instance_types: &[InstanceTypeInfo],
    offerings: &[Offering],
) -> Vec<Launchable> {
    let types: std::collections::HashMap<&str, usize> = instance_types
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let mut out: Vec<Launchable> = offerings
        .iter()
        .filter_map(|o| {
            let &i = types.get(o.instance_type.as_str())?;
            let it = &instance_types[i];
            pool.allows(it, &o.zone, o.capacity_type)
                .then(|| Launchable {
                    offering: o.clone(),
                    instance_type: i,
                    room: it
                        .allocatable
                        .minus(&overhead.get(&it.name).copied().unwrap_or_default()),
                })
        })
        .collect();
    out.sort_by(|a, b| {
        let (a, b) = (&a.offering, &b.offering);
        a.price
            .total_cmp(&b.price)
            .then(a.instance_type.cmp(&b.instance_type))
            .then(a.zone.cmp(&b.zone))
    });
    out
}

/// The launchables (cheapest first, priced below `below` if given) whose one node would hold all
/// `pods`.
pub fn offerings_holding<'l>(
    pods: &[&PodState],
    pool: &PoolSpec,
    launchable: &'l [Launchable],
    instance_types: &[InstanceTypeInfo],
    below: Option<f64>,
) -> Vec<&'l Launchable> {
    if pods
        .iter()
        .any(|p| fit::taints_tolerated(&p.facts.spec, &pool.taints).is_err())
    {
        return Vec::new();
    }
    let total = pods
        .iter()
        .fold(Resources::default(), |acc, p| acc.plus(&p.facts.requests));
    // Two pods of one workload with hostname anti-affinity or hostname spread cannot share the node.
    let mut per_workload: BTreeMap<&str, usize> = BTreeMap::new();
    for p in pods {
        *per_workload.entry(&p.facts.workload).or_default() += 1;
    }
    if pods
        .iter()
        .any(|p| one_per_host(p) && per_workload[&*p.facts.workload] > 1)
    {
        return Vec::new();
    }
    // Pods without a nodeSelector or node affinity fit every label; skip the per-offering check.
    let constrained: Vec<&&PodState> = pods
        .iter()
        .filter(|p| {
            p.facts
                .spec
                .node_selector
                .as_ref()
                .is_some_and(|s| !s.is_empty())
                || p.facts
                    .spec
                    .affinity
                    .as_ref()
                    .is_some_and(|a| a.node_affinity.is_some())
        })
        .collect();
    launchable
        .iter()
        .take_while(|l| below.is_none_or(|max| l.offering.price < max))
        .filter(|l| {
            total.fits_in(&l.room)
                && constrained.iter().all(|p| {
                    let it = &instance_types[l.instance_type];
                    fit::labels_fit(&p.facts.spec, |k| {
                        pool.label(it, &l.offering.zone, l.offering.capacity_type, k)
                    })
                    .is_ok()
                })
        })
        .collect()
}

fn one_per_host(p: &PodState) -> bool {
    let spec = &p.facts.spec;
    spec.affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_some_and(|t| t.iter().any(|t| t.topology_key == fit::HOSTNAME))
        || spec
            .topology_spread_constraints
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|c| c.topology_key == fit::HOSTNAME && c.when_unsatisfiable == "DoNotSchedule")
}

/// Distinct instance types among `offerings` of `capacity_type` priced below `price`.
pub fn cheaper_types(offerings: &[&Launchable], capacity_type: CapacityType, price: f64) -> usize {
    offerings
        .iter()
        .map(|l| &l.offering)
        .filter(|o| o.capacity_type == capacity_type && o.price < price)
        .map(|o| o.instance_type.as_str())
        .collect::<BTreeSet<_>>()
        .len()
}
