//! The source text an input error shows: the error's line and one line each
//! side, each clipped to a window of columns around the error.
//!
//! miette's graphical handler panics when a label sits past column 65,535,
//! and a report holding a whole 50 MB file copies it for nothing. So a
//! report carries only this snippet, and the snippet still reports the real
//! line and column, so the header reads `file:line:col` as in the file.

use miette::{MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

/// Characters kept on each side of the error's column.
pub(super) const WINDOW: usize = 80;

/// Marks a line cut short on either side.
const ELLIPSIS: char = '…';

/// A few lines of a file around an error, clipped to a window of columns.
#[derive(Debug, Clone)]
pub struct Snippet {
    name: String,
    text: String,
    /// 0-based line of the file where `text` starts.
    first_line: usize,
    /// Byte offset of the error in `text`.
    primary: usize,
    /// 0-based line and column of the error in the file.
    line0: usize,
    col0: usize,
}

impl Snippet {
    /// Byte offset of the error within the snippet: the span to label.
    pub fn primary_offset(&self) -> usize {
        self.primary
    }

    /// The clipped text (for tests and for callers that print it themselves).
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// `line` clipped to the characters `[from, from + 2 * WINDOW)`, with an
/// ellipsis where something was cut; also the byte offset, in the result, of
/// character `at` of `line` (clamped to the window).
///
/// A small function of its own so that a shared clipping helper can replace it.
pub(super) fn clip_line(line: &str, from: usize, at: usize) -> (String, usize) {
    let mut out = String::new();
    if from > 0 && !line.is_empty() {
        out.push(ELLIPSIS);
    }
    let mut at_byte = None;
    let mut taken = 0usize;
    let mut rest = line.chars().skip(from).peekable();
    while let Some(c) = rest.next() {
        if taken == 2 * WINDOW {
            break;
        }
        if from + taken == at {
            at_byte = Some(out.len());
        }
        out.push(c);
        taken += 1;
        if taken == 2 * WINDOW && rest.peek().is_some() {
            if at_byte.is_none() && from + taken == at {
                at_byte = Some(out.len());
            }
            out.push(ELLIPSIS);
            break;
        }
    }
    let at_byte = at_byte.unwrap_or(out.len());
    (out, at_byte)
}

/// The snippet of `text` (named `name`) around byte `offset`, which is
/// 1-based (`line`, `col`).
pub(super) fn around(name: &str, text: &str, offset: usize, line: usize, col: usize) -> Snippet {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let prev = (start > 0).then(|| {
        let s = text[..start - 1].rfind('\n').map_or(0, |i| i + 1);
        &text[s..start - 1]
    });
    let next = (end < text.len()).then(|| {
        let e = text[end + 1..]
            .find('\n')
            .map_or(text.len(), |i| end + 1 + i);
        &text[end + 1..e]
    });
    let at = text[start..offset].chars().count();
    // Lines are clipped only when the error is past the first window.
    let from = if at < 2 * WINDOW { 0 } else { at - WINDOW };
    let strip = |l: &str| l.trim_end_matches('\r').to_string();
    let mut out = String::new();
    if let Some(p) = prev {
        out.push_str(&clip_line(&strip(p), from, from).0);
        out.push('\n');
    }
    let (clipped, at_byte) = clip_line(&strip(&text[start..end]), from, at);
    let primary = out.len() + at_byte;
    out.push_str(&clipped);
    if let Some(n) = next {
        out.push('\n');
        out.push_str(&clip_line(&strip(n), from, from).0);
    }
    Snippet {
        name: name.to_string(),
        text: out,
        first_line: line.saturating_sub(1 + usize::from(prev.is_some())),
        primary,
        line0: line.saturating_sub(1),
        col0: col.saturating_sub(1),
    }
}

impl SourceCode for Snippet {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner = self
            .text
            .read_span(span, context_lines_before, context_lines_after)?;
        // The error's own position is known exactly; other lines are shifted.
        let (line, column) = if span.offset() == self.primary && context_lines_before == 0 {
            (self.line0, self.col0)
        } else {
            (inner.line() + self.first_line, inner.column())
        };
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            line,
            column,
            inner.line_count(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(s: &Snippet) -> String {
        #[derive(Debug, thiserror::Error, miette::Diagnostic)]
        #[error("boom")]
        struct E {
            #[source_code]
            src: Snippet,
            #[label("here")]
            span: SourceSpan,
        }
        let e = E {
            src: s.clone(),
            span: SourceSpan::from((s.primary_offset(), 0)),
        };
        let mut out = String::new();
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .render_report(&mut out, &e)
            .expect("renders");
        out
    }

    #[test]
    fn short_lines_are_kept_whole_with_their_line_numbers() {
        let text = "a: 1\nb: 2\nc: x\nd: 4\n";
        let s = around("f.yaml", text, 13, 3, 4);
        assert_eq!(s.text(), "b: 2\nc: x\nd: 4");
        assert_eq!(&s.text()[s.primary_offset()..s.primary_offset() + 1], "x");
        let r = render(&s);
        assert!(r.contains("[f.yaml:3:4]"), "{r}");
        assert!(r.contains(" 2 │ b: 2") && r.contains(" 4 │ d: 4"), "{r}");
    }

    #[test]
    fn a_long_line_is_clipped_around_the_error_and_renders() {
        let col = 200_000;
        let line = format!("k: {}X{}", "a".repeat(col - 4), "b".repeat(100_000));
        let text = format!("first\n{line}\n");
        let offset = 6 + col - 1;
        assert_eq!(&text[offset..offset + 1], "X");
        let s = around("long.yaml", &text, offset, 2, col);
        assert!(s.text().len() < 4 * WINDOW * 3, "{}", s.text().len());
        assert_eq!(&s.text()[s.primary_offset()..s.primary_offset() + 1], "X");
        assert!(
            s.text().contains("…aaa") && s.text().contains("bbb…\n"),
            "{}",
            s.text()
        );
        let r = render(&s);
        assert!(r.contains(&format!("[long.yaml:2:{col}]")), "{r}");
    }

    #[test]
    fn clipping_keeps_the_offset_of_the_column() {
        let (s, at) = clip_line("héllo", 0, 2);
        assert_eq!((s.as_str(), &s[at..]), ("héllo", "llo"));
        let long = "x".repeat(3 * WINDOW);
        let (s, at) = clip_line(&long, 10, 10 + 2 * WINDOW);
        assert!(s.starts_with(ELLIPSIS) && s.ends_with(ELLIPSIS));
        assert_eq!(at, s.len() - ELLIPSIS.len_utf8());
        let (_, at) = clip_line("ab", 0, 9);
        assert_eq!(at, 2);
    }
}
