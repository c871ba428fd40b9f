//! Kubernetes YAML → workload IR: fixtures under tests/workload/, the
//! Karpenter example workloads, and error cases, all as insta snapshots.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nodewright::workload::{self, LoadOptions, WorkloadError};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/workload");
const KARPENTER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/karpenter/examples/workloads"
);

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

fn rel(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn load_rel(p: &Path, opts: &LoadOptions) -> Result<workload::Loaded, WorkloadError> {
    let text = std::fs::read_to_string(p).unwrap();
    workload::load_text(&rel(p), &text, opts)
}

#[test]
fn fixtures_load_into_classes() {
    for p in yaml_files(&format!("{DIR}/ok")) {
        let loaded = load_rel(&p, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let notes: Vec<String> = loaded.notes.iter().map(|n| n.to_string()).collect();
        insta::assert_yaml_snapshot!(format!("ok-{}", rel(&p)), (&loaded.workload, notes));
    }
}

#[test]
fn errors_name_file_line_and_column() {
    for p in yaml_files(&format!("{DIR}/err")) {
        let err = match load_rel(&p, &LoadOptions::default()) {
            Ok(_) => panic!("{} loaded but should fail", p.display()),
            Err(e) => e,
        };
        let input = err.input().expect("an input error with a location");
        assert_eq!(input.file, rel(&p));
        // The rendered report (source line and label) must build for every error.
        let mut rendered = String::new();
        miette::GraphicalReportHandler::new()
            .render_report(&mut rendered, &err)
            .unwrap();
        assert!(rendered.contains(&input.file), "{rendered}");
        let text = format!("{err}\nhelp: {}", input.help.clone().unwrap_or_default());
        insta::assert_snapshot!(format!("err-{}", rel(&p)), text);
    }
}

#[test]
fn names_are_deterministic_and_kubernetes_shaped() {
    let p = PathBuf::from(format!("{DIR}/ok/all-kinds.yaml"));
    let a = load_rel(&p, &LoadOptions::default()).unwrap().workload;
    let b = load_rel(&p, &LoadOptions::default()).unwrap().workload;
    assert_eq!(a, b);
    let names = |id: &str| {
        a.classes
            .iter()
            .filter(|c| c.id.starts_with(id))
            .flat_map(|c| c.pod_names.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names("default/statefulset/db"), ["db-0", "db-1", "db-2"]);
    for n in names("shop/deployment/web") {
        let parts: Vec<&str> = n.split('-').collect();
        assert_eq!(
            (parts.len(), parts[1].len(), parts[2].len()),
            (3, 10, 5),
            "{n}"
        );
        assert!(
            n[4..]
                .bytes()
                .all(|c| c == b'-' || workload::NAME_ALPHABET.contains(&c))
        );
    }
}

#[test]
fn replicas_override_and_unknown_name() {
    let p = PathBuf::from(format!("{DIR}/ok/all-kinds.yaml"));
    let mut opts = LoadOptions::default();
    opts.replicas.insert("shop/web".into(), 500);
    opts.replicas.insert("report".into(), 7);
    let w = load_rel(&p, &opts).unwrap().workload;
    let web: Vec<_> = w
        .classes
        .iter()
        .filter(|c| c.id == "shop/deployment/web")
        .collect();
    assert_eq!(web.len(), 1, "500 identical replicas are one class");
    assert_eq!(web[0].count(), 500);
    let report: usize = w
        .classes
        .iter()
        .filter(|c| c.owner.as_ref().is_some_and(|o| o.name == "report"))
        .map(|c| c.count())
        .sum();
    assert_eq!(report, 7);
    opts.replicas.insert("nope".into(), 1);
    let err = load_rel(&p, &opts).unwrap_err();
    assert!(matches!(err, WorkloadError::UnknownReplicas { ref name } if name == "nope"));
    assert_eq!(LoadOptions::parse_replicas("web=3"), Ok(("web".into(), 3)));
    assert!(LoadOptions::parse_replicas("web").is_err());
    assert!(LoadOptions::parse_replicas("web=x").is_err());
}

#[test]
fn karpenter_example_workloads_load() {
    let mut summary = BTreeMap::new();
    for p in yaml_files(KARPENTER) {
        let text = std::fs::read_to_string(&p).unwrap();
        // Every Deployment there has replicas: 0; plan 3 of each, as `--replicas NAME=3` would.
        let mut opts = LoadOptions::default();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v: serde_yaml_ng::Value = serde::Deserialize::deserialize(doc).unwrap();
            if v["kind"].as_str() == Some("Deployment") {
                opts.replicas
                    .insert(v["metadata"]["name"].as_str().unwrap().to_string(), 3);
            }
        }
        let loaded = load_rel(&p, &opts).unwrap_or_else(|e| panic!("{}: {e:?}", p.display()));
        let w = &loaded.workload;
        assert!(!w.classes.is_empty(), "{}", p.display());
        let lines: Vec<String> = w
            .classes
            .iter()
            .map(|c| {
                format!(
                    "{} x{}: {}; selector {:?}; required {:?}; spread {:?}; affinity {}",
                    c.id,
                    c.count(),
                    c.requests,
                    c.node_selector.keys.keys().collect::<Vec<_>>(),
                    c.required_affinity
                        .iter()
                        .map(|r| r
                            .keys
                            .iter()
                            .map(|(k, v)| format!("{k} {v}"))
                            .collect::<Vec<_>>())
                        .collect::<Vec<_>>(),
                    c.topology_spread
                        .iter()
                        .map(|s| &s.topology_key)
                        .collect::<Vec<_>>(),
                    c.pod_affinity.len()
                )
            })
            .chain(loaded.notes.iter().map(|n| format!("note: {n}")))
            .collect();
        summary.insert(rel(&p), lines);
    }
    insta::assert_yaml_snapshot!("karpenter-examples", summary);
}

#[test]
fn volumes_restrict_zones() {
    let p = PathBuf::from(format!("{DIR}/ok/all-kinds.yaml"));
    let w = load_rel(&p, &LoadOptions::default()).unwrap().workload;
    let db: Vec<_> = w
        .classes
        .iter()
        .filter(|c| c.id.starts_with("default/statefulset/db"))
        .collect();
    // db-0's claim is pre-bound to a PV in us-east-1a; the others get the default class's zones.
    let zones: Vec<_> = db
        .iter()
        .map(|c| (c.pod_names.clone(), c.volume_zones.clone()))
        .collect();
    assert_eq!(
        zones,
        vec![
            (
                vec!["db-0".to_string()],
                Some(vec!["us-east-1a".to_string()])
            ),
            (
                vec!["db-1".to_string(), "db-2".to_string()],
                Some(vec!["us-east-1a".to_string(), "us-east-1b".to_string()])
            ),
        ]
    );
    assert!(
        db[0]
            .volume_reason
            .as_deref()
            .unwrap()
            .contains("PVC data-db-0 bound to PV pv-db-0 in us-east-1a")
    );
}

#[test]
fn examples_load() {
    let ex = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut summary = BTreeMap::new();
    for p in yaml_files(ex) {
        let loaded = load_rel(&p, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e:?}", p.display()));
        let w = &loaded.workload;
        let lines: Vec<String> = w
            .classes
            .iter()
            .map(|c| {
                format!(
                    "{} x{} {:?}: {}; zones {:?}",
                    c.id,
                    c.count(),
                    c.pod_names.first().unwrap(),
                    c.requests,
                    c.volume_zones
                )
            })
            .chain(
                w.daemonsets
                    .iter()
                    .map(|d| format!("daemonset {}/{}: {}", d.namespace, d.name, d.requests)),
            )
            .chain(w.nodes.iter().map(|n| {
                format!(
                    "node {}: {} pods, used {} of {}",
                    n.name,
                    n.pods.len(),
                    n.used,
                    n.allocatable
                )
            }))
            .chain(loaded.notes.iter().map(|n| format!("note: {n}")))
            .collect();
        summary.insert(rel(&p), lines);
    }
    insta::assert_yaml_snapshot!("examples", summary);
    // The workload and the cluster together: pods bound to existing nodes are counted there.
    let both = workload::load_files(
        &[
            PathBuf::from(format!("{ex}/web-and-batch.yaml")),
            PathBuf::from(format!("{ex}/cluster-nodes.yaml")),
        ],
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(both.nodes.len(), 2);
    assert_eq!(both.nodes[0].used.cpu_milli, 600);
    let nodes = workload::load_nodes(&[PathBuf::from(format!("{ex}/cluster-nodes.yaml"))]).unwrap();
    assert_eq!(nodes, both.nodes);
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(24))]
    /// Expansion and grouping keep every pod: class counts add up to the
    /// replicas asked for, names are unique, and each Deployment is one class.
    #[test]
    fn grouping_keeps_every_pod(deps in proptest::collection::vec((0u32..40, 1u32..4000), 1..5)) {
        let mut text = String::new();
        for (i, (replicas, cpu)) in deps.iter().enumerate() {
            text.push_str(&format!(
                "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d{i}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: d{i}}}\n  template:\n    metadata:\n      labels: {{app: d{i}}}\n    spec:\n      containers:\n      - name: c\n        image: x\n        resources:\n          requests: {{cpu: {cpu}m}}\n"
            ));
        }
        let w = workload::load_text("gen.yaml", &text, &LoadOptions::default()).unwrap().workload;
        let total: usize = w.classes.iter().map(|c| c.count()).sum();
        proptest::prop_assert_eq!(total, deps.iter().map(|(r, _)| *r as usize).sum::<usize>());
        proptest::prop_assert_eq!(w.classes.len(), deps.iter().filter(|(r, _)| *r > 0).count());
        let names: std::collections::HashSet<String> =
            w.classes.iter().flat_map(|c| (0..c.count()).map(|i| c.pod_key(i))).collect();
        proptest::prop_assert_eq!(names.len(), total);
        for c in &w.classes {
            let i: usize = c.id.trim_start_matches("default/deployment/d").parse().unwrap();
            proptest::prop_assert_eq!(c.requests.cpu_milli, deps[i].1 as i64);
        }
    }
}

/// The loader's output is what the solver plans: zonal volumes pin a
/// StatefulSet replica, anti-affinity spreads a Deployment over nodes, and a
/// bound pod's node is reused before anything is launched.
#[test]
fn loaded_workload_plans_end_to_end() {
    use nodewright::ir::PolicySet;
    use nodewright::solver::{self, SolveInput};
    use nodewright::synth;
    let yaml = r#"
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-0}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  claimRef: {namespace: default, name: data-db-0}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: topology.kubernetes.io/zone, operator: In, values: [test-zone-2]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - {name: db, image: x, resources: {requests: {cpu: "2", memory: 2Gi}}}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: x, resources: {requests: {cpu: 500m, memory: 512Mi}}}
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - topologyKey: kubernetes.io/hostname
            labelSelector: {matchLabels: {app: web}}
