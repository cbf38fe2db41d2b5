//! The NATS event bus against a real server with JetStream.
//!
//! Gated: runs when `VIVIFIED_TEST_NATS_URL` is set (e.g. `nats://127.0.0.1:4222`);
//! `.ci/run` sets it and fails if the server is unreachable. Without it (a fresh
//! machine), each test says so and passes; with `CI` set and the variable unset, they
//! fail. Each test uses its own subject and stream prefixes and deletes its streams
//! at the end, so runs never collide.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;
use vivified_adapters::nats::{NatsBusConfig, NatsConnectError, NatsEventBus};
use vivified_conformance::bus::{CONFORMANCE_QUEUE_BOUND, bus_event, event_bus_conformance};
use vivified_ports::{BusError, Cursor, EventBus, PluginId};
use vivified_test_support::services::nats_url;

/// Settings with prefixes no other test or run uses.
fn unique_config(queue_bound: usize) -> NatsBusConfig {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let tag = &tag[..12];
    NatsBusConfig {
        subject_prefix: format!("vivtest.{tag}"),
        stream_prefix: format!("VIVTEST_{tag}"),
        queue_bound,
        ack_wait: Duration::from_secs(1),
        ..NatsBusConfig::default()
    }
}

async fn connect(url: &str, config: NatsBusConfig) -> NatsEventBus {
    NatsEventBus::connect(url, config)
        .await
        .unwrap_or_else(|e| panic!("VIVIFIED_TEST_NATS_URL is set but NATS is unusable: {e}"))
}

/// Deletes every stream of this test's prefix (also those a failed check left).
async fn cleanup(bus: &NatsEventBus) {
    let js = jetstream::new(bus.client().clone());
    let prefix = format!("{}_", bus.config().stream_prefix);
    let mut names = js.stream_names();
    let mut mine = Vec::new();
    while let Some(name) = names.next().await {
        let name = name.expect("list streams");
        if name.starts_with(&prefix) {
            mine.push(name);
        }
    }
    for name in mine {
        js.delete_stream(&name).await.expect("delete test stream");
    }
}

