//! Scoring scripts end to end: each shipped example in `scripts/` moves the
//! plan in the direction it promises (compared with the same policy
//! unscored), runaway scripts stop at their budget and fall back to the
//! unscored cost, and `nodewright check` reports script errors with
//! file:line:col and a hint.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nodewright::catalog::embedded::embedded;
use nodewright::ir::PolicySet;
use nodewright::scoring::{RhaiScorer, Scorer, TimeBudget, build_scorer};
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

/// A score of 1.7e308 $/hour on every offering is clamped (and counted):
/// the prices still decide, so the plan is the unscored one (an m5.large
/// for the three small pods, not the m5.12xlarge an unclamped score chose).
#[test]
fn absurd_scores_are_clamped_and_prices_still_count() {
    let p = policy("bad/huge-score.policy");
    let (scored, unscored, scorer) = plan_both(&p, &pods_small());
    assert_eq!(types(&unscored), vec!["m5.large".to_string()]);
    assert_eq!(types(&scored), types(&unscored));
    assert!(scorer.clamped() >= 1, "clamps not counted");
    assert_eq!(scorer.failures(), 0, "a clamp is not a failure");
}

/// Three pods of 250m / 256Mi.
fn pods_small() -> Workload {
    let mut w = pods();
    w.classes.truncate(1);
    let c = &mut w.classes[0];
    c.pod_names.truncate(3);
    c.requests.cpu_milli = 250;
    c.requests.memory = 256 << 20;
    w
}

/// Plans `p` without its scripts.
fn plan_unscored(p: &PolicySet) -> Plan {
    let cat = embedded().unwrap_or_else(|e| panic!("{e:?}"));
    let w = pods();
    solve(&SolveInput {
        policy: p,
        catalog: &cat,
        workload: &w,
        scorer: None,
        unavailable: None,
    })
}

/// Plans `p` with its scripts under `budget`; the plan must be valid.
fn plan_with_budget(p: &PolicySet, budget: TimeBudget) -> (Plan, RhaiScorer) {
    let cat = embedded().unwrap_or_else(|e| panic!("{e:?}"));
    let scorer = build_scorer(p)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .with_time_budget(budget);
    let w = pods();
    let input = SolveInput {
        policy: p,
        catalog: &cat,
        workload: &w,
        scorer: Some(&scorer),
        unavailable: None,
    };
    let plan = solve(&input);
    assert_eq!(validate(&plan, &input), Vec::<String>::new());
    (plan, scorer)
}

/// A script within its operation cap that sorts a large array thousands of
/// times per call: the per-plan cap (50 ms here) stops scoring, the plan
/// completes unscored, and the note says why. However fast the machine,
/// hundreds of such calls take longer than 50 ms, so this does not depend
/// on its speed (nor is the plan's time asserted).
#[test]
fn slow_scripts_stop_at_the_plan_budget_and_the_plan_is_unscored() {
    let p = policy("bad/sort-loop.policy");
    let unscored = plan_unscored(&p);
    let budget = TimeBudget {
        per_call: Duration::from_millis(50),
        per_plan: Duration::from_millis(50),
    };
    let (plan, _) = plan_with_budget(&p, budget);
    assert!(plan.unschedulable.is_empty());
    assert_eq!(types(&plan), types(&unscored));
    assert!((plan.total_price_per_hour - unscored.total_price_per_hour).abs() < 1e-9);
    let note = plan
        .notes
        .iter()
        .find(|n| n.starts_with("scoring stopped"))
        .unwrap_or_else(|| panic!("no note: {:?}", plan.notes));
    assert!(note.contains("past the cap of 50ms"), "{note}");
    assert!(note.contains("this plan is unscored"), "{note}");
}

/// A call past its wall-clock budget stops and counts as a failure; with a
/// budget of zero every call is past it, whatever the machine.
#[test]
fn slow_calls_stop_at_the_call_budget() {
    let p = policy("bad/sort-loop.policy");
    let budget = TimeBudget {
        per_call: Duration::ZERO,
        per_plan: Duration::from_secs(3600),
    };
    let (plan, scorer) = plan_with_budget(&p, budget);
    assert!(plan.unschedulable.is_empty());
    assert!(scorer.failures() >= 1, "failures not counted");
    assert!(
        !plan.notes.iter().any(|n| n.starts_with("scoring stopped")),
        "{:?}",
        plan.notes
    );
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
