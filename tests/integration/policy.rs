//! Integration tests: policy (owner: policy). Real wasm: the embedded defaults, test policies built by
//! tests/build.rs from tests/policies/, and the example policy built with `kestrel policy build`.
use kestrel::policy::contract::{budget, rank};
use kestrel::policy::fixtures::{canary_budget_input, canary_catalog, canary_rank_input};
use kestrel::policy::registry::{DefaultBackend, PolicySource};
use kestrel::policy::{
    Budgeter, Consolidator, FallbackKind, Limits, PolicyEngine, PolicyError, PolicyKind,
    PolicyMetrics, PolicyRegistry, Ranker, WasmBudgeter, WasmPolicy, WasmRanker, defaults,
    engine::sha256_hex,
};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MISBEHAVING: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/misbehaving.wasm"));
const GENEROUS_BUDGETER: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/generous-budgeter.wasm"));

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn misbehaving(limits: Limits) -> WasmRanker {
    let compiled = kestrel::policy::registry::prepare_wasm(
        PolicyEngine::shared(),
        PolicyKind::Ranker,
        MISBEHAVING,
        None,
        &limits,
    )
    .expect("the misbehaving ranker passes the canary (it behaves for other node pools)");
    let mut r = WasmRanker::new(compiled, limits, Arc::new(PolicyMetrics::default()));
    r.set_catalog(&std::sync::Arc::new(canary_catalog()));
    r
}

fn input_for(node_pool: &str) -> rank::RankInput {
    rank::RankInput {
        node_pool: node_pool.into(),
        ..canary_rank_input()
    }
}

fn native_answer() -> rank::Ranking {
    kestrel_default_ranker::rank(&canary_catalog(), &canary_rank_input()).unwrap()
}

#[test]
fn embedded_defaults_answer_like_the_native_ones() {
    let registry = PolicyRegistry::new();
    assert!(
        registry
            .current("p", PolicyKind::Ranker)
            .contains("(wasm sha256:")
    );
    let mut ranker = registry.ranker("p");
    ranker.set_catalog(&std::sync::Arc::new(canary_catalog()));
    let v = ranker.rank(&canary_rank_input());
    assert_eq!(v.fallback, None);
    assert!(
        v.decided_by.starts_with("default-ranker@"),
        "{}",
        v.decided_by
    );
    assert_eq!(v.value, native_answer());
    let c = registry
        .consolidator("p")
        .consolidate(&kestrel::policy::fixtures::canary_consolidate_input());
    assert_eq!(c.fallback, None);
    assert_eq!(c.value, vec![1, 2]);
    let b = registry.budgeter("p").allowed(&canary_budget_input());
    assert_eq!(b.fallback, None);
    assert_eq!(
        b.value,
        kestrel_default_budgeter::allowed(&canary_budget_input()).unwrap()
    );
    assert_eq!(registry.metrics("p", PolicyKind::Ranker).calls, 1);
}

#[test]
fn an_endless_loop_is_stopped_within_its_deadline_and_the_default_answers() {
    let deadline = Duration::from_millis(30);
    let mut r = misbehaving(Limits {
        rank_deadline: deadline,
        ..Limits::default()
    });
    let start = Instant::now();
    let v = r.rank(&input_for("loop"));
    let took = start.elapsed();
    let fallback = v.fallback.expect("the loop falls back");
    assert_eq!(fallback.kind, FallbackKind::Timeout, "{fallback:?}");
    assert!(fallback.detail.contains("30 ms"), "{}", fallback.detail);
    assert!(took >= deadline, "stopped early: {took:?}");
    // One tick of slack plus scheduling on a loaded CI machine.
    assert!(
        took < deadline + Duration::from_millis(250),
        "took {took:?}"
    );
    assert_eq!(v.value, native_answer());
    assert!(!r.has_instance(), "the interrupted instance is dropped");
    assert_eq!(
        r.metrics().snapshot().fallbacks_of(FallbackKind::Timeout),
        1
    );
}

