//! The command line as a new user meets it: the README's own command lines,
//! `explain` by pod or by workload with the pod anywhere on the line, prices
//! as people and JSON readers expect them, completions, man pages, and logs
//! without terminal colour codes when nobody is looking at a terminal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test, and its items serve only this test"
)]

use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_with(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nodewright"));
    cmd.current_dir(ROOT).args(args).env_remove("NO_COLOR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run nodewright");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run(args: &[&str]) -> Out {
    run_with(args, &[])
}

/// A miette report as one line: its box-drawing margin and line wraps removed.
fn flat(s: &str) -> String {
    s.replace(['│', '×'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `nodewright ...` lines of the README's shell blocks that take no
/// placeholders (`[...]`, `FILE`) and need no cluster.
fn readme_commands() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_sh = line.trim() == "```sh";
            continue;
        }
        // A trailing `# comment` is the shell's, not an argument.
        let l = line.split(" #").next().unwrap_or("").trim();
        if in_sh
            && (l.starts_with("nodewright plan") || l.starts_with("nodewright explain"))
            && !l.ends_with('\\')
            && !l.contains('[')
            && !l.contains("--watch")
        {
            out.push(l.split_whitespace().skip(1).map(String::from).collect());
        }
    }
    out
}

#[test]
fn the_readme_plan_and_explain_lines_run_as_written() {
    let cmds = readme_commands();
    let explains = cmds.iter().filter(|c| c[0] == "explain").count();
    assert!(explains >= 2, "README explain lines: {cmds:?}");
    for c in &cmds {
        let args: Vec<&str> = c.iter().map(String::as_str).collect();
        let o = run(&args);
        assert_eq!(o.code, 0, "nodewright {}\n{}", c.join(" "), o.stderr);
        assert!(!o.stdout.is_empty(), "nodewright {}", c.join(" "));
    }
}

/// `plan --pods` lists, under each node's row, exactly the pods the JSON
/// plan puts on that node; without the pod lines it is the plain table.
#[test]
fn plan_pods_lists_each_nodes_pods_under_its_row() {
    let base = [
        "plan",
        "--policy",
        "policies/default.policy",
        "--workload",
        "examples/web-and-batch.yaml",
    ];
    let j = run(&[&base[..], &["--output", "json"]].concat());
    assert_eq!(j.code, 0, "{}", j.stderr);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    // Table cells are clipped to 64 characters, the last one `…`.
    let clip = |s: &str| {
        if s.chars().count() > 64 {
            s.chars().take(63).chain(['…']).collect()
        } else {
            s.to_string()
        }
    };
    let want: Vec<(String, Vec<String>)> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let pods = n["pods"].as_array().unwrap();
            let pods = pods.iter().map(|p| clip(p.as_str().unwrap())).collect();
            (clip(n["name"].as_str().unwrap()), pods)
        })
        .collect();
    assert!(want.len() > 1, "{}", j.stdout);
    let t = run(&[&base[..], &["--pods"]].concat());
    assert_eq!(t.code, 0, "{}", t.stderr);
    // Node rows start at the margin, pod lines are indented; the node table
    // ends at the first blank line.
    let mut got: Vec<(String, Vec<String>)> = Vec::new();
    for line in t.stdout.lines().skip(1).take_while(|l| !l.is_empty()) {
        match line.strip_prefix("    ") {
            Some(pod) => got.last_mut().expect("a node row first").1.push(pod.into()),
            None => got.push((line.split_whitespace().next().unwrap().into(), vec![])),
        }
    }
    assert_eq!(got, want, "{}", t.stdout);
    let plain = run(&base);
    let without: Vec<&str> = t
        .stdout
        .lines()
        .filter(|l| !l.starts_with("    ") || l.starts_with("    - "))
        .collect();
    assert_eq!(without, plain.stdout.lines().collect::<Vec<_>>());
}

#[test]
fn explain_takes_the_pod_before_or_after_the_flags() {
    let flags = [
        "--policy",
        "policies/default.policy",
        "--workload",
        "examples/web-and-batch.yaml",
    ];
    let mut after = vec!["explain"];
    after.extend(flags);
    after.push("shop/redis-0");
    let mut before = vec!["explain", "shop/redis-0"];
    before.extend(flags);
    let a = run(&after);
    let b = run(&before);
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert_eq!(a.stdout, b.stdout);
    assert!(
        a.stdout.starts_with("shop/redis-0\n  placed on new node "),
        "{}",
        a.stdout
    );
}

