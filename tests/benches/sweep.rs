//! One liveness sweep (`Registry::sweep`) over 1 000 and 100 000 registered plugins,
//! with nothing due and with 1 % past their deadline, on the in-memory store and on
//! SQLite (a file, WAL, synchronous=FULL). The target: a sweep with nothing
//! expired costs about the same at 1 000 and at 100 000 plugins (an index lookup);
//! a sweep that expires costs what expires.
//!
//! `cargo bench -p vivified-tests --bench sweep`

use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use time::OffsetDateTime;
use vivified_adapters::clock::ManualClock;
use vivified_adapters::jwt::{JwtConfig, JwtTokenIssuer};
use vivified_adapters::memory::{InMemoryAuditLog, InMemoryEventBus, InMemoryPluginStore};
use vivified_adapters::sqlite::SqlitePluginStore;
use vivified_conformance::store::{record, t0};
use vivified_domain::{ManifestValidator, Ports, Registry, RegistryConfig};
use vivified_ports::{Liveness, PluginId, PluginStore, Secret};

const SIZES: [usize; 2] = [1_000, 100_000];

fn registry(store: Arc<dyn PluginStore>) -> Registry {
    let ports = Ports {
        operators: Arc::new(vivified_adapters::memory::InMemoryPluginStore::new()),
        identity: None,
        store,
        tokens: Arc::new(
            JwtTokenIssuer::new(JwtConfig::new(Secret::new(
                "bench-jwt-secret-of-at-least-32-bytes",
            )))
            .expect("jwt"),
        ),
        clock: Arc::new(ManualClock::new(t0())),
        bus: Arc::new(InMemoryEventBus::new(1 << 16)),
        audit: Arc::new(InMemoryAuditLog::new(1 << 16)),
    };
    Registry::new(
        ports,
        Arc::new(ManifestValidator::new().expect("schema")),
        RegistryConfig::default(),
    )
}

/// Plugin `i` of `n`: the first 1 % (`exp-…`) are the ones a test run expires.
fn id(i: usize, n: usize) -> String {
    if i < n / 100 {
        format!("exp-{i:06}")
    } else {
        format!("ok-{i:06}")
    }
}

fn far() -> OffsetDateTime {
    t0() + time::Duration::hours(1)
}

fn past() -> OffsetDateTime {
    t0() - time::Duration::seconds(1)
}

async fn fill_memory(store: &InMemoryPluginStore, n: usize) {
    for i in 0..n {
        let mut r = record(&id(i, n), "jti");
        r.instances[0].status = Liveness::Active;
        r.instances[0].next_deadline = Some(far());
        store.insert(r).await.expect("insert");
    }
}

/// Puts the 1 % back to `active` with a passed deadline (memory store).
async fn arm_memory(store: &InMemoryPluginStore, n: usize) {
    for i in 0..n / 100 {
        let id = PluginId::parse(&id(i, n)).expect("id");
        let mut r = store.get(&id).await.expect("get").expect("exists");
        let v = r.version;
        r.instances[0].status = Liveness::Active;
        r.instances[0].next_deadline = Some(past());
        store.replace(r, v).await.expect("replace");
    }
}

async fn fill_sqlite(store: &SqlitePluginStore, n: usize) {
    let micros = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1_000) as i64;
    let sql = format!(
        "INSERT INTO plugins (plugin_id, manifest, status, health, enabled, disabled_reason, \
         registered_at, last_heartbeat, token_jti, next_deadline, version, instances) \
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last}) \
         SELECT CASE WHEN i < {exp} THEN printf('exp-%06d', i) ELSE printf('ok-%06d', i) END, \
         '{{\"id\":\"x\"}}', 'active', 'healthy', 1, NULL, {t0}, NULL, '-', {far}, 1, \
         {instance} FROM n",
        last = n - 1,
        exp = n / 100,
        t0 = micros(t0()),
        far = micros(far()),
        instance = instances_sql(micros(t0()), micros(far())),
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(store.pool())
        .await
        .expect("bulk insert");
}

/// The `instances` column of a bench record: one active instance due at `deadline`.
fn instances_sql(t0: i64, deadline: i64) -> String {
    format!(
        "json_array(json_object('instance_id', 'default', 'token_jti', 'jti', \
         'token_issued_at', {t0}, 'registered_at', {t0}, 'status', 'active', \
         'health', 'healthy', 'last_heartbeat', NULL, 'next_deadline', {deadline}))"
    )
}

async fn arm_sqlite(store: &SqlitePluginStore) {
    let micros = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1_000) as i64;
    let past = micros(past());
    let sql = format!(
        "UPDATE plugins SET status = 'active', next_deadline = ?, instances = {} \
         WHERE plugin_id LIKE 'exp-%'",
        instances_sql(micros(t0()), past)
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(past)
        .execute(store.pool())
        .await
        .expect("arm");
}

fn sweeps(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("sweep");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    for n in SIZES {
        let store = Arc::new(InMemoryPluginStore::new());
        rt.block_on(fill_memory(&store, n));
        let reg = registry(store.clone());
        g.bench_function(format!("memory/{n}/nothing_due"), |b| {
            b.iter(|| rt.block_on(reg.sweep()).expect("sweep"));
        });
        g.bench_function(format!("memory/{n}/1pct_expire"), |b| {
            b.iter_batched(
                || rt.block_on(arm_memory(&store, n)),
                |()| {
                    let r = rt.block_on(reg.sweep()).expect("sweep");
                    assert_eq!(r.stale, n / 100);
                },
                BatchSize::PerIteration,
            );
        });

        let dir =
            std::env::temp_dir().join(format!("vivified-sweep-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let sqlite = rt
            .block_on(SqlitePluginStore::open(&dir.join("sweep.db")))
            .expect("sqlite");
        rt.block_on(fill_sqlite(&sqlite, n));
        let reg = registry(Arc::new(sqlite.clone()));
        g.bench_function(format!("sqlite/{n}/nothing_due"), |b| {
            b.iter(|| rt.block_on(reg.sweep()).expect("sweep"));
        });
        g.bench_function(format!("sqlite/{n}/1pct_expire"), |b| {
            b.iter_batched(
                || rt.block_on(arm_sqlite(&sqlite)),
                |()| {
                    let r = rt.block_on(reg.sweep()).expect("sweep");
                    assert_eq!(r.stale, n / 100);
                },
                BatchSize::PerIteration,
            );
        });
        rt.block_on(sqlite.close());
        let _ = std::fs::remove_dir_all(&dir);
    }
    g.finish();
}

criterion_group!(benches, sweeps);
criterion_main!(benches);
