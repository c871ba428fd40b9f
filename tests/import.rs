//! `nodewright import`: every Karpenter example and the hand-written fixtures in
//! `tests/import/` import, print, re-parse and compile to the same IR; the
//! printed policy is snapshotted; error cases snapshot their file:line:col.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::PathBuf;

use nodewright::import;
use nodewright::policy;

fn inputs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for dir in [
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/karpenter/examples/nodepools"
        ),
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/import"),
    ] {
        let mut d: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| import::is_yaml(p))
            .collect();
        d.sort();
        v.extend(d);
    }
    v
}

#[test]
fn imports_print_and_compile_identically() {
    let paths = inputs();
    assert!(paths.len() >= 24, "{paths:?}");
    let mut windows = String::new();
    for p in paths {
        let stem = p
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("stem")
            .to_string();
        let text = std::fs::read_to_string(&p).expect("read");
        if stem.starts_with("windows") {
            // Windows is refused at import, at the YAML line that asks for it.
            let e = import::import_str(&format!("{stem}.yaml"), &text).expect_err(&stem);
            windows.push_str(&format!(
                "{}:{}:{}: {} [{}]\n  help: {}\n",
                e.file,
                e.line,
                e.column,
                e.message,
                e.code.as_str(),
                e.help.as_deref().unwrap_or("-")
            ));
            continue;
        }
        let imp = import::import_str(&format!("{stem}.yaml"), &text)
            .unwrap_or_else(|e| panic!("{stem}: {e:?}"));
        let (direct, _) = policy::compile(std::slice::from_ref(&imp.file))
            .unwrap_or_else(|d| panic!("{stem}: {d:?}"));
        let printed = import::render(&imp, &[format!("{stem}.yaml")]);
        let reparsed = policy::parse(&format!("{stem}.policy"), &printed)
            .unwrap_or_else(|d| panic!("{stem}: {d:?}\n{printed}"));
        let (via_text, _) =
            policy::compile(&[reparsed]).unwrap_or_else(|d| panic!("{stem}: {d:?}\n{printed}"));
        assert_eq!(direct, via_text, "{stem}\n{printed}");
        insta::assert_snapshot!(format!("import-{stem}"), printed);
    }
    insta::assert_snapshot!("import-windows-refused", windows);
}

#[test]
fn errors_name_file_line_column() {
    let np = |body: &str| {
        format!(
            "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata:\n  name: a\nspec:\n{body}  template:\n    spec:\n      nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: d}}\n"
        )
    };
    let cases = [
        ("unknown-field", np("  wieght: 3\n")),
        ("unrepresentable-replicas", np("  replicas: 3\n")),
        ("bad-quantity", np("  limits:\n    cpu: 12x\n")),
        ("balanced", np("  disruption:\n    consolidationPolicy: Balanced\n")),
        ("budget-over-100", np("  disruption:\n    budgets:\n      - nodes: \"150%\"\n")),
        ("wrong-kind", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n".to_string()),
        ("wrong-api-version", "apiVersion: karpenter.sh/v1beta1\nkind: NodePool\n".to_string()),
        ("malformed-yaml", "apiVersion: karpenter.sh/v1\nkind: [NodePool\n".to_string()),
        (
            "ssm-parameter",
            "apiVersion: karpenter.k8s.aws/v1\nkind: EC2NodeClass\nmetadata:\n  name: d\nspec:\n  role: r\n  amiSelectorTerms:\n    - ssmParameter: /aws/x\n".to_string(),
        ),
    ];
    let mut out = String::new();
    for (name, yaml) in cases {
        let e = import::import_str(&format!("{name}.yaml"), &yaml).expect_err(name);
        out.push_str(&format!(
            "{name}: {}:{}:{}: {}\n  help: {}\n",
            e.file,
            e.line,
            e.column,
            e.message,
            e.help.as_deref().unwrap_or("-")
        ));
    }
    insta::assert_snapshot!("import-errors", out);
}
