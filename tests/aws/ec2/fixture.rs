//! A moto account laid out like a small EKS cluster's VPC: tagged subnets in two zones, one more
//! subnet tagged for another cluster, a tagged security group, and EKS-named AMIs for both
//! architectures (two AL2023 versions for amd64).

use std::collections::BTreeMap;

use aws_config::BehaviorVersion;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::{Credentials, Region};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use kestrel_aws::ec2::{BoundNodeClass, DiscoverySettings, Ec2Cloud, Ec2Settings};
use kestrel_aws_tests::MotoServer;
use kestrel_core::api::ec2nodeclass::EC2NodeClassSpec;
use kestrel_core::cloud::{CapacityType, LaunchRequest, Offering};

pub const CLUSTER: &str = "test-cluster";
pub const ACCOUNT: &str = "123456789012";
pub const DISCOVERY: &str = "karpenter.sh/discovery";
pub const OLD_AL2023: &str = "amazon-eks-node-al2023-x86_64-standard-1.33-v20240701";
pub const NEW_AL2023: &str = "amazon-eks-node-al2023-x86_64-standard-1.33-v20240807";
pub const ARM_AL2023: &str = "amazon-eks-node-al2023-arm64-standard-1.33-v20240807";

pub struct Env {
    /// Dropped last: the clients below talk to it.
    pub moto: MotoServer,
    pub config: aws_config::SdkConfig,
    pub client: Client,
    /// zone -> subnet id (tagged for this cluster).
    pub subnets: BTreeMap<String, String>,
    /// The subnet tagged for another cluster (us-east-1c).
    pub other_subnet: String,
    pub security_group: String,
    /// AMI name -> id.
    pub amis: BTreeMap<String, String>,
}

fn tags(resource: ResourceType, tags: &[(&str, &str)]) -> TagSpecification {
    let mut spec = TagSpecification::builder().resource_type(resource);
    for (k, v) in tags {
        spec = spec.tags(Tag::builder().key(*k).value(*v).build());
    }
    spec.build()
}

/// The SDK configuration a pod would load, pointed at this test's server (the loader's own
/// endpoint setting: what `AWS_ENDPOINT_URL` sets, without touching the process environment that
/// parallel tests share).
pub async fn sdk_config(moto: &MotoServer) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await
}

pub async fn env() -> anyhow::Result<Env> {
    let moto = MotoServer::start()?;
    let config = sdk_config(&moto).await;
    let client = Client::new(&config);
    let vpc = client
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await?
        .vpc
        .and_then(|v| v.vpc_id)
        .ok_or_else(|| anyhow::anyhow!("no vpc id"))?;
    let mut subnets = BTreeMap::new();
    let layout = [
        ("us-east-1a", "10.0.1.0/24", CLUSTER, Some("private")),
        ("us-east-1b", "10.0.2.0/24", CLUSTER, None),
        ("us-east-1c", "10.0.3.0/24", "other-cluster", None),
    ];
    let mut other_subnet = String::new();
    for (zone, cidr, cluster, tier) in layout {
        let mut subnet_tags = vec![(DISCOVERY, cluster)];
        subnet_tags.extend(tier.map(|t| ("tier", t)));
        let id = client
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(cidr)
            .availability_zone(zone)
            .tag_specifications(tags(ResourceType::Subnet, &subnet_tags))
            .send()
            .await?
            .subnet
            .and_then(|s| s.subnet_id)
            .ok_or_else(|| anyhow::anyhow!("no subnet id"))?;
        if cluster == CLUSTER {
            subnets.insert(zone.to_string(), id);
        } else {
            other_subnet = id;
        }
    }
    let security_group = client
        .create_security_group()
        .group_name("nodes")
        .description("nodes")
        .vpc_id(&vpc)
        .tag_specifications(tags(ResourceType::SecurityGroup, &[(DISCOVERY, CLUSTER)]))
        .send()
        .await?
        .group_id
        .ok_or_else(|| anyhow::anyhow!("no security group id"))?;
    let mut amis = BTreeMap::new();
    // moto's registered images have no architecture; images made from an instance inherit the
    // source image's, so each EKS-named image is made from an instance of a stock one.
    for (name, arch) in [
        (OLD_AL2023, "x86_64"),
        (NEW_AL2023, "x86_64"),
        (ARM_AL2023, "arm64"),
    ] {
        let source = client
            .describe_images()
            .owners("amazon")
            .filters(Filter::builder().name("architecture").values(arch).build())
            .filters(
                Filter::builder()
                    .name("name")
                    .values("al2023-ami-2023*")
                    .build(),
            )
            .send()
            .await?
            .images
            .unwrap_or_default()
            .into_iter()
            .find_map(|i| i.image_id)
            .ok_or_else(|| anyhow::anyhow!("moto has no {arch} al2023 image"))?;
        let instance = client
            .run_instances()
            .image_id(source)
            .min_count(1)
            .max_count(1)
            .send()
            .await?
            .instances
            .unwrap_or_default()
            .into_iter()
            .find_map(|i| i.instance_id)
            .ok_or_else(|| anyhow::anyhow!("no source instance"))?;
        let image = client
            .create_image()
            .instance_id(&instance)
            .name(name)
            .send()
            .await?
            .image_id
            .ok_or_else(|| anyhow::anyhow!("no image id"))?;
        client
            .terminate_instances()
            .instance_ids(instance)
            .send()
            .await?;
        amis.insert(name.to_string(), image);
        // EC2 dates images to the second; the versions must not tie.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    Ok(Env {
        moto,
        config,
        client,
        subnets,
        other_subnet,
        security_group,
        amis,
    })
}

