//! The steps of one pass, as pure functions over what the pass observed.
//!
//! Each step reads the [`Observed`] snapshot (and the controller's memory
//! between passes: claims, empty-since clocks, told pods) and returns the
//! [`Action`]s to carry out; `run` does the I/O. In pass order:
//! 1. `nodeclaim::lifecycle::track`: the NodeClaims read back from the API
//!    server move through their lifecycle (registered, initialized, timed
//!    out, deleted);
//! 2. [`node_classes`] to resolve, then `launchable::narrow`;
//! 3. [`plan`]: the snapshot's workload, with the claims folded in, solved;
//! 4. [`unschedulable_events`]: tell waiting pods why, once per reason;
//! 5. [`launches`]: per planned node, a NodeClaim under a unique name, then
//!    its launch; what EC2 launched goes into the claim's status and pod
//!    Events ([`nominated`]);
//! 6. [`removals`]: cordon, delete and terminate the empty nodes `disrupt`
//!    picks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};

use super::action::{Action, EventKind, PodEvent, Sequence};
use super::claims::{Claims, instance_id_of};
use super::disrupt::{EmptySince, NodeView};
use super::notice::Notices;
use super::snapshot::{
    ClusterObjects, EPHEMERAL_TAINTS, is_provisionable, is_workload_pod, pod_key,
};
use crate::catalog::Availability;
use crate::catalog::{CapacityType, Catalog};
use crate::cloud::fleet::launch_groups;
use crate::cloud::tags::OwnedInstance;
use crate::ir::{PolicySet, Pool, Resources, labels};
use crate::scoring::Scorer;
use crate::solver::{Plan, PlannedNode, SolveInput, solve};
use crate::workload::Workload;

/// At most this many pods get an Event per pass for each kind of Event.
pub(super) const EVENTS_PER_PASS: usize = 100;

/// What one pass read, at one instant: the cluster's objects and the
/// instances EC2 says we own.
#[derive(Debug, Clone)]
pub(super) struct Observed {
    pub objs: ClusterObjects,
    pub owned: Vec<OwnedInstance>,
    pub now: Instant,
}

impl Observed {
    /// The pods this pass plans for, by "namespace/name": the only pods that get Events.
    pub(super) fn provisionable_pods(&self) -> HashMap<String, &Pod> {
        self.objs
            .pods
            .iter()
            .filter(|p| is_provisionable(p))
            .map(|p| (pod_key(p), p))
            .collect()
    }
}

/// Step 2: the node classes the pools use, each once, to resolve to their
/// reach (zones, architectures) before narrowing the pools to it.
pub(super) fn node_classes(policy: &PolicySet) -> Vec<&str> {
    let mut seen = BTreeSet::new();
    policy
        .pools
        .iter()
        .map(|p| p.node_class.as_str())
        .filter(|nc| seen.insert(*nc))
        .collect()
}

/// Step 3: what to launch for the workload, with the claims in flight
/// standing in for their nodes. `workload` is the snapshot's (the claims
/// are folded into it here); nothing pending plans nothing.
pub(super) fn plan(
    policy: &PolicySet,
    catalog: &Catalog,
    mut workload: Workload,
    claims: &Claims,
    scorer: Option<&dyn Scorer>,
    unavailable: Option<&Availability>,
) -> (Workload, Plan) {
    claims.fold_into(&mut workload);
    if pending(&workload) == 0 {
        return (workload, Plan::default());
    }
    let plan = solve(&SolveInput {
        policy,
        catalog,
        workload: &workload,
        scorer,
        unavailable,
    });
    (workload, plan)
}

/// Pods the workload still has to place.
pub(super) fn pending(w: &Workload) -> usize {
    w.classes.iter().map(|c| c.count()).sum()
}

/// Step 4: FailedProvisioning Events for the pods the plan could not place,
/// each told once per reason, at most [`EVENTS_PER_PASS`].
pub(super) fn unschedulable_events(plan: &Plan, notices: &mut Notices) -> Vec<Sequence> {
    let waiting: Vec<(String, String)> = plan
        .unschedulable
        .iter()
        .map(|u| (u.pod.clone(), event_note(&u.reasons)))
        .collect();
    notices
        .due(&waiting, EVENTS_PER_PASS)
        .into_iter()
        .map(|(pod, note)| {
            Action::Event(PodEvent {
                pod: pod.clone(),
                kind: EventKind::FailedProvisioning,
                note: note.clone(),
            })
            .into()
        })
        .collect()
}

