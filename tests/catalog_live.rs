//! Live catalog discovery against moto's EC2 server.
//!
//! Needs the `aws` feature: `cargo test --features aws --test catalog_live`.
#![cfg(feature = "aws")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test"
)]

#[path = "support/moto.rs"]
mod support;

use nodewright::catalog::CapacityType;
use nodewright::cloud::discover::{
    DEFAULT_SPOT_FRACTION, LiveCatalog, default_price_table, discover,
};
use nodewright::ir::labels;

#[tokio::test]
async fn discovers_every_type_moto_serves() {
    let moto = support::moto().await;
    let ec2 = nodewright::cloud::ec2::connect(&moto.settings()).await;
    let prices = default_price_table().expect("price table");
    let d = discover(&ec2, "us-east-1", &prices)
        .await
        .expect("discovery");
    let c = &d.catalog;

    // Every type moto describes, minus the ones a Linux node cannot run (mac, i386-only).
    let mut raw = 0usize;
    let mut token = None;
    loop {
        let page = ec2
            .describe_instance_types()
            .set_next_token(token)
            .send()
            .await
            .expect("DescribeInstanceTypes");
        raw += page
            .instance_types()
            .iter()
            .filter(|t| {
                t.processor_info().is_some_and(|p| {
                    p.supported_architectures()
                        .iter()
                        .any(|a| matches!(a.as_str(), "x86_64" | "arm64"))
                })
            })
            .count();
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert!(raw > 1000, "moto serves ~1,263 types, saw {raw}");
    assert_eq!(c.types.len(), raw, "every Linux type parsed");

    // Zones carry their ids.
    assert!(c.zones.len() >= 6);
    assert!(
        c.zones
            .iter()
            .all(|z| z.name.starts_with("us-east-1") && z.id.starts_with("use1-az"))
    );

    // Shape: m5.large as the embedded catalog describes it.
    let m5 = c.instance_type("m5.large").expect("m5.large");
    assert_eq!(
        (m5.vcpus, m5.memory_mib, m5.arch.as_str()),
        (2, 8192, "amd64")
    );
    assert_eq!(m5.label(labels::INSTANCE_FAMILY), Some("m5"));
    assert_eq!(m5.label(labels::INSTANCE_CATEGORY), Some("m"));
    assert_eq!(m5.label(labels::INSTANCE_GENERATION), Some("5"));
    assert_eq!(m5.label(labels::INSTANCE_SIZE), Some("large"));
    assert_eq!(m5.label(labels::INSTANCE_HYPERVISOR), Some("nitro"));
    assert_eq!(m5.eni_max_pods(), 29);
    assert_eq!(m5.capacity.pods, 29);
    let g = c.instance_type("g4dn.xlarge").expect("g4dn.xlarge");
    assert_eq!(g.label(labels::INSTANCE_GPU_MANUFACTURER), Some("nvidia"));
    assert_eq!(g.label(labels::INSTANCE_GPU_NAME), Some("t4"));
    assert_eq!(g.capacity.extended.get("nvidia.com/gpu"), Some(&1));
    let arm = c.instance_type("m6g.large").expect("m6g.large");
    assert_eq!(arm.label(labels::ARCH), Some("arm64"));

    // Offerings: both capacity types wherever the type is offered.
    let od: Vec<_> = c
        .offerings
        .iter()
        .filter(|o| o.capacity_type == CapacityType::OnDemand)
        .collect();
    assert!(od.len() > 5000, "{}", od.len());
    assert_eq!(od.len() * 2, c.offerings.len());
    let m5i = c
        .types
        .iter()
        .position(|t| t.name == "m5.large")
        .expect("index") as u32;
    let m5_offers: Vec<_> = c.offerings.iter().filter(|o| o.type_index == m5i).collect();
    assert!(m5_offers.len() >= 10);
    for o in &m5_offers {
        assert_eq!(c.offering_label(o, labels::INSTANCE_TYPE), Some("m5.large"));
        match o.capacity_type {
            CapacityType::OnDemand => {
                assert_eq!(o.price, Some(0.096));
                assert!(!o.price_estimated);
            }
            // moto's 0.00001 placeholder must not be taken for a price.
            CapacityType::Spot => {
                assert!(o.price_estimated);
                let p = o.price.expect("estimated spot price");
                assert!((p - 0.096 * DEFAULT_SPOT_FRACTION).abs() < 1e-9, "{p}");
            }
        }
    }
    assert!(d.spot_prices_estimated);
    assert!(
        d.warnings
            .iter()
            .any(|w| w.contains("implausible spot prices"))
    );
    // Nothing cheaper than a real price can sneak in.
    assert!(
        c.offerings
            .iter()
            .filter_map(|o| o.price)
            .all(|p| p >= 0.0001)
    );

    // Types live but missing from the price table: warned about, and unpriced.
    for t in &d.unpriced {
        let ti = c.types.iter().position(|x| &x.name == t).expect("type") as u32;
        assert!(
            c.offerings
                .iter()
                .filter(|o| o.type_index == ti)
                .all(|o| o.price.is_none())
        );
    }
    let mut partial = prices.clone();
    partial.remove("m5.large");
    let d2 = discover(&ec2, "us-east-1", &partial)
        .await
        .expect("discovery");
    assert!(d2.unpriced.contains(&"m5.large".to_string()));
    assert!(
        d2.warnings
            .iter()
            .any(|w| w.contains("no on-demand price") && w.contains("m5.large"))
    );
}

#[tokio::test]
async fn refresh_keeps_last_good_catalog() {
    let moto = support::moto().await;
    let ec2 = nodewright::cloud::ec2::connect(&moto.settings()).await;
    let prices = default_price_table().expect("price table");
    let (live, _) = LiveCatalog::start(ec2.clone(), "us-east-1", prices.clone())
        .await
        .expect("start");
    let good = live.get();
    assert!(good.types.len() > 1000);

    // The same catalog behind a dead endpoint: the refresh fails, the last good one stays.
    let dead = nodewright::cloud::ec2::connect(&nodewright::cloud::ec2::Ec2Settings::static_test(
        "http://127.0.0.1:9",
    ))
    .await;
    let stale = LiveCatalog::from_catalog((*good).clone(), dead, "us-east-1", prices.clone());
    assert!(stale.refresh().await.is_err());
    assert_eq!(*stale.get(), *good);

    // Starting from an empty catalog, a refresh that works replaces it.
    let mut empty = (*good).clone();
    empty.types.clear();
    empty.offerings.clear();
    let fresh = LiveCatalog::from_catalog(empty, ec2, "us-east-1", prices);
    fresh.refresh().await.expect("refresh");
    assert_eq!(fresh.get().types.len(), good.types.len());
}
