//! Launching planned nodes with CreateFleet (type `instant`), falling back
//! past offerings EC2 has no capacity for, and cleaning up by claim.
//!
//! One launch:
//! 1. look for an instance already tagged with the claim (a retried launch
//!    must not create a second node; moto ignores client tokens, EC2 honours
//!    them, and we send one too);
//! 2. resolve the node class, ensure one launch template per architecture;
//! 3. send CreateFleet with overrides = ranked types × subnets of the planned
//!    zone (at most 60), skipping offerings in the unavailable cache;
//! 4. on capacity errors in the fleet's `Errors`, mark those offerings
//!    unavailable (the next plan reads a snapshot of it) and try again with what
//!    remains; report every failed offering.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::types::{
    CapacityReservationPreference, DefaultTargetCapacityType, Filter,
    FleetLaunchTemplateConfigRequest, FleetLaunchTemplateOverridesRequest,
    FleetLaunchTemplateSpecificationRequest, FleetOnDemandAllocationStrategy, FleetType,
    InstanceType as SdkInstanceType, OnDemandOptionsRequest, ResourceType, SpotAllocationStrategy,
    SpotOptionsRequest, Tag, TagSpecification, TargetCapacitySpecificationRequest,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::fleet::assign_instances;
use super::iam::{IamError, InstanceProfiles};
use super::resolve::{ResolveError, Resolved, Resolver};
use super::retry::{Ec2Error, RetryPolicy, with_retry};
use super::tags::{LABEL_CLAIM, OwnedInstance, TAG_CLAIM, TAG_CLUSTER, TAG_POOL};
use super::template::{TemplateSpec, Templates};
use super::userdata::{ClusterInfo, NodeBootstrap, bootstrap_labels, for_family};
use crate::catalog::node_labels::pool_labels;
use crate::catalog::{CapacityType, Catalog, UnavailableOfferings};
use crate::ir::{NodeClass, Pool, labels};
use crate::solver::PlannedNode;

/// EC2 accepts at most this many overrides across a fleet request (Karpenter's bound too).
pub const MAX_OVERRIDES: usize = 60;

/// Error codes in a fleet's `Errors` that mean "this offering, not now".
pub const CAPACITY_ERROR_CODES: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "InsufficientFreeAddressesInSubnet",
    "MaxSpotInstanceCountExceeded",
    "SpotMaxPriceTooLow",
    "UnfulfillableCapacity",
    "Unsupported",
];

/// What to launch.
#[derive(Clone, Copy)]
pub struct LaunchRequest<'a> {
    pub node: &'a PlannedNode,
    pub pool: &'a Pool,
    pub node_class: &'a NodeClass,
    /// Used for each type's architecture and list price; without it the
    /// architecture is inferred from the type name and the order is trusted.
    pub catalog: Option<&'a Catalog>,
}

/// An offering EC2 refused during a launch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedOffering {
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
    pub code: String,
    pub message: String,
}

/// A launched (or found) instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Launched {
    pub claim: String,
    pub instance_id: String,
    pub instance_type: String,
    pub zone: String,
    pub subnet_id: String,
    pub capacity_type: CapacityType,
    /// The AMI it boots (empty when EC2 did not say).
    pub image_id: String,
    /// True when an instance tagged with the claim already existed (nothing was launched).
    pub already_existed: bool,
    /// Offerings refused on the way (already marked unavailable).
    pub failed_offerings: Vec<FailedOffering>,
    /// `lowest-price`, `prioritized`, `price-capacity-optimized` or `capacity-optimized-prioritized`.
    pub allocation_strategy: String,
}

/// Every label the Node of launch `l` must carry: the well-known labels of
/// the offering EC2 actually launched (which may be a fallback type, not
/// the planned one), the pool's labels, `nodewright.io/pool` and
/// `nodewright.io/claim`. The user data carries only the pool's part; the
/// controller applies the rest when the Node registers.
///
/// Without a catalog, or for a type it does not know, the labels EC2's
/// answer alone gives (type, zone, capacity type, and the architecture
/// guessed from the type's name).
pub fn launched_labels(
    catalog: Option<&Catalog>,
    pool: &Pool,
    l: &Launched,
) -> BTreeMap<String, String> {
    let mut m = match catalog {
        Some(c) => c.launched_offering_labels(&l.instance_type, &l.zone, l.capacity_type),
        None => BTreeMap::new(),
    };
    for k in [labels::INSTANCE_TYPE, labels::INSTANCE_TYPE_BETA] {
        m.insert(k.to_string(), l.instance_type.clone());
    }
    for k in [labels::ZONE, labels::ZONE_BETA] {
        m.insert(k.to_string(), l.zone.clone());
    }
    m.insert(
        labels::CAPACITY_TYPE.to_string(),
        l.capacity_type.as_str().to_string(),
    );
    m.entry(labels::ARCH.to_string())
        .or_insert_with(|| arch_of(&l.instance_type, catalog));
    m.entry(labels::OS.to_string())
        .or_insert_with(|| "linux".to_string());
    m.extend(pool_labels(pool));
    m.insert(LABEL_CLAIM.to_string(), l.claim.clone());
    m
}

/// Why a launch failed.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
pub enum LaunchError {
    #[error(transparent)]
    #[diagnostic(code(nodewright::ec2::resolve))]
    Resolve(
        #[from]
        #[diagnostic_source]
        ResolveError,
    ),
    #[error(transparent)]
    #[diagnostic(code(nodewright::ec2::launch))]
    Api(
        #[from]
        #[diagnostic_source]
        Ec2Error,
    ),
    /// The node class's role could not be put into an instance profile.
    #[error(transparent)]
    #[diagnostic(code(nodewright::ec2::instance_profile))]
    Iam(
        #[from]
        #[diagnostic_source]
        IamError,
    ),
    /// Nothing left to try: every offering was refused, unavailable, or unusable.
    #[error(
        "claim `{claim}`: no offering could be launched in {zone} ({capacity_type}); {} refused by EC2{}",
        failed.len(),
        if skipped.is_empty() { String::new() } else { format!("; not tried: {}", skipped.join(", ")) }
    )]
    #[diagnostic(
        code(nodewright::ec2::insufficient_capacity),
        help(
            "the refused offerings are marked unavailable for a while; the next plan avoids them"
        )
    )]
    NoCapacity {
        claim: String,
        zone: String,
        capacity_type: &'static str,
        failed: Vec<FailedOffering>,
        /// Types dropped before asking EC2 (no AMI for their architecture, no subnet, cached unavailable).
        skipped: Vec<String>,
    },
}

