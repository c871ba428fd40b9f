//! The interruption queue (`--interruption-queue`): a background task that
//! long-polls the SQS queue EventBridge feeds, and acts on each message.
//!
//! What a message means is decided in `cloud::interruption` (pure); this
//! module matches its instances to our NodeClaims and carries it out:
//!
//! - spot interruption warning, scheduled change: the claim gets the
//!   `Interrupted` condition, a spot offering (type, zone) is marked
//!   unavailable in the availability cache (so the replacement goes
//!   elsewhere), and the claim's removal is requested at once. The pods go
//!   pending and the next pass launches their replacement while the old node
//!   drains within the two-minute window;
//! - state change to stopping, stopped, shutting-down or terminated: the
//!   claim is removed (reason `gone` when already terminated);
//! - rebalance recommendation and other events: logged and counted only.
//!
//! A message is deleted only once handled. A malformed message, or one about
//! an instance no claim of ours has, is logged, counted and deleted: it never
//! wedges the queue. A message whose handling failed (the API server did not
//! answer) stays, and SQS hands it out again after its visibility timeout.
//! Only the leader receives (a follower leaves the queue to it).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::nodeclaim::NodeClaim;
use super::nodeclaim::lifecycle;
use super::run::Gate;
use crate::catalog::{CapacityType, UnavailableOfferings};
use crate::cloud::interruption::{self, Decision, Kind, Message};

/// `nodewright_interruption_messages_total{kind, outcome}`.
pub(super) type MessageCounter = Family<[(&'static str, &'static str); 2], Counter>;

/// Karpenter's receive: up to 10 messages, long polling for 20 s, hidden 20 s while handled.
const MAX_MESSAGES: i32 = 10;
const WAIT_SECONDS: i32 = 20;
const VISIBILITY_SECONDS: i32 = 20;
/// After a failed SQS call.
const BACKOFF: Duration = Duration::from_secs(5);

/// How a message ended, as the metric's `outcome` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Acted on (claims marked and their removal requested).
    Handled,
    /// Nothing to do for this kind (rebalance, a running instance, other events).
    Ignored,
    /// About instances no claim of ours has.
    NotOurs,
    /// Unreadable.
    Malformed,
    /// Acting failed; the message stays on the queue.
    Error,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Handled => "handled",
            Outcome::Ignored => "ignored",
            Outcome::NotOurs => "not_ours",
            Outcome::Malformed => "malformed",
            Outcome::Error => "error",
        }
    }

    /// Everything but a failure is deleted.
    fn delete(self) -> bool {
        self != Outcome::Error
    }
}

/// A claim a message names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub claim: String,
    pub instance_id: String,
    /// (instance type, zone), once launched and spot: the offering to mark.
    pub spot_offering: Option<(String, String)>,
    /// Already being deleted: nothing more to request.
    pub deleting: bool,
    /// Its Node, once registered (the Event goes on it too).
    pub node: Option<String>,
}

/// The Event published on an interrupted claim and its Node: (reason,
/// note). The reason is the `Interrupted` condition's (`SpotInterruption`,
/// `ScheduledChange`, `InstanceStateChange`); the note names the instance,
/// what is done, and the deadline the message gave (pure).
pub(super) fn event(condition: &str, m: &Message, instance_id: &str) -> (String, String) {
    let what = match m.kind {
        Kind::SpotInterruption => "spot interruption warning".to_string(),
        Kind::ScheduledChange => format!("scheduled change {}", m.detail),
        _ => format!("instance state {}", m.detail),
    };
    let deadline = m
        .deadline
        .as_deref()
        .map(|d| format!(" before {d}"))
        .unwrap_or_default();
    (
        condition.to_string(),
        format!("{what} for instance {instance_id}: replacing it and draining the node{deadline}"),
    )
}

