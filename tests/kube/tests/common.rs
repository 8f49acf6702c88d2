//! Shared steps: install the CRDs, apply manifests, run the controller on its own thread.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kestrel_core::controller::ControllerConfig;
use kestrel_kube::assemble::{self, Assembly};
use kestrel_kube::{Settings, run};
use kestrel_kube_tests::cluster::TestCluster;
pub use kestrel_kube_tests::setup::{apply_yaml, eventually, install_crds};
use kestrel_kube_tests::sim_cloud::SimCloudApi;
use kestrel_sim::cloud::sim::{LatencyRange, SimCloud, SimCloudConfig};
use kube::{Api, Client};

pub const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
/// A small region keeps planning quick; the flow is the same with the whole catalog.
pub const FAMILIES: [&str; 3] = ["m5", "c5", "r5"];

pub fn repo_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "kestrel_kube=info,warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// The simulated cloud of the tests' small region, booting instances in 0.3–0.6 s.
pub fn sim_cloud() -> Result<SimCloudApi> {
    sim_cloud_of(&FAMILIES)
}

/// The simulated cloud of a region offering these instance families.
pub fn sim_cloud_of(families: &[&str]) -> Result<SimCloudApi> {
    let zones: Vec<String> = ZONES.iter().map(|z| z.to_string()).collect();
    let families: Vec<String> = families.iter().map(|f| f.to_string()).collect();
    let (_, _, prices) = assemble::catalog(&families, &zones)?;
    let config = SimCloudConfig {
        zones,
        launch_latency: LatencyRange {
            min_ms: 300,
            max_ms: 600,
        },
        ..SimCloudConfig::default()
    };
    Ok(SimCloudApi::new(SimCloud::new(config, prices)))
}

pub fn instance_types() -> Result<Vec<kestrel_core::controller::InstanceTypeInfo>> {
    instance_types_of(&FAMILIES)
}

pub fn instance_types_of(
    families: &[&str],
) -> Result<Vec<kestrel_core::controller::InstanceTypeInfo>> {
    let zones: Vec<String> = ZONES.iter().map(|z| z.to_string()).collect();
    let families: Vec<String> = families.iter().map(|f| f.to_string()).collect();
    Ok(assemble::catalog(&families, &zones)?.1)
}

pub fn settings() -> Settings {
    Settings {
        cluster_name: "kestrel-test".into(),
        interruption_queue: None,
        notice_queue: None,
        assembly: Assembly {
            config: ControllerConfig::default(),
            zones: ZONES.iter().map(|z| z.to_string()).collect(),
            instance_types: FAMILIES.iter().map(|f| f.to_string()).collect(),
            seed: 7,
            described: None,
        },
        instance_types: None,
        shutdown_grace: Duration::from_secs(5),
        min_tick_interval: Duration::from_millis(20),
        policy_namespace: "default".into(),
        default_policies: kestrel_policy::DefaultBackend::Native,
        // A debug build on a loaded 2-core machine misses the production deadlines (50 ms per
        // rank): a timed-out call would fall back to the default and hide which policy serves.
        policy_limits: kestrel_policy::Limits {
            rank_deadline: Duration::from_secs(5),
            consolidate_deadline: Duration::from_secs(5),
            budget_deadline: Duration::from_secs(5),
            ..kestrel_policy::Limits::default()
        },
        leader_election: None,
        leadership: Default::default(),
        metrics: Default::default(),
        health: std::sync::Arc::new(kestrel_kube::serve::Health::new(Duration::from_secs(60))),
    }
}

/// `kestrel run` in-process: the controller loop on its own thread and runtime (its future is not
/// `Send`), stopped (gracefully, or abruptly: a crash) from the test.
pub struct RunningController {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<kestrel_kube::run::RunStats>>>,
}

impl RunningController {
    pub fn start(
        cluster: &TestCluster,
        cloud: &SimCloudApi,
        settings: Settings,
    ) -> RunningController {
        Self::start_as(cluster.kubeconfig_path(), cloud, settings)
    }

    /// As [`RunningController::start`], authenticated by another kubeconfig (e.g. a ServiceAccount's).
    pub fn start_as(
        kubeconfig: std::path::PathBuf,
        cloud: &SimCloudApi,
        settings: Settings,
    ) -> RunningController {
        let cloud: Arc<dyn kestrel_core::cloud::CloudApi> = Arc::new(cloud.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || -> Result<_> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let client = kestrel_kube_tests::cluster::client_from(&kubeconfig).await?;
                let shutdown = async move {
                    // A dropped sender (the test ended) is a shutdown too.
                    let _ = rx.await;
                };
                Ok(run(client, cloud, settings, shutdown).await?)
            })
        });
        RunningController {
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Graceful shutdown (SIGTERM): in-flight commands finish or are abandoned safely.
    pub fn stop(mut self) -> Result<kestrel_kube::run::RunStats> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => bail!("the controller thread panicked"),
            None => bail!("already stopped"),
        }
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The Events about one object (any namespace's `default` Events: cluster-scoped objects' go there).
pub async fn events_about(
    client: &Client,
    kind: &str,
    name: &str,
) -> Result<Vec<k8s_openapi::api::core::v1::Event>> {
    Ok(
        Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), "default")
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter(|e| {
                e.involved_object.kind.as_deref() == Some(kind)
                    && e.involved_object.name.as_deref() == Some(name)
            })
            .collect(),
    )
}

/// What `kubectl get` prints for a list: the server's Table (column names, each row's cells).
pub async fn table(
    client: &Client,
    path: &str,
) -> Result<(Vec<String>, Vec<Vec<serde_json::Value>>)> {
    let request = http::Request::get(path)
        .header("Accept", "application/json;as=Table;g=meta.k8s.io;v=v1")
        .body(Vec::new())?;
    let table: serde_json::Value = client.request(request).await?;
    let columns = table["columnDefinitions"]
        .as_array()
        .context("a Table")?
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect();
    let rows = table["rows"]
        .as_array()
        .context("a Table")?
        .iter()
        .map(|r| r["cells"].as_array().cloned().unwrap_or_default())
        .collect();
    Ok((columns, rows))
}
