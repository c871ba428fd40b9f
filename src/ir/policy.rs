//! The compiled policy set: pools, node classes, placement and cost rules, score hooks.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::cond::Cond;
use super::cost::{CapacityRule, CostRule};
use super::duration::Duration;
use super::origin::Origin;
use super::quantity::Quantity;
use super::requirements::{Requirement, Requirements};

/// A whole compiled policy: what the solver, scorer and launcher consume.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PolicySet {
    /// Pools, highest weight first, then by name (the order the solver tries them).
    pub pools: Vec<Pool>,
    /// Node classes by name.
    pub node_classes: BTreeMap<String, NodeClass>,
    /// Placement rules, in policy order.
    pub placement: Vec<PlacementRule>,
    /// Cost rules, in policy order.
    pub cost: Vec<CostRule>,
    /// Capacity overlays (NodeOverlay capacity).
    pub capacity: Vec<CapacityRule>,
    /// Scripts that score every pool's candidates.
    pub scripts: Vec<ScriptRef>,
}

impl PolicySet {
    /// The pool called `name`.
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// Sorts pools into solver order: weight descending, then name.
    pub fn sort_pools(&mut self) {
        self.pools
            .sort_by(|a, b| b.weight.cmp(&a.weight).then_with(|| a.name.cmp(&b.name)));
    }
}

/// A pool of nodes the solver may launch (Karpenter's NodePool).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub name: String,
    /// Higher weights are tried first (Karpenter's `weight`, 0 when unset).
    pub weight: i32,
    /// The requirement terms as written (kept for minValues and explanations).
    pub requirement_terms: Vec<Requirement>,
    /// The terms merged per key.
    pub requirements: Requirements,
    /// Resource limits over all nodes of the pool (`cpu`, `memory`, `pods`, `nvidia.com/gpu`, ...).
    pub limits: BTreeMap<String, Quantity>,
    /// Labels put on every node.
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// Taints present at startup only; pods need not tolerate them to be placed.
    pub startup_taints: Vec<Taint>,
    /// EC2 tags on instances of this pool.
    pub tags: BTreeMap<String, String>,
    /// Name of the node class to launch with.
    pub node_class: String,
    /// Kubelet settings; override the node class's, term by term.
    pub kubelet: KubeletConfig,
    pub disruption: Disruption,
    /// Scripts scoring this pool's candidates (after the policy-wide ones).
    pub scripts: Vec<ScriptRef>,
    #[serde(skip)]
    pub origin: Option<Origin>,
}

/// A Kubernetes taint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: TaintEffect,
}

/// A taint's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    /// Parses the Kubernetes spelling.
    pub fn parse(s: &str) -> Option<TaintEffect> {
        match s {
            "NoSchedule" => Some(TaintEffect::NoSchedule),
            "PreferNoSchedule" => Some(TaintEffect::PreferNoSchedule),
            "NoExecute" => Some(TaintEffect::NoExecute),
            _ => None,
        }
    }

    /// The Kubernetes spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

impl std::fmt::Display for Taint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={}:{}", self.key, v, self.effect.as_str()),
            None => write!(f, "{}:{}", self.key, self.effect.as_str()),
        }
    }
}

/// Kubelet settings that change what a node can hold. Every field is optional
/// so a pool can override its node class term by term.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct KubeletConfig {
    pub max_pods: Option<u32>,
    pub pods_per_core: Option<u32>,
    /// Resource name → amount (`cpu`, `memory`, `ephemeral-storage`, `pid`).
    pub kube_reserved: BTreeMap<String, Quantity>,
    pub system_reserved: BTreeMap<String, Quantity>,
    /// Signal → threshold as written (`memory.available` → `100Mi` or `5%`).
    pub eviction_hard: BTreeMap<String, String>,
    pub eviction_soft: BTreeMap<String, String>,
    pub eviction_soft_grace_period: BTreeMap<String, Duration>,
    pub eviction_max_pod_grace_period: Option<i64>,
    pub image_gc_high_threshold_percent: Option<u32>,
    pub image_gc_low_threshold_percent: Option<u32>,
    pub cpu_cfs_quota: Option<bool>,
    pub cluster_dns: Vec<String>,
}