/// The NodeClass most tests launch with: discovery by the cluster tag, AL2023 latest.
pub fn node_class_spec() -> EC2NodeClassSpec {
    serde_json::from_value(serde_json::json!({
        "subnetSelectorTerms": [{"tags": {DISCOVERY: CLUSTER}}],
        "securityGroupSelectorTerms": [{"tags": {DISCOVERY: CLUSTER}}],
        "amiSelectorTerms": [{"alias": "al2023@latest"}],
        "instanceProfile": "KestrelNodeProfile",
        "tags": {"team": "platform"},
    }))
    .expect("a valid EC2NodeClass spec")
}

/// Alias AMIs are looked for in this account: moto's own catalog has no EKS images.
pub fn discovery_settings() -> DiscoverySettings {
    DiscoverySettings {
        kubernetes_version: Some("1.33".into()),
        alias_owners: vec![ACCOUNT.into()],
    }
}

impl Env {
    /// A fresh adapter (as after a restart) with `general` bound to the default NodeClass.
    pub async fn cloud(&self) -> anyhow::Result<Ec2Cloud> {
        self.cloud_with(Ec2Settings::new(CLUSTER)).await
    }

    pub async fn cloud_with(&self, settings: Ec2Settings) -> anyhow::Result<Ec2Cloud> {
        let cloud = Ec2Cloud::from_config(&self.config, settings);
        let spec = node_class_spec();
        let resolution =
            kestrel_aws::ec2::resolve(&self.client, &spec, &discovery_settings()).await?;
        cloud.bind(
            "general",
            BoundNodeClass {
                name: "default".into(),
                spec,
                resolution,
                user_data: Some("dXNlci1kYXRh".into()),
            },
        );
        Ok(cloud)
    }

    /// This cluster's live instances as EC2 reports them.
    pub async fn instances(&self) -> anyhow::Result<Vec<aws_sdk_ec2::types::Instance>> {
        let answer = self
            .client
            .describe_instances()
            .filters(
                Filter::builder()
                    .name(format!("tag:kubernetes.io/cluster/{CLUSTER}"))
                    .values("owned")
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .build(),
            )
            .send()
            .await?;
        Ok(answer
            .reservations()
            .iter()
            .flat_map(|r| r.instances().iter().cloned())
            .collect())
    }
}

pub fn offering(instance_type: &str, zone: &str, capacity_type: CapacityType) -> Offering {
    Offering {
        instance_type: instance_type.into(),
        zone: zone.into(),
        capacity_type,
        price: 0.1,
    }
}

pub fn request(claim: &str, offerings: Vec<Offering>) -> LaunchRequest {
    LaunchRequest {
        claim: claim.into(),
        node_pool: "general".into(),
        offerings: offerings.into(),
        template: Default::default(),
    }
}
