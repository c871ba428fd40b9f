//! Parse + compile a generated 10,000-line policy set with the pest parser
//! (the only one), so a slowdown in the grammar, the AST walk or the checker
//! shows. About 60 ms for 10,000 lines is fine: nobody writes that much policy.
//!
//! Run: `cargo bench --bench policy_compile`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "benchmark harness: a failed set-up aborts the run"
)]

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use nodewright::policy;

/// The product binary's allocator (see `src/main.rs`), so benchmarks time
/// what users run.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// About `lines` lines of realistic policy text, split over 10 files.
fn generate(lines: usize) -> Vec<(String, String)> {
    let mut files = vec![String::new(); 10];
    let mut n = 0;
    let mut i = 0;
    while n < lines {
        let f = &mut files[i % 10];
        let _ = write!(
            f,
            "pool p{i} {{\n  weight {w}\n  require karpenter.sh/capacity-type in [spot, on-demand]\n  require kubernetes.io/arch in [amd64, arm64]\n  require karpenter.k8s.aws/instance-category in [c, m, r]\n  require karpenter.k8s.aws/instance-generation > 5\n  require karpenter.k8s.aws/instance-family in [m5, m6i, m7i, c6i, r6i] min 2\n  limit cpu 1000\n  limit memory 4000Gi\n  label team = \"t{i}\"\n  taint dedicated = t{i} : NoSchedule\n  tag owner = \"o{i}\"\n  node-class nc{nc}\n  kubelet {{\n    max-pods 110\n    kube-reserved cpu 100m\n  }}\n  disruption {{\n    consolidate when-empty-or-underutilized after 30s\n    expire-after 720h\n    budget 10%\n  }}\n}}\n\nplace pods where namespace == \"ns{i}\" and label(\"tier\") in [a, b] on pool p{i}\ndiscount 10% on instance-family in [m6i, c6i] and zone != us-east-1e weight {w}\n\n",
            w = i % 100,
            nc = i % 10
        );
        n += 26;
        i += 1;
    }
    for (c, file) in files.iter_mut().enumerate() {
        let _ = write!(
            file,
            "node-class nc{c} {{\n  ami alias al2023@latest\n  subnets where tag karpenter.sh/discovery = \"c\"\n  security-groups where tag karpenter.sh/discovery = \"c\"\n  role \"r\"\n}}\n"
        );
    }
    files
        .into_iter()
        .enumerate()
        .map(|(i, t)| (format!("gen{i}.policy"), t))
        .collect()
}

fn bench(c: &mut Criterion) {
    let files = generate(10_000);
    let total: usize = files.iter().map(|(_, t)| t.lines().count()).sum();
    assert!(total >= 10_000, "{total} lines");
    // Sanity: the generated set compiles cleanly.
    let parsed: Vec<_> = files
        .iter()
        .map(|(n, t)| policy::parse(n, t).expect("generated policy parses"))
        .collect();
    policy::compile(&parsed).expect("generated policy compiles");

    c.bench_function("parse+compile 10k lines", |b| {
        b.iter(|| {
            let parsed: Vec<_> = files
                .iter()
                .map(|(n, t)| policy::parse(n, t).expect("parses"))
                .collect();
            black_box(policy::compile(&parsed).expect("compiles"))
        })
    });
    c.bench_function("parse 10k lines", |b| {
        b.iter(|| {
            for (n, t) in &files {
                black_box(policy::parse(n, t).expect("parses"));
            }
        })
    });
    c.bench_function("compile 10k lines (pre-parsed)", |b| {
        b.iter(|| black_box(policy::compile(&parsed).expect("compiles")))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
