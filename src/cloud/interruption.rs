//! Interruption messages: what EventBridge puts on the interruption queue,
//! parsed, and what the controller does about each.
//!
//! EventBridge rules (the same four Karpenter's CloudFormation installs)
//! forward four kinds of event to one SQS queue; each message body is the
//! event's JSON envelope (`source`, `detail-type`, `detail`):
//!
//! | kind | source / detail-type | instances in | action |
//! |---|---|---|---|
//! | spot interruption warning | `aws.ec2` / `EC2 Spot Instance Interruption Warning` | `detail.instance-id` | remove now, mark the spot offering unavailable |
//! | scheduled change | `aws.health` / `AWS Health Event`, `service: EC2`, `eventTypeCategory: scheduledChange` | `detail.affectedEntities[].entityValue` | remove now, mark a spot offering unavailable |
//! | rebalance recommendation | `aws.ec2` / `EC2 Instance Rebalance Recommendation` | `detail.instance-id` | none (logged and counted, Karpenter's default) |
//! | state change | `aws.ec2` / `EC2 Instance State-change Notification` | `detail.instance-id`, `detail.state` | remove when stopping, stopped, shutting-down or terminated |
//!
//! Parsing and deciding are pure (unit-tested on fixtures of the real shapes
//! under `tests/data/interruption/`); the controller's `interruption` task
//! receives, acts and deletes.

use serde::Deserialize;

/// The kind of a message, as the metric's `kind` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Two minutes before EC2 reclaims a spot instance.
    SpotInterruption,
    /// EC2 says a spot instance is at higher risk of interruption.
    RebalanceRecommendation,
    /// AWS Health announces maintenance (retirement, reboot) of an instance.
    ScheduledChange,
    /// The instance changed state (pending, running, stopping, ...).
    StateChange,
    /// Any other event, or a health event that is not an EC2 scheduled change.
    Other,
    /// Not a message of any known shape (not JSON, or a field missing).
    Malformed,
}

impl Kind {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SpotInterruption => "spot_interruption",
            Kind::RebalanceRecommendation => "rebalance_recommendation",
            Kind::ScheduledChange => "scheduled_change",
            Kind::StateChange => "state_change",
            Kind::Other => "other",
            Kind::Malformed => "malformed",
        }
    }
}

/// One parsed message: its kind, the instances it is about, and the detail
/// worth logging (the new state, the health event's type code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    /// The EventBridge event id (for the log).
    pub id: String,
    pub instance_ids: Vec<String>,
    /// State change: the new state; scheduled change: `eventTypeCode`; else empty.
    pub detail: String,
    /// When the instance goes, as the message says: a spot interruption's
    /// event time plus the two-minute notice (RFC 3339), a scheduled
    /// change's `startTime` as AWS Health writes it; None when unknown.
    pub deadline: Option<String>,
}

/// The notice EC2 gives before reclaiming a spot instance.
pub const SPOT_NOTICE: std::time::Duration = std::time::Duration::from_secs(120);

/// A spot interruption's deadline: the event's time plus [`SPOT_NOTICE`].
fn spot_deadline(time: &str) -> Option<String> {
    let t: jiff::Timestamp = time.parse().ok()?;
    let notice = jiff::SignedDuration::try_from(SPOT_NOTICE).ok()?;
    Some(t.checked_add(notice).ok()?.to_string())
}

/// Why a message body could not be read. Such a message is logged, counted
/// and deleted: one bad message must never wedge the queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not an EventBridge event: {0}")]
    NotJson(String),
    #[error("{kind} event without {field}")]
    Missing {
        kind: &'static str,
        field: &'static str,
    },
}

/// The envelope every EventBridge event has.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    id: String,
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    #[serde(default)]
    detail: serde_json::Value,
    #[serde(default)]
    time: String,
}

