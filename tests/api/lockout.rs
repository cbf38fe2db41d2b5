//! Brute force: past `VIVIFIED_AUTH_FAILURE_LIMIT` failed authentications a minute, an
//! address, or a credential, is answered 429 before anything is verified.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::json;
use vivified_server::rate_limit::ClientAddr;

use crate::helpers::*;
use crate::operators::operator_with_token;

fn from(addr: [u8; 4], bearer: &str) -> Request<Body> {
    let mut req = Request::builder()
        .method(Method::GET)
        .uri("/plugins")
        .header(header::AUTHORIZATION, format!("Bearer {bearer}"))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ClientAddr(std::net::IpAddr::from(addr)));
    req
}

#[tokio::test]
async fn an_address_that_keeps_failing_is_locked_out_whatever_it_presents() {
    let app = TestApp::builder()
        .env("VIVIFIED_AUTH_FAILURE_LIMIT", "3")
        .build();
    for guess in ["guess-1", "guess-2", "guess-3"] {
        let resp = app.send(from([192, 0, 2, 1], guess)).await;
        assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // The fourth failure uses up the allowance: from then on, even the right
    // credential from that address is refused unread.
    let resp = app.send(from([192, 0, 2, 1], "guess-4")).await;
    assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    let resp = app.send(from([192, 0, 2, 1], ADMIN_TOKEN)).await;
    assert_error(&resp, StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
    let retry: u64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(resp.json()["retry_after_secs"], retry);
    // Another address is not affected.
    let resp = app.send(from([192, 0, 2, 2], ADMIN_TOKEN)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    // The lock-out is on the audit trail, naming the address.
    let locked = sealed_entries(&app, "auth.locked_out").await;
    assert_eq!(locked.len(), 1);
    assert_eq!(locked[0].entry.target, "address:192.0.2.1");
    assert_eq!(locked[0].entry.reason, "too_many_failures");
}

#[tokio::test]
async fn guessing_one_operator_tokens_secret_locks_that_token_out() {
    let app = TestApp::builder()
        .env("VIVIFIED_AUTH_FAILURE_LIMIT", "2")
        .build();
    let real = operator_with_token(&app, "alice", "admin").await;
    let prefix = real.split('_').nth(2).unwrap();
    // From many addresses: the credential's own allowance runs out.
    for (i, last) in [(1u8, 1u8), (2, 2), (3, 3)] {
        let guess = format!("viv_op_{prefix}_{}", format!("{last:02x}").repeat(32));
        let resp = app.send(from([198, 51, 100, i], &guess)).await;
        assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let resp = app.send(from([198, 51, 100, 9], &real)).await;
    assert_error(&resp, StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
    // Other credentials still work.
    let other = app
        .post_json(
            "/operators",
            Some(ADMIN_TOKEN),
            &json!({"name": "bob", "role": "viewer"}),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.text());
}

#[tokio::test]
async fn off_in_dev_mode_and_twenty_a_minute_in_production() {
    assert_eq!(TestApp::dev().settings.auth_failure_limit, 0);
    assert_eq!(TestApp::production().settings.auth_failure_limit, 20);
}
