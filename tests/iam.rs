//! Instance profiles for node-class roles, against moto's IAM: made once,
//! tagged, holding their role, found again after a restart, and collected
//! when no node class names their role, without touching anyone else's.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test, and its items serve only this test"
)]

#[path = "support/moto.rs"]
mod support;

use std::collections::BTreeSet;

use aws_sdk_iam::types::Tag;
use nodewright::cloud::ec2::{iam, load};
use nodewright::cloud::iam::{InstanceProfiles, PROFILE_PATH, TAG_ROLE, profile_name};
use nodewright::cloud::tags::TAG_CLUSTER;

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

async fn role(client: &aws_sdk_iam::Client, name: &str) {
    client
        .create_role()
        .role_name(name)
        .assume_role_policy_document(TRUST)
        .send()
        .await
        .expect("CreateRole");
}

async fn profile_roles(client: &aws_sdk_iam::Client, name: &str) -> Option<Vec<String>> {
    let out = client
        .get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
        .ok()?;
    let p = out.instance_profile?;
    Some(
        p.roles()
            .iter()
            .map(|r| r.role_name().to_string())
            .collect(),
    )
}

async fn all_profiles(client: &aws_sdk_iam::Client) -> BTreeSet<String> {
    client
        .list_instance_profiles()
        .send()
        .await
        .expect("list")
        .instance_profiles()
        .iter()
        .map(|p| p.instance_profile_name().to_string())
        .collect()
}

#[tokio::test]
async fn role_profiles_are_made_once_and_collected_when_unused() {
    let moto = support::moto().await;
    let cfg = load(&moto.settings()).await;
    let client = iam(&cfg);
    role(&client, "NodeRole").await;
    role(&client, "GpuRole").await;

    let profiles = InstanceProfiles::new(client.clone(), "demo", "us-east-1");
    let a = profiles.ensure("NodeRole").await.expect("ensure NodeRole");
    assert_eq!(a, profile_name("demo", "us-east-1", "NodeRole"));
    assert_eq!(
        profile_roles(&client, &a).await,
        Some(vec!["NodeRole".into()])
    );
    let got = client
        .get_instance_profile()
        .instance_profile_name(&a)
        .send()
        .await
        .expect("GetInstanceProfile");
    let p = got.instance_profile().expect("profile");
    assert_eq!(p.path(), PROFILE_PATH);
    let tags: Vec<(&str, &str)> = p.tags().iter().map(|t| (t.key(), t.value())).collect();
    assert!(tags.contains(&(TAG_CLUSTER, "demo")), "{tags:?}");
    assert!(tags.contains(&(TAG_ROLE, "NodeRole")), "{tags:?}");

    // A second controller (restart, other replica) finds the same profile.
    let again = InstanceProfiles::new(client.clone(), "demo", "us-east-1");
    assert_eq!(again.ensure("NodeRole").await.expect("again"), a);
    let g = again.ensure("GpuRole").await.expect("ensure GpuRole");
    assert_eq!(all_profiles(&client).await.len(), 2);

    // Someone else's profiles: another cluster's, and one made by hand.
    let other = InstanceProfiles::new(client.clone(), "other", "us-east-1");
    let theirs = other.ensure("NodeRole").await.expect("other cluster");
    client
        .create_instance_profile()
        .instance_profile_name("hand-made")
        .path(PROFILE_PATH)
        .tags(Tag::builder().key("team").value("x").build().expect("tag"))
        .send()
        .await
        .expect("hand-made profile");

    // Only NodeRole is still named: GpuRole's profile goes, nothing else does.
    let removed = profiles
        .collect(&BTreeSet::from(["NodeRole".to_string()]))
        .await
        .expect("collect");
    assert_eq!(removed, vec![g.clone()]);
    let left = all_profiles(&client).await;
    assert!(!left.contains(&g));
    assert!(
        left.contains(&a) && left.contains(&theirs) && left.contains("hand-made"),
        "{left:?}"
    );
    // The role itself is untouched (only taken out of the profile).
    client
        .get_role()
        .role_name("GpuRole")
        .send()
        .await
        .expect("role stays");

    // Asking for it again makes it again.
    assert_eq!(profiles.ensure("GpuRole").await.expect("remade"), g);
    assert_eq!(
        profile_roles(&client, &g).await,
        Some(vec!["GpuRole".into()])
    );
}

#[tokio::test]
async fn a_missing_role_is_named_with_a_hint() {
    let moto = support::moto().await;
    let cfg = load(&moto.settings()).await;
    let profiles = InstanceProfiles::new(iam(&cfg), "demo", "us-east-1");
    let err = profiles
        .ensure("NoSuchRole")
        .await
        .expect_err("no such role");
    let text = format!("{:?}", miette::Report::new(err));
    assert!(text.contains("AddRoleToInstanceProfile"), "{text}");
    assert!(text.contains("NoSuchEntity"), "{text}");
    assert!(text.contains("does the node class's role exist?"), "{text}");
}

/// Launches run concurrently: eight of them asking for one role's profile at
/// once get the same profile, made once, with the role in it once.
#[tokio::test]
async fn concurrent_asks_make_one_profile() {
    let moto = support::moto().await;
    let cfg = load(&moto.settings()).await;
    let client = iam(&cfg);
    role(&client, "BurstRole").await;
    let profiles = InstanceProfiles::new(client.clone(), "burst", "us-east-1");
    let asks = (0..8).map(|_| profiles.ensure("BurstRole"));
    let got = futures_util::future::join_all(asks).await;
    let want = profile_name("burst", "us-east-1", "BurstRole");
    for g in got {
        assert_eq!(g.expect("every ask succeeds"), want);
    }
    assert_eq!(
        profile_roles(&client, &want).await,
        Some(vec!["BurstRole".into()])
    );
}
