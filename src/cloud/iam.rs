//! Instance profiles for node classes that name a `role`.
//!
//! EC2 attaches an instance profile, not a role. A node class that names a
//! role (as Karpenter's EC2NodeClass does) gets an instance profile that
//! nodewright creates under the path `/nodewright/`, named from the cluster,
//! region and role, tagged for the cluster, with that role in it. The same
//! inputs always give the same name, so a restart or a second replica finds
//! the profile instead of making another. Profiles of this cluster that no
//! node class of the active policy names any more are removed by the garbage
//! collector ([`InstanceProfiles::collect`]): the role is taken out first, as
//! IAM requires.
//!
//! A node class that names an `instance-profile` uses it as it is; nodewright
//! never creates, edits or deletes a profile it did not name.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use aws_sdk_iam::types::Tag;
use sha2::{Digest, Sha256};

use super::retry::{Ec2Error, RetryPolicy, with_retry};
use super::tags::TAG_CLUSTER;

/// The IAM path of every profile nodewright creates: listing it finds them all.
pub const PROFILE_PATH: &str = "/nodewright/";

/// The tag naming the role a profile was made for.
pub const TAG_ROLE: &str = "nodewright.io/role";

/// Why an instance profile could not be made or removed.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
pub enum IamError {
    /// IAM answered with an error code.
    #[error("IAM {operation} failed: {code}: {message}")]
    #[diagnostic(code(nodewright::iam::api))]
    Api {
        operation: String,
        code: String,
        message: String,
        #[help]
        hint: Option<String>,
    },
    /// No answer after every attempt.
    #[error("IAM {operation} failed: {message}")]
    #[diagnostic(
        code(nodewright::iam::transport),
        help("check the endpoint (AWS_ENDPOINT_URL), the network and the credentials")
    )]
    Transport { operation: String, message: String },
}

impl IamError {
    fn from_call(e: Ec2Error) -> IamError {
        match e {
            Ec2Error::Api {
                operation,
                code,
                message,
                ..
            } => IamError::Api {
                hint: hint_for(&code),
                operation,
                code,
                message,
            },
            Ec2Error::Transport {
                operation, message, ..
            } => IamError::Transport { operation, message },
        }
    }

    fn code(&self) -> Option<&str> {
        match self {
            IamError::Api { code, .. } => Some(code),
            IamError::Transport { .. } => None,
        }
    }
}

fn hint_for(code: &str) -> Option<String> {
    Some(match code {
        "AccessDenied" | "AccessDeniedException" => {
            "the controller's role needs iam:GetInstanceProfile, CreateInstanceProfile, TagInstanceProfile, \
             AddRoleToInstanceProfile, RemoveRoleFromInstanceProfile, DeleteInstanceProfile, \
             ListInstanceProfiles and iam:PassRole on the node role (deploy/iam-policy.json)"
                .to_string()
        }
        "NoSuchEntity" => "does the node class's role exist? (`aws iam get-role --role-name ...`)".into(),
        "LimitExceeded" => "the account's instance-profile quota is reached; remove unused profiles".into(),
        _ => return None,
    })
}

/// The profile name for `role` in `cluster` and `region`:
/// `nodewright_<cluster>_<16 hex of SHA-256(region/cluster/role)>`, within
/// IAM's 128 characters and its name alphabet.
pub fn profile_name(cluster: &str, region: &str, role: &str) -> String {
    let hash = hex::encode(Sha256::digest(format!("{region}/{cluster}/{role}")));
    let c: String = cluster
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(90)
        .collect();
    format!("nodewright_{c}_{}", &hash[..16])
}

/// The profiles of one cluster: made on first use, remembered, collected.
pub struct InstanceProfiles {
    client: aws_sdk_iam::Client,
    cluster: String,
    region: String,
    retry: RetryPolicy,
    /// Role → profile name, for profiles known to hold their role.
    ready: Mutex<HashMap<String, String>>,
    /// Held while a profile is read, made or given its role: launches run
    /// concurrently, and two of them adding the same role to one profile
    /// would meet IAM's one-role limit.
    making: tokio::sync::Mutex<()>,
}

