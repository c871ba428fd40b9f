//! The disruption pass: which claims to replace or remove now, as a pure
//! function of the claims, their Nodes and pods, the policy and the time.
//!
//! In order, within each pool's budgets (`crate::disrupt::budget`):
//! 1. **expired** claims (older than the pool's `expire-after`; do-not-disrupt
//!    does not hold them);
//! 2. **drifted** claims (`crate::disrupt::drift`; do-not-disrupt holds them);
//! 3. **empty** nodes: `steps::removals`, removed directly;
//! 4. consolidation's moves (**underutilized**, and empty nodes it names),
//!    each taken whole or not at all: its new nodes are launched first, its
//!    old ones removed once those are Initialized; a move that launches
//!    nothing removes its nodes directly.
//!
//! Expired and drifted claims are replaced first: a replacement claim of
//! the same offering, shaped by the pool as it is now (its labels, taints
//! and node class) and carrying the old node's pods, is written and
//! launched through the ordinary launch path. When the pool no longer admits
//! that offering, the node's pods are re-planned on the pool as it is now
//! ([`replan`]) and that plan's nodes replace it. The old claim records it in
//! the annotation [`REPLACING`] (and why in [`REPLACING_REASON`]), so a
//! restarted controller resumes: once the replacement is `Initialized` the
//! old claim goes to termination; if the replacement is gone (its launch
//! failed), the annotation is lifted and nothing was drained. A claim being
//! replaced counts against its pool's budgets until it is gone.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;

use super::nodeclaim::lifecycle::{self, INITIALIZED, is_true, planned_node};
use super::nodeclaim::{NodeClaim, NodeClaimStatus};
use super::snapshot::{is_workload_pod, pod_key};
use crate::disrupt::budget::{BudgetsLeft, PoolCount};
use crate::disrupt::consolidate::{Move, Reason as ConsolidationReason};
use crate::disrupt::drift::{self, ClaimFacts, Drift, POOL_HASH};
use crate::disrupt::expiry;
use crate::ir::{DisruptionReason, PolicySet};
use crate::solver::PlannedNode;

/// Annotation on a claim being replaced: the replacement claims' names, comma-separated.
pub(super) const REPLACING: &str = "nodewright.io/replacing";
/// Annotation on a claim being replaced: why (`expired`, `drifted`, ...).
pub(super) const REPLACING_REASON: &str = "nodewright.io/replacing-reason";
/// Condition on a claim whose node no longer matches its pool.
pub(super) const DRIFTED: &str = "Drifted";
/// Annotations (on a node or a pod) that forbid voluntary disruption.
pub(super) const DO_NOT_DISRUPT: [&str; 2] = [
    "karpenter.sh/do-not-disrupt",
    "nodewright.io/do-not-disrupt",
];

/// [`Facts::replan`]'s type: a claim and its node's workload pods → the new nodes.
pub(super) type Replan<'a> = dyn Fn(&NodeClaim, &[&Pod]) -> Option<Vec<PlannedNode>> + 'a;

/// What the pass reads.
pub(super) struct Facts<'a> {
    pub claims: &'a [NodeClaim],
    pub nodes: &'a [Node],
    pub pods: &'a [Pod],
    pub policy: &'a PolicySet,
    /// Per node class, the images it resolves to now (absent: unknown).
    pub images: &'a BTreeMap<String, BTreeSet<String>>,
    /// Consolidation's moves (`disrupt::consolidate::decide`), best first.
    pub moves: &'a [Move],
    /// Re-plans a claim's workload pods in its pool as it is now, for a node
    /// whose own offering the pool no longer admits ([`replan`]): the new
    /// nodes, or None when they fit nowhere. Empty when there are no pods.
    pub replan: &'a Replan<'a>,
    pub now: Timestamp,
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Step {
    /// Set `Drifted` on the claim (`Some`), or turn it `False` (`None`).
    /// Written onto the claim as read back at the write ([`with_drifted`]),
    /// so that the lifecycle's conditions of this pass are kept.
    Drifted { claim: String, drift: Option<Drift> },
    /// Annotate every claim of `old` with the replacements, then write and
    /// launch them (drift and expiry: one for one; consolidation: N for M).
    Replace {
        old: Vec<String>,
        reason: DisruptionReason,
        replacements: Vec<PlannedNode>,
    },
    /// The replacement is Initialized: hand `claim` to termination.
    Remove {
        claim: String,
        reason: DisruptionReason,
    },
    /// The replacement of `old` is gone: lift the annotations, drain nothing.
    Abandon { old: String, replacement: String },
}

