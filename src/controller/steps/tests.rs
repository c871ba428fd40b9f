//! The pass's steps on hand-made snapshots: no cluster, no EC2.

use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};

use super::*;
use crate::controller::claims::Claim;
use crate::solver::{ExistingPlacement, Unschedulable};
use crate::workload::PodClass;

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn compile(text: &str) -> PolicySet {
    let file =
        crate::policy::parse("t.policy", text).unwrap_or_else(|d| panic!("{}", d.render(100)));
    crate::policy::compile(&[file])
        .unwrap_or_else(|d| panic!("{}", d.render(100)))
        .0
}

/// Pool `general` on node class `default`, empty nodes removed at once.
fn policy() -> PolicySet {
    compile(
        "pool general {\n  node-class default\n  startup-taint example.com/booting:NoSchedule\n  disruption {\n    consolidate when-empty after 0s\n    budget 100%\n  }\n}\n\
         node-class default {\n  ami alias al2023@latest\n  subnets where tag k = \"v\"\n  security-groups where tag k = \"v\"\n  role \"r\"\n}\n",
    )
}

fn instance(id: &str, claim: Option<&str>, state: &str) -> OwnedInstance {
    OwnedInstance {
        instance_id: id.into(),
        claim: claim.map(str::to_string),
        pool: Some("general".into()),
        instance_type: "m5.large".into(),
        zone: "us-east-1a".into(),
        image_id: "ami-1".into(),
        state: state.into(),
        launched_at: None,
    }
}

/// A Ready node backed by instance `id`, with optional extra YAML under `spec`.
fn node(name: &str, id: &str, spec_extra: &str) -> Node {
    yaml(&format!(
        "metadata: {{name: {name}}}\nspec:\n  providerID: aws:///us-east-1a/{id}\n{spec_extra}status:\n  conditions:\n  - {{type: Ready, status: 'True'}}\n"
    ))
}

fn bound_pod(name: &str, node: &str, annotations: &str) -> Pod {
    yaml(&format!(
        "metadata: {{name: {name}, namespace: shop{annotations}}}\nspec:\n  nodeName: {node}\n  containers:\n  - {{name: c, image: x}}\nstatus: {{phase: Running}}\n"
    ))
}

fn observed(nodes: Vec<Node>, pods: Vec<Pod>, owned: Vec<OwnedInstance>, now: Instant) -> Observed {
    Observed {
        objs: ClusterObjects {
            nodes,
            pods,
            ..Default::default()
        },
        owned,
        now,
    }
}

fn claim(name: &str, pods: &[&str]) -> Claim {
    Claim {
        name: name.into(),
        pool: "general".into(),
        instance_type: "m5.large".into(),
        zone: "us-east-1a".into(),
        capacity_type: CapacityType::OnDemand,
        labels: Default::default(),
        taints: vec![],
        startup_taints: vec![],
        allocatable: res(1930, 7),
        overhead: Resources::zero(),
        pods: pods.iter().map(|s| s.to_string()).collect(),
        node_name: None,
        initialized: false,
    }
}

fn res(cpu_milli: i64, memory_gib: i64) -> Resources {
    Resources {
        cpu_milli,
        memory: memory_gib << 30,
        pods: 1,
        ..Resources::zero()
    }
}

fn planned(name: &str, pool: &str, node_class: &str, pods: &[&str]) -> PlannedNode {
    PlannedNode {
        name: name.into(),
        pool: pool.into(),
        node_class: node_class.into(),
        zone: "us-east-1a".into(),
        capacity_type: CapacityType::OnDemand,
        instance_type: "m5.large".into(),
        price_per_hour: 0.096,
        instance_type_options: vec![],
        pods: pods.iter().map(|s| s.to_string()).collect(),
        requested: res(1100, 2),
        allocatable: res(1930, 7),
        labels: [("team".to_string(), "shop".to_string())].into(),
        taints: vec![],
        startup_taints: vec![],
    }
}

