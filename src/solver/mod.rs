//! The plan: which nodes to launch, where each pending pod goes, and why any
//! pod cannot go anywhere.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{CapacityType, Catalog};
use crate::cloud::unavailable::UnavailableOfferings;
use crate::ir::{PolicySet, Resources, Taint};
use crate::scoring::Scorer;
use crate::workload::Workload;

/// Everything one solve reads. Borrowed so a plan never copies the catalog.
pub struct SolveInput<'a> {
    pub policy: &'a PolicySet,
    pub catalog: &'a Catalog,
    pub workload: &'a Workload,
    /// User scoring (rhai); None = price alone.
    pub scorer: Option<&'a dyn Scorer>,
    /// Offerings recently refused by EC2; the solver avoids them.
    pub unavailable: Option<&'a UnavailableOfferings>,
}

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
    pub price_per_hour: f64,
    /// Ranked acceptable alternatives (chosen type first) the launcher may fall back to.
    pub instance_type_options: Vec<InstanceOption>,
    /// "namespace/name" of each pod it carries.
    pub pods: Vec<String>,
    /// Requests of the pods plus DaemonSet overhead.
    pub requested: Resources,
    /// Allocatable of the chosen type.
    pub allocatable: Resources,
    /// Labels the node will carry (pool labels, and requirement-implied single values).
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

pub mod bound;
pub mod capacity;
pub mod explain;
pub mod pack;
pub mod tables;
pub mod topology;

/// Plans the cheapest set of nodes for the pending pods in `input`.
///
/// Deterministic: the same input always yields the same plan. Pods that fit
/// nowhere are listed in `unschedulable` with one reason per rejected pool or
/// group of instance types. See docs/solver.md for what is honoured and the
/// order preferences are relaxed in.
pub fn solve(input: &SolveInput<'_>) -> Plan {
    solve_with(input, pack::Strategy::CostAware)
}

/// `solve` with an explicit packing strategy (the FFD baseline is for benchmarks).
pub fn solve_with(input: &SolveInput<'_>, strategy: pack::Strategy) -> Plan {
    let mut t = tables::Tables::new(input);
    let plan = pack::Packer::new(&mut t, strategy).run();
    let pods: usize = input.workload.classes.iter().map(|c| c.count()).sum();
    if strategy != pack::Strategy::CostAware || pods > PORTFOLIO_MAX_PODS {
        return plan;
    }
    // Greedy packing by cpu-major size can pair the wrong classes (a node
    // full on cpu with memory to spare beside one full on memory); on small
    // inputs a second, memory-major ordering costs little and the cheaper
    // plan (fewest unplaced pods first) wins. Ties keep the first.
    let alt = pack::Packer::new(&mut t, strategy).memory_first().run();
    let better = alt.unschedulable.len() < plan.unschedulable.len()
        || (alt.unschedulable.len() == plan.unschedulable.len()
            && alt.total_price_per_hour < plan.total_price_per_hour - 1e-9);
    if better { alt } else { plan }
}

/// Workloads up to this many pods are also packed memory-major (see `solve_with`).
pub const PORTFOLIO_MAX_PODS: usize = 500;
pub mod reference;
pub mod render;
pub mod synth;
pub mod validate;

/// Serialises a capacity type as its label value (`on-demand`, `spot`).
mod capacity_label {
    use super::CapacityType;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ct: &CapacityType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(ct.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<CapacityType, D::Error> {
        let v = String::deserialize(d)?;
        CapacityType::parse(&v).ok_or_else(|| {
            serde::de::Error::custom(format!("capacity type `{v}`: expected on-demand or spot"))
        })
    }
}

#[cfg(test)]
mod tests;
