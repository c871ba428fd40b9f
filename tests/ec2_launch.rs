//! The EC2 launcher end to end against moto's server (issue 5's seven cases).
//!
//! Needs the `aws` feature: `cargo test --features aws --test ec2_launch`.
#![cfg(feature = "aws")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test"
)]

#[path = "support/moto.rs"]
mod support;
#[path = "support/ec2_world.rs"]
mod world;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use nodewright::catalog::{CapacityType, UnavailableOfferings};
use nodewright::cloud::fleet::launch_groups;
use nodewright::cloud::launcher::{
    Ec2Launcher, LaunchError, LaunchRequest, Launcher, launched_labels,
};
use nodewright::cloud::resolve::{ResolveError, Resolver};
use nodewright::cloud::retry::RetryPolicy;
use nodewright::cloud::tags::{TAG_CLAIM, TAG_CLUSTER, TAG_POOL};
use nodewright::cloud::userdata::ClusterInfo;
use nodewright::ir::{AmiSelectorTerm, NodeClass, Pool, SelectorTerm, labels};
use nodewright::solver::{InstanceOption, PlannedNode};
use world::{DISCOVERY, setup};

fn by_tag() -> SelectorTerm {
    SelectorTerm {
        tags: BTreeMap::from([(DISCOVERY.to_string(), "demo".to_string())]),
        ..Default::default()
    }
}

fn node_class() -> NodeClass {
    NodeClass {
        name: "default".into(),
        ami_selector: vec![AmiSelectorTerm {
            tags: BTreeMap::from([(DISCOVERY.to_string(), "demo".to_string())]),
            ..Default::default()
        }],
        subnet_selector: vec![by_tag()],
        security_group_selector: vec![by_tag()],
        role: Some("KarpenterNodeRole-demo".into()),
        tags: BTreeMap::from([("team".to_string(), "platform".to_string())]),
        ..Default::default()
    }
}

fn pool() -> Pool {
    Pool {
        name: "general".into(),
        weight: 0,
        requirement_terms: vec![],
        requirements: Default::default(),
        limits: Default::default(),
        labels: BTreeMap::from([("team".to_string(), "platform".to_string())]),
        taints: vec![],
        startup_taints: vec![],
        tags: BTreeMap::from([("owner".to_string(), "platform".to_string())]),
        node_class: "default".into(),
        kubelet: Default::default(),
        disruption: Default::default(),
        scripts: vec![],
        origin: None,
    }
}

fn planned(name: &str, zone: &str, ct: CapacityType, types: &[(&str, f64)]) -> PlannedNode {
    PlannedNode {
        name: name.into(),
        pool: "general".into(),
        node_class: "default".into(),
        zone: zone.into(),
        capacity_type: ct,
        instance_type: types[0].0.into(),
        price_per_hour: types[0].1,
        instance_type_options: types
            .iter()
            .map(|(t, p)| InstanceOption {
                instance_type: (*t).into(),
                price_per_hour: *p,
            })
            .collect(),
        pods: vec![],
        requested: Default::default(),
        allocatable: Default::default(),
        labels: BTreeMap::from([("team".to_string(), "platform".to_string())]),
        taints: vec![],
        startup_taints: vec![],
    }
}

fn cluster() -> ClusterInfo {
    ClusterInfo {
        name: "demo".into(),
        endpoint: "https://demo.example".into(),
        ca_bundle: "Q0E=".into(),
        service_cidr: "10.100.0.0/16".into(),
    }
}

fn launcher(ec2: &aws_sdk_ec2::Client) -> Ec2Launcher {
    Ec2Launcher::new(
        ec2.clone(),
        cluster(),
        Arc::new(UnavailableOfferings::default()),
    )
    .with_retry_policy(RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    })
}

const M5: &[(&str, f64)] = &[
    ("m5.large", 0.096),
    ("m5.xlarge", 0.192),
    ("m5.2xlarge", 0.384),
];

async fn instance_tags(ec2: &aws_sdk_ec2::Client, id: &str) -> BTreeMap<String, String> {
    let out = ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .expect("DescribeInstances");
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .flat_map(|i| i.tags())
        .map(|t| {
            (
                t.key().unwrap_or("").to_string(),
                t.value().unwrap_or("").to_string(),
            )
        })
        .collect()
}

// 1. Resolution by tags.
#[tokio::test]
async fn resolves_node_class_by_tags() {
    let moto = support::moto().await;
    let ec2 = nodewright::cloud::ec2::connect(&moto.settings()).await;
    let w = setup(&ec2).await;
    let resolver = Resolver::new(ec2.clone(), Duration::from_secs(60));
    let mut nc = node_class();
    // A second term that matches nothing: resolution still works, with a warning.
    nc.subnet_selector.push(SelectorTerm {
        tags: BTreeMap::from([(DISCOVERY.to_string(), "typo".to_string())]),
        ..Default::default()
    });
    let r = resolver.resolve(&nc).await.expect("resolves");
    let mut got: Vec<&str> = r.subnets.iter().map(|s| s.id.as_str()).collect();
    got.sort();
    let mut want = vec![
        w.subnets_a[0].as_str(),
        w.subnets_a[1].as_str(),
        w.subnet_b.as_str(),
    ];
    want.sort();
    assert_eq!(got, want, "only the three tagged subnets");
    assert_eq!(r.subnets_in("us-east-1a").count(), 2);
    // Most free IPs first: the /24 before the /25.
    assert_eq!(
        r.subnets_in("us-east-1a").next().map(|s| s.id.as_str()),
        Some(w.subnets_a[0].as_str())
    );
    assert!(
        r.subnets
            .iter()
            .all(|s| s.available_ips > 0 && s.zone_id.is_some())
    );
    assert_eq!(
        r.security_groups
            .iter()
            .map(|g| g.id.as_str())
            .collect::<Vec<_>>(),
        vec![w.sg.as_str()]
    );
    assert_eq!(
        r.amis.get("amd64").map(|a| a.id.as_str()),
        Some(w.ami.as_str())
    );
    assert_eq!(
        r.amis.get("arm64").map(|a| a.id.as_str()),
        Some(w.ami_arm.as_str())
    );
    assert_eq!(r.ami_family, "AL2023");
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("typo"));

    // The alias path: a DescribeImages name query (owner `self` here: moto's account).
    let mut resolver = Resolver::new(ec2.clone(), Duration::from_secs(60));
    resolver.alias_owners = vec!["self".into()];
    let mut nc = node_class();
    nc.ami_selector = vec![AmiSelectorTerm {
        alias: Some("al2023@latest".into()),
        ..Default::default()
    }];
    let r = resolver.resolve(&nc).await.expect("alias resolves");
    assert_eq!(
        r.amis.get("amd64").map(|a| a.id.as_str()),
        Some(w.ami.as_str())
    );
    assert_eq!(
        r.amis.get("arm64").map(|a| a.id.as_str()),
        Some(w.ami_arm.as_str())
    );
    nc.ami_selector = vec![AmiSelectorTerm {
        alias: Some("bottlerocket@latest".into()),
        ..Default::default()
    }];
    let e = resolver
        .resolve(&nc)
        .await
        .expect_err("no bottlerocket image");
    assert!(
        e.to_string()
            .contains("AMI selector [alias bottlerocket@latest] matched nothing"),
        "{e}"
    );
}

