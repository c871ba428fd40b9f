//! Watch caches: one kube-runtime reflector store per kind a pass reads.
//!
//! Re-listing every Pod and Node of a large cluster on every pass costs the
//! API server and the controller more than the pass itself; a watch sends
//! each change once. Each kind has a task that runs a [`watcher`] with
//! kube-runtime's default backoff and applies its events to a [`Store`]; a
//! pass copies the stores into the typed objects the loader takes
//! ([`Stores::snapshot`]).
//!
//! Recovery is the watcher's: a dropped connection resumes from the last
//! resource version, and an expired one (410 Gone) re-lists. A re-list
//! replaces the store's content at once when it completes, so a pass never
//! sees a half-listed kind. Errors are logged at warn and counted in
//! `watch_errors_total{kind}`; if a watch stream ever ended, its task
//! starts a new one, so no watch failure stops the controller.
//!
//! Adding a kind is one field and one `w.watch::<K>("kind")` line in
//! [`Stores::start`]; [`Stores::wait_until_ready`] waits for it too.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;

use super::metrics::WatchErrors;
use super::snapshot::ClusterObjects;

/// The watch caches of every kind a pass reads; dropping it stops the watches.
pub(super) struct Stores {
    pub(super) pods: Store<Pod>,
    pub(super) nodes: Store<Node>,
    pub(super) daemonsets: Store<DaemonSet>,
    pub(super) pvcs: Store<PersistentVolumeClaim>,
    pub(super) pvs: Store<PersistentVolume>,
    pub(super) storage_classes: Store<StorageClass>,
    pub(super) priority_classes: Store<PriorityClass>,
    pub(super) namespaces: Store<Namespace>,
    /// Read by consolidation only (a node whose pods a PDB allows no
    /// eviction of now is not a candidate); not part of the plan's input.
    pub(super) pdbs: Store<PodDisruptionBudget>,
    watches: Watches,
}

impl Stores {
    /// Starts one watch per kind. Every pod event (including each object of
    /// a re-list) sends on `pod_events` after the store has applied it: the
    /// same stream drives the cache and the batcher, and a pass that a pod
    /// event triggered sees that event.
    pub(super) fn start(
        client: &kube::Client,
        errors: &WatchErrors,
        pod_events: tokio::sync::mpsc::Sender<()>,
    ) -> Stores {
        let mut w = Watches {
            client: client.clone(),
            errors: errors.clone(),
            tasks: Vec::new(),
            synced: Vec::new(),
        };
        Stores {
            pods: w.watch_with("pods", move || {
                // Full means a batch is already signalled; nothing is lost.
                let _ = pod_events.try_send(());
            }),
            nodes: w.watch("nodes"),
            daemonsets: w.watch("daemonsets"),
            pvcs: w.watch("persistentvolumeclaims"),
            pvs: w.watch("persistentvolumes"),
            storage_classes: w.watch("storageclasses"),
            priority_classes: w.watch("priorityclasses"),
            namespaces: w.watch("namespaces"),
            pdbs: w.watch("poddisruptionbudgets"),
            watches: w,
        }
    }

    /// Returns once every store has been listed once (the first pass must
    /// not plan from an empty cache). Err names a kind whose watch task is
    /// gone, which only a panic in it can cause.
    pub(super) async fn wait_until_ready(&self) -> Result<(), &'static str> {
        for (kind, store) in &self.watches.synced {
            if store.synced().await.is_err() {
                return Err(kind);
            }
            tracing::debug!("watch cache of {kind} synced");
        }
        Ok(())
    }

    /// A copy of the cached objects, typed as the loader takes them.
    ///
    /// The stores hold `Arc`s; the loader takes owned objects, so each is
    /// cloned (BENCHMARKS.md gives the cost for 5,000 pods).
    pub(super) fn snapshot(&self) -> ClusterObjects {
        ClusterObjects {
            namespaces: owned(&self.namespaces),
            priority_classes: owned(&self.priority_classes),
            storage_classes: owned(&self.storage_classes),
            pvs: owned(&self.pvs),
            pvcs: owned(&self.pvcs),
            nodes: owned(&self.nodes),
            daemonsets: owned(&self.daemonsets),
            pods: owned(&self.pods),
        }
    }
}

impl Stores {
    /// A copy of the cached PodDisruptionBudgets, in (namespace, name) order.
    pub(super) fn pdbs(&self) -> Vec<PodDisruptionBudget> {
        owned(&self.pdbs)
    }
}

/// Every object of a store, cloned out of its `Arc`, in (namespace, name)
/// order: a store iterates in no fixed order, and the same cluster must give
/// the same plan (pod order decides packing ties and claim contents).
fn owned<K: kube::Resource<DynamicType = ()> + Clone + 'static>(s: &Store<K>) -> Vec<K> {
    let mut v: Vec<std::sync::Arc<K>> = s.state();
    v.sort_by(|a, b| {
        let (a, b) = (a.meta(), b.meta());
        (a.namespace.as_deref(), a.name.as_deref())
            .cmp(&(b.namespace.as_deref(), b.name.as_deref()))
    });
    v.iter().map(|o| K::clone(o)).collect()
}

/// A boxed future that ends when a store has been listed once.
type Synced<'a> = Pin<Box<dyn Future<Output = Result<(), ()>> + Send + 'a>>;

/// A store that can say when it is first synced, whatever its kind.
trait Syncs: Send + Sync {
    fn synced(&self) -> Synced<'_>;
}

impl<K> Syncs for Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    fn synced(&self) -> Synced<'_> {
        Box::pin(async move { self.wait_until_ready().await.map_err(drop) })
    }
}

/// The watch tasks and what [`Stores::wait_until_ready`] waits on.
struct Watches {
    client: kube::Client,
    errors: WatchErrors,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    synced: Vec<(&'static str, Box<dyn Syncs>)>,
}

impl Drop for Watches {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Watches {
    /// Watches every object of `K` (across namespaces) into a new store.
    fn watch<K>(&mut self, kind: &'static str) -> Store<K>
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
    {
        self.watch_with(kind, || {})
    }

    /// As [`Watches::watch`], calling `on_event` after each event is applied.
    fn watch_with<K>(
        &mut self,
        kind: &'static str,
        on_event: impl Fn() + Send + 'static,
    ) -> Store<K>
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
    {
        let mut writer: Writer<K> = Writer::default();
        let store = writer.as_reader();
        let api: Api<K> = Api::all(self.client.clone());
        let errors = self.errors.clone();
        self.tasks.push(tokio::spawn(async move {
            loop {
                let mut stream = watcher(api.clone(), watcher::Config::default())
                    // Nothing here reads managedFields: don't keep them.
                    .modify(|o: &mut K| o.managed_fields_mut().clear())
                    .default_backoff()
                    .boxed();
                while let Some(ev) = stream.next().await {
                    match ev {
                        Ok(ev) => {
                            writer.apply_watcher_event(&ev);
                            on_event();
                        }
                        Err(e) => {
                            errors.inc(kind);
                            tracing::warn!("watch of {kind}: {e}; the watch resumes by itself");
                        }
                    }
                }
                // The watcher's stream is endless; should that change, restart it.
                errors.inc(kind);
                tracing::warn!("watch of {kind} ended; starting it again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
        self.synced.push((kind, Box::new(store.clone())));
        store
    }
}
