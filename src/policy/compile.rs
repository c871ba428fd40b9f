//! AST → IR (`ir::PolicySet`), with every check that needs meaning rather than
//! syntax: label keys, values, quantities, durations, references, duplicates,
//! contradictions and script files. Never panics; reports every problem it
//! finds, not only the first.
//!
//! Name clashes across the files of one set: pool names and node-class names
//! are global to the set, and a second definition is an error pointing at the
//! first. Rules (placement, cost, capacity, scores) simply accumulate in file
//! order, then source order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ast::{self, Expr, ExprKind, Span, Word};
use super::diag::{Code, Diagnostic, Diagnostics, LineIndex, did_you_mean};
use crate::ir::{self, labels};

/// Compiles the files of one policy set. On success, returns the IR and the warnings.
pub fn compile(files: &[ast::File]) -> Result<(ir::PolicySet, Vec<Diagnostic>), Diagnostics> {
    let mut c = Compiler::default();
    // Pass 1: names, so references may point forward and across files.
    for (fi, f) in files.iter().enumerate() {
        for item in &f.items {
            match item {
                ast::Item::Pool(p) => c.declare(files, fi, &p.name, true),
                ast::Item::NodeClass(n) => c.declare(files, fi, &n.name, false),
                _ => {}
            }
        }
    }
    let mut set = ir::PolicySet::default();
    let mut cost: Vec<(i32, ir::CostRule)> = Vec::new();
    let mut capacity: Vec<(i32, ir::CapacityRule)> = Vec::new();
    for (fi, f) in files.iter().enumerate() {
        let mut fx = FileCx::new(&f.path, &f.source, &mut c);
        fx.fi = fi;
        for item in &f.items {
            match item {
                ast::Item::Pool(p) => {
                    if let Some(pool) = fx.pool(p) {
                        set.pools.push(pool);
                    }
                }
                ast::Item::NodeClass(n) => {
                    if let Some(nc) = fx.node_class(n) {
                        set.node_classes.entry(nc.name.clone()).or_insert(nc);
                    }
                }
                ast::Item::Placement(r) => {
                    if let Some(r) = fx.placement(r) {
                        set.placement.push(r);
                    }
                }
                ast::Item::Cost(r) => {
                    if let Some(r) = fx.cost(r) {
                        cost.push(r);
                    }
                }
                ast::Item::Capacity(r) => {
                    if let Some(r) = fx.capacity(r) {
                        capacity.push(r);
                    }
                }
                ast::Item::Score(s) => {
                    if let Some(s) = fx.script(s) {
                        set.scripts.push(s);
                    }
                }
            }
        }
    }
    // NodeOverlay order: unweighted rules first (policy order), then by weight
    // ascending, so the heaviest rule applies last and its price wins.
    cost.sort_by_key(|(w, _)| *w);
    capacity.sort_by_key(|(w, _)| *w);
    set.cost = cost.into_iter().map(|(_, r)| r).collect();
    set.capacity = capacity.into_iter().map(|(_, r)| r).collect();
    // Pools naming a node class that is not defined.
    let known: Vec<String> = c.classes.keys().cloned().collect();
    let mut suggestions: HashMap<String, Option<String>> = HashMap::new();
    for (pool, nc, explicit, file, source, span) in std::mem::take(&mut c.class_refs) {
        if set.node_classes.contains_key(&nc) || c.classes.contains_key(&nc) {
            continue;
        }
        if explicit {
            let mut d = Diagnostic::error(
                &file,
                &source,
                span,
                Code::UnknownNodeClass,
                format!("pool `{pool}` uses node class `{nc}`, which is not defined"),
            )
            .with_primary("no such node class");
            let suggestion = suggestions
                .entry(nc.clone())
                .or_insert_with(|| {
                    did_you_mean(&nc, known.iter().map(String::as_str)).map(str::to_string)
                })
                .clone();
            d = match suggestion {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => {
                    d.with_help("define it with `node-class NAME { ... }` in any file of the set")
                }
            };
            c.push(d);
        } else if !known.is_empty() {
            c.push(
                Diagnostic::warning(
                    &file,
                    &source,
                    span,
                    Code::DefaultNodeClass,
                    format!(
                        "pool `{pool}` has no `node-class` and no node class is called `default`"
                    ),
                )
                .with_help("add `node-class NAME` to the pool"),
            );
        }
    }
    set.sort_pools();
    let (errors, warnings): (Vec<_>, Vec<_>) = c.diags.into_iter().partition(|d| d.is_error());
    if errors.is_empty() {
        Ok((set, warnings))
    } else {
        let mut all = errors;
        all.extend(warnings);
        Err(Diagnostics(all))
    }
}

/// Checks one requirement exactly as a pool's `require` statement is checked
/// (label key, values, integer bounds, `min`), for `policy::parse_requirement`.
pub(crate) fn requirement(
    file: &Path,
    source: &Arc<str>,
    r: &ast::Requirement,
) -> Result<ir::Requirement, Diagnostics> {
    let mut c = Compiler::default();
    let mut fx = FileCx::new(file, source, &mut c);
    let out = fx.requirement(r);
    match out {
        // A warning is not dropped: the caller gets it as a failure to act on.
        Some(req) if c.diags.is_empty() => Ok(req),
        _ => Err(Diagnostics(c.diags)),
    }
}

type ClassRef = (String, String, bool, PathBuf, Arc<str>, Span);

#[derive(Default)]
struct Compiler {
    diags: Vec<Diagnostic>,
    /// Errors among `diags` (kept as a count: each pool asks whether it added any).
    errors: usize,
    /// name → (file index, span) of the first definition.
    pools: BTreeMap<String, (usize, Span)>,
    classes: BTreeMap<String, (usize, Span)>,
    /// (file index, name offset) of pool/class definitions that are
    /// duplicates, skipped in pass 2; a set, so 20k duplicates stay linear.
    dups: HashSet<(usize, usize)>,
    /// Suggestions for misspelt reserved label keys, computed once per key.
    label_suggestions: HashMap<String, Option<&'static str>>,
    /// Line indexes of files named in cross-file duplicate errors, built once each.
    indexes: HashMap<usize, LineIndex>,
    class_refs: Vec<ClassRef>,
}

impl Compiler {
    fn push(&mut self, d: Diagnostic) {
        if d.is_error() {
            self.errors += 1;
        }
        self.diags.push(d);
    }

    fn declare(&mut self, files: &[ast::File], fi: usize, name: &Word, pool: bool) {
        let map = if pool { &self.pools } else { &self.classes };
        let what = if pool { "pool" } else { "node class" };
        let f = &files[fi];
        if let Some((first_fi, first_span)) = map.get(&name.text).copied() {
            let mut d = Diagnostic::error(
                &f.path,
                &f.source,
                name.span,
                Code::DuplicateName,
                format!("{what} `{}` is defined twice", name.text),
            )
            .with_primary("second definition");
            if first_fi == fi {
                d = d.with_label(first_span, "first defined here");
                d = d.with_help(format!(
                    "{what} names are unique across the whole policy set; rename or merge one"
                ));
            } else {
                let first = &files[first_fi];
                let (l, col) = self
                    .indexes
                    .entry(first_fi)
                    .or_insert_with(|| LineIndex::new(&first.source))
                    .line_col(&first.source, first_span.offset);
                d = d.with_help(format!(
                    "first defined at {}:{l}:{col}; {what} names are unique across the whole policy set",
                    first.path.display()
                ));
            }
            self.push(d);
            self.dups.insert((fi, name.span.offset));
        } else {
            let map = if pool {
                &mut self.pools
            } else {
                &mut self.classes
            };
            map.insert(name.text.clone(), (fi, name.span));
        }
    }
}

