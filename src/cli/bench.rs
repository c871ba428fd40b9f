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
}

/// Runs `nodewright bench`.
pub(super) fn run(args: BenchArgs) -> miette::Result<ExitCode> {
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
