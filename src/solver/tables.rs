//! The catalog as one solve sees it: per pool, which offerings are usable, at
//! what price (after cost rules and offering scores), with how much room for
//! pods (allocatable minus DaemonSet overhead); and per pod class, which
//! offerings it may land on, as bitsets so filtering is AND of words.

// Index loops over fixed-size resource vectors and parallel per-pool arrays read
// more plainly than zipped iterators here.
#![allow(
    clippy::needless_range_loop,
    reason = "index loops over fixed-size resource vectors and parallel per-pool arrays read more plainly"
)]

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use crate::catalog::{Bits, CapacityType, Catalog, Offering};
use crate::ir::KubeletConfig;
use crate::ir::cost::{PriceInput, PriceOutcome, effective_price};
use crate::ir::{
    Attrs, Cond, PlacementKind, Pool, Requirements, Resources, Subject, ValueSet, labels,
};
use crate::scoring::{OfferingView, Verdict};
use crate::workload::{DaemonSetOverhead, PodClass, Toleration, port_conflict, untolerated};

use super::SolveInput;
use super::capacity::allocatable;

/// Resource dimensions the solver tracks: cpu, memory, ephemeral-storage,
/// pods, then up to `D - 4` extended resources that some pod requests.
pub const D: usize = 12;

/// A resource vector over the solve's dimensions.
pub type Rv = [i64; D];

/// Maps Kubernetes resource names to vector dimensions.
#[derive(Debug, Clone)]
pub struct Dims {
    pub names: Vec<String>,
    /// Extended resources that did not fit in `D` (reported as a note).
    pub overflow: Vec<String>,
}

impl Dims {
    fn new(input: &SolveInput<'_>) -> Dims {
        let mut names: Vec<String> = ["cpu", "memory", "ephemeral-storage", "pods"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut overflow = Vec::new();
        let mut ext: Vec<&String> = input
            .workload
            .classes
            .iter()
            .flat_map(|c| c.requests.extended.keys())
            .chain(
                input
                    .workload
                    .daemonsets
                    .iter()
                    .flat_map(|d| d.requests.extended.keys()),
            )
            .collect();
        ext.sort();
        ext.dedup();
        for e in ext {
            if names.len() < D {
                names.push(e.clone());
            } else {
                overflow.push(e.clone());
            }
        }
        Dims { names, overflow }
    }

    /// The vector form of `r` (dimensions not tracked are dropped).
    pub fn rv(&self, r: &Resources) -> Rv {
        let mut v = [0i64; D];
        v[0] = r.cpu_milli;
        v[1] = r.memory;
        v[2] = r.ephemeral_storage;
        v[3] = r.pods;
        for (i, n) in self.names.iter().enumerate().skip(4) {
            v[i] = r.extended.get(n).copied().unwrap_or(0);
        }
        v
    }

    /// Back to `Resources`.
    pub fn resources(&self, v: &Rv) -> Resources {
        let mut r = Resources {
            cpu_milli: v[0],
            memory: v[1],
            ephemeral_storage: v[2],
            pods: v[3],
            extended: BTreeMap::new(),
        };
        for (i, n) in self.names.iter().enumerate().skip(4) {
            if v[i] != 0 {
                r.extended.insert(n.clone(), v[i]);
            }
        }
        r
    }
}

/// `a + b`.
#[inline]
pub fn add(a: &Rv, b: &Rv) -> Rv {
    let mut o = *a;
    for i in 0..D {
        o[i] = o[i].saturating_add(b[i]);
    }
    o
}

/// `a - b`.
#[inline]
pub fn sub(a: &Rv, b: &Rv) -> Rv {
    let mut o = *a;
    for i in 0..D {
        o[i] = o[i].saturating_sub(b[i]);
    }
    o
}

/// Whether `need` fits in `room`, dimension by dimension.
#[inline]
pub fn fits(need: &Rv, room: &Rv) -> bool {
    // No early exit: the straight loop compiles to a few vector compares,
    // cheaper than a branch per dimension on the packer's hottest paths.
    let mut ok = true;
    for i in 0..D {
        ok &= need[i] <= room[i];
    }
    ok
}

/// How many copies of `req` fit in `room` (u32::MAX when `req` is all zero).
#[inline]
pub fn copies(req: &Rv, room: &Rv) -> u32 {
    // Requests are never negative, so a room already over in any dimension
    // takes nothing more, whether or not the pod uses that dimension.
    let mut over = false;
    for r in room {
        over |= *r < 0;
    }
    if over {
        return 0;
    }
    let mut k = u32::MAX as i64;
    for i in 0..D {
        if req[i] > 0 {
            k = k.min(room[i] / req[i]);
        }
    }
    k as u32
}

/// `copies(req, &sub(cap, used))`, looking only at the dimensions in
/// `act`: the packer asks this of every node it considers, and a workload
/// uses three or four of the twelve dimensions. The caller guarantees that
/// outside `act`, `req` is zero and `cap >= used` (see `active_dims`).
#[inline]
pub fn copies_after(act: &[usize], req: &Rv, cap: &Rv, used: &Rv) -> u32 {
    for &i in act {
        if cap[i] < used[i] {
            return 0;
        }
    }
    let mut k = u32::MAX as i64;
    for &i in act {
        if req[i] > 0 {
            k = k.min(cap[i].saturating_sub(used[i]) / req[i]);
        }
    }
    k as u32
}

/// `fits(need, room)` over the dimensions in `act`, under the same
/// guarantee as `copies_after` (outside `act`, need is zero and room is not
/// negative).
#[inline]
pub fn fits_on(act: &[usize], need: &Rv, room: &Rv) -> bool {
    act.iter().all(|&i| need[i] <= room[i])
}

/// The dimensions `copies_after` must look at: those any request uses, and
/// those where some capacity is negative (an existing node already over,
/// or overhead above allocatable). Everywhere else requests are zero and
/// nothing is over, so `copies` would not look there either.
pub fn active_dims<'r>(
    reqs: impl IntoIterator<Item = &'r Rv>,
    caps: impl IntoIterator<Item = &'r Rv>,
) -> Vec<usize> {
    let mut on = [false; D];
    for r in reqs {
        for i in 0..D {
            on[i] |= r[i] != 0;
        }
    }
    for c in caps {
        for i in 0..D {
            on[i] |= c[i] < 0;
        }
    }
    (0..D).filter(|i| on[*i]).collect()
}

