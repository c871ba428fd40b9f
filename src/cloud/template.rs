//! Launch templates: one per distinct launch configuration, named by a hash
//! of its content, created once and reused.
//!
//! The content covers the node class (network, IAM, storage, metadata, tags),
//! the AMI (hence the architecture) and the user data (hence the kubelet
//! settings, labels and taints). Two claims that need the same thing share a
//! template; any change produces a new name, so a template is never edited
//! under a running launch. IMDSv2 is required and the hop limit is 1 unless
//! the node class says otherwise.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use aws_sdk_ec2::types::{
    LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateInstanceMetadataProtocolIpv6,
    LaunchTemplateInstanceNetworkInterfaceSpecificationRequest,
    LaunchTemplateTagSpecificationRequest, LaunchTemplatesMonitoringRequest,
    RequestLaunchTemplateData, ResourceType, Tag, TagSpecification, VolumeType,
};
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::retry::{Ec2Error, RetryPolicy, with_retry};
pub use super::tags::OwnedTemplate;
use super::tags::TAG_CLUSTER;
use crate::ir::{BlockDeviceMapping, MetadataOptions, NodeClass};

/// Everything that goes into one launch template.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateSpec {
    pub node_class: String,
    pub ami_id: String,
    /// `amd64` or `arm64`.
    pub arch: String,
    /// Plain text; base64-encoded when sent.
    pub user_data: String,
    pub security_group_ids: Vec<String>,
    pub instance_profile: Option<String>,
    pub block_devices: Vec<BlockDeviceMapping>,
    pub metadata: MetadataOptions,
    pub detailed_monitoring: bool,
    /// The node class's `associate-public-ip`: None leaves it to the subnet's default.
    /// Skipped in the name's hash when unset, so existing templates keep their names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub associate_public_ip: Option<bool>,
    /// Tags for the instances and volumes (node class tags and ownership tags).
    pub tags: BTreeMap<String, String>,
}

impl TemplateSpec {
    /// Builds the spec from a node class; the caller supplies AMI and user data.
    pub fn new(
        nc: &NodeClass,
        ami_id: &str,
        arch: &str,
        user_data: String,
        security_group_ids: Vec<String>,
        tags: BTreeMap<String, String>,
    ) -> TemplateSpec {
        TemplateSpec {
            node_class: nc.name.clone(),
            ami_id: ami_id.to_string(),
            arch: arch.to_string(),
            user_data,
            security_group_ids,
            instance_profile: nc.instance_profile.clone().or_else(|| nc.role.clone()),
            block_devices: nc.block_device_mappings.clone(),
            metadata: nc.metadata_options.clone(),
            detailed_monitoring: nc.detailed_monitoring.unwrap_or(false),
            associate_public_ip: nc.associate_public_ip_address,
            tags,
        }
    }

    /// The same spec with the instance profile the launcher chose (a
    /// node-class role goes into a profile nodewright made; see
    /// [`crate::cloud::iam`]).
    pub fn with_instance_profile(mut self, profile: Option<String>) -> TemplateSpec {
        self.instance_profile = profile;
        self
    }

    /// `nodewright-<node class>-<16 hex of the content's SHA-256>` (≤ 128 chars, EC2's limit).
    pub fn name(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let hash = hex::encode(Sha256::digest(&json));
        let nc: String = self
            .node_class
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(80)
            .collect();
        format!("nodewright-{nc}-{}", &hash[..16])
    }

