//! STAND-IN (issue #16, until consolidation's branch merges): the contract's
//! `disrupt::consolidate` API shape, with a `decide` that proposes no move.
//! `disrupt/mod.rs` re-exports it as `consolidate`; at merge this file and
//! that re-export are deleted and the real module takes its place (the
//! controller builds the real `ConsolidationInput` there).

use serde::Serialize;

use crate::solver::PlannedNode;

/// Why a move is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Reason {
    Empty,
    Underutilized,
}

/// The cluster as consolidation sees it (the real one carries nodes, pods,
/// pools, catalog, per-node facts and budgets left).
#[derive(Debug, Clone, Default)]
pub struct ConsolidationInput {}

/// How consolidation runs (margin, limits).
#[derive(Debug, Clone, Default)]
pub struct ConsolidationOptions {}

/// What consolidation proposes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Consolidation {
    pub price_per_hour_before: f64,
    pub price_per_hour_after: f64,
    pub moves: Vec<Move>,
    pub blocked: Vec<Blocked>,
}

/// One move: remove these nodes, launch those, these pods move.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Move {
    pub reason: Reason,
    /// Node names.
    pub remove: Vec<String>,
    /// New nodes, as the plan's nodes.
    pub launch: Vec<PlannedNode>,
    /// `namespace/name` of the pods moved.
    pub pods: Vec<String>,
    pub saving_per_hour: f64,
}

/// A node consolidation would have moved, and what held it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Blocked {
    pub node: String,
    pub reason: String,
}

/// Proposes no move (the stand-in).
pub fn decide(_input: &ConsolidationInput, _opts: &ConsolidationOptions) -> Consolidation {
    Consolidation::default()
}
