//! Which nodes are no longer needed.
//!
//! nodewright removes a node it launched once the node has carried no
//! workload pods (DaemonSet and mirror pods do not count) for its pool's
//! `consolidate ... after` time, as Karpenter's empty-node consolidation
//! does. It never removes:
//! - a node the current plan puts pending pods on;
//! - a node, or a node with a pod, annotated `karpenter.sh/do-not-disrupt: "true"`
//!   or `nodewright.io/do-not-disrupt: "true"` (`terminate::plan::do_not_disrupt`);
//! - a node of a pool the policy no longer has (left for a person to decide);
//! - more nodes of a pool at once than its disruption budgets allow
//!   (`crate::disrupt::budget`: schedules open a budget only in its window).
//!
//! Pure: the controller gathers [`NodeView`]s and acts on the answer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use crate::disrupt::budget;
use crate::ir::{DisruptionReason, Duration as IrDuration, PolicySet};

/// What the disruption pass needs to know about one node nodewright launched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NodeView {
    pub name: String,
    pub pool: String,
    /// Non-terminal pods bound to it that are neither DaemonSet nor mirror pods.
    pub workload_pods: usize,
    /// The node or one of its pods carries a do-not-disrupt annotation.
    pub do_not_disrupt: bool,
    /// Already being removed (deletion timestamp set).
    pub deleting: bool,
    /// Ready, and free of start-up taints.
    pub initialized: bool,
}

/// Tracks how long each node has been empty, across passes.
#[derive(Debug, Clone, Default)]
pub(super) struct EmptySince {
    since: HashMap<String, Instant>,
}

