//! The termination flow end to end: a real kube-apiserver and etcd, moto's
//! EC2, and the controller running in this process against both.
//!
//! Every removal deletes the NodeClaim; its finalizer taints the Node,
//! evicts its pods through the Eviction API (PodDisruptionBudgets hold it),
//! deletes what is left after the pool's termination grace period, then
//! terminates the instance and deletes the Node and the claim.
//!
//! The tests play the parts the control plane here lacks: the kube-scheduler
//! (binding pods), the kubelet (registering Nodes, and finishing the pods
//! an eviction deleted) and the disruption controller (a PDB's status).
//!
//! Needs moto and the control-plane binaries: `bash scripts/test.sh` installs both.
#![cfg(feature = "controller")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test"
)]
#![allow(
    dead_code,
    reason = "the shared helpers are copied from tests/controller.rs; not all are used here"
)]

#[path = "support/kube.rs"]
mod kube_support;
#[path = "support/rbac.rs"]
mod rbac_support;
#[path = "support/moto.rs"]
mod support;
#[path = "support/ec2_world.rs"]
mod world;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use nodewright::cloud::tags::{TAG_CLAIM, TAG_CLUSTER};
use nodewright::controller::nodeclaim::NodeClaim;
use nodewright::controller::run::{Controller, Options};
use nodewright::reload::WatchOptions;

const CLUSTER: &str = "ctl-test";

/// One m5 pool; `grace` is an extra line of its `disruption` block.
fn policy_text(grace: &str) -> String {
    format!(
        r#"pool general {{
  require karpenter.sh/capacity-type in [on-demand]
  require karpenter.k8s.aws/instance-family in [m5]
  node-class default
  disruption {{
    consolidate when-empty after 1s
    budget 100%
    {grace}
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
    // The controller runs as the chart's service account, so the chart's RBAC is tested too.
    let client = service_account_client(kube).await;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        controller.run(client, rx).await.expect("controller runs");
    });
    (addr, tx, task)
}

/// The committed CRD, as an operator applies it (`kubectl apply -f deploy/crds/`).
const NODECLAIM_CRD: &str = include_str!("../deploy/crds/nodewright.io_nodeclaims.yaml");

/// Applies the committed NodeClaim CRD (once per control plane) and waits
/// until NodeClaims can be listed.
async fn apply_crds(admin: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crd: CustomResourceDefinition =
        serde_yaml_ng::from_str(NODECLAIM_CRD).expect("the committed CRD parses");
    match Api::<CustomResourceDefinition>::all(admin.clone())
        .create(&PostParams::default(), &crd)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("applying deploy/crds/nodewright.io_nodeclaims.yaml: {e}"),
    }
    let claims: Api<NodeClaim> = Api::all(admin.clone());
    wait_for("the NodeClaim CRD", Duration::from_secs(30), async || {
        claims.list(&ListParams::default()).await.ok().map(drop)
    })
    .await;
}

/// Creates the chart's Namespace, ServiceAccount and RBAC (tests/support/rbac.rs,
/// from charts/nodewright/files/), and returns a client that authenticates with
/// a token of that service account.
async fn service_account_client(kube: &kube_support::KubeApi) -> kube::Client {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};

    let admin = kube.client().await;
    let pp = PostParams::default();
    let exists = |r: Result<(), kube::Error>| match r {
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        other => other,
    };
    for v in rbac_support::objects("nodewright", "nodewright") {
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
            other => panic!("tests/support/rbac.rs: unexpected kind {other}"),
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

/// Deletes every Node, NodeClaim and Pod left by an earlier test (lifting
/// the finalizers no controller is left to lift).
async fn clean_cluster(client: &kube::Client) {
    let unfinalize = serde_json::json!({"metadata": {"finalizers": null}});
    let claims: Api<NodeClaim> = Api::all(client.clone());
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
            let _ = nodes
                .patch(&name, &PatchParams::default(), &Patch::Merge(&unfinalize))
                .await;
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
    world::node_role(&moto.settings()).await;
    let client = kube.client().await;
    apply_crds(&client).await;
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

const NS: &str = "term";

/// Has the controller launch one node (for a seed pod the scheduler gave up
/// on), then registers its Node as the kubelet would: (node, instance, claim).
async fn launch_one(
    client: &kube::Client,
    ec2: &aws_sdk_ec2::Client,
    node: &str,
    annotations: serde_json::Value,
) -> (String, String, String) {
    let known = instances(ec2, &["pending", "running"]).await;
    let seed = format!("seed-{node}");
    unschedulable_pod(client, NS, &seed, "1", "2Gi").await;
    let new = new_launches(ec2, "a launch", Duration::from_secs(60), &known).await;
    assert_eq!(new.len(), 1, "{new:?}");
    let (id, _, claim, zone) = new[0].clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.delete(&seed, &DeleteParams::default().grace_period(0))
        .await
        .expect("delete seed");
    register_node(client, node, &id, &zone, annotations).await;
    // The controller registers the claim (labels, finalizer on the Node).
    let claims: Api<NodeClaim> = Api::all(client.clone());
    wait_for(
        "the claim registered",
        Duration::from_secs(30),
        async || {
            let c = claims.get(&claim).await.ok()?;
            c.status
                .as_ref()?
                .conditions
                .iter()
                .any(|c| c.type_ == "Registered" && c.status == "True")
                .then_some(())
        },
    )
    .await;
    (node.to_string(), id, claim)
}

/// Creates a pod bound to `node` (as if scheduled), merged with `extra`.
async fn bound_pod(client: &kube::Client, name: &str, node: &str, extra: serde_json::Value) {
    let mut v = serde_json::json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
    });
    merge(&mut v, extra);
    let pod: Pod = serde_json::from_value(v).expect("pod");
    Api::<Pod>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("create pod {name}: {e}"));
    // Running and Ready, as its kubelet reports: a Pending or unready pod is
    // evicted whatever its PDB says.
    let status = serde_json::json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True"}]}});
    Api::<Pod>::namespaced(client.clone(), NS)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("pod running");
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

