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
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::VolumeAttachment;
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

#[allow(
    dead_code,
    reason = "the shared harness: each test binary uses a part of it"
)]
mod ctl {
    use super::*;
    include!("support/ctl.rs");
}
use ctl::*;

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

/// A PersistentVolume bound to claim `ds-data` and attached to `node`, as
/// the PV controller and a CSI attacher (not running here) would leave it.
async fn ds_volume_attached(client: &kube::Client, node: &str) {
    let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "pv-ds"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "", "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}}
    }))
    .expect("pv");
    let pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "ds-data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": "pv-ds",
            "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .expect("pvc");
    let va: VolumeAttachment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "va-ds"},
        "spec": {"attacher": "ebs.csi.aws.com", "nodeName": node,
            "source": {"persistentVolumeName": "pv-ds"}}
    }))
    .expect("volume attachment");
    let pp = PostParams::default();
    let exists = |r: Result<(), kube::Error>| match r {
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        other => other.expect("create"),
    };
    exists(
        Api::<PersistentVolume>::all(client.clone())
            .create(&pp, &pv)
            .await
            .map(drop),
    );
    exists(
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS)
            .create(&pp, &pvc)
            .await
            .map(drop),
    );
    exists(
        Api::<VolumeAttachment>::all(client.clone())
            .create(&pp, &va)
            .await
            .map(drop),
    );
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

/// The kubelet's part: a pod an eviction deleted finishes at once.
fn kubelet_finishing_evictions(client: &kube::Client) -> tokio::task::JoinHandle<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
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

/// How many times the controllers of this process logged `needle`.
fn times_logged(needle: &str) -> usize {
    LOG.lock().map(|l| l.matches(needle).count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_resumes_a_drain_and_finishes_it_once() {
    let Fixture {
        moto,
        kube,
        ec2,
        client,
        dir,
    } = fixture(NS).await;
    configmap_publish(dir.path(), 1, &policy_text(""));
    let (_, stop, task) = start(&moto, &kube, dir.path(), Duration::from_secs(600)).await;
    let kubelet = kubelet_finishing_evictions(&client);
    let nodes: Api<Node> = Api::all(client.clone());
    let claims: Api<NodeClaim> = Api::all(client.clone());

    // A drain under way, held by a PodDisruptionBudget that allows nothing.
    let (node, id, claim) = launch_one(&client, &ec2, "node-r", serde_json::json!({})).await;
    bound_pod(&client, "held", &node, serde_json::json!({})).await;
    pdb(&client, "held", 0).await;
    claims
        .delete(&claim, &DeleteParams::default())
        .await
        .expect("delete claim");
    let refused = "eviction of pod term/held refused";
    wait_for(
        "the eviction refused",
        Duration::from_secs(30),
        async || (times_logged(refused) > 0).then_some(()),
    )
    .await;
    assert!(tainted(&nodes.get(&node).await.expect("node")));

    // The controller stops mid-drain; a new one starts.
    let _ = stop.send(true);
    task.await.expect("the first controller stops cleanly");
    let refused_before = times_logged(refused);
    let running_at_restart = instances(&ec2, &["pending", "running"]).await;
    let (addr, stop, task) = start(&moto, &kube, dir.path(), Duration::from_secs(600)).await;

    // It resumes: the eviction is tried again, and refused again; the node
    // stays tainted, the pod and the instance stay.
    wait_for(
        "the new controller retrying the eviction",
        Duration::from_secs(30),
        async || (times_logged(refused) > refused_before).then_some(()),
    )
    .await;
    let n = nodes
        .get(&node)
        .await
        .expect("the node stays while the drain waits");
    let disrupted_taints = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map_or(0, |ts| {
            ts.iter()
                .filter(|t| t.key == "nodewright.io/disrupted")
                .count()
        });
    assert_eq!(disrupted_taints, 1, "tainted once: {:?}", n.spec);
    assert_eq!(pod_state(&client, "held").await, Some(false));
    assert!(claims.get_opt(&claim).await.expect("get").is_some());
    assert!(
        instances(&ec2, &["pending", "running"])
            .await
            .iter()
            .any(|i| i.0 == id),
        "the instance runs while the drain waits"
    );

    // Relaxed, the drain finishes: pod evicted, instance terminated, Node
    // deleted, finalizer released.
    pdb(&client, "held", 1).await;
    gone(&client, "the drained node removed", &node, &claim).await;
    assert_eq!(pod_state(&client, "held").await, None, "held was evicted");
    assert!(
        !instances(&ec2, &["pending", "running"])
            .await
            .iter()
            .any(|i| i.0 == id),
        "{id} terminated"
    );
    // Exactly once: one start of termination, one taint, one eviction, one end.
    assert_eq!(
        times_logged(&format!("claim {claim}: termination begins")),
        1
    );
    assert_eq!(
        times_logged(&format!("node {node} tainted nodewright.io/disrupted")),
        1
    );
    assert_eq!(times_logged("evicted pod term/held"), 1);
    assert_eq!(times_logged(&format!("claim {claim} terminated")), 1);
    // The new controller launched nothing (the claim was not relaunched).
    let now = instances(&ec2, &["pending", "running"]).await;
    assert!(
        now.iter().all(|i| running_at_restart.contains(i)),
        "{now:?} vs {running_at_restart:?}"
    );
    assert_eq!(
        metric(
            &metrics(addr).await,
            "nodewright_controller_pass_failures_total"
        )
        .unwrap_or(0.0),
        0.0
    );

    kubelet.abort();
    let _ = stop.send(true);
    task.await.expect("controller stops cleanly");
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
    let kubelet = kubelet_finishing_evictions(&client);
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
    // The DaemonSet pod keeps its volume attached while it runs: that
    // VolumeAttachment does not hold the node (no grace period here).
    ds_volume_attached(&client, &node_a).await;
    bound_pod(
        &client,
        "ds",
        &node_a,
        serde_json::json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1",
            "kind": "DaemonSet", "name": "ds", "uid": "00000000-0000-0000-0000-000000000001",
            "controller": true}]},
            "spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "ds-data"}}]}}),
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
    let vas: Api<VolumeAttachment> = Api::all(client.clone());
    assert!(
        vas.get_opt("va-ds").await.expect("get").is_some(),
        "the DaemonSet's volume stayed attached, and did not hold the node"
    );
    vas.delete("va-ds", &DeleteParams::default())
        .await
        .expect("delete the VolumeAttachment");
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
