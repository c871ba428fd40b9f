//! Rendering a plan for people (`--output table`) and programs (`--output json`).

use std::fmt::Write;

use super::Plan;

/// Widest table cell, in characters; longer ones are cut to this with a
/// trailing `…`. A pool (and so a node) name may be any length, even a
/// megabyte, and a column that wide helps nobody: the table stays readable
/// and `--output json` keeps every name whole.
pub(crate) const MAX_CELL: usize = 64;

/// Cuts `cell` to `MAX_CELL` characters, the last one `…`, if it is longer.
fn clip(cell: &mut String) {
    // Only the first `MAX_CELL + 1` characters are looked at, however long the cell.
    let mut ends = cell.char_indices().map(|(b, _)| b);
    if let Some(keep) = ends.nth(MAX_CELL - 1)
        && ends.next().is_some()
    {
        cell.truncate(keep);
        cell.push('…');
    }
}

fn pct(used: i64, alloc: i64) -> String {
    if alloc <= 0 {
        return "-".into();
    }
    format!("{:.0}%", used as f64 * 100.0 / alloc as f64)
}

/// The plan as aligned text: nodes to launch, pods on existing nodes, the
/// total, every unschedulable pod with its reasons, and notes.
pub fn table(plan: &Plan) -> String {
    table_with(plan, TableOptions::default())
}

/// What the table shows beyond its default columns. The default is the
/// table `plan --output table` prints; each option only adds lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableOptions {
    /// Under each node's row, the name of every pod planned onto it, one a
    /// line (`plan --pods`), so a node can be traced to its pods without
    /// reading the JSON plan.
    pub pods: bool,
}

/// [`table`] with `opts`: the same table, plus the lines `opts` asks for.
pub fn table_with(plan: &Plan, opts: TableOptions) -> String {
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
    for r in &mut rows {
        for c in r.iter_mut() {
            clip(c);
        }
    }
    let mut widths = [0usize; 9];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    if plan.nodes.is_empty() {
        out.push_str("No nodes to launch.\n");
    } else {
        for (row, r) in rows.iter().enumerate() {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(c);
                // Padded by hand: `format!`'s width is capped at 65,535 and
                // panics past it; here no cell is wider than `MAX_CELL`.
                let pad = widths[i].saturating_sub(c.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            let _ = writeln!(out, "{}", line.trim_end());
            // Row 0 is the header; row `i` is node `i - 1`.
            if opts.pods
                && let Some(node) = row.checked_sub(1).and_then(|i| plan.nodes.get(i))
            {
                for pod in &node.pods {
                    let mut cell = pod.clone();
                    clip(&mut cell);
                    let _ = writeln!(out, "    {cell}");
                }
            }
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

    /// A pool name of a megabyte (64k characters made `format!` panic)
    /// is clipped in the table, the columns stay aligned, and JSON keeps it whole.
    #[test]
    fn huge_names_are_clipped_not_fatal() {
        for len in [65, 70_000, 1 << 20] {
            let mut p = plan();
            let name = "p".repeat(len);
            p.nodes[0].pool = name.clone();
            p.nodes[0].name = format!("{name}-1");
            let t = table(&p);
            let lines: Vec<&str> = t.lines().take(2).collect();
            let header = lines[0];
            let row = lines[1];
            let clipped = format!("{}…", "p".repeat(MAX_CELL - 1));
            assert!(
                row.starts_with(&format!("{clipped}  {clipped}  m5.large")),
                "{row}"
            );
            // The columns after the clipped ones start where their headers do.
            let at = |l: &str, needle: &str| l.find(needle).map(|b| l[..b].chars().count());
            assert_eq!(at(header, "TYPE"), Some(2 * (MAX_CELL + 2)));
            assert_eq!(at(row, "m5.large"), at(header, "TYPE"));
            assert!(t.len() < 4096, "{} bytes", t.len());
            let back: Plan = serde_json::from_str(&json(&p)).expect("valid json");
            assert_eq!(back.nodes[0].pool.len(), len);
        }
    }

    /// Names up to the limit are shown whole; one character more is cut.
    #[test]
    fn clip_keeps_names_up_to_the_limit() {
        let mut exact = "é".repeat(MAX_CELL);
        clip(&mut exact);
        assert_eq!(exact, "é".repeat(MAX_CELL));
        let mut over = "é".repeat(MAX_CELL + 1);
        clip(&mut over);
        assert_eq!(over.chars().count(), MAX_CELL);
        assert!(over.ends_with("é…"), "{over}");
    }

    /// `--pods` adds each node's pods under its row, clipped like any cell,
    /// and changes no other line.
    #[test]
    fn pods_are_listed_under_their_node() {
        let mut p = plan();
        let long = format!("default/{}", "w".repeat(100));
        p.nodes[0].pods.push(long);
        let plain = table(&p);
        let with = table_with(&p, TableOptions { pods: true });
        let lines: Vec<&str> = with.lines().collect();
        assert!(lines[1].starts_with("general-1  general"), "{with}");
        assert_eq!(lines[2], "    default/web-0");
        assert_eq!(lines[3], "    default/web-1");
        let clipped = format!(
            "    default/{}…",
            "w".repeat(MAX_CELL - "default/".len() - 1)
        );
        assert_eq!(lines[4], clipped);
        // Without the pod lines, the table is the default one.
        let rest: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| !l.starts_with("    default/"))
            .collect();
        assert_eq!(rest, plain.lines().collect::<Vec<_>>());
        assert_eq!(table_with(&p, TableOptions::default()), plain);
    }

    #[test]
    fn json_round_trips() {
        let p = plan();
        let back: Plan = serde_json::from_str(&json(&p)).expect("valid json");
        assert_eq!(back, p);
        insta::assert_snapshot!(json(&p));
    }
}
