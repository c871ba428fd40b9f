//! Policy text → AST, with a span on every node. The grammar is
//! `grammar/policy.pest`, and pest is the only parser: a grammar change is
//! one edit there plus, for a new construct, its walk below.
//!
//! Syntax errors and unknown operators are reported here; everything that
//! needs more than one statement to judge is left to `compile`.

use std::path::Path;
use std::sync::Arc;

use pest::Parser as _;
use pest::iterators::Pair;

use super::ast::*;
use super::diag::{Code, Diagnostic, Diagnostics, did_you_mean};

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/policy.pest"]
struct PolicyParser;

/// Parses one file. `file` is the name used in diagnostics and to resolve scripts.
pub fn parse(file: &Path, text: &str) -> Result<File, Diagnostics> {
    // A byte-order mark is invisible in editors: drop it rather than call it
    // an unexpected character (columns on line 1 stay as the editor shows them).
    let text = super::text::strip_bom(text);
    let source: Arc<str> = Arc::from(text);
    if let Some(at) = too_deep(text) {
        let d = Diagnostic::error(
            file,
            &source,
            Span::new(at, 1),
            Code::TooDeep,
            format!("condition nested more than {MAX_DEPTH} levels deep"),
        )
        .with_primary("too deep")
        .with_help(
            "split the condition into several rules, or remove redundant parentheses and `not`s",
        );
        return Err(Diagnostics(vec![d]));
    }
    parse_with_pest(file, source, text)
}

/// Parses one requirement expression, the text that follows `require` in a
/// pool (`KEY in [a, b]`, `KEY > 4`, `KEY exists`, optionally `min N`), with
/// the grammar's own `requirement_expr` rule. `name` labels diagnostics.
pub fn parse_requirement(name: &Path, text: &str) -> Result<Requirement, Diagnostics> {
    let source: Arc<str> = Arc::from(text);
    let mut cx = Cx {
        file: name,
        source: &source,
        diags: Vec::new(),
    };
    let mut pairs = match PolicyParser::parse(Rule::requirement_expr, text) {
        Ok(p) => p,
        Err(e) => {
            return Err(Diagnostics(vec![syntax_error(
                name,
                &source,
                e,
                Input::Requirement,
            )]));
        }
    };
    let req = pairs.next().map(|p| cx.requirement(p));
    match req {
        Some(r) if cx.diags.is_empty() => Ok(r),
        _ if !cx.diags.is_empty() => Err(Diagnostics(cx.diags)),
        _ => Err(Diagnostics(vec![
            Diagnostic::error(
                name,
                &source,
                Span::new(0, 0),
                Code::Syntax,
                "empty requirement",
            )
            .with_help(REQUIREMENT_HELP),
        ])),
    }
}

/// How a requirement is written, for help texts.
const REQUIREMENT_HELP: &str = "write `KEY in [a, b]`, `KEY not in [a]`, `KEY exists`, `KEY does-not-exist`, `KEY > N` or `KEY < N`";

/// What a syntax error was found in, for its wording.
#[derive(Clone, Copy, PartialEq)]
enum Input {
    File,
    Requirement,
}

/// The grammar of record: pest's parse tree, walked into the AST.
fn parse_with_pest(file: &Path, source: Arc<str>, text: &str) -> Result<File, Diagnostics> {
    let mut cx = Cx {
        file,
        source: &source,
        diags: Vec::new(),
    };
    let pairs = match PolicyParser::parse(Rule::file, text) {
        Ok(p) => p,
        Err(e) => {
            return Err(Diagnostics(vec![syntax_error(
                file,
                &source,
                e,
                Input::File,
            )]));
        }
    };
    let mut items = Vec::new();
    for file_pair in pairs {
        for p in file_pair.into_inner() {
            if let Some(item) = cx.item(p) {
                items.push(item);
            }
        }
    }
    if cx.diags.is_empty() {
        Ok(File {
            path: file.to_path_buf(),
            source,
            items,
        })
    } else {
        Err(Diagnostics(cx.diags))
    }
}

/// Deepest condition nesting (parentheses plus chained `not`s) accepted. The
/// parser and compiler recurse on conditions; this bound keeps them far from
/// the stack limit whatever the input.
pub const MAX_DEPTH: usize = 64;

/// The byte offset where nesting first exceeds `MAX_DEPTH`, if it does.
fn too_deep(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut nots = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' => depth += 1,
            b')' => {
                depth = depth.saturating_sub(1);
                nots = 0;
            }
            b if b.is_ascii_alphanumeric() => {
                let start = i;
                while i + 1 < bytes.len()
                    && (bytes[i + 1].is_ascii_alphanumeric() || b"_.-/@*%+".contains(&bytes[i + 1]))
                {
                    i += 1;
                }
                if &bytes[start..=i] == b"not" {
                    nots += 1;
                } else {
                    nots = 0;
                }
                if depth + nots > MAX_DEPTH {
                    return Some(start);
                }
            }
            _ => {}
        }
        if depth + nots > MAX_DEPTH {
            return Some(i.min(bytes.len().saturating_sub(1)));
        }
        i += 1;
    }
    None
}

struct Cx<'a> {
    file: &'a Path,
    source: &'a Arc<str>,
    diags: Vec<Diagnostic>,
}

