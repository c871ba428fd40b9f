//! Outside us-east-1, against moto's EC2 and SSM: the live catalog of the
//! configured region, its refresher, a launch landing in that region's
//! subnet, and AMI aliases resolved through the public SSM parameters EKS
//! publishes (created here by the test: moto ships none of them).
//!
//! Needs the `aws` feature and moto: `bash scripts/test.sh --test region`.
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nodewright::catalog::{CapacityType, Catalog, UnavailableOfferings};
use nodewright::cloud::discover::LiveCatalog;
use nodewright::cloud::ec2::{Ec2Settings, connect, load, ssm};
use nodewright::cloud::launcher::{Ec2Launcher, LaunchRequest, Launcher};
use nodewright::cloud::refresh::{CatalogSource, StartCatalogError, spawn_refresh, start_live};
use nodewright::cloud::resolve::{ResolveError, Resolver};
use nodewright::cloud::ssm::{AliasError, KubeVersion};
use nodewright::cloud::userdata::ClusterInfo;
use nodewright::ir::{AmiSelectorTerm, NodeClass, Pool, SelectorTerm};
use nodewright::solver::{InstanceOption, PlannedNode};
use world::{DISCOVERY, image, setup_in};

const REGION: &str = "eu-west-1";

fn by_tag() -> SelectorTerm {
    SelectorTerm {
        tags: BTreeMap::from([(DISCOVERY.to_string(), "demo".to_string())]),
        ..Default::default()
    }
}

fn node_class(ami: AmiSelectorTerm) -> NodeClass {
    NodeClass {
        name: "default".into(),
        ami_selector: vec![ami],
        subnet_selector: vec![by_tag()],
        security_group_selector: vec![by_tag()],
        role: Some("KarpenterNodeRole-demo".into()),
        ..Default::default()
    }
}

fn alias(a: &str) -> AmiSelectorTerm {
    AmiSelectorTerm {
        alias: Some(a.into()),
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
        labels: BTreeMap::new(),
        taints: vec![],
        startup_taints: vec![],
        tags: BTreeMap::new(),
        node_class: "default".into(),
        kubelet: Default::default(),
        disruption: Default::default(),
        scripts: vec![],
        origin: None,
    }
}

