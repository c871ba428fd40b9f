//! The NodeClaim lifecycle as pure functions of a claim, its Node and the
//! time: what to write, patch or delete is returned as [`Action`]s for `run`
//! to carry out. See the module doc of `nodeclaim` for the states.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use serde_json::json;

use super::types::{
    ClaimRequirements, ClaimResources, InstanceTypeOption, NodeClaim, NodeClaimSpec,
    NodeClaimStatus, ir_taint, k8s_taint, quantities, resources,
};
use super::{FINALIZER, LABEL_CLAIM, LABEL_INITIALIZED, LABEL_POOL, LABEL_REGISTERED};
use crate::catalog::CapacityType;
use crate::controller::action::{Action, Sequence, TerminateReason};
use crate::controller::claims::{Claim, Claims, instance_id_of};
use crate::controller::snapshot::EPHEMERAL_TAINTS;
use crate::ir::{Duration as IrDuration, Pool, Resources, labels};
use crate::solver::{InstanceOption, PlannedNode};

/// Condition: CreateFleet returned an instance.
pub(crate) const LAUNCHED: &str = "Launched";
/// Condition: a Node with the instance's provider ID appeared and was adopted.
pub(crate) const REGISTERED: &str = "Registered";
/// Condition: the Node is Ready, free of startup taints, with its planned extended resources.
pub(crate) const INITIALIZED: &str = "Initialized";
/// Condition: launched, registered, initialized, and the Node Ready.
pub(crate) const READY: &str = "Ready";
/// Condition: an interruption message (spot warning, scheduled change, state
/// change) named the claim's instance; the claim is being removed.
pub(crate) const INTERRUPTED: &str = "Interrupted";

/// Resources every node reports; any other name (`nvidia.com/gpu`) waits for a device plugin.
const STANDARD_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage", "pods"];

/// The NodeClaim for a planned node, written before it is launched.
/// `overhead` is the DaemonSet share of its requests.
pub(crate) fn new_claim(
    node: &PlannedNode,
    pool: Option<&Pool>,
    overhead: &Resources,
) -> NodeClaim {
    let mut instance_types: Vec<InstanceTypeOption> = node
        .instance_type_options
        .iter()
        .map(|o| InstanceTypeOption {
            name: o.instance_type.to_string(),
            price_per_hour: o.price_per_hour,
        })
        .collect();
    if instance_types.first().map(|o| o.name.as_str()) != Some(node.instance_type.as_str()) {
        instance_types.insert(
            0,
            InstanceTypeOption {
                name: node.instance_type.clone(),
                price_per_hour: node.price_per_hour,
            },
        );
    }
    let mut c = NodeClaim::new(
        &node.name,
        NodeClaimSpec {
            pool: node.pool.clone(),
            node_class: node.node_class.clone(),
            requirements: ClaimRequirements {
                instance_types,
                zones: vec![node.zone.clone()],
                capacity_types: vec![node.capacity_type.as_str().to_string()],
            },
            resources: ClaimResources {
                requests: quantities(&node.requested),
                overhead: quantities(overhead),
                allocatable: quantities(&node.allocatable),
            },
            labels: node.labels.clone(),
            taints: node.taints.iter().map(k8s_taint).collect(),
            startup_taints: node.startup_taints.iter().map(k8s_taint).collect(),
            expire_after: pool.and_then(|p| match p.disruption.expire_after {
                IrDuration::Finite(d) => Some(go_duration(d)),
                IrDuration::Never => None,
            }),
            pods: node.pods.clone(),
        },
    );
    c.metadata.labels = Some([(LABEL_POOL.to_string(), node.pool.clone())].into());
    c.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
    c
}

