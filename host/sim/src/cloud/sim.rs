//! The virtual cloud: EC2 as the simulator needs it.
//!
//! Launches succeed after a seeded launch-to-ready latency unless a capacity outage covers the offering,
//! in which case the next ranked offering is tried (CreateFleet's fall-through). Spot prices are a seeded
//! discount per instance family and zone. Interruptions are injected by the replay: a 2-minute warning,
//! optionally preceded by a rebalance recommendation, then termination. Every instance ever launched is
//! kept, so the report can bill it and check that none outlived its node.

use std::collections::{BTreeMap, HashMap};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{
    CapacityType, CloudError, CloudProvider, Instance, InstanceState, LaunchRequest, Launched,
    Listing, OfferingError, OfferingFailure, SpotPrice,
};
use crate::clock::Millis;

/// EC2's spot interruption notice comes two minutes before the instance is reclaimed.
pub const SPOT_WARNING_MS: Millis = 120_000;

/// A uniform range of launch-to-ready latency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyRange {
    pub min_ms: Millis,
    pub max_ms: Millis,
}

impl Default for LatencyRange {
    fn default() -> Self {
        LatencyRange {
            min_ms: 45_000,
            max_ms: 60_000,
        }
    }
}

/// No capacity for matching offerings during `[from, to)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CapacityOutage {
    pub from: Millis,
    pub to: Millis,
    /// Instance type names or family prefixes ("m5" matches every m5.*); empty = every type.
    pub instance_types: Vec<String>,
    /// Empty = every zone.
    pub zones: Vec<String>,
    /// None = both capacity types.
    pub capacity_type: Option<CapacityType>,
}

impl CapacityOutage {
    fn covers(&self, instance_type: &str, zone: &str, ct: CapacityType, now: Millis) -> bool {
        let family = instance_type.split('.').next().unwrap_or(instance_type);
        now >= self.from
            && now < self.to
            && (self.instance_types.is_empty()
                || self
                    .instance_types
                    .iter()
                    .any(|t| t == instance_type || t == family))
            && (self.zones.is_empty() || self.zones.iter().any(|z| z == zone))
            && self.capacity_type.is_none_or(|c| c == ct)
    }
}

/// How the virtual cloud's API misbehaves, the way EC2's does (all off by default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiFaults {
    /// DescribeInstances is eventually consistent: an instance launched less than this long ago is
    /// missing from listings.
    pub listing_lag_ms: Millis,
    /// Listings during these `[from, to)` windows fail.
    pub failed_listings: Vec<(Millis, Millis)>,
    /// Listings during these windows come back incomplete (a page failed part-way).
    pub partial_listings: Vec<(Millis, Millis)>,
    /// Every n-th mutating call (launch, terminate) answers `RequestLimitExceeded` and does nothing
    /// (0 = never).
    pub throttle_every: u32,
}

fn within(windows: &[(Millis, Millis)], now: Millis) -> bool {
    windows.iter().any(|&(from, to)| now >= from && now < to)
}

#[derive(Debug, Clone)]
pub struct SimCloudConfig {
    pub seed: u64,
    pub zones: Vec<String>,
    pub launch_latency: LatencyRange,
    pub outages: Vec<CapacityOutage>,
    /// Spot price as a fraction of on-demand: each (family, zone) draws a value in this range.
    pub spot_price_ratio: (f64, f64),
    /// Explicit spot prices that override the model: instance type -> zone -> USD/hour.
    pub spot_price_table: BTreeMap<String, BTreeMap<String, f64>>,
    pub faults: ApiFaults,
}

impl Default for SimCloudConfig {
    fn default() -> Self {
        SimCloudConfig {
            seed: 1,
            zones: vec![
                "us-east-1a".into(),
                "us-east-1b".into(),
                "us-east-1c".into(),
            ],
            launch_latency: LatencyRange::default(),
            outages: Vec::new(),
            spot_price_ratio: (0.30, 0.45),
            spot_price_table: BTreeMap::new(),
            faults: ApiFaults::default(),
        }
    }
}

