//! The offerings the controller may launch: the catalog's types in its zones, on-demand at list price
//! and spot at the last price list read, minus the unavailable-offerings cache.
//!
//! Spot prices are read by a command like any other call (DescribeSpotPriceHistory); a failed read
//! keeps the previous list (or, before any read succeeded, on-demand offerings only) and is tried
//! again soon. Nothing is decided before the first read has answered.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Action, Command, Controller, OFFERINGS_REFRESH_MS, PRICE_RETRY_MS, Reason};
use crate::clock::Millis;
use crate::cloud::{CapacityType, CloudError, Offering, SpotPrice};

impl Controller {
    /// Whether a price list (or a failure to read one) has arrived: decisions wait for it.
    pub(super) fn prices_known(&self) -> bool {
        self.prices_revision > 0
    }

    /// Asks for spot prices when the last list is older than the refresh interval.
    pub(super) fn request_prices_if_stale(&mut self, now: Millis) {
        let stale = self
            .prices_read_at
            .is_none_or(|at| now - at >= OFFERINGS_REFRESH_MS);
        if stale && !self.prices_in_flight {
            self.prices_in_flight = true;
            self.outbox.push(Command::ReadSpotPrices {
                instance_types: self.instance_types.iter().map(|t| t.name.clone()).collect(),
            });
        }
    }

    pub(super) fn prices_answered(
        &mut self,
        now: Millis,
        issued_at: Millis,
        result: Result<Vec<SpotPrice>, CloudError>,
    ) {
        self.prices_in_flight = false;
        match result {
            Ok(spot) => {
                self.prices_read_at = Some(issued_at);
                // Rebuilt only when the list changed (prices usually move less often than they are
                // read).
                if self.prices_revision == 0 || spot != self.spot_prices {
                    self.spot_prices = spot;
                    self.prices_revision += 1;
                    self.offerings = self.price_list();
                }
            }
            Err(err) => {
                self.stats.price_reads_failed += 1;
                tracing::warn!(%err, "spot price read failed; keeping the previous prices");
                // Try again soon, not after a whole refresh interval.
                self.prices_read_at =
                    Some(now.saturating_sub(OFFERINGS_REFRESH_MS) + PRICE_RETRY_MS);
                if self.prices_revision == 0 {
                    // Never read: decide with on-demand offerings only (a spot offering with no
                    // known price must never look free).
                    self.spot_prices.clear();
                    self.prices_revision += 1;
                    self.offerings = self.price_list();
                }
            }
        }
    }

    /// The offerings launchable now: the price list minus the unavailable cache. Shared and rebuilt
    /// only when either changes, since every pass reads it.
    pub(super) fn offerings(&mut self, now: Millis) -> (u64, Arc<[Offering]>) {
        self.request_prices_if_stale(now);
        let key = (self.prices_revision, self.unavailable_revision);
        if let Some((k, revision, cached)) = &self.available
            && *k == key
        {
            return (*revision, cached.clone());
        }
        let available: Arc<[Offering]> = self
            .offerings
            .iter()
            .filter(|o| {
                !self.unavailable.contains_key(&(
                    o.instance_type.clone(),
                    o.zone.clone(),
                    o.capacity_type,
                ))
            })
            .cloned()
            .collect();
        let revision = match &self.available {
            Some((_, revision, previous)) if *previous == available => *revision,
            Some((_, revision, _)) => revision + 1,
            None => 0,
        };
        self.available = Some((key, revision, available.clone()));
        (revision, available)
    }

    /// Every offering of the catalog's types in the zones each is offered in: on-demand at list price, spot where the last
    /// price list quotes it.
    fn price_list(&self) -> Vec<Offering> {
        let spot: HashMap<(&str, &str), f64> = self
            .spot_prices
            .iter()
            .map(|p| ((p.instance_type.as_str(), p.zone.as_str()), p.price))
            .collect();
        let mut offerings = Vec::new();
        for t in &self.instance_types {
            for zone in self.zones.iter().filter(|z| t.offered_in(z)) {
                offerings.push(Offering {
                    instance_type: t.name.clone(),
                    zone: zone.clone(),
                    capacity_type: CapacityType::OnDemand,
                    price: t.on_demand_price,
                });
                if let Some(&price) = spot.get(&(t.name.as_str(), zone.as_str())) {
                    offerings.push(Offering {
                        instance_type: t.name.clone(),
                        zone: zone.clone(),
                        capacity_type: CapacityType::Spot,
                        price,
                    });
                }
            }
        }
        offerings
    }

    /// Marks an offering unavailable until `until` (Karpenter's unavailable-offerings cache).
    pub(super) fn avoid(
        &mut self,
        now: Millis,
        o: &Offering,
        until: Millis,
        reason: Reason,
        why: &str,
    ) {
        self.unavailable_revision += 1;
        self.unavailable.insert(
            (o.instance_type.clone(), o.zone.clone(), o.capacity_type),
            until,
        );
        self.record(
            now,
            Action::AvoidOffering {
                instance_type: o.instance_type.clone(),
                zone: o.zone.clone(),
                capacity_type: o.capacity_type,
                until,
            },
            reason,
            why.to_string(),
        );
    }
}
