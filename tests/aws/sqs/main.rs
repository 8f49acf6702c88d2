//! The interruption queue consumer against moto's SQS, with the messages EventBridge sends in their
//! real shapes (the core's fixtures): what reaches the controller, what is deleted and when, a crash
//! between receive and action, a queue deleted and created again.
//!
//! What the controller then does with each notice (taint, avoid, replace, drain, terminate;
//! duplicates and foreign instances) is the core's and is tested there
//! (`host/sim/src/sim/replay/interruption_tests.rs`); here the queue's side of the contract is.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{Credentials, Region};
use aws_sdk_sqs::types::QueueAttributeName;
use kestrel_aws::sqs::{InterruptionQueue, QueueConfig, QueueError, QueueHealth, Received};
use kestrel_aws_tests::MotoServer;
use kestrel_core::controller::{NoticeAck, NoticeOutcome};
use kestrel_core::interruption::inbox::{DeleteReason, Disposition, Inbox};
use kestrel_core::interruption::{NoticeKind, StateChange};
use tokio::sync::{mpsc, watch};

const QUEUE: &str = "kestrel-interruptions";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../../host/core/src/interruption/testdata/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct Env {
    /// Dropped last: the client talks to it.
    moto: MotoServer,
    client: Client,
}

async fn env() -> Env {
    let moto = MotoServer::start().expect("moto starts");
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    Env {
        client: Client::new(&config),
        moto,
    }
}

impl Env {
    /// The queue, with a short visibility timeout so re-deliveries happen within a test.
    async fn create_queue(&self, visibility_seconds: u32) -> String {
        self.client
            .create_queue()
            .queue_name(QUEUE)
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_seconds.to_string(),
            )
            .send()
            .await
            .expect("queue created")
            .queue_url()
            .expect("queue url")
            .to_string()
    }

    async fn send(&self, url: &str, body: &str) -> String {
        self.client
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .expect("message sent")
            .message_id()
            .expect("message id")
            .to_string()
    }

    /// Messages in the queue, visible or in flight.
    async fn depth(&self, url: &str) -> u64 {
        let attrs = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .expect("queue attributes");
        let get = |name: QueueAttributeName| -> u64 {
            attrs
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        get(QueueAttributeName::ApproximateNumberOfMessages)
            + get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
    }

    fn consumer(&self, wait_seconds: i32) -> Arc<InterruptionQueue> {
        let mut config = QueueConfig::new(QUEUE);
        config.wait_seconds = wait_seconds;
        config.pollers = 2;
        InterruptionQueue::new(self.client.clone(), config)
    }
}

