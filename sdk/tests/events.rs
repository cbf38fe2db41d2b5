//! Events with the SDK against a real core (in-process, `vivified-testkit`): publish
//! and receive, acknowledgement only after the handler succeeded, sanitised copies,
//! typed refusals, and the runner's event loop following the runner's token.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Logs, TestPlugin, fast_config};
use serde_json::{Value, json};
use vivified_plugin_sdk::{
    BoxError, CoreClient, DataClass, Event, EventHandler, EventStream, InitializeError, Manifest,
    MessageInbox, OutgoingEvent, Plugin, PluginContext, PluginStatus, PublishError, PullError,
    RunError, Runner, Secret, async_trait,
};
use vivified_testkit::{TestCore, manifest, subscriber};

const WAIT: Duration = Duration::from_secs(10);

/// Registers `m` with the test kit and returns a client speaking as that plugin.
async fn plugin_client(core: &TestCore, m: &Value) -> CoreClient {
    let answer = core.register(m).await.expect("registered");
    let id = answer["plugin_id"].as_str().unwrap();
    CoreClient::new(core.url(), Duration::from_secs(3))
        .unwrap()
        .as_plugin(id, Secret::new(answer["token"].as_str().unwrap()))
}

fn stream(client: &CoreClient) -> EventStream {
    EventStream::new(client.clone())
        .wait(Duration::from_secs(2))
        .backoff(fast_config("http://unused").backoff)
}

async fn next(stream: &mut EventStream) -> Event {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("an event within the wait")
        .expect("no error")
}

