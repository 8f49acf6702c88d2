//! Resource lists: named quantities (cpu, memory, pods, ephemeral-storage, extended resources).
//!
//! The four standard resources are fields (every pod and node has them, and the packer reads them in a
//! tight loop); extended resources such as `nvidia.com/gpu` live in a small sorted map.

use std::collections::BTreeMap;
use std::fmt;

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
    pub extended: BTreeMap<String, Quantity>,
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
            other => self.extended.get(other).copied().unwrap_or_default(),
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
                    self.extended.remove(other);
                } else {
                    self.extended.insert(other.to_string(), value);
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
        for (name, q) in &other.extended {
            *self.extended.entry(name.clone()).or_default() += *q;
        }
    }

    pub fn sub(&mut self, other: &ResourceList) {
        self.cpu -= other.cpu;
        self.memory -= other.memory;
        self.pods -= other.pods;
        self.ephemeral_storage -= other.ephemeral_storage;
        for (name, q) in &other.extended {
            *self.extended.entry(name.clone()).or_default() -= *q;
        }
        self.extended.retain(|_, q| !q.is_zero());
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
        for (name, q) in &other.extended {
            // No key clone when the entry exists (ceilings over thousands of offerings).
            match self.extended.get_mut(name) {
                Some(entry) => *entry = (*entry).max(*q),
                None => {
                    self.extended
                        .insert(name.clone(), (*q).max(Quantity::default()));
                }
            }
        }
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
        assert!(!a.extended.contains_key("nvidia.com/gpu"));
        let mut m = rl(&[("cpu", "1"), ("memory", "1Gi")]);
        m.max_with(&rl(&[("cpu", "2"), ("memory", "512Mi")]));
        assert_eq!(m, rl(&[("cpu", "2"), ("memory", "1Gi")]));
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
