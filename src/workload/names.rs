//! Pod names as Kubernetes controllers would give them, but deterministic.
//!
//! Kubernetes draws random suffixes; plans must be diffable across runs, so
//! every suffix here comes from a SHA-256 of stable inputs (namespace, owner,
//! pod template), encoded in Kubernetes' own name alphabet (no vowels, no
//! look-alike digits), so names look exactly like the real ones.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

/// The alphabet Kubernetes uses for generated names (`utilrand.String`, `SafeEncodeString`).
pub const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize().into()
}

/// `len` characters of the Kubernetes alphabet drawn from a hash of `parts`.
pub fn encode(parts: &[&str], len: usize) -> String {
    let d = digest(parts);
    // Read the digest as a big number, base 27, so every character is uniform enough.
    let mut out = String::with_capacity(len);
    let mut acc: u128 = u128::from_be_bytes(d[..16].try_into().unwrap_or([0; 16]));
    for _ in 0..len.min(26) {
        out.push(ALPHABET[(acc % ALPHABET.len() as u128) as usize] as char);
        acc /= ALPHABET.len() as u128;
    }
    out
}

/// The 10-character pod-template-hash of a Deployment's template (its canonical JSON).
pub fn template_hash(template_json: &str) -> String {
    encode(&["pod-template-hash", template_json], 10)
}

/// The id a CronJob puts in its Jobs' names. Kubernetes uses the scheduled time
/// in minutes since the epoch; a plan has no clock, so this is an 8-digit
/// number derived from the CronJob's name and schedule: stable, and it looks the part.
pub fn cron_id(namespace: &str, name: &str, schedule: &str) -> String {
    let d = digest(&["cronjob", namespace, name, schedule]);
    let n = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % 90_000_000 + 10_000_000;
    n.to_string()
}

/// Hands out unique 5-character suffixes for one name prefix.
///
/// Suffix `i` is a hash of (seed, i); on the rare collision (27^5 ≈ 14M
/// values, so thousands of replicas do collide) it rehashes with a counter,
/// which keeps the result deterministic.
#[derive(Debug, Default)]
pub struct Suffixes {
    used: HashSet<String>,
}

impl Suffixes {
    /// A fresh generator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks a full name as taken (pods already in the input).
    pub fn reserve(&mut self, name: &str) {
        self.used.insert(name.to_string());
    }

    /// `prefix` + a suffix unique among names handed out or reserved.
    pub fn next(&mut self, prefix: &str, seed: &str, i: usize) -> String {
        let idx = i.to_string();
        let mut attempt = 0usize;
        loop {
            let a = attempt.to_string();
            let name = format!("{prefix}{}", encode(&[seed, &idx, &a], 5));
            if self.used.insert(name.clone()) {
                return name;
            }
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn deterministic_and_in_alphabet() {
        let a = template_hash("{\"x\":1}");
        assert_eq!(a, template_hash("{\"x\":1}"));
        assert_ne!(a, template_hash("{\"x\":2}"));
        assert_eq!(a.len(), 10);
        assert!(a.bytes().all(|b| ALPHABET.contains(&b)));
        assert_eq!(cron_id("ns", "c", "*/5 * * * *").len(), 8);
    }

    proptest! {
        #[test]
        fn suffixes_are_unique(n in 1usize..3000, seed in "[a-z]{1,8}") {
            let mut s = Suffixes::new();
            let names: HashSet<String> = (0..n).map(|i| s.next("web-", &seed, i)).collect();
            prop_assert_eq!(names.len(), n);
            prop_assert!(names.iter().all(|x| x.len() == 9 && x[4..].bytes().all(|b| ALPHABET.contains(&b))));
        }
    }
}
