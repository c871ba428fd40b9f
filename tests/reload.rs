//! Hot reload: a changed policy or script is swapped in whole, a change that
//! does not compile leaves the last good version active (and is counted), the
//! file watcher follows rename-saves and ConfigMap `..data` symlink swaps, and
//! plans running during 1,000 rewrites each see one consistent version.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nodewright::reload::{Outcome, Reloader, WatchOptions, watch};
use nodewright::solver::{SolveInput, solve};
use nodewright::synth;
use nodewright::workload::Workload;

fn pool(name: &str, gen_label: usize) -> String {
    format!(
        "pool {name} {{\n  require karpenter.sh/capacity-type in [on-demand]\n  label gen = \"{gen_label}\"\n}}\n"
    )
}

/// Writes by rename, as editors and `kubectl cp` do: never a half-written file.
fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("{e}"));
}

fn reloader(dir: &Path) -> Reloader {
    Reloader::new(vec![dir.to_path_buf()]).unwrap_or_else(|d| panic!("{d}"))
}

#[test]
fn bad_change_keeps_the_last_good_version_and_is_counted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("a.policy");
    save(&file, &pool("one", 1));
    let r = reloader(dir.path());
    assert_eq!(r.active().number, 1);
    assert_eq!(r.check(), Outcome::Unchanged);

    save(
        &file,
        "pool one {\n  require karpenter.sh/capacity-type ni [spot]\n}\n",
    );
    let Outcome::Failed(d) = r.check() else {
        panic!("a syntax error must fail")
    };
    assert!(d.contains("a.policy:2:"), "{d}");
    assert_eq!(r.active().number, 1);
    assert_eq!(r.active().policy.pools[0].name, "one");
    let m = r.metrics_text();
    assert!(
        m.contains("nodewright_policy_reload_failures_total 1"),
        "{m}"
    );
    assert!(m.contains("nodewright_policy_last_reload_ok 0"), "{m}");
    assert!(m.contains("nodewright_policy_active_version 1"), "{m}");
    // The same bad content is not recompiled or counted again.
    assert_eq!(r.check(), Outcome::Unchanged);

    save(&file, &format!("{}{}", pool("one", 1), pool("two", 2)));
    let Outcome::Swapped(line) = r.check() else {
        panic!("a good change must swap")
    };
    assert_eq!(
        line,
        "policy v1 -> v2: pools added two, removed none, changed none; scripts changed none"
    );
    assert_eq!(r.active().number, 2);
    assert!(
        r.metrics_text()
            .contains("nodewright_policy_last_reload_ok 1")
    );
    // Rewriting identical content is not a change.
    save(&file, &format!("{}{}", pool("one", 1), pool("two", 2)));
    assert_eq!(r.check(), Outcome::Unchanged);
}

#[test]
fn script_changes_swap_and_broken_scripts_keep_the_last_good() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let script = dir.path().join("s.rhai");
    save(&script, "fn score_offering(o) { 0.0 }\n");
    save(
        &dir.path().join("a.policy"),
        &format!("{}score with \"s.rhai\"\n", pool("one", 1)),
    );
    let r = reloader(dir.path());
    assert!(r.active().scorer.is_some());

    save(&script, "fn score_offering(o) {\n  let = 1;\n}\n");
    let Outcome::Failed(d) = r.check() else {
        panic!("a broken script must fail")
    };
    assert!(d.contains("s.rhai:2:"), "{d}");
    assert_eq!(r.active().number, 1);

    save(&script, "fn score_offering(o) { -0.01 }\n");
    let Outcome::Swapped(line) = r.check() else {
        panic!("a fixed script must swap")
    };
    assert!(line.ends_with("s.rhai"), "{line}");
    assert!(line.contains("changed none"), "{line}");
}

