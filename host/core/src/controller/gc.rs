//! Garbage collection: what the cloud and the cluster say that the controller's records do not.
//!
//! Three rules keep it safe against a real cloud:
//! - it acts only on a listing that answered and is complete; a failed or partial listing skips the
//!   pass (a failed DescribeInstances must never read as "every instance is gone");
//! - it touches only what Kestrel owns: instances tagged with one of its claims, nodes labelled with
//!   one of its NodePools and carrying a claim ([`Controller::owns`]) — never a managed node group's
//!   node or another autoscaler's;
//! - it gives the listing's eventual consistency room: an instance is an orphan only while no claim
//!   of that name exists and it was launched [`ORPHAN_GRACE_MS`] before the listing was asked for, and
//!   a claim's instance is "gone" only after every listing for [`VANISH_CONFIRM_MS`] missed it.

use std::collections::HashSet;

use super::{Action, Command, Controller, ControllerConfig, Reason};
use crate::clock::Millis;
use crate::cloud::{CloudError, Listing};
use crate::cluster::ClusterState;

/// An instance younger than this (at the listing's issue) is not an orphan yet, even with no claim:
/// its claim record may be in flight.
pub const ORPHAN_GRACE_MS: Millis = 30_000;

/// A node younger than this (at the listing's issue) is not "gone" for missing from a listing.
pub const LISTING_GRACE_MS: Millis = 30_000;

/// How long a launched claim's instance must be missing from every complete listing before the claim
/// is given up (a lagging listing misses young instances; a reclaimed one is usually reported sooner
/// by its interruption or state-change notice).
pub const VANISH_CONFIRM_MS: Millis = 5 * 60_000;

/// Why a claim is given up at `now`, if it is (Karpenter's liveness rules, both from the claim's
/// creation): not launched `launch_ttl_ms` after it was made, or not registered
/// `registration_ttl_ms` after. A claim leaves the controller's claims when its node registers, so
/// any claim still there has not registered.
pub(super) fn timed_out(
    config: &ControllerConfig,
    created_at: Millis,
    launched: bool,
    now: Millis,
) -> Option<String> {
    if !launched && now - created_at > config.launch_ttl_ms {
        Some(format!(
            "claim not launched within {} s",
            config.launch_ttl_ms / 1000
        ))
    } else if now - created_at > config.registration_ttl_ms {
        // The simulator's reports carry this text: unchanged for the default 15 minutes.
        Some(if config.registration_ttl_ms % 60_000 == 0 {
            format!(
                "claim did not register within {} minutes",
                config.registration_ttl_ms / 60_000
            )
        } else {
            format!(
                "claim did not register within {} s",
                config.registration_ttl_ms / 1000
            )
        })
    } else {
        None
    }
}

impl Controller {
    /// Gives up claims that never registered, then asks for a listing (the rest of the pass runs when
    /// it answers).
    pub(super) fn collect_garbage(&mut self, now: Millis) {
        // Karpenter gives a claim 5 minutes to launch and 15 minutes to register before it gives
        // up on it.
        let stale: Vec<(String, String)> = self
            .claims
            .iter()
            .filter_map(|(name, c)| {
                let launched = c.instance_id.is_some();
                Some((
                    name.clone(),
                    timed_out(&self.config, c.created_at, launched, now)?,
                ))
            })
            .collect();
        for (name, why) in stale {
            let claim = self.claims.remove(&name).expect("listed above");
            self.claim_lost(now, &name);
            if let Some(id) = claim.instance_id {
                self.terminate(&id);
                self.record(
                    now,
                    Action::Terminate {
                        node: None,
                        instance_id: id,
                    },
                    Reason::InstanceGone,
                    why,
                );
            } else {
                tracing::warn!(claim = %name, %why, "claim given up; its pods are planned again");
            }
        }
        if !self.listing_in_flight {
            self.listing_in_flight = true;
            self.outbox.push(Command::ListInstances);
        }
    }

