//! The layers point one way: no module of `src/` names a module above it in the data flow.
//!
//! The order is the one `src/lib.rs` documents (text → AST → IR → plan → launch, then the
//! controller and the CLI around them). A module may use any module of a LOWER rank; modules
//! of the same rank are siblings and must not use each other. Any `crate::<module>` path in
//! code (comments and strings aside) counts, test modules included, so a test cannot quietly
//! pull a higher layer into a lower one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;

/// Rank of each top-level module: lower ranks are the foundations.
const LAYERS: &[(&str, u32)] = &[
    ("ir", 0),
    ("policy", 1),
    ("catalog", 1),
    ("workload", 1),
    ("import", 2),
    ("synth", 2),
    ("scoring", 3),
    ("solver", 4),
    ("reload", 4),
    ("cloud", 5),
    ("disrupt", 5),
    ("controller", 6),
    ("cli", 7),
];

fn rank(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

/// The code of a Rust source with comments and string literals blanked out, so that prose
/// such as "see `crate::cloud`" in a doc comment is not read as a dependency.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == b'\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if b[i..].starts_with(b"'\"'") || b[i..].starts_with(b"'\\\"'") {
            // a char literal holding a quote is not the start of a string
            let len = if b[i + 1] == b'\\' { 4 } else { 3 };
            i += len;
            out.push_str("' '");
        } else if b[i] == b'"' {
            i += 1;
            let mut lines = 0;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                if b.get(i) == Some(&b'\n') {
                    lines += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
            out.push_str(&"\n".repeat(lines));
        } else if b[i] == b'r' && b[i..].starts_with(b"r#\"") {
            let end = src[i + 3..].find("\"#").map_or(b.len(), |e| i + 3 + e + 2);
            i = end;
            out.push_str("\"\"");
        } else {
            let c = src[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Every `crate::<module>` the code names, with its line. A group such as
/// `use crate::{ir::{a, b}, solver}` (over several lines, as rustfmt writes it) names each
/// of its top-level items.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(rel) = code[from..].find("crate::") {
        let at = from + rel;
        from = at + "crate::".len();
        // `$crate::` and `other_crate::` are not this crate's paths.
        let before = code[..at].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let after = &code[from..];
        if let Some(group) = after.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                if item_start && depth == 0 && !c.is_whitespace() {
                    let name = ident(&group[i..]);
                    if !name.is_empty() {
                        found.push((line_of(from + 1 + i), name));
                        item_start = false;
                    }
                }
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    _ => {}
                }
            }
        } else {
            let name = ident(after);
            if !name.is_empty() {
                found.push((line_of(at), name));
            }
        }
    }
    found
}

fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn no_module_uses_a_module_above_it() {
    let mut files = Vec::new();
    walk(Path::new("src"), &mut files);
    files.sort();
    let mut upward = Vec::new();
    let mut unranked = Vec::new();
    for file in &files {
        let rel = file.strip_prefix("src").unwrap_or(file);
        let mut parts = rel.components();
        let first = parts
            .next()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            })
            .unwrap_or_default();
        if first == "lib" || first == "main" {
            continue; // the crate root and the binary sit above every layer
        }
        let Some(own) = rank(&first) else {
            unranked.push(first);
            continue;
        };
        let src =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (line, used) in crate_paths(&code_only(&src)) {
            if used == first || used.is_empty() {
                continue;
            }
            match rank(&used) {
                Some(r) if r < own => {}
                Some(_) => upward.push(format!(
                    "{}:{line}: `{first}` uses `crate::{used}`, which is not below it",
                    file.display()
                )),
                None => unranked.push(used),
            }
        }
    }
    unranked.sort();
    unranked.dedup();
    assert!(
        unranked.is_empty(),
        "modules with no place in the layer order (add them to LAYERS and to src/lib.rs): {unranked:?}"
    );
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn the_checker_sees_upward_imports() {
    // The scanner itself: a path in code counts, the same path in a comment or string does not.
    let src = "use crate::cloud::x;\n// crate::controller\nlet s = \"crate::cli\";\nuse crate::{\n    ir::{a, b},\n    solver,\n};\n$crate::policy\n";
    let found = crate_paths(&code_only(src));
    assert_eq!(
        found,
        [
            (1, "cloud".to_string()),
            (5, "ir".to_string()),
            (6, "solver".to_string())
        ]
    );
}
