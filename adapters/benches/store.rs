//! Store-level criterion benches: `insert` (a registration's write) and
//! `record_heartbeat` on the in-memory, SQLite (file, WAL, synchronous=FULL) and —
//! when `VIVIFIED_TEST_POSTGRES_URL` is set — Postgres stores.
//!
//! `cargo bench -p vivified-adapters --bench store`
//! `VIVIFIED_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p vivified-adapters --bench store`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use vivified_adapters::memory::InMemoryPluginStore;
use vivified_adapters::postgres::{PostgresConfig, PostgresPluginStore};
use vivified_adapters::sqlite::SqlitePluginStore;
use vivified_conformance::store::{record, t0};
use vivified_ports::{Health, PluginId, PluginStore};

fn manifest() -> serde_json::Value {
    serde_json::from_str(include_str!("../../schemas/examples/user-management.json")).expect("json")
}

fn bench_store(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: Arc<dyn PluginStore>,
) {
    let mut g = c.benchmark_group(format!("store/{name}"));
    let n = AtomicU64::new(0);
    let m = vivified_ports::StoredManifest::from_value(&manifest());
    g.bench_function("insert", |b| {
        b.iter(|| {
            let mut r = record(
                &format!("bench-{}", n.fetch_add(1, Ordering::Relaxed)),
                "jti",
            );
            r.manifest = m.clone();
            rt.block_on(store.insert(black_box(r))).expect("insert")
        })
    });
    rt.block_on(store.insert(record("hb-target", "jti")))
        .expect("insert");
    let id = PluginId::parse("hb-target").expect("id");
    let k = AtomicU64::new(0);
    g.bench_function("record_heartbeat", |b| {
        b.iter(|| {
            let at = t0() + time::Duration::milliseconds(k.fetch_add(1, Ordering::Relaxed) as i64);
            rt.block_on(store.record_heartbeat(
                &id,
                "jti",
                Health::Healthy,
                at,
                at + time::Duration::seconds(30),
            ))
            .expect("heartbeat")
        })
    });
    g.finish();
}

fn stores(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    bench_store(c, &rt, "memory", Arc::new(InMemoryPluginStore::new()));

    let dir = std::env::temp_dir().join(format!("vivified-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sqlite = rt
        .block_on(SqlitePluginStore::open(&dir.join("bench.db")))
        .expect("sqlite");
    bench_store(c, &rt, "sqlite", Arc::new(sqlite.clone()));
    rt.block_on(sqlite.close());
    let _ = std::fs::remove_dir_all(&dir);

    if std::env::var_os(vivified_test_support::services::POSTGRES_URL_VAR).is_some() {
        let db = rt
            .block_on(vivified_test_support::postgres::ScratchDb::create(
                "vivified_bench",
            ))
            .expect("the variable is set");
        let store = rt
            .block_on(PostgresPluginStore::connect(
                db.url(),
                &PostgresConfig::default(),
            ))
            .expect("connect");
        bench_store(c, &rt, "postgres", Arc::new(store.clone()));
        rt.block_on(async move {
            store.pool().close().await;
            db.drop_db().await;
        });
    } else {
        eprintln!("postgres: skipped (set VIVIFIED_TEST_POSTGRES_URL)");
    }
}

criterion_group!(benches, stores);
criterion_main!(benches);
