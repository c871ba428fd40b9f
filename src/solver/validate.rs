//! An independent checker of plans: recomputes, from the input alone, that
//! every placed pod fits its node and satisfies every constraint, that no pool
//! limit is exceeded, and that every pod is accounted for exactly once.
//!
//! It shares no code with the packer beyond the IR contracts and the
//! allocatable seam, so a bug in one is unlikely to hide in the other. The
//! property tests and the reference solver are built on it.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use crate::catalog::{CapacityType, Catalog, Offering};
use crate::ir::{Attrs, PlacementKind, Pool, Resources, Subject, labels};
use crate::workload::{DaemonSetOverhead, HostPort, PodClass, untolerated};

use super::capacity::{NodeMap, node_allocatable};
use super::{Plan, SolveInput};

mod bind;

/// Where a pod ended up, as the validator sees it.
#[derive(Debug, Clone)]
struct Place {
    /// Index into plan.nodes, or None for an existing node.
    new: Option<usize>,
    existing: Option<usize>,
    /// Shared by every pod of the node (a plan has thousands of pods).
    labels: Rc<BTreeMap<String, String>>,
}

/// The labels a new node of `pool` launched from `o` carries: exactly the
/// set the controller writes on the Node (`catalog::node_labels`), since
/// that is what kube-scheduler will match and count topology by.
pub fn node_labels(cat: &Catalog, pool: &Pool, o: &Offering) -> BTreeMap<String, String> {
    crate::catalog::node_labels::node_labels(cat, pool, o)
}

/// One label of `node_labels(cat, pool, o)` without building the map.
fn node_label<'a>(cat: &'a Catalog, pool: &'a Pool, o: &Offering, key: &str) -> Option<&'a str> {
    crate::catalog::node_labels::node_label(cat, pool, o, key)
}

struct LabelAttrs<'a>(&'a BTreeMap<String, String>, &'a PodClass, Option<f64>);
impl Attrs for LabelAttrs<'_> {
    fn get(&self, s: &Subject) -> Option<Cow<'_, str>> {
        match s {
            Subject::NodeLabel(k) => self.0.get(k).map(|v| Cow::Borrowed(v.as_str())),
            Subject::NodePrice => self.2.map(|p| Cow::Owned(p.to_string())),
            other => super::tables::class_attr(self.1, other),
        }
    }
}

/// Whether class `c` may run on a node with these labels and taints
/// (hard node-side constraints only); the first reason it may not.
pub fn node_ok(
    input: &SolveInput<'_>,
    class: &PodClass,
    node_labels: &BTreeMap<String, String>,
    taints: &[crate::ir::Taint],
    price: Option<f64>,
) -> Result<(), String> {
    if let Some(t) = untolerated(&class.tolerations, taints) {
        return Err(format!("taint {t} not tolerated"));
    }
    if let Some(k) = class.node_selector.first_violation(node_labels) {
        return Err(format!("nodeSelector {k} not satisfied"));
    }
    if !class.required_affinity.is_empty()
        && !class
            .required_affinity
            .iter()
            .any(|t| t.matches_map(node_labels))
    {
        return Err("required node affinity not satisfied".into());
    }
    if let Some(zs) = &class.volume_zones
        && !node_labels
            .get(labels::ZONE)
            .is_some_and(|z| zs.contains(z))
    {
        return Err("zonal volume in another zone".into());
    }
    let attrs = LabelAttrs(node_labels, class, price);
    let pod_attrs = super::tables::ClassAttrs(class);
    for r in &input.policy.placement {
        if !r.pods.eval(&pod_attrs) {
            continue;
        }
        let m = r.nodes.eval(&attrs);
        match r.kind {
            PlacementKind::Require if !m => {
                return Err("placement rule requires other nodes".into());
            }
            PlacementKind::Deny if m => return Err("placement rule denies the node".into()),
            _ => {}
        }
    }
    Ok(())
}

