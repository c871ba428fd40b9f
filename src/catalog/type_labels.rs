//! An instance type's labels, stored so that loading a catalog allocates
//! almost nothing per label.
//!
//! A catalog carries about 20 labels on each of some 1,300 types. As a
//! `BTreeMap<String, String>` that was 50,000 heap strings to build at every
//! start, which was most of the embedded catalog's load time. Here the keys
//! of well-known labels point at the static constants of `ir::labels`, and
//! the values (`m5`, `4096`, `nitro`, ...) are `CompactString`s, kept inline
//! up to 24 bytes. Serialized, it is an ordinary string map in key order, so
//! the postcard and JSON forms are the same as the map it replaced.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use compact_str::CompactString;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ir::labels;

/// Labels of one instance type: unique keys, kept sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TypeLabels(Vec<(Cow<'static, str>, CompactString)>);

impl TypeLabels {
    /// No labels.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`, if the type has that label.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(key).ok().map(|i| self.0[i].1.as_str())
    }

    /// Whether the type has label `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`, replacing an earlier value (as a map would).
    pub fn insert(&mut self, key: &str, value: &str) {
        match self.find(key) {
            Ok(i) => self.0[i].1 = CompactString::from(value),
            Err(i) => self.0.insert(i, (intern(key), CompactString::from(value))),
        }
    }

    /// Every (key, value), in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_str()))
    }

    /// Every key, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_ref())
    }

    /// How many labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_ref().cmp(key))
    }
}

impl<'a> IntoIterator for &'a TypeLabels {
    type Item = (&'a str, &'a str);
    type IntoIter = Box<dyn Iterator<Item = (&'a str, &'a str)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl From<BTreeMap<String, String>> for TypeLabels {
    fn from(m: BTreeMap<String, String>) -> Self {
        // A BTreeMap is already sorted and unique.
        TypeLabels(
            m.iter()
                .map(|(k, v)| (intern(k), CompactString::from(v.as_str())))
                .collect(),
        )
    }
}

/// The static spelling of a well-known key, or an owned copy of any other.
fn intern(key: &str) -> Cow<'static, str> {
    match labels::WELL_KNOWN.iter().find(|k| **k == key) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(key.to_string()),
    }
}

impl Serialize for TypeLabels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k.as_ref(), v.as_str())?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for TypeLabels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(LabelsVisitor)
    }
}

struct LabelsVisitor;

impl<'de> Visitor<'de> for LabelsVisitor {
    type Value = TypeLabels;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of label keys to string values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TypeLabels, A::Error> {
        let mut v: Vec<(Cow<'static, str>, CompactString)> =
            Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((k, val)) = map.next_entry::<Key, CompactString>()? {
            v.push((k.0, val));
        }
        // Written in key order by us; any other input is sorted here, and a
        // repeated key keeps its last value, as a map would.
        if !v.windows(2).all(|w| w[0].0 < w[1].0) {
            v.reverse();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v.dedup_by(|later, first| later.0 == first.0);
        }
        Ok(TypeLabels(v))
    }
}

/// A key read without an intermediate `String`.
struct Key(Cow<'static, str>);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a label key")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(Key(intern(s)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BTreeMap<String, String> {
        [
            (labels::INSTANCE_FAMILY, "m5"),
            (labels::ARCH, "amd64"),
            ("example.com/team", "a-value-longer-than-twenty-four-bytes"),
            (labels::INSTANCE_CPU, "2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Behaves as the map it replaced: lookups, order, insert-replaces.
    #[test]
    fn agrees_with_a_btreemap() {
        let m = sample();
        let mut t = TypeLabels::from(m.clone());
        assert_eq!(t.len(), m.len());
        for (k, v) in &m {
            assert_eq!(t.get(k), Some(v.as_str()));
            assert!(t.contains_key(k));
        }
        assert_eq!(t.get("missing"), None);
        let order: Vec<(&str, &str)> = t.iter().collect();
        let want: Vec<(&str, &str)> = m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(order, want);
        t.insert(labels::ARCH, "arm64");
        t.insert("a.example/first", "x");
        assert_eq!(t.get(labels::ARCH), Some("arm64"));
        assert_eq!(t.keys().next(), Some("a.example/first"));
    }

    /// postcard and JSON encode it exactly as the map, so the committed
    /// embedded catalog and every JSON output are unchanged.
    #[test]
    fn encodes_as_the_map_did() {
        let m = sample();
        let t = TypeLabels::from(m.clone());
        let pm = postcard::to_stdvec(&m).unwrap_or_default();
        let pt = postcard::to_stdvec(&t).unwrap_or_default();
        assert!(!pm.is_empty());
        assert_eq!(pm, pt);
        let back: TypeLabels = postcard::from_bytes(&pm).unwrap_or_default();
        assert_eq!(back, t);
        let jm = serde_json::to_string(&m).unwrap_or_default();
        assert_eq!(serde_json::to_string(&t).unwrap_or_default(), jm);
    }

    /// Input not in key order (a hand-written JSON catalog) is sorted, and a
    /// repeated key keeps its last value.
    #[test]
    fn unordered_input_is_sorted_and_last_value_wins() {
        let json = r#"{"z.example/k": "1", "a.example/k": "2", "z.example/k": "3"}"#;
        let t: TypeLabels = serde_json::from_str(json).unwrap_or_default();
        let got: Vec<(&str, &str)> = t.iter().collect();
        assert_eq!(got, vec![("a.example/k", "2"), ("z.example/k", "3")]);
    }

    /// Well-known keys are not copied.
    #[test]
    fn well_known_keys_are_static() {
        assert!(matches!(intern(labels::INSTANCE_FAMILY), Cow::Borrowed(_)));
        assert!(matches!(intern("example.com/x"), Cow::Owned(_)));
    }
}
