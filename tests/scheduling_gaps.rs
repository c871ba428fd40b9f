//! Scheduling gaps the kube-scheduler oracle finds, each planned from its
//! oracle regression case (tests/oracle/cases/<name>.yaml with its .policy)
//! on the embedded catalog and checked for the property kube-scheduler
//! enforces: host ports, NodeOverlay capacity, ephemeral storage from the
//! node class's root volume and from RAID0 instance store. Every plan must
//! also pass the independent validator.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::PathBuf;

use nodewright::catalog::Catalog;
use nodewright::ir::PolicySet;
use nodewright::solver::validate::validate;
use nodewright::solver::{Plan, SolveInput, render, solve};
use nodewright::workload::{self, LoadOptions, Workload};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const GI: i64 = 1 << 30;

fn catalog() -> &'static Catalog {
    nodewright::catalog::embedded::embedded_static().expect("the embedded catalog decodes")
}

fn policy_of(case: &str) -> PolicySet {
    let own = PathBuf::from(format!("{ROOT}/tests/oracle/cases/{case}.policy"));
    let path = if own.exists() {
        own
    } else {
        PathBuf::from(format!("{ROOT}/policies/default.policy"))
    };
    let (mut set, _warnings) = nodewright::import::load_policy_set(std::slice::from_ref(&path))
        .unwrap_or_else(|e| panic!("{path:?}: {e:?}"));
    set.sort_pools();
    set
}

