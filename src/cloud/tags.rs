//! The EC2 tags nodewright puts on what it creates.
//!
//! Both the launcher (instances, fleets) and the template cache (launch
//! templates) tag with these, and the controller finds its instances by them.
//! They live on their own so that neither of those modules imports the other
//! for a constant. No dependency on the AWS SDK: plain data, so the
//! controller's pure steps can read [`OwnedInstance`]s in any build.

/// Tag: the cluster that owns an instance (or launch template).
pub const TAG_CLUSTER: &str = "nodewright.io/cluster";
/// Tag: the pool an instance was launched for.
pub const TAG_POOL: &str = "nodewright.io/pool";
/// Tag: the claim (planned node) an instance is.
pub const TAG_CLAIM: &str = "nodewright.io/claim";

/// Node label: the claim a Node was launched as (spelled as the tag, so
/// either names the other).
pub const LABEL_CLAIM: &str = TAG_CLAIM;

/// An instance this cluster owns, as its tags and state describe it
/// (`Launcher::list_owned` reads them back from EC2).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct OwnedInstance {
    pub instance_id: String,
    /// The [`TAG_CLAIM`] tag: None for an instance launched outside a claim.
    pub claim: Option<String>,
    /// The [`TAG_POOL`] tag.
    pub pool: Option<String>,
    pub instance_type: String,
    pub zone: String,
    /// The AMI it boots.
    pub image_id: String,
    /// `pending`, `running`, `stopping`, `stopped`, `shutting-down`.
    pub state: String,
    /// EC2's launch time: garbage collection gives an instance without a
    /// claim this long to be claimed (None: unknown, never collected).
    pub launched_at: Option<std::time::SystemTime>,
}

/// A launch template tagged for this cluster, as EC2 lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedTemplate {
    pub name: String,
    pub id: String,
    /// When EC2 created it (a template younger than the garbage-collection
    /// grace may belong to a launch in progress).
    pub created: Option<std::time::SystemTime>,
}
