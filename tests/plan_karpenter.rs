//! Real input end to end: Karpenter's example workloads planned against the
//! matching example NodePools, and our own examples/ against policies/, on the
//! embedded catalog. Each plan must pass the independent validator and make
//! sense for its workload (arm64 on arm64, GPUs on GPU types, spreads over
//! zones, spot on spot); a compact summary of each plan is snapshotted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use nodewright::catalog::{CapacityType, Catalog, InstanceType};
use nodewright::ir::PolicySet;
use nodewright::solver::validate::validate;
use nodewright::solver::{Plan, SolveInput, render, solve};
use nodewright::workload::{self, LoadOptions, Workload};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn karpenter(path: &str) -> PathBuf {
    PathBuf::from(format!("{ROOT}/tests/data/karpenter/examples/{path}"))
}

fn ours(path: &str) -> PathBuf {
    PathBuf::from(format!("{ROOT}/{path}"))
}

fn policy(paths: &[PathBuf]) -> PolicySet {
    let (mut set, _warnings) =
        nodewright::import::load_policy_set(paths).unwrap_or_else(|e| panic!("{paths:?}: {e:?}"));
    set.sort_pools();
    set
}

fn load(paths: &[PathBuf], replicas: &[(&str, u32)]) -> Workload {
    let mut opts = LoadOptions::default();
    for (n, k) in replicas {
        opts.replicas.insert(n.to_string(), *k);
    }
    workload::load(paths, &opts)
        .unwrap_or_else(|e| panic!("{paths:?}: {e}"))
        .workload
}

fn catalog() -> &'static Catalog {
    nodewright::catalog::embedded::embedded_static().expect("the embedded catalog decodes")
}

/// Plans and checks the plan with the independent validator.
fn plan(policy: &PolicySet, w: &Workload) -> Plan {
    let input = SolveInput {
        policy,
        catalog: catalog(),
        workload: w,
        scorer: None,
        unavailable: None,
    };
    let plan = solve(&input);
    let errs = validate(&plan, &input);
    assert!(
        errs.is_empty(),
        "invalid plan: {errs:#?}\n{}",
        render::table(&plan)
    );
    plan
}

fn types() -> HashMap<&'static str, &'static InstanceType> {
    catalog()
        .types
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect()
}

/// One line per node (pool, type, zone, capacity type, pods), then the
/// unschedulable pods and the total: what the snapshot records.
fn summary(plan: &Plan) -> String {
    let mut s = String::new();
    for n in &plan.nodes {
        s += &format!(
            "{} {} {} {} pods={} options={}\n",
            n.pool,
            n.instance_type,
            n.zone,
            n.capacity_type.as_str(),
            n.pods.len(),
            n.instance_type_options.len()
        );
    }
    for e in &plan.existing {
        s += &format!("existing {} pods={}\n", e.node, e.pods.len());
    }
    // Pods of one class share their reasons: one line per distinct set.
    let mut groups: Vec<(&Vec<String>, usize)> = Vec::new();
    for u in &plan.unschedulable {
        match groups.iter_mut().find(|(r, _)| *r == &u.reasons) {
            Some((_, k)) => *k += 1,
            None => groups.push((&u.reasons, 1)),
        }
    }
    for (reasons, k) in groups {
        s += &format!("unschedulable {k} pod(s):\n");
        for r in reasons {
            s += &format!("  {r}\n");
        }
    }
    s += &format!("total ${:.4}/h\n", plan.total_price_per_hour);
    for n in &plan.notes {
        s += &format!("note: {n}\n");
    }
    s
}

fn placed(plan: &Plan) -> usize {
    plan.nodes.iter().map(|n| n.pods.len()).sum::<usize>()
        + plan.existing.iter().map(|e| e.pods.len()).sum::<usize>()
}

/// Pods per zone for the pods whose name starts with `prefix`.
fn per_zone(plan: &Plan, prefix: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for n in &plan.nodes {
        let k = n.pods.iter().filter(|p| p.starts_with(prefix)).count();
        if k > 0 {
            *m.entry(n.zone.clone()).or_insert(0) += k;
        }
    }
    m
}

fn assert_all_placed(plan: &Plan, want: usize) {
    assert!(
        plan.unschedulable.is_empty(),
        "unschedulable: {:#?}",
        plan.unschedulable
    );
    assert_eq!(placed(plan), want, "{}", summary(plan));
}

/// Plans one Karpenter example workload against example NodePools.
fn karpenter_case(name: &str, pools: &[&str], workload: &str, replicas: &[(&str, u32)]) -> Plan {
    let set = policy(
        &pools
            .iter()
            .map(|p| karpenter(&format!("nodepools/{p}")))
            .collect::<Vec<_>>(),
    );
    let w = load(&[karpenter(&format!("workloads/{workload}"))], replicas);
    let plan = plan(&set, &w);
    insta::assert_snapshot!(format!("karpenter-{name}"), summary(&plan));
    plan
}