/// Turns planned nodes into instances and cleans them up.
pub trait Launcher: Send + Sync {
    /// Launches `req` (idempotent per claim name).
    fn launch(
        &self,
        req: LaunchRequest<'_>,
    ) -> impl Future<Output = Result<Launched, LaunchError>> + Send;
    /// Terminates the instances of a claim; returns their ids (empty if none).
    fn terminate(&self, claim: &str) -> impl Future<Output = Result<Vec<String>, Ec2Error>> + Send;
    /// Every non-terminated instance this cluster owns, by tag.
    fn list_owned(&self) -> impl Future<Output = Result<Vec<OwnedInstance>, Ec2Error>> + Send;
}

/// The EC2 launcher.
pub struct Ec2Launcher {
    client: aws_sdk_ec2::Client,
    cluster: ClusterInfo,
    /// Node-class resolution (cached).
    pub resolver: Resolver,
    /// Launch templates (created once).
    pub templates: Templates,
    unavailable: Arc<UnavailableOfferings>,
    retry: RetryPolicy,
    /// Where node-class roles become instance profiles; None (offline CLI
    /// paths, tests without IAM) uses the role's name as the profile name.
    instance_profiles: Option<Arc<InstanceProfiles>>,
}

/// The allocation strategy for a capacity type, given whether our order must be kept.
pub fn allocation_strategy(ct: CapacityType, prioritized: bool) -> &'static str {
    match (ct, prioritized) {
        (CapacityType::OnDemand, false) => "lowest-price",
        (CapacityType::OnDemand, true) => "prioritized",
        (CapacityType::Spot, false) => "price-capacity-optimized",
        (CapacityType::Spot, true) => "capacity-optimized-prioritized",
    }
}

/// Whether the ranked options differ from EC2's own price order, i.e. cost
/// rules or scores reordered them, so EC2 must follow our priorities.
///
/// With a catalog the list prices of the offerings are compared; without
/// one, the options' own prices (after cost rules) are.
pub fn needs_priority(node: &PlannedNode, catalog: Option<&Catalog>) -> bool {
    let list_price = |t: &str| -> Option<f64> {
        let c = catalog?;
        let ti = c.types.iter().position(|x| x.name == t)?;
        let zi = c.zones.iter().position(|z| z.name == node.zone)?;
        c.offerings
            .iter()
            .find(|o| {
                o.type_index as usize == ti
                    && o.zone_index as usize == zi
                    && o.capacity_type == node.capacity_type
            })
            .and_then(|o| o.price)
    };
    let prices: Vec<f64> = node
        .instance_type_options
        .iter()
        .map(|o| list_price(&o.instance_type).unwrap_or(o.price_per_hour))
        .collect();
    prices.windows(2).any(|w| w[1] < w[0])
}

/// The architecture of an instance type: from the catalog, else from its name
/// (Graviton families carry a `g` after the generation: m6g, c7gn, im4gn, a1).
pub fn arch_of(instance_type: &str, catalog: Option<&Catalog>) -> String {
    if let Some(t) = catalog.and_then(|c| c.instance_type(instance_type)) {
        return t.arch.clone();
    }
    let family = instance_type.split('.').next().unwrap_or("");
    if family == "a1" {
        return "arm64".into();
    }
    let after_digits = family
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .trim_start_matches(|c: char| c.is_ascii_digit());
    if after_digits.contains('g') {
        "arm64".into()
    } else {
        "amd64".into()
    }
}

/// A client token for one CreateFleet request: the claim's identity plus the
/// overrides asked for (EC2 rejects a reused token with different parameters).
pub fn client_token(cluster: &str, claim: &str, overrides: &[(String, String)]) -> String {
    let mut h = Sha256::new();
    h.update(cluster.as_bytes());
    h.update([0]);
    h.update(claim.as_bytes());
    for (t, s) in overrides {
        h.update([0]);
        h.update(t.as_bytes());
        h.update([1]);
        h.update(s.as_bytes());
    }
    format!("nw-{}", &hex::encode(h.finalize())[..56])
}

/// One (type, subnet) override with its rank (0 = most preferred).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedOverride<'a> {
    pub rank: usize,
    pub instance_type: &'a str,
    pub subnet: &'a str,
}

/// The overrides of one CreateFleet request, grouped by architecture (one
/// launch template each): ranked types × subnets, best first, at most `max`.
///
/// Groups come in the order their best type ranks, so the very first
/// override is the top-ranked type in the subnet with most free IPs. EC2
/// uses the priorities; moto simply takes the first override.
pub fn plan_overrides<'a>(
    ranked: &[(usize, &'a str, &'a str)],
    subnets: &[&'a str],
    max: usize,
) -> Vec<(&'a str, Vec<PlannedOverride<'a>>)> {
    let mut groups: Vec<(&'a str, Vec<PlannedOverride<'a>>)> = Vec::new();
    let mut n = 0;
    for &(rank, instance_type, arch) in ranked {
        for &subnet in subnets {
            if n >= max {
                return groups;
            }
            let o = PlannedOverride {
                rank,
                instance_type,
                subnet,
            };
            match groups.iter_mut().find(|(a, _)| *a == arch) {
                Some((_, v)) => v.push(o),
                None => groups.push((arch, vec![o])),
            }
            n += 1;
        }
    }
    groups
}

struct Candidate {
    instance_type: String,
    arch: String,
    rank: usize,
}

