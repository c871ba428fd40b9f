//! Well-known label keys, spelled exactly as Karpenter and Kubernetes spell them.
//!
//! The policy checker uses `WELL_KNOWN` to reject typos in reserved domains
//! (with a did-you-mean), and the catalog uses the constants to label types.

/// `on-demand` or `spot`.
pub const CAPACITY_TYPE: &str = "karpenter.sh/capacity-type";
/// The pool (NodePool) that owns a node.
pub const NODEPOOL: &str = "karpenter.sh/nodepool";
pub const INSTANCE_CATEGORY: &str = "karpenter.k8s.aws/instance-category";
pub const INSTANCE_FAMILY: &str = "karpenter.k8s.aws/instance-family";
pub const INSTANCE_GENERATION: &str = "karpenter.k8s.aws/instance-generation";
pub const INSTANCE_SIZE: &str = "karpenter.k8s.aws/instance-size";
pub const INSTANCE_CPU: &str = "karpenter.k8s.aws/instance-cpu";
pub const INSTANCE_CPU_MANUFACTURER: &str = "karpenter.k8s.aws/instance-cpu-manufacturer";
pub const INSTANCE_CPU_SUSTAINED_CLOCK_SPEED_MHZ: &str =
    "karpenter.k8s.aws/instance-cpu-sustained-clock-speed-mhz";
pub const INSTANCE_MEMORY: &str = "karpenter.k8s.aws/instance-memory";
pub const INSTANCE_HYPERVISOR: &str = "karpenter.k8s.aws/instance-hypervisor";
pub const INSTANCE_ENCRYPTION_IN_TRANSIT: &str =
    "karpenter.k8s.aws/instance-encryption-in-transit-supported";
pub const INSTANCE_GPU_NAME: &str = "karpenter.k8s.aws/instance-gpu-name";
pub const INSTANCE_GPU_MANUFACTURER: &str = "karpenter.k8s.aws/instance-gpu-manufacturer";
pub const INSTANCE_GPU_COUNT: &str = "karpenter.k8s.aws/instance-gpu-count";
pub const INSTANCE_GPU_MEMORY: &str = "karpenter.k8s.aws/instance-gpu-memory";
pub const INSTANCE_ACCELERATOR_NAME: &str = "karpenter.k8s.aws/instance-accelerator-name";
pub const INSTANCE_ACCELERATOR_MANUFACTURER: &str =
    "karpenter.k8s.aws/instance-accelerator-manufacturer";
pub const INSTANCE_ACCELERATOR_COUNT: &str = "karpenter.k8s.aws/instance-accelerator-count";
pub const INSTANCE_LOCAL_NVME: &str = "karpenter.k8s.aws/instance-local-nvme";
pub const INSTANCE_NETWORK_BANDWIDTH: &str = "karpenter.k8s.aws/instance-network-bandwidth";
pub const INSTANCE_EBS_BANDWIDTH: &str = "karpenter.k8s.aws/instance-ebs-bandwidth";
pub const INSTANCE_EFA_COUNT: &str = "karpenter.k8s.aws/instance-efa-count";
pub const EC2NODECLASS: &str = "karpenter.k8s.aws/ec2nodeclass";
pub const CAPACITY_RESERVATION_ID: &str = "karpenter.k8s.aws/capacity-reservation-id";
pub const ARCH: &str = "kubernetes.io/arch";
pub const OS: &str = "kubernetes.io/os";
pub const HOSTNAME: &str = "kubernetes.io/hostname";
pub const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
pub const INSTANCE_TYPE_BETA: &str = "beta.kubernetes.io/instance-type";
pub const WINDOWS_BUILD: &str = "node.kubernetes.io/windows-build";
pub const ZONE: &str = "topology.kubernetes.io/zone";
pub const ZONE_BETA: &str = "failure-domain.beta.kubernetes.io/zone";
pub const REGION: &str = "topology.kubernetes.io/region";
pub const ZONE_ID: &str = "topology.k8s.aws/zone-id";

