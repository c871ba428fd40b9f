//! Properties of the solver on random small instances, checked by the
//! independent validator and against the exhaustive reference solver; plus
//! the Karpenter benchmark input checked for validity and cost vs. FFD.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::BTreeMap;

use nodewright::catalog::{CapacityType, Catalog, InstanceType, Offering, Zone};
use nodewright::ir::{
    Operator, PolicySet, Pool, Quantity, Requirement, Requirements, Resources, Taint, TaintEffect,
    labels,
};
use nodewright::solver::pack::Strategy as Packing;
use nodewright::solver::reference::solve_reference;
use nodewright::solver::validate::validate;
use nodewright::solver::{Plan, SolveInput, solve, solve_with};
use nodewright::synth;
use nodewright::workload::{
    LabelSelector, PodAffinityTerm, PodClass, Toleration, TolerationOperator, TopologySpread,
    Workload,
};
use proptest::prelude::*;

/// The fast solver's cost may exceed the exhaustive optimum by at most this factor.
const COST_FACTOR: f64 = 1.5;

const GI: i64 = 1 << 30;

fn catalog(types: &[(i64, i64, f64)]) -> Catalog {
    let zones = vec![
        Zone {
            name: "z-a".into(),
            id: "a".into(),
        },
        Zone {
            name: "z-b".into(),
            id: "b".into(),
        },
    ];
    let mut ts = Vec::new();
    let mut offerings = Vec::new();
    for (i, (cpu, mem_gi, price)) in types.iter().enumerate() {
        let mut cap = Resources::zero();
        cap.cpu_milli = cpu * 1000;
        cap.memory = mem_gi * GI;
        cap.pods = 20;
        let mut l = BTreeMap::new();
        l.insert(labels::ARCH.to_string(), "amd64".to_string());
        ts.push(InstanceType {
            name: format!("t{i}.{cpu}x{mem_gi}"),
            labels: l.into(),
            vcpus: *cpu as u32,
            memory_mib: (mem_gi * 1024) as u64,
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
        for z in 0..2u16 {
            for (ct, f) in [(CapacityType::OnDemand, 1.0), (CapacityType::Spot, 0.6)] {
                offerings.push(Offering {
                    type_index: i as u32,
                    zone_index: z,
                    capacity_type: ct,
                    price: Some(price * f * if z == 1 { 1.05 } else { 1.0 }),
                    price_estimated: false,
                    available: true,
                });
            }
        }
    }
    Catalog {
        region: "r".into(),
        zones,
        types: ts,
        offerings,
    }
}

#[derive(Debug, Clone)]
struct ClassSpec {
    cpu: i64,
    mem_mi: i64,
    count: usize,
    /// 0 none, 1 hostname anti-affinity to itself, 2 zone spread, 3 hostname spread, 4 zone anti-affinity;
    /// generic node labels: 5 instance-type anti-affinity, 6 zone-id spread, 7 anti-affinity on
    /// the pools' `team` label, 8 instance-type spread, 9 affinity to itself on `team`, 10 spread
    /// on `rack` (only the first pool's nodes have it), 11 anti-affinity on `rack`
    topo: u8,
    zone_selector: Option<bool>,
    tolerates: bool,
}

#[derive(Debug, Clone)]
struct Case {
    types: Vec<(i64, i64, f64)>,
    classes: Vec<ClassSpec>,
    second_pool_spot_only: bool,
    tainted_first: bool,
    cpu_limit: Option<i64>,
    /// The first pool outweighs the second (else equal weights).
    weighted: bool,
}

/// Classes with the topology variants `topo` (see `ClassSpec::topo`).
fn class_strategy(topo: Vec<u8>) -> impl Strategy<Value = ClassSpec> {
    (
        prop::sample::select(vec![250i64, 500, 1000, 1500, 3000]),
        prop::sample::select(vec![256i64, 1024, 2048, 4096]),
        1usize..=2,
        prop::sample::select(topo),
        prop::option::of(any::<bool>()),
        any::<bool>(),
    )
        .prop_map(
            |(cpu, mem_mi, count, topo, zone_selector, tolerates)| ClassSpec {
                cpu,
                mem_mi,
                count,
                topo,
                zone_selector,
                tolerates,
            },
        )
}

/// Cases whose classes use the topology variants `topo`.
fn case_strategy(topo: Vec<u8>) -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(
            prop::sample::select(vec![
                (2i64, 4i64, 0.10),
                (2, 8, 0.12),
                (4, 8, 0.19),
                (4, 16, 0.25),
                (8, 16, 0.36),
            ]),
            1..=3,
        ),
        prop::collection::vec(class_strategy(topo), 1..=2),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![4i64, 8, 12])),
        any::<bool>(),
    )
        .prop_map(
            |(mut types, classes, second_pool_spot_only, tainted_first, cpu_limit, weighted)| {
                types.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
                types.dedup();
                Case {
                    types,
                    classes,
                    second_pool_spot_only,
                    tainted_first,
                    cpu_limit,
                    weighted,
                }
            },
        )
        .prop_filter("at most 4 pods", |c| {
            c.classes.iter().map(|x| x.count).sum::<usize>() <= 4
        })
}

