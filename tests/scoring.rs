//! Scoring scripts end to end: each shipped example in `scripts/` moves the
//! plan in the direction it promises (compared with the same policy
//! unscored), runaway scripts stop at their budget and fall back to the
//! unscored cost, and `nodewright check` reports script errors with
//! file:line:col and a hint.

use std::path::{Path, PathBuf};
use std::process::Command;

use nodewright::catalog::embedded::embedded;
use nodewright::ir::PolicySet;
use nodewright::scoring::{RhaiScorer, Scorer, build_scorer};
use nodewright::solver::validate::validate;
use nodewright::solver::{Plan, SolveInput, solve};
use nodewright::workload::{LoadOptions, Workload, load};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scoring")
}

fn policy(name: &str) -> PolicySet {
    let path = dir().join(name);
    match nodewright::import::load_policy_set(std::slice::from_ref(&path)) {
        Ok((mut set, _)) => {
            set.sort_pools();
            set
        }
        Err(e) => panic!("{}: {e:?}", path.display()),
    }
}

fn pods() -> Workload {
    load(&[dir().join("pods.yaml")], &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e:?}"))
        .workload
}

/// Plans `policy` with its scripts and without them (the same policy with
/// every `score with` removed); both plans must be valid and complete.
fn plan_both(policy: &PolicySet, w: &Workload) -> (Plan, Plan, RhaiScorer) {
    let cat = embedded().unwrap_or_else(|e| panic!("{e:?}"));
    let scorer = build_scorer(policy).unwrap_or_else(|e| panic!("{e:?}"));
    let scored_in = SolveInput {
        policy,
        catalog: &cat,
        workload: w,
        scorer: Some(&scorer),
        unavailable: None,
    };
    let scored = solve(&scored_in);
    assert_eq!(validate(&scored, &scored_in), Vec::<String>::new());
    let mut bare = policy.clone();
    bare.scripts.clear();
    for p in &mut bare.pools {
        p.scripts.clear();
    }
    let bare_in = SolveInput {
        policy: &bare,
        catalog: &cat,
        workload: w,
        scorer: None,
        unavailable: None,
    };
    let unscored = solve(&bare_in);
    assert_eq!(validate(&unscored, &bare_in), Vec::<String>::new());
    assert!(scored.unschedulable.is_empty() && unscored.unschedulable.is_empty());
    (scored, unscored, scorer)
}

fn types(plan: &Plan) -> Vec<String> {
    let mut t: Vec<String> = plan.nodes.iter().map(|n| n.instance_type.clone()).collect();
    t.sort();
    t.dedup();
    t
}

fn family(t: &str) -> &str {
    t.split('.').next().unwrap_or(t)
}

#[test]
fn prefer_graviton_moves_pods_to_arm64() {
    let (scored, unscored, scorer) = plan_both(&policy("prefer-graviton.policy"), &pods());
    let arm = |p: &Plan| {
        p.nodes
            .iter()
            .filter(|n| family(&n.instance_type) == "m7g")
            .map(|n| n.pods.len())
            .sum::<usize>()
    };
    assert!(
        unscored
            .nodes
            .iter()
            .any(|n| family(&n.instance_type) == "c6a"),
        "unscored should use the cheaper x86 c6a somewhere: {:?}",
        types(&unscored)
    );
    assert!(
        scored
            .nodes
            .iter()
            .all(|n| family(&n.instance_type) == "m7g"),
        "scored should put every pod on Graviton m7g: {:?}",
        types(&scored)
    );
    assert!(arm(&scored) > arm(&unscored));
    assert!(scored.total_price_per_hour > unscored.total_price_per_hour);
    assert_eq!(scorer.failures(), 0);
}

#[test]
fn prefer_newest_generation_within_ten_percent() {
    let (scored, unscored, _) = plan_both(&policy("prefer-newest-generation.policy"), &pods());
    assert!(
        unscored
            .nodes
            .iter()
            .all(|n| family(&n.instance_type) != "m7i"),
        "{:?}",
        types(&unscored)
    );
    assert!(
        scored
            .nodes
            .iter()
            .all(|n| family(&n.instance_type) == "m7i"),
        "{:?}",
        types(&scored)
    );
    // m7i costs 5% more than m6i: inside the 10% the script allows.
    assert!(scored.total_price_per_hour <= unscored.total_price_per_hour * 1.10 + 1e-9);
}

#[test]
fn savings_plan_makes_covered_family_win_on_demand() {
    let (scored, unscored, _) = plan_both(&policy("savings-plan.policy"), &pods());
    assert!(
        unscored
            .nodes
            .iter()
            .all(|n| family(&n.instance_type) == "m6a"),
        "{:?}",
        types(&unscored)
    );
    assert!(
        scored
            .nodes
            .iter()
            .all(|n| family(&n.instance_type) == "m6i"),
        "{:?}",
        types(&scored)
    );
}