#[tokio::test]
async fn a_published_event_reaches_a_subscribers_stream() {
    let core = TestCore::start().await.unwrap();
    let publisher = plugin_client(&core, &manifest("ev-pub", &[])).await;
    let reader = plugin_client(&core, &subscriber("ev-sub", &[], &["greeting.*"])).await;
    let _other = plugin_client(&core, &subscriber("ev-other", &[], &["billing.*"])).await;
    let mut events = stream(&reader);

    // The stream waits (long poll) for an event published after it started pulling.
    let waiting = tokio::spawn(async move {
        let e = next(&mut events).await;
        (e, events)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let receipt = publisher
        .publish(
            OutgoingEvent::new("greeting.hello")
                .payload(json!({"text": "hi"}))
                .data_trait("internal")
                .metadata("origin", "test"),
        )
        .await
        .unwrap();
    assert_eq!(
        (receipt.delivered, receipt.sanitized, receipt.denied),
        (1, 0, 0)
    );
    assert!(!receipt.trace_id.is_empty());
    let (event, mut events) = waiting.await.unwrap();
    assert_eq!(event.event_id, receipt.event_id);
    assert_eq!(event.trace_id, receipt.trace_id);
    assert_eq!(event.event_type, "greeting.hello");
    assert_eq!(event.source_plugin, "ev-pub");
    assert_eq!(event.payload["text"], "hi");
    assert_eq!(event.metadata["origin"], "test");
    assert!(event.has_data_trait("internal"));
    assert!(event.timestamp.is_some());

    // Acknowledged, then nothing more: a second event is the next one.
    events.ack(&event);
    let second = publisher
        .publish(OutgoingEvent::new("greeting.bye"))
        .await
        .unwrap();
    let got = next(&mut events).await;
    assert_eq!(got.event_id, second.event_id);
    assert_eq!(events.acknowledged(), Some(event.cursor.as_str()));

    // A payload that is not an object is refused before anything is sent.
    assert!(matches!(
        publisher
            .publish(OutgoingEvent::new("greeting.x").payload(json!([1, 2])))
            .await,
        Err(PublishError::InvalidEvent { detail }) if detail.contains("payload")
    ));
    // The core's 400 names the member.
    assert!(matches!(
        publisher.publish(OutgoingEvent::new("Bad..Type")).await,
        Err(PublishError::InvalidEvent { detail }) if detail.contains("event_type")
    ));
    // A client without a plugin identity cannot publish or pull.
    let anonymous = CoreClient::new(core.url(), Duration::from_secs(3)).unwrap();
    assert!(matches!(
        anonymous.publish(OutgoingEvent::new("a")).await,
        Err(PublishError::NotRegistered)
    ));
    assert!(matches!(
        anonymous.pull(None, Duration::ZERO, 10).await,
        Err(PullError::NotRegistered)
    ));
    assert!(matches!(
        reader.pull(None, Duration::ZERO, 0).await,
        Err(PullError::InvalidRequest { .. })
    ));
}

#[tokio::test]
async fn an_event_not_acknowledged_comes_again() {
    let core = TestCore::start().await.unwrap();
    let publisher = plugin_client(&core, &manifest("na-pub", &[])).await;
    let reader = plugin_client(&core, &subscriber("na-sub", &[], &["n.*"])).await;
    for n in 1..=3 {
        publisher
            .publish(OutgoingEvent::new("n.x").payload(json!({ "n": n })))
            .await
            .unwrap();
    }
    // One event per pull, so that every `next` after the first asks the core.
    let mut events = stream(&reader).limit(1);
    let first = next(&mut events).await;
    assert_eq!(first.payload["n"], 1);
    // Not acknowledged: asking for the next event gives the same one again.
    let again = next(&mut events).await;
    assert_eq!(again.event_id, first.event_id);
    events.ack(&again);
    let second = next(&mut events).await;
    assert_eq!(second.payload["n"], 2);
    events.ack(&second);
    let third = next(&mut events).await; // this pull carried the ack of #2
    assert_eq!(third.payload["n"], 3);

    // A new stream (a restarted plugin) starts after what the core has been told:
    // #3 comes again (at-least-once), #1 and #2 never.
    let mut fresh = stream(&reader);
    let e = next(&mut fresh).await;
    assert_eq!(e.event_id, third.event_id);
}

/// A plugin that handles its own events and fails the first attempt at each.
struct Flaky {
    manifest: Manifest,
    attempts: Arc<Mutex<Vec<(String, bool)>>>,
}

#[async_trait]
impl Plugin for Flaky {
    fn manifest(&self) -> Manifest {
        self.manifest.clone()
    }
    async fn initialize(&self, _ctx: PluginContext) -> Result<(), InitializeError> {
        Ok(())
    }
}

#[async_trait]
impl EventHandler for Flaky {
    async fn on_event(&self, event: Event) -> Result<(), BoxError> {
        let mut attempts = self.attempts.lock().unwrap();
        let first = !attempts.iter().any(|(id, _)| *id == event.event_id);
        attempts.push((event.event_id.clone(), !first));
        if first {
            Err("not ready yet".into())
        } else {
            Ok(())
        }
    }
}

fn spawn<P: Plugin>(runner: Runner<P>) -> tokio::task::JoinHandle<Result<(), RunError>> {
    tokio::spawn(runner.run_until(std::future::pending()))
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_handler_error_means_the_event_comes_again() {
    let (logs, _guard) = Logs::capture_json();
    let core = TestCore::start().await.unwrap();
    let publisher = plugin_client(&core, &manifest("hf-pub", &[])).await;
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let plugin = Flaky {
        manifest: Manifest::builder("hf-sub", "Flaky", "1.0.0")
            .subscriptions(["job.*"])
            .build()
            .unwrap(),
        attempts: attempts.clone(),
    };
    let runner = Runner::new(plugin, fast_config(core.url()))
        .unwrap()
        .handle_events();
    let handle = runner.handle();
    let task = spawn(runner);
    handle
        .wait_for(WAIT, PluginStatus::is_registered)
        .await
        .unwrap();

    let one = publisher
        .publish(OutgoingEvent::new("job.run").payload(json!({"secret_field": "Jane Roe"})))
        .await
        .unwrap();
    assert_eq!(one.delivered, 1);
    wait_until("the event handled after a failure", || {
        attempts.lock().unwrap().iter().any(|(_, ok)| *ok)
    })
    .await;
    let two = publisher
        .publish(OutgoingEvent::new("job.run"))
        .await
        .unwrap();
    wait_until("the second event handled", || {
        attempts
            .lock()
            .unwrap()
            .iter()
            .any(|(id, ok)| *id == two.event_id && *ok)
    })
    .await;
    let seen = attempts.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (one.event_id.clone(), false),
            (one.event_id.clone(), true),
            (two.event_id.clone(), false),
            (two.event_id.clone(), true),
        ],
        "each event again after its failure, and never after its success"
    );

    handle.stop();
    task.await.unwrap().unwrap();
    // The failure is logged with the event's id, never its payload or the token.
    let failures = logs.with_message("event handler failed; the event will be delivered again");
    assert_eq!(failures.len(), 2, "{}", logs.text());
    assert_eq!(failures[0]["fields"]["event_id"], one.event_id.as_str());
    assert!(!logs.text().contains("Jane Roe"));
    assert!(!logs.text().contains("eyJ"), "no token in the logs");
}

#[tokio::test]
async fn a_sanitised_delivery_lacks_the_removed_fields() {
    let core = TestCore::start().await.unwrap();
    let ehr = plugin_client(&core, &manifest("ehr", &["handles_phi"])).await;
    let chart = plugin_client(
        &core,
        &subscriber("chart", &["handles_phi"], &["patient.*"]),
    )
    .await;
    let mailer = plugin_client(
        &core,
        &subscriber(
            "mailer",
            &["handles_phi", "external_service"],
            &["patient.updated"],
        ),
    )
    .await;
    let receipt = ehr
        .publish(
            OutgoingEvent::new("patient.updated")
                .payload(json!({
                    "phi": {"name": "Jane Roe"},
                    "medical_record_number": "MRN-778812",
                    "visit": 3
                }))
                .data_trait("phi"),
        )
        .await
        .unwrap();
    assert_eq!(
        (receipt.delivered, receipt.sanitized, receipt.denied),
        (1, 1, 0)
    );

    let full = next(&mut stream(&chart)).await;
    assert_eq!(full.payload["phi"]["name"], "Jane Roe");
    assert_eq!(full.payload["medical_record_number"], "MRN-778812");

    let redacted = next(&mut stream(&mailer)).await;
    assert_eq!(redacted.event_id, receipt.event_id);
    assert!(
        redacted.payload.get("phi").is_none(),
        "{:?}",
        redacted.payload.keys()
    );
    assert!(redacted.payload.get("medical_record_number").is_none());
    assert_eq!(redacted.payload["visit"], 3, "other fields are kept");
    let bytes = serde_json::to_string(&redacted.payload).unwrap();
    assert!(
        !bytes.contains("Jane") && !bytes.contains("MRN-778812"),
        "{bytes}"
    );
}

#[tokio::test]
async fn policy_denied_is_a_typed_error_with_the_reason() {
    let core = TestCore::start().await.unwrap();
    let plain = plugin_client(&core, &manifest("pd-pub", &[])).await;
    let err = plain
        .publish(
            OutgoingEvent::new("patient.updated")
                .payload(json!({"phi": {"name": "Jane Roe"}}))
                .data_trait("phi"),
        )
        .await
        .unwrap_err();
    let PublishError::PolicyDenied { reason, rule } = &err else {
        panic!("expected PolicyDenied, got {err:?}");
    };
    assert_eq!(reason, "data_trait_outside_source_classification");
    assert!(!rule.is_empty());
    assert!(!err.is_transient());
    assert!(!err.to_string().contains("Jane"), "{err}");
}

#[tokio::test]
async fn a_disabled_plugin_gets_typed_disabled_errors() {
    let core = TestCore::start().await.unwrap();
    let publisher = plugin_client(&core, &manifest("dis-pub", &[])).await;
    let reader = plugin_client(&core, &subscriber("dis-sub", &[], &["d.*"])).await;
    core.disable("dis-sub", "maintenance").await.unwrap();
    assert!(matches!(
        reader.pull(None, Duration::ZERO, 10).await,
        Err(PullError::Disabled)
    ));
    assert!(matches!(
        reader.publish(OutgoingEvent::new("d.x")).await,
        Err(PublishError::Disabled)
    ));
    // A stream with a fixed token returns it rather than retrying forever.
    let mut events = stream(&reader);
    assert!(matches!(
        tokio::time::timeout(WAIT, events.next()).await.unwrap(),
        Err(PullError::Disabled)
    ));
    // Nothing reaches it while disabled; once enabled, new events do.
    let denied = publisher.publish(OutgoingEvent::new("d.x")).await.unwrap();
    assert_eq!(denied.denied, 1);
    core.enable("dis-sub").await.unwrap();
    let receipt = publisher.publish(OutgoingEvent::new("d.y")).await.unwrap();
    assert_eq!(receipt.delivered, 1);
    assert_eq!(next(&mut events).await.event_id, receipt.event_id);

    // A revoked token is Unauthorized with the core's reason.
    core.deregister("dis-sub").await.unwrap();
    assert!(matches!(
        reader.pull(None, Duration::ZERO, 10).await,
        Err(PullError::Unauthorized { .. })
    ));
}

/// The runner refreshes its token (every 1.5 s here, and the old one stops working);
/// the event loop and the context's client always use the current one.
#[tokio::test]
async fn the_runners_event_loop_and_client_follow_the_current_token() {
    let core = TestCore::builder()
        .token_ttl(Duration::from_secs(2))
        .start()
        .await
        .unwrap();
    let publisher = plugin_client(&core, &manifest("tk-pub", &[])).await;
    let plugin = TestPlugin::with_manifest(
        Manifest::builder("tk-sub", "Token follower", "1.0.0")
            .subscriptions(["tick.*"])
            // Its untagged `tock.n` events carry this classification.
            .data_classification([DataClass::Internal])
            .build()
            .unwrap(),
    );
    let ctx = plugin.ctx.clone();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let runner = Runner::new(plugin, fast_config(core.url()))
        .unwrap()
        .on_events({
            let seen = seen.clone();
            move |event: Event| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(event.event_id);
                    Ok::<(), BoxError>(())
                }
            }
        });
    let handle = runner.handle();
    let task = spawn(runner);
    handle
        .wait_for(WAIT, PluginStatus::is_registered)
        .await
        .unwrap();
    let client = ctx.lock().unwrap().as_ref().unwrap().client();
    let mut ids = Vec::new();
    for round in 0..3 {
        let r = publisher
            .publish(OutgoingEvent::new("tick.n").payload(json!({ "round": round })))
            .await
            .unwrap();
        assert_eq!(r.delivered, 1);
        ids.push(r.event_id);
        wait_until("the tick handled", || {
            seen.lock().unwrap().last() == ids.last()
        })
        .await;
        // The runner's client publishes with the current token too.
        client
            .publish(OutgoingEvent::new("tock.n"))
            .await
            .expect("the runner's client follows the token");
        tokio::time::sleep(Duration::from_millis(1600)).await; // past a refresh
    }
    assert_eq!(*seen.lock().unwrap(), ids, "each once, in order");
    handle.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_message_inbox_receives_canonical_messages() {
    let core = TestCore::start().await.unwrap();
    let sender = plugin_client(&core, &manifest("mi-pub", &[])).await;
    let reader = plugin_client(&core, &subscriber("mi-sub", &[], &["message.*"])).await;
    let message = vivified_plugin_sdk::CanonicalMessage {
        id: "m-1".into(),
        from_user: "a".into(),
        to_user: "b".into(),
        content_type: "text/plain".into(),
        content: b"hello".to_vec(),
        data_traits: vec!["internal".into()],
        sent_at: None,
    };
    sender
        .publish(OutgoingEvent::message("message.sent", &message))
        .await
        .unwrap();
    sender
        .publish(OutgoingEvent::new("message.sent").payload(json!({"not": "a message"})))
        .await
        .unwrap();
    let mut second = message.clone();
    second.id = "m-2".into();
    sender
        .publish(OutgoingEvent::message("message.sent", &second))
        .await
        .unwrap();

    let inbox = MessageInbox::new(stream(&reader));
    let first = inbox.receive(1).await.unwrap();
    assert_eq!(first, std::slice::from_ref(&message));
    let rest = inbox.receive(10).await.unwrap();
    assert_eq!(rest, [second], "the non-message is skipped");
    assert!(inbox.receive(10).await.unwrap().is_empty());

    // What the inbox returned is acknowledged by its later calls.
    let left = reader.pull(None, Duration::ZERO, 10).await.unwrap();
    assert!(left.events.is_empty(), "{:?}", left.events);
}
