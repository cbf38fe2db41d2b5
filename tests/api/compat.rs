//! Plugins written for the original Python core: the `/messaging/events` alias,
//! case-sensitive event names in any case, "did you mean" for unknown enum values,
//! validation before conflict, and dev-mode replacement of a stale registration.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::{Value, json};
use time::Duration;
use vivified_adapters::memory::InMemoryPluginStore;
use vivified_ports::PluginStore;

use crate::helpers::{
    ADMIN_TOKEN, TestApp, assert_error, drain_lifecycle as lifecycle, manifest,
    register_token as register, sealed_entries, subscriber,
};

async fn pulled_types(app: &TestApp, id: &str, token: &str) -> Vec<String> {
    let resp = app.get(&format!("/plugins/{id}/events"), Some(token)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    resp.json()["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event_type"].as_str().expect("a type").to_owned())
        .collect()
}

/// The seed's publish body: `{event_type, payload, source_plugin, data_traits}`.
fn seed_event(event_type: &str, source: &str) -> Value {
    json!({
        "event_type": event_type,
        "payload": {"channel": "email", "status": "sent"},
        "source_plugin": source,
        "data_traits": ["internal"]
    })
}

#[tokio::test]
async fn the_python_cores_publish_path_and_camel_case_names_are_accepted() {
    let app = TestApp::dev();
    let notifier = register(&app, &manifest("notifier")).await;
    let inbox = register(&app, &subscriber("inbox", &["NotificationSent"])).await;
    let lower = register(&app, &subscriber("lower", &["notificationsent"])).await;
    let wild = register(&app, &subscriber("wild", &["*"])).await;

    let resp = app
        .post_json(
            "/messaging/events",
            Some(&notifier),
            &seed_event("NotificationSent", "notifier"),
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED, "{}", resp.text());
    let receipt = resp.json();
    assert_eq!(receipt["delivered"], 2, "inbox and wild: {receipt}");
    assert_eq!(
        receipt["trace_id"].as_str(),
        resp.header("x-request-id").as_deref()
    );

    assert_eq!(
        pulled_types(&app, "inbox", &inbox).await,
        ["NotificationSent"]
    );
    assert_eq!(
        pulled_types(&app, "wild", &wild).await,
        ["NotificationSent"]
    );
    assert!(
        pulled_types(&app, "lower", &lower).await.is_empty(),
        "names are compared case-sensitively"
    );

    // The alias is audited as a publication like any other.
    let published = sealed_entries(&app, "event.publish").await;
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].entry.target, "NotificationSent");
}

/// Whatever `/events` answers, `/messaging/events` answers: the same status and error
/// code for every credential and body.
#[tokio::test]
async fn the_alias_refuses_exactly_what_events_refuses() {
    let app = TestApp::dev();
    let token = register(&app, &manifest("pub")).await;
    let other = register(&app, &manifest("other")).await;
    let long = "A".repeat(256);
    let bodies = [
        seed_event("NotificationSent", "pub"),
        seed_event("", "pub"),
        seed_event(".Notification", "pub"),
        seed_event("Notification.", "pub"),
        seed_event("Notification..Sent", "pub"),
        seed_event("Notification Sent", "pub"),
        seed_event("NotificationEnvoyée", "pub"),
        seed_event("Notification.*", "pub"),
        seed_event(&long, "pub"),
        seed_event("NotificationSent", "other"),
        json!({"payload": {}}),
        json!({"event_type": 7}),
        json!({"event_type": "a", "payload": []}),
        json!({"event_type": "a", "unknown": 1}),
        json!([1, 2]),
    ];
    for bearer in [
        Some(token.as_str()),
        Some(other.as_str()),
        Some(ADMIN_TOKEN),
        None,
    ] {
        for body in &bodies {
            let a = app.post_json("/events", bearer, body).await;
            let b = app.post_json("/messaging/events", bearer, body).await;
            assert_eq!(a.status, b.status, "{body}: {} vs {}", a.text(), b.text());
            if a.status != StatusCode::ACCEPTED {
                assert_eq!(a.json()["error"], b.json()["error"], "{body}");
                assert_eq!(a.json()["detail"], b.json()["detail"], "{body}");
            }
        }
    }
}

