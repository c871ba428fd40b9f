//! Launching several identical nodes with one CreateFleet: which planned
//! nodes may share a request, and which claim each launched instance
//! becomes. Pure functions over plain data (no AWS SDK), so the
//! controller's steps use them in any build; the launcher
//! (`launcher::Ec2Launcher::launch_new_group`) makes the calls.
//!
//! Karpenter batches CreateFleet the same way (`pkg/batcher/createfleet.go`):
//! requests that are equal but for the node they are for become one request
//! with the sum of their target capacities, and the instances of the answer
//! are handed out to the callers, the callers left without one getting the
//! fleet's errors.

use crate::solver::PlannedNode;

/// Whether two planned nodes make the same CreateFleet request but for
/// their claim: same pool and node class (launch template, user data,
/// tags), zone and capacity type, the same ranked types at the same prices
/// (overrides and allocation strategy), labels and taints. Their pods and
/// requests may differ: the fleet does not see them.
pub fn same_launch(a: &PlannedNode, b: &PlannedNode) -> bool {
    a.pool == b.pool
        && a.node_class == b.node_class
        && a.zone == b.zone
        && a.capacity_type == b.capacity_type
        && a.instance_type == b.instance_type
        && a.instance_type_options == b.instance_type_options
        && same_labels(&a.labels, &b.labels)
        && a.taints == b.taints
        && a.startup_taints == b.startup_taints
}

/// Labels equal but for the claim's own (`nodewright.io/claim`), which names
/// each node and is written on its Node by the controller, not by EC2.
fn same_labels(
    a: &std::collections::BTreeMap<String, String>,
    b: &std::collections::BTreeMap<String, String>,
) -> bool {
    let claim = crate::catalog::node_labels::CLAIM_LABEL;
    a.iter()
        .filter(|(k, _)| k.as_str() != claim)
        .eq(b.iter().filter(|(k, _)| k.as_str() != claim))
}

