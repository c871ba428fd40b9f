//! The oracle regression cases of topology (tests/oracle/cases), planned
//! against the embedded catalog: each plan is accepted by the validator and
//! has the property kube-scheduler would refuse it without. Before generic
//! topology keys, the zone-id, instance-type and pool-label terms were
//! dropped with a note and these plans packed the pods together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::validate::validate;
use super::{Plan, SolveInput, solve};
use crate::catalog::Catalog;
use crate::ir::{PolicySet, labels};
use crate::workload::{LoadOptions, Workload, load_str};

const CASES: &str = "tests/oracle/cases";

fn policy(name: &str) -> PolicySet {
    let own = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(CASES)
        .join(format!("{name}.policy"));
    let path = if own.exists() {
        own
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/default.policy")
    };
    let text = std::fs::read_to_string(&path).expect("policy readable");
    let file = crate::policy::parse(&path.to_string_lossy(), &text).expect("policy parses");
    crate::policy::compile(&[file]).expect("policy compiles").0
}

fn workload(name: &str) -> Workload {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(CASES)
        .join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).expect("case readable");
    load_str(&path.to_string_lossy(), &text, &LoadOptions::default()).expect("case loads")
}

/// Plans case `name`; the validator must accept the plan.
fn plan(name: &str) -> Plan {
    let cat = Catalog::embedded().expect("embedded catalog");
    let p = policy(name);
    let w = workload(name);
    let input = SolveInput {
        policy: &p,
        catalog: &cat,
        workload: &w,
        scorer: None,
        unavailable: None,
    };
    let plan = solve(&input);
    let errs = validate(&plan, &input);
    assert!(errs.is_empty(), "{name}: {errs:?}");
    assert!(
        !plan.notes.iter().any(|n| n.starts_with("ignored: ")),
        "{name}: {:?}",
        plan.notes
    );
    plan
}

/// Per pod (by name suffix match), the value of `key` on its node.
fn values_of(plan: &Plan, pod_prefix: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for n in &plan.nodes {
        for p in &n.pods {
            if p.contains(pod_prefix) {
                out.push(n.labels.get(key).cloned().unwrap_or_default());
            }
        }
    }
    out
}

fn skew(values: &[String], domains: usize) -> usize {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(v).or_insert(0) += 1;
    }
    let max = counts.values().copied().max().unwrap_or(0);
    let min = if counts.len() < domains {
        0
    } else {
        counts.values().copied().min().unwrap_or(0)
    };
    max - min
}

#[test]
fn spread_on_zone_id_is_honoured() {
    let plan = plan("spread-zone-id");
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    let ids = values_of(&plan, "/api-", labels::ZONE_ID);
    assert_eq!(ids.len(), 6);
    assert!(ids.iter().all(|v| !v.is_empty()), "{ids:?}");
    // The validator checks the skew over every eligible zone id; here, at
    // least that the pods are spread, not packed (one zone has no offering
    // the default policy allows).
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert!(distinct.len() >= 5, "{ids:?}");
    assert!(skew(&ids, distinct.len()) <= 1, "{ids:?}");
}

#[test]
fn anti_affinity_on_instance_type_keeps_types_apart() {
    let plan = plan("anti-affinity-instance-type");
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    let types = values_of(&plan, "/canary-", labels::INSTANCE_TYPE);
    assert_eq!(types.len(), 3);
    let distinct: BTreeSet<&String> = types.iter().collect();
    assert_eq!(distinct.len(), 3, "{types:?}");
    // A fallback of another type would land two replicas on one type.
    for n in &plan.nodes {
        assert!(
            n.instance_type_options
                .iter()
                .all(|o| *o.instance_type == *n.instance_type),
            "{}: {:?}",
            n.name,
            n.instance_type_options
        );
    }
}

#[test]
fn affinity_on_a_pool_label_follows_the_partner() {
    let plan = plan("affinity-pool-label");
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    let teams = values_of(&plan, "/worker-", "team");
    assert_eq!(teams.len(), 4);
    assert!(teams.iter().all(|t| t == "data"), "{teams:?}");
}

#[test]
fn min_domains_caps_each_zone_when_too_few_are_eligible() {
    let plan = plan("spread-min-domains");
    let ids = values_of(&plan, "/quorum-", labels::ZONE_ID);
    assert_eq!(ids.len(), 2, "{ids:?}");
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 2, "{ids:?}");
    assert_eq!(plan.unschedulable.len(), 1);
}

#[test]
fn match_label_keys_spread_each_version_alone() {
    let plan = plan("match-label-keys");
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    for v in ["shard-v1-", "shard-v2-"] {
        let zones = values_of(&plan, v, labels::ZONE);
        let distinct: BTreeSet<&String> = zones.iter().collect();
        assert_eq!(distinct.len(), 2, "{v}: {zones:?}");
    }
}

#[test]
fn anti_affinity_across_namespaces_keeps_tenants_apart() {
    let plan = plan("affinity-namespaces");
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    for n in &plan.nodes {
        let a = n.pods.iter().any(|p| p.starts_with("tenant-a/"));
        let b = n.pods.iter().any(|p| p.starts_with("tenant-b/"));
        assert!(!(a && b), "{}: {:?}", n.name, n.pods);
    }
}

