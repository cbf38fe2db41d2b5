//! Audit log criterion benches, per backend (memory, SQLite file in WAL with
//! `synchronous=FULL`, and — when `VIVIFIED_TEST_POSTGRES_URL` is set — Postgres in a
//! scratch database):
//!
//! - `append`: one pending entry (what an audited operation adds);
//! - `seal_1000`: sealing a batch of 1 000 pending entries (the chainer's throughput);
//! - `verify_100k`: `verify_log` over a chain of 100 000 sealed entries, read in pages
//!   of 1 000; and `chain/verify_100k_in_memory`, the verifier alone (encoding + HMAC).
//!
//! `cargo bench -p vivified-adapters --bench audit`
//! `VIVIFIED_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p vivified-adapters --bench audit`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tokio::runtime::Runtime;
use vivified_adapters::memory::InMemoryAuditLog;
use vivified_adapters::postgres::PostgresAuditLog;
use vivified_adapters::postgres::{PostgresConfig, PostgresPluginStore};
use vivified_adapters::sqlite::SqliteAuditLog;
use vivified_adapters::sqlite::SqlitePluginStore;
use vivified_conformance::audit::test_chain_key;
use vivified_conformance::store::t0;
use vivified_domain::audit_chain::verify_log;
use vivified_domain::audit_chain::{ChainKey, ChainVerifier, seal_entries, verify_entries};
use vivified_ports::{AuditEntry, AuditLog, AuditOutcome};

const VERIFY_N: u64 = 100_000;

/// A realistic entry: a refused registration with one violation code.
fn entry(n: i64) -> AuditEntry {
    AuditEntry {
        at: t0() + time::Duration::microseconds(n),
        actor: format!("plugin-{}", n % 100),
        action: "plugin.register".into(),
        target: format!("plugin-{}", n % 100),
        outcome: AuditOutcome::Denied,
        reason: "invalid_manifest".into(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        details: json!({ "codes": ["missing_encryption"], "n": n }),
    }
}

/// A backend, and how to fill its pending table quickly (outside the measurement).
enum Backend {
    Memory,
    Sqlite(SqlitePluginStore),
    Postgres(PostgresPluginStore),
}

const BULK_SQLITE: &str = "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < ?) \
     INSERT INTO audit_pending (at, actor, action, target, outcome, reason, trace_id, details) \
     SELECT 1767225600000000 + x, 'plugin-' || (x % 100), 'plugin.register', 'plugin-' || (x % 100), \
     'denied', 'invalid_manifest', '4bf92f3577b34da6a3ce929d0e0e4736', \
     '{\"codes\":[\"missing_encryption\"],\"n\":' || x || '}' FROM g";

const BULK_POSTGRES: &str = "INSERT INTO audit_pending (at, actor, action, target, outcome, reason, trace_id, details) \
     SELECT 1767225600000000 + x, 'plugin-' || (x % 100), 'plugin.register', 'plugin-' || (x % 100), \
     'denied', 'invalid_manifest', '4bf92f3577b34da6a3ce929d0e0e4736', \
     '{\"codes\":[\"missing_encryption\"],\"n\":' || x || '}' FROM generate_series(1, $1::bigint) AS x";

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// A new, empty log.
    async fn fresh(&self) -> Arc<dyn AuditLog> {
        match self {
            Self::Memory => Arc::new(InMemoryAuditLog::new(200_000)),
            Self::Sqlite(store) => {
                sqlx::raw_sql(
                    "DELETE FROM audit_entries; DELETE FROM audit_pending; \
                     DELETE FROM audit_checkpoint",
                )
                .execute(store.pool())
                .await
                .expect("empty");
                // And the checkpoint file beside the database, or the new chain would
                // be refused as cut from the old one's end.
                if let Some(path) = store.path() {
                    let mut file = path.as_os_str().to_owned();
                    file.push("-checkpoint");
                    let _ = std::fs::remove_file(file);
                }
                Arc::new(SqliteAuditLog::new(store))
            }
            Self::Postgres(store) => {
                sqlx::raw_sql("TRUNCATE audit_entries, audit_pending, audit_checkpoint")
                    .execute(store.pool())
                    .await
                    .expect("empty");
                Arc::new(PostgresAuditLog::new(store))
            }
        }
    }

    /// Adds `n` pending entries in one statement (SQL) or `n` appends (memory).
    async fn bulk_pending(&self, log: &dyn AuditLog, n: u64) {
        let n_i64 = i64::try_from(n).expect("small");
        match self {
            Self::Memory => {
                for i in 0..n_i64 {
                    log.append(entry(i)).await.expect("append");
                }
            }
            Self::Sqlite(store) => {
                sqlx::query(BULK_SQLITE)
                    .bind(n_i64)
                    .execute(store.pool())
                    .await
                    .expect("bulk");
            }
            Self::Postgres(store) => {
                sqlx::query(BULK_POSTGRES)
                    .bind(n_i64)
                    .execute(store.pool())
                    .await
                    .expect("bulk");
            }
        }
    }
}

