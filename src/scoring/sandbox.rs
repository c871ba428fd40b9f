//! The rhai engine scripts run on: no files, no modules, no `eval`, bounded everything.
//!
//! Scripts are untrusted user input that runs inside the solver's inner loop,
//! so every resource a script can consume is capped. A script that hits a cap
//! gets an error for that call; the scorer then falls back to the candidate's
//! unscored cost (see `scorer.rs`).

use std::cell::Cell;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rhai::module_resolvers::DummyModuleResolver;
use rhai::{Dynamic, Engine, EvalAltResult};

use super::api;

/// The resource caps applied to every script call.
///
/// The defaults leave a realistic scoring script (a few hundred operations)
/// two orders of magnitude of headroom, while an endless loop stops after
/// well under a millisecond of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    /// Operations per call (rhai counts each statement, expression and iteration).
    pub max_operations: u64,
    /// Nested function calls (bounds recursion).
    pub max_call_levels: usize,
    /// Expression nesting depth at global level and inside functions.
    pub max_expr_depth: usize,
    pub max_fn_expr_depth: usize,
    /// Bytes in one string.
    pub max_string_size: usize,
    /// Elements in one array and entries in one map.
    pub max_array_size: usize,
    pub max_map_size: usize,
    /// Variables alive at once.
    pub max_variables: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 20_000,
            max_call_levels: 16,
            max_expr_depth: 64,
            max_fn_expr_depth: 32,
            max_string_size: 16 * 1024,
            max_array_size: 1024,
            max_map_size: 256,
            max_variables: 256,
        }
    }
}

/// Builds a sandboxed engine with the scoring API registered.
///
/// `Engine::new` (not `new_raw`) so scripts get the ordinary arithmetic,
/// string and array helpers; everything that reaches outside is then removed.
pub(super) fn engine(limits: Limits) -> Engine {
    let mut e = Engine::new();
    // No `import`: the dummy resolver finds nothing, and the keyword is removed
    // so the script fails to compile with a clear message instead.
    e.set_module_resolver(DummyModuleResolver::new());
    e.set_max_modules(0);
    e.disable_symbol("import");
    e.disable_symbol("export");
    // No `eval`: it would compile arbitrary text at run time, outside our checks.
    e.disable_symbol("eval");
    e.set_max_operations(limits.max_operations);
    e.set_max_call_levels(limits.max_call_levels);
    e.set_max_expr_depths(limits.max_expr_depth, limits.max_fn_expr_depth);
    e.set_max_string_size(limits.max_string_size);
    e.set_max_array_size(limits.max_array_size);
    e.set_max_map_size(limits.max_map_size);
    e.set_max_variables(limits.max_variables);
    // Undeclared names are compile errors, not silent `()` at run time.
    e.set_strict_variables(true);
    e.set_fail_on_invalid_map_property(true);
    // The operation count does not bound time: one built-in call (a `sort`
    // of a large array, say) is one operation. Each call also has a
    // deadline (`with_deadline`); the clock is read every
    // `CLOCK_EVERY` operations, so the check costs next to nothing.
    e.on_progress(|ops| {
        if ops % CLOCK_EVERY != 0 {
            return None;
        }
        DEADLINE.with(|d| match d.get() {
            Some(t) if Instant::now() >= t => Some(Dynamic::from(TIME_BUDGET_TOKEN)),
            _ => None,
        })
    });
    // print/debug go to the log, never to the planner's stdout (which carries the plan).
    e.on_print(|s| tracing::info!(target: "nodewright::script", "{s}"));
    e.on_debug(|s, src, pos| {
        tracing::debug!(target: "nodewright::script", "{}:{pos}: {s}", src.unwrap_or("script"))
    });
    api::register(&mut e);
    e
}

/// The engine shared by every compiled script (rhai's `sync` feature makes it `Send + Sync`).
pub(super) static ENGINE: LazyLock<Engine> = LazyLock::new(|| engine(Limits::default()));

/// True when the error means the script hit a resource cap (as opposed to an ordinary
/// runtime error such as a type mismatch). Such failures cost the full budget each
/// time, so the scorer stops calling a script after a few of them.
pub(super) fn is_budget_error(e: &EvalAltResult) -> bool {
    use EvalAltResult as E;
    match e {
        E::ErrorTooManyOperations(_)
        | E::ErrorTerminated(..)
        | E::ErrorStackOverflow(_)
        | E::ErrorDataTooLarge(..)
        | E::ErrorTooManyVariables(_)
        | E::ErrorTooManyModules(_) => true,
        E::ErrorInFunctionCall(_, _, inner, _) => is_budget_error(inner),
        _ => false,
    }
}

/// Operations between two reads of the clock in the progress callback.
const CLOCK_EVERY: u64 = 16;

/// The value a call stopped by its deadline terminates with (rhai's `ErrorTerminated` token).
const TIME_BUDGET_TOKEN: &str = "time budget";

