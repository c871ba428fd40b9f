//! The controller against a real kube-apiserver + etcd and moto's EC2:
//! 5,000 unschedulable pods and 500 existing nodes appear in one burst.
//! Measured by the controller itself (its `/metrics`): from the batch
//! closing to the pass's last launch (the last CreateFleet answered), and
//! the pass's wall and process CPU time, with where the time went by part.
//! Each run starts a fresh controller on an emptied cluster; p50 and max
//! over the runs. Figures in BENCHMARKS.md.
//!
//! `bash scripts/test.sh --release --bench controller` (it sets
//! NODEWRIGHT_KUBE_BIN and NODEWRIGHT_PYTHON as for the tests).
//! NODEWRIGHT_BENCH_RUNS (default 5), NODEWRIGHT_BENCH_PODS (5000) and
//! NODEWRIGHT_BENCH_NODES (500) change the size; NODEWRIGHT_LOG=debug shows
//! the controller's per-pass timing lines.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "benchmark harness: a failed set-up aborts the run"
)]

#[path = "../tests/support/kube.rs"]
mod kube_support;
#[path = "../tests/support/moto.rs"]
mod support;
#[path = "../tests/support/ec2_world.rs"]
mod world;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use nodewright::controller::nodeclaim::NodeClaim;
use nodewright::controller::run::{Controller, Options};

/// The product binary's allocator (see `src/main.rs`), so benchmarks time
/// what users run.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLUSTER: &str = "bench";
const NS: &str = "burst";

const POLICY: &str = r#"pool general {
  require karpenter.sh/capacity-type in [on-demand]
  require karpenter.k8s.aws/instance-family in [m5, c5, r5]
  node-class default
}

node-class default {
  ami where tag karpenter.sh/discovery = "demo"
  subnets where tag karpenter.sh/discovery = "demo"
  security-groups where tag karpenter.sh/discovery = "demo"
  role "KarpenterNodeRole-demo"
}
"#;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The value of `key` (a name with its labels, as served) in OpenMetrics text; 0 if absent.
fn value(text: &str, key: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// `phase` → sum of `metric` (`pass_phase_seconds` or `pass_phase_cpu_seconds`) for it.
fn phases(text: &str, metric: &str) -> BTreeMap<String, f64> {
    let prefix = format!("nodewright_controller_{metric}_sum{{phase=\"");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(prefix.as_str())?;
            let (phase, v) = rest.split_once("\"} ")?;
            Some((phase.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn metrics(addr: std::net::SocketAddr) -> String {
    let (status, body) = support::http(addr.port(), "GET", "/metrics", "").expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    body
}

fn node(i: usize) -> (Node, serde_json::Value) {
    let zone = ["us-east-1a", "us-east-1b"][i % 2];
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("existing-{i:04}"),
            "labels": {"topology.kubernetes.io/zone": zone,
                "node.kubernetes.io/instance-type": "m5.xlarge",
                "kubernetes.io/arch": "amd64"}},
        "spec": {"providerID": format!("aws:///{zone}/i-existing{i:08}")}
    }))
    .expect("node");
    let status = serde_json::json!({"status": {
        "allocatable": {"cpu": "4", "memory": "15Gi", "pods": "58"},
        "capacity": {"cpu": "4", "memory": "16Gi", "pods": "58"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "lastHeartbeatTime": "2026-11-30T00:00:00Z",
            "lastTransitionTime": "2026-11-30T00:00:00Z"}]}});
    (node, status)
}

/// Pod `i` of 20 workloads of four sizes.
fn pod(i: usize) -> Pod {
    let app = i % 20;
    let (cpu, mem) = [
        ("250m", "512Mi"),
        ("500m", "1Gi"),
        ("1", "2Gi"),
        ("2", "4Gi"),
    ][app % 4];
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("w{app:02}-{i:05}"), "labels": {"app": format!("w{app:02}")}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}
    }))
    .expect("pod")
}

/// Creates the nodes and the unschedulable pods, concurrently.
async fn burst(client: &kube::Client, pods: usize, nodes: usize) {
    let node_api: Api<Node> = Api::all(client.clone());
    stream::iter(0..nodes)
        .map(|i| {
            let api = node_api.clone();
            async move {
                let (n, status) = node(i);
                let name = n.metadata.name.clone().expect("name");
                api.create(&PostParams::default(), &n)
                    .await
                    .expect("create node");
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await
                    .expect("node status");
            }
        })
        .buffer_unordered(32)
        .collect::<()>()
        .await;
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let unschedulable = serde_json::json!({"status": {"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/500 nodes are available"}]}});
    stream::iter(0..pods)
        .map(|i| {
            let api = pod_api.clone();
            let status = &unschedulable;
            async move {
                let p = pod(i);
                let name = p.metadata.name.clone().expect("name");
                api.create(&PostParams::default(), &p)
                    .await
                    .expect("create pod");
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                    .await
                    .expect("mark unschedulable");
            }
        })
        .buffer_unordered(64)
        .collect::<()>()
        .await;
}

