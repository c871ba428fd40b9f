//! Rendering a plan for people (`--output table`) and programs (`--output json`).

use std::fmt::Write;

use super::Plan;

fn pct(used: i64, alloc: i64) -> String {
    if alloc <= 0 {
        return "-".into();
    }
    format!("{:.0}%", used as f64 * 100.0 / alloc as f64)
}

/// The plan as aligned text: nodes to launch, pods on existing nodes, the
/// total, every unschedulable pod with its reasons, and notes.
pub fn table(plan: &Plan) -> String {
    let mut rows: Vec<[String; 9]> = vec![[
        "NODE".into(),
        "POOL".into(),
        "TYPE".into(),
        "ZONE".into(),
        "CAPACITY".into(),
        "$/HOUR".into(),
        "PODS".into(),
        "CPU".into(),
        "MEMORY".into(),
    ]];
    for n in &plan.nodes {
        rows.push([
            n.name.clone(),
            n.pool.clone(),
            n.instance_type.clone(),
            n.zone.clone(),
            n.capacity_type.as_str().into(),
            format!("{:.4}", n.price_per_hour),
            n.pods.len().to_string(),
            pct(n.requested.cpu_milli, n.allocatable.cpu_milli),
            pct(n.requested.memory, n.allocatable.memory),
        ]);
    }
    let mut widths = [0usize; 9];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let mut out = String::new();
    if plan.nodes.is_empty() {
        out.push_str("No nodes to launch.\n");
    } else {
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                .collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
        }
    }
    if !plan.existing.is_empty() {
        let _ = writeln!(out, "\nPods on existing nodes:");
        for e in &plan.existing {
            let _ = writeln!(
                out,
                "  {} ({} pods): {}",
                e.node,
                e.pods.len(),
                e.pods.join(", ")
            );
        }
    }
    let pods: usize = plan.nodes.iter().map(|n| n.pods.len()).sum();
    let _ = writeln!(
        out,
        "\nTotal: {} node(s), {} pod(s) on new nodes, ${:.4}/hour",
        plan.nodes.len(),
        pods,
        plan.total_price_per_hour
    );
    if !plan.unschedulable.is_empty() {
        let _ = writeln!(out, "\nUnschedulable ({}):", plan.unschedulable.len());
        for u in &plan.unschedulable {
            let _ = writeln!(out, "  {}", u.pod);
            for r in &u.reasons {
                let _ = writeln!(out, "    - {r}");
            }
        }
    }
    if !plan.notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for n in &plan.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }
    out
}

/// The plan as pretty JSON (the documented, stable schema: `Plan`'s fields).
pub fn json(plan: &Plan) -> String {
    // Serialising plain data with string keys cannot fail.
    serde_json::to_string_pretty(plan).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CapacityType;
    use crate::ir::Resources;
    use crate::solver::{ExistingPlacement, InstanceOption, PlannedNode, Unschedulable};

    fn plan() -> Plan {
        let mut req = Resources::zero();
        req.cpu_milli = 1500;
        req.memory = 2 << 30;
        let mut alloc = Resources::zero();
        alloc.cpu_milli = 1930;
        alloc.memory = 7 << 30;
        Plan {
            nodes: vec![PlannedNode {
                name: "general-1".into(),
                pool: "general".into(),
                node_class: "default".into(),
                zone: "us-east-1a".into(),
                capacity_type: CapacityType::Spot,
                instance_type: "m5.large".into(),
                price_per_hour: 0.0384,
                instance_type_options: vec![
                    InstanceOption {
                        instance_type: "m5.large".into(),
                        price_per_hour: 0.0384,
                    },
                    InstanceOption {
                        instance_type: "m6i.large".into(),
                        price_per_hour: 0.04,
                    },
                ],
                pods: vec!["default/web-0".into(), "default/web-1".into()],
                requested: req,
                allocatable: alloc,
                labels: Default::default(),
                taints: vec![],
                startup_taints: vec![],
            }],
            existing: vec![ExistingPlacement {
                node: "ip-10-0-0-1".into(),
                pods: vec!["default/api-0".into()],
            }],
            unschedulable: vec![Unschedulable {
                pod: "ml/train-0".into(),
                reasons: vec![
                    "pool gpu: taint nvidia.com/gpu=true:NoSchedule not tolerated".into(),
                ],
            }],
            total_price_per_hour: 0.0384,
            notes: vec!["spot prices are estimates".into()],
        }
    }

    #[test]
    fn table_lists_everything() {
        insta::assert_snapshot!(table(&plan()));
    }

    #[test]
    fn json_round_trips() {
        let p = plan();
        let back: Plan = serde_json::from_str(&json(&p)).expect("valid json");
        assert_eq!(back, p);
        insta::assert_snapshot!(json(&p));
    }
}
