//! The controller's own Prometheus metrics (the reloader registers its
//! `policy_*` metrics beside them).
//!
//! Kept apart from the loop so that adding a metric for a new kind of work
//! touches this file and the line that counts it, and the names served on
//! `/metrics` (docs/controller.md lists them) are checked by a test.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
    /// Claims deleted because their instance was gone.
    pub gc_claims_deleted: Counter,
    /// Instances of ours that no claim owned, terminated.
    pub gc_instances_terminated: Counter,
    /// Launch templates no pool launches with any more, deleted.
    pub gc_launch_templates_deleted: Counter,
    /// Instance profiles whose role no node class names any more, deleted.
    pub gc_instance_profiles_deleted: Counter,
    /// Time to solve one pass.
    pub solve_seconds: Histogram,
    /// Live catalog refreshes that failed (the last good catalog stayed).
    pub catalog_refresh_failures: Counter,
    /// Live catalog refreshes that replaced the catalog.
    pub catalog_refreshes: Counter,
    /// Instance types in the catalog the passes plan from.
    pub catalog_types: Gauge,
    /// Watch errors by kind (each is retried by the watcher).
    pub watch_errors: WatchErrors,
    /// Wall time of a pass, by what started it (`batch` or `resync`).
    pub pass_seconds: ByLabel<Histogram>,
    /// Process CPU time during a pass, by what started it.
    pub pass_cpu_seconds: ByLabel<Histogram>,
    /// From a batch closing to the last launch of the pass it started.
    pub batch_to_last_launch_seconds: Histogram,
    /// Wall time of each part of a pass (`snapshot`, `ec2`, `reach`, `load`, `solve`, `launch`, ...).
    pub pass_phase_seconds: ByLabel<Histogram>,
    /// Process CPU time of each part of a pass.
    pub pass_phase_cpu_seconds: ByLabel<Histogram>,
    /// 1 while this replica holds the leader lease (or runs without
    /// election), 0 while it stands by.
    pub leader: Gauge,
    /// Nodes handed to termination by the disruption pass, by reason
    /// (`expired`, `drifted`, `empty`, `underutilized`).
    pub disruptions: ByLabel<Counter>,
    /// What the nodes nodewright launched cost per hour, at the catalog's
    /// prices (the price of the launched offering).
    pub cluster_price_per_hour: Gauge<f64, std::sync::atomic::AtomicU64>,
}

/// Metrics with one label (`kind`, `trigger` or `phase`).
pub(super) type ByLabel<M> = Family<[(&'static str, &'static str); 1], M, fn() -> M>;

/// `watch_errors_total{kind}`; clones share their values.
#[derive(Debug, Clone, Default)]
pub(super) struct WatchErrors(Family<[(&'static str, &'static str); 1], Counter>);

impl WatchErrors {
    /// Counts one error of the watch of `kind`.
    pub(super) fn inc(&self, kind: &'static str) {
        self.0.get_or_create(&[("kind", kind)]).inc();
    }
}

/// Buckets for whole passes: 10 ms to 30 s.
fn pass_histogram() -> Histogram {
    Histogram::new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0])
}