/// Deletes every pod and node, and empties moto (a fresh EC2 world per run:
/// moto's answers slow down as instances and templates accumulate).
async fn clean(client: &kube::Client, moto: &support::Moto, ec2: &aws_sdk_ec2::Client) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let nodes: Api<Node> = Api::all(client.clone());
    pods.delete_collection(
        &DeleteParams::default().grace_period(0),
        &ListParams::default(),
    )
    .await
    .expect("delete pods");
    nodes
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("delete nodes");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pods
        .list(&ListParams::default().limit(1))
        .await
        .expect("list")
        .items
        .is_empty()
        || !nodes
            .list(&ListParams::default().limit(1))
            .await
            .expect("list")
            .items
            .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "pods and nodes not gone in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // NodeClaims of the last run: their finalizers lifted (no controller is left to).
    let claims: Api<NodeClaim> = Api::all(client.clone());
    let unfinalize = serde_json::json!({"metadata": {"finalizers": null}});
    for c in claims
        .list(&ListParams::default())
        .await
        .expect("list claims")
    {
        if let Some(name) = c.metadata.name {
            let _ = claims
                .patch(&name, &PatchParams::default(), &Patch::Merge(&unfinalize))
                .await;
            let _ = claims.delete(&name, &DeleteParams::default()).await;
        }
    }
    moto.reset();
    world::setup(ec2).await;
    world::node_role(&moto.settings()).await;
}

