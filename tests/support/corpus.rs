//! A proptest generator of small, valid scheduling problems: a policy (1–3
//! pools drawn from templates) and a workload (1–6 workloads, 1–20 pods) as
//! real Kubernetes YAML, for the kube-scheduler oracle (`tests/oracle.rs`) and
//! the generator's own test (`tests/corpus.rs`).
//!
//! Why generate text, not IR: the oracle creates these very objects in a real
//! kube-apiserver, and nodewright reads them through its real loaders, so both
//! judges see the same input. Every object is one the API server accepts
//! (DNS-1123 names, valid labels, the right apiVersions), and every case is one
//! nodewright accepts without an error.
//!
//! Shape of the strategy: a [`Spec`] of small integers and enums (so proptest
//! shrinks toward fewer pools, fewer workloads, fewer constraints and the
//! first template of each choice), rendered to text by a pure function.
//! Node-side values (zones, families, instance types, ...) are drawn from the
//! lists of the pool a workload targets, so most pods stay schedulable; a
//! workload aimed at a tainted pool tolerates its taint.
//!
//! Features covered: cpu/memory requests, ephemeral-storage, `nvidia.com/gpu`
//! (only with the GPU pool), an extended resource given by a policy
//! `capacity` rule (NodeOverlay), ephemeral storage past the default root
//! volume (only on the pool with a 100Gi root), nodeSelector, required/preferred node affinity
//! (In, NotIn, Exists, Gt, ORed terms), required/preferred pod affinity and
//! anti-affinity and topology spread on hostname, zone, zone-id,
//! instance-type, capacity type and a pool's own label (`maxSkew` 1–2,
//! DoNotSchedule/ScheduleAnyway, `minDomains`, `matchLabelKeys`,
//! `nodeAffinityPolicy: Ignore`), tolerations (pools tainted NoSchedule and
//! PreferNoSchedule), host ports 80/8080 over TCP/UDP, PVCs on a
//! WaitForFirstConsumer StorageClass (optionally zone-restricted), PVs
//! pre-bound in one zone, StatefulSet claim templates, DaemonSets, Jobs, bare
//! Pods and PriorityClasses.
#![allow(
    dead_code,
    reason = "each test binary includes this module and uses part of it"
)]

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use serde_json::{Value, json};

/// One generated case: the policy text and the workload YAML text, given to
/// nodewright (and the oracle) exactly as a user would write them.
#[derive(Debug, Clone)]
pub struct Case {
    /// Policy language text (one file).
    pub policy: String,
    /// Kubernetes YAML, `---`-separated documents.
    pub workload: String,
}

/// The strategy for [`Case`]s: deterministic under a seeded runner, shrinking
/// toward fewer and simpler pools and workloads.
pub fn case_strategy() -> impl Strategy<Value = Case> {
    spec_strategy().prop_map(|s| render(&s))
}

