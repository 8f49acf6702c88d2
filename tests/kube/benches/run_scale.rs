//! Benchmark harness: the memory and decision latency of `kestrel run` **as a process** (the binary
//! the container runs: `KESTREL_BIN`, else a debug build with the AWS adapter) against the real
//! apiserver, first on an empty cluster, then on a busy one (by default 500 Nodes and 2,000 pods that
//! another node group runs, so every watch lists them and every tick snapshots them).
//!
//! Per cluster: start the process (production defaults: the embedded wasm policies, leader election,
//! the whole embedded EC2 catalog in three zones on the simulated cloud), wait for `/readyz`, one
//! warm-up pod, then `--samples` pending pods one after another, each asking for 33 CPUs (so none fits
//! the capacity coming for the one before and each needs its own NodeClaim): the time from its
//! creation to its NodeClaim's creation (seen on a watch opened before the pod), its excess over the
//! batch idle window (1 s, Karpenter's), the process's resident memory (`VmRSS`, `VmHWM`) and the
//! mean decision pass from its own `/metrics`. One JSON line per cluster.
//!
//! `cargo bench -p kestrel-kube-tests --bench run_scale [-- --nodes 500 --pods 2000 --samples 20
//!  --max-peak-mib M --max-over-window-ms MS --kestrel-args "ARGS"]` — the bounds make it fail past
//! them; `--kestrel-args` adds flags to `kestrel run` (e.g. `--default-policies native`, to see what
//! the wasm engine costs).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kestrel_kube_tests::binary::{self, Process};
use kestrel_kube_tests::cluster::{TestCluster, free_port};
use kestrel_kube_tests::setup::{apply_yaml, eventually, install_crds};
use kestrel_kube_tests::workload::{self, POOL, pod};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

const BATCH_IDLE: Duration = Duration::from_secs(1);
/// Bigger than half of any type's allocatable that a 33-CPU pod fits on: one pod per NodeClaim.
const SAMPLE_CPU: &str = "33";

struct Options {
    nodes: usize,
    pods: usize,
    samples: usize,
    max_peak_mib: Option<u64>,
    max_over_window_ms: Option<u64>,
    kestrel_args: Vec<String>,
}