/// A node planned from `catalog`: its cheapest on-demand m5 offerings in `zone`.
fn planned_from(catalog: &Catalog, zone: &str) -> PlannedNode {
    let zi = catalog
        .zones
        .iter()
        .position(|z| z.name == zone)
        .expect("zone in the catalog") as u16;
    let mut options: Vec<InstanceOption> = catalog
        .offerings
        .iter()
        .filter(|o| o.zone_index == zi && o.capacity_type == CapacityType::OnDemand)
        .filter_map(|o| {
            let t = &catalog.types[o.type_index as usize];
            let family = t.name.split('.').next()?;
            (family == "m5")
                .then_some(())
                .and(o.price)
                .map(|p| InstanceOption {
                    instance_type: t.name.as_str().into(),
                    price_per_hour: p,
                })
        })
        .collect();
    options.sort_by(|a, b| a.price_per_hour.total_cmp(&b.price_per_hour));
    options.truncate(3);
    assert!(!options.is_empty(), "no m5 offering in {zone}");
    PlannedNode {
        name: "general-0".into(),
        pool: "general".into(),
        node_class: "default".into(),
        zone: zone.into(),
        capacity_type: CapacityType::OnDemand,
        instance_type: options[0].instance_type.to_string(),
        price_per_hour: options[0].price_per_hour,
        instance_type_options: options,
        pods: vec![],
        requested: Default::default(),
        allocatable: Default::default(),
        labels: BTreeMap::new(),
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

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn live_catalog_of_another_region_launches_there() {
    let moto = support::moto().await;
    let settings = moto.settings_in(REGION);
    let (live, d) = start_live(&settings).await.expect("first discovery");
    let c = live.get();
    assert_eq!(c.region, REGION);
    assert!(c.zones.len() >= 3, "{:?}", c.zones);
    assert!(
        c.zones.iter().all(|z| z.name.starts_with(REGION)),
        "{:?}",
        c.zones
    );
    assert!(c.types.len() > 500, "{}", c.types.len());
    // On-demand prices are looked up by type in the embedded table.
    let m5 = c
        .types
        .iter()
        .position(|t| t.name == "m5.large")
        .expect("m5") as u32;
    let od = c
        .offerings
        .iter()
        .find(|o| o.type_index == m5 && o.capacity_type == CapacityType::OnDemand)
        .expect("m5.large on-demand offering");
    assert_eq!(od.price, Some(0.096));
    assert!(d.unpriced.iter().all(|t| t != "m5.large"));

    // A launch planned from that catalog lands in the region's subnet and zone.
    let ec2 = connect(&settings).await;
    let w = setup_in(&ec2, REGION).await;
    let zone = format!("{REGION}b");
    let node = planned_from(&c, &zone);
    let unavailable = Arc::new(UnavailableOfferings::default());
    let l = Ec2Launcher::new(ec2.clone(), cluster(), Arc::clone(&unavailable));
    let nc = node_class(AmiSelectorTerm {
        tags: BTreeMap::from([(DISCOVERY.to_string(), "demo".to_string())]),
        ..Default::default()
    });
    let p = pool();
    let got = l
        .launch(LaunchRequest {
            node: &node,
            pool: &p,
            node_class: &nc,
            catalog: Some(&c),
        })
        .await
        .expect("launch");
    assert_eq!(
        (got.zone.as_str(), got.subnet_id.as_str()),
        (zone.as_str(), w.subnet_b.as_str())
    );
    let inst = ec2
        .describe_instances()
        .instance_ids(&got.instance_id)
        .send()
        .await
        .expect("DescribeInstances");
    let i = &inst.reservations()[0].instances()[0];
    assert_eq!(
        i.placement().and_then(|p| p.availability_zone()),
        Some(zone.as_str())
    );
    assert_eq!(i.subnet_id(), Some(w.subnet_b.as_str()));

    // EC2 refusing the cheapest offering there marks it unavailable in the
    // cache the next plan's snapshot is taken from.
    let cheapest = node.instance_type_options[0].instance_type.to_string();
    moto.refuse(&[(cheapest.as_str(), zone.as_str(), Some("on-demand"))]);
    let mut again = node.clone();
    again.name = "general-1".into();
    let got = l
        .launch(LaunchRequest {
            node: &again,
            pool: &p,
            node_class: &nc,
            catalog: Some(&c),
        })
        .await
        .expect("falls back");
    assert_ne!(got.instance_type, cheapest);
    assert!(unavailable.contains(&cheapest, &zone, CapacityType::OnDemand));
    assert!(
        unavailable
            .snapshot()
            .contains(&cheapest, &zone, CapacityType::OnDemand)
    );
}

#[tokio::test]
async fn refresher_swaps_in_new_catalogs_and_keeps_the_last_good_one() {
    let moto = support::moto().await;
    let settings = moto.settings_in(REGION);
    let (good, _) = start_live(&settings).await.expect("first discovery");
    let good_catalog = good.get();
    let prices = nodewright::cloud::discover::default_price_table().expect("prices");

    // From an empty catalog: the first tick replaces it.
    let mut empty = (*good_catalog).clone();
    empty.types.clear();
    empty.offerings.clear();
    let ec2 = connect(&settings).await;
    let live = LiveCatalog::from_catalog(empty, ec2, REGION, prices.clone());
    let source = CatalogSource::from(Arc::clone(&live));
    let oks = Arc::new(AtomicUsize::new(0));
    let task = source
        .spawn_refresh(Duration::from_millis(100), {
            let oks = Arc::clone(&oks);
            move |r| {
                if r.is_ok() {
                    oks.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
        .expect("a live source refreshes");
    wait_until("a successful refresh", || oks.load(Ordering::SeqCst) > 0).await;
    task.abort();
    assert_eq!(source.get().types.len(), good_catalog.types.len());
    assert_eq!(source.get().region, REGION);

    // Against a dead endpoint: failures are reported, the last good catalog stays.
    let dead = connect(&Ec2Settings::static_test_in("http://127.0.0.1:9", REGION)).await;
    let stale = LiveCatalog::from_catalog((*good_catalog).clone(), dead, REGION, prices);
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let task = spawn_refresh(Arc::clone(&stale), Duration::from_millis(20), {
        let errors = Arc::clone(&errors);
        move |r| {
            if let Err(e) = r {
                errors.lock().unwrap().push(e.to_string());
            }
        }
    });
    wait_until("two failed refreshes", || errors.lock().unwrap().len() >= 2).await;
    task.abort();
    assert_eq!(*stale.get(), *good_catalog);
    assert!(
        errors.lock().unwrap()[0].contains("DescribeAvailabilityZones"),
        "{:?}",
        errors.lock().unwrap()
    );

    // A first discovery that fails stops start-up, naming the region and what it needs.
    let Err(e) = start_live(&Ec2Settings::static_test_in("http://127.0.0.1:9", REGION)).await
    else {
        panic!("discovery against a dead endpoint succeeded")
    };
    let help = miette::Diagnostic::help(&e)
        .map(|h| h.to_string())
        .unwrap_or_default();
    assert!(
        matches!(e, StartCatalogError::Discovery { .. })
            && e.to_string() == format!("discovering the {REGION} catalog from EC2 failed")
            && help.contains("ec2:DescribeInstanceTypes")
            && help.contains(&format!("in {REGION}")),
        "{e}\n{help}"
    );
}

/// The AMIs and public parameters of one Kubernetes minor, as EKS publishes them.
struct Published {
    /// (alias, arch) → image id.
    ids: BTreeMap<(String, &'static str), String>,
}

async fn put(ssm: &aws_sdk_ssm::Client, name: &str, value: &str) {
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .data_type("aws:ec2:image")
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutParameter {name}: {e:?}"));
}

/// Images named as EKS names them for `k` (and one for a newer minor), and
/// the parameters of `al2023`, `al2` and `bottlerocket`, latest and pinned.
async fn publish(
    ec2: &aws_sdk_ec2::Client,
    ssm: &aws_sdk_ssm::Client,
    subnet: &str,
    k: &str,
) -> Published {
    let mut ids = BTreeMap::new();
    let bases = [
        ("x86_64", "ami-ekslinux"),
        ("arm64", "ami-0e9271c829888680e"),
    ];
    for (arch, base) in bases {
        let kube_arch = if arch == "x86_64" { "amd64" } else { "arm64" };
        let br_arch = if arch == "x86_64" {
            "x86_64"
        } else {
            "aarch64"
        };
        let al2_node = if arch == "x86_64" {
            "amazon-eks-node"
        } else {
            "amazon-eks-arm64-node"
        };
        let al2_dir = if arch == "x86_64" {
            "amazon-linux-2"
        } else {
            "amazon-linux-2-arm64"
        };
        // Two releases each: the pinned one is the older.
        for (rel, latest) in [("v20240701", false), ("v20240807", true)] {
            let a = image(
                ec2,
                subnet,
                base,
                &format!("amazon-eks-node-al2023-{arch}-standard-{k}-{rel}"),
            )
            .await;
            put(ssm, &format!("/aws/service/eks/optimized-ami/{k}/amazon-linux-2023/{arch}/standard/amazon-eks-node-al2023-{arch}-standard-{k}-{rel}/image_id"), &a).await;
            if latest {
                put(ssm, &format!("/aws/service/eks/optimized-ami/{k}/amazon-linux-2023/{arch}/standard/recommended/image_id"), &a).await;
                ids.insert(("al2023@latest".to_string(), kube_arch), a);
            } else {
                ids.insert((format!("al2023@{rel}"), kube_arch), a);
            }
            let b = image(ec2, subnet, base, &format!("{al2_node}-{k}-{rel}")).await;
            put(
                ssm,
                &format!(
                    "/aws/service/eks/optimized-ami/{k}/{al2_dir}/{al2_node}-{k}-{rel}/image_id"
                ),
                &b,
            )
            .await;
            if latest {
                put(
                    ssm,
                    &format!("/aws/service/eks/optimized-ami/{k}/{al2_dir}/recommended/image_id"),
                    &b,
                )
                .await;
                ids.insert(("al2@latest".to_string(), kube_arch), b);
            } else {
                ids.insert((format!("al2@{rel}"), kube_arch), b);
            }
        }
        for (rel, latest) in [("1.20.3", false), ("1.21.0", true)] {
            let c = image(
                ec2,
                subnet,
                base,
                &format!("bottlerocket-aws-k8s-{k}-{br_arch}-v{rel}-abcdef12"),
            )
            .await;
            put(
                ssm,
                &format!("/aws/service/bottlerocket/aws-k8s-{k}/{arch}/{rel}/image_id"),
                &c,
            )
            .await;
            if latest {
                put(
                    ssm,
                    &format!("/aws/service/bottlerocket/aws-k8s-{k}/{arch}/latest/image_id"),
                    &c,
                )
                .await;
                ids.insert(("bottlerocket@latest".to_string(), kube_arch), c);
            } else {
                ids.insert((format!("bottlerocket@{rel}"), kube_arch), c);
            }
        }
    }
    Published { ids }
}

#[tokio::test]
async fn ami_aliases_resolve_through_ssm_for_the_control_plane_version() {
    let moto = support::moto().await;
    let config = load(&moto.settings_in(REGION)).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let ssm_client = ssm(&config);
    let w = setup_in(&ec2, REGION).await;
    let k = KubeVersion::parse("1.31").expect("version");
    let published = publish(&ec2, &ssm_client, &w.subnet_b, "1.31").await;

    let mut resolver = Resolver::new(ec2.clone(), Duration::from_secs(60));
    resolver.use_ssm(ssm_client.clone());

    // No version yet: an alias is refused, with a hint.
    let e = resolver
        .resolve(&node_class(alias("al2023@latest")))
        .await
        .expect_err("no version");
    assert!(
        matches!(
            e,
            ResolveError::Alias(AliasError::NoKubernetesVersion { .. })
        ),
        "{e:?}"
    );
    resolver.set_kubernetes_version(k);

    for (a, family) in [
        ("al2023@latest", "AL2023"),
        ("al2023@v20240701", "AL2023"),
        ("al2@latest", "AL2"),
        ("al2@v20240701", "AL2"),
        ("bottlerocket@latest", "Bottlerocket"),
        ("bottlerocket@1.20.3", "Bottlerocket"),
        ("bottlerocket@v1.20.3", "Bottlerocket"),
    ] {
        let r = resolver
            .resolve(&node_class(alias(a)))
            .await
            .unwrap_or_else(|e| panic!("{a}: {:?}", miette::Report::new(e)));
        assert_eq!(r.ami_family, family, "{a}");
        let key = a.replace("@v1.20.3", "@1.20.3");
        for arch in ["amd64", "arm64"] {
            assert_eq!(
                r.amis.get(arch).map(|x| x.id.as_str()),
                published.ids.get(&(key.clone(), arch)).map(String::as_str),
                "{a} {arch}"
            );
        }
        assert_eq!(r.amis.len(), 2, "{a}");
    }
    // Latest and pinned are different images.
    assert_ne!(
        published.ids[&("al2023@latest".to_string(), "amd64")],
        published.ids[&("al2023@v20240701".to_string(), "amd64")]
    );

    // A pinned release EKS never published: not found, with the hint.
    let e = resolver
        .resolve(&node_class(alias("al2023@v19990101")))
        .await
        .expect_err("not published");
    let ResolveError::Alias(a @ AliasError::NotFound { .. }) = &e else {
        panic!("{e:?}")
    };
    let help = miette::Diagnostic::help(a)
        .map(|h| h.to_string())
        .unwrap_or_default();
    assert!(
        a.to_string()
            .contains("parameter not found for Kubernetes 1.31")
            && help.contains("is 1.31 a version EKS publishes AL2023 AMIs for"),
        "{a}\n{help}"
    );

    // An older control plane: the 1.31 parameters are never read, and
    // nothing is published for 1.30 here.
    let mut old = Resolver::new(ec2.clone(), Duration::from_secs(60));
    old.use_ssm(ssm_client.clone());
    old.set_kubernetes_version(KubeVersion::parse("1.30").expect("version"));
    let e = old
        .resolve(&node_class(alias("al2023@latest")))
        .await
        .expect_err("nothing for 1.30");
    assert!(
        matches!(&e, ResolveError::Alias(AliasError::NotFound { kubernetes, .. }) if kubernetes.to_string() == "1.30"),
        "{e:?}"
    );

    // A parameter of the control plane's minor that points at an image
    // built for a newer one is refused.
    let newer = image(
        &ec2,
        &w.subnet_b,
        "ami-ekslinux",
        "amazon-eks-node-al2023-x86_64-standard-1.32-v20240901",
    )
    .await;
    put(&ssm_client, "/aws/service/eks/optimized-ami/1.31/amazon-linux-2023/x86_64/standard/amazon-eks-node-al2023-x86_64-standard-1.31-v20240901/image_id", &newer).await;
    let e = resolver
        .resolve(&node_class(alias("al2023@v20240901")))
        .await
        .expect_err("newer minor");
    let ResolveError::Alias(a @ AliasError::NewerMinor { .. }) = &e else {
        panic!("{e:?}")
    };
    let help = miette::Diagnostic::help(a)
        .map(|h| h.to_string())
        .unwrap_or_default();
    assert!(
        a.to_string()
            .contains("built for Kubernetes 1.32, newer than the control plane's 1.31")
            && help.contains("upgrade the control plane first"),
        "{a}\n{help}"
    );
}