    fn data(&self) -> RequestLaunchTemplateData {
        let md = &self.metadata;
        let tags: Vec<Tag> = self
            .tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let mut b = RequestLaunchTemplateData::builder()
            .image_id(&self.ami_id)
            .user_data(base64::engine::general_purpose::STANDARD.encode(&self.user_data));
        b = match self.associate_public_ip {
            // EC2 takes the public-IP choice only on a network interface, and then
            // the security groups must sit on that interface, not on the instance.
            // The subnet still comes from each CreateFleet override.
            Some(public) => b.network_interfaces(
                LaunchTemplateInstanceNetworkInterfaceSpecificationRequest::builder()
                    .device_index(0)
                    .associate_public_ip_address(public)
                    .set_groups(Some(self.security_group_ids.clone()))
                    .build(),
            ),
            None => b.set_security_group_ids(Some(self.security_group_ids.clone())),
        };
        b = b
            .metadata_options(
                LaunchTemplateInstanceMetadataOptionsRequest::builder()
                    .http_tokens(LaunchTemplateHttpTokensState::from(md.http_tokens.as_str()))
                    .http_put_response_hop_limit(md.http_put_response_hop_limit as i32)
                    .http_endpoint(LaunchTemplateInstanceMetadataEndpointState::from(
                        md.http_endpoint.as_str(),
                    ))
                    .http_protocol_ipv6(LaunchTemplateInstanceMetadataProtocolIpv6::from(
                        md.http_protocol_ipv6.as_str(),
                    ))
                    .build(),
            )
            .monitoring(
                LaunchTemplatesMonitoringRequest::builder()
                    .enabled(self.detailed_monitoring)
                    .build(),
            );
        if let Some(p) = &self.instance_profile {
            b = b.iam_instance_profile(
                LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                    .name(p)
                    .build(),
            );
        }
        for bd in &self.block_devices {
            let mut ebs = LaunchTemplateEbsBlockDeviceRequest::builder()
                .set_volume_size(
                    bd.volume_size
                        .map(|q| ((q.as_f64() / (1u64 << 30) as f64).ceil()) as i32),
                )
                .set_volume_type(bd.volume_type.as_deref().map(VolumeType::from))
                .set_iops(bd.iops.map(|i| i as i32))
                .set_throughput(bd.throughput.map(|t| t as i32))
                .set_encrypted(bd.encrypted)
                .set_kms_key_id(bd.kms_key_id.clone())
                .set_snapshot_id(bd.snapshot_id.clone());
            ebs = ebs.delete_on_termination(bd.delete_on_termination.unwrap_or(true));
            b = b.block_device_mappings(
                LaunchTemplateBlockDeviceMappingRequest::builder()
                    .device_name(&bd.device_name)
                    .ebs(ebs.build())
                    .build(),
            );
        }
        if !tags.is_empty() {
            for rt in [ResourceType::Instance, ResourceType::Volume] {
                b = b.tag_specifications(
                    LaunchTemplateTagSpecificationRequest::builder()
                        .resource_type(rt)
                        .set_tags(Some(tags.clone()))
                        .build(),
                );
            }
        }
        b.build()
    }
}

/// A launch template nodewright made or found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsuredTemplate {
    pub name: String,
    pub id: String,
    /// True when this call created it (false: it already existed).
    pub created: bool,
}

/// Creates launch templates on first use and remembers them.
pub struct Templates {
    client: aws_sdk_ec2::Client,
    retry: RetryPolicy,
    /// The cluster's tag, put on every template so they can be cleaned up.
    cluster: String,
    known: Mutex<HashMap<String, String>>,
}

