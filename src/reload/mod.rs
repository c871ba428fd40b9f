//! Watching policy and script files, recompiling off the hot path, and swapping atomically.
//!
//! A `Reloader` holds the active version (policy set + compiled scripts) in
//! an `ArcSwap`: a plan takes one `Arc` at its start and sees that version to
//! its end, whatever is swapped meanwhile. `check` re-reads the files,
//! compares a content hash (so renames, touches and ConfigMap `..data`
//! symlink swaps that change nothing do nothing), compiles a changed set and
//! swaps it in only if it compiles; a failing set leaves the last good one
//! active and is counted. `watch` drives `check` from notify events
//! (debounced) on the folders involved, with a periodic re-check as the
//! fallback for events a filesystem never delivers.
//!
//! A reload never takes the process down and never empties it by accident:
//! - a panic while compiling a change (a bug, or a library tripping on
//!   hostile input) is caught and is a failed reload like any other, and the
//!   watcher thread carries on with later changes;
//! - a set with no pools (the only policy file deleted, or emptied) is a
//!   failed reload too, unless [`ReloadOptions::allow_empty`] says an empty
//!   policy is really meant. Without pools nothing can be launched, so
//!   swapping one in silently would stop all provisioning.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};

use crate::ir::PolicySet;
use crate::scoring::RhaiScorer;

/// One compiled, consistent version of the policy and its scripts.
pub struct Version {
    /// 1 for the first load, +1 per swap.
    pub number: u64,
    /// Hex SHA-256 over every policy and script file's path and content.
    pub hash: String,
    pub policy: PolicySet,
    /// None when the policy names no scripts.
    pub scorer: Option<RhaiScorer>,
    /// The swap's one-line summary (`policy vA -> vB: pools added ...`);
    /// empty for the first version. Kept so that a caller that logs the
    /// swap itself ([`ReloadOptions::caller_logs_swaps`]) can complete it.
    pub summary: String,
    /// Content hash per script file (for the swap summary).
    scripts: BTreeMap<PathBuf, String>,
}

/// What one `check` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The files hash as the active version: nothing to do.
    Unchanged,
    /// A new version is active; the one-line summary that was logged.
    Swapped(String),
    /// The files changed but do not compile; the rendered diagnostics. The
    /// previous version stays active.
    Failed(String),
}

/// What the reloader accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReloadOptions {
    /// Accept a policy set with no pools (`--allow-empty-policy`). Off by
    /// default: an empty set is then a failed reload, and cannot be the
    /// first version either.
    pub allow_empty: bool,
    /// The caller logs each swap's line ([`Version::summary`]) itself,
    /// completed with what only it knows: the controller adds how many
    /// nodes the new version drifts, so a reload stays one line. Off by
    /// default: the reloader logs the summary as it swaps.
    pub caller_logs_swaps: bool,
}

/// Metrics of the reloader (Prometheus text format via `metrics_text`).
struct Metrics {
    registry: Registry,
    active: Gauge,
    swaps: Counter,
    failures: Counter,
    last_ok: Gauge,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("nodewright_policy");
        let m = Metrics {
            registry: Registry::default(),
            active: Gauge::default(),
            swaps: Counter::default(),
            failures: Counter::default(),
            last_ok: Gauge::default(),
        };
        m.register(&mut registry);
        Metrics { registry, ..m }
    }

    /// Registers (clones of) the metrics in `r`; they stay live.
    fn register(&self, r: &mut Registry) {
        r.register(
            "active_version",
            "Number of the policy version in use",
            self.active.clone(),
        );
        r.register("swaps", "Policy versions swapped in", self.swaps.clone());
        r.register(
            "reload_failures",
            "Changed policy or scripts that failed to compile (the last good version stayed)",
            self.failures.clone(),
        );
        r.register(
            "last_reload_ok",
            "1 when the files on disk are the active version, 0 when they failed to compile",
            self.last_ok.clone(),
        );
    }
}

/// Holds the active version and reloads it from `paths`.
pub struct Reloader {
    paths: Vec<PathBuf>,
    opts: ReloadOptions,
    active: ArcSwap<Version>,
    /// Hash of the last set that failed (not recompiled until it changes).
    failed_hash: Mutex<Option<String>>,
    next: AtomicU64,
    metrics: Metrics,
}

/// Policy files the paths stand for: files as given, folders' `*.policy`,
/// `*.yaml` and `*.yml` (sorted), as `import::load_policy_set` reads them.
fn policy_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|f| {
                    f.is_file()
                        && f.extension()
                            .is_some_and(|x| x == "policy" || x == "yaml" || x == "yml")
                })
                .collect();
            v.sort();
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    out
}

fn hash_files(files: &[PathBuf]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.to_string_lossy().as_bytes());
        h.update([0]);
        match std::fs::read(f) {
            Ok(b) => {
                h.update((b.len() as u64).to_le_bytes());
                h.update(&b);
            }
            Err(_) => h.update(b"<unreadable>"),
        }
    }
    hex::encode(h.finalize())
}

