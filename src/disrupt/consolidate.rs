//! Consolidation: make the cluster cheaper by re-planning the pods of the nodes that may go.
//!
//! `decide` takes the cluster as the solver sees it with `--nodes` (existing nodes with their
//! bound pods), the workload pods bound to each node (as solver classes, so they can be
//! re-planned), per-node disruption facts and the budgets left per pool, and returns the
//! moves to make: empty nodes to delete, and underutilized nodes to delete or replace by
//! cheaper ones. Each move is checked by the planner's own validator before it is returned.
//! See docs/controller.md (Consolidation) for how a move is chosen.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::catalog::{Availability, CapacityType, Catalog};
use crate::ir::PolicySet;
use crate::ir::{ConsolidationPolicy, Duration as IrDuration};
use crate::solver::validate::validate;
use crate::solver::{Plan, PlannedNode, SolveInput, solve};
use crate::workload::{BoundPod, ExistingNode, PodClass, Workload};

/// Why a move is made (the `nodewright.io/disruption-reason` annotation's value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// The node runs no workload pods (DaemonSet and mirror pods do not count).
    Empty,
    /// Its pods fit on the rest of the cluster plus cheaper new nodes.
    Underutilized,
}

impl Reason {
    /// The annotation / JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Empty => "empty",
            Reason::Underutilized => "underutilized",
        }
    }
}

/// What the cluster the decision reads looks like. Owned, except the policy and catalog
/// (large, shared and immutable), so a controller can build it from its stores.
#[derive(Debug, Clone)]
pub struct ConsolidationInput<'a> {
    pub policy: &'a PolicySet,
    pub catalog: &'a Catalog,
    /// Offerings EC2 recently refused (replacements avoid them); None = all available.
    pub unavailable: Option<&'a Availability>,
    /// The cluster as `--nodes` loads it: `nodes` are the existing nodes with their bound pods
    /// (requests in `used`, DaemonSet pods included), `daemonsets` the per-node overhead a new
    /// node carries. `classes` (pending pods) are ignored: pending pods are the planner's job.
    pub cluster: Workload,
    /// The workload pods bound to each node (not DaemonSet or mirror pods), as solver
    /// classes: what a move re-plans when it removes the node. A node with none is empty.
    pub pods: Vec<NodePods>,
    /// Disruption facts, one per node of `cluster.nodes` (a node without facts is never a
    /// candidate).
    pub nodes: Vec<NodeFacts>,
    /// Disruptions allowed now, per pool (absent = no limit).
    pub budgets: BTreeMap<String, BudgetLeft>,
}

/// The workload pods bound to one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodePods {
    pub node: String,
    /// Each class holds only pods of this node (`pod_names`).
    pub classes: Vec<PodClass>,
}

/// What the decision needs to know about one node beyond its capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeFacts {
    pub name: String,
    /// The pool that launched it (`nodewright.io/pool` label); None = not ours, never removed.
    pub pool: Option<String>,
    /// Registered and ready (startup taints gone): only initialized nodes are candidates.
    pub initialized: bool,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
    /// $/hour the node costs (after cost rules); what removing it saves.
    pub price_per_hour: f64,
    /// How long the node has been unchanged (no pod bound or removed) — compared with the
    /// pool's `consolidate ... after`. None = unknown, taken as long enough.
    pub stable_for: Option<std::time::Duration>,
    /// Why voluntary disruption is blocked by a do-not-disrupt annotation ("node annotation",
    /// "pod shop/web-0"); None = not blocked.
    pub do_not_disrupt: Option<String>,
    /// The PodDisruptionBudget (`namespace/name`) that allows no eviction of one of its pods
    /// now; None = none blocks.
    pub pdb_blocked: Option<String>,
}

/// Disruptions a pool's budgets allow now, by reason (None = no limit for that reason).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetLeft {
    pub empty: Option<usize>,
    pub underutilized: Option<usize>,
}

impl BudgetLeft {
    /// The budget for `reason`.
    pub fn get(&self, reason: Reason) -> Option<usize> {
        match reason {
            Reason::Empty => self.empty,
            Reason::Underutilized => self.underutilized,
        }
    }
}

/// Knobs of the decision. The defaults are the documented product behaviour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConsolidationOptions {
    /// A move must save at least this fraction of the removed nodes' price ...
    pub margin_fraction: f64,
    /// ... and at least this many $/hour (so that price noise does not churn nodes).
    pub margin_min_per_hour: f64,
    /// Spot-to-spot replacement needs this many instance types cheaper than the removed
    /// nodes among the replacement's options (Karpenter: 15).
    pub spot_to_spot_min_types: usize,
    /// Single-node moves are tried for at most this many candidates per round (least
    /// utilized first), which bounds a round's time on large clusters.
    pub max_single_node_tries: usize,
}

