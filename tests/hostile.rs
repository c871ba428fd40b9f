//! The hostile-input corpus: malformed, hostile and huge inputs run through the real binary.
//!
//! Every file under `tests/hostile/<area>/` is one case, run with the area's default command
//! unless one of its first five lines says `# run: <args>` (`{}` stands for the file):
//!
//! | area       | default command                                                         |
//! |------------|-------------------------------------------------------------------------|
//! | `policy`   | `nodewright check {}`                                                   |
//! | `workload` | `nodewright plan --policy examples/m5-on-demand.policy --workload {}`   |
//! | `import`   | `nodewright import {}`                                                  |
//!
//! Inputs too large to commit (long lines, 100k objects, thousands of pools) are generated
//! into a temporary folder by the functions at the end of this file and run the same way.
//!
//! For each case the runner asserts what must hold for any input: the process ends (a
//! watchdog kills it after [`WATCHDOG`], which only catches endless loops: it is no speed
//! bound), it does not panic (exit 101, "panicked at"), and it never prints the stand-in
//! secret of `tests/hostile/secret-token`. Exit code, stdout and stderr (clipped) are
//! snapshot-tested, so every located error and hint stays as reviewed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kills a case that has not finished by then: far above any case's real time in a debug
/// build on a slow machine, so only a hang trips it.
const WATCHDOG: Duration = Duration::from_secs(180);

/// The marker inside `tests/hostile/secret-token`: no output may ever contain it.
const SECRET_MARKER: &str = "NODEWRIGHT-STAND-IN-SECRET";

/// What one run printed, clipped for the snapshot.
const CLIP: usize = 3000;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args` from the repository root, with a hang watchdog. Output goes
/// to files, so a case that prints megabytes cannot block on a full pipe.
fn run(args: &[String]) -> Run {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let out = std::fs::File::create(&out_path).unwrap_or_else(|e| panic!("stdout file: {e}"));
    let err = std::fs::File::create(&err_path).unwrap_or_else(|e| panic!("stderr file: {e}"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_nodewright"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn nodewright: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap_or_else(|e| panic!("wait: {e}")) {
            break status;
        }
        if start.elapsed() > WATCHDOG {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`nodewright {}` still running after {WATCHDOG:?}: a hang",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    Run {
        code: status.code(),
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

/// Keeps the first `CLIP` bytes (on a character boundary) and says how much was cut.
fn clip(s: &str) -> String {
    if s.len() <= CLIP {
        return s.to_string();
    }
    let mut end = CLIP;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n… [{} more bytes]", &s[..end], s.len() - end)
}

/// The command a corpus file asks for: its `# run:` line, or its area's default.
fn command_for(area: &str, path: &Path) -> Vec<String> {
    let file = path.to_string_lossy().to_string();
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(2000)]).into_owned();
    let directive = head
        .lines()
        .take(5)
        .find_map(|l| l.trim_start_matches('\u{feff}').strip_prefix("# run:"))
        .map(str::to_string);
    let template = directive.unwrap_or_else(|| match area {
        "policy" => "check {}".to_string(),
        "workload" => "plan --policy examples/m5-on-demand.policy --workload {}".to_string(),
        "import" => "import {}".to_string(),
        other => panic!("unknown hostile area {other}"),
    });
    template
        .split_whitespace()
        .map(|a| a.replace("{}", &file))
        .collect()
}

/// Runs one case, checks the invariants, and returns the text to snapshot.
fn check_case(label: &str, args: &[String], tmp: Option<&Path>) -> String {
    let r = run(args);
    let all = format!("{}\n{}", r.stdout, r.stderr);
    assert_ne!(r.code, Some(101), "{label}: panicked:\n{}", clip(&r.stderr));
    assert!(
        r.code.is_some(),
        "{label}: killed by a signal:\n{}",
        clip(&r.stderr)
    );
    assert!(
        !all.contains("panicked at"),
        "{label}: panicked:\n{}",
        clip(&all)
    );
    assert!(
        !all.contains(SECRET_MARKER),
        "{label}: printed the content of a file that is not a policy or script"
    );
    let repo = std::env::current_dir()
        .map(|d| d.to_string_lossy().to_string())
        .unwrap_or_default();
    let scrub = |s: &str| {
        let s = match tmp {
            Some(t) => s.replace(&t.to_string_lossy().to_string(), "<tmp>"),
            None => s.to_string(),
        };
        if repo.is_empty() {
            s
        } else {
            s.replace(&repo, "<repo>")
        }
    };
    format!(
        "command: nodewright {}\nexit: {}\n--- stdout\n{}\n--- stderr\n{}",
        scrub(&args.join(" ")),
        r.code.unwrap_or(-1),
        clip(&scrub(&r.stdout)),
        clip(&scrub(&r.stderr)),
    )
}

