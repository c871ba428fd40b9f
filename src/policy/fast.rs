//! A hand-written fast path for `parse`: a recursive-descent recogniser that
//! mirrors `grammar/policy.pest` rule by rule and builds the same AST, with the
//! same spans, as the pest parser plus `parse.rs`'s tree walk.
//!
//! The pest grammar stays the grammar of record. This path only ever answers
//! "here is exactly what pest would have produced" or "ask pest": it declines
//! (`None`) on any input pest would reject and on anything that would produce
//! a diagnostic (an unknown operator), so every error message, span and help
//! text still comes from pest. Debug builds (tests, fuzzing) check every
//! accepted file against the pest path.
//!
//! Mirroring rules (pest semantics):
//! - `a ~ b` skips whitespace and comments between `a` and `b`; a rule that
//!   ends in `x?` or `x*` therefore ends *after* the separators before the
//!   absent `x` (the span is trimmed of whitespace, not of comments, later);
//! - `x*` re-skips before each further `x` and gives the separators back when
//!   that `x` fails;
//! - a keyword is a whole word (`"kw" ~ !bchar`), i.e. the maximal run of
//!   word characters equals the keyword;
//! - ordered choice tries alternatives in grammar order, backtracking.
//!
//! Every rule function restores the position when it fails.

use super::ast::*;
use super::parse::unescape;

/// Parses `text` as pest would, or returns `None` to defer to pest (syntax
/// error, unknown operator, or a construct this path does not mirror).
pub(crate) fn parse(text: &str) -> Option<Vec<Item>> {
    let mut p = P {
        s: text.as_bytes(),
        text,
        pos: 0,
        decline: false,
    };
    // file = { SOI ~ item* ~ EOI }
    p.skip();
    let mut items = Vec::new();
    p.rep(&mut items, |p| p.item());
    p.skip();
    if p.decline || p.pos != p.s.len() {
        return None;
    }
    Some(items)
}

/// `bchar`: the characters of a bare word.
#[inline]
fn is_bchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/' | b'@' | b'*' | b'%' | b'+')
}

/// `stmt_kw` in the grammar: words a value never swallows.
const STMT_KW: &[&[u8]] = &[
    b"pool",
    b"node-class",
    b"place",
    b"allow",
    b"deny",
    b"prefer",
    b"price",
    b"adjust",
    b"discount",
    b"penalize",
    b"ceiling",
    b"capacity",
    b"score",
    b"weight",
    b"require",
    b"limit",
    b"label",
    b"taint",
    b"startup-taint",
    b"tag",
    b"kubelet",
    b"disruption",
    b"max-pods",
    b"pods-per-core",
    b"kube-reserved",
    b"system-reserved",
    b"eviction-hard",
    b"eviction-soft",
    b"eviction-soft-grace",
    b"eviction-max-pod-grace-period",
    b"image-gc-high",
    b"image-gc-low",
    b"cpu-cfs-quota",
    b"cluster-dns",
    b"consolidate",
    b"expire-after",
    b"termination-grace-period",
    b"budget",
    b"ami-family",
    b"ami",
    b"subnets",
    b"security-groups",
    b"role",
    b"instance-profile",
    b"block-device",
    b"imds",
    b"user-data",
    b"detailed-monitoring",
    b"public-ip",
    b"instance-store-policy",
    b"on",
    b"unless",
    b"min",
    b"and",
    b"or",
];

struct P<'t> {
    s: &'t [u8],
    text: &'t str,
    pos: usize,
    /// Set when the input reaches a construct whose result pest reports as a
    /// diagnostic (`bad_op`): the whole file is then handed to pest.
    decline: bool,
}

impl<'t> P<'t> {
    /// Implicit `WHITESPACE` and `COMMENT` between sequence elements.
    #[inline]
    fn skip(&mut self) {
        let s = self.s;
        let mut i = self.pos;
        while i < s.len() {
            match s[i] {
                b' ' | b'\t' | b'\r' | b'\n' | b';' => i += 1,
                b'#' => {
                    while i < s.len() && s[i] != b'\n' {
                        i += 1;
                    }
                }
                _ => break,
            }
        }
        self.pos = i;
    }

