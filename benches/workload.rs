//! Loading Kubernetes YAML into pod classes: how fast a large workload reads.
//!
//! `cargo bench --bench workload`. Inputs: the web-and-batch example with the
//! web Deployment scaled to 20,000 replicas (one template, many names), and
//! 1,000 distinct bare Pods in one `kind: List` (one document parse each).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nodewright::workload::{LoadOptions, load_text};

/// The product binary's allocator (see `src/main.rs`), so benchmarks time
/// what users run.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bare_pods(n: usize) -> String {
    let mut s = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for i in 0..n {
        s.push_str(&format!(
            "- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: p{i}\n    labels: {{app: a{}}}\n  spec:\n    containers:\n    - name: c\n      image: x\n      resources:\n        requests: {{cpu: {}m, memory: {}Mi}}\n",
            i % 50,
            100 + i % 1400,
            128 + i % 4000
        ));
    }
    s
}

fn bench(c: &mut Criterion) {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/web-and-batch.yaml"
    ))
    .expect("examples/web-and-batch.yaml");
    let mut opts = LoadOptions::default();
    opts.replicas.insert("web".into(), 20_000);
    let mut g = c.benchmark_group("workload_load");
    g.sample_size(10);
    g.throughput(Throughput::Elements(20_000));
    g.bench_function("deployment_20k_replicas", |b| {
        b.iter(|| black_box(load_text("web-and-batch.yaml", &example, &opts).expect("loads")))
    });
    let pods = bare_pods(1000);
    g.throughput(Throughput::Elements(1000));
    g.bench_function("list_of_1000_pods", |b| {
        b.iter(|| black_box(load_text("pods.yaml", &pods, &LoadOptions::default()).expect("loads")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
