//! Disruption budget values: the `nodes` count-or-percent and the cron `schedule` window.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use crate::clock::Millis;

/// A budget's `nodes`: how many nodes of a NodePool may be disrupted at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetNodes {
    /// `"5"`: an absolute number of nodes.
    Count(u32),
    /// `"10%"`: a percentage (0..=100) of the NodePool's nodes, rounded up.
    Percent(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid budget nodes {input:?}: {reason}")]
pub struct BudgetNodesError {
    pub input: String,
    pub reason: &'static str,
}

impl BudgetNodes {
    /// Parses Karpenter's `^((100|[0-9]{1,2})%|[0-9]+)$`.
    pub fn parse(input: &str) -> Result<Self, BudgetNodesError> {
        let err = |reason| BudgetNodesError {
            input: input.to_string(),
            reason,
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if let Some(number) = input.strip_suffix('%') {
            if !all_digits(number) {
                return Err(err(
                    "expected a whole number of nodes (\"5\") or a percentage (\"10%\")",
                ));
            }
            match number.parse::<u32>() {
                Ok(p) if p <= 100 && number.len() <= 3 => Ok(BudgetNodes::Percent(p)),
                _ => Err(err("a percentage must be between 0% and 100%")),
            }
        } else if all_digits(input) {
            input
                .parse()
                .map(BudgetNodes::Count)
                .map_err(|_| err("count too large"))
        } else {
            Err(err(
                "expected a whole number of nodes (\"5\") or a percentage (\"10%\")",
            ))
        }
    }

    /// How many of `total_nodes` may be disrupted: a percentage rounds up, as Kubernetes does for a
    /// PDB's maxUnavailable (5% of 10 nodes allows 1, rather than blocking the pool).
    pub fn allowed(self, total_nodes: u32) -> u32 {
        match self {
            BudgetNodes::Count(n) => n,
            BudgetNodes::Percent(p) => (u64::from(total_nodes) * u64::from(p)).div_ceil(100) as u32,
        }
    }
}

impl fmt::Display for BudgetNodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BudgetNodes::Count(n) => write!(f, "{n}"),
            BudgetNodes::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// A budget's cron `schedule`, always in UTC: 5 fields (minute hour day-of-month month day-of-week)
/// or one of `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`.
#[derive(Debug, Clone)]
pub struct BudgetSchedule {
    source: String,
    cron: Cron,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron schedule {input:?}: {reason}")]
pub struct ScheduleError {
    pub input: String,
    pub reason: String,
}

impl BudgetSchedule {
    pub fn parse(input: &str) -> Result<Self, ScheduleError> {
        let err = |reason: String| ScheduleError {
            input: input.to_string(),
            reason,
        };
        let trimmed = input.trim();
        // Karpenter (robfig/cron) knows @midnight; croner does not, and they mean the same.
        let pattern = if trimmed.eq_ignore_ascii_case("@midnight") {
            "@daily"
        } else {
            trimmed
        };
        if pattern.starts_with('@') {
            const MACROS: [&str; 6] = [
                "@yearly",
                "@annually",
                "@monthly",
                "@weekly",
                "@daily",
                "@hourly",
            ];
            if !MACROS.iter().any(|m| m.eq_ignore_ascii_case(pattern)) {
                return Err(err(
                    "unknown macro (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)"
                        .to_string(),
                ));
            }
        } else if pattern.split_whitespace().count() != 5 {
            return Err(err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), got {}",
                pattern.split_whitespace().count()
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(pattern)
            .map_err(|e| err(e.to_string()))?;
        Ok(BudgetSchedule {
            source: input.to_string(),
            cron,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether a window opened by this schedule and lasting `duration` covers `now`: Karpenter's rule
    /// is that the schedule fired in `(now - duration, now]`.
    pub fn is_active_at(&self, now: DateTime<Utc>, duration: Duration) -> bool {
        let Ok(window) = chrono::Duration::from_std(duration) else {
            return true; // a window longer than chrono can represent covers every instant
        };
        let Some(check_point) = now.checked_sub_signed(window) else {
            return true;
        };
        match self.cron.find_next_occurrence(&check_point, false) {
            Ok(next) => next <= now,
            Err(_) => false,
        }
    }

    /// [`is_active_at`](Self::is_active_at) for the core's clock unit (milliseconds since the epoch).
    pub fn is_active_at_millis(&self, now: Millis, duration: Duration) -> bool {
        match Utc.timestamp_millis_opt(now).single() {
            Some(now) => self.is_active_at(now, duration),
            None => false,
        }
    }
}

impl PartialEq for BudgetSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for BudgetSchedule {}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn parses_nodes() {
        assert_eq!(BudgetNodes::parse("10%"), Ok(BudgetNodes::Percent(10)));
        assert_eq!(BudgetNodes::parse("0%"), Ok(BudgetNodes::Percent(0)));
        assert_eq!(BudgetNodes::parse("100%"), Ok(BudgetNodes::Percent(100)));
        assert_eq!(BudgetNodes::parse("0"), Ok(BudgetNodes::Count(0)));
        assert_eq!(BudgetNodes::parse("25"), Ok(BudgetNodes::Count(25)));
        for bad in ["", "%", "101%", "1000%", "-1", "5 %", "ten", "1.5", "10%%"] {
            assert!(BudgetNodes::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn percent_rounds_up() {
        assert_eq!(BudgetNodes::Percent(10).allowed(10), 1);
        assert_eq!(BudgetNodes::Percent(5).allowed(10), 1);
        assert_eq!(BudgetNodes::Percent(10).allowed(0), 0);
        assert_eq!(BudgetNodes::Percent(100).allowed(7), 7);
        assert_eq!(BudgetNodes::Percent(0).allowed(7), 0);
        assert_eq!(BudgetNodes::Count(3).allowed(1), 3);
        assert_eq!(BudgetNodes::Percent(10).to_string(), "10%");
    }

    #[test]
    fn schedule_syntax() {
        for ok in [
            "0 9 * * mon-fri",
            "@daily",
            "@midnight",
            "@hourly",
            "*/15 * * * *",
            "0 0 1 1 *",
        ] {
            BudgetSchedule::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "0 9 * *",
            "0 0 9 * * *",
            "61 * * * *",
            "@every 5m",
            "@sometimes",
            "x y z a b",
        ] {
            assert!(BudgetSchedule::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn window_covers_schedule_plus_duration() {
        // Weekdays 09:00 UTC for 8 hours.
        let s = BudgetSchedule::parse("0 9 * * mon-fri").unwrap();
        let eight_hours = Duration::from_secs(8 * 3600);
        // 2024-06-03 is a Monday.
        assert!(!s.is_active_at(at("2024-06-03T08:59:59Z"), eight_hours));
        assert!(s.is_active_at(at("2024-06-03T09:00:00Z"), eight_hours));
        assert!(s.is_active_at(at("2024-06-03T16:59:59Z"), eight_hours));
        assert!(!s.is_active_at(at("2024-06-03T17:00:00Z"), eight_hours));
        // Saturday: no window.
        assert!(!s.is_active_at(at("2024-06-08T12:00:00Z"), eight_hours));
        // A window that crosses midnight.
        let nightly = BudgetSchedule::parse("0 22 * * *").unwrap();
        assert!(nightly.is_active_at(at("2024-06-04T01:00:00Z"), Duration::from_secs(4 * 3600)));
        assert!(!nightly.is_active_at(at("2024-06-04T02:00:00Z"), Duration::from_secs(4 * 3600)));
        let millis = at("2024-06-03T10:00:00Z").timestamp_millis();
        assert!(s.is_active_at_millis(millis, eight_hours));
    }
}