impl Default for ConsolidationOptions {
    fn default() -> Self {
        ConsolidationOptions {
            margin_fraction: 0.05,
            margin_min_per_hour: 0.005,
            spot_to_spot_min_types: 15,
            max_single_node_tries: 20,
        }
    }
}

/// The decision: the moves to make now and why other nodes stay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Consolidation {
    /// $/hour of the nodes with facts before the moves.
    #[serde(serialize_with = "price")]
    pub price_per_hour_before: f64,
    /// ... and after every move is made.
    #[serde(serialize_with = "price")]
    pub price_per_hour_after: f64,
    /// Best first ($/hour saved per pod disrupted).
    pub moves: Vec<Move>,
    pub blocked: Vec<Blocked>,
}

/// One move: remove `remove`, launching `launch` first; `pods` are re-placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Move {
    pub reason: Reason,
    /// Node names.
    pub remove: Vec<String>,
    /// Replacement nodes, as the plan's nodes (empty for a plain delete).
    pub launch: Vec<PlannedNode>,
    /// `namespace/name` of every pod that moves.
    pub pods: Vec<String>,
    #[serde(serialize_with = "price")]
    pub saving_per_hour: f64,
}

/// A node that could otherwise have been consolidated, and what stopped it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    pub node: String,
    /// Names the PDB, the do-not-disrupt pod, the budget or the Karpenter rule.
    pub reason: String,
}

/// Prices rounded as the plan's JSON rounds them.
fn price<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    let r = if v.is_finite() {
        (v * 1e6).round() / 1e6 + 0.0
    } else {
        *v
    };
    s.serialize_f64(r)
}

/// Decides the consolidation moves for `input`.
///
/// Deterministic. Moves come best first and are meant to be made in that order: each one is
/// checked (placement and the planner's validator) on the cluster the moves before it leave.
pub fn decide(input: &ConsolidationInput<'_>, opts: &ConsolidationOptions) -> Consolidation {
    decide_with_result(input, opts).0
}

/// The cluster after a decision's moves: what `decide` expects as its next input (launched
/// nodes appear under their move's `launch` names, initialized, with the pods they took).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cluster {
    pub cluster: Workload,
    pub pods: Vec<NodePods>,
    pub nodes: Vec<NodeFacts>,
}

/// `decide`, and the cluster its moves leave (for repeated rounds and for checking).
pub fn decide_with_result(
    input: &ConsolidationInput<'_>,
    opts: &ConsolidationOptions,
) -> (Consolidation, Cluster) {
    let mut st = State::new(input);
    let before = st.price();
    let mut blocked = Vec::new();
    let mut empty = Vec::new();
    let mut under = Vec::new();
    for f in &input.nodes {
        match candidacy(input, f, &st) {
            Candidacy::No => {}
            Candidacy::Blocked(reason) => blocked.push(Blocked {
                node: f.name.clone(),
                reason,
            }),
            Candidacy::Empty => empty.push(f.name.clone()),
            Candidacy::Under => under.push(f.name.clone()),
        }
    }
    let mut used: HashMap<(String, Reason), usize> = HashMap::new();
    let mut moves = Vec::new();
    // Empty nodes: nothing moves, the whole price is saved.
    for n in empty {
        let Some(f) = st.facts(&n).cloned() else {
            continue;
        };
        if let Some(why) = over_budget(input, &used, &[&f], Reason::Empty) {
            blocked.push(Blocked {
                node: n,
                reason: why,
            });
            continue;
        }
        count(&mut used, &[&f], Reason::Empty);
        st.remove(&n);
        moves.push(Move {
            reason: Reason::Empty,
            remove: vec![n],
            launch: vec![],
            pods: vec![],
            saving_per_hour: f.price_per_hour,
        });
    }
    // Underutilized: least disruptive first (fewest pods, then least used).
    under.sort_by(|a, b| {
        let ka = st.disruption_key(a);
        let kb = st.disruption_key(b);
        ka.partial_cmp(&kb)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.cmp(b))
    });
    let mut proposals: Vec<Proposal> = Vec::new();
    let mut refusals: BTreeMap<String, String> = BTreeMap::new();
    for n in under.iter().take(opts.max_single_node_tries) {
        match st.evaluate(input, opts, std::slice::from_ref(n)) {
            Ok(p) => proposals.push(p),
            Err(why) => {
                refusals.insert(n.clone(), why);
            }
        }
    }
    // Multi-node: the largest prefix (within budgets) whose pods re-plan cheaper.
    let prefix = within_budget(input, &st, &under, &used);
    if prefix.len() > 1 {
        let (mut lo, mut hi) = (2usize, prefix.len());
        let mut best: Option<Proposal> = None;
        if let Ok(p) = st.evaluate(input, opts, &prefix) {
            best = Some(p);
        } else {
            // A few halvings find a good prefix; each step is a whole re-plan.
            let mut steps = 0;
            while lo <= hi && steps < MULTI_NODE_STEPS {
                steps += 1;
                let mid = (lo + hi) / 2;
                match st.evaluate(input, opts, &prefix[..mid]) {
                    Ok(p) => {
                        best = Some(p);
                        lo = mid + 1;
                    }
                    Err(_) => hi = mid - 1,
                }
            }
        }
        proposals.extend(best);
    }
    proposals.sort_by(|a, b| {
        b.score()
            .partial_cmp(&a.score())
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.remove.cmp(&b.remove))
    });
    let mut first = true;
    // A node that receives pods in this round stays until the next one: no pod moves twice
    // in a round (the next round, on the cluster this one leaves, may move it again).
    let mut receiving: HashSet<String> = HashSet::new();
    for p in proposals {
        let remove: Vec<String> = p
            .remove
            .iter()
            .filter(|n| st.has(n) && !receiving.contains(*n))
            .cloned()
            .collect();
        if remove.is_empty() {
            continue;
        }
        let facts: Vec<NodeFacts> = remove.iter().filter_map(|n| st.facts(n).cloned()).collect();
        let refs: Vec<&NodeFacts> = facts.iter().collect();
        if let Some(why) = over_budget(input, &used, &refs, Reason::Underutilized) {
            for n in &remove {
                refusals.entry(n.clone()).or_insert_with(|| why.clone());
            }
            continue;
        }
        // The first proposal was evaluated on this very state; later ones are re-planned.
        let p = if first && remove == p.remove {
            p
        } else {
            match st.evaluate(input, opts, &remove) {
                Ok(p) => p,
                Err(why) => {
                    if remove.len() == 1 {
                        refusals.entry(remove[0].clone()).or_insert(why);
                    }
                    continue;
                }
            }
        };
        first = false;
        count(&mut used, &refs, Reason::Underutilized);
        for n in &remove {
            refusals.remove(n);
        }
        receiving.extend(p.plan.existing.iter().map(|e| e.node.clone()));
        let m = st.apply(p);
        receiving.extend(m.launch.iter().map(|n| n.name.clone()));
        moves.push(m);
    }
    for (node, reason) in refusals {
        if st.has(&node) {
            blocked.push(Blocked { node, reason });
        }
    }
    blocked.sort_by(|a, b| a.node.cmp(&b.node));
    let after = st.price();
    let out = Consolidation {
        price_per_hour_before: before,
        price_per_hour_after: after,
        moves,
        blocked,
    };
    (out, st.into_cluster())
}

