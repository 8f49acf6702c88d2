//! `kestrel policy build|test|new|bench|verify-prebuilt`: the policy author's tools.
use crate::policy::build_component::{self, WASM_TARGET};
use crate::policy::contract::{budget, consolidate, rank};
use crate::policy::fixtures::{FixtureCase, FixtureFile, matches};
use crate::policy::{
    Budgeter, Consolidator, PolicyError, PolicyKind, Ranker, Verdict, WasmBudgeter,
    WasmConsolidator, WasmPolicy as _, WasmRanker, defaults,
};
use anyhow::{Context, bail};
use clap::builder::TypedValueParser as _;
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
    /// Run a component on a fixture file (with the fixture's `settings`) under the production engine and
    /// limits; prints the policy and the contract it was built against, then one line per case; fails on
    /// any fallback or any answer that differs from the fixture's `expect`.
    Test {
        wasm: PathBuf,
        /// YAML or JSON fixture file (see docs/policies.md).
        fixtures: PathBuf,
    },
    /// Scaffold a new policy crate; its name is the directory's name (letters, digits, `-` and `_`,
    /// starting with a letter).
    New {
        #[arg(long, value_parser = kind_parser())]
        kind: PolicyKind,
        dir: PathBuf,
        /// Depend on the SDK in this directory (a Kestrel checkout's `sdk/`) instead of the
        /// `kestrel-policy-sdk` version this binary implements.
        #[arg(long, alias = "sdk", value_name = "DIR")]
        sdk_path: Option<PathBuf>,
    },
    /// Time a component's calls under the production sandbox on generated inputs of production size,
    /// beside the built-in default of its kind; fails on a fallback or a call too near its deadline.
    Bench(super::policy_bench::Args),
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

