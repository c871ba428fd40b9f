//! Drift: a node no longer matches what its pool would launch today.
//!
//! A claim records, in the annotation [`POOL_HASH`], a hash of the fields of
//! its pool and node class that shape the node (requirements, labels,
//! taints, start-up taints, tags, kubelet, and the whole node class: AMI
//! selection and family, subnets, security groups, block devices, user data,
//! metadata options, role). Budgets, limits, weights and the consolidation
//! policy are left out: changing how nodes are disrupted does not change a
//! node. A claim is drifted when:
//! - its recorded hash differs from the pool's current one (a claim without
//!   the annotation, written before it existed, never drifts this way);
//! - its image is not among the images its node class resolves to now (an
//!   alias like `al2023@latest` moved to a newer AMI);
//! - its Node's labels no longer satisfy the pool's requirements (only the
//!   keys the Node carries are compared: a label the Node lacks is not
//!   evidence either way).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ir::{KubeletConfig, NodeClass, Pool, Requirement, Taint};

/// Annotation on a NodeClaim: the [`pool_hash`] of its pool and node class at creation.
pub const POOL_HASH: &str = "nodewright.io/pool-hash";

/// The fields of a pool and its node class that shape a node, hashed.
#[derive(Serialize)]
struct Shape<'a> {
    requirements: &'a [Requirement],
    labels: &'a BTreeMap<String, String>,
    taints: &'a [Taint],
    startup_taints: &'a [Taint],
    tags: &'a BTreeMap<String, String>,
    node_class_name: &'a str,
    kubelet: &'a KubeletConfig,
    node_class: Option<&'a NodeClass>,
}

/// The hash recorded on a claim of `pool` launched with `class`: 16 hex
/// digits of a SHA-256 over the shaping fields (stable across processes and
/// versions of nodewright as long as those fields serialize the same).
pub fn pool_hash(pool: &Pool, class: Option<&NodeClass>) -> String {
    let shape = Shape {
        requirements: &pool.requirement_terms,
        labels: &pool.labels,
        taints: &pool.taints,
        startup_taints: &pool.startup_taints,
        tags: &pool.tags,
        node_class_name: &pool.node_class,
        kubelet: &pool.kubelet,
        node_class: class,
    };
    let bytes = serde_json::to_vec(&shape).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    hex::encode(&digest[..8])
}

/// What the drift check knows about one claim and its Node.
#[derive(Debug, Clone, Default)]
pub struct ClaimFacts<'a> {
    /// The claim's [`POOL_HASH`] annotation.
    pub recorded_hash: Option<&'a str>,
    /// The image the instance runs (`status.imageID`).
    pub image_id: Option<&'a str>,
    /// The Node's labels (the claim's planned labels before it registers).
    pub labels: Option<&'a BTreeMap<String, String>>,
}

/// Why a claim is drifted (the `Drifted` condition's reason and message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// The pool or its node class changed a field that shapes the node.
    PoolChanged { recorded: String, current: String },
    /// The node class resolves to other images now.
    ImageChanged { running: String },
    /// The Node's label no longer satisfies the pool's requirements.
    RequirementsUnmet { key: String, value: String },
}

impl Drift {
    /// The condition reason (CamelCase, as Kubernetes conditions spell them).
    pub fn reason(&self) -> &'static str {
        match self {
            Drift::PoolChanged { .. } => "PoolChanged",
            Drift::ImageChanged { .. } => "ImageChanged",
            Drift::RequirementsUnmet { .. } => "RequirementsUnmet",
        }
    }

    /// A sentence for the condition's message and the log.
    pub fn message(&self) -> String {
        match self {
            Drift::PoolChanged { recorded, current } => format!(
                "the pool or its node class changed (hash {recorded} at launch, {current} now)"
            ),
            Drift::ImageChanged { running } => {
                format!("image {running} is no longer what the node class resolves to")
            }
            Drift::RequirementsUnmet { key, value } => {
                format!("label {key}={value} no longer satisfies the pool's requirements")
            }
        }
    }
}

