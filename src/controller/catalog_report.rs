//! What the controller makes of a live catalog refresh (`cloud::refresh`):
//! metrics and one log line. Kept out of the run loop, which only wires it.

use super::metrics::Metrics;
use crate::cloud::discover::Discovery;
use crate::cloud::retry::Ec2Error;

/// Counts and logs one refresh; a failure keeps the last good catalog.
pub(super) fn report(m: &Metrics, r: &Result<Discovery, Ec2Error>) {
    match r {
        Ok(d) => {
            m.catalog_refreshes.inc();
            m.catalog_types.set(d.catalog.types.len() as i64);
            tracing::info!(
                "catalog refreshed: {} types, {} offerings in {}{}",
                d.catalog.types.len(),
                d.catalog.offerings.len(),
                d.catalog.region,
                if d.spot_prices_estimated {
                    " (spot prices estimated)"
                } else {
                    ""
                }
            );
        }
        Err(e) => {
            m.catalog_refresh_failures.inc();
            tracing::warn!(
                "catalog refresh failed, planning from the last good catalog: {:?}",
                miette::Report::new(e.clone())
            );
        }
    }
}
