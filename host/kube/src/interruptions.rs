//! Interruption notices in `kestrel run`: messages from a queue (the AWS adapter's SQS consumer in
//! production, a channel in tests) through the core's [`Inbox`] to the controller, and the messages
//! whose notices the controller acknowledged back to the queue to be deleted.
//!
//! The queue is consumed only by the leader (it starts once the lease is held; a standby leaves the
//! messages to it). A message is deleted only once every notice it carried is acknowledged, which
//! the controller does when the notice's action is durably started (the drain written to the claim
//! record): a process killed before that leaves the message in the queue, which delivers it again
//! to the next leader after its visibility timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kestrel_core::clock::Millis;
use kestrel_core::controller::Controller;
use kestrel_core::interruption::inbox::{Deletion, Disposition, Inbox};
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;

/// One delivery of a queue message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    pub message_id: String,
    /// This delivery's handle (a re-delivery has a new one; only the newest deletes).
    pub receipt_handle: String,
    pub body: String,
    /// When the queue accepted it (ms since the epoch), where the queue says.
    pub sent_at: Option<Millis>,
}

/// What a deletion answers: how many messages went, or why not.
pub type DeleteCall<'a> = Pin<Box<dyn Future<Output = Result<usize, String>> + Send + 'a>>;

/// A queue of interruption messages (Debug: the settings that carry it are logged).
pub trait NoticeQueue: Send + Sync + std::fmt::Debug {
    /// Starts receiving: every message delivered is sent on `messages` until `stop` turns true or
    /// `messages` is closed.
    fn start(&self, messages: mpsc::Sender<QueuedMessage>, stop: watch::Receiver<bool>);
    /// Deletes handled messages. A failed deletion only means the message comes back after its
    /// visibility timeout, and its notices are acknowledged again as duplicates.
    fn delete<'a>(&'a self, deletions: &'a [Deletion]) -> DeleteCall<'a>;
    /// What keeps the queue from being consumed, if anything (it does not exist): the replica is
    /// then not ready, and says why. Passing trouble (throttling, a network error) is not reported
    /// here: the consumer backs off and retries.
    fn problem(&self) -> Option<String> {
        None
    }
}

/// Messages received and not acknowledged this long are forgotten (their action failed, or their
/// instance is not Kestrel's and the controller said nothing): the queue delivers them again.
const FORGET_AFTER_MS: Millis = 15 * 60_000;

/// The loop's end of a started queue.
pub(crate) struct Consumer {
    queue: Arc<dyn NoticeQueue>,
    messages: mpsc::Receiver<QueuedMessage>,
    stop: watch::Sender<bool>,
    inbox: Inbox,
    metrics: Arc<Metrics>,
    health: Arc<crate::serve::Health>,
}

impl Consumer {
    /// Starts the queue's receivers.
    pub(crate) fn start(
        queue: Arc<dyn NoticeQueue>,
        metrics: Arc<Metrics>,
        health: Arc<crate::serve::Health>,
    ) -> Consumer {
        let (tx, messages) = mpsc::channel(256);
        let (stop, stopped) = watch::channel(false);
        queue.start(tx, stopped);
        Consumer {
            queue,
            messages,
            stop,
            inbox: Inbox::default(),
            metrics,
            health,
        }
    }

    /// The next message (pending forever once the receivers are gone: the loop then waits on its
    /// other wake-ups only).
    pub(crate) async fn next(&mut self) -> QueuedMessage {
        match self.messages.recv().await {
            Some(m) => m,
            None => std::future::pending().await,
        }
    }

    /// Hands a message (and every other one already waiting) to the controller; the messages that
    /// need nothing are deleted at once. Returns the notices handed on, for their Events.
    pub(crate) fn receive(
        &mut self,
        first: QueuedMessage,
        now: Millis,
        controller: &mut Controller,
    ) -> Vec<kestrel_core::interruption::Notice> {
        let mut handed = Vec::new();
        let mut deletions = Vec::new();
        let mut next = Some(first);
        while let Some(m) = next {
            if let Some(sent_at) = m.sent_at {
                self.metrics.interruption_queued_for(now - sent_at);
            }
            let (disposition, error) =
                self.inbox
                    .receive(&m.message_id, &m.receipt_handle, &m.body, now);
            if let Some(error) = error {
                tracing::warn!(message_id = %m.message_id, %error, "interruption message not understood; deleted");
            }
            match disposition {
                Disposition::Forward(notices) => {
                    for notice in notices {
                        self.metrics
                            .interruption_received(notice_kind(&notice.kind));
                        tracing::info!(
                            message_id = %m.message_id,
                            instance = %notice.instance_id,
                            kind = notice_kind(&notice.kind),
                            "interruption notice"
                        );
                        handed.push(notice.clone());
                        controller.notify(notice);
                    }
                }
                Disposition::Delete(d) => deletions.push(d),
            }
            next = self.messages.try_recv().ok();
        }
        self.delete(deletions);
        handed
    }