fn corpus(area: &str) -> Vec<PathBuf> {
    let dir = format!("tests/hostile/{area}");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn run_area(area: &str) {
    let cases = corpus(area);
    assert!(!cases.is_empty(), "no cases under tests/hostile/{area}");
    for case in cases {
        let name = case
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let args = command_for(area, &case);
        let text = check_case(&name, &args, None);
        insta::assert_snapshot!(format!("{area}-{name}"), text);
    }
}

#[test]
fn hostile_policies() {
    run_area("policy");
}

#[test]
fn hostile_workloads() {
    run_area("workload");
}

#[test]
fn hostile_imports() {
    run_area("import");
}

/// One generated case: writes `files` into a fresh folder, runs `args` there (`{dir}` is
/// the folder), checks the invariants and snapshots the result under `name`.
fn generated(name: &str, files: &[(&str, Vec<u8>)], args: &[&str]) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    for (file, content) in files {
        let path = dir.path().join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{file}: {e}"));
        }
        // `{dir}` in a file stands for the folder too, so a case can name an absolute path
        // whose length does not depend on where the repository is checked out.
        let content = match std::str::from_utf8(content) {
            Ok(text) => text
                .replace("{dir}", &dir.path().to_string_lossy())
                .into_bytes(),
            Err(_) => content.clone(),
        };
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let d = dir.path().to_string_lossy().to_string();
    let args: Vec<String> = args.iter().map(|a| a.replace("{dir}", &d)).collect();
    let text = check_case(name, &args, Some(dir.path()));
    insta::assert_snapshot!(format!("generated-{name}"), text);
}

/// A pool the workload fits on, for the generated plan cases.
const M5_POOL: &str = "pool m5 {\n  require karpenter.sh/capacity-type in [on-demand]\n  require karpenter.k8s.aws/instance-family in [m5]\n}\n";

/// The command of the generated plan cases: `p.policy` and `w.yaml` in the case's folder.
const PLAN: &[&str] = &[
    "plan",
    "--policy",
    "{dir}/p.policy",
    "--workload",
    "{dir}/w.yaml",
];

/// One small Deployment, for the generated plan cases.
const WEB: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - name: web\n        image: web\n        resources: {requests: {cpu: 500m, memory: 1Gi}}\n";

#[test]
fn error_past_column_70000_in_a_policy() {
    let policy = format!(
        "pool p {{\n  label team = \"{}\" oops\n}}\n",
        "a".repeat(70_000)
    );
    generated(
        "long-line-policy",
        &[("p.policy", policy.into_bytes())],
        &["check", "{dir}/p.policy"],
    );
}

#[test]
fn error_past_column_70000_in_a_workload() {
    let yaml = format!(
        "{WEB}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: x, labels: {{a: \"{}\"}}}}\nspec: [oops\n",
        "b".repeat(70_000)
    );
    generated(
        "long-line-workload",
        &[("p.policy", M5_POOL.into()), ("w.yaml", yaml.into_bytes())],
        PLAN,
    );
}

#[test]
fn pool_name_of_100k_characters_in_the_plan_table() {
    let policy = M5_POOL.replacen("m5 {", &format!("{} {{", "p".repeat(100_000)), 1);
    generated(
        "long-pool-name",
        &[("p.policy", policy.into_bytes()), ("w.yaml", WEB.into())],
        PLAN,
    );
}

#[test]
fn hundred_thousand_ignored_objects() {
    let mut yaml = String::from(WEB);
    for i in 0..100_000 {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}, namespace: shop}}\ndata: {{k: v}}\n"
        ));
    }
    generated(
        "100k-configmaps",
        &[("p.policy", M5_POOL.into()), ("w.yaml", yaml.into_bytes())],
        PLAN,
    );
}

#[test]
fn twenty_thousand_policy_errors() {
    let mut policy = String::new();
    // Errors the checker finds, one per pool (a syntax error would stop the parse at the first).
    for i in 0..20_000 {
        policy.push_str(&format!("pool p{i} {{ weight w{i} }}\n"));
    }
    generated(
        "20k-errors",
        &[("p.policy", policy.into_bytes())],
        &["check", "{dir}/p.policy"],
    );
}

#[test]
fn twenty_thousand_duplicate_pools() {
    let policy = "pool dup { require kubernetes.io/arch in [amd64] }\n".repeat(20_000);
    generated(
        "20k-duplicate-pools",
        &[("p.policy", policy.into_bytes())],
        &["check", "{dir}/p.policy"],
    );
}

#[test]
fn thousand_pools_plan() {
    let mut policy = String::new();
    for i in 0..1_000 {
        policy.push_str(&format!(
            "pool p{i} {{\n  weight {}\n  require karpenter.k8s.aws/instance-family in [m5, c5, r5]\n  require karpenter.sh/capacity-type in [on-demand]\n}}\n",
            i % 100
        ));
    }
    generated(
        "1000-pools",
        &[("p.policy", policy.into_bytes()), ("w.yaml", WEB.into())],
        PLAN,
    );
}

#[test]
fn script_path_escaping_the_policy_folder() {
    // A stand-in for the service-account token, outside the policy folder and named by its
    // absolute path: the error must name the path, never print the file.
    let secret = std::fs::read("tests/hostile/secret-token")
        .unwrap_or_else(|e| panic!("tests/hostile/secret-token: {e}"));
    let policy = format!(
        "{}  score with \"{{dir}}/secret-token\"\n}}\n",
        M5_POOL.trim_end().trim_end_matches('}')
    );
    generated(
        "script-absolute-path",
        &[
            ("secret-token", secret),
            ("policies/p.policy", policy.into_bytes()),
            ("w.yaml", WEB.into()),
        ],
        &[
            "plan",
            "--policy",
            "{dir}/policies/p.policy",
            "--workload",
            "{dir}/w.yaml",
        ],
    );
}
