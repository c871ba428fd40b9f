//! What a script sees: `Offering` (`o` in `score_offering(o)`) and `Candidate`
//! (`c` in `score_node(c)`, `score(c)` and `admit(c)`), registered as rhai
//! custom types with read-only getters.
//!
//! The instance-type facts are built once per type and shared by `Arc`, so a
//! call costs two reference-count bumps, not a map rebuilt per candidate.

use std::collections::BTreeMap;
use std::sync::Arc;

use rhai::{Array, Engine, ImmutableString};

use super::{NodeLoad, OfferingView};
use crate::catalog::{CapacityType, InstanceType};
use crate::ir::labels;

/// Per-instance-type facts, computed once per type and shared between calls.
#[derive(Debug, Clone)]
pub(super) struct TypeInfo {
    pub name: ImmutableString,
    pub family: ImmutableString,
    pub category: ImmutableString,
    pub generation: i64,
    pub size: ImmutableString,
    pub vcpu: i64,
    pub memory_gib: f64,
    pub arch: ImmutableString,
    pub gpu_count: i64,
    pub gpu_name: ImmutableString,
    pub labels: BTreeMap<String, ImmutableString>,
}

impl TypeInfo {
    /// Extracts the script-visible facts of `t`, falling back to the name
    /// (`m6i.large` → family `m6i`, size `large`) where labels are missing.
    pub(super) fn new(t: &InstanceType) -> TypeInfo {
        let (fam_from_name, size_from_name) = t.name.split_once('.').unwrap_or((&t.name, ""));
        let label = |k: &str| t.labels.get(k);
        let family = label(labels::INSTANCE_FAMILY).unwrap_or(fam_from_name);
        let category = label(labels::INSTANCE_CATEGORY)
            .map(str::to_string)
            .unwrap_or_else(|| {
                family
                    .chars()
                    .take_while(|c| c.is_ascii_alphabetic())
                    .collect()
            });
        let generation = label(labels::INSTANCE_GENERATION)
            .and_then(|g| g.parse().ok())
            .unwrap_or_else(|| {
                let digits: String = family
                    .chars()
                    .skip_while(|c| !c.is_ascii_digit())
                    .take_while(|c| c.is_ascii_digit())
                    .collect();
                digits.parse().unwrap_or(0)
            });
        TypeInfo {
            name: t.name.as_str().into(),
            family: family.into(),
            category: category.into(),
            generation,
            size: label(labels::INSTANCE_SIZE)
                .unwrap_or(size_from_name)
                .into(),
            vcpu: i64::from(t.vcpus),
            memory_gib: t.memory_mib as f64 / 1024.0,
            arch: t.arch.as_str().into(),
            gpu_count: t.gpus.iter().map(|g| i64::from(g.count)).sum(),
            gpu_name: t.gpus.first().map(|g| g.name.as_str()).unwrap_or("").into(),
            labels: t
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.into()))
                .collect(),
        }
    }
}

/// The `Offering` script type: an instance type in a zone at a capacity type, in a pool.
#[derive(Debug, Clone)]
pub(super) struct Offering {
    pub ty: Arc<TypeInfo>,
    pub zone: ImmutableString,
    pub capacity_type: CapacityType,
    pub price: f64,
    pub pool: ImmutableString,
}

impl Offering {
    /// Wraps a solver view, reusing the cached facts of its type.
    pub(super) fn new(ty: Arc<TypeInfo>, v: &OfferingView<'_>) -> Offering {
        Offering {
            ty,
            zone: v.zone.into(),
            capacity_type: v.capacity_type,
            price: v.price,
            pool: v.pool.into(),
        }
    }
}

/// What the candidate node would carry, copied out of the solver's borrowed view.
#[derive(Debug, Clone, Default)]
pub(super) struct Load {
    pub pods: i64,
    pub cpu_requested_milli: i64,
    pub memory_requested: i64,
    pub cpu_utilisation: f64,
    pub memory_utilisation: f64,
    pub namespaces: Vec<ImmutableString>,
    pub pod_labels: Vec<BTreeMap<String, String>>,
}

impl Load {
    /// Copies a borrowed `NodeLoad` (scripts need `'static` values).
    pub(super) fn new(l: &NodeLoad<'_>) -> Load {
        Load {
            pods: i64::from(l.pods),
            cpu_requested_milli: l.cpu_requested_milli,
            memory_requested: l.memory_requested,
            cpu_utilisation: l.cpu_utilisation,
            memory_utilisation: l.memory_utilisation,
            namespaces: l.namespaces.iter().map(|n| (*n).into()).collect(),
            pod_labels: l.pod_labels.iter().map(|m| (*m).clone()).collect(),
        }
    }
}

