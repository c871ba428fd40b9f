//! Go-style durations (`30s`, `1h30m`, `720h`, `Never`), as Karpenter users write them.

use std::fmt;

/// A duration, or `Never` (Karpenter's way to disable expiry or consolidation delay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Duration {
    /// A finite span.
    Finite(std::time::Duration),
    /// Disabled.
    Never,
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not `<number><unit>`... or `Never`.
    #[error("malformed duration `{0}`")]
    Malformed(String),
    /// A unit Go does not accept.
    #[error("unknown duration unit `{unit}` in `{text}`")]
    UnknownUnit { text: String, unit: String },
    /// A leading minus.
    #[error("negative duration `{0}`")]
    Negative(String),
    /// More than u64 nanoseconds.
    #[error("duration `{0}` is too large")]
    Overflow(String),
}

impl DurationError {
    /// A hint to show under the diagnostic.
    pub fn help(&self) -> &'static str {
        "write a Go duration such as 30s, 15m, 1h30m or 720h, or Never; units are ns, us, ms, s, m, h"
    }
}

impl Duration {
    /// Parses Go's `time.ParseDuration` syntax, plus `Never`. Negative values are rejected.
    pub fn parse(text: &str) -> Result<Duration, DurationError> {
        let s = text.trim();
        if s == "Never" {
            return Ok(Duration::Never);
        }
        if s.starts_with('-') {
            return Err(DurationError::Negative(text.to_string()));
        }
        let s = s.strip_prefix('+').unwrap_or(s);
        if s == "0" {
            return Ok(Duration::Finite(std::time::Duration::ZERO));
        }
        if s.is_empty() {
            return Err(DurationError::Malformed(text.to_string()));
        }
        let mut total: u128 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let num_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let num = &rest[..num_end];
            if num.is_empty() || num == "." || num.matches('.').count() > 1 {
                return Err(DurationError::Malformed(text.to_string()));
            }
            rest = &rest[num_end..];
            let unit_end = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let unit = &rest[..unit_end];
            rest = &rest[unit_end..];
            let nanos_per: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                "" => return Err(DurationError::Malformed(text.to_string())),
                other => {
                    return Err(DurationError::UnknownUnit {
                        text: text.to_string(),
                        unit: other.to_string(),
                    });
                }
            };
            let (int, frac) = num.split_once('.').unwrap_or((num, ""));
            let overflow = || DurationError::Overflow(text.to_string());
            let int: u128 = if int.is_empty() {
                0
            } else {
                int.parse().map_err(|_| overflow())?
            };
            let mut part = int.checked_mul(nanos_per).ok_or_else(overflow)?;
            if !frac.is_empty() {
                let digits = frac.len().min(18) as u32;
                let f: u128 = frac[..digits as usize].parse().map_err(|_| overflow())?;
                part += f * nanos_per / 10u128.pow(digits);
            }
            total = total.checked_add(part).ok_or_else(overflow)?;
        }
        if total > u64::MAX as u128 {
            return Err(DurationError::Overflow(text.to_string()));
        }
        Ok(Duration::Finite(std::time::Duration::from_nanos(
            total as u64,
        )))
    }

    /// The span, or None for `Never`.
    pub fn as_std(&self) -> Option<std::time::Duration> {
        match self {
            Duration::Finite(d) => Some(*d),
            Duration::Never => None,
        }
    }
}

impl fmt::Display for Duration {
    /// Go's canonical form (`1h30m0s` is printed as `1h30m`, for readability).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = match self {
            Duration::Never => return write!(f, "Never"),
            Duration::Finite(d) => *d,
        };
        let nanos = d.as_nanos();
        if nanos == 0 {
            return write!(f, "0s");
        }
        if nanos % 1_000_000_000 != 0 {
            if nanos % 1_000_000 == 0 {
                return write!(f, "{}ms", nanos / 1_000_000);
            }
            return write!(f, "{nanos}ns");
        }
        let secs = d.as_secs();
        let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl serde::Serialize for Duration {
    /// As Go duration text (`720h`, `Never`).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Duration::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as Std;

    #[test]
    fn parses_go_durations() {
        assert_eq!(
            Duration::parse("30s").unwrap(),
            Duration::Finite(Std::from_secs(30))
        );
        assert_eq!(
            Duration::parse("720h").unwrap(),
            Duration::Finite(Std::from_secs(720 * 3600))
        );
        assert_eq!(
            Duration::parse("1h30m").unwrap(),
            Duration::Finite(Std::from_secs(5400))
        );
        assert_eq!(
            Duration::parse("1.5h").unwrap(),
            Duration::Finite(Std::from_secs(5400))
        );
        assert_eq!(Duration::parse("Never").unwrap(), Duration::Never);
        assert_eq!(Duration::parse("0").unwrap(), Duration::Finite(Std::ZERO));
        assert_eq!(
            Duration::parse("100ms").unwrap(),
            Duration::Finite(Std::from_millis(100))
        );
    }

    #[test]
    fn rejects_bad_durations() {
        assert!(matches!(
            Duration::parse("-5m"),
            Err(DurationError::Negative(_))
        ));
        assert!(matches!(
            Duration::parse("5"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            Duration::parse("5d"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            Duration::parse(""),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            Duration::parse("never"),
            Err(DurationError::UnknownUnit { .. }) | Err(DurationError::Malformed(_))
        ));
    }

    #[test]
    fn round_trips_display() {
        for s in ["30s", "720h", "1h30m", "Never", "100ms", "0s"] {
            assert_eq!(Duration::parse(s).unwrap().to_string(), s);
        }
    }
}