struct FileCx<'a> {
    file: &'a Path,
    source: &'a Arc<str>,
    /// Shared by every origin in the file.
    file_name: Arc<str>,
    /// Line starts, for O(log n) line/column lookups.
    lines: LineIndex,
    /// Index of the file in the set (duplicate definitions are keyed by it).
    fi: usize,
    /// Span of the item being compiled: where a finding goes when its own
    /// node has no span (imported YAML the importer could not locate finer).
    item_span: Span,
    c: &'a mut Compiler,
}

/// Which attributes an unscoped subject reads.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Pod,
    Node,
}

const POD_ATTRS: &[&str] = &[
    "namespace",
    "name",
    "label",
    "priority-class",
    "priority",
    "owner-kind",
    "owner-name",
];

const DISRUPTION_REASONS: &[&str] = &["underutilized", "empty", "drifted", "expired"];

impl<'a> FileCx<'a> {
    fn new(file: &'a Path, source: &'a Arc<str>, c: &'a mut Compiler) -> FileCx<'a> {
        FileCx {
            file,
            source,
            file_name: Arc::from(file.display().to_string()),
            lines: LineIndex::new(source),
            fi: 0,
            item_span: Span::DUMMY,
            c,
        }
    }

    /// `span`, or the item's span when `span` is the unknown (`Span::DUMMY`) one.
    fn located(&self, span: Span) -> Span {
        if span.same(&Span::DUMMY) {
            self.item_span
        } else {
            span
        }
    }

    fn err(&mut self, span: Span, code: Code, msg: impl Into<String>) -> &mut Diagnostic {
        let span = self.located(span);
        self.c
            .push(Diagnostic::error(self.file, self.source, span, code, msg));
        let n = self.c.diags.len() - 1;
        &mut self.c.diags[n]
    }

    fn push(&mut self, mut d: Diagnostic) {
        d.span = self.located(d.span);
        for l in &mut d.labels {
            l.span = self.located(l.span);
        }
        self.c.push(d);
    }

    fn origin(&self, span: Span) -> ir::Origin {
        let span = self.located(span);
        let (line, column) = self.lines.line_col(self.source, span.offset);
        ir::Origin {
            file: self.file_name.clone(),
            offset: span.offset,
            len: span.len,
            line,
            column,
        }
    }

    fn is_dup(&self, span: Span) -> bool {
        self.c.dups.contains(&(self.fi, span.offset))
    }

    // ------------------------------------------------------------ scalars

    fn int<T: std::str::FromStr>(&mut self, w: &Word, what: &str, help: &str) -> Option<T> {
        match w.text.parse::<T>() {
            Ok(v) => Some(v),
            Err(_) => {
                let d = Diagnostic::error(
                    self.file,
                    self.source,
                    w.span,
                    Code::MalformedNumber,
                    format!("{what} must be a whole number, not `{}`", w.text),
                )
                .with_help(help.to_string());
                self.push(d);
                None
            }
        }
    }

    fn float(&mut self, w: &Word, what: &str) -> Option<f64> {
        match w.text.trim_start_matches('+').parse::<f64>() {
            Ok(v) if v.is_finite() => Some(v),
            _ => {
                let d = Diagnostic::error(
                    self.file,
                    self.source,
                    w.span,
                    Code::MalformedNumber,
                    format!("{what} must be a number, not `{}`", w.text),
                )
                .with_help("write a decimal number such as 0.05");
                self.push(d);
                None
            }
        }
    }

    /// `what` is only formatted when a diagnostic is reported.
    fn quantity(&mut self, w: &Word, what: impl std::fmt::Display) -> Option<ir::Quantity> {
        match ir::Quantity::parse(&w.text) {
            Ok(q) if q.is_negative() => {
                let d = Diagnostic::error(
                    self.file,
                    self.source,
                    w.span,
                    Code::NegativeQuantity,
                    format!("{what} `{}` is negative", w.text),
                )
                .with_help("quantities here must be zero or more");
                self.push(d);
                None
            }
            Ok(q) => Some(q),
            Err(e) => {
                let d = Diagnostic::error(
                    self.file,
                    self.source,
                    w.span,
                    Code::MalformedQuantity,
                    format!("{what}: {e}"),
                )
                .with_help(e.help());
                self.push(d);
                None
            }
        }
    }

    fn duration(&mut self, w: &Word, what: &str) -> Option<ir::Duration> {
        let text = if w.text.eq_ignore_ascii_case("never") {
            "Never"
        } else {
            w.text.as_str()
        };
        match ir::Duration::parse(text) {
            Ok(d) => Some(d),
            Err(e) => {
                let d = Diagnostic::error(
                    self.file,
                    self.source,
                    w.span,
                    Code::MalformedDuration,
                    format!("{what}: {e}"),
                )
                .with_help(e.help());
                self.push(d);
                None
            }
        }
    }

    fn boolean(&mut self, w: &Word) -> Option<bool> {
        match w.text.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => {
                self.err(
                    w.span,
                    Code::MalformedBool,
                    format!("expected `true` or `false`, not `{}`", w.text),
                )
                .help = Some("write true or false".into());
                None
            }
        }
    }

    /// `N%` → N, checked against `max`.
    fn percent(&mut self, w: &Word, what: &str, max: f64) -> Option<f64> {
        let Some(num) = w.text.strip_suffix('%') else {
            self.err(
                w.span,
                Code::MalformedPercent,
                format!("{what} must be a percentage like `10%`, not `{}`", w.text),
            )
            .help = Some("add a `%`".into());
            return None;
        };
        match num.parse::<f64>() {
            Ok(v) if (0.0..=max).contains(&v) => Some(v),
            Ok(v) => {
                self.err(
                    w.span,
                    Code::PercentOutOfRange,
                    format!("{what} of {v}% is above {max}%"),
                )
                .help = Some(format!("use a value between 0% and {max}%"));
                None
            }
            Err(_) => {
                self.err(
                    w.span,
                    Code::MalformedPercent,
                    format!("malformed percentage `{}`", w.text),
                )
                .help = Some("write a number followed by `%`, such as 20%".into());
                None
            }
        }
    }

    fn label_key(&mut self, key: &Word) -> bool {
        if key.text.is_empty() {
            self.err(key.span, Code::EmptyKey, "empty label key").help =
                Some("write a label key such as `team` or `example.com/team`".into());
            return false;
        }
        if labels::is_unknown_reserved(&key.text) {
            let mut d = Diagnostic::error(
                self.file,
                self.source,
                key.span,
                Code::UnknownLabel,
                format!("unknown well-known label `{}`", key.text),
            )
            .with_primary("not a label Kubernetes or Karpenter sets");
            let suggestion = *self
                .c
                .label_suggestions
                .entry(key.text.clone())
                .or_insert_with(|| did_you_mean(&key.text, labels::WELL_KNOWN.iter().copied()));
            d = match suggestion {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(
                    "keys in the kubernetes.io, k8s.io and karpenter domains are reserved; use your own domain for custom labels",
                ),
            };
            self.push(d);
            return false;
        }
        if let Some(full) = labels::expand_short_name(&key.text) {
            // Short names are for rule conditions; as a label key, `zone` or
            // `instance-family` is a custom label no node carries.
            let d = Diagnostic::warning(
                self.file,
                self.source,
                key.span,
                Code::ShortNameAsLabel,
                format!("`{}` is a short name, not a node label", key.text),
            )
            .with_primary("no node carries this label")
            .with_help(format!("did you mean `{full}`?"));
            self.push(d);
        }
        true
    }

