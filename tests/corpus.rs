//! The oracle's corpus generator (`tests/support/corpus.rs`) checked on its
//! own: every generated case is a policy that compiles and a workload that
//! loads, the plan is made without a panic and passes the validator, and the
//! run covers every feature the generator claims (printed as fractions, so a
//! change that starves a feature fails here, not silently in the oracle).
//!
//! A second test gives every object of every case, and a Pod made from each
//! pod template (what the oracle creates), to a real kube-apiserver as a
//! server-side dry run with strict field validation: the oracle must never
//! trip on an object the API server refuses. It needs `NODEWRIGHT_KUBE_BIN`
//! (run it through `bash scripts/test.sh --test corpus`).
//!
//! `PROPTEST_CASES=N` runs N cases (64 by default), from the fixed seed
//! `PROPTEST_RNG_SEED` (0 by default).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test"
)]

#[path = "support/corpus.rs"]
mod corpus;
#[path = "support/kube.rs"]
mod kube_support;

use std::collections::BTreeMap;
use std::sync::Mutex;

use nodewright::catalog::embedded::embedded_static;
use nodewright::solver::validate::validate;
use nodewright::solver::{SolveInput, solve};
use nodewright::workload::{LoadOptions, load_text};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestCaseError;

use corpus::{Case, FEATURES, case_strategy, features, runner};

/// The case count of this run: `PROPTEST_CASES`, else 64.
fn cases() -> u32 {
    runner(64).config().cases
}

/// Validator errors of solver bugs this corpus found and that are not fixed
/// yet, each with its regression case in `tests/oracle/cases/`. They are
/// counted and printed, not failed, so the corpus keeps guarding everything
/// else; delete the line with the fix.
const KNOWN_BUGS: &[&str] = &[];

/// What one case gave, for the totals.
#[derive(Default)]
struct Tally {
    cases: usize,
    pods: usize,
    unschedulable: usize,
    features: BTreeMap<&'static str, usize>,
    /// Loader notes and plan `ignored:` notes, by their message without the pod name.
    notes: BTreeMap<String, usize>,
}

