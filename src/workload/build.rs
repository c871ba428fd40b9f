//! Typed objects → pod classes, DaemonSet overhead and existing nodes.
//!
//! Two passes. The first indexes what pods refer to (volumes, priority
//! classes, namespaces, nodes, which ReplicaSets belong to which
//! Deployments) and credits the pods already in the input to their
//! controllers. The second expands each object into pods, one builder
//! method per kind; Deployments, ReplicaSets and StatefulSets share
//! [`Builder::replicated`] (replica count and template) and
//! [`Builder::place`] (constraints and grouping).
//!
//! Every count is checked before any name is made: negative counts are
//! errors, and so is a count above the pods-per-plan ceiling
//! (`LoadOptions::max_pods`), so a `replicas: 2147483647` is rejected in
//! microseconds instead of filling memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::ctx::{At, Ctx};
use super::error::{ErrorKind, WorkloadError};
use super::labels;
use super::load::LoadOptions;
use super::names::{self, Suffixes};
use super::pods::{self, Env, Grouper, Shape, VolumeZones};
use super::read::Obj;
use super::volumes::{self, ClaimZones, Storage};
use super::yaml::Path;
use super::{BoundPod, DaemonSetOverhead, ExistingNode, OwnerRef, Workload};

/// The namespace of an object, `default` when unset.
pub(super) fn ns_of(m: &ObjectMeta) -> String {
    m.namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// The name of an object, empty when unset.
pub(super) fn name_of(m: &ObjectMeta) -> String {
    m.name.clone().unwrap_or_default()
}

fn controller_of(m: &ObjectMeta) -> Option<OwnerRef> {
    m.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .or_else(|| m.owner_references.iter().flatten().next())
        .map(|o| OwnerRef {
            kind: o.kind.clone(),
            name: o.name.clone(),
        })
}

fn terminal(p: &core::Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// Errors for an object without the `spec` its kind requires.
fn required<'o, T>(
    ctx: &Ctx,
    at: &At,
    kind: &str,
    spec: Option<&'o T>,
) -> Result<&'o T, WorkloadError> {
    spec.ok_or_else(|| {
        ctx.error(
            at,
            &Path::root(),
            ErrorKind::Schema,
            format!("{kind}: `spec` is required"),
            None,
        )
    })
}

/// Which object a message is about: "Deployment shop/web".
#[derive(Clone, Copy)]
struct Who<'a> {
    kind: &'a str,
    ns: &'a str,
    name: &'a str,
}

impl fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.ns, self.name)
    }
}

/// A count field (`spec.replicas`, `parallelism`, ...) as a `u32`:
/// `default` when unset, an error when negative.
fn count(
    ctx: &Ctx,
    at: &At,
    who: Who,
    path: &Path,
    value: Option<i32>,
    default: u32,
) -> Result<u32, WorkloadError> {
    match value {
        None => Ok(default),
        Some(v) => u32::try_from(v).map_err(|_| {
            ctx.error(
                at,
                path,
                ErrorKind::Value,
                format!("{who}: {path} is {v}, and a count cannot be negative"),
                Some(format!(
                    "Kubernetes rejects a negative {path}; use 0 to plan no pods"
                )),
            )
        }),
    }
}

/// `--replicas` overrides, and which of them were used.
struct Replicas<'a> {
    opts: &'a LoadOptions,
    used: BTreeSet<String>,
}

impl Replicas<'_> {
    /// The count for `ns/name`: its override if any (and `true`), else `default`.
    fn get(&mut self, ns: &str, name: &str, default: u32) -> (u32, bool) {
        for k in [format!("{ns}/{name}"), name.to_string()] {
            if let Some(n) = self.opts.replicas.get(&k) {
                self.used.insert(k);
                return (*n, true);
            }
        }
        (default, false)
    }
}

/// Pod names of controllers' pods already in the input, by (kind, ns, name) of the controller.
type Existing = HashMap<(String, String, String), Vec<String>>;

/// Existing nodes, with an index by name for binding pods.
#[derive(Default)]
struct Nodes {
    list: Vec<ExistingNode>,
    index: HashMap<String, usize>,
}

