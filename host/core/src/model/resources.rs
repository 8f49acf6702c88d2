//! Resource lists: named quantities (cpu, memory, pods, ephemeral-storage, extended resources).
//!
//! The four standard resources are fields (every pod and node has them, and the packer reads them in a
//! tight loop); extended resources such as `nvidia.com/gpu` live in a small sorted map.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::quantity::{Quantity, QuantityError};

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const PODS: &str = "pods";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const NVIDIA_GPU: &str = "nvidia.com/gpu";
pub const AMD_GPU: &str = "amd.com/gpu";

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ResourceList {
    pub cpu: Quantity,
    pub memory: Quantity,
    pub pods: Quantity,
    pub ephemeral_storage: Quantity,
    /// Extended resources (`nvidia.com/gpu`, `vpc.amazonaws.com/pod-eni`, ...), zero entries omitted.
    extended: Extended,
}

/// Extended resources, shared between copies until one of them changes: an instance type's
/// allocatable is copied into every NodePool's view of each of its offerings (thousands per pool, in
/// the planner and the disruptor), and almost no copy changes its extended part (DaemonSets rarely ask
/// for one). A deep copy per offering made up most of the memory of 200 NodePools.
///
/// Never `Some` of an empty map, so that equal lists compare and hash equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct Extended(Option<Arc<BTreeMap<String, Quantity>>>);

impl Extended {
    fn get(&self, name: &str) -> Option<Quantity> {
        self.0.as_ref()?.get(name).copied()
    }

    fn iter(&self) -> impl Iterator<Item = (&String, &Quantity)> {
        self.0.iter().flat_map(|m| m.iter())
    }

    fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The map, to change: copied first if another list shares it.
    fn make_mut(&mut self) -> &mut BTreeMap<String, Quantity> {
        Arc::make_mut(self.0.get_or_insert_with(Default::default))
    }

    /// Drops zero entries (and the map, when none is left); copies only when there is one to drop.
    fn drop_zeros(&mut self) {
        if self.iter().any(|(_, q)| q.is_zero()) {
            self.make_mut().retain(|_, q| !q.is_zero());
        }
        if self.0.as_ref().is_some_and(|m| m.is_empty()) {
            self.0 = None;
        }
    }
}

/// The room a node of an instance type leaves after an overhead (its DaemonSets' requests), one shared
/// list per (instance type, overhead): many NodePools over one catalog ask for the same ones, thousands
/// each. The caller empties it when the instance types it indexes change.
#[derive(Debug, Default)]
pub struct RoomCache(std::collections::HashMap<(usize, ResourceList), Arc<ResourceList>>);

impl RoomCache {
    /// `allocatable - overhead` for the instance type at `index` (whose allocatable `allocatable` is).
    pub fn room(
        &mut self,
        index: usize,
        allocatable: &ResourceList,
        overhead: &ResourceList,
    ) -> Arc<ResourceList> {
        if let Some(room) = self.0.get(&(index, overhead.clone())) {
            return room.clone();
        }
        let room = Arc::new(allocatable.minus(overhead));
        self.0.insert((index, overhead.clone()), room.clone());
        room
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// One resource that did not fit: what was asked, what was free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub resource: String,
    pub requested: Quantity,
    pub available: Quantity,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requested {} but only {} available",
            self.resource, self.requested, self.available
        )
    }
}

impl ResourceList {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a map of quantity strings (as in a manifest); `field` names where the map came from.
    pub fn parse<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, QuantityError> {
        let mut list = ResourceList::new();
        for (name, value) in entries {
            list.set(name, Quantity::parse(value)?);
        }
        Ok(list)
    }

    pub fn with(mut self, name: &str, value: Quantity) -> Self {
        self.set(name, value);
        self
    }

    pub fn get(&self, name: &str) -> Quantity {
        match name {
            CPU => self.cpu,
            MEMORY => self.memory,
            PODS => self.pods,
            EPHEMERAL_STORAGE => self.ephemeral_storage,
            other => self.extended.get(other).unwrap_or_default(),
        }
    }

    pub fn set(&mut self, name: &str, value: Quantity) {
        match name {
            CPU => self.cpu = value,
            MEMORY => self.memory = value,
            PODS => self.pods = value,
            EPHEMERAL_STORAGE => self.ephemeral_storage = value,
            other => {
                if value.is_zero() {
                    if self.extended.get(other).is_some() {
                        self.extended.make_mut().remove(other);
                        self.extended.drop_zeros();
                    }
                } else {
                    self.extended.make_mut().insert(other.to_string(), value);
                }
            }
        }
    }

