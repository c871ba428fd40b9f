//! Karpenter objects (the [`super::yaml`] models) → policy AST.
//!
//! Each Karpenter field maps to one policy statement; see `docs/import.md`
//! for the table. Checks that need more than one field (role vs. instance
//! profile, Gt on a non-integer, price with priceAdjustment, duplicate names)
//! happen here, located with [`super::locate`], because an imported AST has no
//! spans of its own for the policy checker to point at.

// Import errors carry their source snippet; they are built once per failed import (cold path).
#![allow(
    clippy::result_large_err,
    reason = "import errors carry their source snippet and are built once per failed import"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::yaml::*;
use super::{Doc, ImportError, ImportWarning, Imported, Parsed, Source, join_errors};
use crate::ir::{Operator, Quantity};
use crate::policy::ast::{self, KeyValue, Span, Word};

/// Annotations written by Karpenter's controllers or kubectl: not user intent.
const CONTROLLER_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    "karpenter.sh/nodepool-hash",
    "karpenter.sh/nodepool-hash-version",
    "karpenter.k8s.aws/ec2nodeclass-hash",
    "karpenter.k8s.aws/ec2nodeclass-hash-version",
    "karpenter.sh/provisioner-hash",
    "karpenter.k8s.aws/awsnodetemplate-hash",
];

const DESCRIPTION: &str = "kubernetes.io/description";

struct Ctx {
    errors: Vec<ImportError>,
    warnings: Vec<ImportWarning>,
    descriptions: Vec<(String, String)>,
}

fn w(s: impl Into<String>) -> Word {
    Word::new(s)
}

fn kv(k: impl Into<String>, v: impl Into<String>) -> KeyValue {
    KeyValue::new(k, v)
}

/// A word spanning the YAML it came from.
fn at_span(s: impl Into<String>, span: Span) -> Word {
    Word {
        text: s.into(),
        span,
    }
}

/// A key/value pair spanning the YAML key it came from.
fn kv_at(k: impl Into<String>, v: impl Into<String>, span: Span) -> KeyValue {
    KeyValue {
        key: at_span(k, span),
        value: at_span(v, span),
        span,
    }
}

/// The policy spelling of a duration (`Never` becomes `never`).
fn dur_word(d: &Dur) -> Word {
    if d.text == "Never" {
        w("never")
    } else {
        w(d.text.clone())
    }
}

