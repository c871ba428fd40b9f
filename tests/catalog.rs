//! The embedded catalog: the indexed filter agrees with a naive scan, and the
//! `catalog list` / `catalog show` commands work end to end.

use std::process::Command;

use nodewright::catalog::Catalog;
use nodewright::catalog::embedded::embedded_static;
use nodewright::catalog::index::CatalogIndex;
use nodewright::ir::{Operator, Requirement, Requirements, labels};
use proptest::prelude::*;

/// Keys to draw requirements over: strings, integers, per-offering keys, and
/// one key no offering carries.
const KEYS: &[&str] = &[
    labels::INSTANCE_FAMILY,
    labels::INSTANCE_CATEGORY,
    labels::INSTANCE_GENERATION,
    labels::INSTANCE_CPU,
    labels::INSTANCE_MEMORY,
    labels::INSTANCE_GPU_COUNT,
    labels::INSTANCE_SIZE,
    labels::ARCH,
    labels::ZONE,
    labels::CAPACITY_TYPE,
    labels::INSTANCE_TYPE,
    "example.com/not-on-any-node",
];

const OPS: &[Operator] = &[
    Operator::In,
    Operator::NotIn,
    Operator::Exists,
    Operator::DoesNotExist,
    Operator::Gt,
    Operator::Lt,
];

fn catalog() -> (&'static Catalog, &'static CatalogIndex) {
    use std::sync::OnceLock;
    static INDEX: OnceLock<CatalogIndex> = OnceLock::new();
    let cat = embedded_static().expect("the embedded catalog decodes");
    (cat, INDEX.get_or_init(|| cat.index()))
}

/// One requirement term: a key, an operator, and values picked from what the
/// catalog really has for that key (plus one value nobody has).
fn term() -> impl Strategy<Value = Requirement> {
    (
        0..KEYS.len(),
        0..OPS.len(),
        prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        0i64..200,
    )
        .prop_map(|(k, o, picks, n)| {
            let (_, index) = catalog();
            let key = KEYS[k];
            let op = OPS[o];
            let mut known: Vec<String> = index.values(key).into_iter().map(String::from).collect();
            known.push("no-such-value".into());
            let values = match op {
                Operator::Exists | Operator::DoesNotExist => vec![],
                Operator::Gt | Operator::Lt => vec![n.to_string()],
                _ => picks.iter().map(|p| p.get(&known).clone()).collect(),
            };
            Requirement {
                key: key.to_string(),
                op,
                values,
                min_values: None,
                origin: None,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Every requirement set filters the same offerings through the bitset
    /// index as through a plain scan of every offering's labels.
    #[test]
    fn index_filter_equals_naive_scan(terms in prop::collection::vec(term(), 1..6)) {
        let (cat, index) = catalog();
        let reqs = Requirements::from_terms(terms.iter());
        let fast: Vec<usize> = index.filter(&reqs).iter().collect();
        let slow: Vec<usize> = cat.filter_naive(&reqs).iter().collect();
        prop_assert_eq!(fast, slow, "requirements: {:?}", terms);
    }
}

#[test]
fn the_index_is_not_trivially_empty_or_full() {
    let (cat, index) = catalog();
    let mut reqs = Requirements::new();
    reqs.require_in(labels::INSTANCE_FAMILY, &["m5"]);
    let m5 = index.filter(&reqs).count();
    assert!(m5 > 0 && m5 < cat.offerings.len(), "{m5}");
}

fn nodewright(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nodewright"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run nodewright")
}

#[test]
fn list_filters_with_the_requirement_syntax() {
    let out = nodewright(&[
        "catalog",
        "list",
        "--require",
        "karpenter.k8s.aws/instance-family in [m5, c6g]",
        "--require",
        "karpenter.k8s.aws/instance-cpu < 4",
        "--capacity-type",
        "on-demand",
        "--sort",
        "price",
        "--output",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let names: Vec<&str> = rows
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["instance_type"].as_str().expect("name"))
        .collect();
    // m5's smallest is large (2 vCPU); c6g has medium (1) and large (2).
    assert_eq!(names, vec!["c6g.medium", "c6g.large", "m5.large"]);
    for r in rows.as_array().expect("array") {
        assert_eq!(r["capacity_type"], "on-demand");
        assert_eq!(r["price_estimated"], false);
    }
}

#[test]
fn show_prints_labels_allocatable_and_offerings() {
    let out = nodewright(&["catalog", "show", "m5.large"]);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    for want in [
        "karpenter.k8s.aws/instance-family = m5",
        "allocatable: cpu 1930m, memory 6903Mi",
        "max pods: 29 = 3 ENIs × (10 IPv4 per ENI − 1) + 2",
        "us-east-1a",
        "0.096",
        "estimate",
    ] {
        assert!(s.contains(want), "missing `{want}` in:\n{s}");
    }
}

#[test]
fn bad_input_is_named_not_panicked() {
    let out = nodewright(&[
        "catalog",
        "list",
        "--require",
        "karpenter.k8s.aws/instance-family in [m5",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("--require:1:38: error") && e.contains("list not closed") && e.contains("help:"),
        "{e}"
    );

    let out = nodewright(&["catalog", "show", "m5.larg"]);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("unknown instance type `m5.larg`") && e.contains("m5.large"),
        "{e}"
    );
}

/// `catalog list --require` reads the policy language's requirement syntax:
/// each expression means the same as `require EXPR` in a pool, except that the
/// flag also expands short names (`instance-family`) to their label keys.
#[test]
fn require_flag_matches_the_policy_language() {
    for expr in [
        "karpenter.k8s.aws/instance-family in [m5, c5]",
        "instance-family not in [t3, t2]",
        "instance-gpu-name exists",
        "instance-gpu-name does-not-exist",
        "karpenter.k8s.aws/instance-cpu > 4",
        "instance-memory < 16384",
        "kubernetes.io/arch in [arm64]",
        "zone not in [us-east-1e]",
        "capacity-type in [spot]",
    ] {
        let flag = nodewright::policy::parse_requirement("--require", expr)
            .unwrap_or_else(|d| panic!("{expr}: {}", d.render(100)));
        let text = format!("pool p {{\n  require {expr}\n}}\n");
        let file = nodewright::policy::parse("t.policy", &text)
            .unwrap_or_else(|d| panic!("{expr}: {}", d.render(100)));
        let (set, _) = nodewright::policy::compile(&[file])
            .unwrap_or_else(|d| panic!("{expr}: {}", d.render(100)));
        let term = &set.pools[0].requirement_terms[0];
        let key = labels::expand_short_name(&term.key).unwrap_or(&term.key);
        assert_eq!(
            (flag.key.as_str(), flag.op, &flag.values),
            (key, term.op, &term.values),
            "{expr}"
        );
    }
}
