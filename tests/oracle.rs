#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "tests: a failed step aborts the test with its message"
)]
//! The scheduler oracle in CI: the real kube-scheduler must bind every planned
//! pod to its planned node (tests/support/oracle.rs says how), and refuse every
//! pod the plan calls unschedulable, on:
//! - every example workload in examples/ with the policy it is shown with;
//! - Karpenter's example workloads with their NodePools (as tests/plan_karpenter.rs pairs them);
//! - the diverse benchmark workload at 1,000 pods (as `nodewright bench` makes it);
//! - every `tests/oracle/cases/<name>.yaml` (policy `<name>.policy` beside it, else
//!   policies/default.policy);
//! - a proptest corpus of small workloads (fixed seed; `PROPTEST_CASES` for more).
//!
//! One control plane (etcd, kube-apiserver, kube-scheduler) for the whole binary,
//! emptied between cases. Needs `$NODEWRIGHT_KUBE_BIN` (scripts/test.sh sets it);
//! never skipped.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

#[path = "support/corpus.rs"]
mod corpus;
#[path = "support/kube.rs"]
mod kube;
#[path = "support/oracle.rs"]
mod oracle;

use oracle::{Cluster, Inputs, Prepared, Report};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn root(p: &str) -> PathBuf {
    PathBuf::from(format!("{ROOT}/{p}"))
}

/// The binary's control plane and scheduler, started on first use.
async fn cluster() -> &'static Cluster {
    match tokio::task::spawn_blocking(|| CLUSTER.get_or_init(Cluster::start)).await {
        Ok(c) => c,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("starting the control plane: {e}"),
    }
}

/// Checks one input on the shared cluster; prints its summary and time.
async fn run(name: &str, p: &Prepared) -> Report {
    let _guard = LOCK.lock().await;
    let c = cluster().await;
    let t = Instant::now();
    let (plan, report) = oracle::check(c, p).await;
    eprintln!(
        "oracle {name}: {} nodes, {} unschedulable; {} ({:.1} s)",
        plan.nodes.len(),
        plan.unschedulable.len(),
        report.summary(),
        t.elapsed().as_secs_f64()
    );
    report
}

/// Fails with every refusal of every case, after all cases ran.
fn assert_no_refusals(results: &[(String, Report)]) {
    let bad: Vec<String> = results
        .iter()
        .filter(|(_, r)| !r.refused.is_empty())
        .map(|(n, r)| format!("{n}: {}", r.summary()))
        .collect();
    assert!(
        bad.is_empty(),
        "kube-scheduler refused plans:\n{}",
        bad.join("\n")
    );
}

