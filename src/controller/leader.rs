//! Leader election: two replicas run, one acts.
//!
//! The lease itself (acquire, renew, take over an expired one, release) is
//! kube-lease-manager's; this module decides what the controller may do with
//! what it reports. The pure part ([`Standing`], [`term_end`], [`readiness`],
//! [`identity`], [`LeaderOptions::lease_params`]) is unit-tested; `elect`
//! only moves data between the crate, the Lease object and the run loop.
//!
//! A leader acts only while the Lease, as last read from the API server,
//! names it and has not expired ([`Standing::may_act`]); the run loop asks
//! before every write. So a leader that cannot renew (API server away, the
//! process paused) stops acting by itself before another replica may take
//! over, even if nothing tells it, and one that learns it lost the lease
//! stops before its next write.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::LeaseSpec;

/// How one replica takes part in the election.
#[derive(Debug, Clone)]
pub struct LeaderOptions {
    /// The Lease object's name (`nodewright-controller`).
    pub lease_name: String,
    /// Its namespace (the controller's own).
    pub namespace: String,
    /// This replica's name in `holderIdentity` (the pod name).
    pub identity: String,
    /// How long a lease lasts without renewal: the longest a crashed leader
    /// keeps the other replica waiting (whole seconds; the Lease counts in them).
    pub lease_duration: Duration,
    /// The leader renews this often (less than `lease_duration`).
    pub renew_every: Duration,
    /// The leader re-reads the Lease this often to confirm it still holds it.
    pub retry: Duration,
}

impl LeaderOptions {
    /// controller-runtime's and Karpenter's timing: a 15 s lease, renewed
    /// every 5 s, checked every 2 s.
    pub fn new(lease_name: String, namespace: String, identity: String) -> LeaderOptions {
        LeaderOptions {
            lease_name,
            namespace,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            retry: Duration::from_secs(2),
        }
    }

    /// The crate's (duration, grace) in seconds: it renews `grace` seconds
    /// before the lease would expire. Checked here because the crate panics
    /// on values it does not accept.
    pub(crate) fn lease_params(&self) -> Result<(u64, u64), LeaderError> {
        let duration = self.lease_duration.as_secs();
        let renew = self.renew_every.as_secs();
        if duration < 2 || renew == 0 || renew >= duration {
            return Err(LeaderError::Timing { duration, renew });
        }
        Ok((duration, duration - renew))
    }

    /// How long before the lease's end the leader stops acting: room for
    /// the clocks of the two replicas' nodes to differ, and for a write that
    /// was allowed just before the end to reach the API server.
    fn margin(&self) -> Duration {
        (self.lease_duration / 5).min(Duration::from_secs(2))
    }
}

/// Why the election settings cannot be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LeaderError {
    #[error(
        "a lease of {duration}s renewed every {renew}s cannot work: renewal must come before the lease ends"
    )]
    #[diagnostic(
        code(nodewright::controller::lease),
        help(
            "pick --lease-renew-secs at least 1 and less than --lease-duration-secs (at least 2), e.g. 5 and 15"
        )
    )]
    Timing { duration: u64, renew: u64 },
}

/// What this replica may do now; the run loop reads it before every write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// No election (`--leader-elect=false`): the only replica always acts.
    Alone,
    /// Holds the lease until `until` (already shortened by the margin), in
    /// its `term`-th leadership since start.
    Leader { until: SystemTime, term: u64 },
    /// Another replica holds the lease, or none does yet.
    Follower,
}

impl Standing {
    /// Whether a write may go out now.
    pub(crate) fn may_act(&self, now: SystemTime) -> bool {
        match self {
            Standing::Alone => true,
            Standing::Leader { until, .. } => now < *until,
            Standing::Follower => false,
        }
    }

    /// Whether this replica counts as the leader (the `leader` gauge and
    /// `/readyz`), regardless of the lease's time left.
    pub(crate) fn leading(&self) -> bool {
        !matches!(self, Standing::Follower)
    }