fn script_paths(policy: &PolicySet) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = crate::policy::scripts(policy)
        .into_iter()
        .map(|r| r.path.clone())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// [`compile`], with a panic turned into a failure and an empty set refused
/// unless `opts` allows it.
fn compile_guarded(
    paths: &[PathBuf],
    previous: Option<&Version>,
    opts: ReloadOptions,
) -> Result<Version, String> {
    let v = catch_unwind(AssertUnwindSafe(|| compile(paths, previous))).unwrap_or_else(|p| {
        Err(format!(
            "error: compiling the policy files ({}) failed unexpectedly: {}\n  help: this is a bug in nodewright (please report it with these files); the last good version stays active\n",
            list_paths(paths),
            panic_message(p.as_ref())
        ))
    })?;
    if v.policy.pools.is_empty() && !opts.allow_empty {
        return Err(format!(
            "error: the policy files ({}) define no pools\n  help: with no pools nothing can be launched; restore a policy file, or pass --allow-empty-policy if an empty policy is meant\n",
            list_paths(paths)
        ));
    }
    Ok(v)
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text of a panic's payload (`panic!` gives a `&str` or a `String`).
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Compiles the set at `paths`: the version (without its number) or the
/// rendered diagnostics.
fn compile(paths: &[PathBuf], previous: Option<&Version>) -> Result<Version, String> {
    let (mut policy, _warnings) = match crate::import::load_policy_set(paths) {
        Ok(x) => x,
        Err(crate::import::LoadError::Policy(d)) => return Err(d.render(100)),
        Err(e) => return Err(format!("{:?}", miette::Report::new(e))),
    };
    policy.sort_pools();
    let read = |p: &Path| std::fs::read_to_string(p);
    let (scorer, scripts) = if script_paths(&policy).is_empty() {
        (None, BTreeMap::new())
    } else {
        match crate::scoring::build_scorer_reusing(
            &policy,
            previous.and_then(|v| v.scorer.as_ref()),
            &read,
        ) {
            Ok((s, h)) => (Some(s), h),
            Err(errs) => {
                let d = crate::policy::Diagnostics(errs.into_iter().map(|d| *d).collect());
                return Err(d.render(100));
            }
        }
    };
    let mut files = policy_files(paths);
    files.extend(script_paths(&policy));
    Ok(Version {
        number: 0,
        hash: hash_files(&files),
        policy,
        scorer,
        summary: String::new(),
        scripts,
    })
}

/// One line: pools added, removed, changed; scripts changed.
fn summary(old: &Version, new: &Version) -> String {
    let names = |v: &Version| -> BTreeMap<String, String> {
        v.policy
            .pools
            .iter()
            .map(|p| (p.name.clone(), format!("{p:?}")))
            .collect()
    };
    let (a, b) = (names(old), names(new));
    let added: Vec<&str> = b
        .keys()
        .filter(|k| !a.contains_key(*k))
        .map(String::as_str)
        .collect();
    let removed: Vec<&str> = a
        .keys()
        .filter(|k| !b.contains_key(*k))
        .map(String::as_str)
        .collect();
    let changed: Vec<&str> = b
        .iter()
        .filter(|(k, v)| a.get(*k).is_some_and(|x| x != *v))
        .map(|(k, _)| k.as_str())
        .collect();
    let scripts: Vec<String> = new
        .scripts
        .iter()
        .filter(|(p, h)| old.scripts.get(*p) != Some(*h))
        .chain(
            old.scripts
                .iter()
                .filter(|(p, _)| !new.scripts.contains_key(*p)),
        )
        .map(|(p, _)| p.display().to_string())
        .collect();
    let list = |v: &[&str]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(",")
        }
    };
    format!(
        "policy v{} -> v{}: pools added {}, removed {}, changed {}; scripts changed {}",
        old.number,
        new.number,
        list(&added),
        list(&removed),
        list(&changed),
        if scripts.is_empty() {
            "none".to_string()
        } else {
            scripts.join(",")
        }
    )
}

impl Reloader {
    /// Loads the first version; it must compile (there is no last good one)
    /// and have a pool.
    pub fn new(paths: Vec<PathBuf>) -> Result<Reloader, String> {
        Reloader::with_options(paths, ReloadOptions::default())
    }

    /// [`Reloader::new`] with options (an empty policy allowed or not).
    pub fn with_options(paths: Vec<PathBuf>, opts: ReloadOptions) -> Result<Reloader, String> {
        let mut v = compile_guarded(&paths, None, opts)?;
        v.number = 1;
        let metrics = Metrics::new();
        metrics.active.set(1);
        metrics.last_ok.set(1);
        Ok(Reloader {
            paths,
            opts,
            active: ArcSwap::from_pointee(v),
            failed_hash: Mutex::new(None),
            next: AtomicU64::new(2),
            metrics,
        })
    }

