//! The controller's I/O: the API server, the solver and EC2, and nothing else.
//!
//! One pass:
//! 1. list the cluster (Nodes, Pods, DaemonSets, volumes, classes, Namespaces);
//! 2. end claims whose Node registered; terminate those that never did;
//! 3. load the snapshot with the planner's own reader, fold the claims in;
//! 4. solve with the active policy version (one `Arc` for the whole pass);
//! 5. launch each planned node under a unique claim name;
//! 6. remove the empty nodes `disrupt` picks: cordon, delete the Node,
//!    terminate the instance.
//!
//! Passes run when a batch of pod events closes (`batch`) and every
//! `resync` regardless, which drives claim timeouts and empty-node removal.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::batch::Batcher;
use super::claims::{Claim, Claims, instance_id_of, unique_name};
use super::disrupt::{DO_NOT_DISRUPT, EmptySince, NodeView};
use super::launchable::{Reach, narrow};
use super::notice::Notices;
use super::serve::{Endpoints, serve};
use super::snapshot::{ClusterObjects, is_provisionable, is_workload_pod, pod_key};
use crate::catalog::{Catalog, UnavailableOfferings};
use crate::cloud::ec2::{Ec2Settings, connect};
use crate::cloud::launcher::{Ec2Launcher, LaunchRequest, Launcher, OwnedInstance};
use crate::cloud::userdata::ClusterInfo;
use crate::ir::{Resources, labels};
use crate::reload::{Outcome, Reloader, WatchOptions};
use crate::solver::{Plan, SolveInput, solve};

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
        }
    }
}

/// Why the controller could not start (once running, it logs and carries on).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StartError {
    #[error("the policy does not compile; the controller needs one good version to start")]
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
}

/// The controller's own metrics (the reloader's are registered beside them).
struct Metrics {
    pending_pods: Gauge,
    unschedulable_pods: Gauge,
    claims_in_flight: Gauge,
    launched: Counter,
    launch_failures: Counter,
    removed: Counter,
    registration_timeouts: Counter,
    pass_failures: Counter,
    solve_seconds: Histogram,
}

impl Metrics {
    fn new(r: &mut Registry) -> Metrics {
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
        m
    }
}

/// A controller ready to run: the first policy version is loaded and the
/// metrics endpoint is bound.
pub struct Controller {
    opts: Options,
    reloader: Arc<Reloader>,
    catalog: Arc<Catalog>,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    metrics_addr: Option<SocketAddr>,
    _server: Option<tokio::task::JoinHandle<()>>,
}