/// A duration the way Go (and Karpenter's `expireAfter`) writes it.
fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// The planned node a claim was written for, to launch it again after a
/// restart (the launcher finds the instance if CreateFleet already ran).
/// None when the spec lists no instance type, zone or known capacity type.
pub(crate) fn planned_node(c: &NodeClaim) -> Option<PlannedNode> {
    let name = c.metadata.name.clone()?;
    let r = &c.spec.requirements;
    let first = r.instance_types.first()?;
    Some(PlannedNode {
        name,
        pool: c.spec.pool.clone(),
        node_class: c.spec.node_class.clone(),
        zone: r.zones.first()?.clone(),
        capacity_type: CapacityType::parse(r.capacity_types.first()?)?,
        instance_type: first.name.clone(),
        price_per_hour: first.price_per_hour,
        instance_type_options: r
            .instance_types
            .iter()
            .map(|o| InstanceOption {
                instance_type: Arc::from(o.name.as_str()),
                price_per_hour: o.price_per_hour,
            })
            .collect(),
        pods: c.spec.pods.clone(),
        requested: resources(&c.spec.resources.requests),
        allocatable: resources(&c.spec.resources.allocatable),
        labels: c.spec.labels.clone(),
        taints: c.spec.taints.iter().filter_map(ir_taint).collect(),
        startup_taints: c.spec.startup_taints.iter().filter_map(ir_taint).collect(),
    })
}

/// Whether condition `type_` is `True`.
pub(crate) fn is_true(status: Option<&NodeClaimStatus>, type_: &str) -> bool {
    status.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    })
}

/// Sets a condition; its transition time moves only when its status changes.
pub(crate) fn set_condition(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Time(now);
            }
            c.status = status;
            c.reason = reason.to_string();
            c.message = message;
        }
        None => conds.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            last_transition_time: Time(now),
            observed_generation: None,
        }),
    }
}

/// The status of a claim an interruption message named: `Interrupted`, with why.
pub(crate) fn interrupted(
    prev: &NodeClaimStatus,
    reason: &str,
    message: String,
    now: Timestamp,
) -> NodeClaimStatus {
    let mut s = prev.clone();
    set_condition(&mut s.conditions, INTERRUPTED, true, reason, message, now);
    s
}

/// What EC2 launched for a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LaunchInfo {
    pub instance_id: String,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
    pub image_id: String,
}

/// The status of a claim just launched: the instance, and `Launched`.
pub(crate) fn launched(prev: &NodeClaimStatus, l: &LaunchInfo, now: Timestamp) -> NodeClaimStatus {
    let mut s = prev.clone();
    s.provider_id = Some(format!("aws:///{}/{}", l.zone, l.instance_id));
    s.instance_type = Some(l.instance_type.clone());
    s.zone = Some(l.zone.clone());
    s.capacity_type = Some(l.capacity_type.as_str().to_string());
    s.image_id = (!l.image_id.is_empty()).then(|| l.image_id.clone());
    set_condition(
        &mut s.conditions,
        LAUNCHED,
        true,
        LAUNCHED,
        format!(
            "instance {} ({} in {})",
            l.instance_id, l.instance_type, l.zone
        ),
        now,
    );
    set_condition(
        &mut s.conditions,
        READY,
        false,
        "NotRegistered",
        "waiting for a Node with the instance's provider ID".to_string(),
        now,
    );
    s
}

/// The labels the claim's Node gets: the planned ones with the launched
/// type, zone and capacity type (EC2 may have fallen back to another
/// offering), and ours.
pub(crate) fn node_labels(c: &NodeClaim) -> BTreeMap<String, String> {
    let mut l = c.spec.labels.clone();
    if let Some(s) = &c.status {
        if let Some(t) = &s.instance_type {
            l.insert(labels::INSTANCE_TYPE.to_string(), t.clone());
        }
        if let Some(z) = &s.zone {
            l.insert(labels::ZONE.to_string(), z.clone());
        }
        if let Some(ct) = &s.capacity_type {
            l.insert(labels::CAPACITY_TYPE.to_string(), ct.clone());
        }
    }
    l.insert(LABEL_POOL.to_string(), c.spec.pool.clone());
    l.insert(
        LABEL_CLAIM.to_string(),
        c.metadata.name.clone().unwrap_or_default(),
    );
    l
}

