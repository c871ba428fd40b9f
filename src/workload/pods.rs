//! A pod spec → the scheduling constraints of a `PodClass`, and the grouping
//! of identical pods into classes.
//!
//! Semantics follow kube-scheduler: effective requests (init containers,
//! sidecars, overhead, pod-level resources, limits defaulting requests),
//! node selector and affinity, tolerations, topology spread (with
//! matchLabelKeys folded in) and inter-pod (anti-)affinity.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

use super::ctx::{At, Ctx};
use super::error::{ErrorKind, WorkloadError};
use super::labels;
use super::yaml::Path;
use super::{
    ALL_HOST_IPS, HostPort, LabelSelector, OwnerRef, PodAffinityTerm, PodClass, Toleration,
    TolerationOperator, TopologySpread,
};
use crate::ir::{Operator, Quantity, Requirement, Requirements, Resources, TaintEffect};

/// What the loader knows about the cluster besides pods, used while reading specs.
#[derive(Debug, Default)]
pub(super) struct Env {
    /// PriorityClass name → value.
    pub priority_classes: BTreeMap<String, i32>,
    /// The PriorityClass with `globalDefault: true`, if any.
    pub default_priority: Option<(String, i32)>,
    /// Namespace name → labels, for namespaceSelectors.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

/// Every scheduling-relevant property of a pod except its name and volumes.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Shape {
    pub requests: Resources,
    pub node_selector: Requirements,
    pub required_affinity: Vec<Requirements>,
    pub preferred_affinity: Vec<(i32, Requirements)>,
    pub tolerations: Vec<Toleration>,
    pub topology_spread: Vec<TopologySpread>,
    pub pod_affinity: Vec<PodAffinityTerm>,
    pub priority_class: Option<String>,
    pub priority: i32,
    pub host_ports: Vec<HostPort>,
}

fn quantity(
    ctx: &Ctx,
    at: &At,
    path: &Path,
    q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity,
) -> Result<Quantity, WorkloadError> {
    match Quantity::parse(&q.0) {
        Ok(v) if v.is_negative() => Err(ctx.error(
            at,
            path,
            ErrorKind::Quantity,
            format!("{path}: negative quantity `{}`", q.0),
            Some("requests, limits and capacities must be zero or more".into()),
        )),
        Ok(v) => Ok(v),
        Err(e) => Err(ctx.error(
            at,
            path,
            ErrorKind::Quantity,
            format!("{path}: {e}"),
            Some(e.help().to_string()),
        )),
    }
}