    /// The maximal run of word characters at the position.
    #[inline]
    fn run(&self) -> &'t [u8] {
        let s = self.s;
        let mut i = self.pos;
        while i < s.len() && is_bchar(s[i]) {
            i += 1;
        }
        &s[self.pos..i]
    }

    /// A keyword rule `k = @{ "k" ~ !bchar }`.
    #[inline]
    fn kw(&mut self, k: &str) -> bool {
        let r = self.run();
        if r == k.as_bytes() {
            self.pos += r.len();
            true
        } else {
            false
        }
    }

    /// A literal string.
    #[inline]
    fn lit(&mut self, l: &str) -> bool {
        if self.s[self.pos..].starts_with(l.as_bytes()) {
            self.pos += l.len();
            true
        } else {
            false
        }
    }

    /// `k_not_in = @{ "not" ~ (" " | "\t")+ ~ "in" ~ !bchar }`
    fn k_not_in(&mut self) -> bool {
        let start = self.pos;
        if !self.lit("not") {
            return false;
        }
        let mut n = 0;
        while self.pos < self.s.len() && matches!(self.s[self.pos], b' ' | b'\t') {
            self.pos += 1;
            n += 1;
        }
        if n > 0 && self.kw("in") {
            return true;
        }
        self.pos = start;
        false
    }

    /// Runs `f`; on failure restores the position.
    #[inline]
    fn attempt<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        let start = self.pos;
        let r = f(self);
        if r.is_none() {
            self.pos = start;
        }
        r
    }

    /// `x*` where the separators before the first `x` were already skipped.
    #[inline]
    fn rep<T>(&mut self, out: &mut Vec<T>, mut f: impl FnMut(&mut Self) -> Option<T>) {
        match self.attempt(&mut f) {
            Some(x) => out.push(x),
            None => return,
        }
        loop {
            let save = self.pos;
            self.skip();
            match self.attempt(&mut f) {
                Some(x) => out.push(x),
                None => {
                    self.pos = save;
                    return;
                }
            }
        }
    }

    /// A rule's span from `start` to the position, without trailing separators.
    #[inline]
    fn span(&self, start: usize) -> Span {
        let mut end = self.pos;
        while end > start && matches!(self.s[end - 1], b' ' | b'\t' | b'\r' | b'\n' | b';') {
            end -= 1;
        }
        Span::new(start, end - start)
    }

    /// `bare = @{ bchar+ }`, as text and span.
    fn bare(&mut self) -> Option<(&'t str, Span)> {
        let start = self.pos;
        let r = self.run();
        if r.is_empty() {
            return None;
        }
        self.pos += r.len();
        Some((self.text.get(start..self.pos)?, Span::new(start, r.len())))
    }

    /// `word = { string | bare }`
    fn word(&mut self) -> Option<Word> {
        let start = self.pos;
        if self.s.get(start) == Some(&b'"') {
            // string = @{ "\"" ~ ("\\" ~ ANY | !("\"" | "\\") ~ ANY)* ~ "\"" }
            let mut i = start + 1;
            loop {
                match self.s.get(i) {
                    None => return None,
                    Some(b'"') => break,
                    Some(b'\\') => {
                        if i + 1 >= self.s.len() {
                            return None;
                        }
                        i += 2;
                    }
                    Some(_) => i += 1,
                }
            }
            let end = i + 1;
            let quoted = self.text.get(start..end)?;
            self.pos = end;
            return Some(Word {
                text: unescape(quoted),
                span: Span::new(start, end - start),
            });
        }
        let (t, span) = self.bare()?;
        Some(Word {
            text: t.to_string(),
            span,
        })
    }

    /// `value = _{ !stmt_kw ~ word }`
    fn value(&mut self) -> Option<Word> {
        let r = self.run();
        if STMT_KW.contains(&r) {
            return None;
        }
        self.word()
    }

    /// `list = { "[" ~ (word ~ ("," ~ word)* ~ ","?)? ~ "]" }`
    fn list(&mut self) -> Option<Vec<Word>> {
        self.attempt(|p| {
            if !p.lit("[") {
                return None;
            }
            p.skip();
            let mut out = Vec::new();
            // (word ~ ("," ~ word)* ~ ","?)?
            let save = p.pos;
            let inner = p.attempt(|p| {
                let w = p.word()?;
                out.push(w);
                p.skip();
                p.rep(&mut out, |p| {
                    if !p.lit(",") {
                        return None;
                    }
                    p.skip();
                    p.word()
                });
                p.skip();
                p.lit(",");
                Some(())
            });
            if inner.is_none() {
                out.clear();
                p.pos = save;
            }
            p.skip();
            if !p.lit("]") {
                return None;
            }
            Some(out)
        })
    }

    /// `list | word` as the walk's `words`.
    fn list_or_word(&mut self) -> Option<Vec<Word>> {
        if let Some(l) = self.list() {
            return Some(l);
        }
        self.word().map(|w| vec![w])
    }

    /// `{ k ~ word }`, as `one`.
    fn kw_word(&mut self, k: &str) -> Option<Word> {
        self.attempt(|p| {
            if !p.kw(k) {
                return None;
            }
            p.skip();
            p.word()
        })
    }

    /// `{ k ~ word ~ word }`, as `kv`.
    fn kw_word_word(&mut self, k: &str) -> Option<KeyValue> {
        self.attempt(|p| {
            let start = p.pos;
            if !p.kw(k) {
                return None;
            }
            p.skip();
            let key = p.word()?;
            p.skip();
            let value = p.word()?;
            Some(KeyValue {
                key,
                value,
                span: p.span(start),
            })
        })
    }

    /// `{ k ~ word ~ eq ~ word }`, as `kv`.
    fn kw_word_eq_word(&mut self, k: &str) -> Option<KeyValue> {
        self.attempt(|p| {
            let start = p.pos;
            if !p.kw(k) {
                return None;
            }
            p.skip();
            let key = p.word()?;
            p.skip();
            if !p.lit("=") {
                return None;
            }
            p.skip();
            let value = p.word()?;
            Some(KeyValue {
                key,
                value,
                span: p.span(start),
            })
        })
    }

    // ---------------------------------------------------------------- items

    /// `item = _{ pool | node_class | placement | cost_rule | capacity_rule | score }`
    fn item(&mut self) -> Option<Item> {
        match self.run() {
            b"pool" => self.pool().map(Item::Pool),
            b"node-class" => self.node_class().map(Item::NodeClass),
            b"place" | b"allow" | b"deny" | b"prefer" => self.placement().map(Item::Placement),
            b"price" | b"adjust" | b"discount" | b"penalize" | b"ceiling" => {
                self.cost_rule().map(Item::Cost)
            }
            b"capacity" => self.capacity_rule().map(Item::Capacity),
            b"score" => self.score().map(Item::Score),
            _ => None,
        }
    }

    /// `score = { k_score ~ k_with ~ word }`
    fn score(&mut self) -> Option<ScoreHook> {
        self.attempt(|p| {
            let start = p.pos;
            if !p.kw("score") {
                return None;
            }
            p.skip();
            if !p.kw("with") {
                return None;
            }
            p.skip();
            let path = p.word()?;
            Some(ScoreHook {
                path,
                span: p.span(start),
            })
        })
    }

    /// `pool = { k_pool ~ word ~ "{" ~ pool_stmt* ~ "}" }`
    fn pool(&mut self) -> Option<Pool> {
        self.attempt(|p| {
            let start = p.pos;
            if !p.kw("pool") {
                return None;
            }
            p.skip();
            let name = p.word()?;
            p.skip();
            if !p.lit("{") {
                return None;
            }
            p.skip();
            let mut body = Vec::new();
            p.rep(&mut body, |p| p.pool_stmt());
            p.skip();
            if !p.lit("}") {
                return None;
            }
            Some(Pool {
                name,
                body,
                span: p.span(start),
            })
        })
    }

    fn pool_stmt(&mut self) -> Option<PoolStmt> {
        match self.run() {
            b"weight" => self.kw_word("weight").map(PoolStmt::Weight),
            b"require" => self.require().map(PoolStmt::Require),
            b"limit" => self.kw_word_word("limit").map(PoolStmt::Limit),
            b"label" => self.kw_word_eq_word("label").map(PoolStmt::Label),
            b"startup-taint" => self.taint("startup-taint").map(PoolStmt::StartupTaint),
            b"taint" => self.taint("taint").map(PoolStmt::Taint),
            b"tag" => self.kw_word_eq_word("tag").map(PoolStmt::Tag),
            b"node-class" => self.kw_word("node-class").map(PoolStmt::NodeClass),
            b"kubelet" => self.kubelet().map(PoolStmt::Kubelet),
            b"disruption" => self.disruption().map(PoolStmt::Disruption),
            b"score" => self.score().map(PoolStmt::Score),
            _ => None,
        }
    }

    /// `require = { k_require ~ word ~ (req_list_op ~ (list | word) | req_cmp_op ~ word
    /// | req_none_op | bad_op ~ (list | value)?) ~ min_values? }`
    fn require(&mut self) -> Option<Requirement> {
        self.attempt(|p| {
            let start = p.pos;
            if !p.kw("require") {
                return None;
            }
            p.skip();
            let key = p.word()?;
            p.skip();
            let op_start = p.pos;
            let (op, values) = if let Some(r) = p.attempt(|p| {
                // req_list_op = { k_not_in | k_in }
                let op = if p.k_not_in() {
                    ReqOp::NotIn
                } else if p.kw("in") {
                    ReqOp::In
                } else {
                    return None;
                };
                let op_span = Span::new(op_start, p.pos - op_start);
                p.skip();
                Some((op, op_span, p.list_or_word()?))
            }) {
                (r.0, Some((r.1, r.2)))
            } else if let Some(r) = p.attempt(|p| {
                // req_cmp_op = { ">" | "<" }
                let op = if p.lit(">") {
                    ReqOp::Gt
                } else if p.lit("<") {
                    ReqOp::Lt
                } else {
                    return None;
                };
                let op_span = Span::new(op_start, 1);
                p.skip();
                Some((op, op_span, vec![p.word()?]))
            }) {
                (r.0, Some((r.1, r.2)))
            } else if p.k_exists_or_dne() {
                let op = if p.pos - op_start == "exists".len() {
                    ReqOp::Exists
                } else {
                    ReqOp::DoesNotExist
                };
                (
                    op,
                    Some((Span::new(op_start, p.pos - op_start), Vec::new())),
                )
            } else {
                // bad_op: a diagnostic; pest reports it.
                p.decline = true;
                return None;
            };
            let (op_span, values) = values?;
            p.skip();
            // min_values = { k_min ~ word }
            let min_values = p.kw_word("min");
            Some(Requirement {
                key,
                op,
                op_span,
                values,
                min_values,
                span: p.span(start),
            })
        })
    }

    /// `k_exists | k_does_not_exist`
    fn k_exists_or_dne(&mut self) -> bool {
        self.kw("exists") || self.kw("does-not-exist")
    }

    /// `taint = { k ~ word ~ (eq ~ taint_value)? ~ colon ~ word }`
    fn taint(&mut self, k: &str) -> Option<Taint> {
        self.attempt(|p| {
            let start = p.pos;
            if !p.kw(k) {
                return None;
            }
            p.skip();
            let key = p.word()?;
            p.skip();
            let value = p.attempt(|p| {
                if !p.lit("=") {
                    return None;
                }
                p.skip();
                p.word()
            });
            p.skip();
            if !p.lit(":") {
                return None;
            }
            p.skip();
            let effect = p.word()?;
            Some(Taint {
                key,
                value,
                effect,
                span: p.span(start),
            })
        })
    }

    /// `kubelet = { k_kubelet ~ "{" ~ kubelet_stmt* ~ "}" }`
    fn kubelet(&mut self) -> Option<Kubelet> {
        self.attempt(|p| {
            let start = p.pos;
            if !p.kw("kubelet") {
                return None;
            }
            p.skip();
            if !p.lit("{") {
                return None;
            }
            p.skip();
            let mut body = Vec::new();
            p.rep(&mut body, |p| {
                let s = p.pos;
                let kind = match p.run() {
                    b"max-pods" => KubeletKind::MaxPods(p.kw_word("max-pods")?),
                    b"pods-per-core" => KubeletKind::PodsPerCore(p.kw_word("pods-per-core")?),
                    b"kube-reserved" => KubeletKind::KubeReserved(p.kw_word_word("kube-reserved")?),
                    b"system-reserved" => {
                        KubeletKind::SystemReserved(p.kw_word_word("system-reserved")?)
                    }
                    b"eviction-hard" => KubeletKind::EvictionHard(p.kw_word_word("eviction-hard")?),
                    b"eviction-soft-grace" => {
                        KubeletKind::EvictionSoftGrace(p.kw_word_word("eviction-soft-grace")?)
                    }
                    b"eviction-soft" => KubeletKind::EvictionSoft(p.kw_word_word("eviction-soft")?),
                    b"eviction-max-pod-grace-period" => KubeletKind::EvictionMaxPodGracePeriod(
                        p.kw_word("eviction-max-pod-grace-period")?,
                    ),
                    b"image-gc-high" => KubeletKind::ImageGcHigh(p.kw_word("image-gc-high")?),
                    b"image-gc-low" => KubeletKind::ImageGcLow(p.kw_word("image-gc-low")?),
                    b"cpu-cfs-quota" => KubeletKind::CpuCfsQuota(p.kw_word("cpu-cfs-quota")?),
                    b"cluster-dns" => {
                        // kl_cluster_dns = { k_cluster_dns ~ list }
                        p.kw("cluster-dns");
                        p.skip();
                        KubeletKind::ClusterDns(p.list()?)
                    }
                    _ => return None,
                };
                Some(KubeletStmt {
                    kind,
                    span: p.span(s),
                })
            });
            p.skip();
            if !p.lit("}") {
                return None;
            }
            Some(Kubelet {
                body,
                span: p.span(start),
            })
        })
    }

    /// `disruption = { k_disruption ~ "{" ~ disruption_stmt* ~ "}" }`
    fn disruption(&mut self) -> Option<Disruption> {
        self.attempt(|p| {
            let start = p.pos;
            if !p.kw("disruption") {
                return None;
            }
            p.skip();
            if !p.lit("{") {
                return None;
            }
            p.skip();
            let mut body = Vec::new();
            p.rep(&mut body, |p| {
                let s = p.pos;
                let kind = match p.run() {
                    b"consolidate" => {
                        // consolidate = { k_consolidate ~ consolidation_policy? ~ consolidate_after? }
                        p.kw("consolidate");
                        p.skip();
                        // consolidation_policy = { !k_after ~ value }
                        let policy = if p.run() == b"after" {
                            None
                        } else {
                            p.attempt(|p| p.value())
                        };
                        p.skip();
                        let after = p.kw_word("after");
                        DisruptionKind::Consolidate { policy, after }
                    }
                    b"expire-after" => DisruptionKind::ExpireAfter(p.kw_word("expire-after")?),
                    b"termination-grace-period" => DisruptionKind::TerminationGracePeriod(
                        p.kw_word("termination-grace-period")?,
                    ),
                    b"budget" => {
                        // budget = { k_budget ~ word ~ budget_schedule? ~ budget_duration? ~ budget_reasons? }
                        p.kw("budget");
                        p.skip();
                        let nodes = p.word()?;
                        p.skip();
                        let schedule = p.kw_word("schedule");
                        p.skip();
                        let duration = p.kw_word("duration");
                        p.skip();
                        let reasons = p
                            .attempt(|p| {
                                if !p.kw("reasons") {
                                    return None;
                                }
                                p.skip();
                                p.list()
                            })
                            .unwrap_or_default();
                        DisruptionKind::Budget(Budget {
                            nodes,
                            schedule,
                            duration,
                            reasons,
                        })
                    }
                    _ => return None,
                };
                Some(DisruptionStmt {
                    kind,
                    span: p.span(s),
                })
            });
            p.skip();
            if !p.lit("}") {
                return None;
            }
            Some(Disruption {
                body,
                span: p.span(start),
            })
        })
    }

    // ---------------------------------------------------------------- node classes

    /// `node_class = { k_node_class ~ word ~ "{" ~ nc_stmt* ~ "}" }`
    fn node_class(&mut self) -> Option<NodeClass> {
        self.attempt(|p| {
            let start = p.pos;
            if !p.kw("node-class") {
                return None;
            }
            p.skip();
            let name = p.word()?;
            p.skip();
            if !p.lit("{") {
                return None;
            }
            p.skip();
            let mut body = Vec::new();
            p.rep(&mut body, |p| p.nc_stmt());
            p.skip();
            if !p.lit("}") {
                return None;
            }
            Some(NodeClass {
                name,
                body,
                span: p.span(start),
            })
        })
    }

    fn nc_stmt(&mut self) -> Option<NodeClassStmt> {
        let s = self.pos;
        let kind = match self.run() {
            b"ami-family" => NodeClassKind::AmiFamily(self.kw_word("ami-family")?),
            b"ami" => NodeClassKind::Ami(self.kw_selector("ami")?),
            b"subnets" => NodeClassKind::Subnets(self.kw_selector("subnets")?),
            b"security-groups" => {
                NodeClassKind::SecurityGroups(self.kw_selector("security-groups")?)
            }
            b"role" => NodeClassKind::Role(self.kw_word("role")?),
            b"instance-profile" => {
                NodeClassKind::InstanceProfile(self.kw_word("instance-profile")?)
            }
            b"tag" => NodeClassKind::Tag(self.kw_word_eq_word("tag")?),
            b"block-device" => NodeClassKind::BlockDevice(self.block_device()?),
            b"imds" => NodeClassKind::Imds(self.imds()?),
            b"user-data" => NodeClassKind::UserData(self.kw_word("user-data")?),
            b"detailed-monitoring" => {
                NodeClassKind::DetailedMonitoring(self.kw_word("detailed-monitoring")?)
            }
            b"public-ip" => NodeClassKind::PublicIp(self.kw_word("public-ip")?),
            b"instance-store-policy" => {
                NodeClassKind::InstanceStorePolicy(self.kw_word("instance-store-policy")?)
            }
            b"kubelet" => NodeClassKind::Kubelet(self.kubelet()?),
            _ => return None,
        };
        Some(NodeClassStmt {
            kind,
            span: self.span(s),
        })
    }

    /// `{ k ~ selector }` with
    /// `selector = { k_where? ~ sel_field ~ (k_and ~ sel_field)* }`; the
    /// term's span is the statement's, as in the walk.
    fn kw_selector(&mut self, k: &str) -> Option<SelectorTerm> {
        self.attempt(|p| {
            let start = p.pos;
            if !p.kw(k) {
                return None;
            }
            p.skip();
            p.kw("where");
            p.skip();
            let mut fields = vec![p.sel_field()?];
            p.skip();
            p.rep(&mut fields, |p| {
                if !p.kw("and") {
                    return None;
                }
                p.skip();
                p.sel_field()
            });
            Some(SelectorTerm {
                fields,
                span: p.span(start),
            })
        })
    }

    /// `sel_field = _{ sel_alias | sel_id | sel_name | sel_owner | sel_tag }`
    fn sel_field(&mut self) -> Option<SelectorField> {
        match self.run() {
            b"alias" => self.kw_word("alias").map(SelectorField::Alias),
            b"id" => self.kw_word("id").map(SelectorField::Id),
            b"name" => self.kw_word("name").map(SelectorField::Name),
            b"owner" => self.kw_word("owner").map(SelectorField::Owner),
            b"tag" => self.kw_word_eq_word("tag").map(SelectorField::Tag),
            _ => None,
        }
    }

    /// `block_device = { k_block_device ~ word ~ "{" ~ setting* ~ "}" }`
    fn block_device(&mut self) -> Option<BlockDevice> {
        self.attempt(|p| {
            let start = p.pos;
            if !p.kw("block-device") {
                return None;
            }
            p.skip();
            let device = p.word()?;
            p.skip();
            let settings = p.settings()?;
            Some(BlockDevice {
                device,
                settings,
                span: p.span(start),
            })
        })
    }

    /// `imds = { k_imds ~ "{" ~ setting* ~ "}" }`
    fn imds(&mut self) -> Option<Vec<Setting>> {
        self.attempt(|p| {
            if !p.kw("imds") {
                return None;
            }
            p.skip();
            p.settings()
        })
    }

    /// `"{" ~ setting* ~ "}"` with `setting = { k_root | !"}" ~ bare ~ word }`
    fn settings(&mut self) -> Option<Vec<Setting>> {
        if !self.lit("{") {
            return None;
        }
        self.skip();
        let mut out = Vec::new();
        self.rep(&mut out, |p| {
            let start = p.pos;
            if p.kw("root") {
                let span = p.span(start);
                return Some(Setting {
                    name: Word {
                        text: "root".into(),
                        span,
                    },
                    value: None,
                    span,
                });
            }
            let (name, name_span) = p.bare()?;
            p.skip();
            let value = p.word()?;
            Some(Setting {
                name: Word {
                    text: name.to_string(),
                    span: name_span,
                },
                value: Some(value),
                span: p.span(start),
            })
        });
        self.skip();
        if !self.lit("}") {
            return None;
        }
        Some(out)
    }

    // ---------------------------------------------------------------- conditions

    /// `expr = { conj ~ (k_or ~ conj)* }`, collapsed to its only part as in the walk.
    fn expr(&mut self) -> Option<Expr> {
        self.attempt(|p| {
            let start = p.pos;
            let first = p.conj()?;
            p.skip();
            let mut parts = vec![first];
            p.rep(&mut parts, |p| {
                if !p.kw("or") {
                    return None;
                }
                p.skip();
                p.conj()
            });
            if parts.len() == 1 {
                return parts.pop();
            }
            Some(Expr {
                kind: ExprKind::Or(parts),
                span: p.span(start),
            })
        })
    }

    /// `conj = { unary ~ (k_and ~ unary)* }`
    fn conj(&mut self) -> Option<Expr> {
        self.attempt(|p| {
            let start = p.pos;
            let first = p.unary()?;
            p.skip();
            let mut parts = vec![first];
            p.rep(&mut parts, |p| {
                if !p.kw("and") {
                    return None;
                }
                p.skip();
                p.unary()
            });
            if parts.len() == 1 {
                return parts.pop();
            }
            Some(Expr {
                kind: ExprKind::And(parts),
                span: p.span(start),
            })
        })
    }

    /// `unary = _{ not_expr | "(" ~ expr ~ ")" | k_true | k_false | pool_ref | cmp }`
    fn unary(&mut self) -> Option<Expr> {
        let start = self.pos;
        let r = self.run();
        if r == b"not" {
            // not_expr = { k_not ~ unary }
            let e = self.attempt(|p| {
                p.kw("not");
                p.skip();
                let inner = p.unary()?;
                Some(Expr {
                    kind: ExprKind::Not(Box::new(inner)),
                    span: p.span(start),
                })
            });
            if e.is_some() {
                return e;
            }
        }
        if self.s.get(start) == Some(&b'(') {
            let e = self.attempt(|p| {
                p.lit("(");
                p.skip();
                let e = p.expr()?;
                p.skip();
                if !p.lit(")") {
                    return None;
                }
                Some(e)
            });
            if e.is_some() {
                return e;
            }
        }
        match r {
            b"true" => {
                self.pos += 4;
                return Some(Expr {
                    kind: ExprKind::True,
                    span: Span::new(start, 4),
                });
            }
            b"false" => {
                self.pos += 5;
                return Some(Expr {
                    kind: ExprKind::False,
                    span: Span::new(start, 5),
                });
            }
            b"pool" => {
                if let Some(e) = self.pool_ref() {
                    return Some(e);
                }
            }
            _ => {}
        }
        self.cmp()
    }

    /// `pool_ref = { k_pool ~ !(cmp_list_op | cmp_one_op | cmp_none_op) ~ word }`
    fn pool_ref(&mut self) -> Option<Expr> {
        self.attempt(|p| {
            let start = p.pos;
            if !p.kw("pool") {
                return None;
            }
            p.skip();
            let save = p.pos;
            let is_op =
                p.cmp_list_op().is_some() || p.cmp_one_op().is_some() || p.k_exists_or_dne();
            p.pos = save;
            if is_op {
                return None;
            }
            let name = p.word()?;
            let kw = Span::new(start, 4);
            Some(Expr {
                kind: ExprKind::Cmp {
                    subject: Subject {
                        scope: None,
                        name: Word {
                            text: "pool".into(),
                            span: kw,
                        },
                        arg: None,
                        span: kw,
                    },
                    op: CmpOp::Eq,
                    op_span: kw,
                    values: vec![name],
                },
                span: p.span(start),
            })
        })
    }

    /// `cmp_list_op = { k_not_in | k_in }`
    fn cmp_list_op(&mut self) -> Option<CmpOp> {
        if self.k_not_in() {
            Some(CmpOp::NotIn)
        } else if self.kw("in") {
            Some(CmpOp::In)
        } else {
            None
        }
    }

    /// `cmp_one_op = { "==" | "!=" | "<=" | ">=" | "<" | ">" }`
    fn cmp_one_op(&mut self) -> Option<CmpOp> {
        let rest = &self.s[self.pos..];
        let (op, n) = if rest.starts_with(b"==") {
            (CmpOp::Eq, 2)
        } else if rest.starts_with(b"!=") {
            (CmpOp::Ne, 2)
        } else if rest.starts_with(b"<=") {
            (CmpOp::Le, 2)
        } else if rest.starts_with(b">=") {
            (CmpOp::Ge, 2)
        } else if rest.starts_with(b"<") {
            (CmpOp::Lt, 1)
        } else if rest.starts_with(b">") {
            (CmpOp::Gt, 1)
        } else {
            return None;
        };
        self.pos += n;
        Some(op)
    }

    /// `cmp = { subject ~ (cmp_list_op ~ (list | word) | cmp_one_op ~ word | cmp_none_op
    /// | bad_op ~ (list | value)?) }`
    fn cmp(&mut self) -> Option<Expr> {
        self.attempt(|p| {
            let start = p.pos;
            let subject = p.subject()?;
            p.skip();
            let op_start = p.pos;
            let (op, values) = if let Some(r) = p.attempt(|p| {
                let op = p.cmp_list_op()?;
                let op_end = p.pos;
                p.skip();
                Some((op, op_end, p.list_or_word()?))
            }) {
                (r.0, Some((r.1, r.2)))
            } else if let Some(r) = p.attempt(|p| {
                let op = p.cmp_one_op()?;
                let op_end = p.pos;
                p.skip();
                Some((op, op_end, vec![p.word()?]))
            }) {
                (r.0, Some((r.1, r.2)))
            } else if p.k_exists_or_dne() {
                let op = if p.pos - op_start == "exists".len() {
                    CmpOp::Exists
                } else {
                    CmpOp::DoesNotExist
                };
                (op, Some((p.pos, Vec::new())))
            } else {
                // bad_op: a diagnostic; pest reports it.
                p.decline = true;
                return None;
            };
            let (op_end, values) = values?;
            Some(Expr {
                kind: ExprKind::Cmp {
                    subject,
                    op,
                    op_span: Span::new(op_start, op_end - op_start),
                    values,
                },
                span: p.span(start),
            })
        })
    }

    /// `subject = { bare ~ ("(" ~ word ~ ")")? }`
    fn subject(&mut self) -> Option<Subject> {
        self.attempt(|p| {
            let start = p.pos;
            let (text, _) = p.bare()?;
            p.skip();
            let arg = p.attempt(|p| {
                if !p.lit("(") {
                    return None;
                }
                p.skip();
                let w = p.word()?;
                p.skip();
                if !p.lit(")") {
                    return None;
                }
                Some(w)
            });
            let (scope, rest, skip) = super::parse::split_scope(text);
            Some(Subject {
                scope,
                name: Word {
                    text: rest.to_string(),
                    span: Span::new(start + skip, rest.len()),
                },
                arg,
                span: p.span(start),
            })
        })
    }

    // ---------------------------------------------------------------- rules

    /// `placement = { placement_kind ~ (pods_clause ~ k_on ~ expr
    /// | k_instance ~ k_where ~ expr | expr) ~ unless? ~ rule_weight? }`
    fn placement(&mut self) -> Option<PlacementRule> {
        self.attempt(|p| {
            let start = p.pos;
            let kind = match p.run() {
                b"place" => PlacementKind::Place,
                b"allow" => PlacementKind::Allow,
                b"deny" => PlacementKind::Deny,
                b"prefer" => PlacementKind::Prefer,
                _ => return None,
            };
            p.pos += p.run().len();
            p.skip();
            let (pods, nodes) = if let Some(r) = p.attempt(|p| {
                // pods_clause = { k_pods ~ (k_where ~ expr)? }
                if !p.kw("pods") {
                    return None;
                }
                p.skip();
                let pods = p.attempt(|p| {
                    if !p.kw("where") {
                        return None;
                    }
                    p.skip();
                    p.expr()
                });
                p.skip();
                if !p.kw("on") {
                    return None;
                }
                p.skip();
                Some((pods, p.expr()?))
            }) {
                r
            } else if let Some(e) = p.attempt(|p| {
                if !p.kw("instance") {
                    return None;
                }
                p.skip();
                if !p.kw("where") {
                    return None;
                }
                p.skip();
                p.expr()
            }) {
                (None, e)
            } else {
                (None, p.expr()?)
            };
            p.skip();
            let unless = p.attempt(|p| {
                if !p.kw("unless") {
                    return None;
                }
                p.skip();
                p.expr()
            });
            p.skip();
            let weight = p.kw_word("weight");
            Some(PlacementRule {
                kind,
                pods,
                nodes,
                unless,
                weight,
                span: p.span(start),
            })
        })
    }

    /// `rule_when? ~ rule_weight?` at the end of a cost or capacity rule.
    fn when_weight(&mut self) -> (Option<Expr>, Option<Word>) {
        let when = self.attempt(|p| {
            if !p.kw("on") {
                return None;
            }
            p.skip();
            p.expr()
        });
        self.skip();
        let weight = self.kw_word("weight");
        (when, weight)
    }

    /// `cost_rule = { cost_action ~ rule_when? ~ rule_weight? }`
    fn cost_rule(&mut self) -> Option<CostRule> {
        self.attempt(|p| {
            let start = p.pos;
            let action = match p.run() {
                b"price" => {
                    if let Some(a) = p.spot_from_od() {
                        a
                    } else {
                        CostAction::SetPrice(p.kw_word("price")?)
                    }
                }
                b"adjust" => CostAction::Adjust(p.kw_word("adjust")?),
                b"discount" => CostAction::Discount(p.kw_word("discount")?),
                b"penalize" => CostAction::Penalize(p.kw_word("penalize")?),
                b"ceiling" => {
                    let kv = p.kw_word_word("ceiling")?;
                    CostAction::Ceiling {
                        metric: kv.key,
                        max: kv.value,
                    }
                }
                _ => return None,
            };
            p.skip();
            let (when, weight) = p.when_weight();
            Some(CostRule {
                action,
                when,
                weight,
                span: p.span(start),
            })
        })
    }

    /// `spot_from_od = { k_price ~ k_spot ~ "=" ~ k_on_demand ~ "*" ~ word ~ when_unknown? }`
    fn spot_from_od(&mut self) -> Option<CostAction> {
        self.attempt(|p| {
            if !p.kw("price") {
                return None;
            }
            p.skip();
            if !p.kw("spot") {
                return None;
            }
            p.skip();
            if !p.lit("=") {
                return None;
            }
            p.skip();
            if !p.kw("on-demand") {
                return None;
            }
            p.skip();
            if !p.lit("*") {
                return None;
            }
            p.skip();
            let ratio = p.word()?;
            p.skip();
            // when_unknown = { k_when ~ k_no ~ k_spot ~ k_price ~ k_known }
            let only_when_unknown = p
                .attempt(|p| {
                    for (i, k) in ["when", "no", "spot", "price", "known"].iter().enumerate() {
                        if i > 0 {
                            p.skip();
                        }
                        if !p.kw(k) {
                            return None;
                        }
                    }
                    Some(())
                })
                .is_some();
            Some(CostAction::SpotFromOnDemand {
                ratio,
                only_when_unknown,
            })
        })
    }

    /// `capacity_rule = { k_capacity ~ cap_pair ~ ("," ~ cap_pair)* ~ rule_when? ~ rule_weight? }`
    fn capacity_rule(&mut self) -> Option<CapacityRule> {
        self.attempt(|p| {
            let start = p.pos;
            if !p.kw("capacity") {
                return None;
            }
            p.skip();
            // cap_pair = { word ~ word }
            let pair = |p: &mut Self| {
                p.attempt(|p| {
                    let s = p.pos;
                    let key = p.word()?;
                    p.skip();
                    let value = p.word()?;
                    Some(KeyValue {
                        key,
                        value,
                        span: p.span(s),
                    })
                })
            };
            let mut add = vec![pair(p)?];
            p.skip();
            p.rep(&mut add, |p| {
                if !p.lit(",") {
                    return None;
                }
                p.skip();
                pair(p)
            });
            p.skip();
            let (when, weight) = p.when_weight();
            Some(CapacityRule {
                add,
                when,
                weight,
                span: p.span(start),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Corner cases of the grammar: whatever the fast path accepts must be what
    /// pest produces, spans included (`parse` checks that in debug builds), and
    /// whatever pest rejects the fast path must decline.
    #[test]
    fn agrees_with_pest_on_corner_cases() {
        let cases = [
            "",
            "  # only a comment",
            "pool a { }",
            "pool a {}; pool b { weight 1; }",
            "pool a { weight 1 # trailing comment\n}",
            "pool a { require k in [a, b,] min 2 # c\n require k2 not \t in x\n require k3 exists min 1 require k4 does-not-exist require k5 > 3 require k6 < \"4\" }",
            "pool a { require k in }",
            "pool a { require k foo bar }",
            "pool a { require k not in }",
            "pool a { require k >= 2 }",
            "pool a { label a = b tag \"x y\" = \"z\\\"q\" taint a = b : NoSchedule startup-taint a:NoExecute }",
            "pool a { taint a = : b }",
            "pool a { taint a = b }",
            "pool a { node-class nc score with \"s.rhai\" limit cpu 10 }",
            "pool a { kubelet { max-pods 10 kube-reserved cpu 1 eviction-soft a b eviction-soft-grace a 1m cluster-dns [1.1.1.1] } }",
            "pool a { kubelet { pods-per-core 2 system-reserved memory 1Gi eviction-hard memory.available 5% eviction-max-pod-grace-period 30 image-gc-high 80 image-gc-low 70 cpu-cfs-quota true } }",
            "pool a { kubelet { cluster-dns x } }",
            "pool a { disruption { consolidate consolidate after 1m consolidate when-empty # c\n budget 10% schedule \"0 * * * *\" duration 1h reasons [empty] budget 1 reasons [] expire-after never termination-grace-period 1h } }",
            "pool a { disruption { consolidate expire-after 1h consolidate pool } }",
            "pool a { disruption { consolidate \"after\" after 5m } }",
            "node-class n { ami-family al2023 ami where alias al2023@latest and id x subnets tag a = b security-groups name n and owner o # c\n role r instance-profile p tag a = b user-data \"#!/bin/sh\\n\" detailed-monitoring true public-ip false instance-store-policy raid0 kubelet { max-pods 1 } }",
            "node-class n { block-device /dev/xvda { root size 20Gi type gp3 } imds { http-tokens required root } }",
            "node-class n { block-device /dev/xvda { size } }",
            "node-class n { ami where }",
            "place pods where namespace == \"a\" and label(\"t\") in [a, b] on pool p unless zone == a weight 5",
            "place pods on zone == a or (zone == b and not arch in [arm64]) or true or false",
            "place pods == x",
            "place pods where x == y on z exists",
            "place instance where zone != a",
            "place instance == a",
            "deny not == x",
            "deny not in [a]",
            "deny not not zone == a",
            "prefer pool == a weight 1",
            "prefer pool in [a]",
            "allow pod.namespace == a and node.zone == b and pool exists",
            "allow (zone == a) # c\n",
            "allow ( zone == a # c\n )",
            "allow zone == a and",
            "allow zone foo",
            "allow zone == a or or",
            "allow x(y) == z and x ( \"y\" ) exists",
            "price spot = on-demand * 0.7 when no spot price known on zone == a weight 2",
            "price spot = on-demand * 0.7 when no",
            "price spot",
            "price spot on zone == a",
            "price 0.1 adjust 1.1 discount 10% penalize 5% ceiling hourly 10",
            "capacity cpu 1, memory 2Gi on zone == a weight 1",
            "capacity cpu 1 , memory",
            "score with x.rhai",
            "score x",
            "pool \"unclosed { }",
            "pool a { label a = \"x\\",
            "pool a { weight 1 } }",
            "pools a { }",
            "pool a { weight 1 }\u{a0}",
            "allow zone == \"é\" # é\n",
            "place pods on a ==",
            "place pods on a == b unless",
            "discount 5% on zone == a weight",
        ];
        let mut accepted = 0;
        for c in cases {
            let fast = super::parse(c);
            let pest = crate::policy::parse::parse(Path::new("c.policy"), c);
            if pest.is_err() {
                assert!(fast.is_none(), "fast path accepted {c:?}, pest rejects it");
            }
            accepted += usize::from(fast.is_some());
        }
        // Most valid cases take the fast path (the rest are declined, not wrong).
        assert!(accepted >= 35, "only {accepted} cases took the fast path");
    }

    /// The fast path's `stmt_kw` list is the grammar's.
    #[test]
    fn stmt_kw_matches_grammar() {
        let g = include_str!("../../grammar/policy.pest");
        let line = g
            .lines()
            .find(|l| l.starts_with("stmt_kw"))
            .expect("stmt_kw rule");
        let body = line.split("_{").nth(1).expect("rule body");
        let kws: Vec<String> = body
            .split('|')
            .map(|k| k.trim().trim_end_matches('}').trim().to_string())
            .collect();
        let ours: Vec<String> = super::STMT_KW
            .iter()
            .map(|k| format!("k_{}", String::from_utf8_lossy(k).replace('-', "_")))
            .collect();
        // k_eviction_max_pod_grace_period and friends: the rule names are the
        // keywords with `-` as `_`.
        assert_eq!(kws, ours);
    }
}
