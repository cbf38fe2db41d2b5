//! Process-level tests: the real `vivified-server` binary, started with a clean
//! environment on a free loopback port, driven over HTTP and TCP, its stdout (the
//! structured log) and stderr (the banner and start-up refusals) captured and checked.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Spawn, client, json_lines, message, repo_path, target, trace_id, vivified};
use reqwest::StatusCode;
use serde_json::{Value, json};
use vivified_test_support::fixtures::banner_admin_token;

/// Production secrets that pass every start-up check.
const PROD_JWT: &str = "Zq3v9X1pLk2Rt7Yw0Bn4Hs8Dm6Fc5Ja1Ge-process-tests";
const PROD_ADMIN: &str = "adm-8f3k2j5h7g9d1s-process";
const PROD_REGISTRATION: &str = "reg-2m4n6b8v0c1x3z-process";
const PROD_AUDIT_KEY: &str = "aud-7Hn3Kq9Wz2Xc5Vb8Nm1Lp4Rt6Yu0Io-process";

fn user_management() -> Value {
    let path = repo_path("schemas/examples/user-management.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("the example manifest is JSON")
}

fn production() -> Spawn {
    vivified()
        .env("VIVIFIED_MODE", "production")
        .env("JWT_SECRET", PROD_JWT)
        .env("VIVIFIED_ADMIN_TOKEN", PROD_ADMIN)
        .env("VIVIFIED_REGISTRATION_SECRET", PROD_REGISTRATION)
        .env("VIVIFIED_REGISTRATION_SECRET_ALLOWED", "true")
        .env("VIVIFIED_AUDIT_KEY", PROD_AUDIT_KEY)
}

async fn json_body(resp: reqwest::Response) -> Value {
    let status = resp.status();
    let text = resp.text().await.expect("a response body");
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text}"))
}

