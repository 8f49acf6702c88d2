//! `kestrel run`: the in-cluster controller (`kestrel-kube`) against the API server named by
//! `--kubeconfig`, `KUBECONFIG` or the in-cluster service account, with settings from flags or the
//! environment as Karpenter's (`CLUSTER_NAME`, `INTERRUPTION_QUEUE`, `BATCH_IDLE_DURATION`,
//! `BATCH_MAX_DURATION`, `LOG_LEVEL`, `LOG_FORMAT`, `SYSTEM_NAMESPACE`), until SIGTERM or ctrl-c.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use kestrel_core::clock::{Clock, SystemClock};
use kestrel_core::cloud::{
    CloudApi, CloudCall, CloudProvider, LaunchRequest, Launched, Listing, SpotPrice,
};
use kestrel_kube::assemble::Assembly;
use kestrel_kube::kube;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kubeconfig to use outside a cluster (default: `KUBECONFIG`, then the in-cluster config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The cluster's name (tags instances) [env: CLUSTER_NAME].
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// SQS queue of interruption notices [env: INTERRUPTION_QUEUE].
    #[arg(long)]
    pub interruption_queue: Option<String>,
    /// Close a batch of pending pods after this long without a new one [env: BATCH_IDLE_DURATION].
    #[arg(long)]
    pub batch_idle_duration: Option<String>,
    /// Close a batch this long after it opened at the latest [env: BATCH_MAX_DURATION].
    #[arg(long)]
    pub batch_max_duration: Option<String>,
    /// Log filter (`info`, `kestrel_kube=debug`, …) [env: LOG_LEVEL].
    #[arg(long)]
    pub log_level: Option<String>,
    /// Zones nodes are launched into.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "us-east-1a,us-east-1b,us-east-1c"
    )]
    pub zones: Vec<String>,
    /// Instance types or families offered (default: the whole embedded catalog).
    #[arg(long, value_delimiter = ',')]
    pub instance_types: Vec<String>,
    /// The cloud behind the controller: `aws` (EC2 and the SQS interruption queue; a build with
    /// the `aws` feature, as the container image is) or `simulated` (the simulator's cloud, no real
    /// instances: for trying the controller against a cluster).
    #[arg(long, default_value = "simulated")]
    pub cloud: String,
    /// `--cloud aws` settings.
    #[cfg(feature = "aws")]
    #[command(flatten)]
    pub aws: Box<super::run_aws::AwsArgs>,
    /// How long in-flight commands may finish after SIGTERM.
    #[arg(long, default_value = "10s")]
    pub shutdown_grace: String,
    /// Lifecycle, cloud state and policy settings (boxed: they keep the command enum small).
    #[command(flatten)]
    pub more: Box<More>,
}