/// The DaemonSets that run on a node of `pool` carrying labels `lbl`.
fn ds_running<'i>(
    input: &SolveInput<'i>,
    pool: &Pool,
    lbl: &BTreeMap<String, String>,
) -> Vec<&'i DaemonSetOverhead> {
    input
        .workload
        .daemonsets
        .iter()
        .filter(|ds| {
            untolerated(&ds.tolerations, &pool.taints).is_none()
                && ds.node_selector.matches_map(lbl)
                && (ds.required_affinity.is_empty()
                    || ds.required_affinity.iter().any(|t| t.matches_map(lbl)))
        })
        .collect()
}

fn ds_overhead(input: &SolveInput<'_>, pool: &Pool, lbl: &BTreeMap<String, String>) -> Resources {
    let mut r = Resources::zero();
    for ds in ds_running(input, pool, lbl) {
        let mut q = ds.requests.clone();
        q.pods = q.pods.max(1);
        r.add(&q);
    }
    r
}

/// Host ports on one node (kube-scheduler's NodePorts filter): `held` are
/// the ports already taken, with who holds them (DaemonSet pods, pods
/// bound there); each pod of `pods` in turn must find its ports free.
/// One message per pod that finds one taken.
fn port_clashes(
    w: &crate::workload::Workload,
    class_of: &HashMap<String, usize>,
    mut held: Vec<(HostPort, String)>,
    pods: &[String],
) -> Vec<String> {
    let mut errs = Vec::new();
    for pod in pods {
        let Some(&ci) = class_of.get(pod) else {
            continue;
        };
        let ports = &w.classes[ci].host_ports;
        if let Some((hp, who)) = ports.iter().find_map(|p| {
            held.iter()
                .find(|(h, _)| h.conflicts(p))
                .map(|(_, who)| (p, who))
        }) {
            errs.push(format!("pod {pod}: {hp} already held by {who}"));
        }
        held.extend(ports.iter().map(|p| (p.clone(), format!("pod {pod}"))));
    }
    errs
}

/// The ports DaemonSets `ds` hold on a node, for `port_clashes`.
fn ds_ports(ds: &[&DaemonSetOverhead]) -> Vec<(HostPort, String)> {
    ds.iter()
        .flat_map(|d| {
            d.host_ports
                .iter()
                .map(|p| (p.clone(), format!("DaemonSet {}/{}", d.namespace, d.name)))
        })
        .collect()
}

fn pod_requests(c: &PodClass) -> Resources {
    let mut r = c.requests.clone();
    r.pods = r.pods.max(1);
    r
}

/// Every violation the plan commits against the input (empty = valid).
pub fn validate(plan: &Plan, input: &SolveInput<'_>) -> Vec<String> {
    validate_options_of(plan, input, |_| true)
}

/// Offerings of the zones and capacity types the plan's nodes use, by
/// (type name, zone name, capacity type); the first offering wins, as a
/// scan would find it.
fn plan_offerings<'c>(
    plan: &Plan,
    cat: &'c Catalog,
) -> HashMap<(&'c str, &'c str, CapacityType), &'c Offering> {
    let domains: Vec<(usize, CapacityType)> = plan
        .nodes
        .iter()
        .filter_map(|n| {
            let z = cat.zones.iter().position(|z| z.name == n.zone)?;
            Some((z, n.capacity_type))
        })
        .collect();
    let mut by_key = HashMap::new();
    for o in &cat.offerings {
        if !domains.contains(&(o.zone_index as usize, o.capacity_type)) {
            continue;
        }
        let (Some(t), Some(z)) = (
            cat.types.get(o.type_index as usize),
            cat.zones.get(o.zone_index as usize),
        ) else {
            continue;
        };
        by_key
            .entry((t.name.as_str(), z.name.as_str(), o.capacity_type))
            .or_insert(o);
    }
    by_key
}