#[test]
fn growing_memory_past_the_cap_traps_with_a_clear_error_and_the_default_answers() {
    // A deadline no loaded machine reaches: this test is about the memory cap, not the clock (at the
    // default 50 ms a busy machine sometimes times the growing module out first).
    let mut r = misbehaving(Limits {
        memory_bytes: 16 << 20,
        rank_deadline: Duration::from_secs(10),
        ..Limits::default()
    });
    let v = r.rank(&input_for("memhog"));
    let fallback = v.fallback.expect("the memory hog falls back");
    assert_eq!(fallback.kind, FallbackKind::MemoryLimit, "{fallback:?}");
    assert!(
        fallback.detail.contains("memory cap of 16 MiB exceeded"),
        "{}",
        fallback.detail
    );
    assert_eq!(v.value, native_answer());
    assert!(!r.has_instance());
}

#[test]
fn invalid_answers_and_errors_are_rejected_and_the_default_answers() {
    let mut r = misbehaving(Limits::default());
    for (pool, kind, detail) in [
        ("invalid", FallbackKind::InvalidAnswer, "duplicate"),
        ("nan", FallbackKind::InvalidAnswer, "finite"),
        ("err", FallbackKind::PolicyError, "declines"),
    ] {
        let v = r.rank(&input_for(pool));
        let fallback = v.fallback.unwrap_or_else(|| panic!("{pool} falls back"));
        assert_eq!(fallback.kind, kind, "{pool}: {fallback:?}");
        assert!(
            fallback.detail.contains(detail),
            "{pool}: {}",
            fallback.detail
        );
        assert_eq!(v.value, native_answer(), "{pool}");
        // A good answer in between keeps the policy from degrading.
        assert_eq!(r.rank(&input_for("ok")).fallback, None);
    }
}

#[test]
fn a_trapped_instance_is_never_reused() {
    let mut r = misbehaving(Limits::default());
    // The first score counts the calls this instance answered.
    assert_eq!(r.rank(&input_for("ok")).value.scores[0], 1.0);
    assert_eq!(r.rank(&input_for("ok")).value.scores[0], 2.0);
    let v = r.rank(&input_for("trap"));
    let fallback = v.fallback.expect("the panic falls back");
    assert_eq!(fallback.kind, FallbackKind::Trap);
    assert!(!r.has_instance());
    // A fresh instance: its counter restarts (the trapped call was its first).
    let v = r.rank(&input_for("ok"));
    assert_eq!(v.fallback, None);
    assert_eq!(v.value.scores[0], 1.0);
}

#[test]
fn repeated_failures_degrade_the_policy_until_it_is_replaced() {
    let registry = PolicyRegistry::with(
        PolicyEngine::shared().clone(),
        Limits {
            degrade_after: 2,
            ..Limits::default()
        },
        DefaultBackend::Native,
    );
    registry
        .install(
            "p",
            PolicyKind::Ranker,
            PolicySource::Wasm {
                bytes: MISBEHAVING.to_vec(),
                sha256: None,
            },
        )
        .unwrap();
    let mut r = registry.ranker("p");
    r.set_catalog(&std::sync::Arc::new(canary_catalog()));
    assert_eq!(
        r.rank(&input_for("trap")).fallback.unwrap().kind,
        FallbackKind::Trap
    );
    assert_eq!(
        r.rank(&input_for("err")).fallback.unwrap().kind,
        FallbackKind::PolicyError
    );
    // Degraded: even a good input is not sent to the module any more.
    assert_eq!(
        r.rank(&input_for("ok")).fallback.unwrap().kind,
        FallbackKind::Degraded
    );
    let m = registry.metrics("p", PolicyKind::Ranker);
    assert_eq!(
        (m.degraded, m.fallbacks_of(FallbackKind::Degraded), m.calls),
        (1, 1, 3)
    );
    // Replacing it (same bytes) serves again, with the catalog re-sent.
    registry
        .install(
            "p",
            PolicyKind::Ranker,
            PolicySource::Wasm {
                bytes: MISBEHAVING.to_vec(),
                sha256: None,
            },
        )
        .unwrap();
    let v = r.rank(&input_for("ok"));
    assert_eq!(v.fallback, None);
    assert!(
        v.decided_by.starts_with("misbehaving@0.1.0 (wasm"),
        "{}",
        v.decided_by
    );
}