    /// Windows is refused where it is named, not launched with Linux user data.
    fn windows(&mut self, span: Span, what: &str) {
        self.err(
            span,
            Code::WindowsUnsupported,
            format!("`{what}`: Windows nodes are not supported"),
        )
        .help = Some(
            "nodewright launches Linux nodes only (AL2023, AL2, Bottlerocket or a Custom AMI); \
             run Windows node groups outside nodewright"
                .into(),
        );
    }

    fn once<T>(&mut self, slot: &mut Option<(T, Span)>, value: T, span: Span, what: &str) {
        if let Some((_, first)) = slot {
            let first = *first;
            let d = Diagnostic::error(
                self.file,
                self.source,
                span,
                Code::DuplicateSetting,
                format!("`{what}` is set twice"),
            )
            .with_label(first, "first set here")
            .with_help("remove one of them");
            self.push(d);
        } else {
            *slot = Some((value, span));
        }
    }

    // ------------------------------------------------------------ pools

    fn pool(&mut self, p: &ast::Pool) -> Option<ir::Pool> {
        if self.is_dup(p.name.span) {
            return None;
        }
        self.item_span = p.span;
        let errors_before = self.c.errors;
        let mut weight: Option<(i32, Span)> = None;
        let mut node_class: Option<(String, Span)> = None;
        let mut terms: Vec<(ir::Requirement, Span)> = Vec::new();
        let mut pool = ir::Pool {
            name: p.name.text.clone(),
            weight: 0,
            requirement_terms: Vec::new(),
            requirements: ir::Requirements::new(),
            limits: BTreeMap::new(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            startup_taints: Vec::new(),
            tags: BTreeMap::new(),
            node_class: String::new(),
            kubelet: ir::KubeletConfig::default(),
            disruption: ir::Disruption::default(),
            scripts: Vec::new(),
            origin: Some(self.origin(p.span)),
        };
        let mut seen_disruption = false;
        for s in &p.body {
            match s {
                ast::PoolStmt::Weight(w) => {
                    if let Some(v) = self.int::<i32>(
                        w,
                        "weight",
                        "weights are whole numbers; higher is tried first",
                    ) {
                        self.once(&mut weight, v, w.span, "weight");
                    }
                }
                ast::PoolStmt::Require(r) => {
                    if let Some(t) = self.requirement(r) {
                        terms.push((t, r.span));
                    }
                }
                ast::PoolStmt::Limit(kv) => {
                    if let Some(q) =
                        self.quantity(&kv.value, format_args!("limit on {}", kv.key.text))
                        && pool.limits.insert(kv.key.text.clone(), q).is_some()
                    {
                        self.err(
                            kv.span,
                            Code::DuplicateSetting,
                            format!("limit on `{}` is set twice", kv.key.text),
                        )
                        .help = Some("keep one limit per resource".into());
                    }
                }
                ast::PoolStmt::Label(kv) => {
                    if self.label_key(&kv.key) {
                        pool.labels
                            .insert(kv.key.text.clone(), kv.value.text.clone());
                    }
                }
                ast::PoolStmt::Tag(kv) => {
                    pool.tags.insert(kv.key.text.clone(), kv.value.text.clone());
                }
                ast::PoolStmt::Taint(t) => {
                    if let Some(t) = self.taint(t) {
                        pool.taints.push(t);
                    }
                }
                ast::PoolStmt::StartupTaint(t) => {
                    if let Some(t) = self.taint(t) {
                        pool.startup_taints.push(t);
                    }
                }
                ast::PoolStmt::NodeClass(n) => {
                    self.once(&mut node_class, n.text.clone(), n.span, "node-class");
                }
                ast::PoolStmt::Kubelet(k) => {
                    let over = self.kubelet(k);
                    pool.kubelet = pool.kubelet.overridden_by(&over);
                }
                ast::PoolStmt::Disruption(d) => {
                    if seen_disruption {
                        self.err(
                            d.span,
                            Code::DuplicateSetting,
                            "`disruption` block given twice",
                        )
                        .help = Some("merge the two blocks".into());
                    }
                    seen_disruption = true;
                    pool.disruption = self.disruption(d);
                }
                ast::PoolStmt::Score(s) => {
                    if let Some(s) = self.script(s) {
                        pool.scripts.push(s);
                    }
                }
            }
        }
        pool.weight = weight.map(|(w, _)| w).unwrap_or(0);
        // Merge terms per key (what `Requirements::from_terms` does, in the same
        // order), reporting each term that empties a key's set. The first term
        // on a key never does: `anything() ∩ set` is `set`.
        let mut reqs = ir::Requirements::new();
        for (i, (t, span)) in terms.iter().enumerate() {
            let set = ir::ValueSet::from_op(t.op, &t.values);
            match reqs.keys.get_mut(t.key.as_str()) {
                Some(existing) => {
                    let merged = existing.intersect(&set);
                    if merged.is_empty() && !set.is_empty() {
                        let mut d = Diagnostic::error(
                            self.file,
                            self.source,
                            *span,
                            Code::Contradiction,
                            format!(
                                "requirements on `{}` contradict each other: no node can satisfy both",
                                t.key
                            ),
                        )
                        .with_primary("this requirement")
                        .with_help("remove or widen one of the requirements");
                        for (_, s) in terms[..i].iter().filter(|(e, _)| e.key == t.key) {
                            d = d.with_label(*s, "contradicts this one");
                        }
                        self.push(d);
                    }
                    *existing = merged;
                }
                None => {
                    reqs.keys.insert(t.key.clone(), set);
                }
            }
            if let Some(m) = t.min_values {
                let e = reqs.min_values.entry(t.key.clone()).or_insert(0);
                *e = (*e).max(m);
            }
        }
        pool.requirement_terms = terms.into_iter().map(|(t, _)| t).collect();
        pool.requirements = reqs;
        let (nc, explicit, span) = match node_class {
            Some((n, s)) => (n, true, s),
            None => ("default".to_string(), false, p.name.span),
        };
        pool.node_class = nc.clone();
        self.c.class_refs.push((
            p.name.text.clone(),
            nc,
            explicit,
            self.file.to_path_buf(),
            self.source.clone(),
            span,
        ));
        let errors_after = self.c.errors;
        (errors_after == errors_before).then_some(pool)
    }

    fn requirement(&mut self, r: &ast::Requirement) -> Option<ir::Requirement> {
        let mut ok = self.label_key(&r.key);
        let op = r.op.to_ir();
        let values: Vec<String> = r.values.iter().map(|w| w.text.clone()).collect();
        match r.op {
            ast::ReqOp::In | ast::ReqOp::NotIn => {
                if values.is_empty() {
                    self.err(
                        r.op_span,
                        Code::EmptyValues,
                        format!("`{}` needs at least one value", r.op.as_str()),
                    )
                    .help = Some("list the values: `in [a, b]`".into());
                    ok = false;
                }
            }
            ast::ReqOp::Gt | ast::ReqOp::Lt => {
                if let Some(v) = r.values.first()
                    && v.text.parse::<i64>().is_err()
                {
                    let d = Diagnostic::error(
                        self.file,
                        self.source,
                        v.span,
                        Code::NonIntegerBound,
                        format!("`{}` compares integers, but `{}` is not an integer", r.op.as_str(), v.text),
                    )
                    .with_primary("not an integer")
                    .with_help("Gt and Lt take a single whole number, e.g. `> 5`; use `in [..]` for other values");
                    self.push(d);
                    ok = false;
                }
            }
            ast::ReqOp::Exists | ast::ReqOp::DoesNotExist => {}
        }
        let mut min_values = None;
        if let Some(m) = &r.min_values {
            match self.int::<u32>(
                m,
                "min",
                "min is the number of distinct values the instance types must span",
            ) {
                Some(n) => {
                    if r.op == ast::ReqOp::In && (n as usize) > values.len() {
                        let d = Diagnostic::error(
                            self.file,
                            self.source,
                            m.span,
                            Code::MinValuesTooLarge,
                            format!(
                                "`min {n}` asks for more values than the {} listed",
                                values.len()
                            ),
                        )
                        .with_primary("too many")
                        .with_help(format!(
                            "list at least {n} values or lower `min` to at most {}",
                            values.len()
                        ));
                        self.push(d);
                        ok = false;
                    }
                    min_values = Some(n);
                }
                None => ok = false,
            }
        }
        ok.then(|| ir::Requirement {
            key: r.key.text.clone(),
            op,
            values,
            min_values,
            origin: Some(self.origin(r.span)),
        })
    }

    fn taint(&mut self, t: &ast::Taint) -> Option<ir::Taint> {
        let effect = ir::TaintEffect::parse(&t.effect.text);
        if effect.is_none() {
            let opts = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
            let help = match did_you_mean(&t.effect.text, opts) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "the effect is NoSchedule, PreferNoSchedule or NoExecute".to_string(),
            };
            self.err(
                t.effect.span,
                Code::UnknownTaintEffect,
                format!("unknown taint effect `{}`", t.effect.text),
            )
            .help = Some(help);
        }
        Some(ir::Taint {
            key: t.key.text.clone(),
            value: t.value.as_ref().map(|v| v.text.clone()),
            effect: effect?,
        })
    }

