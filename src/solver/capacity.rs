//! What a node of a given instance type can hold for pods: the one seam through
//! which the solver learns allocatable resources.
//!
//! The model itself (VM overhead, kube/system reserved, eviction, max pods)
//! lives in `catalog::allocatable`; every solver caller goes through here.

use crate::catalog::InstanceType;
use crate::ir::{KubeletConfig, Resources};

/// Allocatable resources of `t` under `kubelet`, with the default EKS overheads.
pub fn allocatable(t: &InstanceType, kubelet: &KubeletConfig) -> Resources {
    crate::catalog::allocatable::allocatable(
        t,
        kubelet,
        &crate::catalog::allocatable::AllocatableOptions::default(),
    )
}