/// The `Candidate` script type: an offering plus what the node would carry.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    pub offering: Offering,
    pub load: Arc<Load>,
}

/// Types that expose the offering getters (`Offering` itself and `Candidate`).
trait HasOffering: Clone + Send + Sync + 'static {
    fn off(&self) -> &Offering;
}
impl HasOffering for Offering {
    fn off(&self) -> &Offering {
        self
    }
}
impl HasOffering for Candidate {
    fn off(&self) -> &Offering {
        &self.offering
    }
}

fn register_offering_getters<T: HasOffering>(e: &mut Engine) {
    e.register_get("name", |x: &mut T| x.off().ty.name.clone());
    e.register_get("instance_type", |x: &mut T| x.off().ty.name.clone());
    e.register_get("family", |x: &mut T| x.off().ty.family.clone());
    e.register_get("category", |x: &mut T| x.off().ty.category.clone());
    e.register_get("generation", |x: &mut T| x.off().ty.generation);
    e.register_get("size", |x: &mut T| x.off().ty.size.clone());
    e.register_get("vcpu", |x: &mut T| x.off().ty.vcpu);
    e.register_get("memory_gib", |x: &mut T| x.off().ty.memory_gib);
    e.register_get("arch", |x: &mut T| x.off().ty.arch.clone());
    e.register_get("gpu_count", |x: &mut T| x.off().ty.gpu_count);
    e.register_get("gpu_name", |x: &mut T| x.off().ty.gpu_name.clone());
    e.register_get("zone", |x: &mut T| x.off().zone.clone());
    e.register_get("capacity_type", |x: &mut T| {
        ImmutableString::from(x.off().capacity_type.as_str())
    });
    e.register_get("is_spot", |x: &mut T| {
        x.off().capacity_type == CapacityType::Spot
    });
    e.register_get("price", |x: &mut T| x.off().price);
    e.register_get("pool", |x: &mut T| x.off().pool.clone());
    // label(key): the type's label value, "" when absent (use has_label to tell).
    e.register_fn("label", |x: &mut T, key: &str| {
        x.off().ty.labels.get(key).cloned().unwrap_or_default()
    });
    e.register_fn("has_label", |x: &mut T, key: &str| {
        x.off().ty.labels.contains_key(key)
    });
}

/// Registers `Offering` and `Candidate` and their getters on `e`.
pub(super) fn register(e: &mut Engine) {
    e.register_type_with_name::<Offering>("Offering");
    e.register_type_with_name::<Candidate>("Candidate");
    register_offering_getters::<Offering>(e);
    register_offering_getters::<Candidate>(e);
    e.register_get("offering", |c: &mut Candidate| c.offering.clone());
    e.register_get("pods", |c: &mut Candidate| c.load.pods);
    e.register_get("cpu_requested_milli", |c: &mut Candidate| {
        c.load.cpu_requested_milli
    });
    e.register_get("cpu_requested", |c: &mut Candidate| {
        c.load.cpu_requested_milli as f64 / 1000.0
    });
    e.register_get("memory_requested_gib", |c: &mut Candidate| {
        c.load.memory_requested as f64 / (1024.0 * 1024.0 * 1024.0)
    });
    e.register_get("cpu_utilisation", |c: &mut Candidate| {
        c.load.cpu_utilisation
    });
    e.register_get("memory_utilisation", |c: &mut Candidate| {
        c.load.memory_utilisation
    });
    e.register_get("utilisation", |c: &mut Candidate| {
        c.load.cpu_utilisation.max(c.load.memory_utilisation)
    });
    e.register_get("namespaces", |c: &mut Candidate| -> Array {
        c.load.namespaces.iter().map(|n| n.clone().into()).collect()
    });
    // pod_labels(key): the values of `key` on the pod classes that carry it.
    e.register_fn("pod_labels", |c: &mut Candidate, key: &str| -> Array {
        c.load
            .pod_labels
            .iter()
            .filter_map(|m| m.get(key))
            .map(|v| v.as_str().into())
            .collect()
    });
    e.register_fn(
        "any_pod_label",
        |c: &mut Candidate, key: &str, value: &str| {
            c.load
                .pod_labels
                .iter()
                .any(|m| m.get(key).is_some_and(|v| v == value))
        },
    );
    e.register_fn(
        "all_pods_label",
        |c: &mut Candidate, key: &str, value: &str| {
            c.load
                .pod_labels
                .iter()
                .all(|m| m.get(key).is_some_and(|v| v == value))
        },
    );
}
