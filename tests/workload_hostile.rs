//! Hostile and huge workload input: every class is a located error with a
//! hint (file:line:col, message and help asserted), or is read in time
//! proportional to its size. The CLI-level corpus is tests/hostile/workload/.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "test code: a failed unwrap is a failed test"
)]

use nodewright::workload::{self, ErrorKind, LoadOptions};

/// The error `text` is rejected with, as (kind, "line:col", message, help),
/// after checking that its report renders (long lines used to panic miette).
fn rejected(text: &str, opts: &LoadOptions) -> (ErrorKind, String, String, String) {
    rejected_bytes(text.as_bytes(), opts)
}

fn rejected_bytes(bytes: &[u8], opts: &LoadOptions) -> (ErrorKind, String, String, String) {
    let err = match workload::load_bytes("w.yaml", bytes, opts) {
        Ok(_) => panic!("loaded, but should have been rejected"),
        Err(e) => e,
    };
    let input = err
        .input()
        .unwrap_or_else(|| panic!("not located: {err:?}"));
    let mut rendered = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .render_report(&mut rendered, &err)
        .expect("the report renders");
    let place = format!("{}:{}", input.line, input.col);
    assert!(
        rendered.contains(&format!("[w.yaml:{place}]")),
        "{rendered}"
    );
    assert!(rendered.contains("here"), "{rendered}");
    (
        input.kind,
        place,
        input.message.clone(),
        input.help.clone().unwrap_or_default(),
    )
}

fn deployment(name: &str, replicas: &str, labels: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: shop
spec:
  replicas: {replicas}
  template:
    metadata:
      labels:
        app: {name}{labels}
    spec:
      containers:
      - name: app
        image: x
        resources:
          requests: {{cpu: 100m}}
"
    )
}

fn job(fields: &str) -> String {
    format!(
        "apiVersion: batch/v1
kind: Job
metadata:
  name: crunch
spec:
{fields}  template:
    spec:
      restartPolicy: Never
      containers:
      - name: c
        image: x
"
    )
}

fn pods(w: &workload::Workload) -> usize {
    w.classes.iter().map(|c| c.count()).sum()
}

#[test]
fn negative_counts_are_errors_at_the_field() {
    let opts = LoadOptions::default();
    let (kind, place, msg, help) = rejected(&deployment("web", "-5", ""), &opts);
    assert_eq!(kind, ErrorKind::Value);
    assert_eq!(place, "7:3");
    assert_eq!(
        msg,
        "Deployment shop/web: spec.replicas is -5, and a count cannot be negative"
    );
    assert!(help.contains("use 0 to plan no pods"), "{help}");
    for (fields, line, field) in [
        ("  parallelism: -2\n", "6:3", "spec.parallelism is -2"),
        (
            "  parallelism: 3\n  completions: -1\n",
            "7:3",
            "spec.completions is -1",
        ),
    ] {
        let (kind, place, msg, _) = rejected(&job(fields), &opts);
        assert_eq!((kind, place.as_str()), (ErrorKind::Value, line));
        assert!(
            msg.starts_with(&format!("Job default/crunch: {field}")),
            "{msg}"
        );
    }
    let sts = deployment("db", "2", "")
        .replace("kind: Deployment", "kind: StatefulSet")
        .replace(
            "  replicas: 2\n",
            "  replicas: 2\n  ordinals: {start: -1}\n",
        );
    let (_, place, msg, _) = rejected(&sts, &opts);
    assert_eq!(place, "8:3");
    assert!(msg.contains("spec.ordinals.start is -1"), "{msg}");
}

