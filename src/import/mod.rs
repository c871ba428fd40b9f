//! Karpenter YAML (v1 NodePool, EC2NodeClass, NodeOverlay; v1alpha5 Provisioner, AWSNodeTemplate) → policy AST.
//!
//! The importer reads multi-document YAML into the serde models of [`yaml`]
//! (which reject unknown and unrepresentable fields at their line and
//! column), then [`convert`] builds a [`crate::policy::ast::File`] that the
//! policy formatter prints and the policy compiler turns into the IR. Going
//! through the AST, not straight to the IR, means imported YAML and the
//! policy text it prints compile through one code path and cannot disagree.

// Import errors carry their source snippet; they are built once per failed import (cold path).
#![allow(
    clippy::result_large_err,
    reason = "import errors carry their source snippet and are built once per failed import"
)]

mod convert;
mod locate;
mod yaml;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{NamedSource, SourceSpan};
use serde::Deserialize;

use crate::policy::ast;
use yaml::{
    AwsNodeTemplateSpec, Ec2NodeClassSpec, HINT_SEP, Header, NodeOverlaySpec, NodePoolSpec, Object,
    ProvisionerSpec,
};

/// The result of an import: the policy AST plus what the user should know.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The policy, ready for `policy::format` or the compiler.
    pub file: ast::File,
    /// Things imported approximately or not at all (annotations, object labels).
    pub warnings: Vec<ImportWarning>,
    /// `kubernetes.io/description` annotations, as `(kind name, text)`, for a comment header.
    pub descriptions: Vec<(String, String)>,
}

/// A fatal import problem at a YAML location.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
#[error("{file}:{line}:{column}: {message}")]
#[diagnostic(code(nodewright::import))]
pub struct ImportError {
    /// What is wrong.
    pub message: String,
    /// The YAML file (as given).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The YAML text, for the snippet.
    #[source_code]
    pub src: NamedSource<Arc<str>>,
    /// Where, in `src`.
    #[label("here")]
    pub span: SourceSpan,
    /// How to fix it.
    #[help]
    pub help: Option<String>,
    /// Further errors (other documents or files).
    #[related]
    pub others: Vec<ImportError>,
}

/// A non-fatal import note at a YAML location.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
#[error("{file}:{line}:{column}: {message}")]
#[diagnostic(code(nodewright::import), severity(Warning))]
pub struct ImportWarning {
    /// What was not imported, or imported approximately.
    pub message: String,
    /// The YAML file (as given).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The YAML text, for the snippet.
    #[source_code]
    pub src: NamedSource<Arc<str>>,
    /// Where, in `src`.
    #[label("here")]
    pub span: SourceSpan,
    /// What to do about it.
    #[help]
    pub help: Option<String>,
}

/// One YAML source file.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub name: Arc<str>,
    pub text: Arc<str>,
}

impl Source {
    /// 1-based line and column of a byte offset.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// A located error.
    pub(crate) fn error(
        &self,
        offset: usize,
        len: usize,
        message: String,
        help: Option<String>,
    ) -> ImportError {
        let (line, column) = self.line_col(offset);
        ImportError {
            message,
            file: self.name.to_string(),
            line,
            column,
            src: NamedSource::new(&self.name, self.text.clone()),
            span: SourceSpan::new(offset.into(), len),
            help,
            others: Vec::new(),
        }
    }

    /// A located warning.
    pub(crate) fn warning(
        &self,
        offset: usize,
        len: usize,
        message: String,
        help: Option<String>,
    ) -> ImportWarning {
        let (line, column) = self.line_col(offset);
        ImportWarning {
            message,
            file: self.name.to_string(),
            line,
            column,
            src: NamedSource::new(&self.name, self.text.clone()),
            span: SourceSpan::new(offset.into(), len),
            help,
        }
    }
}

/// One YAML document of a source: its byte range and its own text.
#[derive(Debug, Clone)]
pub(crate) struct Doc {
    pub source: Source,
    /// Byte offset of the document's first line in the source.
    pub offset: usize,
    /// The document text, same byte length as its range (the `---` marker blanked).
    pub text: String,
}

impl Doc {
    /// Byte offset in the source of a serde_yaml_ng location (1-based line, column) in this doc.
    fn offset_of(&self, line: usize, column: usize) -> usize {
        let mut off = 0;
        for (i, l) in self.text.split_inclusive('\n').enumerate() {
            if i + 1 == line {
                let col: usize = l
                    .char_indices()
                    .nth(column.saturating_sub(1))
                    .map_or(l.trim_end_matches('\n').len(), |(b, _)| b);
                return self.offset + off + col;
            }
            off += l.len();
        }
        self.offset + self.text.len()
    }

