//! The queue consumer's bookkeeping, without the queue: which received messages go to the controller,
//! which are deleted at once, and which may be deleted once the controller has acknowledged them.
//!
//! The SQS consumer (in the AWS adapter) is a shell around [`Inbox`]: it long-polls, hands every
//! message to [`Inbox::receive`], forwards the notices to the controller, feeds the controller's
//! acknowledgements to [`Inbox::acknowledged`] and deletes what that returns. The rules live here,
//! pure and tested:
//! - a malformed or unknown message is deleted at once and counted, with its id in the log: never
//!   received forever;
//! - a message that needs nothing (a `running` state change, another service's Health event) is
//!   deleted at once;
//! - any other message is deleted only when every notice it carried is acknowledged, which the
//!   controller does once the notice's action is durably started; until then the queue's visibility
//!   timeout brings it back if the process dies, and a re-delivery (a new receipt handle) replaces the
//!   one the deletion will use.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::message::{EventKind, parse_message};
use super::{Notice, ParseError};
use crate::clock::Millis;
use crate::controller::{NoticeAck, NoticeOutcome};

/// What to do with a message just received.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Hand these to the controller (`Controller::notify`); the message is deleted once they are
    /// acknowledged.
    Forward(Vec<Notice>),
    /// Delete the message now.
    Delete(Deletion),
}

/// A message to delete, with the receipt handle of its latest delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub message_id: String,
    pub receipt_handle: String,
    pub why: DeleteReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeleteReason {
    /// Every notice's action is durably started (or was a duplicate, or not Kestrel's).
    Handled,
    /// The event needs no action.
    Ignored,
    /// Not an event Kestrel reads.
    Malformed,
}

/// What the consumer has seen (its metrics).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxCounters {
    pub received: u64,
    /// Received again while still waiting for its acknowledgement.
    pub redelivered: u64,
    pub malformed: u64,
    pub ignored: u64,
    /// Messages by event kind.
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Notices by what the controller made of them.
    pub by_outcome: BTreeMap<&'static str, u64>,
    pub deleted: u64,
}

#[derive(Debug, Clone)]
struct InFlight {
    receipt_handle: String,
    /// Instances whose notice is not acknowledged yet.
    waiting: BTreeSet<String>,
    received_at: Millis,
}

/// Received messages waiting for their notices' acknowledgements.
#[derive(Debug, Default)]
pub struct Inbox {
    in_flight: HashMap<String, InFlight>,
    pub counters: InboxCounters,
}

impl Inbox {
    /// A message arrived (`receipt_handle` is this delivery's). Malformed ones come back as a
    /// deletion with the parse error, for the log.
    pub fn receive(
        &mut self,
        message_id: &str,
        receipt_handle: &str,
        body: &str,
        now: Millis,
    ) -> (Disposition, Option<ParseError>) {
        self.counters.received += 1;
        let delete = |why| {
            Disposition::Delete(Deletion {
                message_id: message_id.to_string(),
                receipt_handle: receipt_handle.to_string(),
                why,
            })
        };
        let message = match parse_message(message_id, body) {
            Ok(m) => m,
            Err(e) => {
                self.counters.malformed += 1;
                return (delete(DeleteReason::Malformed), Some(e));
            }
        };
        *self
            .counters
            .by_kind
            .entry(EventKind::label(message.kind))
            .or_default() += 1;
        if message.notices.is_empty() {
            self.counters.ignored += 1;
            return (delete(DeleteReason::Ignored), None);
        }
        match self.in_flight.get_mut(message_id) {
            Some(f) => {
                // Its visibility timeout ran out before the acknowledgement: only the newest receipt
                // handle deletes it. The notices go to the controller again (a notice whose action
                // is under way is acknowledged as a duplicate; one whose write failed is redone).
                self.counters.redelivered += 1;
                f.receipt_handle = receipt_handle.to_string();
            }
            None => {
                self.in_flight.insert(
                    message_id.to_string(),
                    InFlight {
                        receipt_handle: receipt_handle.to_string(),
                        waiting: message
                            .notices
                            .iter()
                            .map(|n| n.instance_id.clone())
                            .collect(),
                        received_at: now,
                    },
                );
            }
        }
        (Disposition::Forward(message.notices), None)
    }

    /// The controller's acknowledgements (`Controller::take_acks`): the messages now fully handled,
    /// to delete.
    pub fn acknowledged(&mut self, acks: Vec<NoticeAck>) -> Vec<Deletion> {
        let mut done = Vec::new();
        for ack in acks {
            *self
                .counters
                .by_outcome
                .entry(NoticeOutcome::label(ack.outcome))
                .or_default() += 1;
            let Some(f) = self.in_flight.get_mut(&ack.token) else {
                continue;
            };
            f.waiting.remove(&ack.instance_id);
            if f.waiting.is_empty() {
                let f = self.in_flight.remove(&ack.token).expect("looked up above");
                done.push(Deletion {
                    message_id: ack.token,
                    receipt_handle: f.receipt_handle,
                    why: DeleteReason::Handled,
                });
            }
        }
        done
    }