/// Binary-search steps for the multi-node prefix after the whole prefix is refused.
const MULTI_NODE_STEPS: usize = 5;

enum Candidacy {
    No,
    Blocked(String),
    Empty,
    Under,
}

/// Whether node `f` may be consolidated, and how.
fn candidacy(input: &ConsolidationInput<'_>, f: &NodeFacts, st: &State) -> Candidacy {
    let Some(pool_name) = &f.pool else {
        return Candidacy::No;
    };
    if !f.initialized || !st.has(&f.name) {
        return Candidacy::No;
    }
    let Some(pool) = input.policy.pools.iter().find(|p| &p.name == pool_name) else {
        return Candidacy::Blocked(format!("its pool `{pool_name}` is not in the policy"));
    };
    let after = match pool.disruption.consolidate_after {
        IrDuration::Never => return Candidacy::No,
        IrDuration::Finite(d) => d,
    };
    if let Some(stable) = f.stable_for
        && stable < after
    {
        return Candidacy::Blocked(format!(
            "pool `{pool_name}` consolidates after {}s; unchanged for {}s",
            after.as_secs(),
            stable.as_secs()
        ));
    }
    if let Some(d) = &f.do_not_disrupt {
        return Candidacy::Blocked(format!("do-not-disrupt: {d}"));
    }
    if let Some(p) = &f.pdb_blocked {
        return Candidacy::Blocked(format!("PodDisruptionBudget {p} allows no eviction now"));
    }
    if st.pod_count(&f.name) == 0 {
        return Candidacy::Empty;
    }
    match pool.disruption.consolidation_policy {
        ConsolidationPolicy::WhenEmpty => Candidacy::No,
        ConsolidationPolicy::WhenEmptyOrUnderutilized => Candidacy::Under,
    }
}

/// Why removing `nodes` for `reason` would exceed a pool's budget; None = it fits.
fn over_budget(
    input: &ConsolidationInput<'_>,
    used: &HashMap<(String, Reason), usize>,
    nodes: &[&NodeFacts],
    reason: Reason,
) -> Option<String> {
    let mut want: BTreeMap<&str, usize> = BTreeMap::new();
    for f in nodes {
        if let Some(p) = &f.pool {
            *want.entry(p.as_str()).or_default() += 1;
        }
    }
    for (pool, n) in want {
        let Some(left) = input.budgets.get(pool).and_then(|b| b.get(reason)) else {
            continue;
        };
        let done = used.get(&(pool.to_string(), reason)).copied().unwrap_or(0);
        if done + n > left {
            return Some(format!(
                "budget: pool `{pool}` allows {left} {} disruption(s) now",
                reason.as_str()
            ));
        }
    }
    None
}

