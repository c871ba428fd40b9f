//! Consolidation decided by the controller from the live cluster: a real
//! kube-apiserver and etcd, moto's EC2, and the controller in this process.
//!
//! Two nodes are launched (two pods that must not share a node), registered
//! and made Ready as their kubelets would, and given bound pods; the test
//! plays the kubelet (finishing the pods an eviction deleted). Consolidation
//! then removes the node whose pods fit on the other, through the
//! termination flow, unless a do-not-disrupt pod or a PodDisruptionBudget
//! that allows no eviction keeps it.
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
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use nodewright::cloud::tags::{TAG_CLAIM, TAG_CLUSTER};
use nodewright::controller::nodeclaim::NodeClaim;
use nodewright::controller::run::{Controller, Options};
use nodewright::reload::WatchOptions;

const CLUSTER: &str = "ctl-test";

/// One m5 on-demand pool that consolidates underutilized nodes 3 s after their last change.
const POLICY: &str = r#"pool general {
  require karpenter.sh/capacity-type in [on-demand]
  require karpenter.k8s.aws/instance-family in [m5]
  node-class default
  disruption {
    consolidate when-empty-or-underutilized after 3s
    budget 100%
  }
}

node-class default {
  ami where tag karpenter.sh/discovery = "demo"
  subnets where tag karpenter.sh/discovery = "demo"
  security-groups where tag karpenter.sh/discovery = "demo"
  role "KarpenterNodeRole-demo"
}
"#;

#[allow(
    dead_code,
    reason = "the shared harness: each test binary uses a part of it"
)]
mod ctl {
    use super::*;
    include!("support/ctl.rs");
}
use ctl::*;

/// The controller, deciding consolidation every second (the default is 10 s).
async fn controller(
    f: &Fixture,
) -> (
    std::net::SocketAddr,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    configmap_publish(f.dir.path(), 1, POLICY);
    start_with(
        &f.moto,
        &f.kube,
        f.dir.path(),
        Duration::from_secs(600),
        |o| o.consolidation_interval = Duration::from_secs(1),
    )
    .await
}

/// A pending pod the scheduler gave up on, which shares no node with another `seed`.
async fn seed(client: &kube::Client, ns: &str, name: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "seed"}},
        "spec": {
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}],
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {"app": "seed"}},
                "topologyKey": "kubernetes.io/hostname"}]}}
        }
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create seed");
    let status = serde_json::json!({"status": {"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/0 nodes are available"}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("mark unschedulable");
}

/// A pod bound to `node` (as if scheduled), Running and Ready; `extra` is merged in.
async fn bound_pod(
    client: &kube::Client,
    ns: &str,
    name: &str,
    node: &str,
    cpu: &str,
    extra: serde_json::Value,
) {
    let mut v = serde_json::json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": cpu, "memory": "256Mi"}}}]}
    });
    merge(&mut v, extra);
    let pod: Pod = serde_json::from_value(v).expect("pod");
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("create pod {name}: {e}"));
    let status = serde_json::json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True"}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
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

