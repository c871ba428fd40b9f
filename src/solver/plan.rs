//! The plan a solve returns: which nodes to launch, where each pending pod
//! goes, and why any pod cannot go anywhere. `--output json` serialises
//! these types as they are, so their fields are a stable schema.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::CapacityType;
use crate::ir::{Resources, Taint};

/// The solver's output. `--output json` serialises exactly this (a stable schema).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Nodes to launch.
    pub nodes: Vec<PlannedNode>,
    /// Pods placed on nodes that already exist.
    pub existing: Vec<ExistingPlacement>,
    /// Pods that fit nowhere, with a reason per rejected pool or instance type.
    pub unschedulable: Vec<Unschedulable>,
    /// Sum of `nodes[].price_per_hour`.
    #[serde(serialize_with = "price::serialize")]
    pub total_price_per_hour: f64,
    /// Notes for the user ("spot prices are estimates", relaxed preferences, ...).
    pub notes: Vec<String>,
}

/// One node to launch (becomes a NodeClaim and a CreateFleet request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedNode {
    /// Deterministic claim name (`<pool>-<n>`), stable across identical runs.
    pub name: String,
    pub pool: String,
    pub node_class: String,
    pub zone: String,
    /// `on-demand` or `spot` in JSON (the label spelling).
    #[serde(with = "capacity_label")]
    pub capacity_type: CapacityType,
    /// The chosen (cheapest acceptable) type.
    pub instance_type: String,
    /// $/hour after cost rules (the chosen type).
    #[serde(serialize_with = "price::serialize")]
    pub price_per_hour: f64,
    /// Ranked acceptable alternatives (chosen type first) the launcher may fall back to.
    pub instance_type_options: Vec<InstanceOption>,
    /// "namespace/name" of each pod it carries.
    pub pods: Vec<String>,
    /// Requests of the pods plus DaemonSet overhead.
    pub requested: Resources,
    /// Allocatable of the chosen type.
    pub allocatable: Resources,
    /// Every label the node will carry once the controller adopts it: the
    /// offering's well-known labels, the pool's labels and single-valued
    /// custom requirements, `karpenter.sh/nodepool`, `nodewright.io/pool` and
    /// `nodewright.io/claim` (`catalog::node_labels::planned_node_labels`).
    /// Only `kubernetes.io/hostname`, which the kubelet sets, is missing.
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub startup_taints: Vec<Taint>,
}

/// An acceptable instance type for a planned node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceOption {
    /// Shared with every other option of the same type in the plan: a large
    /// plan lists tens of thousands of options over a few hundred types.
    pub instance_type: std::sync::Arc<str>,
    #[serde(serialize_with = "price::serialize")]
    pub price_per_hour: f64,
}

/// Pods placed on one existing node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExistingPlacement {
    pub node: String,
    pub pods: Vec<String>,
}

/// A pod that could not be placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unschedulable {
    /// "namespace/name".
    pub pod: String,
    /// One line per rejected pool / group of instance types.
    pub reasons: Vec<String>,
}

/// Serialises a capacity type as its label value (`on-demand`, `spot`).
mod capacity_label {
    use crate::catalog::CapacityType;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(ct: &CapacityType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(ct.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<CapacityType, D::Error> {
        let v = String::deserialize(d)?;
        CapacityType::parse(&v).ok_or_else(|| {
            serde::de::Error::custom(format!("capacity type `{v}`: expected on-demand or spot"))
        })
    }
}

/// Prices in JSON: sums and cost rules leave float noise (`0.024480000000000002`) that
/// no price table has; a millionth of a dollar per hour is finer than any EC2 price.
mod price {
    /// Rounds to 6 decimal places and writes `0` for `-0`.
    pub(super) fn serialize<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(round(*v))
    }

    /// The value JSON shows.
    pub(super) fn round(v: f64) -> f64 {
        if !v.is_finite() {
            return v;
        }
        // `+ 0.0` turns -0.0 (an empty f64 sum) into 0.0.
        (v * 1e6).round() / 1e6 + 0.0
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn noise_and_negative_zero_are_gone() {
            assert_eq!(super::round(0.024480000000000002).to_string(), "0.02448");
            assert_eq!(super::round(-0.0).to_string(), "0");
            assert_eq!(super::round(1.23456789).to_string(), "1.234568");
            assert_eq!(super::round(0.0000004).to_string(), "0");
        }
    }
}