fn list(nodes: &[PlannedNode]) -> String {
    nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn names(seqs: &[Sequence]) -> Vec<Vec<String>> {
    seqs.iter()
        .map(|s| {
            s.actions()
                .iter()
                .map(|a| match a {
                    Action::Launch(n) => format!("launch {}", n.name),
                    Action::CreateClaims(ns) => format!("claim {}", list(ns)),
                    Action::LaunchGroup(ns) => format!("launch {}", list(ns)),
                    Action::ClaimLabels { claim, .. } => format!("labels {claim}"),
                    Action::ClaimStatus { claim, .. } => format!("status {claim}"),
                    Action::PatchNode { node, .. } => format!("patch {node}"),
                    Action::DeleteClaim { claim } => format!("delete-claim {claim}"),
                    Action::Terminate { claim, reason } => format!("terminate {claim} {reason:?}"),
                    Action::RequestRemoval { claim, reason } => format!("remove {claim} {reason}"),
                    Action::Cordon { node } => format!("cordon {node}"),
                    Action::DeleteNode { node } => format!("delete {node}"),
                    Action::Event(e) => format!("{} {}", e.kind.reason(), e.pod),
                })
                .collect()
        })
        .collect()
}

#[test]
fn node_classes_are_resolved_once_each() {
    let p = compile(
        "pool a {\n  node-class one\n}\npool b {\n  node-class one\n}\npool c {\n  node-class two\n}\n\
         node-class one {\n  ami alias al2023@latest\n  subnets where tag k = \"v\"\n  security-groups where tag k = \"v\"\n  role \"r\"\n}\n\
         node-class two {\n  ami alias al2023@latest\n  subnets where tag k = \"v\"\n  security-groups where tag k = \"v\"\n  role \"r\"\n}\n",
    );
    assert_eq!(node_classes(&p), ["one", "two"]);
}

fn class(names: &[&str]) -> PodClass {
    PodClass::plain(
        "shop/c",
        "shop",
        names.iter().map(|s| s.to_string()).collect(),
        res(500, 1),
    )
}

#[test]
fn planning_counts_claims_as_nodes_and_skips_the_solver_when_nothing_waits() {
    let catalog = Catalog::embedded().unwrap_or_else(|e| panic!("{e}"));
    let p = compile("pool general {\n}\n");
    let mut claims = Claims::default();
    claims.insert(claim("general-abcde", &["shop/a", "shop/b"]));
    let w = Workload {
        classes: vec![class(&["a", "b"])],
        ..Default::default()
    };
    let (w, plan) = super::plan(&p, &catalog, w, &claims, None, None);
    assert_eq!(pending(&w), 0);
    assert_eq!(plan, Plan::default());
    assert_eq!(w.nodes.len(), 1, "the claim stands in for its node");

    let w = Workload {
        classes: vec![class(&["a", "c"])],
        ..Default::default()
    };
    let (w, plan) = super::plan(&p, &catalog, w, &claims, None, None);
    assert_eq!(pending(&w), 1);
    let placed: usize = plan.nodes.iter().map(|n| n.pods.len()).sum::<usize>()
        + plan.existing.iter().map(|e| e.pods.len()).sum::<usize>();
    assert_eq!(placed, 1, "{plan:?}");
    assert!(plan.unschedulable.is_empty(), "{plan:?}");
}

#[test]
fn waiting_pods_are_told_once_per_reason() {
    let plan = Plan {
        unschedulable: vec![
            Unschedulable {
                pod: "shop/a".into(),
                reasons: vec!["pool general: too big".into(), "pool gpu: tainted".into()],
            },
            Unschedulable {
                pod: "shop/b".into(),
                reasons: vec!["é".repeat(600)],
            },
        ],
        ..Default::default()
    };
    let mut notices = Notices::default();
    let first = unschedulable_events(&plan, &mut notices);
    assert_eq!(
        names(&first),
        [["FailedProvisioning shop/a"], ["FailedProvisioning shop/b"]]
    );
    let Action::Event(a) = &first[0].actions()[0] else {
        panic!("{first:?}")
    };
    assert_eq!(
        a.note,
        "nodewright cannot place this pod: pool general: too big; pool gpu: tainted"
    );
    assert!(a.kind.is_warning());
    let Action::Event(b) = &first[1].actions()[0] else {
        panic!("{first:?}")
    };
    assert!(
        b.note.len() <= 1000 && b.note.ends_with("..."),
        "{}",
        b.note.len()
    );
    assert!(
        unschedulable_events(&plan, &mut notices).is_empty(),
        "told already"
    );
}

#[test]
fn launches_get_unique_claim_names_and_unknown_pools_are_refused() {
    let p = policy();
    let plan = Plan {
        nodes: vec![
            planned("general-1", "general", "default", &["shop/a"]),
            planned("general-2", "general", "default", &["shop/b"]),
            planned("gone-1", "gone", "default", &["shop/c"]),
            planned("general-3", "general", "missing", &["shop/d"]),
            PlannedNode {
                zone: "us-east-1b".into(),
                ..planned("general-4", "general", "default", &["shop/e"])
            },
        ],
        ..Default::default()
    };
    let t0 = Instant::now();
    let obs = observed(
        vec![],
        vec![],
        vec![instance("i-1", Some("general-aaaaa"), "running")],
        t0,
    );
    let mut claims = Claims::default();
    claims.insert(claim("general-bbbbb", &[]));
    // Taken by an instance, by a claim, then by the first launch of this pass.
    let mut draws = ["aaaaa", "bbbbb", "ccccc", "ccccc", "ddddd", "eeeee"].into_iter();
    let mut suffix = || draws.next().unwrap_or("zzzzz").to_string();
    let l = launches(&plan, &p, &obs, &claims, &mut suffix);
    assert_eq!(
        names(&l.actions),
        [
            [
                "claim general-ccccc,general-ddddd",
                "launch general-ccccc,general-ddddd"
            ],
            ["claim general-eeeee", "launch general-eeeee"]
        ],
        "the NodeClaims are written before the launch; identical launch requests share one \
         (one CreateFleet), another zone is another"
    );
    let Action::LaunchGroup(ns) = &l.actions[0].actions()[1] else {
        panic!("{l:?}")
    };
    assert_eq!(ns[0].pods, ["shop/a"], "the planned node, renamed");
    assert_eq!(ns[1].pods, ["shop/b"]);
    assert_eq!(
        l.refused,
        [
            "planned node for pool gone names node class default, which the policy does not have",
            "planned node for pool general names node class missing, which the policy does not have",
        ]
    );
}

#[test]
fn a_launched_node_tells_its_pods_and_its_overhead_is_what_its_pods_leave() {
    let node = planned("general-x1y2z", "general", "default", &["shop/a", "shop/b"]);
    let w = Workload {
        classes: vec![class(&["a", "b"])],
        ..Default::default()
    };
    let requests = pod_requests(&w);
    assert_eq!(
        overhead(&node, &requests),
        Resources {
            pods: -1,
            ..res(100, 0)
        },
        "requested minus two pods"
    );
    let as_planned = Placed {
        instance_id: "i-0abc".into(),
        instance_type: "m5.large".into(),
        zone: "us-east-1b".into(),
        capacity_type: CapacityType::Spot,
    };
    let told = nominated(&node, &as_planned);
    assert_eq!(told.len(), 2);
    let Action::Event(e) = &told[1] else {
        panic!("{told:?}")
    };
    assert_eq!(e.pod, "shop/b");
    assert_eq!(e.kind, EventKind::Nominated);
    assert!(!e.kind.is_warning());
    assert_eq!(
        e.note,
        "nodewright launched general-x1y2z (m5.large in us-east-1b, spot) for this pod"
    );
    let many: Vec<String> = (0..150).map(|i| format!("shop/p{i}")).collect();
    let big = PlannedNode { pods: many, ..node };
    assert_eq!(nominated(&big, &as_planned).len(), EVENTS_PER_PASS);
}

#[test]
fn empty_nodes_of_ours_are_cordoned_deleted_and_terminated() {
    let p = policy();
    let t0 = Instant::now();
    let owned = vec![
        instance("i-1", Some("general-aaaaa"), "running"),
        instance("i-2", Some("general-bbbbb"), "running"),
        instance("i-3", Some("general-ccccc"), "running"),
        instance("i-4", Some("general-ddddd"), "running"),
        instance("i-5", None, "running"),
    ];
    let nodes = vec![
        node("empty", "i-1", ""),
        node("busy", "i-2", ""),
        node("guarded", "i-3", ""),
        node(
            "booting",
            "i-4",
            "  taints:\n  - {key: example.com/booting, effect: NoSchedule}\n",
        ),
        node("unclaimed", "i-5", ""),
        node("not-ours", "i-9", ""),
    ];
    let pods = vec![
        bound_pod("web", "busy", ""),
        bound_pod(
            "batch",
            "guarded",
            ", annotations: {karpenter.sh/do-not-disrupt: 'true'}",
        ),
    ];
    let obs = observed(nodes, pods, owned, t0);
    let mut empty = EmptySince::default();
    let r = removals(
        &obs,
        &p,
        &Plan::default(),
        &Claims::default(),
        &mut empty,
        jiff::Timestamp::UNIX_EPOCH,
    );
    assert_eq!(r.targeted, 0);
    assert_eq!(
        names(&r.actions),
        [
            vec!["remove general-aaaaa empty"],
            // An instance without a claim tag: its Node goes, nothing to terminate by claim.
            vec!["cordon unclaimed", "delete unclaimed"],
        ]
    );
    // A Node is ours by its NodeClaim alone (no EC2 tag needed).
    let mut claims = Claims::default();
    let mut c = claim("general-eeeee", &[]);
    c.node_name = Some("not-ours".into());
    c.initialized = true;
    claims.insert(c);
    // One whose claim is not Initialized yet is not removed, however empty it looks.
    let mut booting = claim("general-fffff", &["shop/gpu-job"]);
    booting.node_name = Some("empty".into());
    claims.insert(booting);
    let mut empty = EmptySince::default();
    let r = removals(
        &obs,
        &p,
        &Plan::default(),
        &claims,
        &mut empty,
        jiff::Timestamp::UNIX_EPOCH,
    );
    assert_eq!(
        names(&r.actions)[0],
        ["cordon unclaimed", "delete unclaimed"],
        "empty stays"
    );
    assert_eq!(names(&r.actions)[1], ["remove general-eeeee empty"]);

    // While the plan puts pods on an existing node, nothing is removed.
    let plan = Plan {
        existing: vec![ExistingPlacement {
            node: "busy".into(),
            pods: vec!["shop/new".into()],
        }],
        ..Default::default()
    };
    let r = removals(
        &obs,
        &p,
        &plan,
        &Claims::default(),
        &mut empty,
        jiff::Timestamp::UNIX_EPOCH,
    );
    assert_eq!(r.targeted, 1);
    assert!(r.actions.is_empty());
}

#[test]
fn node_views_read_readiness_taints_and_pools() {
    let p = policy();
    let obs = observed(
        vec![
            node("ready", "i-1", ""),
            node(
                "starting",
                "i-2",
                "  taints:\n  - {key: node.kubernetes.io/not-ready, effect: NoSchedule}\n",
            ),
        ],
        vec![],
        vec![
            instance("i-1", Some("general-aaaaa"), "running"),
            OwnedInstance {
                pool: None,
                ..instance("i-2", None, "running")
            },
        ],
        Instant::now(),
    );
    let (views, claim_of) = node_views(&obs, &p, &Claims::default());
    assert_eq!(
        views.len(),
        1,
        "a node without a pool tag or label is skipped"
    );
    assert_eq!(views[0].name, "ready");
    assert!(views[0].initialized);
    assert_eq!(
        claim_of.get("ready").map(String::as_str),
        Some("general-aaaaa")
    );
    let starting = &obs.objs.nodes[1];
    assert!(!initialized(starting, p.pool("general")));
}

/// A node that registered but is still under its pool's startup taint, and
/// one whose device plugin has not reported its GPUs yet: the Node alone
/// (all the in-memory claims left once a Node registered) looks full or
/// GPU-less, so a second node is planned for the same pods. Its NodeClaim,
/// not initialized yet, stands in for it with the planned room instead.
#[test]
fn a_registered_node_that_is_not_initialized_counts_as_its_planned_room() {
    use crate::ir::{Taint, TaintEffect};
    use crate::workload::ExistingNode;
    let catalog = Catalog::embedded().unwrap_or_else(|e| panic!("{e}"));
    let p = compile("pool general {\n  startup-taint example.com/booting:NoSchedule\n}\n");
    let booting = Taint {
        key: "example.com/booting".into(),
        value: None,
        effect: TaintEffect::NoSchedule,
    };
    let registered = |taints: Vec<Taint>, allocatable: Resources| ExistingNode {
        name: "ip-10-0-0-1".into(),
        labels: [(labels::HOSTNAME.to_string(), "ip-10-0-0-1".to_string())].into(),
        taints,
        allocatable,
        used: Resources::zero(),
        pods: vec![],
    };
    let waiting = |requests: Resources| Workload {
        classes: vec![PodClass::plain(
            "shop/c",
            "shop",
            vec!["a".into(), "b".into()],
            requests,
        )],
        ..Default::default()
    };
    let room = Resources {
        pods: 29,
        ..res(1930, 7)
    };
    // 1. Startup taint.
    let w = Workload {
        nodes: vec![registered(vec![booting.clone()], room.clone())],
        ..waiting(res(500, 1))
    };
    let (_, bug) = super::plan(&p, &catalog, w.clone(), &Claims::default(), None, None);
    assert_eq!(
        bug.nodes.len(),
        1,
        "the Node alone: a second node is planned"
    );
    let mut c = claim("general-aaaaa", &["shop/a", "shop/b"]);
    c.node_name = Some("ip-10-0-0-1".into());
    c.startup_taints = vec![booting];
    c.allocatable = room.clone();
    let mut claims = Claims::default();
    claims.insert(c.clone());
    let (w2, fixed) = super::plan(&p, &catalog, w, &claims, None, None);
    assert!(fixed.nodes.is_empty(), "{fixed:?}");
    assert_eq!(pending(&w2), 0, "its pods are the claim's");
    // Its pods gone from the claim (bound elsewhere, say), new pods still fit its room.
    c.pods.clear();
    let mut claims = Claims::default();
    claims.insert(c.clone());
    let w = Workload {
        nodes: vec![registered(c.startup_taints.clone(), room.clone())],
        ..waiting(res(500, 1))
    };
    let (_, fixed) = super::plan(&p, &catalog, w, &claims, None, None);
    assert!(fixed.nodes.is_empty(), "{fixed:?}");
    assert_eq!(fixed.existing.len(), 1, "placed on the claim's room");

    // 2. GPUs not reported yet.
    let mut gpu_room = room.clone();
    gpu_room.extended.insert("nvidia.com/gpu".into(), 1);
    let mut wants_gpu = res(500, 1);
    wants_gpu.extended.insert("nvidia.com/gpu".into(), 1);
    let mut one_pod = waiting(wants_gpu);
    one_pod.classes[0].pod_names.truncate(1);
    let w = Workload {
        nodes: vec![registered(vec![], room.clone())],
        ..one_pod
    };
    let (_, bug) = super::plan(&p, &catalog, w.clone(), &Claims::default(), None, None);
    assert_eq!(
        bug.nodes.len(),
        1,
        "without its GPUs the Node looks useless"
    );
    let mut g = claim("general-ggggg", &[]);
    g.node_name = Some("ip-10-0-0-1".into());
    g.allocatable = gpu_room;
    let mut claims = Claims::default();
    claims.insert(g.clone());
    let (_, fixed) = super::plan(&p, &catalog, w.clone(), &claims, None, None);
    assert!(fixed.nodes.is_empty(), "{fixed:?}");
    // Initialized: the Node speaks for itself again.
    g.initialized = true;
    let mut claims = Claims::default();
    claims.insert(g);
    let (_, after) = super::plan(&p, &catalog, w, &claims, None, None);
    assert_eq!(after.nodes.len(), 1);
}
