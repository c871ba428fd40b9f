//! Raw EC2 specs → the Kubernetes view of an instance type: Karpenter's
//! well-known labels, node capacity and extended resources, and offerings.
//!
//! Shared by the embedded catalog and live discovery (`live.rs`), so that both
//! label and size a type identically.

use std::collections::BTreeMap;

use super::raw::{EniRow, RawCatalog, RawSpec};
use super::{Accelerator, CapacityType, Catalog, CatalogError, InstanceType, Offering};
use crate::ir::{Resources, labels};

/// Spot price estimate as a fraction of on-demand, when no spot price is known
/// (the embedded catalog: there is no public static source of spot prices).
/// 0.35 is a typical long-run spot discount of 65%; a policy's cost rules
/// (`price spot = on-demand * X when no spot price known`) override it.
pub const DEFAULT_SPOT_PRICE_FRACTION: f64 = 0.35;

/// The root volume a node gets when its node class sets none (EKS AMIs' 20Gi),
/// which is the `ephemeral-storage` capacity.
pub const DEFAULT_ROOT_VOLUME_BYTES: i64 = 20 * GIB;

const MIB: i64 = 1024 * 1024;
const GIB: i64 = 1024 * MIB;

/// Extended resource names, as the device plugins advertise them.
pub mod resource_names {
    /// NVIDIA GPUs (nvidia device plugin).
    pub const NVIDIA_GPU: &str = "nvidia.com/gpu";
    /// AMD GPUs (ROCm device plugin).
    pub const AMD_GPU: &str = "amd.com/gpu";
    /// Habana Gaudi accelerators.
    pub const HABANA_GAUDI: &str = "habana.ai/gaudi";
    /// Neuron devices (Inferentia, Trainium).
    pub const NEURON: &str = "aws.amazon.com/neuron";
    /// Neuron cores (devices × cores per device).
    pub const NEURON_CORE: &str = "aws.amazon.com/neuroncore";
    /// EFA interfaces.
    pub const EFA: &str = "vpc.amazonaws.com/efa";
    /// Branch ENIs for security groups for pods (trunking types only).
    pub const POD_ENI: &str = "vpc.amazonaws.com/pod-eni";
}

/// The Kubernetes architecture for EC2's architecture list, if it runs Linux nodes.
pub fn linux_arch(spec: &RawSpec) -> Option<&'static str> {
    if spec.architectures.iter().any(|a| a == "x86_64") {
        Some("amd64")
    } else if spec.architectures.iter().any(|a| a == "arm64") {
        Some("arm64")
    } else {
        None
    }
}

/// Karpenter's spelling of names in label values: lower case, spaces as dashes.
fn kebab(s: &str) -> String {
    s.to_lowercase().replace(' ', "-")
}

/// Category and generation from a type name, as Karpenter reads them
/// (`^[a-z]+(-[0-9]+tb)?[0-9]+.*\.`): `m5.large` → (`m`, 5),
/// `u-6tb1.metal` → (`u`, 1), `inf2.xlarge` → (`inf`, 2). None when the name
/// does not follow the pattern (e.g. `mac-m4.metal`).
pub fn category_and_generation(name: &str) -> Option<(&str, u32)> {
    let family = name.split_once('.')?.0;
    let b = family.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_lowercase() {
        i += 1;
    }
    if i == 0 {
        return None;
    }
    let category = &family[..i];
    let mut j = i;
    // optional "-<digits>tb"
    if j < b.len() && b[j] == b'-' {
        let mut k = j + 1;
        while k < b.len() && b[k].is_ascii_digit() {
            k += 1;
        }
        if k > j + 1 && family[k..].starts_with("tb") {
            j = k + 2;
        }
    }
    let start = j;
    while j < b.len() && b[j].is_ascii_digit() {
        j += 1;
    }
    if j == start {
        return None;
    }
    let generation = family[start..j].parse().ok()?;
    Some((category, generation))
}

