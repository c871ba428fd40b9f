//! Reading Kubernetes YAML files into a `Workload`: the public entry points.
//!
//! Two stages: `read` parses every document into its typed k8s-openapi
//! struct (remembering where it came from), then `build` expands the
//! objects into pods, groups them into classes, and gives existing Nodes
//! their bound pods. Between the two, the same object given twice is an error.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;

use super::Workload;
use super::build::{build, name_of, ns_of};
use super::ctx::{At, Ctx, DocRef, Source, input_error};
use super::error::{ErrorKind, Note, WorkloadError};
use super::read::{Obj, parse_file};
use super::yaml::Path;

/// The default ceiling on pods per plan (`LoadOptions::max_pods`).
pub const DEFAULT_MAX_PODS: usize = 1_000_000;

/// A UTF-8 byte-order mark, which some editors write at the start of a file.
const BOM: &str = "\u{feff}";

/// How to read the input.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `--replicas NAME=N`: replica count overrides, by object name or
    /// `NAMESPACE/NAME` (Deployments, ReplicaSets, StatefulSets; a Job's or
    /// CronJob's parallelism).
    pub replicas: BTreeMap<String, u32>,
    /// `--max-pods`: the most pods a plan may ask for, over all objects.
    /// A count past it (`replicas: 2147483647`) is an error at the object,
    /// not hours of work and gigabytes of pod names.
    pub max_pods: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            replicas: BTreeMap::new(),
            max_pods: DEFAULT_MAX_PODS,
        }
    }
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

/// Reads `files` (name, text) into a workload.
fn load_sources(files: Vec<(String, String)>, opts: &LoadOptions) -> Result<Loaded, WorkloadError> {
    let mut ctx = Ctx::new(files);
    let mut objs = Vec::new();
    for f in 0..ctx.files.len() {
        parse_file(&mut ctx, f, &mut objs)?;
    }
    no_duplicates(&ctx, &objs)?;
    build(&mut ctx, objs, opts).map(|workload| Loaded {
        workload,
        notes: std::mem::take(&mut ctx.notes),
    })
}

/// Errors when two objects have the same kind, namespace and name: the API
/// server holds one, so planning both would plan pods that cannot exist.
fn no_duplicates(ctx: &Ctx, objs: &[(At, Obj)]) -> Result<(), WorkloadError> {
    let mut seen: HashMap<(&str, String, String), &At> = HashMap::new();
    for (at, o) in objs {
        let m = o.meta();
        let name = name_of(m);
        if name.is_empty() {
            continue;
        }
        let key = (o.kind(), ns_of(m), name);
        if let Some(first) = seen.get(&key) {
            let (kind, ns, name) = &key;
            let here = Path::dotted("metadata.name");
            return Err(ctx.error(
                at,
                &here,
                ErrorKind::Duplicate,
                format!(
                    "{kind} {ns}/{name} is given twice: here and at {}",
                    ctx.place(first, &here)
                ),
                Some("the cluster holds one object per kind, namespace and name: remove one of them, or rename it".into()),
            ));
        }
        seen.insert(key, at);
    }
    Ok(())
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
    let mut ctx = Ctx::new(Vec::new());
    let (listing, out) = api_listing(&mut ctx, objs);
    ctx.files.push(Source::new(source.to_string(), listing));
    // Each API object is one pod at most, already admitted by the API
    // server: no ceiling beyond what the cluster holds.
    let opts = LoadOptions {
        max_pods: usize::MAX,
        ..LoadOptions::default()
    };
    build(&mut ctx, out, &opts).map(|workload| Loaded {
        workload,
        notes: std::mem::take(&mut ctx.notes),
    })
}

/// The objects in the order the builder needs them, each with a line
/// (`Pod shop/web-0`) of the listing diagnostics point into.
fn api_listing(ctx: &mut Ctx, objs: ApiObjects) -> (String, Vec<(At, Obj)>) {
    fn b<T>(f: fn(Box<T>) -> Obj) -> impl Fn(T) -> Obj {
        move |o| f(Box::new(o))
    }
    let all = (objs.namespaces.into_iter().map(b(Obj::Namespace)))
        .chain(objs.priority_classes.into_iter().map(b(Obj::PriorityClass)))
        .chain(objs.storage_classes.into_iter().map(b(Obj::StorageClass)))
        .chain(objs.pvs.into_iter().map(b(Obj::Pv)))
        .chain(objs.pvcs.into_iter().map(b(Obj::Pvc)))
        .chain(objs.nodes.into_iter().map(b(Obj::Node)))
        .chain(objs.daemonsets.into_iter().map(b(Obj::DaemonSet)))
        .chain(objs.pods.into_iter().map(b(Obj::Pod)));
    let mut listing = String::new();
    let mut out = Vec::new();
    for obj in all {
        let m = obj.meta();
        let name = match &m.namespace {
            Some(ns) => format!("{ns}/{}", m.name.as_deref().unwrap_or("")),
            None => m.name.clone().unwrap_or_default(),
        };
        let line = format!("{} {name}", obj.kind());
        ctx.docs.push(DocRef {
            file: 0,
            line0: out.len(),
            offset: listing.len(),
            len: line.len(),
        });
        listing.push_str(&line);
        listing.push('\n');
        let at = At {
            doc: out.len(),
            item: None,
            line: out.len() + 1,
        };
        out.push((at, obj));
    }
    (listing, out)
}

/// Loads workload files (Pods, controllers, volumes, DaemonSets, and Nodes
/// with their bound pods), keeping the notes about what was ignored.
pub fn load(paths: &[PathBuf], opts: &LoadOptions) -> Result<Loaded, WorkloadError> {
    let mut files = Vec::new();
    for p in paths {
        let name = p.display().to_string();
        let bytes = std::fs::read(p).map_err(|source| WorkloadError::Io {
            file: name.clone(),
            source,
        })?;
        files.push((name.clone(), decode(&name, bytes)?));
    }
    load_sources(files, opts)
}

/// Loads one in-memory file given as bytes (`file` names it in
/// diagnostics): text that is not UTF-8 is a located error, and a leading
/// byte-order mark is dropped.
pub fn load_bytes(file: &str, bytes: &[u8], opts: &LoadOptions) -> Result<Loaded, WorkloadError> {
    let text = decode(file, bytes.to_vec())?;
    load_sources(vec![(file.to_string(), text)], opts)
}

/// The text of a file: UTF-8 without its byte-order mark, or an error at
/// the line and column of the first byte that is not UTF-8.
fn decode(file: &str, mut bytes: Vec<u8>) -> Result<String, WorkloadError> {
    if bytes.starts_with(BOM.as_bytes()) {
        bytes.drain(..BOM.len());
    }
    String::from_utf8(bytes).map_err(|e| {
        let bad = e.utf8_error().valid_up_to();
        let shown = String::from_utf8_lossy(e.as_bytes()).into_owned();
        let src = Source::new(file.to_string(), shown);
        let byte = e.as_bytes().get(bad).copied().unwrap_or(0);
        input_error(
            &src,
            bad,
            src.line_col(bad),
            ErrorKind::Encoding,
            format!("not UTF-8 text: byte 0x{byte:02x} is not valid UTF-8"),
            Some("save the file as UTF-8 (kubectl writes UTF-8); a binary or UTF-16 file cannot be read as YAML".into()),
        )
    })
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
    let text = text.strip_prefix(BOM).unwrap_or(text);
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
