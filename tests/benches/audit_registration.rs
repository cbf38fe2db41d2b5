//! What the audit write costs registration through HTTP (the audit chain's benchmark): "the
//! audit write must not cut registration throughput through HTTP on SQLite or Postgres
//! by more than a third (measure with and without, same run)".
//!
//! `POST /plugins/register` (dev mode, a new id every time) through the real router
//! (`vivified_server::routes::router`, driven with `oneshot`: no socket), with
//! `CONCURRENCY` registrations in flight at once (tokio, 2 worker threads), on
//!
//! - a SQLite file opened as the server opens it (WAL, `synchronous=FULL`), and
//! - Postgres (pool of 10, as the server's default) when `VIVIFIED_TEST_POSTGRES_URL`
//!   is set, in a uniquely named database dropped at the end,
//!
//! each in two variants, each on a fresh file or database:
//!
//! - `with_audit`: wired as `Application::build` wires a SQL store —
//!   `RegistryConfig::audit_in_store`, so the record and its pending audit entry are
//!   one transaction (`PluginStore::insert_audited`) — with the server's sealer task
//!   (`seal_until_stopped`, default interval) chaining pending entries concurrently;
//! - `without_audit`: the same store with `audit_in_store = false` and an audit log
//!   that does nothing ([`NoAudit`]), so a registration writes only its record.
//!
//! Throughput is in registrations. After each `with_audit` run the sealer is stopped
//! and the bench checks that every registration left exactly one sealed entry.
//!
//! A `<store>_pieces` group then times the writes below HTTP and the registry, to say
//! where the time goes (see [`Pieces`]). Results: `docs/PERFORMANCE.md`.
//!
//! `cargo bench -p vivified-tests --bench audit_registration`
//! `VIVIFIED_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p vivified-tests --bench audit_registration`

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::BodyExt;
use serde_json::json;

use time::OffsetDateTime;
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt;
use vivified_adapters::clock::SystemClock;
use vivified_adapters::jwt::{JwtConfig, JwtTokenIssuer};
use vivified_adapters::memory::InMemoryEventBus;
use vivified_adapters::postgres::PostgresAuditLog;
use vivified_adapters::postgres::{PostgresConfig, PostgresPluginStore};
use vivified_adapters::sqlite::SqliteAuditLog;
use vivified_adapters::sqlite::SqlitePluginStore;
use vivified_domain::audit_chain::{ChainHead, ChainKey};
use vivified_domain::broker::{Broker, BrokerConfig};
use vivified_domain::policy::Policy;
use vivified_domain::{ManifestValidator, Ports, Registry};
use vivified_ports::{
    AuditEntry, AuditError, AuditLog, AuditOutcome, AuditQuery, Health, Liveness, PluginId,
    PluginRecord, PluginStore, SealReport, SealedEntry, StoredManifest,
};
use vivified_server::audit::{AuditChain, SEAL_BATCH, SealerConfig, seal_until_stopped};
use vivified_server::routes::{App, router};
use vivified_server::{AppState, Services, Settings};
use vivified_test_support::postgres::ScratchDb;

/// Registrations in flight at once.
const CONCURRENCY: u64 = 16;
const ADMIN: &str = "adm-bench-auditreg-Q7w2E9r4T6y1";
const JWT: &str = "jwt-bench-auditreg-Zq3v9X1pLk2Rt7Yw0Bn4Hs8";
const AUDIT_KEY: &str = "aud-bench-auditreg-Lk8Jh7Gf6Ds5Aq4Wz3Xs2";

/// The "without" audit log: accepts every append and keeps nothing.
struct NoAudit;

#[async_trait]
impl AuditLog for NoAudit {
    async fn append(&self, _entry: AuditEntry) -> Result<(), AuditError> {
        Ok(())
    }