/// The instance id of a claim (from its provider ID), once launched.
pub(crate) fn instance_id(c: &NodeClaim) -> Option<&str> {
    instance_id_of(c.status.as_ref()?.provider_id.as_deref()?)
}

fn node_instance(n: &Node) -> Option<&str> {
    instance_id_of(n.spec.as_ref()?.provider_id.as_deref()?)
}

/// The merge patch that adopts a registered Node: the claim's labels (plus
/// `nodewright.io/registered`) and taints, an owner reference to the claim
/// and our finalizer. Lists are written whole (a merge patch replaces
/// lists), keeping what the Node already has.
pub(crate) fn registration_patch(c: &NodeClaim, node: &Node) -> serde_json::Value {
    let mut labels = node_labels(c);
    labels.insert(LABEL_REGISTERED.to_string(), "true".to_string());
    let mut taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    for t in &c.spec.taints {
        if !taints
            .iter()
            .any(|x| x.key == t.key && x.effect == t.effect)
        {
            taints.push(t.clone());
        }
    }
    let mut owners = node.metadata.owner_references.clone().unwrap_or_default();
    let uid = c.metadata.uid.clone().unwrap_or_default();
    if !owners.iter().any(|o| o.uid == uid) {
        owners.push(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: NodeClaim::api_version(&()).into_owned(),
                kind: NodeClaim::kind(&()).into_owned(),
                name: c.metadata.name.clone().unwrap_or_default(),
                uid,
                block_owner_deletion: Some(true),
                controller: None,
            },
        );
    }
    let mut finalizers = node.metadata.finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        finalizers.push(FINALIZER.to_string());
    }
    json!({
        "metadata": {
            "labels": labels,
            "ownerReferences": owners,
            "finalizers": finalizers,
        },
        "spec": { "taints": taints },
    })
}

fn node_ready(n: &Node) -> Option<&k8s_openapi::api::core::v1::NodeCondition> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Why the claim's Node is not initialized yet (None: it is): not Ready,
/// a startup (or ephemeral) taint still on it, or an extended resource the
/// claim was planned for missing from its allocatable.
pub(crate) fn not_initialized(c: &NodeClaim, n: &Node) -> Option<String> {
    if node_ready(n).is_none_or(|r| r.status != "True") {
        return Some("the Node is not Ready".to_string());
    }
    let taints = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    if let Some(t) = taints.iter().find(|t| {
        EPHEMERAL_TAINTS.contains(&t.key.as_str())
            || c.spec.startup_taints.iter().any(|s| s.key == t.key)
    }) {
        return Some(format!("the Node still has the startup taint {}", t.key));
    }
    let allocatable = n
        .status
        .as_ref()
        .and_then(|s| s.allocatable.clone())
        .unwrap_or_default();
    let has = resources(&allocatable.into_iter().collect());
    for (name, want) in resources(&c.spec.resources.allocatable).iter() {
        if !STANDARD_RESOURCES.contains(&name) && want > 0 && has.get(name) <= 0 {
            return Some(format!("the Node does not report {name} yet"));
        }
    }
    None
}

