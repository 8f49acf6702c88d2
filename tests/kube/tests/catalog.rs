//! The instance types the cloud describes (what `kestrel run --cloud aws` feeds the loop from
//! DescribeInstanceTypes and DescribeInstanceTypeOfferings) are what the controller plans with: only
//! the described types, only in the zones each is offered in; a new description rebuilds the
//! controller over it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kestrel_kube::assemble::DescribedTypes;
use kube::Api;
use kube::api::PostParams;

use crate::common::{self, RunningController};
use crate::provisioning::{pod, setup};

/// One embedded type, described as offered in one zone only.
fn described(instance_type: &str, zone: &str) -> Result<Arc<DescribedTypes>> {
    let t = kestrel_core::model::catalog::ec2_instance_type(instance_type)
        .with_context(|| format!("{instance_type} in the embedded catalog"))?
        .clone();
    Ok(Arc::new(DescribedTypes {
        zones: BTreeMap::from([(t.name.clone(), BTreeSet::from([zone.to_string()]))]),
        types: vec![t],
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_plans_with_the_described_types_in_their_zones_and_follows_a_new_description()
-> Result<()> {
    let (cluster, client) = setup().await?;
    let cloud = common::sim_cloud()?;
    let (describe, described_types) =
        tokio::sync::watch::channel(Some(described("c5.xlarge", "us-east-1b")?));
    let mut settings = common::settings();
    settings.instance_types = Some(described_types);
    let _controller = RunningController::start(&cluster, &cloud, settings);
    let pods = Api::<Pod>::namespaced(client.clone(), "default");

    // The region offers m5, c5 and r5 in three zones; the description only c5.xlarge in one.
    pods.create(&PostParams::default(), &pod("web-1", "500m"))
        .await?;
    let first = common::eventually(Duration::from_secs(30), "a first launch", || async {
        Ok(cloud.live_instances().first().cloned())
    })
    .await?;
    assert_eq!(
        (
            first.offering.instance_type.as_str(),
            first.offering.zone.as_str()
        ),
        ("c5.xlarge", "us-east-1b")
    );

    // A new description: only m5.2xlarge, in another zone. A pod too big for what is left of the
    // c5.xlarge (3920m allocatable) gets a node of the new description.
    describe.send_replace(Some(described("m5.2xlarge", "us-east-1c")?));
    pods.create(&PostParams::default(), &pod("web-2", "3500m"))
        .await?;
    let second = common::eventually(Duration::from_secs(30), "a second launch", || async {
        Ok(cloud
            .live_instances()
            .into_iter()
            .find(|i| i.id != first.id))
    })
    .await?;
    assert_eq!(
        (
            second.offering.instance_type.as_str(),
            second.offering.zone.as_str()
        ),
        ("m5.2xlarge", "us-east-1c")
    );
    assert_eq!(cloud.live_instances().len(), 2);
    Ok(())
}
