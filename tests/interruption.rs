//! The interruption queue end to end: a real kube-apiserver and etcd, moto's
//! EC2 and SQS (one server, one endpoint), and the controller reading the
//! queue with `interruption_queue` set.
//!
//! The messages are the fixtures of the real EventBridge shapes under
//! `tests/data/interruption/`, with the launched instance's id put in.
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

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use nodewright::cloud::tags::{TAG_CLAIM, TAG_CLUSTER};
use nodewright::controller::nodeclaim::NodeClaim;
use nodewright::controller::run::{Controller, Options};
use nodewright::reload::WatchOptions;

const CLUSTER: &str = "intr-test";
const QUEUE: &str = "intr-test-queue";
/// The instance id in every fixture.
const FIXTURE_ID: &str = "i-0b662ef9931388ba0";

/// Spot only, one family: the plan has several (type, zone) offerings to fall back to.
const POLICY: &str = r#"pool general {
  require karpenter.sh/capacity-type in [spot]
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

fn fixture_body(name: &str, instance: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/interruption")
        .join(name);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .replace(FIXTURE_ID, instance)
}

/// (instance id, type, claim, zone) of this cluster's running instances.
type Instance = (String, String, String, String);

async fn running(ec2: &aws_sdk_ec2::Client) -> Vec<Instance> {
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
    for i in resp.reservations().iter().flat_map(|r| r.instances()) {
        let tag = |k: &str| {
            i.tags()
                .iter()
                .find(|t| t.key() == Some(k))
                .and_then(|t| t.value())
                .unwrap_or_default()
                .to_string()
        };
        out.push((
            i.instance_id().unwrap_or_default().to_string(),
            i.instance_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            tag(TAG_CLAIM),
            i.placement()
                .and_then(|p| p.availability_zone())
                .unwrap_or_default()
                .to_string(),
        ));
    }
    out.sort();
    out
}

/// The one running instance not in `known`, once there is exactly one other than those.
async fn next_launch(ec2: &aws_sdk_ec2::Client, what: &str, known: &[Instance]) -> Instance {
    wait_for(what, Duration::from_secs(90), async || {
        let new: Vec<Instance> = running(ec2)
            .await
            .into_iter()
            .filter(|i| !known.contains(i))
            .collect();
        (new.len() == 1).then(|| new[0].clone())
    })
    .await
}

#[allow(
    dead_code,
    reason = "the shared harness: this binary uses its CRD and clean-up steps"
)]
mod ctl {
    use super::*;
    include!("support/ctl.rs");
}
use ctl::{
    apply_crds, claim_when, clean_cluster, create_namespace, register_node, unschedulable_pod,
    wait_for,
};

/// What every version of each claim showed: (Interrupted reason, message) and the
/// disruption-reason annotation, from a watch (a claim is marked and removed
/// within one pass, too fast to poll).
#[derive(Default, Debug, Clone)]
struct Seen {
    interrupted: Option<(String, String)>,
    annotation: Option<String>,
}

fn watch_claims(
    client: &kube::Client,
) -> (
    Arc<Mutex<std::collections::HashMap<String, Seen>>>,
    tokio::task::JoinHandle<()>,
) {
    let seen = Arc::new(Mutex::new(std::collections::HashMap::<String, Seen>::new()));
    let api: Api<NodeClaim> = Api::all(client.clone());
    let s = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        let mut w = std::pin::pin!(watcher(api, watcher::Config::default()));
        while let Some(ev) = w.next().await {
            let objs = match ev {
                Ok(watcher::Event::Apply(c)) | Ok(watcher::Event::InitApply(c)) => vec![c],
                _ => continue,
            };
            for c in objs {
                let name = c.metadata.name.clone().unwrap_or_default();
                let mut m = s.lock().unwrap();
                let e: &mut Seen = m.entry(name).or_default();
                if let Some(cond) = c
                    .status
                    .as_ref()
                    .and_then(|st| st.conditions.iter().find(|x| x.type_ == "Interrupted"))
                    && cond.status == "True"
                {
                    e.interrupted = Some((cond.reason.clone(), cond.message.clone()));
                }
                if let Some(a) = c
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("nodewright.io/disruption-reason"))
                {
                    e.annotation = Some(a.clone());
                }
            }
        }
    });
    (seen, task)
}

