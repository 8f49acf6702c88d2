//! `kestrel policy build|test|new|verify-prebuilt`: the policy author's tools.
use crate::policy::build_component::{self, WASM_TARGET};
use crate::policy::contract::{budget, consolidate, rank};
use crate::policy::fixtures::{FixtureCase, FixtureFile, matches};
use crate::policy::{Budgeter, Consolidator, PolicyKind, Ranker, Verdict, defaults};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Build a policy crate to a wasm component (cargo build --target wasm32-unknown-unknown, componentize).
    Build {
        /// The policy crate's directory.
        crate_dir: PathBuf,
        /// Where to write the component (default: `<crate name>.wasm` in the current directory).
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
    /// Run a component on a fixture file under the production engine and limits; fails on any fallback
    /// or any answer that differs from the fixture's `expect`.
    Test {
        wasm: PathBuf,
        /// YAML or JSON fixture file (see docs/policies.md).
        fixtures: PathBuf,
    },
    /// Scaffold a new policy crate.
    New {
        #[arg(long, value_parser = clap::value_parser!(PolicyKind))]
        kind: PolicyKind,
        dir: PathBuf,
        /// The Kestrel SDK's directory (default: the one this binary was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Check that policies/prebuilt/*.wasm equal a fresh build of policies/ byte for byte.
    VerifyPrebuilt {
        /// The repository root (default: the one this binary was built from).
        #[arg(long)]
        repo: Option<PathBuf>,
        /// Rewrite the prebuilt files instead of failing when they differ.
        #[arg(long)]
        update: bool,
    },
}

impl clap::ValueEnum for PolicyKind {
    fn value_variants<'a>() -> &'a [Self] {
        &PolicyKind::ALL
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Build { crate_dir, out } => {
            let out = build(&crate_dir, out.as_deref())?;
            let bytes = std::fs::read(&out)?;
            println!(
                "{} ({} bytes, sha256:{})",
                out.display(),
                bytes.len(),
                crate::policy::engine::sha256_hex(&bytes)
            );
            Ok(())
        }
        Command::Test { wasm, fixtures } => {
            let failures = test(&wasm, &fixtures, &mut std::io::stdout())?;
            if failures > 0 {
                bail!("{failures} fixture case(s) failed");
            }
            Ok(())
        }
        Command::New { kind, dir, sdk } => {
            let sdk = sdk.unwrap_or_else(|| repo_root().join("sdk"));
            scaffold(kind, &dir, &sdk)?;
            println!(
                "created {} ({kind} policy); next: kestrel policy build {}",
                dir.display(),
                dir.display()
            );
            Ok(())
        }
        Command::VerifyPrebuilt { repo, update } => {
            verify_prebuilt(&repo.unwrap_or_else(repo_root), update)
        }
    }
}

/// The repository this binary was built from.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn wasm_target_dir(fallback: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| fallback.join("target"), PathBuf::from)
        .join("wasm-policy-build")
}

/// Builds the policy crate at `crate_dir` to a component; returns where it was written.
pub fn build(crate_dir: &Path, out: Option<&Path>) -> anyhow::Result<PathBuf> {
    let crate_dir = crate_dir
        .canonicalize()
        .with_context(|| format!("policy crate {}", crate_dir.display()))?;
    let bytes =
        build_component::build_component(&crate_dir, &wasm_target_dir(&crate_dir), &crate_dir)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let out = match out {
        Some(o) => o.to_path_buf(),
        None => {
            let name = crate_dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("policy");
            PathBuf::from(format!("{name}.wasm"))
        }
    };
    std::fs::write(&out, bytes).with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}

/// Runs `wasm` on the fixture file, printing one JSON line per case; returns how many cases failed.
pub fn test(wasm: &Path, fixtures: &Path, out: &mut dyn std::io::Write) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(fixtures)
        .with_context(|| format!("reading {}", fixtures.display()))?;
    let file: FixtureFile = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("parsing {}", fixtures.display()))?;
    match file.kind {
        PolicyKind::Ranker => {
            let mut p = crate::policy::ranker_from_file(wasm)?;
            let catalog = file
                .catalog
                .clone()
                .context("a ranker fixture needs a `catalog`")?;
            p.set_catalog(&catalog);
            run_cases(&file.cases, out, |input: &rank::RankInput| p.rank(input))
        }
        PolicyKind::Consolidator => {
            let mut p = crate::policy::consolidator_from_file(wasm)?;
            run_cases(&file.cases, out, |input: &consolidate::ConsolidateInput| {
                p.consolidate(input)
            })
        }
        PolicyKind::Budgeter => {
            let mut p = crate::policy::budgeter_from_file(wasm)?;
            run_cases(&file.cases, out, |input: &budget::BudgetInput| {
                p.allowed(input)
            })
        }
    }
}

