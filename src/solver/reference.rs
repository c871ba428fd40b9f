//! A slow, obviously-correct reference solver for tiny inputs: it enumerates
//! every way to put the pods on existing nodes or into groups, every offering
//! for each group, keeps the plans the independent validator accepts, and
//! returns one that places the most pods at the lowest price.
//!
//! Exponential: meant for property tests with a handful of pods and offerings.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::catalog::Offering;
use crate::ir::cost::{PriceInput, PriceOutcome, effective_price};
use crate::ir::{Attrs, Subject, labels};

use super::capacity::{NodeMap, node_allocatable};
use super::validate::{node_labels, node_ok, validate};
use super::{ExistingPlacement, InstanceOption, Plan, PlannedNode, SolveInput, Unschedulable};

struct L<'a>(&'a BTreeMap<String, String>);
impl Attrs for L<'_> {
    fn get(&self, s: &Subject) -> Option<Cow<'_, str>> {
        match s {
            Subject::NodeLabel(k) => self.0.get(k).map(|v| Cow::Borrowed(v.as_str())),
            _ => None,
        }
    }
}

/// One (pool, offering) a group could be launched as, with its price.
#[derive(Clone)]
struct Cand {
    pool: usize,
    offering: usize,
    price: f64,
}

fn price_of(input: &SolveInput<'_>, pool: usize, o: &Offering) -> Option<f64> {
    let cat = input.catalog;
    let p = &input.policy.pools[pool];
    let lbl = node_labels(cat, p, o);
    let t = &cat.types[o.type_index as usize];
    let od = cat
        .offerings
        .iter()
        .find(|x| {
            x.type_index == o.type_index
                && x.zone_index == o.zone_index
                && x.capacity_type == crate::catalog::CapacityType::OnDemand
        })
        .and_then(|x| x.price);
    let pin = PriceInput {
        attrs: &L(&lbl),
        price: o.price,
        price_known: o.price.is_some() && !o.price_estimated,
        on_demand_price: od,
        is_spot: o.capacity_type == crate::catalog::CapacityType::Spot,
        vcpus: f64::from(t.vcpus),
        memory_gib: t.memory_mib as f64 / 1024.0,
    };
    match effective_price(&input.policy.cost, &pin) {
        PriceOutcome::Price(p) => Some(p),
        _ => None,
    }
}

/// The best plan by exhaustive search, or None when the input is too large
/// (more than `max_pods` pods).
pub fn solve_reference(input: &SolveInput<'_>, max_pods: usize) -> Option<Plan> {
    let w = input.workload;
    let cat = input.catalog;
    let pods: Vec<(usize, usize)> = w
        .classes
        .iter()
        .enumerate()
        .flat_map(|(ci, c)| (0..c.count()).map(move |i| (ci, i)))
        .collect();
    if pods.len() > max_pods {
        return None;
    }
    let mut cands = Vec::new();
    for (pi, pool) in input.policy.pools.iter().enumerate() {
        for (oi, o) in cat.offerings.iter().enumerate() {
            if !o.available
                || o.type_index as usize >= cat.types.len()
                || o.zone_index as usize >= cat.zones.len()
            {
                continue;
            }
            let lbl = node_labels(cat, pool, o);
            let ok = pool.requirements.keys.iter().all(|(k, set)| {
                !labels::WELL_KNOWN.contains(&k.as_str())
                    || k == labels::HOSTNAME
                    || set.allows_opt(lbl.get(k).map(|s| s.as_str()))
            });
            if let (true, Some(price)) = (ok, price_of(input, pi, o)) {
                cands.push(Cand {
                    pool: pi,
                    offering: oi,
                    price,
                });
            }
        }
    }
    let mut s = Search {
        input,
        pods,
        cands,
        best: None,
        assign: Vec::new(),
    };
    s.assign_pods(0, 0);
    s.best.map(|(_, _, p)| p)
}

