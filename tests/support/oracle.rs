//! The scheduler oracle: the real kube-scheduler judges a plan.
//!
//! Shared by `examples/verify-plan.rs` and `tests/oracle.rs` (both include it
//! with `#[path]`, beside `tests/support/kube.rs` as the module `kube`).
//!
//! For one input (policy, workload, existing nodes, catalog) it plans as
//! `nodewright plan` does, then on a real control plane (etcd, kube-apiserver,
//! kube-scheduler from `$NODEWRIGHT_KUBE_BIN`; no kubelet, no controller-manager):
//!
//! 1. creates every planned node as a Ready Node with the plan's labels,
//!    taints and allocatable, plus a unique pin taint
//!    `nodewright.io/pin=<node>:NoSchedule` (existing nodes as written, pinned too);
//! 2. creates the workload's PriorityClasses, StorageClasses, PVs and PVCs as
//!    written, the DaemonSets' pods on every new node they select (as the
//!    DaemonSet controller would: pinned by `matchFields metadata.name`), and
//!    every planned pod from its template, named as the plan names it, with one
//!    extra toleration: its planned node's pin. Nothing else changes, so
//!    spread, affinity, resources, host ports and volume zones are judged by
//!    kube-scheduler as in a real cluster (spread domains ignore taints unless
//!    a pod says `nodeTaintsPolicy: Honor`: such a pod is "not checkable");
//! 3. plays the PV controller and provisioner (binds claims, provisions a
//!    zonal PV for a `WaitForFirstConsumer` claim once the scheduler picks a node);
//! 4. waits until every pod is bound, else reports each pending pod with the
//!    scheduler's `FailedScheduling` message;
//! 5. for every pod the plan calls unschedulable (but not for a pool limit),
//!    creates a lone node of each of up to [`SAMPLE`] offerings its pools allow
//!    (those whose labels and zone the pod accepts first, the biggest first)
//!    and checks that kube-scheduler refuses the pod there too (a pod it
//!    accepts is a refusal of the plan).
//!
//! Pods are created in the workload's order. `N/M pods bound` counts the
//! planned pods and the DaemonSet pods on new nodes.
#![allow(
    dead_code,
    reason = "the example and the test each use part of this module"
)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Event, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use nodewright::catalog::Catalog;
use nodewright::ir::PolicySet;
use nodewright::solver::{Plan, SolveInput};
use nodewright::workload::{PodClass, Workload};

use crate::kube::KubeApi;

/// The pin taint's key: `nodewright.io/pin=<node>:NoSchedule` on every node.
pub const PIN: &str = "nodewright.io/pin";
/// The zone label the EBS CSI driver's node plugin puts on every node.
pub const EBS_ZONE: &str = "topology.ebs.csi.aws.com/zone";
/// How long every pod gets to be bound.
pub const BIND_TIMEOUT: Duration = Duration::from_secs(120);
/// Offerings tried per unschedulable pod in the second direction.
pub const SAMPLE: usize = 3;
/// How long a lone-node probe waits for the scheduler's verdict.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The inputs of one check, as `nodewright plan` takes them.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub policy: Vec<PathBuf>,
    pub workload: Vec<PathBuf>,
    pub nodes: Vec<PathBuf>,
    /// None = the embedded catalog; else a catalog JSON file.
    pub catalog: Option<PathBuf>,
    /// Replica overrides (`--replicas NAME=N`), as the plan tests give them.
    pub replicas: BTreeMap<String, u32>,
}

/// A loaded input: what the solver reads, and the Kubernetes objects the
/// pods are made from (empty for a workload given as IR only).
pub struct Prepared {
    pub policy: PolicySet,
    pub catalog: Catalog,
    pub workload: Workload,
    /// Every document of the workload and nodes files (List items unpacked).
    pub objects: Vec<Value>,
}

impl Prepared {
    /// Loads `inputs` the way `nodewright plan` does.
    pub fn load(inputs: &Inputs) -> Result<Prepared, String> {
        let (mut policy, warnings) = nodewright::import::load_policy_set(&inputs.policy)
            .map_err(|e| format!("policy {:?}: {e:?}", inputs.policy))?;
        let _ = warnings;
        policy.sort_pools();
        let opts = nodewright::workload::LoadOptions {
            replicas: inputs.replicas.clone(),
            ..Default::default()
        };
        let files: Vec<PathBuf> = inputs
            .workload
            .iter()
            .chain(inputs.nodes.iter())
            .cloned()
            .collect();
        let loaded = nodewright::workload::load(&files, &opts)
            .map_err(|e| format!("workload {files:?}: {e:?}"))?;
        let catalog = match &inputs.catalog {
            None => nodewright::catalog::embedded().map_err(|e| format!("catalog: {e}"))?,
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| format!("{p:?}: {e}"))?;
                serde_json::from_str(&text).map_err(|e| format!("{p:?}: {e}"))?
            }
        };
        let mut objects = Vec::new();
        for f in &files {
            objects.extend(read_objects(f)?);
        }
        Ok(Prepared {
            policy,
            catalog,
            workload: loaded.workload,
            objects,
        })
    }

    /// The plan, as `nodewright plan` makes it (scoring scripts included).
    pub fn plan(&self) -> Plan {
        let scorer = if nodewright::policy::scripts(&self.policy).is_empty() {
            None
        } else {
            Some(
                nodewright::scoring::build_scorer(&self.policy)
                    .unwrap_or_else(|e| panic!("scoring scripts: {e:?}")),
            )
        };
        nodewright::solver::solve(&SolveInput {
            policy: &self.policy,
            catalog: &self.catalog,
            workload: &self.workload,
            scorer: scorer
                .as_ref()
                .map(|s| s as &dyn nodewright::scoring::Scorer),
            unavailable: None,
        })
    }
}

/// Every object of a YAML file (multi-document; `kind: List` unpacked).
pub fn read_objects(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path:?}: {e}"))?;
    parse_objects(&text).map_err(|e| format!("{path:?}: {e}"))
}

/// Every object of a YAML text (multi-document; `kind: List` unpacked).
pub fn parse_objects(text: &str) -> Result<Vec<Value>, String> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).map_err(|e| e.to_string())?;
        push_object(v, &mut out);
    }
    Ok(out)
}

fn push_object(v: Value, out: &mut Vec<Value>) {
    if v.is_null() {
        return;
    }
    if v["kind"].as_str().is_some_and(|k| k.ends_with("List"))
        && let Some(items) = v["items"].as_array()
    {
        for i in items {
            push_object(i.clone(), out);
        }
        return;
    }
    out.push(v);
}

/// A pod kube-scheduler did not put where the plan says.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// `namespace/name`.
    pub pod: String,
    /// The planned node (or, in the second direction, the lone node that took it).
    pub node: String,
    /// The scheduler's `FailedScheduling` message, or what happened instead.
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}: {}", self.pod, self.node, self.message)
    }
}

