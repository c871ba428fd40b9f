//! Requirement filtering by bitsets: for each label key, one bitset of
//! offerings per value, plus cumulative bitsets over the key's sorted integer
//! values for `Gt`/`Lt`. A requirement set is then a handful of word-wise
//! AND/OR/AND-NOT over ~200 words, instead of a scan of every offering.
//!
//! `Catalog::filter_naive` is the reference; a property test checks that both
//! always agree.

use std::collections::HashMap;

use super::node_labels::OFFERING_KEYS;
use super::{Bits, Catalog};
use crate::ir::{Requirements, ValueSet};

/// Per-key bitsets over one catalog's offerings. Build once per catalog.
#[derive(Debug, Clone)]
pub struct CatalogIndex {
    len: usize,
    keys: HashMap<String, KeyIndex>,
}

#[derive(Debug, Clone)]
struct KeyIndex {
    /// Offerings that carry the key at all.
    present: Bits,
    /// Offerings by value.
    values: HashMap<String, Bits>,
    /// Distinct integer values, ascending.
    numbers: Vec<i64>,
    /// `upto[i]`: offerings whose value is an integer ≤ `numbers[i]`.
    upto: Vec<Bits>,
}

impl KeyIndex {
    /// Offerings whose integer value is ≤ n.
    fn at_most(&self, n: i64, len: usize) -> Bits {
        // index of the last number ≤ n
        let p = self.numbers.partition_point(|&x| x <= n);
        if p == 0 {
            Bits::new(len)
        } else {
            self.upto[p - 1].clone()
        }
    }

    /// Offerings whose value is an integer within (gt, lt), exclusive.
    fn in_range(&self, gt: Option<i64>, lt: Option<i64>, len: usize) -> Bits {
        let mut b = match lt {
            Some(l) => match l.checked_sub(1) {
                Some(m) => self.at_most(m, len),
                None => Bits::new(len),
            },
            None => match self.upto.last() {
                Some(all) => all.clone(),
                None => Bits::new(len),
            },
        };
        if let Some(g) = gt {
            b.and_not_with(&self.at_most(g, len));
        }
        b
    }
}

impl Catalog {
    /// Builds the filtering index (milliseconds; reuse it for many filters).
    pub fn index(&self) -> CatalogIndex {
        let len = self.offerings.len();
        let mut keys: Vec<&str> = OFFERING_KEYS.to_vec();
        for t in &self.types {
            for k in t.labels.keys() {
                keys.push(k);
            }
        }
        keys.sort_unstable();
        keys.dedup();

        let mut out = HashMap::with_capacity(keys.len());
        for key in keys {
            let mut present = Bits::new(len);
            let mut values: HashMap<String, Bits> = HashMap::new();
            for (i, o) in self.offerings.iter().enumerate() {
                if let Some(v) = self.offering_label(o, key) {
                    present.set(i);
                    match values.get_mut(v) {
                        Some(b) => b.set(i),
                        None => {
                            let mut b = Bits::new(len);
                            b.set(i);
                            values.insert(v.to_string(), b);
                        }
                    }
                }
            }
            let mut numeric: Vec<(i64, &Bits)> = values
                .iter()
                .filter_map(|(v, b)| v.parse::<i64>().ok().map(|n| (n, b)))
                .collect();
            numeric.sort_unstable_by_key(|(n, _)| *n);
            let mut numbers = Vec::with_capacity(numeric.len());
            let mut upto: Vec<Bits> = Vec::with_capacity(numeric.len());
            let mut acc = Bits::new(len);
            for (n, b) in numeric {
                acc.or_with(b);
                // "05" and "5" parse alike: fold them into one entry.
                if numbers.last() == Some(&n) {
                    if let Some(last) = upto.last_mut() {
                        *last = acc.clone();
                    }
                } else {
                    numbers.push(n);
                    upto.push(acc.clone());
                }
            }
            out.insert(
                key.to_string(),
                KeyIndex {
                    present,
                    values,
                    numbers,
                    upto,
                },
            );
        }
        CatalogIndex { len, keys: out }
    }
}

impl CatalogIndex {
    /// The number of offerings indexed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a catalog without offerings.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The offerings allowed by one key's value set.
    fn allowed(&self, key: &str, set: &ValueSet) -> Bits {
        let Some(ix) = self.keys.get(key) else {
            // No offering has the key: only "absent is fine" sets pass.
            return if set.absent_ok {
                Bits::full(self.len)
            } else {
                Bits::new(self.len)
            };
        };
        let bounded = set.gt.is_some() || set.lt.is_some();
        let mut b = if set.complement {
            let mut b = if bounded {
                ix.in_range(set.gt, set.lt, self.len)
            } else {
                ix.present.clone()
            };
            for v in &set.values {
                if let Some(vb) = ix.values.get(v) {
                    b.and_not_with(vb);
                }
            }
            b
        } else {
            let mut b = Bits::new(self.len);
            for v in &set.values {
                if let Some(vb) = ix.values.get(v)
                    && set.allows(v)
                {
                    b.or_with(vb);
                }
            }
            b
        };
        if set.absent_ok {
            let mut absent = Bits::full(self.len);
            absent.and_not_with(&ix.present);
            b.or_with(&absent);
        }
        b
    }

    /// The offerings that satisfy every key of `reqs` (same result as
    /// `Catalog::filter_naive`).
    pub fn filter(&self, reqs: &Requirements) -> Bits {
        let mut out = Bits::full(self.len);
        for (key, set) in &reqs.keys {
            out.and_with(&self.allowed(key, set));
            if out.none() {
                break;
            }
        }
        out
    }

    /// The distinct values of `key` across the catalog (for did-you-mean hints and tests).
    pub fn values(&self, key: &str) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .keys
            .get(key)
            .map(|ix| ix.values.keys().map(|s| s.as_str()).collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Every indexed key.
    pub fn keys(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.keys.keys().map(|s| s.as_str()).collect();
        v.sort_unstable();
        v
    }
}
