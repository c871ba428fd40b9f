//! The cluster's objects as the planner's input.
//!
//! The controller reads Nodes, Pods, DaemonSets, volumes, storage and
//! priority classes and Namespaces from its watch caches (`stores`), and
//! hands them, typed, to the same loader `nodewright plan` reads YAML files
//! with (`workload::load_api`).
//! One reader means one set of semantics: a pod is grouped, counted, and
//! refused for the same reasons offline and in the cluster.
//!
//! Which pending pods are provisioned follows Karpenter: only those the
//! kube-scheduler has marked unschedulable (`PodScheduled=False`, reason
//! `Unschedulable`), that are not nominated to a node by preemption, and
//! not owned by a DaemonSet. A pod the scheduler has not looked at yet may
//! still fit an existing node.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Everything one pass reads from the API (the loader's typed input).
pub type ClusterObjects = crate::workload::ApiObjects;

/// Taints a node carries only while it starts (the apiserver adds
/// `not-ready` to every new Node; the node lifecycle controller removes it
/// once the kubelet reports Ready). The scheduler will place pods there
/// soon, so planning treats such a node as the room it is about to be,
/// as Karpenter does, instead of launching another node beside it.
pub const EPHEMERAL_TAINTS: &[&str] = &[
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
    "node.cloudprovider.kubernetes.io/uninitialized",
];

/// "namespace/name" of a pod.
pub fn pod_key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or("default"),
        p.metadata.name.as_deref().unwrap_or("")
    )
}

fn bound(p: &Pod) -> bool {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

fn terminal(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn owned_by(meta: &ObjectMeta, kind: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.kind == kind)
}

/// True for a pending pod nodewright should find room for (see the module doc).
pub fn is_provisionable(p: &Pod) -> bool {
    if bound(p) || terminal(p) || p.metadata.deletion_timestamp.is_some() {
        return false;
    }
    if owned_by(&p.metadata, "DaemonSet") || owned_by(&p.metadata, "Node") {
        return false;
    }
    let Some(status) = &p.status else {
        return false;
    };
    if status
        .nominated_node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty())
    {
        return false;
    }
    status.conditions.iter().flatten().any(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    })
}

/// True for a pod that makes its node busy: bound, not terminal, and neither
/// a DaemonSet's nor a static (mirror) pod.
pub fn is_workload_pod(p: &Pod) -> bool {
    bound(p)
        && !terminal(p)
        && !owned_by(&p.metadata, "DaemonSet")
        && !p
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"))
}

/// The objects as the planner should see them: bound pods are kept (they
/// use their nodes' capacity and count for topology); pending pods only
/// when provisionable; nodes lose their [`EPHEMERAL_TAINTS`].
pub fn prepare(objs: &ClusterObjects) -> ClusterObjects {
    let mut out = objs.clone();
    out.pods
        .retain(|p| (bound(p) && !terminal(p)) || is_provisionable(p));
    for n in &mut out.nodes {
        if let Some(t) = n.spec.as_mut().and_then(|s| s.taints.as_mut()) {
            t.retain(|t| !EPHEMERAL_TAINTS.contains(&t.key.as_str()));
        }
    }
    out
}

