//! What a pass decides to do, as data.
//!
//! The pass's steps (`steps`) are pure: they read what the pass observed and
//! return [`Action`]s; `run` is the only code that carries them out against
//! the API server and EC2, and records what came back. Keeping decisions as
//! values makes each step testable without a cluster, and gives the next
//! kinds of work (NodeClaim objects, drift and consolidation) one place to
//! add a variant instead of another branch of I/O in the loop.
//!
//! Actions that depend on each other travel in a [`Sequence`]: it runs in
//! order and stops at the first failure (a Node that cannot be cordoned is
//! not deleted; an instance whose Node is still there is not terminated).

use crate::solver::PlannedNode;

/// One change to the world.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Action {
    /// Launch a planned node. Its `name` is already the unique claim name
    /// (the instance's `nodewright.io/claim` tag); `pool` and `node_class`
    /// name entries of the policy version the pass planned with.
    Launch(Box<PlannedNode>),
    /// Launch planned nodes whose claims this pass wrote and whose launch
    /// requests are identical (`launcher::same_launch`), with one
    /// CreateFleet for all of them; each instance is then tagged with its
    /// claim. Only the nodes whose claim was written are launched.
    LaunchGroup(Vec<PlannedNode>),
    /// Write the NodeClaims for planned nodes (before launching them), each
    /// named like its node and carrying the `nodewright.io/termination`
    /// finalizer. Succeeds when at least one was written.
    CreateClaims(Vec<PlannedNode>),
    /// Merge the labels of what EC2 launched into a NodeClaim's `spec.labels`
    /// (a fallback type carries its own), so its Node gets them at registration.
    ClaimLabels {
        claim: String,
        labels: std::collections::BTreeMap<String, String>,
    },
    /// Replace a NodeClaim's status with this one (`NodeClaimStatus` as JSON).
    ClaimStatus {
        claim: String,
        status: serde_json::Value,
    },
    /// Apply a JSON merge patch to a Node (registration: labels, taints,
    /// owner reference, finalizer).
    PatchNode {
        node: String,
        patch: serde_json::Value,
    },
    /// Lift our finalizer from a NodeClaim and delete it.
    DeleteClaim { claim: String },
    /// Terminate every instance of a claim.
    Terminate {
        claim: String,
        reason: TerminateReason,
    },
    /// Ask for a node's removal: record `reason` on its NodeClaim and delete
    /// the claim; its finalizer runs the termination flow (`terminate`).
    RequestRemoval { claim: String, reason: &'static str },
    /// Mark a Node unschedulable, so nothing new lands on it.
    Cordon { node: String },
    /// Delete a Node object.
    DeleteNode { node: String },
    /// Tell a pod something with a Kubernetes Event (`kubectl describe pod`).
    Event(PodEvent),
}

/// Why an instance is terminated (counted and logged differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TerminateReason {
    /// Launched, but its Node never registered within the registration timeout.
    RegistrationTimeout,
    /// Its NodeClaim or its Node was deleted (by someone else, or a removal
    /// that stopped half-way).
    Deleted,
}

/// An Event about one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PodEvent {
    /// "namespace/name".
    pub pod: String,
    pub kind: EventKind,
    /// The Event's note (at most 1 kB; see `steps::event_note`).
    pub note: String,
}

/// The Events nodewright publishes on pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EventKind {
    /// A node was launched for the pod.
    Nominated,
    /// The pod fits nowhere; the note says why.
    FailedProvisioning,
}

impl EventKind {
    /// True for a Warning Event, false for a Normal one.
    pub(super) fn is_warning(self) -> bool {
        matches!(self, EventKind::FailedProvisioning)
    }

    /// The Event's `reason` (CamelCase, as Kubernetes spells reasons).
    pub(super) fn reason(self) -> &'static str {
        match self {
            EventKind::Nominated => "Nominated",
            EventKind::FailedProvisioning => "FailedProvisioning",
        }
    }

    /// The Event's `action`: what nodewright was doing.
    pub(super) fn action(self) -> &'static str {
        match self {
            EventKind::Nominated => "Launch",
            EventKind::FailedProvisioning => "Provision",
        }
    }
}

/// Actions carried out in order; the first that fails skips the rest.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Sequence(pub Vec<Action>);

impl From<Action> for Sequence {
    fn from(a: Action) -> Sequence {
        Sequence(vec![a])
    }
}

impl Sequence {
    /// The actions, in order (what the step tests assert on).
    #[cfg(test)]
    pub(super) fn actions(&self) -> &[Action] {
        &self.0
    }
}