/// A resource list (`requests`, `allocatable`, ...) as a resource vector.
pub(super) fn resource_list(
    ctx: &Ctx,
    at: &At,
    path: &Path,
    list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> Result<Resources, WorkloadError> {
    let mut r = Resources::zero();
    for (name, q) in list.into_iter().flatten() {
        r.set(name, quantity(ctx, at, &path.key(name), q)?);
    }
    Ok(r)
}

/// One container's requests, with limits standing in for absent requests
/// (the API server's defaulting).
fn container_requests(
    ctx: &Ctx,
    at: &At,
    path: &Path,
    c: &core::Container,
) -> Result<Resources, WorkloadError> {
    let Some(res) = &c.resources else {
        return Ok(Resources::zero());
    };
    let rp = path.key("resources");
    let mut r = resource_list(ctx, at, &rp.key("requests"), res.requests.as_ref())?;
    for (name, q) in res.limits.iter().flatten() {
        let lp = rp.key("limits").key(name);
        let v = quantity(ctx, at, &lp, q)?;
        if !res.requests.as_ref().is_some_and(|m| m.contains_key(name)) {
            r.set(name, v);
        }
    }
    Ok(r)
}

/// The host ports a pod holds, as kube-scheduler's NodePorts plugin reads
/// them (`GetHostPorts` in pkg/scheduler/util): every port with a
/// `hostPort` above 0 of the app containers and of the init containers that
/// run beside them (`restartPolicy: Always`, sidecars); protocol TCP and
/// address 0.0.0.0 when unset. Sorted, without duplicates.
pub(super) fn host_ports(spec: &core::PodSpec) -> Vec<HostPort> {
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    let mut out: Vec<HostPort> = spec
        .containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|h| *h > 0)?;
            Some(HostPort {
                port,
                protocol: p
                    .protocol
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "TCP".into()),
                host_ip: p
                    .host_ip
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| ALL_HOST_IPS.into()),
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Effective requests of a pod, as kube-scheduler computes them:
/// max(app containers + sidecars, each init container + sidecars started
/// before it), pod-level requests where given, plus overhead; `pods` = 1.
pub(super) fn pod_requests(
    ctx: &Ctx,
    at: &At,
    spec_path: &Path,
    spec: &core::PodSpec,
) -> Result<Resources, WorkloadError> {
    let mut app = Resources::zero();
    for (i, c) in spec.containers.iter().enumerate() {
        app.add(&container_requests(
            ctx,
            at,
            &spec_path.key("containers").idx(i),
            c,
        )?);
    }
    let mut sidecars = Resources::zero();
    let mut init_peak = Resources::zero();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let r = container_requests(ctx, at, &spec_path.key("initContainers").idx(i), c)?;
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            init_peak = init_peak.max(&sidecars);
        } else {
            let mut during = sidecars.clone();
            during.add(&r);
            init_peak = init_peak.max(&during);
        }
    }
    app.add(&sidecars);
    let mut total = app.max(&init_peak);
    if let Some(pod_level) = &spec.resources {
        let p = resource_list(
            ctx,
            at,
            &spec_path.key("resources").key("requests"),
            pod_level.requests.as_ref(),
        )?;
        for (name, _) in pod_level.requests.iter().flatten() {
            set_raw(&mut total, name, p.get(name));
        }
        for (name, q) in pod_level.limits.iter().flatten() {
            let has_req = pod_level
                .requests
                .as_ref()
                .is_some_and(|m| m.contains_key(name));
            if !has_req {
                let v = quantity(
                    ctx,
                    at,
                    &spec_path.key("resources").key("limits").key(name),
                    q,
                )?;
                total.set(name, v);
            }
        }
    }
    let overhead = resource_list(ctx, at, &spec_path.key("overhead"), spec.overhead.as_ref())?;
    total.add(&overhead);
    total.pods = 1;
    Ok(total)
}

fn set_raw(r: &mut Resources, name: &str, v: i64) {
    match name {
        "cpu" => r.cpu_milli = v,
        "memory" => r.memory = v,
        "ephemeral-storage" => r.ephemeral_storage = v,
        "pods" => r.pods = v,
        other => {
            r.extended.insert(other.to_string(), v);
        }
    }
}

/// A node selector term's matchExpressions as requirements (matchFields are
/// noted and ignored: they name specific nodes, which do not exist yet).
fn node_selector_term(
    ctx: &mut Ctx,
    at: &At,
    path: &Path,
    term: &core::NodeSelectorTerm,
) -> Result<Requirements, WorkloadError> {
    let mut reqs = Requirements::new();
    for (j, e) in term.match_expressions.iter().flatten().enumerate() {
        let ep = path.key("matchExpressions").idx(j);
        let op = Operator::parse(&e.operator).ok_or_else(|| {
            ctx.error(
                at,
                &ep.key("operator"),
                ErrorKind::Selector,
                format!("{}: unknown operator `{}`", ep.key("operator"), e.operator),
                Some("node selector operators are In, NotIn, Exists, DoesNotExist, Gt, Lt".into()),
            )
        })?;
        let values: Vec<String> = e.values.clone().unwrap_or_default();
        check_values(ctx, at, &ep, op, &values, true)?;
        labels::check_key(ctx, at, &ep.key("key"), &e.key)?;
        reqs.add(&Requirement {
            key: e.key.clone(),
            op,
            values,
            min_values: None,
            origin: None,
        });
    }
    if term.match_fields.as_ref().is_some_and(|f| !f.is_empty()) {
        ctx.note(
            at,
            &path.key("matchFields"),
            format!(
                "{}: matchFields ignored (they select existing nodes by name; new nodes have no name yet)",
                path.key("matchFields")
            ),
        );
    }
    Ok(reqs)
}