thread_local! {
    /// When the script call running on this thread must stop (None: no call, or no deadline).
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `f` (one script call) with a wall-clock deadline `budget` from now.
///
/// Calls run on the calling thread, so the deadline is thread-local; the
/// previous one is restored afterwards, so calls may nest.
pub(super) fn with_deadline<R>(budget: Duration, f: impl FnOnce() -> R) -> R {
    let until = Instant::now().checked_add(budget);
    let before = DEADLINE.with(|d| d.replace(until));
    let r = f();
    DEADLINE.with(|d| d.set(before));
    r
}

/// True when `e` is a call stopped at its wall-clock deadline.
pub(super) fn is_time_budget_error(e: &EvalAltResult) -> bool {
    match e {
        EvalAltResult::ErrorTerminated(token, _) => {
            token.clone().into_string().ok().as_deref() == Some(TIME_BUDGET_TOKEN)
        }
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => is_time_budget_error(inner),
        _ => false,
    }
}

/// Wall-clock budgets for scripts, on top of the operation caps in `Limits`.
///
/// The operation cap bounds the steps of a call, not its time: a single
/// built-in call such as `sort` on a 1,000-element array counts as one
/// operation, so a script within its 20,000 operations could run for
/// seconds, on every candidate. These bound the time itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBudget {
    /// Wall-clock time one script call may take. A call past it stops and
    /// counts as a cap hit (the candidate keeps its unscored cost; after
    /// `TRIP_AFTER` hits the script version is no longer called).
    pub per_call: Duration,
    /// Script time one plan may spend in all. Past it the plan stops
    /// scoring and is made again unscored (price alone), with a note in
    /// the plan and a warning in the log.
    pub per_plan: Duration,
}

impl TimeBudget {
    /// 10 ms per call: a realistic script call takes microseconds (about 7 µs
    /// for a 20-line `score(c)`, BENCHMARKS.md), so this is three orders of
    /// magnitude of headroom. 5 s per plan: scoring a large plan with a
    /// load-dependent script takes well under a second.
    pub const DEFAULT: TimeBudget = TimeBudget {
        per_call: Duration::from_millis(10),
        per_plan: Duration::from_secs(5),
    };
}

impl Default for TimeBudget {
    fn default() -> Self {
        TimeBudget::DEFAULT
    }
}

/// The process-wide default, in milliseconds (0 = not set: `TimeBudget::DEFAULT`).
static DEFAULT_PER_CALL_MS: AtomicU64 = AtomicU64::new(0);
static DEFAULT_PER_PLAN_MS: AtomicU64 = AtomicU64::new(0);

/// Sets the budget scorers built from now on get (the CLI's
/// `--script-call-budget` / `--script-plan-budget`). Scorers already built keep theirs.
pub fn set_default_time_budget(b: TimeBudget) {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
    DEFAULT_PER_CALL_MS.store(ms(b.per_call), Ordering::Relaxed);
    DEFAULT_PER_PLAN_MS.store(ms(b.per_plan), Ordering::Relaxed);
}

/// The budget new scorers get: `TimeBudget::DEFAULT` unless the process set one.
pub fn default_time_budget() -> TimeBudget {
    let get = |a: &AtomicU64, d: Duration| match a.load(Ordering::Relaxed) {
        0 => d,
        ms => Duration::from_millis(ms),
    };
    TimeBudget {
        per_call: get(&DEFAULT_PER_CALL_MS, TimeBudget::DEFAULT.per_call),
        per_plan: get(&DEFAULT_PER_PLAN_MS, TimeBudget::DEFAULT.per_plan),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call past its deadline stops with the time-budget error however
    /// fast the machine is: the deadline has already passed when it starts.
    #[test]
    fn a_call_past_its_deadline_stops() {
        let ast = ENGINE
            .compile("fn f(x) { let a = []; for i in 0..100 { a.push(i) } loop { a.sort(); } }")
            .expect("compiles");
        let err = with_deadline(Duration::ZERO, || {
            ENGINE
                .call_fn::<Dynamic>(&mut rhai::Scope::new(), &ast, "f", (1_i64,))
                .expect_err("stopped")
        });
        assert!(is_time_budget_error(&err), "{err}");
        assert!(is_budget_error(&err), "{err}");
        // Without a deadline the same engine stops it at the operation cap instead.
        let err = ENGINE
            .call_fn::<Dynamic>(&mut rhai::Scope::new(), &ast, "f", (1_i64,))
            .expect_err("stopped");
        assert!(!is_time_budget_error(&err), "{err}");
        assert!(is_budget_error(&err), "{err}");
    }

    #[test]
    fn deadlines_nest_and_are_restored() {
        with_deadline(Duration::from_secs(60), || {
            let outer = DEADLINE.with(Cell::get);
            with_deadline(Duration::ZERO, || {});
            assert_eq!(DEADLINE.with(Cell::get), outer);
        });
        assert_eq!(DEADLINE.with(Cell::get), None);
    }
}
