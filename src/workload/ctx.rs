//! Where objects come from, and the errors and notes that point back there.
//!
//! Shared by the reader (`load`), the builders (`build`) and the spec readers
//! (`pods`, `nodes`), which all report against the same sources; keeping it
//! apart from `load` means those modules need nothing from the reader.
//!
//! Positions cost O(object), never O(file): each file gets a line index once,
//! and a field is looked up only within the text of its own object.

use std::ops::Range;
use std::sync::Arc;

use miette::SourceSpan;

use super::error::{ErrorKind, InputError, Note, WorkloadError};
use super::snippet;
use super::yaml::{self, Path};

/// One input file: its name, text and where each line starts.
pub(super) struct Source {
    pub name: String,
    pub text: Arc<String>,
    /// Byte offset of the start of every line (the first is 0).
    line_starts: Vec<usize>,
}

impl Source {
    /// Indexes `text`'s lines once, so that every position after is O(1).
    pub(super) fn new(name: String, text: String) -> Source {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Source {
            name,
            text: Arc::new(text),
            line_starts,
        }
    }

    /// Byte offset of 0-based `line`, or the end of the text past the last line.
    fn line_start(&self, line: usize) -> usize {
        self.line_starts
            .get(line)
            .copied()
            .unwrap_or(self.text.len())
    }

    /// 1-based (line, column) of byte `offset`; columns count characters.
    pub(super) fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_start(line - 1);
        (line, self.text[start..offset].chars().count() + 1)
    }

    /// Byte offset of 1-based (`line`, `col`); columns count characters.
    pub(super) fn offset_of(&self, line: usize, col: usize) -> usize {
        let start = self.line_start(line.saturating_sub(1));
        let end = self.line_start(line).min(self.text.len());
        let body = self.text[start..end].trim_end_matches('\n');
        let within = body
            .char_indices()
            .nth(col.saturating_sub(1))
            .map_or(body.len(), |(b, _)| b);
        start + within
    }
}

/// A document of a file: where its text starts and how long it is.
pub(super) struct DocRef {
    pub file: usize,
    /// 0-based line of the file where the document starts.
    pub line0: usize,
    pub offset: usize,
    pub len: usize,
}

/// An item of a `kind: List`: its lines within its document and the column
/// of its `- ` marker, so that fields are looked up within the item alone.
#[derive(Debug, Clone)]
pub(super) struct Item {
    /// 0-based lines relative to the document.
    pub lines: Range<usize>,
    /// 0-based column of the item's dash.
    pub col: usize,
}

/// Where an object came from: its document, the item of a List it is (if
/// so), and its first line.
#[derive(Debug, Clone)]
pub(super) struct At {
    pub doc: usize,
    pub item: Option<Item>,
    /// 1-based line of the object's start in its file.
    pub line: usize,
}

/// Sources, and the notes gathered while reading them.
pub(super) struct Ctx {
    pub files: Vec<Source>,
    pub docs: Vec<DocRef>,
    pub notes: Vec<Note>,
    /// The object whose pod spec is being read ("Deployment ns/name"), so
    /// that a note about a field of the spec names the pods it concerns.
    pub object: String,
}

impl Ctx {
    /// A context over `files` (name, text) with no documents yet.
    pub(super) fn new(files: Vec<(String, String)>) -> Ctx {
        Ctx {
            files: files.into_iter().map(|(n, t)| Source::new(n, t)).collect(),
            docs: Vec::new(),
            notes: Vec::new(),
            object: String::new(),
        }
    }

    /// The whole text of document `doc`.
    pub(super) fn doc_text(&self, doc: usize) -> &str {
        let d = &self.docs[doc];
        &self.files[d.file].text[d.offset..d.offset + d.len]
    }

    /// The text of the object at `at` (its List item, or its document), and
    /// the 0-based line of the file where that text starts.
    pub(super) fn object_text(&self, at: &At) -> (&str, usize) {
        let d = &self.docs[at.doc];
        let text = self.doc_text(at.doc);
        let Some(item) = &at.item else {
            return (text, d.line0);
        };
        let src = &self.files[d.file];
        let start = src.line_start(d.line0 + item.lines.start);
        let end = src
            .line_start(d.line0 + item.lines.end)
            .min(d.offset + d.len);
        let start = start.max(d.offset).min(end);
        (&src.text[start..end], d.line0 + item.lines.start)
    }

    /// 1-based (line, column) of `path` within the object at `at`: as deep
    /// along the path as it is written, else the object's first line.
    pub(super) fn pos(&self, at: &At, path: &Path) -> (usize, usize) {
        let root_col = at.item.as_ref().map_or(1, |i| i.col + 1);
        if path.0.is_empty() {
            return (at.line, root_col);
        }
        let (text, line0) = self.object_text(at);
        let parent = at.item.as_ref().map(|i| i.col);
        (1..=path.0.len())
            .rev()
            .find_map(|n| yaml::locate_in(text, &Path(path.0[..n].to_vec()), parent))
            .map_or((at.line, root_col), |(l, c)| (line0 + l + 1, c + 1))
    }

    /// "file:line:col" of `path` in the object at `at`, for messages that
    /// point at a second place.
    pub(super) fn place(&self, at: &At, path: &Path) -> String {
        let (line, col) = self.pos(at, path);
        format!("{}:{line}:{col}", self.files[self.docs[at.doc].file].name)
    }

    /// An error at 1-based (`line`, `col`) of file `file`.
    pub(super) fn error_at_line(
        &self,
        file: usize,
        line: usize,
        col: usize,
        kind: ErrorKind,
        message: String,
        help: Option<String>,
    ) -> WorkloadError {
        let src = &self.files[file];
        let offset = src.offset_of(line, col);
        input_error(src, offset, (line, col), kind, message, help)
    }

    /// An error at `path` within the object at `at`.
    pub(super) fn error(
        &self,
        at: &At,
        path: &Path,
        kind: ErrorKind,
        message: String,
        help: Option<String>,
    ) -> WorkloadError {
        let (line, col) = self.pos(at, path);
        self.error_at_line(self.docs[at.doc].file, line, col, kind, message, help)
    }

    /// Records a note about `path` within the object at `at`.
    pub(super) fn note(&mut self, at: &At, path: &Path, message: String) {
        let (line, column) = self.pos(at, path);
        let file = self.files[self.docs[at.doc].file].name.clone();
        self.notes.push(Note {
            file,
            line,
            column,
            message,
        });
    }
}

/// An [`InputError`] at byte `offset` of `src`, which is 1-based `line_col`;
/// its snippet is clipped around the error, so that neither a long line nor
/// a large file is copied into the report.
pub(super) fn input_error(
    src: &Source,
    offset: usize,
    (line, col): (usize, usize),
    kind: ErrorKind,
    message: String,
    help: Option<String>,
) -> WorkloadError {
    let snippet = snippet::around(&src.name, &src.text, offset, line, col);
    let span = SourceSpan::from((snippet.primary_offset(), 0));
    WorkloadError::Input(Box::new(InputError {
        kind,
        file: src.name.clone(),
        line,
        col,
        message,
        help,
        src: snippet,
        span,
    }))
}
