//! Topology bookkeeping: the label selectors that spreads and pod
//! (anti-)affinity terms count, interned once, and each class's constraints
//! in a form the packer checks with array lookups.

use std::collections::{BTreeMap, HashMap};

use crate::ir::labels;
use crate::workload::{LabelSelector, PodClass, Workload};

/// A topology key: zone, hostname and capacity type have fast paths (a
/// node's zone and capacity type are fixed by its domain); any other node
/// label is `Label`, an index into `Topo::keys`, whose value on a node is
/// that label's value there (the node's labels as the controller writes
/// them, `catalog::node_labels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TKey {
    Zone,
    Host,
    CapacityType,
    Label(u16),
}

impl TKey {
    /// Maps a Kubernetes topology key with a fast path; None for any other label.
    pub fn parse(k: &str) -> Option<TKey> {
        match k {
            labels::ZONE | labels::ZONE_BETA => Some(TKey::Zone),
            labels::HOSTNAME => Some(TKey::Host),
            labels::CAPACITY_TYPE => Some(TKey::CapacityType),
            _ => None,
        }
    }
}

/// A selector scoped to namespaces (None = every namespace).
#[derive(Debug, Clone)]
pub struct Sel {
    pub selector: LabelSelector,
    pub namespaces: Option<Vec<String>>,
}

impl Sel {
    /// Whether a pod in `ns` with `labels` is counted.
    pub fn matches(&self, ns: &str, labels: &BTreeMap<String, String>) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|n| n.iter().any(|x| x == ns))
            && self.selector.matches(labels)
    }
}

/// A topology spread constraint, compiled.
#[derive(Debug, Clone)]
pub struct Spread {
    pub sel: usize,
    pub key: TKey,
    pub max_skew: i64,
    pub hard: bool,
    pub min_domains: u32,
    /// nodeAffinityPolicy Honor (the default): domains are only where the
    /// pod's own node constraints let it run; Ignore: every node's.
    pub honor_affinity: bool,
    /// The class's own pods are counted by the selector.
    pub self_match: bool,
}

/// A pod (anti-)affinity term, compiled.
#[derive(Debug, Clone)]
pub struct Aff {
    pub sel: usize,
    pub key: TKey,
    pub anti: bool,
    /// None = required.
    pub weight: Option<i32>,
    pub self_match: bool,
}

/// One class's topology constraints.
#[derive(Debug, Clone, Default)]
pub struct ClassTopo {
    pub spreads: Vec<Spread>,
    /// Required terms first, then preferred ones heaviest first.
    pub affs: Vec<Aff>,
    /// How many of `affs` are preferred.
    pub preferred: usize,
    /// Selectors that count this class's pods.
    pub matched_by: Vec<usize>,
    /// Generic keys (`TKey::Label`) whose value on the class's node matters:
    /// a term of the class is on the key, or a term on the key counts the
    /// class's pods.
    pub label_keys: Vec<u16>,
}

/// All selectors of a workload, and every class's compiled constraints.
#[derive(Debug, Clone, Default)]
pub struct Topo {
    pub sels: Vec<Sel>,
    pub classes: Vec<ClassTopo>,
    /// Per class, per selector: whether the class's pods are counted.
    pub class_match: Vec<Vec<bool>>,
    /// The generic topology keys (`TKey::Label`), in order of first use.
    pub keys: Vec<String>,
}

