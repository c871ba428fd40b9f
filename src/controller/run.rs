//! The controller's I/O: the API server, the solver and EC2, and nothing else.
//!
//! A pass observes (lists the cluster's Nodes, Pods, DaemonSets, volumes,
//! classes and Namespaces, and our EC2 instances), then runs the steps of
//! `steps` in order, each a pure function of that snapshot returning
//! actions, and carries the actions out here (`apply`), recording what came
//! back (claims for launched nodes). The metrics are in `metrics`.
//!
//! Passes run when a batch of pod events closes (`batch`) and every
//! `resync` regardless, which drives claim timeouts and empty-node removal.

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Resource;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use prometheus_client::registry::Registry;

use super::action::{Action, PodEvent, Sequence, TerminateReason};
use super::batch::Batcher;
use super::claims::{Claims, random_suffix};
use super::disrupt::EmptySince;
use super::launchable::{Reach, narrow};
use super::leader::{LeaderError, LeaderOptions, Standing, elect};
use super::metrics::Metrics;
use super::notice::Notices;
use super::serve::{Endpoints, serve};
use super::snapshot::ClusterObjects;
use super::steps::{self, Observed, Placed};
use crate::catalog::Catalog;
use crate::catalog::UnavailableOfferings;
use crate::cloud::ec2::{Ec2Settings, connect};
use crate::cloud::launcher::{Ec2Launcher, LaunchRequest, Launcher};
use crate::cloud::userdata::ClusterInfo;
use crate::ir::{PolicySet, Resources};
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
    /// Leader election on a Lease, so that of two replicas only one acts;
    /// None: this process always acts (one replica only).
    pub leader: Option<LeaderOptions>,
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
            leader: None,
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
    catalog: Arc<Catalog>,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    /// Whether this replica leads (served on `/readyz`).
    leading: Arc<AtomicBool>,
    metrics_addr: Option<SocketAddr>,
    _server: Option<tokio::task::JoinHandle<()>>,
}