/// The pair's span without the separators pest's implicit whitespace leaves at its end.
fn span(p: &Pair<'_, Rule>) -> Span {
    let s = p.as_span();
    let trimmed = p
        .as_str()
        .trim_end_matches([' ', '\t', '\r', '\n', ';'])
        .len();
    Span::new(s.start(), trimmed)
}

/// Children that carry meaning (keywords dropped).
fn kids<'i>(p: Pair<'i, Rule>) -> impl Iterator<Item = Pair<'i, Rule>> {
    p.into_inner()
        .filter(|c| !is_kw(c.as_rule()) && !matches!(c.as_rule(), Rule::eq | Rule::colon))
}

fn word(p: Pair<'_, Rule>) -> Word {
    let sp = span(&p);
    let inner = match p.as_rule() {
        Rule::word => p.into_inner().next(),
        _ => Some(p),
    };
    let text = match inner {
        Some(i) if i.as_rule() == Rule::string => unescape(i.as_str()),
        Some(i) => i.as_str().to_string(),
        None => String::new(),
    };
    Word { text, span: sp }
}

/// Undoes the string escapes the formatter writes (`\"`, `\\`, `\n`, `\t`, `\r`).
pub(crate) fn unescape(quoted: &str) -> String {
    let body = quoted
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(quoted);
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

fn words(list: Pair<'_, Rule>) -> Vec<Word> {
    match list.as_rule() {
        Rule::list => list.into_inner().map(word).collect(),
        _ => vec![word(list)],
    }
}

fn kv(p: Pair<'_, Rule>) -> KeyValue {
    let sp = span(&p);
    let mut it = kids(p);
    let key = it.next().map(word).unwrap_or_else(|| Word::new(""));
    let value = it.next().map(word).unwrap_or_else(|| Word::new(""));
    KeyValue {
        key,
        value,
        span: sp,
    }
}

fn one(p: Pair<'_, Rule>) -> Word {
    let sp = span(&p);
    kids(p).next().map(word).unwrap_or(Word {
        text: String::new(),
        span: sp,
    })
}

const REQ_OPS: &[&str] = &["in", "not in", "exists", "does-not-exist", ">", "<"];
const CMP_OPS: &[&str] = &[
    "==",
    "!=",
    "in",
    "not in",
    "<",
    "<=",
    ">",
    ">=",
    "exists",
    "does-not-exist",
];

impl Cx<'_> {
    fn bad_op(&mut self, p: &Pair<'_, Rule>, known: &[&'static str]) {
        let text = p.as_str();
        if known.contains(&text) {
            // A real operator with nothing after it (`require k in`).
            let help = if matches!(text, ">" | "<") {
                "compare with a whole number, e.g. `> 4`"
            } else {
                "list the values: `in [a, b]`"
            };
            self.diags.push(
                Diagnostic::error(
                    self.file,
                    self.source,
                    span(p),
                    Code::EmptyValues,
                    format!("`{text}` needs at least one value"),
                )
                .with_primary("no value after this")
                .with_help(help),
            );
            return;
        }
        if matches!(text, "=" | "==") && !known.contains(&"==") {
            self.diags.push(
                Diagnostic::error(
                    self.file,
                    self.source,
                    span(p),
                    Code::UnknownOperator,
                    format!("unknown operator `{text}`"),
                )
                .with_primary("not an operator")
                .with_help(
                    "a requirement lists the values it allows: use `in [value]` rather than `=`",
                ),
            );
            return;
        }
        let suggestion = match text {
            "=" => Some("=="),
            "notin" | "not-in" | "NotIn" => Some("not in"),
            "In" => Some("in"),
            "Exists" => Some("exists"),
            "DoesNotExist" | "not-exists" | "!exists" => Some("does-not-exist"),
            "Gt" | "gt" => Some(">"),
            "Lt" | "lt" => Some("<"),
            _ => did_you_mean(text, known.iter().copied()),
        };
        let help = match suggestion {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!(
                "operators are {}",
                known
                    .iter()
                    .map(|o| format!("`{o}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        self.diags.push(
            Diagnostic::error(
                self.file,
                self.source,
                span(p),
                Code::UnknownOperator,
                format!("unknown operator `{text}`"),
            )
            .with_primary("not an operator")
            .with_help(help),
        );
    }

    fn item(&mut self, p: Pair<'_, Rule>) -> Option<Item> {
        Some(match p.as_rule() {
            Rule::pool => Item::Pool(self.pool(p)),
            Rule::node_class => Item::NodeClass(self.node_class(p)),
            Rule::placement => Item::Placement(self.placement(p)),
            Rule::cost_rule => Item::Cost(self.cost_rule(p)),
            Rule::capacity_rule => Item::Capacity(self.capacity_rule(p)),
            Rule::score => Item::Score(score(p)),
            _ => return None,
        })
    }

    fn pool(&mut self, p: Pair<'_, Rule>) -> Pool {
        let sp = span(&p);
        let mut it = kids(p);
        let name = it.next().map(word).unwrap_or_else(|| Word::new(""));
        let mut body = Vec::new();
        for s in it {
            let stmt = match s.as_rule() {
                Rule::weight => PoolStmt::Weight(one(s)),
                Rule::require => PoolStmt::Require(self.requirement(s)),
                Rule::limit => PoolStmt::Limit(kv(s)),
                Rule::label => PoolStmt::Label(kv(s)),
                Rule::tag => PoolStmt::Tag(kv(s)),
                Rule::taint => PoolStmt::Taint(taint(s)),
                Rule::startup_taint => PoolStmt::StartupTaint(taint(s)),
                Rule::pool_node_class => PoolStmt::NodeClass(one(s)),
                Rule::kubelet => PoolStmt::Kubelet(kubelet(s)),
                Rule::disruption => PoolStmt::Disruption(disruption(s)),
                Rule::score => PoolStmt::Score(score(s)),
                _ => continue,
            };
            body.push(stmt);
        }
        Pool {
            name,
            body,
            span: sp,
        }
    }

    fn requirement(&mut self, p: Pair<'_, Rule>) -> Requirement {
        let sp = span(&p);
        let mut key = Word::new("");
        let mut op = ReqOp::In;
        let mut op_span = sp;
        let mut values = Vec::new();
        let mut min_values = None;
        for (i, c) in kids(p).enumerate() {
            match c.as_rule() {
                Rule::word if i == 0 => key = word(c),
                Rule::req_list_op => {
                    op_span = span(&c);
                    op = match c.into_inner().next().map(|k| k.as_rule()) {
                        Some(Rule::k_not_in) => ReqOp::NotIn,
                        _ => ReqOp::In,
                    };
                }
                Rule::req_cmp_op => {
                    op_span = span(&c);
                    op = if c.as_str() == ">" {
                        ReqOp::Gt
                    } else {
                        ReqOp::Lt
                    };
                }
                Rule::req_none_op => {
                    op_span = span(&c);
                    op = match c.into_inner().next().map(|k| k.as_rule()) {
                        Some(Rule::k_exists) => ReqOp::Exists,
                        _ => ReqOp::DoesNotExist,
                    };
                }
                Rule::bad_op => {
                    op_span = span(&c);
                    self.bad_op(&c, REQ_OPS);
                }
                Rule::list | Rule::word => values = words(c),
                Rule::min_values => min_values = Some(one(c)),
                _ => {}
            }
        }
        Requirement {
            key,
            op,
            op_span,
            values,
            min_values,
            span: sp,
        }
    }

    fn node_class(&mut self, p: Pair<'_, Rule>) -> NodeClass {
        let sp = span(&p);
        let mut it = kids(p);
        let name = it.next().map(word).unwrap_or_else(|| Word::new(""));
        let mut body = Vec::new();
        for s in it {
            let ssp = span(&s);
            let kind = match s.as_rule() {
                Rule::nc_ami_family => NodeClassKind::AmiFamily(one(s)),
                Rule::nc_ami => NodeClassKind::Ami(selector(s)),
                Rule::nc_subnets => NodeClassKind::Subnets(selector(s)),
                Rule::nc_security_groups => NodeClassKind::SecurityGroups(selector(s)),
                Rule::nc_role => NodeClassKind::Role(one(s)),
                Rule::nc_instance_profile => NodeClassKind::InstanceProfile(one(s)),
                Rule::tag => NodeClassKind::Tag(kv(s)),
                Rule::block_device => {
                    let mut it = kids(s);
                    let device = it.next().map(word).unwrap_or_else(|| Word::new(""));
                    NodeClassKind::BlockDevice(BlockDevice {
                        device,
                        settings: it.map(setting).collect(),
                        span: ssp,
                    })
                }
                Rule::imds => NodeClassKind::Imds(kids(s).map(setting).collect()),
                Rule::nc_user_data => NodeClassKind::UserData(one(s)),
                Rule::nc_detailed_monitoring => NodeClassKind::DetailedMonitoring(one(s)),
                Rule::nc_public_ip => NodeClassKind::PublicIp(one(s)),
                Rule::nc_instance_store_policy => NodeClassKind::InstanceStorePolicy(one(s)),
                Rule::kubelet => NodeClassKind::Kubelet(kubelet(s)),
                _ => continue,
            };
            body.push(NodeClassStmt { kind, span: ssp });
        }
        NodeClass {
            name,
            body,
            span: sp,
        }
    }

    fn expr(&mut self, p: Pair<'_, Rule>) -> Expr {
        let sp = span(&p);
        match p.as_rule() {
            Rule::expr | Rule::conj => {
                let is_or = p.as_rule() == Rule::expr;
                let mut parts: Vec<Expr> = p
                    .into_inner()
                    .filter(|c| !matches!(c.as_rule(), Rule::k_and | Rule::k_or))
                    .map(|c| self.expr(c))
                    .collect();
                if parts.len() == 1 {
                    return parts.pop().unwrap_or(Expr {
                        kind: ExprKind::True,
                        span: sp,
                    });
                }
                Expr {
                    kind: if is_or {
                        ExprKind::Or(parts)
                    } else {
                        ExprKind::And(parts)
                    },
                    span: sp,
                }
            }
            Rule::k_true => Expr {
                kind: ExprKind::True,
                span: sp,
            },
            Rule::k_false => Expr {
                kind: ExprKind::False,
                span: sp,
            },
            Rule::not_expr => {
                let inner = p
                    .into_inner()
                    .find(|c| c.as_rule() != Rule::k_not)
                    .map(|c| self.expr(c))
                    .unwrap_or(Expr {
                        kind: ExprKind::True,
                        span: sp,
                    });
                Expr {
                    kind: ExprKind::Not(Box::new(inner)),
                    span: sp,
                }
            }
            Rule::pool_ref => {
                let name = one(p);
                Expr {
                    kind: ExprKind::Cmp {
                        subject: Subject {
                            scope: None,
                            name: Word {
                                text: "pool".into(),
                                span: Span::new(sp.offset, 4),
                            },
                            arg: None,
                            span: Span::new(sp.offset, 4),
                        },
                        op: CmpOp::Eq,
                        op_span: Span::new(sp.offset, 4),
                        values: vec![name],
                    },
                    span: sp,
                }
            }
            Rule::cmp => self.cmp(p),
            _ => Expr {
                kind: ExprKind::True,
                span: sp,
            },
        }
    }

    fn cmp(&mut self, p: Pair<'_, Rule>) -> Expr {
        let sp = span(&p);
        let mut subject = None;
        let mut op = CmpOp::Eq;
        let mut op_span = sp;
        let mut values = Vec::new();
        for c in kids(p) {
            match c.as_rule() {
                Rule::subject => subject = Some(self.subject(c)),
                Rule::cmp_list_op => {
                    op_span = span(&c);
                    op = match c.into_inner().next().map(|k| k.as_rule()) {
                        Some(Rule::k_not_in) => CmpOp::NotIn,
                        _ => CmpOp::In,
                    };
                }
                Rule::cmp_one_op => {
                    op_span = span(&c);
                    op = match c.as_str() {
                        "==" => CmpOp::Eq,
                        "!=" => CmpOp::Ne,
                        "<=" => CmpOp::Le,
                        ">=" => CmpOp::Ge,
                        "<" => CmpOp::Lt,
                        _ => CmpOp::Gt,
                    };
                }
                Rule::cmp_none_op => {
                    op_span = span(&c);
                    op = match c.into_inner().next().map(|k| k.as_rule()) {
                        Some(Rule::k_exists) => CmpOp::Exists,
                        _ => CmpOp::DoesNotExist,
                    };
                }
                Rule::bad_op => {
                    op_span = span(&c);
                    self.bad_op(&c, CMP_OPS);
                }
                Rule::list | Rule::word => values = words(c),
                _ => {}
            }
        }
        let subject = subject.unwrap_or(Subject {
            scope: None,
            name: Word::new(""),
            arg: None,
            span: sp,
        });
        Expr {
            kind: ExprKind::Cmp {
                subject,
                op,
                op_span,
                values,
            },
            span: sp,
        }
    }

    fn subject(&mut self, p: Pair<'_, Rule>) -> Subject {
        let sp = span(&p);
        let mut it = p.into_inner();
        let head = it.next();
        let arg = it.next().map(word);
        let (text, start) = match &head {
            Some(h) => (h.as_str(), h.as_span().start()),
            None => ("", sp.offset),
        };
        let (scope, rest, skip) = split_scope(text);
        Subject {
            scope,
            name: Word {
                text: rest.to_string(),
                span: Span::new(start + skip, rest.len()),
            },
            arg,
            span: sp,
        }
    }

    fn placement(&mut self, p: Pair<'_, Rule>) -> PlacementRule {
        let sp = span(&p);
        let mut kind = PlacementKind::Place;
        let mut pods = None;
        let mut nodes = None;
        let mut unless = None;
        let mut weight = None;
        for c in kids(p) {
            match c.as_rule() {
                Rule::placement_kind => {
                    kind = match c.into_inner().next().map(|k| k.as_rule()) {
                        Some(Rule::k_allow) => PlacementKind::Allow,
                        Some(Rule::k_deny) => PlacementKind::Deny,
                        Some(Rule::k_prefer) => PlacementKind::Prefer,
                        _ => PlacementKind::Place,
                    }
                }
                Rule::pods_clause => pods = kids(c).next().map(|e| self.expr(e)),
                Rule::expr => nodes = Some(self.expr(c)),
                Rule::unless => unless = kids(c).next().map(|e| self.expr(e)),
                Rule::rule_weight => weight = Some(one(c)),
                _ => {}
            }
        }
        PlacementRule {
            kind,
            pods,
            nodes: nodes.unwrap_or(Expr {
                kind: ExprKind::True,
                span: sp,
            }),
            unless,
            weight,
            span: sp,
        }
    }

    fn when_weight(
        &mut self,
        c: Pair<'_, Rule>,
        when: &mut Option<Expr>,
        weight: &mut Option<Word>,
    ) {
        match c.as_rule() {
            Rule::rule_when => *when = kids(c).next().map(|e| self.expr(e)),
            Rule::rule_weight => *weight = Some(one(c)),
            _ => {}
        }
    }

    fn cost_rule(&mut self, p: Pair<'_, Rule>) -> CostRule {
        let sp = span(&p);
        let mut action = CostAction::SetPrice(Word::new(""));
        let mut when = None;
        let mut weight = None;
        for c in kids(p) {
            match c.as_rule() {
                Rule::spot_from_od => {
                    let mut ratio = Word::new("");
                    let mut only_when_unknown = false;
                    for k in kids(c) {
                        match k.as_rule() {
                            Rule::word => ratio = word(k),
                            Rule::when_unknown => only_when_unknown = true,
                            _ => {}
                        }
                    }
                    action = CostAction::SpotFromOnDemand {
                        ratio,
                        only_when_unknown,
                    };
                }
                Rule::set_price => action = CostAction::SetPrice(one(c)),
                Rule::adjust => action = CostAction::Adjust(one(c)),
                Rule::discount => action = CostAction::Discount(one(c)),
                Rule::penalize => action = CostAction::Penalize(one(c)),
                Rule::ceiling => {
                    let kv = kv(c);
                    action = CostAction::Ceiling {
                        metric: kv.key,
                        max: kv.value,
                    };
                }
                _ => self.when_weight(c, &mut when, &mut weight),
            }
        }
        CostRule {
            action,
            when,
            weight,
            span: sp,
        }
    }

    fn capacity_rule(&mut self, p: Pair<'_, Rule>) -> CapacityRule {
        let sp = span(&p);
        let mut add = Vec::new();
        let mut when = None;
        let mut weight = None;
        for c in kids(p) {
            match c.as_rule() {
                Rule::cap_pair => add.push(kv(c)),
                _ => self.when_weight(c, &mut when, &mut weight),
            }
        }
        CapacityRule {
            add,
            when,
            weight,
            span: sp,
        }
    }
}

fn score(p: Pair<'_, Rule>) -> ScoreHook {
    let sp = span(&p);
    ScoreHook {
        path: one(p),
        span: sp,
    }
}

fn taint(p: Pair<'_, Rule>) -> Taint {
    let sp = span(&p);
    let mut key = Word::new("");
    let mut value = None;
    let mut effect = Word::new("");
    for (i, c) in kids(p).enumerate() {
        match c.as_rule() {
            Rule::taint_value => value = Some(one(c)),
            Rule::word if i == 0 => key = word(c),
            Rule::word => effect = word(c),
            _ => {}
        }
    }
    Taint {
        key,
        value,
        effect,
        span: sp,
    }
}

fn setting(p: Pair<'_, Rule>) -> Setting {
    let sp = span(&p);
    let mut inner = p.into_inner();
    match inner.next() {
        Some(first) if first.as_rule() == Rule::k_root => Setting {
            name: Word {
                text: "root".into(),
                span: sp,
            },
            value: None,
            span: sp,
        },
        first => Setting {
            name: first.map(word).unwrap_or_else(|| Word::new("")),
            value: inner.next().map(word),
            span: sp,
        },
    }
}

fn selector(p: Pair<'_, Rule>) -> SelectorTerm {
    let sp = span(&p);
    let mut fields = Vec::new();
    if let Some(sel) = kids(p).next() {
        for f in kids(sel) {
            fields.push(match f.as_rule() {
                Rule::sel_alias => SelectorField::Alias(one(f)),
                Rule::sel_id => SelectorField::Id(one(f)),
                Rule::sel_name => SelectorField::Name(one(f)),
                Rule::sel_owner => SelectorField::Owner(one(f)),
                Rule::sel_tag => SelectorField::Tag(kv(f)),
                _ => continue,
            });
        }
    }
    SelectorTerm { fields, span: sp }
}

fn kubelet(p: Pair<'_, Rule>) -> Kubelet {
    let sp = span(&p);
    let mut body = Vec::new();
    for s in kids(p) {
        let ssp = span(&s);
        let kind = match s.as_rule() {
            Rule::kl_max_pods => KubeletKind::MaxPods(one(s)),
            Rule::kl_pods_per_core => KubeletKind::PodsPerCore(one(s)),
            Rule::kl_kube_reserved => KubeletKind::KubeReserved(kv(s)),
            Rule::kl_system_reserved => KubeletKind::SystemReserved(kv(s)),
            Rule::kl_eviction_hard => KubeletKind::EvictionHard(kv(s)),
            Rule::kl_eviction_soft => KubeletKind::EvictionSoft(kv(s)),
            Rule::kl_eviction_soft_grace => KubeletKind::EvictionSoftGrace(kv(s)),
            Rule::kl_eviction_max_pod_grace => KubeletKind::EvictionMaxPodGracePeriod(one(s)),
            Rule::kl_image_gc_high => KubeletKind::ImageGcHigh(one(s)),
            Rule::kl_image_gc_low => KubeletKind::ImageGcLow(one(s)),
            Rule::kl_cpu_cfs_quota => KubeletKind::CpuCfsQuota(one(s)),
            Rule::kl_cluster_dns => {
                KubeletKind::ClusterDns(kids(s).next().map(words).unwrap_or_default())
            }
            _ => continue,
        };
        body.push(KubeletStmt { kind, span: ssp });
    }
    Kubelet { body, span: sp }
}

fn disruption(p: Pair<'_, Rule>) -> Disruption {
    let sp = span(&p);
    let mut body = Vec::new();
    for s in kids(p) {
        let ssp = span(&s);
        let kind = match s.as_rule() {
            Rule::consolidate => {
                let mut policy = None;
                let mut after = None;
                for c in kids(s) {
                    match c.as_rule() {
                        Rule::consolidation_policy => policy = Some(one(c)),
                        Rule::consolidate_after => after = Some(one(c)),
                        _ => {}
                    }
                }
                DisruptionKind::Consolidate { policy, after }
            }
            Rule::expire_after => DisruptionKind::ExpireAfter(one(s)),
            Rule::termination_grace => DisruptionKind::TerminationGracePeriod(one(s)),
            Rule::budget => {
                let mut it = kids(s);
                let nodes = it.next().map(word).unwrap_or_else(|| Word::new(""));
                let mut b = Budget {
                    nodes,
                    schedule: None,
                    duration: None,
                    reasons: Vec::new(),
                };
                for c in it {
                    match c.as_rule() {
                        Rule::budget_schedule => b.schedule = Some(one(c)),
                        Rule::budget_duration => b.duration = Some(one(c)),
                        Rule::budget_reasons => {
                            b.reasons = kids(c).next().map(words).unwrap_or_default()
                        }
                        _ => {}
                    }
                }
                DisruptionKind::Budget(b)
            }
            _ => continue,
        };
        body.push(DisruptionStmt { kind, span: ssp });
    }
    Disruption { body, span: sp }
}

/// Keywords the formatter and error messages know, for did-you-mean on unknown statements.
pub const STATEMENT_KEYWORDS: &[&str] = &[
    "pool",
    "node-class",
    "place",
    "allow",
    "deny",
    "prefer",
    "price",
    "adjust",
    "discount",
    "penalize",
    "ceiling",
    "capacity",
    "score",
    "weight",
    "require",
    "limit",
    "label",
    "taint",
    "startup-taint",
    "tag",
    "kubelet",
    "disruption",
    "max-pods",
    "pods-per-core",
    "kube-reserved",
    "system-reserved",
    "eviction-hard",
    "eviction-soft",
    "eviction-soft-grace",
    "eviction-max-pod-grace-period",
    "image-gc-high",
    "image-gc-low",
    "cpu-cfs-quota",
    "cluster-dns",
    "consolidate",
    "expire-after",
    "termination-grace-period",
    "budget",
    "ami-family",
    "ami",
    "subnets",
    "security-groups",
    "role",
    "instance-profile",
    "block-device",
    "imds",
    "user-data",
    "detailed-monitoring",
    "public-ip",
    "instance-store-policy",
    "in",
    "not in",
    "exists",
    "does-not-exist",
    "min",
    "on",
    "unless",
    "weight",
    "where",
    "with",
];

fn rule_name(r: Rule) -> &'static str {
    match r {
        Rule::word | Rule::bare | Rule::value => "a word",
        Rule::string => "a string",
        Rule::list => "a list `[a, b]`",
        Rule::EOI => "end of file",
        Rule::expr | Rule::conj | Rule::cmp | Rule::subject => "a condition",
        Rule::req_list_op | Rule::req_cmp_op | Rule::req_none_op | Rule::bad_op => {
            "an operator (`in`, `not in`, `exists`, `does-not-exist`, `>`, `<`)"
        }
        Rule::cmp_list_op | Rule::cmp_one_op | Rule::cmp_none_op => "an operator",
        Rule::pool => "`pool`",
        Rule::node_class | Rule::pool_node_class => "`node-class`",
        Rule::placement | Rule::placement_kind => {
            "a placement rule (`place`, `allow`, `deny`, `prefer`)"
        }
        Rule::cost_rule => "a cost rule (`price`, `adjust`, `discount`, `penalize`, `ceiling`)",
        Rule::capacity_rule => "`capacity`",
        Rule::score => "`score with`",
        Rule::rule_when => "`on`",
        Rule::rule_weight | Rule::weight => "`weight`",
        Rule::unless => "`unless`",
        Rule::min_values => "`min`",
        Rule::pods_clause => "`pods`",
        Rule::setting => "a setting",
        Rule::selector => "a selector (`alias`, `id`, `name`, `owner`, `tag`)",
        Rule::taint_value => "a taint value",
        Rule::colon => "`:` and a taint effect (`key = value : NoSchedule`)",
        Rule::eq => "`=`",
        r => kw_name(r).unwrap_or("a statement"),
    }
}

fn syntax_error(
    file: &Path,
    source: &Arc<str>,
    e: pest::error::Error<Rule>,
    input: Input,
) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let text: &str = source;
    let rest = text.get(pos..).unwrap_or("");
    let found: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "_.-/@*%+".contains(*c))
        .collect();
    let len = if found.is_empty() {
        rest.chars().next().map(|c| c.len_utf8()).unwrap_or(0)
    } else {
        found.len()
    };
    let mut expected: Vec<&'static str> = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => positives
            .iter()
            .map(|r| match (input, r) {
                (Input::Requirement, Rule::EOI) => "end of the requirement",
                _ => rule_name(*r),
            })
            .collect(),
        ErrorVariant::CustomError { .. } => Vec::new(),
    };
    expected.dedup();
    let mut seen = std::collections::HashSet::new();
    expected.retain(|x| seen.insert(*x));
    let found_desc = if found.is_empty() {
        match rest.chars().next() {
            Some(c) if c.is_control() => format!("`{}`", c.escape_debug()),
            Some(c) => format!("`{c}`"),
            None if input == Input::Requirement => "end of the requirement".to_string(),
            None => "end of file".to_string(),
        }
    } else {
        format!("`{found}`")
    };
    let message = if expected.is_empty() {
        format!("syntax error at {found_desc}")
    } else if expected.len() > 6 {
        format!(
            "unexpected {found_desc}: expected {}, ... ({} possibilities)",
            expected[..5].join(", "),
            expected.len()
        )
    } else {
        format!(
            "unexpected {found_desc}: expected {}",
            expected.join(" or ")
        )
    };
    if let Some(open) = unclosed_list(text, pos) {
        return Diagnostic::error(
            file,
            source,
            Span::new(open, 1),
            Code::Syntax,
            format!("list not closed: expected `,` or `]` after {found_desc}"),
        )
        .with_primary("this `[` is not closed")
        .with_help("close the list on the same line with `]`, e.g. `[a, b]`");
    }
    let mut d = Diagnostic::error(file, source, Span::new(pos, len), Code::Syntax, message)
        .with_primary("here");
    let kw_expected: Vec<&str> = expected
        .iter()
        .filter_map(|x| x.strip_prefix('`').and_then(|s| s.strip_suffix('`')))
        .collect();
    let candidates: Vec<&str> = if expected.contains(&"a statement") {
        STATEMENT_KEYWORDS.to_vec()
    } else {
        kw_expected
    };
    if !found.is_empty()
        && let Some(s) = did_you_mean(&found, candidates.iter().copied())
    {
        d = d.with_help(format!("did you mean `{s}`?"));
    } else if !found.is_empty() && found.contains('"') {
        d = d.with_help("check for an unclosed string");
    } else if found.is_empty() && rest.starts_with('"') {
        d = d.with_help("strings are written in double quotes and may not span lines unescaped");
    } else if let Some(c) = rest.chars().next().filter(|c| c.is_control()) {
        d = d.with_help(format!(
            "the text holds the control character `{}`; policy files are plain text (is this a binary file?)",
            c.escape_debug()
        ));
    } else if input == Input::Requirement {
        d = d.with_help(REQUIREMENT_HELP);
    } else if rest.is_empty() {
        d = d.with_help("a block `{` is not closed, or a statement is incomplete");
    } else {
        d = d.with_help("see docs/language.md for the statements each block accepts");
    }
    d
}