#[test]
fn arm64_lands_on_arm64() {
    let plan = karpenter_case(
        "arm64",
        &["multiple-arch.yaml"],
        "arm64.yaml",
        &[("arm64", 10)],
    );
    assert_all_placed(&plan, 10);
    let ts = types();
    for n in &plan.nodes {
        assert_eq!(n.pool, "arm64");
        assert_eq!(
            ts[n.instance_type.as_str()].arch,
            "arm64",
            "{}",
            n.instance_type
        );
        for o in &n.instance_type_options {
            assert_eq!(ts[&*o.instance_type].arch, "arm64");
        }
    }
}

#[test]
fn prefer_arm_lands_on_arm64() {
    let plan = karpenter_case(
        "prefer-arm",
        &["multiple-arch.yaml"],
        "prefer-arm.yaml",
        &[("prefer-arm", 8)],
    );
    assert_all_placed(&plan, 8);
    let ts = types();
    for n in &plan.nodes {
        assert_eq!(
            ts[n.instance_type.as_str()].arch,
            "arm64",
            "{}",
            n.instance_type
        );
    }
}

/// GPU pods land on types with enough GPUs of the right maker.
fn check_gpus(plan: &Plan, resource: &str, maker: &str) {
    let ts = types();
    assert!(!plan.nodes.is_empty());
    for n in &plan.nodes {
        let t = ts[n.instance_type.as_str()];
        let have = t.capacity.extended.get(resource).copied().unwrap_or(0);
        assert!(
            have >= n.pods.len() as i64,
            "{} has {have} {resource} for {} pods",
            t.name,
            n.pods.len()
        );
        assert!(
            t.gpus
                .iter()
                .any(|g| g.manufacturer.eq_ignore_ascii_case(maker)),
            "{}: GPUs {:?}",
            t.name,
            t.gpus
        );
        assert_eq!(n.allocatable.extended.get(resource).copied(), Some(have));
    }
}

#[test]
fn nvidia_gpu_lands_on_nvidia_types() {
    let plan = karpenter_case(
        "gpu-nvidia",
        &["large-instances.yaml"],
        "gpu-nvidia.yaml",
        &[("gpu-nvidia", 3)],
    );
    assert_all_placed(&plan, 3);
    check_gpus(&plan, "nvidia.com/gpu", "nvidia");
}

#[test]
fn amd_gpu_lands_on_amd_types() {
    let plan = karpenter_case(
        "gpu-amd",
        &["large-instances.yaml"],
        "gpu-amd.yaml",
        &[("gpu-amd", 3)],
    );
    assert_all_placed(&plan, 3);
    check_gpus(&plan, "amd.com/gpu", "amd");
}

#[test]
fn neuron_lands_on_inferentia_or_trainium() {
    let plan = karpenter_case(
        "neuron",
        &["large-instances.yaml"],
        "neuron.yaml",
        &[("neuron", 2)],
    );
    assert_all_placed(&plan, 2);
    let ts = types();
    for n in &plan.nodes {
        let t = ts[n.instance_type.as_str()];
        let have = t
            .capacity
            .extended
            .get("aws.amazon.com/neuron")
            .copied()
            .unwrap_or(0);
        assert!(have >= n.pods.len() as i64, "{}: {have}", t.name);
        assert!(!t.accelerators.is_empty(), "{}", t.name);
    }
}

#[test]
fn spot_workload_takes_the_spot_pool() {
    let plan = karpenter_case("spot", &["spot.yaml"], "spot.yaml", &[("spot", 6)]);
    assert_all_placed(&plan, 6);
    for n in &plan.nodes {
        assert_eq!(n.pool, "spot");
        assert_eq!(n.capacity_type, CapacityType::Spot);
    }
    assert!(
        plan.notes.iter().any(|n| n == "spot prices are estimates"),
        "{:?}",
        plan.notes
    );
}

#[test]
fn zone_spread_covers_three_zones_or_more() {
    let plan = karpenter_case(
        "spread-zone",
        &["general-purpose.yaml"],
        "spread-zone.yaml",
        &[("zone-spread", 12)],
    );
    assert_all_placed(&plan, 12);
    let z = per_zone(&plan, "default/zone-spread");
    assert!(z.len() >= 3, "{z:?}");
    let (lo, hi) = (z.values().min().unwrap(), z.values().max().unwrap());
    assert!(hi - lo <= 1, "{z:?}");
}

#[test]
fn hostname_spread_puts_at_most_max_skew_per_node() {
    let plan = karpenter_case(
        "spread-hostname",
        &["general-purpose.yaml"],
        "spread-hostname.yaml",
        &[],
    );
    assert_all_placed(&plan, 10);
    assert!(plan.nodes.len() >= 5);
    for n in &plan.nodes {
        assert!(n.pods.len() <= 2, "{}: {}", n.name, n.pods.len());
    }
}

#[test]
fn hostname_and_zone_spread_together() {
    let plan = karpenter_case(
        "spread-hostname-zone",
        &["general-purpose.yaml"],
        "spread-hostname-zone.yaml",
        &[],
    );
    assert_all_placed(&plan, 50);
    for n in &plan.nodes {
        assert!(n.pods.len() <= 2, "{}: {}", n.name, n.pods.len());
    }
    let z = per_zone(&plan, "default/host-zone-spread");
    assert!(z.len() >= 3, "{z:?}");
    let (lo, hi) = (z.values().min().unwrap(), z.values().max().unwrap());
    assert!(hi - lo <= 5, "{z:?}");
}