fn wait_for(r: &Reloader, number: u64) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if r.active().number >= number {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[cfg(unix)]
#[test]
fn watcher_follows_rename_saves_and_configmap_symlink_swaps() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = dir.path();
    // A ConfigMap volume: ..data -> ..v1/, and the file a symlink through it.
    let v1 = root.join("..v1");
    std::fs::create_dir(&v1).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(v1.join("a.policy"), pool("one", 1)).unwrap_or_else(|e| panic!("{e}"));
    symlink("..v1", root.join("..data")).unwrap_or_else(|e| panic!("{e}"));
    symlink("..data/a.policy", root.join("a.policy")).unwrap_or_else(|e| panic!("{e}"));
    let r = Arc::new(reloader(root));
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = Arc::clone(&seen);
    let opts = WatchOptions {
        debounce: Duration::from_millis(50),
        recheck: Duration::from_secs(60),
    };
    let _guard = watch(Arc::clone(&r), opts, move |_| {
        s2.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // kubelet's swap: write ..v2, point a new link at it, rename it over ..data.
    let v2 = root.join("..v2");
    std::fs::create_dir(&v2).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(v2.join("a.policy"), pool("two", 2)).unwrap_or_else(|e| panic!("{e}"));
    symlink("..v2", root.join("..data_tmp")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap_or_else(|e| panic!("{e}"));
    assert!(wait_for(&r, 2), "the ..data swap was not picked up");
    assert_eq!(r.active().policy.pools[0].name, "two");

    // An editor's rename-save of a plain file next to it.
    save(&root.join("b.policy"), &pool("three", 3));
    assert!(wait_for(&r, 3), "the rename-save was not picked up");
    assert_eq!(r.active().policy.pools.len(), 2);
    assert!(seen.load(Ordering::SeqCst) >= 2);
}

fn small_workload() -> Workload {
    let mut w = synth::diverse_workload(40, 7);
    for c in &mut w.classes {
        c.topology_spread.clear();
        c.pod_affinity.clear();
    }
    w
}

#[test]
fn plans_see_one_consistent_version_through_1000_rewrites() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("a.policy");
    save(&file, &pool("gen0", 0));
    let r = Arc::new(reloader(dir.path()));
    let catalog = Arc::new(synth::karpenter_catalog(60));
    let workload = Arc::new(small_workload());
    let stop = Arc::new(AtomicBool::new(false));
    let plans = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for _ in 0..2 {
        let (r, catalog, workload, stop, plans) = (
            Arc::clone(&r),
            Arc::clone(&catalog),
            Arc::clone(&workload),
            Arc::clone(&stop),
            Arc::clone(&plans),
        );
        threads.push(std::thread::spawn(move || -> Result<(), String> {
            while !stop.load(Ordering::SeqCst) {
                let v = r.active();
                let input = SolveInput {
                    policy: &v.policy,
                    catalog: &catalog,
                    workload: &workload,
                    scorer: None,
                    unavailable: None,
                };
                let plan = solve(&input);
                if !plan.unschedulable.is_empty() || plan.nodes.is_empty() {
                    return Err(format!("v{}: plan failed", v.number));
                }
                let name = &v.policy.pools[0].name;
                let gen_label = name.trim_start_matches("gen");
                for n in &plan.nodes {
                    if &n.pool != name || n.labels.get("gen").map(String::as_str) != Some(gen_label)
                    {
                        return Err(format!("v{}: node {} mixes versions", v.number, n.name));
                    }
                }
                plans.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        }));
    }
    let (mut swaps, mut failures) = (0, 0);
    for i in 1..=1000 {
        if i % 4 == 0 {
            save(&file, &format!("pool gen{i} {{\n  require nope\n"));
        } else {
            save(&file, &pool(&format!("gen{i}"), i));
        }
        match r.check() {
            Outcome::Swapped(_) => swaps += 1,
            Outcome::Failed(_) => failures += 1,
            Outcome::Unchanged => {}
        }
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let res = t
            .join()
            .unwrap_or_else(|_| Err("plan thread panicked".into()));
        assert_eq!(res, Ok(()));
    }
    assert_eq!((swaps, failures), (750, 250));
    assert!(plans.load(Ordering::SeqCst) > 0);
    assert_eq!(r.active().policy.pools[0].name, "gen999");
}
