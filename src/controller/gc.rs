//! Garbage collection: what no claim accounts for any more, as pure
//! functions of one observation returning what to delete.
//!
//! Three kinds of leftovers:
//! - a claim whose instance is gone (terminated behind our back, a spot
//!   interruption) holds room and pods no node will ever have: the claim
//!   and its Node are deleted ([`gone_claims`]);
//! - an instance tagged for the cluster that no claim owns (a crash between
//!   CreateFleet and recording the claim, a claim deleted by hand) costs
//!   money and serves nothing: it is terminated once it is older than the
//!   grace ([`orphan_instances`]; Karpenter gives such instances 30 s);
//! - a launch template tagged for the cluster that no pool of the active
//!   policy launches with any more (a changed pool, node class or AMI):
//!   deleted ([`unreferenced_templates`]).
//!
//! The inputs are small views, so that the steps do not depend on where
//! claims are kept (in memory today, NodeClaim objects later): `run` builds
//! the [`ClaimView`]s and carries out the [`GcAction`]s.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, SystemTime};

use crate::cloud::tags::{OwnedInstance, OwnedTemplate};
// What reading NodeClaims (a kube-rs custom resource) needs: only with `controller`.
#[cfg(feature = "controller")]
use {
    super::claims::instance_id_of,
    super::nodeclaim::{NodeClaim, lifecycle},
    crate::cloud::tags::LABEL_CLAIM,
    k8s_openapi::api::core::v1::Node,
};

/// How patient garbage collection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcOptions {
    /// An instance without a claim is terminated once launched this long ago
    /// (Karpenter: 30 s).
    pub orphan_grace: Duration,
    /// A claim whose instance EC2 no longer lists is deleted once it is this
    /// old (EC2's listing may lag a launch by a few seconds).
    pub gone_grace: Duration,
    /// Launch templates are listed at most this often (one API call), and a
    /// template younger than `orphan_grace` is kept (a launch may be using it).
    pub template_interval: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            orphan_grace: Duration::from_secs(30),
            gone_grace: Duration::from_secs(30),
            template_interval: Duration::from_secs(120),
        }
    }
}

/// A claim as garbage collection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ClaimView {
    pub name: String,
    /// Set once the claim is launched.
    pub instance_id: Option<String>,
    /// Its Node, once registered.
    pub node: Option<String>,
    /// When the claim was made (or its Node registered).
    pub created: SystemTime,
}

/// One thing to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum GcAction {
    /// The claim's instance is gone: forget the claim, delete its Node.
    DeleteClaim {
        claim: String,
        instance_id: String,
        node: Option<String>,
    },
    /// An instance of ours that no claim owns.
    TerminateInstance {
        instance_id: String,
        /// Its `nodewright.io/claim` tag, for the log.
        claim_tag: Option<String>,
    },
}

/// States in which an instance still exists for a claim (`shutting-down`
/// and `terminated` are on their way out).
fn alive(state: &str) -> bool {
    matches!(state, "pending" | "running" | "stopping" | "stopped")
}

/// Claims past launch whose instance EC2 no longer lists alive, older than
/// the grace.
pub(super) fn gone_claims(
    claims: &[ClaimView],
    owned: &[OwnedInstance],
    now: SystemTime,
    opts: &GcOptions,
) -> Vec<GcAction> {
    let alive_ids: HashSet<&str> = owned
        .iter()
        .filter(|o| alive(&o.state))
        .map(|o| o.instance_id.as_str())
        .collect();
    claims
        .iter()
        .filter_map(|c| {
            let id = c.instance_id.as_deref()?;
            let old = now
                .duration_since(c.created)
                .is_ok_and(|age| age >= opts.gone_grace);
            (old && !alive_ids.contains(id)).then(|| GcAction::DeleteClaim {
                claim: c.name.clone(),
                instance_id: id.to_string(),
                node: c.node.clone(),
            })
        })
        .collect()
}

/// Our instances that no claim owns (by instance id, or by the claim name
/// in their tag), launched longer than the grace ago. An instance whose
/// launch time is unknown is never collected.
pub(super) fn orphan_instances(
    claims: &[ClaimView],
    owned: &[OwnedInstance],
    now: SystemTime,
    opts: &GcOptions,
) -> Vec<GcAction> {
    let ids: HashSet<&str> = claims
        .iter()
        .filter_map(|c| c.instance_id.as_deref())
        .collect();
    let names: HashSet<&str> = claims.iter().map(|c| c.name.as_str()).collect();
    owned
        .iter()
        .filter(|o| alive(&o.state))
        .filter(|o| !ids.contains(o.instance_id.as_str()))
        .filter(|o| !o.claim.as_deref().is_some_and(|c| names.contains(c)))
        .filter(|o| {
            o.launched_at
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= opts.orphan_grace)
        })
        .map(|o| GcAction::TerminateInstance {
            instance_id: o.instance_id.clone(),
            claim_tag: o.claim.clone(),
        })
        .collect()
}

