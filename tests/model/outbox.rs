//! The sweeper's outbox: a transition the store has made is announced on the bus at
//! least once, even if the bus refuses the event or the core dies between the
//! transition and the publication — and a replica does not announce it a second time
//! while the sweep that made it may still be publishing.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use serde_json::json;
use time::{Duration, OffsetDateTime};
use vivified_adapters::clock::ManualClock;
use vivified_adapters::jwt::{JwtConfig, JwtTokenIssuer};
use vivified_adapters::memory::{InMemoryAuditLog, InMemoryPluginStore};
use vivified_adapters::sqlite::SqlitePluginStore;
use vivified_domain::{ManifestValidator, Mode, Ports, Registry, RegistryConfig};
use vivified_ports::{BusError, BusEvent, EventBus, PluginStore, Secret};

/// A bus that refuses every event while `down`, and records what it took.
#[derive(Default)]
struct FlakyBus {
    down: AtomicBool,
    taken: Mutex<Vec<BusEvent>>,
}

impl FlakyBus {
    fn down() -> Arc<Self> {
        let bus = Self::default();
        bus.down.store(true, Ordering::SeqCst);
        Arc::new(bus)
    }

    /// The ids of the events taken so far of this type, sorted.
    fn taken(&self, event_type: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|e| e.event_type == event_type)
            .map(|e| e.event_id.clone())
            .collect();
        ids.sort();
        ids
    }
}

#[async_trait]
impl EventBus for FlakyBus {
    async fn publish(&self, event: BusEvent) -> Result<(), BusError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BusError::Unavailable("the test bus is down".into()));
        }
        self.taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
        Ok(())
    }

    // Delivery queues are not used by the sweeper: this bus has none.
    async fn enqueue(&self, _: &vivified_ports::PluginId, _: BusEvent) -> Result<(), BusError> {
        Err(BusError::Unavailable("the test bus has no queues".into()))
    }

    async fn pull<'a>(
        &self,
        _: &vivified_ports::PluginId,
        _: Option<&'a vivified_ports::Cursor>,
        _: usize,
        _: StdDuration,
    ) -> Result<vivified_ports::Pulled, BusError> {
        Err(BusError::Unavailable("the test bus has no queues".into()))
    }

    async fn remove_queue(&self, _: &vivified_ports::PluginId) -> Result<(), BusError> {
        Ok(())
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}

const LEASE: i64 = 30;

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_767_225_600).expect("valid timestamp")
}

/// One core replica: its own registry and bus over a shared store and clock.
fn replica(store: Arc<dyn PluginStore>, clock: Arc<ManualClock>, bus: Arc<FlakyBus>) -> Registry {
    replica_with_audit(store, clock, bus, Arc::new(InMemoryAuditLog::new(1024)))
}

fn replica_with_audit(
    store: Arc<dyn PluginStore>,
    clock: Arc<ManualClock>,
    bus: Arc<FlakyBus>,
    audit: Arc<dyn vivified_ports::AuditLog>,
) -> Registry {
    let tokens = Arc::new(
        JwtTokenIssuer::new(JwtConfig::new(Secret::new(
            "outbox-test-secret-0123456789abcdef",
        )))
        .expect("jwt config"),
    );
    let ports = Ports {
        operators: Arc::new(vivified_adapters::memory::InMemoryPluginStore::new()),
        identity: None,
        store,
        tokens,
        clock,
        bus,
        audit,
    };
    let config = RegistryConfig {
        mode: Mode::Dev,
        heartbeat_interval: StdDuration::from_secs(10),
        heartbeat_ttl: StdDuration::from_secs(30),
        deregister_after: Some(StdDuration::from_secs(120)),
        self_preservation_min_live: 100,
        outbox_lease: StdDuration::from_secs(LEASE as u64),
        ..RegistryConfig::default()
    };
    Registry::new(
        ports,
        Arc::new(ManifestValidator::new().expect("schema compiles")),
        config,
    )
}