impl Ec2Launcher {
    /// A launcher for `cluster`; `unavailable` is shared with the controller,
    /// which hands each plan a snapshot of it.
    pub fn new(
        client: aws_sdk_ec2::Client,
        cluster: ClusterInfo,
        unavailable: Arc<UnavailableOfferings>,
    ) -> Ec2Launcher {
        Ec2Launcher {
            resolver: Resolver::new(client.clone(), Duration::from_secs(300)),
            templates: Templates::new(client.clone(), &cluster.name),
            client,
            cluster,
            unavailable,
            retry: RetryPolicy::default(),
            instance_profiles: None,
        }
    }

    /// Puts each node class's `role` into an instance profile nodewright
    /// makes (EC2 attaches profiles, not roles) before launching with it.
    pub fn with_instance_profiles(mut self, profiles: Arc<InstanceProfiles>) -> Self {
        self.instance_profiles = Some(profiles);
        self
    }

    /// The instance profiles this launcher makes, for garbage collection.
    pub fn instance_profiles(&self) -> Option<&Arc<InstanceProfiles>> {
        self.instance_profiles.as_ref()
    }

    /// The instance profile a node of `node_class` launches with, without
    /// asking IAM: its `instance-profile` as written, else the profile made
    /// for its `role` (else, without [`InstanceProfiles`], the role's name).
    fn profile_name(&self, node_class: &NodeClass) -> Option<String> {
        if let Some(p) = &node_class.instance_profile {
            return Some(p.clone());
        }
        let role = node_class.role.as_deref()?;
        Some(match &self.instance_profiles {
            Some(ip) => ip.name_for(role),
            None => role.to_string(),
        })
    }

    /// [`Self::profile_name`], making sure first that the profile for the
    /// node class's `role` exists and holds that role.
    async fn ensure_profile(&self, node_class: &NodeClass) -> Result<Option<String>, LaunchError> {
        match (
            &node_class.instance_profile,
            &node_class.role,
            &self.instance_profiles,
        ) {
            (None, Some(role), Some(ip)) => Ok(Some(ip.ensure(role).await?)),
            _ => Ok(self.profile_name(node_class)),
        }
    }

    /// Replaces the retry policy (tests use a short one).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The unavailable-offerings cache this launcher writes.
    pub fn unavailable(&self) -> &Arc<UnavailableOfferings> {
        &self.unavailable
    }

    fn owned_filter(&self) -> Filter {
        Filter::builder()
            .name(format!("tag:{TAG_CLUSTER}"))
            .values(&self.cluster.name)
            .build()
    }