#[test]
fn counts_past_the_ceiling_are_errors_at_the_object() {
    let opts = LoadOptions::default();
    let (kind, place, msg, help) = rejected(&deployment("web", "2147483647", ""), &opts);
    assert_eq!((kind, place.as_str()), (ErrorKind::Limit, "7:3"));
    assert_eq!(
        msg,
        "Deployment shop/web: spec.replicas = 2147483647 asks for 2147483647 pods, more than the limit of 1000000 pods per plan"
    );
    assert!(help.contains("--max-pods"), "{help}");
    let (_, place, msg, _) = rejected(&job("  parallelism: 2147483647\n"), &opts);
    assert_eq!(place, "6:3");
    assert!(
        msg.contains("spec.parallelism = 2147483647 asks for"),
        "{msg}"
    );
    // completions below parallelism: completions is what asks.
    let small = LoadOptions {
        max_pods: 10,
        ..Default::default()
    };
    let (_, place, msg, _) = rejected(&job("  parallelism: 100\n  completions: 50\n"), &small);
    assert_eq!(place, "7:3");
    assert!(
        msg.contains("spec.completions = 50 asks for 50 pods"),
        "{msg}"
    );
    // A huge completions with a small parallelism runs few pods at once: fine.
    let ok = workload::load_text(
        "w.yaml",
        &job("  parallelism: 2\n  completions: 2147483647\n"),
        &small,
    )
    .expect("loads");
    assert_eq!(pods(&ok.workload), 2);
}

#[test]
fn the_ceiling_counts_every_object_and_is_configurable() {
    let text = format!(
        "{}---\n{}",
        deployment("a", "6", ""),
        deployment("b", "5", "")
    );
    let opts = LoadOptions {
        max_pods: 10,
        ..Default::default()
    };
    let (kind, place, msg, _) = rejected(&text, &opts);
    assert_eq!((kind, place.as_str()), (ErrorKind::Limit, "25:3"));
    assert_eq!(
        msg,
        "Deployment shop/b: spec.replicas = 5 brings the plan to 11 pods, more than the limit of 10 pods per plan"
    );
    let opts = LoadOptions {
        max_pods: 11,
        ..Default::default()
    };
    let w = workload::load_text("w.yaml", &text, &opts)
        .expect("loads")
        .workload;
    assert_eq!(pods(&w), 11);
}

#[test]
fn a_replicas_override_past_the_ceiling_names_the_override() {
    let mut opts = LoadOptions::default();
    opts.replicas.insert("web".into(), 20_000_000);
    let (kind, place, msg, _) = rejected(&deployment("web", "3", ""), &opts);
    assert_eq!((kind, place.as_str()), (ErrorKind::Limit, "7:3"));
    assert_eq!(
        msg,
        "Deployment shop/web: --replicas web=20000000 asks for 20000000 pods, more than the limit of 1000000 pods per plan"
    );
}

#[test]
fn the_same_object_twice_names_both_places() {
    let text = format!(
        "{}---\n{}",
        deployment("web", "2", ""),
        deployment("web", "3", "")
    );
    let (kind, place, msg, help) = rejected(&text, &LoadOptions::default());
    assert_eq!((kind, place.as_str()), (ErrorKind::Duplicate, "22:3"));
    assert_eq!(
        msg,
        "Deployment shop/web is given twice: here and at w.yaml:4:3"
    );
    assert!(help.contains("remove one of them"), "{help}");
    // Same name, other namespace or kind: two objects.
    let other = format!(
        "{}---\n{}",
        deployment("web", "2", ""),
        deployment("web", "3", "").replace("namespace: shop", "namespace: prod")
    );
    let w = workload::load_text("w.yaml", &other, &LoadOptions::default()).expect("loads");
    assert_eq!(pods(&w.workload), 5);
}