fn pool(name: &str, weight: i32) -> Pool {
    let mut p = synth::default_pool(name);
    p.weight = weight;
    p
}

fn build(case: &Case) -> (PolicySet, Catalog, Workload) {
    let cat = catalog(&case.types);
    let mut a = pool("first", if case.weighted { 10 } else { 0 });
    a.labels.insert("team".into(), "a".into());
    a.labels.insert("rack".into(), "r1".into());
    if case.tainted_first {
        a.taints.push(Taint {
            key: "dedicated".into(),
            value: Some("x".into()),
            effect: TaintEffect::NoSchedule,
        });
    }
    if let Some(l) = case.cpu_limit {
        a.limits.insert("cpu".into(), Quantity::from_units(l));
    }
    let mut b = pool("second", 0);
    b.labels.insert("team".into(), "b".into());
    if case.second_pool_spot_only {
        let term = Requirement {
            key: labels::CAPACITY_TYPE.into(),
            op: Operator::In,
            values: vec!["spot".into()],
            min_values: None,
            origin: None,
        };
        b.requirements.add(&term);
        b.requirement_terms.push(term);
    }
    let mut policy = PolicySet {
        pools: vec![a, b],
        ..Default::default()
    };
    policy.sort_pools();
    let classes = case
        .classes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let app = format!("app{i}");
            let mut lbl = BTreeMap::new();
            lbl.insert("app".to_string(), app.clone());
            let selector = LabelSelector {
                match_labels: lbl.clone(),
                match_expressions: vec![],
            };
            let mut req = Resources::zero();
            req.cpu_milli = s.cpu;
            req.memory = s.mem_mi << 20;
            req.pods = 1;
            let mut ns = Requirements::new();
            if let Some(za) = s.zone_selector {
                ns.require_in(labels::ZONE, &[if za { "z-a" } else { "z-b" }]);
            }
            let spread = |key: &str| TopologySpread {
                max_skew: 1,
                topology_key: key.into(),
                hard: true,
                min_domains: None,
                selector: selector.clone(),
                honor_node_affinity: true,
                honor_node_taints: false,
            };
            let anti = |key: &str| PodAffinityTerm {
                anti: true,
                weight: None,
                topology_key: key.into(),
                selector: selector.clone(),
                namespaces: vec![],
                all_namespaces: false,
            };
            let (topology_spread, pod_affinity) = match s.topo {
                1 => (vec![], vec![anti(labels::HOSTNAME)]),
                2 => (vec![spread(labels::ZONE)], vec![]),
                3 => (vec![spread(labels::HOSTNAME)], vec![]),
                4 => (vec![], vec![anti(labels::ZONE)]),
                5 => (vec![], vec![anti(labels::INSTANCE_TYPE)]),
                6 => (vec![spread(labels::ZONE_ID)], vec![]),
                7 => (vec![], vec![anti("team")]),
                8 => (vec![spread(labels::INSTANCE_TYPE)], vec![]),
                9 => (
                    vec![],
                    vec![PodAffinityTerm {
                        anti: false,
                        ..anti("team")
                    }],
                ),
                10 => (vec![spread("rack")], vec![]),
                11 => (vec![], vec![anti("rack")]),
                _ => (vec![], vec![]),
            };
            PodClass {
                id: app.clone(),
                namespace: "default".into(),
                pod_names: (0..s.count).map(|k| format!("{app}-{k}")).collect(),
                labels: lbl,
                owner: None,
                priority_class: None,
                priority: 0,
                requests: req,
                node_selector: ns,
                required_affinity: vec![],
                preferred_affinity: vec![],
                tolerations: if s.tolerates {
                    vec![Toleration {
                        key: Some("dedicated".into()),
                        operator: TolerationOperator::Exists,
                        value: None,
                        effect: None,
                    }]
                } else {
                    vec![]
                },
                topology_spread,
                pod_affinity,
                volume_zones: None,
                volume_reason: None,
                host_ports: vec![],
            }
        })
        .collect();
    (
        policy,
        cat,
        Workload {
            classes,
            daemonsets: vec![],
            nodes: vec![],
        },
    )
}