    /// Which leadership this is: state kept between passes belongs to one
    /// term (another replica may have acted in between).
    pub(crate) fn term(&self) -> u64 {
        match self {
            Standing::Leader { term, .. } => *term,
            Standing::Alone | Standing::Follower => 0,
        }
    }
}

/// Until when `me` may act on a Lease read from the API server: its renew
/// time plus its duration, less `margin`; None when the Lease names someone
/// else or nobody, or lacks the times.
pub(crate) fn term_end(spec: Option<&LeaseSpec>, me: &str, margin: Duration) -> Option<SystemTime> {
    let spec = spec?;
    if spec.holder_identity.as_deref() != Some(me) {
        return None;
    }
    // Through seconds, not jiff's `From`, which needs its `std` feature (on only with kube).
    let ts = spec.renew_time.as_ref()?.0;
    let renewed = SystemTime::UNIX_EPOCH
        + Duration::new(
            u64::try_from(ts.as_second()).ok()?,
            u32::try_from(ts.subsec_nanosecond()).ok()?,
        );
    let secs = u64::try_from(spec.lease_duration_seconds?).ok()?;
    (renewed + Duration::from_secs(secs)).checked_sub(margin)
}

/// Whether a Lease read by a follower names no holder: its leader gave it
/// up (shut down). The crate would only look again when the old term would
/// have ended; a follower that sees this asks for the lease at once.
pub(crate) fn released(spec: Option<&LeaseSpec>) -> bool {
    spec.and_then(|s| s.holder_identity.as_deref())
        .is_none_or(str::is_empty)
}

/// The line logged when leadership changes from `before` to `after`; None
/// when it did not (a renewal only moves `until`).
pub(crate) fn transition(before: Standing, after: Standing, me: &str) -> Option<String> {
    match (before.leading(), after.leading()) {
        (false, true) => Some(format!(
            "{me} is now the leader: launching and removing nodes"
        )),
        (true, false) => Some(format!(
            "{me} is no longer the leader: standing by (no launches or removals)"
        )),
        _ => None,
    }
}

/// `/readyz`: ready to act means leading and one pass completed. A standby
/// probe (`standby`, what the Deployment's readiness probe asks) also
/// accepts a follower, which is healthy and ready to take over; Kubernetes
/// counts it as available, so a PodDisruptionBudget can still let the
/// leader's node drain.
pub(crate) fn readiness(leading: bool, passed: bool, standby: bool) -> (bool, &'static str) {
    match (leading, passed) {
        (true, true) => (true, "ok: leader\n"),
        (true, false) => (false, "leader, but no pass completed yet\n"),
        (false, _) if standby => (true, "ok: not the leader, standing by\n"),
        (false, _) => (false, "not the leader: standing by\n"),
    }
}

/// This replica's `holderIdentity`: the pod's name when it has one (unique
/// in its namespace, and what `kubectl get lease` readers look for), else
/// the host's name with a random suffix (two processes on one host differ).
pub(crate) fn identity(pod_name: Option<&str>, hostname: Option<&str>, suffix: &str) -> String {
    match (
        pod_name.filter(|p| !p.is_empty()),
        hostname.map(str::trim).filter(|h| !h.is_empty()),
    ) {
        (Some(pod), _) => pod.to_string(),
        (None, Some(host)) => format!("{host}-{suffix}"),
        (None, None) => format!("nodewright-{suffix}"),
    }
}

/// This process's identity from its environment: `POD_NAME` (the
/// Deployment sets it from the downward API), else the host's name
/// (`HOSTNAME`, else the kernel's) with a random suffix.
pub fn local_identity() -> String {
    let pod = std::env::var("POD_NAME").ok();
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok());
    identity(
        pod.as_deref(),
        host.as_deref(),
        &super::claims::random_suffix(),
    )
}

#[cfg(feature = "controller")]
pub(super) use io::elect;

#[cfg(feature = "controller")]
mod io {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::SystemTime;

    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::Api;
    use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
    use prometheus_client::metrics::gauge::Gauge;
    use tokio::sync::watch;

