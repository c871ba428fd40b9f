//! Disruption end to end: a real kube-apiserver and etcd, moto's EC2, and the
//! controller in this process. Drift and expiry replace a node first (the
//! test registers the replacement's Node as its kubelet would) and only then
//! hand the old claim to termination; budgets hold drift; empty nodes go.
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
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use nodewright::cloud::tags::{TAG_CLAIM, TAG_CLUSTER};
use nodewright::controller::nodeclaim::NodeClaim;
use nodewright::controller::run::{Controller, Options};
use nodewright::reload::WatchOptions;

const CLUSTER: &str = "ctl-test";

/// One m5 on-demand pool labelled `team`, with the given `disruption` body.
fn policy_text(team: &str, disruption: &str) -> String {
    format!(
        r#"pool general {{
  require karpenter.sh/capacity-type in [on-demand]
  require karpenter.k8s.aws/instance-family in [m5]
  label team = "{team}"
  node-class default
  disruption {{
{disruption}
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

#[allow(
    dead_code,
    reason = "the shared harness: each test binary uses a part of it"
)]
mod ctl {
    use super::*;
    include!("support/ctl.rs");
}
use ctl::*;

/// The claim that holds instance `id`, once launched.
async fn claim_of_instance(client: &kube::Client, id: &str) -> NodeClaim {
    wait_for(
        &format!("the claim of {id}"),
        Duration::from_secs(30),
        async || {
            claims(client).await.into_iter().find(|c| {
                c.status
                    .as_ref()
                    .and_then(|s| s.provider_id.as_deref())
                    .is_some_and(|p| p.ends_with(id))
            })
        },
    )
    .await
}

fn is_true(c: &NodeClaim, type_: &str) -> bool {
    condition(c, type_).is_some_and(|(s, _, _)| s == "True")
}

fn annotation<'a>(c: &'a NodeClaim, key: &str) -> Option<&'a str> {
    c.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Registers the Node of `instance` and makes it Ready, as its kubelet would;
/// waits until its claim is Initialized.
async fn kubelet(client: &kube::Client, node: &str, instance: &Instance) {
    register_node(
        client,
        node,
        &instance.0,
        &instance.3,
        serde_json::json!({}),
    )
    .await;
    // Ready only once the controller adopted the Node: its registration patch
    // writes the Node's taints whole, and would bring back the not-ready taint.
    claim_when(client, &instance.2, "the claim registered", |c| {
        is_true(c, "Registered")
    })
    .await;
    node_ready(client, node).await;
    let name = instance.2.clone();
    claim_when(client, &name, "the claim initialized", |c| {
        is_true(c, "Initialized")
    })
    .await;
}

/// A pod, a launch for it, and its Node registered and Ready: the one instance.
async fn one_initialized_node(
    client: &kube::Client,
    ec2: &aws_sdk_ec2::Client,
    ns: &str,
) -> Instance {
    unschedulable_pod(client, ns, "web-0", "1", "2Gi").await;
    let first = first_launch(ec2).await;
    assert_eq!(first.len(), 1, "{first:?}");
    kubelet(client, "node-old", &first[0]).await;
    first[0].clone()
}

/// The instances launched after `known`, and their claims, once there are any.
async fn replacement(ec2: &aws_sdk_ec2::Client, known: &[Instance]) -> Instance {
    let new = new_launches(ec2, "a replacement", Duration::from_secs(60), known).await;
    assert_eq!(new.len(), 1, "one replacement: {new:?}");
    new[0].clone()
}

/// Waits until instance `id` is shutting down or terminated.
async fn instance_terminated(ec2: &aws_sdk_ec2::Client, what: &str, id: &str) {
    wait_for(what, Duration::from_secs(60), async || {
        let gone = instances(ec2, &["shutting-down", "terminated"]).await;
        gone.iter().any(|i| i.0 == id).then_some(())
    })
    .await;
}

/// Waits until claim `name` is gone from the API server.
async fn claim_gone(client: &kube::Client, name: &str) {
    wait_for("the old claim gone", Duration::from_secs(30), async || {
        (!claims(client)
            .await
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some(name)))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drifted_node_is_replaced_first_then_removed() {
    let Fixture {
        moto,
        kube,
        ec2,
        client,
        dir,
    } = fixture("drift").await;
    let keep = "    consolidate when-empty after 1h\n    budget 100%";
    configmap_publish(dir.path(), 1, &policy_text("platform", keep));
    let (addr, stop, task) = start(&moto, &kube, dir.path(), Duration::from_secs(600)).await;
    let old = one_initialized_node(&client, &ec2, "drift").await;
    let c = claim_of_instance(&client, &old.0).await;
    let recorded = annotation(&c, "nodewright.io/pool-hash")
        .expect("a claim records its pool's hash")
        .to_string();
    assert!(condition(&c, "Drifted").is_none(), "not drifted yet");

    // The pool's labels change: the node drifts; a replacement is launched first.
    let reload_lines = || LOG.lock().unwrap().matches("policy v1 -> v2").count();
    let before = reload_lines();
    configmap_publish(dir.path(), 2, &policy_text("web", keep));
    let drifted = claim_when(&client, &old.2, "the Drifted condition", |c| {
        is_true(c, "Drifted")
    })
    .await;
    let (_, reason, _) = condition(&drifted, "Drifted").unwrap();
    assert_eq!(reason, "PoolChanged");
    // The reload's own line says how many nodes it drifts, and it is one line.
    let line = "policy v1 -> v2: pools added none, removed none, changed general; \
                scripts changed none; 1 of 1 nodes drift";
    wait_for(
        "the reload's line with the drift count",
        Duration::from_secs(30),
        async || logged(line).then_some(()),
    )
    .await;
    assert_eq!(reload_lines() - before, 1, "one line per reload");
    let new = replacement(&ec2, std::slice::from_ref(&old)).await;
    assert_eq!(new.1, old.1, "the same offering replaces it");
    let new_claim = claim_of_instance(&client, &new.0).await;
    assert_eq!(
        new_claim.spec.labels.get("team").map(String::as_str),
        Some("web"),
        "shaped by the pool as it is now"
    );
    assert_ne!(
        annotation(&new_claim, "nodewright.io/pool-hash"),
        Some(recorded.as_str())
    );
    let old_claim = claim_when(&client, &old.2, "the old claim names it", |c| {
        annotation(c, "nodewright.io/replacing").is_some()
    })
    .await;
    assert_eq!(
        annotation(&old_claim, "nodewright.io/replacing"),
        Some(new.2.as_str())
    );
    // Until the replacement is Initialized, the old node stays.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        claims(&client)
            .await
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some(old.2.as_str())),
        "the old claim waits for its replacement"
    );
    let running = instances(&ec2, &["pending", "running"]).await;
    assert!(running.iter().any(|i| i.0 == old.0), "{running:?}");

    // The replacement's kubelet registers it: the old claim goes, then its instance.
    kubelet(&client, "node-new", &new).await;
    instance_terminated(&ec2, "the old instance terminated", &old.0).await;
    claim_gone(&client, &old.2).await;
    let m = metrics(addr).await;
    assert_eq!(
        metric(
            &m,
            "nodewright_controller_disruptions_total{reason=\"drifted\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert!(
        metric(&m, "nodewright_controller_cluster_price_per_hour").is_some_and(|p| p > 0.0),
        "{m}"
    );
    let _ = stop.send(true);
    task.await.expect("controller stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_holds_drift_until_it_opens_and_expiry_replaces() {
    let Fixture {
        moto,
        kube,
        ec2,
        client,
        dir,
    } = fixture("budget").await;
    let held = "    consolidate when-empty after 1h\n    budget 0 reasons [drifted]";
    configmap_publish(dir.path(), 1, &policy_text("platform", held));
    let (_addr, stop, task) = start(&moto, &kube, dir.path(), Duration::from_secs(600)).await;
    let old = one_initialized_node(&client, &ec2, "budget").await;

    // Drifted, but the budget for drift is 0: no replacement.
    configmap_publish(dir.path(), 2, &policy_text("web", held));
    claim_when(&client, &old.2, "the Drifted condition", |c| {
        is_true(c, "Drifted")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let running = instances(&ec2, &["pending", "running"]).await;
    assert_eq!(
        running,
        std::slice::from_ref(&old),
        "the budget holds the replacement"
    );

    // A budget window that is closed now does not count: drift proceeds.
    // (It opens at 00:00 on 1 January for a minute.)
    let closed = "    consolidate when-empty after 1h\n    budget 0 schedule \"0 0 1 1 *\" duration 1m reasons [drifted]";
    configmap_publish(dir.path(), 3, &policy_text("web", closed));
    let new = replacement(&ec2, std::slice::from_ref(&old)).await;
    assert_eq!(new.1, old.1);

    // Expiry: the replacement expires after 5s; it is replaced in turn.
    let _ = new;
    let expiring = "    consolidate when-empty after 1h\n    expire-after 5s\n    budget 100%";
    configmap_publish(dir.path(), 4, &policy_text("web", expiring));
    let new_claim = claim_of_instance(&client, &new.0).await;
    let name = new_claim.metadata.name.clone().unwrap();
    kubelet(&client, "node-new", &new).await;
    let known = instances(&ec2, &["pending", "running", "shutting-down", "terminated"]).await;
    let third = replacement(&ec2, &known).await;
    let expired = claim_when(
        &client,
        &name,
        "the expired claim names its replacement",
        |c| annotation(c, "nodewright.io/replacing-reason") == Some("expired"),
    )
    .await;
    assert_eq!(
        annotation(&expired, "nodewright.io/replacing"),
        Some(third.2.as_str())
    );
    let _ = stop.send(true);
    task.await.expect("controller stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_resumes_a_replacement_under_way() {
    let Fixture {
        moto,
        kube,
        ec2,
        client,
        dir,
    } = fixture("restart").await;
    let keep = "    consolidate when-empty after 1h\n    budget 100%";
    configmap_publish(dir.path(), 1, &policy_text("platform", keep));
    let (_, stop, task) = start(&moto, &kube, dir.path(), Duration::from_secs(600)).await;
    let old = one_initialized_node(&client, &ec2, "restart").await;

    // The node drifts; its replacement is launched and recorded on the old claim.
    configmap_publish(dir.path(), 2, &policy_text("web", keep));
    let new = replacement(&ec2, std::slice::from_ref(&old)).await;
    claim_when(&client, &old.2, "the old claim names it", |c| {
        annotation(c, "nodewright.io/replacing") == Some(new.2.as_str())
    })
    .await;

    // The controller stops before the replacement is Initialized; a new one starts.
    let _ = stop.send(true);
    task.await.expect("the first controller stops cleanly");
    let (_, stop, task) = start(&moto, &kube, dir.path(), Duration::from_secs(600)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut want = vec![old.clone(), new.clone()];
    want.sort();
    assert_eq!(
        instances(&ec2, &["pending", "running"]).await,
        want,
        "the new controller waits for the replacement under way, launching no other"
    );
    let c = claims(&client)
        .await
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(old.2.as_str()))
        .expect("the old claim waits for its replacement");
    assert_eq!(
        annotation(&c, "nodewright.io/replacing"),
        Some(new.2.as_str())
    );
    assert!(c.metadata.deletion_timestamp.is_none(), "not drained yet");

    // The replacement's kubelet registers it: the new controller finishes the
    // replacement, and only it (no second replacement).
    kubelet(&client, "node-new", &new).await;
    instance_terminated(&ec2, "the old instance terminated", &old.0).await;
    claim_gone(&client, &old.2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        instances(&ec2, &["pending", "running"]).await,
        std::slice::from_ref(&new),
        "one replacement, launched once"
    );
    let _ = stop.send(true);
    task.await.expect("controller stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_node_is_removed_directly() {
    let Fixture {
        moto,
        kube,
        ec2,
        client,
        dir,
    } = fixture("empty").await;
    let empty = "    consolidate when-empty after 1s\n    budget 100%";
    configmap_publish(dir.path(), 1, &policy_text("platform", empty));
    let (addr, stop, task) = start(&moto, &kube, dir.path(), Duration::from_secs(600)).await;
    let old = one_initialized_node(&client, &ec2, "empty").await;
    Api::<Pod>::namespaced(client.clone(), "empty")
        .delete("web-0", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete the pod");
    instance_terminated(&ec2, "the empty instance terminated", &old.0).await;
    let running = instances(&ec2, &["pending", "running"]).await;
    assert!(
        running.is_empty(),
        "no replacement for an empty node: {running:?}"
    );
    // Counted once the termination is done (the Node deleted after the instance).
    wait_for(
        "the empty removal counted",
        Duration::from_secs(30),
        async || {
            let m = metrics(addr).await;
            metric(
                &m,
                "nodewright_controller_disruptions_total{reason=\"empty\"}",
            )
            .filter(|v| *v >= 1.0)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = metrics(addr).await;
    assert_eq!(
        metric(
            &m,
            "nodewright_controller_disruptions_total{reason=\"empty\"}"
        ),
        Some(1.0),
        "counted once: {m}"
    );
    let _ = stop.send(true);
    task.await.expect("controller stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_its_pool_no_longer_admits_is_re_planned_onto_what_it_admits() {
    let Fixture {
        moto,
        kube,
        ec2,
        client,
        dir,
    } = fixture("replan").await;
    let keep = "    consolidate when-empty after 1h\n    budget 100%";
    configmap_publish(dir.path(), 1, &policy_text("platform", keep));
    let (_addr, stop, task) = start(&moto, &kube, dir.path(), Duration::from_secs(600)).await;
    let old = one_initialized_node(&client, &ec2, "replan").await;
    assert!(old.1.starts_with("m5."), "{old:?}");
    // The scheduler's part: the pod runs on the node (a pod bound as created).
    let pods: Api<Pod> = Api::namespaced(client.clone(), "replan");
    pods.delete("web-0", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete the pending pod");
    let bound: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web-1"},
        // No kubelet here to finish an evicted pod: it goes at once.
        "spec": {"nodeName": "node-old", "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c",
            "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &bound)
        .await
        .expect("create the bound pod");
    pods.patch_status(
        "web-1",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": {"phase": "Running"}})),
    )
    .await
    .expect("pod running");

    // The pool now admits c5 only: the m5 node drifts, and the same offering can
    // no longer replace it; its pod is re-planned in the pool, onto a c5.
    let c5 = policy_text("platform", keep).replace(
        "require karpenter.k8s.aws/instance-family in [m5]",
        "require karpenter.k8s.aws/instance-family in [c5]",
    );
    configmap_publish(dir.path(), 2, &c5);
    claim_when(&client, &old.2, "the Drifted condition", |c| {
        is_true(c, "Drifted")
    })
    .await;
    let new = replacement(&ec2, std::slice::from_ref(&old)).await;
    assert!(new.1.starts_with("c5."), "a c5 replaces the m5: {new:?}");
    let old_claim = claim_when(&client, &old.2, "the old claim names it", |c| {
        annotation(c, "nodewright.io/replacing").is_some()
    })
    .await;
    assert_eq!(
        annotation(&old_claim, "nodewright.io/replacing"),
        Some(new.2.as_str())
    );

    // Replacement first: once it is Initialized, the old node goes.
    kubelet(&client, "node-new", &new).await;
    instance_terminated(&ec2, "the old instance terminated", &old.0).await;
    let _ = stop.send(true);
    task.await.expect("controller stops cleanly");
}
