//! Finds the line of a field in block-style YAML, for errors found after
//! deserializing (cross-field checks), when serde no longer knows positions.
//!
//! Best effort by design: it follows indentation of block mappings and
//! sequences (what Karpenter manifests use) and, when a step cannot be
//! followed (flow style, anchors), returns the deepest node it did find.

/// One path step: a mapping key, or `#N` for the N-th (0-based) sequence item.
///
/// Returns the byte range (relative to `text`) of the value when it is a
/// scalar on the key's line, else of the key, or `None` when not even the first
/// step was found.
pub(super) fn locate(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    let lines: Vec<(usize, &str)> = {
        let mut off = 0;
        text.split_inclusive('\n')
            .map(|l| {
                let r = (off, l.trim_end_matches(['\n', '\r']));
                off += l.len();
                r
            })
            .collect()
    };
    let mut range = 0..lines.len();
    let mut found = None;
    for seg in path {
        // The first content line in range sets the column of its direct children.
        let Some(first) = range.clone().find(|&i| content(lines[i].1)) else {
            return found;
        };
        if let Some(idx) = seg.strip_prefix('#') {
            let idx: usize = idx.parse().ok()?;
            let dash = indent(lines[first].1);
            if !lines[first].1[dash..].starts_with('-') {
                return found;
            }
            let items: Vec<usize> = range
                .clone()
                .filter(|&i| {
                    let l = lines[i].1;
                    content(l) && indent(l) == dash && is_dash(&l[dash..])
                })
                .collect();
            let Some(&start) = items.get(idx) else {
                return found;
            };
            let end = next_at_or_below(&lines, start + 1, range.end, dash, true);
            found = Some((lines[start].0 + dash, 1));
            range = start..end;
        } else {
            let col = key_col(lines[first].1);
            let hit = range.clone().find(|&i| {
                let l = lines[i].1;
                content(l) && key_col(l) == col && key_of(&l[col..]) == Some(seg)
            });
            let Some(i) = hit else { return found };
            let (off, l) = lines[i];
            let after = &l[col + seg.len()..];
            let value_rel = after.find(':').map(|c| c + 1).and_then(|c| {
                let v = &after[c..];
                let t = v.trim_start();
                let t = t.split(" #").next().unwrap_or(t).trim_end();
                (!t.is_empty() && !t.starts_with(['|', '>'])).then(|| {
                    (
                        col + seg.len() + c + (v.len() - v.trim_start().len()),
                        t.len(),
                    )
                })
            });
            found = Some(match value_rel {
                Some((rel, len)) => (off + rel, len),
                None => (off + col, seg.len()),
            });
            let end = next_at_or_below(&lines, i + 1, range.end, col, false);
            // The key's children: from the key line (its value may be a nested
            // sequence starting on the next line) to the next sibling.
            range = (i + 1)..end;
        }
    }
    found
}

/// The byte ranges (relative to `text`) of the items of the block sequence
/// at `path`, each from the start of its `-` line to the start of the next
/// item (so [`locate`] works on the slice); empty when the
/// sequence is not found or is not in block style. One pass over the lines,
/// so a NodePool with thousands of requirements is located in linear time.
pub(super) fn items(text: &str, path: &[&str]) -> Vec<(usize, usize)> {
    let lines = lines_of(text);
    let Some(range) = node_lines(&lines, path) else {
        return Vec::new();
    };
    let Some(first) = range.clone().find(|&i| content(lines[i].1)) else {
        return Vec::new();
    };
    let dash = indent(lines[first].1);
    if !is_dash(&lines[first].1[dash..]) {
        return Vec::new();
    }
    let starts: Vec<usize> = range
        .clone()
        .filter(|&i| {
            let l = lines[i].1;
            content(l) && indent(l) == dash && is_dash(&l[dash..])
        })
        .collect();
    let end_of_range = lines.get(range.end).map_or(text.len(), |&(off, _)| off);
    starts
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let start = lines[i].0;
            let end = starts.get(k + 1).map_or(end_of_range, |&j| lines[j].0);
            (start, end.max(start))
        })
        .collect()
}

/// The direct keys of the block mapping at `path`, each with the byte range
/// (relative to `text`) of the key itself, in one pass (a NodePool with
/// thousands of labels is located in linear time). Empty when not found.
pub(super) fn keys(text: &str, path: &[&str]) -> Vec<(String, (usize, usize))> {
    let lines = lines_of(text);
    let Some(range) = node_lines(&lines, path) else {
        return Vec::new();
    };
    let Some(first) = range.clone().find(|&i| content(lines[i].1)) else {
        return Vec::new();
    };
    let col = key_col(lines[first].1);
    range
        .filter_map(|i| {
            let (off, l) = lines[i];
            if !content(l) || key_col(l) != col || indent(l) != col {
                return None;
            }
            let k = key_of(&l[col..])?;
            let at = l[col..].find(k).map_or(col, |p| col + p);
            Some((k.to_string(), (off + at, k.len().max(1))))
        })
        .collect()
}

