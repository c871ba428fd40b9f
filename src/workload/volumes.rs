//! Zonal volume topology: which zones a pod may run in because of its PVCs.
//!
//! An EBS volume lives in one zone, so a pod whose PVC is bound to a zonal PV
//! can only run there. An unbound PVC is provisioned where its StorageClass
//! allows (`allowedTopologies`); with `WaitForFirstConsumer` that is decided
//! by the pod's placement, with `Immediate` the provisioner picks one of the
//! allowed zones, which a plan cannot know, so both are treated as "any
//! allowed zone".

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::storage::v1::StorageClass;

/// Node label keys that carry a volume's zone.
pub const ZONE_KEYS: &[&str] = &[
    crate::ir::labels::ZONE,
    crate::ir::labels::ZONE_BETA,
    "topology.ebs.csi.aws.com/zone",
];

/// A PersistentVolume as far as placement cares.
#[derive(Debug, Clone)]
struct Pv {
    zones: Option<BTreeSet<String>>,
    claim: Option<(String, String)>,
}

/// A StorageClass as far as placement cares.
#[derive(Debug, Clone)]
struct Class {
    zones: Option<BTreeSet<String>>,
    wait_for_first_consumer: bool,
}

/// The PVCs, PVs and StorageClasses of the input.
#[derive(Debug, Default)]
pub(super) struct Storage {
    pvcs: BTreeMap<(String, String), core::PersistentVolumeClaimSpec>,
    pvs: BTreeMap<String, Pv>,
    classes: BTreeMap<String, Class>,
    default_class: Option<String>,
}

/// The outcome of resolving one claim.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ClaimZones {
    /// No zonal restriction.
    Any,
    /// Restricted to these zones, because of the reason given.
    Zones(BTreeSet<String>, String),
    /// Something the input does not say; the note explains what was assumed.
    Unknown(String),
}

fn zones_of_node_selector(sel: &core::NodeSelector) -> Option<BTreeSet<String>> {
    let mut all = BTreeSet::new();
    for term in &sel.node_selector_terms {
        let mut term_zones: Option<BTreeSet<String>> = None;
        for e in term.match_expressions.iter().flatten() {
            if ZONE_KEYS.contains(&e.key.as_str()) && e.operator == "In" {
                let z: BTreeSet<String> = e.values.iter().flatten().cloned().collect();
                term_zones = Some(match term_zones {
                    Some(t) => t.intersection(&z).cloned().collect(),
                    None => z,
                });
            }
        }
        // A term without a zone requirement allows every zone.
        all.extend(term_zones?);
    }
    Some(all)
}

impl Storage {
    /// Records a PVC.
    pub(super) fn add_pvc(&mut self, pvc: &core::PersistentVolumeClaim) {
        let ns = pvc
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pvc.metadata.name.clone().unwrap_or_default();
        self.pvcs
            .insert((ns, name), pvc.spec.clone().unwrap_or_default());
    }

    /// Records a PV.
    pub(super) fn add_pv(&mut self, pv: &core::PersistentVolume) {
        let name = pv.metadata.name.clone().unwrap_or_default();
        let spec = pv.spec.clone().unwrap_or_default();
        let mut zones = spec
            .node_affinity
            .as_ref()
            .and_then(|a| a.required.as_ref())
            .and_then(zones_of_node_selector);
        if zones.is_none() {
            // Older in-tree volumes carry the zone as a label on the PV.
            let labels = pv.metadata.labels.clone().unwrap_or_default();
            zones = ZONE_KEYS
                .iter()
                .find_map(|k| labels.get(*k))
                .map(|z| z.split("__").map(String::from).collect());
        }
        let claim = spec.claim_ref.as_ref().and_then(|r| {
            Some((
                r.namespace.clone().unwrap_or_else(|| "default".into()),
                r.name.clone()?,
            ))
        });
        self.pvs.insert(name, Pv { zones, claim });
    }