/// The offset of a `[` left open on the line of `pos` when nothing after
/// `pos` on that line closes it: the error at `pos` is then the missing `]`.
fn unclosed_list(text: &str, pos: usize) -> Option<usize> {
    let pos = pos.min(text.len());
    let start = text.get(..pos)?.rfind('\n').map_or(0, |i| i + 1);
    let end = text.get(pos..)?.find('\n').map_or(text.len(), |i| pos + i);
    let mut open = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text.get(start..pos)?.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '#' if !in_string => break,
            '[' if !in_string => open.push(start + i),
            ']' if !in_string => {
                open.pop();
            }
            _ => {}
        }
    }
    let last = *open.last()?;
    let rest = text.get(pos..end)?;
    (!in_string && !rest.contains(']')).then_some(last)
}

fn is_kw(r: Rule) -> bool {
    matches!(
        r,
        Rule::k_pool
            | Rule::k_node_class
            | Rule::k_place
            | Rule::k_allow
            | Rule::k_deny
            | Rule::k_prefer
            | Rule::k_price
            | Rule::k_adjust
            | Rule::k_discount
            | Rule::k_penalize
            | Rule::k_ceiling
            | Rule::k_capacity
            | Rule::k_score
            | Rule::k_with
            | Rule::k_weight
            | Rule::k_require
            | Rule::k_limit
            | Rule::k_label
            | Rule::k_taint
            | Rule::k_startup_taint
            | Rule::k_tag
            | Rule::k_kubelet
            | Rule::k_disruption
            | Rule::k_min
            | Rule::k_in
            | Rule::k_exists
            | Rule::k_does_not_exist
            | Rule::k_not
            | Rule::k_and
            | Rule::k_or
            | Rule::k_true
            | Rule::k_false
            | Rule::k_on
            | Rule::k_unless
            | Rule::k_pods
            | Rule::k_instance
            | Rule::k_where
            | Rule::k_when
            | Rule::k_no
            | Rule::k_spot
            | Rule::k_on_demand
            | Rule::k_known
            | Rule::k_max_pods
            | Rule::k_pods_per_core
            | Rule::k_kube_reserved
            | Rule::k_system_reserved
            | Rule::k_eviction_hard
            | Rule::k_eviction_soft
            | Rule::k_eviction_soft_grace
            | Rule::k_eviction_max_pod_grace_period
            | Rule::k_image_gc_high
            | Rule::k_image_gc_low
            | Rule::k_cpu_cfs_quota
            | Rule::k_cluster_dns
            | Rule::k_consolidate
            | Rule::k_after
            | Rule::k_expire_after
            | Rule::k_termination_grace_period
            | Rule::k_budget
            | Rule::k_schedule
            | Rule::k_duration
            | Rule::k_reasons
            | Rule::k_ami_family
            | Rule::k_ami
            | Rule::k_subnets
            | Rule::k_security_groups
            | Rule::k_role
            | Rule::k_instance_profile
            | Rule::k_block_device
            | Rule::k_imds
            | Rule::k_user_data
            | Rule::k_detailed_monitoring
            | Rule::k_public_ip
            | Rule::k_instance_store_policy
            | Rule::k_alias
            | Rule::k_id
            | Rule::k_name
            | Rule::k_owner
            | Rule::k_root
            | Rule::k_not_in
    )
}

