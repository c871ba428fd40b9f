//! `nodewright controller`: the in-cluster loop.
//!
//! watch pods → batch → snapshot the cluster → solve with the active policy
//! version → launch → track claims until their nodes register → remove
//! nodes no longer needed. The logic lives in the pure modules here, tested
//! without a cluster: `steps` (one function per step of a pass, each
//! returning `action`s), and what they build on (`batch`, `snapshot`,
//! `claims`, `disrupt`, `launchable`, `notice`). `run` only moves data
//! between the API server, the solver and EC2, and `metrics` counts it.
//! `leader` decides, from a Lease, which of two replicas acts.

// Without the `controller` feature there is no run loop to call the pure steps; they still
// build, and their unit tests run, in every build.
#![cfg_attr(
    not(feature = "controller"),
    allow(
        dead_code,
        reason = "the steps' only caller, the run loop, needs the controller feature"
    )
)]

mod action;
mod batch;
mod claims;
mod disrupt;
mod launchable;
pub mod leader;
mod metrics;
mod notice;
pub mod snapshot;
mod steps;

#[cfg(feature = "controller")]
mod serve;

#[cfg(feature = "controller")]
pub mod run;
