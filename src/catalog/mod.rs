//! The EC2 instance catalog: instance types, offerings (type × zone × capacity
//! type) with prices, and what each type offers a Kubernetes node.
//!
//! The offline planner uses the embedded catalog; the controller refreshes a
//! live one from the EC2 API (`crate::cloud::discover`). Both have this shape.
//! This module is data only: it never talks to EC2. `availability` holds
//! the offerings EC2 recently refused: the launcher's live cache, and the
//! frozen snapshot of it a solve takes as input.

pub mod allocatable;
pub mod availability;
pub mod bits;
pub mod build;
pub mod embedded;
mod error;
pub mod index;
pub mod node_labels;
pub mod raw;
pub mod type_labels;

use serde::{Deserialize, Serialize};

use crate::ir::{Requirements, Resources, labels};
pub use allocatable::{AllocatableOptions, allocatable, ephemeral_storage_bytes, max_pods};
pub use availability::{Availability, UnavailableOfferings};
pub use bits::Bits;
pub use embedded::embedded;
pub use error::CatalogError;
pub use index::CatalogIndex;
pub use type_labels::TypeLabels;

/// `on-demand` or `spot`, as the `karpenter.sh/capacity-type` label spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CapacityType {
    OnDemand,
    Spot,
}

impl CapacityType {
    /// The label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            CapacityType::OnDemand => "on-demand",
            CapacityType::Spot => "spot",
        }
    }

    /// Parses the label value.
    pub fn parse(s: &str) -> Option<CapacityType> {
        match s {
            "on-demand" => Some(CapacityType::OnDemand),
            "spot" => Some(CapacityType::Spot),
            _ => None,
        }
    }
}

/// An availability zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    /// `us-east-1a`.
    pub name: String,
    /// `use1-az1`.
    pub id: String,
}

/// A GPU or other accelerator model on an instance type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accelerator {
    pub name: String,
    pub manufacturer: String,
    pub count: u32,
    /// Per device, MiB (0 when unknown).
    pub memory_mib: u64,
}

/// One EC2 instance type and what it offers a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceType {
    /// `m5.large`.
    pub name: String,
    /// Every well-known label the type carries (family, generation, cpu,
    /// memory, arch, os, gpu-*, ...), spelled as Karpenter spells them.
    /// Zone, zone id and capacity type are per offering, not here.
    pub labels: TypeLabels,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// `amd64` or `arm64`.
    pub arch: String,
    /// `nitro`, `xen`, or empty for bare metal.
    pub hypervisor: String,
    pub bare_metal: bool,
    pub gpus: Vec<Accelerator>,
    /// Neuron / Inferentia / Trainium and other non-GPU accelerators.
    pub accelerators: Vec<Accelerator>,
    pub local_nvme_gib: u64,
    pub network_bandwidth_mbps: u64,
    pub ebs_bandwidth_mbps: u64,
    pub efa_count: u32,
    pub max_enis: u32,
    pub ipv4_per_eni: u32,
    /// Raw capacity before any reservation: cpu, memory, pods (ENI max pods),
    /// ephemeral-storage, and extended resources (`nvidia.com/gpu`, ...).
    pub capacity: Resources,
}

impl InstanceType {
    /// The type's value for a label key, including `node.kubernetes.io/instance-type`.
    pub fn label(&self, key: &str) -> Option<&str> {
        if key == labels::INSTANCE_TYPE || key == labels::INSTANCE_TYPE_BETA {
            return Some(&self.name);
        }
        self.labels.get(key)
    }

    /// ENI-limited max pods: ENIs × (IPv4 per ENI − 1) + 2.
    pub fn eni_max_pods(&self) -> u32 {
        self.max_enis
            .saturating_mul(self.ipv4_per_eni.saturating_sub(1))
            .saturating_add(2)
    }
}

/// One place a type can be bought: type × zone × capacity type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offering {
    /// Index into `Catalog::types`.
    pub type_index: u32,
    /// Index into `Catalog::zones`.
    pub zone_index: u16,
    pub capacity_type: CapacityType,
    /// $/hour; None when unknown (such an offering needs a cost rule to be usable).
    pub price: Option<f64>,
    /// True when `price` is an estimate (the embedded catalog's spot prices).
    pub price_estimated: bool,
    pub available: bool,
}

/// Everything the solver needs to know about what can be launched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub region: String,
    pub zones: Vec<Zone>,
    pub types: Vec<InstanceType>,
    pub offerings: Vec<Offering>,
}

impl Catalog {
    /// The value an offering has for a label key: the type's labels plus zone,
    /// zone id, region and capacity type.
    pub fn offering_label(&self, o: &Offering, key: &str) -> Option<&str> {
        match key {
            labels::ZONE | labels::ZONE_BETA => self
                .zones
                .get(o.zone_index as usize)
                .map(|z| z.name.as_str()),
            labels::ZONE_ID => self.zones.get(o.zone_index as usize).map(|z| z.id.as_str()),
            labels::REGION => Some(&self.region),
            labels::CAPACITY_TYPE => Some(o.capacity_type.as_str()),
            _ => self.types.get(o.type_index as usize)?.label(key),
        }
    }

    /// The offerings that satisfy `reqs`, by a plain scan.
    ///
    /// Kept as the obviously-correct reference for the indexed filter.
    pub fn filter_naive(&self, reqs: &Requirements) -> Bits {
        let mut out = Bits::new(self.offerings.len());
        for (i, o) in self.offerings.iter().enumerate() {
            if reqs.matches(|k| self.offering_label(o, k)) {
                out.set(i);
            }
        }
        out
    }

    /// The embedded us-east-1 catalog (see `embedded::embedded`).
    pub fn embedded() -> Result<Catalog, CatalogError> {
        embedded::embedded()
    }

    /// The instance type called `name`.
    pub fn instance_type(&self, name: &str) -> Option<&InstanceType> {
        self.types.iter().find(|t| t.name == name)
    }
}