    /// Records a StorageClass.
    pub(super) fn add_class(&mut self, sc: &StorageClass) {
        let name = sc.metadata.name.clone().unwrap_or_default();
        let is_default = sc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| {
                a.get("storageclass.kubernetes.io/is-default-class")
                    .or_else(|| a.get("storageclass.beta.kubernetes.io/is-default-class"))
            })
            .is_some_and(|v| v == "true");
        if is_default {
            self.default_class = Some(name.clone());
        }
        let mut zones: Option<BTreeSet<String>> = None;
        for term in sc.allowed_topologies.iter().flatten() {
            for e in term.match_label_expressions.iter().flatten() {
                if ZONE_KEYS.contains(&e.key.as_str()) {
                    zones
                        .get_or_insert_with(BTreeSet::new)
                        .extend(e.values.iter().cloned());
                }
            }
        }
        self.classes.insert(
            name,
            Class {
                zones,
                wait_for_first_consumer: sc.volume_binding_mode.as_deref()
                    == Some("WaitForFirstConsumer"),
            },
        );
    }

    fn pv_for_claim(
        &self,
        ns: &str,
        claim: &str,
        spec: Option<&core::PersistentVolumeClaimSpec>,
    ) -> Option<(&str, &Pv)> {
        if let Some(v) = spec
            .and_then(|s| s.volume_name.as_deref())
            .filter(|v| !v.is_empty())
        {
            return self.pvs.get_key_value(v).map(|(k, p)| (k.as_str(), p));
        }
        self.pvs
            .iter()
            .find(|(_, p)| p.claim.as_ref().is_some_and(|(n, c)| n == ns && c == claim))
            .map(|(k, p)| (k.as_str(), p))
    }

    /// Zones allowed by claim `ns/claim`; `template` is the spec to assume when
    /// the PVC is not in the input but would be created (StatefulSet
    /// volumeClaimTemplates, generic ephemeral volumes).
    pub(super) fn claim_zones(
        &self,
        ns: &str,
        claim: &str,
        template: Option<&core::PersistentVolumeClaimSpec>,
    ) -> ClaimZones {
        let existing = self.pvcs.get(&(ns.to_string(), claim.to_string()));
        if existing.is_none() && template.is_none() {
            return ClaimZones::Unknown(format!(
                "PVC {ns}/{claim} is not in the input; assuming it can attach in any zone"
            ));
        }
        let spec = existing.or(template);
        if let Some(v) = spec
            .and_then(|s| s.volume_name.as_deref())
            .filter(|v| !v.is_empty())
            && !self.pvs.contains_key(v)
        {
            return ClaimZones::Unknown(format!(
                "PVC {claim} is bound to PV {v}, which is not in the input; assuming any zone"
            ));
        }
        if let Some((pv_name, pv)) = self.pv_for_claim(ns, claim, spec) {
            return match &pv.zones {
                Some(z) => ClaimZones::Zones(
                    z.clone(),
                    format!(
                        "PVC {claim} bound to PV {pv_name} in {}",
                        z.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ),
                None => ClaimZones::Any,
            };
        }
        let class_name = spec
            .and_then(|s| s.storage_class_name.clone())
            .or_else(|| self.default_class.clone());
        let Some(class_name) = class_name.filter(|c| !c.is_empty()) else {
            return ClaimZones::Any;
        };
        match self.classes.get(&class_name) {
            None => ClaimZones::Unknown(format!(
                "StorageClass {class_name} (of PVC {claim}) is not in the input; assuming any zone"
            )),
            Some(Class { zones: None, .. }) => ClaimZones::Any,
            Some(Class {
                zones: Some(z),
                wait_for_first_consumer,
            }) => ClaimZones::Zones(
                z.clone(),
                format!(
                    "PVC {claim}: StorageClass {class_name} allows only {}{}",
                    z.iter().cloned().collect::<Vec<_>>().join(", "),
                    if *wait_for_first_consumer {
                        ""
                    } else {
                        " (Immediate binding: the provisioner picks one)"
                    }
                ),
            ),
        }
    }
}

/// Intersects the zones of several claims; None when none restricts.
pub(super) fn combine(parts: &[(BTreeSet<String>, String)]) -> Option<(Vec<String>, String)> {
    let mut it = parts.iter();
    let (first, why) = it.next()?;
    let mut zones = first.clone();
    let mut reasons = vec![why.clone()];
    for (z, w) in it {
        zones = zones.intersection(z).cloned().collect();
        reasons.push(w.clone());
    }
    Some((zones.into_iter().collect(), reasons.join("; ")))
}