/// The NodeClaims and Nodes, as garbage collection sees them: (`ours`, `owners`).
///
/// `ours` (what is deleted, with its Node, when its instance is gone) is
/// every NodeClaim; `owners` (whatever keeps an instance from being an
/// orphan) is every NodeClaim and every Node with an AWS provider ID, ours
/// or not: an instance someone registered by hand is not ours to terminate.
/// NodeClaim is a kube-rs custom resource, so this needs the `controller` feature.
#[cfg(feature = "controller")]
pub(super) fn views_from_claims(
    claims: &[NodeClaim],
    nodes: &[Node],
    wall: SystemTime,
) -> (Vec<ClaimView>, Vec<ClaimView>) {
    let created = |t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        // Unknown creation: as if just created, so only a later pass collects it.
        t.and_then(|t| u64::try_from(t.0.as_second()).ok())
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
            .unwrap_or(wall)
    };
    let mut ours = Vec::new();
    let mut owners = Vec::new();
    for c in claims {
        let Some(name) = c.metadata.name.clone() else {
            continue;
        };
        let v = ClaimView {
            name,
            instance_id: lifecycle::instance_id(c).map(str::to_string),
            node: c.status.as_ref().and_then(|s| s.node_name.clone()),
            created: created(c.metadata.creation_timestamp.as_ref()),
        };
        ours.push(v.clone());
        owners.push(v);
    }
    for n in nodes {
        let (Some(name), Some(id)) = (
            n.metadata.name.as_deref(),
            n.spec
                .as_ref()
                .and_then(|s| s.provider_id.as_deref())
                .and_then(instance_id_of),
        ) else {
            continue;
        };
        let labels = n.metadata.labels.as_ref();
        owners.push(ClaimView {
            name: labels
                .and_then(|l| l.get(LABEL_CLAIM))
                .cloned()
                .unwrap_or_else(|| name.to_string()),
            instance_id: Some(id.to_string()),
            node: Some(name.to_string()),
            created: created(n.metadata.creation_timestamp.as_ref()),
        });
    }
    (ours, owners)
}