#[test]
fn inflate_and_pdb_on_general_purpose() {
    let ts = types();
    for (name, file, deploy, n) in [
        ("inflate", "inflate.yaml", "inflate", 20),
        ("disruption-budget", "disruption-budget.yaml", "pdb", 10),
    ] {
        let plan = karpenter_case(name, &["general-purpose.yaml"], file, &[(deploy, n)]);
        assert_all_placed(&plan, n as usize);
        for node in &plan.nodes {
            let t = ts[node.instance_type.as_str()];
            assert_eq!(t.arch, "amd64");
            assert_eq!(node.capacity_type, CapacityType::OnDemand);
            let cat = t.label("karpenter.k8s.aws/instance-category").unwrap_or("");
            assert!(["c", "m", "r"].contains(&cat), "{}", t.name);
        }
        // 1 vCPU per pod: the plan is not wildly oversized.
        let vcpus: u32 = plan
            .nodes
            .iter()
            .map(|x| ts[x.instance_type.as_str()].vcpus)
            .sum();
        assert!(
            vcpus as usize <= 2 * n as usize,
            "{vcpus} vCPUs for {n} pods"
        );
    }
}

#[test]
fn cpu_limit_caps_the_pool() {
    // 150 one-CPU pods against a pool limited to 100 CPUs: the limit holds and
    // only what cannot fit under it is unschedulable.
    let plan = karpenter_case(
        "100-cpu-limit",
        &["100-cpu-limit.yaml"],
        "inflate.yaml",
        &[("inflate", 150)],
    );
    let ts = types();
    let vcpus: u32 = plan
        .nodes
        .iter()
        .map(|x| ts[x.instance_type.as_str()].vcpus)
        .sum();
    assert!(vcpus <= 100, "{vcpus}");
    let n = placed(&plan);
    assert!(n >= 80, "only {n} placed under a 100-CPU limit");
    assert_eq!(n + plan.unschedulable.len(), 150);
    let first = &plan.unschedulable[0].reasons[0];
    assert!(
        first.starts_with("pool limitcpu100: limit reached: cpu ")
            && first.ends_with(
                "of 100 already planned; no type that fits the pod fits in what is left"
            ),
        "{first}"
    );
}

#[test]
fn min_values_keep_five_families_per_node() {
    let plan = karpenter_case(
        "min-values-family",
        &["min-values-family.yaml"],
        "inflate.yaml",
        &[("inflate", 10)],
    );
    assert_all_placed(&plan, 10);
    let ts = types();
    for n in &plan.nodes {
        let fams: BTreeSet<&str> = n
            .instance_type_options
            .iter()
            .filter_map(|o| ts[&*o.instance_type].label("karpenter.k8s.aws/instance-family"))
            .collect();
        assert!(fams.len() >= 5, "{}: {fams:?}", n.name);
    }
}

/// Plans one of our examples against all of policies/.
fn example(workload: &str, nodes: &[&str]) -> Plan {
    let set = policy(&[ours("policies")]);
    let mut files = vec![ours(&format!("examples/{workload}"))];
    files.extend(nodes.iter().map(|n| ours(&format!("examples/{n}"))));
    plan(&set, &load(&files, &[]))
}

#[test]
fn examples_against_all_policies() {
    let ts = types();
    for (wl, nodes) in [
        ("web-and-batch.yaml", vec![]),
        ("web-and-batch.yaml", vec!["cluster-nodes.yaml"]),
        ("arm64-services.yaml", vec![]),
        ("gpu-inference.yaml", vec![]),
    ] {
        let plan = example(wl, &nodes);
        assert!(
            plan.unschedulable.is_empty(),
            "{wl}: {:#?}",
            plan.unschedulable
        );
        let name = format!(
            "example-{}{}",
            wl.trim_end_matches(".yaml"),
            if nodes.is_empty() { "" } else { "-with-nodes" }
        );
        insta::assert_snapshot!(name, summary(&plan));
        if !nodes.is_empty() {
            assert!(!plan.existing.is_empty(), "{wl}: existing nodes unused");
        }
        for n in &plan.nodes {
            let t = ts[n.instance_type.as_str()];
            if n.pods.iter().any(|p| p.starts_with("ml/llm-server")) {
                assert!(
                    t.gpus
                        .iter()
                        .any(|g| g.manufacturer.eq_ignore_ascii_case("nvidia")),
                    "{}",
                    t.name
                );
            }
        }
    }
}

#[test]
fn web_and_batch_default_policy_json() {
    let set = policy(&[ours("policies/default.policy")]);
    let w = load(&[ours("examples/web-and-batch.yaml")], &[]);
    let plan = plan(&set, &w);
    assert!(plan.unschedulable.is_empty(), "{:#?}", plan.unschedulable);
    let z = per_zone(&plan, "shop/web-");
    assert!(z.len() >= 3, "{z:?}");
    insta::assert_snapshot!("web-and-batch-default-json", render::json(&plan));
}
