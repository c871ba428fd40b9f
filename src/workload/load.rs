//! Reading Kubernetes YAML files into a `Workload`.
//!
//! Two passes: first every document is parsed into its typed k8s-openapi
//! struct (remembering where it came from), then the objects are expanded
//! into pods, grouped into classes, and existing Nodes get their bound pods.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use miette::{NamedSource, SourceSpan};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use super::error::{ErrorKind, InputError, Note, WorkloadError};
use super::names::{self, Suffixes};
use super::pods::{self, Env, Grouper, Shape, VolumeZones};
use super::volumes::{self, ClaimZones, Storage};
use super::yaml::{self, Path};
use super::{BoundPod, DaemonSetOverhead, OwnerRef, Workload};

/// How to read the input.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--replicas NAME=N`: replica count overrides, by object name or
    /// `NAMESPACE/NAME` (Deployments, ReplicaSets, StatefulSets; a Job's or
    /// CronJob's parallelism).
    pub replicas: BTreeMap<String, u32>,
}

impl LoadOptions {
    /// Parses one `NAME=N` argument of `--replicas`.
    pub fn parse_replicas(arg: &str) -> Result<(String, u32), String> {
        let (name, n) = arg
            .split_once('=')
            .ok_or_else(|| format!("`{arg}`: expected NAME=N, as in web=10"))?;
        let n: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("`{arg}`: `{n}` is not a replica count (a whole number)"))?;
        if name.trim().is_empty() {
            return Err(format!("`{arg}`: the name is empty"));
        }
        Ok((name.trim().to_string(), n))
    }
}

/// A loaded workload and the notes about what was ignored or assumed.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub workload: Workload,
    /// Every ignored object or field, and every assumption made; print them as warnings.
    pub notes: Vec<Note>,
}

struct DocRef {
    file: usize,
    line0: usize,
    offset: usize,
    len: usize,
}

/// Where an object came from: its document, its path within it (for items
/// of a List), and its first line.
#[derive(Debug, Clone)]
pub struct At {
    doc: usize,
    base: Path,
    /// 1-based line of the object's start.
    line: usize,
}

/// Sources, and the notes gathered while reading them.
pub struct Ctx {
    files: Vec<(String, Arc<String>)>,
    docs: Vec<DocRef>,
    notes: Vec<Note>,
}

impl Ctx {
    fn doc_text(&self, doc: usize) -> &str {
        let d = &self.docs[doc];
        &self.files[d.file].1[d.offset..d.offset + d.len]
    }

    /// (1-based line, 1-based column, byte offset in the file) of `path` in the object at `at`.
    fn pos(&self, at: &At, path: &Path) -> (usize, usize, usize) {
        let d = &self.docs[at.doc];
        let text = self.doc_text(at.doc);
        let full = at.base.join(path);
        let found = (1..=full.0.len())
            .rev()
            .find_map(|n| yaml::locate(text, &Path(full.0[..n].to_vec())));
        let (line, col) = match found {
            Some((l, c)) => (d.line0 + l + 1, c + 1),
            None => (at.line, 1),
        };
        (line, col, self.offset_of(d.file, line, col))
    }

    fn offset_of(&self, file: usize, line: usize, col: usize) -> usize {
        let text = &self.files[file].1;
        let mut off = 0;
        for (i, l) in text.split_inclusive('\n').enumerate() {
            if i + 1 == line {
                // Columns count characters; spans are bytes on a char boundary.
                let body = l.trim_end_matches('\n');
                let within = body
                    .char_indices()
                    .nth(col.saturating_sub(1))
                    .map_or(body.len(), |(b, _)| b);
                return off + within;
            }
            off += l.len();
        }
        text.len()
    }

    fn error_at_line(
        &self,
        file: usize,
        line: usize,
        col: usize,
        kind: ErrorKind,
        message: String,
        help: Option<String>,
    ) -> WorkloadError {
        let (name, text) = &self.files[file];
        let offset = self.offset_of(file, line, col);
        WorkloadError::Input(Box::new(InputError {
            kind,
            file: name.clone(),
            line,
            col,
            message,
            help,
            src: NamedSource::new(name.clone(), text.as_str().to_string()),
            span: SourceSpan::from((offset, 0)),
        }))
    }

    /// An error at `path` within the object at `at`.
    pub fn error(
        &self,
        at: &At,
        path: &Path,
        kind: ErrorKind,
        message: String,
        help: Option<String>,
    ) -> WorkloadError {
        let (line, col, _) = self.pos(at, path);
        self.error_at_line(self.docs[at.doc].file, line, col, kind, message, help)
    }

    /// Records a note about `path` within the object at `at`.
    pub fn note(&mut self, at: &At, path: &Path, message: String) {
        let (line, _, _) = self.pos(at, path);
        let file = self.files[self.docs[at.doc].file].0.clone();
        self.notes.push(Note {
            file,
            line,
            message,
        });
    }
}

/// A parsed object of a kind nodewright uses.
enum Obj {
    Pod(Box<core::Pod>),
    Deployment(Box<Deployment>),
    ReplicaSet(Box<ReplicaSet>),
    StatefulSet(Box<StatefulSet>),
    DaemonSet(Box<DaemonSet>),
    Job(Box<Job>),
    CronJob(Box<CronJob>),
    Pvc(Box<core::PersistentVolumeClaim>),
    Pv(Box<core::PersistentVolume>),
    StorageClass(Box<StorageClass>),
    PriorityClass(Box<PriorityClass>),
    Node(Box<core::Node>),
    Namespace(Box<core::Namespace>),
}