fn count(used: &mut HashMap<(String, Reason), usize>, nodes: &[&NodeFacts], reason: Reason) {
    for f in nodes {
        if let Some(p) = &f.pool {
            *used.entry((p.clone(), reason)).or_default() += 1;
        }
    }
}

/// The longest prefix of `under` the underutilized budgets allow (skipping nodes over budget).
fn within_budget(
    input: &ConsolidationInput<'_>,
    st: &State,
    under: &[String],
    used: &HashMap<(String, Reason), usize>,
) -> Vec<String> {
    let mut used = used.clone();
    let mut out = Vec::new();
    for n in under {
        let Some(f) = st.facts(n) else { continue };
        if over_budget(input, &used, &[f], Reason::Underutilized).is_none() {
            count(&mut used, &[f], Reason::Underutilized);
            out.push(n.clone());
        }
    }
    out
}

/// The selectors of the pending pods' topology spread and pod (anti-)affinity terms, with
/// the namespaces each one counts pods in (None = all).
///
/// A bound pod matters to a re-plan of those pods only when one of these selectors counts
/// it, or when it holds a host port: the solver (`pack`) and the validator read a bound pod
/// for nothing else. So `State::lend` hands them only those bound pods, which leaves every
/// count, every decision and every validation the same while the planner and the
/// validator no longer walk the thousands of bound pods no term selects (they scan them
/// per pending pod with a term).
struct CountedBy<'a> {
    terms: Vec<(&'a crate::workload::LabelSelector, Option<&'a [String]>)>,
}

impl<'a> CountedBy<'a> {
    fn of(classes: &'a [PodClass]) -> CountedBy<'a> {
        let mut terms: Vec<(&crate::workload::LabelSelector, Option<&[String]>)> = Vec::new();
        for c in classes {
            let own = Some(std::slice::from_ref(&c.namespace));
            for s in &c.topology_spread {
                terms.push((&s.selector, own));
            }
            for a in &c.pod_affinity {
                let ns = if a.all_namespaces {
                    None
                } else if a.namespaces.is_empty() {
                    own
                } else {
                    Some(&a.namespaces[..])
                };
                terms.push((&a.selector, ns));
            }
        }
        let mut seen = HashSet::new();
        terms.retain(|t| seen.insert(*t));
        CountedBy { terms }
    }

    /// Whether bound pod `bp` must stay in the cluster the re-plan sees.
    fn keeps(&self, bp: &BoundPod) -> bool {
        !bp.host_ports.is_empty()
            || self.terms.iter().any(|(sel, ns)| {
                ns.is_none_or(|ns| ns.contains(&bp.namespace)) && sel.matches(&bp.labels)
            })
    }
}

/// What `State::lend` moved out of the state: the removed nodes with their positions, and
/// the full bound pods of each lent node (in the lent workload's order).
struct Lent {
    removed: Vec<(usize, ExistingNode)>,
    bound: Vec<Vec<BoundPod>>,
}

/// A move found on some state, before it is taken.
struct Proposal {
    remove: Vec<String>,
    plan: Plan,
    pods: Vec<String>,
    saving: f64,
}

impl Proposal {
    /// $/hour saved per pod disrupted.
    fn score(&self) -> f64 {
        self.saving / self.pods.len().max(1) as f64
    }
}

/// The cluster as the moves so far leave it.
struct State {
    nodes: Vec<ExistingNode>,
    daemonsets: Vec<crate::workload::DaemonSetOverhead>,
    facts: HashMap<String, NodeFacts>,
    /// Workload pods per node.
    pods: HashMap<String, Vec<PodClass>>,
    /// Node name → index in `nodes`.
    index: HashMap<String, usize>,
}

impl State {
    fn new(input: &ConsolidationInput<'_>) -> State {
        let nodes = input.cluster.nodes.clone();
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        let mut pods: HashMap<String, Vec<PodClass>> = HashMap::new();
        for np in &input.pods {
            pods.entry(np.node.clone())
                .or_default()
                .extend(np.classes.iter().filter(|c| c.count() > 0).cloned());
        }
        State {
            nodes,
            daemonsets: input.cluster.daemonsets.clone(),
            facts: input
                .nodes
                .iter()
                .map(|f| (f.name.clone(), f.clone()))
                .collect(),
            pods,
            index,
        }
    }

    fn has(&self, n: &str) -> bool {
        self.index.contains_key(n)
    }

    fn facts(&self, n: &str) -> Option<&NodeFacts> {
        self.facts.get(n)
    }

    fn price(&self) -> f64 {
        self.nodes
            .iter()
            .filter_map(|n| self.facts.get(&n.name))
            .map(|f| f.price_per_hour)
            .sum()
    }

