//! The well-known labels a node of an offering carries, from the same
//! lookup the solver matches requirements with.
//!
//! The solver decides "this pod may go on that offering" by asking
//! [`Catalog::offering_label`] for each key a pod selects on. A node launched
//! from the offering must then carry exactly those values, or the scheduler
//! will not place the pod there. So the label set here is built by asking
//! `offering_label` itself for every key it can answer: the two cannot
//! disagree, and a test over the whole embedded catalog checks it through
//! the requirement index as well.

use std::collections::BTreeMap;

use super::{CapacityType, Catalog, Offering};
use crate::ir::{Pool, labels};

/// The label a node gets naming the pool that launched it (the contract
/// between the launcher, the claims and garbage collection).
pub const POOL_LABEL: &str = "nodewright.io/pool";

/// The label a node gets naming the NodeClaim (= planned node) it was
/// launched for; the controller writes it when it adopts the Node.
pub const CLAIM_LABEL: &str = "nodewright.io/claim";

/// Every key an offering answers beyond its type's own labels (the type
/// labels already hold family, cpu, memory, arch, os, gpu-*, ...).
pub const OFFERING_KEYS: &[&str] = &[
    labels::INSTANCE_TYPE,
    labels::INSTANCE_TYPE_BETA,
    labels::ZONE,
    labels::ZONE_BETA,
    labels::ZONE_ID,
    labels::REGION,
    labels::CAPACITY_TYPE,
];

/// Whether `key`'s value depends on the instance type, zone or capacity
/// type, i.e. on what EC2 actually launched rather than on the pool. Such a
/// label must not be baked into a launch template shared by fallback types.
pub fn is_offering_key(key: &str) -> bool {
    OFFERING_KEYS.contains(&key)
        || (key.starts_with("karpenter.k8s.aws/instance-") && labels::WELL_KNOWN.contains(&key))
        || key == labels::ARCH
        || key == labels::OS
}

impl Catalog {
    /// Every well-known label of offering `o`: the type's labels
    /// (`karpenter.k8s.aws/instance-*`, arch, os), instance type, zone,
    /// zone id, region and capacity type. Each value is what
    /// [`Catalog::offering_label`] answers for that key.
    pub fn offering_labels(&self, o: &Offering) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let type_keys = self
            .types
            .get(o.type_index as usize)
            .into_iter()
            .flat_map(|t| t.labels.keys());
        for k in type_keys.chain(OFFERING_KEYS.iter().copied()) {
            if let Some(v) = self.offering_label(o, k) {
                m.insert(k.to_string(), v.to_string());
            }
        }
        m
    }

    /// The offering for what EC2 reports it launched, whether or not the
    /// catalog lists that exact offering (a live catalog may lag EC2). None
    /// when the catalog knows the type or the zone not at all.
    pub fn offering_for(
        &self,
        instance_type: &str,
        zone: &str,
        capacity_type: CapacityType,
    ) -> Option<Offering> {
        let ti = self.types.iter().position(|t| t.name == instance_type)?;
        let zi = self.zones.iter().position(|z| z.name == zone)?;
        if let Some(o) = self.offerings.iter().find(|o| {
            o.type_index as usize == ti
                && o.zone_index as usize == zi
                && o.capacity_type == capacity_type
        }) {
            return Some(o.clone());
        }
        Some(Offering {
            type_index: u32::try_from(ti).ok()?,
            zone_index: u16::try_from(zi).ok()?,
            capacity_type,
            price: None,
            price_estimated: false,
            available: true,
        })
    }

    /// The labels of a node launched as (`instance_type`, `zone`,
    /// `capacity_type`). A type or zone the catalog does not know still gets
    /// the labels EC2's answer alone gives: type, zone, region, capacity type.
    pub fn launched_offering_labels(
        &self,
        instance_type: &str,
        zone: &str,
        capacity_type: CapacityType,
    ) -> BTreeMap<String, String> {
        if let Some(o) = self.offering_for(instance_type, zone, capacity_type) {
            return self.offering_labels(&o);
        }
        let mut m = BTreeMap::new();
        if let Some(t) = self.instance_type(instance_type) {
            for (k, v) in &t.labels {
                m.insert(k.to_string(), v.to_string());
            }
        }
        for k in [labels::INSTANCE_TYPE, labels::INSTANCE_TYPE_BETA] {
            m.insert(k.to_string(), instance_type.to_string());
        }
        for k in [labels::ZONE, labels::ZONE_BETA] {
            m.insert(k.to_string(), zone.to_string());
        }
        if let Some(z) = self.zones.iter().find(|z| z.name == zone) {
            m.insert(labels::ZONE_ID.to_string(), z.id.clone());
        }
        m.insert(labels::REGION.to_string(), self.region.clone());
        m.insert(
            labels::CAPACITY_TYPE.to_string(),
            capacity_type.as_str().to_string(),
        );
        m
    }
}

