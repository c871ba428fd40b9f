//! The packer: places pod classes onto existing nodes, then into the slack of
//! nodes already planned, then onto new nodes chosen for the best price per
//! pod, relaxing preferences in a fixed order when a class cannot be placed.

// Index loops over fixed-size resource vectors and parallel per-pool arrays read
// more plainly than zipped iterators here.
#![allow(
    clippy::needless_range_loop,
    reason = "index loops over fixed-size resource vectors and parallel per-pool arrays read more plainly"
)]

use std::collections::{BTreeMap, HashMap};

use crate::catalog::node_labels::{CLAIM_LABEL, node_label, node_labels};
use crate::catalog::{Bits, CapacityType};
use crate::ir::{Attrs, PlacementKind, Requirements, Subject, labels};
use crate::workload::{HostPort, Toleration, port_conflict, untolerated};

use super::tables::{
    D, Rv, Tables, Variant, add, copies, copies_after, dom, dom_ct, fits, fits_on, sub,
};
use super::topology::{TKey, Topo};
use super::{ExistingPlacement, InstanceOption, Plan, PlannedNode, SolveInput, Unschedulable};

mod bind_order;
mod merge;
mod slack;

/// How new nodes are sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Best price per pod placed, then fill slack, then grow (the product's solver).
    CostAware,
    /// Karpenter-style first-fit decreasing: a new node may grow to the largest
    /// type; each node finally takes the cheapest type that fits (the baseline).
    FirstFitDecreasing,
}

/// A node being planned (new) or already in the cluster.
#[derive(Clone)]
struct Node {
    existing: Option<usize>,
    pool: usize,
    zone: Option<u16>,
    ct: Option<CapacityType>,
    /// Candidate offerings (new nodes), cheapest first, each allowed for
    /// every pod on the node. The first fits `used`; later ones may not
    /// (narrowing the whole list at every placement was the packer's main
    /// cost), so readers of the whole list re-check `fits`.
    cands: Vec<u32>,
    /// Ids of the class offering sets (`Packer::bits_id`) already applied
    /// to `cands`; a class with one of these needs no re-filtering.
    applied: Vec<u32>,
    used: Rv,
    /// Existing nodes: allocatable minus what is bound.
    room: Rv,
    sel_count: Vec<u32>,
    anti_host: Vec<usize>,
    /// Host ports held on the node (by bound pods, or by the classes placed).
    ports: Vec<HostPort>,
    pods: Vec<(usize, u32)>,
    /// Position in `open_nodes` (new nodes).
    open_pos: usize,
    /// Each class on the node with the variant it was placed under: a later
    /// move (consolidation) must keep the preferences that placement honoured.
    placed: Vec<(usize, Variant)>,
    /// Per generic topology key (`Topo::keys`): the node's value id
    /// (`NO_VALUE` = the node lacks the label), or `FREE` while no pod on
    /// the node is counted or constrained by the key. A key is fixed when
    /// the first such pod lands: the candidates are narrowed to the
    /// offerings with that value, so the domain holds whatever type the
    /// node grows to or falls back to.
    gvals: Vec<u32>,
}

/// A node without the label of a generic topology key.
const NO_VALUE: u32 = u32::MAX;
/// A new node's generic-key value not fixed yet (see `Node::gvals`).
const FREE: u32 = u32::MAX - 1;

/// What decides a class's usable offerings and spread domains: classes
/// equal in all of it share one computation. Borrowed from the workload,
/// so building a key allocates nothing but the short `preferred` list.
#[derive(PartialEq, Eq, Hash)]
struct DomKey<'a> {
    /// The class itself when policy rules apply to it alone, else MAX.
    class: usize,
    node_selector: &'a Requirements,
    required: &'a [Requirements],
    preferred: Vec<&'a (i32, Requirements)>,
    volume_zones: Option<&'a [String]>,
    tolerations: &'a [Toleration],
    /// Host ports: offerings whose DaemonSets hold a conflicting one are out.
    host_ports: &'a [HostPort],
    /// (prefer rules kept, preferred node terms kept).
    relax: (usize, usize),
}

/// One class being placed under one variant: what every step of its
/// placement reads. One value instead of the same five arguments passed
/// through every tier's methods.
#[derive(Clone, Copy)]
struct Placing<'b> {
    /// The class (index into the workload's classes).
    c: usize,
    /// Which of its preferences are still enforced.
    v: Variant,
    /// Per pool: the offerings the class may use under `v`.
    bits: &'b [Bits],
    /// Zones (one bit each) of the class's spread domains.
    zmask: u64,
    /// Capacity types (bit 0 on-demand, bit 1 spot) of its spread domains.
    cmask: u8,
    /// Per spread of the class (by index): for a generic key, the value ids
    /// of its domains; empty for the fast-path keys.
    gdoms: &'b [Vec<u32>],
}

/// The best new node found so far in tier 3.
#[derive(Clone, Copy)]
struct NewNode {
    /// Rank per pod: what new nodes compete on (0 for first-fit).
    score: f64,
    /// Pods it would take.
    k: u32,
    pool: usize,
    /// Its cheapest offering, which fixes its zone and capacity type.
    offering: u32,
}

/// The packing state of one solve.
pub struct Packer<'t, 'a> {
    pub t: &'t mut Tables<'a>,
    pub topo: Topo,
    strategy: Strategy,
    nodes: Vec<Node>,
    /// Indices of new nodes, in creation order.
    new_nodes: Vec<usize>,
    /// New nodes in creation order (tier 2 scans these).
    open_nodes: Vec<usize>,
    /// Per domain (zone × capacity type): spare room of the open nodes in
    /// it, by open position (tier 2 searches these).
    slack: Vec<slack::SlackIndex>,
    /// Memoised class bitsets and domain masks, by node-constraint signature.
    dom_cache: HashMap<DomKey<'a>, (Vec<Bits>, u64, u8, u32)>,
    /// Id of the offering sets of the class being placed (its `dom_cache`
    /// entry): equal ids mean equal sets.
    bits_id: u32,
    zone_count: Vec<Vec<u32>>,
    ct_count: Vec<[u32; 2]>,
    any_count: Vec<u32>,
    /// Per selector: nodes that have held a matching pod (a superset; a
    /// reader re-checks the counts). Classes that must sit next to such
    /// pods look only at these.
    sel_nodes: Vec<Vec<usize>>,
    anti_zone: Vec<Vec<usize>>,
    /// Per capacity type: selectors of required anti-affinity terms on
    /// capacity type of pods placed there (the symmetric check).
    anti_ct: [Vec<usize>; 2],
    pool_used: Vec<Rv>,
    reqs: Vec<Rv>,
    /// The resource dimensions this solve uses (`tables::active_dims`).
    act: Vec<usize>,
    notes: Vec<String>,
    /// Per class: pods left unplaced.
    left: Vec<u32>,
    /// Placing a class that must share one node (hostname self-affinity,
    /// group not started): only places that take every remaining pod count.
    together: bool,
    /// Within a constraint tier, order classes by memory before cpu (the
    /// second ordering `solve` tries on small inputs).
    memory_first: bool,
    /// Per pool: how many pods of the workload its taints admit. Between
    /// equally good new nodes, the more open pool wins, so a pod that
    /// tolerates a dedicated pool's taint does not strand pods that could
    /// otherwise have shared its node.
    openness: Vec<usize>,
    /// Zones (one bit each) and capacity types where any pool has a usable
    /// offering: the domains of a spread with nodeAffinityPolicy Ignore.
    all_zmask: u64,
    all_cmask: u8,
    /// Per generic key, per pool, per offering: the value id a node of it
    /// carries (`catalog::node_labels`), or `NO_VALUE`. Empty without
    /// generic keys.
    gval: Vec<Vec<Vec<u32>>>,
    /// Per generic key: value id -> value.
    gnames: Vec<Vec<String>>,
    /// Per generic key, per selector: matching pods per value id.
    gcount: Vec<Vec<HashMap<u32, u32>>>,
    /// (generic key, value id) -> selectors of required anti-affinity terms
    /// of pods placed in that domain (the symmetric check).
    anti_g: HashMap<(u16, u32), Vec<usize>>,
    /// Every placement, in order: (node, class, pods). A class's pods are
    /// named in this order (`build`), the order kube-scheduler binds them
    /// in, so each binds against the pods the packer checked it with.
    commits: Vec<(usize, usize, u32)>,
}

fn ct_idx(ct: CapacityType) -> usize {
    usize::from(ct == CapacityType::Spot)
}

struct MapAttrs<'m>(&'m BTreeMap<String, String>);
impl Attrs for MapAttrs<'_> {
    fn get(&self, s: &Subject) -> Option<std::borrow::Cow<'_, str>> {
        match s {
            Subject::NodeLabel(k) => self
                .0
                .get(k)
                .map(|v| std::borrow::Cow::Borrowed(v.as_str())),
            _ => None,
        }
    }
}

