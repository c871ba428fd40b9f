//! The policy AST: what a `.policy` file says, as written, with a span on every node.
//!
//! The AST is deliberately close to the text: scalar values (numbers,
//! quantities, durations, percentages) are kept as [`Word`]s with their
//! spelling, and statements are kept in source order, so that
//! - the checker (`compile`) can report a malformed value or a duplicate
//!   statement at its exact span, and
//! - the formatter can print any AST back (`parse(format(f)) == f` up to spans).
//!
//! The Karpenter importer builds this AST too (with `Span::DUMMY` spans) and
//! prints it with [`crate::policy::format`].
//!
//! Equality ignores spans (see [`Span`]) so two ASTs that say the same thing
//! compare equal wherever they were written.

use std::path::PathBuf;
use std::sync::Arc;

/// A byte range in the source text.
///
/// `PartialEq` is deliberately always true, so that ASTs compare equal "up to
/// spans" with a plain `==`. Use [`Span::same`] to compare positions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Span {
    /// Byte offset from the start of the file.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
}

impl PartialEq for Span {
    fn eq(&self, _: &Span) -> bool {
        true
    }
}
impl Eq for Span {}

impl std::hash::Hash for Span {
    /// Consistent with `==`: spans do not contribute to a node's hash.
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl Span {
    /// The span of nodes built by code rather than parsed (the importer, tests).
    pub const DUMMY: Span = Span { offset: 0, len: 0 };

    /// A span from byte offsets.
    pub fn new(offset: usize, len: usize) -> Span {
        Span { offset, len }
    }

    /// Exact positional equality (`==` ignores spans).
    pub fn same(&self, other: &Span) -> bool {
        self.offset == other.offset && self.len == other.len
    }

    /// One past the last byte.
    pub fn end(&self) -> usize {
        self.offset + self.len
    }

    /// The smallest span covering both.
    pub fn join(&self, other: &Span) -> Span {
        let start = self.offset.min(other.offset);
        let end = self.end().max(other.end());
        Span::new(start, end - start)
    }
}

/// A scalar as written: a name, label key or value, number, quantity,
/// duration, percentage or string. Quoting is not recorded; the formatter
/// quotes whatever would not read back as a bare word.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Word {
    pub text: String,
    pub span: Span,
}

impl Word {
    /// A word with a dummy span (for code that builds ASTs).
    pub fn new(text: impl Into<String>) -> Word {
        Word {
            text: text.into(),
            span: Span::DUMMY,
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A parsed `.policy` file.
#[derive(Debug, Clone)]
pub struct File {
    /// The path used in diagnostics and to resolve script references.
    pub path: PathBuf,
    /// The source text spans refer to (empty for generated ASTs).
    pub source: Arc<str>,
    /// Top-level items in source order.
    pub items: Vec<Item>,
}

impl PartialEq for File {
    /// Files are equal when they say the same thing; path and source text are ignored.
    fn eq(&self, other: &File) -> bool {
        self.items == other.items
    }
}

impl File {
    /// An empty file with no source text (for the importer and tests).
    pub fn new(path: impl Into<PathBuf>) -> File {
        File {
            path: path.into(),
            source: Arc::from(""),
            items: Vec::new(),
        }
    }
}

/// A top-level item.
// Items are built once per parse and walked a few times; boxing the pool would
// only make the importer's and the tests' literals noisier.
#[allow(
    clippy::large_enum_variant,
    reason = "built once per parse; boxing the pool would only make literals noisier"
)]
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `pool NAME { ... }`
    Pool(Pool),
    /// `node-class NAME { ... }`
    NodeClass(NodeClass),
    /// `place|allow|deny|prefer ...`
    Placement(PlacementRule),
    /// `price|adjust|discount|penalize|ceiling ...`
    Cost(CostRule),
    /// `capacity RESOURCE AMOUNT, ... [on COND]`
    Capacity(CapacityRule),
    /// `score with "path"`: a policy-wide scoring script.
    Score(ScoreHook),
}

impl Item {
    /// The item's span.
    pub fn span(&self) -> Span {
        match self {
            Item::Pool(p) => p.span,
            Item::NodeClass(n) => n.span,
            Item::Placement(r) => r.span,
            Item::Cost(r) => r.span,
            Item::Capacity(r) => r.span,
            Item::Score(s) => s.span,
        }
    }
}

// ---------------------------------------------------------------- pools

/// `pool NAME { stmt* }` (Karpenter NodePool).
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: Word,
    pub body: Vec<PoolStmt>,
    pub span: Span,
}

