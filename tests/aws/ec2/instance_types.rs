//! Allocatable computed from moto's DescribeInstanceTypes (the real catalog) against the embedded
//! figures, which come from Karpenter's published table.

use kestrel_core::model::catalog;
use kestrel_core::model::quantity::Quantity;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn computed_allocatable_agrees_with_the_embedded_catalog() -> anyhow::Result<()> {
    let moto = kestrel_aws_tests::MotoServer::start()?;
    let client = aws_sdk_ec2::Client::new(&crate::fixture::sdk_config(&moto).await);
    let facts = kestrel_aws::ec2::instance_types::describe(&client).await?;
    assert!(facts.len() > 1000, "{} types", facts.len());
    let embedded = catalog::ec2_instance_types().map_err(|e| anyhow::anyhow!("{e}"))?;
    let (mut compared, mut agree) = (0, 0);
    let mut differ = Vec::new();
    for t in embedded {
        let Some(f) = facts.iter().find(|f| f.name == t.name) else {
            continue;
        };
        compared += 1;
        let a = f.allocatable(None);
        let computed = [
            ("cpu", Quantity::parse(&format!("{}m", a.cpu_millis))?),
            ("memory", Quantity::parse(&format!("{}Mi", a.memory_mib))?),
            ("pods", Quantity::parse(&a.pods.to_string())?),
            (
                "ephemeral-storage",
                Quantity::parse(&format!("{}Mi", a.ephemeral_mib))?,
            ),
        ];
        if computed.iter().all(|(r, q)| t.allocatable.get(r) == *q) {
            agree += 1;
        } else if differ.len() < 5 {
            differ.push(t.name.clone());
        }
    }
    eprintln!(
        "allocatable: {agree} of {compared} catalog types agree exactly; e.g. differing: {differ:?}"
    );
    assert!(compared > 1000);
    assert!(agree * 100 >= compared * 90, "{agree} of {compared} agree");
    Ok(())
}
