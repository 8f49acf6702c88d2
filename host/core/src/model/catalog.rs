//! Instance types, offerings (type × zone × capacity type) and the catalog that holds them.
//!
//! The EC2 facts (labels, allocatable resources, on-demand prices for us-east-1) are embedded in the
//! binary. Zones and spot quotes are inputs: production reads them from EC2, the simulator invents them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use super::labels;
use super::quantity::{Quantity, QuantityError};
use super::requirements::Requirements;
use super::resources::ResourceList;

/// How an offering is paid for (Karpenter's `karpenter.sh/capacity-type` values): one type for the
/// core, the edges and the reports.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum CapacityType {
    OnDemand,
    Spot,
    Reserved,
}

impl CapacityType {
    pub const ALL: [CapacityType; 3] = [
        CapacityType::OnDemand,
        CapacityType::Spot,
        CapacityType::Reserved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CapacityType::OnDemand => labels::CAPACITY_ON_DEMAND,
            CapacityType::Spot => labels::CAPACITY_SPOT,
            CapacityType::Reserved => labels::CAPACITY_RESERVED,
        }
    }

    pub fn parse(s: &str) -> Option<CapacityType> {
        CapacityType::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The `karpenter.sh/capacity-type` label value (the same as [`Self::as_str`]).
    pub fn label(self) -> &'static str {
        self.as_str()
    }

    pub fn from_label(value: &str) -> Option<Self> {
        Self::parse(value)
    }

    /// The code used by the policy contract (0 on-demand, 1 spot, 2 reserved).
    pub fn code(self) -> u8 {
        match self {
            CapacityType::OnDemand => 0,
            CapacityType::Spot => 1,
            CapacityType::Reserved => 2,
        }
    }
}

impl fmt::Display for CapacityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstanceType {
    pub name: String,
    /// Well-known labels (category, family, generation, size, cpu, memory, arch, os, instance-type, ...),
    /// shared (not copied) by every offering, NodePool view and controller record of the type.
    pub labels: Arc<BTreeMap<String, String>>,
    /// What pods may use: capacity minus kubelet/system reservations and eviction thresholds.
    pub allocatable: ResourceList,
}

impl InstanceType {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// What the machine has, before kubelet/system reservations and eviction thresholds: what NodePool
    /// limits count, as Karpenter does. CPU is the vCPU count (`instance-cpu`); memory is the instance
    /// memory (`instance-memory`, less the 64 MiB Graviton reserves) minus Karpenter's default VM
    /// overhead of 7.5 % (rounded up to a MiB); the other resources (pods, GPUs, ENIs, ephemeral
    /// storage) are as allocatable. Where a label is missing or smaller, allocatable stands in.
    pub fn capacity(&self) -> ResourceList {
        let mut capacity = self.allocatable.clone();
        if let Some(vcpus) = self
            .label(labels::INSTANCE_CPU)
            .and_then(|v| v.parse::<i64>().ok())
        {
            capacity.cpu = capacity.cpu.max(Quantity::from_units(vcpus));
        }
        if let Some(mib) = self
            .label(labels::INSTANCE_MEMORY)
            .and_then(|v| v.parse::<i64>().ok())
        {
            let mib = if self.label(labels::ARCH) == Some("arm64") {
                mib - 64
            } else {
                mib
            };
            let overhead = (mib.max(0) * VM_MEMORY_OVERHEAD_PERMILLE + 999) / 1000;
            let bytes = i128::from(mib - overhead) << 20;
            capacity.memory = capacity.memory.max(Quantity::from_millis(bytes * 1000));
        }
        capacity
    }

    /// NVIDIA + AMD GPUs + Neuron devices, as the policy contract counts accelerators.
    pub fn gpus(&self) -> u32 {
        ["nvidia.com/gpu", "amd.com/gpu", "aws.amazon.com/neuron"]
            .iter()
            .map(|r| self.allocatable.get(r).units_ceil() as u32)
            .sum()
    }
}

/// Karpenter's default `vmMemoryOverheadPercent` (7.5 %), in thousandths.
const VM_MEMORY_OVERHEAD_PERMILLE: i64 = 75;

/// One way to buy an instance type: in a zone, with a capacity type, at a price.
#[derive(Debug, Clone, PartialEq)]
pub struct Offering {
    /// Index into [`Catalog::instance_types`].
    pub instance_type: usize,
    pub zone: String,
    pub capacity_type: CapacityType,
    /// USD per hour.
    pub price: f64,
    /// False while EC2 reports no capacity (insufficient-capacity errors, reservations used up).
    pub available: bool,
    /// Spot interruption signal in [0, 1]; negative = unknown; 0 for on-demand.
    pub interruption: f32,
    /// Capacity (placement) score in [0, 1]; negative = unknown.
    pub capacity_score: f32,
}

