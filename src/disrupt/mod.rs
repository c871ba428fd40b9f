//! Pure disruption decisions: which nodes may go, and what replaces them.
//!
//! Everything here is a function of data the caller gathered (the cluster as the
//! solver sees it, the policy, the catalog, per-node facts and budgets); nothing
//! reads a clock, the API server or EC2. The controller executes the decisions
//! and `nodewright plan --consolidate` prints them, through the same functions.

pub mod consolidate;
pub mod facts;

#[cfg(test)]
mod consolidate_tests;
