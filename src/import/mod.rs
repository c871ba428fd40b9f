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

use miette::{LabeledSpan, SourceSpan};
use serde::Deserialize;

use crate::policy::ast::{self, Span};
use crate::policy::diag::{LineIndex, Snippet};
use crate::policy::{Code, Diagnostic};
use yaml::{
    AwsNodeTemplateSpec, Ec2NodeClassSpec, HINT_SEP, Header, NodeOverlaySpec, NodePoolSpec, Object,
    ProvisionerSpec,
};

/// The result of an import: the policy AST plus what the user should know.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The policy as one file, for `policy::format` (its nodes carry no spans of its own).
    pub file: ast::File,
    /// The same items, one file per YAML source, named after it and holding
    /// its text, each node spanning the YAML field it came from: what the
    /// compiler reads, so its findings point at YAML lines.
    pub files: Vec<ast::File>,
    /// Things imported approximately or not at all (annotations, object labels).
    pub warnings: Vec<ImportWarning>,
    /// `kubernetes.io/description` annotations, as `(kind name, text)`, for a comment header.
    pub descriptions: Vec<(String, String)>,
}

/// A fatal import problem at a YAML location.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ImportError {
    /// Which kind of problem: [`Code::Import`] for the importer's own checks,
    /// a `policy::` code when the policy checker rejects what the YAML says.
    pub code: Code,
    /// What is wrong.
    pub message: String,
    /// The YAML file (as given).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The lines around the problem (long lines clipped), for the snippet.
    pub src: Snippet,
    /// Where, in `src`.
    pub span: SourceSpan,
    /// Other places in `src`, each with what it has to do with the problem.
    pub labels: Vec<(SourceSpan, String)>,
    /// How to fix it.
    pub help: Option<String>,
    /// Further errors (other documents or files).
    pub others: Vec<ImportError>,
}

/// A non-fatal import note at a YAML location.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ImportWarning {
    /// [`Code::Import`], or the policy checker's code for its warnings.
    pub code: Code,
    /// What was not imported, or imported approximately.
    pub message: String,
    /// The YAML file (as given).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The lines around the note (long lines clipped), for the snippet.
    pub src: Snippet,
    /// Where, in `src`.
    pub span: SourceSpan,
    /// What to do about it.
    pub help: Option<String>,
}

/// The parts of a located import finding that miette renders.
fn labels_of<'a>(
    span: SourceSpan,
    labels: &'a [(SourceSpan, String)],
) -> Box<dyn Iterator<Item = LabeledSpan> + 'a> {
    let primary = LabeledSpan::new_primary_with_span(Some("here".to_string()), span);
    Box::new(
        std::iter::once(primary).chain(
            labels
                .iter()
                .map(|(s, m)| LabeledSpan::new_with_span(Some(m.clone()), *s)),
        ),
    )
}

impl miette::Diagnostic for ImportError {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(self.code.as_str()))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        (!self.src.is_empty()).then_some(&self.src as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        (!self.src.is_empty()).then(|| labels_of(self.span, &self.labels))
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        Some(Box::new(
            self.others
                .iter()
                .take(crate::policy::diag::MAX_RENDERED)
                .map(|e| e as &dyn miette::Diagnostic),
        ))
    }
}

impl miette::Diagnostic for ImportWarning {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(self.code.as_str()))
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(miette::Severity::Warning)
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        (!self.src.is_empty()).then_some(&self.src as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        (!self.src.is_empty()).then(|| labels_of(self.span, &[]))
    }
}

impl ImportError {
    /// Every error: this one, then the others it carries.
    pub fn count(&self) -> usize {
        1 + self.others.len()
    }
}

/// One YAML source file.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub name: Arc<str>,
    pub text: Arc<str>,
    /// Line starts of `text`, built once: every finding in the file is located with it.
    pub lines: Arc<LineIndex>,
}

impl Source {
    /// A source named `name` with the text `text`.
    pub(crate) fn new(name: &str, text: &str) -> Source {
        Source {
            name: Arc::from(name),
            text: Arc::from(text),
            lines: Arc::new(LineIndex::new(text)),
        }
    }