/// A spot quote for one (instance type, zone), supplied by the caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpotQuote {
    pub price: f64,
    pub interruption: f32,
    pub capacity_score: f32,
    pub available: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("embedded catalog data {file}: {source}")]
    Json {
        file: &'static str,
        source: serde_json::Error,
    },
    #[error("instance type {name}: allocatable {resource}: {source}")]
    Quantity {
        name: String,
        resource: String,
        source: QuantityError,
    },
    #[error(
        "offering {index} names instance type index {instance_type}, but the catalog has {count}"
    )]
    UnknownInstanceType {
        index: usize,
        instance_type: usize,
        count: usize,
    },
}

/// The instance types and offerings a region has now. Immutable; share it as `Arc<Catalog>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    /// Changes whenever any fact changes (policies cache the catalog by revision).
    pub revision: u64,
    pub instance_types: Vec<InstanceType>,
    pub offerings: Vec<Offering>,
    by_name: HashMap<String, usize>,
    /// Zone name → zone ID as the cloud reports it (`topology.k8s.aws/zone-id`); zones missing here get
    /// the conventional ID ([`labels::conventional_zone_id`]).
    zone_ids: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct TypesFile {
    #[serde(rename = "instanceTypes")]
    instance_types: Vec<TypeEntry>,
}

#[derive(Deserialize)]
struct TypeEntry {
    name: String,
    labels: BTreeMap<String, String>,
    allocatable: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct PricesFile {
    #[serde(rename = "onDemand")]
    on_demand: BTreeMap<String, f64>,
}

const TYPES_JSON: &str = include_str!("../../../data/ec2-instance-types.json");
const PRICES_JSON: &str = include_str!("../../../data/ec2-on-demand-prices-us-east-1.json");

/// The embedded EC2 instance types (parsed once per process).
pub fn ec2_instance_types() -> Result<&'static [InstanceType], &'static CatalogError> {
    static TYPES: OnceLock<Result<Vec<InstanceType>, CatalogError>> = OnceLock::new();
    TYPES
        .get_or_init(|| {
            let file: TypesFile =
                serde_json::from_str(TYPES_JSON).map_err(|source| CatalogError::Json {
                    file: "ec2-instance-types.json",
                    source,
                })?;
            file.instance_types
                .into_iter()
                .map(|t| {
                    let mut allocatable = ResourceList::new();
                    for (resource, value) in &t.allocatable {
                        let q = value.parse().map_err(|source| CatalogError::Quantity {
                            name: t.name.clone(),
                            resource: resource.clone(),
                            source,
                        })?;
                        allocatable.set(resource, q);
                    }
                    let mut type_labels = t.labels;
                    type_labels
                        .entry(labels::INSTANCE_TENANCY.to_string())
                        .or_insert_with(|| labels::TENANCY_DEFAULT.to_string());
                    Ok(InstanceType {
                        name: t.name,
                        labels: Arc::new(type_labels),
                        allocatable,
                    })
                })
                .collect()
        })
        .as_ref()
        .map(Vec::as_slice)
}

/// One embedded EC2 instance type by name (e.g. for a node whose type a narrowed catalog left out).
pub fn ec2_instance_type(name: &str) -> Option<&'static InstanceType> {
    static BY_NAME: OnceLock<HashMap<&'static str, usize>> = OnceLock::new();
    let all = ec2_instance_types().ok()?;
    let index = BY_NAME.get_or_init(|| {
        all.iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i))
            .collect()
    });
    index.get(name).map(|&i| &all[i])
}

/// The embedded on-demand prices for us-east-1, USD per hour by instance type name.
pub fn ec2_on_demand_prices() -> Result<&'static BTreeMap<String, f64>, &'static CatalogError> {
    static PRICES: OnceLock<Result<BTreeMap<String, f64>, CatalogError>> = OnceLock::new();
    PRICES
        .get_or_init(|| {
            serde_json::from_str::<PricesFile>(PRICES_JSON)
                .map(|p| p.on_demand)
                .map_err(|source| CatalogError::Json {
                    file: "ec2-on-demand-prices-us-east-1.json",
                    source,
                })
        })
        .as_ref()
}

impl Catalog {
    /// A catalog from explicit parts (tests, the simulator, the AWS adapter).
    pub fn new(
        instance_types: Vec<InstanceType>,
        offerings: Vec<Offering>,
    ) -> Result<Catalog, CatalogError> {
        for (index, o) in offerings.iter().enumerate() {
            if o.instance_type >= instance_types.len() {
                return Err(CatalogError::UnknownInstanceType {
                    index,
                    instance_type: o.instance_type,
                    count: instance_types.len(),
                });
            }
        }
        let by_name = instance_types
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let revision = fingerprint(&instance_types, &offerings);
        Ok(Catalog {
            revision,
            instance_types,
            offerings,
            by_name,
            zone_ids: BTreeMap::new(),
        })
    }

