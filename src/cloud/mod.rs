//! Launching on EC2 and the state shared with the solver.
//!
//! `ec2` builds the client, `resolve` turns node-class selectors into
//! subnets, security groups and AMIs, `template` and `userdata` make the
//! launch templates, `launcher` runs CreateFleet with fallback and cleans up,
//! and `retry` decides what is worth retrying. The offerings EC2 recently
//! refused are remembered in `catalog::availability`, beside the catalog the
//! solver reads: the launcher marks them there.
//!
//! Everything that talks to EC2 needs the `aws` feature (the SDK is optional
//! while the team shares a small machine); `userdata` does not.

#[cfg(feature = "aws")]
pub mod ec2;
#[cfg(feature = "aws")]
pub mod launcher;
#[cfg(feature = "aws")]
pub mod resolve;
#[cfg(feature = "aws")]
pub mod retry;
#[cfg(feature = "aws")]
pub mod template;
pub mod userdata;