/// Buckets for parts of a pass: 1 ms to 10 s.
fn phase_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
    ])
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
            gc_claims_deleted: Counter::default(),
            gc_instances_terminated: Counter::default(),
            gc_launch_templates_deleted: Counter::default(),
            gc_instance_profiles_deleted: Counter::default(),
            solve_seconds: Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            catalog_refresh_failures: Counter::default(),
            catalog_refreshes: Counter::default(),
            catalog_types: Gauge::default(),
            watch_errors: WatchErrors::default(),
            pass_seconds: Family::new_with_constructor(pass_histogram),
            pass_cpu_seconds: Family::new_with_constructor(pass_histogram),
            batch_to_last_launch_seconds: pass_histogram(),
            pass_phase_seconds: Family::new_with_constructor(phase_histogram),
            pass_phase_cpu_seconds: Family::new_with_constructor(phase_histogram),
            leader: Gauge::default(),
            disruptions: Family::new_with_constructor(Counter::default),
            cluster_price_per_hour: Gauge::default(),
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
            "gc_claims_deleted",
            "Claims deleted because their instance was gone",
            m.gc_claims_deleted.clone(),
        );
        r.register(
            "gc_instances_terminated",
            "Instances of this cluster that no claim owned, terminated",
            m.gc_instances_terminated.clone(),
        );
        r.register(
            "gc_launch_templates_deleted",
            "Launch templates no pool launches with any more, deleted",
            m.gc_launch_templates_deleted.clone(),
        );
        r.register(
            "gc_instance_profiles_deleted",
            "Instance profiles whose role no node class names any more, deleted",
            m.gc_instance_profiles_deleted.clone(),
        );
        r.register(
            "solve_seconds",
            "Time to solve one pass",
            m.solve_seconds.clone(),
        );
        r.register(
            "catalog_refresh_failures",
            "Live catalog refreshes that failed (the last good catalog stayed)",
            m.catalog_refresh_failures.clone(),
        );
        r.register(
            "catalog_refreshes",
            "Live catalog refreshes that replaced the catalog",
            m.catalog_refreshes.clone(),
        );
        r.register(
            "catalog_types",
            "Instance types in the catalog the passes plan from",
            m.catalog_types.clone(),
        );
        r.register(
            "watch_errors",
            "Watch errors by kind; the watch resumes or re-lists by itself",
            m.watch_errors.0.clone(),
        );
        r.register(
            "pass_seconds",
            "Wall time of a pass, by trigger (batch or resync)",
            m.pass_seconds.clone(),
        );
        r.register(
            "pass_cpu_seconds",
            "Process CPU time during a pass, by trigger (batch or resync)",
            m.pass_cpu_seconds.clone(),
        );
        r.register(
            "batch_to_last_launch_seconds",
            "From a batch closing to the last launch of the pass it started",
            m.batch_to_last_launch_seconds.clone(),
        );
        r.register(
            "pass_phase_seconds",
            "Wall time of each part of a pass",
            m.pass_phase_seconds.clone(),
        );
        r.register(
            "pass_phase_cpu_seconds",
            "Process CPU time of each part of a pass",
            m.pass_phase_cpu_seconds.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader lease and acts, 0 while it stands by",
            m.leader.clone(),
        );
        r.register(
            "disruptions",
            "Nodes handed to termination by the disruption pass, by reason",
            m.disruptions.clone(),
        );
        r.register(
            "cluster_price_per_hour",
            "What the nodes nodewright launched cost per hour, at catalog prices",
            m.cluster_price_per_hour.clone(),
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
        m.watch_errors.inc("pods");
        m.pass_seconds
            .get_or_create(&[("trigger", "batch")])
            .observe(0.3);
        m.batch_to_last_launch_seconds.observe(0.5);
        m.disruptions.get_or_create(&[("reason", "drifted")]).inc();
        m.cluster_price_per_hour.set(1.25);
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
            "nodewright_controller_catalog_refresh_failures_total 0",
            "nodewright_controller_catalog_refreshes_total 0",
            "nodewright_controller_catalog_types 0",
            "nodewright_controller_watch_errors_total{kind=\"pods\"} 1",
            "nodewright_controller_pass_seconds_count{trigger=\"batch\"} 1",
            "nodewright_controller_batch_to_last_launch_seconds_sum 0.5",
            "nodewright_controller_gc_claims_deleted_total 0",
            "nodewright_controller_gc_instances_terminated_total 0",
            "nodewright_controller_gc_launch_templates_deleted_total 0",
            "nodewright_controller_gc_instance_profiles_deleted_total 0",
            "nodewright_controller_leader 0",
            "nodewright_controller_disruptions_total{reason=\"drifted\"} 1",
            "nodewright_controller_cluster_price_per_hour 1.25",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
    }
}