    fn pod_count(&self, n: &str) -> usize {
        self.pods
            .get(n)
            .map(|cs| cs.iter().map(PodClass::count).sum())
            .unwrap_or(0)
    }

    /// (pods, cpu utilization, memory utilization): lower is cheaper to disrupt.
    fn disruption_key(&self, n: &str) -> (usize, f64, f64) {
        let util = self.index.get(n).map_or((0.0, 0.0), |&i| {
            let e = &self.nodes[i];
            let frac = |u: i64, a: i64| if a > 0 { u as f64 / a as f64 } else { 0.0 };
            (
                frac(e.used.cpu_milli, e.allocatable.cpu_milli),
                frac(e.used.memory, e.allocatable.memory),
            )
        });
        (self.pod_count(n), util.0, util.1)
    }

    /// Lends the cluster to a re-plan of `remove`'s pods: the workload of the rest of the
    /// cluster with their pods pending (one class per class id). Its nodes are moved out of
    /// the state, not cloned (a round re-plans dozens of times on thousands of nodes), each
    /// carrying only the bound pods a pending pod's term counts (see `CountedBy`); `give_back`
    /// puts them back as they were.
    fn lend(&mut self, remove: &[String]) -> (Workload, Lent) {
        let gone: HashSet<&str> = remove.iter().map(String::as_str).collect();
        let mut classes: Vec<PodClass> = Vec::new();
        let mut by_id: HashMap<String, usize> = HashMap::new();
        for n in remove {
            for c in self.pods.get(n).into_iter().flatten() {
                match by_id.get(&c.id) {
                    Some(&i) => classes[i].pod_names.extend(c.pod_names.iter().cloned()),
                    None => {
                        by_id.insert(c.id.clone(), classes.len());
                        classes.push(c.clone());
                    }
                }
            }
        }
        let counts = CountedBy::of(&classes);
        let all = std::mem::take(&mut self.nodes);
        let mut nodes = Vec::with_capacity(all.len());
        let mut lent = Lent {
            removed: Vec::new(),
            bound: Vec::with_capacity(all.len()),
        };
        for (i, mut n) in all.into_iter().enumerate() {
            if gone.contains(n.name.as_str()) {
                lent.removed.push((i, n));
                continue;
            }
            let counted = n
                .pods
                .iter()
                .filter(|bp| counts.keeps(bp))
                .cloned()
                .collect();
            lent.bound.push(std::mem::replace(&mut n.pods, counted));
            nodes.push(n);
        }
        let w = Workload {
            classes,
            daemonsets: std::mem::take(&mut self.daemonsets),
            nodes,
        };
        (w, lent)
    }

    /// Takes back what `lend` lent: every node at its place, with all its bound pods.
    fn give_back(&mut self, w: Workload, lent: Lent) {
        self.daemonsets = w.daemonsets;
        let total = w.nodes.len() + lent.removed.len();
        let mut rest = w.nodes.into_iter().zip(lent.bound).map(|(mut n, bound)| {
            n.pods = bound;
            n
        });
        let mut removed = lent.removed.into_iter().peekable();
        let mut nodes = Vec::with_capacity(total);
        loop {
            if let Some((i, _)) = removed.peek()
                && *i == nodes.len()
                && let Some((_, n)) = removed.next()
            {
                nodes.push(n);
                continue;
            }
            match rest.next() {
                Some(n) => nodes.push(n),
                None => break,
            }
        }
        nodes.extend(removed.map(|(_, n)| n));
        self.nodes = nodes;
    }

    /// Re-plans the pods of `remove`: first onto the rest of the cluster alone (a delete),
    /// then with new nodes (a replacement). The cheaper acceptable one wins.
    fn evaluate(
        &mut self,
        input: &ConsolidationInput<'_>,
        opts: &ConsolidationOptions,
        remove: &[String],
    ) -> Result<Proposal, String> {
        let (w, lent) = self.lend(remove);
        let r = self.evaluate_on(input, opts, remove, &w);
        self.give_back(w, lent);
        r
    }

