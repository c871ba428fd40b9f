//! `nodewright controller` end to end: a real kube-apiserver and etcd, moto's
//! EC2, and the controller running in this process against both.
//!
//! The tests play the parts the control plane here lacks: the kube-scheduler
//! (marking pods `PodScheduled=False/Unschedulable`) and the kubelet
//! (registering a Node with the instance's provider ID).
//!
//! Needs moto and the control-plane binaries: `bash scripts/test.sh` installs both.
#![cfg(feature = "controller")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test"
)]

#[path = "support/kube.rs"]
mod kube_support;
#[path = "support/moto.rs"]
mod support;
#[path = "support/ec2_world.rs"]
mod world;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use nodewright::cloud::tags::{TAG_CLAIM, TAG_CLUSTER};
use nodewright::controller::run::{Controller, Options};
use nodewright::reload::WatchOptions;

const CLUSTER: &str = "ctl-test";

fn policy_text(family: &str) -> String {
    format!(
        r#"pool general {{
  require karpenter.sh/capacity-type in [on-demand]
  require karpenter.k8s.aws/instance-family in [{family}]
  label team = "platform"
  node-class default
  disruption {{
    consolidate when-empty after 1s
    budget 100%
  }}
}}

node-class default {{
  ami where tag karpenter.sh/discovery = "demo"
  subnets where tag karpenter.sh/discovery = "demo"
  security-groups where tag karpenter.sh/discovery = "demo"
  role "KarpenterNodeRole-demo"
}}
"#
    )
}

/// Everything the controller logged in this process (tests look for lines in it).
static LOG: Mutex<String> = Mutex::new(String::new());

/// A log writer that keeps a copy in [`LOG`] and prints the rest as the
/// test writer would (shown on failure).
struct Tee;

impl std::io::Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        if let Ok(mut log) = LOG.lock() {
            log.push_str(&text);
        }
        print!("{text}");
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged(needle: &str) -> bool {
    LOG.lock().map(|l| l.contains(needle)).unwrap_or(false)
}

/// Publishes `general.policy` in `dir` the way the kubelet updates a
/// ConfigMap volume: the content goes into a fresh `..<generation>` folder,
/// a `..data` symlink is swapped to it by rename, and the visible file is a
/// symlink through `..data` that never changes itself.
fn configmap_publish(dir: &Path, generation: u32, text: &str) {
    let ts = format!("..2026_11_29_{generation:04}");
    std::fs::create_dir(dir.join(&ts)).expect("generation folder");
    std::fs::write(dir.join(&ts).join("general.policy"), text).expect("write policy");
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&ts, &tmp).expect("symlink ..data_tmp");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    let visible = dir.join("general.policy");
    if std::fs::symlink_metadata(&visible).is_err() {
        std::os::unix::fs::symlink("..data/general.policy", &visible).expect("symlink file");
    }
}

/// The ConfigMap loses its only key: the kubelet publishes an empty
/// generation and removes the visible file.
fn configmap_remove_key(dir: &Path, generation: u32) {
    let ts = format!("..2026_11_29_{generation:04}");
    std::fs::create_dir(dir.join(&ts)).expect("generation folder");
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&ts, &tmp).expect("symlink ..data_tmp");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    std::fs::remove_file(dir.join("general.policy")).expect("remove the visible file");
}

