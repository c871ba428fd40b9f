//! Two `nodewright controller` replicas against one real kube-apiserver and
//! moto's EC2: only the holder of the Lease launches; when it dies the other
//! takes over after the lease expires, and when it shuts down it releases the
//! lease and the other takes over at once. No instance is launched twice.
//!
//! Both replicas run in this process on their own tokio tasks, with their own
//! clients (the chart's service account and RBAC, tests/support/rbac.rs, so
//! the Lease RBAC is tested too). Killing one is aborting its task: nothing of it runs any more,
//! it releases nothing, as with SIGKILL.
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
#[path = "support/rbac.rs"]
mod rbac_support;
#[path = "support/moto.rs"]
mod support;
#[path = "support/ec2_world.rs"]
mod world;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use nodewright::cloud::tags::{TAG_CLAIM, TAG_CLUSTER};
use nodewright::controller::leader::LeaderOptions;
use nodewright::controller::run::{Controller, Options};
use nodewright::reload::WatchOptions;

const CLUSTER: &str = "leader-test";
/// The release namespace, where the chart's Role lets the controller use Leases.
const LEASE_NS: &str = "nodewright";

#[allow(
    dead_code,
    reason = "the shared harness: this binary uses a part of it"
)]
mod ctl {
    use super::{CLUSTER, kube_support, rbac_support, support, world};
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use aws_sdk_ec2::types::Filter;
    use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
    use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
    use nodewright::cloud::tags::{TAG_CLAIM, TAG_CLUSTER};
    use nodewright::controller::nodeclaim::NodeClaim;
    use nodewright::controller::run::{Controller, Options};
    use nodewright::reload::WatchOptions;

    include!("support/ctl.rs");
}
use ctl::{apply_crds, clean_cluster, wait_for};

const POLICY: &str = r#"pool general {
  require karpenter.sh/capacity-type in [on-demand]
  require karpenter.k8s.aws/instance-family in [m5]
  node-class default
}

node-class default {
  ami where tag karpenter.sh/discovery = "demo"
  subnets where tag karpenter.sh/discovery = "demo"
  security-groups where tag karpenter.sh/discovery = "demo"
  role "KarpenterNodeRole-demo"
}
"#;

/// Everything the controllers logged in this process.
static LOG: Mutex<String> = Mutex::new(String::new());

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

/// (instance id, claim, zone) of this cluster's pending or running instances.
async fn instances(ec2: &aws_sdk_ec2::Client) -> Vec<(String, String, String)> {
    let resp = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name(format!("tag:{TAG_CLUSTER}"))
                .values(CLUSTER)
                .build(),
        )
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .build(),
        )
        .send()
        .await
        .expect("DescribeInstances");
    let mut out = Vec::new();
    for r in resp.reservations() {
        for i in r.instances() {
            let claim = i
                .tags()
                .iter()
                .find(|t| t.key() == Some(TAG_CLAIM))
                .and_then(|t| t.value())
                .unwrap_or_default()
                .to_string();
            out.push((
                i.instance_id().unwrap_or_default().to_string(),
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

/// Every instance has its own claim: none was launched twice for the same pods.
fn one_instance_per_claim(v: &[(String, String, String)]) {
    let claims: BTreeSet<&str> = v.iter().map(|i| i.1.as_str()).collect();
    assert_eq!(claims.len(), v.len(), "two instances for one claim: {v:?}");
}

/// Creates a pod and marks it unschedulable, as the kube-scheduler would.
async fn unschedulable_pod(client: &kube::Client, ns: &str, name: &str, cpu: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]}
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

/// Registers a Ready Node for an instance, as its kubelet would.
async fn register_node(client: &kube::Client, name: &str, instance: &str, zone: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name,
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
        "capacity": {"cpu": "8", "memory": "32Gi", "pods": "58"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "lastHeartbeatTime": "2026-11-29T00:00:00Z", "lastTransitionTime": "2026-11-29T00:00:00Z"}]}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("node status");
}

/// (status, body) of a GET on a controller's metrics server.
fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    support::http(addr.port(), "GET", path, "").expect("GET")
}

