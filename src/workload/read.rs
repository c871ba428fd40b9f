//! Reading YAML text into typed Kubernetes objects, each with where it came
//! from: documents are split, parsed, and each object is read with its
//! k8s-openapi type; kinds that do not affect placement are noted and skipped.
//!
//! Every object costs time in proportion to its own text: positions come
//! from the per-object locator (`Ctx::pos`), never from a rescan of the file.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use super::ctx::{At, Ctx, DocRef, Item, input_error};
use super::depth;
use super::error::{ErrorKind, WorkloadError};
use super::yaml::{self, DocText, Path};

/// A parsed object of a kind nodewright uses.
pub(super) enum Obj {
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

pub(super) const USED_KINDS: &str = "Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob, PersistentVolumeClaim, PersistentVolume, StorageClass, PriorityClass, Node, Namespace, List";

impl Obj {
    /// The object's kind, as written in `kind:`.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Obj::Pod(_) => "Pod",
            Obj::Deployment(_) => "Deployment",
            Obj::ReplicaSet(_) => "ReplicaSet",
            Obj::StatefulSet(_) => "StatefulSet",
            Obj::DaemonSet(_) => "DaemonSet",
            Obj::Job(_) => "Job",
            Obj::CronJob(_) => "CronJob",
            Obj::Pvc(_) => "PersistentVolumeClaim",
            Obj::Pv(_) => "PersistentVolume",
            Obj::StorageClass(_) => "StorageClass",
            Obj::PriorityClass(_) => "PriorityClass",
            Obj::Node(_) => "Node",
            Obj::Namespace(_) => "Namespace",
        }
    }

    /// The object's metadata.
    pub(super) fn meta(&self) -> &ObjectMeta {
        match self {
            Obj::Pod(o) => &o.metadata,
            Obj::Deployment(o) => &o.metadata,
            Obj::ReplicaSet(o) => &o.metadata,
            Obj::StatefulSet(o) => &o.metadata,
            Obj::DaemonSet(o) => &o.metadata,
            Obj::Job(o) => &o.metadata,
            Obj::CronJob(o) => &o.metadata,
            Obj::Pvc(o) => &o.metadata,
            Obj::Pv(o) => &o.metadata,
            Obj::StorageClass(o) => &o.metadata,
            Obj::PriorityClass(o) => &o.metadata,
            Obj::Node(o) => &o.metadata,
            Obj::Namespace(o) => &o.metadata,
        }
    }
}

