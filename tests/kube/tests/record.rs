//! `kestrel record` against the real API server: a Deployment's pods (through their ReplicaSet)
//! scaled up while recording, a PDB and the test NodePool become a scenario `kestrel simulate`
//! replays with the same shape (the NodePool, the workload, its replicas over time); no environment
//! value, command or image of the pods is written.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kestrel_sim::sim::replay::SimOptions;
use kestrel_sim::sim::report::Report;
use kestrel_sim::sim::scenario::{Scenario, WorkloadKind};
use kube::Api;
use kube::api::PostParams;

use crate::common;
use crate::provisioning::setup;

/// A pod of Deployment `web` (its ReplicaSet `web-6c9d8b`), carrying things that must not be written.
fn web_pod(i: u32) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("web-6c9d8b-{i}"),
            "namespace": "default",
            "labels": {"app": "web", "pod-template-hash": "6c9d8b"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-6c9d8b",
                                 "uid": "00000000-0000-0000-0000-000000000001", "controller": true}]
        },
        "spec": {
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}],
            "containers": [{"name": "app", "image": "private.example/web:7",
                            "env": [{"name": "DB_PASSWORD", "value": "s3cr3t-value"}],
                            "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}]
        }
    }))
    .expect("a valid pod")
}

const PDB: &str = r#"
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec:
  maxUnavailable: 1
  selector: {matchLabels: {app: web}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kestrel_record_captures_a_scenario_that_simulates_with_the_same_shape() -> Result<()> {
    let bin = tokio::task::spawn_blocking(kestrel_kube_tests::binary::kestrel).await??;
    let (cluster, client) = setup().await?;
    common::apply_yaml(&client, PDB).await?;
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    for i in 0..2 {
        pods.create(&PostParams::default(), &web_pod(i)).await?;
    }
    let out = std::env::temp_dir().join(format!("kestrel-recorded-{}.yaml", std::process::id()));
    let mut record = Command::new(bin)
        .arg("record")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .args([
            "--duration",
            "6s",
            "--every",
            "1s",
            "--name",
            "recorded-test",
            "--output",
        ])
        .arg(&out)
        .stderr(Stdio::piped())
        .spawn()
        .context("starting kestrel record")?;
    // Scaled from 2 to 5 pods while recording: once its first sample is taken (its progress line),
    // however long the process took to start.
    let stderr = record.stderr.take().context("stderr is piped")?;
    let (first, sampled) = std::sync::mpsc::channel();
    let progress = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(" s: ") {
                // The receiver only waits for the first; later sends may find it gone.
                first.send(()).ok();
            }
            lines.push(line);
        }
        lines
    });
    tokio::task::spawn_blocking(move || sampled.recv_timeout(Duration::from_secs(60)))
        .await?
        .context("kestrel record took no sample within 60 s")?;
    for i in 2..5 {
        pods.create(&PostParams::default(), &web_pod(i)).await?;
    }
    let status = tokio::task::spawn_blocking(move || record.wait()).await??;
    let progress = progress
        .join()
        .map_err(|_| anyhow::anyhow!("the stderr reader panicked"))?;
    assert!(status.success(), "kestrel record: {status}: {progress:?}");
    let text = std::fs::read_to_string(&out)?;
    for secret in ["s3cr3t-value", "DB_PASSWORD", "private.example"] {
        assert!(!text.contains(secret), "{secret} was written:\n{text}");
    }
    let scenario = Scenario::parse(&text, "recorded.yaml").map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(scenario.node_pools.len(), 1);
    assert_eq!(
        scenario.node_pools[0].metadata.name.as_deref(),
        Some("default")
    );
    let web = scenario
        .workloads
        .iter()
        .find(|w| w.name == "web")
        .with_context(|| format!("no workload `web`:\n{text}"))?;
    assert!(matches!(web.kind, WorkloadKind::Deployment));
    assert_eq!(web.replicas, Some(2), "{text}");
    assert_eq!(
        web.scale.iter().map(|s| s.replicas).collect::<Vec<_>>(),
        [5],
        "{text}"
    );
    assert_eq!(
        web.pod_disruption_budget
            .as_ref()
            .and_then(|p| p.max_unavailable),
        Some(1)
    );
    // The simulator replays it: five pods of the workload, all placed on the recorded NodePool.
    let report = Report::from_outcome(&kestrel_sim::sim::replay::simulate(
        &scenario,
        SimOptions::default(),
        &mut |_| {},
    ));
    assert_eq!(report.pods.created, 5, "{:?}", report.pods);
    assert!(report.never_placed.is_empty(), "{:?}", report.never_placed);
    std::fs::remove_file(&out).ok();
    Ok(())
}