/// Where a pod goes in an assignment.
#[derive(Clone, Copy)]
enum Slot {
    Out,
    Existing(usize),
    Group(usize),
}

struct Search<'a, 'b> {
    input: &'a SolveInput<'b>,
    pods: Vec<(usize, usize)>,
    cands: Vec<Cand>,
    /// (placed, price, plan)
    best: Option<(usize, f64, Plan)>,
    assign: Vec<Slot>,
}

impl Search<'_, '_> {
    fn assign_pods(&mut self, i: usize, groups: usize) {
        if i == self.pods.len() {
            self.choose_offerings(groups);
            return;
        }
        let mut options = vec![Slot::Out];
        options.extend((0..self.input.workload.nodes.len()).map(Slot::Existing));
        options.extend((0..=groups).map(Slot::Group));
        for o in options {
            self.assign.push(o);
            let g = match o {
                Slot::Group(x) if x == groups => groups + 1,
                _ => groups,
            };
            self.assign_pods(i + 1, g);
            self.assign.pop();
        }
    }

    fn choose_offerings(&mut self, groups: usize) {
        let placed = self
            .assign
            .iter()
            .filter(|s| !matches!(s, Slot::Out))
            .count();
        if let Some((bp, _, _)) = &self.best
            && placed < *bp
        {
            return;
        }
        // Per group, the candidates that could hold it on their own.
        let mut per_group: Vec<Vec<usize>> = Vec::new();
        for g in 0..groups {
            let members: Vec<usize> = (0..self.pods.len())
                .filter(|&i| matches!(self.assign[i], Slot::Group(x) if x == g))
                .collect();
            let ok: Vec<usize> = (0..self.cands.len())
                .filter(|&ci| self.group_fits(&members, ci))
                .collect();
            if ok.is_empty() {
                return;
            }
            per_group.push(ok);
        }
        let mut pick = vec![0usize; groups];
        loop {
            let price: f64 = (0..groups)
                .map(|g| self.cands[per_group[g][pick[g]]].price)
                .sum();
            let better = match &self.best {
                None => true,
                Some((bp, bc, _)) => placed > *bp || (placed == *bp && price < *bc - 1e-9),
            };
            if better {
                let plan = self.build(groups, &per_group, &pick);
                if validate(&plan, self.input).is_empty() {
                    self.best = Some((placed, price, plan));
                }
            }
            // next combination
            let mut g = 0;
            loop {
                if g == groups {
                    return;
                }
                pick[g] += 1;
                if pick[g] < per_group[g].len() {
                    break;
                }
                pick[g] = 0;
                g += 1;
            }
        }
    }

    fn group_fits(&self, members: &[usize], ci: usize) -> bool {
        let input = self.input;
        let cat = input.catalog;
        let c = &self.cands[ci];
        let pool = &input.policy.pools[c.pool];
        let o = &cat.offerings[c.offering];
        let lbl = node_labels(cat, pool, o);
        let alloc = node_allocatable(
            input.policy,
            pool,
            &cat.types[o.type_index as usize],
            &NodeMap(&lbl),
        );
        let mut used = crate::ir::Resources::zero();
        let mut ports: Vec<&crate::workload::HostPort> = Vec::new();
        for &m in members {
            let class = &input.workload.classes[self.pods[m].0];
            if node_ok(input, class, &lbl, &pool.taints, Some(c.price)).is_err() {
                return false;
            }
            // Host ports: no two members may hold conflicting ones (the
            // validator also checks the DaemonSets' ports).
            for hp in &class.host_ports {
                if ports.iter().any(|q| q.conflicts(hp)) {
                    return false;
                }
            }
            ports.extend(&class.host_ports);
            let mut r = class.requests.clone();
            r.pods = r.pods.max(1);
            used.add(&r);
        }
        used.fits_in(&alloc)
    }