/// The planned nodes one CreateFleet each can launch together: indices of
/// `nodes` grouped by [`same_launch`], groups in the order of their first
/// node, members in order, at most `max` per group (a larger group is split).
pub fn launch_groups(nodes: &[PlannedNode], max: usize) -> Vec<Vec<usize>> {
    let max = max.max(1);
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        match groups
            .iter_mut()
            .find(|g| g.len() < max && same_launch(&nodes[g[0]], n))
        {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
}

/// What one fleet's instances become: `launched` pairs each claim (in the
/// order asked) with an instance (in the order EC2 listed them), while
/// either lasts; `unfilled` are the claims left without one (EC2 launched
/// fewer), `extra` the instances left without a claim (it launched more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment<'c, T> {
    pub launched: Vec<(&'c str, T)>,
    pub unfilled: Vec<&'c str>,
    pub extra: Vec<T>,
}

/// Hands a fleet's instances to the claims it was asked for (see [`Assignment`]).
pub fn assign_instances<'c, T>(claims: &[&'c str], instances: Vec<T>) -> Assignment<'c, T> {
    let mut launched = Vec::new();
    let mut extra = Vec::new();
    let mut names = claims.iter();
    for inst in instances {
        match names.next() {
            Some(c) => launched.push((*c, inst)),
            None => extra.push(inst),
        }
    }
    Assignment {
        launched,
        unfilled: names.copied().collect(),
        extra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CapacityType;
    use crate::ir::Taint;
    use crate::solver::InstanceOption;

    fn node(name: &str, zone: &str, types: &[(&str, f64)], pods: &[&str]) -> PlannedNode {
        PlannedNode {
            name: name.into(),
            pool: "general".into(),
            node_class: "default".into(),
            zone: zone.into(),
            capacity_type: CapacityType::OnDemand,
            instance_type: types[0].0.into(),
            price_per_hour: types[0].1,
            instance_type_options: types
                .iter()
                .map(|(t, p)| InstanceOption {
                    instance_type: (*t).into(),
                    price_per_hour: *p,
                })
                .collect(),
            pods: pods.iter().map(|p| p.to_string()).collect(),
            requested: Default::default(),
            allocatable: Default::default(),
            labels: Default::default(),
            taints: vec![],
            startup_taints: vec![],
        }
    }

    const M5: &[(&str, f64)] = &[("m5.large", 0.096), ("m5.xlarge", 0.192)];

    #[test]
    fn identical_requests_group_and_pods_do_not_matter() {
        let a = node("a", "us-east-1a", M5, &["shop/1"]);
        let b = node("b", "us-east-1a", M5, &["shop/2", "shop/3"]);
        assert!(same_launch(&a, &b), "pods and names are not in the request");
        let mut other = b.clone();
        other.zone = "us-east-1b".into();
        assert!(!same_launch(&a, &other), "zone");
        let mut other = b.clone();
        other.capacity_type = CapacityType::Spot;
        assert!(!same_launch(&a, &other), "capacity type");
        let mut other = b.clone();
        other.instance_type_options.reverse();
        assert!(!same_launch(&a, &other), "the ranked overrides");
        let mut other = b.clone();
        other.instance_type_options[1].price_per_hour = 0.5;
        assert!(
            !same_launch(&a, &other),
            "prices decide the allocation strategy"
        );
        let mut other = b.clone();
        other.pool = "batch".into();
        assert!(!same_launch(&a, &other), "pool: template and tags");
        let mut other = b.clone();
        other.node_class = "gpu".into();
        assert!(!same_launch(&a, &other), "node class");
        let mut other = b.clone();
        other.labels.insert("team".into(), "shop".into());
        assert!(!same_launch(&a, &other), "labels");
        let mut other = b.clone();
        other.startup_taints.push(Taint {
            key: "k".into(),
            value: None,
            effect: crate::ir::TaintEffect::NoSchedule,
        });
        assert!(!same_launch(&a, &other), "startup taints: user data");
    }

    #[test]
    fn groups_keep_order_and_split_at_the_bound() {
        let c5: &[(&str, f64)] = &[("c5.large", 0.085)];
        let nodes = vec![
            node("a", "us-east-1a", M5, &[]),
            node("b", "us-east-1a", c5, &[]),
            node("c", "us-east-1a", M5, &[]),
            node("d", "us-east-1b", M5, &[]),
            node("e", "us-east-1a", M5, &[]),
            node("f", "us-east-1a", c5, &[]),
        ];
        assert_eq!(
            launch_groups(&nodes, 100),
            vec![vec![0, 2, 4], vec![1, 5], vec![3]]
        );
        assert_eq!(
            launch_groups(&nodes, 2),
            vec![vec![0, 2], vec![1, 5], vec![3], vec![4]]
        );
        assert_eq!(launch_groups(&nodes, 0).len(), 6, "a bound of 0 acts as 1");
        assert!(launch_groups(&[], 10).is_empty());
    }

    #[test]
    fn instances_go_to_claims_in_order() {
        let all = assign_instances(&["a", "b", "c"], vec!["i-1", "i-2", "i-3"]);
        assert_eq!(all.launched, [("a", "i-1"), ("b", "i-2"), ("c", "i-3")]);
        assert!(all.unfilled.is_empty() && all.extra.is_empty());
        // Partial fulfilment: the claims asked last are left without one.
        let partial = assign_instances(&["a", "b", "c"], vec!["i-1"]);
        assert_eq!(partial.launched, [("a", "i-1")]);
        assert_eq!(partial.unfilled, ["b", "c"]);
        let none = assign_instances::<&str>(&["a"], vec![]);
        assert_eq!(none.unfilled, ["a"]);
        // More than asked: the rest belong to no claim.
        let more = assign_instances(&["a"], vec!["i-1", "i-2"]);
        assert_eq!(more.launched, [("a", "i-1")]);
        assert_eq!(more.extra, ["i-2"]);
    }

    proptest::proptest! {
        /// Every claim and every instance ends in exactly one place.
        #[test]
        fn assignment_accounts_for_everything(n_claims in 0usize..20, n_inst in 0usize..20) {
            let names: Vec<String> = (0..n_claims).map(|i| format!("c{i}")).collect();
            let claims: Vec<&str> = names.iter().map(String::as_str).collect();
            let a = assign_instances(&claims, (0..n_inst).collect());
            proptest::prop_assert_eq!(a.launched.len(), n_claims.min(n_inst));
            proptest::prop_assert_eq!(a.unfilled.len(), n_claims.saturating_sub(n_inst));
            proptest::prop_assert_eq!(a.extra.len(), n_inst.saturating_sub(n_claims));
            for (k, (c, i)) in a.launched.iter().enumerate() {
                proptest::prop_assert_eq!(*c, claims[k]);
                proptest::prop_assert_eq!(*i, k);
            }
        }
    }
}
