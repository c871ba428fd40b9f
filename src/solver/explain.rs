//! Why a pod can (not) go somewhere: for every pool, the instance types it
//! rejects grouped by the first reason that rules them out, phrased so a
//! user can act on it.

use std::collections::BTreeMap;

use crate::ir::resources::format_amount;
use crate::ir::{PlacementKind, labels};
use crate::workload::untolerated;

use super::tables::{Tables, Variant, copies, fits};
use super::{Plan, SolveInput};

/// The explanation of one pod.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Explanation {
    /// "namespace/name".
    pub pod: String,
    /// Where the plan put it ("node general-1 (m5.large, us-east-1a, on-demand)"), if anywhere.
    pub placed: Option<String>,
    /// One line per pool (and per group of rejected types within it).
    pub reasons: Vec<String>,
}

/// Explains pod `pod` ("namespace/name", or a bare name) against the plan.
/// None when no pending pod has that name.
pub(crate) fn explain_pod(input: &SolveInput<'_>, plan: &Plan, pod: &str) -> Option<Explanation> {
    let classes = &input.workload.classes;
    let (c, key) = classes.iter().enumerate().find_map(|(ci, cl)| {
        (0..cl.count()).find_map(|i| {
            let k = cl.pod_key(i);
            (k == pod || cl.pod_names[i] == pod).then_some((ci, k))
        })
    })?;
    let placed = plan
        .nodes
        .iter()
        .find(|n| n.pods.contains(&key))
        .map(|n| {
            format!(
                "new node {} ({}, {}, {}, ${:.4}/h)",
                n.name,
                n.instance_type,
                n.zone,
                n.capacity_type.as_str(),
                n.price_per_hour
            )
        })
        .or_else(|| {
            plan.existing
                .iter()
                .find(|e| e.pods.contains(&key))
                .map(|e| format!("existing node {}", e.node))
        });
    Some(Explanation {
        pod: key,
        placed,
        reasons: class_reasons(input, c),
    })
}

/// The explanation of a workload's pods, taken together: replicas of one
/// Deployment usually share one answer, and 300 copies of it help nobody.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct GroupExplanation {
    /// "Kind namespace/name" of the owning workload.
    pub workload: String,
    /// How many pending pods it has in this shape.
    pub pods: usize,
    /// Where the plan put them: "new node general-1 (m5.large, …)" → pod count,
    /// plus "unschedulable" for those that fit nowhere.
    pub placed: BTreeMap<String, usize>,
    /// One line per pool, as for a single pod.
    pub reasons: Vec<String>,
}

/// Explains the pending pods of a workload (Deployment, StatefulSet, Job,
/// CronJob, ...) named `name`: `[namespace/]name`, optionally with the kind
/// (`Deployment/web`, `shop/Deployment/web`; the kind matches any case).
/// One explanation per distinct pod shape; empty when nothing matches.
pub(crate) fn explain_workload(
    input: &SolveInput<'_>,
    plan: &Plan,
    name: &str,
) -> Vec<GroupExplanation> {
    let parts: Vec<&str> = name.split('/').collect();
    let (ns, kind, wname) = match parts.as_slice() {
        [n] => (None, None, *n),
        [a, b] => {
            // `Kind/name` when `a` is capitalised like a kind, else `namespace/name`.
            if a.chars().next().is_some_and(char::is_uppercase) {
                (None, Some(*a), *b)
            } else {
                (Some(*a), None, *b)
            }
        }
        [n, k, w] => (Some(*n), Some(*k), *w),
        _ => return Vec::new(),
    };
    let mut where_is: BTreeMap<&str, String> = BTreeMap::new();
    for n in &plan.nodes {
        let at = format!(
            "new node {} ({}, {}, {})",
            n.name,
            n.instance_type,
            n.zone,
            n.capacity_type.as_str()
        );
        for p in &n.pods {
            where_is.insert(p.as_str(), at.clone());
        }
    }
    for e in &plan.existing {
        for p in &e.pods {
            where_is.insert(p.as_str(), format!("existing node {}", e.node));
        }
    }
    let mut t = Tables::new(input);
    let mut out = Vec::new();
    for (c, class) in input.workload.classes.iter().enumerate() {
        let Some(owner) = &class.owner else { continue };
        if owner.name != wname
            || ns.is_some_and(|n| n != class.namespace)
            || kind.is_some_and(|k| !k.eq_ignore_ascii_case(&owner.kind))
        {
            continue;
        }
        let mut placed = BTreeMap::new();
        for i in 0..class.count() {
            let key = class.pod_key(i);
            let at = where_is
                .get(key.as_str())
                .cloned()
                .unwrap_or_else(|| "unschedulable".to_string());
            *placed.entry(at).or_insert(0) += 1;
        }
        out.push(GroupExplanation {
            workload: format!("{} {}/{}", owner.kind, class.namespace, owner.name),
            pods: class.count(),
            placed,
            reasons: reasons_with(&mut t, c),
        });
    }
    out
}