/// Loads a pass's objects with the planner's own loader.
pub fn load(
    objs: &ClusterObjects,
) -> Result<crate::workload::Loaded, crate::workload::WorkloadError> {
    crate::workload::load_api("cluster (API objects)", prepare(objs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::LoadOptions;
    use k8s_openapi::api::core::v1::Node;

    /// The objects as one `v1/List` (the reference reading, through YAML).
    fn as_list_yaml(o: &ClusterObjects) -> String {
        let mut items: Vec<serde_json::Value> = Vec::new();
        let mut add = |v: serde_json::Result<serde_json::Value>| {
            items.push(v.unwrap_or_else(|e| panic!("{e}")))
        };
        o.namespaces
            .iter()
            .for_each(|x| add(serde_json::to_value(x)));
        o.nodes.iter().for_each(|x| add(serde_json::to_value(x)));
        o.daemonsets
            .iter()
            .for_each(|x| add(serde_json::to_value(x)));
        o.pods.iter().for_each(|x| add(serde_json::to_value(x)));
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
        serde_yaml_ng::to_string(&list).unwrap_or_else(|e| panic!("{e}"))
    }

    fn pod(yaml: &str) -> Pod {
        serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    const UNSCHEDULABLE: &str = "
status:
  phase: Pending
  conditions:
  - {type: PodScheduled, status: 'False', reason: Unschedulable}
";

    fn web(name: &str, status: &str) -> Pod {
        pod(&format!(
            "metadata: {{name: {name}, namespace: shop, labels: {{app: web}}}}
spec:
  containers:
  - name: c
    image: x
    resources: {{requests: {{cpu: 500m, memory: 1Gi}}}}
{status}"
        ))
    }

    #[test]
    fn only_pods_the_scheduler_gave_up_on_are_provisioned() {
        assert!(is_provisionable(&web("a", UNSCHEDULABLE)));
        assert!(
            !is_provisionable(&web("b", "status: {phase: Pending}")),
            "not looked at yet"
        );
        let nominated = format!("{UNSCHEDULABLE}  nominatedNodeName: n1\n");
        assert!(
            !is_provisionable(&web("c", &nominated)),
            "preemption in progress"
        );
        let mut ds = web("d", UNSCHEDULABLE);
        ds.metadata.owner_references = Some(vec![
            serde_json::from_value(serde_json::json!({
                "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                "uid": "u", "controller": true
            }))
            .unwrap_or_else(|e| panic!("{e}")),
        ]);
        assert!(!is_provisionable(&ds));
        assert!(!is_workload_pod(&ds), "unbound");
        let mut bound = web("e", "status: {phase: Running}");
        if let Some(s) = bound.spec.as_mut() {
            s.node_name = Some("n1".into());
        }
        assert!(is_workload_pod(&bound));
        assert!(!is_provisionable(&bound));
    }

    #[test]
    fn the_snapshot_loads_as_the_planner_reads_files() {
        let node: Node = serde_yaml_ng::from_str(
            "metadata: {name: n1, labels: {topology.kubernetes.io/zone: us-east-1a}, managedFields: [{manager: kubelet}]}
spec:
  taints:
  - {key: node.kubernetes.io/not-ready, effect: NoSchedule}
  - {key: dedicated, value: infra, effect: NoSchedule}
status: {allocatable: {cpu: '2', memory: 8Gi, pods: '29'}}",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut running = web("r", "status: {phase: Running}");
        if let Some(s) = running.spec.as_mut() {
            s.node_name = Some("n1".into());
        }
        let objs = ClusterObjects {
            nodes: vec![node],
            pods: vec![
                web("a", UNSCHEDULABLE),
                web("b", UNSCHEDULABLE),
                web("waiting", "status: {phase: Pending}"),
                running,
                web("done", "status: {phase: Succeeded}"),
            ],
            ..Default::default()
        };
        let w = load(&objs).unwrap_or_else(|e| panic!("{e}")).workload;
        // The same objects as YAML through `load_text` read the same.
        let text = as_list_yaml(&prepare(&objs));
        let via_text = crate::workload::load_text("cluster", &text, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{e}"))
            .workload;
        assert_eq!(w, via_text);
        assert_eq!(w.classes.len(), 1);
        assert_eq!(w.classes[0].pod_names, ["a", "b"]);
        assert_eq!(w.nodes.len(), 1);
        assert_eq!(w.nodes[0].pods.len(), 1);
        assert_eq!(w.nodes[0].used.cpu_milli, 500);
        let taints: Vec<&str> = w.nodes[0].taints.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(
            taints,
            ["dedicated"],
            "not-ready is dropped, a real taint kept"
        );
    }

    #[test]
    fn an_unreadable_object_is_named_in_the_error() {
        let node = |yaml: &str| -> Node {
            serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
        };
        let objs = ClusterObjects {
            nodes: vec![
                node(
                    "metadata: {name: good}\nstatus: {allocatable: {cpu: '2', memory: 8Gi, pods: '29'}}",
                ),
                node("metadata: {name: bad-node}"),
            ],
            ..Default::default()
        };
        let e = match load(&objs) {
            Ok(_) => panic!("a Node without allocatable or capacity must be refused"),
            Err(e) => e,
        };
        let input = e.input().unwrap_or_else(|| panic!("an input error: {e}"));
        assert_eq!(
            (input.file.as_str(), input.line, input.col),
            ("cluster (API objects)", 2, 1)
        );
        assert!(
            input
                .message
                .contains("Node bad-node has neither status.allocatable"),
            "{}",
            input.message
        );
        let rendered = format!("{:?}", miette::Report::new(e));
        assert!(
            rendered.contains("Node bad-node"),
            "the listing line is shown: {rendered}"
        );
    }
}
