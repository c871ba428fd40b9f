//! kube-scheduler's binding order, replayed. kube-scheduler binds one pod
//! at a time and judges a pod's required topology spreads and required pod
//! affinity against the pods bound *before* it: a spread's skew is counted
//! then, and the "first pod" exception of a self-selecting affinity holds
//! only while no pod matching its terms is bound anywhere. Its queue takes
//! pending pods by priority (highest first), then creation time, which is
//! the workload's order (each class's pods in order). A pod it refuses
//! waits and is retried once other pods have bound.
//!
//! The replay does the same: bound pods of existing nodes and the
//! DaemonSet pods of every node count from the start; the planned pods bind
//! in that order, each checked at its turn; a pod that fails waits until
//! every pod had its turn, then the waiting ones are retried (in the same
//! order) until none binds any more. What still waits is a violation.
//! Required anti-affinity is not order-dependent (whichever of two pods
//! binds second is refused), so the caller checks it on the end state.

use std::collections::{BTreeMap, HashMap};

use crate::ir::labels;
use crate::workload::{LabelSelector, PodAffinityTerm, PodClass, Workload};

use super::super::SolveInput;
use super::{Place, domain, eligible_domains};

/// A pod bound before the pending ones: on an existing node, or a
/// DaemonSet's pod on a node.
pub(super) struct Prebound<'a> {
    pub(super) ns: &'a str,
    pub(super) labels: &'a BTreeMap<String, String>,
    pub(super) place: &'a Place,
}

/// The classes in the order kube-scheduler binds their pods: priority,
/// highest first, then the workload's (creation) order.
pub(super) fn binding_order(w: &Workload) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..w.classes.len()).collect();
    idx.sort_by_key(|&c| (std::cmp::Reverse(w.classes[c].priority), c));
    idx
}

/// Whether `term` of a pod in `own_ns` counts pods of namespace `ns`.
fn term_ns_ok(term: &PodAffinityTerm, own_ns: &str, ns: &str) -> bool {
    term.all_namespaces
        || if term.namespaces.is_empty() {
            ns == own_ns
        } else {
            term.namespaces.iter().any(|x| x == ns)
        }
}

/// Matching pods per domain of one hard spread's (namespace, selector, key).
struct SpreadCount<'w> {
    ns: &'w str,
    sel: &'w LabelSelector,
    key: &'w str,
    counts: HashMap<String, i64>,
}

/// For one class with required pod affinity: the pods that match every
/// one of its terms (kube-scheduler's `affinityCounts`), per term and domain.
struct AffCount<'w> {
    ns: &'w str,
    terms: Vec<&'w PodAffinityTerm>,
    counts: Vec<HashMap<String, i64>>,
    /// Entries over all terms: 0 = no such pod bound on a node with a key.
    total: i64,
}

impl AffCount<'_> {
    fn matches(&self, ns: &str, lbl: &BTreeMap<String, String>) -> bool {
        self.terms
            .iter()
            .all(|t| term_ns_ok(t, self.ns, ns) && t.selector.matches(lbl))
    }
}

struct Replay<'w, 'i> {
    input: &'i SolveInput<'w>,
    spreads: Vec<SpreadCount<'w>>,
    /// Per class, per spread: index into `spreads` (hard spreads only).
    spread_of: Vec<Vec<Option<usize>>>,
    affs: Vec<AffCount<'w>>,
    /// Per class: index into `affs`.
    aff_of: Vec<Option<usize>>,
    /// Per class: the spreads and affinity counts its pods are counted in
    /// (computed on first use).
    matched: Vec<Option<(Vec<usize>, Vec<usize>)>>,
    /// Per (class, spread): the domains its skew is measured over.
    eligible: HashMap<(usize, usize), Vec<String>>,
}