/// Kubernetes' validation of an expression's values for its operator.
fn check_values(
    ctx: &Ctx,
    at: &At,
    path: &Path,
    op: Operator,
    values: &[String],
    node: bool,
) -> Result<(), WorkloadError> {
    let vp = path.key("values");
    let bad = |msg: String, help: &str| {
        Err(ctx.error(at, &vp, ErrorKind::Selector, msg, Some(help.to_string())))
    };
    match op {
        Operator::In | Operator::NotIn if values.is_empty() => bad(
            format!("{path}: operator {} needs at least one value", op.as_str()),
            "list the values, or use Exists / DoesNotExist",
        ),
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => bad(
            format!("{path}: operator {} takes no values", op.as_str()),
            "remove `values`, or use In / NotIn",
        ),
        Operator::Gt | Operator::Lt if !node => bad(
            format!(
                "{path}: operator {} is not allowed in a label selector",
                op.as_str()
            ),
            "label selectors accept In, NotIn, Exists, DoesNotExist",
        ),
        Operator::Gt | Operator::Lt if values.len() != 1 || values[0].parse::<i64>().is_err() => {
            bad(
                format!(
                    "{path}: operator {} needs exactly one integer value",
                    op.as_str()
                ),
                "write e.g. `values: [\"5\"]`",
            )
        }
        _ => Ok(()),
    }
}

/// A Kubernetes LabelSelector as ours; `None` stays `None` (it selects nothing).
pub(super) fn label_selector(
    ctx: &Ctx,
    at: &At,
    path: &Path,
    sel: &meta::LabelSelector,
) -> Result<LabelSelector, WorkloadError> {
    let mut out = LabelSelector {
        match_labels: sel.match_labels.clone().unwrap_or_default(),
        match_expressions: Vec::new(),
    };
    labels::check_map(ctx, at, &path.key("matchLabels"), &out.match_labels)?;
    for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
        let ep = path.key("matchExpressions").idx(i);
        let op = match Operator::parse(&e.operator) {
            Some(
                op @ (Operator::In | Operator::NotIn | Operator::Exists | Operator::DoesNotExist),
            ) => op,
            _ => {
                return Err(ctx.error(
                    at,
                    &ep.key("operator"),
                    ErrorKind::Selector,
                    format!(
                        "{}: unknown label selector operator `{}`",
                        ep.key("operator"),
                        e.operator
                    ),
                    Some("label selectors accept In, NotIn, Exists, DoesNotExist".into()),
                ));
            }
        };
        let values = e.values.clone().unwrap_or_default();
        check_values(ctx, at, &ep, op, &values, false)?;
        labels::check_key(ctx, at, &ep.key("key"), &e.key)?;
        labels::check_values(ctx, at, &ep.key("values"), &values)?;
        out.match_expressions.push((e.key.clone(), op, values));
    }
    Ok(out)
}

fn toleration(
    ctx: &Ctx,
    at: &At,
    path: &Path,
    t: &core::Toleration,
) -> Result<Toleration, WorkloadError> {
    let operator = match t.operator.as_deref() {
        None | Some("") | Some("Equal") => TolerationOperator::Equal,
        Some("Exists") => TolerationOperator::Exists,
        Some(other) => {
            return Err(ctx.error(
                at,
                &path.key("operator"),
                ErrorKind::Selector,
                format!(
                    "{}: unknown toleration operator `{other}`",
                    path.key("operator")
                ),
                Some("toleration operators are Equal (the default) and Exists".into()),
            ));
        }
    };
    let key = t.key.clone().filter(|k| !k.is_empty());
    if key.is_none() && operator == TolerationOperator::Equal {
        return Err(ctx.error(
            at,
            path,
            ErrorKind::Selector,
            format!("{path}: a toleration without a key must use operator Exists"),
            Some("add `operator: Exists` to tolerate every taint, or give a `key`".into()),
        ));
    }
    let value = t.value.clone().filter(|v| !v.is_empty());
    if operator == TolerationOperator::Exists && value.is_some() {
        return Err(ctx.error(
            at,
            &path.key("value"),
            ErrorKind::Selector,
            format!("{}: operator Exists takes no value", path.key("value")),
            Some("remove `value`, or use operator Equal".into()),
        ));
    }
    let effect = match t.effect.as_deref() {
        None | Some("") => None,
        Some(e) => Some(TaintEffect::parse(e).ok_or_else(|| {
            ctx.error(
                at,
                &path.key("effect"),
                ErrorKind::Selector,
                format!("{}: unknown taint effect `{e}`", path.key("effect")),
                Some("effects are NoSchedule, PreferNoSchedule, NoExecute".into()),
            )
        })?),
    };
    Ok(Toleration {
        key,
        operator,
        value,
        effect,
    })
}

