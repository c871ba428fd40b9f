//! Pod names as Kubernetes controllers would give them, but deterministic.
//!
//! Kubernetes draws random suffixes; plans must be diffable across runs, so
//! every suffix here comes from a SHA-256 of stable inputs (namespace, owner,
//! pod template), encoded in Kubernetes' own name alphabet (no vowels, no
//! look-alike digits), so names look exactly like the real ones.

use std::collections::{HashMap, HashSet};

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
pub(super) fn encode(parts: &[&str], len: usize) -> String {
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
pub(super) fn template_hash(template_json: &str) -> String {
    encode(&["pod-template-hash", template_json], 10)
}

/// The id a CronJob puts in its Jobs' names. Kubernetes uses the scheduled time
/// in minutes since the epoch; a plan has no clock, so this is an 8-digit
/// number derived from the CronJob's name and schedule: stable, and it looks the part.
pub(super) fn cron_id(namespace: &str, name: &str, schedule: &str) -> String {
    let d = digest(&["cronjob", namespace, name, schedule]);
    let n = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % 90_000_000 + 10_000_000;
    n.to_string()
}

/// How many hashed tries a name gets before the generator enumerates.
const TRIES: usize = 16;

/// Hands out unique suffixes (5 characters, as Kubernetes') for name prefixes.
///
/// Suffix `i` is a hash of (seed, i); on the rare collision (27^5 ≈ 14M
/// values, so thousands of replicas do collide) it rehashes with a counter,
/// which keeps the result deterministic. After [`TRIES`] collisions it walks
/// the suffixes in order from the hashed one, and when every suffix of the
/// width is taken for that prefix, it widens the suffix by one character.
/// So it always terminates, whatever the count and whatever names were
/// reserved: the walk over one width happens at most once per prefix.
#[derive(Debug)]
pub(super) struct Suffixes {
    used: HashSet<String>,
    /// Width of the suffixes handed out, normally 5.
    width: usize,
    /// Prefixes whose suffixes at some width are all taken: the width to use now.
    widened: HashMap<String, usize>,
}

impl Default for Suffixes {
    fn default() -> Self {
        Self::with_width(5)
    }
}

impl Suffixes {
    /// A fresh generator.
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// A generator of `width`-character suffixes (tests use a narrow one to
    /// fill the space quickly).
    pub(super) fn with_width(width: usize) -> Self {
        Suffixes {
            used: HashSet::new(),
            width: width.clamp(1, 12),
            widened: HashMap::new(),
        }
    }

    /// Marks a full name as taken (pods already in the input).
    pub(super) fn reserve(&mut self, name: &str) {
        self.used.insert(name.to_string());
    }

    /// `prefix` + a suffix unique among names handed out or reserved.
    pub(super) fn next(&mut self, prefix: &str, seed: &str, i: usize) -> String {
        let idx = i.to_string();
        let mut width = self.widened.get(prefix).copied().unwrap_or(self.width);
        if width == self.width {
            for attempt in 0..TRIES {
                let a = attempt.to_string();
                let name = format!("{prefix}{}", encode(&[seed, &idx, &a], width));
                if self.used.insert(name.clone()) {
                    return name;
                }
            }
        }
        loop {
            if let Some(name) = self.walk(prefix, seed, &idx, width) {
                return name;
            }
            width += 1;
            self.widened.insert(prefix.to_string(), width);
        }
    }

    /// The first free name in the suffixes of `width`, in order from the
    /// hashed one; None when all are taken.
    fn walk(&mut self, prefix: &str, seed: &str, idx: &str, width: usize) -> Option<String> {
        let base = ALPHABET.len() as u128;
        let space = base.checked_pow(width as u32).unwrap_or(u128::MAX);
        let d = digest(&[seed, idx, "walk"]);
        let start = u128::from_be_bytes(d[..16].try_into().unwrap_or([0; 16])) % space;
        (0..space).find_map(|k| {
            let mut n = (start + k) % space;
            let mut name = String::with_capacity(prefix.len() + width);
            name.push_str(prefix);
            for _ in 0..width {
                name.push(ALPHABET[(n % base) as usize] as char);
                n /= base;
            }
            self.used.insert(name.clone()).then_some(name)
        })
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

    #[test]
    fn a_full_suffix_space_widens_instead_of_looping() {
        // One character: 27 suffixes, then two characters (729), then three.
        let mut s = Suffixes::with_width(1);
        s.reserve("web-b");
        let names: Vec<String> = (0..1000).map(|i| s.next("web-", "seed", i)).collect();
        let unique: HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), 1000);
        assert!(!names.contains(&"web-b".to_string()));
        let width = |n: &str| n.len() - "web-".len();
        assert_eq!(names.iter().filter(|n| width(n) == 1).count(), 26);
        assert_eq!(names.iter().filter(|n| width(n) == 2).count(), 729);
        assert_eq!(
            names.iter().filter(|n| width(n) == 3).count(),
            1000 - 26 - 729
        );
        // Other prefixes keep the normal width.
        assert_eq!(s.next("db-", "seed", 0).len(), "db-".len() + 1);
        // And it is still deterministic.
        let mut t = Suffixes::with_width(1);
        t.reserve("web-b");
        let again: Vec<String> = (0..1000).map(|i| t.next("web-", "seed", i)).collect();
        assert_eq!(names, again);
    }
}