    async fn seal(
        &self,
        _key: &(dyn vivified_ports::ChainKeyRing + 'static),
        _limit: usize,
    ) -> Result<SealReport, AuditError> {
        Ok(SealReport {
            sealed: 0,
            head: None,
            busy: false,
        })
    }

    async fn range(&self, _from_seq: u64, _limit: usize) -> Result<Vec<SealedEntry>, AuditError> {
        Ok(Vec::new())
    }

    async fn head(&self) -> Result<Option<ChainHead>, AuditError> {
        Ok(None)
    }

    async fn pending(&self) -> Result<u64, AuditError> {
        Ok(0)
    }

    async fn query(&self, _query: &AuditQuery) -> Result<Vec<SealedEntry>, AuditError> {
        Ok(Vec::new())
    }

    async fn checkpoints(&self) -> Result<Vec<vivified_ports::StoredCheckpoint>, AuditError> {
        Ok(Vec::new())
    }
}

fn settings() -> Settings {
    let env: BTreeMap<&str, &str> = [
        ("VIVIFIED_ADMIN_TOKEN", ADMIN),
        ("JWT_SECRET", JWT),
        ("VIVIFIED_AUDIT_KEY", AUDIT_KEY),
    ]
    .into_iter()
    .collect();
    Settings::load(None, |k| env.get(k).map(|v| (*v).to_owned()), None).expect("settings")
}

/// One core: the router over a store and an audit log, and (with audit) the sealer.
struct Core {
    router: App,
    audit: AuditChain,
    /// Registrations sent so far (the next id's number).
    next: AtomicU64,
    sealer: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Core {
    /// Wires the router as `Application::build` does. With `audit_in_store`, also
    /// starts the sealer as `Application::run_until` does.
    fn new(store: Arc<dyn PluginStore>, log: Arc<dyn AuditLog>, audit_in_store: bool) -> Self {
        let settings = settings();
        let tokens = JwtTokenIssuer::new(JwtConfig {
            secret: Some(settings.jwt_secret.clone().expect("JWT_SECRET")),
            ed25519_keys: Vec::new(),
            previous: Vec::new(),
            ttl: settings.token_ttl,
        })
        .expect("token issuer");
        let jwks = serde_json::to_value(tokens.jwks()).expect("a JWK set");
        let audit = AuditChain::new(
            log.clone(),
            ChainKey::new(AUDIT_KEY.as_bytes()).expect("audit key"),
        );
        let ports = Ports {
            operators: Arc::new(vivified_adapters::memory::InMemoryPluginStore::new()),
            identity: None,
            store,
            tokens: Arc::new(tokens),
            clock: Arc::new(SystemClock),
            bus: Arc::new(InMemoryEventBus::new(settings.event_queue_bound)),
            audit: log,
        };
        let mut config = settings.registry_config();
        config.audit_in_store = audit_in_store;
        let registry = Registry::new(
            ports,
            Arc::new(ManifestValidator::new().expect("schema")),
            config,
        );
        let broker = Broker::new(
            registry.clone(),
            Arc::new(Policy::default()),
            BrokerConfig::default(),
        );
        let router = router(
            AppState::new(Services {
                registry,
                max_body_bytes: settings.max_body_bytes,
                audit: audit.clone(),
                broker,
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
        let sealer = audit_in_store.then(|| {
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(seal_until_stopped(
                audit.clone(),
                SealerConfig {
                    interval: settings.audit_seal_interval,
                    checkpoint_every: settings.audit_checkpoint_every,
                    broken_at_start: false,
                },
                stopped,
            ));
            (stop, task)
        });
        Self {
            router,
            audit,
            next: AtomicU64::new(0),
            sealer,
        }
    }

    /// `n` registrations of new ids, `CONCURRENCY` in flight at once.
    async fn register(&self, n: u64) {
        let start = self.next.fetch_add(n, Ordering::Relaxed);
        let mut set = tokio::task::JoinSet::new();
        for lane in 0..CONCURRENCY.min(n) {
            let router = self.router.clone();
            set.spawn(async move {
                let mut i = start + lane;
                while i < start + n {
                    register_one(&router, &format!("bench-reg-{i}")).await;
                    i += CONCURRENCY;
                }
            });
        }
        set.join_all().await;
    }

    /// Stops the sealer (which seals what is pending on its way out) and checks that
    /// every registration left exactly one sealed entry and nothing is pending.
    async fn finish(self) {
        let Some((stop, task)) = self.sealer else {
            return;
        };
        stop.send(true).expect("the sealer is running");
        task.await.expect("the sealer stops");
        let registered = self.next.load(Ordering::Relaxed);
        let pending = self.audit.log.pending().await.expect("pending");
        let head = self
            .audit
            .log
            .head()
            .await
            .expect("head")
            .map_or(0, |h| h.seq);
        assert_eq!(pending, 0, "the sealer left entries pending");
        assert_eq!(head, registered, "one sealed entry per registration");
    }
}

async fn register_one(router: &App, id: &str) {
    let manifest = json!({
        "id": id,
        "name": format!("Bench {id}"),
        "version": "1.0.0",
        "contracts": ["StoragePlugin"],
        "traits": [],
        "security": {"authentication_required": false, "data_classification": ["internal"]},
        "compliance": {"hipaa_controls": [], "audit_level": "basic"}
    });
    let req = Request::builder()
        .method(Method::POST)
        .uri("/plugins/register")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(&manifest).expect("json")))
        .expect("request");
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(
        status,
        StatusCode::OK,
        "register {id}: {}",
        String::from_utf8_lossy(&body)
    );
}

/// A scratch directory removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "vivified-bench-auditreg-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The pieces of a registration's write, below HTTP and the registry, for saying where
/// the time goes: `store_insert` (the record alone, as `without_audit` writes it),
/// `store_insert_audited` (the record and its pending entry in one transaction, as
/// `with_audit` writes it; no sealer running) — both `CONCURRENCY` at once, the records
/// and entries built as the registry builds them — and `seal` (sealing pending entries
/// in batches of `SEAL_BATCH`, what the sealer does per registration; the entries are
/// appended outside the measured time).
struct Pieces {
    store: Arc<dyn PluginStore>,
    chain: AuditChain,
    next: AtomicU64,
}

impl Pieces {
    fn new(store: Arc<dyn PluginStore>, log: Arc<dyn AuditLog>) -> Self {
        Self {
            store,
            chain: AuditChain::new(log, ChainKey::new(AUDIT_KEY.as_bytes()).expect("audit key")),
            next: AtomicU64::new(0),
        }
    }

    /// `n` inserts of new records, `CONCURRENCY` at once, with their entries in the
    /// same transaction when `audited`.
    async fn insert(&self, n: u64, audited: bool) {
        let start = self.next.fetch_add(n, Ordering::Relaxed);
        let mut set = tokio::task::JoinSet::new();
        for lane in 0..CONCURRENCY.min(n) {
            let store = self.store.clone();
            set.spawn(async move {
                let mut i = start + lane;
                while i < start + n {
                    let (record, entry) = record_and_entry(&format!("bench-piece-{i}"));
                    if audited {
                        store.insert_audited(record, &entry).await
                    } else {
                        store.insert(record).await
                    }
                    .expect("insert");
                    i += CONCURRENCY;
                }
            });
        }
        set.join_all().await;
    }

    /// Appends `n` pending entries (not measured), then seals them all (measured).
    async fn seal(&self, n: u64) -> Duration {
        for chunk in (0..n).step_by(SEAL_BATCH) {
            let mut set = tokio::task::JoinSet::new();
            for lane in 0..CONCURRENCY {
                let log = self.chain.log.clone();
                let end = n.min(chunk + SEAL_BATCH as u64);
                set.spawn(async move {
                    let mut i = chunk + lane;
                    while i < end {
                        let (_, entry) = record_and_entry(&format!("bench-seal-{i}"));
                        log.append(entry).await.expect("append");
                        i += CONCURRENCY;
                    }
                });
            }
            set.join_all().await;
        }
        let started = Instant::now();
        self.chain
            .seal_all(Duration::from_secs(600))
            .await
            .expect("seal");
        let took = started.elapsed();
        assert_eq!(self.chain.log.pending().await.expect("pending"), 0);
        took
    }
}

/// A new registration's record and its audit entry, shaped as `Registry::insert_new`
/// shapes them.
fn record_and_entry(id: &str) -> (PluginRecord, AuditEntry) {
    let now = OffsetDateTime::now_utc();
    let record = PluginRecord {
        plugin_id: PluginId::parse(id).expect("id"),
        manifest: StoredManifest::from_value(&json!({
            "id": id,
            "name": format!("Bench {id}"),
            "version": "1.0.0",
            "contracts": ["StoragePlugin"],
            "traits": [],
            "security": {"authentication_required": false, "data_classification": ["internal"]},
            "compliance": {"hipaa_controls": [], "audit_level": "basic"}
        })),
        status: Liveness::Registered,
        health: Health::Unknown,
        enabled: true,
        disabled_reason: None,
        registered_at: now,
        last_heartbeat: None,
        instances: vec![vivified_ports::InstanceRecord::new(
            vivified_ports::InstanceId::default_instance(),
            uuid::Uuid::new_v4().simple().to_string(),
            now,
            Some(now + Duration::from_secs(30)),
        )],
        approved_traits: Some(Vec::new()),
        next_deadline: Some(now + Duration::from_secs(30)),
        version: 0,
    };
    let entry = AuditEntry {
        at: now,
        actor: id.to_owned(),
        action: "plugin.register".to_owned(),
        target: id.to_owned(),
        outcome: AuditOutcome::Success,
        reason: "registered".to_owned(),
        trace_id: uuid::Uuid::new_v4().simple().to_string(),
        details: json!({ "token_expires_at": (now + Duration::from_secs(86_400)).unix_timestamp() }),
    };
    (record, entry)
}

fn bench_pieces(c: &mut Criterion, rt: &Runtime, backend: &str, pieces: &Pieces) {
    let mut g = c.benchmark_group(format!("audit_registration/{backend}_pieces"));
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    for (name, audited) in [("store_insert", false), ("store_insert_audited", true)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let started = Instant::now();
                    pieces.insert(iters, audited).await;
                    started.elapsed()
                })
            })
        });
    }
    // The entries `store_insert_audited` left pending are sealed before `seal` starts.
    rt.block_on(pieces.chain.seal_all(Duration::from_secs(600)))
        .expect("seal");
    g.bench_function("seal", |b| {
        b.iter_custom(|iters| rt.block_on(pieces.seal(iters)))
    });
    g.finish();
}

