//! A linear check of flow nesting, run before a document reaches the YAML
//! parser.
//!
//! libyaml's scanner keeps one "simple key" slot per open flow collection
//! (`[` or `{`) and looks at every slot for every token, so `[[[[…` 100,000
//! deep costs O(depth²): minutes, before serde's recursion limit (128
//! levels) is ever consulted. This scan finds the first flow collection
//! nested deeper than that limit in one pass, so such a document is
//! rejected at once, at that bracket.
//!
//! It never rejects a document the parser would accept: it counts a
//! bracket only where YAML opens a collection (anywhere inside a flow
//! collection outside quotes and comments; at the start of a node in block
//! context), and a document whose flow nesting passes the limit would hit
//! the recursion limit anyway. Where it is unsure it counts less, which
//! costs only time.

/// The deepest nesting serde_yaml_ng reads (its recursion limit).
pub(super) const MAX_DEPTH: usize = 128;

/// Byte offset of the first `[` or `{` in `text` that opens a flow
/// collection nested more than `limit` deep, if any.
pub(super) fn too_deep(text: &str, limit: usize) -> Option<usize> {
    let s = Scan {
        b: text.as_bytes(),
        limit,
    };
    let mut i = 0usize;
    // Inside a block scalar (`key: |`): lines indented at least this much are its text.
    let mut scalar_min: Option<usize> = None;
    // After a plain scalar that ran to the end of its line: lines indented
    // at least this much continue it (libyaml's rule), so open nothing.
    let mut plain_min: Option<usize> = None;
    let mut first = true;
    while i < s.b.len() {
        let end = s.line_end(i);
        let content = s.skip_spaces(i, end);
        let indent = content - i;
        let blank = content == end;
        if let Some(min) = scalar_min {
            if blank || indent >= min {
                i = end + 1;
                continue;
            }
            scalar_min = None;
        }
        if let Some(min) = plain_min {
            if blank || (s.b[content] != b'#' && indent >= min) {
                i = end + 1;
                continue;
            }
            plain_min = None;
        }
        let root = first && !blank && !matches!(s.b[content], b'#' | b'%' | b'-');
        if !blank && s.b[content] != b'#' {
            first = false;
        }
        match s.block_line(content, root) {
            Err(at) => return Some(at),
            Ok(Line::Next(next)) => i = next,
            Ok(Line::BlockScalar(min)) => {
                scalar_min = Some(min);
                i = end + 1;
            }
            Ok(Line::Plain(min)) => {
                plain_min = Some(min);
                i = end + 1;
            }
        }
    }
    None
}

/// How a block-context line ended.
enum Line {
    /// Scanning goes on at this offset (the next line, or after a
    /// multi-line flow collection or quoted scalar).
    Next(usize),
    /// A block scalar header (`|`, `>`): the lines below indented at least
    /// this much are its text.
    BlockScalar(usize),
    /// A plain scalar ran to the end of the line; lines indented at least
    /// this much continue it.
    Plain(usize),
}

struct Scan<'a> {
    b: &'a [u8],
    limit: usize,
}

