//! Errors and notes from loading Kubernetes YAML.
//!
//! Every input problem names the file, line and column (and, where it helps,
//! the field path), so a user can jump straight to it; miette renders the line.

use std::fmt;

use miette::{Diagnostic, SourceSpan};

use super::snippet::Snippet;

/// What kind of input problem an [`InputError`] is, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not valid YAML.
    Yaml,
    /// A `kind` nodewright does not know.
    UnknownKind,
    /// A document that does not match its kind's schema.
    Schema,
    /// A malformed quantity (`cpu: 1.5.3`).
    Quantity,
    /// A malformed label selector, node selector or toleration.
    Selector,
    /// A `--replicas` override that names nothing.
    Replicas,
    /// Not UTF-8 text.
    Encoding,
    /// A bound on the work a plan may ask for (pods per plan, YAML alias
    /// expansion, nesting depth) was hit.
    Limit,
    /// The same object (kind, namespace, name) given twice.
    Duplicate,
    /// A label key or value Kubernetes would reject.
    Label,
    /// A value Kubernetes would reject (`replicas: -5`).
    Value,
}

/// A problem in one input file, at a known place.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{file}:{line}:{col}: {message}")]
#[diagnostic(code(nodewright::workload))]
pub struct InputError {
    pub kind: ErrorKind,
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub col: usize,
    pub message: String,
    #[help]
    pub help: Option<String>,
    /// The lines around the error, clipped to a window of columns.
    #[source_code]
    pub src: Snippet,
    #[label("here")]
    pub span: SourceSpan,
}

/// Why a workload could not be loaded.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum WorkloadError {
    /// The file could not be read at all.
    #[error("cannot read {file}: {source}")]
    #[diagnostic(
        code(nodewright::workload::io),
        help("check the path given to --workload or --nodes")
    )]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// A problem at a place in an input file.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Input(Box<InputError>),
    /// A `--replicas NAME=N` override that matches no object.
    #[error(
        "--replicas {name}: no Deployment, ReplicaSet, StatefulSet, Job or CronJob named `{name}` in the input"
    )]
    #[diagnostic(
        code(nodewright::workload::replicas),
        help("use the object's name or NAMESPACE/NAME, as in `--replicas web=10`")
    )]
    UnknownReplicas { name: String },
}

impl WorkloadError {
    /// The input error, when the problem is at a place in a file.
    pub fn input(&self) -> Option<&InputError> {
        match self {
            WorkloadError::Input(e) => Some(e),
            _ => None,
        }
    }
}

/// A non-fatal remark: something read but ignored, or assumed.
///
/// Nothing in the input is skipped silently: each ignored object or field
/// yields a note that the CLI prints as a warning.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    pub file: String,
    pub line: usize,
    /// 1-based, as an editor counts, so `file:line:column` jumps to the field.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}