/// The status a registered claim should have given its Node: `Registered`,
/// `Initialized` once [`not_initialized`] says so (then capacity and
/// allocatable from the Node), and `Ready` following the Node's readiness.
pub(crate) fn synced_status(c: &NodeClaim, n: &Node, now: Timestamp) -> NodeClaimStatus {
    let mut s = c.status.clone().unwrap_or_default();
    let node_name = n.metadata.name.clone().unwrap_or_default();
    s.node_name = Some(node_name.clone());
    if !is_true(Some(&s), REGISTERED) {
        set_condition(
            &mut s.conditions,
            REGISTERED,
            true,
            REGISTERED,
            format!("Node {node_name}"),
            now,
        );
    }
    let was = is_true(Some(&s), INITIALIZED);
    let why_not = if was { None } else { not_initialized(c, n) };
    if !was {
        match &why_not {
            None => {
                set_condition(
                    &mut s.conditions,
                    INITIALIZED,
                    true,
                    INITIALIZED,
                    String::new(),
                    now,
                );
                if let Some(st) = &n.status {
                    s.capacity = st
                        .capacity
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .collect();
                    s.allocatable = st
                        .allocatable
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .collect();
                }
            }
            Some(why) => set_condition(
                &mut s.conditions,
                INITIALIZED,
                false,
                "NotInitialized",
                why.clone(),
                now,
            ),
        }
    }
    let ready = node_ready(n);
    match (&why_not, ready) {
        (None, Some(r)) if r.status == "True" => {
            set_condition(&mut s.conditions, READY, true, "Ready", String::new(), now)
        }
        (None, r) => set_condition(
            &mut s.conditions,
            READY,
            false,
            "NodeNotReady",
            r.and_then(|r| r.message.clone()).unwrap_or_default(),
            now,
        ),
        (Some(why), _) => set_condition(
            &mut s.conditions,
            READY,
            false,
            "NotInitialized",
            why.clone(),
            now,
        ),
    }
    s
}

/// What [`track`] decided, by claim name (for logs and metrics).
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracked {
    /// Claims whose Node appeared this pass: (claim, node).
    pub registered: Vec<(String, String)>,
    /// Claims that became initialized this pass.
    pub initialized: Vec<String>,
    /// Claims whose Node did not register within the timeout.
    pub expired: Vec<String>,
    /// Claims whose Node is gone: finished here.
    pub deleted: Vec<String>,
    /// Claims (or their Nodes) being deleted, with their Node: carried
    /// through the termination flow (`terminate`), a step per pass.
    pub terminating: Vec<(String, Option<String>)>,
    /// Claims without `Launched` (written, then the controller stopped
    /// before CreateFleet returned): to launch again, idempotently.
    pub relaunch: Vec<PlannedNode>,
    /// The writes, one sequence per claim.
    pub actions: Vec<Sequence>,
}

/// One pass over the claims: registration, initialization, readiness,
/// registration timeouts, and removal of claims or Nodes being deleted.
pub(crate) fn track(
    claims: &[NodeClaim],
    nodes: &[Node],
    now: Timestamp,
    ttl: Duration,
) -> Tracked {
    let by_instance: HashMap<&str, &Node> = nodes
        .iter()
        .filter_map(|n| Some((node_instance(n)?, n)))
        .collect();
    let mut out = Tracked::default();
    for c in claims {
        let Some(name) = c.metadata.name.clone() else {
            continue;
        };
        let node = instance_id(c).and_then(|id| by_instance.get(id).copied());
        let node_name = node.and_then(|n| n.metadata.name.clone());
        let terminate = |reason| Action::Terminate {
            claim: c.metadata.name.clone().unwrap_or_default(),
            reason,
        };
        let delete = Action::DeleteClaim {
            claim: name.clone(),
        };
        let launched = is_true(c.status.as_ref(), LAUNCHED);
        // Being deleted: the claim (kubectl delete nodeclaim), or its Node.
        if c.metadata.deletion_timestamp.is_some()
            || node.is_some_and(|n| n.metadata.deletion_timestamp.is_some())
        {
            out.terminating.push((name, node_name));
            continue;
        }
        if !launched {
            if let Some(p) = planned_node(c) {
                out.relaunch.push(p);
            } else {
                out.deleted.push(name);
                out.actions.push(delete.into());
            }
            continue;
        }
        let Some(n) = node else {
            if c.status.as_ref().is_some_and(|s| s.node_name.is_some()) {
                // Registered once, and the Node is gone: so is the node.
                out.deleted.push(name);
                out.actions
                    .push(Sequence(vec![terminate(TerminateReason::Deleted), delete]));
            } else if age(c, now) >= ttl {
                out.expired.push(name);
                out.actions.push(Sequence(vec![
                    terminate(TerminateReason::RegistrationTimeout),
                    delete,
                ]));
            }
            continue;
        };
        let node_name = node_name.unwrap_or_default();
        let mut seq = Vec::new();
        let was_registered = is_true(c.status.as_ref(), REGISTERED);
        if !was_registered {
            out.registered.push((name.clone(), node_name.clone()));
            seq.push(Action::PatchNode {
                node: node_name.clone(),
                patch: registration_patch(c, n),
            });
        }
        let status = synced_status(c, n, now);
        if !is_true(c.status.as_ref(), INITIALIZED) && is_true(Some(&status), INITIALIZED) {
            out.initialized.push(name.clone());
            seq.push(Action::PatchNode {
                node: node_name,
                patch: json!({"metadata": {"labels": {LABEL_INITIALIZED: "true"}}}),
            });
        }
        if c.status.as_ref() != Some(&status) {
            seq.push(Action::ClaimStatus {
                claim: name,
                status: serde_json::to_value(&status).unwrap_or_default(),
            });
        }
        if !seq.is_empty() {
            out.actions.push(Sequence(seq));
        }
    }
    out
}