impl Scan<'_> {
    fn line_end(&self, i: usize) -> usize {
        self.b[i..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(self.b.len(), |p| i + p)
    }

    fn skip_spaces(&self, mut i: usize, end: usize) -> usize {
        while i < end && matches!(self.b[i], b' ' | b'\t' | b'\r') {
            i += 1;
        }
        i
    }

    fn space_or_end(&self, i: usize) -> bool {
        self.b
            .get(i)
            .is_none_or(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
    }

    /// Scans one line in block context from `i`, entering any flow
    /// collection or quoted scalar that starts a node. `Err` when too deep.
    fn block_line(&self, mut i: usize, root: bool) -> Result<Line, usize> {
        let line_start = self.b[..i]
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |p| p + 1);
        // Column of the innermost `- ` or key on this line: a scalar's
        // continuation lines must be indented past it.
        let mut parent: Option<usize> = None;
        // Where a scalar's text continues when no `- ` or key is on its line:
        // anywhere for the document's own first node, else (at least) at its column.
        let min = |parent: Option<usize>, col: usize| match parent {
            Some(p) => p + 1,
            None if root => 0,
            None => col,
        };
        loop {
            let end = self.line_end(i);
            i = self.skip_spaces(i, end);
            if i >= end {
                return Ok(Line::Next(end + 1));
            }
            match self.b[i] {
                b'#' => return Ok(Line::Next(end + 1)),
                b'-' | b'?' | b':' if self.space_or_end(i + 1) => {
                    parent = Some(i.saturating_sub(line_start));
                    i += 1;
                }
                b'[' | b'{' => i = self.flow(i)?,
                b'"' => i = self.double_quoted(i + 1),
                b'\'' => i = self.single_quoted(i + 1),
                b'|' | b'>' => {
                    let col = i.saturating_sub(line_start);
                    return Ok(Line::BlockScalar(min(parent, col)));
                }
                b'&' | b'!' | b'*' => {
                    while i < end && !self.space_or_end(i) {
                        i += 1;
                    }
                }
                _ => match self.plain_value(i, end) {
                    Some(value) => {
                        parent = Some(i.saturating_sub(line_start));
                        i = value;
                    }
                    None => {
                        let col = i.saturating_sub(line_start);
                        return Ok(Line::Plain(min(parent, col)));
                    }
                },
            }
        }
    }

    /// In a block plain scalar at `i`: the offset after its `: ` when it is
    /// a key, None when it runs to the end of the line (or a comment).
    fn plain_value(&self, mut i: usize, end: usize) -> Option<usize> {
        while i < end {
            match self.b[i] {
                b':' if self.space_or_end(i + 1) => return Some(i + 1),
                b'#' if matches!(self.b[i - 1], b' ' | b'\t') => return None,
                _ => i += 1,
            }
        }
        None
    }

    /// A flow collection opening at `i`: the offset after it closes.
    fn flow(&self, start: usize) -> Result<usize, usize> {
        let mut depth = 0usize;
        let mut i = start;
        // Whether a quote here would start a quoted scalar.
        let mut node_start = true;
        while i < self.b.len() {
            let c = self.b[i];
            match c {
                b'[' | b'{' => {
                    depth += 1;
                    if depth > self.limit {
                        return Err(i);
                    }
                    node_start = true;
                }
                b']' | b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(i + 1);
                    }
                    node_start = false;
                }
                b'"' if node_start => {
                    i = self.double_quoted(i + 1);
                    node_start = false;
                    continue;
                }
                b'\'' if node_start => {
                    i = self.single_quoted(i + 1);
                    node_start = false;
                    continue;
                }
                b'#' if i > 0 && matches!(self.b[i - 1], b' ' | b'\t' | b'\n' | b'\r') => {
                    i = self.line_end(i);
                    continue;
                }
                b',' | b':' | b' ' | b'\t' | b'\r' | b'\n' => node_start = true,
                _ => node_start = false,
            }
            i += 1;
        }
        Ok(i)
    }

    /// The offset after a double-quoted scalar whose text starts at `i`.
    fn double_quoted(&self, mut i: usize) -> usize {
        while i < self.b.len() {
            match self.b[i] {
                b'\\' => i += 2,
                b'"' => return i + 1,
                _ => i += 1,
            }
        }
        self.b.len()
    }

    /// The offset after a single-quoted scalar whose text starts at `i`.
    fn single_quoted(&self, mut i: usize) -> usize {
        while i < self.b.len() {
            if self.b[i] == b'\'' {
                if self.b.get(i + 1) == Some(&b'\'') {
                    i += 2;
                    continue;
                }
                return i + 1;
            }
            i += 1;
        }
        self.b.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nest(n: usize) -> String {
        format!("{}{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn finds_the_first_bracket_past_the_limit() {
        let t = format!("a: {}\n", nest(200));
        assert_eq!(too_deep(&t, 128), Some(3 + 128));
        assert_eq!(too_deep(&format!("a: {}\n", nest(128)), 128), None);
        let t = format!("- {{x: {}}}\n", nest(10));
        assert_eq!(too_deep(&t, 5), Some(2 + 4 + 4));
    }

    #[test]
    fn brackets_that_open_nothing_are_not_counted() {
        let many = |s: &str| s.repeat(300);
        for text in [
            // Plain scalars in block context, quoted scalars, comments, block scalars.
            format!("a: x{}\n", many("[")),
            format!("a: \"{}\"\n", many("[")),
            format!("a: '{}'\n", many("{")),
            format!("a: [\"{}\", '{}']\n", many("["), many("{")),
            format!("a: 1 # {}\n", many("[")),
            format!("a: |\n  {}\n  {}\nb: 2\n", many("["), many("{")),
            format!("- >-\n    {}\n- x\n", many("[")),
            format!("a: [b, c] # {}\n", many("[")),
            format!("a: [don't, {}]\n", "x"),
            format!("a: \"esc \\\" {}\"\n", many("[")),
        ] {
            assert_eq!(too_deep(&text, 128), None, "{text}");
        }
    }

    #[test]
    fn nesting_across_lines_and_after_a_block_scalar_counts() {
        let t = format!("a: |\n  text\nb:\n  {}\n", nest(130).replace("[[", "[\n["));
        assert!(too_deep(&t, 128).is_some());
        let t = format!("k: \"a\nb\"\nv: {}\n", nest(129));
        assert!(too_deep(&t, 128).is_some());
    }

    proptest! {
        /// Whatever the text, if the scan rejects it, the parser rejects it too.
        #[test]
        fn never_rejects_what_the_parser_accepts(text in "([\\[\\]{}ab:,'\"#|>\\-?!&* \t\n]|\n  |\n    |- |: |---\n){0,200}") {
            if too_deep(&text, 3).is_some() {
                let parsed: Result<serde_yaml_ng::Value, _> = serde_yaml_ng::from_str(&text);
                if let Ok(v) = parsed {
                    prop_assert!(depth_of(&v) > 3, "{text:?} parsed as {v:?}");
                }
            }
        }
    }

    fn depth_of(v: &serde_yaml_ng::Value) -> usize {
        match v {
            serde_yaml_ng::Value::Sequence(s) => 1 + s.iter().map(depth_of).max().unwrap_or(0),
            serde_yaml_ng::Value::Mapping(m) => {
                1 + m
                    .iter()
                    .map(|(k, v)| depth_of(k).max(depth_of(v)))
                    .max()
                    .unwrap_or(0)
            }
            serde_yaml_ng::Value::Tagged(t) => depth_of(&t.value),
            _ => 0,
        }
    }
}
