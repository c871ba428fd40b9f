//! Errors on lines past 64k columns (where miette's renderer panics) render a
//! clipped window with the caret under the error, from the command line, for
//! policy text and for Karpenter YAML. The inputs are generated (about 70 KB).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test, and its items serve only this test"
)]

use std::process::Command;

fn nodewright(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nodewright"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run nodewright");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The rendered line `n │ …text…` and the underline below it: the
/// underline's `┬` or `─` sits under `needle`.
fn assert_caret_under(out: &str, line: usize, needle: &str) {
    let lines: Vec<&str> = out.lines().collect();
    let prefix = format!(" {line} │ …");
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with(prefix.trim_start()))
        .unwrap_or_else(|| panic!("no clipped line {line}:\n{out}"));
    let shown = lines[at];
    let col = shown
        .char_indices()
        .find(|(b, _)| shown[*b..].starts_with(needle))
        .map(|(b, _)| shown[..b].chars().count())
        .unwrap_or_else(|| panic!("`{needle}` not in the window: {shown}"));
    let under: Vec<char> = lines[at + 1].chars().collect();
    assert!(
        under.get(col).is_some_and(|c| matches!(c, '─' | '┬')),
        "no underline under `{needle}`:\n{shown}\n{}",
        lines[at + 1]
    );
    assert!(
        shown.chars().count() < 200,
        "window too wide: {}",
        shown.len()
    );
}

#[test]
fn policy_error_past_column_70k() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pad = "x".repeat(72_000);
    let text = format!("pool a {{\n  label team = \"{pad}\" require zone inn [a]\n}}\n");
    let path = dir.path().join("long.policy");
    std::fs::write(&path, &text).expect("write");
    let (code, out) = nodewright(&["check", &path.display().to_string()]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("panicked"), "{out}");
    let col = 2 + "label team = \"".len() + pad.len() + "\" require zone ".len() + 1;
    assert!(
        out.contains(&format!("long.policy:2:{col}: error")),
        "{out}"
    );
    assert!(out.contains("unknown operator `inn`"), "{out}");
    assert_caret_under(&out, 2, "inn");
    assert!(out.len() < 3_000, "{} bytes", out.len());
}

#[test]
fn yaml_error_past_column_70k() {
    let dir = tempfile::tempdir().expect("tempdir");
    let values: Vec<String> = (0..12_000).map(|i| format!("v{i}")).collect();
    let text = format!(
        "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata:\n  name: a\nspec:\n  template:\n    spec:\n      requirements: [{{key: kubernetes.io/arch, operator: In, values: [{}]}}, {{key: team, operator: Sometimes}}]\n      nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: d}}\n",
        values.join(", ")
    );
    assert!(text.lines().nth(7).is_some_and(|l| l.len() > 70_000));
    let path = dir.path().join("long.yaml");
    std::fs::write(&path, &text).expect("write");
    let (code, out) = nodewright(&["import", &path.display().to_string()]);
    assert_eq!(code, 2, "{out}");
    assert!(!out.contains("panicked"), "{out}");
    assert!(out.contains("long.yaml:8:"), "{out}");
    // serde_yaml_ng locates the mapping that holds the bad operator.
    assert_caret_under(&out, 8, "{key: team");
    assert!(out.contains("Sometimes"), "{out}");
    assert!(out.len() < 3_000, "{} bytes", out.len());
}