/// The pass's decisions and what it counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Decisions {
    pub steps: Vec<Step>,
    /// Claims that are drifted now (being replaced or not).
    pub drifted: usize,
    /// Claims counted (launched, not being deleted).
    pub total: usize,
    /// Their $/hour: the price of each claim's launched offering.
    pub price_per_hour: f64,
    /// Claims that should go but wait: (claim, why).
    pub held: Vec<(String, String)>,
    /// Claims launched as replacements still under way: kept from empty-node removal.
    pub protected: HashSet<String>,
}

/// The claims named in a [`REPLACING`] annotation.
pub(super) fn replacements_of(annotation: &str) -> Vec<&str> {
    annotation
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Decides the pass. `name` gives the replacement of a claim a fresh name
/// (`<pool>-<suffix>`, unique among `taken`).
pub(super) fn decide(f: &Facts<'_>, suffix: &mut dyn FnMut() -> String) -> Decisions {
    let mut out = Decisions::default();
    let by_name: HashMap<&str, &NodeClaim> = f
        .claims
        .iter()
        .filter_map(|c| Some((c.metadata.name.as_deref()?, c)))
        .collect();
    let node_of: HashMap<&str, &Node> = f
        .nodes
        .iter()
        .filter_map(|n| {
            let id = n.spec.as_ref()?.provider_id.as_deref()?;
            Some((super::claims::instance_id_of(id)?, n))
        })
        .collect();
    let mut pods_on: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for p in f.pods {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            pods_on.entry(n).or_default().push(p);
        }
    }
    let mut counts: BTreeMap<String, PoolCount> = BTreeMap::new();
    let mut candidates: Vec<(DisruptionReason, Timestamp, &NodeClaim, String)> = Vec::new();
    let mut taken: HashSet<String> = by_name.keys().map(|s| s.to_string()).collect();

    for c in f.claims {
        let Some(name) = c.metadata.name.as_deref() else {
            continue;
        };
        let annotations = c.metadata.annotations.as_ref();
        let replacing = annotations.and_then(|a| a.get(REPLACING));
        let count = counts.entry(c.spec.pool.clone()).or_default();
        count.total += 1;
        if c.metadata.deletion_timestamp.is_some() {
            count.deleting += 1;
            continue;
        }
        let status = c.status.as_ref();
        let Some(launched_type) = status.and_then(|s| s.instance_type.as_deref()) else {
            continue; // not launched yet
        };
        out.total += 1;
        out.price_per_hour += c
            .spec
            .requirements
            .instance_types
            .iter()
            .find(|o| o.name == launched_type)
            .or(c.spec.requirements.instance_types.first())
            .map_or(0.0, |o| o.price_per_hour);
        let node = lifecycle::instance_id(c).and_then(|id| node_of.get(id).copied());
        let Some(pool) = f.policy.pool(&c.spec.pool) else {
            continue; // a pool the policy no longer has: left for a person
        };

        // Drift, and the Drifted condition to match.
        let labels = node
            .and_then(|n| n.metadata.labels.as_ref())
            .cloned()
            .unwrap_or_else(|| lifecycle::node_labels(c));
        let facts = ClaimFacts {
            recorded_hash: annotations
                .and_then(|a| a.get(POOL_HASH))
                .map(String::as_str),
            image_id: status.and_then(|s| s.image_id.as_deref()),
            labels: Some(&labels),
        };
        let drift = drift::drifted(
            pool,
            f.policy.node_classes.get(&pool.node_class),
            &facts,
            f.images.get(&c.spec.node_class),
        );
        if drift.is_some() {
            out.drifted += 1;
        }
        if let Some(step) = drifted_condition(name, status, drift.as_ref(), f.now) {
            out.steps.push(step);
        }

        // A replacement under way: wait for it, finish, or give up.
        if let Some(r) = replacing {
            count.deleting += 1;
            let names = replacements_of(r);
            out.protected.extend(names.iter().map(|n| n.to_string()));
            let reason = annotations
                .and_then(|a| a.get(REPLACING_REASON))
                .and_then(|s| parse_reason(s))
                .unwrap_or(DisruptionReason::Drifted);
            let lost = names.iter().any(|n| {
                by_name
                    .get(n)
                    .is_none_or(|rc| rc.metadata.deletion_timestamp.is_some())
            });
            let ready = names.iter().all(|n| {
                by_name
                    .get(n)
                    .is_some_and(|rc| is_true(rc.status.as_ref(), INITIALIZED))
            });
            if lost {
                out.steps.push(Step::Abandon {
                    old: name.to_string(),
                    replacement: r.clone(),
                });
            } else if ready {
                out.steps.push(Step::Remove {
                    claim: name.to_string(),
                    reason,
                });
            } else {
                out.held
                    .push((name.to_string(), format!("waiting for replacement {r}")));
            }
            continue;
        }
        // Only initialized nodes are disrupted (Karpenter's rule too).
        if !is_true(status, INITIALIZED) {
            continue;
        }
        let created = c
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(f.now, |t| t.0);
        let dnd = node.is_some_and(|n| do_not_disrupt(n.metadata.annotations.as_ref()))
            || node
                .and_then(|n| n.metadata.name.as_deref())
                .and_then(|n| pods_on.get(n))
                .is_some_and(|ps| {
                    ps.iter().any(|p| {
                        is_workload_pod(p) && do_not_disrupt(p.metadata.annotations.as_ref())
                    })
                });
        if expiry::is_expired(pool, created, f.now) {
            candidates.push((DisruptionReason::Expired, created, c, name.to_string()));
        } else if let Some(d) = drift {
            if dnd {
                out.held
                    .push((name.to_string(), "drifted, but do-not-disrupt".to_string()));
            } else {
                candidates.push((DisruptionReason::Drifted, created, c, d.message()));
            }
        }
    }

    // Expired first, then drifted; the oldest first within each.
    let order = |r: DisruptionReason| DisruptionReason::ALL.iter().position(|x| *x == r);
    candidates.sort_by(|a, b| order(a.0).cmp(&order(b.0)).then(a.1.cmp(&b.1)));
    let mut budgets = BudgetsLeft::new(f.policy, &counts, f.now);
    let mut busy: HashSet<String> = HashSet::new();
    for (reason, _, c, _) in candidates {
        let name = c.metadata.name.clone().unwrap_or_default();
        // The same offering, shaped by the pool now; when the pool no longer
        // admits it (its requirements changed), the node's pods re-planned in
        // the pool, onto whatever it admits now.
        let replacements = match replacement_for(c, f.policy, &pods_on, &node_of) {
            Some(r) => vec![r],
            // A re-plan is a solve: not while the budget has no room anyway.
            None if budgets.left(&c.spec.pool, reason) == Some(0) => Vec::new(),
            None => {
                let pods: Vec<&Pod> = lifecycle::instance_id(c)
                    .and_then(|id| node_of.get(id))
                    .and_then(|n| n.metadata.name.as_deref())
                    .and_then(|n| pods_on.get(n))
                    .map(|ps| ps.iter().copied().filter(|p| is_workload_pod(p)).collect())
                    .unwrap_or_default();
                match (f.replan)(c, &pods) {
                    Some(r) => r,
                    None => {
                        out.held.push((
                            name,
                            "the pool no longer admits this offering, and its pods fit no \
                             offering the pool admits now; no replacement"
                                .to_string(),
                        ));
                        continue;
                    }
                }
            }
        };
        if !budgets.take(&c.spec.pool, reason) {
            out.held.push((
                name,
                format!(
                    "{}: pool {}'s disruption budget is used up",
                    reason.as_str(),
                    c.spec.pool
                ),
            ));
            continue;
        }
        busy.insert(name.clone());
        if replacements.is_empty() {
            // No workload pods to carry: nothing to launch first.
            out.steps.push(Step::Remove {
                claim: name,
                reason,
            });
            continue;
        }
        let replacements = replacements
            .into_iter()
            .map(|mut r| {
                r.name = loop {
                    let n = format!("{}-{}", c.spec.pool, suffix());
                    if taken.insert(n.clone()) {
                        break n;
                    }
                };
                r
            })
            .collect();
        out.steps.push(Step::Replace {
            old: vec![name],
            reason,
            replacements,
        });
    }

    // Consolidation's moves, in its order, each whole or not at all.
    let claim_of_node: HashMap<&str, &NodeClaim> = f
        .claims
        .iter()
        .filter_map(|c| {
            let id = lifecycle::instance_id(c)?;
            Some((node_of.get(id)?.metadata.name.as_deref()?, c))
        })
        .collect();
    for m in f.moves {
        let reason = match m.reason {
            ConsolidationReason::Empty => DisruptionReason::Empty,
            ConsolidationReason::Underutilized => DisruptionReason::Underutilized,
        };
        let olds: Option<Vec<&NodeClaim>> = m
            .remove
            .iter()
            .map(|n| claim_of_node.get(n.as_str()).copied())
            .collect();
        let Some(olds) = olds.filter(|o| !o.is_empty()) else {
            continue; // a node that is not ours (or gone): not this pass
        };
        let names: Vec<String> = olds
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        if names.iter().any(|n| busy.contains(n))
            || olds.iter().any(|c| {
                c.metadata.deletion_timestamp.is_some()
                    || c.metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key(REPLACING))
            })
        {
            continue; // already going, for another reason
        }
        let mut need: BTreeMap<&str, usize> = BTreeMap::new();
        for c in &olds {
            *need.entry(c.spec.pool.as_str()).or_default() += 1;
        }
        if need
            .iter()
            .any(|(p, n)| budgets.left(p, reason).is_some_and(|l| l < *n))
        {
            out.held.push((
                names.join(","),
                format!("{}: the disruption budget is used up", reason.as_str()),
            ));
            continue;
        }
        for c in &olds {
            budgets.take(&c.spec.pool, reason);
        }
        busy.extend(names.iter().cloned());
        if m.launch.is_empty() {
            // The pods fit on the nodes that stay: nothing to launch first.
            out.steps.extend(
                names
                    .into_iter()
                    .map(|claim| Step::Remove { claim, reason }),
            );
            continue;
        }
        let replacements = m
            .launch
            .iter()
            .map(|p| {
                let mut p = p.clone();
                p.name = loop {
                    let n = format!("{}-{}", p.pool, suffix());
                    if taken.insert(n.clone()) {
                        break n;
                    }
                };
                p
            })
            .collect();
        out.steps.push(Step::Replace {
            old: names,
            reason,
            replacements,
        });
    }
    out
}

