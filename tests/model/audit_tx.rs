//! The transactional audit append (`RegistryConfig::audit_in_store`): on a SQL store a
//! state change and its audit entry are written in one transaction, so an accepted
//! change always has its entry and a change whose entry cannot be written does not
//! happen.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use serde_json::json;
use time::OffsetDateTime;
use vivified_adapters::clock::ManualClock;
use vivified_adapters::jwt::{JwtConfig, JwtTokenIssuer};
use vivified_adapters::memory::{InMemoryAuditLog, InMemoryEventBus, InMemoryPluginStore};
use vivified_adapters::sqlite::SqliteAuditLog;
use vivified_adapters::sqlite::SqlitePluginStore;
use vivified_domain::{ManifestValidator, Mode, Ports, Registry, RegistryConfig, RegistryError};
use vivified_ports::{
    AuditEntry, AuditLog, AuditOutcome, AuditQuery, PluginStore, Secret, StoreError,
};

const ADMIN: &str = "audit-tx-admin-token-0123456789";

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_767_225_600).expect("valid timestamp")
}

fn manifest(id: &str) -> serde_json::Value {
    json!({
        "id": id,
        "name": format!("Audited {id}"),
        "version": "1.0.0",
        "contracts": ["StoragePlugin"],
        "traits": [],
        "security": {"authentication_required": true, "data_classification": ["internal"]},
        "compliance": {"hipaa_controls": [], "audit_level": "basic"}
    })
}

/// A registry over `store` with `audit_in_store`, and a port-side audit log that must
/// stay empty (every entry goes through the store's transaction).
fn registry(store: Arc<dyn PluginStore>) -> (Registry, Arc<InMemoryAuditLog>) {
    let port_log = Arc::new(InMemoryAuditLog::new(100));
    let ports = Ports {
        operators: Arc::new(vivified_adapters::memory::InMemoryPluginStore::new()),
        identity: None,
        store,
        tokens: Arc::new(
            JwtTokenIssuer::new(JwtConfig::new(Secret::new(
                "audit-tx-jwt-secret-0123456789abcdef",
            )))
            .expect("jwt config"),
        ),
        clock: Arc::new(ManualClock::new(t0())),
        bus: Arc::new(InMemoryEventBus::new(64)),
        audit: port_log.clone(),
    };
    let config = RegistryConfig {
        mode: Mode::Dev,
        admin_token: Some(Secret::new(ADMIN)),
        heartbeat_interval: StdDuration::from_secs(10),
        audit_in_store: true,
        ..RegistryConfig::default()
    };
    (
        Registry::new(
            ports,
            Arc::new(ManifestValidator::new().expect("schema compiles")),
            config,
        ),
        port_log,
    )
}

async fn sqlite() -> (tempdir::Dir, Arc<SqlitePluginStore>) {
    let dir = tempdir::Dir::new();
    let store = SqlitePluginStore::open(&dir.path.join("vivified.db"))
        .await
        .expect("sqlite file");
    (dir, Arc::new(store))
}