/// A note's gist: its text after the field path, digits and names blurred, so
/// the same warning on two workloads counts once per kind.
fn gist(note: &str) -> String {
    let tail = note.rsplit_once(": ").map_or(note, |(_, t)| t);
    tail.chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

/// Checks one case through the library, as `nodewright plan` runs it.
fn check(case: &Case, tally: &Mutex<Tally>) -> Result<(), TestCaseError> {
    let file = nodewright::policy::parse("corpus.policy", &case.policy)
        .map_err(|d| TestCaseError::fail(format!("policy does not parse:\n{}", d.render(100))))?;
    let (mut policy, warnings) = nodewright::policy::compile(&[file])
        .map_err(|d| TestCaseError::fail(format!("policy does not compile:\n{}", d.render(100))))?;
    if !warnings.is_empty() {
        let w: Vec<String> = warnings.iter().map(|w| w.message.clone()).collect();
        return Err(TestCaseError::fail(format!("policy warnings: {w:?}")));
    }
    policy.sort_pools();
    let loaded = load_text("corpus.yaml", &case.workload, &LoadOptions::default())
        .map_err(|e| TestCaseError::fail(format!("workload does not load: {e:?}")))?;
    let workload = loaded.workload;
    let pods: usize = workload.classes.iter().map(|c| c.count()).sum();
    if !(1..=20).contains(&pods) {
        return Err(TestCaseError::fail(format!("{pods} pods, want 1..=20")));
    }
    let catalog = embedded_static().expect("embedded catalog");
    let input = SolveInput {
        policy: &policy,
        catalog,
        workload: &workload,
        scorer: None,
        unavailable: None,
    };
    let plan = solve(&input);
    let errs = validate(&plan, &input);
    // A constraint the solver says it ignored (a plan note `ignored: ... on
    // KEY (...)`) is expected to fail validation: the oracle's gap list, not a
    // new bug. Every other validator error fails the case.
    let ignored: Vec<&str> = plan
        .notes
        .iter()
        .filter(|n| n.starts_with("ignored:"))
        .filter_map(|n| n.split_once(" on ").and_then(|(_, r)| r.split(' ').next()))
        .collect();
    let (excused, errs): (Vec<String>, Vec<String>) = errs.into_iter().partition(|e| {
        ignored
            .iter()
            .any(|k| e.contains(&format!(" {k} ")) || e.ends_with(&format!(" {k}")))
            || KNOWN_BUGS.iter().any(|b| e.contains(b))
    });
    if !errs.is_empty() {
        return Err(TestCaseError::fail(format!(
            "the plan does not validate: {errs:?}\nplan notes: {:?}",
            plan.notes
        )));
    }
    let placed: usize = plan.nodes.iter().map(|n| n.pods.len()).sum::<usize>()
        + plan.existing.iter().map(|e| e.pods.len()).sum::<usize>();
    if placed + plan.unschedulable.len() != pods {
        return Err(TestCaseError::fail(format!(
            "{placed} placed + {} unschedulable != {pods} pods",
            plan.unschedulable.len()
        )));
    }
    let mut t = tally.lock().unwrap();
    t.cases += 1;
    t.pods += pods;
    t.unschedulable += plan.unschedulable.len();
    for f in features(case) {
        *t.features.entry(f).or_default() += 1;
    }
    for n in &loaded.notes {
        *t.notes
            .entry(format!("load: {}", gist(&n.message)))
            .or_default() += 1;
    }
    for e in &excused {
        *t.notes
            .entry(format!("invalid (ignored key or known bug): {}", gist(e)))
            .or_default() += 1;
    }
    for n in plan.notes.iter().filter(|n| n.starts_with("ignored")) {
        *t.notes.entry(format!("plan: {}", gist(n))).or_default() += 1;
    }
    Ok(())
}

#[test]
fn every_case_loads_plans_and_validates_and_every_feature_is_covered() {
    let n = cases();
    let tally = Mutex::new(Tally::default());
    let result = runner(64).run(&case_strategy(), |case| check(&case, &tally));
    if let Err(e) = result {
        panic!("{e}");
    }
    let t = tally.into_inner().unwrap();
    println!(
        "{} cases, {} pods, {} unschedulable ({:.1}%)",
        t.cases,
        t.pods,
        t.unschedulable,
        100.0 * t.unschedulable as f64 / t.pods.max(1) as f64
    );
    for f in FEATURES {
        let k = t.features.get(f).copied().unwrap_or(0);
        println!(
            "  {f:32} {k:4} / {} ({:.0}%)",
            t.cases,
            100.0 * k as f64 / t.cases.max(1) as f64
        );
    }
    for (note, k) in &t.notes {
        println!("  note x{k}: {note}");
    }
    let missing: Vec<&&str> = FEATURES
        .iter()
        .filter(|f| !t.features.contains_key(**f))
        .collect();
    // A short run (PROPTEST_CASES=5) cannot cover everything; the default one must.
    if n >= 64 {
        assert!(missing.is_empty(), "features no case covered: {missing:?}");
    }
    assert!(
        t.unschedulable * 4 <= t.pods,
        "most pods must be schedulable: {} of {} are not",
        t.unschedulable,
        t.pods
    );
}

/// The oracle relies on a fixed seed giving the same corpus on every run.
#[test]
fn the_corpus_is_deterministic() {
    let draw = || {
        let mut r = runner(1);
        let s = case_strategy();
        (0..5)
            .map(|_| {
                let c = s.new_tree(&mut r).unwrap().current();
                (c.policy, c.workload)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(draw(), draw());
}

/// Names and labels the API server would refuse never appear: every
/// `metadata.name` is a DNS-1123 subdomain of at most 63 characters (it is
/// also a label value for pods), and every workload has a label `app`.
#[test]
fn objects_have_valid_names() {
    let mut r = runner(1);
    let s = case_strategy();
    for _ in 0..64 {
        let c = s.new_tree(&mut r).unwrap().current();
        for doc in c.workload.split("\n---\n") {
            let v: serde_json::Value = serde_yaml_ng::from_str(doc).unwrap();
            let name = v["metadata"]["name"].as_str().unwrap();
            assert!(
                name.len() <= 63
                    && name
                        .chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
                    && name.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                    && name.ends_with(|ch: char| ch.is_ascii_alphanumeric()),
                "bad name {name:?}"
            );
            assert!(v["apiVersion"].is_string() && v["kind"].is_string());
        }
    }
}

/// Every object of the corpus (and a Pod from every pod template) passes a
/// server-side dry-run apply with strict field validation on a real
/// kube-apiserver. PriorityClasses are applied for real first: the Priority
/// admission plugin refuses a Pod whose class does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_passes_a_server_side_dry_run() {
    use kube::api::{Api, DynamicObject, Patch, PatchParams, ValidationDirective};
    let kube = kube_support::kube_exclusive().await;
    let client = kube.client().await;
    let real = PatchParams::apply("nodewright-corpus-test").force();
    let mut dry = PatchParams::apply("nodewright-corpus-test")
        .dry_run()
        .force();
    dry.field_validation = Some(ValidationDirective::Strict);
    let mut r = runner(1);
    let s = case_strategy();
    let mut checked: BTreeMap<String, usize> = BTreeMap::new();
    let mut kinds = std::collections::HashMap::new();
    for _ in 0..cases() {
        let c = s.new_tree(&mut r).unwrap().current();
        let mut objs: Vec<(serde_json::Value, bool)> = Vec::new();
        for doc in c.workload.split("\n---\n") {
            let v: serde_json::Value = serde_yaml_ng::from_str(doc).unwrap();
            let kind = v["kind"].as_str().unwrap().to_string();
            if kind != "Pod" && !v["spec"]["template"].is_null() {
                let name = v["metadata"]["name"].as_str().unwrap();
                let mut spec = v["spec"]["template"]["spec"].clone();
                // The StatefulSet controller adds each claim template as a
                // volume of the pod (claim TEMPLATE-NAME-ORDINAL).
                for t in v["spec"]["volumeClaimTemplates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let t = t["metadata"]["name"].as_str().unwrap();
                    let vols = spec["volumes"].as_array().cloned().unwrap_or_default();
                    let mut vols = vols;
                    vols.push(serde_json::json!({
                        "name": t,
                        "persistentVolumeClaim": {"claimName": format!("{t}-{name}-0")},
                    }));
                    spec["volumes"] = serde_json::Value::Array(vols);
                }
                let pod = serde_json::json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {
                        "name": format!("{name}-probe"), "namespace": "default",
                        "labels": v["spec"]["template"]["metadata"]["labels"],
                    },
                    "spec": spec,
                });
                objs.push((pod, true));
            }
            objs.push((v.clone(), kind != "PriorityClass"));
        }
        // PriorityClasses first, for real.
        objs.sort_by_key(|(_, dry_run)| *dry_run);
        for (obj, dry_run) in objs {
            let tm: kube::api::TypeMeta = serde_json::from_value(obj.clone()).unwrap();
            let gvk = kube::api::GroupVersionKind::try_from(&tm).unwrap();
            let (ar, caps) = match kinds.get(&gvk.kind) {
                Some(found) => std::clone::Clone::clone(found),
                None => {
                    let found = kube::discovery::pinned_kind(&client, &gvk)
                        .await
                        .unwrap_or_else(|e| panic!("{gvk:?} is not served: {e}"));
                    kinds.insert(gvk.kind.clone(), found.clone());
                    found
                }
            };
            let api: Api<DynamicObject> = match caps.scope {
                kube::discovery::Scope::Namespaced => {
                    Api::namespaced_with(client.clone(), "default", &ar)
                }
                kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &ar),
            };
            let name = obj["metadata"]["name"].as_str().unwrap().to_string();
            let pp = if dry_run { &dry } else { &real };
            api.patch(&name, pp, &Patch::Apply(&obj))
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "the API server refuses {} {name}: {e}\n{}\ncase: {c:#?}",
                        gvk.kind,
                        serde_yaml_ng::to_string(&obj).unwrap()
                    )
                });
            *checked.entry(gvk.kind).or_default() += 1;
        }
    }
    println!("checked by the API server: {checked:?}");
    for kind in [
        "Pod",
        "Deployment",
        "StatefulSet",
        "Job",
        "DaemonSet",
        "PersistentVolumeClaim",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
    ] {
        assert!(
            checked.contains_key(kind),
            "no {kind} was checked: {checked:?}"
        );
    }
}

/// `cargo test --test corpus show_cases -- --ignored --nocapture` prints the
/// first cases of the corpus, to read what the oracle is given.
#[test]
#[ignore = "prints cases for reading; nothing to check"]
fn show_cases() {
    let mut r = runner(1);
    let s = case_strategy();
    let n = std::env::var("CORPUS_SHOW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for i in 0..n {
        let c = s.new_tree(&mut r).unwrap().current();
        println!(
            "##### case {i}: policy\n{}\n##### case {i}: workload\n{}",
            c.policy, c.workload
        );
    }
}
