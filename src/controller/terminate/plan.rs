//! The termination flow's decisions, as pure functions of what a pass observed.
//!
//! A claim being deleted (or whose Node is being deleted) is carried, one
//! step per pass, through: `Disrupting` condition → taint → drain (evict,
//! then, past the pool's `termination-grace-period`, delete) → wait for the
//! node's VolumeAttachments → terminate the instance → delete the Node →
//! release the claim. Every decision reads only the cluster (the claim's
//! deletion timestamp and conditions, the Node's taint, the pods bound to
//! it), so a restarted controller resumes where the last one stopped. The
//! only memory is the eviction back-off ([`Backoffs`]); losing it costs a
//! retry sooner, never a bypassed PodDisruptionBudget.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;

/// Taint key set on a Node the moment its termination begins.
pub(crate) const DISRUPTED_TAINT: &str = "nodewright.io/disrupted";
/// Annotations (value `"true"`, on a pod or a Node) that block voluntary disruption.
pub(crate) const DO_NOT_DISRUPT: [&str; 2] = [
    "karpenter.sh/do-not-disrupt",
    "nodewright.io/do-not-disrupt",
];
/// Claim annotation saying why it is being removed.
pub(crate) const REASON_ANNOTATION: &str = "nodewright.io/disruption-reason";
/// The reason of a claim whose instance is already gone: nothing is left to drain.
pub(crate) const REASON_GONE: &str = "gone";

/// Whether `annotations` carry a do-not-disrupt annotation set to `"true"`.
pub(crate) fn do_not_disrupt(annotations: Option<&BTreeMap<String, String>>) -> bool {
    annotations.is_some_and(|a| {
        DO_NOT_DISRUPT
            .iter()
            .any(|k| a.get(*k).is_some_and(|v| v == "true"))
    })
}

/// Whether the Node already carries the disrupted taint.
pub(crate) fn tainted(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == DISRUPTED_TAINT))
}

/// "namespace/name" of a pod.
pub(crate) fn pod_key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or_default(),
        p.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Why a pod on a terminating node is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    /// Succeeded or Failed: holds nothing.
    Terminal,
    /// Its DaemonSet controller would only put it back; it goes with the node.
    DaemonSet,
    /// A static pod the kubelet owns; the API cannot evict it.
    Mirror,
    /// It tolerates the disrupted taint, so draining it would be pointless.
    Tolerates,
}

/// Whether a pod on a terminating node is left alone, and why.
pub(crate) fn skip(p: &Pod) -> Option<Skip> {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return Some(Skip::Terminal);
    }
    if p.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "DaemonSet")
    {
        return Some(Skip::DaemonSet);
    }
    if p.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"))
    {
        return Some(Skip::Mirror);
    }
    let tolerates = p
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .is_some_and(|ts| {
            ts.iter().any(|t| {
                let key = match t.key.as_deref() {
                    None | Some("") => t.operator.as_deref() == Some("Exists"),
                    Some(k) => k == DISRUPTED_TAINT,
                };
                let effect = matches!(t.effect.as_deref(), None | Some("") | Some("NoSchedule"));
                key && effect
            })
        });
    tolerates.then_some(Skip::Tolerates)
}

/// The PersistentVolumes `pods` mount through claims: a `persistentVolumeClaim`
/// volume names its claim, a generic `ephemeral` one owns the claim
/// `<pod>-<volume>`; `volume_of(namespace, claim)` gives the PV a claim is
/// bound to (None: unbound, or unknown).
pub(crate) fn pod_volumes<'p>(
    pods: impl IntoIterator<Item = &'p Pod>,
    volume_of: impl Fn(&str, &str) -> Option<String>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for p in pods {
        let ns = p.metadata.namespace.as_deref().unwrap_or_default();
        let pod = p.metadata.name.as_deref().unwrap_or_default();
        for v in p.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let claim = match (&v.persistent_volume_claim, &v.ephemeral) {
                (Some(c), _) => c.claim_name.clone(),
                (None, Some(_)) => format!("{pod}-{}", v.name),
                (None, None) => continue,
            };
            out.extend(volume_of(ns, &claim));
        }
    }
    out
}