/// `--kind`: one of the policy kinds, by name (listed in `--help`).
pub(crate) fn kind_parser() -> impl clap::builder::TypedValueParser<Value = PolicyKind> {
    clap::builder::PossibleValuesParser::new(PolicyKind::ALL.map(PolicyKind::as_str)).map(|name| {
        name.parse::<PolicyKind>()
            .expect("one of the possible values")
    })
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
        Command::New {
            kind,
            dir,
            sdk_path,
        } => {
            let sdk = match sdk_path {
                Some(path) => SdkSource::Path(path),
                None => SdkSource::default(),
            };
            scaffold(kind, &dir, &sdk)?;
            println!(
                "created {} ({kind} policy); next: kestrel policy build {}",
                dir.display(),
                dir.display()
            );
            Ok(())
        }
        Command::Bench(args) => super::policy_bench::run(args),
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

/// Checks that `rustc` can build for the wasm target before cargo is started, and says exactly what is
/// missing and how to add it: no `rustc` at all, or no `wasm32-unknown-unknown` standard library in the
/// toolchain's sysroot.
pub fn check_wasm_target(rustc: &Path) -> anyhow::Result<()> {
    let run = |args: &[&str]| {
        std::process::Command::new(rustc)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(sysroot) = run(&["--print", "sysroot"]) else {
        bail!(
            "cannot run `{} --print sysroot`: building a policy needs a Rust toolchain (install one with rustup, https://rustup.rs, then `rustup target add {WASM_TARGET}`)",
            rustc.display()
        );
    };
    let lib = Path::new(&sysroot)
        .join("lib/rustlib")
        .join(WASM_TARGET)
        .join("lib");
    if !lib.is_dir() {
        let version = run(&["--version"]).unwrap_or_else(|| "rustc".into());
        let toolchain = Path::new(&sysroot)
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|_| sysroot.contains("/toolchains/") || sysroot.contains("\\toolchains\\"));
        let add = match toolchain {
            Some(t) => format!("rustup target add {WASM_TARGET} --toolchain {t}"),
            None => format!("rustup target add {WASM_TARGET}"),
        };
        bail!(
            "the Rust target {WASM_TARGET} is not installed for {version} (no {}): add it with `{add}`",
            lib.display()
        );
    }
    Ok(())
}

/// Builds the policy crate at `crate_dir` to a component; returns where it was written.
pub fn build(crate_dir: &Path, out: Option<&Path>) -> anyhow::Result<PathBuf> {
    let crate_dir = crate_dir
        .canonicalize()
        .with_context(|| format!("policy crate {}", crate_dir.display()))?;
    if !crate_dir.join("Cargo.toml").is_file() {
        bail!(
            "{} is not a policy crate: it has no Cargo.toml (scaffold one with `kestrel policy new`)",
            crate_dir.display()
        );
    }
    check_wasm_target(&build_component::toolchain().0)?;
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

/// Runs `wasm` on the fixture file: one JSON line naming the policy (name, version, the contract it was
/// built against, its settings), then one per case; returns how many cases failed. With
/// `settings_error`, the policy must refuse the fixture's settings with that text in its message.
pub fn test(wasm: &Path, fixtures: &Path, out: &mut dyn std::io::Write) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(fixtures)
        .with_context(|| format!("reading {}", fixtures.display()))?;
    let file: FixtureFile = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("parsing {}", fixtures.display()))?;
    let settings = file.settings_json();
    let loaded = match file.kind {
        PolicyKind::Ranker => crate::policy::ranker_from_file(wasm, &settings).map(Loaded::Ranker),
        PolicyKind::Consolidator => {
            crate::policy::consolidator_from_file(wasm, &settings).map(Loaded::Consolidator)
        }
        PolicyKind::Budgeter => {
            crate::policy::budgeter_from_file(wasm, &settings).map(Loaded::Budgeter)
        }
    };
    if let Some(expected) = &file.settings_error {
        let (ok, message) = match &loaded {
            Err(PolicyError::Settings { message, .. }) => {
                (message.contains(expected.as_str()), message.clone())
            }
            Err(e) => (false, e.to_string()),
            Ok(_) => (false, "the settings were accepted".into()),
        };
        let line = serde_json::json!({
            "settings": settings, "refused": loaded.is_err(), "ok": ok, "message": message,
            "expected": expected,
        });
        writeln!(out, "{line}")?;
        return Ok(usize::from(!ok));
    }
    let loaded = loaded?;
    let compiled = match &loaded {
        Loaded::Ranker(p) => p.compiled(),
        Loaded::Consolidator(p) => p.compiled(),
        Loaded::Budgeter(p) => p.compiled(),
    };
    let line = serde_json::json!({
        "policy": compiled.info.name, "version": compiled.info.version,
        "contract": compiled.contract, "sha256": compiled.sha256, "settings": settings,
    });
    writeln!(out, "{line}")?;
    match loaded {
        Loaded::Ranker(mut p) => {
            let catalog = file
                .catalog
                .clone()
                .context("a ranker fixture needs a `catalog`")?;
            p.set_catalog(&std::sync::Arc::new(catalog));
            run_cases(&file.cases, out, |input: &rank::RankInput| p.rank(input))
        }
        Loaded::Consolidator(mut p) => {
            run_cases(&file.cases, out, |input: &consolidate::ConsolidateInput| {
                p.consolidate(input)
            })
        }
        Loaded::Budgeter(mut p) => run_cases(&file.cases, out, |input: &budget::BudgetInput| {
            p.allowed(input)
        }),
    }
}

/// A component loaded as the fixture file's kind.
enum Loaded {
    Ranker(WasmRanker),
    Consolidator(WasmConsolidator),
    Budgeter(WasmBudgeter),
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
            "reasons": verdict.reasons,
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

/// Where a scaffolded crate gets `kestrel-policy-sdk` from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkSource {
    /// A version requirement on the package registry (the default: the SDK version this binary
    /// implements, so the crate builds anywhere, without a Kestrel checkout).
    Version(String),
    /// A directory holding the SDK crate (a Kestrel checkout's `sdk/`); written as an absolute path.
    Path(PathBuf),
}

impl Default for SdkSource {
    fn default() -> Self {
        SdkSource::Version(kestrel_policy_sdk::VERSION.to_string())
    }
}

/// Rust keywords and the names of the standard crates: a package of that name cannot be depended on or
/// built as a library.
const RESERVED_NAMES: &[&str] = &[
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "core",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc_macro",
    "pub",
    "ref",
    "return",
    "self",
    "Self",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
];

