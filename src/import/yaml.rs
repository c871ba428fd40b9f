//! Serde models of the Karpenter objects `nodewright import` reads.
//!
//! Every struct denies unknown fields, so a typo or a field from a newer
//! Karpenter is an error with the YAML line and column instead of a silently
//! dropped setting. Fields that Karpenter has but nodewright cannot represent
//! are typed [`Unsupported`], whose `Deserialize` always fails with a message
//! saying why; serde_yaml_ng attaches the location. Values are validated while
//! deserializing (quantities, durations, operators, enums) for the same
//! reason: that is the only moment the location is known.
//!
//! `status` and the metadata the API server writes (`uid`, `resourceVersion`,
//! `managedFields`, ...) are accepted and ignored: they are observations, not
//! spec, and `kubectl get -o yaml` output must import.

// The schema models name every field Karpenter defines, so serde accepts the known ones (and
// `Unsupported` ones fail with a hint); server-written and rejected fields are never read.
#![allow(
    dead_code,
    reason = "fields that exist for serde to accept or reject, never read"
)]

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};

use crate::ir::{Duration, Operator, Quantity, TaintEffect};

/// Separates a message from its hint inside a serde error string; split again by `mod.rs`.
pub(crate) const HINT_SEP: char = '\u{1f}';

fn err_with_hint<E: de::Error>(msg: impl fmt::Display, hint: impl fmt::Display) -> E {
    E::custom(format_args!("{msg}{HINT_SEP}{hint}"))
}

// ---------------------------------------------------------------------------
// Unsupported fields

/// Why a Karpenter field cannot be imported; one zero-sized type per field.
pub(crate) trait Reason {
    /// The field as Karpenter spells it.
    const FIELD: &'static str;
    /// What to do instead.
    const HINT: &'static str;
}

/// A field Karpenter accepts but nodewright cannot represent. Deserializing it
/// always fails, so the user learns at which line their setting would be lost.
pub(crate) struct Unsupported<R: Reason>(PhantomData<R>);

impl<R: Reason> fmt::Debug for Unsupported<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Unsupported({})", R::FIELD)
    }
}

impl<'de, R: Reason> Deserialize<'de> for Unsupported<R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<R>(PhantomData<R>);
        impl<R: Reason> V<R> {
            fn fail<E: de::Error>(&self) -> E {
                err_with_hint(
                    format_args!("`{}` cannot be represented in nodewright policy", R::FIELD),
                    R::HINT,
                )
            }
        }
        impl<'de, R: Reason> Visitor<'de> for V<R> {
            type Value = Unsupported<R>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "nothing (`{}` is not supported)", R::FIELD)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Err(self.fail())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Err(self.fail())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Err(self.fail())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Err(self.fail())
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Err(self.fail())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Err(self.fail())
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Err(self.fail())
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
                Err(self.fail())
            }
            fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
                Err(self.fail())
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

macro_rules! reasons {
    ($($name:ident => $field:literal, $hint:literal;)*) => {$(
        #[doc = concat!("Why `", $field, "` is rejected.")]
        pub(crate) struct $name;
        impl Reason for $name {
            const FIELD: &'static str = $field;
            const HINT: &'static str = $hint;
        }
    )*};
}