    /// Every (name, quantity) pair, standard resources first, zero standard ones included.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Quantity)> {
        [
            (CPU, self.cpu),
            (MEMORY, self.memory),
            (PODS, self.pods),
            (EPHEMERAL_STORAGE, self.ephemeral_storage),
        ]
        .into_iter()
        .chain(self.extended.iter().map(|(k, v)| (k.as_str(), *v)))
    }

    /// Names of the non-zero resources.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.iter().filter(|(_, q)| !q.is_zero()).map(|(n, _)| n)
    }

    pub fn is_zero(&self) -> bool {
        self.iter().all(|(_, q)| q.is_zero())
    }

    pub fn add(&mut self, other: &ResourceList) {
        self.cpu += other.cpu;
        self.memory += other.memory;
        self.pods += other.pods;
        self.ephemeral_storage += other.ephemeral_storage;
        if other.extended.is_empty() {
            return;
        }
        let mine = self.extended.make_mut();
        for (name, q) in other.extended.iter() {
            *mine.entry(name.clone()).or_default() += *q;
        }
    }

    pub fn sub(&mut self, other: &ResourceList) {
        self.cpu -= other.cpu;
        self.memory -= other.memory;
        self.pods -= other.pods;
        self.ephemeral_storage -= other.ephemeral_storage;
        if !other.extended.is_empty() {
            let mine = self.extended.make_mut();
            for (name, q) in other.extended.iter() {
                *mine.entry(name.clone()).or_default() -= *q;
            }
        }
        self.extended.drop_zeros();
    }

    pub fn plus(&self, other: &ResourceList) -> ResourceList {
        let mut sum = self.clone();
        sum.add(other);
        sum
    }

    pub fn minus(&self, other: &ResourceList) -> ResourceList {
        let mut difference = self.clone();
        difference.sub(other);
        difference
    }

    /// Element-wise maximum (the init-container rule).
    pub fn max_with(&mut self, other: &ResourceList) {
        self.cpu = self.cpu.max(other.cpu);
        self.memory = self.memory.max(other.memory);
        self.pods = self.pods.max(other.pods);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, q) in other.extended.iter() {
            // No copy and no key clone when the entry already holds at least as much (ceilings
            // over thousands of offerings).
            let floor = (*q).max(Quantity::default());
            let mine = self.extended.get(name).unwrap_or_default();
            if mine >= floor {
                continue;
            }
            self.extended.make_mut().insert(name.clone(), floor);
        }
        self.extended.drop_zeros();
    }

    /// Whether `self` (a request) fits in `available`: every requested resource, extended ones included.
    pub fn fits_in(&self, available: &ResourceList) -> bool {
        // The hot path of every fit check: the same rule as `first_shortfall`, without name lookups.
        let within = |requested: Quantity, free: Quantity| requested.is_zero() || requested <= free;
        within(self.cpu, available.cpu)
            && within(self.memory, available.memory)
            && within(self.pods, available.pods)
            && within(self.ephemeral_storage, available.ephemeral_storage)
            && self
                .extended
                .iter()
                .all(|(name, &q)| within(q, available.get(name)))
    }

    /// The shares of `total`'s CPU and memory that `self` uses (0 where `total` has none).
    pub fn cpu_memory_shares(&self, total: &ResourceList) -> (f64, f64) {
        let share = |used: Quantity, have: Quantity| {
            if have.is_zero() || have < Quantity::ZERO {
                0.0
            } else {
                used.millis() as f64 / have.millis() as f64
            }
        };
        (share(self.cpu, total.cpu), share(self.memory, total.memory))
    }

    /// Whether `self` fits in what `used` leaves of `total`, without building `total - used`.
    pub fn fits_in_remaining(&self, total: &ResourceList, used: &ResourceList) -> bool {
        let within = |requested: Quantity, total: Quantity, used: Quantity| {
            requested.is_zero() || requested <= total - used
        };
        within(self.cpu, total.cpu, used.cpu)
            && within(self.memory, total.memory, used.memory)
            && within(self.pods, total.pods, used.pods)
            && within(
                self.ephemeral_storage,
                total.ephemeral_storage,
                used.ephemeral_storage,
            )
            && self
                .extended
                .iter()
                .all(|(name, &q)| within(q, total.get(name), used.get(name)))
    }

    /// The first resource `self` asks for beyond `available`, if any.
    pub fn first_shortfall(&self, available: &ResourceList) -> Option<Shortfall> {
        self.iter()
            .filter(|(_, requested)| !requested.is_zero())
            .find_map(|(name, requested)| {
                let free = available.get(name);
                (requested > free).then(|| Shortfall {
                    resource: name.to_string(),
                    requested,
                    available: free,
                })
            })
    }
}