fn load(inputs: &Inputs) -> Prepared {
    Prepared::load(inputs).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_bind_as_planned() {
    let cases: [(&str, &str, &[&str]); 5] = [
        ("policies/default.policy", "web-and-batch.yaml", &[]),
        ("policies", "web-and-batch.yaml", &["cluster-nodes.yaml"]),
        ("policies", "arm64-services.yaml", &[]),
        ("policies", "gpu-inference.yaml", &[]),
        ("policies/default.policy", "unplaceable.yaml", &[]),
    ];
    let mut results = Vec::new();
    for (policy, workload, nodes) in cases {
        let inputs = Inputs {
            policy: vec![root(policy)],
            workload: vec![root(&format!("examples/{workload}"))],
            nodes: nodes
                .iter()
                .map(|n| root(&format!("examples/{n}")))
                .collect(),
            ..Default::default()
        };
        let name = format!(
            "{workload} ({policy}{})",
            if nodes.is_empty() { "" } else { ", with nodes" }
        );
        let r = run(&name, &load(&inputs)).await;
        results.push((name, r));
    }
    // The unplaceable pod was checked in the second direction.
    let unplaceable = &results[4].1;
    assert!(unplaceable.probes > 0, "{}", unplaceable.summary());
    assert_no_refusals(&results);
}

/// (NodePools file, workload file, replica overrides).
type KarpenterCase = (&'static str, &'static str, &'static [(&'static str, u32)]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn karpenter_examples_bind_as_planned() {
    // (NodePools, workload, replica overrides), as tests/plan_karpenter.rs pairs them.
    let cases: &[KarpenterCase] = &[
        ("multiple-arch.yaml", "arm64.yaml", &[("arm64", 10)]),
        (
            "multiple-arch.yaml",
            "prefer-arm.yaml",
            &[("prefer-arm", 8)],
        ),
        (
            "large-instances.yaml",
            "gpu-nvidia.yaml",
            &[("gpu-nvidia", 3)],
        ),
        ("large-instances.yaml", "gpu-amd.yaml", &[("gpu-amd", 3)]),
        ("large-instances.yaml", "neuron.yaml", &[("neuron", 2)]),
        ("spot.yaml", "spot.yaml", &[("spot", 6)]),
        (
            "general-purpose.yaml",
            "spread-zone.yaml",
            &[("zone-spread", 12)],
        ),
        ("general-purpose.yaml", "spread-hostname.yaml", &[]),
        ("general-purpose.yaml", "spread-hostname-zone.yaml", &[]),
        ("general-purpose.yaml", "inflate.yaml", &[("inflate", 20)]),
        (
            "general-purpose.yaml",
            "disruption-budget.yaml",
            &[("pdb", 10)],
        ),
        ("100-cpu-limit.yaml", "inflate.yaml", &[("inflate", 150)]),
        ("min-values-family.yaml", "inflate.yaml", &[("inflate", 10)]),
    ];
    let k = |p: &str| root(&format!("tests/data/karpenter/examples/{p}"));
    let mut results = Vec::new();
    for (pools, workload, replicas) in cases {
        let inputs = Inputs {
            policy: vec![k(&format!("nodepools/{pools}"))],
            workload: vec![k(&format!("workloads/{workload}"))],
            replicas: replicas.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
            ..Default::default()
        };
        let name = format!("karpenter {workload} on {pools}");
        let r = run(&name, &load(&inputs)).await;
        results.push((name, r));
    }
    assert_no_refusals(&results);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diverse_1000_binds_as_planned() {
    let p = Prepared {
        policy: nodewright::ir::PolicySet {
            pools: vec![nodewright::synth::default_pool("default")],
            ..Default::default()
        },
        catalog: nodewright::synth::karpenter_catalog(400),
        workload: nodewright::synth::diverse_workload(1000, 42),
        objects: vec![],
    };
    let r = run("diverse 1000", &p).await;
    assert_eq!(r.total, 1000, "{}", r.summary());
    // kube-scheduler binds pods by priority, then creation order, each
    // judged against the pods bound before it; the packer places classes
    // linked by spreads and first-pod affinity in that order
    // (docs/solver.md), so every pod binds as planned.
    eprintln!("diverse 1000: {}", r.summary());
    assert_no_refusals(&[("diverse 1000".to_string(), r)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_cases_bind_as_planned() {
    let dir = root("tests/oracle/cases");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no cases in {}", dir.display());
    let mut results = Vec::new();
    for f in files {
        let policy = f.with_extension("policy");
        let policy = if policy.is_file() {
            policy
        } else {
            root("policies/default.policy")
        };
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let inputs = Inputs {
            policy: vec![policy],
            workload: vec![f],
            ..Default::default()
        };
        let r = run(&name, &load(&inputs)).await;
        results.push((name, r));
    }
    assert_no_refusals(&results);
}

/// The oracle can fail: a plan whose node is too small for its pods, and a
/// plan calling a pod unschedulable that fits, are both refused, with the
/// scheduler's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_plans_are_refused() {
    let p = load(&Inputs {
        policy: vec![root("policies/default.policy")],
        workload: vec![root("examples/arm64-services.yaml")],
        ..Default::default()
    });
    let _guard = LOCK.lock().await;
    let c = cluster().await;
    let good = p.plan();
    assert!(good.unschedulable.is_empty(), "{:?}", good.unschedulable);

    // Too small: the first node's allocatable CPU shrinks to 10m.
    let mut small = good.clone();
    small.nodes[0].allocatable.cpu_milli = 10;
    let r = oracle::check_plan_within(c, &p, &small, std::time::Duration::from_secs(15)).await;
    eprintln!("too small: {}", r.summary());
    assert!(!r.refused.is_empty(), "{}", r.summary());
    assert!(
        r.refused.iter().all(|x| x.node == small.nodes[0].name),
        "{}",
        r.summary()
    );
    assert!(
        r.refused
            .iter()
            .any(|x| x.message.contains("Insufficient cpu")),
        "{}",
        r.summary()
    );

    // Called unschedulable, yet it fits: the second direction finds it.
    let mut wrong = good.clone();
    let node = wrong.nodes.pop().expect("a node");
    for pod in node.pods {
        wrong.unschedulable.push(nodewright::solver::Unschedulable {
            pod,
            reasons: vec!["(made up by the test)".into()],
        });
    }
    let r = oracle::check_plan(c, &p, &wrong).await;
    eprintln!("wrongly unschedulable: {}", r.summary());
    assert!(
        r.refused
            .iter()
            .any(|x| x.message.contains("kube-scheduler bound it")),
        "{}",
        r.summary()
    );
}

/// The generated corpus: the same seeded cases as tests/corpus.rs draws
/// (`corpus::runner`), 24 unless `PROPTEST_CASES` says otherwise, little
/// shrinking (each case takes a cluster round).
#[test]
fn corpus_binds_as_planned() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let config = Config {
        max_shrink_iters: 8,
        ..corpus::runner(24).config().clone()
    };
    let mut runner = TestRunner::new(config);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let n = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&corpus::case_strategy(), |case| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = dir.path().join("case.policy");
        let workload = dir.path().join("case.yaml");
        std::fs::write(&policy, &case.policy).expect("write policy");
        std::fs::write(&workload, &case.workload).expect("write workload");
        let inputs = Inputs {
            policy: vec![policy],
            workload: vec![workload],
            ..Default::default()
        };
        let p = Prepared::load(&inputs)
            .map_err(|e| TestCaseError::fail(format!("the case does not load: {e}")))?;
        let r = rt.block_on(run(&format!("corpus #{i}"), &p));
        if r.refused.is_empty() {
            Ok(())
        } else {
            Err(TestCaseError::fail(format!(
                "{}\n--- policy ---\n{}\n--- workload ---\n{}",
                r.summary(),
                case.policy,
                case.workload
            )))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
