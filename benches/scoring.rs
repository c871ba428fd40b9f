//! Scoring speed: candidates scored per second by a realistic 20-line
//! script (memoised `score_offering`, and the same body run per call as
//! `score`), and the solver's 10k-pod benchmark with one scored pool versus
//! none.
//!
//! `cargo bench --bench scoring`; figures in BENCHMARKS.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "benchmark harness: a failed set-up aborts the run"
)]

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nodewright::catalog::Catalog;
use nodewright::ir::PolicySet;
use nodewright::scoring::{NodeLoad, OfferingView, RhaiScorer, Scorer, Script};
use nodewright::solver::{SolveInput, solve};
use nodewright::synth;

/// The product binary's allocator (see `src/main.rs`), so benchmarks time
/// what users run.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SCRIPT: &str = include_str!("score-20-lines.rhai");

fn scorer(text: &str) -> RhaiScorer {
    let script = match Script::compile(Path::new("benches/score-20-lines.rhai"), text) {
        Ok(s) => s,
        Err(d) => panic!("{}", d.render(100)),
    };
    RhaiScorer::new(vec![Arc::new(script)], HashMap::new())
}

fn views(cat: &Catalog) -> Vec<OfferingView<'_>> {
    cat.offerings
        .iter()
        .map(|o| OfferingView {
            pool: "default",
            instance_type: &cat.types[o.type_index as usize],
            zone: cat.zones[o.zone_index as usize].name.as_str(),
            capacity_type: o.capacity_type,
            price: o.price.unwrap_or(1.0),
        })
        .collect()
}

fn bench_candidates(c: &mut Criterion) {
    let cat = synth::karpenter_catalog(400);
    let vs = views(&cat);
    let mut g = c.benchmark_group("scoring");
    g.throughput(Throughput::Elements(vs.len() as u64));
    let memo = scorer(SCRIPT);
    g.bench_function("score_offering_memoised", |b| {
        b.iter(|| {
            for v in &vs {
                black_box(memo.score_offering(v));
            }
        })
    });
    // The same body as a per-candidate `score(c)`: never memoised.
    let per_call = scorer(&SCRIPT.replace("fn score_offering(o)", "fn score(o)"));
    let ns = ["default"];
    let lbl = std::collections::BTreeMap::new();
    let labels = [&lbl];
    let load = NodeLoad {
        pods: 3,
        cpu_requested_milli: 1500,
        memory_requested: 3 << 30,
        cpu_utilisation: 0.4,
        memory_utilisation: 0.3,
        namespaces: &ns,
        pod_labels: &labels,
    };
    g.bench_function("score_per_call", |b| {
        b.iter(|| {
            for v in &vs {
                black_box(per_call.score_node(v, &load));
            }
        })
    });
    g.finish();
}

fn bench_solver_overhead(c: &mut Criterion) {
    let cat = synth::karpenter_catalog(400);
    let policy = PolicySet {
        pools: vec![synth::default_pool("default")],
        ..Default::default()
    };
    let w = synth::diverse_workload(10_000, 42);
    let scored = scorer(SCRIPT);
    let mut g = c.benchmark_group("solve_10k");
    g.sample_size(10);
    for (name, s) in [("unscored", None), ("scored", Some(&scored as &dyn Scorer))] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let input = SolveInput {
                    policy: &policy,
                    catalog: &cat,
                    workload: &w,
                    scorer: s,
                    unavailable: None,
                };
                black_box(solve(&input))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_candidates, bench_solver_overhead);
criterion_main!(benches);
