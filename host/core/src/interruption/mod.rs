//! Interruption handling: what to do about an instance the cloud is about to take away (pure).
//!
//! Notices come from EventBridge through SQS in production ([`message::parse_message`] reads a
//! message body) and from the virtual cloud in the simulator. [`respond`] turns a notice into a
//! [`Response`]; the controller carries responses out (`controller::interruption`), the same code
//! in both.

pub mod inbox;
pub mod message;

use std::collections::BTreeMap;

use crate::clock::Millis;
use crate::controller::Reason;

pub use message::{EventKind, Message, ParseError, ParseErrorKind, parse_message};

/// Start draining this long before the instance is reclaimed even when the replacement is not ready
/// yet, so the pods' own termination grace period fits in the warning.
pub const DRAIN_MARGIN_MS: Millis = 30_000;
/// PodDisruptionBudgets are honoured for this long after a drain's deadline; then evictions are
/// forced, so pods still on the node get their termination signal ([`DRAIN_MARGIN_MS`] minus this,
/// 10 s, before the reclaim) instead of dying with the instance.
pub const PDB_GRACE_MS: Millis = 20_000;
/// How long an interrupted or rebalance-flagged spot offering is avoided for new launches (Karpenter's
/// unavailable-offerings cache keeps entries 3 minutes).
pub const AVOID_OFFERING_MS: Millis = 180_000;

/// The NodePool annotation that opts its nodes in to proactive replacement on a rebalance
/// recommendation (`"true"`): replacement capacity is launched at once and the node drained, PDBs
/// honoured, once it is ready. Without it a recommendation only steers new launches away from the
/// offering.
pub const REBALANCE_REPLACEMENT_ANNOTATION: &str = "kestrel.dev/rebalance-replacement";