/// Reads `value` as a `T`, noting the fields its schema does not have.
fn typed<T: DeserializeOwned + Serialize>(
    ctx: &mut Ctx,
    at: &At,
    kind: &str,
    value: &Value,
) -> Result<T, WorkloadError> {
    let t: T = match serde_yaml_ng::from_value(value.clone()) {
        Ok(t) => t,
        Err(e) => return Err(schema_error::<T>(ctx, at, kind, &e)),
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

/// The error for an object that does not fit its kind's schema.
fn schema_error<T: DeserializeOwned>(
    ctx: &Ctx,
    at: &At,
    kind: &str,
    e: &serde_yaml_ng::Error,
) -> WorkloadError {
    // Reparse the text when it is a whole document: that error knows its line and path.
    if at.item.is_none()
        && let Err(e2) = serde_yaml_ng::from_str::<T>(ctx.doc_text(at.doc))
    {
        let d = &ctx.docs[at.doc];
        let (line, col) = e2
            .location()
            .map(|l| (d.line0 + l.line(), l.column()))
            .unwrap_or((at.line, 1));
        return ctx.error_at_line(
            d.file,
            line,
            col.max(1),
            ErrorKind::Schema,
            format!("{kind}: {}", without_position(&e2)),
            Some(format!(
                "check the field against `kubectl explain {}`",
                kind.to_lowercase()
            )),
        );
    }
    ctx.error(
        at,
        &Path::root(),
        ErrorKind::Schema,
        format!("{kind}: {e}"),
        Some(format!(
            "check the fields against `kubectl explain {}`",
            kind.to_lowercase()
        )),
    )
}

/// A serde_yaml_ng message without its trailing " at line L column C".
fn without_position(e: &serde_yaml_ng::Error) -> String {
    let msg = e.to_string();
    msg.split_once(" at line ")
        .map_or(msg.as_str(), |(m, _)| m)
        .to_string()
}

/// Reads one object (or every item of a List) into `out`.
pub(super) fn read_object(
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
    let Some(kind) = value.get("kind").and_then(Value::as_str) else {
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
    let obj = match kind {
        "List" | "PodList" | "DeploymentList" | "NodeList" => {
            return read_list(ctx, &at, value, out);
        }
        "Pod" => Obj::Pod(typed(ctx, &at, kind, value)?),
        "Deployment" => Obj::Deployment(typed(ctx, &at, kind, value)?),
        "ReplicaSet" => Obj::ReplicaSet(typed(ctx, &at, kind, value)?),
        "StatefulSet" => Obj::StatefulSet(typed(ctx, &at, kind, value)?),
        "DaemonSet" => Obj::DaemonSet(typed(ctx, &at, kind, value)?),
        "Job" => Obj::Job(typed(ctx, &at, kind, value)?),
        "CronJob" => Obj::CronJob(typed(ctx, &at, kind, value)?),
        "PersistentVolumeClaim" => Obj::Pvc(typed(ctx, &at, kind, value)?),
        "PersistentVolume" => Obj::Pv(typed(ctx, &at, kind, value)?),
        "StorageClass" => Obj::StorageClass(typed(ctx, &at, kind, value)?),
        "PriorityClass" => Obj::PriorityClass(typed(ctx, &at, kind, value)?),
        "Node" => Obj::Node(typed(ctx, &at, kind, value)?),
        "Namespace" => {
            let ns: Box<core::Namespace> = typed(ctx, &at, kind, value)?;
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
        other => return ignore_or_reject(ctx, &at, other, value),
    };
    out.push((at, obj));
    Ok(())
}

/// Reads the items of a `kind: List`, each located within its own lines.
fn read_list(
    ctx: &mut Ctx,
    at: &At,
    value: &Value,
    out: &mut Vec<(At, Obj)>,
) -> Result<(), WorkloadError> {
    let items = match value.get("items") {
        Some(Value::Sequence(s)) => s.as_slice(),
        None | Some(Value::Null) => &[],
        Some(_) => {
            return Err(ctx.error(
                at,
                &Path::dotted("items"),
                ErrorKind::Schema,
                "List: `items` must be a sequence".into(),
                None,
            ));
        }
    };
    let (text, line0) = ctx.object_text(at);
    let parent = at.item.as_ref().map(|i| i.col);
    let starts = yaml::item_lines_in(text, &Path::dotted("items"), parent);
    // Lines relative to the document, as `Item` counts them.
    let doc_line0 = ctx.docs[at.doc].line0;
    let base = line0 - doc_line0;
    let end = base + text.lines().count();
    for (i, item) in items.iter().enumerate() {
        let item_at = match starts.get(i) {
            Some(&(l, col)) => At {
                doc: at.doc,
                item: Some(Item {
                    lines: base + l..starts.get(i + 1).map_or(end, |(n, _)| base + n),
                    col,
                }),
                line: line0 + l + 1,
            },
            // Not block style: no lines to look in, so the List's line is used.
            None => At {
                doc: at.doc,
                item: Some(Item {
                    lines: end..end,
                    col: 0,
                }),
                line: at.line,
            },
        };
        read_object(ctx, item_at, item, out)?;
    }
    Ok(())
}

/// A kind nodewright does not use: a note when it is known not to affect
/// placement, an error otherwise.
fn ignore_or_reject(
    ctx: &mut Ctx,
    at: &At,
    kind: &str,
    value: &Value,
) -> Result<(), WorkloadError> {
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if let Some((_, why)) = IGNORED.iter().find(|(k, _)| *k == kind) {
        ctx.note(at, &Path::root(), format!("{kind} {name} ignored: {why}"));
        return Ok(());
    }
    Err(ctx.error(
        at,
        &Path::dotted("kind"),
        ErrorKind::UnknownKind,
        format!("unknown kind `{kind}`"),
        Some(format!(
            "nodewright reads {USED_KINDS}, and ignores (with a note) kinds that do not affect placement such as Service or ConfigMap; remove this object from the input"
        )),
    ))
}

/// Reads every document of file `file` into `out`.
pub(super) fn parse_file(
    ctx: &mut Ctx,
    file: usize,
    out: &mut Vec<(At, Obj)>,
) -> Result<(), WorkloadError> {
    let text = Arc::clone(&ctx.files[file].text);
    for d in yaml::split_documents(&text) {
        if let Some(at) = depth::too_deep(d.text, depth::MAX_DEPTH) {
            return Err(too_deep(ctx, file, d.offset + at));
        }
        let value: Value =
            serde_yaml_ng::from_str(d.text).map_err(|e| yaml_error(ctx, file, &d, &e))?;
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
            item: None,
            line: d.line0 + first + 1,
        };
        read_object(ctx, at, &value, out)?;
    }
    Ok(())
}

const TOO_DEEP: &str = "YAML nested too deeply (more than 128 levels)";
const TOO_DEEP_HELP: &str =
    "Kubernetes objects nest a few levels deep; this is not a workload file, or it is broken";

/// The error for a flow collection nested too deep, at byte `offset` of `file`.
fn too_deep(ctx: &Ctx, file: usize, offset: usize) -> WorkloadError {
    let src = &ctx.files[file];
    input_error(
        src,
        offset,
        src.line_col(offset),
        ErrorKind::Limit,
        TOO_DEEP.into(),
        Some(TOO_DEEP_HELP.into()),
    )
}

/// The located error for a document that is not valid YAML, or that hits
/// one of the parser's bounds (alias expansion, nesting depth).
fn yaml_error(ctx: &Ctx, file: usize, d: &DocText, e: &serde_yaml_ng::Error) -> WorkloadError {
    let src = &ctx.files[file];
    let msg = without_position(e);
    let (msg, position) = match msg.rsplit_once(" at position ") {
        Some((m, n)) => (m.to_string(), n.trim().parse::<usize>().ok()),
        None => (msg, None),
    };
    let (kind, message, help) = if msg.contains("repetition limit exceeded") {
        (
            ErrorKind::Limit,
            "YAML aliases here expand to too much data (an alias bomb?)".to_string(),
            "nodewright expands YAML aliases only up to a limit; write the objects out instead of nesting aliases",
        )
    } else if msg.contains("recursion limit exceeded") {
        (ErrorKind::Limit, TOO_DEEP.to_string(), TOO_DEEP_HELP)
    } else if msg.contains("control characters are not allowed") {
        (
            ErrorKind::Yaml,
            format!("invalid YAML: {msg}"),
            "remove the control character; NUL bytes usually mean a binary file or a UTF-16 encoding",
        )
    } else {
        (
            ErrorKind::Yaml,
            format!("invalid YAML: {msg}"),
            "check indentation and quoting; tabs are not allowed for indentation",
        )
    };
    let offset = if let Some(p) = position {
        Some(d.offset + p)
    } else if kind == ErrorKind::Limit && e.location().is_none() {
        first_alias(d.text).map(|p| d.offset + p)
    } else {
        None
    };
    if let Some(offset) = offset {
        let offset = offset.min(src.text.len());
        return input_error(
            src,
            offset,
            src.line_col(offset),
            kind,
            message,
            Some(help.into()),
        );
    }
    let (line, col) = e
        .location()
        .map(|l| (d.line0 + l.line(), l.column().max(1)))
        .unwrap_or((d.line0 + 1, 1));
    ctx.error_at_line(file, line, col, kind, message, Some(help.into()))
}

/// Byte offset of the first alias (`*name`) in `text`: where an alias bomb
/// starts expanding, since the parser does not say.
fn first_alias(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    (0..bytes.len()).find(|&i| {
        bytes[i] == b'*'
            && (i == 0
                || matches!(
                    bytes[i - 1],
                    b' ' | b'\t' | b'\n' | b'[' | b'{' | b',' | b':'
                ))
            && bytes
                .get(i + 1)
                .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    })
}
