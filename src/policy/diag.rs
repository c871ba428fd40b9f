//! Diagnostics for policy files: one type for syntax errors, check errors and
//! warnings, rendered by miette (file:line:col, the source line underlined,
//! secondary labels, a hint) or as JSON for tools.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{LabeledSpan, NamedSource, SourceCode};

use super::ast::Span;

/// How bad a finding is. Errors fail `check` and `compile`; warnings are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    /// Lower-case name, as in the JSON output.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// A secondary span with its own message (e.g. the other half of a contradiction).
#[derive(Debug, Clone)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

/// One finding in one policy file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Diagnostic {
    pub file: PathBuf,
    pub span: Span,
    pub severity: Severity,
    /// A stable identifier, e.g. `policy::unknown-label`.
    pub code: &'static str,
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
    /// What to say under the primary span.
    pub primary: Option<String>,
    pub labels: Vec<Label>,
    src: NamedSource<Arc<str>>,
}

impl Diagnostic {
    /// An error at `span` in `file` (whose text is `source`).
    pub fn error(
        file: &Path,
        source: &Arc<str>,
        span: Span,
        code: &'static str,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            file: file.to_path_buf(),
            span,
            severity: Severity::Error,
            code,
            message: message.into(),
            help: None,
            primary: None,
            labels: Vec::new(),
            src: NamedSource::new(file.display().to_string(), source.clone()),
        }
    }

    /// A warning at `span`.
    pub fn warning(
        file: &Path,
        source: &Arc<str>,
        span: Span,
        code: &'static str,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, source, span, code, message)
        }
    }

    /// Adds a hint.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Sets the text under the primary span.
    pub fn with_primary(mut self, text: impl Into<String>) -> Diagnostic {
        self.primary = Some(text.into());
        self
    }

    /// Adds a secondary label (in the same file).
    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            message: message.into(),
        });
        self
    }

    /// Whether it is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// 1-based line and column (in characters) of the primary span.
    pub fn line_col(&self) -> (usize, usize) {
        line_col(self.src.inner(), self.span.offset)
    }

    /// Renders like miette's graphical handler, without colour, at `width` columns.
    pub fn render(&self, width: usize) -> String {
        let handler =
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
                .with_width(width)
                .with_links(false);
        let mut out = String::new();
        let (line, col) = self.line_col();
        out.push_str(&format!(
            "{}:{line}:{col}: {}\n",
            self.file.display(),
            self.severity.as_str()
        ));
        if handler.render_report(&mut out, self).is_err() {
            out.push_str(&self.message);
        }
        out
    }

    /// The JSON form printed by `nodewright check --format json`.
    pub fn to_json(&self) -> serde_json::Value {
        let (line, column) = self.line_col();
        serde_json::json!({
            "file": self.file.display().to_string(),
            "line": line,
            "column": column,
            "severity": self.severity.as_str(),
            "code": self.code,
            "message": self.message,
            "help": self.help,
        })
    }
}

/// 1-based line and character column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn clamp(span: Span, len: usize) -> miette::SourceSpan {
    let start = span.offset.min(len);
    let end = span.end().min(len);
    (start, end - start).into()
}

impl miette::Diagnostic for Diagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        if self.src.inner().is_empty() {
            None
        } else {
            Some(&self.src)
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.src.inner().is_empty() {
            return None;
        }
        let len = self.src.inner().len();
        let primary =
            LabeledSpan::new_primary_with_span(self.primary.clone(), clamp(self.span, len));
        let rest = self
            .labels
            .iter()
            .map(move |l| LabeledSpan::new_with_span(Some(l.message.clone()), clamp(l.span, len)));
        Some(Box::new(std::iter::once(primary).chain(rest)))
    }
}

/// Every finding of a failed parse or compile (errors first, then warnings, in source order).
#[derive(Debug, Clone, Default, thiserror::Error)]
#[error("{} error(s) in policy files", self.error_count())]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// The number of errors (not warnings).
    pub fn error_count(&self) -> usize {
        self.0.iter().filter(|d| d.is_error()).count()
    }

    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.is_error())
    }

    /// Every finding rendered (see [`Diagnostic::render`]), separated by blank lines.
    pub fn render(&self, width: usize) -> String {
        self.0
            .iter()
            .map(|d| d.render(width))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The JSON array printed by `check --format json`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(self.0.iter().map(|d| d.to_json()).collect())
    }
}

impl miette::Diagnostic for Diagnostics {
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        Some(Box::new(
            self.0.iter().map(|d| d as &dyn miette::Diagnostic),
        ))
    }
}

/// The closest candidate to `word` (by Jaro-Winkler similarity), if close enough to suggest.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(s, _)| *s >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
