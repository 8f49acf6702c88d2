//! Instance profiles for role-only EC2NodeClasses, against moto's IAM: made once with the class's
//! role and Karpenter's tags, found again (not made twice) by a restarted controller, the role
//! replaced when the class changes it, a same-named profile another owner made left alone, and the
//! profile (not the role) deleted with its class.

use aws_sdk_iam::Client;
use aws_sdk_iam::types::Tag;
use kestrel_aws::iam::{InstanceProfiles, MANAGED_BY_TAG};

async fn role(iam: &Client, name: &str) -> anyhow::Result<()> {
    iam.create_role()
        .role_name(name)
        .assume_role_policy_document(kestrel_aws_tests::EC2_TRUST_POLICY)
        .send()
        .await?;
    Ok(())
}

async fn roles_of(iam: &Client, profile: &str) -> anyhow::Result<Vec<String>> {
    let answer = iam
        .get_instance_profile()
        .instance_profile_name(profile)
        .send()
        .await?;
    let profile = answer
        .instance_profile
        .ok_or_else(|| anyhow::anyhow!("no profile"))?;
    Ok(profile
        .roles()
        .iter()
        .map(|r| r.role_name().to_string())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_only_node_class_gets_one_profile_holding_its_role() -> anyhow::Result<()> {
    let moto = kestrel_aws_tests::MotoServer::start()?;
    let config = crate::fixture::sdk_config(&moto).await;
    let iam = Client::new(&config);
    role(&iam, "KarpenterNodeRole-a").await?;
    role(&iam, "KarpenterNodeRole-b").await?;
    let profiles = InstanceProfiles::from_config(&config, crate::fixture::CLUSTER);

    let name = profiles.ensure("default", "KarpenterNodeRole-a").await?;
    assert_eq!(name, profiles.name_for("default"));
    assert!(
        name.starts_with(&format!("{}_", crate::fixture::CLUSTER)),
        "{name}"
    );
    assert_ne!(name, profiles.name_for("gpu"), "one profile per NodeClass");
    assert_eq!(roles_of(&iam, &name).await?, ["KarpenterNodeRole-a"]);
    // What GetInstanceProfile answers (moto has no ListInstanceProfileTags), which is also what
    // the ownership check reads.
    let answer = iam
        .get_instance_profile()
        .instance_profile_name(&name)
        .send()
        .await?;
    let tags = answer
        .instance_profile
        .map(|p| p.tags)
        .unwrap_or_default()
        .unwrap_or_default();
    let tag = |k: &str| {
        tags.iter()
            .find(|t| t.key() == k)
            .map(|t| t.value().to_string())
    };
    assert_eq!(
        tag(&format!(
            "kubernetes.io/cluster/{}",
            crate::fixture::CLUSTER
        ))
        .as_deref(),
        Some("owned")
    );
    assert_eq!(
        tag(MANAGED_BY_TAG).as_deref(),
        Some(crate::fixture::CLUSTER)
    );
    assert_eq!(
        tag("karpenter.k8s.aws/ec2nodeclass").as_deref(),
        Some("default")
    );
    assert_eq!(
        tag("topology.kubernetes.io/region").as_deref(),
        Some("us-east-1")
    );

    // A restarted controller (a new client, the same cluster) finds it: still one profile.
    let again = InstanceProfiles::from_config(&config, crate::fixture::CLUSTER);
    assert_eq!(again.ensure("default", "KarpenterNodeRole-a").await?, name);
    let listed = iam.list_instance_profiles().send().await?;
    assert_eq!(listed.instance_profiles().len(), 1);

    // The class names another role: the profile holds that one only.
    again.ensure("default", "KarpenterNodeRole-b").await?;
    assert_eq!(roles_of(&iam, &name).await?, ["KarpenterNodeRole-b"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_named_profile_of_another_owner_is_not_changed() -> anyhow::Result<()> {
    let moto = kestrel_aws_tests::MotoServer::start()?;
    let config = crate::fixture::sdk_config(&moto).await;
    let iam = Client::new(&config);
    role(&iam, "TheirRole").await?;
    role(&iam, "KarpenterNodeRole").await?;
    let profiles = InstanceProfiles::from_config(&config, crate::fixture::CLUSTER);
    let name = profiles.name_for("default");
    iam.create_instance_profile()
        .instance_profile_name(&name)
        .tags(Tag::builder().key("team").value("theirs").build()?)
        .send()
        .await?;
    iam.add_role_to_instance_profile()
        .instance_profile_name(&name)
        .role_name("TheirRole")
        .send()
        .await?;
    let err = profiles
        .ensure("default", "KarpenterNodeRole")
        .await
        .expect_err("someone else's profile");
    assert!(err.to_string().contains("not tagged as cluster"), "{err}");
    assert_eq!(roles_of(&iam, &name).await?, ["TheirRole"]);
    // Nor deleted with a NodeClass of that name.
    assert!(!profiles.delete("default").await?, "not ours to delete");
    assert_eq!(roles_of(&iam, &name).await?, ["TheirRole"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_node_class_takes_its_profile_and_leaves_its_role() -> anyhow::Result<()> {
    let moto = kestrel_aws_tests::MotoServer::start()?;
    let config = crate::fixture::sdk_config(&moto).await;
    let iam = Client::new(&config);
    role(&iam, "KarpenterNodeRole").await?;
    let profiles = InstanceProfiles::from_config(&config, crate::fixture::CLUSTER);
    let name = profiles.ensure("default", "KarpenterNodeRole").await?;
    let kept = profiles.ensure("gpu", "KarpenterNodeRole").await?;

    assert!(profiles.delete("default").await?, "deleted");
    let gone = iam
        .get_instance_profile()
        .instance_profile_name(&name)
        .send()
        .await
        .expect_err("the profile is gone");
    assert_eq!(
        aws_sdk_iam::error::ProvideErrorMetadata::code(&gone),
        Some("NoSuchEntity")
    );
    // The other class's profile and the role (the user's) stay; a second delete finds nothing.
    assert_eq!(roles_of(&iam, &kept).await?, ["KarpenterNodeRole"]);
    iam.get_role().role_name("KarpenterNodeRole").send().await?;
    assert!(!profiles.delete("default").await?, "already gone");
    Ok(())
}