/// Checks that `name` makes a valid crate (package) name: 1 to 64 ASCII letters, digits, `-` or `_`,
/// starting with a letter, and not a keyword or a standard crate's name.
pub fn check_crate_name(name: &str) -> anyhow::Result<()> {
    let why = if name.is_empty() {
        Some("it is empty".to_string())
    } else if name.len() > 64 {
        Some(format!(
            "it has {} characters, at most 64 are allowed",
            name.len()
        ))
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        Some(format!(
            "it contains {c:?}; only ASCII letters, digits, `-` and `_` are allowed"
        ))
    } else if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        Some("it must start with a letter".to_string())
    } else if RESERVED_NAMES.contains(&name.replace('-', "_").as_str()) {
        Some("it is a Rust keyword or a standard crate's name".to_string())
    } else {
        None
    };
    match why {
        Some(why) => bail!(
            "{name:?} is not a valid crate name ({why}); the policy crate is named after its directory, choose another directory name"
        ),
        None => Ok(()),
    }
}

/// A TOML basic string holding `s` (quotes, backslashes and control characters escaped).
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes a new policy crate at `dir`, named after the directory.
pub fn scaffold(kind: PolicyKind, dir: &Path, sdk: &SdkSource) -> anyhow::Result<()> {
    let name = std::path::absolute(dir)?
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .with_context(|| format!("{}: the directory needs a UTF-8 name", dir.display()))?;
    check_crate_name(&name)?;
    if dir.join("Cargo.toml").exists() {
        bail!("{} already holds a crate", dir.display());
    }
    let dependency = match sdk {
        SdkSource::Version(v) => toml_string(v),
        SdkSource::Path(path) => {
            let path = std::path::absolute(path)?;
            if !path.join("Cargo.toml").is_file() {
                bail!(
                    "--sdk-path {}: no Cargo.toml there (give the `sdk` directory of a Kestrel checkout)",
                    path.display()
                );
            }
            let path = path
                .to_str()
                .with_context(|| format!("--sdk-path {}: not UTF-8", path.display()))?;
            format!("{{ path = {} }}", toml_string(path))
        }
    };
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let cargo_toml = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
kestrel-policy-sdk = {dependency}

# A policy crate is its own workspace.
[workspace]
"#
    );
    std::fs::write(dir.join("Cargo.toml"), cargo_toml)?;
    std::fs::write(dir.join("src/lib.rs"), template(kind, &name))?;
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
    Ok(Ranking { order, scores, reasons: vec![] })
}

pub struct Policy;