/// The lines of `text` as (byte offset, line without its break).
fn lines_of(text: &str) -> Vec<(usize, &str)> {
    let mut off = 0;
    text.split_inclusive('\n')
        .map(|l| {
            let r = (off, l.trim_end_matches(['\n', '\r']));
            off += l.len();
            r
        })
        .collect()
}

/// The line range of the children of the mapping key at `path` (block style only).
fn node_lines(lines: &[(usize, &str)], path: &[&str]) -> Option<std::ops::Range<usize>> {
    let mut range = 0..lines.len();
    for seg in path {
        let first = range.clone().find(|&i| content(lines[i].1))?;
        let col = key_col(lines[first].1);
        let i = range.clone().find(|&i| {
            let l = lines[i].1;
            content(l) && key_col(l) == col && key_of(&l[col..]) == Some(seg)
        })?;
        let end = next_at_or_below(lines, i + 1, range.end, col, false);
        range = (i + 1)..end;
    }
    Some(range)
}

fn content(l: &str) -> bool {
    let t = l.trim();
    !t.is_empty() && !t.starts_with('#')
}

fn indent(l: &str) -> usize {
    l.len() - l.trim_start_matches(' ').len()
}

fn is_dash(s: &str) -> bool {
    s == "-" || s.starts_with("- ")
}

/// Column of the first key on the line, after any `- ` sequence markers.
fn key_col(l: &str) -> usize {
    let mut c = indent(l);
    while is_dash(&l[c..]) {
        c += 1;
        c += l[c..].len() - l[c..].trim_start_matches(' ').len();
    }
    c
}

fn key_of(s: &str) -> Option<&str> {
    let colon = s.find(':')?;
    let k = s[..colon].trim();
    Some(k.trim_matches(|c| c == '"' || c == '\''))
}

/// First line index in `from..end` that ends the node at column `col`: the
/// next sequence item (`dash`) or the next sibling or parent key.
fn next_at_or_below(
    lines: &[(usize, &str)],
    from: usize,
    end: usize,
    col: usize,
    dash: bool,
) -> usize {
    (from..end)
        .find(|&i| {
            let l = lines[i].1;
            if !content(l) {
                return false;
            }
            let ind = indent(l);
            if dash {
                ind <= col
            } else {
                // A compact sequence (`key:` then `- item` at the same column) is a child.
                ind < col || (ind == col && !is_dash(&l[ind..]))
            }
        })
        .unwrap_or(end)
}

#[cfg(test)]
mod tests {
    use super::locate;

    const Y: &str = "apiVersion: karpenter.sh/v1\nkind: NodePool\nspec:\n  template:\n    spec:\n      requirements:\n        - key: a\n          operator: In\n        - key: b\n          operator: Gt\n          values: [\"x\"]\n      nodeClassRef:\n        kind: Foo # c\n";

    fn at(path: &[&str]) -> String {
        let (o, l) = locate(Y, path).expect("found");
        Y[o..o + l].to_string()
    }

    #[test]
    fn follows_mappings_and_sequences() {
        assert_eq!(at(&["kind"]), "NodePool");
        assert_eq!(
            at(&["spec", "template", "spec", "nodeClassRef", "kind"]),
            "Foo"
        );
        assert_eq!(
            at(&["spec", "template", "spec", "requirements", "#1", "operator"]),
            "Gt"
        );
        assert_eq!(
            at(&["spec", "template", "spec", "requirements", "#0", "key"]),
            "a"
        );
        assert_eq!(
            at(&["spec", "template", "spec", "requirements", "#1", "values"]),
            "[\"x\"]"
        );
        assert_eq!(at(&["spec", "template"]), "template");
    }

    #[test]
    fn items_of_a_block_sequence() {
        let items = super::items(Y, &["spec", "template", "spec", "requirements"]);
        assert_eq!(items.len(), 2);
        let second = &Y[items[1].0..items[1].1];
        assert!(second.trim_start().starts_with("- key: b"), "{second:?}");
        assert!(second.ends_with("values: [\"x\"]\n"), "{second:?}");
        let (o, l) = locate(second, &["operator"]).expect("operator");
        assert_eq!(&second[o..o + l], "Gt");
        assert!(super::items(Y, &["spec", "nope"]).is_empty());
        assert!(super::items(Y, &["kind"]).is_empty());
    }

    #[test]
    fn keys_of_a_block_mapping() {
        let y = "metadata:\n  labels:\n    team: a\n    \"x.io/y\": b\n  name: n\n";
        let keys = super::keys(y, &["metadata", "labels"]);
        let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["team", "x.io/y"]);
        let (o, l) = keys[1].1;
        assert_eq!(&y[o..o + l], "x.io/y");
        assert!(super::keys(y, &["spec"]).is_empty());
    }

    #[test]
    fn falls_back_to_deepest_found() {
        assert_eq!(at(&["spec", "template", "nope"]), "template");
        assert_eq!(locate(Y, &["nope"]), None);
        assert_eq!(
            at(&["spec", "template", "spec", "requirements", "#7"]),
            "requirements"
        );
    }
}
