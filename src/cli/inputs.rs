//! Loading the planner's inputs (policy, workload, catalog) for `plan`,
//! `explain` and `bench`, through one seam per input.
//!
//! - policy: `.policy` files, policy directories and Karpenter `.yaml` files
//!   through `crate::import::load_policy_set`;
//! - workload: Kubernetes YAML through `crate::workload::load` (`--nodes` too);
//! - catalog: `embedded` through `crate::catalog::embedded::embedded()`.
//!
//! Each input may also be given as its IR serialised to JSON (`PolicySet`,
//! `Workload`, `Catalog`), which is handy for tests and bug reports.

use std::path::{Path, PathBuf};

use miette::{IntoDiagnostic, NamedSource, SourceSpan};

use crate::catalog::Catalog;
use crate::ir::PolicySet;
use crate::workload::Workload;

/// A JSON input file that did not parse, pointing at the line and column.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{path}:{line}:{column}: {message}")]
#[diagnostic(help("the file must hold the {what} as JSON (see docs/solver.md)"))]
pub(super) struct JsonInputError {
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub what: &'static str,
    #[source_code]
    pub src: NamedSource<String>,
    #[label("here")]
    pub at: SourceSpan,
}

fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut off = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return (off + column.saturating_sub(1)).min(text.len());
        }
        off += l.len();
    }
    text.len()
}

