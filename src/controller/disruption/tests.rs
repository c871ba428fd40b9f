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

fn catalog() -> &'static crate::catalog::Catalog {
    crate::catalog::embedded::embedded_static().unwrap()
}

fn run(p: &PolicySet, claims: &[NodeClaim], nodes: &[Node], pods: &[Pod]) -> Decisions {
    run_moves(p, claims, nodes, pods, &[])
}

fn run_moves(
    p: &PolicySet,
    claims: &[NodeClaim],
    nodes: &[Node],
    pods: &[Pod],
    moves: &[Move],
) -> Decisions {
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
            moves,
            replan: &|c, pods| replan(p, catalog(), &[], c, pods),
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
                replacements,
            } => Some((old[0].as_str(), *reason, replacements[0].name.as_str())),
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
    let Step::Drifted { claim, drift } = &d.steps[0] else {
        panic!("{:?}", d.steps)
    };
    assert_eq!(claim, "general-aaaaa");
    let drift = drift.as_ref().unwrap();
    assert_eq!(drift.reason(), "PoolChanged");
    let conds = with_drifted(&c.status.as_ref().unwrap().conditions, Some(drift), now());
    assert_eq!(conds.len(), 3, "Launched and Initialized kept");
    assert_eq!(
        (conds[2].type_.as_str(), conds[2].status.as_str()),
        ("Drifted", "True")
    );
    // Back as it was: False; never drifted: nothing written.
    let back = with_drifted(&conds, None, now());
    assert_eq!(back[2].status, "False");
    assert_eq!(with_drifted(&conds[..2], None, now()), conds[..2]);
    assert_eq!(
        replaced(&d),
        [("general-aaaaa", DisruptionReason::Drifted, "general-r1")]
    );
    let Some(Step::Replace { replacements, .. }) = d.steps.get(1) else {
        panic!("{:?}", d.steps)
    };
    let replacement = &replacements[0];
    assert_eq!(
        replacement.labels.get("team").map(String::as_str),
        Some("b")
    );
    assert_eq!(replacement.instance_type, "m5.large");
    assert_eq!(
        replacement.instance_type_options.len(),
        1,
        "only the launched offering"
    );
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
    assert_eq!(
        replaced(&d),
        [("general-a", DisruptionReason::Drifted, "general-r1")],
        "oldest first"
    );
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
    assert!(
        d.held
            .iter()
            .any(|(c, why)| c == "general-a" && why.contains("waiting"))
    );
}

#[test]
fn a_replacement_initialized_releases_the_old_claim_and_a_lost_one_drains_nothing() {
    let p = policy("  label team = a");
    let old = claim(
        "general-a",
        3,
        json!({ REPLACING: "general-new", REPLACING_REASON: "expired" }),
    );
    let d = run(
        &p,
        &[old.clone(), claim("general-new", 0, json!({}))],
        &[],
        &[],
    );
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
    let claims = [
        claim("general-old", 25, json!({})),
        claim("general-young", 1, json!({})),
    ];
    let nodes = [
        node(
            "ip-old",
            "general-old",
            json!({"karpenter.sh/do-not-disrupt": "true"}),
        ),
        node("ip-young", "general-young", json!({})),
    ];
    let d = run(&p, &claims, &nodes, &[]);
    assert_eq!(
        replaced(&d),
        [("general-old", DisruptionReason::Expired, "general-r1")]
    );

    let paced = policy(
        "  label team = a\n  disruption {\n    expire-after 24h\n    budget 0 reasons [expired]\n  }",
    );
    assert!(replaced(&run(&paced, &claims, &nodes, &[])).is_empty());

    // Drift with a do-not-disrupt pod on the node waits.
    let before = policy("  label team = a");
    let after = policy("  label team = b\n  disruption {\n    budget 100%\n  }");
    let c = claim("general-x", 1, json!({ POOL_HASH: hash(&before) }));
    let nodes = [node("ip-x", "general-x", json!({}))];
    let pods = [pod(
        "db-0",
        "ip-x",
        json!({"nodewright.io/do-not-disrupt": "true"}),
    )];
    let d = run(&after, std::slice::from_ref(&c), &nodes, &pods);
    assert!(replaced(&d).is_empty());
    assert!(d.held.iter().any(|(_, why)| why.contains("do-not-disrupt")));
}

