//! `nodewright controller` outside us-east-1, end to end: a real
//! kube-apiserver and etcd, moto's EC2 and SSM in ap-southeast-2, a live
//! catalog discovered there and refreshed while the controller runs, and a
//! node class whose AMI is the alias `al2023@latest`, resolved through the
//! public SSM parameter for the API server's own Kubernetes version.
//!
//! Needs moto and the control-plane binaries: `bash scripts/test.sh --test controller_region`.
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

use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use nodewright::cloud::refresh::start_live;
use nodewright::cloud::tags::TAG_CLUSTER;
use nodewright::controller::run::{Controller, Options};
use nodewright::reload::WatchOptions;

const CLUSTER: &str = "region-test";
const REGION: &str = "ap-southeast-2";

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
  node-class default
}

node-class default {
  ami alias al2023@latest
  subnets where tag karpenter.sh/discovery = "demo"
  security-groups where tag karpenter.sh/discovery = "demo"
  role "KarpenterNodeRole-demo"
}
"#;

fn metrics(addr: std::net::SocketAddr) -> String {
    let (status, body) = support::http(addr.port(), "GET", "/metrics", "").expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// (zone, subnet, image, type) of this cluster's instances.
async fn launched(ec2: &aws_sdk_ec2::Client) -> Vec<(String, String, String, String)> {
    let resp = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name(format!("tag:{TAG_CLUSTER}"))
                .values(CLUSTER)
                .build(),
        )
        .send()
        .await
        .expect("DescribeInstances");
    resp.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            (
                i.placement()
                    .and_then(|p| p.availability_zone())
                    .unwrap_or_default()
                    .to_string(),
                i.subnet_id().unwrap_or_default().to_string(),
                i.image_id().unwrap_or_default().to_string(),
                i.instance_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launches_from_the_live_catalog_of_its_region_with_an_ssm_alias() {
    let moto = support::moto().await;
    let kube = kube_support::kube_exclusive().await;
    let settings = moto.settings_in(REGION);
    let config = nodewright::cloud::ec2::load(&settings).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let ssm = nodewright::cloud::ec2::ssm(&config);
    let w = world::setup_in(&ec2, REGION).await;
    world::node_role(&settings).await;
    let client = kube.client().await;
    apply_crds(&client).await;

    // EKS publishes AMIs per Kubernetes minor: publish one for this API server's.
    let v = client.apiserver_version().await.expect("/version");
    let k =
        nodewright::cloud::ssm::KubeVersion::from_version_info(&v.major, &v.minor, &v.git_version)
            .expect("a Kubernetes version");
    let ami = world::image(
        &ec2,
        &w.subnet_b,
        "ami-ekslinux",
        &format!("amazon-eks-node-al2023-x86_64-standard-{k}-v20260101"),
    )
    .await;
    ssm.put_parameter()
        .name(format!(
            "/aws/service/eks/optimized-ami/{k}/amazon-linux-2023/x86_64/standard/recommended/image_id"
        ))
        .value(&ami)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .expect("PutParameter");

    let ns: Api<Namespace> = Api::all(client.clone());
    let obj: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": "apse2"}}))
        .expect("namespace");
    ns.create(&PostParams::default(), &obj)
        .await
        .expect("create namespace");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("general.policy"), POLICY).expect("policy");

    // The CLI's start-up: discover the region's catalog before the first pass.
    let (live, _) = start_live(&settings).await.expect("first discovery");
    let types = live.get().types.len();
    assert_eq!(live.get().region, REGION);
    let mut opts = Options::new(
        vec![dir.path().to_path_buf()],
        nodewright::cloud::userdata::ClusterInfo {
            name: CLUSTER.into(),
            endpoint: kube.server.clone(),
            ca_bundle: String::new(),
            service_cidr: "10.0.0.0/24".into(),
        },
        settings.clone(),
    );
    opts.batch_idle = Duration::from_millis(200);
    opts.batch_max = Duration::from_secs(2);
    opts.resync = Duration::from_millis(500);
    opts.catalog_refresh = Duration::from_secs(1);
    opts.metrics_addr = Some("127.0.0.1:0".parse().expect("addr"));
    opts.watch = WatchOptions {
        debounce: Duration::from_millis(50),
        recheck: Duration::from_millis(500),
    };
    let controller = Controller::new(opts, live)
        .await
        .expect("controller starts");
    let addr = controller.metrics_addr().expect("metrics bound");
    let (stop, rx) = tokio::sync::watch::channel(false);
    let run_client = client.clone();
    let task = tokio::spawn(async move {
        controller
            .run(run_client, rx)
            .await
            .expect("controller runs");
    });

    // A pod the scheduler gave up on.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "apse2");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let status = serde_json::json!({"status": {"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/0 nodes are available"}]}});
    pods.patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("mark unschedulable");

    // It lands in this region's subnet, on the image the alias names for this version.
    let got = wait_for("a launch", Duration::from_secs(60), async || {
        let v = launched(&ec2).await;
        (!v.is_empty()).then_some(v)
    })
    .await;
    for (zone, subnet, image, ty) in &got {
        assert!(zone.starts_with(REGION), "{zone}");
        assert!(
            w.subnets_a.contains(subnet) || *subnet == w.subnet_b,
            "{subnet} is not one of the world's subnets"
        );
        assert_eq!(image, &ami, "the al2023@latest image for Kubernetes {k}");
        assert!(ty.starts_with("m5."), "{ty}");
    }

    // The catalog is refreshed while the controller runs (every second here).
    wait_for("a catalog refresh", Duration::from_secs(60), async || {
        let m = metrics(addr);
        (metric(&m, "nodewright_controller_catalog_refreshes_total").unwrap_or(0.0) >= 1.0)
            .then_some(())
    })
    .await;
    let m = metrics(addr);
    assert_eq!(
        metric(&m, "nodewright_controller_catalog_types"),
        Some(types as f64),
        "{m}"
    );
    assert_eq!(
        metric(&m, "nodewright_controller_catalog_refresh_failures_total"),
        Some(0.0),
        "{m}"
    );

    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
