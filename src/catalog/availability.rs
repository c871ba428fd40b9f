//! Offerings EC2 recently refused (InsufficientInstanceCapacity and the like).
//!
//! Two shapes, so the solver stays a pure function of its inputs:
//! - `UnavailableOfferings`, the live cache: the launcher marks an offering
//!   when EC2 refuses it, and entries expire with the clock. It is shared
//!   between threads and changes at any moment.
//! - `Availability`, a frozen copy: the caller (the controller, the CLI)
//!   takes one with `UnavailableOfferings::snapshot` before a solve and
//!   hands it to the solver as data. Nothing in it moves during the solve,
//!   and two solves given the same snapshot give the same plan.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::CapacityType;

/// (instance type, zone, capacity type).
pub type OfferingKey = (String, String, CapacityType);

/// A TTL cache of unavailable offerings, safe to share across threads.
#[derive(Debug)]
pub struct UnavailableOfferings {
    ttl: Duration,
    entries: Mutex<HashMap<OfferingKey, (Instant, String)>>,
}

impl Default for UnavailableOfferings {
    /// Three minutes, as Karpenter uses.
    fn default() -> Self {
        Self::new(Duration::from_secs(180))
    }
}

impl UnavailableOfferings {
    /// A cache whose entries expire after `ttl`.
    pub fn new(ttl: Duration) -> Self {
        UnavailableOfferings {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Marks an offering unavailable for the TTL, with the EC2 error code as reason.
    pub fn mark(&self, instance_type: &str, zone: &str, ct: CapacityType, reason: &str) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.insert(
            (instance_type.to_string(), zone.to_string(), ct),
            (Instant::now() + self.ttl, reason.to_string()),
        );
    }

    /// The reason, if the offering is currently marked.
    pub fn reason(&self, instance_type: &str, zone: &str, ct: CapacityType) -> Option<String> {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let key = (instance_type.to_string(), zone.to_string(), ct);
        match e.get(&key) {
            Some((until, why)) if *until > Instant::now() => Some(why.clone()),
            Some(_) => {
                e.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Whether the offering is currently marked (the launcher asks this
    /// just before a request, where the live answer is the right one).
    pub fn contains(&self, instance_type: &str, zone: &str, ct: CapacityType) -> bool {
        self.reason(instance_type, zone, ct).is_some()
    }

    /// The live entries, frozen: what a solve reads. Expired entries are left out.
    pub fn snapshot(&self) -> Availability {
        let now = Instant::now();
        let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.iter()
            .filter(|(_, (until, _))| *until > now)
            .map(|(k, (_, why))| (k.clone(), why.clone()))
            .collect()
    }
}

/// Offerings that must not be planned, each with the reason EC2 gave: an
/// immutable value the solver takes as input (see the module docs).
///
/// Empty (`Availability::default()`) means every offering the catalog lists
/// as available may be used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Availability {
    /// Instance type → (zone, capacity type, reason). Keyed by type so a
    /// lookup borrows its `&str` and allocates nothing.
    refused: BTreeMap<String, Vec<(String, CapacityType, String)>>,
}

impl Availability {
    /// Records an offering as refused, with `reason` (later records of the same offering win).
    pub fn refuse(&mut self, instance_type: &str, zone: &str, ct: CapacityType, reason: &str) {
        let list = self.refused.entry(instance_type.to_string()).or_default();
        match list.iter_mut().find(|(z, c, _)| z == zone && *c == ct) {
            Some(e) => e.2 = reason.to_string(),
            None => list.push((zone.to_string(), ct, reason.to_string())),
        }
    }

    /// Why the offering was refused; None when it may be planned.
    pub fn reason(&self, instance_type: &str, zone: &str, ct: CapacityType) -> Option<&str> {
        self.refused
            .get(instance_type)?
            .iter()
            .find(|(z, c, _)| z == zone && *c == ct)
            .map(|(_, _, r)| r.as_str())
    }

    /// Whether the offering was refused.
    pub fn contains(&self, instance_type: &str, zone: &str, ct: CapacityType) -> bool {
        self.reason(instance_type, zone, ct).is_some()
    }

    /// How many offerings are refused.
    pub fn len(&self) -> usize {
        self.refused.values().map(Vec::len).sum()
    }

    /// True when nothing is refused.
    pub fn is_empty(&self) -> bool {
        self.refused.is_empty()
    }
}

impl FromIterator<(OfferingKey, String)> for Availability {
    fn from_iter<I: IntoIterator<Item = (OfferingKey, String)>>(iter: I) -> Self {
        let mut a = Availability::default();
        for ((t, z, ct), why) in iter {
            a.refuse(&t, &z, ct, &why);
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires() {
        let c = UnavailableOfferings::new(Duration::from_millis(30));
        c.mark(
            "m5.large",
            "us-east-1a",
            CapacityType::Spot,
            "InsufficientInstanceCapacity",
        );
        assert!(c.contains("m5.large", "us-east-1a", CapacityType::Spot));
        assert!(!c.contains("m5.large", "us-east-1b", CapacityType::Spot));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!c.contains("m5.large", "us-east-1a", CapacityType::Spot));
    }

    /// A snapshot does not move: neither later marks nor expiry change it.
    #[test]
    fn a_snapshot_is_frozen() {
        let c = UnavailableOfferings::new(Duration::from_millis(30));
        c.mark("m5.large", "us-east-1a", CapacityType::Spot, "ICE");
        let snap = c.snapshot();
        c.mark("m5.xlarge", "us-east-1a", CapacityType::Spot, "ICE");
        std::thread::sleep(Duration::from_millis(60));
        assert!(!c.contains("m5.large", "us-east-1a", CapacityType::Spot));
        assert_eq!(
            snap.reason("m5.large", "us-east-1a", CapacityType::Spot),
            Some("ICE")
        );
        assert!(!snap.contains("m5.xlarge", "us-east-1a", CapacityType::Spot));
        assert!(!snap.contains("m5.large", "us-east-1a", CapacityType::OnDemand));
        assert_eq!(snap.len(), 1);
        // Expired entries are not copied into a new snapshot.
        assert!(c.snapshot().is_empty());
    }

    #[test]
    fn a_later_refusal_replaces_the_reason() {
        let mut a = Availability::default();
        a.refuse("m5.large", "us-east-1a", CapacityType::OnDemand, "first");
        a.refuse("m5.large", "us-east-1a", CapacityType::OnDemand, "second");
        a.refuse("m5.large", "us-east-1b", CapacityType::OnDemand, "other");
        assert_eq!(a.len(), 2);
        assert_eq!(
            a.reason("m5.large", "us-east-1a", CapacityType::OnDemand),
            Some("second")
        );
    }
}
