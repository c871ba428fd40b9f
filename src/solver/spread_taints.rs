//! Spreads under `nodeTaintsPolicy: Ignore` (the default) and the pools a pod cannot use.
//!
//! kube-scheduler measures a spread's skew over the domains of every node that passes the
//! pod's node affinity, tainted or not, unless the spread says `nodeTaintsPolicy: Honor`.
//! The solver counts only the domains of pools whose taints the pod tolerates: counting a
//! tainted pool's domain as empty would hold the spread to `maxSkew` pods per domain even
//! when that pool never gets a node. When a tainted pool could open a domain the pod's own
//! pools lack, the plan is right only while that pool has no node there, so the plan says
//! so: a note names the pod, the spread's key, the pool and the domains, and the fix.

use std::collections::{BTreeSet, HashMap};

use crate::catalog::node_labels::node_label;
use crate::ir::{Pool, labels};
use crate::workload::{TopologySpread, untolerated};

use super::SolveInput;
use super::validate::{eligible_domains, node_labels, node_ok, pool_admits};

/// One note per (class, hard spread) whose key a pool with untolerated taints could give
/// values outside the class's own domains. Cheap when no pool is tainted (the usual case).
pub(super) fn notes(input: &SolveInput<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let mut memo: HashMap<String, Vec<(String, Vec<String>)>> = HashMap::new();
    if input.policy.pools.iter().all(|p| p.taints.is_empty()) {
        return out;
    }
    for (ci, class) in input.workload.classes.iter().enumerate() {
        for s in &class.topology_spread {
            // Hostname domains are one node each, counted from the nodes themselves.
            if !s.hard || s.honor_node_taints || s.topology_key == labels::HOSTNAME {
                continue;
            }
            let blocked: Vec<_> = input
                .policy
                .pools
                .iter()
                .filter(|p| untolerated(&class.tolerations, &p.taints).is_some())
                .collect();
            if blocked.is_empty() {
                continue;
            }
            // Classes differ mostly in requests and labels; the answer depends only on
            // the node-side constraints (and on pod labels when placement rules exist).
            let memo_key = format!(
                "{}|{}|{:?}|{:?}|{:?}|{:?}|{}",
                s.topology_key,
                s.honor_node_affinity,
                class.tolerations,
                class.node_selector,
                class.required_affinity,
                class.volume_zones,
                if input.policy.placement.is_empty() {
                    String::new()
                } else {
                    format!("{}|{:?}", class.namespace, class.labels)
                },
            );
            let found = memo
                .entry(memo_key)
                .or_insert_with(|| extra_domains(input, ci, s, &blocked));
            for (pool, extra) in found.iter() {
                out.push(format!(
                    "{}: its topology spread on {} (nodeTaintsPolicy: Ignore, the default) \
                     would also count pool {}'s nodes, whose taints it does not tolerate, \
                     in {}; the plan counts only the domains its own pools offer, so once \
                     {} has a node there kube-scheduler may refuse these pods (set \
                     nodeTaintsPolicy: Honor to plan exactly what kube-scheduler checks)",
                    class.id,
                    s.topology_key,
                    pool,
                    extra.join(", "),
                    pool,
                ));
            }
        }
    }
    out
}

