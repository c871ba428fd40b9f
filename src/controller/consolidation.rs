//! Consolidation's live input: the cluster the watch caches hold, turned into
//! the input of `disrupt::consolidate::decide`, through the same
//! `disrupt::facts::gather` that `nodewright plan --nodes … --consolidate` uses.
//!
//! What the live controller knows beyond a YAML dump, and adds here:
//! - **which nodes are ours**: a node is a candidate only through its
//!   NodeClaim (its pool, `Initialized`); a node without a claim stays, and
//!   receives pods like any other;
//! - **how long each node has been unchanged** (`stable_for`, compared with
//!   the pool's `consolidate ... after`): since the latest of its claim's
//!   `status.lastPodEventTime`, its `Initialized` transition, and the
//!   creation (or deletion) of a pod on it. `lastPodEventTime` is written
//!   here, as Karpenter writes it, when the set of workload pods on the node
//!   changes from one pass to the next ([`PodSets`]);
//! - **the budgets left now** (`disrupt::budget`, schedules included), per
//!   pool and reason, with the nodes being deleted or replaced counted;
//! - **whether to decide at all** ([`hold`]): not while pods wait for room or
//!   launches, deletions or replacements are under way (the cluster is not
//!   settled, as Karpenter waits for it), and at most once per interval.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;

use super::disruption::REPLACING;
use super::nodeclaim::NodeClaim;
use super::nodeclaim::lifecycle::{INITIALIZED, is_true};
use super::snapshot::{ClusterObjects, is_workload_pod, pod_key, prepare};
use crate::catalog::{Availability, Catalog};
use crate::disrupt::budget::{BudgetsLeft, PoolCount};
use crate::disrupt::consolidate::{
    BudgetLeft, Consolidation, ConsolidationInput, Move, Reason as ConsolidationReason,
};
use crate::disrupt::facts;
use crate::ir::{ConsolidationPolicy, DisruptionReason, Duration as IrDuration, PolicySet};
use crate::workload::WorkloadError;

/// A node's pod-set change closer than this to the claim's recorded
/// `lastPodEventTime` is written later, not at once (Karpenter dedupes its
/// writes the same way): a node whose pods churn costs one write per 5 s,
/// not one per pass. The change is still recorded, up to 5 s late, which
/// only makes the node look changed more recently (the safe side).
pub(super) const POD_EVENT_DEDUPE: Duration = Duration::from_secs(5);

/// The workload pods on each claim's node as the last pass saw them (a
/// fingerprint per claim), kept between passes to tell when they change.
#[derive(Debug, Default)]
pub(super) struct PodSets {
    seen: HashMap<String, u64>,
}

/// The workload pods bound to each node, by node name.
pub(super) fn pods_by_node(pods: &[Pod]) -> HashMap<&str, Vec<&Pod>> {
    let mut out: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for p in pods.iter().filter(|p| is_workload_pod(p)) {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            out.entry(n).or_default().push(p);
        }
    }
    out
}

/// The node a claim registered as, if that Node is in `nodes`.
fn node_of<'a>(c: &NodeClaim, nodes: &'a HashMap<&str, &Node>) -> Option<&'a str> {
    let name = c.status.as_ref()?.node_name.as_deref()?;
    nodes.get(name).and_then(|n| n.metadata.name.as_deref())
}

/// A fingerprint of a set of pods (their keys and UIDs, order-free): a pod
/// deleted and created again under the same name changes it.
fn fingerprint(pods: &[&Pod]) -> u64 {
    let mut keys: Vec<(String, Option<&str>)> = pods
        .iter()
        .map(|p| (pod_key(p), p.metadata.uid.as_deref()))
        .collect();
    keys.sort();
    let mut h = DefaultHasher::new();
    keys.hash(&mut h);
    h.finish()
}

