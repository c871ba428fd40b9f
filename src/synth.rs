//! Synthetic inputs for benchmarks: Karpenter's scheduling benchmark
//! (kubernetes-sigs/karpenter, pkg/controllers/provisioning/scheduling/
//! scheduling_benchmark_test.go) rebuilt on our types, so the two can be
//! compared side by side.
//!
//! Not product code: `nodewright bench`, benches/ and the tests use it. It
//! lives at the top of the crate, beside the data layers it builds
//! (catalog, ir, workload) and depending on nothing above them, so the
//! solver's own tests and the CLI's bench command can both reach it
//! without a module importing from a layer above it.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::catalog::{CapacityType, Catalog, InstanceType, Offering, Zone};
use crate::ir::{Pool, Requirements, Resources, labels};
use crate::workload::{LabelSelector, PodAffinityTerm, PodClass, TopologySpread, Workload};

/// Karpenter's fake cloud provider catalog: type i has i+1 vCPU, 2(i+1) GiB and
/// 10(i+1) max pods, on-demand in three zones and spot in two, priced 0.1 per
/// vCPU plus 0.1 per 10^9 bytes of memory.
pub fn karpenter_catalog(types: usize) -> Catalog {
    let zones: Vec<Zone> = (1..=3)
        .map(|i| Zone {
            name: format!("test-zone-{i}"),
            id: format!("tz{i}"),
        })
        .collect();
    let mut ts = Vec::new();
    let mut offerings = Vec::new();
    for i in 0..types {
        let n = (i + 1) as i64;
        let mem = 2 * n * (1 << 30);
        let mut cap = Resources::zero();
        cap.cpu_milli = n * 1000;
        cap.memory = mem;
        cap.pods = 10 * n;
        cap.ephemeral_storage = 20 << 30;
        let mut l = BTreeMap::new();
        l.insert(labels::ARCH.to_string(), "amd64".to_string());
        l.insert(labels::OS.to_string(), "linux".to_string());
        l.insert(labels::INSTANCE_CPU.to_string(), n.to_string());
        ts.push(InstanceType {
            name: format!("fake-it-{i}"),
            labels: l.into(),
            vcpus: n as u32,
            memory_mib: (mem >> 20) as u64,
            arch: "amd64".into(),
            hypervisor: "nitro".into(),
            bare_metal: false,
            gpus: vec![],
            accelerators: vec![],
            local_nvme_gib: 0,
            network_bandwidth_mbps: 0,
            ebs_bandwidth_mbps: 0,
            efa_count: 0,
            max_enis: 0,
            ipv4_per_eni: 0,
            capacity: cap,
        });
        let price = 0.1 * n as f64 + 0.1 * mem as f64 / 1e9;
        for z in 0..3u16 {
            offerings.push(Offering {
                type_index: i as u32,
                zone_index: z,
                capacity_type: CapacityType::OnDemand,
                price: Some(price),
                price_estimated: false,
                available: true,
            });
        }
        for z in 0..2u16 {
            offerings.push(Offering {
                type_index: i as u32,
                zone_index: z,
                capacity_type: CapacityType::Spot,
                price: Some(price),
                price_estimated: false,
                available: true,
            });
        }
    }
    Catalog {
        region: "test-region".into(),
        zones,
        types: ts,
        offerings,
    }
}

/// A pool with no requirements beyond the defaults (Karpenter's `test.NodePool()`).
pub fn default_pool(name: &str) -> Pool {
    Pool {
        name: name.into(),
        weight: 0,
        requirement_terms: vec![],
        requirements: Requirements::new(),
        limits: BTreeMap::new(),
        labels: BTreeMap::new(),
        taints: vec![],
        startup_taints: vec![],
        tags: BTreeMap::new(),
        node_class: "default".into(),
        kubelet: Default::default(),
        disruption: Default::default(),
        scripts: vec![],
        origin: None,
    }
}

fn sel(k: &str, v: &str) -> LabelSelector {
    let mut m = BTreeMap::new();
    m.insert(k.to_string(), v.to_string());
    LabelSelector {
        match_labels: m,
        match_expressions: vec![],
    }
}

