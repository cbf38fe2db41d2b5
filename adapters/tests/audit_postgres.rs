//! The Postgres audit log against a real server: the conformance suite, tampering with
//! rows directly in SQL, a sealer turned away while another holds the lock, and two
//! pools (as two replicas) appending and sealing one chain together, and a key
//! rotation across restarts with a replica still on the old key.
//!
//! Gated like `tests/postgres.rs`: runs when `VIVIFIED_TEST_POSTGRES_URL` is set, is
//! mandatory when `CI` is set, and creates (and drops) a database of its own.

mod audit_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use vivified_adapters::postgres::PostgresAuditLog;
use vivified_adapters::postgres::{PostgresConfig, PostgresPluginStore};
use vivified_conformance::audit::{
    audit_entry, audit_log_conformance, rotation_across_restarts, test_chain_key,
};
use vivified_domain::audit_chain::ChainVerifier;
use vivified_domain::audit_chain::verify_log;
use vivified_ports::{AuditLog, AuditOutcome};
use vivified_test_support::postgres::ScratchDb;

async fn store(db: &ScratchDb) -> PostgresPluginStore {
    PostgresPluginStore::connect(db.url(), &PostgresConfig::default())
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_audit_log_passes_the_conformance_suite() {
    let Some(db) = ScratchDb::create("vivified_test").await else {
        return;
    };
    let store = store(&db).await;
    audit_log_conformance(Arc::new(PostgresAuditLog::new(&store))).await;
    store.pool().close().await;
    db.drop_db().await;
}

fn blob(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("'\\x{hex}'::bytea")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_in_postgres_is_detected_and_located() {
    let Some(db) = ScratchDb::create("vivified_test").await else {
        return;
    };
    let store = store(&db).await;
    let pool = store.pool().clone();
    audit_common::tamper_suite(
        || Arc::new(PostgresAuditLog::new(&store)) as Arc<dyn AuditLog>,
        |sql| {
            let pool = pool.clone();
            async move {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&pool)
                    .await
                    .expect("tamper statement");
            }
        },
        blob,
    )
    .await;
    store.pool().close().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sealer_returns_at_once_while_the_lock_is_held() {
    let Some(db) = ScratchDb::create("vivified_test").await else {
        return;
    };
    let store = store(&db).await;
    let log = PostgresAuditLog::new(&store);
    let key = test_chain_key();
    for i in 0..3 {
        log.append(audit_entry("system", "x", AuditOutcome::Success, i))
            .await
            .unwrap();
    }
    // Another replica's sealer, mid-batch: the same advisory lock, held elsewhere.
    let mut other = PgConnection::connect(db.url()).await.unwrap();
    let mut tx = other.begin().await.unwrap();
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(0x7669_7669_6175_6431_i64)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert!(got);
    let started = Instant::now();
    let r = log.seal(&key, 100).await.unwrap();
    assert!(r.busy && r.sealed == 0 && r.head.is_none(), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a busy sealer returns promptly"
    );
    assert_eq!(log.pending().await.unwrap(), 3);
    tx.rollback().await.unwrap();
    let r = log.seal(&key, 100).await.unwrap();
    assert_eq!((r.sealed, r.busy), (3, false));
    other.close().await.ok();
    store.pool().close().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_append_and_seal_one_chain() {
    let Some(db) = ScratchDb::create("vivified_test").await else {
        return;
    };
    let (a, b) = (store(&db).await, store(&db).await);
    let logs: Vec<Arc<dyn AuditLog>> = vec![
        Arc::new(PostgresAuditLog::new(&a)),
        Arc::new(PostgresAuditLog::new(&b)),
    ];
    let key = test_chain_key();
    let mut tasks = Vec::new();
    for (r, log) in logs.iter().enumerate() {
        for t in 0..4 {
            let log = Arc::clone(log);
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let mut busy = 0u32;
                for i in 0..50 {
                    log.append(audit_entry(
                        &format!("r{r}-{t}"),
                        "x",
                        AuditOutcome::Success,
                        i,
                    ))
                    .await
                    .expect("append");
                    if log.seal(&key, 7).await.expect("seal").busy {
                        busy += 1;
                    }
                }
                busy
            }));
        }
    }
    let mut busy = 0;
    for t in tasks {
        busy += t.await.unwrap();
    }
    while logs[0].seal(&key, 1000).await.unwrap().sealed > 0 {}
    assert_eq!(logs[1].pending().await.unwrap(), 0);
    let report = verify_log(&*logs[1], ChainVerifier::new(&key), 64)
        .await
        .unwrap();
    assert!(report.intact(), "{report:?}");
    assert_eq!(
        report.verified_up_to, 400,
        "every entry sealed once, no gap"
    );
    eprintln!("sealers turned away while another sealed: {busy}");
    a.pool().close().await;
    b.pool().close().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_across_restarts_and_replicas_without_forking() {
    let Some(db) = ScratchDb::create("vivified_test").await else {
        return;
    };
    rotation_across_restarts(|| {
        let url = db.url().to_owned();
        async move {
            let store = PostgresPluginStore::connect(&url, &PostgresConfig::default())
                .await
                .expect("connect");
            Arc::new(PostgresAuditLog::new(&store)) as Arc<dyn AuditLog>
        }
    })
    .await;
    db.drop_db().await;
}