    fn build(&self, groups: usize, per_group: &[Vec<usize>], pick: &[usize]) -> Plan {
        let input = self.input;
        let cat = input.catalog;
        let w = input.workload;
        let mut plan = Plan::default();
        // Fallback options keep the node's value of every key a topology
        // term counts by (any node label), as the validator demands.
        let topo_keys: Vec<&str> = w
            .classes
            .iter()
            .flat_map(|c| {
                c.topology_spread
                    .iter()
                    .map(|s| s.topology_key.as_str())
                    .chain(c.pod_affinity.iter().map(|a| a.topology_key.as_str()))
            })
            .filter(|k| *k != labels::HOSTNAME)
            .collect();
        for g in 0..groups {
            let c = &self.cands[per_group[g][pick[g]]];
            let pool = &input.policy.pools[c.pool];
            let o = &cat.offerings[c.offering];
            let pods: Vec<String> = (0..self.pods.len())
                .filter(|&i| matches!(self.assign[i], Slot::Group(x) if x == g))
                .map(|i| w.classes[self.pods[i].0].pod_key(self.pods[i].1))
                .collect();
            let mut options = vec![InstanceOption {
                instance_type: cat.types[o.type_index as usize].name.as_str().into(),
                price_per_hour: c.price,
            }];
            let lbl = node_labels(cat, pool, o);
            let mut others: Vec<&Cand> = per_group[g]
                .iter()
                .map(|&ci| &self.cands[ci])
                .filter(|x| {
                    let xo = &cat.offerings[x.offering];
                    x.pool == c.pool
                        && x.offering != c.offering
                        && xo.zone_index == o.zone_index
                        && xo.capacity_type == o.capacity_type
                        && {
                            let l2 = node_labels(cat, pool, xo);
                            topo_keys.iter().all(|k| l2.get(*k) == lbl.get(*k))
                        }
                })
                .collect();
            others.sort_by(|a, b| {
                a.price
                    .total_cmp(&b.price)
                    .then(a.offering.cmp(&b.offering))
            });
            options.extend(others.into_iter().map(|x| {
                InstanceOption {
                    instance_type: cat.types[cat.offerings[x.offering].type_index as usize]
                        .name
                        .as_str()
                        .into(),
                    price_per_hour: x.price,
                }
            }));
            let name = format!("{}-{}", pool.name, g + 1);
            plan.nodes.push(PlannedNode {
                name: name.clone(),
                pool: pool.name.clone(),
                node_class: pool.node_class.clone(),
                zone: cat.zones[o.zone_index as usize].name.clone(),
                capacity_type: o.capacity_type,
                instance_type: cat.types[o.type_index as usize].name.as_str().into(),
                price_per_hour: c.price,
                instance_type_options: options,
                pods,
                requested: Default::default(),
                allocatable: Default::default(),
                labels: crate::catalog::node_labels::planned_node_labels(cat, pool, o, &name),
                taints: pool.taints.clone(),
                startup_taints: pool.startup_taints.clone(),
            });
        }
        for (ei, en) in w.nodes.iter().enumerate() {
            let pods: Vec<String> = (0..self.pods.len())
                .filter(|&i| matches!(self.assign[i], Slot::Existing(x) if x == ei))
                .map(|i| w.classes[self.pods[i].0].pod_key(self.pods[i].1))
                .collect();
            if !pods.is_empty() {
                plan.existing.push(ExistingPlacement {
                    node: en.name.clone(),
                    pods,
                });
            }
        }
        for (i, s) in self.assign.iter().enumerate() {
            if matches!(s, Slot::Out) {
                plan.unschedulable.push(Unschedulable {
                    pod: w.classes[self.pods[i].0].pod_key(self.pods[i].1),
                    reasons: vec!["no valid placement found by exhaustive search".into()],
                });
            }
        }
        // Folded from +0.0: an empty f64 `sum()` is -0.0, which prints as `$-0.0000`.
        plan.total_price_per_hour = plan.nodes.iter().fold(0.0, |t, n| t + n.price_per_hour);
        plan
    }
}
