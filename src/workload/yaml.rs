//! YAML plumbing: splitting multi-document files with their line numbers,
//! finding the line of a field path, and spotting fields the typed
//! Kubernetes structs would silently drop.
//!
//! serde_yaml_ng reports positions only for syntax errors, so a small
//! indentation-aware locator maps a field path (`spec.template.spec.
//! containers[0].resources.requests.cpu`) back to its line for every other
//! diagnostic. It understands block-style YAML, which is what kubectl and
//! people write; for anything else it falls back to the object's first line.

use std::fmt;

use serde_yaml_ng::Value;

/// One step in a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// A field path, displayed the way kubectl explain spells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Path(pub Vec<Seg>);

impl Path {
    /// The empty path (the object itself).
    pub(super) fn root() -> Path {
        Path(Vec::new())
    }
    /// This path extended by a key.
    pub(super) fn key(&self, k: &str) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }
    /// This path extended by a list index.
    pub(super) fn idx(&self, i: usize) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
    /// Parses a dotted path (`spec.template.spec`); no indices.
    pub(super) fn dotted(s: &str) -> Path {
        Path(s.split('.').map(|k| Seg::Key(k.to_string())).collect())
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            match s {
                Seg::Key(k) => {
                    if !first {
                        write!(f, ".")?;
                    }
                    write!(f, "{k}")?;
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// A document of a multi-document file: its text and where it starts.
#[derive(Debug, Clone)]
pub(super) struct DocText<'a> {
    /// 0-based line of the file where `text` begins.
    pub line0: usize,
    /// Byte offset in the file where `text` begins.
    pub offset: usize,
    pub text: &'a str,
}

/// Splits a file on `---` document markers, keeping each document's position.
///
/// A marker at column 0 always starts a document in YAML (even inside a block
/// scalar), so splitting on lines is exact.
pub(super) fn split_documents(text: &str) -> Vec<DocText<'_>> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 0usize;
    let mut pos = 0usize;
    for (line_no, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker = bare == "---"
            || bare.starts_with("--- ")
            || bare.starts_with("---\t")
            || bare.starts_with("--- #");
        if is_marker && pos > start {
            docs.push(DocText {
                line0: start_line,
                offset: start,
                text: &text[start..pos],
            });
            start = pos;
            start_line = line_no;
        } else if is_marker {
            start_line = line_no;
        }
        pos += line.len();
    }
    if pos > start {
        docs.push(DocText {
            line0: start_line,
            offset: start,
            text: &text[start..],
        });
    }
    docs
}

struct Line<'a> {
    /// Column of the first non-space character (a `- ` counts as content start for keys).
    indent: usize,
    /// Column where the content after any `- ` list markers starts.
    content_col: usize,
    /// Whether the line starts a list item.
    dash: bool,
    content: &'a str,
    blank: bool,
}

fn scan_line(line: &str) -> Line<'_> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    let rest = &line[indent..];
    let blank = rest.trim().is_empty() || rest.trim_start().starts_with('#');
    let (dash, content_col, content) = if let Some(r) = rest.strip_prefix("- ") {
        let extra = r.len() - r.trim_start_matches(' ').len();
        (true, indent + 2 + extra, r.trim_start_matches(' '))
    } else if rest.trim_end() == "-" {
        (true, indent + 1, "")
    } else {
        (false, indent, rest)
    };
    Line {
        indent,
        content_col,
        dash,
        content,
        blank,
    }
}

fn key_matches(content: &str, key: &str) -> bool {
    for quoted in [key.to_string(), format!("\"{key}\""), format!("'{key}'")] {
        if let Some(r) = content.strip_prefix(quoted.as_str()) {
            let r = r.trim_start_matches(' ');
            if r.starts_with(':') {
                return true;
            }
        }
    }
    false
}

/// The 0-based (line, column) within `text` where `path` is written, as far as
/// it can be followed; `None` when not even its first step is found.
#[cfg(test)]
pub(crate) fn locate(text: &str, path: &Path) -> Option<(usize, usize)> {
    locate_in(text, path, None)
}

/// [`locate`] within the text of one object: a whole document (`item_col`
/// None), or an item of a List whose `- ` sits at column `item_col` and
/// which `text` starts with. Looking within the object alone keeps a note
/// about one of 100,000 items from rescanning the other 99,999.
pub(super) fn locate_in(
    text: &str,
    path: &Path,
    item_col: Option<usize>,
) -> Option<(usize, usize)> {
    let lines: Vec<Line> = text.lines().map(scan_line).collect();
    // Skip a leading document marker.
    let mut cur = 0usize;
    while cur < lines.len() && (lines[cur].blank || lines[cur].content.starts_with("---")) {
        cur += 1;
    }
    let mut at = Cursor {
        cur,
        parent: item_col,
        inclusive: true,
    };
    let mut found = None;
    for seg in &path.0 {
        let (i, c) = match seg {
            Seg::Key(k) => find_key(&lines, &at, k)?,
            Seg::Index(n) => find_item(&lines, &at, *n)?,
        };
        found = Some((i, c));
        at = Cursor {
            cur: i,
            parent: Some(c),
            // A list item's first key sits on the item's own line.
            inclusive: matches!(seg, Seg::Index(_)),
        };
    }
    found
}

