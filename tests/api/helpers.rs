//! Test support: a `TestApp` that builds the real router the way `startup/mod.rs` does
//! (in-memory adapters or an injected store, a controllable clock) and drives it with
//! `tower::ServiceExt::oneshot`, plus request builders and response assertions.
//!
//! Every response goes through one check: it never carries a token or secret the test
//! knows of, except the token a successful register/refresh just issued.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tower::ServiceExt;
use vivified_adapters::clock::ManualClock;
use vivified_adapters::jwt::{JwtConfig, JwtTokenIssuer};
use vivified_adapters::memory::{InMemoryAuditLog, InMemoryEventBus, InMemoryPluginStore};
use vivified_domain::audit_chain::ChainKey;
use vivified_domain::broker::{Broker, BrokerConfig};
use vivified_domain::policy::Policy;
use vivified_domain::{ManifestValidator, Ports, Registry};
use vivified_ports::{AuditLog, PluginId, PluginRecord, PluginStore, Secret, TokenIssuer};
use vivified_server::audit::AuditChain;
use vivified_server::routes::{App, router};
use vivified_server::{AppState, Services, Settings};
pub use vivified_test_support::fixtures::{manifest, subscriber};

/// The admin token every test app is configured with.
pub const ADMIN_TOKEN: &str = "adm-test-Q7w2E9r4T6y1U3i5";
/// The registration secret of production-mode test apps.
pub const REGISTRATION_SECRET: &str = "reg-test-P0o9I8u7Y6t5R4e3";
/// The JWT secret every test app signs with.
pub const JWT_SECRET: &str = "jwt-test-Zq3v9X1pLk2Rt7Yw0Bn4Hs8Dm6Fc5Ja1Ge";
/// A different, equally well-formed secret (tokens signed with it must not verify).
pub const OTHER_JWT_SECRET: &str = "jwt-other-Mn8Bv7Cx6Zl5Kj4Hg3Fd2Sa1Qw0Er9Ty";
/// The audit chain key every test app seals with.
pub const AUDIT_KEY: &str = "aud-test-Lk8Jh7Gf6Ds5Aq4Wz3Xs2Ec1Rv0Tb9Yn";

/// The members of a plugin record on the wire, exactly.
pub const RECORD_FIELDS: &[&str] = &[
    "plugin_id",
    "manifest",
    "status",
    "liveness",
    "health",
    "enabled",
    "disabled_reason",
    "registered_at",
    "last_heartbeat",
    "next_deadline",
    "approval",
    "pending_traits",
    "instances",
];

/// The members of a register/refresh answer, exactly.
pub const TOKEN_FIELDS: &[&str] = &[
    "status",
    "plugin_id",
    "instance_id",
    "token",
    "expires_at",
    "heartbeat_interval_secs",
    "heartbeat_interval_ms",
];

/// Builds a [`TestApp`].
pub struct AppBuilder {
    env: BTreeMap<String, String>,
    store: Option<Arc<dyn PluginStore>>,
    operators: Arc<dyn vivified_ports::OperatorStore>,
    identity: Option<Arc<dyn vivified_ports::ExternalIdentity>>,
    audit: Option<Arc<dyn AuditLog>>,
    policy: Option<Policy>,
}

impl AppBuilder {
    /// Sets an environment variable as `Settings::load` sees it.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Production mode with the shared registration secret allowed.
    pub fn production(self) -> Self {
        self.enrollment_only()
            .env("VIVIFIED_REGISTRATION_SECRET", REGISTRATION_SECRET)
            .env("VIVIFIED_REGISTRATION_SECRET_ALLOWED", "true")
    }

    /// Production mode where new plugins register only with enrollment tokens.
    pub fn enrollment_only(self) -> Self {
        self.env("VIVIFIED_MODE", "production")
    }