mod tempdir {
    pub struct Dir {
        pub path: std::path::PathBuf,
    }
    impl Dir {
        pub fn new() -> Self {
            let path =
                std::env::temp_dir().join(format!("vivified-audit-tx-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&path).expect("temp dir");
            Self { path }
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

async fn pending_actions(log: &SqliteAuditLog) -> Vec<(String, String, String)> {
    let key = vivified_domain::audit_chain::ChainKey::new(b"audit-tx-chain-key-0123456789abcdef")
        .expect("key");
    log.seal(&key, 1000).await.expect("seal");
    log.query(&AuditQuery {
        limit: 1000,
        ..AuditQuery::default()
    })
    .await
    .expect("query")
    .into_iter()
    .map(|e| (e.entry.actor, e.entry.action, e.entry.reason))
    .collect()
}

#[tokio::test]
async fn every_change_and_its_entry_are_written_together_on_sqlite() {
    let (_dir, store) = sqlite().await;
    let log = SqliteAuditLog::new(&store);
    let (r, port_log) = registry(store.clone());
    let reg = r
        .register(&manifest("tx-a"), None, "trace-1")
        .await
        .expect("register");
    let refreshed = r
        .refresh_token("tx-a", Some(reg.token.expose()), "trace-2")
        .await
        .expect("refresh");
    r.register(&manifest("tx-a"), Some(refreshed.token.expose()), "trace-3")
        .await
        .expect("re-register");
    r.disable("tx-a", Some(ADMIN), "maintenance", "trace-4")
        .await
        .expect("disable");
    r.enable("tx-a", Some(ADMIN), "trace-5")
        .await
        .expect("enable");
    r.deregister("tx-a", Some(ADMIN), "trace-6")
        .await
        .expect("deregister");
    let got = pending_actions(&log).await;
    let want: Vec<(String, String, String)> = [
        ("plugin:tx-a", "plugin.register", "registered"),
        ("plugin:tx-a", "token.refresh", "refreshed"),
        ("plugin:tx-a", "plugin.reregister", "registered"),
        ("operator:bootstrap", "plugin.disable", "plugin.disable"),
        ("operator:bootstrap", "plugin.enable", "plugin.enable"),
        ("operator:bootstrap", "plugin.deregister", "deregistered"),
    ]
    .iter()
    .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
    .collect();
    assert_eq!(got, want);
    let through_port: Vec<String> = port_log.entries().into_iter().map(|e| e.action).collect();
    assert!(
        through_port.is_empty(),
        "the changes' entries went through the store, not the port: {through_port:?}"
    );
}

#[tokio::test]
async fn a_change_whose_entry_cannot_be_written_does_not_happen() {
    let (_dir, store) = sqlite().await;
    let (r, _) = registry(store.clone());
    let reg = r
        .register(&manifest("tx-keep"), None, "t")
        .await
        .expect("register");
    // The audit table is gone: every audited write now fails inside its transaction.
    sqlx::query("ALTER TABLE audit_pending RENAME TO audit_pending_away")
        .execute(store.pool())
        .await
        .expect("rename");
    let err = r
        .register(&manifest("tx-new"), None, "t")
        .await
        .expect_err("no entry, no registration");
    assert!(matches!(err, RegistryError::Unavailable { .. }), "{err:?}");
    assert!(
        store
            .get(&"tx-new".parse().unwrap())
            .await
            .unwrap()
            .is_none(),
        "rolled back"
    );
    let err = r
        .deregister("tx-keep", Some(ADMIN), "t")
        .await
        .expect_err("no entry, no deregistration");
    assert!(matches!(err, RegistryError::Unavailable { .. }), "{err:?}");
    let kept = store
        .get(&"tx-keep".parse().unwrap())
        .await
        .unwrap()
        .expect("still registered");
    assert_eq!(kept.instances[0].token_jti, reg.token_jti);
    let err = r
        .disable("tx-keep", Some(ADMIN), "x", "t")
        .await
        .expect_err("no entry, no disable");
    assert!(matches!(err, RegistryError::Unavailable { .. }), "{err:?}");
    assert!(
        store
            .get(&"tx-keep".parse().unwrap())
            .await
            .unwrap()
            .unwrap()
            .enabled
    );
}

#[tokio::test]
async fn a_store_without_the_audit_log_refuses_audited_writes() {
    let store = InMemoryPluginStore::new();
    let entry = AuditEntry {
        at: t0(),
        actor: "x".into(),
        action: "plugin.register".into(),
        target: "x".into(),
        outcome: AuditOutcome::Success,
        reason: "registered".into(),
        trace_id: "t".into(),
        details: json!(null),
    };
    let record = vivified_conformance::store::record("tx-mem", "jti-mem");
    assert!(matches!(
        store.insert_audited(record, &entry).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(
        store
            .get(&"tx-mem".parse().unwrap())
            .await
            .unwrap()
            .is_none()
    );
    // With `audit_in_store` on such a store, the registry fails closed.
    let (r, _) = registry(Arc::new(store));
    assert!(matches!(
        r.register(&manifest("tx-mem"), None, "t").await,
        Err(RegistryError::Unavailable { .. })
    ));
}

/// The same on Postgres, where each audited write is one statement (data-modifying
/// CTEs): all six entries go through the store, and a missing audit table leaves no
/// registration, deregistration or disable behind. Gated on
/// `VIVIFIED_TEST_POSTGRES_URL` (mandatory in CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_holds_on_postgres_in_one_statement() {
    use vivified_adapters::postgres::PostgresAuditLog;
    use vivified_adapters::postgres::{PostgresConfig, PostgresPluginStore};
    let Some(db) = vivified_test_support::postgres::ScratchDb::create("vivified_audit_tx").await
    else {
        return;
    };
    let outcome = tokio::spawn({
        let url = db.url().to_owned();
        async move {
            let store = Arc::new(
                PostgresPluginStore::connect(&url, &PostgresConfig::default())
                    .await
                    .expect("connect"),
            );
            let log = PostgresAuditLog::new(&store);
            let (r, port_log) = registry(store.clone());
            let reg = r
                .register(&manifest("pg-a"), None, "t1")
                .await
                .expect("register");
            let refreshed = r
                .refresh_token("pg-a", Some(reg.token.expose()), "t2")
                .await
                .expect("refresh");
            r.register(&manifest("pg-a"), Some(refreshed.token.expose()), "t3")
                .await
                .expect("re-register");
            // A stale version is refused and writes no entry.
            assert!(matches!(
                store
                    .replace_audited(
                        store.get(&"pg-a".parse().unwrap()).await.unwrap().unwrap(),
                        999,
                        &entry_for("pg-a")
                    )
                    .await,
                Err(StoreError::PreconditionFailed)
            ));
            r.disable("pg-a", Some(ADMIN), "maintenance", "t4")
                .await
                .expect("disable");
            r.enable("pg-a", Some(ADMIN), "t5").await.expect("enable");
            r.deregister("pg-a", Some(ADMIN), "t6")
                .await
                .expect("deregister");
            assert!(matches!(
                store
                    .delete_audited(&"pg-a".parse().unwrap(), None, &entry_for("pg-a"))
                    .await,
                Err(StoreError::NotFound)
            ));
            r.register(&manifest("pg-b"), None, "t")
                .await
                .expect("register pg-b");
            let key =
                vivified_domain::audit_chain::ChainKey::new(b"audit-tx-chain-key-0123456789abcdef")
                    .expect("key");
            log.seal(&key, 1000).await.expect("seal");
            let actions: Vec<String> = log
                .query(&AuditQuery {
                    limit: 1000,
                    ..AuditQuery::default()
                })
                .await
                .expect("query")
                .into_iter()
                .map(|e| e.entry.action)
                .collect();
            assert_eq!(
                actions,
                [
                    "plugin.register",
                    "token.refresh",
                    "plugin.reregister",
                    "plugin.disable",
                    "plugin.enable",
                    "plugin.deregister",
                    "plugin.register"
                ]
            );
            assert!(port_log.entries().is_empty());

            sqlx::query("ALTER TABLE audit_pending RENAME TO audit_pending_away")
                .execute(store.pool())
                .await
                .expect("rename");
            assert!(matches!(
                r.register(&manifest("pg-c"), None, "t").await,
                Err(RegistryError::Unavailable { .. })
            ));
            assert!(store.get(&"pg-c".parse().unwrap()).await.unwrap().is_none());
            assert!(matches!(
                r.disable("pg-b", Some(ADMIN), "x", "t").await,
                Err(RegistryError::Unavailable { .. })
            ));
            assert!(matches!(
                r.deregister("pg-b", Some(ADMIN), "t").await,
                Err(RegistryError::Unavailable { .. })
            ));
            let b = store.get(&"pg-b".parse().unwrap()).await.unwrap();
            assert!(
                b.is_some_and(|b| b.enabled),
                "nothing changed without its entry"
            );
            store.close().await;
        }
    })
    .await;
    db.drop_db().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn entry_for(id: &str) -> AuditEntry {
    AuditEntry {
        at: t0(),
        actor: id.into(),
        action: "test".into(),
        target: id.into(),
        outcome: AuditOutcome::Success,
        reason: "test".into(),
        trace_id: "t".into(),
        details: json!(null),
    }
}
