//! One compiled scoring script: parsed once per version (content hash), with
//! the entry points it defines and its failure accounting.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rhai::AST;
use sha2::{Digest, Sha256};

use super::sandbox::ENGINE;
use crate::policy::ast::Span;
use crate::policy::diag::{Code, Diagnostic};

/// The entry points a script may define; at least one scoring function is required.
pub(super) const ENTRY_POINTS: &[&str] = &[
    "score_offering",
    "score_node",
    "score",
    "admit",
    "admit_offering",
];

/// Why a script could not be used: the same diagnostic type as policy
/// errors, so `check` prints and serialises both alike (file:line:col, the
/// line underlined, a hint).
pub type ScriptError = Box<Diagnostic>;

/// A compiled script version. Compiling is done once per distinct content.
pub struct Script {
    pub path: PathBuf,
    /// Hex SHA-256 of the source text: the script's version.
    pub hash: String,
    pub ast: AST,
    pub has_score_offering: bool,
    pub has_admit_offering: bool,
    /// `score_node(c)`, or `score(c)` which means the same.
    pub node_fn: Option<&'static str>,
    pub has_admit: bool,
    /// `line:col` of each entry point's `fn`, for messages about what it returned.
    entry_positions: Vec<(&'static str, usize, usize)>,
    failures: AtomicU64,
    logged: AtomicBool,
    budget_failures: AtomicU64,
    clamped: AtomicU64,
    clamp_logged: AtomicBool,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script")
            .field("path", &self.path)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// Hex SHA-256 of `text`.
pub(super) fn content_hash(text: &[u8]) -> String {
    hex::encode(Sha256::digest(text))
}

/// Byte offset of 1-based `line`/`column` (in characters) in `text`, clamped to the text.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut off = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let col = l
                .char_indices()
                .nth(column.saturating_sub(1))
                .map(|(b, _)| b)
                .unwrap_or(l.len());
            return off + col;
        }
        off += l.len();
    }
    text.len()
}

/// Byte offset of `fn name(` in `text` (spaces allowed before the parenthesis),
/// so `fn score(` is not found inside `fn score_offering(`.
fn find_fn(text: &str, name: &str) -> Option<usize> {
    let pat = format!("fn {name}");
    text.match_indices(&pat)
        .find(|(i, _)| text[i + pat.len()..].trim_start().starts_with('('))
        .map(|(i, _)| i)
}

/// A script that cannot be read, as a diagnostic on the (empty) file.
pub(super) fn io_error(path: &Path, e: &std::io::Error) -> ScriptError {
    Box::new(
        Diagnostic::error(
            path,
            &Arc::from(""),
            Span { offset: 0, len: 0 },
            Code::ScriptIo,
            format!("cannot read script: {e}"),
        )
        // Never the file's content: only its name and why it cannot be used.
        .with_help(if e.kind() == std::io::ErrorKind::InvalidData {
            "scripts are rhai source in UTF-8; this file is not UTF-8 text"
        } else {
            "script paths are resolved against the folder of the policy file that names them"
        }),
    )
}

fn hint_for(message: &str) -> Option<String> {
    if message.contains("'import'") || message.contains("'eval'") || message.contains("'export'") {
        Some("scripts run sandboxed: `import`, `export` and `eval` are disabled".into())
    } else if message.contains("Variable not found") {
        Some(
            "functions only see their parameters and their own `let`/`const`; \
             move top-level constants inside the function"
                .into(),
        )
    } else {
        None
    }
}

