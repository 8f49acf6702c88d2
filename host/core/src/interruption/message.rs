//! EventBridge messages as the SQS interruption queue delivers them, read into [`Notice`]s.
//!
//! The queue receives what Karpenter's EventBridge rules send it (`source` / `detail-type`):
//! - `aws.ec2` / `EC2 Spot Instance Interruption Warning`: `detail.instance-id`; the instance is
//!   reclaimed two minutes after `time`.
//! - `aws.ec2` / `EC2 Instance Rebalance Recommendation`: `detail.instance-id`.
//! - `aws.ec2` / `EC2 Instance State-change Notification`: `detail.instance-id` and `detail.state`;
//!   only `stopping`, `stopped`, `shutting-down` and `terminated` need anything done (Karpenter reacts
//!   to the same four), the other states are ignored.
//! - `aws.health` / `AWS Health Event` with `detail.service` `EC2` and `detail.eventTypeCategory`
//!   `scheduledChange`: every `detail.affectedEntities[].entityValue` is an instance, affected from
//!   `detail.startTime`; other services and categories are ignored.
//! - `aws.ec2` / `EC2 Capacity Reservation Instance Interruption Warning`: `detail.instance-id`; the
//!   reservation takes the instance back two minutes after `time`.
//!
//! A body that is not one of these (not JSON, a field missing, another detail-type) is a
//! [`ParseError`] carrying the queue's message id, so the consumer can log it, count it and delete it
//! instead of receiving it forever.

use serde_json::Value;

use super::{Notice, NoticeKind, StateChange};
use crate::clock::Millis;

/// EC2's spot (and interruptible capacity reservation) warning comes this long before the reclaim.
pub const WARNING_LEAD_MS: Millis = 120_000;

/// Which of the handled events a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    SpotInterruptionWarning,
    RebalanceRecommendation,
    StateChange,
    ScheduledChange,
    CapacityReservationInterruption,
}

impl EventKind {
    /// The metric / log label.
    pub fn label(self) -> &'static str {
        match self {
            EventKind::SpotInterruptionWarning => "spot-interruption-warning",
            EventKind::RebalanceRecommendation => "rebalance-recommendation",
            EventKind::StateChange => "state-change",
            EventKind::ScheduledChange => "scheduled-change",
            EventKind::CapacityReservationInterruption => "capacity-reservation-interruption",
        }
    }
}

/// One queue message, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The queue's message id (SQS `MessageId`); every notice carries it as its acknowledgement
    /// token.
    pub message_id: String,
    /// EventBridge's event id (`id`), when the body has one.
    pub event_id: Option<String>,
    pub kind: EventKind,
    /// What to act on: empty when the event needs nothing ([`Message::ignored`] says why).
    pub notices: Vec<Notice>,
    pub ignored: Option<&'static str>,
}

