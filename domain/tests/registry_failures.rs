//! Failure paths of the registry, with mockall mocks of the ports: a failing store,
//! audit log, token issuer or bus turns into `RegistryError::Unavailable` (or is
//! tolerated, for the bus) — never a panic, never the cause in the message.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use vivified_adapters::clock::ManualClock;
use vivified_adapters::jwt::{JwtConfig, JwtTokenIssuer};
use vivified_adapters::memory::InMemoryPluginStore;
use vivified_conformance::store::{record, t0};
use vivified_domain::{
    HeartbeatReport, ManifestValidator, Ports, Registry, RegistryConfig, RegistryError,
};
use vivified_ports::audit::MockAuditLog;
use vivified_ports::bus::MockEventBus;
use vivified_ports::store::MockPluginStore;
use vivified_ports::token::MockTokenIssuer;
use vivified_ports::{
    AuditEntry, AuditError, AuditOutcome, BusError, Health, IssuedToken, PluginId, PluginRecord,
    PluginStore, Secret, StoreError, TokenClaims, TokenError,
};

const ADMIN: &str = "admin-token-for-the-failure-tests";
/// Text that must never reach a client: it is the "cause" inside port errors.
const INTERNALS: &str = "connection refused to db.internal:5432 password=hunter2";

fn manifest(id: &str) -> Value {
    json!({
        "id": id,
        "name": "Failure Test",
        "version": "1.0.0",
        "contracts": [],
        "traits": [],
        "security": {"authentication_required": false, "data_classification": ["public"]},
        "compliance": {"hipaa_controls": [], "audit_level": "none"}
    })
}

fn pid(id: &str) -> PluginId {
    PluginId::parse(id).expect("valid id")
}

fn down() -> StoreError {
    StoreError::Unavailable(INTERNALS.into())
}

/// The fake token format of [`fake_tokens`]: `tok:<plugin>:<jti>`.
fn tok(id: &str, jti: &str) -> String {
    format!("tok:{id}:{jti}")
}

/// A token issuer mock that issues `tok:<plugin>:<jti-n>` and verifies that format.
fn fake_tokens() -> MockTokenIssuer {
    let mut tokens = MockTokenIssuer::new();
    let counter = Arc::new(Mutex::new(0u32));
    tokens.expect_issue().returning(move |id, now| {
        let mut n = counter.lock().unwrap();
        *n += 1;
        let jti = format!("new-{n}");
        Ok(IssuedToken {
            token: Secret::new(tok(id.as_str(), &jti)),
            jti,
            expires_at: now + time::Duration::hours(1),
        })
    });
    tokens.expect_verify().returning(|token, opts| {
        let mut parts = token.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("tok"), Some(id), Some(jti)) => Ok(TokenClaims {
                plugin_id: PluginId::parse(id).map_err(|_| TokenError::Invalid("subject"))?,
                jti: jti.to_owned(),
                issued_at: opts.now,
                expires_at: opts.now + time::Duration::hours(1),
            }),
            _ => Err(TokenError::Invalid("malformed")),
        }
    });
    tokens
}

fn ok_bus() -> MockEventBus {
    let mut bus = MockEventBus::new();
    bus.expect_has_subscribers().return_const(true);
    bus.expect_publish().returning(|_| Ok(()));
    bus
}

/// An audit log mock that accepts and keeps every entry.
fn ok_audit() -> (MockAuditLog, Arc<Mutex<Vec<AuditEntry>>>) {
    let entries = Arc::new(Mutex::new(Vec::new()));
    let mut audit = MockAuditLog::new();
    let kept = Arc::clone(&entries);
    audit.expect_append().returning(move |e| {
        kept.lock().unwrap().push(e);
        Ok(())
    });
    (audit, entries)
}

fn failing_audit() -> MockAuditLog {
    let mut audit = MockAuditLog::new();
    audit
        .expect_append()
        .returning(|_| Err(AuditError::Unavailable(INTERNALS.into())));
    audit
}

