//! `kestrel simulate [SCENARIO]`: replay a scenario through the controller loop on a virtual cluster.
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::controller::DisruptionStep;
use crate::controller::disruption::Disruptor;
use crate::disruption::RegistryPolicies;
use crate::policy::registry::PolicySource;
use crate::policy::{PolicyKind, PolicyRegistry};
use crate::sim::chart;
use crate::sim::replay::{SimOptions, simulate};
use crate::sim::report::Report;
use crate::sim::scenario::{Limits, Scenario};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Scenario YAML (see docs/simulator.md); without one, the built-in burst-then-scale-down example runs.
    pub scenario: Option<PathBuf>,
    /// Print the report as JSON on stdout (the chart still goes to its file).
    #[arg(long)]
    pub json: bool,
    /// Where to write the timeline chart (self-contained HTML).
    #[arg(long, default_value = "kestrel-sim.html")]
    pub chart: PathBuf,
    /// Do not write the chart.
    #[arg(long)]
    pub no_chart: bool,
    /// Run without the disruption step (no consolidation, drift or expiry), e.g. to see what it saves.
    #[arg(long)]
    pub no_disruption: bool,
    /// Override the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// A candidate policy, `KIND=FILE.wasm` (kind: ranker, consolidator or budgeter; repeat for several
    /// kinds). Every NodePool uses it; kinds not given keep the built-in default.
    #[arg(long, value_name = "KIND=FILE")]
    pub policy: Vec<String>,
    /// Settings for a candidate policy, `KIND=FILE` (JSON or YAML: what the NodePool annotation
    /// `kestrel.dev/<kind>-settings` would hold); the policy validates them at load time.
    #[arg(long, value_name = "KIND=FILE")]
    pub policy_settings: Vec<String>,
    /// Run the default and the candidate policy on the same scenario and seed, side by side.
    #[arg(long)]
    pub compare: bool,
    /// Raise (or lower) the limit on pods the workloads may ask for at once (docs/simulator.md).
    #[arg(long, value_name = "N")]
    pub max_pods: Option<u64>,
    /// Raise (or lower) the limit on the scenario file's size in bytes.
    #[arg(long, value_name = "BYTES")]
    pub max_bytes: Option<u64>,
}

/// The largest policy component `--policy` reads (a default policy is well under 1 MiB).
pub const MAX_POLICY_BYTES: u64 = 64 * 1024 * 1024;

/// Reads a policy component, at most [`MAX_POLICY_BYTES`] (so `/dev/zero` is an error, not a hang).
pub fn read_policy(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    crate::api::manifest::read_bounded(path, MAX_POLICY_BYTES).map_err(|e| match e {
        crate::api::manifest::ReadError::TooLarge { limit } => anyhow::anyhow!(
            "{}: larger than the limit of {limit} bytes for a policy component",
            path.display()
        ),
        other => anyhow::Error::new(other).context(format!("reading {}", path.display())),
    })
}