/// The claims whose node's workload pods changed since the last pass: each
/// gets `status.lastPodEventTime = now`. The first pass to see a claim's
/// node only records its pods (it cannot tell what changed before; pod
/// creation times cover that, see [`last_change`]). A change within
/// [`POD_EVENT_DEDUPE`] of the recorded time waits for a later pass.
pub(super) fn pod_events(
    claims: &[NodeClaim],
    nodes: &[Node],
    pods: &[Pod],
    sets: &mut PodSets,
    now: Timestamp,
) -> Vec<String> {
    let nodes: HashMap<&str, &Node> = nodes
        .iter()
        .filter_map(|n| Some((n.metadata.name.as_deref()?, n)))
        .collect();
    let on = pods_by_node(pods);
    let mut out = Vec::new();
    let mut live = std::collections::HashSet::new();
    for c in claims {
        let (Some(name), Some(node)) = (c.metadata.name.as_deref(), node_of(c, &nodes)) else {
            continue;
        };
        if c.metadata.deletion_timestamp.is_some() {
            continue;
        }
        live.insert(name.to_string());
        let fp = fingerprint(on.get(node).map(Vec::as_slice).unwrap_or_default());
        match sets.seen.get(name) {
            None => {
                sets.seen.insert(name.to_string(), fp);
            }
            Some(prev) if *prev == fp => {}
            Some(_) => {
                let recent = c
                    .status
                    .as_ref()
                    .and_then(|s| s.last_pod_event_time.as_ref())
                    .is_some_and(|t| since(t.0, now) < POD_EVENT_DEDUPE);
                if !recent {
                    sets.seen.insert(name.to_string(), fp);
                    out.push(name.to_string());
                }
            }
        }
    }
    sets.seen.retain(|k, _| live.contains(k));
    out
}

/// `now - t`, zero when `t` is later.
fn since(t: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(t)).unwrap_or_default()
}

/// When a claim's node last changed: the latest of its recorded (or just
/// written, `stamped`) `lastPodEventTime`, its `Initialized` transition, and
/// the creation or deletion of one of its pods. None: not initialized.
pub(super) fn last_change(
    c: &NodeClaim,
    pods: &[&Pod],
    stamped: Option<Timestamp>,
) -> Option<Timestamp> {
    let status = c.status.as_ref()?;
    let initialized = status
        .conditions
        .iter()
        .find(|x| x.type_ == INITIALIZED && x.status == "True")?
        .last_transition_time
        .0;
    let pod_times = pods.iter().flat_map(|p| {
        [
            p.metadata.creation_timestamp.as_ref(),
            p.metadata.deletion_timestamp.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|t| t.0)
    });
    std::iter::once(initialized)
        .chain(status.last_pod_event_time.as_ref().map(|t| t.0))
        .chain(stamped)
        .chain(pod_times)
        .max()
}

/// Why no consolidation decision is made this pass (None: make one).
/// `busy`: pods wait for room (planned onto nodes, launching) this pass.
pub(super) fn hold(policy: &PolicySet, claims: &[NodeClaim], busy: bool) -> Option<String> {
    let any = policy.pools.iter().any(|p| {
        p.disruption.consolidation_policy == ConsolidationPolicy::WhenEmptyOrUnderutilized
            && p.disruption.consolidate_after != IrDuration::Never
    });
    if !any {
        return Some("no pool consolidates underutilized nodes".into());
    }
    if busy {
        return Some("pods are waiting for room or nodes being launched".into());
    }
    for c in claims {
        let name = c.metadata.name.as_deref().unwrap_or_default();
        if c.metadata.deletion_timestamp.is_some() {
            return Some(format!("claim {name} is being deleted"));
        }
        if c.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(REPLACING))
        {
            return Some(format!("claim {name} is being replaced"));
        }
        if !is_true(c.status.as_ref(), INITIALIZED) {
            return Some(format!("claim {name} is not initialized yet"));
        }
    }
    None
}

/// Whether a decision is due: never made, or the last one `interval` ago.
pub(super) fn due(last: Option<Instant>, now: Instant, interval: Duration) -> bool {
    last.is_none_or(|l| now.saturating_duration_since(l) >= interval)
}