/// What the virtual cloud tells the rest of the simulation, at a given time.
#[derive(Debug, Clone, PartialEq)]
pub enum CloudEvent {
    /// The instance booted and its kubelet registers the node.
    Running { instance_id: String },
    /// EventBridge "EC2 Instance Rebalance Recommendation".
    RebalanceRecommendation { instance_id: String },
    /// EventBridge "EC2 Spot Instance Interruption Warning"; termination follows at `terminate_at`.
    SpotInterruptionWarning {
        instance_id: String,
        terminate_at: Millis,
    },
    /// The instance is gone (reclaimed, or deleted by the controller).
    Terminated { instance_id: String },
}

/// One instance's bill and life, for the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InstanceRecord {
    pub instance: Instance,
    pub running_at: Option<Millis>,
    pub terminated_at: Option<Millis>,
    pub interrupted: bool,
}

#[derive(Debug)]
pub struct SimCloud {
    config: SimCloudConfig,
    on_demand: HashMap<String, f64>,
    rng: SmallRng,
    records: Vec<InstanceRecord>,
    by_id: HashMap<String, usize>,
    by_claim: HashMap<String, usize>,
    outbox: Vec<(Millis, CloudEvent)>,
    next_id: u64,
    /// Mutating calls so far (for [`ApiFaults::throttle_every`]).
    mutating_calls: u64,
    /// The last price list read and the types it was read for: prices never move during a replay,
    /// so a read for the same types (every five minutes, for the whole catalog) is answered from
    /// here instead of re-deriving thousands of prices (it was two thirds of an idle replay's time).
    price_list: Option<(Vec<String>, Vec<SpotPrice>)>,
}

impl SimCloud {
    /// `on_demand` holds the on-demand price of every instance type the region offers.
    pub fn new(config: SimCloudConfig, on_demand: HashMap<String, f64>) -> Self {
        let rng = SmallRng::seed_from_u64(config.seed ^ 0xC10D_C10D);
        SimCloud {
            config,
            on_demand,
            rng,
            records: Vec::new(),
            by_id: HashMap::new(),
            by_claim: HashMap::new(),
            outbox: Vec::new(),
            mutating_calls: 0,
            next_id: 1,
            price_list: None,
        }
    }

    pub fn zones(&self) -> &[String] {
        &self.config.zones
    }

    pub fn on_demand_price(&self, instance_type: &str) -> Option<f64> {
        self.on_demand.get(instance_type).copied()
    }

    /// The modelled spot price: a seeded fraction of on-demand, fixed per (family, zone), unless the
    /// scenario's table names one.
    pub fn spot_price(&self, instance_type: &str, zone: &str) -> Option<f64> {
        if let Some(price) = self
            .config
            .spot_price_table
            .get(instance_type)
            .and_then(|zones| zones.get(zone))
        {
            return Some(*price);
        }
        let on_demand = self.on_demand_price(instance_type)?;
        let family = instance_type.split('.').next().unwrap_or(instance_type);
        let (lo, hi) = self.config.spot_price_ratio;
        let unit = unit_hash(self.config.seed, family, zone);
        Some(round_price(on_demand * (lo + (hi - lo) * unit)))
    }

    /// The price this instance is billed at.
    pub fn price_of(&self, instance_type: &str, zone: &str, ct: CapacityType) -> Option<f64> {
        match ct {
            CapacityType::Spot => self.spot_price(instance_type, zone),
            CapacityType::OnDemand | CapacityType::Reserved => self.on_demand_price(instance_type),
        }
    }

    /// Events produced since the last call, for the replay's queue.
    pub fn drain_events(&mut self) -> Vec<(Millis, CloudEvent)> {
        std::mem::take(&mut self.outbox)
    }

    /// Marks an instance running (the replay calls it when the `Running` event fires). Returns false if
    /// the instance was terminated meanwhile.
    pub fn mark_running(&mut self, instance_id: &str, now: Millis) -> bool {
        let Some(&i) = self.by_id.get(instance_id) else {
            return false;
        };
        let record = &mut self.records[i];
        if record.instance.state != InstanceState::Pending {
            return false;
        }
        record.instance.state = InstanceState::Running;
        record.running_at = Some(now);
        true
    }