    fn kubelet(&mut self, k: &ast::Kubelet) -> ir::KubeletConfig {
        let mut c = ir::KubeletConfig::default();
        for s in &k.body {
            match &s.kind {
                ast::KubeletKind::MaxPods(w) => {
                    c.max_pods = self.int(w, "max-pods", "max-pods is a whole number of pods")
                }
                ast::KubeletKind::PodsPerCore(w) => {
                    c.pods_per_core =
                        self.int(w, "pods-per-core", "pods-per-core is a whole number")
                }
                ast::KubeletKind::KubeReserved(kv) => {
                    if let Some(q) = self.quantity(&kv.value, "kube-reserved") {
                        c.kube_reserved.insert(kv.key.text.clone(), q);
                    }
                }
                ast::KubeletKind::SystemReserved(kv) => {
                    if let Some(q) = self.quantity(&kv.value, "system-reserved") {
                        c.system_reserved.insert(kv.key.text.clone(), q);
                    }
                }
                ast::KubeletKind::EvictionHard(kv) | ast::KubeletKind::EvictionSoft(kv) => {
                    if kv.value.text.ends_with('%') {
                        self.percent(&kv.value, "eviction threshold", 100.0);
                    } else {
                        self.quantity(&kv.value, "eviction threshold");
                    }
                    let map = if matches!(s.kind, ast::KubeletKind::EvictionHard(_)) {
                        &mut c.eviction_hard
                    } else {
                        &mut c.eviction_soft
                    };
                    map.insert(kv.key.text.clone(), kv.value.text.clone());
                }
                ast::KubeletKind::EvictionSoftGrace(kv) => {
                    if let Some(d) = self.duration(&kv.value, "eviction-soft-grace") {
                        c.eviction_soft_grace_period.insert(kv.key.text.clone(), d);
                    }
                }
                ast::KubeletKind::EvictionMaxPodGracePeriod(w) => {
                    c.eviction_max_pod_grace_period =
                        self.int(w, "eviction-max-pod-grace-period", "a number of seconds")
                }
                ast::KubeletKind::ImageGcHigh(w) => {
                    c.image_gc_high_threshold_percent = self.percent_or_int(w, "image-gc-high")
                }
                ast::KubeletKind::ImageGcLow(w) => {
                    c.image_gc_low_threshold_percent = self.percent_or_int(w, "image-gc-low")
                }
                ast::KubeletKind::CpuCfsQuota(w) => c.cpu_cfs_quota = self.boolean(w),
                ast::KubeletKind::ClusterDns(ws) => {
                    c.cluster_dns = ws.iter().map(|w| w.text.clone()).collect()
                }
            }
        }
        if let (Some(h), Some(l)) = (
            c.image_gc_high_threshold_percent,
            c.image_gc_low_threshold_percent,
        ) && l >= h
        {
            self.err(
                k.span,
                Code::ImageGc,
                format!("image-gc-low ({l}%) must be below image-gc-high ({h}%)"),
            )
            .help = Some("lower image-gc-low or raise image-gc-high".into());
        }
        c
    }

    fn percent_or_int(&mut self, w: &Word, what: &str) -> Option<u32> {
        let p = if w.text.ends_with('%') {
            self.percent(w, what, 100.0)
        } else {
            let v: Option<u32> = self.int(w, what, "a percentage from 0 to 100");
            match v {
                Some(v) if v > 100 => {
                    self.err(
                        w.span,
                        Code::PercentOutOfRange,
                        format!("{what} of {v}% is above 100%"),
                    )
                    .help = Some("use a value between 0 and 100".into());
                    None
                }
                v => v.map(f64::from),
            }
        };
        p.map(|v| v as u32)
    }

