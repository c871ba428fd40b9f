//! Unit and property tests of `consolidate::decide`: a move never strands a pod, the result
//! is never pricier, budgets are never exceeded.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use rand::{Rng, SeedableRng};

use super::consolidate::*;
use crate::catalog::Catalog;
use crate::ir::{ConsolidationPolicy, Duration as IrDuration, PolicySet};
use crate::solver::{SolveInput, solve};
use crate::synth;

fn policy(cp: ConsolidationPolicy, after: IrDuration) -> PolicySet {
    let mut pool = synth::default_pool("default");
    pool.disruption.consolidation_policy = cp;
    pool.disruption.consolidate_after = after;
    PolicySet {
        pools: vec![pool],
        ..Default::default()
    }
}

fn zero() -> IrDuration {
    IrDuration::Finite(std::time::Duration::ZERO)
}

/// A cluster planned for `pods` diverse pods, with each pod kept with probability `keep`.
fn scenario(cat: &Catalog, p: &PolicySet, pods: usize, seed: u64, keep: f64) -> Cluster {
    let w = synth::diverse_workload(pods, seed);
    let plan = solve(&SolveInput {
        policy: p,
        catalog: cat,
        workload: &w,
        scorer: None,
        unavailable: None,
    });
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 7);
    cluster_from_plan(&plan, &w, |_| rng.random_bool(keep))
}

fn input<'a>(
    cat: &'a Catalog,
    p: &'a PolicySet,
    c: &Cluster,
    budgets: BTreeMap<String, BudgetLeft>,
) -> ConsolidationInput<'a> {
    ConsolidationInput {
        policy: p,
        catalog: cat,
        unavailable: None,
        cluster: c.cluster.clone(),
        pods: c.pods.clone(),
        nodes: c.nodes.clone(),
        budgets,
    }
}

fn pod_keys(c: &Cluster) -> Vec<String> {
    let mut v: Vec<String> = c
        .pods
        .iter()
        .flat_map(|np| &np.classes)
        .flat_map(|cl| (0..cl.count()).map(|i| cl.pod_key(i)))
        .collect();
    v.sort();
    v
}

/// Every pod still bound exactly once, on a node that exists, and no node over capacity.
fn check_cluster(before: &Cluster, after: &Cluster) {
    assert_eq!(
        pod_keys(before),
        pod_keys(after),
        "a pod was stranded or duplicated"
    );
    let names: BTreeSet<&str> = after
        .cluster
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    for np in &after.pods {
        if np.classes.iter().any(|c| c.count() > 0) {
            assert!(
                names.contains(np.node.as_str()),
                "pods on removed node {}",
                np.node
            );
        }
    }
    for n in &after.cluster.nodes {
        assert!(
            n.used.fits_in(&n.allocatable),
            "{} is over capacity",
            n.name
        );
    }
}

#[test]
fn half_empty_cluster_gets_cheaper_and_keeps_every_pod() {
    let cat = synth::karpenter_catalog(60);
    let p = policy(ConsolidationPolicy::WhenEmptyOrUnderutilized, zero());
    let c = scenario(&cat, &p, 120, 3, 0.4);
    let (d, after) = decide_with_result(
        &input(&cat, &p, &c, BTreeMap::new()),
        &ConsolidationOptions::default(),
    );
    assert!(!d.moves.is_empty());
    assert!(d.price_per_hour_after < d.price_per_hour_before);
    check_cluster(&c, &after);
}

#[test]
fn when_empty_pools_only_lose_empty_nodes() {
    let cat = synth::karpenter_catalog(60);
    let p = policy(ConsolidationPolicy::WhenEmpty, zero());
    let c = scenario(&cat, &p, 120, 3, 0.4);
    let d = decide(
        &input(&cat, &p, &c, BTreeMap::new()),
        &ConsolidationOptions::default(),
    );
    assert!(
        d.moves
            .iter()
            .all(|m| m.reason == Reason::Empty && m.pods.is_empty())
    );
}