impl Topo {
    /// Interns every selector and compiles every class.
    pub fn new<'w>(w: &'w Workload) -> Topo {
        let mut t = Topo::default();
        // (selector, namespaces) -> index in `t.sels`, borrowed from the
        // workload so that a lookup clones nothing; only a new selector is
        // copied into `t.sels`.
        type SelKey<'w> = (&'w LabelSelector, Option<&'w [String]>);
        let mut index: HashMap<SelKey<'w>, usize> = HashMap::new();
        let mut intern = |t: &mut Topo, key: SelKey<'w>| -> usize {
            *index.entry(key).or_insert_with(|| {
                t.sels.push(Sel {
                    selector: key.0.clone(),
                    namespaces: key.1.map(<[String]>::to_vec),
                });
                t.sels.len() - 1
            })
        };
        let mut raw: Vec<ClassTopo> = Vec::new();
        let key_of = |t: &mut Topo, k: &str| -> TKey {
            TKey::parse(k).unwrap_or_else(|| {
                let i = t.keys.iter().position(|x| x == k).unwrap_or_else(|| {
                    t.keys.push(k.to_string());
                    t.keys.len() - 1
                });
                TKey::Label(i as u16)
            })
        };
        for c in &w.classes {
            let mut ct = ClassTopo::default();
            for s in &c.topology_spread {
                let key = key_of(&mut t, &s.topology_key);
                let sel = intern(
                    &mut t,
                    (&s.selector, Some(std::slice::from_ref(&c.namespace))),
                );
                ct.spreads.push(Spread {
                    sel,
                    key,
                    max_skew: i64::from(s.max_skew.max(1)),
                    hard: s.hard,
                    min_domains: s.min_domains.unwrap_or(0),
                    honor_affinity: s.honor_node_affinity,
                    self_match: false,
                });
            }
            let mut req = Vec::new();
            let mut pref = Vec::new();
            for a in &c.pod_affinity {
                let key = key_of(&mut t, &a.topology_key);
                let namespaces = if a.all_namespaces {
                    None
                } else if a.namespaces.is_empty() {
                    Some(std::slice::from_ref(&c.namespace))
                } else {
                    Some(&a.namespaces[..])
                };
                let sel = intern(&mut t, (&a.selector, namespaces));
                let aff = Aff {
                    sel,
                    key,
                    anti: a.anti,
                    weight: a.weight,
                    self_match: false,
                };
                if a.weight.is_some() {
                    pref.push(aff);
                } else {
                    req.push(aff);
                }
            }
            pref.sort_by_key(|a| std::cmp::Reverse(a.weight));
            ct.preferred = pref.len();
            req.extend(pref);
            ct.affs = req;
            raw.push(ct);
        }
        // Classes with the same namespace and labels match the same
        // selectors; thousands of classes often share a handful of label sets.
        let mut seen: HashMap<(&str, &BTreeMap<String, String>), Vec<bool>> = HashMap::new();
        for (ci, c) in w.classes.iter().enumerate() {
            let m = seen
                .entry((c.namespace.as_str(), &c.labels))
                .or_insert_with(|| t.sels.iter().map(|s| class_matches(s, c)).collect())
                .clone();
            let ct = &mut raw[ci];
            for s in &mut ct.spreads {
                s.self_match = m[s.sel];
            }
            for a in &mut ct.affs {
                a.self_match = m[a.sel];
            }
            ct.matched_by = (0..m.len()).filter(|i| m[*i]).collect();
            t.class_match.push(m);
        }
        // Which generic keys each class's node value matters for.
        let mut sel_keys: Vec<Vec<u16>> = vec![Vec::new(); t.sels.len()];
        for ct in &raw {
            let terms = ct.spreads.iter().map(|s| (s.key, s.sel));
            for (k, s) in terms.chain(ct.affs.iter().map(|a| (a.key, a.sel))) {
                if let TKey::Label(g) = k
                    && !sel_keys[s].contains(&g)
                {
                    sel_keys[s].push(g);
                }
            }
        }
        for ct in &mut raw {
            let own = ct.spreads.iter().map(|s| s.key);
            let mut keys: Vec<u16> = own
                .chain(ct.affs.iter().map(|a| a.key))
                .filter_map(|k| match k {
                    TKey::Label(g) => Some(g),
                    _ => None,
                })
                .chain(
                    ct.matched_by
                        .iter()
                        .flat_map(|s| sel_keys[*s].iter().copied()),
                )
                .collect();
            keys.sort_unstable();
            keys.dedup();
            ct.label_keys = keys;
        }
        t.classes = raw;
        t
    }
}

fn class_matches(s: &Sel, c: &PodClass) -> bool {
    s.matches(&c.namespace, &c.labels)
}