impl EmptySince {
    /// The nodes to remove now. `targeted` names the nodes the current plan
    /// places pending pods on; `wall` is the time budget windows are read at.
    pub(super) fn empty_to_remove(
        &mut self,
        nodes: &[NodeView],
        policy: &PolicySet,
        targeted: &HashSet<String>,
        now: Instant,
        wall: jiff::Timestamp,
    ) -> Vec<String> {
        // Forget nodes that are gone or busy.
        self.since.retain(|n, _| {
            nodes
                .iter()
                .any(|v| &v.name == n && v.workload_pods == 0 && !targeted.contains(n))
        });
        let mut by_pool: BTreeMap<&str, Vec<&NodeView>> = BTreeMap::new();
        for v in nodes {
            by_pool.entry(v.pool.as_str()).or_default().push(v);
        }
        let mut out = Vec::new();
        for (pool_name, views) in by_pool {
            let Some(pool) = policy.pool(pool_name) else {
                continue;
            };
            let deleting = views.iter().filter(|v| v.deleting).count();
            let mut budget = budget::allowed(pool, views.len(), DisruptionReason::Empty, wall)
                .map(|a| a.saturating_sub(deleting));
            let after = match pool.disruption.consolidate_after {
                IrDuration::Finite(d) => Some(d),
                IrDuration::Never => None,
            };
            for v in views {
                if v.deleting || !v.initialized || v.workload_pods > 0 || targeted.contains(&v.name)
                {
                    continue;
                }
                let since = *self.since.entry(v.name.clone()).or_insert(now);
                let Some(after) = after else { continue };
                if v.do_not_disrupt || now.saturating_duration_since(since) < after {
                    continue;
                }
                if let Some(b) = budget.as_mut() {
                    if *b == 0 {
                        continue;
                    }
                    *b -= 1;
                }
                out.push(v.name.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// One pool `general` with the given `disruption { ... }` body, compiled from policy text.
    fn policy(disruption: &str) -> PolicySet {
        let text = format!("pool general {{\n  disruption {{\n{disruption}\n  }}\n}}\n");
        let file = crate::policy::parse("test.policy", &text)
            .unwrap_or_else(|d| panic!("{}", d.render(100)));
        crate::policy::compile(&[file])
            .unwrap_or_else(|d| panic!("{}", d.render(100)))
            .0
    }

    fn wall() -> jiff::Timestamp {
        jiff::Timestamp::UNIX_EPOCH
    }

    fn view(name: &str, pods: usize) -> NodeView {
        NodeView {
            name: name.into(),
            pool: "general".into(),
            workload_pods: pods,
            do_not_disrupt: false,
            deleting: false,
            initialized: true,
        }
    }

    #[test]
    fn empty_nodes_go_after_consolidate_after_and_busy_ones_stay() {
        let t0 = Instant::now();
        let p = policy("consolidate when-empty after 30s\nbudget 100%");
        let mut e = EmptySince::default();
        let nodes = [view("a", 0), view("b", 2)];
        let none = HashSet::new();
        assert!(
            e.empty_to_remove(&nodes, &p, &none, t0, wall()).is_empty(),
            "clock starts"
        );
        assert!(
            e.empty_to_remove(&nodes, &p, &none, t0 + Duration::from_secs(29), wall())
                .is_empty()
        );
        assert_eq!(
            e.empty_to_remove(&nodes, &p, &none, t0 + Duration::from_secs(30), wall()),
            ["a"]
        );
        // A pod landing resets the clock.
        let busy = [view("a", 1), view("b", 2)];
        assert!(
            e.empty_to_remove(&busy, &p, &none, t0 + Duration::from_secs(31), wall())
                .is_empty()
        );
        assert!(
            e.empty_to_remove(&nodes, &p, &none, t0 + Duration::from_secs(40), wall())
                .is_empty()
        );
        // So does being the target of the current plan.
        let targeted: HashSet<String> = ["a".to_string()].into();
        assert!(
            e.empty_to_remove(&nodes, &p, &targeted, t0 + Duration::from_secs(80), wall())
                .is_empty()
        );
        assert!(
            e.empty_to_remove(&nodes, &p, &none, t0 + Duration::from_secs(81), wall())
                .is_empty()
        );
        assert_eq!(
            e.empty_to_remove(&nodes, &p, &none, t0 + Duration::from_secs(111), wall()),
            ["a"]
        );
    }

    #[test]
    fn never_do_not_disrupt_unknown_pools_and_budgets() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(1);
        let none = HashSet::new();
        let p = policy("consolidate when-empty after Never");
        assert_eq!(p.pools[0].disruption.consolidate_after, IrDuration::Never);
        let mut e = EmptySince::default();
        e.empty_to_remove(&[view("a", 0)], &p, &none, t0, wall());
        assert!(
            e.empty_to_remove(&[view("a", 0)], &p, &none, later, wall())
                .is_empty()
        );

        let p = policy("consolidate when-empty after 0s");
        let mut dnd = view("a", 0);
        dnd.do_not_disrupt = true;
        let mut other = view("x", 0);
        other.pool = "removed-pool".into();
        let mut starting = view("s", 0);
        starting.initialized = false;
        assert!(
            e.empty_to_remove(&[dnd, other, starting], &p, &none, later, wall())
                .is_empty()
        );

        // 10% of 12 nodes rounds up to 2; one already deleting leaves 1.
        let p = policy("consolidate when-empty after 0s\nbudget 10%\nbudget 0 reasons [drifted]");
        let mut nodes: Vec<NodeView> = (0..12).map(|i| view(&format!("n{i:02}"), 0)).collect();
        let mut e = EmptySince::default();
        assert_eq!(
            e.empty_to_remove(&nodes, &p, &none, t0, wall()),
            ["n00", "n01"]
        );
        nodes[5].deleting = true;
        assert_eq!(e.empty_to_remove(&nodes, &p, &none, t0, wall()), ["n00"]);
        // A zero budget for empty nodes stops them all.
        let p = policy("consolidate when-empty after 0s\nbudget 0 reasons [empty]");
        assert!(e.empty_to_remove(&nodes, &p, &none, t0, wall()).is_empty());
        assert_eq!(
            budget::allowed(&p.pools[0], 12, DisruptionReason::Drifted, wall()),
            None
        );
    }
}