/// Whether a NodePool's annotations opt in to proactive replacement on rebalance recommendations.
pub fn replaces_on_rebalance(annotations: &BTreeMap<String, String>) -> bool {
    annotations
        .get(REBALANCE_REPLACEMENT_ANNOTATION)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The states of an EC2 state-change notification that need action (the others are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateChange {
    /// Stopping: the instance is going now; its pods have seconds.
    Stopping,
    /// Stopped: gone for the cluster, but the instance still exists (and bills its volumes).
    Stopped,
    /// Shutting down: terminating now.
    ShuttingDown,
    Terminated,
}

impl StateChange {
    /// `detail.state` as EC2 writes it; None for the states that need nothing (pending, running).
    pub fn parse(state: &str) -> Option<StateChange> {
        match state.to_ascii_lowercase().as_str() {
            "stopping" => Some(StateChange::Stopping),
            "stopped" => Some(StateChange::Stopped),
            "shutting-down" => Some(StateChange::ShuttingDown),
            "terminated" => Some(StateChange::Terminated),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoticeKind {
    SpotInterruptionWarning {
        terminate_at: Millis,
    },
    RebalanceRecommendation,
    /// AWS Health scheduled maintenance (retirement, reboot) starting at `at`.
    ScheduledChange {
        at: Millis,
    },
    /// An interruptible capacity reservation takes the instance back at `terminate_at`.
    CapacityReservationInterruption {
        terminate_at: Millis,
    },
    /// EC2 state-change notification.
    StateChange {
        state: StateChange,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Notice {
    pub instance_id: String,
    pub kind: NoticeKind,
    /// The queue message this notice came from (its id), handed back through
    /// `Controller::take_acks` once the notice's action is durably started, so the message is
    /// deleted only then. None for notices nobody acknowledges (the simulator's).
    pub ack: Option<String>,
}

/// What the controller should do about a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Taint and cordon now, launch replacement capacity for the node's pods now, drain when it is
    /// ready or at `drain_by` at the latest, honouring PDBs until [`PDB_GRACE_MS`] after
    /// `drain_by` (at once if `force_now`), then delete the claim and terminate. `avoid_offering`
    /// marks the node's offering unavailable for new launches.
    Replace {
        drain_by: Millis,
        force_now: bool,
        avoid_offering: bool,
        reason: Reason,
        detail: &'static str,
    },
    /// Record it and launch elsewhere for a while; replace the node only if its NodePool opts in
    /// ([`REBALANCE_REPLACEMENT_ANNOTATION`]).
    Rebalance { avoid_until: Millis },
    /// The instance is stopped or terminated: delete its node and claim now so its pods reschedule;
    /// `terminate` a stopped instance (it would otherwise stay, billed, with no node).
    Gone {
        terminate: bool,
        detail: &'static str,
    },
}

/// A warning of a reclaim at `terminate_at`, received at `now`.
fn reclaim(
    terminate_at: Millis,
    now: Millis,
    avoid_offering: bool,
    reason: Reason,
    detail: &'static str,
) -> Response {
    Response::Replace {
        drain_by: (terminate_at - DRAIN_MARGIN_MS).max(now),
        // A warning read so late that PDBs' grace would run into the last 10 s: no time for them.
        force_now: now + PDB_GRACE_MS > terminate_at - (DRAIN_MARGIN_MS - PDB_GRACE_MS),
        avoid_offering,
        reason,
        detail,
    }
}

pub fn respond(notice: &Notice, now: Millis) -> Response {
    match notice.kind {
        NoticeKind::SpotInterruptionWarning { terminate_at } => reclaim(
            terminate_at,
            now,
            true,
            Reason::SpotInterruption,
            "spot interruption warning",
        ),
        NoticeKind::CapacityReservationInterruption { terminate_at } => reclaim(
            terminate_at,
            now,
            true,
            Reason::CapacityReservationInterruption,
            "capacity reservation interruption warning",
        ),
        NoticeKind::ScheduledChange { at } => reclaim(
            at,
            now,
            false,
            Reason::ScheduledChange,
            "scheduled maintenance",
        ),
        NoticeKind::RebalanceRecommendation => Response::Rebalance {
            avoid_until: now + AVOID_OFFERING_MS,
        },
        NoticeKind::StateChange {
            state: StateChange::Stopping,
        } => Response::Replace {
            drain_by: now,
            force_now: true,
            avoid_offering: false,
            reason: Reason::InstanceGone,
            detail: "instance stopping",
        },
        NoticeKind::StateChange {
            state: StateChange::ShuttingDown,
        } => Response::Replace {
            drain_by: now,
            force_now: true,
            avoid_offering: false,
            reason: Reason::InstanceGone,
            detail: "instance shutting down",
        },
        NoticeKind::StateChange {
            state: StateChange::Stopped,
        } => Response::Gone {
            terminate: true,
            detail: "instance stopped",
        },
        NoticeKind::StateChange {
            state: StateChange::Terminated,
        } => Response::Gone {
            terminate: false,
            detail: "instance terminated",
        },
    }
}

/// Whether a drain of this reason is an involuntary one that goes ahead without its replacement and
/// is forced once [`PDB_GRACE_MS`] past its deadline.
pub fn is_reclaim(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::SpotInterruption
            | Reason::ScheduledChange
            | Reason::CapacityReservationInterruption
            | Reason::InstanceGone
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(kind: NoticeKind) -> Notice {
        Notice {
            instance_id: "i-1".into(),
            kind,
            ack: None,
        }
    }

    #[test]
    fn a_spot_warning_drains_before_the_deadline_and_avoids_the_offering() {
        let n = notice(NoticeKind::SpotInterruptionWarning {
            terminate_at: 200_000,
        });
        assert_eq!(
            respond(&n, 80_000),
            Response::Replace {
                drain_by: 170_000,
                force_now: false,
                avoid_offering: true,
                reason: Reason::SpotInterruption,
                detail: "spot interruption warning",
            }
        );
        // Read 15 s before the reclaim: drain now, and no time is left for PDBs.
        assert!(matches!(
            respond(&n, 185_000),
            Response::Replace {
                drain_by: 185_000,
                force_now: true,
                ..
            }
        ));
    }

    #[test]
    fn each_state_change_gets_its_own_response() {
        let at = |state| respond(&notice(NoticeKind::StateChange { state }), 1_000);
        assert!(matches!(
            at(StateChange::Stopping),
            Response::Replace {
                drain_by: 1_000,
                force_now: true,
                ..
            }
        ));
        assert!(matches!(
            at(StateChange::ShuttingDown),
            Response::Replace {
                force_now: true,
                ..
            }
        ));
        assert!(matches!(
            at(StateChange::Stopped),
            Response::Gone {
                terminate: true,
                ..
            }
        ));
        assert!(matches!(
            at(StateChange::Terminated),
            Response::Gone {
                terminate: false,
                ..
            }
        ));
        assert_eq!(StateChange::parse("running"), None);
        assert_eq!(
            StateChange::parse("Shutting-Down"),
            Some(StateChange::ShuttingDown)
        );
    }

    #[test]
    fn a_rebalance_only_avoids_and_a_scheduled_change_keeps_the_offering() {
        assert_eq!(
            respond(&notice(NoticeKind::RebalanceRecommendation), 5_000),
            Response::Rebalance {
                avoid_until: 5_000 + AVOID_OFFERING_MS
            }
        );
        assert!(matches!(
            respond(&notice(NoticeKind::ScheduledChange { at: 10_000_000 }), 0),
            Response::Replace {
                drain_by: 9_970_000,
                avoid_offering: false,
                reason: Reason::ScheduledChange,
                ..
            }
        ));
        assert!(matches!(
            respond(
                &notice(NoticeKind::CapacityReservationInterruption {
                    terminate_at: 120_000
                }),
                0
            ),
            Response::Replace {
                avoid_offering: true,
                reason: Reason::CapacityReservationInterruption,
                ..
            }
        ));
    }

    #[test]
    fn the_rebalance_opt_in_is_an_explicit_true() {
        let with = |v: &str| {
            BTreeMap::from([(REBALANCE_REPLACEMENT_ANNOTATION.to_string(), v.to_string())])
        };
        assert!(replaces_on_rebalance(&with("true")));
        assert!(replaces_on_rebalance(&with("True")));
        assert!(!replaces_on_rebalance(&with("yes")));
        assert!(!replaces_on_rebalance(&BTreeMap::new()));
    }
}
