use super::*;
use serde_json::json;

fn policy(pool_body: &str) -> PolicySet {
    let text = format!(
        "node-class default {{\n  ami alias al2023@latest\n  role \"R\"\n  subnets where tag k = \"v\"\n  security-groups where tag k = \"v\"\n}}\npool general {{\n  node-class default\n{pool_body}\n}}\n"
    );
    let file =
        crate::policy::parse("test.policy", &text).unwrap_or_else(|d| panic!("{}", d.render(100)));
    crate::policy::compile(&[file])
        .unwrap_or_else(|d| panic!("{}", d.render(100)))
        .0
}

fn hash(p: &PolicySet) -> String {
    drift::pool_hash(&p.pools[0], p.node_classes.get("default"))
}

fn now() -> Timestamp {
    "2026-03-02T12:00:00Z".parse().unwrap()
}

/// A launched, initialized claim of pool `general` created `age_h` hours ago.
fn claim(name: &str, age_h: i64, annotations: serde_json::Value) -> NodeClaim {
    let created = now()
        .checked_sub(jiff::SignedDuration::from_hours(age_h))
        .unwrap();
    serde_json::from_value(json!({
        "apiVersion": "nodewright.io/v1alpha1",
        "kind": "NodeClaim",
        "metadata": {
            "name": name,
            "creationTimestamp": created.to_string(),
            "annotations": annotations,
        },
        "spec": {
            "pool": "general",
            "nodeClass": "default",
            "requirements": {
                "instanceTypes": [
                    {"name": "m5.large", "pricePerHour": 0.096},
                    {"name": "m5a.large", "pricePerHour": 0.086}
                ],
                "zones": ["us-east-1a"],
                "capacityTypes": ["on-demand"]
            },
            "resources": {"requests": {}, "allocatable": {"cpu": "1930m"}},
            "labels": {"team": "a"}
        },
        "status": {
            "providerID": format!("aws:///us-east-1a/i-{name}"),
            "instanceType": "m5.large",
            "zone": "us-east-1a",
            "capacityType": "on-demand",
            "imageID": "ami-1",
            "conditions": [
                {"type": "Launched", "status": "True", "reason": "Launched", "message": "", "lastTransitionTime": "2026-03-01T00:00:00Z"},
                {"type": "Initialized", "status": "True", "reason": "Initialized", "message": "", "lastTransitionTime": "2026-03-01T00:00:00Z"}
            ]
        }
    }))
    .unwrap()
}

fn unlaunched(name: &str) -> NodeClaim {
    let mut c = claim(name, 0, json!({}));
    c.status = Some(NodeClaimStatus::default());
    c
}

fn node(name: &str, claim: &str, annotations: serde_json::Value) -> Node {
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": {"team": "a", "node.kubernetes.io/instance-type": "m5.large"},
            "annotations": annotations,
        },
        "spec": {"providerID": format!("aws:///us-east-1a/i-{claim}")}
    }))
    .unwrap()
}

fn pod(name: &str, node: &str, annotations: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running"}
    }))
    .unwrap()
}

fn run(p: &PolicySet, claims: &[NodeClaim], nodes: &[Node], pods: &[Pod]) -> Decisions {
    let images: BTreeMap<String, BTreeSet<String>> =
        [("default".to_string(), ["ami-1".to_string()].into())].into();
    let mut n = 0;
    decide(
        &Facts {
            claims,
            nodes,
            pods,
            policy: p,
            images: &images,
            now: now(),
        },
        &mut || {
            n += 1;
            format!("r{n}")
        },
    )
}

