//! The Helm chart (`charts/nodewright/`) and the IAM policy (`deploy/iam-policy.json`).
//!
//! `helm` is built from Go modules by `scripts/helm-bin.sh` (pinned in
//! `tools/helm/go.mod`); `scripts/test.sh` puts its folder in `$NODEWRIGHT_HELM_BIN`.
//! Without it the helm tests panic with instructions: never skipped.
//!
//! The chart is rendered with the default values and with the value sets in
//! `tests/chart/`, linted, and every rendered object goes to a real kube-apiserver as a
//! server-side apply with `dryRun=All` and strict field validation, so the API
//! server's own schemas check it.
#![cfg(feature = "controller")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test"
)]

#[path = "support/kube.rs"]
mod kube_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use kube::api::{Api, DynamicObject, Patch, PatchParams, ValidationDirective};
use serde::Deserialize;

const CHART: &str = "charts/nodewright";
/// Value sets besides the defaults: the file, and what it exercises.
const VALUE_SETS: [&str; 2] = [
    // IRSA annotation, ServiceMonitor, text logs, 3 replicas, live catalog, region.
    "tests/chart/values-irsa-monitoring.yaml",
    // Custom policies + a script, tolerations, nodeSelector, explicit endpoint/CA, 1 replica.
    "tests/chart/values-custom-policies.yaml",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn helm_bin() -> PathBuf {
    let dir = std::env::var_os("NODEWRIGHT_HELM_BIN").unwrap_or_else(|| {
        panic!(
            "NODEWRIGHT_HELM_BIN is not set: run the chart tests with `bash scripts/test.sh --test chart` \
             (it builds helm with scripts/helm-bin.sh), or set it to the folder that script prints"
        )
    });
    let helm = PathBuf::from(dir).join("helm");
    assert!(
        helm.is_file(),
        "no helm at {} (rebuild with bash scripts/helm-bin.sh)",
        helm.display()
    );
    helm
}

/// Runs helm in the repository's root, with no user configuration or plugins.
fn helm(args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().expect("helm home");
    Command::new(helm_bin())
        .args(args)
        .current_dir(root())
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .expect("run helm")
}

/// The value arguments of one set: the defaults plus a cluster name, or a values file.
fn value_args(set: Option<&str>) -> Vec<String> {
    match set {
        None => vec!["--set".into(), "clusterName=chart-test".into()],
        Some(file) => vec!["-f".into(), file.into()],
    }
}

/// `helm template` of the chart in `namespace`; the CRDs in `crds/` too.
fn render(set: Option<&str>, namespace: &str) -> Vec<serde_json::Value> {
    let mut args: Vec<String> = vec![
        "template".into(),
        "nodewright".into(),
        CHART.into(),
        "--namespace".into(),
        namespace.into(),
        "--include-crds".into(),
    ];
    args.extend(value_args(set));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = helm(&argv);
    assert!(
        out.status.success(),
        "helm {}: {}",
        argv.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde_json::Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn sets() -> Vec<Option<&'static str>> {
    std::iter::once(None)
        .chain(VALUE_SETS.iter().copied().map(Some))
        .collect()
}

fn of_kind<'a>(objs: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

#[test]
fn helm_lint_passes_for_every_value_set() {
    for set in sets() {
        let mut args = vec!["lint".to_string(), CHART.into(), "--strict".into()];
        args.extend(value_args(set));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = helm(&argv);
        assert!(
            out.status.success(),
            "helm lint {set:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn an_empty_cluster_name_fails_with_the_charts_message() {
    for extra in [&["--set", "clusterName="][..], &[][..]] {
        let mut argv = vec!["template", "nodewright", CHART];
        argv.extend_from_slice(extra);
        let out = helm(&argv);
        assert!(!out.status.success(), "rendered without a cluster name");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("clusterName is required"),
            "unexpected error: {err}"
        );
    }
}

/// What each value set is meant to change shows in the rendered objects.
#[test]
fn value_sets_render_what_they_set() {
    let default = render(None, "nodewright");
    let dep = of_kind(&default, "Deployment")[0];
    let pod = &dep["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(dep["spec"]["replicas"], 2);
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--leader-elect=true"), "{args:?}");
    assert!(args.contains(&"--lease-name=nodewright-controller"));
    // No queue by default: no interruption handling.
    assert!(
        !args.iter().any(|a| a.starts_with("--interruption-queue")),
        "{args:?}"
    );
    let env = |c: &serde_json::Value, name: &str| {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
    };
    assert_eq!(env(c, "NODEWRIGHT_LOG_FORMAT").unwrap()["value"], "json");
    assert_eq!(env(c, "NODEWRIGHT_CLUSTER").unwrap()["value"], "chart-test");
    assert!(env(c, "NODEWRIGHT_CLUSTER_ENDPOINT").is_none());
    assert_eq!(
        env(c, "POD_NAMESPACE").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let terms = &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0]["matchExpressions"];
    assert!(
        terms
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "nodewright.io/pool" && t["operator"] == "DoesNotExist"),
        "{terms}"
    );
    assert_eq!(of_kind(&default, "PodDisruptionBudget").len(), 1);
    assert!(of_kind(&default, "ServiceMonitor").is_empty());

    let irsa = render(Some(VALUE_SETS[0]), "nodewright");
    let sa = of_kind(&irsa, "ServiceAccount")[0];
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::111122223333:role/nodewright-prod-east"
    );
    assert_eq!(of_kind(&irsa, "ServiceMonitor").len(), 1);
    let dep = of_kind(&irsa, "Deployment")[0];
    assert_eq!(dep["spec"]["replicas"], 3);
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(env(c, "NODEWRIGHT_LOG_FORMAT").unwrap()["value"], "text");
    assert_eq!(env(c, "AWS_REGION").unwrap()["value"], "us-east-1");
    let args_of = |c: &serde_json::Value| -> Vec<String> {
        c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        args_of(c).contains(&"--interruption-queue=nodewright-prod-east".to_string()),
        "{:?}",
        args_of(c)
    );

    let custom = render(Some(VALUE_SETS[1]), "nodewright");
    let dep = of_kind(&custom, "Deployment")[0];
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(pod["tolerations"].as_array().unwrap().len(), 2);
    let c = &pod["containers"][0];
    assert!(
        env(c, "NODEWRIGHT_CLUSTER_ENDPOINT").unwrap()["value"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    assert!(env(c, "NODEWRIGHT_CLUSTER_CA").is_some());
    // One replica, no Lease: no Role, no PDB.
    assert!(of_kind(&custom, "Role").is_empty());
    assert!(of_kind(&custom, "PodDisruptionBudget").is_empty());
}

/// The ClusterRole and Role the chart installs are exactly the rules in
/// `charts/nodewright/files/`, the same files tests/controller.rs builds its RBAC from.
#[test]
fn the_chart_rbac_is_the_rules_files() {
    let objs = render(None, "nodewright");
    for (kind, file) in [
        ("ClusterRole", "clusterrole-rules.yaml"),
        ("Role", "leader-election-rules.yaml"),
    ] {
        let text =
            std::fs::read_to_string(root().join(CHART).join("files").join(file)).expect(file);
        let rules: serde_json::Value = serde_yaml_ng::from_str(&text).expect(file);
        let rendered = of_kind(&objs, kind);
        assert_eq!(rendered.len(), 1, "{kind}");
        assert_eq!(rendered[0]["rules"], rules, "{kind} vs files/{file}");
    }
}

/// The chart ships the CRDs in deploy/crds/, byte for byte.
#[test]
fn the_chart_crds_are_deploy_crds() {
    let names = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".yaml"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let chart = root().join(CHART).join("crds");
    let deploy = root().join("deploy/crds");
    let in_chart = names(&chart);
    assert!(!in_chart.is_empty(), "{} has no CRDs", chart.display());
    if !deploy.is_dir() {
        // Until deploy/crds/ exists there is nothing to compare with.
        eprintln!("deploy/crds/ does not exist: comparison skipped");
        return;
    }
    assert_eq!(in_chart, names(&deploy), "chart crds/ vs deploy/crds/");
    for n in &in_chart {
        assert!(
            std::fs::read(chart.join(n)).unwrap() == std::fs::read(deploy.join(n)).unwrap(),
            "charts/nodewright/crds/{n} differs from deploy/crds/{n}: copy it over"
        );
    }
}

/// The policies and scripts each value set installs compile, laid out as the pod sees
/// them (policies at the top of the folder, scripts under `scripts/`).
#[test]
fn the_installed_policies_compile() {
    for set in sets() {
        let objs = render(set, "nodewright");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("scripts")).unwrap();
        for cm in of_kind(&objs, "ConfigMap") {
            let name = cm["metadata"]["name"].as_str().unwrap();
            let sub = if name.ends_with("-scripts") {
                "scripts"
            } else {
                ""
            };
            for (key, text) in cm["data"].as_object().unwrap() {
                std::fs::write(dir.path().join(sub).join(key), text.as_str().unwrap()).unwrap();
            }
        }
        let (policy, _) = nodewright::import::load_policy_set(&[dir.path().to_path_buf()])
            .unwrap_or_else(|e| panic!("{set:?}: the chart's policies do not compile: {e:?}"));
        assert!(!policy.pools.is_empty(), "{set:?}: no pools");
    }
}

/// Every rendered object, for every value set, passes a server-side dry-run apply with
/// strict field validation on a real kube-apiserver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_objects_pass_a_server_side_dry_run() {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let kube = kube_support::kube_exclusive().await;
    let client = kube.client().await;
    let ns = "chart-test";
    let pp = PatchParams::apply("nodewright-chart-test").force();
    // The namespace exists for real: a dry-run create in a missing namespace is refused.
    Api::<Namespace>::all(client.clone())
        .patch(
            ns,
            &pp,
            &Patch::Apply(serde_json::json!({
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}
            })),
        )
        .await
        .expect("namespace");
    // The ServiceMonitor kind exists only with prometheus-operator's CRD. A minimal
    // stand-in (any fields accepted) lets the object through the API server's
    // metadata checks; its spec is not validated by it.
    let sm_crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"kind": "ServiceMonitor", "plural": "servicemonitors", "singular": "servicemonitor", "listKind": "ServiceMonitorList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))
    .unwrap();
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let mut wanted = vec![sm_crd];
    // The chart's CRDs for real: a release installs them before anything else.
    for obj in render(None, ns) {
        if obj["kind"] == "CustomResourceDefinition" {
            wanted.push(serde_json::from_value(obj).expect("CRD"));
        }
    }
    for crd in &wanted {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(&name, &pp, &Patch::Apply(crd))
            .await
            .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
    }
    let mut dry = PatchParams::apply("nodewright-chart-test")
        .dry_run()
        .force();
    dry.field_validation = Some(ValidationDirective::Strict);
    let mut applied: BTreeMap<String, usize> = BTreeMap::new();
    for set in sets() {
        for obj in render(set, ns) {
            if obj["kind"] == "CustomResourceDefinition" {
                continue;
            }
            let gvk = kube::api::GroupVersionKind::try_from(
                &serde_json::from_value::<kube::api::TypeMeta>(obj.clone()).expect("type meta"),
            )
            .expect("gvk");
            // A freshly created CRD may take a moment to be served.
            let mut tries = 0;
            let (ar, caps) = loop {
                match kube::discovery::pinned_kind(&client, &gvk).await {
                    Ok(found) => break found,
                    Err(e) if tries < 50 => {
                        tries += 1;
                        let _ = e;
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                    Err(e) => panic!("{gvk:?} is not served: {e}"),
                }
            };
            let api: Api<DynamicObject> = match caps.scope {
                kube::discovery::Scope::Namespaced => Api::namespaced_with(
                    client.clone(),
                    obj["metadata"]["namespace"].as_str().unwrap_or(ns),
                    &ar,
                ),
                kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &ar),
            };
            let name = obj["metadata"]["name"].as_str().expect("name").to_string();
            api.patch(&name, &dry, &Patch::Apply(&obj))
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "{set:?}: the API server refuses {} {name}: {e}\n{}",
                        gvk.kind,
                        serde_yaml_ng::to_string(&obj).unwrap()
                    )
                });
            *applied.entry(gvk.kind).or_default() += 1;
        }
    }
    for kind in [
        "ServiceAccount",
        "ConfigMap",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ServiceMonitor",
    ] {
        assert!(
            applied.contains_key(kind),
            "no {kind} was checked: {applied:?}"
        );
    }
    // Dry runs leave nothing behind.
    let deps: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), ns);
    assert!(
        deps.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

// ------------------------------------------------------------------ IAM policy

/// The AWS API calls the code makes: `client.describe_subnets()` and the like in
/// src/ (AWS SDK fluent builders), as IAM action names (`ec2:DescribeSubnets`).
fn aws_calls_in_source() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("src"), &mut files);
    let mut calls = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        if !text.contains("aws_sdk_") {
            continue;
        }
        // An `aws_sdk_iam` module talks to IAM through `client`; every other to EC2.
        let default_service = if text.contains("aws_sdk_iam::") {
            "iam"
        } else {
            "ec2"
        };
        // `<client>.<operation>()` where the receiver is an SDK client: `client`,
        // `self.client`, `ec2`, `ssm`, `sqs`, possibly across a line break.
        let bytes = text.as_bytes();
        for recv in ["client", "ec2", "ssm", "sqs"] {
            let mut from = 0;
            while let Some(i) = text[from..].find(recv) {
                let at = from + i;
                from = at + recv.len();
                let before_ok =
                    at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
                if !before_ok {
                    continue;
                }
                let rest = text[from..].trim_start();
                let Some(rest) = rest.strip_prefix('.') else {
                    continue;
                };
                let op: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                if op.is_empty() || !rest[op.len()..].starts_with("()") {
                    continue;
                }
                let service = match op.as_str() {
                    "get_parameter" | "get_parameters" | "get_parameters_by_path" => "ssm",
                    "receive_message"
                    | "delete_message"
                    | "get_queue_url"
                    | "get_queue_attributes" => "sqs",
                    _ if recv == "ssm" => "ssm",
                    _ if recv == "sqs" => "sqs",
                    _ => default_service,
                };
                // Only operation names (verbs AWS uses), not accessors like `client.config()`.
                let verbs = [
                    "create_",
                    "describe_",
                    "run_",
                    "terminate_",
                    "delete_",
                    "get_",
                    "modify_",
                    "receive_",
                    "send_",
                    "cancel_",
                    "add_",
                    "remove_",
                    "list_",
                ];
                if !verbs.iter().any(|v| op.starts_with(v)) {
                    continue;
                }
                let pascal: String = op
                    .split('_')
                    .map(|w| {
                        let mut c = w.chars();
                        c.next()
                            .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                            .unwrap_or_default()
                    })
                    .collect();
                calls.insert(format!("{service}:{pascal}"));
            }
        }
    }
    calls
}