/// What the oracle found.
#[derive(Debug, Default)]
pub struct Report {
    /// Pods created for binding (planned pods and DaemonSet pods) and bound as planned.
    pub bound: usize,
    pub total: usize,
    pub refused: Vec<Refusal>,
    /// Pods the pin cannot judge (`nodeTaintsPolicy: Honor`), with why.
    pub not_checkable: Vec<String>,
    /// Unschedulable pods checked in the second direction, and lone nodes tried.
    pub unschedulable_checked: usize,
    pub probes: usize,
}

impl Report {
    /// The one summary line: `N/M pods bound; K refused: …`.
    pub fn summary(&self) -> String {
        let list = if self.refused.is_empty() {
            "none".to_string()
        } else {
            self.refused
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" | ")
        };
        let mut s = format!(
            "{}/{} pods bound; {} refused: {list}",
            self.bound,
            self.total,
            self.refused.len()
        );
        if !self.not_checkable.is_empty() {
            s.push_str(&format!(
                "; {} not checkable: {}",
                self.not_checkable.len(),
                self.not_checkable.join(" | ")
            ));
        }
        if self.unschedulable_checked > 0 {
            s.push_str(&format!(
                "; {} unschedulable pod(s) refused on {} lone node(s) as planned",
                self.unschedulable_checked, self.probes
            ));
        }
        s
    }
}