reasons! {
    Replicas => "spec.replicas",
        "static-capacity NodePools (a fixed node count) are not modelled; nodewright only launches for pending pods. Remove `replicas` to import the pool as a dynamic one";
    TemplateAnnotations => "spec.template.metadata.annotations",
        "nodewright pools carry labels, taints and tags but no node annotations; set the annotations with a DaemonSet or admission webhook instead";
    TimeAdded => "taints[].timeAdded",
        "timeAdded is written by the node lifecycle controller on live nodes; remove it from the template";
    SsmParameter => "amiSelectorTerms[].ssmParameter",
        "resolve the SSM parameter to an AMI id (`aws ssm get-parameter`) and use `id:`, or use an `alias:` such as al2023@latest";
    VolumeInitRate => "ebs.volumeInitializationRate",
        "EBS volume initialization rate is not modelled; remove it (the default is the standard initialization rate)";
    CapacityReservations => "capacityReservationSelectorTerms",
        "capacity reservations are not modelled; model the reserved price with a cost rule instead, e.g. `price 19.22 on instance-type == p4d.24xlarge`";
    ConnectionTracking => "connectionTracking",
        "connection-tracking timeouts are not modelled; remove the field to use the EC2 defaults";
    Context => "context",
        "EC2 Fleet context (for reserved capacity) is not modelled; remove the field";
    CpuOptions => "cpuOptions",
        "CPU options (nested virtualization) are not modelled; remove the field";
    IpPrefixCount => "ipPrefixCount",
        "prefix delegation is not modelled, so max-pods would be computed wrongly; set kubelet maxPods explicitly and remove ipPrefixCount";
    NetworkInterfaces => "networkInterfaces",
        "custom network interfaces (EFA) are not modelled; remove the field to get one primary interface";
    PlacementGroup => "placementGroupSelector",
        "placement groups are not modelled; remove the field";
    LaunchTemplate => "launchTemplate",
        "launch templates are not imported (Karpenter removed them in v1beta1); translate them into amiSelector, userData, blockDeviceMappings and securityGroupSelector";
    ContainerRuntime => "kubeletConfiguration.containerRuntime",
        "only containerd is supported (as in Karpenter v1); remove the field";
}

// ---------------------------------------------------------------------------
// Validated scalar values

/// Reads any YAML scalar (string, integer, float, bool) as its text.
fn scalar_text<'de, D: Deserializer<'de>>(d: D, what: &'static str) -> Result<String, D::Error> {
    struct V(&'static str);
    impl Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(V(what))
}

/// A Kubernetes quantity; malformed or negative text fails where it is written.
/// The text is kept so the policy says it the way the user did.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Qty {
    /// The parsed value.
    pub quantity: Quantity,
    /// As written.
    pub text: String,
}

impl<'de> Deserialize<'de> for Qty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = scalar_text(d, "a Kubernetes quantity such as 100m, 4Gi or 2")?;
        match Quantity::parse(&text) {
            Ok(q) if q.is_negative() => Err(err_with_hint(
                format_args!("negative quantity `{text}`"),
                "resource amounts cannot be negative",
            )),
            Ok(quantity) => Ok(Qty {
                quantity,
                text: text.trim().to_string(),
            }),
            Err(e) => Err(err_with_hint(&e, e.help())),
        }
    }
}

/// A Go duration or `Never`, with its text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Dur {
    /// The parsed value.
    pub duration: Duration,
    /// As written.
    pub text: String,
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = scalar_text(d, "a duration such as 30s, 720h or Never")?;
        match Duration::parse(&text) {
            Ok(duration) => Ok(Dur {
                duration,
                text: text.trim().to_string(),
            }),
            Err(e) => Err(err_with_hint(&e, e.help())),
        }
    }
}

/// A requirement operator, including the `Gte`/`Lte` that newer Karpenter accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// One of the six Kubernetes operators.
    K8s(Operator),
    /// `>= n`, imported as `> n-1`.
    Gte,
    /// `<= n`, imported as `< n+1`.
    Lte,
}

impl<'de> Deserialize<'de> for Op {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "Gte" => Ok(Op::Gte),
            "Lte" => Ok(Op::Lte),
            _ => Operator::parse(&s).map(Op::K8s).ok_or_else(|| {
                err_with_hint(
                    format_args!("unknown operator `{s}`"),
                    "operators are In, NotIn, Exists, DoesNotExist, Gt, Lt, Gte and Lte (case-sensitive)",
                )
            }),
        }
    }
}

/// A taint effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Effect(pub TaintEffect);

impl<'de> Deserialize<'de> for Effect {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TaintEffect::parse(&s).map(Effect).ok_or_else(|| {
            err_with_hint(
                format_args!("unknown taint effect `{s}`"),
                "effects are NoSchedule, PreferNoSchedule and NoExecute",
            )
        })
    }
}

/// Karpenter v1 consolidation policies nodewright can represent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConsolidationPolicyY {
    /// `WhenEmpty`.
    WhenEmpty,
    /// `WhenEmptyOrUnderutilized`.
    WhenEmptyOrUnderutilized,
}

