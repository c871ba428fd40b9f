//! Node requirements: per label key, the set of values a node may carry.
//!
//! This is the one representation of "which nodes are acceptable" shared by
//! pools, pod node selectors and affinities, catalog filters and placement
//! rules. Semantics follow Kubernetes node affinity and Karpenter's
//! `scheduling.Requirements`: `NotIn` and `DoesNotExist` accept a node without
//! the label, `In`, `Exists`, `Gt` and `Lt` do not.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::origin::Origin;

/// A requirement operator, as Kubernetes spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

impl Operator {
    /// Parses the Kubernetes spelling (`In`, `NotIn`, ...).
    pub fn parse(s: &str) -> Option<Operator> {
        Some(match s {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            "Gt" => Operator::Gt,
            "Lt" => Operator::Lt,
            _ => return None,
        })
    }

    /// The Kubernetes spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Operator::In => "In",
            Operator::NotIn => "NotIn",
            Operator::Exists => "Exists",
            Operator::DoesNotExist => "DoesNotExist",
            Operator::Gt => "Gt",
            Operator::Lt => "Lt",
        }
    }
}

/// The values one key may take. Closed under intersection.
///
/// `complement == false`: the value must be one of `values`.
/// `complement == true`: the value must not be one of `values`.
/// `gt`/`lt` additionally bound the value as an integer (exclusive).
/// `absent_ok`: a node without the label satisfies it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ValueSet {
    pub complement: bool,
    pub values: BTreeSet<String>,
    pub gt: Option<i64>,
    pub lt: Option<i64>,
    pub absent_ok: bool,
}

impl ValueSet {
    /// The set a single `key op values` term denotes.
    ///
    /// For `Gt`/`Lt` the caller must already have checked that `values` is a
    /// single integer (the policy checker reports that with a span); a
    /// non-integer here yields an empty set.
    pub fn from_op(op: Operator, values: &[String]) -> ValueSet {
        let set = |c: bool, absent_ok: bool| ValueSet {
            complement: c,
            values: values.iter().cloned().collect(),
            gt: None,
            lt: None,
            absent_ok,
        };
        match op {
            Operator::In => set(false, false),
            Operator::NotIn => set(true, true),
            Operator::Exists => ValueSet {
                values: BTreeSet::new(),
                ..set(true, false)
            },
            Operator::DoesNotExist => ValueSet {
                values: BTreeSet::new(),
                ..set(false, true)
            },
            Operator::Gt | Operator::Lt => {
                let bound = values.first().and_then(|v| v.parse::<i64>().ok());
                match bound {
                    Some(n) => ValueSet {
                        complement: true,
                        values: BTreeSet::new(),
                        gt: (op == Operator::Gt).then_some(n),
                        lt: (op == Operator::Lt).then_some(n),
                        absent_ok: false,
                    },
                    None => ValueSet::nothing(),
                }
            }
        }
    }

    /// Any value, or no label at all.
    pub fn anything() -> ValueSet {
        ValueSet {
            complement: true,
            values: BTreeSet::new(),
            gt: None,
            lt: None,
            absent_ok: true,
        }
    }

    /// No node satisfies it.
    pub fn nothing() -> ValueSet {
        ValueSet {
            complement: false,
            values: BTreeSet::new(),
            gt: None,
            lt: None,
            absent_ok: false,
        }
    }

    fn within_bounds(&self, v: &str) -> bool {
        if self.gt.is_none() && self.lt.is_none() {
            return true;
        }
        match v.parse::<i64>() {
            Ok(n) => self.gt.is_none_or(|g| n > g) && self.lt.is_none_or(|l| n < l),
            Err(_) => false,
        }
    }

    /// Whether a node whose label has value `v` satisfies the set.
    pub fn allows(&self, v: &str) -> bool {
        self.within_bounds(v) && (self.values.contains(v) != self.complement)
    }

    /// Whether a node whose label is `v` (or absent, for None) satisfies the set.
    pub fn allows_opt(&self, v: Option<&str>) -> bool {
        match v {
            Some(v) => self.allows(v),
            None => self.absent_ok,
        }
    }

