//! Authenticating an operator: its API token (one store read, one SHA-256, one
//! constant-time comparison) and its identity provider's token with the keys cached
//! (ES256 and RS256; a token seen before is not verified again). Target: each ≤ 10 µs
//! median. The bootstrap admin token is measured beside them.
//!
//! `cargo bench -p vivified-tests --bench auth`

use std::sync::Arc;

use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use vivified_adapters::clock::ManualClock;
use vivified_adapters::jwt::{JwtConfig, JwtTokenIssuer};
use vivified_adapters::memory::{InMemoryAuditLog, InMemoryEventBus, InMemoryPluginStore};
use vivified_adapters::oidc::{OidcConfig, OidcVerifier};
use vivified_domain::{Caller, ManifestValidator, Ports, Registry, RegistryConfig};
use vivified_ports::{ExternalIdentity, Secret};

const ADMIN: &str = "bench-admin-token-of-some-length";

fn es256() -> (EncodingKey, Jwk) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a key");
    let key = EncodingKey::from_ec_der(&pair.serialize_der());
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).expect("a JWK");
    jwk.common.key_id = Some("es".to_owned());
    (key, jwk)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let (key, jwk) = es256();
    // The provider: serves its key set on 127.0.0.1.
    let issuer = rt.block_on(async {
        let set = JwkSet { keys: vec![jwk] };
        let app = axum::Router::new().route(
            "/jwks",
            get(move || {
                let set = set.clone();
                async move { axum::Json(set) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let issuer = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        issuer
    });
    let mut config = OidcConfig::new(&issuer, "bench");
    config.jwks_url = Some(format!("{issuer}/jwks"));
    let identity: Arc<dyn ExternalIdentity> = Arc::new(rt.block_on(OidcVerifier::start(config)));
    let store = Arc::new(InMemoryPluginStore::new());
    let now = time::OffsetDateTime::now_utc();
    let registry = Registry::new(
        Ports {
            store: store.clone(),
            operators: store,
            identity: Some(identity),
            tokens: Arc::new(
                JwtTokenIssuer::new(JwtConfig::new(Secret::new(
                    "bench-jwt-secret-of-at-least-32-bytes",
                )))
                .expect("jwt"),
            ),
            clock: Arc::new(ManualClock::new(now)),
            bus: Arc::new(InMemoryEventBus::new(1024)),
            audit: Arc::new(InMemoryAuditLog::new(1 << 16)),
        },
        Arc::new(ManifestValidator::new().expect("schema")),
        RegistryConfig {
            admin_token: Some(Secret::new(ADMIN)),
            ..RegistryConfig::default()
        },
    );
    let operator_token = rt.block_on(async {
        registry
            .create_operator(Some(ADMIN), "alice", "operator", None, "bench")
            .await
            .expect("an operator");
        registry
            .create_operator_token(Some(ADMIN), "alice", "bench", None, "bench")
            .await
            .expect("a token")
            .token
    });
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("es".to_owned());
    let oidc_token = jsonwebtoken::encode(
        &header,
        &json!({"iss": issuer, "aud": "bench", "sub": "s-1", "preferred_username": "bob",
                "roles": ["auditor"], "exp": now.unix_timestamp() + 3600}),
        &key,
    )
    .expect("a token");

    let mut group = c.benchmark_group("authenticate");
    for (name, token) in [
        ("operator_token", operator_token.expose().to_owned()),
        ("oidc_es256_cached_keys", oidc_token),
        ("bootstrap_admin_token", ADMIN.to_owned()),
    ] {
        // Every case authenticates an operator.
        let caller = rt.block_on(registry.authenticate(Some(&token)));
        assert!(
            matches!(caller, Ok(Caller::Operator(_))),
            "{name}: {caller:?}"
        );
        group.bench_function(name, |b| {
            b.iter(|| rt.block_on(registry.authenticate(Some(&token))));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
