//! Single sign-on: operators present their identity provider's tokens. A test-owned
//! provider on 127.0.0.1 serves discovery and keys made here (ES256 and RS256).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use vivified_adapters::oidc::{OidcConfig, OidcVerifier};

use crate::helpers::*;

const AUDIENCE: &str = "vivified-core";

/// A signing key of the provider.
struct Key {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl Key {
    fn es256(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let encoding = EncodingKey::from_ec_der(&pair.serialize_der());
        Self::with(kid, Algorithm::ES256, encoding)
    }

    fn ed25519(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let encoding = EncodingKey::from_ed_der(&pair.serialize_der());
        // The public JWK from the raw public key (OKP, RFC 8037).
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key_raw());
        let jwk: Jwk = serde_json::from_value(
            json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA"}),
        )
        .unwrap();
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::EdDSA,
            encoding,
            jwk,
        }
    }

    fn rs256(kid: &str) -> Self {
        // RSA key generation is the openssl tool's job (fast, and standard here).
        let dir = vivified_test_support::fs::TempDir::new("oidc-rsa");
        let pem = dir.path().join("k.pem");
        let der = dir.path().join("k.der");
        let ok = std::process::Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&pem)
            .arg("2048")
            .output()
            .expect("openssl runs")
            .status
            .success()
            && std::process::Command::new("openssl")
                .args(["rsa", "-traditional", "-outform", "DER", "-in"])
                .arg(&pem)
                .arg("-out")
                .arg(&der)
                .output()
                .expect("openssl runs")
                .status
                .success();
        assert!(ok, "openssl made an RSA key");
        let encoding = EncodingKey::from_rsa_der(&std::fs::read(&der).unwrap());
        Self::with(kid, Algorithm::RS256, encoding)
    }

    fn with(kid: &str, alg: Algorithm, encoding: EncodingKey) -> Self {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            jwk,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

#[derive(Default)]
struct IdpState {
    keys: Mutex<Vec<Jwk>>,
    fetches: AtomicUsize,
    down: AtomicBool,
    issuer: Mutex<String>,
}

/// The provider: discovery and JWKS, on 127.0.0.1.
struct Idp {
    state: Arc<IdpState>,
    issuer: String,
}

impl Idp {
    async fn start(keys: &[&Key]) -> Self {
        let state = Arc::new(IdpState::default());
        *state.keys.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|State(s): State<Arc<IdpState>>| async move {
                    if s.down.load(Ordering::SeqCst) {
                        return StatusCode::SERVICE_UNAVAILABLE.into_response();
                    }
                    let issuer = s.issuer.lock().unwrap().clone();
                    axum::Json(json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")}))
                        .into_response()
                }),
            )
            .route(
                "/jwks",
                get(|State(s): State<Arc<IdpState>>| async move {
                    s.fetches.fetch_add(1, Ordering::SeqCst);
                    if s.down.load(Ordering::SeqCst) {
                        return StatusCode::SERVICE_UNAVAILABLE.into_response();
                    }
                    let set = JwkSet {
                        keys: s.keys.lock().unwrap().clone(),
                    };
                    (
                        [(header::CACHE_CONTROL, "public, max-age=300")],
                        axum::Json(set),
                    )
                        .into_response()
                }),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        *state.issuer.lock().unwrap() = issuer.clone();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { state, issuer }
    }

    fn config(&self) -> OidcConfig {
        let mut config = OidcConfig::new(&self.issuer, AUDIENCE);
        config.min_refetch = Duration::from_millis(200);
        config
    }

    fn app(&self, config: OidcConfig, env: &[(&str, &str)]) -> TestApp {
        let mut builder = TestApp::builder();
        for (k, v) in env {
            builder = builder.env(k, v);
        }
        builder
            .identity(Arc::new(OidcVerifier::new(config)))
            .build()
    }

    fn claims(&self, app: &TestApp, name: &str, roles: &[&str]) -> Value {
        let now = app.clock_now().unix_timestamp();
        json!({
            "iss": self.issuer, "aud": AUDIENCE, "sub": format!("sub-{name}"),
            "preferred_username": name, "roles": roles,
            "iat": now, "exp": now + 300,
        })
    }
}

async fn whoami(app: &TestApp, token: &str) -> TestResponse {
    app.get("/whoami", Some(token)).await
}

#[tokio::test]
async fn a_providers_token_acts_with_the_role_it_carries() {
    let es = Key::es256("es-1");
    let rs = Key::rs256("rs-1");
    let ed = Key::ed25519("ed-1");
    let idp = Idp::start(&[&es, &rs, &ed]).await;
    let app = idp.app(idp.config(), &[]);

    for (key, name) in [(&es, "alice"), (&rs, "bob"), (&ed, "erin")] {
        let token = key.sign(&idp.claims(&app, name, &["auditor", "unrelated"]));
        let me = whoami(&app, &token).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.text());
        let me = me.json();
        assert_eq!(me["name"], name);
        assert_eq!(me["role"], "auditor");
        assert_eq!(me["auth"], "oidc");
        assert_eq!(me["credential"], format!("sub:sub-{name}"));
        // The role applies: an auditor reads the trail, and may not disable plugins.
        assert_eq!(app.get("/audit", Some(&token)).await.status, StatusCode::OK);
        let refused = app
            .post_json("/plugins/x/disable", Some(&token), &json!({"reason": "r"}))
            .await;
        assert_eq!(refused.json()["required_role"], "operator");
    }
    // Audited under the provider's name.
    let alice = es.sign(&idp.claims(&app, "alice", &["admin"]));
    app.register_ok("p1").await;
    app.post_json("/plugins/p1/disable", Some(&alice), &json!({"reason": "r"}))
        .await;
    let entries = sealed_entries(&app, "plugin.disable").await;
    assert_eq!(entries[0].entry.actor, "operator:alice");
    assert_eq!(entries[0].entry.details["auth"], "oidc");
    // A token with no role that maps is authenticated, and may do nothing.
    let nobody = es.sign(&idp.claims(&app, "nobody", &["staff"]));
    let refused = app.get("/plugins", Some(&nobody)).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(refused.json()["reason"], "no_role");
    assert_eq!(
        idp.state.fetches.load(Ordering::SeqCst),
        1,
        "keys are cached"
    );
}