impl Script {
    /// Compiles `text` (the content of `path`) on the sandboxed engine.
    pub fn compile(path: &Path, text: &str) -> Result<Script, ScriptError> {
        let source: Arc<str> = Arc::from(text);
        let ast = ENGINE.compile(text).map_err(|e| {
            let pos = e.position();
            let line = pos.line().unwrap_or(1);
            let column = pos.position().unwrap_or(1);
            let message = e.err_type().to_string();
            let off = offset_of(text, line, column);
            let len = text[off..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .map(char::len_utf8)
                .sum::<usize>()
                .max(1)
                .min(text.len().saturating_sub(off));
            let d = Diagnostic::error(
                path,
                &source,
                Span { offset: off, len },
                Code::ScriptSyntax,
                format!("script does not compile: {message}"),
            )
            .with_primary(message.clone());
            Box::new(d.with_help(hint_for(&message).unwrap_or_else(|| {
                "scripts are rhai (https://rhai.rs/book); see docs/scoring.md for what they may use"
                    .into()
            })))
        })?;
        let has = |n: &str| -> Result<bool, ScriptError> {
            let found: Vec<usize> = ast
                .iter_functions()
                .filter(|f| f.name == n)
                .map(|f| f.params.len())
                .collect();
            if found.is_empty() {
                return Ok(false);
            }
            if found.contains(&1) {
                return Ok(true);
            }
            let off = text.find(&format!("fn {n}")).unwrap_or(0);
            Err(Box::new(
                Diagnostic::error(
                    path,
                    &source,
                    Span {
                        offset: off,
                        len: (3 + n.len()).min(text.len().saturating_sub(off)),
                    },
                    Code::ScriptArity,
                    format!(
                        "fn {n} takes {} parameter(s); it must take exactly one",
                        found[0]
                    ),
                )
                .with_primary("expected one parameter")
                .with_help(format!("entry points receive one argument: `fn {n}(c)`")),
            ))
        };
        let has_score_offering = has("score_offering")?;
        let has_admit_offering = has("admit_offering")?;
        let node_fn = if has("score_node")? {
            Some("score_node")
        } else if has("score")? {
            Some("score")
        } else {
            None
        };
        let has_admit = has("admit")?;
        let entry_positions = ENTRY_POINTS
            .iter()
            .filter_map(|&n| {
                let off = find_fn(text, n)?;
                let line = text[..off].matches('\n').count() + 1;
                let col = text[..off]
                    .rsplit('\n')
                    .next()
                    .map_or(0, |l| l.chars().count())
                    + 1;
                Some((n, line, col))
            })
            .collect();
        if !has_score_offering && node_fn.is_none() {
            return Err(Box::new(
                Diagnostic::error(
                    path,
                    &source,
                    Span { offset: 0, len: 0 },
                    Code::ScriptNoScore,
                    "script defines no `score` function",
                )
                .with_primary("no `score`, `score_offering` or `score_node` in this file")
                .with_help(
                    "define `fn score_offering(o)` (offering only, memoised) or `fn score(c)` \
                 (per candidate node); `fn admit(c)` may be added to veto candidates",
                ),
            ));
        }
        Ok(Script {
            path: path.to_path_buf(),
            hash: content_hash(text.as_bytes()),
            ast,
            has_score_offering,
            has_admit_offering,
            node_fn,
            has_admit,
            entry_positions,
            failures: AtomicU64::new(0),
            logged: AtomicBool::new(false),
            budget_failures: AtomicU64::new(0),
            clamped: AtomicU64::new(0),
            clamp_logged: AtomicBool::new(false),
        })
    }

    /// Reads and compiles the script at `path`.
    pub fn load(path: &Path) -> Result<Script, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|e| io_error(path, &e))?;
        Script::compile(path, &text)
    }

    /// True when the script reads what a node would carry (it defines
    /// `score_node`/`score` or `admit`), so its verdict cannot be memoised per offering.
    pub fn is_load_dependent(&self) -> bool {
        self.node_fn.is_some() || self.has_admit
    }

    /// Counts a failed call; logs the first failure of this version only.
    pub(crate) fn record_failure(&self, entry: &str, err: &rhai::EvalAltResult, budget: bool) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if budget {
            self.budget_failures.fetch_add(1, Ordering::Relaxed);
        }
        if !self.logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                script = %self.path.display(),
                version = &self.hash[..12],
                "script {} failed in {entry}: {err}; candidates it scores fall back to their unscored cost \
                 (further failures of this version are counted, not logged)",
                failure_location(&self.path, err)
            );
        }
    }

    /// Failed calls of this version so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// `path:line:col` of entry point `entry`'s definition (just the path if not found).
    pub fn entry_location(&self, entry: &str) -> String {
        match self.entry_positions.iter().find(|(n, _, _)| *n == entry) {
            Some((_, l, c)) => format!("{}:{l}:{c}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }

    /// Counts a score outside `±SCORE_LIMIT` that was clamped; warns the
    /// first time for this version, naming the entry point's location.
    pub(crate) fn record_clamp(&self, entry: &str, returned: f64, clamped: f64) {
        self.clamped.fetch_add(1, Ordering::Relaxed);
        if !self.clamp_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                script = %self.path.display(),
                version = &self.hash[..12],
                "{}: {entry} returned {returned:e} $/hour; scores are clamped to ±{} $/hour, \
                 so it counts as {clamped} (docs/scoring.md; further clamps of this version are \
                 counted, not logged)",
                self.entry_location(entry),
                super::SCORE_LIMIT
            );
        }
    }

    /// Scores of this version clamped to `±SCORE_LIMIT` so far.
    pub fn clamped(&self) -> u64 {
        self.clamped.load(Ordering::Relaxed)
    }

    /// True once the script has exhausted its budget often enough that calling it again
    /// would only slow the solver down; from then on it is skipped (unscored cost).
    pub fn tripped(&self) -> bool {
        self.budget_failures.load(Ordering::Relaxed) >= TRIP_AFTER
    }
}

/// `path:line:col` of a runtime failure, as editors and terminals link it;
/// just the path when rhai gives no position (a budget hit outside any
/// statement, say).
pub(super) fn failure_location(path: &Path, err: &rhai::EvalAltResult) -> String {
    let pos = err.position();
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{}:{l}:{c}", path.display()),
        (Some(l), None) => format!("{}:{l}", path.display()),
        _ => path.display().to_string(),
    }
}

/// Budget-exhausting failures after which a script version is no longer called.
pub(super) const TRIP_AFTER: u64 = 8;

#[cfg(test)]
mod location_tests {
    use super::*;

    /// A runtime error names the script's file, line and column.
    #[test]
    fn runtime_failure_names_file_line_and_column() {
        let engine = rhai::Engine::new();
        let err = engine
            .eval::<i64>("let x = 1;\nlet y = x + ();\ny")
            .expect_err("adding unit to an integer fails at run time");
        assert_eq!(
            failure_location(Path::new("scripts/s.rhai"), &err),
            "scripts/s.rhai:2:11"
        );
    }
}
