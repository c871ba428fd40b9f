//! Kubernetes objects → the consolidation input: the cluster as the solver sees it, the
//! workload pods of each node as classes, and each node's disruption facts (do-not-disrupt,
//! PodDisruptionBudgets, price). `nodewright plan --consolidate` and the controller build
//! the input through these functions, so both decide on the same facts.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::consolidate::{BudgetLeft, Cluster, NodeFacts, NodePods, Reason};
use crate::catalog::{CapacityType, Catalog, node_labels::POOL_LABEL};
use crate::ir::{BudgetNodes, DisruptionReason, PolicySet, labels};
use crate::workload::{ApiObjects, WorkloadError, load_api};

/// The annotations that block voluntary disruption when `"true"` (on a pod or a node).
pub const DO_NOT_DISRUPT: [&str; 2] = [
    "karpenter.sh/do-not-disrupt",
    "nodewright.io/do-not-disrupt",
];

/// The objects of a cluster that consolidation reads.
#[derive(Debug, Clone, Default)]
pub struct ClusterObjects {
    pub nodes: Vec<core::Node>,
    pub pods: Vec<core::Pod>,
    pub daemonsets: Vec<DaemonSet>,
    pub pdbs: Vec<PodDisruptionBudget>,
}

/// Builds the cluster, the pods of each node and the nodes' facts from `objs`. Prices come
/// from `catalog` (the offering of the node's type, zone and capacity type). `stable_for`
/// is left unknown (None): the caller that knows when each node last changed sets it.
pub fn gather(catalog: &Catalog, objs: ClusterObjects) -> Result<Cluster, WorkloadError> {
    let cluster = load_api(
        "cluster",
        ApiObjects {
            nodes: objs.nodes.clone(),
            daemonsets: objs.daemonsets.clone(),
            pods: objs.pods.clone(),
            ..ApiObjects::default()
        },
    )?
    .workload;
    // The workload pods of each node, loaded as if pending, to get their classes.
    let mut node_of: HashMap<String, String> = HashMap::new();
    let mut movable = Vec::new();
    for p in &objs.pods {
        let Some(node) = bound_node(p) else { continue };
        if !is_workload(p) {
            continue;
        }
        node_of.insert(key(p), node.to_string());
        let mut p = p.clone();
        if let Some(s) = p.spec.as_mut() {
            s.node_name = None;
        }
        movable.push(p);
    }
    let classes = load_api(
        "bound pods",
        ApiObjects {
            pods: movable,
            ..ApiObjects::default()
        },
    )?
    .workload
    .classes;
    let mut per_node: BTreeMap<String, Vec<crate::workload::PodClass>> = BTreeMap::new();
    for c in classes {
        let mut by_node: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for name in &c.pod_names {
            if let Some(n) = node_of.get(&format!("{}/{name}", c.namespace)) {
                by_node.entry(n).or_default().push(name.clone());
            }
        }
        for (n, names) in by_node {
            per_node
                .entry(n.to_string())
                .or_default()
                .push(crate::workload::PodClass {
                    pod_names: names,
                    ..c.clone()
                });
        }
    }
    let pods = per_node
        .into_iter()
        .map(|(node, classes)| NodePods { node, classes })
        .collect();
    let blockers = pdb_blockers(&objs.pdbs, &objs.pods);
    let prices = prices(catalog);
    let mut nodes = Vec::new();
    for n in &objs.nodes {
        let name = n.metadata.name.clone().unwrap_or_default();
        let l = n.metadata.labels.clone().unwrap_or_default();
        let get = |k: &str| l.get(k).cloned().unwrap_or_default();
        let capacity_type =
            CapacityType::parse(&get(labels::CAPACITY_TYPE)).unwrap_or(CapacityType::OnDemand);
        let instance_type = get(labels::INSTANCE_TYPE);
        let zone = get(labels::ZONE);
        let price_per_hour = prices
            .get(&(instance_type.clone(), zone.clone(), capacity_type))
            .copied()
            .unwrap_or(0.0);
        let mut do_not_disrupt = annotated(&n.metadata).map(|k| format!("node annotation {k}"));
        let mut pdb_blocked = None;
        for p in objs
            .pods
            .iter()
            .filter(|p| bound_node(p) == Some(name.as_str()))
        {
            if do_not_disrupt.is_none() && is_workload(p) && annotated(&p.metadata).is_some() {
                do_not_disrupt = Some(format!("pod {}", key(p)));
            }
            if pdb_blocked.is_none() && is_workload(p) {
                pdb_blocked = blockers.get(&key(p)).cloned();
            }
        }
        nodes.push(NodeFacts {
            name,
            pool: l.get(POOL_LABEL).cloned(),
            initialized: ready(n),
            instance_type,
            zone,
            capacity_type,
            price_per_hour,
            stable_for: None,
            do_not_disrupt,
            pdb_blocked,
        });
    }
    Ok(Cluster {
        cluster,
        pods,
        nodes,
    })
}