    /// Reclaims a spot instance: a rebalance recommendation `rebalance_lead` before the warning (if
    /// any), the 2-minute warning at `now`, then termination.
    pub fn interrupt(&mut self, instance_id: &str, now: Millis, rebalance_lead: Option<Millis>) {
        let Some(&i) = self.by_id.get(instance_id) else {
            return;
        };
        let record = &mut self.records[i];
        if matches!(
            record.instance.state,
            InstanceState::ShuttingDown | InstanceState::Terminated
        ) || record.interrupted
        {
            return;
        }
        record.interrupted = true;
        let id = instance_id.to_string();
        let warn_at = now + rebalance_lead.unwrap_or(0);
        if rebalance_lead.is_some() {
            self.outbox.push((
                now,
                CloudEvent::RebalanceRecommendation {
                    instance_id: id.clone(),
                },
            ));
        }
        self.outbox.push((
            warn_at,
            CloudEvent::SpotInterruptionWarning {
                instance_id: id.clone(),
                terminate_at: warn_at + SPOT_WARNING_MS,
            },
        ));
        self.outbox.push((
            warn_at + SPOT_WARNING_MS,
            CloudEvent::Terminated { instance_id: id },
        ));
    }

    /// Reclaim-time termination (the `Terminated` event of an interruption fires).
    pub fn reclaim(&mut self, instance_id: &str, now: Millis) -> bool {
        self.terminate_record(instance_id, now)
    }

    /// Spot instances not yet terminated nor already interrupted, matching the filter, oldest first.
    pub fn interruptible(&self, zones: &[String], instance_types: &[String]) -> Vec<String> {
        self.records
            .iter()
            .filter(|r| {
                r.instance.offering.capacity_type == CapacityType::Spot
                    && !r.interrupted
                    && matches!(
                        r.instance.state,
                        InstanceState::Pending | InstanceState::Running
                    )
                    && (zones.is_empty() || zones.contains(&r.instance.offering.zone))
                    && (instance_types.is_empty() || {
                        let t = &r.instance.offering.instance_type;
                        let family = t.split('.').next().unwrap_or(t);
                        instance_types.iter().any(|x| x == t || x == family)
                    })
            })
            .map(|r| r.instance.id.clone())
            .collect()
    }

    /// A seeded draw, for the replay's choices about which instances a storm hits.
    pub fn rng(&mut self) -> &mut SmallRng {
        &mut self.rng
    }

    pub fn records(&self) -> &[InstanceRecord] {
        &self.records
    }

    pub fn instance(&self, instance_id: &str) -> Option<&Instance> {
        self.by_id
            .get(instance_id)
            .map(|&i| &self.records[i].instance)
    }

    /// Counts a mutating call and answers `RequestLimitExceeded` for every n-th.
    fn throttle(&mut self, action: &str) -> Result<(), CloudError> {
        self.mutating_calls += 1;
        let every = u64::from(self.config.faults.throttle_every);
        if every > 0 && self.mutating_calls.is_multiple_of(every) {
            return Err(CloudError::Throttled(format!(
                "{action}: RequestLimitExceeded (simulated)"
            )));
        }
        Ok(())
    }

    /// Launches an instance Kestrel did not launch (a managed node group's): untagged, no claim.
    /// Returns its id.
    pub fn add_foreign_instance(&mut self, offering: super::Offering, now: Millis) -> String {
        let id = format!("i-{:017x}", self.next_id);
        self.next_id += 1;
        self.by_id.insert(id.clone(), self.records.len());
        self.records.push(InstanceRecord {
            instance: Instance {
                id: id.clone(),
                claim: String::new(),
                node_pool: String::new(),
                offering,
                launched_at: now,
                state: InstanceState::Running,
            },
            running_at: Some(now),
            terminated_at: None,
            interrupted: false,
        });
        id
    }

    fn terminate_record(&mut self, instance_id: &str, now: Millis) -> bool {
        let Some(&i) = self.by_id.get(instance_id) else {
            return false;
        };
        let record = &mut self.records[i];
        if record.instance.state == InstanceState::Terminated {
            return false;
        }
        record.instance.state = InstanceState::Terminated;
        record.terminated_at = Some(now);
        true
    }
}