/// The labels every node of `pool` carries whatever EC2 launches: the
/// pool's own labels, its single-valued custom requirements (the solver
/// counts on those as labels), `karpenter.sh/nodepool` and
/// `nodewright.io/pool`. Safe for a launch template shared by every
/// fallback type.
pub fn pool_labels(pool: &Pool) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (k, set) in &pool.requirements.keys {
        if !labels::WELL_KNOWN.contains(&k.as_str())
            && !set.complement
            && set.values.len() == 1
            && let Some(v) = set.values.iter().next()
        {
            m.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in &pool.labels {
        m.insert(k.clone(), v.clone());
    }
    m.insert(labels::NODEPOOL.to_string(), pool.name.clone());
    m.insert(POOL_LABEL.to_string(), pool.name.clone());
    m
}

/// Every label a node of `pool` launched from offering `o` carries: the
/// offering's well-known labels, then [`pool_labels`] (a pool label wins
/// over the catalog, as it does in the solver's lookup).
pub fn node_labels(cat: &Catalog, pool: &Pool, o: &Offering) -> BTreeMap<String, String> {
    let mut m = cat.offering_labels(o);
    m.extend(pool_labels(pool));
    m
}

/// One label of [`node_labels`] without building the map: the same
/// sources in the same precedence (the pool's labels win over the
/// offering's). The solver reads a node's topology domain for any key with
/// it, once per offering.
pub fn node_label<'a>(
    cat: &'a Catalog,
    pool: &'a Pool,
    o: &Offering,
    key: &str,
) -> Option<&'a str> {
    if key == labels::NODEPOOL || key == POOL_LABEL {
        return Some(&pool.name);
    }
    if let Some(v) = pool.labels.get(key) {
        return Some(v);
    }
    if !labels::WELL_KNOWN.contains(&key)
        && let Some(set) = pool.requirements.keys.get(key)
        && !set.complement
        && set.values.len() == 1
        && let Some(v) = set.values.iter().next()
    {
        return Some(v);
    }
    cat.offering_label(o, key)
}