/// As `validate`, but the fallback options are checked only on the nodes
/// `check_options` picks (by position in `plan.nodes`). Options are a
/// property of one node alone, so a caller that changed only some nodes
/// (consolidation) re-checks only those.
pub fn validate_options_of(
    plan: &Plan,
    input: &SolveInput<'_>,
    check_options: impl Fn(usize) -> bool,
) -> Vec<String> {
    let mut errs = Vec::new();
    let cat = input.catalog;
    let offering_of = plan_offerings(plan, cat);
    let w = input.workload;
    // Pod key -> class index.
    let mut class_of: HashMap<String, usize> = HashMap::new();
    for (ci, c) in w.classes.iter().enumerate() {
        for i in 0..c.count() {
            class_of.insert(c.pod_key(i), ci);
        }
    }
    let topo_keys = involved_keys(input);
    // Host ports are checked only when some pod asks for one.
    let any_ports = w.classes.iter().any(|c| !c.host_ports.is_empty());
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut places: HashMap<String, Place> = HashMap::new();
    // DaemonSet pods on the new nodes: counted in pod (anti-)affinity.
    let mut ds_pods: Vec<(&DaemonSetOverhead, Place)> = Vec::new();
    let mut pool_usage: Vec<Resources> = vec![Resources::zero(); input.policy.pools.len()];
    for en in &w.nodes {
        if let Some(pi) = en
            .labels
            .get(labels::NODEPOOL)
            .and_then(|n| input.policy.pools.iter().position(|p| &p.name == n))
        {
            pool_usage[pi].add(&en.allocatable);
        }
    }
    for (ni, n) in plan.nodes.iter().enumerate() {
        let Some(pi) = input.policy.pools.iter().position(|p| p.name == n.pool) else {
            errs.push(format!("node {}: unknown pool {}", n.name, n.pool));
            continue;
        };
        let pool = &input.policy.pools[pi];
        let Some(&off) =
            offering_of.get(&(n.instance_type.as_str(), n.zone.as_str(), n.capacity_type))
        else {
            errs.push(format!(
                "node {}: no offering {} {} {}",
                n.name,
                n.instance_type,
                n.zone,
                n.capacity_type.as_str()
            ));
            continue;
        };
        if !off.available {
            errs.push(format!("node {}: offering not available", n.name));
        }
        if let Some(u) = input.unavailable
            && u.contains(&n.instance_type, &n.zone, n.capacity_type)
        {
            errs.push(format!("node {}: offering recently unavailable", n.name));
        }
        let lbl = Rc::new(node_labels(cat, pool, off));
        for (k, set) in &pool.requirements.keys {
            if labels::WELL_KNOWN.contains(&k.as_str())
                && k != labels::HOSTNAME
                && !set.allows_opt(lbl.get(k).map(|s| s.as_str()))
            {
                errs.push(format!(
                    "node {}: pool requirement {k} {set} not met",
                    n.name
                ));
            }
        }
        let ty = &cat.types[off.type_index as usize];
        pool_usage[pi].add(&ty.capacity);
        let mut used = ds_overhead(input, pool, &lbl);
        for ds in ds_running(input, pool, &lbl) {
            if !ds.labels.is_empty() {
                let place = Place {
                    new: Some(ni),
                    existing: None,
                    labels: lbl.clone(),
                };
                ds_pods.push((ds, place));
            }
        }
        for pod in &n.pods {
            *seen.entry(pod.as_str()).or_insert(0) += 1;
            let Some(&ci) = class_of.get(pod) else {
                errs.push(format!("node {}: unknown pod {pod}", n.name));
                continue;
            };
            let class = &w.classes[ci];
            used.add(&pod_requests(class));
            if let Err(e) = node_ok(input, class, &lbl, &pool.taints, Some(n.price_per_hour)) {
                errs.push(format!("pod {pod} on {}: {e}", n.name));
            }
            places.insert(
                pod.clone(),
                Place {
                    new: Some(ni),
                    existing: None,
                    labels: lbl.clone(),
                },
            );
        }
        if any_ports {
            let held = ds_ports(&ds_running(input, pool, &lbl));
            for e in port_clashes(w, &class_of, held, &n.pods) {
                errs.push(format!("node {}: {e}", n.name));
            }
        }
        let alloc = node_allocatable(input.policy, pool, ty, &NodeMap(&lbl));
        if let Some(r) = used.first_exceeding(&alloc) {
            errs.push(format!(
                "node {}: {r} requested exceeds allocatable",
                n.name
            ));
        }
        // Every fallback option must also take the pods.
        if n.instance_type_options.first().map(|o| &*o.instance_type) != Some(&n.instance_type) {
            errs.push(format!(
                "node {}: chosen type is not the first option",
                n.name
            ));
        }
        if !check_options(ni) {
            continue;
        }
        let mut distinct: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for opt in &n.instance_type_options {
            let Some(&o2) =
                offering_of.get(&(&*opt.instance_type, n.zone.as_str(), off.capacity_type))
            else {
                errs.push(format!(
                    "node {}: option {} not offered",
                    n.name, opt.instance_type
                ));
                continue;
            };
            let t2 = &cat.types[o2.type_index as usize];
            let l2 = node_labels(cat, pool, o2);
            let mut keys: Vec<&str> = n
                .pods
                .iter()
                .filter_map(|pod| class_of.get(pod))
                .flat_map(|&ci| topo_keys[ci].iter().copied())
                .collect();
            keys.sort_unstable();
            keys.dedup();
            for k in &keys {
                if l2.get(*k) != lbl.get(*k) {
                    errs.push(format!(
                        "node {}: option {} changes topology label {k}",
                        n.name, t2.name
                    ));
                }
            }
            let mut u2 = ds_overhead(input, pool, &l2);
            for pod in &n.pods {
                if let Some(&ci) = class_of.get(pod) {
                    u2.add(&pod_requests(&w.classes[ci]));
                    if let Err(e) = node_ok(
                        input,
                        &w.classes[ci],
                        &l2,
                        &pool.taints,
                        Some(opt.price_per_hour),
                    ) {
                        errs.push(format!(
                            "node {}: option {}: pod {pod}: {e}",
                            n.name, t2.name
                        ));
                    }
                }
            }
            if any_ports
                && !port_clashes(
                    w,
                    &class_of,
                    ds_ports(&ds_running(input, pool, &l2)),
                    &n.pods,
                )
                .is_empty()
            {
                errs.push(format!(
                    "node {}: option {}: host ports clash",
                    n.name, t2.name
                ));
            }
            if u2
                .first_exceeding(&node_allocatable(input.policy, pool, t2, &NodeMap(&l2)))
                .is_some()
            {
                errs.push(format!("node {}: option {} too small", n.name, t2.name));
            }
            for k in pool.requirements.min_values.keys() {
                if let Some(v) = l2.get(k) {
                    distinct.entry(k.as_str()).or_default().push(v.clone());
                }
            }
        }
        for (k, m) in &pool.requirements.min_values {
            let mut v = distinct.remove(k.as_str()).unwrap_or_default();
            v.sort();
            v.dedup();
            if v.len() < *m as usize {
                errs.push(format!(
                    "node {}: {} distinct {k} among options < minValues {m}",
                    n.name,
                    v.len()
                ));
            }
        }
    }
    for e in &plan.existing {
        let Some(ei) = w.nodes.iter().position(|n| n.name == e.node) else {
            errs.push(format!("unknown existing node {}", e.node));
            continue;
        };
        let en = &w.nodes[ei];
        let mut en_labels: Option<Rc<BTreeMap<String, String>>> = None;
        let mut used = en.used.clone();
        for pod in &e.pods {
            *seen.entry(pod.as_str()).or_insert(0) += 1;
            let Some(&ci) = class_of.get(pod) else {
                errs.push(format!("existing {}: unknown pod {pod}", e.node));
                continue;
            };
            used.add(&pod_requests(&w.classes[ci]));
            if let Err(er) = node_ok(input, &w.classes[ci], &en.labels, &en.taints, None) {
                errs.push(format!("pod {pod} on {}: {er}", e.node));
            }
            places.insert(
                pod.clone(),
                Place {
                    new: None,
                    existing: Some(ei),
                    labels: Rc::clone(en_labels.get_or_insert_with(|| Rc::new(en.labels.clone()))),
                },
            );
        }
        if let Some(r) = used.first_exceeding(&en.allocatable) {
            errs.push(format!("existing {}: {r} over allocatable", e.node));
        }
        let bound: Vec<(HostPort, String)> = en
            .pods
            .iter()
            .flat_map(|bp| {
                bp.host_ports
                    .iter()
                    .map(|p| (p.clone(), format!("pod {}/{}", bp.namespace, bp.name)))
            })
            .collect();
        for er in port_clashes(w, &class_of, bound, &e.pods) {
            errs.push(format!("existing {}: {er}", e.node));
        }
    }
    for u in &plan.unschedulable {
        *seen.entry(u.pod.as_str()).or_insert(0) += 1;
    }
    for (pod, _) in class_of.iter() {
        match seen.get(pod.as_str()) {
            None => errs.push(format!("pod {pod} missing from the plan")),
            Some(1) => {}
            Some(n) => errs.push(format!("pod {pod} appears {n} times")),
        }
    }
    for (pi, pool) in input.policy.pools.iter().enumerate() {
        for (k, q) in &pool.limits {
            let mut lim = Resources::zero();
            lim.set(k, *q);
            if pool_usage[pi].get(k) > lim.get(k) {
                errs.push(format!("pool {}: limit {k} exceeded", pool.name));
            }
        }
    }
    let total: f64 = plan.nodes.iter().map(|n| n.price_per_hour).sum();
    if (total - plan.total_price_per_hour).abs() > 1e-6 * total.max(1.0) {
        errs.push("total_price_per_hour is not the sum of node prices".into());
    }
    errs.extend(check_topology(input, &class_of, &places, &ds_pods));
    errs
}