/// The replacement of claim `c`: its offering (type, zone, capacity type),
/// with the pool's current labels, taints and node class, and the old
/// node's workload pods. None when the pool's requirements no longer admit
/// the offering's labels.
fn replacement_for(
    c: &NodeClaim,
    policy: &PolicySet,
    pods_on: &HashMap<&str, Vec<&Pod>>,
    node_of: &HashMap<&str, &Node>,
) -> Option<PlannedNode> {
    let pool = policy.pool(&c.spec.pool)?;
    let mut p = planned_node(c)?;
    // Only the launched offering: the replacement must fit what the old one holds.
    if let Some(t) = c.status.as_ref().and_then(|s| s.instance_type.clone()) {
        p.instance_type_options.retain(|o| *o.instance_type == *t);
        if p.instance_type != t {
            p.instance_type = t;
        }
    }
    for (k, v) in &pool.labels {
        p.labels.insert(k.clone(), v.clone());
    }
    let mut check = lifecycle::node_labels(c);
    check.extend(pool.labels.clone());
    if pool
        .requirements
        .keys
        .iter()
        .any(|(k, set)| check.get(k).is_some_and(|v| !set.allows(v)))
    {
        return None;
    }
    p.taints = pool.taints.clone();
    p.startup_taints = pool.startup_taints.clone();
    p.node_class = pool.node_class.clone();
    let node = lifecycle::instance_id(c)
        .and_then(|id| node_of.get(id))
        .and_then(|n| n.metadata.name.as_deref());
    p.pods = node
        .and_then(|n| pods_on.get(n))
        .map(|ps| {
            ps.iter()
                .filter(|p| is_workload_pod(p))
                .map(|p| pod_key(p))
                .collect()
        })
        .unwrap_or_default();
    Some(p)
}

