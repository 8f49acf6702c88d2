//! Interruption handling: what to do about an instance the cloud is about to take away (pure).
//!
//! Notices come from EventBridge through SQS in production ([`parse_event`] reads the message body) and from
//! the virtual cloud in the simulator. [`respond`] turns a notice into a [`Response`]; the controller turns
//! responses into actions.

use crate::clock::Millis;

/// Drain this long before the instance is reclaimed even when the replacement is not ready yet, so the
/// pods' own termination grace period fits in the warning.
pub const DRAIN_MARGIN_MS: Millis = 30_000;
/// How long an interrupted or rebalance-flagged spot offering is avoided for new launches (Karpenter's
/// unavailable-offerings cache keeps entries 3 minutes).
pub const AVOID_OFFERING_MS: Millis = 180_000;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoticeKind {
    SpotInterruptionWarning {
        terminate_at: Millis,
    },
    RebalanceRecommendation,
    /// AWS Health scheduled maintenance (retirement, reboot).
    ScheduledChange {
        at: Millis,
    },
    /// The instance is stopping or terminated (state-change notification).
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Notice {
    pub instance_id: String,
    pub kind: NoticeKind,
}

/// What the controller should do about a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Cordon now, launch replacement capacity for the node's pods now, drain when it is ready or at
    /// `drain_by` at the latest, and terminate the node by `terminate_at`. `avoid_offering` marks the
    /// node's offering unavailable for new launches.
    Replace {
        drain_by: Millis,
        terminate_at: Millis,
        avoid_offering: bool,
        reason: &'static str,
    },
    /// Keep the node, but launch elsewhere for a while.
    AvoidOffering { until: Millis, reason: &'static str },
    /// The instance is already gone: delete the node so its pods reschedule.
    Forget { reason: &'static str },
}

pub fn respond(notice: &Notice, now: Millis) -> Response {
    match notice.kind {
        NoticeKind::SpotInterruptionWarning { terminate_at } => Response::Replace {
            drain_by: (terminate_at - DRAIN_MARGIN_MS).max(now),
            terminate_at,
            avoid_offering: true,
            reason: "spot interruption warning",
        },
        NoticeKind::ScheduledChange { at } => Response::Replace {
            drain_by: (at - DRAIN_MARGIN_MS).max(now),
            terminate_at: at,
            avoid_offering: false,
            reason: "scheduled maintenance",
        },
        NoticeKind::RebalanceRecommendation => Response::AvoidOffering {
            until: now + AVOID_OFFERING_MS,
            reason: "rebalance recommendation",
        },
        NoticeKind::Stopped => Response::Forget {
            reason: "instance stopped or terminated",
        },
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("interruption message is not JSON: {0}")]
    Json(String),
    #[error("interruption message lacks {0}")]
    Missing(&'static str),
    #[error("interruption message has unsupported detail-type {0:?}")]
    Unsupported(String),
}

/// Reads an EventBridge message (as delivered to the SQS interruption queue).
pub fn parse_event(body: &str) -> Result<Notice, ParseError> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let detail_type = v["detail-type"]
        .as_str()
        .ok_or(ParseError::Missing("detail-type"))?;
    let time = v["time"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis())
        .ok_or(ParseError::Missing("time"))?;
    let detail = &v["detail"];
    let instance = |d: &serde_json::Value| {
        d["instance-id"]
            .as_str()
            .map(str::to_string)
            .ok_or(ParseError::Missing("detail.instance-id"))
    };
    match detail_type {
        "EC2 Spot Instance Interruption Warning" => Ok(Notice {
            instance_id: instance(detail)?,
            kind: NoticeKind::SpotInterruptionWarning {
                terminate_at: time + 120_000,
            },
        }),
        "EC2 Instance Rebalance Recommendation" => Ok(Notice {
            instance_id: instance(detail)?,
            kind: NoticeKind::RebalanceRecommendation,
        }),
        "EC2 Instance State-change Notification" => Ok(Notice {
            instance_id: instance(detail)?,
            kind: NoticeKind::Stopped,
        }),
        "AWS Health Event" => {
            let id = detail["affectedEntities"][0]["entityValue"]
                .as_str()
                .ok_or(ParseError::Missing(
                    "detail.affectedEntities[0].entityValue",
                ))?;
            Ok(Notice {
                instance_id: id.to_string(),
                kind: NoticeKind::ScheduledChange { at: time },
            })
        }
        other => Err(ParseError::Unsupported(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spot_warning_drains_before_the_deadline() {
        let n = Notice {
            instance_id: "i-1".into(),
            kind: NoticeKind::SpotInterruptionWarning {
                terminate_at: 200_000,
            },
        };
        assert_eq!(
            respond(&n, 80_000),
            Response::Replace {
                drain_by: 170_000,
                terminate_at: 200_000,
                avoid_offering: true,
                reason: "spot interruption warning"
            }
        );
    }

    #[test]
    fn parses_an_eventbridge_spot_warning() {
        let body = r#"{"version":"0","detail-type":"EC2 Spot Instance Interruption Warning",
            "source":"aws.ec2","time":"2026-01-01T00:00:00Z",
            "detail":{"instance-id":"i-0abc","instance-action":"terminate"}}"#;
        let n = parse_event(body).unwrap();
        assert_eq!(n.instance_id, "i-0abc");
        assert!(
            matches!(n.kind, NoticeKind::SpotInterruptionWarning { terminate_at } if terminate_at == 1_767_225_720_000)
        );
        assert!(matches!(
            parse_event(r#"{"detail-type":"Nope","time":"2026-01-01T00:00:00Z"}"#),
            Err(ParseError::Unsupported(_))
        ));
    }
}
