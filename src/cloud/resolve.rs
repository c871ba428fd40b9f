//! Resolving a node class's selectors into concrete EC2 resources: subnets
//! (with zones and free IPs), security groups, and one AMI per architecture.
//!
//! Selector terms are ORed; the fields within a term are ANDed (Karpenter's
//! rules). A selector that matches nothing is an error naming the selector,
//! because "why are no nodes launching?" is so often a tag typo.
//!
//! AMI aliases (`al2023@latest`, `al2@v20240807`, `bottlerocket@1.20.3`)
//! resolve through the public SSM parameters EKS publishes for the
//! cluster's Kubernetes version (`super::ssm`) once the resolver has an SSM
//! client ([`Resolver::use_ssm`]) and the version
//! ([`Resolver::set_kubernetes_version`]): the controller sets both. Without
//! an SSM client (`nodewright ec2 resolve` with no `--kubernetes-version`)
//! an alias falls back to a DescribeImages name/owner query, newest
//! creation date first; see docs/ec2.md.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use serde::Serialize;

use super::retry::{Ec2Error, RetryPolicy, with_retry};
use super::ssm::{AliasError, KubeVersion, KubeVersionCell, check_not_newer};
use crate::ir::{AmiSelectorTerm, NodeClass, SelectorTerm};

/// A subnet a node may launch into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedSubnet {
    pub id: String,
    pub zone: String,
    pub zone_id: Option<String>,
    /// Free IPv4 addresses (more is preferred when several subnets share a zone).
    pub available_ips: i32,
}

/// A security group for the nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedSecurityGroup {
    pub id: String,
    pub name: String,
}

/// The AMI to use for one architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedAmi {
    pub id: String,
    pub name: String,
    /// `amd64` or `arm64` (Kubernetes spelling).
    pub arch: String,
    pub creation_date: String,
}

/// What a node class resolves to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    pub node_class: String,
    /// `AL2023`, `Bottlerocket`, ... (from the alias, else the node class, else AL2023).
    pub ami_family: String,
    /// Most free IPs first.
    pub subnets: Vec<ResolvedSubnet>,
    pub security_groups: Vec<ResolvedSecurityGroup>,
    /// At most one per architecture, by architecture.
    pub amis: BTreeMap<String, ResolvedAmi>,
    /// Selector terms that matched nothing while others did (worth a look).
    pub warnings: Vec<String>,
}

impl Resolved {
    /// The subnets in `zone`, most free IPs first.
    pub fn subnets_in(&self, zone: &str) -> impl Iterator<Item = &ResolvedSubnet> {
        self.subnets.iter().filter(move |s| s.zone == zone)
    }
}

/// Why a node class could not be resolved.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
pub enum ResolveError {
    /// A whole selector matched nothing.
    #[error("node class `{node_class}`: {kind} selector {selector} matched nothing")]
    #[diagnostic(code(nodewright::ec2::selector_matched_nothing), help("{hint}"))]
    MatchedNothing {
        node_class: String,
        /// `subnet`, `security-group` or `AMI`.
        kind: &'static str,
        /// The selector terms, as written.
        selector: String,
        hint: String,
    },
    /// A selector is empty or malformed.
    #[error("node class `{node_class}`: {message}")]
    #[diagnostic(code(nodewright::ec2::bad_selector))]
    BadSelector {
        node_class: String,
        message: String,
        #[help]
        hint: Option<String>,
    },
    /// An AMI alias could not be resolved through SSM.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Alias(#[from] AliasError),
    #[error(transparent)]
    #[diagnostic(code(nodewright::ec2::resolve))]
    Api(
        #[from]
        #[diagnostic_source]
        Ec2Error,
    ),
}

