//! Liveness through the HTTP API: deadlines, sweeps, stale and recovered plugins,
//! deregistration after `deregister_after`, self-preservation in `/ready`, and the
//! lifecycle events of each transition.

use axum::http::StatusCode;
use serde_json::json;
use time::Duration;

use crate::helpers::{ADMIN_TOKEN, TestApp, assert_error, rfc3339_utc};

fn app(deregister_after: Option<&str>) -> TestApp {
    let mut b = TestApp::builder()
        .env("VIVIFIED_HEARTBEAT_INTERVAL", "10s")
        .env("VIVIFIED_HEARTBEAT_TTL", "30s");
    if let Some(after) = deregister_after {
        b = b.env("VIVIFIED_DEREGISTER_AFTER", after);
    }
    b.build()
}

fn events(
    _app: &TestApp,
    rx: &mut tokio::sync::broadcast::Receiver<vivified_ports::BusEvent>,
) -> Vec<String> {
    crate::helpers::drain_lifecycle(rx)
}

#[tokio::test]
async fn a_silent_plugin_goes_stale_after_the_ttl_and_a_heartbeat_recovers_it() {
    let app = app(None);
    let mut rx = app.bus.subscribe();
    let token = app.register_ok("quiet").await;
    let record = app.record("quiet").await;
    assert_eq!(record["liveness"], "registered");
    let registered_at = rfc3339_utc(&record["registered_at"]);
    assert_eq!(
        rfc3339_utc(&record["next_deadline"]),
        registered_at + Duration::seconds(30),
        "the deadline is the ttl after the last sign of life"
    );

    app.clock.advance(Duration::seconds(29));
    let report = app.registry.sweep().await.unwrap();
    assert_eq!(report.stale, 0, "not yet: {report:?}");
    assert_eq!(app.record("quiet").await["liveness"], "registered");

    app.clock.advance(Duration::seconds(2));
    let report = app.registry.sweep().await.unwrap();
    assert_eq!(report.stale, 1, "{report:?}");
    let record = app.record("quiet").await;
    assert_eq!(record["liveness"], "stale");
    assert_eq!(record["status"], "stale");
    assert!(
        record["next_deadline"].is_null(),
        "no deregistration configured: {record}"
    );

    let resp = app
        .heartbeat("quiet", Some(&token), Some(&json!({"health": "degraded"})))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let record = app.record("quiet").await;
    assert_eq!(record["liveness"], "active");
    assert_eq!(
        record["health"], "degraded",
        "health and liveness are separate"
    );
    assert_eq!(
        events(&app, &mut rx),
        ["plugin.registered", "plugin.stale", "plugin.recovered"]
    );
}

#[tokio::test]
async fn heartbeats_keep_a_plugin_active_across_sweeps() {
    let app = app(Some("2m"));
    let token = app.register_ok("steady").await;
    for _ in 0..10 {
        app.clock.advance(Duration::seconds(10));
        let resp = app.heartbeat("steady", Some(&token), None).await;
        assert_eq!(resp.status, StatusCode::OK);
        let report = app.registry.sweep().await.unwrap();
        assert_eq!((report.stale, report.deregistered), (0, 0));
    }
    assert_eq!(app.record("steady").await["liveness"], "active");
}

#[tokio::test]
async fn after_deregister_after_the_plugin_is_gone_its_token_dead_and_its_id_free() {
    let app = app(Some("2m"));
    let mut rx = app.bus.subscribe();
    let token = app.register_ok("gone").await;
    app.clock.advance(Duration::seconds(31));
    app.registry.sweep().await.unwrap();
    let record = app.record("gone").await;
    assert_eq!(record["liveness"], "stale");
    assert_eq!(
        rfc3339_utc(&record["next_deadline"]),
        rfc3339_utc(&record["registered_at"]) + Duration::seconds(120),
        "a stale plugin is deregistered deregister_after its last sign of life"
    );
    app.clock.advance(Duration::seconds(90));
    let report = app.registry.sweep().await.unwrap();
    assert_eq!(report.deregistered, 1, "{report:?}");

    let resp = app.get("/plugins/gone", Some(ADMIN_TOKEN)).await;
    assert_error(&resp, StatusCode::NOT_FOUND, "not_found");
    let resp = app.heartbeat("gone", Some(&token), None).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.register(&crate::helpers::manifest("gone"), None).await;
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "the id is free: {}",
        resp.text()
    );
    assert_eq!(
        events(&app, &mut rx),
        [
            "plugin.registered",
            "plugin.stale",
            "plugin.deregistered",
            "plugin.registered"
        ]
    );
}

