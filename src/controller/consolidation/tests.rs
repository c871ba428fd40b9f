use super::*;
use crate::disrupt::consolidate::{ConsolidationOptions, decide};
use serde_json::json;

fn policy(disruption: &str) -> PolicySet {
    let text = format!(
        "node-class default {{\n  ami alias al2023@latest\n  role \"R\"\n  subnets where tag k = \"v\"\n  security-groups where tag k = \"v\"\n}}\npool general {{\n  node-class default\n  require karpenter.sh/capacity-type in [on-demand]\n  require karpenter.k8s.aws/instance-family in [m5]\n  disruption {{\n{disruption}\n  }}\n}}\n"
    );
    let file =
        crate::policy::parse("test.policy", &text).unwrap_or_else(|d| panic!("{}", d.render(100)));
    crate::policy::compile(&[file])
        .unwrap_or_else(|d| panic!("{}", d.render(100)))
        .0
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn now() -> Timestamp {
    at("2026-03-02T12:00:00Z")
}

/// A launched claim of pool `general`, registered as Node `node`, Initialized at 11:00.
fn claim(name: &str, node: &str) -> NodeClaim {
    serde_json::from_value(json!({
        "apiVersion": "nodewright.io/v1alpha1",
        "kind": "NodeClaim",
        "metadata": {"name": name, "creationTimestamp": "2026-03-02T10:00:00Z"},
        "spec": {
            "pool": "general",
            "nodeClass": "default",
            "requirements": {
                "instanceTypes": [{"name": "m5.large", "pricePerHour": 0.096}],
                "zones": ["us-east-1a"],
                "capacityTypes": ["on-demand"]
            },
            "resources": {"requests": {}, "allocatable": {"cpu": "1930m"}}
        },
        "status": {
            "providerID": format!("aws:///us-east-1a/i-{name}"),
            "instanceType": "m5.large",
            "zone": "us-east-1a",
            "capacityType": "on-demand",
            "nodeName": node,
            "conditions": [
                {"type": "Launched", "status": "True", "reason": "Launched", "message": "", "lastTransitionTime": "2026-03-02T10:00:00Z"},
                {"type": "Initialized", "status": "True", "reason": "Initialized", "message": "", "lastTransitionTime": "2026-03-02T11:00:00Z"}
            ]
        }
    }))
    .unwrap()
}

fn node(name: &str, claim: &str) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "node.kubernetes.io/instance-type": "m5.large",
            "topology.kubernetes.io/zone": "us-east-1a",
            "karpenter.sh/capacity-type": "on-demand",
            "nodewright.io/pool": "general",
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/os": "linux"
        }},
        "spec": {"providerID": format!("aws:///us-east-1a/i-{claim}")},
        "status": {
            "allocatable": {"cpu": "1930m", "memory": "7Gi", "pods": "29"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    }))
    .unwrap()
}

fn pod(name: &str, node: &str, cpu: &str, annotations: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
            "labels": {"app": name}, "annotations": annotations,
            "creationTimestamp": "2026-03-02T09:00:00Z"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x",
            "resources": {"requests": {"cpu": cpu, "memory": "256Mi"}}}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .unwrap()
}

#[test]
fn a_change_in_a_nodes_pods_is_stamped_once_after_the_first_look() {
    let claims = [claim("general-a", "n-a"), claim("general-b", "n-b")];
    let nodes = [node("n-a", "general-a"), node("n-b", "general-b")];
    let mut pods = vec![
        pod("web-1", "n-a", "100m", json!({})),
        pod("web-2", "n-b", "100m", json!({})),
    ];
    let mut sets = PodSets::default();
    // The first look only records what is there.
    assert!(pod_events(&claims, &nodes, &pods, &mut sets, now()).is_empty());
    assert!(pod_events(&claims, &nodes, &pods, &mut sets, now()).is_empty());
    // A pod leaves n-b: its claim is stamped, once.
    pods.pop();
    assert_eq!(
        pod_events(&claims, &nodes, &pods, &mut sets, now()),
        ["general-b"]
    );
    assert!(pod_events(&claims, &nodes, &pods, &mut sets, now()).is_empty());
    // A DaemonSet pod does not count; a pod created again under the same name does.
    let mut ds = pod("agent", "n-a", "10m", json!({}));
    ds.metadata.owner_references = Some(vec![
        serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "name": "agent", "uid": "d", "controller": true}))
        .unwrap(),
    ]);
    pods.push(ds);
    assert!(pod_events(&claims, &nodes, &pods, &mut sets, now()).is_empty());
    pods[0].metadata.uid = Some("uid-again".into());
    assert_eq!(
        pod_events(&claims, &nodes, &pods, &mut sets, now()),
        ["general-a"]
    );
}

