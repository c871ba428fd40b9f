//! AMI aliases (`al2023@latest`, `al2@v20240807`, `bottlerocket@1.20.3`)
//! resolved the way EKS publishes its images: through public SSM parameters
//! named for the cluster's Kubernetes minor version.
//!
//! The parameter paths follow Karpenter's AMI families
//! (aws/karpenter-provider-aws, `pkg/providers/amifamily/al2023.go`,
//! `al2.go` and `bottlerocket.go`, `DescribeImageQuery`), standard variants
//! only:
//!
//! | alias | parameter (`<k>` = control plane `1.31`, `<arch>` = `x86_64` / `arm64`) |
//! |---|---|
//! | `al2023@latest` | `/aws/service/eks/optimized-ami/<k>/amazon-linux-2023/<arch>/standard/recommended/image_id` |
//! | `al2023@V` | `.../amazon-linux-2023/<arch>/standard/amazon-eks-node-al2023-<arch>-standard-<k>-V/image_id` |
//! | `al2@latest` | `/aws/service/eks/optimized-ami/<k>/amazon-linux-2/recommended/image_id` (arm64: `amazon-linux-2-arm64`) |
//! | `al2@V` | `.../amazon-linux-2/amazon-eks-node-<k>-V/image_id` (arm64: `amazon-linux-2-arm64/amazon-eks-arm64-node-<k>-V`) |
//! | `bottlerocket@latest` | `/aws/service/bottlerocket/aws-k8s-<k>/<arch>/latest/image_id` |
//! | `bottlerocket@V` | same with `V` (a leading `v` dropped, as Karpenter does) for `latest` |
//!
//! The path always carries the control plane's minor, so an alias never
//! picks an image for a newer Kubernetes; as a second guard, an image whose
//! name names a newer minor than the control plane's is refused
//! ([`AliasError::NewerMinor`]).

use std::fmt;
use std::sync::{Arc, Mutex};

use super::retry::{Ec2Error, RetryPolicy, with_retry};

/// A Kubernetes `major.minor`, as the parameter paths spell it (`1.31`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl KubeVersion {
    /// From the apiserver's `/version` fields: `major` `1`, `minor` `31` or
    /// `31+` (EKS adds the `+`), else from `gitVersion` (`v1.31.2-eks-...`).
    pub fn from_version_info(major: &str, minor: &str, git_version: &str) -> Option<KubeVersion> {
        let digits = |s: &str| -> Option<u32> {
            let d: String = s.chars().take_while(char::is_ascii_digit).collect();
            d.parse().ok()
        };
        if let (Some(major), Some(minor)) = (digits(major), digits(minor)) {
            return Some(KubeVersion { major, minor });
        }
        KubeVersion::parse(git_version.trim_start_matches('v'))
    }

    /// `1.31` or `1.31.2` (anything after the minor is ignored).
    pub fn parse(s: &str) -> Option<KubeVersion> {
        let mut it = s.split('.');
        let major = it.next()?.parse().ok()?;
        let minor: String = it
            .next()?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        Some(KubeVersion {
            major,
            minor: minor.parse().ok()?,
        })
    }
}

/// The cluster's Kubernetes version, shared: the controller updates it from
/// the API server's `/version` while the resolver reads it.
#[derive(Debug, Clone, Default)]
pub struct KubeVersionCell(Arc<Mutex<Option<KubeVersion>>>);

impl KubeVersionCell {
    /// Records the version; returns the previous one.
    pub fn set(&self, v: KubeVersion) -> Option<KubeVersion> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).replace(v)
    }

    /// The version last recorded, if any.
    pub fn get(&self) -> Option<KubeVersion> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An AMI family with EKS-published images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasFamily {
    Al2023,
    Al2,
    Bottlerocket,
}

impl AliasFamily {
    /// The node class's AMI family (`AL2023`, `AL2`, `Bottlerocket`): it decides the bootstrap format.
    pub fn ami_family(self) -> &'static str {
        match self {
            AliasFamily::Al2023 => "AL2023",
            AliasFamily::Al2 => "AL2",
            AliasFamily::Bottlerocket => "Bottlerocket",
        }
    }
}