/// Our launch templates that no pool of the active policy launches with
/// (`referenced`), older than the grace. Without a complete `referenced`
/// set (a node class that did not resolve) nothing may be deleted: the
/// caller passes None and gets nothing.
pub(super) fn unreferenced_templates<'a>(
    owned: &'a [OwnedTemplate],
    referenced: Option<&BTreeSet<String>>,
    now: SystemTime,
    opts: &GcOptions,
) -> Vec<&'a OwnedTemplate> {
    let Some(referenced) = referenced else {
        return Vec::new();
    };
    owned
        .iter()
        .filter(|t| !referenced.contains(&t.name))
        .filter(|t| {
            t.created
                .and_then(|c| now.duration_since(c).ok())
                .is_some_and(|age| age >= opts.orphan_grace)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn at(secs: u64) -> SystemTime {
        t0() + Duration::from_secs(secs)
    }

    fn inst(id: &str, claim: Option<&str>, state: &str, launched: u64) -> OwnedInstance {
        OwnedInstance {
            instance_id: id.into(),
            claim: claim.map(str::to_string),
            pool: Some("general".into()),
            instance_type: "m5.large".into(),
            zone: "us-east-1a".into(),
            state: state.into(),
            launched_at: Some(at(launched)),
            image_id: String::new(),
        }
    }

    fn claim(name: &str, id: Option<&str>, node: Option<&str>, created: u64) -> ClaimView {
        ClaimView {
            name: name.into(),
            instance_id: id.map(str::to_string),
            node: node.map(str::to_string),
            created: at(created),
        }
    }

    #[test]
    fn a_claim_whose_instance_is_gone_is_deleted_with_its_node() {
        let opts = GcOptions::default();
        let claims = [
            claim("a", Some("i-a"), Some("node-a"), 0),
            claim("b", Some("i-b"), None, 0),
            // Not launched yet: nothing to be gone.
            claim("c", None, None, 0),
            // Launched just now: EC2's listing may not show it yet.
            claim("d", Some("i-d"), None, 100),
            claim("e", Some("i-e"), None, 0),
        ];
        let owned = [
            inst("i-b", Some("b"), "running", 0),
            inst("i-e", Some("e"), "shutting-down", 0),
        ];
        let got = gone_claims(&claims, &owned, at(110), &opts);
        assert_eq!(
            got,
            vec![
                GcAction::DeleteClaim {
                    claim: "a".into(),
                    instance_id: "i-a".into(),
                    node: Some("node-a".into()),
                },
                GcAction::DeleteClaim {
                    claim: "e".into(),
                    instance_id: "i-e".into(),
                    node: None,
                },
            ]
        );
        // After the grace the fresh claim goes too.
        let later = gone_claims(&claims, &owned, at(130), &opts);
        assert!(
            later
                .iter()
                .any(|a| matches!(a, GcAction::DeleteClaim { claim, .. } if claim == "d"))
        );
    }

    #[test]
    fn an_instance_no_claim_owns_is_terminated_after_the_grace() {
        let opts = GcOptions::default();
        let claims = [
            claim("by-id", Some("i-1"), None, 0),
            // Written before CreateFleet: owns its instance by the tag.
            claim("by-name", None, None, 0),
        ];
        let owned = [
            inst("i-1", Some("something-else"), "running", 0),
            inst("i-2", Some("by-name"), "pending", 0),
            inst("i-3", Some("deleted-claim"), "running", 0),
            inst("i-4", None, "stopped", 0),
            inst("i-5", None, "running", 25),
            inst("i-6", None, "shutting-down", 0),
            OwnedInstance {
                launched_at: None,
                ..inst("i-7", None, "running", 0)
            },
        ];
        let ids = |v: Vec<GcAction>| -> Vec<String> {
            v.into_iter()
                .filter_map(|a| match a {
                    GcAction::TerminateInstance { instance_id, .. } => Some(instance_id),
                    GcAction::DeleteClaim { .. } => None,
                })
                .collect()
        };
        assert_eq!(
            ids(orphan_instances(&claims, &owned, at(40), &opts)),
            ["i-3", "i-4"]
        );
        assert_eq!(
            ids(orphan_instances(&claims, &owned, at(60), &opts)),
            ["i-3", "i-4", "i-5"]
        );
        // Nothing is due before the grace.
        assert!(orphan_instances(&claims, &owned, at(29), &opts).is_empty());
    }

    #[cfg(feature = "controller")]
    #[test]
    fn claims_and_nodes_as_views() {
        let claim = |name: &str, id: Option<&str>, node: Option<&str>| -> NodeClaim {
            let mut status = serde_json::json!({});
            if let Some(id) = id {
                status["providerID"] = serde_json::json!(format!("aws:///us-east-1a/{id}"));
            }
            if let Some(n) = node {
                status["nodeName"] = serde_json::json!(n);
            }
            serde_json::from_value(serde_json::json!({
                "apiVersion": "nodewright.io/v1alpha1", "kind": "NodeClaim",
                "metadata": {"name": name, "creationTimestamp": "2027-01-15T08:15:50Z"},
                "spec": {"pool": "general", "nodeClass": "default",
                    "requirements": {"instanceTypes": [], "zones": [], "capacityTypes": []},
                    "resources": {}},
                "status": status,
            }))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let node = |name: &str, id: &str, claim: Option<&str>| -> Node {
            let labels = match claim {
                Some(c) => serde_json::json!({LABEL_CLAIM: c}),
                None => serde_json::json!({}),
            };
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": labels,
                    "creationTimestamp": "2027-01-15T08:00:00Z"},
                "spec": {"providerID": format!("aws:///us-east-1a/{id}")}
            }))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let claims = [
            claim("general-aaaaa", Some("i-a"), None),
            claim("general-bbbbb", Some("i-b"), Some("ours")),
            claim("general-ccccc", None, None),
        ];
        let nodes = [
            node("ours", "i-b", Some("general-bbbbb")),
            node("theirs", "i-t", None),
        ];
        let (ours, owners) = views_from_claims(&claims, &nodes, at(1000));
        let names = |v: &[ClaimView]| v.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&ours),
            ["general-aaaaa", "general-bbbbb", "general-ccccc"]
        );
        assert_eq!(
            names(&owners),
            [
                "general-aaaaa",
                "general-bbbbb",
                "general-ccccc",
                "general-bbbbb",
                "theirs"
            ]
        );
        assert_eq!(ours[0].created, at(950));
        assert_eq!(ours[1].node.as_deref(), Some("ours"));
        assert_eq!(ours[2].instance_id, None);
        // Every instance gone, long after: the launched claims go (with their
        // Node); the unlaunched one and someone else's Node are left alone.
        let acts = gone_claims(&ours, &[], at(5_000_000_000), &GcOptions::default());
        assert_eq!(
            acts,
            [
                GcAction::DeleteClaim {
                    claim: "general-aaaaa".into(),
                    instance_id: "i-a".into(),
                    node: None
                },
                GcAction::DeleteClaim {
                    claim: "general-bbbbb".into(),
                    instance_id: "i-b".into(),
                    node: Some("ours".into())
                },
            ]
        );
    }

    #[test]
    fn only_unreferenced_old_templates_are_deleted() {
        let opts = GcOptions::default();
        let t = |name: &str, created: Option<u64>| OwnedTemplate {
            name: name.into(),
            id: format!("lt-{name}"),
            created: created.map(at),
        };
        let owned = [
            t("keep", Some(0)),
            t("old", Some(0)),
            t("young", Some(90)),
            t("unknown-age", None),
        ];
        let referenced: BTreeSet<String> = ["keep".to_string()].into();
        let got: Vec<&str> = unreferenced_templates(&owned, Some(&referenced), at(100), &opts)
            .into_iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(got, ["old"]);
        assert!(unreferenced_templates(&owned, None, at(100), &opts).is_empty());
    }
}
