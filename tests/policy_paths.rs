//! Paths a policy names (`score with`) stay inside the policy file's folder,
//! and nothing but a `.rhai` script there is ever read as a script: `check`
//! and `plan` never print another file, such as a service-account token.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test, and its items serve only this test"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Stands in for a secret's content; it must never appear in any output.
const MARKER: &str = "MARKER-eyJhbGciOiJSUzI1NiIsImtpZCI6InNlY3JldCJ9";

fn nodewright(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nodewright"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run nodewright");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A folder `policies/` beside `secret/token`, the token holding [`MARKER`].
fn layout() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    let secret = dir.path().join("secret");
    std::fs::create_dir_all(&policies).expect("mkdir");
    std::fs::create_dir_all(&secret).expect("mkdir");
    let token = secret.join("token");
    std::fs::write(&token, format!("{MARKER}\n")).expect("write token");
    (dir, policies, token)
}

fn policy(dir: &Path, name: &str, script: &str) -> String {
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!(
            "pool a {{\n  require karpenter.sh/capacity-type in [on-demand]\n}}\n\nscore with \"{script}\"\n"
        ),
    )
    .expect("write policy");
    p.display().to_string()
}

/// `check` and `plan` both fail with `code`, at the `score with` string,
/// and neither prints the token.
fn assert_refused(policy: &str, code: &str, message: &str) {
    let (status, out) = nodewright(&["check", policy]);
    assert_eq!(status, 1, "{out}");
    assert!(!out.contains(MARKER), "check leaked the token:\n{out}");
    assert!(out.contains(code) && out.contains(message), "{out}");
    assert!(
        out.contains(":5:12: error"),
        "not at the path string:\n{out}"
    );
    assert!(out.contains("help:"), "{out}");
    let (status, out) = nodewright(&[
        "plan",
        "--policy",
        policy,
        "--workload",
        "examples/web-and-batch.yaml",
    ]);
    assert_ne!(status, 0, "{out}");
    assert!(!out.contains(MARKER), "plan leaked the token:\n{out}");
    assert!(out.contains(code), "{out}");
}

#[test]
fn absolute_script_path_is_refused() {
    let (_d, dir, token) = layout();
    let p = policy(&dir, "abs.policy", &token.display().to_string());
    assert_refused(&p, "policy::script-path", "is absolute");
}

#[test]
fn dotdot_out_of_the_folder_is_refused() {
    let (_d, dir, _token) = layout();
    let p = policy(&dir, "up.policy", "../secret/token");
    assert_refused(&p, "policy::script-path", "climbs out of the policy folder");
    // `..` that stays inside is fine as far as paths go (then: not a .rhai file).
    let p = policy(&dir, "inside.policy", "sub/../token");
    assert_refused(&p, "policy::not-a-script", "is not a `.rhai` script");
}

#[test]
fn a_file_that_is_not_a_rhai_script_is_never_read() {
    let (_d, dir, token) = layout();
    std::fs::copy(&token, dir.join("token")).expect("copy");
    let p = policy(&dir, "copy.policy", "token");
    assert_refused(&p, "policy::not-a-script", "is not a `.rhai` script");
}

#[cfg(unix)]
#[test]
fn a_link_out_of_the_folder_is_refused() {
    let (_d, dir, token) = layout();
    std::os::unix::fs::symlink(&token, dir.join("score.rhai")).expect("symlink");
    let p = policy(&dir, "link.policy", "score.rhai");
    assert_refused(&p, "policy::script-path", "leads outside the policy folder");
}

/// A `.rhai` file in the folder that is not UTF-8 is reported without its content.
#[test]
fn a_script_that_is_not_utf8_is_reported_without_its_content() {
    let (_d, dir, _token) = layout();
    let mut bytes = b"fn score(c) { 0 }\n// \xff ".to_vec();
    bytes.extend_from_slice(MARKER.as_bytes());
    std::fs::write(dir.join("bin.rhai"), bytes).expect("write");
    let p = policy(&dir, "bin.policy", "bin.rhai");
    let (status, out) = nodewright(&["check", &p]);
    assert_eq!(status, 1, "{out}");
    assert!(!out.contains(MARKER), "{out}");
    assert!(out.contains("script::io") && out.contains("UTF-8"), "{out}");
}

/// tests/scoring keeps copies of the shipped scripts (scripts must sit in
/// the policy's folder); they must stay identical to the shipped ones.
#[test]
fn scoring_fixtures_mirror_the_shipped_scripts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in [
        "prefer-graviton",
        "savings-plan",
        "no-spot-for-uninterruptible",
        "prefer-newest-generation",
    ] {
        let shipped = std::fs::read(root.join(format!("scripts/{name}.rhai"))).expect("shipped");
        let copy = std::fs::read(root.join(format!("tests/scoring/{name}.rhai"))).expect("copy");
        assert!(
            shipped == copy,
            "tests/scoring/{name}.rhai differs from scripts/{name}.rhai: copy it again"
        );
    }
}
