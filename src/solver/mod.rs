//! The solver: from a policy, a catalog, the offerings EC2 refused and a
//! workload to the cheapest plan (`plan::Plan`).
//!
//! A pure function of its inputs: everything it reads is in `SolveInput`,
//! borrowed and immutable for the solve. Availability is a snapshot the
//! caller takes (`catalog::UnavailableOfferings::snapshot`); the solver
//! never reads a clock or a shared cache.

use crate::catalog::{Availability, Catalog};
use crate::ir::PolicySet;
use crate::scoring::{PlanBudget, Scorer};
use crate::workload::Workload;

pub mod bound;
mod capacity;
pub(crate) mod explain;
pub mod pack;
pub mod plan;
pub mod reference;
pub mod render;
mod spread_taints;
pub mod tables;
mod topology;
pub mod validate;

pub use plan::{ExistingPlacement, InstanceOption, Plan, PlannedNode, Unschedulable};

/// Everything one solve reads. Borrowed so a plan never copies the catalog.
#[derive(Clone, Copy)]
pub struct SolveInput<'a> {
    pub policy: &'a PolicySet,
    pub catalog: &'a Catalog,
    pub workload: &'a Workload,
    /// User scoring (rhai); None = price alone.
    pub scorer: Option<&'a dyn Scorer>,
    /// Offerings recently refused by EC2, as a snapshot; the solver avoids
    /// them. None = every offering the catalog lists as available.
    pub unavailable: Option<&'a Availability>,
}

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
///
/// A scorer with a per-plan time cap (`Scorer::plan_time_budget`) is
/// metered for this plan; when its scripts spend the cap, the plan is made
/// again without the scorer (price alone) and a note says why.
pub fn solve_with(input: &SolveInput<'_>, strategy: pack::Strategy) -> Plan {
    let mut plan = solve_scored(input, strategy);
    plan.notes.extend(spread_taints::notes(input));
    plan
}

/// [`solve_with`] before its notes on the input: the plan, made again unscored when
/// the scripts spent the plan's time budget.
fn solve_scored(input: &SolveInput<'_>, strategy: pack::Strategy) -> Plan {
    let Some((scorer, cap)) = input
        .scorer
        .and_then(|s| s.plan_time_budget().map(|cap| (s, cap)))
    else {
        return pack_best(input, strategy);
    };
    let metered = PlanBudget::new(scorer, cap);
    let plan = pack_best(
        &SolveInput {
            scorer: Some(&metered),
            ..*input
        },
        strategy,
    );
    let Some(report) = metered.report() else {
        return plan;
    };
    let mut plan = pack_best(
        &SolveInput {
            scorer: None,
            ..*input
        },
        strategy,
    );
    plan.notes.push(report);
    plan
}

/// Packs with `strategy`; on small inputs also memory-major, keeping the better plan.
fn pack_best(input: &SolveInput<'_>, strategy: pack::Strategy) -> Plan {
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

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_topo;