/// The claims whose instance the message names (pure).
pub(super) fn targets(m: &Message, claims: &[NodeClaim]) -> Vec<Target> {
    claims
        .iter()
        .filter_map(|c| {
            let s = c.status.as_ref()?;
            let id = super::claims::instance_id_of(s.provider_id.as_deref()?)?;
            if !m.instance_ids.iter().any(|i| i == id) {
                return None;
            }
            let spot = s.capacity_type.as_deref() == Some(CapacityType::Spot.as_str());
            Some(Target {
                claim: c.metadata.name.clone()?,
                instance_id: id.to_string(),
                spot_offering: match (spot, &s.instance_type, &s.zone) {
                    (true, Some(t), Some(z)) => Some((t.clone(), z.clone())),
                    _ => None,
                },
                deleting: c.metadata.deletion_timestamp.is_some(),
                node: s.node_name.clone(),
            })
        })
        .collect()
}

/// The queue task's inputs.
pub(super) struct Queue {
    pub sqs: aws_sdk_sqs::Client,
    /// A queue name, or its URL.
    pub queue: String,
    pub client: kube::Client,
    pub unavailable: Arc<UnavailableOfferings>,
    pub gate: Gate,
    pub messages: MessageCounter,
    /// Publishes the interruption's Event on the claim and its Node.
    pub recorder: Recorder,
}

