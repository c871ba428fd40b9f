//! What a node of a given instance type can hold for pods: the one seam through
//! which the solver (packer, validator, reference solver) learns allocatable
//! resources.
//!
//! The model is the catalog's (`catalog::allocatable`: EKS's formula with VM
//! memory overhead, kube-reserved, system-reserved and eviction thresholds,
//! honouring the pool's kubelet settings), so the plan agrees with what
//! `nodewright catalog show` prints and with what a launched node reports.

use crate::catalog::{AllocatableOptions, InstanceType};
use crate::ir::{KubeletConfig, Resources};

/// Allocatable resources of `t` under `kubelet`, with the controller's
/// default options (7.5% VM overhead, ENI-limited pod density).
///
/// A type without ENI data (a synthetic catalog, such as Karpenter's
/// benchmark types) states its max pods in `capacity.pods`; that figure
/// stands in for the ENI formula, still capped by `pods_per_core`.
pub(super) fn allocatable(t: &InstanceType, kubelet: &KubeletConfig) -> Resources {
    let opts = AllocatableOptions::default();
    if t.max_enis == 0 && t.capacity.pods > 0 && kubelet.max_pods.is_none() {
        let mut k = kubelet.clone();
        k.max_pods = Some(u32::try_from(t.capacity.pods).unwrap_or(u32::MAX));
        return crate::catalog::allocatable(t, &k, &opts);
    }
    crate::catalog::allocatable(t, kubelet, &opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;

    #[test]
    fn synthetic_types_keep_their_stated_max_pods() {
        let cat = synth::karpenter_catalog(4);
        let t = &cat.types[3];
        let a = allocatable(t, &KubeletConfig::default());
        assert_eq!(a.pods, 40);
        // 4 vCPU: 60 + 10 + 10 = 80m kube-reserved.
        assert_eq!(a.cpu_milli, 4000 - 80);
        let k = KubeletConfig {
            pods_per_core: Some(5),
            ..Default::default()
        };
        assert_eq!(allocatable(t, &k).pods, 20);
    }

    #[test]
    fn real_types_use_the_eni_formula() {
        let cat = crate::catalog::embedded::embedded_static().expect("embedded catalog");
        let t = cat.instance_type("m5.large").expect("m5.large");
        let a = allocatable(t, &KubeletConfig::default());
        // 3 ENIs × (10 − 1) + 2.
        assert_eq!(a.pods, 29);
        assert_eq!(
            a,
            crate::catalog::allocatable(t, &KubeletConfig::default(), &Default::default())
        );
    }
}