/// Tolerations of a pod spec.
pub(super) fn tolerations(
    ctx: &Ctx,
    at: &At,
    spec_path: &Path,
    spec: &core::PodSpec,
) -> Result<Vec<Toleration>, WorkloadError> {
    spec.tolerations
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, t)| toleration(ctx, at, &spec_path.key("tolerations").idx(i), t))
        .collect()
}

/// nodeSelector, required node affinity terms (OR) and weighted preferred terms.
pub(super) type NodeConstraints = (Requirements, Vec<Requirements>, Vec<(i32, Requirements)>);

/// nodeSelector and required and preferred node affinity of a pod spec.
pub(super) fn node_constraints(
    ctx: &mut Ctx,
    at: &At,
    spec_path: &Path,
    spec: &core::PodSpec,
) -> Result<NodeConstraints, WorkloadError> {
    let mut node_selector = Requirements::new();
    if let Some(sel) = &spec.node_selector {
        labels::check_map(ctx, at, &spec_path.key("nodeSelector"), sel)?;
    }
    for (k, v) in spec.node_selector.iter().flatten() {
        node_selector.require_in(k, &[v.as_str()]);
    }
    let mut required = Vec::new();
    let mut preferred = Vec::new();
    if let Some(na) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
    {
        let np = spec_path.key("affinity").key("nodeAffinity");
        if let Some(sel) = &na.required_during_scheduling_ignored_during_execution {
            let tp = np
                .key("requiredDuringSchedulingIgnoredDuringExecution")
                .key("nodeSelectorTerms");
            for (i, term) in sel.node_selector_terms.iter().enumerate() {
                required.push(node_selector_term(ctx, at, &tp.idx(i), term)?);
            }
            if sel.node_selector_terms.is_empty() {
                return Err(ctx.error(
                    at,
                    &tp,
                    ErrorKind::Selector,
                    format!("{tp}: must have at least one term"),
                    Some(
                        "an empty list of terms matches no node; remove the affinity instead"
                            .into(),
                    ),
                ));
            }
        }
        let pp = np.key("preferredDuringSchedulingIgnoredDuringExecution");
        for (i, t) in na
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .enumerate()
        {
            let r = node_selector_term(ctx, at, &pp.idx(i).key("preference"), &t.preference)?;
            preferred.push((t.weight, r));
        }
    }
    Ok((node_selector, required, preferred))
}

fn fold_label_keys(
    sel: &mut LabelSelector,
    labels: &BTreeMap<String, String>,
    match_keys: Option<&Vec<String>>,
    mismatch_keys: Option<&Vec<String>>,
) {
    for k in match_keys.into_iter().flatten() {
        if let Some(v) = labels.get(k) {
            sel.match_expressions
                .push((k.clone(), Operator::In, vec![v.clone()]));
        }
    }
    for k in mismatch_keys.into_iter().flatten() {
        if let Some(v) = labels.get(k) {
            sel.match_expressions
                .push((k.clone(), Operator::NotIn, vec![v.clone()]));
        }
    }
}

/// Topology spread constraints, with matchLabelKeys folded into the selector.
pub(super) fn topology_spread(
    ctx: &mut Ctx,
    at: &At,
    spec_path: &Path,
    spec: &core::PodSpec,
    labels: &BTreeMap<String, String>,
) -> Result<Vec<TopologySpread>, WorkloadError> {
    let mut out = Vec::new();
    for (i, c) in spec
        .topology_spread_constraints
        .iter()
        .flatten()
        .enumerate()
    {
        let p = spec_path.key("topologySpreadConstraints").idx(i);
        if let Some(t) = spread_constraint(ctx, at, &p, c, labels)? {
            out.push(t);
        }
    }
    Ok(out)
}