    /// 1-based line and column of a byte offset.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        self.lines.line_col(&self.text, offset)
    }

    /// The clipped snippet showing `spans` (primary first), and the spans re-based into it.
    fn snippet(&self, spans: &[SourceSpan]) -> (Snippet, Vec<SourceSpan>) {
        Snippet::build(&self.name, &self.text, &self.lines, spans)
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
        let (src, spans) = self.snippet(&[SourceSpan::new(offset.into(), len)]);
        ImportError {
            code: Code::Import,
            message,
            file: self.name.to_string(),
            line,
            column,
            src,
            span: spans.first().copied().unwrap_or_else(|| (0, 0).into()),
            labels: Vec::new(),
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
        let (src, spans) = self.snippet(&[SourceSpan::new(offset.into(), len)]);
        ImportWarning {
            code: Code::Import,
            message,
            file: self.name.to_string(),
            line,
            column,
            src,
            span: spans.first().copied().unwrap_or_else(|| (0, 0).into()),
            help,
        }
    }

    /// A policy checker finding on what this source's YAML produced, at its YAML lines.
    fn checked(&self, d: &Diagnostic) -> ImportError {
        let len = self.text.len();
        let clamp = |s: Span| {
            let a = s.offset.min(len);
            SourceSpan::new(a.into(), s.end().min(len) - a)
        };
        let all: Vec<SourceSpan> = std::iter::once(d.span)
            .chain(d.labels.iter().map(|l| l.span))
            .map(clamp)
            .collect();
        let (line, column) = self.line_col(d.span.offset);
        let (src, spans) = self.snippet(&all);
        ImportError {
            code: d.code,
            message: d.message.clone(),
            file: self.name.to_string(),
            line,
            column,
            src,
            span: spans.first().copied().unwrap_or_else(|| (0, 0).into()),
            labels: spans
                .iter()
                .skip(1)
                .zip(&d.labels)
                .map(|(s, l)| (*s, l.message.clone()))
                .collect(),
            help: d.help.clone(),
            others: Vec::new(),
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

    /// Where to report a serde_yaml_ng error that carries no position: the
    /// first alias (`*name`) for the repetition limit, which only aliases
    /// reach; otherwise the document's first token.
    fn unlocated(&self, message: &str) -> (usize, usize) {
        let first_token = || {
            let rel = self.text.find(|c: char| !c.is_whitespace()).unwrap_or(0);
            (self.offset + rel, self.token_len(rel))
        };
        if !message.contains("repetition limit") {
            return first_token();
        }
        let mut off = 0;
        for line in self.text.split_inclusive('\n') {
            let code = line.split(" #").next().unwrap_or(line);
            if !code.trim_start().starts_with('#')
                && let Some(i) = code.match_indices('*').map(|(i, _)| i).find(|&i| {
                    code[i + 1..].starts_with(|c: char| c.is_alphanumeric() || c == '_' || c == '-')
                })
            {
                return (self.offset + off + i, self.token_len(off + i));
            }
            off += line.len();
        }
        first_token()
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
        let (offset, len) = match (e.location(), reader_position(&e.to_string())) {
            // A reader error's mark is the document start; its message has the byte.
            (_, Some(pos)) if pos <= self.text.len() => (self.offset + pos, 1),
            (Some(loc), _) => {
                let off = self.offset_of(loc.line(), loc.column());
                (off, self.token_len(off - self.offset))
            }
            (None, _) => self.unlocated(&e.to_string()),
        };
        let text = e.to_string();
        if text.contains("repetition limit exceeded") {
            return self.source.error(
                offset,
                len,
                "YAML aliases expand past the repetition limit (an alias bomb?)".into(),
                Some("each `*alias` repeats its anchored node, and aliases inside anchored nodes multiply; write the values out instead of nesting aliases".into()),
            );
        }
        // serde_yaml_ng appends " at line L column C" (or " at position N"); we print our own location.
        let text = match text
            .rfind(" at line ")
            .or_else(|| text.rfind(" at position "))
        {
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

    /// The span (in the source) of the node at `path`; see [`Doc::span_of`].
    pub(crate) fn span(&self, path: &[&str]) -> Span {
        let (o, l) = self.span_of(path);
        Span::new(o, l)
    }

    /// Source byte ranges of the items of the block sequence at `path` (see [`locate::items`]).
    pub(crate) fn items(&self, path: &[&str]) -> Vec<(usize, usize)> {
        locate::items(&self.text, path)
            .into_iter()
            .map(|(a, b)| (self.offset + a, self.offset + b))
            .collect()
    }

    /// The span of each direct key of the mapping at `path` (see [`locate::keys`]).
    pub(crate) fn keys(&self, path: &[&str]) -> std::collections::HashMap<String, Span> {
        locate::keys(&self.text, path)
            .into_iter()
            .map(|(k, (o, l))| (k, Span::new(self.offset + o, l)))
            .collect()
    }

    /// The span of `path` inside the sequence item at source range `item`
    /// (from [`Doc::items`]), or of the item's `-` when not found.
    pub(crate) fn span_within(&self, item: (usize, usize), path: &[&str]) -> Span {
        let rel = (item.0 - self.offset, item.1 - self.offset);
        match self
            .text
            .get(rel.0..rel.1)
            .and_then(|t| locate::locate(t, path))
        {
            Some((o, l)) => Span::new(item.0 + o, l.max(1)),
            None => {
                let lead = self
                    .text
                    .get(rel.0..rel.1)
                    .map_or(0, |t| t.len() - t.trim_start().len());
                Span::new(item.0 + lead, 1)
            }
        }
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

/// The byte position libyaml's reader errors (a control character, bad
/// encoding) name in their message ("... at position 106"): their mark is
/// the document start, the position is the offending byte.
fn reader_position(message: &str) -> Option<usize> {
    let (_, rest) = message.rsplit_once(" at position ")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
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
    import_sources(vec![Source::new(
        file,
        crate::policy::text::strip_bom(text),
    )])
}

/// Imports several YAML files into one policy (node class references may cross files).
pub fn import_files<P: AsRef<Path>>(paths: &[P]) -> Result<Imported, ImportError> {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        let p = p.as_ref();
        let name = p.display().to_string();
        match std::fs::read(p).map(crate::policy::text::decode) {
            Ok(Ok(text)) => sources.push(Source::new(&name, &text)),
            Ok(Err(bad)) => {
                let message = bad.message();
                errors.push(Source::new(&name, &bad.lossy).error(
                    bad.offset,
                    '\u{FFFD}'.len_utf8(),
                    message,
                    Some(crate::policy::text::NotUtf8::HELP.into()),
                ));
            }
            Err(e) => errors.push(Source::new(&name, "").error(
                0,
                0,
                format!("cannot read {name}: {e}"),
                Some("check the path and its permissions".into()),
            )),
        }
    }
    if let Some(e) = join_errors(errors) {
        return Err(e);
    }
    import_sources(sources)
}

fn import_sources(sources: Vec<Source>) -> Result<Imported, ImportError> {
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    for s in &sources {
        let docs = split_documents(s);
        if docs.is_empty() {
            errors.push(s.error(
                0,
                0,
                format!(
                    "{} holds no Karpenter object: it is {}",
                    s.name,
                    if s.text.trim().is_empty() { "empty" } else { "only comments" }
                ),
                Some(format!(
                    "give the YAML of the objects to import ({}); `kubectl get nodepools,ec2nodeclasses -o yaml` prints a cluster's",
                    supported_list()
                )),
            ));
            continue;
        }
        for doc in docs {
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
    let mut imported = convert::convert(path, parsed)?;
    check(&sources, &mut imported)?;
    Ok(imported)
}

/// Runs the policy checker on what the YAML produced, as `check` would on
/// the printed policy, and reports what it finds at the YAML lines (each
/// imported node carries the span of the YAML field it came from). A node
/// class defined elsewhere is not an error here: the importer has already
/// warned, and another file of the policy set may define it.
fn check(sources: &[Source], imported: &mut Imported) -> Result<(), ImportError> {
    let found = match crate::policy::compile(&imported.files) {
        Ok((_, warnings)) => warnings,
        Err(d) => d.0,
    };
    let source_of = |d: &Diagnostic| {
        let name = d.file.display().to_string();
        sources.iter().find(|s| *s.name == *name)
    };
    let mut errors = Vec::new();
    for d in &found {
        if d.code == Code::UnknownNodeClass {
            continue;
        }
        let Some(src) = source_of(d) else { continue };
        let e = src.checked(d);
        if d.is_error() {
            errors.push(e);
        } else {
            imported.warnings.push(ImportWarning {
                code: e.code,
                message: e.message,
                file: e.file,
                line: e.line,
                column: e.column,
                src: e.src,
                span: e.span,
                help: e.help,
            });
        }
    }
    match join_errors(errors) {
        Some(e) => Err(e),
        None => Ok(()),
    }
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
    /// A policy folder holds nothing to read: without this, the set would be
    /// empty and the user would only hear that no pools are defined.
    #[error("{dir} holds no .policy files and no Karpenter YAML (.yaml, .yml){found}")]
    #[diagnostic(
        code(nodewright::import::empty_folder),
        help("point --policy at the folder of your .policy files, or at Karpenter NodePool YAML")
    )]
    EmptyFolder {
        /// The folder, as given.
        dir: String,
        /// "; it has: a.txt, b.json" when it holds other files.
        found: String,
    },
}

/// What a policy folder holds: its `*.policy` files and its `*.yaml`/`*.yml`
/// files (each sorted), and the names of anything else, to say what was found.
fn folder_contents(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>, Vec<String>) {
    let (mut policy, mut yaml, mut other) = (Vec::new(), Vec::new(), Vec::new());
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let f = e.path();
        if !f.is_file() {
            continue;
        }
        if f.extension().is_some_and(|x| x == "policy") {
            policy.push(f);
        } else if is_yaml(&f) {
            yaml.push(f);
        } else {
            other.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    policy.sort();
    yaml.sort();
    other.sort();
    (policy, yaml, other)
}

/// Refuses a folder among `paths` that holds neither `.policy` files nor
/// YAML, naming what it does hold: `plan` on it would only say that no pools
/// are defined.
pub fn check_folders(paths: &[PathBuf]) -> Result<(), LoadError> {
    for p in paths.iter().filter(|p| p.is_dir()) {
        let (pol, yml, other) = folder_contents(p);
        if !pol.is_empty() || !yml.is_empty() {
            continue;
        }
        const SHOWN: usize = 5;
        let found = if other.is_empty() {
            String::new()
        } else {
            let more = other.len().saturating_sub(SHOWN);
            let mut list = other
                .iter()
                .take(SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if more > 0 {
                list.push_str(&format!(" and {more} more"));
            }
            format!("; it has: {list}")
        };
        return Err(LoadError::EmptyFolder {
            dir: p.display().to_string(),
            found,
        });
    }
    Ok(())
}

/// Folders among `paths` that hold no `.policy` files but do hold Karpenter
/// YAML, with those files: `load_policy_set` imports them, and the CLI says so.
pub fn yaml_only_folders(paths: &[PathBuf]) -> Vec<(PathBuf, Vec<PathBuf>)> {
    paths
        .iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| {
            let (policy, yaml, _) = folder_contents(p);
            (policy.is_empty() && !yaml.is_empty()).then(|| (p.clone(), yaml))
        })
        .collect()
}

/// Compiles a mix of `.policy` files, policy directories and Karpenter `.yaml`
/// files into one policy set, so `plan --policy` runs against Karpenter YAML as is.
/// The YAML files are imported together (references may cross files).
/// A folder stands for its `.policy` files; a folder with none stands for its
/// YAML files (a folder of exported NodePools).
pub fn load_policy_set(
    paths: &[PathBuf],
) -> Result<(crate::ir::PolicySet, Vec<crate::policy::Diagnostic>), LoadError> {
    let (mut yaml, mut policy) = (Vec::new(), Vec::new());
    for p in paths {
        if p.is_dir() {
            let (pol, yml, _) = folder_contents(p);
            if pol.is_empty() && !yml.is_empty() {
                yaml.extend(yml);
            } else {
                // Its .policy files; an empty folder adds nothing (the
                // controller's reload decides whether an empty set is allowed,
                // `plan` refuses it first with `check_folders`).
                policy.push(p.clone());
            }
        } else if is_yaml(p) {
            yaml.push(p.clone());
        } else {
            policy.push(p.clone());
        }
    }
    let mut files = crate::policy::parse_files(&policy)?;
    if !yaml.is_empty() {
        files.extend(import_files(&yaml)?.files);
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

    #[test]
    fn a_folder_of_yaml_is_imported_and_an_empty_one_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = Path::new(EXAMPLES).join("general-purpose.yaml");
        std::fs::copy(&src, dir.path().join("general-purpose.yaml")).expect("copy");
        let paths = vec![dir.path().to_path_buf()];
        assert_eq!(yaml_only_folders(&paths).len(), 1);
        let (set, _) = load_policy_set(&paths).expect("imports the folder's YAML");
        assert!(!set.pools.is_empty());

        let empty = tempfile::tempdir().expect("tempdir");
        std::fs::write(empty.path().join("notes.txt"), "x").expect("write");
        let err = check_folders(&[empty.path().to_path_buf()]).expect_err("nothing to read");
        let msg = err.to_string();
        assert!(
            msg.contains("holds no .policy files and no Karpenter YAML"),
            "{msg}"
        );
        assert!(msg.ends_with("; it has: notes.txt"), "{msg}");
    }

    /// Policy text quoted in an import hint is valid policy: the user may paste it.
    #[test]
    fn the_capacity_reservation_hint_is_valid_policy() {
        let y = "apiVersion: karpenter.k8s.aws/v1\nkind: EC2NodeClass\nmetadata:\n  name: d\nspec:\n  role: r\n  amiSelectorTerms:\n    - alias: al2023@latest\n  subnetSelectorTerms:\n    - tags: {a: b}\n  securityGroupSelectorTerms:\n    - tags: {a: b}\n  capacityReservationSelectorTerms:\n    - id: cr-1\n";
        let e = import_str("nc.yaml", y).expect_err("capacity reservations");
        let help = e.help.clone().unwrap_or_default();
        let quoted: Vec<&str> = help.split('`').skip(1).step_by(2).collect();
        assert_eq!(quoted.len(), 1, "{help}");
        let f = crate::policy::parse("hint.policy", quoted[0])
            .unwrap_or_else(|d| panic!("{}", d.render(100)));
        crate::policy::compile(&[f]).unwrap_or_else(|d| panic!("{}", d.render(100)));
    }

    const EXAMPLES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/karpenter/examples/nodepools"
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
            if p.file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with("windows"))
            {
                let e = import_str(&name, &text).expect_err("Windows is refused");
                assert_eq!(e.code, Code::WindowsUnsupported, "{name}: {e}");
                continue;
            }
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

    const CONTRADICTION: &str = "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata:\n  name: a\nspec:\n  template:\n    spec:\n      requirements:\n        - key: kubernetes.io/arch\n          operator: In\n          values: [amd64]\n        - key: karpenter.sh/capacity-type\n          operator: Exists\n        - key: kubernetes.io/arch\n          operator: In\n          values: [arm64]\n      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: d}\n";

    /// The checker runs on what the YAML produced and points at the YAML lines.
    #[test]
    fn contradicting_requirements_are_reported_at_their_yaml_lines() {
        let e = import_str("np.yaml", CONTRADICTION).expect_err("contradiction");
        assert_eq!(e.code, Code::Contradiction);
        assert_eq!(
            (e.file.as_str(), e.line, e.column),
            ("np.yaml", 14, 16),
            "{e}"
        );
        assert!(e.message.contains("contradict"), "{e}");
        assert_eq!(e.labels.len(), 1);
        assert_eq!(e.labels[0].1, "contradicts this one");
        assert!(e.src.text().contains("- key: kubernetes.io/arch"));
        let rendered = format!("{:?}", miette::Report::new(e));
        assert!(
            rendered.contains("9 │         - key: kubernetes.io/arch"),
            "{rendered}"
        );
        assert!(
            rendered.contains("14 │         - key: kubernetes.io/arch"),
            "{rendered}"
        );
        assert!(rendered.contains("remove or widen"), "{rendered}");
        // `plan --policy np.yaml` reads the same files: the YAML location, not a `.policy`.
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("np.yaml");
        std::fs::write(&p, CONTRADICTION).expect("write");
        let err = load_policy_set(&[p]).expect_err("contradiction");
        let LoadError::Import(e) = err else {
            panic!("not an import error: {err:?}")
        };
        assert!(e.file.ends_with("np.yaml") && e.line == 14, "{e}");
    }

    #[test]
    fn unknown_label_in_yaml_is_located() {
        let y = CONTRADICTION
            .replace("values: [arm64]", "values: [amd64]")
            .replace("karpenter.sh/capacity-type", "karpenter.sh/capacity-typo");
        let e = import_str("np.yaml", &y).expect_err("typo");
        assert_eq!(e.code, Code::UnknownLabel);
        assert_eq!((e.line, e.column), (12, 16), "{e}");
        assert_eq!(
            e.help.as_deref(),
            Some("did you mean `karpenter.sh/capacity-type`?")
        );
    }

    #[test]
    fn empty_input_is_an_error_with_a_hint() {
        for text in ["", "\n# only a comment\n---\n"] {
            let e = import_str("e.yaml", text).expect_err("empty");
            assert_eq!((e.line, e.column), (1, 1));
            assert!(e.message.contains("holds no Karpenter object"), "{e}");
            assert!(
                e.help.as_deref().is_some_and(|h| h.contains("kubectl get")),
                "{e}"
            );
            let rendered = format!("{:?}", miette::Report::new(e));
            assert_eq!(text.is_empty(), !rendered.contains("╭"), "{rendered}");
        }
    }

    #[test]
    fn bom_is_accepted_and_bad_utf8_is_located() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("bom.yaml");
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice(CONTRADICTION.as_bytes());
        std::fs::write(&p, &bytes).expect("write");
        let e = import_files(&[&p]).expect_err("contradiction");
        assert_eq!((e.line, e.column), (14, 16), "BOM shifts nothing: {e}");
        let bad = dir.path().join("bad.yaml");
        std::fs::write(
            &bad,
            b"apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata:\n  name: a\xff\n",
        )
        .expect("write");
        let e = import_files(&[&bad]).expect_err("not utf-8");
        assert_eq!((e.line, e.column), (4, 10), "{e}");
        assert!(e.message.contains("0xFF"), "{e}");
        assert!(e.help.as_deref().is_some_and(|h| h.contains("UTF-8")));
    }

    /// serde_yaml_ng's repetition limit carries no position: it is reported at the first alias.
    #[test]
    fn alias_bomb_is_located_at_its_first_alias() {
        let mut y = String::from(
            "apiVersion: karpenter.sh/v1\nkind: NodePool\nx:\n  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
        );
        for (k, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"]
            .iter()
            .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            y.push_str(&format!(
                "  {k}: &{k} [{}]\n",
                vec![format!("*{prev}"); 9].join(", ")
            ));
        }
        let err = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&y).expect_err("bomb");
        assert!(err.location().is_none(), "{err}");
        let src = Source::new("bomb.yaml", &y);
        let doc = split_documents(&src).into_iter().next().expect("doc");
        let e = doc.yaml_error(&err);
        assert_eq!((e.line, e.column), (5, 10), "{e}");
        assert!(e.message.contains("alias"), "{e}");
        assert!(e.help.is_some());
    }

    /// libyaml's reader errors carry a byte position, not a line: still located.
    #[test]
    fn control_characters_are_located() {
        let e = import_str(
            "n.yaml",
            "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata:\n  name: a\0b\n",
        )
        .expect_err("nul");
        assert_eq!((e.line, e.column), (4, 10), "{e}");
        assert_eq!(e.message, "control characters are not allowed");
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
