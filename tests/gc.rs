//! Garbage collection end to end: a real kube-apiserver and etcd, moto's EC2,
//! and the controller running in this process against both.
//!
//! An orphan instance (tagged for the cluster, no claim, no Node) is
//! terminated after the grace; a NodeClaim whose instance is gone is deleted
//! with its Node; a launch template no pool uses is deleted while the one the pool
//! launches with stays; instances with a claim or a Node stay.
//!
//! Needs moto and the control-plane binaries: `bash scripts/test.sh --test gc`.
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

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::types::{InstanceType, ResourceType};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use nodewright::catalog::{CapacityType, UnavailableOfferings};
use nodewright::cloud::iam::InstanceProfiles;
use nodewright::cloud::launcher::{Ec2Launcher, LaunchRequest, Launcher};
use nodewright::cloud::tags::TAG_CLUSTER;
use nodewright::cloud::userdata::ClusterInfo;
use nodewright::controller::gc::GcOptions;
use nodewright::controller::nodeclaim::NodeClaim;
use nodewright::controller::run::{Controller, Options};
use nodewright::reload::WatchOptions;
use nodewright::solver::{InstanceOption, PlannedNode};

const CLUSTER: &str = "gc-test";

#[allow(
    dead_code,
    reason = "the shared harness: this binary uses a part of it"
)]
mod ctl {
    use super::{CLUSTER, kube_support, rbac_support, support, world};
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

    include!("support/ctl.rs");
}
use ctl::{apply_crds, metric, wait_for};

const POLICY: &str = r#"pool general {
  require karpenter.sh/capacity-type in [on-demand]
  require karpenter.k8s.aws/instance-family in [m5]
  label team = "platform"
  node-class default
}

node-class default {
  ami where tag karpenter.sh/discovery = "demo"
  subnets where tag karpenter.sh/discovery = "demo"
  security-groups where tag karpenter.sh/discovery = "demo"
  role "KarpenterNodeRole-demo"
}
"#;

async fn state_of(ec2: &aws_sdk_ec2::Client, id: &str) -> String {
    let out = ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .expect("DescribeInstances");
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.state().and_then(|s| s.name()))
        .map(|n| n.as_str().to_string())
        .next()
        .unwrap_or_default()
}

/// An instance tagged for the cluster, launched outside any claim.
async fn run_instance(ec2: &aws_sdk_ec2::Client, w: &world::World) -> String {
    let out = ec2
        .run_instances()
        .image_id(&w.ami)
        .instance_type(InstanceType::M5Large)
        .subnet_id(&w.subnets_a[0])
        .min_count(1)
        .max_count(1)
        .tag_specifications(world::tags(
            ResourceType::Instance,
            &[(TAG_CLUSTER, CLUSTER)],
        ))
        .send()
        .await
        .expect("RunInstances");
    out.instances()[0]
        .instance_id()
        .expect("instance id")
        .to_string()
}

async fn template_names(ec2: &aws_sdk_ec2::Client) -> Vec<String> {
    let mut v: Vec<String> = ec2
        .describe_launch_templates()
        .send()
        .await
        .expect("DescribeLaunchTemplates")
        .launch_templates()
        .iter()
        .filter_map(|t| t.launch_template_name().map(str::to_string))
        .collect();
    v.sort();
    v
}