/// One topology spread constraint at `p`; None when it has no labelSelector (noted).
fn spread_constraint(
    ctx: &mut Ctx,
    at: &At,
    p: &Path,
    c: &core::TopologySpreadConstraint,
    labels: &BTreeMap<String, String>,
) -> Result<Option<TopologySpread>, WorkloadError> {
    if c.max_skew < 1 {
        return Err(ctx.error(
            at,
            &p.key("maxSkew"),
            ErrorKind::Schema,
            format!(
                "{}: maxSkew must be at least 1, not {}",
                p.key("maxSkew"),
                c.max_skew
            ),
            None,
        ));
    }
    labels::check_key(ctx, at, &p.key("topologyKey"), &c.topology_key)?;
    let hard = match c.when_unsatisfiable.as_str() {
        "DoNotSchedule" => true,
        "ScheduleAnyway" => false,
        other => {
            return Err(ctx.error(
                at,
                &p.key("whenUnsatisfiable"),
                ErrorKind::Schema,
                format!("{}: unknown value `{other}`", p.key("whenUnsatisfiable")),
                Some("use DoNotSchedule or ScheduleAnyway".into()),
            ));
        }
    };
    let honor_node_affinity = policy(
        ctx,
        at,
        p,
        "nodeAffinityPolicy",
        c.node_affinity_policy.as_ref(),
        true,
    )?;
    let honor_node_taints = policy(
        ctx,
        at,
        p,
        "nodeTaintsPolicy",
        c.node_taints_policy.as_ref(),
        false,
    )?;
    let Some(ls) = &c.label_selector else {
        ctx.note(
            at,
            p,
            format!("{p}: no labelSelector, so it counts no pods and constrains nothing (as in kube-scheduler); ignored"),
        );
        return Ok(None);
    };
    let mut selector = label_selector(ctx, at, &p.key("labelSelector"), ls)?;
    fold_label_keys(&mut selector, labels, c.match_label_keys.as_ref(), None);
    if let Some(m) = c.min_domains
        && m < 1
    {
        return Err(ctx.error(
            at,
            &p.key("minDomains"),
            ErrorKind::Schema,
            format!("{}: minDomains must be at least 1", p.key("minDomains")),
            None,
        ));
    }
    Ok(Some(TopologySpread {
        max_skew: c.max_skew as u32,
        topology_key: c.topology_key.clone(),
        hard,
        min_domains: c.min_domains.map(|m| m as u32),
        selector,
        honor_node_affinity,
        honor_node_taints,
    }))
}

/// A spread constraint's `nodeAffinityPolicy` / `nodeTaintsPolicy`: Honor
/// (true), Ignore (false), or `default` when unset.
fn policy(
    ctx: &Ctx,
    at: &At,
    p: &Path,
    field: &str,
    v: Option<&String>,
    default: bool,
) -> Result<bool, WorkloadError> {
    match v.map(|s| s.as_str()) {
        None => Ok(default),
        Some("Honor") => Ok(true),
        Some("Ignore") => Ok(false),
        Some(other) => Err(ctx.error(
            at,
            &p.key(field),
            ErrorKind::Schema,
            format!("{}: unknown policy `{other}`", p.key(field)),
            Some("use Honor or Ignore".into()),
        )),
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one term's place, content and the pod's context; a struct would only rename them"
)]
fn affinity_term(
    ctx: &mut Ctx,
    at: &At,
    path: &Path,
    t: &core::PodAffinityTerm,
    anti: bool,
    weight: Option<i32>,
    labels: &BTreeMap<String, String>,
    env: &Env,
) -> Result<Option<PodAffinityTerm>, WorkloadError> {
    labels::check_key(ctx, at, &path.key("topologyKey"), &t.topology_key)?;
    let Some(ls) = &t.label_selector else {
        ctx.note(
            at,
            path,
            format!("{path}: no labelSelector, so it matches no pods; ignored"),
        );
        return Ok(None);
    };
    let mut selector = label_selector(ctx, at, &path.key("labelSelector"), ls)?;
    fold_label_keys(
        &mut selector,
        labels,
        t.match_label_keys.as_ref(),
        t.mismatch_label_keys.as_ref(),
    );
    let mut namespaces: BTreeSet<String> = t.namespaces.iter().flatten().cloned().collect();
    let mut all_namespaces = false;
    if let Some(ns_sel) = &t.namespace_selector {
        let s = label_selector(ctx, at, &path.key("namespaceSelector"), ns_sel)?;
        if s == LabelSelector::default() {
            all_namespaces = true;
        } else {
            let matched: Vec<&String> = env
                .namespaces
                .iter()
                .filter(|(_, l)| s.matches(l))
                .map(|(n, _)| n)
                .collect();
            if env.namespaces.is_empty() {
                ctx.note(
                    at,
                    &path.key("namespaceSelector"),
                    format!(
                        "{}: {}: namespaceSelector ignored: no Namespace objects in the input to match it against; only the listed namespaces are counted",
                        ctx.object,
                        path.key("namespaceSelector")
                    ),
                );
            }
            namespaces.extend(matched.into_iter().cloned());
        }
    }
    Ok(Some(PodAffinityTerm {
        anti,
        weight,
        topology_key: t.topology_key.clone(),
        selector,
        namespaces: namespaces.into_iter().collect(),
        all_namespaces,
    }))
}