/// Why an offering is not usable in a pool (for explain).
#[derive(Debug, Clone, PartialEq)]
pub enum OfferingReject {
    Requirement { key: String, want: String },
    Unavailable(String),
    NotAvailable,
    Unpriced,
    Ceiling(String),
    Veto(String),
    Overhead(String),
}

impl std::fmt::Display for OfferingReject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OfferingReject::Requirement { key, want } => {
                write!(f, "pool requires {key} {want}")
            }
            OfferingReject::Unavailable(r) => write!(f, "recently unavailable ({r})"),
            OfferingReject::NotAvailable => write!(f, "not offered"),
            OfferingReject::Unpriced => write!(f, "no price known and no cost rule sets one"),
            OfferingReject::Ceiling(r) => write!(f, "cost rule: {r}"),
            OfferingReject::Veto(r) => write!(f, "score script vetoed: {r}"),
            OfferingReject::Overhead(r) => write!(f, "DaemonSet overhead exceeds allocatable {r}"),
        }
    }
}

/// A pool compiled against the catalog.
///
/// The per-offering arrays are shared (`Arc`) between pools whose values
/// agree: a policy of a thousand pools over a catalog of ten thousand
/// offerings would otherwise hold a thousand copies of the same megabytes.
/// What a pool owns is its `usable` bitset and a few small fields; see
/// `compile_pools` for what each array is shared by.
pub struct PoolTab {
    /// Offerings usable in this pool.
    pub usable: Bits,
    /// Effective price after cost rules (meaningful where `usable`).
    pub price: Arc<[f64]>,
    /// Price plus the offering score: what the solver ranks by (meaningful where `usable`).
    pub rank: Arc<[f64]>,
    /// Allocatable minus DaemonSet overhead, per offering.
    pub net: Arc<[Rv]>,
    /// DaemonSet overhead per offering (for the plan's `requested`).
    pub ds: Arc<[Rv]>,
    /// Usable offerings per (zone, capacity type), sorted by rank then type index.
    pub by_domain: Arc<[Vec<u32>]>,
    /// Resource limits (i64::MAX where unlimited), against type capacity.
    pub limit: Rv,
    /// Custom (non well-known) label values the pool's nodes carry.
    pub custom: BTreeMap<String, ValueSet>,
    /// The pool's kubelet settings (node class overridden by pool).
    kubelet: KubeletConfig,
    /// Allocatable per type index under `kubelet` (kept for `offering_reject`).
    alloc: Arc<[Rv]>,
}

/// Domain index of (zone, capacity type).
#[inline]
pub fn dom(zone: u16, ct: CapacityType) -> usize {
    zone as usize * 2 + usize::from(ct == CapacityType::Spot)
}

/// Capacity type of a domain index.
#[inline]
pub fn dom_ct(d: usize) -> CapacityType {
    if d % 2 == 1 {
        CapacityType::Spot
    } else {
        CapacityType::OnDemand
    }
}

/// A class's variant: which preferences are still enforced as requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Variant {
    /// Preferred node-affinity terms kept (the heaviest `n`).
    pub pref_node: usize,
    /// Prefer placement rules kept (the heaviest `n` of those matching the class).
    pub prefer_rules: usize,
    /// Preferred pod (anti-)affinity terms kept.
    pub pref_pod: usize,
    /// ScheduleAnyway spreads still enforced.
    pub soft_spread: bool,
}

/// The compiled view of one solve.
pub struct Tables<'a> {
    pub input: &'a SolveInput<'a>,
    pub dims: Dims,
    pub pools: Vec<PoolTab>,
    /// Type capacity vectors (for limits), per type index.
    pub type_cap: Vec<Rv>,
    key_cache: HashMap<(usize, String, ValueSet), Bits>,
    rule_cache: HashMap<(usize, usize, usize), Bits>,
    /// For each class, the Prefer rules matching it, heaviest first (rule index, weight).
    pub class_prefer: Vec<Vec<usize>>,
    /// Placement Require/Deny rules matching each class.
    pub class_rules: Vec<Vec<usize>>,
    /// Per class: preferred node-affinity terms, heaviest first.
    pub class_pref_terms: Vec<Vec<usize>>,
    /// On-demand price per (type, zone), for explaining rejected offerings.
    od: HashMap<(u32, u16), f64>,
}

/// Node-side attributes of an offering in a pool (with the pool's labels), plus a pod class.
pub struct OfferAttrs<'a> {
    pub catalog: &'a Catalog,
    pub pool: &'a Pool,
    pub offering: &'a Offering,
    pub price: Option<f64>,
    pub class: Option<&'a PodClass>,
}

