//! What a node of a given type can actually hold: capacity minus VM memory
//! overhead, kube-reserved, system-reserved and the eviction thresholds, and
//! the max pods the kubelet is started with. The formula is EKS's (as
//! Karpenter computes it); docs/catalog.md writes it out.
//!
//! Every term can be overridden by a pool's `KubeletConfig`
//! (`max_pods`, `pods_per_core`, `kube_reserved`, `system_reserved`,
//! `eviction_hard`, `eviction_soft`) or by `AllocatableOptions`.

use crate::ir::{KubeletConfig, NodeClass, Quantity, Resources};

use super::build::DEFAULT_ROOT_VOLUME_BYTES;

use super::InstanceType;

const MIB: i64 = 1024 * 1024;
const GIB: i64 = 1024 * MIB;

/// Settings that are not kubelet flags: they belong to the controller or the
/// node class (Karpenter's `VM_MEMORY_OVERHEAD_PERCENT`, `RESERVED_ENIS`,
/// pod density mode and the root volume size).
#[derive(Debug, Clone, PartialEq)]
pub struct AllocatableOptions {
    /// Fraction of memory the hypervisor keeps (0.075 = 7.5%).
    pub vm_memory_overhead_percent: f64,
    /// Max pods from ENI limits (true, the EKS default) or a flat 110.
    pub eni_limited_pod_density: bool,
    /// ENIs kept back from pods (e.g. for a secondary interface).
    pub reserved_enis: u32,
    /// Root volume bytes; None keeps the type's capacity (20Gi by default).
    pub root_volume_bytes: Option<i64>,
}

impl Default for AllocatableOptions {
    fn default() -> Self {
        AllocatableOptions {
            vm_memory_overhead_percent: 0.075,
            eni_limited_pod_density: true,
            reserved_enis: 0,
            root_volume_bytes: None,
        }
    }
}

/// The disk the kubelet's ephemeral storage lives on for a node of type `t`
/// launched with node class `nc`, in bytes: the `ephemeral-storage`
/// capacity a launched node reports.
///
/// Karpenter's rule (karpenter-provider-aws,
/// `pkg/providers/instancetype/types.go`, `ephemeralStorage`):
/// 1. `instanceStorePolicy: RAID0` on a type with local NVMe: the NVMe's
///    total size (EC2 states it in decimal GB);
/// 2. else, with block devices: the one marked root, if it has a size;
///    for a `Custom` AMI family the last device's size (or the default);
///    for any other family the family's ephemeral device (`/dev/xvda` on
///    AL2 and AL2023, `/dev/xvdb` on Bottlerocket, `/dev/sda1` on Windows);
/// 3. else 20Gi.
pub fn ephemeral_storage_bytes(nc: &NodeClass, t: &super::InstanceType) -> i64 {
    if nc
        .instance_store_policy
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case("RAID0"))
        && t.local_nvme_gib > 0
    {
        // `local_nvme_gib` holds EC2's `TotalSizeInGB` (decimal), as Karpenter reads it.
        return i64::try_from(t.local_nvme_gib)
            .unwrap_or(i64::MAX / 1_000_000_000)
            .saturating_mul(1_000_000_000);
    }
    let bdms = &nc.block_device_mappings;
    if bdms.is_empty() {
        return DEFAULT_ROOT_VOLUME_BYTES;
    }
    let size = |b: &crate::ir::BlockDeviceMapping| b.volume_size.map(|q| q.units_ceil());
    if let Some(root) = bdms.iter().find(|b| b.root_volume)
        && let Some(s) = size(root)
    {
        return s;
    }
    let family = ami_family(nc);
    if family.eq_ignore_ascii_case("Custom") {
        return bdms
            .last()
            .and_then(size)
            .unwrap_or(DEFAULT_ROOT_VOLUME_BYTES);
    }
    let device = if family.eq_ignore_ascii_case("Bottlerocket") {
        "/dev/xvdb"
    } else if family.to_ascii_lowercase().starts_with("windows") {
        "/dev/sda1"
    } else {
        "/dev/xvda"
    };
    bdms.iter()
        .find(|b| b.device_name == device)
        .and_then(size)
        .unwrap_or(DEFAULT_ROOT_VOLUME_BYTES)
}