/// Two launched instances, registered as `node-a` and `node-b` with
/// `pods[i]` = (name, cpu, extra) bound to each, Ready, their claims
/// Initialized. Returns the instances in node order.
async fn two_nodes(
    f: &Fixture,
    ns: &str,
    pods: [&[(&str, &str, serde_json::Value)]; 2],
) -> [Instance; 2] {
    seed(&f.client, ns, "seed-1").await;
    seed(&f.client, ns, "seed-2").await;
    let launched = wait_for("two launches", Duration::from_secs(60), async || {
        // A fleet's instances are tagged with their claims just after CreateFleet.
        let v = instances(&f.ec2, &["pending", "running"]).await;
        (v.len() >= 2 && v.iter().all(|i| !i.2.is_empty())).then_some(v)
    })
    .await;
    assert_eq!(launched.len(), 2, "one node per seed: {launched:?}");
    let api: Api<Pod> = Api::namespaced(f.client.clone(), ns);
    for s in ["seed-1", "seed-2"] {
        api.delete(s, &DeleteParams::default().grace_period(0))
            .await
            .expect("delete seed");
    }
    for ((node, inst), pods) in ["node-a", "node-b"].iter().zip(&launched).zip(pods) {
        register_node(&f.client, node, &inst.0, &inst.3, serde_json::json!({})).await;
        for (name, cpu, extra) in pods {
            bound_pod(&f.client, ns, name, node, cpu, extra.clone()).await;
        }
        // Ready only once the controller adopted the Node: its registration patch
        // writes the Node's taints whole, and would bring back the not-ready taint.
        claim_when(&f.client, &inst.2, "the claim registered", |c| {
            condition(c, "Registered").is_some_and(|(s, _, _)| s == "True")
        })
        .await;
        node_ready(&f.client, node).await;
    }
    for inst in &launched {
        claim_when(&f.client, &inst.2, "the claim initialized", |c| {
            condition(c, "Initialized").is_some_and(|(s, _, _)| s == "True")
        })
        .await;
    }
    [launched[0].clone(), launched[1].clone()]
}

/// The kubelet's part: a pod an eviction deleted finishes at once.
fn kubelet(client: &kube::Client, ns: &str) -> tokio::task::JoinHandle<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    tokio::spawn(async move {
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
    })
}

fn reason(c: &NodeClaim) -> Option<&str> {
    c.metadata
        .annotations
        .as_ref()?
        .get("nodewright.io/disruption-reason")
        .map(String::as_str)
}

/// The first claim consolidation hands to termination (being deleted, reason `underutilized`).
async fn consolidated(client: &kube::Client) -> NodeClaim {
    wait_for(
        "a claim consolidated",
        Duration::from_secs(60),
        async || {
            claims(client).await.into_iter().find(|c| {
                c.metadata.deletion_timestamp.is_some() && reason(c) == Some("underutilized")
            })
        },
    )
    .await
}

/// The pod exists and is being deleted (evicted; no kubelet finished it yet).
async fn evicted(client: &kube::Client, ns: &str, name: &str) -> bool {
    Api::<Pod>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .expect("get pod")
        .is_some_and(|p| p.metadata.deletion_timestamp.is_some())
}

async fn terminated(ec2: &aws_sdk_ec2::Client, id: &str) {
    wait_for(
        "the consolidated instance terminated",
        Duration::from_secs(60),
        async || {
            let gone = instances(ec2, &["shutting-down", "terminated"]).await;
            gone.iter().any(|i| i.0 == id).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_underutilized_node_is_consolidated_once_its_pods_fit_elsewhere() {
    const NS: &str = "live";
    let f = fixture(NS).await;
    let (addr, stop, task) = controller(&f).await;
    // Each node reports 8 CPUs; 6 are used on each: neither node's pods fit on the other.
    let none = serde_json::json!({});
    let [a, b] = two_nodes(
        &f,
        NS,
        [
            &[("a-1", "3", none.clone()), ("a-2", "3", none.clone())],
            &[("b-1", "3", none.clone()), ("b-2", "3", none.clone())],
        ],
    )
    .await;
    // Several decisions (every second, 3 s after each node's last change): no move.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let cs = claims(&f.client).await;
    assert_eq!(cs.len(), 2, "{cs:?}");
    assert!(
        cs.iter().all(|c| c.metadata.deletion_timestamp.is_none()),
        "a full cluster is not consolidated: {cs:?}"
    );

    // Half the pods go: each claim records the change; then one node's pod fits on the other.
    let api: Api<Pod> = Api::namespaced(f.client.clone(), NS);
    for p in ["a-2", "b-2"] {
        api.delete(p, &DeleteParams::default().grace_period(0))
            .await
            .expect("delete pod");
    }
    for inst in [&a, &b] {
        let c = claim_when(&f.client, &inst.2, "lastPodEventTime written", |c| {
            c.status
                .as_ref()
                .is_some_and(|s| s.last_pod_event_time.is_some())
        })
        .await;
        let t = c.status.unwrap().last_pod_event_time.unwrap().0;
        let created = c.metadata.creation_timestamp.unwrap().0;
        assert!(t > created, "written after the pod left: {t} vs {created}");
    }
    let gone = consolidated(&f.client).await;
    let gone_name = gone.metadata.name.clone().unwrap();
    let (old, stays, pod) = if gone_name == a.2 {
        (a, b, "a-1")
    } else {
        (b, a, "b-1")
    };
    // Drained through the Eviction API: the pod is being deleted, the kubelet finishes it.
    wait_for("the pod evicted", Duration::from_secs(30), async || {
        evicted(&f.client, NS, pod).await.then_some(())
    })
    .await;
    let kubelet = kubelet(&f.client, NS);
    terminated(&f.ec2, &old.0).await;
    wait_for("the claim gone", Duration::from_secs(30), async || {
        (!claims(&f.client)
            .await
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some(old.2.as_str())))
        .then_some(())
    })
    .await;
    let left = claims(&f.client).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].metadata.name.as_deref(), Some(stays.2.as_str()));
    assert!(left[0].metadata.deletion_timestamp.is_none());
    let running = instances(&f.ec2, &["pending", "running"]).await;
    assert_eq!(
        running,
        [stays],
        "no replacement: the pod fits on the node that stays"
    );
    assert!(logged("is underutilized"), "the move is logged");
    let m = metrics(addr).await;
    assert_eq!(
        metric(
            &m,
            "nodewright_controller_disruptions_total{reason=\"underutilized\"}"
        ),
        Some(1.0),
        "{m}"
    );
    kubelet.abort();
    let _ = stop.send(true);
    task.await.expect("controller stops cleanly");
}

