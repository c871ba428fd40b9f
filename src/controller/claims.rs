//! Claims in flight, as the planner sees them: nodes launched (or about to
//! be) for pending pods that are not yet initialized.
//!
//! Between CreateFleet and the node being usable, the cluster shows the
//! pods as pending and either no node for them or a node that cannot take
//! them yet (still under its pool's startup taint, or without the GPUs its
//! device plugin has not reported). The next solve must not launch a second
//! node for the same pods, so every claim stands in for its node: it
//! becomes an existing node with the planned labels, taints and allocatable,
//! carrying the pods it was launched for (those still pending) and whatever
//! room is left for new ones. Once the Node registers, the claim's room
//! replaces the Node's own until the Node is initialized. Karpenter does the
//! same with its NodeClaim objects; ours are read back from the API server
//! every pass (`nodeclaim`), these views are rebuilt from them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::catalog::CapacityType;
use crate::ir::{Resources, Taint, labels};
use crate::workload::{BoundPod, ExistingNode, Workload};

/// One claimed node that is not initialized yet, as planning sees it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Claim {
    /// Unique claim name (also the instance's `nodewright.io/claim` tag).
    pub name: String,
    pub pool: String,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
    /// Labels the node will carry.
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// Taints the node starts with: ignored while it stands for its room.
    pub startup_taints: Vec<Taint>,
    /// The room it will be (the planned type's allocatable).
    pub allocatable: Resources,
    /// DaemonSet overhead the solver counted on the node.
    pub overhead: Resources,
    /// "namespace/name" of the pods it was launched for.
    pub pods: BTreeSet<String>,
    /// The Node that registered for it, if one did.
    pub node_name: Option<String>,
    /// Its Node is usable as it is: the claim no longer stands in for it.
    pub initialized: bool,
}

/// The claims of one pass, by name.
#[derive(Debug, Clone, Default)]
pub(super) struct Claims {
    map: BTreeMap<String, Claim>,
}

impl Claims {
    /// Adds a claim.
    pub(super) fn insert(&mut self, c: Claim) {
        self.map.insert(c.name.clone(), c);
    }

    /// Drops a claim (one being deleted this pass).
    pub(super) fn remove(&mut self, name: &str) {
        self.map.remove(name);
    }

    /// Whether a claim of this name exists.
    pub(super) fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// The claims whose Node registered, by Node name.
    pub(super) fn by_node(&self) -> HashMap<&str, &Claim> {
        self.map
            .values()
            .filter_map(|c| Some((c.node_name.as_deref()?, c)))
            .collect()
    }

    /// How many claims are not initialized yet.
    pub(super) fn in_flight(&self) -> usize {
        self.map.values().filter(|c| !c.initialized).count()
    }

