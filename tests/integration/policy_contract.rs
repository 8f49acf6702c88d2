//! Integration tests: policy contract 0.2.0 (owner: policy) — 0.1.0 components still loading and
//! answering as before, settings (good, bad, missing) with the previous policy serving on refusal,
//! reasons reaching the explanation and bounded. Real wasm: the committed 0.1.0 defaults
//! (`policies/prebuilt/compat/`), the embedded 0.2.0 defaults, and tests/policies/misbehaving.
use kestrel::policy::contract::{consolidate, rank};
use kestrel::policy::fixtures::{
    canary_budget_input, canary_catalog, canary_consolidate_input, canary_rank_input,
};
use kestrel::policy::registry::{PolicySource, prepare_wasm, prepare_wasm_with_settings};
use kestrel::policy::{
    Budgeter, Consolidator, Contract, FallbackKind, Limits, NativeBudgeter, NativeConsolidator,
    NativeRanker, PolicyEngine, PolicyError, PolicyKind, PolicyMetrics, PolicyRegistry, Ranker,
    WasmBudgeter, WasmConsolidator, WasmRanker, defaults,
};
use std::path::Path;
use std::sync::Arc;

const MISBEHAVING: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/misbehaving.wasm"));

fn compat(kind: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join(format!("policies/prebuilt/compat/{kind}-0.1.0.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(
    kind: PolicyKind,
    bytes: &[u8],
    settings: &str,
) -> Result<Arc<kestrel::policy::CompiledPolicy>, PolicyError> {
    prepare_wasm_with_settings(
        PolicyEngine::shared(),
        kind,
        bytes,
        None,
        settings,
        &Limits::default(),
    )
}

/// More inputs than the canary: several batch sizes, spot and on-demand, prices shuffled.
fn rank_inputs() -> Vec<rank::RankInput> {
    (0..8u32)
        .map(|k| {
            let mut i = canary_rank_input();
            i.seed = u64::from(k);
            i.pods[0].count = 1 + k;
            i.offerings.price = (0..4)
                .map(|j| 0.03 + f64::from((j * 7 + k * 3) % 11) * 0.01)
                .collect();
            i.offerings.capacity_type = (0..4).map(|j| ((j + k) % 2) as u8).collect();
            i
        })
        .collect()
}

#[test]
fn components_built_against_0_1_0_load_and_answer_like_the_0_2_0_defaults() {
    let limits = Limits::default();
    let metrics = || Arc::new(PolicyMetrics::default());

    let old = load(PolicyKind::Ranker, &compat("ranker"), "null").expect("a 0.1.0 ranker loads");
    assert_eq!(old.contract, Contract::V0_1);
    assert_eq!(old.info.contract, "kestrel:policy@0.1.0");
    assert!(
        old.label().contains("kestrel:policy@0.1.0"),
        "{}",
        old.label()
    );
    let new = prepare_wasm(
        PolicyEngine::shared(),
        PolicyKind::Ranker,
        defaults::embedded_wasm(PolicyKind::Ranker),
        None,
        &limits,
    )
    .unwrap();
    assert_eq!(new.contract, Contract::V0_2);
    let (mut old, mut new) = (
        WasmRanker::new(old, limits, metrics()),
        WasmRanker::new(new, limits, metrics()),
    );
    old.set_catalog(&std::sync::Arc::new(canary_catalog()));
    new.set_catalog(&std::sync::Arc::new(canary_catalog()));
    for input in rank_inputs() {
        let (a, b) = (old.rank(&input), new.rank(&input));
        assert_eq!((a.fallback.clone(), b.fallback.clone()), (None, None));
        assert_eq!(a.value, b.value, "0.1.0 and 0.2.0 rank alike");
        assert_eq!(
            a.value,
            NativeRanker::answer(Some(&canary_catalog()), &input).value
        );
        assert!(a.reasons.is_empty());
    }

    let old = load(PolicyKind::Consolidator, &compat("consolidator"), "null").unwrap();
    assert_eq!(old.contract, Contract::V0_1);
    let mut old = WasmConsolidator::new(old, limits, metrics());
    let mut input: consolidate::ConsolidateInput = canary_consolidate_input();
    for k in 0..4 {
        input.now += 3600;
        let n = input.moves.len();
        if let Some(m) = input.moves.get_mut(k % n) {
            m.savings_per_hour *= 1.5;
        }
        let v = old.consolidate(&input);
        assert_eq!(v.fallback, None);
        assert_eq!(v.value, NativeConsolidator::answer(&input).value);
    }

    let old = load(PolicyKind::Budgeter, &compat("budgeter"), "null").unwrap();
    assert_eq!(old.contract, Contract::V0_1);
    let mut old = WasmBudgeter::new(old, limits, metrics());
    let mut input = canary_budget_input();
    for disrupting in 0..4 {
        input.disrupting = disrupting;
        let v = old.allowed(&input);
        assert_eq!(v.fallback, None);
        assert_eq!(v.value, NativeBudgeter::answer(&input).value);
    }
}

#[test]
fn a_0_1_0_component_takes_no_settings() {
    let err = load(PolicyKind::Ranker, &compat("ranker"), r#"{"a":1}"#).unwrap_err();
    match err {
        PolicyError::Settings { message, .. } => {
            assert!(message.contains("kestrel:policy@0.1.0"), "{message}")
        }
        other => panic!("expected a settings error, got {other}"),
    }
}

#[test]
fn settings_good_bad_and_missing_and_the_previous_policy_keeps_serving() {
    let registry = PolicyRegistry::native();
    let wasm = || PolicySource::Wasm {
        bytes: MISBEHAVING.to_vec(),
        sha256: None,
    };
    // Good settings: the instance has them (the first score of a plain answer comes from them).
    let label = registry
        .install_with_settings("p", PolicyKind::Ranker, wasm(), r#"{"first_score":42.5}"#)
        .expect("good settings are accepted");
    assert!(label.contains("kestrel:policy@0.2.0"), "{label}");
    let mut r = registry.ranker("p");
    r.set_catalog(&std::sync::Arc::new(canary_catalog()));
    let v = r.rank(&canary_rank_input());
    assert_eq!(v.fallback, None);
    assert_eq!(v.value.scores[0], 42.5);
    // Settings survive re-instantiation after a failure (they are re-sent like the catalog).
    let mut trap = canary_rank_input();
    trap.node_pool = "trap".into();
    assert_eq!(r.rank(&trap).fallback.unwrap().kind, FallbackKind::Trap);
    assert_eq!(r.rank(&canary_rank_input()).value.scores[0], 42.5);

    // Bad settings: refused with the policy's own message; the previous policy and settings serve on.
    let err = registry
        .install_with_settings(
            "p",
            PolicyKind::Ranker,
            wasm(),
            r#"{"refuse":"max_premium must be below 100"}"#,
        )
        .unwrap_err();
    match &err {
        PolicyError::Settings { policy, message } => {
            assert_eq!(message, "max_premium must be below 100");
            assert!(policy.starts_with("misbehaving@"), "{policy}");
        }
        other => panic!("expected a settings error, got {other}"),
    }
    assert_eq!(registry.current("p", PolicyKind::Ranker), label);
    assert_eq!(r.rank(&canary_rank_input()).value.scores[0], 42.5);
    assert_eq!(registry.metrics("p", PolicyKind::Ranker).rejected_swaps, 1);

    // Missing settings: the policy gets `null` (here: its own default behaviour, a call counter).
    registry
        .install("p", PolicyKind::Ranker, wasm())
        .expect("no settings is fine for this policy");
    assert_eq!(r.rank(&canary_rank_input()).value.scores[0], 1.0);

    // The defaults take none: settings meant for another policy are refused, natively and in wasm.
    for source in [PolicySource::Native, PolicySource::EmbeddedDefault] {
        let err = registry
            .install_with_settings("p", PolicyKind::Budgeter, source, r#"{"freezes":[]}"#)
            .unwrap_err();
        assert!(
            matches!(&err, PolicyError::Settings { message, .. } if message.contains("takes no settings")),
            "{err}"
        );
    }
}

#[test]
fn reasons_reach_the_verdict_and_the_explanation_and_are_bounded() {
    let limits = Limits::default();
    let compiled = prepare_wasm(
        PolicyEngine::shared(),
        PolicyKind::Ranker,
        MISBEHAVING,
        None,
        &limits,
    )
    .unwrap();
    let metrics = Arc::new(PolicyMetrics::default());
    let mut r = WasmRanker::new(compiled, limits, metrics.clone());
    r.set_catalog(&std::sync::Arc::new(canary_catalog()));
    let with = |pool: &str| rank::RankInput {
        node_pool: pool.into(),
        ..canary_rank_input()
    };
    let v = r.rank(&with("reasons"));
    assert_eq!(v.fallback, None);
    assert_eq!(
        v.reasons,
        vec!["offering 0", "offering 1", "offering 2", "offering 3"]
    );
    // The planner prints `decided_by`: the first offering's reason is in it.
    assert!(v.decided_by.ends_with(": offering 0"), "{}", v.decided_by);

    // 201 bytes: an invalid answer, the default answers, counted.
    let v = r.rank(&with("longreason"));
    let f = v.fallback.expect("an over-long reason is refused");
    assert_eq!(f.kind, FallbackKind::InvalidAnswer);
    assert!(f.detail.contains("201 bytes"), "{}", f.detail);
    assert_eq!(
        v.value,
        NativeRanker::answer(Some(&canary_catalog()), &with("x")).value
    );
    assert!(v.reasons.is_empty());
    // A reason for the first of four entries only: a ranking may stop after its first reasons.
    let v = r.rank(&with("fewreasons"));
    assert_eq!(v.fallback, None);
    assert_eq!(v.reasons, vec!["only one"]);
    assert!(v.decided_by.ends_with(": only one"), "{}", v.decided_by);
    // Five reasons for four entries: invalid too.
    let f = r.rank(&with("manyreasons")).fallback.unwrap();
    assert_eq!(f.kind, FallbackKind::InvalidAnswer);
    assert!(f.detail.contains("5 reasons for 4 entries"), "{}", f.detail);
    assert_eq!(
        metrics.snapshot().fallbacks_of(FallbackKind::InvalidAnswer),
        2
    );
}