impl Attrs for OfferAttrs<'_> {
    fn get(&self, s: &Subject) -> Option<Cow<'_, str>> {
        match s {
            Subject::NodeLabel(k) => {
                pool_offering_label(self.catalog, self.pool, self.offering, k).map(Cow::Borrowed)
            }
            Subject::NodePrice => self.price.map(|p| Cow::Owned(p.to_string())),
            other => self.class.and_then(|c| class_attr(c, other)),
        }
    }
}

/// A pod class's value for a pod-side subject.
pub fn class_attr<'a>(c: &'a PodClass, s: &Subject) -> Option<Cow<'a, str>> {
    match s {
        Subject::PodNamespace => Some(Cow::Borrowed(&c.namespace)),
        Subject::PodName => c.pod_names.first().map(|n| Cow::Borrowed(n.as_str())),
        Subject::PodLabel(k) => c.labels.get(k).map(|v| Cow::Borrowed(v.as_str())),
        Subject::PodPriorityClass => c.priority_class.as_deref().map(Cow::Borrowed),
        Subject::PodPriority => Some(Cow::Owned(c.priority.to_string())),
        Subject::PodOwnerKind => c.owner.as_ref().map(|o| Cow::Borrowed(o.kind.as_str())),
        Subject::PodOwnerName => c.owner.as_ref().map(|o| Cow::Borrowed(o.name.as_str())),
        Subject::NodeLabel(_) | Subject::NodePrice => None,
    }
}

/// Pod-only attributes of a class.
pub struct ClassAttrs<'a>(pub &'a PodClass);

impl Attrs for ClassAttrs<'_> {
    fn get(&self, s: &Subject) -> Option<Cow<'_, str>> {
        class_attr(self.0, s)
    }
}

/// The value a node launched from `o` in `pool` has for label `key`.
pub fn pool_offering_label<'a>(
    cat: &'a Catalog,
    pool: &'a Pool,
    o: &'a Offering,
    key: &str,
) -> Option<&'a str> {
    if key == labels::NODEPOOL {
        return Some(&pool.name);
    }
    if let Some(v) = pool.labels.get(key) {
        return Some(v);
    }
    cat.offering_label(o, key)
}

/// Whether `key` is answered by the catalog (well-known) rather than by pool labels.
pub fn is_catalog_key(key: &str) -> bool {
    labels::WELL_KNOWN.contains(&key) && !pool_only_key(key)
}

fn pool_only_key(key: &str) -> bool {
    key == labels::NODEPOOL || key == labels::HOSTNAME
}

/// Whether a required anti-affinity term of `class` selects the
/// pods of some DaemonSet (then its offerings depend on more than its node
/// constraints).
pub(crate) fn has_ds_anti_terms(input: &SolveInput<'_>, class: &PodClass) -> bool {
    ds_anti_terms(input, class).next().is_some()
}

/// The (required anti-affinity term of `class`, DaemonSet whose pods it
/// selects) pairs: such a DaemonSet's nodes are closed to the class (its
/// pod there shares every domain of the node, whatever the key).
fn ds_anti_terms<'i>(
    input: &SolveInput<'i>,
    class: &'i PodClass,
) -> impl Iterator<Item = (&'i crate::workload::PodAffinityTerm, &'i DaemonSetOverhead)> {
    class
        .pod_affinity
        .iter()
        .filter(|a| a.anti && a.weight.is_none())
        .flat_map(move |a| {
            input.workload.daemonsets.iter().filter_map(move |ds| {
                let ns_ok = a.all_namespaces
                    || if a.namespaces.is_empty() {
                        ds.namespace == class.namespace
                    } else {
                        a.namespaces.contains(&ds.namespace)
                    };
                (ns_ok && a.selector.matches(&ds.labels)).then_some((a, ds))
            })
        })
}

/// Whether a DaemonSet would run on nodes of `pool` launched from `o`.
pub fn daemonset_runs(cat: &Catalog, pool: &Pool, o: &Offering, ds: &DaemonSetOverhead) -> bool {
    if untolerated(&ds.tolerations, &pool.taints).is_some() {
        return false;
    }
    let label = |k: &str| pool_offering_label(cat, pool, o, k);
    ds.node_selector.matches(label)
        && (ds.required_affinity.is_empty()
            || ds.required_affinity.iter().any(|t| t.matches(label)))
}

/// Whether `tolerations` tolerate the pool's (non-startup) taints; the first one not tolerated.
pub fn pool_taint_block<'p>(
    pool: &'p Pool,
    tolerations: &[Toleration],
) -> Option<&'p crate::ir::Taint> {
    untolerated(tolerations, &pool.taints)
}