    /// `evaluate` on the lent workload `w`.
    fn evaluate_on(
        &self,
        input: &ConsolidationInput<'_>,
        opts: &ConsolidationOptions,
        remove: &[String],
        w: &Workload,
    ) -> Result<Proposal, String> {
        let facts: Vec<&NodeFacts> = remove.iter().filter_map(|n| self.facts(n)).collect();
        let removed_price: f64 = facts.iter().map(|f| f.price_per_hour).sum();
        let pods: Vec<String> = w
            .classes
            .iter()
            .flat_map(|c| (0..c.count()).map(|i| c.pod_key(i)))
            .collect();
        let no_pools = PolicySet {
            pools: vec![],
            ..input.policy.clone()
        };
        // The rest of the cluster's free room bounds what a delete can place: when the pods
        // ask for more cpu or memory than it has, skip that solve.
        let (mut need_cpu, mut need_mem) = (0i64, 0i64);
        for c in &w.classes {
            need_cpu += c.requests.cpu_milli * c.count() as i64;
            need_mem += c.requests.memory * c.count() as i64;
        }
        let (mut free_cpu, mut free_mem) = (0i64, 0i64);
        for n in &w.nodes {
            free_cpu += (n.allocatable.cpu_milli - n.used.cpu_milli).max(0);
            free_mem += (n.allocatable.memory - n.used.memory).max(0);
        }
        let delete = if need_cpu <= free_cpu && need_mem <= free_mem {
            self.try_plan(input, &no_pools, w, |_| Ok(()))
        } else {
            Err(String::new())
        };
        if let Ok(plan) = delete {
            return Ok(Proposal {
                remove: remove.to_vec(),
                plan,
                pods,
                saving: removed_price,
            });
        }
        // The margin and Karpenter's capacity rules are checked before the validator: they
        // are cheap, and a re-plan they refuse need not be validated.
        let plan = self.try_plan(input, input.policy, w, |plan| {
            let saving = removed_price - plan.total_price_per_hour;
            let margin = (opts.margin_fraction * removed_price).max(opts.margin_min_per_hour);
            if saving <= 0.0 || saving < margin {
                return Err(format!(
                    "no cheaper placement: replacing saves ${saving:.4}/hour, below the margin of ${margin:.4}/hour"
                ));
            }
            capacity_rules(&facts, plan, removed_price, opts)
        })?;
        let saving = removed_price - plan.total_price_per_hour;
        Ok(Proposal {
            remove: remove.to_vec(),
            plan,
            pods,
            saving,
        })
    }

    /// Solves `w` with `policy`: every pod placed, `accept` content with the plan, and the
    /// plan valid; or why not.
    fn try_plan(
        &self,
        input: &ConsolidationInput<'_>,
        policy: &PolicySet,
        w: &Workload,
        accept: impl FnOnce(&Plan) -> Result<(), String>,
    ) -> Result<Plan, String> {
        let si = SolveInput {
            policy,
            catalog: input.catalog,
            workload: w,
            scorer: None,
            unavailable: input.unavailable,
        };
        let plan = solve(&si);
        if let Some(u) = plan.unschedulable.first() {
            return Err(format!(
                "its pods do not all fit elsewhere ({} does not: {})",
                u.pod,
                u.reasons.first().map(String::as_str).unwrap_or("no reason")
            ));
        }
        accept(&plan)?;
        let bad = validate(&plan, &si);
        if let Some(v) = bad.first() {
            return Err(format!("the re-plan fails validation: {v}"));
        }
        Ok(plan)
    }

    /// Makes the move: removes the nodes, binds the moved pods where the plan put them and
    /// adds the launched nodes.
    fn apply(&mut self, p: Proposal) -> Move {
        let mut class_of: HashMap<String, (PodClass, String)> = HashMap::new();
        for n in &p.remove {
            for c in self.pods.remove(n).into_iter().flatten() {
                for name in &c.pod_names {
                    let key = format!("{}/{}", c.namespace, name);
                    class_of.insert(key, (c.clone(), name.clone()));
                }
            }
        }
        for n in &p.remove {
            self.remove(n);
        }
        let mut launch = Vec::new();
        for mut pn in p.plan.nodes {
            let base = pn.name.clone();
            let mut k = 1;
            while self.has(&pn.name) {
                k += 1;
                pn.name = format!("{base}-{k}");
            }
            let mut labels = pn.labels.clone();
            labels.insert(crate::ir::labels::HOSTNAME.to_string(), pn.name.clone());
            self.index.insert(pn.name.clone(), self.nodes.len());
            self.nodes.push(ExistingNode {
                name: pn.name.clone(),
                labels,
                taints: pn.taints.clone(),
                allocatable: pn.allocatable.clone(),
                used: pn.requested.clone(),
                pods: vec![],
            });
            self.facts.insert(
                pn.name.clone(),
                NodeFacts {
                    name: pn.name.clone(),
                    pool: Some(pn.pool.clone()),
                    initialized: true,
                    instance_type: pn.instance_type.clone(),
                    zone: pn.zone.clone(),
                    capacity_type: pn.capacity_type,
                    price_per_hour: pn.price_per_hour,
                    stable_for: None,
                    do_not_disrupt: None,
                    pdb_blocked: None,
                },
            );
            for key in &pn.pods {
                self.bind(&pn.name, key, &class_of, false);
            }
            launch.push(pn);
        }
        for e in &p.plan.existing {
            for key in &e.pods {
                self.bind(&e.node, key, &class_of, true);
            }
        }
        Move {
            reason: Reason::Underutilized,
            remove: p.remove,
            launch,
            pods: p.pods,
            saving_per_hour: p.saving,
        }
    }