    /// A deletion went through.
    pub fn deleted(&mut self) {
        self.counters.deleted += 1;
    }

    /// Forgets messages received more than `older_than` ago and never acknowledged (their action
    /// failed, or the controller restarted): the queue delivers them again. Returns how many.
    pub fn expire(&mut self, now: Millis, older_than: Millis) -> usize {
        let before = self.in_flight.len();
        self.in_flight
            .retain(|_, f| now.saturating_sub(f.received_at) < older_than);
        before - self.in_flight.len()
    }

    /// Messages waiting for acknowledgements.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPOT: &str = include_str!("testdata/spot-interruption-warning.json");
    const HEALTH: &str = include_str!("testdata/health-scheduled-change.json");
    const RUNNING: &str = include_str!("testdata/state-change-running.json");

    fn ack(token: &str, instance_id: &str, outcome: NoticeOutcome) -> NoticeAck {
        NoticeAck {
            token: token.into(),
            instance_id: instance_id.into(),
            outcome,
        }
    }

    #[test]
    fn a_message_is_deleted_only_once_every_notice_is_acknowledged() {
        let mut inbox = Inbox::default();
        let (d, _) = inbox.receive("m-1", "r-1", HEALTH, 0);
        let Disposition::Forward(notices) = d else {
            panic!("{d:?}")
        };
        assert_eq!(notices.len(), 2, "two affected instances");
        assert!(
            inbox
                .acknowledged(vec![ack(
                    "m-1",
                    "i-0abc1234def567890",
                    NoticeOutcome::Acted
                )])
                .is_empty(),
            "one of two is not enough"
        );
        let done = inbox.acknowledged(vec![ack(
            "m-1",
            "i-0fed9876cba543210",
            NoticeOutcome::NotOwned,
        )]);
        assert_eq!(
            done,
            vec![Deletion {
                message_id: "m-1".into(),
                receipt_handle: "r-1".into(),
                why: DeleteReason::Handled,
            }]
        );
        assert_eq!(inbox.in_flight(), 0);
        assert_eq!(inbox.counters.by_outcome["not-owned"], 1);
    }

    #[test]
    fn malformed_and_ignored_messages_are_deleted_at_once() {
        let mut inbox = Inbox::default();
        let (d, err) = inbox.receive("m-bad", "r-1", "{not json", 0);
        assert!(matches!(
            d,
            Disposition::Delete(Deletion {
                why: DeleteReason::Malformed,
                ..
            })
        ));
        assert_eq!(
            err.expect("the parse error, for the log").message_id,
            "m-bad"
        );
        let (d, err) = inbox.receive("m-run", "r-2", RUNNING, 0);
        assert!(matches!(
            d,
            Disposition::Delete(Deletion {
                why: DeleteReason::Ignored,
                ..
            })
        ));
        assert!(err.is_none());
        assert_eq!(inbox.in_flight(), 0);
        assert_eq!((inbox.counters.malformed, inbox.counters.ignored), (1, 1));
    }

    #[test]
    fn a_redelivery_is_forwarded_again_and_deleted_with_its_newest_receipt() {
        let mut inbox = Inbox::default();
        inbox.receive("m-1", "r-old", SPOT, 0);
        let (d, _) = inbox.receive("m-1", "r-new", SPOT, 30_000);
        assert!(matches!(d, Disposition::Forward(_)));
        assert_eq!(inbox.counters.redelivered, 1);
        let done = inbox.acknowledged(vec![
            ack("m-1", "i-0abc1234def567890", NoticeOutcome::Acted),
            // The re-forwarded notice's own acknowledgement arrives after the deletion.
            ack("m-1", "i-0abc1234def567890", NoticeOutcome::Duplicate),
        ]);
        assert_eq!(done.len(), 1, "deleted once");
        assert_eq!(done[0].receipt_handle, "r-new");
    }

    #[test]
    fn unacknowledged_messages_expire_so_the_queue_can_deliver_them_again() {
        let mut inbox = Inbox::default();
        inbox.receive("m-1", "r-1", SPOT, 0);
        assert_eq!(inbox.expire(10_000, 30_000), 0);
        assert_eq!(inbox.expire(30_000, 30_000), 1);
        // The re-delivery starts over.
        inbox.receive("m-1", "r-2", SPOT, 31_000);
        assert_eq!(inbox.counters.redelivered, 0);
        assert_eq!(inbox.in_flight(), 1);
    }
}
