//! Kubernetes objects → the solver's view of pending work.
//!
//! Identical pods are grouped into one `PodClass` (a 500-replica Deployment is
//! one class with 500 names); DaemonSets become per-node overhead; existing
//! Nodes with their bound pods become spare capacity.

use std::collections::BTreeMap;

mod build;
mod ctx;
mod depth;
mod error;
mod labels;
mod load;
mod names;
mod nodes;
mod pods;
mod read;
mod snippet;
mod volumes;
mod yaml;

pub use error::{ErrorKind, InputError, Note, WorkloadError};
pub use labels::{key_problem as label_key_problem, value_problem as label_value_problem};
pub use load::{
    ApiObjects, DEFAULT_MAX_PODS, LoadOptions, Loaded, load, load_api, load_bytes, load_files,
    load_nodes, load_str, load_text,
};
pub use names::ALPHABET as NAME_ALPHABET;
pub use snippet::Snippet;
pub use volumes::ZONE_KEYS as VOLUME_ZONE_KEYS;

use serde::{Deserialize, Serialize};

use crate::ir::{Operator, Requirements, Resources, Taint, TaintEffect};

/// Everything the solver needs from the cluster side.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Pending pods, grouped.
    pub classes: Vec<PodClass>,
    /// Per-node overhead from DaemonSets.
    pub daemonsets: Vec<DaemonSetOverhead>,
    /// Nodes already in the cluster, with their free capacity.
    pub nodes: Vec<ExistingNode>,
}

/// A group of pending pods with identical scheduling constraints and requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodClass {
    /// Stable id within the workload (index-independent, for diagnostics).
    pub id: String,
    pub namespace: String,
    /// One name per pod; `pod_names.len()` is the class's count.
    pub pod_names: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub owner: Option<OwnerRef>,
    pub priority_class: Option<String>,
    pub priority: i32,
    /// Effective requests per pod: max(sum of app containers, largest init
    /// container) plus pod overhead; `pods` is 1.
    pub requests: Resources,
    /// nodeSelector, as `In` requirements.
    pub node_selector: Requirements,
    /// Required node affinity: any one term must hold (OR). Empty = no constraint.
    pub required_affinity: Vec<Requirements>,
    /// Preferred node affinity terms with their weights.
    pub preferred_affinity: Vec<(i32, Requirements)>,
    pub tolerations: Vec<Toleration>,
    pub topology_spread: Vec<TopologySpread>,
    pub pod_affinity: Vec<PodAffinityTerm>,
    /// Zones allowed by zonal volumes (PVCs bound to zonal PVs, or
    /// WaitForFirstConsumer classes restricted to zones); None = any zone.
    pub volume_zones: Option<Vec<String>>,
    /// Why `volume_zones` is restricted ("PVC data-0 bound to us-east-1a"), for explain.
    pub volume_reason: Option<String>,
    /// Host ports its containers bind: two pods whose ports conflict never
    /// share a node (kube-scheduler's NodePorts filter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_ports: Vec<HostPort>,
}

impl PodClass {
    /// A class of `pod_names` in `namespace` asking for `requests`, with no labels and no
    /// scheduling constraints: what synthetic workloads and tests start from (set the
    /// constraints they need with struct update syntax).
    pub fn plain(
        id: impl Into<String>,
        namespace: impl Into<String>,
        pod_names: Vec<String>,
        requests: Resources,
    ) -> PodClass {
        PodClass {
            id: id.into(),
            namespace: namespace.into(),
            pod_names,
            labels: BTreeMap::new(),
            owner: None,
            priority_class: None,
            priority: 0,
            requests,
            node_selector: Requirements::new(),
            required_affinity: vec![],
            preferred_affinity: vec![],
            tolerations: vec![],
            topology_spread: vec![],
            pod_affinity: vec![],
            volume_zones: None,
            volume_reason: None,
            host_ports: vec![],
        }
    }

    /// How many pods the class holds.
    pub fn count(&self) -> usize {
        self.pod_names.len()
    }

    /// "namespace/name" of pod `i`.
    pub fn pod_key(&self, i: usize) -> String {
        // Built by hand: a plan names every pod, and `format!` was a
        // visible share of a 10k-pod solve.
        let name = &self.pod_names[i];
        let mut key = String::with_capacity(self.namespace.len() + 1 + name.len());
        key.push_str(&self.namespace);
        key.push('/');
        key.push_str(name);
        key
    }
}

/// A port a pod binds on its node's network (`containers[].ports[].hostPort`).
/// Only one pod on a node may hold a given port, protocol and address, so
/// the solver treats conflicting pods like hostname anti-affinity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HostPort {
    pub port: i32,
    /// `TCP` (the API's default), `UDP` or `SCTP`.
    pub protocol: String,
    /// The address bound; `0.0.0.0` (also for an empty `hostIP`) binds all of them.
    pub host_ip: String,
}

/// The address an empty `hostIP` stands for: every address on the node.
pub const ALL_HOST_IPS: &str = "0.0.0.0";

impl HostPort {
    /// Whether `self` and `other` cannot be bound on one node, as
    /// kube-scheduler's `HostPortInfo.CheckConflict` decides: same port and
    /// protocol, and the same address or either one binding all addresses.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.host_ip == other.host_ip
                || self.host_ip == ALL_HOST_IPS
                || other.host_ip == ALL_HOST_IPS)
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host_ip == ALL_HOST_IPS {
            write!(f, "host port {}/{}", self.port, self.protocol)
        } else {
            write!(
                f,
                "host port {}:{}/{}",
                self.host_ip, self.port, self.protocol
            )
        }
    }
}