    /// Binds pod `key` (one of the moved pods) to node `n`.
    fn bind(
        &mut self,
        n: &str,
        key: &str,
        class_of: &HashMap<String, (PodClass, String)>,
        add_requests: bool,
    ) {
        let (Some(&i), Some((c, name))) = (self.index.get(n), class_of.get(key)) else {
            return;
        };
        let node = &mut self.nodes[i];
        if add_requests {
            let mut r = c.requests.clone();
            r.pods = r.pods.max(1);
            node.used.add(&r);
        }
        node.pods.push(BoundPod {
            namespace: c.namespace.clone(),
            name: name.clone(),
            labels: c.labels.clone(),
            host_ports: c.host_ports.clone(),
        });
        let cs = self.pods.entry(n.to_string()).or_default();
        match cs.iter_mut().find(|x| x.id == c.id) {
            Some(x) => x.pod_names.push(name.clone()),
            None => cs.push(PodClass {
                pod_names: vec![name.clone()],
                ..c.clone()
            }),
        }
    }

    fn remove(&mut self, n: &str) {
        let Some(i) = self.index.remove(n) else {
            return;
        };
        self.nodes.remove(i);
        for (k, v) in self.index.iter_mut() {
            let _ = k;
            if *v > i {
                *v -= 1;
            }
        }
        self.pods.remove(n);
    }

    fn into_cluster(self) -> Cluster {
        let mut pods: Vec<NodePods> = self
            .pods
            .into_iter()
            .filter(|(n, _)| self.index.contains_key(n))
            .map(|(node, classes)| NodePods { node, classes })
            .collect();
        pods.sort_by(|a, b| a.node.cmp(&b.node));
        let nodes = self
            .nodes
            .iter()
            .filter_map(|n| self.facts.get(&n.name).cloned())
            .collect();
        Cluster {
            cluster: Workload {
                classes: vec![],
                daemonsets: self.daemonsets,
                nodes: self.nodes,
            },
            pods,
            nodes,
        }
    }
}

/// Karpenter's limits on replacements: no pricier capacity type (spot → on-demand), and
/// spot → spot only when the replacement can choose among enough cheaper types (so that
/// it is not the one spot pool about to be reclaimed).
fn capacity_rules(
    removed: &[&NodeFacts],
    plan: &Plan,
    removed_price: f64,
    opts: &ConsolidationOptions,
) -> Result<(), String> {
    let all_spot = !removed.is_empty()
        && removed
            .iter()
            .all(|f| f.capacity_type == CapacityType::Spot);
    if !all_spot {
        return Ok(());
    }
    for n in &plan.nodes {
        if n.capacity_type != CapacityType::Spot {
            return Err(format!(
                "replacing spot by {} (a pricier capacity type) is not done",
                n.capacity_type.as_str()
            ));
        }
        let cheaper = n
            .instance_type_options
            .iter()
            .filter(|o| o.price_per_hour < removed_price)
            .count();
        if cheaper < opts.spot_to_spot_min_types {
            return Err(format!(
                "spot-to-spot replacement needs {} cheaper instance types; {} has {cheaper}",
                opts.spot_to_spot_min_types, n.instance_type
            ));
        }
    }
    Ok(())
}

/// The cluster a plan leaves once its nodes are launched and its pods bound, with `keep`
/// deciding which pods are still there (the others have gone away since). For benchmarks
/// and tests: a real cluster is read from the API server instead.
pub fn cluster_from_plan(
    plan: &Plan,
    workload: &Workload,
    mut keep: impl FnMut(&str) -> bool,
) -> Cluster {
    use crate::ir::labels as l;
    let mut class_of: HashMap<String, (usize, usize)> = HashMap::new();
    for (ci, c) in workload.classes.iter().enumerate() {
        for i in 0..c.count() {
            class_of.insert(c.pod_key(i), (ci, i));
        }
    }
    let mut cluster = Workload {
        classes: vec![],
        daemonsets: workload.daemonsets.clone(),
        nodes: workload.nodes.clone(),
    };
    let mut pods = Vec::new();
    let mut nodes = Vec::new();
    for n in &plan.nodes {
        let mut labels = n.labels.clone();
        labels.insert(l::HOSTNAME.into(), n.name.clone());
        labels.insert(l::ZONE.into(), n.zone.clone());
        labels.insert(l::CAPACITY_TYPE.into(), n.capacity_type.as_str().into());
        labels.insert(l::INSTANCE_TYPE.into(), n.instance_type.clone());
        labels.insert(
            crate::catalog::node_labels::POOL_LABEL.into(),
            n.pool.clone(),
        );
        let mut used = n.requested.clone();
        let mut bound = Vec::new();
        let mut classes: Vec<PodClass> = Vec::new();
        for key in &n.pods {
            let Some(&(ci, i)) = class_of.get(key) else {
                continue;
            };
            let c = &workload.classes[ci];
            let name = c.pod_names[i].clone();
            if !keep(key) {
                let mut r = c.requests.clone();
                r.pods = r.pods.max(1);
                used.sub(&r);
                continue;
            }
            bound.push(BoundPod {
                namespace: c.namespace.clone(),
                name: name.clone(),
                labels: c.labels.clone(),
                host_ports: c.host_ports.clone(),
            });
            match classes.iter_mut().find(|x| x.id == c.id) {
                Some(x) => x.pod_names.push(name),
                None => classes.push(PodClass {
                    pod_names: vec![name],
                    ..c.clone()
                }),
            }
        }
        cluster.nodes.push(ExistingNode {
            name: n.name.clone(),
            labels,
            taints: n.taints.clone(),
            allocatable: n.allocatable.clone(),
            used,
            pods: bound,
        });
        pods.push(NodePods {
            node: n.name.clone(),
            classes,
        });
        nodes.push(NodeFacts {
            name: n.name.clone(),
            pool: Some(n.pool.clone()),
            initialized: true,
            instance_type: n.instance_type.clone(),
            zone: n.zone.clone(),
            capacity_type: n.capacity_type,
            price_per_hour: n.price_per_hour,
            stable_for: None,
            do_not_disrupt: None,
            pdb_blocked: None,
        });
    }
    Cluster {
        cluster,
        pods,
        nodes,
    }
}

impl Cluster {
    /// Every workload pod of the cluster, as pending classes (one per class id): what a
    /// fresh plan of the same pods would place.
    pub fn pending(&self) -> Vec<PodClass> {
        let mut out: Vec<PodClass> = Vec::new();
        let mut by_id: HashMap<String, usize> = HashMap::new();
        for np in &self.pods {
            for c in &np.classes {
                match by_id.get(&c.id) {
                    Some(&i) => out[i].pod_names.extend(c.pod_names.iter().cloned()),
                    None => {
                        by_id.insert(c.id.clone(), out.len());
                        out.push(c.clone());
                    }
                }
            }
        }
        out
    }

