//! Karpenter's scheduling benchmark (400 types, "diverse" pods) on our
//! solver, with the first-fit-decreasing baseline's cost on the same input.
//!
//! A second table runs the embedded real catalog against a fractional lower bound.
//!
//! `cargo bench --bench solver` prints both cost tables, then criterion timings.
//! `NODEWRIGHT_BENCH_TABLES=0` skips the tables (their FFD runs take minutes)
//! when only the timings are wanted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "benchmark harness: a failed set-up aborts the run"
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nodewright::catalog::Catalog;
use nodewright::catalog::embedded::embedded_static;
use nodewright::import::load_policy_set;
use nodewright::ir::PolicySet;
use nodewright::solver::bound::fractional_lower_bound;
use nodewright::solver::pack::Strategy;
use nodewright::solver::{SolveInput, solve_with};
use nodewright::synth;
use nodewright::workload::{LoadOptions, Workload, load_files};

/// The product binary's allocator (see `src/main.rs`), so benchmarks time
/// what users run.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// One real-catalog case: a policy and a workload.
struct RealCase {
    name: &'static str,
    policy: PolicySet,
    workload: Workload,
}

/// The real-catalog cases: the embedded catalog (every type, zone and
/// capacity type) under an unrestricted pool and under `policies/default.policy`,
/// with the small realistic workload, the web-and-batch example and 1,000
/// diverse pods. A case whose input cannot be read fails the benchmark.
fn real_cases() -> Vec<RealCase> {
    let unrestricted = PolicySet {
        pools: vec![synth::default_pool("default")],
        ..Default::default()
    };
    let (default_policy, _warnings) = load_policy_set(&[PathBuf::from("policies/default.policy")])
        .unwrap_or_else(|e| panic!("policies/default.policy: {e}"));
    let example = load_files(
        &[PathBuf::from("examples/web-and-batch.yaml")],
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("examples/web-and-batch.yaml: {e}"));
    vec![
        RealCase {
            name: "realistic, unrestricted pool",
            policy: unrestricted.clone(),
            workload: synth::realistic_workload(),
        },
        RealCase {
            name: "realistic, default.policy",
            policy: default_policy.clone(),
            workload: synth::realistic_workload(),
        },
        RealCase {
            name: "web-and-batch, default.policy",
            policy: default_policy.clone(),
            workload: example,
        },
        RealCase {
            name: "diverse 1k, unrestricted pool",
            policy: unrestricted,
            workload: synth::diverse_workload(1000, 42),
        },
        RealCase {
            name: "diverse 1k, default.policy",
            policy: default_policy,
            workload: synth::diverse_workload(1000, 42),
        },
    ]
}

/// The real-catalog benchmark: $/hour against the fractional lower bound.
fn real_catalog_table(catalog: &Catalog, cases: &[RealCase]) {
    println!(
        "real catalog ({} types, {} offerings): case | pods | nodes | unschedulable | $/hour | lower bound $/hour | ratio | one-run ms",
        catalog.types.len(),
        catalog.offerings.len()
    );
    for case in cases {
        let input = SolveInput {
            policy: &case.policy,
            catalog,
            workload: &case.workload,
            scorer: None,
            unavailable: None,
        };
        let t = Instant::now();
        let p = solve_with(&input, Strategy::CostAware);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let lb = fractional_lower_bound(&input);
        let pods: usize = case.workload.classes.iter().map(|c| c.count()).sum();
        println!(
            "{} | {pods} | {} | {} | {:.4} | {lb:.4} | {:.3} | {ms:.1}",
            case.name,
            p.nodes.len(),
            p.unschedulable.len(),
            p.total_price_per_hour,
            p.total_price_per_hour / lb.max(1e-9)
        );
    }
}

fn bench(c: &mut Criterion) {
    // The cost tables run FFD at 20k pods (minutes); timing runs may skip them.
    let tables = std::env::var("NODEWRIGHT_BENCH_TABLES").map_or(true, |v| v != "0");
    if tables {
        cost_table();
    }
    let real = embedded_static().unwrap_or_else(|e| panic!("embedded catalog: {e}"));
    let cases = real_cases();
    if tables {
        real_catalog_table(real, &cases);
    }
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
    let mut g = c.benchmark_group("real_catalog");
    g.sample_size(10);
    for case in &cases {
        let input = SolveInput {
            policy: &case.policy,
            catalog: real,
            workload: &case.workload,
            scorer: None,
            unavailable: None,
        };
        g.bench_with_input(BenchmarkId::from_parameter(case.name), &input, |b, i| {
            b.iter(|| black_box(solve_with(i, Strategy::CostAware)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