#[test]
fn labels_kubernetes_rejects_are_errors() {
    let opts = LoadOptions::default();
    let (kind, place, msg, help) =
        rejected(&deployment("web", "1", "\n        \"bad key!\": x"), &opts);
    assert_eq!((kind, place.as_str()), (ErrorKind::Label, "12:9"));
    assert_eq!(
        msg,
        "spec.template.metadata.labels: `bad key!` is not a valid label key: the name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
    );
    assert!(help.contains("app.kubernetes.io/name"), "{help}");
    let (_, place, msg, help) = rejected(
        &deployment("web", "1", &format!("\n        tier: {}", "v".repeat(64))),
        &opts,
    );
    assert_eq!(place, "12:9");
    assert!(
        msg.contains("is not a valid label value: a value must be no more than 63 characters"),
        "{msg}"
    );
    assert!(help.contains("label value"), "{help}");
    // nodeSelector, selectors and topology keys follow the same rules.
    let with_spec = |extra: &str| {
        deployment("web", "1", "").replace(
            "      containers:\n",
            &format!("{extra}      containers:\n"),
        )
    };
    for (extra, place, path) in [
        (
            "      nodeSelector: {\"disk type\": ssd}\n",
            "13:7",
            "spec.template.spec.nodeSelector: `disk type`",
        ),
        (
            "      nodeSelector:\n        disk: \"-ssd\"\n",
            "14:9",
            "spec.template.spec.nodeSelector: `-ssd` is not a valid label value",
        ),
        (
            "      topologySpreadConstraints:\n      - maxSkew: 1\n        topologyKey: \"zone!\"\n        whenUnsatisfiable: DoNotSchedule\n        labelSelector: {matchLabels: {app: web}}\n",
            "15:9",
            "spec.template.spec.topologySpreadConstraints[0].topologyKey: `zone!`",
        ),
        (
            "      topologySpreadConstraints:\n      - maxSkew: 1\n        topologyKey: zone\n        whenUnsatisfiable: DoNotSchedule\n        labelSelector:\n          matchLabels: {\"a b\": web}\n",
            "18:11",
            "spec.template.spec.topologySpreadConstraints[0].labelSelector.matchLabels: `a b`",
        ),
        (
            "      affinity:\n        nodeAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n            nodeSelectorTerms:\n            - matchExpressions:\n              - {key: \"/zone\", operator: Exists}\n",
            "18:15",
            "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key: `/zone`",
        ),
    ] {
        let (kind, at, msg, _) = rejected(&with_spec(extra), &opts);
        assert_eq!(kind, ErrorKind::Label, "{msg}");
        assert!(msg.starts_with(path), "{msg}");
        assert_eq!(at, place, "{msg}");
    }
}

#[test]
fn invalid_utf8_is_located_at_the_first_bad_byte() {
    let mut bytes = deployment("web", "1", "").into_bytes();
    let at = bytes
        .windows(8)
        .position(|w| w == b"image: x")
        .expect("image line")
        + 7;
    bytes[at] = 0xe9;
    let (kind, place, msg, help) = rejected_bytes(&bytes, &LoadOptions::default());
    assert_eq!((kind, place.as_str()), (ErrorKind::Encoding, "15:16"));
    assert_eq!(msg, "not UTF-8 text: byte 0xe9 is not valid UTF-8");
    assert!(help.contains("save the file as UTF-8"), "{help}");
}

#[test]
fn a_byte_order_mark_is_accepted_and_columns_ignore_it() {
    let text = format!("\u{feff}{}", deployment("web", "2", ""));
    let w =
        workload::load_bytes("w.yaml", text.as_bytes(), &LoadOptions::default()).expect("loads");
    assert_eq!(pods(&w.workload), 2);
    let w = workload::load_text("w.yaml", &text, &LoadOptions::default()).expect("loads");
    assert_eq!(pods(&w.workload), 2);
    let bad = format!("\u{feff}{}", deployment("web", "-1", ""));
    let (_, place, _, _) = rejected(&bad, &LoadOptions::default());
    assert_eq!(place, "7:3");
    // A mark anywhere else is content, as YAML says.
    let (kind, _, _, _) = rejected("a: 1\n\u{feff}b: 2\n", &LoadOptions::default());
    assert_eq!(kind, ErrorKind::Yaml);
}

#[test]
fn nul_bytes_are_located() {
    let text = deployment("web", "1", "").replace("image: x", "image: x\0y");
    let (kind, place, msg, help) = rejected(&text, &LoadOptions::default());
    assert_eq!((kind, place.as_str()), (ErrorKind::Yaml, "15:17"));
    assert_eq!(msg, "invalid YAML: control characters are not allowed");
    assert!(help.contains("NUL"), "{help}");
}

#[test]
fn an_alias_bomb_is_stopped_at_its_first_alias() {
    let mut text = String::from(
        "apiVersion: v1\nkind: ConfigMap\na: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n",
    );
    let mut prev = 'a';
    for c in 'b'..='i' {
        let refs = vec![format!("*{prev}"); 9].join(",");
        text.push_str(&format!("{c}: &{c} [{refs}]\n"));
        prev = c;
    }
    let (kind, place, msg, help) = rejected(&text, &LoadOptions::default());
    assert_eq!((kind, place.as_str()), (ErrorKind::Limit, "4:8"));
    assert_eq!(
        msg,
        "YAML aliases here expand to too much data (an alias bomb?)"
    );
    assert!(help.contains("aliases"), "{help}");
}