    /// Adds every claim that is not initialized to `w` as the node it will
    /// be, moving its still-pending pods from the pending classes onto it.
    /// A claim whose Node registered replaces that Node's room: its startup
    /// taints are ignored and its allocatable is at least the planned one
    /// (a GPU node before its device plugin reports offers the GPUs it was
    /// planned for).
    pub(super) fn fold_into(&self, w: &mut Workload) {
        for c in self.map.values().filter(|c| !c.initialized) {
            let registered = c
                .node_name
                .as_deref()
                .and_then(|n| w.nodes.iter().position(|x| x.name == n));
            let mut node = match registered {
                Some(i) => {
                    let mut n = w.nodes.remove(i);
                    n.allocatable = n.allocatable.max(&c.allocatable);
                    n.used = n.used.max(&c.overhead);
                    n.taints
                        .retain(|t| !c.startup_taints.iter().any(|s| s.key == t.key));
                    for (k, v) in &c.labels {
                        n.labels.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                    n
                }
                None => {
                    if c.allocatable == Resources::zero() && c.pods.is_empty() {
                        continue;
                    }
                    ExistingNode {
                        name: c.name.clone(),
                        labels: c.labels.clone(),
                        taints: c.taints.clone(),
                        allocatable: c.allocatable.clone(),
                        used: c.overhead.clone(),
                        pods: Vec::new(),
                    }
                }
            };
            // A registered node keeps its place in the node order.
            let at = registered.unwrap_or(w.nodes.len());
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
                        host_ports: class.host_ports.clone(),
                    });
                }
            }
            w.nodes.insert(at, node);
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
    use crate::ir::{Resources, TaintEffect};
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

    pub(crate) fn claim(name: &str, pods: &[&str]) -> Claim {
        Claim {
            name: name.into(),
            pool: "general".into(),
            instance_type: "m5.large".into(),
            zone: "us-east-1a".into(),
            capacity_type: CapacityType::OnDemand,
            labels: [(labels::ZONE.to_string(), "us-east-1a".to_string())].into(),
            taints: vec![],
            startup_taints: vec![],
            allocatable: res(1930, 7, 29),
            overhead: res(100, 0, 1),
            pods: pods.iter().map(|s| s.to_string()).collect(),
            node_name: None,
            initialized: false,
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
        cs.insert(claim("general-x1y2z", &["shop/a", "shop/c", "shop/gone"]));
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
        assert_eq!(cs.in_flight(), 1);
        // A claim whose pods are all gone leaves no empty class behind.
        let mut w2 = Workload {
            classes: vec![class("shop", &["a"])],
            ..Default::default()
        };
        cs.fold_into(&mut w2);
        assert!(w2.classes.is_empty());
        // A claim without room or pods adds no node; an initialized one neither.
        let mut empty = claim("general-abcde", &[]);
        empty.allocatable = Resources::zero();
        let mut done = claim("general-done1", &["shop/a"]);
        done.initialized = true;
        let mut only = Claims::default();
        only.insert(empty);
        only.insert(done);
        let mut w3 = Workload {
            classes: vec![class("shop", &["a"])],
            ..Default::default()
        };
        only.fold_into(&mut w3);
        assert!(w3.nodes.is_empty());
        assert_eq!(w3.classes.len(), 1, "an initialized claim carries no pods");
        assert_eq!(only.in_flight(), 1);
    }

    #[test]
    fn a_registered_claim_replaces_its_nodes_room_until_initialized() {
        let startup = Taint {
            key: "example.com/agent-not-ready".into(),
            value: None,
            effect: TaintEffect::NoExecute,
        };
        let real = Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: TaintEffect::NoSchedule,
        };
        let other = ExistingNode {
            name: "someone-else".into(),
            labels: BTreeMap::new(),
            taints: vec![],
            allocatable: res(2000, 8, 29),
            used: Resources::zero(),
            pods: vec![],
        };
        // The Node as it registered: under the startup taint, no GPUs yet,
        // one DaemonSet pod on it.
        let registered = ExistingNode {
            name: "ip-10-0-0-1.ec2.internal".into(),
            labels: [(labels::HOSTNAME.to_string(), "ip-10-0-0-1".to_string())].into(),
            taints: vec![startup.clone(), real.clone()],
            allocatable: res(3920, 15, 58),
            used: res(50, 0, 1),
            pods: vec![],
        };
        let mut w = Workload {
            classes: vec![class("ml", &["train-0", "train-1"])],
            nodes: vec![registered, other],
            ..Default::default()
        };
        let mut c = claim("gpu-k3j2h", &["ml/train-0"]);
        c.node_name = Some("ip-10-0-0-1.ec2.internal".into());
        c.startup_taints = vec![startup];
        c.taints = vec![real.clone()];
        c.allocatable = res(3920, 15, 58);
        c.allocatable.extended.insert("nvidia.com/gpu".into(), 1);
        let mut cs = Claims::default();
        cs.insert(c.clone());
        cs.fold_into(&mut w);
        assert_eq!(w.nodes.len(), 2, "the claim is the Node, not a second node");
        let n = &w.nodes[0];
        assert_eq!(n.name, "ip-10-0-0-1.ec2.internal", "keeps its place");
        assert_eq!(n.taints, vec![real], "the startup taint is ignored");
        assert_eq!(n.allocatable.get("nvidia.com/gpu"), 1, "planned GPUs count");
        assert_eq!(
            n.labels.get(labels::HOSTNAME).map(String::as_str),
            Some("ip-10-0-0-1"),
            "the Node's own labels win"
        );
        assert_eq!(
            n.used,
            res(600, 1, 2),
            "the larger of the overheads, plus one pod"
        );
        assert_eq!(w.classes[0].pod_names, ["train-1"]);
        // Initialized: the Node stands for itself again.
        let mut w2 = Workload {
            nodes: vec![ExistingNode {
                name: "ip-10-0-0-1.ec2.internal".into(),
                labels: BTreeMap::new(),
                taints: vec![],
                allocatable: res(3920, 15, 58),
                used: Resources::zero(),
                pods: vec![],
            }],
            ..Default::default()
        };
        c.initialized = true;
        let mut done = Claims::default();
        done.insert(c);
        done.fold_into(&mut w2);
        assert_eq!(w2.nodes[0].allocatable.get("nvidia.com/gpu"), 0);
    }

    #[test]
    fn claim_suffixes_are_random() {
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

    #[test]
    fn provider_ids_name_instances() {
        assert_eq!(
            instance_id_of("aws:///us-east-1a/i-0abc123"),
            Some("i-0abc123")
        );
        assert_eq!(instance_id_of("aws:///i-0abc123"), Some("i-0abc123"));
        assert_eq!(instance_id_of("gce://p/z/n"), None);
        assert_eq!(instance_id_of("aws:///us-east-1a/"), None);
    }
}