    /// The length of the token at doc-relative byte `rel` (to the end of the word), at least 1.
    fn token_len(&self, rel: usize) -> usize {
        let rest = self.text.get(rel..).unwrap_or("");
        let n = rest
            .find(|c: char| c.is_whitespace() || c == ',' || c == ']' || c == '}')
            .unwrap_or(rest.len());
        n.max(1)
    }

    /// Converts a serde_yaml_ng error into a located import error.
    pub(crate) fn yaml_error(&self, e: &serde_yaml_ng::Error) -> ImportError {
        let (offset, len) = match e.location() {
            Some(loc) => {
                let off = self.offset_of(loc.line(), loc.column());
                (off, self.token_len(off - self.offset))
            }
            None => (self.offset, 0),
        };
        let text = e.to_string();
        // serde_yaml_ng appends " at line L column C"; we print our own location.
        let text = match text.rfind(" at line ") {
            Some(i) => text[..i].to_string(),
            None => text,
        };
        let (message, help) = match text.split_once(HINT_SEP) {
            Some((m, h)) => (m.to_string(), Some(h.to_string())),
            None => {
                let help = default_help(&text);
                (text, help)
            }
        };
        self.source.error(offset, len, message, help)
    }

    /// An error at `path` inside this document (see [`locate::locate`]), or at its start.
    pub(crate) fn error_at(
        &self,
        path: &[&str],
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> ImportError {
        let (off, len) = self.span_of(path);
        self.source
            .error(off, len, message.into(), Some(help.into()))
    }

    /// A warning at `path` inside this document.
    pub(crate) fn warning_at(
        &self,
        path: &[&str],
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> ImportWarning {
        let (off, len) = self.span_of(path);
        self.source
            .warning(off, len, message.into(), Some(help.into()))
    }

    /// Source byte range of the node at `path`, or of the document's first content line.
    pub(crate) fn span_of(&self, path: &[&str]) -> (usize, usize) {
        match locate::locate(&self.text, path) {
            Some((rel, len)) => (self.offset + rel, len.max(1)),
            None => {
                let rel = self.text.find(|c: char| !c.is_whitespace()).unwrap_or(0);
                (self.offset + rel, self.token_len(rel))
            }
        }
    }
}

/// Hints for serde's own messages (unknown field, missing field, wrong type).
fn default_help(message: &str) -> Option<String> {
    if message.contains("kubelet") && message.contains("unknown field") {
        return Some(
            "nodewright models the kubelet settings that change what a node can hold: clusterDNS, maxPods, podsPerCore, kubeReserved, systemReserved, evictionHard, evictionSoft, evictionSoftGracePeriod, evictionMaxPodGracePeriod, imageGCHighThresholdPercent, imageGCLowThresholdPercent, cpuCFSQuota; set other KubeletConfiguration fields in userData".into(),
        );
    }
    if message.contains("unknown field") {
        return Some("check the spelling against the Karpenter CRD; fields nodewright does not know are rejected rather than dropped".into());
    }
    if message.contains("missing field") {
        return Some("Karpenter requires this field; add it".into());
    }
    if message.contains("invalid type") {
        return Some("check the value's type against the Karpenter CRD".into());
    }
    None
}

/// Splits a YAML stream into documents at `---` / `...` lines, keeping byte offsets.
pub(crate) fn split_documents(source: &Source) -> Vec<Doc> {
    let text = &*source.text;
    let mut docs = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    let mut first_marker = true;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let is_start =
            content == "---" || content.starts_with("--- ") || content.starts_with("---\t");
        let is_end = content == "...";
        if is_start || is_end {
            // Text before the first marker is a document only if it has content.
            if !(first_marker && is_blank_yaml(&text[start..pos])) {
                docs.push(make_doc(source, start, pos));
            }
            first_marker = false;
            start = if is_end { pos + line.len() } else { pos };
        }
        pos += line.len();
    }
    docs.push(make_doc(source, start, text.len()));
    docs.retain(|d| !is_blank_yaml(&d.text));
    docs
}

fn make_doc(source: &Source, start: usize, end: usize) -> Doc {
    let mut t = source.text[start..end].to_string();
    if t.starts_with("---") {
        t.replace_range(0..3, "   ");
    }
    Doc {
        source: source.clone(),
        offset: start,
        text: t,
    }
}

fn is_blank_yaml(s: &str) -> bool {
    s.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    })
}

/// A parsed Karpenter object with the document it came from.
#[derive(Debug)]
pub(crate) enum Parsed {
    NodePool(Object<NodePoolSpec>),
    Ec2NodeClass(Object<Ec2NodeClassSpec>),
    NodeOverlay(Object<NodeOverlaySpec>),
    Provisioner(Object<ProvisionerSpec>),
    AwsNodeTemplate(Object<AwsNodeTemplateSpec>),
}

