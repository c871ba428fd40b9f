//! Diagnostics for policy files: one type for syntax errors, check errors and
//! warnings, rendered by miette (file:line:col, the source line underlined,
//! secondary labels, a hint) or as JSON for tools.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use miette::{LabeledSpan, MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

use super::ast::Span;
pub use super::code::Code;

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
    /// A stable identifier, e.g. `policy::unknown-label` (see [`Code`]).
    pub code: Code,
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
    /// What to say under the primary span.
    pub primary: Option<String>,
    pub labels: Vec<Label>,
    /// The whole text of `file` (shared by every finding in it), for line
    /// numbers; only a clipped window of it is ever shown.
    text: Arc<str>,
    /// The window miette renders, built on first use (see [`Snippet`]).
    view: OnceLock<View>,
}

/// What miette is shown of a diagnostic: the clipped snippet and the spans re-based into it.
#[derive(Debug, Clone)]
struct View {
    snippet: Snippet,
    /// Primary span first, then one per label.
    spans: Vec<SourceSpan>,
}

impl Diagnostic {
    /// An error at `span` in `file` (whose text is `source`).
    pub fn error(
        file: &Path,
        source: &Arc<str>,
        span: Span,
        code: Code,
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
            text: source.clone(),
            view: OnceLock::new(),
        }
    }

    /// A warning at `span`.
    pub fn warning(
        file: &Path,
        source: &Arc<str>,
        span: Span,
        code: Code,
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
        self.view = OnceLock::new();
        self
    }

    /// Whether it is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The text of the file the finding is in (empty when it has none, e.g. an unreadable file).
    pub fn source(&self) -> &Arc<str> {
        &self.text
    }

    /// 1-based line and column (in characters) of the primary span. Scans the
    /// file once; [`Diagnostics`] shares one [`LineIndex`] per file instead.
    pub fn line_col(&self) -> (usize, usize) {
        line_col(&self.text, self.span.offset)
    }

    /// Renders like miette's graphical handler, without colour, at `width` columns.
    pub fn render(&self, width: usize) -> String {
        self.render_with(width, &LineIndex::new(&self.text))
    }

    /// [`Diagnostic::render`] with the line index of this diagnostic's file.
    fn render_with(&self, width: usize, index: &LineIndex) -> String {
        self.view_with(index);
        let handler =
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
                .with_width(width)
                .with_links(false);
        let mut out = String::new();
        let (line, col) = index.line_col(&self.text, self.span.offset);
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

    /// The snippet and re-based spans, built with `index` unless built already.
    fn view_with(&self, index: &LineIndex) -> &View {
        self.view.get_or_init(|| {
            let len = self.text.len();
            let spans: Vec<SourceSpan> = std::iter::once(self.span)
                .chain(self.labels.iter().map(|l| l.span))
                .map(|s| clamp(s, len))
                .collect();
            let name = self.file.display().to_string();
            let (snippet, spans) = Snippet::build(&name, &self.text, index, &spans);
            View { snippet, spans }
        })
    }

    fn view(&self) -> &View {
        match self.view.get() {
            Some(v) => v,
            None => self.view_with(&LineIndex::new(&self.text)),
        }
    }

    /// The JSON form printed by `nodewright check --format json`.
    pub fn to_json(&self) -> serde_json::Value {
        self.to_json_with(&LineIndex::new(&self.text))
    }

    fn to_json_with(&self, index: &LineIndex) -> serde_json::Value {
        let (line, column) = index.line_col(&self.text, self.span.offset);
        serde_json::json!({
            "file": self.file.display().to_string(),
            "line": line,
            "column": column,
            "severity": self.severity.as_str(),
            "code": self.code.as_str(),
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

/// Where each line of a text starts, built once per file so that locating
/// any number of findings costs a binary search each, not a rescan.
#[derive(Debug, Clone, Default)]
pub struct LineIndex {
    /// Byte offset of each line's first byte.
    starts: Vec<usize>,
    /// Whether each line is ASCII (then its character column is its byte column).
    ascii: Vec<bool>,
}

impl LineIndex {
    /// Indexes `text` (one pass).
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        let mut ascii = Vec::new();
        let mut line_ascii = true;
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                starts.push(i + 1);
                ascii.push(line_ascii);
                line_ascii = true;
            } else if !b.is_ascii() {
                line_ascii = false;
            }
        }
        ascii.push(line_ascii);
        LineIndex { starts, ascii }
    }

    /// Number of lines (a text ending in a newline has an empty last line).
    pub fn lines(&self) -> usize {
        self.starts.len()
    }

    /// 0-based line of byte `offset`.
    pub fn line_of(&self, offset: usize) -> usize {
        self.starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1)
    }

    /// Byte range of 0-based line `line`, without its line break.
    pub fn line_range(&self, text: &str, line: usize) -> std::ops::Range<usize> {
        let start = self.starts.get(line).copied().unwrap_or(text.len());
        let end = self
            .starts
            .get(line + 1)
            .map_or(text.len(), |&next| next - 1)
            .max(start);
        start..end
    }

    /// 1-based line and character column of byte `offset` (as [`line_col`]).
    pub fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_of(offset);
        let start = self.starts.get(line).copied().unwrap_or(0).min(offset);
        let column = if self.ascii.get(line).copied().unwrap_or(false) {
            offset - start
        } else {
            text.get(start..offset).map_or(0, |t| t.chars().count())
        };
        (line + 1, column + 1)
    }
}