/// One pod template's pods, as the grouper takes them.
struct Pods<'a> {
    ns: &'a str,
    labels: &'a BTreeMap<String, String>,
    owner: Option<&'a OwnerRef>,
    shape: &'a Shape,
    spec: &'a core::PodSpec,
}

/// A Deployment, ReplicaSet or StatefulSet: what the three share.
struct Replicated<'o> {
    kind: &'static str,
    ns: String,
    name: String,
    replicas: Option<i32>,
    template: Option<&'o core::PodTemplateSpec>,
}

impl Replicated<'_> {
    fn who(&self) -> Who<'_> {
        Who {
            kind: self.kind,
            ns: &self.ns,
            name: &self.name,
        }
    }
}

/// A replicated object's pods to plan: its template's spec and labels, and how many.
struct Want<'o> {
    spec: &'o core::PodSpec,
    labels: BTreeMap<String, String>,
    count: u32,
}

/// A Job's run (a Job, or one run of a CronJob): what [`Builder::job`] needs.
struct JobRun<'o> {
    kind: &'static str,
    ns: String,
    /// The Job's name (a CronJob's run gets `NAME-<id>`).
    job_name: String,
    /// The name `--replicas` and notes use: the Job's or the CronJob's.
    key_name: String,
    owner: OwnerRef,
    spec: &'o JobSpec,
    spec_path: Path,
}

struct Builder<'a> {
    env: Env,
    storage: Storage,
    grouper: Grouper,
    suffixes: Suffixes,
    replicas: Replicas<'a>,
    existing: Existing,
    daemonsets: Vec<DaemonSetOverhead>,
    /// ReplicaSet (ns, name) → its controller.
    rs_owner: HashMap<(String, String), OwnerRef>,
    /// Deployments (ns, name) in the input.
    deployments: BTreeSet<(String, String)>,
    /// The ceiling on pods per plan, and the pods asked for so far.
    max_pods: usize,
    asked: usize,
}

/// Objects → workload: the second half of loading.
pub(super) fn build(
    ctx: &mut Ctx,
    objs: Vec<(At, Obj)>,
    opts: &LoadOptions,
) -> Result<Workload, WorkloadError> {
    let mut b = Builder::new(opts);
    let mut nodes = Nodes::default();
    for (at, o) in &objs {
        b.index(ctx, at, o, &mut nodes)?;
    }
    for (_, o) in &objs {
        if let Obj::Pod(p) = o {
            b.credit(p);
        }
    }
    for (at, o) in &objs {
        b.object(ctx, at, o, &mut nodes)?;
    }
    for k in opts.replicas.keys() {
        if !b.replicas.used.contains(k) {
            return Err(WorkloadError::UnknownReplicas { name: k.clone() });
        }
    }
    Ok(Workload {
        classes: b.grouper.finish(),
        daemonsets: b.daemonsets,
        nodes: nodes.list,
    })
}

impl<'a> Builder<'a> {
    fn new(opts: &'a LoadOptions) -> Self {
        Builder {
            env: Env::default(),
            storage: Storage::default(),
            grouper: Grouper::default(),
            suffixes: Suffixes::new(),
            replicas: Replicas {
                opts,
                used: BTreeSet::new(),
            },
            existing: HashMap::new(),
            daemonsets: Vec::new(),
            rs_owner: HashMap::new(),
            deployments: BTreeSet::new(),
            max_pods: opts.max_pods,
            asked: 0,
        }
    }