impl CloudProvider for SimCloud {
    fn create(&mut self, request: &LaunchRequest, now: Millis) -> Result<Launched, CloudError> {
        self.throttle("CreateFleet")?;
        if let Some(&i) = self.by_claim.get(&request.claim) {
            return Ok(Launched {
                instance: self.records[i].instance.clone(),
                skipped: Vec::new(),
            });
        }
        if request.offerings.is_empty() {
            return Err(CloudError::NoOfferings {
                claim: request.claim.clone(),
            });
        }
        let mut skipped = Vec::new();
        for offering in request.offerings.iter() {
            let supported = self.config.zones.contains(&offering.zone)
                && self.on_demand.contains_key(&offering.instance_type);
            let error = if !supported {
                Some(OfferingError::Unsupported)
            } else if self.config.outages.iter().any(|o| {
                o.covers(
                    &offering.instance_type,
                    &offering.zone,
                    offering.capacity_type,
                    now,
                )
            }) {
                Some(OfferingError::InsufficientCapacity)
            } else {
                None
            };
            if let Some(error) = error {
                skipped.push(OfferingFailure {
                    offering: offering.clone(),
                    error,
                });
                continue;
            }
            let mut offering = offering.clone();
            // Bill at the cloud's own price, whatever the request believed.
            if let Some(price) = self.price_of(
                &offering.instance_type,
                &offering.zone,
                offering.capacity_type,
            ) {
                offering.price = price;
            }
            let id = format!("i-{:017x}", self.next_id);
            self.next_id += 1;
            let instance = Instance {
                id: id.clone(),
                claim: request.claim.clone(),
                node_pool: request.node_pool.clone(),
                offering,
                launched_at: now,
                state: InstanceState::Pending,
            };
            let latency = self.config.launch_latency;
            let boot = if latency.max_ms > latency.min_ms {
                self.rng.random_range(latency.min_ms..=latency.max_ms)
            } else {
                latency.min_ms
            };
            self.outbox.push((
                now + boot,
                CloudEvent::Running {
                    instance_id: id.clone(),
                },
            ));
            self.by_id.insert(id, self.records.len());
            self.by_claim
                .insert(request.claim.clone(), self.records.len());
            self.records.push(InstanceRecord {
                instance: instance.clone(),
                running_at: None,
                terminated_at: None,
                interrupted: false,
            });
            return Ok(Launched { instance, skipped });
        }
        Err(CloudError::NoCapacity {
            claim: request.claim.clone(),
            failures: skipped,
        })
    }

    fn delete(&mut self, instance_id: &str, now: Millis) -> Result<(), CloudError> {
        self.throttle("TerminateInstances")?;
        if !self.by_id.contains_key(instance_id) {
            return Err(CloudError::NotFound {
                id: instance_id.to_string(),
            });
        }
        if self.terminate_record(instance_id, now) {
            self.outbox.push((
                now,
                CloudEvent::Terminated {
                    instance_id: instance_id.to_string(),
                },
            ));
        }
        Ok(())
    }

    fn list(&mut self, now: Millis) -> Result<Listing, CloudError> {
        let faults = &self.config.faults;
        if within(&faults.failed_listings, now) {
            return Err(CloudError::Api(
                "DescribeInstances: InternalError (simulated failed listing)".into(),
            ));
        }
        let partial = within(&faults.partial_listings, now);
        let lag = faults.listing_lag_ms;
        let instances = self
            .records
            .iter()
            .filter(|r| r.instance.state != InstanceState::Terminated)
            // Filtered by Kestrel's tags, as the AWS adapter asks DescribeInstances to.
            .filter(|r| !r.instance.claim.is_empty())
            .filter(|r| r.instance.launched_at + lag <= now)
            // A partial answer: the last page is missing.
            .take(if partial {
                self.records.len() / 2
            } else {
                usize::MAX
            })
            .map(|r| r.instance.clone())
            .collect();
        Ok(Listing {
            instances,
            complete: !partial,
        })
    }

    fn spot_prices(
        &mut self,
        instance_types: &[String],
        _now: Millis,
    ) -> Result<Vec<SpotPrice>, CloudError> {
        if let Some((types, prices)) = &self.price_list
            && types.as_slice() == instance_types
        {
            return Ok(prices.clone());
        }
        let mut prices = Vec::new();
        for t in instance_types {
            for zone in &self.config.zones {
                if let Some(price) = self.spot_price(t, zone) {
                    prices.push(SpotPrice {
                        instance_type: t.to_string(),
                        zone: zone.clone(),
                        price,
                    });
                }
            }
        }
        self.price_list = Some((instance_types.to_vec(), prices.clone()));
        Ok(prices)
    }
}

