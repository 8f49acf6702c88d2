//! Capacity errors and throttling, armed in the fault layer and read through the real SDK.

use kestrel_core::cloud::{CapacityType, CloudApi, CloudError, OfferingError};

use crate::fixture::{self, offering, request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_capacity_on_the_first_choices_falls_back_and_reports_them()
-> anyhow::Result<()> {
    let env = fixture::env().await?;
    let cloud = env.cloud().await?;
    env.moto.arm(serde_json::json!({"ice": [
        {"instance_type": "m5.large", "capacity_type": "spot"},
        {"instance_type": "c5.large", "capacity_type": "spot", "zone": "us-east-1a"},
    ]}))?;
    let offerings = vec![
        offering("m5.large", "us-east-1a", CapacityType::Spot),
        offering("m5.large", "us-east-1b", CapacityType::Spot),
        offering("c5.large", "us-east-1a", CapacityType::Spot),
        offering("c5.large", "us-east-1b", CapacityType::Spot),
        offering("m5.large", "us-east-1a", CapacityType::OnDemand),
    ];
    let launched = cloud
        .create(&request("general-ice01", offerings.clone()))
        .await?;
    assert_eq!(launched.instance.offering, offerings[3]);
    let skipped: Vec<_> = launched
        .skipped
        .iter()
        .map(|f| (&f.offering, &f.error))
        .collect();
    assert_eq!(
        skipped,
        vec![
            (&offerings[0], &OfferingError::InsufficientCapacity),
            (&offerings[1], &OfferingError::InsufficientCapacity),
            (&offerings[2], &OfferingError::InsufficientCapacity),
        ]
    );

    // Every spot offering refused: the on-demand request, under its own token.
    env.moto
        .arm(serde_json::json!({"ice": [{"capacity_type": "spot"}]}))?;
    let launched = cloud
        .create(&request("general-ice02", offerings.clone()))
        .await?;
    assert_eq!(launched.instance.offering, offerings[4]);
    assert_eq!(launched.skipped.len(), 4);
    let fleet = env.moto.last_request("CreateFleet")?;
    assert_eq!(fleet["ClientToken"], "general-ice02.on-demand");

    // Nothing left: no capacity, every offering reported, nothing launched.
    env.moto.arm(serde_json::json!({"ice": [
        {"capacity_type": "on-demand", "code": "VcpuLimitExceeded"},
    ]}))?;
    let before = env.instances().await?.len();
    match cloud
        .create(&request("general-ice03", offerings.clone()))
        .await
    {
        Err(CloudError::NoCapacity { failures, .. }) => {
            assert_eq!(failures.len(), 5);
            assert_eq!(
                failures[4].error,
                OfferingError::Other("VcpuLimitExceeded".into())
            );
        }
        other => panic!("expected NoCapacity, got {other:?}"),
    }
    assert_eq!(env.instances().await?.len(), before);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_then_reported_as_throttled() -> anyhow::Result<()> {
    let env = fixture::env().await?;
    let cloud = env.cloud().await?;
    // Twice throttled, then answered: the SDK's retries absorb it, one instance results.
    env.moto.arm(serde_json::json!({"errors": [
        {"action": "CreateFleet", "code": "RequestLimitExceeded", "status": 503, "times": 2},
    ]}))?;
    let launched = cloud
        .create(&request(
            "general-thr01",
            vec![offering("m5.large", "us-east-1a", CapacityType::OnDemand)],
        ))
        .await?;
    assert_eq!(env.moto.calls("CreateFleet")?, 3);
    assert_eq!(env.instances().await?.len(), 1);
    assert_eq!(
        env.instances().await?[0].instance_id(),
        Some(launched.instance.id.as_str())
    );

    // Throttled on every attempt: Throttled, after a bounded number of tries.
    env.moto.arm(serde_json::json!({"errors": [
        {"action": "DescribeInstances", "code": "RequestLimitExceeded", "status": 503},
    ]}))?;
    let before = env.moto.calls("DescribeInstances")?;
    match cloud.list().await {
        Err(error @ CloudError::Throttled(_)) => assert!(error.is_retryable()),
        other => panic!("expected Throttled, got {other:?}"),
    }
    let tries = env.moto.calls("DescribeInstances")? - before;
    assert!((2..=5).contains(&tries), "{tries} tries");

    // Any other error is an API error.
    env.moto.clear()?;
    env.moto.arm(serde_json::json!({"errors": [
        {"action": "TerminateInstances", "code": "UnauthorizedOperation", "status": 403},
    ]}))?;
    match cloud.delete(&launched.instance.id).await {
        Err(CloudError::Api(detail)) => {
            assert!(detail.contains("UnauthorizedOperation"), "{detail}")
        }
        other => panic!("expected Api, got {other:?}"),
    }
    Ok(())
}