impl<'de> Deserialize<'de> for ConsolidationPolicyY {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "WhenEmpty" => Ok(Self::WhenEmpty),
            "WhenEmptyOrUnderutilized" => Ok(Self::WhenEmptyOrUnderutilized),
            "Balanced" => Err(err_with_hint(
                "consolidationPolicy `Balanced` cannot be represented in nodewright policy",
                "nodewright consolidates WhenEmpty or WhenEmptyOrUnderutilized; use WhenEmptyOrUnderutilized with a consolidateAfter delay",
            )),
            _ => Err(err_with_hint(
                format_args!("unknown consolidationPolicy `{s}`"),
                "use WhenEmpty or WhenEmptyOrUnderutilized",
            )),
        }
    }
}

/// A disruption reason a budget applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReasonY(pub crate::ir::DisruptionReason);

impl<'de> Deserialize<'de> for ReasonY {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use crate::ir::DisruptionReason as R;
        let s = String::deserialize(d)?;
        match s.as_str() {
            "Underutilized" => Ok(ReasonY(R::Underutilized)),
            "Empty" => Ok(ReasonY(R::Empty)),
            "Drifted" => Ok(ReasonY(R::Drifted)),
            _ => Err(err_with_hint(
                format_args!("unknown disruption reason `{s}`"),
                "reasons are Underutilized, Empty and Drifted",
            )),
        }
    }
}

/// A budget's `nodes`: a percentage (`10%`) or a count (`5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BudgetNodesY(pub crate::ir::BudgetNodes);

impl<'de> Deserialize<'de> for BudgetNodesY {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use crate::ir::BudgetNodes;
        let text = scalar_text(d, "a node count such as 5 or a percentage such as 10%")?;
        let t = text.trim();
        let hint = "write a whole number of nodes (`5`) or a percentage from 0% to 100% (`10%`)";
        if let Some(p) = t.strip_suffix('%') {
            match p.parse::<u8>() {
                Ok(n) if n <= 100 => Ok(BudgetNodesY(BudgetNodes::Percent(n))),
                _ => Err(err_with_hint(
                    format_args!("budget `{text}` is not a percentage from 0% to 100%"),
                    hint,
                )),
            }
        } else {
            t.parse::<u32>()
                .map(|n| BudgetNodesY(BudgetNodes::Count(n)))
                .map_err(|_| err_with_hint(format_args!("malformed budget `{text}`"), hint))
        }
    }
}

/// An AMI family Karpenter knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AmiFamily(pub String);

/// The AMI families of Karpenter v1 (and the older `Ubuntu` of v1alpha1).
pub(super) const AMI_FAMILIES: &[&str] = &[
    "AL2",
    "AL2023",
    "Bottlerocket",
    "Custom",
    "Windows2019",
    "Windows2022",
    "Windows2025",
    "Ubuntu",
];

impl<'de> Deserialize<'de> for AmiFamily {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if AMI_FAMILIES.contains(&s.as_str()) {
            Ok(AmiFamily(s))
        } else {
            Err(err_with_hint(
                format_args!("unknown amiFamily `{s}`"),
                format_args!("AMI families are {}", AMI_FAMILIES.join(", ")),
            ))
        }
    }
}

/// An enum-valued string field, checked against its allowed values.
macro_rules! string_enum {
    ($name:ident, $what:literal, [$($v:literal),*]) => {
        #[doc = concat!("A checked `", $what, "` value.")]
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub(crate) struct $name(pub(crate) String);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                const ALLOWED: &[&str] = &[$($v),*];
                if ALLOWED.contains(&s.as_str()) {
                    Ok($name(s))
                } else {
                    Err(err_with_hint(
                        format_args!("unknown {} `{s}`", $what),
                        format_args!("allowed values: {}", ALLOWED.join(", ")),
                    ))
                }
            }
        }
    };
}

string_enum!(
    VolumeType,
    "volumeType",
    ["standard", "io1", "io2", "gp2", "sc1", "st1", "gp3"]
);
string_enum!(EnabledDisabled, "setting", ["enabled", "disabled"]);
string_enum!(HttpTokens, "httpTokens", ["required", "optional"]);
string_enum!(InstanceStorePolicy, "instanceStorePolicy", ["RAID0"]);

