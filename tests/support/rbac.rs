//! The controller's RBAC as the Helm chart installs it, for tests that run the
//! controller with its own service account's token (tests/controller.rs).
//!
//! The rules come from the files the chart's templates/rbac.yaml includes
//! (`charts/nodewright/files/*-rules.yaml`): one source, so a permission the
//! controller needs and the chart lacks fails a test. The names follow the chart
//! installed as release `nodewright` (its full name is then `nodewright`).
#![allow(
    dead_code,
    reason = "each test binary includes this module and uses part of it"
)]

/// The ClusterRole's rules.
pub const CLUSTER_RULES: &str =
    include_str!("../../charts/nodewright/files/clusterrole-rules.yaml");
/// The leader-election Role's rules (in the controller's namespace).
pub const LEADER_RULES: &str =
    include_str!("../../charts/nodewright/files/leader-election-rules.yaml");

/// Namespace, ServiceAccount, ClusterRole + binding and the leader-election Role +
/// binding, as JSON objects in creation order.
pub fn objects(namespace: &str, service_account: &str) -> Vec<serde_json::Value> {
    let rules = |text: &str| -> serde_json::Value {
        serde_yaml_ng::from_str(text).expect("the chart's RBAC rules parse")
    };
    let subjects = serde_json::json!([
        {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
    ]);
    let leader = format!("{service_account}-leader-election");
    vec![
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": service_account, "namespace": namespace}}),
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": service_account}, "rules": rules(CLUSTER_RULES)}),
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": service_account},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": service_account},
            "subjects": subjects}),
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": leader, "namespace": namespace}, "rules": rules(LEADER_RULES)}),
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": leader, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": leader},
            "subjects": subjects}),
    ]
}
