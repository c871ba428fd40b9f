//! The embedded catalog (issue 3): how long it takes to load, and how long a
//! 5-term requirement set takes to filter the full catalog through the index.
//! Targets: load < 5 ms, filter < 20 µs.
//!
//! Run: `cargo bench --bench catalog`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "benchmark harness: a failed set-up aborts the run"
)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use nodewright::catalog::build::{DEFAULT_SPOT_PRICE_FRACTION, catalog_from_raw};
use nodewright::catalog::embedded::{EMBEDDED_BYTES, decode_raw, embedded_static, load_embedded};
use nodewright::ir::{Operator, Requirement, Requirements, labels};

/// The product binary's allocator (see `src/main.rs`), so benchmarks time
/// what users run.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn term(key: &str, op: Operator, values: &[&str]) -> Requirement {
    Requirement {
        key: key.to_string(),
        op,
        values: values.iter().map(|s| s.to_string()).collect(),
        min_values: None,
        origin: None,
    }
}

fn bench(c: &mut Criterion) {
    // Time to load, not to free: the catalog lives for the whole process, so
    // its drop is kept out of the measurement.
    c.bench_function("catalog/load_embedded (decode, no cache)", |b| {
        b.iter_with_large_drop(|| load_embedded().expect("decodes"))
    });
    // What loading cost before the built catalog was embedded: decode the raw
    // specs and build labels, capacity and offerings.
    c.bench_function("catalog/decode raw + build (the old load path)", |b| {
        b.iter_with_large_drop(|| {
            let raw = decode_raw(EMBEDDED_BYTES).expect("decodes");
            catalog_from_raw(&raw, DEFAULT_SPOT_PRICE_FRACTION)
        })
    });

    let cat = embedded_static().expect("decodes");
    let index = cat.index();
    // A typical general-purpose pool: capacity type, arch, category,
    // generation, and a family exclusion.
    let reqs = Requirements::from_terms(
        [
            term(labels::CAPACITY_TYPE, Operator::In, &["spot", "on-demand"]),
            term(labels::ARCH, Operator::In, &["amd64", "arm64"]),
            term(labels::INSTANCE_CATEGORY, Operator::In, &["c", "m", "r"]),
            term(labels::INSTANCE_GENERATION, Operator::Gt, &["5"]),
            term(labels::INSTANCE_FAMILY, Operator::NotIn, &["m6a", "c6a"]),
        ]
        .iter(),
    );
    let hits = index.filter(&reqs).count();
    assert!(hits > 0, "the benchmark's requirements match something");
    c.bench_function(
        &format!(
            "catalog/filter 5 terms over {} offerings",
            cat.offerings.len()
        ),
        |b| b.iter(|| black_box(index.filter(black_box(&reqs)))),
    );
    c.bench_function("catalog/filter_naive 5 terms (reference scan)", |b| {
        b.iter(|| black_box(cat.filter_naive(black_box(&reqs))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