/// Reads one message body.
pub fn parse(body: &str) -> Result<Message, ParseError> {
    let e: Envelope = serde_json::from_str(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let d = &e.detail;
    let str_field = |name: &str| {
        d.get(name)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let instance = |kind: &'static str| {
        str_field("instance-id").ok_or(ParseError::Missing {
            kind,
            field: "detail.instance-id",
        })
    };
    let (kind, instance_ids, detail) = match (e.source.as_str(), e.detail_type.as_str()) {
        ("aws.ec2", "EC2 Spot Instance Interruption Warning") => (
            Kind::SpotInterruption,
            vec![instance("spot interruption")?],
            str_field("instance-action").unwrap_or_default(),
        ),
        ("aws.ec2", "EC2 Instance Rebalance Recommendation") => (
            Kind::RebalanceRecommendation,
            vec![instance("rebalance recommendation")?],
            String::new(),
        ),
        ("aws.ec2", "EC2 Instance State-change Notification") => {
            let id = instance("state change")?;
            let state = str_field("state").ok_or(ParseError::Missing {
                kind: "state change",
                field: "detail.state",
            })?;
            (Kind::StateChange, vec![id], state)
        }
        ("aws.health", "AWS Health Event") => {
            let service = str_field("service").unwrap_or_default();
            let category = str_field("eventTypeCategory").unwrap_or_default();
            if service != "EC2" || category != "scheduledChange" {
                // Health events of other services or categories: not ours to act on.
                (Kind::Other, Vec::new(), format!("{service} {category}"))
            } else {
                let ids: Vec<String> = d
                    .get("affectedEntities")
                    .and_then(|v| v.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.get("entityValue").and_then(|v| v.as_str()))
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                if ids.is_empty() {
                    return Err(ParseError::Missing {
                        kind: "scheduled change",
                        field: "detail.affectedEntities[].entityValue",
                    });
                }
                (
                    Kind::ScheduledChange,
                    ids,
                    str_field("eventTypeCode").unwrap_or_default(),
                )
            }
        }
        (s, t) => (Kind::Other, Vec::new(), format!("{s} / {t}")),
    };
    let deadline = match kind {
        Kind::SpotInterruption => spot_deadline(&e.time),
        Kind::ScheduledChange => str_field("startTime"),
        _ => None,
    };
    Ok(Message {
        kind,
        id: e.id,
        instance_ids,
        detail,
        deadline,
    })
}

/// States after which an instance is gone or going: its claim is removed.
const GONE_STATES: [&str; 4] = ["stopping", "stopped", "shutting-down", "terminated"];

/// What to do with the claims of a message's instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Remove the claims (replacement at once: their pods go pending and the
    /// next pass plans for them), with this disruption reason.
    Remove {
        /// The `nodewright.io/disruption-reason` annotation: `interrupted` or `gone`.
        reason: &'static str,
        /// The claim's `Interrupted` condition reason.
        condition: &'static str,
        /// Mark the claim's (type, zone) offering unavailable when it is spot.
        mark_offering: bool,
    },
    /// Nothing to do (the message is still deleted).
    Ignore(&'static str),
}

/// The decision for a message (see the module table).
pub fn decide(m: &Message) -> Decision {
    match m.kind {
        Kind::SpotInterruption => Decision::Remove {
            reason: "interrupted",
            condition: "SpotInterruption",
            mark_offering: true,
        },
        Kind::ScheduledChange => Decision::Remove {
            reason: "interrupted",
            condition: "ScheduledChange",
            mark_offering: true,
        },
        Kind::StateChange if GONE_STATES.contains(&m.detail.as_str()) => Decision::Remove {
            // Already terminated: nothing left to drain.
            reason: if m.detail == "terminated" {
                "gone"
            } else {
                "interrupted"
            },
            condition: "InstanceStateChange",
            mark_offering: false,
        },
        Kind::StateChange => Decision::Ignore("the instance is not stopping or terminating"),
        Kind::RebalanceRecommendation => {
            Decision::Ignore("rebalance recommendations are logged only (as Karpenter by default)")
        }
        Kind::Other | Kind::Malformed => Decision::Ignore("not an interruption event"),
    }
}

/// The reason the availability cache records for an offering marked by a message.
pub fn unavailable_reason(m: &Message) -> String {
    match m.kind {
        Kind::ScheduledChange => format!("ScheduledChange:{}", m.detail),
        _ => "SpotInterruption".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/interruption")
            .join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    const ID: &str = "i-0b662ef9931388ba0";

    fn parsed(name: &str) -> Message {
        parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn spot_interruption_is_removed_and_marks_the_offering() {
        let m = parsed("spot_interruption.json");
        assert_eq!(m.kind, Kind::SpotInterruption);
        assert_eq!(m.instance_ids, [ID]);
        assert_eq!(m.detail, "terminate");
        assert_eq!(m.id, "1e5527d7-bb36-4607-3370-4164db56a40e");
        assert_eq!(m.deadline.as_deref(), Some("1970-01-01T00:02:00Z"));
        let later = fixture("spot_interruption.json")
            .replace("1970-01-01T00:00:00Z", "2026-11-30T20:58:30Z");
        let m2 = parse(&later).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m2.deadline.as_deref(), Some("2026-11-30T21:00:30Z"));
        let bad = fixture("spot_interruption.json").replace("1970-01-01T00:00:00Z", "soon");
        assert_eq!(parse(&bad).map(|m| m.deadline), Ok(None));
        assert_eq!(
            decide(&m),
            Decision::Remove {
                reason: "interrupted",
                condition: "SpotInterruption",
                mark_offering: true
            }
        );
        assert_eq!(unavailable_reason(&m), "SpotInterruption");
    }

    #[test]
    fn scheduled_change_is_removed_and_marks_the_offering() {
        let m = parsed("scheduled_change.json");
        assert_eq!(m.kind, Kind::ScheduledChange);
        assert_eq!(m.instance_ids, [ID]);
        assert_eq!(m.detail, "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED");
        assert_eq!(m.deadline.as_deref(), Some("Sat, 05 Jun 2023 15:10:09 GMT"));
        assert!(matches!(
            decide(&m),
            Decision::Remove {
                reason: "interrupted",
                condition: "ScheduledChange",
                mark_offering: true
            }
        ));
        assert_eq!(
            unavailable_reason(&m),
            "ScheduledChange:AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED"
        );
    }

    #[test]
    fn a_health_event_of_another_service_or_category_is_ignored() {
        let other = fixture("scheduled_change.json")
            .replace("\"service\": \"EC2\"", "\"service\": \"RDS\"");
        let m = parse(&other).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.kind, Kind::Other);
        assert!(matches!(decide(&m), Decision::Ignore(_)));
        let issue = fixture("scheduled_change.json").replace("\"scheduledChange\"", "\"issue\"");
        let m = parse(&issue).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.kind, Kind::Other);
    }

    #[test]
    fn rebalance_recommendation_is_only_logged() {
        let m = parsed("rebalance_recommendation.json");
        assert_eq!(m.kind, Kind::RebalanceRecommendation);
        assert_eq!(m.instance_ids, [ID]);
        assert!(matches!(decide(&m), Decision::Ignore(_)));
    }

    #[test]
    fn state_changes_to_stopping_or_terminated_remove_the_claim() {
        for (state, reason) in [
            ("stopping", "interrupted"),
            ("stopped", "interrupted"),
            ("shutting-down", "interrupted"),
            ("terminated", "gone"),
        ] {
            let m = parsed(&format!("state_change_{state}.json"));
            assert_eq!(m.kind, Kind::StateChange);
            assert_eq!(m.instance_ids, [ID]);
            assert_eq!(m.detail, state);
            assert_eq!(
                decide(&m),
                Decision::Remove {
                    reason,
                    condition: "InstanceStateChange",
                    mark_offering: false
                },
                "{state}"
            );
        }
        let m = parsed("state_change_running.json");
        assert_eq!(m.detail, "running");
        assert!(matches!(decide(&m), Decision::Ignore(_)));
    }

    #[test]
    fn other_events_are_ignored() {
        let m = parsed("unknown_kind.json");
        assert_eq!(m.kind, Kind::Other);
        assert!(m.instance_ids.is_empty());
        assert!(matches!(decide(&m), Decision::Ignore(_)));
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        for (name, want) in [
            ("malformed/truncated.json", None),
            ("malformed/not_json.txt", None),
            (
                "malformed/spot_without_instance.json",
                Some("detail.instance-id"),
            ),
            (
                "malformed/state_change_without_state.json",
                Some("detail.state"),
            ),
            (
                "malformed/health_without_entities.json",
                Some("detail.affectedEntities[].entityValue"),
            ),
        ] {
            match (parse(&fixture(name)), want) {
                (Err(ParseError::NotJson(_)), None) => {}
                (Err(ParseError::Missing { field, .. }), Some(f)) => assert_eq!(field, f, "{name}"),
                (other, _) => panic!("{name}: {other:?}"),
            }
        }
        // Bodies SQS can carry that are no event at all.
        for body in ["", "null", "[]", "{}", "{\"source\": 1}", "\u{0}"] {
            assert!(parse(body).is_err(), "{body:?}");
        }
    }
}
