//! The simulator's cloud behind the production cloud edge: `kestrel_sim`'s `SimCloud` (a sync
//! `CloudProvider` on a virtual clock) made a `CloudApi` with a mutex and the wall clock, so the
//! in-cluster controller launches "instances" the test kubelet then registers.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use kestrel_core::clock::{Clock, Millis, SystemClock};
use kestrel_core::cloud::{
    CloudApi, CloudCall, CloudProvider, LaunchRequest, Launched, Listing, SpotPrice,
};
use kestrel_sim::cloud::sim::{CloudEvent, SimCloud};

#[derive(Clone)]
pub struct SimCloudApi {
    cloud: Arc<Mutex<SimCloud>>,
    /// The cloud's events (instances booted, terminated) not yet acted on by the kubelet.
    events: Arc<Mutex<Vec<(Millis, CloudEvent)>>>,
    /// While set, CreateFleet calls never answer and launch nothing (a request the cloud lost).
    hang_launches: Arc<AtomicBool>,
    hung: Arc<AtomicUsize>,
}

impl SimCloudApi {
    pub fn new(cloud: SimCloud) -> SimCloudApi {
        SimCloudApi {
            cloud: Arc::new(Mutex::new(cloud)),
            events: Arc::default(),
            hang_launches: Arc::default(),
            hung: Arc::default(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, SimCloud> {
        self.cloud.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a call on the simulated cloud at the wall clock's now, keeping the events it caused.
    fn call<T>(&self, f: impl FnOnce(&mut SimCloud, Millis) -> T) -> T {
        let mut cloud = self.lock();
        let out = f(&mut cloud, SystemClock.now());
        let events = cloud.drain_events();
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(events);
        out
    }

    /// The events due by `now`, in time order (the rest stay queued).
    pub fn take_due(&self, now: Millis) -> Vec<CloudEvent> {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.sort_by_key(|(at, _)| *at);
        let split = events.partition_point(|(at, _)| *at <= now);
        events.drain(..split).map(|(_, e)| e).collect()
    }

    /// Instances not terminated (what a "no leaked instance" check counts).
    pub fn live_instances(&self) -> Vec<kestrel_core::cloud::Instance> {
        self.lock()
            .records()
            .iter()
            .filter(|r| r.instance.state != kestrel_core::cloud::InstanceState::Terminated)
            .map(|r| r.instance.clone())
            .collect()
    }

    /// Makes launches hang (never answer, launch nothing) or answer again.
    pub fn hang_launches(&self, hang: bool) {
        self.hang_launches.store(hang, Ordering::SeqCst);
    }

    /// How many launch calls hung so far.
    pub fn hung_launches(&self) -> usize {
        self.hung.load(Ordering::SeqCst)
    }

    /// Every instance ever launched.
    pub fn launched(&self) -> usize {
        self.lock().records().len()
    }
}

impl CloudApi for SimCloudApi {
    fn create<'a>(&'a self, request: &'a LaunchRequest) -> CloudCall<'a, Launched> {
        if self.hang_launches.load(Ordering::SeqCst) {
            self.hung.fetch_add(1, Ordering::SeqCst);
            return Box::pin(futures::future::pending());
        }
        let out = self.call(|c, now| c.create(request, now));
        Box::pin(async move { out })
    }
    fn delete<'a>(&'a self, instance_id: &'a str) -> CloudCall<'a, ()> {
        let out = self.call(|c, now| c.delete(instance_id, now));
        Box::pin(async move { out })
    }
    fn list(&self) -> CloudCall<'_, Listing> {
        let out = self.call(|c, now| c.list(now));
        Box::pin(async move { out })
    }
    fn spot_prices<'a>(&'a self, instance_types: &'a [String]) -> CloudCall<'a, Vec<SpotPrice>> {
        let out = self.call(|c, now| c.spot_prices(instance_types, now));
        Box::pin(async move { out })
    }
}
