//! `RhaiScorer`: the `Scorer` the solver calls, backed by compiled rhai scripts.
//!
//! The rule, in one place:
//! - a score is **$/hour added to the candidate's price** (negative = more attractive);
//!   scores of several scripts (policy-wide, then the pool's) add up;
//! - `score_offering(o)` and `admit_offering(o)` see only the offering, so their
//!   verdict is **memoised** per (script version × pool × type × zone × capacity type × price);
//! - `score_node(c)` (or its alias `score(c)`) and `admit(c)` see what the node
//!   would carry, so they run **per candidate, never memoised**;
//! - `admit`/`admit_offering` return `true` to accept, `false` or a reason string to veto;
//! - a call that fails (runtime error, or a sandbox cap hit, its wall-clock
//!   budget included) contributes nothing: the candidate keeps its unscored cost
//!   and is admitted. Failures are counted per script version and logged once;
//!   after `TRIP_AFTER` cap hits the version is skipped;
//! - a score is clamped to `±SCORE_LIMIT` $/hour (warned once per script version);
//! - one plan spends at most `TimeBudget::per_plan` in scripts (`PlanBudget`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rhai::{CallFnOptions, Dynamic, EvalAltResult, Position, Scope};

use super::api::{Candidate, Load, Offering, TypeInfo};
use super::sandbox::{
    ENGINE, TimeBudget, default_time_budget, is_budget_error, is_time_budget_error, with_deadline,
};
use super::script::{Script, ScriptError, content_hash};
use super::{NodeLoad, OfferingView, SCORE_LIMIT, Scorer, Verdict};
use crate::ir::PolicySet;

/// Memo entries kept before the memo is cleared (bounds memory when spot prices churn).
const MEMO_CAP: usize = 500_000;

struct MemoEntry {
    pool: Box<str>,
    zone: Box<str>,
    capacity_type: crate::catalog::CapacityType,
    price_bits: u64,
    verdict: Verdict,
}

/// Scores candidates with the scripts a policy names (policy-wide and per pool).
pub struct RhaiScorer {
    global: Vec<Arc<Script>>,
    pools: HashMap<String, Vec<Arc<Script>>>,
    types: RwLock<HashMap<String, Arc<TypeInfo>>>,
    /// Instance type name → offering verdicts (allocation-free lookup by `&str`).
    memo: RwLock<HashMap<String, Vec<MemoEntry>>>,
    memo_len: AtomicUsize,
    load_dependent: bool,
    budget: TimeBudget,
}

impl std::fmt::Debug for RhaiScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RhaiScorer")
            .field("global", &self.global)
            .field("pools", &self.pools)
            .finish_non_exhaustive()
    }
}

/// Builds the scorer for every script `policy` names, reading them from disk.
/// All script errors are returned, not only the first.
pub fn build_scorer(policy: &PolicySet) -> Result<RhaiScorer, Vec<ScriptError>> {
    build_scorer_reusing(policy, None, &|p: &Path| std::fs::read_to_string(p)).map(|(s, _)| s)
}

