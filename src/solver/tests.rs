//! Unit tests of individual constraints, each on a hand-built input and each
//! checked by the independent validator as well.

use std::collections::BTreeMap;

use super::validate::validate;
use super::{Plan, SolveInput, solve};
use crate::catalog::Catalog;
use crate::ir::{PolicySet, Quantity, Requirements, Resources, Taint, TaintEffect, labels};
use crate::synth;
use crate::workload::{DaemonSetOverhead, ExistingNode, PodClass, Workload};

fn class(id: &str, n: usize, cpu: i64, mem_gi: i64) -> PodClass {
    let mut req = Resources::zero();
    req.cpu_milli = cpu;
    req.memory = mem_gi << 30;
    req.pods = 1;
    let mut lbl = BTreeMap::new();
    lbl.insert("app".to_string(), id.to_string());
    PodClass {
        labels: lbl,
        ..PodClass::plain(
            id,
            "default",
            (0..n).map(|i| format!("{id}-{i}")).collect(),
            req,
        )
    }
}

fn run(policy: &PolicySet, cat: &Catalog, w: &Workload) -> Plan {
    let input = SolveInput {
        policy,
        catalog: cat,
        workload: w,
        scorer: None,
        unavailable: None,
    };
    let plan = solve(&input);
    let errs = validate(&plan, &input);
    assert!(errs.is_empty(), "{errs:?}");
    plan
}

fn one_pool() -> PolicySet {
    PolicySet {
        pools: vec![synth::default_pool("default")],
        ..Default::default()
    }
}

#[test]
fn identical_pods_share_a_right_sized_node() {
    let cat = synth::karpenter_catalog(16);
    let w = Workload {
        classes: vec![class("web", 10, 1000, 1)],
        ..Default::default()
    };
    let plan = run(&one_pool(), &cat, &w);
    assert!(plan.unschedulable.is_empty());
    let pods: usize = plan.nodes.iter().map(|n| n.pods.len()).sum();
    assert_eq!(pods, 10);
    // Options are ranked cheapest first and start with the chosen type.
    for n in &plan.nodes {
        let prices: Vec<f64> = n
            .instance_type_options
            .iter()
            .map(|o| o.price_per_hour)
            .collect();
        assert!(prices.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(&*n.instance_type_options[0].instance_type, n.instance_type);
    }
}

#[test]
fn existing_capacity_is_used_first() {
    let cat = synth::karpenter_catalog(8);
    let mut alloc = Resources::zero();
    alloc.cpu_milli = 4000;
    alloc.memory = 8 << 30;
    alloc.pods = 20;
    let mut lbl = BTreeMap::new();
    lbl.insert(labels::ZONE.to_string(), "test-zone-1".to_string());
    let w = Workload {
        classes: vec![class("api", 3, 1000, 1)],
        daemonsets: vec![],
        nodes: vec![ExistingNode {
            name: "old-1".into(),
            labels: lbl,
            taints: vec![],
            allocatable: alloc,
            used: Resources::zero(),
            pods: vec![],
        }],
    };
    let plan = run(&one_pool(), &cat, &w);
    assert!(plan.nodes.is_empty());
    assert_eq!(plan.existing[0].pods.len(), 3);
}

#[test]
fn pool_limits_and_taints_are_explained() {
    let cat = synth::karpenter_catalog(8);
    let mut gpu = synth::default_pool("gpu");
    gpu.weight = 10;
    gpu.taints.push(Taint {
        key: "nvidia.com/gpu".into(),
        value: Some("true".into()),
        effect: TaintEffect::NoSchedule,
    });
    let mut small = synth::default_pool("small");
    small.limits.insert("cpu".into(), Quantity::from_units(2));
    let mut policy = PolicySet {
        pools: vec![gpu, small],
        ..Default::default()
    };
    policy.sort_pools();
    let w = Workload {
        classes: vec![class("batch", 4, 1500, 1)],
        ..Default::default()
    };
    let plan = run(&policy, &cat, &w);
    assert!(!plan.unschedulable.is_empty());
    let reasons = &plan.unschedulable[0].reasons;
    assert!(
        reasons
            .iter()
            .any(|r| r == "pool gpu: taint nvidia.com/gpu=true:NoSchedule not tolerated"),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("larger than the pool's limits")),
        "{reasons:?}"
    );
}