impl<'w> Replay<'w, '_> {
    fn new<'i>(input: &'i SolveInput<'w>) -> Replay<'w, 'i> {
        let w: &'w Workload = input.workload;
        let mut spreads: Vec<SpreadCount<'w>> = Vec::new();
        let mut index: HashMap<(&str, &LabelSelector, &str), usize> = HashMap::new();
        let mut spread_of = Vec::with_capacity(w.classes.len());
        let mut affs = Vec::new();
        let mut aff_of = Vec::with_capacity(w.classes.len());
        for c in &w.classes {
            let mut of = Vec::with_capacity(c.topology_spread.len());
            for s in &c.topology_spread {
                if !s.hard {
                    of.push(None);
                    continue;
                }
                let key = (c.namespace.as_str(), &s.selector, s.topology_key.as_str());
                let g = *index.entry(key).or_insert_with(|| {
                    spreads.push(SpreadCount {
                        ns: key.0,
                        sel: key.1,
                        key: key.2,
                        counts: HashMap::new(),
                    });
                    spreads.len() - 1
                });
                of.push(Some(g));
            }
            spread_of.push(of);
            let terms: Vec<&PodAffinityTerm> = c
                .pod_affinity
                .iter()
                .filter(|a| !a.anti && a.weight.is_none())
                .collect();
            if terms.is_empty() {
                aff_of.push(None);
            } else {
                aff_of.push(Some(affs.len()));
                affs.push(AffCount {
                    ns: &c.namespace,
                    counts: vec![HashMap::new(); terms.len()],
                    terms,
                    total: 0,
                });
            }
        }
        Replay {
            input,
            spreads,
            spread_of,
            affs,
            aff_of,
            matched: vec![None; w.classes.len()],
            eligible: HashMap::new(),
        }
    }

    /// The spreads and affinity counts a pod of `ns` with `lbl` is counted in.
    fn matching(&self, ns: &str, lbl: &BTreeMap<String, String>) -> (Vec<usize>, Vec<usize>) {
        let s = (0..self.spreads.len())
            .filter(|&g| self.spreads[g].ns == ns && self.spreads[g].sel.matches(lbl))
            .collect();
        let a = (0..self.affs.len())
            .filter(|&g| self.affs[g].matches(ns, lbl))
            .collect();
        (s, a)
    }

    fn bind_with(&mut self, (ss, aa): &(Vec<usize>, Vec<usize>), place: &Place) {
        for &g in ss {
            let sc = &mut self.spreads[g];
            if let Some(d) = domain(place, sc.key) {
                *sc.counts.entry(d).or_insert(0) += 1;
            }
        }
        for &g in aa {
            let ac = &mut self.affs[g];
            for (t, term) in ac.terms.iter().enumerate() {
                if let Some(d) = domain(place, &term.topology_key) {
                    *ac.counts[t].entry(d).or_insert(0) += 1;
                    ac.total += 1;
                }
            }
        }
    }

    fn bind_prebound(&mut self, p: &Prebound<'_>) {
        let m = self.matching(p.ns, p.labels);
        self.bind_with(&m, p.place);
    }

    fn bind_class(&mut self, ci: usize, place: &Place) {
        if self.matched[ci].is_none() {
            let c = &self.input.workload.classes[ci];
            self.matched[ci] = Some(self.matching(&c.namespace, &c.labels));
        }
        if let Some(m) = self.matched[ci].take() {
            self.bind_with(&m, place);
            self.matched[ci] = Some(m);
        }
    }

    /// The domains the `si`-th spread of class `ci` is measured over.
    fn eligible(&mut self, ci: usize, si: usize) -> &[String] {
        let input = self.input;
        self.eligible.entry((ci, si)).or_insert_with(|| {
            let s = &input.workload.classes[ci].topology_spread[si];
            let classes: &[usize] = if s.honor_node_affinity { &[ci] } else { &[] };
            eligible_domains(input, classes, &s.topology_key)
        })
    }

    /// Whether a pod of class `ci` at `place` binds now; why not if not.
    fn check(&mut self, ci: usize, place: &Place) -> Result<(), String> {
        let class: &'w PodClass = &self.input.workload.classes[ci];
        for (si, s) in class.topology_spread.iter().enumerate() {
            let Some(g) = self.spread_of[ci][si] else {
                continue;
            };
            // A node without the key: reported on its own by the caller.
            let Some(d) = domain(place, &s.topology_key) else {
                continue;
            };
            let count = self.spreads[g].counts.get(&d).copied().unwrap_or(0);
            let own = i64::from(s.selector.matches(&class.labels));
            let min = if s.topology_key == labels::HOSTNAME {
                // kube-scheduler's minimum over the nodes; a new node can
                // always be added, so 0 bounds it from below.
                0
            } else {
                let elig = self.eligible(ci, si).to_vec();
                let counts = &self.spreads[g].counts;
                let mut n = elig.len();
                let mut min = elig
                    .iter()
                    .map(|e| counts.get(e).copied().unwrap_or(0))
                    .min();
                for (dom, c) in counts {
                    if !elig.contains(dom) {
                        n += 1;
                        min = Some(min.map_or(*c, |m| m.min(*c)));
                    }
                }
                if s.min_domains.is_some_and(|m| n < m as usize) {
                    0
                } else {
                    min.unwrap_or(0)
                }
            };
            if count + own - min > i64::from(s.max_skew) {
                return Err(format!(
                    "spread on {} skew {} > maxSkew {} when it binds ({count} matching pod(s) bound in {d}, minimum {min})",
                    s.topology_key,
                    count + own - min,
                    s.max_skew
                ));
            }
        }
        if let Some(g) = self.aff_of[ci] {
            let ac = &self.affs[g];
            let met = ac.terms.iter().enumerate().all(|(t, term)| {
                // A node without the key: reported on its own by the caller.
                domain(place, &term.topology_key)
                    .is_none_or(|d| ac.counts[t].get(&d).is_some_and(|n| *n > 0))
            });
            // The first pod of a group that selects itself binds alone.
            let first = ac.total == 0 && ac.matches(&class.namespace, &class.labels);
            if !met && !first {
                let keys: Vec<&str> = ac.terms.iter().map(|t| t.topology_key.as_str()).collect();
                return Err(format!(
                    "pod affinity on {} not satisfied when it binds (no matching pod bound there before it{})",
                    keys.join(", "),
                    if ac.matches(&class.namespace, &class.labels) {
                        ", and one is bound elsewhere, so it is not the group's first pod"
                    } else {
                        ""
                    }
                ));
            }
        }
        Ok(())
    }
}