impl Templates {
    /// A template store for `cluster`.
    pub fn new(client: aws_sdk_ec2::Client, cluster: &str) -> Templates {
        Templates {
            client,
            retry: RetryPolicy::default(),
            cluster: cluster.to_string(),
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets what is known (e.g. after a launch reports the template missing).
    pub fn invalidate(&self) {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The template for `spec`: remembered, found by name, or created.
    pub async fn ensure(&self, spec: &TemplateSpec) -> Result<EnsuredTemplate, Ec2Error> {
        let name = spec.name();
        if let Some(id) = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
        {
            return Ok(EnsuredTemplate {
                name,
                id: id.clone(),
                created: false,
            });
        }
        if let Some(id) = self.find(&name).await? {
            self.remember(&name, &id);
            return Ok(EnsuredTemplate {
                name,
                id,
                created: false,
            });
        }
        let data = spec.data();
        let created = with_retry(&self.retry, "CreateLaunchTemplate", || {
            self.client
                .create_launch_template()
                .launch_template_name(&name)
                .launch_template_data(data.clone())
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::LaunchTemplate)
                        .tags(Tag::builder().key(TAG_CLUSTER).value(&self.cluster).build())
                        .build(),
                )
                .send()
        })
        .await;
        match created {
            Ok(out) => {
                let id = out
                    .launch_template()
                    .and_then(|t| t.launch_template_id())
                    .unwrap_or_default()
                    .to_string();
                self.remember(&name, &id);
                Ok(EnsuredTemplate {
                    name,
                    id,
                    created: true,
                })
            }
            // Another replica created it between our look-up and our create.
            Err(e) if e.code().is_some_and(|c| c.contains("AlreadyExists")) => {
                match self.find(&name).await? {
                    Some(id) => {
                        self.remember(&name, &id);
                        Ok(EnsuredTemplate {
                            name,
                            id,
                            created: false,
                        })
                    }
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Every launch template tagged for this cluster (`nodewright.io/cluster`),
    /// in name order.
    pub async fn list_owned(&self) -> Result<Vec<OwnedTemplate>, Ec2Error> {
        let filter = aws_sdk_ec2::types::Filter::builder()
            .name(format!("tag:{TAG_CLUSTER}"))
            .values(&self.cluster)
            .build();
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let resp = with_retry(&self.retry, "DescribeLaunchTemplates", || {
                self.client
                    .describe_launch_templates()
                    .filters(filter.clone())
                    .set_next_token(token.clone())
                    .send()
            })
            .await?;
            for t in resp.launch_templates() {
                // Only what carries our tag: a filter ignored by an endpoint must not widen this.
                let ours = t
                    .tags()
                    .iter()
                    .any(|g| g.key() == Some(TAG_CLUSTER) && g.value() == Some(&self.cluster));
                if let (true, Some(name), Some(id)) =
                    (ours, t.launch_template_name(), t.launch_template_id())
                {
                    out.push(OwnedTemplate {
                        name: name.to_string(),
                        id: id.to_string(),
                        created: t
                            .create_time()
                            .and_then(|c| std::time::SystemTime::try_from(*c).ok()),
                    });
                }
            }
            token = resp.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deletes a launch template by id and forgets it; one already gone is no error.
    pub async fn delete(&self, id: &str) -> Result<(), Ec2Error> {
        let r = with_retry(&self.retry, "DeleteLaunchTemplate", || {
            self.client
                .delete_launch_template()
                .launch_template_id(id)
                .send()
        })
        .await;
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, v| v != id);
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.code().is_some_and(|c| c.contains("NotFound")) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn remember(&self, name: &str, id: &str) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), id.to_string());
    }

    async fn find(&self, name: &str) -> Result<Option<String>, Ec2Error> {
        let r = with_retry(&self.retry, "DescribeLaunchTemplates", || {
            self.client
                .describe_launch_templates()
                .launch_template_names(name)
                .send()
        })
        .await;
        match r {
            Ok(out) => Ok(out
                .launch_templates()
                .iter()
                .find_map(|t| t.launch_template_id().map(str::to_string))),
            Err(e) if e.code().is_some_and(|c| c.contains("NotFound")) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_is_content_hash() {
        let nc = NodeClass {
            name: "default".into(),
            ..Default::default()
        };
        let a = TemplateSpec::new(
            &nc,
            "ami-1",
            "amd64",
            "ud".into(),
            vec!["sg-1".into()],
            BTreeMap::new(),
        );
        let mut b = a.clone();
        assert_eq!(a.name(), b.name());
        assert!(a.name().starts_with("nodewright-default-"));
        b.user_data.push('x');
        assert_ne!(a.name(), b.name());
        let mut c = a.clone();
        c.ami_id = "ami-2".into();
        assert_ne!(a.name(), c.name());
        let mut d = a.clone();
        d.associate_public_ip = Some(false);
        assert_ne!(a.name(), d.name());
    }

    /// `associate-public-ip` reaches EC2 on the primary interface, with the
    /// security groups moved there; unset, the groups stay on the instance.
    #[test]
    fn public_ip_choice_is_on_the_primary_interface() {
        let nc = NodeClass {
            name: "default".into(),
            associate_public_ip_address: Some(false),
            ..Default::default()
        };
        let sgs = vec!["sg-1".to_string(), "sg-2".to_string()];
        let t = TemplateSpec::new(
            &nc,
            "ami-1",
            "amd64",
            "ud".into(),
            sgs.clone(),
            BTreeMap::new(),
        );
        let data = t.data();
        assert!(data.security_group_ids().is_empty());
        let ni = &data.network_interfaces()[0];
        assert_eq!(ni.device_index(), Some(0));
        assert_eq!(ni.associate_public_ip_address(), Some(false));
        assert_eq!(ni.groups(), sgs.as_slice());

        let plain = TemplateSpec::new(
            &NodeClass::default(),
            "ami-1",
            "amd64",
            "ud".into(),
            sgs.clone(),
            BTreeMap::new(),
        );
        let data = plain.data();
        assert!(data.network_interfaces().is_empty());
        assert_eq!(data.security_group_ids(), sgs.as_slice());
    }
}