/// The kinds the importer accepts, as `(apiVersion, kind)`.
pub const SUPPORTED_KINDS: &[(&str, &str)] = &[
    ("karpenter.sh/v1", "NodePool"),
    ("karpenter.k8s.aws/v1", "EC2NodeClass"),
    ("karpenter.sh/v1alpha1", "NodeOverlay"),
    ("karpenter.sh/v1alpha5", "Provisioner"),
    ("karpenter.k8s.aws/v1alpha1", "AWSNodeTemplate"),
];

fn supported_list() -> String {
    SUPPORTED_KINDS
        .iter()
        .map(|(a, k)| format!("{a} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses one document into its typed model.
pub(crate) fn parse_doc(doc: &Doc) -> Result<Parsed, ImportError> {
    let header: Header = serde_yaml_ng::from_str(&doc.text).map_err(|e| doc.yaml_error(&e))?;
    let (Some(api), Some(kind)) = (header.api_version.as_deref(), header.kind.as_deref()) else {
        return Err(doc.error_at(
            &[],
            "document has no `apiVersion` and `kind`",
            format!("nodewright imports Karpenter objects: {}", supported_list()),
        ));
    };
    fn typed<T: for<'de> Deserialize<'de>>(doc: &Doc) -> Result<T, ImportError> {
        serde_yaml_ng::from_str(&doc.text).map_err(|e| doc.yaml_error(&e))
    }
    Ok(match (api, kind) {
        ("karpenter.sh/v1", "NodePool") => Parsed::NodePool(typed(doc)?),
        ("karpenter.k8s.aws/v1", "EC2NodeClass") => Parsed::Ec2NodeClass(typed(doc)?),
        ("karpenter.sh/v1alpha1", "NodeOverlay") => Parsed::NodeOverlay(typed(doc)?),
        ("karpenter.sh/v1alpha5", "Provisioner") => Parsed::Provisioner(typed(doc)?),
        ("karpenter.k8s.aws/v1alpha1", "AWSNodeTemplate") => Parsed::AwsNodeTemplate(typed(doc)?),
        (api, kind) => {
            let known_kind = SUPPORTED_KINDS.iter().find(|(_, k)| *k == kind);
            let (path, message, help) = match known_kind {
                Some((want, _)) => (
                    "apiVersion",
                    format!("unsupported apiVersion `{api}` for {kind}"),
                    if api.ends_with("v1beta1") {
                        format!(
                            "nodewright imports {kind} as {want}; convert v1beta1 objects with Karpenter's v1 migration (the API server does it on read: `kubectl get {} -o yaml`)",
                            kind.to_lowercase()
                        )
                    } else {
                        format!("nodewright imports {kind} as {want}")
                    },
                ),
                None => (
                    "kind",
                    format!("`{api}` `{kind}` is not a Karpenter object nodewright imports"),
                    format!("supported: {}", supported_list()),
                ),
            };
            return Err(doc.error_at(&[path], message, help));
        }
    })
}

/// Joins several errors into one (the first, with the rest as related diagnostics).
pub(crate) fn join_errors(mut errs: Vec<ImportError>) -> Option<ImportError> {
    if errs.is_empty() {
        return None;
    }
    let mut first = errs.remove(0);
    first.others.extend(errs);
    Some(first)
}

/// Imports the Karpenter YAML `text` (multi-document), naming it `file` in diagnostics.
pub fn import_str(file: &str, text: &str) -> Result<Imported, ImportError> {
    import_sources(vec![Source {
        name: Arc::from(file),
        text: Arc::from(text),
    }])
}

/// Imports several YAML files into one policy (node class references may cross files).
pub fn import_files<P: AsRef<Path>>(paths: &[P]) -> Result<Imported, ImportError> {
    let mut sources = Vec::new();
    for p in paths {
        let p = p.as_ref();
        let name = p.display().to_string();
        match std::fs::read_to_string(p) {
            Ok(text) => sources.push(Source {
                name: Arc::from(name.as_str()),
                text: Arc::from(text),
            }),
            Err(e) => {
                let src = Source {
                    name: Arc::from(name.as_str()),
                    text: Arc::from(""),
                };
                return Err(src.error(
                    0,
                    0,
                    format!("cannot read {name}: {e}"),
                    Some("check the path and its permissions".into()),
                ));
            }
        }
    }
    import_sources(sources)
}

fn import_sources(sources: Vec<Source>) -> Result<Imported, ImportError> {
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    for s in &sources {
        for doc in split_documents(s) {
            match parse_doc(&doc) {
                Ok(p) => parsed.push((doc, p)),
                Err(e) => errors.push(e),
            }
        }
    }
    if let Some(e) = join_errors(errors) {
        return Err(e);
    }
    let path = match sources.as_slice() {
        [one] => PathBuf::from(&*one.name).with_extension("policy"),
        _ => PathBuf::from("imported.policy"),
    };
    convert::convert(path, parsed)
}

/// Whether `path` names Karpenter YAML (by extension) rather than policy text.
pub fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Why [`load_policy_set`] failed: the YAML did not import, or the policy did not compile.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LoadError {
    /// A Karpenter YAML file did not import.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Import(#[from] ImportError),
    /// Policy files (or the imported AST) did not parse or compile.
    #[error(transparent)]
    Policy(#[from] crate::policy::Diagnostics),
}

/// Compiles a mix of `.policy` files, policy directories and Karpenter `.yaml`
/// files into one policy set, so `plan --policy` runs against Karpenter YAML as is.
/// The YAML files are imported together (references may cross files).
pub fn load_policy_set(
    paths: &[PathBuf],
) -> Result<(crate::ir::PolicySet, Vec<crate::policy::Diagnostic>), LoadError> {
    let (yaml, policy): (Vec<PathBuf>, Vec<PathBuf>) =
        paths.iter().cloned().partition(|p| is_yaml(p));
    let mut files = crate::policy::parse_files(&policy)?;
    if !yaml.is_empty() {
        files.push(import_files(&yaml)?.file);
    }
    Ok(crate::policy::compile(&files)?)
}

/// The policy text of an import: a comment header naming the sources and
/// the objects' descriptions, then the formatted policy.
pub fn render(imported: &Imported, sources: &[String]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# Imported by `nodewright import` from {}\n",
        sources.join(", ")
    ));
    for (what, d) in &imported.descriptions {
        out.push_str(&format!("# {what}: {}\n", d.replace('\n', " ")));
    }
    out.push('\n');
    out.push_str(&crate::policy::format(&imported.file));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/karpenter/examples/nodepools"
    );

    /// Every Karpenter example imports, its text passes the checker, and YAML → AST → IR
    /// equals YAML → AST → text → parse → IR.
    #[test]
    fn every_example_round_trips_to_the_same_ir() {
        let mut paths: Vec<_> = std::fs::read_dir(EXAMPLES)
            .expect("examples dir")
            .map(|e| e.expect("entry").path())
            .collect();
        paths.sort();
        assert!(paths.len() >= 20);
        for p in paths {
            let name = p.display().to_string();
            let text = std::fs::read_to_string(&p).expect("read");
            let imp = import_str(&name, &text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let (direct, _) = crate::policy::compile(std::slice::from_ref(&imp.file))
                .unwrap_or_else(|d| panic!("{name}: {:?}", d));
            let printed = render(&imp, std::slice::from_ref(&name));
            let reparsed = crate::policy::parse("x.policy", &printed)
                .unwrap_or_else(|d| panic!("{name}: {:?}\n{printed}", d));
            let (via_text, _) = crate::policy::compile(&[reparsed])
                .unwrap_or_else(|d| panic!("{name}: {:?}\n{printed}", d));
            assert_eq!(direct, via_text, "{name}\n{printed}");
            assert!(!direct.pools.is_empty(), "{name}");
        }
    }

    #[test]
    fn unknown_field_names_line_and_column() {
        let y = "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata:\n  name: a\nspec:\n  template:\n    spec:\n      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: d}\n      requirementz: []\n";
        let e = import_str("np.yaml", y).expect_err("unknown field");
        assert_eq!((e.line, e.column), (9, 7), "{e}");
        assert!(e.message.contains("requirementz"), "{e}");
    }

    #[test]
    fn unrepresentable_field_is_an_error_with_hint() {
        let y = "---\napiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata:\n  name: a\nspec:\n  replicas: 3\n  template:\n    spec:\n      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: d}\n";
        let e = import_str("np.yaml", y).expect_err("replicas");
        assert_eq!(e.line, 7, "{e}");
        assert!(
            e.help.as_deref().unwrap_or("").contains("static-capacity"),
            "{e}"
        );
    }

    #[test]
    fn wrong_kind_and_bad_quantity() {
        let e = import_str("d.yaml", "apiVersion: apps/v1\nkind: Deployment\n").expect_err("kind");
        assert_eq!(e.line, 2, "{e}");
        let y = "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata:\n  name: a\nspec:\n  limits:\n    cpu: 12x\n  template:\n    spec:\n      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: d}\n";
        let e = import_str("q.yaml", y).expect_err("quantity");
        assert_eq!(e.line, 7, "{e}");
    }
}