/// Required anti-affinity on capacity type is symmetric: with one spot-only
/// pool, `backend` (anti to `frontend`) and `frontend` cannot both run.
/// Before the packer recorded placed pods' capacity-type anti-affinity, both
/// went onto one spot node and the validator refused the plan.
#[test]
fn anti_affinity_on_capacity_type_is_symmetric() {
    let plan = plan("anti-affinity-capacity-type-symmetric");
    assert_eq!(plan.unschedulable.len(), 1, "{:?}", plan.unschedulable);
    let placed: usize = plan.nodes.iter().map(|n| n.pods.len()).sum();
    assert_eq!(placed, 1);
}

/// DaemonSet pods count in pod anti-affinity: every node runs a `log-agent`
/// pod labelled tier=backend, and `web` refuses a node with a tier=backend
/// pod, so `web` is unschedulable, with the DaemonSet named. Before, the
/// plan placed both replicas and kube-scheduler refused them.
#[test]
fn daemonset_pods_count_in_pod_anti_affinity() {
    let plan = plan("daemonset-pods-in-pod-anti-affinity");
    assert!(plan.nodes.is_empty(), "{:?}", plan.nodes);
    assert_eq!(plan.unschedulable.len(), 2, "{:?}", plan.unschedulable);
    let reasons = plan.unschedulable[0].reasons.join("; ");
    assert!(reasons.contains("DaemonSet default/log-agent"), "{reasons}");
}

/// Two pods each requiring the other on their node: kube-scheduler binds
/// neither (the first-pod exception needs a pod matching its own term), so
/// the plan calls both unschedulable.
#[test]
fn affinity_cycle_without_self_match_is_unschedulable() {
    let plan = plan("affinity-cycle");
    assert!(plan.nodes.is_empty(), "{:?}", plan.nodes);
    assert_eq!(plan.unschedulable.len(), 2, "{:?}", plan.unschedulable);
}

/// Plans case `name` with its classes in the reverse order (as if the
/// workload were created the other way round), and validates that plan
/// against the case as written: kube-scheduler's binding order then differs
/// from the one the plan was made for.
fn reversed_plan_errors(name: &str) -> Vec<String> {
    let cat = Catalog::embedded().expect("embedded catalog");
    let p = policy(name);
    let w = workload(name);
    let mut rev = w.clone();
    rev.classes.reverse();
    let input = |w| SolveInput {
        policy: &p,
        catalog: &cat,
        workload: w,
        scorer: None,
        unavailable: None,
    };
    let plan = solve(&input(&rev));
    assert!(validate(&plan, &input(&rev)).is_empty(), "{name} reversed");
    validate(&plan, &input(&w))
}

/// Six plain `app=x` pods, created first, and three zone-spread pods
/// selecting `app=x`: kube-scheduler binds the plain pods first and counts
/// them in the spread, so no spread pod may land in a zone holding more
/// plain pods than the emptiest zone. Before, the packer placed the spread
/// pods first and the plain ones next to them, and kube-scheduler refused
/// one (8/9 bound). The validator replays the binding order: the plan made
/// for the other creation order is refused.
#[test]
fn spread_counts_matching_pods_bound_before_it() {
    let plan = plan("spread-counts-all-matching");
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    let plain = values_of(&plan, "/plain-", labels::ZONE);
    let spread = values_of(&plan, "/spread-", labels::ZONE);
    assert_eq!((plain.len(), spread.len()), (6, 3));
    // Some zone has no plain pod (the catalog has more zones than the plan
    // uses), so the minimum is 0 and each spread pod's zone must hold none.
    for z in &spread {
        assert!(
            !plain.contains(z),
            "spread pod in {z}, plain pods in {plain:?}"
        );
    }
    let errs = reversed_plan_errors("spread-counts-all-matching");
    assert!(errs.iter().any(|e| e.contains("skew")), "{errs:?}");
}

/// Two self-selecting affinity groups on `app=g`: `zonal` (zone, arm64,
/// created first) and `together` (hostname, prefers amd64). kube-scheduler
/// grants the first-pod exception to zonal-0, so every `together` pod must
/// sit on a node holding a `zonal` pod. Before, the packer started the
/// hostname group first, on an amd64 node of its own, and kube-scheduler
/// refused all three. The plan made for the other creation order is
/// refused by the validator.
#[test]
fn affinity_first_pod_follows_the_binding_order() {
    let plan = plan("affinity-binding-order");
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    for n in &plan.nodes {
        if n.pods.iter().any(|p| p.contains("/together-")) {
            assert!(
                n.pods.iter().any(|p| p.contains("/zonal-")),
                "{}: {:?}",
                n.name,
                n.pods
            );
        }
    }
    let errs = reversed_plan_errors("affinity-binding-order");
    assert!(errs.iter().any(|e| e.contains("pod affinity")), "{errs:?}");
}
