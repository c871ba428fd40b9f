//! A bounded fuzzer for the workload loader that runs in every `cargo test`
//! (cargo-fuzz needs nightly; `fuzz/fuzz_targets/load_workload.rs` is the
//! unbounded one). Random bytes, and real workload files mutated byte by
//! byte and chunk by chunk, go through `workload::load_bytes`: the loader
//! must return (a workload or an error), never panic, and every error it
//! returns must render.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::PathBuf;

use nodewright::workload::{self, LoadOptions};
use proptest::prelude::*;

/// Seeds: the loader's own fixtures and the examples.
fn seeds() -> Vec<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["tests/workload/ok", "tests/workload/err", "examples"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if p.extension().is_some_and(|e| e == "yaml")
                && let Ok(b) = std::fs::read(&p)
            {
                out.push(b);
            }
        }
    }
    assert!(out.len() >= 5, "seed files missing");
    out
}

/// One edit of a file.
#[derive(Debug, Clone)]
enum Edit {
    /// Overwrite the byte at (fraction of the length) with this byte.
    Set(f64, u8),
    Insert(f64, Vec<u8>),
    Delete(f64, usize),
    /// Copy a chunk to another place (duplicates keys, objects, indentation).
    Copy(f64, usize, f64),
}

fn edit() -> impl Strategy<Value = Edit> {
    let interesting = prop::sample::select(vec![
        b"-".to_vec(),
        b": ".to_vec(),
        b"\n".to_vec(),
        b"\n---\n".to_vec(),
        b"  ".to_vec(),
        b"\t".to_vec(),
        b"*a".to_vec(),
        b"&a ".to_vec(),
        b"[".to_vec(),
        b"{".to_vec(),
        b"\"".to_vec(),
        b"\0".to_vec(),
        b"\xff".to_vec(),
        b"\xef\xbb\xbf".to_vec(),
        b"2147483647".to_vec(),
        b"-5".to_vec(),
        b"99999999999999999999".to_vec(),
        b"bad key!".to_vec(),
        b"kind: List\nitems:\n- ".to_vec(),
        b"1.5.3".to_vec(),
        "é…".as_bytes().to_vec(),
    ]);
    prop_oneof![
        (0.0..1.0f64, any::<u8>()).prop_map(|(p, b)| Edit::Set(p, b)),
        (0.0..1.0f64, interesting).prop_map(|(p, b)| Edit::Insert(p, b)),
        (0.0..1.0f64, prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(p, b)| Edit::Insert(p, b)),
        (0.0..1.0f64, 1usize..64).prop_map(|(p, n)| Edit::Delete(p, n)),
        (0.0..1.0f64, 1usize..400, 0.0..1.0f64).prop_map(|(a, n, b)| Edit::Copy(a, n, b)),
    ]
}

fn at(bytes: &[u8], f: f64) -> usize {
    ((bytes.len() as f64) * f) as usize
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        match e {
            Edit::Set(p, b) => {
                let i = at(&bytes, *p);
                if i < bytes.len() {
                    bytes[i] = *b;
                }
            }
            Edit::Insert(p, b) => {
                let i = at(&bytes, *p);
                bytes.splice(i..i, b.iter().copied());
            }
            Edit::Delete(p, n) => {
                let i = at(&bytes, *p);
                let end = (i + n).min(bytes.len());
                bytes.drain(i..end);
            }
            Edit::Copy(from, n, to) => {
                let i = at(&bytes, *from);
                let end = (i + n).min(bytes.len());
                let chunk = bytes[i..end].to_vec();
                let j = at(&bytes, *to);
                bytes.splice(j..j, chunk);
            }
        }
    }
    bytes
}

/// Loads `bytes`; an error must be located or one of the unlocated kinds,
/// and must render.
fn check(bytes: &[u8]) {
    // A low ceiling: a mutated `replicas: 12` → `12222222` must not spend
    // the test's time making a million names.
    let opts = LoadOptions {
        max_pods: 5_000,
        ..Default::default()
    };
    if let Err(err) = workload::load_bytes("fuzz.yaml", bytes, &opts) {
        let mut out = String::new();
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .render_report(&mut out, &err)
            .unwrap_or_else(|e| panic!("the error does not render: {e}"));
        if let Some(input) = err.input() {
            assert!(input.line >= 1 && input.col >= 1, "{err}");
            assert!(
                input.line <= bytes.split(|&b| b == b'\n').count() + 1,
                "{err}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_workloads_never_panic(seed in any::<prop::sample::Index>(), edits in prop::collection::vec(edit(), 1..6)) {
        let seeds = seeds();
        let bytes = apply(seeds[seed.index(seeds.len())].clone(), &edits);
        check(&bytes);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes);
    }

    #[test]
    fn random_yamlish_text_never_panics(text in "([a-zA-Z:{}\\[\\],\\-*&!|>'\" \n#]|apiVersion: v1\n|kind: Pod\n|kind: List\n|items:\n|spec:\n|---\n){0,80}") {
        check(text.as_bytes());
    }
}