/// etcd + kube-apiserver (`tests/support/kube.rs`) and a kube-scheduler on them.
pub struct Cluster {
    pub kube: KubeApi,
    scheduler: Mutex<Child>,
    watchdog: Mutex<Child>,
    log: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in [&self.watchdog, &self.scheduler] {
            let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Cluster {
    /// Starts the control plane and kube-scheduler (binding as fast as it can:
    /// no leader election, high client QPS, every node scored).
    pub fn start() -> Cluster {
        let kube = KubeApi::start();
        let bin = crate::kube::bin_dir();
        let exe = bin.join("kube-scheduler");
        assert!(
            exe.is_file(),
            "{} is missing (NODEWRIGHT_KUBE_BIN={}): build it with `bash scripts/kube-bins.sh` \
             (scripts/test.sh does)",
            exe.display(),
            bin.display()
        );
        let d = kube.dir();
        let config = d.join("scheduler.yaml");
        std::fs::write(
            &config,
            format!(
                "apiVersion: kubescheduler.config.k8s.io/v1\n\
                 kind: KubeSchedulerConfiguration\n\
                 clientConnection:\n  kubeconfig: {}\n  qps: 1000\n  burst: 2000\n\
                 leaderElection:\n  leaderElect: false\n\
                 percentageOfNodesToScore: 100\n",
                kube.kubeconfig.display()
            ),
        )
        .expect("write scheduler config");
        let log = d.join("kube-scheduler.log");
        let child = Command::new(&exe)
            .arg(format!("--config={}", config.display()))
            .arg("--secure-port=0")
            .arg("--v=2")
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(crate::kube::log_file(&log))
            .stderr(crate::kube::log_file(&log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let watchdog = crate::kube::watchdog(&[child.id()], None);
        Cluster {
            kube,
            scheduler: Mutex::new(child),
            watchdog: Mutex::new(watchdog),
            log,
        }
    }

    /// The last `n` lines of the scheduler's log.
    pub fn scheduler_log(&self, n: usize) -> String {
        crate::kube::tail(&self.log, n)
    }

    fn check_alive(&self) {
        let mut c = self.scheduler.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(Some(status)) = c.try_wait() {
            panic!(
                "kube-scheduler exited ({status}):\n{}",
                crate::kube::tail(&self.log, 60)
            );
        }
    }
}

/// Plans `p` and has kube-scheduler judge the plan on `cluster` (emptied first).
pub async fn check(cluster: &Cluster, p: &Prepared) -> (Plan, Report) {
    let plan = p.plan();
    let report = check_plan(cluster, p, &plan).await;
    (plan, report)
}

/// [`check`] of a given plan.
pub async fn check_plan(cluster: &Cluster, p: &Prepared, plan: &Plan) -> Report {
    check_plan_within(cluster, p, plan, BIND_TIMEOUT).await
}

/// [`check_plan`], giving the pods `timeout` to bind.
pub async fn check_plan_within(
    cluster: &Cluster,
    p: &Prepared,
    plan: &Plan,
    timeout: Duration,
) -> Report {
    cluster.check_alive();
    let client = cluster.kube.client().await;
    let mut report = Report::default();
    empty(&client).await;
    let w = World::new(p);
    w.shared_objects(&client).await;

    // Nodes: existing (as written) and planned, each pinned.
    for n in w.objects_of("Node") {
        create_node(&client, pinned_node(n)).await;
    }
    for pod in w.objects_of("Pod") {
        if pod["spec"]["nodeName"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
            && let Err(e) = create_pod(&client, clean(pod)).await
        {
            report.not_checkable.push(e);
        }
    }
    for n in &plan.nodes {
        create_node(&client, planned_node(n)).await;
    }

    // What must bind, and where: pod key -> node.
    let mut want: BTreeMap<String, String> = BTreeMap::new();
    for n in &plan.nodes {
        for ds in w.objects_of("DaemonSet") {
            if let Some(pod) = daemon_pod(ds, &n.name, &n.labels, &node_taints(n)) {
                let key = pod_key(&pod);
                match create_pod(&client, pod).await {
                    Ok(_) => {
                        want.insert(key, n.name.clone());
                    }
                    Err(e) => report.not_checkable.push(e),
                }
            }
        }
    }
    // Where the plan puts each pod.
    let mut planned: HashMap<&str, &str> = HashMap::new();
    for n in &plan.nodes {
        for key in &n.pods {
            planned.insert(key, &n.name);
        }
    }
    for e in &plan.existing {
        for key in &e.pods {
            planned.insert(key, &e.node);
        }
    }
    // Pods are created in the workload's order (as `kubectl apply` of it
    // would), not node by node: kube-scheduler takes them in creation order,
    // and a required spread is judged against the pods bound before it.
    for class in &p.workload.classes {
        for name in &class.pod_names {
            let key = format!("{}/{name}", class.namespace);
            let Some(node) = planned.get(key.as_str()).copied() else {
                continue;
            };
            let (pod, claims) = w.pod(&key, class, Some(node));
            let created = match create_pod(&client, pod).await {
                Ok(c) => c,
                Err(e) => {
                    report.not_checkable.push(e);
                    continue;
                }
            };
            create_claims(&client, claims, &created).await;
            match honours_taints(class) {
                Some(why) => report.not_checkable.push(format!("{key}: {why}")),
                None => {
                    want.insert(key, node.to_string());
                }
            }
        }
    }
    report.total = want.len();
    let (bound, refused) = wait_bound(cluster, &client, &want, timeout).await;
    report.bound = bound;
    report.refused = refused;

    // The second direction: what the plan calls unschedulable, kube-scheduler refuses too.
    second_direction(cluster, &client, &w, plan, &mut report).await;
    report
}

/// The workload's objects and classes, indexed.
struct World<'a> {
    p: &'a Prepared,
    /// `namespace/name` of every planned pod -> its class.
    classes: HashMap<String, &'a PodClass>,
}

fn ns_of(v: &Value) -> String {
    v["metadata"]["namespace"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string()
}

fn name_of(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or_default()
}

fn pod_key(pod: &Value) -> String {
    format!("{}/{}", ns_of(pod), name_of(pod))
}

impl<'a> World<'a> {
    fn new(p: &'a Prepared) -> World<'a> {
        let mut classes = HashMap::new();
        for c in &p.workload.classes {
            for n in &c.pod_names {
                classes.insert(format!("{}/{n}", c.namespace), c);
            }
        }
        World { p, classes }
    }

    fn objects_of<'s>(&'s self, kind: &'s str) -> impl Iterator<Item = &'a Value> + 's {
        self.p.objects.iter().filter(move |o| o["kind"] == kind)
    }

    fn class_of(&self, key: &str) -> &'a PodClass {
        self.classes
            .get(key)
            .copied()
            .unwrap_or_else(|| panic!("planned pod {key} is in no class of the workload"))
    }

    /// Namespaces, PriorityClasses, StorageClasses, PVs and PVCs, as written.
    async fn shared_objects(&self, client: &kube::Client) {
        let mut namespaces: BTreeSet<String> = BTreeSet::new();
        for o in &self.p.objects {
            if o["kind"] == "Namespace" {
                namespaces.insert(name_of(o).to_string());
            } else if !matches!(
                o["kind"].as_str(),
                Some("Node" | "PriorityClass" | "StorageClass" | "PersistentVolume")
            ) {
                namespaces.insert(ns_of(o));
            }
        }
        for c in &self.p.workload.classes {
            namespaces.insert(c.namespace.clone());
        }
        let api: Api<Namespace> = Api::all(client.clone());
        for ns in namespaces {
            let n: Namespace =
                serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace");
            ok_or_exists(api.create(&PostParams::default(), &n).await, "namespace");
        }
        for o in self.objects_of("PriorityClass") {
            let api: Api<PriorityClass> = Api::all(client.clone());
            let v: PriorityClass = serde_json::from_value(clean(o)).expect("PriorityClass");
            ok_or_exists(
                api.create(&PostParams::default(), &v).await,
                "PriorityClass",
            );
        }
        for o in self.objects_of("StorageClass") {
            let api: Api<StorageClass> = Api::all(client.clone());
            let v: StorageClass = serde_json::from_value(clean(o)).expect("StorageClass");
            ok_or_exists(api.create(&PostParams::default(), &v).await, "StorageClass");
        }
        for o in self.objects_of("PersistentVolume") {
            let api: Api<PersistentVolume> = Api::all(client.clone());
            let v: PersistentVolume = serde_json::from_value(clean(o)).expect("PV");
            ok_or_exists(api.create(&PostParams::default(), &v).await, "PV");
        }
        for o in self.objects_of("PersistentVolumeClaim") {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns_of(o));
            let v: PersistentVolumeClaim = serde_json::from_value(clean(o)).expect("PVC");
            ok_or_exists(api.create(&PostParams::default(), &v).await, "PVC");
        }
    }

    /// The template (`metadata` + `spec`) a class's pods are made from.
    fn template(&self, class: &PodClass, key: &str) -> Option<Value> {
        let ns = &class.namespace;
        let name = key.rsplit_once('/').map_or(key, |(_, n)| n);
        let find = |kind: &str, n: &str| {
            self.p
                .objects
                .iter()
                .find(|o| o["kind"] == kind && name_of(o) == n && ns_of(o) == *ns)
        };
        if let Some(pod) = find("Pod", name) {
            return Some(json!({"metadata": pod["metadata"], "spec": pod["spec"]}));
        }
        let owner = class.owner.as_ref()?;
        match owner.kind.as_str() {
            "Deployment" | "ReplicaSet" | "StatefulSet" | "Job" => {
                find(&owner.kind, &owner.name).map(|o| o["spec"]["template"].clone())
            }
            "CronJob" => find("CronJob", &owner.name)
                .map(|o| o["spec"]["jobTemplate"]["spec"]["template"].clone())
                .or_else(|| {
                    // A Job of the CronJob, given as a Job with an owner reference.
                    self.objects_of("Job")
                        .find(|j| {
                            ns_of(j) == *ns
                                && j["metadata"]["ownerReferences"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .any(|r| r["kind"] == "CronJob" && r["name"] == *owner.name)
                        })
                        .map(|j| j["spec"]["template"].clone())
                }),
            _ => None,
        }
    }

    /// The pod `key` of `class` as its controller would create it, tolerating
    /// the pin of `node`; and the claims made for it (StatefulSet volume claim
    /// templates, generic ephemeral volumes: the latter owned by the pod).
    fn pod(&self, key: &str, class: &PodClass, node: Option<&str>) -> (Value, Vec<Claim>) {
        let (ns, name) = key.split_once('/').unwrap_or(("default", key));
        let mut claims = Vec::new();
        let mut spec = match self.template(class, key) {
            Some(t) => {
                let mut spec = t["spec"].clone();
                // StatefulSet volume claim templates: `<template>-<pod>`.
                if let Some(owner) = class.owner.as_ref().filter(|o| o.kind == "StatefulSet")
                    && let Some(ss) = self.p.objects.iter().find(|o| {
                        o["kind"] == "StatefulSet" && name_of(o) == owner.name && ns_of(o) == ns
                    })
                {
                    for t in ss["spec"]["volumeClaimTemplates"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        let tname = name_of(t).to_string();
                        let claim = format!("{tname}-{name}");
                        claims.push(Claim {
                            value: json!({
                                "metadata": {"name": claim, "namespace": ns,
                                             "labels": t["metadata"]["labels"]},
                                "spec": t["spec"],
                            }),
                            owned: false,
                        });
                        let vols = spec["volumes"].as_array().cloned().unwrap_or_default();
                        if !vols.iter().any(|v| v["name"] == *tname) {
                            let mut vols = vols;
                            vols.push(json!({"name": tname,
                                "persistentVolumeClaim": {"claimName": claim}}));
                            spec["volumes"] = Value::Array(vols);
                        }
                    }
                }
                for v in spec["volumes"].as_array().into_iter().flatten() {
                    if let Some(t) = v["ephemeral"]["volumeClaimTemplate"].as_object() {
                        let claim = format!("{name}-{}", v["name"].as_str().unwrap_or_default());
                        claims.push(Claim {
                            value: json!({
                                "metadata": {"name": claim, "namespace": ns,
                                             "labels": t.get("metadata").map(|m| m["labels"].clone())},
                                "spec": t.get("spec").cloned().unwrap_or(Value::Null),
                            }),
                            owned: true,
                        });
                    }
                }
                let annotations = t["metadata"]["annotations"].clone();
                let mut meta = json!({"name": name, "namespace": ns, "labels": class.labels});
                if !annotations.is_null() {
                    meta["annotations"] = annotations;
                }
                return (finish_pod(meta, spec, node), claims);
            }
            None => synthesized_spec(class),
        };
        spec["nodeName"] = Value::Null;
        let meta = json!({"name": name, "namespace": ns, "labels": class.labels});
        (finish_pod(meta, spec, node), claims)
    }
}

/// A claim the harness creates for a pod (as the StatefulSet or ephemeral
/// volume controller would).
struct Claim {
    value: Value,
    /// Owned by the pod (a generic ephemeral volume's claim must be).
    owned: bool,
}

/// The pod object: `spec` with the pin toleration of `node`, no `nodeName`.
fn finish_pod(meta: Value, mut spec: Value, node: Option<&str>) -> Value {
    if let Some(o) = spec.as_object_mut() {
        o.remove("nodeName");
    }
    if let Some(node) = node {
        let mut tols = spec["tolerations"].as_array().cloned().unwrap_or_default();
        tols.push(pin_toleration(node));
        spec["tolerations"] = Value::Array(tols);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

fn pin_toleration(node: &str) -> Value {
    json!({"key": PIN, "operator": "Equal", "value": node, "effect": "NoSchedule"})
}

/// Why a class's pods cannot be judged with pins: a spread that counts
/// taints (`nodeTaintsPolicy: Honor`) sees the pins of other nodes.
fn honours_taints(class: &PodClass) -> Option<String> {
    class
        .topology_spread
        .iter()
        .find(|s| s.honor_node_taints)
        .map(|s| {
            format!(
                "topology spread on {} with nodeTaintsPolicy: Honor (the pin taints change its domains)",
                s.topology_key
            )
        })
}

/// A pod spec from the IR alone (workloads made without YAML, such as the
/// diverse benchmark): requests, labels, topology spread and pod (anti-)affinity.
fn synthesized_spec(class: &PodClass) -> Value {
    assert!(
        class.node_selector.keys.is_empty()
            && class.required_affinity.is_empty()
            && class.preferred_affinity.is_empty()
            && class.tolerations.is_empty()
            && class.volume_zones.is_none(),
        "class {}: a workload given as IR may only have requests, spread and pod affinity",
        class.id
    );
    let r = &class.requests;
    let mut requests = json!({"cpu": format!("{}m", r.cpu_milli), "memory": r.memory.to_string()});
    if r.ephemeral_storage > 0 {
        requests["ephemeral-storage"] = json!(r.ephemeral_storage.to_string());
    }
    for (k, v) in &r.extended {
        requests[k] = json!(v.to_string());
    }
    let selector = |s: &nodewright::workload::LabelSelector| {
        let exprs: Vec<Value> = s
            .match_expressions
            .iter()
            .map(|(k, op, vs)| json!({"key": k, "operator": format!("{op:?}"), "values": vs}))
            .collect();
        json!({"matchLabels": s.match_labels, "matchExpressions": exprs})
    };
    let spreads: Vec<Value> = class
        .topology_spread
        .iter()
        .map(|s| {
            let mut v = json!({
                "maxSkew": s.max_skew,
                "topologyKey": s.topology_key,
                "whenUnsatisfiable": if s.hard { "DoNotSchedule" } else { "ScheduleAnyway" },
                "labelSelector": selector(&s.selector),
                "nodeAffinityPolicy": if s.honor_node_affinity { "Honor" } else { "Ignore" },
                "nodeTaintsPolicy": if s.honor_node_taints { "Honor" } else { "Ignore" },
            });
            if let Some(m) = s.min_domains {
                v["minDomains"] = json!(m);
            }
            v
        })
        .collect();
    let mut affinity = json!({});
    for (anti, field) in [(false, "podAffinity"), (true, "podAntiAffinity")] {
        let mut req = Vec::new();
        let mut pref = Vec::new();
        for t in class.pod_affinity.iter().filter(|t| t.anti == anti) {
            let mut term =
                json!({"topologyKey": t.topology_key, "labelSelector": selector(&t.selector)});
            if !t.namespaces.is_empty() {
                term["namespaces"] = json!(t.namespaces);
            }
            if t.all_namespaces {
                term["namespaceSelector"] = json!({});
            }
            match t.weight {
                None => req.push(term),
                Some(w) => pref.push(json!({"weight": w, "podAffinityTerm": term})),
            }
        }
        if !req.is_empty() || !pref.is_empty() {
            affinity[field] = json!({
                "requiredDuringSchedulingIgnoredDuringExecution": req,
                "preferredDuringSchedulingIgnoredDuringExecution": pref,
            });
        }
    }
    let mut spec = json!({
        "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                        "resources": {"requests": requests}}],
        "topologySpreadConstraints": spreads,
        "affinity": affinity,
    });
    if let Some(pc) = &class.priority_class {
        spec["priorityClassName"] = json!(pc);
    }
    spec
}

/// An object as written, without what the API server sets itself.
fn clean(o: &Value) -> Value {
    let mut o = o.clone();
    if let Some(m) = o["metadata"].as_object_mut() {
        for k in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
            "selfLink",
        ] {
            m.remove(k);
        }
    }
    o
}

fn ok_or_exists<T>(r: Result<T, kube::Error>, what: &str) {
    match r {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("create {what}: {e}"),
    }
}

fn taint_json(t: &nodewright::ir::Taint) -> Value {
    json!({"key": t.key, "value": t.value, "effect": format!("{:?}", t.effect)})
}

/// The taints a planned node carries once ready (its startup taints are
/// gone by then; the pin is added by the harness).
fn node_taints(n: &nodewright::solver::PlannedNode) -> Vec<Value> {
    n.taints.iter().map(taint_json).collect()
}

fn quantities(r: &nodewright::ir::Resources) -> Value {
    let mut q = json!({
        "cpu": format!("{}m", r.cpu_milli),
        "memory": r.memory.to_string(),
        "ephemeral-storage": r.ephemeral_storage.to_string(),
        "pods": r.pods.to_string(),
    });
    for (k, v) in &r.extended {
        q[k] = json!(v.to_string());
    }
    q
}

/// A Node object of the plan: its labels (plus the hostname the kubelet
/// adds), taints, the pin, and allocatable as capacity too.
fn planned_node(n: &nodewright::solver::PlannedNode) -> Value {
    lone_node(
        &n.name,
        &n.labels,
        node_taints(n),
        quantities(&n.allocatable),
    )
}

fn lone_node(
    name: &str,
    labels: &BTreeMap<String, String>,
    taints: Vec<Value>,
    alloc: Value,
) -> Value {
    let mut labels = labels.clone();
    labels.insert("kubernetes.io/hostname".into(), name.to_string());
    // The EBS CSI node plugin's topology label (the kubelet writes it once the
    // driver registers; an EBS PV's node affinity may name it).
    if let Some(z) = labels.get("topology.kubernetes.io/zone").cloned() {
        labels.entry(EBS_ZONE.into()).or_insert(z);
    }
    let mut taints = taints;
    taints.push(json!({"key": PIN, "value": name, "effect": "NoSchedule"}));
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
        "status": {"capacity": alloc, "allocatable": alloc},
    })
}

/// An existing Node as written, with its pin.
fn pinned_node(n: &Value) -> Value {
    let mut n = clean(n);
    let name = name_of(&n).to_string();
    let mut taints = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
    taints.push(json!({"key": PIN, "value": name, "effect": "NoSchedule"}));
    n["spec"]["taints"] = Value::Array(taints);
    if n["metadata"]["labels"]["kubernetes.io/hostname"].is_null() {
        n["metadata"]["labels"]["kubernetes.io/hostname"] = json!(name);
    }
    let zone = n["metadata"]["labels"]["topology.kubernetes.io/zone"].clone();
    if zone.is_string() && n["metadata"]["labels"][EBS_ZONE].is_null() {
        n["metadata"]["labels"][EBS_ZONE] = zone;
    }
    n
}

/// Creates a Node and makes it Ready with its status (the status subresource).
async fn create_node(client: &kube::Client, mut v: Value) {
    let mut status = v["status"].take();
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    let name = name_of(&v).to_string();
    let taints = v["spec"]["taints"].clone();
    let node: Node = serde_json::from_value(v).expect("Node");
    let api: Api<Node> = Api::all(client.clone());
    api.create(&PostParams::default(), &node)
        .await
        .unwrap_or_else(|e| panic!("create node {name}: {e}"));
    if status["allocatable"].is_null() {
        status["allocatable"] = status["capacity"].clone();
    }
    status["conditions"] = json!([{"type": "Ready", "status": "True",
        "reason": "KubeletReady", "message": "the scheduler oracle's node",
        "lastHeartbeatTime": now(), "lastTransitionTime": now()}]);
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .unwrap_or_else(|e| panic!("node {name} status: {e}"));
    // kube-apiserver's TaintNodesByCondition admission taints a new Node
    // `node.kubernetes.io/not-ready`; the node lifecycle controller (not
    // running here) lifts it once the Node is Ready. Lift it as it would.
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"taints": taints}})),
    )
    .await
    .unwrap_or_else(|e| panic!("node {name} taints: {e}"));
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// Creates a pod; returns it as stored (its uid names it as an owner), or
/// why the API server refused it (a PriorityClass the input lacks, say:
/// such a pod is not checkable, which the report says).
async fn create_pod(client: &kube::Client, v: Value) -> Result<Pod, String> {
    let key = pod_key(&v);
    let pod: Pod = serde_json::from_value(v).map_err(|e| format!("{key}: not a pod: {e}"))?;
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod_key_ns(&key));
    api.create(&PostParams::default(), &pod)
        .await
        .map_err(|e| format!("{key}: the API server refused the pod: {e}"))
}