/// Kinds read but not used, and why (each yields a note, never silence).
const IGNORED: &[(&str, &str)] = &[
    (
        "PodDisruptionBudget",
        "disruption budgets matter when nodes are removed, not when planning launches",
    ),
    ("Service", "does not affect where pods can run"),
    ("ConfigMap", "does not affect where pods can run"),
    ("Secret", "does not affect where pods can run"),
    ("ServiceAccount", "does not affect where pods can run"),
    ("Ingress", "does not affect where pods can run"),
    ("IngressClass", "does not affect where pods can run"),
    ("NetworkPolicy", "does not affect where pods can run"),
    ("Endpoints", "does not affect where pods can run"),
    ("EndpointSlice", "does not affect where pods can run"),
    ("Event", "does not affect where pods can run"),
    ("Lease", "does not affect where pods can run"),
    ("ControllerRevision", "its owner's template is used instead"),
    ("Role", "RBAC does not affect where pods can run"),
    ("RoleBinding", "RBAC does not affect where pods can run"),
    ("ClusterRole", "RBAC does not affect where pods can run"),
    (
        "ClusterRoleBinding",
        "RBAC does not affect where pods can run",
    ),
    (
        "HorizontalPodAutoscaler",
        "replica counts come from the workload objects; use --replicas NAME=N to plan for a scaled count",
    ),
    (
        "VerticalPodAutoscaler",
        "requests come from the pod templates",
    ),
    (
        "LimitRange",
        "defaults it would inject are not applied; give requests explicitly",
    ),
    ("ResourceQuota", "quotas limit creation, not placement"),
    (
        "CustomResourceDefinition",
        "does not affect where pods can run",
    ),
    (
        "MutatingWebhookConfiguration",
        "webhooks are not run by a plan",
    ),
    (
        "ValidatingWebhookConfiguration",
        "webhooks are not run by a plan",
    ),
    (
        "CSIDriver",
        "volume topology comes from PVs and StorageClasses",
    ),
    (
        "CSINode",
        "volume topology comes from PVs and StorageClasses",
    ),
    (
        "VolumeAttachment",
        "volume topology comes from PVs and StorageClasses",
    ),
    (
        "RuntimeClass",
        "runtime class overhead is not applied; set spec.overhead on the pod",
    ),
    (
        "NodePool",
        "Karpenter configuration: convert it with `nodewright import`",
    ),
    ("NodeClaim", "Karpenter state, not workload"),
    (
        "EC2NodeClass",
        "Karpenter configuration: convert it with `nodewright import`",
    ),
    (
        "NodeOverlay",
        "Karpenter configuration: convert it with `nodewright import`",
    ),
    (
        "Provisioner",
        "Karpenter configuration: convert it with `nodewright import`",
    ),
    (
        "AWSNodeTemplate",
        "Karpenter configuration: convert it with `nodewright import`",
    ),
];

const USED_KINDS: &str = "Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob, PersistentVolumeClaim, PersistentVolume, StorageClass, PriorityClass, Node, Namespace, List";

fn typed<T: DeserializeOwned + Serialize>(
    ctx: &mut Ctx,
    at: &At,
    kind: &str,
    value: &Value,
) -> Result<T, WorkloadError> {
    let t: T = match serde_yaml_ng::from_value(value.clone()) {
        Ok(t) => t,
        Err(e) => {
            // Reparse the text when it is a whole document: that error knows its line and path.
            if at.base.0.is_empty() {
                let text = ctx.doc_text(at.doc).to_string();
                if let Err(e2) = serde_yaml_ng::from_str::<T>(&text) {
                    let d = &ctx.docs[at.doc];
                    let (line, col) = e2
                        .location()
                        .map(|l| (d.line0 + l.line(), l.column()))
                        .unwrap_or((at.line, 1));
                    let msg = e2.to_string();
                    let msg = msg.split_once(" at line ").map_or(msg.as_str(), |(m, _)| m);
                    return Err(ctx.error_at_line(
                        d.file,
                        line,
                        col.max(1),
                        ErrorKind::Schema,
                        format!("{kind}: {msg}"),
                        Some(format!(
                            "check the field against `kubectl explain {}`",
                            kind.to_lowercase()
                        )),
                    ));
                }
            }
            return Err(ctx.error(
                at,
                &Path::root(),
                ErrorKind::Schema,
                format!("{kind}: {e}"),
                Some(format!(
                    "check the fields against `kubectl explain {}`",
                    kind.to_lowercase()
                )),
            ));
        }
    };
    if let Ok(round) = serde_yaml_ng::to_value(&t) {
        let mut dropped = Vec::new();
        yaml::dropped_fields(value, &round, &Path::root(), &mut dropped);
        for p in dropped {
            ctx.note(
                at,
                &p,
                format!("{kind}: unknown field `{p}` ignored (not in the {kind} schema; a typo?)"),
            );
        }
    }
    Ok(t)
}

