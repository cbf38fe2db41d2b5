//! Events between plugins through the HTTP API: `POST /events` (policy per subscriber,
//! sanitising, spoofing and classification refusals) and the long poll
//! `GET /plugins/{id}/events` (cursors, acknowledgement, wake-up on publish).

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, assert_error};

/// A PHI-qualified manifest with the given extra traits and subscriptions.
use crate::helpers::{phi_manifest, register_token as register, subscriber as plain_manifest};

async fn pull(app: &TestApp, id: &str, token: &str, query: &str) -> Value {
    let resp = app
        .get(&format!("/plugins/{id}/events{query}"), Some(token))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    resp.json()
}

/// Registers `ehr` (a PHI publisher), `chart` (PHI-qualified, subscribed to
/// `patient.*`) and `mailer` (PHI-qualified external service, `patient.updated`), and
/// returns their tokens.
async fn phi_plugins(app: &TestApp) -> [String; 3] {
    let ehr = register(app, &phi_manifest("ehr", &[], &[])).await;
    let chart = register(app, &phi_manifest("chart", &[], &["patient.*"])).await;
    let mailer = register(
        app,
        &phi_manifest("mailer", &["external_service"], &["patient.updated"]),
    )
    .await;
    [ehr, chart, mailer]
}

/// The sealed `event.publish` audit entries, after sealing everything pending.
async fn published_entries(app: &TestApp) -> Vec<vivified_ports::SealedEntry> {
    crate::helpers::sealed_entries(app, "event.publish").await
}

