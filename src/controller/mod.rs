//! `nodewright controller`: the in-cluster loop.
//!
//! watch pods → batch → snapshot the cluster → solve with the active policy
//! version → launch → track claims until their nodes register → remove
//! nodes no longer needed. The logic lives in the pure modules here, tested
//! without a cluster: `steps` (one function per step of a pass, each
//! returning `action`s), and what they build on (`batch`, `snapshot`,
//! `claims`, `disrupt`, `launchable`, `notice`). `run` only moves data
//! between the API server, the solver and EC2, and `metrics` counts it.

pub mod action;
pub mod batch;
pub mod claims;
pub mod disrupt;
pub mod launchable;
pub mod metrics;
pub mod notice;
pub mod snapshot;
pub mod steps;

#[cfg(feature = "controller")]
pub mod serve;

#[cfg(feature = "controller")]
pub mod run;