impl<'a> Tables<'a> {
    /// Compiles every pool against the catalog.
    pub fn new(input: &'a SolveInput<'a>) -> Tables<'a> {
        let dims = Dims::new(input);
        let cat = input.catalog;
        let type_cap: Vec<Rv> = cat.types.iter().map(|t| dims.rv(&t.capacity)).collect();
        // On-demand price per (type, zone), for spot-from-on-demand rules.
        let mut od: HashMap<(u32, u16), f64> = HashMap::new();
        for o in &cat.offerings {
            if o.capacity_type == CapacityType::OnDemand
                && let Some(p) = o.price
            {
                od.insert((o.type_index, o.zone_index), p);
            }
        }
        let pools = compile_pools(input, &dims, &od);
        let mut t = Tables {
            input,
            dims,
            pools,
            type_cap,
            key_cache: HashMap::new(),
            rule_cache: HashMap::new(),
            class_prefer: Vec::new(),
            class_rules: Vec::new(),
            class_pref_terms: Vec::new(),
            od,
        };
        for c in &input.workload.classes {
            let ca = ClassAttrs(c);
            let mut prefer: Vec<(i32, usize)> = Vec::new();
            let mut rules = Vec::new();
            for (ri, r) in input.policy.placement.iter().enumerate() {
                if !r.pods.eval(&ca) {
                    continue;
                }
                match r.kind {
                    PlacementKind::Prefer { weight } => prefer.push((weight, ri)),
                    _ => rules.push(ri),
                }
            }
            prefer.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            t.class_prefer
                .push(prefer.into_iter().map(|(_, i)| i).collect());
            t.class_rules.push(rules);
            let mut terms: Vec<usize> = (0..c.preferred_affinity.len()).collect();
            terms.sort_by(|a, b| {
                c.preferred_affinity[*b]
                    .0
                    .cmp(&c.preferred_affinity[*a].0)
                    .then(a.cmp(b))
            });
            t.class_pref_terms.push(terms);
        }
        t
    }

    /// The offering's price after cost rules and its rank (price plus the
    /// offering score), or why it has none.
    fn priced(
        input: &SolveInput<'_>,
        pool: &Pool,
        od: &HashMap<(u32, u16), f64>,
        o: &Offering,
    ) -> Result<(f64, f64), OfferingReject> {
        let price = Self::base_price(input, pool, od, o)?;
        let rank = if input.scorer.is_some() {
            Self::scored(input, pool, o, price)?
        } else {
            price
        };
        Ok((price, rank))
    }

    /// The offering's price after cost rules (no scoring).
    fn base_price(
        input: &SolveInput<'_>,
        pool: &Pool,
        od: &HashMap<(u32, u16), f64>,
        o: &Offering,
    ) -> Result<f64, OfferingReject> {
        let cat = input.catalog;
        let Some(t) = cat.types.get(o.type_index as usize) else {
            return Err(OfferingReject::NotAvailable);
        };
        let attrs = OfferAttrs {
            catalog: cat,
            pool,
            offering: o,
            price: o.price,
            class: None,
        };
        let pin = PriceInput {
            attrs: &attrs,
            price: o.price,
            price_known: o.price.is_some() && !o.price_estimated,
            on_demand_price: od.get(&(o.type_index, o.zone_index)).copied(),
            is_spot: o.capacity_type == CapacityType::Spot,
            vcpus: f64::from(t.vcpus),
            memory_gib: t.memory_mib as f64 / 1024.0,
        };
        match effective_price(&input.policy.cost, &pin) {
            PriceOutcome::Price(p) => Ok(p),
            PriceOutcome::Unpriced => Err(OfferingReject::Unpriced),
            PriceOutcome::Excluded { reason, .. } => Err(OfferingReject::Ceiling(reason)),
        }
    }

    /// The rank of an offering priced `price`: the price plus the scorer's
    /// offering score; a veto is an error.
    fn scored(
        input: &SolveInput<'_>,
        pool: &Pool,
        o: &Offering,
        price: f64,
    ) -> Result<f64, OfferingReject> {
        let mut rank = price;
        let cat = input.catalog;
        if let Some(s) = input.scorer
            && let Some(t) = cat.types.get(o.type_index as usize)
        {
            let zone = cat
                .zones
                .get(o.zone_index as usize)
                .map(|z| z.name.as_str())
                .unwrap_or("");
            let view = OfferingView {
                pool: &pool.name,
                instance_type: t,
                zone,
                capacity_type: o.capacity_type,
                price,
            };
            match s.score_offering(&view) {
                Verdict::Adjust(a) if a.is_finite() => rank += a,
                Verdict::Adjust(_) => {}
                Verdict::Veto(r) => return Err(OfferingReject::Veto(r)),
            }
        }
        Ok(rank)
    }

    fn ds_overhead(input: &SolveInput<'_>, dims: &Dims, pool: &Pool, o: &Offering) -> Rv {
        let mut v = [0; D];
        for ds in &input.workload.daemonsets {
            if daemonset_runs(input.catalog, pool, o, ds) {
                let mut r = dims.rv(&ds.requests);
                r[3] = r[3].max(1);
                v = add(&v, &r);
            }
        }
        v
    }

    /// Allocatable of a node of `pool` launched from `o`: the type's
    /// (`alloc`, per type index) with the capacity rules matching the
    /// offering applied (NodeOverlay `capacity`).
    fn offering_alloc(
        input: &SolveInput<'_>,
        dims: &Dims,
        pool: &Pool,
        alloc: &[Rv],
        o: &Offering,
    ) -> Rv {
        let mut a = alloc[o.type_index as usize];
        if input.policy.capacity.is_empty() {
            return a;
        }
        let attrs = OfferAttrs {
            catalog: input.catalog,
            pool,
            offering: o,
            price: None,
            class: None,
        };
        for (k, v) in super::capacity::overlay(&input.policy.capacity, &attrs) {
            if let Some(d) = dims.names.iter().skip(4).position(|n| *n == k) {
                a[d + 4] = v;
            }
        }
        a
    }

    /// Why offering `o` is not usable in `pool`, or Ok.
    fn reject_reason(
        input: &SolveInput<'_>,
        dims: &Dims,
        pool: &Pool,
        _kubelet: &crate::ir::KubeletConfig,
        od: &HashMap<(u32, u16), f64>,
        alloc: &[Rv],
        o: &Offering,
    ) -> Result<(), OfferingReject> {
        let cat = input.catalog;
        // A hand-written catalog may point past its own tables: such offerings are unusable.
        if !o.available
            || o.type_index as usize >= cat.types.len()
            || o.zone_index as usize >= cat.zones.len()
        {
            return Err(OfferingReject::NotAvailable);
        }
        if let Some((k, set)) = requirement_block(cat, pool, o) {
            return Err(OfferingReject::Requirement {
                key: k.clone(),
                want: set.to_string(),
            });
        }
        if let Some(r) = refused(input, o) {
            return Err(OfferingReject::Unavailable(r.to_string()));
        }
        Self::priced(input, pool, od, o)?;
        let ds = Self::ds_overhead(input, dims, pool, o);
        let net = sub(&Self::offering_alloc(input, dims, pool, alloc, o), &ds);
        if let Some(i) = (0..D).find(|i| net[*i] < 0) {
            return Err(OfferingReject::Overhead(
                dims.names.get(i).cloned().unwrap_or_default(),
            ));
        }
        Ok(())
    }

    /// Why offering `o` is unusable in pool `p` (None when usable), for explain.
    pub fn offering_reject(&self, p: usize, o: usize) -> Option<OfferingReject> {
        if self.pools[p].usable.get(o) {
            return None;
        }
        // Called once per offering when explaining a pod that fits nowhere:
        // everything per pool comes from `new` (recomputing allocatable for
        // every type on each call made one unplaceable pod take seconds).
        let input = self.input;
        let pool = &input.policy.pools[p];
        let tab = &self.pools[p];
        let off = &input.catalog.offerings[o];
        Self::reject_reason(
            input,
            &self.dims,
            pool,
            &tab.kubelet,
            &self.od,
            &tab.alloc,
            off,
        )
        .err()
    }

    /// Offerings of pool `p` whose labels satisfy `reqs` (pool-only keys are
    /// checked against the pool's labels and requirements).
    pub fn req_bits(&mut self, p: usize, reqs: &Requirements) -> Bits {
        let mut out = self.pools[p].usable.clone();
        for (k, set) in &reqs.keys {
            let b = self.key_bits(p, k, set);
            out.and_with(&b);
        }
        out
    }

    fn key_bits(&mut self, p: usize, key: &str, set: &ValueSet) -> Bits {
        let ck = (p, key.to_string(), set.clone());
        if let Some(b) = self.key_cache.get(&ck) {
            return b.clone();
        }
        let cat = self.input.catalog;
        let pool = &self.input.policy.pools[p];
        let n = cat.offerings.len();
        let b = if is_catalog_key(key) || pool.labels.contains_key(key) || key == labels::NODEPOOL {
            let mut b = Bits::new(n);
            for i in self.pools[p].usable.iter() {
                if set.allows_opt(pool_offering_label(cat, pool, &cat.offerings[i], key)) {
                    b.set(i);
                }
            }
            b
        } else if key == labels::HOSTNAME {
            // A new node's hostname is not known in advance; only "any" or "absent" forms pass.
            if set.complement && set.values.is_empty() && set.gt.is_none() && set.lt.is_none() {
                Bits::full(n)
            } else {
                Bits::new(n)
            }
        } else {
            // A custom label: the node carries it when the pool requires it.
            let ok = match self.pools[p].custom.get(key) {
                Some(pool_set) => !pool_set.intersect(set).no_value_allowed(),
                None => set.absent_ok,
            };
            if ok { Bits::full(n) } else { Bits::new(n) }
        };
        self.key_cache.insert(ck, b.clone());
        b
    }

    /// Offerings of pool `p` matching placement rule `r`'s node side (for class `c`).
    pub fn rule_bits(&mut self, p: usize, r: usize, c: usize) -> Bits {
        let rule = &self.input.policy.placement[r];
        let node_only = rule.nodes.is_node_only();
        let ck = (p, r, if node_only { usize::MAX } else { c });
        if let Some(b) = self.rule_cache.get(&ck) {
            return b.clone();
        }
        let cat = self.input.catalog;
        let pool = &self.input.policy.pools[p];
        let class = self.input.workload.classes.get(c);
        let mut b = Bits::new(cat.offerings.len());
        for i in self.pools[p].usable.iter() {
            let price = self.pools[p].price[i];
            let attrs = OfferAttrs {
                catalog: cat,
                pool,
                offering: &cat.offerings[i],
                price: Some(price),
                class,
            };
            if rule.nodes.eval(&attrs) {
                b.set(i);
            }
        }
        self.rule_cache.insert(ck, b.clone());
        b
    }

    /// The offerings of pool `p` class `c` may land on under variant `v`.
    pub fn class_bits(&mut self, p: usize, c: usize, v: &Variant) -> Bits {
        let input = self.input;
        let class = &input.workload.classes[c];
        let pool = &input.policy.pools[p];
        let n = input.catalog.offerings.len();
        if pool_taint_block(pool, &class.tolerations).is_some() {
            return Bits::new(n);
        }
        let mut b = self.req_bits(p, &class.node_selector);
        if !class.required_affinity.is_empty() {
            let mut any = Bits::new(n);
            for t in &class.required_affinity {
                let tb = self.req_bits(p, t);
                any.or_with(&tb);
            }
            b.and_with(&any);
        }
        let terms = self.class_pref_terms[c].clone();
        for &ti in terms.iter().take(v.pref_node) {
            let tb = self.req_bits(p, &class.preferred_affinity[ti].1);
            b.and_with(&tb);
        }
        if let Some(zones) = &class.volume_zones {
            let mut set = Requirements::new();
            let z: Vec<&str> = zones.iter().map(|s| s.as_str()).collect();
            set.require_in(labels::ZONE, &z);
            let zb = self.req_bits(p, &set);
            b.and_with(&zb);
        }
        let rules = self.class_rules[c].clone();
        for r in rules {
            let rb = self.rule_bits(p, r, c);
            match input.policy.placement[r].kind {
                PlacementKind::Require => b.and_with(&rb),
                PlacementKind::Deny => b.and_not_with(&rb),
                PlacementKind::Prefer { .. } => {}
            }
        }
        let prefer = self.class_prefer[c].clone();
        for &r in prefer.iter().take(v.prefer_rules) {
            let rb = self.rule_bits(p, r, c);
            b.and_with(&rb);
        }
        if !class.host_ports.is_empty() {
            for i in b.iter().collect::<Vec<_>>() {
                if self.ds_port_block(p, c, i).is_some() {
                    b.clear(i);
                }
            }
        }
        if ds_anti_terms(input, class).next().is_some() {
            for i in b.iter().collect::<Vec<_>>() {
                if self.ds_pod_block(p, c, i).is_some() {
                    b.clear(i);
                }
            }
        }
        b
    }

    /// The DaemonSet whose pods a required anti-affinity term of class `c`
    /// selects, on nodes of pool `p` launched from offering `o`:
    /// kube-scheduler counts DaemonSet pods like any other, and one runs on
    /// every node its DaemonSet selects, so the class can never go there.
    pub fn ds_pod_block(&self, p: usize, c: usize, o: usize) -> Option<String> {
        let input = self.input;
        let class = &input.workload.classes[c];
        let pool = &input.policy.pools[p];
        let off = input.catalog.offerings.get(o)?;
        ds_anti_terms(input, class).find_map(|(a, ds)| {
            daemonset_runs(input.catalog, pool, off, ds).then(|| {
                format!(
                    "pod anti-affinity on {} selects the pods of DaemonSet {}/{}",
                    a.topology_key, ds.namespace, ds.name
                )
            })
        })
    }

    /// The DaemonSet holding a host port class `c` needs, on nodes of pool
    /// `p` launched from offering `o` (a DaemonSet pod runs on every node
    /// it selects, so the port is never free there): "host port 80/TCP
    /// (DaemonSet kube-system/proxy)".
    pub fn ds_port_block(&self, p: usize, c: usize, o: usize) -> Option<String> {
        let input = self.input;
        let class = &input.workload.classes[c];
        if class.host_ports.is_empty() {
            return None;
        }
        let pool = &input.policy.pools[p];
        let off = input.catalog.offerings.get(o)?;
        input.workload.daemonsets.iter().find_map(|ds| {
            let hp = port_conflict(&class.host_ports, &ds.host_ports)?;
            daemonset_runs(input.catalog, pool, off, ds)
                .then(|| format!("{hp} is held by DaemonSet {}/{}", ds.namespace, ds.name))
        })
    }

    /// Whether a placement rule with a pod-only condition has `Cond::True` semantics (helper for explain).
    pub fn cond_text(c: &Cond) -> String {
        format!("{c:?}")
    }
}