/// Per class: the topology keys (hostname aside) its node's value matters
/// for: its own terms' keys, and the keys of every term that counts its
/// pods. A fallback option of a node must keep the node's value for each
/// key of its pods, or a launch could break the term.
fn involved_keys<'w>(input: &SolveInput<'w>) -> Vec<Vec<&'w str>> {
    let w = input.workload;
    // Classes by (namespace, labels): selectors match groups, not classes.
    type Group<'a> = (&'a str, &'a BTreeMap<String, String>);
    let mut groups: Vec<(Group<'_>, Vec<usize>)> = Vec::new();
    let mut index: HashMap<Group<'_>, usize> = HashMap::new();
    for (ci, c) in w.classes.iter().enumerate() {
        let key = (c.namespace.as_str(), &c.labels);
        let g = *index.entry(key).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(ci);
    }
    let mut out: Vec<Vec<&str>> = vec![Vec::new(); w.classes.len()];
    for (ci, c) in w.classes.iter().enumerate() {
        for s in &c.topology_spread {
            if s.topology_key == labels::HOSTNAME {
                continue;
            }
            out[ci].push(&s.topology_key);
            for ((ns, lbl), members) in &groups {
                if *ns == c.namespace && s.selector.matches(lbl) {
                    for &cj in members {
                        out[cj].push(&s.topology_key);
                    }
                }
            }
        }
        for a in &c.pod_affinity {
            if a.topology_key == labels::HOSTNAME {
                continue;
            }
            out[ci].push(&a.topology_key);
            for ((ns, lbl), members) in &groups {
                let ns_ok = a.all_namespaces
                    || if a.namespaces.is_empty() {
                        *ns == c.namespace
                    } else {
                        a.namespaces.iter().any(|x| x == ns)
                    };
                if ns_ok && a.selector.matches(lbl) {
                    for &cj in members {
                        out[cj].push(&a.topology_key);
                    }
                }
            }
        }
    }
    for keys in &mut out {
        keys.sort_unstable();
        keys.dedup();
    }
    out
}