// 2. Template reuse.
#[tokio::test]
async fn launch_templates_are_reused() {
    let moto = support::moto().await;
    let ec2 = nodewright::cloud::ec2::connect(&moto.settings()).await;
    let w = setup(&ec2).await;
    let l = launcher(&ec2);
    let (nc, p) = (node_class(), pool());
    for i in 0..3 {
        let n = planned(
            &format!("general-{i}"),
            "us-east-1a",
            CapacityType::OnDemand,
            M5,
        );
        l.launch(LaunchRequest {
            node: &n,
            pool: &p,
            node_class: &nc,
            catalog: None,
        })
        .await
        .expect("launch");
    }
    // A new launcher (a restarted controller) finds the template by name instead of creating one.
    let l2 = launcher(&ec2);
    let n = planned("general-9", "us-east-1b", CapacityType::Spot, M5);
    l2.launch(LaunchRequest {
        node: &n,
        pool: &p,
        node_class: &nc,
        catalog: None,
    })
    .await
    .expect("launch");
    let lts = ec2
        .describe_launch_templates()
        .send()
        .await
        .expect("DescribeLaunchTemplates");
    let names: Vec<&str> = lts
        .launch_templates()
        .iter()
        .filter_map(|t| t.launch_template_name())
        .collect();
    assert_eq!(
        names.len(),
        1,
        "one template for one configuration: {names:?}"
    );
    assert!(names[0].starts_with("nodewright-default-"));
    // A different configuration (another pool label set) gets its own template.
    let mut n = planned("general-10", "us-east-1a", CapacityType::OnDemand, M5);
    n.labels.insert("tier".into(), "batch".into());
    l2.launch(LaunchRequest {
        node: &n,
        pool: &p,
        node_class: &nc,
        catalog: None,
    })
    .await
    .expect("launch");
    let lts = ec2
        .describe_launch_templates()
        .send()
        .await
        .expect("DescribeLaunchTemplates");
    assert_eq!(lts.launch_templates().len(), 2);

    // Mixed architectures: one template per architecture, the top-ranked (Graviton) type wins.
    let n = planned(
        "general-11",
        "us-east-1a",
        CapacityType::OnDemand,
        &[("m6g.large", 0.077), ("m5.large", 0.096)],
    );
    let got = l2
        .launch(LaunchRequest {
            node: &n,
            pool: &p,
            node_class: &nc,
            catalog: None,
        })
        .await
        .expect("launch");
    assert_eq!(got.instance_type, "m6g.large");
    let desc = ec2
        .describe_instances()
        .instance_ids(&got.instance_id)
        .send()
        .await
        .expect("describe");
    let inst = &desc.reservations()[0].instances()[0];
    assert_eq!(inst.image_id(), Some(w.ami_arm.as_str()));
    let lts = ec2
        .describe_launch_templates()
        .send()
        .await
        .expect("DescribeLaunchTemplates");
    assert_eq!(
        lts.launch_templates().len(),
        3,
        "an arm64 template added; the amd64 one reused"
    );

    // Someone deletes our templates: the launcher notices and recreates them.
    for t in lts.launch_templates() {
        ec2.delete_launch_template()
            .set_launch_template_id(t.launch_template_id().map(str::to_string))
            .send()
            .await
            .expect("DeleteLaunchTemplate");
    }
    let n = planned("general-12", "us-east-1a", CapacityType::OnDemand, M5);
    let got = l2
        .launch(LaunchRequest {
            node: &n,
            pool: &p,
            node_class: &nc,
            catalog: None,
        })
        .await
        .expect("launch after the templates were deleted");
    assert_eq!(got.instance_type, "m5.large");
    let lts = ec2
        .describe_launch_templates()
        .send()
        .await
        .expect("DescribeLaunchTemplates");
    assert_eq!(lts.launch_templates().len(), 1, "recreated once");
}

