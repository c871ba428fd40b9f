//! Live catalog discovery from the EC2 API, for the controller.
//!
//! This is EC2 I/O, so it lives in `cloud`; what it builds is the data model
//! of `crate::catalog`, which knows nothing of EC2's API.
//!
//! Reads DescribeInstanceTypes (paginated), DescribeAvailabilityZones (zone
//! ids), DescribeInstanceTypeOfferings by availability zone, and
//! DescribeSpotPriceHistory (latest Linux/UNIX price per type × zone), and
//! builds a [`Catalog`] of the same shape as the embedded one.
//!
//! On-demand prices come from a price table (see [`default_price_table`]);
//! a type EC2 offers but the table lacks gets a warning and `price: None`, so
//! the solver skips it unless a cost rule prices it.
//!
//! Spot prices that are not plausible (below [`MIN_PLAUSIBLE_SPOT_PRICE`], or
//! one identical price for every offering, as moto's fixed placeholder
//! $0.00001 is) are treated as unknown: the spot offering then carries the
//! estimate `on-demand × DEFAULT_SPOT_FRACTION` with `price_estimated = true`,
//! exactly like the embedded catalog.
//!
//! [`LiveCatalog`] refreshes and keeps the last good catalog when a refresh
//! fails (lock-free reads through `arc-swap`); `cloud::refresh` runs it on
//! an interval for the controller.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use aws_sdk_ec2::types::LocationType;

use super::retry::{Ec2Error, RetryPolicy, with_retry};
use crate::catalog::{Accelerator, CapacityType, Catalog, InstanceType, Offering, Zone};
use crate::ir::{Resources, labels};

/// A spot price below this ($/hour) is not a real price (the cheapest real one is ~$0.001).
pub const MIN_PLAUSIBLE_SPOT_PRICE: f64 = 0.0001;
/// Spot estimate as a fraction of on-demand when the real price is unknown (documented in docs/ec2.md).
pub const DEFAULT_SPOT_FRACTION: f64 = 0.35;
/// Ephemeral storage assumed per node (the default 20 GiB root volume).
const DEFAULT_EPHEMERAL_BYTES: i64 = 20 << 30;

/// Why the price table could not be read.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PriceTableError {
    #[error("cannot read the price table {path}: {source}")]
    #[diagnostic(code(nodewright::catalog::price_table))]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    #[diagnostic(
        code(nodewright::catalog::price_table),
        help("each line is `instance_type,on_demand_usd_per_hour`, after a header line")
    )]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
    #[error("the embedded price table cannot be decoded: {0}")]
    #[diagnostic(
        code(nodewright::catalog::price_table),
        help("this binary's embedded catalog is damaged; rebuild it (docs/catalog.md)")
    )]
    Embedded(String),
}

/// Parses `instance_type,on_demand_usd_per_hour` CSV (with a header line).
pub fn parse_price_table(path: &str, text: &str) -> Result<HashMap<String, f64>, PriceTableError> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let err = |message: String| PriceTableError::Parse {
            path: path.to_string(),
            line: i + 1,
            message,
        };
        let (t, p) = line
            .split_once(',')
            .ok_or_else(|| err(format!("expected two comma-separated fields, got `{line}`")))?;
        let p: f64 = p
            .trim()
            .parse()
            .map_err(|e| err(format!("bad price `{p}`: {e}")))?;
        if !p.is_finite() || p < 0.0 {
            return Err(err(format!("price `{p}` is not a non-negative number")));
        }
        out.insert(t.trim().to_string(), p);
    }
    Ok(out)
}