/// Lines longer than this many characters are clipped in snippets.
pub const MAX_SNIPPET_LINE: usize = 400;
/// Characters kept on each side of a span's start on a clipped line.
pub const CLIP_CONTEXT: usize = 60;
/// Marks text cut from a clipped line.
const ELLIPSIS: &str = "…";

/// The part of a file a diagnostic shows: the lines of its spans with one
/// line of context around each, every line over [`MAX_SNIPPET_LINE`]
/// characters cut to a window of [`CLIP_CONTEXT`] characters around the span
/// with `…` where text was cut. It is what miette renders (as a
/// [`SourceCode`]), with the original line numbers, so a finding on a
/// megabyte-long line renders a short snippet instead of crashing the
/// renderer, and a finding never carries the whole file to the terminal.
#[derive(Debug, Clone, Default)]
pub struct Snippet {
    name: String,
    segments: Vec<Segment>,
}

/// A run of consecutive lines of the original, possibly clipped.
#[derive(Debug, Clone)]
struct Segment {
    /// Offset of the segment in the snippet's coordinates (segments are one byte apart).
    base: usize,
    text: String,
    /// 0-based line in the original of the segment's first line.
    first_line: usize,
    lines: Vec<LineMap>,
}

/// How one snippet line maps to its original line.
#[derive(Debug, Clone, Copy)]
struct LineMap {
    /// Offset of the line in the segment text.
    start: usize,
    /// Kept character window `[c0, c1)` of the original line, when clipped.
    clip: Option<(usize, usize)>,
    /// Bytes of the leading `…` (0 when none).
    lead: usize,
    /// Byte column in the original line where the kept text starts.
    orig_col: usize,
    /// Bytes of kept text.
    kept: usize,
}

/// Cuts the snippet of `text` that shows `span` (a finding in the file
/// `name`) and returns it with the span re-based into it. For error types
/// that hold a `#[source_code]` and a `#[label]` span: store these two
/// instead of the whole file, and rendering is bounded and never panics on
/// long lines.
pub fn clip_snippet(name: &str, text: &str, span: SourceSpan) -> (Snippet, SourceSpan) {
    let (snippet, spans) = Snippet::build(name, text, &LineIndex::new(text), &[span]);
    let span = spans.first().copied().unwrap_or_else(|| (0, 0).into());
    (snippet, span)
}

