//! `nodewright plan --nodes cluster.yaml --consolidate` on the cases under tests/consolidate/:
//! each `<case>.yaml` is a cluster (`kubectl get nodes,pods,pdb -A -o yaml`), run with
//! `<case>.policy` beside it or `consolidate.policy`; the text and the JSON are snapshots.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test, and its items serve only this test"
)]

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run(case: &str, json: bool) -> String {
    let dir = Path::new(ROOT).join("tests/consolidate");
    let own = dir.join(format!("{case}.policy"));
    let policy = if own.exists() {
        own
    } else {
        dir.join("consolidate.policy")
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nodewright"));
    cmd.current_dir(ROOT).args([
        "plan",
        "--policy",
        policy.to_str().unwrap(),
        "--nodes",
        dir.join(format!("{case}.yaml")).to_str().unwrap(),
        "--consolidate",
    ]);
    if json {
        cmd.args(["--output", "json"]);
    }
    let out = cmd.output().expect("run nodewright");
    assert!(
        out.status.success(),
        "{case}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(case: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&run(case, true)).unwrap();
    v["consolidation"].clone()
}

const CASES: [&str; 6] = [
    "underused",
    "replace",
    "empty",
    "do-not-disrupt",
    "pdb",
    "spot-to-spot",
];

#[test]
fn cases_text() {
    for case in CASES {
        insta::assert_snapshot!(format!("{case}-text"), run(case, false));
    }
}

#[test]
fn cases_json() {
    for case in CASES {
        insta::assert_json_snapshot!(format!("{case}-json"), json(case));
    }
}

#[test]
fn json_has_exactly_the_documented_fields() {
    let c = json("replace");
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&c),
        [
            "blocked",
            "moves",
            "price_per_hour_after",
            "price_per_hour_before"
        ]
    );
    let m = &c["moves"][0];
    assert_eq!(
        keys(m),
        ["launch", "pods", "reason", "remove", "saving_per_hour"]
    );
    // `launch` has the plan's node shape.
    assert!(m["launch"][0]["instance_type_options"].is_array());
    let before = c["price_per_hour_before"].as_f64().unwrap();
    let after = c["price_per_hour_after"].as_f64().unwrap();
    let saved: f64 = c["moves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["saving_per_hour"].as_f64().unwrap())
        .sum();
    assert!(
        (before - after - saved).abs() < 1e-6,
        "{before} - {after} != {saved}"
    );
}

#[test]
fn blockers_are_named() {
    let reasons = |case: &str| -> Vec<String> {
        json(case)["blocked"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["reason"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(reasons("pdb").iter().all(|r| r.contains("shop/db")));
    assert!(
        reasons("do-not-disrupt")
            .iter()
            .any(|r| r.contains("pod shop/web-1"))
    );
    assert!(reasons("spot-to-spot")[0].contains("15 cheaper instance types"));
    assert!(json("spot-to-spot")["moves"].as_array().unwrap().is_empty());
}