impl Controller {
    /// Loads the policy (it must compile) and binds the metrics endpoint.
    pub async fn new(opts: Options, catalog: Arc<Catalog>) -> Result<Controller, StartError> {
        let reloader = Arc::new(Reloader::new(opts.policy.clone()).map_err(StartError::Policy)?);
        let mut registry = Registry::with_prefix("nodewright");
        reloader.register_metrics(&mut registry);
        let metrics = Metrics::new(registry.sub_registry_with_prefix("controller"));
        let registry = Arc::new(Mutex::new(registry));
        let ready = Arc::new(AtomicBool::new(false));
        let (metrics_addr, server) = match opts.metrics_addr {
            Some(addr) => {
                let (bound, h) = serve(
                    addr,
                    Endpoints {
                        registry: Arc::clone(&registry),
                        ready: Arc::clone(&ready),
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

    /// Runs until `shutdown` turns true.
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

        let mut state = State {
            claims: Claims::default(),
            empty: EmptySince::default(),
            notices: Notices::default(),
        };
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
                // An open batch closes soon and runs the pass itself; a
                // resync in the middle would split it.
                _ = resync.tick() => batcher.due().is_none(),
            };
            if pass {
                if let Err(e) = self
                    .pass(&client, &recorder, &launcher, &unavailable, &mut state)
                    .await
                {
                    self.metrics.pass_failures.inc();
                    tracing::error!("pass stopped early: {e}");
                } else {
                    self.ready.store(true, Ordering::Relaxed);
                }
            }
        }
        watch_task.abort();
        Ok(())
    }

    async fn pass(
        &self,
        client: &kube::Client,
        recorder: &Recorder,
        launcher: &Ec2Launcher,
        unavailable: &UnavailableOfferings,
        st: &mut State,
    ) -> Result<(), PassError> {
        tracing::debug!("pass starts");
        let objs = list_cluster(client).await?;
        let owned = launcher
            .list_owned()
            .await
            .map_err(|e| PassError::Ec2(e.to_string()))?;
        let now = Instant::now();

        // Claims: taken over, registered, timed out.
        let node_instances: HashSet<String> = objs
            .nodes
            .iter()
            .filter_map(|n| n.spec.as_ref()?.provider_id.as_deref())
            .filter_map(instance_id_of)
            .map(str::to_string)
            .collect();
        // Instances of ours with no Node and no claim: launched before a restart, or
        // left behind by a removal whose termination failed, or whose Node someone
        // deleted. They are tracked like claims, so the timeout ends them if no
        // Node appears.
        for o in &owned {
            if let Some(claim) = &o.claim
                && matches!(o.state.as_str(), "pending" | "running")
                && !node_instances.contains(&o.instance_id)
                && !st.claims.contains(claim)
            {
                tracing::info!(
                    "instance {} (claim {claim}) has no Node; it is terminated unless one registers within {:?}",
                    o.instance_id,
                    self.opts.registration_ttl
                );
                st.claims.insert(adopted_claim(o, claim, now));
            }
        }
        for c in st.claims.registered(&node_instances) {
            tracing::info!("claim {} registered as a Node ({})", c.name, c.instance_id);
        }
        for c in st.claims.expired(now, self.opts.registration_ttl) {
            self.metrics.registration_timeouts.inc();
            tracing::warn!(
                "claim {} ({}) did not register within {:?}; terminating it, its pods are planned again",
                c.name,
                c.instance_id,
                self.opts.registration_ttl
            );
            if let Err(e) = launcher.terminate(&c.name).await {
                tracing::error!("terminating claim {}: {e}", c.name);
            }
        }

        // One version for the whole pass, narrowed to what its node classes reach.
        let version = self.reloader.active();
        let mut reach = BTreeMap::new();
        for pool in &version.policy.pools {
            if reach.contains_key(&pool.node_class) {
                continue;
            }
            let r = match version.policy.node_classes.get(&pool.node_class) {
                Some(nc) => launcher
                    .resolver
                    .resolve(nc)
                    .await
                    .map(|r| Reach {
                        zones: r.subnets.iter().map(|s| s.zone.clone()).collect(),
                        arches: r.amis.keys().cloned().collect(),
                    })
                    .map_err(|e| e.to_string()),
                None => Err("the policy defines no such node class".to_string()),
            };
            reach.insert(pool.node_class.clone(), r);
        }
        let (policy, warnings) = narrow(&version.policy, &reach);
        for w in warnings {
            tracing::warn!("{w}");
        }
        let loaded = super::snapshot::load(&objs)
            .map_err(|e| PassError::Snapshot(format!("{:?}", miette::Report::new(e))))?;
        for n in &loaded.notes {
            tracing::debug!("{n}");
        }
        let mut workload = loaded.workload;
        st.claims.fold_into(&mut workload);
        let pending: usize = workload.classes.iter().map(|c| c.count()).sum();
        self.metrics.pending_pods.set(pending as i64);

        let plan = if pending == 0 {
            Plan::default()
        } else {
            let t = Instant::now();
            let plan = solve(&SolveInput {
                policy: &policy,
                catalog: &self.catalog,
                workload: &workload,
                scorer: version
                    .scorer
                    .as_ref()
                    .map(|s| s as &dyn crate::scoring::Scorer),
                unavailable: Some(&unavailable.snapshot()),
            });
            self.metrics
                .solve_seconds
                .observe(t.elapsed().as_secs_f64());
            tracing::info!(
                "policy v{}: {pending} pending pods -> {} new nodes (${:.4}/h), {} onto existing nodes, {} unschedulable",
                version.number,
                plan.nodes.len(),
                plan.total_price_per_hour,
                plan.existing.iter().map(|e| e.pods.len()).sum::<usize>(),
                plan.unschedulable.len()
            );
            plan
        };
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
        let waiting: Vec<(String, String)> = plan
            .unschedulable
            .iter()
            .map(|u| (u.pod.clone(), event_note(&u.reasons)))
            .collect();
        // Events go only to the pods this pass plans for.
        let pods_by_key: HashMap<String, &Pod> = objs
            .pods
            .iter()
            .filter(|p| is_provisionable(p))
            .map(|p| (pod_key(p), p))
            .collect();
        for (pod, note) in st.notices.due(&waiting, EVENTS_PER_PASS) {
            if let Some(p) = pods_by_key.get(pod) {
                tell(
                    recorder,
                    p,
                    EventType::Warning,
                    "FailedProvisioning",
                    "Provision",
                    note,
                )
                .await;
            }
        }

        // Launch.
        let requests: HashMap<String, &Resources> = if plan.nodes.is_empty() {
            HashMap::new()
        } else {
            workload
                .classes
                .iter()
                .flat_map(|c| (0..c.count()).map(move |i| (c.pod_key(i), &c.requests)))
                .collect()
        };
        let owned_claims: HashSet<&str> = owned.iter().filter_map(|o| o.claim.as_deref()).collect();
        for planned in &plan.nodes {
            let mut node = planned.clone();
            node.name = unique_name(&planned.pool, &|n: &str| {
                owned_claims.contains(n) || st.claims.contains(n)
            });
            let (Some(pool), Some(nc)) = (
                version.policy.pool(&node.pool),
                version.policy.node_classes.get(&node.node_class),
            ) else {
                tracing::error!(
                    "planned node for pool {} names node class {}, which the policy does not have",
                    node.pool,
                    node.node_class
                );
                self.metrics.launch_failures.inc();
                continue;
            };
            match launcher
                .launch(LaunchRequest {
                    node: &node,
                    pool,
                    node_class: nc,
                    catalog: Some(&self.catalog),
                })
                .await
            {
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
                    let note = format!(
                        "nodewright launched {} ({} in {}, {}) for this pod",
                        node.name,
                        l.instance_type,
                        l.zone,
                        l.capacity_type.as_str()
                    );
                    for key in node.pods.iter().take(EVENTS_PER_PASS) {
                        if let Some(p) = pods_by_key.get(key) {
                            tell(recorder, p, EventType::Normal, "Nominated", "Launch", &note)
                                .await;
                        }
                    }
                    let mut overhead = node.requested.clone();
                    for p in &node.pods {
                        if let Some(r) = requests.get(p) {
                            overhead.sub(r);
                        }
                    }
                    let mut labels = node.labels.clone();
                    labels.insert(labels::INSTANCE_TYPE.into(), l.instance_type.clone());
                    labels.insert(labels::ZONE.into(), l.zone.clone());
                    let allocatable = if l.instance_type == node.instance_type {
                        node.allocatable.clone()
                    } else {
                        // EC2 fell back to another ranked type: it fits the planned pods,
                        // but its spare room is not known here, so offer none until the
                        // Node registers with its real allocatable.
                        node.requested.clone()
                    };
                    st.claims.insert(Claim {
                        name: node.name.clone(),
                        pool: node.pool.clone(),
                        instance_id: l.instance_id,
                        instance_type: l.instance_type,
                        zone: l.zone,
                        capacity_type: l.capacity_type,
                        labels,
                        taints: node.taints.clone(),
                        allocatable,
                        overhead,
                        pods: node.pods.iter().cloned().collect::<BTreeSet<_>>(),
                        launched_at: Instant::now(),
                    });
                }
                Err(e) => {
                    self.metrics.launch_failures.inc();
                    tracing::error!("launching {}: {:?}", node.name, miette::Report::new(e));
                }
            }
        }
        self.metrics.claims_in_flight.set(st.claims.len() as i64);

        // Remove empty nodes we launched.
        let by_instance: HashMap<&str, &OwnedInstance> =
            owned.iter().map(|o| (o.instance_id.as_str(), o)).collect();
        let mut views = Vec::new();
        let mut claim_of: HashMap<String, String> = HashMap::new();
        let mut pods_on: HashMap<&str, Vec<&Pod>> = HashMap::new();
        for p in &objs.pods {
            if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
                pods_on.entry(node).or_default().push(p);
            }
        }
        for n in &objs.nodes {
            let Some(name) = n.metadata.name.as_deref() else {
                continue;
            };
            let Some(o) = n
                .spec
                .as_ref()
                .and_then(|s| s.provider_id.as_deref())
                .and_then(instance_id_of)
                .and_then(|id| by_instance.get(id))
            else {
                continue; // not ours
            };
            let Some(pool_name) = o.pool.clone().or_else(|| {
                n.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(labels::NODEPOOL).cloned())
            }) else {
                continue;
            };
            if let Some(c) = &o.claim {
                claim_of.insert(name.to_string(), c.clone());
            }
            let on_node = pods_on.get(name).map(Vec::as_slice).unwrap_or_default();
            let dnd = |a: Option<&std::collections::BTreeMap<String, String>>| {
                a.and_then(|a| a.get(DO_NOT_DISRUPT))
                    .is_some_and(|v| v == "true")
            };
            views.push(NodeView {
                name: name.to_string(),
                pool: pool_name.clone(),
                workload_pods: on_node.iter().filter(|p| is_workload_pod(p)).count(),
                do_not_disrupt: dnd(n.metadata.annotations.as_ref())
                    || on_node
                        .iter()
                        .any(|p| is_workload_pod(p) && dnd(p.metadata.annotations.as_ref())),
                deleting: n.metadata.deletion_timestamp.is_some(),
                initialized: initialized(n, policy.pool(&pool_name)),
            });
        }
        let targeted: HashSet<String> = plan.existing.iter().map(|e| e.node.clone()).collect();
        let remove = if targeted.is_empty() {
            st.empty.empty_to_remove(&views, &policy, &targeted, now)
        } else {
            // Pending pods wait for the scheduler to place them on existing nodes:
            // which nodes end up empty is not settled, so nothing is removed yet.
            tracing::debug!(
                "{} nodes are about to receive pending pods; empty-node removal waits",
                targeted.len()
            );
            // The call still keeps the empty-since clocks.
            st.empty.empty_to_remove(&views, &policy, &targeted, now);
            Vec::new()
        };
        let nodes: Api<Node> = Api::all(client.clone());
        for name in remove {
            tracing::info!("node {name} is empty; removing it");
            let cordon = serde_json::json!({"spec": {"unschedulable": true}});
            if let Err(e) = nodes
                .patch(&name, &PatchParams::default(), &Patch::Merge(&cordon))
                .await
            {
                tracing::error!("cordoning node {name}: {e}");
                continue;
            }
            if let Err(e) = nodes.delete(&name, &DeleteParams::default()).await {
                tracing::error!("deleting node {name}: {e}");
                continue;
            }
            if let Some(claim) = claim_of.get(&name) {
                match launcher.terminate(claim).await {
                    Ok(ids) => {
                        self.metrics.removed.inc();
                        tracing::info!("node {name} removed; terminated {}", ids.join(", "));
                    }
                    Err(e) => tracing::error!("terminating claim {claim} of node {name}: {e}"),
                }
            }
        }
        Ok(())
    }
}