    fn disruption(&mut self, d: &ast::Disruption) -> ir::Disruption {
        let mut out = ir::Disruption::default();
        let mut budgets = Vec::new();
        for s in &d.body {
            match &s.kind {
                ast::DisruptionKind::Consolidate { policy, after } => {
                    if let Some(p) = policy {
                        match p.text.as_str() {
                            "when-empty" => {
                                out.consolidation_policy = ir::ConsolidationPolicy::WhenEmpty
                            }
                            "when-empty-or-underutilized" | "when-underutilized" => {
                                out.consolidation_policy =
                                    ir::ConsolidationPolicy::WhenEmptyOrUnderutilized
                            }
                            other => {
                                let opts = [
                                    "when-empty",
                                    "when-empty-or-underutilized",
                                    "when-underutilized",
                                ];
                                let help = match did_you_mean(other, opts) {
                                    Some(s) => format!("did you mean `{s}`?"),
                                    None => {
                                        "write `when-empty` or `when-empty-or-underutilized`".into()
                                    }
                                };
                                self.err(
                                    p.span,
                                    Code::UnknownConsolidationPolicy,
                                    format!("unknown consolidation policy `{other}`"),
                                )
                                .help = Some(help);
                            }
                        }
                    }
                    if let Some(a) = after
                        && let Some(v) = self.duration(a, "consolidate after")
                    {
                        out.consolidate_after = v;
                    }
                }
                ast::DisruptionKind::ExpireAfter(w) => {
                    if let Some(v) = self.duration(w, "expire-after") {
                        out.expire_after = v;
                    }
                }
                ast::DisruptionKind::TerminationGracePeriod(w) => {
                    out.termination_grace_period = self.duration(w, "termination-grace-period");
                }
                ast::DisruptionKind::Budget(b) => {
                    let nodes = if b.nodes.text.ends_with('%') {
                        self.percent(&b.nodes, "budget", 100.0)
                            .map(|p| ir::BudgetNodes::Percent(p.round() as u8))
                    } else {
                        self.int::<u32>(
                            &b.nodes,
                            "budget",
                            "a budget is a node count like 5 or a percentage like 10%",
                        )
                        .map(ir::BudgetNodes::Count)
                    };
                    let duration = b
                        .duration
                        .as_ref()
                        .and_then(|w| self.duration(w, "budget duration"));
                    if let Some(s) = &b.schedule {
                        let fields = s.text.split_whitespace().count();
                        let bad = if fields != 5 && !s.text.starts_with('@') {
                            Some(format!(
                                "schedule `{}` is not a 5-field cron expression",
                                s.text
                            ))
                        } else {
                            ir::parse_schedule(&s.text).err().map(|why| {
                                format!(
                                    "schedule `{}` is not a valid cron schedule ({})",
                                    s.text,
                                    why.to_lowercase().trim_end_matches('.')
                                )
                            })
                        };
                        if let Some(message) = bad {
                            self.err(s.span, Code::MalformedSchedule, message)
                                .help = Some("write minute hour day-of-month month day-of-week (UTC), e.g. \"0 9 * * mon-fri\", or @daily, @weekly, @monthly".into());
                        }
                        if b.duration.is_none() {
                            self.err(
                                s.span,
                                Code::ScheduleWithoutDuration,
                                "a budget with a schedule needs a duration",
                            )
                            .help =
                                Some("add `duration 8h` (how long the window stays open)".into());
                        }
                    }
                    let mut reasons = Vec::new();
                    for r in &b.reasons {
                        match r.text.as_str() {
                            "underutilized" | "Underutilized" => {
                                reasons.push(ir::DisruptionReason::Underutilized)
                            }
                            "empty" | "Empty" => reasons.push(ir::DisruptionReason::Empty),
                            "drifted" | "Drifted" => reasons.push(ir::DisruptionReason::Drifted),
                            "expired" | "Expired" => reasons.push(ir::DisruptionReason::Expired),
                            other => {
                                let help = match did_you_mean(
                                    &other.to_lowercase(),
                                    DISRUPTION_REASONS.iter().copied(),
                                ) {
                                    Some(s) => format!("did you mean `{s}`?"),
                                    None => "reasons are underutilized, empty, drifted and expired"
                                        .into(),
                                };
                                self.err(
                                    r.span,
                                    Code::UnknownReason,
                                    format!("unknown disruption reason `{other}`"),
                                )
                                .help = Some(help);
                            }
                        }
                    }
                    if let Some(nodes) = nodes {
                        budgets.push(ir::Budget {
                            nodes,
                            schedule: b.schedule.as_ref().map(|w| w.text.clone()),
                            duration,
                            reasons,
                        });
                    }
                }
            }
        }
        if d.body
            .iter()
            .any(|s| matches!(s.kind, ast::DisruptionKind::Budget(_)))
        {
            out.budgets = budgets;
        }
        out
    }

    /// A `score with` path: relative to the folder of the policy file, never
    /// leaving it (not absolute, no `..` above it, no link pointing out of
    /// it), naming a `.rhai` file. Nothing else is ever read as a script, so
    /// a policy cannot make `check`, `plan` or the controller print another
    /// file (a service-account token, say) in a script error.
    fn script(&mut self, s: &ast::ScoreHook) -> Option<ir::ScriptRef> {
        let dir = match self.file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let rel = Path::new(&s.path.text);
        if let Some(why) = escapes(rel) {
            let d = Diagnostic::error(
                self.file,
                self.source,
                s.path.span,
                Code::ScriptPath,
                format!("script path `{}` {why}", s.path.text),
            )
            .with_primary("outside the policy folder")
            .with_help(
                "script paths are relative to the folder of the policy file and stay inside it; put the script there",
            );
            self.push(d);
            return None;
        }
        if rel.extension().is_none_or(|x| x != "rhai") {
            let d = Diagnostic::error(
                self.file,
                self.source,
                s.path.span,
                Code::NotAScript,
                format!("`{}` is not a `.rhai` script", s.path.text),
            )
            .with_primary("not a .rhai file")
            .with_help(
                "scoring scripts are rhai files named `*.rhai`; nothing else is read as a script",
            );
            self.push(d);
            return None;
        }
        let path = dir.join(rel);
        if !path.is_file() {
            let d = Diagnostic::error(
                self.file,
                self.source,
                s.path.span,
                Code::MissingScript,
                format!(
                    "script `{}` not found (looked at {})",
                    s.path.text,
                    path.display()
                ),
            )
            .with_primary("no such file")
            .with_help("script paths are resolved relative to the folder of the policy file");
            self.push(d);
            return None;
        }
        // Links: the file itself must be inside the folder too.
        let inside = match (dir.canonicalize(), path.canonicalize()) {
            (Ok(d), Ok(p)) => p.starts_with(d),
            _ => false,
        };
        if !inside {
            let d = Diagnostic::error(
                self.file,
                self.source,
                s.path.span,
                Code::ScriptPath,
                format!(
                    "script `{}` leads outside the policy folder (through a link)",
                    s.path.text
                ),
            )
            .with_primary("outside the policy folder")
            .with_help(
                "script paths are relative to the folder of the policy file and stay inside it; copy the script there instead of linking to it",
            );
            self.push(d);
            return None;
        }
        Some(ir::ScriptRef {
            path,
            origin: Some(self.origin(s.span)),
        })
    }

    // ------------------------------------------------------------ node classes