    /// Deletes the messages whose notices the controller has acknowledged since the last call, and
    /// forgets messages never acknowledged.
    pub(crate) fn acknowledge(&mut self, now: Millis, controller: &mut Controller) {
        let acks = controller.take_acks();
        if !acks.is_empty() {
            let deletions = self.inbox.acknowledged(acks);
            self.delete(deletions);
        }
        let forgotten = self.inbox.expire(now, FORGET_AFTER_MS);
        if forgotten > 0 {
            tracing::warn!(
                forgotten,
                "interruption messages never acknowledged; the queue delivers them again"
            );
        }
        self.metrics
            .set_interruptions_waiting(self.inbox.in_flight());
        let problem = self.queue.problem();
        self.metrics
            .set_interruption_queue_available(problem.is_none());
        self.health.set_problem(problem);
    }

    fn delete(&self, deletions: Vec<Deletion>) {
        if deletions.is_empty() {
            return;
        }
        let queue = self.queue.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            match queue.delete(&deletions).await {
                Ok(deleted) => metrics.interruption_deleted(deleted),
                Err(error) => tracing::warn!(
                    %error,
                    messages = deletions.len(),
                    "deleting interruption messages failed; they come back after their visibility timeout"
                ),
            }
        });
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // A replica that stops consuming has no queue problem of its own.
        self.health.set_problem(None);
        // The receivers may have ended already; then there is nothing to stop.
        self.stop.send(true).ok();
    }
}

/// The notice's kind as the metrics and the log name it (Karpenter's message types).
fn notice_kind(kind: &kestrel_core::interruption::NoticeKind) -> &'static str {
    use kestrel_core::interruption::NoticeKind;
    match kind {
        NoticeKind::SpotInterruptionWarning { .. } => "spot_interrupted",
        NoticeKind::RebalanceRecommendation => "rebalance_recommendation",
        NoticeKind::ScheduledChange { .. } => "scheduled_change",
        NoticeKind::StateChange { .. } => "state_change",
        NoticeKind::CapacityReservationInterruption { .. } => "capacity_reservation_interrupted",
    }
}

/// The Event a notice gets on its instance's Node (Karpenter's reasons), with its message.
pub fn event_of(kind: &kestrel_core::interruption::NoticeKind) -> (&'static str, String) {
    use kestrel_core::interruption::{NoticeKind, StateChange};
    match kind {
        NoticeKind::SpotInterruptionWarning { .. } => (
            "SpotInterrupted",
            "Spot interruption warning: the instance is reclaimed in 2 minutes".into(),
        ),
        NoticeKind::RebalanceRecommendation => (
            "SpotRebalanceRecommendation",
            "Spot rebalance recommendation: the instance is at elevated risk of interruption"
                .into(),
        ),
        NoticeKind::ScheduledChange { .. } => (
            "InstanceUnhealthy",
            "AWS Health scheduled change for the instance".into(),
        ),
        NoticeKind::CapacityReservationInterruption { .. } => (
            "CapacityReservationInterrupted",
            "The capacity reservation takes the instance back".into(),
        ),
        NoticeKind::StateChange { state } => {
            let reason = match state {
                StateChange::Stopping | StateChange::Stopped => "InstanceStopping",
                StateChange::ShuttingDown | StateChange::Terminated => "InstanceTerminating",
            };
            (reason, format!("The instance is {}", state_name(*state)))
        }
    }
}

fn state_name(state: kestrel_core::interruption::StateChange) -> &'static str {
    use kestrel_core::interruption::StateChange;
    match state {
        StateChange::Stopping => "stopping",
        StateChange::Stopped => "stopped",
        StateChange::ShuttingDown => "shutting down",
        StateChange::Terminated => "terminated",
    }
}