    /// Uses `store` instead of a fresh in-memory store.
    pub fn store(mut self, store: Arc<dyn PluginStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Verifies single sign-on tokens with `identity` (as the server does when
    /// `VIVIFIED_OIDC_ISSUER` is set).
    pub fn identity(mut self, identity: Arc<dyn vivified_ports::ExternalIdentity>) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Uses `policy` instead of the built-in one.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Uses `log` instead of a fresh in-memory audit log.
    pub fn audit(mut self, log: Arc<dyn AuditLog>) -> Self {
        self.audit = Some(log);
        self
    }

    /// Loads the settings and wires the app as `Application::build` does, with a
    /// manual clock standing at the current time.
    pub fn build(self) -> TestApp {
        let env = self.env;
        let policy = self.policy.unwrap_or_default();
        let settings =
            Settings::load(None, |k| env.get(k).cloned(), None).expect("test settings load");
        let jwt_secret = settings
            .jwt_secret
            .clone()
            .expect("test apps configure JWT_SECRET");
        let tokens = JwtTokenIssuer::new(JwtConfig {
            secret: Some(jwt_secret),
            ed25519_keys: Vec::new(),
            previous: settings.jwt_previous_secrets.clone(),
            ttl: settings.token_ttl,
        })
        .expect("token issuer");
        let jwks = serde_json::to_value(tokens.jwks()).expect("a JWK set");
        let store: Arc<dyn PluginStore> = self
            .store
            .unwrap_or_else(|| Arc::new(InMemoryPluginStore::new()));
        let clock = Arc::new(ManualClock::new(
            OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .expect("zero nanoseconds"),
        ));
        let bus = Arc::new(InMemoryEventBus::new(1024));
        let audit_log: Arc<dyn AuditLog> = self
            .audit
            .unwrap_or_else(|| Arc::new(InMemoryAuditLog::new(10_000)));
        let audit_key = settings
            .audit_key
            .as_ref()
            .map_or(AUDIT_KEY, |k| k.expose());
        let audit = AuditChain::new(
            audit_log.clone(),
            ChainKey::new(audit_key.as_bytes()).expect("a long enough audit key"),
        );
        let ports = Ports {
            store: store.clone(),
            operators: self.operators,
            identity: self.identity,
            tokens: Arc::new(tokens),
            clock: clock.clone(),
            bus: bus.clone(),
            audit: audit_log,
        };
        let config = settings.registry_config();
        let registry = Registry::new(
            ports,
            Arc::new(ManifestValidator::new().expect("schema compiles")),
            config,
        );
        let router = router(
            AppState::new(Services {
                registry: registry.clone(),
                max_body_bytes: settings.max_body_bytes,
                audit: audit.clone(),
                broker: Broker::new(registry.clone(), Arc::new(policy), BrokerConfig::default()),
                events_max_wait: settings.events_max_wait,
                jwks,
                registration_limit: vivified_server::rate_limit::AddressLimit::per_minute(
                    settings.registration_rate_limit,
                ),
                auth_failures: vivified_server::rate_limit::FailureLimit::per_minute(
                    settings.auth_failure_limit,
                ),
            }),
            &settings,
        );
        let mut known: BTreeSet<String> = [ADMIN_TOKEN, JWT_SECRET, OTHER_JWT_SECRET, AUDIT_KEY]
            .into_iter()
            .map(str::to_owned)
            .collect();
        if let Some(s) = &settings.registration_secret {
            known.insert(s.expose().to_owned());
        }
        TestApp {
            router,
            settings,
            clock,
            store,
            registry,
            bus,
            audit,
            known: Mutex::new(known),
        }
    }
}

/// The real router over real (or injected) adapters.
pub struct TestApp {
    router: App,
    /// The settings in force.
    pub settings: Settings,
    /// The registry's clock.
    pub clock: Arc<ManualClock>,
    /// The plugin store.
    pub store: Arc<dyn PluginStore>,
    /// The registry behind the router (to run sweeps).
    pub registry: Registry,
    /// The in-process bus (to watch lifecycle events).
    pub bus: Arc<InMemoryEventBus>,
    /// The audit log and its key (to seal, as the server's sealer task does).
    pub audit: AuditChain,
    /// Tokens and secrets no response may carry (except the token just issued).
    known: Mutex<BTreeSet<String>>,
}

/// A collected response.
#[derive(Debug)]
pub struct TestResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl TestResponse {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header").to_owned())
    }

    /// The `token` of a register/refresh answer.
    pub fn token(&self) -> String {
        self.json()["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {}", self.text()))
            .to_owned()
    }
}