/// A parsed alias: family and `latest` or a pinned release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub family: AliasFamily,
    /// None for `latest`.
    pub pinned: Option<String>,
}

/// Why an alias could not be resolved. Each names the alias and says what to check.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
pub enum AliasError {
    #[error("unknown AMI alias `{alias}`")]
    #[diagnostic(
        code(nodewright::ec2::alias),
        help(
            "write family@version: al2023@latest, al2023@v20240807, al2@latest, al2@v20240807, bottlerocket@latest or bottlerocket@1.20.3"
        )
    )]
    Unknown { alias: String },
    #[error(
        "AMI alias `{alias}`: the cluster's Kubernetes version is not known, and aliases resolve per version"
    )]
    #[diagnostic(
        code(nodewright::ec2::alias_version),
        help(
            "the controller reads it from the API server's /version; `nodewright ec2 resolve` takes --kubernetes-version 1.31"
        )
    )]
    NoKubernetesVersion { alias: String },
    #[error("AMI alias `{alias}`: parameter not found for Kubernetes {kubernetes}: {paths}")]
    #[diagnostic(
        code(nodewright::ec2::alias_not_found),
        help(
            "is {kubernetes} a version EKS publishes {family} AMIs for (new minors appear some days after EKS supports them; old ones are removed), and is the pinned release one that exists for it? `aws ssm get-parameters-by-path --path {root}` lists them"
        )
    )]
    NotFound {
        alias: String,
        kubernetes: KubeVersion,
        family: &'static str,
        paths: String,
        root: String,
    },
    #[error(
        "AMI alias `{alias}` resolved to {image} ({name}), built for Kubernetes {image_kubernetes}, newer than the control plane's {kubernetes}"
    )]
    #[diagnostic(
        code(nodewright::ec2::alias_newer_minor),
        help(
            "a kubelet must not be newer than its API server: pin a release built for {kubernetes}, or upgrade the control plane first"
        )
    )]
    NewerMinor {
        alias: String,
        image: String,
        name: String,
        image_kubernetes: KubeVersion,
        kubernetes: KubeVersion,
    },
    #[error("AMI alias `{alias}`: reading its SSM parameters failed: {source}")]
    #[diagnostic(
        code(nodewright::ec2::alias_ssm),
        help(
            "the controller needs ssm:GetParameters on arn:aws:ssm:*::parameter/aws/service/*; check its IAM role and the endpoint"
        )
    )]
    Api {
        alias: String,
        #[source]
        source: Box<Ec2Error>,
    },
}

/// Parses `family@version`; the family is case-insensitive.
pub fn parse_alias(alias: &str) -> Result<Alias, AliasError> {
    let unknown = || AliasError::Unknown {
        alias: alias.to_string(),
    };
    let (fam, ver) = alias.split_once('@').ok_or_else(unknown)?;
    let family = match fam.to_ascii_lowercase().as_str() {
        "al2023" => AliasFamily::Al2023,
        "al2" => AliasFamily::Al2,
        "bottlerocket" => AliasFamily::Bottlerocket,
        _ => return Err(unknown()),
    };
    if ver.is_empty() || ver.contains('/') {
        return Err(unknown());
    }
    Ok(Alias {
        family,
        pinned: (ver != "latest").then(|| ver.to_string()),
    })
}

/// The parameters of `alias` for Kubernetes `k`: (Kubernetes architecture, path), amd64 first.
pub fn parameter_paths(alias: &Alias, k: KubeVersion) -> Vec<(&'static str, String)> {
    [("amd64", "x86_64"), ("arm64", "arm64")]
        .into_iter()
        .map(|(kube_arch, arch)| {
            let path = match (alias.family, &alias.pinned) {
                (AliasFamily::Al2023, None) => format!(
                    "/aws/service/eks/optimized-ami/{k}/amazon-linux-2023/{arch}/standard/recommended/image_id"
                ),
                (AliasFamily::Al2023, Some(v)) => format!(
                    "/aws/service/eks/optimized-ami/{k}/amazon-linux-2023/{arch}/standard/amazon-eks-node-al2023-{arch}-standard-{k}-{v}/image_id"
                ),
                (AliasFamily::Al2, pinned) => {
                    let (dir, node) = if arch == "arm64" {
                        ("amazon-linux-2-arm64", "amazon-eks-arm64-node")
                    } else {
                        ("amazon-linux-2", "amazon-eks-node")
                    };
                    match pinned {
                        None => format!(
                            "/aws/service/eks/optimized-ami/{k}/{dir}/recommended/image_id"
                        ),
                        Some(v) => format!(
                            "/aws/service/eks/optimized-ami/{k}/{dir}/{node}-{k}-{v}/image_id"
                        ),
                    }
                }
                (AliasFamily::Bottlerocket, pinned) => {
                    let v = pinned
                        .as_deref()
                        .map(|v| v.trim_start_matches('v'))
                        .unwrap_or("latest");
                    format!("/aws/service/bottlerocket/aws-k8s-{k}/{arch}/{v}/image_id")
                }
            };
            (kube_arch, path)
        })
        .collect()
}

