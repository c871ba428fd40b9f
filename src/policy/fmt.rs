//! The canonical formatter: AST → policy text.
//!
//! One statement per line, two-space indents, a blank line between top-level
//! items. Comments are not in the AST; they are read again from the source
//! and re-emitted where they were: a comment on a line of its own before the
//! node that follows it, a trailing comment at the end of its statement's
//! line. `parse(format(f)) == f` up to spans for every AST the parser can
//! produce (property-tested).

use std::fmt::Write as _;

use super::ast::*;

/// Formats a whole file.
pub fn format(file: &File) -> String {
    let mut pr = Printer {
        out: String::new(),
        comments: comments(&file.source),
        next: 0,
    };
    let mut prev_block = false;
    for (i, item) in file.items.iter().enumerate() {
        let block = matches!(item, Item::Pool(_) | Item::NodeClass(_));
        let start = item.span().offset;
        // A comment trailing the previous item's last line stays on it, above any blank line.
        pr.flush_trailing(start);
        if i > 0
            && (block || prev_block || blank_before(&file.source, start))
            && !pr.out.ends_with("\n\n")
        {
            pr.out.push('\n');
        }
        prev_block = block;
        pr.flush(0, start);
        item_to(&mut pr, item);
    }
    pr.flush(0, usize::MAX);
    pr.out
}

/// Output plus the source's comments, re-emitted before the first node that follows each.
struct Printer {
    out: String,
    comments: Vec<Comment>,
    next: usize,
}

/// One `#` comment of the source.
struct Comment {
    offset: usize,
    /// From `#`, trailing space trimmed.
    text: String,
    /// A blank line follows it.
    blank_after: bool,
    /// Code comes before it on its line (`weight 3  # why`).
    trailing: bool,
}

/// Whether the source has a blank line above `offset`'s line and the comments right above it.
fn blank_before(source: &str, offset: usize) -> bool {
    let Some(before) = source.get(..offset) else {
        return false;
    };
    let mut lines = before.lines().rev();
    // The item's own line (text before it on that line, usually empty).
    if !before.ends_with('\n') {
        lines.next();
    }
    for l in lines {
        let t = l.trim();
        if t.is_empty() {
            return true;
        }
        if !t.starts_with('#') {
            return false;
        }
    }
    false
}

impl Printer {
    /// Emits, at `depth`, every comment that starts before byte `before`.
    fn flush(&mut self, depth: usize, before: usize) {
        while let Some(c) = self.comments.get(self.next) {
            if c.offset >= before {
                break;
            }
            self.next += 1;
            let (text, blank, trailing) = (c.text.clone(), c.blank_after, c.trailing);
            if !(trailing && self.append_to_last_line(&text)) {
                line_raw(&mut self.out, depth, &text);
            }
            if blank && !self.out.ends_with("\n\n") {
                self.out.push('\n');
            }
        }
    }

    /// Emits the trailing comments that start before `before`, at the end of
    /// the line last written; stops at the first comment on a line of its own.
    fn flush_trailing(&mut self, before: usize) {
        while let Some(c) = self.comments.get(self.next) {
            if c.offset >= before || !c.trailing {
                break;
            }
            let text = c.text.clone();
            if !self.append_to_last_line(&text) {
                break;
            }
            self.next += 1;
        }
    }

    /// Puts `text` at the end of the last output line, two spaces after its
    /// code; false when there is no such line (nothing written, or a blank line).
    fn append_to_last_line(&mut self, text: &str) -> bool {
        let Some(body) = self.out.strip_suffix('\n') else {
            return false;
        };
        let last = body.rsplit('\n').next().unwrap_or(body);
        if last.trim().is_empty() {
            return false;
        }
        self.out.truncate(body.len());
        self.out.push_str("  ");
        self.out.push_str(text);
        self.out.push('\n');
        true
    }
}