/// One statement inside a pool.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolStmt {
    /// `weight N`
    Weight(Word),
    /// `require KEY OP VALUES [min N]`
    Require(Requirement),
    /// `limit RESOURCE AMOUNT`
    Limit(KeyValue),
    /// `label KEY = VALUE`
    Label(KeyValue),
    /// `taint KEY [= VALUE] : EFFECT`
    Taint(Taint),
    /// `startup-taint KEY [= VALUE] : EFFECT`
    StartupTaint(Taint),
    /// `tag KEY = VALUE`
    Tag(KeyValue),
    /// `node-class NAME`
    NodeClass(Word),
    /// `kubelet { ... }`
    Kubelet(Kubelet),
    /// `disruption { ... }`
    Disruption(Disruption),
    /// `score with "path"`
    Score(ScoreHook),
}

/// A `KEY VALUE` or `KEY = VALUE` pair (limits, labels, tags, reserved resources).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    pub key: Word,
    pub value: Word,
    pub span: Span,
}

impl KeyValue {
    /// A pair with dummy spans.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
        KeyValue {
            key: Word::new(key),
            value: Word::new(value),
            span: Span::DUMMY,
        }
    }
}

/// A requirement operator as the language spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReqOp {
    /// `in [..]`
    In,
    /// `not in [..]`
    NotIn,
    /// `exists`
    Exists,
    /// `does-not-exist`
    DoesNotExist,
    /// `> N`
    Gt,
    /// `< N`
    Lt,
}

impl ReqOp {
    /// The policy-language spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReqOp::In => "in",
            ReqOp::NotIn => "not in",
            ReqOp::Exists => "exists",
            ReqOp::DoesNotExist => "does-not-exist",
            ReqOp::Gt => ">",
            ReqOp::Lt => "<",
        }
    }

    /// The IR operator.
    pub fn to_ir(self) -> crate::ir::Operator {
        use crate::ir::Operator;
        match self {
            ReqOp::In => Operator::In,
            ReqOp::NotIn => Operator::NotIn,
            ReqOp::Exists => Operator::Exists,
            ReqOp::DoesNotExist => Operator::DoesNotExist,
            ReqOp::Gt => Operator::Gt,
            ReqOp::Lt => Operator::Lt,
        }
    }

    /// From the IR operator (for the importer).
    pub fn from_ir(op: crate::ir::Operator) -> ReqOp {
        use crate::ir::Operator;
        match op {
            Operator::In => ReqOp::In,
            Operator::NotIn => ReqOp::NotIn,
            Operator::Exists => ReqOp::Exists,
            Operator::DoesNotExist => ReqOp::DoesNotExist,
            Operator::Gt => ReqOp::Gt,
            Operator::Lt => ReqOp::Lt,
        }
    }
}

/// `require KEY OP VALUES [min N]`.
///
/// `values` holds the list for `in`/`not in`, the single bound for `>`/`<`,
/// and nothing for `exists`/`does-not-exist`.
#[derive(Debug, Clone, PartialEq)]
pub struct Requirement {
    pub key: Word,
    pub op: ReqOp,
    pub op_span: Span,
    pub values: Vec<Word>,
    /// `min N` (Karpenter's minValues).
    pub min_values: Option<Word>,
    pub span: Span,
}

/// `taint KEY [= VALUE] : EFFECT`.
#[derive(Debug, Clone, PartialEq)]
pub struct Taint {
    pub key: Word,
    pub value: Option<Word>,
    pub effect: Word,
    pub span: Span,
}

/// `kubelet { stmt* }`, in a pool or a node class.
#[derive(Debug, Clone, PartialEq)]
pub struct Kubelet {
    pub body: Vec<KubeletStmt>,
    pub span: Span,
}

/// One kubelet setting.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeletStmt {
    pub kind: KubeletKind,
    pub span: Span,
}

/// The kubelet settings the language knows (Karpenter's `kubelet` block).
#[derive(Debug, Clone, PartialEq)]
pub enum KubeletKind {
    /// `max-pods N`
    MaxPods(Word),
    /// `pods-per-core N`
    PodsPerCore(Word),
    /// `kube-reserved RESOURCE AMOUNT`
    KubeReserved(KeyValue),
    /// `system-reserved RESOURCE AMOUNT`
    SystemReserved(KeyValue),
    /// `eviction-hard SIGNAL THRESHOLD` (threshold: a quantity or a percentage)
    EvictionHard(KeyValue),
    /// `eviction-soft SIGNAL THRESHOLD`
    EvictionSoft(KeyValue),
    /// `eviction-soft-grace SIGNAL DURATION`
    EvictionSoftGrace(KeyValue),
    /// `eviction-max-pod-grace-period SECONDS`
    EvictionMaxPodGracePeriod(Word),
    /// `image-gc-high PERCENT`
    ImageGcHigh(Word),
    /// `image-gc-low PERCENT`
    ImageGcLow(Word),
    /// `cpu-cfs-quota true|false`
    CpuCfsQuota(Word),
    /// `cluster-dns [IP, ...]`
    ClusterDns(Vec<Word>),
}