impl Queue {
    /// Receives and handles messages until shutdown (the caller aborts the task too).
    pub(super) async fn run(self) {
        let mut shutdown = self.gate.shutdown.clone();
        let url = tokio::select! {
            u = self.url() => Some(u),
            _ = shutdown.wait_for(|s| *s) => None,
        };
        let Some(url) = url else {
            return;
        };
        tracing::info!("interruption queue {url}: receiving");
        loop {
            if *shutdown.borrow() {
                return;
            }
            if !self.leads() {
                // A follower leaves the queue to the leader; standing can
                // lapse with time alone, so look again every second too.
                let mut standing = self.gate.standing.clone();
                tokio::select! {
                    _ = standing.changed() => {}
                    _ = shutdown.changed() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let got = tokio::select! {
                r = self
                    .sqs
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(MAX_MESSAGES)
                    .wait_time_seconds(WAIT_SECONDS)
                    .visibility_timeout(VISIBILITY_SECONDS)
                    .send() => r,
                _ = shutdown.changed() => continue,
            };
            let messages = match got {
                Ok(out) => out.messages.unwrap_or_default(),
                Err(e) => {
                    tracing::error!(
                        "interruption queue: receiving: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(&e)
                    );
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            };
            if messages.is_empty() {
                continue;
            }
            // A message received by a leader that lost the lease since is left
            // for the next leader (it reappears after its visibility timeout).
            if !self.leads() {
                continue;
            }
            let claims = match Api::<NodeClaim>::all(self.client.clone())
                .list(&ListParams::default())
                .await
            {
                Ok(l) => l.items,
                Err(e) => {
                    tracing::error!("interruption queue: listing NodeClaims: {e}");
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            };
            for msg in messages {
                let body = msg.body().unwrap_or_default();
                let (kind, outcome) = self.handle(body, &claims).await;
                self.messages
                    .get_or_create(&[("kind", kind.as_str()), ("outcome", outcome.as_str())])
                    .inc();
                if !outcome.delete() {
                    continue;
                }
                let Some(handle) = msg.receipt_handle() else {
                    continue;
                };
                if let Err(e) = self
                    .sqs
                    .delete_message()
                    .queue_url(&url)
                    .receipt_handle(handle)
                    .send()
                    .await
                {
                    tracing::error!(
                        "interruption queue: deleting message {}: {}",
                        msg.message_id().unwrap_or_default(),
                        aws_sdk_sqs::error::DisplayErrorContext(&e)
                    );
                }
            }
        }
    }

    /// Whether this replica may receive now (the gate's test, without its log line).
    fn leads(&self) -> bool {
        self.gate
            .standing
            .borrow()
            .may_act(std::time::SystemTime::now())
            && !*self.gate.shutdown.borrow()
    }

    /// The queue's URL: given, or looked up by name (retried until it answers).
    async fn url(&self) -> String {
        if self.queue.starts_with("https://") || self.queue.starts_with("http://") {
            return self.queue.clone();
        }
        loop {
            match self
                .sqs
                .get_queue_url()
                .queue_name(&self.queue)
                .send()
                .await
            {
                Ok(o) => {
                    if let Some(u) = o.queue_url {
                        return u;
                    }
                    tracing::error!("interruption queue {}: no URL returned", self.queue);
                }
                Err(e) => tracing::error!(
                    "interruption queue {}: looking up its URL: {} (check the queue's name and the controller's sqs:GetQueueUrl permission)",
                    self.queue,
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                ),
            }
            tokio::time::sleep(BACKOFF).await;
        }
    }

    /// Handles one message body; the outcome says whether to delete it.
    async fn handle(&self, body: &str, claims: &[NodeClaim]) -> (Kind, Outcome) {
        let m = match interruption::parse(body) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("interruption queue: malformed message deleted: {e}");
                return (Kind::Malformed, Outcome::Malformed);
            }
        };
        let (reason, condition, mark) = match interruption::decide(&m) {
            Decision::Remove {
                reason,
                condition,
                mark_offering,
            } => (reason, condition, mark_offering),
            Decision::Ignore(why) => {
                tracing::info!(
                    "interruption queue: {} for {:?} ({}): no action, {why}",
                    m.kind.as_str(),
                    m.instance_ids,
                    m.detail
                );
                return (m.kind, Outcome::Ignored);
            }
        };
        let targets = targets(&m, claims);
        if targets.is_empty() {
            tracing::debug!(
                "interruption queue: {} for {:?}: no claim of ours",
                m.kind.as_str(),
                m.instance_ids
            );
            return (m.kind, Outcome::NotOurs);
        }
        let mut outcome = Outcome::Handled;
        for t in targets {
            if mark && let Some((ty, zone)) = &t.spot_offering {
                self.unavailable.mark(
                    ty,
                    zone,
                    CapacityType::Spot,
                    &interruption::unavailable_reason(&m),
                );
            }
            if t.deleting {
                continue;
            }
            if !self.leads() {
                // No longer the leader: the message stays for the next one.
                return (m.kind, Outcome::Error);
            }
            let message = format!(
                "{} for instance {}{}",
                m.kind.as_str(),
                t.instance_id,
                if m.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", m.detail)
                }
            );
            tracing::warn!(
                "interruption: claim {} ({message}): removal requested, reason {reason}",
                t.claim
            );
            if let Err(e) = self.mark_claim(&t.claim, condition, message).await {
                tracing::error!("interruption: marking claim {}: {e}", t.claim);
            }
            self.tell(&t, event(condition, &m, &t.instance_id)).await;
            if let Err(e) = super::terminate::request_removal(&self.client, &t.claim, reason).await
            {
                tracing::error!("interruption: removing claim {}: {e}", t.claim);
                outcome = Outcome::Error;
            }
        }
        (m.kind, outcome)
    }

    /// Publishes the interruption's Warning Event on the claim and on its
    /// Node; a failure only costs the Event (logged).
    async fn tell(&self, t: &Target, (reason, note): (String, String)) {
        let ev = Event {
            type_: EventType::Warning,
            reason,
            note: Some(note),
            action: "Interrupted".into(),
            secondary: None,
        };
        let claim = ObjectReference {
            api_version: Some(NodeClaim::api_version(&()).into_owned()),
            kind: Some(NodeClaim::kind(&()).into_owned()),
            name: Some(t.claim.clone()),
            ..ObjectReference::default()
        };
        let node = t.node.as_ref().map(|n| ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(n.clone()),
            ..ObjectReference::default()
        });
        for r in std::iter::once(claim).chain(node) {
            if let Err(e) = self.recorder.publish(&ev, &r).await {
                tracing::warn!(
                    "interruption: Event {} for {} {}: {e}",
                    ev.reason,
                    r.kind.as_deref().unwrap_or_default(),
                    r.name.as_deref().unwrap_or_default()
                );
            }
        }
    }