fn replaced(d: &Decisions) -> Vec<(&str, DisruptionReason, &str)> {
    d.steps
        .iter()
        .filter_map(|s| match s {
            Step::Replace {
                old,
                reason,
                replacement,
            } => Some((old.as_str(), *reason, replacement.name.as_str())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_changed_pool_drifts_its_claims_which_are_replaced_shaped_by_the_pool_now() {
    let before = policy("  label team = a\n  disruption {\n    budget 100%\n  }");
    let after = policy("  label team = b\n  disruption {\n    budget 100%\n  }");
    let c = claim("general-aaaaa", 1, json!({ POOL_HASH: hash(&before) }));
    let nodes = [node("ip-1", "general-aaaaa", json!({}))];
    let pods = [pod("web-1", "ip-1", json!({}))];
    let d = run(&before, std::slice::from_ref(&c), &nodes, &pods);
    assert_eq!(d.drifted, 0);
    assert!(d.steps.is_empty(), "{:?}", d.steps);
    assert_eq!(d.total, 1);
    assert!((d.price_per_hour - 0.096).abs() < 1e-9);

    let d = run(&after, std::slice::from_ref(&c), &nodes, &pods);
    assert_eq!(d.drifted, 1);
    assert!(matches!(&d.steps[0], Step::Conditions { claim, status }
        if claim == "general-aaaaa" && status["conditions"][2]["type"] == "Drifted"
            && status["conditions"][2]["reason"] == "PoolChanged"));
    assert_eq!(
        replaced(&d),
        [("general-aaaaa", DisruptionReason::Drifted, "general-r1")]
    );
    let Some(Step::Replace { replacement, .. }) = d.steps.get(1) else {
        panic!("{:?}", d.steps)
    };
    assert_eq!(replacement.labels.get("team").map(String::as_str), Some("b"));
    assert_eq!(replacement.instance_type, "m5.large");
    assert_eq!(replacement.instance_type_options.len(), 1, "only the launched offering");
    assert_eq!(replacement.pods, ["default/web-1"]);
}

#[test]
fn budgets_hold_drift_and_replacements_under_way_count_against_them() {
    let before = policy("  label team = a");
    let after = policy("  label team = b\n  disruption {\n    budget 1\n  }");
    let h = hash(&before);
    let claims = [
        claim("general-a", 3, json!({ POOL_HASH: h })),
        claim("general-b", 2, json!({ POOL_HASH: h })),
    ];
    let d = run(&after, &claims, &[], &[]);
    assert_eq!(d.drifted, 2);
    assert_eq!(replaced(&d), [("general-a", DisruptionReason::Drifted, "general-r1")], "oldest first");
    assert_eq!(d.held.len(), 1);
    assert!(d.held[0].1.contains("budget"), "{:?}", d.held);

    let zero = policy("  label team = b\n  disruption {\n    budget 0 reasons [drifted]\n  }");
    let d = run(&zero, &claims, &[], &[]);
    assert!(replaced(&d).is_empty());
    assert_eq!(d.held.len(), 2);

    // One under way uses the budget of 1: the other waits.
    let claims = [
        claim(
            "general-a",
            3,
            json!({ POOL_HASH: h, REPLACING: "general-new", REPLACING_REASON: "drifted" }),
        ),
        claim("general-b", 2, json!({ POOL_HASH: h })),
        unlaunched("general-new"),
    ];
    let d = run(&after, &claims, &[], &[]);
    assert!(replaced(&d).is_empty(), "{:?}", d.steps);
    assert!(d.protected.contains("general-new"));
    assert!(d.held.iter().any(|(c, why)| c == "general-a" && why.contains("waiting")));
}

#[test]
fn a_replacement_initialized_releases_the_old_claim_and_a_lost_one_drains_nothing() {
    let p = policy("  label team = a");
    let old = claim(
        "general-a",
        3,
        json!({ REPLACING: "general-new", REPLACING_REASON: "expired" }),
    );
    let d = run(&p, &[old.clone(), claim("general-new", 0, json!({}))], &[], &[]);
    assert_eq!(
        d.steps,
        [Step::Remove {
            claim: "general-a".into(),
            reason: DisruptionReason::Expired
        }]
    );
    let d = run(&p, std::slice::from_ref(&old), &[], &[]);
    assert_eq!(
        d.steps,
        [Step::Abandon {
            old: "general-a".into(),
            replacement: "general-new".into()
        }]
    );
}

#[test]
fn expiry_is_forceful_but_paced_and_do_not_disrupt_holds_drift_only() {
    let p = policy("  label team = a\n  disruption {\n    expire-after 24h\n    budget 100%\n  }");
    let claims = [claim("general-old", 25, json!({})), claim("general-young", 1, json!({}))];
    let nodes = [
        node("ip-old", "general-old", json!({"karpenter.sh/do-not-disrupt": "true"})),
        node("ip-young", "general-young", json!({})),
    ];
    let d = run(&p, &claims, &nodes, &[]);
    assert_eq!(replaced(&d), [("general-old", DisruptionReason::Expired, "general-r1")]);

    let paced = policy(
        "  label team = a\n  disruption {\n    expire-after 24h\n    budget 0 reasons [expired]\n  }",
    );
    assert!(replaced(&run(&paced, &claims, &nodes, &[])).is_empty());

    // Drift with a do-not-disrupt pod on the node waits.
    let before = policy("  label team = a");
    let after = policy("  label team = b\n  disruption {\n    budget 100%\n  }");
    let c = claim("general-x", 1, json!({ POOL_HASH: hash(&before) }));
    let nodes = [node("ip-x", "general-x", json!({}))];
    let pods = [pod("db-0", "ip-x", json!({"nodewright.io/do-not-disrupt": "true"}))];
    let d = run(&after, std::slice::from_ref(&c), &nodes, &pods);
    assert!(replaced(&d).is_empty());
    assert!(d.held.iter().any(|(_, why)| why.contains("do-not-disrupt")));
}

#[test]
fn a_new_image_drifts_and_unmet_requirements_without_a_fitting_offering_hold() {
    let p = policy("  label team = a\n  disruption {\n    budget 100%\n  }");
    let mut c = claim("general-a", 1, json!({}));
    if let Some(s) = c.status.as_mut() {
        s.image_id = Some("ami-0".into());
    }
    let d = run(&p, std::slice::from_ref(&c), &[], &[]);
    assert_eq!(d.drifted, 1);
    assert_eq!(replaced(&d).len(), 1);

    let p = policy(
        "  label team = a\n  require node.kubernetes.io/instance-type in [c5.large]\n  disruption {\n    budget 100%\n  }",
    );
    let c = claim("general-a", 1, json!({}));
    let d = run(&p, std::slice::from_ref(&c), &[], &[]);
    assert_eq!(d.drifted, 1);
    assert!(replaced(&d).is_empty());
    assert!(d.held[0].1.contains("no replacement"), "{:?}", d.held);
}