/// 1. Dev mode: the banner says so and shows a generated admin token that works, once,
/// on stderr only; a configured admin token is never printed.
#[tokio::test]
async fn dev_banner_shows_a_generated_admin_token_once_and_never_logs_it() {
    let mut server = vivified().env("RUST_LOG", "trace").start().await;
    let stderr = server
        .wait_stderr(Duration::from_secs(5), |e| e.contains("DEV MODE"))
        .await;
    let token = banner_admin_token(&stderr);
    assert!(token.len() >= 32, "a strong generated token: {token:?}");

    let http = client();
    let resp = http
        .get(server.url("/plugins"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the banner's token is admin");
    let resp = http
        .get(server.url("/plugins"))
        .bearer_auth(format!("{token}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    assert!(server.stop(Duration::from_secs(5)).success());
    let (stdout, stderr) = (server.stdout(), server.stderr());
    assert_eq!(
        stderr.matches(token.as_str()).count(),
        1,
        "the generated token appears exactly once on stderr:\n{stderr}"
    );
    assert!(
        !stdout.contains(&token),
        "the admin token must never reach the structured log"
    );
    assert!(!stdout.is_empty(), "the log was captured");

    // A configured admin token is used as given and not printed.
    let configured = "configured-admin-token-5Tq9Wz";
    let mut server = vivified()
        .env("VIVIFIED_ADMIN_TOKEN", configured)
        .start()
        .await;
    let stderr = server
        .wait_stderr(Duration::from_secs(5), |e| e.contains("DEV MODE"))
        .await;
    let resp = http
        .get(server.url("/plugins"))
        .bearer_auth(configured)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(server.stop(Duration::from_secs(5)).success());
    let (stdout, stderr2) = (server.stdout(), server.stderr());
    assert!(stderr2.starts_with(&stderr));
    assert!(
        !stderr2.contains(configured),
        "a configured token is never printed:\n{stderr2}"
    );
    assert!(!stdout.contains(configured));
    assert!(
        !stderr2.contains("VIVIFIED_ADMIN_TOKEN="),
        "no export line when the token is configured:\n{stderr2}"
    );
}

/// 2. The README walkthrough: register the seed's example over HTTP, heartbeat, list.
#[tokio::test]
async fn readme_walkthrough_register_heartbeat_list() {
    let admin = "walkthrough-admin-token-7Hc2";
    let server = vivified().env("VIVIFIED_ADMIN_TOKEN", admin).start().await;
    let http = client();
    let manifest = std::fs::read(repo_path("schemas/examples/user-management.json")).unwrap();

    let resp = http
        .post(server.url("/plugins/register"))
        .header("content-type", "application/json")
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let reg = json_body(resp).await;
    assert_eq!(reg["status"], "registered");
    assert_eq!(reg["plugin_id"], "user-management");
    assert!(
        reg["heartbeat_interval_secs"]
            .as_u64()
            .is_some_and(|s| s > 0)
    );
    assert!(reg["expires_at"].is_string());
    let token = reg["token"].as_str().expect("a token").to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    let resp = http
        .post(server.url("/plugins/user-management/heartbeat"))
        .bearer_auth(&token)
        .json(&json!({ "health": "healthy" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json_body(resp).await, json!({ "status": "ok" }));

    let resp = http
        .get(server.url("/plugins"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let list = json_body(resp).await;
    let plugins = list["plugins"].as_array().expect("a plugins array");
    assert_eq!(plugins.len(), 1, "{list}");
    let p = &plugins[0];
    assert_eq!(p["plugin_id"], "user-management");
    assert_eq!(p["status"], "active");
    assert_eq!(p["health"], "healthy");
    assert_eq!(p["manifest"], user_management());
    assert!(p["last_heartbeat"].is_string());
}

/// 3. At `RUST_LOG=trace`, a full plugin life leaves no token, secret or manifest PII in
/// either stream, and every log line is JSON with a trace id.
#[tokio::test]
async fn trace_logs_carry_no_token_secret_or_pii() {
    const ADMIN: &str = "ADMIN-SECRET-MARKER-a1b2c3d4e5f6";
    const JWT: &str = "JWT-SECRET-MARKER-z9y8x7w6v5u4t3s2r1q0";
    const REGISTRATION: &str = "REGISTRATION-SECRET-MARKER-m3n4b5v6";
    const NAME_MARKER: &str = "NAME-MARKER-Jane-Doe-4e1c";
    const PII_MARKER: &str = "PII-MARKER-jane.doe@example.com";
    const DETAILS_MARKER: &str = "DETAILS-MARKER-ssn-078-05-1120";

    // A test-owned identity provider: single sign-on tokens must not leak either.
    let idp_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let idp_encoding = jsonwebtoken::EncodingKey::from_ec_der(&idp_key.serialize_der());
    let mut jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&idp_encoding, jsonwebtoken::Algorithm::ES256)
            .unwrap();
    jwk.common.key_id = Some("idp-1".to_owned());
    let idp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", idp_listener.local_addr().unwrap());
    let keys = jsonwebtoken::jwk::JwkSet { keys: vec![jwk] };
    let idp = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let keys = keys.clone();
            async move { axum::Json(keys) }
        }),
    );
    tokio::spawn(async move { axum::serve(idp_listener, idp).await });
    let sign = |kid: &str, exp: i64| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(
            &header,
            &json!({"iss": issuer, "aud": "vivified", "sub": "s-1",
                    "preferred_username": "olga", "roles": ["viewer"], "exp": exp}),
            &idp_encoding,
        )
        .unwrap()
    };

    let mut server = vivified()
        .env("RUST_LOG", "trace")
        .env("VIVIFIED_ADMIN_TOKEN", ADMIN)
        .env("JWT_SECRET", JWT)
        .env("VIVIFIED_REGISTRATION_SECRET", REGISTRATION)
        .env("VIVIFIED_OIDC_ISSUER", &issuer)
        .env("VIVIFIED_OIDC_AUDIENCE", "vivified")
        .env("VIVIFIED_OIDC_JWKS_URL", &format!("{issuer}/jwks"))
        .start()
        .await;
    let http = client();
    let mut manifest = user_management();
    manifest["id"] = json!("secrecy-probe");
    manifest["name"] = json!(format!("Probe {NAME_MARKER}"));
    manifest["description"] = json!(format!("Owner contact: {PII_MARKER}"));

    let resp = http
        .post(server.url("/plugins/register"))
        .json(&manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let first = json_body(resp).await["token"].as_str().unwrap().to_owned();

    let resp = http
        .post(server.url("/plugins/secrecy-probe/heartbeat"))
        .bearer_auth(&first)
        .json(&json!({ "health": "degraded", "details": { "note": DETAILS_MARKER } }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let resp = http
        .post(server.url("/plugins/secrecy-probe/token"))
        .bearer_auth(&first)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let refreshed = json_body(resp).await["token"].as_str().unwrap().to_owned();
    assert_ne!(first, refreshed);

    // Rejections are where credentials tend to leak: a revoked token, a wrong admin token.
    let resp = http
        .post(server.url("/plugins/secrecy-probe/heartbeat"))
        .bearer_auth(&first)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "the old token is revoked"
    );
    let resp = http
        .get(server.url("/plugins"))
        .bearer_auth(format!("{ADMIN}-wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let resp = http
        .get(server.url("/plugins"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let list = resp.text().await.unwrap();
    assert!(
        list.contains(PII_MARKER),
        "the API itself returns the manifest"
    );

    // A single sign-on token: used, then one the provider's keys do not know.
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 600;
    let sso = sign("idp-1", exp);
    let resp = http
        .get(server.url("/whoami"))
        .bearer_auth(&sso)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "single sign-on works");
    let unknown = sign("idp-2", exp);
    let resp = http
        .get(server.url("/plugins"))
        .bearer_auth(&unknown)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // An operator's token: minted, used, guessed at, revoked.
    let resp = http
        .post(server.url("/operators"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "alice", "role": "operator"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = http
        .post(server.url("/operators/alice/tokens"))
        .bearer_auth(ADMIN)
        .json(&json!({"label": "laptop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let operator_token = json_body(resp).await["token"].as_str().unwrap().to_owned();
    let (_, operator_secret) = operator_token.rsplit_once('_').unwrap();
    let operator_secret = operator_secret.to_owned();
    let prefix = operator_token.split('_').nth(2).unwrap().to_owned();
    for bearer in [
        operator_token.clone(),
        format!("viv_op_{prefix}_{}", "e".repeat(64)),
    ] {
        http.get(server.url("/plugins"))
            .bearer_auth(&bearer)
            .send()
            .await
            .unwrap();
    }
    let resp = http
        .delete(server.url(&format!("/operators/alice/tokens/{prefix}")))
        .bearer_auth(&operator_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = http
        .get(server.url("/whoami"))
        .bearer_auth(&operator_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "revoked");

    let resp = http
        .get(server.url("/plugins/secrecy-probe"))
        .bearer_auth(&refreshed)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = http
        .delete(server.url("/plugins/secrecy-probe"))
        .bearer_auth(&refreshed)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    assert!(server.stop(Duration::from_secs(5)).success());
    let (stdout, stderr) = (server.stdout(), server.stderr());
    assert!(
        stdout.contains("\"level\":\"DEBUG\""),
        "RUST_LOG=trace took effect:\n{stdout}"
    );

    let signature = |t: &str| t.rsplit('.').next().unwrap_or_default().to_owned();
    let forbidden = [
        ("the first token", first.clone()),
        ("the first token's signature", signature(&first)),
        ("the refreshed token", refreshed.clone()),
        ("the refreshed token's signature", signature(&refreshed)),
        ("the admin token", ADMIN.to_owned()),
        ("the operator token", operator_token.clone()),
        ("the single sign-on token", sso.clone()),
        ("its signature", signature(&sso)),
        (
            "the unknown single sign-on token's signature",
            signature(&unknown),
        ),
        ("the operator token's secret", operator_secret.clone()),
        ("the JWT secret", JWT.to_owned()),
        ("the registration secret", REGISTRATION.to_owned()),
        ("the manifest name", NAME_MARKER.to_owned()),
        ("the manifest description", PII_MARKER.to_owned()),
        ("an e-mail address", "jane.doe".to_owned()),
        ("the heartbeat details", DETAILS_MARKER.to_owned()),
        ("a secret marker", "SECRET-MARKER".to_owned()),
    ];
    for (what, needle) in &forbidden {
        for (stream, text) in [("stdout", &stdout), ("stderr", &stderr)] {
            if let Some(line) = text.lines().find(|l| l.contains(needle.as_str())) {
                panic!("{what} leaked to {stream}: {line}");
            }
        }
    }

    // Every line is JSON and carries a trace id: the request's, or `system`. (At this
    // level no dependency writes a line outside a span; if one ever does, this names it.)
    for line in json_lines(&stdout) {
        assert!(
            trace_id(&line).is_some_and(|t| !t.is_empty()),
            "a log line without span.trace_id (target {}): {line}",
            target(&line)
        );
    }
}

/// 4. SIGTERM: exit 0 within seconds, the last lines say so, under `trace_id=system`.
#[tokio::test]
async fn sigterm_stops_gracefully_with_system_trace_id() {
    let mut server = vivified().start().await;
    // Idle connections must not hold the shutdown up: a pooled keep-alive connection
    // (as a heartbeating plugin keeps) and one that connected but never sent a byte.
    let http = client();
    let resp = http.get(server.url("/ready")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let _silent = TcpStream::connect(server.addr()).expect("connect");

    let started = Instant::now();
    server.terminate();
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("exits within 5 s of SIGTERM");
    assert!(status.success(), "exit status {status}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    drop(http);

    let lines = json_lines(&server.stdout());
    let last = lines.last().expect("log lines");
    assert_eq!(message(last), "vivified core stopped", "{last}");
    assert_eq!(trace_id(last), Some("system"), "{last}");
    let shutting_down = lines
        .iter()
        .find(|l| message(l).starts_with("shutting down"))
        .expect("a shutting-down line");
    assert_eq!(trace_id(shutting_down), Some("system"));
    let listening = lines
        .iter()
        .find(|l| message(l).contains("listening"))
        .expect("a start-up line");
    assert_eq!(trace_id(listening), Some("system"));
    assert!(!server.stderr().contains("panicked"));
}

/// Asserts a refused start: non-zero exit, exactly one line on stderr naming `setting`,
/// no panic, no backtrace.
fn assert_refused(case: &str, spawn: &Spawn, setting: &str) {
    let out = spawn.run_to_exit(Duration::from_secs(10));
    assert!(
        !out.status.success(),
        "{case}: must not start (status {})",
        out.status
    );
    assert_eq!(
        out.status.code().map(|c| c != 101),
        Some(true),
        "{case}: a clean exit code, not a panic or a signal: {}",
        out.status
    );
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{case}: one line on stderr:\n{}",
        out.stderr
    );
    let line = lines[0];
    assert!(line.contains(setting), "{case}: names {setting}: {line}");
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE", "stack"] {
        assert!(!line.contains(bad), "{case}: {bad}: {line}");
    }
    assert!(!out.stdout.contains("panicked"), "{case}: {}", out.stdout);
}

/// 5. Start-up refusals, and the one remote bind dev mode allows.
#[tokio::test]
async fn startup_refusals_are_one_line_naming_the_setting() {
    // Production with every required secret except `key`.
    let without = |key: &str| {
        let mut s = vivified();
        for (k, v) in [
            ("VIVIFIED_MODE", "production"),
            ("JWT_SECRET", PROD_JWT),
            ("VIVIFIED_ADMIN_TOKEN", PROD_ADMIN),
            ("VIVIFIED_REGISTRATION_SECRET", PROD_REGISTRATION),
            ("VIVIFIED_REGISTRATION_SECRET_ALLOWED", "true"),
            ("VIVIFIED_AUDIT_KEY", PROD_AUDIT_KEY),
        ] {
            if k != key {
                s = s.env(k, v);
            }
        }
        s
    };
    let cases: Vec<(&str, Spawn, &str)> = vec![
        (
            "production without JWT_SECRET",
            without("JWT_SECRET"),
            "JWT_SECRET",
        ),
        (
            "production with the seed's default secret",
            without("JWT_SECRET").env("JWT_SECRET", "change-this-secret"),
            "JWT_SECRET",
        ),
        (
            "production with a long default-looking secret",
            without("JWT_SECRET").env("JWT_SECRET", "change-this-secret-change-this-secret"),
            "JWT_SECRET",
        ),
        (
            "production with a short secret",
            without("JWT_SECRET").env("JWT_SECRET", "Zq3v9X1pLk2Rt7Yw"),
            "JWT_SECRET",
        ),
        (
            "production without an admin token",
            without("VIVIFIED_ADMIN_TOKEN"),
            "VIVIFIED_ADMIN_TOKEN",
        ),
        (
            "production allowing a registration secret that is not set",
            without("VIVIFIED_REGISTRATION_SECRET"),
            "VIVIFIED_REGISTRATION_SECRET",
        ),
        (
            "production without an audit key",
            without("VIVIFIED_AUDIT_KEY"),
            "VIVIFIED_AUDIT_KEY",
        ),
        (
            "dev mode on a non-loopback address",
            vivified().bind_host("0.0.0.0"),
            "VIVIFIED_DEV_ALLOW_REMOTE",
        ),
        (
            "a token TTL that is not a duration",
            vivified().env("VIVIFIED_TOKEN_TTL", "banana"),
            "VIVIFIED_TOKEN_TTL",
        ),
    ];
    // Each refusal is a separate process; run them side by side.
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(case, spawn, setting)| {
            std::thread::spawn(move || assert_refused(case, &spawn, setting))
        })
        .collect();
    let mut failures = Vec::new();
    for h in handles {
        if let Err(e) = h.join() {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(msg);
        }
    }
    assert!(
        failures.is_empty(),
        "refusals failed:\n{}",
        failures.join("\n")
    );

    // The same remote bind starts when dev mode is told it may.
    let mut server = vivified()
        .bind_host("0.0.0.0")
        .env("VIVIFIED_DEV_ALLOW_REMOTE", "true")
        .start()
        .await;
    assert!(server.stop(Duration::from_secs(5)).success());
}

/// 6. Production: registration needs the registration secret, no API docs, no banner.
#[tokio::test]
async fn production_requires_the_registration_secret_and_hides_docs() {
    let mut server = production().start().await;
    let http = client();

    let resp = http
        .post(server.url("/plugins/register"))
        .json(&user_management())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer")),
        "{:?}",
        resp.headers()
    );
    let body = json_body(resp).await;
    assert_eq!(body["error"], "unauthorized");
    assert!(body["detail"].is_string());

    let resp = http
        .post(server.url("/plugins/register"))
        .bearer_auth(PROD_ADMIN)
        .json(&user_management())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "the admin token is not the registration secret"
    );

    let resp = http
        .post(server.url("/plugins/register"))
        .bearer_auth(PROD_REGISTRATION)
        .json(&user_management())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let reg = json_body(resp).await;
    assert_eq!(reg["status"], "registered");
    assert!(reg["token"].as_str().is_some_and(|t| !t.is_empty()));

    let resp = http.get(server.url("/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_body(resp).await["error"], "not_found");

    assert!(server.stop(Duration::from_secs(5)).success());
    let stderr = server.stderr();
    assert!(
        stderr.trim().is_empty(),
        "production prints no banner:\n{stderr}"
    );
    let stdout = server.stdout();
    for secret in [PROD_JWT, PROD_ADMIN, PROD_REGISTRATION] {
        assert!(!stdout.contains(secret));
    }
}

/// 7. The trace id comes from `traceparent`, is echoed in `X-Request-Id`, and marks the
/// request's log lines.
#[tokio::test]
async fn traceparent_sets_the_request_id_and_the_log_trace_id() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let server = vivified().env("LOG_LEVEL", "debug").start().await;
    let http = client();

    let resp = http
        .get(server.url("/health"))
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .header("x-request-id", "loses-to-traceparent")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some(TRACE)
    );
    let stdout = server
        .wait_stdout(Duration::from_secs(5), |o| o.contains(TRACE))
        .await;
    let lines = json_lines(&stdout);
    let ours: Vec<&Value> = lines
        .iter()
        .filter(|l| trace_id(l) == Some(TRACE))
        .collect();
    assert!(
        ours.iter().any(|l| message(l) == "request completed"),
        "the per-request line carries the trace id:\n{stdout}"
    );
    assert!(!stdout.contains("loses-to-traceparent"));

    // A well-formed X-Request-Id is used when there is no traceparent.
    let resp = http
        .get(server.url("/health"))
        .header("x-request-id", "req-42.a:b_c")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("req-42.a:b_c")
    );
    server
        .wait_stdout(Duration::from_secs(5), |o| o.contains("\"req-42.a:b_c\""))
        .await;

    // A malformed one is replaced by a fresh id.
    let resp = http
        .get(server.url("/health"))
        .header("x-request-id", "not a valid {id}")
        .send()
        .await
        .unwrap();
    let echoed = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(!echoed.is_empty() && !echoed.contains(' '), "{echoed:?}");
    server
        .wait_stdout(Duration::from_secs(5), |o| o.contains(&echoed))
        .await;
}

/// A blocking connection to `addr` whose reads give up after 8 s.
fn connect_blocking(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(8)))
        .unwrap();
    stream
}

/// Reads `stream` until the server closes it: how long that took (`None` if a read
/// timed out first) and what arrived.
fn read_until_closed(stream: &mut TcpStream) -> (Option<Duration>, Vec<u8>) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (closed.then(|| started.elapsed()), received)
}

/// Asserts that a connection was closed after about the 1 s header timeout.
fn closed_after_the_bound(closed: Option<Duration>, what: &str, at_least: Duration) {
    let elapsed = closed.unwrap_or_else(|| panic!("{what} stayed open"));
    assert!(
        elapsed >= at_least && elapsed < Duration::from_secs(5),
        "{what} closed after {elapsed:?}"
    );
}

/// 8. A client that never finishes its headers is disconnected after the header timeout.
#[tokio::test]
async fn slow_headers_are_cut_off() {
    let server = vivified()
        .env("VIVIFIED_HEADER_READ_TIMEOUT", "1s")
        .start()
        .await;
    let addr = server.addr();
    let (closed, received) = tokio::task::spawn_blocking(move || {
        let mut stream = connect_blocking(addr);
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .unwrap();
        read_until_closed(&mut stream)
    })
    .await
    .unwrap();
    closed_after_the_bound(closed, "a slow head", Duration::from_millis(800));
    let received = String::from_utf8_lossy(&received);
    assert!(
        received.is_empty() || received.starts_with("HTTP/1.1 408"),
        "no answer but a timeout: {received}"
    );
}

/// 8b. The same bound closes a connection that never sends a byte and one left idle
/// after a response, while a keep-alive connection used more often than the bound
/// stays open.
#[tokio::test]
async fn silent_and_idle_connections_are_closed_busy_ones_are_not() {
    let server = vivified()
        .env("VIVIFIED_HEADER_READ_TIMEOUT", "1s")
        .start()
        .await;
    let addr = server.addr();
    let (silent, answered, idle) = tokio::task::spawn_blocking(move || {
        let silent = read_until_closed(&mut connect_blocking(addr)).0;
        let mut busy = connect_blocking(addr);
        let mut answered = 0;
        for _ in 0..6 {
            busy.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 4096];
            let n = busy.read(&mut buf).unwrap();
            answered += usize::from(buf[..n].starts_with(b"HTTP/1.1 200"));
            std::thread::sleep(Duration::from_millis(400));
        }
        (silent, answered, read_until_closed(&mut busy).0)
    })
    .await
    .unwrap();
    closed_after_the_bound(silent, "a silent connection", Duration::from_millis(800));
    assert_eq!(answered, 6, "a connection in use was closed");
    // 400 ms of the bound had passed when the last read began.
    closed_after_the_bound(idle, "an idle connection", Duration::from_millis(400));
}

/// One HTTP/1.1 `GET /health` with a header `X-Pad` of `pad` bytes on a fresh
/// connection: the status line and the body.
fn http1_with_pad(addr: SocketAddr, pad: usize) -> (String, String) {
    let mut stream = connect_blocking(addr);
    let head = format!(
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(pad)
    );
    // A server that stops reading mid-head may reset the rest of the write.
    let _ = stream.write_all(head.as_bytes());
    let (_, received) = read_until_closed(&mut stream);
    let text = String::from_utf8_lossy(&received).into_owned();
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

/// One HTTP/2 (prior knowledge) `GET /health` with a header `x-pad` of `pad` bytes on
/// a fresh connection: the status and the body.
async fn http2_with_pad(addr: SocketAddr, pad: usize) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http_request(addr, pad);
    let (resp, _) = send.send_request(req, true).expect("the request is sent");
    let resp = resp.await.expect("an HTTP/2 response");
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body data");
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn http_request(addr: SocketAddr, pad: usize) -> axum::http::Request<()> {
    axum::http::Request::get(format!("http://{addr}/health"))
        .header("x-pad", "p".repeat(pad))
        .body(())
        .expect("a request")
}

/// The header fields of a request are bounded on both protocols
/// (`VIVIFIED_MAX_HEADER_BYTES`, here 4096): under the bound served, over it 431 in
/// the API's JSON error shape, and far over it (a 100 KB header, beyond what the
/// protocol layer reads) 431 without being buffered.
#[tokio::test]
async fn request_headers_are_bounded_on_http1_and_http2() {
    let server = vivified()
        .env("VIVIFIED_MAX_HEADER_BYTES", "4096")
        .start()
        .await;
    let addr = server.addr();
    let json_431 = |body: &str| {
        let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("JSON: {body:?}"));
        assert_eq!(v["error"], "request_header_fields_too_large", "{v}");
        assert_eq!(
            v["detail"],
            "The request's header fields exceed 4096 bytes."
        );
    };

    let h1 = tokio::task::spawn_blocking(move || {
        [3_000, 5_000, 100_000].map(|pad| http1_with_pad(addr, pad))
    })
    .await
    .unwrap();
    assert_eq!(h1[0].0, "HTTP/1.1 200 OK", "{h1:?}");
    assert_eq!(h1[1].0, "HTTP/1.1 431 Request Header Fields Too Large");
    json_431(&h1[1].1);
    assert_eq!(h1[2].0, "HTTP/1.1 431 Request Header Fields Too Large");

    let (status, body) = http2_with_pad(addr, 3_000).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http2_with_pad(addr, 5_000).await;
    assert_eq!(status, 431);
    json_431(&body);
    let (status, _) = http2_with_pad(addr, 100_000).await;
    assert_eq!(status, 431);

    // The core is still serving.
    let resp = client().get(server.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// `VIVIFIED_METRICS_BIND` moves `/metrics` to its own listener: served there, not on
/// the API address.
#[tokio::test]
async fn metrics_can_live_on_a_separate_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let server = vivified()
        .env("VIVIFIED_METRICS_BIND", &format!("127.0.0.1:{port}"))
        .start()
        .await;
    let http = client();
    let resp = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("the metrics listener answers");
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("vivified_plugins{liveness=\"registered\"}"),
        "{text}"
    );
    let resp = http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// `VIVIFIED_POLICY_FILE`: a malformed file stops start-up with one line naming the
/// setting, the position and the reason; a valid one replaces the built-in rules.
#[tokio::test]
async fn a_policy_file_replaces_the_rules_and_a_malformed_one_stops_start_up() {
    let dir = std::env::temp_dir().join(format!("vivified-policy-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        "{\"version\": 1,\n \"rules\": [\n  {\"id\": \"x\", \"effect\": \"maybe\"}\n ]\n}\n",
    )
    .unwrap();
    let spawn = vivified().env("VIVIFIED_POLICY_FILE", bad.to_str().unwrap());
    assert_refused("malformed policy", &spawn, "VIVIFIED_POLICY_FILE");
    let out = spawn.run_to_exit(Duration::from_secs(10));
    assert!(
        out.stderr.contains("line 3"),
        "names the line: {}",
        out.stderr
    );
    assert_refused(
        "missing policy",
        &vivified().env(
            "VIVIFIED_POLICY_FILE",
            dir.join("absent.json").to_str().unwrap(),
        ),
        "VIVIFIED_POLICY_FILE",
    );

    // Only `public` data is allowed: internal data is now denied (unknown trait).
    let only_public = dir.join("public.json");
    std::fs::write(
        &only_public,
        r#"{"version": 1, "rules": [{"id": "public.anywhere", "data_traits": ["public"], "effect": "allow", "reason": "public_data"}]}"#,
    )
    .unwrap();
    let admin = "policy-admin-token-5Rt8Wq2Zx";
    let server = vivified()
        .env("VIVIFIED_POLICY_FILE", only_public.to_str().unwrap())
        .env("VIVIFIED_ADMIN_TOKEN", admin)
        .start()
        .await;
    let http = client();
    // The policy in force is part of the audited start (sealed a moment later).
    let deadline = Instant::now() + Duration::from_secs(10);
    let start = loop {
        let resp = http
            .get(server.url("/audit?action=core.start"))
            .bearer_auth(admin)
            .send()
            .await
            .unwrap();
        let body = json_body(resp).await;
        if let Some(e) = body["entries"].as_array().and_then(|a| a.first()) {
            break e.clone();
        }
        assert!(Instant::now() < deadline, "no core.start entry: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(start["actor"], "system");
    assert_eq!(start["details"]["policy"]["source"], "file");
    assert_eq!(
        start["details"]["policy"]["rules"],
        json!(["public.anywhere"])
    );
    let mut tokens = Vec::new();
    for (id, subs) in [("pol-src", json!([])), ("pol-dst", json!(["pol.*"]))] {
        let mut m = user_management();
        m["id"] = json!(id);
        m["traits"] = json!([]);
        m["security"] = json!({"authentication_required": false, "data_classification": ["internal", "public"]});
        m["subscriptions"] = subs;
        let resp = http
            .post(server.url("/plugins/register"))
            .json(&m)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        tokens.push(json_body(resp).await["token"].as_str().unwrap().to_owned());
    }
    let publish = |traits: Value| {
        http.post(server.url("/events"))
            .bearer_auth(&tokens[0])
            .json(&json!({"event_type": "pol.x", "data_traits": traits, "payload": {}}))
            .send()
    };
    // `internal` is named by no rule of this file: refused at publication.
    let resp = publish(json!(["internal"])).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body = json_body(resp).await;
    assert_eq!(body["error"], "policy_denied");
    assert_eq!(body["reason"], "unknown_data_trait", "{body}");
    let resp = publish(json!(["public"])).await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(json_body(resp).await["delivered"], 1);
    let _ = std::fs::remove_dir_all(&dir);
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )
}
