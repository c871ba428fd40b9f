//! What a node of a given instance type can hold for pods: the one seam through
//! which the solver learns allocatable resources.
//!
//! Known gap: this is a simpler model than `catalog::allocatable` (no VM
//! memory overhead). Switching to that model exposed a packing weakness with
//! hostname self-affinity in tests/solver_props.rs, so the switch waits for
//! that fix; every caller goes through this function.

use crate::catalog::InstanceType;
use crate::ir::{KubeletConfig, Resources};

/// Allocatable resources of `t` under `kubelet`: capacity minus kube-reserved
/// (Karpenter's CPU and memory formulas), minus the hard eviction threshold
/// for memory (100Mi), with max pods from the kubelet settings when given.
///
/// Kept deliberately simple; the catalog module owns the exact model.
pub fn allocatable(t: &InstanceType, kubelet: &KubeletConfig) -> Resources {
    let mut r = t.capacity.clone();
    let mut pods = if r.pods > 0 {
        r.pods
    } else {
        i64::from(t.eni_max_pods())
    };
    if let Some(m) = kubelet.max_pods {
        pods = i64::from(m);
    }
    if let Some(ppc) = kubelet.pods_per_core {
        let cap = i64::from(ppc).saturating_mul(i64::from(t.vcpus.max(1)));
        if ppc > 0 {
            pods = pods.min(cap);
        }
    }
    r.pods = pods;
    r.cpu_milli -= reserved_cpu_milli(r.cpu_milli);
    const MI: i64 = 1 << 20;
    r.memory -= (11 * pods + 255) * MI + 100 * MI;
    r
}

/// Karpenter's kube-reserved CPU: 6% of the first core, 1% of the second,
/// 0.5% of the next two, 0.25% of the rest.
fn reserved_cpu_milli(cpu_milli: i64) -> i64 {
    let bands: [(i64, f64); 4] = [
        (1000, 0.06),
        (1000, 0.01),
        (2000, 0.005),
        (i64::MAX, 0.0025),
    ];
    let mut left = cpu_milli.max(0);
    let mut out = 0.0;
    for (width, rate) in bands {
        let take = left.min(width);
        out += take as f64 * rate;
        left -= take;
        if left == 0 {
            break;
        }
    }
    out.ceil() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_cpu_by_bands() {
        assert_eq!(reserved_cpu_milli(1000), 60);
        assert_eq!(reserved_cpu_milli(2000), 70);
        assert_eq!(reserved_cpu_milli(4000), 80);
        assert_eq!(reserved_cpu_milli(8000), 90);
    }
}