/// Builds the instance type for `spec`, with ENI limits from `eni` when the
/// ENI table has the type (else from the spec). Errors for types that cannot
/// be Linux nodes (macOS-only).
pub fn instance_type_from_spec(
    spec: &RawSpec,
    eni: Option<&EniRow>,
) -> Result<InstanceType, CatalogError> {
    let arch = linux_arch(spec).ok_or_else(|| CatalogError::UnsupportedArchitecture {
        name: spec.name.clone(),
        archs: spec.architectures.join(", "),
    })?;
    let (family, size) = spec
        .name
        .split_once('.')
        .unwrap_or((spec.name.as_str(), ""));
    let hypervisor = spec
        .hypervisor
        .clone()
        .or_else(|| eni.map(|e| e.hypervisor.clone()))
        .unwrap_or_default();
    let (max_enis, ipv4_per_eni) = match eni {
        Some(e) => (e.max_enis, e.ipv4_per_eni),
        None => (spec.max_enis, spec.ipv4_per_eni),
    };

    let mut l: BTreeMap<String, String> = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        l.insert(k.to_string(), v);
    };
    if let Some((cat, generation)) = category_and_generation(&spec.name) {
        put(labels::INSTANCE_CATEGORY, cat.to_string());
        put(labels::INSTANCE_GENERATION, generation.to_string());
    }
    put(labels::INSTANCE_FAMILY, family.to_string());
    put(labels::INSTANCE_SIZE, size.to_string());
    put(labels::INSTANCE_CPU, spec.vcpus.to_string());
    if let Some(m) = &spec.cpu_manufacturer {
        put(labels::INSTANCE_CPU_MANUFACTURER, kebab(m));
    }
    if let Some(mhz) = spec.sustained_clock_mhz {
        put(
            labels::INSTANCE_CPU_SUSTAINED_CLOCK_SPEED_MHZ,
            mhz.to_string(),
        );
    }
    put(labels::INSTANCE_MEMORY, spec.memory_mib.to_string());
    put(labels::INSTANCE_HYPERVISOR, hypervisor.clone());
    put(
        labels::INSTANCE_ENCRYPTION_IN_TRANSIT,
        spec.encryption_in_transit.to_string(),
    );
    // Karpenter labels GPUs only when the type has a single GPU model.
    if let [g] = spec.gpus.as_slice() {
        put(labels::INSTANCE_GPU_NAME, kebab(&g.name));
        put(labels::INSTANCE_GPU_MANUFACTURER, kebab(&g.manufacturer));
        put(labels::INSTANCE_GPU_COUNT, g.count.to_string());
        put(labels::INSTANCE_GPU_MEMORY, g.memory_mib.to_string());
    }
    if let [d] = spec.neuron_devices.as_slice() {
        put(labels::INSTANCE_ACCELERATOR_NAME, kebab(&d.name));
        put(labels::INSTANCE_ACCELERATOR_MANUFACTURER, "aws".to_string());
        put(labels::INSTANCE_ACCELERATOR_COUNT, d.count.to_string());
    } else if let ([a], true) = (
        spec.inference_accelerators.as_slice(),
        spec.neuron_devices.is_empty(),
    ) {
        put(labels::INSTANCE_ACCELERATOR_NAME, kebab(&a.name));
        put(
            labels::INSTANCE_ACCELERATOR_MANUFACTURER,
            kebab(&a.manufacturer),
        );
        put(labels::INSTANCE_ACCELERATOR_COUNT, a.count.to_string());
    }
    if let Some(gb) = spec.local_nvme_gb {
        put(labels::INSTANCE_LOCAL_NVME, gb.to_string());
    }
    if spec.network_bandwidth_mbps > 0 {
        put(
            labels::INSTANCE_NETWORK_BANDWIDTH,
            spec.network_bandwidth_mbps.to_string(),
        );
    }
    if spec.ebs_bandwidth_mbps > 0 {
        put(
            labels::INSTANCE_EBS_BANDWIDTH,
            spec.ebs_bandwidth_mbps.to_string(),
        );
    }
    if spec.efa_max > 0 {
        put(labels::INSTANCE_EFA_COUNT, spec.efa_max.to_string());
    }
    put(labels::ARCH, arch.to_string());
    put(labels::OS, "linux".to_string());

    let gpus: Vec<Accelerator> = spec
        .gpus
        .iter()
        .map(|g| Accelerator {
            name: g.name.clone(),
            manufacturer: g.manufacturer.clone(),
            count: g.count,
            memory_mib: g.memory_mib,
        })
        .collect();
    let accelerators: Vec<Accelerator> = if spec.neuron_devices.is_empty() {
        spec.inference_accelerators
            .iter()
            .map(|a| Accelerator {
                name: a.name.clone(),
                manufacturer: a.manufacturer.clone(),
                count: a.count,
                memory_mib: a.memory_mib,
            })
            .collect()
    } else {
        spec.neuron_devices
            .iter()
            .map(|d| Accelerator {
                name: d.name.clone(),
                manufacturer: "AWS".to_string(),
                count: d.count,
                memory_mib: d.memory_mib,
            })
            .collect()
    };

    let mut t = InstanceType {
        name: spec.name.clone(),
        labels: l.into(),
        vcpus: spec.vcpus,
        memory_mib: spec.memory_mib,
        arch: arch.to_string(),
        hypervisor,
        bare_metal: spec.bare_metal,
        gpus,
        accelerators,
        local_nvme_gib: spec.local_nvme_gb.unwrap_or(0),
        network_bandwidth_mbps: spec.network_bandwidth_mbps,
        ebs_bandwidth_mbps: spec.ebs_bandwidth_mbps,
        efa_count: spec.efa_max,
        max_enis,
        ipv4_per_eni,
        capacity: Resources::zero(),
    };
    t.capacity = capacity(spec, &t, eni);
    Ok(t)
}