impl<'t, 'a> Packer<'t, 'a> {
    /// Sets up counts from existing nodes and their bound pods.
    pub fn new(t: &'t mut Tables<'a>, strategy: Strategy) -> Self {
        let input: &SolveInput<'_> = t.input;
        let topo = Topo::new(input.workload);
        let nsel = topo.sels.len();
        let nz = input.catalog.zones.len();
        let reqs: Vec<Rv> = input
            .workload
            .classes
            .iter()
            .map(|c| {
                let mut r = t.dims.rv(&c.requests);
                r[3] = r[3].max(1);
                r
            })
            .collect();
        let mut p = Packer {
            topo,
            strategy,
            nodes: Vec::new(),
            new_nodes: Vec::new(),
            open_nodes: Vec::new(),
            slack: vec![slack::SlackIndex::default(); nz * 2],
            dom_cache: HashMap::new(),
            bits_id: u32::MAX,
            zone_count: vec![vec![0; nz]; nsel],
            ct_count: vec![[0; 2]; nsel],
            any_count: vec![0; nsel],
            sel_nodes: vec![Vec::new(); nsel],
            anti_zone: vec![Vec::new(); nz],
            anti_ct: [Vec::new(), Vec::new()],
            pool_used: vec![[0; D]; input.policy.pools.len()],
            reqs,
            act: Vec::new(),
            notes: Vec::new(),
            left: input
                .workload
                .classes
                .iter()
                .map(|c| c.count() as u32)
                .collect(),
            together: false,
            memory_first: false,
            openness: input
                .policy
                .pools
                .iter()
                .map(|pool| {
                    input
                        .workload
                        .classes
                        .iter()
                        .filter(|c| super::tables::pool_taint_block(pool, &c.tolerations).is_none())
                        .map(|c| c.count())
                        .sum()
                })
                .collect(),
            all_zmask: 0,
            all_cmask: 0,
            gval: Vec::new(),
            gnames: Vec::new(),
            gcount: Vec::new(),
            anti_g: HashMap::new(),
            commits: Vec::new(),
            t,
        };
        for tab in &p.t.pools {
            for (d, list) in tab.by_domain.iter().enumerate() {
                if list.iter().any(|o| tab.usable.get(*o as usize)) {
                    p.all_zmask |= 1 << (d / 2).min(63);
                    p.all_cmask |= 1 << (d % 2);
                }
            }
        }
        p.label_tables();
        for (i, en) in input.workload.nodes.iter().enumerate() {
            let zone = en
                .labels
                .get(labels::ZONE)
                .and_then(|z| input.catalog.zones.iter().position(|x| &x.name == z))
                .map(|z| z as u16);
            let ct = en
                .labels
                .get(labels::CAPACITY_TYPE)
                .and_then(|c| CapacityType::parse(c));
            let pool = en
                .labels
                .get(labels::NODEPOOL)
                .and_then(|n| input.policy.pools.iter().position(|p| &p.name == n));
            let alloc = p.t.dims.rv(&en.allocatable);
            if let Some(pi) = pool {
                p.pool_used[pi] = add(&p.pool_used[pi], &alloc);
            }
            let mut sel_count = vec![0u32; nsel];
            let gvals: Vec<u32> = (0..p.topo.keys.len())
                .map(|g| p.intern(g, en.labels.get(&p.topo.keys[g])))
                .collect();
            let mut ports: Vec<HostPort> = Vec::new();
            for bp in &en.pods {
                ports.extend(bp.host_ports.iter().cloned());
                for (s, sel) in p.topo.sels.iter().enumerate() {
                    if sel.matches(&bp.namespace, &bp.labels) {
                        sel_count[s] += 1;
                        p.any_count[s] += 1;
                        for (g, &val) in gvals.iter().enumerate() {
                            if val != NO_VALUE {
                                *p.gcount[g][s].entry(val).or_insert(0) += 1;
                            }
                        }
                        if let Some(z) = zone {
                            p.zone_count[s][z as usize] += 1;
                        }
                        if let Some(c) = ct {
                            p.ct_count[s][ct_idx(c)] += 1;
                        }
                    }
                }
            }
            p.nodes.push(Node {
                existing: Some(i),
                pool: pool.unwrap_or(usize::MAX),
                zone,
                ct,
                cands: Vec::new(),
                applied: Vec::new(),
                used: [0; D],
                room: sub(&alloc, &p.t.dims.rv(&en.used)),
                sel_count,
                anti_host: Vec::new(),
                ports,
                pods: Vec::new(),
                open_pos: usize::MAX,
                placed: Vec::new(),
                gvals,
            });
        }
        let rooms: Vec<Rv> = p.nodes.iter().map(|n| n.room).collect();
        // Only usable offerings' rooms: a pool's arrays are shared with other
        // pools (`tables::compile_pools`), and its other entries mean nothing here.
        let tables = &p.t.pools;
        p.act = super::tables::active_dims(
            &p.reqs,
            tables
                .iter()
                .flat_map(|t| t.usable.iter().map(|o| &t.net[o]))
                .chain(&rooms),
        );
        if !p.t.dims.overflow.is_empty() {
            p.notes.push(format!(
                "ignored: too many extended resources; not tracked: {}",
                p.t.dims.overflow.join(", ")
            ));
        }
        p
    }

    /// Interns the value of generic key `g` (None = the label is absent).
    fn intern(&mut self, g: usize, v: Option<&String>) -> u32 {
        let Some(v) = v else { return NO_VALUE };
        let names = &mut self.gnames[g];
        match names.iter().position(|x| x == v) {
            Some(i) => i as u32,
            None => {
                names.push(v.clone());
                (names.len() - 1) as u32
            }
        }
    }

    /// For every generic topology key, the value a node of each (pool,
    /// offering) carries, as interned ids. Nothing without generic keys.
    fn label_tables(&mut self) {
        let nk = self.topo.keys.len();
        if nk == 0 {
            return;
        }
        let input = self.t.input;
        let cat = input.catalog;
        let nsel = self.topo.sels.len();
        self.gnames = vec![Vec::new(); nk];
        self.gcount = vec![vec![HashMap::new(); nsel]; nk];
        for g in 0..nk {
            let key = self.topo.keys[g].clone();
            let mut ids: HashMap<&str, u32> = HashMap::new();
            let mut per_pool = Vec::with_capacity(input.policy.pools.len());
            for (pi, pool) in input.policy.pools.iter().enumerate() {
                let usable = &self.t.pools[pi].usable;
                let vals: Vec<u32> = cat
                    .offerings
                    .iter()
                    .enumerate()
                    .map(|(oi, o)| {
                        if !usable.get(oi) {
                            return NO_VALUE;
                        }
                        let Some(v) = node_label(cat, pool, o, &key) else {
                            return NO_VALUE;
                        };
                        *ids.entry(v).or_insert_with(|| {
                            self.gnames[g].push(v.to_string());
                            (self.gnames[g].len() - 1) as u32
                        })
                    })
                    .collect();
                per_pool.push(vals);
            }
            self.gval.push(per_pool);
        }
    }

    /// The generic-key values of a new node of pool `p` launched from `o`.
    fn offering_gvals(&self, p: usize, o: u32) -> Vec<u32> {
        self.gval.iter().map(|k| k[p][o as usize]).collect()
    }

    /// Whether offering `o` of pool `p` has the values `vals` for the keys `keys`.
    fn same_on(&self, p: usize, o: u32, vals: &[u32], keys: &[u16]) -> bool {
        keys.iter()
            .all(|&g| self.gval[g as usize][p][o as usize] == vals[g as usize])
    }

    /// Node `n`'s generic-key values as topology reads them: a key not
    /// fixed yet reads as its current type's value (`grow` fixes it to that
    /// value when a pod that needs it lands). Empty without generic keys.
    fn node_gvals(&self, n: usize) -> Vec<u32> {
        let node = &self.nodes[n];
        node.gvals
            .iter()
            .enumerate()
            .map(|(g, &v)| match (v, node.cands.first()) {
                (FREE, Some(&o)) => self.gval[g][node.pool][o as usize],
                (FREE, None) => NO_VALUE,
                (v, _) => v,
            })
            .collect()
    }

    /// The relaxation sequence for class `c`, strictest first.
    fn variants(&self, c: usize) -> Vec<Variant> {
        let mut v = Variant {
            pref_node: self.t.class_pref_terms[c].len(),
            prefer_rules: self.t.class_prefer[c].len(),
            pref_pod: self.topo.classes[c].preferred,
            soft_spread: true,
        };
        let mut out = vec![v];
        while v.pref_node > 0 {
            v.pref_node -= 1;
            out.push(v);
        }
        while v.prefer_rules > 0 {
            v.prefer_rules -= 1;
            out.push(v);
        }
        while v.pref_pod > 0 {
            v.pref_pod -= 1;
            out.push(v);
        }
        if v.soft_spread && self.topo.classes[c].spreads.iter().any(|s| !s.hard) {
            v.soft_spread = false;
            out.push(v);
        }
        out
    }

    /// The order classes are packed in: most constrained first (node choice
    /// restricted by selectors, required affinity or zonal volumes; then
    /// choice narrowed only by taints that shut the class out of a pool;
    /// then classes that force separate nodes, then other topology), each
    /// tier by size (cpu, memory) descending; classes that need a partner
    /// pod (pod affinity to others) last. Then classes linked by an
    /// order-dependent term are put in binding order (`bind_order`).
    fn order(&self) -> Vec<usize> {
        let classes = &self.t.input.workload.classes;
        let mut idx: Vec<usize> = (0..classes.len()).collect();
        let key = |c: usize| {
            let tp = &self.topo.classes[c];
            let dependent = tp
                .affs
                .iter()
                .any(|a| !a.anti && a.weight.is_none() && !a.self_match);
            let separating = tp
                .affs
                .iter()
                .any(|a| a.anti && a.weight.is_none() && a.key == TKey::Host)
                || tp.spreads.iter().any(|s| s.key == TKey::Host && s.hard);
            let class = &classes[c];
            let pools = &self.t.input.policy.pools;
            // 0: the pod's own constraints pin it down; 1: taints shut it out
            // of some pool, so it has fewer places than a class that could
            // follow it anywhere; 2: free.
            let freedom = if !class.node_selector.keys.is_empty()
                || !class.required_affinity.is_empty()
                || class.volume_zones.is_some()
            {
                0u8
            } else if pools
                .iter()
                .any(|p| super::tables::pool_taint_block(p, &class.tolerations).is_some())
            {
                1
            } else {
                2
            };
            let topological = !tp.spreads.is_empty() || !tp.affs.is_empty();
            (dependent, freedom, !separating, !topological)
        };
        // Keys once per class, not once per comparison: computing one walks
        // the class's constraints and the pools' taints.
        let keys: Vec<_> = idx.iter().map(|&c| key(c)).collect();
        idx.sort_by(|a, b| {
            keys[*a]
                .cmp(&keys[*b])
                .then({
                    let (x, y) = if self.memory_first { (1, 0) } else { (0, 1) };
                    self.reqs[*b][x]
                        .cmp(&self.reqs[*a][x])
                        .then(self.reqs[*b][y].cmp(&self.reqs[*a][y]))
                })
                .then(a.cmp(b))
        });
        // Classes whose spreads or first-pod affinity count each other are
        // placed in kube-scheduler's binding order (`bind_order`).
        bind_order::bind_ordered(self.t.input.workload, &self.topo, idx)
    }

    /// Orders classes by memory, then cpu, within each constraint tier.
    pub fn memory_first(mut self) -> Self {
        self.memory_first = true;
        self
    }