fn read_object(
    ctx: &mut Ctx,
    at: At,
    value: &Value,
    out: &mut Vec<(At, Obj)>,
) -> Result<(), WorkloadError> {
    let Value::Mapping(_) = value else {
        return Err(ctx.error(
            &at,
            &Path::root(),
            ErrorKind::Schema,
            "expected a Kubernetes object (a mapping with apiVersion and kind)".into(),
            Some("each YAML document must be one object, or a List with `items`".into()),
        ));
    };
    let Some(kind) = value
        .get("kind")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Err(ctx.error(
            &at,
            &Path::root(),
            ErrorKind::Schema,
            "object has no `kind`".into(),
            Some(
                "add `apiVersion` and `kind`, e.g. `apiVersion: apps/v1` and `kind: Deployment`"
                    .into(),
            ),
        ));
    };
    let obj = match kind.as_str() {
        "List" | "PodList" | "DeploymentList" | "NodeList" => {
            let items = match value.get("items") {
                Some(Value::Sequence(s)) => s.clone(),
                None | Some(Value::Null) => Vec::new(),
                Some(_) => {
                    return Err(ctx.error(
                        &at,
                        &Path::dotted("items"),
                        ErrorKind::Schema,
                        "List: `items` must be a sequence".into(),
                        None,
                    ));
                }
            };
            let starts = yaml::item_lines(ctx.doc_text(at.doc), &at.base.key("items"));
            let line0 = ctx.docs[at.doc].line0;
            for (i, item) in items.iter().enumerate() {
                let base = at.base.key("items").idx(i);
                let line = starts.get(i).map_or(at.line, |l| line0 + l + 1);
                read_object(
                    ctx,
                    At {
                        doc: at.doc,
                        base,
                        line,
                    },
                    item,
                    out,
                )?;
            }
            return Ok(());
        }
        "Pod" => Obj::Pod(typed(ctx, &at, &kind, value)?),
        "Deployment" => Obj::Deployment(typed(ctx, &at, &kind, value)?),
        "ReplicaSet" => Obj::ReplicaSet(typed(ctx, &at, &kind, value)?),
        "StatefulSet" => Obj::StatefulSet(typed(ctx, &at, &kind, value)?),
        "DaemonSet" => Obj::DaemonSet(typed(ctx, &at, &kind, value)?),
        "Job" => Obj::Job(typed(ctx, &at, &kind, value)?),
        "CronJob" => Obj::CronJob(typed(ctx, &at, &kind, value)?),
        "PersistentVolumeClaim" => Obj::Pvc(typed(ctx, &at, &kind, value)?),
        "PersistentVolume" => Obj::Pv(typed(ctx, &at, &kind, value)?),
        "StorageClass" => Obj::StorageClass(typed(ctx, &at, &kind, value)?),
        "PriorityClass" => Obj::PriorityClass(typed(ctx, &at, &kind, value)?),
        "Node" => Obj::Node(typed(ctx, &at, &kind, value)?),
        "Namespace" => {
            let ns: Box<core::Namespace> = typed(ctx, &at, &kind, value)?;
            ctx.note(
                &at,
                &Path::root(),
                format!(
                    "Namespace {}: used only to resolve pod affinity namespaceSelectors",
                    ns.metadata.name.as_deref().unwrap_or("")
                ),
            );
            Obj::Namespace(ns)
        }
        other => {
            let name = value
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if let Some((_, why)) = IGNORED.iter().find(|(k, _)| *k == other) {
                ctx.note(&at, &Path::root(), format!("{other} {name} ignored: {why}"));
                return Ok(());
            }
            return Err(ctx.error(
                &at,
                &Path::dotted("kind"),
                ErrorKind::UnknownKind,
                format!("unknown kind `{other}`"),
                Some(format!(
                    "nodewright reads {USED_KINDS}, and ignores (with a note) kinds that do not affect placement such as Service or ConfigMap; remove this object from the input"
                )),
            ));
        }
    };
    out.push((at, obj));
    Ok(())
}

fn parse_file(ctx: &mut Ctx, file: usize, out: &mut Vec<(At, Obj)>) -> Result<(), WorkloadError> {
    let text = ctx.files[file].1.clone();
    for d in yaml::split_documents(&text) {
        let value: Value = match serde_yaml_ng::from_str(d.text) {
            Ok(v) => v,
            Err(e) => {
                let (line, col) = e
                    .location()
                    .map(|l| (d.line0 + l.line(), l.column().max(1)))
                    .unwrap_or((d.line0 + 1, 1));
                let msg = e.to_string();
                let msg = msg.split_once(" at line ").map_or(msg.as_str(), |(m, _)| m);
                return Err(ctx.error_at_line(
                    file,
                    line,
                    col,
                    ErrorKind::Yaml,
                    format!("invalid YAML: {msg}"),
                    Some(
                        "check indentation and quoting; tabs are not allowed for indentation"
                            .into(),
                    ),
                ));
            }
        };
        if value.is_null() {
            continue;
        }
        // First line with content (skipping the marker, comments and blank lines).
        let first = d
            .text
            .lines()
            .position(|l| {
                let t = l.trim();
                !(t.is_empty() || t.starts_with('#') || t == "---")
            })
            .unwrap_or(0);
        ctx.docs.push(DocRef {
            file,
            line0: d.line0,
            offset: d.offset,
            len: d.text.len(),
        });
        let at = At {
            doc: ctx.docs.len() - 1,
            base: Path::root(),
            line: d.line0 + first + 1,
        };
        read_object(ctx, at, &value, out)?;
    }
    Ok(())
}

fn ns_of(m: &ObjectMeta) -> String {
    m.namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into())
}

fn name_of(m: &ObjectMeta) -> String {
    m.name.clone().unwrap_or_default()
}

fn controller_of(m: &ObjectMeta) -> Option<OwnerRef> {
    m.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .or_else(|| m.owner_references.iter().flatten().next())
        .map(|o| OwnerRef {
            kind: o.kind.clone(),
            name: o.name.clone(),
        })
}

struct Replicas<'a> {
    opts: &'a LoadOptions,
    used: BTreeSet<String>,
}