/// Pod affinity and anti-affinity terms, required and preferred.
pub(super) fn pod_affinity(
    ctx: &mut Ctx,
    at: &At,
    spec_path: &Path,
    spec: &core::PodSpec,
    labels: &BTreeMap<String, String>,
    env: &Env,
) -> Result<Vec<PodAffinityTerm>, WorkloadError> {
    let mut out = Vec::new();
    let Some(aff) = &spec.affinity else {
        return Ok(out);
    };
    let groups = [
        (
            false,
            "podAffinity",
            aff.pod_affinity.as_ref().map(|a| {
                (
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref(),
                    a.preferred_during_scheduling_ignored_during_execution
                        .as_ref(),
                )
            }),
        ),
        (
            true,
            "podAntiAffinity",
            aff.pod_anti_affinity.as_ref().map(|a| {
                (
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref(),
                    a.preferred_during_scheduling_ignored_during_execution
                        .as_ref(),
                )
            }),
        ),
    ];
    for (anti, field, terms) in groups {
        let Some((req, pref)) = terms else { continue };
        let base = spec_path.key("affinity").key(field);
        for (i, t) in req.into_iter().flatten().enumerate() {
            let p = base
                .key("requiredDuringSchedulingIgnoredDuringExecution")
                .idx(i);
            if let Some(term) = affinity_term(ctx, at, &p, t, anti, None, labels, env)? {
                out.push(term);
            }
        }
        for (i, w) in pref.into_iter().flatten().enumerate() {
            let p = base
                .key("preferredDuringSchedulingIgnoredDuringExecution")
                .idx(i)
                .key("podAffinityTerm");
            if let Some(term) = affinity_term(
                ctx,
                at,
                &p,
                &w.pod_affinity_term,
                anti,
                Some(w.weight),
                labels,
                env,
            )? {
                out.push(term);
            }
        }
    }
    Ok(out)
}

/// Every constraint of a pod spec, read once per template.
pub(super) fn shape(
    ctx: &mut Ctx,
    at: &At,
    spec_path: &Path,
    spec: &core::PodSpec,
    labels: &BTreeMap<String, String>,
    env: &Env,
) -> Result<Shape, WorkloadError> {
    let requests = pod_requests(ctx, at, spec_path, spec)?;
    let (node_selector, required_affinity, preferred_affinity) =
        node_constraints(ctx, at, spec_path, spec)?;
    let tolerations = tolerations(ctx, at, spec_path, spec)?;
    let topology_spread = topology_spread(ctx, at, spec_path, spec, labels)?;
    let pod_affinity = pod_affinity(ctx, at, spec_path, spec, labels, env)?;
    let (priority_class, priority) = match (&spec.priority_class_name, spec.priority) {
        (pc, Some(p)) => (pc.clone(), p),
        (Some(pc), None) => {
            let v = match env.priority_classes.get(pc) {
                Some(v) => *v,
                None => match pc.as_str() {
                    "system-node-critical" => 2_000_001_000,
                    "system-cluster-critical" => 2_000_000_000,
                    _ => {
                        ctx.note(
                            at,
                            &spec_path.key("priorityClassName"),
                            format!(
                                "PriorityClass `{pc}` is not in the input; priority taken as 0"
                            ),
                        );
                        0
                    }
                },
            };
            (Some(pc.clone()), v)
        }
        (None, None) => match &env.default_priority {
            Some((n, v)) => (Some(n.clone()), *v),
            None => (None, 0),
        },
    };
    Ok(Shape {
        requests,
        node_selector,
        required_affinity,
        preferred_affinity,
        tolerations,
        topology_spread,
        pod_affinity,
        priority_class,
        priority,
        host_ports: host_ports(spec),
    })
}