/// Resolves node classes through the EC2 API, caching each result for a TTL.
pub struct Resolver {
    client: aws_sdk_ec2::Client,
    ttl: Duration,
    retry: RetryPolicy,
    /// Owners searched for alias AMIs. `amazon` by default; GovCloud, China or
    /// a private mirror of the EKS images use another owner.
    pub alias_owners: Vec<String>,
    /// Resolves aliases through EKS's public parameters when set.
    ssm: Option<aws_sdk_ssm::Client>,
    /// The cluster's Kubernetes version, which alias parameters are named for.
    kubernetes: KubeVersionCell,
    cache: Mutex<HashMap<String, (Instant, Arc<Resolved>)>>,
}

impl Resolver {
    /// A resolver whose results are reused for `ttl` (Karpenter uses minutes).
    pub fn new(client: aws_sdk_ec2::Client, ttl: Duration) -> Resolver {
        Resolver {
            client,
            ttl,
            retry: RetryPolicy::default(),
            alias_owners: vec!["amazon".into()],
            ssm: None,
            kubernetes: KubeVersionCell::default(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves AMI aliases through the public SSM parameters (the way EKS
    /// publishes its images) rather than by image name.
    pub fn use_ssm(&mut self, ssm: aws_sdk_ssm::Client) {
        self.ssm = Some(ssm);
    }

    /// The cluster's Kubernetes version, which alias parameters are named
    /// for; cached resolutions made for another version are not reused.
    pub fn set_kubernetes_version(&self, v: KubeVersion) {
        self.kubernetes.set(v);
    }

    /// The version last set, if any.
    pub fn kubernetes_version(&self) -> Option<KubeVersion> {
        self.kubernetes.get()
    }

    /// A handle that updates the version from elsewhere (the controller
    /// re-reads the API server's `/version` on a timer).
    pub fn kubernetes_version_cell(&self) -> KubeVersionCell {
        self.kubernetes.clone()
    }

    /// Resolves `nc`, from the cache when fresh.
    pub async fn resolve(&self, nc: &NodeClass) -> Result<Arc<Resolved>, ResolveError> {
        let mut key = serde_json::to_string(nc).unwrap_or_else(|_| nc.name.clone());
        if let Some(v) = self.kubernetes_version() {
            key.push_str(&format!("@k8s-{v}"));
        }
        {
            let c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, r)) = c.get(&key)
                && at.elapsed() < self.ttl
            {
                return Ok(r.clone());
            }
        }
        let r = Arc::new(self.resolve_uncached(nc).await?);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (Instant::now(), r.clone()));
        Ok(r)
    }

    /// Forgets every cached resolution (after a node class changes, or on a launch error).
    pub fn invalidate(&self) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    async fn resolve_uncached(&self, nc: &NodeClass) -> Result<Resolved, ResolveError> {
        let mut warnings = Vec::new();
        let subnets = self.subnets(nc, &mut warnings).await?;
        let security_groups = self.security_groups(nc, &mut warnings).await?;
        let (ami_family, amis) = self.amis(nc, &mut warnings).await?;
        Ok(Resolved {
            node_class: nc.name.clone(),
            ami_family,
            subnets,
            security_groups,
            amis,
            warnings,
        })
    }

    async fn subnets(
        &self,
        nc: &NodeClass,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<ResolvedSubnet>, ResolveError> {
        if nc.subnet_selector.is_empty() {
            return Err(empty(nc, "subnet"));
        }
        let mut out: BTreeMap<String, ResolvedSubnet> = BTreeMap::new();
        for term in &nc.subnet_selector {
            let filters = tag_filters(term, "tag:Name");
            let ids: Vec<String> = term.id.iter().cloned().collect();
            let mut found = 0;
            let mut token: Option<String> = None;
            loop {
                let resp = with_retry(&self.retry, "DescribeSubnets", || {
                    self.client
                        .describe_subnets()
                        .set_subnet_ids(some_vec(&ids))
                        .set_filters(some_vec(&filters))
                        .set_next_token(token.clone())
                        .send()
                })
                .await;
                let resp = match resp {
                    Err(e) if not_found(&e) => break,
                    r => r?,
                };
                for s in resp.subnets() {
                    let (Some(id), Some(zone)) = (s.subnet_id(), s.availability_zone()) else {
                        continue;
                    };
                    found += 1;
                    out.insert(
                        id.to_string(),
                        ResolvedSubnet {
                            id: id.to_string(),
                            zone: zone.to_string(),
                            zone_id: s.availability_zone_id().map(str::to_string),
                            available_ips: s.available_ip_address_count().unwrap_or(0),
                        },
                    );
                }
                token = resp.next_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
            if found == 0 {
                warnings.push(format!(
                    "subnet selector term {} matched nothing",
                    show_term(term)
                ));
            }
        }
        if out.is_empty() {
            return Err(nothing(nc, "subnet", show_terms(&nc.subnet_selector)));
        }
        let mut v: Vec<ResolvedSubnet> = out.into_values().collect();
        v.sort_by(|a, b| b.available_ips.cmp(&a.available_ips).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    async fn security_groups(
        &self,
        nc: &NodeClass,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<ResolvedSecurityGroup>, ResolveError> {
        if nc.security_group_selector.is_empty() {
            return Err(empty(nc, "security-group"));
        }
        let mut out: BTreeMap<String, ResolvedSecurityGroup> = BTreeMap::new();
        for term in &nc.security_group_selector {
            let mut filters = tag_filters(term, "group-name");
            if term.name.is_none() {
                filters.retain(|f| f.name() != Some("group-name"));
            }
            let ids: Vec<String> = term.id.iter().cloned().collect();
            let mut found = 0;
            let mut token: Option<String> = None;
            loop {
                let resp = with_retry(&self.retry, "DescribeSecurityGroups", || {
                    self.client
                        .describe_security_groups()
                        .set_group_ids(some_vec(&ids))
                        .set_filters(some_vec(&filters))
                        .set_next_token(token.clone())
                        .send()
                })
                .await;
                let resp = match resp {
                    Err(e) if not_found(&e) => break,
                    r => r?,
                };
                for g in resp.security_groups() {
                    let Some(id) = g.group_id() else { continue };
                    found += 1;
                    out.insert(
                        id.to_string(),
                        ResolvedSecurityGroup {
                            id: id.to_string(),
                            name: g.group_name().unwrap_or("").to_string(),
                        },
                    );
                }
                token = resp.next_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
            if found == 0 {
                warnings.push(format!(
                    "security-group selector term {} matched nothing",
                    show_term(term)
                ));
            }
        }
        if out.is_empty() {
            return Err(nothing(
                nc,
                "security-group",
                show_terms(&nc.security_group_selector),
            ));
        }
        Ok(out.into_values().collect())
    }

    async fn amis(
        &self,
        nc: &NodeClass,
        warnings: &mut Vec<String>,
    ) -> Result<(String, BTreeMap<String, ResolvedAmi>), ResolveError> {
        if nc.ami_selector.is_empty() {
            return Err(empty(nc, "AMI"));
        }
        let mut family = nc.ami_family.clone();
        let mut best: BTreeMap<String, ResolvedAmi> = BTreeMap::new();
        for term in &nc.ami_selector {
            let queries = match &term.alias {
                Some(alias) if self.ssm.is_some() => {
                    let (fam, ids) = self.alias_image_ids(alias).await?;
                    family.get_or_insert(fam.to_string());
                    let ids: Vec<String> = ids.into_iter().map(|(_, id)| id).collect();
                    vec![(vec![], vec![], ids)]
                }
                Some(alias) => {
                    let (fam, patterns) = alias_patterns(alias).ok_or_else(|| {
                        ResolveError::BadSelector {
                            node_class: nc.name.clone(),
                            message: format!("unknown AMI alias `{alias}`"),
                            hint: Some(
                                "use al2023@latest, al2023@vYYYYMMDD, bottlerocket@latest or bottlerocket@vX.Y.Z"
                                    .into(),
                            ),
                        }
                    })?;
                    family.get_or_insert(fam.to_string());
                    patterns
                        .into_iter()
                        .map(|p| (vec![name_filter(&p)], self.alias_owners.clone(), vec![]))
                        .collect::<Vec<_>>()
                }
                None => {
                    let mut filters: Vec<Filter> =
                        term.tags.iter().map(|(k, v)| tag_filter(k, v)).collect();
                    if let Some(n) = &term.name {
                        filters.push(name_filter(n));
                    }
                    let owners: Vec<String> = term.owner.iter().cloned().collect();
                    let ids: Vec<String> = term.id.iter().cloned().collect();
                    vec![(filters, owners, ids)]
                }
            };
            let mut found = 0;
            for (filters, owners, ids) in queries {
                let resp = with_retry(&self.retry, "DescribeImages", || {
                    self.client
                        .describe_images()
                        .set_image_ids(some_vec(&ids))
                        .set_owners(some_vec(&owners))
                        .set_filters(some_vec(&filters))
                        .send()
                })
                .await;
                let resp = match resp {
                    Err(e) if not_found(&e) => continue,
                    r => r?,
                };
                for img in resp.images() {
                    let Some(id) = img.image_id() else { continue };
                    if let (Some(alias), Some(k)) = (&term.alias, self.kubernetes_version()) {
                        check_not_newer(alias, id, img.name().unwrap_or(""), k)?;
                    }
                    let arch = match img.architecture().map(|a| a.as_str()) {
                        Some("x86_64") => "amd64",
                        Some("arm64") => "arm64",
                        _ => continue,
                    };
                    found += 1;
                    let cand = ResolvedAmi {
                        id: id.to_string(),
                        name: img.name().unwrap_or("").to_string(),
                        arch: arch.to_string(),
                        creation_date: img.creation_date().unwrap_or("").to_string(),
                    };
                    let newer = best.get(arch).is_none_or(|b| {
                        (&cand.creation_date, &cand.id) > (&b.creation_date, &b.id)
                    });
                    if newer {
                        best.insert(arch.to_string(), cand);
                    }
                }
            }
            if found == 0 {
                warnings.push(format!(
                    "AMI selector term {} matched nothing",
                    show_ami_term(term)
                ));
            }
        }
        if best.is_empty() {
            let sel = nc
                .ami_selector
                .iter()
                .map(show_ami_term)
                .collect::<Vec<_>>()
                .join(" or ");
            return Err(nothing(nc, "AMI", sel));
        }
        Ok((family.unwrap_or_else(|| "AL2023".into()), best))
    }
}

impl Resolver {
    /// The image ids EKS publishes for `alias` and the cluster's version.
    async fn alias_image_ids(
        &self,
        alias: &str,
    ) -> Result<(&'static str, Vec<(&'static str, String)>), ResolveError> {
        let (Some(ssm), Some(k)) = (&self.ssm, self.kubernetes_version()) else {
            return Err(AliasError::NoKubernetesVersion {
                alias: alias.to_string(),
            }
            .into());
        };
        let (a, ids) = super::ssm::image_ids(ssm, alias, k).await?;
        Ok((a.family.ami_family(), ids))
    }
}

/// The AMI family and DescribeImages name patterns of an alias, one per architecture.
pub fn alias_patterns(alias: &str) -> Option<(&'static str, Vec<String>)> {
    let (fam, ver) = alias.split_once('@').unwrap_or((alias, "latest"));
    let ver = if ver == "latest" {
        "*".to_string()
    } else {
        ver.to_string()
    };
    match fam.to_ascii_lowercase().as_str() {
        "al2023" => Some((
            "AL2023",
            ["x86_64", "arm64"]
                .iter()
                .map(|a| format!("amazon-eks-node-al2023-{a}-standard-*-{ver}"))
                .collect(),
        )),
        "bottlerocket" => Some((
            "Bottlerocket",
            ["x86_64", "aarch64"]
                .iter()
                .map(|a| format!("bottlerocket-aws-k8s-*-{a}-{ver}*"))
                .collect(),
        )),
        _ => None,
    }
}

fn empty(nc: &NodeClass, kind: &'static str) -> ResolveError {
    ResolveError::BadSelector {
        node_class: nc.name.clone(),
        message: format!("has no {kind} selector"),
        hint: Some(format!("add a {kind} selector term (by tags, id or name)")),
    }
}

fn nothing(nc: &NodeClass, kind: &'static str, selector: String) -> ResolveError {
    let hint = format!(
        "no {kind} in this account and region matches; check the tag keys and values (they are case-sensitive), the ids, and the region"
    );
    ResolveError::MatchedNothing {
        node_class: nc.name.clone(),
        kind,
        selector,
        hint,
    }
}

/// EC2 answers an unknown id with an error rather than an empty list; for a
/// selector that is the same thing as "matched nothing".
fn not_found(e: &Ec2Error) -> bool {
    e.code().is_some_and(|c| {
        c.ends_with(".NotFound") || c.starts_with("InvalidAMIID") || c.ends_with(".Malformed")
    })
}

fn some_vec<T: Clone>(v: &[T]) -> Option<Vec<T>> {
    if v.is_empty() { None } else { Some(v.to_vec()) }
}

fn tag_filter(k: &str, v: &str) -> Filter {
    if v == "*" {
        Filter::builder().name("tag-key").values(k).build()
    } else {
        Filter::builder().name(format!("tag:{k}")).values(v).build()
    }
}

fn name_filter(n: &str) -> Filter {
    Filter::builder().name("name").values(n).build()
}

fn tag_filters(term: &SelectorTerm, name_key: &str) -> Vec<Filter> {
    let mut f: Vec<Filter> = term.tags.iter().map(|(k, v)| tag_filter(k, v)).collect();
    if let Some(n) = &term.name {
        f.push(Filter::builder().name(name_key).values(n).build());
    }
    f
}

/// A selector term as a user would write it, for messages.
pub fn show_term(t: &SelectorTerm) -> String {
    let mut parts = Vec::new();
    if let Some(id) = &t.id {
        parts.push(format!("id {id}"));
    }
    if let Some(n) = &t.name {
        parts.push(format!("name \"{n}\""));
    }
    for (k, v) in &t.tags {
        parts.push(format!("tag {k} = \"{v}\""));
    }
    format!("[{}]", parts.join(", "))
}

fn show_terms(ts: &[SelectorTerm]) -> String {
    ts.iter().map(show_term).collect::<Vec<_>>().join(" or ")
}

fn show_ami_term(t: &AmiSelectorTerm) -> String {
    let mut parts = Vec::new();
    if let Some(a) = &t.alias {
        parts.push(format!("alias {a}"));
    }
    if let Some(id) = &t.id {
        parts.push(format!("id {id}"));
    }
    if let Some(n) = &t.name {
        parts.push(format!("name \"{n}\""));
    }
    if let Some(o) = &t.owner {
        parts.push(format!("owner {o}"));
    }
    for (k, v) in &t.tags {
        parts.push(format!("tag {k} = \"{v}\""));
    }
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_name_patterns() {
        let (f, p) = alias_patterns("al2023@latest").expect("known alias");
        assert_eq!(f, "AL2023");
        assert_eq!(
            p,
            vec![
                "amazon-eks-node-al2023-x86_64-standard-*-*",
                "amazon-eks-node-al2023-arm64-standard-*-*"
            ]
        );
        let (f, p) = alias_patterns("bottlerocket@v1.20.0").expect("known alias");
        assert_eq!(f, "Bottlerocket");
        assert_eq!(p[1], "bottlerocket-aws-k8s-*-aarch64-v1.20.0*");
        assert!(alias_patterns("windows@latest").is_none());
    }

    #[test]
    fn terms_render_as_written() {
        let mut t = SelectorTerm::default();
        t.tags
            .insert("karpenter.sh/discovery".into(), "demo".into());
        assert_eq!(show_term(&t), "[tag karpenter.sh/discovery = \"demo\"]");
    }
}