/// Where `aws ssm get-parameters-by-path` lists the family's parameters, for hints.
fn parameter_root(family: AliasFamily, k: KubeVersion) -> String {
    match family {
        AliasFamily::Al2023 => format!("/aws/service/eks/optimized-ami/{k}/amazon-linux-2023"),
        AliasFamily::Al2 => format!("/aws/service/eks/optimized-ami/{k}/amazon-linux-2"),
        AliasFamily::Bottlerocket => format!("/aws/service/bottlerocket/aws-k8s-{k}"),
    }
}

/// The Kubernetes minor an EKS image's name carries: the first `-`-separated
/// part that is exactly `digits.digits` (`amazon-eks-node-al2023-x86_64-standard-1.31-v2024...`,
/// `amazon-eks-node-1.31-v2024...`, `bottlerocket-aws-k8s-1.31-x86_64-v1.20.3-...`).
pub fn image_kubernetes(name: &str) -> Option<KubeVersion> {
    name.split('-').find_map(|part| {
        let (a, b) = part.split_once('.')?;
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        (digits(a) && digits(b)).then(|| KubeVersion::parse(part))?
    })
}

/// Refuses an image built for a newer minor than the control plane's.
pub fn check_not_newer(
    alias: &str,
    image: &str,
    name: &str,
    kubernetes: KubeVersion,
) -> Result<(), AliasError> {
    match image_kubernetes(name) {
        Some(ik) if ik > kubernetes => Err(AliasError::NewerMinor {
            alias: alias.to_string(),
            image: image.to_string(),
            name: name.to_string(),
            image_kubernetes: ik,
            kubernetes,
        }),
        _ => Ok(()),
    }
}