fn options() -> Result<Options> {
    let mut o = Options {
        nodes: 500,
        pods: 2_000,
        samples: 20,
        max_peak_mib: None,
        max_over_window_ms: None,
        kestrel_args: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        // `cargo bench` passes `--bench` to every harness.
        if flag == "--bench" {
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let number = || -> Result<u64> {
            value
                .parse()
                .with_context(|| format!("{flag} {value}: not a number"))
        };
        match flag.as_str() {
            "--nodes" => o.nodes = number()? as usize,
            "--pods" => o.pods = number()? as usize,
            "--samples" => o.samples = (number()? as usize).max(1),
            "--max-peak-mib" => o.max_peak_mib = Some(number()?),
            "--max-over-window-ms" => o.max_over_window_ms = Some(number()?),
            "--kestrel-args" => {
                o.kestrel_args = value.split_whitespace().map(str::to_string).collect()
            }
            _ => bail!(
                "unknown argument {flag} (expected --nodes, --pods, --samples, --max-peak-mib, --max-over-window-ms, --kestrel-args)"
            ),
        }
    }
    Ok(o)
}

fn main() -> Result<()> {
    let options = options()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let bin = binary::kestrel()?;
    eprintln!("kestrel binary: {}", bin.display());
    let empty = runtime.block_on(measure(&bin, &options, 0, 0))?;
    println!("{empty}");
    let busy = runtime.block_on(measure(&bin, &options, options.nodes, options.pods))?;
    println!("{busy}");

    let mut failures = Vec::new();
    if let Some(max) = options.max_peak_mib {
        let peak = busy["peakRssMiB"].as_f64().unwrap_or(f64::INFINITY);
        if peak > max as f64 {
            failures.push(format!("peak RSS {peak:.1} MiB > {max} MiB"));
        }
    }
    if let Some(max) = options.max_over_window_ms {
        let over = busy["overBatchWindowMs"]["p50"]
            .as_f64()
            .unwrap_or(f64::INFINITY);
        if over > max as f64 {
            failures.push(format!(
                "pending pod -> NodeClaim exceeds the batch window by {over:.0} ms (p50) > {max} ms"
            ));
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

/// One cluster of `nodes` and `pods` (0 and 0: empty), one process: its JSON line.
async fn measure(
    bin: &Path,
    options: &Options,
    nodes: usize,
    pods: usize,
) -> Result<serde_json::Value> {
    let cluster = TestCluster::start()?;
    let client = cluster.client().await?;
    install_crds(&client).await?;
    apply_yaml(&client, POOL).await?;
    let filled = Instant::now();
    workload::fill(&client, nodes, pods).await?;
    let fill_ms = filled.elapsed().as_millis();

    let dir = std::env::temp_dir().join(format!(
        "kestrel-run-scale-{}-{nodes}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    ));
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("kestrel.log");
    let metrics_port = free_port()?;
    let health_port = free_port()?;
    let started = Instant::now();
    let kestrel = spawn(
        bin,
        &cluster,
        &log,
        (metrics_port, health_port),
        &options.kestrel_args,
    )?;
    let context = || format!("kestrel's log: {}", log.display());
    eventually(Duration::from_secs(120), "/readyz", || async {
        kestrel.check_alive()?;
        Ok(matches!(binary::http_get(health_port, "/readyz"), Ok((200, _))).then_some(()))
    })
    .await
    .with_context(context)?;
    let ready_ms = started.elapsed().as_millis();

    let api = Api::<Pod>::namespaced(client.clone(), "default");
    // The warm-up: the lease taken, the policies instantiated, the first batch planned.
    claim_for(&client, &api, "warm-up", &kestrel, Duration::from_secs(120))
        .await
        .with_context(context)?;
    let ready = kestrel.memory()?;
    let mut latencies = Vec::with_capacity(options.samples);
    let mut rss = Vec::with_capacity(options.samples);
    for k in 0..options.samples {
        let took = claim_for(
            &client,
            &api,
            &format!("pending-{k:03}"),
            &kestrel,
            Duration::from_secs(60),
        )
        .await
        .with_context(context)?;
        latencies.push(took);
        rss.push(kestrel.memory()?.rss_kib);
    }
    let end = kestrel.memory()?;
    let (status, metrics) = binary::http_get(metrics_port, "/metrics")?;
    anyhow::ensure!(status == 200, "GET /metrics: {status}");
    let pass = |suffix: &str| -> f64 {
        let series = format!("karpenter_provisioner_scheduling_duration_seconds_{suffix} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    let passes = pass("count");
    let mean_pass_ms = pass("sum") / passes * 1e3;
    kestrel.kill()?;
    if let Err(err) = std::fs::remove_dir_all(&dir) {
        eprintln!("removing {}: {err}", dir.display());
    }

    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let over = |d: Duration| ms(d.saturating_sub(BATCH_IDLE));
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(json!({
        "nodes": nodes,
        "pods": pods,
        "binary": bin.display().to_string(),
        "kestrelArgs": options.kestrel_args,
        "clusterFillMs": fill_ms,
        "readyAfterMs": ready_ms,
        "rssMiBAfterWarmUp": mib(ready.rss_kib),
        "rssMiB": {"min": mib(*rss.iter().min().unwrap_or(&0)), "max": mib(*rss.iter().max().unwrap_or(&0)), "end": mib(end.rss_kib)},
        "peakRssMiB": mib(end.peak_kib),
        "samples": latencies.len(),
        "pendingToClaimMs": {"p50": ms(at(0.5)), "p90": ms(at(0.9)), "max": ms(at(1.0))},
        "batchIdleMs": ms(BATCH_IDLE),
        "overBatchWindowMs": {"p50": over(at(0.5)), "p90": over(at(0.9)), "max": over(at(1.0))},
        "decisionPasses": passes,
        "meanDecisionPassMs": mean_pass_ms,
    }))
}

/// `kestrel run` with production defaults on the simulated cloud (and `extra` flags), its log in
/// `log`, serving metrics and probes on `ports`.
fn spawn(
    bin: &Path,
    cluster: &TestCluster,
    log: &Path,
    (metrics_port, health_port): (u16, u16),
    extra: &[String],
) -> Result<Process> {
    let log = std::fs::File::create(log)?;
    let mut command = Command::new(bin);
    command
        .arg("run")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .args(["--cloud", "simulated", "--cluster-name", "kestrel-bench"])
        .args([
            "--policy-namespace",
            "default",
            "--identity",
            "kestrel-bench",
        ])
        .arg("--batch-idle-duration")
        .arg(format!("{}ms", BATCH_IDLE.as_millis()))
        .args(["--log-format", "json", "--log-level", "info"])
        .arg("--metrics-port")
        .arg(metrics_port.to_string())
        .arg("--health-probe-port")
        .arg(health_port.to_string())
        .args(extra)
        // As the chart's Deployment runs it (unless the caller's environment says otherwise).
        .env(
            "MALLOC_ARENA_MAX",
            std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "2".into()),
        )
        .stdout(Stdio::null())
        .stderr(log);
    Process::spawn(command)
}

/// Creates pod `name` (33 CPUs) and waits for the next NodeClaim: the time between.
async fn claim_for(
    client: &Client,
    pods: &Api<Pod>,
    name: &str,
    kestrel: &Process,
    timeout: Duration,
) -> Result<Duration> {
    workload::claim_after(client, timeout, async {
        pods.create(&PostParams::default(), &pod(name, SAMPLE_CPU))
            .await?;
        Ok(())
    })
    .await
    .with_context(|| format!("{name}: kestrel {:?}", kestrel.check_alive().err()))
}