/// A PDB over pods labelled `app: <app>`, with its status as the disruption
/// controller (not running here) would write it: `allowed` disruptions.
async fn pdb(client: &kube::Client, app: &str, allowed: i32) {
    let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), NS);
    if api.get_opt(app).await.expect("get pdb").is_none() {
        let obj: PodDisruptionBudget = serde_json::from_value(serde_json::json!({
            "metadata": {"name": app},
            "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": app}}}
        }))
        .expect("pdb");
        api.create(&PostParams::default(), &obj)
            .await
            .expect("create pdb");
    } else {
        let spec = serde_json::json!({"spec": {"maxUnavailable": allowed}});
        api.patch(app, &PatchParams::default(), &Patch::Merge(&spec))
            .await
            .expect("relax pdb");
    }
    let generation = api.get(app).await.expect("pdb").metadata.generation;
    let status = serde_json::json!({"status": {
        "observedGeneration": generation, "disruptionsAllowed": allowed,
        "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}});
    api.patch_status(app, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("pdb status");
}

/// The pod, if it exists, and whether it is being deleted.
async fn pod_state(client: &kube::Client, name: &str) -> Option<bool> {
    Api::<Pod>::namespaced(client.clone(), NS)
        .get_opt(name)
        .await
        .expect("get pod")
        .map(|p| p.metadata.deletion_timestamp.is_some())
}

async fn gone(client: &kube::Client, what: &str, node: &str, claim: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let claims: Api<NodeClaim> = Api::all(client.clone());
    wait_for(what, Duration::from_secs(90), async || {
        let n = nodes.get_opt(node).await.ok()?;
        let c = claims.get_opt(claim).await.ok()?;
        (n.is_none() && c.is_none()).then_some(())
    })
    .await;
}

fn tainted(n: &Node) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| {
            ts.iter()
                .any(|t| t.key == "nodewright.io/disrupted" && t.effect == "NoSchedule")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_removal_drains_through_the_eviction_api_then_terminates() {
    let Fixture {
        moto,
        kube,
        ec2,
        client,
        dir,
    } = fixture(NS).await;
    configmap_publish(dir.path(), 1, &policy_text(""));
    let (addr, stop, task) = start(&moto, &kube, dir.path(), Duration::from_secs(600)).await;
    // The kubelet's part: a pod an eviction deleted finishes at once.
    let kubelet = tokio::spawn({
        let client = client.clone();
        async move {
            let pods: Api<Pod> = Api::namespaced(client, NS);
            loop {
                if let Ok(list) = pods.list(&ListParams::default()).await {
                    for p in list.items {
                        if p.metadata.deletion_timestamp.is_some() {
                            let name = p.metadata.name.unwrap_or_default();
                            let _ = pods
                                .delete(&name, &DeleteParams::default().grace_period(0))
                                .await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let nodes: Api<Node> = Api::all(client.clone());
    let claims: Api<NodeClaim> = Api::all(client.clone());

    // 1. A do-not-disrupt node is not removed when empty; without the
    //    annotation it is, through the termination flow.
    let (node_c, id_c, claim_c) = launch_one(
        &client,
        &ec2,
        "node-c",
        serde_json::json!({"nodewright.io/do-not-disrupt": "true"}),
    )
    .await;
    node_ready(&client, &node_c).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        nodes.get_opt(&node_c).await.expect("get").is_some(),
        "a do-not-disrupt node stays"
    );
    let n = nodes.get(&node_c).await.expect("node-c");
    assert!(!tainted(&n), "no termination began");
    let undo =
        serde_json::json!({"metadata": {"annotations": {"nodewright.io/do-not-disrupt": null}}});
    nodes
        .patch(&node_c, &PatchParams::default(), &Patch::Merge(&undo))
        .await
        .expect("remove the annotation");
    gone(&client, "the empty node removed", &node_c, &claim_c).await;
    let running = instances(&ec2, &["pending", "running"]).await;
    assert!(
        !running.iter().any(|i| i.0 == id_c),
        "{id_c} terminated: {running:?}"
    );
    assert_eq!(
        metric(
            &metrics(addr).await,
            "nodewright_controller_nodes_removed_total"
        ),
        Some(1.0)
    );

    // 2. A PodDisruptionBudget that allows no disruption holds the drain
    //    until it is relaxed; DaemonSet, mirror and tolerating pods stay.
    let (node_a, id_a, claim_a) = launch_one(&client, &ec2, "node-a", serde_json::json!({})).await;
    bound_pod(&client, "web", &node_a, serde_json::json!({})).await;
    pdb(&client, "web", 0).await;
    bound_pod(
        &client,
        "ds",
        &node_a,
        serde_json::json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1",
            "kind": "DaemonSet", "name": "ds", "uid": "00000000-0000-0000-0000-000000000001",
            "controller": true}]}}),
    )
    .await;
    bound_pod(
        &client,
        "mirror",
        &node_a,
        serde_json::json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}}),
    )
    .await;
    bound_pod(
        &client,
        "tolerant",
        &node_a,
        serde_json::json!({"spec": {"tolerations": [{"key": "nodewright.io/disrupted",
            "operator": "Exists", "effect": "NoSchedule"}]}}),
    )
    .await;
    claims
        .delete(&claim_a, &DeleteParams::default())
        .await
        .expect("delete claim");
    wait_for("the node tainted", Duration::from_secs(30), async || {
        tainted(&nodes.get(&node_a).await.ok()?).then_some(())
    })
    .await;
    wait_for(
        "the eviction refused",
        Duration::from_secs(30),
        async || logged("eviction of pod term/web refused").then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        pod_state(&client, "web").await,
        Some(false),
        "the PDB holds web"
    );
    let c = claims
        .get(&claim_a)
        .await
        .expect("claim held by its finalizer");
    let disrupting = c
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Disrupting"))
        .map(|c| (c.status.clone(), c.reason.clone()));
    assert_eq!(disrupting, Some(("True".into(), "Deleted".into())));
    assert!(nodes.get_opt(&node_a).await.expect("get").is_some());
    assert!(
        instances(&ec2, &["pending", "running"])
            .await
            .iter()
            .any(|i| i.0 == id_a),
        "the instance runs while the drain waits"
    );
    pdb(&client, "web", 1).await;
    gone(&client, "the drained node removed", &node_a, &claim_a).await;
    assert_eq!(pod_state(&client, "web").await, None, "web was evicted");
    for p in ["ds", "mirror", "tolerant"] {
        assert_eq!(
            pod_state(&client, p).await,
            Some(false),
            "{p} was left alone"
        );
    }
    assert!(
        !instances(&ec2, &["pending", "running"])
            .await
            .iter()
            .any(|i| i.0 == id_a)
    );
    assert!(logged("evicted pod term/web"));

    // 3. The grace period ends a drain: what a PDB or do-not-disrupt holds
    //    is deleted once the pool's termination-grace-period is over.
    configmap_publish(dir.path(), 2, &policy_text("termination-grace-period 3s"));
    wait_for("policy v2", Duration::from_secs(30), async || {
        (metric(&metrics(addr).await, "nodewright_policy_active_version") == Some(2.0))
            .then_some(())
    })
    .await;
    let (node_b, id_b, claim_b) = launch_one(&client, &ec2, "node-b", serde_json::json!({})).await;
    bound_pod(&client, "guarded", &node_b, serde_json::json!({})).await;
    pdb(&client, "guarded", 0).await;
    bound_pod(
        &client,
        "precious",
        &node_b,
        serde_json::json!({"metadata": {"annotations": {"karpenter.sh/do-not-disrupt": "true"}}}),
    )
    .await;
    claims
        .delete(&claim_b, &DeleteParams::default())
        .await
        .expect("delete claim");
    gone(
        &client,
        "the node removed after its grace period",
        &node_b,
        &claim_b,
    )
    .await;
    assert_eq!(pod_state(&client, "guarded").await, None);
    assert_eq!(pod_state(&client, "precious").await, None);
    assert!(logged(
        "termination grace period over; pod term/guarded deleted"
    ));
    assert!(
        !instances(&ec2, &["pending", "running"])
            .await
            .iter()
            .any(|i| i.0 == id_b)
    );

    kubelet.abort();
    let _ = stop.send(true);
    task.await.expect("controller stops cleanly");
}
