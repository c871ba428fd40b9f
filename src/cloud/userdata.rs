//! User data that bootstraps a node into the cluster with its labels, taints
//! (startup taints included) and kubelet settings.
//!
//! AL2023 reads a nodeadm `NodeConfig` from a MIME multi-part document;
//! AL2 runs `/etc/eks/bootstrap.sh` from a shell script part, with the kubelet
//! settings as `--kubelet-extra-args`; Bottlerocket reads TOML settings. A
//! node class's own user data is kept: for AL2023 and AL2 it becomes an
//! earlier MIME part (nodeadm merges NodeConfigs in order, so ours wins for
//! the fields we set; on AL2 the user's script runs before the bootstrap); for
//! Bottlerocket it is placed before our `[settings.kubernetes]` tables and
//! must not define them itself. A `Custom` AMI gets the node class's user data
//! exactly as written and nothing of ours: its image bootstraps itself.
//!
//! `instance-store-policy RAID0` turns the NVMe instance-store disks into one
//! RAID0 array for the kubelet, containerd and pod logs: nodeadm's
//! `localStorage` strategy on AL2023, `bootstrap.sh --local-disks raid0` on
//! AL2, `apiclient ephemeral-storage` bootstrap commands on Bottlerocket, and
//! nothing on Custom (the image's own user data decides).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::catalog::node_labels::{CLAIM_LABEL, is_offering_key, pool_labels};
use crate::ir::{KubeletConfig, Pool, Taint};

/// What every node needs to join the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct ClusterInfo {
    pub name: String,
    /// API server URL.
    pub endpoint: String,
    /// Base64 PEM of the cluster CA.
    pub ca_bundle: String,
    /// Service CIDR (`10.100.0.0/16`).
    pub service_cidr: String,
}

/// The node-specific part of the bootstrap.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodeBootstrap {
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub startup_taints: Vec<Taint>,
    pub kubelet: KubeletConfig,
    /// The node class's `instance-store-policy RAID0`: the instance's NVMe
    /// instance-store disks become one RAID0 array under the kubelet's,
    /// containerd's and the pod logs' directories (each family's own way).
    #[serde(skip_serializing_if = "is_false")]
    pub instance_store_raid0: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The labels a launch template's user data may carry: those of the
/// planned node that hold whatever EC2 picks among the fallback types
/// (the pool's labels, `karpenter.sh/nodepool`, `nodewright.io/pool`).
///
/// One template serves every instance type, and every subnet, of a
/// CreateFleet request, so a label naming the planned type, zone, capacity
/// type or any `karpenter.k8s.aws/instance-*` value would be wrong on a
/// fallback node. Those come from what EC2 launched instead
/// (`launcher::launched_labels`) and are applied when the Node registers.
/// Leaving them out also lets claims of one pool share one template.
pub fn bootstrap_labels(
    planned: &BTreeMap<String, String>,
    pool: &Pool,
) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = planned
        .iter()
        // The claim's own label differs per node: the controller writes it on
        // the Node, so one launch template (and one fleet) serves many claims.
        .filter(|(k, _)| !is_offering_key(k) && k.as_str() != CLAIM_LABEL)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    m.extend(pool_labels(pool));
    m
}

const BOUNDARY: &str = "//nodewright-boundary";

fn taint_json(t: &Taint) -> Value {
    let mut v = json!({"key": t.key, "effect": t.effect.as_str()});
    if let Some(val) = &t.value {
        v["value"] = json!(val);
    }
    v
}