/// A runner for the corpus: `PROPTEST_CASES` cases (else `default_cases`),
/// from the fixed seed `PROPTEST_RNG_SEED` (else 0), so CI draws the same
/// corpus on every run and a long run on another seed is one variable away.
/// No regression file is written: a failing case is printed whole.
pub fn runner(default_cases: u32) -> TestRunner {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let config = Config {
        cases: env("PROPTEST_CASES").map_or(default_cases, |n| n.min(u64::from(u32::MAX)) as u32),
        rng_seed: RngSeed::Fixed(env("PROPTEST_RNG_SEED").unwrap_or(0)),
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new(config)
}

/// The features a case exercises, read back from its text (the YAML parsed
/// into values, the policy by its lines): for coverage counts.
/// `tests/corpus.rs` asserts that a default run hits every one of [`FEATURES`].
pub fn features(case: &Case) -> BTreeSet<&'static str> {
    let mut f = BTreeSet::new();
    let p = &case.policy;
    let pool_lines = p.lines().filter(|l| l.starts_with("pool ")).count();
    let mut add = |name: &'static str, on: bool| {
        if on {
            f.insert(name);
        }
    };
    add("pools:2+", pool_lines >= 2);
    add("pools:3", pool_lines >= 3);
    add("pool:taint-noschedule", p.contains(": NoSchedule"));
    add(
        "pool:taint-prefernoschedule",
        p.contains(": PreferNoSchedule"),
    );
    add("pool:label", p.contains("\n  label "));
    add("pool:limit", p.contains("\n  limit cpu "));
    add("pool:weight", p.contains("\n  weight "));
    add("pool:gpu", p.contains("pool gpu "));
    add("pool:zonal", p.contains("pool zonal "));
    add("pool:root-volume", p.contains("    root\n"));
    add("policy:capacity-overlay", p.contains("\ncapacity "));

    let docs: Vec<Value> = case
        .workload
        .split("\n---\n")
        .filter_map(|d| serde_yaml_ng::from_str(d).ok())
        .collect();
    let mut host_ports: Vec<(i64, String, i64)> = Vec::new();
    for d in &docs {
        let kind = d["kind"].as_str().unwrap_or_default();
        let replicas = d["spec"]["replicas"]
            .as_i64()
            .or_else(|| d["spec"]["parallelism"].as_i64())
            .unwrap_or(1);
        match kind {
            "Deployment" => add("kind:Deployment", true),
            "StatefulSet" => add("kind:StatefulSet", true),
            "Job" => add("kind:Job", true),
            "Pod" => add("kind:Pod", true),
            "DaemonSet" => add("kind:DaemonSet", true),
            "PriorityClass" => add("kind:PriorityClass", true),
            "StorageClass" => {
                add("kind:StorageClass", true);
                add(
                    "storageclass:allowedTopologies",
                    !d["allowedTopologies"].is_null(),
                );
            }
            "PersistentVolumeClaim" => add("kind:PersistentVolumeClaim", true),
            "PersistentVolume" => add("kind:PersistentVolume", true),
            _ => {}
        }
        add(
            "volumeClaimTemplates",
            !d["spec"]["volumeClaimTemplates"].is_null(),
        );
        let spec = if kind == "Pod" {
            &d["spec"]
        } else {
            &d["spec"]["template"]["spec"]
        };
        if spec.is_null() || kind == "PersistentVolume" || kind == "PersistentVolumeClaim" {
            continue;
        }
        for c in spec["containers"].as_array().into_iter().flatten() {
            let req = &c["resources"]["requests"];
            add(
                "request:ephemeral-storage",
                !req["ephemeral-storage"].is_null(),
            );
            add("request:gpu", !req["nvidia.com/gpu"].is_null());
            add(
                "request:extended-resource",
                !req["example.com/dongle"].is_null(),
            );
            add(
                "request:ephemeral-past-default-root",
                req["ephemeral-storage"].as_str() == Some("30Gi"),
            );
            for port in c["ports"].as_array().into_iter().flatten() {
                if let Some(hp) = port["hostPort"].as_i64() {
                    let proto = port["protocol"].as_str().unwrap_or("TCP").to_string();
                    add("hostPort:UDP", proto == "UDP");
                    host_ports.push((hp, proto, replicas));
                }
            }
        }
        add("nodeSelector", !spec["nodeSelector"].is_null());
        add("tolerations", !spec["tolerations"].is_null());
        add("priorityClassName", !spec["priorityClassName"].is_null());
        let aff = &spec["affinity"];
        let na = &aff["nodeAffinity"];
        let required = &na["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
        add("nodeAffinity:required", !required.is_null());
        add(
            "nodeAffinity:ORed-terms",
            required.as_array().is_some_and(|t| t.len() > 1),
        );
        add(
            "nodeAffinity:preferred",
            !na["preferredDuringSchedulingIgnoredDuringExecution"].is_null(),
        );
        for t in required.as_array().into_iter().flatten() {
            for e in t["matchExpressions"].as_array().into_iter().flatten() {
                match e["operator"].as_str().unwrap_or_default() {
                    "NotIn" => add("nodeAffinity:NotIn", true),
                    "Exists" => add("nodeAffinity:Exists", true),
                    "Gt" | "Lt" => add("nodeAffinity:Gt/Lt", true),
                    _ => {}
                }
            }
        }
        let mut topo_keys: Vec<&str> = Vec::new();
        for (field, name) in [
            ("podAffinity", "podAffinity"),
            ("podAntiAffinity", "podAntiAffinity"),
        ] {
            let a = &aff[field];
            if a.is_null() {
                continue;
            }
            add(name, true);
            for t in a["requiredDuringSchedulingIgnoredDuringExecution"]
                .as_array()
                .into_iter()
                .flatten()
            {
                add("podAffinity:required", true);
                topo_keys.extend(t["topologyKey"].as_str());
            }
            for t in a["preferredDuringSchedulingIgnoredDuringExecution"]
                .as_array()
                .into_iter()
                .flatten()
            {
                add("podAffinity:preferred", true);
                topo_keys.extend(t["podAffinityTerm"]["topologyKey"].as_str());
            }
        }
        for s in spec["topologySpreadConstraints"]
            .as_array()
            .into_iter()
            .flatten()
        {
            add("topologySpread", true);
            match s["whenUnsatisfiable"].as_str() {
                Some("DoNotSchedule") => add("spread:DoNotSchedule", true),
                Some("ScheduleAnyway") => add("spread:ScheduleAnyway", true),
                _ => {}
            }
            add("spread:maxSkew2", s["maxSkew"].as_i64() == Some(2));
            add("spread:minDomains", !s["minDomains"].is_null());
            add("spread:matchLabelKeys", !s["matchLabelKeys"].is_null());
            add(
                "spread:nodeAffinityPolicy",
                !s["nodeAffinityPolicy"].is_null(),
            );
            topo_keys.extend(s["topologyKey"].as_str());
        }
        for k in topo_keys {
            add(
                match k {
                    "kubernetes.io/hostname" => "topologyKey:hostname",
                    "topology.kubernetes.io/zone" => "topologyKey:zone",
                    "topology.k8s.aws/zone-id" => "topologyKey:zone-id",
                    "node.kubernetes.io/instance-type" => "topologyKey:instance-type",
                    "karpenter.sh/capacity-type" => "topologyKey:capacity-type",
                    _ => "topologyKey:pool-label",
                },
                true,
            );
        }
    }
    add("hostPort", !host_ports.is_empty());
    let shared = host_ports.iter().any(|(_, _, r)| *r > 1)
        || host_ports
            .iter()
            .enumerate()
            .any(|(i, a)| host_ports[i + 1..].iter().any(|b| a.0 == b.0 && a.1 == b.1));
    add("hostPort:shared", shared);
    f
}

/// Every feature name [`features`] can report.
pub const FEATURES: &[&str] = &[
    "pools:2+",
    "pools:3",
    "pool:taint-noschedule",
    "pool:taint-prefernoschedule",
    "pool:label",
    "pool:limit",
    "pool:weight",
    "pool:gpu",
    "pool:zonal",
    "pool:root-volume",
    "policy:capacity-overlay",
    "kind:Deployment",
    "kind:StatefulSet",
    "kind:Job",
    "kind:Pod",
    "kind:DaemonSet",
    "kind:PriorityClass",
    "kind:StorageClass",
    "kind:PersistentVolumeClaim",
    "kind:PersistentVolume",
    "volumeClaimTemplates",
    "storageclass:allowedTopologies",
    "request:ephemeral-storage",
    "request:gpu",
    "request:extended-resource",
    "request:ephemeral-past-default-root",
    "nodeSelector",
    "nodeAffinity:required",
    "nodeAffinity:ORed-terms",
    "nodeAffinity:preferred",
    "nodeAffinity:NotIn",
    "nodeAffinity:Exists",
    "nodeAffinity:Gt/Lt",
    "podAffinity",
    "podAntiAffinity",
    "podAffinity:required",
    "podAffinity:preferred",
    "topologySpread",
    "spread:DoNotSchedule",
    "spread:ScheduleAnyway",
    "spread:maxSkew2",
    "spread:minDomains",
    "spread:matchLabelKeys",
    "spread:nodeAffinityPolicy",
    "topologyKey:hostname",
    "topologyKey:zone",
    "topologyKey:zone-id",
    "topologyKey:instance-type",
    "topologyKey:capacity-type",
    "topologyKey:pool-label",
    "tolerations",
    "hostPort",
    "hostPort:UDP",
    "hostPort:shared",
    "priorityClassName",
];

// ---------------------------------------------------------------------------
// The spec: what proptest generates and shrinks.

/// Pool templates, simplest first (shrinking moves toward `General`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PoolKind {
    /// Spot and on-demand, amd64 and arm64, c/m/r from generation 5: takes anything.
    General,
    /// On-demand amd64, three families.
    OnDemandAmd64,
    /// Spot arm64 (Graviton); optionally tainted PreferNoSchedule.
    SpotArm64,
    /// Tainted `dedicated=batch:NoSchedule`, labelled `team=batch`, a 100Gi root volume.
    Batch,
    /// g4dn, tainted `nvidia.com/gpu=true:NoSchedule`, labelled `accel=nvidia`, a GPU limit.
    Gpu,
    /// Two zones only, labelled `nodegroup=zonal`.
    Zonal,
}

