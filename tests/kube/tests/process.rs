//! `kestrel run` as a process, killed with SIGKILL during a launch and during a drain, then started
//! again: no pod lost, no instance leaked, no second instance. The simulated cloud outlives the
//! process: `--cloud simulated --cloud-state FILE` keeps it in a file (claim names are the client
//! tokens), which the test's kubelet boots into Nodes from this process.
//!
//! Claim names never repeat across processes (they continue from the wall clock), so the only way
//! the second process can find the instance the first one launched is its recovery from the
//! NodeClaim records: without it, the pod gets a second claim and a second instance.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Node, Pod};
use kestrel_core::api::NodeClaim;
use kestrel_kube::file_cloud::FileCloud;
use kestrel_kube_tests::binary::Process;
use kestrel_kube_tests::cluster::TestCluster;
use kestrel_kube_tests::kubelet;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};

use crate::common;
use crate::provisioning::{bound_node, pod, setup};

fn kestrel_binary() -> Result<PathBuf> {
    kestrel_kube_tests::binary::kestrel()
}

/// One `kestrel run` process, its log in `log`. Killed (SIGKILL) on drop.
fn kestrel_run(cluster: &TestCluster, state: &Path, log: &Path) -> Result<Process> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut command = Command::new(kestrel_binary()?);
    command
        .arg("run")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .arg("--cloud-state")
        .arg(state)
        .args([
            "--cloud",
            "simulated",
            "--zones",
            &common::ZONES.join(","),
            "--instance-types",
            &common::FAMILIES.join(","),
            "--default-policies",
            "native",
            "--policy-namespace",
            "default",
            "--cluster-name",
            "kestrel-test",
            "--log-level",
            "kestrel_kube=info,warn",
            "--log-format",
            "json",
            // A restarted container keeps its pod's name, so it holds its own lease again
            // at once; the endpoints are not under test here (no fixed port to collide on).
            "--identity",
            "kestrel-process-test",
            "--metrics-port",
            "0",
            "--health-probe-port",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(log);
    Process::spawn(command)
}

fn workdir(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "kestrel-process-{name}-{}-{}",
        std::process::id(),
        kestrel_core::clock::Clock::now(&kestrel_core::clock::SystemClock)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn live(cloud: &FileCloud) -> Result<Vec<kestrel_kube::file_cloud::StoredInstance>> {
    Ok(cloud
        .read()?
        .instances
        .into_iter()
        .filter(|i| i.state != "terminated")
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kestrel_run_killed_during_a_launch_resumes_it_after_restart_without_a_second_instance()
-> Result<()> {
    let bin = tokio::task::spawn_blocking(kestrel_binary).await??;
    eprintln!("kestrel binary: {}", bin.display());
    let (cluster, client) = setup().await?;
    let dir = workdir("launch")?;
    let state = dir.join("cloud.json");
    let log = dir.join("kestrel.log");
    let cloud = FileCloud::new(&state);
    let first = kestrel_run(&cluster, &state, &log)?;
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-1", "500m"))
        .await?;
    // Killed once the instance exists and before any Node registered (no kubelet yet): the launch
    // is done in the cloud, not yet in the cluster.
    common::eventually(Duration::from_secs(60), "the instance launched", || async {
        first.check_alive()?;
        Ok((!cloud.read()?.instances.is_empty()).then_some(()))
    })
    .await
    .with_context(|| format!("log: {}", log.display()))?;
    first.kill()?;
    let claims = Api::<NodeClaim>::all(client.clone());
    let before: Vec<_> = claims
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(before.len(), 1, "{before:?}");

    // The restarted process decides before any Node registers (longer than the 1 s batch window):
    // only its recovery from the NodeClaim record keeps it from planning the pod again (a Node
    // registering first would give the pod room and hide a missing recovery).
    let second = kestrel_run(&cluster, &state, &log)?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let kubelet = kubelet::spawn_file(client.clone(), cloud.clone(), common::instance_types()?);
    common::eventually(Duration::from_secs(60), "the pod bound", || async {
        second.check_alive()?;
        bound_node(&client, "web-1").await
    })
    .await
    .with_context(|| format!("log: {}", log.display()))?;
    let after: Vec<_> = claims
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(after, before, "the restarted process made another claim");
    let state_now = cloud.read()?;
    assert_eq!(
        state_now.instances.len(),
        1,
        "a second instance launched: {:?}",
        state_now.instances
    );
    assert_eq!(state_now.instances[0].claim, before[0]);
    // Whether the restarted process re-sent the launch (same token) or found the launch already
    // recorded depends on when the kill landed; either way only the record led to the instance.
    eprintln!("create calls: {}", state_now.creates);
    second.kill()?;
    kubelet.abort();
    // `--log-format json`: every line one JSON object, the startup logged.
    let text = std::fs::read_to_string(&log)?;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect::<Result<_>>()?;
    assert!(
        lines
            .iter()
            .filter(|l| l["message"] == "caches synced")
            .count()
            == 2,
        "two starts logged: {text}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kestrel_run_killed_during_a_drain_finishes_it_after_restart() -> Result<()> {
    tokio::task::spawn_blocking(kestrel_binary).await??;
    let (cluster, client) = setup().await?;
    let dir = workdir("drain")?;
    let state = dir.join("cloud.json");
    let log = dir.join("kestrel.log");
    let cloud = FileCloud::new(&state);
    let kubelet = kubelet::spawn_file(client.clone(), cloud.clone(), common::instance_types()?);
    let first = kestrel_run(&cluster, &state, &log)?;
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-1", "500m"))
        .await?;
    let node = common::eventually(Duration::from_secs(60), "web-1 bound", || async {
        first.check_alive()?;
        bound_node(&client, "web-1").await
    })
    .await
    .with_context(|| format!("log: {}", log.display()))?;
    common::apply_yaml(&client, crate::drain::PDB).await?;
    crate::provisioning::wait_running(&client, "web-1").await?;
    let claims = Api::<NodeClaim>::all(client.clone());
    let name = claims.list(&ListParams::default()).await?.items[0]
        .metadata
        .name
        .clone()
        .context("named")?;
    claims.delete(&name, &DeleteParams::default()).await?;
    let nodes = Api::<Node>::all(client.clone());
    common::eventually(Duration::from_secs(30), "the node cordoned", || async {
        let n = nodes.get(&node).await?;
        Ok((n.spec.unwrap_or_default().unschedulable == Some(true)).then_some(()))
    })
    .await?;
    // SIGKILL mid-drain (the PDB holds the pod); the budget is lifted while no one runs.
    first.kill()?;
    let pdb = ApiResource {
        group: "policy".into(),
        version: "v1beta1".into(),
        api_version: "policy/v1beta1".into(),
        kind: "PodDisruptionBudget".into(),
        plural: "poddisruptionbudgets".into(),
    };
    Api::<DynamicObject>::namespaced_with(client.clone(), "default", &pdb)
        .delete("web", &DeleteParams::default())
        .await?;
    assert!(pods.get_opt("web-1").await?.is_some());
    assert_eq!(live(&cloud)?.len(), 1);

    let second = kestrel_run(&cluster, &state, &log)?;
    common::eventually(Duration::from_secs(90), "the NodeClaim gone", || async {
        second.check_alive()?;
        Ok(claims.get_opt(&name).await?.is_none().then_some(()))
    })
    .await
    .with_context(|| format!("log: {}", log.display()))?;
    assert!(pods.get_opt("web-1").await?.is_none(), "web-1 not evicted");
    assert!(live(&cloud)?.is_empty(), "leaked: {:?}", live(&cloud)?);
    assert_eq!(
        cloud.read()?.instances.len(),
        1,
        "a second instance launched"
    );
    common::eventually(Duration::from_secs(30), "the Node gone", || async {
        Ok(nodes.get_opt(&node).await?.is_none().then_some(()))
    })
    .await?;
    second.kill()?;
    kubelet.abort();
    Ok(())
}
