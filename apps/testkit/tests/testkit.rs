//! The test kit starts a real core, stops it, and its helpers see what the core sees.

use std::time::Duration;

use vivified_testkit::{TestCore, manifest};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn dev_core_registers_lists_and_stops() {
    let core = TestCore::start().await.expect("core starts");
    assert!(core.url().starts_with("http://127.0.0.1:"));
    assert_ne!(core.addr().port(), 0, "the real port, not 0");
    assert!(core.admin_token().len() >= 16);
    assert_eq!(core.registration_secret(), None);

    let answer = core.register(&manifest("kit-a", &[])).await.unwrap();
    assert_eq!(answer["plugin_id"], "kit-a");
    assert_eq!(answer["heartbeat_interval_ms"], 250, "the test default");
    let token = answer["token"].as_str().unwrap().to_owned();

    // A heartbeat with the token turns the record active.
    vivified_server::tls::install_default_crypto_provider();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = http
        .post(format!("{}/plugins/kit-a/heartbeat", core.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let record = core
        .wait_for_plugin("kit-a", Duration::from_secs(5), "active", |r| {
            r["status"] == "active"
        })
        .await
        .unwrap();
    assert_eq!(record["health"], "healthy");
    assert_eq!(core.plugins().await.unwrap().len(), 1);
    assert_eq!(core.plugin("nobody").await.unwrap(), None);

    assert!(core.deregister("kit-a").await.unwrap());
    assert!(!core.deregister("kit-a").await.unwrap());
    assert!(core.plugins().await.unwrap().is_empty());

    let addr = core.addr();
    core.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "nothing listens after stop"
    );
}

#[tokio::test]
async fn dropping_the_core_frees_its_port() {
    let core = TestCore::start().await.unwrap();
    let addr = core.addr();
    drop(core);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    // The same address can be bound again, by a new core.
    let again = TestCore::builder().bind(addr).start().await.unwrap();
    assert_eq!(again.addr(), addr);
}

#[tokio::test]
async fn production_core_needs_the_registration_secret() {
    let core = TestCore::builder().production().start().await.unwrap();
    let secret = core
        .registration_secret()
        .expect("a generated secret")
        .to_owned();
    vivified_server::tls::install_default_crypto_provider();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = http
        .post(format!("{}/plugins/register", core.url()))
        .json(&manifest("kit-prod", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["reason"], "registration_secret_required");
    // The helper sends the secret.
    let answer = core.register(&manifest("kit-prod", &[])).await.unwrap();
    assert_eq!(answer["heartbeat_interval_ms"], 1000);
    assert!(!secret.is_empty());
}

#[tokio::test]
async fn chosen_secrets_and_intervals_are_used() {
    let core = TestCore::builder()
        .admin_token("kit-admin-token-0123456789")
        .jwt_secret("kit-jwt-secret-0123456789abcdefghijkl")
        .heartbeat_interval(Duration::from_millis(120))
        .token_ttl(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    assert_eq!(core.admin_token(), "kit-admin-token-0123456789");
    let answer = core.register(&manifest("kit-b", &[])).await.unwrap();
    assert_eq!(answer["heartbeat_interval_ms"], 120);
}

#[tokio::test]
async fn sample_manifests_are_accepted_for_every_trait_mix() {
    let core = TestCore::start().await.unwrap();
    let mixes: &[&[&str]] = &[
        &[],
        &["handles_pii"],
        &["handles_phi"],
        &["handles_pii", "handles_phi", "external_service"],
        &["audit_required", "requires_encryption"],
    ];
    for (i, traits) in mixes.iter().enumerate() {
        let id = format!("mix-{i}");
        core.register(&manifest(&id, traits))
            .await
            .unwrap_or_else(|e| panic!("{traits:?} refused: {e}"));
    }
    // A bad manifest comes back as the core's error body.
    let mut bad = manifest("bad", &[]);
    bad["version"] = "one".into();
    match core.register(&bad).await {
        Err(vivified_testkit::TestkitError::Status { status, body }) => {
            assert_eq!(status, 400);
            assert!(body.contains("invalid_manifest"), "{body}");
        }
        other => panic!("expected a 400, got {other:?}"),
    }
}

#[tokio::test]
async fn publishes_and_pulls_as_a_plugin() {
    use serde_json::json;
    use vivified_testkit::{TestkitError, subscriber};

    let core = TestCore::start().await.unwrap();
    let src = core.register(&manifest("kit-src", &[])).await.unwrap();
    let dst = core
        .register(&subscriber("kit-dst", &[], &["kit.*"]))
        .await
        .unwrap();
    let (src, dst) = (
        src["token"].as_str().unwrap().to_owned(),
        dst["token"].as_str().unwrap().to_owned(),
    );
    for n in 1..=2 {
        let receipt = core
            .publish(&src, &json!({"event_type": "kit.n", "payload": {"n": n}}))
            .await
            .unwrap();
        assert_eq!(receipt["delivered"], 1, "{receipt}");
    }
    let got = core.pull_n("kit-dst", &dst, 2, WAIT).await.unwrap();
    let ns: Vec<_> = got.iter().map(|e| e["payload"]["n"].clone()).collect();
    assert_eq!(ns, [json!(1), json!(2)]);
    // Not acknowledged yet: a pull without `after` returns them again.
    let again = core
        .pull("kit-dst", &dst, None, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(again["events"].as_array().unwrap().len(), 2);
    let cursor = again["next_cursor"].as_str().unwrap();
    let empty = core
        .pull("kit-dst", &dst, Some(cursor), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(empty["events"], json!([]));

    // Errors carry the core's answer.
    match core
        .publish(
            &src,
            &json!({"event_type": "kit.n", "data_traits": ["phi"]}),
        )
        .await
    {
        Err(TestkitError::Status { status: 403, body }) => {
            assert!(body.contains("policy_denied"), "{body}")
        }
        other => panic!("expected 403 policy_denied, got {other:?}"),
    }
    core.disable("kit-dst", "test").await.unwrap();
    match core.pull("kit-dst", &dst, None, Duration::ZERO).await {
        Err(TestkitError::Status { status: 403, body }) => {
            assert!(body.contains("plugin_disabled"), "{body}")
        }
        other => panic!("expected 403 plugin_disabled, got {other:?}"),
    }
}
