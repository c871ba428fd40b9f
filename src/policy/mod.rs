//! Policy text: pest grammar (`grammar/policy.pest`) → AST with spans
//! (`ast`, `parse`) → checks and IR (`compile`) → diagnostics (`diag`), plus
//! the canonical formatter (`fmt`). See docs/language.md.

pub mod ast;
pub mod code;
pub mod compile;
pub mod diag;
pub mod fmt;
pub mod parse;
pub mod text;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use code::Code;
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

/// Parses and checks one requirement expression: the text that follows
/// `require` in a pool, such as `karpenter.k8s.aws/instance-family in [m5, c5]`,
/// `instance-cpu > 4` or `instance-gpu-name exists`. It is read by the same
/// grammar rule and checked by the same code as a pool's `require`, so the
/// command line (`catalog list --require`) cannot drift from the language.
/// Short names (`instance-family`, `zone`, ...) expand to their label keys,
/// as in rule conditions. `name` labels the diagnostics (e.g. `--require`).
pub fn parse_requirement(name: &str, text: &str) -> Result<ir::Requirement, Diagnostics> {
    let path = Path::new(name);
    let mut r = parse::parse_requirement(path, text)?;
    if let Some(full) = ir::labels::expand_short_name(&r.key.text) {
        r.key.text = full.to_string();
    }
    compile::requirement(path, &Arc::from(text), &r)
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
        match std::fs::read(&path).map(text::decode) {
            Ok(Ok(text)) => match parse::parse(&path, &text) {
                Ok(f) => files.push(f),
                Err(d) => diags.extend(d.0),
            },
            Ok(Err(bad)) => diags.push(not_utf8_diag(&path, bad)),
            Err(e) => diags.extend(io_diag(&path, &e).0),
        }
    }
    if diags.is_empty() {
        Ok(files)
    } else {
        Err(Diagnostics(diags))
    }
}

/// A policy file that is not UTF-8, at its first bad byte.
fn not_utf8_diag(path: &Path, bad: text::NotUtf8) -> Diagnostic {
    let len = '\u{FFFD}'.len_utf8();
    let message = bad.message();
    Diagnostic::error(
        path,
        &Arc::from(bad.lossy),
        ast::Span::new(bad.offset, len),
        Code::InvalidUtf8,
        message,
    )
    .with_primary("not UTF-8")
    .with_help(text::NotUtf8::HELP)
}