impl Replicas<'_> {
    fn get(&mut self, ns: &str, name: &str, default: u32) -> (u32, bool) {
        for k in [format!("{ns}/{name}"), name.to_string()] {
            if let Some(n) = self.opts.replicas.get(&k) {
                self.used.insert(k);
                return (*n, true);
            }
        }
        (default, false)
    }
}

/// Reads `files` (name, text) into a workload.
fn load_sources(files: Vec<(String, String)>, opts: &LoadOptions) -> Result<Loaded, WorkloadError> {
    let mut ctx = Ctx {
        files: files.into_iter().map(|(n, t)| (n, Arc::new(t))).collect(),
        docs: Vec::new(),
        notes: Vec::new(),
    };
    let mut objs = Vec::new();
    for f in 0..ctx.files.len() {
        parse_file(&mut ctx, f, &mut objs)?;
    }
    build(&mut ctx, objs, opts).map(|workload| Loaded {
        workload,
        notes: std::mem::take(&mut ctx.notes),
    })
}

/// Objects already typed, as a controller lists them from the API server.
#[derive(Debug, Clone, Default)]
pub struct ApiObjects {
    pub namespaces: Vec<core::Namespace>,
    pub priority_classes: Vec<PriorityClass>,
    pub storage_classes: Vec<StorageClass>,
    pub pvs: Vec<core::PersistentVolume>,
    pub pvcs: Vec<core::PersistentVolumeClaim>,
    pub nodes: Vec<core::Node>,
    pub daemonsets: Vec<DaemonSet>,
    pub pods: Vec<core::Pod>,
}

/// Loads objects read from the API server, with the same semantics as
/// [`load_text`] but no YAML in between (writing and re-parsing a large
/// cluster's objects took a second per pass).
///
/// There is no file, so diagnostics point into a listing that `source`
/// names, one line per object (`Pod shop/web-0`): an error names the
/// object it is about.
pub fn load_api(source: &str, objs: ApiObjects) -> Result<Loaded, WorkloadError> {
    fn name(m: &ObjectMeta) -> String {
        match &m.namespace {
            Some(ns) => format!("{ns}/{}", m.name.as_deref().unwrap_or("")),
            None => m.name.clone().unwrap_or_default(),
        }
    }
    let mut listing = String::new();
    let mut docs = Vec::new();
    let mut out = Vec::new();
    let mut push = |line: String, obj: Obj| {
        docs.push(DocRef {
            file: 0,
            line0: docs.len(),
            offset: listing.len(),
            len: line.len(),
        });
        listing.push_str(&line);
        listing.push('\n');
        let at = At {
            doc: docs.len() - 1,
            base: Path::root(),
            line: docs.len(),
        };
        out.push((at, obj));
    };
    for o in objs.namespaces {
        push(
            format!("Namespace {}", name(&o.metadata)),
            Obj::Namespace(Box::new(o)),
        );
    }
    for o in objs.priority_classes {
        push(
            format!("PriorityClass {}", name(&o.metadata)),
            Obj::PriorityClass(Box::new(o)),
        );
    }
    for o in objs.storage_classes {
        push(
            format!("StorageClass {}", name(&o.metadata)),
            Obj::StorageClass(Box::new(o)),
        );
    }
    for o in objs.pvs {
        push(
            format!("PersistentVolume {}", name(&o.metadata)),
            Obj::Pv(Box::new(o)),
        );
    }
    for o in objs.pvcs {
        push(
            format!("PersistentVolumeClaim {}", name(&o.metadata)),
            Obj::Pvc(Box::new(o)),
        );
    }
    for o in objs.nodes {
        push(
            format!("Node {}", name(&o.metadata)),
            Obj::Node(Box::new(o)),
        );
    }
    for o in objs.daemonsets {
        push(
            format!("DaemonSet {}", name(&o.metadata)),
            Obj::DaemonSet(Box::new(o)),
        );
    }
    for o in objs.pods {
        push(format!("Pod {}", name(&o.metadata)), Obj::Pod(Box::new(o)));
    }
    let mut ctx = Ctx {
        files: vec![(source.to_string(), Arc::new(listing))],
        docs,
        notes: Vec::new(),
    };
    build(&mut ctx, out, &LoadOptions::default()).map(|workload| Loaded {
        workload,
        notes: std::mem::take(&mut ctx.notes),
    })
}

/// Pod names of controllers' pods already in the input, by (kind, ns, name) of the controller.
type Existing = HashMap<(String, String, String), Vec<String>>;

struct Builder<'a> {
    env: Env,
    storage: Storage,
    grouper: Grouper,
    suffixes: Suffixes,
    replicas: Replicas<'a>,
    existing: Existing,
    daemonsets: Vec<DaemonSetOverhead>,
}

