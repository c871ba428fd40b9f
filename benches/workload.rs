//! Loading Kubernetes YAML into pod classes: how fast a large workload reads.
//!
//! `cargo bench --bench workload`. Inputs: the web-and-batch example with the
//! web Deployment scaled to 20,000 replicas (one template, many names),
//! 1,000 distinct bare Pods in one `kind: List` (one document parse each),
//! and the controller's snapshot of a cluster as the API returns it (pods
//! with owners, uids and status; 100 nodes with 20 bound pods each), read
//! by `workload::load_api`.
//!
//! Hostile and huge input (the time to read and reject must grow
//! linearly): `kubectl get all -o yaml`-style Lists of 50,000 and 100,000
//! ConfigMaps (skipped, each with a note), the same 100,000 items whose last
//! one is invalid (read everything, then reject with a located error), and
//! 50 MB of ConfigMaps as separate documents.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "benchmark harness: a failed set-up aborts the run"
)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::{Node, Pod};
use nodewright::controller::snapshot::ClusterObjects;
use nodewright::workload::{LoadOptions, load_text};

/// The product binary's allocator (see `src/main.rs`), so benchmarks time
/// what users run.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bare_pods(n: usize) -> String {
    let mut s = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for i in 0..n {
        s.push_str(&format!(
            "- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: p{i}\n    labels: {{app: a{}}}\n  spec:\n    containers:\n    - name: c\n      image: x\n      resources:\n        requests: {{cpu: {}m, memory: {}Mi}}\n",
            i % 50,
            100 + i % 1400,
            128 + i % 4000
        ));
    }
    s
}

/// `kubectl get all -o yaml`: a List of `n` ConfigMaps (skipped with a note
/// each), and, when `bad_last`, a last item with a label key Kubernetes rejects.
fn configmap_list(n: usize, bad_last: bool) -> String {
    let mut s = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for i in 0..n {
        s.push_str(&format!(
            "- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: cm-{i}\n    namespace: shop\n  data:\n    key: value-{i}\n"
        ));
    }
    if bad_last {
        s.push_str("- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: bad\n    labels: {\"bad key!\": x}\n  spec:\n    containers: [{name: c, image: x}]\n");
    }
    s
}

/// About `mb` megabytes of ConfigMaps, one document each, 2 KB of data apiece.
fn configmap_docs(mb: usize) -> String {
    let data = "x".repeat(2000);
    let mut s = String::with_capacity(mb << 20);
    let mut i = 0;
    while s.len() < mb << 20 {
        s.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n  blob: {data}\n"
        ));
        i += 1;
    }
    s
}

/// A cluster as the API server lists it: `pending` unschedulable pods of 20
/// ReplicaSets, and `nodes` nodes with `per_node` bound pods each.
fn cluster(pending: usize, nodes: usize, per_node: usize) -> ClusterObjects {
    let pod = |i: usize, node: Option<String>| -> Pod {
        let rs = format!("web{}-5d8f7c9b4", i % 20);
        let mut v = serde_json::json!({
            "metadata": {
                "name": format!("{rs}-{i:05}"), "namespace": "shop",
                "uid": format!("00000000-0000-0000-0000-{i:012}"),
                "resourceVersion": format!("{}", 1000 + i),
                "creationTimestamp": "2026-11-29T07:00:00Z",
                "labels": {"app": format!("web{}", i % 20), "pod-template-hash": "5d8f7c9b4"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                    "uid": "11111111-0000-0000-0000-000000000000", "controller": true}]
            },
            "spec": {"containers": [{"name": "app", "image": "registry.example/web:1.2.3",
                "resources": {"requests": {"cpu": format!("{}m", 250 + (i % 20) * 50), "memory": "512Mi"}}}],
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                    "effect": "NoExecute", "tolerationSeconds": 300}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": "0/100 nodes are available"}]}
        });
        if let Some(n) = node {
            v["spec"]["nodeName"] = serde_json::json!(n);
            v["status"] = serde_json::json!({"phase": "Running"});
        }
        serde_json::from_value(v).expect("pod")
    };
    let mut objs = ClusterObjects::default();
    for i in 0..pending {
        objs.pods.push(pod(i, None));
    }
    for n in 0..nodes {
        let name = format!("ip-10-0-{}-{}.ec2.internal", n / 250, n % 250);
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": "us-east-1a",
                "node.kubernetes.io/instance-type": "m5.2xlarge", "karpenter.sh/nodepool": "general"}},
            "spec": {"providerID": format!("aws:///us-east-1a/i-{n:017}")},
            "status": {"allocatable": {"cpu": "7910m", "memory": "29Gi", "pods": "58"}}
        }))
        .expect("node");
        objs.nodes.push(node);
        for k in 0..per_node {
            objs.pods
                .push(pod(pending + n * per_node + k, Some(name.clone())));
        }
    }
    objs
}

fn bench(c: &mut Criterion) {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/web-and-batch.yaml"
    ))
    .expect("examples/web-and-batch.yaml");
    let mut opts = LoadOptions::default();
    opts.replicas.insert("web".into(), 20_000);
    let mut g = c.benchmark_group("workload_load");
    g.sample_size(10);
    g.throughput(Throughput::Elements(20_000));
    g.bench_function("deployment_20k_replicas", |b| {
        b.iter(|| black_box(load_text("web-and-batch.yaml", &example, &opts).expect("loads")))
    });
    let pods = bare_pods(1000);
    g.throughput(Throughput::Elements(1000));
    g.bench_function("list_of_1000_pods", |b| {
        b.iter(|| black_box(load_text("pods.yaml", &pods, &LoadOptions::default()).expect("loads")))
    });
    let objs = cluster(5000, 100, 20);
    g.throughput(Throughput::Elements(7000));
    g.bench_function("controller_snapshot_5k_pending_2k_bound", |b| {
        b.iter(|| {
            black_box(nodewright::controller::snapshot::load(black_box(&objs)).expect("loads"))
        })
    });
    for n in [50_000, 100_000] {
        let list = configmap_list(n, false);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("skipped_configmaps_list_{}k", n / 1000), |b| {
            b.iter(|| {
                let loaded = load_text("all.yaml", &list, &LoadOptions::default()).expect("loads");
                black_box(loaded.notes.len())
            })
        });
    }
    let bad = configmap_list(100_000, true);
    g.throughput(Throughput::Elements(100_001));
    g.bench_function("rejected_list_100k", |b| {
        b.iter(|| black_box(load_text("all.yaml", &bad, &LoadOptions::default()).is_err()))
    });
    let big = configmap_docs(50);
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("configmaps_50mb", |b| {
        b.iter(|| {
            let loaded = load_text("big.yaml", &big, &LoadOptions::default()).expect("loads");
            black_box(loaded.notes.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