// 3. On-demand and spot launches with tags and IMDSv2.
#[tokio::test]
async fn on_demand_and_spot_launch_with_tags_and_imdsv2() {
    let moto = support::moto().await;
    let ec2 = nodewright::cloud::ec2::connect(&moto.settings()).await;
    let w = setup(&ec2).await;
    let l = launcher(&ec2);
    let (nc, p) = (node_class(), pool());
    let od = planned("general-od", "us-east-1a", CapacityType::OnDemand, M5);
    let spot = planned("general-spot", "us-east-1b", CapacityType::Spot, M5);
    let a = l
        .launch(LaunchRequest {
            node: &od,
            pool: &p,
            node_class: &nc,
            catalog: None,
        })
        .await
        .expect("od");
    let b = l
        .launch(LaunchRequest {
            node: &spot,
            pool: &p,
            node_class: &nc,
            catalog: None,
        })
        .await
        .expect("spot");
    assert_eq!(
        (a.instance_type.as_str(), a.zone.as_str()),
        ("m5.large", "us-east-1a")
    );
    assert!(w.subnets_a.contains(&a.subnet_id));
    assert_eq!(a.allocation_strategy, "lowest-price");
    assert_eq!(
        (
            b.instance_type.as_str(),
            b.zone.as_str(),
            b.subnet_id.as_str()
        ),
        ("m5.large", "us-east-1b", w.subnet_b.as_str())
    );
    assert_eq!(b.allocation_strategy, "price-capacity-optimized");
    for (l, claim) in [(&a, "general-od"), (&b, "general-spot")] {
        let t = instance_tags(&ec2, &l.instance_id).await;
        assert_eq!(t.get(TAG_CLUSTER).map(String::as_str), Some("demo"));
        assert_eq!(t.get(TAG_POOL).map(String::as_str), Some("general"));
        assert_eq!(t.get(TAG_CLAIM).map(String::as_str), Some(claim));
        assert_eq!(t.get("Name").map(String::as_str), Some(claim));
        assert_eq!(
            t.get("owner").map(String::as_str),
            Some("platform"),
            "pool tags"
        );
        assert_eq!(
            t.get("kubernetes.io/cluster/demo").map(String::as_str),
            Some("owned")
        );
    }
    let spot_lifecycle = ec2
        .describe_instances()
        .instance_ids(&b.instance_id)
        .send()
        .await
        .expect("describe");
    let lc = spot_lifecycle.reservations()[0].instances()[0]
        .instance_lifecycle()
        .map(|l| l.as_str().to_string());
    assert_eq!(lc.as_deref(), Some("spot"));
    // IMDSv2 required, hop limit 1, and the user data carries the node's labels.
    let v = ec2
        .describe_launch_template_versions()
        .launch_template_name(
            ec2.describe_launch_templates()
                .send()
                .await
                .expect("lts")
                .launch_templates()[0]
                .launch_template_name()
                .unwrap_or_default(),
        )
        .send()
        .await
        .expect("DescribeLaunchTemplateVersions");
    let data = v.launch_template_versions()[0]
        .launch_template_data()
        .expect("data");
    let md = data.metadata_options().expect("metadata options");
    assert_eq!(md.http_tokens().map(|t| t.as_str()), Some("required"));
    assert_eq!(md.http_put_response_hop_limit(), Some(1));
    assert_eq!(data.image_id(), Some(w.ami.as_str()));
    assert_eq!(data.security_group_ids(), std::slice::from_ref(&w.sg));
    use base64::Engine;
    let ud = base64::engine::general_purpose::STANDARD
        .decode(data.user_data().unwrap_or_default())
        .expect("base64 user data");
    let ud = String::from_utf8(ud).expect("utf-8");
    assert!(
        ud.contains("kind: NodeConfig")
            && ud.contains(
                "--node-labels=karpenter.sh/nodepool=general,nodewright.io/pool=general,team=platform"
            ),
        "{ud}"
    );
}

// 3b. `associate-public-ip` reaches the launch template, and the launch still lands.
#[tokio::test]
async fn public_ip_choice_reaches_the_launch_template() {
    let moto = support::moto().await;
    let ec2 = nodewright::cloud::ec2::connect(&moto.settings()).await;
    let w = setup(&ec2).await;
    let l = launcher(&ec2);
    let nc = NodeClass {
        associate_public_ip_address: Some(true),
        ..node_class()
    };
    let p = pool();
    let node = planned("general-pub", "us-east-1a", CapacityType::OnDemand, M5);
    let got = l
        .launch(LaunchRequest {
            node: &node,
            pool: &p,
            node_class: &nc,
            catalog: None,
        })
        .await
        .expect("launch");
    assert!(w.subnets_a.contains(&got.subnet_id));
    let lts = ec2.describe_launch_templates().send().await.expect("lts");
    let name = lts.launch_templates()[0]
        .launch_template_name()
        .unwrap_or_default();
    let v = ec2
        .describe_launch_template_versions()
        .launch_template_name(name)
        .send()
        .await
        .expect("DescribeLaunchTemplateVersions");
    let data = v.launch_template_versions()[0]
        .launch_template_data()
        .expect("data");
    let ni = &data.network_interfaces()[0];
    assert_eq!(ni.associate_public_ip_address(), Some(true));
    assert_eq!(ni.device_index(), Some(0));
    assert_eq!(ni.groups(), std::slice::from_ref(&w.sg));
    assert!(data.security_group_ids().is_empty());
}