fn statements() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(root().join("deploy/iam-policy.json")).expect("policy");
    let v: serde_json::Value = serde_json::from_str(&text).expect("deploy/iam-policy.json is JSON");
    assert_eq!(v["Version"], "2012-10-17");
    v["Statement"].as_array().expect("Statement").clone()
}

fn actions(s: &serde_json::Value) -> Vec<String> {
    match &s["Action"] {
        serde_json::Value::String(a) => vec![a.clone()],
        serde_json::Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
        other => panic!("Action: {other}"),
    }
}

#[test]
fn the_iam_policy_allows_every_aws_call_the_code_makes() {
    let calls = aws_calls_in_source();
    // The scan finds the calls it must (else it would pass by finding nothing).
    for must in [
        "ec2:CreateFleet",
        "ec2:TerminateInstances",
        "ec2:DescribeInstances",
        "sqs:GetQueueUrl",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
    ] {
        assert!(calls.contains(must), "scan missed {must}: {calls:?}");
    }
    let allowed: BTreeSet<String> = statements()
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(actions)
        .collect();
    for a in &allowed {
        assert!(
            !a.contains('*'),
            "{a}: name actions one by one, no wildcards"
        );
    }
    let missing: Vec<&String> = calls.iter().filter(|c| !allowed.contains(*c)).collect();
    assert!(
        missing.is_empty(),
        "deploy/iam-policy.json does not allow {missing:?} (the code calls them)"
    );
    for a in [
        "ssm:GetParameter",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "iam:PassRole",
        "ec2:DeleteLaunchTemplate",
        "ec2:CreateTags",
    ] {
        assert!(allowed.contains(a), "{a} is not allowed");
    }
}

