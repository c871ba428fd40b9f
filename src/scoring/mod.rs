//! User scoring of candidates (rhai scripts, sandboxed) behind one trait the solver calls.
//!
//! The rule: a score is **$/hour added to the candidate's price** (negative
//! makes a candidate more attractive), within `±SCORE_LIMIT`; `admit` may
//! veto with a reason.

mod api;
mod budget;
mod sandbox;
mod scorer;
mod script;

use std::collections::BTreeMap;

use crate::catalog::{CapacityType, InstanceType};
pub use budget::PlanBudget;
pub use sandbox::{TimeBudget, default_time_budget, set_default_time_budget};
pub use scorer::{RhaiScorer, build_scorer, build_scorer_reusing};
pub use script::{Script, ScriptError};

/// The largest score magnitude, in $/hour: a script's score beyond it (an
/// infinity included) counts as this, and the script is warned about once.
///
/// More than any EC2 instance costs an hour (the largest are a few hundred
/// dollars), so a score can still outweigh any price difference; small
/// enough that sums of prices and scores over thousands of nodes stay
/// exact to a fraction of a cent. A score of 1.7e308 used to swamp every
/// price: `price + score` lost the price entirely and sums overflowed.
pub const SCORE_LIMIT: f64 = 1_000.0;

/// What a scorer says about one candidate.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Add this many $/hour to the candidate's price (0.0 = no opinion).
    Adjust(f64),
    /// Do not use this candidate; the reason is shown by `explain`.
    Veto(String),
}

/// An offering as a scorer sees it: depends only on the offering, so scores can be memoised.
#[derive(Debug, Clone, Copy)]
pub struct OfferingView<'a> {
    pub pool: &'a str,
    pub instance_type: &'a InstanceType,
    pub zone: &'a str,
    pub capacity_type: CapacityType,
    /// $/hour after cost rules.
    pub price: f64,
}

/// What a candidate node would carry.
#[derive(Debug, Clone, Copy)]
pub struct NodeLoad<'a> {
    pub pods: u32,
    pub cpu_requested_milli: i64,
    pub memory_requested: i64,
    /// Requested / allocatable, 0..=1.
    pub cpu_utilisation: f64,
    pub memory_utilisation: f64,
    /// Namespaces and labels of the pods it would carry (one entry per pod class).
    pub namespaces: &'a [&'a str],
    pub pod_labels: &'a [&'a BTreeMap<String, String>],
}

impl<'a> NodeLoad<'a> {
    /// The load of `pods` pods requesting `cpu_milli` and `memory` on a node
    /// with `alloc_cpu_milli` / `alloc_memory` allocatable; every caller
    /// derives the utilisations the same way, here.
    pub fn new(
        pods: u32,
        (cpu_milli, memory): (i64, i64),
        (alloc_cpu_milli, alloc_memory): (i64, i64),
        namespaces: &'a [&'a str],
        pod_labels: &'a [&'a BTreeMap<String, String>],
    ) -> Self {
        NodeLoad {
            pods,
            cpu_requested_milli: cpu_milli,
            memory_requested: memory,
            cpu_utilisation: cpu_milli as f64 / alloc_cpu_milli.max(1) as f64,
            memory_utilisation: memory as f64 / alloc_memory.max(1) as f64,
            namespaces,
            pod_labels,
        }
    }
}

/// Scores candidates. Implementations must never panic or block: a failing
/// script yields `Verdict::Adjust(0.0)` and is reported once per script version.
pub trait Scorer: Send + Sync {
    /// Offering-only score (memoisable per script version × offering).
    fn score_offering(&self, offering: &OfferingView<'_>) -> Verdict;
    /// Score of a concrete node: the offering plus what it would carry.
    fn score_node(&self, offering: &OfferingView<'_>, load: &NodeLoad<'_>) -> Verdict;
    /// True when `score_node` can differ from `score_offering` (the script reads pod-dependent fields).
    fn is_load_dependent(&self) -> bool;
    /// The scripting time one plan may spend in this scorer (see
    /// `TimeBudget::per_plan`); None = no cap. The solver meters its calls
    /// with `PlanBudget` and, past the cap, plans again unscored.
    fn plan_time_budget(&self) -> Option<std::time::Duration> {
        None
    }
}
