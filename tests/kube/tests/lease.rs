//! Leader election between two replicas on the real API server's Lease: one leader at a time (their
//! fences never both hold), the standby takes over when the leader stops (released: at its next look;
//! killed: once the Lease has gone unrenewed for its duration), and a leader that can no longer renew
//! loses its right to write by itself before the standby can take over.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kestrel_kube::lease::{Elector, Fence, LeaseConfig};
use kestrel_kube_tests::cluster::TestCluster;

use crate::common;

fn config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        duration: Duration::from_secs(3),
        retry_period: Duration::from_millis(200),
        margin: Duration::from_millis(500),
        ..LeaseConfig::new("default", "kestrel-leader", identity)
    }
}

/// Steps both electors every retry period until `until` says stop, checking on every round that
/// their fences never hold at once.
async fn rounds(
    electors: &[&Elector],
    fences: &[Fence],
    timeout: Duration,
    mut until: impl FnMut() -> bool,
) -> Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        for e in electors {
            e.step().await?;
        }
        let holding = fences.iter().filter(|f| f.holds()).count();
        if holding > 1 {
            bail!("two replicas hold the lease at once");
        }
        if until() {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("not done after {timeout:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_the_standby_takes_over_when_it_stops_or_dies() -> Result<()> {
    common::init_tracing();
    let cluster = TestCluster::start()?;
    let client = cluster.client().await?;
    // The API server creates the `default` namespace shortly after it starts serving.
    let namespaces = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone());
    common::eventually(Duration::from_secs(30), "the default namespace", || async {
        Ok(namespaces.get_opt("default").await?.map(|_| ()))
    })
    .await?;
    let a = Elector::new(client.clone(), config("replica-a"))?;
    let b = Elector::new(client.clone(), config("replica-b"))?;
    let (fa, fb) = (a.fence(), b.fence());

    // The first to look takes it; the other stays standby round after round.
    rounds(
        &[&a, &b],
        &[fa.clone(), fb.clone()],
        Duration::from_secs(10),
        || fa.holds(),
    )
    .await?;
    for _ in 0..10 {
        rounds(
            &[&a, &b],
            &[fa.clone(), fb.clone()],
            Duration::from_secs(5),
            || true,
        )
        .await?;
        assert!(
            fa.holds() && !fb.holds(),
            "the leader kept it, the standby waited"
        );
    }

    // A graceful stop releases it: the standby takes over at its next look.
    a.release().await?;
    assert!(!fa.holds(), "a released lease no longer fences writes in");
    let released = rounds(
        &[&b],
        &[fa.clone(), fb.clone()],
        Duration::from_secs(10),
        || fb.holds(),
    )
    .await?;
    eprintln!("failover after a graceful stop: {released:?}");
    assert!(released < Duration::from_secs(2), "took {released:?}");

    // A killed leader (b stops renewing, without releasing): its own fence closes by itself before
    // the lease expires, and a takes over only after watching it unrenewed for the whole duration.
    let killed = Instant::now();
    let mut closed_at = None;
    let mut taken_at = None;
    while killed.elapsed() < Duration::from_secs(15) && taken_at.is_none() {
        a.step().await?;
        if closed_at.is_none() && !fb.holds() {
            closed_at = Some(killed.elapsed());
        }
        if fa.holds() {
            if fb.holds() {
                bail!("the standby took over while the old leader still held its fence");
            }
            taken_at = Some(killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (Some(closed), Some(taken)) = (closed_at, taken_at) else {
        bail!("no takeover after the leader died (closed {closed_at:?}, taken {taken_at:?})");
    };
    eprintln!("leader killed: its fence closed after {closed:?}, the standby led after {taken:?}");
    assert!(
        closed < taken,
        "the dead leader's fence outlived the takeover"
    );
    assert!(
        taken >= Duration::from_secs(3),
        "a lease renewed {:?} ago was taken before its duration",
        taken
    );
    Ok(())
}