    fn node_class(&mut self, n: &ast::NodeClass) -> Option<ir::NodeClass> {
        if self.is_dup(n.name.span) {
            return None;
        }
        self.item_span = n.span;
        let mut nc = ir::NodeClass {
            name: n.name.text.clone(),
            origin: Some(self.origin(n.span)),
            ..Default::default()
        };
        let mut role: Option<(String, Span)> = None;
        let mut profile: Option<(String, Span)> = None;
        for s in &n.body {
            match &s.kind {
                ast::NodeClassKind::AmiFamily(w) => {
                    let fams = ["AL2", "AL2023", "Bottlerocket", "Custom"];
                    if w.text.to_ascii_lowercase().starts_with("windows") {
                        self.windows(w.span, &w.text);
                    } else if !fams.contains(&w.text.as_str()) {
                        let help = match did_you_mean(&w.text, fams) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!("AMI families are {}", fams.join(", ")),
                        };
                        self.err(
                            w.span,
                            Code::UnknownAmiFamily,
                            format!("unknown AMI family `{}`", w.text),
                        )
                        .help = Some(help);
                    }
                    nc.ami_family = Some(w.text.clone());
                }
                ast::NodeClassKind::Ami(t) => {
                    let mut term = ir::AmiSelectorTerm::default();
                    for f in &t.fields {
                        match f {
                            ast::SelectorField::Alias(w) => {
                                if w.text.to_ascii_lowercase().starts_with("windows") {
                                    self.windows(w.span, &w.text);
                                } else if !w.text.contains('@') {
                                    self.err(
                                        w.span,
                                        Code::MalformedAlias,
                                        format!("AMI alias `{}` has no version", w.text),
                                    )
                                    .help = Some("write family@version, e.g. al2023@latest".into());
                                }
                                term.alias = Some(w.text.clone())
                            }
                            ast::SelectorField::Id(w) => term.id = Some(w.text.clone()),
                            ast::SelectorField::Name(w) => term.name = Some(w.text.clone()),
                            ast::SelectorField::Owner(w) => term.owner = Some(w.text.clone()),
                            ast::SelectorField::Tag(kv) => {
                                term.tags.insert(kv.key.text.clone(), kv.value.text.clone());
                            }
                        }
                    }
                    nc.ami_selector.push(term);
                }
                ast::NodeClassKind::Subnets(t) | ast::NodeClassKind::SecurityGroups(t) => {
                    let mut term = ir::SelectorTerm::default();
                    for f in &t.fields {
                        match f {
                            ast::SelectorField::Id(w) => term.id = Some(w.text.clone()),
                            ast::SelectorField::Name(w) => term.name = Some(w.text.clone()),
                            ast::SelectorField::Tag(kv) => {
                                term.tags.insert(kv.key.text.clone(), kv.value.text.clone());
                            }
                            ast::SelectorField::Alias(w) | ast::SelectorField::Owner(w) => {
                                self.err(
                                    w.span,
                                    Code::BadSelector,
                                    "`alias` and `owner` select AMIs only",
                                )
                                .help = Some(
                                    "select subnets and security groups by `id`, `name` or `tag`"
                                        .into(),
                                );
                            }
                        }
                    }
                    if matches!(s.kind, ast::NodeClassKind::Subnets(_)) {
                        nc.subnet_selector.push(term);
                    } else {
                        nc.security_group_selector.push(term);
                    }
                }
                ast::NodeClassKind::Role(w) => self.once(&mut role, w.text.clone(), w.span, "role"),
                ast::NodeClassKind::InstanceProfile(w) => {
                    self.once(&mut profile, w.text.clone(), w.span, "instance-profile")
                }
                ast::NodeClassKind::Tag(kv) => {
                    nc.tags.insert(kv.key.text.clone(), kv.value.text.clone());
                }
                ast::NodeClassKind::BlockDevice(b) => {
                    if let Some(m) = self.block_device(b) {
                        nc.block_device_mappings.push(m);
                    }
                }
                ast::NodeClassKind::Imds(settings) => self.imds(settings, &mut nc.metadata_options),
                ast::NodeClassKind::UserData(w) => nc.user_data = Some(w.text.clone()),
                ast::NodeClassKind::DetailedMonitoring(w) => {
                    nc.detailed_monitoring = self.boolean(w)
                }
                ast::NodeClassKind::PublicIp(w) => nc.associate_public_ip_address = self.boolean(w),
                ast::NodeClassKind::InstanceStorePolicy(w) => {
                    if w.text != "RAID0" {
                        self.err(
                            w.span,
                            Code::UnknownInstanceStorePolicy,
                            format!("unknown instance-store policy `{}`", w.text),
                        )
                        .help = Some("the only policy is RAID0".into());
                    }
                    nc.instance_store_policy = Some(w.text.clone());
                }
                ast::NodeClassKind::Kubelet(k) => {
                    let over = self.kubelet(k);
                    nc.kubelet = nc.kubelet.overridden_by(&over);
                }
            }
        }
        if let (Some((_, rs)), Some((_, ps))) = (&role, &profile) {
            let d = Diagnostic::error(
                self.file,
                self.source,
                *ps,
                Code::RoleAndProfile,
                format!(
                    "node class `{}` sets both a role and an instance profile",
                    n.name.text
                ),
            )
            .with_label(*rs, "role set here")
            .with_help("set exactly one: Karpenter creates the instance profile from the role");
            self.push(d);
        }
        nc.role = role.map(|r| r.0);
        nc.instance_profile = profile.map(|p| p.0);
        Some(nc)
    }

    fn block_device(&mut self, b: &ast::BlockDevice) -> Option<ir::BlockDeviceMapping> {
        let mut m = ir::BlockDeviceMapping {
            device_name: b.device.text.clone(),
            ..Default::default()
        };
        const KEYS: &[&str] = &[
            "root",
            "size",
            "type",
            "iops",
            "throughput",
            "encrypted",
            "kms-key",
            "delete-on-termination",
            "snapshot",
        ];
        for s in &b.settings {
            let v = s.value.clone().unwrap_or_else(|| Word {
                text: String::new(),
                span: s.span,
            });
            match s.name.text.as_str() {
                "root" => m.root_volume = true,
                "size" => m.volume_size = self.quantity(&v, "volume size"),
                "type" => m.volume_type = Some(v.text.clone()),
                "iops" => m.iops = self.int(&v, "iops", "IOPS is a whole number"),
                "throughput" => {
                    m.throughput = self.int(&v, "throughput", "MiB/s as a whole number")
                }
                "encrypted" => m.encrypted = self.boolean(&v),
                "kms-key" => m.kms_key_id = Some(v.text.clone()),
                "delete-on-termination" => m.delete_on_termination = self.boolean(&v),
                "snapshot" => m.snapshot_id = Some(v.text.clone()),
                other => self.unknown_setting(s.name.span, other, "block-device", KEYS),
            }
        }
        Some(m)
    }

    fn imds(&mut self, settings: &[ast::Setting], m: &mut ir::MetadataOptions) {
        const KEYS: &[&str] = &["tokens", "endpoint", "hop-limit", "ipv6"];
        for s in settings {
            let v = s.value.clone().unwrap_or_else(|| Word {
                text: String::new(),
                span: s.span,
            });
            let choice = |cx: &mut Self, opts: &[&str]| -> Option<String> {
                if opts.contains(&v.text.as_str()) {
                    Some(v.text.clone())
                } else {
                    cx.err(
                        v.span,
                        Code::BadImds,
                        format!("`{}` is not valid for imds {}", v.text, s.name.text),
                    )
                    .help = Some(format!("use one of: {}", opts.join(", ")));
                    None
                }
            };
            match s.name.text.as_str() {
                "tokens" => {
                    if let Some(x) = choice(self, &["required", "optional"]) {
                        m.http_tokens = x;
                    }
                }
                "endpoint" => {
                    if let Some(x) = choice(self, &["enabled", "disabled"]) {
                        m.http_endpoint = x;
                    }
                }
                "ipv6" => {
                    if let Some(x) = choice(self, &["enabled", "disabled"]) {
                        m.http_protocol_ipv6 = x;
                    }
                }
                "hop-limit" => {
                    if let Some(n) = self.int::<i64>(&v, "hop-limit", "1 to 64") {
                        m.http_put_response_hop_limit = n;
                    }
                }
                other => self.unknown_setting(s.name.span, other, "imds", KEYS),
            }
        }
    }

    fn unknown_setting(&mut self, span: Span, name: &str, block: &str, keys: &[&str]) {
        let help = match did_you_mean(name, keys.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("{block} settings are {}", keys.join(", ")),
        };
        self.err(
            span,
            Code::UnknownSetting,
            format!("unknown {block} setting `{name}`"),
        )
        .help = Some(help);
    }

    // ------------------------------------------------------------ conditions

    fn cond(&mut self, e: &Expr, side: Side) -> Option<ir::Cond> {
        Some(match &e.kind {
            ExprKind::True => ir::Cond::True,
            ExprKind::False => ir::Cond::False,
            ExprKind::And(es) => ir::Cond::All(self.conds(es, side)?),
            ExprKind::Or(es) => ir::Cond::Any(self.conds(es, side)?),
            ExprKind::Not(x) => ir::Cond::Not(Box::new(self.cond(x, side)?)),
            ExprKind::Cmp {
                subject,
                op,
                op_span,
                values,
            } => {
                let subj = self.subject(subject, side)?;
                let n = values.len();
                let ok = if op.takes_none() {
                    n == 0
                } else if op.takes_list() {
                    n >= 1
                } else {
                    n == 1
                };
                if !ok {
                    self.err(*op_span, Code::WrongArity, format!("`{}` takes {}", op.as_str(),
                        if op.takes_none() { "no value" } else if op.takes_list() { "a list of values" } else { "exactly one value" }))
                        .help = Some("e.g. `zone in [us-east-1a]`, `namespace == \"batch\"`, `label(\"gpu\") exists`".into());
                    return None;
                }
                if matches!(
                    op,
                    ast::CmpOp::Lt | ast::CmpOp::Le | ast::CmpOp::Gt | ast::CmpOp::Ge
                ) && let Some(v) = values.first()
                    && v.text.parse::<f64>().is_err()
                {
                    self.err(
                        v.span,
                        Code::NonNumericBound,
                        format!(
                            "`{}` compares numbers, but `{}` is not a number",
                            op.as_str(),
                            v.text
                        ),
                    )
                    .help = Some("use `==` or `in` for text".into());
                    return None;
                }
                if matches!(&subj, ir::Subject::NodeLabel(k) if k == labels::NODEPOOL) {
                    for v in values {
                        self.pool_ref(v);
                    }
                }
                let irop = match op {
                    ast::CmpOp::Eq => ir::CmpOp::Eq,
                    ast::CmpOp::Ne => ir::CmpOp::Ne,
                    ast::CmpOp::In => ir::CmpOp::In,
                    ast::CmpOp::NotIn => ir::CmpOp::NotIn,
                    ast::CmpOp::Lt => ir::CmpOp::Lt,
                    ast::CmpOp::Le => ir::CmpOp::Le,
                    ast::CmpOp::Gt => ir::CmpOp::Gt,
                    ast::CmpOp::Ge => ir::CmpOp::Ge,
                    ast::CmpOp::Exists => ir::CmpOp::Exists,
                    ast::CmpOp::DoesNotExist => ir::CmpOp::NotExists,
                };
                ir::Cond::Cmp {
                    subject: subj,
                    op: irop,
                    values: values.iter().map(|w| w.text.clone()).collect(),
                }
            }
        })
    }

    fn conds(&mut self, es: &[Expr], side: Side) -> Option<Vec<ir::Cond>> {
        let out: Vec<Option<ir::Cond>> = es.iter().map(|e| self.cond(e, side)).collect();
        out.into_iter().collect()
    }

    fn pool_ref(&mut self, v: &Word) {
        if self.c.pools.contains_key(&v.text) {
            return;
        }
        let help = match did_you_mean(&v.text, self.c.pools.keys().map(|s| s.as_str())) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "define the pool with `pool NAME { ... }` in any file of the set".to_string(),
        };
        self.err(
            v.span,
            Code::UnknownPool,
            format!("unknown pool `{}`", v.text),
        )
        .help = Some(help);
    }

    fn subject(&mut self, s: &ast::Subject, side: Side) -> Option<ir::Subject> {
        let side_here = match s.scope {
            Some(ast::Scope::Pod) => Side::Pod,
            Some(ast::Scope::Node) => Side::Node,
            None => side,
        };
        if side_here != side {
            let (want, got) = match side {
                Side::Pod => ("pod", "node"),
                Side::Node => ("node", "pod"),
            };
            self.err(
                s.span,
                Code::WrongSide,
                format!(
                    "this clause is about the {want}, but `{got}.{}` reads the {got}",
                    s.name.text
                ),
            )
            .help = Some(
                "pod conditions go after `pods where` or `unless`; node conditions after `on`"
                    .into(),
            );
            return None;
        }
        let name = s.name.text.as_str();
        let label_arg = |cx: &mut Self| -> Option<String> {
            match &s.arg {
                Some(a) => Some(a.text.clone()),
                None => {
                    cx.err(
                        s.span,
                        Code::LabelNeedsKey,
                        "`label` needs a key: `label(\"team\")`",
                    )
                    .help = Some("write label(\"KEY\")".into());
                    None
                }
            }
        };
        if s.arg.is_some() && name != "label" {
            self.err(
                s.span,
                Code::UnexpectedArgument,
                format!("`{name}` takes no argument"),
            )
            .help = Some("only `label(\"KEY\")` takes an argument".into());
            return None;
        }
        match side {
            Side::Pod => Some(match name {
                "namespace" => ir::Subject::PodNamespace,
                "name" => ir::Subject::PodName,
                "label" => ir::Subject::PodLabel(label_arg(self)?),
                "priority-class" => ir::Subject::PodPriorityClass,
                "priority" => ir::Subject::PodPriority,
                "owner-kind" => ir::Subject::PodOwnerKind,
                "owner-name" => ir::Subject::PodOwnerName,
                other => {
                    let help = match did_you_mean(other, POD_ATTRS.iter().copied()) {
                        Some(x) => format!("did you mean `{x}`?"),
                        None if labels::expand_short_name(other).is_some() || other.contains('/') => {
                            "that is a node attribute: put it after `on`, or write `node.` before it".into()
                        }
                        None => format!("pod attributes are {}", POD_ATTRS.join(", ")),
                    };
                    self.err(
                        s.name.span,
                        Code::UnknownAttribute,
                        format!("unknown pod attribute `{other}`"),
                    )
                    .help = Some(help);
                    return None;
                }
            }),
            Side::Node => {
                if name == "label" {
                    return Some(ir::Subject::NodeLabel(label_arg(self)?));
                }
                if name == "price" {
                    return Some(ir::Subject::NodePrice);
                }
                if let Some(k) = labels::expand_short_name(name) {
                    return Some(ir::Subject::NodeLabel(k.to_string()));
                }
                if name.contains('/') {
                    if !self.label_key(&s.name) {
                        return None;
                    }
                    return Some(ir::Subject::NodeLabel(name.to_string()));
                }
                let names = labels::SHORT_NAMES
                    .iter()
                    .map(|(n, _)| *n)
                    .chain(["label", "price"]);
                let help = match did_you_mean(name, names) {
                    Some(x) => format!("did you mean `{x}`?"),
                    None if POD_ATTRS.contains(&name) => {
                        "that is a pod attribute: put it after `pods where`, or write `pod.` before it".into()
                    }
                    None => "use a short name such as zone, capacity-type, instance-family, or a full label key".into(),
                };
                self.err(
                    s.name.span,
                    Code::UnknownAttribute,
                    format!("unknown node attribute `{name}`"),
                )
                .help = Some(help);
                None
            }
        }
    }

    // ------------------------------------------------------------ rules

    fn placement(&mut self, r: &ast::PlacementRule) -> Option<ir::PlacementRule> {
        self.item_span = r.span;
        let pods = r.pods.as_ref().map(|p| self.cond(p, Side::Pod));
        let nodes = self.cond(&r.nodes, Side::Node);
        let unless = r.unless.as_ref().map(|u| self.cond(u, Side::Pod));
        let weight = match &r.weight {
            Some(w) if r.kind == ast::PlacementKind::Prefer => {
                match self.int::<i32>(w, "weight", "a preference weight is 1 to 100") {
                    Some(v) if (1..=100).contains(&v) => Some(Some(v)),
                    Some(v) => {
                        self.err(
                            w.span,
                            Code::WeightOutOfRange,
                            format!("preference weight {v} is outside 1..=100"),
                        )
                        .help = Some("use a weight from 1 (weak) to 100 (strong)".into());
                        None
                    }
                    None => None,
                }
            }
            Some(w) => {
                self.err(
                    w.span,
                    Code::UnexpectedWeight,
                    format!("`{}` rules take no weight", r.kind.as_str()),
                )
                .help = Some("only `prefer` rules are weighted".into());
                None
            }
            None => Some(None),
        };
        let pods = match pods {
            Some(p) => Some(p?),
            None => None,
        };
        let nodes = nodes?;
        let unless = match unless {
            Some(u) => Some(u?),
            None => None,
        };
        let weight = weight?;
        let matched = match (pods, unless) {
            (None, None) => ir::Cond::True,
            (Some(p), None) => p,
            (None, Some(u)) => ir::Cond::Not(Box::new(u)),
            (Some(p), Some(u)) => ir::Cond::All(vec![p, ir::Cond::Not(Box::new(u))]),
        };
        let (kind, pods) = match r.kind {
            ast::PlacementKind::Place => (ir::PlacementKind::Require, matched),
            ast::PlacementKind::Deny => (ir::PlacementKind::Deny, matched),
            ast::PlacementKind::Allow => {
                (ir::PlacementKind::Deny, ir::Cond::Not(Box::new(matched)))
            }
            ast::PlacementKind::Prefer => (
                ir::PlacementKind::Prefer {
                    weight: weight.unwrap_or(50),
                },
                matched,
            ),
        };
        Some(ir::PlacementRule {
            kind,
            pods,
            nodes,
            origin: Some(self.origin(r.span)),
        })
    }

    fn rule_weight(&mut self, w: &Option<Word>) -> Option<i32> {
        match w {
            Some(w) => self.int(
                w,
                "weight",
                "rule weights are whole numbers; heavier rules apply last",
            ),
            None => Some(i32::MIN),
        }
    }

    fn cost(&mut self, r: &ast::CostRule) -> Option<(i32, ir::CostRule)> {
        self.item_span = r.span;
        let when = match &r.when {
            Some(e) => self.cond(e, Side::Node),
            None => Some(ir::Cond::True),
        };
        let weight = self.rule_weight(&r.weight);
        let action = match &r.action {
            ast::CostAction::SetPrice(w) => {
                let p = self.float(w, "price")?;
                if p < 0.0 {
                    self.err(
                        w.span,
                        Code::NegativePrice,
                        format!("price {p} is negative"),
                    )
                    .help = Some("prices are dollars per hour, zero or more".into());
                    return None;
                }
                ir::CostAction::SetPrice(p)
            }
            ast::CostAction::Adjust(w) => {
                if w.text.ends_with('%') {
                    let num = w.text.trim_end_matches('%');
                    let v = self.float(
                        &Word {
                            text: num.to_string(),
                            span: w.span,
                        },
                        "adjustment",
                    )?;
                    if v < -100.0 {
                        self.err(
                            w.span,
                            Code::PercentOutOfRange,
                            format!("adjustment of {v}% would make prices negative"),
                        )
                        .help = Some("a percentage adjustment must be at least -100%".into());
                        return None;
                    }
                    ir::CostAction::Scale(1.0 + v / 100.0)
                } else {
                    ir::CostAction::Add(self.float(w, "adjustment")?)
                }
            }
            ast::CostAction::Discount(w) => {
                ir::CostAction::Scale(1.0 - self.percent(w, "discount", 100.0)? / 100.0)
            }
            ast::CostAction::Penalize(w) => {
                ir::CostAction::Scale(1.0 + self.percent(w, "penalty", 10000.0)? / 100.0)
            }
            ast::CostAction::SpotFromOnDemand {
                ratio,
                only_when_unknown,
            } => {
                let v = self.float(ratio, "spot ratio")?;
                if v <= 0.0 {
                    self.err(
                        ratio.span,
                        Code::BadRatio,
                        format!("spot ratio {v} must be above zero"),
                    )
                    .help = Some("spot usually costs 0.3 to 0.7 of on-demand".into());
                    return None;
                }
                ir::CostAction::SpotFromOnDemand {
                    ratio: v,
                    only_when_unknown: *only_when_unknown,
                }
            }
            ast::CostAction::Ceiling { metric, max } => {
                let m = match metric.text.as_str() {
                    "price" => ir::CeilingMetric::PricePerHour,
                    "price-per-vcpu" => ir::CeilingMetric::PricePerVcpu,
                    "price-per-gib" => ir::CeilingMetric::PricePerGib,
                    other => {
                        let opts = ["price", "price-per-vcpu", "price-per-gib"];
                        let help = match did_you_mean(other, opts) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => "ceilings are on price, price-per-vcpu or price-per-gib".into(),
                        };
                        self.err(
                            metric.span,
                            Code::UnknownMetric,
                            format!("unknown ceiling metric `{other}`"),
                        )
                        .help = Some(help);
                        return None;
                    }
                };
                let v = self.float(max, "ceiling")?;
                if v < 0.0 {
                    self.err(
                        max.span,
                        Code::NegativePrice,
                        format!("ceiling {v} is negative"),
                    )
                    .help = Some("ceilings are dollars, zero or more".into());
                    return None;
                }
                ir::CostAction::Ceiling { metric: m, max: v }
            }
        };
        Some((
            weight?,
            ir::CostRule {
                when: when?,
                action,
                origin: Some(self.origin(r.span)),
            },
        ))
    }

    fn capacity(&mut self, r: &ast::CapacityRule) -> Option<(i32, ir::CapacityRule)> {
        self.item_span = r.span;
        let when = match &r.when {
            Some(e) => self.cond(e, Side::Node),
            None => Some(ir::Cond::True),
        };
        let weight = self.rule_weight(&r.weight);
        let mut add = BTreeMap::new();
        let mut ok = true;
        for kv in &r.add {
            match self.quantity(&kv.value, format_args!("capacity of {}", kv.key.text)) {
                Some(q) => {
                    add.insert(kv.key.text.clone(), q);
                }
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        Some((
            weight?,
            ir::CapacityRule {
                when: when?,
                add,
                origin: Some(self.origin(r.span)),
            },
        ))
    }
}

/// Why a script path written in a policy leaves the policy file's folder, if it does.
fn escapes(rel: &Path) -> Option<&'static str> {
    use std::path::Component;
    if rel.as_os_str().is_empty() {
        return Some("is empty");
    }
    let mut depth = 0usize;
    for c in rel.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => return Some("is absolute"),
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return Some("climbs out of the policy folder with `..`"),
            },
            Component::Normal(_) => depth += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Origins carry the same line and column as diagnostics.
    #[test]
    fn origins_have_line_and_column() {
        let text = "# c\npool a {\n  require kubernetes.io/arch in [amd64]\n}\n";
        let f = crate::policy::parse("o.policy", text).expect("parses");
        let (set, _) = compile(&[f]).expect("compiles");
        let pool = &set.pools[0];
        let o = pool.origin.as_ref().expect("origin");
        assert_eq!((o.line, o.column), (2, 1));
        let r = pool.requirement_terms[0].origin.as_ref().expect("origin");
        assert_eq!((r.line, r.column), (3, 3));
        assert_eq!(r.to_string(), "o.policy:3:3");
        assert_eq!(
            (r.line, r.column),
            crate::policy::diag::line_col(text, r.offset)
        );
    }
}