#[test]
fn uninterruptible_pods_leave_spot_and_others_stay() {
    let (scored, unscored, scorer) =
        plan_both(&policy("no-spot-for-uninterruptible.policy"), &pods());
    assert!(scorer.is_load_dependent());
    let ct_of = |plan: &Plan, prefix: &str| -> Vec<String> {
        plan.nodes
            .iter()
            .filter(|n| n.pods.iter().any(|p| p.starts_with(prefix)))
            .map(|n| n.capacity_type.as_str().to_string())
            .collect()
    };
    assert!(
        ct_of(&unscored, "default/ledger")
            .iter()
            .all(|c| c == "spot")
    );
    let ledger = ct_of(&scored, "default/ledger");
    assert!(
        !ledger.is_empty() && ledger.iter().all(|c| c == "on-demand"),
        "{ledger:?}"
    );
    // Nodes carrying only ordinary pods stay on spot.
    assert!(
        scored
            .nodes
            .iter()
            .filter(|n| n.pods.iter().all(|p| p.starts_with("default/api")))
            .all(|n| n.capacity_type.as_str() == "spot")
    );
}

/// A runaway script: the plan completes, equals the unscored plan (every
/// candidate fell back to its unscored cost), and the failures are counted.
fn runaway(name: &str) {
    let p = policy(&format!("bad/{name}.policy"));
    let (scored, unscored, scorer) = plan_both(&p, &pods());
    assert_eq!(types(&scored), types(&unscored), "{name}");
    assert!(
        (scored.total_price_per_hour - unscored.total_price_per_hour).abs() < 1e-9,
        "{name}"
    );
    assert!(scorer.failures() >= 1, "{name}: failures not counted");
}

#[test]
fn endless_loop_stops_at_the_operation_budget() {
    runaway("loop");
}

#[test]
fn endless_recursion_stops_at_the_call_depth() {
    runaway("recurse");
}

#[test]
fn huge_string_stops_at_the_size_cap() {
    runaway("bigstring");
}

#[test]
fn non_number_score_is_a_counted_failure() {
    runaway("not-a-number");
}

fn check(policy: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nodewright"))
        .arg("check")
        .arg(dir().join("bad").join(policy))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_reports_script_errors_with_position_and_hint() {
    let (code, err) = check("syntax.policy");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("syntax.rhai:3:"), "{err}");
    assert!(err.contains("script does not compile"), "{err}");
    assert!(err.contains("let x = ;"), "{err}");
    assert!(err.contains("help:"), "{err}");

    let (code, err) = check("no-score.policy");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("script defines no `score` function"), "{err}");
    assert!(err.contains("fn score_offering(o)"), "{err}");

    for sandboxed in ["import.policy", "eval.policy"] {
        let (code, err) = check(sandboxed);
        assert_eq!(code, 1, "{sandboxed}: {err}");
        assert!(err.contains("sandboxed"), "{sandboxed}: {err}");
    }

    // The runaway scripts compile: they only fail when run.
    let (code, err) = check("loop.policy");
    assert_eq!(code, 0, "{err}");
}

#[test]
fn shipped_scripts_compile() {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let mut n = 0;
    for e in std::fs::read_dir(&scripts).unwrap_or_else(|e| panic!("{e}")) {
        let path = e.unwrap_or_else(|e| panic!("{e}")).path();
        if path.extension().is_some_and(|x| x == "rhai") {
            nodewright::scoring::Script::load(&path)
                .unwrap_or_else(|d| panic!("{}", d.render(100)));
            n += 1;
        }
    }
    assert!(n >= 4, "scripts/ ships {n} examples");
}

/// `admit(c)` holds for the node as launched, not only for the pods it was
/// opened with: no node carries more than the script admits, however the
/// packer filled it, and every pod is still placed.
#[test]
fn admit_caps_every_node_as_launched() {
    let (scored, unscored, scorer) = plan_both(&policy("admit-three-pods.policy"), &pods());
    assert!(scorer.is_load_dependent());
    // Unscored, the six pods share fewer nodes: the cap changes the plan.
    assert!(
        unscored.nodes.iter().any(|n| n.pods.len() > 3),
        "{unscored:#?}"
    );
    for n in &scored.nodes {
        assert!(n.pods.len() <= 3, "{}: {:?}", n.name, n.pods);
    }
    let placed: usize = scored.nodes.iter().map(|n| n.pods.len()).sum();
    assert_eq!(placed, 6);
}