/// A node class's AMI family: as written, else from its first alias
/// (`bottlerocket@latest` → Bottlerocket), else AL2023 (Karpenter v1's default).
fn ami_family(nc: &NodeClass) -> String {
    if let Some(f) = &nc.ami_family {
        return f.clone();
    }
    let alias = nc.ami_selector.iter().find_map(|t| t.alias.as_deref());
    match alias.and_then(|a| a.split('@').next()) {
        Some(a) if a.eq_ignore_ascii_case("al2") => "AL2".into(),
        Some(a) if a.eq_ignore_ascii_case("bottlerocket") => "Bottlerocket".into(),
        Some(a) if a.to_ascii_lowercase().starts_with("windows") => "Windows".into(),
        _ => "AL2023".into(),
    }
}

/// Pods without ENI-limited density (the kubelet's own default).
pub const DEFAULT_MAX_PODS: u32 = 110;

/// The kubelet's `--max-pods` for a node of type `t`:
/// `(ENIs − reserved ENIs) × (IPv4 per ENI − 1) + 2` (or 110 without ENI-limited
/// density), replaced by `kubelet.max_pods` when set, then capped at
/// `pods_per_core × vCPUs` when `pods_per_core` is set.
pub fn max_pods(t: &InstanceType, kubelet: &KubeletConfig, opts: &AllocatableOptions) -> u32 {
    let mut pods = match kubelet.max_pods {
        Some(n) => n,
        None if opts.eni_limited_pod_density => t
            .max_enis
            .saturating_sub(opts.reserved_enis)
            .saturating_mul(t.ipv4_per_eni.saturating_sub(1))
            .saturating_add(2),
        None => DEFAULT_MAX_PODS,
    };
    if let Some(ppc) = kubelet.pods_per_core
        && ppc > 0
    {
        pods = pods.min(ppc.saturating_mul(t.vcpus));
    }
    pods
}

/// MiB the hypervisor keeps: ⌈memory × percent⌉, computed in bytes as
/// Karpenter does so that both round identically.
pub fn vm_memory_overhead_mib(memory_mib: u64, percent: f64) -> i64 {
    let bytes = memory_mib as f64 * 1024.0 * 1024.0;
    (bytes * percent / 1024.0 / 1024.0).ceil() as i64
}

/// kube-reserved CPU in millicores on EKS's sliding scale: 6% of the first
/// core, 1% of the second, 0.5% of cores 3–4 and 0.25% of every core above 4
/// (each band truncated to whole millicores).
pub fn kube_reserved_cpu_milli(vcpus: u32) -> i64 {
    let cpu = i64::from(vcpus) * 1000;
    let bands: [(i64, i64, f64); 4] = [
        (0, 1000, 0.06),
        (1000, 2000, 0.01),
        (2000, 4000, 0.005),
        (4000, i64::MAX, 0.0025),
    ];
    let mut total = 0;
    for (start, end, pct) in bands {
        if cpu >= start {
            let span = if cpu < end { cpu - start } else { end - start };
            total += (span as f64 * pct) as i64;
        }
    }
    total
}

/// kube-reserved memory in bytes: 11 MiB per pod + 255 MiB.
pub fn kube_reserved_memory(pods: u32) -> i64 {
    (11 * i64::from(pods) + 255) * MIB
}

/// kube-reserved ephemeral storage: 1Gi.
pub const KUBE_RESERVED_EPHEMERAL: i64 = GIB;
/// Default hard eviction threshold on `memory.available`.
pub const EVICTION_MEMORY_DEFAULT: i64 = 100 * MIB;
/// Default hard eviction threshold on `nodefs.available`, percent of the root volume.
pub const EVICTION_NODEFS_PERCENT_DEFAULT: f64 = 10.0;

/// A threshold as written (`100Mi` or `5%`) against `capacity` bytes.
/// None when the text is neither (the policy checker reports that with a span).
fn threshold(text: &str, capacity: i64) -> Option<i64> {
    let text = text.trim();
    if let Some(p) = text.strip_suffix('%') {
        let p: f64 = p.trim().parse().ok()?;
        return Some((capacity as f64 * p / 100.0).ceil() as i64);
    }
    Quantity::parse(text).ok().map(|q| q.units_ceil())
}