impl TestApp {
    /// A dev-mode app with the test admin token and JWT secret.
    pub fn builder() -> AppBuilder {
        AppBuilder {
            env: [
                ("VIVIFIED_ADMIN_TOKEN", ADMIN_TOKEN),
                ("JWT_SECRET", JWT_SECRET),
                ("VIVIFIED_AUDIT_KEY", AUDIT_KEY),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            store: None,
            operators: Arc::new(InMemoryPluginStore::new()),
            identity: None,
            audit: None,
            policy: None,
        }
    }

    /// A dev-mode app over a fresh in-memory store.
    pub fn dev() -> TestApp {
        Self::builder().build()
    }

    /// A production-mode app over a fresh in-memory store.
    pub fn production() -> TestApp {
        Self::builder().production().build()
    }

    fn remember(&self, secret: &str) {
        // Short strings (e.g. `x`) could appear in any body by chance; real tokens are long.
        if secret.len() >= 16 {
            self.known
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(secret.to_owned());
        }
    }

    /// Sends `req` through the router and collects the response. Checks that no known
    /// token or secret comes back, except the token a successful register or refresh
    /// just issued (which is remembered from then on).
    pub async fn send(&self, req: Request<Body>) -> TestResponse {
        if let Some(auth) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let credential = auth.split_once(' ').map_or(auth, |(_, rest)| rest.trim());
            self.remember(credential);
        }
        let path = req.uri().path().to_owned();
        let resp = self
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("the router is infallible");
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .expect("body collects")
            .to_bytes()
            .to_vec();
        let resp = TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        };
        self.check_no_leak(&path, &resp);
        resp
    }

    fn check_no_leak(&self, path: &str, resp: &TestResponse) {
        let text = resp.text();
        let issues_tokens = path == "/plugins/register" || path.ends_with("/token");
        let issued = (resp.status == StatusCode::OK && issues_tokens)
            .then(|| serde_json::from_str::<Value>(&text).ok())
            .flatten()
            .and_then(|v| v["token"].as_str().map(str::to_owned));
        // The OpenAPI document is static text; its examples may show a sample JWT.
        if issued.is_none() && path != "/openapi.json" {
            assert!(
                !text.contains("eyJ"),
                "{path} answered {} with something like a JWT: {text}",
                resp.status
            );
        }
        let known = self
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for secret in &known {
            assert!(
                !text.contains(secret.as_str()),
                "{path} answered {} with a known token or secret in the body: {text}",
                resp.status
            );
            for (name, value) in &resp.headers {
                assert!(
                    !value
                        .as_bytes()
                        .windows(secret.len())
                        .any(|w| w == secret.as_bytes()),
                    "{path} answered with a known token or secret in header {name}"
                );
            }
        }
        if let Some(token) = issued {
            self.remember(&token);
        }
    }

    /// Sends a request with an optional bearer and an optional JSON body.
    pub async fn request(
        &self,
        method: Method,
        uri: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> TestResponse {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(v).expect("serializable"))
            }
            None => Body::empty(),
        };
        self.send(req.body(body).expect("valid request")).await
    }

    /// `GET uri`.
    pub async fn get(&self, uri: &str, bearer: Option<&str>) -> TestResponse {
        self.request(Method::GET, uri, bearer, None).await
    }

    /// `POST uri` with a JSON body.
    pub async fn post_json(&self, uri: &str, bearer: Option<&str>, body: &Value) -> TestResponse {
        self.request(Method::POST, uri, bearer, Some(body)).await
    }

    /// `POST uri` with raw bytes and an optional content type.
    pub async fn post_raw(
        &self,
        uri: &str,
        bearer: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> TestResponse {
        let mut req = Request::builder().method(Method::POST).uri(uri);
        if let Some(t) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        self.send(req.body(body.into()).expect("valid request"))
            .await
    }

    /// `DELETE uri`.
    pub async fn delete(&self, uri: &str, bearer: Option<&str>) -> TestResponse {
        self.request(Method::DELETE, uri, bearer, None).await
    }

    /// `POST /plugins/register` with `manifest` and an optional bearer.
    pub async fn register(&self, manifest: &Value, bearer: Option<&str>) -> TestResponse {
        self.post_json("/plugins/register", bearer, manifest).await
    }

    /// Registers `manifest(id)` (dev mode), asserts 200 and returns the token.
    pub async fn register_ok(&self, id: &str) -> String {
        let resp = self.register(&manifest(id), None).await;
        assert_eq!(
            resp.status,
            StatusCode::OK,
            "register {id}: {}",
            resp.text()
        );
        resp.token()
    }

    /// `POST /plugins/{id}/heartbeat` with an optional JSON body.
    pub async fn heartbeat(
        &self,
        id: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> TestResponse {
        self.request(
            Method::POST,
            &format!("/plugins/{id}/heartbeat"),
            bearer,
            body,
        )
        .await
    }

    /// `POST /plugins/{id}/token`.
    pub async fn refresh(&self, id: &str, bearer: Option<&str>) -> TestResponse {
        self.request(Method::POST, &format!("/plugins/{id}/token"), bearer, None)
            .await
    }

    /// The registry clock's time.
    pub fn clock_now(&self) -> OffsetDateTime {
        vivified_ports::Clock::now(&*self.clock)
    }

    /// `GET /plugins/{id}` as the admin, asserting 200.
    pub async fn record(&self, id: &str) -> Value {
        let resp = self.get(&format!("/plugins/{id}"), Some(ADMIN_TOKEN)).await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
        resp.json()
    }

    /// A correctly signed token for `id` issued at `at`, with a fresh `jti` that is not
    /// the plugin's current one. Signed with `secret`.
    pub async fn forge_with(&self, secret: &str, id: &str, at: OffsetDateTime) -> String {
        let issuer = JwtTokenIssuer::new(JwtConfig {
            secret: Some(Secret::new(secret)),
            ed25519_keys: Vec::new(),
            previous: Vec::new(),
            ttl: self.settings.token_ttl,
        })
        .expect("issuer");
        let token = issuer
            .issue(&PluginId::parse(id).expect("valid id"), at)
            .await
            .expect("signs")
            .token
            .expose()
            .to_owned();
        self.remember(&token);
        token
    }

    /// A token for `id` signed with the app's own secret, issued now.
    pub async fn forge(&self, id: &str) -> String {
        self.forge_with(JWT_SECRET, id, vivified_ports::Clock::now(&*self.clock))
            .await
    }

    /// The stored record (straight from the store).
    pub async fn stored(&self, id: &str) -> PluginRecord {
        self.store
            .get(&PluginId::parse(id).expect("valid id"))
            .await
            .expect("store answers")
            .expect("record exists")
    }

    /// Disables plugin `id` through `POST /plugins/{id}/disable`, as an operator would.
    pub async fn disable(&self, id: &str, reason: &str) {
        let resp = self
            .post_json(
                &format!("/plugins/{id}/disable"),
                Some(ADMIN_TOKEN),
                &serde_json::json!({ "reason": reason }),
            )
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    }
}

/// An example manifest from `schemas/examples/`.
pub fn example(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/examples")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("examples are JSON")
}

/// Asserts an error answer: the status, a JSON content type, `error` = `code`, a
/// non-empty `detail`, and `WWW-Authenticate: Bearer …` on 401.
pub fn assert_error(resp: &TestResponse, status: StatusCode, code: &str) {
    assert_eq!(
        resp.status,
        status,
        "expected {status} {code}, got {}: {}",
        resp.status,
        resp.text()
    );
    let ct = resp.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "error content type {ct:?}"
    );
    let body = resp.json();
    assert!(body.is_object(), "error body is an object: {body}");
    assert_eq!(body["error"], code, "error code in {body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(!detail.trim().is_empty(), "detail is a sentence: {body}");
    if status == StatusCode::UNAUTHORIZED {
        let www = resp
            .header("www-authenticate")
            .expect("401 carries WWW-Authenticate");
        assert!(www.starts_with("Bearer"), "WWW-Authenticate: {www}");
    } else {
        assert!(
            resp.header("www-authenticate").is_none(),
            "only 401 carries WWW-Authenticate"
        );
    }
}

/// Asserts that `v` is an RFC 3339 UTC timestamp and returns it.
pub fn rfc3339_utc(v: &Value) -> OffsetDateTime {
    let s = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    let t = OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("{s}: {e}"));
    assert!(t.offset().is_utc(), "{s} is UTC");
    assert!(s.ends_with('Z'), "{s} is written in UTC");
    t
}