/// Receives until `n` messages arrived (or the deadline passes).
async fn collect(rx: &mut mpsc::Receiver<Received>, n: usize, within: Duration) -> Vec<Received> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(m)) => got.push(m),
            _ => break,
        }
    }
    got
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_kind_reaches_the_controller_and_is_deleted_only_once_acknowledged() {
    let env = env().await;
    let url = env.create_queue(30).await;
    let kinds = [
        "spot-interruption-warning",
        "rebalance-recommendation",
        "state-change-stopping",
        "state-change-terminated",
        "health-scheduled-change",
        "capacity-reservation-interruption",
        "state-change-running",
        "health-other-service",
    ];
    let mut ids = BTreeMap::new();
    for kind in kinds {
        ids.insert(env.send(&url, &fixture(kind)).await, kind);
    }
    ids.insert(env.send(&url, "{not json").await, "malformed");
    let queue = env.consumer(1);
    let (tx, mut rx) = mpsc::channel(64);
    let (stop, shutdown) = watch::channel(false);
    let pollers = queue.spawn(tx, shutdown);
    let received = collect(&mut rx, ids.len(), Duration::from_secs(30)).await;
    assert_eq!(received.len(), ids.len(), "every message is received");

    let mut inbox = Inbox::default();
    let mut forwarded = BTreeMap::new();
    let mut deleted_now = Vec::new();
    for m in &received {
        let (disposition, error) =
            inbox.receive(&m.message_id, &m.receipt_handle, &m.body, now_ms());
        match disposition {
            Disposition::Forward(notices) => {
                assert!(error.is_none());
                forwarded.insert(ids[&m.message_id], notices);
            }
            Disposition::Delete(d) => {
                if ids[&m.message_id] == "malformed" {
                    assert_eq!(d.why, DeleteReason::Malformed);
                    let error = error.expect("a malformed message says why");
                    assert!(error.to_string().contains(&m.message_id), "{error}");
                } else {
                    assert_eq!(d.why, DeleteReason::Ignored, "{}", ids[&m.message_id]);
                }
                deleted_now.push(d);
            }
        }
    }
    let kind_of = |k: &str| {
        forwarded[k]
            .iter()
            .map(|n| n.kind.clone())
            .collect::<Vec<_>>()
    };
    assert!(matches!(
        kind_of("spot-interruption-warning")[..],
        [NoticeKind::SpotInterruptionWarning { .. }]
    ));
    assert!(matches!(
        kind_of("rebalance-recommendation")[..],
        [NoticeKind::RebalanceRecommendation]
    ));
    assert!(matches!(
        kind_of("state-change-stopping")[..],
        [NoticeKind::StateChange {
            state: StateChange::Stopping
        }]
    ));
    assert!(matches!(
        kind_of("state-change-terminated")[..],
        [NoticeKind::StateChange {
            state: StateChange::Terminated
        }]
    ));
    assert!(
        kind_of("health-scheduled-change").len() >= 2
            && kind_of("health-scheduled-change")
                .iter()
                .all(|k| matches!(k, NoticeKind::ScheduledChange { .. })),
        "every affected instance of a Health event"
    );
    assert!(matches!(
        kind_of("capacity-reservation-interruption")[..],
        [NoticeKind::CapacityReservationInterruption { .. }]
    ));
    assert_eq!(
        deleted_now.len(),
        3,
        "running, another service's event, malformed"
    );
    assert_eq!(queue.delete(&deleted_now).await.expect("deleted"), 3);
    assert_eq!(
        env.depth(&url).await,
        6,
        "the rest wait for their acknowledgement"
    );

    // The controller acknowledges each notice once its action is durably started.
    let acks: Vec<NoticeAck> = forwarded
        .values()
        .flatten()
        .map(|n| NoticeAck {
            token: n.ack.clone().expect("queue notices carry their message id"),
            instance_id: n.instance_id.clone(),
            outcome: NoticeOutcome::Acted,
        })
        .collect();
    let deletions = inbox.acknowledged(acks);
    assert_eq!(deletions.len(), 6);
    assert_eq!(queue.delete(&deletions).await.expect("deleted"), 6);
    assert_eq!(env.depth(&url).await, 0);
    stop.send(true).expect("pollers listen");
    for p in pollers {
        tokio::time::timeout(Duration::from_secs(5), p)
            .await
            .expect("pollers stop on shutdown, a long poll under way abandoned")
            .expect("poller did not panic");
    }
    drop(env.moto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_receive_and_action_redelivers_the_message() {
    let env = env().await;
    let url = env.create_queue(2).await;
    let sent_after = now_ms() - 1000; // SentTimestamp has a second's precision on some servers
    let id = env.send(&url, &fixture("spot-interruption-warning")).await;
    // The first process receives it and dies before the controller acknowledges anything.
    {
        let queue = env.consumer(1);
        let first = queue.poll_once().await.expect("received");
        assert_eq!(first.len(), 1);
        // When SQS accepted it (what the queue-duration metric is measured from).
        let sent_at = first[0].sent_at.expect("SentTimestamp");
        assert!((sent_after..=now_ms()).contains(&sent_at), "{sent_at}");
        let mut inbox = Inbox::default();
        let (d, _) = inbox.receive(
            &first[0].message_id,
            &first[0].receipt_handle,
            &first[0].body,
            now_ms(),
        );
        assert!(matches!(d, Disposition::Forward(_)));
    }
    // The restarted one gets it again once the visibility timeout ran out, and deletes it after
    // the acknowledgement (with the newest receipt handle).
    let queue = env.consumer(5);
    let started = Instant::now();
    let again = loop {
        let batch = queue.poll_once().await.expect("received");
        if !batch.is_empty() {
            break batch;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "re-delivered");
    };
    assert_eq!(again[0].message_id, id);
    let mut inbox = Inbox::default();
    let (d, _) = inbox.receive(
        &again[0].message_id,
        &again[0].receipt_handle,
        &again[0].body,
        now_ms(),
    );
    let Disposition::Forward(notices) = d else {
        panic!("forwarded");
    };
    let deletions = inbox.acknowledged(vec![NoticeAck {
        token: id.clone(),
        instance_id: notices[0].instance_id.clone(),
        outcome: NoticeOutcome::Acted,
    }]);
    assert_eq!(queue.delete(&deletions).await.expect("deleted"), 1);
    assert_eq!(env.depth(&url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_delivery_is_acknowledged_once_and_deleted_with_the_newest_handle() {
    let env = env().await;
    let url = env.create_queue(1).await;
    let id = env.send(&url, &fixture("spot-interruption-warning")).await;
    let queue = env.consumer(3);
    let mut inbox = Inbox::default();
    let first = queue.poll_once().await.expect("received");
    inbox.receive(
        &first[0].message_id,
        &first[0].receipt_handle,
        &first[0].body,
        now_ms(),
    );
    // The acknowledgement is slow: the queue delivers the message again meanwhile.
    let again = loop {
        let batch = queue.poll_once().await.expect("received");
        if !batch.is_empty() {
            break batch;
        }
    };
    assert_eq!(again[0].message_id, id);
    assert_ne!(again[0].receipt_handle, first[0].receipt_handle);
    let (d, _) = inbox.receive(
        &again[0].message_id,
        &again[0].receipt_handle,
        &again[0].body,
        now_ms(),
    );
    let Disposition::Forward(notices) = d else {
        panic!("forwarded again (the controller acknowledges it as a duplicate)");
    };
    assert_eq!(inbox.counters.redelivered, 1);
    let deletions = inbox.acknowledged(vec![
        NoticeAck {
            token: id.clone(),
            instance_id: notices[0].instance_id.clone(),
            outcome: NoticeOutcome::Acted,
        },
        NoticeAck {
            token: id.clone(),
            instance_id: notices[0].instance_id.clone(),
            outcome: NoticeOutcome::Duplicate,
        },
    ]);
    assert_eq!(deletions.len(), 1, "one deletion for the message");
    assert_eq!(deletions[0].receipt_handle, again[0].receipt_handle);
    assert_eq!(queue.delete(&deletions).await.expect("deleted"), 1);
    assert_eq!(env.depth(&url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_queue_is_reported_and_picked_up_when_it_is_created_again() {
    let env = env().await;
    let queue = env.consumer(1);
    assert_eq!(
        queue.poll_once().await,
        Err(QueueError::Missing {
            queue: QUEUE.into()
        })
    );
    let mut health = queue.health();
    let (tx, mut rx) = mpsc::channel(8);
    let (stop, shutdown) = watch::channel(false);
    let pollers = queue.spawn(tx, shutdown);
    tokio::time::timeout(
        Duration::from_secs(20),
        health.wait_for(|h| matches!(h, QueueHealth::Missing { .. })),
    )
    .await
    .expect("reported missing")
    .expect("health channel open");
    // Created: the pollers find it (after their backoff) and messages flow.
    let url = env.create_queue(30).await;
    env.send(&url, &fixture("rebalance-recommendation")).await;
    assert_eq!(collect(&mut rx, 1, Duration::from_secs(30)).await.len(), 1);
    assert_eq!(*queue.health().borrow(), QueueHealth::Healthy);
    // Deleted while polled, then created again (a new URL): reported, then resumed.
    env.client
        .delete_queue()
        .queue_url(&url)
        .send()
        .await
        .expect("queue deleted");
    tokio::time::timeout(
        Duration::from_secs(30),
        health.wait_for(|h| matches!(h, QueueHealth::Missing { .. })),
    )
    .await
    .expect("reported missing again")
    .expect("health channel open");
    let url = env.create_queue(30).await;
    env.send(&url, &fixture("spot-interruption-warning")).await;
    assert_eq!(collect(&mut rx, 1, Duration::from_secs(40)).await.len(), 1);
    stop.send(true).expect("pollers listen");
    for p in pollers {
        tokio::time::timeout(Duration::from_secs(5), p)
            .await
            .expect("pollers stop")
            .expect("poller did not panic");
    }
}