/// Eviction thresholds (memory, ephemeral storage): 100Mi and 10% by default;
/// a signal set in `eviction_hard` or `eviction_soft` replaces its default,
/// the larger of hard and soft winning.
fn eviction(kubelet: &KubeletConfig, memory: i64, storage: i64) -> (i64, i64) {
    let mut mem = None::<i64>;
    let mut fs = None::<i64>;
    for m in [&kubelet.eviction_hard, &kubelet.eviction_soft] {
        if let Some(v) = m.get("memory.available") {
            match threshold(v, memory) {
                Some(n) => mem = Some(mem.map_or(n, |o| o.max(n))),
                None => {
                    tracing::warn!(value = %v, "ignoring unparseable memory.available threshold")
                }
            }
        }
        if let Some(v) = m.get("nodefs.available") {
            match threshold(v, storage) {
                Some(n) => fs = Some(fs.map_or(n, |o| o.max(n))),
                None => {
                    tracing::warn!(value = %v, "ignoring unparseable nodefs.available threshold")
                }
            }
        }
    }
    let fs_default = (storage as f64 * EVICTION_NODEFS_PERCENT_DEFAULT / 100.0).ceil() as i64;
    (
        mem.unwrap_or(EVICTION_MEMORY_DEFAULT),
        fs.unwrap_or(fs_default),
    )
}

/// The resources a pod can be given on a node of type `t`:
///
/// - cpu = vCPUs − kube-reserved cpu (sliding scale) − system-reserved cpu;
/// - memory = memory − VM overhead − kube-reserved memory (11Mi × max pods +
///   255Mi) − system-reserved memory − eviction threshold (100Mi);
/// - ephemeral-storage = root volume (`opts.root_volume_bytes`, see
///   `ephemeral_storage_bytes`) − kube-reserved (1Gi) − system-reserved −
///   eviction threshold (10%, rounded up), as Karpenter computes it
///   (karpenter-provider-aws `pkg/providers/instancetype/types.go`:
///   `kubeReservedResources` reserves 1Gi of ephemeral storage and
///   `evictionThreshold` takes ⌈10% × storage⌉ for `nodefs.available`);
/// - pods = `max_pods`; extended resources as in capacity.
///
/// `kubelet.kube_reserved` / `system_reserved` entries replace the defaults
/// resource by resource. Nothing goes below zero.
pub fn allocatable(
    t: &InstanceType,
    kubelet: &KubeletConfig,
    opts: &AllocatableOptions,
) -> Resources {
    let pods = max_pods(t, kubelet, opts);
    let memory = (t.capacity.memory
        - vm_memory_overhead_mib(t.memory_mib, opts.vm_memory_overhead_percent) * MIB)
        .max(0);
    let storage = opts
        .root_volume_bytes
        .unwrap_or(t.capacity.ephemeral_storage);

    let reserved = |m: &std::collections::BTreeMap<String, Quantity>, name: &str, default: i64| {
        m.get(name).map_or(default, |q| {
            if name == "cpu" {
                q.milli()
            } else {
                q.units_ceil()
            }
        })
    };
    let kr = &kubelet.kube_reserved;
    let sr = &kubelet.system_reserved;
    let (evict_mem, evict_fs) = eviction(kubelet, memory, storage);

    let cpu = t.capacity.cpu_milli
        - reserved(kr, "cpu", kube_reserved_cpu_milli(t.vcpus))
        - reserved(sr, "cpu", 0);
    let mem = memory
        - reserved(kr, "memory", kube_reserved_memory(pods))
        - reserved(sr, "memory", 0)
        - evict_mem;
    let eph = storage
        - reserved(kr, "ephemeral-storage", KUBE_RESERVED_EPHEMERAL)
        - reserved(sr, "ephemeral-storage", 0)
        - evict_fs;
    Resources {
        cpu_milli: cpu.max(0),
        memory: mem.max(0),
        ephemeral_storage: eph.max(0),
        pods: i64::from(pods),
        extended: t.capacity.extended.clone(),
    }
}