/// For each pool in `blocked`, the values of `s`'s key its offerings would give that
/// class `ci`'s own pools do not (pools with none are left out).
fn extra_domains(
    input: &SolveInput<'_>,
    ci: usize,
    s: &TopologySpread,
    blocked: &[&Pool],
) -> Vec<(String, Vec<String>)> {
    let cat = input.catalog;
    let class = &input.workload.classes[ci];
    let own: BTreeSet<String> = eligible_domains(input, &[ci], &s.topology_key)
        .into_iter()
        .collect();
    let mut found = Vec::new();
    for pool in blocked {
        let mut extra: BTreeSet<&str> = BTreeSet::new();
        for o in &cat.offerings {
            if !o.available || o.type_index as usize >= cat.types.len() {
                continue;
            }
            let Some(v) = node_label(cat, pool, o, &s.topology_key) else {
                continue;
            };
            if own.contains(v) || extra.contains(v) {
                continue;
            }
            // The pool's offerings as `eligible_domains` reads them.
            if !pool_admits(cat, pool, o) {
                continue;
            }
            // Taints aside, could this pod use the node? (nodeAffinityPolicy: Honor
            // leaves out the nodes it could not.)
            let lbl = node_labels(cat, pool, o);
            if s.honor_node_affinity && node_ok(input, class, &lbl, &[], o.price).is_err() {
                continue;
            }
            extra.insert(v);
        }
        if !extra.is_empty() {
            found.push((
                pool.name.clone(),
                extra.into_iter().map(str::to_string).collect(),
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::workload::{LoadOptions, load_str};

    /// A general pool in two zones and a tainted GPU-style pool in a third.
    const POLICY: &str = r#"
pool general {
  require karpenter.sh/capacity-type in [on-demand]
  require topology.kubernetes.io/zone in [us-east-1a, us-east-1b]
  require karpenter.k8s.aws/instance-family in [m5]
}
pool tainted {
  require karpenter.sh/capacity-type in [on-demand]
  require topology.kubernetes.io/zone in [us-east-1c]
  require karpenter.k8s.aws/instance-family in [m5]
  taint dedicated = batch : NoSchedule
}
"#;

    fn notes_for(spread_extra: &str, tolerations: &str) -> Vec<String> {
        let file = crate::policy::parse("t.policy", POLICY).expect("policy parses");
        let p = crate::policy::compile(&[file]).expect("policy compiles").0;
        let yaml = format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: shop}}
spec:
  replicas: 4
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      {tolerations}
      topologySpreadConstraints:
        - {{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule,
           labelSelector: {{matchLabels: {{app: web}}}}{spread_extra}}}
      containers: [{{name: c, image: x, resources: {{requests: {{cpu: 100m, memory: 64Mi}}}}}}]
"#
        );
        let w = load_str("w.yaml", &yaml, &LoadOptions::default()).expect("workload loads");
        let cat = Catalog::embedded().expect("embedded catalog");
        let input = SolveInput {
            policy: &p,
            catalog: &cat,
            workload: &w,
            scorer: None,
            unavailable: None,
        };
        // Through the solver's entry point, so the note reaches the plan.
        super::super::solve(&input)
            .notes
            .into_iter()
            .filter(|n| n.contains("nodeTaintsPolicy"))
            .collect()
    }

    /// The default policy counts the tainted pool's zone; the note names the pod, the
    /// key, the pool, the zone and the fix.
    #[test]
    fn a_tainted_pool_zone_outside_the_pods_own_is_noted() {
        let n = notes_for("", "");
        assert_eq!(n.len(), 1, "{n:?}");
        for part in [
            "shop/",
            "topology.kubernetes.io/zone",
            "pool tainted",
            "us-east-1c",
            "nodeTaintsPolicy: Honor",
        ] {
            assert!(n[0].contains(part), "{part} missing from {}", n[0]);
        }
        assert!(!n[0].contains("us-east-1a"), "{}", n[0]);
    }

    /// Honor, a toleration of the taint, or a node affinity that rules the zone out: the
    /// domains agree with kube-scheduler's, and nothing is said.
    #[test]
    fn nothing_is_noted_when_the_domains_agree() {
        assert_eq!(
            notes_for(", nodeTaintsPolicy: Honor", ""),
            Vec::<String>::new()
        );
        let tol =
            "tolerations: [{key: dedicated, operator: Equal, value: batch, effect: NoSchedule}]";
        assert_eq!(notes_for("", tol), Vec::<String>::new());
        let aff = "nodeSelector: {topology.kubernetes.io/zone: us-east-1a}";
        assert_eq!(notes_for("", aff), Vec::<String>::new());
    }
}
