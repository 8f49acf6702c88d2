//! Example Kestrel budgeter: closes voluntary disruption during the change freezes given in its settings
//! (annotation `kestrel.dev/budgeter-settings`), and otherwise leaves the NodePool's own budgets as they
//! are (the host clamps every answer to them, so a budgeter can only tighten).
//!
//! ```yaml
//! freezes:
//!   - { name: black-friday, start: "2026-11-27T00:00:00Z", end: "2026-12-01T00:00:00Z" }
//!   - { name: release, start: "2026-12-10T18:00:00Z", end: "2026-12-10T22:00:00Z", reasons: [Underutilized] }
//! ```
//!
//! A freeze without `reasons` closes every reason; `Drifted` may be left open by listing only the others.
use kestrel_policy_sdk::budgeter::{Allowance, BudgetInput, DisruptionReason, Guest, PolicyInfo, ReasonCount};
use std::sync::Mutex;

const ALL: [DisruptionReason; 3] = [
    DisruptionReason::Empty,
    DisruptionReason::Underutilized,
    DisruptionReason::Drifted,
];

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Freeze {
    pub name: String,
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub start: String,
    pub end: String,
    /// Reasons closed (`Empty`, `Underutilized`, `Drifted`); empty = all.
    #[serde(default)]
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub freezes: Vec<Freeze>,
}

/// A freeze, checked: its window in Unix seconds and the reasons it closes.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub name: String,
    pub start: i64,
    pub end: i64,
    pub reasons: Vec<DisruptionReason>,
}

/// `YYYY-MM-DDTHH:MM:SSZ` → Unix seconds (UTC only: a freeze is a fact about the calendar, and a
/// timezone offset is the classic way to get it wrong by hours).
pub fn parse_utc(t: &str) -> Result<i64, String> {
    let bad = || format!("{t:?}: expected UTC time YYYY-MM-DDTHH:MM:SSZ");
    let b = t.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| t[r].parse::<i64>().map_err(|_| bad());
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 59 {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

fn reason(name: &str) -> Result<DisruptionReason, String> {
    match name {
        "Empty" => Ok(DisruptionReason::Empty),
        "Underutilized" => Ok(DisruptionReason::Underutilized),
        "Drifted" => Ok(DisruptionReason::Drifted),
        other => Err(format!("unknown reason {other:?} (Empty, Underutilized or Drifted)")),
    }
}

/// Parses and checks settings (JSON text, `null` for none: no freezes).
pub fn settings(json: &str) -> Result<Vec<Window>, String> {
    let s: Settings = kestrel_policy_sdk::settings::parse(json)?;
    s.freezes
        .iter()
        .map(|f| {
            let (start, end) = (parse_utc(&f.start)?, parse_utc(&f.end)?);
            if end <= start {
                return Err(format!("freeze {:?} ends before it starts", f.name));
            }
            let reasons = if f.reasons.is_empty() {
                ALL.to_vec()
            } else {
                f.reasons.iter().map(|r| reason(r)).collect::<Result<_, _>>()?
            };
            Ok(Window { name: f.name.clone(), start, end, reasons })
        })
        .collect()
}

/// Zero for every reason a freeze in force closes; the rest as many as there are candidates (the host
/// clamps to the NodePool's own budgets).
pub fn allowed(windows: &[Window], input: &BudgetInput) -> Allowance {
    let mut out = Allowance { counts: vec![], reasons: vec![] };
    for r in ALL {
        let freeze = windows
            .iter()
            .find(|w| w.start <= input.now && input.now < w.end && w.reasons.contains(&r));
        let (count, why) = match freeze {
            Some(w) => (0, format!("change freeze {:?} until {}s", w.name, w.end)),
            None => (u32::MAX, "no change freeze in force".to_string()),
        };
        out.counts.push(ReasonCount { reason: r, count });
        out.reasons.push(kestrel_policy_sdk::reason(&why));
    }
    out
}

static WINDOWS: Mutex<Vec<Window>> = Mutex::new(Vec::new());

pub struct ChangeFreeze;

impl Guest for ChangeFreeze {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "change-freeze".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            contract: kestrel_policy_sdk::CONTRACT.into(),
        }
    }
    fn validate_settings(json: String) -> Result<(), String> {
        *WINDOWS.lock().unwrap() = settings(&json)?;
        Ok(())
    }
    fn allowed(input: BudgetInput) -> Result<Allowance, String> {
        Ok(allowed(&WINDOWS.lock().unwrap(), &input))
    }
}

#[cfg(target_arch = "wasm32")]
kestrel_policy_sdk::budgeter::export_budgeter!(ChangeFreeze);

#[cfg(test)]
mod tests {
    use super::*;

    fn input(now: i64) -> BudgetInput {
        BudgetInput { node_pool: "default".into(), now, budgets: vec![], total_nodes: 10, disrupting: 0, candidates: vec![] }
    }

    #[test]
    fn utc_times_parse() {
        assert_eq!(parse_utc("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_utc("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000);
        assert!(parse_utc("2023-11-14T22:13:20+01:00").is_err());
        assert!(parse_utc("2023-13-14T22:13:20Z").is_err());
    }

    #[test]
    fn a_freeze_closes_its_reasons_only_while_in_force() {
        let w = settings(r#"{"freezes": [{"name": "release", "start": "2023-11-14T22:00:00Z", "end": "2023-11-14T23:00:00Z", "reasons": ["Underutilized"]}]}"#).unwrap();
        let during = allowed(&w, &input(1_700_000_000));
        assert_eq!(during.counts.iter().map(|c| c.count).collect::<Vec<_>>(), vec![u32::MAX, 0, u32::MAX]);
        assert!(during.reasons[1].contains("release"), "{:?}", during.reasons);
        let after = allowed(&w, &input(1_700_000_000 + 3600));
        assert!(after.counts.iter().all(|c| c.count == u32::MAX));
    }

    #[test]
    fn settings_good_bad_and_missing() {
        assert_eq!(settings("null").unwrap(), vec![]);
        assert!(settings(r#"{"freezes": [{"name": "x", "start": "2023-11-14T23:00:00Z", "end": "2023-11-14T22:00:00Z"}]}"#).unwrap_err().contains("ends before it starts"));
        assert!(settings(r#"{"freezes": [{"name": "x", "start": "2023-11-14T22:00:00Z", "end": "2023-11-14T23:00:00Z", "reasons": ["Expired"]}]}"#).unwrap_err().contains("unknown reason"));
        assert!(settings(r#"{"freeze": []}"#).unwrap_err().contains("unknown field"));
    }
}