/// `disruption { stmt* }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Disruption {
    pub body: Vec<DisruptionStmt>,
    pub span: Span,
}

/// One disruption setting.
#[derive(Debug, Clone, PartialEq)]
pub struct DisruptionStmt {
    pub kind: DisruptionKind,
    pub span: Span,
}

/// The disruption settings (Karpenter's `disruption` block and `expireAfter`,
/// `terminationGracePeriod`).
#[derive(Debug, Clone, PartialEq)]
pub enum DisruptionKind {
    /// `consolidate [when-empty|when-empty-or-underutilized] [after DURATION]`
    Consolidate {
        policy: Option<Word>,
        after: Option<Word>,
    },
    /// `expire-after DURATION|never`
    ExpireAfter(Word),
    /// `termination-grace-period DURATION`
    TerminationGracePeriod(Word),
    /// `budget N|N% [schedule "CRON" duration DURATION] [reasons [..]]`
    Budget(Budget),
}

/// A disruption budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// A count (`5`) or a percentage (`10%`).
    pub nodes: Word,
    pub schedule: Option<Word>,
    pub duration: Option<Word>,
    /// `underutilized`, `empty`, `drifted`; empty means every reason.
    pub reasons: Vec<Word>,
}

// ---------------------------------------------------------------- node classes

/// `node-class NAME { stmt* }` (Karpenter EC2NodeClass).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeClass {
    pub name: Word,
    pub body: Vec<NodeClassStmt>,
    pub span: Span,
}

/// One statement inside a node class.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeClassStmt {
    pub kind: NodeClassKind,
    pub span: Span,
}

/// The node-class settings.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeClassKind {
    /// `ami-family AL2023`
    AmiFamily(Word),
    /// `ami [where] FIELD [and FIELD]*` (one AMI selector term; terms are ORed).
    Ami(SelectorTerm),
    /// `subnets [where] FIELD [and FIELD]*`
    Subnets(SelectorTerm),
    /// `security-groups [where] FIELD [and FIELD]*`
    SecurityGroups(SelectorTerm),
    /// `role NAME`
    Role(Word),
    /// `instance-profile NAME`
    InstanceProfile(Word),
    /// `tag KEY = VALUE`
    Tag(KeyValue),
    /// `block-device NAME { ... }`
    BlockDevice(BlockDevice),
    /// `imds { ... }`
    Imds(Vec<Setting>),
    /// `user-data "..."`
    UserData(Word),
    /// `detailed-monitoring true|false`
    DetailedMonitoring(Word),
    /// `public-ip true|false`
    PublicIp(Word),
    /// `instance-store-policy RAID0`
    InstanceStorePolicy(Word),
    /// `kubelet { ... }`
    Kubelet(Kubelet),
}

/// One selector term: every field must match.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectorTerm {
    pub fields: Vec<SelectorField>,
    pub span: Span,
}

/// One field of a selector term.
#[derive(Debug, Clone, PartialEq)]
pub enum SelectorField {
    /// `alias al2023@latest` (AMIs only)
    Alias(Word),
    /// `id ami-123` / `id subnet-123` / `id sg-123`
    Id(Word),
    /// `name "my-ami-*"`
    Name(Word),
    /// `owner amazon` (AMIs only)
    Owner(Word),
    /// `tag KEY = VALUE` (`*` matches any value)
    Tag(KeyValue),
}

/// `block-device NAME { setting* }`.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockDevice {
    pub device: Word,
    pub settings: Vec<Setting>,
    pub span: Span,
}

/// A `NAME VALUE` setting in a block whose keys are checked by the compiler
/// (block devices: `root`, `size`, `type`, `iops`, `throughput`, `encrypted`,
/// `kms-key`, `delete-on-termination`, `snapshot`; imds: `tokens`, `endpoint`,
/// `hop-limit`, `ipv6`). `root` alone has an empty value list.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub name: Word,
    pub value: Option<Word>,
    pub span: Span,
}

// ---------------------------------------------------------------- conditions

/// A condition over pod or node attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