impl fmt::Display for ResourceList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, q) in self.iter().filter(|(_, q)| !q.is_zero()) {
            if !first {
                write!(f, ", ")?;
            }
            first = false;
            if name == MEMORY || name == EPHEMERAL_STORAGE {
                write!(f, "{name}={}Mi", q.units_ceil() / (1 << 20))?;
            } else {
                write!(f, "{name}={q}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rl(entries: &[(&str, &str)]) -> ResourceList {
        ResourceList::parse(entries.iter().copied()).unwrap()
    }

    #[test]
    fn fits_compares_every_requested_resource() {
        let node = rl(&[("cpu", "2"), ("memory", "4Gi"), ("pods", "10")]);
        assert!(rl(&[("cpu", "1500m"), ("memory", "4Gi")]).fits_in(&node));
        let gpu = rl(&[("cpu", "1"), ("nvidia.com/gpu", "1")]);
        let short = gpu.first_shortfall(&node).unwrap();
        assert_eq!(short.resource, "nvidia.com/gpu");
        assert!(!rl(&[("cpu", "3")]).fits_in(&node));
    }

    #[test]
    fn arithmetic_and_max() {
        let mut a = rl(&[("cpu", "1"), ("nvidia.com/gpu", "1")]);
        a.add(&rl(&[("cpu", "500m"), ("nvidia.com/gpu", "1")]));
        assert_eq!(a.get("cpu"), Quantity::from_millis(1500));
        assert_eq!(a.get("nvidia.com/gpu"), Quantity::from_units(2));
        a.sub(&rl(&[("nvidia.com/gpu", "2")]));
        assert!(a.extended.get("nvidia.com/gpu").is_none());
        let mut m = rl(&[("cpu", "1"), ("memory", "1Gi")]);
        m.max_with(&rl(&[("cpu", "2"), ("memory", "512Mi")]));
        assert_eq!(m, rl(&[("cpu", "2"), ("memory", "1Gi")]));
    }

    #[test]
    fn copies_share_extended_resources_until_one_changes() {
        let allocatable = rl(&[("cpu", "4"), ("vpc.amazonaws.com/pod-eni", "9")]);
        let room = allocatable.minus(&rl(&[("cpu", "100m")]));
        let (Some(a), Some(b)) = (&allocatable.extended.0, &room.extended.0) else {
            panic!("both lists have an extended resource");
        };
        assert!(Arc::ptr_eq(a, b), "a change to cpu alone copies no map");
        let mut changed = room.clone();
        changed.sub(&rl(&[("vpc.amazonaws.com/pod-eni", "2")]));
        assert_eq!(
            changed.get("vpc.amazonaws.com/pod-eni"),
            Quantity::from_units(7)
        );
        assert_eq!(
            room.get("vpc.amazonaws.com/pod-eni"),
            Quantity::from_units(9)
        );
        changed.sub(&rl(&[("vpc.amazonaws.com/pod-eni", "7")]));
        assert_eq!(
            changed,
            rl(&[("cpu", "3900m")]),
            "no map is left once it is all zeros"
        );
        let mut ceiling = rl(&[("cpu", "1")]);
        ceiling.max_with(&rl(&[("nvidia.com/gpu", "-1")]));
        assert_eq!(
            ceiling,
            rl(&[("cpu", "1")]),
            "a negative extended quantity adds no entry"
        );
    }

    fn list(values: &[i64]) -> ResourceList {
        let names = [CPU, MEMORY, PODS, EPHEMERAL_STORAGE, NVIDIA_GPU, AMD_GPU];
        let mut l = ResourceList::new();
        for (name, &v) in names.iter().zip(values) {
            // Negative free room happens (over-committed nodes); zero requests must be ignored.
            l.set(name, Quantity::from_millis(i128::from(v)));
        }
        l
    }

    proptest::proptest! {
        #[test]
        fn fits_in_agrees_with_first_shortfall(
            requested in proptest::collection::vec(-2i64..6, 6),
            free in proptest::collection::vec(-2i64..6, 6),
        ) {
            let (r, f) = (list(&requested), list(&free));
            proptest::prop_assert_eq!(r.fits_in(&f), r.first_shortfall(&f).is_none());
            let used = list(&requested[3..]);
            proptest::prop_assert_eq!(
                r.fits_in_remaining(&f, &used),
                r.fits_in(&f.minus(&used))
            );
        }
    }
}
