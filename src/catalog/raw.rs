//! The raw inputs a catalog is built from: instance specs as EC2 describes
//! them, ENI limits, on-demand prices and per-zone offerings.
//!
//! The embedded catalog stores exactly this (pre-parsed, postcard) and builds
//! the `Catalog` at load with `build::catalog_from_raw`, so the labels,
//! capacity and allocatable logic is the same code for embedded and live data:
//! live discovery fills a `RawSpec` from `DescribeInstanceTypes`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Zone;

/// A GPU or inference accelerator model, as EC2 describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccelerator {
    /// `A100`, `Radeon Pro V520`, `Gaudi HL-205`.
    pub name: String,
    /// `NVIDIA`, `AMD`, `Habana`, `AWS`, `Qualcomm`.
    pub manufacturer: String,
    pub count: u32,
    /// Per device, MiB (0 when unknown).
    pub memory_mib: u64,
}

/// A Neuron device (Inferentia, Trainium): counted separately because its
/// cores are a schedulable resource of their own (`aws.amazon.com/neuroncore`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNeuron {
    /// `Inferentia2`, `Trainium`.
    pub name: String,
    pub count: u32,
    pub cores_per_device: u32,
    pub memory_mib: u64,
}

/// One instance type's specs in EC2's terms (the fields of
/// `DescribeInstanceTypes` that matter to a node), before any Kubernetes view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    /// `m5.large`.
    pub name: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// EC2 spelling: `x86_64`, `arm64`, `i386`, `arm64_mac`.
    pub architectures: Vec<String>,
    /// `nitro`, `xen`; None for bare metal.
    pub hypervisor: Option<String>,
    pub bare_metal: bool,
    /// `Intel`, `AMD`, `AWS`, `Apple`.
    pub cpu_manufacturer: Option<String>,
    pub sustained_clock_mhz: Option<u32>,
    pub gpus: Vec<RawAccelerator>,
    pub inference_accelerators: Vec<RawAccelerator>,
    pub neuron_devices: Vec<RawNeuron>,
    /// Total local NVMe instance storage in GB, when the storage is NVMe.
    pub local_nvme_gb: Option<u64>,
    /// Sum of the network cards' baseline bandwidth, Mbps.
    pub network_bandwidth_mbps: u64,
    /// Maximum EBS-optimised bandwidth, Mbps.
    pub ebs_bandwidth_mbps: u64,
    pub efa_max: u32,
    /// From the API; the ENI table (`EniRow`) wins when it has the type.
    pub max_enis: u32,
    pub ipv4_per_eni: u32,
    pub encryption_in_transit: bool,
    /// `on-demand`, `spot`, `capacity-block`.
    pub usage_classes: Vec<String>,
}

/// One row of `ec2-eni-limits.csv` (the VPC resource controller's limits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EniRow {
    pub instance_type: String,
    pub max_enis: u32,
    pub ipv4_per_eni: u32,
    /// Whether the type supports ENI trunking (security groups for pods).
    pub trunking: bool,
    /// Branch ENIs available to pods when trunking (`vpc.amazonaws.com/pod-eni`).
    pub branch_enis: u32,
    pub hypervisor: String,
    pub bare_metal: bool,
}

/// Everything a region's catalog is built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCatalog {
    pub region: String,
    /// Where the data came from (shown by `nodewright catalog list --output json` consumers and docs).
    pub source: String,
    pub zones: Vec<Zone>,
    /// Sorted by name.
    pub specs: Vec<RawSpec>,
    /// Sorted by instance type.
    pub eni: Vec<EniRow>,
    /// On-demand $/hour by instance type, sorted.
    pub prices: Vec<(String, f64)>,
    /// Instance type → zone names where it is offered.
    pub type_zones: BTreeMap<String, Vec<String>>,
}

impl RawCatalog {
    /// The ENI limits row for `name`.
    pub fn eni_row(&self, name: &str) -> Option<&EniRow> {
        self.eni
            .binary_search_by(|r| r.instance_type.as_str().cmp(name))
            .ok()
            .map(|i| &self.eni[i])
    }

    /// The on-demand $/hour of `name` in the price table.
    pub fn on_demand_price(&self, name: &str) -> Option<f64> {
        self.prices
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.prices[i].1)
    }
}