fn config() -> RegistryConfig {
    RegistryConfig {
        admin_token: Some(Secret::new(ADMIN)),
        ..RegistryConfig::default()
    }
}

fn registry_with(
    store: Arc<dyn PluginStore>,
    tokens: impl vivified_ports::TokenIssuer + 'static,
    bus: impl vivified_ports::EventBus + 'static,
    audit: impl vivified_ports::AuditLog + 'static,
) -> Registry {
    let ports = Ports {
        operators: Arc::new(vivified_adapters::memory::InMemoryPluginStore::new()),
        identity: None,
        store,
        tokens: Arc::new(tokens),
        clock: Arc::new(ManualClock::new(t0())),
        bus: Arc::new(bus),
        audit: Arc::new(audit),
    };
    Registry::new(
        ports,
        Arc::new(ManifestValidator::new().expect("schema compiles")),
        config(),
    )
}

fn registry(store: MockPluginStore) -> Registry {
    registry_with(Arc::new(store), fake_tokens(), ok_bus(), ok_audit().0)
}

/// A stored record of `id` whose current token is `tok(id, jti)`.
fn stored(id: &str, jti: &str) -> PluginRecord {
    PluginRecord {
        version: 3,
        manifest: vivified_ports::StoredManifest::from_value(&manifest(id)),
        ..record(id, jti)
    }
}