    /// The active version; hold the `Arc` for the whole of one plan.
    pub fn active(&self) -> Arc<Version> {
        self.active.load_full()
    }

    /// Folders to watch: those of the policy paths and of the active scripts.
    pub fn watch_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .paths
            .iter()
            .map(|p| {
                if p.is_dir() {
                    p.clone()
                } else {
                    p.parent().map(Path::to_path_buf).unwrap_or_default()
                }
            })
            .chain(
                script_paths(&self.active().policy)
                    .iter()
                    .filter_map(|s| s.parent().map(Path::to_path_buf)),
            )
            .map(|d| {
                if d.as_os_str().is_empty() {
                    ".".into()
                } else {
                    d
                }
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Re-reads the files; swaps in a changed set that compiles.
    pub fn check(&self) -> Outcome {
        let cur = self.active();
        let mut files = policy_files(&self.paths);
        files.extend(script_paths(&cur.policy));
        let on_disk = hash_files(&files);
        if on_disk == cur.hash {
            self.metrics.last_ok.set(1);
            return Outcome::Unchanged;
        }
        if let Ok(f) = self.failed_hash.lock()
            && f.as_deref() == Some(on_disk.as_str())
        {
            return Outcome::Unchanged;
        }
        match compile_guarded(&self.paths, Some(&cur), self.opts) {
            Ok(mut v) => {
                if v.hash == cur.hash {
                    return Outcome::Unchanged;
                }
                v.number = self.next.fetch_add(1, Ordering::Relaxed);
                let line = summary(&cur, &v);
                v.summary = line.clone();
                self.metrics.active.set(v.number as i64);
                self.metrics.swaps.inc();
                self.metrics.last_ok.set(1);
                self.active.store(Arc::new(v));
                if let Ok(mut f) = self.failed_hash.lock() {
                    *f = None;
                }
                if !self.opts.caller_logs_swaps {
                    tracing::info!("{line}");
                }
                Outcome::Swapped(line)
            }
            Err(diags) => {
                self.metrics.failures.inc();
                self.metrics.last_ok.set(0);
                if let Ok(mut f) = self.failed_hash.lock() {
                    *f = Some(on_disk);
                }
                // One line here; the caller prints the full diagnostics.
                tracing::warn!(
                    "policy change rejected; v{} stays active: {}",
                    cur.number,
                    diags.lines().next().unwrap_or("")
                );
                Outcome::Failed(diags)
            }
        }
    }

    /// Registers the reload metrics in `registry` under `policy_`, so that a
    /// process serving its own metrics (the controller) serves these too.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.metrics
            .register(registry.sub_registry_with_prefix("policy"));
    }

    /// The metrics in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let mut s = String::new();
        if encode(&mut s, &self.metrics.registry).is_err() {
            s.clear();
        }
        s
    }
}

/// How `watch` waits.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// Debounce window for notify events (editors write in several steps).
    pub debounce: Duration,
    /// Re-check this often even without events.
    pub recheck: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(50),
            recheck: Duration::from_secs(2),
        }
    }
}

/// Watches the reloader's folders on a background thread and calls
/// `on_outcome` after every check that did something. Returns a guard: drop
/// it to stop watching. The thread outlives any failure of a check,
/// including a panic (counted as a failed reload).
pub fn watch(
    reloader: Arc<Reloader>,
    opts: WatchOptions,
    on_outcome: impl Fn(&Outcome) + Send + 'static,
) -> Result<WatchGuard, String> {
    use notify::RecursiveMode;
    let (tx, rx) = mpsc::channel();
    let mut debouncer = notify_debouncer_full::new_debouncer(opts.debounce, None, tx)
        .map_err(|e| format!("cannot start the file watcher: {e}"))?;
    for d in reloader.watch_dirs() {
        debouncer
            .watch(&d, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch {}: {e}", d.display()))?;
    }
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let handle = std::thread::spawn(move || {
        let _debouncer = debouncer;
        loop {
            if stop_rx.try_recv().is_ok() {
                return;
            }
            match rx.recv_timeout(opts.recheck) {
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            // Drain what piled up: one check covers them all.
            while rx.try_recv().is_ok() {}
            // `check` turns a panic while compiling into a failed reload; this
            // also keeps the thread alive through one anywhere else (hashing,
            // the caller's `on_outcome`), so later changes are still seen.
            let ran = catch_unwind(AssertUnwindSafe(|| {
                let o = reloader.check();
                if o != Outcome::Unchanged {
                    on_outcome(&o);
                }
            }));
            if let Err(p) = ran {
                reloader.metrics.failures.inc();
                reloader.metrics.last_ok.set(0);
                tracing::error!(
                    "policy reload failed unexpectedly: {}; the last good version stays active",
                    panic_message(p.as_ref())
                );
            }
        }
    });
    Ok(WatchGuard {
        stop: Some(stop_tx),
        handle: Some(handle),
    })
}

/// Stops the watcher thread when dropped.
pub struct WatchGuard {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