fn metric(addr: std::net::SocketAddr, name: &str) -> Option<f64> {
    let (_, text) = get(addr, "/metrics");
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The Lease's current holder, if any.
async fn holder(client: &kube::Client, lease: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NS);
    leases
        .get_opt(lease)
        .await
        .expect("get lease")
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

/// One running replica.
struct Replica {
    name: &'static str,
    addr: std::net::SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(
    moto: &support::Moto,
    kube: &kube_support::KubeApi,
    policy_dir: &Path,
    lease: &str,
    name: &'static str,
    duration: Duration,
) -> Replica {
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
    opts.metrics_addr = Some("127.0.0.1:0".parse().expect("addr"));
    opts.watch = WatchOptions {
        debounce: Duration::from_millis(50),
        recheck: Duration::from_millis(500),
    };
    let mut l = LeaderOptions::new(lease.into(), LEASE_NS.into(), name.into());
    l.lease_duration = duration;
    l.renew_every = Duration::from_secs(1);
    l.retry = Duration::from_millis(500);
    opts.leader = Some(l);
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
    let client = service_account_client(kube).await;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        controller.run(client, rx).await.expect("controller runs");
    });
    Replica {
        name,
        addr,
        stop,
        task,
    }
}

/// Creates the chart's Namespace, ServiceAccount and RBAC (tests/support/rbac.rs),
/// and returns a client that authenticates with a token of that service account.
async fn service_account_client(kube: &kube_support::KubeApi) -> kube::Client {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    async fn create<K>(api: Api<K>, v: serde_json::Value) -> Result<(), kube::Error>
    where
        K: kube::Resource
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let o: K = serde_json::from_value(v).expect("object");
        match api.create(&PostParams::default(), &o).await {
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            r => r.map(drop),
        }
    }

    let admin = kube.client().await;
    for v in rbac_support::objects(LEASE_NS, "nodewright") {
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        let ns = v["metadata"]["namespace"].as_str().unwrap_or("nodewright");
        let r = match kind.as_str() {
            "Namespace" => create(Api::<Namespace>::all(admin.clone()), v).await,
            "ServiceAccount" => {
                create(Api::<ServiceAccount>::namespaced(admin.clone(), ns), v).await
            }
            "ClusterRole" => create(Api::<ClusterRole>::all(admin.clone()), v).await,
            "ClusterRoleBinding" => create(Api::<ClusterRoleBinding>::all(admin.clone()), v).await,
            "Role" => create(Api::<Role>::namespaced(admin.clone(), ns), v).await,
            "RoleBinding" => create(Api::<RoleBinding>::namespaced(admin.clone(), ns), v).await,
            other => panic!("tests/support/rbac.rs: unexpected kind {other}"),
        };
        r.unwrap_or_else(|e| panic!("creating {kind}: {e}"));
    }
    let tr: TokenRequest = serde_json::from_value(serde_json::json!({
        "spec": {"audiences": [], "expirationSeconds": 3600}
    }))
    .expect("TokenRequest");
    let token = Api::<ServiceAccount>::namespaced(admin, "nodewright")
        .create_token_request("nodewright", &PostParams::default(), &tr)
        .await
        .expect("service account token")
        .status
        .expect("token status")
        .token;
    let dir = kube.dir().join("nodewright-sa-leader");
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
    let ns: Api<Namespace> = Api::all(client.clone());
    let obj: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))
            .expect("namespace");
    ns.create(&PostParams::default(), &obj)
        .await
        .expect("create namespace");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("general.policy"), POLICY).expect("write policy");
    Fixture {
        moto,
        kube,
        ec2,
        client,
        dir,
    }
}