#[test]
fn malformed_bytes_and_pin_mismatches_are_refused_and_the_old_policy_keeps_serving() {
    let registry = PolicyRegistry::native();
    let mut r = registry.ranker("p");
    r.set_catalog(&std::sync::Arc::new(canary_catalog()));
    let before = registry.current("p", PolicyKind::Ranker);

    let err = registry
        .install(
            "p",
            PolicyKind::Ranker,
            PolicySource::Wasm {
                bytes: b"\0asm garbage".to_vec(),
                sha256: None,
            },
        )
        .unwrap_err();
    assert!(matches!(err, PolicyError::NotAComponent { .. }), "{err}");
    let mut truncated = defaults::RANKER_WASM.to_vec();
    truncated.truncate(truncated.len() / 2);
    let err = registry
        .install(
            "p",
            PolicyKind::Ranker,
            PolicySource::Wasm {
                bytes: truncated,
                sha256: None,
            },
        )
        .unwrap_err();
    assert!(matches!(err, PolicyError::Compile { .. }), "{err}");

    let wrong_pin = sha256_hex(b"something else");
    let err = registry
        .install(
            "p",
            PolicyKind::Ranker,
            PolicySource::Wasm {
                bytes: defaults::RANKER_WASM.to_vec(),
                sha256: Some(wrong_pin.clone()),
            },
        )
        .unwrap_err();
    match err {
        PolicyError::Sha256Mismatch { expected, actual } => {
            assert_eq!(expected, wrong_pin);
            assert_eq!(actual, sha256_hex(defaults::RANKER_WASM));
        }
        other => panic!("expected a sha256 mismatch, got {other}"),
    }
    // A component of the wrong world is refused too.
    let err = registry
        .install(
            "p",
            PolicyKind::Ranker,
            PolicySource::Wasm {
                bytes: defaults::BUDGETER_WASM.to_vec(),
                sha256: None,
            },
        )
        .unwrap_err();
    assert!(matches!(err, PolicyError::WrongWorld { .. }), "{err}");

    assert_eq!(registry.current("p", PolicyKind::Ranker), before);
    let v = r.rank(&canary_rank_input());
    assert_eq!((v.fallback, v.decided_by), (None, before));
    assert_eq!(registry.metrics("p", PolicyKind::Ranker).rejected_swaps, 4);

    // The right pin is accepted and the handle follows the swap.
    let pin = format!(
        "sha256:{}",
        sha256_hex(defaults::RANKER_WASM).to_uppercase()
    );
    registry
        .install(
            "p",
            PolicyKind::Ranker,
            PolicySource::Wasm {
                bytes: defaults::RANKER_WASM.to_vec(),
                sha256: Some(pin),
            },
        )
        .unwrap();
    let v = r.rank(&canary_rank_input());
    assert!(v.decided_by.contains("(wasm sha256:"), "{}", v.decided_by);
    assert_eq!(v.value, native_answer());
}

#[test]
fn budgets_above_the_nodepools_own_are_clamped() {
    let compiled = kestrel::policy::registry::prepare_wasm(
        PolicyEngine::shared(),
        PolicyKind::Budgeter,
        GENEROUS_BUDGETER,
        None,
        &Limits::default(),
    )
    .unwrap();
    let mut b = WasmBudgeter::new(compiled, Limits::default(), Arc::default());
    let input = canary_budget_input(); // 20% of 10 nodes
    let v = b.allowed(&input);
    assert_eq!(v.fallback, None);
    assert!(v.value.iter().all(|r| r.count == 2), "{:?}", v.value);
    assert_eq!(b.metrics().snapshot().clamped, 1);
    let blocked = budget::BudgetInput {
        disrupting: 5,
        ..input
    };
    assert!(b.allowed(&blocked).value.iter().all(|r| r.count == 0));
}