#[test]
fn daemonset_overhead_counts_where_it_runs() {
    let cat = synth::karpenter_catalog(4);
    let mut ds = Resources::zero();
    ds.cpu_milli = 500;
    ds.memory = 256 << 20;
    ds.pods = 1;
    let w = Workload {
        classes: vec![class("web", 1, 1400, 1)],
        daemonsets: vec![DaemonSetOverhead {
            namespace: "kube-system".into(),
            name: "agent".into(),
            requests: ds,
            node_selector: Requirements::new(),
            required_affinity: vec![],
            tolerations: vec![],
            host_ports: vec![],
            labels: Default::default(),
        }],
        nodes: vec![],
    };
    let plan = run(&one_pool(), &cat, &w);
    // 1400m + 500m overhead does not fit a 1-vCPU type (940m allocatable).
    assert_eq!(plan.nodes.len(), 1);
    assert_eq!(plan.nodes[0].instance_type, "fake-it-1");
    assert_eq!(plan.nodes[0].requested.cpu_milli, 1900);
}

#[test]
fn volume_zone_is_honoured_and_explained() {
    let cat = synth::karpenter_catalog(4);
    let mut c = class("db", 1, 500, 1);
    c.volume_zones = Some(vec!["test-zone-3".into()]);
    c.volume_reason = Some("PVC data-0 bound to test-zone-3".into());
    let mut other = class("big", 1, 64_000, 1);
    other.volume_zones = c.volume_zones.clone();
    other.volume_reason = c.volume_reason.clone();
    let w = Workload {
        classes: vec![c, other],
        ..Default::default()
    };
    let plan = run(&one_pool(), &cat, &w);
    assert_eq!(plan.nodes[0].zone, "test-zone-3");
    let reasons = &plan.unschedulable[0].reasons;
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("zone test-zone-1: PVC data-0 bound to test-zone-3")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("cpu: at most")),
        "{reasons:?}"
    );
}

#[test]
fn preferred_affinity_relaxes_with_a_note() {
    let cat = synth::karpenter_catalog(4);
    let mut c = class("web", 1, 500, 1);
    let mut pref = Requirements::new();
    pref.require_in(labels::ZONE, &["nowhere-1z"]);
    c.preferred_affinity.push((50, pref));
    let mut good = Requirements::new();
    good.require_in(labels::CAPACITY_TYPE, &["spot"]);
    c.preferred_affinity.push((10, good));
    let w = Workload {
        classes: vec![c],
        ..Default::default()
    };
    let plan = run(&one_pool(), &cat, &w);
    assert!(plan.unschedulable.is_empty());
    // Terms are dropped lightest first: spot goes before the impossible zone term, then that.
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("relaxing preferences")),
        "{:?}",
        plan.notes
    );
}

#[test]
fn min_values_keeps_enough_options() {
    let cat = synth::karpenter_catalog(20);
    let mut pool = synth::default_pool("flex");
    pool.requirements
        .min_values
        .insert(labels::INSTANCE_TYPE.into(), 5);
    let policy = PolicySet {
        pools: vec![pool],
        ..Default::default()
    };
    let w = Workload {
        classes: vec![class("web", 30, 1000, 1)],
        ..Default::default()
    };
    let plan = run(&policy, &cat, &w);
    assert!(plan.unschedulable.is_empty());
    assert!(
        plan.nodes
            .iter()
            .all(|n| n.instance_type_options.len() >= 5)
    );
}

