//! Which pods to tell, with a Kubernetes Event, why they wait.
//!
//! `kubectl describe pod` is where a user looks first. Every pass would
//! repeat the same unschedulable reasons every few seconds, so a pod gets an
//! Event only when its reasons change, and at most `limit` pods per pass get
//! one (the log and the `unschedulable_pods` gauge have the rest).

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

/// Remembers what each pod was last told.
#[derive(Debug, Clone, Default)]
pub(super) struct Notices {
    told: HashMap<String, u64>,
}

impl Notices {
    /// Of `current` (pod key, message), the ones to publish now: new or
    /// changed messages, at most `limit`. Pods absent from `current` are
    /// forgotten, so a pod that waits again later is told again.
    pub(super) fn due<'a>(
        &mut self,
        current: &'a [(String, String)],
        limit: usize,
    ) -> Vec<&'a (String, String)> {
        let keep: HashSet<&str> = current.iter().map(|(p, _)| p.as_str()).collect();
        self.told.retain(|p, _| keep.contains(p.as_str()));
        let mut out = Vec::new();
        for item in current {
            if out.len() == limit {
                break;
            }
            let mut h = DefaultHasher::new();
            item.1.hash(&mut h);
            let h = h.finish();
            if self.told.get(&item.0) != Some(&h) {
                self.told.insert(item.0.clone(), h);
                out.push(item);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(p, m)| (p.to_string(), m.to_string()))
            .collect()
    }

    #[test]
    fn told_once_per_message_with_a_cap() {
        let mut n = Notices::default();
        let a = pods(&[
            ("shop/a", "too big"),
            ("shop/b", "too big"),
            ("shop/c", "no zone"),
        ]);
        let first: Vec<&str> = n.due(&a, 2).iter().map(|x| x.0.as_str()).collect();
        assert_eq!(first, ["shop/a", "shop/b"], "capped at 2");
        let second: Vec<&str> = n.due(&a, 2).iter().map(|x| x.0.as_str()).collect();
        assert_eq!(
            second,
            ["shop/c"],
            "the rest next pass, the told ones not again"
        );
        assert!(n.due(&a, 2).is_empty());
        let changed = pods(&[("shop/a", "limit reached"), ("shop/c", "no zone")]);
        let third: Vec<&str> = n.due(&changed, 2).iter().map(|x| x.0.as_str()).collect();
        assert_eq!(third, ["shop/a"], "a changed reason is told");
        // shop/b left the list: if it waits again, it is told again.
        let back: Vec<&str> = n.due(&a, 5).iter().map(|x| x.0.as_str()).collect();
        assert_eq!(back, ["shop/a", "shop/b"]);
    }
}