    async fn describe(&self, extra: Vec<Filter>) -> Result<Vec<OwnedInstance>, Ec2Error> {
        let mut filters = vec![
            self.owned_filter(),
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(
                    ["pending", "running", "stopping", "stopped", "shutting-down"]
                        .map(String::from)
                        .to_vec(),
                ))
                .build(),
        ];
        filters.extend(extra);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let resp = with_retry(&self.retry, "DescribeInstances", || {
                self.client
                    .describe_instances()
                    .set_filters(Some(filters.clone()))
                    .set_next_token(token.clone())
                    .send()
            })
            .await?;
            for r in resp.reservations() {
                for i in r.instances() {
                    let tag = |k: &str| {
                        i.tags()
                            .iter()
                            .find(|t| t.key() == Some(k))
                            .and_then(|t| t.value())
                            .map(str::to_string)
                    };
                    out.push(OwnedInstance {
                        instance_id: i.instance_id().unwrap_or_default().to_string(),
                        claim: tag(TAG_CLAIM),
                        pool: tag(TAG_POOL),
                        instance_type: i
                            .instance_type()
                            .map(|t| t.as_str().to_string())
                            .unwrap_or_default(),
                        zone: i
                            .placement()
                            .and_then(|p| p.availability_zone())
                            .unwrap_or_default()
                            .to_string(),
                        image_id: i.image_id().unwrap_or_default().to_string(),
                        state: i
                            .state()
                            .and_then(|s| s.name())
                            .map(|n| n.as_str().to_string())
                            .unwrap_or_default(),
                        launched_at: i
                            .launch_time()
                            .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
                    });
                }
            }
            token = resp.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        Ok(out)
    }

    /// The names of the instance profiles this cluster's instances (any
    /// state but terminated) run with. IAM deletes a profile even while an
    /// instance uses it, cutting that node's credentials, so garbage
    /// collection keeps these.
    pub async fn instance_profiles_in_use(&self) -> Result<BTreeSet<String>, Ec2Error> {
        let filters = vec![
            self.owned_filter(),
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(
                    ["pending", "running", "stopping", "stopped", "shutting-down"]
                        .map(String::from)
                        .to_vec(),
                ))
                .build(),
        ];
        let mut out = BTreeSet::new();
        let mut token: Option<String> = None;
        loop {
            let resp = with_retry(&self.retry, "DescribeInstances", || {
                self.client
                    .describe_instances()
                    .set_filters(Some(filters.clone()))
                    .set_next_token(token.clone())
                    .send()
            })
            .await?;
            for i in resp.reservations().iter().flat_map(|r| r.instances()) {
                // `arn:aws:iam::ACCOUNT:instance-profile/PATH/NAME`: the name is the last segment.
                if let Some(name) = i
                    .iam_instance_profile()
                    .and_then(|p| p.arn())
                    .and_then(|a| a.rsplit('/').next())
                {
                    out.insert(name.to_string());
                }
            }
            token = resp.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    fn claim_filter(claim: &str) -> Filter {
        Filter::builder()
            .name(format!("tag:{TAG_CLAIM}"))
            .values(claim)
            .build()
    }

    fn tags(&self, pool: &Pool, node_class: &NodeClass) -> BTreeMap<String, String> {
        let mut t = node_class.tags.clone();
        t.extend(pool.tags.clone());
        t.insert(TAG_CLUSTER.into(), self.cluster.name.clone());
        t.insert(
            format!("kubernetes.io/cluster/{}", self.cluster.name),
            "owned".into(),
        );
        t.insert(TAG_POOL.into(), pool.name.clone());
        t.insert(labels::NODEPOOL.into(), pool.name.clone());
        t.insert(labels::EC2NODECLASS.into(), node_class.name.clone());
        t
    }

    /// The user data of a node of `pool`: only what every fallback type shares.
    fn user_data(
        &self,
        resolved: &Resolved,
        pool: &Pool,
        node_class: &NodeClass,
        planned_labels: &BTreeMap<String, String>,
        taints: &[crate::ir::Taint],
        startup_taints: &[crate::ir::Taint],
    ) -> String {
        let bootstrap = NodeBootstrap {
            labels: bootstrap_labels(planned_labels, pool),
            taints: taints.to_vec(),
            startup_taints: startup_taints.to_vec(),
            kubelet: node_class.kubelet.overridden_by(&pool.kubelet),
            instance_store_raid0: node_class
                .instance_store_policy
                .as_deref()
                .is_some_and(|p| p.eq_ignore_ascii_case("RAID0")),
        };
        for_family(
            &resolved.ami_family,
            &self.cluster,
            &bootstrap,
            node_class.user_data.as_deref(),
        )
    }

    /// The names of the launch templates a node of `pool` would launch with
    /// now (one per architecture the node class has an AMI for), for
    /// garbage collection to keep. A planned node's template depends only on
    /// its pool and node class (`userdata::bootstrap_labels`), so this is
    /// the same name `launch` ensures for it.
    pub async fn template_names(
        &self,
        pool: &Pool,
        node_class: &NodeClass,
    ) -> Result<Vec<String>, LaunchError> {
        let resolved = self.resolver.resolve(node_class).await?;
        let user_data = self.user_data(
            &resolved,
            pool,
            node_class,
            &BTreeMap::new(),
            &pool.taints,
            &pool.startup_taints,
        );
        let sg_ids: Vec<String> = resolved
            .security_groups
            .iter()
            .map(|g| g.id.clone())
            .collect();
        let tags = self.tags(pool, node_class);
        let profile = self.profile_name(node_class);
        Ok(resolved
            .amis
            .iter()
            .map(|(arch, ami)| {
                TemplateSpec::new(
                    node_class,
                    &ami.id,
                    arch,
                    user_data.clone(),
                    sg_ids.clone(),
                    tags.clone(),
                )
                .with_instance_profile(profile.clone())
                .name()
            })
            .collect())
    }

    /// Terminates instances by id (garbage collection of instances no claim
    /// owns); returns the ids asked for.
    pub async fn terminate_instances(&self, ids: &[String]) -> Result<Vec<String>, Ec2Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        with_retry(&self.retry, "TerminateInstances", || {
            self.client
                .terminate_instances()
                .set_instance_ids(Some(ids.to_vec()))
                .send()
        })
        .await?;
        Ok(ids.to_vec())
    }

    /// One launch of `reqs`, identical launch requests for different claims
    /// (see [`super::fleet::same_launch`]): one CreateFleet round asks for every claim
    /// still without an instance. The outer error is one the whole group
    /// shares (resolution, IAM, an API error before anything launched); the
    /// inner results are per claim, in the order of `reqs`.
    async fn launch_inner(
        &self,
        reqs: &[LaunchRequest<'_>],
        look_up: bool,
    ) -> Result<Vec<Result<Launched, LaunchError>>, LaunchError> {
        let Some(first) = reqs.first() else {
            return Ok(Vec::new());
        };
        let node = first.node;
        let ct = node.capacity_type;
        let existing = if look_up && reqs.len() == 1 {
            self.describe(vec![Self::claim_filter(&node.name)])
                .await?
                .into_iter()
                .find(|i| matches!(i.state.as_str(), "pending" | "running"))
        } else {
            None
        };
        if let Some(found) = existing {
            tracing::info!(claim = %node.name, instance = %found.instance_id, "claim already launched");
            return Ok(vec![Ok(Launched {
                claim: node.name.clone(),
                instance_id: found.instance_id,
                instance_type: found.instance_type,
                zone: found.zone,
                subnet_id: String::new(),
                capacity_type: ct,
                image_id: found.image_id,
                already_existed: true,
                failed_offerings: Vec::new(),
                allocation_strategy: String::new(),
            })]);
        }
        let resolved = self.resolver.resolve(first.node_class).await?;
        let prioritized = needs_priority(node, first.catalog);
        let strategy = allocation_strategy(ct, prioritized);
        let subnets: Vec<_> = resolved.subnets_in(&node.zone).cloned().collect();
        let mut skipped = Vec::new();
        let mut candidates = Vec::new();
        for (rank, o) in node.instance_type_options.iter().enumerate() {
            let arch = arch_of(&o.instance_type, first.catalog);
            if !resolved.amis.contains_key(&arch) {
                skipped.push(format!("{} (no {arch} AMI)", o.instance_type));
            } else if subnets.is_empty() {
                skipped.push(format!("{} (no subnet in {})", o.instance_type, node.zone));
            } else {
                candidates.push(Candidate {
                    instance_type: o.instance_type.to_string(),
                    arch,
                    rank,
                });
            }
        }
        let tags = self.tags(first.pool, first.node_class);
        let profile = self.ensure_profile(first.node_class).await?;
        let user_data = self.user_data(
            &resolved,
            first.pool,
            first.node_class,
            &node.labels,
            &node.taints,
            &node.startup_taints,
        );
        let claims: Vec<&str> = reqs.iter().map(|r| r.node.name.as_str()).collect();
        let mut got: Vec<Option<Launched>> = vec![None; reqs.len()];
        let mut failed: Vec<FailedOffering> = Vec::new();
        let mut fatal: Option<LaunchError> = None;
        // Each round either fills every claim, or removes at least one
        // offering (refused ones are marked unavailable), or stops: this ends.
        for _round in 0..=candidates.len() {
            let pending: Vec<usize> = (0..reqs.len()).filter(|&i| got[i].is_none()).collect();
            if pending.is_empty() {
                break;
            }
            let remaining: Vec<&Candidate> = candidates
                .iter()
                .filter(|c| !self.unavailable.contains(&c.instance_type, &node.zone, ct))
                .collect();
            if remaining.is_empty() {
                break;
            }
            let names: Vec<&str> = pending.iter().map(|&i| claims[i]).collect();
            let answer = self
                .create_fleet(
                    first,
                    &resolved,
                    &remaining,
                    &subnets,
                    &user_data,
                    profile.as_deref(),
                    &tags,
                    strategy,
                    &names,
                )
                .await;
            let (instances, errs) = match answer {
                Ok(a) => a,
                // Nothing launched yet: the whole group failed the same way.
                Err(e) if got.iter().all(Option::is_none) => return Err(e),
                Err(e) => {
                    fatal = Some(e);
                    break;
                }
            };
            let assigned = assign_instances(&names, instances);
            for (name, l) in assigned.launched {
                if let Some(slot) = claims.iter().position(|c| *c == name) {
                    got[slot] = Some(Launched {
                        claim: name.to_string(),
                        ..l
                    });
                }
            }
            if !assigned.extra.is_empty() {
                // More than asked for (never expected): no claim will own
                // them, so they go now rather than after the orphan grace.
                let ids: Vec<String> = assigned.extra.into_iter().map(|l| l.instance_id).collect();
                tracing::warn!(instances = ?ids, "CreateFleet launched more instances than asked for; terminating the extra");
                if let Err(e) = self.terminate_instances(&ids).await {
                    tracing::error!("terminating extra instances {ids:?}: {e}");
                }
            }
            let refused = !errs.is_empty();
            failed.extend(errs);
            if !refused {
                break;
            }
        }
        // A fleet for several claims carries none of their names: each
        // instance gets its claim's tag now (one CreateTags each, as the
        // values differ), all at once.
        let mut tag_errors: Vec<Option<Ec2Error>> = vec![None; reqs.len()];
        if reqs.len() > 1 {
            let tagging = got.iter().enumerate().filter_map(|(i, l)| {
                let l = l.as_ref()?;
                Some(async move { (i, self.tag_claim(&l.instance_id, &l.claim).await) })
            });
            let mut untagged = Vec::new();
            for (i, r) in futures_util::future::join_all(tagging).await {
                if let Err(e) = r {
                    if let Some(l) = &got[i] {
                        untagged.push(l.instance_id.clone());
                    }
                    tag_errors[i] = Some(e);
                }
            }
            if !untagged.is_empty() {
                // An instance without its claim's tag is one nothing finds
                // by its claim: it goes now (the claim fails and is deleted).
                if let Err(e) = self.terminate_instances(&untagged).await {
                    tracing::error!("terminating untagged instances {untagged:?}: {e}");
                }
            }
        }
        if got.iter().any(Option::is_none) {
            for c in &candidates {
                if self.unavailable.contains(&c.instance_type, &node.zone, ct)
                    && !failed.iter().any(|f| f.instance_type == c.instance_type)
                {
                    skipped.push(format!("{} (recently unavailable)", c.instance_type));
                }
            }
        }
        Ok(got
            .into_iter()
            .zip(tag_errors)
            .zip(&claims)
            .map(|((l, tag_error), claim)| match (l, tag_error) {
                (Some(_), Some(e)) => Err(LaunchError::Api(e)),
                (Some(mut l), None) => {
                    l.failed_offerings = failed.clone();
                    Ok(l)
                }
                (None, _) => Err(fatal.clone().unwrap_or_else(|| LaunchError::NoCapacity {
                    claim: claim.to_string(),
                    zone: node.zone.clone(),
                    capacity_type: ct.as_str(),
                    failed: failed.clone(),
                    skipped: skipped.clone(),
                })),
            })
            .collect())
    }

    /// Tags one instance of a several-claim fleet with its claim.
    async fn tag_claim(&self, instance_id: &str, claim: &str) -> Result<(), Ec2Error> {
        with_retry(&self.retry, "CreateTags", || {
            self.client
                .create_tags()
                .resources(instance_id)
                .tags(Tag::builder().key(TAG_CLAIM).value(claim).build())
                .tags(Tag::builder().key("Name").value(claim).build())
                .send()
        })
        .await?;
        Ok(())
    }

    /// One CreateFleet for `claims` (total target capacity: one per claim):
    /// the instances it launched (claim left empty) and the offerings it
    /// refused (marked unavailable). An error when it launched nothing and
    /// failed for another reason than capacity.
    #[allow(
        clippy::too_many_arguments,
        reason = "one CreateFleet call's inputs, each used once; a struct would only rename them"
    )]
    async fn create_fleet(
        &self,
        req: &LaunchRequest<'_>,
        resolved: &Resolved,
        remaining: &[&Candidate],
        subnets: &[super::resolve::ResolvedSubnet],
        user_data: &str,
        profile: Option<&str>,
        tags: &BTreeMap<String, String>,
        strategy: &str,
        claims: &[&str],
    ) -> Result<(Vec<Launched>, Vec<FailedOffering>), LaunchError> {
        let node = req.node;
        let ct = node.capacity_type;
        let sg_ids: Vec<String> = resolved
            .security_groups
            .iter()
            .map(|g| g.id.clone())
            .collect();
        // One template per architecture, in the order the top-ranked type needs them.
        let typed: Vec<(usize, &str, &str)> = remaining
            .iter()
            .map(|c| (c.rank, c.instance_type.as_str(), c.arch.as_str()))
            .collect();
        let subnet_ids: Vec<&str> = subnets.iter().map(|s| s.id.as_str()).collect();
        let mut configs: Vec<(String, Vec<FleetLaunchTemplateOverridesRequest>)> = Vec::new();
        let mut asked: Vec<(String, String)> = Vec::new();
        for (arch, overrides) in plan_overrides(&typed, &subnet_ids, MAX_OVERRIDES) {
            let ami = &resolved.amis[arch];
            let spec = TemplateSpec::new(
                req.node_class,
                &ami.id,
                arch,
                user_data.to_string(),
                sg_ids.clone(),
                tags.clone(),
            )
            .with_instance_profile(profile.map(str::to_string));
            let t = self.templates.ensure(&spec).await?;
            let mut reqs = Vec::new();
            for o in overrides {
                let mut b = FleetLaunchTemplateOverridesRequest::builder()
                    .instance_type(SdkInstanceType::from(o.instance_type))
                    .subnet_id(o.subnet);
                if strategy.contains("prioritized") {
                    b = b.priority(o.rank as f64);
                }
                reqs.push(b.build());
                asked.push((o.instance_type.to_string(), o.subnet.to_string()));
            }
            configs.push((t.id, reqs));
        }
        let mut instance_tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        // One claim: its tag goes on at launch. Several: the fleet carries
        // only what they share, and `tag_claim` names each instance after.
        if let [claim] = claims {
            instance_tags.push(Tag::builder().key(TAG_CLAIM).value(*claim).build());
            instance_tags.push(Tag::builder().key("Name").value(*claim).build());
        }
        let token = client_token(&self.cluster.name, &claims.join(","), &asked);
        let ltc: Vec<FleetLaunchTemplateConfigRequest> = configs
            .into_iter()
            .map(|(id, overrides)| {
                FleetLaunchTemplateConfigRequest::builder()
                    .launch_template_specification(
                        FleetLaunchTemplateSpecificationRequest::builder()
                            .launch_template_id(id)
                            .version("$Latest")
                            .build(),
                    )
                    .set_overrides(Some(overrides))
                    .build()
            })
            .collect();
        let target = TargetCapacitySpecificationRequest::builder()
            .total_target_capacity(i32::try_from(claims.len()).unwrap_or(i32::MAX))
            .default_target_capacity_type(match ct {
                CapacityType::OnDemand => DefaultTargetCapacityType::OnDemand,
                CapacityType::Spot => DefaultTargetCapacityType::Spot,
            })
            .build();
        let resp = with_retry(&self.retry, "CreateFleet", || {
            let mut call = self
                .client
                .create_fleet()
                .r#type(FleetType::Instant)
                .client_token(&token)
                .target_capacity_specification(target.clone())
                .set_launch_template_configs(Some(ltc.clone()))
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::Instance)
                        .set_tags(Some(instance_tags.clone()))
                        .build(),
                );
            call = match ct {
                CapacityType::OnDemand => call.on_demand_options(
                    OnDemandOptionsRequest::builder()
                        .allocation_strategy(FleetOnDemandAllocationStrategy::from(strategy))
                        .single_instance_type(true)
                        .capacity_reservation_options(
                            aws_sdk_ec2::types::CapacityReservationOptionsRequest::builder()
                                .usage_strategy(
                                    aws_sdk_ec2::types::FleetCapacityReservationUsageStrategy::UseCapacityReservationsFirst,
                                )
                                .build(),
                        )
                        .build(),
                ),
                CapacityType::Spot => call.spot_options(
                    SpotOptionsRequest::builder()
                        .allocation_strategy(SpotAllocationStrategy::from(strategy))
                        .single_instance_type(true)
                        .build(),
                ),
            };
            call.send()
        })
        .await?;
        let _ = CapacityReservationPreference::Open;
        let zone_of = |subnet: &str| -> String {
            subnets
                .iter()
                .find(|s| s.id == subnet)
                .map(|s| s.zone.clone())
                .unwrap_or_else(|| node.zone.clone())
        };
        let mut errs = Vec::new();
        let mut fatal: Option<Ec2Error> = None;
        for e in resp.errors() {
            let code = e.error_code().unwrap_or("Unknown").to_string();
            let message = e.error_message().unwrap_or("").to_string();
            let ov = e
                .launch_template_and_overrides()
                .and_then(|l| l.overrides());
            let itype = ov
                .and_then(|o| o.instance_type())
                .map(|t| t.as_str().to_string());
            let zone = ov
                .and_then(|o| o.subnet_id())
                .map(zone_of)
                .unwrap_or_else(|| node.zone.clone());
            if CAPACITY_ERROR_CODES.contains(&code.as_str()) {
                if let Some(t) = itype {
                    self.unavailable.mark(&t, &zone, ct, &code);
                    if !errs
                        .iter()
                        .any(|f: &FailedOffering| f.instance_type == t && f.zone == zone)
                    {
                        errs.push(FailedOffering {
                            instance_type: t,
                            zone,
                            capacity_type: ct,
                            code,
                            message,
                        });
                    }
                }
            } else if fatal.is_none() {
                fatal = Some(Ec2Error::Api {
                    operation: "CreateFleet".into(),
                    hint: super::retry::hint_for(&code),
                    code,
                    message,
                    attempts: 1,
                });
            }
        }
        let mut launched = Vec::new();
        for inst in resp.instances() {
            let ov = inst
                .launch_template_and_overrides()
                .and_then(|l| l.overrides());
            let subnet = ov
                .and_then(|o| o.subnet_id())
                .unwrap_or_default()
                .to_string();
            let instance_type = inst
                .instance_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default();
            let image_id = resolved
                .amis
                .get(&arch_of(&instance_type, req.catalog))
                .map(|a| a.id.clone())
                .unwrap_or_default();
            for id in inst.instance_ids() {
                launched.push(Launched {
                    claim: String::new(),
                    instance_id: id.clone(),
                    instance_type: instance_type.clone(),
                    zone: zone_of(&subnet),
                    subnet_id: subnet.clone(),
                    capacity_type: ct,
                    image_id: image_id.clone(),
                    already_existed: false,
                    failed_offerings: Vec::new(),
                    allocation_strategy: strategy.to_string(),
                });
            }
        }
        if launched.is_empty()
            && let Some(f) = fatal
        {
            return Err(f.into());
        }
        Ok((launched, errs))
    }
}