// 3c. A node class's `role` goes into an instance profile nodewright makes
// (path /nodewright/, the role inside), and the launch template names it.
#[tokio::test]
async fn role_goes_into_a_made_instance_profile() {
    use nodewright::cloud::iam::{InstanceProfiles, PROFILE_PATH, profile_name};
    let moto = support::moto().await;
    let cfg = nodewright::cloud::ec2::load(&moto.settings()).await;
    let ec2 = aws_sdk_ec2::Client::new(&cfg);
    let iam = nodewright::cloud::ec2::iam(&cfg);
    setup(&ec2).await;
    iam.create_role()
        .role_name("KarpenterNodeRole-demo")
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .expect("CreateRole");
    let l = launcher(&ec2).with_instance_profiles(Arc::new(InstanceProfiles::new(
        iam.clone(),
        "demo",
        "us-east-1",
    )));
    let nc = node_class();
    let p = pool();
    let node = planned("general-role", "us-east-1a", CapacityType::OnDemand, M5);
    l.launch(LaunchRequest {
        node: &node,
        pool: &p,
        node_class: &nc,
        catalog: None,
    })
    .await
    .expect("launch");
    let want = profile_name("demo", "us-east-1", "KarpenterNodeRole-demo");
    let made = iam
        .get_instance_profile()
        .instance_profile_name(&want)
        .send()
        .await
        .expect("the profile was made");
    let made = made.instance_profile().expect("profile");
    assert_eq!(made.path(), PROFILE_PATH);
    let roles: Vec<&str> = made.roles().iter().map(|r| r.role_name()).collect();
    assert_eq!(roles, vec!["KarpenterNodeRole-demo"]);

    let lts = ec2.describe_launch_templates().send().await.expect("lts");
    assert_eq!(lts.launch_templates().len(), 1);
    let name = lts.launch_templates()[0]
        .launch_template_name()
        .unwrap_or_default()
        .to_string();
    let v = ec2
        .describe_launch_template_versions()
        .launch_template_name(&name)
        .send()
        .await
        .expect("DescribeLaunchTemplateVersions");
    let data = v.launch_template_versions()[0]
        .launch_template_data()
        .expect("data");
    assert_eq!(
        data.iam_instance_profile().and_then(|p| p.name()),
        Some(want.as_str())
    );
    // Garbage collection keeps this very template (same name, same profile).
    let kept = l.template_names(&p, &nc).await.expect("names");
    assert!(kept.contains(&name), "{kept:?} lacks {name}");

    // An `instance-profile` is used as written; nothing new is made for it.
    let nc2 = NodeClass {
        instance_profile: Some("hand-made".into()),
        ..node_class()
    };
    let names = l.template_names(&p, &nc2).await.expect("names");
    assert!(!names.contains(&name), "{names:?}");
    let all = iam.list_instance_profiles().send().await.expect("list");
    assert_eq!(all.instance_profiles().len(), 1);
}

// 3d. `instance-store-policy RAID0` reaches the template's user data (AL2023 here).
#[tokio::test]
async fn instance_store_raid0_reaches_the_user_data() {
    use base64::Engine;
    let moto = support::moto().await;
    let ec2 = nodewright::cloud::ec2::connect(&moto.settings()).await;
    setup(&ec2).await;
    let l = launcher(&ec2);
    let nc = NodeClass {
        instance_store_policy: Some("RAID0".into()),
        ..node_class()
    };
    let p = pool();
    let node = planned("general-raid", "us-east-1a", CapacityType::OnDemand, M5);
    l.launch(LaunchRequest {
        node: &node,
        pool: &p,
        node_class: &nc,
        catalog: None,
    })
    .await
    .expect("launch");
    let lts = ec2.describe_launch_templates().send().await.expect("lts");
    let name = lts.launch_templates()[0]
        .launch_template_name()
        .unwrap_or_default();
    let v = ec2
        .describe_launch_template_versions()
        .launch_template_name(name)
        .send()
        .await
        .expect("DescribeLaunchTemplateVersions");
    let data = v.launch_template_versions()[0]
        .launch_template_data()
        .expect("data");
    let ud = base64::engine::general_purpose::STANDARD
        .decode(data.user_data().expect("user data"))
        .expect("base64");
    let ud = String::from_utf8(ud).expect("utf-8");
    assert!(
        ud.contains("  instance:\n    localStorage:\n      strategy: RAID0\n"),
        "{ud}"
    );
}

// 4. Fallback past two refused offerings.
#[tokio::test]
async fn falls_back_past_refused_offerings() {
    let moto = support::moto().await;
    let ec2 = nodewright::cloud::ec2::connect(&moto.settings()).await;
    setup(&ec2).await;
    moto.refuse(&[
        ("m5.large", "us-east-1a", Some("on-demand")),
        ("m5.xlarge", "us-east-1a", None),
        // Refused for spot only: must not affect this on-demand launch.
        ("m5.2xlarge", "us-east-1a", Some("spot")),
    ]);
    let l = launcher(&ec2);
    let (nc, p) = (node_class(), pool());
    let n = planned("general-0", "us-east-1a", CapacityType::OnDemand, M5);
    let got = l
        .launch(LaunchRequest {
            node: &n,
            pool: &p,
            node_class: &nc,
            catalog: None,
        })
        .await
        .expect("falls back");
    assert_eq!(got.instance_type, "m5.2xlarge");
    let failed: Vec<(&str, &str, &str)> = got
        .failed_offerings
        .iter()
        .map(|f| (f.instance_type.as_str(), f.zone.as_str(), f.code.as_str()))
        .collect();
    assert_eq!(
        failed,
        vec![
            ("m5.large", "us-east-1a", "InsufficientInstanceCapacity"),
            ("m5.xlarge", "us-east-1a", "InsufficientInstanceCapacity")
        ]
    );
    let un = l.unavailable();
    assert!(un.contains("m5.large", "us-east-1a", CapacityType::OnDemand));
    assert!(un.contains("m5.xlarge", "us-east-1a", CapacityType::OnDemand));
    assert!(!un.contains("m5.large", "us-east-1b", CapacityType::OnDemand));
    assert!(!un.contains("m5.large", "us-east-1a", CapacityType::Spot));

    // The next launch skips the cached offerings without asking EC2 again.
    let n = planned("general-1", "us-east-1a", CapacityType::OnDemand, M5);
    let got = l
        .launch(LaunchRequest {
            node: &n,
            pool: &p,
            node_class: &nc,
            catalog: None,
        })
        .await
        .expect("launch");
    assert_eq!(got.instance_type, "m5.2xlarge");
    assert!(got.failed_offerings.is_empty());

    // Spot in the same zone: m5.2xlarge refused too, nothing cached for spot yet.
    let n = planned("general-2", "us-east-1a", CapacityType::Spot, &M5[1..]);
    let err = l
        .launch(LaunchRequest {
            node: &n,
            pool: &p,
            node_class: &nc,
            catalog: None,
        })
        .await
        .expect_err("all refused");
    match err {
        LaunchError::NoCapacity { failed, .. } => {
            let types: Vec<&str> = failed.iter().map(|f| f.instance_type.as_str()).collect();
            assert_eq!(types, vec!["m5.xlarge", "m5.2xlarge"]);
        }
        other => panic!("expected NoCapacity, got {other:?}"),
    }
    let owned = l.list_owned().await.expect("list");
    assert_eq!(owned.len(), 2, "no instance for the refused spot claim");
}

