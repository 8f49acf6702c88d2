//! Example Kestrel consolidator that avoids churn: no move whose saving over the node's expected
//! remaining life is below its disruption cost.
//!
//! The expected remaining life of a node follows the Lindy rule — a node that has lived `t` is expected to
//! live about `lindy_factor × t` more — clamped to `[min_remaining_minutes, max_remaining_hours]`; a move
//! removing several nodes uses the youngest one's. The disruption cost, in USD, is
//! `move_cost_usd + usd_per_pod × pods moved + usd_per_disruption_cost × the pods' disruption cost`
//! (a replacement to launch and warm, caches to refill, requests retried). Drift replacements are
//! always taken (they are about correctness, not money). Moves are taken by net value, best first; moves
//! sharing a node with one already taken are skipped (the host proves each again anyway).
use kestrel_policy_sdk::consolidator::{
    CandidateMove, ChosenMoves, ConsolidateInput, DisruptionReason, Guest, PolicyInfo,
};
use std::sync::Mutex;

/// The settings (annotation `kestrel.dev/consolidator-settings`); every field has a default.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Expected remaining life = this × the node's age.
    pub lindy_factor: f64,
    /// Floor of the expected remaining life.
    pub min_remaining_minutes: f64,
    /// Ceiling of the expected remaining life.
    pub max_remaining_hours: f64,
    /// Fixed cost of any move (USD).
    pub move_cost_usd: f64,
    /// Cost per pod moved (USD).
    pub usd_per_pod: f64,
    /// Cost per unit of Karpenter's disruption cost (deletion cost and priority based).
    pub usd_per_disruption_cost: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lindy_factor: 1.0,
            min_remaining_minutes: 5.0,
            max_remaining_hours: 24.0,
            move_cost_usd: 0.02,
            usd_per_pod: 0.002,
            usd_per_disruption_cost: 0.0,
        }
    }
}

/// Parses and checks settings (JSON text, `null` for none).
pub fn settings(json: &str) -> Result<Settings, String> {
    let s: Settings = kestrel_policy_sdk::settings::parse(json)?;
    let fields = [
        ("lindy_factor", s.lindy_factor),
        ("min_remaining_minutes", s.min_remaining_minutes),
        ("max_remaining_hours", s.max_remaining_hours),
        ("move_cost_usd", s.move_cost_usd),
        ("usd_per_pod", s.usd_per_pod),
        ("usd_per_disruption_cost", s.usd_per_disruption_cost),
    ];
    if let Some((name, v)) = fields.iter().find(|(_, v)| !v.is_finite() || *v < 0.0) {
        return Err(format!("{name} must be a number >= 0, got {v}"));
    }
    if s.min_remaining_minutes / 60.0 > s.max_remaining_hours {
        return Err(format!(
            "min_remaining_minutes ({}) is above max_remaining_hours ({} h)",
            s.min_remaining_minutes, s.max_remaining_hours
        ));
    }
    Ok(s)
}

/// Expected remaining life of the move's youngest node, in hours.
pub fn remaining_hours(s: &Settings, input: &ConsolidateInput, m: &CandidateMove) -> f64 {
    let youngest = m
        .nodes
        .iter()
        .filter_map(|&n| input.nodes.get(n as usize))
        .map(|n| n.age_seconds)
        .min()
        .unwrap_or(0);
    let lindy = s.lindy_factor * youngest as f64 / 3600.0;
    lindy.clamp(s.min_remaining_minutes / 60.0, s.max_remaining_hours)
}

/// The move's disruption cost in USD.
pub fn disruption_usd(s: &Settings, m: &CandidateMove) -> f64 {
    s.move_cost_usd + s.usd_per_pod * f64::from(m.pods_moved) + s.usd_per_disruption_cost * m.disruption_cost
}

