//! Karpenter's scheduling benchmark (400 types, "diverse" pods) on our
//! solver, with the first-fit-decreasing baseline's cost on the same input.
//!
//! `cargo bench --bench solver` prints a cost table, then criterion timings.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nodewright::ir::PolicySet;
use nodewright::solver::bound::fractional_lower_bound;
use nodewright::solver::pack::Strategy;
use nodewright::solver::{SolveInput, solve_with, synth};

const SIZES: [usize; 4] = [1000, 5000, 10000, 20000];

fn cost_table() {
    let catalog = synth::karpenter_catalog(400);
    let policy = PolicySet {
        pools: vec![synth::default_pool("default")],
        ..Default::default()
    };
    println!(
        "pods  classes  nodes  unschedulable  $/hour  FFD-nodes  FFD-$/hour  lower-bound-$/hour  one-run-ms"
    );
    for n in SIZES {
        let w = synth::diverse_workload(n, 42);
        let input = SolveInput {
            policy: &policy,
            catalog: &catalog,
            workload: &w,
            scorer: None,
            unavailable: None,
        };
        let t = Instant::now();
        let p = solve_with(&input, Strategy::CostAware);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let f = solve_with(&input, Strategy::FirstFitDecreasing);
        let lb = fractional_lower_bound(&input);
        println!(
            "{n}  {}  {}  {}  {:.2}  {}  {:.2}  {lb:.2}  {ms:.1}",
            w.classes.len(),
            p.nodes.len(),
            p.unschedulable.len(),
            p.total_price_per_hour,
            f.nodes.len(),
            f.total_price_per_hour
        );
    }
}

/// The real-catalog benchmark: $/hour against the fractional lower bound.
/// TODO(merge): use `catalog::embedded::embedded()`; until then a Catalog JSON
/// given in NODEWRIGHT_BENCH_CATALOG.
fn real_catalog_table() {
    let Ok(path) = std::env::var("NODEWRIGHT_BENCH_CATALOG") else {
        println!("real catalog: skipped (set NODEWRIGHT_BENCH_CATALOG to a Catalog JSON)");
        return;
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            println!("real catalog: cannot read {path}: {e}");
            return;
        }
    };
    let catalog: nodewright::catalog::Catalog = match serde_json::from_str(&text) {
        Ok(c) => c,
        Err(e) => {
            println!("real catalog: {path}: {e}");
            return;
        }
    };
    let policy = PolicySet {
        pools: vec![synth::default_pool("default")],
        ..Default::default()
    };
    let w = synth::realistic_workload();
    let input = SolveInput {
        policy: &policy,
        catalog: &catalog,
        workload: &w,
        scorer: None,
        unavailable: None,
    };
    let t = Instant::now();
    let p = solve_with(&input, Strategy::CostAware);
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let lb = fractional_lower_bound(&input);
    println!(
        "real catalog: {} offerings, {} nodes, ${:.3}/hour, lower bound ${lb:.3}/hour (x{:.3}), {ms:.1} ms",
        catalog.offerings.len(),
        p.nodes.len(),
        p.total_price_per_hour,
        p.total_price_per_hour / lb.max(1e-9)
    );
}

fn bench(c: &mut Criterion) {
    cost_table();
    real_catalog_table();
    let catalog = synth::karpenter_catalog(400);
    let policy = PolicySet {
        pools: vec![synth::default_pool("default")],
        ..Default::default()
    };
    let mut g = c.benchmark_group("karpenter_diverse");
    g.sample_size(10);
    for n in SIZES {
        let w = synth::diverse_workload(n, 42);
        let input = SolveInput {
            policy: &policy,
            catalog: &catalog,
            workload: &w,
            scorer: None,
            unavailable: None,
        };
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("cost_aware", n), &input, |b, i| {
            b.iter(|| black_box(solve_with(i, Strategy::CostAware)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