/// The value a pool itself gives label `key` on its nodes, before the
/// catalog is asked (`pool_offering_label`'s first two answers): where two
/// pools agree on this for every key a computation reads, the computation
/// gives both the same result.
fn pool_value<'p>(pool: &'p Pool, key: &str) -> Option<&'p str> {
    if key == labels::NODEPOOL {
        return Some(&pool.name);
    }
    pool.labels.get(key).map(String::as_str)
}

/// The node label keys condition `c` reads.
fn node_label_keys<'c>(c: &'c Cond, out: &mut BTreeSet<&'c str>) {
    match c {
        Cond::All(cs) | Cond::Any(cs) => cs.iter().for_each(|x| node_label_keys(x, out)),
        Cond::Not(x) => node_label_keys(x, out),
        Cond::Cmp {
            subject: Subject::NodeLabel(k),
            ..
        } => {
            out.insert(k);
        }
        Cond::Cmp { .. } | Cond::True | Cond::False => {}
    }
}

/// One copy of each distinct array: the pools of a large policy mostly
/// compile to equal ones. `eq` compares contents (bit for bit for floats,
/// so NaN entries compare equal).
struct Interner<T> {
    by_hash: HashMap<u64, Vec<Arc<[T]>>>,
}

impl<T> Interner<T> {
    fn new() -> Self {
        Interner {
            by_hash: HashMap::new(),
        }
    }