/// Replays the binding of every planned pod (`pods`: pod key, class, index
/// in its class, place) after `prebound`; one message per pod that
/// kube-scheduler would leave pending.
pub(super) fn replay(
    input: &SolveInput<'_>,
    prebound: &[Prebound<'_>],
    pods: &[(&str, usize, usize, &Place)],
) -> Vec<String> {
    let w = input.workload;
    let mut r = Replay::new(input);
    if r.spreads.is_empty() && r.affs.is_empty() {
        return Vec::new();
    }
    for p in prebound {
        r.bind_prebound(p);
    }
    let mut rank = vec![0usize; w.classes.len()];
    for (i, c) in binding_order(w).into_iter().enumerate() {
        rank[c] = i;
    }
    let mut order: Vec<&(&str, usize, usize, &Place)> = pods.iter().collect();
    order.sort_by_key(|(_, ci, i, _)| (rank[*ci], *i));
    let mut waiting = Vec::new();
    for p in order {
        let (_, ci, _, place) = *p;
        match r.check(ci, place) {
            Ok(()) => r.bind_class(ci, place),
            Err(_) => waiting.push(p),
        }
    }
    loop {
        let before = waiting.len();
        let mut still = Vec::with_capacity(before);
        for p in waiting {
            let (_, ci, _, place) = *p;
            if r.check(ci, place).is_ok() {
                r.bind_class(ci, place);
            } else {
                still.push(p);
            }
        }
        waiting = still;
        if waiting.len() == before {
            break;
        }
    }
    waiting
        .into_iter()
        .map(|&(pod, ci, _, place)| {
            let why = r.check(ci, place).err().unwrap_or_default();
            format!("pod {pod}: {why}")
        })
        .collect()
}
