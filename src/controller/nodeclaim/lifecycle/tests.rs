//! The NodeClaim lifecycle on hand-made claims and Nodes: no cluster.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::*;
use crate::ir::{Taint, TaintEffect};

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap_or_else(|e| panic!("{e}"))
}

fn later(secs: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(secs)
}

fn res(cpu_milli: i64, memory_gib: i64, pods: i64) -> Resources {
    Resources {
        cpu_milli,
        memory: memory_gib << 30,
        pods,
        ..Resources::zero()
    }
}

fn planned() -> PlannedNode {
    let mut allocatable = res(3920, 15, 29);
    allocatable.extended.insert("nvidia.com/gpu".into(), 1);
    PlannedNode {
        name: "gpu-k3j2h".into(),
        pool: "gpu".into(),
        node_class: "default".into(),
        zone: "us-east-1a".into(),
        capacity_type: CapacityType::Spot,
        instance_type: "g4dn.xlarge".into(),
        price_per_hour: 0.2,
        instance_type_options: ["g4dn.xlarge", "g5.xlarge"]
            .iter()
            .zip([0.2, 0.3])
            .map(|(t, p)| InstanceOption {
                instance_type: Arc::from(*t),
                price_per_hour: p,
            })
            .collect(),
        pods: vec!["ml/train-0".into()],
        requested: res(1100, 2, 2),
        allocatable,
        labels: [
            ("team".to_string(), "ml".to_string()),
            (labels::INSTANCE_TYPE.to_string(), "g4dn.xlarge".to_string()),
        ]
        .into(),
        taints: vec![Taint {
            key: "nvidia.com/gpu".into(),
            value: None,
            effect: TaintEffect::NoSchedule,
        }],
        startup_taints: vec![Taint {
            key: "example.com/agent-not-ready".into(),
            value: None,
            effect: TaintEffect::NoExecute,
        }],
    }
}

/// The claim as the API server returns it after create: uid and creation time set.
fn created() -> NodeClaim {
    let mut c = new_claim(&planned(), None, &res(100, 0, 1));
    c.metadata.uid = Some("uid-1".into());
    c.metadata.creation_timestamp = Some(Time(t0()));
    c
}

fn launch_info(instance_type: &str) -> LaunchInfo {
    LaunchInfo {
        instance_id: "i-0abc".into(),
        instance_type: instance_type.into(),
        zone: "us-east-1b".into(),
        capacity_type: CapacityType::Spot,
        image_id: "ami-123".into(),
    }
}

fn launched_claim() -> NodeClaim {
    let mut c = created();
    c.status = Some(launched(
        &NodeClaimStatus::default(),
        &launch_info("g4dn.xlarge"),
        later(5),
    ));
    c
}

/// A Node for instance i-0abc, as the kubelet registers it.
fn node(ready: bool, taints: &str, gpus: u32) -> Node {
    yaml(&format!(
        "metadata: {{name: ip-10-0-0-1.ec2.internal, finalizers: [other.io/keep]}}
spec:
  providerID: aws:///us-east-1b/i-0abc
  taints: [{taints}]
status:
  capacity: {{cpu: '4', memory: 16Gi, pods: '29', nvidia.com/gpu: '{gpus}'}}
  allocatable: {{cpu: 3920m, memory: 15Gi, pods: '29', nvidia.com/gpu: '{gpus}'}}
  conditions:
  - {{type: Ready, status: '{}', message: kubelet says hi}}
",
        if ready { "True" } else { "False" }
    ))
}

const STARTUP: &str = "{key: example.com/agent-not-ready, effect: NoExecute}";
const TTL: Duration = Duration::from_secs(900);

fn names(seqs: &[Sequence]) -> Vec<Vec<String>> {
    seqs.iter()
        .map(|s| {
            s.actions()
                .iter()
                .map(|a| match a {
                    Action::Terminate { claim, reason } => format!("terminate {claim} {reason:?}"),
                    Action::DeleteNode { node } => format!("delete {node}"),
                    Action::PatchNode { node, .. } => format!("patch {node}"),
                    Action::ClaimStatus { claim, .. } => format!("status {claim}"),
                    Action::DeleteClaim { claim } => format!("delete-claim {claim}"),
                    other => format!("{other:?}"),
                })
                .collect()
        })
        .collect()
}