#[track_caller]
fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, RegistryError>, what: &str) {
    match result {
        Err(e @ RegistryError::Unavailable { .. }) => {
            let RegistryError::Unavailable { what: w, .. } = &e else {
                unreachable!()
            };
            assert_eq!(*w, what, "{e:?}");
            let shown = e.to_string();
            assert_eq!(shown, format!("{what} unavailable"));
            assert!(
                !shown.contains("hunter2"),
                "the cause never reaches the message"
            );
        }
        other => panic!("expected {what} unavailable, got {other:?}"),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn healthy() -> HeartbeatReport {
    HeartbeatReport {
        health: Health::Healthy,
    }
}

// ---------------------------------------------------------------------------------
// Store unavailable
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn register_when_store_get_fails_is_unavailable() {
    // A plugin token means a possible re-registration: the record is read first.
    let mut store = MockPluginStore::new();
    store.expect_get().returning(|_| Err(down()));
    store.expect_insert().never();
    let r = registry(store);
    let bearer = tok("alpha", "j1");
    assert_unavailable(
        r.register(&manifest("alpha"), Some(&bearer), "t").await,
        "plugin store",
    );
}

#[tokio::test]
async fn a_new_registration_is_one_store_write_and_no_read() {
    // Without a credential (dev mode) only a new id can be registered: the store's
    // primary key decides, with no read before the insert.
    let mut store = MockPluginStore::new();
    store.expect_get().never();
    store.expect_insert().times(1).returning(|mut r| {
        r.version = 1;
        Ok(r)
    });
    let r = registry(store);
    assert!(r.register(&manifest("alpha"), None, "t").await.is_ok());
}

#[tokio::test]
async fn an_invalid_manifest_is_400_whatever_its_id_before_the_store_is_asked() {
    // Validation before conflict: whether `alpha` is held is never looked up.
    let mut store = MockPluginStore::new();
    store.expect_get().never();
    store.expect_insert().never();
    let r = registry(store);
    let mut bad = manifest("alpha");
    bad["version"] = json!("1.0");
    match r.register(&bad, None, "t").await {
        Err(RegistryError::InvalidManifest(v)) => {
            assert_eq!(v.len(), 1, "{v:?}");
            assert_eq!(
                (v[0].path.as_str(), v[0].code.as_str()),
                ("/version", "pattern")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn register_when_store_insert_fails_is_unavailable() {
    let mut store = MockPluginStore::new();
    store.expect_get().returning(|_| Ok(None));
    store.expect_insert().times(1).returning(|_| Err(down()));
    let r = registry(store);
    assert_unavailable(
        r.register(&manifest("alpha"), None, "t").await,
        "plugin store",
    );
}

#[tokio::test]
async fn reregister_when_store_replace_fails_is_unavailable() {
    let mut store = MockPluginStore::new();
    store
        .expect_get()
        .returning(|_| Ok(Some(stored("alpha", "j1"))));
    store
        .expect_replace()
        .times(1)
        .returning(|_, _| Err(down()));
    let r = registry(store);
    let bearer = tok("alpha", "j1");
    assert_unavailable(
        r.register(&manifest("alpha"), Some(&bearer), "t").await,
        "plugin store",
    );
}

#[tokio::test]
async fn heartbeat_when_store_record_heartbeat_fails_is_unavailable() {
    let mut store = MockPluginStore::new();
    store
        .expect_record_heartbeat()
        .times(1)
        .returning(|_, _, _, _, _| Err(down()));
    let r = registry(store);
    let bearer = tok("alpha", "j1");
    assert_unavailable(
        r.heartbeat("alpha", Some(&bearer), healthy()).await,
        "plugin store",
    );
}

#[tokio::test]
async fn heartbeat_when_the_diagnosing_get_fails_is_unavailable() {
    let mut store = MockPluginStore::new();
    store
        .expect_record_heartbeat()
        .returning(|_, _, _, _, _| Err(StoreError::PreconditionFailed));
    store.expect_get().times(1).returning(|_| Err(down()));
    let r = registry(store);
    let bearer = tok("alpha", "j1");
    assert_unavailable(
        r.heartbeat("alpha", Some(&bearer), healthy()).await,
        "plugin store",
    );
}

#[tokio::test]
async fn heartbeat_precondition_failures_are_diagnosed() {
    let bearer = tok("alpha", "j1");
    // A current, enabled record that still refused the write: not a client error.
    let mut store = MockPluginStore::new();
    store
        .expect_record_heartbeat()
        .returning(|_, _, _, _, _| Err(StoreError::PreconditionFailed));
    store
        .expect_get()
        .returning(|_| Ok(Some(stored("alpha", "j1"))));
    assert_unavailable(
        registry(store)
            .heartbeat("alpha", Some(&bearer), healthy())
            .await,
        "plugin store",
    );
    // Disabled.
    let mut store = MockPluginStore::new();
    store
        .expect_record_heartbeat()
        .returning(|_, _, _, _, _| Err(StoreError::PreconditionFailed));
    store.expect_get().returning(|_| {
        Ok(Some(PluginRecord {
            enabled: false,
            disabled_reason: Some("maintenance".into()),
            ..stored("alpha", "j1")
        }))
    });
    assert!(matches!(
        registry(store)
            .heartbeat("alpha", Some(&bearer), healthy())
            .await,
        Err(RegistryError::PluginDisabled)
    ));
    // Revoked.
    let mut store = MockPluginStore::new();
    store
        .expect_record_heartbeat()
        .returning(|_, _, _, _, _| Err(StoreError::PreconditionFailed));
    store
        .expect_get()
        .returning(|_| Ok(Some(stored("alpha", "j2"))));
    assert!(matches!(
        registry(store)
            .heartbeat("alpha", Some(&bearer), healthy())
            .await,
        Err(RegistryError::Unauthorized("revoked_token"))
    ));
    // Deleted between the two calls.
    let mut store = MockPluginStore::new();
    store
        .expect_record_heartbeat()
        .returning(|_, _, _, _, _| Err(StoreError::PreconditionFailed));
    store.expect_get().returning(|_| Ok(None));
    assert!(matches!(
        registry(store)
            .heartbeat("alpha", Some(&bearer), healthy())
            .await,
        Err(RegistryError::Unauthorized("unknown_plugin"))
    ));
    // Not found at all.
    let mut store = MockPluginStore::new();
    store
        .expect_record_heartbeat()
        .returning(|_, _, _, _, _| Err(StoreError::NotFound));
    assert!(matches!(
        registry(store)
            .heartbeat("alpha", Some(&bearer), healthy())
            .await,
        Err(RegistryError::Unauthorized("unknown_plugin"))
    ));
}

#[tokio::test]
async fn list_when_store_fails_is_unavailable() {
    let mut store = MockPluginStore::new();
    store.expect_list().times(1).returning(|_, _| Err(down()));
    let r = registry(store);
    assert_unavailable(r.list(Some(ADMIN), None, 100).await, "plugin store");
}

#[tokio::test]
async fn get_when_store_fails_is_unavailable() {
    let mut store = MockPluginStore::new();
    store.expect_get().returning(|_| Err(down()));
    let r = registry(store);
    assert_unavailable(r.get("alpha", Some(ADMIN)).await, "plugin store");
    let bearer = tok("alpha", "j1");
    assert_unavailable(r.get("alpha", Some(&bearer)).await, "plugin store");
}

#[tokio::test]
async fn deregister_when_store_delete_fails_is_unavailable() {
    let mut store = MockPluginStore::new();
    store
        .expect_get()
        .returning(|_| Ok(Some(stored("alpha", "j1"))));
    store.expect_delete().times(2).returning(|_, _| Err(down()));
    let r = registry(store);
    assert_unavailable(
        r.deregister("alpha", Some(ADMIN), "t").await,
        "plugin store",
    );
    let bearer = tok("alpha", "j1");
    assert_unavailable(
        r.deregister("alpha", Some(&bearer), "t").await,
        "plugin store",
    );
}

#[tokio::test]
async fn deregister_by_plugin_when_store_get_fails_is_unavailable() {
    let mut store = MockPluginStore::new();
    store.expect_get().returning(|_| Err(down()));
    store.expect_delete().never();
    let r = registry(store);
    let bearer = tok("alpha", "j1");
    assert_unavailable(
        r.deregister("alpha", Some(&bearer), "t").await,
        "plugin store",
    );
}

#[tokio::test]
async fn refresh_when_store_fails_is_unavailable() {
    let bearer = tok("alpha", "j1");
    let mut store = MockPluginStore::new();
    store.expect_get().returning(|_| Err(down()));
    store.expect_replace().never();
    assert_unavailable(
        registry(store)
            .refresh_token("alpha", Some(&bearer), "t")
            .await,
        "plugin store",
    );
    let mut store = MockPluginStore::new();
    store
        .expect_get()
        .returning(|_| Ok(Some(stored("alpha", "j1"))));
    store
        .expect_replace()
        .times(1)
        .returning(|_, _| Err(down()));
    assert_unavailable(
        registry(store)
            .refresh_token("alpha", Some(&bearer), "t")
            .await,
        "plugin store",
    );
}

#[tokio::test]
async fn a_record_that_never_stops_changing_gives_up_instead_of_spinning() {
    let bearer = tok("alpha", "j1");
    let mut store = MockPluginStore::new();
    store
        .expect_get()
        .returning(|_| Ok(Some(stored("alpha", "j1"))));
    store
        .expect_replace()
        .times(1..=16)
        .returning(|_, _| Err(StoreError::PreconditionFailed));
    assert_unavailable(
        registry(store)
            .refresh_token("alpha", Some(&bearer), "t")
            .await,
        "plugin store",
    );
    let mut store = MockPluginStore::new();
    store
        .expect_get()
        .returning(|_| Ok(Some(stored("alpha", "j1"))));
    store
        .expect_replace()
        .times(1..=16)
        .returning(|_, _| Err(StoreError::PreconditionFailed));
    assert_unavailable(
        registry(store)
            .register(&manifest("alpha"), Some(&bearer), "t")
            .await,
        "plugin store",
    );
}

#[tokio::test]
async fn ready_when_store_ping_fails_is_unavailable() {
    let mut store = MockPluginStore::new();
    store.expect_ping().times(1).returning(|| Err(down()));
    assert_unavailable(registry(store).ready().await, "plugin store");
}

#[tokio::test]
async fn concurrent_registration_lost_the_race_is_already_registered() {
    let mut store = MockPluginStore::new();
    // The id looked free, but another registration inserted it first.
    store.expect_get().returning(|_| Ok(None));
    store
        .expect_insert()
        .times(1)
        .returning(|_| Err(StoreError::Conflict));
    let (audit, entries) = ok_audit();
    let r = registry_with(Arc::new(store), fake_tokens(), ok_bus(), audit);
    let result = r.register(&manifest("alpha"), None, "trace-race").await;
    assert!(
        matches!(result, Err(RegistryError::AlreadyRegistered)),
        "{result:?}"
    );
    let entries = entries.lock().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].outcome, AuditOutcome::Denied);
    assert_eq!(entries[0].reason, "already_registered");
    assert_eq!(entries[0].target, "alpha");
    assert_eq!(entries[0].trace_id, "trace-race");
}

// ---------------------------------------------------------------------------------
// Audit log unavailable: fail closed
// ---------------------------------------------------------------------------------

fn free_store() -> MockPluginStore {
    let mut store = MockPluginStore::new();
    store.expect_get().returning(|_| Ok(None));
    store.expect_insert().returning(|mut r| {
        r.version = 1;
        Ok(r)
    });
    store
}

#[tokio::test]
async fn register_fails_closed_when_the_audit_log_fails() {
    let mut store = free_store();
    // The unaudited insert is undone, conditionally on the token id it wrote.
    store
        .expect_delete()
        .withf(|id, jti| id.as_str() == "alpha" && jti.is_some())
        .times(1)
        .returning(|_, _| Ok(()));
    let r = registry_with(Arc::new(store), fake_tokens(), ok_bus(), failing_audit());
    assert_unavailable(r.register(&manifest("alpha"), None, "t").await, "audit log");
}

#[tokio::test]
async fn a_refused_registration_fails_closed_when_the_audit_log_fails() {
    // Denials are audited too; if that fails the caller gets 503, not the denial.
    let r = registry_with(
        Arc::new(free_store()),
        fake_tokens(),
        ok_bus(),
        failing_audit(),
    );
    let mut bad = manifest("alpha");
    bad["version"] = json!("1.0");
    assert_unavailable(r.register(&bad, None, "t").await, "audit log");
}

#[tokio::test]
async fn refresh_and_deregister_fail_closed_when_the_audit_log_fails() {
    let mut store = MockPluginStore::new();
    store
        .expect_get()
        .returning(|_| Ok(Some(stored("alpha", "j1"))));
    store.expect_replace().returning(|mut r, v| {
        r.version = v + 1;
        Ok(r)
    });
    store.expect_delete().returning(|_, _| Ok(()));
    // The unaudited deregistration is undone by putting the record back.
    store
        .expect_insert()
        .withf(|r| r.instances[0].token_jti == "j1")
        .times(1)
        .returning(|mut r| {
            r.version = 1;
            Ok(r)
        });
    let r = registry_with(Arc::new(store), fake_tokens(), ok_bus(), failing_audit());
    let bearer = tok("alpha", "j1");
    assert_unavailable(
        r.refresh_token("alpha", Some(&bearer), "t").await,
        "audit log",
    );
    assert_unavailable(r.deregister("alpha", Some(ADMIN), "t").await, "audit log");
}

/// A real registry (in-memory store, real JWTs) whose audit log can be switched off.
fn switchable() -> (Registry, Arc<AtomicBool>) {
    let audit_up = Arc::new(AtomicBool::new(true));
    let up = Arc::clone(&audit_up);
    let mut audit = MockAuditLog::new();
    audit.expect_append().returning(move |_| {
        if up.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(AuditError::Unavailable(INTERNALS.into()))
        }
    });
    let mut jwt = JwtConfig::new(Secret::new("a-secret-of-at-least-32-bytes!!!"));
    jwt.ttl = std::time::Duration::from_secs(3600);
    let r = registry_with(
        Arc::new(InMemoryPluginStore::new()),
        JwtTokenIssuer::new(jwt).expect("jwt config"),
        ok_bus(),
        audit,
    );
    (r, audit_up)
}

/// BUG (fail closed): `Registry::register` inserts the record, then audits; when the
/// audit append fails it answers 503 but the record stays, holding the id with a token
/// nobody received. The plugin's retry then gets 409 `already_registered` forever.
/// A failed operation must not take effect: the retry must succeed.
#[tokio::test]
async fn a_registration_refused_by_the_audit_log_can_be_retried() {
    let (r, audit_up) = switchable();
    audit_up.store(false, Ordering::SeqCst);
    assert_unavailable(r.register(&manifest("alpha"), None, "t").await, "audit log");
    audit_up.store(true, Ordering::SeqCst);
    let retry = r.register(&manifest("alpha"), None, "t").await;
    assert!(
        retry.is_ok(),
        "a registration answered with 503 must not hold the id; retry got {retry:?}"
    );
}

/// BUG (fail closed): `Registry::refresh_token` replaces the record's `token_jti`, then
/// audits; when the audit append fails it answers 503, the new token is never
/// delivered, and the old one is already revoked: the plugin is locked out (it cannot
/// re-register either, that needs its current token).
#[tokio::test]
async fn a_refresh_refused_by_the_audit_log_keeps_the_old_token() {
    let (r, audit_up) = switchable();
    let reg = r
        .register(&manifest("alpha"), None, "t")
        .await
        .expect("registered");
    let old = reg.token.expose().to_owned();
    audit_up.store(false, Ordering::SeqCst);
    assert_unavailable(r.refresh_token("alpha", Some(&old), "t").await, "audit log");
    audit_up.store(true, Ordering::SeqCst);
    let hb = r.heartbeat("alpha", Some(&old), healthy()).await;
    assert!(
        hb.is_ok(),
        "a refresh answered with 503 must not revoke the old token; heartbeat got {hb:?}"
    );
}

/// BUG (fail closed): `Registry::deregister` deletes, then audits; when the audit
/// append fails it answers 503 although the plugin is gone.
#[tokio::test]
async fn a_deregistration_refused_by_the_audit_log_leaves_the_plugin_registered() {
    let (r, audit_up) = switchable();
    let reg = r
        .register(&manifest("alpha"), None, "t")
        .await
        .expect("registered");
    audit_up.store(false, Ordering::SeqCst);
    assert_unavailable(r.deregister("alpha", Some(ADMIN), "t").await, "audit log");
    audit_up.store(true, Ordering::SeqCst);
    let got = r.get("alpha", Some(reg.token.expose())).await;
    assert!(
        got.is_ok(),
        "a deregistration answered with 503 must not delete; get got {got:?}"
    );
}

// ---------------------------------------------------------------------------------
// Token issuer and bus
// ---------------------------------------------------------------------------------

fn failing_signer() -> MockTokenIssuer {
    let mut tokens = MockTokenIssuer::new();
    tokens
        .expect_issue()
        .returning(|_, _| Err(TokenError::Signing(INTERNALS.into())));
    tokens.expect_verify().returning(|token, opts| {
        let (_, rest) = token
            .split_once("tok:")
            .ok_or(TokenError::Invalid("malformed"))?;
        let (id, jti) = rest
            .split_once(':')
            .ok_or(TokenError::Invalid("malformed"))?;
        Ok(TokenClaims {
            plugin_id: pid(id),
            jti: jti.to_owned(),
            issued_at: opts.now,
            expires_at: opts.now + time::Duration::hours(1),
        })
    });
    tokens
}

#[tokio::test]
async fn register_when_signing_fails_is_unavailable_and_writes_nothing() {
    let mut store = MockPluginStore::new();
    store.expect_get().returning(|_| Ok(None));
    store.expect_insert().never();
    let r = registry_with(Arc::new(store), failing_signer(), ok_bus(), ok_audit().0);
    assert_unavailable(
        r.register(&manifest("alpha"), None, "t").await,
        "token issuer",
    );
}

#[tokio::test]
async fn refresh_and_reregister_when_signing_fails_are_unavailable_and_write_nothing() {
    let mut store = MockPluginStore::new();
    store
        .expect_get()
        .returning(|_| Ok(Some(stored("alpha", "j1"))));
    store.expect_replace().never();
    let r = registry_with(Arc::new(store), failing_signer(), ok_bus(), ok_audit().0);
    let bearer = tok("alpha", "j1");
    assert_unavailable(
        r.refresh_token("alpha", Some(&bearer), "t").await,
        "token issuer",
    );
    assert_unavailable(
        r.register(&manifest("alpha"), Some(&bearer), "t").await,
        "token issuer",
    );
}

#[tokio::test]
async fn a_failing_bus_does_not_fail_registration_or_deregistration() {
    let mut bus = MockEventBus::new();
    bus.expect_has_subscribers().return_const(true);
    bus.expect_publish()
        .times(2)
        .returning(|_| Err(BusError::Unavailable(INTERNALS.into())));
    bus.expect_remove_queue()
        .times(1)
        .returning(|_| Err(BusError::Unavailable(INTERNALS.into())));
    let (audit, entries) = ok_audit();
    let store = Arc::new(InMemoryPluginStore::new());
    let r = registry_with(store.clone(), fake_tokens(), bus, audit);
    let reg = r
        .register(&manifest("alpha"), None, "t")
        .await
        .expect("registration succeeds without the bus");
    assert_eq!(reg.plugin_id, pid("alpha"));
    assert!(!reg.reregistered);
    assert_eq!(store.len(), 1);
    r.deregister("alpha", Some(reg.token.expose()), "t")
        .await
        .expect("deregistration succeeds without the bus");
    assert!(store.is_empty());
    let actions: Vec<String> = entries
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.action.clone())
        .collect();
    assert_eq!(actions, ["plugin.register", "plugin.deregister"]);
}

#[test]
fn failures_never_panic_on_a_current_thread_runtime() {
    // Every operation against a store that is down, driven the way a server would.
    let rt = rt();
    rt.block_on(async {
        let mut store = MockPluginStore::new();
        store.expect_get().returning(|_| Err(down()));
        store.expect_insert().returning(|_| Err(down()));
        store.expect_list().returning(|_, _| Err(down()));
        store.expect_replace().returning(|_, _| Err(down()));
        store
            .expect_record_heartbeat()
            .returning(|_, _, _, _, _| Err(down()));
        store.expect_delete().returning(|_, _| Err(down()));
        store.expect_ping().returning(|| Err(down()));
        let r = registry(store);
        let bearer = tok("alpha", "j1");
        let b = Some(bearer.as_str());
        assert_unavailable(r.register(&manifest("alpha"), b, "t").await, "plugin store");
        assert_unavailable(r.heartbeat("alpha", b, healthy()).await, "plugin store");
        assert_unavailable(r.refresh_token("alpha", b, "t").await, "plugin store");
        assert_unavailable(r.get("alpha", b).await, "plugin store");
        assert_unavailable(r.deregister("alpha", b, "t").await, "plugin store");
        assert_unavailable(r.list(Some(ADMIN), None, 10).await, "plugin store");
        assert_unavailable(r.ready().await, "plugin store");
        // Authentication failures still come first: no store call needed to refuse.
        assert!(matches!(
            r.heartbeat("alpha", None, healthy()).await,
            Err(RegistryError::Unauthorized("missing_credentials"))
        ));
        assert!(matches!(
            r.list(Some("garbage"), None, 10).await,
            Err(RegistryError::Unauthorized("invalid_token"))
        ));
    });
}

/// A stale record of `id` (dev-mode replaceable) with current token `tok(id, jti)`.
fn stale(id: &str, jti: &str) -> PluginRecord {
    with_status(stored(id, jti), vivified_ports::Liveness::Stale, None)
}

/// `record` with its one instance in `status`, due at `deadline`.
fn with_status(
    mut record: PluginRecord,
    status: vivified_ports::Liveness,
    deadline: Option<time::OffsetDateTime>,
) -> PluginRecord {
    record.instances[0].status = status;
    record.instances[0].next_deadline = deadline;
    record.settle();
    record
}

#[tokio::test]
async fn a_replacement_the_audit_log_refuses_is_undone() {
    let store = Arc::new(InMemoryPluginStore::new());
    store.insert(stale("alpha", "j1")).await.unwrap();
    let r = registry_with(store.clone(), fake_tokens(), ok_bus(), failing_audit());
    assert_unavailable(r.register(&manifest("alpha"), None, "t").await, "audit log");
    // The old registration stands: its token is still the current one.
    let kept = store
        .get(&pid("alpha"))
        .await
        .unwrap()
        .expect("still there");
    assert_eq!(kept.instances[0].token_jti, "j1");
    assert_eq!(kept.status, vivified_ports::Liveness::Stale);
    assert_eq!(kept.registered_at, t0());
}

#[tokio::test]
async fn a_replacement_that_loses_to_a_heartbeat_is_409() {
    // The insert finds the id held; the record read is stale, but a heartbeat lands
    // before the conditional replace: the next read shows a live plugin.
    let mut store = MockPluginStore::new();
    store
        .expect_insert()
        .times(1)
        .returning(|_| Err(StoreError::Conflict));
    let reads = Arc::new(Mutex::new(0u32));
    store.expect_get().times(2).returning(move |_| {
        let mut n = reads.lock().unwrap();
        *n += 1;
        Ok(Some(if *n == 1 {
            stale("alpha", "j1")
        } else {
            PluginRecord {
                version: 4,
                ..with_status(
                    stored("alpha", "j1"),
                    vivified_ports::Liveness::Active,
                    Some(t0() + time::Duration::hours(1)),
                )
            }
        }))
    });
    store
        .expect_replace()
        .times(1)
        .withf(|r, expected| r.instances[0].token_jti != "j1" && *expected == 3)
        .returning(|_, _| Err(StoreError::PreconditionFailed));
    let (audit, entries) = ok_audit();
    let r = registry_with(Arc::new(store), fake_tokens(), ok_bus(), audit);
    let result = r.register(&manifest("alpha"), None, "t").await;
    assert!(
        matches!(result, Err(RegistryError::AlreadyRegistered)),
        "{result:?}"
    );
    let entries = entries.lock().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].reason, "already_registered");
}