// ---------------------------------------------------------------------------
// Documents

/// `apiVersion` and `kind`, read first to choose the model for the rest.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Header {
    /// `karpenter.sh/v1`, ...
    pub api_version: Option<String>,
    /// `NodePool`, ...
    pub kind: Option<String>,
}

/// Object metadata. Only the name matters; server-written fields are ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ObjectMeta {
    /// The object's name: the pool or node-class name.
    pub name: String,
    /// Labels on the Karpenter object itself (not on nodes); reported as a warning.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations on the object; `kubernetes.io/description` becomes a comment.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Karpenter's objects are cluster-scoped; accepted and ignored.
    pub namespace: Option<IgnoredAny>,
    /// Written by the API server.
    pub uid: Option<IgnoredAny>,
    /// Written by the API server.
    pub resource_version: Option<IgnoredAny>,
    /// Written by the API server.
    pub generation: Option<IgnoredAny>,
    /// Written by the API server.
    pub creation_timestamp: Option<IgnoredAny>,
    /// Written by the API server.
    pub deletion_timestamp: Option<IgnoredAny>,
    /// Written by the API server.
    pub deletion_grace_period_seconds: Option<IgnoredAny>,
    /// Written by the API server.
    pub managed_fields: Option<IgnoredAny>,
    /// Written by controllers.
    pub finalizers: Option<IgnoredAny>,
    /// Written by controllers.
    pub owner_references: Option<IgnoredAny>,
    /// Written by the API server.
    pub self_link: Option<IgnoredAny>,
    /// Only used to create objects.
    pub generate_name: Option<IgnoredAny>,
}

/// A node selector requirement with Karpenter's `minValues`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RequirementY {
    /// Label key.
    pub key: String,
    /// Operator.
    pub operator: Op,
    /// Values (empty for Exists/DoesNotExist).
    #[serde(default)]
    pub values: Vec<String>,
    /// Minimum number of distinct values for launch flexibility.
    pub min_values: Option<u32>,
}

/// A NodeOverlay requirement (no minValues).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct OverlayRequirementY {
    /// Label key.
    pub key: String,
    /// Operator.
    pub operator: Op,
    /// Values.
    #[serde(default)]
    pub values: Vec<String>,
}

/// A taint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct TaintY {
    /// Taint key.
    pub key: String,
    /// Optional value.
    pub value: Option<String>,
    /// Effect.
    pub effect: Effect,
    /// Rejected: set on live nodes only.
    pub time_added: Option<Unsupported<TimeAdded>>,
}

/// The fields every top-level document has besides its spec.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Object<S> {
    /// Checked by the header pass.
    pub api_version: IgnoredAny,
    /// Checked by the header pass.
    pub kind: IgnoredAny,
    /// Name and annotations.
    pub metadata: ObjectMeta,
    /// The desired state.
    pub spec: S,
    /// Observed state: ignored by rule (not spec).
    pub status: Option<IgnoredAny>,
}

/// karpenter.sh/v1 NodePool spec.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct NodePoolSpec {
    /// What each node claim looks like.
    pub template: NodeClaimTemplate,
    /// Consolidation, expiry budgets.
    pub disruption: Option<DisruptionY>,
    /// Resource limits over all nodes of the pool.
    #[serde(default)]
    pub limits: BTreeMap<String, Qty>,
    /// Priority among pools.
    pub weight: Option<i32>,
    /// Rejected: static capacity.
    pub replicas: Option<Unsupported<Replicas>>,
}

/// `spec.template`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct NodeClaimTemplate {
    /// Node labels and (rejected) annotations.
    pub metadata: Option<TemplateMeta>,
    /// Requirements, taints, node class, lifetimes.
    pub spec: NodeClaimSpec,
}

/// `spec.template.metadata`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct TemplateMeta {
    /// Labels put on every node.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Rejected: node annotations.
    pub annotations: Option<Unsupported<TemplateAnnotations>>,
}