/// Raw node capacity: every vCPU, all memory (VM overhead and reservations
/// are taken off in `allocatable`), ENI-limited pods, the default root
/// volume, and the extended resources device plugins advertise.
fn capacity(spec: &RawSpec, t: &InstanceType, eni: Option<&EniRow>) -> Resources {
    let mut r = Resources {
        cpu_milli: i64::from(spec.vcpus) * 1000,
        memory: i64::try_from(spec.memory_mib)
            .unwrap_or(i64::MAX / MIB)
            .saturating_mul(MIB),
        ephemeral_storage: DEFAULT_ROOT_VOLUME_BYTES,
        pods: i64::from(t.eni_max_pods()),
        extended: BTreeMap::new(),
    };
    let mut add = |name: &str, n: i64| {
        if n > 0 {
            *r.extended.entry(name.to_string()).or_insert(0) += n;
        }
    };
    for g in &spec.gpus {
        let name = match g.manufacturer.to_ascii_lowercase().as_str() {
            "nvidia" => resource_names::NVIDIA_GPU,
            "amd" => resource_names::AMD_GPU,
            "habana" => resource_names::HABANA_GAUDI,
            _ => continue,
        };
        add(name, i64::from(g.count));
    }
    if spec.neuron_devices.is_empty() {
        // inf1-era types described only as inference accelerators.
        for a in &spec.inference_accelerators {
            if a.manufacturer.eq_ignore_ascii_case("aws") {
                add(resource_names::NEURON, i64::from(a.count));
            }
        }
    }
    for d in &spec.neuron_devices {
        add(resource_names::NEURON, i64::from(d.count));
        add(
            resource_names::NEURON_CORE,
            i64::from(d.count) * i64::from(d.cores_per_device),
        );
    }
    add(resource_names::EFA, i64::from(spec.efa_max));
    if let Some(e) = eni
        && e.trunking
    {
        add(resource_names::POD_ENI, i64::from(e.branch_enis));
    }
    r
}

/// Builds a whole catalog: one type per Linux-capable spec (macOS-only types
/// are left out), and for every zone the type is offered in, an on-demand
/// offering priced from the table (None when the table lacks the type) and,
/// when the type supports spot, a spot offering estimated at
/// `spot_fraction` × on-demand with `price_estimated = true`.
pub fn catalog_from_raw(raw: &RawCatalog, spot_fraction: f64) -> Catalog {
    let mut types = Vec::with_capacity(raw.specs.len());
    let mut offerings = Vec::new();
    for spec in &raw.specs {
        let Ok(t) = instance_type_from_spec(spec, raw.eni_row(&spec.name)) else {
            continue;
        };
        let type_index = types.len() as u32;
        let od = raw.on_demand_price(&spec.name);
        let spot = spec.usage_classes.iter().any(|c| c == "spot");
        for zone in raw.type_zones.get(&spec.name).into_iter().flatten() {
            let Some(zone_index) = raw.zones.iter().position(|z| &z.name == zone) else {
                continue;
            };
            let zone_index = zone_index as u16;
            offerings.push(Offering {
                type_index,
                zone_index,
                capacity_type: CapacityType::OnDemand,
                price: od,
                price_estimated: false,
                available: true,
            });
            if spot {
                offerings.push(Offering {
                    type_index,
                    zone_index,
                    capacity_type: CapacityType::Spot,
                    price: od.map(|p| p * spot_fraction),
                    price_estimated: true,
                    available: true,
                });
            }
        }
        types.push(t);
    }
    Catalog {
        region: raw.region.clone(),
        zones: raw.zones.clone(),
        types,
        offerings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_generation_like_karpenter() {
        assert_eq!(category_and_generation("m5.large"), Some(("m", 5)));
        assert_eq!(category_and_generation("c6gn.xlarge"), Some(("c", 6)));
        assert_eq!(category_and_generation("inf2.xlarge"), Some(("inf", 2)));
        assert_eq!(category_and_generation("u-6tb1.metal"), Some(("u", 1)));
        assert_eq!(category_and_generation("mac2-m2.metal"), Some(("mac", 2)));
        assert_eq!(category_and_generation("mac-m4.metal"), None);
        assert_eq!(category_and_generation("nodot"), None);
    }

    #[test]
    fn kebab_names() {
        assert_eq!(kebab("Radeon Pro V520"), "radeon-pro-v520");
        assert_eq!(kebab("NVIDIA"), "nvidia");
    }
}
