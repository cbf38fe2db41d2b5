//! The SQLite audit log: the conformance suite on a file and in memory, tampering with
//! rows directly in SQL, two logs (two pools, as two processes would) sealing one file,
//! the chain surviving a reopen, and a key rotation across reopens and a process
//! still on the old key.

mod audit_common;

use std::path::PathBuf;
use std::sync::Arc;

use vivified_adapters::sqlite::SqliteAuditLog;
use vivified_adapters::sqlite::SqlitePluginStore;
use vivified_conformance::audit::{
    audit_entry, audit_log_conformance, rotation_across_restarts, test_chain_key,
};
use vivified_domain::audit_chain::ChainVerifier;
use vivified_domain::audit_chain::verify_log;
use vivified_ports::{AuditLog, AuditOutcome};

fn temp_dir() -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("vivified-audit-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_audit_log_passes_the_conformance_suite() {
    let dir = temp_dir();
    let store = SqlitePluginStore::open(&dir.join("audit.db"))
        .await
        .unwrap();
    audit_log_conformance(Arc::new(SqliteAuditLog::new(&store))).await;
    store.pool().close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn sqlite_memory_audit_log_passes_the_conformance_suite() {
    let store = SqlitePluginStore::in_memory().await.unwrap();
    audit_log_conformance(Arc::new(SqliteAuditLog::new(&store))).await;
}

fn blob(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("X'{hex}'")
}

#[tokio::test]
async fn tampering_in_sqlite_is_detected_and_located() {
    let dir = temp_dir();
    let store = SqlitePluginStore::open(&dir.join("tamper.db"))
        .await
        .unwrap();
    let pool = store.pool().clone();
    let checkpoint_file = dir.join("tamper.db-checkpoint");
    audit_common::tamper_suite(
        || {
            // Each scenario starts without the stored checkpoints of the last one.
            let _ = std::fs::remove_file(&checkpoint_file);
            Arc::new(SqliteAuditLog::new(&store)) as Arc<dyn AuditLog>
        },
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
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_logs_on_one_file_never_fork_the_chain() {
    let dir = temp_dir();
    let path = dir.join("shared.db");
    let a = SqlitePluginStore::open(&path).await.unwrap();
    let b = SqlitePluginStore::open(&path).await.unwrap();
    let logs: Vec<Arc<dyn AuditLog>> = vec![
        Arc::new(SqliteAuditLog::new(&a)),
        Arc::new(SqliteAuditLog::new(&b)),
    ];
    let key = test_chain_key();
    let mut tasks = Vec::new();
    for (w, log) in logs.iter().enumerate() {
        for t in 0..2 {
            let log = Arc::clone(log);
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..40 {
                    log.append(audit_entry(
                        &format!("w{w}-{t}"),
                        "x",
                        AuditOutcome::Success,
                        i,
                    ))
                    .await
                    .expect("append");
                    log.seal(&key, 5).await.expect("seal");
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    while logs[1].seal(&key, 100).await.unwrap().sealed > 0 {}
    assert_eq!(logs[0].pending().await.unwrap(), 0);
    let report = verify_log(&*logs[0], ChainVerifier::new(&key), 50)
        .await
        .unwrap();
    assert!(report.intact(), "{report:?}");
    assert_eq!(
        report.verified_up_to, 160,
        "every entry sealed once, no gap"
    );
    a.pool().close().await;
    b.pool().close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_chain_survives_a_reopen() {
    let dir = temp_dir();
    let path = dir.join("reopen.db");
    let key = test_chain_key();
    let store = SqlitePluginStore::open(&path).await.unwrap();
    let log = SqliteAuditLog::new(&store);
    for i in 0..5 {
        log.append(audit_entry("system", "before", AuditOutcome::Success, i))
            .await
            .unwrap();
    }
    log.seal(&key, 3).await.unwrap();
    store.pool().close().await;

    let store = SqlitePluginStore::open(&path).await.unwrap();
    let log = SqliteAuditLog::new(&store);
    assert_eq!(
        log.pending().await.unwrap(),
        2,
        "pending entries are durable"
    );
    log.append(audit_entry("system", "after", AuditOutcome::Success, 5))
        .await
        .unwrap();
    assert_eq!(log.seal(&key, 100).await.unwrap().sealed, 3);
    let report = verify_log(&log, ChainVerifier::new(&key), 2).await.unwrap();
    assert!(report.intact() && report.verified_up_to == 6, "{report:?}");
    store.pool().close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_across_reopens_without_forking() {
    let dir = temp_dir();
    let path = dir.join("rotate.db");
    rotation_across_restarts(|| {
        let path = path.clone();
        async move {
            let store = SqlitePluginStore::open(&path).await.unwrap();
            Arc::new(SqliteAuditLog::new(&store)) as Arc<dyn AuditLog>
        }
    })
    .await;
    std::fs::remove_dir_all(&dir).unwrap();
}