// 4b. A fallback node is labelled as the type EC2 launched; the launch
// template's user data names no type at all.
#[tokio::test]
async fn fallback_node_labels_name_the_launched_type() {
    let moto = support::moto().await;
    let ec2 = nodewright::cloud::ec2::connect(&moto.settings()).await;
    setup(&ec2).await;
    // The first-ranked type is refused, so EC2 launches the second.
    moto.refuse(&[("m5.large", "us-east-1a", Some("on-demand"))]);
    let cat = nodewright::catalog::Catalog::embedded().expect("catalog");
    let l = launcher(&ec2);
    let (nc, p) = (node_class(), pool());
    let mut n = planned("general-0", "us-east-1a", CapacityType::OnDemand, M5);
    // What the solver gives the planned node: the first-ranked type's labels.
    let o = cat
        .offering_for("m5.large", "us-east-1a", CapacityType::OnDemand)
        .expect("offering");
    n.labels = nodewright::catalog::node_labels::node_labels(&cat, &p, &o);
    assert_eq!(n.labels[labels::INSTANCE_TYPE], "m5.large");
    let got = l
        .launch(LaunchRequest {
            node: &n,
            pool: &p,
            node_class: &nc,
            catalog: Some(&cat),
        })
        .await
        .expect("falls back");
    assert_eq!(got.instance_type, "m5.xlarge");
    let m = launched_labels(Some(&cat), &p, &got);
    assert_eq!(m[labels::INSTANCE_TYPE], "m5.xlarge");
    assert_eq!(m[labels::INSTANCE_SIZE], "xlarge");
    assert_eq!(m[labels::INSTANCE_CPU], "4");
    assert_eq!(m[labels::INSTANCE_MEMORY], "16384");
    assert_eq!(m[labels::ZONE], "us-east-1a");
    assert_eq!(m[labels::CAPACITY_TYPE], "on-demand");
    assert_eq!(m["nodewright.io/claim"], "general-0");
    assert_eq!(m["nodewright.io/pool"], "general");
    assert_eq!(m["team"], "platform");
    // Every label the solver could have matched the launched type on is there.
    let launched = cat
        .offering_for("m5.xlarge", "us-east-1a", CapacityType::OnDemand)
        .expect("offering");
    for (k, v) in cat.offering_labels(&launched) {
        assert_eq!(m.get(&k), Some(&v), "{k}");
    }
    // The template every fallback type shared carries no type-dependent label.
    let lts = ec2
        .describe_launch_templates()
        .send()
        .await
        .expect("DescribeLaunchTemplates");
    for t in lts.launch_templates() {
        let v = ec2
            .describe_launch_template_versions()
            .launch_template_name(t.launch_template_name().unwrap_or_default())
            .send()
            .await
            .expect("DescribeLaunchTemplateVersions");
        let data = v.launch_template_versions()[0]
            .launch_template_data()
            .expect("data");
        use base64::Engine;
        let ud = base64::engine::general_purpose::STANDARD
            .decode(data.user_data().unwrap_or_default())
            .expect("base64 user data");
        let ud = String::from_utf8(ud).expect("utf-8");
        assert!(
            !ud.contains("m5.large") && !ud.contains("instance-type"),
            "{ud}"
        );
        assert!(ud.contains("nodewright.io/pool=general"), "{ud}");
    }
}

// 4c. Garbage collection's view of launch templates: the names a pool would
// launch with are the ones its launches created; the cluster's templates are
// listed (and only those) and can be deleted.
#[tokio::test]
async fn launch_templates_of_the_cluster_are_listed_named_and_deleted() {
    let moto = support::moto().await;
    let ec2 = nodewright::cloud::ec2::connect(&moto.settings()).await;
    setup(&ec2).await;
    let l = launcher(&ec2);
    let (nc, p) = (node_class(), pool());
    let n = planned("general-0", "us-east-1a", CapacityType::OnDemand, M5);
    l.launch(LaunchRequest {
        node: &n,
        pool: &p,
        node_class: &nc,
        catalog: None,
    })
    .await
    .expect("launch");
    let owned = l.templates.list_owned().await.expect("list");
    assert_eq!(owned.len(), 1, "{owned:?}");
    assert!(owned[0].created.is_some());
    let names = l.template_names(&p, &nc).await.expect("names");
    assert!(names.contains(&owned[0].name), "{names:?} vs {owned:?}");
    // Another pool (other labels) would launch with another template.
    let mut other = pool();
    other.labels.insert("tier".into(), "batch".into());
    let other_names = l.template_names(&other, &nc).await.expect("names");
    assert!(!other_names.contains(&owned[0].name));

    // A stale template of ours, one of another cluster, one untagged.
    for (name, cluster) in [
        ("nodewright-default-stale", Some("demo")),
        ("nodewright-default-theirs", Some("other")),
        ("hand-made", None),
    ] {
        let mut req = ec2
            .create_launch_template()
            .launch_template_name(name)
            .launch_template_data(
                aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                    .image_id("ami-12345678")
                    .build(),
            );
        if let Some(c) = cluster {
            req = req.tag_specifications(
                aws_sdk_ec2::types::TagSpecification::builder()
                    .resource_type(aws_sdk_ec2::types::ResourceType::LaunchTemplate)
                    .tags(
                        aws_sdk_ec2::types::Tag::builder()
                            .key(TAG_CLUSTER)
                            .value(c)
                            .build(),
                    )
                    .build(),
            );
        }
        req.send().await.expect("CreateLaunchTemplate");
    }
    let owned = l.templates.list_owned().await.expect("list");
    let listed: Vec<&str> = owned.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.contains(&"nodewright-default-stale"));
    let stale = owned
        .iter()
        .find(|t| t.name == "nodewright-default-stale")
        .expect("stale");
    l.templates.delete(&stale.id).await.expect("delete");
    // Deleting again is no error.
    l.templates.delete(&stale.id).await.expect("delete again");
    let left: Vec<String> = l
        .templates
        .list_owned()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(
        left,
        names
            .iter()
            .filter(|n| left.contains(n))
            .cloned()
            .collect::<Vec<_>>()
    );
    assert_eq!(left.len(), 1);
    let all = ec2
        .describe_launch_templates()
        .send()
        .await
        .expect("DescribeLaunchTemplates");
    assert_eq!(
        all.launch_templates().len(),
        3,
        "the others' templates stay"
    );
}

