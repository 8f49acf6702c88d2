//! EC2NodeClass discovery and status against moto.

use kestrel_aws::ec2::{discovery, resolve};
use kestrel_core::api::ec2nodeclass::EC2NodeClassSpec;

use crate::fixture::{self, ARM_AL2023, CLUSTER, DISCOVERY, NEW_AL2023, OLD_AL2023};

fn spec(value: serde_json::Value) -> EC2NodeClassSpec {
    serde_json::from_value(value).expect("a valid EC2NodeClass spec")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subnets_and_security_groups_by_tags_and_ids() -> anyhow::Result<()> {
    let env = fixture::env().await?;
    let settings = fixture::discovery_settings();
    let subnet_ids = |r: &kestrel_aws::ec2::Resolution| {
        let mut ids: Vec<_> = r.subnets.iter().map(|s| s.id.clone()).collect();
        ids.sort();
        ids
    };
    let mut ours: Vec<_> = env.subnets.values().cloned().collect();
    ours.sort();

    let by_tag = resolve(&env.client, &fixture::node_class_spec(), &settings).await?;
    assert_eq!(
        subnet_ids(&by_tag),
        ours,
        "the cluster's tag selects its two subnets"
    );
    for subnet in &by_tag.subnets {
        assert!(
            subnet
                .zone_id
                .as_deref()
                .is_some_and(|z| z.starts_with("use1-az"))
        );
        assert!(subnet.available_ips > 0, "{subnet:?}");
    }
    assert_eq!(by_tag.security_groups.len(), 1);
    assert_eq!(by_tag.security_groups[0].id, env.security_group);

    // Tags within a term are AND'ed; terms are OR'ed; `*` matches any value.
    let narrowed = spec(serde_json::json!({
        "subnetSelectorTerms": [
            {"tags": {DISCOVERY: CLUSTER, "tier": "private"}},
            {"id": env.other_subnet},
        ],
        "securityGroupSelectorTerms": [{"id": env.security_group}],
        "amiSelectorTerms": [{"alias": "al2023@latest"}],
    }));
    let resolved = resolve(&env.client, &narrowed, &settings).await?;
    let mut expected = vec![env.subnets["us-east-1a"].clone(), env.other_subnet.clone()];
    expected.sort();
    assert_eq!(subnet_ids(&resolved), expected);
    assert_eq!(resolved.security_groups[0].id, env.security_group);

    let any_value = spec(serde_json::json!({
        "subnetSelectorTerms": [{"tags": {DISCOVERY: "*"}}],
        "securityGroupSelectorTerms": [{"name": "nodes"}],
        "amiSelectorTerms": [{"alias": "al2023@latest"}],
    }));
    let resolved = resolve(&env.client, &any_value, &settings).await?;
    assert_eq!(resolved.subnets.len(), 3);
    assert_eq!(resolved.security_groups[0].id, env.security_group);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amis_by_alias_name_and_id_newest_first_per_architecture() -> anyhow::Result<()> {
    let env = fixture::env().await?;
    let settings = fixture::discovery_settings();
    let latest = resolve(&env.client, &fixture::node_class_spec(), &settings).await?;
    let ids: Vec<_> = latest
        .amis
        .iter()
        .map(|a| (a.architecture.as_str(), a.id.as_str()))
        .collect();
    assert_eq!(
        ids,
        vec![
            ("amd64", env.amis[NEW_AL2023].as_str()),
            ("arm64", env.amis[ARM_AL2023].as_str())
        ],
        "al2023@latest: the newest image of each architecture"
    );

    let pinned = spec(serde_json::json!({
        "subnetSelectorTerms": [{"tags": {DISCOVERY: CLUSTER}}],
        "securityGroupSelectorTerms": [{"tags": {DISCOVERY: CLUSTER}}],
        "amiSelectorTerms": [{"alias": "al2023@v20240701"}],
    }));
    let resolved = resolve(&env.client, &pinned, &settings).await?;
    let ids: Vec<_> = resolved.amis.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, vec![env.amis[OLD_AL2023].as_str()]);

    let by_name_and_id = spec(serde_json::json!({
        "subnetSelectorTerms": [{"tags": {DISCOVERY: CLUSTER}}],
        "securityGroupSelectorTerms": [{"tags": {DISCOVERY: CLUSTER}}],
        "amiSelectorTerms": [
            {"name": "amazon-eks-node-al2023-x86_64-*", "owner": fixture::ACCOUNT},
            {"id": env.amis[ARM_AL2023]},
        ],
    }));
    let resolved = resolve(&env.client, &by_name_and_id, &settings).await?;
    let ids: Vec<_> = resolved.amis.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            env.amis[NEW_AL2023].as_str(),
            env.amis[OLD_AL2023].as_str(),
            env.amis[ARM_AL2023].as_str()
        ],
        "every match, newest first within an architecture"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_class_that_resolves_nothing_is_not_ready_and_launches_nothing() -> anyhow::Result<()>
{
    let env = fixture::env().await?;
    let settings = fixture::discovery_settings();
    let nothing = spec(serde_json::json!({
        "subnetSelectorTerms": [{"tags": {DISCOVERY: "my-cluster"}}],
        "securityGroupSelectorTerms": [{"tags": {DISCOVERY: CLUSTER}}],
        "amiSelectorTerms": [{"alias": "al2023@latest"}],
    }));
    let resolution = resolve(&env.client, &nothing, &settings).await?;
    let status = discovery::status(&nothing, &resolution, Some(1), 0);
    let ready = &status.conditions[0];
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "SubnetsNotFound")
    );
    assert_eq!(
        ready.message,
        "no subnets matched karpenter.sh/discovery=my-cluster"
    );
    assert_eq!(
        status.security_groups.len(),
        1,
        "what did resolve is still reported"
    );

    let good = resolve(&env.client, &fixture::node_class_spec(), &settings).await?;
    let status = discovery::status(&fixture::node_class_spec(), &good, Some(1), 0);
    assert_eq!(status.conditions[0].status, "True");
    assert_eq!(status.subnets.len(), 2);
    assert_eq!(status.amis.len(), 2);

    let cloud = kestrel_aws::ec2::Ec2Cloud::from_config(
        &env.config,
        kestrel_aws::ec2::Ec2Settings::new(CLUSTER),
    );
    cloud.bind(
        "general",
        kestrel_aws::ec2::BoundNodeClass {
            name: "broken".into(),
            spec: nothing,
            resolution,
            user_data: None,
        },
    );
    let request = fixture::request(
        "general-abcde",
        vec![fixture::offering(
            "m5.large",
            "us-east-1a",
            kestrel_core::cloud::CapacityType::OnDemand,
        )],
    );
    let error = kestrel_core::cloud::CloudApi::create(&cloud, &request)
        .await
        .expect_err("a NodeClass that is not ready launches nothing");
    assert!(error.to_string().contains("no subnets matched"), "{error}");
    assert_eq!(env.moto.calls("CreateFleet")?, 0);
    Ok(())
}