/// `spec.template.spec`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct NodeClaimSpec {
    /// Requirements on node labels.
    #[serde(default)]
    pub requirements: Vec<RequirementY>,
    /// The node class to launch with.
    pub node_class_ref: NodeClassRef,
    /// Taints.
    #[serde(default)]
    pub taints: Vec<TaintY>,
    /// Startup taints.
    #[serde(default)]
    pub startup_taints: Vec<TaintY>,
    /// Maximum node lifetime.
    pub expire_after: Option<Dur>,
    /// Forced-termination delay.
    pub termination_grace_period: Option<Dur>,
}

/// `nodeClassRef`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct NodeClassRef {
    /// `karpenter.k8s.aws`.
    pub group: String,
    /// `EC2NodeClass`.
    pub kind: String,
    /// Node class name.
    pub name: String,
}

/// `spec.disruption`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct DisruptionY {
    /// Which nodes consolidation may act on.
    pub consolidation_policy: Option<ConsolidationPolicyY>,
    /// Delay before consolidating.
    pub consolidate_after: Option<Dur>,
    /// Disruption budgets; absent means Karpenter's default of 10%.
    pub budgets: Option<Vec<BudgetY>>,
}

/// One disruption budget.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct BudgetY {
    /// Count or percentage.
    pub nodes: BudgetNodesY,
    /// Cron schedule.
    pub schedule: Option<String>,
    /// How long the schedule window lasts.
    pub duration: Option<Dur>,
    /// Reasons it applies to.
    #[serde(default)]
    pub reasons: Vec<ReasonY>,
}

/// Kubelet settings (v1 `EC2NodeClass.spec.kubelet`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct KubeletY {
    /// Cluster DNS addresses.
    #[serde(rename = "clusterDNS", default)]
    pub cluster_dns: Vec<String>,
    /// Max pods per node.
    pub max_pods: Option<u32>,
    /// Pods per core.
    pub pods_per_core: Option<u32>,
    /// System-reserved resources.
    #[serde(default)]
    pub system_reserved: BTreeMap<String, Qty>,
    /// Kube-reserved resources.
    #[serde(default)]
    pub kube_reserved: BTreeMap<String, Qty>,
    /// Hard eviction thresholds.
    #[serde(default)]
    pub eviction_hard: BTreeMap<String, String>,
    /// Soft eviction thresholds.
    #[serde(default)]
    pub eviction_soft: BTreeMap<String, String>,
    /// Soft eviction grace periods.
    #[serde(default)]
    pub eviction_soft_grace_period: BTreeMap<String, Dur>,
    /// Max pod grace period on soft eviction.
    pub eviction_max_pod_grace_period: Option<i64>,
    /// Image GC high threshold.
    #[serde(rename = "imageGCHighThresholdPercent")]
    pub image_gc_high_threshold_percent: Option<u32>,
    /// Image GC low threshold.
    #[serde(rename = "imageGCLowThresholdPercent")]
    pub image_gc_low_threshold_percent: Option<u32>,
    /// CFS quota enforcement.
    #[serde(rename = "cpuCFSQuota")]
    pub cpu_cfs_quota: Option<bool>,
}

/// v1alpha5 `kubeletConfiguration`: the v1 fields plus the retired containerRuntime.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct KubeletV1alpha5 {
    /// Cluster DNS addresses.
    #[serde(rename = "clusterDNS", default)]
    pub cluster_dns: Vec<String>,
    /// Rejected unless `containerd`.
    pub container_runtime: Option<ContainerRuntimeY>,
    /// Max pods per node.
    pub max_pods: Option<u32>,
    /// Pods per core.
    pub pods_per_core: Option<u32>,
    /// System-reserved resources.
    #[serde(default)]
    pub system_reserved: BTreeMap<String, Qty>,
    /// Kube-reserved resources.
    #[serde(default)]
    pub kube_reserved: BTreeMap<String, Qty>,
    /// Hard eviction thresholds.
    #[serde(default)]
    pub eviction_hard: BTreeMap<String, String>,
    /// Soft eviction thresholds.
    #[serde(default)]
    pub eviction_soft: BTreeMap<String, String>,
    /// Soft eviction grace periods.
    #[serde(default)]
    pub eviction_soft_grace_period: BTreeMap<String, Dur>,
    /// Max pod grace period on soft eviction.
    pub eviction_max_pod_grace_period: Option<i64>,
    /// Image GC high threshold.
    #[serde(rename = "imageGCHighThresholdPercent")]
    pub image_gc_high_threshold_percent: Option<u32>,
    /// Image GC low threshold.
    #[serde(rename = "imageGCLowThresholdPercent")]
    pub image_gc_low_threshold_percent: Option<u32>,
    /// CFS quota enforcement.
    #[serde(rename = "cpuCFSQuota")]
    pub cpu_cfs_quota: Option<bool>,
}