// 5. An idempotent retry creates no second instance.
#[tokio::test]
async fn retried_launch_is_idempotent() {
    let moto = support::moto().await;
    let ec2 = nodewright::cloud::ec2::connect(&moto.settings()).await;
    setup(&ec2).await;
    let (nc, p) = (node_class(), pool());
    let n = planned("general-0", "us-east-1a", CapacityType::OnDemand, M5);
    let first = launcher(&ec2)
        .launch(LaunchRequest {
            node: &n,
            pool: &p,
            node_class: &nc,
            catalog: None,
        })
        .await
        .expect("launch");
    assert!(!first.already_existed);
    // A restarted controller (fresh launcher, no memory) retries the same claim.
    let again = launcher(&ec2)
        .launch(LaunchRequest {
            node: &n,
            pool: &p,
            node_class: &nc,
            catalog: None,
        })
        .await
        .expect("retry");
    assert!(again.already_existed);
    assert_eq!(again.instance_id, first.instance_id);
    let all = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("running")
                .values("pending")
                .build(),
        )
        .send()
        .await
        .expect("describe");
    let n_instances: usize = all.reservations().iter().map(|r| r.instances().len()).sum();
    assert_eq!(n_instances, 1, "no second instance");
}

// 6. Termination and owned-instance listing.
#[tokio::test]
async fn terminates_by_claim_and_lists_owned() {
    let moto = support::moto().await;
    let ec2 = nodewright::cloud::ec2::connect(&moto.settings()).await;
    let w = setup(&ec2).await;
    let l = launcher(&ec2);
    let (nc, p) = (node_class(), pool());
    let mut ids = Vec::new();
    for name in ["general-a", "general-b"] {
        let n = planned(name, "us-east-1a", CapacityType::OnDemand, M5);
        ids.push(
            l.launch(LaunchRequest {
                node: &n,
                pool: &p,
                node_class: &nc,
                catalog: None,
            })
            .await
            .expect("launch")
            .instance_id,
        );
    }
    // An instance nodewright does not own.
    ec2.run_instances()
        .image_id(&w.ami)
        .min_count(1)
        .max_count(1)
        .subnet_id(&w.subnet_b)
        .send()
        .await
        .expect("RunInstances");
    let owned = l.list_owned().await.expect("list");
    let claims: Vec<Option<&str>> = owned.iter().map(|o| o.claim.as_deref()).collect();
    assert_eq!(owned.len(), 2, "{owned:?}");
    assert!(claims.contains(&Some("general-a")) && claims.contains(&Some("general-b")));
    assert!(
        owned
            .iter()
            .all(|o| o.pool.as_deref() == Some("general") && o.zone == "us-east-1a")
    );
    let gone = l.terminate("general-a").await.expect("terminate");
    assert_eq!(gone, vec![ids[0].clone()]);
    let owned = l.list_owned().await.expect("list");
    assert_eq!(
        owned
            .iter()
            .map(|o| o.instance_id.as_str())
            .collect::<Vec<_>>(),
        vec![ids[1].as_str()]
    );
    assert!(
        l.terminate("general-a")
            .await
            .expect("terminate again")
            .is_empty()
    );
}