/// Like `build_scorer`, but reuses `previous`'s compiled scripts whose content
/// is unchanged (so a reload compiles only what changed), and reads through `read`.
/// Also returns the content hash of every script read.
pub fn build_scorer_reusing(
    policy: &PolicySet,
    previous: Option<&RhaiScorer>,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<(RhaiScorer, BTreeMap<PathBuf, String>), Vec<ScriptError>> {
    let mut compiled: HashMap<PathBuf, Arc<Script>> = HashMap::new();
    let mut hashes = BTreeMap::new();
    let mut errors = Vec::new();
    let old: HashMap<&str, &Arc<Script>> = previous
        .map(|p| p.all_scripts().map(|s| (s.hash.as_str(), s)).collect())
        .unwrap_or_default();
    let refs = policy
        .scripts
        .iter()
        .chain(policy.pools.iter().flat_map(|p| p.scripts.iter()));
    for r in refs {
        if compiled.contains_key(&r.path) || hashes.contains_key(&r.path) {
            continue;
        }
        let text = match read(&r.path) {
            Ok(t) => t,
            Err(e) => {
                hashes.insert(r.path.clone(), String::new());
                errors.push(super::script::io_error(&r.path, &e));
                continue;
            }
        };
        let hash = content_hash(text.as_bytes());
        hashes.insert(r.path.clone(), hash.clone());
        match old.get(hash.as_str()) {
            Some(s) if s.path == r.path => {
                compiled.insert(r.path.clone(), Arc::clone(s));
            }
            _ => match Script::compile(&r.path, &text) {
                Ok(s) => {
                    compiled.insert(r.path.clone(), Arc::new(s));
                }
                Err(e) => errors.push(e),
            },
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let pick = |refs: &[crate::ir::ScriptRef]| -> Vec<Arc<Script>> {
        refs.iter()
            .filter_map(|r| compiled.get(&r.path).cloned())
            .collect()
    };
    let global = pick(&policy.scripts);
    let pools: HashMap<String, Vec<Arc<Script>>> = policy
        .pools
        .iter()
        .map(|p| (p.name.clone(), pick(&p.scripts)))
        .collect();
    Ok((RhaiScorer::new(global, pools), hashes))
}

fn fail(script: &Script, entry: &str, msg: String) {
    let e = EvalAltResult::ErrorRuntime(msg.into(), Position::NONE);
    script.record_failure(entry, &e, false);
}

/// Calls `entry` without re-running the script's top level, stopping it
/// after `budget`; `None` on failure.
fn call(script: &Script, entry: &str, arg: Dynamic, budget: Duration) -> Option<Dynamic> {
    if script.tripped() {
        return None;
    }
    let mut scope = Scope::new();
    let opts = CallFnOptions::new().eval_ast(false).rewind_scope(false);
    let r = with_deadline(budget, || {
        ENGINE.call_fn_with_options::<Dynamic>(opts, &mut scope, &script.ast, entry, (arg,))
    });
    match r {
        Ok(d) => Some(d),
        Err(e) if is_time_budget_error(&e) => {
            let e = EvalAltResult::ErrorRuntime(
                format!("ran past its wall-clock budget of {budget:?} per call").into(),
                e.position(),
            );
            script.record_failure(entry, &e, true);
            None
        }
        Err(e) => {
            script.record_failure(entry, &e, is_budget_error(&e));
            None
        }
    }
}

/// A score result as $/hour; non-numbers and NaN are failures; anything
/// beyond `±SCORE_LIMIT` (infinities included) is clamped to it, with a warning.
fn as_score(script: &Script, entry: &str, d: Dynamic) -> f64 {
    let v = if let Ok(f) = d.as_float() {
        f
    } else if let Ok(i) = d.as_int() {
        i as f64
    } else {
        fail(
            script,
            entry,
            format!("{entry} returned a {}, not a number", d.type_name()),
        );
        return 0.0;
    };
    if v.is_nan() {
        fail(script, entry, format!("{entry} returned {v}"));
        return 0.0;
    }
    let c = v.clamp(-SCORE_LIMIT, SCORE_LIMIT);
    if c != v {
        script.record_clamp(entry, v, c);
    }
    c
}

/// An admit result: `None` to accept, `Some(reason)` to veto.
fn as_veto(script: &Script, entry: &str, d: Dynamic) -> Option<String> {
    if let Ok(b) = d.as_bool() {
        return (!b).then(|| {
            format!(
                "vetoed by {} ({entry} returned false)",
                script.path.display()
            )
        });
    }
    if d.is_string() {
        let reason = d.into_string().unwrap_or_default();
        return Some(format!("vetoed by {}: {reason}", script.path.display()));
    }
    fail(
        script,
        entry,
        format!(
            "{entry} returned a {}, not a bool or a reason string",
            d.type_name()
        ),
    );
    None
}

impl RhaiScorer {
    /// A scorer over already compiled scripts: `global` score every pool, `pools[name]` one pool.
    pub fn new(global: Vec<Arc<Script>>, pools: HashMap<String, Vec<Arc<Script>>>) -> RhaiScorer {
        let load_dependent = global
            .iter()
            .chain(pools.values().flatten())
            .any(|s| s.is_load_dependent());
        RhaiScorer {
            global,
            pools,
            types: RwLock::new(HashMap::new()),
            memo: RwLock::new(HashMap::new()),
            memo_len: AtomicUsize::new(0),
            load_dependent,
            budget: default_time_budget(),
        }
    }

    /// The same scorer with wall-clock budget `budget` (see `TimeBudget`).
    pub fn with_time_budget(mut self, budget: TimeBudget) -> RhaiScorer {
        self.budget = budget;
        self
    }

    /// The wall-clock budget its script calls and plans run under.
    pub fn time_budget(&self) -> TimeBudget {
        self.budget
    }

    /// Scores clamped to `±SCORE_LIMIT` so far, over all scripts of this version.
    pub fn clamped(&self) -> u64 {
        self.all_scripts().map(|s| s.clamped()).sum()
    }

    /// Every distinct script, policy-wide first.
    pub fn all_scripts(&self) -> impl Iterator<Item = &Arc<Script>> {
        let mut seen = std::collections::HashSet::new();
        self.global
            .iter()
            .chain(self.pools.values().flatten())
            .filter(move |s| seen.insert(Arc::as_ptr(s)))
    }

    /// True when no script is configured (the scorer is a no-op).
    pub fn is_empty(&self) -> bool {
        self.global.is_empty() && self.pools.values().all(|v| v.is_empty())
    }

    /// Failed script calls so far, over all scripts of this version.
    pub fn failures(&self) -> u64 {
        self.all_scripts().map(|s| s.failures()).sum()
    }

    fn scripts_for<'a>(&'a self, pool: &str) -> impl Iterator<Item = &'a Arc<Script>> + 'a {
        let own = self.pools.get(pool).map(|v| v.as_slice()).unwrap_or(&[]);
        self.global.iter().chain(own.iter())
    }

    fn type_info(&self, v: &OfferingView<'_>) -> Arc<TypeInfo> {
        let name = v.instance_type.name.as_str();
        if let Some(t) = self.types.read().ok().and_then(|m| m.get(name).cloned()) {
            return t;
        }
        let t = Arc::new(TypeInfo::new(v.instance_type));
        if let Ok(mut m) = self.types.write() {
            m.insert(name.to_string(), Arc::clone(&t));
        }
        t
    }

    fn memo_get(&self, v: &OfferingView<'_>) -> Option<Verdict> {
        let m = self.memo.read().ok()?;
        let bits = v.price.to_bits();
        m.get(v.instance_type.name.as_str())?
            .iter()
            .find(|e| {
                e.price_bits == bits
                    && e.capacity_type == v.capacity_type
                    && &*e.zone == v.zone
                    && &*e.pool == v.pool
            })
            .map(|e| e.verdict.clone())
    }

    fn memo_put(&self, v: &OfferingView<'_>, verdict: &Verdict) {
        let Ok(mut m) = self.memo.write() else { return };
        if self.memo_len.load(Ordering::Relaxed) >= MEMO_CAP {
            m.clear();
            self.memo_len.store(0, Ordering::Relaxed);
        }
        m.entry(v.instance_type.name.clone())
            .or_default()
            .push(MemoEntry {
                pool: v.pool.into(),
                zone: v.zone.into(),
                capacity_type: v.capacity_type,
                price_bits: v.price.to_bits(),
                verdict: verdict.clone(),
            });
        self.memo_len.fetch_add(1, Ordering::Relaxed);
    }

    /// The offering-only verdict, computed without the memo.
    fn compute_offering(&self, v: &OfferingView<'_>) -> Verdict {
        let mut obj: Option<Offering> = None;
        let mut total = 0.0;
        for s in self.scripts_for(v.pool) {
            if !s.has_score_offering && !s.has_admit_offering {
                continue;
            }
            let o = obj.get_or_insert_with(|| Offering::new(self.type_info(v), v));
            if s.has_admit_offering
                && let Some(d) = call(
                    s,
                    "admit_offering",
                    Dynamic::from(o.clone()),
                    self.budget.per_call,
                )
                && let Some(reason) = as_veto(s, "admit_offering", d)
            {
                return Verdict::Veto(reason);
            }
            if s.has_score_offering
                && let Some(d) = call(
                    s,
                    "score_offering",
                    Dynamic::from(o.clone()),
                    self.budget.per_call,
                )
            {
                total += as_score(s, "score_offering", d);
            }
        }
        Verdict::Adjust(total)
    }
}

impl Scorer for RhaiScorer {
    fn score_offering(&self, v: &OfferingView<'_>) -> Verdict {
        if !self
            .scripts_for(v.pool)
            .any(|s| s.has_score_offering || s.has_admit_offering)
        {
            return Verdict::Adjust(0.0);
        }
        if let Some(verdict) = self.memo_get(v) {
            return verdict;
        }
        let verdict = self.compute_offering(v);
        self.memo_put(v, &verdict);
        verdict
    }

    fn score_node(&self, v: &OfferingView<'_>, load: &NodeLoad<'_>) -> Verdict {
        let mut total = match self.score_offering(v) {
            Verdict::Adjust(x) => x,
            veto => return veto,
        };
        let mut cand: Option<Candidate> = None;
        for s in self.scripts_for(v.pool) {
            if !s.is_load_dependent() {
                continue;
            }
            let c = cand.get_or_insert_with(|| Candidate {
                offering: Offering::new(self.type_info(v), v),
                load: Arc::new(Load::new(load)),
            });
            if s.has_admit
                && let Some(d) = call(s, "admit", Dynamic::from(c.clone()), self.budget.per_call)
                && let Some(reason) = as_veto(s, "admit", d)
            {
                return Verdict::Veto(reason);
            }
            if let Some(entry) = s.node_fn
                && let Some(d) = call(s, entry, Dynamic::from(c.clone()), self.budget.per_call)
            {
                total += as_score(s, entry, d);
            }
        }
        Verdict::Adjust(total)
    }

    fn is_load_dependent(&self) -> bool {
        self.load_dependent
    }

    fn plan_time_budget(&self) -> Option<Duration> {
        (!self.is_empty()).then_some(self.budget.per_plan)
    }
}
