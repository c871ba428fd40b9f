//! Consolidation after packing: two planned nodes whose pods fit together on
//! one new node that ranks cheaper than both are replaced by it.
//!
//! Packing decides one class at a time, so it cannot see that a class placed
//! later would have shared an earlier node had that node been bigger, in
//! another zone, or in another pool of the same weight. This pass looks back
//! at the finished packing, with every pod known. A merge keeps every
//! preference the pods were placed under, never moves a pod whose zone or
//! capacity type a topology rule counts, never lands in a pool of lower
//! weight, and is kept only if the independent validator accepts the whole
//! plan with it.

use super::super::validate::validate_options_of;
use super::*;

/// Plans with more new nodes than this skip the pass: it tries every pair,
/// and at that size the packing's own slack filling has done most of it.
pub(super) const MERGE_MAX_NODES: usize = 48;

/// Saved state to undo a rejected merge.
struct Undo {
    a: (usize, Node),
    b: (usize, Node),
    pool_used: Vec<Rv>,
    zone_count: Vec<Vec<u32>>,
    ct_count: Vec<[u32; 2]>,
}

/// A chosen replacement: (rank, pool, zone, capacity type, candidates).
type Target = (f64, usize, u16, CapacityType, Vec<u32>);

impl Packer<'_, '_> {
    /// Saves what a merge or split of `a` and `b` changes.
    fn snapshot(&self, a: usize, b: usize) -> Undo {
        Undo {
            a: (a, self.nodes[a].clone()),
            b: (b, self.nodes[b].clone()),
            pool_used: self.pool_used.clone(),
            zone_count: self.zone_count.clone(),
            ct_count: self.ct_count.clone(),
        }
    }