    /// The catalog with the zone IDs the cloud reported (zone name → ID).
    pub fn with_zone_ids(mut self, zone_ids: BTreeMap<String, String>) -> Catalog {
        let mut h = self.revision;
        for (zone, id) in &zone_ids {
            for b in zone.bytes().chain(id.bytes()) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x100000001b3);
            }
        }
        self.revision = h;
        self.zone_ids = zone_ids;
        self
    }

    /// The zone ID of `zone`: the one the cloud reported, else the conventional one.
    pub fn zone_id(&self, zone: &str) -> Option<String> {
        self.zone_ids
            .get(zone)
            .cloned()
            .or_else(|| labels::conventional_zone_id(zone))
    }

    /// The embedded EC2 catalog in `zones`: an on-demand offering per priced type and zone, plus a spot
    /// offering wherever `spot` quotes one. Types without an on-demand price are not offered.
    pub fn ec2(
        zones: &[&str],
        spot: impl Fn(&InstanceType, &str) -> Option<SpotQuote>,
    ) -> Result<Catalog, CatalogError> {
        let all = ec2_instance_types().map_err(clone_error)?;
        let prices = ec2_on_demand_prices().map_err(clone_error)?;
        let mut types = Vec::new();
        let mut offerings = Vec::new();
        for t in all {
            let Some(&price) = prices.get(&t.name) else {
                continue;
            };
            let index = types.len();
            types.push(t.clone());
            for zone in zones {
                offerings.push(Offering {
                    instance_type: index,
                    zone: zone.to_string(),
                    capacity_type: CapacityType::OnDemand,
                    price,
                    available: true,
                    interruption: 0.0,
                    capacity_score: -1.0,
                });
                if let Some(q) = spot(t, zone) {
                    offerings.push(Offering {
                        instance_type: index,
                        zone: zone.to_string(),
                        capacity_type: CapacityType::Spot,
                        price: q.price,
                        available: q.available,
                        interruption: q.interruption,
                        capacity_score: q.capacity_score,
                    });
                }
            }
        }
        Catalog::new(types, offerings)
    }

    /// On-demand only, in the given zones.
    pub fn ec2_on_demand(zones: &[&str]) -> Result<Catalog, CatalogError> {
        Catalog::ec2(zones, |_, _| None)
    }

    pub fn instance_type(&self, name: &str) -> Option<&InstanceType> {
        self.by_name.get(name).map(|&i| &self.instance_types[i])
    }

    pub fn instance_type_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The zones any offering is in, sorted.
    pub fn zones(&self) -> Vec<String> {
        let zones: std::collections::BTreeSet<&str> =
            self.offerings.iter().map(|o| o.zone.as_str()).collect();
        zones.into_iter().map(str::to_string).collect()
    }

    /// The labels a node launched from this offering carries (instance type labels + zone, its region
    /// and zone ID + capacity type).
    pub fn offering_labels(&self, offering: &Offering) -> BTreeMap<String, String> {
        let mut l = (*self.instance_types[offering.instance_type].labels).clone();
        l.extend(self.zone_labels(&offering.zone));
        l.insert(
            labels::CAPACITY_TYPE.into(),
            offering.capacity_type.as_str().into(),
        );
        l
    }

    /// The labels a node in `zone` carries for it: the zone, its region and its zone ID (the last two
    /// when known).
    pub fn zone_labels(&self, zone: &str) -> Vec<(String, String)> {
        let mut out = labels::zone_labels(zone);
        if let Some(id) = self.zone_ids.get(zone) {
            out.retain(|(k, _)| k != labels::ZONE_ID);
            out.push((labels::ZONE_ID.to_string(), id.clone()));
        }
        out
    }

    /// The offering's labels as requirements (for the algebra).
    pub fn offering_requirements(&self, offering: &Offering) -> Requirements {
        Requirements::from_labels(&self.offering_labels(offering))
    }

    /// A copy with some offerings marked (un)available, e.g. after an insufficient-capacity error.
    pub fn with_availability(&self, available: impl Fn(&Offering) -> bool) -> Catalog {
        let offerings = self
            .offerings
            .iter()
            .map(|o| Offering {
                available: available(o),
                ..o.clone()
            })
            .collect();
        Catalog::new(self.instance_types.clone(), offerings)
            .expect("same instance types")
            .with_zone_ids(self.zone_ids.clone())
    }
}