impl InstanceProfiles {
    /// Profiles for `cluster` in `region` (the region is part of the name:
    /// IAM is global, and one cluster name may exist in several regions).
    pub fn new(client: aws_sdk_iam::Client, cluster: &str, region: &str) -> InstanceProfiles {
        InstanceProfiles {
            client,
            cluster: cluster.to_string(),
            region: region.to_string(),
            retry: RetryPolicy::default(),
            ready: Mutex::new(HashMap::new()),
            making: tokio::sync::Mutex::new(()),
        }
    }

    /// The name [`InstanceProfiles::ensure`] gives `role`'s profile, without
    /// asking IAM (garbage collection computes template names with it).
    pub fn name_for(&self, role: &str) -> String {
        profile_name(&self.cluster, &self.region, role)
    }

    /// The name of the profile for `role`, creating it (tagged, with the role
    /// in it) when it does not exist yet. Idempotent and safe to race: a
    /// profile made by another replica is found, not duplicated.
    pub async fn ensure(&self, role: &str) -> Result<String, IamError> {
        if let Some(n) = self.ready.lock().ok().and_then(|m| m.get(role).cloned()) {
            return Ok(n);
        }
        let _making = self.making.lock().await;
        // Made by the launch we waited for?
        if let Some(n) = self.ready.lock().ok().and_then(|m| m.get(role).cloned()) {
            return Ok(n);
        }
        let name = profile_name(&self.cluster, &self.region, role);
        let existing = match with_retry(&self.retry, "GetInstanceProfile", || {
            self.client
                .get_instance_profile()
                .instance_profile_name(&name)
                .send()
        })
        .await
        .map_err(IamError::from_call)
        {
            Ok(out) => out.instance_profile,
            Err(e) if e.code() == Some("NoSuchEntity") => None,
            Err(e) => return Err(e),
        };
        let roles: Vec<String> = match &existing {
            Some(p) => p
                .roles()
                .iter()
                .map(|r| r.role_name().to_string())
                .collect(),
            None => {
                self.create(&name, role).await?;
                Vec::new()
            }
        };
        if !roles.iter().any(|r| r == role) {
            // A profile holds one role: a stale one (renamed role) goes first.
            for other in &roles {
                self.remove_role(&name, other).await?;
            }
            let added = with_retry(&self.retry, "AddRoleToInstanceProfile", || {
                self.client
                    .add_role_to_instance_profile()
                    .instance_profile_name(&name)
                    .role_name(role)
                    .send()
            })
            .await
            .map_err(IamError::from_call);
            match added {
                Ok(_) => {}
                // Another replica added it between our read and our write.
                Err(e) if e.code() == Some("LimitExceeded") && existing.is_some() => {}
                Err(e) => return Err(e),
            }
            tracing::info!("instance profile {name} holds role {role}");
        }
        if let Ok(mut m) = self.ready.lock() {
            m.insert(role.to_string(), name.clone());
        }
        Ok(name)
    }