/// Builds the policy AST for all parsed documents (in document order; overlays last).
pub(crate) fn convert(path: PathBuf, docs: Vec<(Doc, Parsed)>) -> Result<Imported, ImportError> {
    let mut cx = Ctx {
        errors: Vec::new(),
        warnings: Vec::new(),
        descriptions: Vec::new(),
    };
    let mut items: Vec<(Source, ast::Item)> = Vec::new();
    let mut pools: BTreeMap<String, String> = BTreeMap::new(); // name -> "kind at file"
    let mut classes: BTreeSet<String> = BTreeSet::new();
    let mut class_refs: Vec<(Doc, Vec<&'static str>, String)> = Vec::new();
    let mut overlays: Vec<(Doc, Object<NodeOverlaySpec>)> = Vec::new();

    for (doc, parsed) in docs {
        match parsed {
            Parsed::NodePool(o) => {
                cx.meta(&doc, "NodePool", &o.metadata);
                if !claim_name(&mut cx, &doc, &mut pools, &o.metadata.name, "pool") {
                    continue;
                }
                class_refs.push((
                    doc.clone(),
                    vec!["spec", "template", "spec", "nodeClassRef", "name"],
                    o.spec.template.spec.node_class_ref.name.clone(),
                ));
                if let Some(p) = cx.node_pool(&doc, o) {
                    items.push((doc.source.clone(), ast::Item::Pool(p)));
                }
            }
            Parsed::Ec2NodeClass(o) => {
                cx.meta(&doc, "EC2NodeClass", &o.metadata);
                if !claim_class(&mut cx, &doc, &mut classes, &o.metadata.name) {
                    continue;
                }
                if let Some(c) = cx.ec2_node_class(&doc, o) {
                    items.push((doc.source.clone(), ast::Item::NodeClass(c)));
                }
            }
            Parsed::NodeOverlay(o) => {
                cx.meta(&doc, "NodeOverlay", &o.metadata);
                overlays.push((doc, o));
            }
            Parsed::Provisioner(mut o) => {
                cx.meta(&doc, "Provisioner", &o.metadata);
                if !claim_name(&mut cx, &doc, &mut pools, &o.metadata.name, "pool") {
                    continue;
                }
                let inline = o.spec.provider.take();
                let class_name = match (&inline, &o.spec.provider_ref) {
                    (Some(_), Some(_)) => {
                        cx.errors.push(doc.error_at(
                            &["spec", "providerRef"],
                            "a Provisioner cannot have both `provider` and `providerRef`",
                            "keep providerRef and move the inline provider into an AWSNodeTemplate",
                        ));
                        continue;
                    }
                    (None, None) => {
                        cx.errors.push(doc.error_at(
                            &["spec"],
                            "the Provisioner has neither `providerRef` nor `provider`",
                            "add `providerRef: {name: ...}` naming an AWSNodeTemplate",
                        ));
                        continue;
                    }
                    (Some(_), None) => o.metadata.name.clone(),
                    (None, Some(r)) => {
                        if r.kind.as_deref().is_some_and(|k| k != "AWSNodeTemplate") {
                            cx.errors.push(doc.error_at(
                                &["spec", "providerRef", "kind"],
                                format!(
                                    "providerRef kind `{}` is not AWSNodeTemplate",
                                    r.kind.as_deref().unwrap_or_default()
                                ),
                                "nodewright imports AWSNodeTemplate node templates only",
                            ));
                            continue;
                        }
                        class_refs.push((
                            doc.clone(),
                            vec!["spec", "providerRef", "name"],
                            r.name.clone(),
                        ));
                        r.name.clone()
                    }
                };
                if let Some(p) = cx.provisioner(&doc, o, &class_name) {
                    items.push((doc.source.clone(), ast::Item::Pool(p)));
                }
                if let Some(spec) = inline
                    && claim_class(&mut cx, &doc, &mut classes, &class_name)
                    && let Some(c) =
                        cx.aws_node_template(&doc, &["spec", "provider"], &class_name, spec)
                {
                    items.push((doc.source.clone(), ast::Item::NodeClass(c)));
                }
            }
            Parsed::AwsNodeTemplate(o) => {
                cx.meta(&doc, "AWSNodeTemplate", &o.metadata);
                if !claim_class(&mut cx, &doc, &mut classes, &o.metadata.name) {
                    continue;
                }
                let name = o.metadata.name.clone();
                if let Some(c) = cx.aws_node_template(&doc, &["spec"], &name, o.spec) {
                    items.push((doc.source.clone(), ast::Item::NodeClass(c)));
                }
            }
        }
    }

    for (doc, path, name) in &class_refs {
        if !classes.contains(name) {
            cx.warnings.push(doc.warning_at(
                path,
                format!("node class `{name}` is not defined in the imported YAML"),
                format!("import its EC2NodeClass too, or define `node-class {name}` in another file of the policy set"),
            ));
        }
    }

    items.extend(cx.overlays(overlays));

    if let Some(e) = join_errors(std::mem::take(&mut cx.errors)) {
        return Err(e);
    }
    let mut file = ast::File::new(path);
    file.items = items.iter().map(|(_, i)| i.clone()).collect();
    // One file per source, in first-appearance order, for the compiler.
    let mut files: Vec<ast::File> = Vec::new();
    for (src, item) in items {
        match files
            .iter_mut()
            .find(|f| f.source.as_ptr() == src.text.as_ptr())
        {
            Some(f) => f.items.push(item),
            None => {
                let mut f = ast::File::new(PathBuf::from(&*src.name));
                f.source = src.text.clone();
                f.items.push(item);
                files.push(f);
            }
        }
    }
    Ok(Imported {
        files,
        file,
        warnings: cx.warnings,
        descriptions: cx.descriptions,
    })
}

fn claim_name(
    cx: &mut Ctx,
    doc: &Doc,
    seen: &mut BTreeMap<String, String>,
    name: &str,
    what: &str,
) -> bool {
    if seen.contains_key(name) {
        cx.errors.push(doc.error_at(
            &["metadata", "name"],
            format!("duplicate {what} name `{name}`"),
            "NodePools and Provisioners become pools and share one namespace; rename one",
        ));
        return false;
    }
    seen.insert(name.to_string(), what.to_string());
    true
}

fn claim_class(cx: &mut Ctx, doc: &Doc, seen: &mut BTreeSet<String>, name: &str) -> bool {
    if !seen.insert(name.to_string()) {
        cx.errors.push(doc.error_at(
            &["metadata", "name"],
            format!("duplicate node class name `{name}`"),
            "EC2NodeClasses, AWSNodeTemplates and inline Provisioner providers become node classes and share one namespace; rename one",
        ));
        return false;
    }
    true
}

fn is_int(s: &str) -> Option<i64> {
    s.trim().parse::<i64>().ok()
}

impl Ctx {
    /// Object metadata: description → comment header; anything else the user wrote → warning.
    fn meta(&mut self, doc: &Doc, kind: &str, m: &ObjectMeta) {
        for (k, v) in &m.annotations {
            if k == DESCRIPTION {
                self.descriptions
                    .push((format!("{kind} {}", m.name), v.clone()));
            } else if !CONTROLLER_ANNOTATIONS.contains(&k.as_str()) {
                self.warnings.push(doc.warning_at(
                    &["metadata", "annotations", k],
                    format!("annotation `{k}` on {kind} `{}` is not imported", m.name),
                    "annotations on Karpenter objects do not change what is launched; keep them in the YAML if other tools read them",
                ));
            }
        }
        for k in m.labels.keys() {
            self.warnings.push(doc.warning_at(
                &["metadata", "labels", k],
                format!("label `{k}` on {kind} `{}` is not imported", m.name),
                "labels on the Karpenter object itself are not node labels (those are spec.template.metadata.labels)",
            ));
        }
    }

    /// One requirement term; Gte/Lte become Gt/Lt on the neighbouring integer.
    fn requirement(
        &mut self,
        doc: &Doc,
        path: &[&str],
        item: Option<(usize, usize)>,
        r: &RequirementY,
    ) -> Option<ast::Requirement> {
        let at = |field: &'static str| {
            let mut p = path.to_vec();
            p.push(field);
            p
        };
        // Where each field is, for the policy checker's findings (see `super::check`).
        let span_of = |sub: &[&str]| match item {
            Some(it) => doc.span_within(it, sub),
            None => {
                let mut p = path.to_vec();
                p.extend_from_slice(sub);
                doc.span(&p)
            }
        };
        let (op, values) = match r.operator {
            Op::K8s(op) => (op, r.values.clone()),
            Op::Gte | Op::Lte => {
                let n = match r.values.as_slice() {
                    [v] => is_int(v),
                    _ => None,
                };
                let Some(n) = n else {
                    self.errors.push(doc.error_at(
                        &at("values"),
                        format!(
                            "`{:?}` on `{}` needs exactly one integer value",
                            r.operator, r.key
                        ),
                        "write e.g. `values: [\"4\"]`",
                    ));
                    return None;
                };
                match r.operator {
                    Op::Gte => (Operator::Gt, vec![(n - 1).to_string()]),
                    _ => (Operator::Lt, vec![(n + 1).to_string()]),
                }
            }
        };
        match op {
            Operator::In | Operator::NotIn if values.is_empty() => {
                self.errors.push(doc.error_at(
                    &at("operator"),
                    format!("`{}` on `{}` has no values", op.as_str(), r.key),
                    "In and NotIn need at least one value",
                ));
                return None;
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                self.errors.push(doc.error_at(
                    &at("values"),
                    format!("`{}` on `{}` takes no values", op.as_str(), r.key),
                    "remove `values`, or use In / NotIn",
                ));
                return None;
            }
            Operator::Gt | Operator::Lt if !(values.len() == 1 && is_int(&values[0]).is_some()) => {
                self.errors.push(doc.error_at(
                    &at("values"),
                    format!(
                        "`{}` on `{}` needs exactly one integer value",
                        op.as_str(),
                        r.key
                    ),
                    "Gt and Lt compare integers: write e.g. `values: [\"2\"]`",
                ));
                return None;
            }
            _ => {}
        }
        if let Some(m) = r.min_values {
            if m == 0 {
                self.errors.push(doc.error_at(
                    &at("minValues"),
                    format!("minValues on `{}` must be at least 1", r.key),
                    "remove minValues, or set it to 1 or more",
                ));
                return None;
            }
            if op == Operator::In && (m as usize) > values.len() {
                self.errors.push(doc.error_at(
                    &at("minValues"),
                    format!(
                        "minValues {m} on `{}` is larger than its {} values",
                        r.key,
                        values.len()
                    ),
                    "lower minValues or allow more values",
                ));
                return None;
            }
        }
        let key_span = span_of(&["key"]);
        Some(ast::Requirement {
            key: at_span(r.key.clone(), key_span),
            op: ast::ReqOp::from_ir(op),
            op_span: span_of(&["operator"]),
            values: values
                .into_iter()
                .enumerate()
                .map(|(j, v)| at_span(v, span_of(&["values", &format!("#{j}")])))
                .collect(),
            min_values: r
                .min_values
                .map(|m| at_span(m.to_string(), span_of(&["minValues"]))),
            span: key_span,
        })
    }

    fn taint(t: &TaintY) -> ast::Taint {
        ast::Taint {
            key: w(t.key.clone()),
            value: t.value.clone().filter(|v| !v.is_empty()).map(w),
            effect: w(t.effect.0.as_str()),
            span: Span::DUMMY,
        }
    }

    fn limits(
        &mut self,
        doc: &Doc,
        path: &[&str],
        limits: &BTreeMap<String, Qty>,
        body: &mut Vec<ast::PoolStmt>,
    ) {
        let _ = (doc, path);
        for (k, q) in limits {
            body.push(ast::PoolStmt::Limit(kv(k.clone(), q.text.clone())));
        }
    }

    fn node_pool(&mut self, doc: &Doc, o: Object<NodePoolSpec>) -> Option<ast::Pool> {
        let spec = o.spec;
        let ts = spec.template.spec;
        let mut body = Vec::new();
        let n_err = self.errors.len();
        if let Some(wt) = spec.weight {
            body.push(ast::PoolStmt::Weight(w(wt.to_string())));
        }
        let reqs: Vec<&str> = vec!["spec", "template", "spec", "requirements"];
        let items = doc.items(&reqs);
        for (i, r) in ts.requirements.iter().enumerate() {
            let idx = format!("#{i}");
            let mut p = reqs.clone();
            p.push(&idx);
            if let Some(r) = self.requirement(doc, &p, items.get(i).copied(), r) {
                body.push(ast::PoolStmt::Require(r));
            }
        }
        self.limits(doc, &["spec", "limits"], &spec.limits, &mut body);
        if let Some(m) = &spec.template.metadata {
            let path = ["spec", "template", "metadata", "labels"];
            let spans = doc.keys(&path);
            let fallback = if m.labels.is_empty() {
                Span::DUMMY
            } else {
                doc.span(&path)
            };
            for (k, v) in &m.labels {
                let span = spans.get(k).copied().unwrap_or(fallback);
                body.push(ast::PoolStmt::Label(kv_at(k.clone(), v.clone(), span)));
            }
        }
        body.extend(
            ts.taints
                .iter()
                .map(|t| ast::PoolStmt::Taint(Self::taint(t))),
        );
        body.extend(
            ts.startup_taints
                .iter()
                .map(|t| ast::PoolStmt::StartupTaint(Self::taint(t))),
        );
        let r = &ts.node_class_ref;
        // Some published examples write the group with its version (`karpenter.k8s.aws/v1`).
        let group_ok = r.group == "karpenter.k8s.aws" || r.group.starts_with("karpenter.k8s.aws/");
        if !group_ok || r.kind != "EC2NodeClass" {
            self.errors.push(doc.error_at(
                &["spec", "template", "spec", "nodeClassRef", if !group_ok { "group" } else { "kind" }],
                format!("nodeClassRef `{}/{}` is not an EC2NodeClass", r.group, r.kind),
                "nodewright launches EC2 instances: use `group: karpenter.k8s.aws`, `kind: EC2NodeClass`",
            ));
        }
        body.push(ast::PoolStmt::NodeClass(at_span(
            r.name.clone(),
            doc.span(&["spec", "template", "spec", "nodeClassRef", "name"]),
        )));

        let mut d = Vec::new();
        if let Some(dis) = &spec.disruption
            && (dis.consolidation_policy.is_some() || dis.consolidate_after.is_some())
        {
            {
                d.push(ast::DisruptionKind::Consolidate {
                    policy: dis.consolidation_policy.map(|p| {
                        w(match p {
                            ConsolidationPolicyY::WhenEmpty => "when-empty",
                            ConsolidationPolicyY::WhenEmptyOrUnderutilized => {
                                "when-empty-or-underutilized"
                            }
                        })
                    }),
                    after: dis.consolidate_after.as_ref().map(dur_word),
                });
            }
        }
        if let Some(e) = &ts.expire_after {
            d.push(ast::DisruptionKind::ExpireAfter(dur_word(e)));
        }
        if let Some(t) = &ts.termination_grace_period {
            d.push(ast::DisruptionKind::TerminationGracePeriod(dur_word(t)));
        }
        if let Some(budgets) = spec.disruption.as_ref().and_then(|d| d.budgets.as_ref()) {
            if budgets.is_empty() {
                // An explicit empty list disables Karpenter's default 10% budget.
                d.push(ast::DisruptionKind::Budget(ast::Budget {
                    nodes: w("100%"),
                    schedule: None,
                    duration: None,
                    reasons: Vec::new(),
                }));
            }
            for (i, b) in budgets.iter().enumerate() {
                let idx = format!("#{i}");
                if b.schedule.is_some() != b.duration.is_some() {
                    self.errors.push(doc.error_at(
                        &[
                            "spec",
                            "disruption",
                            "budgets",
                            &idx,
                            if b.schedule.is_some() {
                                "schedule"
                            } else {
                                "duration"
                            },
                        ],
                        "a budget's `schedule` and `duration` must be set together",
                        "add the missing one: `schedule: \"0 9 * * mon-fri\"` with `duration: 8h`",
                    ));
                    continue;
                }
                d.push(ast::DisruptionKind::Budget(ast::Budget {
                    nodes: w(match b.nodes.0 {
                        crate::ir::BudgetNodes::Percent(p) => format!("{p}%"),
                        crate::ir::BudgetNodes::Count(c) => c.to_string(),
                    }),
                    schedule: b.schedule.clone().map(w),
                    duration: b.duration.as_ref().map(dur_word),
                    reasons: b.reasons.iter().map(|r| w(reason_word(r.0))).collect(),
                }));
            }
        }
        if !d.is_empty() {
            body.push(ast::PoolStmt::Disruption(disruption(d)));
        }
        let span = doc.span(&["metadata", "name"]);
        (self.errors.len() == n_err).then(|| ast::Pool {
            name: at_span(o.metadata.name, span),
            body,
            span,
        })
    }

    fn kubelet(&mut self, doc: &Doc, path: &[&str], k: &KubeletY) -> Option<ast::Kubelet> {
        use ast::KubeletKind as K;
        let mut body = Vec::new();
        if !k.cluster_dns.is_empty() {
            body.push(K::ClusterDns(
                k.cluster_dns.iter().cloned().map(w).collect(),
            ));
        }
        if let Some(n) = k.max_pods {
            body.push(K::MaxPods(w(n.to_string())));
        }
        if let Some(n) = k.pods_per_core {
            body.push(K::PodsPerCore(w(n.to_string())));
        }
        for (r, q) in &k.kube_reserved {
            body.push(K::KubeReserved(kv(r.clone(), q.text.clone())));
        }
        for (r, q) in &k.system_reserved {
            body.push(K::SystemReserved(kv(r.clone(), q.text.clone())));
        }
        for (field, map, hard) in [
            ("evictionHard", &k.eviction_hard, true),
            ("evictionSoft", &k.eviction_soft, false),
        ] {
            for (sig, th) in map {
                if !valid_threshold(th) {
                    let mut p = path.to_vec();
                    p.extend([field, sig.as_str()]);
                    self.errors.push(doc.error_at(
                        &p,
                        format!("malformed eviction threshold `{th}` for `{sig}`"),
                        "write a quantity (`100Mi`) or a percentage (`10%`)",
                    ));
                    continue;
                }
                let s = kv(sig.clone(), th.clone());
                body.push(if hard {
                    K::EvictionHard(s)
                } else {
                    K::EvictionSoft(s)
                });
            }
        }
        for (sig, d) in &k.eviction_soft_grace_period {
            body.push(K::EvictionSoftGrace(kv(sig.clone(), dur_word(d).text)));
        }
        if let Some(n) = k.eviction_max_pod_grace_period {
            body.push(K::EvictionMaxPodGracePeriod(w(n.to_string())));
        }
        if let Some(n) = k.image_gc_high_threshold_percent {
            body.push(K::ImageGcHigh(w(n.to_string())));
        }
        if let Some(n) = k.image_gc_low_threshold_percent {
            body.push(K::ImageGcLow(w(n.to_string())));
        }
        if let Some(b) = k.cpu_cfs_quota {
            body.push(K::CpuCfsQuota(w(b.to_string())));
        }
        (!body.is_empty()).then(|| ast::Kubelet {
            body: body
                .into_iter()
                .map(|kind| ast::KubeletStmt {
                    kind,
                    span: Span::DUMMY,
                })
                .collect(),
            span: Span::DUMMY,
        })
    }

    fn ec2_node_class(&mut self, doc: &Doc, o: Object<Ec2NodeClassSpec>) -> Option<ast::NodeClass> {
        use ast::NodeClassKind as N;
        use ast::SelectorField as F;
        let s = o.spec;
        let n_err = self.errors.len();
        let mut body = Vec::new();
        if let Some(f) = &s.ami_family {
            let at = doc.span(&["spec", "amiFamily"]);
            body.push(N::AmiFamily(at_span(f.0.clone(), at)));
        }
        for (i, t) in s.ami_selector_terms.iter().enumerate() {
            let mut f = Vec::new();
            let alias_at = doc.span(&["spec", "amiSelectorTerms", &format!("#{i}"), "alias"]);
            f.extend(t.alias.clone().map(|v| F::Alias(at_span(v, alias_at))));
            f.extend(t.id.clone().map(|v| F::Id(w(v))));
            f.extend(t.name.clone().map(|v| F::Name(w(v))));
            f.extend(t.owner.clone().map(|v| F::Owner(w(v))));
            f.extend(t.tags.iter().map(|(k, v)| F::Tag(kv(k.clone(), v.clone()))));
            if let Some(term) = self.term(doc, &["spec", "amiSelectorTerms", &format!("#{i}")], f) {
                body.push(N::Ami(term));
            }
        }
        for (i, t) in s.subnet_selector_terms.iter().enumerate() {
            let mut f = Vec::new();
            f.extend(t.id.clone().map(|v| F::Id(w(v))));
            f.extend(t.tags.iter().map(|(k, v)| F::Tag(kv(k.clone(), v.clone()))));
            if let Some(term) =
                self.term(doc, &["spec", "subnetSelectorTerms", &format!("#{i}")], f)
            {
                body.push(N::Subnets(term));
            }
        }
        for (i, t) in s.security_group_selector_terms.iter().enumerate() {
            let mut f = Vec::new();
            f.extend(t.id.clone().map(|v| F::Id(w(v))));
            f.extend(t.name.clone().map(|v| F::Name(w(v))));
            f.extend(t.tags.iter().map(|(k, v)| F::Tag(kv(k.clone(), v.clone()))));
            if let Some(term) = self.term(
                doc,
                &["spec", "securityGroupSelectorTerms", &format!("#{i}")],
                f,
            ) {
                body.push(N::SecurityGroups(term));
            }
        }
        match (&s.role, &s.instance_profile) {
            (Some(r), None) => body.push(N::Role(w(r.clone()))),
            (None, Some(p)) => body.push(N::InstanceProfile(w(p.clone()))),
            (Some(_), Some(_)) => self.errors.push(doc.error_at(
                &["spec", "instanceProfile"],
                "`role` and `instanceProfile` are mutually exclusive",
                "keep one: with `role` Karpenter (and nodewright) manages the instance profile",
            )),
            (None, None) => self.errors.push(doc.error_at(
                &["spec"],
                "an EC2NodeClass needs `role` or `instanceProfile`",
                "add `role: KarpenterNodeRole-<cluster>`",
            )),
        }
        for (k, v) in &s.tags {
            body.push(N::Tag(kv(k.clone(), v.clone())));
        }
        for (i, b) in s.block_device_mappings.iter().enumerate() {
            if let Some(bd) =
                self.block_device(doc, &["spec", "blockDeviceMappings", &format!("#{i}")], b)
            {
                body.push(N::BlockDevice(bd));
            }
        }
        if let Some(m) = &s.metadata_options {
            body.push(N::Imds(imds(m, None)));
        }
        if let Some(u) = &s.user_data {
            body.push(N::UserData(w(u.clone())));
        }
        if let Some(b) = s.detailed_monitoring {
            body.push(N::DetailedMonitoring(w(b.to_string())));
        }
        if let Some(b) = s.associate_public_ip_address {
            body.push(N::PublicIp(w(b.to_string())));
        }
        if let Some(p) = &s.instance_store_policy {
            body.push(N::InstanceStorePolicy(w(p.0.clone())));
        }
        if let Some(k) = &s.kubelet
            && let Some(k) = self.kubelet(doc, &["spec", "kubelet"], k)
        {
            body.push(N::Kubelet(k));
        }
        let span = doc.span(&["metadata", "name"]);
        (self.errors.len() == n_err).then(|| node_class(o.metadata.name, span, body))
    }

    fn term(
        &mut self,
        doc: &Doc,
        path: &[&str],
        fields: Vec<ast::SelectorField>,
    ) -> Option<ast::SelectorTerm> {
        if fields.is_empty() {
            self.errors.push(doc.error_at(
                path,
                "empty selector term",
                "a term needs at least one of id, name, tags (and alias, owner for AMIs)",
            ));
            return None;
        }
        Some(ast::SelectorTerm {
            fields,
            span: Span::DUMMY,
        })
    }

    fn block_device(
        &mut self,
        doc: &Doc,
        path: &[&str],
        b: &BlockDeviceMappingY,
    ) -> Option<ast::BlockDevice> {
        let Some(dev) = &b.device_name else {
            self.errors.push(doc.error_at(
                path,
                "block device mapping has no `deviceName`",
                "add e.g. `deviceName: /dev/xvda`",
            ));
            return None;
        };
        let mut st = Vec::new();
        let set = |st: &mut Vec<ast::Setting>, n: &str, v: Option<String>| {
            st.push(ast::Setting {
                name: w(n),
                value: v.map(w),
                span: Span::DUMMY,
            })
        };
        if b.root_volume {
            set(&mut st, "root", None);
        }
        if let Some(e) = &b.ebs {
            if let Some(q) = &e.volume_size {
                set(&mut st, "size", Some(q.text.clone()));
            }
            if let Some(t) = &e.volume_type {
                set(&mut st, "type", Some(t.0.clone()));
            }
            if let Some(n) = e.iops {
                set(&mut st, "iops", Some(n.to_string()));
            }
            if let Some(n) = e.throughput {
                set(&mut st, "throughput", Some(n.to_string()));
            }
            if let Some(x) = e.encrypted {
                set(&mut st, "encrypted", Some(x.to_string()));
            }
            if let Some(k) = &e.kms_key_id {
                set(&mut st, "kms-key", Some(k.clone()));
            }
            if let Some(x) = e.delete_on_termination {
                set(&mut st, "delete-on-termination", Some(x.to_string()));
            }
            if let Some(s) = &e.snapshot_id {
                set(&mut st, "snapshot", Some(s.clone()));
            }
        }
        Some(ast::BlockDevice {
            device: w(dev.clone()),
            settings: st,
            span: Span::DUMMY,
        })
    }

    fn provisioner(
        &mut self,
        doc: &Doc,
        o: Object<ProvisionerSpec>,
        class: &str,
    ) -> Option<ast::Pool> {
        let s = o.spec;
        let n_err = self.errors.len();
        let mut body = Vec::new();
        if let Some(wt) = s.weight {
            body.push(ast::PoolStmt::Weight(w(wt.to_string())));
        }
        let items = doc.items(&["spec", "requirements"]);
        for (i, r) in s.requirements.iter().enumerate() {
            let idx = format!("#{i}");
            if let Some(r) = self.requirement(
                doc,
                &["spec", "requirements", &idx],
                items.get(i).copied(),
                r,
            ) {
                body.push(ast::PoolStmt::Require(r));
            }
        }
        // v1alpha5's defaulting webhook added these; v1 does not, so make them explicit.
        let has = |keys: &[&str]| {
            s.requirements
                .iter()
                .any(|r| keys.contains(&r.key.as_str()))
        };
        let req_in = |key: &str, vals: &[&str]| {
            ast::PoolStmt::Require(ast::Requirement {
                key: w(key),
                op: ast::ReqOp::In,
                op_span: Span::DUMMY,
                values: vals.iter().map(|v| w(*v)).collect(),
                min_values: None,
                span: Span::DUMMY,
            })
        };
        if !has(&["karpenter.sh/capacity-type"]) {
            body.push(req_in("karpenter.sh/capacity-type", &["on-demand"]));
        }
        if !has(&["kubernetes.io/arch"]) {
            body.push(req_in("kubernetes.io/arch", &["amd64"]));
        }
        if !has(&[
            "node.kubernetes.io/instance-type",
            "karpenter.k8s.aws/instance-family",
            "karpenter.k8s.aws/instance-category",
            "karpenter.k8s.aws/instance-generation",
        ]) {
            body.push(req_in(
                "karpenter.k8s.aws/instance-category",
                &["c", "m", "r"],
            ));
            body.push(ast::PoolStmt::Require(ast::Requirement {
                key: w("karpenter.k8s.aws/instance-generation"),
                op: ast::ReqOp::Gt,
                op_span: Span::DUMMY,
                values: vec![w("2")],
                min_values: None,
                span: Span::DUMMY,
            }));
        }
        if let Some(l) = &s.limits {
            self.limits(
                doc,
                &["spec", "limits", "resources"],
                &l.resources,
                &mut body,
            );
        }
        let spans = doc.keys(&["spec", "labels"]);
        let fallback = if s.labels.is_empty() {
            Span::DUMMY
        } else {
            doc.span(&["spec", "labels"])
        };
        for (k, v) in &s.labels {
            let span = spans.get(k).copied().unwrap_or(fallback);
            body.push(ast::PoolStmt::Label(kv_at(k.clone(), v.clone(), span)));
        }
        body.extend(
            s.taints
                .iter()
                .map(|t| ast::PoolStmt::Taint(Self::taint(t))),
        );
        body.extend(
            s.startup_taints
                .iter()
                .map(|t| ast::PoolStmt::StartupTaint(Self::taint(t))),
        );
        body.push(ast::PoolStmt::NodeClass(at_span(
            class,
            doc.span(&["spec", "providerRef", "name"]),
        )));
        if let Some(k) = s.kubelet_configuration {
            let k: KubeletY = k.into();
            if let Some(k) = self.kubelet(doc, &["spec", "kubeletConfiguration"], &k) {
                body.push(ast::PoolStmt::Kubelet(k));
            }
        }
        let consolidation = s
            .consolidation
            .as_ref()
            .and_then(|c| c.enabled)
            .unwrap_or(false);
        let mut d = Vec::new();
        match (s.ttl_seconds_after_empty, consolidation) {
            (Some(_), true) => self.errors.push(doc.error_at(
                &["spec", "ttlSecondsAfterEmpty"],
                "`ttlSecondsAfterEmpty` and `consolidation.enabled: true` are mutually exclusive",
                "keep one: consolidation also removes empty nodes",
            )),
            (Some(ttl), false) => d.push(ast::DisruptionKind::Consolidate {
                policy: Some(w("when-empty")),
                after: Some(w(format!("{ttl}s"))),
            }),
            (None, true) => d.push(ast::DisruptionKind::Consolidate {
                policy: Some(w("when-empty-or-underutilized")),
                after: Some(w("0s")),
            }),
            (None, false) => d.push(ast::DisruptionKind::Consolidate {
                policy: Some(w("when-empty")),
                after: Some(w("never")),
            }),
        }
        d.push(ast::DisruptionKind::ExpireAfter(
            match s.ttl_seconds_until_expired {
                Some(t) => w(format!("{t}s")),
                None => w("never"),
            },
        ));
        body.push(ast::PoolStmt::Disruption(disruption(d)));
        let span = doc.span(&["metadata", "name"]);
        (self.errors.len() == n_err).then(|| ast::Pool {
            name: at_span(o.metadata.name, span),
            body,
            span,
        })
    }

    fn aws_node_template(
        &mut self,
        doc: &Doc,
        base: &[&str],
        name: &str,
        s: AwsNodeTemplateSpec,
    ) -> Option<ast::NodeClass> {
        use ast::NodeClassKind as N;
        use ast::SelectorField as F;
        let n_err = self.errors.len();
        let at = |f: &'static str| {
            let mut p = base.to_vec();
            p.push(f);
            p
        };
        let mut body = Vec::new();
        let family = s.ami_family.as_ref().map_or("AL2", |f| f.0.as_str());
        body.push(N::AmiFamily(w(family)));

        // AMIs: ids × owners, each with name and tags; no selector = the family's latest EKS AMI.
        let mut ids = Vec::new();
        let mut owners = Vec::new();
        let mut ami_name = None;
        let mut tags = Vec::new();
        for (k, v) in &s.ami_selector {
            match k.as_str() {
                "aws-ids" | "aws::ids" => ids.extend(split_list(v)),
                "aws::owners" => owners.extend(split_list(v)),
                "aws::name" => ami_name = Some(v.clone()),
                _ => tags.push(kv(k.clone(), v.clone())),
            }
        }
        if s.ami_selector.is_empty() {
            match alias_for(family) {
                Some(a) => body.push(N::Ami(ast::SelectorTerm {
                    fields: vec![F::Alias(w(format!("{a}@latest")))],
                    span: Span::DUMMY,
                })),
                None => self.errors.push(doc.error_at(
                    &at("amiFamily"),
                    format!("amiFamily `{family}` without an amiSelector names no AMI nodewright can resolve"),
                    "add `amiSelector` (e.g. `aws-ids: ami-123`)",
                )),
            }
        } else {
            let id_opts: Vec<Option<String>> = if ids.is_empty() {
                vec![None]
            } else {
                ids.into_iter().map(Some).collect()
            };
            let owner_opts: Vec<Option<String>> = if owners.is_empty() {
                vec![None]
            } else {
                owners.into_iter().map(Some).collect()
            };
            for id in &id_opts {
                for owner in &owner_opts {
                    let mut f = Vec::new();
                    f.extend(id.clone().map(|v| F::Id(w(v))));
                    f.extend(ami_name.clone().map(|v| F::Name(w(v))));
                    f.extend(owner.clone().map(|v| F::Owner(w(v))));
                    f.extend(tags.iter().cloned().map(F::Tag));
                    body.push(N::Ami(ast::SelectorTerm {
                        fields: f,
                        span: Span::DUMMY,
                    }));
                }
            }
        }
        for (field, sel, sg) in [
            ("subnetSelector", &s.subnet_selector, false),
            ("securityGroupSelector", &s.security_group_selector, true),
        ] {
            if sel.is_empty() {
                self.errors.push(doc.error_at(
                    &at(field),
                    format!("`{field}` is missing or empty"),
                    "add the tags your subnets and security groups carry, e.g. `karpenter.sh/discovery: <cluster>`",
                ));
                continue;
            }
            let mut ids = Vec::new();
            let mut tags = Vec::new();
            for (k, v) in sel {
                match k.as_str() {
                    "aws-ids" | "aws::ids" => ids.extend(split_list(v)),
                    _ => tags.push(kv(k.clone(), v.clone())),
                }
            }
            let id_opts: Vec<Option<String>> = if ids.is_empty() {
                vec![None]
            } else {
                ids.into_iter().map(Some).collect()
            };
            for id in id_opts {
                let mut f = Vec::new();
                f.extend(id.map(|v| F::Id(w(v))));
                f.extend(tags.iter().cloned().map(F::Tag));
                let term = ast::SelectorTerm {
                    fields: f,
                    span: Span::DUMMY,
                };
                body.push(if sg {
                    N::SecurityGroups(term)
                } else {
                    N::Subnets(term)
                });
            }
        }
        match &s.instance_profile {
            Some(p) => body.push(N::InstanceProfile(w(p.clone()))),
            None => self.errors.push(doc.error_at(
                base,
                "the AWSNodeTemplate has no `instanceProfile`",
                "v1alpha5 fell back to the controller's aws.defaultInstanceProfile setting, which the YAML does not show: add `instanceProfile: <name>`",
            )),
        }
        for (k, v) in &s.tags {
            body.push(N::Tag(kv(k.clone(), v.clone())));
        }
        for (i, b) in s.block_device_mappings.iter().enumerate() {
            let idx = format!("#{i}");
            let mut p = at("blockDeviceMappings");
            p.push(&idx);
            if let Some(bd) = self.block_device(doc, &p, b) {
                body.push(N::BlockDevice(bd));
            }
        }
        // v1alpha5 defaulted the IMDS hop limit to 2 (v1: 1); keep the old behaviour.
        let hop2 = MetadataOptionsY {
            http_endpoint: None,
            http_protocol_ipv6: None,
            http_put_response_hop_limit: None,
            http_tokens: None,
        };
        body.push(N::Imds(imds(
            s.metadata_options.as_ref().unwrap_or(&hop2),
            Some(2),
        )));
        if let Some(u) = &s.user_data {
            body.push(N::UserData(w(u.clone())));
        }
        if let Some(b) = s.detailed_monitoring {
            body.push(N::DetailedMonitoring(w(b.to_string())));
        }
        let span = doc.span(&["metadata", "name"]);
        (self.errors.len() == n_err).then(|| node_class(name.to_string(), span, body))
    }

    /// NodeOverlays → cost and capacity rules. Karpenter applies, per instance
    /// type, only the highest-precedence overlay (weight, then name) that sets
    /// the price, and per extended resource only the highest that sets it; each
    /// rule therefore excludes the offerings a higher overlay already claims.
    fn overlays(
        &mut self,
        overlays: Vec<(Doc, Object<NodeOverlaySpec>)>,
    ) -> Vec<(Source, ast::Item)> {
        struct Ov {
            source: Source,
            span: Span,
            name: String,
            weight: i32,
            cond: Option<ast::Expr>,
            price: Option<ast::CostAction>,
            capacity: Vec<(String, String)>,
        }
        let mut ovs = Vec::new();
        let mut names = BTreeSet::new();
        for (doc, o) in overlays {
            let s = o.spec;
            let n_err = self.errors.len();
            if !names.insert(o.metadata.name.clone()) {
                self.errors.push(doc.error_at(
                    &["metadata", "name"],
                    format!("duplicate NodeOverlay name `{}`", o.metadata.name),
                    "rename one",
                ));
                continue;
            }
            let mut conds = Vec::new();
            for (i, r) in s.requirements.iter().enumerate() {
                let idx = format!("#{i}");
                if let Some(c) = self.overlay_cond(&doc, &["spec", "requirements", &idx], r) {
                    conds.push(c);
                }
            }
            let price = match (&s.price, &s.price_adjustment) {
                (Some(_), Some(_)) => {
                    self.errors.push(doc.error_at(
                        &["spec", "priceAdjustment"],
                        "cannot set both `price` and `priceAdjustment`",
                        "keep one (Karpenter rejects both too)",
                    ));
                    None
                }
                (Some(p), None) => Some(ast::CostAction::SetPrice(w(fmt_num(p.0)))),
                (None, Some(PriceAdjustmentY::Add(a))) => {
                    Some(ast::CostAction::Adjust(w(signed(*a, ""))))
                }
                (None, Some(PriceAdjustmentY::Percent(p))) => {
                    Some(ast::CostAction::Adjust(w(signed(*p, "%"))))
                }
                (None, None) => None,
            };
            for k in s.capacity.keys() {
                if ["cpu", "memory", "ephemeral-storage", "pods"].contains(&k.as_str()) {
                    self.errors.push(doc.error_at(
                        &["spec", "capacity", k],
                        format!("NodeOverlay capacity cannot change `{k}`"),
                        "capacity adds extended resources only (e.g. `smarter-devices/fuse: 1`); cpu, memory, ephemeral-storage and pods come from the catalog",
                    ));
                }
            }
            if price.is_none() && s.capacity.is_empty() && self.errors.len() == n_err {
                self.warnings.push(doc.warning_at(
                    &["spec"],
                    format!(
                        "NodeOverlay `{}` sets neither price, priceAdjustment nor capacity",
                        o.metadata.name
                    ),
                    "it has no effect; delete it",
                ));
            }
            if self.errors.len() != n_err {
                continue;
            }
            ovs.push(Ov {
                source: doc.source.clone(),
                span: doc.span(&["metadata", "name"]),
                name: o.metadata.name,
                weight: s.weight.unwrap_or(0),
                cond: and(conds),
                price,
                capacity: s.capacity.into_iter().map(|(k, q)| (k, q.text)).collect(),
            });
        }
        // Highest precedence first.
        ovs.sort_by(|a, b| b.weight.cmp(&a.weight).then_with(|| a.name.cmp(&b.name)));
        let mut out = Vec::new();
        for (i, o) in ovs.iter().enumerate() {
            let higher = &ovs[..i];
            let weight = (o.weight != 0).then(|| w(o.weight.to_string()));
            if let Some(action) = &o.price {
                let shadow: Vec<&Ov> = higher.iter().filter(|h| h.price.is_some()).collect();
                if let Some(when) =
                    excluding(&o.cond, &shadow.iter().map(|h| &h.cond).collect::<Vec<_>>())
                {
                    out.push((
                        o.source.clone(),
                        ast::Item::Cost(ast::CostRule {
                            action: action.clone(),
                            when,
                            weight: weight.clone(),
                            span: o.span,
                        }),
                    ));
                }
            }
            // Group this overlay's resources by which higher overlays also set them.
            let mut groups: BTreeMap<Vec<usize>, Vec<KeyValue>> = BTreeMap::new();
            for (k, q) in &o.capacity {
                let shadow: Vec<usize> = (0..i)
                    .filter(|&j| ovs[j].capacity.iter().any(|(hk, _)| hk == k))
                    .collect();
                groups
                    .entry(shadow)
                    .or_default()
                    .push(kv(k.clone(), q.clone()));
            }
            for (shadow, add) in groups {
                let conds: Vec<&Option<ast::Expr>> = shadow.iter().map(|&j| &ovs[j].cond).collect();
                if let Some(when) = excluding(&o.cond, &conds) {
                    out.push((
                        o.source.clone(),
                        ast::Item::Capacity(ast::CapacityRule {
                            add,
                            when,
                            weight: weight.clone(),
                            span: o.span,
                        }),
                    ));
                }
            }
        }
        // Print lowest precedence first, the order the rules are applied in.
        out.reverse();
        out
    }

    fn overlay_cond(
        &mut self,
        doc: &Doc,
        path: &[&str],
        r: &OverlayRequirementY,
    ) -> Option<ast::Expr> {
        let at = |f: &'static str| {
            let mut p = path.to_vec();
            p.push(f);
            p
        };
        let op = match r.operator {
            Op::K8s(Operator::In) => ast::CmpOp::In,
            Op::K8s(Operator::NotIn) => ast::CmpOp::NotIn,
            Op::K8s(Operator::Exists) => ast::CmpOp::Exists,
            Op::K8s(Operator::DoesNotExist) => ast::CmpOp::DoesNotExist,
            Op::K8s(Operator::Gt) => ast::CmpOp::Gt,
            Op::K8s(Operator::Lt) => ast::CmpOp::Lt,
            Op::Gte => ast::CmpOp::Ge,
            Op::Lte => ast::CmpOp::Le,
        };
        let ok = if op.takes_list() {
            !r.values.is_empty()
        } else if op.takes_none() {
            r.values.is_empty()
        } else {
            r.values.len() == 1 && is_int(&r.values[0]).is_some()
        };
        if !ok {
            self.errors.push(doc.error_at(
                &at("values"),
                format!("wrong values for `{}` on `{}`", op.as_str(), r.key),
                "In/NotIn need values, Exists/DoesNotExist none, Gt/Lt/Gte/Lte exactly one integer",
            ));
            return None;
        }
        Some(ast::Expr {
            kind: ast::ExprKind::Cmp {
                subject: node_label(&r.key),
                op,
                op_span: Span::DUMMY,
                values: r.values.iter().cloned().map(w).collect(),
            },
            span: Span::DUMMY,
        })
    }
}