#[test]
fn nodepool_annotations_name_policies() {
    use std::collections::BTreeMap;
    let pin = "a".repeat(64);
    let ann: BTreeMap<String, String> = [
        ("kestrel.dev/ranker", "configmap:graviton"),
        ("kestrel.dev/ranker-sha256", pin.as_str()),
        ("kestrel.dev/budgeter", "native"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let refs = kestrel::policy::policy_refs(&ann).unwrap();
    assert_eq!(
        refs.ranker,
        kestrel::policy::PolicyRef::ConfigMap {
            name: "graviton".into(),
            key: "policy.wasm".into(),
            sha256: Some(pin)
        }
    );
    assert_eq!(refs.consolidator, kestrel::policy::PolicyRef::Default);
    assert_eq!(refs.budgeter, kestrel::policy::PolicyRef::Native);
    let bad: BTreeMap<String, String> =
        [("kestrel.dev/ranker".to_string(), "http://x".to_string())].into();
    assert!(matches!(
        kestrel::policy::policy_refs(&bad),
        Err(PolicyError::Annotation { .. })
    ));
}

#[test]
fn prebuilt_components_equal_a_fresh_build() {
    // The embedded components were built from source by host/build.rs (CI installs the wasm target).
    assert_eq!(
        defaults::EMBEDDED_FROM,
        "source",
        "host/build.rs used the prebuilt components: install the wasm32-unknown-unknown target"
    );
    for kind in PolicyKind::ALL {
        let path = repo()
            .join("policies/prebuilt")
            .join(format!("{kind}.wasm"));
        let committed = std::fs::read(&path).unwrap();
        assert!(
            committed == defaults::embedded_wasm(kind),
            "{} differs from a fresh build: run `kestrel policy verify-prebuilt --update` and commit it",
            path.display()
        );
    }
}

/// The README's "write your own policy" steps, on the example crate: build, test with fixtures, load.
#[test]
fn the_example_graviton_policy_builds_loads_and_prefers_arm64() {
    let example = repo().join("examples/policies/prefer-graviton");
    let out_dir = std::env::temp_dir().join(format!("kestrel-example-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let wasm = out_dir.join("prefer-graviton.wasm");
    // kestrel policy build examples/policies/prefer-graviton -o prefer-graviton.wasm
    kestrel::cli::policy::build(&example, Some(&wasm)).expect("the example builds");
    // kestrel policy test prefer-graviton.wasm examples/policies/prefer-graviton/fixtures.yaml
    let mut out = Vec::new();
    let failures =
        kestrel::cli::policy::test(&wasm, &example.join("fixtures.yaml"), &mut out).unwrap();
    assert_eq!(failures, 0, "{}", String::from_utf8_lossy(&out));
    // A fixture whose expectation the policy does not meet fails.
    let fixtures = std::fs::read_to_string(example.join("fixtures.yaml")).unwrap();
    let wrong = fixtures.replace("expect: { order: [0, 1] }", "expect: { order: [1, 0] }");
    assert_ne!(wrong, fixtures);
    std::fs::write(out_dir.join("wrong.yaml"), wrong).unwrap();
    let mut out = Vec::new();
    let failures =
        kestrel::cli::policy::test(&wasm, &out_dir.join("wrong.yaml"), &mut out).unwrap();
    assert_eq!(failures, 1, "{}", String::from_utf8_lossy(&out));
    // kestrel simulate --policy ranker=prefer-graviton.wasm (the simulator calls this loader)
    let mut ranker = kestrel::policy::ranker_from_file(&wasm, "null").unwrap();
    ranker.set_catalog(&std::sync::Arc::new(canary_catalog()));
    // c5.large (amd64) at 0.085 vs m6g.large (arm64) 12% dearer at 0.095: Graviton wins; the default
    // ranker picks the cheaper c5.
    let mut input = canary_rank_input();
    input.offerings.price = vec![0.096, 0.085, 0.095, 0.2];
    input.offerings.capacity_type = vec![0, 0, 0, 0];
    let v = ranker.rank(&input);
    assert_eq!(v.fallback, None);
    assert!(
        v.decided_by.starts_with("prefer-graviton@"),
        "{}",
        v.decided_by
    );
    assert_eq!(v.value.order[0], 2);
    assert_eq!(
        kestrel_default_ranker::rank(&canary_catalog(), &input)
            .unwrap()
            .order[0],
        1
    );
    // 0.11 is more than 20% dearer than 0.085: the cheaper x86 type wins again.
    input.offerings.price[2] = 0.11;
    assert_eq!(ranker.rank(&input).value.order[0], 1);
    std::fs::remove_dir_all(&out_dir).ok();
}

/// `kestrel policy bench` arguments for `wasm` (a file in a fresh temporary directory), small enough
/// for a test.
fn bench_args(tag: &str, bytes: &[u8]) -> kestrel::cli::policy_bench::Args {
    let dir = std::env::temp_dir().join(format!("kestrel-bench-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wasm = dir.join("policy.wasm");
    std::fs::write(&wasm, bytes).unwrap();
    kestrel::cli::policy_bench::Args {
        wasm,
        kind: None,
        settings: None,
        sizes: vec![60],
        iterations: 5,
        max_deadline_share: 1.0,
        node_pool: "bench".into(),
    }
}

/// Runs the bench; returns what failed and the JSON lines printed.
fn bench_lines(args: &kestrel::cli::policy_bench::Args) -> (Vec<String>, Vec<serde_json::Value>) {
    let mut out = Vec::new();
    let failed = kestrel::cli::policy_bench::bench(args, &mut out).unwrap();
    let lines = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (failed, lines)
}

#[test]
fn policy_bench_times_a_component_beside_the_default_of_its_kind() {
    for kind in PolicyKind::ALL {
        let args = bench_args(kind.as_str(), defaults::embedded_wasm(kind));
        let (failed, lines) = bench_lines(&args);
        assert!(failed.is_empty(), "{failed:?}");
        // The policy's line: its kind found from its exports; then one line per size.
        assert_eq!(lines[0]["kind"], kind.as_str(), "{lines:?}");
        assert_eq!(lines.len(), 2, "{lines:?}");
        let case = &lines[1];
        assert_eq!(case["ok"], true, "{case}");
        assert!(case["fallback"].is_null(), "{case}");
        let mine = case["policyMicros"]["median"].as_f64().unwrap();
        let theirs = case["defaultMicros"]["median"].as_f64().unwrap();
        assert!(mine > 0.0 && theirs > 0.0, "{case}");
        assert!(case["ratio"].as_f64().unwrap() > 0.0, "{case}");
    }
}

#[test]
fn policy_bench_fails_a_policy_too_near_its_deadline_or_falling_back() {
    // Any real call uses more than a hundred-thousandth of the deadline (0.5 µs): the share check
    // fails it.
    let mut args = bench_args("share", defaults::RANKER_WASM);
    args.max_deadline_share = 1e-5;
    let (failed, lines) = bench_lines(&args);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains("of the 50 ms deadline"), "{failed:?}");
    assert_eq!(lines[1]["ok"], false);

    // A ranker that never returns on this NodePool: the first call times out and timing stops.
    let mut args = bench_args("loop", MISBEHAVING);
    args.node_pool = "loop".into();
    let (failed, lines) = bench_lines(&args);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains("fell back (Timeout"), "{failed:?}");
    assert!(lines[1]["policyMicros"].is_null(), "{}", lines[1]);
    assert!(lines[1]["defaultMicros"]["median"].as_f64().unwrap() > 0.0);

    // Settings are the policy's to refuse, as at load time in a cluster.
    let mut args = bench_args("settings", MISBEHAVING);
    args.settings = Some("refuse: not these".into());
    let mut out = Vec::new();
    let err = kestrel::cli::policy_bench::bench(&args, &mut out).unwrap_err();
    assert!(format!("{err:#}").contains("not these"), "{err:#}");

    // Bytes that are no policy: refused with the reason, before any timing.
    let args = bench_args("garbage", b"not wasm");
    let err = kestrel::cli::policy_bench::bench(&args, &mut Vec::new()).unwrap_err();
    assert!(format!("{err:#}").contains("policy.wasm"), "{err:#}");
}