/// The chart must not overwrite an input: the scenario or a policy file.
fn check_chart_path(args: &Args) -> anyhow::Result<()> {
    let Ok(chart) = std::fs::canonicalize(&args.chart) else {
        return Ok(()); // not there yet: nothing to overwrite
    };
    let inputs = args.scenario.iter().cloned().chain(
        args.policy
            .iter()
            .filter_map(|p| p.split_once('=').map(|(_, f)| PathBuf::from(f))),
    );
    for input in inputs {
        if std::fs::canonicalize(&input).is_ok_and(|i| i == chart) {
            bail!(
                "--chart {} is an input of this run ({}); choose another path for the chart",
                args.chart.display(),
                input.display()
            );
        }
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut limits = Limits::default();
    if let Some(n) = args.max_pods {
        limits.max_pods = n;
    }
    if let Some(n) = args.max_bytes {
        limits.max_bytes = n;
    }
    let scenario = match &args.scenario {
        Some(path) => Scenario::load_with(path, &limits)?,
        None => crate::sim::scenario::load_default(),
    };
    // The chart file is checked (not an input, writable) before the replay, not after it.
    let chart_file = if args.no_chart {
        None
    } else {
        check_chart_path(&args)?;
        Some(
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&args.chart)
                .with_context(|| format!("opening the chart file {}", args.chart.display()))?,
        )
    };
    if args.compare && args.policy.is_empty() {
        bail!(
            "--compare needs a candidate: --policy KIND=FILE.wasm (ranker, consolidator or budgeter)"
        );
    }
    let no_disruption = || -> Option<Box<dyn crate::controller::DisruptionStep>> {
        args.no_disruption.then(|| {
            Box::new(crate::controller::NoDisruption) as Box<dyn crate::controller::DisruptionStep>
        })
    };
    let candidate = candidate_options(
        &scenario,
        &args.policy,
        &args.policy_settings,
        args.no_disruption,
    )?
    .map(|mut o| {
        o.seed = args.seed;
        if args.no_disruption {
            o.disruption = no_disruption();
        }
        o
    });
    let base = replay(
        &scenario,
        SimOptions {
            seed: args.seed,
            disruption: no_disruption(),
            ..SimOptions::default()
        },
    );
    let (report, compared) = match candidate {
        Some(options) if args.compare => {
            let cand = replay(&scenario, options);
            (cand.clone(), Some((base, cand)))
        }
        Some(options) => (replay(&scenario, options), None),
        None => (base, None),
    };
    if args.json {
        match &compared {
            Some((a, b)) => println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"default": a, "candidate": b}))?
            ),
            None => println!("{}", report.to_json()),
        }
    } else {
        match &compared {
            Some((a, b)) => print!("{}", Report::compare(a, b)),
            None => print!("{}", report.table()),
        }
    }
    // After the report, so a chart that cannot be written does not lose it.
    if let Some(mut file) = chart_file {
        use std::io::Write;
        // A comparison overlays both runs; a single run gets its own chart.
        let page = match &compared {
            Some((a, b)) => chart::compare_html(a, b),
            None => chart::html(&report),
        };
        file.set_len(0)
            .and_then(|()| file.write_all(page.as_bytes()))
            .with_context(|| format!("writing the chart to {}", args.chart.display()))?;
        eprintln!("chart written to {}", args.chart.display());
    }
    Ok(())
}