    /// Runs the packing and builds the plan.
    pub fn run(mut self) -> Plan {
        let order = self.order();
        // Later rounds retry classes whose partners (pod affinity targets)
        // were placed after them.
        for round in 0..3 {
            let before: u32 = self.left.iter().sum();
            self.round(&order);
            let after: u32 = self.left.iter().sum();
            if after == 0 || after == before || round == 2 {
                break;
            }
        }
        self.merge_pass();
        self.finish()
    }

    fn round(&mut self, order: &[usize]) {
        for &c in order {
            let variants = self.variants(c);
            for (vi, v) in variants.iter().enumerate() {
                if self.left[c] == 0 {
                    break;
                }
                let before = self.left[c];
                self.place_class(c, v);
                if vi > 0 && self.left[c] < before {
                    let class = &self.t.input.workload.classes[c];
                    self.notes.push(format!(
                        "{}: {} pod(s) placed after relaxing preferences ({})",
                        class.id,
                        before - self.left[c],
                        describe_relaxation(&variants[0], v)
                    ));
                }
            }
        }
    }

    /// Zones and capacity types class `c` can use anywhere (its spread domains).
    fn domains(&mut self, c: usize, v: &Variant) -> (Vec<Bits>, u64, u8) {
        let input: &'a SolveInput<'a> = self.t.input;
        let class = &input.workload.classes[c];
        // A class whose anti-affinity selects DaemonSet pods loses
        // those DaemonSets' offerings (`Tables::ds_pod_block`): its own entry.
        let per_class = !self.t.class_rules[c].is_empty()
            || !self.t.class_prefer[c].is_empty()
            || super::tables::has_ds_anti_terms(input, class);
        let key = DomKey {
            class: if per_class { c } else { usize::MAX },
            node_selector: &class.node_selector,
            required: &class.required_affinity,
            preferred: self.t.class_pref_terms[c]
                .iter()
                .take(v.pref_node)
                .map(|t| &class.preferred_affinity[*t])
                .collect(),
            volume_zones: class.volume_zones.as_deref(),
            tolerations: &class.tolerations,
            host_ports: &class.host_ports,
            relax: (v.prefer_rules, v.pref_node),
        };
        if let Some((bits, zm, cm, id)) = self.dom_cache.get(&key) {
            self.bits_id = *id;
            return (bits.clone(), *zm, *cm);
        }
        let (bits, zm, cm) = self.domains_uncached(c, v);
        self.bits_id = self.dom_cache.len() as u32;
        self.dom_cache
            .insert(key, (bits.clone(), zm, cm, self.bits_id));
        (bits, zm, cm)
    }

    /// The class's usable offerings under `v`, and its spread domains. The
    /// domains come from hard constraints only (as kube-scheduler counts
    /// them): a preference that narrows the zones must not shrink the set a
    /// hard spread is measured over, or honouring the preference would break
    /// the spread.
    fn domains_uncached(&mut self, c: usize, v: &Variant) -> (Vec<Bits>, u64, u8) {
        let np = self.t.pools.len();
        let hard = Variant {
            pref_node: 0,
            prefer_rules: 0,
            ..*v
        };
        let preferring = hard != *v;
        let mut bits = Vec::with_capacity(np);
        let mut zm = 0u64;
        let mut cm = 0u8;
        for p in 0..np {
            let b = self.t.class_bits(p, c, v);
            let hb = if preferring {
                self.t.class_bits(p, c, &hard)
            } else {
                b.clone()
            };
            for (d, list) in self.t.pools[p].by_domain.iter().enumerate() {
                if list.iter().any(|o| hb.get(*o as usize)) {
                    zm |= 1 << (d / 2).min(63);
                    cm |= 1 << (d % 2);
                }
            }
            bits.push(b);
        }
        (bits, zm, cm)
    }

    /// How many pods of the class `at` places topology allows at a place:
    /// node `n` (or a new node when None) in `zone` / `ct`, whose values
    /// for the generic keys are `gv` (None: not known yet, those terms are
    /// checked per offering by the caller, `label_limit`).
    fn topo_limit(
        &self,
        at: &Placing<'_>,
        n: Option<usize>,
        zone: Option<u16>,
        ct: Option<CapacityType>,
        gv: Option<&[u32]>,
    ) -> u32 {
        let (c, v) = (at.c, &at.v);
        let tp = &self.topo.classes[c];
        let mut lim = u32::MAX as i64;
        let node = n.map(|i| &self.nodes[i]);
        let host_count = |s: usize| node.map_or(0, |nd| nd.sel_count[s]) as i64;
        // Symmetric anti-affinity of pods already there.
        if let Some(nd) = node
            && nd.anti_host.iter().any(|s| self.topo.class_match[c][*s])
        {
            return 0;
        }
        // Host ports: one pod per node holds a port (its replicas' ports
        // conflict with its own), and none where the port is taken.
        let ports = &self.t.input.workload.classes[c].host_ports;
        if !ports.is_empty() {
            if node.is_some_and(|nd| port_conflict(ports, &nd.ports).is_some()) {
                return 0;
            }
            lim = lim.min(1);
        }
        if let Some(z) = zone
            && self.anti_zone[z as usize]
                .iter()
                .any(|s| self.topo.class_match[c][*s])
        {
            return 0;
        }
        if let Some(x) = ct
            && self.anti_ct[ct_idx(x)]
                .iter()
                .any(|s| self.topo.class_match[c][*s])
        {
            return 0;
        }
        let req_affs = tp.affs.len() - tp.preferred;
        if let Some(gv) = gv {
            lim = lim.min(i64::from(self.label_limit(at, gv)));
            if lim == 0 {
                return 0;
            }
        }
        for a in tp.affs.iter().take(req_affs + v.pref_pod) {
            let count = match a.key {
                TKey::Label(_) => continue,
                TKey::Host => host_count(a.sel),
                TKey::Zone => match zone {
                    Some(z) => i64::from(self.zone_count[a.sel][z as usize]),
                    None => return 0,
                },
                TKey::CapacityType => match ct {
                    Some(x) => i64::from(self.ct_count[a.sel][ct_idx(x)]),
                    None => return 0,
                },
            };
            if a.anti {
                if count > 0 {
                    return 0;
                }
                if a.self_match {
                    lim = lim.min(1);
                }
            } else if count == 0 && !(self.any_count[a.sel] == 0 && a.self_match) {
                return 0;
            }
        }
        for s in &tp.spreads {
            if !s.hard && !v.soft_spread {
                continue;
            }
            let (zmask, cmask) = if s.honor_affinity {
                (at.zmask, at.cmask)
            } else {
                (self.all_zmask, self.all_cmask)
            };
            let (count, min) = match s.key {
                TKey::Label(_) => continue,
                TKey::Host => (host_count(s.sel), 0i64),
                TKey::Zone => {
                    let Some(z) = zone else { return 0 };
                    if zmask & (1 << (z as u64).min(63)) == 0 {
                        return 0;
                    }
                    let mut min = i64::MAX;
                    let mut doms = 0;
                    for (zi, cnt) in self.zone_count[s.sel].iter().enumerate() {
                        if zmask & (1 << (zi as u64).min(63)) != 0 {
                            min = min.min(i64::from(*cnt));
                            doms += 1;
                        }
                    }
                    if doms < s.min_domains || min == i64::MAX {
                        min = 0;
                    }
                    (i64::from(self.zone_count[s.sel][z as usize]), min)
                }
                TKey::CapacityType => {
                    let Some(x) = ct else { return 0 };
                    let mut min = i64::MAX;
                    let mut doms = 0;
                    for ci in 0..2 {
                        if cmask & (1 << ci) != 0 {
                            min = min.min(i64::from(self.ct_count[s.sel][ci]));
                            doms += 1;
                        }
                    }
                    if doms < s.min_domains || min == i64::MAX {
                        min = 0;
                    }
                    (i64::from(self.ct_count[s.sel][ct_idx(x)]), min)
                }
            };
            if s.self_match {
                lim = lim.min(s.max_skew + min - count);
            } else if count - min > s.max_skew {
                return 0;
            }
        }
        lim.clamp(0, u32::MAX as i64) as u32
    }

    /// `topo_limit` for the generic-key terms alone, at a node (existing or
    /// planned `n`, or a new one when None) whose values are `gv`. As
    /// kube-scheduler: a node without the key fails a hard spread and a
    /// required affinity term, and passes an anti-affinity term; a spread's
    /// domains are the values of the nodes the pod may use (`Placing::gdoms`).
    fn label_limit(&self, at: &Placing<'_>, gv: &[u32]) -> u32 {
        if self.topo.keys.is_empty() {
            return u32::MAX;
        }
        let (c, v) = (at.c, &at.v);
        let tp = &self.topo.classes[c];
        // Symmetric anti-affinity of pods already in the domain.
        for (g, &val) in gv.iter().enumerate() {
            if val != NO_VALUE
                && self
                    .anti_g
                    .get(&(g as u16, val))
                    .is_some_and(|sels| sels.iter().any(|s| self.topo.class_match[c][*s]))
            {
                return 0;
            }
        }
        let count_at = |g: u16, sel: usize, val: u32| -> i64 {
            i64::from(self.gcount[g as usize][sel].get(&val).copied().unwrap_or(0))
        };
        let mut lim = i64::from(u32::MAX);
        let req_affs = tp.affs.len() - tp.preferred;
        for a in tp.affs.iter().take(req_affs + v.pref_pod) {
            let TKey::Label(g) = a.key else { continue };
            let val = gv[g as usize];
            if val == NO_VALUE {
                if a.anti {
                    continue;
                }
                return 0;
            }
            let count = count_at(g, a.sel, val);
            if a.anti {
                if count > 0 {
                    return 0;
                }
                if a.self_match {
                    lim = lim.min(1);
                }
            } else if count == 0 && !(self.any_count[a.sel] == 0 && a.self_match) {
                return 0;
            }
        }
        for (si, s) in tp.spreads.iter().enumerate() {
            let TKey::Label(g) = s.key else { continue };
            if !s.hard && !v.soft_spread {
                continue;
            }
            let val = gv[g as usize];
            if val == NO_VALUE {
                return 0;
            }
            let doms = at.gdoms.get(si).map_or(&[][..], |d| &d[..]);
            let mut min = doms
                .iter()
                .map(|d| count_at(g, s.sel, *d))
                .min()
                .unwrap_or(0);
            if (doms.len() as u32) < s.min_domains {
                min = 0;
            }
            let count = count_at(g, s.sel, val);
            if s.self_match {
                lim = lim.min(s.max_skew + min - count);
            } else if count - min > s.max_skew {
                return 0;
            }
        }
        lim.clamp(0, i64::from(u32::MAX)) as u32
    }