#[tokio::test]
async fn many_plugins_going_silent_at_once_trigger_self_preservation() {
    let app = app(Some("2m"));
    let mut tokens = Vec::new();
    for i in 0..10 {
        tokens.push(app.register_ok(&format!("herd-{i}")).await);
    }
    let ready = app.get("/ready", None).await;
    assert_eq!(ready.json()["self_preservation"], false);

    // All ten stop at once (say, a network partition): none is expired.
    app.clock.advance(Duration::seconds(100));
    let report = app.registry.sweep().await.unwrap();
    assert!(report.self_preservation, "{report:?}");
    assert_eq!((report.stale, report.deregistered), (0, 0));
    let ready = app.get("/ready", None).await;
    assert_eq!(ready.status, StatusCode::OK, "/ready stays 200");
    assert_eq!(ready.json()["self_preservation"], true);
    for i in 0..10 {
        assert_eq!(
            app.record(&format!("herd-{i}")).await["liveness"],
            "registered"
        );
    }

    // Eight come back; the two still silent are now a minority and expire.
    for (i, token) in tokens.iter().enumerate().take(8) {
        let resp = app.heartbeat(&format!("herd-{i}"), Some(token), None).await;
        assert_eq!(resp.status, StatusCode::OK);
    }
    let report = app.registry.sweep().await.unwrap();
    assert!(!report.self_preservation, "{report:?}");
    assert_eq!(report.stale, 2, "{report:?}");
    assert_eq!(
        app.get("/ready", None).await.json()["self_preservation"],
        false
    );
    assert_eq!(app.record("herd-9").await["liveness"], "stale");
    assert_eq!(app.record("herd-0").await["liveness"], "active");
}

#[tokio::test]
async fn a_quiet_sweep_counts_nothing() {
    let app = app(None);
    for i in 0..5 {
        app.register_ok(&format!("calm-{i}")).await;
    }
    let report = app.registry.sweep().await.unwrap();
    assert_eq!(
        report,
        vivified_domain::SweepReport::default(),
        "nothing due, nothing counted"
    );
}

#[tokio::test]
async fn disabled_plugins_are_left_alone_by_the_sweeper_and_start_afresh_when_enabled() {
    let app = app(Some("2m"));
    let token = app.register_ok("paused").await;
    app.disable("paused", "maintenance").await;
    assert!(app.record("paused").await["next_deadline"].is_null());
    app.clock.advance(Duration::seconds(600));
    let report = app.registry.sweep().await.unwrap();
    assert_eq!((report.stale, report.deregistered), (0, 0), "{report:?}");
    let resp = app
        .post_json("/plugins/paused/enable", Some(ADMIN_TOKEN), &json!({}))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let record = resp.json();
    assert_eq!(record["enabled"], true);
    assert_eq!(record["liveness"], "registered");
    let now = vivified_ports::Clock::now(&*app.clock);
    assert_eq!(
        rfc3339_utc(&record["next_deadline"]),
        now + Duration::seconds(30)
    );
    let resp = app.heartbeat("paused", Some(&token), None).await;
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "the token survived the disable"
    );
}

#[tokio::test]
async fn a_partition_is_recognised_although_the_deadlines_are_spread_over_an_interval() {
    // Ten plugins heartbeat at different moments of one 10 s interval, then all are
    // cut off together. Sweeping every second, the first deadline passes while the
    // others are still ahead: self-preservation must see the whole silent herd.
    let app = app(Some("2m"));
    let mut tokens = Vec::new();
    for i in 0..10 {
        tokens.push(app.register_ok(&format!("spread-{i}")).await);
    }
    for (i, token) in tokens.iter().enumerate() {
        app.clock.advance(Duration::seconds(1));
        let resp = app
            .heartbeat(&format!("spread-{i}"), Some(token), None)
            .await;
        assert_eq!(resp.status, StatusCode::OK);
    }
    let mut preserved = false;
    for _ in 0..60 {
        app.clock.advance(Duration::seconds(1));
        let report = app.registry.sweep().await.unwrap();
        assert_eq!((report.stale, report.deregistered), (0, 0), "{report:?}");
        preserved |= report.self_preservation;
    }
    assert!(
        preserved,
        "the herd went silent: self-preservation must have started"
    );
    assert_eq!(
        app.get("/ready", None).await.json()["self_preservation"],
        true
    );
}