async fn claim_gone(client: &kube::Client, name: &str) {
    let api: Api<NodeClaim> = Api::all(client.clone());
    wait_for(
        &format!("claim {name} to be removed"),
        Duration::from_secs(60),
        async || match api.get_opt(name).await {
            Ok(None) => Some(()),
            _ => None,
        },
    )
    .await;
}

async fn send(sqs: &aws_sdk_sqs::Client, url: &str, body: String) {
    sqs.send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .expect("SendMessage");
}

fn metric(text: &str, kind: &str, outcome: &str) -> f64 {
    let prefix = "nodewright_interruption_messages_total{";
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter(|l| {
            l.contains(&format!("kind=\"{kind}\"")) && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

async fn queue_empty(sqs: &aws_sdk_sqs::Client, url: &str) -> bool {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("GetQueueAttributes");
    let attrs = out.attributes().cloned().unwrap_or_default();
    let n = |a: A| {
        attrs
            .get(&a)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    };
    n(A::ApproximateNumberOfMessages) == 0 && n(A::ApproximateNumberOfMessagesNotVisible) == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interruption_messages_replace_the_node_and_leave_the_queue_empty() {
    let moto = support::moto().await;
    let kube = kube_support::kube_exclusive().await;
    let ec2 = moto.ec2().await;
    world::setup(&ec2).await;
    world::node_role(&moto.settings()).await;
    let client = kube.client().await;
    apply_crds(&client).await;
    clean_cluster(&client).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("general.policy"), POLICY).expect("policy");

    // The queue, on moto's endpoint (SQS and EC2 share it).
    let aws = nodewright::cloud::ec2::load(&moto.settings()).await;
    let sqs = nodewright::cloud::ec2::sqs(&aws);
    let url = sqs
        .create_queue()
        .queue_name(QUEUE)
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("queue URL");

    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(
                std::env::var("NODEWRIGHT_LOG").unwrap_or_else(|_| "nodewright=info".into()),
            )
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
    create_namespace(&client, "intr").await;
    unschedulable_pod(&client, "intr", "web-0", "1", "2Gi").await;
    let mut opts = Options::new(
        vec![dir.path().to_path_buf()],
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
    opts.registration_ttl = Duration::from_secs(600);
    opts.metrics_addr = Some("127.0.0.1:0".parse().expect("addr"));
    // By name: the controller looks its URL up (sqs:GetQueueUrl).
    opts.interruption_queue = Some(QUEUE.into());
    let catalog = Arc::new(nodewright::catalog::Catalog::embedded().expect("catalog"));
    let controller = Controller::new(opts, catalog).await.expect("starts");
    let addr = controller.metrics_addr().expect("metrics");
    let (stop, rx) = tokio::sync::watch::channel(false);
    let run_client = client.clone();
    let task = tokio::spawn(async move {
        controller.run(run_client, rx).await.expect("runs");
    });
    let (seen, watch_task) = watch_claims(&client);

    // 1. The pending pod gets a spot node.
    let first = next_launch(&ec2, "the first launch", &[]).await;
    let (id1, ty1, claim1, zone1) = first.clone();
    // Its kubelet registers the Node (not Ready: nothing removes it as empty).
    register_node(&client, "node-1", &id1, &zone1, serde_json::json!({})).await;
    claim_when(&client, &claim1, "the claim registered", |c| {
        c.status.as_ref().and_then(|s| s.node_name.as_deref()) == Some("node-1")
    })
    .await;

    // 2. Messages that change nothing: malformed, not ours, a rebalance
    //    recommendation (logged only), a running instance's state change.
    send(&sqs, &url, "this is not json".into()).await;
    send(
        &sqs,
        &url,
        fixture_body("malformed/spot_without_instance.json", &id1),
    )
    .await;
    send(
        &sqs,
        &url,
        fixture_body("spot_interruption.json", "i-00000000000000000"),
    )
    .await;
    send(
        &sqs,
        &url,
        fixture_body("rebalance_recommendation.json", &id1),
    )
    .await;
    send(&sqs, &url, fixture_body("state_change_running.json", &id1)).await;
    let m = wait_for(
        "the first five messages counted",
        Duration::from_secs(60),
        async || {
            let (_, text) = support::http(addr.port(), "GET", "/metrics", "").ok()?;
            (metric(&text, "malformed", "malformed") >= 2.0
                && metric(&text, "spot_interruption", "not_ours") >= 1.0
                && metric(&text, "rebalance_recommendation", "ignored") >= 1.0
                && metric(&text, "state_change", "ignored") >= 1.0)
                .then_some(text)
        },
    )
    .await;
    assert_eq!(metric(&m, "malformed", "malformed"), 2.0, "{m}");
    wait_for("the queue to empty", Duration::from_secs(30), async || {
        queue_empty(&sqs, &url).await.then_some(())
    })
    .await;
    assert_eq!(
        running(&ec2).await,
        std::slice::from_ref(&first),
        "nothing was removed"
    );
    assert!(
        seen.lock()
            .unwrap()
            .get(&claim1)
            .is_none_or(|s| s.interrupted.is_none())
    );

    // 3. A spot interruption warning: the claim is marked and removed, its
    //    instance terminated, and the pod's replacement avoids the offering.
    send(&sqs, &url, fixture_body("spot_interruption.json", &id1)).await;
    claim_gone(&client, &claim1).await;
    let s = seen
        .lock()
        .unwrap()
        .get(&claim1)
        .cloned()
        .unwrap_or_default();
    let (reason, message) = s.interrupted.expect("claim marked Interrupted");
    assert_eq!(reason, "SpotInterruption");
    assert!(message.contains(&id1), "{message}");
    assert_eq!(s.annotation.as_deref(), Some("interrupted"));
    for kind in ["NodeClaim", "Node"] {
        let name = if kind == "Node" { "node-1" } else { &claim1 };
        let note = interruption_event(&client, kind, name, "SpotInterruption").await;
        assert!(
            note.contains(&id1) && note.contains("before 1970-01-01T00:02:00Z"),
            "the Event on the {kind} names the instance and the deadline: {note}"
        );
    }
    let second = next_launch(&ec2, "the replacement", std::slice::from_ref(&first)).await;
    let (id2, ty2, claim2, zone2) = second.clone();
    assert_ne!(
        (ty2.as_str(), zone2.as_str()),
        (ty1.as_str(), zone1.as_str()),
        "the interrupted spot offering is unavailable for the replacement"
    );
    wait_for(
        "the first instance terminated",
        Duration::from_secs(60),
        async || (!running(&ec2).await.iter().any(|i| i.0 == id1)).then_some(()),
    )
    .await;

    // 4. A scheduled change (AWS Health): the same.
    send(&sqs, &url, fixture_body("scheduled_change.json", &id2)).await;
    claim_gone(&client, &claim2).await;
    let s = seen
        .lock()
        .unwrap()
        .get(&claim2)
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        s.interrupted.map(|x| x.0).as_deref(),
        Some("ScheduledChange")
    );
    assert_eq!(s.annotation.as_deref(), Some("interrupted"));
    let note = interruption_event(&client, "NodeClaim", &claim2, "ScheduledChange").await;
    assert!(
        note.contains(&id2)
            && note.contains("AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED")
            && note.contains("before Sat, 05 Jun 2023 15:10:09 GMT"),
        "{note}"
    );
    let third = next_launch(
        &ec2,
        "the second replacement",
        &[first.clone(), second.clone()],
    )
    .await;
    let (id3, _, claim3, _) = third.clone();

    // 5. A state change to terminated: the claim goes, reason `gone`.
    send(
        &sqs,
        &url,
        fixture_body("state_change_terminated.json", &id3),
    )
    .await;
    claim_gone(&client, &claim3).await;
    let s = seen
        .lock()
        .unwrap()
        .get(&claim3)
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        s.interrupted.map(|x| x.0).as_deref(),
        Some("InstanceStateChange")
    );
    assert_eq!(s.annotation.as_deref(), Some("gone"));

    // 6. Every message handled is gone from the queue, and counted.
    wait_for("the queue to empty", Duration::from_secs(30), async || {
        queue_empty(&sqs, &url).await.then_some(())
    })
    .await;
    let (_, text) = support::http(addr.port(), "GET", "/metrics", "").expect("metrics");
    for (kind, outcome, n) in [
        ("spot_interruption", "handled", 1.0),
        ("scheduled_change", "handled", 1.0),
        ("state_change", "handled", 1.0),
        ("malformed", "malformed", 2.0),
        ("spot_interruption", "not_ours", 1.0),
    ] {
        assert_eq!(metric(&text, kind, outcome), n, "{kind} {outcome}:\n{text}");
    }

    stop.send(true).expect("stop");
    let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    watch_task.abort();
    drop(kube);
    drop(moto);
}

/// The note of the Warning Event `reason` published on the `kind` named `name`.
async fn interruption_event(client: &kube::Client, kind: &str, name: &str, reason: &str) -> String {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(client.clone());
    wait_for(
        "the interruption's Event",
        Duration::from_secs(30),
        async || {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find_map(|e| {
                let r = e.regarding.as_ref()?;
                (r.kind.as_deref() == Some(kind)
                    && r.name.as_deref() == Some(name)
                    && e.reason.as_deref() == Some(reason)
                    && e.type_.as_deref() == Some("Warning"))
                .then(|| e.note.unwrap_or_default())
            })
        },
    )
    .await
}

/// A follower leaves the queue alone: a message stays visible, unreceived,
/// until this replica holds the lease; then it is handled (here: deleted as
/// malformed) at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_receives() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    const LEASE: &str = "intr-lease";
    let moto = support::moto().await;
    let kube = kube_support::kube_exclusive().await;
    let ec2 = moto.ec2().await;
    world::setup(&ec2).await;
    world::node_role(&moto.settings()).await;
    let client = kube.client().await;
    apply_crds(&client).await;
    clean_cluster(&client).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("general.policy"), POLICY).expect("policy");
    let aws = nodewright::cloud::ec2::load(&moto.settings()).await;
    let sqs = nodewright::cloud::ec2::sqs(&aws);
    let url = sqs
        .create_queue()
        .queue_name("intr-follower")
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("queue URL");

    // Another replica holds the lease.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let _ = leases.delete(LEASE, &DeleteParams::default()).await;
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "metadata": {"name": LEASE},
        "spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 600,
            "renewTime": MicroTime(k8s_openapi::jiff::Timestamp::now())}
    }))
    .expect("lease");
    leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("create the lease");

    let mut opts = Options::new(
        vec![dir.path().to_path_buf()],
        nodewright::cloud::userdata::ClusterInfo {
            name: CLUSTER.into(),
            endpoint: kube.server.clone(),
            ca_bundle: String::new(),
            service_cidr: "10.0.0.0/24".into(),
        },
        moto.settings(),
    );
    opts.resync = Duration::from_millis(500);
    opts.metrics_addr = Some("127.0.0.1:0".parse().expect("addr"));
    // By URL this time.
    opts.interruption_queue = Some(url.clone());
    let mut leader = nodewright::controller::leader::LeaderOptions::new(
        LEASE.into(),
        "default".into(),
        "replica-a".into(),
    );
    leader.lease_duration = Duration::from_secs(3);
    leader.renew_every = Duration::from_secs(1);
    leader.retry = Duration::from_millis(500);
    opts.leader = Some(leader);
    let catalog = Arc::new(nodewright::catalog::Catalog::embedded().expect("catalog"));
    let controller = Controller::new(opts, catalog).await.expect("starts");
    let addr = controller.metrics_addr().expect("metrics");
    let (stop, rx) = tokio::sync::watch::channel(false);
    let run_client = client.clone();
    let task = tokio::spawn(async move {
        controller.run(run_client, rx).await.expect("runs");
    });
    let metrics = || {
        let (_, text) = support::http(addr.port(), "GET", "/metrics", "").expect("metrics");
        text
    };
    wait_for(
        "the follower's first metrics",
        Duration::from_secs(30),
        async || {
            metrics()
                .contains("nodewright_controller_leader 0")
                .then_some(())
        },
    )
    .await;

    send(&sqs, &url, "not an event".into()).await;
    // Long enough for a receiving task to have taken it (it looks every second).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let visible = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                .cloned()
        });
    assert_eq!(
        visible.as_deref(),
        Some("1"),
        "a follower received the message"
    );
    assert_eq!(metric(&metrics(), "malformed", "malformed"), 0.0);

    // The other replica gives the lease up: this one leads and handles the message.
    let free = serde_json::json!({"spec": {"holderIdentity": null, "renewTime": null,
        "acquireTime": null, "leaseDurationSeconds": null}});
    leases
        .patch(LEASE, &PatchParams::default(), &Patch::Merge(&free))
        .await
        .expect("release the lease");
    wait_for(
        "the leader to delete the message",
        Duration::from_secs(60),
        async || {
            (metric(&metrics(), "malformed", "malformed") == 1.0 && queue_empty(&sqs, &url).await)
                .then_some(())
        },
    )
    .await;

    stop.send(true).expect("stop");
    let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    drop(kube);
    drop(moto);
}
