//! Events through the core: `POST /events` to 10 subscribers, through the
//! real router (`vivified_server::routes::router`, driven with `oneshot`, no socket),
//! on the in-process bus and — when `VIVIFIED_TEST_NATS_URL` is set — on NATS
//! JetStream (unique subject and stream prefixes per run; the streams are deleted at
//! the end). The target: at least 20 000 events/s to 10 subscribers on the
//! in-process bus.
//!
//! Each group registers one publisher and 10 subscribers (`bench.*`, `internal` data, so
//! every subscriber is allowed) over the in-memory store, real HS256 tokens and the
//! in-memory audit log, as `Application::build` wires them. Throughput is in events
//! published; each one is delivered to 10 subscribers.
//!
//! - `publish`: one `POST /events` after the other (one client), the time until each
//!   `202`. Every 1000 events the subscribers drain their queues and the audit entries
//!   are sealed, outside the measured time.
//! - `publish_concurrent`: the same with 8 publishing tasks at once on 2 worker threads.
//! - `publish_seal_pull`: the full path — the events published one after the other,
//!   their audit entries sealed (as the server's sealer task does), and all 10
//!   subscribers pulling (`GET /plugins/{id}/events`, at most 1000 per pull, each pull
//!   acknowledging the previous one) at once until each has every event, in rounds of
//!   1000 events, all measured.
//!
//! `cargo bench -p vivified-tests --bench events`
//! `VIVIFIED_TEST_NATS_URL=nats://127.0.0.1:4222 cargo bench -p vivified-tests --bench events`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode, header};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use vivified_adapters::clock::SystemClock;
use vivified_adapters::jwt::{JwtConfig, JwtTokenIssuer};
use vivified_adapters::memory::{
    InMemoryAuditLog, InMemoryBusConfig, InMemoryEventBus, InMemoryPluginStore,
};
use vivified_adapters::nats::{NatsBusConfig, NatsEventBus};
use vivified_domain::audit_chain::ChainKey;
use vivified_domain::broker::{Broker, BrokerConfig};
use vivified_domain::policy::Policy;
use vivified_domain::{ManifestValidator, Ports, Registry};
use vivified_ports::{EventBus, PluginId};
use vivified_server::audit::AuditChain;
use vivified_server::routes::{App, router};
use vivified_server::{AppState, Services, Settings};

const SUBSCRIBERS: usize = 10;
const PUBLISHERS: usize = 8;
const QUEUE_BOUND: usize = 10_000;
/// Events published before the queues are drained (well under the queue bound, so
/// nothing is dropped).
const CHUNK: u64 = 1_000;
const ADMIN: &str = "adm-bench-events-Q7w2E9r4T6y1";
const JWT: &str = "jwt-bench-events-Zq3v9X1pLk2Rt7Yw0Bn4Hs8";
const AUDIT_KEY: &str = "aud-bench-events-Lk8Jh7Gf6Ds5Aq4Wz3Xs2";

/// One core (router, audit chain) with its publisher and subscribers registered.
struct Fixture {
    router: App,
    audit: AuditChain,
    publisher: String,
    body: Bytes,
    /// Subscriber id, token, and the cursor its next pull acknowledges.
    subscribers: Vec<(String, String, Mutex<Option<String>>)>,
}

fn settings() -> Settings {
    let env: BTreeMap<&str, &str> = [
        ("VIVIFIED_ADMIN_TOKEN", ADMIN),
        ("JWT_SECRET", JWT),
        ("VIVIFIED_AUDIT_KEY", AUDIT_KEY),
        ("VIVIFIED_STORE", "memory"),
    ]
    .into_iter()
    .collect();
    Settings::load(None, |k| env.get(k).map(|v| (*v).to_owned()), None).expect("settings")
}

