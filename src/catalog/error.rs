//! Errors of the catalog: loading data files and looking things up.

use std::path::PathBuf;

/// What went wrong building or querying a catalog.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CatalogError {
    /// The embedded data is baked into the binary, so this means a bad build.
    #[error("the embedded catalog could not be decoded: {0}")]
    #[diagnostic(
        code(nodewright::catalog::embedded),
        help("regenerate it with `scripts/gen-catalog.py` (see docs/catalog.md) and rebuild")
    )]
    EmbeddedDecode(String),

    #[error("could not read {path}: {source}")]
    #[diagnostic(code(nodewright::catalog::io))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{path}:{line}:{column}: {message}")]
    #[diagnostic(
        code(nodewright::catalog::json),
        help(
            "this file is written by scripts/gen-catalog.py; regenerate it rather than editing it"
        )
    )]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("could not encode the catalog: {0}")]
    #[diagnostic(code(nodewright::catalog::encode))]
    Encode(String),

    #[error("instance type {name} has no Linux architecture (it supports {archs})")]
    #[diagnostic(
        code(nodewright::catalog::arch),
        help(
            "Kubernetes nodes need x86_64 or arm64; macOS-only types are left out of the catalog"
        )
    )]
    UnsupportedArchitecture { name: String, archs: String },

    #[error("unknown instance type `{name}`")]
    #[diagnostic(code(nodewright::catalog::unknown_type), help("{help}"))]
    UnknownType { name: String, help: String },
}