const POOL_KINDS: [PoolKind; 6] = [
    PoolKind::General,
    PoolKind::OnDemandAmd64,
    PoolKind::SpotArm64,
    PoolKind::Batch,
    PoolKind::Gpu,
    PoolKind::Zonal,
];

#[derive(Debug, Clone)]
struct PoolSpec {
    kind: PoolKind,
    /// Index into [0, 10, 50].
    weight: u8,
    /// A `limit cpu` on the pool (64 or 16 cores).
    cpu_limit: Option<u8>,
    /// SpotArm64: tainted PreferNoSchedule.
    soft_taint: bool,
}

/// The node labels a pod may select, resolved against its target pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeKey {
    Arch,
    CapacityType,
    Category,
    Family,
    Zone,
    ZoneId,
    InstanceType,
    PoolLabel,
}

const NODE_KEYS: [NodeKey; 8] = [
    NodeKey::Arch,
    NodeKey::CapacityType,
    NodeKey::Category,
    NodeKey::Family,
    NodeKey::Zone,
    NodeKey::ZoneId,
    NodeKey::InstanceType,
    NodeKey::PoolLabel,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Deployment,
    StatefulSet,
    Job,
    Pod,
    DaemonSet,
}

#[derive(Debug, Clone)]
enum RequiredNode {
    /// `key In [v]`.
    In(NodeKey, u8),
    /// `key In [v, w]`.
    In2(NodeKey, u8),
    /// `key NotIn [v]`, v drawn from another list than the target's when possible.
    NotIn(NodeKey, u8),
    /// `key Exists` (the pool's label; arch when the pool has none).
    Exists,
    /// `instance-cpu Gt 1` or `Lt 17`.
    CpuBound(bool),
    /// Two terms, ORed.
    Or(NodeKey, u8, NodeKey, u8),
}

#[derive(Debug, Clone)]
struct NodeSide {
    selector: Option<(NodeKey, u8)>,
    required: Option<RequiredNode>,
    preferred: Option<(NodeKey, u8, u8)>,
}

/// The topology keys of spreads and pod (anti-)affinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TopoKey {
    Hostname,
    Zone,
    ZoneId,
    InstanceType,
    CapacityType,
    /// The label key of the first labelled pool of the policy (`team`,
    /// `accel`, `nodegroup`); hostname when no pool has a label.
    PoolLabel,
}

const TOPO_KEYS: [TopoKey; 6] = [
    TopoKey::Hostname,
    TopoKey::Zone,
    TopoKey::ZoneId,
    TopoKey::InstanceType,
    TopoKey::CapacityType,
    TopoKey::PoolLabel,
];

#[derive(Debug, Clone)]
enum PodAff {
    /// Required anti-affinity to its own pods.
    AntiSelf(TopoKey),
    /// Preferred anti-affinity to its own pods.
    PreferAntiSelf(TopoKey, u8),
    /// Required affinity to its own pods (all in one domain).
    WithSelf(TopoKey),
    /// Required affinity to another workload's pods (`tier` label).
    WithTier(TopoKey, bool),
    /// Preferred affinity to another workload's pods.
    PreferTier(TopoKey, bool, u8),
    /// Required anti-affinity to another tier.
    AntiTier(TopoKey, bool),
}

#[derive(Debug, Clone)]
struct SpreadSpec {
    key: TopoKey,
    max_skew: u8,
    hard: bool,
    min_domains: Option<u8>,
    match_label_keys: bool,
    ignore_node_affinity: bool,
}

#[derive(Debug, Clone)]
enum TolSpec {
    /// Tolerate the target pool's taint (Equal / Exists / Exists with effect).
    Target(u8),
    /// An extra toleration of a taint no pool has (NoExecute with seconds).
    Unrelated,
}

#[derive(Debug, Clone)]
struct VolumeSpec {
    /// A PV bound to the claim, in one zone of the target pool (index).
    prebound: Option<u8>,
}

#[derive(Debug, Clone)]
struct WorkloadSpec {
    kind: Kind,
    replicas: u8,
    cpu: u8,
    mem: u8,
    /// Index into the ephemeral-storage sizes; the last (30Gi) only on the
    /// Batch pool, whose 100Gi root volume has room for it.
    ephemeral: Option<u8>,
    gpu: bool,
    /// Requests `example.com/dongle`, an extended resource only a policy
    /// `capacity` rule (NodeOverlay) gives m5 and m6g nodes.
    dongle: bool,
    /// Index into the policy's pools (modulo).
    target: u8,
    /// `tier` label: frontend / backend.
    tier: bool,
    node: NodeSide,
    pod_affinity: Option<PodAff>,
    spread: Option<SpreadSpec>,
    tolerations: Vec<TolSpec>,
    host_port: Option<(bool, bool)>,
    priority: Option<bool>,
    volume: Option<VolumeSpec>,
}

#[derive(Debug, Clone)]
struct Spec {
    pools: Vec<PoolSpec>,
    workloads: Vec<WorkloadSpec>,
    /// The StorageClass lists allowedTopologies (three zones).
    sc_topologies: bool,
    /// DaemonSet pods carry a `tier` label too, so the other workloads'
    /// `tier` selectors (pod affinity, anti-affinity) count them, as
    /// kube-scheduler does.
    ds_tier: bool,
}

/// How often DaemonSet pods carry a `tier` label (see `Spec::ds_tier`). The
/// plan does not count DaemonSet pods in pod (anti-)affinity today
/// (tests/oracle/cases/daemonset-pods-in-pod-anti-affinity); 0.0 keeps them
/// out of every selector until that is fixed.
const DS_TIER_WEIGHT: f64 = 0.3;

fn pool_strategy() -> impl Strategy<Value = PoolSpec> {
    (
        0u8..3,
        prop::option::weighted(0.3, 0u8..2),
        prop::bool::weighted(0.4),
    )
        .prop_map(|(weight, cpu_limit, soft_taint)| PoolSpec {
            kind: PoolKind::General,
            weight,
            cpu_limit,
            soft_taint,
        })
}

