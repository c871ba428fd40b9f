//! What a node of a given instance type can hold for pods: the one seam through
//! which the solver (packer, validator, reference solver) learns allocatable
//! resources.
//!
//! The model is the catalog's (`catalog::allocatable`: EKS's formula with VM
//! memory overhead, kube-reserved, system-reserved and eviction thresholds,
//! honouring the pool's kubelet settings), so the plan agrees with what
//! `nodewright catalog show` prints and with what a launched node reports.
//! Two inputs beyond the type and the kubelet: the node class, whose root
//! volume (or RAID0 instance store) is the node's ephemeral storage, and
//! the policy's capacity rules (NodeOverlay `capacity`), which give
//! matching offerings extended resources.

use std::collections::BTreeMap;

use crate::catalog::{AllocatableOptions, InstanceType, ephemeral_storage_bytes};
use crate::ir::{Attrs, CapacityRule, KubeletConfig, NodeClass, PolicySet, Pool, Resources};

/// The kubelet settings nodes of `pool` start with: its node class's,
/// overridden term by term by the pool's own.
pub(super) fn kubelet_of(policy: &PolicySet, pool: &Pool) -> KubeletConfig {
    policy
        .node_classes
        .get(&pool.node_class)
        .map(|nc| nc.kubelet.overridden_by(&pool.kubelet))
        .unwrap_or_else(|| pool.kubelet.clone())
}

/// Allocatable resources of `t` under `kubelet`, launched with node class
/// `nc` (None: a pool whose class is not defined, which gets Karpenter's
/// default 20Gi root volume), with the controller's default options (7.5%
/// VM overhead, ENI-limited pod density). Capacity rules are not applied
/// here: they depend on the offering (`overlay`).
///
/// A type without ENI data (a synthetic catalog, such as Karpenter's
/// benchmark types) states its max pods in `capacity.pods`; that figure
/// stands in for the ENI formula, still capped by `pods_per_core`.
pub(super) fn allocatable(
    t: &InstanceType,
    kubelet: &KubeletConfig,
    nc: Option<&NodeClass>,
) -> Resources {
    let opts = AllocatableOptions {
        root_volume_bytes: nc.map(|nc| ephemeral_storage_bytes(nc, t)),
        ..AllocatableOptions::default()
    };
    if t.max_enis == 0 && t.capacity.pods > 0 && kubelet.max_pods.is_none() {
        let mut k = kubelet.clone();
        k.max_pods = Some(u32::try_from(t.capacity.pods).unwrap_or(u32::MAX));
        return crate::catalog::allocatable(t, &k, &opts);
    }
    crate::catalog::allocatable(t, kubelet, &opts)
}

/// The extended resources capacity rules give a node whose attributes are
/// `attrs`: per resource, the value of the last matching rule (rules are in
/// application order, heaviest last, so the heaviest NodeOverlay wins as in
/// Karpenter). cpu, memory, ephemeral-storage and pods are not extended
/// resources and are left to the catalog (Karpenter refuses them too).
pub(super) fn overlay(rules: &[CapacityRule], attrs: &dyn Attrs) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for r in rules {
        if !r.when.eval(attrs) {
            continue;
        }
        for (k, q) in &r.add {
            if !STANDARD.contains(&k.as_str()) {
                out.insert(k.clone(), q.units_ceil());
            }
        }
    }
    out
}

/// A node's labels as condition attributes (node-side subjects only), for
/// evaluating capacity rules against a planned node's label map.
pub(super) struct NodeMap<'a>(pub(super) &'a BTreeMap<String, String>);

impl Attrs for NodeMap<'_> {
    fn get(&self, s: &crate::ir::Subject) -> Option<std::borrow::Cow<'_, str>> {
        match s {
            crate::ir::Subject::NodeLabel(k) => self
                .0
                .get(k)
                .map(|v| std::borrow::Cow::Borrowed(v.as_str())),
            _ => None,
        }
    }
}

/// Resources a capacity rule may not change.
const STANDARD: [&str; 4] = ["cpu", "memory", "ephemeral-storage", "pods"];