impl Snippet {
    /// The snippet of `text` (indexed by `index`) showing `spans`, and the spans re-based into it.
    pub fn build(
        name: &str,
        text: &str,
        index: &LineIndex,
        spans: &[SourceSpan],
    ) -> (Snippet, Vec<SourceSpan>) {
        let last_line = index.lines().saturating_sub(1);
        let clamp = |o: usize| o.min(text.len());
        // Lines each span covers, widened by one line of context, merged.
        let mut ranges: Vec<(usize, usize)> = spans
            .iter()
            .map(|s| {
                let start = clamp(s.offset());
                let end = clamp(s.offset() + s.len().saturating_sub(1)).max(start);
                let (a, b) = (index.line_of(start), index.line_of(end));
                (a.saturating_sub(1), (b + 1).min(last_line))
            })
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if a <= last.1 + 1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        // Where each line's window is centred: the first span starting on it,
        // else the first span of its segment.
        let anchors: Vec<(usize, usize, usize)> = spans
            .iter()
            .map(|s| {
                let start = clamp(s.offset());
                let line = index.line_of(start);
                let r = index.line_range(text, line);
                let col = char_count(text, r.start, start.min(r.end));
                let len = char_count(
                    text,
                    start.min(r.end),
                    clamp(s.offset() + s.len()).min(r.end),
                );
                (line, col, len)
            })
            .collect();
        let mut segments = Vec::new();
        let mut base = 0;
        for (a, b) in merged {
            let seg_anchor = anchors
                .iter()
                .find(|(l, _, _)| (a..=b).contains(l))
                .map(|&(_, c, n)| (c, n))
                .unwrap_or((0, 0));
            let mut seg = Segment {
                base,
                text: String::new(),
                first_line: a,
                lines: Vec::with_capacity(b - a + 1),
            };
            for line in a..=b {
                let r = index.line_range(text, line);
                let body = text.get(r.clone()).unwrap_or("");
                let start = seg.text.len();
                let long = body.len() > MAX_SNIPPET_LINE && body.chars().count() > MAX_SNIPPET_LINE;
                if long {
                    let (col, len) = anchors
                        .iter()
                        .find(|(l, _, _)| *l == line)
                        .map(|&(_, c, n)| (c, n))
                        .unwrap_or(seg_anchor);
                    let c0 = col.saturating_sub(CLIP_CONTEXT);
                    let c1 = col + CLIP_CONTEXT + len.min(CLIP_CONTEXT);
                    let b0 = byte_of_char(body, c0);
                    let b1 = byte_of_char(body, c1);
                    let lead = if b0 > 0 { ELLIPSIS.len() } else { 0 };
                    if b0 > 0 {
                        seg.text.push_str(ELLIPSIS);
                    }
                    seg.text.push_str(&body[b0..b1]);
                    if b1 < body.len() {
                        seg.text.push_str(ELLIPSIS);
                    }
                    seg.lines.push(LineMap {
                        start,
                        clip: Some((c0, c1)),
                        lead,
                        orig_col: b0,
                        kept: b1 - b0,
                    });
                } else {
                    seg.text.push_str(body);
                    seg.lines.push(LineMap {
                        start,
                        clip: None,
                        lead: 0,
                        orig_col: 0,
                        kept: body.len(),
                    });
                }
                // Keep the original line break (`\r\n` stays `\r\n`).
                if r.end < text.len() {
                    let brk = if text.as_bytes().get(r.end) == Some(&b'\n') {
                        "\n"
                    } else {
                        ""
                    };
                    seg.text.push_str(brk);
                }
            }
            base += seg.text.len() + 1;
            segments.push(seg);
        }
        let snippet = Snippet {
            name: name.to_string(),
            segments,
        };
        let rebased = spans
            .iter()
            .map(|s| {
                let start = snippet.rebase(text, index, clamp(s.offset()));
                let end = snippet
                    .rebase(text, index, clamp(s.offset() + s.len()))
                    .max(start);
                SourceSpan::new(start.into(), end - start)
            })
            .collect();
        (snippet, rebased)
    }

