//! `nodewright controller`: the in-cluster loop.
//!
//! watch pods → batch → snapshot the cluster → solve with the active policy
//! version → launch → track claims until their nodes register → remove
//! nodes no longer needed. The logic lives in the pure modules here
//! (`batch`, `snapshot`, `claims`, `disrupt`), tested without a cluster;
//! `run` only moves data between the API server, the solver and EC2.

pub mod batch;
pub mod claims;
pub mod disrupt;
pub mod launchable;
pub mod notice;
pub mod snapshot;

#[cfg(feature = "controller")]
pub mod serve;

#[cfg(feature = "controller")]
pub mod run;