/// Decodes each case's input, asks `decide`, and prints one JSON line per case: the answer, who decided,
/// any fallback, and the fixture's expectation when the answer differs. Returns how many cases failed
/// (a fallback or a mismatch).
fn run_cases<I: serde::de::DeserializeOwned, O: serde::Serialize>(
    cases: &[FixtureCase],
    out: &mut dyn std::io::Write,
    mut decide: impl FnMut(&I) -> Verdict<O>,
) -> anyhow::Result<usize> {
    let mut failures = 0;
    for case in cases {
        let input: I = serde_json::from_value(case.input.clone())
            .with_context(|| format!("case {:?}: input", case.name))?;
        let verdict = decide(&input);
        let answer = serde_json::to_value(&verdict.value)?;
        let fallback = verdict
            .fallback
            .as_ref()
            .map(|f| format!("{:?}: {}", f.kind, f.detail));
        let expect = case.expect.as_ref();
        let mismatch = expect.is_some_and(|e| !matches(e, &answer));
        let ok = fallback.is_none() && !mismatch;
        if !ok {
            failures += 1;
        }
        let line = serde_json::json!({
            "case": case.name, "ok": ok, "decidedBy": verdict.decided_by, "answer": answer,
            "fallback": fallback, "expected": if mismatch { expect.cloned() } else { None },
        });
        writeln!(out, "{line}")?;
    }
    Ok(failures)
}

fn verify_prebuilt(repo: &Path, update: bool) -> anyhow::Result<()> {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repo.join("target"), PathBuf::from)
        .join("wasm-policies");
    let mut stale = Vec::new();
    for kind in PolicyKind::ALL {
        let fresh = build_component::build_component(
            &repo.join("policies").join(kind.as_str()),
            &target_dir,
            repo,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let path = repo.join("policies/prebuilt").join(format!("{kind}.wasm"));
        let committed = std::fs::read(&path).unwrap_or_default();
        if committed == fresh {
            println!("{}: up to date ({} bytes)", path.display(), fresh.len());
        } else if update {
            std::fs::write(&path, &fresh)?;
            println!("{}: updated ({} bytes)", path.display(), fresh.len());
        } else {
            stale.push(path.display().to_string());
        }
    }
    if defaults::EMBEDDED_FROM == "prebuilt" {
        eprintln!(
            "note: this binary embeds the prebuilt components (no {WASM_TARGET} target when it was built)"
        );
    }
    if !stale.is_empty() {
        bail!(
            "{} differ from a fresh build of policies/: run `kestrel policy verify-prebuilt --update` and commit them",
            stale.join(", ")
        );
    }
    Ok(())
}

/// Writes a new policy crate at `dir`.
pub fn scaffold(kind: PolicyKind, dir: &Path, sdk: &Path) -> anyhow::Result<()> {
    if dir.join("Cargo.toml").exists() {
        bail!("{} already holds a crate", dir.display());
    }
    std::fs::create_dir_all(dir.join("src"))?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("the directory needs a name")?;
    let sdk = std::path::absolute(sdk)?;
    let cargo_toml = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
kestrel-policy-sdk = {{ path = "{}" }}

# A policy crate is its own workspace.
[workspace]
"#,
        sdk.display()
    );
    std::fs::write(dir.join("Cargo.toml"), cargo_toml)?;
    std::fs::write(dir.join("src/lib.rs"), template(kind, name))?;
    std::fs::write(dir.join("fixtures.yaml"), fixture_template(kind))?;
    Ok(())
}