fn manifest(id: &str) -> serde_json::Value {
    json!({
        "id": id,
        "name": format!("Outbox plugin {id}"),
        "version": "1.0.0",
        "contracts": ["CommunicationPlugin"],
        "traits": [],
        "security": {"authentication_required": true, "data_classification": ["internal"]},
        "compliance": {"hipaa_controls": [], "audit_level": "basic"}
    })
}

/// The event ids the sweeper must publish for these records' stale transition.
async fn stale_ids(store: &dyn PluginStore, ids: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        let r = store
            .get(&id.parse().expect("valid id"))
            .await
            .expect("store")
            .expect("present");
        out.push(format!(
            "plugin.stale:{id}:{}:{}",
            r.registration_key(),
            r.version
        ));
    }
    out.sort();
    out
}

/// Replica A's bus is down while its sweep marks three plugins stale; replica B does
/// not republish within the lease, does after it, exactly once, with the ids A would
/// have used; A, its bus back, publishes nothing twice.
async fn refused_events_are_published_by_a_later_sweep(store: Arc<dyn PluginStore>) {
    let clock = Arc::new(ManualClock::new(t0()));
    let bus_a = FlakyBus::down();
    let a = replica(Arc::clone(&store), Arc::clone(&clock), Arc::clone(&bus_a));
    let bus_b = Arc::new(FlakyBus::default());
    let b = replica(Arc::clone(&store), Arc::clone(&clock), Arc::clone(&bus_b));
    let ids = ["ob-one", "ob-two", "ob-three"];
    for id in ids {
        a.register(&manifest(id), None, "t")
            .await
            .expect("register");
    }
    clock.advance(Duration::seconds(31));
    let report = a.sweep().await.expect("the sweep itself succeeds");
    assert_eq!((report.stale, report.republished), (3, 0), "{report:?}");
    let want = stale_ids(&*store, &ids).await;

    let report = b.sweep().await.expect("sweep");
    assert_eq!(
        (report.stale, report.republished),
        (0, 0),
        "within the lease the events are A's to publish: {report:?}"
    );
    assert!(bus_b.taken("plugin.stale").is_empty());

    clock.advance(Duration::seconds(LEASE + 1));
    let report = b.sweep().await.expect("sweep");
    assert_eq!(report.republished, 3, "{report:?}");
    assert_eq!(bus_b.taken("plugin.stale"), want);

    bus_a.down.store(false, Ordering::SeqCst);
    clock.advance(Duration::seconds(LEASE + 1));
    for r in [&a, &b] {
        assert_eq!(r.sweep().await.expect("sweep").republished, 0);
    }
    assert!(
        bus_a.taken("plugin.stale").is_empty(),
        "acknowledged entries are not published again"
    );
    assert_eq!(bus_b.taken("plugin.stale"), want);

    // Deregistration goes through the same outbox.
    bus_a.down.store(true, Ordering::SeqCst);
    clock.advance(Duration::seconds(120));
    let report = a.sweep().await.expect("sweep");
    assert_eq!(report.deregistered, 3, "{report:?}");
    clock.advance(Duration::seconds(LEASE + 1));
    assert_eq!(b.sweep().await.expect("sweep").republished, 3);
    assert_eq!(bus_b.taken("plugin.deregistered").len(), 3);
}

#[tokio::test]
async fn refused_events_are_republished_on_the_in_memory_store() {
    refused_events_are_published_by_a_later_sweep(Arc::new(InMemoryPluginStore::new())).await;
}

#[tokio::test]
async fn refused_events_are_republished_on_sqlite() {
    refused_events_are_published_by_a_later_sweep(Arc::new(
        SqlitePluginStore::in_memory().await.expect("sqlite"),
    ))
    .await;
}

