//! `kestrel policy bench FILE.wasm`: what one call of a team's policy costs under the production
//! sandbox (the engine, limits, deadlines and answer validation `kestrel run` uses), on generated inputs
//! of production size ([`super::generated_inputs`]), beside the built-in default of its kind on the same
//! inputs, calls interleaved so both see the same machine. It fails when a call falls back (a timeout,
//! trap, memory cap, invalid answer or `err`) or when the 99th percentile comes nearer the kind's
//! deadline than `--max-deadline-share`: such a policy would time out on a busy controller.
use super::generated_inputs;
use crate::policy::contract::{budget, consolidate, rank};
use crate::policy::registry::{prepare_wasm, prepare_wasm_with_settings};
use crate::policy::{
    Budgeter, CompiledPolicy, Consolidator, Limits, PolicyEngine, PolicyError, PolicyKind, Ranker,
    Verdict, WasmBudgeter, WasmConsolidator, WasmRanker, defaults, settings,
};
use anyhow::{Context, bail};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy component.
    pub wasm: PathBuf,
    /// Its kind (default: the kind whose world the component exports).
    #[arg(long, value_parser = super::policy::kind_parser())]
    pub kind: Option<PolicyKind>,
    /// Its settings, JSON or YAML, as in the NodePool annotation `kestrel.dev/<kind>-settings`.
    #[arg(long)]
    pub settings: Option<String>,
    /// Input sizes: offerings for a ranker (default 500,5000: a narrow and a catalog-wide NodePool),
    /// nodes for a consolidator (default 100,1000) or a budgeter (default 1000).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=MAX_SIZE))]
    pub sizes: Vec<u32>,
    /// Timed calls per size, for the policy and for the default each.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub iterations: u32,
    /// Fail when a size's 99th-percentile call takes more than this share of the kind's deadline.
    #[arg(long, default_value_t = 0.25)]
    pub max_deadline_share: f64,
    /// The NodePool name the inputs carry (a policy may decide per NodePool).
    #[arg(long, default_value = "bench")]
    pub node_pool: String,
}

/// The largest input size: more offerings than any region has, more nodes than a NodePool holds.
const MAX_SIZE: i64 = 100_000;

/// Call times of one side (microseconds).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Times {
    pub median: f64,
    pub p99: f64,
    pub max: f64,
}