/// Wires the router as `Application::build` does, over `bus`.
fn app(bus: Arc<dyn EventBus>) -> (App, AuditChain) {
    let settings = settings();
    let tokens = JwtTokenIssuer::new(JwtConfig {
        secret: Some(settings.jwt_secret.clone().expect("JWT_SECRET")),
        ed25519_keys: Vec::new(),
        previous: Vec::new(),
        ttl: settings.token_ttl,
    })
    .expect("token issuer");
    let jwks = serde_json::to_value(tokens.jwks()).expect("a JWK set");
    let audit_log = Arc::new(InMemoryAuditLog::new(
        vivified_server::startup::MEMORY_AUDIT_CAPACITY,
    ));
    let audit = AuditChain::new(
        audit_log.clone(),
        ChainKey::new(AUDIT_KEY.as_bytes()).expect("audit key"),
    );
    let ports = Ports {
        operators: Arc::new(vivified_adapters::memory::InMemoryPluginStore::new()),
        identity: None,
        store: Arc::new(InMemoryPluginStore::new()),
        tokens: Arc::new(tokens),
        clock: Arc::new(SystemClock),
        bus,
        audit: audit_log,
    };
    let registry = Registry::new(
        ports,
        Arc::new(ManifestValidator::new().expect("schema")),
        settings.registry_config(),
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
    (router, audit)
}

async fn send(router: &App, req: Request<Body>) -> (StatusCode, Bytes) {
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, body)
}

fn manifest(id: &str, subscriptions: &[&str]) -> Value {
    json!({
        "id": id,
        "name": format!("Bench {id}"),
        "version": "1.0.0",
        "contracts": ["StoragePlugin"],
        "traits": [],
        "security": {"authentication_required": false, "data_classification": ["internal"]},
        "compliance": {"hipaa_controls": [], "audit_level": "basic"},
        "subscriptions": subscriptions
    })
}

async fn register(router: &App, m: &Value) -> String {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/plugins/register")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(m).expect("json")))
        .expect("request");
    let (status, body) = send(router, req).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).expect("json");
    v["token"].as_str().expect("token").to_owned()
}

impl Fixture {
    async fn new(bus: Arc<dyn EventBus>) -> Self {
        let (router, audit) = app(bus);
        let publisher = register(&router, &manifest("bench-publisher", &[])).await;
        let mut subscribers = Vec::new();
        for i in 0..SUBSCRIBERS {
            let id = format!("bench-subscriber-{i}");
            let token = register(&router, &manifest(&id, &["bench.*"])).await;
            subscribers.push((id, token, Mutex::new(None)));
        }
        let body = Bytes::from(
            serde_json::to_vec(&json!({
                "event_type": "bench.reading",
                "data_traits": ["internal"],
                "payload": {"device": "ward-7/bed-12", "reading": 72.5, "unit": "bpm", "seq": 1},
                "metadata": {"origin": "bench"}
            }))
            .expect("json"),
        );
        let fixture = Self {
            router,
            audit,
            publisher,
            body,
            subscribers,
        };
        // Every subscriber is allowed: the receipt says 10 delivered.
        let receipt = fixture.publish_once().await;
        assert_eq!(receipt["delivered"], SUBSCRIBERS, "{receipt}");
        fixture.drain(1).await;
        fixture
    }

    fn publish_request(&self) -> Request<Body> {
        Request::builder()
            .method(Method::POST)
            .uri("/events")
            .header(header::AUTHORIZATION, format!("Bearer {}", self.publisher))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(self.body.clone()))
            .expect("request")
    }

    async fn publish_once(&self) -> Value {
        let (status, body) = send(&self.router, self.publish_request()).await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).expect("json")
    }

    /// `n` events, one `POST /events` after the other.
    async fn publish(&self, n: u64) {
        for _ in 0..n {
            let (status, _) = send(&self.router, self.publish_request()).await;
            assert_eq!(status, StatusCode::ACCEPTED);
        }
    }

    /// `n` events from `PUBLISHERS` tasks at once.
    async fn publish_concurrent(self: &Arc<Self>, n: u64) {
        let mut set = tokio::task::JoinSet::new();
        for p in 0..PUBLISHERS as u64 {
            let share = n / PUBLISHERS as u64 + u64::from(p < n % PUBLISHERS as u64);
            let me = Arc::clone(self);
            set.spawn(async move { me.publish(share).await });
        }
        set.join_all().await;
    }

    /// Every subscriber pulls (at once) until it has `n` events, each pull acknowledging
    /// what the previous one returned.
    async fn drain(&self, n: u64) {
        let pulls = self
            .subscribers
            .iter()
            .map(|(id, token, cursor)| async move {
                let mut got = 0u64;
                while got < n {
                    let after = cursor
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
                    let query = after.map_or_else(String::new, |c| format!("&after={c}"));
                    let req = Request::builder()
                        .uri(format!("/plugins/{id}/events?limit=1000&wait=5s{query}"))
                        .header(header::AUTHORIZATION, format!("Bearer {token}"))
                        .body(Body::empty())
                        .expect("request");
                    let (status, body) = send(&self.router, req).await;
                    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
                    let v: Value = serde_json::from_slice(&body).expect("json");
                    let events = v["events"].as_array().map_or(0, Vec::len) as u64;
                    assert!(events > 0, "{id}: no events after {got} of {n}: {v}");
                    assert_eq!(v["dropped"], 0, "{id}: {v}");
                    got += events;
                    *cursor.lock().unwrap_or_else(PoisonError::into_inner) =
                        v["next_cursor"].as_str().map(str::to_owned);
                }
                assert_eq!(got, n, "{id}: exactly the events published");
            });
        futures_join_all(pulls).await;
    }

    async fn seal(&self) {
        self.audit
            .seal_all(Duration::from_secs(60))
            .await
            .expect("seal");
    }
}