/// The key identifying a node for topology purposes.
fn node_id(p: &Place) -> String {
    match (p.new, p.existing) {
        (Some(n), _) => format!("new{n}"),
        (_, Some(e)) => format!("old{e}"),
        _ => String::new(),
    }
}

/// Domain of a place for a topology key.
fn domain(p: &Place, key: &str) -> Option<String> {
    if key == labels::HOSTNAME {
        return Some(node_id(p));
    }
    p.labels.get(key).cloned()
}

fn check_topology(
    input: &SolveInput<'_>,
    class_of: &HashMap<String, usize>,
    places: &HashMap<String, Place>,
    ds_pods: &[(&DaemonSetOverhead, Place)],
) -> Vec<String> {
    let mut errs = Vec::new();
    let w = input.workload;
    // Every counted pod: (namespace, labels, domain lookup).
    struct Counted<'a> {
        ns: &'a str,
        labels: &'a BTreeMap<String, String>,
        place: Place,
    }
    let mut counted: Vec<Counted<'_>> = Vec::new();
    let mut sorted: Vec<(&String, &Place)> = places.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    for (pod, pl) in &sorted {
        if let Some(&ci) = class_of.get(*pod) {
            counted.push(Counted {
                ns: &w.classes[ci].namespace,
                labels: &w.classes[ci].labels,
                place: (*pl).clone(),
            });
        }
    }
    let planned = counted.len();
    // kube-scheduler counts a DaemonSet's pod on every node it runs on.
    for (ds, place) in ds_pods {
        counted.push(Counted {
            ns: &ds.namespace,
            labels: &ds.labels,
            place: place.clone(),
        });
    }
    for (ei, en) in w.nodes.iter().enumerate() {
        if en.pods.is_empty() {
            continue;
        }
        let en_labels = Rc::new(en.labels.clone());
        for bp in &en.pods {
            counted.push(Counted {
                ns: &bp.namespace,
                labels: &bp.labels,
                place: Place {
                    new: None,
                    existing: Some(ei),
                    labels: Rc::clone(&en_labels),
                },
            });
        }
    }
    // Counted pods per domain, per (selector, namespaces it counts in, topology key): the
    // pods of a workload share a handful of terms, so each term's counts are made once
    // instead of once per pod that carries it.
    type TermKey<'a> = (
        &'a crate::workload::LabelSelector,
        bool,
        &'a [String],
        &'a str,
        &'a str,
    );
    let mut per_term: HashMap<TermKey<'_>, HashMap<String, usize>> = HashMap::new();
    for (pod, pl) in &sorted {
        let Some(&ci) = class_of.get(*pod) else {
            continue;
        };
        let class = &w.classes[ci];
        for a in &class.pod_affinity {
            if a.weight.is_some() {
                continue;
            }
            let Some(d) = domain(pl, &a.topology_key) else {
                // kube-scheduler: a node without the key matches no
                // affinity term and passes every anti-affinity term.
                if !a.anti {
                    errs.push(format!(
                        "pod {pod}: no {} label on its node for pod affinity",
                        a.topology_key
                    ));
                }
                continue;
            };
            // Affinity depends on the binding order: `bind::replay` below.
            if !a.anti {
                continue;
            }
            let ns_ok = |ns: &str| {
                a.all_namespaces
                    || if a.namespaces.is_empty() {
                        ns == class.namespace
                    } else {
                        a.namespaces.iter().any(|x| x == ns)
                    }
            };
            let term: TermKey<'_> = (
                &a.selector,
                a.all_namespaces,
                &a.namespaces,
                if a.all_namespaces || !a.namespaces.is_empty() {
                    ""
                } else {
                    &class.namespace
                },
                &a.topology_key,
            );
            let by_domain = per_term.entry(term).or_insert_with(|| {
                let mut m: HashMap<String, usize> = HashMap::new();
                for q in &counted {
                    if ns_ok(q.ns)
                        && a.selector.matches(q.labels)
                        && let Some(dq) = domain(&q.place, &a.topology_key)
                    {
                        *m.entry(dq).or_insert(0) += 1;
                    }
                }
                m
            });
            let others = by_domain.get(&d).copied().unwrap_or(0);
            let self_match = ns_ok(&class.namespace) && a.selector.matches(&class.labels);
            let others = others - usize::from(self_match);
            if others > 0 {
                errs.push(format!(
                    "pod {pod}: anti-affinity on {} violated",
                    a.topology_key
                ));
            }
        }
    }
    // A hard spread filters out nodes without its key.
    for (pod, pl) in &sorted {
        let Some(&ci) = class_of.get(*pod) else {
            continue;
        };
        for s in &w.classes[ci].topology_spread {
            if s.hard && domain(pl, &s.topology_key).is_none() {
                errs.push(format!(
                    "pod {pod}: no {} label on its node for its topology spread",
                    s.topology_key
                ));
            }
        }
    }
    // Hard spreads and required affinity, pod by pod in kube-scheduler's
    // binding order, each against the pods bound before it.
    let prebound: Vec<bind::Prebound<'_>> = counted
        .iter()
        .skip(planned)
        .map(|q| bind::Prebound {
            ns: q.ns,
            labels: q.labels,
            place: &q.place,
        })
        .collect();
    // Pod key -> its index in its class (creation order within the class).
    let mut index: HashMap<String, usize> = HashMap::new();
    for c in &w.classes {
        for i in 0..c.count() {
            index.insert(c.pod_key(i), i);
        }
    }
    let pods: Vec<(&str, usize, usize, &Place)> = sorted
        .iter()
        .filter_map(|(pod, pl)| {
            let &ci = class_of.get(*pod)?;
            let i = *index.get(*pod)?;
            Some((pod.as_str(), ci, i, *pl))
        })
        .collect();
    errs.extend(bind::replay(input, &prebound, &pods));
    errs
}