impl KubeletConfig {
    /// `self` with every term `over` sets replaced by `over`'s.
    pub fn overridden_by(&self, over: &KubeletConfig) -> KubeletConfig {
        let merge = |a: &BTreeMap<String, Quantity>, b: &BTreeMap<String, Quantity>| {
            let mut m = a.clone();
            m.extend(b.iter().map(|(k, v)| (k.clone(), *v)));
            m
        };
        let merge_s = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| {
            let mut m = a.clone();
            m.extend(b.iter().map(|(k, v)| (k.clone(), v.clone())));
            m
        };
        let mut grace = self.eviction_soft_grace_period.clone();
        grace.extend(
            over.eviction_soft_grace_period
                .iter()
                .map(|(k, v)| (k.clone(), *v)),
        );
        KubeletConfig {
            max_pods: over.max_pods.or(self.max_pods),
            pods_per_core: over.pods_per_core.or(self.pods_per_core),
            kube_reserved: merge(&self.kube_reserved, &over.kube_reserved),
            system_reserved: merge(&self.system_reserved, &over.system_reserved),
            eviction_hard: merge_s(&self.eviction_hard, &over.eviction_hard),
            eviction_soft: merge_s(&self.eviction_soft, &over.eviction_soft),
            eviction_soft_grace_period: grace,
            eviction_max_pod_grace_period: over
                .eviction_max_pod_grace_period
                .or(self.eviction_max_pod_grace_period),
            image_gc_high_threshold_percent: over
                .image_gc_high_threshold_percent
                .or(self.image_gc_high_threshold_percent),
            image_gc_low_threshold_percent: over
                .image_gc_low_threshold_percent
                .or(self.image_gc_low_threshold_percent),
            cpu_cfs_quota: over.cpu_cfs_quota.or(self.cpu_cfs_quota),
            cluster_dns: if over.cluster_dns.is_empty() {
                self.cluster_dns.clone()
            } else {
                over.cluster_dns.clone()
            },
        }
    }
}

/// When nodes of a pool may be removed or replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disruption {
    pub consolidation_policy: ConsolidationPolicy,
    /// How long a node must be consolidatable before it is acted on (`Never` disables).
    pub consolidate_after: Duration,
    /// Maximum node lifetime (`Never` disables). Karpenter's default is 720h.
    pub expire_after: Duration,
    /// How long a draining node may wait for pods before it is forcibly terminated.
    pub termination_grace_period: Option<Duration>,
    pub budgets: Vec<Budget>,
}

impl Default for Disruption {
    /// Karpenter v1's defaults.
    fn default() -> Self {
        Disruption {
            consolidation_policy: ConsolidationPolicy::WhenEmptyOrUnderutilized,
            consolidate_after: Duration::Finite(std::time::Duration::ZERO),
            expire_after: Duration::Finite(std::time::Duration::from_secs(720 * 3600)),
            termination_grace_period: None,
            budgets: vec![Budget {
                nodes: BudgetNodes::Percent(10),
                schedule: None,
                duration: None,
                reasons: Vec::new(),
            }],
        }
    }
}

/// Which nodes consolidation may act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConsolidationPolicy {
    WhenEmpty,
    WhenEmptyOrUnderutilized,
}

/// A disruption budget: at most `nodes` disrupted at once, optionally only during a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    pub nodes: BudgetNodes,
    /// A cron schedule (`0 9 * * mon-fri`); with `duration`, the window the budget is active.
    pub schedule: Option<String>,
    pub duration: Option<Duration>,
    /// Disruption reasons it applies to; empty means all.
    pub reasons: Vec<DisruptionReason>,
}

/// A budget's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BudgetNodes {
    /// 0..=100.
    Percent(u8),
    Count(u32),
}

/// Why a node is disrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DisruptionReason {
    Underutilized,
    Empty,
    Drifted,
    /// Older than the pool's `expire-after`.
    Expired,
}

impl DisruptionReason {
    /// Every reason, in the order the controller's disruption pass acts on them.
    pub const ALL: [DisruptionReason; 4] = [
        DisruptionReason::Expired,
        DisruptionReason::Drifted,
        DisruptionReason::Empty,
        DisruptionReason::Underutilized,
    ];

    /// The policy's spelling, also the `nodewright.io/disruption-reason` annotation's value.
    pub fn as_str(&self) -> &'static str {
        match self {
            DisruptionReason::Underutilized => "underutilized",
            DisruptionReason::Empty => "empty",
            DisruptionReason::Drifted => "drifted",
            DisruptionReason::Expired => "expired",
        }
    }
}

