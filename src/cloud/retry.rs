//! Retrying EC2 calls: throttling, 5xx and transport failures are retried with
//! jittered exponential backoff up to a bound; everything else (validation,
//! authorisation, not-found) is surfaced at once with the AWS error code and a
//! hint, because retrying a bad subnet id never makes it good.

use std::future::Future;
use std::time::Duration;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use rand::Rng;

/// An EC2 API failure, with what to do about it.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
pub enum Ec2Error {
    /// EC2 answered with an error code.
    #[error("EC2 {operation} failed: {code}: {message}")]
    #[diagnostic(code(nodewright::ec2::api))]
    Api {
        operation: String,
        code: String,
        message: String,
        #[help]
        hint: Option<String>,
        /// Attempts made (more than one only for retryable errors).
        attempts: u32,
    },
    /// No answer (connection refused, timeout) after every attempt.
    #[error("EC2 {operation} failed after {attempts} attempt(s): {message}")]
    #[diagnostic(
        code(nodewright::ec2::transport),
        help("check the endpoint (AWS_ENDPOINT_URL), the network, and the region")
    )]
    Transport {
        operation: String,
        message: String,
        attempts: u32,
    },
}

impl Ec2Error {
    /// The AWS error code, when EC2 gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Ec2Error::Api { code, .. } => Some(code),
            Ec2Error::Transport { .. } => None,
        }
    }
}

/// How hard to retry. The defaults give about 10 s of patience in the worst case.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Total attempts, including the first.
    pub max_attempts: u32,
    /// First delay; doubled per attempt, then full jitter.
    pub base_delay: Duration,
    /// Cap on any one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (full jitter over the exponential bound).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        let ms = exp.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=ms))
    }
}

/// Codes that mean "slow down" or "EC2 had a problem": worth retrying.
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "EC2ThrottledException",
    "SlowDown",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
];

/// Whether an error with this code and HTTP status is worth retrying.
pub fn is_retryable(code: Option<&str>, status: Option<u16>) -> bool {
    code.is_some_and(|c| RETRYABLE_CODES.contains(&c))
        || status.is_some_and(|s| s == 429 || s >= 500)
}

/// A hint for a non-retryable EC2 error code.
pub fn hint_for(code: &str) -> Option<String> {
    let h = match code {
        c if c.starts_with("InvalidSubnetID") || c == "InvalidSubnet" => {
            "the subnet does not exist in this account and region; check the node class's subnet selector (`nodewright ec2 resolve`)"
        }
        c if c.starts_with("InvalidAMIID") => {
            "the AMI does not exist, is not shared with this account, or is in another region; check the node class's AMI selector (`nodewright ec2 resolve`)"
        }
        c if c.starts_with("InvalidGroup") || c.starts_with("InvalidSecurityGroupID") => {
            "a security group does not exist; check the node class's security-group selector"
        }
        "UnauthorizedOperation" | "AuthFailure" | "AccessDenied" | "AccessDeniedException" => {
            "the credentials lack an EC2 permission (see docs/ec2.md for the IAM policy), or are for another account"
        }
        "InvalidClientTokenId" | "SignatureDoesNotMatch" | "ExpiredToken" => {
            "the AWS credentials are invalid or expired"
        }
        c if c.starts_with("InvalidLaunchTemplate") => {
            "the launch template is missing or malformed; nodewright recreates its own templates when they are deleted"
        }
        "InvalidParameterValue" | "InvalidParameterCombination" | "InvalidParameter" => {
            "EC2 rejected a request parameter; the message names it"
        }
        "VcpuLimitExceeded" | "InstanceLimitExceeded" | "MaxSpotInstanceCountExceeded" => {
            "an account quota is reached; request a limit increase or lower the pool's limits"
        }
        "InvalidIAMInstanceProfile.NotFound" | "InvalidInstanceProfile" => {
            "the node class's role or instance profile does not exist"
        }
        _ => return None,
    };
    Some(h.to_string())
}