/// `containerRuntime`: only `containerd` is accepted (and then dropped: it is the only runtime).
#[derive(Debug)]
pub(crate) struct ContainerRuntimeY;

impl<'de> Deserialize<'de> for ContainerRuntimeY {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "containerd" {
            Ok(ContainerRuntimeY)
        } else {
            Err(err_with_hint(
                format_args!("containerRuntime `{s}` cannot be represented in nodewright policy"),
                <ContainerRuntime as Reason>::HINT,
            ))
        }
    }
}

impl From<KubeletV1alpha5> for KubeletY {
    fn from(k: KubeletV1alpha5) -> Self {
        KubeletY {
            cluster_dns: k.cluster_dns,
            max_pods: k.max_pods,
            pods_per_core: k.pods_per_core,
            system_reserved: k.system_reserved,
            kube_reserved: k.kube_reserved,
            eviction_hard: k.eviction_hard,
            eviction_soft: k.eviction_soft,
            eviction_soft_grace_period: k.eviction_soft_grace_period,
            eviction_max_pod_grace_period: k.eviction_max_pod_grace_period,
            image_gc_high_threshold_percent: k.image_gc_high_threshold_percent,
            image_gc_low_threshold_percent: k.image_gc_low_threshold_percent,
            cpu_cfs_quota: k.cpu_cfs_quota,
        }
    }
}

/// karpenter.k8s.aws/v1 EC2NodeClass spec.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Ec2NodeClassSpec {
    /// AMI family (implied by an alias when absent).
    pub ami_family: Option<AmiFamily>,
    /// AMI selector terms (OR).
    #[serde(default)]
    pub ami_selector_terms: Vec<AmiSelectorTermY>,
    /// Public IP on the primary interface.
    #[serde(rename = "associatePublicIPAddress")]
    pub associate_public_ip_address: Option<bool>,
    /// Block devices.
    #[serde(default)]
    pub block_device_mappings: Vec<BlockDeviceMappingY>,
    /// Rejected.
    pub capacity_reservation_selector_terms: Option<Unsupported<CapacityReservations>>,
    /// Rejected.
    pub connection_tracking: Option<Unsupported<ConnectionTracking>>,
    /// Rejected.
    pub context: Option<Unsupported<Context>>,
    /// Rejected.
    pub cpu_options: Option<Unsupported<CpuOptions>>,
    /// CloudWatch detailed monitoring.
    pub detailed_monitoring: Option<bool>,
    /// Instance profile (instead of role).
    pub instance_profile: Option<String>,
    /// `RAID0`.
    pub instance_store_policy: Option<InstanceStorePolicy>,
    /// Rejected.
    pub ip_prefix_count: Option<Unsupported<IpPrefixCount>>,
    /// Kubelet settings.
    pub kubelet: Option<KubeletY>,
    /// IMDS options.
    pub metadata_options: Option<MetadataOptionsY>,
    /// Rejected.
    pub network_interfaces: Option<Unsupported<NetworkInterfaces>>,
    /// Rejected.
    pub placement_group_selector: Option<Unsupported<PlacementGroup>>,
    /// IAM role (instead of instance profile).
    pub role: Option<String>,
    /// Security groups (OR of terms).
    #[serde(default)]
    pub security_group_selector_terms: Vec<SelectorTermY>,
    /// Subnets (OR of terms).
    #[serde(default)]
    pub subnet_selector_terms: Vec<SubnetSelectorTermY>,
    /// EC2 tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// User data.
    pub user_data: Option<String>,
}