    /// The domains (value ids) of each generic-key spread of class `c`
    /// under `v`: the values of the offerings its hard node constraints
    /// allow (every usable one with nodeAffinityPolicy Ignore) and of the
    /// existing nodes that pass them. Empty for other spreads.
    fn label_domains(&mut self, c: usize, v: &Variant) -> Vec<Vec<u32>> {
        let tp = &self.topo.classes[c];
        if !tp.spreads.iter().any(|s| matches!(s.key, TKey::Label(_))) {
            return Vec::new();
        }
        let spreads: Vec<(TKey, bool)> = tp
            .spreads
            .iter()
            .map(|s| (s.key, s.honor_affinity))
            .collect();
        let hard = Variant {
            pref_node: 0,
            prefer_rules: 0,
            ..*v
        };
        let np = self.t.pools.len();
        let bits: Vec<Bits> = (0..np).map(|p| self.t.class_bits(p, c, &hard)).collect();
        let input = self.t.input;
        let class = &input.workload.classes[c];
        spreads
            .iter()
            .map(|&(key, honor)| {
                let TKey::Label(g) = key else {
                    return Vec::new();
                };
                let mut out: Vec<u32> = Vec::new();
                let mut seen = vec![false; self.gnames[g as usize].len()];
                for p in 0..np {
                    let vals = &self.gval[g as usize][p];
                    for (o, &val) in vals.iter().enumerate() {
                        if val != NO_VALUE && !seen[val as usize] && (!honor || bits[p].get(o)) {
                            seen[val as usize] = true;
                            out.push(val);
                        }
                    }
                }
                for node in self.nodes.iter().filter(|n| n.existing.is_some()) {
                    let val = node.gvals[g as usize];
                    let Some(ei) = node.existing else { continue };
                    let en = &input.workload.nodes[ei];
                    let labels = &en.labels;
                    // Taints count as for offerings (`class_bits` leaves out
                    // pools whose taints the pod does not tolerate).
                    if untolerated(&class.tolerations, &en.taints).is_some() {
                        continue;
                    }
                    let passes = !honor
                        || (class.node_selector.matches_map(labels)
                            && (class.required_affinity.is_empty()
                                || class
                                    .required_affinity
                                    .iter()
                                    .any(|t| t.matches_map(labels))));
                    if val != NO_VALUE && passes && !out.contains(&val) {
                        out.push(val);
                    }
                }
                out
            })
            .collect()
    }

    fn existing_ok(&mut self, c: usize, n: usize, v: &Variant) -> bool {
        let input = self.t.input;
        let Some(ei) = self.nodes[n].existing else {
            return false;
        };
        let en = &input.workload.nodes[ei];
        let class = &input.workload.classes[c];
        if untolerated(&class.tolerations, &en.taints).is_some() {
            return false;
        }
        if !class.node_selector.matches_map(&en.labels) {
            return false;
        }
        if !class.required_affinity.is_empty()
            && !class
                .required_affinity
                .iter()
                .any(|t| t.matches_map(&en.labels))
        {
            return false;
        }
        for &ti in self.t.class_pref_terms[c].iter().take(v.pref_node) {
            if !class.preferred_affinity[ti].1.matches_map(&en.labels) {
                return false;
            }
        }
        if let Some(zs) = &class.volume_zones
            && !en.labels.get(labels::ZONE).is_some_and(|z| zs.contains(z))
        {
            return false;
        }
        let attrs = MapAttrs(&en.labels);
        for &r in &self.t.class_rules[c] {
            let rule = &input.policy.placement[r];
            let m = rule.nodes.eval(&attrs);
            match rule.kind {
                PlacementKind::Require if !m => return false,
                PlacementKind::Deny if m => return false,
                _ => {}
            }
        }
        for &r in self.t.class_prefer[c].iter().take(v.prefer_rules) {
            if !input.policy.placement[r].nodes.eval(&attrs) {
                return false;
            }
        }
        true
    }

    fn min_values_ok(&self, p: usize, cands: &[u32]) -> bool {
        let pool = &self.t.input.policy.pools[p];
        pool.requirements
            .min_values
            .iter()
            .all(|(k, m)| self.distinct_reached(p, cands, k, *m as usize).is_some())
    }

    /// How many of `cands` (from the front) it takes to see `m` distinct
    /// values of label `k`; None if all of them do not. Stops as soon as
    /// the count is reached, which is usually within the first few.
    fn distinct_reached(&self, p: usize, cands: &[u32], k: &str, m: usize) -> Option<usize> {
        if m == 0 {
            return Some(0);
        }
        let cat = self.t.input.catalog;
        let pool = &self.t.input.policy.pools[p];
        let mut seen: Vec<&str> = Vec::with_capacity(m.min(64));
        for (i, o) in cands.iter().enumerate() {
            let off = &cat.offerings[*o as usize];
            if let Some(v) = super::tables::pool_offering_label(cat, pool, off, k)
                && !seen.contains(&v)
            {
                seen.push(v);
                if seen.len() >= m {
                    return Some(i + 1);
                }
            }
        }
        None
    }

    /// Records `k` pods of class `c` on node `n` (counts, anti-affinity marks).
    fn commit(&mut self, c: usize, n: usize, k: u32, v: &Variant) {
        let req = self.reqs[c];
        self.commits.push((n, c, k));
        let node = &mut self.nodes[n];
        for _ in 0..k {
            node.used = add(&node.used, &req);
        }
        match node.pods.last_mut() {
            Some((lc, lk)) if *lc == c => *lk += k,
            _ => node.pods.push((c, k)),
        }
        for hp in &self.t.input.workload.classes[c].host_ports {
            if !node.ports.contains(hp) {
                node.ports.push(hp.clone());
            }
        }
        if !node.placed.contains(&(c, *v)) {
            node.placed.push((c, *v));
        }
        let zone = node.zone;
        let ct = node.ct;
        for &s in &self.topo.classes[c].matched_by {
            if node.sel_count[s] == 0 {
                self.sel_nodes[s].push(n);
            }
            node.sel_count[s] += k;
            self.any_count[s] += k;
            for &g in &self.topo.classes[c].label_keys {
                let val = node.gvals[g as usize];
                if val != NO_VALUE && val != FREE {
                    *self.gcount[g as usize][s].entry(val).or_insert(0) += k;
                }
            }
            if let Some(z) = zone {
                self.zone_count[s][z as usize] += k;
            }
            if let Some(x) = ct {
                self.ct_count[s][ct_idx(x)] += k;
            }
        }
        let tp = &self.topo.classes[c];
        let req_affs = tp.affs.len() - tp.preferred;
        for a in tp.affs.iter().take(req_affs + v.pref_pod) {
            if a.anti {
                match a.key {
                    TKey::Host => {
                        if !node.anti_host.contains(&a.sel) {
                            node.anti_host.push(a.sel);
                        }
                    }
                    TKey::Zone => {
                        if let Some(z) = zone
                            && !self.anti_zone[z as usize].contains(&a.sel)
                        {
                            self.anti_zone[z as usize].push(a.sel);
                        }
                    }
                    TKey::Label(g) => {
                        let val = node.gvals[g as usize];
                        if val != NO_VALUE && val != FREE {
                            let marks = self.anti_g.entry((g, val)).or_default();
                            if !marks.contains(&a.sel) {
                                marks.push(a.sel);
                            }
                        }
                    }
                    TKey::CapacityType => {
                        if let Some(x) = ct
                            && !self.anti_ct[ct_idx(x)].contains(&a.sel)
                        {
                            self.anti_ct[ct_idx(x)].push(a.sel);
                        }
                    }
                }
            }
        }
        self.left[c] -= k;
        self.sync_slack(n, false);
    }

    /// Whether class `c` must start a hostname affinity group under `v`: it
    /// requires pods matching its own labels on its node and none is placed
    /// yet, so every one of its pods must land on the first node it uses.
    fn starts_host_group(&self, c: usize, v: &Variant) -> bool {
        let tp = &self.topo.classes[c];
        let req_affs = tp.affs.len() - tp.preferred;
        self.left[c] > 1
            && tp.affs.iter().take(req_affs + v.pref_pod).any(|a| {
                !a.anti && a.key == TKey::Host && a.self_match && self.any_count[a.sel] == 0
            })
    }

    fn place_class(&mut self, c: usize, v: &Variant) {
        let (bits, zmask, cmask) = self.domains(c, v);
        let gdoms = self.label_domains(c, v);
        let at = Placing {
            c,
            v: *v,
            bits: &bits,
            zmask,
            cmask,
            gdoms: &gdoms,
        };
        if self.starts_host_group(c, v) {
            // One node big enough for the whole class, chosen as usual among
            // the places that can take it all; only when none can, the
            // class is placed as far as it goes.
            self.together = true;
            let before = self.left[c];
            self.place_tiers(&at);
            self.together = false;
            if self.left[c] < before {
                return;
            }
        }
        self.place_tiers(&at);
    }

    /// The three tiers, cheapest first: nodes that exist, nodes already
    /// planned in this solve (in flight), then new nodes.
    fn place_tiers(&mut self, at: &Placing<'_>) {
        self.place_on_existing(at);
        if self.left[at.c] == 0 {
            return;
        }
        self.place_on_planned(at);
        self.place_on_new(at);
    }

    /// Tier 1: existing nodes, in input order (they come first in `nodes`),
    /// each taking as many pods as its free room and topology allow.
    fn place_on_existing(&mut self, at: &Placing<'_>) {
        let c = at.c;
        let req = self.reqs[c];
        for n in 0..self.t.input.workload.nodes.len() {
            if self.left[c] == 0 {
                return;
            }
            if self.nodes[n].existing.is_none() || !self.existing_ok(c, n, &at.v) {
                continue;
            }
            let node = &self.nodes[n];
            let k = self.placeable(at, n, copies_after(&self.act, &req, &node.room, &node.used));
            if k > 0 {
                self.commit(c, n, k, &at.v);
            }
        }
    }

