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

#[allow(
    dead_code,
    reason = "the shared harness: each test binary uses a part of it"
)]
mod ctl {
    use super::*;
    include!("support/ctl.rs");
}
use ctl::*;

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
    // the NodeClaims and ends it on the same timeout.
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

/// Registers a Node the way a kubelet started with `--register-with-taints` does.
async fn register_tainted_node(
    client: &kube::Client,
    name: &str,
    instance: &str,
    zone: &str,
    taints: serde_json::Value,
) {
    register_node(client, name, instance, zone, serde_json::json!({})).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let spec = serde_json::json!({"spec": {"taints": taints}});
    nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .expect("node taints");
}

/// `kubectl get nodeclaims` (`wide`: `-o wide`), from the Table the API
/// server renders with the CRD's printer columns, laid out as kubectl does.
async fn get_nodeclaims_table(
    client: &kube::Client,
    wide: bool,
) -> (Vec<String>, Vec<Vec<String>>, String) {
    let req = hyper::Request::get("/apis/nodewright.io/v1alpha1/nodeclaims")
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .expect("request");
    let text = client
        .request_text(req)
        .await
        .expect("GET nodeclaims as Table");
    let table: serde_json::Value = serde_json::from_str(&text).expect("Table JSON");
    assert_eq!(table["kind"], "Table", "{text}");
    let cols: Vec<(usize, String)> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .enumerate()
        .filter(|(_, c)| wide || c["priority"].as_i64().unwrap_or(0) == 0)
        .map(|(i, c)| (i, c["name"].as_str().unwrap_or_default().to_string()))
        .collect();
    let rows: Vec<Vec<String>> = table["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            cols.iter()
                .map(|(i, _)| match &r["cells"][*i] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => "<none>".to_string(),
                    v => v.to_string(),
                })
                .collect()
        })
        .collect();
    let headers: Vec<String> = cols.into_iter().map(|(_, n)| n).collect();
    let mut widths: Vec<usize> = headers.iter().map(String::len).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.clone()
                } else {
                    format!("{c:<w$}   ", w = widths[i])
                }
            })
            .collect::<String>()
    };
    let mut out = line(headers.iter().map(|h| h.to_uppercase()).collect());
    for r in &rows {
        out.push('\n');
        out.push_str(&line(r.clone()));
    }
    (headers, rows, out)
}