/// What keeps node-a's only pod where it is.
enum Guard {
    DoNotDisrupt,
    Pdb,
}

/// node-a holds one small pod, node-b two: without a guard node-a would go
/// (fewest pods to move). With `guard` on node-a's pod, node-b goes instead
/// (its pods fit on node-a) and node-a stays, with the reason logged.
async fn guarded_node_stays(ns: &str, guard: Guard) {
    let f = fixture(ns).await;
    let (_addr, stop, task) = controller(&f).await;
    let extra = match guard {
        Guard::DoNotDisrupt => {
            serde_json::json!({"metadata": {"annotations": {"karpenter.sh/do-not-disrupt": "true"}}})
        }
        Guard::Pdb => {
            let obj: PodDisruptionBudget = serde_json::from_value(serde_json::json!({
                "metadata": {"name": "a-1"},
                "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "a-1"}}}
            }))
            .expect("pdb");
            Api::<PodDisruptionBudget>::namespaced(f.client.clone(), ns)
                .create(&PostParams::default(), &obj)
                .await
                .expect("create pdb");
            serde_json::json!({})
        }
    };
    let none = serde_json::json!({});
    let [a, b] = two_nodes(
        &f,
        ns,
        [
            &[("a-1", "500m", extra)],
            &[("b-1", "500m", none.clone()), ("b-2", "500m", none.clone())],
        ],
    )
    .await;
    let gone = consolidated(&f.client).await;
    assert_eq!(
        gone.metadata.name.as_deref(),
        Some(b.2.as_str()),
        "node-b goes, node-a is kept by its pod"
    );
    let why = match guard {
        Guard::DoNotDisrupt => {
            format!("consolidation: node node-a stays: do-not-disrupt: pod {ns}/a-1")
        }
        Guard::Pdb => format!("consolidation: node node-a stays: PodDisruptionBudget {ns}/a-1"),
    };
    wait_for("the reason logged", Duration::from_secs(10), async || {
        logged(&why).then_some(())
    })
    .await;
    let kubelet = kubelet(&f.client, ns);
    terminated(&f.ec2, &b.0).await;
    // node-a, alone now and still guarded, stays through several more decisions.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let left = claims(&f.client).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].metadata.name.as_deref(), Some(a.2.as_str()));
    assert!(left[0].metadata.deletion_timestamp.is_none());
    assert!(
        !evicted(&f.client, ns, "a-1").await,
        "the guarded pod was never evicted"
    );
    kubelet.abort();
    let _ = stop.send(true);
    task.await.expect("controller stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_do_not_disrupt_pod_blocks_consolidation_of_its_node() {
    guarded_node_stays("live-dnd", Guard::DoNotDisrupt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdb_that_allows_no_eviction_blocks_consolidation_of_its_node() {
    guarded_node_stays("live-pdb", Guard::Pdb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_node_is_replaced_by_a_cheaper_one_first_then_drained() {
    const NS: &str = "live-replace";
    let f = fixture(NS).await;
    let (addr, stop, task) = controller(&f).await;
    // A 6-CPU pod gets an m5.2xlarge; it leaves, and a small pod is all the node holds.
    unschedulable_pod(&f.client, NS, "big", "6", "8Gi").await;
    let old = wait_for("the launch", Duration::from_secs(60), async || {
        let v = instances(&f.ec2, &["pending", "running"]).await;
        (v.len() == 1 && !v[0].2.is_empty()).then(|| v[0].clone())
    })
    .await;
    assert_eq!(old.1, "m5.2xlarge", "{old:?}");
    let api: Api<Pod> = Api::namespaced(f.client.clone(), NS);
    api.delete("big", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete big");
    register_node(&f.client, "node-big", &old.0, &old.3, serde_json::json!({})).await;
    bound_pod(
        &f.client,
        NS,
        "small",
        "node-big",
        "500m",
        serde_json::json!({}),
    )
    .await;
    claim_when(&f.client, &old.2, "the claim registered", |c| {
        condition(c, "Registered").is_some_and(|(s, _, _)| s == "True")
    })
    .await;
    node_ready(&f.client, "node-big").await;

    // The replacement is launched first; the old node waits for it.
    let new = wait_for("the replacement", Duration::from_secs(60), async || {
        let v = instances(&f.ec2, &["pending", "running"]).await;
        v.into_iter().find(|i| i.0 != old.0 && !i.2.is_empty())
    })
    .await;
    assert_eq!(
        new.1, "m5.large",
        "the cheapest type that holds the pod: {new:?}"
    );
    let marked = claim_when(&f.client, &old.2, "the old claim names it", |c| {
        c.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("nodewright.io/replacing"))
    })
    .await;
    let a = marked.metadata.annotations.as_ref().unwrap();
    assert_eq!(a["nodewright.io/replacing"], new.2);
    assert_eq!(a["nodewright.io/replacing-reason"], "underutilized");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !evicted(&f.client, NS, "small").await,
        "nothing is drained before the replacement is initialized"
    );
    let cs = claims(&f.client).await;
    assert!(
        cs.iter()
            .any(|c| c.metadata.name.as_deref() == Some(old.2.as_str())
                && c.metadata.deletion_timestamp.is_none()),
        "{cs:?}"
    );

    // Its kubelet registers the replacement: the old node is drained and goes.
    register_node(&f.client, "node-new", &new.0, &new.3, serde_json::json!({})).await;
    claim_when(&f.client, &new.2, "the replacement registered", |c| {
        condition(c, "Registered").is_some_and(|(s, _, _)| s == "True")
    })
    .await;
    node_ready(&f.client, "node-new").await;
    let gone = consolidated(&f.client).await;
    assert_eq!(gone.metadata.name.as_deref(), Some(old.2.as_str()));
    wait_for("the pod evicted", Duration::from_secs(30), async || {
        evicted(&f.client, NS, "small").await.then_some(())
    })
    .await;
    let kubelet = kubelet(&f.client, NS);
    terminated(&f.ec2, &old.0).await;
    let running = instances(&f.ec2, &["pending", "running"]).await;
    assert_eq!(running, [new], "the replacement stays");
    let m = metrics(addr).await;
    assert_eq!(
        metric(
            &m,
            "nodewright_controller_disruptions_total{reason=\"underutilized\"}"
        ),
        Some(1.0),
        "{m}"
    );
    kubelet.abort();
    let _ = stop.send(true);
    task.await.expect("controller stops cleanly");
}
