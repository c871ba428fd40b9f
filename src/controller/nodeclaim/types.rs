//! The `NodeClaim` custom resource (`nodewright.io/v1alpha1`), derived with
//! kube's `CustomResource`: the Rust type is the one source of the CRD
//! committed under `deploy/crds/` (a test compares the two).
//!
//! The spec is what the plan decided and never changes after creation; the
//! status is what EC2 and the kubelet made of it. Together they are all the
//! controller knows about a node it launched, so a restarted controller
//! rebuilds its claims from these objects alone.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint as K8sTaint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ir::{Quantity, Resources, Taint, TaintEffect};

/// What a planned node is to be: written before CreateFleet, immutable after.
#[allow(
    clippy::duplicated_attributes,
    reason = "each printcolumn(...) of the CustomResource derive repeats type_ and priority"
)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "nodewright.io",
    version = "v1alpha1",
    kind = "NodeClaim",
    plural = "nodeclaims",
    singular = "nodeclaim",
    shortname = "nwc",
    category = "nodewright",
    status = "NodeClaimStatus",
    printcolumn(name = "Type", type_ = "string", json_path = ".status.instanceType"),
    printcolumn(
        name = "Capacity",
        type_ = "string",
        json_path = ".status.capacityType"
    ),
    printcolumn(name = "Zone", type_ = "string", json_path = ".status.zone"),
    printcolumn(name = "Node", type_ = "string", json_path = ".status.nodeName"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "ImageID",
        type_ = "string",
        json_path = ".status.imageID",
        priority = "1"
    ),
    printcolumn(
        name = "ID",
        type_ = "string",
        json_path = ".status.providerID",
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimSpec {
    /// The pool (policy `pool` block) the node belongs to.
    pub pool: String,
    /// The node class (AMI, subnets, security groups) it launches with.
    pub node_class: String,
    /// The offerings the plan left open, for the launcher to choose from.
    pub requirements: ClaimRequirements,
    /// What the plan put on the node and expects it to offer.
    pub resources: ClaimResources,
    /// Labels the Node gets on registration (the launched type, zone and
    /// capacity type overwrite the planned ones).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Taints the Node gets on registration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<K8sTaint>,
    /// Taints the node starts with and something else removes (a CNI, a
    /// device plugin); the node is not initialized while it has them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_taints: Vec<K8sTaint>,
    /// Maximum lifetime of the node (Go duration, e.g. `720h`); none: forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_after: Option<String>,
    /// "namespace/name" of the pending pods the node was planned for: until
    /// it is initialized they count as its own, so no other node is planned
    /// for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
}

/// The offerings a claim may launch as: instance types (cheapest acceptable
/// first, the order the launcher falls back in) × zones × capacity types.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRequirements {
    /// Acceptable instance types in price order, the planned one first.
    pub instance_types: Vec<InstanceTypeOption>,
    /// Zones the node may launch in.
    pub zones: Vec<String>,
    /// `on-demand` or `spot`.
    pub capacity_types: Vec<String>,
}

/// One acceptable instance type and its price after cost rules.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceTypeOption {
    pub name: String,
    /// Dollars per hour, as the plan priced it.
    pub price_per_hour: f64,
}

/// What the plan expects of the node, as Kubernetes quantities.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClaimResources {
    /// The planned pods' requests plus DaemonSet overhead.
    #[serde(default)]
    pub requests: BTreeMap<String, K8sQuantity>,
    /// The DaemonSet share of `requests`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overhead: BTreeMap<String, K8sQuantity>,
    /// Allocatable of the planned (first) instance type: the room the node
    /// stands for until it is initialized.
    #[serde(default)]
    pub allocatable: BTreeMap<String, K8sQuantity>,
}

/// What EC2 launched and what the kubelet registered.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimStatus {
    /// `aws:///<zone>/<instance id>`, as the Node's `spec.providerID`.
    #[serde(
        rename = "providerID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub provider_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// `on-demand` or `spot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_type: Option<String>,
    #[serde(rename = "imageID", default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The Node that registered for the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The Node's capacity once initialized.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, K8sQuantity>,
    /// The Node's allocatable once initialized.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocatable: BTreeMap<String, K8sQuantity>,
    /// When a pod last arrived on or left the node (for emptiness).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pod_event_time: Option<Time>,
    /// `Launched`, `Registered`, `Initialized`, `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The quantities of a resource vector, by Kubernetes name (zeros left out).
pub fn quantities(r: &Resources) -> BTreeMap<String, K8sQuantity> {
    r.iter()
        .map(|(k, v)| {
            let q = if k == "cpu" {
                format!("{v}m")
            } else {
                v.to_string()
            };
            (k.to_string(), K8sQuantity(q))
        })
        .collect()
}

/// A resource vector from Kubernetes quantities; unreadable ones are left
/// out (they come from the API server, never worth a panic).
pub fn resources(q: &BTreeMap<String, K8sQuantity>) -> Resources {
    let mut r = Resources::zero();
    for (k, v) in q {
        if let Ok(parsed) = Quantity::parse(&v.0) {
            r.set(k, parsed);
        }
    }
    r
}

/// A policy taint as the Kubernetes API spells it.
pub fn k8s_taint(t: &Taint) -> K8sTaint {
    K8sTaint {
        key: t.key.clone(),
        value: t.value.clone(),
        effect: t.effect.as_str().to_string(),
        time_added: None,
    }
}

/// A Kubernetes taint as the planner reads it (None for an unknown effect).
pub fn ir_taint(t: &K8sTaint) -> Option<Taint> {
    Some(Taint {
        key: t.key.clone(),
        value: t.value.clone(),
        effect: TaintEffect::parse(&t.effect)?,
    })
}
