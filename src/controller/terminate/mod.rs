//! Termination: the only way a node nodewright launched goes away.
//!
//! Every removal, whatever its reason, deletes the NodeClaim
//! ([`request_removal`]); the claim's `nodewright.io/termination` finalizer
//! holds it while the controller, one step per pass, sets `Disrupting`,
//! taints the Node [`DISRUPTED_TAINT`]`:NoSchedule`, evicts its pods through
//! the Eviction API (PodDisruptionBudgets are honoured: a 429 is retried
//! with back-off, never bypassed), deletes what remains once the pool's
//! `termination-grace-period` is over, waits for the Node's
//! VolumeAttachments, terminates the instance, deletes the Node and lifts
//! the finalizer. The decisions are in `plan`, pure; this module only
//! carries them out. Nothing here blocks a pass: a drain that waits simply
//! leaves the claim for the next one.

pub(crate) mod plan;

#[cfg(feature = "controller")]
pub(crate) use plan::DISRUPTED_TAINT;

#[cfg(feature = "controller")]
pub(crate) use io::*;

#[cfg(feature = "controller")]
mod io {
    use std::time::Instant;

    use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
    use k8s_openapi::api::storage::v1::VolumeAttachment;
    use k8s_openapi::jiff::Timestamp;
    use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams};

    use super::plan::{self, Backoffs, Facts, Then};
    use crate::cloud::launcher::{Ec2Launcher, Launcher};
    use crate::controller::nodeclaim::NodeClaim;
    use crate::controller::nodeclaim::lifecycle;
    use crate::ir::PolicySet;

    /// The claim condition set when termination begins.
    pub(crate) const DISRUPTING: &str = "Disrupting";

    /// Asks for a node's removal: records `reason` on its NodeClaim
    /// (`nodewright.io/disruption-reason`) and deletes the claim; its
    /// finalizer then runs the termination flow. A claim already gone is fine.
    pub(crate) async fn request_removal(
        client: &kube::Client,
        claim: &str,
        reason: &str,
    ) -> Result<(), kube::Error> {
        let api: Api<NodeClaim> = Api::all(client.clone());
        let patch = serde_json::json!({
            "metadata": {"annotations": {plan::REASON_ANNOTATION: reason}}
        });
        let gone = |r: Result<(), kube::Error>| match r {
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            other => other,
        };
        gone(
            api.patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(drop),
        )?;
        gone(api.delete(claim, &DeleteParams::default()).await.map(drop))
    }

    /// The removal reason recorded on a claim (`deleted` when someone else deleted it).
    pub(crate) fn reason_of(c: &NodeClaim) -> &str {
        c.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(plan::REASON_ANNOTATION))
            .map_or("deleted", String::as_str)
    }

    /// How far one pass took a claim.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum Progress {
        /// Still draining or detaching; picked up again next pass.
        Waiting(Then),
        /// Instance terminated, Node and claim released.
        Done { instances: Vec<String> },
        /// A write failed (logged) or the gate closed; next pass retries.
        Stopped,
    }

    /// What one claim's step reads besides the claim.
    pub(crate) struct Ctx<'a> {
        pub client: &'a kube::Client,
        pub launcher: &'a Ec2Launcher,
        pub policy: &'a PolicySet,
        /// The pods of the pass's snapshot.
        pub pods: &'a [Pod],
        /// Asked before every write (only the leader writes).
        pub open: &'a (dyn Fn() -> bool + Sync),
    }

    /// Takes one terminating claim as far as it can go this pass.
    pub(crate) async fn advance(
        ctx: &Ctx<'_>,
        claim: &NodeClaim,
        node: Option<&Node>,
        backoffs: &mut Backoffs,
    ) -> Progress {
        let Some(name) = claim.metadata.name.as_deref() else {
            return Progress::Stopped;
        };
        let node_name = node.and_then(|n| n.metadata.name.as_deref());
        let pods: Vec<&Pod> = match node_name {
            Some(n) => ctx
                .pods
                .iter()
                .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(n))
                .collect(),
            None => Vec::new(),
        };
        let reason = reason_of(claim);
        let mut facts = Facts {
            node,
            pods,
            attachments: 0,
            grace: ctx.policy.pool(&claim.spec.pool).and_then(|p| {
                match p.disruption.termination_grace_period {
                    Some(crate::ir::Duration::Finite(d)) => Some(d),
                    _ => None,
                }
            }),
            since: claim
                .metadata
                .deletion_timestamp
                .as_ref()
                .or(node.and_then(|n| n.metadata.deletion_timestamp.as_ref()))
                .map(|t| t.0),
            disrupting: lifecycle::is_true(claim.status.as_ref(), DISRUPTING),
            drain: reason != plan::REASON_GONE,
            now: Timestamp::now(),
        };
        let now = Instant::now();
        let mut step = plan::step(&facts, |k| backoffs.due(k, now));
        if step.then == Then::Finish
            && facts.drain
            && !plan::grace_over(&facts)
            && let Some(n) = node_name
        {
            match attachments(ctx.client, n, &facts.pods).await {
                Ok(count) => facts.attachments = count,
                Err(e) => {
                    tracing::error!("listing the VolumeAttachments of node {n}: {e}");
                    return Progress::Stopped;
                }
            }
            step = plan::step(&facts, |k| backoffs.due(k, now));
        }
        if step.set_disrupting {
            if !(ctx.open)() || !set_disrupting(ctx.client, claim, reason).await {
                return Progress::Stopped;
            }
            tracing::info!("claim {name}: termination begins ({reason})");
        }
        if step.taint
            && let Some(n) = node
            && (!(ctx.open)() || !taint(ctx.client, n).await)
        {
            return Progress::Stopped;
        }
        if !step.evict.is_empty() {
            if !(ctx.open)() {
                return Progress::Stopped;
            }
            // All at once, each for at most EVICT_WAIT (see `evict`).
            let results =
                futures_util::future::join_all(step.evict.iter().map(|key| evict(ctx.client, key)))
                    .await;
            for (key, refused) in step.evict.iter().zip(results) {
                if let Some(why) = refused {
                    let wait = backoffs.refused(key, now);
                    tracing::info!("eviction of pod {key} refused ({why}); retrying in {wait:?}");
                }
            }
        }
        for key in &step.delete {
            if !(ctx.open)() {
                return Progress::Stopped;
            }
            force_delete(ctx.client, name, key).await;
        }
        if step.then != Then::Finish {
            return Progress::Waiting(step.then);
        }
        finish(ctx, name, node_name).await
    }

    /// Terminates the instance, deletes the Node (lifting our finalizer) and
    /// releases the claim; each step is idempotent, so a failure half-way is
    /// resumed by the next pass.
    async fn finish(ctx: &Ctx<'_>, claim: &str, node: Option<&str>) -> Progress {
        if !(ctx.open)() {
            return Progress::Stopped;
        }
        let instances = match ctx.launcher.terminate(claim).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!("terminating claim {claim}: {e}");
                return Progress::Stopped;
            }
        };
        if let Some(n) = node {
            let nodes: Api<Node> = Api::all(ctx.client.clone());
            if !(ctx.open)() {
                return Progress::Stopped;
            }
            match nodes.delete(n, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    tracing::error!("deleting node {n}: {e}");
                    return Progress::Stopped;
                }
            }
            if crate::controller::run::release(&nodes, n).await.is_none() {
                return Progress::Stopped;
            }
        }
        let claims: Api<NodeClaim> = Api::all(ctx.client.clone());
        if !(ctx.open)()
            || crate::controller::run::release(&claims, claim)
                .await
                .is_none()
        {
            return Progress::Stopped;
        }
        // Deleted already unless only its Node was (`kubectl delete node`).
        match claims.delete(claim, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!("deleting NodeClaim {claim}: {e}"),
        }
        Progress::Done { instances }
    }

    /// VolumeAttachments naming node `node` (`spec.nodeName`) that hold its
    /// termination: not those of volumes only the pods the drain leaves
    /// alone use ([`plan::holding_attachments`]).
    async fn attachments(
        client: &kube::Client,
        node: &str,
        pods: &[&Pod],
    ) -> Result<usize, kube::Error> {
        let api: Api<VolumeAttachment> = Api::all(client.clone());
        let attached: Vec<Option<String>> = api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|v| v.spec.node_name == node)
            .map(|v| v.spec.source.persistent_volume_name)
            .collect();
        if attached.is_empty() || pods.is_empty() {
            return Ok(attached.len());
        }
        // Which PV each claim of the remaining pods is bound to.
        let mut bound = std::collections::HashMap::new();
        let namespaces: std::collections::BTreeSet<&str> = pods
            .iter()
            .filter_map(|p| p.metadata.namespace.as_deref())
            .collect();
        for ns in namespaces {
            let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
            for c in pvcs.list(&ListParams::default()).await?.items {
                if let (Some(name), Some(pv)) =
                    (c.metadata.name, c.spec.and_then(|s| s.volume_name))
                {
                    bound.insert((ns.to_string(), name), pv);
                }
            }
        }
        Ok(plan::holding_attachments(&attached, pods, |ns, claim| {
            bound.get(&(ns.to_string(), claim.to_string())).cloned()
        }))
    }

    /// Sets `Disrupting=True` (reason: the removal's reason, CamelCase).
    async fn set_disrupting(client: &kube::Client, c: &NodeClaim, reason: &str) -> bool {
        let name = c.metadata.name.as_deref().unwrap_or_default();
        let mut status = c.status.clone().unwrap_or_default();
        let mut chars = reason.chars();
        let camel: String = chars
            .next()
            .map(|f| f.to_ascii_uppercase().to_string() + chars.as_str())
            .unwrap_or_else(|| "Deleted".into());
        lifecycle::set_condition(
            &mut status.conditions,
            DISRUPTING,
            true,
            &camel,
            format!("the node is being removed ({reason}): tainted, drained, then terminated"),
            Timestamp::now(),
        );
        let api: Api<NodeClaim> = Api::all(client.clone());
        let patch = serde_json::json!({ "status": status });
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::error!("setting Disrupting on NodeClaim {name}: {e}");
                false
            }
        }
    }

    /// Adds the disrupted taint to the Node (a compare-and-swap on its taints).
    async fn taint(client: &kube::Client, n: &Node) -> bool {
        let name = n.metadata.name.as_deref().unwrap_or_default();
        let mut taints = n
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        taints.push(k8s_openapi::api::core::v1::Taint {
            key: DISRUPTED_TAINT_KEY.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": n.metadata.resource_version},
            "spec": {"taints": taints}
        });
        let api: Api<Node> = Api::all(client.clone());
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!("node {name} tainted {DISRUPTED_TAINT_KEY}:NoSchedule");
                true
            }
            Err(e) => {
                tracing::error!("tainting node {name}: {e}");
                false
            }
        }
    }

    use super::DISRUPTED_TAINT as DISRUPTED_TAINT_KEY;

    fn split(key: &str) -> (&str, &str) {
        key.split_once('/').unwrap_or(("", key))
    }

    /// How long one eviction may take. The client retries a 429 itself
    /// (honouring the server's Retry-After, for minutes); a pass cannot wait
    /// that long, so an eviction unanswered by then counts as refused and is
    /// tried again after its back-off. Dropping the request cancels it.
    const EVICT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

    /// Evicts one pod through the Eviction API; Some(why) when refused (a
    /// PodDisruptionBudget allows no disruption now: 429, retried later).
    /// A pod already gone (404) is fine.
    async fn evict(client: &kube::Client, key: &str) -> Option<String> {
        let (ns, name) = split(key);
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        match tokio::time::timeout(EVICT_WAIT, api.evict(name, &EvictParams::default())).await {
            Ok(Ok(_)) => {
                tracing::info!("evicted pod {key}");
                None
            }
            Ok(Err(kube::Error::Api(e))) if e.code == 404 => None,
            Ok(Err(kube::Error::Api(e))) if e.code == 429 => Some(e.message),
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!(
                "no answer within {EVICT_WAIT:?}: the API server answers 429 while a PodDisruptionBudget allows no disruption"
            )),
        }
    }

    /// Deletes a pod at once: the grace period of its node is over.
    async fn force_delete(client: &kube::Client, claim: &str, key: &str) {
        let (ns, name) = split(key);
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        match api
            .delete(name, &DeleteParams::default().grace_period(0))
            .await
        {
            Ok(_) => {
                tracing::warn!("claim {claim}: termination grace period over; pod {key} deleted")
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::error!("deleting pod {key}: {e}"),
        }
    }
}
