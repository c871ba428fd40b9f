//! Memory per pool: what compiling a policy of many pools against the
//! embedded catalog keeps, in bytes per pool, and how long planning takes.
//!
//! A pool's per-offering tables (prices, ranks, room, the per-domain lists)
//! are shared with every pool that computes the same ones
//! (`solver::tables::compile_pools`); what a pool owns is one bit per
//! offering and a few small fields. Before that, each pool held its own
//! copies: about 2.7 MB per pool, so 1,000 pools took 2.7 GB.
//!
//! Counted with an instrumented global allocator (bytes requested, so the
//! figure does not depend on the allocator), not timed by criterion.
//!
//! Run: `cargo bench --bench pool_memory`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "benchmark harness: a failed set-up aborts the run"
)]

use std::alloc::System;
use std::path::PathBuf;
use std::time::Instant;

use nodewright::catalog::Catalog;
use nodewright::ir::{PolicySet, Pool, Requirements, labels};
use nodewright::solver::tables::Tables;
use nodewright::solver::{SolveInput, solve};
use nodewright::synth;
use nodewright::workload::{LoadOptions, Workload, load};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const FAMILIES: [&str; 16] = [
    "m5", "m6i", "m7i", "c5", "c6i", "c7i", "r5", "r6i", "r7i", "m6a", "c6a", "r6a", "m7g", "c7g",
    "r7g", "t3",
];

/// `n` pools; `varied`: each allows two families of its own and has its
/// own weight (nothing to share but the catalog-wide values), else all
/// allow every type (only the names and labels differ).
fn policy(n: usize, varied: bool) -> PolicySet {
    let pools: Vec<Pool> = (0..n)
        .map(|i| {
            let mut p = synth::default_pool(&format!("pool-{i:04}"));
            let mut r = Requirements::new();
            r.require_in(labels::CAPACITY_TYPE, &["spot", "on-demand"]);
            if varied {
                let (f, g) = (FAMILIES[i % 16], FAMILIES[(i * 7 + 3) % 16]);
                r.require_in(labels::INSTANCE_FAMILY, &[f, g]);
                p.weight = 10 + (i % 5) as i32;
            } else {
                r.require_in(labels::ARCH, &["amd64", "arm64"]);
                p.weight = 10;
            }
            p.requirements = r;
            p.labels.insert("team".into(), format!("team-{i:04}"));
            p
        })
        .collect();
    let mut set = PolicySet {
        pools,
        ..Default::default()
    };
    set.sort_pools();
    set
}

/// Bytes the compiled tables of `policy` keep alive.
fn table_bytes(policy: &PolicySet, catalog: &Catalog, workload: &Workload) -> (usize, f64) {
    let input = SolveInput {
        policy,
        catalog,
        workload,
        scorer: None,
        unavailable: None,
    };
    let region = Region::new(GLOBAL);
    let t0 = Instant::now();
    let tables = Tables::new(&input);
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let s = region.change();
    // stats_alloc folds reallocations into bytes allocated and deallocated.
    let live = s.bytes_allocated.saturating_sub(s.bytes_deallocated);
    drop(tables);
    (live, ms)
}

fn main() {
    let catalog = match Catalog::embedded() {
        Ok(c) => c,
        Err(e) => panic!("embedded catalog: {e}"),
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/web-and-batch.yaml");
    let workload = match load(&[path], &LoadOptions::default()) {
        Ok(l) => l.workload,
        Err(e) => panic!("examples/web-and-batch.yaml: {e:?}"),
    };
    println!(
        "embedded catalog: {} types, {} offerings; workload examples/web-and-batch.yaml",
        catalog.types.len(),
        catalog.offerings.len()
    );
    println!(
        "{:>7} {:>7} {:>14} {:>12} {:>11} {:>10}",
        "shape", "pools", "tables bytes", "bytes/pool", "tables ms", "plan ms"
    );
    for varied in [false, true] {
        let shape = if varied { "varied" } else { "same" };
        let (base, _) = table_bytes(&policy(1, varied), &catalog, &workload);
        for n in [1usize, 100, 1000] {
            let p = policy(n, varied);
            let (bytes, ms) = table_bytes(&p, &catalog, &workload);
            let per_pool = if n > 1 {
                (bytes.saturating_sub(base)) as f64 / (n - 1) as f64
            } else {
                bytes as f64
            };
            let t0 = Instant::now();
            let plan = solve(&SolveInput {
                policy: &p,
                catalog: &catalog,
                workload: &workload,
                scorer: None,
                unavailable: None,
            });
            let plan_ms = t0.elapsed().as_secs_f64() * 1e3;
            assert!(plan.unschedulable.is_empty(), "{shape} {n}: unplaced pods");
            println!("{shape:>7} {n:>7} {bytes:>14} {per_pool:>12.0} {ms:>11.1} {plan_ms:>10.1}");
        }
    }
}