    fn intern(&mut self, hash: u64, v: Vec<T>, eq: impl Fn(&[T], &[T]) -> bool) -> Arc<[T]> {
        let same = self.by_hash.entry(hash).or_default();
        if let Some(a) = same.iter().find(|a| eq(a, &v)) {
            return Arc::clone(a);
        }
        let a: Arc<[T]> = v.into();
        same.push(Arc::clone(&a));
        a
    }
}

fn hash_of(f: impl FnOnce(&mut DefaultHasher)) -> u64 {
    let mut h = DefaultHasher::new();
    f(&mut h);
    h.finish()
}

fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Effective prices of every offering under one pool's cost-rule view.
struct Prices {
    price: Arc<[f64]>,
    /// Offerings the cost rules price (the rest are unpriced or excluded).
    priced: Bits,
}

/// Allocatable minus DaemonSet overhead under one kubelet and one DaemonSet view.
struct Room {
    net: Arc<[Rv]>,
    ds: Arc<[Rv]>,
}

/// Whether offering `o` points into the catalog's tables and is offered at all.
fn listed(cat: &Catalog, o: &Offering) -> bool {
    o.available
        && (o.type_index as usize) < cat.types.len()
        && (o.zone_index as usize) < cat.zones.len()
}

/// Compiles every pool against the catalog, sharing what pools agree on.
///
/// Each per-offering array is computed once per distinct input it depends on:
/// - prices, per distinct value of the labels the cost rules read (most
///   policies: one for all pools);
/// - allocatable, per distinct kubelet configuration;
/// - DaemonSet overhead and net room, per kubelet and per distinct answer
///   to "which DaemonSets run here" (taints tolerated, labels selected);
/// - the pool's requirement filter, per distinct requirements;
/// - ranks (with a scoring script) and the per-domain lists, per distinct content.
///
/// Only the `usable` bitset (one bit per offering) is the pool's own, so a
/// pool costs a few KB whatever the catalog's size. The result is exactly
/// what compiling each pool on its own gives: every array entry a pool can
/// read (its usable offerings) holds the value its own compilation would.
fn compile_pools(
    input: &SolveInput<'_>,
    dims: &Dims,
    od: &HashMap<(u32, u16), f64>,
) -> Vec<PoolTab> {
    let cat = input.catalog;
    let n = cat.offerings.len();
    let nd = cat.zones.len() * 2;
    let mut price_keys = BTreeSet::new();
    for r in &input.policy.cost {
        node_label_keys(&r.when, &mut price_keys);
    }
    let mut ds_keys = BTreeSet::new();
    // Capacity rules change a pool's room too: their label keys split rooms like DaemonSets'.
    for r in &input.policy.capacity {
        node_label_keys(&r.when, &mut ds_keys);
    }
    for ds in &input.workload.daemonsets {
        ds_keys.extend(ds.node_selector.keys.keys().map(String::as_str));
        for t in &ds.required_affinity {
            ds_keys.extend(t.keys.keys().map(String::as_str));
        }
    }
    // Allocatable per type, by (kubelet settings, node class name).
    type AllocKey<'p> = (KubeletConfig, &'p str);
    let mut allocs: Vec<(AllocKey<'_>, Arc<[Rv]>)> = Vec::new();
    let mut prices: HashMap<Vec<Option<&str>>, Prices> = HashMap::new();
    type RoomKey<'p> = (usize, Vec<bool>, Vec<Option<&'p str>>);
    let mut rooms: HashMap<RoomKey<'_>, Room> = HashMap::new();
    type ReqKey<'p> = Vec<(&'p str, &'p ValueSet, Option<&'p str>)>;
    let mut req_bits: HashMap<ReqKey<'_>, Bits> = HashMap::new();
    let mut ranks: Interner<f64> = Interner::new();
    let mut lists: Interner<Vec<u32>> = Interner::new();
    let mut pools = Vec::with_capacity(input.policy.pools.len());
    for pool in &input.policy.pools {
        let kubelet = input
            .policy
            .node_classes
            .get(&pool.node_class)
            .map(|nc| nc.kubelet.overridden_by(&pool.kubelet))
            .unwrap_or_else(|| pool.kubelet.clone());
        // The node class sets the ephemeral storage (root volume or RAID0).
        let nc = input.policy.node_classes.get(&pool.node_class);
        let nc_key = nc.map_or("", |_| pool.node_class.as_str());
        let ki = match allocs
            .iter()
            .position(|((k, n), _)| *k == kubelet && *n == nc_key)
        {
            Some(i) => i,
            None => {
                let alloc: Arc<[Rv]> = cat
                    .types
                    .iter()
                    .map(|t| dims.rv(&allocatable(t, &kubelet, nc)))
                    .collect();
                allocs.push(((kubelet.clone(), nc_key), alloc));
                allocs.len() - 1
            }
        };
        let alloc = Arc::clone(&allocs[ki].1);
        let pk: Vec<Option<&str>> = price_keys.iter().map(|k| pool_value(pool, k)).collect();
        let pr = prices.entry(pk).or_insert_with(|| {
            let mut price = vec![f64::NAN; n];
            let mut priced = Bits::new(n);
            for (i, o) in cat.offerings.iter().enumerate() {
                if listed(cat, o)
                    && let Ok(p) = Tables::base_price(input, pool, od, o)
                {
                    price[i] = p;
                    priced.set(i);
                }
            }
            Prices {
                price: price.into(),
                priced,
            }
        });
        let rk: RoomKey<'_> = (
            ki,
            input
                .workload
                .daemonsets
                .iter()
                .map(|ds| untolerated(&ds.tolerations, &pool.taints).is_none())
                .collect(),
            ds_keys.iter().map(|k| pool_value(pool, k)).collect(),
        );
        let room = rooms.entry(rk).or_insert_with(|| {
            let mut ds = vec![[0; D]; n];
            let mut net = vec![[0; D]; n];
            for (i, o) in cat.offerings.iter().enumerate() {
                if listed(cat, o) {
                    ds[i] = Tables::ds_overhead(input, dims, pool, o);
                    let a = Tables::offering_alloc(input, dims, pool, &alloc, o);
                    net[i] = sub(&a, &ds[i]);
                }
            }
            Room {
                net: net.into(),
                ds: ds.into(),
            }
        });
        let qk: ReqKey<'_> = pool
            .requirements
            .keys
            .iter()
            .filter(|(k, _)| is_catalog_key(k))
            .map(|(k, set)| (k.as_str(), set, pool_value(pool, k)))
            .collect();
        let allowed = req_bits.entry(qk).or_insert_with(|| {
            let mut b = Bits::new(n);
            for (i, o) in cat.offerings.iter().enumerate() {
                if listed(cat, o) && requirements_allow(cat, pool, o) {
                    b.set(i);
                }
            }
            b
        });
        // What is left per pool, in offering order as the pool's own
        // compilation asks it (the scorer sees the same calls).
        let mut usable = Bits::new(n);
        let mut rank = input.scorer.map(|_| vec![f64::NAN; n]);
        let mut by_domain: Vec<Vec<u32>> = vec![Vec::new(); nd];
        for i in allowed.iter() {
            let o = &cat.offerings[i];
            if refused(input, o).is_some() || !pr.priced.get(i) {
                continue;
            }
            let price = pr.price[i];
            if let Some(rank) = &mut rank {
                match Tables::scored(input, pool, o, price) {
                    Ok(r) => rank[i] = r,
                    Err(_) => continue,
                }
            }
            if room.net[i].iter().any(|x| *x < 0) {
                continue;
            }
            usable.set(i);
            by_domain[dom(o.zone_index, o.capacity_type)].push(i as u32);
        }
        let rank: Arc<[f64]> = match rank {
            Some(r) => {
                let h = hash_of(|h| r.iter().for_each(|x| x.to_bits().hash(h)));
                ranks.intern(h, r, same_bits)
            }
            None => Arc::clone(&pr.price),
        };
        for list in &mut by_domain {
            list.sort_by(|a, b| {
                rank[*a as usize]
                    .total_cmp(&rank[*b as usize])
                    .then(a.cmp(b))
            });
        }
        let h = hash_of(|h| by_domain.hash(h));
        let by_domain = lists.intern(h, by_domain, |a, b| a == b);
        let mut tab = PoolTab {
            usable,
            price: Arc::clone(&pr.price),
            rank,
            net: Arc::clone(&room.net),
            ds: Arc::clone(&room.ds),
            by_domain,
            limit: [i64::MAX; D],
            custom: BTreeMap::new(),
            kubelet,
            alloc,
        };
        for (k, q) in &pool.limits {
            let mut r = Resources::zero();
            r.set(k, *q);
            let v = dims.rv(&r);
            for i in 0..D {
                if v[i] != 0 || dims.names.get(i).is_some_and(|nm| nm == k) {
                    tab.limit[i] = v[i];
                }
            }
        }
        for (k, set) in &pool.requirements.keys {
            if !is_catalog_key(k) && !pool.labels.contains_key(k) {
                tab.custom.insert(k.clone(), set.clone());
            }
        }
        pools.push(tab);
    }
    pools
}