    use super::{LeaderOptions, Standing, released, term_end, transition};

    /// A running election: its standing, and the way to end it.
    pub(in crate::controller) struct Election {
        pub standing: watch::Receiver<Standing>,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Election {
        /// Gives the lease up (if held) so the other replica takes over at
        /// once, and waits for that, at most `within`.
        pub(in crate::controller) async fn release(mut self, within: std::time::Duration) {
            let _ = self.stop.send(true);
            if tokio::time::timeout(within, &mut self.task).await.is_err() {
                tracing::warn!("releasing the lease took over {within:?}; it expires by itself");
                self.task.abort();
            }
        }
    }

    impl Drop for Election {
        /// A controller dropped without `release` (its task aborted, as a
        /// crash would) stops renewing; the lease then expires by itself.
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// Starts taking part in the election. `leading` and `gauge` follow the
    /// standing (for `/readyz` and `/metrics`).
    pub(in crate::controller) fn elect(
        client: kube::Client,
        opts: LeaderOptions,
        leading: Arc<AtomicBool>,
        gauge: Gauge,
    ) -> Election {
        let (tx, standing) = watch::channel(Standing::Follower);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(client, opts, tx, stop_rx, leading, gauge));
        Election {
            standing,
            stop,
            task,
        }
    }

    type Changed = Pin<Box<dyn Future<Output = kube_lease_manager::Result<bool>> + Send>>;

    /// The crate's next change of our lock state, as a future that survives
    /// the loop's other branches (dropping it mid-renewal would cut the request).
    fn next_change(m: &Arc<LeaseManager>) -> Changed {
        let m = Arc::clone(m);
        Box::pin(async move { m.changed().await })
    }

    /// Publishes a standing, logging and counting a change of leadership.
    struct Publisher {
        tx: watch::Sender<Standing>,
        leading: Arc<AtomicBool>,
        gauge: Gauge,
        me: String,
        terms: u64,
    }

    impl Publisher {
        fn set(&mut self, next: Standing) {
            let before = *self.tx.borrow();
            if let Some(line) = transition(before, next, &self.me) {
                tracing::info!("{line}");
            }
            self.leading.store(next.leading(), Ordering::Relaxed);
            self.gauge.set(i64::from(next.leading()));
            self.tx.send_replace(next);
        }

        /// Leader until `until`: a new term when it was not leading.
        fn lead(&mut self, until: SystemTime) {
            let term = match *self.tx.borrow() {
                Standing::Leader { term, .. } => term,
                _ => {
                    self.terms += 1;
                    self.terms
                }
            };
            self.set(Standing::Leader { until, term });
        }
    }

    /// The Lease as the API server has it, within one check period: a read
    /// that hangs must not hold up shutdown or the crate's renewals.
    async fn read(
        leases: &Api<Lease>,
        opts: &LeaderOptions,
    ) -> Result<kube::Result<Lease>, tokio::time::error::Elapsed> {
        tokio::time::timeout(opts.retry, leases.get(&opts.lease_name)).await
    }