    async fn create(&self, name: &str, role: &str) -> Result<(), IamError> {
        let tags = [
            Tag::builder().key(TAG_CLUSTER).value(&self.cluster).build(),
            Tag::builder().key(TAG_ROLE).value(role).build(),
        ];
        let tags: Vec<Tag> = tags.into_iter().filter_map(Result::ok).collect();
        let made = with_retry(&self.retry, "CreateInstanceProfile", || {
            self.client
                .create_instance_profile()
                .instance_profile_name(name)
                .path(PROFILE_PATH)
                .set_tags(Some(tags.clone()))
                .send()
        })
        .await
        .map_err(IamError::from_call);
        match made {
            Ok(_) => {
                tracing::info!("created instance profile {name} for role {role}");
                Ok(())
            }
            // Made by another replica since we looked: use it.
            Err(e) if e.code() == Some("EntityAlreadyExists") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn remove_role(&self, profile: &str, role: &str) -> Result<(), IamError> {
        let r = with_retry(&self.retry, "RemoveRoleFromInstanceProfile", || {
            self.client
                .remove_role_from_instance_profile()
                .instance_profile_name(profile)
                .role_name(role)
                .send()
        })
        .await
        .map_err(IamError::from_call);
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("NoSuchEntity") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes this cluster's profiles whose role no node class names now
    /// (`roles`: every role of the active policy's node classes). Returns the
    /// names removed. A profile IAM refuses to delete is left for the next
    /// pass and reported.
    pub async fn collect(&self, roles: &BTreeSet<String>) -> Result<Vec<String>, IamError> {
        self.collect_keeping(roles, &BTreeSet::new()).await
    }

    /// [`InstanceProfiles::collect`], also keeping the profiles named in
    /// `in_use` (those live instances run with: IAM would delete them anyway
    /// and cut those nodes' credentials).
    pub async fn collect_keeping(
        &self,
        roles: &BTreeSet<String>,
        in_use: &BTreeSet<String>,
    ) -> Result<Vec<String>, IamError> {
        let mut keep: BTreeSet<String> = roles
            .iter()
            .map(|r| profile_name(&self.cluster, &self.region, r))
            .collect();
        keep.extend(in_use.iter().cloned());
        let mut marker: Option<String> = None;
        let mut candidates = Vec::new();
        loop {
            let page = with_retry(&self.retry, "ListInstanceProfiles", || {
                self.client
                    .list_instance_profiles()
                    .path_prefix(PROFILE_PATH)
                    .set_marker(marker.clone())
                    .send()
            })
            .await
            .map_err(IamError::from_call)?;
            for p in page.instance_profiles() {
                let ours = p
                    .tags()
                    .iter()
                    .any(|t| t.key() == TAG_CLUSTER && t.value() == self.cluster);
                let name = p.instance_profile_name().to_string();
                if !keep.contains(&name) {
                    candidates.push((
                        name,
                        ours,
                        p.roles()
                            .iter()
                            .map(|r| r.role_name().to_string())
                            .collect::<Vec<_>>(),
                    ));
                }
            }
            match page.marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        let mut removed = Vec::new();
        for (name, tagged, roles) in candidates {
            // ListInstanceProfiles may omit tags: read the profile when it did not show ours.
            if !tagged && !self.tagged_for_cluster(&name).await? {
                continue;
            }
            for r in &roles {
                self.remove_role(&name, r).await?;
            }
            let deleted = with_retry(&self.retry, "DeleteInstanceProfile", || {
                self.client
                    .delete_instance_profile()
                    .instance_profile_name(&name)
                    .send()
            })
            .await
            .map_err(IamError::from_call);
            match deleted {
                Err(e) if e.code() != Some("NoSuchEntity") => {
                    tracing::warn!("instance profile {name} is unused but stays for now: {e}");
                }
                _ => {
                    if let Ok(mut m) = self.ready.lock() {
                        m.retain(|_, n| n != &name);
                    }
                    tracing::info!("deleted instance profile {name}: no node class names its role");
                    removed.push(name);
                }
            }
        }
        Ok(removed)
    }

    async fn tagged_for_cluster(&self, name: &str) -> Result<bool, IamError> {
        let out = with_retry(&self.retry, "GetInstanceProfile", || {
            self.client
                .get_instance_profile()
                .instance_profile_name(name)
                .send()
        })
        .await
        .map_err(IamError::from_call)?;
        Ok(out.instance_profile().is_some_and(|p| {
            p.tags()
                .iter()
                .any(|t| t.key() == TAG_CLUSTER && t.value() == self.cluster)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_distinct_and_valid() {
        let a = profile_name("demo", "us-east-1", "NodeRole");
        assert_eq!(a, profile_name("demo", "us-east-1", "NodeRole"));
        assert_ne!(a, profile_name("demo", "eu-west-1", "NodeRole"));
        assert_ne!(a, profile_name("demo", "us-east-1", "OtherRole"));
        assert_ne!(a, profile_name("other", "us-east-1", "NodeRole"));
        assert!(a.starts_with("nodewright_demo_"), "{a}");
        let long = profile_name(&"c/l:u s".repeat(40), "us-east-1", "r");
        assert!(long.len() <= 128, "{}", long.len());
        assert!(
            long.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c)),
            "{long}"
        );
    }
}
