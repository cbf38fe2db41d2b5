//! Criterion benches of the domain: manifest validation, and `Registry::register` /
//! `Registry::heartbeat` on the in-memory store with real HS256 JWTs. The heartbeat
//! bench repeats one token, which the JWT issuer recognises from memory after its first
//! verification, as it does a plugin's heartbeats.
//!
//! `cargo bench -p vivified-domain --bench domain`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use vivified_adapters::clock::SystemClock;
use vivified_adapters::jwt::{JwtConfig, JwtTokenIssuer};
use vivified_adapters::memory::{InMemoryAuditLog, InMemoryEventBus, InMemoryPluginStore};
use vivified_domain::ManifestValidator;
use vivified_domain::registry::{HeartbeatReport, Ports, Registry, RegistryConfig};
use vivified_ports::{Health, Secret};

const VALID: &str = include_str!("../../schemas/examples/user-management.json");
const INVALID: &str = include_str!("../../schemas/examples/invalid/schema-errors.json");

fn registry() -> Registry {
    let ports = Ports {
        operators: Arc::new(vivified_adapters::memory::InMemoryPluginStore::new()),
        identity: None,
        store: Arc::new(InMemoryPluginStore::new()),
        tokens: Arc::new(
            JwtTokenIssuer::new(JwtConfig::new(Secret::new(
                "bench-secret-bench-secret-bench-secret",
            )))
            .expect("valid config"),
        ),
        clock: Arc::new(SystemClock),
        bus: Arc::new(InMemoryEventBus::new(1024)),
        audit: Arc::new(InMemoryAuditLog::new(10_000)),
    };
    Registry::new(
        ports,
        Arc::new(ManifestValidator::new().expect("schema")),
        RegistryConfig::default(),
    )
}

fn validation(c: &mut Criterion) {
    let validator = ManifestValidator::new().expect("schema");
    let valid: serde_json::Value = serde_json::from_str(VALID).expect("json");
    let invalid: serde_json::Value = serde_json::from_str(INVALID).expect("json");
    let mut g = c.benchmark_group("manifest");
    g.bench_function("validate_valid", |b| {
        b.iter(|| validator.validate(black_box(&valid)).is_ok())
    });
    g.bench_function("validate_invalid", |b| {
        b.iter(|| validator.validate(black_box(&invalid)).is_err())
    });
    // Reading the body: serde_json's own Value, and ours that refuses repeated members.
    g.bench_function("parse_serde_json", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(VALID)).is_ok())
    });
    g.bench_function("parse_unique_members", |b| {
        b.iter(|| vivified_domain::json::from_str(black_box(VALID)).is_ok())
    });
    g.finish();
}

fn registry_ops(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let manifest: serde_json::Value = serde_json::from_str(VALID).expect("json");
    let mut g = c.benchmark_group("registry");

    let reg = registry();
    let counter = AtomicU64::new(0);
    g.bench_function("register", |b| {
        b.iter(|| {
            let mut m = manifest.clone();
            m["id"] = format!("bench-{}", counter.fetch_add(1, Ordering::Relaxed)).into();
            rt.block_on(reg.register(&m, None, "bench"))
                .expect("registers")
        })
    });

    let reg = registry();
    let issued = rt
        .block_on(reg.register(&manifest, None, "bench"))
        .expect("registers");
    let token = issued.token.expose().to_owned();
    g.bench_function("heartbeat", |b| {
        b.iter(|| {
            rt.block_on(reg.heartbeat(
                "user-management",
                Some(&token),
                HeartbeatReport {
                    health: Health::Healthy,
                },
            ))
            .expect("heartbeat")
        })
    });
    g.finish();
}

criterion_group!(benches, validation, registry_ops);
criterion_main!(benches);