impl Builder<'_> {
    fn volume_zones(
        &self,
        ctx: &mut Ctx,
        at: &At,
        ns: &str,
        pod_name: &str,
        spec: &core::PodSpec,
        extra: &[(String, core::PersistentVolumeClaimSpec)],
    ) -> VolumeZones {
        let mut parts = Vec::new();
        let mut claims: Vec<(String, Option<core::PersistentVolumeClaimSpec>)> = extra
            .iter()
            .map(|(n, s)| (n.clone(), Some(s.clone())))
            .collect();
        for v in spec.volumes.iter().flatten() {
            if let Some(pvc) = &v.persistent_volume_claim {
                if !claims.iter().any(|(n, _)| *n == pvc.claim_name) {
                    claims.push((pvc.claim_name.clone(), None));
                }
            } else if let Some(t) = v
                .ephemeral
                .as_ref()
                .and_then(|e| e.volume_claim_template.as_ref())
            {
                claims.push((format!("{pod_name}-{}", v.name), Some(t.spec.clone())));
            }
        }
        for (claim, tpl) in &claims {
            match self.storage.claim_zones(ns, claim, tpl.as_ref()) {
                ClaimZones::Any => {}
                ClaimZones::Zones(z, why) => parts.push((z, why)),
                ClaimZones::Unknown(why) => ctx.note(at, &Path::root(), why),
            }
        }
        volumes::combine(&parts)
    }

    /// Adds `count` pods of one template, named by `name_of(i)`.
    #[allow(clippy::too_many_arguments)]
    fn add_pods(
        &mut self,
        ctx: &mut Ctx,
        at: &At,
        ns: &str,
        labels: &BTreeMap<String, String>,
        owner: Option<&OwnerRef>,
        shape: &Shape,
        spec: &core::PodSpec,
        names: Vec<String>,
        claims_of: impl Fn(usize) -> Vec<(String, core::PersistentVolumeClaimSpec)>,
    ) {
        let key = pods::shape_key(ns, labels, owner, shape);
        for (i, name) in names.into_iter().enumerate() {
            let vz = self.volume_zones(ctx, at, ns, &name, spec, &claims_of(i));
            self.grouper.add(ns, labels, owner, shape, &key, name, &vz);
        }
    }

    fn template<'t>(
        ctx: &Ctx,
        at: &At,
        kind: &str,
        path: &str,
        t: Option<&'t core::PodTemplateSpec>,
    ) -> Result<(&'t core::PodSpec, BTreeMap<String, String>), WorkloadError> {
        let spec = t.and_then(|t| t.spec.as_ref()).ok_or_else(|| {
            ctx.error(
                at,
                &Path::dotted(path),
                ErrorKind::Schema,
                format!("{kind}: `{path}.spec` is required"),
                Some("the pod template says what each replica runs and requests".into()),
            )
        })?;
        let labels = t
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        Ok((spec, labels))
    }

    fn how_many(
        &mut self,
        ctx: &mut Ctx,
        at: &At,
        kind: &str,
        ns: &str,
        name: &str,
        wanted: u32,
    ) -> u32 {
        let have = self
            .existing
            .get(&(kind.to_string(), ns.to_string(), name.to_string()))
            .map_or(0, |v| v.len() as u32);
        if have > 0 {
            ctx.note(
                at,
                &Path::root(),
                format!("{kind} {ns}/{name}: {have} of its pods are in the input; planning the other {}", wanted.saturating_sub(have)),
            );
        }
        wanted.saturating_sub(have)
    }

    fn zero_note(ctx: &mut Ctx, at: &At, kind: &str, ns: &str, name: &str, overridden: bool) {
        if !overridden {
            ctx.note(
                at,
                &Path::dotted("spec.replicas"),
                format!(
                    "{kind} {ns}/{name} has 0 replicas: no pods planned (use --replicas {name}=N)"
                ),
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn job(
        &mut self,
        ctx: &mut Ctx,
        at: &At,
        kind: &str,
        ns: &str,
        job_name: &str,
        key_name: &str,
        owner: &OwnerRef,
        spec: &JobSpec,
        spec_path: &str,
    ) -> Result<(), WorkloadError> {
        let (pspec, mut labels) = Self::template(
            ctx,
            at,
            kind,
            &format!("{spec_path}.template"),
            Some(&spec.template),
        )?;
        if spec.suspend == Some(true) {
            ctx.note(
                at,
                &Path::dotted(spec_path).key("suspend"),
                format!("{kind} {ns}/{key_name} is suspended: no pods planned"),
            );
            return Ok(());
        }
        let parallelism = spec.parallelism.unwrap_or(1).max(0) as u32;
        let (parallelism, overridden) = self.replicas.get(ns, key_name, parallelism);
        let count = match spec.completions {
            Some(c) if !overridden => parallelism.min(c.max(0) as u32),
            _ => parallelism,
        };
        if count == 0 {
            Self::zero_note(ctx, at, kind, ns, key_name, overridden);
            return Ok(());
        }
        let count = self.how_many(ctx, at, "Job", ns, job_name, count);
        labels.insert("batch.kubernetes.io/job-name".into(), job_name.to_string());
        labels.insert("job-name".into(), job_name.to_string());
        let sp = Path::dotted(spec_path).key("template").key("spec");
        let shape = pods::shape(ctx, at, &sp, pspec, &labels, &self.env)?;
        let indexed = spec.completion_mode.as_deref() == Some("Indexed");
        let seed = format!("{ns}/{job_name}");
        let names = (0..count as usize)
            .map(|i| {
                let prefix = if indexed {
                    format!("{job_name}-{i}-")
                } else {
                    format!("{job_name}-")
                };
                self.suffixes.next(&prefix, &seed, i)
            })
            .collect();
        self.add_pods(
            ctx,
            at,
            ns,
            &labels,
            Some(owner),
            &shape,
            pspec,
            names,
            |_| Vec::new(),
        );
        Ok(())
    }
}

fn terminal(p: &core::Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

fn build(
    ctx: &mut Ctx,
    objs: Vec<(At, Obj)>,
    opts: &LoadOptions,
) -> Result<Workload, WorkloadError> {
    let mut b = Builder {
        env: Env::default(),
        storage: Storage::default(),
        grouper: Grouper::default(),
        suffixes: Suffixes::new(),
        replicas: Replicas {
            opts,
            used: BTreeSet::new(),
        },
        existing: HashMap::new(),
        daemonsets: Vec::new(),
    };
    // Pass 1: everything pods refer to.
    let mut rs_owner: HashMap<(String, String), OwnerRef> = HashMap::new();
    let mut deployments: BTreeSet<(String, String)> = BTreeSet::new();
    let mut nodes = Vec::new();
    let mut node_index: HashMap<String, usize> = HashMap::new();
    for (at, o) in &objs {
        match o {
            Obj::Pvc(p) => b.storage.add_pvc(p),
            Obj::Pv(p) => b.storage.add_pv(p),
            Obj::StorageClass(s) => b.storage.add_class(s),
            Obj::PriorityClass(pc) => {
                let name = name_of(&pc.metadata);
                b.env.priority_classes.insert(name.clone(), pc.value);
                if pc.global_default == Some(true) {
                    b.env.default_priority = Some((name, pc.value));
                }
            }
            Obj::Namespace(n) => {
                b.env.namespaces.insert(
                    name_of(&n.metadata),
                    n.metadata.labels.clone().unwrap_or_default(),
                );
            }
            Obj::Node(n) => {
                let node = super::nodes::node(ctx, at, n)?;
                if node_index.insert(node.name.clone(), nodes.len()).is_some() {
                    ctx.note(
                        at,
                        &Path::root(),
                        format!("Node {} appears twice; the last one is used", node.name),
                    );
                }
                nodes.push(node);
            }
            Obj::Deployment(d) => {
                deployments.insert((ns_of(&d.metadata), name_of(&d.metadata)));
            }
            Obj::ReplicaSet(r) => {
                if let Some(o) = controller_of(&r.metadata) {
                    rs_owner.insert((ns_of(&r.metadata), name_of(&r.metadata)), o);
                }
            }
            _ => {}
        }
    }
    // Pods already in the input, credited to their controllers.
    for (_, o) in &objs {
        if let Obj::Pod(p) = o
            && !terminal(p)
            && let Some(owner) = controller_of(&p.metadata)
        {
            let ns = ns_of(&p.metadata);
            let name = name_of(&p.metadata);
            b.suffixes.reserve(&name);
            if owner.kind == "ReplicaSet"
                && let Some(d) = rs_owner.get(&(ns.clone(), owner.name.clone()))
                && d.kind == "Deployment"
            {
                b.existing
                    .entry((d.kind.clone(), ns.clone(), d.name.clone()))
                    .or_default()
                    .push(name.clone());
            }
            b.existing
                .entry((owner.kind, ns, owner.name))
                .or_default()
                .push(name);
        }
    }
    // Pass 2: pods.
    for (at, o) in &objs {
        match o {
            Obj::Pod(p) => {
                let ns = ns_of(&p.metadata);
                let spec = p.spec.as_ref().ok_or_else(|| {
                    ctx.error(
                        at,
                        &Path::root(),
                        ErrorKind::Schema,
                        "Pod: `spec` is required".into(),
                        None,
                    )
                })?;
                let owner = controller_of(&p.metadata);
                let name = match (&p.metadata.name, &p.metadata.generate_name) {
                    (Some(n), _) if !n.is_empty() => n.clone(),
                    (_, Some(g)) => b.suffixes.next(g, &format!("{ns}/{g}"), 0),
                    _ => {
                        return Err(ctx.error(
                            at,
                            &Path::dotted("metadata"),
                            ErrorKind::Schema,
                            "Pod: metadata.name or metadata.generateName is required".into(),
                            None,
                        ));
                    }
                };
                let labels = p.metadata.labels.clone().unwrap_or_default();
                if terminal(p) {
                    continue;
                }
                if let Some(node) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
                    let requests = pods::pod_requests(ctx, at, &Path::dotted("spec"), spec)?;
                    match node_index.get(node) {
                        Some(&i) => {
                            nodes[i].used.add(&requests);
                            nodes[i].pods.push(BoundPod {
                                namespace: ns,
                                name,
                                labels,
                            });
                        }
                        None => ctx.note(
                            at,
                            &Path::dotted("spec.nodeName"),
                            format!("Pod {ns}/{name} is bound to node {node}, which is not in the input; not counted"),
                        ),
                    }
                    continue;
                }
                if owner.as_ref().is_some_and(|o| o.kind == "DaemonSet") {
                    ctx.note(at, &Path::root(), format!("Pod {ns}/{name} belongs to a DaemonSet: counted as per-node overhead (via its DaemonSet), not as a pending pod"));
                    continue;
                }
                let shape = pods::shape(ctx, at, &Path::dotted("spec"), spec, &labels, &b.env)?;
                b.add_pods(
                    ctx,
                    at,
                    &ns,
                    &labels,
                    owner.as_ref(),
                    &shape,
                    spec,
                    vec![name],
                    |_| Vec::new(),
                );
            }
            Obj::Deployment(d) => {
                let ns = ns_of(&d.metadata);
                let name = name_of(&d.metadata);
                let spec = d.spec.as_ref().ok_or_else(|| {
                    ctx.error(
                        at,
                        &Path::root(),
                        ErrorKind::Schema,
                        "Deployment: `spec` is required".into(),
                        None,
                    )
                })?;
                let (pspec, mut labels) = Builder::template(
                    ctx,
                    at,
                    "Deployment",
                    "spec.template",
                    Some(&spec.template),
                )?;
                let (n, overridden) =
                    b.replicas
                        .get(&ns, &name, spec.replicas.unwrap_or(1).max(0) as u32);
                if n == 0 {
                    Builder::zero_note(ctx, at, "Deployment", &ns, &name, overridden);
                    continue;
                }
                let n = b.how_many(ctx, at, "Deployment", &ns, &name, n);
                let hash = names::template_hash(
                    &serde_json::to_string(&spec.template).unwrap_or_default(),
                );
                labels.insert("pod-template-hash".into(), hash.clone());
                let shape = pods::shape(
                    ctx,
                    at,
                    &Path::dotted("spec.template.spec"),
                    pspec,
                    &labels,
                    &b.env,
                )?;
                let prefix = format!("{name}-{hash}-");
                let seed = format!("{ns}/{name}/{hash}");
                let names = (0..n as usize)
                    .map(|i| b.suffixes.next(&prefix, &seed, i))
                    .collect();
                let owner = OwnerRef {
                    kind: "Deployment".into(),
                    name,
                };
                b.add_pods(
                    ctx,
                    at,
                    &ns,
                    &labels,
                    Some(&owner),
                    &shape,
                    pspec,
                    names,
                    |_| Vec::new(),
                );
            }
            Obj::ReplicaSet(r) => {
                let ns = ns_of(&r.metadata);
                let name = name_of(&r.metadata);
                if let Some(o) = rs_owner.get(&(ns.clone(), name.clone()))
                    && o.kind == "Deployment"
                    && deployments.contains(&(ns.clone(), o.name.clone()))
                {
                    ctx.note(at, &Path::root(), format!("ReplicaSet {ns}/{name} belongs to Deployment {}, which is in the input: the Deployment is planned instead", o.name));
                    continue;
                }
                let spec = r.spec.as_ref().ok_or_else(|| {
                    ctx.error(
                        at,
                        &Path::root(),
                        ErrorKind::Schema,
                        "ReplicaSet: `spec` is required".into(),
                        None,
                    )
                })?;
                let (pspec, labels) = Builder::template(
                    ctx,
                    at,
                    "ReplicaSet",
                    "spec.template",
                    spec.template.as_ref(),
                )?;
                let (n, overridden) =
                    b.replicas
                        .get(&ns, &name, spec.replicas.unwrap_or(1).max(0) as u32);
                if n == 0 {
                    Builder::zero_note(ctx, at, "ReplicaSet", &ns, &name, overridden);
                    continue;
                }
                let n = b.how_many(ctx, at, "ReplicaSet", &ns, &name, n);
                let shape = pods::shape(
                    ctx,
                    at,
                    &Path::dotted("spec.template.spec"),
                    pspec,
                    &labels,
                    &b.env,
                )?;
                let prefix = format!("{name}-");
                let seed = format!("{ns}/{name}");
                let names = (0..n as usize)
                    .map(|i| b.suffixes.next(&prefix, &seed, i))
                    .collect();
                let owner = OwnerRef {
                    kind: "ReplicaSet".into(),
                    name,
                };
                b.add_pods(
                    ctx,
                    at,
                    &ns,
                    &labels,
                    Some(&owner),
                    &shape,
                    pspec,
                    names,
                    |_| Vec::new(),
                );
            }
            Obj::StatefulSet(s) => {
                let ns = ns_of(&s.metadata);
                let name = name_of(&s.metadata);
                let spec = s.spec.as_ref().ok_or_else(|| {
                    ctx.error(
                        at,
                        &Path::root(),
                        ErrorKind::Schema,
                        "StatefulSet: `spec` is required".into(),
                        None,
                    )
                })?;
                let (pspec, labels) = Builder::template(
                    ctx,
                    at,
                    "StatefulSet",
                    "spec.template",
                    Some(&spec.template),
                )?;
                let (n, overridden) =
                    b.replicas
                        .get(&ns, &name, spec.replicas.unwrap_or(1).max(0) as u32);
                if n == 0 {
                    Builder::zero_note(ctx, at, "StatefulSet", &ns, &name, overridden);
                    continue;
                }
                let start = spec
                    .ordinals
                    .as_ref()
                    .and_then(|o| o.start)
                    .unwrap_or(0)
                    .max(0) as usize;
                let have: BTreeSet<String> = b
                    .existing
                    .get(&("StatefulSet".to_string(), ns.clone(), name.clone()))
                    .map(|v| v.iter().cloned().collect())
                    .unwrap_or_default();
                let ordinals: Vec<usize> = (start..start + n as usize)
                    .filter(|i| !have.contains(&format!("{name}-{i}")))
                    .collect();
                if ordinals.len() < n as usize {
                    ctx.note(at, &Path::root(), format!("StatefulSet {ns}/{name}: {} of its pods are in the input; planning the others", n as usize - ordinals.len()));
                }
                let shape = pods::shape(
                    ctx,
                    at,
                    &Path::dotted("spec.template.spec"),
                    pspec,
                    &labels,
                    &b.env,
                )?;
                let templates: Vec<(String, core::PersistentVolumeClaimSpec)> = spec
                    .volume_claim_templates
                    .iter()
                    .flatten()
                    .map(|t| (name_of(&t.metadata), t.spec.clone().unwrap_or_default()))
                    .collect();
                let names: Vec<String> = ordinals.iter().map(|i| format!("{name}-{i}")).collect();
                let owner = OwnerRef {
                    kind: "StatefulSet".into(),
                    name: name.clone(),
                };
                let claims_of = |k: usize| -> Vec<(String, core::PersistentVolumeClaimSpec)> {
                    templates
                        .iter()
                        .map(|(t, s)| (format!("{t}-{name}-{}", ordinals[k]), s.clone()))
                        .collect()
                };
                b.add_pods(
                    ctx,
                    at,
                    &ns,
                    &labels,
                    Some(&owner),
                    &shape,
                    pspec,
                    names,
                    claims_of,
                );
            }
            Obj::DaemonSet(d) => {
                let ns = ns_of(&d.metadata);
                let name = name_of(&d.metadata);
                let spec = d.spec.as_ref().ok_or_else(|| {
                    ctx.error(
                        at,
                        &Path::root(),
                        ErrorKind::Schema,
                        "DaemonSet: `spec` is required".into(),
                        None,
                    )
                })?;
                let (pspec, _labels) =
                    Builder::template(ctx, at, "DaemonSet", "spec.template", Some(&spec.template))?;
                let sp = Path::dotted("spec.template.spec");
                let requests = pods::pod_requests(ctx, at, &sp, pspec)?;
                let (node_selector, required_affinity, _) =
                    pods::node_constraints(ctx, at, &sp, pspec)?;
                let tolerations = pods::tolerations(ctx, at, &sp, pspec)?;
                b.daemonsets.push(DaemonSetOverhead {
                    namespace: ns,
                    name,
                    requests,
                    node_selector,
                    required_affinity,
                    tolerations,
                });
            }
            Obj::Job(j) => {
                let ns = ns_of(&j.metadata);
                let name = name_of(&j.metadata);
                let spec = j.spec.as_ref().ok_or_else(|| {
                    ctx.error(
                        at,
                        &Path::root(),
                        ErrorKind::Schema,
                        "Job: `spec` is required".into(),
                        None,
                    )
                })?;
                if j.status
                    .as_ref()
                    .is_some_and(|s| s.completion_time.is_some())
                {
                    ctx.note(
                        at,
                        &Path::dotted("status"),
                        format!("Job {ns}/{name} has completed: no pods planned"),
                    );
                    continue;
                }
                let owner = controller_of(&j.metadata).unwrap_or(OwnerRef {
                    kind: "Job".into(),
                    name: name.clone(),
                });
                b.job(ctx, at, "Job", &ns, &name, &name, &owner, spec, "spec")?;
            }
            Obj::CronJob(c) => {
                let ns = ns_of(&c.metadata);
                let name = name_of(&c.metadata);
                let spec = c.spec.as_ref().ok_or_else(|| {
                    ctx.error(
                        at,
                        &Path::root(),
                        ErrorKind::Schema,
                        "CronJob: `spec` is required".into(),
                        None,
                    )
                })?;
                if spec.suspend == Some(true) {
                    ctx.note(
                        at,
                        &Path::dotted("spec.suspend"),
                        format!("CronJob {ns}/{name} is suspended: no pods planned"),
                    );
                    continue;
                }
                let job_spec = spec.job_template.spec.as_ref().ok_or_else(|| {
                    ctx.error(
                        at,
                        &Path::dotted("spec.jobTemplate"),
                        ErrorKind::Schema,
                        "CronJob: `spec.jobTemplate.spec` is required".into(),
                        None,
                    )
                })?;
                let job_name = format!("{name}-{}", names::cron_id(&ns, &name, &spec.schedule));
                let owner = OwnerRef {
                    kind: "CronJob".into(),
                    name: name.clone(),
                };
                b.job(
                    ctx,
                    at,
                    "CronJob",
                    &ns,
                    &job_name,
                    &name,
                    &owner,
                    job_spec,
                    "spec.jobTemplate.spec",
                )?;
            }
            _ => {}
        }
    }
    for k in opts.replicas.keys() {
        if !b.replicas.used.contains(k) {
            return Err(WorkloadError::UnknownReplicas { name: k.clone() });
        }
    }
    Ok(Workload {
        classes: b.grouper.finish(),
        daemonsets: b.daemonsets,
        nodes,
    })
}

/// Loads workload files (Pods, controllers, volumes, DaemonSets, and Nodes
/// with their bound pods), keeping the notes about what was ignored.
pub fn load(paths: &[PathBuf], opts: &LoadOptions) -> Result<Loaded, WorkloadError> {
    let mut files = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(p).map_err(|source| WorkloadError::Io {
            file: p.display().to_string(),
            source,
        })?;
        files.push((p.display().to_string(), text));
    }
    load_sources(files, opts)
}

/// Loads workload files; notes are logged as warnings (use [`load`] to get them).
pub fn load_files(paths: &[PathBuf], opts: &LoadOptions) -> Result<Workload, WorkloadError> {
    let loaded = load(paths, opts)?;
    for n in &loaded.notes {
        tracing::warn!("{n}");
    }
    Ok(loaded.workload)
}

/// Loads one in-memory file (`file` names it in diagnostics), keeping the notes.
pub fn load_text(file: &str, text: &str, opts: &LoadOptions) -> Result<Loaded, WorkloadError> {
    load_sources(vec![(file.to_string(), text.to_string())], opts)
}

/// Loads one in-memory file; notes are logged as warnings.
pub fn load_str(file: &str, text: &str, opts: &LoadOptions) -> Result<Workload, WorkloadError> {
    let loaded = load_text(file, text, opts)?;
    for n in &loaded.notes {
        tracing::warn!("{n}");
    }
    Ok(loaded.workload)
}

/// Loads existing Nodes and the pods bound to them (for `--nodes`). Pending
/// pods in these files are not returned; load them with [`load_files`].
pub fn load_nodes(paths: &[PathBuf]) -> Result<Vec<super::ExistingNode>, WorkloadError> {
    let w = load_files(paths, &LoadOptions::default())?;
    let pending: usize = w.classes.iter().map(|c| c.count()).sum();
    if pending > 0 {
        tracing::warn!(
            "{pending} pending pods in the --nodes files are not planned; pass those files to --workload"
        );
    }
    Ok(w.nodes)
}
