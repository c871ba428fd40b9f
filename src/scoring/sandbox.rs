//! The rhai engine scripts run on: no files, no modules, no `eval`, bounded everything.
//!
//! Scripts are untrusted user input that runs inside the solver's inner loop,
//! so every resource a script can consume is capped. A script that hits a cap
//! gets an error for that call; the scorer then falls back to the candidate's
//! unscored cost (see `scorer.rs`).

use std::sync::LazyLock;

use rhai::module_resolvers::DummyModuleResolver;
use rhai::{Engine, EvalAltResult};

use super::api;

/// The resource caps applied to every script call.
///
/// The defaults leave a realistic scoring script (a few hundred operations)
/// two orders of magnitude of headroom, while an endless loop stops after
/// well under a millisecond of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
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
pub fn engine(limits: Limits) -> Engine {
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
    // print/debug go to the log, never to the planner's stdout (which carries the plan).
    e.on_print(|s| tracing::info!(target: "nodewright::script", "{s}"));
    e.on_debug(|s, src, pos| {
        tracing::debug!(target: "nodewright::script", "{}:{pos}: {s}", src.unwrap_or("script"))
    });
    api::register(&mut e);
    e
}

/// The engine shared by every compiled script (rhai's `sync` feature makes it `Send + Sync`).
pub static ENGINE: LazyLock<Engine> = LazyLock::new(|| engine(Limits::default()));

/// True when the error means the script hit a resource cap (as opposed to an ordinary
/// runtime error such as a type mismatch). Such failures cost the full budget each
/// time, so the scorer stops calling a script after a few of them.
pub fn is_budget_error(e: &EvalAltResult) -> bool {
    use EvalAltResult as E;
    match e {
        E::ErrorTooManyOperations(_)
        | E::ErrorStackOverflow(_)
        | E::ErrorDataTooLarge(..)
        | E::ErrorTooManyVariables(_)
        | E::ErrorTooManyModules(_) => true,
        E::ErrorInFunctionCall(_, _, inner, _) => is_budget_error(inner),
        _ => false,
    }
}