/// Zones a pod's volumes allow, with the reason, or None when unconstrained.
pub(super) type VolumeZones = Option<(Vec<String>, String)>;

/// The grouping key of everything but volume zones; computed once per template.
pub(super) fn shape_key(
    namespace: &str,
    labels: &BTreeMap<String, String>,
    owner: Option<&OwnerRef>,
    shape: &Shape,
) -> String {
    serde_json::to_string(&(
        namespace,
        labels,
        owner,
        &shape.requests,
        &shape.node_selector,
        &shape.required_affinity,
        &shape.preferred_affinity,
        &shape.tolerations,
        &shape.topology_spread,
        &shape.pod_affinity,
        (&shape.priority_class, shape.priority),
        &shape.host_ports,
    ))
    .unwrap_or_default()
}

/// Collects pods into classes: identical namespace, labels, owner, constraints
/// and volume zones share one class, in order of first appearance.
#[derive(Debug, Default)]
pub(super) struct Grouper {
    index: HashMap<String, usize>,
    classes: Vec<PodClass>,
    reasons: Vec<Vec<String>>,
    ids: HashMap<String, usize>,
}

impl Grouper {
    /// Adds one pod.
    #[allow(
        clippy::too_many_arguments,
        reason = "the grouping key's parts, computed once per template by the caller"
    )]
    pub(super) fn add(
        &mut self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        owner: Option<&OwnerRef>,
        shape: &Shape,
        shape_key: &str,
        name: String,
        volumes: &VolumeZones,
    ) {
        let zones = volumes.as_ref().map(|(z, _)| z.clone());
        let mut key = String::with_capacity(shape_key.len() + 32);
        key.push_str(shape_key);
        key.push_str(&serde_json::to_string(&zones).unwrap_or_default());
        let i = match self.index.get(&key) {
            Some(i) => *i,
            None => {
                let base = match owner {
                    Some(o) => format!("{namespace}/{}/{}", o.kind.to_lowercase(), o.name),
                    None => format!("{namespace}/pod/{name}"),
                };
                let n = self.ids.entry(base.clone()).or_insert(0);
                *n += 1;
                let id = if *n == 1 { base } else { format!("{base}#{n}") };
                self.classes.push(PodClass {
                    id,
                    namespace: namespace.to_string(),
                    pod_names: Vec::new(),
                    labels: labels.clone(),
                    owner: owner.cloned(),
                    priority_class: shape.priority_class.clone(),
                    priority: shape.priority,
                    requests: shape.requests.clone(),
                    node_selector: shape.node_selector.clone(),
                    required_affinity: shape.required_affinity.clone(),
                    preferred_affinity: shape.preferred_affinity.clone(),
                    tolerations: shape.tolerations.clone(),
                    topology_spread: shape.topology_spread.clone(),
                    pod_affinity: shape.pod_affinity.clone(),
                    volume_zones: zones,
                    volume_reason: None,
                    host_ports: shape.host_ports.clone(),
                });
                self.reasons.push(Vec::new());
                self.index.insert(key, self.classes.len() - 1);
                self.classes.len() - 1
            }
        };
        self.classes[i].pod_names.push(name);
        if let Some((_, why)) = volumes {
            let r = &mut self.reasons[i];
            if !r.contains(why) {
                r.push(why.clone());
            }
        }
    }

    /// The classes, with volume reasons summarised.
    pub(super) fn finish(mut self) -> Vec<PodClass> {
        for (c, r) in self.classes.iter_mut().zip(self.reasons) {
            c.volume_reason = match r.len() {
                0 => None,
                1..=3 => Some(r.join("; ")),
                n => Some(format!("{}; and {} more", r[..3].join("; "), n - 3)),
            };
        }
        self.classes
    }
}