#[test]
fn a_new_image_drifts_and_unmet_requirements_are_re_planned_in_the_pool() {
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
    // No workload pods on it: nothing to carry, so it is removed outright.
    let d = run(&p, std::slice::from_ref(&c), &[], &[]);
    assert_eq!(d.drifted, 1);
    assert!(replaced(&d).is_empty());
    assert!(
        d.steps.iter().any(|s| matches!(s, Step::Remove { claim, reason: DisruptionReason::Drifted } if claim == "general-a")),
        "{:?}",
        d.steps
    );

    // Its pods are re-planned onto what the pool admits now (c5.large), replacement first.
    let nodes = [node("n-a", "general-a", json!({}))];
    let mut small = pod("p1", "n-a", json!({}));
    if let Some(s) = small.spec.as_mut() {
        s.containers[0].resources = Some(
            serde_json::from_value(json!({"requests": {"cpu": "500m", "memory": "512Mi"}}))
                .unwrap(),
        );
    }
    let d = run(
        &p,
        std::slice::from_ref(&c),
        &nodes,
        std::slice::from_ref(&small),
    );
    let r: Vec<&PlannedNode> = d
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Replace { replacements, .. } => Some(replacements),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(r.len(), 1, "{:?}", d.steps);
    assert_eq!(r[0].instance_type, "c5.large");
    assert_eq!(r[0].pool, "general");
    assert!(r[0].name.starts_with("general-"), "{}", r[0].name);
    assert_eq!(r[0].pods, vec!["default/p1".to_string()]);

    // A pod no c5.large can hold: the node waits, and says why.
    let mut big = small.clone();
    if let Some(s) = big.spec.as_mut() {
        s.containers[0].resources =
            Some(serde_json::from_value(json!({"requests": {"cpu": "64"}})).unwrap());
    }
    let d = run(
        &p,
        std::slice::from_ref(&c),
        &nodes,
        std::slice::from_ref(&big),
    );
    assert!(replaced(&d).is_empty());
    assert!(d.held[0].1.contains("no replacement"), "{:?}", d.held);

    // A budget with no room holds it before any re-plan.
    let shut = policy(
        "  label team = a\n  require node.kubernetes.io/instance-type in [c5.large]\n  disruption {\n    budget 0\n  }",
    );
    let d = run(
        &shut,
        std::slice::from_ref(&c),
        &nodes,
        std::slice::from_ref(&small),
    );
    assert!(
        d.steps
            .iter()
            .all(|s| !matches!(s, Step::Replace { .. } | Step::Remove { .. })),
        "{:?}",
        d.steps
    );
    assert!(d.held[0].1.contains("budget"), "{:?}", d.held);
}

fn planned(pool: &str) -> PlannedNode {
    let mut p = planned_node(&claim("x", 0, json!({}))).unwrap();
    p.pool = pool.into();
    p.instance_type = "m5a.large".into();
    p
}

fn a_move(reason: crate::disrupt::consolidate::Reason, remove: &[&str], launch: usize) -> Move {
    Move {
        reason,
        remove: remove.iter().map(|s| s.to_string()).collect(),
        launch: (0..launch).map(|_| planned("general")).collect(),
        pods: Vec::new(),
        saving_per_hour: 0.01,
    }
}

#[test]
fn consolidation_moves_launch_first_whole_within_budgets() {
    use crate::disrupt::consolidate::Reason;
    let p = policy("  label team = a\n  disruption {\n    budget 2\n  }");
    let claims = [
        claim("general-a", 3, json!({})),
        claim("general-b", 3, json!({})),
        claim("general-c", 3, json!({})),
    ];
    let nodes = [
        node("ip-a", "general-a", json!({})),
        node("ip-b", "general-b", json!({})),
        node("ip-c", "general-c", json!({})),
    ];
    // 2 -> 1, then a third node whose move would exceed the budget of 2.
    let moves = [
        a_move(Reason::Underutilized, &["ip-a", "ip-b"], 1),
        a_move(Reason::Underutilized, &["ip-c"], 0),
    ];
    let d = run_moves(&p, &claims, &nodes, &[], &moves);
    assert_eq!(d.steps.len(), 1, "{:?}", d.steps);
    let Step::Replace {
        old,
        reason,
        replacements,
    } = &d.steps[0]
    else {
        panic!("{:?}", d.steps)
    };
    assert_eq!(old, &["general-a", "general-b"]);
    assert_eq!(*reason, DisruptionReason::Underutilized);
    assert_eq!(replacements.len(), 1);
    assert!(replacements[0].name.starts_with("general-r"));
    assert!(d.held.iter().any(|(c, _)| c == "general-c"));

    // A move that launches nothing removes its nodes directly.
    let moves = [a_move(Reason::Empty, &["ip-c"], 0)];
    let d = run_moves(&p, &claims, &nodes, &[], &moves);
    assert_eq!(
        d.steps,
        [Step::Remove {
            claim: "general-c".into(),
            reason: DisruptionReason::Empty
        }]
    );
    // A node that is not ours: the move is skipped.
    let d = run_moves(
        &p,
        &claims,
        &nodes,
        &[],
        &[a_move(Reason::Empty, &["ip-zzz"], 0)],
    );
    assert!(d.steps.is_empty());
}

#[test]
fn an_n_for_m_replacement_finishes_only_when_every_new_node_is_initialized() {
    let p = policy("  label team = a");
    let marks = json!({ REPLACING: "general-n1,general-n2", REPLACING_REASON: "underutilized" });
    let mut waiting = unlaunched("general-n2");
    waiting.metadata.name = Some("general-n2".into());
    let claims = [
        claim("general-a", 3, marks.clone()),
        claim("general-n1", 0, json!({})),
        waiting,
    ];
    let d = run(&p, &claims, &[], &[]);
    assert!(d.steps.is_empty(), "{:?}", d.steps);
    assert!(d.protected.contains("general-n1") && d.protected.contains("general-n2"));
    let claims = [
        claim("general-a", 3, marks),
        claim("general-n1", 0, json!({})),
        claim("general-n2", 0, json!({})),
    ];
    let d = run(&p, &claims, &[], &[]);
    assert_eq!(
        d.steps,
        [Step::Remove {
            claim: "general-a".into(),
            reason: DisruptionReason::Underutilized
        }]
    );
}