    /// The snippet offset of original byte `offset` (which lies in a segment).
    fn rebase(&self, text: &str, index: &LineIndex, offset: usize) -> usize {
        let line = index.line_of(offset);
        let Some(seg) = self
            .segments
            .iter()
            .find(|s| (s.first_line..s.first_line + s.lines.len()).contains(&line))
        else {
            return 0;
        };
        let Some(lm) = seg.lines.get(line - seg.first_line) else {
            return seg.base;
        };
        let r = index.line_range(text, line);
        let b = offset.saturating_sub(r.start);
        let within = match lm.clip {
            None => b.min(lm.kept + 1),
            Some((c0, c1)) => {
                let c = char_count(text, r.start, offset.min(r.end));
                if c < c0 {
                    lm.lead
                } else if c >= c1 {
                    lm.lead + lm.kept
                } else {
                    lm.lead + (b.min(r.end - r.start) - lm.orig_col)
                }
            }
        };
        seg.base + lm.start + within
    }

    /// Whether there is nothing to show (the file is empty or unreadable).
    pub fn is_empty(&self) -> bool {
        self.segments.iter().all(|s| s.text.trim().is_empty())
    }

    /// The snippet's text, segments separated by blank lines (for tests and logs).
    pub fn text(&self) -> String {
        self.segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl SourceCode for Snippet {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let seg = self
            .segments
            .iter()
            .find(|s| {
                span.offset() >= s.base && span.offset() + span.len() <= s.base + s.text.len()
            })
            .ok_or(MietteError::OutOfBounds)?;
        let inner = SourceSpan::new((span.offset() - seg.base).into(), span.len());
        let c = seg
            .text
            .as_str()
            .read_span(&inner, context_lines_before, context_lines_after)?;
        let mut column = c.column();
        if let Some(lm) = seg.lines.get(c.line())
            && lm.clip.is_some()
        {
            column = column.saturating_sub(lm.lead) + lm.orig_col;
        }
        let data: &'a [u8] = c.data();
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            data,
            SourceSpan::new((c.span().offset() + seg.base).into(), c.span().len()),
            c.line() + seg.first_line,
            column,
            c.line_count() + seg.first_line,
        )))
    }
}

/// Characters in `text[from..to]` (byte offsets, clamped to char boundaries).
fn char_count(text: &str, from: usize, to: usize) -> usize {
    let mut to = to.min(text.len());
    while !text.is_char_boundary(to) {
        to -= 1;
    }
    let from = from.min(to);
    text.get(from..to).map_or(0, |t| {
        if t.is_ascii() {
            t.len()
        } else {
            t.chars().count()
        }
    })
}

/// Byte offset of character `n` in `line` (its length when shorter).
fn byte_of_char(line: &str, n: usize) -> usize {
    line.char_indices().nth(n).map_or(line.len(), |(b, _)| b)
}

fn clamp(span: Span, len: usize) -> SourceSpan {
    let start = span.offset.min(len);
    let end = span.end().min(len);
    (start, end - start).into()
}

impl miette::Diagnostic for Diagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(self.code.as_str()))
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
        if self.text.is_empty() {
            None
        } else {
            Some(&self.view().snippet)
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.text.is_empty() {
            return None;
        }
        let spans = &self.view().spans;
        let primary = LabeledSpan::new_primary_with_span(
            self.primary.clone(),
            spans.first().copied().unwrap_or_else(|| (0, 0).into()),
        );
        let rest = self
            .labels
            .iter()
            .zip(spans.iter().skip(1))
            .map(|(l, s)| LabeledSpan::new_with_span(Some(l.message.clone()), *s));
        Some(Box::new(std::iter::once(primary).chain(rest)))
    }
}

