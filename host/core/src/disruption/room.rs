//! Where displaced pods would go: the free room of the nodes that stay, and at most one replacement.
//!
//! The room keeps every node as the scheduling core's [`Slot`] (labels, taints, free resources, host
//! ports, the pods on it) and places pods with the core's filters ([`crate::scheduling::fit`]): the same
//! predicates the scheduler binds with, pod (anti-)affinity and topology spread across workloads
//! included, so a move proven here is a move the scheduler can carry out.
//!
//! A pass tries many moves against the same room. Trials are undone rather than copied: [`Room::mark`]
//! before, [`Room::undo`] after; the log of changes makes that cost what the trial changed, not what the
//! cluster holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::cloud::{CapacityType, Offering};
use crate::cluster::{NodeState, PodState, ResourceList};
use crate::controller::{InstanceTypeInfo, PoolSpec};
use crate::label_fit;
use crate::model::{self, HostPort, RoomCache};
use crate::scheduling::fit::{self, NewDomains, Slot};

/// The nodes pods may move to, with their free room as pods are placed.
#[derive(Debug, Default)]
pub struct Room {
    slots: Vec<Slot>,
    /// Per compiled template: whether each slot passes its static rules (taints, node affinity, volume
    /// zones do not change while the room lives). The `Arc` keeps the address key valid.
    statics: HashMap<*const model::PodSpec, (Arc<model::PodSpec>, Vec<Option<bool>>)>,
    log: Vec<Change>,
}

/// One change to the room, with what undoing it needs.
#[derive(Debug)]
enum Change {
    /// A pod was placed on the slot (undo: take the slot's last pod off).
    Placed(usize),
    /// The slot's node was taken out: its pods no longer count anywhere.
    Removed {
        slot: usize,
        pods: Vec<Arc<model::PodSpec>>,
        host_ports: Vec<HostPort>,
        free: ResourceList,
        accepting: bool,
        zone_repelling: u32,
    },
}

/// A point in the room's history to return to ([`Room::undo`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark(usize);

impl Room {
    /// `nodes` with `pods_on(node)` already bound; nodes that take no pods (cordoned, deleting, not
    /// ready) stay in for topology counts but never receive pods.
    pub fn new<'a>(nodes: impl Iterator<Item = (&'a NodeState, &'a [PodState])>) -> Room {
        let mut room = Room::default();
        for (node, pods) in nodes {
            let mut slot = node.slot();
            for p in pods {
                slot.place(&p.facts.compiled);
            }
            // `requested` also holds the DaemonSet pods, which `pods` leaves out.
            slot.free = node.free();
            room.slots.push(slot);
        }
        room
    }

    /// Where the room is now; [`Room::undo`] returns to it.
    pub fn mark(&self) -> Mark {
        Mark(self.log.len())
    }

    /// Reverts every change made since `mark`.
    pub fn undo(&mut self, mark: Mark) {
        while self.log.len() > mark.0 {
            match self.log.pop().expect("log is longer than the mark") {
                Change::Placed(i) => {
                    let slot = &mut self.slots[i];
                    let spec = slot
                        .pods
                        .last()
                        .expect("a placed pod is on its slot")
                        .clone();
                    slot.unplace(&spec);
                }
                Change::Removed {
                    slot,
                    pods,
                    host_ports,
                    free,
                    accepting,
                    zone_repelling,
                } => {
                    let s = &mut self.slots[slot];
                    s.pods = pods;
                    s.host_ports = host_ports;
                    s.free = free;
                    s.accepting = accepting;
                    s.zone_repelling = zone_repelling;
                }
            }
        }
    }

    /// Runs `f` on the room and undoes whatever it changed (a trial whose placements are not kept).
    pub fn trial<T>(&mut self, f: impl FnOnce(&mut Room) -> T) -> T {
        let mark = self.mark();
        let out = f(self);
        self.undo(mark);
        out
    }

    /// Takes the nodes out (they are being removed): their pods no longer count anywhere.
    pub fn remove(&mut self, names: &BTreeSet<&str>) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if !names.contains(slot.name.as_str()) {
                continue;
            }
            self.log.push(Change::Removed {
                slot: i,
                pods: std::mem::take(&mut slot.pods),
                host_ports: std::mem::take(&mut slot.host_ports),
                free: slot.free.clone(),
                accepting: slot.accepting,
                zone_repelling: std::mem::take(&mut slot.zone_repelling),
            });
            slot.accepting = false;
        }
    }

    /// Places each pod on the first node that takes it (largest pods first); returns where each went
    /// (`None`: nowhere) and keeps the placements.
    pub fn place(&mut self, pods: &[&PodState]) -> Vec<Option<String>> {
        let mut order: Vec<usize> = (0..pods.len()).collect();
        order.sort_by(|&a, &b| {
            let (ra, rb) = (pods[a].facts.requests(), pods[b].facts.requests());
            (rb.cpu, rb.memory, &pods[b].key).cmp(&(ra.cpu, ra.memory, &pods[a].key))
        });
        let mut placed = vec![None; pods.len()];
        for k in order {
            let spec = &pods[k].facts.compiled;
            if let Some(i) = self.first_fit(spec) {
                self.slots[i].place(spec);
                self.log.push(Change::Placed(i));
                placed[k] = Some(self.slots[i].name.clone());
            }
        }
        placed
    }

    /// The first slot the core's filters accept `spec` on.
    fn first_fit(&mut self, spec: &Arc<model::PodSpec>) -> Option<usize> {
        let slots = &self.slots;
        let (_, statics) = self
            .statics
            .entry(Arc::as_ptr(spec))
            .or_insert_with(|| (spec.clone(), vec![None; slots.len()]));
        let mut static_ok = |i: usize| {
            *statics[i].get_or_insert_with(|| {
                fit::check_static(spec, &slots[i].labels, &slots[i].taints).is_ok()
            })
        };
        if !spec.topology_spread.is_empty() {
            // Spread counts the domains of every node the pod could use, full or not.
            (0..slots.len()).for_each(|i| {
                static_ok(i);
            });
        }
        let candidates: Vec<usize> = (0..slots.len())
            .filter(|&i| {
                slots[i].accepting && spec.requests.fits_in(&slots[i].free) && static_ok(i)
            })
            .collect();
        let statics: &[Option<bool>] = statics;
        let eligible = |i: usize, _: &Slot| statics[i].unwrap_or(false);
        candidates
            .into_iter()
            .find(|&i| fit::check_dynamic(spec, i, slots, &eligible, &NewDomains::new()).is_ok())
    }
}