impl Times {
    fn of(mut samples: Vec<Duration>) -> Times {
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            round(samples[i].as_secs_f64() * 1e6)
        };
        Times {
            median: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// One size's measurement: a JSON line of the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Case {
    pub case: &'static str,
    pub size: usize,
    /// What `size` counts.
    pub size_of: &'static str,
    /// The first call: instantiation, settings (and a ranker's catalog) included.
    pub first_call_micros: f64,
    pub policy_micros: Option<Times>,
    pub default_micros: Times,
    /// The policy's median over the default's.
    pub ratio: Option<f64>,
    pub deadline_millis: u128,
    /// The policy's 99th percentile over the deadline.
    pub deadline_share: Option<f64>,
    /// Why the policy's answer was not used, when it fell back (timing stops there).
    pub fallback: Option<String>,
    pub ok: bool,
}

/// The policy under test and the default of its kind, both in the production sandbox (boxed: the
/// kinds' sandboxes differ in size).
enum Pair {
    Ranker(Box<WasmRanker>, Box<WasmRanker>),
    Consolidator(Box<WasmConsolidator>, Box<WasmConsolidator>),
    Budgeter(Box<WasmBudgeter>, Box<WasmBudgeter>),
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let failed = bench(&args, &mut std::io::stdout())?;
    if !failed.is_empty() {
        bail!(
            "{} is not ready for production: {}",
            args.wasm.display(),
            failed.join("; ")
        );
    }
    Ok(())
}

/// Prints the policy's line and one line per size to `out`; returns what failed, one entry per
/// failing size (empty: every size passed).
pub fn bench(args: &Args, out: &mut dyn std::io::Write) -> anyhow::Result<Vec<String>> {
    anyhow::ensure!(
        args.max_deadline_share > 0.0 && args.max_deadline_share <= 1.0,
        "--max-deadline-share must be in (0, 1], not {}",
        args.max_deadline_share
    );
    let bytes = super::simulate::read_policy(&args.wasm)?;
    let settings = settings::to_json(args.settings.as_deref().unwrap_or_default())
        .map_err(anyhow::Error::msg)
        .context("--settings")?;
    let engine = PolicyEngine::shared();
    let limits = Limits::default();
    let policy = load(engine, args.kind, &bytes, &settings, &limits)
        .with_context(|| format!("loading {}", args.wasm.display()))?;
    let kind = policy.kind;
    let default = prepare_wasm(engine, kind, defaults::embedded_wasm(kind), None, &limits)
        .context("the built-in default")?;
    let line = serde_json::json!({
        "policy": policy.info.name, "version": policy.info.version, "kind": kind.as_str(),
        "contract": policy.contract, "sha256": policy.sha256, "settings": settings,
        "default": default.label(), "iterations": args.iterations,
    });
    writeln!(out, "{line}")?;
    let metrics = Arc::default;
    let mut pair = match kind {
        PolicyKind::Ranker => Pair::Ranker(
            Box::new(WasmRanker::new(policy, limits, metrics())),
            Box::new(WasmRanker::new(default, limits, metrics())),
        ),
        PolicyKind::Consolidator => Pair::Consolidator(
            Box::new(WasmConsolidator::new(policy, limits, metrics())),
            Box::new(WasmConsolidator::new(default, limits, metrics())),
        ),
        PolicyKind::Budgeter => Pair::Budgeter(
            Box::new(WasmBudgeter::new(policy, limits, metrics())),
            Box::new(WasmBudgeter::new(default, limits, metrics())),
        ),
    };
    let sizes: Vec<usize> = if args.sizes.is_empty() {
        match kind {
            PolicyKind::Ranker => vec![500, 5000],
            PolicyKind::Consolidator => vec![100, 1000],
            PolicyKind::Budgeter => vec![1000],
        }
    } else {
        args.sizes.iter().map(|&n| n as usize).collect()
    };
    let catalog = generated_inputs::catalog()?;
    let iterations = args.iterations as usize;
    let mut failed = Vec::new();
    for size in sizes {
        let case = match &mut pair {
            Pair::Ranker(policy, default) => {
                let (lowered, input) = generated_inputs::rank(&catalog, size);
                let input = rank::RankInput {
                    node_pool: args.node_pool.clone(),
                    ..input
                };
                let lowered = std::sync::Arc::new(lowered);
                policy.set_catalog(&lowered);
                default.set_catalog(&lowered);
                let size = input.offerings.price.len();
                measure(
                    ("rank", size, "offerings", limits.rank_deadline),
                    iterations,
                    |p| p.rank(&input),
                    policy,
                    default,
                )
            }
            Pair::Consolidator(policy, default) => {
                let input = consolidate::ConsolidateInput {
                    node_pool: args.node_pool.clone(),
                    ..generated_inputs::consolidate(&catalog, size)
                };
                measure(
                    ("consolidate", size, "nodes", limits.consolidate_deadline),
                    iterations,
                    |p| p.consolidate(&input),
                    policy,
                    default,
                )
            }
            Pair::Budgeter(policy, default) => {
                let input = budget::BudgetInput {
                    node_pool: args.node_pool.clone(),
                    ..generated_inputs::budget(size)
                };
                measure(
                    ("allowed", size, "nodes", limits.budget_deadline),
                    iterations,
                    |p| p.allowed(&input),
                    policy,
                    default,
                )
            }
        };
        let mut case = case?;
        let share_exceeded = case
            .deadline_share
            .is_some_and(|share| share > args.max_deadline_share);
        case.ok = case.fallback.is_none() && !share_exceeded;
        writeln!(out, "{}", serde_json::to_string(&case)?)?;
        if let Some(why) = &case.fallback {
            failed.push(format!("{} {size}: fell back ({why})", case.case));
        } else if share_exceeded {
            let p99 = case.policy_micros.map_or(0.0, |t| t.p99);
            failed.push(format!(
                "{} {size}: p99 {:.2} ms is {:.0} % of the {} ms deadline (limit {:.0} %)",
                case.case,
                p99 / 1000.0,
                case.deadline_share.unwrap_or_default() * 100.0,
                case.deadline_millis,
                args.max_deadline_share * 100.0
            ));
        }
    }
    Ok(failed)
}

/// Loads the component as `kind`, or as the first kind whose world it exports.
fn load(
    engine: &PolicyEngine,
    kind: Option<PolicyKind>,
    bytes: &[u8],
    settings: &str,
    limits: &Limits,
) -> anyhow::Result<Arc<CompiledPolicy>> {
    if let Some(kind) = kind {
        return Ok(prepare_wasm_with_settings(
            engine, kind, bytes, None, settings, limits,
        )?);
    }
    for kind in PolicyKind::ALL {
        match prepare_wasm_with_settings(engine, kind, bytes, None, settings, limits) {
            Err(PolicyError::WrongWorld { .. }) => continue,
            other => return Ok(other?),
        }
    }
    bail!(
        "the component exports none of the policy worlds ({}) of kestrel:policy@0.2.0 or @0.1.0",
        PolicyKind::ALL.map(PolicyKind::as_str).join(", ")
    )
}

/// Times `call` on the policy and the default, interleaved, after one untimed first call each and a
/// warm-up; stops timing the policy at its first fallback.
fn measure<P, T>(
    (case, size, size_of, deadline): (&'static str, usize, &'static str, Duration),
    iterations: usize,
    mut call: impl FnMut(&mut P) -> Verdict<T>,
    policy: &mut P,
    default: &mut P,
) -> anyhow::Result<Case> {
    let timed = |p: &mut P, call: &mut dyn FnMut(&mut P) -> Verdict<T>| {
        let start = Instant::now();
        let verdict = call(p);
        (start.elapsed(), verdict.fallback)
    };
    let (first, mut fallback) = timed(policy, &mut call);
    let (_, default_fallback) = timed(default, &mut call);
    if let Some(f) = default_fallback {
        bail!(
            "the built-in default fell back on the generated {case} input: {:?}: {}",
            f.kind,
            f.detail
        );
    }
    let warm = iterations / 10 + 1;
    let (mut mine, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..warm + iterations {
        if fallback.is_none() {
            let (took, f) = timed(policy, &mut call);
            fallback = f;
            if i >= warm && fallback.is_none() {
                mine.push(took);
            }
        }
        let (took, _) = timed(default, &mut call);
        if i >= warm {
            theirs.push(took);
        }
    }
    let default_micros = Times::of(theirs);
    let policy_micros = (fallback.is_none() && !mine.is_empty()).then(|| Times::of(mine));
    Ok(Case {
        case,
        size,
        size_of,
        first_call_micros: round(first.as_secs_f64() * 1e6),
        policy_micros,
        default_micros,
        ratio: policy_micros.map(|t| round(t.median / default_micros.median.max(0.01))),
        deadline_millis: deadline.as_millis(),
        // Six decimals: a fast call's share is a few millionths, and the check compares it.
        deadline_share: policy_micros
            .map(|t| (t.p99 / (deadline.as_secs_f64() * 1e6) * 1e6).round() / 1e6),
        fallback: fallback.map(|f| format!("{:?}: {}", f.kind, f.detail)),
        ok: false,
    })
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