/// Applies the committed NodeClaim CRD and waits until NodeClaims can be listed.
async fn apply_crd(admin: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crd: CustomResourceDefinition =
        serde_yaml_ng::from_str(include_str!("../deploy/crds/nodewright.io_nodeclaims.yaml"))
            .expect("the committed CRD parses");
    Api::<CustomResourceDefinition>::all(admin.clone())
        .create(&PostParams::default(), &crd)
        .await
        .expect("apply the NodeClaim CRD");
    let claims: Api<NodeClaim> = Api::all(admin.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while claims.list(&ListParams::default()).await.is_err() {
        assert!(Instant::now() < deadline, "the NodeClaim CRD never served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One run's figures, in seconds.
struct Run {
    to_last_launch: f64,
    pass: f64,
    cpu: f64,
    launched: f64,
    batch_passes: f64,
    create: f64,
    /// Wall and CPU time of each part of the pass.
    phases: BTreeMap<String, (f64, f64)>,
}

async fn run_once(
    kube: &kube_support::KubeApi,
    moto: &support::Moto,
    policy_dir: &std::path::Path,
    pods: usize,
    nodes: usize,
) -> Run {
    let client = kube.client().await;
    let mut opts = Options::new(
        vec![policy_dir.to_path_buf()],
        nodewright::cloud::userdata::ClusterInfo {
            name: CLUSTER.into(),
            endpoint: kube.server.clone(),
            ca_bundle: String::new(),
            service_cidr: "10.0.0.0/24".into(),
        },
        moto.settings(),
    );
    // Karpenter's 1 s idle closes the batch; the burst must not be cut by the
    // 10 s cap while it is being created, nor a resync run in the middle.
    opts.batch_max = Duration::from_secs(600);
    opts.resync = Duration::from_secs(3600);
    opts.metrics_addr = Some("127.0.0.1:0".parse().expect("addr"));
    let catalog = Arc::new(nodewright::catalog::Catalog::embedded().expect("embedded catalog"));
    let controller = Controller::new(opts, catalog)
        .await
        .expect("controller starts");
    let addr = controller.metrics_addr().expect("metrics bound");
    let (stop, rx) = tokio::sync::watch::channel(false);
    let ctl_client = client.clone();
    let task = tokio::spawn(async move { controller.run(ctl_client, rx).await.expect("runs") });
    // Ready: caches synced and the first (empty) pass done.
    let deadline = Instant::now() + Duration::from_secs(120);
    while support::http(addr.port(), "GET", "/readyz", "")
        .map(|r| r.0)
        .ok()
        != Some(200)
    {
        assert!(Instant::now() < deadline, "controller not ready in 120 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = metrics(addr);
    let t = Instant::now();
    burst(&client, pods, nodes).await;
    let create = t.elapsed().as_secs_f64();
    let key = "nodewright_controller_pass_seconds_count{trigger=\"batch\"}";
    let deadline = Instant::now() + Duration::from_secs(600);
    let after = loop {
        // A batch pass ends once its last launch is done; wait for it and a
        // little more, to see whether the burst was split into two batches.
        let m = metrics(addr);
        if value(&m, key) > value(&before, key) {
            tokio::time::sleep(Duration::from_secs(2)).await;
            break metrics(addr);
        }
        assert!(Instant::now() < deadline, "no batch pass in 600 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = stop.send(true);
    task.await.expect("controller stops");
    let d = |k: &str| value(&after, k) - value(&before, k);
    let delta = |metric: &str, phase: &str| {
        phases(&after, metric).get(phase).copied().unwrap_or(0.0)
            - phases(&before, metric).get(phase).copied().unwrap_or(0.0)
    };
    Run {
        to_last_launch: d("nodewright_controller_batch_to_last_launch_seconds_sum"),
        pass: d("nodewright_controller_pass_seconds_sum{trigger=\"batch\"}"),
        cpu: d("nodewright_controller_pass_cpu_seconds_sum{trigger=\"batch\"}"),
        launched: d("nodewright_controller_nodes_launched_total"),
        batch_passes: d(key),
        create,
        phases: phases(&after, "pass_phase_seconds")
            .into_keys()
            .map(|k| {
                let wall = delta("pass_phase_seconds", &k);
                let cpu = delta("pass_phase_cpu_seconds", &k);
                (k, (wall, cpu))
            })
            .collect(),
    }
}

fn p50_max(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() - 1])
}

fn main() {
    let runs = env_usize("NODEWRIGHT_BENCH_RUNS", 5).max(1);
    let pods = env_usize("NODEWRIGHT_BENCH_PODS", 5000);
    let nodes = env_usize("NODEWRIGHT_BENCH_NODES", 500);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(
                std::env::var("NODEWRIGHT_LOG").unwrap_or_else(|_| "nodewright=warn".into()),
            )
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let moto = support::Moto::start();
        let kube = kube_support::KubeApi::start();
        let ec2 = moto.ec2().await;
        let client = kube.client().await;
        apply_crd(&client).await;
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": NS}}))
            .expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("general.policy"), POLICY).expect("write policy");

        println!(
            "controller burst: {pods} unschedulable pods + {nodes} existing nodes, {runs} runs"
        );
        println!(
            "run | created in | batch close -> last launch | pass wall | pass CPU | launched | fleets | batch passes | phases (wall/CPU s)"
        );
        let mut all = Vec::new();
        for i in 1..=runs {
            clean(&client, &moto, &ec2).await;
            let r = run_once(&kube, &moto, dir.path(), pods, nodes).await;
            // CreateFleet calls: moto keeps every fleet it made (reset between runs).
            let fleets = ec2
                .describe_fleets()
                .send()
                .await
                .map(|f| f.fleets().len())
                .unwrap_or(0);
            let ph: Vec<String> = r
                .phases
                .iter()
                .filter(|(_, (wall, _))| *wall >= 0.0005)
                .map(|(k, (wall, cpu))| format!("{k} {wall:.3}/{cpu:.3}"))
                .collect();
            println!(
                "{i} | {:.1} s | {:.3} s | {:.3} s | {:.3} s | {} | {fleets} | {} | {}",
                r.create,
                r.to_last_launch,
                r.pass,
                r.cpu,
                r.launched,
                r.batch_passes,
                ph.join(", ")
            );
            all.push(r);
        }
        let (l50, lmax) = p50_max(all.iter().map(|r| r.to_last_launch).collect());
        let (w50, wmax) = p50_max(all.iter().map(|r| r.pass).collect());
        let (c50, cmax) = p50_max(all.iter().map(|r| r.cpu).collect());
        println!("batch close -> last launch: p50 {l50:.3} s, max {lmax:.3} s");
        println!("pass wall time:             p50 {w50:.3} s, max {wmax:.3} s");
        println!("pass CPU time (process):    p50 {c50:.3} s, max {cmax:.3} s");
        if all.iter().any(|r| r.batch_passes != 1.0) {
            println!("note: some bursts closed as more than one batch (see `batch passes`)");
        }
        clean(&client, &moto, &ec2).await;
    });
}
