//! The interruption queue: a long-polling SQS consumer of the queue EventBridge feeds with spot
//! interruption warnings, rebalance recommendations, state changes and Health events (Karpenter's
//! `interruptionQueue` setting).
//!
//! It is a thin shell around the core's [`Inbox`](kestrel_core::interruption::inbox::Inbox): pollers
//! receive (WaitTimeSeconds 20, up to 10 messages) and hand every message to the loop; the loop gives
//! it to the inbox, forwards the notices to the controller, and deletes — through [`InterruptionQueue::delete`]
//! — only what the inbox releases once the controller acknowledged the notices' durable start. A
//! message is never deleted before that, so a crash in between re-delivers it.
//!
//! A queue that does not exist (yet, or any more) is not fatal: it is reported by
//! [`InterruptionQueue::health`] (readiness, metrics, log) and looked up again with backoff.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use kestrel_core::controller::command::backoff_ms;
use kestrel_core::interruption::inbox::Deletion;
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;

/// How the queue is consumed.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// The queue's name or URL (`--interruption-queue`, `INTERRUPTION_QUEUE`).
    pub queue_name: String,
    /// Concurrent long polls: with 20 s waits, a message becomes visible to a poll that is already
    /// waiting, so a few pollers keep the pickup latency at the network's, not the poll interval's.
    pub pollers: usize,
    /// ReceiveMessage's WaitTimeSeconds (long poll; 0..=20).
    pub wait_seconds: i32,
    /// ReceiveMessage's MaxNumberOfMessages (1..=10).
    pub batch: i32,
}

impl QueueConfig {
    pub fn new(queue_name: impl Into<String>) -> Self {
        QueueConfig {
            queue_name: queue_name.into(),
            pollers: 3,
            wait_seconds: 20,
            batch: 10,
        }
    }
}

/// One delivery of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub message_id: String,
    /// This delivery's handle (a re-delivery has a new one; only the newest deletes).
    pub receipt_handle: String,
    pub body: String,
    /// When SQS accepted the message (its `SentTimestamp`, ms since the epoch).
    pub sent_at: Option<i64>,
}

/// What the consumer can say about its queue (readiness and the log read it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueHealth {
    /// Not polled yet.
    Starting,
    /// The last call answered.
    Healthy,
    /// GetQueueUrl or ReceiveMessage said the queue does not exist; looked up again with backoff.
    Missing { queue: String },
    /// The last call failed for another reason (throttled, denied, unreachable); retried with backoff.
    Failing { error: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("interruption queue {queue} does not exist")]
    Missing { queue: String },
    #[error("SQS {operation} failed: {code}: {message}")]
    Api {
        operation: &'static str,
        code: String,
        message: String,
    },
    #[error("SQS deleted {deleted} of {requested} messages; failed: {failed:?}")]
    PartialDelete {
        deleted: usize,
        requested: usize,
        /// (message id, error code) of each entry SQS refused.
        failed: Vec<(String, String)>,
    },
}

/// The error codes SQS answers for a queue that is not there (the JSON protocol's and the legacy
/// query protocol's).
fn is_missing_queue(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue")
    )
}

fn api_error<E: ProvideErrorMetadata + std::fmt::Debug>(
    operation: &'static str,
    queue: &str,
    err: &aws_sdk_sqs::error::SdkError<E>,
) -> QueueError {
    let code = err.code();
    if is_missing_queue(code) {
        return QueueError::Missing {
            queue: queue.to_string(),
        };
    }
    QueueError::Api {
        operation,
        code: code.unwrap_or("unknown").to_string(),
        message: err
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{err:?}")),
    }
}

/// The consumer of one interruption queue.
pub struct InterruptionQueue {
    client: Client,
    config: QueueConfig,
    /// GetQueueUrl's answer, dropped when the queue turns out to be gone.
    url: Mutex<Option<String>>,
    health: watch::Sender<QueueHealth>,
}