/// The subject reading a node label by key.
fn node_label(key: &str) -> ast::Subject {
    ast::Subject {
        scope: Some(ast::Scope::Node),
        name: w("label"),
        arg: Some(w(key)),
        span: Span::DUMMY,
    }
}

fn and(mut conds: Vec<ast::Expr>) -> Option<ast::Expr> {
    match conds.len() {
        0 => None,
        1 => conds.pop(),
        _ => Some(ast::Expr {
            kind: ast::ExprKind::And(conds),
            span: Span::DUMMY,
        }),
    }
}

/// `own and not (h1 or h2 ...)`. `Some(None)` means "every offering";
/// `None` means nothing is left (a higher overlay matches everything).
fn excluding(own: &Option<ast::Expr>, higher: &[&Option<ast::Expr>]) -> Option<Option<ast::Expr>> {
    let mut hs = Vec::new();
    for h in higher {
        match h {
            None => return None,
            Some(e) => hs.push(e.clone()),
        }
    }
    let mut parts: Vec<ast::Expr> = own.iter().cloned().collect();
    if !hs.is_empty() {
        let any = if hs.len() == 1 {
            hs.remove(0)
        } else {
            ast::Expr {
                kind: ast::ExprKind::Or(hs),
                span: Span::DUMMY,
            }
        };
        parts.push(ast::Expr {
            kind: ast::ExprKind::Not(Box::new(any)),
            span: Span::DUMMY,
        });
    }
    Some(and(parts))
}

