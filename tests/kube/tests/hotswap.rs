//! Policy hot swap against the real API server: a NodePool's `kestrel.dev/ranker:
//! configmap:NAME` is installed from the ConfigMap's `binaryData` as it changes, which shows in the
//! instance type the next launch picks; a broken module (truncated bytes) or a pin that does not
//! match is rejected with an Event while the previous ranker keeps serving; removing the annotation
//! returns to the default; settings the policy refuses are rejected the same way.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kestrel_core::api::NodePool;
use kestrel_kube_tests::kubelet;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::common::{self, RunningController};
use crate::provisioning::{POOL, bound_node, pod};

/// c5.large (amd64, $0.085/h) is the cheapest fit for a 1.5-CPU pod; r6g.large (arm64, $0.1008/h)
/// wins only under a ranker that favours arm64.
const FAMILIES: [&str; 2] = ["c5", "r6g"];

/// The test ranker `tests/kube/policies/arm64-first`, built to a component (once per test binary).
fn arm64_first() -> Result<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/arm64-first");
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("arm64-first");
    kestrel_policy::build_component::build_component(&dir, &target, &dir)
        .map_err(|e| anyhow::anyhow!("building the arm64-first test ranker: {e}"))
}

async fn put_configmap(client: &Client, bytes: &[u8]) -> Result<()> {
    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("ranker".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        binary_data: Some(BTreeMap::from([(
            "policy.wasm".to_string(),
            ByteString(bytes.to_vec()),
        )])),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(client.clone(), "default")
        .patch(
            "ranker",
            &PatchParams::apply("kestrel-tests").force(),
            &Patch::Apply(&cm),
        )
        .await?;
    Ok(())
}

async fn annotate(client: &Client, annotations: serde_json::Value) -> Result<()> {
    Api::<NodePool>::all(client.clone())
        .patch(
            "default",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
        )
        .await?;
    Ok(())
}

/// Waits for the `n`-th Event of `reason` on the NodePool and returns its message.
async fn nth_event(client: &Client, reason: &str, n: usize) -> Result<String> {
    common::eventually(
        Duration::from_secs(60),
        &format!("{reason} Event #{n}"),
        || async {
            let mut events: Vec<_> = common::events_about(client, "NodePool", "default")
                .await?
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some(reason))
                .collect();
            events.sort_by_key(|e| e.event_time.clone().map(|t| t.0));
            Ok(events
                .get(n - 1)
                .map(|e| e.message.clone().unwrap_or_default()))
        },
    )
    .await
}

/// Creates a pod that needs a node of its own and returns the architecture of the node it is bound to.
async fn launch_arch(client: &Client, name: &str) -> Result<String> {
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod(name, "1500m"))
        .await?;
    let node = common::eventually(Duration::from_secs(60), &format!("{name} bound"), || {
        bound_node(client, name)
    })
    .await?;
    let node = Api::<Node>::all(client.clone()).get(&node).await?;
    node.metadata
        .labels
        .unwrap_or_default()
        .get("kubernetes.io/arch")
        .cloned()
        .context("the node has no arch label")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_update_swaps_the_ranker_a_broken_one_is_rejected_and_the_default_returns()
-> Result<()> {
    let good = tokio::task::spawn_blocking(arm64_first).await??;
    let default_wasm = std::fs::read(common::repo_root().join("policies/prebuilt/ranker.wasm"))?;
    let (cluster, client) = crate::provisioning::setup().await?;
    // Both architectures allowed: the ranker decides.
    let pool = POOL.replace(r#"values: ["amd64"]"#, r#"values: ["amd64", "arm64"]"#);
    assert_ne!(pool, POOL);
    common::apply_yaml(&client, &pool).await?;
    let cloud = common::sim_cloud_of(&FAMILIES)?;
    let kubelet = kubelet::spawn(
        client.clone(),
        cloud.clone(),
        common::instance_types_of(&FAMILIES)?,
    );
    let mut settings = common::settings();
    settings.assembly.instance_types = FAMILIES.iter().map(|f| f.to_string()).collect();
    let controller = RunningController::start(&cluster, &cloud, settings);

    // The wasm default from a ConfigMap: same choice as the native default, amd64.
    put_configmap(&client, &default_wasm).await?;
    annotate(&client, json!({"kestrel.dev/ranker": "configmap:ranker"})).await?;
    let swapped = nth_event(&client, "PolicySwapped", 1).await?;
    assert!(swapped.contains("default-ranker@"), "{swapped}");
    assert_eq!(launch_arch(&client, "p1").await?, "amd64");

    // The ConfigMap changes: the next launch is ranked by the new module.
    put_configmap(&client, &good).await?;
    let swapped = nth_event(&client, "PolicySwapped", 2).await?;
    assert!(swapped.contains("arm64-first@"), "{swapped}");
    assert_eq!(launch_arch(&client, "p2").await?, "arm64", "not swapped");

    // A truncated module is rejected; the arm64 ranker keeps serving.
    put_configmap(&client, &good[..good.len() / 2]).await?;
    let rejected = nth_event(&client, "PolicyRejected", 1).await?;
    assert!(
        rejected.contains("arm64-first@") && rejected.contains("keeps serving"),
        "{rejected}"
    );
    // A pin that does not match the bytes is rejected too (checked before compiling).
    annotate(
        &client,
        json!({"kestrel.dev/ranker-sha256": kestrel_policy::engine::sha256_hex(&default_wasm)}),
    )
    .await?;
    let rejected = nth_event(&client, "PolicyRejected", 2).await?;
    assert!(rejected.contains("sha256 pin mismatch"), "{rejected}");
    assert_eq!(
        launch_arch(&client, "p3").await?,
        "arm64",
        "a rejected policy replaced the one serving"
    );

    // No annotation: the default ranks again.
    annotate(
        &client,
        json!({"kestrel.dev/ranker": null, "kestrel.dev/ranker-sha256": null}),
    )
    .await?;
    let swapped = nth_event(&client, "PolicySwapped", 3).await?;
    assert!(
        swapped.contains(&kestrel_policy::NativeRanker::label()),
        "{swapped}"
    );
    assert_eq!(launch_arch(&client, "p4").await?, "amd64");

    // Settings are installed with their policy: the default ranker takes none, so these are
    // rejected (it keeps serving as it was); taking them away is an install again.
    annotate(&client, json!({"kestrel.dev/ranker-settings": "weight: 3"})).await?;
    let rejected = nth_event(&client, "PolicyRejected", 3).await?;
    assert!(
        rejected.contains("takes no settings") && rejected.contains("keeps serving"),
        "{rejected}"
    );
    annotate(&client, json!({"kestrel.dev/ranker-settings": null})).await?;
    let swapped = nth_event(&client, "PolicySwapped", 4).await?;
    assert!(
        swapped.contains(&kestrel_policy::NativeRanker::label()),
        "{swapped}"
    );
    assert_eq!(cloud.live_instances().len(), 4, "one node per pod");

    controller.stop()?;
    kubelet.abort();
    Ok(())
}