/// The step that brings `Drifted` in line with `drift`, if one is needed.
fn drifted_condition(
    claim: &str,
    status: Option<&NodeClaimStatus>,
    drift: Option<&Drift>,
    now: Timestamp,
) -> Option<Step> {
    let conds = status.map(|s| s.conditions.as_slice()).unwrap_or_default();
    (with_drifted(conds, drift, now).as_slice() != conds).then(|| Step::Drifted {
        claim: claim.to_string(),
        drift: drift.cloned(),
    })
}

/// `conds` with `Drifted` set from `drift`: `True` with its reason, or
/// `False` once a drifted node matches again (absent stays absent).
pub(super) fn with_drifted(
    conds: &[Condition],
    drift: Option<&Drift>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut next = conds.to_vec();
    let current = conds.iter().find(|c| c.type_ == DRIFTED);
    match (drift, current) {
        (Some(d), Some(c)) if c.status == "True" && c.reason == d.reason() => {}
        (Some(d), _) => {
            lifecycle::set_condition(&mut next, DRIFTED, true, d.reason(), d.message(), now)
        }
        (None, Some(c)) if c.status == "True" => lifecycle::set_condition(
            &mut next,
            DRIFTED,
            false,
            "NotDrifted",
            "the node matches its pool again".into(),
            now,
        ),
        (None, _) => {}
    }
    next
}