/// Runs the futures at once until all are done (`join_all`, without a futures
/// dependency).
async fn futures_join_all<F: Future<Output = ()>>(futures: impl IntoIterator<Item = F>) {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        pinned.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pinned.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

/// `iters` split into chunks of at most `CHUNK`.
fn chunks(iters: u64) -> impl Iterator<Item = u64> {
    (0..iters.div_ceil(CHUNK)).map(move |i| CHUNK.min(iters - i * CHUNK))
}

fn bench_bus<B: EventBus + 'static>(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    make_bus: impl Fn() -> Arc<B>,
) {
    let mut g = c.benchmark_group(format!("events/{name}"));
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    let mut buses = Vec::new();

    let bus = make_bus();
    buses.push(bus.clone());
    let fixture = rt.block_on(Fixture::new(bus));
    g.bench_function("publish", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut took = Duration::ZERO;
                for n in chunks(iters) {
                    let started = Instant::now();
                    fixture.publish(n).await;
                    took += started.elapsed();
                    fixture.drain(n).await;
                    fixture.seal().await;
                }
                took
            })
        })
    });

    let bus = make_bus();
    buses.push(bus.clone());
    let fixture = Arc::new(rt.block_on(Fixture::new(bus)));
    g.bench_function("publish_concurrent", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut took = Duration::ZERO;
                for n in chunks(iters) {
                    let started = Instant::now();
                    fixture.publish_concurrent(n).await;
                    took += started.elapsed();
                    fixture.drain(n).await;
                    fixture.seal().await;
                }
                took
            })
        })
    });

    let bus = make_bus();
    buses.push(bus.clone());
    let fixture = rt.block_on(Fixture::new(bus));
    g.bench_function("publish_seal_pull", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for n in chunks(iters) {
                    fixture.publish(n).await;
                    fixture.seal().await;
                    fixture.drain(n).await;
                }
                started.elapsed()
            })
        })
    });
    g.finish();

    rt.block_on(async {
        for bus in buses {
            for i in 0..SUBSCRIBERS {
                let id = PluginId::parse(&format!("bench-subscriber-{i}")).expect("id");
                bus.remove_queue(&id).await.expect("remove the queue");
            }
        }
    });
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    bench_bus(c, &rt, "memory", || {
        Arc::new(InMemoryEventBus::with_config(InMemoryBusConfig {
            queue_bound: QUEUE_BOUND,
            ..InMemoryBusConfig::default()
        }))
    });
    match std::env::var("VIVIFIED_TEST_NATS_URL") {
        Ok(url) if !url.is_empty() => {
            bench_bus(c, &rt, "nats", || {
                let tag = uuid::Uuid::new_v4().simple().to_string();
                let config = NatsBusConfig {
                    subject_prefix: format!("vivbench.{}", &tag[..12]),
                    stream_prefix: format!("VIVBENCH_{}", &tag[..12]),
                    queue_bound: QUEUE_BOUND,
                    ..NatsBusConfig::default()
                };
                Arc::new(
                    rt.block_on(NatsEventBus::connect(&url, config))
                        .expect("VIVIFIED_TEST_NATS_URL is set but NATS is unusable"),
                )
            });
        }
        _ => eprintln!("skipping the NATS benches: VIVIFIED_TEST_NATS_URL is not set"),
    }
}

criterion_group!(event_benches, benches);
criterion_main!(event_benches);