/// How many of the node's VolumeAttachments hold its termination.
///
/// `attached` are the PersistentVolume names of the VolumeAttachments
/// naming the node (None: an inline volume with no PV). A volume used only
/// by pods the drain leaves alone ([`skip`]: DaemonSet, mirror, tolerating
/// pods) stays attached while they run, so waiting for it would hold the
/// node until the grace period; like Karpenter, those are not waited for.
/// A volume a drained pod also uses is waited for.
pub(crate) fn holding_attachments(
    attached: &[Option<String>],
    pods: &[&Pod],
    volume_of: impl Fn(&str, &str) -> Option<String>,
) -> usize {
    let (skipped, drained): (Vec<&Pod>, Vec<&Pod>) =
        pods.iter().copied().partition(|p| skip(p).is_some());
    let of_skipped = pod_volumes(skipped, &volume_of);
    let of_drained = pod_volumes(drained, &volume_of);
    attached
        .iter()
        .filter(|pv| match pv {
            Some(pv) => !of_skipped.contains(pv) || of_drained.contains(pv),
            None => true,
        })
        .count()
}

/// What a pass knows about one terminating claim.
#[derive(Debug, Clone)]
pub(crate) struct Facts<'a> {
    /// Its Node, when it has one.
    pub node: Option<&'a Node>,
    /// The pods bound to that Node.
    pub pods: Vec<&'a Pod>,
    /// VolumeAttachments naming that Node that hold it ([`holding_attachments`]).
    pub attachments: usize,
    /// The pool's `termination-grace-period` (None: wait for ever).
    pub grace: Option<Duration>,
    /// When termination began (the claim's, or its Node's, deletion timestamp).
    pub since: Option<Timestamp>,
    /// Whether the claim already carries `Disrupting=True`.
    pub disrupting: bool,
    /// False when the instance is already gone (reason `gone`): nothing to drain.
    pub drain: bool,
    pub now: Timestamp,
}

/// What to do about one terminating claim this pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Step {
    /// Set `Disrupting=True` on the claim.
    pub set_disrupting: bool,
    /// Taint the Node `nodewright.io/disrupted:NoSchedule`.
    pub taint: bool,
    /// Pods ("namespace/name") to evict through the Eviction API.
    pub evict: Vec<String>,
    /// Pods to delete outright: the grace period is over.
    pub delete: Vec<String>,
    /// What comes after.
    pub then: Then,
}

/// Where the flow stands once this pass's writes are done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Then {
    /// Pods still to go (that many); the next pass looks again.
    #[default]
    Draining,
    /// The pods are gone; VolumeAttachments (that many) still hold the node.
    Detaching(usize),
    /// Terminate the instance, delete the Node, release the claim.
    Finish,
}

/// Whether the grace period is over (never without one).
pub(crate) fn grace_over(f: &Facts<'_>) -> bool {
    match (f.grace, f.since) {
        (Some(g), Some(s)) => f
            .now
            .duration_since(s)
            .try_into()
            .is_ok_and(|e: Duration| e >= g),
        _ => false,
    }
}

/// The step for one claim. `due` says whether a pod's eviction back-off has
/// elapsed (see [`Backoffs::due`]).
pub(crate) fn step(f: &Facts<'_>, due: impl Fn(&str) -> bool) -> Step {
    let mut out = Step {
        set_disrupting: !f.disrupting,
        ..Step::default()
    };
    let Some(node) = f.node else {
        out.then = Then::Finish;
        return out;
    };
    out.taint = !tainted(node);
    if !f.drain {
        out.then = Then::Finish;
        return out;
    }
    let over = grace_over(f);
    let to_drain: Vec<&Pod> = f
        .pods
        .iter()
        .copied()
        .filter(|p| skip(p).is_none())
        .collect();
    if over {
        out.delete = to_drain.iter().map(|p| pod_key(p)).collect();
    } else if !out.taint {
        // Evict only once the taint is in place, so nothing evicted comes back.
        out.evict = to_drain
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            // Karpenter's reading: a do-not-disrupt pod waits for the grace period.
            .filter(|p| !do_not_disrupt(p.metadata.annotations.as_ref()))
            .map(|p| pod_key(p))
            .filter(|k| due(k))
            .collect();
    }
    out.then = if !to_drain.is_empty() {
        Then::Draining
    } else if f.attachments > 0 && !over {
        Then::Detaching(f.attachments)
    } else {
        Then::Finish
    };
    out
}