    async fn run(
        client: kube::Client,
        opts: LeaderOptions,
        tx: watch::Sender<Standing>,
        mut stop: watch::Receiver<bool>,
        leading: Arc<AtomicBool>,
        gauge: Gauge,
    ) {
        let mut out = Publisher {
            tx,
            leading,
            gauge,
            me: opts.identity.clone(),
            terms: 0,
        };
        out.set(Standing::Follower);
        // Checked by the caller (`Controller::new`); a fallback keeps this total.
        let (duration, grace) = opts.lease_params().unwrap_or((15, 10));
        let leases: Api<Lease> = Api::namespaced(client.clone(), &opts.namespace);
        let margin = opts.margin();
        tracing::info!(
            "{} takes part in the election on lease {}/{} ({duration}s, renewed every {}s)",
            opts.identity,
            opts.namespace,
            opts.lease_name,
            duration - grace
        );
        loop {
            // A fresh manager starts from what the Lease says: after an
            // error, or a lease found held by another, the crate's own view
            // may be stale.
            let built = LeaseManagerBuilder::new(client.clone(), &opts.lease_name)
                .with_namespace(&opts.namespace)
                .with_identity(&opts.identity)
                .with_duration(duration)
                .with_grace(grace)
                .build()
                .await;
            let manager = match built {
                Ok(m) => Arc::new(m),
                Err(e) => {
                    out.set(Standing::Follower);
                    tracing::warn!("lease {}: {e}; retrying", opts.lease_name);
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tokio::time::sleep(opts.retry) => continue,
                    }
                }
            };
            let mut changed = next_change(&manager);
            let mut held = false;
            // The first check waits a period: the new manager asks first.
            let mut check =
                tokio::time::interval_at(tokio::time::Instant::now() + opts.retry, opts.retry);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // While held: confirm the lease right after acquiring, then every period.
            let mut leader_check = tokio::time::interval(opts.retry);
            leader_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = stop.changed() => {
                        // Stop acting first, then give the lease up.
                        out.set(Standing::Follower);
                        drop(changed);
                        // Also when not known to hold it: the dropped request
                        // may just have taken it. The crate leaves another's alone.
                        match manager.release().await {
                            Ok(()) if held => tracing::info!("{} released lease {}", opts.identity, opts.lease_name),
                            Ok(()) => {}
                            Err(e) => tracing::warn!("releasing lease {}: {e}; it expires by itself", opts.lease_name),
                        }
                        return;
                    }
                    r = &mut changed => {
                        changed = next_change(&manager);
                        match r {
                            Ok(true) => {
                                // Acts once the Lease read back confirms it (next branch, now).
                                held = true;
                                leader_check.reset_immediately();
                            }
                            Ok(false) => {
                                held = false;
                                out.set(Standing::Follower);
                            }
                            Err(e) => {
                                out.set(Standing::Follower);
                                tracing::warn!("lease {}: {e}; standing by and retrying", opts.lease_name);
                                drop(changed);
                                tokio::select! {
                                    _ = stop.changed() => return,
                                    _ = tokio::time::sleep(opts.retry) => {}
                                }
                                break;
                            }
                        }
                    }
                    _ = check.tick(), if !held => {
                        // A released lease is taken at once, not when the old term would end.
                        if let Ok(Ok(l)) = read(&leases, &opts).await
                            && released(l.spec.as_ref())
                        {
                            tracing::debug!("lease {} was released; asking for it", opts.lease_name);
                            drop(changed);
                            break;
                        }
                    }
                    _ = leader_check.tick(), if held => {
                        let got = match read(&leases, &opts).await {
                            Ok(r) => r.map_err(|e| e.to_string()),
                            Err(_) => Err(format!("no answer within {:?}", opts.retry)),
                        };
                        match got {
                            Ok(l) => match term_end(l.spec.as_ref(), &opts.identity, margin) {
                                Some(until) => out.lead(until),
                                None => {
                                    tracing::warn!(
                                        "lease {} is held by {}; standing by",
                                        opts.lease_name,
                                        l.spec.and_then(|s| s.holder_identity).unwrap_or_else(|| "nobody".into())
                                    );
                                    out.set(Standing::Follower);
                                    break;
                                }
                            },
                            Err(e) => {
                                // The last `until` still holds, and ends by itself.
                                tracing::warn!("reading lease {}: {e}", opts.lease_name);
                                let expired = !out.tx.borrow().may_act(SystemTime::now());
                                if expired && out.tx.borrow().leading() {
                                    out.set(Standing::Follower);
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use k8s_openapi::jiff::Timestamp;

    fn spec(holder: Option<&str>, renewed: Option<SystemTime>, secs: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(String::from),
            renew_time: renewed.map(|t| {
                let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
                MicroTime(Timestamp::new(d.as_secs() as i64, d.subsec_nanos() as i32).unwrap())
            }),
            lease_duration_seconds: secs,
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_term_ends_at_renewal_plus_duration_less_the_margin() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let s = spec(Some("a"), Some(t), Some(15));
        assert_eq!(
            term_end(Some(&s), "a", Duration::from_secs(2)),
            Some(t + Duration::from_secs(13))
        );
    }

    #[test]
    fn no_term_for_another_holder_nobody_or_missing_times() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let m = Duration::from_secs(2);
        assert_eq!(term_end(None, "a", m), None);
        assert_eq!(
            term_end(Some(&spec(Some("b"), Some(t), Some(15))), "a", m),
            None
        );
        assert_eq!(term_end(Some(&spec(None, Some(t), Some(15))), "a", m), None);
        assert_eq!(
            term_end(Some(&spec(Some("a"), None, Some(15))), "a", m),
            None
        );
        assert_eq!(
            term_end(Some(&spec(Some("a"), Some(t), None)), "a", m),
            None
        );
        assert_eq!(
            term_end(Some(&spec(Some("a"), Some(t), Some(-1))), "a", m),
            None
        );
    }

    #[test]
    fn a_lease_without_holder_was_released() {
        let t = SystemTime::UNIX_EPOCH;
        assert!(released(None));
        assert!(released(Some(&LeaseSpec::default())));
        assert!(released(Some(&spec(Some(""), None, None))));
        assert!(!released(Some(&spec(Some("b"), Some(t), Some(15)))));
    }

    #[test]
    fn a_leader_acts_only_before_its_term_ends() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let s = Standing::Leader { until: t, term: 1 };
        assert!(s.may_act(t - Duration::from_millis(1)));
        assert!(!s.may_act(t));
        assert!(s.leading(), "still the leader until it learns otherwise");
        assert!(!Standing::Follower.may_act(t));
        assert!(Standing::Alone.may_act(t));
        assert_eq!(Standing::Follower.term(), 0);
        assert_eq!(s.term(), 1);
    }

    #[test]
    fn transitions_are_logged_once_not_on_renewal() {
        let t = SystemTime::UNIX_EPOCH;
        let l1 = Standing::Leader { until: t, term: 1 };
        let l2 = Standing::Leader {
            until: t + Duration::from_secs(5),
            term: 1,
        };
        assert!(
            transition(Standing::Follower, l1, "a")
                .unwrap()
                .contains("a is now the leader")
        );
        assert_eq!(transition(l1, l2, "a"), None);
        assert!(
            transition(l2, Standing::Follower, "a")
                .unwrap()
                .contains("no longer the leader")
        );
        assert_eq!(
            transition(Standing::Follower, Standing::Follower, "a"),
            None
        );
    }

    #[test]
    fn readiness_of_leader_and_follower() {
        assert!(readiness(true, true, false).0);
        assert!(readiness(true, true, true).0);
        let (ok, body) = readiness(true, false, true);
        assert!(!ok && body.contains("no pass"));
        let (ok, body) = readiness(false, true, false);
        assert!(!ok && body.contains("not the leader"));
        let (ok, body) = readiness(false, false, true);
        assert!(ok && body.contains("standing by"));
    }

    #[test]
    fn identity_prefers_the_pod_name() {
        assert_eq!(identity(Some("nw-1"), Some("host"), "x1"), "nw-1");
        assert_eq!(identity(Some(""), Some("host\n"), "x1"), "host-x1");
        assert_eq!(identity(None, None, "x1"), "nodewright-x1");
    }

    #[test]
    fn lease_timing_is_checked_before_the_crate_sees_it() {
        let mut o = LeaderOptions::new("l".into(), "ns".into(), "me".into());
        assert_eq!(o.lease_params().unwrap(), (15, 10));
        assert_eq!(o.margin(), Duration::from_secs(2));
        o.renew_every = Duration::from_secs(15);
        assert!(o.lease_params().is_err());
        o.renew_every = Duration::from_millis(500);
        assert!(o.lease_params().is_err());
        o.lease_duration = Duration::from_secs(3);
        o.renew_every = Duration::from_secs(1);
        assert_eq!(o.lease_params().unwrap(), (3, 2));
        assert_eq!(o.margin(), Duration::from_millis(600));
    }
}
