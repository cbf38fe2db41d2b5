//! The runner and the introspector against a scripted fake core (axum, in-process),
//! for answers a real core gives only in rare situations: 403 `plugin_disabled`, 503,
//! 404, slow answers, and the introspection endpoint's caching.

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::{Logs, TestPlugin, fast_config};
use serde_json::{Value, json};
use vivified_plugin_sdk::{
    AuthError, HealthReport, IntrospectError, PluginStatus, PluginTrait, Runner,
};

const WAIT: Duration = Duration::from_secs(10);

/// What the fake core answers, and what it saw.
#[derive(Default)]
struct Script {
    /// Answers to heartbeats, in order; when empty, 200.
    heartbeats: Mutex<VecDeque<(u16, Value)>>,
    /// Delay before answering a registration.
    register_delay: Mutex<Duration>,
    /// Answers to introspection of the caller's token; when empty, by the token.
    introspect_status: Mutex<VecDeque<u16>>,
    /// Heartbeat interval told to the plugin (0: 100 ms).
    interval_ms: AtomicU32,
    registrations: AtomicU32,
    heartbeat_count: AtomicU32,
    introspections: AtomicU32,
    /// Bearers seen on registration (the fake's own tokens only).
    register_bearers: Mutex<Vec<Option<String>>>,
    heartbeat_bodies: Mutex<Vec<Value>>,
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
}

async fn register(State(s): State<Arc<Script>>, headers: HeaderMap) -> Response {
    let delay = *s.register_delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let n = s.registrations.fetch_add(1, Ordering::SeqCst) + 1;
    s.register_bearers.lock().unwrap().push(bearer(&headers));
    let interval = match s.interval_ms.load(Ordering::SeqCst) {
        0 => 100,
        ms => ms,
    };
    Json(json!({
        "status": "registered", "plugin_id": "scripted", "token": format!("fake-token-{n}"),
        "expires_at": "2099-01-01T00:00:00Z", "heartbeat_interval_secs": 1,
        "heartbeat_interval_ms": interval
    }))
    .into_response()
}

async fn heartbeat(State(s): State<Arc<Script>>, Json(body): Json<Value>) -> Response {
    s.heartbeat_count.fetch_add(1, Ordering::SeqCst);
    s.heartbeat_bodies.lock().unwrap().push(body);
    match s.heartbeats.lock().unwrap().pop_front() {
        None => Json(json!({"status": "ok"})).into_response(),
        Some((status, body)) => (StatusCode::from_u16(status).unwrap(), Json(body)).into_response(),
    }
}