/// First retry of an eviction refused with 429 (a PodDisruptionBudget).
pub(crate) const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The longest wait between two evictions of one pod (Karpenter's is 10 s too).
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// How long to wait after the `attempts`-th refused eviction: 1 s, doubling, at most 10 s.
pub(crate) fn backoff(attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
}

/// Per pod: refused evictions so far and when the next may go.
#[derive(Debug, Clone, Default)]
pub(crate) struct Backoffs {
    pods: HashMap<String, (u32, Instant)>,
}

impl Backoffs {
    /// Whether `pod` may be evicted at `now`.
    pub(crate) fn due(&self, pod: &str, now: Instant) -> bool {
        self.pods.get(pod).is_none_or(|(_, next)| now >= *next)
    }

    /// Records a refused eviction (429); returns the wait before the next.
    pub(crate) fn refused(&mut self, pod: &str, now: Instant) -> Duration {
        let e = self.pods.entry(pod.to_string()).or_insert((0, now));
        e.0 += 1;
        let wait = backoff(e.0);
        e.1 = now + wait;
        wait
    }

    /// Forgets pods no longer draining.
    pub(crate) fn retain(&mut self, live: impl Fn(&str) -> bool) {
        self.pods.retain(|k, _| live(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, extra: serde_json::Value) -> Pod {
        let mut v = serde_json::json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"nodeName": "n", "containers": [{"name": "c"}]},
            "status": {"phase": "Running"}
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn node(tainted: bool) -> Node {
        let taints = if tainted {
            serde_json::json!([{"key": DISRUPTED_TAINT, "effect": "NoSchedule"}])
        } else {
            serde_json::json!([])
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n"}, "spec": {"taints": taints}
        }))
        .unwrap()
    }

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn facts<'a>(node: Option<&'a Node>, pods: &'a [Pod]) -> Facts<'a> {
        Facts {
            node,
            pods: pods.iter().collect(),
            attachments: 0,
            grace: None,
            since: Some(ts(0)),
            disrupting: true,
            drain: true,
            now: ts(10),
        }
    }

    #[test]
    fn daemonset_mirror_terminal_and_tolerating_pods_are_skipped() {
        let ds = pod(
            "ds",
            serde_json::json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1",
                "kind": "DaemonSet", "name": "d", "uid": "u"}]}}),
        );
        let mirror = pod(
            "m",
            serde_json::json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}}),
        );
        let done = pod(
            "done",
            serde_json::json!({"status": {"phase": "Succeeded"}}),
        );
        let tol = pod(
            "tol",
            serde_json::json!({"spec": {"tolerations": [{"key": DISRUPTED_TAINT,
                "operator": "Exists", "effect": "NoSchedule"}]}}),
        );
        let all = pod(
            "all",
            serde_json::json!({"spec": {"tolerations": [{"operator": "Exists"}]}}),
        );
        let other = pod(
            "other",
            serde_json::json!({"spec": {"tolerations": [{"key": "x", "operator": "Exists"},
                {"key": DISRUPTED_TAINT, "operator": "Exists", "effect": "NoExecute"}]}}),
        );
        assert_eq!(skip(&ds), Some(Skip::DaemonSet));
        assert_eq!(skip(&mirror), Some(Skip::Mirror));
        assert_eq!(skip(&done), Some(Skip::Terminal));
        assert_eq!(skip(&tol), Some(Skip::Tolerates));
        assert_eq!(skip(&all), Some(Skip::Tolerates));
        assert_eq!(
            skip(&other),
            None,
            "a NoExecute toleration does not cover NoSchedule"
        );

        let n = node(true);
        let pods = [ds, mirror, done, tol, other];
        let s = step(&facts(Some(&n), &pods), |_| true);
        assert_eq!(s.evict, ["ns/other"]);
        assert_eq!(s.then, Then::Draining);
    }

    #[test]
    fn the_flow_taints_first_then_evicts_then_waits_for_volumes_then_finishes() {
        let pods = [pod("a", serde_json::json!({}))];
        let bare = node(false);
        let mut f = facts(Some(&bare), &pods);
        f.disrupting = false;
        let s = step(&f, |_| true);
        assert!(s.set_disrupting && s.taint);
        assert!(s.evict.is_empty(), "no eviction before the taint is there");
        assert_eq!(s.then, Then::Draining);

        let n = node(true);
        let f = facts(Some(&n), &pods);
        let s = step(&f, |_| true);
        assert!(!s.set_disrupting && !s.taint);
        assert_eq!(s.evict, ["ns/a"]);
        // Backing off: not evicted this pass, still draining.
        let s = step(&f, |_| false);
        assert!(s.evict.is_empty());
        assert_eq!(s.then, Then::Draining);
        // Evicted, waiting for the kubelet: not evicted again.
        let going = [pod(
            "a",
            serde_json::json!({"metadata": {"deletionTimestamp": "2027-01-15T08:00:00Z"}}),
        )];
        let s = step(&facts(Some(&n), &going), |_| true);
        assert!(s.evict.is_empty());
        assert_eq!(s.then, Then::Draining);
        // Gone: the volumes, then the end.
        let mut f = facts(Some(&n), &[]);
        f.attachments = 2;
        assert_eq!(step(&f, |_| true).then, Then::Detaching(2));
        f.attachments = 0;
        assert_eq!(step(&f, |_| true).then, Then::Finish);
        // No Node (never registered, or deleted already): straight to the end.
        let f = facts(None, &pods);
        assert_eq!(step(&f, |_| true).then, Then::Finish);
        // The instance is gone: nothing to drain.
        let mut f = facts(Some(&n), &pods);
        f.drain = false;
        let s = step(&f, |_| true);
        assert_eq!((s.evict.len(), s.then), (0, Then::Finish));
    }

    #[test]
    fn do_not_disrupt_pods_wait_and_the_grace_period_ends_the_drain() {
        let pods = [
            pod(
                "keep",
                serde_json::json!({"metadata": {"annotations": {"nodewright.io/do-not-disrupt": "true"}}}),
            ),
            pod("b", serde_json::json!({})),
        ];
        let n = node(true);
        let mut f = facts(Some(&n), &pods);
        f.attachments = 1;
        let s = step(&f, |_| true);
        assert_eq!(s.evict, ["ns/b"]);
        assert!(s.delete.is_empty());
        // Without a grace period, never forced.
        f.now = ts(1_000_000);
        assert!(step(&f, |_| true).delete.is_empty());
        f.grace = Some(Duration::from_secs(60));
        f.now = ts(59);
        assert!(step(&f, |_| true).delete.is_empty());
        f.now = ts(60);
        let s = step(&f, |_| true);
        assert_eq!(s.delete, ["ns/keep", "ns/b"]);
        assert!(s.evict.is_empty());
        // Past the grace period volumes no longer hold the node.
        f.pods.clear();
        assert_eq!(step(&f, |_| true).then, Then::Finish);

        assert!(do_not_disrupt(Some(
            &[(
                "karpenter.sh/do-not-disrupt".to_string(),
                "true".to_string()
            )]
            .into()
        )));
        assert!(!do_not_disrupt(Some(
            &[(
                "nodewright.io/do-not-disrupt".to_string(),
                "false".to_string()
            )]
            .into()
        )));
        assert!(!do_not_disrupt(None));
    }

    #[test]
    fn volumes_only_skipped_pods_use_do_not_hold_the_node() {
        let ds = pod(
            "ds",
            serde_json::json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1",
                "kind": "DaemonSet", "name": "d", "uid": "u"}]},
                "spec": {"volumes": [{"name": "logs", "persistentVolumeClaim": {"claimName": "ds-logs"}},
                    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                    {"name": "shared", "persistentVolumeClaim": {"claimName": "shared"}},
                    {"name": "cfg", "configMap": {"name": "x"}}]}}),
        );
        let web = pod(
            "web",
            serde_json::json!({"spec": {"volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "shared"}}]}}),
        );
        let pv = |ns: &str, claim: &str| -> Option<String> {
            assert_eq!(ns, "ns");
            match claim {
                "ds-logs" => Some("pv-logs".into()),
                "ds-scratch" => Some("pv-scratch".into()),
                "shared" => Some("pv-shared".into()),
                _ => None,
            }
        };
        assert_eq!(
            pod_volumes([&ds], pv).into_iter().collect::<Vec<_>>(),
            ["pv-logs", "pv-scratch", "pv-shared"]
        );
        let attached = [
            Some("pv-logs".to_string()),
            Some("pv-scratch".to_string()),
            Some("pv-other".to_string()),
        ];
        // Only the DaemonSet pod is left: its volumes do not hold the node.
        assert_eq!(holding_attachments(&attached, &[&ds], pv), 1);
        assert_eq!(holding_attachments(&attached[..2], &[&ds], pv), 0);
        // An inline volume (no PV) is waited for.
        assert_eq!(holding_attachments(&[None], &[&ds], pv), 1);
        // A volume a drained pod shares is waited for.
        let shared = [Some("pv-shared".to_string())];
        assert_eq!(holding_attachments(&shared, &[&ds], pv), 0);
        assert_eq!(holding_attachments(&shared, &[&ds, &web], pv), 1);
        // With no pods left, every attachment holds the node.
        assert_eq!(holding_attachments(&attached, &[], pv), 3);
    }

    #[test]
    fn refused_evictions_back_off_exponentially_up_to_ten_seconds() {
        let got: Vec<u64> = (1..=6).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
        let t0 = Instant::now();
        let mut b = Backoffs::default();
        assert!(b.due("ns/a", t0));
        assert_eq!(b.refused("ns/a", t0), Duration::from_secs(1));
        assert!(!b.due("ns/a", t0 + Duration::from_millis(999)));
        assert!(b.due("ns/a", t0 + Duration::from_secs(1)));
        assert_eq!(b.refused("ns/a", t0), Duration::from_secs(2));
        assert!(b.due("ns/b", t0));
        b.retain(|k| k != "ns/a");
        assert!(b.due("ns/a", t0));
    }
}