    /// True when no present value can satisfy it (a node may still satisfy it by lacking the label).
    pub fn no_value_allowed(&self) -> bool {
        if !self.complement {
            return self.values.is_empty();
        }
        match (self.gt, self.lt) {
            (Some(g), Some(l)) => l.saturating_sub(g) <= 1,
            _ => false,
        }
    }

    /// True when nothing at all satisfies it, with or without the label.
    pub fn is_empty(&self) -> bool {
        !self.absent_ok && self.no_value_allowed()
    }

    /// The values both sets allow.
    pub fn intersect(&self, other: &ValueSet) -> ValueSet {
        let gt = match (self.gt, other.gt) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let lt = match (self.lt, other.lt) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let absent_ok = self.absent_ok && other.absent_ok;
        let (complement, values) = match (self.complement, other.complement) {
            (false, false) => (
                false,
                self.values.intersection(&other.values).cloned().collect(),
            ),
            (false, true) => (
                false,
                self.values.difference(&other.values).cloned().collect(),
            ),
            (true, false) => (
                false,
                other.values.difference(&self.values).cloned().collect(),
            ),
            (true, true) => (true, self.values.union(&other.values).cloned().collect()),
        };
        let mut out = ValueSet {
            complement,
            values,
            gt,
            lt,
            absent_ok,
        };
        if !out.complement && (out.gt.is_some() || out.lt.is_some()) {
            let kept: BTreeSet<String> = out
                .values
                .iter()
                .filter(|v| out.within_bounds(v))
                .cloned()
                .collect();
            out.values = kept;
            out.gt = None;
            out.lt = None;
        }
        out
    }

    /// How many distinct values it allows, when finite (for minValues checks).
    pub fn finite_len(&self) -> Option<usize> {
        (!self.complement).then_some(self.values.len())
    }
}

/// One requirement term with its source, before being merged per key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    pub key: String,
    pub op: Operator,
    pub values: Vec<String>,
    /// Karpenter's minValues: launch flexibility of at least this many distinct values.
    pub min_values: Option<u32>,
    #[serde(skip)]
    pub origin: Option<Origin>,
}

/// The conjunction of requirements, merged per key.
///
/// Keys absent from the map are unconstrained.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Requirements {
    pub keys: BTreeMap<String, ValueSet>,
    /// minValues per key (the largest asked for that key).
    pub min_values: BTreeMap<String, u32>,
}

impl Requirements {
    /// No constraint at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the conjunction of `terms`.
    pub fn from_terms<'a>(terms: impl IntoIterator<Item = &'a Requirement>) -> Self {
        let mut r = Requirements::new();
        for t in terms {
            r.add(t);
        }
        r
    }

    /// Adds one term (intersecting with what the key already allows).
    pub fn add(&mut self, term: &Requirement) {
        self.add_set(&term.key, ValueSet::from_op(term.op, &term.values));
        if let Some(m) = term.min_values {
            let e = self.min_values.entry(term.key.clone()).or_insert(0);
            *e = (*e).max(m);
        }
    }

    /// Intersects the set allowed for `key` with `set`.
    pub fn add_set(&mut self, key: &str, set: ValueSet) {
        match self.keys.get_mut(key) {
            Some(existing) => *existing = existing.intersect(&set),
            None => {
                self.keys.insert(key.to_string(), set);
            }
        }
    }

    /// Shorthand for `key In values`.
    pub fn require_in(&mut self, key: &str, values: &[&str]) {
        let v: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        self.add_set(key, ValueSet::from_op(Operator::In, &v));
    }

    /// The set for `key` (everything, when unconstrained).
    pub fn get(&self, key: &str) -> ValueSet {
        self.keys
            .get(key)
            .cloned()
            .unwrap_or_else(ValueSet::anything)
    }

    /// Both at once: the intersection key by key.
    pub fn intersect(&self, other: &Requirements) -> Requirements {
        let mut out = self.clone();
        for (k, v) in &other.keys {
            out.add_set(k, v.clone());
        }
        for (k, m) in &other.min_values {
            let e = out.min_values.entry(k.clone()).or_insert(0);
            *e = (*e).max(*m);
        }
        out
    }

    /// The first key whose allowed set is empty, if any: the requirements contradict.
    pub fn conflict(&self) -> Option<&str> {
        self.keys
            .iter()
            .find(|(_, v)| v.is_empty())
            .map(|(k, _)| k.as_str())
    }

    /// Whether a node with these labels satisfies every key.
    pub fn matches<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.keys.iter().all(|(k, set)| set.allows_opt(label(k)))
    }

    /// Whether a node with exactly these labels satisfies every key.
    pub fn matches_map(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches(|k| labels.get(k).map(|s| s.as_str()))
    }

    /// The first key whose value in `labels` violates the requirements.
    pub fn first_violation(&self, labels: &BTreeMap<String, String>) -> Option<&str> {
        self.keys
            .iter()
            .find(|(k, set)| !set.allows_opt(labels.get(k.as_str()).map(|s| s.as_str())))
            .map(|(k, _)| k.as_str())
    }

    /// Whether some node could satisfy both (no key's intersection is empty).
    pub fn compatible(&self, other: &Requirements) -> bool {
        other.keys.iter().all(|(k, v)| match self.keys.get(k) {
            Some(mine) => !mine.intersect(v).is_empty(),
            None => !v.is_empty(),
        })
    }
}