/// Ready, and carrying neither an ephemeral start-up taint nor one of its
/// pool's start-up taints.
fn initialized(n: &Node, pool: Option<&crate::ir::Pool>) -> bool {
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let starting = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| {
            ts.iter().any(|t| {
                super::snapshot::EPHEMERAL_TAINTS.contains(&t.key.as_str())
                    || pool.is_some_and(|p| p.startup_taints.iter().any(|st| st.key == t.key))
            })
        });
    ready && !starting
}

/// State kept between passes.
struct State {
    claims: Claims,
    empty: EmptySince,
    notices: Notices,
}

/// Publishes one Event about `pod`; a failure only costs the Event (logged at debug).
async fn tell(
    recorder: &Recorder,
    pod: &Pod,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note.into()),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, &pod.object_ref(&())).await {
        tracing::debug!("event {reason} for {}: {e}", pod_key(pod));
    }
}

/// At most this many pods get an Event per pass for each kind of Event.
const EVENTS_PER_PASS: usize = 100;

/// An Event's note from a pod's reasons (the API caps notes at 1 kB).
fn event_note(reasons: &[String]) -> String {
    let mut s = format!("nodewright cannot place this pod: {}", reasons.join("; "));
    if s.len() > 1000 {
        let mut cut = 997;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// An instance with no Node and no claim in memory, tracked only for its
/// timeout from `seen`: its pods are unknown, so it carries none and offers
/// no room.
fn adopted_claim(o: &OwnedInstance, claim: &str, seen: Instant) -> Claim {
    Claim {
        name: claim.to_string(),
        pool: o.pool.clone().unwrap_or_default(),
        instance_id: o.instance_id.clone(),
        instance_type: o.instance_type.clone(),
        zone: o.zone.clone(),
        capacity_type: crate::catalog::CapacityType::OnDemand,
        labels: Default::default(),
        taints: Vec::new(),
        allocatable: Resources::zero(),
        overhead: Resources::zero(),
        pods: BTreeSet::new(),
        launched_at: seen,
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