#[test]
fn consolidate_after_and_never_hold_nodes() {
    let cat = synth::karpenter_catalog(60);
    let p = policy(
        ConsolidationPolicy::WhenEmptyOrUnderutilized,
        IrDuration::Finite(std::time::Duration::from_secs(60)),
    );
    let mut c = scenario(&cat, &p, 120, 3, 0.4);
    for f in &mut c.nodes {
        f.stable_for = Some(std::time::Duration::from_secs(30));
    }
    let d = decide(
        &input(&cat, &p, &c, BTreeMap::new()),
        &ConsolidationOptions::default(),
    );
    assert!(d.moves.is_empty());
    assert!(
        d.blocked
            .iter()
            .all(|b| b.reason.contains("consolidates after 60s"))
    );
    let never = policy(
        ConsolidationPolicy::WhenEmptyOrUnderutilized,
        IrDuration::Never,
    );
    let d = decide(
        &input(&cat, &never, &c, BTreeMap::new()),
        &ConsolidationOptions::default(),
    );
    assert!(d.moves.is_empty() && d.blocked.is_empty());
}

#[test]
fn a_zero_budget_blocks_and_says_so() {
    let cat = synth::karpenter_catalog(60);
    let p = policy(ConsolidationPolicy::WhenEmptyOrUnderutilized, zero());
    let c = scenario(&cat, &p, 120, 3, 0.4);
    let b = BTreeMap::from([(
        "default".to_string(),
        BudgetLeft {
            empty: Some(0),
            underutilized: Some(0),
        },
    )]);
    let d = decide(&input(&cat, &p, &c, b), &ConsolidationOptions::default());
    assert!(d.moves.is_empty());
    assert!(d.blocked.iter().any(|b| b.reason.starts_with("budget")));
}

#[test]
fn nodes_not_ours_or_uninitialized_stay() {
    let cat = synth::karpenter_catalog(60);
    let p = policy(ConsolidationPolicy::WhenEmptyOrUnderutilized, zero());
    let mut c = scenario(&cat, &p, 120, 3, 0.4);
    for (i, f) in c.nodes.iter_mut().enumerate() {
        if i % 2 == 0 {
            f.pool = None;
        } else {
            f.initialized = false;
        }
    }
    let d = decide(
        &input(&cat, &p, &c, BTreeMap::new()),
        &ConsolidationOptions::default(),
    );
    assert!(d.moves.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn never_strands_never_pricier_never_over_budget(
        pods in 20usize..120,
        seed in 0u64..1000,
        keep in 0.2f64..0.9,
        empty in proptest::option::of(0usize..4),
        under in proptest::option::of(0usize..4),
    ) {
        let cat = synth::karpenter_catalog(40);
        let p = policy(ConsolidationPolicy::WhenEmptyOrUnderutilized, zero());
        let c = scenario(&cat, &p, pods, seed, keep);
        let budgets = BTreeMap::from([("default".to_string(), BudgetLeft { empty, underutilized: under })]);
        let (d, after) = decide_with_result(&input(&cat, &p, &c, budgets), &ConsolidationOptions::default());
        check_cluster(&c, &after);
        prop_assert!(d.price_per_hour_after <= d.price_per_hour_before + 1e-9);
        prop_assert!((after.price_per_hour() - d.price_per_hour_after).abs() < 1e-6);
        let saved: f64 = d.moves.iter().map(|m| m.saving_per_hour).sum();
        prop_assert!((d.price_per_hour_before - d.price_per_hour_after - saved).abs() < 1e-6);
        for m in &d.moves {
            prop_assert!(m.saving_per_hour > 0.0);
        }
        let count = |r: Reason| d.moves.iter().filter(|m| m.reason == r).map(|m| m.remove.len()).sum::<usize>();
        if let Some(e) = empty { prop_assert!(count(Reason::Empty) <= e); }
        if let Some(u) = under { prop_assert!(count(Reason::Underutilized) <= u); }
        // Moved pods are exactly the pods of the removed nodes.
        let before_on: BTreeMap<&str, Vec<String>> = c.pods.iter().map(|np| (np.node.as_str(), np.classes.iter().flat_map(|cl| (0..cl.count()).map(|i| cl.pod_key(i))).collect())).collect();
        for m in d.moves.iter().filter(|m| m.launch.is_empty() && m.remove.len() == 1) {
            if let Some(v) = before_on.get(m.remove[0].as_str()) {
                let mut a = v.clone(); a.sort();
                let mut b = m.pods.clone(); b.sort();
                prop_assert_eq!(a, b);
            }
        }
    }
}