fn pod_key_ns(key: &str) -> String {
    key.split_once('/')
        .map_or("default", |(n, _)| n)
        .to_string()
}

async fn create_claims(client: &kube::Client, claims: Vec<Claim>, pod: &Pod) {
    for c in claims {
        let mut v = c.value;
        if c.owned {
            v["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "v1", "kind": "Pod",
                "name": pod.metadata.name, "uid": pod.metadata.uid,
                "controller": true, "blockOwnerDeletion": true,
            }]);
        }
        let ns = ns_of(&v);
        let pvc: PersistentVolumeClaim = serde_json::from_value(v).expect("PVC");
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        ok_or_exists(api.create(&PostParams::default(), &pvc).await, "PVC");
    }
}

/// The pod the DaemonSet controller would create for `ds` on node `node`,
/// or None when the DaemonSet does not select the node (node selector,
/// required node affinity, or a NoSchedule/NoExecute taint it does not tolerate).
fn daemon_pod(
    ds: &Value,
    node: &str,
    labels: &BTreeMap<String, String>,
    taints: &[Value],
) -> Option<Value> {
    let t = &ds["spec"]["template"];
    let spec = &t["spec"];
    if let Some(sel) = spec["nodeSelector"].as_object()
        && !sel
            .iter()
            .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
    {
        return None;
    }
    let terms = &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    if let Some(terms) = terms.as_array()
        && !terms.iter().any(|term| term_matches(term, labels))
    {
        return None;
    }
    let tols = spec["tolerations"].as_array().cloned().unwrap_or_default();
    for taint in taints {
        let effect = taint["effect"].as_str().unwrap_or_default();
        if effect != "PreferNoSchedule" && !tols.iter().any(|tol| tolerates(tol, taint)) {
            return None;
        }
    }
    let ds_name = name_of(ds);
    let mut spec = spec.clone();
    spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!({
        "nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": [node]}]}]
    });
    let mut tols = tols;
    for (k, e) in [
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ] {
        tols.push(json!({"key": k, "operator": "Exists", "effect": e}));
    }
    spec["tolerations"] = Value::Array(tols);
    let mut labels = t["metadata"]["labels"].clone();
    if labels.is_null() {
        labels = json!({});
    }
    let meta =
        json!({"name": format!("{ds_name}-{node}"), "namespace": ns_of(ds), "labels": labels});
    Some(finish_pod(meta, spec, Some(node)))
}