#[tokio::test]
async fn a_replacement_is_not_made_in_production_or_when_turned_off() {
    for config in [
        RegistryConfig {
            mode: vivified_domain::Mode::Production,
            registration_secret: Some(Secret::new("registration-secret-0123456789")),
            ..config()
        },
        RegistryConfig {
            replace_stale: false,
            ..config()
        },
    ] {
        let store = Arc::new(InMemoryPluginStore::new());
        store.insert(stale("alpha", "j1")).await.unwrap();
        let ports = Ports {
            operators: Arc::new(vivified_adapters::memory::InMemoryPluginStore::new()),
            identity: None,
            store: store.clone(),
            tokens: Arc::new(fake_tokens()),
            clock: Arc::new(ManualClock::new(t0())),
            bus: Arc::new(ok_bus()),
            audit: Arc::new(ok_audit().0),
        };
        let r = Registry::new(
            ports,
            Arc::new(ManifestValidator::new().expect("schema compiles")),
            config,
        );
        let result = r.register(&manifest("alpha"), None, "t").await;
        assert!(
            matches!(result, Err(RegistryError::AlreadyRegistered)),
            "{result:?}"
        );
        let kept = store.get(&pid("alpha")).await.unwrap().expect("kept");
        assert_eq!(kept.instances[0].token_jti, "j1");
    }
}