#[test]
fn mutating_iam_statements_are_bound_to_the_cluster_tag() {
    let mut seen = BTreeSet::new();
    for s in statements() {
        let acts = actions(&s);
        let cond = &s["Condition"]["StringEquals"];
        for a in &acts {
            let name = a.split(':').nth(1).unwrap();
            let reads = ["Describe", "Get"].iter().any(|p| name.starts_with(p));
            let resources = match &s["Resource"] {
                serde_json::Value::String(r) => vec![r.clone()],
                serde_json::Value::Array(r) => {
                    r.iter().map(|x| x.as_str().unwrap().to_string()).collect()
                }
                other => panic!("Resource: {other}"),
            };
            if reads {
                continue;
            }
            if ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"].contains(&a.as_str())
                || a.starts_with("iam:")
                    && (a.contains("Delete") || a.contains("Remove") || a.contains("AddRole"))
            {
                assert_eq!(
                    cond["aws:ResourceTag/nodewright.io/cluster"], "${CLUSTER_NAME}",
                    "{a} must be limited to the cluster's own resources"
                );
                seen.insert(a.clone());
            }
            if a == "ec2:CreateTags"
                || a == "ec2:CreateLaunchTemplate"
                || a == "iam:CreateInstanceProfile"
            {
                assert_eq!(
                    cond["aws:RequestTag/nodewright.io/cluster"], "${CLUSTER_NAME}",
                    "{a} must require the cluster tag"
                );
                seen.insert(a.clone());
            }
            if a == "ec2:CreateFleet" || a == "ec2:RunInstances" {
                // New instances carry the tag; launch templates are the cluster's own;
                // existing images, subnets and security groups are only read.
                for r in &resources {
                    if r.contains(":instance/") {
                        assert_eq!(
                            cond["aws:RequestTag/nodewright.io/cluster"], "${CLUSTER_NAME}",
                            "{a} on {r}"
                        );
                        seen.insert(format!("{a} instance"));
                    }
                    if r.contains(":launch-template/") {
                        assert_eq!(
                            cond["aws:ResourceTag/nodewright.io/cluster"], "${CLUSTER_NAME}",
                            "{a} on {r}"
                        );
                    }
                }
            }
            if a == "iam:PassRole" {
                assert_eq!(cond["iam:PassedToService"], "ec2.amazonaws.com");
                seen.insert(a.clone());
            }
        }
    }
    for a in [
        "ec2:TerminateInstances",
        "ec2:DeleteLaunchTemplate",
        "ec2:CreateTags",
        "ec2:CreateLaunchTemplate",
        "ec2:CreateFleet instance",
        "iam:PassRole",
    ] {
        assert!(seen.contains(a), "no statement checked for {a}");
    }
}