/// Where a [`locate_in`] search stands.
struct Cursor {
    /// The line of the node found last.
    cur: usize,
    /// Column that a child of that node must exceed (None: top level).
    parent: Option<usize>,
    /// Whether the search may include line `cur` itself (the first key of a list item).
    inclusive: bool,
}

/// (line, column) of key `k` among the children of the node at `at`.
fn find_key(lines: &[Line], at: &Cursor, k: &str) -> Option<(usize, usize)> {
    let from = if at.inclusive { at.cur } else { at.cur + 1 };
    for (i, l) in lines.iter().enumerate().skip(from) {
        if l.blank {
            continue;
        }
        let first = i == at.cur && at.inclusive;
        let col = if first { l.content_col } else { l.indent };
        if !first && at.parent.is_some_and(|p| col <= p) {
            return None;
        }
        // A sibling list item at our level ends the block.
        if l.dash && !first && at.parent.is_some_and(|p| l.indent <= p) {
            return None;
        }
        let c = l.content_col;
        if at.parent.is_none_or(|p| c > p) && key_matches(l.content, k) {
            return Some((i, c));
        }
    }
    None
}

/// (line, column of its `-`) of item `n` of the sequence under the node at `at`.
fn find_item(lines: &[Line], at: &Cursor, n: usize) -> Option<(usize, usize)> {
    let from = if at.inclusive { at.cur } else { at.cur + 1 };
    let mut item_col: Option<usize> = None;
    let mut count = 0usize;
    for (i, l) in lines.iter().enumerate().skip(from) {
        if l.blank {
            continue;
        }
        if let Some(p) = at.parent
            && (l.indent < p || (l.indent == p && !l.dash))
        {
            return None;
        }
        if !l.dash {
            continue;
        }
        match item_col {
            None => item_col = Some(l.indent),
            Some(c) if l.indent < c => return None,
            Some(c) if l.indent > c => continue,
            _ => {}
        }
        if count == n {
            return Some((i, l.indent));
        }
        count += 1;
    }
    None
}

/// The 0-based lines where each item of the block sequence at `seq` starts,
/// in one pass (a `kind: List` of thousands of items must not be located
/// item by item).
#[cfg(test)]
pub(crate) fn item_lines(text: &str, seq: &Path) -> Vec<usize> {
    item_lines_in(text, seq, None)
        .into_iter()
        .map(|(l, _)| l)
        .collect()
}

/// [`item_lines`] within one object, as [`locate_in`] looks within one,
/// with the column of each item's `- `.
pub(super) fn item_lines_in(
    text: &str,
    seq: &Path,
    item_col: Option<usize>,
) -> Vec<(usize, usize)> {
    let Some((kl, kc)) = locate_in(text, seq, item_col) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut item_col: Option<usize> = None;
    for (i, line) in text.lines().enumerate().skip(kl + 1) {
        let l = scan_line(line);
        if l.blank {
            continue;
        }
        if l.indent < kc || (l.indent == kc && !l.dash) {
            break;
        }
        if !l.dash {
            continue;
        }
        match item_col {
            None => item_col = Some(l.indent),
            Some(c) if l.indent < c => break,
            Some(c) if l.indent > c => continue,
            _ => {}
        }
        out.push((i, l.indent));
    }
    out
}

/// Paths of fields present in `input` but absent from `known` (the same
/// object after a round trip through its typed struct): the fields serde
/// dropped because the struct has no such field, usually typos.
pub(super) fn dropped_fields(input: &Value, known: &Value, path: &Path, out: &mut Vec<Path>) {
    match (input, known) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                let name = match k {
                    Value::String(s) => s.clone(),
                    other => serde_yaml_ng::to_string(other)
                        .map(|s| s.trim().to_string())
                        .unwrap_or_default(),
                };
                match b.get(k).or_else(|| b.get(Value::String(name.clone()))) {
                    None => out.push(path.key(&name)),
                    Some(kv) => dropped_fields(v, kv, &path.key(&name), out),
                }
            }
        }
        (Value::Sequence(a), Value::Sequence(b)) => {
            for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                dropped_fields(x, y, &path.idx(i), out);
            }
        }
        (Value::Tagged(t), other) => dropped_fields(&t.value, other, path, out),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
      - name: a
        resources:
          requests:
            cpu: 1
      - name: b
        resources:
          requests:
            cpu: 1.5.3
";

    #[test]
    fn locates_nested_paths() {
        let p = Path::dotted("spec.template.spec.containers")
            .idx(1)
            .key("resources")
            .key("requests")
            .key("cpu");
        assert_eq!(locate(DOC, &p), Some((15, 12)));
        let p = Path::dotted("spec.template.spec.containers")
            .idx(0)
            .key("name");
        assert_eq!(locate(DOC, &p), Some((8, 8)));
        assert_eq!(locate(DOC, &Path::dotted("metadata.name")), Some((3, 2)));
        assert_eq!(locate(DOC, &Path::dotted("spec.nope")), None);
        assert_eq!(
            item_lines(DOC, &Path::dotted("spec.template.spec.containers")),
            vec![8, 12]
        );
    }

    #[test]
    fn splits_documents_with_lines() {
        let t = "a: 1\n---\nb: 2\n--- \n\nc: 3\n";
        let d = split_documents(t);
        assert_eq!(d.len(), 3);
        assert_eq!((d[1].line0, d[2].line0), (1, 3));
        assert_eq!(&t[d[2].offset..d[2].offset + 4], "--- ");
    }
}
