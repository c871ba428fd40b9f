//! Hot-reload latency: from a policy file's rename-save to the new version
//! being active, through the real notify watcher and its debounce, p50 and
//! p99 over 200 rewrites. `cargo bench --bench reload`; figures in BENCHMARKS.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "benchmark harness: a failed set-up aborts the run"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use nodewright::reload::{Reloader, WatchOptions, watch};

/// The product binary's allocator (see `src/main.rs`), so benchmarks time
/// what users run.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REWRITES: usize = 200;

fn pool(i: usize) -> String {
    format!("pool gen{i} {{\n  require karpenter.sh/capacity-type in [on-demand]\n}}\n")
}

fn main() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let file = dir.path().join("a.policy");
    let save = |text: &str| {
        let tmp = dir.path().join("a.tmp~");
        std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &file))
    };
    if let Err(e) = save(&pool(0)) {
        panic!("{e}");
    }
    let r = Arc::new(match Reloader::new(vec![dir.path().to_path_buf()]) {
        Ok(r) => r,
        Err(d) => panic!("{d}"),
    });
    let opts = WatchOptions::default();
    let _guard = match watch(Arc::clone(&r), opts, |_| {}) {
        Ok(g) => g,
        Err(e) => panic!("{e}"),
    };
    let mut lat = Vec::with_capacity(REWRITES);
    for i in 1..=REWRITES {
        let want = r.active().number + 1;
        let t = Instant::now();
        if let Err(e) = save(&pool(i)) {
            panic!("{e}");
        }
        while r.active().number < want {
            if t.elapsed() > Duration::from_secs(30) {
                panic!("rewrite {i} not picked up in 30 s");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        lat.push(t.elapsed());
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!(
        "reload latency over {REWRITES} rewrites (debounce {} ms): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        opts.debounce.as_millis(),
        p(0.50).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );
}