#[test]
fn a_change_right_after_the_last_stamp_is_written_once_the_dedupe_passes() {
    let mut c = claim("general-a", "n-a");
    let nodes = [node("n-a", "general-a")];
    let mut pods = vec![pod("web-1", "n-a", "100m", json!({}))];
    let mut sets = PodSets::default();
    assert!(pod_events(std::slice::from_ref(&c), &nodes, &pods, &mut sets, now()).is_empty());
    if let Some(s) = c.status.as_mut() {
        s.last_pod_event_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(
            "2026-03-02T11:59:58Z",
        )));
    }
    pods.clear();
    let claims = std::slice::from_ref(&c);
    assert!(
        pod_events(claims, &nodes, &pods, &mut sets, now()).is_empty(),
        "2 s after the last stamp: later"
    );
    let later = at("2026-03-02T12:00:04Z");
    assert_eq!(
        pod_events(claims, &nodes, &pods, &mut sets, later),
        ["general-a"],
        "the change is not lost"
    );
}

#[test]
fn a_node_is_stable_since_the_latest_of_its_pod_events_and_initialization() {
    let mut c = claim("general-a", "n-a");
    let p = pod("web-1", "n-a", "100m", json!({}));
    // Initialized at 11:00, the pod created at 09:00: 11:00.
    assert_eq!(
        last_change(&c, &[&p], None),
        Some(at("2026-03-02T11:00:00Z"))
    );
    if let Some(s) = c.status.as_mut() {
        s.last_pod_event_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(
            "2026-03-02T11:30:00Z",
        )));
    }
    assert_eq!(
        last_change(&c, &[&p], None),
        Some(at("2026-03-02T11:30:00Z"))
    );
    let mut young = p.clone();
    young.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        at("2026-03-02T11:45:00Z"),
    ));
    assert_eq!(
        last_change(&c, &[&p, &young], None),
        Some(at("2026-03-02T11:45:00Z")),
        "a pod created after the last stamp (a restart missed its event)"
    );
    assert_eq!(
        last_change(&c, &[&p], Some(now())),
        Some(now()),
        "what this pass wrote"
    );
    let mut not_yet = claim("general-b", "n-b");
    if let Some(s) = not_yet.status.as_mut() {
        s.conditions.retain(|x| x.type_ != INITIALIZED);
    }
    assert_eq!(last_change(&not_yet, &[], None), None);
}

#[test]
fn consolidation_waits_for_a_settled_cluster_and_a_pool_that_wants_it() {
    let under = policy("    consolidate when-empty-or-underutilized after 1m");
    let empty_only = policy("    consolidate when-empty after 1m");
    let never = policy("    consolidate when-empty-or-underutilized after never");
    let claims = [claim("general-a", "n-a")];
    assert_eq!(hold(&under, &claims, false), None);
    assert!(hold(&empty_only, &claims, false).is_some());
    assert!(hold(&never, &claims, false).is_some());
    assert!(
        hold(&under, &claims, true)
            .unwrap()
            .contains("waiting for room")
    );
    let mut deleting = claim("general-b", "n-b");
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
    assert_eq!(
        hold(&under, &[claims[0].clone(), deleting], false).as_deref(),
        Some("claim general-b is being deleted")
    );
    let mut replacing = claim("general-c", "n-c");
    replacing.metadata.annotations =
        Some([(REPLACING.to_string(), "general-d".to_string())].into());
    assert_eq!(
        hold(&under, &[replacing], false).as_deref(),
        Some("claim general-c is being replaced")
    );
    let mut launching = claim("general-e", "n-e");
    launching.status = Some(Default::default());
    assert_eq!(
        hold(&under, &[launching], false).as_deref(),
        Some("claim general-e is not initialized yet")
    );
    let t = Instant::now();
    assert!(due(None, t, Duration::from_secs(10)));
    assert!(!due(
        Some(t),
        t + Duration::from_secs(9),
        Duration::from_secs(10)
    ));
    assert!(due(
        Some(t),
        t + Duration::from_secs(10),
        Duration::from_secs(10)
    ));
}

#[test]
fn budgets_count_the_claims_going_already() {
    let p = policy("    budget 1 reasons [underutilized]\n    budget 2");
    let mut claims = vec![claim("general-a", "n-a"), claim("general-b", "n-b")];
    let b = budgets(&p, &claims, now());
    assert_eq!(
        b["general"],
        BudgetLeft {
            empty: Some(2),
            underutilized: Some(1)
        }
    );
    claims[0].metadata.annotations =
        Some([(REPLACING.to_string(), "general-x".to_string())].into());
    let b = budgets(&p, &claims, now());
    assert_eq!(
        b["general"],
        BudgetLeft {
            empty: Some(1),
            underutilized: Some(0)
        }
    );
}