    /// Tier 2: nodes planned earlier in this solve, first fit. Cost-aware,
    /// a node only takes what fits the slack of its current type (growing
    /// it to a larger type is weighed against new nodes in tier 3).
    fn place_on_planned(&mut self, at: &Placing<'_>) {
        if self.strategy != Strategy::CostAware {
            self.fill_first_fit(at);
        } else if let Some(anchors) = self.host_anchors(at.c, &at.v) {
            for i in anchors {
                if self.left[at.c] == 0 {
                    break;
                }
                self.fill_current(at, self.open_nodes[i]);
            }
        } else {
            self.fill_by_domain(at);
        }
    }

    /// Tier 2, cost-aware, for a class not bound to partner nodes.
    ///
    /// Only domains where topology lets a fresh node take a pod can have a
    /// planned node that takes one (a node's own pods only lower its
    /// limit), so the others are not searched. The set changes only when
    /// pods are placed.
    ///
    /// Each open domain keeps its next fitting position (`heads`): filling
    /// a node changes only that node's slack, so only the domain it came
    /// from searches again.
    fn fill_by_domain(&mut self, at: &Placing<'_>) {
        let c = at.c;
        let req = self.reqs[c];
        let mut open = self.open_domains(at);
        let mut heads: Vec<(usize, Option<usize>)> = open
            .iter()
            .map(|&d| (d, self.slack[d].first_fit(0, &req)))
            .collect();
        while self.left[c] > 0 {
            let Some((hi, i)) = heads
                .iter()
                .enumerate()
                .filter_map(|(hi, h)| h.1.map(|i| (hi, i)))
                .min_by_key(|x| x.1)
            else {
                break;
            };
            let before = self.left[c];
            self.fill_current(at, self.open_nodes[i]);
            let d = heads[hi].0;
            heads[hi].1 = self.slack[d].first_fit(i + 1, &req);
            if self.left[c] != before {
                let now = self.open_domains(at);
                if now != open {
                    // Domains closed or opened by topology: drop the
                    // closed ones; the opened ones search from here.
                    heads.retain(|h| now.contains(&h.0));
                    for &d in &now {
                        if !heads.iter().any(|h| h.0 == d) {
                            heads.push((d, self.slack[d].first_fit(i + 1, &req)));
                        }
                    }
                    open = now;
                }
            }
        }
    }

    /// Tier 2, first-fit decreasing: every planned node in creation order,
    /// each as large as its largest remaining candidate allows.
    fn fill_first_fit(&mut self, at: &Placing<'_>) {
        let req = self.reqs[at.c];
        for i in 0..self.open_nodes.len() {
            if self.left[at.c] == 0 {
                break;
            }
            let n = self.open_nodes[i];
            let node = &self.nodes[n];
            let tab = &self.t.pools[node.pool];
            let b = &at.bits[node.pool];
            let k = node
                .cands
                .iter()
                .filter(|o| b.get(**o as usize))
                .map(|o| copies_after(&self.act, &req, &tab.net[*o as usize], &node.used))
                .max()
                .unwrap_or(0);
            self.fill_slack(at, n, k);
        }
    }

    /// Tier 3: new nodes (and, cost-aware, growing recent nodes) until
    /// the class is placed or nothing more can take it.
    fn place_on_new(&mut self, at: &Placing<'_>) {
        while self.left[at.c] > 0 {
            if !self.open_or_grow(at) {
                break;
            }
        }
    }

    /// Tier 2 (cost-aware) at planned node `n`: as many pods as fit in
    /// the slack of its current type, if the class may use that type.
    fn fill_current(&mut self, at: &Placing<'_>, n: usize) {
        let node = &self.nodes[n];
        let Some(&cur) = node.cands.first() else {
            return;
        };
        if !at.bits[node.pool].get(cur as usize) {
            return;
        }
        let tab = &self.t.pools[node.pool];
        let k = copies_after(
            &self.act,
            &self.reqs[at.c],
            &tab.net[cur as usize],
            &node.used,
        );
        self.fill_slack(at, n, k);
    }

    /// Tier 2 at planned node `n`, where `k` pods of the class fit by
    /// resources: as many as topology allows, if any.
    fn fill_slack(&mut self, at: &Placing<'_>, n: usize, k: u32) {
        let k = self.placeable(at, n, k);
        if k > 0 {
            self.grow_admitted(at, n, k);
        }
    }

    /// Of `k` pods of the class that fit node `n` by resources, how many
    /// may go there: bounded by the pods left and by topology, and 0 when a
    /// class that must stay together would not fit whole.
    fn placeable(&self, at: &Placing<'_>, n: usize, k: u32) -> u32 {
        if k == 0 {
            return 0;
        }
        let c = at.c;
        let node = &self.nodes[n];
        let k = k.min(self.left[c]).min(self.topo_limit(
            at,
            Some(n),
            node.zone,
            node.ct,
            Some(&self.node_gvals(n)),
        ));
        if self.together && k < self.left[c] {
            return 0;
        }
        k
    }

    /// When class `c` under `v` may only join pods already on a node (a
    /// required hostname affinity whose group has started), the open
    /// positions of the planned nodes holding such pods, ascending; every
    /// other planned node would get a zero topology limit. None when the
    /// class is not bound that way.
    fn host_anchors(&self, c: usize, v: &Variant) -> Option<Vec<usize>> {
        let tp = &self.topo.classes[c];
        let req_affs = tp.affs.len() - tp.preferred;
        let mut best: Option<&Vec<usize>> = None;
        for a in tp.affs.iter().take(req_affs + v.pref_pod) {
            if a.anti || a.key != TKey::Host || (self.any_count[a.sel] == 0 && a.self_match) {
                continue;
            }
            let list = &self.sel_nodes[a.sel];
            if best.is_none_or(|b| list.len() < b.len()) {
                best = Some(list);
            }
        }
        best.map(|list| {
            let mut pos: Vec<usize> = list
                .iter()
                .map(|&n| self.nodes[n].open_pos)
                .filter(|&p| p != usize::MAX)
                .collect();
            pos.sort_unstable();
            pos.dedup();
            pos
        })
    }

    /// Domains where a new node could take a pod of the class `at` places.
    fn open_domains(&self, at: &Placing<'_>) -> Vec<usize> {
        (0..self.slack.len())
            .filter(|&d| {
                let (zone, ct) = ((d / 2) as u16, dom_ct(d));
                self.topo_limit(at, None, Some(zone), Some(ct), None) > 0
            })
            .collect()
    }

    /// Re-reads planned node `n`'s spare room into the slack index after
    /// its pods or candidate types changed. `moved`: its zone or capacity
    /// type may have changed too, so every domain is rewritten.
    fn sync_slack(&mut self, n: usize, moved: bool) {
        let node = &self.nodes[n];
        let pos = node.open_pos;
        let (Some(zone), Some(ct)) = (node.zone, node.ct) else {
            return;
        };
        if pos == usize::MAX {
            return;
        }
        let slack = node
            .cands
            .first()
            .map(|&cur| sub(&self.t.pools[node.pool].net[cur as usize], &node.used));
        let here = dom(zone, ct);
        if moved {
            for d in 0..self.slack.len() {
                if d != here {
                    self.slack[d].set(pos, None);
                }
            }
        }
        if let Some(idx) = self.slack.get_mut(here) {
            idx.set(pos, slack);
        }
    }

    /// Adds `k` pods of the class to planned node `n`, narrowing its
    /// candidates; false if no candidate (or minValues) would remain.
    fn grow(&mut self, at: &Placing<'_>, n: usize, k: u32) -> bool {
        let (c, v, bits) = (at.c, &at.v, at.bits);
        let req = self.reqs[c];
        let node = &self.nodes[n];
        let p = node.pool;
        let tab = &self.t.pools[p];
        let mut need = node.used;
        for _ in 0..k {
            need = add(&need, &req);
        }
        let old_cur = node.cands.first().copied();
        let limit = tab.limit;
        let used_now = self.pool_used[p];
        let old_cap = old_cur.map_or([0; D], |o| self.type_cap_of(o));
        let min_values = !self.t.input.policy.pools[p]
            .requirements
            .min_values
            .is_empty();
        let known = node.applied.contains(&self.bits_id);
        // Generic keys the class needs that the node has not fixed yet: fixed
        // now to the values topology was checked with (its current type's).
        let fix: Vec<u16> = self.topo.classes[c]
            .label_keys
            .iter()
            .copied()
            .filter(|&g| node.gvals[g as usize] == FREE)
            .collect();
        let target = if fix.is_empty() {
            Vec::new()
        } else {
            self.node_gvals(n)
        };
        if known && !min_values && fix.is_empty() {
            // The class's offerings are already applied: only the cheapest
            // candidates that no longer fit drop off the front.
            let Some(first) = node
                .cands
                .iter()
                .position(|o| fits(&need, &tab.net[*o as usize]))
            else {
                return false;
            };
            let new_cap = self.type_cap_of(node.cands[first]);
            if !fits(&add(&sub(&used_now, &old_cap), &new_cap), &limit) {
                return false;
            }
            if !self.node_admits(n, c, k, &need, node.cands[first]) {
                return false;
            }
            self.pool_used[p] = add(&sub(&used_now, &old_cap), &new_cap);
            self.nodes[n].cands.drain(..first);
            self.commit(c, n, k, v);
            return true;
        }
        let mut cands: Vec<u32> = Vec::with_capacity(node.cands.len());
        cands.extend(node.cands.iter().copied().filter(|o| {
            bits[p].get(*o as usize)
                && fits(&need, &tab.net[*o as usize])
                && self.same_on(p, *o, &target, &fix)
        }));
        let Some(&new_cur) = cands.first() else {
            return false;
        };
        let new_cap = self.type_cap_of(new_cur);
        if !fits(&add(&sub(&used_now, &old_cap), &new_cap), &limit) {
            return false;
        }
        if !self.min_values_ok(p, &cands) {
            return false;
        }
        if !self.node_admits(n, c, k, &need, new_cur) {
            return false;
        }
        self.pool_used[p] = add(&sub(&used_now, &old_cap), &new_cap);
        let node = &mut self.nodes[n];
        node.cands = cands;
        node.applied.push(self.bits_id);
        for &g in &fix {
            node.gvals[g as usize] = target[g as usize];
        }
        self.commit(c, n, k, v);
        true
    }