impl Ec2Launcher {
    /// Launches a claim written moments ago in this same pass, skipping the
    /// look-up of an instance already tagged with its name: none can exist
    /// (the name is new), and the look-up is a DescribeInstances per node.
    /// CreateFleet's client token still guards a retried request.
    pub async fn launch_new(&self, req: LaunchRequest<'_>) -> Result<Launched, LaunchError> {
        one(self.launch_with(&[req], false).await, &req)
    }

    /// Launches claims written moments ago in this same pass whose launch
    /// requests are identical ([`super::fleet::launch_groups`]) with one CreateFleet of
    /// total target capacity `reqs.len()`, as Karpenter's fleet batcher
    /// does: one EC2 call (and one fleet for EC2 to build) instead of one
    /// per node. The instances are handed to the claims in order
    /// ([`super::fleet::assign_instances`]) and each is tagged with its claim
    /// (CreateTags) before this returns. A claim left without an instance
    /// (EC2 launched fewer) fails alone, with the offerings EC2 refused; an
    /// instance whose tagging failed is terminated and its claim fails.
    /// One result per request, in order. A crash between CreateFleet and
    /// the tagging leaves instances with the cluster's tag and no claim's:
    /// garbage collection terminates them after its grace (see
    /// docs/controller.md).
    pub async fn launch_new_group(
        &self,
        reqs: &[LaunchRequest<'_>],
    ) -> Vec<Result<Launched, LaunchError>> {
        self.launch_with(reqs, false).await
    }

    async fn launch_with(
        &self,
        reqs: &[LaunchRequest<'_>],
        look_up: bool,
    ) -> Vec<Result<Launched, LaunchError>> {
        let mut retried = false;
        loop {
            let r = self.launch_inner(reqs, look_up).await;
            let code = match &r {
                Err(LaunchError::Api(e)) => e.code().map(str::to_string),
                _ => None,
            };
            let Some(code) = code else {
                return spread(r, reqs.len());
            };
            // A template or resource deleted behind our back: forget what we
            // remember so the next attempt re-resolves and recreates. A missing
            // template is ours to recreate, so that case is retried once here.
            let stale = [
                "InvalidLaunchTemplate",
                "InvalidSubnetID",
                "InvalidAMIID",
                "InvalidGroup",
            ]
            .iter()
            .any(|p| code.starts_with(p));
            if !stale {
                return spread(r, reqs.len());
            }
            self.templates.invalidate();
            self.resolver.invalidate();
            if retried || !code.starts_with("InvalidLaunchTemplate") {
                return spread(r, reqs.len());
            }
            let claims: Vec<&str> = reqs.iter().map(|r| r.node.name.as_str()).collect();
            tracing::warn!(claims = ?claims, %code, "launch template vanished; recreating it");
            retried = true;
        }
    }
}

/// Per-claim results from a group's: an error the whole group shares goes to each claim.
fn spread(
    r: Result<Vec<Result<Launched, LaunchError>>, LaunchError>,
    n: usize,
) -> Vec<Result<Launched, LaunchError>> {
    match r {
        Ok(v) => v,
        Err(e) => vec![Err(e); n],
    }
}

/// The one result of a one-request launch.
fn one(
    results: Vec<Result<Launched, LaunchError>>,
    req: &LaunchRequest<'_>,
) -> Result<Launched, LaunchError> {
    results.into_iter().next().unwrap_or_else(|| {
        Err(LaunchError::NoCapacity {
            claim: req.node.name.clone(),
            zone: req.node.zone.clone(),
            capacity_type: req.node.capacity_type.as_str(),
            failed: Vec::new(),
            skipped: Vec::new(),
        })
    })
}

impl Launcher for Ec2Launcher {
    async fn launch(&self, req: LaunchRequest<'_>) -> Result<Launched, LaunchError> {
        one(self.launch_with(&[req], true).await, &req)
    }

    async fn terminate(&self, claim: &str) -> Result<Vec<String>, Ec2Error> {
        let ids: Vec<String> = self
            .describe(vec![Self::claim_filter(claim)])
            .await?
            .into_iter()
            .filter(|i| i.state != "shutting-down")
            .map(|i| i.instance_id)
            .collect();
        if ids.is_empty() {
            return Ok(ids);
        }
        with_retry(&self.retry, "TerminateInstances", || {
            self.client
                .terminate_instances()
                .set_instance_ids(Some(ids.clone()))
                .send()
        })
        .await?;
        Ok(ids)
    }

    async fn list_owned(&self) -> Result<Vec<OwnedInstance>, Ec2Error> {
        self.describe(Vec::new()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::InstanceOption;

    #[test]
    fn arch_from_names() {
        for (t, a) in [
            ("m5.large", "amd64"),
            ("m6g.large", "arm64"),
            ("c7gn.xlarge", "arm64"),
            ("im4gn.large", "arm64"),
            ("is4gen.large", "arm64"),
            ("a1.medium", "arm64"),
            ("g5g.xlarge", "arm64"),
            ("g5.xlarge", "amd64"),
            ("g4dn.xlarge", "amd64"),
            ("p4d.24xlarge", "amd64"),
            ("inf2.xlarge", "amd64"),
        ] {
            assert_eq!(arch_of(t, None), a, "{t}");
        }
    }

    #[test]
    fn strategies() {
        assert_eq!(
            allocation_strategy(CapacityType::OnDemand, false),
            "lowest-price"
        );
        assert_eq!(
            allocation_strategy(CapacityType::OnDemand, true),
            "prioritized"
        );
        assert_eq!(
            allocation_strategy(CapacityType::Spot, false),
            "price-capacity-optimized"
        );
        assert_eq!(
            allocation_strategy(CapacityType::Spot, true),
            "capacity-optimized-prioritized"
        );
    }

    fn node(prices: &[f64]) -> PlannedNode {
        PlannedNode {
            name: "general-0".into(),
            pool: "general".into(),
            node_class: "default".into(),
            zone: "us-east-1a".into(),
            capacity_type: CapacityType::OnDemand,
            instance_type: "m5.large".into(),
            price_per_hour: prices[0],
            instance_type_options: prices
                .iter()
                .enumerate()
                .map(|(i, p)| InstanceOption {
                    instance_type: format!("t{i}.large").into(),
                    price_per_hour: *p,
                })
                .collect(),
            pods: vec![],
            requested: Default::default(),
            allocatable: Default::default(),
            labels: Default::default(),
            taints: vec![],
            startup_taints: vec![],
        }
    }

    #[test]
    fn priority_only_when_reordered() {
        assert!(!needs_priority(&node(&[0.1, 0.2, 0.2]), None));
        assert!(needs_priority(&node(&[0.3, 0.2]), None));
    }

    proptest::proptest! {
        #[test]
        fn overrides_are_bounded_ranked_and_unique(
            n_types in 0usize..40,
            n_subnets in 0usize..6,
            arm_mask in proptest::collection::vec(proptest::bool::ANY, 40),
            max in 1usize..80,
        ) {
            let names: Vec<String> = (0..n_types).map(|i| format!("t{i}.large")).collect();
            let ranked: Vec<(usize, &str, &str)> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (i, n.as_str(), if arm_mask[i] { "arm64" } else { "amd64" }))
                .collect();
            let subnet_names: Vec<String> = (0..n_subnets).map(|i| format!("subnet-{i}")).collect();
            let subnets: Vec<&str> = subnet_names.iter().map(String::as_str).collect();
            let groups = plan_overrides(&ranked, &subnets, max);
            let all: Vec<PlannedOverride> = groups.iter().flat_map(|(_, v)| v.iter().copied()).collect();
            proptest::prop_assert_eq!(all.len(), (n_types * n_subnets).min(max));
            let mut seen = std::collections::HashSet::new();
            for o in &all {
                proptest::prop_assert!(seen.insert((o.instance_type, o.subnet)));
            }
            for (arch, v) in &groups {
                proptest::prop_assert!(!v.is_empty());
                for w in v.windows(2) {
                    proptest::prop_assert!(w[0].rank <= w[1].rank);
                }
                for o in v {
                    proptest::prop_assert_eq!(*arch, ranked[o.rank].2);
                }
            }
            // The overall best type is first, and the cap keeps the best ranks.
            if let Some(first) = all.first() {
                proptest::prop_assert_eq!(first.rank, 0);
                proptest::prop_assert_eq!(first.subnet, subnets[0]);
            }
            let worst_kept = all.iter().map(|o| o.rank).max().unwrap_or(0);
            proptest::prop_assert!(all.len() < max || worst_kept <= max.div_ceil(n_subnets.max(1)));
        }
    }

    #[test]
    fn no_capacity_names_what_was_skipped() {
        let e = LaunchError::NoCapacity {
            claim: "general-0".into(),
            zone: "us-east-1c".into(),
            capacity_type: "spot",
            failed: vec![],
            skipped: vec!["m6g.large (no arm64 AMI)".into()],
        };
        assert_eq!(
            e.to_string(),
            "claim `general-0`: no offering could be launched in us-east-1c (spot); 0 refused by EC2; not tried: m6g.large (no arm64 AMI)"
        );
    }

    /// A fallback launch is labelled as the type EC2 launched, not the planned one.
    #[test]
    fn launched_labels_follow_the_fallback_type() {
        let cat = Catalog::embedded().unwrap_or_else(|e| panic!("catalog: {e}"));
        let pool = Pool {
            name: "general".into(),
            weight: 0,
            requirement_terms: vec![],
            requirements: Default::default(),
            limits: Default::default(),
            labels: [("team".to_string(), "platform".to_string())].into(),
            taints: vec![],
            startup_taints: vec![],
            tags: Default::default(),
            node_class: "default".into(),
            kubelet: Default::default(),
            disruption: Default::default(),
            scripts: vec![],
            origin: None,
        };
        let l = Launched {
            claim: "general-abcde".into(),
            instance_id: "i-1".into(),
            instance_type: "m6g.xlarge".into(),
            zone: "us-east-1c".into(),
            subnet_id: "subnet-1".into(),
            capacity_type: CapacityType::Spot,
            already_existed: false,
            failed_offerings: vec![],
            allocation_strategy: "price-capacity-optimized".into(),
            image_id: String::new(),
        };
        let m = launched_labels(Some(&cat), &pool, &l);
        let get = |k: &str| m.get(k).map(String::as_str);
        assert_eq!(get(labels::INSTANCE_TYPE), Some("m6g.xlarge"));
        assert_eq!(get(labels::INSTANCE_FAMILY), Some("m6g"));
        assert_eq!(get(labels::INSTANCE_CPU), Some("4"));
        assert_eq!(get(labels::ARCH), Some("arm64"));
        assert_eq!(get(labels::ZONE), Some("us-east-1c"));
        assert!(get(labels::ZONE_ID).is_some_and(|z| z.starts_with("use1-az")));
        assert_eq!(get(labels::CAPACITY_TYPE), Some("spot"));
        assert_eq!(get("team"), Some("platform"));
        assert_eq!(get(labels::NODEPOOL), Some("general"));
        assert_eq!(get("nodewright.io/pool"), Some("general"));
        assert_eq!(get(LABEL_CLAIM), Some("general-abcde"));
        // Without a catalog: what EC2's answer gives.
        let m = launched_labels(None, &pool, &l);
        assert_eq!(
            m.get(labels::INSTANCE_TYPE).map(String::as_str),
            Some("m6g.xlarge")
        );
        assert_eq!(m.get(labels::ARCH).map(String::as_str), Some("arm64"));
        assert!(!m.contains_key(labels::INSTANCE_FAMILY));
    }

    #[test]
    fn client_tokens() {
        let a = client_token("c", "claim-1", &[("m5.large".into(), "subnet-1".into())]);
        assert_eq!(
            a,
            client_token("c", "claim-1", &[("m5.large".into(), "subnet-1".into())])
        );
        assert_ne!(
            a,
            client_token("c", "claim-2", &[("m5.large".into(), "subnet-1".into())])
        );
        assert_ne!(a, client_token("c", "claim-1", &[]));
        assert!(a.len() <= 64);
    }
}