    /// Keeps the tentative change if the validator accepts the whole plan;
    /// otherwise restores `undo`. True when kept.
    fn keep_if_valid(&mut self, undo: Undo) -> bool {
        let (a, b) = (undo.a.0, undo.b.0);
        let plan = self.build(false);
        // Plan node j is the j-th new node that still has candidates (as
        // `build` emits them); only `a` and `b` changed, so only their
        // fallback options need checking again.
        let changed: Vec<bool> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.existing.is_none() && !n.cands.is_empty())
            .map(|(i, _)| i == a || i == b)
            .collect();
        let kept = validate_options_of(&plan, self.t.input, |j| {
            changed.get(j).copied().unwrap_or(true)
        })
        .is_empty();
        if !kept {
            self.nodes[a] = undo.a.1;
            self.nodes[b] = undo.b.1;
            self.pool_used = undo.pool_used;
            self.zone_count = undo.zone_count;
            self.ct_count = undo.ct_count;
        }
        for n in [a, b] {
            self.sync_slack(n, true);
            for s in 0..self.nodes[n].sel_count.len() {
                if self.nodes[n].sel_count[s] > 0 {
                    self.sel_nodes[s].push(n);
                }
            }
        }
        kept
    }

    /// Merges pairs of new nodes while a merge lowers the plan's rank.
    pub(super) fn merge_pass(&mut self) {
        // A script that reads the pods scores whole nodes; merging by rank
        // alone would undo what it asked for, so the pass stands aside.
        if self.strategy != Strategy::CostAware
            || self.t.input.scorer.is_some_and(|s| s.is_load_dependent())
        {
            return;
        }
        // A merge may change a node's type, and with it the values of
        // generic topology keys its pods are counted under; such plans
        // keep their packing as it is.
        if !self.topo.keys.is_empty() {
            return;
        }
        let (zone_sels, ct_sels) = self.counted_selectors();
        for _ in 0..MERGE_MAX_NODES {
            let live: Vec<usize> = self
                .new_nodes
                .iter()
                .copied()
                .filter(|&n| !self.nodes[n].cands.is_empty() && !self.nodes[n].pods.is_empty())
                .collect();
            if live.len() < 2 || live.len() > MERGE_MAX_NODES {
                return;
            }
            let mut merged = false;
            'pairs: for (x, &a) in live.iter().enumerate() {
                for &b in &live[x + 1..] {
                    if self.try_merge(a, b, &zone_sels, &ct_sels)
                        || self.try_split(a, b, &zone_sels, &ct_sels)
                    {
                        merged = true;
                        break 'pairs;
                    }
                }
            }
            if !merged {
                return;
            }
        }
    }

    /// Selectors counted per zone and per capacity type by some spread or
    /// (anti-)affinity term: pods they match must not change zone (or
    /// capacity type), or the counts those terms were satisfied with change.
    fn counted_selectors(&self) -> (Vec<usize>, Vec<usize>) {
        let mut zone = Vec::new();
        let mut ct = Vec::new();
        for tp in &self.topo.classes {
            let keys = tp
                .spreads
                .iter()
                .map(|s| (s.key, s.sel))
                .chain(tp.affs.iter().map(|a| (a.key, a.sel)));
            for (k, s) in keys {
                match k {
                    TKey::Zone => zone.push(s),
                    TKey::CapacityType => ct.push(s),
                    TKey::Host | TKey::Label(_) => {}
                }
            }
        }
        (zone, ct)
    }

    /// The node's current rank (what the packer minimises).
    fn node_rank(&self, n: usize) -> f64 {
        let node = &self.nodes[n];
        node.cands
            .first()
            .map_or(f64::INFINITY, |o| self.t.pools[node.pool].rank[*o as usize])
    }

    /// Whether the pods of `a` and `b` may share a host: no hostname
    /// anti-affinity (required or honoured preferred) between them, and no
    /// ScheduleAnyway hostname spread that sharing would skew.
    fn may_share_host(&self, a: usize, b: usize) -> bool {
        let (na, nb) = (&self.nodes[a], &self.nodes[b]);
        let clash = |x: &Node, y: &Node| {
            y.pods.iter().any(|(c, _)| {
                self.topo.classes[*c]
                    .matched_by
                    .iter()
                    .any(|s| x.anti_host.contains(s))
            })
        };
        let soft_host = |x: &Node| {
            x.placed.iter().any(|(c, v)| {
                v.soft_spread
                    && self.topo.classes[*c]
                        .spreads
                        .iter()
                        .any(|s| s.key == TKey::Host && !s.hard)
            })
        };
        !clash(na, nb)
            && !clash(nb, na)
            && !soft_host(na)
            && !soft_host(nb)
            && port_conflict(&na.ports, &nb.ports).is_none()
    }

    /// The zone and capacity type the merged node must keep, if its pods
    /// are counted per zone or capacity type; None when they disagree.
    #[allow(
        clippy::type_complexity,
        reason = "a pair of optional pins, read once by the caller; an alias would hide the shape"
    )]
    fn pinned(
        &self,
        a: usize,
        b: usize,
        zone_sels: &[usize],
        ct_sels: &[usize],
    ) -> Option<(Option<u16>, Option<CapacityType>)> {
        let mut zone: Option<u16> = None;
        let mut ct: Option<CapacityType> = None;
        for n in [a, b] {
            let node = &self.nodes[n];
            for (c, _) in &node.pods {
                let by = &self.topo.classes[*c].matched_by;
                if by.iter().any(|s| zone_sels.contains(s)) {
                    match (zone, node.zone) {
                        (Some(z), Some(y)) if z != y => return None,
                        (_, y) => zone = zone.or(y),
                    }
                }
                if by.iter().any(|s| ct_sels.contains(s)) {
                    match (ct, node.ct) {
                        (Some(z), Some(y)) if z != y => return None,
                        (_, y) => ct = ct.or(y),
                    }
                }
            }
        }
        Some((zone, ct))
    }

    /// The cheapest new node that can carry the pods of `a` and `b`, if it
    /// ranks below the two together.
    fn merge_target(
        &mut self,
        a: usize,
        b: usize,
        zone: Option<u16>,
        ct: Option<CapacityType>,
    ) -> Option<Target> {
        let (na, nb) = (&self.nodes[a], &self.nodes[b]);
        let need = add(&na.used, &nb.used);
        let placed: Vec<(usize, Variant)> = na.placed.iter().chain(&nb.placed).copied().collect();
        let bound = self.node_rank(a) + self.node_rank(b) - 1e-9;
        self.best_target(a, b, need, &placed, bound, zone, ct)
    }

    /// The cheapest new node (replacing some of `a` and `b`) for pods that
    /// need `need` and were placed under `placed`, ranking below `bound`.
    #[allow(
        clippy::too_many_arguments,
        reason = "the two nodes, the merged need and its pins: one call site, each argument used once"
    )]
    fn best_target(
        &mut self,
        a: usize,
        b: usize,
        need: Rv,
        placed: &[(usize, Variant)],
        bound: f64,
        zone: Option<u16>,
        ct: Option<CapacityType>,
    ) -> Option<Target> {
        let (na, nb) = (&self.nodes[a], &self.nodes[b]);
        let pools = &self.t.input.policy.pools;
        let floor = pools[na.pool].weight.max(pools[nb.pool].weight);
        let old: Vec<(usize, Rv)> = [a, b]
            .iter()
            .map(|&n| {
                let node = &self.nodes[n];
                (node.pool, self.type_cap_of(node.cands[0]))
            })
            .collect();
        let mut best: Option<Target> = None;
        let nz = self.t.input.catalog.zones.len() as u16;
        for p in 0..self.t.pools.len() {
            if self.t.input.policy.pools[p].weight < floor {
                continue;
            }
            let mut bits = Vec::with_capacity(placed.len());
            for (c, v) in placed {
                bits.push(self.t.class_bits(p, *c, v));
            }
            if bits.iter().any(|b| b.none()) {
                continue;
            }
            let mut headroom = sub(&self.t.pools[p].limit, &self.pool_used[p]);
            for (op, cap) in &old {
                if *op == p {
                    headroom = add(&headroom, cap);
                }
            }
            for z in 0..nz {
                if zone.is_some_and(|x| x != z) {
                    continue;
                }
                for k in [CapacityType::OnDemand, CapacityType::Spot] {
                    if ct.is_some_and(|x| x != k) {
                        continue;
                    }
                    let tab = &self.t.pools[p];
                    let ok = |o: &u32| {
                        let oi = *o as usize;
                        bits.iter().all(|b| b.get(oi)) && fits(&need, &tab.net[oi])
                    };
                    // The first fitting candidate decides whether this domain can
                    // win; the whole list is built only when it can (building it
                    // for every pool and domain was most of a plan's time).
                    let list = &tab.by_domain[dom(z, k)];
                    let Some(at) = list.iter().position(ok) else {
                        continue;
                    };
                    let first = list[at];
                    let rank = tab.rank[first as usize];
                    if rank >= bound || best.as_ref().is_some_and(|x| rank >= x.0) {
                        continue;
                    }
                    let cands: Vec<u32> = list[at..].iter().copied().filter(ok).collect();
                    if !fits(&self.type_cap_of(first), &headroom) || !self.min_values_ok(p, &cands)
                    {
                        continue;
                    }
                    best = Some((rank, p, z, k, cands));
                }
            }
        }
        best
    }

    /// Replaces nodes `a` and `b` by one cheaper node if the result is valid.
    fn try_merge(&mut self, a: usize, b: usize, zone_sels: &[usize], ct_sels: &[usize]) -> bool {
        if !self.may_share_host(a, b) {
            return false;
        }
        let Some((zone, ct)) = self.pinned(a, b, zone_sels, ct_sels) else {
            return false;
        };
        let Some((_, p, z, k, cands)) = self.merge_target(a, b, zone, ct) else {
            return false;
        };
        let undo = self.snapshot(a, b);
        let nb = std::mem::replace(
            &mut self.nodes[b],
            Node {
                cands: Vec::new(),
                pods: Vec::new(),
                placed: Vec::new(),
                ..undo.b.1.clone()
            },
        );
        for old in [&undo.a.1, &nb] {
            let cap = self.type_cap_of(old.cands[0]);
            self.pool_used[old.pool] = sub(&self.pool_used[old.pool], &cap);
            for &(c, n) in &old.pods {
                for &s in &self.topo.classes[c].matched_by {
                    if let Some(oz) = old.zone {
                        self.zone_count[s][oz as usize] -= n;
                        self.zone_count[s][z as usize] += n;
                    }
                    if let Some(oc) = old.ct {
                        self.ct_count[s][ct_idx(oc)] -= n;
                        self.ct_count[s][ct_idx(k)] += n;
                    }
                }
            }
        }
        let cap = self.type_cap_of(cands[0]);
        self.pool_used[p] = add(&self.pool_used[p], &cap);
        let na = &mut self.nodes[a];
        na.pool = p;
        na.zone = Some(z);
        na.ct = Some(k);
        na.cands = cands;
        na.applied.clear();
        na.used = add(&na.used, &nb.used);
        for (s, x) in na.sel_count.iter_mut().zip(&nb.sel_count) {
            *s += x;
        }
        for s in &nb.anti_host {
            if !na.anti_host.contains(s) {
                na.anti_host.push(*s);
            }
        }
        for hp in &nb.ports {
            if !na.ports.contains(hp) {
                na.ports.push(hp.clone());
            }
        }
        na.pods.extend(nb.pods.iter().copied());
        for pv in &nb.placed {
            if !na.placed.contains(pv) {
                na.placed.push(*pv);
            }
        }
        self.keep_if_valid(undo)
    }

    /// Re-divides the pods of `a` and `b` between two new nodes that rank
    /// below the pair (a greedy split can leave one node too small for a
    /// pod that would have shared it). Not for pods with preferred hostname
    /// terms (the validator checks only required ones); kept only if the
    /// validator accepts the plan.
    fn try_split(&mut self, a: usize, b: usize, zone_sels: &[usize], ct_sels: &[usize]) -> bool {
        let mut counts: Vec<(usize, u32)> = Vec::new();
        for n in [a, b] {
            for &(c, k) in &self.nodes[n].pods {
                match counts.iter_mut().find(|x| x.0 == c) {
                    Some(x) => x.1 += k,
                    None => counts.push((c, k)),
                }
            }
        }
        // Required hostname terms are checked by the validator; preferred
        // ones are not, so pods with those are left where packing put them.
        let host_terms = counts.iter().any(|(c, _)| {
            let tp = &self.topo.classes[*c];
            tp.affs
                .iter()
                .any(|x| x.key == TKey::Host && x.weight.is_some())
                || tp.spreads.iter().any(|x| x.key == TKey::Host && !x.hard)
        });
        let combos: u64 = counts.iter().map(|(_, k)| u64::from(*k) + 1).product();
        if host_terms || combos > SPLIT_MAX_COMBOS {
            return false;
        }
        let Some((zone, ct)) = self.pinned(a, b, zone_sels, ct_sels) else {
            return false;
        };
        let placed: Vec<(usize, Variant)> = self.nodes[a]
            .placed
            .iter()
            .chain(&self.nodes[b].placed)
            .copied()
            .collect();
        let before = self.node_rank(a) + self.node_rank(b) - 1e-9;
        let mut best: Option<(f64, Vec<u32>, Target, Target)> = None;
        for code in 1..combos.saturating_sub(1) {
            let mut rest = code;
            let mut side = Vec::with_capacity(counts.len());
            for (_, k) in &counts {
                let base = u64::from(*k) + 1;
                side.push((rest % base) as u32);
                rest /= base;
            }
            let (mut n1, mut n2) = ([0; D], [0; D]);
            for ((c, k), x) in counts.iter().zip(&side) {
                for _ in 0..*x {
                    n1 = add(&n1, &self.reqs[*c]);
                }
                for _ in 0..(*k - *x) {
                    n2 = add(&n2, &self.reqs[*c]);
                }
            }
            let p1: Vec<(usize, Variant)> = placed
                .iter()
                .filter(|(c, _)| {
                    counts
                        .iter()
                        .zip(&side)
                        .any(|((cc, _), x)| cc == c && *x > 0)
                })
                .copied()
                .collect();
            let p2: Vec<(usize, Variant)> = placed
                .iter()
                .filter(|(c, _)| {
                    counts
                        .iter()
                        .zip(&side)
                        .any(|((cc, k), x)| cc == c && *x < *k)
                })
                .copied()
                .collect();
            let Some(t1) = self.best_target(a, b, n1, &p1, before, zone, ct) else {
                continue;
            };
            let Some(t2) = self.best_target(a, b, n2, &p2, before - t1.0, zone, ct) else {
                continue;
            };
            let total = t1.0 + t2.0;
            if total < before && best.as_ref().is_none_or(|x| total < x.0) {
                best = Some((total, side, t1, t2));
            }
        }
        let Some((_, side, t1, t2)) = best else {
            return false;
        };
        let undo = self.snapshot(a, b);
        for old in [&undo.a.1, &undo.b.1] {
            let cap = self.type_cap_of(old.cands[0]);
            self.pool_used[old.pool] = sub(&self.pool_used[old.pool], &cap);
            for &(c, n) in &old.pods {
                for &s in &self.topo.classes[c].matched_by {
                    if let Some(oz) = old.zone {
                        self.zone_count[s][oz as usize] -= n;
                    }
                    if let Some(oc) = old.ct {
                        self.ct_count[s][ct_idx(oc)] -= n;
                    }
                }
            }
        }
        for (n, t, first) in [(a, t1, true), (b, t2, false)] {
            let (_, p, z, k, cands) = t;
            let pods: Vec<(usize, u32)> = counts
                .iter()
                .zip(&side)
                .map(|((c, total), x)| (*c, if first { *x } else { *total - *x }))
                .filter(|(_, k)| *k > 0)
                .collect();
            let cap = self.type_cap_of(cands[0]);
            self.pool_used[p] = add(&self.pool_used[p], &cap);
            let mut used = [0; D];
            let mut sel_count = vec![0; self.topo.sels.len()];
            for &(c, k2) in &pods {
                for _ in 0..k2 {
                    used = add(&used, &self.reqs[c]);
                }
                for &s in &self.topo.classes[c].matched_by {
                    sel_count[s] += k2;
                    self.zone_count[s][z as usize] += k2;
                    self.ct_count[s][ct_idx(k)] += k2;
                }
            }
            let placed_here: Vec<(usize, Variant)> = placed
                .iter()
                .filter(|(c, _)| pods.iter().any(|(pc, _)| pc == c))
                .copied()
                .collect();
            let mut anti_host = Vec::new();
            for &(c, _) in &pods {
                for x in &self.topo.classes[c].affs {
                    if x.anti
                        && x.key == TKey::Host
                        && x.weight.is_none()
                        && !anti_host.contains(&x.sel)
                    {
                        anti_host.push(x.sel);
                    }
                }
            }
            let mut ports: Vec<HostPort> = Vec::new();
            for &(c, _) in &pods {
                for hp in &self.t.input.workload.classes[c].host_ports {
                    if !ports.contains(hp) {
                        ports.push(hp.clone());
                    }
                }
            }
            let node = &mut self.nodes[n];
            node.pool = p;
            node.zone = Some(z);
            node.ct = Some(k);
            node.cands = cands;
            node.applied.clear();
            node.used = used;
            node.sel_count = sel_count;
            node.anti_host = anti_host;
            node.ports = ports;
            node.pods = pods;
            node.placed = placed_here;
        }
        self.keep_if_valid(undo)
    }
}

/// A split of two nodes' pods is only searched when it has at most this many
/// ways (the product over classes of pods + 1).
const SPLIT_MAX_COMBOS: u64 = 64;