/// The budgets of each pool as they stand without a clock: the smallest of the budgets
/// that apply to the reason and have no schedule (a scheduled budget is only open in its
/// window, which an offline run cannot know), N% of the pool's nodes rounded up as
/// Karpenter does.
pub fn static_budgets(policy: &PolicySet, nodes: &[NodeFacts]) -> BTreeMap<String, BudgetLeft> {
    let mut out = BTreeMap::new();
    for pool in &policy.pools {
        let total = nodes
            .iter()
            .filter(|f| f.pool.as_deref() == Some(pool.name.as_str()))
            .count();
        let allowed = |reason: Reason| {
            pool.disruption
                .budgets
                .iter()
                .filter(|b| b.schedule.is_none())
                .filter(|b| {
                    b.reasons.is_empty()
                        || b.reasons.iter().any(|r| match reason {
                            Reason::Empty => matches!(r, DisruptionReason::Empty),
                            Reason::Underutilized => matches!(r, DisruptionReason::Underutilized),
                        })
                })
                .map(|b| match b.nodes {
                    BudgetNodes::Count(n) => n as usize,
                    BudgetNodes::Percent(p) => (total * p as usize).div_ceil(100),
                })
                .min()
        };
        out.insert(
            pool.name.clone(),
            BudgetLeft {
                empty: allowed(Reason::Empty),
                underutilized: allowed(Reason::Underutilized),
            },
        );
    }
    out
}

/// The node a pod is bound to.
fn bound_node(p: &core::Pod) -> Option<&str> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Not finished, not a DaemonSet's and not a mirror pod: a pod that moves with its node.
fn is_workload(p: &core::Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    let owned_by = |kind: &str| {
        p.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == kind && o.controller == Some(true))
    };
    let mirror = p
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    !(owned_by("DaemonSet") || owned_by("Node") || mirror)
}

fn key(p: &core::Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or("default"),
        p.metadata.name.as_deref().unwrap_or("")
    )
}

/// The do-not-disrupt annotation set to "true" on an object, if any.
fn annotated(
    m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<&'static str> {
    let a = m.annotations.as_ref()?;
    DO_NOT_DISRUPT
        .into_iter()
        .find(|k| a.get(*k).is_some_and(|v| v == "true"))
}

/// Ready (a node listed without conditions, as hand-written files are, counts as ready).
fn ready(n: &core::Node) -> bool {
    let conds = n.status.as_ref().and_then(|s| s.conditions.as_ref());
    match conds.and_then(|c| c.iter().find(|c| c.type_ == "Ready")) {
        Some(c) => c.status == "True",
        None => true,
    }
}

/// Running and Ready (Running without conditions counts, as in hand-written files).
fn healthy(p: &core::Pod) -> bool {
    let Some(st) = &p.status else { return false };
    if st.phase.as_deref() != Some("Running") {
        return false;
    }
    match st.conditions.iter().flatten().find(|c| c.type_ == "Ready") {
        Some(c) => c.status == "True",
        None => true,
    }
}

fn selects(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let v = labels.get(&e.key);
        let vals = e.values.as_deref().unwrap_or(&[]);
        match e.operator.as_str() {
            "In" => v.is_some_and(|v| vals.contains(v)),
            "NotIn" => v.is_none_or(|v| !vals.contains(v)),
            "Exists" => v.is_some(),
            "DoesNotExist" => v.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// An int or a percent of `of` (rounded up, as the disruption controller does).
fn scaled(v: &IntOrString, of: i64) -> i64 {
    match v {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(s) => {
            let p: i64 = s.trim_end_matches('%').trim().parse().unwrap_or(0);
            (of * p + 99) / 100
        }
    }
}

/// How many of its pods a PDB lets be evicted now: healthy pods minus the desired healthy
/// count (from `minAvailable` or `maxUnavailable`, over the pods it selects), at least 0.
pub fn pdb_allowed(pdb: &PodDisruptionBudget, pods: &[core::Pod]) -> i64 {
    let ns = pdb.metadata.namespace.as_deref().unwrap_or("default");
    let Some(spec) = &pdb.spec else {
        return i64::MAX;
    };
    let Some(sel) = &spec.selector else {
        return i64::MAX;
    };
    let matching: Vec<&core::Pod> = pods
        .iter()
        .filter(|p| p.metadata.namespace.as_deref().unwrap_or("default") == ns)
        .filter(|p| {
            let l = p.metadata.labels.clone().unwrap_or_default();
            selects(sel, &l)
        })
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .collect();
    let expected = matching.len() as i64;
    let healthy = matching.iter().filter(|p| healthy(p)).count() as i64;
    let desired = match (&spec.min_available, &spec.max_unavailable) {
        (Some(m), _) => scaled(m, expected),
        (None, Some(u)) => expected - scaled(u, expected),
        (None, None) => expected - 1,
    };
    (healthy - desired).max(0)
}

/// Pod `ns/name` → the PDB (`ns/name`) that allows none of its pods to be evicted now.
fn pdb_blockers(pdbs: &[PodDisruptionBudget], pods: &[core::Pod]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pdb in pdbs {
        if pdb_allowed(pdb, pods) > 0 {
            continue;
        }
        let ns = pdb.metadata.namespace.as_deref().unwrap_or("default");
        let name = format!("{ns}/{}", pdb.metadata.name.as_deref().unwrap_or(""));
        let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            continue;
        };
        for p in pods {
            if p.metadata.namespace.as_deref().unwrap_or("default") == ns
                && selects(sel, &p.metadata.labels.clone().unwrap_or_default())
            {
                out.entry(key(p)).or_insert_with(|| name.clone());
            }
        }
    }
    out
}

/// $/hour by (type, zone, capacity type), from the catalog.
fn prices(cat: &Catalog) -> HashMap<(String, String, CapacityType), f64> {
    let mut out = HashMap::new();
    for o in &cat.offerings {
        let (Some(t), Some(z), Some(p)) = (
            cat.types.get(o.type_index as usize),
            cat.zones.get(o.zone_index as usize),
            o.price,
        ) else {
            continue;
        };
        out.entry((t.name.clone(), z.name.clone(), o.capacity_type))
            .or_insert(p);
    }
    out
}