fn kubelet_config_json(k: &KubeletConfig, taints: &[&Taint]) -> serde_json::Map<String, Value> {
    let mut c = serde_json::Map::new();
    if let Some(m) = k.max_pods {
        c.insert("maxPods".into(), json!(m));
    }
    if let Some(m) = k.pods_per_core {
        c.insert("podsPerCore".into(), json!(m));
    }
    if !k.cluster_dns.is_empty() {
        c.insert("clusterDNS".into(), json!(k.cluster_dns));
    }
    let q = |m: &BTreeMap<String, crate::ir::Quantity>| {
        Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), json!(v.to_string())))
                .collect(),
        )
    };
    if !k.kube_reserved.is_empty() {
        c.insert("kubeReserved".into(), q(&k.kube_reserved));
    }
    if !k.system_reserved.is_empty() {
        c.insert("systemReserved".into(), q(&k.system_reserved));
    }
    if !k.eviction_hard.is_empty() {
        c.insert("evictionHard".into(), json!(k.eviction_hard));
    }
    if !k.eviction_soft.is_empty() {
        c.insert("evictionSoft".into(), json!(k.eviction_soft));
    }
    if !k.eviction_soft_grace_period.is_empty() {
        let m: BTreeMap<&String, String> = k
            .eviction_soft_grace_period
            .iter()
            .map(|(s, d)| (s, d.to_string()))
            .collect();
        c.insert("evictionSoftGracePeriod".into(), json!(m));
    }
    if let Some(g) = k.eviction_max_pod_grace_period {
        c.insert("evictionMaxPodGracePeriod".into(), json!(g));
    }
    if let Some(p) = k.image_gc_high_threshold_percent {
        c.insert("imageGCHighThresholdPercent".into(), json!(p));
    }
    if let Some(p) = k.image_gc_low_threshold_percent {
        c.insert("imageGCLowThresholdPercent".into(), json!(p));
    }
    if let Some(b) = k.cpu_cfs_quota {
        c.insert("cpuCFSQuota".into(), json!(b));
    }
    if !taints.is_empty() {
        c.insert(
            "registerWithTaints".into(),
            Value::Array(taints.iter().map(|t| taint_json(t)).collect()),
        );
    }
    c
}

/// The AL2023 nodeadm user data (MIME multi-part), with `custom` as an earlier part.
pub fn al2023(cluster: &ClusterInfo, node: &NodeBootstrap, custom: Option<&str>) -> String {
    let taints: Vec<&Taint> = node.taints.iter().chain(&node.startup_taints).collect();
    let mut kubelet = json!({"config": kubelet_config_json(&node.kubelet, &taints)});
    if !node.labels.is_empty() {
        let labels = node
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        kubelet["flags"] = json!([format!("--node-labels={labels}")]);
    }
    let mut doc = json!({
        "apiVersion": "node.eks.aws/v1alpha1",
        "kind": "NodeConfig",
        "spec": {
            "cluster": {
                "name": cluster.name,
                "apiServerEndpoint": cluster.endpoint,
                "certificateAuthority": cluster.ca_bundle,
                "cidr": cluster.service_cidr,
            },
            "kubelet": kubelet,
        }
    });
    if node.instance_store_raid0 {
        // nodeadm's `spec.instance.localStorage.strategy` (amazon-eks-ami
        // nodeadm API, `LocalStorageRAID0`), as Karpenter's
        // pkg/providers/amifamily/bootstrap/nodeadm.go sets it.
        doc["spec"]["instance"] = json!({"localStorage": {"strategy": "RAID0"}});
    }
    let yaml = serde_yaml_ng::to_string(&doc).unwrap_or_default();
    let mut out =
        format!("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\n\n");
    if let Some(c) = custom.filter(|c| !c.trim().is_empty()) {
        let ctype = if c.trim_start().starts_with("#!") {
            "text/x-shellscript; charset=\"us-ascii\""
        } else {
            "application/node.eks.aws"
        };
        out.push_str(&format!(
            "--{BOUNDARY}\nContent-Type: {ctype}\n\n{}\n\n",
            c.trim_end()
        ));
    }
    out.push_str(&format!(
        "--{BOUNDARY}\nContent-Type: application/node.eks.aws\n\n{yaml}\n--{BOUNDARY}--\n"
    ));
    out
}