/// Every `#` comment in `source` (outside strings).
fn comments(source: &str) -> Vec<Comment> {
    let mut out = Vec::new();
    let mut in_str = false;
    let mut escaped = false;
    let mut iter = source.char_indices();
    while let Some((i, c)) = iter.next() {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '#' => {
                let end = source[i..]
                    .find('\n')
                    .map(|n| i + n)
                    .unwrap_or(source.len());
                let after = &source[end..];
                let next_token = after
                    .find(|c: char| !c.is_whitespace())
                    .unwrap_or(after.len());
                let blank = next_token > 0 && after[..next_token].matches('\n').count() >= 2;
                let line_start = source[..i].rfind('\n').map_or(0, |n| n + 1);
                out.push(Comment {
                    offset: i,
                    text: source[i..end].trim_end().to_string(),
                    blank_after: blank,
                    trailing: !source[line_start..i].trim().is_empty(),
                });
                for (j, _) in iter.by_ref() {
                    if j + 1 >= end {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn is_bare_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_.-/@*%+".contains(c)
}

/// A word as it must be written: bare when it reads back as itself, else quoted.
pub fn word(w: &Word) -> String {
    word_str(&w.text)
}

fn word_str(t: &str) -> String {
    if !t.is_empty() && t.chars().all(is_bare_char) && !is_keyword(t) {
        t.to_string()
    } else {
        quote(t)
    }
}

fn is_keyword(t: &str) -> bool {
    super::parse::STATEMENT_KEYWORDS.contains(&t)
        || matches!(
            t,
            "not" | "and" | "or" | "pods" | "instance" | "after" | "root"
        )
}

/// A double-quoted string with the escapes the parser undoes.
pub fn quote(t: &str) -> String {
    let mut s = String::with_capacity(t.len() + 2);
    s.push('"');
    for c in t.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            '\r' => s.push_str("\\r"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

fn list(ws: &[Word]) -> String {
    let inner: Vec<String> = ws.iter().map(word).collect();
    format!("[{}]", inner.join(", "))
}

fn item_to(pr: &mut Printer, item: &Item) {
    let out = &mut pr.out;
    match item {
        Item::Pool(p) => pool(pr, p),
        Item::NodeClass(n) => node_class(pr, n),
        Item::Placement(r) => {
            out.push_str(&placement(r));
            out.push('\n');
        }
        Item::Cost(r) => {
            out.push_str(&cost(r));
            out.push('\n');
        }
        Item::Capacity(r) => {
            let pairs: Vec<String> = r
                .add
                .iter()
                .map(|kv| format!("{} {}", word(&kv.key), word(&kv.value)))
                .collect();
            let _ = write!(out, "capacity {}", pairs.join(", "));
            when_weight(out, &r.when, &r.weight);
            out.push('\n');
        }
        Item::Score(s) => {
            let _ = writeln!(out, "score with {}", quote(&s.path.text));
        }
    }
}

fn when_weight(out: &mut String, when: &Option<Expr>, weight: &Option<Word>) {
    if let Some(e) = when {
        let _ = write!(out, " on {}", expr(e));
    }
    if let Some(w) = weight {
        let _ = write!(out, " weight {}", word(w));
    }
}

fn pool(pr: &mut Printer, p: &Pool) {
    let _ = writeln!(pr.out, "pool {} {{", word(&p.name));
    for s in &p.body {
        pr.flush(1, pool_stmt_start(s));
        match s {
            PoolStmt::Weight(w) => line_raw(&mut pr.out, 1, &format!("weight {}", word(w))),
            PoolStmt::Require(r) => line_raw(&mut pr.out, 1, &requirement(r)),
            PoolStmt::Limit(kv) => line_raw(
                &mut pr.out,
                1,
                &format!("limit {} {}", word(&kv.key), word(&kv.value)),
            ),
            PoolStmt::Label(kv) => line_raw(
                &mut pr.out,
                1,
                &format!("label {} = {}", word(&kv.key), quote(&kv.value.text)),
            ),
            PoolStmt::Tag(kv) => line_raw(
                &mut pr.out,
                1,
                &format!("tag {} = {}", word(&kv.key), quote(&kv.value.text)),
            ),
            PoolStmt::Taint(t) => line_raw(&mut pr.out, 1, &format!("taint {}", taint(t))),
            PoolStmt::StartupTaint(t) => {
                line_raw(&mut pr.out, 1, &format!("startup-taint {}", taint(t)))
            }
            PoolStmt::NodeClass(n) => line_raw(&mut pr.out, 1, &format!("node-class {}", word(n))),
            PoolStmt::Kubelet(k) => kubelet(pr, 1, k),
            PoolStmt::Disruption(d) => disruption(pr, d),
            PoolStmt::Score(s) => line_raw(
                &mut pr.out,
                1,
                &format!("score with {}", quote(&s.path.text)),
            ),
        }
    }
    pr.flush(1, p.span.end());
    pr.out.push_str("}\n");
}

fn line_raw(out: &mut String, depth: usize, text: &str) {
    for _ in 0..depth {
        out.push_str("  ");
    }
    out.push_str(text);
    out.push('\n');
}

fn pool_stmt_start(s: &PoolStmt) -> usize {
    match s {
        PoolStmt::Weight(w) | PoolStmt::NodeClass(w) => w.span.offset,
        PoolStmt::Require(r) => r.span.offset,
        PoolStmt::Limit(kv) | PoolStmt::Label(kv) | PoolStmt::Tag(kv) => kv.span.offset,
        PoolStmt::Taint(t) | PoolStmt::StartupTaint(t) => t.span.offset,
        PoolStmt::Kubelet(k) => k.span.offset,
        PoolStmt::Disruption(d) => d.span.offset,
        PoolStmt::Score(s) => s.span.offset,
    }
}

/// `require KEY OP VALUES [min N]`.
pub fn requirement(r: &Requirement) -> String {
    let mut s = format!("require {} {}", word(&r.key), r.op.as_str());
    match r.op {
        ReqOp::In | ReqOp::NotIn => {
            s.push(' ');
            s.push_str(&list(&r.values));
        }
        ReqOp::Gt | ReqOp::Lt => {
            if let Some(v) = r.values.first() {
                s.push(' ');
                s.push_str(&word(v));
            }
        }
        ReqOp::Exists | ReqOp::DoesNotExist => {}
    }
    if let Some(m) = &r.min_values {
        let _ = write!(s, " min {}", word(m));
    }
    s
}

fn taint(t: &Taint) -> String {
    match &t.value {
        Some(v) => format!("{} = {} : {}", word(&t.key), word(v), word(&t.effect)),
        None => format!("{} : {}", word(&t.key), word(&t.effect)),
    }
}

fn kubelet(pr: &mut Printer, depth: usize, k: &Kubelet) {
    line_raw(&mut pr.out, depth, "kubelet {");
    for s in &k.body {
        pr.flush(depth + 1, s.span.offset);
        let kv2 =
            |name: &str, kv: &KeyValue| format!("{name} {} {}", word(&kv.key), word(&kv.value));
        let text = match &s.kind {
            KubeletKind::MaxPods(w) => format!("max-pods {}", word(w)),
            KubeletKind::PodsPerCore(w) => format!("pods-per-core {}", word(w)),
            KubeletKind::KubeReserved(kv) => kv2("kube-reserved", kv),
            KubeletKind::SystemReserved(kv) => kv2("system-reserved", kv),
            KubeletKind::EvictionHard(kv) => kv2("eviction-hard", kv),
            KubeletKind::EvictionSoft(kv) => kv2("eviction-soft", kv),
            KubeletKind::EvictionSoftGrace(kv) => kv2("eviction-soft-grace", kv),
            KubeletKind::EvictionMaxPodGracePeriod(w) => {
                format!("eviction-max-pod-grace-period {}", word(w))
            }
            KubeletKind::ImageGcHigh(w) => format!("image-gc-high {}", word(w)),
            KubeletKind::ImageGcLow(w) => format!("image-gc-low {}", word(w)),
            KubeletKind::CpuCfsQuota(w) => format!("cpu-cfs-quota {}", word(w)),
            KubeletKind::ClusterDns(ws) => format!("cluster-dns {}", list(ws)),
        };
        line_raw(&mut pr.out, depth + 1, &text);
    }
    pr.flush(depth + 1, k.span.end());
    line_raw(&mut pr.out, depth, "}");
}

fn disruption(pr: &mut Printer, d: &Disruption) {
    line_raw(&mut pr.out, 1, "disruption {");
    for s in &d.body {
        pr.flush(2, s.span.offset);
        let text = match &s.kind {
            DisruptionKind::Consolidate { policy, after } => {
                let mut t = "consolidate".to_string();
                if let Some(p) = policy {
                    let _ = write!(t, " {}", word(p));
                }
                if let Some(a) = after {
                    let _ = write!(t, " after {}", word(a));
                }
                t
            }
            DisruptionKind::ExpireAfter(w) => format!("expire-after {}", word(w)),
            DisruptionKind::TerminationGracePeriod(w) => {
                format!("termination-grace-period {}", word(w))
            }
            DisruptionKind::Budget(b) => {
                let mut t = format!("budget {}", word(&b.nodes));
                if let Some(s) = &b.schedule {
                    let _ = write!(t, " schedule {}", quote(&s.text));
                }
                if let Some(s) = &b.duration {
                    let _ = write!(t, " duration {}", word(s));
                }
                if !b.reasons.is_empty() {
                    let _ = write!(t, " reasons {}", list(&b.reasons));
                }
                t
            }
        };
        line_raw(&mut pr.out, 2, &text);
    }
    pr.flush(2, d.span.end());
    line_raw(&mut pr.out, 1, "}");
}

fn selector(t: &SelectorTerm) -> String {
    let fields: Vec<String> = t
        .fields
        .iter()
        .map(|f| match f {
            SelectorField::Alias(w) => format!("alias {}", word(w)),
            SelectorField::Id(w) => format!("id {}", word(w)),
            SelectorField::Name(w) => format!("name {}", word(w)),
            SelectorField::Owner(w) => format!("owner {}", word(w)),
            SelectorField::Tag(kv) => format!("tag {} = {}", word(&kv.key), quote(&kv.value.text)),
        })
        .collect();
    fields.join(" and ")
}

fn setting(s: &Setting) -> String {
    match &s.value {
        Some(v) => format!("{} {}", word_str(&s.name.text), word(v)),
        None => word_str(&s.name.text).trim_matches('"').to_string(),
    }
}

fn node_class(pr: &mut Printer, n: &NodeClass) {
    let _ = writeln!(pr.out, "node-class {} {{", word(&n.name));
    for s in &n.body {
        pr.flush(1, s.span.offset);
        match &s.kind {
            NodeClassKind::AmiFamily(w) => {
                line_raw(&mut pr.out, 1, &format!("ami-family {}", word(w)))
            }
            NodeClassKind::Ami(t) => line_raw(&mut pr.out, 1, &format!("ami {}", selector(t))),
            NodeClassKind::Subnets(t) => {
                line_raw(&mut pr.out, 1, &format!("subnets where {}", selector(t)))
            }
            NodeClassKind::SecurityGroups(t) => line_raw(
                &mut pr.out,
                1,
                &format!("security-groups where {}", selector(t)),
            ),
            NodeClassKind::Role(w) => line_raw(&mut pr.out, 1, &format!("role {}", quote(&w.text))),
            NodeClassKind::InstanceProfile(w) => line_raw(
                &mut pr.out,
                1,
                &format!("instance-profile {}", quote(&w.text)),
            ),
            NodeClassKind::Tag(kv) => line_raw(
                &mut pr.out,
                1,
                &format!("tag {} = {}", word(&kv.key), quote(&kv.value.text)),
            ),
            NodeClassKind::BlockDevice(b) => {
                line_raw(
                    &mut pr.out,
                    1,
                    &format!("block-device {} {{", word(&b.device)),
                );
                for s in &b.settings {
                    line_raw(&mut pr.out, 2, &setting(s));
                }
                line_raw(&mut pr.out, 1, "}");
            }
            NodeClassKind::Imds(settings) => {
                line_raw(&mut pr.out, 1, "imds {");
                for s in settings {
                    line_raw(&mut pr.out, 2, &setting(s));
                }
                line_raw(&mut pr.out, 1, "}");
            }
            NodeClassKind::UserData(w) => {
                line_raw(&mut pr.out, 1, &format!("user-data {}", quote(&w.text)))
            }
            NodeClassKind::DetailedMonitoring(w) => {
                line_raw(&mut pr.out, 1, &format!("detailed-monitoring {}", word(w)))
            }
            NodeClassKind::PublicIp(w) => {
                line_raw(&mut pr.out, 1, &format!("public-ip {}", word(w)))
            }
            NodeClassKind::InstanceStorePolicy(w) => line_raw(
                &mut pr.out,
                1,
                &format!("instance-store-policy {}", word(w)),
            ),
            NodeClassKind::Kubelet(k) => kubelet(pr, 1, k),
        }
    }
    pr.flush(1, n.span.end());
    pr.out.push_str("}\n");
}

/// A placement rule on one line.
pub fn placement(r: &PlacementRule) -> String {
    let mut s = r.kind.as_str().to_string();
    match (&r.pods, r.kind) {
        (None, PlacementKind::Prefer) => {
            let _ = write!(s, " {}", expr(&r.nodes));
        }
        (None, _) => {
            let _ = write!(s, " pods on {}", expr(&r.nodes));
        }
        (Some(p), _) => {
            let _ = write!(s, " pods where {} on {}", expr(p), expr(&r.nodes));
        }
    }
    if let Some(u) = &r.unless {
        let _ = write!(s, " unless {}", expr(u));
    }
    if let Some(w) = &r.weight {
        let _ = write!(s, " weight {}", word(w));
    }
    s
}

/// A cost rule on one line.
pub fn cost(r: &CostRule) -> String {
    let mut s = match &r.action {
        CostAction::SetPrice(w) => format!("price {}", word(w)),
        CostAction::Adjust(w) => format!("adjust {}", word(w)),
        CostAction::Discount(w) => format!("discount {}", word(w)),
        CostAction::Penalize(w) => format!("penalize {}", word(w)),
        CostAction::SpotFromOnDemand {
            ratio,
            only_when_unknown,
        } => {
            let mut t = format!("price spot = on-demand * {}", word(ratio));
            if *only_when_unknown {
                t.push_str(" when no spot price known");
            }
            t
        }
        CostAction::Ceiling { metric, max } => format!("ceiling {} {}", word(metric), word(max)),
    };
    when_weight(&mut s, &r.when, &r.weight);
    s
}

/// A condition.
pub fn expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::True => "true".into(),
        ExprKind::False => "false".into(),
        ExprKind::Or(parts) => parts
            .iter()
            .map(|p| match p.kind {
                ExprKind::Or(_) => format!("({})", expr(p)),
                _ => expr(p),
            })
            .collect::<Vec<_>>()
            .join(" or "),
        ExprKind::And(parts) => parts
            .iter()
            .map(|p| match p.kind {
                ExprKind::Or(_) | ExprKind::And(_) => format!("({})", expr(p)),
                _ => expr(p),
            })
            .collect::<Vec<_>>()
            .join(" and "),
        ExprKind::Not(inner) => match inner.kind {
            ExprKind::Or(_) | ExprKind::And(_) => format!("not ({})", expr(inner)),
            _ => format!("not {}", expr(inner)),
        },
        ExprKind::Cmp {
            subject,
            op,
            values,
            ..
        } => {
            if subject.scope.is_none()
                && subject.name.text == "pool"
                && subject.arg.is_none()
                && *op == CmpOp::Eq
                && values.len() == 1
            {
                return format!("pool {}", word(&values[0]));
            }
            let mut s = String::new();
            match subject.scope {
                Some(Scope::Pod) => s.push_str("pod."),
                Some(Scope::Node) => s.push_str("node."),
                None => {}
            }
            s.push_str(&subject.name.text);
            if let Some(a) = &subject.arg {
                let _ = write!(s, "({})", quote(&a.text));
            }
            let _ = write!(s, " {}", op.as_str());
            if op.takes_list() {
                let _ = write!(s, " {}", list(values));
            } else if !op.takes_none()
                && let Some(v) = values.first()
            {
                let _ = write!(s, " {}", word(v));
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn comments_stay_where_they_were() {
        let src = "# header\n\npool general {   # the default pool\n  weight 3    # tried first\n  # on its own line\n  require karpenter.sh/capacity-type in [spot]  # cheap\n}  # end of pool\n\n# before the class\nnode-class default {\n  role \"NodeRole\"\n}\n";
        let f = crate::policy::parse("c.policy", src).expect("parses");
        let out = format(&f);
        assert_eq!(
            out,
            "# header\n\npool general {  # the default pool\n  weight 3  # tried first\n  # on its own line\n  require karpenter.sh/capacity-type in [spot]  # cheap\n}  # end of pool\n\n# before the class\nnode-class default {\n  role \"NodeRole\"\n}\n"
        );
        // Formatting the output changes nothing, and the AST is the same.
        let again = crate::policy::parse("c.policy", &out).expect("reparses");
        assert_eq!(format(&again), out);
        assert_eq!(again.items, f.items);
    }

    fn w(s: impl Into<String>) -> Word {
        Word::new(s)
    }

    /// Any text: bare-looking words, keywords, and strings needing quotes and escapes.
    fn any_word() -> impl Strategy<Value = Word> {
        prop_oneof![
            "[a-z0-9][a-z0-9./@%*+-]{0,8}",
            Just("in".to_string()),
            Just("pool".to_string()),
            Just("on".to_string()),
            "[ -~]{0,6}",
            "\\PC{0,4}",
            Just("line\nbreak \"quoted\" back\\slash\t#".to_string()),
        ]
        .prop_map(w)
    }

    fn kv() -> impl Strategy<Value = KeyValue> {
        (any_word(), any_word()).prop_map(|(k, v)| KeyValue {
            key: k,
            value: v,
            span: Span::DUMMY,
        })
    }

    fn subject() -> impl Strategy<Value = Subject> {
        (
            prop_oneof![Just(None), Just(Some(Scope::Pod)), Just(Some(Scope::Node))],
            prop_oneof![
                Just("namespace"),
                Just("zone"),
                Just("label"),
                Just("pool"),
                Just("karpenter.k8s.aws/instance-gpu-count"),
                Just("owner-kind"),
            ],
            proptest::option::of(any_word()),
        )
            .prop_map(|(scope, name, arg)| Subject {
                scope,
                name: w(name),
                arg,
                span: Span::DUMMY,
            })
    }

    fn cmp_op() -> impl Strategy<Value = CmpOp> {
        prop_oneof![
            Just(CmpOp::Eq),
            Just(CmpOp::Ne),
            Just(CmpOp::In),
            Just(CmpOp::NotIn),
            Just(CmpOp::Lt),
            Just(CmpOp::Le),
            Just(CmpOp::Gt),
            Just(CmpOp::Ge),
            Just(CmpOp::Exists),
            Just(CmpOp::DoesNotExist),
        ]
    }

    fn expr() -> impl Strategy<Value = Expr> {
        let leaf = prop_oneof![
            Just(ExprKind::True),
            Just(ExprKind::False),
            (
                subject(),
                cmp_op(),
                proptest::collection::vec(any_word(), 0..3)
            )
                .prop_map(|(subject, op, mut values)| {
                    if op.takes_none() {
                        values.clear();
                    } else if !op.takes_list() {
                        values.truncate(1);
                        if values.is_empty() {
                            values.push(w("x"));
                        }
                    }
                    ExprKind::Cmp {
                        subject,
                        op,
                        op_span: Span::DUMMY,
                        values,
                    }
                }),
        ]
        .prop_map(|kind| Expr {
            kind,
            span: Span::DUMMY,
        });
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 2..4).prop_map(ExprKind::And),
                proptest::collection::vec(inner.clone(), 2..4).prop_map(ExprKind::Or),
                inner.prop_map(|e| ExprKind::Not(Box::new(e))),
            ]
            .prop_map(|kind| Expr {
                kind,
                span: Span::DUMMY,
            })
        })
    }

    fn requirement() -> impl Strategy<Value = Requirement> {
        (
            any_word(),
            prop_oneof![
                Just(ReqOp::In),
                Just(ReqOp::NotIn),
                Just(ReqOp::Exists),
                Just(ReqOp::DoesNotExist),
                Just(ReqOp::Gt),
                Just(ReqOp::Lt)
            ],
            proptest::collection::vec(any_word(), 1..4),
            proptest::option::of(any_word()),
        )
            .prop_map(|(key, op, mut values, min_values)| {
                match op {
                    ReqOp::Exists | ReqOp::DoesNotExist => values.clear(),
                    ReqOp::Gt | ReqOp::Lt => values.truncate(1),
                    _ => {}
                }
                Requirement {
                    key,
                    op,
                    op_span: Span::DUMMY,
                    values,
                    min_values,
                    span: Span::DUMMY,
                }
            })
    }

    fn kubelet_block() -> impl Strategy<Value = Kubelet> {
        let stmt = prop_oneof![
            any_word().prop_map(KubeletKind::MaxPods),
            kv().prop_map(KubeletKind::KubeReserved),
            kv().prop_map(KubeletKind::EvictionSoftGrace),
            any_word().prop_map(KubeletKind::CpuCfsQuota),
            proptest::collection::vec(any_word(), 0..3).prop_map(KubeletKind::ClusterDns),
        ]
        .prop_map(|kind| KubeletStmt {
            kind,
            span: Span::DUMMY,
        });
        proptest::collection::vec(stmt, 0..4).prop_map(|body| Kubelet {
            body,
            span: Span::DUMMY,
        })
    }

    fn disruption_block() -> impl Strategy<Value = Disruption> {
        let stmt = prop_oneof![
            (
                proptest::option::of(any_word()),
                proptest::option::of(any_word())
            )
                .prop_map(|(policy, after)| DisruptionKind::Consolidate { policy, after }),
            any_word().prop_map(DisruptionKind::ExpireAfter),
            (
                any_word(),
                proptest::option::of(any_word()),
                proptest::option::of(any_word()),
                proptest::collection::vec(any_word(), 0..3)
            )
                .prop_map(|(nodes, schedule, duration, reasons)| {
                    DisruptionKind::Budget(Budget {
                        nodes,
                        schedule,
                        duration,
                        reasons,
                    })
                }),
        ]
        .prop_map(|kind| DisruptionStmt {
            kind,
            span: Span::DUMMY,
        });
        proptest::collection::vec(stmt, 0..4).prop_map(|body| Disruption {
            body,
            span: Span::DUMMY,
        })
    }

    fn taint() -> impl Strategy<Value = Taint> {
        (any_word(), proptest::option::of(any_word()), any_word()).prop_map(
            |(key, value, effect)| Taint {
                key,
                value,
                effect,
                span: Span::DUMMY,
            },
        )
    }

    fn pool() -> impl Strategy<Value = Item> {
        let stmt = prop_oneof![
            any_word().prop_map(PoolStmt::Weight),
            requirement().prop_map(PoolStmt::Require),
            kv().prop_map(PoolStmt::Limit),
            kv().prop_map(PoolStmt::Label),
            kv().prop_map(PoolStmt::Tag),
            taint().prop_map(PoolStmt::Taint),
            taint().prop_map(PoolStmt::StartupTaint),
            any_word().prop_map(PoolStmt::NodeClass),
            kubelet_block().prop_map(PoolStmt::Kubelet),
            disruption_block().prop_map(PoolStmt::Disruption),
            any_word().prop_map(|path| PoolStmt::Score(ScoreHook {
                path,
                span: Span::DUMMY
            })),
        ];
        (any_word(), proptest::collection::vec(stmt, 0..8)).prop_map(|(name, body)| {
            Item::Pool(Pool {
                name,
                body,
                span: Span::DUMMY,
            })
        })
    }

    fn node_class() -> impl Strategy<Value = Item> {
        let field = prop_oneof![
            any_word().prop_map(SelectorField::Alias),
            any_word().prop_map(SelectorField::Id),
            any_word().prop_map(SelectorField::Owner),
            kv().prop_map(SelectorField::Tag),
        ];
        let term = proptest::collection::vec(field, 1..3).prop_map(|fields| SelectorTerm {
            fields,
            span: Span::DUMMY,
        });
        let setting = prop_oneof![
            Just(Setting {
                name: w("root"),
                value: None,
                span: Span::DUMMY
            }),
            (
                prop_oneof![Just("size"), Just("tokens"), Just("hop-limit")],
                any_word()
            )
                .prop_map(|(n, v)| Setting {
                    name: w(n),
                    value: Some(v),
                    span: Span::DUMMY
                }),
        ];
        let stmt = prop_oneof![
            term.clone().prop_map(NodeClassKind::Ami),
            term.clone().prop_map(NodeClassKind::Subnets),
            term.prop_map(NodeClassKind::SecurityGroups),
            any_word().prop_map(NodeClassKind::Role),
            any_word().prop_map(NodeClassKind::UserData),
            kv().prop_map(NodeClassKind::Tag),
            (any_word(), proptest::collection::vec(setting.clone(), 0..3)).prop_map(
                |(device, settings)| NodeClassKind::BlockDevice(BlockDevice {
                    device,
                    settings,
                    span: Span::DUMMY
                })
            ),
            proptest::collection::vec(setting, 0..3).prop_map(NodeClassKind::Imds),
            kubelet_block().prop_map(NodeClassKind::Kubelet),
        ]
        .prop_map(|kind| NodeClassStmt {
            kind,
            span: Span::DUMMY,
        });
        (any_word(), proptest::collection::vec(stmt, 0..6)).prop_map(|(name, body)| {
            Item::NodeClass(NodeClass {
                name,
                body,
                span: Span::DUMMY,
            })
        })
    }

    fn rule() -> impl Strategy<Value = Item> {
        let kind = prop_oneof![
            Just(PlacementKind::Place),
            Just(PlacementKind::Allow),
            Just(PlacementKind::Deny),
            Just(PlacementKind::Prefer)
        ];
        let placement = (
            kind,
            proptest::option::of(expr()),
            expr(),
            proptest::option::of(expr()),
            proptest::option::of(any_word()),
        )
            .prop_map(|(kind, pods, nodes, unless, weight)| {
                Item::Placement(PlacementRule {
                    kind,
                    pods,
                    nodes,
                    unless,
                    weight,
                    span: Span::DUMMY,
                })
            });
        let action = prop_oneof![
            any_word().prop_map(CostAction::SetPrice),
            any_word().prop_map(CostAction::Adjust),
            any_word().prop_map(CostAction::Discount),
            any_word().prop_map(CostAction::Penalize),
            (any_word(), any::<bool>()).prop_map(|(ratio, only_when_unknown)| {
                CostAction::SpotFromOnDemand {
                    ratio,
                    only_when_unknown,
                }
            }),
            (any_word(), any_word()).prop_map(|(metric, max)| CostAction::Ceiling { metric, max }),
        ];
        let cost = (
            action,
            proptest::option::of(expr()),
            proptest::option::of(any_word()),
        )
            .prop_map(|(action, when, weight)| {
                Item::Cost(CostRule {
                    action,
                    when,
                    weight,
                    span: Span::DUMMY,
                })
            });
        let capacity = (
            proptest::collection::vec(kv(), 1..3),
            proptest::option::of(expr()),
            proptest::option::of(any_word()),
        )
            .prop_map(|(add, when, weight)| {
                Item::Capacity(CapacityRule {
                    add,
                    when,
                    weight,
                    span: Span::DUMMY,
                })
            });
        prop_oneof![placement, cost, capacity]
    }

    fn file() -> impl Strategy<Value = File> {
        proptest::collection::vec(prop_oneof![pool(), node_class(), rule()], 0..5).prop_map(
            |items| File {
                items,
                ..File::new("gen.policy")
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// parse(format(f)) == f up to spans, and format is idempotent.
        #[test]
        fn format_round_trips(f in file()) {
            let text = format(&f);
            let back = match crate::policy::parse("gen.policy", &text) {
                Ok(b) => b,
                Err(d) => return Err(TestCaseError::fail(format!("{}\n---\n{text}", d.render(100)))),
            };
            prop_assert_eq!(&back, &f, "\n{}", text);
            prop_assert_eq!(format(&back), text);
        }

        /// Whatever the text, parsing and compiling return (no panic).
        #[test]
        fn never_panics_on_text(s in "\\PC{0,200}") {
            if let Ok(f) = crate::policy::parse("x.policy", &s) {
                let _ = crate::policy::compile(&[f]);
            }
        }
    }
}