    /// `grow`, and with a load-dependent script, fewer pods when the
    /// script's `admit` refuses `k` of them (it may cap a node's pods).
    /// Without such a script this is exactly `grow`.
    fn grow_admitted(&mut self, at: &Placing<'_>, n: usize, k: u32) -> bool {
        let scripted = self.t.input.scorer.is_some_and(|s| s.is_load_dependent());
        let mut k = k;
        loop {
            if self.grow(at, n, k) {
                return true;
            }
            if !scripted || k <= 1 || self.together {
                return false;
            }
            k /= 2;
        }
    }

    /// Namespaces and labels of the given pod classes, as a script's node
    /// load lists them (one entry per class).
    fn pods_of(
        &self,
        classes: impl Iterator<Item = usize>,
    ) -> (Vec<&'a str>, Vec<&'a BTreeMap<String, String>>) {
        let all = &self.t.input.workload.classes;
        classes
            .map(|c| (all[c].namespace.as_str(), &all[c].labels))
            .unzip()
    }

    /// Whether a load-dependent script admits planned node `n` as type
    /// offering `o` once it also carries `k` pods of class `c`, requesting
    /// `used` in all (the caller, `grow`, has that sum already). Opening a
    /// node asks the script (`score_new`); this asks again each time the
    /// node takes more pods, so `admit` holds for the node as launched.
    fn node_admits(&self, n: usize, c: usize, k: u32, used: &Rv, o: u32) -> bool {
        use crate::scoring::{NodeLoad, Verdict};
        let Some(sc) = self.t.input.scorer.filter(|s| s.is_load_dependent()) else {
            return true;
        };
        let node = &self.nodes[n];
        let (namespaces, pod_labels) =
            self.pods_of(node.pods.iter().map(|(x, _)| *x).chain(std::iter::once(c)));
        let pods: u32 = node.pods.iter().map(|(_, k)| *k).sum::<u32>() + k;
        let net = self.t.pools[node.pool].net[o as usize];
        let load = NodeLoad::new(
            pods,
            (used[0], used[1]),
            (net[0], net[1]),
            &namespaces,
            &pod_labels,
        );
        !matches!(
            sc.score_node(&self.view(node.pool, o), &load),
            Verdict::Veto(_)
        )
    }

    fn type_cap_of(&self, o: u32) -> Rv {
        let ti = self.t.input.catalog.offerings[o as usize].type_index as usize;
        self.t.type_cap[ti]
    }

    /// One step of tier 3; false when nothing more can be placed.
    ///
    /// The best new node is found first; cost-aware, growing a recent
    /// planned node may still be cheaper per pod, and when no new node can
    /// take the class at all, any planned node that can grow is grown.
    fn open_or_grow(&mut self, at: &Placing<'_>) -> bool {
        let best = self.best_new_node(at);
        if self.strategy == Strategy::CostAware
            && let Some(b) = &best
            && self.grow_instead(at, b)
        {
            return true;
        }
        match best {
            Some(b) => self.open_node(at, b),
            None => self.grow_any(at),
        }
    }

    /// The best new node for the class: across pools (of the first weight
    /// tier that has one) and their domains, the lowest rank per pod.
    fn best_new_node(&self, at: &Placing<'_>) -> Option<NewNode> {
        let nz = self.t.input.catalog.zones.len();
        let mut best: Option<NewNode> = None;
        for p in 0..self.t.pools.len() {
            if at.bits[p].none() {
                continue;
            }
            let tab = &self.t.pools[p];
            let headroom = sub(&tab.limit, &self.pool_used[p]);
            for d in 0..nz * 2 {
                if tab.by_domain[d].is_empty() {
                    continue;
                }
                let lim = self.topo_limit(at, None, Some((d / 2) as u16), Some(dom_ct(d)), None);
                if lim == 0 {
                    continue;
                }
                let kk = self.left[at.c].min(lim);
                if self.strategy == Strategy::FirstFitDecreasing {
                    if let Some(first) = self.first_fit_new(at, p, d, kk, &headroom) {
                        best = Some(first);
                        break;
                    }
                    continue;
                }
                self.cheapest_new(at, p, d, kk, &headroom, &mut best);
            }
            // Pools of equal weight compete on price; a lower weight is only a fallback.
            let next_weight = self.t.input.policy.pools.get(p + 1).map(|x| x.weight);
            if best.is_some() && next_weight != Some(self.t.input.policy.pools[p].weight) {
                break;
            }
        }
        best
    }

    /// First-fit decreasing, Karpenter-style: the first offering of pool
    /// `p` in domain `d` that can take pods, with the node sized up to the
    /// domain's largest type (the cheapest fitting type is chosen at the end).
    fn first_fit_new(
        &self,
        at: &Placing<'_>,
        p: usize,
        d: usize,
        kk: u32,
        headroom: &Rv,
    ) -> Option<NewNode> {
        let req = self.reqs[at.c];
        let r = self.left[at.c];
        let tab = &self.t.pools[p];
        let mut kmax = 0;
        let mut first = None;
        for &o in &tab.by_domain[d] {
            let oi = o as usize;
            let ti = self.t.input.catalog.offerings[oi].type_index as usize;
            if !at.bits[p].get(oi) || !fits(&self.t.type_cap[ti], headroom) {
                continue;
            }
            let k = copies(&req, &tab.net[oi])
                .min(kk)
                .min(self.new_label_limit(at, p, o));
            if k > 0 && first.is_none() && !(self.together && k < r) {
                first = Some(o);
            }
            kmax = kmax.max(k);
        }
        first.map(|o| NewNode {
            score: 0.0,
            k: kmax.min(self.new_label_limit(at, p, o)),
            pool: p,
            offering: o,
        })
    }

    /// Cost-aware: offers pool `p`'s offerings in domain `d` (cheapest
    /// rank first) as a new node taking up to `kk` pods, keeping in `best`
    /// the lowest rank per pod. A load-dependent script scores each node
    /// as it would be opened.
    fn cheapest_new(
        &self,
        at: &Placing<'_>,
        p: usize,
        d: usize,
        kk: u32,
        headroom: &Rv,
        best: &mut Option<NewNode>,
    ) {
        let c = at.c;
        let req = self.reqs[c];
        let r = self.left[c];
        let tab = &self.t.pools[p];
        let node_scorer = self.t.input.scorer.filter(|s| s.is_load_dependent());
        let mut scored = 0;
        for &o in &tab.by_domain[d] {
            let oi = o as usize;
            if !at.bits[p].get(oi) {
                continue;
            }
            let mut rank = tab.rank[oi];
            if let Some(b) = best
                && rank / f64::from(kk) > b.score
                && node_scorer.is_none()
            {
                break;
            }
            let mut k = copies(&req, &tab.net[oi]).min(kk);
            if !self.topo.keys.is_empty() {
                k = k.min(self.new_label_limit(at, p, o));
            }
            if k == 0 || (self.together && k < r) {
                continue;
            }
            let ti = self.t.input.catalog.offerings[oi].type_index as usize;
            if !fits(&self.t.type_cap[ti], headroom) {
                continue;
            }
            if let Some(sc) = node_scorer {
                // A script that reads the pods scores the node as it
                // would be opened; bounded to the cheapest few per
                // domain so a slow script cannot stall the solve.
                scored += 1;
                if scored > NODE_SCORED_PER_DOMAIN {
                    break;
                }
                // `admit` may refuse this many pods but take fewer
                // (a cap on pods per node, say): halve until it
                // admits some.
                let adj = loop {
                    match self.score_new(sc, p, c, k, o) {
                        Some(a) => break Some(a),
                        None if k > 1 && !self.together => k /= 2,
                        None => break None,
                    }
                };
                match adj {
                    Some(a) => rank += a,
                    None => continue,
                }
            }
            let score = rank / f64::from(k);
            let better = match best {
                None => true,
                Some(b) => {
                    score < b.score - 1e-12
                        || (score <= b.score + 1e-12
                            && (k > b.k || (k == b.k && self.openness[p] > self.openness[b.pool])))
                }
            };
            if better {
                *best = Some(NewNode {
                    score,
                    k,
                    pool: p,
                    offering: o,
                });
            }
        }
    }

    /// The generic-key limit (`label_limit`) of a new node of pool `p`
    /// launched from offering `o`; unbounded without generic keys.
    fn new_label_limit(&self, at: &Placing<'_>, p: usize, o: u32) -> u32 {
        if self.topo.keys.is_empty() {
            return u32::MAX;
        }
        self.label_limit(at, &self.offering_gvals(p, o))
    }

    /// Grows a recent planned node instead of opening `new` when that is
    /// cheaper per pod. Every pool of the new node's weight tier is looked
    /// at (pools of equal weight compete on price), not only its pool.
    fn grow_instead(&mut self, at: &Placing<'_>, new: &NewNode) -> bool {
        let pools = &self.t.input.policy.pools;
        let tier = pools[new.pool].weight;
        let growth = (0..self.t.pools.len())
            .filter(|&p| pools[p].weight == tier && !at.bits[p].none())
            .filter_map(|p| self.best_growth(at, p, new.score, 8))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        match growth {
            Some((_, n, k)) => self.grow_admitted(at, n, k),
            None => false,
        }
    }

    /// No new node can take the class: grows any planned node that can.
    fn grow_any(&mut self, at: &Placing<'_>) -> bool {
        for p in 0..self.t.pools.len() {
            if let Some((_, n, k)) = self.best_growth(at, p, f64::INFINITY, usize::MAX)
                && self.grow_admitted(at, n, k)
            {
                return true;
            }
        }
        false
    }