/// A reason from its annotation spelling.
pub(super) fn parse_reason(s: &str) -> Option<DisruptionReason> {
    DisruptionReason::ALL.into_iter().find(|r| r.as_str() == s)
}

/// Whether annotations forbid voluntary disruption.
fn do_not_disrupt(a: Option<&BTreeMap<String, String>>) -> bool {
    a.is_some_and(|a| {
        DO_NOT_DISRUPT
            .iter()
            .any(|k| a.get(*k).is_some_and(|v| v == "true"))
    })
}

/// [`Facts::replan`] as the controller runs it: `pods` (bound to the claim's
/// node) planned as if pending, with the DaemonSets' overhead, on the claim's
/// pool alone as the policy has it now. None when the pool is gone, the pods
/// do not load, or any pod fits nowhere (the node then waits, as before).
pub(super) fn replan(
    policy: &PolicySet,
    catalog: &crate::catalog::Catalog,
    daemonsets: &[k8s_openapi::api::apps::v1::DaemonSet],
    claim: &NodeClaim,
    pods: &[&Pod],
) -> Option<Vec<PlannedNode>> {
    let pool = policy.pool(&claim.spec.pool)?;
    if pods.is_empty() {
        return Some(Vec::new());
    }
    let pending: Vec<Pod> = pods
        .iter()
        .map(|p| {
            let mut p = (*p).clone();
            if let Some(s) = p.spec.as_mut() {
                s.node_name = None;
            }
            p
        })
        .collect();
    let workload = match crate::workload::load_api(
        "drifted node",
        crate::workload::ApiObjects {
            pods: pending,
            daemonsets: daemonsets.to_vec(),
            ..Default::default()
        },
    ) {
        Ok(w) => w.workload,
        Err(e) => {
            tracing::warn!(
                "re-planning the pods of drifted claim {}: {e}",
                claim.metadata.name.as_deref().unwrap_or_default()
            );
            return None;
        }
    };
    let only = PolicySet {
        pools: vec![pool.clone()],
        ..policy.clone()
    };
    let plan = crate::solver::solve(&crate::solver::SolveInput {
        policy: &only,
        catalog,
        workload: &workload,
        scorer: None,
        unavailable: None,
    });
    (plan.unschedulable.is_empty() && !plan.nodes.is_empty()).then_some(plan.nodes)
}

#[cfg(test)]
mod tests;