fn status_of(t: &Tracked) -> NodeClaimStatus {
    let s = t
        .actions
        .iter()
        .flat_map(|s| s.actions())
        .find_map(|a| match a {
            Action::ClaimStatus { status, .. } => Some(status.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no status in {t:?}"));
    serde_json::from_value(s).unwrap_or_else(|e| panic!("{e}"))
}

fn condition<'a>(s: &'a NodeClaimStatus, type_: &str) -> (&'a str, &'a str, &'a str) {
    let c = s
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} in {s:?}"));
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

#[test]
fn a_claim_is_written_from_its_planned_node_and_reads_back_as_it() {
    let node = planned();
    let c = created();
    assert_eq!(c.metadata.name.as_deref(), Some("gpu-k3j2h"));
    assert_eq!(c.metadata.finalizers, Some(vec![FINALIZER.to_string()]));
    assert_eq!(
        c.metadata.labels.as_ref().and_then(|l| l.get(LABEL_POOL)),
        Some(&"gpu".to_string())
    );
    let names: Vec<&str> = c
        .spec
        .requirements
        .instance_types
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    assert_eq!(names, ["g4dn.xlarge", "g5.xlarge"], "in price order");
    assert_eq!(c.spec.requirements.capacity_types, ["spot"]);
    assert_eq!(c.spec.resources.allocatable["nvidia.com/gpu"].0, "1");
    assert_eq!(c.spec.resources.requests["cpu"].0, "1100m");
    assert_eq!(c.spec.expire_after, None, "no pool: no expiry");
    assert_eq!(
        planned_node(&c),
        Some(node.clone()),
        "a restart relaunches the same node"
    );
    // The pool's expiry, as Go writes durations.
    let pool: crate::ir::PolicySet = {
        let f = crate::policy::parse("t.policy", "pool gpu {\n}\n")
            .unwrap_or_else(|d| panic!("{}", d.render(100)));
        crate::policy::compile(&[f])
            .unwrap_or_else(|d| panic!("{}", d.render(100)))
            .0
    };
    let with_pool = new_claim(&node, pool.pool("gpu"), &Resources::zero());
    assert_eq!(with_pool.spec.expire_after.as_deref(), Some("720h"));
    assert_eq!(go_duration(Duration::from_secs(90)), "90s");
    assert_eq!(go_duration(Duration::from_secs(120)), "2m");
}

#[test]
fn a_launched_claim_records_its_instance_and_the_launched_labels() {
    let mut c = created();
    c.status = Some(launched(
        &NodeClaimStatus::default(),
        &launch_info("g5.xlarge"),
        later(5),
    ));
    let s = c.status.as_ref().unwrap_or_else(|| panic!());
    assert_eq!(s.provider_id.as_deref(), Some("aws:///us-east-1b/i-0abc"));
    assert_eq!(s.image_id.as_deref(), Some("ami-123"));
    assert_eq!(condition(s, LAUNCHED).0, "True");
    assert_eq!(
        condition(s, READY),
        (
            "False",
            "NotRegistered",
            "waiting for a Node with the instance's provider ID"
        )
    );
    assert_eq!(instance_id(&c), Some("i-0abc"));
    let l = node_labels(&c);
    assert_eq!(
        l[labels::INSTANCE_TYPE],
        "g5.xlarge",
        "the fallback EC2 launched"
    );
    assert_eq!(l[labels::ZONE], "us-east-1b");
    assert_eq!(l[labels::CAPACITY_TYPE], "spot");
    assert_eq!(l["team"], "ml");
    assert_eq!(l[LABEL_POOL], "gpu");
    assert_eq!(l[LABEL_CLAIM], "gpu-k3j2h");
}

#[test]
fn an_unlaunched_claim_is_launched_again_and_a_silent_one_times_out() {
    let t = track(&[created()], &[], later(10_000), TTL);
    assert_eq!(t.relaunch, [planned()]);
    assert!(t.actions.is_empty());

    let c = launched_claim();
    let t = track(std::slice::from_ref(&c), &[], later(899), TTL);
    assert!(t.actions.is_empty() && t.expired.is_empty(), "{t:?}");
    let t = track(&[c], &[], later(900), TTL);
    assert_eq!(t.expired, ["gpu-k3j2h"]);
    assert_eq!(
        names(&t.actions),
        [[
            "terminate gpu-k3j2h RegistrationTimeout",
            "delete-claim gpu-k3j2h"
        ]]
    );
}

#[test]
fn a_node_registers_then_initializes_once_its_taints_and_gpus_are_there() {
    let mut c = launched_claim();
    // Registered: still not Ready, under the startup taint, no GPUs yet.
    let n = node(false, STARTUP, 0);
    let t = track(
        std::slice::from_ref(&c),
        std::slice::from_ref(&n),
        later(60),
        TTL,
    );
    assert_eq!(
        t.registered,
        [(
            "gpu-k3j2h".to_string(),
            "ip-10-0-0-1.ec2.internal".to_string()
        )]
    );
    assert_eq!(
        names(&t.actions),
        [["patch ip-10-0-0-1.ec2.internal", "status gpu-k3j2h"]]
    );
    let Action::PatchNode { patch, .. } = &t.actions[0].actions()[0] else {
        panic!("{t:?}")
    };
    assert_eq!(patch["metadata"]["labels"][LABEL_REGISTERED], "true");
    assert_eq!(
        patch["metadata"]["labels"][labels::INSTANCE_TYPE],
        "g4dn.xlarge"
    );
    assert_eq!(patch["metadata"]["labels"]["team"], "ml");
    assert_eq!(
        patch["metadata"]["finalizers"],
        serde_json::json!(["other.io/keep", FINALIZER]),
        "ours added, theirs kept"
    );
    let owner = &patch["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "NodeClaim");
    assert_eq!(owner["apiVersion"], "nodewright.io/v1alpha1");
    assert_eq!(owner["uid"], "uid-1");
    let taints: Vec<&str> = patch["spec"]["taints"]
        .as_array()
        .unwrap_or_else(|| panic!("{patch}"))
        .iter()
        .filter_map(|t| t["key"].as_str())
        .collect();
    assert_eq!(taints, ["example.com/agent-not-ready", "nvidia.com/gpu"]);
    let s = status_of(&t);
    assert_eq!(s.node_name.as_deref(), Some("ip-10-0-0-1.ec2.internal"));
    assert_eq!(condition(&s, REGISTERED).0, "True");
    assert_eq!(
        condition(&s, INITIALIZED),
        ("False", "NotInitialized", "the Node is not Ready")
    );
    assert_eq!(condition(&s, READY).0, "False");
    assert!(s.allocatable.is_empty());
    c.status = Some(s);

    // Ready, but the startup taint is still there.
    let t = track(&[c.clone()], &[node(true, STARTUP, 0)], later(70), TTL);
    let s = status_of(&t);
    assert_eq!(
        condition(&s, INITIALIZED).2,
        "the Node still has the startup taint example.com/agent-not-ready"
    );
    assert_eq!(names(&t.actions), [["status gpu-k3j2h"]], "registered once");
    // Taint gone, GPUs not reported.
    let t = track(&[c.clone()], &[node(true, "", 0)], later(80), TTL);
    let s = status_of(&t);
    assert_eq!(
        condition(&s, INITIALIZED).2,
        "the Node does not report nvidia.com/gpu yet"
    );
    c.status = Some(s);
    // Nothing changed since: nothing to write.
    let t = track(&[c.clone()], &[node(true, "", 0)], later(85), TTL);
    assert!(t.actions.is_empty(), "{t:?}");
    // The device plugin reports: initialized and Ready.
    let t = track(&[c.clone()], &[node(true, "", 1)], later(90), TTL);
    assert_eq!(t.initialized, ["gpu-k3j2h"]);
    assert_eq!(
        names(&t.actions),
        [["patch ip-10-0-0-1.ec2.internal", "status gpu-k3j2h"]]
    );
    let Action::PatchNode { patch, .. } = &t.actions[0].actions()[0] else {
        panic!("{t:?}")
    };
    assert_eq!(patch["metadata"]["labels"][LABEL_INITIALIZED], "true");
    let s = status_of(&t);
    assert_eq!(condition(&s, INITIALIZED).0, "True");
    assert_eq!(condition(&s, READY), ("True", "Ready", ""));
    assert_eq!(s.allocatable["nvidia.com/gpu"].0, "1");
    assert_eq!(s.capacity["cpu"].0, "4");
    // Registered's transition time stayed where it was.
    let reg = |s: &NodeClaimStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == REGISTERED)
            .map(|c| c.last_transition_time.clone())
    };
    assert_eq!(reg(&s), reg(c.status.as_ref().unwrap_or_else(|| panic!())));
    c.status = Some(s);
    // Later the Node goes NotReady: Ready follows, Initialized stays.
    let t = track(&[c.clone()], &[node(false, "", 1)], later(500), TTL);
    assert!(t.initialized.is_empty());
    let s = status_of(&t);
    assert_eq!(condition(&s, INITIALIZED).0, "True");
    assert_eq!(
        condition(&s, READY),
        ("False", "NodeNotReady", "kubelet says hi")
    );
}

#[test]
fn deleting_a_claim_or_its_node_hands_it_to_the_termination_flow() {
    let mut c = launched_claim();
    c.metadata.deletion_timestamp = Some(Time(later(100)));
    let n = node(true, "", 1);
    let t = track(&[c], std::slice::from_ref(&n), later(101), TTL);
    assert!(t.deleted.is_empty());
    assert!(t.actions.is_empty(), "the termination flow acts, not track");
    assert_eq!(
        t.terminating,
        [(
            "gpu-k3j2h".to_string(),
            Some("ip-10-0-0-1.ec2.internal".to_string())
        )]
    );
    let mut gone = n;
    gone.metadata.deletion_timestamp = Some(Time(later(100)));
    let t = track(&[launched_claim()], &[gone], later(101), TTL);
    assert_eq!(t.terminating.len(), 1);
    // A registered claim whose Node disappeared.
    let mut c = launched_claim();
    if let Some(s) = c.status.as_mut() {
        s.node_name = Some("ip-10-0-0-1.ec2.internal".into());
    }
    let t = track(&[c], &[], later(101), TTL);
    assert_eq!(
        names(&t.actions),
        [["terminate gpu-k3j2h Deleted", "delete-claim gpu-k3j2h"]]
    );
    assert_eq!(
        without_ours(Some(&vec!["a".to_string(), FINALIZER.to_string()])),
        ["a"]
    );
    assert!(without_ours(None).is_empty());
}

#[test]
fn planning_sees_each_claim_as_its_room_matched_to_its_node() {
    let mut deleting = launched_claim();
    deleting.metadata.name = Some("gone".into());
    deleting.metadata.deletion_timestamp = Some(Time(later(1)));
    let unlaunched = {
        let mut c = created();
        c.metadata.name = Some("fresh".into());
        c
    };
    let mut fallback = created();
    fallback.metadata.name = Some("fallback".into());
    fallback.status = Some(launched(
        &NodeClaimStatus::default(),
        &LaunchInfo {
            instance_id: "i-0fff".into(),
            ..launch_info("g5.xlarge")
        },
        later(5),
    ));
    let v = claims_view(
        &[launched_claim(), deleting, unlaunched, fallback],
        &[node(false, STARTUP, 0)],
    );
    assert!(!v.contains("gone"));
    assert_eq!(v.in_flight(), 3);
    let by_node = v.by_node();
    let c = by_node["ip-10-0-0-1.ec2.internal"];
    assert_eq!(c.name, "gpu-k3j2h");
    assert_eq!(c.allocatable.get("nvidia.com/gpu"), 1, "the planned room");
    assert_eq!(c.overhead, res(100, 0, 1));
    assert_eq!(c.startup_taints.len(), 1);
    assert_eq!(c.capacity_type, CapacityType::Spot);
    assert_eq!(by_node.len(), 1, "the others have no Node");
    let mut w = crate::workload::Workload::default();
    v.fold_into(&mut w);
    let fb = w
        .nodes
        .iter()
        .find(|n| n.name == "fallback")
        .unwrap_or_else(|| panic!("{w:?}"));
    assert_eq!(
        fb.allocatable,
        res(1100, 2, 2),
        "a fallback type offers only what was planned onto it"
    );
    assert!(
        w.nodes.iter().any(|n| n.name == "fresh"),
        "not launched yet, still room"
    );
}