/// The sorted member names of a JSON object.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

/// `names`, sorted, as owned strings.
pub fn sorted(names: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    k.sort();
    k
}

/// Asserts that `v` is a plugin record on the wire with exactly the documented members.
pub fn assert_record_shape(v: &Value) {
    assert_eq!(keys(v), sorted(RECORD_FIELDS), "record members: {v}");
    assert!(
        ["registered", "active", "stale"].contains(&v["status"].as_str().unwrap_or("")),
        "status: {v}"
    );
    assert_eq!(
        v["liveness"], v["status"],
        "liveness is status under its own name: {v}"
    );
    assert!(
        ["unknown", "healthy", "degraded", "unhealthy"]
            .contains(&v["health"].as_str().unwrap_or("")),
        "health: {v}"
    );
    assert!(v["enabled"].is_boolean());
    assert!(v["manifest"].is_object());
    rfc3339_utc(&v["registered_at"]);
    if !v["last_heartbeat"].is_null() {
        rfc3339_utc(&v["last_heartbeat"]);
    }
}

/// A valid manifest of a plugin that handles PHI (with `extra_traits`, e.g.
/// `external_service`, and `subscriptions`).
pub fn phi_manifest(id: &str, extra_traits: &[&str], subscriptions: &[&str]) -> Value {
    let mut traits = vec!["handles_phi", "requires_encryption", "audit_required"];
    traits.extend_from_slice(extra_traits);
    let mut m = json!({
        "id": id,
        "name": format!("Plugin {id}"),
        "version": "1.0.0",
        "contracts": ["StoragePlugin"],
        "traits": traits,
        "security": {"authentication_required": true, "data_classification": ["phi", "internal"]},
        "compliance": {"hipaa_controls": ["164.312(b)"], "audit_level": "complete"},
        "subscriptions": subscriptions
    });
    if extra_traits.contains(&"external_service") {
        m["allowed_domains"] = json!(["api.example.com"]);
    }
    m
}

/// Registers `m` without a credential (dev mode), asserts 200 and returns the token.
pub async fn register_token(app: &TestApp, m: &Value) -> String {
    let resp = app.register(m, None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    resp.token()
}

/// The types of the lifecycle events received on `rx` since it was last drained.
pub fn drain_lifecycle(
    rx: &mut tokio::sync::broadcast::Receiver<vivified_ports::BusEvent>,
) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) => out.push(e.event_type),
            Err(tokio::sync::broadcast::error::TryRecvError::Empty) => return out,
            Err(e) => panic!("bus: {e}"),
        }
    }
}

/// The sealed audit entries with `action`, after sealing everything pending (as the
/// server's sealer task would).
pub async fn sealed_entries(app: &TestApp, action: &str) -> Vec<vivified_ports::SealedEntry> {
    app.audit
        .seal_all(std::time::Duration::from_secs(5))
        .await
        .expect("seal");
    let entries = app.audit.log.range(1, 10_000).await.expect("audit range");
    entries
        .into_iter()
        .filter(|e| e.entry.action == action)
        .collect()
}
