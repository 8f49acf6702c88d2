//! Karpenter durations: Go `time.ParseDuration` syntax (`720h`, `1h30m`, `1.5h`, `300ms`) or `Never`.
//!
//! Karpenter's CRDs accept a stricter shape than Go does (whole numbers of `s`, `m` and `h`); the API
//! server enforces it with a pattern, so [`check_karpenter_duration`] applies the same rule for
//! `kestrel validate`, while [`parse_duration`] reads anything Go would.

use std::time::Duration;

/// The literal that means "no duration": never expire, never consolidate.
pub const NEVER: &str = "Never";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

/// Parses a Karpenter nillable duration: `Never` is `None`, anything else a Go duration.
pub fn parse_nillable_duration(input: &str) -> Result<Option<Duration>, DurationError> {
    if input == NEVER {
        Ok(None)
    } else {
        parse_duration(input).map(Some)
    }
}

/// Parses a Go duration (`time.ParseDuration`): a sequence of decimal numbers with a unit suffix
/// (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), or a bare `0`. Negative durations are rejected: none of
/// Karpenter's fields means anything by them.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    let mut rest = input;
    if let Some(stripped) = rest.strip_prefix('+') {
        rest = stripped;
    } else if rest.starts_with('-') {
        return Err(err("negative durations are not allowed"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(err("empty"));
    }
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return Err(err("expected a number"));
        }
        if fraction.contains('.') {
            return Err(err("more than one decimal point"));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "" => return Err(err("missing unit (one of ns, us, ms, s, m, h)")),
            _ => return Err(err("unknown unit (expected one of ns, us, ms, s, m, h)")),
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| err("number too large"))?
        };
        let mut nanos = whole
            .checked_mul(unit_nanos)
            .ok_or_else(|| err("number too large"))?;
        // The fraction is scaled exactly, digit by digit, as Go does (rounding down below 1ns).
        let mut scale = unit_nanos;
        for digit in fraction.bytes() {
            scale /= 10;
            nanos += u128::from(digit - b'0') * scale;
        }
        total_nanos = total_nanos
            .checked_add(nanos)
            .ok_or_else(|| err("number too large"))?;
        rest = next;
    }
    // Go durations are an int64 of nanoseconds.
    if total_nanos > i64::MAX as u128 {
        return Err(err("number too large"));
    }
    Ok(Duration::from_nanos(total_nanos as u64))
}

/// Formats a duration as Go's `Duration.String` would for whole seconds (`720h0m0s` style is avoided:
/// the shortest `XhYmZs` form, `0s` for zero), which Karpenter accepts back.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs == 0 && duration.subsec_nanos() == 0 {
        return "0s".to_string();
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    let nanos = duration.subsec_nanos();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out += &format!("{s}.{}s", frac.trim_end_matches('0'));
    } else if s > 0 {
        out += &format!("{s}s");
    }
    out
}

/// Which durations a Karpenter CRD field accepts (its OpenAPI pattern), on top of Go's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationShape {
    /// `expireAfter`, `consolidateAfter`: `^(([0-9]+(s|m|h))+|Never)$`.
    SecondsMinutesHoursOrNever,
    /// `terminationGracePeriod`, kubelet grace periods: `^([0-9]+(s|m|h))+$`.
    SecondsMinutesHours,
    /// Disruption budget `duration`: `^((([0-9]+(h|m))|([0-9]+h[0-9]+m))(0s)?)$`.
    HoursMinutes,
}

/// Checks `input` against the field's CRD shape, then parses it. `None` means `Never`.
pub fn check_karpenter_duration(
    input: &str,
    shape: DurationShape,
) -> Result<Option<Duration>, DurationError> {
    let err = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    if input == NEVER {
        return match shape {
            DurationShape::SecondsMinutesHoursOrNever => Ok(None),
            _ => Err(err("\"Never\" is not allowed here")),
        };
    }
    let units = integer_unit_groups(input).ok_or_else(|| err(shape_reason(shape)))?;
    let fits = match shape {
        DurationShape::SecondsMinutesHoursOrNever | DurationShape::SecondsMinutesHours => {
            units.iter().all(|u| matches!(u, 's' | 'm' | 'h'))
        }
        DurationShape::HoursMinutes => {
            let units: String = units.iter().collect();
            let core = units.strip_suffix('s').unwrap_or(&units);
            // A trailing seconds group is only tolerated as `0s` (Go's `8h0m0s` spelling).
            let zero_seconds_ok =
                units.len() == core.len() || input.ends_with("m0s") || input.ends_with("h0s");
            matches!(core, "h" | "m" | "hm") && zero_seconds_ok
        }
    };
    if !fits {
        return Err(err(shape_reason(shape)));
    }
    parse_duration(input).map(Some)
}