/// The budgets left now for consolidation's reasons, per pool of `policy`
/// (`disrupt::budget`: schedules at `now`; claims being deleted or replaced
/// use them up).
pub(super) fn budgets(
    policy: &PolicySet,
    claims: &[NodeClaim],
    now: Timestamp,
) -> BTreeMap<String, BudgetLeft> {
    let mut counts: BTreeMap<String, PoolCount> = BTreeMap::new();
    for c in claims {
        let n = counts.entry(c.spec.pool.clone()).or_default();
        n.total += 1;
        let replacing = c
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(REPLACING));
        if c.metadata.deletion_timestamp.is_some() || replacing {
            n.deleting += 1;
        }
    }
    let left = BudgetsLeft::new(policy, &counts, now);
    policy
        .pools
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                BudgetLeft {
                    empty: left.left(&p.name, DisruptionReason::Empty),
                    underutilized: left.left(&p.name, DisruptionReason::Underutilized),
                },
            )
        })
        .collect()
}

/// The decision's input from a pass's objects and claims. `stamped`: the
/// `lastPodEventTime` this pass wrote, by claim (the claims were read
/// before). A node is a candidate only through a claim that is
/// `Initialized` and not being deleted; its pool, offering and price come
/// from the claim where the Node's labels lack them.
#[allow(
    clippy::too_many_arguments,
    reason = "each argument is one of the pass's inputs; a struct would only rename them"
)]
pub(super) fn input<'a>(
    policy: &'a PolicySet,
    catalog: &'a Catalog,
    unavailable: Option<&'a Availability>,
    objs: &ClusterObjects,
    pdbs: &[PodDisruptionBudget],
    claims: &[NodeClaim],
    stamped: &HashMap<String, Timestamp>,
    now: Timestamp,
) -> Result<ConsolidationInput<'a>, WorkloadError> {
    let prepared = prepare(objs);
    let gathered = facts::gather(
        catalog,
        facts::ClusterObjects {
            nodes: prepared.nodes,
            pods: prepared.pods,
            daemonsets: prepared.daemonsets,
            pdbs: pdbs.to_vec(),
        },
    )?;
    let claim_of: HashMap<&str, &NodeClaim> = claims
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .filter_map(|c| Some((c.status.as_ref()?.node_name.as_deref()?, c)))
        .collect();
    let on = pods_by_node(&objs.pods);
    let mut nodes = gathered.nodes;
    for f in &mut nodes {
        let Some(c) = claim_of.get(f.name.as_str()) else {
            // Not ours (or its claim is going): it stays, and takes pods.
            f.pool = None;
            f.initialized = false;
            continue;
        };
        f.pool = Some(c.spec.pool.clone());
        f.initialized = is_true(c.status.as_ref(), INITIALIZED);
        let status = c.status.as_ref();
        if f.instance_type.is_empty()
            && let Some(t) = status.and_then(|s| s.instance_type.clone())
        {
            f.instance_type = t;
        }
        if f.zone.is_empty()
            && let Some(z) = status.and_then(|s| s.zone.clone())
        {
            f.zone = z;
        }
        if f.price_per_hour <= 0.0 {
            f.price_per_hour = c
                .spec
                .requirements
                .instance_types
                .iter()
                .find(|o| o.name == f.instance_type)
                .map_or(0.0, |o| o.price_per_hour);
        }
        let name = c.metadata.name.as_deref().unwrap_or_default();
        let pods = on
            .get(f.name.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        f.stable_for = last_change(c, pods, stamped.get(name).copied()).map(|t| since(t, now));
    }
    Ok(ConsolidationInput {
        policy,
        catalog,
        unavailable,
        cluster: gathered.cluster,
        pods: gathered.pods,
        nodes,
        budgets: budgets(policy, claims, now),
    })
}

/// Whether a node's blocker is one an operator acts on (logged at info):
/// a do-not-disrupt annotation, a PodDisruptionBudget or a disruption
/// budget, as `decide` names them. A wait for `consolidate ... after` or a
/// node with no cheaper placement is routine (debug).
pub(super) fn worth_telling(reason: &str) -> bool {
    reason.starts_with("do-not-disrupt")
        || reason.starts_with("PodDisruptionBudget")
        || reason.starts_with("budget")
}

/// The moves the disruption pass carries out: the underutilized ones.
/// Empty nodes are removed by empty-node removal (`steps::removals`), which
/// has its own wait and budget check; handing them over twice would remove
/// (and count) them twice.
pub(super) fn moves(d: Consolidation) -> Vec<Move> {
    d.moves
        .into_iter()
        .filter(|m| m.reason == ConsolidationReason::Underutilized)
        .collect()
}

#[cfg(test)]
mod tests;
