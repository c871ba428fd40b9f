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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use prometheus_client::registry::Registry;

    #[test]
    fn refreshes_and_failures_are_counted() {
        let m = Metrics::new(&mut Registry::default());
        let catalog = Catalog::embedded().expect("embedded catalog");
        let types = catalog.types.len() as i64;
        let ok = Ok(Discovery {
            catalog,
            unpriced: vec![],
            spot_prices_estimated: true,
            warnings: vec![],
        });
        report(&m, &ok);
        let failed = Err(Ec2Error::Transport {
            operation: "DescribeInstanceTypes".into(),
            message: "connection refused".into(),
            attempts: 5,
        });
        report(&m, &failed);
        report(&m, &failed);
        assert_eq!(m.catalog_refreshes.get(), 1);
        assert_eq!(m.catalog_refresh_failures.get(), 2);
        // A failure leaves the figure of the last good catalog.
        assert_eq!(m.catalog_types.get(), types);
    }
}