fn pools_strategy() -> impl Strategy<Value = Vec<PoolSpec>> {
    (
        prop::sample::subsequence(POOL_KINDS.to_vec(), 1..=3),
        prop::collection::vec(pool_strategy(), 3),
    )
        .prop_map(|(kinds, specs)| {
            kinds
                .into_iter()
                .zip(specs)
                .map(|(kind, s)| PoolSpec { kind, ..s })
                .collect()
        })
}

fn node_key() -> impl Strategy<Value = NodeKey> {
    prop::sample::select(NODE_KEYS.to_vec())
}

fn topo_key() -> impl Strategy<Value = TopoKey> {
    prop::sample::select(TOPO_KEYS.to_vec())
}

fn node_side() -> impl Strategy<Value = NodeSide> {
    let required = prop_oneof![
        (node_key(), any::<u8>()).prop_map(|(k, v)| RequiredNode::In(k, v)),
        (node_key(), any::<u8>()).prop_map(|(k, v)| RequiredNode::In2(k, v)),
        (node_key(), any::<u8>()).prop_map(|(k, v)| RequiredNode::NotIn(k, v)),
        Just(RequiredNode::Exists),
        any::<bool>().prop_map(RequiredNode::CpuBound),
        (node_key(), any::<u8>(), node_key(), any::<u8>())
            .prop_map(|(a, x, b, y)| RequiredNode::Or(a, x, b, y)),
    ];
    (
        prop::option::weighted(0.25, (node_key(), any::<u8>())),
        prop::option::weighted(0.25, required),
        prop::option::weighted(0.2, (node_key(), any::<u8>(), 1u8..=100)),
    )
        .prop_map(|(selector, required, preferred)| NodeSide {
            selector,
            required,
            preferred,
        })
}

fn pod_aff() -> impl Strategy<Value = PodAff> {
    prop_oneof![
        topo_key().prop_map(PodAff::AntiSelf),
        (topo_key(), 1u8..=100).prop_map(|(k, w)| PodAff::PreferAntiSelf(k, w)),
        topo_key().prop_map(PodAff::WithSelf),
        (topo_key(), any::<bool>()).prop_map(|(k, t)| PodAff::WithTier(k, t)),
        (topo_key(), any::<bool>(), 1u8..=100).prop_map(|(k, t, w)| PodAff::PreferTier(k, t, w)),
        (topo_key(), any::<bool>()).prop_map(|(k, t)| PodAff::AntiTier(k, t)),
    ]
}

fn spread() -> impl Strategy<Value = SpreadSpec> {
    (
        topo_key(),
        1u8..=2,
        prop::bool::weighted(0.6),
        prop::option::weighted(0.25, 2u8..=3),
        any::<bool>(),
        prop::bool::weighted(0.15),
    )
        .prop_map(
            |(key, max_skew, hard, min_domains, match_label_keys, ignore_node_affinity)| {
                SpreadSpec {
                    key,
                    max_skew,
                    hard,
                    // minDomains is only valid with DoNotSchedule (API validation).
                    min_domains: min_domains.filter(|_| hard),
                    match_label_keys,
                    ignore_node_affinity,
                }
            },
        )
}

fn toleration() -> impl Strategy<Value = TolSpec> {
    prop_oneof![
        4 => (0u8..3).prop_map(TolSpec::Target),
        1 => Just(TolSpec::Unrelated),
    ]
}

fn workload_strategy() -> impl Strategy<Value = WorkloadSpec> {
    let kind = prop_oneof![
        5 => Just(Kind::Deployment),
        2 => Just(Kind::StatefulSet),
        2 => Just(Kind::Job),
        2 => Just(Kind::Pod),
        1 => Just(Kind::DaemonSet),
    ];
    (
        (
            kind,
            1u8..=4,
            0u8..5,
            0u8..6,
            prop::option::weighted(0.2, 0u8..4),
            prop::bool::weighted(0.5),
            any::<u8>(),
            any::<bool>(),
        ),
        (
            node_side(),
            prop::option::weighted(0.3, pod_aff()),
            prop::option::weighted(0.3, spread()),
            prop::collection::vec(toleration(), 0..=1),
            prop::option::weighted(0.2, (any::<bool>(), prop::bool::weighted(0.3))),
            prop::option::weighted(0.2, any::<bool>()),
            prop::option::weighted(
                0.3,
                prop::option::weighted(0.4, any::<u8>())
                    .prop_map(|prebound| VolumeSpec { prebound }),
            ),
            prop::bool::weighted(0.05),
        ),
    )
        .prop_map(
            |(
                (kind, replicas, cpu, mem, ephemeral, gpu, target, tier),
                (node, pod_affinity, spread, tolerations, host_port, priority, volume, dongle),
            )| WorkloadSpec {
                kind,
                replicas: if matches!(kind, Kind::Pod | Kind::DaemonSet) {
                    1
                } else {
                    replicas
                },
                cpu,
                mem,
                ephemeral,
                gpu,
                dongle: dongle && kind != Kind::DaemonSet,
                target,
                tier,
                node,
                pod_affinity,
                spread,
                tolerations,
                host_port,
                priority,
                volume,
            },
        )
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        pools_strategy(),
        prop::collection::vec(workload_strategy(), 1..=6),
        (any::<bool>(), prop::bool::weighted(DS_TIER_WEIGHT)),
    )
        .prop_map(|(pools, workloads, (sc_topologies, ds_tier))| Spec {
            pools,
            workloads,
            sc_topologies,
            ds_tier,
        })
        .prop_filter("1 to 20 pods", |s| {
            let pods: usize = s
                .workloads
                .iter()
                .filter(|w| w.kind != Kind::DaemonSet)
                .map(|w| usize::from(w.replicas))
                .sum();
            (1..=20).contains(&pods)
        })
}

// ---------------------------------------------------------------------------
// Rendering.

const ZONES: [(&str, &str); 5] = [
    ("us-east-1a", "use1-az6"),
    ("us-east-1b", "use1-az1"),
    ("us-east-1c", "use1-az2"),
    ("us-east-1d", "use1-az4"),
    ("us-east-1f", "use1-az5"),
];

