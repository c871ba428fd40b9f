//! Kubernetes quantities (`100m`, `4Gi`, `1.5`, `2e3`), parsed exactly.
//!
//! Values are kept as an integer number of milli-units so that `0.1` CPU and
//! `100m` compare equal and nothing is lost to floating point.

use std::fmt;

/// A parsed Kubernetes quantity, exact to one milli-unit (rounded up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity {
    milli: i128,
}

/// Why a quantity string was rejected; the policy and import layers attach a span.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Empty text.
    #[error("empty quantity")]
    Empty,
    /// Not of the form `<number><suffix>`.
    #[error("malformed quantity `{0}`")]
    Malformed(String),
    /// A suffix Kubernetes does not know.
    #[error("unknown quantity suffix `{suffix}` in `{text}`")]
    UnknownSuffix { text: String, suffix: String },
    /// Too large to represent.
    #[error("quantity `{0}` is too large")]
    Overflow(String),
}

impl QuantityError {
    /// A hint to show under the diagnostic.
    pub fn help(&self) -> &'static str {
        match self {
            QuantityError::UnknownSuffix { .. } => {
                "binary suffixes are Ki, Mi, Gi, Ti, Pi, Ei; decimal ones are n, u, m, k, M, G, T, P, E"
            }
            _ => "write a Kubernetes quantity such as 100m, 1.5, 4Gi, 512Mi or 2e3",
        }
    }
}

impl Quantity {
    /// A quantity of `n` whole units.
    pub const fn from_units(n: i64) -> Self {
        Quantity {
            milli: n as i128 * 1000,
        }
    }

    /// A quantity of `n` milli-units.
    pub const fn from_milli(n: i64) -> Self {
        Quantity { milli: n as i128 }
    }

