//! What each pool can really launch.
//!
//! The catalog offers every zone of the region and both architectures, but
//! a node class reaches only the zones of the subnets it selects, and only
//! the architectures it has an AMI for. Planning outside those would yield
//! nodes CreateFleet cannot launch, so before each solve the controller
//! narrows every pool to its node class's reach, as Karpenter does with
//! an EC2NodeClass's resolved subnets and AMIs.

use std::collections::BTreeMap;

use crate::ir::{PolicySet, labels};

/// The zones and architectures one node class can launch into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reach {
    pub zones: Vec<String>,
    /// `amd64`, `arm64`.
    pub arches: Vec<String>,
}

/// `policy` with every pool narrowed to its node class's reach. Pools
/// whose node class could not be resolved are dropped, one warning each.
pub(super) fn narrow(
    policy: &PolicySet,
    reach: &BTreeMap<String, Result<Reach, String>>,
) -> (PolicySet, Vec<String>) {
    let mut out = policy.clone();
    let mut warnings = Vec::new();
    out.pools
        .retain_mut(|pool| match reach.get(&pool.node_class) {
            Some(Ok(r)) => {
                let zones: Vec<&str> = r.zones.iter().map(String::as_str).collect();
                let arches: Vec<&str> = r.arches.iter().map(String::as_str).collect();
                pool.requirements.require_in(labels::ZONE, &zones);
                pool.requirements.require_in(labels::ARCH, &arches);
                true
            }
            Some(Err(why)) => {
                warnings.push(format!(
                    "pool {} is skipped: node class {} does not resolve: {why}",
                    pool.name, pool.node_class
                ));
                false
            }
            None => {
                warnings.push(format!(
                    "pool {} is skipped: node class {} was not resolved",
                    pool.name, pool.node_class
                ));
                false
            }
        });
    (out, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PolicySet {
        let mut text = String::new();
        for (pool, nc) in [("a", "one"), ("b", "two"), ("c", "three")] {
            text += &format!(
                "pool {pool} {{\n  node-class {nc}\n}}\nnode-class {nc} {{\n  ami alias al2023@latest\n  subnets where tag k = \"v\"\n  security-groups where tag k = \"v\"\n  role \"r\"\n}}\n"
            );
        }
        let file =
            crate::policy::parse("t.policy", &text).unwrap_or_else(|d| panic!("{}", d.render(100)));
        crate::policy::compile(&[file])
            .unwrap_or_else(|d| panic!("{}", d.render(100)))
            .0
    }

    #[test]
    fn pools_are_narrowed_to_their_node_class_or_dropped() {
        let reach = BTreeMap::from([
            (
                "one".to_string(),
                Ok(Reach {
                    zones: vec!["us-east-1a".into(), "us-east-1b".into()],
                    arches: vec!["amd64".into()],
                }),
            ),
            ("two".to_string(), Err("no subnet matched".to_string())),
        ]);
        let (p, warnings) = narrow(&policy(), &reach);
        assert_eq!(p.pools.len(), 1);
        let a = &p.pools[0];
        assert_eq!(a.name, "a");
        assert!(a.requirements.get(labels::ZONE).allows("us-east-1b"));
        assert!(!a.requirements.get(labels::ZONE).allows("us-east-1c"));
        assert!(a.requirements.get(labels::ARCH).allows("amd64"));
        assert!(!a.requirements.get(labels::ARCH).allows("arm64"));
        assert_eq!(
            warnings,
            [
                "pool b is skipped: node class two does not resolve: no subnet matched",
                "pool c is skipped: node class three was not resolved",
            ]
        );
    }
}