impl fmt::Display for ValueSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vals: Vec<&str> = self.values.iter().map(|s| s.as_str()).collect();
        let mut parts = Vec::new();
        if self.complement {
            if vals.is_empty() {
                if self.gt.is_none() && self.lt.is_none() {
                    parts.push(if self.absent_ok {
                        "any".to_string()
                    } else {
                        "exists".to_string()
                    });
                }
            } else {
                parts.push(format!("not in [{}]", vals.join(", ")));
            }
        } else if vals.is_empty() {
            parts.push(if self.absent_ok {
                "does not exist".to_string()
            } else {
                "nothing".to_string()
            });
        } else {
            parts.push(format!("in [{}]", vals.join(", ")));
        }
        if let Some(g) = self.gt {
            parts.push(format!("> {g}"));
        }
        if let Some(l) = self.lt {
            parts.push(format!("< {l}"));
        }
        write!(f, "{}", parts.join(" and "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(op: Operator, v: &[&str]) -> ValueSet {
        let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        ValueSet::from_op(op, &v)
    }

    #[test]
    fn in_and_not_in() {
        let s = vs(Operator::In, &["a", "b"]);
        assert!(s.allows("a") && !s.allows("c") && !s.allows_opt(None));
        let n = vs(Operator::NotIn, &["a"]);
        assert!(!n.allows("a") && n.allows("c") && n.allows_opt(None));
        let i = s.intersect(&n);
        assert_eq!(i.values.iter().collect::<Vec<_>>(), vec!["b"]);
        assert!(!i.complement);
    }

    #[test]
    fn exists_and_does_not_exist() {
        let e = vs(Operator::Exists, &[]);
        let d = vs(Operator::DoesNotExist, &[]);
        assert!(e.allows("x") && !e.allows_opt(None));
        assert!(!d.allows("x") && d.allows_opt(None));
        assert!(e.intersect(&d).is_empty());
    }

    #[test]
    fn gt_lt_bounds() {
        let g = vs(Operator::Gt, &["5"]);
        assert!(g.allows("6") && !g.allows("5") && !g.allows("x"));
        let l = vs(Operator::Lt, &["7"]);
        let both = g.intersect(&l);
        assert!(both.allows("6") && !both.allows("7") && !both.is_empty());
        let none = vs(Operator::Gt, &["5"]).intersect(&vs(Operator::Lt, &["6"]));
        assert!(none.is_empty());
        let filtered = vs(Operator::In, &["4", "6", "8"]).intersect(&g);
        assert_eq!(filtered.values.len(), 2);
    }

    #[test]
    fn requirements_conflict_and_match() {
        let mut r = Requirements::new();
        r.require_in("kubernetes.io/arch", &["amd64"]);
        let mut labels = BTreeMap::new();
        labels.insert("kubernetes.io/arch".to_string(), "amd64".to_string());
        assert!(r.matches_map(&labels));
        r.require_in("kubernetes.io/arch", &["arm64"]);
        assert_eq!(r.conflict(), Some("kubernetes.io/arch"));
        assert!(!r.matches_map(&labels));
    }
}