/// The settings `kestrel run` gained with the NodeClaim lifecycle, hot swap and the process tests.
#[derive(Debug, clap::Args)]
pub struct More {
    /// `text` or `json` (one Karpenter-shaped JSON object per line) [env: LOG_FORMAT].
    #[arg(long)]
    pub log_format: Option<String>,
    /// With `--cloud simulated`: keep the simulated cloud's instances in this JSON file, so they
    /// outlive the process (a restarted controller meets its predecessor's instances; another
    /// process can boot them into Nodes). Without it the simulated cloud lives in memory.
    #[arg(long)]
    pub cloud_state: Option<PathBuf>,
    /// Give up a claim the cloud has not launched this long after it was made (Karpenter: 5m).
    #[arg(long, default_value = "5m")]
    pub launch_timeout: String,
    /// Give up a launched claim whose node has not registered this long after (Karpenter: 15m).
    #[arg(long, default_value = "15m")]
    pub registration_timeout: String,
    /// How often garbage collection (and the timeouts above) is checked.
    #[arg(long, default_value = "1m")]
    pub gc_interval: String,
    /// Namespace of the policy ConfigMaps NodePools name (`kestrel.dev/ranker: configmap:NAME`)
    /// [env: SYSTEM_NAMESPACE, the controller's own namespace; default `kestrel`].
    #[arg(long)]
    pub policy_namespace: Option<String>,
    /// Policies of NodePools without annotations: `wasm` (the embedded defaults in the sandbox) or
    /// `native` (the same logic compiled in).
    #[arg(long, default_value = "wasm")]
    pub default_policies: String,
    /// Port of `/metrics` (Prometheus text; 0: none) [env: METRICS_PORT; default 8080].
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// Port of `/healthz` and `/readyz` (0: none) [env: HEALTH_PROBE_PORT; default 8081].
    #[arg(long)]
    pub health_probe_port: Option<u16>,
    /// Act without leader election (a single replica) [env: DISABLE_LEADER_ELECTION=true].
    #[arg(long)]
    pub disable_leader_election: bool,
    /// The leader election Lease, in the controller's namespace (`SYSTEM_NAMESPACE`).
    #[arg(long, default_value = "kestrel-leader-election")]
    pub leader_election_lease: String,
    /// This replica's identity in the Lease [env: POD_NAME; default: host name and process id].
    #[arg(long)]
    pub identity: Option<String>,
}

/// A port from its flag, else its environment variable, else the default; 0 turns it off.
fn port(flag: Option<u16>, env: &str, default: u16) -> anyhow::Result<Option<u16>> {
    let port = match flag {
        Some(p) => p,
        None => match std::env::var(env).ok().filter(|v| !v.is_empty()) {
            Some(v) => v
                .parse()
                .with_context(|| format!("{env}: {v:?} is not a port"))?,
            None => default,
        },
    };
    Ok((port != 0).then_some(port))
}

/// Binds `/metrics`, `/healthz` and `/readyz` on `port` (all interfaces: the kubelet and Prometheus
/// reach the pod's IP) and serves them until the process ends.
async fn serve_on(
    port: u16,
    what: &str,
    metrics: Arc<kestrel_kube::metrics::Metrics>,
    health: Arc<kestrel_kube::serve::Health>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("binding the {what} port {port}"))?;
    tracing::info!(port, what, "serving");
    tokio::spawn(async move {
        if let Err(err) =
            kestrel_kube::serve::serve(listener, metrics, health, std::future::pending()).await
        {
            tracing::error!(error = %err, "the metrics/health server stopped");
        }
    });
    Ok(())
}

/// A flag, else the environment variable.
pub(crate) fn setting(flag: &Option<String>, env: &str) -> Option<String> {
    flag.clone()
        .or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
}