async fn seal_all(log: &dyn AuditLog, key: &ChainKey) {
    while log.seal(key, 10_000).await.expect("seal").sealed > 0 {}
}

fn bench_backend(c: &mut Criterion, rt: &Runtime, backend: &Backend) {
    let key = test_chain_key();
    let mut g = c.benchmark_group(format!("audit/{}", backend.name()));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));

    let log = rt.block_on(backend.fresh());
    let n = AtomicI64::new(0);
    g.throughput(Throughput::Elements(1));
    g.bench_function("append", |b| {
        b.iter(|| {
            rt.block_on(log.append(black_box(entry(n.fetch_add(1, Ordering::Relaxed)))))
                .expect("append")
        })
    });
    rt.block_on(seal_all(&*log, &key));

    g.throughput(Throughput::Elements(1000));
    g.bench_function("seal_1000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                rt.block_on(backend.bulk_pending(&*log, 1000));
                let start = Instant::now();
                let r = rt.block_on(log.seal(&key, 1000)).expect("seal");
                total += start.elapsed();
                assert_eq!(r.sealed, 1000);
            }
            total
        })
    });

    // A chain of exactly VERIFY_N entries.
    let log = rt.block_on(async {
        let log = backend.fresh().await;
        backend.bulk_pending(&*log, VERIFY_N).await;
        let start = Instant::now();
        seal_all(&*log, &key).await;
        eprintln!(
            "audit/{}: sealed {VERIFY_N} entries in batches of 10 000 in {:?}",
            backend.name(),
            start.elapsed()
        );
        log
    });
    g.sample_size(10);
    g.throughput(Throughput::Elements(VERIFY_N));
    g.bench_function("verify_100k", |b| {
        b.iter(|| {
            let report = rt
                .block_on(verify_log(&*log, ChainVerifier::new(&key), 1000))
                .expect("verify");
            assert!(report.intact() && report.verified_up_to == VERIFY_N);
        })
    });
    g.finish();
}

fn bench_chain(c: &mut Criterion) {
    let key = test_chain_key();
    let entries = seal_entries(&key, None, (0..VERIFY_N as i64).map(entry)).expect("seal");
    let mut g = c.benchmark_group("chain");
    g.sample_size(10);
    g.throughput(Throughput::Elements(VERIFY_N));
    g.bench_function("verify_100k_in_memory", |b| {
        b.iter(|| {
            let report = verify_entries(&key, black_box(&entries), None).expect("verify");
            assert!(report.intact());
        })
    });
    g.finish();
}

fn audit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    bench_chain(c);
    bench_backend(c, &rt, &Backend::Memory);

    let dir = std::env::temp_dir().join(format!("vivified-audit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sqlite = rt
        .block_on(SqlitePluginStore::open(&dir.join("audit.db")))
        .expect("sqlite");
    bench_backend(c, &rt, &Backend::Sqlite(sqlite.clone()));
    rt.block_on(sqlite.close());
    let _ = std::fs::remove_dir_all(&dir);

    if std::env::var_os(vivified_test_support::services::POSTGRES_URL_VAR).is_some() {
        let db = rt
            .block_on(vivified_test_support::postgres::ScratchDb::create(
                "vivified_audit_bench",
            ))
            .expect("the variable is set");
        let store = rt
            .block_on(PostgresPluginStore::connect(
                db.url(),
                &PostgresConfig::default(),
            ))
            .expect("connect");
        bench_backend(c, &rt, &Backend::Postgres(store.clone()));
        rt.block_on(async move {
            store.pool().close().await;
            db.drop_db().await;
        });
    } else {
        eprintln!("postgres: skipped (set VIVIFIED_TEST_POSTGRES_URL)");
    }
}

criterion_group!(benches, audit);
criterion_main!(benches);