#[test]
fn explain_names_the_node_and_the_rejections() {
    let cat = synth::karpenter_catalog(4);
    let w = Workload {
        classes: vec![class("web", 1, 1500, 3)],
        ..Default::default()
    };
    let policy = one_pool();
    let input = SolveInput {
        policy: &policy,
        catalog: &cat,
        workload: &w,
        scorer: None,
        unavailable: None,
    };
    let plan = solve(&input);
    let e = super::explain::explain_pod(&input, &plan, "web-0").expect("pod exists");
    assert_eq!(e.pod, "default/web-0");
    assert!(
        e.placed.as_deref().is_some_and(|p| p.contains("default-1")),
        "{e:?}"
    );
    // Type 0 (1 vCPU) is too small for 1.5 CPU; type 1 (2 vCPU, 4 GiB) for 3 GiB after reservations.
    assert!(
        e.reasons.iter().any(|r| r.contains("fake-it-0: cpu")),
        "{e:?}"
    );
    assert!(super::explain::explain_pod(&input, &plan, "nope").is_none());
}

#[test]
fn malformed_catalog_offerings_are_skipped_not_panicked_on() {
    let mut cat = synth::karpenter_catalog(2);
    cat.offerings[0].type_index = 99;
    cat.offerings[1].zone_index = 42;
    let w = Workload {
        classes: vec![class("web", 2, 500, 1)],
        ..Default::default()
    };
    let plan = run(&one_pool(), &cat, &w);
    assert!(plan.unschedulable.is_empty());
}

/// Vetoes spot offerings and, per node, prefers odd-sized types by a large bonus.
struct TestScorer;
impl crate::scoring::Scorer for TestScorer {
    fn score_offering(&self, o: &crate::scoring::OfferingView<'_>) -> crate::scoring::Verdict {
        if o.capacity_type == crate::catalog::CapacityType::Spot {
            crate::scoring::Verdict::Veto("no spot here".into())
        } else {
            crate::scoring::Verdict::Adjust(0.0)
        }
    }
    fn score_node(
        &self,
        o: &crate::scoring::OfferingView<'_>,
        _load: &crate::scoring::NodeLoad<'_>,
    ) -> crate::scoring::Verdict {
        let odd = o.instance_type.vcpus % 2 == 1;
        crate::scoring::Verdict::Adjust(if odd { -100.0 } else { 0.0 })
    }
    fn is_load_dependent(&self) -> bool {
        true
    }
}

#[test]
fn scorer_vetoes_and_load_scores_rerank() {
    let cat = synth::karpenter_catalog(8);
    let w = Workload {
        classes: vec![class("web", 1, 1500, 1)],
        ..Default::default()
    };
    let policy = one_pool();
    let input = SolveInput {
        policy: &policy,
        catalog: &cat,
        workload: &w,
        scorer: Some(&TestScorer),
        unavailable: None,
    };
    let plan = solve(&input);
    assert!(validate(&plan, &input).is_empty());
    let n = &plan.nodes[0];
    assert_eq!(n.capacity_type, crate::catalog::CapacityType::OnDemand);
    // fake-it-1 (2 vCPU) is cheapest, but the node score favours odd vCPU counts.
    assert_eq!(n.instance_type, "fake-it-2");
}