/// How long ago a claim was created (zero when unknown).
fn age(c: &NodeClaim, now: Timestamp) -> Duration {
    c.metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| Duration::try_from(now.duration_since(t.0)).ok())
        .unwrap_or_default()
}

/// The claims as planning sees them: those not being deleted, each matched
/// to its Node by provider ID.
pub(crate) fn claims_view(claims: &[NodeClaim], nodes: &[Node]) -> Claims {
    let by_instance: HashMap<&str, &str> = nodes
        .iter()
        .filter_map(|n| Some((node_instance(n)?, n.metadata.name.as_deref()?)))
        .collect();
    let mut out = Claims::default();
    for c in claims {
        if c.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(name) = c.metadata.name.clone() else {
            continue;
        };
        let status = c.status.as_ref();
        let planned_type = c.spec.requirements.instance_types.first().map(|o| &o.name);
        let launched_type = status.and_then(|s| s.instance_type.as_ref());
        let allocatable = match (planned_type, launched_type) {
            // EC2 fell back to another ranked type: it fits the planned pods,
            // but its spare room is not known here, so offer none beyond them.
            (Some(p), Some(l)) if p != l => resources(&c.spec.resources.requests),
            _ => resources(&c.spec.resources.allocatable),
        };
        let capacity_type = status
            .and_then(|s| s.capacity_type.as_deref())
            .or(c
                .spec
                .requirements
                .capacity_types
                .first()
                .map(String::as_str))
            .and_then(CapacityType::parse)
            .unwrap_or(CapacityType::OnDemand);
        let node_name = instance_id(c)
            .and_then(|id| by_instance.get(id))
            .map(|n| n.to_string());
        out.insert(Claim {
            pool: c.spec.pool.clone(),
            instance_type: launched_type.or(planned_type).cloned().unwrap_or_default(),
            zone: status
                .and_then(|s| s.zone.clone())
                .or_else(|| c.spec.requirements.zones.first().cloned())
                .unwrap_or_default(),
            capacity_type,
            labels: node_labels(c),
            taints: c.spec.taints.iter().filter_map(ir_taint).collect(),
            startup_taints: c.spec.startup_taints.iter().filter_map(ir_taint).collect(),
            allocatable,
            overhead: resources(&c.spec.resources.overhead),
            pods: c.spec.pods.iter().cloned().collect::<BTreeSet<_>>(),
            node_name,
            initialized: is_true(status, INITIALIZED),
            name,
        });
    }
    out
}

/// `finalizers` without ours (what releasing an object writes back).
pub(crate) fn without_ours(finalizers: Option<&Vec<String>>) -> Vec<String> {
    finalizers
        .into_iter()
        .flatten()
        .filter(|f| f.as_str() != FINALIZER)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