/// Karpenter's "diverse" pods: equal shares of plain pods, zone spread,
/// hostname spread, hostname and zone pod affinity, and hostname
/// anti-affinity (the remainder plain), with CPU 100m–1500m and memory
/// 100Mi–4Gi drawn from a seeded generator. Identical pods share a class.
pub fn diverse_workload(count: usize, seed: u64) -> Workload {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    const VALUES: [&str; 7] = ["a", "b", "c", "d", "e", "f", "g"];
    const CPU: [i64; 5] = [100, 250, 500, 1000, 1500];
    const MEM: [i64; 6] = [100, 256, 512, 1024, 2048, 4096];
    let per = count / 6;
    let kinds: Vec<usize> = (0..6)
        .flat_map(|k| std::iter::repeat_n(k, per))
        .chain(std::iter::repeat_n(0, count - per * 6))
        .collect();
    let mut classes: BTreeMap<String, PodClass> = BTreeMap::new();
    for (i, kind) in kinds.into_iter().enumerate() {
        let pick = |rng: &mut ChaCha8Rng| VALUES[rng.random_range(0..VALUES.len())];
        let (labels_, spread, aff): (
            BTreeMap<String, String>,
            Vec<TopologySpread>,
            Vec<PodAffinityTerm>,
        ) = match kind {
            0 => (sel("my-label", pick(&mut rng)).match_labels, vec![], vec![]),
            1 | 2 => {
                let l = sel("my-label", pick(&mut rng)).match_labels;
                let key = if kind == 1 {
                    labels::ZONE
                } else {
                    labels::HOSTNAME
                };
                let s = TopologySpread {
                    max_skew: 1,
                    topology_key: key.into(),
                    hard: true,
                    min_domains: None,
                    selector: sel("my-label", pick(&mut rng)),
                    honor_node_affinity: true,
                    honor_node_taints: false,
                };
                (l, vec![s], vec![])
            }
            3 | 4 => {
                let l = sel("my-affininity", pick(&mut rng)).match_labels;
                let key = if kind == 3 {
                    labels::HOSTNAME
                } else {
                    labels::ZONE
                };
                let a = PodAffinityTerm {
                    anti: false,
                    weight: None,
                    topology_key: key.into(),
                    selector: sel("my-affininity", pick(&mut rng)),
                    namespaces: vec![],
                    all_namespaces: false,
                };
                (l, vec![], vec![a])
            }
            _ => {
                let l = sel("app", "nginx").match_labels;
                let a = PodAffinityTerm {
                    anti: true,
                    weight: None,
                    topology_key: labels::HOSTNAME.into(),
                    selector: sel("app", "nginx"),
                    namespaces: vec![],
                    all_namespaces: false,
                };
                (l, vec![], vec![a])
            }
        };
        let cpu = CPU[rng.random_range(0..CPU.len())];
        let mem = MEM[rng.random_range(0..MEM.len())] << 20;
        let key = format!("{kind}|{labels_:?}|{spread:?}|{aff:?}|{cpu}|{mem}");
        let mut req = Resources::zero();
        req.cpu_milli = cpu;
        req.memory = mem;
        req.pods = 1;
        let id = format!("class-{}", classes.len());
        let class = classes.entry(key).or_insert_with(|| PodClass {
            labels: labels_.clone(),
            topology_spread: spread,
            pod_affinity: aff,
            ..PodClass::plain(id, "default", vec![], req)
        });
        class.pod_names.push(format!("pod-{i}"));
    }
    Workload {
        classes: classes.into_values().collect(),
        daemonsets: vec![],
        nodes: vec![],
    }
}

/// A realistic mixed workload for the real-catalog benchmark: web and API
/// tiers (the API spread over zones), memory-heavy caches kept apart by
/// hostname anti-affinity, and CPU-heavy batch pods.
pub fn realistic_workload() -> Workload {
    let mk = |id: &str, n: usize, cpu: i64, mem_mi: i64| -> PodClass {
        let mut req = Resources::zero();
        req.cpu_milli = cpu;
        req.memory = mem_mi << 20;
        req.pods = 1;
        PodClass {
            labels: sel("app", id).match_labels,
            ..PodClass::plain(
                id,
                "default",
                (0..n).map(|i| format!("{id}-{i}")).collect(),
                req,
            )
        }
    };
    let web = mk("web", 60, 1000, 2048);
    let mut api = mk("api", 120, 500, 1024);
    api.topology_spread.push(TopologySpread {
        max_skew: 1,
        topology_key: labels::ZONE.into(),
        hard: true,
        min_domains: None,
        selector: sel("app", "api"),
        honor_node_affinity: true,
        honor_node_taints: false,
    });
    let mut cache = mk("cache", 10, 2000, 12288);
    cache.pod_affinity.push(PodAffinityTerm {
        anti: true,
        weight: None,
        topology_key: labels::HOSTNAME.into(),
        selector: sel("app", "cache"),
        namespaces: vec![],
        all_namespaces: false,
    });
    let batch = mk("batch", 40, 4000, 8192);
    Workload {
        classes: vec![web, api, cache, batch],
        daemonsets: vec![],
        nodes: vec![],
    }
}
