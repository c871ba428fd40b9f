//! `nodewright bench`: Karpenter's scheduling benchmark on our solver, next
//! to a first-fit-decreasing baseline on the same input.

use std::process::ExitCode;
use std::time::Instant;

use crate::ir::PolicySet;
use crate::solver::pack::Strategy;
use crate::solver::{SolveInput, solve_with};
use crate::synth;

/// Arguments of `nodewright bench`.
#[derive(Debug, clap::Args)]
pub(super) struct BenchArgs {
    /// `consolidate`: the consolidation benchmark (plan, delete half the pods, consolidate
    /// to a fixed point); without it, the scheduling benchmark.
    #[arg(value_enum)]
    pub what: Option<BenchKind>,
    /// Pod counts to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000,20000")]
    pub pods: Vec<usize>,
    /// Instance types in the synthetic catalog.
    #[arg(long, default_value_t = 400)]
    pub types: usize,
    /// Seed of the pod generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Runs per size (the fastest is reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Skip the first-fit-decreasing baseline (it is much slower than the
    /// solver, so profiles of the solver are clearer without it).
    #[arg(long)]
    pub no_ffd: bool,
    /// With `consolidate`: single-node moves tried per round (least disruptive first).
    #[arg(long, default_value_t = crate::disrupt::consolidate::ConsolidationOptions::default().max_single_node_tries)]
    pub single_node_tries: usize,
}

/// Which benchmark `nodewright bench` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum BenchKind {
    Consolidate,
}

