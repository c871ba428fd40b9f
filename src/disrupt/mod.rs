//! Pure disruption decisions: which nodes may go, why, how many at once, and
//! what replaces them.
//!
//! Everything here is a function of data the caller gathered (the cluster as the
//! solver sees it, the policy, the catalog, per-node facts, budgets and the
//! clock's reading); nothing talks to the API server or EC2, so every rule is
//! unit-tested on plain values. The controller executes the decisions and
//! `nodewright plan --consolidate` prints them, through the same functions.

pub mod budget;
pub mod consolidate;
pub mod drift;
pub mod expiry;
pub mod facts;

#[cfg(test)]
mod consolidate_tests;