// 7. Clear errors for a missing subnet and a missing AMI.
#[tokio::test]
async fn missing_subnet_and_ami_are_named() {
    let moto = support::moto().await;
    let ec2 = nodewright::cloud::ec2::connect(&moto.settings()).await;
    setup(&ec2).await;
    let resolver = Resolver::new(ec2.clone(), Duration::from_secs(60));
    let mut nc = node_class();
    nc.subnet_selector = vec![SelectorTerm {
        id: Some("subnet-0123456789abcdef0".into()),
        ..Default::default()
    }];
    let e = resolver.resolve(&nc).await.expect_err("no such subnet");
    assert!(
        matches!(e, ResolveError::MatchedNothing { kind: "subnet", .. }),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "node class `default`: subnet selector [id subnet-0123456789abcdef0] matched nothing"
    );
    let mut nc = node_class();
    nc.ami_selector = vec![AmiSelectorTerm {
        id: Some("ami-0123456789abcdef0".into()),
        ..Default::default()
    }];
    let e = resolver.resolve(&nc).await.expect_err("no such AMI");
    assert_eq!(
        e.to_string(),
        "node class `default`: AMI selector [id ami-0123456789abcdef0] matched nothing"
    );
    let rendered = format!("{:?}", miette::Report::new(e));
    assert!(
        rendered.contains("selector_matched_nothing") && rendered.contains("case-sensitive"),
        "{rendered}"
    );

    // The API error itself carries its code and a hint and is not retried.
    let policy = RetryPolicy::default();
    let err = nodewright::cloud::retry::with_retry(&policy, "DescribeSubnets", || {
        ec2.describe_subnets()
            .subnet_ids("subnet-0123456789abcdef0")
            .send()
    })
    .await
    .expect_err("not found");
    match err {
        nodewright::cloud::retry::Ec2Error::Api {
            code,
            hint,
            attempts,
            ..
        } => {
            assert_eq!(code, "InvalidSubnetID.NotFound");
            assert_eq!(attempts, 1, "validation errors are not retried");
            assert!(hint.is_some_and(|h| h.contains("subnet selector")));
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// `nodewright ec2 resolve` end to end: the binary against moto.
#[tokio::test]
async fn cli_resolve_prints_resources_and_names_empty_selectors() {
    let moto = support::moto().await;
    let ec2 = nodewright::cloud::ec2::connect(&moto.settings()).await;
    let w = setup(&ec2).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("nc.yaml");
    std::fs::write(
        &good,
        "name: default\n\
         subnet_selector:\n  - tags: {karpenter.sh/discovery: demo}\n\
         security_group_selector:\n  - tags: {karpenter.sh/discovery: demo}\n\
         ami_selector:\n  - tags: {karpenter.sh/discovery: demo}\n",
    )
    .expect("write");
    let run = |file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_nodewright"))
            .args(["ec2", "resolve", "default", "--node-class-file"])
            .arg(file)
            .args(["--endpoint-url", &moto.endpoint, "--region", "us-east-1"])
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("NO_COLOR", "1")
            .output()
            .expect("run nodewright")
    };
    let out = run(&good);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for id in [
        &w.subnets_a[0],
        &w.subnets_a[1],
        &w.subnet_b,
        &w.sg,
        &w.ami,
        &w.ami_arm,
    ] {
        assert!(stdout.contains(id.as_str()), "{id} missing from:\n{stdout}");
    }

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: default\n\
         subnet_selector:\n  - tags: {karpenter.sh/discovery: typo}\n\
         security_group_selector:\n  - tags: {karpenter.sh/discovery: demo}\n\
         ami_selector:\n  - tags: {karpenter.sh/discovery: demo}\n",
    )
    .expect("write");
    let out = run(&bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        {
            // miette wraps at 80 columns: compare with whitespace and gutters removed.
            let flat: String = stderr.split_whitespace().filter(|w| *w != "│").collect();
            flat.contains("subnetselector[tagkarpenter.sh/discovery=\"typo\"]matchednothing")
        },
        "{stderr}"
    );

    let unknown = dir.path().join("unknown.yaml");
    std::fs::write(&unknown, "name: default\nsubnet_selektor: []\n").expect("write");
    let out = run(&unknown);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown key `subnet_selektor`"), "{stderr}");
}

/// `nodewright ec2 resolve --policy`: the node class comes from policy text or
/// from a Karpenter EC2NodeClass, and resolves against moto like a bare one.
#[tokio::test]
async fn cli_resolve_reads_node_class_from_policy_and_karpenter_yaml() {
    let moto = support::moto().await;
    let ec2 = nodewright::cloud::ec2::connect(&moto.settings()).await;
    let w = setup(&ec2).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("cluster.policy");
    std::fs::write(
        &policy,
        "node-class workers {\n\
         \x20 ami tag karpenter.sh/discovery = \"demo\"\n\
         \x20 subnets where tag karpenter.sh/discovery = \"demo\"\n\
         \x20 security-groups where tag karpenter.sh/discovery = \"demo\"\n\
         \x20 role \"KarpenterNodeRole-demo\"\n\
         }\n",
    )
    .expect("write policy");
    let yaml = dir.path().join("nodeclass.yaml");
    std::fs::write(
        &yaml,
        "apiVersion: karpenter.k8s.aws/v1\n\
         kind: EC2NodeClass\n\
         metadata:\n  name: workers\n\
         spec:\n\
         \x20 amiSelectorTerms:\n  - tags:\n      karpenter.sh/discovery: demo\n\
         \x20 subnetSelectorTerms:\n  - tags:\n      karpenter.sh/discovery: demo\n\
         \x20 securityGroupSelectorTerms:\n  - tags:\n      karpenter.sh/discovery: demo\n\
         \x20 role: KarpenterNodeRole-demo\n",
    )
    .expect("write yaml");
    let run = |policy: &std::path::Path, class: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_nodewright"))
            .args(["ec2", "resolve", class, "--policy"])
            .arg(policy)
            .args(["--endpoint-url", &moto.endpoint, "--region", "us-east-1"])
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("NO_COLOR", "1")
            .output()
            .expect("run nodewright")
    };
    for source in [&policy, &yaml] {
        let out = run(source, "workers");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {stdout}\n{}",
            source.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        for id in [&w.subnets_a[0], &w.subnets_a[1], &w.subnet_b, &w.sg, &w.ami] {
            assert!(
                stdout.contains(id.as_str()),
                "{}: {id} missing from:\n{stdout}",
                source.display()
            );
        }
    }
    let out = run(&policy, "gpu");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the policy defines no node class `gpu`") && stderr.contains("workers"),
        "{stderr}"
    );
}