    /// Parses Kubernetes quantity syntax.
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let s = text.trim();
        if s.is_empty() {
            return Err(QuantityError::Empty);
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        let negative = match bytes[0] {
            b'-' => {
                i += 1;
                true
            }
            b'+' => {
                i += 1;
                false
            }
            _ => false,
        };
        let mut mantissa: i128 = 0;
        let mut scale: u32 = 0; // digits after the decimal point
        let mut digits = 0;
        let mut seen_dot = false;
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_digit() {
                mantissa = mantissa
                    .checked_mul(10)
                    .and_then(|m| m.checked_add((b - b'0') as i128))
                    .ok_or_else(|| QuantityError::Overflow(text.to_string()))?;
                digits += 1;
                if seen_dot {
                    scale += 1;
                }
            } else if b == b'.' && !seen_dot {
                seen_dot = true;
            } else {
                break;
            }
            i += 1;
        }
        if digits == 0 {
            return Err(QuantityError::Malformed(text.to_string()));
        }
        let suffix = &s[i..];
        // (numerator, denominator) of the suffix's factor, times 1000 for milli-units.
        let (mul, div, exp10): (i128, i128, i32) = match suffix {
            "" => (1000, 1, 0),
            "n" => (1, 1_000_000, 0),
            "u" => (1, 1000, 0),
            "m" => (1, 1, 0),
            "k" => (1000, 1, 3),
            "M" => (1000, 1, 6),
            "G" => (1000, 1, 9),
            "T" => (1000, 1, 12),
            "P" => (1000, 1, 15),
            "E" => (1000, 1, 18),
            "Ki" => (1000 << 10, 1, 0),
            "Mi" => (1000 << 20, 1, 0),
            "Gi" => (1000 << 30, 1, 0),
            "Ti" => (1000 << 40, 1, 0),
            "Pi" => (1000 << 50, 1, 0),
            "Ei" => (1000 << 60, 1, 0),
            other => {
                if let Some(rest) = other.strip_prefix(['e', 'E']) {
                    let e: i32 = rest
                        .parse()
                        .map_err(|_| QuantityError::Malformed(text.to_string()))?;
                    if !(-30..=30).contains(&e) {
                        return Err(QuantityError::Overflow(text.to_string()));
                    }
                    (1000, 1, e)
                } else {
                    return Err(QuantityError::UnknownSuffix {
                        text: text.to_string(),
                        suffix: other.to_string(),
                    });
                }
            }
        };
        let overflow = || QuantityError::Overflow(text.to_string());
        let mut num = mantissa.checked_mul(mul).ok_or_else(overflow)?;
        let mut den = div.checked_mul(10i128.pow(scale)).ok_or_else(overflow)?;
        if exp10 >= 0 {
            num = num
                .checked_mul(10i128.checked_pow(exp10 as u32).ok_or_else(overflow)?)
                .ok_or_else(overflow)?;
        } else {
            den = den
                .checked_mul(10i128.checked_pow((-exp10) as u32).ok_or_else(overflow)?)
                .ok_or_else(overflow)?;
        }
        // Round up, as Kubernetes does when a value does not fit its scale.
        let mut milli = (num + den - 1) / den;
        if milli > i64::MAX as i128 * 1000 {
            return Err(overflow());
        }
        if negative {
            milli = -milli;
        }
        Ok(Quantity { milli })
    }

    /// Milli-units (CPU millicores), saturating at i64 bounds.
    pub fn milli(&self) -> i64 {
        self.milli.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    /// Whole units, rounded up (bytes for memory, count for pods and GPUs).
    pub fn units_ceil(&self) -> i64 {
        let u = if self.milli >= 0 {
            (self.milli + 999) / 1000
        } else {
            self.milli / 1000
        };
        u.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    /// The value as a float, in whole units.
    pub fn as_f64(&self) -> f64 {
        self.milli as f64 / 1000.0
    }

    /// True when below zero; limits and requests reject these.
    pub fn is_negative(&self) -> bool {
        self.milli < 0
    }
}

impl fmt::Display for Quantity {
    /// Canonical text: whole units where exact, binary suffixes for whole
    /// multiples of Ki/Mi/Gi, else milli-units.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.milli;
        if m % 1000 != 0 {
            return write!(f, "{m}m");
        }
        let u = m / 1000;
        for (shift, sfx) in [(40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")] {
            let unit = 1i128 << shift;
            if u != 0 && u % unit == 0 && u.abs() >= unit {
                return write!(f, "{}{}", u / unit, sfx);
            }
        }
        write!(f, "{u}")
    }
}

impl serde::Serialize for Quantity {
    /// As canonical Kubernetes text, so JSON output reads like a manifest.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Quantity::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_forms() {
        assert_eq!(Quantity::parse("100m").unwrap().milli(), 100);
        assert_eq!(Quantity::parse("0.1").unwrap().milli(), 100);
        assert_eq!(Quantity::parse("1.5").unwrap().milli(), 1500);
        assert_eq!(Quantity::parse("4Gi").unwrap().units_ceil(), 4 << 30);
        assert_eq!(Quantity::parse("2e3").unwrap().units_ceil(), 2000);
        assert_eq!(Quantity::parse("1k").unwrap().units_ceil(), 1000);
        assert_eq!(
            Quantity::parse("128974848").unwrap().units_ceil(),
            128974848
        );
        assert_eq!(Quantity::parse("129e6").unwrap().units_ceil(), 129_000_000);
        assert_eq!(Quantity::parse("123Mi").unwrap().units_ceil(), 123 << 20);
        assert_eq!(Quantity::parse("-1").unwrap().milli(), -1000);
        assert!(Quantity::parse("-1").unwrap().is_negative());
        assert_eq!(Quantity::parse("1n").unwrap().milli(), 1, "rounds up");
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(Quantity::parse(""), Err(QuantityError::Empty));
        assert!(matches!(
            Quantity::parse("abc"),
            Err(QuantityError::Malformed(_))
        ));
        assert!(matches!(
            Quantity::parse("4GB"),
            Err(QuantityError::UnknownSuffix { .. })
        ));
        assert!(matches!(
            Quantity::parse("1e99"),
            Err(QuantityError::Overflow(_))
        ));
        assert!(matches!(
            Quantity::parse("99999999999999999999999999999Ei"),
            Err(QuantityError::Overflow(_))
        ));
    }

    #[test]
    fn displays_canonically() {
        assert_eq!(Quantity::parse("4Gi").unwrap().to_string(), "4Gi");
        assert_eq!(Quantity::parse("0.5").unwrap().to_string(), "500m");
        assert_eq!(Quantity::parse("1000").unwrap().to_string(), "1000");
        assert_eq!(Quantity::parse("1024").unwrap().to_string(), "1Ki");
    }
}