/// For class `c`, one line per pool saying which offerings it rules out and why.
pub(crate) fn class_reasons(input: &SolveInput<'_>, c: usize) -> Vec<String> {
    let mut t = Tables::new(input);
    reasons_with(&mut t, c)
}

/// Like `class_reasons`, reusing compiled tables.
pub(crate) fn reasons_with(t: &mut Tables<'_>, c: usize) -> Vec<String> {
    let input = t.input;
    let cat = input.catalog;
    let class = &input.workload.classes[c];
    let mut req = t.dims.rv(&class.requests);
    req[3] = req[3].max(1);
    let mut out = Vec::new();
    if input.policy.pools.is_empty() {
        out.push("no pools are defined".to_string());
    }
    let strict = Variant {
        pref_node: 0,
        prefer_rules: 0,
        pref_pod: 0,
        soft_spread: false,
    };
    for (p, pool) in input.policy.pools.iter().enumerate() {
        if let Some(taint) = untolerated(&class.tolerations, &pool.taints) {
            out.push(format!("pool {}: taint {taint} not tolerated", pool.name));
            continue;
        }
        // reason → set of type names
        let mut groups: BTreeMap<String, (Vec<u32>, i64)> = BTreeMap::new();
        let mut fit = 0usize;
        let usable_class = t.class_bits(p, c, &strict);
        for (oi, off) in cat.offerings.iter().enumerate() {
            if off.type_index as usize >= cat.types.len() {
                continue;
            }
            let zone = cat
                .zones
                .get(off.zone_index as usize)
                .map(|z| z.name.as_str())
                .unwrap_or("");
            let reason: (String, i64) = if let Some(r) = t.offering_reject(p, oi) {
                (r.to_string(), 0)
            } else if let Some(k) = class.node_selector.keys.iter().find_map(|(k, set)| {
                (!set.allows_opt(super::tables::pool_offering_label(cat, pool, off, k))
                    && super::tables::is_catalog_key(k))
                .then(|| format!("nodeSelector {k} {set}"))
            }) {
                (k, 0)
            } else if !class.required_affinity.is_empty()
                && !class.required_affinity.iter().any(|term| {
                    term.matches(|k| super::tables::pool_offering_label(cat, pool, off, k))
                })
            {
                let terms: Vec<String> = class
                    .required_affinity
                    .iter()
                    .map(|term| {
                        term.keys
                            .iter()
                            .map(|(k, s)| format!("{k} {s}"))
                            .collect::<Vec<_>>()
                            .join(" and ")
                    })
                    .collect();
                (
                    format!("required node affinity ({}) not met", terms.join(" | ")),
                    0,
                )
            } else if let Some(zs) = &class.volume_zones
                && !zs.iter().any(|z| z == zone)
            {
                (
                    format!(
                        "zone {zone}: {}",
                        class
                            .volume_reason
                            .clone()
                            .unwrap_or_else(|| format!("volumes restricted to {}", zs.join(", ")))
                    ),
                    0,
                )
            } else if let Some(msg) = rule_block(t, p, c, oi) {
                (msg, 0)
            } else if let Some(msg) = t.ds_port_block(p, c, oi) {
                (msg, 0)
            } else if let Some(msg) = t.ds_pod_block(p, c, oi) {
                (msg, 0)
            } else if !usable_class.get(oi) {
                ("node requirements of the pod not met".to_string(), 0)
            } else if copies(&req, &t.pools[p].net[oi]) == 0 {
                let net = t.pools[p].net[oi];
                let i = (0..super::tables::D)
                    .find(|i| req[*i] > net[*i])
                    .unwrap_or(0);
                let name = t.dims.names.get(i).cloned().unwrap_or_default();
                let what = if t.pools[p].ds[oi][i] > 0 {
                    " (after DaemonSet overhead)"
                } else {
                    ""
                };
                (
                    format!(
                        "{name}{what}: at most {{max}} allocatable < {} requested",
                        format_amount(&name, req[i])
                    ),
                    net[i],
                )
            } else {
                let cap = t.type_cap[off.type_index as usize];
                if !fits(&cap, &t.pools[p].limit) {
                    ("larger than the pool's limits".to_string(), 0)
                } else {
                    fit += 1;
                    continue;
                }
            };
            let e = groups.entry(reason.0).or_insert((Vec::new(), i64::MIN));
            e.0.push(off.type_index);
            e.1 = e.1.max(reason.1);
        }
        for (reason, (mut types, max)) in groups {
            types.sort_unstable();
            types.dedup();
            let resource = reason
                .split(':')
                .next()
                .unwrap_or("")
                .split(' ')
                .next()
                .unwrap_or("");
            let reason = reason.replace("{max}", &format_amount(resource, max));
            let who = if types.len() == 1 {
                cat.types[types[0] as usize].name.clone()
            } else {
                format!("{} types", types.len())
            };
            out.push(format!("pool {}: {who}: {reason}", pool.name));
        }
        if fit > 0 {
            out.push(format!(
                "pool {}: {fit} offering(s) fit this pod; if it is unschedulable, its topology \
                 constraints, pod (anti-)affinity or the pool's limits ruled them out",
                pool.name
            ));
            if let Some(lines) = topology_lines(input, c) {
                for l in lines {
                    out.push(format!("pool {}: {l}", pool.name));
                }
            }
        }
    }
    out
}

