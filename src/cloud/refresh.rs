//! The controller's catalog: where it comes from, and keeping it fresh.
//!
//! `--catalog live` (the controller's default) discovers the region's types,
//! offerings and spot prices from EC2 ([`super::discover`]) before the first
//! pass, then re-discovers every `--catalog-refresh-secs` on a task of its
//! own. Each pass loads the current catalog once (an `arc-swap` load, no
//! lock), so a refresh lands between passes, never inside one. A refresh
//! that fails is logged and counted by the caller's `report`, and the last
//! good catalog stays; the next attempt comes sooner than a full interval
//! ([`retry_delay`]).
//!
//! The first discovery must succeed: the controller does not start on the
//! embedded catalog instead, because that catalog is us-east-1's (zones,
//! types) and in any other region every plan made from it would fail at
//! launch, one confusing CreateFleet error at a time. A start-up error that
//! names the region and the missing permission, with the pod restarted by
//! its Deployment, is the failure a platform team can act on.
//! `--catalog embedded` or a file stays for air-gapped tests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::discover::{Discovery, LiveCatalog, PriceTableError, default_price_table};
use super::ec2::Ec2Settings;
use super::retry::Ec2Error;
use crate::catalog::Catalog;

/// Hourly: spot prices move within hours, while types and offerings change
/// rarely; one refresh is ~20-40 read-only describe calls, negligible
/// against EC2's request limits.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);

/// After a failed refresh, the next attempt comes after this (or the
/// interval, if shorter): a throttled or briefly unreachable API should not
/// leave the catalog an hour staler than it need be.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(300);

/// What `--catalog` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogSpec {
    /// Discover from EC2 in the configured region, refreshed on an interval.
    Live,
    /// The embedded us-east-1 catalog (offline, tests).
    Embedded,
    /// A catalog JSON file (air-gapped tests).
    File(PathBuf),
}

impl CatalogSpec {
    /// `live`, `embedded`, or a path.
    pub fn parse(s: &str) -> CatalogSpec {
        match s {
            "live" => CatalogSpec::Live,
            "embedded" => CatalogSpec::Embedded,
            p => CatalogSpec::File(PathBuf::from(p)),
        }
    }
}

/// The catalog each pass plans from: fixed, or live and refreshed.
#[derive(Clone)]
pub enum CatalogSource {
    /// Never changes (embedded, a file, or a test's).
    Fixed(Arc<Catalog>),
    /// Discovered from EC2; [`spawn_refresh`] keeps it fresh.
    Live(Arc<LiveCatalog>),
}

impl From<Arc<Catalog>> for CatalogSource {
    fn from(c: Arc<Catalog>) -> Self {
        CatalogSource::Fixed(c)
    }
}

impl From<Arc<LiveCatalog>> for CatalogSource {
    fn from(c: Arc<LiveCatalog>) -> Self {
        CatalogSource::Live(c)
    }
}

impl CatalogSource {
    /// The current catalog: what one pass uses from start to end.
    pub fn get(&self) -> Arc<Catalog> {
        match self {
            CatalogSource::Fixed(c) => Arc::clone(c),
            CatalogSource::Live(l) => l.get(),
        }
    }

    /// For a live catalog, starts refreshing it every `every` (see
    /// [`spawn_refresh`]); a fixed one has nothing to refresh.
    pub fn spawn_refresh(
        &self,
        every: Duration,
        report: impl Fn(&Result<Discovery, Ec2Error>) + Send + Sync + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        match self {
            CatalogSource::Fixed(_) => None,
            CatalogSource::Live(l) => Some(spawn_refresh(Arc::clone(l), every, report)),
        }
    }
}

/// Why the live catalog could not be loaded at start-up.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StartCatalogError {
    #[error("no AWS region is configured, so there is no catalog to discover")]
    #[diagnostic(
        code(nodewright::catalog::no_region),
        help(
            "set --region or AWS_REGION (or a profile's region; on EC2, IMDS supplies it); the controller discovers that region's instance types"
        )
    )]
    NoRegion,
    #[error("discovering the {region} catalog from EC2 failed")]
    #[diagnostic(
        code(nodewright::catalog::discovery),
        help(
            "the controller needs ec2:DescribeInstanceTypes, ec2:DescribeInstanceTypeOfferings, ec2:DescribeAvailabilityZones and ec2:DescribeSpotPriceHistory in {region}; check its IAM role and the endpoint. `--catalog embedded` plans from the built-in us-east-1 catalog instead (tests only)"
        )
    )]
    Discovery {
        region: String,
        #[source]
        #[diagnostic_source]
        source: Ec2Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Prices(#[from] PriceTableError),
}

/// Discovers the catalog of the configured region (from `settings` and the
/// standard AWS chain) once: the controller's first catalog.
pub async fn start_live(
    settings: &Ec2Settings,
) -> Result<(Arc<LiveCatalog>, Discovery), StartCatalogError> {
    let config = super::ec2::load(settings).await;
    let region = config
        .region()
        .map(|r| r.as_ref().to_string())
        .ok_or(StartCatalogError::NoRegion)?;
    let client = aws_sdk_ec2::Client::new(&config);
    let prices = default_price_table()?;
    LiveCatalog::start(client, &region, prices)
        .await
        .map_err(|source| StartCatalogError::Discovery { region, source })
}

/// How long to wait before the next refresh, after one that succeeded or not.
pub fn retry_delay(every: Duration, last_ok: bool) -> Duration {
    if last_ok {
        every
    } else {
        every.min(RETRY_AFTER_FAILURE)
    }
}

/// Refreshes `live` every `every` (sooner after a failure) until the task
/// is aborted; `report` sees every outcome (the controller counts failures
/// and logs what changed). A failure keeps the last good catalog.
pub fn spawn_refresh(
    live: Arc<LiveCatalog>,
    every: Duration,
    report: impl Fn(&Result<Discovery, Ec2Error>) + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    let every = every.max(Duration::from_millis(10));
    tokio::spawn(async move {
        let mut wait = every;
        loop {
            tokio::time::sleep(wait).await;
            let r = live.refresh().await;
            report(&r);
            wait = retry_delay(every, r.is_ok());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_spec_parses() {
        assert_eq!(CatalogSpec::parse("live"), CatalogSpec::Live);
        assert_eq!(CatalogSpec::parse("embedded"), CatalogSpec::Embedded);
        assert_eq!(
            CatalogSpec::parse("cat.json"),
            CatalogSpec::File("cat.json".into())
        );
    }

    #[test]
    fn a_failure_retries_sooner() {
        let h = Duration::from_secs(3600);
        assert_eq!(retry_delay(h, true), h);
        assert_eq!(retry_delay(h, false), RETRY_AFTER_FAILURE);
        let short = Duration::from_secs(30);
        assert_eq!(retry_delay(short, false), short);
    }

    #[test]
    fn a_fixed_source_hands_out_its_catalog() {
        let c = Arc::new(Catalog {
            region: "eu-west-1".into(),
            zones: vec![],
            types: vec![],
            offerings: vec![],
        });
        let s = CatalogSource::from(Arc::clone(&c));
        assert!(Arc::ptr_eq(&s.get(), &c));
    }
}
