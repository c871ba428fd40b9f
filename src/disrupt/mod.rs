//! Pure disruption decisions: which nodes may go, why, and how many at once.
//!
//! The controller gathers the facts (claims, Nodes, pods, the clock) and
//! carries the decisions out; nothing here talks to the API server or EC2,
//! so every rule is unit-tested on plain values.

pub mod budget;
pub mod drift;
pub mod expiry;