fn pid(id: &str) -> PluginId {
    PluginId::parse(id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_bus_passes_the_conformance_suite() {
    let Some(url) = nats_url() else { return };
    let bus = Arc::new(connect(&url, unique_config(CONFORMANCE_QUEUE_BOUND)).await);
    event_bus_conformance(bus.clone()).await;
    cleanup(&bus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_survive_a_core_restart_and_any_replica_serves_a_pull() {
    let Some(url) = nats_url() else { return };
    let config = unique_config(100);
    let t = pid("restart");
    let first_cursor = {
        let core = connect(&url, config.clone()).await;
        for i in 0..5 {
            core.enqueue(&t, bus_event(&format!("r{i}"), "src"))
                .await
                .unwrap();
        }
        let pulled = core
            .pull(&t, None, 2, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(pulled.events.len(), 2);
        let c = pulled.next_cursor.unwrap();
        // Acknowledge the first two, then "crash" with the next two fetched.
        let pulled = core
            .pull(&t, Some(&c), 2, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(pulled.events[0].1.event_id, "r2");
        c
    };
    // Two fresh "replicas" (new connections): both see the acknowledged floor and the
    // same unacknowledged events, at once.
    let a = connect(&url, config.clone()).await;
    let b = connect(&url, config.clone()).await;
    for replica in [&a, &b] {
        let started = Instant::now();
        let pulled = replica
            .pull(&t, Some(&first_cursor), 10, Duration::from_secs(5))
            .await
            .unwrap();
        let ids: Vec<_> = pulled
            .events
            .iter()
            .map(|(_, e)| e.event_id.as_str())
            .collect();
        assert_eq!(ids, ["r2", "r3", "r4"]);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    // Replica a acknowledges r3; replica b then only has r4.
    let pulled = a
        .pull(&t, Some(&first_cursor), 2, Duration::from_secs(5))
        .await
        .unwrap();
    let c3 = pulled.next_cursor.unwrap();
    let pulled = b
        .pull(&t, Some(&c3), 10, Duration::from_secs(5))
        .await
        .unwrap();
    let ids: Vec<_> = pulled
        .events
        .iter()
        .map(|(_, e)| e.event_id.as_str())
        .collect();
    assert_eq!(ids, ["r4"]);
    cleanup(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_fetch_is_redelivered_after_ack_wait_and_never_skipped() {
    let Some(url) = nats_url() else { return };
    let config = unique_config(100);
    let bus = connect(&url, config.clone()).await;
    let t = pid("inflight");
    bus.enqueue(&t, bus_event("f0", "src")).await.unwrap();
    // A core that fetched f0 and died before answering or NAKing it.
    let js = jetstream::new(bus.client().clone());
    let stream = js.get_stream(bus.stream_name(&t)).await.unwrap();
    let consumer: jetstream::consumer::PullConsumer =
        stream.get_consumer("deliveries").await.unwrap();
    let mut lost = consumer.fetch().max_messages(1).messages().await.unwrap();
    assert!(lost.next().await.is_some(), "the lost fetch got f0");
    drop(lost);
    bus.enqueue(&t, bus_event("f1", "src")).await.unwrap();
    // f1 is available, but f0 is older and unacknowledged: it comes first, after ack_wait.
    let started = Instant::now();
    let pulled = bus
        .pull(&t, None, 10, Duration::from_secs(10))
        .await
        .unwrap();
    let ids: Vec<_> = pulled
        .events
        .iter()
        .map(|(_, e)| e.event_id.as_str())
        .collect();
    assert_eq!(
        ids.first(),
        Some(&"f0"),
        "an older unacknowledged event is never skipped"
    );
    assert!(
        started.elapsed() < config.ack_wait + Duration::from_secs(2),
        "redelivered within ack_wait ({:?})",
        started.elapsed()
    );
    cleanup(&bus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_events_go_to_their_subject_and_not_into_queues() {
    let Some(url) = nats_url() else { return };
    let bus = connect(&url, unique_config(10)).await;
    let mut sub = bus
        .client()
        .subscribe(format!("{}.lifecycle.>", bus.config().subject_prefix))
        .await
        .unwrap();
    bus.client().flush().await.unwrap();
    let mut event = bus_event("plugin.registered:x:jti", "core");
    event.event_type = "plugin.registered".into();
    bus.publish(event.clone()).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("delivered")
        .expect("open");
    assert_eq!(
        msg.subject.as_str(),
        bus.lifecycle_subject("plugin.registered")
    );
    assert_eq!(vivified_adapters::nats::decode(&msg.payload), Some(event));
    let pulled = bus.pull(&pid("x"), None, 10, Duration::ZERO).await.unwrap();
    assert!(pulled.events.is_empty());
    let mut bad = bus_event("e", "core");
    bad.event_type = "not a subject.>".into();
    assert!(matches!(bus.publish(bad).await, Err(BusError::Rejected(_))));
    // Payloads travel as a protobuf Struct: a JSON object, with safe integers.
    for payload in [
        serde_json::json!([1, 2]),
        serde_json::json!("text"),
        serde_json::json!({ "n": u64::MAX }),
    ] {
        let mut event = bus_event("bad-payload", "src");
        event.payload = payload;
        assert!(matches!(
            bus.enqueue(&pid("x"), event).await,
            Err(BusError::Rejected(_))
        ));
    }
    let pulled = bus.pull(&pid("x"), None, 10, Duration::ZERO).await.unwrap();
    assert!(pulled.events.is_empty(), "a refused event is not queued");
    cleanup(&bus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_enqueue_is_stored_once() {
    let Some(url) = nats_url() else { return };
    let bus = connect(&url, unique_config(10)).await;
    let t = pid("dedup");
    for _ in 0..3 {
        bus.enqueue(&t, bus_event("same", "src")).await.unwrap();
    }
    bus.enqueue(&t, bus_event("other", "src")).await.unwrap();
    let pulled = bus
        .pull(&t, None, 10, Duration::from_secs(5))
        .await
        .unwrap();
    let ids: Vec<_> = pulled
        .events
        .iter()
        .map(|(_, e)| e.event_id.as_str())
        .collect();
    assert_eq!(ids, ["same", "other"]);
    // A cursor past anything enqueued was not issued by the bus.
    let c = pulled.next_cursor.unwrap();
    let (inc, seq) = c.as_str().split_once('.').unwrap();
    let forged = Cursor::new(format!("{inc}.{}", seq.parse::<u64>().unwrap() + 5));
    assert!(matches!(
        bus.pull(&t, Some(&forged), 10, Duration::ZERO).await,
        Err(BusError::InvalidCursor)
    ));
    cleanup(&bus).await;
}

#[tokio::test]
async fn connection_errors_name_the_setting_and_hide_the_url() {
    // Runs without a server: port 1 on the loopback refuses at once.
    let config = NatsBusConfig {
        timeout: Duration::from_secs(2),
        url_setting: "NATS_URL",
        ..NatsBusConfig::default()
    };
    let err = NatsEventBus::connect("nats://alice:s3cret@127.0.0.1:1", config.clone())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, NatsConnectError::Unreachable { .. }),
        "{text}"
    );
    assert!(text.starts_with("NATS_URL: "), "{text}");
    assert!(
        !text.contains("s3cret") && !text.contains("alice"),
        "{text}"
    );
    let err = NatsEventBus::connect("https://alice:s3cret@example.org", config.clone())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        NatsConnectError::InvalidUrl {
            setting: "NATS_URL"
        }
    ));
    assert!(!err.to_string().contains("s3cret"));
    let err = NatsEventBus::connect(
        "nats://127.0.0.1:1",
        NatsBusConfig {
            subject_prefix: "bad prefix".into(),
            ..config
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("subject_prefix"), "{err}");
}
