//! Policy text: pest grammar (`grammar/policy.pest`) → AST with spans
//! (`ast`, `parse`) → checks and IR (`compile`) → diagnostics (`diag`), plus
//! the canonical formatter (`fmt`). See docs/language.md.

pub mod ast;
pub mod compile;
pub mod diag;
mod fast;
pub mod fmt;
pub mod parse;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use diag::{Diagnostic, Diagnostics, Severity};

use crate::ir;

/// Parses one policy file; `file` names it in diagnostics and anchors script paths.
pub fn parse(file: &str, text: &str) -> Result<ast::File, Diagnostics> {
    parse::parse(Path::new(file), text)
}

/// Compiles the parsed files of one policy set (in the order given) into the IR.
/// Returns the warnings alongside; any error fails the whole set.
pub fn compile(files: &[ast::File]) -> Result<(ir::PolicySet, Vec<Diagnostic>), Diagnostics> {
    compile::compile(files)
}

/// The canonical text of a file.
pub fn format(file: &ast::File) -> String {
    fmt::format(file)
}

/// The policy files `paths` stand for: a directory means every `*.policy`
/// directly in it, sorted by name; a file stands for itself.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Diagnostics> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|e| io_diag(p, &e))?;
            let mut found: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "policy"))
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Reads, parses and compiles a policy set from files and directories.
/// All files are parsed (so every syntax error is reported) before compiling.
pub fn load(paths: &[PathBuf]) -> Result<(ir::PolicySet, Vec<Diagnostic>), Diagnostics> {
    let files = parse_files(paths)?;
    compile(&files)
}

/// Reads and parses every file `paths` stand for, collecting all diagnostics.
pub fn parse_files(paths: &[PathBuf]) -> Result<Vec<ast::File>, Diagnostics> {
    let mut diags = Vec::new();
    let mut files = Vec::new();
    for path in expand_paths(paths)? {
        match std::fs::read_to_string(&path) {
            Ok(text) => match parse::parse(&path, &text) {
                Ok(f) => files.push(f),
                Err(d) => diags.extend(d.0),
            },
            Err(e) => diags.extend(io_diag(&path, &e).0),
        }
    }
    if diags.is_empty() {
        Ok(files)
    } else {
        Err(Diagnostics(diags))
    }
}

fn io_diag(path: &Path, e: &std::io::Error) -> Diagnostics {
    Diagnostics(vec![
        Diagnostic::error(
            path,
            &Arc::from(""),
            ast::Span::DUMMY,
            "policy::io",
            format!("cannot read {}: {e}", path.display()),
        )
        .with_help("check the path and its permissions"),
    ])
}

/// Every script a compiled set refers to (policy-wide first, then per pool), for
/// `check` and the reloader to compile with the scoring engine.
pub fn scripts(set: &ir::PolicySet) -> Vec<&ir::ScriptRef> {
    set.scripts
        .iter()
        .chain(set.pools.iter().flat_map(|p| p.scripts.iter()))
        .collect()
}
