//! Two `kestrel run` replicas against one cluster and one cloud: only the leader decides and acts;
//! when it stops, the standby takes over and carries on, with no second launch for the same pods.
//! The replicas' metrics are read as Prometheus would scrape them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use k8s_openapi::api::core::v1::Pod;
use kestrel_core::api::NodeClaim;
use kestrel_kube::lease::LeaseConfig;
use kestrel_kube::metrics::Metrics;
use kestrel_kube_tests::kubelet;
use kube::Api;
use kube::api::{ListParams, PostParams};

use crate::common::{self, RunningController};
use crate::provisioning::{bound_node, pod, setup};

fn replica(identity: &str) -> (kestrel_kube::Settings, Arc<Metrics>) {
    let mut settings = common::settings();
    settings.leader_election = Some(LeaseConfig {
        duration: Duration::from_secs(4),
        retry_period: Duration::from_millis(250),
        margin: Duration::from_millis(750),
        ..LeaseConfig::new("default", "kestrel-leader-election", identity)
    });
    let metrics = Arc::new(Metrics::new());
    settings.metrics = metrics.clone();
    (settings, metrics)
}

fn scraped(metrics: &Metrics, series: &str) -> f64 {
    let text = metrics.encode().expect("metrics encode");
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_acts_and_the_standby_takes_over_when_it_stops() -> Result<()> {
    let (cluster, client) = setup().await?;
    let cloud = common::sim_cloud()?;
    let kubelet = kubelet::spawn(client.clone(), cloud.clone(), common::instance_types()?);
    let (settings_a, metrics_a) = replica("replica-a");
    let (settings_b, metrics_b) = replica("replica-b");
    let a = RunningController::start(&cluster, &cloud, settings_a);
    // a is leading before b starts, so the roles are known.
    common::eventually(Duration::from_secs(30), "replica a leading", || async {
        Ok((scraped(&metrics_a, "kestrel_leader") == 1.0).then_some(()))
    })
    .await?;
    let b = RunningController::start(&cluster, &cloud, settings_b);

    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-1", "500m"))
        .await?;
    common::eventually(Duration::from_secs(60), "web-1 bound", || {
        bound_node(&client, "web-1")
    })
    .await?;
    assert_eq!(
        scraped(&metrics_b, "kestrel_leader"),
        0.0,
        "the standby stands by"
    );
    assert_eq!(
        scraped(
            &metrics_b,
            "karpenter_nodeclaims_created_total{nodepool=\"default\"}"
        ),
        0.0,
        "the standby launched nothing"
    );
    assert_eq!(
        scraped(
            &metrics_a,
            "karpenter_nodeclaims_created_total{nodepool=\"default\"}"
        ),
        1.0,
        "the leader's launch is in its metrics"
    );

    // The leader stops (SIGTERM: it releases the lease); the standby leads and decides.
    let stopped = Instant::now();
    a.stop()?;
    common::eventually(Duration::from_secs(30), "replica b leading", || async {
        Ok((scraped(&metrics_b, "kestrel_leader") == 1.0).then_some(()))
    })
    .await?;
    let leading = stopped.elapsed();
    pods.create(&PostParams::default(), &pod("web-2", "3500m"))
        .await?;
    let claims = Api::<NodeClaim>::all(client.clone());
    common::eventually(Duration::from_secs(60), "a second NodeClaim", || async {
        Ok((claims.list(&ListParams::default()).await?.items.len() >= 2).then_some(()))
    })
    .await?;
    let decided = stopped.elapsed();
    eprintln!(
        "leader stopped -> standby leading: {leading:?}; -> its first NodeClaim (pod created after it led, 1 s batch window): {decided:?}"
    );
    common::eventually(Duration::from_secs(60), "web-2 bound", || {
        bound_node(&client, "web-2")
    })
    .await?;

    // One launch per claim, across both replicas: nothing launched twice.
    let claims_now = claims.list(&ListParams::default()).await?.items.len();
    assert_eq!(cloud.launched(), claims_now, "launches = NodeClaims");
    assert_eq!(
        scraped(
            &metrics_b,
            "karpenter_nodeclaims_created_total{nodepool=\"default\"}"
        ),
        1.0
    );
    assert!(
        scraped(
            &metrics_b,
            "karpenter_provisioner_scheduling_duration_seconds_count"
        ) > 0.0,
        "the new leader's decision passes are measured"
    );
    b.stop()?;
    kubelet.abort();
    Ok(())
}