#[tokio::test]
async fn malformed_event_names_are_400_naming_the_field() {
    let app = TestApp::dev();
    let token = register(&app, &manifest("pub")).await;
    let long = format!("{}.b", "A".repeat(254));
    for name in [
        "",
        ".",
        ".Sent",
        "Sent.",
        "Notification..Sent",
        "Notification Sent",
        " NotificationSent",
        "Notificación",
        "Notification\u{0}",
        "Notification.*",
        "Notification.>",
        long.as_str(),
    ] {
        for path in ["/events", "/messaging/events"] {
            let resp = app
                .post_json(path, Some(&token), &seed_event(name, "pub"))
                .await;
            assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
            let detail = resp.json()["detail"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(detail.contains("`event_type`"), "{name:?}: {detail}");
        }
    }
    // 255 characters is the longest name.
    let longest = format!("{}.b", "A".repeat(253));
    let resp = app
        .post_json("/events", Some(&token), &seed_event(&longest, "pub"))
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED, "{}", resp.text());
}

#[tokio::test]
async fn upper_case_subscriptions_register_and_bad_ones_are_violations() {
    let app = TestApp::dev();
    register(
        &app,
        &subscriber("ok", &["UserCreated", "Billing.*", "*.Sent"]),
    )
    .await;
    let resp = app
        .register(&subscriber("bad", &["User Created", "Billing..x"]), None)
        .await;
    assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_manifest");
    let paths: BTreeSet<String> = resp.json()["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .map(|v| v["path"].as_str().expect("path").to_owned())
        .collect();
    assert_eq!(
        paths,
        BTreeSet::from(["/subscriptions/0".to_owned(), "/subscriptions/1".to_owned()])
    );
}

/// The seed's encryption trait is `requires_encryption`; a plugin that spells it
/// `encryption_required` is told which name was meant, and still refused.
#[tokio::test]
async fn an_unknown_enum_value_is_refused_with_the_nearest_valid_one() {
    let app = TestApp::dev();
    let mut m = json!({
        "id": "records",
        "name": "Records",
        "version": "1.0.0",
        "contracts": ["StoragePlugins"],
        "traits": ["handles_phi", "encryption_required", "audit_required"],
        "security": {"authentication_required": true, "data_classification": ["PHI", "internal"]},
        "compliance": {"hipaa_controls": ["164.312(b)"], "audit_level": "completed"}
    });
    let resp = app.register(&m, None).await;
    assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_manifest");
    let violations = resp.json()["violations"].clone();
    let message = |path: &str| -> String {
        violations
            .as_array()
            .expect("violations")
            .iter()
            .find(|v| v["path"] == path && v["code"] == "enum")
            .unwrap_or_else(|| panic!("an enum violation at {path}: {violations}"))["message"]
            .as_str()
            .expect("message")
            .to_owned()
    };
    for (path, meant) in [
        ("/traits/1", "requires_encryption"),
        ("/contracts/0", "StoragePlugin"),
        ("/security/data_classification/0", "phi"),
        ("/compliance/audit_level", "complete"),
    ] {
        let got = message(path);
        assert!(
            got.contains(&format!("did you mean `{meant}`?")),
            "{path}: {got}"
        );
    }
    // The rule the misspelling broke is named too.
    assert!(
        violations
            .as_array()
            .expect("violations")
            .iter()
            .any(|v| v["code"] == "phi_requires_encryption"),
        "{violations}"
    );
    // No suggestion when nothing is close, and none ever echoes the value sent.
    m["traits"] = json!(["telepathy"]);
    let resp = app.register(&m, None).await;
    let text = resp.text();
    assert!(!text.contains("telepathy"), "{text}");
    let traits = resp.json()["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .find(|v| v["path"] == "/traits/0")
        .cloned()
        .expect("a violation for the trait");
    assert!(
        !traits["message"]
            .as_str()
            .unwrap_or_default()
            .contains("did you mean"),
        "{traits}"
    );
}

/// 400 with every violation, whatever the id; 409 only for a valid manifest whose id
/// is taken; a revoked token of the plugin itself is still 401 first.
#[tokio::test]
async fn validation_comes_before_conflict() {
    let app = TestApp::dev();
    let holder = app.register_ok("holder").await;
    let other = app.register_ok("other").await;
    let mut invalid = manifest("holder");
    invalid["version"] = json!("1.0");
    invalid["traits"] = json!(["encryption_required"]);
    for bearer in [None, Some(other.as_str()), Some(ADMIN_TOKEN)] {
        let resp = app.register(&invalid, bearer).await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_manifest");
        assert_eq!(
            resp.json()["violations"].as_array().map(Vec::len),
            Some(2),
            "{}",
            resp.text()
        );
        let resp = app.register(&manifest("holder"), bearer).await;
        assert_error(&resp, StatusCode::CONFLICT, "already_registered");
    }
    // Refreshing revokes `holder`'s first token: it gets 401 before its manifest is read.
    let resp = app.refresh("holder", Some(&holder)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let resp = app.register(&invalid, Some(&holder)).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    // Production: the same order for a held id.
    let app = TestApp::production();
    let secret = crate::helpers::REGISTRATION_SECRET;
    let resp = app.register(&manifest("held"), Some(secret)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    for bearer in [None, Some(secret)] {
        let resp = app.register(&invalid_for("held"), bearer).await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_manifest");
        let resp = app.register(&manifest("held"), bearer).await;
        assert_error(&resp, StatusCode::CONFLICT, "already_registered");
    }
}

fn invalid_for(id: &str) -> Value {
    let mut m = manifest(id);
    m["version"] = json!("1.0");
    m
}

fn dev_app() -> TestApp {
    TestApp::builder()
        .env("VIVIFIED_HEARTBEAT_INTERVAL", "10s")
        .env("VIVIFIED_HEARTBEAT_TTL", "30s")
        .build()
}

/// Every plugin route an old token could try, with the status each must now get.
async fn assert_revoked(app: &TestApp, id: &str, token: &str) {
    let checks = [
        app.heartbeat(id, Some(token), None).await,
        app.refresh(id, Some(token)).await,
        app.get(&format!("/plugins/{id}"), Some(token)).await,
        app.get(&format!("/plugins/{id}/events"), Some(token)).await,
        app.post_json("/events", Some(token), &seed_event("a.b", id))
            .await,
        app.post_json("/messaging/events", Some(token), &seed_event("a.b", id))
            .await,
        app.delete(&format!("/plugins/{id}"), Some(token)).await,
        app.register(&manifest(id), Some(token)).await,
    ];
    for resp in &checks {
        assert_error(resp, StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

#[tokio::test]
async fn dev_mode_replaces_a_stale_registration_without_its_token() {
    let app = dev_app();
    let mut rx = app.bus.subscribe();
    let old = app.register_ok("restarts").await;
    let first = app.stored("restarts").await;
    lifecycle(&mut rx);

    // Live: the seed's duplicate rule, 409, and nothing changes.
    app.clock.advance(Duration::seconds(29));
    let resp = app.register(&manifest("restarts"), None).await;
    assert_error(&resp, StatusCode::CONFLICT, "already_registered");
    assert_eq!(app.stored("restarts").await, first);

    // Past the TTL (no sweep has run yet): replaced.
    app.clock.advance(Duration::seconds(2));
    let mut next = manifest("restarts");
    next["version"] = json!("2.0.0");
    let resp = app.register(&next, None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let new = resp.token();
    assert_ne!(new, old);
    let record = app.stored("restarts").await;
    assert_ne!(record.instances[0].token_jti, first.instances[0].token_jti);
    assert!(record.registered_at > first.registered_at);
    assert_eq!(record.status, vivified_ports::Liveness::Registered);
    assert_eq!(app.record("restarts").await["manifest"]["version"], "2.0.0");
    assert_eq!(lifecycle(&mut rx), ["plugin.replaced"]);

    assert_revoked(&app, "restarts", &old).await;
    let resp = app.heartbeat("restarts", Some(&new), None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());

    // The audit trail has the replacement with both registration times.
    let replaced = sealed_entries(&app, "plugin.replaced").await;
    assert_eq!(replaced.len(), 1, "{replaced:?}");
    let e = &replaced[0].entry;
    assert_eq!(
        (e.actor.as_str(), e.target.as_str()),
        ("plugin:restarts", "restarts")
    );
    assert_eq!(e.reason, "stale_registration_replaced");
    assert_eq!(
        e.details["previous_registered_at"],
        first.registered_at.unix_timestamp()
    );
    assert_eq!(
        e.details["registered_at"],
        record.registered_at.unix_timestamp()
    );

    // A live plugin again: 409.
    let resp = app.register(&manifest("restarts"), None).await;
    assert_error(&resp, StatusCode::CONFLICT, "already_registered");
}

#[tokio::test]
async fn a_swept_stale_plugin_is_replaced_and_a_disabled_one_is_not() {
    let app = dev_app();
    app.register_ok("swept").await;
    app.register_ok("held-off").await;
    app.disable("held-off", "under review").await;
    app.clock.advance(Duration::seconds(31));
    let report = app.registry.sweep().await.expect("sweep");
    assert_eq!(report.stale, 1, "{report:?}");
    let resp = app.register(&manifest("swept"), None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(app.record("swept").await["liveness"], "registered");
    // An operator's disable stands: the id stays held.
    let resp = app.register(&manifest("held-off"), None).await;
    assert_error(&resp, StatusCode::CONFLICT, "already_registered");
    assert_eq!(app.record("held-off").await["enabled"], false);
}

#[tokio::test]
async fn replacement_is_off_when_turned_off_and_in_production() {
    let off = TestApp::builder()
        .env("VIVIFIED_HEARTBEAT_INTERVAL", "10s")
        .env("VIVIFIED_DEV_REPLACE_STALE", "false")
        .build();
    let prod = TestApp::builder()
        .production()
        .env("VIVIFIED_HEARTBEAT_INTERVAL", "10s")
        .build();
    let secret = crate::helpers::REGISTRATION_SECRET;
    for (app, credential) in [(&off, None), (&prod, Some(secret))] {
        let resp = app.register(&manifest("p"), credential).await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
        app.clock.advance(Duration::minutes(5));
        app.registry.sweep().await.expect("sweep");
        assert_eq!(app.record("p").await["liveness"], "stale");
        for bearer in [None, credential] {
            let resp = app.register(&manifest("p"), bearer).await;
            assert_error(&resp, StatusCode::CONFLICT, "already_registered");
        }
    }
}

/// Two replicas on one store: a replacement made through one revokes the old token on
/// the other at once.
#[tokio::test]
async fn a_replaced_token_is_refused_by_every_replica() {
    let store: std::sync::Arc<dyn PluginStore> = std::sync::Arc::new(InMemoryPluginStore::new());
    let a = TestApp::builder()
        .env("VIVIFIED_HEARTBEAT_INTERVAL", "10s")
        .store(store.clone())
        .build();
    let b = TestApp::builder()
        .env("VIVIFIED_HEARTBEAT_INTERVAL", "10s")
        .store(store)
        .build();
    let old = a.register_ok("twin").await;
    // `b` has seen the old token work.
    let resp = b.heartbeat("twin", Some(&old), None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    a.clock.advance(Duration::minutes(1));
    b.clock.advance(Duration::minutes(1));
    let resp = a.register(&manifest("twin"), None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let new = resp.token();
    assert_revoked(&b, "twin", &old).await;
    let resp = b.heartbeat("twin", Some(&new), None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
}

/// A member named twice at any depth is refused on every route that takes a body, so
/// what is validated, stored and audited is what any other parser reads too.
#[tokio::test]
async fn a_member_named_twice_is_400_naming_its_pointer() {
    let app = TestApp::dev();
    let token = app.register_ok("twice").await;
    let cases: [(&str, Option<&str>, String, &str); 6] = [
        (
            "/plugins/register",
            None,
            manifest("other")
                .to_string()
                .replacen("{", r#"{"traits": ["handles_phi"], "#, 1),
            "/traits",
        ),
        (
            "/plugins/register",
            None,
            manifest("other").to_string().replacen(
                r#""data_classification":"#,
                r#""data_classification": ["phi"], "data_classification":"#,
                1,
            ),
            "/security/data_classification",
        ),
        (
            "/events",
            Some(token.as_str()),
            r#"{"event_type": "a.b", "payload": {"x": [{"k": 1, "k": 2}]}}"#.to_owned(),
            "/payload/x/0/k",
        ),
        (
            "/messaging/events",
            Some(token.as_str()),
            r#"{"event_type": "a.b", "data_traits": ["public"], "data_traits": ["phi"]}"#
                .to_owned(),
            "/data_traits",
        ),
        (
            "/plugins/twice/heartbeat",
            Some(token.as_str()),
            r#"{"health": "healthy", "health": "unhealthy"}"#.to_owned(),
            "/health",
        ),
        (
            "/plugins/twice/disable",
            Some(ADMIN_TOKEN),
            r#"{"reason": "a", "reason": "b"}"#.to_owned(),
            "/reason",
        ),
    ];
    for (path, bearer, body, at) in cases {
        let resp = app
            .post_raw(path, bearer, Some("application/json"), body.clone())
            .await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
        let detail = resp.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            detail.contains(&format!("duplicate member `{at}`")),
            "{path} {body}: {detail}"
        );
    }
    // Nothing was registered, published or changed.
    let resp = app.get("/plugins/other", Some(ADMIN_TOKEN)).await;
    assert_error(&resp, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(app.record("twice").await["enabled"], true);
}