#[cfg(test)]
mod tests {
    //! Allocatable and max pods of real types from the embedded catalog,
    //! against values worked out by hand from the EKS formula:
    //! - max pods = ENIs × (IPv4 per ENI − 1) + 2 (ENI figures from
    //!   data/aws/ec2-eni-limits.csv);
    //! - memory = capacity − ⌈7.5% × capacity⌉ − (11 MiB × max pods + 255 MiB) − 100 MiB;
    //! - cpu = capacity − (6% of core 1 + 1% of core 2 + 0.5% of cores 3–4 + 0.25% of the rest);
    //! - ephemeral = 20 GiB root − 1 GiB kube-reserved − 10% (2 GiB) eviction.

    use super::*;
    use crate::catalog::embedded::embedded_static;

    const MI: i64 = 1 << 20;
    const GI: i64 = 1 << 30;

    fn alloc(name: &str) -> (u32, Resources) {
        let cat = embedded_static().expect("the embedded catalog decodes");
        let t = cat
            .instance_type(name)
            .unwrap_or_else(|| panic!("{name} is in the catalog"));
        let k = KubeletConfig::default();
        let o = AllocatableOptions::default();
        (max_pods(t, &k, &o), allocatable(t, &k, &o))
    }

    #[test]
    fn m5_large() {
        let (pods, a) = alloc("m5.large");
        assert_eq!(pods, 3 * (10 - 1) + 2); // 29
        assert_eq!(a.pods, 29);
        assert_eq!(a.cpu_milli, 2000 - (60 + 10)); // 1930m
        // 8192 − ⌈614.4⌉ − (11 × 29 + 255) − 100 = 8192 − 615 − 574 − 100
        assert_eq!(a.memory, 6903 * MI);
        assert_eq!(a.ephemeral_storage, 20 * GI - GI - 2 * GI);
    }

    #[test]
    fn t3_micro() {
        let (pods, a) = alloc("t3.micro");
        assert_eq!(pods, 4); // 2 ENIs × (2 IPv4 − 1) + 2
        assert_eq!(a.cpu_milli, 2000 - 70);
        // 1024 − ⌈76.8⌉ − (11 × 4 + 255) − 100 = 1024 − 77 − 299 − 100
        assert_eq!(a.memory, 548 * MI);
    }

    #[test]
    fn c6g_xlarge() {
        let (pods, a) = alloc("c6g.xlarge");
        assert_eq!(pods, 4 * (15 - 1) + 2); // 58
        assert_eq!(a.cpu_milli, 4000 - (60 + 10 + 5 + 5)); // 3920m
        // 8192 − 615 − (11 × 58 + 255 = 893) − 100
        assert_eq!(a.memory, 6584 * MI);
    }

    #[test]
    fn p4d_24xlarge() {
        let (pods, a) = alloc("p4d.24xlarge");
        assert_eq!(pods, 60 * (50 - 1) + 2); // 2942
        // 60 + 10 + 5 + 5 + 92 cores × 2.5m = 310m reserved
        assert_eq!(a.cpu_milli, 96_000 - 310);
        // 1179648 − ⌈88473.6⌉ − (11 × 2942 + 255 = 32617) − 100
        assert_eq!(a.memory, (1_179_648 - 88_474 - 32_617 - 100) * MI);
        assert_eq!(a.extended.get("nvidia.com/gpu"), Some(&8));
    }

    #[test]
    fn m5_metal_bare_metal() {
        let cat = embedded_static().expect("the embedded catalog decodes");
        let t = cat.instance_type("m5.metal").expect("m5.metal");
        assert!(t.bare_metal);
        let (pods, a) = alloc("m5.metal");
        assert_eq!(pods, 15 * (50 - 1) + 2); // 737
        assert_eq!(a.cpu_milli, 96_000 - 310);
        // 393216 − ⌈29491.2⌉ − (11 × 737 + 255 = 8362) − 100
        assert_eq!(a.memory, (393_216 - 29_492 - 8_362 - 100) * MI);
    }

    fn class(f: impl FnOnce(&mut NodeClass)) -> NodeClass {
        let mut nc = NodeClass::default();
        f(&mut nc);
        nc
    }

    fn device(name: &str, root: bool, size: Option<&str>) -> crate::ir::BlockDeviceMapping {
        crate::ir::BlockDeviceMapping {
            device_name: name.into(),
            root_volume: root,
            volume_size: size.map(|s| Quantity::parse(s).expect("qty")),
            ..Default::default()
        }
    }

