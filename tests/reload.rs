//! Hot reload: a changed policy or script is swapped in whole, a change that
//! does not compile leaves the last good version active (and is counted), the
//! file watcher follows rename-saves and ConfigMap `..data` symlink swaps, and
//! plans running during 1,000 rewrites each see one consistent version.
//! The watcher survives anything a change can do to the compiler (the
//! long-line case), and a change that leaves no pools is refused unless an
//! empty policy is allowed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nodewright::reload::{Outcome, ReloadOptions, Reloader, WatchOptions, watch};
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
    assert_eq!(r.active().summary, line, "kept for a caller that logs it");
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

/// The value of one metric line (`name value`) in `r`'s metrics.
fn metric(r: &Reloader, name: &str) -> Option<f64> {
    r.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Waits (at most 20 s) until `f` holds.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn the_watcher_survives_an_error_past_column_70000_and_applies_later_changes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("a.policy");
    save(&file, &pool("one", 1));
    let r = Arc::new(reloader(dir.path()));
    let outcomes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&outcomes);
    let opts = WatchOptions {
        debounce: Duration::from_millis(20),
        recheck: Duration::from_millis(200),
    };
    let _guard = watch(Arc::clone(&r), opts, move |o| {
        if let Ok(mut v) = seen.lock() {
            v.push(o.clone());
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // An unknown statement after 70,000 spaces: the error is at 2:70001, past
    // the 65,535 columns a diagnostic renderer may assume.
    let long = format!("pool one {{\n{}nope\n}}\n", " ".repeat(70_000));
    save(&file, &long);
    assert!(
        eventually(|| metric(&r, "nodewright_policy_reload_failures_total") == Some(1.0)),
        "the long-line change was not counted as a failed reload:\n{}",
        r.metrics_text()
    );
    assert_eq!(r.active().number, 1, "the last good version stays");
    assert_eq!(metric(&r, "nodewright_policy_last_reload_ok"), Some(0.0));
    let failed = outcomes
        .lock()
        .map(|v| v.iter().any(|o| matches!(o, Outcome::Failed(_))))
        .unwrap_or(false);
    assert!(failed, "the failure is reported to the caller");

    // The thread is alive: a later good change is applied.
    save(&file, &format!("{}{}", pool("one", 1), pool("two", 2)));
    assert!(
        wait_for(&r, 2),
        "a good change after the failure was ignored"
    );
    assert_eq!(r.active().policy.pools.len(), 2);
    assert_eq!(metric(&r, "nodewright_policy_last_reload_ok"), Some(1.0));
}

#[test]
fn a_change_that_leaves_no_pools_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("a.policy");
    save(&file, &pool("one", 1));
    let r = reloader(dir.path());

    // The only policy file is deleted.
    std::fs::remove_file(&file).unwrap_or_else(|e| panic!("{e}"));
    let Outcome::Failed(d) = r.check() else {
        panic!("deleting the only policy file must be a failed reload")
    };
    assert!(d.contains("define no pools"), "{d}");
    assert!(
        d.contains("--allow-empty-policy"),
        "the hint names the flag: {d}"
    );
    assert_eq!(r.active().number, 1);
    assert_eq!(r.active().policy.pools[0].name, "one");
    assert_eq!(
        metric(&r, "nodewright_policy_reload_failures_total"),
        Some(1.0)
    );

    // A file that compiles but has no pool is refused the same way.
    save(
        &file,
        "node-class default {\n  ami alias al2023@latest\n  subnets where tag k = \"v\"\n  security-groups where tag k = \"v\"\n  role \"r\"\n}\n",
    );
    let Outcome::Failed(d) = r.check() else {
        panic!("a policy without pools must be a failed reload")
    };
    assert!(d.contains("define no pools"), "{d}");
    assert_eq!(r.active().number, 1);
    assert_eq!(
        metric(&r, "nodewright_policy_reload_failures_total"),
        Some(2.0)
    );

    // An empty folder cannot be the first version either...
    let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let err = Reloader::new(vec![empty.path().to_path_buf()])
        .err()
        .unwrap_or_else(|| panic!("an empty first version must be refused"));
    assert!(err.contains("define no pools"), "{err}");

    // ...unless asked for explicitly: then deleting the file empties the policy.
    let allow = ReloadOptions {
        allow_empty: true,
        ..ReloadOptions::default()
    };
    let r = Reloader::with_options(vec![empty.path().to_path_buf()], allow)
        .unwrap_or_else(|d| panic!("{d}"));
    assert!(r.active().policy.pools.is_empty());
    let r = Reloader::with_options(vec![dir.path().to_path_buf()], allow)
        .unwrap_or_else(|d| panic!("{d}"));
    assert!(
        r.active().policy.pools.is_empty(),
        "a.policy has no pool now"
    );
    save(&file, &pool("one", 1));
    assert!(matches!(r.check(), Outcome::Swapped(_)));
    std::fs::remove_file(&file).unwrap_or_else(|e| panic!("{e}"));
    let Outcome::Swapped(line) = r.check() else {
        panic!("with allow_empty, deleting the file swaps in the empty policy")
    };
    assert!(line.contains("removed one"), "{line}");
    assert!(r.active().policy.pools.is_empty());
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