fn disruption(kinds: Vec<ast::DisruptionKind>) -> ast::Disruption {
    ast::Disruption {
        body: kinds
            .into_iter()
            .map(|kind| ast::DisruptionStmt {
                kind,
                span: Span::DUMMY,
            })
            .collect(),
        span: Span::DUMMY,
    }
}

fn node_class(name: String, span: Span, body: Vec<ast::NodeClassKind>) -> ast::NodeClass {
    ast::NodeClass {
        name: at_span(name, span),
        body: body
            .into_iter()
            .map(|kind| ast::NodeClassStmt {
                kind,
                span: Span::DUMMY,
            })
            .collect(),
        span,
    }
}

fn imds(m: &MetadataOptionsY, default_hop: Option<i64>) -> Vec<ast::Setting> {
    let mut st = Vec::new();
    let mut set = |n: &str, v: String| {
        st.push(ast::Setting {
            name: w(n),
            value: Some(w(v)),
            span: Span::DUMMY,
        })
    };
    if let Some(t) = &m.http_tokens {
        set("tokens", t.0.clone());
    }
    if let Some(e) = &m.http_endpoint {
        set("endpoint", e.0.clone());
    }
    if let Some(h) = m.http_put_response_hop_limit.or(default_hop) {
        set("hop-limit", h.to_string());
    }
    if let Some(v) = &m.http_protocol_ipv6 {
        set("ipv6", v.0.clone());
    }
    st
}