/// The first catalog-key requirement of `pool` that offering `o` violates.
fn requirement_block<'p>(
    cat: &Catalog,
    pool: &'p Pool,
    o: &Offering,
) -> Option<(&'p String, &'p ValueSet)> {
    pool.requirements
        .keys
        .iter()
        .find(|(k, set)| is_catalog_key(k) && !set.allows_opt(pool_offering_label(cat, pool, o, k)))
}

fn requirements_allow(cat: &Catalog, pool: &Pool, o: &Offering) -> bool {
    requirement_block(cat, pool, o).is_none()
}

/// Why EC2 refused offering `o` recently, if it did (the solve's availability snapshot).
fn refused<'i>(input: &SolveInput<'i>, o: &Offering) -> Option<&'i str> {
    let u = input.unavailable?;
    let cat = input.catalog;
    let t = cat.types.get(o.type_index as usize)?;
    let zone = cat
        .zones
        .get(o.zone_index as usize)
        .map(|z| z.name.as_str())
        .unwrap_or("");
    u.reason(&t.name, zone, o.capacity_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused form agrees with the plain one, over-full rooms included.
    #[test]
    fn copies_after_agrees_with_copies_of_the_difference() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |m: i64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m as u64) as i64
        };
        for _ in 0..20_000 {
            let mut req = [0; D];
            let mut cap = [0; D];
            let mut used = [0; D];
            for i in 0..D {
                req[i] = if next(3) == 0 { 0 } else { next(50) };
                cap[i] = next(1000);
                used[i] = next(1100);
            }
            // `used` is what requests add up to, so it too is zero outside
            // the requested dimensions.
            for i in 0..D {
                if req[i] == 0 && next(2) == 0 {
                    used[i] = 0;
                }
            }
            let act = active_dims([&req, &used], [&cap, &sub(&cap, &used)]);
            assert_eq!(
                copies_after(&act, &req, &cap, &used),
                copies(&req, &sub(&cap, &used)),
                "req {req:?} cap {cap:?} used {used:?}"
            );
            assert_eq!(fits_on(&act, &used, &cap), fits(&used, &cap));
        }
    }
}