#[test]
fn explain_groups_a_workloads_pods() {
    let o = run(&[
        "explain",
        "shop/Deployment/web",
        "--policy",
        "policies/default.policy",
        "--workload",
        "examples/web-and-batch.yaml",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let first = o.stdout.lines().next().unwrap();
    assert_eq!(first, "Deployment shop/web (12 pending pods)");
    let placed: usize = o
        .stdout
        .lines()
        .filter_map(|l| l.trim().split_once(" placed on "))
        .map(|(n, _)| n.parse::<usize>().unwrap())
        .sum();
    assert_eq!(placed, 12, "{}", o.stdout);
    // The bare name and the namespaced name find the same group.
    let bare = run(&[
        "explain",
        "web",
        "--policy",
        "policies/default.policy",
        "--workload",
        "examples/web-and-batch.yaml",
    ]);
    assert_eq!(bare.stdout, o.stdout);
}

#[test]
fn explain_names_what_it_could_not_find() {
    let o = run(&[
        "explain",
        "shop/nothing",
        "--policy",
        "policies/default.policy",
        "--workload",
        "examples/web-and-batch.yaml",
    ]);
    assert_eq!(o.code, 2);
    let e = flat(&o.stderr);
    assert!(
        e.contains("no pending pod or workload called shop/nothing"),
        "{e}"
    );
    assert!(e.contains("[namespace/][Kind/]name"), "{e}");
}

#[test]
fn nothing_to_launch_costs_zero_not_minus_zero() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.yaml");
    std::fs::write(
        &empty,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    )
    .unwrap();
    let w = empty.to_str().unwrap();
    let o = run(&[
        "plan",
        "--policy",
        "policies/default.policy",
        "--workload",
        w,
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("$0.0000/hour"), "{}", o.stdout);
    assert!(!o.stdout.contains("-0.0"), "{}", o.stdout);
    let j = run(&[
        "plan",
        "--policy",
        "policies/default.policy",
        "--workload",
        w,
        "--output",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["total_price_per_hour"].to_string(), "0.0");
}

#[test]
fn json_prices_carry_no_float_noise() {
    let o = run(&[
        "plan",
        "--policy",
        "policies/default.policy",
        "--workload",
        "examples/web-and-batch.yaml",
        "--output",
        "json",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let mut prices = vec![v["total_price_per_hour"].clone()];
    for n in v["nodes"].as_array().unwrap() {
        prices.push(n["price_per_hour"].clone());
        for opt in n["instance_type_options"].as_array().unwrap() {
            prices.push(opt["price_per_hour"].clone());
        }
    }
    assert!(prices.len() > 10);
    for p in prices {
        let text = p.to_string();
        let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
        assert!(decimals <= 6, "price {text} has {decimals} decimals");
    }
}

#[test]
fn completions_and_man_pages_come_from_the_parser() {
    for shell in ["bash", "zsh", "fish"] {
        let o = run(&["completions", shell]);
        assert_eq!(o.code, 0, "{shell}: {}", o.stderr);
        assert!(o.stdout.contains("nodewright"), "{shell}");
        assert!(o.stdout.contains("explain"), "{shell}");
        assert!(o.stdout.contains("workload"), "{shell}");
    }
    let man = run(&["man"]);
    assert_eq!(man.code, 0, "{}", man.stderr);
    assert!(man.stdout.starts_with(".ie") || man.stdout.contains(".TH nodewright"));
    let plan = run(&["man", "plan"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.contains(".TH nodewright-plan"),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("workload"));
    let bad = run(&["man", "nope"]);
    assert_eq!(bad.code, 2);
    let e = flat(&bad.stderr);
    assert!(e.contains("no subcommand called nope"), "{e}");
    assert!(e.contains("explain"), "the help lists the subcommands: {e}");
}

/// Every `--help` is the short form (one line a flag), lists the
/// subcommand's own flags before the global ones, and says what is true.
#[test]
fn every_help_is_short_and_lists_its_own_flags_first() {
    let subcommands: &[&[&str]] = &[
        &[],
        &["plan"],
        &["explain"],
        &["check"],
        &["fmt"],
        &["import"],
        &["catalog", "list"],
        &["catalog", "show"],
        &["ec2", "resolve"],
        &["bench"],
        &["controller"],
        &["completions"],
        &["man"],
        &["crds"],
    ];
    for sub in subcommands {
        let o = run(&[&sub[..], &["--help"]].concat());
        assert_eq!(o.code, 0, "{sub:?}: {}", o.stderr);
        let h = &o.stdout;
        // clap switches to the long form when a flag has multi-line help.
        assert!(!h.contains("see a summary with '-h'"), "{sub:?}:\n{h}");
        let global = h.find("Global options:").expect("a global heading");
        assert!(h[global..].contains("--log <LOG>"), "{sub:?}:\n{h}");
        if let Some(own) = h.find("\nOptions:") {
            assert!(own < global, "{sub:?}:\n{h}");
            assert!(!h[own..global].contains("--log"), "{sub:?}:\n{h}");
        }
    }
    let check = run(&["check", "--help"]);
    let cap = nodewright::policy::diag::MAX_RENDERED;
    assert!(
        check.stdout.contains(&format!("the first {cap} findings")),
        "{}",
        check.stdout
    );
}

#[test]
fn logs_have_no_colour_codes_off_a_terminal_and_json_on_request() {
    // A scoring script that prints: its output is an info log line.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.policy"),
        "pool general {\n  require karpenter.k8s.aws/instance-family in [m6i]\n}\nscore with \"talk.rhai\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("talk.rhai"),
        "fn score(c) {\n    print(\"scored \" + c.instance_type);\n    0.0\n}\n",
    )
    .unwrap();
    let policy = dir.path().join("p.policy");
    let args = [
        "--log",
        "info",
        "plan",
        "--policy",
        policy.to_str().unwrap(),
        "--workload",
        "examples/web-and-batch.yaml",
    ];
    // stderr is a pipe here: no ANSI escapes even without NO_COLOR.
    let o = run(&args);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr.contains("scored m6i."),
        "the script's log: {}",
        o.stderr
    );
    assert!(o.stderr.contains("INFO"), "{}", o.stderr);
    assert!(!o.stderr.contains('\u{1b}'), "{}", o.stderr);

    let mut json = vec!["--log-format", "json"];
    json.extend(args);
    let j = run(&json);
    assert_eq!(j.code, 0, "{}", j.stderr);
    let logs: Vec<serde_json::Value> = j
        .stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!logs.is_empty(), "{}", j.stderr);
    assert!(logs.iter().all(|l| l["level"] == "INFO"), "{logs:?}");
    assert!(
        logs.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("scored m6i."))),
        "{logs:?}"
    );
}

#[test]
fn a_policy_folder_of_karpenter_yaml_is_read_and_an_empty_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        format!("{ROOT}/tests/data/karpenter/examples/nodepools/general-purpose.yaml"),
        dir.path().join("general-purpose.yaml"),
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let o = run(&[
        "plan",
        "--policy",
        d,
        "--workload",
        "examples/web-and-batch.yaml",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!(
            "note: {d} holds no .policy files; reading its 1 Karpenter YAML file(s) instead"
        )),
        "{}",
        o.stderr
    );
    assert!(o.stdout.contains("general-purpose"), "{}", o.stdout);

    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("README.txt"), "nothing").unwrap();
    let e = empty.path().to_str().unwrap();
    let o = run(&[
        "plan",
        "--policy",
        e,
        "--workload",
        "examples/web-and-batch.yaml",
    ]);
    assert_eq!(o.code, 2);
    let err = flat(&o.stderr);
    assert!(
        err.contains(&format!(
            "{e} holds no .policy files and no Karpenter YAML (.yaml, .yml); it has: README.txt"
        )),
        "{err}"
    );
}

