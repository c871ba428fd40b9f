//! `nodewright controller`: the in-cluster loop.
//!
//! watch (caches) → batch → snapshot the caches → solve with the active
//! policy version → write a NodeClaim and launch → carry each claim through
//! registration and initialization → remove nodes no longer needed. The
//! logic lives in the pure modules here, tested without a cluster: `steps`
//! (one function per step of a pass, each returning `action`s), and what
//! they build on (`batch`, `snapshot`, `claims`, `nodeclaim`, `disrupt`,
//! `launchable`, `notice`), `gc` (what no claim accounts for any more) and
//! `terminate` (the one way a node goes: taint, drain, terminate, release).
//! `run` only moves data between the API server,
//! the solver and EC2, and `metrics` counts it; `stores` keeps the watch
//! caches a pass reads, and `clock` times passes.
//! `leader` decides, from a Lease, which of two replicas acts.
//! `interruption` reads the interruption queue (spot warnings, scheduled
//! changes, state changes) in a task of its own, on the leader only.

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
pub mod gc;
mod launchable;
pub mod leader;
mod metrics;
mod notice;
pub mod snapshot;
mod steps;
mod terminate;

#[cfg(feature = "controller")]
mod catalog_report;
#[cfg(feature = "controller")]
mod clock;
#[cfg(feature = "controller")]
mod consolidation;
#[cfg(feature = "controller")]
mod disruption;
#[cfg(feature = "controller")]
mod interruption;
#[cfg(feature = "controller")]
mod kube_version;
#[cfg(feature = "controller")]
pub mod nodeclaim;
#[cfg(feature = "controller")]
mod reload_line;
#[cfg(feature = "controller")]
mod serve;
#[cfg(feature = "controller")]
mod stores;

#[cfg(feature = "controller")]
pub mod run;