/// How many findings `render` prints before summing up the rest: enough to
/// fix in one sitting, few enough that a generated file with thousands of
/// errors (or a controller log) is not flooded. `--format json` lists all.
pub const MAX_RENDERED: usize = 50;

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

    /// The first [`MAX_RENDERED`] findings rendered (see [`Diagnostic::render`]),
    /// separated by blank lines, then a line counting the rest ("… and 12 more
    /// errors"). Linear in the number of findings and the size of the files.
    pub fn render(&self, width: usize) -> String {
        let mut indexes = Indexes::default();
        let mut out: Vec<String> = self
            .0
            .iter()
            .take(MAX_RENDERED)
            .map(|d| d.render_with(width, indexes.get(d)))
            .collect();
        if let Some(more) = self.more_line() {
            out.push(more);
        }
        out.join("\n")
    }

    /// "… and N more errors and M more warnings", when findings were left out of `render`.
    fn more_line(&self) -> Option<String> {
        let rest = self.0.get(MAX_RENDERED..)?;
        if rest.is_empty() {
            return None;
        }
        let errors = rest.iter().filter(|d| d.is_error()).count();
        let warnings = rest.len() - errors;
        let plural =
            |n: usize, what: &str| format!("{n} more {what}{}", if n == 1 { "" } else { "s" });
        let what = match (errors, warnings) {
            (0, w) => plural(w, "warning"),
            (e, 0) => plural(e, "error"),
            (e, w) => format!("{} and {}", plural(e, "error"), plural(w, "warning")),
        };
        Some(format!(
            "… and {what} (only the first {MAX_RENDERED} are shown; `nodewright check --format json` lists every one)\n"
        ))
    }

    /// The JSON array printed by `check --format json`: every finding, uncapped.
    pub fn to_json(&self) -> serde_json::Value {
        let mut indexes = Indexes::default();
        serde_json::Value::Array(
            self.0
                .iter()
                .map(|d| d.to_json_with(indexes.get(d)))
                .collect(),
        )
    }
}

/// One [`LineIndex`] per distinct source text, so many findings in one file
/// share a single scan of it.
#[derive(Default)]
struct Indexes(HashMap<usize, LineIndex>);

impl Indexes {
    fn get(&mut self, d: &Diagnostic) -> &LineIndex {
        let key = Arc::as_ptr(&d.text) as *const u8 as usize;
        self.0.entry(key).or_insert_with(|| LineIndex::new(&d.text))
    }
}

impl miette::Diagnostic for Diagnostics {
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        Some(Box::new(
            self.0
                .iter()
                .take(MAX_RENDERED)
                .map(|d| d as &dyn miette::Diagnostic),
        ))
    }
}

/// Most candidates [`did_you_mean`] compares a word with. Past this (a set
/// with thousands of pools) it suggests nothing, so that thousands of
/// misspelt references cost linear time rather than references × names.
pub const MAX_SUGGESTION_CANDIDATES: usize = 1_000;