/// A class with required hostname self-affinity must share one node: it must
/// not start in another node's slack that cannot grow to take the rest.
#[test]
fn hostname_self_affinity_lands_on_one_node_big_enough() {
    use crate::workload::{LabelSelector, PodAffinityTerm};
    // Types of 1..4 vCPU: a 4-vCPU node has 3920m allocatable.
    let cat = synth::karpenter_catalog(4);
    // Packed first (a node selector restricts it): 3 × 1100m on a 4-vCPU
    // node, leaving 620m of slack no bigger type can add to.
    let mut first = class("first", 3, 1100, 1);
    first
        .node_selector
        .require_in(labels::ZONE, &["test-zone-1"]);
    let mut group = class("group", 7, 500, 0);
    let mut sel = BTreeMap::new();
    sel.insert("app".to_string(), "group".to_string());
    group.pod_affinity.push(PodAffinityTerm {
        anti: false,
        weight: None,
        topology_key: labels::HOSTNAME.into(),
        selector: LabelSelector {
            match_labels: sel,
            match_expressions: vec![],
        },
        namespaces: vec![],
        all_namespaces: false,
    });
    let w = Workload {
        classes: vec![first, group],
        ..Default::default()
    };
    let policy = one_pool();
    for strategy in [
        super::pack::Strategy::CostAware,
        super::pack::Strategy::FirstFitDecreasing,
    ] {
        let input = SolveInput {
            policy: &policy,
            catalog: &cat,
            workload: &w,
            scorer: None,
            unavailable: None,
        };
        let plan = super::solve_with(&input, strategy);
        assert!(validate(&plan, &input).is_empty(), "{strategy:?}");
        assert!(
            plan.unschedulable.is_empty(),
            "{strategy:?}: {:?}",
            plan.unschedulable
        );
        let holders: Vec<_> = plan
            .nodes
            .iter()
            .filter(|n| n.pods.iter().any(|p| p.starts_with("default/group-")))
            .collect();
        assert_eq!(holders.len(), 1, "{strategy:?}: {plan:#?}");
        assert_eq!(holders[0].pods.len(), 7, "{strategy:?}");
    }
}

/// Availability is an input: an offering refused in the snapshot is not
/// chosen, the plan says so when validated, and the same snapshot always
/// gives the same plan (nothing in the solve reads the clock or the cache).
#[test]
fn refused_offerings_are_avoided() {
    use crate::catalog::{Availability, UnavailableOfferings};
    let cat = synth::karpenter_catalog(8);
    let policy = one_pool();
    let w = Workload {
        classes: vec![class("web", 1, 1500, 1)],
        ..Default::default()
    };
    let plan = |a: &Availability| {
        let input = SolveInput {
            policy: &policy,
            catalog: &cat,
            workload: &w,
            scorer: None,
            unavailable: Some(a),
        };
        let p = solve(&input);
        let errs = validate(&p, &input);
        assert!(errs.is_empty(), "{errs:?}");
        p
    };
    let first = plan(&Availability::default());
    assert_eq!(first.nodes.len(), 1, "{first:?}");
    let n = &first.nodes[0];
    // The launcher marks the cache; the caller snapshots it for the next solve.
    let cache = UnavailableOfferings::default();
    cache.mark(
        &n.instance_type,
        &n.zone,
        n.capacity_type,
        "InsufficientInstanceCapacity",
    );
    let snap = cache.snapshot();
    let second = plan(&snap);
    assert_eq!(second.nodes.len(), 1, "{second:?}");
    let m = &second.nodes[0];
    assert_ne!(
        (&m.instance_type, &m.zone, m.capacity_type),
        (&n.instance_type, &n.zone, n.capacity_type),
        "the refused offering was chosen again"
    );
    assert!(m.price_per_hour >= n.price_per_hour, "it was the cheapest");
    assert_eq!(plan(&snap), second, "same snapshot, same plan");
    // The validator flags a plan that uses a refused offering.
    let input = SolveInput {
        policy: &policy,
        catalog: &cat,
        workload: &w,
        scorer: None,
        unavailable: Some(&snap),
    };
    let errs = validate(&first, &input);
    assert!(
        errs.iter().any(|e| e.contains("recently unavailable")),
        "{errs:?}"
    );
}