    /// Opens the new node `new` with as many pods as it takes, halving the
    /// count while no candidate fits (or minValues cannot be met); false
    /// when not even one pod can go there.
    fn open_node(&mut self, at: &Placing<'_>, new: NewNode) -> bool {
        let NewNode {
            mut k,
            pool: p,
            offering: o,
            ..
        } = new;
        let off = &self.t.input.catalog.offerings[o as usize];
        let (zone, ct) = (off.zone_index, off.capacity_type);
        let d = dom(zone, ct);
        let want = self.offering_gvals(p, o);
        let fix = &self.topo.classes[at.c].label_keys;
        let gvals: Vec<u32> = (0..want.len())
            .map(|g| {
                if fix.contains(&(g as u16)) {
                    want[g]
                } else {
                    FREE
                }
            })
            .collect();
        loop {
            let mut cands = self.new_node_candidates(at, p, d, k);
            if !fix.is_empty() {
                // Every candidate keeps the values the class needs, so its
                // domains hold whatever type the node grows or falls back to.
                cands.retain(|x| self.same_on(p, *x, &want, fix));
                let mut need = [0; D];
                for _ in 0..k {
                    need = add(&need, &self.reqs[at.c]);
                }
                let tab = &self.t.pools[p];
                let first = cands
                    .iter()
                    .position(|x| fits(&need, &tab.net[*x as usize]))
                    .unwrap_or(cands.len());
                cands.drain(..first);
            }
            if !cands.is_empty() && self.min_values_ok(p, &cands) {
                let nsel = self.topo.sels.len();
                let cap = self.type_cap_of(cands[0]);
                self.pool_used[p] = add(&self.pool_used[p], &cap);
                self.nodes.push(Node {
                    existing: None,
                    pool: p,
                    zone: Some(zone),
                    ct: Some(ct),
                    cands,
                    applied: vec![self.bits_id],
                    used: [0; D],
                    room: [0; D],
                    sel_count: vec![0; nsel],
                    anti_host: Vec::new(),
                    ports: Vec::new(),
                    pods: Vec::new(),
                    open_pos: self.open_nodes.len(),
                    placed: Vec::new(),
                    gvals: gvals.clone(),
                });
                let n = self.nodes.len() - 1;
                self.new_nodes.push(n);
                self.open_nodes.push(n);
                self.commit(at.c, n, k, &at.v);
                return true;
            }
            if k <= 1 || self.together {
                return false;
            }
            k /= 2;
        }
    }

    /// The candidate offerings of a new node of pool `p` in domain `d`
    /// carrying `k` pods of the class, cheapest first (see `Node::cands`).
    fn new_node_candidates(&self, at: &Placing<'_>, p: usize, d: usize, k: u32) -> Vec<u32> {
        let req = self.reqs[at.c];
        let bits = &at.bits[p];
        let mut need = [0; D];
        for _ in 0..k {
            need = add(&need, &req);
        }
        let tab = &self.t.pools[p];
        let list = &tab.by_domain[d];
        if self.t.input.policy.pools[p]
            .requirements
            .min_values
            .is_empty()
        {
            // Only the first candidate must fit now (see `Node::cands`).
            let first = list
                .iter()
                .position(|x| bits.get(*x as usize) && fits(&need, &tab.net[*x as usize]))
                .unwrap_or(list.len());
            // Sized up front: growing by doubling was a visible cost.
            let mut v = Vec::with_capacity(list.len() - first);
            v.extend(
                list[first..]
                    .iter()
                    .copied()
                    .filter(|x| bits.get(*x as usize)),
            );
            v
        } else {
            let mut v = Vec::with_capacity(list.len());
            v.extend(
                list.iter()
                    .copied()
                    .filter(|x| bits.get(*x as usize) && fits(&need, &tab.net[*x as usize])),
            );
            v
        }
    }

    /// The planned node (of pool `p`, among the `recent` most recent) whose
    /// upgrade costs least per pod, if cheaper than `new_score` per pod,
    /// with that marginal cost per pod.
    fn best_growth(
        &self,
        at: &Placing<'_>,
        p: usize,
        new_score: f64,
        recent: usize,
    ) -> Option<(f64, usize, u32)> {
        let c = at.c;
        let req = self.reqs[c];
        let tab = &self.t.pools[p];
        let mut best: Option<(f64, usize, u32)> = None;
        // Most recent first; a class tied to its partners' nodes looks at those only.
        let first = self.new_nodes.len().saturating_sub(recent);
        let anchors = self.host_anchors(c, &at.v);
        let candidates: Box<dyn Iterator<Item = usize>> = match &anchors {
            Some(pos) => Box::new(
                pos.iter()
                    .rev()
                    .filter(move |&&i| i >= first)
                    .map(|&i| self.open_nodes[i]),
            ),
            None => Box::new(self.new_nodes[first..].iter().rev().copied()),
        };
        for n in candidates {
            let node = &self.nodes[n];
            if node.pool != p {
                continue;
            }
            let Some(&cur) = node.cands.first() else {
                continue;
            };
            let lim = self.topo_limit(at, Some(n), node.zone, node.ct, Some(&self.node_gvals(n)));
            if lim == 0 {
                continue;
            }
            let kk = lim.min(self.left[c]);
            let base = tab.rank[cur as usize];
            for &o in &node.cands {
                // Candidates are cheapest first: once even `kk` pods could
                // not bring the marginal cost under the bar, none later can.
                let bar = best.map_or(new_score, |(bm, _, _)| bm.min(new_score));
                if (tab.rank[o as usize] - base) / f64::from(kk) > bar + 1e-12 {
                    break;
                }
                if !at.bits[p].get(o as usize) {
                    continue;
                }
                let k = copies_after(&self.act, &req, &tab.net[o as usize], &node.used).min(kk);
                if k == 0 || (self.together && k < self.left[c]) {
                    continue;
                }
                let marginal = (tab.rank[o as usize] - tab.rank[cur as usize]) / f64::from(k);
                if marginal <= new_score + 1e-12 && best.is_none_or(|(bm, _, _)| marginal < bm) {
                    best = Some((marginal, n, k));
                }
                break;
            }
            // Candidates are cheapest first, so no marginal is below zero:
            // a free fit (the node's current type has room) cannot be
            // beaten, and the first one found wins ties anyway.
            if best.is_some_and(|(bm, _, _)| bm <= 0.0) {
                break;
            }
        }
        best
    }

    fn finish(mut self) -> Plan {
        let mut plan = self.build(true);
        plan.notes.extend(self.notes);
        plan
    }

    /// The plan as packed so far; `reasons` = explain unplaced pods (slow,
    /// so trial plans built for validation leave it out).
    fn build(&mut self, reasons: bool) -> Plan {
        let input = self.t.input;
        let cat = input.catalog;
        let classes = &input.workload.classes;
        // A class's pods are named in the order the packer placed them,
        // which is the order kube-scheduler binds them in. Pods a later
        // move (consolidation) put elsewhere are named after, by node.
        let emitted =
            |n: &Node| !n.pods.is_empty() && (n.existing.is_some() || !n.cands.is_empty());
        let mut held: HashMap<(usize, usize), u32> = HashMap::new();
        for (ni, node) in self.nodes.iter().enumerate() {
            if emitted(node) {
                for &(c, k) in &node.pods {
                    *held.entry((ni, c)).or_insert(0) += k;
                }
            }
        }
        let mut next: Vec<usize> = vec![0; classes.len()];
        let mut queue: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
        for &(ni, c, k) in &self.commits {
            let Some(h) = held.get_mut(&(ni, c)) else {
                continue;
            };
            let k = k.min(*h);
            *h -= k;
            let q = queue.entry((ni, c)).or_default();
            q.extend(next[c]..next[c] + k as usize);
            next[c] += k as usize;
        }
        for (ni, node) in self.nodes.iter().enumerate() {
            if emitted(node) {
                for &(c, _) in &node.pods {
                    if let Some(h) = held.get_mut(&(ni, c)) {
                        let q = queue.entry((ni, c)).or_default();
                        q.extend(next[c]..next[c] + *h as usize);
                        next[c] += *h as usize;
                        *h = 0;
                    }
                }
            }
        }
        for q in queue.values_mut() {
            q.reverse();
        }
        let mut names_at = |ni: usize, c: usize, k: u32| -> Vec<String> {
            let q = queue.entry((ni, c)).or_default();
            (0..k)
                .filter_map(|_| q.pop())
                .map(|i| classes[c].pod_key(i))
                .collect()
        };
        let mut take = |c: usize, k: u32| -> Vec<String> {
            let s = next[c];
            next[c] += k as usize;
            (s..s + k as usize).map(|i| classes[c].pod_key(i)).collect()
        };
        let mut plan = Plan::default();
        let mut per_pool: BTreeMap<usize, usize> = BTreeMap::new();
        // One shared name per instance type, made on first use.
        let mut names: Vec<Option<std::sync::Arc<str>>> = vec![None; cat.types.len()];
        let mut name_of = |ti: usize| -> std::sync::Arc<str> {
            names[ti]
                .get_or_insert_with(|| cat.types[ti].name.as_str().into())
                .clone()
        };
        // One label set per (pool, offering), cloned for each node of it:
        // plans have far fewer distinct offerings than nodes.
        let mut labels_of: HashMap<(usize, u32), BTreeMap<String, String>> = HashMap::new();
        for (ni, node) in self.nodes.iter().enumerate() {
            if let Some(ei) = node.existing {
                if node.pods.is_empty() {
                    continue;
                }
                let mut pods = Vec::new();
                for &(c, k) in &node.pods {
                    pods.extend(names_at(ni, c, k));
                }
                plan.existing.push(ExistingPlacement {
                    node: input.workload.nodes[ei].name.clone(),
                    pods,
                });
                continue;
            }
            let p = node.pool;
            let pool = &input.policy.pools[p];
            let tab = &self.t.pools[p];
            let Some(&first) = node.cands.first() else {
                continue;
            };
            let first_cap = self.t.type_cap[cat.offerings[first as usize].type_index as usize];
            let headroom = add(&sub(&tab.limit, &self.pool_used[p]), &first_cap);
            // Without a load-dependent scorer or minValues, only the first
            // MAX_OPTIONS are kept, so the scan stops there.
            let node_scorer = input.scorer.filter(|s| s.is_load_dependent());
            let enough = if node_scorer.is_none() && pool.requirements.min_values.is_empty() {
                MAX_OPTIONS
            } else {
                usize::MAX
            };
            // Without limits every headroom is unbounded; the check is skipped.
            let limited = tab.limit.iter().any(|l| *l != i64::MAX);
            let act = &self.act;
            let mut ordered: Vec<u32> = node
                .cands
                .iter()
                .copied()
                .filter(|o| {
                    let ti = cat.offerings[*o as usize].type_index as usize;
                    *o == first
                        || (fits_on(act, &node.used, &tab.net[*o as usize])
                            && (!limited || fits(&self.t.type_cap[ti], &headroom)))
                })
                .take(enough)
                .collect();
            if let Some(scorer) = node_scorer {
                ordered = self.rescore(scorer, p, node, ordered);
            }
            let ordered = self.cap_options(p, ordered);
            let cur = ordered.first().copied().unwrap_or(first);
            let off = &cat.offerings[cur as usize];
            let ty = &cat.types[off.type_index as usize];
            let options: Vec<InstanceOption> = ordered
                .iter()
                .map(|o| InstanceOption {
                    instance_type: name_of(cat.offerings[*o as usize].type_index as usize),
                    price_per_hour: tab.price[*o as usize],
                })
                .collect();
            let mut pods = Vec::new();
            for &(c, k) in &node.pods {
                pods.extend(names_at(ni, c, k));
            }
            let seq = per_pool.entry(p).or_insert(0);
            *seq += 1;
            let zone = cat
                .zones
                .get(off.zone_index as usize)
                .map(|z| z.name.clone())
                .unwrap_or_default();
            // Every label the node will carry: the offering's well-known
            // labels (the values requirements were matched against), the
            // pool's own, and the claim label naming the node itself (as the
            // controller writes it; `planned_node_labels`, with the rest cached).
            let name = format!("{}-{}", pool.name, seq);
            let mut lbl = labels_of
                .entry((p, cur))
                .or_insert_with(|| node_labels(cat, pool, off))
                .clone();
            lbl.insert(CLAIM_LABEL.to_string(), name.clone());
            let requested = add(&node.used, &tab.ds[cur as usize]);
            let alloc = add(&tab.net[cur as usize], &tab.ds[cur as usize]);
            plan.nodes.push(PlannedNode {
                name,
                pool: pool.name.clone(),
                node_class: pool.node_class.clone(),
                zone,
                capacity_type: off.capacity_type,
                instance_type: ty.name.clone(),
                price_per_hour: tab.price[cur as usize],
                instance_type_options: options,
                pods,
                requested: self.t.dims.resources(&requested),
                allocatable: self.t.dims.resources(&alloc),
                labels: lbl,
                taints: pool.taints.clone(),
                startup_taints: pool.startup_taints.clone(),
            });
        }
        for (c, class) in classes.iter().enumerate() {
            if self.left[c] == 0 {
                continue;
            }
            let rest = take(c, self.left[c]);
            let mut why = Vec::new();
            if reasons {
                why = self.limit_reasons(c);
                why.extend(super::explain::reasons_with(&mut *self.t, c));
            }
            for pod in rest {
                plan.unschedulable.push(Unschedulable {
                    pod,
                    reasons: why.clone(),
                });
            }
            let _ = class;
        }
        // Folded from +0.0: an empty f64 `sum()` is -0.0, which prints as `$-0.0000`.
        plan.total_price_per_hour = plan.nodes.iter().fold(0.0, |t, n| t + n.price_per_hour);
        if cat.offerings.iter().any(|o| o.price_estimated)
            && plan
                .nodes
                .iter()
                .any(|n| n.capacity_type == CapacityType::Spot)
        {
            plan.notes.push("spot prices are estimates".to_string());
        }
        plan
    }
}