fn term_matches(term: &Value, labels: &BTreeMap<String, String>) -> bool {
    term["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or_default();
            let vals: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let have = labels.get(key).map(String::as_str);
            let num = |s: Option<&str>| s.and_then(|s| s.parse::<i64>().ok());
            match e["operator"].as_str().unwrap_or_default() {
                "In" => have.is_some_and(|h| vals.contains(&h)),
                "NotIn" => !have.is_some_and(|h| vals.contains(&h)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                "Gt" => {
                    matches!((num(have), num(vals.first().copied())), (Some(a), Some(b)) if a > b)
                }
                "Lt" => {
                    matches!((num(have), num(vals.first().copied())), (Some(a), Some(b)) if a < b)
                }
                _ => false,
            }
        })
}

fn tolerates(tol: &Value, taint: &Value) -> bool {
    let eff = tol["effect"].as_str().unwrap_or_default();
    if !eff.is_empty() && Some(eff) != taint["effect"].as_str() {
        return false;
    }
    let key = tol["key"].as_str().unwrap_or_default();
    let op = tol["operator"].as_str().unwrap_or("Equal");
    if key.is_empty() {
        return op == "Exists";
    }
    if Some(key) != taint["key"].as_str() {
        return false;
    }
    op == "Exists"
        || tol["value"].as_str().unwrap_or_default() == taint["value"].as_str().unwrap_or_default()
}