/// A shell word in single quotes (`'` written as `'\''`).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The kubelet flags that carry a node's labels, taints and kubelet settings on
/// AL2, where bootstrap.sh passes `--kubelet-extra-args` to the kubelet as is.
fn kubelet_flags(node: &NodeBootstrap) -> Vec<String> {
    let k = &node.kubelet;
    let mut f = Vec::new();
    let join = |m: &BTreeMap<String, String>, sep: &str| {
        m.iter()
            .map(|(k, v)| format!("{k}{sep}{v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    if !node.labels.is_empty() {
        f.push(format!("--node-labels={}", join(&node.labels, "=")));
    }
    let taints: Vec<String> = node
        .taints
        .iter()
        .chain(&node.startup_taints)
        .map(|t| match &t.value {
            Some(v) => format!("{}={v}:{}", t.key, t.effect.as_str()),
            None => format!("{}:{}", t.key, t.effect.as_str()),
        })
        .collect();
    if !taints.is_empty() {
        f.push(format!("--register-with-taints={}", taints.join(",")));
    }
    if let Some(m) = k.max_pods {
        f.push(format!("--max-pods={m}"));
    }
    if let Some(m) = k.pods_per_core {
        f.push(format!("--pods-per-core={m}"));
    }
    let q = |m: &BTreeMap<String, crate::ir::Quantity>| {
        m.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    if !k.kube_reserved.is_empty() {
        f.push(format!("--kube-reserved={}", q(&k.kube_reserved)));
    }
    if !k.system_reserved.is_empty() {
        f.push(format!("--system-reserved={}", q(&k.system_reserved)));
    }
    if !k.eviction_hard.is_empty() {
        f.push(format!("--eviction-hard={}", join(&k.eviction_hard, "<")));
    }
    if !k.eviction_soft.is_empty() {
        f.push(format!("--eviction-soft={}", join(&k.eviction_soft, "<")));
    }
    if !k.eviction_soft_grace_period.is_empty() {
        let m: BTreeMap<String, String> = k
            .eviction_soft_grace_period
            .iter()
            .map(|(s, d)| (s.clone(), d.to_string()))
            .collect();
        f.push(format!("--eviction-soft-grace-period={}", join(&m, "=")));
    }
    if let Some(g) = k.eviction_max_pod_grace_period {
        f.push(format!("--eviction-max-pod-grace-period={g}"));
    }
    if let Some(p) = k.image_gc_high_threshold_percent {
        f.push(format!("--image-gc-high-threshold={p}"));
    }
    if let Some(p) = k.image_gc_low_threshold_percent {
        f.push(format!("--image-gc-low-threshold={p}"));
    }
    if let Some(b) = k.cpu_cfs_quota {
        f.push(format!("--cpu-cfs-quota={b}"));
    }
    f
}

/// The AL2 user data: a MIME multi-part document whose last part runs
/// `/etc/eks/bootstrap.sh`, with `custom` (a shell script) as an earlier part.
pub fn al2(cluster: &ClusterInfo, node: &NodeBootstrap, custom: Option<&str>) -> String {
    let mut cmd = format!(
        "/etc/eks/bootstrap.sh {} --apiserver-endpoint {} --b64-cluster-ca {}",
        sh_quote(&cluster.name),
        sh_quote(&cluster.endpoint),
        sh_quote(&cluster.ca_bundle)
    );
    if let Some(dns) = node.kubelet.cluster_dns.first() {
        cmd.push_str(&format!(" \\\n  --dns-cluster-ip {}", sh_quote(dns)));
    } else if !cluster.service_cidr.is_empty() {
        cmd.push_str(&format!(
            " \\\n  --service-ipv4-cidr {}",
            sh_quote(&cluster.service_cidr)
        ));
    }
    if node.kubelet.max_pods.is_some() {
        // Our --max-pods below, not bootstrap.sh's ENI-based table.
        cmd.push_str(" \\\n  --use-max-pods false");
    }
    let flags = kubelet_flags(node);
    if !flags.is_empty() {
        cmd.push_str(&format!(
            " \\\n  --kubelet-extra-args {}",
            sh_quote(&flags.join(" "))
        ));
    }
    if node.instance_store_raid0 {
        // bootstrap.sh's own RAID0 setup, after the kubelet flags as in
        // Karpenter's pkg/providers/amifamily/bootstrap/eksbootstrap.go.
        cmd.push_str(" \\\n  --local-disks raid0");
    }
    let mut out =
        format!("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\n\n");
    if let Some(c) = custom.filter(|c| !c.trim().is_empty()) {
        out.push_str(&format!(
            "--{BOUNDARY}\nContent-Type: text/x-shellscript; charset=\"us-ascii\"\n\n{}\n\n",
            c.trim_end()
        ));
    }
    out.push_str(&format!(
        "--{BOUNDARY}\nContent-Type: text/x-shellscript; charset=\"us-ascii\"\n\n#!/bin/bash\nset -euo pipefail\n{cmd}\n\n--{BOUNDARY}--\n"
    ));
    out
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                o.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The Bottlerocket TOML settings, after `custom` when given.
pub fn bottlerocket(cluster: &ClusterInfo, node: &NodeBootstrap, custom: Option<&str>) -> String {
    let mut o = String::new();
    if let Some(c) = custom.filter(|c| !c.trim().is_empty()) {
        o.push_str(c.trim_end());
        o.push_str("\n\n");
    }
    let k = &node.kubelet;
    o.push_str("[settings.kubernetes]\n");
    o.push_str(&format!("cluster-name = {}\n", toml_str(&cluster.name)));
    o.push_str(&format!("api-server = {}\n", toml_str(&cluster.endpoint)));
    o.push_str(&format!(
        "cluster-certificate = {}\n",
        toml_str(&cluster.ca_bundle)
    ));
    if let Some(m) = k.max_pods {
        o.push_str(&format!("max-pods = {m}\n"));
    }
    if let Some(dns) = k.cluster_dns.first() {
        o.push_str(&format!("cluster-dns-ip = {}\n", toml_str(dns)));
    }
    if let Some(b) = k.cpu_cfs_quota {
        o.push_str(&format!("cpu-cfs-quota-enforced = {b}\n"));
    }
    if let Some(p) = k.image_gc_high_threshold_percent {
        o.push_str(&format!("image-gc-high-threshold-percent = {p}\n"));
    }
    if let Some(p) = k.image_gc_low_threshold_percent {
        o.push_str(&format!("image-gc-low-threshold-percent = {p}\n"));
    }
    let table = |o: &mut String, name: &str, entries: Vec<(String, String)>| {
        if entries.is_empty() {
            return;
        }
        o.push_str(&format!("\n[settings.kubernetes.{name}]\n"));
        for (k, v) in entries {
            o.push_str(&format!("{} = {}\n", toml_str(&k), v));
        }
    };
    table(
        &mut o,
        "node-labels",
        node.labels
            .iter()
            .map(|(k, v)| (k.clone(), toml_str(v)))
            .collect(),
    );
    let mut taints: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for t in node.taints.iter().chain(&node.startup_taints) {
        let v = format!("{}:{}", t.value.as_deref().unwrap_or(""), t.effect.as_str());
        taints.entry(&t.key).or_default().push(toml_str(&v));
    }
    table(
        &mut o,
        "node-taints",
        taints
            .into_iter()
            .map(|(k, vs)| (k.to_string(), format!("[{}]", vs.join(", "))))
            .collect(),
    );
    let q = |m: &BTreeMap<String, crate::ir::Quantity>| {
        m.iter()
            .map(|(k, v)| (k.clone(), toml_str(&v.to_string())))
            .collect()
    };
    table(&mut o, "kube-reserved", q(&k.kube_reserved));
    table(&mut o, "system-reserved", q(&k.system_reserved));
    let s =
        |m: &BTreeMap<String, String>| m.iter().map(|(k, v)| (k.clone(), toml_str(v))).collect();
    table(&mut o, "eviction-hard", s(&k.eviction_hard));
    table(&mut o, "eviction-soft", s(&k.eviction_soft));
    if node.instance_store_raid0 {
        // Bottlerocket (1.22+) builds the array and binds the directories with
        // `apiclient ephemeral-storage`, run as a bootstrap command: the same
        // key, commands, mode and `essential` as Karpenter's
        // pkg/providers/amifamily/bootstrap/bottlerocket.go. A node class's own
        // TOML must not define this table too.
        o.push_str(BOTTLEROCKET_RAID0);
    }
    o
}

/// The Bottlerocket settings for `instance-store-policy RAID0`.
const BOTTLEROCKET_RAID0: &str = "\n[settings.bootstrap-commands.000-mount-instance-storage]\n\
commands = [[\"apiclient\", \"ephemeral-storage\", \"init\"], [\"apiclient\", \"ephemeral-storage\", \"bind\", \"--dirs\", \"/var/lib/containerd\", \"/var/lib/kubelet\", \"/var/log/pods\"]]\n\
mode = \"always\"\n\
essential = true\n";

/// The user data for an AMI family (AL2023 unless Bottlerocket).
pub fn for_family(
    family: &str,
    cluster: &ClusterInfo,
    node: &NodeBootstrap,
    custom: Option<&str>,
) -> String {
    if family.eq_ignore_ascii_case("bottlerocket") {
        bottlerocket(cluster, node, custom)
    } else if family.eq_ignore_ascii_case("al2") {
        al2(cluster, node, custom)
    } else if family.eq_ignore_ascii_case("custom") {
        // A custom image bootstraps itself from exactly what the user wrote.
        custom.unwrap_or_default().to_string()
    } else {
        al2023(cluster, node, custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::TaintEffect;

    fn sample() -> (ClusterInfo, NodeBootstrap) {
        let cluster = ClusterInfo {
            name: "demo".into(),
            endpoint: "https://api.demo".into(),
            ca_bundle: "Q0E=".into(),
            service_cidr: "10.100.0.0/16".into(),
        };
        let mut node = NodeBootstrap::default();
        node.labels.insert("team".into(), "platform".into());
        node.labels
            .insert("karpenter.sh/nodepool".into(), "general".into());
        node.taints.push(Taint {
            key: "dedicated".into(),
            value: Some("infra".into()),
            effect: TaintEffect::NoSchedule,
        });
        node.startup_taints.push(Taint {
            key: "node.cilium.io/agent-not-ready".into(),
            value: None,
            effect: TaintEffect::NoExecute,
        });
        node.kubelet.max_pods = Some(58);
        node.kubelet
            .eviction_hard
            .insert("memory.available".into(), "100Mi".into());
        (cluster, node)
    }

    fn raid0() -> (ClusterInfo, NodeBootstrap) {
        let (c, mut n) = sample();
        n.instance_store_raid0 = true;
        (c, n)
    }

    #[test]
    fn raid0_al2023_sets_the_local_storage_strategy() {
        let (c, n) = raid0();
        let ud = al2023(&c, &n, None);
        let yaml = ud
            .split(&format!("--{BOUNDARY}"))
            .nth(1)
            .and_then(|p| p.split_once("\n\n"))
            .map(|x| x.1)
            .unwrap_or("");
        assert!(
            yaml.contains("  instance:\n    localStorage:\n      strategy: RAID0\n"),
            "{yaml}"
        );
        let doc: serde_json::Value = serde_yaml_ng::from_str(yaml).expect("YAML");
        assert_eq!(doc["spec"]["instance"]["localStorage"]["strategy"], "RAID0");
        let (c, n) = sample();
        assert!(!al2023(&c, &n, None).contains("localStorage"));
    }

    #[test]
    fn raid0_al2_passes_local_disks() {
        let (c, n) = raid0();
        let ud = al2(&c, &n, None);
        assert!(ud.contains(" \\\n  --local-disks raid0\n"), "{ud}");
        let (c, n) = sample();
        assert!(!al2(&c, &n, None).contains("--local-disks"));
    }

    #[test]
    fn raid0_bottlerocket_runs_ephemeral_storage_commands() {
        let (c, n) = raid0();
        let ud = bottlerocket(&c, &n, None);
        let want = [
            "[settings.bootstrap-commands.000-mount-instance-storage]",
            r#"commands = [["apiclient", "ephemeral-storage", "init"], ["apiclient", "ephemeral-storage", "bind", "--dirs", "/var/lib/containerd", "/var/lib/kubelet", "/var/log/pods"]]"#,
            r#"mode = "always""#,
            "essential = true",
        ];
        let lines: Vec<&str> = ud.lines().collect();
        let at = lines
            .iter()
            .position(|l| *l == want[0])
            .unwrap_or_else(|| panic!("no bootstrap command in {ud}"));
        assert_eq!(&lines[at..], &want[..], "{ud}");
        let (c, n) = sample();
        assert!(!bottlerocket(&c, &n, None).contains("bootstrap-commands"));
    }

    #[test]
    fn raid0_custom_is_passed_as_written() {
        let (c, n) = raid0();
        let mine = "#!/bin/bash\necho mine\n";
        assert_eq!(for_family("Custom", &c, &n, Some(mine)), mine);
    }

    #[test]
    fn al2023_nodeconfig() {
        let (c, n) = sample();
        let ud = al2023(&c, &n, Some("#!/bin/bash\necho hi"));
        let parts: Vec<&str> = ud.split(&format!("--{BOUNDARY}")).collect();
        // preamble, custom, ours, closing
        assert_eq!(parts.len(), 4, "{ud}");
        assert!(parts[1].contains("text/x-shellscript"));
        let yaml = parts[2].split_once("\n\n").map(|x| x.1).unwrap_or("");
        let doc: serde_json::Value = serde_yaml_ng::from_str(yaml).expect("NodeConfig is YAML");
        assert_eq!(doc["kind"], "NodeConfig");
        assert_eq!(doc["spec"]["cluster"]["name"], "demo");
        let cfg = &doc["spec"]["kubelet"]["config"];
        assert_eq!(cfg["maxPods"], 58);
        assert_eq!(cfg["evictionHard"]["memory.available"], "100Mi");
        assert_eq!(
            cfg["registerWithTaints"].as_array().map(|a| a.len()),
            Some(2)
        );
        assert_eq!(
            cfg["registerWithTaints"][1]["key"],
            "node.cilium.io/agent-not-ready"
        );
        assert_eq!(
            doc["spec"]["kubelet"]["flags"][0],
            "--node-labels=karpenter.sh/nodepool=general,team=platform"
        );
    }

    #[test]
    fn bottlerocket_toml() {
        let (c, n) = sample();
        let ud = bottlerocket(&c, &n, None);
        assert!(ud.contains("cluster-name = \"demo\"\n"), "{ud}");
        assert!(ud.contains("max-pods = 58\n"));
        assert!(ud.contains(
            "[settings.kubernetes.node-labels]\n\"karpenter.sh/nodepool\" = \"general\"\n"
        ));
        assert!(ud.contains("\"dedicated\" = [\"infra:NoSchedule\"]"));
        assert!(ud.contains("\"node.cilium.io/agent-not-ready\" = [\":NoExecute\"]"));
        assert!(
            ud.contains("[settings.kubernetes.eviction-hard]\n\"memory.available\" = \"100Mi\"")
        );
    }

    /// The full documents, reviewed by eye once and pinned.
    #[test]
    fn documents_are_stable() {
        let (c, n) = sample();
        insta::assert_snapshot!("al2023_user_data", al2023(&c, &n, None));
        insta::assert_snapshot!("bottlerocket_user_data", bottlerocket(&c, &n, None));
        insta::assert_snapshot!("al2_user_data", al2(&c, &n, None));
    }

    #[test]
    fn al2_runs_bootstrap_with_kubelet_flags() {
        let (c, mut n) = sample();
        n.labels.insert("quote".into(), "it's".into());
        let ud = al2(&c, &n, Some("#!/bin/bash\necho first"));
        let parts: Vec<&str> = ud.split(&format!("--{BOUNDARY}")).collect();
        assert_eq!(parts.len(), 4, "{ud}");
        assert!(
            parts[1].contains("echo first"),
            "the user's script runs first"
        );
        assert!(parts[2].contains("/etc/eks/bootstrap.sh 'demo' --apiserver-endpoint 'https://api.demo' --b64-cluster-ca 'Q0E='"), "{ud}");
        assert!(
            parts[2].contains("--service-ipv4-cidr '10.100.0.0/16'"),
            "{ud}"
        );
        assert!(parts[2].contains("--use-max-pods false"), "{ud}");
        assert!(parts[2].contains("--kubelet-extra-args '--node-labels=karpenter.sh/nodepool=general,quote=it'\\''s,team=platform --register-with-taints=dedicated=infra:NoSchedule,node.cilium.io/agent-not-ready:NoExecute --max-pods=58 --eviction-hard=memory.available<100Mi'"), "{ud}");
        // No nodeadm config on AL2.
        assert!(!ud.contains("NodeConfig"));
    }

    #[test]
    fn custom_user_data_is_passed_as_written() {
        let (c, n) = sample();
        let mine = "#!/bin/bash\n/opt/my-bootstrap --cluster demo\n";
        assert_eq!(for_family("Custom", &c, &n, Some(mine)), mine);
        assert_eq!(for_family("Custom", &c, &n, None), "");
        assert!(for_family("AL2", &c, &n, None).contains("/etc/eks/bootstrap.sh"));
        assert!(for_family("AL2023", &c, &n, None).contains("kind: NodeConfig"));
        assert!(for_family("Bottlerocket", &c, &n, None).starts_with("[settings.kubernetes]"));
    }

    /// The labels that differ between the fallback types of one launch stay
    /// out of the user data; the pool's stay in.
    #[test]
    fn user_data_carries_only_labels_common_to_every_fallback() {
        use crate::catalog::node_labels::node_labels;
        use crate::catalog::{CapacityType, Catalog};
        let cat = Catalog::embedded().unwrap_or_else(|e| panic!("catalog: {e}"));
        let pool = Pool {
            name: "general".into(),
            weight: 0,
            requirement_terms: vec![],
            requirements: Default::default(),
            limits: Default::default(),
            labels: [("team".to_string(), "platform".to_string())].into(),
            taints: vec![],
            startup_taints: vec![],
            tags: Default::default(),
            node_class: "default".into(),
            kubelet: Default::default(),
            disruption: Default::default(),
            scripts: vec![],
            origin: None,
        };
        let o = cat
            .offering_for("m5.large", "us-east-1a", CapacityType::Spot)
            .unwrap_or_else(|| panic!("m5.large"));
        let planned = node_labels(&cat, &pool, &o);
        assert_eq!(
            planned
                .get("node.kubernetes.io/instance-type")
                .map(String::as_str),
            Some("m5.large")
        );
        let (c, mut n) = sample();
        n.labels = bootstrap_labels(&planned, &pool);
        let want: BTreeMap<String, String> = [
            ("karpenter.sh/nodepool", "general"),
            ("nodewright.io/pool", "general"),
            ("team", "platform"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(n.labels, want);
        for ud in [al2023(&c, &n, None), bottlerocket(&c, &n, None)] {
            for bad in [
                "instance-type",
                "m5.large",
                "us-east-1a",
                "spot",
                "instance-family",
                "kubernetes.io/arch",
            ] {
                assert!(!ud.contains(bad), "{bad} in\n{ud}");
            }
            assert!(ud.contains("nodewright.io/pool"), "{ud}");
        }
    }

    #[test]
    fn toml_escapes() {
        assert_eq!(toml_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }
}