    /// Sets the claim's `Interrupted` condition (read fresh: the pass writes status too).
    async fn mark_claim(
        &self,
        claim: &str,
        reason: &str,
        message: String,
    ) -> Result<(), kube::Error> {
        let api: Api<NodeClaim> = Api::all(self.client.clone());
        let c = api.get(claim).await?;
        let status = lifecycle::interrupted(
            &c.status.unwrap_or_default(),
            reason,
            message,
            k8s_openapi::jiff::Timestamp::now(),
        );
        let patch = serde_json::json!({ "status": status });
        api.patch_status(claim, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::nodeclaim::{NodeClaimSpec, NodeClaimStatus};

    fn spec() -> NodeClaimSpec {
        NodeClaimSpec {
            pool: "general".into(),
            node_class: "default".into(),
            requirements: crate::controller::nodeclaim::types::ClaimRequirements {
                instance_types: Vec::new(),
                zones: Vec::new(),
                capacity_types: Vec::new(),
            },
            resources: Default::default(),
            labels: Default::default(),
            taints: Vec::new(),
            startup_taints: Vec::new(),
            expire_after: None,
            pods: Vec::new(),
        }
    }

    fn claim(name: &str, id: &str, ct: &str, deleting: bool) -> NodeClaim {
        let mut c = NodeClaim::new(name, spec());
        c.status = Some(NodeClaimStatus {
            provider_id: Some(format!("aws:///us-east-1a/{id}")),
            instance_type: Some("m5.large".into()),
            zone: Some("us-east-1a".into()),
            capacity_type: Some(ct.into()),
            ..Default::default()
        });
        if deleting {
            c.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                ));
        }
        c
    }

    fn message(ids: &[&str]) -> Message {
        Message {
            kind: Kind::SpotInterruption,
            id: String::new(),
            instance_ids: ids.iter().map(|s| s.to_string()).collect(),
            detail: String::new(),
            deadline: None,
        }
    }

    #[test]
    fn the_event_names_the_instance_and_the_deadline() {
        let mut m = message(&["i-1"]);
        m.deadline = Some("2026-11-30T21:00:30Z".into());
        assert_eq!(
            event("SpotInterruption", &m, "i-1"),
            (
                "SpotInterruption".to_string(),
                "spot interruption warning for instance i-1: replacing it and draining the node before 2026-11-30T21:00:30Z".to_string()
            )
        );
        m.kind = Kind::ScheduledChange;
        m.detail = "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED".into();
        m.deadline = None;
        assert_eq!(
            event("ScheduledChange", &m, "i-2").1,
            "scheduled change AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED for instance i-2: replacing it and draining the node"
        );
    }

    #[test]
    fn targets_are_the_claims_of_the_named_instances() {
        let claims = [
            claim("a", "i-1", "spot", false),
            claim("b", "i-2", "on-demand", false),
            claim("c", "i-3", "spot", true),
            NodeClaim::new("unlaunched", spec()),
        ];
        let t = targets(&message(&["i-1", "i-2", "i-3", "i-9"]), &claims);
        assert_eq!(
            t,
            [
                Target {
                    claim: "a".into(),
                    instance_id: "i-1".into(),
                    spot_offering: Some(("m5.large".into(), "us-east-1a".into())),
                    deleting: false,
                    node: None,
                },
                Target {
                    claim: "b".into(),
                    instance_id: "i-2".into(),
                    spot_offering: None,
                    deleting: false,
                    node: None,
                },
                Target {
                    claim: "c".into(),
                    instance_id: "i-3".into(),
                    spot_offering: Some(("m5.large".into(), "us-east-1a".into())),
                    deleting: true,
                    node: None,
                },
            ]
        );
        assert!(targets(&message(&["i-9"]), &claims).is_empty());
    }

    #[test]
    fn only_failures_stay_on_the_queue() {
        for o in [
            Outcome::Handled,
            Outcome::Ignored,
            Outcome::NotOurs,
            Outcome::Malformed,
        ] {
            assert!(o.delete(), "{o:?}");
        }
        assert!(!Outcome::Error.delete());
    }
}
