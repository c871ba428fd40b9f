//! Launching on EC2 and the state shared with the solver.
//!
//! `ec2` builds the client, `resolve` turns node-class selectors into
//! subnets, security groups and AMIs, `template` and `userdata` make the
//! launch templates, `launcher` runs CreateFleet with fallback and cleans up
//! (`fleet` decides which nodes share one CreateFleet),
//! `discover` reads the live catalog from EC2's describe APIs and `refresh`
//! keeps the controller's copy fresh, `iam` makes the instance profiles of
//! node classes that name a role, `ssm` turns AMI aliases into image
//! ids through the public parameters EKS publishes, `interruption` reads
//! the messages of the interruption queue (spot warnings, health events), `retry`
//! decides what is worth retrying, and `tags` names the tags on what we
//! create. The offerings EC2 recently refused are remembered in
//! `catalog::availability`, beside the catalog the solver reads: the
//! launcher marks them there.
//!
//! Everything that talks to EC2 needs the `aws` feature (the AWS SDK and the
//! async runtime are optional: a planner-only build has neither); `tags`,
//! `fleet` and `userdata` do not.

#[cfg(feature = "aws")]
pub mod discover;
#[cfg(feature = "aws")]
pub mod ec2;
pub mod fleet;
#[cfg(feature = "aws")]
pub mod iam;
pub mod interruption;
#[cfg(feature = "aws")]
pub mod launcher;
#[cfg(feature = "aws")]
pub mod refresh;
#[cfg(feature = "aws")]
pub mod resolve;
#[cfg(feature = "aws")]
pub mod retry;
#[cfg(feature = "aws")]
pub mod ssm;
pub mod tags;
#[cfg(feature = "aws")]
pub mod template;
pub mod userdata;