impl InterruptionQueue {
    pub fn new(client: Client, config: QueueConfig) -> Arc<Self> {
        let (health, _) = watch::channel(QueueHealth::Starting);
        Arc::new(InterruptionQueue {
            client,
            config,
            url: Mutex::new(None),
            health,
        })
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// The queue's health as it changes.
    pub fn health(&self) -> watch::Receiver<QueueHealth> {
        self.health.subscribe()
    }

    async fn url(&self) -> Result<String, QueueError> {
        let mut cached = self.url.lock().await;
        if let Some(url) = cached.as_ref() {
            return Ok(url.clone());
        }
        let queue = &self.config.queue_name;
        // `INTERRUPTION_QUEUE` may be the queue's URL rather than its name: then it is used as is.
        if queue.starts_with("https://") || queue.starts_with("http://") {
            return Ok(queue.clone());
        }
        let answer = self
            .client
            .get_queue_url()
            .queue_name(queue)
            .send()
            .await
            .map_err(|e| api_error("GetQueueUrl", queue, &e))?;
        let url = answer.queue_url().ok_or_else(|| QueueError::Api {
            operation: "GetQueueUrl",
            code: "NoQueueUrl".into(),
            message: format!("no URL in the answer for queue {queue}"),
        })?;
        *cached = Some(url.to_string());
        Ok(url.to_string())
    }

    /// One long poll: the messages it returned (none when the wait ran out).
    pub async fn poll_once(&self) -> Result<Vec<Received>, QueueError> {
        let url = self.url().await?;
        let answer = self
            .client
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(self.config.batch)
            .wait_time_seconds(self.config.wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| api_error("ReceiveMessage", &self.config.queue_name, &e))?;
        Ok(answer
            .messages()
            .iter()
            .filter_map(|m| {
                // A message without an id or a handle cannot be acknowledged or deleted; SQS always
                // sends both, so one without is logged and left to its visibility timeout.
                match (m.message_id(), m.receipt_handle()) {
                    (Some(id), Some(handle)) => Some(Received {
                        message_id: id.to_string(),
                        receipt_handle: handle.to_string(),
                        body: m.body().unwrap_or_default().to_string(),
                        sent_at: m
                            .attributes()
                            .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                            .and_then(|t| t.parse().ok()),
                    }),
                    _ => {
                        tracing::warn!(?m, "SQS message without an id or receipt handle");
                        None
                    }
                }
            })
            .collect())
    }

    /// Deletes what the inbox released (in batches of 10, SQS's limit). Entries SQS refuses are
    /// reported, not retried here: their message comes back after its visibility timeout, and its
    /// notices are acknowledged again as duplicates.
    pub async fn delete(&self, deletions: &[Deletion]) -> Result<usize, QueueError> {
        if deletions.is_empty() {
            return Ok(0);
        }
        let url = self.url().await?;
        let mut deleted = 0;
        let mut failed = Vec::new();
        for chunk in deletions.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&d.receipt_handle)
                        .build()
                        .map_err(|e| QueueError::Api {
                            operation: "DeleteMessageBatch",
                            code: "InvalidEntry".into(),
                            message: e.to_string(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let answer = self
                .client
                .delete_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| api_error("DeleteMessageBatch", &self.config.queue_name, &e))?;
            deleted += answer.successful().len();
            for f in answer.failed() {
                let message = f
                    .id()
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| chunk.get(i))
                    .map(|d| d.message_id.clone())
                    .unwrap_or_else(|| f.id().to_string());
                failed.push((message, f.code().to_string()));
            }
        }
        if failed.is_empty() {
            Ok(deleted)
        } else {
            Err(QueueError::PartialDelete {
                deleted,
                requested: deletions.len(),
                failed,
            })
        }
    }

    fn report(&self, health: QueueHealth) {
        self.health.send_if_modified(|h| {
            if *h == health {
                false
            } else {
                match &health {
                    QueueHealth::Missing { queue } => {
                        tracing::error!(%queue, "interruption queue not found; retrying")
                    }
                    QueueHealth::Failing { error } => {
                        tracing::warn!(%error, "interruption queue poll failed; retrying")
                    }
                    QueueHealth::Healthy => tracing::info!("interruption queue polled"),
                    QueueHealth::Starting => {}
                }
                *h = health;
                true
            }
        });
    }

    /// Starts the pollers. Each sends every message it receives on `messages`, backs off (1 s
    /// doubling to 60 s, with jitter) after a failed call, and stops when `shutdown` turns true or
    /// `messages` is closed; a poll under way is abandoned (its messages become visible again).
    pub fn spawn(
        self: &Arc<Self>,
        messages: mpsc::Sender<Received>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        (0..self.config.pollers.max(1))
            .map(|_| {
                let queue = Arc::clone(self);
                let messages = messages.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move { queue.poll(messages, shutdown).await })
            })
            .collect()
    }

    async fn poll(&self, messages: mpsc::Sender<Received>, mut shutdown: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let received = tokio::select! {
                _ = shutdown.changed() => return,
                r = self.poll_once() => r,
            };
            match received {
                Ok(batch) => {
                    failures = 0;
                    self.report(QueueHealth::Healthy);
                    for m in batch {
                        if messages.send(m).await.is_err() {
                            return; // The loop is gone: nothing to hand messages to.
                        }
                    }
                }
                Err(err) => {
                    if matches!(err, QueueError::Missing { .. }) {
                        // The queue may be re-created under a new URL.
                        *self.url.lock().await = None;
                        self.report(QueueHealth::Missing {
                            queue: self.config.queue_name.clone(),
                        });
                    } else {
                        self.report(QueueHealth::Failing {
                            error: err.to_string(),
                        });
                    }
                    let base = backoff_ms(failures);
                    failures = failures.saturating_add(1);
                    // Up to a quarter more, so pollers (and replicas) that failed together do not
                    // retry in step; the clock's nanoseconds are random enough for that.
                    let nanos = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| i64::from(d.subsec_nanos()))
                        .unwrap_or(0);
                    let jitter = nanos % (base / 4 + 1);
                    let wait = Duration::from_millis((base + jitter) as u64);
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_protocols_codes_for_a_missing_queue_are_recognised() {
        assert!(is_missing_queue(Some("QueueDoesNotExist")));
        assert!(is_missing_queue(Some(
            "AWS.SimpleQueueService.NonExistentQueue"
        )));
        assert!(!is_missing_queue(Some("AccessDenied")));
        assert!(!is_missing_queue(None));
    }
}
