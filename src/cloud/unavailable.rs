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

    /// The solver reads this cache: an offering the launcher marked is not
    /// chosen by the next plan, and the plan says why when asked.
    #[test]
    fn the_next_plan_avoids_marked_offerings() {
        use crate::ir::PolicySet;
        use crate::solver::{SolveInput, solve, synth};
        use crate::workload::{PodClass, Workload};

        let catalog = synth::karpenter_catalog(8);
        let policy = PolicySet {
            pools: vec![synth::default_pool("default")],
            ..Default::default()
        };
        let mut requests = crate::ir::Resources::zero();
        requests.cpu_milli = 1500;
        requests.memory = 1 << 30;
        requests.pods = 1;
        let workload = Workload {
            classes: vec![PodClass {
                id: "web".into(),
                namespace: "default".into(),
                pod_names: vec!["web-0".into()],
                labels: Default::default(),
                owner: None,
                priority_class: None,
                priority: 0,
                requests,
                node_selector: Default::default(),
                required_affinity: vec![],
                preferred_affinity: vec![],
                tolerations: vec![],
                topology_spread: vec![],
                pod_affinity: vec![],
                volume_zones: None,
                volume_reason: None,
            }],
            ..Default::default()
        };
        let cache = UnavailableOfferings::default();
        let plan = |cache: &UnavailableOfferings| {
            solve(&SolveInput {
                policy: &policy,
                catalog: &catalog,
                workload: &workload,
                scorer: None,
                unavailable: Some(cache),
            })
        };
        let first = plan(&cache);
        assert_eq!(first.nodes.len(), 1, "{first:?}");
        let n = &first.nodes[0];
        cache.mark(
            &n.instance_type,
            &n.zone,
            n.capacity_type,
            "InsufficientInstanceCapacity",
        );
        let second = plan(&cache);
        assert_eq!(second.nodes.len(), 1, "{second:?}");
        let m = &second.nodes[0];
        assert_ne!(
            (&m.instance_type, &m.zone, m.capacity_type),
            (&n.instance_type, &n.zone, n.capacity_type),
            "the refused offering was chosen again"
        );
        assert!(m.price_per_hour >= n.price_per_hour, "it was the cheapest");
    }
}