/// Why a message body could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("lacks {0}")]
    Missing(&'static str),
    #[error("has a malformed {field}: {value:?}")]
    Malformed { field: &'static str, value: String },
    #[error("has unsupported source/detail-type {event_source:?}/{detail_type:?}")]
    Unsupported {
        event_source: String,
        detail_type: String,
    },
}

/// A message that is malformed or of a kind Kestrel does not handle.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("interruption message {message_id} {kind}")]
pub struct ParseError {
    pub message_id: String,
    #[source]
    pub kind: ParseErrorKind,
}

/// Reads one message body (an EventBridge event, as the SQS target delivers it).
pub fn parse_message(message_id: &str, body: &str) -> Result<Message, ParseError> {
    let err = |kind| ParseError {
        message_id: message_id.to_string(),
        kind,
    };
    let v: Value =
        serde_json::from_str(body).map_err(|e| err(ParseErrorKind::Json(e.to_string())))?;
    let text = |field: &'static str, at: &Value| {
        at.as_str()
            .map(str::to_string)
            .ok_or(ParseErrorKind::Missing(field))
    };
    let source = text("source", &v["source"]).map_err(err)?;
    let detail_type = text("detail-type", &v["detail-type"]).map_err(err)?;
    let time = text("time", &v["time"]).map_err(err)?;
    let time = rfc3339(&time).ok_or_else(|| {
        err(ParseErrorKind::Malformed {
            field: "time",
            value: time.clone(),
        })
    })?;
    let detail = &v["detail"];
    if !detail.is_object() {
        return Err(err(ParseErrorKind::Missing("detail")));
    }
    let instance = || text("detail.instance-id", &detail["instance-id"]);
    let ack = Some(message_id.to_string());
    let one = |instance_id: String, kind: NoticeKind| {
        vec![Notice {
            instance_id,
            kind,
            ack: ack.clone(),
        }]
    };
    let (kind, notices, ignored) = match (source.as_str(), detail_type.as_str()) {
        ("aws.ec2", "EC2 Spot Instance Interruption Warning") => (
            EventKind::SpotInterruptionWarning,
            one(
                instance().map_err(err)?,
                NoticeKind::SpotInterruptionWarning {
                    terminate_at: time + WARNING_LEAD_MS,
                },
            ),
            None,
        ),
        ("aws.ec2", "EC2 Instance Rebalance Recommendation") => (
            EventKind::RebalanceRecommendation,
            one(
                instance().map_err(err)?,
                NoticeKind::RebalanceRecommendation,
            ),
            None,
        ),
        ("aws.ec2", "EC2 Instance State-change Notification") => {
            let id = instance().map_err(err)?;
            let state = text("detail.state", &detail["state"]).map_err(err)?;
            match StateChange::parse(&state) {
                Some(state) => (
                    EventKind::StateChange,
                    one(id, NoticeKind::StateChange { state }),
                    None,
                ),
                None => (
                    EventKind::StateChange,
                    Vec::new(),
                    Some("the instance state needs no action"),
                ),
            }
        }
        ("aws.ec2", "EC2 Capacity Reservation Instance Interruption Warning") => (
            EventKind::CapacityReservationInterruption,
            one(
                instance().map_err(err)?,
                NoticeKind::CapacityReservationInterruption {
                    terminate_at: time + WARNING_LEAD_MS,
                },
            ),
            None,
        ),
        ("aws.health", "AWS Health Event") => {
            let service = detail["service"].as_str().unwrap_or_default();
            let category = detail["eventTypeCategory"].as_str().unwrap_or_default();
            if service != "EC2" || category != "scheduledChange" {
                (
                    EventKind::ScheduledChange,
                    Vec::new(),
                    Some("not a scheduled change of EC2 instances"),
                )
            } else {
                // The change starts at `startTime` (RFC 2822 in Health's payloads); without one the
                // change is treated as starting now.
                let at = match detail["startTime"].as_str() {
                    None => time,
                    Some(s) => health_time(s).ok_or_else(|| {
                        err(ParseErrorKind::Malformed {
                            field: "detail.startTime",
                            value: s.to_string(),
                        })
                    })?,
                };
                let entities = detail["affectedEntities"]
                    .as_array()
                    .ok_or_else(|| err(ParseErrorKind::Missing("detail.affectedEntities")))?;
                let mut notices = Vec::with_capacity(entities.len());
                for e in entities {
                    let id = text("detail.affectedEntities[].entityValue", &e["entityValue"])
                        .map_err(err)?;
                    notices.push(Notice {
                        instance_id: id,
                        kind: NoticeKind::ScheduledChange { at },
                        ack: ack.clone(),
                    });
                }
                let ignored = notices.is_empty().then_some("no affected entities");
                (EventKind::ScheduledChange, notices, ignored)
            }
        }
        _ => {
            return Err(err(ParseErrorKind::Unsupported {
                event_source: source,
                detail_type,
            }));
        }
    };
    Ok(Message {
        message_id: message_id.to_string(),
        event_id: v["id"].as_str().map(str::to_string),
        kind,
        notices,
        ignored,
    })
}

fn rfc3339(s: &str) -> Option<Millis> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// AWS Health writes its times as RFC 2822 (`Sat, 05 Jun 2021 16:00:00 GMT`); RFC 3339 is accepted
/// too.
fn health_time(s: &str) -> Option<Millis> {
    chrono::DateTime::parse_from_rfc2822(s)
        .ok()
        .map(|t| t.timestamp_millis())
        .or_else(|| rfc3339(s))
}

#[cfg(test)]
mod tests;