fn template(kind: PolicyKind, name: &str) -> String {
    let body = match kind {
        PolicyKind::Ranker => {
            r#"use kestrel_policy_sdk::ranker::{Catalog, Guest, PolicyInfo, RankInput, Ranking};
use std::sync::Mutex;

static CATALOG: Mutex<Option<Catalog>> = Mutex::new(None);

/// Cheapest price per pending pod first.
pub fn rank(_catalog: &Catalog, input: &RankInput) -> Result<Ranking, String> {
    let o = &input.offerings;
    let key = |i: usize| o.price[i] / f64::from(o.pods_per_node[i].max(1));
    let mut order: Vec<u32> = (0..o.price.len() as u32).collect();
    order.sort_by(|&a, &b| key(a as usize).total_cmp(&key(b as usize)).then(a.cmp(&b)));
    let scores = order.iter().map(|&i| o.price[i as usize]).collect();
    Ok(Ranking { order, scores })
}

pub struct Policy;

impl Guest for Policy {
    fn info() -> PolicyInfo {
        PolicyInfo { name: "NAME".into(), version: env!("CARGO_PKG_VERSION").into(), contract: kestrel_policy_sdk::CONTRACT.into() }
    }
    fn set_catalog(catalog: Catalog) {
        *CATALOG.lock().unwrap() = Some(catalog);
    }
    fn rank(input: RankInput) -> Result<Ranking, String> {
        let catalog = CATALOG.lock().unwrap();
        rank(catalog.as_ref().ok_or("no catalog")?, &input)
    }
}

#[cfg(target_arch = "wasm32")]
kestrel_policy_sdk::ranker::export_ranker!(Policy);
"#
        }
        PolicyKind::Consolidator => {
            r#"use kestrel_policy_sdk::consolidator::{ConsolidateInput, Guest, PolicyInfo};

/// Every move that saves money, largest saving first.
pub fn consolidate(input: &ConsolidateInput) -> Result<Vec<u32>, String> {
    let mut moves: Vec<_> = input.moves.iter().filter(|m| m.savings_per_hour > 0.0).collect();
    moves.sort_by(|a, b| b.savings_per_hour.total_cmp(&a.savings_per_hour));
    Ok(moves.iter().map(|m| m.id).collect())
}

pub struct Policy;

impl Guest for Policy {
    fn info() -> PolicyInfo {
        PolicyInfo { name: "NAME".into(), version: env!("CARGO_PKG_VERSION").into(), contract: kestrel_policy_sdk::CONTRACT.into() }
    }
    fn consolidate(input: ConsolidateInput) -> Result<Vec<u32>, String> {
        consolidate(&input)
    }
}

#[cfg(target_arch = "wasm32")]
kestrel_policy_sdk::consolidator::export_consolidator!(Policy);
"#
        }
        PolicyKind::Budgeter => {
            r#"use kestrel_policy_sdk::budgeter::{BudgetInput, DisruptionReason, Guest, PolicyInfo, ReasonCount};

/// One node at a time, for every reason (the host clamps to the NodePool's own budgets).
pub fn allowed(input: &BudgetInput) -> Result<Vec<ReasonCount>, String> {
    let count = 1u32.saturating_sub(input.disrupting);
    Ok([DisruptionReason::Empty, DisruptionReason::Underutilized, DisruptionReason::Drifted]
        .into_iter()
        .map(|reason| ReasonCount { reason, count })
        .collect())
}

pub struct Policy;

impl Guest for Policy {
    fn info() -> PolicyInfo {
        PolicyInfo { name: "NAME".into(), version: env!("CARGO_PKG_VERSION").into(), contract: kestrel_policy_sdk::CONTRACT.into() }
    }
    fn allowed(input: BudgetInput) -> Result<Vec<ReasonCount>, String> {
        allowed(&input)
    }
}

#[cfg(target_arch = "wasm32")]
kestrel_policy_sdk::budgeter::export_budgeter!(Policy);
"#
        }
    };
    format!(
        "//! A Kestrel {kind} policy (see docs/policies.md).\n{}",
        body.replace("NAME", name)
    )
}

fn fixture_template(kind: PolicyKind) -> String {
    let file = match kind {
        PolicyKind::Ranker => serde_json::json!({
            "kind": "ranker",
            "catalog": crate::policy::fixtures::canary_catalog(),
            "cases": [{ "name": "canary", "input": crate::policy::fixtures::canary_rank_input() }],
        }),
        PolicyKind::Consolidator => serde_json::json!({
            "kind": "consolidator",
            "cases": [{ "name": "canary", "input": crate::policy::fixtures::canary_consolidate_input() }],
        }),
        PolicyKind::Budgeter => serde_json::json!({
            "kind": "budgeter",
            "cases": [{ "name": "canary", "input": crate::policy::fixtures::canary_budget_input() }],
        }),
    };
    serde_yaml_ng::to_string(&file).unwrap_or_default()
}