/// Every key in a reserved domain that nodewright understands.
pub const WELL_KNOWN: &[&str] = &[
    CAPACITY_TYPE,
    NODEPOOL,
    INSTANCE_CATEGORY,
    INSTANCE_FAMILY,
    INSTANCE_GENERATION,
    INSTANCE_SIZE,
    INSTANCE_CPU,
    INSTANCE_CPU_MANUFACTURER,
    INSTANCE_CPU_SUSTAINED_CLOCK_SPEED_MHZ,
    INSTANCE_MEMORY,
    INSTANCE_HYPERVISOR,
    INSTANCE_ENCRYPTION_IN_TRANSIT,
    INSTANCE_GPU_NAME,
    INSTANCE_GPU_MANUFACTURER,
    INSTANCE_GPU_COUNT,
    INSTANCE_GPU_MEMORY,
    INSTANCE_ACCELERATOR_NAME,
    INSTANCE_ACCELERATOR_MANUFACTURER,
    INSTANCE_ACCELERATOR_COUNT,
    INSTANCE_LOCAL_NVME,
    INSTANCE_NETWORK_BANDWIDTH,
    INSTANCE_EBS_BANDWIDTH,
    INSTANCE_EFA_COUNT,
    EC2NODECLASS,
    CAPACITY_RESERVATION_ID,
    ARCH,
    OS,
    HOSTNAME,
    INSTANCE_TYPE,
    INSTANCE_TYPE_BETA,
    WINDOWS_BUILD,
    ZONE,
    ZONE_BETA,
    REGION,
    ZONE_ID,
];

/// Label domains reserved by Kubernetes, Karpenter or nodewright: a key there
/// that is not in `WELL_KNOWN` is almost certainly a typo.
pub const RESERVED_DOMAINS: &[&str] = &[
    "karpenter.sh",
    "karpenter.k8s.aws",
    "kubernetes.io",
    "k8s.io",
    "topology.kubernetes.io",
    "node.kubernetes.io",
    "topology.k8s.aws",
    "nodewright.io",
];

/// Whether `key` lies in a reserved domain but is not a known key.
pub fn is_unknown_reserved(key: &str) -> bool {
    let Some((domain, _)) = key.split_once('/') else {
        return false;
    };
    let reserved = RESERVED_DOMAINS.iter().any(|d| {
        domain == *d
            || domain
                .strip_suffix(d)
                .is_some_and(|rest| rest.ends_with('.'))
    });
    reserved && !WELL_KNOWN.contains(&key)
        // Kubernetes lets users label nodes under these two sub-domains freely.
        && !domain.ends_with("node-restriction.kubernetes.io")
        && !domain.ends_with("node.k8s.io")
}

/// Short names usable in policy conditions (`instance-family in [m5]`), mapped to label keys.
pub const SHORT_NAMES: &[(&str, &str)] = &[
    ("zone", ZONE),
    ("zone-id", ZONE_ID),
    ("region", REGION),
    ("capacity-type", CAPACITY_TYPE),
    ("arch", ARCH),
    ("os", OS),
    ("instance-type", INSTANCE_TYPE),
    ("instance-category", INSTANCE_CATEGORY),
    ("instance-family", INSTANCE_FAMILY),
    ("instance-generation", INSTANCE_GENERATION),
    ("instance-size", INSTANCE_SIZE),
    ("instance-cpu", INSTANCE_CPU),
    ("instance-cpu-manufacturer", INSTANCE_CPU_MANUFACTURER),
    ("instance-memory", INSTANCE_MEMORY),
    ("instance-hypervisor", INSTANCE_HYPERVISOR),
    ("instance-gpu-name", INSTANCE_GPU_NAME),
    ("instance-gpu-manufacturer", INSTANCE_GPU_MANUFACTURER),
    ("instance-gpu-count", INSTANCE_GPU_COUNT),
    ("instance-gpu-memory", INSTANCE_GPU_MEMORY),
    ("instance-accelerator-name", INSTANCE_ACCELERATOR_NAME),
    ("instance-accelerator-count", INSTANCE_ACCELERATOR_COUNT),
    ("instance-local-nvme", INSTANCE_LOCAL_NVME),
    ("instance-network-bandwidth", INSTANCE_NETWORK_BANDWIDTH),
    ("pool", NODEPOOL),
];

/// The label key a short name stands for.
pub fn expand_short_name(name: &str) -> Option<&'static str> {
    SHORT_NAMES
        .iter()
        .find(|(s, _)| *s == name)
        .map(|(_, k)| *k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_typos_are_caught() {
        assert!(is_unknown_reserved("karpenter.k8s.aws/instance-famliy"));
        assert!(!is_unknown_reserved(INSTANCE_FAMILY));
        assert!(!is_unknown_reserved("team"));
        assert!(!is_unknown_reserved("example.com/team"));
        assert!(!is_unknown_reserved("node-restriction.kubernetes.io/pool"));
    }
}