/// Every label the planned node `name` (its claim's name) carries once the
/// controller adopts it: [`node_labels`] plus [`CLAIM_LABEL`]. The plan lists
/// exactly these, so that what the plan promises and what the Node carries
/// can be compared (the kubelet adds `kubernetes.io/hostname` itself, with a
/// name only EC2 knows).
pub fn planned_node_labels(
    cat: &Catalog,
    pool: &Pool,
    o: &Offering,
    name: &str,
) -> BTreeMap<String, String> {
    let mut m = node_labels(cat, pool, o);
    m.insert(CLAIM_LABEL.to_string(), name.to_string());
    m
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use super::*;
    use crate::ir::{Operator, Requirements, ValueSet};

    fn one(v: &str) -> ValueSet {
        ValueSet::from_op(Operator::In, &[v.to_string()])
    }

    fn pool(name: &str) -> Pool {
        Pool {
            name: name.into(),
            weight: 0,
            requirement_terms: vec![],
            requirements: Requirements::default(),
            limits: BTreeMap::new(),
            labels: BTreeMap::new(),
            taints: vec![],
            startup_taints: vec![],
            tags: BTreeMap::new(),
            node_class: "default".into(),
            kubelet: Default::default(),
            disruption: Default::default(),
            scripts: vec![],
            origin: None,
        }
    }

    fn catalog() -> Catalog {
        Catalog::embedded().unwrap_or_else(|e| panic!("embedded catalog: {e}"))
    }

    /// Every key the requirement index can match on, for every offering of
    /// the embedded catalog: the label set has it with the same value, or
    /// lacks it exactly when the solver's lookup has no value.
    #[test]
    fn labels_agree_with_the_solver_lookup_everywhere() {
        let cat = catalog();
        let mut keys: BTreeSet<&str> = OFFERING_KEYS.iter().copied().collect();
        for t in &cat.types {
            keys.extend(t.labels.keys());
        }
        for o in &cat.offerings {
            let m = cat.offering_labels(o);
            for k in &keys {
                assert_eq!(
                    m.get(*k).map(String::as_str),
                    cat.offering_label(o, k),
                    "{k} on {o:?}"
                );
            }
        }
    }

    /// Through the index the solver filters with: a requirement `key In
    /// [value]` selects an offering exactly when that offering's labels have
    /// key=value. So a pod planned onto an offering because of a label
    /// finds that label on the node.
    #[test]
    fn requirement_matches_are_exactly_the_labels() {
        let cat = catalog();
        let index = cat.index();
        let all: Vec<BTreeMap<String, String>> = cat
            .offerings
            .iter()
            .map(|o| cat.offering_labels(o))
            .collect();
        // Where each key=value is, from the label sets alone.
        let mut pairs: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
        for (i, m) in all.iter().enumerate() {
            for (k, v) in m {
                pairs.entry((k.as_str(), v.as_str())).or_default().push(i);
            }
        }
        assert!(pairs.len() > 1000, "{} distinct labels", pairs.len());
        for ((k, v), want) in &pairs {
            let mut reqs = Requirements::default();
            reqs.keys.insert(k.to_string(), one(v));
            let got: Vec<usize> = index.filter(&reqs).iter().collect();
            assert_eq!(&got, want, "{k}={v}");
        }
    }

    /// `node_label` answers every key as the map `node_labels` holds it,
    /// pool labels overriding catalog ones included.
    #[test]
    fn node_label_agrees_with_node_labels() {
        let cat = catalog();
        let mut p = pool("web");
        p.labels.insert("team".into(), "shop".into());
        p.labels.insert(labels::ARCH.into(), "pool-says".into());
        p.requirements.keys.insert("tier".into(), one("front"));
        let mut checked = 0;
        for o in cat.offerings.iter().step_by(53) {
            let m = node_labels(&cat, &p, o);
            let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
            keys.extend([labels::HOSTNAME, "not-a-label"]);
            for k in keys {
                assert_eq!(
                    node_label(&cat, &p, o, k),
                    m.get(k).map(String::as_str),
                    "{k}"
                );
                checked += 1;
            }
        }
        assert!(checked > 1000, "only {checked} lookups");
    }

    #[test]
    fn launched_labels_name_what_ec2_launched() {
        let cat = catalog();
        let m = cat.launched_offering_labels("c5.xlarge", "us-east-1b", CapacityType::Spot);
        assert_eq!(m[labels::INSTANCE_TYPE], "c5.xlarge");
        assert_eq!(m[labels::INSTANCE_FAMILY], "c5");
        assert_eq!(m[labels::INSTANCE_CPU], "4");
        assert_eq!(m[labels::ZONE], "us-east-1b");
        assert!(m[labels::ZONE_ID].starts_with("use1-az"));
        assert_eq!(m[labels::CAPACITY_TYPE], "spot");
        assert_eq!(m[labels::ARCH], "amd64");
        assert_eq!(m[labels::OS], "linux");
        assert_eq!(m[labels::REGION], "us-east-1");
        for k in m.keys() {
            assert!(is_offering_key(k), "{k}");
        }
        // A type the catalog lacks still gets what EC2's answer gives.
        let m = cat.launched_offering_labels("x99.huge", "us-east-1a", CapacityType::OnDemand);
        assert_eq!(m[labels::INSTANCE_TYPE], "x99.huge");
        assert_eq!(m[labels::ZONE], "us-east-1a");
        assert_eq!(m[labels::CAPACITY_TYPE], "on-demand");
        assert!(m.contains_key(labels::ZONE_ID));
        assert!(!m.contains_key(labels::INSTANCE_FAMILY));
    }

    #[test]
    fn gpu_types_carry_gpu_labels() {
        let cat = catalog();
        let m = cat.launched_offering_labels("g5.xlarge", "us-east-1a", CapacityType::OnDemand);
        assert_eq!(m[labels::INSTANCE_GPU_COUNT], "1");
        assert_eq!(m[labels::INSTANCE_GPU_MANUFACTURER], "nvidia");
        assert!(m.contains_key(labels::INSTANCE_GPU_NAME));
        assert!(m.contains_key(labels::INSTANCE_GPU_MEMORY));
    }

    #[test]
    fn pool_labels_win_and_name_the_pool() {
        let cat = catalog();
        let mut pool = pool("web");
        pool.labels.insert("team".into(), "shop".into());
        pool.requirements.keys.insert("tier".into(), one("front"));
        pool.requirements.keys.insert(
            "many".into(),
            ValueSet::from_op(Operator::In, &["a".to_string(), "b".to_string()]),
        );
        let o = cat
            .offering_for("m5.large", "us-east-1a", CapacityType::OnDemand)
            .unwrap_or_else(|| panic!("m5.large in us-east-1a"));
        let m = node_labels(&cat, &pool, &o);
        assert_eq!(m["team"], "shop");
        assert_eq!(m["tier"], "front");
        assert!(!m.contains_key("many"), "no single value to label with");
        assert_eq!(m[labels::NODEPOOL], "web");
        assert_eq!(m[POOL_LABEL], "web");
        assert_eq!(m[labels::INSTANCE_TYPE], "m5.large");
        let planned = planned_node_labels(&cat, &pool, &o, "web-7");
        assert_eq!(planned[CLAIM_LABEL], "web-7");
        assert_eq!(planned.len(), m.len() + 1, "node_labels plus the claim");
        let common = pool_labels(&pool);
        assert!(common.keys().all(|k| !is_offering_key(k)), "{common:?}");
    }
}