/// The topology variants the near-optimality property runs on.
const NEAR_OPTIMAL_TOPO: [u8; 6] = [0, 1, 2, 3, 4, 6];

fn placed(p: &Plan) -> usize {
    p.nodes.iter().map(|n| n.pods.len()).sum::<usize>()
        + p.existing.iter().map(|e| e.pods.len()).sum::<usize>()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Near-optimal against the exhaustive search. Not on the variants where
    /// greedy packing commits early by design: a term on a key whose value
    /// depends on the instance type fixes a node's type when its first such
    /// pod lands (so it may not grow for a later pod); self-affinity on a
    /// pool label lets the first pod pick the pool, and anti-affinity on it
    /// needs a node in each pool (a pool limit spent by an earlier class may
    /// strand a pod); a key only one pool's nodes carry.
    #[test]
    fn fast_solver_is_valid_complete_and_near_optimal(case in case_strategy(NEAR_OPTIMAL_TOPO.to_vec())) {
        let (policy, cat, w) = build(&case);
        let input = SolveInput { policy: &policy, catalog: &cat, workload: &w, scorer: None, unavailable: None };
        let fast = solve(&input);
        let errs = validate(&fast, &input);
        prop_assert!(errs.is_empty(), "invalid plan: {errs:?}\n{fast:#?}");
        let reference = solve_reference(&input, 4).expect("tiny input");
        prop_assert!(validate(&reference, &input).is_empty());
        prop_assert!(placed(&fast) >= placed(&reference),
            "fast placed {} < reference {}\nfast: {fast:#?}\nreference: {reference:#?}", placed(&fast), placed(&reference));
        // The reference ignores pool weights (a heavier pool is used first even
        // when dearer), so costs are compared when weights are equal.
        if placed(&fast) == placed(&reference) && !case.weighted {
            prop_assert!(fast.total_price_per_hour <= reference.total_price_per_hour * COST_FACTOR + 1e-9,
                "fast ${} > {COST_FACTOR} x reference ${}\nfast: {fast:#?}\nreference: {reference:#?}",
                fast.total_price_per_hour, reference.total_price_per_hour);
        }
    }

    /// Every variant, generic node-label keys included: the plan is valid
    /// (kube-scheduler's rules as the validator reads them).
    #[test]
    fn fast_solver_is_valid_on_any_topology_key(case in case_strategy((0..=11).collect())) {
        let (policy, cat, w) = build(&case);
        let input = SolveInput { policy: &policy, catalog: &cat, workload: &w, scorer: None, unavailable: None };
        let fast = solve(&input);
        let errs = validate(&fast, &input);
        prop_assert!(errs.is_empty(), "invalid plan: {errs:?}\n{fast:#?}");
        let reference = solve_reference(&input, 4).expect("tiny input");
        prop_assert!(validate(&reference, &input).is_empty());
    }

    #[test]
    fn solver_is_deterministic(case in case_strategy((0..=11).collect())) {
        let (policy, cat, w) = build(&case);
        let input = SolveInput { policy: &policy, catalog: &cat, workload: &w, scorer: None, unavailable: None };
        prop_assert_eq!(solve(&input), solve(&input));
    }
}

#[test]
fn karpenter_diverse_1000_is_valid_and_no_dearer_than_ffd() {
    let cat = synth::karpenter_catalog(400);
    let policy = PolicySet {
        pools: vec![synth::default_pool("default")],
        ..Default::default()
    };
    let w = synth::diverse_workload(1000, 42);
    let input = SolveInput {
        policy: &policy,
        catalog: &cat,
        workload: &w,
        scorer: None,
        unavailable: None,
    };
    let fast = solve(&input);
    let errs = validate(&fast, &input);
    assert!(errs.is_empty(), "{:?}", &errs[..errs.len().min(10)]);
    assert!(
        fast.unschedulable.is_empty(),
        "{:?}",
        &fast.unschedulable[..fast.unschedulable.len().min(3)]
    );
    let lb = nodewright::solver::bound::fractional_lower_bound(&input);
    assert!(
        lb > 0.0 && lb <= fast.total_price_per_hour + 1e-9,
        "bound {lb} vs {}",
        fast.total_price_per_hour
    );
    let ffd = solve_with(&input, Packing::FirstFitDecreasing);
    assert!(validate(&ffd, &input).is_empty());
    assert!(
        fast.total_price_per_hour <= ffd.total_price_per_hour + 1e-9,
        "fast {} > ffd {}",
        fast.total_price_per_hour,
        ffd.total_price_per_hour
    );
}