impl Controller {
    /// Loads the policy (it must compile) and binds the metrics endpoint.
    pub async fn new(opts: Options, catalog: Arc<Catalog>) -> Result<Controller, StartError> {
        if let Some(l) = &opts.leader {
            l.lease_params()?;
        }
        let reloader = Arc::new(
            Reloader::with_options(opts.policy.clone(), opts.reload).map_err(StartError::Policy)?,
        );
        let mut registry = Registry::with_prefix("nodewright");
        reloader.register_metrics(&mut registry);
        let metrics = Metrics::new(registry.sub_registry_with_prefix("controller"));
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
            ready,
            leading,
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
        let _watch =
            crate::reload::watch(Arc::clone(&self.reloader), self.opts.watch, |o| match o {
                // `Reloader::check` has logged the swap's one-line summary.
                Outcome::Swapped(_) => {}
                Outcome::Failed(d) => {
                    tracing::error!("policy change rejected, last good version stays active:\n{d}")
                }
                Outcome::Unchanged => {}
            })
            .map_err(StartError::Watch)?;
        let ec2 = connect(&self.opts.ec2).await;
        let unavailable = Arc::new(UnavailableOfferings::new(Duration::from_secs(180)));
        let launcher = Ec2Launcher::new(ec2, self.opts.cluster.clone(), Arc::clone(&unavailable));

        // Pod events only open batches; every pass re-lists, so a missed event costs a resync at most.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let pods: Api<Pod> = Api::all(client.clone());
        let watch_task = tokio::spawn(async move {
            let mut stream = watcher(pods, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(_) => {
                        let _ = tx.try_send(());
                    }
                    Err(e) => tracing::warn!("pod watch: {e}; retrying"),
                }
            }
        });

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
                    false
                }
                Some(()) = rx.recv() => { batcher.event(Instant::now()); false }
                _ = sleep => batcher.take(Instant::now()),
                // A new leader passes at once rather than at the next resync
                // (a renewal changes the standing too, but not its term).
                Ok(()) = leads.changed() => {
                    let s = *leads.borrow_and_update();
                    s.leading() && s.term() != term && batcher.due().is_none()
                }
                // An open batch closes soon and runs the pass itself; a
                // resync in the middle would split it.
                _ = resync.tick() => batcher.due().is_none(),
            };
            // A follower only keeps its policy current (the reloader's watch).
            let standing = *gate.standing.borrow();
            if pass && standing.may_act(std::time::SystemTime::now()) {
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
                    gate: &gate,
                };
                if let Err(e) = self.pass(&io, &mut state).await {
                    self.metrics.pass_failures.inc();
                    tracing::error!("pass stopped early: {e}");
                } else {
                    self.ready.store(true, Ordering::Relaxed);
                }
            }
        }
        watch_task.abort();
        if let Some(e) = election {
            e.release(Duration::from_secs(5)).await;
        }
        Ok(())
    }

    /// One pass: observe, then each step's actions in turn (see `steps`).
    async fn pass(&self, io: &Io<'_>, st: &mut State) -> Result<(), PassError> {
        tracing::debug!("pass starts");
        let obs = observe(io).await?;
        let ttl = self.opts.registration_ttl;

        // 1. Claims: taken over, registered, timed out.
        let changes = steps::track_claims(&mut st.claims, &obs, ttl);
        self.report_claims(&changes);
        let mut sink = Sink {
            io,
            st,
            obs: &obs,
            pods: OnceCell::new(),
        };
        self.apply(&mut sink, None, changes.actions).await;

        // 2. One version for the whole pass, narrowed to what its node classes reach.
        let version = self.reloader.active();
        let mut reach = BTreeMap::new();
        for nc in steps::node_classes(&version.policy) {
            reach.insert(nc.to_string(), resolve_reach(io, &version.policy, nc).await);
        }
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
        let t = Instant::now();
        let (workload, plan) = steps::plan(
            &policy,
            &self.catalog,
            loaded.workload,
            &sink.st.claims,
            version
                .scorer
                .as_ref()
                .map(|s| s as &dyn crate::scoring::Scorer),
            Some(&io.unavailable.snapshot()),
        );
        self.report_plan(version.number, &workload, &plan, t.elapsed());

        // 4. Tell the pods that wait why.
        let events = steps::unschedulable_events(&plan, &mut sink.st.notices);
        self.apply(&mut sink, None, events).await;

        // 5. Launch.
        let launches = steps::launches(
            &plan,
            &version.policy,
            &obs,
            &sink.st.claims,
            &mut random_suffix,
        );
        for why in &launches.refused {
            self.metrics.launch_failures.inc();
            tracing::error!("{why}");
        }
        if !launches.actions.is_empty() {
            let ctx = LaunchContext {
                version: &version,
                requests: steps::pod_requests(&workload),
            };
            self.apply(&mut sink, Some(&ctx), launches.actions).await;
        }
        self.metrics
            .claims_in_flight
            .set(sink.st.claims.len() as i64);

        // 6. Remove empty nodes we launched.
        let removals = steps::removals(&obs, &policy, &plan, &mut sink.st.empty);
        if removals.targeted > 0 {
            tracing::debug!(
                "{} nodes are about to receive pending pods; empty-node removal waits",
                removals.targeted
            );
        }
        self.apply(&mut sink, None, removals.actions).await;
        Ok(())
    }

    /// Logs and counts what `track_claims` changed.
    fn report_claims(&self, changes: &steps::ClaimChanges) {
        let ttl = self.opts.registration_ttl;
        for c in &changes.adopted {
            tracing::info!(
                "instance {} (claim {}) has no Node; it is terminated unless one registers within {ttl:?}",
                c.instance_id,
                c.name
            );
        }
        for c in &changes.registered {
            tracing::info!("claim {} registered as a Node ({})", c.name, c.instance_id);
        }
        for c in &changes.expired {
            self.metrics.registration_timeouts.inc();
            tracing::warn!(
                "claim {} ({}) did not register within {ttl:?}; terminating it, its pods are planned again",
                c.name,
                c.instance_id
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
        sink: &mut Sink<'_, '_>,
        launch: Option<&LaunchContext<'_>>,
        seqs: Vec<Sequence>,
    ) {
        for seq in seqs {
            let mut todo: VecDeque<Action> = seq.0.into();
            while let Some(a) = todo.pop_front() {
                if !sink.io.gate.open() {
                    return;
                }
                let Some(follow) = self.apply_one(sink, launch, a).await else {
                    break;
                };
                for f in follow.into_iter().rev() {
                    todo.push_front(f);
                }
            }
        }
    }

    /// Carries out one action and records its result: the follow-up
    /// actions, or None when it failed (logged and counted here).
    async fn apply_one(
        &self,
        sink: &mut Sink<'_, '_>,
        ctx: Option<&LaunchContext<'_>>,
        action: Action,
    ) -> Option<Vec<Action>> {
        let io = sink.io;
        match action {
            Action::Launch(node) => {
                let Some(ctx) = ctx else {
                    tracing::error!("launch of {} outside the launch step", node.name);
                    self.metrics.launch_failures.inc();
                    return None;
                };
                self.launch(sink, ctx, &node).await
            }
            Action::Terminate { claim, reason } => match io.launcher.terminate(&claim).await {
                Ok(ids) => {
                    if reason == TerminateReason::Empty {
                        self.metrics.removed.inc();
                        tracing::info!(
                            "empty node of claim {claim} removed; terminated {}",
                            ids.join(", ")
                        );
                    }
                    Some(Vec::new())
                }
                Err(e) => {
                    tracing::error!("terminating claim {claim}: {e}");
                    None
                }
            },
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
                    Err(e) => {
                        tracing::error!("deleting node {node}: {e}");
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

    /// Launches one named node; on success records its claim and returns
    /// the Events for its pods.
    async fn launch(
        &self,
        sink: &mut Sink<'_, '_>,
        ctx: &LaunchContext<'_>,
        node: &PlannedNode,
    ) -> Option<Vec<Action>> {
        let (Some(pool), Some(nc)) = (
            ctx.version.policy.pool(&node.pool),
            ctx.version.policy.node_classes.get(&node.node_class),
        ) else {
            // `steps::launches` checked this against the same version.
            tracing::error!("planned node {} lost its pool or node class", node.name);
            self.metrics.launch_failures.inc();
            return None;
        };
        let launched = sink
            .io
            .launcher
            .launch(LaunchRequest {
                node,
                pool,
                node_class: nc,
                catalog: Some(&self.catalog),
            })
            .await;
        match launched {
            Ok(l) => {
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
                let placed = Placed {
                    instance_id: l.instance_id,
                    instance_type: l.instance_type,
                    zone: l.zone,
                    capacity_type: l.capacity_type,
                };
                sink.st.claims.insert(steps::claim_for(
                    node,
                    &placed,
                    &ctx.requests,
                    Instant::now(),
                ));
                Some(steps::nominated(node, &placed))
            }
            Err(e) => {
                self.metrics.launch_failures.inc();
                tracing::error!("launching {}: {:?}", node.name, miette::Report::new(e));
                None
            }
        }
    }
}

/// The clients one pass talks through.
struct Io<'a> {
    client: &'a kube::Client,
    recorder: &'a Recorder,
    launcher: &'a Ec2Launcher,
    unavailable: &'a UnavailableOfferings,
    gate: &'a Gate,
}

/// Whether a write may go out: this replica leads and is not shutting down.
struct Gate {
    standing: tokio::sync::watch::Receiver<Standing>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// Set when the gate first refuses in a pass (logged once).
    closed: AtomicBool,
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
    pods: OnceCell<HashMap<String, &'o Pod>>,
}

/// What recording a launch needs beyond the action.
struct LaunchContext<'a> {
    version: &'a Version,
    requests: HashMap<String, &'a Resources>,
}

/// State kept between passes.
#[derive(Default)]
struct State {
    claims: Claims,
    empty: EmptySince,
    notices: Notices,
}

/// Reads the cluster and our instances: the snapshot every step works from.
async fn observe(io: &Io<'_>) -> Result<Observed, PassError> {
    let objs = list_cluster(io.client).await?;
    let owned = io
        .launcher
        .list_owned()
        .await
        .map_err(|e| PassError::Ec2(e.to_string()))?;
    Ok(Observed {
        objs,
        owned,
        now: Instant::now(),
    })
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
    #[error("EC2: {0}")]
    Ec2(String),
    #[error("reading the cluster's objects: {0}")]
    Snapshot(String),
}

/// Every object of a kind, across namespaces for namespaced kinds.
async fn list_all<K>(client: &kube::Client, what: &'static str) -> Result<Vec<K>, PassError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(client.clone());
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|source| PassError::List { what, source })
}

async fn list_cluster(client: &kube::Client) -> Result<ClusterObjects, PassError> {
    let (nodes, pods, daemonsets, pvcs, pvs, storage_classes, priority_classes, namespaces) = tokio::try_join!(
        list_all::<Node>(client, "nodes"),
        list_all::<Pod>(client, "pods"),
        list_all::<DaemonSet>(client, "daemonsets"),
        list_all::<PersistentVolumeClaim>(client, "persistentvolumeclaims"),
        list_all::<PersistentVolume>(client, "persistentvolumes"),
        list_all::<StorageClass>(client, "storageclasses"),
        list_all::<PriorityClass>(client, "priorityclasses"),
        list_all::<Namespace>(client, "namespaces"),
    )?;
    Ok(ClusterObjects {
        nodes,
        pods,
        daemonsets,
        pvcs,
        pvs,
        storage_classes,
        priority_classes,
        namespaces,
    })
}
