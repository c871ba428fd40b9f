// The controller tests' shared harness: a real kube-apiserver + etcd, moto, the
// controller in this process, and the parts the tests play (the scheduler's
// Unschedulable mark, the kubelet's registration). `include!`d into a module of
// each test binary (tests/controller.rs, disruption.rs, termination.rs), which
// brings `CLUSTER`, the support modules and the imports with `use super::*`.

/// Everything the controller logged in this process (tests look for lines in it).
pub static LOG: Mutex<String> = Mutex::new(String::new());

/// A log writer that keeps a copy in [`LOG`] and prints the rest as the
/// test writer would (shown on failure).
pub struct Tee;

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

pub fn logged(needle: &str) -> bool {
    LOG.lock().map(|l| l.contains(needle)).unwrap_or(false)
}

/// Publishes `general.policy` in `dir` the way the kubelet updates a
/// ConfigMap volume: the content goes into a fresh `..<generation>` folder,
/// a `..data` symlink is swapped to it by rename, and the visible file is a
/// symlink through `..data` that never changes itself.
pub fn configmap_publish(dir: &Path, generation: u32, text: &str) {
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
pub fn configmap_remove_key(dir: &Path, generation: u32) {
    let ts = format!("..2026_11_29_{generation:04}");
    std::fs::create_dir(dir.join(&ts)).expect("generation folder");
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&ts, &tmp).expect("symlink ..data_tmp");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    std::fs::remove_file(dir.join("general.policy")).expect("remove the visible file");
}

pub async fn wait_for<T>(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
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
pub async fn instances(ec2: &aws_sdk_ec2::Client, states: &[&str]) -> Vec<Instance> {
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

pub async fn create_namespace(client: &kube::Client, name: &str) {
    let ns: Api<Namespace> = Api::all(client.clone());
    let obj: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
    // An earlier test on this control plane may have made it (its pods are cleaned).
    match ns.create(&PostParams::default(), &obj).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("create namespace {name}: {e}"),
    }
}

/// Creates a pod and marks it unschedulable, as the kube-scheduler would.
pub async fn unschedulable_pod(client: &kube::Client, ns: &str, name: &str, cpu: &str, mem: &str) {
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
pub async fn register_node(
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
pub async fn node_ready(client: &kube::Client, name: &str) {
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

pub async fn metrics(addr: std::net::SocketAddr) -> String {
    let (status, body) = support::http(addr.port(), "GET", "/metrics", "").expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    body
}

pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

pub async fn start(
    moto: &support::Moto,
    kube: &kube_support::KubeApi,
    policy_dir: &Path,
    registration_ttl: Duration,
) -> (
    std::net::SocketAddr,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    start_with(moto, kube, policy_dir, registration_ttl, |_| {}).await
}

/// [`start`], with `tweak` applied to the controller's options last.
pub async fn start_with(
    moto: &support::Moto,
    kube: &kube_support::KubeApi,
    policy_dir: &Path,
    registration_ttl: Duration,
    tweak: impl FnOnce(&mut Options),
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
    tweak(&mut opts);
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
pub const NODECLAIM_CRD: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/crds/nodewright.io_nodeclaims.yaml"
));

/// Applies the committed NodeClaim CRD (once per control plane) and waits
/// until NodeClaims can be listed.
pub async fn apply_crds(admin: &kube::Client) {
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
pub async fn service_account_client(kube: &kube_support::KubeApi) -> kube::Client {
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
pub async fn clean_cluster(client: &kube::Client) {
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
pub struct Fixture {
    pub moto: support::MotoGuard,
    pub kube: kube_support::KubeGuard,
    pub ec2: aws_sdk_ec2::Client,
    pub client: kube::Client,
    pub dir: tempfile::TempDir,
}

pub async fn fixture(namespace: &str) -> Fixture {
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

pub type Instance = (String, String, String, String);

/// This cluster's running instances not in `known`, once there is at least one.
pub async fn new_launches(
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
pub async fn first_launch(ec2: &aws_sdk_ec2::Client) -> Vec<Instance> {
    new_launches(ec2, "the first launch", Duration::from_secs(60), &[]).await
}

/// Every NodeClaim.
pub async fn claims(client: &kube::Client) -> Vec<NodeClaim> {
    Api::<NodeClaim>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list nodeclaims")
        .items
}

/// The status, reason and message of a claim's condition.
pub fn condition(c: &NodeClaim, type_: &str) -> Option<(String, String, String)> {
    c.status
        .as_ref()?
        .conditions
        .iter()
        .find(|x| x.type_ == type_)
        .map(|x| (x.status.clone(), x.reason.clone(), x.message.clone()))
}

/// The claim named `name` once `f` holds for it.
pub async fn claim_when(
    client: &kube::Client,
    name: &str,
    what: &str,
    f: impl Fn(&NodeClaim) -> bool,
) -> NodeClaim {
    wait_for(what, Duration::from_secs(30), async || {
        claims(client)
            .await
            .into_iter()
            .find(|c| c.metadata.name.as_deref() == Some(name) && f(c))
    })
    .await
}