/// Pools whose nodes start under a startup taint (a CNI or agent lifts it).
fn startup_taint_policy() -> String {
    policy_text("m5").replace(
        "  node-class default\n",
        "  node-class default\n  startup-taint example.com/booting:NoSchedule\n",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodeclaim_is_launched_registered_and_initialized() {
    let Fixture {
        moto,
        kube,
        ec2,
        client,
        dir,
    } = fixture("ml").await;
    std::fs::write(dir.path().join("general.policy"), startup_taint_policy())
        .expect("write policy");
    // 1. Two pending pods: one claim, written before its instance. They exist
    //    before the controller starts, so one pass sees both however slow the
    //    machine (created afterwards, a batch could close between them).
    for i in 0..2 {
        unschedulable_pod(&client, "ml", &format!("train-{i}"), "1", "2Gi").await;
    }
    let (addr, stop, task) = start(&moto, &kube, dir.path(), Duration::from_secs(600)).await;
    let first = first_launch(&ec2).await;
    let names: Vec<Option<String>> = claims(&client)
        .await
        .into_iter()
        .map(|c| c.metadata.name)
        .collect();
    assert_eq!(first.len(), 1, "{first:?}");
    let (id, ty, name, zone) = first[0].clone();
    assert!(
        names.contains(&Some(name.clone())),
        "the NodeClaim exists as soon as its instance does: {names:?}"
    );

    // 2. Launched: the instance is on record.
    let c = claim_when(&client, &name, "Launched", |c| {
        condition(c, "Launched").is_some_and(|x| x.0 == "True")
    })
    .await;
    let s = c.status.clone().expect("status");
    assert_eq!(s.provider_id, Some(format!("aws:///{zone}/{id}")));
    assert_eq!(s.instance_type.as_deref(), Some(ty.as_str()));
    assert_eq!(s.zone.as_deref(), Some(zone.as_str()));
    assert_eq!(s.capacity_type.as_deref(), Some("on-demand"));
    assert!(
        s.image_id.as_deref().is_some_and(|i| i.starts_with("ami-")),
        "{s:?}"
    );
    assert_eq!(c.spec.pool, "general");
    assert_eq!(c.spec.pods, ["ml/train-0", "ml/train-1"]);
    assert_eq!(
        c.spec
            .requirements
            .instance_types
            .first()
            .map(|o| o.name.as_str()),
        Some(ty.as_str())
    );
    assert_eq!(c.spec.startup_taints[0].key, "example.com/booting");
    assert_eq!(
        c.metadata.finalizers,
        Some(vec!["nodewright.io/termination".to_string()])
    );

    // 3. Its Node registers, under the pool's startup taint: adopted.
    let node_name = "ip-10-0-1-17.ec2.internal";
    register_tainted_node(
        &client,
        node_name,
        &id,
        &zone,
        serde_json::json!([{"key": "example.com/booting", "effect": "NoSchedule"}]),
    )
    .await;
    let c = claim_when(&client, &name, "Registered", |c| {
        condition(c, "Registered").is_some_and(|x| x.0 == "True")
    })
    .await;
    assert_eq!(
        c.status.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(node_name)
    );
    let nodes: Api<Node> = Api::all(client.clone());
    let n = nodes.get(node_name).await.expect("node");
    let labels = n.metadata.labels.clone().unwrap_or_default();
    for (k, v) in [
        ("nodewright.io/registered", "true"),
        ("nodewright.io/pool", "general"),
        ("nodewright.io/claim", name.as_str()),
        ("team", "platform"),
        ("node.kubernetes.io/instance-type", ty.as_str()),
        ("karpenter.sh/capacity-type", "on-demand"),
    ] {
        assert_eq!(
            labels.get(k).map(String::as_str),
            Some(v),
            "{k} in {labels:?}"
        );
    }
    let owner = n
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|o| o.kind == "NodeClaim")
        .expect("owner reference to the claim");
    assert_eq!(owner.name, name);
    assert_eq!(owner.uid, c.metadata.uid.clone().unwrap_or_default());
    assert!(
        n.metadata
            .finalizers
            .clone()
            .unwrap_or_default()
            .contains(&"nodewright.io/termination".to_string())
    );

    // 4. Ready, but still under the startup taint: not initialized, and its
    //    pods are still its own, so nothing else is launched for them.
    let status = serde_json::json!({"status": {"conditions": [{
        "type": "Ready", "status": "True", "reason": "KubeletReady",
        "lastHeartbeatTime": "2026-11-29T00:00:00Z", "lastTransitionTime": "2026-11-29T00:00:00Z"}]}});
    nodes
        .patch_status(node_name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("node Ready");
    let c = claim_when(&client, &name, "the startup taint noted", |c| {
        condition(c, "Initialized").is_some_and(|x| x.2.contains("example.com/booting"))
    })
    .await;
    assert_eq!(
        condition(&c, "Initialized").map(|x| x.0),
        Some("False".into())
    );
    assert_eq!(condition(&c, "Ready").map(|x| x.0), Some("False".into()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        instances(&ec2, &["pending", "running"]).await,
        first,
        "no second node while the first boots"
    );
    assert_eq!(
        metric(&metrics(addr).await, "nodewright_controller_pending_pods"),
        Some(0.0)
    );

    // 5. The startup taint goes: initialized and Ready.
    node_ready(&client, node_name).await;
    let c = claim_when(&client, &name, "Initialized", |c| {
        condition(c, "Initialized").is_some_and(|x| x.0 == "True")
    })
    .await;
    assert_eq!(condition(&c, "Ready").map(|x| x.0), Some("True".into()));
    let s = c.status.clone().expect("status");
    assert_eq!(s.allocatable.get("cpu").map(|q| q.0.as_str()), Some("8"));
    assert_eq!(s.capacity.get("memory").map(|q| q.0.as_str()), Some("32Gi"));
    let n = wait_for(
        "the initialized label",
        Duration::from_secs(10),
        async || {
            let n = nodes.get(node_name).await.ok()?;
            let l = n.metadata.labels.clone()?;
            (l.get("nodewright.io/initialized").map(String::as_str) == Some("true")).then_some(n)
        },
    )
    .await;
    assert!(n.metadata.deletion_timestamp.is_none());

    // 6. `kubectl get nodeclaims`, as the API server renders it.
    let (headers, rows, table) = get_nodeclaims_table(&client, false).await;
    println!("$ kubectl get nodeclaims\n{table}");
    assert_eq!(
        headers,
        ["Name", "Type", "Capacity", "Zone", "Node", "Ready", "Age"]
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0][..6],
        [
            name.as_str(),
            ty.as_str(),
            "on-demand",
            zone.as_str(),
            node_name,
            "True"
        ]
    );
    let (headers, rows, wide) = get_nodeclaims_table(&client, true).await;
    println!("$ kubectl get nodeclaims -o wide\n{wide}");
    assert_eq!(&headers[7..], ["ImageID", "ID"]);
    assert!(rows[0][7].starts_with("ami-"), "{wide}");
    assert_eq!(rows[0][8], format!("aws:///{zone}/{id}"));

    assert_eq!(instances(&ec2, &["pending", "running"]).await, first);
    let _ = stop.send(true);
    task.await.expect("controller stops cleanly");
}

/// A pending pod and a NodeClaim for it written by a controller that was
/// killed before CreateFleet answered, its instance already running.
async fn claim_killed_mid_launch(
    client: &kube::Client,
    ec2: &aws_sdk_ec2::Client,
    name: &str,
) -> String {
    use nodewright::controller::nodeclaim::NodeClaimSpec;
    use nodewright::controller::nodeclaim::types::{
        ClaimRequirements, ClaimResources, InstanceTypeOption,
    };
    unschedulable_pod(client, "again", "late", "1", "1Gi").await;
    let q = |s: &str| k8s_openapi::apimachinery::pkg::api::resource::Quantity(s.to_string());
    let mut c = NodeClaim::new(
        name,
        NodeClaimSpec {
            pool: "general".into(),
            node_class: "default".into(),
            requirements: ClaimRequirements {
                instance_types: vec![InstanceTypeOption {
                    name: "m5.large".into(),
                    price_per_hour: 0.096,
                }],
                zones: vec!["us-east-1a".into()],
                capacity_types: vec!["on-demand".into()],
            },
            resources: ClaimResources {
                requests: [("cpu", "1100m"), ("memory", "1Gi"), ("pods", "2")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), q(v)))
                    .collect(),
                overhead: Default::default(),
                allocatable: [("cpu", "1930m"), ("memory", "7Gi"), ("pods", "29")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), q(v)))
                    .collect(),
            },
            labels: Default::default(),
            taints: vec![],
            startup_taints: vec![],
            expire_after: None,
            pods: vec!["again/late".into()],
        },
    );
    c.metadata.finalizers = Some(vec!["nodewright.io/termination".into()]);
    Api::<NodeClaim>::all(client.clone())
        .create(&PostParams::default(), &c)
        .await
        .expect("create the claim");
    let subnet = ec2
        .describe_subnets()
        .filters(
            Filter::builder()
                .name(format!("tag:{}", world::DISCOVERY))
                .values("demo")
                .build(),
        )
        .filters(
            Filter::builder()
                .name("availability-zone")
                .values("us-east-1a")
                .build(),
        )
        .send()
        .await
        .expect("DescribeSubnets")
        .subnets()[0]
        .subnet_id()
        .expect("subnet")
        .to_string();
    let run = ec2
        .run_instances()
        .image_id("ami-ekslinux")
        .instance_type(aws_sdk_ec2::types::InstanceType::M5Large)
        .min_count(1)
        .max_count(1)
        .subnet_id(subnet)
        .tag_specifications(world::tags(
            aws_sdk_ec2::types::ResourceType::Instance,
            &[
                (TAG_CLUSTER, CLUSTER),
                (TAG_CLAIM, name),
                ("nodewright.io/pool", "general"),
            ],
        ))
        .send()
        .await
        .expect("RunInstances");
    run.instances()[0].instance_id().expect("id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_continues_its_claims_without_launching_twice() {
    let Fixture {
        moto,
        kube,
        ec2,
        client,
        dir,
    } = fixture("again").await;
    std::fs::write(dir.path().join("general.policy"), policy_text("m5")).expect("write policy");
    let (_, stop, task) = start(&moto, &kube, dir.path(), Duration::from_secs(600)).await;

    // 1. Pending pods get a node; the controller is killed once it launched.
    for i in 0..2 {
        unschedulable_pod(&client, "again", &format!("web-{i}"), "1", "2Gi").await;
    }
    let first = first_launch(&ec2).await;
    assert_eq!(first.len(), 1, "{first:?}");
    let (id, _, name, zone) = first[0].clone();
    claim_when(&client, &name, "Launched", |c| {
        condition(c, "Launched").is_some_and(|x| x.0 == "True")
    })
    .await;
    task.abort();
    assert!(task.await.is_err_and(|e| e.is_cancelled()), "killed");
    drop(stop);

    // 2. Meanwhile another claim was written and its instance started, but
    //    the controller died before CreateFleet's answer was recorded.
    let crashed = "general-crash";
    let crashed_id = claim_killed_mid_launch(&client, &ec2, crashed).await;

    // 3. A new controller: the claims are all it needs. The half-launched one
    //    gets its running instance (looked up by its claim tag: no second
    //    CreateFleet), and no pod gets a second node.
    let (addr, stop, task) = start(&moto, &kube, dir.path(), Duration::from_secs(600)).await;
    let c = claim_when(&client, crashed, "the half-launched claim launched", |c| {
        condition(c, "Launched").is_some_and(|x| x.0 == "True")
    })
    .await;
    assert_eq!(
        c.status.and_then(|s| s.provider_id),
        Some(format!("aws:///us-east-1a/{crashed_id}"))
    );
    wait_for(
        "every pod provided for",
        Duration::from_secs(30),
        async || {
            (metric(&metrics(addr).await, "nodewright_controller_pending_pods") == Some(0.0))
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let running = instances(&ec2, &["pending", "running"]).await;
    let mut tagged: Vec<&str> = running.iter().map(|i| i.2.as_str()).collect();
    tagged.sort();
    let mut expected = vec![name.as_str(), crashed];
    expected.sort();
    assert_eq!(
        tagged, expected,
        "one instance per claim, none twice: {running:?}"
    );
    let mut claimed: Vec<String> = claims(&client)
        .await
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    claimed.sort();
    assert_eq!(claimed, expected, "no claim leaked or lost");

    // 4. The lifecycle goes on under the new controller.
    register_node(&client, "node-0", &id, &zone, serde_json::json!({})).await;
    let c = claim_when(&client, &name, "Registered after the restart", |c| {
        condition(c, "Registered").is_some_and(|x| x.0 == "True")
    })
    .await;
    assert_eq!(
        c.status.and_then(|s| s.node_name).as_deref(),
        Some("node-0")
    );
    let _ = stop.send(true);
    task.await.expect("controller stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpu_node_counts_its_planned_gpus_until_the_device_plugin_reports() {
    let Fixture {
        moto,
        kube,
        ec2,
        client,
        dir,
    } = fixture("gpu").await;
    std::fs::write(dir.path().join("general.policy"), policy_text("g4dn")).expect("write policy");
    let (addr, stop, task) = start(&moto, &kube, dir.path(), Duration::from_secs(600)).await;

    // A pod that needs a GPU, marked unschedulable as the scheduler would.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "gpu");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "train"},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"},
                          "limits": {"nvidia.com/gpu": "1"}}}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let status = serde_json::json!({"status": {"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu"}]}});
    pods.patch_status("train", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("mark unschedulable");
    let first = first_launch(&ec2).await;
    assert_eq!(first.len(), 1, "{first:?}");
    let (id, ty, name, zone) = first[0].clone();
    assert!(ty.starts_with("g4dn."), "{ty}");
    let c = claim_when(&client, &name, "Launched", |c| {
        condition(c, "Launched").is_some_and(|x| x.0 == "True")
    })
    .await;
    assert_eq!(
        c.spec
            .resources
            .allocatable
            .get("nvidia.com/gpu")
            .map(|q| q.0.as_str()),
        Some("1"),
        "planned with its GPU"
    );

    // The Node registers and turns Ready, but reports no GPU yet.
    register_node(&client, "gpu-node", &id, &zone, serde_json::json!({})).await;
    node_ready(&client, "gpu-node").await;
    let c = claim_when(&client, &name, "waiting for the GPU", |c| {
        condition(c, "Initialized").is_some_and(|x| x.2.contains("nvidia.com/gpu"))
    })
    .await;
    assert_eq!(
        condition(&c, "Registered").map(|x| x.0),
        Some("True".into())
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        instances(&ec2, &["pending", "running"]).await,
        first,
        "no second GPU node while the device plugin starts"
    );
    assert_eq!(
        metric(&metrics(addr).await, "nodewright_controller_pending_pods"),
        Some(0.0)
    );

    // The device plugin reports: initialized.
    let nodes: Api<Node> = Api::all(client.clone());
    let gpus = serde_json::json!({"status": {
        "allocatable": {"cpu": "4", "memory": "15Gi", "pods": "29", "nvidia.com/gpu": "1"},
        "capacity": {"cpu": "4", "memory": "16Gi", "pods": "29", "nvidia.com/gpu": "1"}}});
    nodes
        .patch_status("gpu-node", &PatchParams::default(), &Patch::Merge(&gpus))
        .await
        .expect("GPUs reported");
    let c = claim_when(&client, &name, "Initialized", |c| {
        condition(c, "Initialized").is_some_and(|x| x.0 == "True")
    })
    .await;
    assert_eq!(
        c.status
            .and_then(|s| s.allocatable.get("nvidia.com/gpu").cloned())
            .map(|q| q.0),
        Some("1".to_string())
    );
    let _ = stop.send(true);
    task.await.expect("controller stops cleanly");
}