/// Pools compiled together share their per-offering arrays where they
/// agree, and every entry a pool can read is what compiling it alone gives:
/// across kubelet settings, a DaemonSet that selects a pool label, a cost
/// rule that names a pool, and requirements that differ.
#[test]
fn pools_share_tables_and_agree_with_compiling_alone() {
    use std::sync::Arc;

    use super::tables::Tables;
    use crate::ir::cost::{CostAction, CostRule};
    use crate::ir::{CmpOp, Cond, Subject};

    let cat = crate::catalog::embedded().expect("the embedded catalog decodes");
    let mut pools = Vec::new();
    for i in 0..6 {
        let mut p = synth::default_pool(&format!("p{i}"));
        p.weight = 10;
        let mut r = Requirements::new();
        r.require_in(labels::ARCH, &["amd64"]);
        if i >= 4 {
            r.require_in(labels::INSTANCE_FAMILY, &["m5", "c5"]);
        }
        p.requirements = r;
        if i == 3 {
            p.labels.insert("team".into(), "a".into());
        }
        if i == 5 {
            p.kubelet.max_pods = Some(20);
        }
        pools.push(p);
    }
    let mut policy = PolicySet {
        pools,
        ..Default::default()
    };
    policy.cost.push(CostRule {
        when: Cond::cmp(
            Subject::NodeLabel(labels::NODEPOOL.into()),
            CmpOp::Eq,
            &["p2"],
        ),
        action: CostAction::Scale(0.5),
        origin: None,
    });
    let mut ds = Resources::zero();
    ds.cpu_milli = 300;
    ds.pods = 1;
    let mut sel = Requirements::new();
    sel.require_in("team", &["a"]);
    let w = Workload {
        classes: vec![class("web", 3, 500, 1)],
        daemonsets: vec![DaemonSetOverhead {
            namespace: "kube-system".into(),
            name: "agent".into(),
            requests: ds,
            node_selector: sel,
            required_affinity: vec![],
            tolerations: vec![],
            host_ports: vec![],
            labels: Default::default(),
        }],
        nodes: vec![],
    };
    let input = SolveInput {
        policy: &policy,
        catalog: &cat,
        workload: &w,
        scorer: None,
        unavailable: None,
    };
    let t = Tables::new(&input);
    let [p0, p1, p2, p3, p4, p5] = [0, 1, 2, 3, 4, 5].map(|i| &t.pools[i]);
    // The cost rule reads pool names, so each pool has its own prices; the
    // room (kubelet and DaemonSets) is shared, and so are equal lists.
    assert!(!Arc::ptr_eq(&p0.price, &p1.price));
    assert!(Arc::ptr_eq(&p0.net, &p1.net) && Arc::ptr_eq(&p0.ds, &p1.ds));
    assert!(Arc::ptr_eq(&p0.by_domain, &p1.by_domain));
    assert!(Arc::ptr_eq(&p0.net, &p2.net));
    let o = p2.usable.iter().next().expect("p2 has offerings");
    assert_eq!(p2.price[o], p0.price[o] * 0.5);
    // The DaemonSet runs on p3's nodes only: its own room.
    assert!(!Arc::ptr_eq(&p0.net, &p3.net));
    // Narrower requirements: the same room, fewer usable offerings.
    assert!(Arc::ptr_eq(&p0.net, &p4.net) && p4.usable.count() < p0.usable.count());
    // Another kubelet: its own room.
    assert!(!Arc::ptr_eq(&p4.net, &p5.net));
    // Without a rule that reads pool names, every pool shares one price array.
    let mut no_rule = policy.clone();
    no_rule.cost.clear();
    let no_rule_in = SolveInput {
        policy: &no_rule,
        ..input
    };
    let t2 = Tables::new(&no_rule_in);
    assert!(
        t2.pools
            .iter()
            .all(|p| Arc::ptr_eq(&p.price, &t2.pools[0].price))
    );
    for (i, pool) in policy.pools.iter().enumerate() {
        let alone = PolicySet {
            pools: vec![pool.clone()],
            ..policy.clone()
        };
        let alone_in = SolveInput {
            policy: &alone,
            ..input
        };
        let one = Tables::new(&alone_in);
        let (a, b) = (&t.pools[i], &one.pools[0]);
        assert_eq!(a.usable, b.usable, "{}", pool.name);
        assert!(a.usable.count() > 0, "{}", pool.name);
        assert_eq!(&*a.by_domain, &*b.by_domain, "{}", pool.name);
        for o in a.usable.iter() {
            assert_eq!(
                a.price[o].to_bits(),
                b.price[o].to_bits(),
                "{} {o}",
                pool.name
            );
            assert_eq!(
                a.rank[o].to_bits(),
                b.rank[o].to_bits(),
                "{} {o}",
                pool.name
            );
            assert_eq!(
                (a.net[o], a.ds[o]),
                (b.net[o], b.ds[o]),
                "{} {o}",
                pool.name
            );
        }
    }
    // The shared tables plan and validate as usual.
    let plan = solve(&input);
    assert!(plan.unschedulable.is_empty(), "{plan:?}");
    assert!(validate(&plan, &input).is_empty());
}