async fn wait_for<T>(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// (instance id, type, claim) of this cluster's instances in `states`.
async fn instances(ec2: &aws_sdk_ec2::Client, states: &[&str]) -> Vec<Instance> {
    let resp = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name(format!("tag:{TAG_CLUSTER}"))
                .values(CLUSTER)
                .build(),
        )
        .send()
        .await
        .expect("DescribeInstances");
    let mut out = Vec::new();
    for r in resp.reservations() {
        for i in r.instances() {
            let state = i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_default();
            if !states.contains(&state.as_str()) {
                continue;
            }
            let claim = i
                .tags()
                .iter()
                .find(|t| t.key() == Some(TAG_CLAIM))
                .and_then(|t| t.value())
                .unwrap_or_default()
                .to_string();
            out.push((
                i.instance_id().unwrap_or_default().to_string(),
                i.instance_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                claim,
                i.placement()
                    .and_then(|p| p.availability_zone())
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
    }
    out.sort();
    out
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let ns: Api<Namespace> = Api::all(client.clone());
    let obj: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
    ns.create(&PostParams::default(), &obj)
        .await
        .expect("create namespace");
}

/// Creates a pod and marks it unschedulable, as the kube-scheduler would.
async fn unschedulable_pod(client: &kube::Client, ns: &str, name: &str, cpu: &str, mem: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let status = serde_json::json!({"status": {"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/0 nodes are available"}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("mark unschedulable");
}

/// Registers a Node for an instance, as its kubelet would.
async fn register_node(
    client: &kube::Client,
    name: &str,
    instance: &str,
    zone: &str,
    annotations: serde_json::Value,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "annotations": annotations,
            "labels": {"karpenter.sh/nodepool": "general", "topology.kubernetes.io/zone": zone}},
        "spec": {"providerID": format!("aws:///{zone}/{instance}")}
    }))
    .expect("node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
    let status = serde_json::json!({"status": {
        "allocatable": {"cpu": "8", "memory": "30Gi", "pods": "58"},
        "capacity": {"cpu": "8", "memory": "32Gi", "pods": "58"}}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("node status");
}

/// Marks a Node Ready and removes its start-up taints, as its kubelet and the
/// node lifecycle controller would.
async fn node_ready(client: &kube::Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let spec = serde_json::json!({"spec": {"taints": null}});
    nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .expect("remove taints");
    let status = serde_json::json!({"status": {"conditions": [{
        "type": "Ready", "status": "True", "reason": "KubeletReady",
        "lastHeartbeatTime": "2026-11-29T00:00:00Z", "lastTransitionTime": "2026-11-29T00:00:00Z"}]}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("node Ready");
}

async fn metrics(addr: std::net::SocketAddr) -> String {
    let (status, body) = support::http(addr.port(), "GET", "/metrics", "").expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    body
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

async fn start(
    moto: &support::Moto,
    kube: &kube_support::KubeApi,
    policy_dir: &Path,
    registration_ttl: Duration,
) -> (
    std::net::SocketAddr,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
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
    opts.batch_idle = Duration::from_millis(200);
    opts.batch_max = Duration::from_secs(2);
    opts.resync = Duration::from_millis(500);
    opts.registration_ttl = registration_ttl;
    opts.metrics_addr = Some("127.0.0.1:0".parse().expect("addr"));
    opts.watch = WatchOptions {
        debounce: Duration::from_millis(50),
        recheck: Duration::from_millis(500),
    };
    // The controller's log in the test's output (shown on failure): NODEWRIGHT_LOG=debug for more.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(
                std::env::var("NODEWRIGHT_LOG").unwrap_or_else(|_| "nodewright=info".into()),
            )
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(|| Tee)
        .with_ansi(false)
        .try_init();
    let catalog = Arc::new(nodewright::catalog::Catalog::embedded().expect("embedded catalog"));
    let controller = Controller::new(opts, catalog)
        .await
        .expect("controller starts");
    let addr = controller.metrics_addr().expect("metrics bound");
    // The controller runs as deploy/nodewright.yaml's service account, so its RBAC is tested too.
    let client = service_account_client(kube).await;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        controller.run(client, rx).await.expect("controller runs");
    });
    (addr, tx, task)
}

const DEPLOY: &str = include_str!("../deploy/nodewright.yaml");

/// Creates deploy/nodewright.yaml's Namespace, ServiceAccount, ClusterRole,
/// ClusterRoleBinding, Role and RoleBinding (not its Deployment), and returns a client that
/// authenticates with a token of that service account.
async fn service_account_client(kube: &kube_support::KubeApi) -> kube::Client {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    use serde::Deserialize;

    let admin = kube.client().await;
    let pp = PostParams::default();
    let exists = |r: Result<(), kube::Error>| match r {
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        other => other,
    };
    for doc in serde_yaml_ng::Deserializer::from_str(DEPLOY) {
        let v = serde_json::Value::deserialize(doc).expect("deploy/nodewright.yaml parses");
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        let r = match kind.as_str() {
            "Namespace" => {
                let o: Namespace = serde_json::from_value(v).expect("Namespace");
                Api::<Namespace>::all(admin.clone())
                    .create(&pp, &o)
                    .await
                    .map(drop)
            }
            "ServiceAccount" => {
                let o: ServiceAccount = serde_json::from_value(v).expect("ServiceAccount");
                Api::<ServiceAccount>::namespaced(admin.clone(), "nodewright")
                    .create(&pp, &o)
                    .await
                    .map(drop)
            }
            "ClusterRole" => {
                let o: ClusterRole = serde_json::from_value(v).expect("ClusterRole");
                Api::<ClusterRole>::all(admin.clone())
                    .create(&pp, &o)
                    .await
                    .map(drop)
            }
            "ClusterRoleBinding" => {
                let o: ClusterRoleBinding = serde_json::from_value(v).expect("ClusterRoleBinding");
                Api::<ClusterRoleBinding>::all(admin.clone())
                    .create(&pp, &o)
                    .await
                    .map(drop)
            }
            "Role" => {
                let o: Role = serde_json::from_value(v).expect("Role");
                Api::<Role>::namespaced(admin.clone(), "nodewright")
                    .create(&pp, &o)
                    .await
                    .map(drop)
            }
            "RoleBinding" => {
                let o: RoleBinding = serde_json::from_value(v).expect("RoleBinding");
                Api::<RoleBinding>::namespaced(admin.clone(), "nodewright")
                    .create(&pp, &o)
                    .await
                    .map(drop)
            }
            "ConfigMap" | "Deployment" | "PodDisruptionBudget" => Ok(()),
            other => panic!("deploy/nodewright.yaml: unexpected kind {other}"),
        };
        exists(r).unwrap_or_else(|e| panic!("creating {kind}: {e}"));
    }
    let tr: TokenRequest = serde_json::from_value(serde_json::json!({
        "spec": {"audiences": [], "expirationSeconds": 3600}
    }))
    .expect("TokenRequest");
    let token = Api::<ServiceAccount>::namespaced(admin, "nodewright")
        .create_token_request("nodewright", &pp, &tr)
        .await
        .expect("service account token")
        .status
        .expect("token status")
        .token;
    let dir = kube.dir().join("nodewright-sa");
    std::fs::create_dir_all(&dir).expect("kubeconfig dir");
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {}\n    insecure-skip-tls-verify: true\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: t\n  context: {{cluster: t, user: sa}}\ncurrent-context: t\n",
            kube.server
        ),
    )
    .expect("write kubeconfig");
    let kc = kube::config::Kubeconfig::read_from(&path).expect("read kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kube config");
    kube::Client::try_from(cfg).expect("kube client")
}

#[test]
fn the_shipped_configmap_policy_compiles() {
    use serde::Deserialize;
    for doc in serde_yaml_ng::Deserializer::from_str(DEPLOY) {
        let v = serde_json::Value::deserialize(doc).expect("deploy/nodewright.yaml parses");
        if v["kind"] == "ConfigMap" {
            let data = v["data"].as_object().expect("data");
            assert!(!data.is_empty());
            for (name, text) in data {
                let text = text.as_str().expect("text");
                let file = nodewright::policy::parse(name, text)
                    .unwrap_or_else(|d| panic!("{}", d.render(100)));
                let (set, _) = nodewright::policy::compile(&[file])
                    .unwrap_or_else(|d| panic!("{}", d.render(100)));
                assert_eq!(set.pools.len(), 1, "{name}");
            }
            return;
        }
    }
    panic!("deploy/nodewright.yaml has no ConfigMap");
}

/// Deletes every Node and Pod left by an earlier test.
async fn clean_cluster(client: &kube::Client) {
    let pods: Api<Pod> = Api::all(client.clone());
    for p in pods.list(&ListParams::default()).await.expect("list pods") {
        if let (Some(name), Some(ns)) = (p.metadata.name, p.metadata.namespace) {
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let _ = api
                .delete(&name, &DeleteParams::default().grace_period(0))
                .await;
        }
    }
    let nodes: Api<Node> = Api::all(client.clone());
    for n in nodes
        .list(&ListParams::default())
        .await
        .expect("list nodes")
    {
        if let Some(name) = n.metadata.name {
            let _ = nodes.delete(&name, &DeleteParams::default()).await;
        }
    }
}

/// What every test starts from: moto with the EC2 world, the control plane
/// with no Nodes or Pods left by an earlier test, a fresh namespace, and an
/// empty policy folder.
struct Fixture {
    moto: support::MotoGuard,
    kube: kube_support::KubeGuard,
    ec2: aws_sdk_ec2::Client,
    client: kube::Client,
    dir: tempfile::TempDir,
}

async fn fixture(namespace: &str) -> Fixture {
    let moto = support::moto().await;
    let kube = kube_support::kube_exclusive().await;
    let ec2 = moto.ec2().await;
    world::setup(&ec2).await;
    let client = kube.client().await;
    clean_cluster(&client).await;
    create_namespace(&client, namespace).await;
    let dir = tempfile::tempdir().expect("tempdir");
    Fixture {
        moto,
        kube,
        ec2,
        client,
        dir,
    }
}

type Instance = (String, String, String, String);

/// This cluster's running instances not in `known`, once there is at least one.
async fn new_launches(
    ec2: &aws_sdk_ec2::Client,
    what: &str,
    timeout: Duration,
    known: &[Instance],
) -> Vec<Instance> {
    wait_for(what, timeout, async || {
        let v = instances(ec2, &["pending", "running"]).await;
        let new: Vec<_> = v.into_iter().filter(|i| !known.contains(i)).collect();
        (!new.is_empty()).then_some(new)
    })
    .await
}

/// This cluster's running instances, once there is at least one.
async fn first_launch(ec2: &aws_sdk_ec2::Client) -> Vec<Instance> {
    new_launches(ec2, "the first launch", Duration::from_secs(60), &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launches_for_unschedulable_pods_hot_reloads_and_removes_empty_nodes() {
    let Fixture {
        moto,
        kube,
        ec2,
        client,
        dir,
    } = fixture("shop").await;
    // The policy folder is laid out as a mounted ConfigMap, and updated as one.
    configmap_publish(dir.path(), 1, &policy_text("m5"));
    let (addr, stop, task) = start(&moto, &kube, dir.path(), Duration::from_secs(600)).await;

    // 1. Pods the scheduler gave up on get nodes of the policy's family, in a zone with a subnet.
    for i in 0..3 {
        unschedulable_pod(&client, "shop", &format!("web-{i}"), "1", "2Gi").await;
    }
    let first = first_launch(&ec2).await;
    for (id, ty, claim, zone) in &first {
        assert!(
            ty.starts_with("m5."),
            "{id} is {ty}: the policy allows only m5"
        );
        assert!(claim.starts_with("general-"), "{claim}");
        assert!(
            ["us-east-1a", "us-east-1b"].contains(&zone.as_str()),
            "{zone} has no subnet"
        );
    }
    // Claims in flight hold their pods: once every pod is provided for, later
    // passes (every 500 ms) launch nothing more.
    wait_for(
        "every pod provided for",
        Duration::from_secs(30),
        async || {
            (metric(&metrics(addr).await, "nodewright_controller_pending_pods") == Some(0.0))
                .then_some(())
        },
    )
    .await;
    let first = instances(&ec2, &["pending", "running"]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = instances(&ec2, &["pending", "running"]).await;
    assert_eq!(
        settled, first,
        "no second launch for pods already provided for"
    );
    let m = metrics(addr).await;
    assert_eq!(
        metric(&m, "nodewright_controller_nodes_launched_total"),
        Some(first.len() as f64),
        "{m}"
    );
    assert_eq!(
        metric(&m, "nodewright_policy_active_version"),
        Some(1.0),
        "{m}"
    );

    // The pods carry Events: which node was launched for them, and, for a pod
    // no m5 can hold, why it waits.
    unschedulable_pod(&client, "shop", "giant", "1000", "1Gi").await;
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "shop");
    let (nominated, failed) = wait_for("pod events", Duration::from_secs(30), async || {
        let list = events.list(&ListParams::default()).await.ok()?;
        let find = |pod: &str, reason: &str| {
            list.items.iter().find(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod)
            })
        };
        Some((
            find("web-0", "Nominated")?.clone(),
            find("giant", "FailedProvisioning")?.clone(),
        ))
    })
    .await;
    assert_eq!(
        nominated.reporting_controller.as_deref(),
        Some("nodewright")
    );
    let note = nominated.note.unwrap_or_default();
    assert!(note.starts_with("nodewright launched general-"), "{note}");
    let note = failed.note.unwrap_or_default();
    assert!(
        note.starts_with("nodewright cannot place this pod: "),
        "{note}"
    );
    assert_eq!(failed.type_.as_deref(), Some("Warning"));

    // 2. Hot reload through a ConfigMap update: the policy now allows only c5;
    //    new pods get c5 nodes.
    configmap_publish(dir.path(), 2, &policy_text("c5"));
    wait_for("policy v2", Duration::from_secs(10), async || {
        (metric(&metrics(addr).await, "nodewright_policy_active_version") == Some(2.0))
            .then_some(())
    })
    .await;
    unschedulable_pod(&client, "shop", "api-0", "2", "2Gi").await;
    let second = new_launches(&ec2, "a c5 launch", Duration::from_secs(30), &first).await;
    assert!(
        second.iter().all(|(_, ty, _, _)| ty.starts_with("c5.")),
        "{second:?}"
    );

    // 3. A broken policy is rejected; v2 stays active and keeps planning. The
    //    log has the same located diagnostics `nodewright check` prints.
    configmap_publish(
        dir.path(),
        3,
        "pool general {\n  require karpenter.sh/capacity-type inn [spot]\n}\n",
    );
    wait_for("the rejected reload", Duration::from_secs(10), async || {
        let m = metrics(addr).await;
        (metric(&m, "nodewright_policy_reload_failures_total") == Some(1.0)).then_some(())
    })
    .await;
    let checked = match nodewright::policy::load(&[dir.path().to_path_buf()]) {
        Ok(_) => panic!("`check` accepts the broken policy"),
        Err(d) => d.render(100),
    };
    assert!(
        checked.contains("general.policy:2:"),
        "check locates the error: {checked}"
    );
    wait_for(
        "the located error in the log",
        Duration::from_secs(10),
        async || {
            logged(&format!(
                "policy change rejected, last good version stays active:\n{checked}"
            ))
            .then_some(())
        },
    )
    .await;
    let m = metrics(addr).await;
    assert_eq!(
        metric(&m, "nodewright_policy_active_version"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "nodewright_policy_last_reload_ok"),
        Some(0.0),
        "{m}"
    );
    unschedulable_pod(&client, "shop", "api-1", "2", "2Gi").await;
    let before: Vec<Instance> = first.iter().chain(&second).cloned().collect();
    let third = new_launches(
        &ec2,
        "a launch under the last good version",
        Duration::from_secs(30),
        &before,
    )
    .await;
    assert!(
        third.iter().all(|(_, ty, _, _)| ty.starts_with("c5.")),
        "{third:?}"
    );

    // 3b. The ConfigMap loses its only policy: an empty policy is refused
    //     (no --allow-empty-policy), counted, and v2 stays active.
    configmap_remove_key(dir.path(), 4);
    wait_for(
        "the refused empty policy",
        Duration::from_secs(10),
        async || {
            let m = metrics(addr).await;
            (metric(&m, "nodewright_policy_reload_failures_total") == Some(2.0)).then_some(())
        },
    )
    .await;
    let m = metrics(addr).await;
    assert_eq!(
        metric(&m, "nodewright_policy_active_version"),
        Some(2.0),
        "{m}"
    );
    assert!(
        logged("define no pools"),
        "the refusal is logged with its reason"
    );

    // 4. Nodes register; their pods go away; empty nodes are removed and their
    //    instances terminated, except the one marked do-not-disrupt.
    let all: Vec<_> = first.iter().chain(&second).chain(&third).cloned().collect();
    for (i, (id, _, _, zone)) in all.iter().enumerate() {
        let ann = if i == 0 {
            serde_json::json!({"karpenter.sh/do-not-disrupt": "true"})
        } else {
            serde_json::json!({})
        };
        register_node(&client, &format!("node-{i}"), id, zone, ann).await;
    }
    // A node nodewright did not launch is never touched.
    register_node(
        &client,
        "someone-elses",
        "i-0000000000000000",
        "us-east-1a",
        serde_json::json!({}),
    )
    .await;
    // The apiserver taints every new Node not-ready until a kubelet reports in.
    // The still-pending pods are planned onto the registered nodes anyway, as
    // the scheduler will place them there: nothing new is launched, and no
    // node is removed while it starts or while pods wait to be placed.
    let nodes: Api<Node> = Api::all(client.clone());
    let n1 = nodes.get("node-1").await.expect("node-1");
    let taints: Vec<String> = n1
        .spec
        .and_then(|s| s.taints)
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.key)
        .collect();
    assert!(
        taints.contains(&"node.kubernetes.io/not-ready".to_string()),
        "{taints:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut now_running = instances(&ec2, &["pending", "running"]).await;
    let mut expected = all.clone();
    now_running.sort();
    expected.sort();
    assert_eq!(
        now_running, expected,
        "registered nodes absorb the pending pods"
    );
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .expect("list nodes")
            .items
            .len(),
        all.len() + 1,
        "no node with pods planned onto it is removed"
    );

    // The kubelets report Ready and the node lifecycle controller lifts the
    // not-ready taint (played here); then the pods finish and go away.
    for (i, _) in all.iter().enumerate() {
        node_ready(&client, &format!("node-{i}")).await;
    }
    node_ready(&client, "someone-elses").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    pods.delete_collection(
        &DeleteParams::default().grace_period(0),
        &ListParams::default(),
    )
    .await
    .expect("delete pods");
    let left = wait_for("empty nodes removed", Duration::from_secs(30), async || {
        let names: Vec<String> = nodes
            .list(&ListParams::default())
            .await
            .ok()?
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        (names.len() == 2).then_some(names)
    })
    .await;
    assert_eq!(left, ["node-0", "someone-elses"]);
    let running = wait_for(
        "instances terminated",
        Duration::from_secs(30),
        async || {
            let v = instances(&ec2, &["pending", "running"]).await;
            (v.len() == 1).then_some(v)
        },
    )
    .await;
    assert_eq!(
        running[0].0, all[0].0,
        "only the do-not-disrupt node's instance runs"
    );
    let m = metrics(addr).await;
    assert_eq!(
        metric(&m, "nodewright_controller_nodes_removed_total"),
        Some((all.len() - 1) as f64),
        "{m}"
    );
    let _ = stop.send(true);
    task.await.expect("controller stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_never_registers_is_replaced() {
    let Fixture {
        moto,
        kube,
        ec2,
        client,
        dir,
    } = fixture("batch").await;
    std::fs::write(dir.path().join("general.policy"), policy_text("m5")).expect("write policy");
    let (addr, stop, task) = start(&moto, &kube, dir.path(), Duration::from_secs(3)).await;

    unschedulable_pod(&client, "batch", "job-0", "1", "1Gi").await;
    let first = first_launch(&ec2).await;
    assert_eq!(first.len(), 1);
    // No Node ever appears: after the timeout the instance is terminated and
    // the still-pending pod gets a new one.
    let replaced = wait_for("the replacement", Duration::from_secs(30), async || {
        let v = instances(&ec2, &["pending", "running"]).await;
        (v.len() == 1 && v[0].0 != first[0].0).then_some(v)
    })
    .await;
    assert_ne!(replaced[0].2, first[0].2, "a new claim name");
    let gone = instances(&ec2, &["shutting-down", "terminated"]).await;
    assert!(gone.iter().any(|i| i.0 == first[0].0), "{gone:?}");
    let m = metrics(addr).await;
    assert!(
        metric(&m, "nodewright_controller_registration_timeouts_total") >= Some(1.0),
        "{m}"
    );
    let _ = stop.send(true);
    task.await.expect("controller stops cleanly");

    // A restarted controller finds the replacement, still without a Node, among
    // the cluster's instances and ends it on the same timeout.
    let (_, stop, task) = start(&moto, &kube, dir.path(), Duration::from_secs(3)).await;
    wait_for(
        "the orphan terminated",
        Duration::from_secs(30),
        async || {
            let gone = instances(&ec2, &["shutting-down", "terminated"]).await;
            gone.iter().any(|i| i.0 == replaced[0].0).then_some(())
        },
    )
    .await;
    let _ = stop.send(true);
    task.await.expect("controller stops cleanly");
}