/// Reads the alias's parameters: (Kubernetes architecture, image id) for
/// each architecture EKS publishes one for. None published at all is
/// [`AliasError::NotFound`].
pub async fn image_ids(
    ssm: &aws_sdk_ssm::Client,
    alias_text: &str,
    kubernetes: KubeVersion,
) -> Result<(Alias, Vec<(&'static str, String)>), AliasError> {
    let alias = parse_alias(alias_text)?;
    let paths = parameter_paths(&alias, kubernetes);
    let names: Vec<String> = paths.iter().map(|(_, p)| p.clone()).collect();
    let out = with_retry(&RetryPolicy::default(), "GetParameters (SSM)", || {
        ssm.get_parameters().set_names(Some(names.clone())).send()
    })
    .await
    .map_err(|source| AliasError::Api {
        alias: alias_text.to_string(),
        source: Box::new(source),
    })?;
    let mut found = Vec::new();
    for (arch, path) in &paths {
        let value = out
            .parameters()
            .iter()
            .find(|p| p.name() == Some(path.as_str()))
            .and_then(|p| p.value())
            .map(str::trim)
            .filter(|v| !v.is_empty());
        if let Some(v) = value {
            found.push((*arch, v.to_string()));
        }
    }
    if found.is_empty() {
        return Err(AliasError::NotFound {
            alias: alias_text.to_string(),
            kubernetes,
            family: alias.family.ami_family(),
            paths: names.join(", "),
            root: parameter_root(alias.family, kubernetes),
        });
    }
    Ok((alias, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: KubeVersion = KubeVersion {
        major: 1,
        minor: 31,
    };

    fn paths(alias: &str) -> Vec<String> {
        parameter_paths(&parse_alias(alias).expect("alias"), K)
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    #[test]
    fn al2023_paths() {
        assert_eq!(
            paths("al2023@latest"),
            [
                "/aws/service/eks/optimized-ami/1.31/amazon-linux-2023/x86_64/standard/recommended/image_id",
                "/aws/service/eks/optimized-ami/1.31/amazon-linux-2023/arm64/standard/recommended/image_id"
            ]
        );
        assert_eq!(
            paths("AL2023@v20240807")[1],
            "/aws/service/eks/optimized-ami/1.31/amazon-linux-2023/arm64/standard/amazon-eks-node-al2023-arm64-standard-1.31-v20240807/image_id"
        );
    }

    #[test]
    fn al2_paths() {
        assert_eq!(
            paths("al2@latest"),
            [
                "/aws/service/eks/optimized-ami/1.31/amazon-linux-2/recommended/image_id",
                "/aws/service/eks/optimized-ami/1.31/amazon-linux-2-arm64/recommended/image_id"
            ]
        );
        assert_eq!(
            paths("al2@v20240807"),
            [
                "/aws/service/eks/optimized-ami/1.31/amazon-linux-2/amazon-eks-node-1.31-v20240807/image_id",
                "/aws/service/eks/optimized-ami/1.31/amazon-linux-2-arm64/amazon-eks-arm64-node-1.31-v20240807/image_id"
            ]
        );
    }

    #[test]
    fn bottlerocket_paths() {
        assert_eq!(
            paths("bottlerocket@latest"),
            [
                "/aws/service/bottlerocket/aws-k8s-1.31/x86_64/latest/image_id",
                "/aws/service/bottlerocket/aws-k8s-1.31/arm64/latest/image_id"
            ]
        );
        // With or without the `v` GitHub releases carry.
        assert_eq!(paths("bottlerocket@1.20.3"), paths("bottlerocket@v1.20.3"));
        assert_eq!(
            paths("bottlerocket@1.20.3")[0],
            "/aws/service/bottlerocket/aws-k8s-1.31/x86_64/1.20.3/image_id"
        );
    }

    #[test]
    fn bad_aliases_are_refused() {
        for a in ["windows@latest", "al2023", "al2023@", "al2023@../x"] {
            assert!(
                matches!(parse_alias(a), Err(AliasError::Unknown { .. })),
                "{a}"
            );
        }
    }

    #[test]
    fn versions_from_the_apiserver() {
        assert_eq!(KubeVersion::from_version_info("1", "31+", ""), Some(K));
        assert_eq!(
            KubeVersion::from_version_info("", "", "v1.31.2-eks-7f9249a"),
            Some(K)
        );
        assert_eq!(KubeVersion::from_version_info("", "", "garbage"), None);
        assert_eq!(K.to_string(), "1.31");
        assert!(KubeVersion::parse("1.9").expect("v") < KubeVersion::parse("1.10").expect("v"));
    }

    #[test]
    fn image_names_carry_their_minor() {
        for (name, k) in [
            (
                "amazon-eks-node-al2023-x86_64-standard-1.31-v20240807",
                "1.31",
            ),
            ("amazon-eks-node-1.30-v20240807", "1.30"),
            ("amazon-eks-arm64-node-1.32-v20240807", "1.32"),
            ("bottlerocket-aws-k8s-1.31-x86_64-v1.20.3-5d9ac849", "1.31"),
        ] {
            assert_eq!(image_kubernetes(name), KubeVersion::parse(k), "{name}");
        }
        assert_eq!(image_kubernetes("my-golden-image"), None);
        let e = check_not_newer(
            "al2023@latest",
            "ami-1",
            "amazon-eks-node-al2023-x86_64-standard-1.32-v20240807",
            K,
        )
        .expect_err("newer minor");
        assert!(
            e.to_string()
                .contains("Kubernetes 1.32, newer than the control plane's 1.31")
        );
        assert!(check_not_newer("a", "ami-1", "amazon-eks-node-1.30-v1", K).is_ok());
        assert!(check_not_newer("a", "ami-1", "custom", K).is_ok());
    }
}
