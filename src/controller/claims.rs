//! Claims in flight: instances launched for pending pods that have not yet
//! registered as Nodes.
//!
//! Between CreateFleet and the kubelet registering, the cluster shows the
//! pods as pending and no node for them. The next solve must not launch a
//! second node for the same pods, so every claim stands in for its node:
//! it becomes an existing node with the planned labels, taints and
//! allocatable, carrying the pods it was launched for (those still pending)
//! and whatever room is left for new ones. Karpenter does the same with its
//! NodeClaim objects. A claim ends when a Node with its instance's provider
//! ID appears, or when it does not within the registration timeout (then
//! the instance is terminated and its pods are planned again).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use crate::catalog::CapacityType;
use crate::ir::{Resources, Taint, labels};
use crate::workload::{BoundPod, ExistingNode, Workload};

/// One launched node that has not registered yet.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Claim {
    /// Unique claim name (also the instance's `nodewright.io/claim` tag).
    pub name: String,
    pub pool: String,
    pub instance_id: String,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
    /// Labels the node will carry.
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
    /// DaemonSet overhead the solver counted on the node.
    pub overhead: Resources,
    /// "namespace/name" of the pods it was launched for.
    pub pods: BTreeSet<String>,
    pub launched_at: Instant,
}

/// The claims in flight, by name.
#[derive(Debug, Clone, Default)]
pub(super) struct Claims {
    map: BTreeMap<String, Claim>,
}

impl Claims {
    /// Tracks a launched claim.
    pub(super) fn insert(&mut self, c: Claim) {
        self.map.insert(c.name.clone(), c);
    }

    /// Whether a claim of this name is in flight.
    pub(super) fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Forgets a claim (garbage collection: its instance is gone).
    pub(super) fn remove(&mut self, name: &str) -> Option<Claim> {
        self.map.remove(name)
    }

    /// Every claim in flight, by name.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Claim> {
        self.map.values()
    }

    /// How many claims are in flight.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Ends the claims whose instance is now a Node (by provider ID's instance id).
    pub(super) fn registered(&mut self, node_instances: &HashSet<String>) -> Vec<Claim> {
        self.take_where(|c| node_instances.contains(&c.instance_id))
    }

    /// Ends the claims that did not register within `ttl`: their instances must be terminated.
    pub(super) fn expired(&mut self, now: Instant, ttl: Duration) -> Vec<Claim> {
        self.take_where(|c| now.saturating_duration_since(c.launched_at) >= ttl)
    }

    fn take_where(&mut self, f: impl Fn(&Claim) -> bool) -> Vec<Claim> {
        let names: Vec<String> = self
            .map
            .values()
            .filter(|c| f(c))
            .map(|c| c.name.clone())
            .collect();
        names
            .into_iter()
            .filter_map(|n| self.map.remove(&n))
            .collect()
    }

    /// Adds every claim to `w` as an existing node, moving its still-pending
    /// pods from the pending classes onto it.
    /// Claims taken over without a plan (no room, no pods) are left out.
    pub(super) fn fold_into(&self, w: &mut Workload) {
        for c in self.map.values() {
            if c.allocatable == Resources::zero() && c.pods.is_empty() {
                continue;
            }
            let mut node = ExistingNode {
                name: c.name.clone(),
                labels: c.labels.clone(),
                taints: c.taints.clone(),
                allocatable: c.allocatable.clone(),
                used: c.overhead.clone(),
                pods: Vec::new(),
            };
            node.labels
                .entry(labels::HOSTNAME.to_string())
                .or_insert_with(|| c.name.clone());
            for class in &mut w.classes {
                let before = class.pod_names.len();
                let ns = class.namespace.clone();
                let mut moved = Vec::new();
                class.pod_names.retain(|n| {
                    let key = format!("{ns}/{n}");
                    if c.pods.contains(&key) {
                        moved.push(n.clone());
                        false
                    } else {
                        true
                    }
                });
                if class.pod_names.len() == before {
                    continue;
                }
                for name in moved {
                    node.used.add(&class.requests);
                    node.pods.push(BoundPod {
                        namespace: ns.clone(),
                        name,
                        labels: class.labels.clone(),
                    });
                }
            }
            w.nodes.push(node);
        }
        w.classes.retain(|c| !c.pod_names.is_empty());
    }
}