async fn register_node(client: &kube::Client, name: &str, instance: &str, ours: bool) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut labels = serde_json::json!({"topology.kubernetes.io/zone": "us-east-1a"});
    if ours {
        // Not `karpenter.sh/nodepool`: empty-node removal would take it first.
        labels["nodewright.io/pool"] = "general".into();
    }
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"providerID": format!("aws:///us-east-1a/{instance}")}
    }))
    .expect("node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
    let status = serde_json::json!({"status": {
        "allocatable": {"cpu": "2", "memory": "7Gi", "pods": "29"},
        "capacity": {"cpu": "2", "memory": "8Gi", "pods": "29"}}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("node status");
}

/// A launched NodeClaim for `instance` (registered as `node` when given), as
/// the controller writes one.
async fn launched_claim(client: &kube::Client, name: &str, instance: &str, node: Option<&str>) {
    let claims: Api<NodeClaim> = Api::all(client.clone());
    let c: NodeClaim = serde_json::from_value(serde_json::json!({
        "apiVersion": "nodewright.io/v1alpha1", "kind": "NodeClaim",
        "metadata": {"name": name, "finalizers": ["nodewright.io/termination"]},
        "spec": {"pool": "general", "nodeClass": "default",
            "requirements": {"instanceTypes": [{"name": "m5.large", "pricePerHour": 0.096}],
                "zones": ["us-east-1a"], "capacityTypes": ["on-demand"]},
            "resources": {}}
    }))
    .expect("claim");
    claims
        .create(&PostParams::default(), &c)
        .await
        .expect("create claim");
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let mut status = serde_json::json!({
        "providerID": format!("aws:///us-east-1a/{instance}"),
        "instanceType": "m5.large", "zone": "us-east-1a", "capacityType": "on-demand",
        "conditions": [{"type": "Launched", "status": "True", "reason": "Launched",
            "message": "", "lastTransitionTime": now}]
    });
    if let Some(n) = node {
        status["nodeName"] = n.into();
        status["conditions"]
            .as_array_mut()
            .expect("conditions")
            .push(serde_json::json!({"type": "Registered", "status": "True",
                "reason": "Registered", "message": "", "lastTransitionTime": now}));
    }
    claims
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"status": status})),
        )
        .await
        .expect("claim status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_gone_claims_and_unused_templates_are_collected() {
    let moto = support::moto().await;
    let kube = kube_support::kube_exclusive().await;
    let ec2 = moto.ec2().await;
    let w = world::setup(&ec2).await;
    world::node_role(&moto.settings()).await;
    let client = kube.client().await;
    apply_crds(&client).await;
    let claims: Api<NodeClaim> = Api::all(client.clone());
    let unfinalize = serde_json::json!({"metadata": {"finalizers": null}});
    for c in claims.list(&ListParams::default()).await.expect("claims") {
        if let Some(name) = c.metadata.name {
            let _ = claims
                .patch(&name, &PatchParams::default(), &Patch::Merge(&unfinalize))
                .await;
            let _ = claims.delete(&name, &DeleteParams::default()).await;
        }
    }
    let nodes: Api<Node> = Api::all(client.clone());
    for n in nodes.list(&ListParams::default()).await.expect("nodes") {
        if let Some(name) = n.metadata.name {
            let _ = nodes.delete(&name, &DeleteParams::default()).await;
        }
    }
    let cluster = ClusterInfo {
        name: CLUSTER.into(),
        endpoint: kube.server.clone(),
        ca_bundle: String::new(),
        service_cidr: "10.0.0.0/24".into(),
    };

    // The template the pool launches with, made by a launch as the controller
    // would make it (that instance carries a claim tag and is adopted).
    let file = nodewright::policy::parse("general.policy", POLICY)
        .unwrap_or_else(|d| panic!("{}", d.render(100)));
    let (policy, _) =
        nodewright::policy::compile(&[file]).unwrap_or_else(|d| panic!("{}", d.render(100)));
    let pool = policy.pool("general").expect("pool");
    let nc = &policy.node_classes["default"];
    // The controller's IAM: the node class's role goes into a profile it makes.
    let iam = nodewright::cloud::ec2::iam(&nodewright::cloud::ec2::load(&moto.settings()).await);
    let profiles = Arc::new(InstanceProfiles::new(iam.clone(), CLUSTER, "us-east-1"));
    let launcher = Ec2Launcher::new(
        ec2.clone(),
        cluster.clone(),
        Arc::new(UnavailableOfferings::default()),
    )
    .with_instance_profiles(Arc::clone(&profiles));
    let planned = PlannedNode {
        name: "general-kept0".into(),
        pool: "general".into(),
        node_class: "default".into(),
        zone: "us-east-1a".into(),
        capacity_type: CapacityType::OnDemand,
        instance_type: "m5.large".into(),
        price_per_hour: 0.096,
        instance_type_options: vec![InstanceOption {
            instance_type: "m5.large".into(),
            price_per_hour: 0.096,
        }],
        pods: vec![],
        requested: Default::default(),
        allocatable: Default::default(),
        labels: Default::default(),
        taints: pool.taints.clone(),
        startup_taints: pool.startup_taints.clone(),
    };
    let claimed = launcher
        .launch(LaunchRequest {
            node: &planned,
            pool,
            node_class: nc,
            catalog: None,
        })
        .await
        .expect("launch");
    // The claim the controller would have written before that launch.
    launched_claim(&client, "general-kept0", &claimed.instance_id, None).await;
    let kept_template = template_names(&ec2).await;
    assert_eq!(kept_template.len(), 1, "{kept_template:?}");

    // A template of ours no pool uses any more.
    ec2.create_launch_template()
        .launch_template_name("nodewright-default-0123456789abcdef")
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id(&w.ami)
                .build(),
        )
        .tag_specifications(world::tags(
            ResourceType::LaunchTemplate,
            &[(TAG_CLUSTER, CLUSTER)],
        ))
        .send()
        .await
        .expect("CreateLaunchTemplate");

    // The profile of a role no node class names any more, and a hand-made one.
    iam.create_role()
        .role_name("OldRole")
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .expect("CreateRole");
    let stale_profile = profiles.ensure("OldRole").await.expect("old profile");
    // Another role no node class names, whose profile a live instance still runs with.
    iam.create_role()
        .role_name("BusyRole")
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .expect("CreateRole");
    let busy_profile = profiles.ensure("BusyRole").await.expect("busy profile");
    let kept_profile = profiles.name_for("KarpenterNodeRole-demo");
    iam.create_instance_profile()
        .instance_profile_name("hand-made")
        .send()
        .await
        .expect("hand-made profile");
    let profile_names = async || -> Vec<String> {
        let mut v: Vec<String> = iam
            .list_instance_profiles()
            .send()
            .await
            .expect("ListInstanceProfiles")
            .instance_profiles()
            .iter()
            .map(|p| p.instance_profile_name().to_string())
            .collect();
        v.sort();
        v
    };
    let mut want_profiles = vec![
        kept_profile.clone(),
        busy_profile.clone(),
        "hand-made".to_string(),
    ];
    want_profiles.sort();
    assert_eq!(profile_names().await.len(), 4);

    // An orphan; an instance with someone's Node (stays); an instance of ours
    // with a Node, to be terminated behind the controller's back.
    let orphan = run_instance(&ec2, &w).await;
    let with_node = run_instance(&ec2, &w).await;
    register_node(&client, "someone-elses", &with_node, false).await;
    ec2.associate_iam_instance_profile()
        .instance_id(&with_node)
        .iam_instance_profile(
            aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                .name(&busy_profile)
                .build(),
        )
        .send()
        .await
        .expect("AssociateIamInstanceProfile");
    let doomed = run_instance(&ec2, &w).await;
    register_node(&client, "ours", &doomed, true).await;
    launched_claim(&client, "general-doomd", &doomed, Some("ours")).await;

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("general.policy"), POLICY).expect("write policy");
    let mut opts = Options::new(vec![dir.path().to_path_buf()], cluster, moto.settings());
    opts.batch_idle = Duration::from_millis(200);
    opts.batch_max = Duration::from_secs(2);
    opts.resync = Duration::from_millis(500);
    opts.metrics_addr = Some("127.0.0.1:0".parse().expect("addr"));
    opts.watch = WatchOptions {
        debounce: Duration::from_millis(50),
        recheck: Duration::from_millis(500),
    };
    opts.gc = GcOptions {
        orphan_grace: Duration::from_secs(2),
        gone_grace: Duration::from_secs(1),
        template_interval: Duration::from_millis(500),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(
                std::env::var("NODEWRIGHT_LOG").unwrap_or_else(|_| "nodewright=info".into()),
            )
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
    let catalog = Arc::new(nodewright::catalog::Catalog::embedded().expect("catalog"));
    let controller = Controller::new(opts, catalog).await.expect("starts");
    let addr = controller.metrics_addr().expect("metrics");
    let (stop, rx) = tokio::sync::watch::channel(false);
    let run_client = client.clone();
    let task = tokio::spawn(async move {
        controller.run(run_client, rx).await.expect("runs");
    });

    wait_for(
        "the orphan terminated",
        Duration::from_secs(60),
        async || {
            let s = state_of(&ec2, &orphan).await;
            matches!(s.as_str(), "shutting-down" | "terminated").then_some(())
        },
    )
    .await;
    wait_for(
        "the unused template deleted",
        Duration::from_secs(60),
        async || (template_names(&ec2).await == kept_template).then_some(()),
    )
    .await;
    wait_for(
        "the unused instance profile deleted",
        Duration::from_secs(60),
        async || (profile_names().await == want_profiles).then_some(()),
    )
    .await;
    assert!(!want_profiles.contains(&stale_profile));

    // Our Node's instance goes away: its claim and Node are deleted.
    ec2.terminate_instances()
        .instance_ids(&doomed)
        .send()
        .await
        .expect("TerminateInstances");
    wait_for("our Node deleted", Duration::from_secs(60), async || {
        nodes
            .get_opt("ours")
            .await
            .expect("get node")
            .is_none()
            .then_some(())
    })
    .await;
    // The claim goes right after its Node (finalizer lifted, then deleted).
    wait_for("our claim deleted", Duration::from_secs(60), async || {
        claims
            .get_opt("general-doomd")
            .await
            .expect("get claim")
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        claims
            .get_opt("general-kept0")
            .await
            .expect("get claim")
            .is_some()
    );

    // What a claim or a Node owns stays; so does the pool's template.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(state_of(&ec2, &claimed.instance_id).await, "running");
    assert_eq!(state_of(&ec2, &with_node).await, "running");
    assert!(nodes.get_opt("someone-elses").await.expect("get").is_some());
    assert_eq!(template_names(&ec2).await, kept_template);
    assert_eq!(profile_names().await, want_profiles);
    let (status, body) = support::http(addr.port(), "GET", "/metrics", "").expect("GET /metrics");
    assert_eq!(status, 200);
    for (name, want) in [
        ("nodewright_controller_gc_instances_terminated_total", 1.0),
        (
            "nodewright_controller_gc_launch_templates_deleted_total",
            1.0,
        ),
        ("nodewright_controller_gc_claims_deleted_total", 1.0),
        (
            "nodewright_controller_gc_instance_profiles_deleted_total",
            1.0,
        ),
    ] {
        assert_eq!(metric(&body, name), Some(want), "{name} in\n{body}");
    }
    let _ = stop.send(true);
    task.await.expect("controller stops cleanly");
}
