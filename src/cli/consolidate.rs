//! `nodewright plan --nodes cluster.yaml --consolidate`: what consolidation would do to a
//! cluster, offline, through the same decision the controller makes (`disrupt::consolidate`).

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Deserialize as _;
use serde::de::DeserializeOwned;

use crate::catalog::Catalog;
use crate::disrupt::consolidate::{
    Consolidation, ConsolidationInput, ConsolidationOptions, decide,
};
use crate::disrupt::facts::{ClusterObjects, gather, static_budgets};
use crate::ir::PolicySet;

/// Reads the cluster in `paths` (`kubectl get nodes,pods,daemonsets,pdb -A -o yaml`) and
/// decides consolidation with the policy's budgets (schedule-less ones: an offline run has
/// no clock to open a scheduled window).
pub(super) fn consolidate(
    policy: &PolicySet,
    catalog: &Catalog,
    paths: &[PathBuf],
) -> miette::Result<Consolidation> {
    let objs = read_objects(paths)?;
    let cluster = gather(catalog, objs)?;
    let budgets = static_budgets(policy, &cluster.nodes);
    let input = ConsolidationInput {
        policy,
        catalog,
        unavailable: None,
        cluster: cluster.cluster,
        pods: cluster.pods,
        nodes: cluster.nodes,
        budgets,
    };
    Ok(decide(&input, &ConsolidationOptions::default()))
}

fn read_objects(paths: &[PathBuf]) -> miette::Result<ClusterObjects> {
    let mut objs = ClusterObjects::default();
    for p in paths {
        let text =
            std::fs::read_to_string(p).map_err(|e| miette::miette!("{}: {e}", p.display()))?;
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = serde_yaml_ng::Value::deserialize(doc).map_err(|e| {
                miette::miette!(
                    help =
                        "--consolidate reads Kubernetes YAML (`kubectl get nodes,pods -A -o yaml`)",
                    "{}: {e}",
                    p.display()
                )
            })?;
            add(&mut objs, v, p)?;
        }
    }
    Ok(objs)
}

fn add(
    objs: &mut ClusterObjects,
    v: serde_yaml_ng::Value,
    p: &std::path::Path,
) -> miette::Result<()> {
    let kind = v
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("")
        .to_string();
    fn typed<T: DeserializeOwned>(
        v: serde_yaml_ng::Value,
        p: &std::path::Path,
        kind: &str,
    ) -> miette::Result<T> {
        serde_yaml_ng::from_value(v).map_err(|e| miette::miette!("{}: a {kind}: {e}", p.display()))
    }
    match kind.as_str() {
        "List" => {
            if let Some(items) = v.get("items").and_then(|i| i.as_sequence()).cloned() {
                for item in items {
                    add(objs, item, p)?;
                }
            }
        }
        "Node" => objs.nodes.push(typed(v, p, &kind)?),
        "Pod" => objs.pods.push(typed(v, p, &kind)?),
        "DaemonSet" => objs.daemonsets.push(typed(v, p, &kind)?),
        "PodDisruptionBudget" => objs.pdbs.push(typed(v, p, &kind)?),
        _ => {}
    }
    Ok(())
}

/// The decision for people.
pub(super) fn table(c: &Consolidation) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Consolidation: ${:.4}/hour now, ${:.4}/hour after {} move(s) (saves ${:.4}/hour)",
        c.price_per_hour_before,
        c.price_per_hour_after,
        c.moves.len(),
        c.price_per_hour_before - c.price_per_hour_after
    );
    if c.moves.is_empty() {
        let _ = writeln!(s, "\nNo move makes the cluster cheaper.");
    } else {
        let _ = writeln!(s, "\nMoves (best first; each assumes the ones before it):");
    }
    for (i, m) in c.moves.iter().enumerate() {
        let _ = writeln!(
            s,
            "{:>3}. {}: remove {}; saves ${:.4}/hour",
            i + 1,
            m.reason.as_str(),
            m.remove.join(", "),
            m.saving_per_hour
        );
        for n in &m.launch {
            let _ = writeln!(
                s,
                "     launch {} ({} {} {}, ${:.4}/hour) for {} pod(s)",
                n.name,
                n.instance_type,
                n.zone,
                n.capacity_type.as_str(),
                n.price_per_hour,
                n.pods.len()
            );
        }
        if !m.pods.is_empty() {
            let _ = writeln!(s, "     pods that move: {}", m.pods.join(", "));
        }
    }
    if !c.blocked.is_empty() {
        let _ = writeln!(s, "\nBlocked:");
        for b in &c.blocked {
            let _ = writeln!(s, "  {}: {}", b.node, b.reason);
        }
    }
    s
}