#[test]
fn deep_nesting_is_a_located_error_not_a_stack_overflow() {
    for depth in [200, 10_000, 1_000_000] {
        let text = format!(
            "apiVersion: v1\nkind: ConfigMap\nx: {}{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let (kind, place, msg, _) = rejected(&text, &LoadOptions::default());
        // At the 129th bracket, found before the parser runs (libyaml takes
        // O(depth²) on deep flow nesting: minutes at 100,000).
        assert_eq!(
            (kind, place.as_str()),
            (ErrorKind::Limit, "3:132"),
            "{depth}"
        );
        assert_eq!(msg, "YAML nested too deeply (more than 128 levels)");
    }
    let mut block = String::from("apiVersion: v1\nkind: ConfigMap\nx:\n");
    for i in 0..1000 {
        block.push_str(&format!("{}- \n", " ".repeat(i)));
    }
    let (kind, _, _, _) = rejected(&block, &LoadOptions::default());
    assert_eq!(kind, ErrorKind::Limit);
}

#[test]
fn an_error_past_column_65535_renders_a_clipped_snippet() {
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nx: [{}}}\n",
        "lol, ".repeat(20_000)
    );
    let (kind, place, _, _) = rejected(&text, &LoadOptions::default());
    assert_eq!((kind, place.as_str()), (ErrorKind::Yaml, "3:100005"));
    let err = workload::load_text("w.yaml", &text, &LoadOptions::default()).expect_err("bad");
    let snippet = err.input().expect("located").src.text().to_string();
    assert!(snippet.len() < 1000, "{}", snippet.len());
    assert!(snippet.contains("…lol, lol"), "{snippet}");
}

/// Generated case: 20,000 ConfigMaps, as `kubectl get all -o yaml` lists
/// them, each skipped with a note at its own line (the note's position used
/// to cost a rescan of the file: quadratic; benches/workload.rs times 100k).
#[test]
fn skipped_objects_are_noted_at_their_lines() {
    let n = 20_000;
    let mut list = String::from("apiVersion: v1\nkind: List\nitems:\n");
    let mut docs = String::new();
    for i in 0..n {
        list.push_str(&format!(
            "- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: cm-{i}\n"
        ));
        docs.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\n"
        ));
    }
    for (text, first, step) in [(&list, 4, 4), (&docs, 2, 5)] {
        let loaded = workload::load_text("all.yaml", text, &LoadOptions::default()).expect("loads");
        assert_eq!(loaded.notes.len(), n);
        for i in [0, 1, n / 2, n - 1] {
            let note = &loaded.notes[i];
            assert_eq!(note.line, first + step * i, "{note}");
            assert!(
                note.message
                    .starts_with(&format!("ConfigMap cm-{i} ignored")),
                "{note}"
            );
        }
    }
}

/// Generated case: a List of 20,000 Pods whose last item is invalid is read
/// to the end and rejected there, with the item's own line.
#[test]
fn a_bad_last_item_of_a_long_list_is_located() {
    let n = 20_000;
    let mut list = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for i in 0..n {
        list.push_str(&format!(
            "- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: cm-{i}\n"
        ));
    }
    list.push_str("- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: p\n    labels: {\"bad key!\": x}\n  spec:\n    containers: [{name: c, image: x}]\n");
    let (kind, place, msg, _) = rejected(&list, &LoadOptions::default());
    assert_eq!(kind, ErrorKind::Label);
    assert_eq!(place, format!("{}:5", 3 + 4 * n + 5));
    assert!(msg.starts_with("metadata.labels: `bad key!`"), "{msg}");
}

#[test]
fn the_controller_path_has_no_pod_ceiling() {
    // API objects are one pod each, admitted by the API server already.
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {"containers": [{"name": "c", "image": "x"}]}
    }))
    .expect("pod");
    let objs = workload::ApiObjects {
        pods: vec![pod],
        ..Default::default()
    };
    let loaded = workload::load_api("cluster", objs).expect("loads");
    assert_eq!(pods(&loaded.workload), 1);
}