impl PoolKind {
    fn name(self) -> &'static str {
        match self {
            PoolKind::General => "general",
            PoolKind::OnDemandAmd64 => "od-amd64",
            PoolKind::SpotArm64 => "spot-arm",
            PoolKind::Batch => "batch",
            PoolKind::Gpu => "gpu",
            PoolKind::Zonal => "zonal",
        }
    }

    /// The `require` lines of the pool.
    fn requires(self) -> &'static [&'static str] {
        match self {
            PoolKind::General => &[
                "karpenter.sh/capacity-type in [spot, on-demand]",
                "kubernetes.io/arch in [amd64, arm64]",
                "karpenter.k8s.aws/instance-category in [c, m, r]",
                "karpenter.k8s.aws/instance-generation > 4",
            ],
            PoolKind::OnDemandAmd64 => &[
                "karpenter.sh/capacity-type in [on-demand]",
                "kubernetes.io/arch in [amd64]",
                "karpenter.k8s.aws/instance-family in [m5, c5, m6i]",
            ],
            PoolKind::SpotArm64 => &[
                "karpenter.sh/capacity-type in [spot]",
                "kubernetes.io/arch in [arm64]",
                "karpenter.k8s.aws/instance-family in [m6g, c6g, r6g]",
            ],
            PoolKind::Batch => &[
                "karpenter.sh/capacity-type in [spot, on-demand]",
                "kubernetes.io/arch in [amd64]",
                "karpenter.k8s.aws/instance-family in [c5, c6i, m5]",
            ],
            PoolKind::Gpu => &[
                "karpenter.sh/capacity-type in [on-demand]",
                "karpenter.k8s.aws/instance-family in [g4dn]",
                "karpenter.k8s.aws/instance-size in [xlarge, 2xlarge]",
            ],
            PoolKind::Zonal => &[
                "karpenter.sh/capacity-type in [on-demand, spot]",
                "topology.kubernetes.io/zone in [us-east-1a, us-east-1b]",
                "karpenter.k8s.aws/instance-family in [m5, m6g]",
            ],
        }
    }

    /// The pool's own node label.
    fn label(self) -> Option<(&'static str, &'static str)> {
        match self {
            PoolKind::Batch => Some(("team", "batch")),
            PoolKind::Gpu => Some(("accel", "nvidia")),
            PoolKind::Zonal => Some(("nodegroup", "zonal")),
            _ => None,
        }
    }

    /// The pool's NoSchedule taint (key, value).
    fn taint(self) -> Option<(&'static str, &'static str)> {
        match self {
            PoolKind::Batch => Some(("dedicated", "batch")),
            PoolKind::Gpu => Some(("nvidia.com/gpu", "true")),
            _ => None,
        }
    }

    /// Values of `key` that nodes of this pool carry (a sample of them).
    fn values(self, key: NodeKey) -> Vec<&'static str> {
        use NodeKey as K;
        use PoolKind as P;
        let zones: Vec<&str> = if self == P::Zonal {
            ZONES[..2].iter().map(|z| z.0).collect()
        } else {
            ZONES.iter().map(|z| z.0).collect()
        };
        match key {
            K::Arch => match self {
                P::General | P::Zonal => vec!["amd64", "arm64"],
                P::SpotArm64 => vec!["arm64"],
                _ => vec!["amd64"],
            },
            K::CapacityType => match self {
                P::General | P::Batch | P::Zonal => vec!["spot", "on-demand"],
                P::SpotArm64 => vec!["spot"],
                _ => vec!["on-demand"],
            },
            K::Category => match self {
                P::General => vec!["m", "c", "r"],
                P::OnDemandAmd64 | P::Batch => vec!["m", "c"],
                P::SpotArm64 => vec!["m", "c", "r"],
                P::Gpu => vec!["g"],
                P::Zonal => vec!["m"],
            },
            K::Family => match self {
                P::General => vec!["m5", "c6i", "r6g", "m6g", "c5"],
                P::OnDemandAmd64 => vec!["m5", "c5", "m6i"],
                P::SpotArm64 => vec!["m6g", "c6g", "r6g"],
                P::Batch => vec!["c5", "c6i", "m5"],
                P::Gpu => vec!["g4dn"],
                P::Zonal => vec!["m5", "m6g"],
            },
            K::Zone => zones,
            K::ZoneId => ZONES
                .iter()
                .filter(|z| self != P::Zonal || z.0 <= "us-east-1b")
                .map(|z| z.1)
                .collect(),
            K::InstanceType => match self {
                P::General => vec!["m5.large", "c6i.xlarge", "m6g.large", "r6g.large"],
                P::OnDemandAmd64 => vec!["m5.large", "c5.xlarge", "m6i.large"],
                P::SpotArm64 => vec!["m6g.large", "c6g.xlarge", "r6g.large"],
                P::Batch => vec!["c5.xlarge", "m5.xlarge", "c6i.large"],
                P::Gpu => vec!["g4dn.xlarge", "g4dn.2xlarge"],
                P::Zonal => vec!["m5.large", "m6g.xlarge"],
            },
            K::PoolLabel => self.label().map(|l| vec![l.1]).unwrap_or_default(),
        }
    }
}

impl NodeKey {
    fn label(self, pool: PoolKind) -> &'static str {
        match self {
            NodeKey::Arch => "kubernetes.io/arch",
            NodeKey::CapacityType => "karpenter.sh/capacity-type",
            NodeKey::Category => "karpenter.k8s.aws/instance-category",
            NodeKey::Family => "karpenter.k8s.aws/instance-family",
            NodeKey::Zone => "topology.kubernetes.io/zone",
            NodeKey::ZoneId => "topology.k8s.aws/zone-id",
            NodeKey::InstanceType => "node.kubernetes.io/instance-type",
            NodeKey::PoolLabel => pool.label().map_or("kubernetes.io/arch", |l| l.0),
        }
    }
}

/// `(label key, value)` for `key` on `pool`, the value picked by `idx`.
fn pick(pool: PoolKind, key: NodeKey, idx: u8) -> (&'static str, &'static str) {
    let key = if key == NodeKey::PoolLabel && pool.label().is_none() {
        NodeKey::Arch
    } else {
        key
    };
    let vals = pool.values(key);
    (key.label(pool), vals[usize::from(idx) % vals.len()])
}

fn render(spec: &Spec) -> Case {
    Case {
        policy: render_policy(spec),
        workload: render_workload(spec),
    }
}