fn rule_block(t: &mut Tables<'_>, p: usize, c: usize, o: usize) -> Option<String> {
    let rules = t.class_rules[c].clone();
    for r in rules {
        let b = t.rule_bits(p, r, c);
        let rule = &t.input.policy.placement[r];
        let at = rule
            .origin
            .as_ref()
            .map(|o| format!(" at {o}"))
            .unwrap_or_default();
        match rule.kind {
            PlacementKind::Require if !b.get(o) => {
                return Some(format!("placement rule{at} requires other nodes"));
            }
            PlacementKind::Deny if b.get(o) => {
                return Some(format!("placement rule{at} denies these nodes"));
            }
            _ => {}
        }
    }
    None
}

fn topology_lines(input: &SolveInput<'_>, c: usize) -> Option<Vec<String>> {
    let class = &input.workload.classes[c];
    let mut out = Vec::new();
    for s in &class.topology_spread {
        out.push(format!(
            "topology spread on {} (maxSkew {}, {})",
            s.topology_key,
            s.max_skew,
            if s.hard {
                "DoNotSchedule"
            } else {
                "ScheduleAnyway"
            }
        ));
    }
    for a in &class.pod_affinity {
        out.push(format!(
            "{} pod {}affinity on {}",
            if a.weight.is_some() {
                "preferred"
            } else {
                "required"
            },
            if a.anti { "anti-" } else { "" },
            a.topology_key
        ));
    }
    for hp in &class.host_ports {
        out.push(format!(
            "{hp}: one pod per node holds it (kube-scheduler's NodePorts), so its pods need a node each"
        ));
    }
    let _ = labels::ZONE;
    (!out.is_empty()).then_some(out)
}
