//! Listing this cluster's instances: paginated, complete only when every page was read.

use kestrel_aws::ec2::Ec2Settings;
use kestrel_core::cloud::{CapacityType, CloudApi, CloudError};

use crate::fixture::{self, CLUSTER, offering, request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_reads_every_page_and_a_failed_listing_is_an_error() -> anyhow::Result<()> {
    let env = fixture::env().await?;
    let cloud = env
        .cloud_with(Ec2Settings {
            page_size: 5,
            ..Ec2Settings::new(CLUSTER)
        })
        .await?;
    let mut launched = Vec::new();
    for i in 0..7 {
        let claim = format!("general-list{i}");
        let zone = if i % 2 == 0 {
            "us-east-1a"
        } else {
            "us-east-1b"
        };
        let instance = cloud
            .create(&request(
                &claim,
                vec![offering("m5.large", zone, CapacityType::OnDemand)],
            ))
            .await?
            .instance;
        launched.push(instance.id);
    }
    // An instance of the account that is not the cluster's is never listed.
    env.client
        .run_instances()
        .image_id(&env.amis[fixture::NEW_AL2023])
        .min_count(1)
        .max_count(1)
        .send()
        .await?;

    let before = env.moto.calls("DescribeInstances")?;
    let listing = cloud.list().await?;
    assert!(listing.complete);
    assert!(
        env.moto.calls("DescribeInstances")? - before >= 2,
        "more than one page"
    );
    let mut ids: Vec<_> = listing.instances.iter().map(|i| i.id.clone()).collect();
    ids.sort();
    launched.sort();
    assert_eq!(ids, launched);
    assert!(
        listing
            .instances
            .iter()
            .all(|i| i.claim.starts_with("general-list"))
    );
    assert!(listing.instances.iter().all(|i| i.node_pool == "general"));

    // The second page fails: what was read is returned, marked incomplete.
    env.moto.arm(serde_json::json!({"errors": [
        {"action": "DescribeInstances", "code": "InternalError", "status": 500, "after": 1},
    ]}))?;
    let listing = cloud.list().await?;
    assert!(!listing.complete);
    assert_eq!(listing.instances.len(), 5);

    // The first page fails: an error, never an empty complete listing.
    env.moto.clear()?;
    env.moto.arm(serde_json::json!({"errors": [
        {"action": "DescribeInstances", "code": "InternalError", "status": 500},
    ]}))?;
    match cloud.list().await {
        Err(CloudError::Api(_)) => {}
        other => panic!("expected an API error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_prices_are_the_latest_per_type_and_zone() -> anyhow::Result<()> {
    let env = fixture::env().await?;
    let cloud = env.cloud().await?;
    let types = vec!["m5.large".to_string(), "c5.large".to_string()];
    let prices = cloud.spot_prices(&types).await?;
    assert!(!prices.is_empty());
    let mut keys: Vec<_> = prices.iter().map(|p| (&p.instance_type, &p.zone)).collect();
    let count = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), count, "one price per type and zone");
    assert!(
        prices
            .iter()
            .all(|p| types.contains(&p.instance_type) && p.price > 0.0)
    );
    let fleet_request = env.moto.last_request("DescribeSpotPriceHistory")?;
    assert_eq!(fleet_request["ProductDescription.1"], "Linux/UNIX");

    // A listed spot instance is priced at the price read, not at zero.
    let launched = cloud
        .create(&request(
            "general-spot1",
            vec![offering("m5.large", "us-east-1a", CapacityType::Spot)],
        ))
        .await?;
    let listing = cloud.list().await?;
    let listed = listing
        .instances
        .iter()
        .find(|i| i.id == launched.instance.id)
        .ok_or_else(|| anyhow::anyhow!("launched instance not listed"))?;
    let read = prices
        .iter()
        .find(|p| p.instance_type == "m5.large" && p.zone == "us-east-1a")
        .map(|p| p.price);
    assert_eq!(Some(listed.offering.price), read);
    Ok(())
}