/// A launchable offering that holds a set of pods on one new node.
#[derive(Debug, Clone, PartialEq)]
pub struct Replacement {
    pub pool: String,
    /// Cheapest first; the first is the one priced into the move.
    pub offerings: Vec<Offering>,
}

/// An offering a NodePool may launch, with the room one node of it leaves for pods. A controller keeps
/// one list per NodePool over the whole catalog (thousands of entries each), so the offering and the
/// room are shared (per catalog revision, and per instance type and DaemonSet overhead), not copied.
#[derive(Debug, Clone, PartialEq)]
pub struct Launchable {
    pub offering: Arc<Offering>,
    /// Index into the instance types the list was built from.
    pub instance_type: usize,
    /// Allocatable minus the DaemonSets' requests.
    pub room: Arc<ResourceList>,
}

/// The offerings `pool` may launch, cheapest first. It depends only on the pool and the catalog, so the
/// controller builds it once per catalog revision instead of once per candidate move.
pub fn launchables(
    pool: &PoolSpec,
    overhead: &BTreeMap<String, ResourceList>,
    instance_types: &[InstanceTypeInfo],
    offerings: &[Arc<Offering>],
    rooms: &mut RoomCache,
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
                    room: rooms.room(
                        i,
                        &it.allocatable,
                        overhead.get(&it.name).unwrap_or(&ResourceList::new()),
                    ),
                })
        })
        .collect();
    out.shrink_to_fit();
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
        .any(|p| fit::check_taints(&p.facts.compiled, &pool.taints).is_err())
    {
        return Vec::new();
    }
    let total = pods.iter().fold(ResourceList::default(), |mut acc, p| {
        acc.add(p.facts.requests());
        acc
    });
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
                    label_fit::labels_fit(&p.facts.spec, |k| {
                        pool.label(it, &l.offering.zone, l.offering.capacity_type, k)
                    })
                    .is_ok()
                })
        })
        .collect()
}

fn one_per_host(p: &PodState) -> bool {
    let spec = &p.facts.compiled;
    spec.pod_anti_affinity
        .iter()
        .any(|t| t.topology_key == model::labels::HOSTNAME)
        || spec.topology_spread.iter().any(|c| {
            c.topology_key == model::labels::HOSTNAME
                && c.when_unsatisfiable == model::WhenUnsatisfiable::DoNotSchedule
        })
}

/// Distinct instance types among `offerings` of `capacity_type` priced below `price`.
pub fn cheaper_types(offerings: &[&Launchable], capacity_type: CapacityType, price: f64) -> usize {
    offerings
        .iter()
        .map(|l| &*l.offering)
        .filter(|o| o.capacity_type == capacity_type && o.price < price)
        .map(|o| o.instance_type.as_str())
        .collect::<BTreeSet<_>>()
        .len()
}