/// The sum of a metric over its label sets (`name{...} value` lines).
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_caches_survive_an_apiserver_restart() {
    let moto = support::moto().await;
    let ec2 = moto.ec2().await;
    world::setup(&ec2).await;
    world::node_role(&moto.settings()).await;
    // A control plane of its own: the shared one must not go away under other tests.
    let kube = tokio::task::spawn_blocking(kube_support::KubeApi::start)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let kube = Arc::new(kube);
    let client = kube.client().await;
    apply_crds(&client).await;
    create_namespace(&client, "restart").await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("general.policy"), policy_text("m5")).expect("write policy");
    let (addr, stop, task) = start(&moto, &kube, dir.path(), Duration::from_secs(600)).await;

    unschedulable_pod(&client, "restart", "before", "1", "1Gi").await;
    let first = first_launch(&ec2).await;

    // The API server goes away for a while and comes back on the same etcd.
    let k = Arc::clone(&kube);
    tokio::task::spawn_blocking(move || {
        k.stop_apiserver();
        std::thread::sleep(Duration::from_secs(3));
        k.start_apiserver();
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    assert!(
        !task.is_finished(),
        "the controller keeps running across the restart"
    );

    // A pod created after the restart gets an instance: the pod watch resumed
    // (or re-listed) by itself, and the pass reads the caches it fills.
    wait_for(
        "the API server to take writes again",
        Duration::from_secs(60),
        async || {
            let pods: Api<Pod> = Api::namespaced(client.clone(), "restart");
            pods.list(&ListParams::default()).await.ok().map(drop)
        },
    )
    .await;
    // Too big for the first instance's spare room: it needs a node of its own.
    unschedulable_pod(&client, "restart", "after", "3", "4Gi").await;
    let second = new_launches(
        &ec2,
        "a launch for the pod created after the restart",
        Duration::from_secs(120),
        &first,
    )
    .await;
    assert_eq!(second.len(), 1, "{second:?}");
    let m = metrics(addr).await;
    assert!(
        metric_sum(&m, "nodewright_controller_watch_errors_total") >= 1.0,
        "the outage shows in watch_errors_total:\n{m}"
    );
    assert!(!task.is_finished(), "the controller still runs");
    let _ = stop.send(true);
    task.await.expect("controller stops cleanly");
}

/// One type in one zone: pods too big to share a node become identical nodes.
fn one_type_policy() -> String {
    policy_text("m5").replace(
        "  label team = \"platform\"\n",
        "  label team = \"platform\"\n  require node.kubernetes.io/instance-type in [m5.large]\n  require topology.kubernetes.io/zone in [us-east-1a]\n",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_nodes_launch_with_one_fleet_and_every_claim_is_launched() {
    let Fixture {
        moto,
        kube,
        ec2,
        client,
        dir,
    } = fixture("fleet").await;
    std::fs::write(dir.path().join("general.policy"), one_type_policy()).expect("write policy");
    // Three pods of 1.5 vCPU: one m5.large (2 vCPU) each. They exist before
    // the controller starts, so its first pass plans all three.
    for i in 0..3 {
        unschedulable_pod(&client, "fleet", &format!("job-{i}"), "1500m", "1Gi").await;
    }
    let (_addr, stop, task) = start(&moto, &kube, dir.path(), Duration::from_secs(600)).await;
    let launched = wait_for(
        "three Launched claims",
        Duration::from_secs(60),
        async || {
            let cs = claims(&client).await;
            let up: Vec<NodeClaim> = cs
                .into_iter()
                .filter(|c| condition(c, "Launched").is_some_and(|x| x.0 == "True"))
                .collect();
            (up.len() >= 3).then_some(up)
        },
    )
    .await;
    assert_eq!(launched.len(), 3, "one claim per pod");
    let all = instances(&ec2, &["pending", "running"]).await;
    assert_eq!(all.len(), 3, "{all:?}");
    // Each instance carries its own claim's tag, and each claim records it.
    for c in &launched {
        let name = c.metadata.name.clone().expect("name");
        let id = c
            .status
            .as_ref()
            .and_then(|s| s.provider_id.as_deref())
            .and_then(|p| p.rsplit('/').next())
            .expect("provider id")
            .to_string();
        let inst = all
            .iter()
            .find(|i| i.0 == id)
            .expect("the claim's instance");
        assert_eq!(inst.2, name, "tagged with its claim: {all:?}");
        assert_eq!(
            (inst.1.as_str(), inst.3.as_str()),
            ("m5.large", "us-east-1a")
        );
    }
    // All three from one CreateFleet (moto keeps every fleet it made).
    let fleets = ec2.describe_fleets().send().await.expect("DescribeFleets");
    let capacities: Vec<i32> = fleets
        .fleets()
        .iter()
        .filter_map(|f| f.target_capacity_specification()?.total_target_capacity())
        .collect();
    assert_eq!(capacities, [3], "one CreateFleet for three nodes");
    // The pods are still told which node is theirs (after the launches).
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "fleet");
    let told = wait_for("Nominated Events", Duration::from_secs(30), async || {
        let list = events.list(&ListParams::default()).await.ok()?;
        let pods: std::collections::BTreeSet<String> = list
            .items
            .iter()
            .filter(|e| e.reason.as_deref() == Some("Nominated"))
            .filter_map(|e| e.regarding.as_ref()?.name.clone())
            .collect();
        (pods.len() >= 3).then_some(pods)
    })
    .await;
    assert_eq!(told.len(), 3, "{told:?}");
    stop.send(true).expect("stop");
    task.await.expect("controller task");
}