async fn introspect(
    State(s): State<Arc<Script>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    s.introspections.fetch_add(1, Ordering::SeqCst);
    if let Some(status) = s.introspect_status.lock().unwrap().pop_front() {
        return (
            StatusCode::from_u16(status).unwrap(),
            Json(json!({"error": "unauthorized", "reason": "revoked_token"})),
        )
            .into_response();
    }
    assert!(
        bearer(&headers).is_some_and(|b| b.starts_with("fake-token-")),
        "the plugin authenticates with its own token"
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let answer = match body["token"].as_str().unwrap_or_default() {
        "caller-pii" => {
            json!({"active": true, "plugin_id": "reader", "traits": ["handles_pii", "audit_required"], "data_classification": ["pii"], "exp": now + 3600})
        }
        "caller-basic" => {
            json!({"active": true, "plugin_id": "basic", "traits": [], "data_classification": ["internal"], "exp": now + 3600})
        }
        "caller-short" => {
            json!({"active": true, "plugin_id": "short", "traits": ["handles_pii"], "data_classification": ["pii"], "exp": now + 1})
        }
        _ => json!({"active": false}),
    };
    Json(answer).into_response()
}

async fn fake_core(script: Arc<Script>) -> String {
    let app = axum::Router::new()
        .route("/plugins/register", post(register))
        .route("/plugins/scripted/heartbeat", post(heartbeat))
        .route("/tokens/introspect", post(introspect))
        .with_state(script);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn disabled() -> (u16, Value) {
    (
        403,
        json!({"error": "plugin_disabled", "detail": "The plugin is disabled."}),
    )
}

#[tokio::test]
async fn a_disabled_plugin_keeps_running_backs_off_and_recovers() {
    let (logs, _guard) = Logs::capture_json();
    let script = Arc::new(Script::default());
    script
        .heartbeats
        .lock()
        .unwrap()
        .extend([disabled(), disabled(), disabled(), disabled()]);
    let url = fake_core(script.clone()).await;
    let runner = Runner::new(TestPlugin::new("scripted"), fast_config(&url)).unwrap();
    let handle = runner.handle();
    let task = tokio::spawn(runner.run_until(std::future::pending()));

    handle
        .wait_for(WAIT, |s| *s == PluginStatus::Disabled)
        .await
        .expect("disabled is reported");
    handle
        .wait_for(WAIT, PluginStatus::is_registered)
        .await
        .expect("registered again once heartbeats are accepted");
    assert_eq!(
        script.registrations.load(Ordering::SeqCst),
        1,
        "no re-registration"
    );
    let lines =
        logs.with_message("the plugin is disabled by an operator; heartbeating with backoff");
    assert_eq!(lines.len(), 4, "one line per backoff step: {}", logs.text());
    let delays: Vec<u64> = lines
        .iter()
        .map(|l| l["fields"]["retry_in_ms"].as_u64().unwrap())
        .collect();
    // Equal jitter: step n waits between half and all of min(40ms * 2^n, 300ms).
    for (n, d) in delays.iter().enumerate() {
        let cap = (40u64 << n).min(300);
        assert!(
            *d >= cap / 2 && *d <= cap,
            "step {n}: {d} ms not in [{}, {cap}]",
            cap / 2
        );
    }
    assert_eq!(logs.with_message("heartbeats accepted").len(), 1);
    handle.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_unavailable_core_is_retried_and_404_re_registers_with_the_token() {
    let (logs, _guard) = Logs::capture_json();
    let script = Arc::new(Script::default());
    script.heartbeats.lock().unwrap().extend([
        (503, json!({"error": "unavailable"})),
        (503, json!({"error": "unavailable"})),
        (404, json!({"error": "not_found"})),
    ]);
    let url = fake_core(script.clone()).await;
    let runner = Runner::new(TestPlugin::new("scripted"), fast_config(&url)).unwrap();
    let handle = runner.handle();
    let mut statuses = handle.subscribe();
    let task = tokio::spawn(runner.run_until(std::future::pending()));
    statuses
        .wait_for(|s| matches!(s, PluginStatus::CoreUnavailable { failures: 2 }))
        .await
        .unwrap();
    // 404 → register again, with the token it holds.
    tokio::time::timeout(WAIT, async {
        while script.registrations.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("re-registered after the 404");
    handle
        .wait_for(WAIT, PluginStatus::is_registered)
        .await
        .unwrap();
    let bearers = script.register_bearers.lock().unwrap().clone();
    assert_eq!(bearers, [None, Some("fake-token-1".to_owned())]);
    assert_eq!(
        logs.with_message("heartbeat failed; core unavailable, retrying")
            .len(),
        2
    );
    handle.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn every_request_has_a_timeout() {
    let (logs, _guard) = Logs::capture_json();
    let script = Arc::new(Script::default());
    *script.register_delay.lock().unwrap() = Duration::from_secs(30);
    let url = fake_core(script.clone()).await;
    let mut config = fast_config(&url);
    config.request_timeout = Duration::from_millis(150);
    let runner = Runner::new(TestPlugin::new("scripted"), config).unwrap();
    let handle = runner.handle();
    let task = tokio::spawn(runner.run_until(std::future::pending()));
    handle
        .wait_for(
            WAIT,
            |s| matches!(s, PluginStatus::Connecting { attempt } if *attempt >= 2),
        )
        .await
        .expect("a hanging core counts as a failed attempt");
    let line = &logs.with_message("core not reachable; retrying registration")[0];
    assert!(
        line["fields"]["error"]
            .as_str()
            .unwrap()
            .contains("did not answer within 150ms"),
        "{line}"
    );
    *script.register_delay.lock().unwrap() = Duration::ZERO;
    handle
        .wait_for(WAIT, PluginStatus::is_registered)
        .await
        .unwrap();
    handle.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn oversized_health_details_are_dropped_not_sent() {
    let script = Arc::new(Script::default());
    let url = fake_core(script.clone()).await;
    let plugin = TestPlugin::new("scripted");
    *plugin.health.lock().unwrap() = HealthReport::degraded().with_detail("blob", "x".repeat(5000));
    let health = plugin.health.clone();
    let runner = Runner::new(plugin, fast_config(&url)).unwrap();
    let handle = runner.handle();
    let task = tokio::spawn(runner.run_until(std::future::pending()));
    handle
        .wait_for(WAIT, PluginStatus::is_registered)
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        while script.heartbeat_count.load(Ordering::SeqCst) < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    *health.lock().unwrap() = HealthReport::degraded().with_detail("queue_depth", 3);
    tokio::time::timeout(WAIT, async {
        while script.heartbeat_bodies.lock().unwrap().len() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let bodies = script.heartbeat_bodies.lock().unwrap().clone();
    assert_eq!(
        bodies[0],
        json!({"health": "degraded"}),
        "too large: health only"
    );
    assert_eq!(
        bodies.last().unwrap(),
        &json!({"health": "degraded", "details": {"queue_depth": 3}})
    );
    handle.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn introspection_authorizes_by_trait_and_caches() {
    let script = Arc::new(Script::default());
    // A long interval, so that an early heartbeat can only come from the refusal.
    script.interval_ms.store(60_000, Ordering::SeqCst);
    let url = fake_core(script.clone()).await;
    let mut config = fast_config(&url);
    config.introspection_cache = Duration::from_secs(30);
    let runner = Runner::new(TestPlugin::new("scripted"), config).unwrap();
    let handle = runner.handle();
    let introspector = handle.introspector().clone();

    // Before registration there is no token to ask with.
    assert!(matches!(
        introspector.introspect("caller-pii").await,
        Err(IntrospectError::NotRegistered)
    ));
    let task = tokio::spawn(runner.run_until(std::future::pending()));
    handle
        .wait_for(WAIT, PluginStatus::is_registered)
        .await
        .unwrap();

    let pii = [PluginTrait::HandlesPii];
    let ok = introspector
        .authorize(Some("Bearer caller-pii"), &pii)
        .await
        .unwrap();
    assert_eq!(ok.plugin_id.as_deref(), Some("reader"));
    assert!(matches!(
        introspector
            .authorize(Some("Bearer caller-basic"), &pii)
            .await,
        Err(AuthError::MissingTrait(PluginTrait::HandlesPii))
    ));
    assert!(
        introspector
            .authorize(Some("Bearer caller-basic"), &[])
            .await
            .is_ok()
    );
    assert!(matches!(
        introspector.authorize(Some("Bearer forged"), &pii).await,
        Err(AuthError::InactiveToken)
    ));
    assert!(matches!(
        introspector.authorize(None, &pii).await,
        Err(AuthError::MissingToken)
    ));
    assert!(matches!(
        introspector.authorize(Some("Basic abc"), &pii).await,
        Err(AuthError::MissingToken)
    ));
    let asked = script.introspections.load(Ordering::SeqCst);
    assert_eq!(asked, 3, "one question per distinct token");
    for _ in 0..5 {
        introspector
            .authorize(Some("Bearer caller-pii"), &pii)
            .await
            .unwrap();
        let _ = introspector.authorize(Some("Bearer forged"), &pii).await;
    }
    assert_eq!(
        script.introspections.load(Ordering::SeqCst),
        asked,
        "answers are cached"
    );

    // Never cached past the token's expiry.
    introspector
        .authorize(Some("Bearer caller-short"), &pii)
        .await
        .unwrap();
    let before = script.introspections.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _ = introspector.introspect("caller-short").await.unwrap();
    assert_eq!(script.introspections.load(Ordering::SeqCst), before + 1);

    // The core refusing the plugin's own token makes it heartbeat at once.
    let beats = script.heartbeat_count.load(Ordering::SeqCst);
    script.introspect_status.lock().unwrap().push_back(401);
    assert!(matches!(
        introspector.introspect("uncached").await,
        Err(IntrospectError::CallerRefused(_))
    ));
    let unavailable = AuthError::from(IntrospectError::NotRegistered);
    assert_eq!(unavailable.status(), 503);
    tokio::time::timeout(Duration::from_secs(5), async {
        while script.heartbeat_count.load(Ordering::SeqCst) == beats {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("an immediate heartbeat, long before the 60 s interval");
    handle.stop();
    task.await.unwrap().unwrap();
}