/// Whether a claim of `pool` is drifted, and why (the first reason found).
/// `images`: the images the node class resolves to now, when known (None
/// skips the image check, e.g. when resolution failed this pass).
pub fn drifted(
    pool: &Pool,
    class: Option<&NodeClass>,
    facts: &ClaimFacts<'_>,
    images: Option<&BTreeSet<String>>,
) -> Option<Drift> {
    if let Some(recorded) = facts.recorded_hash {
        let current = pool_hash(pool, class);
        if recorded != current {
            return Some(Drift::PoolChanged {
                recorded: recorded.to_string(),
                current,
            });
        }
    }
    if let (Some(running), Some(images)) = (facts.image_id, images)
        && !images.is_empty()
        && !images.contains(running)
    {
        return Some(Drift::ImageChanged {
            running: running.to_string(),
        });
    }
    if let Some(labels) = facts.labels {
        for (key, set) in &pool.requirements.keys {
            if let Some(value) = labels.get(key)
                && !set.allows(value)
            {
                return Some(Drift::RequirementsUnmet {
                    key: key.clone(),
                    value: value.clone(),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::PolicySet;

    fn policy(pool_body: &str, class_body: &str) -> PolicySet {
        let text = format!(
            "node-class default {{\n{class_body}\n}}\npool general {{\n  node-class default\n{pool_body}\n}}\n"
        );
        let file = crate::policy::parse("test.policy", &text)
            .unwrap_or_else(|d| panic!("{}", d.render(100)));
        crate::policy::compile(&[file])
            .unwrap_or_else(|d| panic!("{}", d.render(100)))
            .0
    }

    fn hash(p: &PolicySet) -> String {
        pool_hash(&p.pools[0], p.node_classes.get("default"))
    }

    const CLASS: &str = "  ami alias al2023@latest\n  role \"KarpenterNodeRole\"\n  subnets where tag karpenter.sh/discovery = \"demo\"\n  security-groups where tag karpenter.sh/discovery = \"demo\"";

    #[test]
    fn the_hash_follows_shaping_fields_only() {
        let base = policy("  label team = a", CLASS);
        assert_eq!(hash(&base), hash(&base.clone()), "stable");
        let relabelled = policy("  label team = b", CLASS);
        assert_ne!(hash(&base), hash(&relabelled));
        let tainted = policy(
            "  label team = a\n  taint dedicated = gpu : NoSchedule",
            CLASS,
        );
        assert_ne!(hash(&base), hash(&tainted));
        let other_class = policy(
            "  label team = a",
            &format!("{CLASS}\n  user-data \"echo hi\""),
        );
        assert_ne!(hash(&base), hash(&other_class));
        // Budgets, weights, limits and consolidation do not shape a node.
        let mut tuned = base.clone();
        tuned.pools[0].weight = 50;
        tuned.pools[0].disruption.budgets.clear();
        tuned.pools[0].limits.clear();
        tuned.pools[0].disruption.consolidate_after = crate::ir::Duration::Never;
        assert_eq!(hash(&base), hash(&tuned));
    }

    #[test]
    fn drift_by_hash_image_and_requirements() {
        let p = policy(
            "  label team = a\n  require karpenter.sh/capacity-type in [on-demand]",
            CLASS,
        );
        let pool = &p.pools[0];
        let class = p.node_classes.get("default");
        let h = hash(&p);
        let labels: BTreeMap<String, String> = [(
            "karpenter.sh/capacity-type".to_string(),
            "on-demand".to_string(),
        )]
        .into();
        let images: BTreeSet<String> = ["ami-new".to_string()].into();
        let facts = ClaimFacts {
            recorded_hash: Some(&h),
            image_id: Some("ami-new"),
            labels: Some(&labels),
        };
        assert_eq!(drifted(pool, class, &facts, Some(&images)), None);
        // No annotation (a claim older than drift): no hash drift.
        let old = ClaimFacts {
            recorded_hash: None,
            ..facts.clone()
        };
        assert_eq!(drifted(pool, class, &old, Some(&images)), None);
        let changed = ClaimFacts {
            recorded_hash: Some("0123456789abcdef"),
            ..facts.clone()
        };
        assert_eq!(
            drifted(pool, class, &changed, Some(&images)).map(|d| d.reason()),
            Some("PoolChanged")
        );
        let stale = ClaimFacts {
            image_id: Some("ami-old"),
            ..facts.clone()
        };
        assert_eq!(
            drifted(pool, class, &stale, Some(&images)),
            Some(Drift::ImageChanged {
                running: "ami-old".into()
            })
        );
        // Unknown images (resolution failed): no image drift.
        assert_eq!(drifted(pool, class, &stale, None), None);
        let spot: BTreeMap<String, String> =
            [("karpenter.sh/capacity-type".to_string(), "spot".to_string())].into();
        let unmet = ClaimFacts {
            labels: Some(&spot),
            ..facts.clone()
        };
        assert_eq!(
            drifted(pool, class, &unmet, Some(&images)).map(|d| d.reason()),
            Some("RequirementsUnmet")
        );
        // A label the node lacks is not evidence.
        let none = BTreeMap::new();
        let bare = ClaimFacts {
            labels: Some(&none),
            ..facts
        };
        assert_eq!(drifted(pool, class, &bare, Some(&images)), None);
    }
}