/// Two m5.large nodes of ours and one node of someone else's, each with small pods.
fn cluster(dnd_on_a: bool) -> (ClusterObjects, Vec<NodeClaim>) {
    let mut foreign = node("n-other", "x");
    if let Some(l) = foreign.metadata.labels.as_mut() {
        l.remove("nodewright.io/pool");
    }
    let a_annotations = if dnd_on_a {
        json!({"karpenter.sh/do-not-disrupt": "true"})
    } else {
        json!({})
    };
    let objs = ClusterObjects {
        nodes: vec![node("n-a", "general-a"), node("n-b", "general-b"), foreign],
        pods: vec![
            pod("a-1", "n-a", "200m", a_annotations),
            pod("b-1", "n-b", "200m", json!({})),
            pod("b-2", "n-b", "200m", json!({})),
            pod("o-1", "n-other", "1500m", json!({})),
        ],
        ..Default::default()
    };
    (
        objs,
        vec![claim("general-a", "n-a"), claim("general-b", "n-b")],
    )
}

fn decided(
    p: &PolicySet,
    objs: &ClusterObjects,
    claims: &[NodeClaim],
    pdbs: &[PodDisruptionBudget],
) -> Consolidation {
    let cat = Catalog::embedded().unwrap();
    let i = input(p, &cat, None, objs, pdbs, claims, &HashMap::new(), now()).unwrap();
    decide(&i, &ConsolidationOptions::default())
}

#[test]
fn the_least_used_node_of_ours_goes_and_a_node_without_a_claim_never_does() {
    let p = policy("    consolidate when-empty-or-underutilized after 30m\n    budget 100%");
    let (objs, claims) = cluster(false);
    let d = decided(&p, &objs, &claims, &[]);
    let m = moves(d.clone());
    assert_eq!(m.len(), 1, "{d:?}");
    assert_eq!(m[0].remove, ["n-a"], "one pod moves rather than two");
    assert!(m[0].launch.is_empty(), "its pod fits on n-b");
    assert_eq!(m[0].pods, ["shop/a-1"]);
    assert!((m[0].saving_per_hour - 0.096).abs() < 1e-9, "{m:?}");
    assert!(
        !d.moves
            .iter()
            .any(|m| m.remove.contains(&"n-other".to_string())),
        "not ours"
    );
}

#[test]
fn a_do_not_disrupt_pod_keeps_its_node_and_the_other_one_goes() {
    let p = policy("    consolidate when-empty-or-underutilized after 30m\n    budget 100%");
    let (objs, claims) = cluster(true);
    let d = decided(&p, &objs, &claims, &[]);
    let m = moves(d.clone());
    assert_eq!(m.len(), 1, "{d:?}");
    assert_eq!(m[0].remove, ["n-b"]);
    let blocked: Vec<(&str, &str)> = d
        .blocked
        .iter()
        .map(|b| (b.node.as_str(), b.reason.as_str()))
        .collect();
    assert_eq!(blocked, [("n-a", "do-not-disrupt: pod shop/a-1")]);
    assert!(worth_telling(blocked[0].1));
}

#[test]
fn a_pdb_that_allows_no_eviction_keeps_its_node() {
    let p = policy("    consolidate when-empty-or-underutilized after 30m\n    budget 100%");
    let (objs, claims) = cluster(false);
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "a-1", "namespace": "shop"},
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "a-1"}}}
    }))
    .unwrap();
    let d = decided(&p, &objs, &claims, &[pdb]);
    let m = moves(d.clone());
    assert_eq!(m.len(), 1, "{d:?}");
    assert_eq!(m[0].remove, ["n-b"]);
    assert!(
        d.blocked
            .iter()
            .any(|b| b.node == "n-a" && b.reason.contains("shop/a-1") && worth_telling(&b.reason)),
        "{d:?}"
    );
}

#[test]
fn a_node_changed_more_recently_than_consolidate_after_waits() {
    // Initialized at 11:00, now 12:00: an hour; the pool waits two.
    let p = policy("    consolidate when-empty-or-underutilized after 2h\n    budget 100%");
    let (objs, claims) = cluster(false);
    let d = decided(&p, &objs, &claims, &[]);
    assert!(moves(d.clone()).is_empty(), "{d:?}");
    assert!(
        d.blocked.iter().any(|b| b.node == "n-a"
            && b.reason.contains("unchanged for 3600s")
            && !worth_telling(&b.reason)),
        "{d:?}"
    );
    // Claims not Initialized are not candidates at all.
    let mut claims = claims;
    for c in &mut claims {
        if let Some(s) = c.status.as_mut() {
            s.conditions.retain(|x| x.type_ != INITIALIZED);
        }
    }
    let p = policy("    consolidate when-empty-or-underutilized after 30m\n    budget 100%");
    let d = decided(&p, &objs, &claims, &[]);
    assert!(d.moves.is_empty() && d.blocked.is_empty(), "{d:?}");
}