fn kw_name(r: Rule) -> Option<&'static str> {
    Some(match r {
        Rule::k_pool => "`pool`",
        Rule::k_node_class => "`node-class`",
        Rule::k_place => "`place`",
        Rule::k_allow => "`allow`",
        Rule::k_deny => "`deny`",
        Rule::k_prefer => "`prefer`",
        Rule::k_price => "`price`",
        Rule::k_adjust => "`adjust`",
        Rule::k_discount => "`discount`",
        Rule::k_penalize => "`penalize`",
        Rule::k_ceiling => "`ceiling`",
        Rule::k_capacity => "`capacity`",
        Rule::k_score => "`score`",
        Rule::k_with => "`with`",
        Rule::k_weight => "`weight`",
        Rule::k_require => "`require`",
        Rule::k_limit => "`limit`",
        Rule::k_label => "`label`",
        Rule::k_taint => "`taint`",
        Rule::k_startup_taint => "`startup-taint`",
        Rule::k_tag => "`tag`",
        Rule::k_kubelet => "`kubelet`",
        Rule::k_disruption => "`disruption`",
        Rule::k_min => "`min`",
        Rule::k_in => "`in`",
        Rule::k_exists => "`exists`",
        Rule::k_does_not_exist => "`does-not-exist`",
        Rule::k_not => "`not`",
        Rule::k_and => "`and`",
        Rule::k_or => "`or`",
        Rule::k_true => "`true`",
        Rule::k_false => "`false`",
        Rule::k_on => "`on`",
        Rule::k_unless => "`unless`",
        Rule::k_pods => "`pods`",
        Rule::k_instance => "`instance`",
        Rule::k_where => "`where`",
        Rule::k_when => "`when`",
        Rule::k_no => "`no`",
        Rule::k_spot => "`spot`",
        Rule::k_on_demand => "`on-demand`",
        Rule::k_known => "`known`",
        Rule::k_max_pods => "`max-pods`",
        Rule::k_pods_per_core => "`pods-per-core`",
        Rule::k_kube_reserved => "`kube-reserved`",
        Rule::k_system_reserved => "`system-reserved`",
        Rule::k_eviction_hard => "`eviction-hard`",
        Rule::k_eviction_soft => "`eviction-soft`",
        Rule::k_eviction_soft_grace => "`eviction-soft-grace`",
        Rule::k_eviction_max_pod_grace_period => "`eviction-max-pod-grace-period`",
        Rule::k_image_gc_high => "`image-gc-high`",
        Rule::k_image_gc_low => "`image-gc-low`",
        Rule::k_cpu_cfs_quota => "`cpu-cfs-quota`",
        Rule::k_cluster_dns => "`cluster-dns`",
        Rule::k_consolidate => "`consolidate`",
        Rule::k_after => "`after`",
        Rule::k_expire_after => "`expire-after`",
        Rule::k_termination_grace_period => "`termination-grace-period`",
        Rule::k_budget => "`budget`",
        Rule::k_schedule => "`schedule`",
        Rule::k_duration => "`duration`",
        Rule::k_reasons => "`reasons`",
        Rule::k_ami_family => "`ami-family`",
        Rule::k_ami => "`ami`",
        Rule::k_subnets => "`subnets`",
        Rule::k_security_groups => "`security-groups`",
        Rule::k_role => "`role`",
        Rule::k_instance_profile => "`instance-profile`",
        Rule::k_block_device => "`block-device`",
        Rule::k_imds => "`imds`",
        Rule::k_user_data => "`user-data`",
        Rule::k_detailed_monitoring => "`detailed-monitoring`",
        Rule::k_public_ip => "`public-ip`",
        Rule::k_instance_store_policy => "`instance-store-policy`",
        Rule::k_alias => "`alias`",
        Rule::k_id => "`id`",
        Rule::k_name => "`name`",
        Rule::k_owner => "`owner`",
        Rule::k_root => "`root`",
        Rule::k_not_in => "`not in`",
        _ => return None,
    })
}