---
apiVersion: v1
kind: Node
metadata:
  name: n1
  labels: {topology.kubernetes.io/zone: test-zone-1, kubernetes.io/arch: amd64, kubernetes.io/os: linux}
status:
  allocatable: {cpu: "4", memory: 8Gi, pods: "40"}
"#;
    let w = workload::load_text("e2e.yaml", yaml, &LoadOptions::default())
        .unwrap()
        .workload;
    let catalog = synth::karpenter_catalog(40);
    let policy = PolicySet {
        pools: vec![synth::default_pool("default")],
        ..Default::default()
    };
    let plan = solver::solve(&SolveInput {
        policy: &policy,
        catalog: &catalog,
        workload: &w,
        scorer: None,
        unavailable: None,
    });
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    let db = plan
        .nodes
        .iter()
        .find(|n| n.pods.iter().any(|p| p == "default/db-0"))
        .expect("db-0 launched on a new node (the existing one is in zone 1)");
    assert_eq!(db.zone, "test-zone-2");
    // Three web pods, each on a different node (one may use the existing node).
    let mut hosts: Vec<String> = plan
        .nodes
        .iter()
        .filter(|n| n.pods.iter().any(|p| p.starts_with("default/web-")))
        .map(|n| n.name.clone())
        .collect();
    let on_existing: usize = plan
        .existing
        .iter()
        .map(|e| {
            e.pods
                .iter()
                .filter(|p| p.starts_with("default/web-"))
                .count()
        })
        .sum();
    assert!(on_existing <= 1);
    for n in &plan.nodes {
        assert!(
            n.pods
                .iter()
                .filter(|p| p.starts_with("default/web-"))
                .count()
                <= 1
        );
    }
    hosts.dedup();
    assert_eq!(hosts.len() + on_existing, 3);
}