fn event_ids(pulled: &Value) -> Vec<String> {
    pulled["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["payload"]["n"].to_string())
        .collect()
}

#[tokio::test]
async fn fan_out_applies_the_policy_per_subscriber_and_sanitises_for_external_services() {
    let app = TestApp::dev();
    let [ehr, chart, mailer] = phi_plugins(&app).await;
    let plain = register(&app, &plain_manifest("plain", &["*.updated"])).await;
    let _unsubscribed = register(&app, &phi_manifest("other", &[], &["billing.*"])).await;

    let resp = app
        .post_json(
            "/events",
            Some(&ehr),
            &json!({
                "event_type": "patient.updated",
                "data_traits": ["PHI"],
                "payload": {"phi": {"name": "Jane Roe", "mrn": "MRN-778812"}, "visit": 3},
                "metadata": {"origin": "ward-7"}
            }),
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED, "{}", resp.text());
    let receipt = resp.json();
    assert_eq!(
        (
            &receipt["delivered"],
            &receipt["sanitized"],
            &receipt["denied"]
        ),
        (&json!(1), &json!(1), &json!(1)),
        "{receipt}"
    );
    assert_eq!(
        receipt["trace_id"].as_str(),
        resp.header("x-request-id").as_deref()
    );
    assert!(
        !resp.text().contains("plain") && !resp.text().contains("Jane"),
        "counts only: {receipt}"
    );
    let event_id = receipt["event_id"].as_str().expect("event id").to_owned();

    let got = pull(&app, "chart", &chart, "").await;
    let e = &got["events"][0];
    assert_eq!(e["event_id"], event_id.as_str());
    assert_eq!(e["source_plugin"], "ehr");
    assert_eq!(e["event_type"], "patient.updated");
    assert_eq!(e["payload"]["phi"]["name"], "Jane Roe");
    assert_eq!(e["metadata"]["origin"], "ward-7");

    let resp = app.get("/plugins/mailer/events", Some(&mailer)).await;
    assert_eq!(resp.status, StatusCode::OK);
    let bytes = resp.text();
    assert!(
        !bytes.contains("Jane Roe") && !bytes.contains("MRN-778812"),
        "the sanitised delivery must not carry the removed fields: {bytes}"
    );
    let e = &resp.json()["events"][0];
    assert_eq!(e["event_id"], event_id.as_str());
    assert_eq!(e["payload"]["visit"], 3, "other fields are kept");

    let got = pull(&app, "plain", &plain, "").await;
    assert_eq!(got["events"], json!([]), "denied: nothing delivered");

    // One audit entry for the event, with every subscriber's decision, no payload.
    let published = published_entries(&app).await;
    assert_eq!(published.len(), 1);
    let details = published[0].entry.details.to_string();
    for needle in [
        "chart",
        "mailer",
        "plain",
        "phi.qualified-target",
        &event_id,
    ] {
        assert!(details.contains(needle), "{needle} missing from {details}");
    }
    assert!(!details.contains("Jane") && !details.contains("ward-7"));
}

/// An event without data traits from a publisher classified `phi` +
/// `internal` is PHI. Whether `data_traits` is empty or absent, a qualified subscriber
/// gets it whole, an external service that handles PHI gets it redacted, and neither a
/// plain plugin nor an external service without `handles_phi` gets anything. The audit
/// entry says what the event was decided as.
#[tokio::test]
async fn untagged_events_from_a_phi_publisher_are_decided_as_phi() {
    let app = TestApp::dev();
    let [ehr, chart, mailer] = phi_plugins(&app).await;
    let plain = register(&app, &plain_manifest("plain", &["patient.*"])).await;
    let mut webhook = plain_manifest("webhook", &["patient.*"]);
    webhook["traits"] = json!(["external_service"]);
    webhook["allowed_domains"] = json!(["hooks.example.com"]);
    let webhook = register(&app, &webhook).await;

    let payload = json!({"phi": {"name": "Jane Roe"}, "patient": "MRN-778812", "visit": 3});
    for (n, body) in [
        json!({"event_type": "patient.updated", "data_traits": [], "payload": payload}),
        json!({"event_type": "patient.updated", "payload": payload}),
    ]
    .into_iter()
    .enumerate()
    {
        let resp = app.post_json("/events", Some(&ehr), &body).await;
        assert_eq!(resp.status, StatusCode::ACCEPTED, "{}", resp.text());
        let receipt = resp.json();
        assert_eq!(
            (
                &receipt["delivered"],
                &receipt["sanitized"],
                &receipt["denied"]
            ),
            (&json!(1), &json!(1), &json!(2)),
            "event {n}: {receipt}"
        );
    }

    let got = pull(&app, "chart", &chart, "").await;
    assert_eq!(got["events"].as_array().map(Vec::len), Some(2));
    assert_eq!(got["events"][1]["payload"]["phi"]["name"], "Jane Roe");
    let resp = app.get("/plugins/mailer/events", Some(&mailer)).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(
        !resp.text().contains("Jane Roe") && !resp.text().contains("MRN-778812"),
        "{}",
        resp.text()
    );
    assert_eq!(resp.json()["events"][1]["payload"], json!({"visit": 3}));
    for (id, token) in [("plain", &plain), ("webhook", &webhook)] {
        let got = pull(&app, id, token, "").await;
        assert_eq!(got["events"], json!([]), "{id} gets nothing");
    }

    let published = published_entries(&app).await;
    assert_eq!(published.len(), 2);
    for e in published {
        let d = &e.entry.details;
        assert_eq!(
            d["untagged"],
            json!({"treated_as": "publisher_classification", "data_traits": ["phi", "internal"]}),
            "{d}"
        );
        let webhook = d["deliveries"]
            .as_array()
            .and_then(|a| a.iter().find(|o| o["plugin"] == "webhook"))
            .expect("the webhook's decision");
        assert_eq!(webhook["rule"], "phi.qualified-target", "{d}");
    }
}

/// A policy file with `"untagged": "deny"`: an untagged event is refused at
/// publication (403, rule `core.untagged`), a tagged one still flows.
#[tokio::test]
async fn a_policy_that_denies_untagged_events_refuses_them_at_publication() {
    let file = vivified_domain::policy::DEFAULT_POLICY_JSON.replacen(
        "\"version\": 1,",
        "\"version\": 1, \"untagged\": \"deny\",",
        1,
    );
    let policy = vivified_domain::policy::Policy::from_json_str(&file).expect("the policy");
    let app = TestApp::builder().policy(policy).build();
    let ehr = register(&app, &phi_manifest("ehr", &[], &[])).await;
    let chart = register(&app, &phi_manifest("chart", &[], &["patient.*"])).await;
    let resp = app
        .post_json(
            "/events",
            Some(&ehr),
            &json!({"event_type": "patient.updated", "payload": {"visit": 1}}),
        )
        .await;
    assert_error(&resp, StatusCode::FORBIDDEN, "policy_denied");
    assert_eq!(resp.json()["rule"], "core.untagged", "{}", resp.text());
    assert_eq!(resp.json()["reason"], "untagged_data_denied");
    let resp = app
        .post_json(
            "/events",
            Some(&ehr),
            &json!({"event_type": "patient.updated", "data_traits": ["phi"], "payload": {"visit": 2}}),
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED, "{}", resp.text());
    let got = pull(&app, "chart", &chart, "").await;
    assert_eq!(got["events"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn publishers_cannot_spoof_the_source_or_exceed_their_classification() {
    let app = TestApp::dev();
    let a = register(&app, &plain_manifest("pub-a", &[])).await;
    register(&app, &plain_manifest("pub-b", &["x.*"])).await;
    let resp = app
        .post_json(
            "/events",
            Some(&a),
            &json!({"event_type": "x.y", "source_plugin": "pub-b", "payload": {}}),
        )
        .await;
    assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(resp.json()["reason"], "source_plugin_mismatch");
    let resp = app
        .post_json(
            "/events",
            Some(&a),
            &json!({"event_type": "x.y", "source_plugin": "pub-a", "payload": {}}),
        )
        .await;
    assert_eq!(
        resp.status,
        StatusCode::ACCEPTED,
        "naming itself is fine: {}",
        resp.text()
    );

    let resp = app
        .post_json(
            "/events",
            Some(&a),
            &json!({"event_type": "x.y", "data_traits": ["phi"], "payload": {"phi": 1}}),
        )
        .await;
    assert_error(&resp, StatusCode::FORBIDDEN, "policy_denied");
    assert_eq!(
        resp.json()["reason"],
        "data_trait_outside_source_classification"
    );
    assert!(resp.json()["rule"].is_string());
}

#[tokio::test]
async fn who_may_publish_and_pull() {
    let app = TestApp::dev();
    let a = register(&app, &plain_manifest("who-a", &["x.*"])).await;
    let b = register(&app, &plain_manifest("who-b", &["x.*"])).await;
    let body = json!({"event_type": "x.y", "payload": {}});
    assert_error(
        &app.post_json("/events", None, &body).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_error(
        &app.post_json("/events", Some(ADMIN_TOKEN), &body).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &app.get("/plugins/who-a/events", Some(&b)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &app.get("/plugins/who-a/events", None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    app.disable("who-a", "maintenance").await;
    assert_error(
        &app.post_json("/events", Some(&a), &body).await,
        StatusCode::FORBIDDEN,
        "plugin_disabled",
    );
    assert_error(
        &app.get("/plugins/who-a/events", Some(&a)).await,
        StatusCode::FORBIDDEN,
        "plugin_disabled",
    );
    // 401/403 come before 400.
    assert_error(
        &app.post_json("/events", Some(&a), &json!({"event_type": "Bad"}))
            .await,
        StatusCode::FORBIDDEN,
        "plugin_disabled",
    );
    // A disabled plugin receives nothing.
    let resp = app.post_json("/events", Some(&b), &body).await;
    assert_eq!(resp.json()["denied"], 1, "{}", resp.text());
}

#[tokio::test]
async fn malformed_events_are_refused_naming_the_field() {
    let app = TestApp::dev();
    let a = register(&app, &plain_manifest("bad-a", &[])).await;
    for (body, needle) in [
        (json!({"event_type": "Bad Type"}), "event_type"),
        (json!({"event_type": "a..b"}), "event_type"),
        (json!({"payload": {}}), "event_type"),
        (json!({"event_type": "a.b", "payload": [1]}), "payload"),
        (json!({"event_type": "a.b", "surprise": 1}), "surprise"),
        (
            json!({"event_type": "a.b", "data_traits": "phi"}),
            "data_traits",
        ),
        (
            json!({"event_type": "a.b", "metadata": {"k": 1}}),
            "metadata",
        ),
        (
            json!({"event_type": "a.b", "metadata": {"k": "v".repeat(300)}}),
            "metadata",
        ),
        (
            json!({"event_type": "a.b", "metadata": {"k": "𝕿".repeat(257)}}),
            "metadata",
        ),
        (
            json!({"event_type": "a.b", "data_traits": ["𝕿".repeat(65)]}),
            "data_traits",
        ),
    ] {
        let resp = app.post_json("/events", Some(&a), &body).await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
        assert!(resp.text().contains(needle), "{needle}: {}", resp.text());
    }
    // Limits are characters, not bytes: 256 four-byte characters are a fine value.
    let resp = app
        .post_json(
            "/events",
            Some(&a),
            &json!({"event_type": "a.b", "metadata": {"𝕿".repeat(256): "𝕿".repeat(256)}}),
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED, "{}", resp.text());
}

#[tokio::test]
async fn cursors_acknowledge_and_unacknowledged_events_come_again() {
    let app = TestApp::dev();
    let src = register(&app, &plain_manifest("cur-src", &[])).await;
    let dst = register(&app, &plain_manifest("cur-dst", &["c.*"])).await;
    for n in 1..=3 {
        let resp = app
            .post_json(
                "/events",
                Some(&src),
                &json!({"event_type": "c.n", "payload": {"n": n}}),
            )
            .await;
        assert_eq!(resp.status, StatusCode::ACCEPTED, "{}", resp.text());
    }
    let first = pull(&app, "cur-dst", &dst, "?limit=2").await;
    assert_eq!(event_ids(&first), ["1", "2"]);
    let again = pull(&app, "cur-dst", &dst, "?limit=2").await;
    assert_eq!(
        event_ids(&again),
        ["1", "2"],
        "not acknowledged: delivered again"
    );
    let c2 = first["next_cursor"].as_str().expect("cursor").to_owned();
    let rest = pull(&app, "cur-dst", &dst, &format!("?after={c2}")).await;
    assert_eq!(event_ids(&rest), ["3"]);
    assert_eq!(rest["dropped"], 0);
    let c3 = rest["next_cursor"].as_str().expect("cursor").to_owned();
    let empty = pull(&app, "cur-dst", &dst, &format!("?after={c3}")).await;
    assert_eq!(event_ids(&empty), Vec::<String>::new());

    for q in [
        "?after=",
        "?limit=0",
        "?limit=100000",
        "?wait=soon",
        "?other=1",
    ] {
        assert_error(
            &app.get(&format!("/plugins/cur-dst/events{q}"), Some(&dst))
                .await,
            StatusCode::BAD_REQUEST,
            "invalid_body",
        );
    }
    assert_error(
        &app.get("/plugins/cur-dst/events?after=not-a-cursor", Some(&dst))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_body",
    );
}

#[tokio::test]
async fn a_long_poll_wakes_when_an_event_arrives() {
    let app = std::sync::Arc::new(TestApp::dev());
    let src = register(&app, &plain_manifest("lp-src", &[])).await;
    let dst = register(&app, &plain_manifest("lp-dst", &["lp.*"])).await;
    let started = std::time::Instant::now();
    let waiter = {
        let app = std::sync::Arc::clone(&app);
        tokio::spawn(async move { pull(&app, "lp-dst", &dst, "?wait=20s").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resp = app
        .post_json(
            "/events",
            Some(&src),
            &json!({"event_type": "lp.ping", "payload": {"n": 7}}),
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    let got = waiter.await.expect("pull task");
    assert_eq!(event_ids(&got), ["7"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken by the event, not by the wait"
    );
}

#[tokio::test]
async fn a_deregistered_subscribers_queue_is_gone_and_a_new_holder_of_the_id_gets_none_of_it() {
    let app = TestApp::dev();
    let src = register(&app, &plain_manifest("dr-src", &[])).await;
    let dst = register(&app, &plain_manifest("dr-dst", &["d.*"])).await;
    let resp = app
        .post_json(
            "/events",
            Some(&src),
            &json!({"event_type": "d.x", "payload": {"n": 1}}),
        )
        .await;
    assert_eq!(resp.json()["delivered"], 1);
    let resp = app.delete("/plugins/dr-dst", Some(&dst)).await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    let dst = register(&app, &plain_manifest("dr-dst", &["d.*"])).await;
    let got = pull(&app, "dr-dst", &dst, "").await;
    assert_eq!(event_ids(&got), Vec::<String>::new());
}