fn load_json<T: serde::de::DeserializeOwned>(path: &Path, what: &'static str) -> miette::Result<T> {
    let text = std::fs::read_to_string(path)
        .into_diagnostic()
        .map_err(|e| e.wrap_err(format!("reading {}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        let at = offset_of(&text, e.line(), e.column());
        JsonInputError {
            path: path.display().to_string(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
            what,
            src: NamedSource::new(path.display().to_string(), text.clone()),
            at: at.into(),
        }
        .into()
    })
}

fn is_json(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "json")
}

/// Loads the policy set from `paths`.
pub(super) fn load_policy(paths: &[PathBuf]) -> miette::Result<PolicySet> {
    match paths {
        [one] if is_json(one) => {
            let mut p: PolicySet = load_json(one, "compiled policy set (PolicySet)")?;
            p.sort_pools();
            Ok(p)
        }
        _ => {
            crate::import::check_folders(paths)?;
            note_yaml_folders(paths);
            from_files(paths)
        }
    }
}

/// `import::load_policy_set`, with its warnings and errors printed as `check` prints them.
fn from_files(paths: &[PathBuf]) -> miette::Result<PolicySet> {
    match crate::import::load_policy_set(paths) {
        Ok((mut set, warnings)) => {
            for w in &warnings {
                eprint!("{}", w.render(100));
            }
            set.sort_pools();
            Ok(set)
        }
        Err(crate::import::LoadError::Policy(d)) => {
            eprint!("{}", d.render(100));
            Err(miette::miette!(
                help = "fix the policy (`nodewright check` shows the same diagnostics)",
                "the policy has {} error(s)",
                d.error_count()
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// Says which policy folders are read as Karpenter YAML (they hold no `.policy` files).
fn note_yaml_folders(paths: &[PathBuf]) {
    for (dir, files) in crate::import::yaml_only_folders(paths) {
        eprintln!(
            "note: {} holds no .policy files; reading its {} Karpenter YAML file(s) instead",
            dir.display(),
            files.len()
        );
    }
}

/// Compiles the scoring scripts `policy` names; None when it names none.
///
/// Every script error is printed (file:line:col, the line underlined, a hint)
/// before failing, as `nodewright check` prints them.
pub(super) fn load_scorer(
    policy: &PolicySet,
) -> miette::Result<Option<crate::scoring::RhaiScorer>> {
    if crate::policy::scripts(policy).is_empty() {
        return Ok(None);
    }
    match crate::scoring::build_scorer(policy) {
        Ok(s) => Ok(Some(s)),
        Err(errs) => {
            let d = crate::policy::Diagnostics(errs.into_iter().map(|d| *d).collect());
            eprint!("{}", d.render(100));
            Err(miette::miette!(
                help = "fix the script (`nodewright check` shows the same diagnostics)",
                "{} scoring script error(s)",
                d.error_count()
            ))
        }
    }
}

/// Loads the workload from `paths` (and existing nodes from `nodes`), with replica overrides.
///
/// Kubernetes YAML goes through `crate::workload::load` (notes are printed as
/// warnings on stderr); a `.json` file is taken as a serialised `Workload` IR.
pub(super) fn load_workload(
    paths: &[PathBuf],
    nodes: &[PathBuf],
    replicas: &[(String, usize)],
    max_pods: usize,
) -> miette::Result<Workload> {
    let all: Vec<&PathBuf> = paths.iter().chain(nodes.iter()).collect();
    if all.iter().any(|p| !is_json(p)) {
        if let Some(j) = all.iter().find(|p| is_json(p)) {
            return Err(miette::miette!(
                help = "give either Kubernetes YAML files or one Workload .json, not both",
                "{}: cannot mix a JSON Workload with Kubernetes YAML",
                j.display()
            ));
        }
        let mut opts = crate::workload::LoadOptions {
            max_pods,
            ..Default::default()
        };
        for (name, n) in replicas {
            let n = u32::try_from(*n).map_err(|_| {
                miette::miette!(
                    help =
                        "raise the limit with --max-pods N if the plan really needs that many pods",
                    "--replicas {name}={n}: more than the limit of {max_pods} pods per plan"
                )
            })?;
            opts.replicas.insert(name.clone(), n);
        }
        let files: Vec<PathBuf> = all.into_iter().cloned().collect();
        let loaded = crate::workload::load(&files, &opts)?;
        print_notes(&loaded.notes);
        return Ok(loaded.workload);
    }
    let mut w = Workload::default();
    for p in paths {
        let part: Workload = load_json(p, "workload (Workload)")?;
        w.classes.extend(part.classes);
        w.daemonsets.extend(part.daemonsets);
        w.nodes.extend(part.nodes);
    }
    for p in nodes {
        let part: Workload = load_json(p, "existing nodes (Workload with `nodes`)")?;
        w.nodes.extend(part.nodes);
    }
    for (name, n) in replicas {
        if *n > max_pods {
            return Err(miette::miette!(
                help = "raise the limit with --max-pods N if the plan really needs that many pods",
                "--replicas {name}={n}: more than the limit of {max_pods} pods per plan"
            ));
        }
        let Some(c) = w
            .classes
            .iter_mut()
            .find(|c| c.owner.as_ref().is_some_and(|o| &o.name == name) || &c.id == name)
        else {
            return Err(miette::miette!(
                "--replicas {name}={n}: no workload called {name}"
            ));
        };
        let base = c
            .pod_names
            .first()
            .and_then(|s| s.rsplit_once('-').map(|(b, _)| b.to_string()))
            .unwrap_or_else(|| name.clone());
        c.pod_names = (0..*n).map(|i| format!("{base}-{i}")).collect();
    }
    Ok(w)
}

/// Loads the catalog: `embedded` or a JSON file.
pub(super) fn load_catalog(spec: &str) -> miette::Result<Catalog> {
    if spec == "embedded" {
        return Ok(crate::catalog::embedded::embedded()?);
    }
    load_json(Path::new(spec), "catalog (Catalog)")
}

/// Parses `NAME=N`.
pub(super) fn parse_replicas(s: &str) -> Result<(String, usize), String> {
    let (n, c) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected NAME=N"))?;
    let c: usize = c
        .parse()
        .map_err(|_| format!("`{s}`: N must be a non-negative integer"))?;
    Ok((n.to_string(), c))
}

/// Prints the loader's notes (objects it skipped, fields it ignored), at most
/// [`crate::policy::diag::MAX_RENDERED`] of them, then how many more there were: a
/// `kubectl get all -o yaml` dump can hold 100,000 skipped objects, and a terminal
/// full of the same warning hides the one that matters.
fn print_notes(notes: &[impl std::fmt::Display]) {
    let cap = crate::policy::diag::MAX_RENDERED;
    for note in notes.iter().take(cap) {
        eprintln!("warning: {note}");
    }
    if notes.len() > cap {
        eprintln!("warning: … and {} more notes like these", notes.len() - cap);
    }
}

/// The inputs `plan` and `explain` share, as flags.
#[derive(Debug, clap::Args)]
pub(super) struct PlanInputs {
    // One value per flag, repeated for more (`--policy a --policy b`), as kubectl does:
    // a flag that took several values would swallow `explain`'s positional pod.
    /// Policy files or folders (repeat the flag for more).
    #[arg(long, required = true)]
    pub policy: Vec<PathBuf>,
    /// Kubernetes YAML with the pending work (repeat the flag for more).
    #[arg(long, required_unless_present = "nodes")]
    pub workload: Vec<PathBuf>,
    /// Existing Node objects with their bound pods (repeat the flag for more).
    #[arg(long)]
    pub nodes: Vec<PathBuf>,
    /// `embedded` or a catalog file.
    #[arg(long, default_value = "embedded")]
    pub catalog: String,
    /// Override a workload's replica count, as `NAME=N` (repeat the flag for more).
    #[arg(long, value_parser = parse_replicas)]
    pub replicas: Vec<(String, usize)>,
    /// The most pods the workload may ask for (replicas, parallelism and
    /// bare pods, over all objects); a count past it is an error at the object.
    #[arg(long, value_name = "N", default_value_t = crate::workload::DEFAULT_MAX_PODS)]
    pub max_pods: usize,
}

/// The compiled policy, the workload and the catalog that a plan reads.
pub(super) struct Loaded {
    pub policy: PolicySet,
    pub workload: Workload,
    pub catalog: Catalog,
}

impl PlanInputs {
    /// Reads and checks everything, reporting the first bad input with its location.
    pub(super) fn load(&self) -> miette::Result<Loaded> {
        Ok(Loaded {
            policy: load_policy(&self.policy)?,
            workload: self.load_workload()?,
            catalog: load_catalog(&self.catalog)?,
        })
    }

    /// The workload alone (with the existing nodes and the replica overrides).
    pub(super) fn load_workload(&self) -> miette::Result<Workload> {
        load_workload(&self.workload, &self.nodes, &self.replicas, self.max_pods)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_json_names_file_line_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("policy.json");
        std::fs::write(&path, "{\n  \"pools\": [\n    oops\n  ]\n}\n").expect("write");
        let err = load_policy(std::slice::from_ref(&path)).expect_err("must fail");
        let text = format!("{err}");
        assert!(text.contains("policy.json:3:5"), "{text}");
    }

    #[test]
    fn replicas_parse() {
        assert_eq!(parse_replicas("web=3"), Ok(("web".to_string(), 3)));
        assert!(parse_replicas("web").is_err());
        assert!(parse_replicas("web=-1").is_err());
    }
}