/// One AMI selector term.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct AmiSelectorTermY {
    /// `al2023@latest`.
    pub alias: Option<String>,
    /// `ami-...`.
    pub id: Option<String>,
    /// AMI name (wildcards allowed).
    pub name: Option<String>,
    /// Owner account or alias.
    pub owner: Option<String>,
    /// Rejected.
    pub ssm_parameter: Option<Unsupported<SsmParameter>>,
    /// Tags (all must match).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A security-group selector term.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SelectorTermY {
    /// Resource id.
    pub id: Option<String>,
    /// Resource name.
    pub name: Option<String>,
    /// Tags (all must match).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A subnet selector term (no `name` in Karpenter v1).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SubnetSelectorTermY {
    /// Subnet id.
    pub id: Option<String>,
    /// Tags (all must match).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A block device mapping.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct BlockDeviceMappingY {
    /// `/dev/xvda`.
    pub device_name: Option<String>,
    /// EBS settings.
    pub ebs: Option<EbsY>,
    /// Whether it is the root volume (v1 only).
    #[serde(default)]
    pub root_volume: bool,
}

/// EBS volume settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct EbsY {
    /// Delete with the instance.
    pub delete_on_termination: Option<bool>,
    /// Encrypted.
    pub encrypted: Option<bool>,
    /// Provisioned IOPS.
    pub iops: Option<i64>,
    /// KMS key.
    #[serde(rename = "kmsKeyID")]
    pub kms_key_id: Option<String>,
    /// Snapshot to restore.
    #[serde(rename = "snapshotID")]
    pub snapshot_id: Option<String>,
    /// Throughput (MiB/s).
    pub throughput: Option<i64>,
    /// Rejected.
    pub volume_initialization_rate: Option<Unsupported<VolumeInitRate>>,
    /// Size.
    pub volume_size: Option<Qty>,
    /// `gp3`, ...
    pub volume_type: Option<VolumeType>,
}

/// IMDS options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct MetadataOptionsY {
    /// `enabled` / `disabled`.
    pub http_endpoint: Option<EnabledDisabled>,
    /// `enabled` / `disabled`.
    #[serde(rename = "httpProtocolIPv6")]
    pub http_protocol_ipv6: Option<EnabledDisabled>,
    /// Hop limit.
    pub http_put_response_hop_limit: Option<i64>,
    /// `required` / `optional`.
    pub http_tokens: Option<HttpTokens>,
}

/// karpenter.sh/v1alpha1 NodeOverlay spec.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct NodeOverlaySpec {
    /// Which instance types (and pools) it applies to.
    #[serde(default)]
    pub requirements: Vec<OverlayRequirementY>,
    /// Price override ($/hour).
    pub price: Option<PriceY>,
    /// Price change: `+0.5`, `-0.05`, `+10%`, `-15%`.
    pub price_adjustment: Option<PriceAdjustmentY>,
    /// Extended resources added to matching types.
    #[serde(default)]
    pub capacity: BTreeMap<String, Qty>,
    /// Precedence among overlays (higher wins).
    pub weight: Option<i32>,
}

/// A NodeOverlay `price`: a non-negative decimal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PriceY(pub f64);

impl<'de> Deserialize<'de> for PriceY {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = scalar_text(d, "a price such as \"0.25\"")?;
        match s.trim().parse::<f64>() {
            Ok(p) if p.is_finite() && p >= 0.0 && !s.trim().starts_with(['+', '-']) => {
                Ok(PriceY(p))
            }
            _ => Err(err_with_hint(
                format_args!("malformed price `{s}`"),
                "write a non-negative decimal $/hour such as \"0.25\"",
            )),
        }
    }
}

/// A NodeOverlay `priceAdjustment`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PriceAdjustmentY {
    /// Add this many $/hour (may be negative).
    Add(f64),
    /// Change by this percentage (`-15` for -15%).
    Percent(f64),
}