fn reason_word(r: crate::ir::DisruptionReason) -> &'static str {
    match r {
        crate::ir::DisruptionReason::Underutilized => "underutilized",
        crate::ir::DisruptionReason::Empty => "empty",
        crate::ir::DisruptionReason::Drifted => "drifted",
        crate::ir::DisruptionReason::Expired => "expired",
    }
}

/// Karpenter v1's alias for an AMI family's EKS-optimized image, if it has one.
fn alias_for(family: &str) -> Option<&'static str> {
    Some(match family {
        "AL2" => "al2",
        "AL2023" => "al2023",
        "Bottlerocket" => "bottlerocket",
        "Windows2019" => "windows2019",
        "Windows2022" => "windows2022",
        "Windows2025" => "windows2025",
        _ => return None,
    })
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn valid_threshold(t: &str) -> bool {
    match t.trim().strip_suffix('%') {
        Some(p) => p.parse::<f64>().is_ok_and(|p| (0.0..=100.0).contains(&p)),
        None => Quantity::parse(t).is_ok_and(|q| !q.is_negative()),
    }
}

fn fmt_num(x: f64) -> String {
    let s = format!("{x}");
    s
}

fn signed(x: f64, suffix: &str) -> String {
    if x < 0.0 {
        format!("{x}{suffix}")
    } else {
        format!("+{x}{suffix}")
    }
}