    /// $/hour of the nodes with facts.
    pub fn price_per_hour(&self) -> f64 {
        self.nodes.iter().map(|f| f.price_per_hour).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;

    /// The workload `State::lend` hands a re-plan (nodes moved out, bound pods no term counts
    /// left out) plans and validates exactly as the whole cluster without the removed nodes,
    /// and `give_back` leaves the state as it was.
    #[test]
    fn lent_cluster_plans_and_validates_as_the_whole_one() {
        let cat = synth::karpenter_catalog(60);
        let mut pool = synth::default_pool("default");
        pool.disruption.consolidation_policy = ConsolidationPolicy::WhenEmptyOrUnderutilized;
        pool.disruption.consolidate_after = IrDuration::Finite(std::time::Duration::ZERO);
        let policy = PolicySet {
            pools: vec![pool],
            ..Default::default()
        };
        let no_pools = PolicySet {
            pools: vec![],
            ..policy.clone()
        };
        let w = synth::diverse_workload(400, 5);
        let si = |w| SolveInput {
            policy: &policy,
            catalog: &cat,
            workload: w,
            scorer: None,
            unavailable: None,
        };
        let plan = solve(&si(&w));
        let mut n = 0u32;
        let c = cluster_from_plan(&plan, &w, |_| {
            n += 1;
            !n.is_multiple_of(3)
        });
        let input = ConsolidationInput {
            policy: &policy,
            catalog: &cat,
            unavailable: None,
            cluster: c.cluster.clone(),
            pods: c.pods.clone(),
            nodes: c.nodes.clone(),
            budgets: BTreeMap::new(),
        };
        let mut st = State::new(&input);
        let before = st.nodes.clone();
        let names: Vec<String> = before.iter().map(|n| n.name.clone()).collect();
        assert!(names.len() > 20, "{} nodes", names.len());
        let sets = [
            vec![names[0].clone()],
            names[3..9].to_vec(),
            names.iter().step_by(3).cloned().collect(),
        ];
        let mut trimmed_some = false;
        for remove in &sets {
            let (lent, back) = st.lend(remove);
            let whole = Workload {
                classes: lent.classes.clone(),
                daemonsets: lent.daemonsets.clone(),
                nodes: before
                    .iter()
                    .filter(|n| !remove.contains(&n.name))
                    .cloned()
                    .collect(),
            };
            let bound = |w: &Workload| w.nodes.iter().map(|n| n.pods.len()).sum::<usize>();
            trimmed_some |= bound(&lent) < bound(&whole);
            for p in [&policy, &no_pools] {
                let on = |w| SolveInput {
                    policy: p,
                    catalog: &cat,
                    workload: w,
                    scorer: None,
                    unavailable: None,
                };
                let a = solve(&on(&lent));
                let b = solve(&on(&whole));
                assert_eq!(a, b, "removing {remove:?}");
                assert_eq!(validate(&a, &on(&lent)), validate(&b, &on(&whole)));
            }
            st.give_back(lent, back);
            assert_eq!(st.nodes, before);
        }
        assert!(trimmed_some, "no bound pod was left out of any re-plan");
    }
}
