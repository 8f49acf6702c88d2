//! The simulator's deferred mode: the cluster's and the cloud's APIs behave as real ones do.
//!
//! By default the replay carries out the controller's commands inline (each answer applied at the
//! instant it was asked). A scenario's `cloud.api` section turns on what production sees instead:
//! answers that take time (CreateFleet 1–3 s), throttled calls, listings that fail, come back
//! incomplete or lag behind launches. Evictions a PDB forbids are refused (the Eviction API's 429) in
//! both modes. All of it runs on the virtual clock, so the production path is tested
//! deterministically.
//!
//! ```yaml
//! cloud:
//!   api:
//!     cloudLatency: {min: 1s, max: 3s}    # each cloud call's answer arrives after this
//!     clusterLatency: {min: 20ms, max: 100ms}
//!     throttleEvery: 7                    # every 7th launch/terminate answers RequestLimitExceeded
//!     listingLag: 20s                     # DescribeInstances misses instances younger than this
//!     failedListings: [{at: 10m, duration: 5m}]
//!     partialListings: [{at: 30m, duration: 5m}]
//! ```

use rand::Rng;
use rand::rngs::SmallRng;
use serde::Deserialize;

use super::scenario::{Range, parse_ms};
use crate::clock::Millis;
use crate::cloud::sim::ApiFaults;
use crate::controller::Command;

/// A scenario's `cloud.api` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiSpec {
    #[serde(default)]
    pub cloud_latency: Option<Range<String>>,
    #[serde(default)]
    pub cluster_latency: Option<Range<String>>,
    #[serde(default)]
    pub throttle_every: Option<u32>,
    #[serde(default)]
    pub listing_lag: Option<String>,
    #[serde(default)]
    pub failed_listings: Vec<Window>,
    #[serde(default)]
    pub partial_listings: Vec<Window>,
}

/// A scenario event: the controller loses its whole memory and resumes from the cluster (a crash, a
/// restart, a leader failover). Requests still on their way are lost with the old process; calls that
/// reached their server took effect and only their answers are lost. Interruption messages not yet
/// handled are delivered again (SQS keeps a message until it is deleted).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerRestart {}

/// `[at, at + duration)` from the scenario's start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub at: String,
    pub duration: String,
}

/// How long each command's answer takes in the deferred mode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApiLatency {
    pub cloud: (Millis, Millis),
    pub cluster: (Millis, Millis),
}

impl ApiLatency {
    /// A seeded draw of one answer's latency.
    pub fn draw(&self, command: &Command, rng: &mut SmallRng) -> Millis {
        let (lo, hi) = if command.is_cloud() {
            self.cloud
        } else {
            self.cluster
        };
        if hi > lo {
            rng.random_range(lo..=hi)
        } else {
            lo
        }
    }
}

/// What is wrong with an `api` section: the field (under `cloud.api`) and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ApiSpecError {
    pub field: String,
    pub message: String,
}

fn range(field: &str, r: &Range<String>) -> Result<(Millis, Millis), ApiSpecError> {
    let err = |message: String| ApiSpecError {
        field: field.to_string(),
        message,
    };
    let (lo, hi) = (
        parse_ms(&r.min).map_err(err)?,
        parse_ms(&r.max).map_err(err)?,
    );
    if lo > hi {
        return Err(err("min is above max".into()));
    }
    if hi > MAX_LATENCY_MS {
        return Err(err(format!("at most {} s", MAX_LATENCY_MS / 1000)));
    }
    Ok((lo, hi))
}

/// An answer slower than this is a lost answer, not a slow one; the scenario says so explicitly.
const MAX_LATENCY_MS: Millis = 10 * 60_000;

fn windows(
    field: &str,
    list: &[Window],
    start: Millis,
) -> Result<Vec<(Millis, Millis)>, ApiSpecError> {
    list.iter()
        .enumerate()
        .map(|(i, w)| {
            let err = |message: String| ApiSpecError {
                field: format!("{field}[{i}]"),
                message,
            };
            let at = parse_ms(&w.at).map_err(err)?;
            let duration = parse_ms(&w.duration).map_err(err)?;
            Ok((start + at, start + at + duration))
        })
        .collect()
}

impl ApiSpec {
    /// The deferred mode's latencies (None: inline) and the cloud's faults, checked.
    pub fn resolve(&self, start: Millis) -> Result<(Option<ApiLatency>, ApiFaults), ApiSpecError> {
        let cloud = self
            .cloud_latency
            .as_ref()
            .map(|r| range("cloudLatency", r))
            .transpose()?;
        let cluster = self
            .cluster_latency
            .as_ref()
            .map(|r| range("clusterLatency", r))
            .transpose()?;
        let latency = match (cloud, cluster) {
            (None, None) => None,
            (cloud, cluster) => Some(ApiLatency {
                cloud: cloud.unwrap_or((0, 0)),
                cluster: cluster.unwrap_or((0, 0)),
            }),
        };
        let listing_lag_ms = self
            .listing_lag
            .as_deref()
            .map(parse_ms)
            .transpose()
            .map_err(|message| ApiSpecError {
                field: "listingLag".into(),
                message,
            })?
            .unwrap_or(0);
        let faults = ApiFaults {
            listing_lag_ms,
            failed_listings: windows("failedListings", &self.failed_listings, start)?,
            partial_listings: windows("partialListings", &self.partial_listings, start)?,
            throttle_every: self.throttle_every.unwrap_or(0),
        };
        if faults.throttle_every == 1 {
            return Err(ApiSpecError {
                field: "throttleEvery".into(),
                message: "1 would throttle every call (nothing could ever launch); use 2 or more"
                    .into(),
            });
        }
        Ok((latency, faults))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> ApiSpec {
        serde_yaml_ng::from_str(yaml).expect("test spec parses")
    }

    #[test]
    fn resolves_latencies_and_faults_from_the_scenario_start() {
        let (latency, faults) = spec(
            "{cloudLatency: {min: 1s, max: 3s}, throttleEvery: 5, listingLag: 20s, \
             failedListings: [{at: 10m, duration: 5m}]}",
        )
        .resolve(1_000)
        .unwrap();
        let latency = latency.expect("deferred");
        assert_eq!(latency.cloud, (1_000, 3_000));
        assert_eq!(latency.cluster, (0, 0));
        assert_eq!(faults.throttle_every, 5);
        assert_eq!(faults.listing_lag_ms, 20_000);
        assert_eq!(faults.failed_listings, vec![(601_000, 901_000)]);
    }

    #[test]
    fn no_latency_is_the_inline_mode() {
        let (latency, _) = spec("{listingLag: 5s}").resolve(0).unwrap();
        assert_eq!(latency, None);
    }

    #[test]
    fn bad_sections_name_their_field() {
        for (yaml, field) in [
            ("{cloudLatency: {min: 3s, max: 1s}}", "cloudLatency"),
            ("{clusterLatency: {min: 1s, max: 1h}}", "clusterLatency"),
            ("{listingLag: soon}", "listingLag"),
            (
                "{failedListings: [{at: 1m, duration: x}]}",
                "failedListings[0]",
            ),
            ("{throttleEvery: 1}", "throttleEvery"),
        ] {
            let err = spec(yaml).resolve(0).unwrap_err();
            assert_eq!(err.field, field, "{yaml}: {err}");
        }
    }
}