/// `alloc` with the capacity rules matching `attrs` applied: each resource
/// they set replaces the catalog's figure (an extended resource is
/// allocatable as advertised, nothing is reserved from it).
pub(super) fn with_overlay(
    mut alloc: Resources,
    rules: &[CapacityRule],
    attrs: &dyn Attrs,
) -> Resources {
    if rules.is_empty() {
        return alloc;
    }
    for (k, v) in overlay(rules, attrs) {
        alloc.extended.insert(k, v);
    }
    alloc
}

/// What a node of `pool` launched as type `t`, with node attributes
/// `attrs`, can hold: the one answer the validator and the reference solver
/// share with the packer's tables.
pub(super) fn node_allocatable(
    policy: &PolicySet,
    pool: &Pool,
    t: &InstanceType,
    attrs: &dyn Attrs,
) -> Resources {
    let kubelet = kubelet_of(policy, pool);
    let nc = policy.node_classes.get(&pool.node_class);
    with_overlay(allocatable(t, &kubelet, nc), &policy.capacity, attrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;

    #[test]
    fn synthetic_types_keep_their_stated_max_pods() {
        let cat = synth::karpenter_catalog(4);
        let t = &cat.types[3];
        let a = allocatable(t, &KubeletConfig::default(), None);
        assert_eq!(a.pods, 40);
        // 4 vCPU: 60 + 10 + 10 = 80m kube-reserved.
        assert_eq!(a.cpu_milli, 4000 - 80);
        let k = KubeletConfig {
            pods_per_core: Some(5),
            ..Default::default()
        };
        assert_eq!(allocatable(t, &k, None).pods, 20);
    }

    #[test]
    fn capacity_rules_set_extended_resources_on_matching_nodes() {
        use crate::ir::{CapacityRule, CmpOp, Cond, Quantity, Subject, labels};
        let fam = |f: &str| {
            Cond::cmp(
                Subject::NodeLabel(labels::INSTANCE_FAMILY.into()),
                CmpOp::In,
                &[f],
            )
        };
        let rule = |when: Cond, k: &str, v: &str| CapacityRule {
            when,
            add: [(k.to_string(), Quantity::parse(v).expect("qty"))].into(),
            origin: None,
        };
        let rules = vec![
            rule(Cond::True, "example.com/fuse", "1"),
            rule(fam("m5"), "example.com/fuse", "10"),
            rule(fam("m5"), "cpu", "64"),
        ];
        let m5: BTreeMap<String, String> =
            [(labels::INSTANCE_FAMILY.to_string(), "m5".to_string())].into();
        let c6: BTreeMap<String, String> =
            [(labels::INSTANCE_FAMILY.to_string(), "c6i".to_string())].into();
        // The last matching rule wins; cpu is not the overlay's to change.
        assert_eq!(
            overlay(&rules, &NodeMap(&m5)),
            [("example.com/fuse".to_string(), 10)].into()
        );
        assert_eq!(
            overlay(&rules, &NodeMap(&c6)),
            [("example.com/fuse".to_string(), 1)].into()
        );
        let cat = synth::karpenter_catalog(4);
        let base = allocatable(&cat.types[3], &KubeletConfig::default(), None);
        let a = with_overlay(base.clone(), &rules, &NodeMap(&m5));
        assert_eq!(a.extended.get("example.com/fuse"), Some(&10));
        assert_eq!(a.cpu_milli, base.cpu_milli);
    }

    #[test]
    fn real_types_use_the_eni_formula() {
        let cat = crate::catalog::embedded::embedded_static().expect("embedded catalog");
        let t = cat.instance_type("m5.large").expect("m5.large");
        let a = allocatable(t, &KubeletConfig::default(), None);
        // 3 ENIs × (10 − 1) + 2.
        assert_eq!(a.pods, 29);
        assert_eq!(
            a,
            crate::catalog::allocatable(t, &KubeletConfig::default(), &Default::default())
        );
    }
}