/// Turns an SDK error into an [`Ec2Error`], and says whether it is worth retrying.
pub fn classify<E, R>(operation: &str, err: &SdkError<E, R>, attempts: u32) -> (Ec2Error, bool)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus,
{
    match err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown").to_string();
            let message = se.err().message().unwrap_or("").to_string();
            let status = se.raw().status_u16();
            let retry = is_retryable(Some(&code), Some(status));
            (
                Ec2Error::Api {
                    operation: operation.into(),
                    hint: hint_for(&code),
                    code,
                    message,
                    attempts,
                },
                retry,
            )
        }
        SdkError::ResponseError(re) => {
            let status = re.raw().status_u16();
            (
                Ec2Error::Api {
                    operation: operation.into(),
                    code: format!("HTTP{status}"),
                    message: "unparseable response".into(),
                    hint: None,
                    attempts,
                },
                is_retryable(None, Some(status)),
            )
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => (
            Ec2Error::Transport {
                operation: operation.into(),
                message: format!("{}", aws_sdk_ec2::error::DisplayErrorContext(err)),
                attempts,
            },
            true,
        ),
        _ => (
            Ec2Error::Transport {
                operation: operation.into(),
                message: format!("{}", aws_sdk_ec2::error::DisplayErrorContext(err)),
                attempts,
            },
            false,
        ),
    }
}

/// The HTTP status of a raw response (abstracted so tests need no HTTP types).
pub trait HasStatus {
    /// The status code.
    fn status_u16(&self) -> u16;
}

impl HasStatus for aws_sdk_ec2::config::http::HttpResponse {
    fn status_u16(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Runs `call` until it succeeds, fails with a non-retryable error, or the policy's bound is hit.
pub async fn with_retry<T, E, R, F, Fut>(
    policy: &RetryPolicy,
    operation: &str,
    mut call: F,
) -> Result<T, Ec2Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus,
{
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let (err, retry) = classify(operation, &e, attempt);
                if !retry || attempt >= policy.max_attempts.max(1) {
                    return Err(err);
                }
                tracing::debug!(%operation, attempt, error = %err, "retrying EC2 call");
                tokio::time::sleep(policy.delay(attempt - 1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(is_retryable(Some("RequestLimitExceeded"), Some(503)));
        assert!(is_retryable(Some("Anything"), Some(500)));
        assert!(is_retryable(None, Some(429)));
        assert!(!is_retryable(Some("InvalidSubnetID.NotFound"), Some(400)));
        assert!(!is_retryable(Some("UnauthorizedOperation"), Some(403)));
        assert!(hint_for("InvalidSubnetID.NotFound").is_some_and(|h| h.contains("subnet")));
        assert!(hint_for("InvalidAMIID.Malformed").is_some_and(|h| h.contains("AMI")));
        assert!(hint_for("SomethingNew").is_none());
    }

    /// A raw response that only has a status (our own stand-in; no HTTP stack needed).
    #[derive(Debug)]
    struct Status(u16);
    impl HasStatus for Status {
        fn status_u16(&self) -> u16 {
            self.0
        }
    }

    type DsErr = aws_sdk_ec2::operation::describe_subnets::DescribeSubnetsError;

    fn service_error(code: &str, status: u16) -> SdkError<DsErr, Status> {
        let meta = aws_sdk_ec2::error::ErrorMetadata::builder()
            .code(code)
            .message("m")
            .build();
        SdkError::service_error(DsErr::generic(meta), Status(status))
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn throttling_is_retried_until_it_clears() {
        let mut calls = 0;
        let r: Result<u32, Ec2Error> = with_retry(&fast(), "DescribeSubnets", || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(service_error("RequestLimitExceeded", 503))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.ok(), Some(3));
    }

    #[tokio::test]
    async fn throttling_is_bounded() {
        let mut calls = 0;
        let r: Result<(), Ec2Error> = with_retry(&fast(), "DescribeSubnets", || {
            calls += 1;
            async { Err(service_error("Throttling", 400)) }
        })
        .await;
        assert_eq!(calls, 4);
        match r {
            Err(Ec2Error::Api { code, attempts, .. }) => {
                assert_eq!((code.as_str(), attempts), ("Throttling", 4));
            }
            other => panic!("expected an API error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn validation_errors_are_not_retried() {
        let mut calls = 0;
        let r: Result<(), Ec2Error> = with_retry(&fast(), "DescribeSubnets", || {
            calls += 1;
            async { Err(service_error("InvalidSubnetID.NotFound", 400)) }
        })
        .await;
        assert_eq!(calls, 1);
        let e = r.expect_err("fails");
        assert_eq!(e.code(), Some("InvalidSubnetID.NotFound"));
        assert!(matches!(e, Ec2Error::Api { hint: Some(_), .. }));
    }

    #[test]
    fn delays_are_bounded() {
        let p = RetryPolicy::default();
        for a in 0..40 {
            assert!(p.delay(a) <= p.max_delay);
        }
        assert!(p.delay(0) <= p.base_delay);
    }
}