/// Runs `nodewright bench`.
pub(super) fn run(args: BenchArgs) -> miette::Result<ExitCode> {
    if args.what == Some(BenchKind::Consolidate) {
        return consolidate(&args);
    }
    let catalog = synth::karpenter_catalog(args.types);
    let policy = PolicySet {
        pools: vec![synth::default_pool("default")],
        ..Default::default()
    };
    println!(
        "{:>7} {:>8} {:>11} {:>12} {:>7} {:>6} {:>12} {:>10}",
        "pods", "classes", "solve ms", "pods/s", "nodes", "unsch", "$/hour", "FFD $/hour"
    );
    for &n in &args.pods {
        let workload = synth::diverse_workload(n, args.seed);
        let input = SolveInput {
            policy: &policy,
            catalog: &catalog,
            workload: &workload,
            scorer: None,
            unavailable: None,
        };
        let mut best = f64::INFINITY;
        let mut plan = None;
        for _ in 0..args.runs.max(1) {
            let t = Instant::now();
            let p = solve_with(&input, Strategy::CostAware);
            best = best.min(t.elapsed().as_secs_f64());
            plan = Some(p);
        }
        let Some(plan) = plan else { continue };
        let ffd = if args.no_ffd {
            f64::NAN
        } else {
            solve_with(&input, Strategy::FirstFitDecreasing).total_price_per_hour
        };
        println!(
            "{:>7} {:>8} {:>11.2} {:>12.0} {:>7} {:>6} {:>12.2} {:>10.2}",
            n,
            workload.classes.len(),
            best * 1e3,
            n as f64 / best,
            plan.nodes.len(),
            plan.unschedulable.len(),
            plan.total_price_per_hour,
            ffd
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `nodewright bench consolidate`: plan the diverse pods, delete a seeded random half of
/// them, then run consolidation rounds (no budget limit) until no move is left. Reports
/// $/hour before, after and of a fresh plan of the remaining pods, what was disrupted, and
/// each round's decision time. With the default `--pods`, it runs the 10k-pod scenario and
/// a small one of about 50 nodes.
fn consolidate(args: &BenchArgs) -> miette::Result<ExitCode> {
    use crate::disrupt::consolidate::{
        ConsolidationInput, ConsolidationOptions, cluster_from_plan, decide_with_result,
    };
    use crate::ir::{ConsolidationPolicy, Duration as IrDuration};
    use rand::{Rng, SeedableRng};
    let catalog = synth::karpenter_catalog(args.types);
    let mut pool = synth::default_pool("default");
    pool.disruption.consolidation_policy = ConsolidationPolicy::WhenEmptyOrUnderutilized;
    pool.disruption.consolidate_after = IrDuration::Finite(std::time::Duration::ZERO);
    let policy = PolicySet {
        pools: vec![pool],
        ..Default::default()
    };
    let sizes: Vec<usize> = if args.pods == [1000, 5000, 10000, 20000] {
        vec![10_000, 300]
    } else {
        args.pods.clone()
    };
    let opts = ConsolidationOptions {
        max_single_node_tries: args.single_node_tries,
        ..ConsolidationOptions::default()
    };
    for n in sizes {
        let workload = synth::diverse_workload(n, args.seed);
        let plan = solve_with(
            &SolveInput {
                policy: &policy,
                catalog: &catalog,
                workload: &workload,
                scorer: None,
                unavailable: None,
            },
            Strategy::CostAware,
        );
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed ^ 0x5eed);
        let mut cluster = cluster_from_plan(&plan, &workload, |_| rng.random_bool(0.5));
        let remaining: usize = cluster
            .pods
            .iter()
            .flat_map(|p| &p.classes)
            .map(|c| c.count())
            .sum();
        let fresh_workload = crate::workload::Workload {
            classes: cluster.pending(),
            daemonsets: vec![],
            nodes: vec![],
        };
        let fresh = solve_with(
            &SolveInput {
                policy: &policy,
                catalog: &catalog,
                workload: &fresh_workload,
                scorer: None,
                unavailable: None,
            },
            Strategy::CostAware,
        );
        let before = cluster.price_per_hour();
        let nodes_before = cluster.nodes.len();
        println!(
            "scenario: {n} diverse pods on {nodes_before} nodes (${before:.2}/hour), {remaining} left after deleting half (seed {})",
            args.seed
        );
        println!(
            "{:>5} {:>6} {:>7} {:>8} {:>9} {:>12} {:>12}",
            "round", "nodes", "moves", "removed", "pods", "decide ms", "$/hour"
        );
        let (mut disrupted, mut moved, mut raised) = (0usize, 0usize, 0usize);
        for round in 1..=50 {
            let input = ConsolidationInput {
                policy: &policy,
                catalog: &catalog,
                unavailable: None,
                cluster: cluster.cluster.clone(),
                pods: cluster.pods.clone(),
                nodes: cluster.nodes.clone(),
                budgets: Default::default(),
            };
            let nodes_now = cluster.nodes.len();
            let t = Instant::now();
            let (c, next) = decide_with_result(&input, &opts);
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let removed: usize = c.moves.iter().map(|m| m.remove.len()).sum();
            let pods: usize = c.moves.iter().map(|m| m.pods.len()).sum();
            raised += c.moves.iter().filter(|m| m.saving_per_hour <= 0.0).count();
            println!(
                "{:>5} {:>6} {:>7} {:>8} {:>9} {:>12.1} {:>12.2}",
                round,
                nodes_now,
                c.moves.len(),
                removed,
                pods,
                ms,
                c.price_per_hour_after
            );
            if c.price_per_hour_after > c.price_per_hour_before + 1e-9 {
                raised += 1;
            }
            disrupted += removed;
            moved += pods;
            cluster = next;
            if c.moves.is_empty() {
                break;
            }
        }
        let after = cluster.price_per_hour();
        println!(
            "before ${before:.2}/hour, after ${after:.2}/hour, fresh plan ${:.2}/hour ({:.3}x fresh); {disrupted} nodes disrupted, {moved} pods moved, {raised} cost-raising moves, {} fresh-plan unschedulable\n",
            fresh.total_price_per_hour,
            after / fresh.total_price_per_hour.max(1e-9),
            fresh.unschedulable.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
