//! The controller's own Prometheus metrics (the reloader registers its
//! `policy_*` metrics beside them).
//!
//! Kept apart from the loop so that adding a metric for a new kind of work
//! touches this file and the line that counts it, and the names served on
//! `/metrics` (docs/controller.md lists them) are checked by a test.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Counters and gauges of the pass; clones share their values.
#[derive(Debug, Clone)]
pub(super) struct Metrics {
    /// Provisionable pods in the last pass.
    pub pending_pods: Gauge,
    /// Pods the last plan could place nowhere.
    pub unschedulable_pods: Gauge,
    /// Launched instances whose Node has not registered yet.
    pub claims_in_flight: Gauge,
    /// Instances launched.
    pub launched: Counter,
    /// Planned nodes that could not be launched.
    pub launch_failures: Counter,
    /// Empty nodes removed (Node deleted, instance terminated).
    pub removed: Counter,
    /// Instances terminated because their Node never registered.
    pub registration_timeouts: Counter,
    /// Passes that stopped early.
    pub pass_failures: Counter,
    /// Time to solve one pass.
    pub solve_seconds: Histogram,
    /// 1 while this replica holds the leader lease (or runs without
    /// election), 0 while it stands by.
    pub leader: Gauge,
}

impl Metrics {
    /// New metrics, registered in `r` (the controller registers them under
    /// `nodewright_controller_`).
    pub(super) fn new(r: &mut Registry) -> Metrics {
        let m = Metrics {
            pending_pods: Gauge::default(),
            unschedulable_pods: Gauge::default(),
            claims_in_flight: Gauge::default(),
            launched: Counter::default(),
            launch_failures: Counter::default(),
            removed: Counter::default(),
            registration_timeouts: Counter::default(),
            pass_failures: Counter::default(),
            solve_seconds: Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            leader: Gauge::default(),
        };
        r.register(
            "pending_pods",
            "Provisionable pods in the last pass",
            m.pending_pods.clone(),
        );
        r.register(
            "unschedulable_pods",
            "Pods the last plan could place nowhere",
            m.unschedulable_pods.clone(),
        );
        r.register(
            "claims_in_flight",
            "Launched instances whose Node has not registered yet",
            m.claims_in_flight.clone(),
        );
        r.register("nodes_launched", "Instances launched", m.launched.clone());
        r.register(
            "launch_failures",
            "Planned nodes that could not be launched",
            m.launch_failures.clone(),
        );
        r.register(
            "nodes_removed",
            "Empty nodes removed (Node deleted, instance terminated)",
            m.removed.clone(),
        );
        r.register(
            "registration_timeouts",
            "Instances terminated because their Node never registered",
            m.registration_timeouts.clone(),
        );
        r.register(
            "pass_failures",
            "Passes that stopped early (API errors, unreadable objects)",
            m.pass_failures.clone(),
        );
        r.register(
            "solve_seconds",
            "Time to solve one pass",
            m.solve_seconds.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader lease and acts, 0 while it stands by",
            m.leader.clone(),
        );
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn served_names_and_values() {
        let mut r = Registry::with_prefix("nodewright");
        let m = Metrics::new(r.sub_registry_with_prefix("controller"));
        m.launched.inc();
        m.launched.inc();
        m.pending_pods.set(7);
        m.solve_seconds.observe(0.02);
        let mut text = String::new();
        encode(&mut text, &r).unwrap_or_else(|e| panic!("{e}"));
        for line in [
            "nodewright_controller_nodes_launched_total 2",
            "nodewright_controller_pending_pods 7",
            "nodewright_controller_launch_failures_total 0",
            "nodewright_controller_nodes_removed_total 0",
            "nodewright_controller_registration_timeouts_total 0",
            "nodewright_controller_pass_failures_total 0",
            "nodewright_controller_unschedulable_pods 0",
            "nodewright_controller_claims_in_flight 0",
            "nodewright_controller_solve_seconds_count 1",
            "nodewright_controller_leader 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
    }
}