#[tokio::test]
async fn a_provider_user_is_not_the_local_operator_of_the_same_name() {
    let es = Key::es256("es-1");
    let idp = Idp::start(&[&es]).await;
    let app = idp.app(idp.config(), &[]);
    crate::operators::operator_with_token(&app, "alice", "viewer").await;
    let impostor = es.sign(&idp.claims(&app, "alice", &["viewer"]));
    for resp in [
        app.get("/operators/alice", Some(&impostor)).await,
        app.post_json("/operators/alice/tokens", Some(&impostor), &json!({}))
            .await,
    ] {
        assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(
            resp.json()["reason"],
            "insufficient_role",
            "{}",
            resp.text()
        );
    }
}

#[tokio::test]
async fn bad_tokens_are_401_with_a_reason() {
    let es = Key::es256("es-1");
    let idp = Idp::start(&[&es]).await;
    let app = idp.app(idp.config(), &[]);
    let good = idp.claims(&app, "alice", &["admin"]);
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let now = app.clock_now().unix_timestamp();
    let stranger = Key::es256("es-1");
    let cases = [
        (es.sign(&with(json!({"exp": now - 61}))), "expired_token"),
        (es.sign(&with(json!({"nbf": now + 120}))), "not_yet_valid"),
        (
            es.sign(&with(json!({"aud": "someone-else"}))),
            "wrong_audience",
        ),
        (Key::es256("unknown").sign(&good), "unknown_key"),
        // Same kid, another key: the signature does not verify.
        (stranger.sign(&good), "invalid_signature"),
    ];
    for (token, reason) in &cases {
        let resp = whoami(&app, token).await;
        assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(resp.json()["reason"], *reason, "{}", resp.text());
    }
    // Within the leeway, an expired token still works.
    let lenient = es.sign(&with(json!({"exp": now - 30})));
    assert_eq!(whoami(&app, &lenient).await.status, StatusCode::OK);
    // Another issuer's token is not the provider's at all.
    let foreign = es.sign(&with(json!({"iss": "https://elsewhere.example"})));
    assert_error(
        &whoami(&app, &foreign).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
}

#[tokio::test]
async fn key_confusion_with_the_public_key_as_an_hmac_secret_is_refused() {
    let rs = Key::rs256("rs-1");
    let idp = Idp::start(&[&rs]).await;
    let app = idp.app(idp.config(), &[]);
    let claims = idp.claims(&app, "mallory", &["admin"]);
    let jwks_json = serde_json::to_vec(&rs.jwk).unwrap();
    let jsonwebtoken::jwk::AlgorithmParameters::RSA(params) = &rs.jwk.algorithm else {
        panic!("an RSA key");
    };
    let modulus = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&params.n)
        .unwrap();
    for secret in [
        jwks_json.as_slice(),
        modulus.as_slice(),
        params.n.as_bytes(),
    ] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rs-1".to_owned());
        let forged =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap();
        let resp = whoami(&app, &forged).await;
        assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(resp.json()["reason"], "invalid_signature");
    }
    // `alg: none` is not even a token.
    let none_header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(br#"{"alg":"none","kid":"rs-1","typ":"JWT"}"#);
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&claims).unwrap());
    let unsigned = format!("{none_header}.{payload}.");
    assert_error(
        &whoami(&app, &unsigned).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_and_a_flood_of_unknown_kids_is_not_a_flood_of_fetches() {
    let old = Key::es256("2026-11");
    let idp = Idp::start(&[&old]).await;
    let app = idp.app(idp.config(), &[]);
    let token = old.sign(&idp.claims(&app, "alice", &["viewer"]));
    assert_eq!(whoami(&app, &token).await.status, StatusCode::OK);
    assert_eq!(idp.state.fetches.load(Ordering::SeqCst), 1);

    // 200 tokens with made-up kids: at most one fetch per interval.
    for i in 0..200 {
        let t = Key::es256(&format!("bogus-{i}")).sign(&idp.claims(&app, "x", &["viewer"]));
        let resp = whoami(&app, &t).await;
        assert_eq!(resp.json()["reason"], "unknown_key");
    }
    let after_flood = idp.state.fetches.load(Ordering::SeqCst);
    assert!(
        after_flood <= 3,
        "{after_flood} fetches for 200 unknown kids"
    );

    // The provider rotates: the new kid is fetched once it is seen, no restart.
    let new = Key::es256("2026-12");
    *idp.state.keys.lock().unwrap() = vec![new.jwk.clone()];
    tokio::time::sleep(Duration::from_millis(250)).await;
    let rotated = new.sign(&idp.claims(&app, "alice", &["viewer"]));
    let me = whoami(&app, &rotated).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
}

#[tokio::test]
async fn an_unreachable_provider_is_503_for_its_tokens_only() {
    let es = Key::es256("es-1");
    let idp = Idp::start(&[&es]).await;
    idp.state.down.store(true, Ordering::SeqCst);
    let app = idp.app(idp.config(), &[]);
    let token = es.sign(&idp.claims(&app, "alice", &["admin"]));
    let resp = whoami(&app, &token).await;
    assert_error(&resp, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(resp.text().contains("identity provider"), "{}", resp.text());
    // Everything else works.
    assert_eq!(whoami(&app, ADMIN_TOKEN).await.status, StatusCode::OK);
    let plugin = app.register_ok("p1").await;
    assert_eq!(whoami(&app, &plugin).await.status, StatusCode::OK);
    // Back up: the next request after the interval fetches the keys.
    idp.state.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(whoami(&app, &token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn provider_roles_map_onto_ours() {
    let es = Key::es256("es-1");
    let idp = Idp::start(&[&es]).await;
    let app = idp.app(
        idp.config(),
        &[
            ("VIVIFIED_OIDC_ISSUER", &idp.issuer),
            ("VIVIFIED_OIDC_AUDIENCE", AUDIENCE),
            (
                "VIVIFIED_OIDC_ROLE_MAP",
                "vivified-admins=admin, ward-staff=viewer",
            ),
        ],
    );
    let admin = es.sign(&idp.claims(&app, "carol", &["ward-staff", "vivified-admins"]));
    assert_eq!(whoami(&app, &admin).await.json()["role"], "admin");
    // With a map, the plain role names are no longer roles.
    let plain = es.sign(&idp.claims(&app, "dave", &["admin"]));
    assert_eq!(whoami(&app, &plain).await.json()["reason"], "no_role");
}