/// Deletes every pod, claim, volume, node, storage class and (non-system)
/// priority class: no controller-manager runs, so finalizers are removed by hand.
pub async fn empty(client: &kube::Client) {
    let unfinalize = json!({"metadata": {"finalizers": null}});
    let now = DeleteParams::default().grace_period(0);
    let pods: Api<Pod> = Api::all(client.clone());
    for p in pods.list(&ListParams::default()).await.expect("list pods") {
        let (Some(name), Some(ns)) = (p.metadata.name, p.metadata.namespace) else {
            continue;
        };
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let _ = api.delete(&name, &now).await;
    }
    let pvcs: Api<PersistentVolumeClaim> = Api::all(client.clone());
    for c in pvcs.list(&ListParams::default()).await.expect("list pvcs") {
        let (Some(name), Some(ns)) = (c.metadata.name, c.metadata.namespace) else {
            continue;
        };
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let _ = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&unfinalize))
            .await;
        let _ = api.delete(&name, &now).await;
    }
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    for v in pvs.list(&ListParams::default()).await.expect("list pvs") {
        let Some(name) = v.metadata.name else {
            continue;
        };
        let _ = pvs
            .patch(&name, &PatchParams::default(), &Patch::Merge(&unfinalize))
            .await;
        let _ = pvs.delete(&name, &now).await;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    for n in nodes
        .list(&ListParams::default())
        .await
        .expect("list nodes")
    {
        let Some(name) = n.metadata.name else {
            continue;
        };
        let _ = nodes.delete(&name, &now).await;
    }
    let scs: Api<StorageClass> = Api::all(client.clone());
    for s in scs
        .list(&ListParams::default())
        .await
        .expect("list storage classes")
    {
        let Some(name) = s.metadata.name else {
            continue;
        };
        let _ = scs.delete(&name, &now).await;
    }
    let pcs: Api<PriorityClass> = Api::all(client.clone());
    for s in pcs
        .list(&ListParams::default())
        .await
        .expect("list priority classes")
    {
        let Some(name) = s.metadata.name.filter(|n| !n.starts_with("system-")) else {
            continue;
        };
        let _ = pcs.delete(&name, &now).await;
    }
    // Gone before the next case starts (the scheduler sees the deletions first).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = pods
            .list(&ListParams::default())
            .await
            .map_or(1, |l| l.items.len())
            + nodes
                .list(&ListParams::default())
                .await
                .map_or(1, |l| l.items.len())
            + pvcs
                .list(&ListParams::default())
                .await
                .map_or(1, |l| l.items.len())
            + pvs
                .list(&ListParams::default())
                .await
                .map_or(1, |l| l.items.len());
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{left} objects still there after emptying"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every pod of `want` is bound (to its node), playing the PV
/// controller meanwhile. Returns how many are bound as planned, and a
/// refusal for each other one with the scheduler's message.
async fn wait_bound(
    cluster: &Cluster,
    client: &kube::Client,
    want: &BTreeMap<String, String>,
    timeout: Duration,
) -> (usize, Vec<Refusal>) {
    let pods: Api<Pod> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        volume_controller(client).await;
        let list = pods.list(&ListParams::default()).await.expect("list pods");
        let bound: HashMap<String, (String, Pod)> = list
            .items
            .into_iter()
            .map(|p| {
                let key = format!(
                    "{}/{}",
                    p.metadata.namespace.clone().unwrap_or_default(),
                    p.metadata.name.clone().unwrap_or_default()
                );
                let node = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default();
                (key, (node, p))
            })
            .collect();
        let pending = want
            .keys()
            .filter(|k| bound.get(*k).is_none_or(|(n, _)| n.is_empty()))
            .count();
        if pending == 0 || Instant::now() >= deadline {
            cluster.check_alive();
            let mut ok = 0;
            let mut refused = Vec::new();
            for (key, node) in want {
                match bound.get(key) {
                    Some((n, _)) if n == node => ok += 1,
                    Some((n, _)) if !n.is_empty() => refused.push(Refusal {
                        pod: key.clone(),
                        node: node.clone(),
                        message: format!("bound to {n} instead"),
                    }),
                    Some((_, p)) => refused.push(Refusal {
                        pod: key.clone(),
                        node: node.clone(),
                        message: failed_scheduling(client, p).await,
                    }),
                    None => refused.push(Refusal {
                        pod: key.clone(),
                        node: node.clone(),
                        message: "the pod is gone".into(),
                    }),
                }
            }
            return (ok, refused);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The last `FailedScheduling` message of pod `p` (or what is known instead).
async fn failed_scheduling(client: &kube::Client, p: &Pod) -> String {
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let lp =
        ListParams::default().fields(&format!("involvedObject.uid={uid},reason=FailedScheduling"));
    let list = events.list(&lp).await.map(|l| l.items).unwrap_or_default();
    let last = list
        .iter()
        .max_by_key(|e| (e.last_timestamp.clone(), e.event_time.clone(), e.count))
        .and_then(|e| e.message.clone());
    let cond = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
        .and_then(|c| c.message.clone());
    let mut msg = last
        .or(cond)
        .unwrap_or_else(|| "still pending, no FailedScheduling event yet".into());
    // The preemption half repeats the first for pinned pods: keep the verdict.
    if let Some(i) = msg
        .find(" no new claims to deallocate")
        .or_else(|| msg.find(" preemption:"))
    {
        msg.truncate(i);
    }
    msg
}

const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// One pass of what the PV controller and a zonal CSI provisioner do:
/// a claim the scheduler picked a node for gets a PV in that node's zone;
/// a claim a PV points at (or that names a PV) is bound to it; an
/// `Immediate` claim with a class is provisioned at once.
async fn volume_controller(client: &kube::Client) {
    let pvcs: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let Ok(claims) = pvcs.list(&ListParams::default()).await else {
        return;
    };
    let Ok(volumes) = pvs.list(&ListParams::default()).await else {
        return;
    };
    let classes: Api<StorageClass> = Api::all(client.clone());
    let classes = classes
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let nodes: Api<Node> = Api::all(client.clone());
    for c in claims.items {
        let annotations = c.metadata.annotations.clone().unwrap_or_default();
        if annotations.contains_key(BIND_COMPLETED) {
            continue;
        }
        let (Some(name), Some(ns)) = (c.metadata.name.clone(), c.metadata.namespace.clone()) else {
            continue;
        };
        let spec = c.spec.clone().unwrap_or_default();
        // A PV already meant for this claim (written so, or chosen by the scheduler).
        let pv = spec
            .volume_name
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| {
                volumes.items.iter().find_map(|v| {
                    let r = v.spec.as_ref()?.claim_ref.as_ref()?;
                    (r.name.as_deref() == Some(&name) && r.namespace.as_deref() == Some(&ns))
                        .then(|| v.metadata.name.clone())?
                })
            });
        let pv = match pv {
            Some(pv) => pv,
            None => {
                let class = spec.storage_class_name.clone().unwrap_or_default();
                let sc = classes
                    .iter()
                    .find(|s| s.metadata.name.as_deref() == Some(&class));
                let wffc = sc.is_some_and(|s| {
                    s.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
                });
                let zone = if let Some(node) = annotations.get(SELECTED_NODE) {
                    let Ok(n) = nodes.get(node).await else {
                        continue;
                    };
                    n.metadata
                        .labels
                        .unwrap_or_default()
                        .get("topology.kubernetes.io/zone")
                        .cloned()
                } else if sc.is_some() && !wffc {
                    // Immediate: provision in the class's first allowed zone, if any.
                    sc.and_then(|s| s.allowed_topologies.as_ref())
                        .and_then(|t| t.first())
                        .and_then(|t| t.match_label_expressions.as_ref())
                        .and_then(|e| e.first())
                        .and_then(|e| e.values.first().cloned())
                } else {
                    continue;
                };
                let pv_name = format!("pvc-{ns}-{name}");
                let storage = spec
                    .resources
                    .as_ref()
                    .and_then(|r| r.requests.as_ref())
                    .and_then(|r| r.get("storage"))
                    .map_or("1Gi".to_string(), |q| q.0.clone());
                let mut v = json!({
                    "metadata": {"name": pv_name},
                    "spec": {
                        "capacity": {"storage": storage},
                        "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
                        "storageClassName": class,
                        "persistentVolumeReclaimPolicy": "Delete",
                        "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": format!("vol-{ns}-{name}")},
                        "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                     "namespace": ns, "name": name, "uid": c.metadata.uid},
                    },
                });
                if let Some(z) = zone {
                    v["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{
                        "matchExpressions": [{"key": "topology.kubernetes.io/zone",
                                              "operator": "In", "values": [z]}]}]}});
                }
                let pv: PersistentVolume = serde_json::from_value(v).expect("PV");
                ok_or_exists(pvs.create(&PostParams::default(), &pv).await, "PV");
                pv_name
            }
        };
        // Bind both ways, as the PV controller does.
        let claim_ref = json!({"spec": {"claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "namespace": ns, "name": name, "uid": c.metadata.uid}}});
        let _ = pvs
            .patch(&pv, &PatchParams::default(), &Patch::Merge(&claim_ref))
            .await;
        let _ = pvs
            .patch_status(
                &pv,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Bound"}})),
            )
            .await;
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let bind = json!({
            "metadata": {"annotations": {BIND_COMPLETED: "yes", "pv.kubernetes.io/bound-by-controller": "yes"}},
            "spec": {"volumeName": pv},
        });
        let _ = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&bind))
            .await;
        let capacity = volumes
            .items
            .iter()
            .find(|v| v.metadata.name.as_deref() == Some(&pv))
            .and_then(|v| v.spec.as_ref()?.capacity.clone());
        let mut status = json!({"status": {"phase": "Bound",
            "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()])}});
        if let Some(cap) = capacity {
            status["status"]["capacity"] = serde_json::to_value(cap).unwrap_or_default();
        }
        let _ = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await;
    }
}

/// For each unschedulable pod, up to [`SAMPLE`] offerings of the pools:
/// a lone node of that offering, and kube-scheduler must refuse the pod.
/// Pods a pool limit keeps out are skipped (a lone node has no limit to reach),
/// and so are pods the explanation says some offering fits (other pods kept
/// them out: a lone node cannot show it).
async fn second_direction(
    cluster: &Cluster,
    client: &kube::Client,
    w: &World<'_>,
    plan: &Plan,
    report: &mut Report,
) {
    if plan.unschedulable.is_empty() {
        return;
    }
    let cat = &w.p.catalog;
    let index = cat.index();
    // One probe set per class (its pods are identical); the first pod stands for it.
    let mut seen = BTreeSet::new();
    for u in &plan.unschedulable {
        let class = w.class_of(&u.pod);
        if !seen.insert(class.id.clone()) {
            continue;
        }
        // A lone node cannot show what other pods or a pool limit do: the
        // pod is skipped when the explanation says offerings fit it (it was
        // kept out by topology, pod (anti-)affinity, host ports held by its
        // replicas, or the pool's limits), as when a limit is reached.
        if u.reasons
            .iter()
            .any(|r| r.contains(": limit reached: ") || r.contains(" offering(s) fit this pod"))
        {
            continue;
        }
        if honours_taints(class).is_some() {
            report.not_checkable.push(format!(
                "{} (unschedulable): nodeTaintsPolicy: Honor",
                u.pod
            ));
            continue;
        }
        // The sharpest sample: offerings whose labels (and zone) the pod
        // accepts first, the biggest first, one per instance type: these
        // are the ones a resource, taint or volume misjudgment would wrongly reject.
        let mut ranked = Vec::new();
        for pool in &w.p.policy.pools {
            for o in index.filter(&pool.requirements).iter() {
                let off = &cat.offerings[o];
                let t = &cat.types[off.type_index as usize];
                let labels =
                    nodewright::catalog::node_labels::planned_node_labels(cat, pool, off, "probe");
                let zone_ok = class.volume_zones.as_ref().is_none_or(|zs| {
                    labels
                        .get("topology.kubernetes.io/zone")
                        .is_some_and(|z| zs.contains(z))
                });
                let fits_labels = class.node_selector.matches_map(&labels)
                    && (class.required_affinity.is_empty()
                        || class
                            .required_affinity
                            .iter()
                            .any(|r| r.matches_map(&labels)))
                    && zone_ok;
                let a = nodewright::catalog::allocatable(t, &pool.kubelet, &Default::default());
                ranked.push((
                    !fits_labels,
                    std::cmp::Reverse(a.cpu_milli),
                    std::cmp::Reverse(a.memory),
                    o,
                    pool,
                ));
            }
        }
        ranked.sort_by_key(|r| (r.0, r.1, r.2, r.3));
        let mut types_seen = BTreeSet::new();
        let candidates: Vec<_> = ranked
            .into_iter()
            .filter(|r| types_seen.insert(cat.offerings[r.3].type_index))
            .map(|r| (r.4, r.3))
            .collect();
        let mut probes = 0;
        let mut refused_here = false;
        for (pool, o) in candidates.into_iter().take(SAMPLE) {
            let off = &cat.offerings[o];
            let t = &cat.types[off.type_index as usize];
            let name = format!("probe-{}", t.name.replace('.', "-"));
            let labels =
                nodewright::catalog::node_labels::planned_node_labels(cat, pool, off, &name);
            let alloc = nodewright::catalog::allocatable(t, &pool.kubelet, &Default::default());
            let taints: Vec<Value> = pool.taints.iter().map(taint_json).collect();
            empty(client).await;
            w.shared_objects(client).await;
            create_node(
                client,
                lone_node(&name, &labels, taints.clone(), quantities(&alloc)),
            )
            .await;
            let mut want = BTreeMap::new();
            for ds in w.objects_of("DaemonSet") {
                if let Some(pod) = daemon_pod(ds, &name, &labels, &taints) {
                    want.insert(pod_key(&pod), name.clone());
                    if let Err(e) = create_pod(client, pod).await {
                        report.not_checkable.push(e);
                    }
                }
            }
            let (pod, claims) = w.pod(&u.pod, class, Some(&name));
            let created = match create_pod(client, pod).await {
                Ok(c) => c,
                Err(e) => {
                    report.not_checkable.push(e);
                    break;
                }
            };
            create_claims(client, claims, &created).await;
            probes += 1;
            if let Some(node) = probe(client, &u.pod, PROBE_TIMEOUT).await {
                refused_here = true;
                report.refused.push(Refusal {
                    pod: u.pod.clone(),
                    node: format!(
                        "{node} ({} {} {}, pool {})",
                        t.name,
                        cat.zones
                            .get(off.zone_index as usize)
                            .map_or("?", |z| z.name.as_str()),
                        off.capacity_type.as_str(),
                        pool.name
                    ),
                    message: format!(
                        "the plan calls it unschedulable ({}), kube-scheduler bound it",
                        u.reasons.join("; ")
                    ),
                });
            }
        }
        report.probes += probes;
        if probes > 0 && !refused_here {
            report.unschedulable_checked += 1;
        }
    }
    empty(client).await;
    cluster.check_alive();
}

/// Waits for kube-scheduler's verdict on pod `key`: Some(node) once bound,
/// None once it reported FailedScheduling (or nothing happened in `timeout`).
async fn probe(client: &kube::Client, key: &str, timeout: Duration) -> Option<String> {
    let (ns, name) = key.split_once('/').unwrap_or(("default", key));
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + timeout;
    let mut refused_since: Option<Instant> = None;
    loop {
        volume_controller(client).await;
        if let Ok(p) = api.get(name).await {
            if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                return Some(n);
            }
            let unschedulable = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.type_ == "PodScheduled"
                            && c.status == "False"
                            && c.reason.as_deref() == Some("Unschedulable")
                    })
                });
            // A WaitForFirstConsumer claim may need a volume round first: a
            // refusal counts once it has stood for a few seconds.
            if unschedulable {
                let since = *refused_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(3) {
                    return None;
                }
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_unpack_lists_and_skip_empty_documents() {
        let objs = parse_objects(
            "---\n\
             apiVersion: v1\nkind: List\nitems:\n- {kind: Pod, metadata: {name: a}}\n\
             - {kind: Node, metadata: {name: n}}\n\
             ---\n\
             ---\n\
             kind: Deployment\nmetadata: {name: d, namespace: web}\n",
        )
        .expect("parses");
        let kinds: Vec<&str> = objs.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(kinds, ["Pod", "Node", "Deployment"]);
        assert_eq!(ns_of(&objs[0]), "default");
        assert_eq!(pod_key(&objs[2]), "web/d");
    }

    fn ds(spec: Value) -> Value {
        json!({"kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "kube-system"},
               "spec": {"template": {"metadata": {"labels": {"app": "agent"}}, "spec": spec}}})
    }

    #[test]
    fn daemon_pods_go_where_the_daemonset_controller_puts_them() {
        let labels: BTreeMap<String, String> =
            [("kubernetes.io/arch".to_string(), "arm64".to_string())].into();
        let gpu = json!({"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"});
        let plain = ds(json!({"containers": [{"name": "c", "image": "x"}]}));
        // A NoSchedule taint it does not tolerate keeps it off; PreferNoSchedule does not.
        assert!(daemon_pod(&plain, "n1", &labels, std::slice::from_ref(&gpu)).is_none());
        let soft = json!({"key": "k", "effect": "PreferNoSchedule"});
        let pod = daemon_pod(&plain, "n1", &labels, &[soft]).expect("runs there");
        assert_eq!(pod_key(&pod), "kube-system/agent-n1");
        let term = &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0];
        assert_eq!(term["matchFields"][0]["values"][0], "n1");
        let tols = pod["spec"]["tolerations"].as_array().expect("tolerations");
        assert!(tols.contains(&pin_toleration("n1")), "{tols:?}");
        // Tolerating every taint (empty key, Exists) takes the GPU node.
        let all = ds(json!({"tolerations": [{"operator": "Exists"}], "containers": []}));
        assert!(daemon_pod(&all, "n2", &labels, std::slice::from_ref(&gpu)).is_some());
        // Node selector and required node affinity are honoured.
        let amd = ds(json!({"nodeSelector": {"kubernetes.io/arch": "amd64"}}));
        assert!(daemon_pod(&amd, "n1", &labels, &[]).is_none());
        let aff = ds(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/arch", "operator": "NotIn", "values": ["amd64"]}]}]}}}}),
        );
        assert!(daemon_pod(&aff, "n1", &labels, &[]).is_some());
        // A toleration with the wrong value does not tolerate.
        let wrong = json!({"key": "nvidia.com/gpu", "operator": "Equal", "value": "false"});
        assert!(!tolerates(&wrong, &gpu));
    }

    #[test]
    fn the_summary_is_one_line_naming_each_refusal() {
        let mut r = Report {
            bound: 3,
            total: 4,
            ..Default::default()
        };
        assert_eq!(r.summary(), "3/4 pods bound; 0 refused: none");
        r.refused.push(Refusal {
            pod: "web/a".into(),
            node: "default-1".into(),
            message: "0/2 nodes are available: 1 Insufficient cpu".into(),
        });
        let s = r.summary();
        assert!(
            s.starts_with("3/4 pods bound; 1 refused: web/a on default-1: 0/2 nodes"),
            "{s}"
        );
        assert!(!s.contains('\n'), "{s}");
    }
}
