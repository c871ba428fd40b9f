//! Building the EC2 client.
//!
//! The standard AWS chain decides credentials and region (environment,
//! profile, SSO, IMDS...), and `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_EC2`
//! are honoured by aws-config itself, so pointing nodewright at moto or a VPC
//! endpoint needs no nodewright-specific switch. Explicit settings win.
//! The SDK's own retries are off: [`crate::cloud::retry`] owns the bound.
//!
//! TLS: the SDK's HTTPS client is built here on rustls with ring, the same
//! crypto provider kube-rs uses, so the process carries one provider and
//! rustls never has to be told which one to use (see Cargo.toml).

use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};

/// How to reach EC2. Every field is optional; unset fields come from the standard chain.
#[derive(Debug, Clone, Default)]
pub struct Ec2Settings {
    /// Region; else `AWS_REGION` / the profile / IMDS.
    pub region: Option<String>,
    /// Endpoint; else `AWS_ENDPOINT_URL(_EC2)` or the public endpoint.
    pub endpoint_url: Option<String>,
    /// Static (access key, secret key), for tests against a local EC2 API only.
    pub static_credentials: Option<(String, String)>,
}

impl Ec2Settings {
    /// Settings for a local test server (moto): its endpoint, us-east-1, dummy keys.
    pub fn static_test(endpoint: &str) -> Ec2Settings {
        Ec2Settings::static_test_in(endpoint, "us-east-1")
    }

    /// Settings for a local test server (moto) in `region`: nothing in
    /// nodewright assumes us-east-1, and the tests check it in another region.
    pub fn static_test_in(endpoint: &str, region: &str) -> Ec2Settings {
        Ec2Settings {
            region: Some(region.to_string()),
            endpoint_url: Some(endpoint.to_string()),
            static_credentials: Some(("testing".into(), "testing".into())),
        }
    }
}

/// An EC2 client from the standard chain, overridden by `settings`.
pub async fn connect(settings: &Ec2Settings) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&load(settings).await)
}

/// An SSM client (public AMI parameters) from the same configuration as
/// [`connect`]: one region, one endpoint override, one HTTPS client.
pub fn ssm(config: &aws_config::SdkConfig) -> aws_sdk_ssm::Client {
    aws_sdk_ssm::Client::new(config)
}

/// An IAM client (instance profiles for node-class roles) from the same configuration.
pub fn iam(config: &aws_config::SdkConfig) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(config)
}

/// An SQS client (the interruption queue) from the same configuration.
pub fn sqs(config: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(config)
}

/// The AWS configuration every client is built from: the standard chain
/// (region from `--region` / `AWS_REGION` / the profile / IMDS), overridden
/// by `settings`, with the SDK's retries off and our HTTPS client.
pub async fn load(settings: &Ec2Settings) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .http_client(https_client());
    if let Some(r) = &settings.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(e) = &settings.endpoint_url {
        loader = loader.endpoint_url(e.clone());
    }
    if let Some((k, s)) = &settings.static_credentials {
        loader = loader.credentials_provider(Credentials::new(
            k.clone(),
            s.clone(),
            None,
            None,
            "nodewright-static",
        ));
    }
    loader.load().await
}

/// The SDK's HTTPS client on rustls + ring (the SDK's default would be
/// aws-lc-rs, a second provider beside kube-rs's ring). Credential
/// providers (STS, SSO, IMDS) take it from the loader too.
fn https_client() -> aws_sdk_ec2::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}
