//! The controller's I/O: the API server, the solver and EC2, and nothing else.
//!
//! A pass observes (reads the watch caches of the cluster's Nodes, Pods,
//! DaemonSets, volumes, classes and Namespaces, kept by `stores`, and lists
//! our EC2 instances), then runs the steps of
//! `steps` in order, each a pure function of that snapshot returning
//! actions, and carries the actions out here (`apply`), recording what came
//! back (claims for launched nodes). The metrics are in `metrics`.
//!
//! Passes run when a batch of pod events closes (`batch`) and every
//! `resync` regardless, which drives claim timeouts and empty-node removal.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Resource;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use prometheus_client::registry::Registry;

use super::action::Sequence as Seq;
use super::action::{Action, PodEvent, Sequence};
use super::batch::Batcher;
use super::claims::random_suffix;
use super::clock::{PassClock, Trigger};
use super::consolidation;
use super::disrupt::EmptySince;
use super::disruption;
use super::gc::{self, GcAction, GcOptions};
use super::launchable::{Reach, narrow};
use super::leader::{LeaderError, LeaderOptions, Standing, elect};
use super::metrics::Metrics;
use super::nodeclaim::lifecycle::{self, LaunchInfo, Tracked};
use super::nodeclaim::{NodeClaim, NodeClaimStatus};
use super::notice::Notices;
use super::reload_line;
use super::serve::{Endpoints, serve};
use super::steps::{self, Observed, Placed};
use super::stores::Stores;
use super::terminate::{self, Progress, plan::Backoffs};
use crate::catalog::Catalog;
use crate::catalog::UnavailableOfferings;
use crate::cloud::ec2::{Ec2Settings, iam, load, ssm};
use crate::cloud::iam::InstanceProfiles;
use crate::cloud::launcher::{Ec2Launcher, LaunchRequest, Launcher, launched_labels};
use crate::cloud::refresh::{CatalogSource, DEFAULT_REFRESH};
use crate::cloud::userdata::ClusterInfo;
use crate::ir::{NodeClass, PolicySet, Pool, Resources};
use crate::reload::{Outcome, ReloadOptions, Reloader, Version, WatchOptions};
use crate::solver::{Plan, PlannedNode};
use crate::workload::Workload;

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Policy files or folders (a mounted ConfigMap), watched for changes.
    pub policy: Vec<PathBuf>,
    /// Written into every node's bootstrap; `name` also tags every instance.
    pub cluster: ClusterInfo,
    pub ec2: Ec2Settings,
    /// A batch closes after this long without pod events...
    pub batch_idle: Duration,
    /// ...or this long after it opened.
    pub batch_max: Duration,
    /// A pass runs at least this often (claim timeouts, empty nodes).
    pub resync: Duration,
    /// A launched instance whose Node has not appeared by then is terminated.
    pub registration_ttl: Duration,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`; None serves nothing.
    pub metrics_addr: Option<SocketAddr>,
    pub watch: WatchOptions,
    /// What a policy reload accepts (an empty policy is refused by default).
    pub reload: ReloadOptions,
    /// How often a live catalog is discovered again (`cloud::refresh`).
    pub catalog_refresh: Duration,
    /// Garbage collection of gone claims, orphan instances and unused launch templates.
    pub gc: GcOptions,
    /// Leader election on a Lease, so that of two replicas only one acts;
    /// None: this process always acts (one replica only).
    pub leader: Option<LeaderOptions>,
    /// The SQS queue (name or URL) EventBridge feeds with interruption
    /// events (`interruption`); None: no interruption handling.
    pub interruption_queue: Option<String>,
    /// Consolidation re-plans the cluster's pods: it decides at most this
    /// often (and only when the cluster is settled, see `consolidation`).
    pub consolidation_interval: Duration,
}

impl Options {
    /// Karpenter's batching (1 s idle, 10 s max), a 10 s resync and a 15 min registration timeout.
    pub fn new(policy: Vec<PathBuf>, cluster: ClusterInfo, ec2: Ec2Settings) -> Options {
        Options {
            policy,
            cluster,
            ec2,
            batch_idle: Duration::from_secs(1),
            batch_max: Duration::from_secs(10),
            resync: Duration::from_secs(10),
            registration_ttl: Duration::from_secs(15 * 60),
            metrics_addr: None,
            watch: WatchOptions::default(),
            reload: ReloadOptions::default(),
            catalog_refresh: DEFAULT_REFRESH,
            gc: GcOptions::default(),
            leader: None,
            interruption_queue: None,
            consolidation_interval: Duration::from_secs(10),
        }
    }
}

/// Why the controller could not start (once running, it logs and carries on).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StartError {
    #[error(
        "the policy does not compile or has no pools; the controller needs one good version to start"
    )]
    #[diagnostic(
        code(nodewright::controller::policy),
        help("`nodewright check` shows the same diagnostics:\n{0}")
    )]
    Policy(String),
    #[error("cannot watch the policy files: {0}")]
    #[diagnostic(code(nodewright::controller::watch))]
    Watch(String),
    #[error("the watch cache of {0} stopped before its first list")]
    #[diagnostic(
        code(nodewright::controller::watch_cache),
        help("the log above has the watch's errors; check the controller's RBAC (list and watch)")
    )]
    WatchCache(&'static str),
    #[error("cannot serve metrics on {addr}: {source}")]
    #[diagnostic(
        code(nodewright::controller::metrics),
        help("pick another --metrics-addr, or check what holds the port")
    )]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Leader(#[from] LeaderError),
}

/// A controller ready to run: the first policy version is loaded and the
/// metrics endpoint is bound.
pub struct Controller {
    opts: Options,
    reloader: Arc<Reloader>,
    catalog: CatalogSource,
    metrics: Metrics,
    /// `nodewright_interruption_messages_total{kind, outcome}`.
    interruption_messages: super::interruption::MessageCounter,
    ready: Arc<AtomicBool>,
    /// Whether this replica leads (served on `/readyz`).
    leading: Arc<AtomicBool>,
    /// The newest policy version whose reload line was logged (`reload_line`).
    announced: Arc<std::sync::atomic::AtomicU64>,
    metrics_addr: Option<SocketAddr>,
    _server: Option<tokio::task::JoinHandle<()>>,
}

impl Controller {
    /// Loads the policy (it must compile) and binds the metrics endpoint.
    /// `catalog`: a fixed `Arc<Catalog>`, or a live one refreshed while running.
    pub async fn new(
        opts: Options,
        catalog: impl Into<CatalogSource>,
    ) -> Result<Controller, StartError> {
        if let Some(l) = &opts.leader {
            l.lease_params()?;
        }
        let catalog = catalog.into();
        // A reload's line is logged here, with the nodes it drifts (`reload_line`).
        let reload = ReloadOptions {
            caller_logs_swaps: true,
            ..opts.reload
        };
        let reloader = Arc::new(
            Reloader::with_options(opts.policy.clone(), reload).map_err(StartError::Policy)?,
        );
        let announced = Arc::new(std::sync::atomic::AtomicU64::new(reloader.active().number));
        let mut registry = Registry::with_prefix("nodewright");
        reloader.register_metrics(&mut registry);
        let metrics = Metrics::new(registry.sub_registry_with_prefix("controller"));
        metrics.catalog_types.set(catalog.get().types.len() as i64);
        let interruption_messages = super::interruption::MessageCounter::default();
        registry.register(
            "interruption_messages",
            "Interruption queue messages, by kind and by what became of them",
            interruption_messages.clone(),
        );
        let registry = Arc::new(Mutex::new(registry));
        let ready = Arc::new(AtomicBool::new(false));
        let leading = Arc::new(AtomicBool::new(opts.leader.is_none()));
        metrics.leader.set(i64::from(opts.leader.is_none()));
        let (metrics_addr, server) = match opts.metrics_addr {
            Some(addr) => {
                let (bound, h) = serve(
                    addr,
                    Endpoints {
                        registry: Arc::clone(&registry),
                        ready: Arc::clone(&ready),
                        leading: Arc::clone(&leading),
                    },
                )
                .await
                .map_err(|source| StartError::Metrics { addr, source })?;
                (Some(bound), Some(h))
            }
            None => (None, None),
        };
        Ok(Controller {
            opts,
            reloader,
            catalog,
            metrics,
            interruption_messages,
            ready,
            leading,
            announced,
            metrics_addr,
            _server: server,
        })
    }

    /// The bound metrics address (useful with port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The reloader (its active version is what the next pass plans with).
    pub fn reloader(&self) -> Arc<Reloader> {
        Arc::clone(&self.reloader)
    }

    /// Runs until `shutdown` turns true, then gives up the lease (if it
    /// holds it) so another replica takes over at once. A pass under way
    /// when `shutdown` turns true or the lease is lost makes no more writes.
    pub async fn run(
        self,
        client: kube::Client,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), StartError> {
        let (reloader, leading, announced) = (
            Arc::clone(&self.reloader),
            Arc::clone(&self.leading),
            Arc::clone(&self.announced),
        );
        let _watch =
            crate::reload::watch(
                Arc::clone(&self.reloader),
                self.opts.watch,
                move |o| match o {
                    // The leader's next pass logs it with the nodes it drifts;
                    // a follower runs no pass, so it logs the summary now.
                    Outcome::Swapped(line) => {
                        if !leading.load(Ordering::Relaxed)
                            && reload_line::first_to_announce(&announced, reloader.active().number)
                        {
                            tracing::info!("{line}");
                        }
                    }
                    Outcome::Failed(d) => {
                        tracing::error!(
                            "policy change rejected, last good version stays active:\n{d}"
                        )
                    }
                    Outcome::Unchanged => {}
                },
            )
            .map_err(StartError::Watch)?;
        let aws = load(&self.opts.ec2).await;
        let ec2 = aws_sdk_ec2::Client::new(&aws);
        let unavailable = Arc::new(UnavailableOfferings::new(Duration::from_secs(180)));
        let mut launcher =
            Ec2Launcher::new(ec2, self.opts.cluster.clone(), Arc::clone(&unavailable));
        // AMI aliases resolve through SSM for the control plane's version.
        launcher.resolver.use_ssm(ssm(&aws));
        // Node-class roles go into instance profiles named for this cluster and region.
        let region = aws.region().map(|r| r.to_string()).unwrap_or_default();
        launcher = launcher.with_instance_profiles(Arc::new(InstanceProfiles::new(
            iam(&aws),
            &self.opts.cluster.name,
            &region,
        )));
        let version_task = super::kube_version::start(
            &client,
            launcher.resolver.kubernetes_version_cell(),
            super::kube_version::REREAD,
        )
        .await;
        let refresh_task = self.catalog.spawn_refresh(self.opts.catalog_refresh, {
            let m = self.metrics.clone();
            move |r| super::catalog_report::report(&m, r)
        });

        // Watch caches for every kind a pass reads; pod events also open batches.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let stores = Stores::start(&client, &self.metrics.watch_errors, tx);
        // The first pass plans from complete caches (/readyz waits for it).
        tokio::select! {
            r = stores.wait_until_ready() => r.map_err(StartError::WatchCache)?,
            () = stopped(&mut shutdown) => return Ok(()),
        }
        tracing::info!(
            "watch caches synced: {} pods, {} nodes",
            stores.pods.len(),
            stores.nodes.len()
        );
        // Without election this process always acts; with it, it acts only
        // while it holds the lease (dropped with this future: a task aborted
        // mid-run stops renewing, and the lease expires by itself).
        let election = self.opts.leader.clone().map(|l| {
            elect(
                client.clone(),
                l,
                Arc::clone(&self.leading),
                self.metrics.leader.clone(),
            )
        });
        let alone = tokio::sync::watch::channel(Standing::Alone);
        let standing = match &election {
            Some(e) => e.standing.clone(),
            None => alone.1,
        };
        let mut leads = standing.clone();
        let gate = Gate {
            standing,
            shutdown: shutdown.clone(),
            closed: AtomicBool::new(false),
        };
        let mut term = 0;
        // The interruption queue, read by the leader only (its own gate, same standing).
        let interruption_task = self.opts.interruption_queue.clone().map(|queue| {
            tokio::spawn(
                super::interruption::Queue {
                    sqs: crate::cloud::ec2::sqs(&aws),
                    queue,
                    client: client.clone(),
                    unavailable: Arc::clone(&unavailable),
                    gate: Gate {
                        standing: gate.standing.clone(),
                        shutdown: shutdown.clone(),
                        closed: AtomicBool::new(false),
                    },
                    messages: self.interruption_messages.clone(),
                    recorder: Recorder::new(
                        client.clone(),
                        Reporter {
                            controller: "nodewright".into(),
                            instance: std::env::var("POD_NAME").ok(),
                        },
                    ),
                }
                .run(),
            )
        });

        let mut state = State::default();
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "nodewright".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        let mut batcher = Batcher::new(self.opts.batch_idle, self.opts.batch_max);
        let mut resync = tokio::time::interval(self.opts.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let due = batcher.due();
            let sleep = async {
                match due {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            let pass = tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { break; }
                    None
                }
                Some(()) = rx.recv() => { batcher.event(Instant::now()); None }
                _ = sleep => {
                    let now = Instant::now();
                    batcher.take(now).then_some(Trigger::Batch(now))
                }
                // A new leader passes at once rather than at the next resync
                // (a renewal changes the standing too, but not its term).
                Ok(()) = leads.changed() => {
                    let s = *leads.borrow_and_update();
                    (s.leading() && s.term() != term && batcher.due().is_none())
                        .then_some(Trigger::Resync)
                }
                // An open batch closes soon and runs the pass itself; a
                // resync in the middle would split it.
                _ = resync.tick() => batcher.due().is_none().then_some(Trigger::Resync),
            };
            // A follower only keeps its policy current (the reloader's watch).
            let standing = *gate.standing.borrow();
            let pass = pass.filter(|_| standing.may_act(std::time::SystemTime::now()));
            if let Some(trigger) = pass {
                if standing.term() != term {
                    // Another replica may have acted since this one last led.
                    term = standing.term();
                    state = State::default();
                }
                gate.closed.store(false, Ordering::Relaxed);
                let io = Io {
                    client: &client,
                    recorder: &recorder,
                    launcher: &launcher,
                    unavailable: &unavailable,
                    stores: &stores,
                    gate: &gate,
                };
                state.clock = PassClock::start(trigger);
                if let Err(e) = self.pass(&io, &mut state).await {
                    self.metrics.pass_failures.inc();
                    tracing::error!("pass stopped early: {e}");
                } else {
                    self.ready.store(true, Ordering::Relaxed);
                }
                std::mem::take(&mut state.clock).finish(&self.metrics);
            }
        }
        version_task.abort();
        if let Some(t) = interruption_task {
            t.abort();
        }
        if let Some(t) = refresh_task {
            t.abort();
        }
        drop(stores);
        if let Some(e) = election {
            e.release(Duration::from_secs(5)).await;
        }
        Ok(())
    }

    /// One pass: observe, then each step's actions in turn (see `steps`).
    async fn pass(&self, io: &Io<'_>, st: &mut State) -> Result<(), PassError> {
        tracing::debug!("pass starts");
        let obs = observe(io, &mut st.clock).await?;
        let claims = list_claims(io.client).await?;
        let ttl = self.opts.registration_ttl;

        // 1. NodeClaims: registered, initialized, timed out, deleted.
        let tracked = lifecycle::track(
            &claims,
            &obs.objs.nodes,
            k8s_openapi::jiff::Timestamp::now(),
            ttl,
        );
        self.report_claims(&tracked);
        if !tracked.relaunch.is_empty() {
            // A launch of several nodes tags each instance with its claim
            // after CreateFleet; stopped in between, it leaves instances with
            // the cluster's tag and no claim's. Nothing finds them by claim:
            // the claims launch again, and those instances go after the grace.
            let untagged: Vec<&str> = obs
                .owned
                .iter()
                .filter(|o| o.claim.is_none() && matches!(o.state.as_str(), "pending" | "running"))
                .map(|o| o.instance_id.as_str())
                .collect();
            if !untagged.is_empty() {
                tracing::warn!(
                    "{} claims have no launch on record, and instances {} carry no claim tag \
                     (a launch stopped before tagging them?): the claims are launched again, \
                     and garbage collection terminates those instances after the orphan grace",
                    tracked.relaunch.len(),
                    untagged.join(", ")
                );
            }
        }
        let mut in_flight = lifecycle::claims_view(&claims, &obs.objs.nodes);
        for gone in tracked
            .expired
            .iter()
            .chain(&tracked.deleted)
            .chain(tracked.terminating.iter().map(|(c, _)| c))
        {
            in_flight.remove(gone);
        }
        let mut sink = Sink {
            io,
            st,
            obs: &obs,
            pods: std::sync::OnceLock::new(),
            fresh: Mutex::default(),
            nominations: Mutex::default(),
        };
        self.apply(&sink, None, tracked.actions).await;
        // The pods of a claim's node changed: its `lastPodEventTime` (consolidation waits on it).
        let stamped = self.pod_events(&mut sink, &claims).await;
        // 1a. Claims being deleted: the termination flow, a step each.
        self.terminate(&mut sink, &claims, &tracked.terminating)
            .await;
        // 1b. Garbage: claims whose instance is gone, instances no claim owns.
        self.collect_garbage(&mut sink, &claims).await;

        // 2. One version for the whole pass, narrowed to what its node classes reach.
        let version = self.reloader.active();
        let mut reach = BTreeMap::new();
        for nc in steps::node_classes(&version.policy) {
            reach.insert(nc.to_string(), resolve_reach(io, &version.policy, nc).await);
        }
        sink.st.clock.phase("reach");
        let (policy, warnings) = narrow(&version.policy, &reach);
        for w in warnings {
            tracing::warn!("{w}");
        }

        // 3. Plan.
        let loaded = super::snapshot::load(&obs.objs)
            .map_err(|e| PassError::Snapshot(format!("{:?}", miette::Report::new(e))))?;
        for n in &loaded.notes {
            tracing::debug!("{n}");
        }
        // One catalog for the whole pass; a refresh lands before the next.
        let catalog = self.catalog.get();
        sink.st.clock.phase("load");
        let t = Instant::now();
        let (workload, plan) = steps::plan(
            &policy,
            &catalog,
            loaded.workload,
            &in_flight,
            version
                .scorer
                .as_ref()
                .map(|s| s as &dyn crate::scoring::Scorer),
            Some(&io.unavailable.snapshot()),
        );
        self.report_plan(version.number, &workload, &plan, t.elapsed());
        sink.st.clock.phase("solve");

        // 4. Tell the pods that wait why.
        let events = steps::unschedulable_events(&plan, &mut sink.st.notices);
        self.apply(&sink, None, events).await;
        sink.st.clock.phase("events");

        // 5. Launch.
        let mut launches =
            steps::launches(&plan, &version.policy, &obs, &in_flight, &mut random_suffix);
        // Claims written before a restart whose launch never reported back:
        // launched again under the same name (the launcher finds the
        // instance if CreateFleet did run).
        launches.actions.extend(
            tracked
                .relaunch
                .into_iter()
                .map(|p| Seq::from(Action::Launch(Box::new(p)))),
        );
        let launching = launches.actions.len();
        for why in &launches.refused {
            self.metrics.launch_failures.inc();
            tracing::error!("{why}");
        }
        if !launches.actions.is_empty() {
            let ctx = LaunchContext {
                version: &version,
                catalog: &catalog,
                requests: steps::pod_requests(&workload),
            };
            self.apply_concurrently(&sink, Some(&ctx), launches.actions)
                .await;
        }
        self.metrics
            .claims_in_flight
            .set((in_flight.in_flight() + launching) as i64);
        sink.st.clock.phase("launch");
        self.publish_nominations(&sink).await;
        sink.st.clock.phase("nominate");

        // 6. Disruption: expired, then drifted claims, replaced first, then
        //    consolidation's underutilized moves, within budgets. Consolidation
        //    decides only when no pods wait for room and nothing is launching.
        let busy = launching > 0 || !plan.nodes.is_empty() || !plan.existing.is_empty();
        let moves = self.consolidation(&mut sink, &policy, &catalog, &claims, &stamped, busy);
        sink.st.clock.phase("consolidate");
        let ctx = LaunchContext {
            version: &version,
            catalog: &catalog,
            requests: steps::pod_requests(&workload),
        };
        let protected = self.disruption(&mut sink, &ctx, &claims, &moves).await;
        sink.st.clock.phase("disrupt");

        // 7. Remove empty nodes we launched (not a replacement under way).
        let mut removals = steps::removals(
            &obs,
            &policy,
            &plan,
            &in_flight,
            &mut sink.st.empty,
            jiff::Timestamp::now(),
        );
        // Neither a replacement under way nor a claim already terminating (this
        // pass's snapshot predates its taint) is asked again.
        removals.actions.retain(|seq| {
            !seq.0.iter().any(|a| {
                matches!(a, Action::RequestRemoval { claim, .. } | Action::DeleteClaim { claim }
                    if protected.contains(claim)
                        || tracked.terminating.iter().any(|(c, _)| c == claim))
            })
        });
        if removals.targeted > 0 {
            tracing::debug!(
                "{} nodes are about to receive pending pods; empty-node removal waits",
                removals.targeted
            );
        }
        self.apply(&sink, None, removals.actions).await;
        sink.st.clock.phase("remove");

        // 8. Launch templates no pool launches with any more (every `gc.template_interval`).
        self.collect_templates(io, sink.st, &version.policy).await;
        Ok(())
    }

    /// The disruption pass (`disruption::decide`), carried out: the
    /// `Drifted` conditions, replacements written and launched, old claims
    /// handed to termination once their replacement is Initialized.
    /// Returns the replacement claims under way (kept from empty removal).
    async fn disruption(
        &self,
        sink: &mut Sink<'_, '_>,
        ctx: &LaunchContext<'_>,
        claims: &[NodeClaim],
        moves: &[crate::disrupt::consolidate::Move],
    ) -> std::collections::HashSet<String> {
        let io = sink.io;
        let policy = &ctx.version.policy;
        // The images each node class resolves to now (cached by the resolver).
        let mut images = BTreeMap::new();
        for nc in steps::node_classes(policy) {
            if let Some(class) = policy.node_classes.get(nc)
                && let Ok(r) = io.launcher.resolver.resolve(class).await
            {
                let ids: BTreeSet<String> = r.amis.values().map(|a| a.id.clone()).collect();
                images.insert(nc.to_string(), ids);
            }
        }
        let d = disruption::decide(
            &disruption::Facts {
                claims,
                nodes: &sink.obs.objs.nodes,
                pods: &sink.obs.objs.pods,
                policy,
                images: &images,
                moves,
                replan: &|c, pods| {
                    disruption::replan(policy, ctx.catalog, &sink.obs.objs.daemonsets, c, pods)
                },
                now: k8s_openapi::jiff::Timestamp::now(),
            },
            &mut random_suffix,
        );
        self.metrics.cluster_price_per_hour.set(d.price_per_hour);
        // A reload's one line, with how many nodes it drifts (`reload_line`);
        // and once per change of the count within a version (a new image).
        let seen = Some((ctx.version.number, d.drifted));
        if reload_line::first_to_announce(&self.announced, ctx.version.number) {
            tracing::info!(
                "{}",
                reload_line::with_drift(&ctx.version.summary, d.drifted, d.total)
            );
            sink.st.drift_seen = seen;
        } else if sink.st.drift_seen != seen {
            if d.drifted > 0 {
                tracing::info!(
                    "policy v{}: {} of {} nodes drifted; replacing them within the budgets",
                    ctx.version.number,
                    d.drifted,
                    d.total
                );
            }
            sink.st.drift_seen = seen;
        }
        let sink = &*sink;
        for (claim, why) in &d.held {
            tracing::debug!("disruption of {claim} waits: {why}");
        }
        let api: Api<NodeClaim> = Api::all(io.client.clone());
        let mut launches = Vec::new();
        for step in d.steps {
            if !io.gate.open() {
                break;
            }
            match step {
                disruption::Step::Drifted { claim, drift } => {
                    // Onto the claim as it is now: this pass's lifecycle writes stay.
                    let Ok(Some(fresh)) = api.get_opt(&claim).await else {
                        continue;
                    };
                    let conds = fresh
                        .status
                        .as_ref()
                        .map(|s| s.conditions.as_slice())
                        .unwrap_or_default();
                    let next = disruption::with_drifted(
                        conds,
                        drift.as_ref(),
                        k8s_openapi::jiff::Timestamp::now(),
                    );
                    let patch = serde_json::json!({
                        "metadata": { "resourceVersion": fresh.metadata.resource_version },
                        "status": { "conditions": next },
                    });
                    match api
                        .patch_status(&claim, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(_) => match &drift {
                            Some(d) => tracing::info!("claim {claim} drifted: {}", d.message()),
                            None => tracing::info!("claim {claim} matches its pool again"),
                        },
                        // A conflict: the next pass writes it again.
                        Err(e) => tracing::debug!("the Drifted condition of {claim}: {e}"),
                    }
                }
                disruption::Step::Replace {
                    old,
                    reason,
                    replacements,
                } => {
                    // The old claims name their replacements first: a restart resumes from them.
                    let names: Vec<&str> = replacements.iter().map(|p| p.name.as_str()).collect();
                    let patch = serde_json::json!({ "metadata": { "annotations": {
                        disruption::REPLACING: names.join(","),
                        disruption::REPLACING_REASON: reason.as_str(),
                    } } });
                    let mut marked = true;
                    for o in &old {
                        if let Err(e) = api
                            .patch(o, &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                        {
                            tracing::error!("marking claim {o} for replacement: {e}");
                            marked = false;
                            break;
                        }
                    }
                    if !marked {
                        // A claim marked before the failure names replacements that
                        // never come: the next pass lifts its mark (nothing drained).
                        continue;
                    }
                    tracing::info!(
                        "claims {} are {}; launching {} first",
                        old.join(", "),
                        reason.as_str(),
                        names.join(", ")
                    );
                    for p in replacements {
                        let p = Box::new(p);
                        launches.push(Sequence(vec![
                            Action::CreateClaims(vec![(*p).clone()]),
                            Action::Launch(p),
                        ]));
                    }
                }
                disruption::Step::Remove { claim, reason } => {
                    match terminate::request_removal(io.client, &claim, reason.as_str()).await {
                        Ok(()) => {
                            self.metrics
                                .disruptions
                                .get_or_create(&[("reason", reason.as_str())])
                                .inc();
                            tracing::info!(
                                "claim {claim} ({}): nothing waits for a replacement; terminating it",
                                reason.as_str()
                            );
                        }
                        Err(e) => tracing::error!("handing claim {claim} to termination: {e}"),
                    }
                }
                disruption::Step::Abandon { old, replacement } => {
                    let patch = serde_json::json!({ "metadata": { "annotations": {
                        disruption::REPLACING: null,
                        disruption::REPLACING_REASON: null,
                    } } });
                    match api
                        .patch(&old, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(_) => tracing::warn!(
                            "replacement {replacement} of claim {old} is gone (its launch failed?); nothing was drained, it will be tried again"
                        ),
                        Err(e) => tracing::error!("lifting the replacement of claim {old}: {e}"),
                    }
                }
            }
        }
        if !launches.is_empty() {
            self.apply_concurrently(sink, Some(ctx), launches).await;
        }
        d.protected
    }

    /// Writes `status.lastPodEventTime` (now) on the claims whose node's
    /// workload pods changed since the last pass; returns what it wrote.
    async fn pod_events(
        &self,
        sink: &mut Sink<'_, '_>,
        claims: &[NodeClaim],
    ) -> HashMap<String, k8s_openapi::jiff::Timestamp> {
        let now = k8s_openapi::jiff::Timestamp::now();
        let obs = sink.obs;
        let changed = consolidation::pod_events(
            claims,
            &obs.objs.nodes,
            &obs.objs.pods,
            &mut sink.st.pod_sets,
            now,
        );
        let stamp = serde_json::to_value(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now))
            .unwrap_or_default();
        let writes = changed
            .iter()
            .map(|claim| {
                Sequence::from(Action::ClaimStatus {
                    claim: claim.clone(),
                    status: serde_json::json!({ "lastPodEventTime": stamp }),
                })
            })
            .collect();
        self.apply(sink, None, writes).await;
        for c in &changed {
            tracing::debug!("claim {c}: the pods on its node changed");
        }
        changed.into_iter().map(|c| (c, now)).collect()
    }

    /// Consolidation's decision on the pass's cluster (see `consolidation`):
    /// its underutilized moves, for the disruption pass to carry out. None
    /// while the cluster is not settled (`busy`, or claims in flight) or
    /// within `consolidation_interval` of the last decision.
    fn consolidation(
        &self,
        sink: &mut Sink<'_, '_>,
        policy: &PolicySet,
        catalog: &Catalog,
        claims: &[NodeClaim],
        stamped: &HashMap<String, k8s_openapi::jiff::Timestamp>,
        busy: bool,
    ) -> Vec<crate::disrupt::consolidate::Move> {
        if let Some(why) = consolidation::hold(policy, claims, busy) {
            tracing::debug!("consolidation waits: {why}");
            return Vec::new();
        }
        let started = Instant::now();
        if !consolidation::due(
            sink.st.consolidated,
            started,
            self.opts.consolidation_interval,
        ) {
            return Vec::new();
        }
        sink.st.consolidated = Some(started);
        let unavailable = sink.io.unavailable.snapshot();
        let pdbs = sink.io.stores.pdbs();
        let input = match consolidation::input(
            policy,
            catalog,
            Some(&unavailable),
            &sink.obs.objs,
            &pdbs,
            claims,
            stamped,
            k8s_openapi::jiff::Timestamp::now(),
        ) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(
                    "consolidation skipped: reading the cluster: {:?}",
                    miette::Report::new(e)
                );
                return Vec::new();
            }
        };
        let d = crate::disrupt::consolidate::decide(
            &input,
            &crate::disrupt::consolidate::ConsolidationOptions::default(),
        );
        tracing::debug!(
            "consolidation decided in {:?}: {} moves, {} nodes blocked",
            started.elapsed(),
            d.moves.len(),
            d.blocked.len()
        );
        // What keeps a node (do-not-disrupt, a PDB, a budget) at info, once per
        // change; the rest (a stability wait, no cheaper placement) at debug.
        let mut seen = BTreeMap::new();
        for b in &d.blocked {
            if !consolidation::worth_telling(&b.reason) {
                tracing::debug!("consolidation: node {} stays: {}", b.node, b.reason);
                continue;
            }
            if sink.st.consolidation_blocked.get(&b.node) != Some(&b.reason) {
                tracing::info!("consolidation: node {} stays: {}", b.node, b.reason);
            }
            seen.insert(b.node.clone(), b.reason.clone());
        }
        sink.st.consolidation_blocked = seen;
        let moves = consolidation::moves(d);
        for m in &moves {
            tracing::info!(
                "consolidation: node{} {} {} (${:.4}/h saved; {} pods move{})",
                if m.remove.len() == 1 { "" } else { "s" },
                m.remove.join(", "),
                if m.remove.len() == 1 {
                    "is underutilized"
                } else {
                    "are underutilized"
                },
                m.saving_per_hour,
                m.pods.len(),
                if m.launch.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", onto {} new: {}",
                        m.launch.len(),
                        m.launch
                            .iter()
                            .map(|n| n.instance_type.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            );
        }
        moves
    }

    /// Carries each claim being deleted one step further through the
    /// termination flow (see `terminate`); never waits for a drain.
    async fn terminate(
        &self,
        sink: &mut Sink<'_, '_>,
        claims: &[NodeClaim],
        terminating: &[(String, Option<String>)],
    ) {
        let obs = sink.obs;
        let draining: std::collections::HashSet<&str> = terminating
            .iter()
            .filter_map(|(_, n)| n.as_deref())
            .collect();
        sink.st.evictions.retain(|key| {
            obs.objs.pods.iter().any(|p| {
                terminate::plan::pod_key(p) == key
                    && p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_some_and(|n| draining.contains(n))
            })
        });
        if terminating.is_empty() {
            return;
        }
        let version = self.reloader.active();
        let gate = sink.io.gate;
        let open = move || gate.open();
        let ctx = terminate::Ctx {
            client: sink.io.client,
            launcher: sink.io.launcher,
            policy: &version.policy,
            pods: &obs.objs.pods,
            open: &open,
        };
        for (name, node) in terminating {
            let Some(claim) = claims
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(name))
            else {
                continue;
            };
            let node = node.as_deref().and_then(|n| {
                obs.objs
                    .nodes
                    .iter()
                    .find(|o| o.metadata.name.as_deref() == Some(n))
            });
            match terminate::advance(&ctx, claim, node, &mut sink.st.evictions).await {
                Progress::Done { instances } => {
                    let reason = terminate::reason_of(claim);
                    if reason == "empty" {
                        self.metrics.removed.inc();
                        self.metrics
                            .disruptions
                            .get_or_create(&[("reason", "empty")])
                            .inc();
                    }
                    tracing::info!(
                        "claim {name} terminated ({reason}): instances {}{}",
                        instances.join(", "),
                        node.and_then(|n| n.metadata.name.as_deref())
                            .map(|n| format!(", node {n} deleted"))
                            .unwrap_or_default()
                    );
                }
                Progress::Waiting(then) => tracing::debug!("claim {name}: {then:?}"),
                Progress::Stopped => {
                    if !gate.open() {
                        return;
                    }
                }
            }
        }
    }

    /// Deletes the NodeClaims whose instance is gone (and their Nodes) and
    /// terminates the instances no claim owns (see `gc`).
    async fn collect_garbage(&self, sink: &mut Sink<'_, '_>, claims: &[NodeClaim]) {
        let obs = sink.obs;
        let wall = SystemTime::now();
        let (ours, owners) = gc::views_from_claims(claims, &obs.objs.nodes, wall);
        let mut actions = gc::gone_claims(&ours, &obs.owned, wall, &self.opts.gc);
        // A claim already being deleted is in the termination flow's hands.
        actions.retain(|a| match a {
            GcAction::DeleteClaim { claim, .. } => !claims.iter().any(|c| {
                c.metadata.name.as_deref() == Some(claim.as_str())
                    && c.metadata.deletion_timestamp.is_some()
            }),
            GcAction::TerminateInstance { .. } => true,
        });
        actions.extend(gc::orphan_instances(
            &owners,
            &obs.owned,
            wall,
            &self.opts.gc,
        ));
        for a in actions {
            // Only the leader writes (see `Gate`).
            if !sink.io.gate.open() {
                return;
            }
            match a {
                GcAction::DeleteClaim {
                    claim,
                    instance_id,
                    node,
                } => {
                    // Through the termination flow like every removal; with
                    // reason `gone` it drains nothing (the instance is gone
                    // already) and deletes the Node, then releases the claim.
                    match terminate::request_removal(
                        sink.io.client,
                        &claim,
                        terminate::plan::REASON_GONE,
                    )
                    .await
                    {
                        Ok(()) => {
                            self.metrics.gc_claims_deleted.inc();
                            tracing::info!(
                                "garbage collection: instance {instance_id} of claim {claim} is gone; claim deleted{}",
                                node.map(|n| format!(", node {n} to be deleted"))
                                    .unwrap_or_default()
                            );
                        }
                        Err(e) => {
                            tracing::error!("garbage collection: deleting claim {claim}: {e}")
                        }
                    }
                }
                GcAction::TerminateInstance {
                    instance_id,
                    claim_tag,
                } => match sink
                    .io
                    .launcher
                    .terminate_instances(std::slice::from_ref(&instance_id))
                    .await
                {
                    Ok(_) => {
                        self.metrics.gc_instances_terminated.inc();
                        tracing::warn!(
                            "garbage collection: instance {instance_id} (claim tag {}) has no claim after {:?}; terminated",
                            claim_tag.as_deref().unwrap_or("none"),
                            self.opts.gc.orphan_grace
                        );
                    }
                    Err(e) => {
                        tracing::error!("garbage collection: terminating {instance_id}: {e}")
                    }
                },
            }
        }
    }

    /// Deletes the launch templates of this cluster that no pool of `policy`
    /// launches with, at most once per `gc.template_interval`. When a pool's
    /// node class does not resolve, its templates are unknown and nothing is
    /// deleted.
    async fn collect_templates(&self, io: &Io<'_>, st: &mut State, policy: &PolicySet) {
        let now = Instant::now();
        if st
            .templates_collected
            .is_some_and(|t| now.saturating_duration_since(t) < self.opts.gc.template_interval)
        {
            return;
        }
        st.templates_collected = Some(now);
        let mut referenced = BTreeSet::new();
        let mut complete = true;
        for pool in &policy.pools {
            let Some(nc) = policy.node_classes.get(&pool.node_class) else {
                continue; // launches nothing
            };
            match io.launcher.template_names(pool, nc).await {
                Ok(names) => referenced.extend(names),
                Err(e) => {
                    complete = false;
                    tracing::debug!(
                        "garbage collection: templates of pool {} unknown ({e}); none deleted",
                        pool.name
                    );
                }
            }
        }
        let every_class_known = policy
            .pools
            .iter()
            .all(|p| policy.node_classes.contains_key(&p.node_class));
        if complete && every_class_known {
            self.collect_instance_profiles(io, policy).await;
        }
        let owned = match io.launcher.templates.list_owned().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!("garbage collection: listing launch templates: {e}");
                return;
            }
        };
        let wall = SystemTime::now();
        for t in
            gc::unreferenced_templates(&owned, complete.then_some(&referenced), wall, &self.opts.gc)
        {
            if !io.gate.open() {
                return;
            }
            match io.launcher.templates.delete(&t.id).await {
                Ok(()) => {
                    self.metrics.gc_launch_templates_deleted.inc();
                    tracing::info!(
                        "garbage collection: launch template {} ({}) is used by no pool; deleted",
                        t.name,
                        t.id
                    );
                }
                Err(e) => tracing::warn!(
                    "garbage collection: deleting launch template {}: {e}",
                    t.name
                ),
            }
        }
    }

    /// Deletes this cluster's instance profiles whose role no node class of
    /// `policy` launches with (a node class naming an `instance-profile`
    /// uses that one, not its role's).
    async fn collect_instance_profiles(&self, io: &Io<'_>, policy: &PolicySet) {
        let Some(profiles) = io.launcher.instance_profiles() else {
            return;
        };
        let roles: BTreeSet<String> = policy
            .node_classes
            .values()
            .filter(|nc| nc.instance_profile.is_none())
            .filter_map(|nc| nc.role.clone())
            .collect();
        // A profile a live instance still runs with stays until it is gone.
        let in_use = match io.launcher.instance_profiles_in_use().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(
                    "garbage collection: instance profiles in use unknown ({e}); none deleted"
                );
                return;
            }
        };
        if !io.gate.open() {
            return;
        }
        match profiles.collect_keeping(&roles, &in_use).await {
            Ok(removed) => {
                for name in removed {
                    self.metrics.gc_instance_profiles_deleted.inc();
                    tracing::info!(
                        "garbage collection: instance profile {name} holds a role no node class names; deleted"
                    );
                }
            }
            Err(e) => tracing::warn!("garbage collection: instance profiles: {e}"),
        }
    }

    /// Logs and counts what `lifecycle::track` decided.
    fn report_claims(&self, t: &Tracked) {
        let ttl = self.opts.registration_ttl;
        for (c, n) in &t.registered {
            tracing::info!("claim {c} registered as Node {n}");
        }
        for c in &t.initialized {
            tracing::info!("claim {c} initialized");
        }
        for c in &t.expired {
            self.metrics.registration_timeouts.inc();
            tracing::warn!(
                "claim {c} did not register within {ttl:?}; terminating it, its pods are planned again"
            );
        }
        for c in &t.deleted {
            tracing::info!("claim {c} (or its Node) is being deleted; terminating its instance");
        }
        for p in &t.relaunch {
            tracing::info!(
                "claim {} has no launch on record; launching it (idempotent)",
                p.name
            );
        }
    }

    /// Logs and measures a plan (`took`: the solve, when anything was pending).
    fn report_plan(&self, version: u64, workload: &Workload, plan: &Plan, took: Duration) {
        let pending = steps::pending(workload);
        self.metrics.pending_pods.set(pending as i64);
        if pending > 0 {
            self.metrics.solve_seconds.observe(took.as_secs_f64());
            tracing::info!(
                "policy v{version}: {pending} pending pods -> {} new nodes (${:.4}/h), {} onto existing nodes, {} unschedulable",
                plan.nodes.len(),
                plan.total_price_per_hour,
                plan.existing.iter().map(|e| e.pods.len()).sum::<usize>(),
                plan.unschedulable.len()
            );
        }
        self.metrics
            .unschedulable_pods
            .set(plan.unschedulable.len() as i64);
        for u in plan.unschedulable.iter().take(10) {
            tracing::warn!(
                "{} fits nowhere: {}",
                u.pod,
                u.reasons.first().map(String::as_str).unwrap_or("no reason")
            );
        }
    }

    /// Carries out `seqs`, each in order up to its first failure. What an
    /// action produces on success (a launch's pod Events) joins its sequence
    /// right after it. `launch` is needed only by sequences that launch.
    async fn apply(
        &self,
        sink: &Sink<'_, '_>,
        launch: Option<&LaunchContext<'_>>,
        seqs: Vec<Sequence>,
    ) {
        for seq in seqs {
            if !self.run_sequence(sink, launch, seq).await {
                return;
            }
        }
    }

    /// Like `apply`, with up to `LAUNCH_CONCURRENCY` sequences under way at
    /// once: each launch waits on EC2 (a DescribeInstances and a CreateFleet,
    /// ~0.1 s), and the nodes of one plan are independent of each other.
    async fn apply_concurrently(
        &self,
        sink: &Sink<'_, '_>,
        launch: Option<&LaunchContext<'_>>,
        seqs: Vec<Sequence>,
    ) {
        use futures_util::StreamExt;
        futures_util::stream::iter(seqs)
            .for_each_concurrent(LAUNCH_CONCURRENCY, |seq| async move {
                self.run_sequence(sink, launch, seq).await;
            })
            .await;
    }

    /// One sequence, up to its first failure; false when the gate closed
    /// (no longer the leader, or shutting down): nothing more may be written.
    async fn run_sequence(
        &self,
        sink: &Sink<'_, '_>,
        launch: Option<&LaunchContext<'_>>,
        seq: Sequence,
    ) -> bool {
        let mut todo: VecDeque<Action> = seq.0.into();
        while let Some(a) = todo.pop_front() {
            if !sink.io.gate.open() {
                return false;
            }
            let Some(follow) = self.apply_one(sink, launch, a).await else {
                break;
            };
            for f in follow.into_iter().rev() {
                todo.push_front(f);
            }
        }
        true
    }

    /// Carries out one action and records its result: the follow-up
    /// actions, or None when it failed (logged and counted here).
    async fn apply_one(
        &self,
        sink: &Sink<'_, '_>,
        ctx: Option<&LaunchContext<'_>>,
        action: Action,
    ) -> Option<Vec<Action>> {
        match action {
            Action::Launch(node) => {
                let Some(ctx) = ctx else {
                    tracing::error!("launch of {} outside the launch step", node.name);
                    self.metrics.launch_failures.inc();
                    return None;
                };
                self.launch(sink, ctx, &node).await
            }
            Action::CreateClaims(nodes) => {
                let Some(ctx) = ctx else {
                    tracing::error!("{} claims outside the launch step", nodes.len());
                    return None;
                };
                self.create_claims(sink, ctx, &nodes).await
            }
            Action::LaunchGroup(nodes) => {
                let Some(ctx) = ctx else {
                    tracing::error!("launch of {} nodes outside the launch step", nodes.len());
                    self.metrics.launch_failures.inc();
                    return None;
                };
                self.launch_group(sink, ctx, nodes).await;
                Some(Vec::new())
            }
            other => self.apply_write(sink, other).await,
        }
    }

    /// Carries out one action that launches nothing (a write to the API
    /// server, a termination, an Event): `apply_one` without the launch
    /// steps, so the launch steps can run these themselves.
    async fn apply_write(&self, sink: &Sink<'_, '_>, action: Action) -> Option<Vec<Action>> {
        let io = sink.io;
        match action {
            Action::Launch(_) | Action::CreateClaims(_) | Action::LaunchGroup(_) => {
                tracing::error!("a launch step outside the launch step");
                self.metrics.launch_failures.inc();
                None
            }
            Action::Terminate { claim, reason } => match io.launcher.terminate(&claim).await {
                Ok(ids) => {
                    tracing::info!("claim {claim} ({reason:?}): terminated {}", ids.join(", "));
                    Some(Vec::new())
                }
                Err(e) => {
                    tracing::error!("terminating claim {claim}: {e}");
                    None
                }
            },
            Action::RequestRemoval { claim, reason } => {
                match terminate::request_removal(io.client, &claim, reason).await {
                    Ok(()) => {
                        tracing::info!("claim {claim}: removal requested ({reason})");
                        Some(Vec::new())
                    }
                    Err(e) => {
                        tracing::error!("requesting the removal of claim {claim}: {e}");
                        None
                    }
                }
            }
            Action::Cordon { node } => {
                tracing::info!("node {node} is empty; removing it");
                let cordon = serde_json::json!({"spec": {"unschedulable": true}});
                let nodes: Api<Node> = Api::all(io.client.clone());
                match nodes
                    .patch(&node, &PatchParams::default(), &Patch::Merge(&cordon))
                    .await
                {
                    Ok(_) => Some(Vec::new()),
                    Err(e) => {
                        tracing::error!("cordoning node {node}: {e}");
                        None
                    }
                }
            }
            Action::DeleteNode { node } => {
                let nodes: Api<Node> = Api::all(io.client.clone());
                match nodes.delete(&node, &DeleteParams::default()).await {
                    Ok(_) => Some(Vec::new()),
                    Err(kube::Error::Api(e)) if e.code == 404 => Some(Vec::new()),
                    Err(e) => {
                        tracing::error!("deleting node {node}: {e}");
                        None
                    }
                }
            }
            Action::ClaimLabels { claim, labels } => {
                let api: Api<NodeClaim> = Api::all(io.client.clone());
                let patch = serde_json::json!({ "spec": { "labels": labels } });
                match api
                    .patch(&claim, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Some(Vec::new()),
                    Err(e) => {
                        tracing::error!("recording the launched labels on NodeClaim {claim}: {e}");
                        None
                    }
                }
            }
            Action::ClaimStatus { claim, status } => {
                let api: Api<NodeClaim> = Api::all(io.client.clone());
                let patch = serde_json::json!({ "status": status });
                match api
                    .patch_status(&claim, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Some(Vec::new()),
                    Err(e) => {
                        tracing::error!("updating the status of NodeClaim {claim}: {e}");
                        None
                    }
                }
            }
            Action::PatchNode { node, patch } => {
                let nodes: Api<Node> = Api::all(io.client.clone());
                match nodes
                    .patch(&node, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Some(Vec::new()),
                    Err(e) => {
                        tracing::error!("patching node {node}: {e}");
                        None
                    }
                }
            }
            Action::DeleteClaim { claim } => {
                let api: Api<NodeClaim> = Api::all(io.client.clone());
                release(&api, &claim).await?;
                match api.delete(&claim, &DeleteParams::default()).await {
                    Ok(_) => Some(Vec::new()),
                    Err(kube::Error::Api(e)) if e.code == 404 => Some(Vec::new()),
                    Err(e) => {
                        tracing::error!("deleting NodeClaim {claim}: {e}");
                        None
                    }
                }
            }
            Action::Event(ev) => {
                // Events go only to the pods this pass plans for.
                let obs = sink.obs;
                let pod = sink
                    .pods
                    .get_or_init(|| obs.provisionable_pods())
                    .get(&ev.pod)
                    .copied();
                if let Some(p) = pod {
                    tell(io.recorder, p, &ev).await;
                }
                Some(Vec::new())
            }
        }
    }

    /// Launches one named node (a claim written before a restart, whose
    /// launch never reported back); returns what records the result.
    async fn launch(
        &self,
        sink: &Sink<'_, '_>,
        ctx: &LaunchContext<'_>,
        node: &PlannedNode,
    ) -> Option<Vec<Action>> {
        let Some((pool, nc)) = self.launchable(ctx, std::slice::from_ref(node)) else {
            return Some(vec![Action::DeleteClaim {
                claim: node.name.clone(),
            }]);
        };
        let req = LaunchRequest {
            node,
            pool,
            node_class: nc,
            catalog: Some(ctx.catalog),
        };
        // A claim this pass wrote cannot have an instance yet: no look-up for one.
        let fresh = sink.fresh.lock().is_ok_and(|f| f.contains(&node.name));
        let launched = if fresh {
            sink.io.launcher.launch_new(req).await
        } else {
            sink.io.launcher.launch(req).await
        };
        Some(self.record_launch(sink, ctx, pool, node, launched))
    }

    /// The pool and node class of planned nodes (one pool and class for
    /// all); None, counted and logged, when the policy has them no more.
    fn launchable<'v>(
        &self,
        ctx: &LaunchContext<'v>,
        nodes: &[PlannedNode],
    ) -> Option<(&'v Pool, &'v NodeClass)> {
        let first = nodes.first()?;
        let found = ctx
            .version
            .policy
            .pool(&first.pool)
            .zip(ctx.version.policy.node_classes.get(&first.node_class));
        if found.is_none() {
            // `steps::launches` checked this against the same version; a
            // claim launched again after a restart may name a removed pool.
            for n in nodes {
                tracing::error!(
                    "claim {} names a pool or node class the policy no longer has; deleting it",
                    n.name
                );
                self.metrics.launch_failures.inc();
            }
        }
        found
    }

    /// Writes the NodeClaims of `nodes`, several at once, before anything
    /// is launched for them; each one written is marked fresh (launched
    /// without a look-up). None when not one was written.
    async fn create_claims(
        &self,
        sink: &Sink<'_, '_>,
        ctx: &LaunchContext<'_>,
        nodes: &[PlannedNode],
    ) -> Option<Vec<Action>> {
        // A group is at most `steps::FLEET_BATCH_MAX` claims: all at once.
        let written =
            futures_util::future::join_all(nodes.iter().map(|n| self.create_claim(sink, ctx, n)))
                .await;
        written.contains(&true).then(Vec::new)
    }

    /// Writes one NodeClaim (see `create_claims`); false when it failed.
    async fn create_claim(
        &self,
        sink: &Sink<'_, '_>,
        ctx: &LaunchContext<'_>,
        node: &PlannedNode,
    ) -> bool {
        let mut claim = lifecycle::new_claim(
            node,
            ctx.version.policy.pool(&node.pool),
            &steps::overhead(node, &ctx.requests),
        );
        // What shaped the node, to tell drift by (`disrupt::drift`).
        if let Some(pool) = ctx.version.policy.pool(&node.pool) {
            let hash = crate::disrupt::drift::pool_hash(
                pool,
                ctx.version.policy.node_classes.get(&pool.node_class),
            );
            claim
                .metadata
                .annotations
                .get_or_insert_default()
                .insert(crate::disrupt::drift::POOL_HASH.to_string(), hash);
        }
        let api: Api<NodeClaim> = Api::all(sink.io.client.clone());
        match api.create(&PostParams::default(), &claim).await {
            Ok(_) => {
                if let Ok(mut f) = sink.fresh.lock() {
                    f.insert(node.name.clone());
                }
                true
            }
            Err(e) => {
                self.metrics.launch_failures.inc();
                tracing::error!("writing NodeClaim {}: {e}; not launching it", node.name);
                false
            }
        }
    }

    /// Launches the nodes of one group (identical launch requests) whose
    /// claims this pass wrote, with one CreateFleet, then records every
    /// claim's result, several at once.
    async fn launch_group(
        &self,
        sink: &Sink<'_, '_>,
        ctx: &LaunchContext<'_>,
        nodes: Vec<PlannedNode>,
    ) {
        let nodes: Vec<PlannedNode> = match sink.fresh.lock() {
            Ok(f) => nodes.into_iter().filter(|n| f.contains(&n.name)).collect(),
            Err(_) => Vec::new(),
        };
        let follow: Vec<Vec<Action>> = match self.launchable(ctx, &nodes) {
            None => nodes
                .iter()
                .map(|n| {
                    vec![Action::DeleteClaim {
                        claim: n.name.clone(),
                    }]
                })
                .collect(),
            Some((pool, nc)) => {
                let reqs: Vec<LaunchRequest<'_>> = nodes
                    .iter()
                    .map(|node| LaunchRequest {
                        node,
                        pool,
                        node_class: nc,
                        catalog: Some(ctx.catalog),
                    })
                    .collect();
                let results = sink.io.launcher.launch_new_group(&reqs).await;
                nodes
                    .iter()
                    .zip(results)
                    .map(|(node, r)| self.record_launch(sink, ctx, pool, node, r))
                    .collect()
            }
        };
        // Each claim's writes in order, the claims at once.
        futures_util::future::join_all(follow.into_iter().map(|seq| self.apply_writes(sink, seq)))
            .await;
    }

    /// Carries out `seq` (actions that launch nothing) in order, up to its
    /// first failure or the gate closing.
    async fn apply_writes(&self, sink: &Sink<'_, '_>, seq: Vec<Action>) {
        for a in seq {
            if !sink.io.gate.open() || self.apply_write(sink, a).await.is_none() {
                break;
            }
        }
    }

    /// What records one claim's launch: its status (and the labels of a
    /// fallback type or zone) on success, its deletion on failure (logged
    /// and counted here). Its pods' Nominated Events are kept aside in
    /// `sink.nominations`, published once every launch of the pass is done.
    fn record_launch(
        &self,
        sink: &Sink<'_, '_>,
        ctx: &LaunchContext<'_>,
        pool: &Pool,
        node: &PlannedNode,
        launched: Result<crate::cloud::launcher::Launched, crate::cloud::launcher::LaunchError>,
    ) -> Vec<Action> {
        match launched {
            Ok(l) => {
                sink.st.clock.launched();
                self.metrics.launched.inc();
                tracing::info!(
                    "launched {} as {} ({} in {}, {}) for {} pods",
                    node.name,
                    l.instance_id,
                    l.instance_type,
                    l.zone,
                    l.capacity_type.as_str(),
                    node.pods.len()
                );
                let status = lifecycle::launched(
                    &NodeClaimStatus::default(),
                    &LaunchInfo {
                        instance_id: l.instance_id.clone(),
                        instance_type: l.instance_type.clone(),
                        zone: l.zone.clone(),
                        capacity_type: l.capacity_type,
                        image_id: l.image_id.clone(),
                    },
                    k8s_openapi::jiff::Timestamp::now(),
                );
                // The labels of what EC2 launched that the plan did not already
                // give the claim (a fallback type has its own): usually none.
                let labels: std::collections::BTreeMap<String, String> =
                    launched_labels(Some(ctx.catalog), pool, &l)
                        .into_iter()
                        .filter(|(k, v)| {
                            k != crate::cloud::tags::LABEL_CLAIM && node.labels.get(k) != Some(v)
                        })
                        .collect();
                let placed = Placed {
                    instance_id: l.instance_id,
                    instance_type: l.instance_type,
                    zone: l.zone,
                    capacity_type: l.capacity_type,
                };
                let mut follow = Vec::new();
                if !labels.is_empty() {
                    follow.push(Action::ClaimLabels {
                        claim: node.name.clone(),
                        labels,
                    });
                }
                follow.push(Action::ClaimStatus {
                    claim: node.name.clone(),
                    status: serde_json::to_value(&status).unwrap_or_default(),
                });
                if let Ok(mut n) = sink.nominations.lock() {
                    n.extend(steps::nominated(node, &placed));
                }
                follow
            }
            Err(e) => {
                self.metrics.launch_failures.inc();
                tracing::error!(
                    "launching {}: {:?}; deleting its NodeClaim",
                    node.name,
                    miette::Report::new(e)
                );
                vec![Action::DeleteClaim {
                    claim: node.name.clone(),
                }]
            }
        }
    }

    /// Publishes the Nominated Events the pass's launches kept aside,
    /// several at once. They come after the launches so that thousands of
    /// Event writes (one per pod) do not compete with the claims, fleets
    /// and status writes of launches still under way.
    async fn publish_nominations(&self, sink: &Sink<'_, '_>) {
        use futures_util::StreamExt;
        let events = match sink.nominations.lock() {
            Ok(mut n) => std::mem::take(&mut *n),
            Err(_) => Vec::new(),
        };
        futures_util::stream::iter(events)
            .for_each_concurrent(EVENT_CONCURRENCY, |a| self.apply_writes(sink, vec![a]))
            .await;
    }
}

/// How many launch sequences (claim, CreateFleet, status, Events) one pass
/// runs at once. EC2 throttles CreateFleet per account; eight keeps a burst
/// of a few hundred nodes to seconds without meeting that limit.
const LAUNCH_CONCURRENCY: usize = 8;

/// How many Nominated Events (one POST each) are published at once after
/// the launches.
const EVENT_CONCURRENCY: usize = 16;

/// The clients one pass talks through.
struct Io<'a> {
    client: &'a kube::Client,
    recorder: &'a Recorder,
    launcher: &'a Ec2Launcher,
    unavailable: &'a UnavailableOfferings,
    stores: &'a Stores,
    gate: &'a Gate,
}

/// Whether a write may go out: this replica leads and is not shutting down.
pub(super) struct Gate {
    pub(super) standing: tokio::sync::watch::Receiver<Standing>,
    pub(super) shutdown: tokio::sync::watch::Receiver<bool>,
    /// Set when the gate first refuses in a pass (logged once).
    pub(super) closed: AtomicBool,
}

impl Gate {
    /// Asked before every write: a pass abandoned here leaves nothing half
    /// done that the next leader's pass does not pick up from the cluster.
    fn open(&self) -> bool {
        let leads = self.standing.borrow().may_act(std::time::SystemTime::now());
        let stopping = *self.shutdown.borrow();
        if leads && !stopping {
            return true;
        }
        if !self.closed.swap(true, Ordering::Relaxed) {
            tracing::info!(
                "pass abandoned before its next write: {}",
                if stopping {
                    "shutting down"
                } else {
                    "no longer the leader"
                }
            );
        }
        false
    }
}

/// Where actions land: the clients, the state they update, and the pods
/// Events may go to (indexed on the first Event of the pass).
struct Sink<'a, 'o> {
    io: &'a Io<'a>,
    st: &'a mut State,
    obs: &'o Observed,
    pods: std::sync::OnceLock<HashMap<String, &'o Pod>>,
    /// Claims written by this pass (`CreateClaims`): launched without looking
    /// for an instance of theirs first.
    fresh: Mutex<std::collections::HashSet<String>>,
    /// The Nominated Events of this pass's launches, published after the
    /// last launch (`publish_nominations`).
    nominations: Mutex<Vec<Action>>,
}

/// What recording a launch needs beyond the action.
struct LaunchContext<'a> {
    version: &'a Version,
    /// The pass's catalog (arch and list prices of the fallback types).
    catalog: &'a Catalog,
    requests: HashMap<String, &'a Resources>,
}

/// State kept between passes (claims are not: they are read back every pass).
#[derive(Default)]
struct State {
    empty: EmptySince,
    /// Eviction back-off of the pods being drained (`terminate`).
    evictions: Backoffs,
    notices: Notices,
    /// The clock of the pass under way.
    clock: PassClock,
    /// When launch templates were last garbage-collected.
    templates_collected: Option<Instant>,
    /// The (policy version, drifted count) last logged.
    drift_seen: Option<(u64, usize)>,
    /// The workload pods on each claim's node as last seen (`lastPodEventTime`).
    pod_sets: consolidation::PodSets,
    /// When consolidation last decided (it decides at most every `consolidation_interval`).
    consolidated: Option<Instant>,
    /// Why each node consolidation could not take stays, as last logged.
    consolidation_blocked: BTreeMap<String, String>,
}

/// Reads the cluster (from the watch caches) and our instances: the
/// snapshot every step works from.
async fn observe(io: &Io<'_>, clock: &mut PassClock) -> Result<Observed, PassError> {
    let objs = io.stores.snapshot();
    clock.phase("snapshot");
    let owned = io
        .launcher
        .list_owned()
        .await
        .map_err(|e| PassError::Ec2(e.to_string()))?;
    clock.phase("ec2");
    Ok(Observed {
        objs,
        owned,
        now: Instant::now(),
    })
}

/// Every NodeClaim: the controller's record of the nodes it launched.
///
/// Read from the API server each pass, not from a watch cache: a cache may
/// not yet hold the claims the previous pass wrote, and a pass that missed
/// them would launch their nodes a second time. One list of a few hundred
/// small objects per pass is the price of never launching twice.
async fn list_claims(client: &kube::Client) -> Result<Vec<NodeClaim>, PassError> {
    let api: Api<NodeClaim> = Api::all(client.clone());
    match api.list(&ListParams::default()).await {
        Ok(l) => Ok(l.items),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(PassError::NoCrd),
        Err(source) => Err(PassError::List {
            what: "nodeclaims",
            source,
        }),
    }
}

/// Lifts our finalizer from an object (a Node or a NodeClaim); one already
/// gone is fine. None when it failed (logged).
pub(super) async fn release<K>(api: &Api<K>, name: &str) -> Option<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let obj = match api.get_opt(name).await {
        Ok(Some(o)) => o,
        Ok(None) => return Some(()),
        Err(e) => {
            tracing::error!("reading {name} to lift its finalizer: {e}");
            return None;
        }
    };
    let kept = lifecycle::without_ours(obj.meta().finalizers.as_ref());
    if obj.meta().finalizers.as_ref().map_or(0, Vec::len) == kept.len() {
        return Some(());
    }
    // The resource version makes this a compare-and-swap on the list.
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": kept,
            "resourceVersion": obj.meta().resource_version,
        }
    });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Some(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Some(()),
        Err(e) => {
            tracing::error!("lifting the finalizer of {name}: {e}");
            None
        }
    }
}

/// Resolves one node class to the zones and architectures it can launch into.
async fn resolve_reach(io: &Io<'_>, policy: &PolicySet, nc: &str) -> Result<Reach, String> {
    let Some(class) = policy.node_classes.get(nc) else {
        return Err("the policy defines no such node class".to_string());
    };
    io.launcher
        .resolver
        .resolve(class)
        .await
        .map(|r| Reach {
            zones: r.subnets.iter().map(|s| s.zone.clone()).collect(),
            arches: r.amis.keys().cloned().collect(),
        })
        .map_err(|e| e.to_string())
}

/// Publishes one Event about `pod`; a failure only costs the Event (logged at debug).
async fn tell(recorder: &Recorder, pod: &Pod, ev: &PodEvent) {
    let event = Event {
        type_: if ev.kind.is_warning() {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: ev.kind.reason().into(),
        note: Some(ev.note.clone()),
        action: ev.kind.action().into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &pod.object_ref(&())).await {
        tracing::debug!("event {} for {}: {e}", ev.kind.reason(), ev.pod);
    }
}

/// Why a pass stopped early (logged; the next pass starts afresh).
#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error("listing {what}: {source}")]
    List {
        what: &'static str,
        source: kube::Error,
    },
    #[error(
        "the NodeClaim CRD is not installed (nodeclaims.nodewright.io); apply it with `kubectl apply -f deploy/crds/` (or `nodewright crds | kubectl apply -f -`)"
    )]
    NoCrd,
    #[error("EC2: {0}")]
    Ec2(String),
    #[error("reading the cluster's objects: {0}")]
    Snapshot(String),
}

/// Resolves once `shutdown` turns true (never if its sender is gone).
async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    if shutdown.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}
