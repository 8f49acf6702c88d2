//! Kubernetes resource quantities with exact integer arithmetic.
//!
//! A [`Quantity`] holds an amount in milli-units (`1` = 1000, `500m` = 500, `1Ki` = 1,024,000), the
//! precision Kubernetes itself keeps for CPU. Memory and storage are whole bytes in practice, so
//! milli-bytes in an `i128` never overflow and never round. Parsing follows the apimachinery grammar:
//! `<sign><digits>[.<digits>](<binarySI> | <decimalSI> | <decimalExponent>)`; a value finer than a
//! milli-unit rounds up, as Kubernetes does.

use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity {
    millis: i128,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {input:?}: {reason}")]
pub struct QuantityError {
    pub input: String,
    pub reason: &'static str,
}

impl Quantity {
    pub const ZERO: Quantity = Quantity { millis: 0 };

    pub const fn from_millis(millis: i128) -> Self {
        Quantity { millis }
    }

    pub const fn from_units(units: i64) -> Self {
        Quantity {
            millis: units as i128 * 1000,
        }
    }

    pub const fn millis(self) -> i128 {
        self.millis
    }

    /// Whole units, rounded up (Kubernetes' `Value()`): bytes for memory, cores for CPU.
    pub fn units_ceil(self) -> i128 {
        self.millis.div_euclid(1000) + i128::from(self.millis.rem_euclid(1000) != 0)
    }

    pub fn is_zero(self) -> bool {
        self.millis == 0
    }

    pub fn saturating_sub(self, other: Quantity) -> Quantity {
        Quantity {
            millis: (self.millis - other.millis).max(0),
        }
    }

    pub fn parse(input: &str) -> Result<Self, QuantityError> {
        let err = |reason| QuantityError {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        let (negative, unsigned) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let number_end = unsigned
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(unsigned.len());
        let (number, suffix) = unsigned.split_at(number_end);
        if number.is_empty() || number == "." {
            return Err(err("no digits"));
        }
        let (whole, fraction) = match number.split_once('.') {
            Some((w, f)) => (w, f),
            None => (number, ""),
        };
        if fraction.contains('.') {
            return Err(err("more than one decimal point"));
        }
        // value = digits * 10^(exp10 - fraction.len()) * 2^exp2, in units; we want milli-units.
        let (exp10, exp2): (i32, u32) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            other if other.starts_with(['e', 'E']) => {
                let exponent: i32 = other[1..]
                    .parse()
                    .map_err(|_| err("bad decimal exponent"))?;
                if !(-30..=30).contains(&exponent) {
                    return Err(err("exponent out of range"));
                }
                (exponent, 0)
            }
            _ => return Err(err("unknown suffix")),
        };
        let digits: String = [whole, fraction].concat();
        if digits.len() > 30 {
            return Err(err("too many digits"));
        }
        let mantissa: i128 = digits.parse().map_err(|_| err("bad digits"))?;
        let scale = exp10 + 3 - fraction.len() as i32;
        let scaled = if scale >= 0 {
            10i128
                .checked_pow(scale as u32)
                .and_then(|p| mantissa.checked_mul(p))
        } else {
            let divisor = 10i128.pow((-scale) as u32);
            // Round up to the next milli-unit, as apimachinery does.
            Some(mantissa / divisor + i128::from(mantissa % divisor != 0))
        };
        let millis = scaled
            .and_then(|m| m.checked_mul(1i128 << exp2))
            .filter(|m| *m < (1i128 << 100))
            .ok_or_else(|| err("too large"))?;
        Ok(Quantity {
            millis: if negative { -millis } else { millis },
        })
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl fmt::Display for Quantity {
    /// Canonical-enough form: whole units when exact, milli-units otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis % 1000 == 0 {
            write!(f, "{}", self.millis / 1000)
        } else {
            write!(f, "{}m", self.millis)
        }
    }
}

impl Add for Quantity {
    type Output = Quantity;
    fn add(self, rhs: Quantity) -> Quantity {
        Quantity {
            millis: self.millis + rhs.millis,
        }
    }
}

impl AddAssign for Quantity {
    fn add_assign(&mut self, rhs: Quantity) {
        self.millis += rhs.millis;
    }
}

impl Sub for Quantity {
    type Output = Quantity;
    fn sub(self, rhs: Quantity) -> Quantity {
        Quantity {
            millis: self.millis - rhs.millis,
        }
    }
}

impl SubAssign for Quantity {
    fn sub_assign(&mut self, rhs: Quantity) {
        self.millis -= rhs.millis;
    }
}

impl std::ops::Mul<i64> for Quantity {
    type Output = Quantity;
    fn mul(self, rhs: i64) -> Quantity {
        Quantity {
            millis: self.millis * i128::from(rhs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> i128 {
        Quantity::parse(s).unwrap().millis()
    }

    #[test]
    fn parses_the_kubernetes_grammar() {
        assert_eq!(q("1"), 1000);
        assert_eq!(q("500m"), 500);
        assert_eq!(q("0.5"), 500);
        assert_eq!(q("1.5Gi"), 1536 * 1024 * 1024 * 1000);
        assert_eq!(q("1Ki"), 1_024_000);
        assert_eq!(q("2k"), 2_000_000);
        assert_eq!(q("1e3"), 1_000_000);
        assert_eq!(q("1E-3"), 1);
        assert_eq!(q("-2"), -2000);
        assert_eq!(q("+3m"), 3);
        assert_eq!(q("100Mi"), 104_857_600_000);
        assert_eq!(q("17Gi"), 17 * (1i128 << 30) * 1000);
    }

    #[test]
    fn rounds_sub_milli_values_up() {
        assert_eq!(q("1n"), 1);
        assert_eq!(q("0.0001"), 1);
        assert_eq!(q("1500u"), 2);
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in [
            "", "m", "1.2.3", "1Gb", "1 Gi", "abc", "1e", "1e99", ".", "--1",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn arithmetic_is_exact() {
        let total = Quantity::parse("100m").unwrap() * 10;
        assert_eq!(total, Quantity::from_units(1));
        assert_eq!(
            Quantity::parse("1Gi").unwrap().units_ceil(),
            1024 * 1024 * 1024
        );
        assert_eq!(Quantity::parse("1m").unwrap().units_ceil(), 1);
    }
}