/// The closest candidate to `word` (by Jaro-Winkler similarity), if close enough to suggest.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let candidates: Vec<&'a str> = candidates
        .into_iter()
        .take(MAX_SUGGESTION_CANDIDATES + 1)
        .collect();
    if candidates.len() > MAX_SUGGESTION_CANDIDATES {
        return None;
    }
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(s, _)| *s >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy whose line 2 is `pad` characters of label value, then an unknown operator.
    fn long_line_policy(pad: usize) -> String {
        format!(
            "pool a {{\n  label team = \"{}\" require zone inn [a]\n}}\n",
            "x".repeat(pad)
        )
    }

    /// An error past column 70,000 renders a clipped window with the caret
    /// under the error; miette alone panics on such a line.
    #[test]
    fn long_line_error_renders_a_clipped_snippet() {
        let text = long_line_policy(70_000);
        let d = crate::policy::parse("long.policy", &text).expect_err("unknown operator");
        assert_eq!(d.0.len(), 1);
        let rendered = d.render(100);
        let at = text.find("inn").expect("inn");
        let col = at - text.find('\n').expect("nl");
        assert!(
            rendered.starts_with(&format!("long.policy:2:{col}: error\n")),
            "{rendered}"
        );
        assert!(rendered.contains("unknown operator `inn`"), "{rendered}");
        assert!(rendered.len() < 2_000, "{} bytes", rendered.len());
        // miette's own header names the true line and column too.
        assert!(
            rendered.contains(&format!("[long.policy:2:{col}]")),
            "{rendered}"
        );
        let lines: Vec<&str> = rendered.lines().collect();
        let src = lines
            .iter()
            .position(|l| l.starts_with(" 2 │ …"))
            .unwrap_or_else(|| panic!("no clipped line 2:\n{rendered}"));
        let shown = lines[src];
        assert!(shown.ends_with('…') || shown.ends_with("[a]"), "{shown}");
        let caret = lines[src + 1];
        // The underline sits under `inn` in the clipped line (same display column).
        let inn_col = shown
            .char_indices()
            .find(|(b, _)| shown[*b..].starts_with("inn "))
            .map(|(b, _)| shown[..b].chars().count())
            .unwrap_or_else(|| panic!("`inn` not shown: {shown}"));
        let under: Vec<char> = caret.chars().collect();
        assert!(
            under.get(inn_col).is_some_and(|c| *c == '─' || *c == '┬'),
            "underline not under `inn`:\n{shown}\n{caret}"
        );
        assert!(caret.contains('┬'), "{caret}");
        assert!(rendered.contains("did you mean `in`?"), "{rendered}");
    }

    /// Short lines render exactly as miette renders the whole file.
    #[test]
    fn short_lines_are_not_clipped() {
        let (s, span) = clip_snippet("f", "a\nbb cc\nd\ne\n", (5, 2).into());
        assert_eq!(s.text(), "a\nbb cc\nd\n");
        assert_eq!((span.offset(), span.len()), (5, 2));
        let c = s.read_span(&span, 0, 0).expect("read");
        assert_eq!((c.line(), c.column()), (1, 3));
    }

    /// Labels far apart get separate windows with their own line numbers, and
    /// spans re-base into clipped lines.
    #[test]
    fn distant_labels_and_clipped_spans_rebase() {
        let long = format!("{}TARGET{}", "y".repeat(1_000), "z".repeat(1_000));
        let mut text = String::from("first\n");
        for _ in 0..100 {
            text.push_str("filler\n");
        }
        text.push_str(&long);
        text.push('\n');
        let target = text.find("TARGET").expect("target");
        let index = LineIndex::new(&text);
        let (s, spans) = Snippet::build("f", &text, &index, &[(target, 6).into(), (0, 5).into()]);
        assert_eq!(s.segments.len(), 2);
        let shown = s.text();
        assert!(shown.contains("…yyy") && shown.contains("zzz…"), "{shown}");
        assert!(shown.len() < 400, "{}", shown.len());
        let c = s.read_span(&spans[0], 0, 0).expect("target");
        assert_eq!(std::str::from_utf8(c.data()).ok(), Some("TARGET"));
        assert_eq!((c.line(), c.column()), (101, 1_000));
        let c = s.read_span(&spans[1], 0, 0).expect("first");
        assert_eq!(std::str::from_utf8(c.data()).ok(), Some("first"));
        assert_eq!(c.line(), 0);
    }

    #[test]
    fn line_index_matches_line_col() {
        let text = "ab\nçé x\n\nlast";
        let index = LineIndex::new(text);
        for off in 0..=text.len() {
            assert_eq!(
                index.line_col(text, off),
                line_col(text, off),
                "offset {off}"
            );
        }
    }

    /// Rendering stops after MAX_RENDERED findings and counts the rest.
    #[test]
    fn render_caps_and_counts_the_rest() {
        let text: Arc<str> = Arc::from("x\n");
        let mk = |i: usize, warn: bool| {
            let f = if warn {
                Diagnostic::warning
            } else {
                Diagnostic::error
            };
            f(
                Path::new("f"),
                &text,
                Span::new(0, 1),
                Code::Syntax,
                format!("n{i}"),
            )
        };
        let mut all: Vec<Diagnostic> = (0..MAX_RENDERED + 7).map(|i| mk(i, false)).collect();
        all.extend((0..3).map(|i| mk(i, true)));
        let d = Diagnostics(all);
        let out = d.render(100);
        assert_eq!(out.matches("f:1:1: error").count(), MAX_RENDERED);
        assert!(
            out.contains("… and 7 more errors and 3 more warnings"),
            "{out}"
        );
        assert_eq!(
            d.to_json().as_array().map(Vec::len),
            Some(MAX_RENDERED + 10)
        );
    }
}