fn render_policy(spec: &Spec) -> String {
    let mut out = String::new();
    for p in &spec.pools {
        out.push_str(&format!("pool {} {{\n", p.kind.name()));
        let weight = [0, 10, 50][usize::from(p.weight % 3)];
        if weight > 0 {
            out.push_str(&format!("  weight {weight}\n"));
        }
        for r in p.kind.requires() {
            out.push_str(&format!("  require {r}\n"));
        }
        if let Some(l) = p.cpu_limit {
            out.push_str(&format!("  limit cpu {}\n", [64, 16][usize::from(l % 2)]));
        }
        if p.kind == PoolKind::Gpu {
            out.push_str("  limit nvidia.com/gpu 8\n");
        }
        if let Some((k, v)) = p.kind.label() {
            out.push_str(&format!("  label {k} = {v}\n"));
        }
        if let Some((k, v)) = p.kind.taint() {
            out.push_str(&format!("  taint {k} = {v} : NoSchedule\n"));
        }
        if p.kind == PoolKind::SpotArm64 && p.soft_taint {
            out.push_str("  taint spot = true : PreferNoSchedule\n");
        }
        let class = if p.kind == PoolKind::Batch {
            "big-root"
        } else {
            "default"
        };
        out.push_str(&format!("  node-class {class}\n}}\n\n"));
    }
    out.push_str(
        "node-class default {\n  ami alias al2023@latest\n  subnets where tag karpenter.sh/discovery = \"corpus\"\n  security-groups where tag karpenter.sh/discovery = \"corpus\"\n  role \"KarpenterNodeRole-corpus\"\n}\n",
    );
    if spec.pools.iter().any(|p| p.kind == PoolKind::Batch) {
        out.push_str(
            "\nnode-class big-root {\n  ami alias al2023@latest\n  subnets where tag karpenter.sh/discovery = \"corpus\"\n  security-groups where tag karpenter.sh/discovery = \"corpus\"\n  role \"KarpenterNodeRole-corpus\"\n  block-device /dev/xvda {\n    root\n    size 100Gi\n    type gp3\n  }\n}\n",
        );
    }
    out.push_str("\nprice spot = on-demand * 0.35 when no spot price known\n");
    if spec.workloads.iter().any(|w| w.dongle) {
        out.push_str("capacity example.com/dongle 4 on instance-family in [m5, m6g]\n");
    }
    out
}

const CPU: [&str; 5] = ["100m", "250m", "500m", "1", "2"];
const MEM: [&str; 6] = ["128Mi", "256Mi", "512Mi", "1Gi", "2Gi", "4Gi"];
const EPHEMERAL: [&str; 3] = ["1Gi", "2Gi", "4Gi"];
const STORAGE_CLASS: &str = "wffc";

fn name_of(i: usize, kind: Kind) -> String {
    let k = match kind {
        Kind::Deployment => "deploy",
        Kind::StatefulSet => "sts",
        Kind::Job => "job",
        Kind::Pod => "pod",
        Kind::DaemonSet => "ds",
    };
    format!("w{i}-{k}")
}

fn tier_of(t: bool) -> &'static str {
    if t { "frontend" } else { "backend" }
}

fn topo_label(key: TopoKey, pool_label: Option<&'static str>) -> &'static str {
    match key {
        TopoKey::Hostname => "kubernetes.io/hostname",
        TopoKey::Zone => "topology.kubernetes.io/zone",
        TopoKey::ZoneId => "topology.k8s.aws/zone-id",
        TopoKey::InstanceType => "node.kubernetes.io/instance-type",
        TopoKey::CapacityType => "karpenter.sh/capacity-type",
        TopoKey::PoolLabel => pool_label.unwrap_or("kubernetes.io/hostname"),
    }
}

fn match_expression(key: &str, op: &str, values: &[&str]) -> Value {
    if values.is_empty() {
        json!({"key": key, "operator": op})
    } else {
        json!({"key": key, "operator": op, "values": values})
    }
}

fn node_term(pool: PoolKind, key: NodeKey, idx: u8) -> Value {
    let (k, v) = pick(pool, key, idx);
    json!({"matchExpressions": [match_expression(k, "In", &[v])]})
}

fn required_node(pool: PoolKind, r: &RequiredNode, pools: &[PoolSpec]) -> Value {
    let terms = match r {
        RequiredNode::In(k, i) => vec![node_term(pool, *k, *i)],
        RequiredNode::In2(k, i) => {
            let (key, a) = pick(pool, *k, *i);
            let (_, b) = pick(pool, *k, i.wrapping_add(1));
            let vals: Vec<&str> = if a == b { vec![a] } else { vec![a, b] };
            vec![json!({"matchExpressions": [match_expression(key, "In", &vals)]})]
        }
        RequiredNode::NotIn(k, i) => {
            // A value of another pool when one differs, else one of this pool's
            // (then the pod avoids part of its pool).
            let (key, own) = pick(pool, *k, *i);
            let other = pools
                .iter()
                .map(|p| pick(p.kind, *k, *i))
                .find(|(kk, v)| *kk == key && *v != own)
                .map_or(own, |(_, v)| v);
            let (key, other) = if *k == NodeKey::Zone || *k == NodeKey::ZoneId {
                // Exclude the zone the pool does not need most: the last of the region's.
                let z = if *k == NodeKey::Zone {
                    ZONES[4].0
                } else {
                    ZONES[4].1
                };
                (key, z)
            } else {
                (key, other)
            };
            vec![json!({"matchExpressions": [match_expression(key, "NotIn", &[other])]})]
        }
        RequiredNode::Exists => {
            let key = pool.label().map_or("kubernetes.io/arch", |l| l.0);
            vec![json!({"matchExpressions": [match_expression(key, "Exists", &[])]})]
        }
        RequiredNode::CpuBound(gt) => {
            let (op, v) = if *gt { ("Gt", "1") } else { ("Lt", "17") };
            vec![
                json!({"matchExpressions": [match_expression("karpenter.k8s.aws/instance-cpu", op, &[v])]}),
            ]
        }
        RequiredNode::Or(a, x, b, y) => vec![node_term(pool, *a, *x), node_term(pool, *b, *y)],
    };
    json!({"nodeSelectorTerms": terms})
}

struct Ctx<'a> {
    spec: &'a Spec,
    /// The label key of the first labelled pool.
    pool_label: Option<&'static str>,
    has_gpu: bool,
}

