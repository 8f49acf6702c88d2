//! An interruption queue in memory behind the controller's queue edge: the test sends messages, the
//! controller's consumer receives them (only once it leads) and deletes the handled ones.

use std::sync::{Arc, Mutex};

use kestrel_core::interruption::inbox::Deletion;
use kestrel_kube::interruptions::{DeleteCall, NoticeQueue, QueuedMessage};
use tokio::sync::{mpsc, watch};

#[derive(Debug, Default)]
struct State {
    /// Messages sent and not deleted, by id, with their latest receipt handle.
    visible: Vec<QueuedMessage>,
    deleted: Vec<String>,
    started: bool,
    receiver: Option<mpsc::Sender<QueuedMessage>>,
    deliveries: u64,
    problem: Option<String>,
}

/// A queue the test fills; clones share it.
#[derive(Debug, Clone, Default)]
pub struct MemoryQueue {
    state: Arc<Mutex<State>>,
}

impl MemoryQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a message (delivered at once if a consumer is started, else when one starts).
    pub fn send(&self, message_id: &str, body: &str) {
        let mut state = self.lock();
        state.deliveries += 1;
        let message = QueuedMessage {
            message_id: message_id.to_string(),
            receipt_handle: format!("{message_id}#{}", state.deliveries),
            body: body.to_string(),
            sent_at: Some(kestrel_core::clock::Clock::now(
                &kestrel_core::clock::SystemClock,
            )),
        };
        state.visible.push(message.clone());
        if let Some(tx) = &state.receiver
            && tx.try_send(message).is_err()
        {
            // The consumer is gone or full: the message stays visible for the next one.
            state.receiver = None;
        }
    }

    /// The ids of the messages deleted, in order.
    pub fn deleted(&self) -> Vec<String> {
        self.lock().deleted.clone()
    }

    /// Makes the queue report a problem (as a deleted SQS queue does), or none.
    pub fn set_problem(&self, problem: Option<&str>) {
        self.lock().problem = problem.map(str::to_string);
    }

    /// Whether a consumer has started receiving.
    pub fn started(&self) -> bool {
        self.lock().started
    }
}

impl NoticeQueue for MemoryQueue {
    fn start(&self, messages: mpsc::Sender<QueuedMessage>, _stop: watch::Receiver<bool>) {
        let mut state = self.lock();
        state.started = true;
        // What was sent before the consumer started is delivered now.
        for m in &state.visible {
            if messages.try_send(m.clone()).is_err() {
                break;
            }
        }
        state.receiver = Some(messages);
    }

    fn delete<'a>(&'a self, deletions: &'a [Deletion]) -> DeleteCall<'a> {
        Box::pin(async move {
            let mut state = self.lock();
            let mut deleted = 0;
            for d in deletions {
                // Only the latest delivery's receipt handle deletes, as in SQS.
                if let Some(i) = state
                    .visible
                    .iter()
                    .position(|m| m.receipt_handle == d.receipt_handle)
                {
                    let m = state.visible.remove(i);
                    state.deleted.push(m.message_id);
                    deleted += 1;
                }
            }
            Ok(deleted)
        })
    }

    fn problem(&self) -> Option<String> {
        self.lock().problem.clone()
    }
}