/// At most this many instance-type options per planned node (Karpenter's
/// `MaxInstanceTypes`): enough for the launcher to fall back, small enough
/// that a plan of many nodes stays readable and a fleet request stays small.
pub const MAX_OPTIONS: usize = 60;

/// With a load-dependent scoring script, how many offerings per (zone,
/// capacity type) are scored for each new node (the cheapest by rank).
pub const NODE_SCORED_PER_DOMAIN: usize = 16;

impl Packer<'_, '_> {
    /// Keeps the `MAX_OPTIONS` best options of a node of pool `p`, and more
    /// only while the pool's minValues are not yet met.
    fn cap_options(&self, p: usize, mut ordered: Vec<u32>) -> Vec<u32> {
        // The shortest prefix of at least MAX_OPTIONS that keeps every
        // minValues; all of them when none does.
        let mut n = MAX_OPTIONS.min(ordered.len());
        for (k, m) in &self.t.input.policy.pools[p].requirements.min_values {
            let need = self
                .distinct_reached(p, &ordered, k, *m as usize)
                .unwrap_or(ordered.len());
            n = n.max(need);
        }
        ordered.truncate(n);
        ordered
    }

    /// For an unplaced class: each pool whose remaining limits leave room for
    /// no type that could carry one of its pods, with the limits reached
    /// ("pool X: limits reached: cpu 98 of 100 planned"), so a limit is named
    /// plainly rather than hidden among static reasons.
    fn limit_reasons(&mut self, c: usize) -> Vec<String> {
        let req = self.reqs[c];
        let v = self.variants(c).pop().unwrap_or(Variant {
            pref_node: 0,
            prefer_rules: 0,
            pref_pod: 0,
            soft_spread: false,
        });
        let cat = self.t.input.catalog;
        let mut out = Vec::new();
        for p in 0..self.t.pools.len() {
            let tab = &self.t.pools[p];
            if tab.limit.iter().all(|l| *l == i64::MAX) {
                continue;
            }
            let headroom = sub(&tab.limit, &self.pool_used[p]);
            let bits = self.t.class_bits(p, c, &v);
            let tab = &self.t.pools[p];
            let mut fits_pod = false;
            let mut under_limit = false;
            for list in tab.by_domain.iter() {
                for &o in list {
                    let oi = o as usize;
                    if !bits.get(oi) || copies(&req, &tab.net[oi]) == 0 {
                        continue;
                    }
                    fits_pod = true;
                    let ti = cat.offerings[oi].type_index as usize;
                    if fits(&self.t.type_cap[ti], &headroom) {
                        under_limit = true;
                        break;
                    }
                }
                if under_limit {
                    break;
                }
            }
            if !fits_pod || under_limit {
                continue;
            }
            let reached: Vec<String> = (0..D)
                .filter(|&d| tab.limit[d] != i64::MAX)
                .map(|d| {
                    let name = self.t.dims.names.get(d).map_or("?", |s| s.as_str());
                    format!(
                        "{name} {} of {}",
                        crate::ir::resources::format_amount(name, self.pool_used[p][d]),
                        crate::ir::resources::format_amount(name, tab.limit[d])
                    )
                })
                .collect();
            out.push(format!(
                "pool {}: limit reached: {} already planned; no type that fits the pod fits in what is left",
                self.t.input.policy.pools[p].name,
                reached.join(", ")
            ));
        }
        out
    }

    /// Offering `o` of pool `p` as a scorer sees it.
    fn view(&self, p: usize, o: u32) -> crate::scoring::OfferingView<'_> {
        let input = self.t.input;
        let cat = input.catalog;
        let off = &cat.offerings[o as usize];
        crate::scoring::OfferingView {
            pool: &input.policy.pools[p].name,
            instance_type: &cat.types[off.type_index as usize],
            zone: cat
                .zones
                .get(off.zone_index as usize)
                .map(|z| z.name.as_str())
                .unwrap_or(""),
            capacity_type: off.capacity_type,
            price: self.t.pools[p].price[o as usize],
        }
    }

    /// The load-dependent score of a new node of offering `o` in pool `p`
    /// carrying `k` pods of class `c`; None when vetoed.
    fn score_new(
        &self,
        scorer: &dyn crate::scoring::Scorer,
        p: usize,
        c: usize,
        k: u32,
        o: u32,
    ) -> Option<f64> {
        use crate::scoring::{NodeLoad, Verdict};
        let input = self.t.input;
        let tab = &self.t.pools[p];
        let class = &input.workload.classes[c];
        let req = self.reqs[c];
        let net = tab.net[o as usize];
        let ns = [class.namespace.as_str()];
        let lbl = [&class.labels];
        let load = NodeLoad::new(
            k,
            (req[0] * i64::from(k), req[1] * i64::from(k)),
            (net[0], net[1]),
            &ns,
            &lbl,
        );
        let view = self.view(p, o);
        match scorer.score_node(&view, &load) {
            // The offering-only part is already in `rank`.
            Verdict::Adjust(a) if a.is_finite() => {
                let base = match scorer.score_offering(&view) {
                    Verdict::Adjust(b) if b.is_finite() => b,
                    _ => 0.0,
                };
                Some(a - base)
            }
            Verdict::Adjust(_) => Some(0.0),
            Verdict::Veto(_) => None,
        }
    }

    /// Re-ranks a node's options by price plus the load-dependent score;
    /// vetoed options are dropped (all of them vetoed: the order is kept).
    fn rescore(
        &self,
        scorer: &dyn crate::scoring::Scorer,
        p: usize,
        node: &Node,
        ordered: Vec<u32>,
    ) -> Vec<u32> {
        use crate::scoring::{NodeLoad, Verdict};
        let tab = &self.t.pools[p];
        let (namespaces, pod_labels) = self.pods_of(node.pods.iter().map(|(c, _)| *c));
        let pods: u32 = node.pods.iter().map(|(_, k)| *k).sum();
        let mut scored: Vec<(f64, u32)> = Vec::new();
        for &o in &ordered {
            let net = tab.net[o as usize];
            let load = NodeLoad::new(
                pods,
                (node.used[0], node.used[1]),
                (net[0], net[1]),
                &namespaces,
                &pod_labels,
            );
            let view = self.view(p, o);
            match scorer.score_node(&view, &load) {
                Verdict::Adjust(a) if a.is_finite() => scored.push((tab.price[o as usize] + a, o)),
                Verdict::Adjust(_) => scored.push((tab.price[o as usize], o)),
                Verdict::Veto(_) => {}
            }
        }
        if scored.is_empty() {
            return ordered;
        }
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        scored.into_iter().map(|(_, o)| o).collect()
    }
}

fn describe_relaxation(from: &Variant, to: &Variant) -> String {
    let mut parts = Vec::new();
    if to.pref_node < from.pref_node {
        parts.push(format!(
            "dropped {} preferred node-affinity term(s)",
            from.pref_node - to.pref_node
        ));
    }
    if to.prefer_rules < from.prefer_rules {
        parts.push(format!(
            "dropped {} prefer rule(s)",
            from.prefer_rules - to.prefer_rules
        ));
    }
    if to.pref_pod < from.pref_pod {
        parts.push(format!(
            "dropped {} preferred pod-affinity term(s)",
            from.pref_pod - to.pref_pod
        ));
    }
    if from.soft_spread && !to.soft_spread {
        parts.push("ignored ScheduleAnyway topology spreads".to_string());
    }
    parts.join(", ")
}