/// Whether `pool`'s requirements on well-known labels admit offering `o`
/// (the pool's own labels satisfy the rest; hostname is not known yet).
pub(super) fn pool_admits(cat: &Catalog, pool: &Pool, o: &Offering) -> bool {
    pool.requirements.keys.iter().all(|(k, set)| {
        !labels::WELL_KNOWN.contains(&k.as_str())
            || k == labels::HOSTNAME
            || set.allows_opt(node_label(cat, pool, o, k))
    })
}

/// Domains (values of `key`) where any of `classes` could run; every
/// usable offering's when `classes` is empty (nodeAffinityPolicy Ignore).
pub(super) fn eligible_domains(
    input: &SolveInput<'_>,
    classes: &[usize],
    key: &str,
) -> Vec<String> {
    let cat = input.catalog;
    let mut out: Vec<String> = Vec::new();
    for pool in &input.policy.pools {
        for o in &cat.offerings {
            if !o.available || o.type_index as usize >= cat.types.len() {
                continue;
            }
            // Cheap checks first: the full label map is built only for an
            // offering that passes the pool and opens a domain not yet seen.
            if !pool_admits(cat, pool, o) {
                continue;
            }
            let Some(d) = node_label(cat, pool, o, key) else {
                continue;
            };
            if out.iter().any(|x| x == d) {
                continue;
            }
            let lbl = node_labels(cat, pool, o);
            let Some(d) = lbl.get(key) else { continue };
            if classes.is_empty()
                || classes.iter().any(|&ci| {
                    node_ok(
                        input,
                        &input.workload.classes[ci],
                        &lbl,
                        &pool.taints,
                        o.price,
                    )
                    .is_ok()
                })
            {
                out.push(d.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `node_label` answers every key exactly as the map `node_labels`
    /// builds, including pool labels that override catalog ones and a
    /// single-value custom requirement.
    #[test]
    fn node_label_agrees_with_node_labels() {
        let cat = crate::catalog::embedded::embedded_static().expect("embedded catalog decodes");
        let mut pool = crate::synth::default_pool("p");
        pool.labels.insert("team".into(), "web".into());
        pool.labels
            .insert(labels::ARCH.into(), "overridden-by-pool".into());
        pool.requirements.require_in("example.com/tier", &["gold"]);
        pool.requirements.require_in(labels::ARCH, &["amd64"]);
        let mut checked = 0;
        for o in cat.offerings.iter().step_by(97) {
            let map = node_labels(cat, &pool, o);
            let mut keys: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
            keys.extend([
                labels::HOSTNAME,
                labels::ZONE_BETA,
                labels::INSTANCE_TYPE_BETA,
                "not-a-label",
            ]);
            for k in keys {
                assert_eq!(
                    node_label(cat, &pool, o, k),
                    map.get(k).map(|v| v.as_str()),
                    "key {k}"
                );
                checked += 1;
            }
        }
        assert!(checked > 1000, "only {checked} lookups compared");
    }
}
