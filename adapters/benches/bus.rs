//! Event-bus criterion benches: deliveries enqueued and pulled for 10 target plugins,
//! on the in-process bus and — when `VIVIFIED_TEST_NATS_URL` is set — on NATS
//! JetStream (file storage, one stream per plugin).
//!
//! - `enqueue`: one event enqueued for each of the 10 targets at once (a fan-out, as the
//!   core does it), throughput in deliveries.
//! - `pull`: the 10 targets each pull and acknowledge their queued deliveries in
//!   batches of 100, at once; throughput in deliveries.
//!
//! `cargo bench -p vivified-adapters --bench bus`
//! `VIVIFIED_TEST_NATS_URL=nats://127.0.0.1:4222 cargo bench -p vivified-adapters --bench bus`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use vivified_adapters::memory::{InMemoryBusConfig, InMemoryEventBus};
use vivified_adapters::nats::{NatsBusConfig, NatsEventBus};
use vivified_conformance::bus::bus_event;
use vivified_ports::{Cursor, EventBus, PluginId};

const TARGETS: usize = 10;
const BATCH: usize = 100;

fn targets() -> Vec<PluginId> {
    (0..TARGETS)
        .map(|i| PluginId::parse(&format!("bench-target-{i}")).expect("id"))
        .collect()
}

/// Event ids must differ across rounds: NATS drops a repeated id within two minutes.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

async fn fan_out(bus: &dyn EventBus, targets: &[PluginId]) {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let event = bus_event(&format!("bench-{n}"), "bench-source");
    join_all(targets.iter().map(|t| bus.enqueue(t, event.clone())))
        .await
        .into_iter()
        .for_each(|r| r.expect("enqueue"));
}

/// Pulls and acknowledges `per_target` deliveries on every target at once.
async fn drain_all(bus: &dyn EventBus, targets: &[PluginId], per_target: u64) {
    join_all(targets.iter().map(|t| async move {
        let mut after: Option<Cursor> = None;
        let mut got = 0u64;
        while got < per_target {
            let pulled = bus
                .pull(t, after.as_ref(), BATCH, Duration::from_secs(5))
                .await
                .expect("pull");
            assert!(!pulled.events.is_empty(), "queued deliveries are returned");
            got += pulled.events.len() as u64;
            after = pulled.next_cursor;
        }
        // Acknowledge the last batch too, so the next round starts empty.
        bus.pull(t, after.as_ref(), 1, Duration::ZERO)
            .await
            .expect("pull");
    }))
    .await;
}

fn bench_bus(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, bus: Arc<dyn EventBus>) {
    let targets = targets();
    let mut g = c.benchmark_group(format!("bus/{name}"));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(TARGETS as u64));
    g.bench_function("enqueue", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    fan_out(&*bus, &targets).await;
                }
                let took = started.elapsed();
                drain_all(&*bus, &targets, iters).await;
                took
            })
        })
    });
    g.bench_function("pull", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                for _ in 0..iters {
                    fan_out(&*bus, &targets).await;
                }
                let started = Instant::now();
                drain_all(&*bus, &targets, iters).await;
                started.elapsed()
            })
        })
    });
    g.finish();
    rt.block_on(async {
        for t in &targets {
            bus.remove_queue(t).await.expect("remove_queue");
        }
    });
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let memory = InMemoryEventBus::with_config(InMemoryBusConfig {
        broadcast_capacity: 16,
        queue_bound: 1_000_000,
    });
    bench_bus(c, &rt, "memory", Arc::new(memory));
    match std::env::var("VIVIFIED_TEST_NATS_URL") {
        Ok(url) if !url.is_empty() => {
            let tag = uuid::Uuid::new_v4().simple().to_string();
            let config = NatsBusConfig {
                subject_prefix: format!("vivbench.{}", &tag[..12]),
                stream_prefix: format!("VIVBENCH_{}", &tag[..12]),
                queue_bound: 1_000_000,
                ..NatsBusConfig::default()
            };
            let bus = rt
                .block_on(NatsEventBus::connect(&url, config))
                .expect("VIVIFIED_TEST_NATS_URL is set but NATS is unusable");
            bench_bus(c, &rt, "nats", Arc::new(bus));
        }
        _ => eprintln!("skipping the NATS benches: VIVIFIED_TEST_NATS_URL is not set"),
    }
}

criterion_group!(bus_benches, benches);
criterion_main!(bus_benches);
