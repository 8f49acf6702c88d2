//! Benchmark harness: a spot interruption warning made visible in the queue -> its replacement's launch
//! submitted, through the real path: moto's SQS, the long-polling consumer (three pollers waiting 20 s),
//! the core's `Inbox`, and the controller of a simulated 200-node spot fleet (the same decision code as
//! `kestrel run`). p50 / p99 over the messages (wall time), one message at a time.
//!
//! `cargo bench -p kestrel-aws-tests --bench interruption_latency [-- MESSAGES]`

use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_sqs::config::{Credentials, Region};
use kestrel_aws::sqs::{InterruptionQueue, QueueConfig};
use kestrel_aws_tests::MotoServer;
use kestrel_core::controller::{Action, Reason};
use kestrel_core::interruption::inbox::{Disposition, Inbox};
use kestrel_sim::sim::replay::{Replay, SimOptions};
use kestrel_sim::sim::report::nearest_rank;
use kestrel_sim::sim::scenario::Scenario;
use tokio::sync::{mpsc, watch};

const SCENARIO: &str = include_str!("../../../examples/benchmarks/interruption-latency.yaml");

/// The EventBridge spot warning for `instance_id`, stamped at `at` (the fleet's virtual now).
fn warning(instance_id: &str, at_ms: i64, n: usize) -> String {
    let time = chrono::DateTime::from_timestamp_millis(at_ms)
        .expect("a valid instant")
        .format("%Y-%m-%dT%H:%M:%SZ");
    serde_json::json!({
        "version": "0",
        "id": format!("bench-{n}"),
        "detail-type": "EC2 Spot Instance Interruption Warning",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": time.to_string(),
        "region": "us-east-1",
        "resources": [format!("arn:aws:ec2:us-east-1a:instance/{instance_id}")],
        "detail": {"instance-id": instance_id, "instance-action": "terminate"}
    })
    .to_string()
}

fn main() {
    let messages: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench(messages));
}

async fn bench(messages: usize) {
    let moto = MotoServer::start().expect("moto starts");
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "bench"))
        .load()
        .await;
    let client = aws_sdk_sqs::Client::new(&config);
    let url = client
        .create_queue()
        .queue_name("kestrel-bench")
        .send()
        .await
        .expect("queue")
        .queue_url()
        .expect("url")
        .to_string();
    let queue = InterruptionQueue::new(client.clone(), QueueConfig::new("kestrel-bench"));
    let (tx, mut rx) = mpsc::channel(64);
    let (stop, shutdown) = watch::channel(false);
    let pollers = queue.spawn(tx, shutdown);

    let scenario = Scenario::parse(SCENARIO, "interruption-latency.yaml").expect("scenario");
    let mut replay = Replay::new(&scenario, SimOptions::default());
    replay.advance(scenario.start_ms() + 10 * 60_000, &mut |_| {});
    let instances: Vec<String> = replay
        .cluster()
        .nodes_iter()
        .map(|n| n.instance_id.clone())
        .collect();
    assert!(instances.len() >= messages, "{} nodes", instances.len());
    // Let the pollers settle into their long polls.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut inbox = Inbox::default();
    let mut millis = Vec::with_capacity(messages);
    let mut with_launch = 0;
    for (n, id) in instances.iter().take(messages).enumerate() {
        // One warning every 70 s of virtual time (past the previous replacement's launch).
        let next = replay.now() + 70_000;
        replay.advance(next, &mut |_| {});
        let body = warning(id, replay.now(), n);
        client
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .send()
            .await
            .expect("sent");
        // Visible in the queue from here.
        let visible = Instant::now();
        let received = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("received within 30 s")
            .expect("pollers running");
        let (disposition, _) = inbox.receive(
            &received.message_id,
            &received.receipt_handle,
            &received.body,
            replay.now(),
        );
        let Disposition::Forward(notices) = disposition else {
            panic!("a spot warning is forwarded");
        };
        let logged = replay.controller().log.len();
        for notice in notices {
            replay.notify_now(notice);
        }
        let elapsed = visible.elapsed().as_secs_f64() * 1000.0;
        let launched = replay.controller().log[logged..].iter().any(|d| {
            matches!(
                d.action,
                Action::LaunchClaim {
                    offering: Some(_),
                    ..
                }
            ) && d.why.reason == Reason::SpotInterruption
        });
        with_launch += usize::from(launched);
        millis.push(elapsed);
        let deletions = inbox.acknowledged(replay.take_acks());
        queue.delete(&deletions).await.expect("deleted");
    }
    stop.send(true).expect("pollers listen");
    for p in pollers {
        p.await.expect("poller ends");
    }
    millis.sort_by(f64::total_cmp);
    println!(
        "{messages} messages ({with_launch} needed a launch): visible in the queue -> replacement launch \
         submitted p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (3 pollers, WaitTimeSeconds 20)",
        nearest_rank(&millis, 0.50),
        nearest_rank(&millis, 0.99),
        millis.last().copied().unwrap_or(0.0)
    );
}
