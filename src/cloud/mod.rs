//! Launching on EC2 and the state shared with the solver.
//!
//! `ec2` builds the client, `resolve` turns node-class selectors into
//! subnets, security groups and AMIs, `template` and `userdata` make the
//! launch templates, `launcher` runs CreateFleet with fallback and cleans up,
//! `retry` decides what is worth retrying, and `unavailable` remembers the
//! offerings EC2 recently refused.

pub mod ec2;
pub mod launcher;
pub mod resolve;
pub mod retry;
pub mod template;
pub mod unavailable;
pub mod userdata;