/// The first port of `a` that conflicts with one of `b`, if any.
pub fn port_conflict<'a>(a: &'a [HostPort], b: &[HostPort]) -> Option<&'a HostPort> {
    a.iter().find(|p| b.iter().any(|q| p.conflicts(q)))
}

/// A pod's controlling owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRef {
    pub kind: String,
    pub name: String,
}

/// A Kubernetes toleration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Toleration {
    /// None (with `Exists`) tolerates every key.
    pub key: Option<String>,
    /// `Equal` (default) or `Exists`.
    pub operator: TolerationOperator,
    pub value: Option<String>,
    /// None tolerates every effect.
    pub effect: Option<TaintEffect>,
}

/// A toleration's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TolerationOperator {
    Equal,
    Exists,
}

impl Toleration {
    /// Whether this toleration tolerates `taint`, per the Kubernetes rules.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if let Some(e) = self.effect
            && e != taint.effect
        {
            return false;
        }
        match (&self.key, self.operator) {
            (None, TolerationOperator::Exists) => true,
            (None, TolerationOperator::Equal) => false,
            (Some(k), op) => {
                if *k != taint.key {
                    return false;
                }
                match op {
                    TolerationOperator::Exists => true,
                    TolerationOperator::Equal => {
                        self.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
                    }
                }
            }
        }
    }
}

/// Whether `tolerations` tolerate every NoSchedule/NoExecute taint in `taints`
/// (PreferNoSchedule never blocks). Returns the first untolerated taint.
pub fn untolerated<'a>(tolerations: &[Toleration], taints: &'a [Taint]) -> Option<&'a Taint> {
    taints.iter().find(|t| {
        t.effect != TaintEffect::PreferNoSchedule && !tolerations.iter().any(|tol| tol.tolerates(t))
    })
}

/// A label selector (matchLabels AND matchExpressions).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    /// (key, operator, values); operators In, NotIn, Exists, DoesNotExist.
    pub match_expressions: Vec<(String, Operator, Vec<String>)>,
}

impl LabelSelector {
    /// Whether a pod with `labels` is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|(k, op, vals)| {
                let v = labels.get(k);
                match op {
                    Operator::In => v.is_some_and(|v| vals.contains(v)),
                    Operator::NotIn => v.is_none_or(|v| !vals.contains(v)),
                    Operator::Exists => v.is_some(),
                    Operator::DoesNotExist => v.is_none(),
                    Operator::Gt | Operator::Lt => false,
                }
            })
    }
}

/// A topology spread constraint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologySpread {
    pub max_skew: u32,
    /// `topology.kubernetes.io/zone`, `kubernetes.io/hostname`, `karpenter.sh/capacity-type`, ...
    pub topology_key: String,
    /// DoNotSchedule when true; ScheduleAnyway when false.
    pub hard: bool,
    pub min_domains: Option<u32>,
    /// With matchLabelKeys already folded into the selector.
    pub selector: LabelSelector,
    /// nodeAffinityPolicy/nodeTaintsPolicy: Honor (true) or Ignore.
    pub honor_node_affinity: bool,
    pub honor_node_taints: bool,
}

/// A pod (anti-)affinity term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodAffinityTerm {
    pub anti: bool,
    /// None = required; Some(weight) = preferred.
    pub weight: Option<i32>,
    pub topology_key: String,
    pub selector: LabelSelector,
    /// Namespaces the selector applies to (empty = the pod's own namespace).
    pub namespaces: Vec<String>,
    /// A namespaceSelector that matches all namespaces (`{}`).
    pub all_namespaces: bool,
}

/// Per-node overhead of a DaemonSet, on the nodes it would run on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonSetOverhead {
    pub namespace: String,
    pub name: String,
    pub requests: Resources,
    pub node_selector: Requirements,
    pub required_affinity: Vec<Requirements>,
    pub tolerations: Vec<Toleration>,
    /// Host ports its pods hold on every node they run on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_ports: Vec<HostPort>,
    /// Its pods' labels: kube-scheduler counts DaemonSet pods in pod
    /// (anti-)affinity and topology spread like any other pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A node already in the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExistingNode {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
    /// Sum of requests of pods bound to it (DaemonSets included).
    pub used: Resources,
    /// Pods bound to it, for topology spread and pod affinity counting.
    pub pods: Vec<BoundPod>,
}

/// A pod already bound to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundPod {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Host ports it holds on its node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_ports: Vec<HostPort>,
}

#[cfg(test)]
mod port_tests {
    use super::*;

    fn hp(port: i32, protocol: &str, ip: &str) -> HostPort {
        HostPort {
            port,
            protocol: protocol.into(),
            host_ip: ip.into(),
        }
    }

    /// kube-scheduler's `HostPortInfo.CheckConflict`: same port and protocol,
    /// and the same address or either one binding all.
    #[test]
    fn host_ports_conflict_as_kube_scheduler_decides() {
        let all80 = hp(80, "TCP", ALL_HOST_IPS);
        assert!(all80.conflicts(&all80));
        assert!(all80.conflicts(&hp(80, "TCP", "10.0.0.1")));
        assert!(hp(80, "TCP", "10.0.0.1").conflicts(&all80));
        assert!(!hp(80, "TCP", "10.0.0.1").conflicts(&hp(80, "TCP", "10.0.0.2")));
        assert!(!all80.conflicts(&hp(80, "UDP", ALL_HOST_IPS)));
        assert!(!all80.conflicts(&hp(81, "TCP", ALL_HOST_IPS)));
        let a = [hp(53, "UDP", ALL_HOST_IPS), hp(80, "TCP", "10.0.0.1")];
        assert_eq!(port_conflict(&a, std::slice::from_ref(&all80)), Some(&a[1]));
        assert_eq!(port_conflict(&a, &[hp(53, "TCP", ALL_HOST_IPS)]), None);
    }
}
