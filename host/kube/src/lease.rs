//! Leader election by a `coordination.k8s.io/v1` Lease, and the [`Fence`] every write passes.
//!
//! Two replicas run; the one holding the Lease decides and acts, the other waits. The rules are
//! client-go's: a Lease held by another replica is taken only after this replica has watched its record
//! stay unchanged for a whole lease duration *by its own monotonic clock* (no trust in the other
//! replica's wall clock), and every write is an update at the observed `resourceVersion`, so two
//! replicas racing for an expired Lease cannot both win.
//!
//! Why not a crate: the one that fits this kube version (`kube-lease-manager`) reports leadership as a
//! flag that stays `true` while renewals fail, so a leader cut off from the API server would keep
//! acting after its Lease expired and the standby took over. Here the holder's right to write ends by
//! itself: [`Fence::holds`] is true only until `renewal request start + duration - margin`, which is
//! before any other replica can have seen the Lease expire, whether or not the renewal's answer ever
//! arrives.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};

/// The Lease's timing, as controller-runtime's defaults (Karpenter uses them).
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (the pod's name), written as the Lease's holder.
    pub identity: String,
    /// How long a Lease stays the holder's without a renewal.
    pub duration: Duration,
    /// How often the holder renews and a standby looks again.
    pub retry_period: Duration,
    /// Taken off the holder's validity, for clock-rate differences between replicas.
    pub margin: Duration,
}

impl LeaseConfig {
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
            margin: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("reading the Lease {namespace}/{name}: {source}")]
    Read {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the Lease {namespace}/{name}: {source}")]
    Write {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the lease duration must exceed its margin and its retry period")]
    Timing,
}

/// Whether this replica may write now: true only within the validity its last successful renewal
/// bought. Cheap to check before every write; cloned into the executor.
#[derive(Debug, Clone, Default)]
pub struct Fence {
    valid_until: Arc<Mutex<Option<Instant>>>,
}

impl Fence {
    /// A fence that always holds (a single replica without election, and the tests of other parts).
    pub fn always() -> Fence {
        let fence = Fence::default();
        fence.hold_forever();
        fence
    }

    /// Makes this fence hold from now on (a single replica without election).
    pub fn hold_forever(&self) {
        self.extend(Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600));
    }

    pub fn holds(&self) -> bool {
        self.lock().is_some_and(|until| Instant::now() < until)
    }

    /// When the right to write ends (None: not held).
    pub fn valid_until(&self) -> Option<Instant> {
        *self.lock()
    }

    fn extend(&self, until: Instant) {
        *self.lock() = Some(until);
    }

    fn close(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.valid_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What this replica last saw of another holder's record, and when (by its own clock).
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<String>,
    transitions: Option<i32>,
}

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    fence: Fence,
    observed: Mutex<Option<(Observed, Instant)>>,
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Result<Elector, LeaseError> {
        Elector::with_fence(client, config, Fence::default())
    }

    /// An elector that extends `fence`, a fence other parts of the process already hold a clone of
    /// (writers outside the decision loop check it too).
    pub fn with_fence(
        client: Client,
        config: LeaseConfig,
        fence: Fence,
    ) -> Result<Elector, LeaseError> {
        if config.duration <= config.margin || config.duration <= config.retry_period {
            return Err(LeaseError::Timing);
        }
        Ok(Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            fence,
            observed: Mutex::new(None),
        })
    }

    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// One round: take the Lease if it is free or expired, renew it if held. Returns whether this
    /// replica holds it now. An error leaves the fence to run out by itself.
    pub async fn step(&self) -> Result<bool, LeaseError> {
        let started = Instant::now();
        let now = MicroTime(Timestamp::now());
        let Some(current) = self.read().await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(&now, &now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => self.won(started),
                // Another replica created it first.
                Err(kube::Error::Api(status)) if status.code == 409 => self.lost(),
                Err(source) => Err(self.write_error(source)),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let mine = holder.as_deref() == Some(self.config.identity.as_str());
        if !mine && holder.is_some() && !self.expired(&spec) {
            return self.lost();
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        let (acquired, transitions) = match (&spec.acquire_time, mine) {
            (Some(acquired), true) => (acquired.clone(), transitions),
            _ => (now.clone(), transitions + i32::from(holder.is_some())),
        };
        let mut next = current.clone();
        next.spec = Some(self.spec(&acquired, &now, transitions));
        // An update at the observed resourceVersion: a concurrent writer makes this a 409.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => self.won(started),
            Err(kube::Error::Api(status)) if status.code == 409 => self.lost(),
            Err(source) => Err(self.write_error(source)),
        }
    }

    /// Gives the Lease up (a graceful stop), so the standby takes over at its next look instead of
    /// after a whole lease duration. Only a Lease this replica holds is touched.
    pub async fn release(&self) -> Result<(), LeaseError> {
        self.fence.close();
        let Some(mut current) = self.read().await? else {
            return Ok(());
        };
        let spec = current.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &current)
            .await
        {
            Ok(_) => Ok(()),
            // Someone else wrote it meanwhile: it is no longer ours to release.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(source) => Err(self.write_error(source)),
        }
    }

    /// Campaigns until `shutdown`: a step every retry period (errors logged, the fence left to run
    /// out), then the Lease released.
    pub async fn campaign(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut was_leader = false;
        loop {
            match self.step().await {
                Ok(leader) => {
                    if leader != was_leader {
                        tracing::info!(
                            identity = %self.config.identity,
                            lease = %format!("{}/{}", self.config.namespace, self.config.name),
                            leader,
                            "leadership changed"
                        );
                    }
                    was_leader = leader;
                }
                Err(err) => tracing::warn!(error = %err, "lease round failed"),
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
        }
        if let Err(err) = self.release().await {
            tracing::warn!(error = %err, "releasing the lease (the standby waits for it to expire)");
        }
    }

    async fn read(&self) -> Result<Option<Lease>, LeaseError> {
        self.api
            .get_opt(&self.config.name)
            .await
            .map_err(|source| LeaseError::Read {
                namespace: self.config.namespace.clone(),
                name: self.config.name.clone(),
                source,
            })
    }

    fn spec(&self, acquired: &MicroTime, renewed: &MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.duration.as_secs().max(1) as i32),
            acquire_time: Some(acquired.clone()),
            renew_time: Some(renewed.clone()),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Another holder's Lease is expired when its record has not changed for its duration, as this
    /// replica has watched it (the holder's own clock is never compared with ours).
    fn expired(&self, spec: &LeaseSpec) -> bool {
        let seen = Observed {
            holder: spec.holder_identity.clone(),
            renew_time: spec.renew_time.as_ref().map(|t| t.0.to_string()),
            transitions: spec.lease_transitions,
        };
        let duration = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or(self.config.duration);
        let mut observed = self
            .observed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*observed {
            Some((last, since)) if *last == seen => since.elapsed() >= duration,
            _ => {
                *observed = Some((seen, Instant::now()));
                false
            }
        }
    }

    fn won(&self, started: Instant) -> Result<bool, LeaseError> {
        self.fence
            .extend(started + self.config.duration - self.config.margin);
        Ok(true)
    }

    fn lost(&self) -> Result<bool, LeaseError> {
        self.fence.close();
        Ok(false)
    }

    fn write_error(&self, source: kube::Error) -> LeaseError {
        LeaseError::Write {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source,
        }
    }
}