fn workload_of(case: &str) -> Workload {
    let path = PathBuf::from(format!("{ROOT}/tests/oracle/cases/{case}.yaml"));
    workload::load(&[path], &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{case}: {e}"))
        .workload
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

fn case(name: &str) -> (PolicySet, Workload, Plan) {
    let p = policy_of(name);
    let w = workload_of(name);
    let plan = plan(&p, &w);
    (p, w, plan)
}

/// Pods of the plan's node `n` whose name starts with `prefix` ("web/edge-").
fn count(n: &nodewright::solver::PlannedNode, prefix: &str) -> usize {
    n.pods.iter().filter(|p| p.starts_with(prefix)).count()
}

#[test]
fn host_ports_keep_conflicting_pods_on_separate_nodes() {
    let (_, w, plan) = case("host-ports");
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    let table = render::table(&plan);
    for n in &plan.nodes {
        assert!(
            count(n, "web/edge-") <= 1,
            "TCP 80 twice on a node:\n{table}"
        );
        // The sidecar's port counts as the pod's (NodePorts reads sidecars).
        assert!(
            count(n, "web/metrics-") <= 1,
            "10.0.0.1:9100 twice:\n{table}"
        );
        assert!(count(n, "web/dns-") <= 1, "UDP 80 twice:\n{table}");
    }
    // Three edge replicas need three nodes; UDP 80 is another port, so the
    // dns replicas share them rather than adding nodes.
    assert_eq!(plan.nodes.len(), 3, "{table}");
    let edge = w
        .classes
        .iter()
        .find(|c| c.id.contains("edge"))
        .expect("edge class");
    assert_eq!(edge.host_ports.len(), 1);
    assert_eq!(edge.host_ports[0].to_string(), "host port 80/TCP");
}

#[test]
fn the_validator_refuses_two_pods_on_one_host_port() {
    let (p, w, mut plan) = case("host-ports");
    let edge: Vec<(usize, String)> = plan
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| {
            n.pods
                .iter()
                .filter(|x| x.starts_with("web/edge-"))
                .map(move |x| (i, x.clone()))
        })
        .collect();
    let (from, pod) = edge[1].clone();
    let to = edge[0].0;
    plan.nodes[from].pods.retain(|x| *x != pod);
    plan.nodes[to].pods.push(pod.clone());
    let input = SolveInput {
        policy: &p,
        catalog: catalog(),
        workload: &w,
        scorer: None,
        unavailable: None,
    };
    let errs = validate(&plan, &input);
    assert!(
        errs.iter()
            .any(|e| e.contains(&pod) && e.contains("host port 80/TCP already held by")),
        "{errs:#?}"
    );
}

/// A DaemonSet holding a port on every node, a pod asking for it on one
/// address, and an existing node where bound pods hold TCP 80 and the
/// DaemonSet's port.
const PORTS_ELSEWHERE: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: kube-system}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers:
        - name: agent
          image: agent
          ports: [{containerPort: 9200, hostPort: 9200}]
          resources: {requests: {cpu: 50m, memory: 64Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: scraper, namespace: web}
spec:
  containers:
    - name: scraper
      image: scraper
      ports: [{containerPort: 9200, hostPort: 9200, hostIP: 10.0.0.7}]
      resources: {requests: {cpu: 100m, memory: 64Mi}}
---
apiVersion: v1
kind: Node
metadata:
  name: old-1
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    kubernetes.io/hostname: old-1
    node.kubernetes.io/instance-type: m6i.xlarge
    topology.kubernetes.io/zone: us-east-1a
    karpenter.sh/capacity-type: on-demand
status:
  allocatable: {cpu: 3920m, memory: 15Gi, pods: "58"}
---
apiVersion: v1
kind: Pod
metadata: {name: ingress-old, namespace: web}
spec:
  nodeName: old-1
  containers:
    - name: proxy
      image: nginx
      ports: [{containerPort: 8080, hostPort: 80}]
      resources: {requests: {cpu: 100m, memory: 64Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: agent-old, namespace: kube-system}
spec:
  nodeName: old-1
  containers:
    - name: agent
      image: agent
      ports: [{containerPort: 9200, hostPort: 9200}]
      resources: {requests: {cpu: 50m, memory: 64Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: ingress-new, namespace: web}
spec:
  containers:
    - name: proxy
      image: nginx
      ports: [{containerPort: 8080, hostPort: 80}]
      resources: {requests: {cpu: 100m, memory: 64Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: web}
spec:
  containers:
    - name: app
      image: app
      resources: {requests: {cpu: 100m, memory: 64Mi}}
"#;

#[test]
fn ports_held_by_daemonsets_and_bound_pods_are_taken() {
    let p = policy_of("host-ports");
    let w = workload::load_str("ports.yaml", PORTS_ELSEWHERE, &LoadOptions::default()).unwrap();
    let plan = plan(&p, &w);
    // The DaemonSet holds 9200 on every address of every node it runs on.
    let scraper = plan
        .unschedulable
        .iter()
        .find(|u| u.pod == "web/scraper")
        .unwrap_or_else(|| panic!("scraper placed:\n{}", render::table(&plan)));
    assert!(
        scraper
            .reasons
            .iter()
            .any(|r| r
                .contains("host port 10.0.0.7:9200/TCP is held by DaemonSet kube-system/agent")),
        "{:?}",
        scraper.reasons
    );
    // The existing node has room, but its bound pod holds TCP 80.
    let on_old: Vec<&String> = plan.existing.iter().flat_map(|e| &e.pods).collect();
    assert!(on_old.contains(&&"web/other".to_string()), "{on_old:?}");
    assert!(
        !on_old.contains(&&"web/ingress-new".to_string()),
        "{on_old:?}"
    );
    assert!(
        plan.nodes
            .iter()
            .any(|n| n.pods.contains(&"web/ingress-new".to_string())),
        "{}",
        render::table(&plan)
    );
}

#[test]
fn the_reference_solver_keeps_host_ports_apart() {
    let file = nodewright::policy::parse(
        "ref.policy",
        "pool general {\n  require karpenter.sh/capacity-type in [on-demand]\n}\n",
    )
    .unwrap();
    let (p, _) = nodewright::policy::compile(&[file]).unwrap();
    let text = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: edge, namespace: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: edge}}
  template:
    metadata: {labels: {app: edge}}
    spec:
      containers:
        - name: proxy
          image: nginx
          ports: [{containerPort: 8080, hostPort: 80}]
          resources: {requests: {cpu: 100m, memory: 64Mi}}
"#;
    let w = workload::load_str("edge.yaml", text, &LoadOptions::default()).unwrap();
    // A small catalog keeps the exhaustive search quick.
    let mut cat = catalog().clone();
    let keep: Vec<u32> = cat
        .types
        .iter()
        .enumerate()
        .filter(|(_, t)| ["m5.large", "m5.xlarge"].contains(&t.name.as_str()))
        .map(|(i, _)| i as u32)
        .collect();
    cat.offerings
        .retain(|o| keep.contains(&o.type_index) && o.zone_index == 0);
    let input = SolveInput {
        policy: &p,
        catalog: &cat,
        workload: &w,
        scorer: None,
        unavailable: None,
    };
    let plan = nodewright::solver::reference::solve_reference(&input, 4).expect("small input");
    assert!(plan.unschedulable.is_empty());
    assert_eq!(plan.nodes.len(), 2, "{}", render::table(&plan));
}

#[test]
fn overlay_capacity_makes_extended_resources_schedulable() {
    let (_, _, plan) = case("overlay-capacity");
    let table = render::table(&plan);
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    let mut placed = 0;
    for n in &plan.nodes {
        let k = count(n, "build/fuse-users-");
        if k == 0 {
            continue;
        }
        placed += k;
        assert!(n.instance_type.starts_with("m5."), "{table}");
        assert!(k <= 10, "{table}");
        assert_eq!(n.allocatable.extended.get("example.com/fuse"), Some(&10));
        assert_eq!(
            n.requested.extended.get("example.com/fuse"),
            Some(&(k as i64))
        );
    }
    assert_eq!(placed, 12, "{table}");
}

#[test]
fn the_root_volume_sets_ephemeral_storage() {
    let (_, _, plan) = case("root-volume-ephemeral");
    let table = render::table(&plan);
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    assert_eq!(
        plan.nodes.len(),
        3,
        "one 100Gi pod per 179Gi node:\n{table}"
    );
    for n in &plan.nodes {
        // 200Gi − 1Gi kube-reserved − ⌈10% of 200Gi⌉ eviction.
        assert_eq!(n.allocatable.ephemeral_storage, 200 * GI - GI - 20 * GI);
    }
}

#[test]
fn raid0_puts_ephemeral_storage_on_local_nvme() {
    let (_, _, plan) = case("raid0-ephemeral");
    let table = render::table(&plan);
    assert!(plan.unschedulable.is_empty(), "{:?}", plan.unschedulable);
    for n in &plan.nodes {
        let t = catalog().instance_type(&n.instance_type).unwrap();
        assert!(t.local_nvme_gib > 0, "{table}");
        let disk = t.local_nvme_gib as i64 * 1_000_000_000;
        let evict = (disk as f64 * 0.1).ceil() as i64;
        assert_eq!(
            n.allocatable.ephemeral_storage,
            disk - GI - evict,
            "{table}"
        );
        assert!(n.requested.ephemeral_storage <= n.allocatable.ephemeral_storage);
        for o in &n.instance_type_options {
            let ot = catalog().instance_type(&o.instance_type).unwrap();
            assert!(ot.local_nvme_gib >= 300, "{} lacks the NVMe", ot.name);
        }
    }
}

#[test]
fn host_ports_are_read_as_node_ports_reads_them() {
    let text = r#"
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: web}
spec:
  initContainers:
    - name: setup
      image: x
      ports: [{containerPort: 1, hostPort: 1111}]
    - name: sidecar
      image: x
      restartPolicy: Always
      ports: [{containerPort: 2, hostPort: 2222, protocol: UDP}]
  containers:
    - name: app
      image: x
      ports:
        - {containerPort: 3}
        - {containerPort: 4, hostPort: 0}
        - {containerPort: 5, hostPort: 80, hostIP: 10.0.0.1}
        - {containerPort: 6, hostPort: 80, hostIP: ""}
"#;
    let w = workload::load_str("p.yaml", text, &LoadOptions::default()).unwrap();
    let ports: Vec<String> = w.classes[0]
        .host_ports
        .iter()
        .map(|p| p.to_string())
        .collect();
    // The plain init container's port is gone when the pod runs; the
    // sidecar's stays. No hostPort (or 0) binds nothing on the node.
    assert_eq!(
        ports,
        [
            "host port 80/TCP",
            "host port 10.0.0.1:80/TCP",
            "host port 2222/UDP"
        ]
    );
}