    /// Pass 1: records what pods refer to.
    fn index(
        &mut self,
        ctx: &mut Ctx,
        at: &At,
        o: &Obj,
        nodes: &mut Nodes,
    ) -> Result<(), WorkloadError> {
        match o {
            Obj::Pvc(p) => self.storage.add_pvc(p),
            Obj::Pv(p) => self.storage.add_pv(p),
            Obj::StorageClass(s) => self.storage.add_class(s),
            Obj::PriorityClass(pc) => {
                let name = name_of(&pc.metadata);
                self.env.priority_classes.insert(name.clone(), pc.value);
                if pc.global_default == Some(true) {
                    self.env.default_priority = Some((name, pc.value));
                }
            }
            Obj::Namespace(n) => {
                self.env.namespaces.insert(
                    name_of(&n.metadata),
                    n.metadata.labels.clone().unwrap_or_default(),
                );
            }
            Obj::Node(n) => {
                let node = super::nodes::node(ctx, at, n)?;
                if nodes
                    .index
                    .insert(node.name.clone(), nodes.list.len())
                    .is_some()
                {
                    ctx.note(
                        at,
                        &Path::root(),
                        format!("Node {} appears twice; the last one is used", node.name),
                    );
                }
                nodes.list.push(node);
            }
            Obj::Deployment(d) => {
                self.deployments
                    .insert((ns_of(&d.metadata), name_of(&d.metadata)));
            }
            Obj::ReplicaSet(r) => {
                if let Some(o) = controller_of(&r.metadata) {
                    self.rs_owner
                        .insert((ns_of(&r.metadata), name_of(&r.metadata)), o);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Credits a pod already in the input to its controller (and to the
    /// Deployment above its ReplicaSet), so that only the missing pods are planned.
    fn credit(&mut self, p: &core::Pod) {
        if terminal(p) {
            return;
        }
        let Some(owner) = controller_of(&p.metadata) else {
            return;
        };
        let ns = ns_of(&p.metadata);
        let name = name_of(&p.metadata);
        self.suffixes.reserve(&name);
        if owner.kind == "ReplicaSet"
            && let Some(d) = self.rs_owner.get(&(ns.clone(), owner.name.clone()))
            && d.kind == "Deployment"
        {
            self.existing
                .entry((d.kind.clone(), ns.clone(), d.name.clone()))
                .or_default()
                .push(name.clone());
        }
        self.existing
            .entry((owner.kind, ns, owner.name))
            .or_default()
            .push(name);
    }

    /// Pass 2: one object's pods (or overhead).
    fn object(
        &mut self,
        ctx: &mut Ctx,
        at: &At,
        o: &Obj,
        nodes: &mut Nodes,
    ) -> Result<(), WorkloadError> {
        match o {
            Obj::Pod(p) => self.pod(ctx, at, p, nodes),
            Obj::Deployment(d) => self.deployment(ctx, at, d),
            Obj::ReplicaSet(r) => self.replica_set(ctx, at, r),
            Obj::StatefulSet(s) => self.stateful_set(ctx, at, s),
            Obj::DaemonSet(d) => self.daemon_set(ctx, at, d),
            Obj::Job(j) => self.job_object(ctx, at, j),
            Obj::CronJob(c) => self.cron_job(ctx, at, c),
            _ => Ok(()),
        }
    }

    /// A bare Pod: pending (planned), bound to a node (counted there),
    /// finished or a DaemonSet's (skipped).
    fn pod(
        &mut self,
        ctx: &mut Ctx,
        at: &At,
        p: &core::Pod,
        nodes: &mut Nodes,
    ) -> Result<(), WorkloadError> {
        let ns = ns_of(&p.metadata);
        let spec = required(ctx, at, "Pod", p.spec.as_ref())?;
        let owner = controller_of(&p.metadata);
        let name = self.pod_name(ctx, at, &ns, &p.metadata)?;
        let labels = p.metadata.labels.clone().unwrap_or_default();
        labels::check_map(ctx, at, &Path::dotted("metadata.labels"), &labels)?;
        if terminal(p) {
            return Ok(());
        }
        if let Some(node) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
            let pod = BoundPod {
                namespace: ns,
                name,
                labels,
                host_ports: pods::host_ports(spec),
            };
            return bind(ctx, at, spec, node, pod, nodes);
        }
        if owner.as_ref().is_some_and(|o| o.kind == "DaemonSet") {
            ctx.note(at, &Path::root(), format!("Pod {ns}/{name} belongs to a DaemonSet: counted as per-node overhead (via its DaemonSet), not as a pending pod"));
            return Ok(());
        }
        let who = Who {
            kind: "Pod",
            ns: &ns,
            name: &name,
        };
        self.budget(ctx, at, who, &Path::root(), 1, false)?;
        ctx.object = who.to_string();
        let shape = pods::shape(ctx, at, &Path::dotted("spec"), spec, &labels, &self.env)?;
        let pods = Pods {
            ns: &ns,
            labels: &labels,
            owner: owner.as_ref(),
            shape: &shape,
            spec,
        };
        self.add_pods(ctx, at, &pods, vec![name], |_| Vec::new());
        Ok(())
    }

    /// A pod's name: `metadata.name`, or one made from `generateName`.
    fn pod_name(
        &mut self,
        ctx: &Ctx,
        at: &At,
        ns: &str,
        m: &ObjectMeta,
    ) -> Result<String, WorkloadError> {
        match (&m.name, &m.generate_name) {
            (Some(n), _) if !n.is_empty() => Ok(n.clone()),
            (_, Some(g)) => Ok(self.suffixes.next(g, &format!("{ns}/{g}"), 0)),
            _ => Err(ctx.error(
                at,
                &Path::dotted("metadata"),
                ErrorKind::Schema,
                "Pod: metadata.name or metadata.generateName is required".into(),
                None,
            )),
        }
    }

    fn deployment(&mut self, ctx: &mut Ctx, at: &At, d: &Deployment) -> Result<(), WorkloadError> {
        let spec = required(ctx, at, "Deployment", d.spec.as_ref())?;
        let r = Replicated {
            kind: "Deployment",
            ns: ns_of(&d.metadata),
            name: name_of(&d.metadata),
            replicas: spec.replicas,
            template: Some(&spec.template),
        };
        let Some(mut want) = self.replicated(ctx, at, &r)? else {
            return Ok(());
        };
        let n = self.how_many(ctx, at, r.who(), want.count);
        let hash = names::template_hash(&serde_json::to_string(&spec.template).unwrap_or_default());
        want.labels.insert("pod-template-hash".into(), hash.clone());
        let prefix = format!("{}-{hash}-", r.name);
        let seed = format!("{}/{}/{hash}", r.ns, r.name);
        let names = self.suffixed(&prefix, &seed, n);
        self.place(ctx, at, &r, &want, names, |_| Vec::new())
    }

    fn replica_set(
        &mut self,
        ctx: &mut Ctx,
        at: &At,
        rs: &ReplicaSet,
    ) -> Result<(), WorkloadError> {
        let (ns, name) = (ns_of(&rs.metadata), name_of(&rs.metadata));
        if let Some(o) = self.rs_owner.get(&(ns.clone(), name.clone()))
            && o.kind == "Deployment"
            && self.deployments.contains(&(ns.clone(), o.name.clone()))
        {
            ctx.note(at, &Path::root(), format!("ReplicaSet {ns}/{name} belongs to Deployment {}, which is in the input: the Deployment is planned instead", o.name));
            return Ok(());
        }
        let spec = required(ctx, at, "ReplicaSet", rs.spec.as_ref())?;
        let r = Replicated {
            kind: "ReplicaSet",
            ns,
            name,
            replicas: spec.replicas,
            template: spec.template.as_ref(),
        };
        let Some(want) = self.replicated(ctx, at, &r)? else {
            return Ok(());
        };
        let n = self.how_many(ctx, at, r.who(), want.count);
        let names = self.suffixed(&format!("{}-", r.name), &format!("{}/{}", r.ns, r.name), n);
        self.place(ctx, at, &r, &want, names, |_| Vec::new())
    }

    fn stateful_set(
        &mut self,
        ctx: &mut Ctx,
        at: &At,
        s: &StatefulSet,
    ) -> Result<(), WorkloadError> {
        let spec = required(ctx, at, "StatefulSet", s.spec.as_ref())?;
        let r = Replicated {
            kind: "StatefulSet",
            ns: ns_of(&s.metadata),
            name: name_of(&s.metadata),
            replicas: spec.replicas,
            template: Some(&spec.template),
        };
        let Some(want) = self.replicated(ctx, at, &r)? else {
            return Ok(());
        };
        let start_field = spec.ordinals.as_ref().and_then(|o| o.start);
        let start = count(
            ctx,
            at,
            r.who(),
            &Path::dotted("spec.ordinals.start"),
            start_field,
            0,
        )?;
        let ordinals = self.missing_ordinals(ctx, at, &r, start as usize, want.count as usize);
        let templates: Vec<(String, core::PersistentVolumeClaimSpec)> = spec
            .volume_claim_templates
            .iter()
            .flatten()
            .map(|t| (name_of(&t.metadata), t.spec.clone().unwrap_or_default()))
            .collect();
        let name = &r.name;
        let names: Vec<String> = ordinals.iter().map(|i| format!("{name}-{i}")).collect();
        let claims_of = |k: usize| -> Vec<(String, core::PersistentVolumeClaimSpec)> {
            templates
                .iter()
                .map(|(t, s)| (format!("{t}-{name}-{}", ordinals[k]), s.clone()))
                .collect()
        };
        self.place(ctx, at, &r, &want, names, claims_of)
    }

    /// A StatefulSet's ordinals `start..start + n` whose pods are not in the input.
    fn missing_ordinals(
        &self,
        ctx: &mut Ctx,
        at: &At,
        r: &Replicated,
        start: usize,
        n: usize,
    ) -> Vec<usize> {
        let name = &r.name;
        let have: BTreeSet<String> = self
            .existing
            .get(&("StatefulSet".to_string(), r.ns.clone(), name.clone()))
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default();
        let ordinals: Vec<usize> = (start..start + n)
            .filter(|i| !have.contains(&format!("{name}-{i}")))
            .collect();
        if ordinals.len() < n {
            ctx.note(
                at,
                &Path::root(),
                format!(
                    "StatefulSet {}/{name}: {} of its pods are in the input; planning the others",
                    r.ns,
                    n - ordinals.len()
                ),
            );
        }
        ordinals
    }

    /// The shared start of a replicated object: its template (labels
    /// checked) and replica count (override applied, bounds checked).
    /// `None` when it plans no pods (noted).
    fn replicated<'o>(
        &mut self,
        ctx: &mut Ctx,
        at: &At,
        r: &Replicated<'o>,
    ) -> Result<Option<Want<'o>>, WorkloadError> {
        let (spec, labels) = template(ctx, at, r.kind, "spec.template", r.template)?;
        let path = Path::dotted("spec.replicas");
        let declared = count(ctx, at, r.who(), &path, r.replicas, 1)?;
        let (n, overridden) = self.replicas.get(&r.ns, &r.name, declared);
        if n == 0 {
            zero_note(ctx, at, r.who(), overridden);
            return Ok(None);
        }
        self.budget(ctx, at, r.who(), &path, n, overridden)?;
        Ok(Some(Want {
            spec,
            labels,
            count: n,
        }))
    }

    /// The shared end of a replicated object: its constraints, and `names` as its pods.
    fn place(
        &mut self,
        ctx: &mut Ctx,
        at: &At,
        r: &Replicated,
        want: &Want,
        names: Vec<String>,
        claims_of: impl Fn(usize) -> Vec<(String, core::PersistentVolumeClaimSpec)>,
    ) -> Result<(), WorkloadError> {
        let sp = Path::dotted("spec.template.spec");
        ctx.object = r.who().to_string();
        let shape = pods::shape(ctx, at, &sp, want.spec, &want.labels, &self.env)?;
        let owner = OwnerRef {
            kind: r.kind.into(),
            name: r.name.clone(),
        };
        let pods = Pods {
            ns: &r.ns,
            labels: &want.labels,
            owner: Some(&owner),
            shape: &shape,
            spec: want.spec,
        };
        self.add_pods(ctx, at, &pods, names, claims_of);
        Ok(())
    }

    /// `n` names `prefix` + a unique suffix, as a ReplicaSet's pods get.
    fn suffixed(&mut self, prefix: &str, seed: &str, n: u32) -> Vec<String> {
        (0..n as usize)
            .map(|i| self.suffixes.next(prefix, seed, i))
            .collect()
    }

    fn daemon_set(&mut self, ctx: &mut Ctx, at: &At, d: &DaemonSet) -> Result<(), WorkloadError> {
        let spec = required(ctx, at, "DaemonSet", d.spec.as_ref())?;
        let (pspec, labels) =
            template(ctx, at, "DaemonSet", "spec.template", Some(&spec.template))?;
        let sp = Path::dotted("spec.template.spec");
        let requests = pods::pod_requests(ctx, at, &sp, pspec)?;
        let (node_selector, required_affinity, _) = pods::node_constraints(ctx, at, &sp, pspec)?;
        let tolerations = pods::tolerations(ctx, at, &sp, pspec)?;
        self.daemonsets.push(DaemonSetOverhead {
            namespace: ns_of(&d.metadata),
            name: name_of(&d.metadata),
            requests,
            node_selector,
            required_affinity,
            tolerations,
            host_ports: pods::host_ports(pspec),
            labels,
        });
        Ok(())
    }

    fn job_object(&mut self, ctx: &mut Ctx, at: &At, j: &Job) -> Result<(), WorkloadError> {
        let (ns, name) = (ns_of(&j.metadata), name_of(&j.metadata));
        let spec = required(ctx, at, "Job", j.spec.as_ref())?;
        if j.status
            .as_ref()
            .is_some_and(|s| s.completion_time.is_some())
        {
            ctx.note(
                at,
                &Path::dotted("status"),
                format!("Job {ns}/{name} has completed: no pods planned"),
            );
            return Ok(());
        }
        let owner = controller_of(&j.metadata).unwrap_or(OwnerRef {
            kind: "Job".into(),
            name: name.clone(),
        });
        let run = JobRun {
            kind: "Job",
            ns,
            job_name: name.clone(),
            key_name: name,
            owner,
            spec,
            spec_path: Path::dotted("spec"),
        };
        self.job(ctx, at, &run)
    }

    fn cron_job(&mut self, ctx: &mut Ctx, at: &At, c: &CronJob) -> Result<(), WorkloadError> {
        let (ns, name) = (ns_of(&c.metadata), name_of(&c.metadata));
        let spec = required(ctx, at, "CronJob", c.spec.as_ref())?;
        if spec.suspend == Some(true) {
            ctx.note(
                at,
                &Path::dotted("spec.suspend"),
                format!("CronJob {ns}/{name} is suspended: no pods planned"),
            );
            return Ok(());
        }
        let job_spec = spec.job_template.spec.as_ref().ok_or_else(|| {
            ctx.error(
                at,
                &Path::dotted("spec.jobTemplate"),
                ErrorKind::Schema,
                "CronJob: `spec.jobTemplate.spec` is required".into(),
                None,
            )
        })?;
        let run = JobRun {
            kind: "CronJob",
            job_name: format!("{name}-{}", names::cron_id(&ns, &name, &spec.schedule)),
            ns,
            owner: OwnerRef {
                kind: "CronJob".into(),
                name: name.clone(),
            },
            key_name: name,
            spec: job_spec,
            spec_path: Path::dotted("spec.jobTemplate.spec"),
        };
        self.job(ctx, at, &run)
    }

    /// The pods of one Job run: those running at once.
    fn job(&mut self, ctx: &mut Ctx, at: &At, run: &JobRun) -> Result<(), WorkloadError> {
        let sp = &run.spec_path;
        let tpath = sp.key("template").to_string();
        let (pspec, mut labels) = template(ctx, at, run.kind, &tpath, Some(&run.spec.template))?;
        if run.spec.suspend == Some(true) {
            ctx.note(
                at,
                &sp.key("suspend"),
                format!(
                    "{} {}/{} is suspended: no pods planned",
                    run.kind, run.ns, run.key_name
                ),
            );
            return Ok(());
        }
        let Some(n) = self.job_count(ctx, at, run)? else {
            return Ok(());
        };
        let who = Who {
            kind: "Job",
            ns: &run.ns,
            name: &run.job_name,
        };
        let n = self.how_many(ctx, at, who, n);
        let job_name = &run.job_name;
        labels.insert("batch.kubernetes.io/job-name".into(), job_name.clone());
        labels.insert("job-name".into(), job_name.clone());
        ctx.object = who.to_string();
        let shape = pods::shape(
            ctx,
            at,
            &sp.key("template").key("spec"),
            pspec,
            &labels,
            &self.env,
        )?;
        let seed = format!("{}/{job_name}", run.ns);
        let names = if run.spec.completion_mode.as_deref() == Some("Indexed") {
            (0..n as usize)
                .map(|i| self.suffixes.next(&format!("{job_name}-{i}-"), &seed, i))
                .collect()
        } else {
            self.suffixed(&format!("{job_name}-"), &seed, n)
        };
        let pods = Pods {
            ns: &run.ns,
            labels: &labels,
            owner: Some(&run.owner),
            shape: &shape,
            spec: pspec,
        };
        self.add_pods(ctx, at, &pods, names, |_| Vec::new());
        Ok(())
    }

    /// How many pods a Job run has at once: min(parallelism, completions),
    /// or the `--replicas` override of parallelism. `None` when zero (noted).
    fn job_count(
        &mut self,
        ctx: &mut Ctx,
        at: &At,
        run: &JobRun,
    ) -> Result<Option<u32>, WorkloadError> {
        let who = Who {
            kind: run.kind,
            ns: &run.ns,
            name: &run.key_name,
        };
        let sp = &run.spec_path;
        let parallelism = count(
            ctx,
            at,
            who,
            &sp.key("parallelism"),
            run.spec.parallelism,
            1,
        )?;
        let completions = match run.spec.completions {
            Some(c) => Some(count(ctx, at, who, &sp.key("completions"), Some(c), 0)?),
            None => None,
        };
        let (parallelism, overridden) = self.replicas.get(&run.ns, &run.key_name, parallelism);
        let (n, field) = match completions {
            Some(c) if !overridden && c < parallelism => (c, "completions"),
            _ => (parallelism, "parallelism"),
        };
        if n == 0 {
            zero_note(ctx, at, who, overridden);
            return Ok(None);
        }
        self.budget(ctx, at, who, &sp.key(field), n, overridden)?;
        Ok(Some(n))
    }

    /// Errors when `n` more pods for `who` (its count written at `path`)
    /// would pass the pods-per-plan ceiling; otherwise counts them.
    fn budget(
        &mut self,
        ctx: &Ctx,
        at: &At,
        who: Who,
        path: &Path,
        n: u32,
        overridden: bool,
    ) -> Result<(), WorkloadError> {
        let max = self.max_pods;
        let n = n as usize;
        let asked = self.asked.saturating_add(n);
        if n <= max && asked <= max {
            self.asked = asked;
            return Ok(());
        }
        let source = if overridden {
            format!("--replicas {}={n}", who.name)
        } else if path.0.is_empty() {
            "one more pod".to_string()
        } else {
            format!("{path} = {n}")
        };
        let message = if n > max {
            format!("{who}: {source} asks for {n} pods, more than the limit of {max} pods per plan")
        } else {
            format!(
                "{who}: {source} brings the plan to {asked} pods, more than the limit of {max} pods per plan"
            )
        };
        Err(ctx.error(
            at,
            path,
            ErrorKind::Limit,
            message,
            Some(format!(
                "a plan holds at most {max} pods (`--max-pods`); lower the count, or raise the limit if the plan really needs that many pods"
            )),
        ))
    }

    /// `wanted` less the pods of `who` already in the input (noted).
    fn how_many(&mut self, ctx: &mut Ctx, at: &At, who: Who, wanted: u32) -> u32 {
        let have = self
            .existing
            .get(&(
                who.kind.to_string(),
                who.ns.to_string(),
                who.name.to_string(),
            ))
            .map_or(0, |v| v.len() as u32);
        if have > 0 {
            ctx.note(
                at,
                &Path::root(),
                format!(
                    "{who}: {have} of its pods are in the input; planning the other {}",
                    wanted.saturating_sub(have)
                ),
            );
        }
        wanted.saturating_sub(have)
    }

    /// Zones a pod's volumes allow: its claims and `extra` (a StatefulSet's templates).
    fn volume_zones(
        &self,
        ctx: &mut Ctx,
        at: &At,
        ns: &str,
        pod_name: &str,
        spec: &core::PodSpec,
        extra: &[(String, core::PersistentVolumeClaimSpec)],
    ) -> VolumeZones {
        let mut parts = Vec::new();
        let mut claims: Vec<(String, Option<core::PersistentVolumeClaimSpec>)> = extra
            .iter()
            .map(|(n, s)| (n.clone(), Some(s.clone())))
            .collect();
        for v in spec.volumes.iter().flatten() {
            if let Some(pvc) = &v.persistent_volume_claim {
                if !claims.iter().any(|(n, _)| *n == pvc.claim_name) {
                    claims.push((pvc.claim_name.clone(), None));
                }
            } else if let Some(t) = v
                .ephemeral
                .as_ref()
                .and_then(|e| e.volume_claim_template.as_ref())
            {
                claims.push((format!("{pod_name}-{}", v.name), Some(t.spec.clone())));
            }
        }
        for (claim, tpl) in &claims {
            match self.storage.claim_zones(ns, claim, tpl.as_ref()) {
                ClaimZones::Any => {}
                ClaimZones::Zones(z, why) => parts.push((z, why)),
                ClaimZones::Unknown(why) => ctx.note(at, &Path::root(), why),
            }
        }
        volumes::combine(&parts)
    }

    /// Adds the pods `names` of one template; `claims_of(i)` are pod `i`'s own claims.
    fn add_pods(
        &mut self,
        ctx: &mut Ctx,
        at: &At,
        pods: &Pods,
        names: Vec<String>,
        claims_of: impl Fn(usize) -> Vec<(String, core::PersistentVolumeClaimSpec)>,
    ) {
        let key = pods::shape_key(pods.ns, pods.labels, pods.owner, pods.shape);
        for (i, name) in names.into_iter().enumerate() {
            let vz = self.volume_zones(ctx, at, pods.ns, &name, pods.spec, &claims_of(i));
            self.grouper.add(
                pods.ns,
                pods.labels,
                pods.owner,
                pods.shape,
                &key,
                name,
                &vz,
            );
        }
    }
}

/// Counts a pod bound to a node on that node (noted when the node is not in the input).
fn bind(
    ctx: &mut Ctx,
    at: &At,
    spec: &core::PodSpec,
    node: &str,
    pod: BoundPod,
    nodes: &mut Nodes,
) -> Result<(), WorkloadError> {
    let requests = pods::pod_requests(ctx, at, &Path::dotted("spec"), spec)?;
    match nodes.index.get(node) {
        Some(&i) => {
            nodes.list[i].used.add(&requests);
            nodes.list[i].pods.push(pod);
        }
        None => ctx.note(
            at,
            &Path::dotted("spec.nodeName"),
            format!(
                "Pod {}/{} is bound to node {node}, which is not in the input; not counted",
                pod.namespace, pod.name
            ),
        ),
    }
    Ok(())
}

/// A pod template's spec and labels (checked against Kubernetes' label rules).
fn template<'t>(
    ctx: &Ctx,
    at: &At,
    kind: &str,
    path: &str,
    t: Option<&'t core::PodTemplateSpec>,
) -> Result<(&'t core::PodSpec, BTreeMap<String, String>), WorkloadError> {
    let spec = t.and_then(|t| t.spec.as_ref()).ok_or_else(|| {
        ctx.error(
            at,
            &Path::dotted(path),
            ErrorKind::Schema,
            format!("{kind}: `{path}.spec` is required"),
            Some("the pod template says what each replica runs and requests".into()),
        )
    })?;
    let labels = t
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels::check_map(
        ctx,
        at,
        &Path::dotted(path).key("metadata").key("labels"),
        &labels,
    )?;
    Ok((spec, labels))
}

/// Notes an object with zero pods (unless `--replicas` asked for zero).
fn zero_note(ctx: &mut Ctx, at: &At, who: Who, overridden: bool) {
    if !overridden {
        ctx.note(
            at,
            &Path::dotted("spec.replicas"),
            format!(
                "{who} has 0 replicas: no pods planned (use --replicas {}=N)",
                who.name
            ),
        );
    }
}