fn shape_reason(shape: DurationShape) -> &'static str {
    match shape {
        DurationShape::SecondsMinutesHoursOrNever => {
            "expected whole numbers of s, m or h (e.g. 720h, 1h30m, 30s) or \"Never\""
        }
        DurationShape::SecondsMinutesHours => {
            "expected whole numbers of s, m or h (e.g. 48h, 1h30m, 30s)"
        }
        DurationShape::HoursMinutes => "expected whole hours and/or minutes (e.g. 8h, 30m, 1h30m)",
    }
}

/// `"1h30m"` -> `['h', 'm']`; `None` unless the input is a non-empty run of `<digits><one letter>`.
fn integer_unit_groups(input: &str) -> Option<Vec<char>> {
    let mut units = Vec::new();
    let mut chars = input.chars().peekable();
    while chars.peek().is_some() {
        let mut digits = 0;
        while chars.peek().is_some_and(|c| c.is_ascii_digit()) {
            chars.next();
            digits += 1;
        }
        let unit = chars.next()?;
        if digits == 0 || !unit.is_ascii_alphabetic() {
            return None;
        }
        units.push(unit);
    }
    (!units.is_empty()).then_some(units)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("720h"), Ok(d(720 * 3600)));
        assert_eq!(parse_duration("1h30m"), Ok(d(5400)));
        assert_eq!(parse_duration("30s"), Ok(d(30)));
        assert_eq!(parse_duration("0s"), Ok(d(0)));
        assert_eq!(parse_duration("0"), Ok(d(0)));
        assert_eq!(parse_duration("1.5h"), Ok(d(5400)));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("1h0m0s"), Ok(d(3600)));
        assert_eq!(parse_duration("2us"), Ok(Duration::from_micros(2)));
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in ["", "h", "10", "10x", "1d", "-5m", "1..5h", "abc", "5m x"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_duration("9999999999999h").is_err());
    }

    #[test]
    fn never_is_none() {
        assert_eq!(parse_nillable_duration("Never"), Ok(None));
        assert_eq!(parse_nillable_duration("24h"), Ok(Some(d(86400))));
        assert!(parse_nillable_duration("never").is_err());
    }

    #[test]
    fn karpenter_shapes() {
        use DurationShape::*;
        assert_eq!(
            check_karpenter_duration("Never", SecondsMinutesHoursOrNever),
            Ok(None)
        );
        assert!(check_karpenter_duration("Never", SecondsMinutesHours).is_err());
        assert!(check_karpenter_duration("1.5h", SecondsMinutesHoursOrNever).is_err());
        assert!(check_karpenter_duration("300ms", SecondsMinutesHours).is_err());
        assert_eq!(
            check_karpenter_duration("1h30m", SecondsMinutesHours),
            Ok(Some(d(5400)))
        );
        assert_eq!(
            check_karpenter_duration("8h", HoursMinutes),
            Ok(Some(d(8 * 3600)))
        );
        assert_eq!(
            check_karpenter_duration("1h30m", HoursMinutes),
            Ok(Some(d(5400)))
        );
        assert_eq!(
            check_karpenter_duration("10m0s", HoursMinutes),
            Ok(Some(d(600)))
        );
        assert!(check_karpenter_duration("30s", HoursMinutes).is_err());
        assert!(check_karpenter_duration("1m1h", HoursMinutes).is_err());
    }

    #[test]
    fn formats_round_trip() {
        for s in [0, 30, 60, 5400, 720 * 3600, 3661] {
            let text = format_duration(d(s));
            assert_eq!(parse_duration(&text), Ok(d(s)), "{text}");
        }
        assert_eq!(format_duration(d(720 * 3600)), "720h");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
    }
}