/// Five random base-36 characters: a claim is named `<pool>-<suffix>`
/// (`steps::launches` draws again while the name is taken), since the
/// solver's `<pool>-<n>` names repeat between solves.
pub(super) fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The EC2 instance id in a Node's `spec.providerID` (`aws:///us-east-1a/i-0abc`).
pub(super) fn instance_id_of(provider_id: &str) -> Option<&str> {
    let id = provider_id.strip_prefix("aws://")?.rsplit('/').next()?;
    id.starts_with("i-").then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Resources;
    use crate::workload::PodClass;

    fn res(cpu_milli: i64, memory_gib: i64, pods: i64) -> Resources {
        Resources {
            cpu_milli,
            memory: memory_gib << 30,
            pods,
            ..Resources::zero()
        }
    }

    fn class(ns: &str, names: &[&str]) -> PodClass {
        PodClass {
            labels: [("app".to_string(), "web".to_string())].into(),
            ..PodClass::plain(
                format!("{ns}/c"),
                ns,
                names.iter().map(|s| s.to_string()).collect(),
                res(500, 1, 1),
            )
        }
    }

    fn claim(name: &str, pods: &[&str], at: Instant) -> Claim {
        Claim {
            name: name.into(),
            pool: "general".into(),
            instance_id: format!("i-{name}"),
            instance_type: "m5.large".into(),
            zone: "us-east-1a".into(),
            capacity_type: CapacityType::OnDemand,
            labels: [(labels::ZONE.to_string(), "us-east-1a".to_string())].into(),
            taints: vec![],
            allocatable: res(1930, 7, 29),
            overhead: res(100, 0, 1),
            pods: pods.iter().map(|s| s.to_string()).collect(),
            launched_at: at,
        }
    }

    #[test]
    fn a_claim_carries_its_pending_pods_as_an_existing_node() {
        let mut w = Workload {
            classes: vec![class("shop", &["a", "b", "c"]), class("batch", &["a"])],
            ..Default::default()
        };
        let mut cs = Claims::default();
        // "shop/gone" was deleted meanwhile: it simply drops out.
        cs.insert(claim(
            "general-x1y2z",
            &["shop/a", "shop/c", "shop/gone"],
            Instant::now(),
        ));
        cs.fold_into(&mut w);
        assert_eq!(w.classes.len(), 2);
        assert_eq!(w.classes[0].pod_names, vec!["b".to_string()]);
        assert_eq!(
            w.classes[1].pod_names,
            vec!["a".to_string()],
            "batch/a is not shop/a"
        );
        let n = &w.nodes[0];
        assert_eq!(n.name, "general-x1y2z");
        assert_eq!(
            n.labels.get(labels::HOSTNAME).map(String::as_str),
            Some("general-x1y2z")
        );
        let names: Vec<&str> = n.pods.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(n.used, res(1100, 2, 3), "overhead plus two pods");
        // A claim whose pods are all gone leaves no empty class behind.
        let mut w2 = Workload {
            classes: vec![class("shop", &["a"])],
            ..Default::default()
        };
        cs.fold_into(&mut w2);
        assert!(w2.classes.is_empty());
        // A claim taken over after a restart (no plan: no room, no pods) adds no node.
        let mut adopted = claim("general-abcde", &[], Instant::now());
        adopted.allocatable = Resources::zero();
        let mut only = Claims::default();
        only.insert(adopted);
        let mut w3 = Workload::default();
        only.fold_into(&mut w3);
        assert!(w3.nodes.is_empty());
    }

    #[test]
    fn claims_end_on_registration_or_timeout() {
        let t0 = Instant::now();
        let mut cs = Claims::default();
        cs.insert(claim("a", &[], t0));
        cs.insert(claim("b", &[], t0 + Duration::from_secs(60)));
        cs.insert(claim("c", &[], t0));
        let reg = cs.registered(&["i-c".to_string()].into());
        assert_eq!(reg.len(), 1);
        assert_eq!(reg[0].name, "c");
        let ttl = Duration::from_secs(900);
        assert!(cs.expired(t0 + Duration::from_secs(899), ttl).is_empty());
        let exp = cs.expired(t0 + Duration::from_secs(900), ttl);
        assert_eq!(
            exp.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(cs.len(), 1);
    }

    #[test]
    fn provider_ids_and_claim_suffixes() {
        assert_eq!(
            instance_id_of("aws:///us-east-1a/i-0abc123"),
            Some("i-0abc123")
        );
        assert_eq!(instance_id_of("aws:///i-0abc123"), Some("i-0abc123"));
        assert_eq!(instance_id_of("gce://p/z/n"), None);
        assert_eq!(instance_id_of("aws:///us-east-1a/"), None);
        let s = random_suffix();
        assert_eq!(s.len(), 5, "{s}");
        assert!(
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{s}"
        );
        let draws: std::collections::HashSet<String> = (0..50).map(|_| random_suffix()).collect();
        assert!(draws.len() > 40, "suffixes should vary: {draws:?}");
    }
}