/// An Event's note from a pod's reasons (the API caps notes at 1 kB).
pub(super) fn event_note(reasons: &[String]) -> String {
    let mut s = format!("nodewright cannot place this pod: {}", reasons.join("; "));
    if s.len() > 1000 {
        let mut cut = 997;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// What [`launches`] decided.
#[derive(Debug, Clone, Default)]
pub(super) struct Launches {
    /// One [`Action::Launch`] per launchable planned node.
    pub actions: Vec<Sequence>,
    /// Planned nodes that cannot be launched, and why (each one a launch failure).
    pub refused: Vec<String>,
}

/// Step 5: a NodeClaim and then its launch per planned node, named `<pool>-<suffix>` with a suffix
/// from `suffix` that no instance of ours, no claim in flight and no other
/// launch of this pass has (the solver's `<pool>-<n>` names repeat between
/// solves). `policy` is the version planned with: a node whose pool or node
/// class it lacks is refused.
pub(super) fn launches(
    plan: &Plan,
    policy: &PolicySet,
    obs: &Observed,
    claims: &Claims,
    suffix: &mut dyn FnMut() -> String,
) -> Launches {
    let mut taken: HashSet<String> = obs.owned.iter().filter_map(|o| o.claim.clone()).collect();
    let mut out = Launches::default();
    let mut named: Vec<PlannedNode> = Vec::new();
    for planned in &plan.nodes {
        if policy.pool(&planned.pool).is_none()
            || !policy.node_classes.contains_key(&planned.node_class)
        {
            out.refused.push(format!(
                "planned node for pool {} names node class {}, which the policy does not have",
                planned.pool, planned.node_class
            ));
            continue;
        }
        let name = loop {
            let n = format!("{}-{}", planned.pool, suffix());
            if !taken.contains(&n) && !claims.contains(&n) {
                break n;
            }
        };
        taken.insert(name.clone());
        let mut node = planned.clone();
        node.name = name;
        named.push(node);
    }
    // Nodes with identical launch requests share one CreateFleet.
    for group in launch_groups(&named, FLEET_BATCH_MAX) {
        let nodes: Vec<PlannedNode> = group.into_iter().map(|i| named[i].clone()).collect();
        out.actions.push(Sequence(vec![
            Action::CreateClaims(nodes.clone()),
            Action::LaunchGroup(nodes),
        ]));
    }
    out
}

/// At most this many claims share one CreateFleet: a bound of our own on
/// one request (and on what one failed call costs), far above a usual
/// burst's nodes of one kind.
pub(super) const FLEET_BATCH_MAX: usize = 100;

/// Where EC2 put a launched node (the part of the launcher's answer the
/// controller keeps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Placed {
    pub instance_id: String,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
}

/// Each pending pod's requests, by "namespace/name" (to work out a planned
/// node's DaemonSet overhead, see [`overhead`]).
pub(super) fn pod_requests(w: &Workload) -> HashMap<String, &Resources> {
    w.classes
        .iter()
        .flat_map(|c| (0..c.count()).map(move |i| (c.pod_key(i), &c.requests)))
        .collect()
}

/// The DaemonSet share of a planned node's requests: what is left after its pods'.
pub(super) fn overhead(node: &PlannedNode, requests: &HashMap<String, &Resources>) -> Resources {
    let mut overhead = node.requested.clone();
    for p in &node.pods {
        if let Some(r) = requests.get(p) {
            overhead.sub(r);
        }
    }
    overhead
}

/// Nominated Events for the pods a launched node is for (at most [`EVENTS_PER_PASS`]).
pub(super) fn nominated(node: &PlannedNode, placed: &Placed) -> Vec<Action> {
    let note = format!(
        "nodewright launched {} ({} in {}, {}) for this pod",
        node.name,
        placed.instance_type,
        placed.zone,
        placed.capacity_type.as_str()
    );
    node.pods
        .iter()
        .take(EVENTS_PER_PASS)
        .map(|pod| {
            Action::Event(PodEvent {
                pod: pod.clone(),
                kind: EventKind::Nominated,
                note: note.clone(),
            })
        })
        .collect()
}

/// Ready, and carrying neither an ephemeral start-up taint nor one of its
/// pool's start-up taints.
pub(super) fn initialized(n: &Node, pool: Option<&Pool>) -> bool {
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let starting = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| {
            ts.iter().any(|t| {
                EPHEMERAL_TAINTS.contains(&t.key.as_str())
                    || pool.is_some_and(|p| p.startup_taints.iter().any(|st| st.key == t.key))
            })
        });
    ready && !starting
}

