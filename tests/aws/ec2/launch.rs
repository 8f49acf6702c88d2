//! Launching through CreateFleet against moto: template, overrides, tags, userData, idempotency.

use aws_sdk_ec2::types::Filter;
use kestrel_core::cloud::{CapacityType, CloudApi};

use crate::fixture::{self, CLUSTER, NEW_AL2023, offering, request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_uses_the_templates_overrides_and_tags() -> anyhow::Result<()> {
    let env = fixture::env().await?;
    let cloud = env.cloud().await?;
    let offerings = vec![
        offering("m5.large", "us-east-1a", CapacityType::Spot),
        offering("m6g.large", "us-east-1b", CapacityType::Spot),
        offering("c5.large", "us-east-1b", CapacityType::Spot),
        offering("m5.large", "us-east-1a", CapacityType::OnDemand),
    ];
    let launched = cloud.create(&request("general-x7k2p", offerings)).await?;
    assert!(launched.skipped.is_empty());
    assert_eq!(launched.instance.claim, "general-x7k2p");
    // moto takes the first override whatever the strategy: the ranker's first choice.
    assert_eq!(launched.instance.offering.instance_type, "m5.large");
    assert_eq!(launched.instance.offering.capacity_type, CapacityType::Spot);

    let fleet = env.moto.last_request("CreateFleet")?;
    assert_eq!(fleet["Type"], "instant");
    assert_eq!(fleet["ClientToken"], "general-x7k2p");
    assert_eq!(
        fleet["TargetCapacitySpecification.DefaultTargetCapacityType"],
        "spot"
    );
    assert_eq!(
        fleet["SpotOptions.AllocationStrategy"],
        "capacity-optimized-prioritized"
    );
    // One spot request: amd64 (m5.large in a, c5.large in b) and arm64 (m6g.large in b) templates;
    // the on-demand offering waits for a second request.
    let overrides: Vec<_> = (1..=2)
        .flat_map(|config| (1..=3).map(move |o| (config, o)))
        .filter_map(|(c, o)| {
            let key = |field: &str| format!("LaunchTemplateConfigs.{c}.Overrides.{o}.{field}");
            Some((
                fleet.get(&key("InstanceType"))?.clone(),
                fleet[&key("AvailabilityZone")].clone(),
                fleet[&key("SubnetId")].clone(),
                fleet[&key("Priority")].clone(),
            ))
        })
        .collect();
    let a = env.subnets["us-east-1a"].clone();
    let b = env.subnets["us-east-1b"].clone();
    let expected = [
        ("m5.large", "us-east-1a", &a, "0"),
        ("c5.large", "us-east-1b", &b, "2"),
        ("m6g.large", "us-east-1b", &b, "1"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(t, z, s, p)| (t.to_string(), z.to_string(), s.to_string(), p.to_string()))
        .collect();
    let normalize = |p: &str| p.trim_end_matches(".0").to_string();
    let got: Vec<_> = overrides
        .iter()
        .map(|(t, z, s, p)| (t.clone(), z.clone(), s.clone(), normalize(p)))
        .collect();
    assert_eq!(got, expected);

    let instances = env.instances().await?;
    assert_eq!(instances.len(), 1);
    let instance = &instances[0];
    assert_eq!(instance.instance_id(), Some(launched.instance.id.as_str()));
    let tags = kestrel_aws::ec2::tags::from_sdk(instance.tags());
    for (key, value) in [
        ("karpenter.sh/nodepool", "general"),
        ("karpenter.sh/nodeclaim", "general-x7k2p"),
        ("karpenter.k8s.aws/ec2nodeclass", "default"),
        (&format!("kubernetes.io/cluster/{CLUSTER}") as &str, "owned"),
        ("eks:eks-cluster-name", CLUSTER),
        ("team", "platform"),
    ] {
        assert_eq!(tags.get(key).map(String::as_str), Some(value), "tag {key}");
    }
    assert_eq!(instance.image_id(), Some(env.amis[NEW_AL2023].as_str()));

    // The amd64 template: the newest AMI, the userData, IMDSv2 required, the security group.
    let template_id =
        fleet["LaunchTemplateConfigs.1.LaunchTemplateSpecification.LaunchTemplateId"].clone();
    let version = env
        .client
        .describe_launch_template_versions()
        .launch_template_id(&template_id)
        .send()
        .await?;
    let data = version.launch_template_versions()[0]
        .launch_template_data()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no template data"))?;
    assert_eq!(data.image_id(), Some(env.amis[NEW_AL2023].as_str()));
    assert_eq!(data.user_data(), Some("dXNlci1kYXRh"));
    assert_eq!(
        data.security_group_ids(),
        std::slice::from_ref(&env.security_group)
    );
    assert_eq!(
        data.metadata_options()
            .and_then(|m| m.http_tokens())
            .map(|t| t.as_str()),
        Some("required")
    );
    assert_eq!(
        data.iam_instance_profile().and_then(|p| p.name()),
        Some("KestrelNodeProfile")
    );

    // A second claim with the same content reuses the templates.
    let templates_before = templates(&env).await?;
    assert_eq!(templates_before.len(), 2, "{templates_before:?}");
    cloud
        .create(&request(
            "general-b9q4z",
            vec![offering("m5.large", "us-east-1b", CapacityType::OnDemand)],
        ))
        .await?;
    let fleet = env.moto.last_request("CreateFleet")?;
    assert_eq!(fleet["OnDemandOptions.AllocationStrategy"], "prioritized");
    assert_eq!(templates(&env).await?, templates_before);
    // A fresh adapter (a restart) finds them by name instead of creating more.
    env.cloud()
        .await?
        .create(&request(
            "general-r3stt",
            vec![offering("m5.large", "us-east-1b", CapacityType::OnDemand)],
        ))
        .await?;
    assert_eq!(templates(&env).await?, templates_before);
    assert_eq!(env.moto.calls("CreateLaunchTemplate")?, 2);
    Ok(())
}

async fn templates(env: &fixture::Env) -> anyhow::Result<Vec<String>> {
    let answer = env
        .client
        .describe_launch_templates()
        .filters(
            Filter::builder()
                .name(format!("tag:kubernetes.io/cluster/{CLUSTER}"))
                .values("owned")
                .build(),
        )
        .send()
        .await?;
    let mut names: Vec<_> = answer
        .launch_templates()
        .iter()
        .filter_map(|t| t.launch_template_name().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_launch_templates_are_collected() -> anyhow::Result<()> {
    let env = fixture::env().await?;
    let cloud = env.cloud().await?;
    cloud
        .create(&request(
            "general-aaaaa",
            vec![offering("m5.large", "us-east-1a", CapacityType::OnDemand)],
        ))
        .await?;
    assert_eq!(templates(&env).await?.len(), 1);
    assert!(
        cloud.collect_launch_templates().await?.is_empty(),
        "in use: kept"
    );

    // The NodeClass changes (its tags and userData): the old template is no longer produced.
    let mut spec = fixture::node_class_spec();
    spec.tags.insert("team".into(), "storage".into());
    let resolution =
        kestrel_aws::ec2::resolve(&env.client, &spec, &fixture::discovery_settings()).await?;
    cloud.bind(
        "general",
        kestrel_aws::ec2::BoundNodeClass {
            name: "default".into(),
            spec,
            resolution,
            user_data: None,
        },
    );
    let before = templates(&env).await?;
    let deleted = cloud.collect_launch_templates().await?;
    assert_eq!(deleted, before);
    assert!(templates(&env).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_adapter_finds_the_claims_instance_instead_of_launching_again()
-> anyhow::Result<()> {
    let env = fixture::env().await?;
    let offerings = vec![offering("m5.large", "us-east-1a", CapacityType::Spot)];
    let first = env
        .cloud()
        .await?
        .create(&request("general-crash", offerings.clone()))
        .await?;
    // The controller crashed before recording the claim: a new adapter launches it again.
    let again = env
        .cloud()
        .await?
        .create(&request("general-crash", offerings))
        .await?;
    assert_eq!(again.instance.id, first.instance.id);
    assert_eq!(env.instances().await?.len(), 1, "no second instance");
    assert_eq!(env.moto.calls("CreateFleet")?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_is_idempotent() -> anyhow::Result<()> {
    let env = fixture::env().await?;
    let cloud = env.cloud().await?;
    let launched = cloud
        .create(&request(
            "general-term",
            vec![offering("m5.large", "us-east-1a", CapacityType::OnDemand)],
        ))
        .await?;
    cloud.delete(&launched.instance.id).await?;
    cloud.delete(&launched.instance.id).await?;
    cloud.delete("i-0123456789abcdef0").await?;
    assert!(env.instances().await?.is_empty());
    Ok(())
}