fn millis(value: &str, what: &str) -> anyhow::Result<i64> {
    let d =
        kestrel_core::api::parse_duration(value).with_context(|| format!("{what}: {value:?}"))?;
    Ok(d.as_millis() as i64)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let filter = setting(&args.log_level, "LOG_LEVEL").unwrap_or_else(|| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).context("LOG_LEVEL")?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only on a terminal: a container's log (a file, a pipe) gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match setting(&args.more.log_format, "LOG_FORMAT").as_deref() {
        None | Some("text") => logs.init(),
        Some("json") => logs
            .event_format(kestrel_kube::log_format::JsonLines)
            .init(),
        Some(other) => bail!("LOG_FORMAT {other:?}: expected `text` or `json`"),
    }
    let mut config = kestrel_core::controller::ControllerConfig::default();
    if let Some(v) = setting(&args.batch_idle_duration, "BATCH_IDLE_DURATION") {
        config.batch_idle_ms = millis(&v, "BATCH_IDLE_DURATION")?;
    }
    if let Some(v) = setting(&args.batch_max_duration, "BATCH_MAX_DURATION") {
        config.batch_max_ms = millis(&v, "BATCH_MAX_DURATION")?;
    }
    config.launch_ttl_ms = millis(&args.more.launch_timeout, "--launch-timeout")?;
    config.registration_ttl_ms = millis(&args.more.registration_timeout, "--registration-timeout")?;
    config.gc_interval_ms = millis(&args.more.gc_interval, "--gc-interval")?;
    let assembly = Assembly {
        config,
        zones: args.zones.clone(),
        instance_types: args.instance_types.clone(),
        seed: 1,
        described: None,
    };
    // The simulated clouds are built now; AWS's once the kube client exists (it reads the cluster).
    let simulated: Option<Arc<dyn CloudApi>> = match args.cloud.as_str() {
        "simulated" if args.more.cloud_state.is_some() => {
            let path = args.more.cloud_state.clone().context("--cloud-state")?;
            Some(Arc::new(kestrel_kube::file_cloud::FileCloud::new(path)))
        }
        "simulated" => {
            let (_, _, prices) =
                kestrel_kube::assemble::catalog(&assembly.instance_types, &assembly.zones)?;
            let config = kestrel_sim::cloud::sim::SimCloudConfig {
                zones: assembly.zones.clone(),
                ..Default::default()
            };
            Some(Arc::new(SimulatedCloud(Mutex::new(
                kestrel_sim::cloud::sim::SimCloud::new(config, prices),
            ))))
        }
        #[cfg(feature = "aws")]
        "aws" => None,
        #[cfg(not(feature = "aws"))]
        "aws" => bail!(
            "--cloud aws: this build has no AWS adapter (build with `cargo build -p kestrel --features aws`, as the container image is)"
        ),
        other => bail!("--cloud {other}: expected `aws` or `simulated`"),
    };
    let interruption_queue = setting(&args.interruption_queue, "INTERRUPTION_QUEUE");
    if interruption_queue.is_some() && simulated.is_some() {
        bail!(
            "INTERRUPTION_QUEUE / --interruption-queue is read by the AWS adapter: it needs --cloud aws"
        );
    }
    let namespace = setting(&args.more.policy_namespace, "SYSTEM_NAMESPACE")
        .unwrap_or_else(|| "kestrel".into());
    let disable_election = args.more.disable_leader_election
        || std::env::var("DISABLE_LEADER_ELECTION").is_ok_and(|v| v == "true");
    let identity = setting(&args.more.identity, "POD_NAME").unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "kestrel".into());
        format!("{host}-{}", std::process::id())
    });
    let metrics_port = port(args.more.metrics_port, "METRICS_PORT", 8080)?;
    let health_port = port(args.more.health_probe_port, "HEALTH_PROBE_PORT", 8081)?;
    let metrics = Arc::new(kestrel_kube::metrics::Metrics::new());
    // The loop turns at least every minute; three silent minutes mean it is stuck.
    let health = Arc::new(kestrel_kube::serve::Health::new(Duration::from_secs(180)));
    // The writers outside the loop (the AWS adapter's NodeClass binder) write only while this
    // holds: at once for a single replica, while the lease is held otherwise.
    let leadership = if disable_election {
        kestrel_kube::lease::Fence::always()
    } else {
        kestrel_kube::lease::Fence::default()
    };
    // Mutated by `--cloud aws` (its notice queue), which a build without the feature lacks.
    #[cfg_attr(not(feature = "aws"), allow(unused_mut))]
    let mut settings = kestrel_kube::Settings {
        cluster_name: setting(&args.cluster_name, "CLUSTER_NAME")
            .unwrap_or_else(|| "kestrel".into()),
        interruption_queue: interruption_queue.clone(),
        notice_queue: None,
        instance_types: None,
        assembly,
        shutdown_grace: Duration::from_millis(
            millis(&args.shutdown_grace, "--shutdown-grace")?.max(0) as u64,
        ),
        min_tick_interval: Duration::from_millis(20),
        policy_namespace: namespace.clone(),
        leader_election: (!disable_election).then(|| {
            kestrel_kube::lease::LeaseConfig::new(
                namespace.clone(),
                args.more.leader_election_lease.clone(),
                identity.clone(),
            )
        }),
        leadership,
        metrics: metrics.clone(),
        health: health.clone(),
        policy_limits: kestrel_policy::Limits::default(),
        default_policies: match args.more.default_policies.as_str() {
            "wasm" => kestrel_policy::DefaultBackend::Wasm,
            "native" => kestrel_policy::DefaultBackend::Native,
            other => bail!("--default-policies {other}: expected `wasm` or `native`"),
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The loop's future is not Send: it runs on this thread (block_on); its commands use the pool.
    let stats = runtime.block_on(async move {
        if let Some(port) = metrics_port {
            serve_on(port, "metrics", metrics.clone(), health.clone()).await?;
        }
        if let Some(port) = health_port.filter(|p| Some(*p) != metrics_port) {
            serve_on(port, "health probe", metrics.clone(), health.clone()).await?;
        }
        let config = kube_config(args.kubeconfig.as_deref()).await?;
        let client = kube::Client::try_from(config.clone()).context("building the kube client")?;
        let cloud = match simulated {
            Some(cloud) => cloud,
            #[cfg(feature = "aws")]
            None => {
                let edge = super::run_aws::connect(
                    client.clone(),
                    &config,
                    &args.aws,
                    &settings.cluster_name,
                    interruption_queue.as_deref(),
                    settings.leadership.clone(),
                )
                .await?;
                settings.notice_queue = edge.notice_queue;
                settings.instance_types = Some(edge.instance_types);
                edge.cloud
            }
            #[cfg(not(feature = "aws"))]
            None => unreachable!("--cloud aws is refused above in a build without it"),
        };
        anyhow::Ok(kestrel_kube::run(client, cloud, settings, shutdown_signal()).await?)
    })?;
    tracing::info!(ticks = stats.ticks, commands = stats.commands, "stopped");
    Ok(())
}

/// The kube client's configuration: `--kubeconfig`, else `KUBECONFIG` or the in-cluster service
/// account (the TLS provider installed for the client built from it).
pub async fn kube_config(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Config> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig and not in a cluster")?,
    };
    kestrel_kube::install_tls_provider();
    Ok(config)
}