/// Waits until one of `replicas` holds `lease` and says so on `/metrics`;
/// returns (leader, follower).
async fn leader_of(
    client: &kube::Client,
    lease: &str,
    replicas: [Replica; 2],
) -> (Replica, Replica) {
    let name = wait_for("a leader", Duration::from_secs(60), async || {
        holder(client, lease).await
    })
    .await;
    let [a, b] = replicas;
    let (leader, follower) = if name == a.name { (a, b) } else { (b, a) };
    assert_eq!(leader.name, name, "the holder is one of the two replicas");
    wait_for("the leader gauge", Duration::from_secs(30), async || {
        (metric(leader.addr, "nodewright_controller_leader") == Some(1.0)).then_some(())
    })
    .await;
    (leader, follower)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_launches_and_the_other_takes_over_when_it_dies() {
    let Fixture {
        moto,
        kube,
        ec2,
        client,
        dir,
    } = fixture("lead-crash").await;
    const LEASE: &str = "crash-lease";
    // A short lease: the survivor takes over 3 s after the last renewal.
    let lease = Duration::from_secs(3);
    let a = start(&moto, &kube, dir.path(), LEASE, "replica-a", lease).await;
    let b = start(&moto, &kube, dir.path(), LEASE, "replica-b", lease).await;
    let (leader, follower) = leader_of(&client, LEASE, [a, b]).await;

    // The follower stands by: serves /healthz and /metrics, is not ready to act.
    assert_eq!(
        metric(follower.addr, "nodewright_controller_leader"),
        Some(0.0)
    );
    assert_eq!(get(follower.addr, "/healthz").0, 200);
    let (status, body) = get(follower.addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not the leader"), "{body}");
    assert_eq!(get(follower.addr, "/readyz?standby").0, 200);
    assert!(logged(&format!("{} is now the leader", leader.name)));

    // 1. One pending pod: one instance, launched by the leader alone.
    unschedulable_pod(&client, "lead-crash", "web-0", "1").await;
    let first = wait_for("the first launch", Duration::from_secs(60), async || {
        let v = instances(&ec2).await;
        (!v.is_empty()).then_some(v)
    })
    .await;
    // Both replicas run passes every 500 ms: a second launch would show by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = instances(&ec2).await;
    assert_eq!(settled, first, "one instance for one pod");
    assert_eq!(settled.len(), 1, "{settled:?}");
    assert_eq!(
        metric(leader.addr, "nodewright_controller_nodes_launched_total"),
        Some(1.0)
    );
    assert_eq!(
        metric(follower.addr, "nodewright_controller_nodes_launched_total"),
        Some(0.0),
        "the follower launched nothing"
    );
    // Its kubelet registers the Node, which the pod will go to.
    let (id, _, zone) = &first[0];
    register_node(&client, "node-a", id, zone).await;

    // 2. Kill the leader: no release, the lease runs out.
    leader.task.abort();
    let _ = leader.task.await;
    let survivor = follower;
    wait_for(
        "the survivor to take over",
        Duration::from_secs(60),
        async || (holder(&client, LEASE).await.as_deref() == Some(survivor.name)).then_some(()),
    )
    .await;
    wait_for(
        "the survivor's leader gauge",
        Duration::from_secs(30),
        async || (metric(survivor.addr, "nodewright_controller_leader") == Some(1.0)).then_some(()),
    )
    .await;

    // 3. A pod no 8-CPU node holds: the new leader launches for it, and not
    //    again for web-0, whose node is there.
    unschedulable_pod(&client, "lead-crash", "big-0", "12").await;
    let both = wait_for(
        "the survivor's launch",
        Duration::from_secs(60),
        async || {
            let v = instances(&ec2).await;
            (v.len() >= 2).then_some(v)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = instances(&ec2).await;
    assert_eq!(
        settled, both,
        "nothing launched after the survivor's launch"
    );
    assert_eq!(settled.len(), 2, "{settled:?}");
    assert!(settled.contains(&first[0]), "the first instance stays");
    one_instance_per_claim(&settled);
    assert_eq!(
        metric(survivor.addr, "nodewright_controller_nodes_launched_total"),
        Some(1.0)
    );

    let _ = survivor.stop.send(true);
    survivor.task.await.expect("controller stops cleanly");
    assert_eq!(holder(&client, LEASE).await, None, "released on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_shutting_down_releases_the_lease_and_the_other_takes_over() {
    let Fixture {
        moto,
        kube,
        ec2,
        client,
        dir,
    } = fixture("lead-term").await;
    const LEASE: &str = "term-lease";
    // A long lease: had it not been released, the other would wait out 120 s.
    let lease = Duration::from_secs(120);
    let a = start(&moto, &kube, dir.path(), LEASE, "replica-a", lease).await;
    let b = start(&moto, &kube, dir.path(), LEASE, "replica-b", lease).await;
    let (leader, follower) = leader_of(&client, LEASE, [a, b]).await;
    // Ready once it has completed a pass as the leader.
    wait_for(
        "the leader's /readyz",
        Duration::from_secs(30),
        async || (get(leader.addr, "/readyz").0 == 200).then_some(()),
    )
    .await;

    // SIGTERM: the run loop stops, and the lease is given up before it returns.
    let _ = leader.stop.send(true);
    leader.task.await.expect("the leader stops cleanly");
    assert_ne!(
        holder(&client, LEASE).await.as_deref(),
        Some(leader.name),
        "the stopped leader released the lease"
    );
    assert!(logged(&format!("{} released lease {LEASE}", leader.name)));
    wait_for(
        "the other to take over",
        Duration::from_secs(60),
        async || (holder(&client, LEASE).await.as_deref() == Some(follower.name)).then_some(()),
    )
    .await;

    // The new leader acts: it launches for a pending pod, once.
    unschedulable_pod(&client, "lead-term", "web-0", "1").await;
    let first = wait_for(
        "the new leader's launch",
        Duration::from_secs(60),
        async || {
            let v = instances(&ec2).await;
            (!v.is_empty()).then_some(v)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(instances(&ec2).await, first);
    assert_eq!(first.len(), 1);
    assert_eq!(
        metric(follower.addr, "nodewright_controller_nodes_launched_total"),
        Some(1.0)
    );

    let _ = follower.stop.send(true);
    follower.task.await.expect("controller stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_loses_its_lease_stops_acting_until_it_holds_it_again() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let Fixture {
        moto,
        kube,
        ec2,
        client,
        dir,
    } = fixture("lead-lost").await;
    const LEASE: &str = "lost-lease";
    let a = start(
        &moto,
        &kube,
        dir.path(),
        LEASE,
        "replica-a",
        Duration::from_secs(3),
    )
    .await;
    wait_for("replica-a to lead", Duration::from_secs(60), async || {
        (holder(&client, LEASE).await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;

    // Another holder takes the lease over (as one would after a partition).
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NS);
    let take = serde_json::json!({"spec": {
        "holderIdentity": "intruder",
        "renewTime": MicroTime(k8s_openapi::jiff::Timestamp::now()),
        "leaseDurationSeconds": 600}});
    leases
        .patch(LEASE, &PatchParams::default(), &Patch::Merge(&take))
        .await
        .expect("take the lease");
    wait_for(
        "replica-a to stand by",
        Duration::from_secs(30),
        async || (metric(a.addr, "nodewright_controller_leader") == Some(0.0)).then_some(()),
    )
    .await;
    assert!(logged("replica-a is no longer the leader"));
    let (status, body) = get(a.addr, "/readyz");
    assert_eq!(status, 503, "{body}");

    // A pending pod: nothing is launched while another holds the lease.
    unschedulable_pod(&client, "lead-lost", "web-0", "1").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(instances(&ec2).await, Vec::new(), "a follower launched");
    assert_eq!(holder(&client, LEASE).await.as_deref(), Some("intruder"));

    // The other gives the lease up: replica-a takes it and launches, once.
    let free = serde_json::json!({"spec": {"holderIdentity": null, "renewTime": null,
        "acquireTime": null, "leaseDurationSeconds": null}});
    leases
        .patch(LEASE, &PatchParams::default(), &Patch::Merge(&free))
        .await
        .expect("release the lease");
    let first = wait_for("replica-a's launch", Duration::from_secs(60), async || {
        let v = instances(&ec2).await;
        (!v.is_empty()).then_some(v)
    })
    .await;
    assert_eq!(holder(&client, LEASE).await.as_deref(), Some("replica-a"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(instances(&ec2).await, first);
    assert_eq!(first.len(), 1);

    let _ = a.stop.send(true);
    a.task.await.expect("controller stops cleanly");
}
