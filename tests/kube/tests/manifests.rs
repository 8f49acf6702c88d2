//! The CRDs install on a real API server and every example manifest applies and reads back typed.

use anyhow::Result;
use kestrel_core::api::{EC2NodeClass, NodePool};
use kestrel_kube_tests::cluster::TestCluster;
use kube::Api;

use crate::common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_install_and_examples_apply() -> Result<()> {
    common::init_tracing();
    let cluster = TestCluster::start()?;
    let client = cluster.client().await?;
    common::install_crds(&client).await?;
    let mut files = 0;
    for dir in ["examples/nodeclasses", "examples/nodepools"] {
        let mut paths: Vec<_> = std::fs::read_dir(common::repo_root().join(dir))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        paths.sort();
        for path in paths {
            let yaml = std::fs::read_to_string(&path)?;
            let applied = common::apply_yaml(&client, &yaml).await?;
            assert!(!applied.is_empty(), "{} applied nothing", path.display());
            files += 1;
        }
    }
    assert_eq!(files, 7);
    // What the server stored reads back as Kestrel's types (the schema kept every field).
    let pools = Api::<NodePool>::all(client.clone())
        .list(&Default::default())
        .await?;
    let classes = Api::<EC2NodeClass>::all(client.clone())
        .list(&Default::default())
        .await?;
    let pool_names: Vec<_> = pools
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert!(
        pool_names.contains(&"default".to_string()),
        "{pool_names:?}"
    );
    assert_eq!(pools.items.len(), 6, "{pool_names:?}");
    assert_eq!(classes.items.len(), 4);
    let default = pools
        .items
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("default"))
        .expect("listed");
    assert_eq!(default.spec.template.spec.node_class_ref.name, "default");
    assert_eq!(default.spec.template.spec.requirements.len(), 5);
    Ok(())
}
