//! The adapter configured by the standard chain only: the environment a pod would have.

use kestrel_core::cloud::CloudApi;

const CHILD: &str = "KESTREL_AWS_CONFIG_CHILD";

/// Runs itself again with only environment variables pointing at moto (the process environment is
/// shared by parallel tests, so the variables go to a child process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_chain_reads_the_endpoint_region_and_keys_from_the_environment()
-> anyhow::Result<()> {
    if std::env::var_os(CHILD).is_some() {
        let config = kestrel_aws::config::load().await;
        let cloud = kestrel_aws::ec2::Ec2Cloud::from_config(
            &config,
            kestrel_aws::ec2::Ec2Settings::new("env-cluster"),
        );
        let listing = cloud.list().await?;
        assert!(listing.complete && listing.instances.is_empty());
        return Ok(());
    }
    let moto = kestrel_aws_tests::MotoServer::start()?;
    let output = std::process::Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "config::the_standard_chain_reads_the_endpoint_region_and_keys_from_the_environment",
        ])
        .env(CHILD, "1")
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .output()?;
    assert!(
        output.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 passed"));
    assert_eq!(
        moto.calls("DescribeInstances")?,
        1,
        "the child's call reached this server"
    );
    Ok(())
}