/// A deterministic value in [0, 1) from a seed and two names (FNV-1a, then a splitmix finaliser).
fn unit_hash(seed: u64, a: &str, b: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for byte in a.bytes().chain([0u8]).chain(b.bytes()) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn round_price(price: f64) -> f64 {
    (price * 1e5).round() / 1e5
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Offering;

    fn cloud(outages: Vec<CapacityOutage>) -> SimCloud {
        let prices = HashMap::from([
            ("m5.large".to_string(), 0.096),
            ("c5.large".to_string(), 0.085),
        ]);
        SimCloud::new(
            SimCloudConfig {
                outages,
                ..SimCloudConfig::default()
            },
            prices,
        )
    }

    fn offering(t: &str, zone: &str, ct: CapacityType) -> Offering {
        Offering {
            instance_type: t.into(),
            zone: zone.into(),
            capacity_type: ct,
            price: 0.0,
        }
    }

    #[test]
    fn falls_through_to_the_next_offering_on_insufficient_capacity() {
        let mut cloud = cloud(vec![CapacityOutage {
            from: 0,
            to: 1_000,
            instance_types: vec!["m5".into()],
            capacity_type: Some(CapacityType::Spot),
            ..Default::default()
        }]);
        let request = LaunchRequest {
            claim: "a".into(),
            node_pool: "default".into(),
            offerings: vec![
                offering("m5.large", "us-east-1a", CapacityType::Spot),
                offering("c5.large", "us-east-1a", CapacityType::Spot),
            ]
            .into(),
            template: Default::default(),
        };
        let launched = cloud.create(&request, 10).unwrap();
        assert_eq!(launched.instance.offering.instance_type, "c5.large");
        assert_eq!(launched.skipped.len(), 1);
        assert_eq!(
            launched.skipped[0].error,
            OfferingError::InsufficientCapacity
        );
        // Idempotent by claim name.
        assert_eq!(
            cloud.create(&request, 20).unwrap().instance.id,
            launched.instance.id
        );
        // After the outage the first choice works.
        let later = LaunchRequest {
            claim: "b".into(),
            ..request
        };
        assert_eq!(
            cloud
                .create(&later, 2_000)
                .unwrap()
                .instance
                .offering
                .instance_type,
            "m5.large"
        );
    }

    #[test]
    fn launch_latency_is_in_range_and_seeded() {
        let mut a = cloud(vec![]);
        let mut b = cloud(vec![]);
        for (i, c) in [&mut a, &mut b].into_iter().enumerate() {
            for n in 0..20 {
                let request = LaunchRequest {
                    claim: format!("c{n}"),
                    node_pool: "p".into(),
                    offerings: vec![offering("m5.large", "us-east-1b", CapacityType::OnDemand)]
                        .into(),
                    template: Default::default(),
                };
                c.create(&request, 0).unwrap();
            }
            let _ = i;
        }
        let ea = a.drain_events();
        assert_eq!(ea, b.drain_events());
        assert!(ea.iter().all(|(t, _)| (45_000..=60_000).contains(t)));
    }

    #[test]
    fn spot_is_cheaper_and_stable_per_family_and_zone() {
        let cloud = cloud(vec![]);
        let spot = cloud.spot_price("m5.large", "us-east-1a").unwrap();
        assert!(spot < 0.096 * 0.5 && spot > 0.0, "{spot}");
        assert_eq!(cloud.spot_price("m5.large", "us-east-1a"), Some(spot));
        assert!(cloud.spot_price("nope.large", "us-east-1a").is_none());
    }

    #[test]
    fn interruption_warns_then_terminates_two_minutes_later() {
        let mut cloud = cloud(vec![]);
        let request = LaunchRequest {
            claim: "s".into(),
            node_pool: "p".into(),
            offerings: vec![offering("m5.large", "us-east-1a", CapacityType::Spot)].into(),
            template: Default::default(),
        };
        let id = cloud.create(&request, 0).unwrap().instance.id;
        cloud.drain_events();
        cloud.interrupt(&id, 100_000, Some(60_000));
        let events = cloud.drain_events();
        assert_eq!(events.len(), 3);
        assert_eq!(events[1].0, 160_000);
        assert_eq!(
            events[2],
            (
                280_000,
                CloudEvent::Terminated {
                    instance_id: id.clone()
                }
            )
        );
        // Not interrupted twice.
        cloud.interrupt(&id, 110_000, None);
        assert!(cloud.drain_events().is_empty());
    }
}
