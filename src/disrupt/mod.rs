//! Pure disruption decisions: which nodes may go, why, and how many at once.
//!
//! The controller gathers the facts (claims, Nodes, pods, the clock) and
//! carries the decisions out; nothing here talks to the API server or EC2,
//! so every rule is unit-tested on plain values.

pub mod budget;
pub mod drift;
pub mod expiry;
// STAND-IN for consolidation's module until its branch merges (then this
// file and re-export go, and `pub mod consolidate;` comes in).
pub mod consolidate_standin;
pub use consolidate_standin as consolidate;