/// Parses a budget's `schedule` the way Karpenter does (robfig/cron's
/// standard parser, in UTC): five fields (minute hour day-of-month month
/// day-of-week) with names, ranges and steps, or a macro like `@daily`; a
/// restricted day-of-month and day-of-week match either, as in Vixie cron.
/// One parser for the policy compiler (which rejects a bad schedule with its
/// location) and the controller (which evaluates the window).
pub fn parse_schedule(text: &str) -> Result<croner::Cron, String> {
    let parser = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build();
    parser.parse(text.trim()).map_err(|e| e.to_string())
}

/// How to launch a node: AMI, network, IAM, storage and metadata (Karpenter's EC2NodeClass).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeClass {
    pub name: String,
    /// AMI family when not implied by an alias (`AL2023`, `Bottlerocket`, `AL2`, `Windows2022`, `Custom`).
    pub ami_family: Option<String>,
    /// Any term may match (OR); within a term all fields must match.
    pub ami_selector: Vec<AmiSelectorTerm>,
    pub subnet_selector: Vec<SelectorTerm>,
    pub security_group_selector: Vec<SelectorTerm>,
    /// Exactly one of role and instance profile is set.
    pub role: Option<String>,
    pub instance_profile: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    pub metadata_options: MetadataOptions,
    pub user_data: Option<String>,
    pub detailed_monitoring: Option<bool>,
    pub associate_public_ip_address: Option<bool>,
    /// `RAID0` to pool local NVMe into ephemeral storage.
    pub instance_store_policy: Option<String>,
    pub kubelet: KubeletConfig,
    #[serde(skip)]
    pub origin: Option<Origin>,
}

/// One AMI selector term.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AmiSelectorTerm {
    /// `al2023@latest`, `bottlerocket@v1.20.0`, ...
    pub alias: Option<String>,
    pub id: Option<String>,
    pub name: Option<String>,
    pub owner: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// A subnet or security-group selector term: by id, by name, or by tags (all must match).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SelectorTerm {
    pub id: Option<String>,
    pub name: Option<String>,
    /// Tag key → value; `*` matches any value.
    pub tags: BTreeMap<String, String>,
}

/// An EBS (or instance store) block device.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BlockDeviceMapping {
    pub device_name: String,
    pub root_volume: bool,
    pub volume_size: Option<Quantity>,
    pub volume_type: Option<String>,
    pub iops: Option<i64>,
    pub throughput: Option<i64>,
    pub encrypted: Option<bool>,
    pub kms_key_id: Option<String>,
    pub delete_on_termination: Option<bool>,
    pub snapshot_id: Option<String>,
}

/// Instance metadata service options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetadataOptions {
    pub http_endpoint: String,
    pub http_protocol_ipv6: String,
    pub http_put_response_hop_limit: i64,
    /// `required` (IMDSv2 only; the default) or `optional`.
    pub http_tokens: String,
}

impl Default for MetadataOptions {
    /// Karpenter's defaults: IMDSv2 required, hop limit 1.
    fn default() -> Self {
        MetadataOptions {
            http_endpoint: "enabled".into(),
            http_protocol_ipv6: "disabled".into(),
            http_put_response_hop_limit: 1,
            http_tokens: "required".into(),
        }
    }
}

/// A placement rule: pods matching `pods` and nodes matching `nodes` are
/// required, forbidden or preferred together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacementRule {
    pub kind: PlacementKind,
    /// Pod-side condition (`Cond::True` for every pod).
    pub pods: Cond,
    /// Node-side condition over candidate labels, zone, capacity type and pool.
    pub nodes: Cond,
    #[serde(skip)]
    pub origin: Option<Origin>,
}

/// What a placement rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PlacementKind {
    /// Matching pods may only go on matching nodes.
    Require,
    /// Matching pods must not go on matching nodes.
    Deny,
    /// Matching pods prefer matching nodes; the weight (1..=100) trades against price.
    Prefer { weight: i32 },
}

/// A reference to a rhai scoring script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptRef {
    /// Resolved path (relative references are resolved against the policy file's folder).
    pub path: PathBuf,
    #[serde(skip)]
    pub origin: Option<Origin>,
}