/// The Nodes we launched, as `disrupt` sees them, and each one's claim:
/// the Nodes of our NodeClaims, and those of instances tagged as ours.
pub(super) fn node_views(
    obs: &Observed,
    policy: &PolicySet,
    claims: &Claims,
) -> (Vec<NodeView>, HashMap<String, String>) {
    let claimed = claims.by_node();
    let by_instance: HashMap<&str, &OwnedInstance> = obs
        .owned
        .iter()
        .map(|o| (o.instance_id.as_str(), o))
        .collect();
    let mut pods_on: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for p in &obs.objs.pods {
        if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            pods_on.entry(node).or_default().push(p);
        }
    }
    let dnd = |a: Option<&BTreeMap<String, String>>| super::terminate::plan::do_not_disrupt(a);
    let mut views = Vec::new();
    let mut claim_of = HashMap::new();
    for n in &obs.objs.nodes {
        let Some(name) = n.metadata.name.as_deref() else {
            continue;
        };
        let owned = n
            .spec
            .as_ref()
            .and_then(|s| s.provider_id.as_deref())
            .and_then(instance_id_of)
            .and_then(|id| by_instance.get(id));
        let (claim, pool, claim_initialized) = match (claimed.get(name), owned) {
            (Some(c), _) => (Some(c.name.clone()), Some(c.pool.clone()), c.initialized),
            (None, Some(o)) => (o.claim.clone(), o.pool.clone(), true),
            (None, None) => continue, // not ours
        };
        let Some(pool_name) = pool.or_else(|| {
            n.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::NODEPOOL).cloned())
        }) else {
            continue;
        };
        if let Some(c) = claim {
            claim_of.insert(name.to_string(), c);
        }
        let on_node = pods_on.get(name).map(Vec::as_slice).unwrap_or_default();
        views.push(NodeView {
            name: name.to_string(),
            // A claim that is not Initialized (a GPU node before its device
            // plugin reports, say) still carries its pods: not empty yet.
            initialized: claim_initialized && initialized(n, policy.pool(&pool_name)),
            pool: pool_name,
            workload_pods: on_node.iter().filter(|p| is_workload_pod(p)).count(),
            do_not_disrupt: dnd(n.metadata.annotations.as_ref())
                || on_node
                    .iter()
                    .any(|p| is_workload_pod(p) && dnd(p.metadata.annotations.as_ref())),
            // Deleted, or its claim is (the termination flow taints it first).
            deleting: n.metadata.deletion_timestamp.is_some() || super::terminate::plan::tainted(n),
        });
    }
    (views, claim_of)
}

/// What [`removals`] decided.
#[derive(Debug, Clone, Default)]
pub(super) struct Removals {
    /// Per node: cordon, delete the Node, terminate its claim's instances.
    pub actions: Vec<Sequence>,
    /// Nodes the plan puts pending pods on. While there are any, which nodes
    /// end up empty is not settled (the scheduler has yet to place those
    /// pods), so nothing is removed.
    pub targeted: usize,
}

/// Step 6: the empty nodes we launched that `disrupt` says to remove now:
/// their NodeClaims are deleted with reason `empty`, and the termination
/// flow (`terminate`) takes it from there. The empty-since
/// clocks are kept even when removal waits.
pub(super) fn removals(
    obs: &Observed,
    policy: &PolicySet,
    plan: &Plan,
    claims: &Claims,
    empty: &mut EmptySince,
    wall: jiff::Timestamp,
) -> Removals {
    let (views, claim_of) = node_views(obs, policy, claims);
    let targeted: HashSet<String> = plan.existing.iter().map(|e| e.node.clone()).collect();
    let remove = empty.empty_to_remove(&views, policy, &targeted, obs.now, wall);
    if !targeted.is_empty() {
        return Removals {
            actions: Vec::new(),
            targeted: targeted.len(),
        };
    }
    let actions = remove
        .into_iter()
        .map(|node| {
            // A claimed node goes through the termination flow (its claim's
            // finalizer); a node of ours without a claim (launched before
            // claims existed) is cordoned and deleted as before.
            if let Some(claim) = claim_of.get(&node) {
                return Sequence::from(Action::RequestRemoval {
                    claim: claim.clone(),
                    reason: "empty",
                });
            }
            Sequence(vec![
                Action::Cordon { node: node.clone() },
                Action::DeleteNode { node },
            ])
        })
        .collect();
    Removals {
        actions,
        targeted: 0,
    }
}

#[cfg(test)]
mod tests;