/// A pod planned onto a node because of a label finds that label on the
/// planned node with the value it asked for: one class per well-known key,
/// each selecting the value a real offering has, on the embedded catalog.
#[test]
fn planned_nodes_carry_every_label_their_pods_select_on() {
    let cat = Catalog::embedded().unwrap_or_else(|e| panic!("catalog: {e}"));
    let Some(o) = cat.offerings.iter().find(|o| {
        cat.offering_label(o, labels::INSTANCE_TYPE) == Some("m5.xlarge")
            && cat.offering_label(o, labels::CAPACITY_TYPE) == Some("on-demand")
    }) else {
        panic!("m5.xlarge on-demand in the embedded catalog");
    };
    let keys = [
        labels::INSTANCE_TYPE,
        labels::INSTANCE_FAMILY,
        labels::INSTANCE_CATEGORY,
        labels::INSTANCE_GENERATION,
        labels::INSTANCE_SIZE,
        labels::INSTANCE_CPU,
        labels::INSTANCE_CPU_MANUFACTURER,
        labels::INSTANCE_MEMORY,
        labels::INSTANCE_HYPERVISOR,
        labels::INSTANCE_NETWORK_BANDWIDTH,
        labels::INSTANCE_EBS_BANDWIDTH,
        labels::ARCH,
        labels::OS,
        labels::ZONE,
        labels::ZONE_ID,
        labels::REGION,
        labels::CAPACITY_TYPE,
    ];
    let mut classes = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let v = cat
            .offering_label(o, k)
            .unwrap_or_else(|| panic!("{k} on m5.xlarge"));
        let mut c = class(&format!("c{i}"), 2, 500, 1);
        c.node_selector.require_in(k, &[v]);
        classes.push(c);
    }
    let w = Workload {
        classes: classes.clone(),
        ..Default::default()
    };
    let policy = one_pool();
    let plan = run(&policy, &cat, &w);
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    let mut checked = 0;
    for n in &plan.nodes {
        for p in &n.pods {
            let name = p.trim_start_matches("default/");
            let c = classes
                .iter()
                .find(|c| c.pod_names.iter().any(|x| x == name))
                .unwrap_or_else(|| panic!("class of {p}"));
            assert!(
                c.node_selector.matches_map(&n.labels),
                "{p} selects {:?}; node {} has {:?}",
                c.node_selector,
                n.name,
                n.labels
            );
            checked += 1;
        }
        // The full set: every well-known label of the planned offering.
        let o = cat
            .offering_for(&n.instance_type, &n.zone, n.capacity_type)
            .unwrap_or_else(|| panic!("offering of {}", n.name));
        for (k, v) in cat.offering_labels(&o) {
            assert_eq!(n.labels.get(&k), Some(&v), "{k} on {}", n.name);
        }
    }
    assert_eq!(checked, 2 * keys.len());
}