    #[test]
    fn ephemeral_storage_follows_the_node_class() {
        let cat = embedded_static().expect("the embedded catalog decodes");
        let m5 = cat.instance_type("m5.large").expect("m5.large");
        let nvme = cat.instance_type("c6id.4xlarge").expect("c6id.4xlarge");
        assert_eq!(nvme.local_nvme_gib, 950);
        // No devices: Karpenter's 20Gi.
        assert_eq!(ephemeral_storage_bytes(&NodeClass::default(), m5), 20 * GI);
        // The device marked root wins, wherever it is.
        let root = class(|nc| {
            nc.block_device_mappings = vec![
                device("/dev/xvda", false, Some("30Gi")),
                device("/dev/xvdc", true, Some("200Gi")),
            ]
        });
        assert_eq!(ephemeral_storage_bytes(&root, m5), 200 * GI);
        // No root mark: the family's device (/dev/xvdb on Bottlerocket).
        let br = class(|nc| {
            nc.ami_selector = vec![crate::ir::AmiSelectorTerm {
                alias: Some("bottlerocket@latest".into()),
                ..Default::default()
            }];
            nc.block_device_mappings = vec![
                device("/dev/xvda", false, Some("4Gi")),
                device("/dev/xvdb", false, Some("200Gi")),
            ];
        });
        assert_eq!(ephemeral_storage_bytes(&br, m5), 200 * GI);
        // ...and /dev/xvda on AL2023, where /dev/xvdb is a data disk.
        let al = class(|nc| {
            nc.block_device_mappings = vec![
                device("/dev/xvda", false, Some("80Gi")),
                device("/dev/xvdb", false, Some("500Gi")),
            ];
        });
        assert_eq!(ephemeral_storage_bytes(&al, m5), 80 * GI);
        // Custom AMIs: the last device.
        let custom = class(|nc| {
            nc.ami_family = Some("Custom".into());
            nc.block_device_mappings = vec![
                device("/dev/xvda", false, Some("80Gi")),
                device("/dev/sdf", false, Some("120Gi")),
            ];
        });
        assert_eq!(ephemeral_storage_bytes(&custom, m5), 120 * GI);
        // RAID0: the local NVMe (EC2's decimal GB); types without keep the root volume.
        let raid = class(|nc| {
            nc.instance_store_policy = Some("RAID0".into());
            nc.block_device_mappings = vec![device("/dev/xvda", true, Some("50Gi"))];
        });
        assert_eq!(ephemeral_storage_bytes(&raid, nvme), 950_000_000_000);
        assert_eq!(ephemeral_storage_bytes(&raid, m5), 50 * GI);
        // Allocatable: 200Gi − 1Gi kube-reserved − 20Gi (10%) eviction = 179Gi.
        let opts = AllocatableOptions {
            root_volume_bytes: Some(ephemeral_storage_bytes(&root, m5)),
            ..Default::default()
        };
        let a = allocatable(m5, &KubeletConfig::default(), &opts);
        assert_eq!(a.ephemeral_storage, 179 * GI);
    }

    #[test]
    fn kubelet_settings_override_each_term() {
        let cat = embedded_static().expect("the embedded catalog decodes");
        let t = cat.instance_type("m5.large").expect("m5.large");
        let o = AllocatableOptions::default();
        let mut k = KubeletConfig {
            max_pods: Some(20),
            ..Default::default()
        };
        assert_eq!(max_pods(t, &k, &o), 20);
        // kube-reserved memory now follows the 20 pods: 11 × 20 + 255 = 475 MiB.
        assert_eq!(allocatable(t, &k, &o).memory, (8192 - 615 - 475 - 100) * MI);
        k.pods_per_core = Some(4); // 4 × 2 vCPUs = 8 < 20
        assert_eq!(max_pods(t, &k, &o), 8);
        k.kube_reserved
            .insert("cpu".into(), Quantity::parse("500m").expect("qty"));
        k.system_reserved
            .insert("memory".into(), Quantity::parse("1Gi").expect("qty"));
        let a = allocatable(t, &k, &o);
        assert_eq!(a.cpu_milli, 1500);
        assert_eq!(a.memory, (8192 - 615 - (11 * 8 + 255) - 1024 - 100) * MI);
    }
}