/// The on-demand price table the controller uses: the embedded catalog's
/// (us-east-1 list prices; on-demand prices are not in the EC2 API).
///
/// In another region the types and offerings are that region's, and each
/// type is priced by name from this table: regional price differences are
/// mostly a common factor, so the ranking between types holds. A type the
/// table lacks (one launched after the table was generated, or sold only
/// elsewhere) gets `price: None` and a warning, and is planned only where
/// a cost rule prices it (docs/ec2.md).
pub fn default_price_table() -> Result<HashMap<String, f64>, PriceTableError> {
    let raw = crate::catalog::embedded::embedded_raw()
        .map_err(|e| PriceTableError::Embedded(e.to_string()))?;
    Ok(raw.prices.iter().cloned().collect())
}

/// A discovered catalog and what the user should know about it.
#[derive(Debug, Clone)]
pub struct Discovery {
    pub catalog: Catalog,
    /// Types offered in the region but missing from the price table (price None).
    pub unpriced: Vec<String>,
    /// True when EC2's spot prices were not plausible and estimates were used.
    pub spot_prices_estimated: bool,
    /// Human-readable warnings (also logged).
    pub warnings: Vec<String>,
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Family, category, generation and size from a name like `m5d.2xlarge`.
fn name_parts(name: &str) -> (String, String, Option<String>, String) {
    let (family, size) = name.split_once('.').unwrap_or((name, ""));
    let category: String = family
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    let generation: String = family[category.len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    (
        family.to_string(),
        category,
        (!generation.is_empty()).then_some(generation),
        size.to_string(),
    )
}

/// Converts one DescribeInstanceTypes entry; None for types a Linux node cannot use.
pub fn instance_type_from_api(it: &aws_sdk_ec2::types::InstanceTypeInfo) -> Option<InstanceType> {
    let name = it.instance_type()?.as_str().to_string();
    let archs: Vec<&str> = it
        .processor_info()
        .map(|p| {
            p.supported_architectures()
                .iter()
                .map(|a| a.as_str())
                .collect()
        })
        .unwrap_or_default();
    let arch = if archs.contains(&"x86_64") {
        "amd64"
    } else if archs.contains(&"arm64") {
        "arm64"
    } else {
        return None; // i386-only, arm64_mac, x86_64_mac
    };
    let vcpus = it
        .v_cpu_info()
        .and_then(|v| v.default_v_cpus())
        .unwrap_or(0)
        .max(0) as u32;
    let memory_mib = it
        .memory_info()
        .and_then(|m| m.size_in_mib())
        .unwrap_or(0)
        .max(0) as u64;
    let hypervisor = it
        .hypervisor()
        .map(|h| h.as_str().to_string())
        .unwrap_or_default();
    let bare_metal = it.bare_metal().unwrap_or(false);
    let gpus: Vec<Accelerator> = it
        .gpu_info()
        .map(|g| {
            g.gpus()
                .iter()
                .map(|d| Accelerator {
                    name: lower(d.name().unwrap_or("")),
                    manufacturer: lower(d.manufacturer().unwrap_or("")),
                    count: d.count().unwrap_or(0).max(0) as u32,
                    memory_mib: d
                        .memory_info()
                        .and_then(|m| m.size_in_mib())
                        .unwrap_or(0)
                        .max(0) as u64,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut accelerators: Vec<Accelerator> = it
        .inference_accelerator_info()
        .map(|g| {
            g.accelerators()
                .iter()
                .map(|d| Accelerator {
                    name: lower(d.name().unwrap_or("")),
                    manufacturer: lower(d.manufacturer().unwrap_or("")),
                    count: d.count().unwrap_or(0).max(0) as u32,
                    memory_mib: d
                        .memory_info()
                        .and_then(|m| m.size_in_mib())
                        .unwrap_or(0)
                        .max(0) as u64,
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(n) = it.neuron_info() {
        for d in n.neuron_devices() {
            accelerators.push(Accelerator {
                name: lower(d.name().unwrap_or("")),
                manufacturer: "aws".into(),
                count: d.count().unwrap_or(0).max(0) as u32,
                memory_mib: d
                    .memory_info()
                    .and_then(|m| m.size_in_mib())
                    .unwrap_or(0)
                    .max(0) as u64,
            });
        }
    }
    let local_nvme_gib = it
        .instance_storage_info()
        .filter(|s| s.nvme_support().map(|n| n.as_str()) != Some("unsupported"))
        .and_then(|s| s.total_size_in_gb())
        .unwrap_or(0)
        .max(0) as u64;
    let net = it.network_info();
    let network_bandwidth_mbps = net
        .map(|n| {
            n.network_cards()
                .iter()
                .filter_map(|c| c.baseline_bandwidth_in_gbps())
                .sum::<f64>()
                * 1000.0
        })
        .unwrap_or(0.0) as u64;
    let ebs_bandwidth_mbps = it
        .ebs_info()
        .and_then(|e| e.ebs_optimized_info())
        .and_then(|e| e.maximum_bandwidth_in_mbps())
        .unwrap_or(0)
        .max(0) as u64;
    let efa_count = net
        .and_then(|n| n.efa_info())
        .and_then(|e| e.maximum_efa_interfaces())
        .unwrap_or(0)
        .max(0) as u32;
    let max_enis = net
        .and_then(|n| n.maximum_network_interfaces())
        .unwrap_or(0)
        .max(0) as u32;
    let ipv4_per_eni = net
        .and_then(|n| n.ipv4_addresses_per_interface())
        .unwrap_or(0)
        .max(0) as u32;

    let (family, category, generation, size) = name_parts(&name);
    let mut l = BTreeMap::new();
    l.insert(labels::INSTANCE_FAMILY.to_string(), family);
    l.insert(labels::INSTANCE_CATEGORY.to_string(), category);
    if let Some(g) = generation {
        l.insert(labels::INSTANCE_GENERATION.to_string(), g);
    }
    l.insert(labels::INSTANCE_SIZE.to_string(), size);
    l.insert(labels::INSTANCE_CPU.to_string(), vcpus.to_string());
    if let Some(m) = it.processor_info().and_then(|p| p.manufacturer()) {
        l.insert(labels::INSTANCE_CPU_MANUFACTURER.to_string(), lower(m));
    }
    if let Some(s) = it
        .processor_info()
        .and_then(|p| p.sustained_clock_speed_in_ghz())
    {
        l.insert(
            labels::INSTANCE_CPU_SUSTAINED_CLOCK_SPEED_MHZ.to_string(),
            ((s * 1000.0).round() as u64).to_string(),
        );
    }
    l.insert(labels::INSTANCE_MEMORY.to_string(), memory_mib.to_string());
    l.insert(labels::INSTANCE_HYPERVISOR.to_string(), hypervisor.clone());
    l.insert(
        labels::INSTANCE_ENCRYPTION_IN_TRANSIT.to_string(),
        net.and_then(|n| n.encryption_in_transit_supported())
            .unwrap_or(false)
            .to_string(),
    );
    l.insert(labels::ARCH.to_string(), arch.to_string());
    l.insert(labels::OS.to_string(), "linux".to_string());
    if let Some(g) = gpus.first() {
        l.insert(labels::INSTANCE_GPU_NAME.to_string(), g.name.clone());
        l.insert(
            labels::INSTANCE_GPU_MANUFACTURER.to_string(),
            g.manufacturer.clone(),
        );
        l.insert(labels::INSTANCE_GPU_COUNT.to_string(), g.count.to_string());
        l.insert(
            labels::INSTANCE_GPU_MEMORY.to_string(),
            g.memory_mib.to_string(),
        );
    }
    if let Some(a) = accelerators.first() {
        l.insert(
            labels::INSTANCE_ACCELERATOR_NAME.to_string(),
            a.name.clone(),
        );
        l.insert(
            labels::INSTANCE_ACCELERATOR_MANUFACTURER.to_string(),
            a.manufacturer.clone(),
        );
        l.insert(
            labels::INSTANCE_ACCELERATOR_COUNT.to_string(),
            a.count.to_string(),
        );
    }
    if local_nvme_gib > 0 {
        l.insert(
            labels::INSTANCE_LOCAL_NVME.to_string(),
            local_nvme_gib.to_string(),
        );
    }
    if network_bandwidth_mbps > 0 {
        l.insert(
            labels::INSTANCE_NETWORK_BANDWIDTH.to_string(),
            network_bandwidth_mbps.to_string(),
        );
    }
    if ebs_bandwidth_mbps > 0 {
        l.insert(
            labels::INSTANCE_EBS_BANDWIDTH.to_string(),
            ebs_bandwidth_mbps.to_string(),
        );
    }
    if efa_count > 0 {
        l.insert(
            labels::INSTANCE_EFA_COUNT.to_string(),
            efa_count.to_string(),
        );
    }
    let mut t = InstanceType {
        name,
        labels: l.into(),
        vcpus,
        memory_mib,
        arch: arch.to_string(),
        hypervisor,
        bare_metal,
        gpus,
        accelerators,
        local_nvme_gib,
        network_bandwidth_mbps,
        ebs_bandwidth_mbps,
        efa_count,
        max_enis,
        ipv4_per_eni,
        capacity: Resources::zero(),
    };
    let mut cap = Resources {
        cpu_milli: i64::from(vcpus) * 1000,
        memory: (memory_mib as i64) << 20,
        ephemeral_storage: DEFAULT_EPHEMERAL_BYTES,
        pods: i64::from(t.eni_max_pods()),
        extended: BTreeMap::new(),
    };
    for g in &t.gpus {
        let key = match g.manufacturer.as_str() {
            "nvidia" => "nvidia.com/gpu",
            "amd" => "amd.com/gpu",
            _ => continue,
        };
        *cap.extended.entry(key.to_string()).or_default() += i64::from(g.count);
    }
    for a in &t.accelerators {
        if a.manufacturer == "aws" {
            *cap.extended
                .entry("aws.amazon.com/neuron".to_string())
                .or_default() += i64::from(a.count);
        }
    }
    t.capacity = cap;
    Some(t)
}

/// Reads the region's catalog from EC2.
pub async fn discover(
    client: &aws_sdk_ec2::Client,
    region: &str,
    on_demand: &HashMap<String, f64>,
) -> Result<Discovery, Ec2Error> {
    let retry = RetryPolicy::default();
    let mut warnings = Vec::new();

    // Zones (zone ids for topology.k8s.aws/zone-id).
    let az = with_retry(&retry, "DescribeAvailabilityZones", || {
        client.describe_availability_zones().send()
    })
    .await?;
    let mut zones: Vec<Zone> = az
        .availability_zones()
        .iter()
        .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
        .filter_map(|z| {
            Some(Zone {
                name: z.zone_name()?.to_string(),
                id: z.zone_id().unwrap_or("").to_string(),
            })
        })
        .collect();
    zones.sort_by(|a, b| a.name.cmp(&b.name));

    // Types.
    let mut types: Vec<InstanceType> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = with_retry(&retry, "DescribeInstanceTypes", || {
            client
                .describe_instance_types()
                .max_results(100)
                .set_next_token(token.clone())
                .send()
        })
        .await?;
        types.extend(
            page.instance_types()
                .iter()
                .filter_map(instance_type_from_api),
        );
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    types.sort_by(|a, b| a.name.cmp(&b.name));
    types.dedup_by(|a, b| a.name == b.name);
    let type_index: HashMap<String, u32> = types
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i as u32))
        .collect();

    // Which types each zone offers.
    let mut offered: Vec<(u32, u16)> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = with_retry(&retry, "DescribeInstanceTypeOfferings", || {
            client
                .describe_instance_type_offerings()
                .location_type(LocationType::AvailabilityZone)
                .set_next_token(token.clone())
                .send()
        })
        .await?;
        for o in page.instance_type_offerings() {
            let (Some(t), Some(loc)) = (o.instance_type(), o.location()) else {
                continue;
            };
            let (Some(&ti), Some(zi)) = (
                type_index.get(t.as_str()),
                zones.iter().position(|z| z.name == loc),
            ) else {
                continue;
            };
            offered.push((ti, zi as u16));
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    offered.sort_unstable();
    offered.dedup();

    // Latest spot price per type × zone.
    let mut spot: HashMap<(String, String), (i64, f64)> = HashMap::new();
    let mut token: Option<String> = None;
    loop {
        let page = with_retry(&retry, "DescribeSpotPriceHistory", || {
            client
                .describe_spot_price_history()
                .product_descriptions("Linux/UNIX")
                .start_time(aws_sdk_ec2::primitives::DateTime::from_secs(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs() as i64)
                        .unwrap_or(0),
                ))
                .set_next_token(token.clone())
                .send()
        })
        .await?;
        for p in page.spot_price_history() {
            let (Some(t), Some(z), Some(price)) =
                (p.instance_type(), p.availability_zone(), p.spot_price())
            else {
                continue;
            };
            if p.product_description()
                .is_some_and(|d| !d.as_str().starts_with("Linux/UNIX"))
            {
                continue;
            }
            let Ok(price) = price.parse::<f64>() else {
                warnings.push(format!("unparseable spot price `{price}` for {t} in {z}"));
                continue;
            };
            let ts = p.timestamp().map(|t| t.secs()).unwrap_or(0);
            let e = spot
                .entry((t.as_str().to_string(), z.to_string()))
                .or_insert((ts, price));
            if ts > e.0 {
                *e = (ts, price);
            }
        }
        token = page
            .next_token()
            .map(str::to_string)
            .filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    let spot_plausible = spot_prices_plausible(spot.values().map(|(_, p)| *p));
    if !spot.is_empty() && !spot_plausible {
        warnings.push(format!(
            "EC2 returned implausible spot prices (a placeholder such as moto's); spot prices are estimated as {DEFAULT_SPOT_FRACTION} × on-demand"
        ));
    }

    let mut unpriced = Vec::new();
    let mut offerings = Vec::new();
    for (ti, zi) in offered {
        let t = &types[ti as usize];
        let od = on_demand.get(&t.name).copied();
        if od.is_none() && unpriced.last() != Some(&t.name) {
            unpriced.push(t.name.clone());
        }
        offerings.push(Offering {
            type_index: ti,
            zone_index: zi,
            capacity_type: CapacityType::OnDemand,
            price: od,
            price_estimated: false,
            available: true,
        });
        let real = spot_plausible
            .then(|| spot.get(&(t.name.clone(), zones[zi as usize].name.clone())))
            .flatten()
            .map(|(_, p)| *p);
        offerings.push(Offering {
            type_index: ti,
            zone_index: zi,
            capacity_type: CapacityType::Spot,
            price: real.or(od.map(|p| p * DEFAULT_SPOT_FRACTION)),
            price_estimated: real.is_none(),
            available: true,
        });
    }
    unpriced.sort();
    unpriced.dedup();
    if !unpriced.is_empty() {
        let shown: Vec<&str> = unpriced.iter().take(10).map(String::as_str).collect();
        warnings.push(format!(
            "{} instance type(s) offered in {region} have no on-demand price and are excluded unless a cost rule prices them: {}{}",
            unpriced.len(),
            shown.join(", "),
            if unpriced.len() > 10 { ", ..." } else { "" }
        ));
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    Ok(Discovery {
        catalog: Catalog {
            region: region.to_string(),
            zones,
            types,
            offerings,
        },
        unpriced,
        spot_prices_estimated: !spot_plausible || spot.is_empty(),
        warnings,
    })
}

/// Whether a set of spot prices looks real: none below the plausible floor,
/// and not one single value repeated across many offerings.
pub fn spot_prices_plausible(prices: impl Iterator<Item = f64>) -> bool {
    let mut n = 0usize;
    let mut first: Option<f64> = None;
    let mut all_same = true;
    for p in prices {
        if !(p.is_finite() && p >= MIN_PLAUSIBLE_SPOT_PRICE) {
            return false;
        }
        match first {
            None => first = Some(p),
            Some(f) if f != p => all_same = false,
            _ => {}
        }
        n += 1;
    }
    n > 0 && !(all_same && n > 10)
}

/// The controller's catalog: refreshed periodically, last good kept on failure.
pub struct LiveCatalog {
    current: ArcSwap<Catalog>,
    client: aws_sdk_ec2::Client,
    region: String,
    prices: HashMap<String, f64>,
}

impl LiveCatalog {
    /// Discovers once; fails if the first discovery fails (nothing good to keep yet).
    pub async fn start(
        client: aws_sdk_ec2::Client,
        region: &str,
        prices: HashMap<String, f64>,
    ) -> Result<(Arc<LiveCatalog>, Discovery), Ec2Error> {
        let d = discover(&client, region, &prices).await?;
        let live = Arc::new(LiveCatalog {
            current: ArcSwap::from_pointee(d.catalog.clone()),
            client,
            region: region.to_string(),
            prices,
        });
        Ok((live, d))
    }

    /// Starts from a catalog already at hand (the embedded one, or a cached
    /// one) so the controller can plan before the first discovery answers.
    pub fn from_catalog(
        catalog: Catalog,
        client: aws_sdk_ec2::Client,
        region: &str,
        prices: HashMap<String, f64>,
    ) -> Arc<LiveCatalog> {
        Arc::new(LiveCatalog {
            current: ArcSwap::from_pointee(catalog),
            client,
            region: region.to_string(),
            prices,
        })
    }

    /// The current catalog (cheap: an atomic load).
    pub fn get(&self) -> Arc<Catalog> {
        self.current.load_full()
    }

    /// Re-discovers; on failure keeps the current catalog and returns the error.
    pub async fn refresh(&self) -> Result<Discovery, Ec2Error> {
        match discover(&self.client, &self.region, &self.prices).await {
            Ok(d) => {
                self.current.store(Arc::new(d.catalog.clone()));
                Ok(d)
            }
            Err(e) => {
                tracing::debug!(error = %e, "catalog refresh failed; keeping the last good catalog");
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            name_parts("m5d.2xlarge"),
            ("m5d".into(), "m".into(), Some("5".into()), "2xlarge".into())
        );
        assert_eq!(name_parts("inf2.xlarge").1, "inf");
        assert_eq!(name_parts("u-6tb1.metal").1, "u");
    }

    #[test]
    fn placeholder_spot_prices_are_not_prices() {
        assert!(!spot_prices_plausible(std::iter::repeat_n(0.00001, 50)));
        assert!(!spot_prices_plausible(std::iter::repeat_n(0.05, 50)));
        assert!(spot_prices_plausible([0.031, 0.029, 0.04].into_iter()));
        assert!(!spot_prices_plausible(std::iter::empty()));
    }

    #[test]
    fn price_table_errors_name_the_line() {
        let t =
            parse_price_table("p.csv", "instance_type,price\nm5.large,0.096\n").expect("parses");
        assert_eq!(t.get("m5.large"), Some(&0.096));
        let e = parse_price_table("p.csv", "h\nm5.large,0.096\nc5.large,abc\n").expect_err("bad");
        assert!(e.to_string().starts_with("p.csv:3: bad price `abc`"), "{e}");
    }

    #[test]
    fn embedded_price_table_loads() {
        let t = default_price_table().expect("embedded price table");
        assert!(t.len() > 1000);
        assert!(t.get("m5.large").is_some_and(|p| *p > 0.05 && *p < 0.2));
    }
}