fn pod_affinity_json(ctx: &Ctx<'_>, app: &str, a: &PodAff) -> (&'static str, Value) {
    let key = |k: TopoKey| topo_label(k, ctx.pool_label);
    let own = json!({"matchLabels": {"app": app}});
    let tier = |t: bool| json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": [tier_of(t)]}]});
    match a {
        PodAff::AntiSelf(k) => (
            "podAntiAffinity",
            json!({"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": own, "topologyKey": key(*k)}
            ]}),
        ),
        PodAff::PreferAntiSelf(k, w) => (
            "podAntiAffinity",
            json!({"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": w, "podAffinityTerm": {"labelSelector": own, "topologyKey": key(*k)}}
            ]}),
        ),
        PodAff::WithSelf(k) => (
            "podAffinity",
            json!({"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": own, "topologyKey": key(*k)}
            ]}),
        ),
        PodAff::WithTier(k, t) => (
            "podAffinity",
            json!({"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": tier(*t), "topologyKey": key(*k)}
            ]}),
        ),
        PodAff::PreferTier(k, t, w) => (
            "podAffinity",
            json!({"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": w, "podAffinityTerm": {"labelSelector": tier(*t), "topologyKey": key(*k)}}
            ]}),
        ),
        PodAff::AntiTier(k, t) => (
            "podAntiAffinity",
            json!({"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": tier(*t), "topologyKey": key(*k)}
            ]}),
        ),
    }
}

/// The pod spec of workload `i`; `extra_objects` receives its PVC / PV.
fn pod_spec(ctx: &Ctx<'_>, i: usize, w: &WorkloadSpec, extra: &mut Vec<Value>) -> Value {
    let pools = &ctx.spec.pools;
    let pool = pools[usize::from(w.target) % pools.len()].kind;
    let app = format!("w{i}");
    let name = name_of(i, w.kind);
    let daemon = w.kind == Kind::DaemonSet;

    let mut requests = serde_json::Map::new();
    let mut limits = serde_json::Map::new();
    if daemon {
        requests.insert("cpu".into(), json!(["50m", "100m"][usize::from(w.cpu % 2)]));
        requests.insert(
            "memory".into(),
            json!(["64Mi", "128Mi"][usize::from(w.mem % 2)]),
        );
    } else {
        requests.insert("cpu".into(), json!(CPU[usize::from(w.cpu) % CPU.len()]));
        requests.insert("memory".into(), json!(MEM[usize::from(w.mem) % MEM.len()]));
        if let Some(e) = w.ephemeral {
            let size = if usize::from(e) >= EPHEMERAL.len() && pool == PoolKind::Batch {
                "30Gi"
            } else {
                EPHEMERAL[usize::from(e) % EPHEMERAL.len()]
            };
            requests.insert("ephemeral-storage".into(), json!(size));
        }
        if w.dongle {
            requests.insert("example.com/dongle".into(), json!(1));
            limits.insert("example.com/dongle".into(), json!(1));
        }
        if w.gpu && pool == PoolKind::Gpu {
            requests.insert("nvidia.com/gpu".into(), json!(1));
            limits.insert("nvidia.com/gpu".into(), json!(1));
        }
    }
    let mut resources = json!({"requests": requests});
    if !limits.is_empty() {
        resources["limits"] = Value::Object(limits);
    }
    let mut container = json!({
        "name": "main",
        "image": "registry.k8s.io/pause:3.10",
        "resources": resources,
    });
    if let Some((p8080, udp)) = w.host_port.filter(|_| !daemon) {
        let port = if p8080 { 8080 } else { 80 };
        container["ports"] = json!([{
            "containerPort": port,
            "hostPort": port,
            "protocol": if udp { "UDP" } else { "TCP" },
        }]);
    }

    let mut spec = serde_json::Map::new();
    spec.insert("terminationGracePeriodSeconds".into(), json!(0));

    // Node side.
    if let Some((k, idx)) = w.node.selector {
        let (k, v) = pick(pool, k, idx);
        spec.insert("nodeSelector".into(), json!({k: v}));
    }
    let mut affinity = serde_json::Map::new();
    let mut node_aff = serde_json::Map::new();
    if let Some(r) = &w.node.required {
        node_aff.insert(
            "requiredDuringSchedulingIgnoredDuringExecution".into(),
            required_node(pool, r, pools),
        );
    }
    if let Some((k, idx, weight)) = w.node.preferred {
        let term = node_term(pool, k, idx);
        node_aff.insert(
            "preferredDuringSchedulingIgnoredDuringExecution".into(),
            json!([{"weight": weight, "preference": term}]),
        );
    }
    if !node_aff.is_empty() {
        affinity.insert("nodeAffinity".into(), Value::Object(node_aff));
    }
    if !daemon && let Some(a) = &w.pod_affinity {
        let (field, v) = pod_affinity_json(ctx, &app, a);
        affinity.insert(field.into(), v);
    }
    if !affinity.is_empty() {
        spec.insert("affinity".into(), Value::Object(affinity));
    }

    // Spread.
    if !daemon && let Some(s) = &w.spread {
        let mut c = json!({
            "maxSkew": s.max_skew,
            "topologyKey": topo_label(s.key, ctx.pool_label),
            "whenUnsatisfiable": if s.hard { "DoNotSchedule" } else { "ScheduleAnyway" },
            "labelSelector": {"matchLabels": {"app": app}},
        });
        if let Some(m) = s.min_domains {
            c["minDomains"] = json!(m);
        }
        if s.match_label_keys && w.kind == Kind::Deployment {
            c["matchLabelKeys"] = json!(["pod-template-hash"]);
        }
        if s.ignore_node_affinity {
            c["nodeAffinityPolicy"] = json!("Ignore");
        }
        spec.insert("topologySpreadConstraints".into(), json!([c]));
    }

    // Tolerations: the target pool's taint is always tolerated (else the
    // node-side constraints drawn from that pool could never be met).
    let mut tolerations: Vec<Value> = Vec::new();
    let target_tol = |tolerations: &mut Vec<Value>, variant: u8| {
        if let Some((k, v)) = pool.taint() {
            let t = match variant % 3 {
                0 => json!({"key": k, "operator": "Equal", "value": v, "effect": "NoSchedule"}),
                1 => json!({"key": k, "operator": "Exists"}),
                _ => json!({"key": k, "operator": "Exists", "effect": "NoSchedule"}),
            };
            if !tolerations.contains(&t) {
                tolerations.push(t);
            }
        }
    };
    if daemon {
        tolerations.push(json!({"operator": "Exists"}));
    } else {
        target_tol(&mut tolerations, w.target);
        for t in &w.tolerations {
            match t {
                TolSpec::Target(v) => target_tol(&mut tolerations, *v),
                TolSpec::Unrelated => tolerations.push(json!({
                    "key": "example.com/maintenance",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                })),
            }
        }
        if w.gpu && ctx.has_gpu && pool != PoolKind::Gpu {
            // Tolerates the GPU pool without asking for a GPU.
            tolerations.push(
                json!({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}),
            );
        }
    }
    if !tolerations.is_empty() {
        spec.insert("tolerations".into(), Value::Array(tolerations));
    }

    if let Some(p) = w.priority.filter(|_| !daemon) {
        spec.insert(
            "priorityClassName".into(),
            json!(if p { "corpus-high" } else { "corpus-low" }),
        );
    }

    // Volumes: a StatefulSet uses claim templates (see the caller); a single
    // Deployment replica or a bare Pod mounts a PVC of its own.
    if let Some(v) = w.volume.as_ref().filter(|_| {
        matches!(w.kind, Kind::Pod) || (matches!(w.kind, Kind::Deployment) && w.replicas == 1)
    }) {
        let claim = format!("{name}-data");
        let mut bound = false;
        let mut pvc_spec = json!({
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": STORAGE_CLASS,
            "resources": {"requests": {"storage": "1Gi"}},
        });
        if let Some(z) = v.prebound {
            let zones = pool.values(NodeKey::Zone);
            let zone = zones[usize::from(z) % zones.len()];
            let pv = format!("{name}-pv");
            pvc_spec["volumeName"] = json!(pv);
            bound = true;
            extra.push(json!({
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": pv},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": STORAGE_CLASS,
                    "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": format!("vol-{name}")},
                    "claimRef": {"namespace": "default", "name": claim},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]}]}
                    ]}},
                },
            }));
        }
        let mut meta = json!({"name": claim, "namespace": "default"});
        if bound {
            // As the claim reads once the PV controller has bound it
            // (kube-scheduler takes a claim as bound only with this mark).
            meta["annotations"] = json!({"pv.kubernetes.io/bind-completed": "yes"});
        }
        extra.push(json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": meta,
            "spec": pvc_spec,
        }));
        container["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
        spec.insert(
            "volumes".into(),
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]),
        );
    } else if w.volume.is_some() && w.kind == Kind::StatefulSet {
        container["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
    }
    if w.kind == Kind::Job {
        spec.insert("restartPolicy".into(), json!("Never"));
    }
    spec.insert("containers".into(), json!([container]));
    Value::Object(spec)
}

