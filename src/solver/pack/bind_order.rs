//! The packer's class order, kept consistent with kube-scheduler's binding
//! order where it matters.
//!
//! kube-scheduler binds pending pods by priority (highest first), then
//! creation time (the workload's order), and judges a pod's required
//! topology spreads and the "first pod" exception of a self-selecting
//! required pod affinity against the pods bound *before* it. The packer
//! checks a class against the pods it placed before it. The two agree
//! when, for every such term of a class, the classes its selector counts
//! are placed before it if kube-scheduler binds them first, and after it if
//! it binds them later. Such pairs are ordered so; otherwise the packer's
//! own order (most constrained first) holds: a class whose predecessors are
//! not placed yet waits for them, and the classes after it go ahead.
//! (Pulling the predecessors forward instead, just before the class, made
//! the diverse benchmark's plans 2-5% dearer.)
//!
//! A required affinity to other pods is satisfied once a partner is bound
//! (a pod refused before that is retried when one binds), so only the
//! partners kube-scheduler binds first are placed first: then the class
//! lands where it binds at its turn, before the classes whose terms count
//! it. Terms that need no order: required anti-affinity (whichever pod
//! binds second is refused, so the end state decides), soft spreads and
//! preferences (scores only).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::super::topology::Topo;
use crate::workload::Workload;

/// The classes in kube-scheduler's binding order: priority, highest first,
/// then the workload's order.
fn binding_rank(w: &Workload) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..w.classes.len()).collect();
    idx.sort_by_key(|&c| (Reverse(w.classes[c].priority), c));
    let mut rank = vec![0; idx.len()];
    for (r, c) in idx.into_iter().enumerate() {
        rank[c] = r;
    }
    rank
}

/// `preferred` (every class once, the packer's order) reordered so that
/// each pair of classes linked by an order-dependent term follows the
/// binding order; otherwise as close to `preferred` as that allows.
pub(super) fn bind_ordered(w: &Workload, topo: &Topo, preferred: Vec<usize>) -> Vec<usize> {
    let n = w.classes.len();
    // Per class: selectors whose count decides at bind time (hard spreads,
    // the first-pod exception of a self-selecting required affinity), and
    // selectors of required affinity to other pods: a partner kube-scheduler
    // binds first is placed first, so the class is placed where it binds at
    // its turn and counts from then on for the terms of later classes.
    let mut any = false;
    let terms: Vec<(Vec<usize>, Vec<usize>)> = topo
        .classes
        .iter()
        .map(|tp| {
            let req_affs = tp.affs.len() - tp.preferred;
            let mut both: Vec<usize> = tp
                .spreads
                .iter()
                .filter(|s| s.hard)
                .map(|s| s.sel)
                .chain(
                    tp.affs
                        .iter()
                        .take(req_affs)
                        .filter(|a| !a.anti && a.self_match)
                        .map(|a| a.sel),
                )
                .collect();
            let mut earlier: Vec<usize> = tp
                .affs
                .iter()
                .take(req_affs)
                .filter(|a| !a.anti && !a.self_match)
                .map(|a| a.sel)
                .collect();
            both.sort_unstable();
            both.dedup();
            earlier.sort_unstable();
            earlier.dedup();
            any |= !both.is_empty() || !earlier.is_empty();
            (both, earlier)
        })
        .collect();
    if !any {
        return preferred;
    }
    // Per selector: the classes it counts.
    let mut counted: Vec<Vec<usize>> = vec![Vec::new(); topo.sels.len()];
    for (c, tp) in topo.classes.iter().enumerate() {
        for &s in &tp.matched_by {
            counted[s].push(c);
        }
    }
    let rank = binding_rank(w);
    let mut pos = vec![0usize; n];
    for (i, &c) in preferred.iter().enumerate() {
        pos[c] = i;
    }
    // An edge x -> y: x is placed before y. Edges go from a lower binding
    // rank to a higher one, so there is no cycle. A pair linked twice has
    // two edges, which `indeg` counts alike.
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indeg = vec![0usize; n];
    let mut edge = |x: usize, y: usize| {
        succ[x].push(y);
        indeg[y] += 1;
    };
    for (y, (both, earlier)) in terms.iter().enumerate() {
        for &s in both {
            for &x in &counted[s] {
                if x == y {
                    continue;
                }
                if rank[x] < rank[y] {
                    edge(x, y);
                } else {
                    edge(y, x);
                }
            }
        }
        for &s in earlier {
            for &x in &counted[s] {
                if x != y && rank[x] < rank[y] {
                    edge(x, y);
                }
            }
        }
    }
    // The packer's order among the classes whose predecessors are all
    // placed: a class waits for them, the others go ahead.
    let mut ready: BinaryHeap<Reverse<(usize, usize)>> = (0..n)
        .filter(|&c| indeg[c] == 0)
        .map(|c| Reverse((pos[c], c)))
        .collect();
    let mut out = Vec::with_capacity(n);
    while let Some(Reverse((_, c))) = ready.pop() {
        out.push(c);
        for &y in &succ[c] {
            indeg[y] -= 1;
            if indeg[y] == 0 {
                ready.push(Reverse((pos[y], y)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{LabelSelector, PodClass, TopologySpread};
    use std::collections::BTreeMap;

    fn class(id: &str, app: &str, spread_on: Option<&str>) -> PodClass {
        let mut c = PodClass::plain(id, "ns", vec![format!("{id}-0")], Default::default());
        c.labels = BTreeMap::from([("app".to_string(), app.to_string())]);
        if let Some(sel) = spread_on {
            c.topology_spread.push(TopologySpread {
                max_skew: 1,
                topology_key: crate::ir::labels::ZONE.into(),
                hard: true,
                min_domains: None,
                selector: LabelSelector {
                    match_labels: BTreeMap::from([("app".to_string(), sel.to_string())]),
                    match_expressions: vec![],
                },
                honor_node_affinity: true,
                honor_node_taints: false,
            });
        }
        c
    }

    /// A spreading class is placed after the classes its selector counts
    /// that bind before it, and before those that bind after it; a class
    /// that waits lets unlinked ones go ahead.
    #[test]
    fn linked_classes_follow_the_binding_order() {
        let w = Workload {
            classes: vec![
                class("plain-x", "x", None),
                class("spread", "s", Some("x")),
                class("other", "o", None),
                class("late-x", "x", None),
            ],
            daemonsets: vec![],
            nodes: vec![],
        };
        let topo = Topo::new(&w);
        // The packer's own order: spreading class first, plain ones after.
        let got = bind_ordered(&w, &topo, vec![1, 3, 2, 0]);
        assert_eq!(got, vec![2, 0, 1, 3]);
        // A higher priority binds first whatever the creation order.
        let mut w2 = w.clone();
        w2.classes[1].priority = 10;
        let topo2 = Topo::new(&w2);
        assert_eq!(
            bind_ordered(&w2, &topo2, vec![1, 3, 2, 0]),
            vec![1, 3, 2, 0]
        );
    }
}