/// The candidate policies (`--policy KIND=FILE.wasm`, at most one per kind), each installed for every
/// NodePool of the scenario; kinds not given keep the built-in default.
pub fn candidate_options(
    scenario: &Scenario,
    policies: &[String],
    settings: &[String],
    no_disruption: bool,
) -> anyhow::Result<Option<SimOptions>> {
    if policies.is_empty() {
        return Ok(None);
    }
    let registry = PolicyRegistry::native();
    let mut settings_of: BTreeMap<PolicyKind, (String, String)> = BTreeMap::new();
    for spec in settings {
        let Some((kind, file)) = spec.split_once('=') else {
            bail!("--policy-settings {spec:?}: expected KIND=FILE, e.g. ranker=settings.yaml");
        };
        let kind: PolicyKind = kind
            .parse()
            .map_err(|e| anyhow::anyhow!("--policy-settings {spec:?}: {e}"))?;
        if !policies
            .iter()
            .any(|p| p.split_once('=').is_some_and(|(k, _)| k == kind.as_str()))
        {
            bail!(
                "--policy-settings {spec:?}: no --policy {kind}=FILE.wasm candidate to give them to"
            );
        }
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("--policy-settings {spec:?}: reading {file}"))?;
        let json = crate::policy::settings::to_json(&text)
            .map_err(|e| anyhow::anyhow!("--policy-settings {spec:?}: {e}"))?;
        if settings_of.insert(kind, (file.to_string(), json)).is_some() {
            bail!("--policy-settings {spec:?}: a second {kind} settings file (one per kind)");
        }
    }
    let mut files: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut labels: BTreeMap<&'static str, String> = BTreeMap::new();
    for spec in policies {
        let Some((kind, file)) = spec.split_once('=') else {
            bail!("--policy {spec:?}: expected KIND=FILE.wasm, e.g. ranker=my-ranker.wasm");
        };
        let kind: PolicyKind = kind
            .parse()
            .map_err(|e| anyhow::anyhow!("--policy {spec:?}: {e}"))?;
        if files.insert(kind.as_str(), file.to_string()).is_some() {
            bail!("--policy {spec:?}: a second {kind} candidate (one per kind)");
        }
        let bytes =
            read_policy(std::path::Path::new(file)).with_context(|| format!("{kind} policy"))?;
        let (settings_file, settings) = settings_of
            .get(&kind)
            .map_or((None, crate::policy::NO_SETTINGS), |(f, s)| {
                (Some(f.as_str()), s.as_str())
            });
        // Every NodePool gets its own instance of the candidate (compiled once, cached by hash).
        let mut installed = String::new();
        for pool in &scenario.node_pools {
            let name = pool.metadata.name.clone().unwrap_or_default();
            installed = registry
                .install_with_settings(
                    &name,
                    kind,
                    PolicySource::Wasm {
                        bytes: bytes.clone(),
                        sha256: None,
                    },
                    settings,
                )
                .with_context(|| format!("loading {kind} policy {file}"))?;
        }
        // The report names the candidate: its file, what it says it is (with the contract it was built
        // against) and its settings.
        let settings_note = settings_file.map_or_else(String::new, |f| format!(", settings {f}"));
        labels.insert(
            kind.as_str(),
            format!("{kind} {file}: {installed}{settings_note}"),
        );
    }
    let disruption_candidate = files.contains_key("consolidator") || files.contains_key("budgeter");
    if no_disruption && disruption_candidate {
        bail!("--no-disruption leaves nothing for a consolidator or budgeter candidate to decide");
    }
    let registry = Arc::new(registry);
    let label = |kind: &str| match labels.get(kind) {
        Some(label) => label.clone(),
        None => format!("built-in {kind}"),
    };
    // The provisioner's name already says "ranker": its label is the file alone.
    let provisioner = files.get("ranker").map(|file| {
        crate::sim::replay::core_planner(scenario, registry.clone(), format!("{file} (wasm)"))
    });
    let disruption = disruption_candidate.then(|| {
        Box::new(
            Disruptor::from_manifests(
                &scenario.node_pools,
                &scenario.node_classes,
                scenario.start_ms(),
            )
            .with_policies(Box::new(RegistryPolicies::new(registry.clone())))
            .labelled(format!("{}, {}", label("consolidator"), label("budgeter"))),
        ) as Box<dyn DisruptionStep>
    });
    Ok(Some(SimOptions {
        provisioner,
        disruption,
        ..SimOptions::default()
    }))
}

/// One replay, with a progress bar on a terminal when it takes more than a moment.
fn replay(scenario: &Scenario, options: SimOptions) -> Report {
    let started = Instant::now();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(1000),
            indicatif::ProgressDrawTarget::stderr(),
        );
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} simulating {msg} [{bar:40}] {percent}%",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(scenario.name.clone());
        bar
    });
    let mut shown = false;
    let outcome = simulate(scenario, options, &mut |done| {
        if let Some(bar) = &bar {
            if !shown && started.elapsed() > Duration::from_millis(300) {
                shown = true;
            }
            if shown {
                bar.set_position((done * 1000.0) as u64);
            }
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Report::from_outcome(&outcome)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: super::Args,
    }

    #[test]
    fn the_chart_never_overwrites_the_scenario() {
        let dir = std::env::temp_dir().join(format!("kestrel-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let scenario = dir.join("s.yaml");
        std::fs::write(&scenario, crate::sim::scenario::DEFAULT_SCENARIO).unwrap();
        let path = scenario.to_str().unwrap();
        let cli = Cli::parse_from(["simulate", path, "--chart", path, "--json"]);
        let result = super::run(cli.args);
        let after = std::fs::read_to_string(&scenario).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert!(result.is_err(), "the chart was written over the scenario");
        assert_eq!(after, crate::sim::scenario::DEFAULT_SCENARIO);
    }
}