/// SIGTERM (the kubelet stopping the pod) or ctrl-c.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!(%err, "SIGTERM handler not installed; ctrl-c only");
                if let Err(err) = ctrl_c.await {
                    tracing::error!(%err, "waiting for ctrl-c");
                }
            }
        }
    }
    #[cfg(not(unix))]
    if let Err(err) = ctrl_c.await {
        tracing::error!(%err, "waiting for ctrl-c");
    }
}

/// The simulator's cloud behind the production cloud edge (a mutex and the wall clock).
struct SimulatedCloud(Mutex<kestrel_sim::cloud::sim::SimCloud>);

impl SimulatedCloud {
    fn call<T>(&self, f: impl FnOnce(&mut kestrel_sim::cloud::sim::SimCloud, i64) -> T) -> T {
        let mut cloud = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut cloud, SystemClock.now())
    }
}

impl CloudApi for SimulatedCloud {
    fn create<'a>(&'a self, request: &'a LaunchRequest) -> CloudCall<'a, Launched> {
        let out = self.call(|c, now| c.create(request, now));
        Box::pin(async move { out })
    }
    fn delete<'a>(&'a self, instance_id: &'a str) -> CloudCall<'a, ()> {
        let out = self.call(|c, now| c.delete(instance_id, now));
        Box::pin(async move { out })
    }
    fn list(&self) -> CloudCall<'_, Listing> {
        let out = self.call(|c, now| c.list(now));
        Box::pin(async move { out })
    }
    fn spot_prices<'a>(&'a self, instance_types: &'a [String]) -> CloudCall<'a, Vec<SpotPrice>> {
        let out = self.call(|c, now| c.spot_prices(instance_types, now));
        Box::pin(async move { out })
    }
}