impl Guest for Policy {
    fn info() -> PolicyInfo {
        PolicyInfo { name: "NAME".into(), version: env!("CARGO_PKG_VERSION").into(), contract: kestrel_policy_sdk::CONTRACT.into() }
    }
    fn validate_settings(settings: String) -> Result<(), String> {
        // This policy takes no settings; parse yours with `kestrel_policy_sdk::settings::parse`.
        match settings.trim() {
            "null" | "{}" => Ok(()),
            other => Err(format!("NAME takes no settings, got {other}")),
        }
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
            r#"use kestrel_policy_sdk::consolidator::{ChosenMoves, ConsolidateInput, Guest, PolicyInfo};

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
    fn validate_settings(settings: String) -> Result<(), String> {
        // This policy takes no settings; parse yours with `kestrel_policy_sdk::settings::parse`.
        match settings.trim() {
            "null" | "{}" => Ok(()),
            other => Err(format!("NAME takes no settings, got {other}")),
        }
    }
    fn consolidate(input: ConsolidateInput) -> Result<ChosenMoves, String> {
        Ok(ChosenMoves { ids: consolidate(&input)?, reasons: vec![] })
    }
}

#[cfg(target_arch = "wasm32")]
kestrel_policy_sdk::consolidator::export_consolidator!(Policy);
"#
        }
        PolicyKind::Budgeter => {
            r#"use kestrel_policy_sdk::budgeter::{Allowance, BudgetInput, DisruptionReason, Guest, PolicyInfo, ReasonCount};

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
    fn validate_settings(settings: String) -> Result<(), String> {
        // This policy takes no settings; parse yours with `kestrel_policy_sdk::settings::parse`.
        match settings.trim() {
            "null" | "{}" => Ok(()),
            other => Err(format!("NAME takes no settings, got {other}")),
        }
    }
    fn allowed(input: BudgetInput) -> Result<Allowance, String> {
        Ok(Allowance { counts: allowed(&input)?, reasons: vec![] })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "kestrel-policy-cli-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn names_that_make_no_crate_are_refused_before_anything_is_written() {
        let root = temp_dir("names");
        for bad in [
            "my ranker",
            "my\"ranker",
            "1ranker",
            "-x",
            "std",
            "self",
            "r@nk",
            "ü",
        ] {
            let dir = root.join(bad);
            let err = scaffold(PolicyKind::Ranker, &dir, &SdkSource::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("not a valid crate name"), "{bad}: {err}");
            assert!(!dir.exists(), "{bad}: nothing may be written");
        }
        let long = "a".repeat(65);
        assert!(check_crate_name(&long).is_err());
        for good in ["my-ranker", "my_ranker2", "R", &"a".repeat(64)] {
            check_crate_name(good).unwrap();
        }
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn the_scaffold_depends_on_the_sdk_version_by_default_and_on_a_path_when_asked() {
        let root = temp_dir("scaffold");
        scaffold(
            PolicyKind::Budgeter,
            &root.join("by-version"),
            &SdkSource::default(),
        )
        .unwrap();
        let toml = std::fs::read_to_string(root.join("by-version/Cargo.toml")).unwrap();
        let expected = format!("kestrel-policy-sdk = \"{}\"", kestrel_policy_sdk::VERSION);
        assert!(toml.contains(&expected), "{toml}");
        assert!(!toml.contains("path ="), "{toml}");

        let sdk = root.join("checkout \"with\" quotes/sdk");
        std::fs::create_dir_all(&sdk).unwrap();
        std::fs::write(sdk.join("Cargo.toml"), "").unwrap();
        scaffold(
            PolicyKind::Ranker,
            &root.join("by-path"),
            &SdkSource::Path(sdk.clone()),
        )
        .unwrap();
        let toml = std::fs::read_to_string(root.join("by-path/Cargo.toml")).unwrap();
        let parsed: toml_check::Dependency = toml_check::dependency(&toml);
        assert_eq!(parsed.path.as_deref(), sdk.to_str(), "{toml}");

        let err = scaffold(
            PolicyKind::Ranker,
            &root.join("no-sdk"),
            &SdkSource::Path(root.join("nowhere")),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no Cargo.toml there"), "{err}");
        let _ = std::fs::remove_dir_all(root);
    }

    /// Reads the `kestrel-policy-sdk = { path = "..." }` line back the way TOML does (basic string escapes).
    mod toml_check {
        pub struct Dependency {
            pub path: Option<String>,
        }
        pub fn dependency(toml: &str) -> Dependency {
            let line = toml
                .lines()
                .find(|l| l.starts_with("kestrel-policy-sdk = "))
                .expect("a dependency line");
            let Some(rest) = line.split_once("path = \"").map(|(_, r)| r) else {
                return Dependency { path: None };
            };
            let mut out = String::new();
            let mut chars = rest.chars();
            while let Some(c) = chars.next() {
                match c {
                    '"' => return Dependency { path: Some(out) },
                    '\\' => match chars.next() {
                        Some('"') => out.push('"'),
                        Some('\\') => out.push('\\'),
                        other => panic!("unexpected escape {other:?}"),
                    },
                    c => out.push(c),
                }
            }
            panic!("unterminated string in {line}")
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_missing_wasm_target_is_named_with_the_command_that_adds_it() {
        use std::os::unix::fs::PermissionsExt;
        let root = temp_dir("target");
        let sysroot = root.join("toolchains/1.95.0-x86_64-unknown-linux-gnu");
        std::fs::create_dir_all(sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu/lib")).unwrap();
        let rustc = root.join("rustc");
        std::fs::write(
            &rustc,
            format!(
                "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'rustc 1.95.0 (fake)'; else echo '{}'; fi\n",
                sysroot.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&rustc, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = check_wasm_target(&rustc).unwrap_err().to_string();
        assert!(
            err.contains("wasm32-unknown-unknown is not installed for rustc 1.95.0 (fake)"),
            "{err}"
        );
        assert!(
            err.contains("rustup target add wasm32-unknown-unknown --toolchain 1.95.0-x86_64-unknown-linux-gnu"),
            "{err}"
        );
        std::fs::create_dir_all(sysroot.join("lib/rustlib/wasm32-unknown-unknown/lib")).unwrap();
        check_wasm_target(&rustc).unwrap();
        let err = check_wasm_target(&root.join("no-such-rustc"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a Rust toolchain"), "{err}");
        let _ = std::fs::remove_dir_all(root);
    }
}