pub fn consolidate(s: &Settings, input: &ConsolidateInput) -> Result<ChosenMoves, String> {
    let mut scored: Vec<(f64, u32, String)> = Vec::new();
    for m in &input.moves {
        if m.nodes.iter().any(|&n| n as usize >= input.nodes.len()) {
            return Err(format!("move {} names a node out of range", m.id));
        }
        if m.reason == DisruptionReason::Drifted {
            scored.push((f64::INFINITY, m.id, "drifted: replaced whatever it saves".into()));
            continue;
        }
        let life = remaining_hours(s, input, m);
        let saving = m.savings_per_hour * life;
        let cost = disruption_usd(s, m);
        if saving > cost {
            let why = format!(
                "saves ${saving:.3} over ~{life:.1} h expected life, above its ${cost:.3} disruption cost"
            );
            scored.push((saving - cost, m.id, why));
        }
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut used: Vec<u32> = Vec::new();
    let mut out = ChosenMoves {
        ids: vec![],
        reasons: vec![],
    };
    for (_, id, why) in scored {
        let Some(m) = input.moves.iter().find(|m| m.id == id) else {
            continue;
        };
        if m.nodes.iter().any(|n| used.contains(n)) {
            continue;
        }
        used.extend(&m.nodes);
        out.ids.push(id);
        out.reasons.push(kestrel_policy_sdk::reason(&why));
    }
    Ok(out)
}

static SETTINGS: Mutex<Option<Settings>> = Mutex::new(None);

pub struct PatientConsolidator;

impl Guest for PatientConsolidator {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "patient-consolidator".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            contract: kestrel_policy_sdk::CONTRACT.into(),
        }
    }
    fn validate_settings(json: String) -> Result<(), String> {
        *SETTINGS.lock().unwrap() = Some(settings(&json)?);
        Ok(())
    }
    fn consolidate(input: ConsolidateInput) -> Result<ChosenMoves, String> {
        let s = SETTINGS.lock().unwrap().unwrap_or_default();
        consolidate(&s, &input)
    }
}

#[cfg(target_arch = "wasm32")]
kestrel_policy_sdk::consolidator::export_consolidator!(PatientConsolidator);

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_policy_sdk::consolidator::{MoveKind, NodeInfo};

    fn node(age_minutes: u64) -> NodeInfo {
        NodeInfo {
            instance_type: "m5.large".into(),
            zone: "us-east-1a".into(),
            capacity_type: 0,
            price: 0.096,
            age_seconds: age_minutes * 60,
            cpu_utilization: 0.1,
            memory_utilization: 0.1,
            pods: 2,
        }
    }

    fn delete(id: u32, node: u32, saving: f64, reason: DisruptionReason) -> CandidateMove {
        CandidateMove {
            id,
            kind: MoveKind::Delete,
            reason,
            nodes: vec![node],
            replacement_type: None,
            replacement_price: None,
            savings_per_hour: saving,
            pods_moved: 2,
            disruption_cost: 2.0,
        }
    }

    fn input(ages: &[u64], moves: Vec<CandidateMove>) -> ConsolidateInput {
        ConsolidateInput {
            node_pool: "default".into(),
            now: 0,
            nodes: ages.iter().map(|&a| node(a)).collect(),
            moves,
        }
    }

    #[test]
    fn young_nodes_stay_old_ones_go() {
        let s = Settings::default();
        let i = input(
            &[6, 180],
            vec![
                delete(0, 0, 0.096, DisruptionReason::Underutilized),
                delete(1, 1, 0.096, DisruptionReason::Underutilized),
            ],
        );
        let out = consolidate(&s, &i).unwrap();
        // 6 minutes old: ~6 min more × $0.096/h = $0.0096 < $0.024; 3 h old: $0.29 > $0.024.
        assert_eq!(out.ids, vec![1]);
        assert!(out.reasons[0].contains("expected life"), "{:?}", out.reasons);
    }

    #[test]
    fn drift_is_always_taken_and_overlaps_skipped() {
        let s = Settings::default();
        let mut overlapping = delete(2, 1, 0.05, DisruptionReason::Underutilized);
        overlapping.savings_per_hour = 0.05;
        let i = input(
            &[1, 600],
            vec![
                delete(0, 0, 0.0, DisruptionReason::Drifted),
                delete(1, 1, 0.096, DisruptionReason::Underutilized),
                overlapping,
            ],
        );
        assert_eq!(consolidate(&s, &i).unwrap().ids, vec![0, 1]);
    }

    #[test]
    fn settings_good_bad_and_missing() {
        assert_eq!(settings("null").unwrap(), Settings::default());
        let s = settings(r#"{"move_cost_usd": 0.5}"#).unwrap();
        assert_eq!(s.move_cost_usd, 0.5);
        assert_eq!(s.lindy_factor, 1.0);
        assert!(settings(r#"{"move_cost_usd": -1}"#).unwrap_err().contains("move_cost_usd"));
        assert!(settings(r#"{"lindy": 2}"#).unwrap_err().contains("unknown field"));
        // Through the Guest impl, as the host calls it.
        assert!(PatientConsolidator::validate_settings(r#"{"usd_per_pod": "a"}"#.into()).is_err());
    }
}