/// Measures one variant on a fresh `core`, then finishes it.
fn bench_variant(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    name: &str,
    core: Core,
) {
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                core.register(iters).await;
                started.elapsed()
            })
        })
    });
    rt.block_on(core.finish());
}

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(format!("audit_registration/{name}"));
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(1));
    g
}

fn bench_sqlite(c: &mut Criterion, rt: &Runtime) {
    let mut g = group(c, "sqlite");
    let dir = ScratchDir::new();
    let open = |file: &str| {
        rt.block_on(SqlitePluginStore::open(&dir.0.join(file)))
            .expect("sqlite store")
    };

    let store = open("without.db");
    let core = rt.block_on(async { Core::new(Arc::new(store), Arc::new(NoAudit), false) });
    bench_variant(&mut g, rt, "without_audit", core);

    let store = open("with.db");
    let log = Arc::new(SqliteAuditLog::new(&store));
    let core = rt.block_on(async { Core::new(Arc::new(store), log, true) });
    bench_variant(&mut g, rt, "with_audit", core);
    g.finish();

    let store = open("pieces.db");
    let log = Arc::new(SqliteAuditLog::new(&store));
    bench_pieces(c, rt, "sqlite", &Pieces::new(Arc::new(store), log));
}

fn bench_postgres(c: &mut Criterion, rt: &Runtime) {
    let mut g = group(c, "postgres");
    let config = PostgresConfig {
        max_connections: settings().db_max_connections,
        ..PostgresConfig::default()
    };
    let connect = |db: &ScratchDb| {
        rt.block_on(PostgresPluginStore::connect(db.url(), &config))
            .expect("postgres store")
    };

    let db = rt
        .block_on(ScratchDb::create("vivified_bench_auditreg"))
        .expect("the variable is set");
    let store = connect(&db);
    let pool = store.pool().clone();
    let core = rt.block_on(async { Core::new(Arc::new(store), Arc::new(NoAudit), false) });
    bench_variant(&mut g, rt, "without_audit", core);
    rt.block_on(pool.close());
    drop(db);

    let db = rt
        .block_on(ScratchDb::create("vivified_bench_auditreg"))
        .expect("the variable is set");
    let store = connect(&db);
    let pool = store.pool().clone();
    let log = Arc::new(PostgresAuditLog::new(&store));
    let core = rt.block_on(async { Core::new(Arc::new(store), log, true) });
    bench_variant(&mut g, rt, "with_audit", core);
    rt.block_on(pool.close());
    drop(db);
    g.finish();

    let db = rt
        .block_on(ScratchDb::create("vivified_bench_auditreg"))
        .expect("the variable is set");
    let store = connect(&db);
    let pool = store.pool().clone();
    let log = Arc::new(PostgresAuditLog::new(&store));
    bench_pieces(c, rt, "postgres", &Pieces::new(Arc::new(store), log));
    rt.block_on(pool.close());
    drop(db);
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    bench_sqlite(c, &rt);
    match std::env::var("VIVIFIED_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => bench_postgres(c, &rt),
        _ => eprintln!("skipping the Postgres benches: VIVIFIED_TEST_POSTGRES_URL is not set"),
    }
}

criterion_group!(audit_registration_benches, benches);
criterion_main!(audit_registration_benches);