/// The core dies after the store made the transition and before the bus took the
/// event (here: the bus refused it and the process is gone). The outbox is in the
/// database file, so the restarted core publishes the events.
#[tokio::test]
async fn a_core_restarted_on_sqlite_publishes_what_the_dead_one_did_not() {
    let dir = std::env::temp_dir().join(format!("vivified-outbox-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("vivified.db");
    let clock = Arc::new(ManualClock::new(t0()));
    let want = {
        let store: Arc<dyn PluginStore> = Arc::new(open(&path).await);
        let dead = replica(Arc::clone(&store), Arc::clone(&clock), FlakyBus::down());
        dead.register(&manifest("ob-crash"), None, "t")
            .await
            .expect("register");
        clock.advance(Duration::seconds(31));
        assert_eq!(dead.sweep().await.expect("sweep").stale, 1);
        stale_ids(&*store, &["ob-crash"]).await
    };
    let store: Arc<dyn PluginStore> = Arc::new(open(&path).await);
    let bus = Arc::new(FlakyBus::default());
    let restarted = replica(store, Arc::clone(&clock), Arc::clone(&bus));
    clock.advance(Duration::seconds(LEASE + 1));
    assert_eq!(restarted.sweep().await.expect("sweep").republished, 1);
    assert_eq!(bus.taken("plugin.stale"), want);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn open(path: &Path) -> SqlitePluginStore {
    SqlitePluginStore::open(path).await.expect("sqlite file")
}

/// The sweeper audits a transition before publishing it and acknowledges it only when
/// both happened: while the audit log refuses, the transition stays in the outbox and a
/// later sweep audits and publishes it.
#[tokio::test]
async fn a_transition_is_audited_before_its_event_and_retried_when_the_audit_log_fails() {
    use vivified_ports::audit::MockAuditLog;
    use vivified_ports::{AuditEntry, AuditError};
    let failing = Arc::new(AtomicBool::new(false));
    let entries: Arc<Mutex<Vec<AuditEntry>>> = Arc::default();
    let mut audit = MockAuditLog::new();
    {
        let failing = Arc::clone(&failing);
        let entries = Arc::clone(&entries);
        audit.expect_append().returning(move |e| {
            if failing.load(Ordering::SeqCst) {
                Err(AuditError::Unavailable("the test audit log is down".into()))
            } else {
                entries
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(e);
                Ok(())
            }
        });
    }
    let store: Arc<dyn PluginStore> = Arc::new(InMemoryPluginStore::new());
    let clock = Arc::new(ManualClock::new(t0()));
    let bus = Arc::new(FlakyBus::default());
    let r = replica_with_audit(
        Arc::clone(&store),
        Arc::clone(&clock),
        Arc::clone(&bus),
        Arc::new(audit),
    );
    for id in ["au-one", "au-two"] {
        r.register(&manifest(id), None, "t")
            .await
            .expect("register");
    }
    let stale_entries = || {
        entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|e| e.action == "plugin.stale")
            .map(|e| (e.actor.clone(), e.target.clone(), e.reason.clone()))
            .collect::<Vec<_>>()
    };

    failing.store(true, Ordering::SeqCst);
    clock.advance(Duration::seconds(31));
    let report = r.sweep().await.expect("the sweep itself succeeds");
    assert_eq!(report.stale, 2, "the transitions happen: {report:?}");
    assert!(
        bus.taken("plugin.stale").is_empty(),
        "no event is published before its audit entry"
    );

    failing.store(false, Ordering::SeqCst);
    clock.advance(Duration::seconds(LEASE + 1));
    let report = r.sweep().await.expect("sweep");
    assert_eq!(report.republished, 2, "{report:?}");
    let mut got = stale_entries();
    got.sort();
    assert_eq!(
        got,
        [
            (
                "system".to_owned(),
                "au-one".to_owned(),
                "heartbeat_ttl".to_owned()
            ),
            (
                "system".to_owned(),
                "au-two".to_owned(),
                "heartbeat_ttl".to_owned()
            ),
        ]
    );
    assert_eq!(bus.taken("plugin.stale").len(), 2);
    clock.advance(Duration::seconds(LEASE + 1));
    assert_eq!(r.sweep().await.expect("sweep").republished, 0);
    assert_eq!(stale_entries().len(), 2, "audited once each");
}