fn io_diag(path: &Path, e: &std::io::Error) -> Diagnostics {
    Diagnostics(vec![
        Diagnostic::error(
            path,
            &Arc::from(""),
            ast::Span::DUMMY,
            Code::Io,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Operator, labels};

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).expect("write");
        p
    }

    /// A byte-order mark is accepted and does not shift columns on line 1.
    #[test]
    fn bom_is_accepted_with_exact_columns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = write(
            dir.path(),
            "ok.policy",
            b"\xEF\xBB\xBFpool a {\n  weight 1\n}\n",
        );
        let files = parse_files(std::slice::from_ref(&ok)).expect("parses");
        assert_eq!(format(&files[0]), "pool a {\n  weight 1\n}\n");
        let bad = write(
            dir.path(),
            "bad.policy",
            b"\xEF\xBB\xBFpool a { weight x }\n",
        );
        let d = load(&[bad]).expect_err("weight x");
        assert_eq!(d.0[0].line_col(), (1, 17), "{}", d.render(100));
        assert!(d.render(100).contains(":1:17: error"));
    }

    /// Bytes that are not UTF-8 are an error at the first of them, with a hint.
    #[test]
    fn invalid_utf8_is_located() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(dir.path(), "x.policy", b"pool a {\n  weight \xff\xfe1\n}\n");
        let d = parse_files(&[p]).expect_err("not utf-8");
        assert_eq!(d.0.len(), 1);
        let e = &d.0[0];
        assert_eq!(e.code, Code::InvalidUtf8);
        assert_eq!(e.line_col(), (2, 10));
        assert_eq!(
            e.message,
            "not UTF-8 text: byte 0xFF here is not valid UTF-8"
        );
        let r = d.render(100);
        assert!(
            r.contains("x.policy:2:10: error") && r.contains("help: save the file as UTF-8"),
            "{r}"
        );
        assert!(r.contains("weight \u{FFFD}"), "{r}");
    }

    #[test]
    fn nul_bytes_are_escaped_in_syntax_errors() {
        let d = parse("n.policy", "pool a {\n  \0\n}\n").expect_err("nul");
        let e = &d.0[0];
        assert_eq!((e.code, e.line_col()), (Code::Syntax, (2, 3)));
        assert!(e.message.contains("`\\0`"), "{}", e.message);
        assert!(
            e.help
                .as_deref()
                .is_some_and(|h| h.contains("control character")),
            "{e:?}"
        );
    }

    #[test]
    fn parse_requirement_reads_every_operator() {
        let r = parse_requirement("--require", "karpenter.k8s.aws/instance-family in [m5, c5]")
            .expect("parses");
        assert_eq!((r.op, r.values.len()), (Operator::In, 2));
        let r = parse_requirement("--require", "instance-family not in [t3]").expect("parses");
        assert_eq!(
            (r.key.as_str(), r.op),
            (labels::INSTANCE_FAMILY, Operator::NotIn)
        );
        let op = |t: &str| parse_requirement("--require", t).expect("parses").op;
        assert_eq!(op("instance-gpu-name exists"), Operator::Exists);
        assert_eq!(
            op("instance-gpu-name does-not-exist"),
            Operator::DoesNotExist
        );
        assert_eq!(op("instance-cpu < 64"), Operator::Lt);
        let r = parse_requirement("--require", "instance-cpu>4").expect("parses");
        assert_eq!((r.op, r.values), (Operator::Gt, vec!["4".to_string()]));
        let r =
            parse_requirement("--require", "instance-family in [m5, c5] min 2").expect("parses");
        assert_eq!(r.min_values, Some(2));
    }

    /// Errors come from the policy grammar and checker: same codes, spans and hints.
    #[test]
    fn parse_requirement_errors_are_policy_diagnostics() {
        let err = |t: &str| {
            let d = parse_requirement("--require", t).expect_err(t);
            assert_eq!(d.0.len(), 1, "{t}: {}", d.render(100));
            d.0.into_iter().next().expect("one")
        };
        let d = err("instance-cpu > four");
        assert_eq!(
            (d.code.as_str(), d.span.offset, d.span.len),
            ("policy::non-integer-bound", 15, 4)
        );
        let d = err("instance-family = m5");
        assert_eq!(
            (d.code.as_str(), d.span.offset),
            ("policy::unknown-operator", 16)
        );
        assert!(
            d.help.as_deref().is_some_and(|h| h.contains("in [value]")),
            "{d:?}"
        );
        let d = err("instance-family not [m5]");
        assert_eq!(d.code.as_str(), "policy::unknown-operator");
        let d = err("karpenter.k8s.aws/instance-family in [m5");
        assert_eq!((d.code.as_str(), d.span.offset), ("policy::syntax", 37));
        assert_eq!(d.message, "list not closed: expected `,` or `]` after `m5`");
        assert!(d.help.as_deref().is_some_and(|h| h.contains("with `]`")));
        let d = err("instance-family in");
        assert_eq!(
            (d.code.as_str(), d.span.offset),
            ("policy::empty-values", 16)
        );
        assert_eq!(d.message, "`in` needs at least one value");
        let d = err("instance-family in [m5] x");
        assert_eq!((d.code.as_str(), d.span.offset), ("policy::syntax", 24));
        assert!(
            d.message.contains("end of the requirement"),
            "{}",
            d.message
        );
        assert!(
            d.help
                .as_deref()
                .is_some_and(|h| h.contains("KEY in [a, b]"))
        );
        assert_eq!(err("").code.as_str(), "policy::syntax");
        let d = err("arch exists now");
        assert_eq!((d.code.as_str(), d.span.offset), ("policy::syntax", 12));
        let d = err("karpenter.k8s.aws/instance-famly in [m5]");
        assert_eq!(d.code.as_str(), "policy::unknown-label");
        assert_eq!(
            d.help.as_deref(),
            Some("did you mean `karpenter.k8s.aws/instance-family`?")
        );
        assert_eq!(err("zone in []").code.as_str(), "policy::empty-values");
    }
}