    pub(super) fn listing_answered(
        &mut self,
        now: Millis,
        issued_at: Millis,
        cluster: &dyn ClusterState,
        result: Result<Listing, CloudError>,
    ) {
        self.listing_in_flight = false;
        let listing = match result {
            Ok(listing) if listing.complete => listing,
            Ok(_) => {
                self.stats.listings_failed += 1;
                tracing::warn!("instance listing incomplete; garbage collection skipped");
                return;
            }
            Err(err) => {
                self.stats.listings_failed += 1;
                tracing::warn!(%err, "instance listing failed; garbage collection skipped");
                return;
            }
        };
        let live: HashSet<&str> = listing.instances.iter().map(|i| i.id.as_str()).collect();
        // Terminations the listing confirms are no longer tracked.
        self.terminating
            .retain(|id, r| r.in_flight || live.contains(id.as_str()));

        // Claims whose instance vanished before registering: their pods get planned again. One
        // listing that misses an instance proves little (DescribeInstances lags behind CreateFleet),
        // so the instance must be missing from every listing for VANISH_CONFIRM_MS.
        let mut vanished = Vec::new();
        for (name, c) in &mut self.claims {
            let Some(id) = c.instance_id.as_deref() else {
                continue;
            };
            if live.contains(id) {
                c.missing_since = None;
                continue;
            }
            if c.launched_seen_at.is_none_or(|at| at > issued_at) {
                continue;
            }
            let since = *c.missing_since.get_or_insert(issued_at);
            if issued_at >= since + VANISH_CONFIRM_MS {
                vanished.push(name.clone());
            }
        }
        for name in vanished {
            self.claim_lost(now, &name);
        }

        let nodes = cluster.nodes();
        let node_instances: HashSet<&str> = nodes.iter().map(|n| n.instance_id.as_str()).collect();
        let orphans: Vec<String> = listing
            .instances
            .iter()
            .filter(|i| {
                !i.claim.is_empty()
                    && !self.claims.contains_key(&i.claim)
                    && !node_instances.contains(i.id.as_str())
                    && !self.terminating.contains_key(&i.id)
                    && i.launched_at + ORPHAN_GRACE_MS <= issued_at
            })
            .map(|i| i.id.clone())
            .collect();
        for id in orphans {
            self.terminate(&id);
            self.stats.orphans_collected += 1;
            self.record(
                now,
                Action::Terminate {
                    node: None,
                    instance_id: id,
                },
                Reason::Orphan,
                "instance has neither a NodeClaim nor a Node".into(),
            );
        }

        // Owned nodes whose instance is gone (reclaimed without us noticing): delete them, once every
        // listing for VANISH_CONFIRM_MS missed the instance.
        let mut gone: Vec<(String, String, String)> = Vec::new();
        let mut still_missing = std::collections::HashMap::new();
        for n in &nodes {
            if !self.owns(n) || live.contains(n.instance_id.as_str()) {
                continue;
            }
            if n.created_at + LISTING_GRACE_MS > issued_at {
                continue;
            }
            let since = self
                .nodes_missing_since
                .get(&*n.name)
                .copied()
                .unwrap_or(issued_at);
            if issued_at >= since + VANISH_CONFIRM_MS {
                gone.push((n.name.to_string(), n.instance_id.clone(), n.claim.clone()));
            } else {
                still_missing.insert(n.name.to_string(), since);
            }
        }
        self.nodes_missing_since = still_missing;
        for (node, id, claim) in gone {
            self.forget_node(&node, &id, &claim);
            self.record(
                now,
                Action::Terminate {
                    node: Some(node),
                    instance_id: id,
                },
                Reason::InstanceGone,
                "instance no longer exists".into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_time_out_unlaunched_after_the_launch_ttl_and_unregistered_after_the_registration_ttl()
    {
        let config = ControllerConfig::default();
        let (l, r) = (config.launch_ttl_ms, config.registration_ttl_ms);
        assert_eq!(r, 15 * 60_000, "Karpenter's registration timeout");
        assert!(l <= r);
        // Not launched: the launch timeout.
        assert_eq!(timed_out(&config, 0, false, l), None);
        assert!(timed_out(&config, 0, false, l + 1).is_some());
        // Launched: only the registration timeout, from the creation.
        assert_eq!(timed_out(&config, 0, true, r), None);
        assert!(timed_out(&config, 0, true, r + 1).is_some());
        // Settable (`kestrel run` sets Karpenter's 5 min launch timeout; the tests seconds).
        let short = ControllerConfig {
            launch_ttl_ms: 1_000,
            registration_ttl_ms: 3_000,
            ..config
        };
        assert!(timed_out(&short, 0, false, 1_001).is_some());
        assert_eq!(timed_out(&short, 0, true, 1_001), None);
        assert!(timed_out(&short, 0, true, 3_001).is_some());
    }
}