fn labels_of(i: usize, w: &WorkloadSpec, ds_tier: bool) -> Value {
    if w.kind == Kind::DaemonSet && !ds_tier {
        json!({"app": format!("w{i}")})
    } else {
        json!({"app": format!("w{i}"), "tier": tier_of(w.tier)})
    }
}

fn render_workload(spec: &Spec) -> String {
    let ctx = Ctx {
        spec,
        pool_label: spec.pools.iter().find_map(|p| p.kind.label()).map(|l| l.0),
        has_gpu: spec.pools.iter().any(|p| p.kind == PoolKind::Gpu),
    };
    let mut docs: Vec<Value> = Vec::new();
    let mut extra: Vec<Value> = Vec::new();
    let mut uses_volumes = false;
    let mut priorities = BTreeSet::new();
    for (i, w) in spec.workloads.iter().enumerate() {
        let name = name_of(i, w.kind);
        let labels = labels_of(i, w, spec.ds_tier);
        let before = extra.len();
        let pod = pod_spec(&ctx, i, w, &mut extra);
        uses_volumes |= extra.len() > before;
        if let Some(p) = pod.get("priorityClassName").and_then(Value::as_str) {
            priorities.insert(p.to_string());
        }
        let template = json!({"metadata": {"labels": labels}, "spec": pod});
        let selector = json!({"matchLabels": {"app": format!("w{i}")}});
        let meta =
            json!({"name": name, "namespace": "default", "labels": {"app": format!("w{i}")}});
        let doc = match w.kind {
            Kind::Deployment => json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                "spec": {"replicas": w.replicas, "selector": selector, "template": template},
            }),
            Kind::StatefulSet => {
                let mut s = json!({
                    "replicas": w.replicas, "serviceName": name, "selector": selector,
                    "template": template,
                });
                if w.volume.is_some() {
                    uses_volumes = true;
                    s["volumeClaimTemplates"] = json!([{
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "storageClassName": STORAGE_CLASS,
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    }]);
                }
                json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta, "spec": s})
            }
            Kind::Job => json!({
                "apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
                "spec": {
                    "parallelism": w.replicas, "completions": w.replicas, "backoffLimit": 0,
                    "template": template,
                },
            }),
            Kind::Pod => {
                let m = json!({"name": name, "namespace": "default", "labels": labels});
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": m, "spec": template["spec"]})
            }
            Kind::DaemonSet => json!({
                "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta,
                "spec": {"selector": selector, "template": template},
            }),
        };
        docs.push(doc);
    }
    let mut head: Vec<Value> = Vec::new();
    for p in &priorities {
        let value = if p == "corpus-high" { 1000 } else { 10 };
        head.push(json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": p}, "value": value, "globalDefault": false,
            "preemptionPolicy": "Never",
        }));
    }
    if uses_volumes {
        let mut sc = json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": STORAGE_CLASS},
            "provisioner": "ebs.csi.aws.com",
            "volumeBindingMode": "WaitForFirstConsumer",
            "parameters": {"type": "gp3"},
        });
        if spec.sc_topologies {
            sc["allowedTopologies"] = json!([{"matchLabelExpressions": [{
                "key": "topology.kubernetes.io/zone",
                "values": [ZONES[0].0, ZONES[1].0, ZONES[2].0],
            }]}]);
        }
        head.push(sc);
    }
    head.extend(extra);
    head.extend(docs);
    head.iter()
        .map(|d| {
            // apiVersion, kind and metadata first, as people write them.
            let mut doc = serde_yaml_ng::Mapping::new();
            let mut rest = d.as_object().cloned().unwrap_or_default();
            for k in ["apiVersion", "kind", "metadata"] {
                if let Some(v) = rest.remove(k) {
                    doc.insert(k.into(), serde_yaml_ng::to_value(v).unwrap_or_default());
                }
            }
            for (k, v) in rest {
                doc.insert(k.into(), serde_yaml_ng::to_value(v).unwrap_or_default());
            }
            // `yes` is a string in YAML 1.2 (serde_yaml_ng leaves it bare) but
            // a bool to YAML 1.1 readers such as kubectl: quote it.
            serde_yaml_ng::to_string(&doc)
                .unwrap_or_default()
                .replace(": yes\n", ": \"yes\"\n")
        })
        .collect::<Vec<_>>()
        .join("---\n")
}
