//! Policy language tests: every malformed case under tests/policy/diagnostics
//! renders a snapshot-tested diagnostic; good policies compile to a
//! snapshot-tested IR; `check` and `fmt` behave as documented.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use nodewright::policy;

fn sorted(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

/// Parse then compile, returning every diagnostic rendered (no colour, 100 columns).
fn diagnose(path: &Path) -> (bool, String) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path.to_string_lossy().to_string();
    let result = policy::parse(&name, &text).and_then(|f| policy::compile(&[f]));
    match result {
        Ok((_, warnings)) => (false, policy::Diagnostics(warnings).render(100)),
        Err(d) => (d.has_errors(), d.render(100)),
    }
}

#[test]
fn malformed_policies_have_precise_diagnostics() {
    let cases = sorted("tests/policy/diagnostics", "policy");
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    for case in cases {
        let (failed, rendered) = diagnose(&case);
        assert!(
            failed,
            "{} compiled without errors:\n{rendered}",
            case.display()
        );
        // Every error names file:line:col and carries a hint.
        assert!(
            rendered.contains("help:"),
            "{}: no hint:\n{rendered}",
            case.display()
        );
        let name = case
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        insta::assert_snapshot!(name, rendered);
    }
}

/// Policies that compile but deserve a warning: each renders with its span and hint.
#[test]
fn suspicious_policies_warn_precisely() {
    let cases = sorted("tests/policy/warnings", "policy");
    assert!(!cases.is_empty());
    for case in cases {
        let (failed, rendered) = diagnose(&case);
        assert!(!failed, "{} has errors:\n{rendered}", case.display());
        assert!(
            rendered.contains("warning") && rendered.contains("help:"),
            "{}: no warning with a hint:\n{rendered}",
            case.display()
        );
        let name = case
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        insta::assert_snapshot!(format!("warn-{name}"), rendered);
    }
}

#[test]
fn good_policies_compile_to_expected_ir() {
    let shipped = sorted("policies", "policy");
    for path in sorted("tests/policy/good", "policy")
        .into_iter()
        .chain(shipped)
    {
        let (set, warnings) = policy::load(std::slice::from_ref(&path))
            .unwrap_or_else(|d| panic!("{}", d.render(100)));
        assert!(
            warnings.is_empty(),
            "{}",
            policy::Diagnostics(warnings).render(100)
        );
        let name = format!(
            "ir-{}",
            path.file_stem()
                .map(|s| s.to_string_lossy())
                .unwrap_or_default()
        );
        insta::assert_json_snapshot!(name, set);
    }
}

#[test]
fn shipped_policies_check_and_are_formatted() {
    for path in sorted("policies", "policy") {
        let (_, warnings) = policy::load(std::slice::from_ref(&path))
            .unwrap_or_else(|d| panic!("{}", d.render(100)));
        assert!(
            warnings.is_empty(),
            "{}",
            policy::Diagnostics(warnings).render(100)
        );
        let text = std::fs::read_to_string(&path).expect("read policy");
        let file = policy::parse(&path.to_string_lossy(), &text).expect("parses");
        assert_eq!(
            policy::format(&file),
            text,
            "{} is not in canonical form",
            path.display()
        );
    }
}

#[test]
fn format_is_stable_and_preserves_meaning() {
    for path in sorted("tests/policy/good", "policy")
        .into_iter()
        .chain(sorted("policies", "policy"))
    {
        let text = std::fs::read_to_string(&path).expect("read");
        let name = path.to_string_lossy().to_string();
        let a = policy::parse(&name, &text).expect("parses");
        let formatted = policy::format(&a);
        let b = policy::parse(&name, &formatted).unwrap_or_else(|d| panic!("{}", d.render(100)));
        assert_eq!(a, b, "{}", path.display());
        assert_eq!(
            policy::format(&b),
            formatted,
            "fmt is not idempotent on {}",
            path.display()
        );
        let ia = policy::compile(&[a]).expect("compiles").0;
        let ib = policy::compile(&[b]).expect("compiles").0;
        assert_eq!(ia, ib);
    }
}

fn nodewright(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nodewright"))
        .args(args)
        .output()
        .expect("run nodewright");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_exit_codes_and_json() {
    let (code, _, err) = nodewright(&["check", "tests/policy/good/full.policy"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = nodewright(&[
        "check",
        "tests/policy/diagnostics/15-contradiction-in.policy",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("15-contradiction-in.policy:3:3"), "{err}");
    let (code, out, _) = nodewright(&[
        "check",
        "--format",
        "json",
        "tests/policy/diagnostics/12-unknown-operator.policy",
    ]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let d = &v[0];
    assert_eq!(d["line"], 2);
    assert_eq!(d["column"], 38);
    assert_eq!(d["severity"], "error");
    assert_eq!(d["code"], "policy::unknown-operator");
    assert_eq!(d["help"], "did you mean `in`?");
    assert!(
        d["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("12-unknown-operator.policy"))
    );
}

#[test]
fn fmt_check_and_rewrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("x.policy");
    std::fs::write(
        &p,
        "pool a { weight 1; require kubernetes.io/arch in [amd64] }\n",
    )
    .expect("write");
    let ps = p.to_string_lossy().to_string();
    let (code, out, _) = nodewright(&["fmt", "--check", &ps]);
    assert_eq!(code, 1);
    assert!(out.contains("x.policy"));
    let (code, _, _) = nodewright(&["fmt", &ps]);
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read_to_string(&p).expect("read"),
        "pool a {\n  weight 1\n  require kubernetes.io/arch in [amd64]\n}\n"
    );
    let (code, _, _) = nodewright(&["fmt", "--check", &ps]);
    assert_eq!(code, 0);
}

#[test]
fn a_directory_is_one_set_with_global_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("a.policy"),
        "node-class default {\n  role \"r\"\n}\n\npool web {\n  weight 1\n}\n",
    )
    .expect("write");
    // References across files resolve; rules accumulate in file order.
    std::fs::write(
        dir.path().join("b.policy"),
        "pool batch {\n  node-class default\n}\n\nplace pods where namespace == batch on pool batch\nprice 1 weight 5\nprice 2\nprice 3 weight 1\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("ignored.txt"), "not a policy").expect("write");
    let (set, warnings) =
        policy::load(&[dir.path().to_path_buf()]).unwrap_or_else(|d| panic!("{}", d.render(100)));
    assert!(warnings.is_empty());
    let names: Vec<&str> = set.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["web", "batch"], "weight descending");
    // Unweighted first, then ascending weight: the heaviest price applies last and wins.
    let prices: Vec<String> = set.cost.iter().map(|r| format!("{:?}", r.action)).collect();
    assert_eq!(prices, ["SetPrice(2.0)", "SetPrice(3.0)", "SetPrice(1.0)"]);

    // The same pool name in a second file is an error that points at the first.
    std::fs::write(dir.path().join("c.policy"), "pool web {\n}\n").expect("write");
    let err = policy::load(&[dir.path().to_path_buf()]).expect_err("duplicate pool");
    let text = err.render(100);
    assert!(text.contains("pool `web` is defined twice"), "{text}");
    assert!(
        text.contains("first defined at") && text.contains("a.policy:5:6"),
        "{text}"
    );
    assert!(text.contains("c.policy:1:6"), "{text}");
}