impl<'de> Deserialize<'de> for PriceAdjustmentY {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = scalar_text(d, "a price adjustment such as \"-0.05\" or \"+10%\"")?;
        let t = s.trim();
        let bad = || {
            err_with_hint(
                format_args!("malformed priceAdjustment `{s}`"),
                "write a signed $/hour amount (\"+0.5\", \"-0.05\") or a signed percentage (\"+10%\", \"-15%\"; at most -100%)",
            )
        };
        if !t.starts_with(['+', '-']) {
            return Err(bad());
        }
        if let Some(p) = t.strip_suffix('%') {
            match p.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= -100.0 => Ok(PriceAdjustmentY::Percent(v)),
                _ => Err(bad()),
            }
        } else {
            match t.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(PriceAdjustmentY::Add(v)),
                _ => Err(bad()),
            }
        }
    }
}

/// karpenter.sh/v1alpha5 Provisioner spec.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ProvisionerSpec {
    /// Rejected: node annotations.
    pub annotations: Option<Unsupported<TemplateAnnotations>>,
    /// Node labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Taints.
    #[serde(default)]
    pub taints: Vec<TaintY>,
    /// Startup taints.
    #[serde(default)]
    pub startup_taints: Vec<TaintY>,
    /// Requirements (v1alpha5 has no minValues; accepted anyway).
    #[serde(default)]
    pub requirements: Vec<RequirementY>,
    /// Kubelet settings.
    pub kubelet_configuration: Option<KubeletV1alpha5>,
    /// Inline AWS provider (the pre-AWSNodeTemplate form).
    pub provider: Option<AwsNodeTemplateSpec>,
    /// Reference to an AWSNodeTemplate.
    pub provider_ref: Option<ProviderRef>,
    /// Empty-node TTL → WhenEmpty consolidation after this delay.
    pub ttl_seconds_after_empty: Option<u64>,
    /// Node lifetime → expireAfter.
    pub ttl_seconds_until_expired: Option<u64>,
    /// Resource limits.
    pub limits: Option<ProvisionerLimits>,
    /// Priority among provisioners.
    pub weight: Option<i32>,
    /// Consolidation switch.
    pub consolidation: Option<ConsolidationY>,
}

/// `providerRef`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ProviderRef {
    /// `karpenter.k8s.aws/v1alpha1`.
    pub api_version: Option<String>,
    /// `AWSNodeTemplate`.
    pub kind: Option<String>,
    /// Template name.
    pub name: String,
}

/// `limits`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ProvisionerLimits {
    /// Resource limits.
    #[serde(default)]
    pub resources: BTreeMap<String, Qty>,
}

/// `consolidation`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ConsolidationY {
    /// Whether underutilized nodes are consolidated.
    pub enabled: Option<bool>,
}

/// karpenter.k8s.aws/v1alpha1 AWSNodeTemplate spec (also the inline `provider`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct AwsNodeTemplateSpec {
    /// Set when the spec is written inline as a Provisioner's `provider`.
    pub api_version: Option<IgnoredAny>,
    /// Set when the spec is written inline as a Provisioner's `provider`.
    pub kind: Option<IgnoredAny>,
    /// Subnet tags (all must match); `aws-ids` lists ids.
    #[serde(default)]
    pub subnet_selector: BTreeMap<String, String>,
    /// Security group tags; `aws-ids` lists ids.
    #[serde(default)]
    pub security_group_selector: BTreeMap<String, String>,
    /// AMI tags; `aws-ids`, `aws::ids`, `aws::name`, `aws::owners` are special.
    #[serde(default)]
    pub ami_selector: BTreeMap<String, String>,
    /// AMI family.
    pub ami_family: Option<AmiFamily>,
    /// Instance profile.
    pub instance_profile: Option<String>,
    /// Rejected.
    pub context: Option<Unsupported<Context>>,
    /// Rejected.
    pub launch_template: Option<Unsupported<LaunchTemplate>>,
    /// EC2 tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// IMDS options.
    pub metadata_options: Option<MetadataOptionsY>,
    /// Block devices.
    #[serde(default)]
    pub block_device_mappings: Vec<BlockDeviceMappingY>,
    /// User data.
    pub user_data: Option<String>,
    /// CloudWatch detailed monitoring.
    pub detailed_monitoring: Option<bool>,
}