/// `check` on Karpenter YAML, or on a folder of it or of nothing, says so
/// and points to `import`, instead of a syntax error at `---` or "0 error(s)".
#[test]
fn check_names_yaml_and_empty_folders_instead_of_passing_them() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("pools");
    std::fs::create_dir(&yaml).unwrap();
    let pool = yaml.join("nodepool.yaml");
    std::fs::write(
        &pool,
        "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata: {name: general}\n",
    )
    .unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for p in [&yaml, &pool] {
        let o = run(&["check", p.to_str().unwrap()]);
        assert_eq!(o.code, 2, "{}", o.stderr);
        let e = flat(&o.stderr);
        assert!(e.contains("Karpenter YAML, not policy files"), "{e}");
        assert!(
            e.contains(&format!("nodewright import {}", p.display())),
            "{e}"
        );
    }
    let o = run(&["check", empty.to_str().unwrap()]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        flat(&o.stderr).contains("holds no .policy files"),
        "{}",
        o.stderr
    );
    // A folder of policies still checks as before.
    let ok = run(&["check", "policies/"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
}

#[test]
fn import_takes_a_folder_and_names_an_empty_one() {
    let dir = tempfile::tempdir().unwrap();
    // Karpenter's examples each define the same EC2NodeClass, so one per folder.
    let files = ["general-purpose.yaml"];
    std::fs::write(dir.path().join("README.md"), "not YAML: not read").unwrap();
    for f in files {
        std::fs::copy(
            format!("{ROOT}/tests/data/karpenter/examples/nodepools/{f}"),
            dir.path().join(f),
        )
        .unwrap();
    }
    let d = dir.path().to_str().unwrap();
    let folder = run(&["import", d]);
    assert_eq!(folder.code, 0, "{}", folder.stderr);
    let paths: Vec<String> = files.iter().map(|f| format!("{d}/{f}")).collect();
    let mut args = vec!["import"];
    args.extend(paths.iter().map(String::as_str));
    let listed = run(&args);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    // The folder stands for its YAML files: the same policy, header and all.
    assert_eq!(folder.stdout, listed.stdout);
    assert!(
        folder.stdout.contains("pool general-purpose"),
        "{}",
        folder.stdout
    );

    let empty = tempfile::tempdir().unwrap();
    let e = empty.path().to_str().unwrap();
    let o = run(&["import", e]);
    assert_eq!(o.code, 2);
    let err = flat(&o.stderr);
    assert!(
        err.contains(&format!("{e} holds no .yaml or .yml files")),
        "{err}"
    );
}