/// The shapes of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    True,
    False,
    /// `a and b and ...` (two or more)
    And(Vec<Expr>),
    /// `a or b or ...` (two or more)
    Or(Vec<Expr>),
    /// `not a`
    Not(Box<Expr>),
    /// `SUBJECT OP VALUES`
    Cmp {
        subject: Subject,
        op: CmpOp,
        op_span: Span,
        /// One value for `==`, `!=`, `<`, `<=`, `>`, `>=`; a list for `in`/`not in`;
        /// none for `exists`/`does-not-exist`.
        values: Vec<Word>,
    },
}

/// A comparison operator in conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    In,
    NotIn,
    Lt,
    Le,
    Gt,
    Ge,
    Exists,
    DoesNotExist,
}

impl CmpOp {
    /// The policy-language spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::In => "in",
            CmpOp::NotIn => "not in",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Exists => "exists",
            CmpOp::DoesNotExist => "does-not-exist",
        }
    }

    /// Whether the operator takes a list (`in`, `not in`).
    pub fn takes_list(&self) -> bool {
        matches!(self, CmpOp::In | CmpOp::NotIn)
    }

    /// Whether the operator takes no value (`exists`, `does-not-exist`).
    pub fn takes_none(&self) -> bool {
        matches!(self, CmpOp::Exists | CmpOp::DoesNotExist)
    }
}

/// What a comparison reads.
///
/// `scope` is `pod` or `node` when written (`pod.label("tier")`,
/// `node.zone`); otherwise the clause decides: pod attributes in `pods where`
/// and `unless`, node attributes after `on`. `name` is an attribute name
/// (`namespace`, `zone`, `instance-family`, ...), or a full label key
/// (`karpenter.k8s.aws/instance-gpu-count`); `label` takes its key as `arg`.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    pub scope: Option<Scope>,
    pub name: Word,
    /// The key of `label("KEY")`.
    pub arg: Option<Word>,
    pub span: Span,
}

/// Which side a subject reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Pod,
    Node,
}

// ---------------------------------------------------------------- rules

/// A placement rule.
///
/// - `place pods [where P] on N`: pods matching P may only use nodes matching N.
/// - `allow pods [where P] on N`: nodes matching N are reserved for pods matching P.
/// - `deny pods [where P] on N [unless Q]`: pods matching P (and not Q) must not use N.
/// - `prefer [pods [where P] on] N [weight W]`: a soft preference (weight 1..=100).
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementRule {
    pub kind: PlacementKind,
    /// `None` = every pod.
    pub pods: Option<Expr>,
    pub nodes: Expr,
    pub unless: Option<Expr>,
    pub weight: Option<Word>,
    pub span: Span,
}

/// The placement keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlacementKind {
    Place,
    Allow,
    Deny,
    Prefer,
}

impl PlacementKind {
    /// The keyword.
    pub fn as_str(&self) -> &'static str {
        match self {
            PlacementKind::Place => "place",
            PlacementKind::Allow => "allow",
            PlacementKind::Deny => "deny",
            PlacementKind::Prefer => "prefer",
        }
    }
}

/// A cost rule: `ACTION [on COND] [weight N]`.
///
/// Rules with a weight are ordered by weight (ascending, so the heaviest
/// applies last and its `price` wins, as with Karpenter's NodeOverlay);
/// unweighted rules keep policy order and apply first.
#[derive(Debug, Clone, PartialEq)]
pub struct CostRule {
    pub action: CostAction,
    /// `None` = every offering.
    pub when: Option<Expr>,
    pub weight: Option<Word>,
    pub span: Span,
}

/// What a cost rule does.
#[derive(Debug, Clone, PartialEq)]
pub enum CostAction {
    /// `price DOLLARS` — replace the hourly price.
    SetPrice(Word),
    /// `adjust +0.01` / `adjust -10%` — add dollars or scale by a percentage.
    Adjust(Word),
    /// `discount 28%` — multiply by (1 - 28%).
    Discount(Word),
    /// `penalize 20%` — multiply by (1 + 20%).
    Penalize(Word),
    /// `price spot = on-demand * RATIO [when no spot price known]`
    SpotFromOnDemand {
        ratio: Word,
        only_when_unknown: bool,
    },
    /// `ceiling price|price-per-vcpu|price-per-gib DOLLARS`
    Ceiling { metric: Word, max: Word },
}

/// `capacity RESOURCE AMOUNT [, RESOURCE AMOUNT]* [on COND] [weight N]`
/// (NodeOverlay capacity).
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityRule {
    pub add: Vec<KeyValue>,
    pub when: Option<Expr>,
    pub weight: Option<Word>,
    pub span: Span,
}

/// `score with "path"`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreHook {
    /// As written; resolved against the policy file's folder.
    pub path: Word,
    pub span: Span,
}