/// Splits a subject's `pod.` or `node.` prefix off: the scope, the rest, and
/// the prefix length (for the rest's span).
pub(crate) fn split_scope(text: &str) -> (Option<Scope>, &str, usize) {
    if let Some(r) = text.strip_prefix("pod.") {
        (Some(Scope::Pod), r, 4)
    } else if let Some(r) = text.strip_prefix("node.") {
        (Some(Scope::Node), r, 5)
    } else {
        (None, text, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The deepest condition accepted parses, compiles and formats on a test
    /// thread's small (2 MiB) stack; one level more is a diagnostic, not a crash.
    #[test]
    fn nesting_is_bounded() {
        let half = MAX_DEPTH / 2;
        let deep = format!(
            "place pods on {}{}zone == a{}\n",
            "(".repeat(half),
            "not ".repeat(MAX_DEPTH - half),
            ")".repeat(half)
        );
        let f = parse(Path::new("d.policy"), &deep).expect("parses at the limit");
        let text = crate::policy::format(&f);
        assert!(parse(Path::new("d.policy"), &text).is_ok());
        assert!(crate::policy::compile(&[f]).is_ok());
        let deeper = format!("place pods on ({deep})");
        let err = parse(Path::new("d.policy"), &deeper).expect_err("too deep");
        assert_eq!(err.0[0].code.as_str(), "policy::too-deep");
    }
}