fn clone_error(e: &CatalogError) -> CatalogError {
    match e {
        CatalogError::Json { file, source } => CatalogError::Json {
            file,
            source: serde_json::Error::io(std::io::Error::other(source.to_string())),
        },
        CatalogError::Quantity {
            name,
            resource,
            source,
        } => CatalogError::Quantity {
            name: name.clone(),
            resource: resource.clone(),
            source: source.clone(),
        },
        CatalogError::UnknownInstanceType {
            index,
            instance_type,
            count,
        } => CatalogError::UnknownInstanceType {
            index: *index,
            instance_type: *instance_type,
            count: *count,
        },
    }
}

/// FNV-1a over the facts, so equal catalogs get equal revisions in every process.
fn fingerprint(types: &[InstanceType], offerings: &[Offering]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
    };
    for t in types {
        eat(t.name.as_bytes());
        eat(t.allocatable.to_string().as_bytes());
    }
    for o in offerings {
        eat(&(o.instance_type as u64).to_le_bytes());
        eat(o.zone.as_bytes());
        eat(&[o.capacity_type.code(), o.available as u8]);
        eat(&o.price.to_bits().to_le_bytes());
        eat(&o.interruption.to_bits().to_le_bytes());
        eat(&o.capacity_score.to_bits().to_le_bytes());
    }
    h
}

/// Shared handle used by snapshots.
pub type SharedCatalog = Arc<Catalog>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_loads_and_skips_unpriced_types() {
        let all = ec2_instance_types().unwrap();
        assert!(all.len() > 1000);
        let cat = Catalog::ec2_on_demand(&["us-east-1a", "us-east-1b"]).unwrap();
        assert!(cat.instance_types.len() < all.len());
        assert_eq!(cat.offerings.len(), cat.instance_types.len() * 2);
        let m5 = cat.instance_type("m5.large").unwrap();
        assert_eq!(m5.label(labels::INSTANCE_CATEGORY), Some("m"));
        assert!(m5.allocatable.cpu.millis() > 1000);
        assert_eq!(cat.zones(), vec!["us-east-1a", "us-east-1b"]);
    }

    #[test]
    fn capacity_is_the_machine_not_allocatable() {
        // (type, cpu millis, memory MiB): vCPUs; memory less 7.5 % VM overhead (and 64 MiB on Graviton).
        let cases = [
            ("m5.xlarge", 4000, 16384 - 1229),
            ("m5.large", 2000, 8192 - 615),
            ("m6g.xlarge", 4000, 16320 - 1224),
        ];
        let all = ec2_instance_types().unwrap();
        for (name, cpu, mib) in cases {
            let t = all.iter().find(|t| t.name == name).unwrap();
            let c = t.capacity();
            assert_eq!(c.cpu.millis(), cpu, "{name}");
            assert_eq!(c.memory.units_ceil(), i128::from(mib) << 20, "{name}");
            assert_eq!(c.pods, t.allocatable.pods, "{name}");
            assert!(t.allocatable.fits_in(&c), "{name}");
        }
    }

    #[test]
    fn offerings_carry_region_zone_id_and_tenancy() {
        let cat = Catalog::ec2_on_demand(&["us-east-1b"]).unwrap();
        let l = cat.offering_labels(&cat.offerings[0]);
        assert_eq!(l[labels::REGION], "us-east-1");
        assert_eq!(l[labels::ZONE_ID], "use1-az2");
        assert_eq!(l[labels::INSTANCE_TENANCY], "default");
        // A zone ID the cloud reported wins over the conventional one, and changes the revision.
        let reported = cat
            .clone()
            .with_zone_ids(BTreeMap::from([("us-east-1b".into(), "use1-az6".into())]));
        assert_eq!(
            reported.offering_labels(&reported.offerings[0])[labels::ZONE_ID],
            "use1-az6"
        );
        assert_ne!(reported.revision, cat.revision);
        assert_eq!(
            reported
                .with_availability(|_| true)
                .zone_id("us-east-1b")
                .as_deref(),
            Some("use1-az6")
        );
    }

    #[test]
    fn spot_quotes_add_offerings_and_change_the_revision() {
        let od = Catalog::ec2_on_demand(&["z1"]).unwrap();
        let spot = Catalog::ec2(&["z1"], |t, _| {
            (t.name == "m5.large").then_some(SpotQuote {
                price: 0.03,
                interruption: 0.1,
                capacity_score: 0.9,
                available: true,
            })
        })
        .unwrap();
        assert_eq!(spot.offerings.len(), od.offerings.len() + 1);
        assert_ne!(spot.revision, od.revision);
        let o = spot
            .offerings
            .iter()
            .find(|o| o.capacity_type == CapacityType::Spot)
            .unwrap();
        assert_eq!(spot.offering_labels(o)[labels::CAPACITY_TYPE], "spot");
    }
}