/// The fleets moto holds: (id, total target capacity).
async fn fleets(ec2: &aws_sdk_ec2::Client) -> Vec<(String, i32)> {
    ec2.describe_fleets()
        .send()
        .await
        .expect("DescribeFleets")
        .fleets()
        .iter()
        .map(|f| {
            (
                f.fleet_id().unwrap_or_default().to_string(),
                f.target_capacity_specification()
                    .and_then(|t| t.total_target_capacity())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

// 8. Identical nodes share one CreateFleet; each instance is tagged with its
// claim afterwards, so it is found by its claim like a single launch.
#[tokio::test]
async fn identical_nodes_launch_with_one_fleet_and_each_instance_names_its_claim() {
    let moto = support::moto().await;
    let ec2 = nodewright::cloud::ec2::connect(&moto.settings()).await;
    setup(&ec2).await;
    let l = launcher(&ec2);
    let (nc, p) = (node_class(), pool());
    let nodes: Vec<PlannedNode> = (0..4)
        .map(|i| {
            planned(
                &format!("general-b{i}"),
                "us-east-1a",
                CapacityType::OnDemand,
                M5,
            )
        })
        .collect();
    assert_eq!(launch_groups(&nodes, 100), vec![vec![0, 1, 2, 3]]);
    let reqs: Vec<LaunchRequest<'_>> = nodes
        .iter()
        .map(|node| LaunchRequest {
            node,
            pool: &p,
            node_class: &nc,
            catalog: None,
        })
        .collect();
    let got: Vec<_> = l
        .launch_new_group(&reqs)
        .await
        .into_iter()
        .map(|r| r.expect("launched"))
        .collect();
    let claims: Vec<&str> = got.iter().map(|g| g.claim.as_str()).collect();
    assert_eq!(
        claims,
        ["general-b0", "general-b1", "general-b2", "general-b3"]
    );
    let ids: std::collections::BTreeSet<&str> =
        got.iter().map(|g| g.instance_id.as_str()).collect();
    assert_eq!(ids.len(), 4, "one instance per claim: {got:?}");
    assert!(
        got.iter()
            .all(|g| g.instance_type == "m5.large" && g.zone == "us-east-1a" && !g.already_existed)
    );
    let f = fleets(&ec2).await;
    assert_eq!(f.len(), 1, "one CreateFleet: {f:?}");
    assert_eq!(f[0].1, 4, "for four instances");
    for g in &got {
        let tags = instance_tags(&ec2, &g.instance_id).await;
        assert_eq!(tags.get(TAG_CLAIM), Some(&g.claim), "{tags:?}");
        assert_eq!(tags.get("Name"), Some(&g.claim));
        assert_eq!(tags.get(TAG_CLUSTER).map(String::as_str), Some("demo"));
        assert_eq!(tags.get(TAG_POOL).map(String::as_str), Some("general"));
        assert_eq!(tags.get("owner").map(String::as_str), Some("platform"));
    }
    // Found by claim as a single launch is: a restarted controller's retry
    // of one of them launches nothing, and termination by claim finds it.
    let again = launcher(&ec2).launch(reqs[2]).await.expect("retry");
    assert!(again.already_existed);
    assert_eq!(again.instance_id, got[2].instance_id);
    assert_eq!(fleets(&ec2).await.len(), 1, "no second fleet");
    assert_eq!(
        l.terminate("general-b1").await.expect("terminate"),
        vec![got[1].instance_id.clone()]
    );
    // A group of one is today's single launch: the claim's tag at launch.
    let one = planned("general-c0", "us-east-1a", CapacityType::OnDemand, M5);
    let r = l
        .launch_new_group(&[LaunchRequest {
            node: &one,
            pool: &p,
            node_class: &nc,
            catalog: None,
        }])
        .await;
    let id = &r[0].as_ref().expect("launched").instance_id;
    assert_eq!(
        instance_tags(&ec2, id)
            .await
            .get(TAG_CLAIM)
            .map(String::as_str),
        Some("general-c0")
    );
}

// 9. A fleet EC2 fills only partly: the claims left without an instance
// fail alone (with the refused offering), the others are launched; with a
// fallback type the rest goes there in a second round.
#[tokio::test]
async fn a_partly_filled_fleet_fails_only_the_claims_left_without_an_instance() {
    let moto = support::moto().await;
    let ec2 = nodewright::cloud::ec2::connect(&moto.settings()).await;
    setup(&ec2).await;
    moto.limit(&[("m5.large", "us-east-1a", 2)]);
    let (nc, p) = (node_class(), pool());
    let only_large = &M5[..1];
    let nodes: Vec<PlannedNode> = (0..3)
        .map(|i| {
            planned(
                &format!("general-p{i}"),
                "us-east-1a",
                CapacityType::OnDemand,
                only_large,
            )
        })
        .collect();
    let reqs: Vec<LaunchRequest<'_>> = nodes
        .iter()
        .map(|node| LaunchRequest {
            node,
            pool: &p,
            node_class: &nc,
            catalog: None,
        })
        .collect();
    let l = launcher(&ec2);
    let r = l.launch_new_group(&reqs).await;
    assert!(r[0].is_ok() && r[1].is_ok(), "{r:?}");
    match &r[2] {
        Err(LaunchError::NoCapacity { claim, failed, .. }) => {
            assert_eq!(claim, "general-p2");
            assert_eq!(failed[0].instance_type, "m5.large");
            assert_eq!(failed[0].code, "InsufficientInstanceCapacity");
        }
        other => panic!("expected NoCapacity for the third claim, got {other:?}"),
    }
    let owned = l.list_owned().await.expect("list");
    let mut tagged: Vec<Option<&str>> = owned.iter().map(|o| o.claim.as_deref()).collect();
    tagged.sort();
    assert_eq!(
        tagged,
        [Some("general-p0"), Some("general-p1")],
        "nothing for the third"
    );

    // With a fallback type (a fresh launcher: nothing cached unavailable),
    // two go to m5.large and the third to m5.xlarge in a second fleet.
    let nodes: Vec<PlannedNode> = (0..3)
        .map(|i| {
            planned(
                &format!("general-q{i}"),
                "us-east-1a",
                CapacityType::OnDemand,
                M5,
            )
        })
        .collect();
    let reqs: Vec<LaunchRequest<'_>> = nodes
        .iter()
        .map(|node| LaunchRequest {
            node,
            pool: &p,
            node_class: &nc,
            catalog: None,
        })
        .collect();
    let got: Vec<_> = launcher(&ec2)
        .launch_new_group(&reqs)
        .await
        .into_iter()
        .map(|r| r.expect("launched"))
        .collect();
    let types: Vec<&str> = got.iter().map(|g| g.instance_type.as_str()).collect();
    assert_eq!(types, ["m5.large", "m5.large", "m5.xlarge"]);
    for g in &got {
        assert_eq!(
            instance_tags(&ec2, &g.instance_id).await.get(TAG_CLAIM),
            Some(&g.claim)
        );
    }
    assert_eq!(
        fleets(&ec2).await.len(),
        3,
        "one fleet, then one for the rest"
    );
}
