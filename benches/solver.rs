//! Karpenter's scheduling benchmark (400 types, "diverse" pods) on our
//! solver, with the first-fit-decreasing baseline's cost on the same input.
//!
//! `cargo bench --bench solver` prints a cost table, then criterion timings.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nodewright::ir::PolicySet;
use nodewright::solver::pack::Strategy;
use nodewright::solver::{SolveInput, solve_with, synth};

const SIZES: [usize; 4] = [1000, 5000, 10000, 20000];

fn cost_table() {
    let catalog = synth::karpenter_catalog(400);
    let policy = PolicySet {
        pools: vec![synth::default_pool("default")],
        ..Default::default()
    };
    println!("pods  classes  nodes  unschedulable  $/hour  FFD-nodes  FFD-$/hour  one-run-ms");
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
        println!(
            "{n}  {}  {}  {}  {:.2}  {}  {:.2}  {ms:.1}",
            w.classes.len(),
            p.nodes.len(),
            p.unschedulable.len(),
            p.total_price_per_hour,
            f.nodes.len(),
            f.total_price_per_hour
        );
    }
}

fn bench(c: &mut Criterion) {
    cost_table();
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
