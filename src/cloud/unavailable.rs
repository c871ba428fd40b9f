//! Offerings EC2 recently refused (InsufficientInstanceCapacity and the like).
//!
//! The launcher writes it; the solver reads it so the next plan avoids them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::catalog::CapacityType;

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

    /// Whether the offering is currently marked.
    pub fn contains(&self, instance_type: &str, zone: &str, ct: CapacityType) -> bool {
        self.reason(instance_type, zone, ct).is_some()
    }

    /// The live entries.
    pub fn snapshot(&self) -> Vec<(OfferingKey, String)> {
        let now = Instant::now();
        let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.iter()
            .filter(|(_, (until, _))| *until > now)
            .map(|(k, (_, why))| (k.clone(), why.clone()))
            .collect()
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
}
