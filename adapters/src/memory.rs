//! In-memory adapters: ephemeral, one process. The in-memory store passes the same
//! conformance suite as the SQL stores, which is what makes it a trustworthy fake.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Mutex, PoisonError, RwLock};

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use vivified_ports::{
    AuditEntry, AuditError, AuditLog, BusError, BusEvent, EventBus, Health, Liveness, PluginId,
    PluginRecord, PluginStore, StoreError,
};

/// A [`PluginStore`] in a `BTreeMap` behind a lock: every operation is atomic.
#[derive(Debug, Default)]
pub struct InMemoryPluginStore {
    records: RwLock<BTreeMap<PluginId, PluginRecord>>,
}

impl InMemoryPluginStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl PluginStore for InMemoryPluginStore {
    async fn insert(&self, mut record: PluginRecord) -> Result<PluginRecord, StoreError> {
        let mut map = self.records.write().unwrap_or_else(PoisonError::into_inner);
        if map.contains_key(&record.plugin_id) {
            return Err(StoreError::Conflict);
        }
        record.version = 1;
        map.insert(record.plugin_id.clone(), record.clone());
        Ok(record)
    }

    async fn get(&self, id: &PluginId) -> Result<Option<PluginRecord>, StoreError> {
        Ok(self
            .records
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned())
    }

    async fn list(
        &self,
        after: Option<PluginId>,
        limit: usize,
    ) -> Result<Vec<PluginRecord>, StoreError> {
        let map = self.records.read().unwrap_or_else(PoisonError::into_inner);
        let lower = match &after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        Ok(map
            .range((lower, Bound::Unbounded))
            .take(limit)
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn replace(
        &self,
        mut record: PluginRecord,
        expected_version: u64,
    ) -> Result<PluginRecord, StoreError> {
        let mut map = self.records.write().unwrap_or_else(PoisonError::into_inner);
        let slot = map.get_mut(&record.plugin_id).ok_or(StoreError::NotFound)?;
        if slot.version != expected_version {
            return Err(StoreError::PreconditionFailed);
        }
        record.version = expected_version + 1;
        *slot = record.clone();
        Ok(record)
    }

    async fn record_heartbeat(
        &self,
        id: &PluginId,
        token_jti: &str,
        health: Health,
        at: OffsetDateTime,
    ) -> Result<PluginRecord, StoreError> {
        let mut map = self.records.write().unwrap_or_else(PoisonError::into_inner);
        let slot = map.get_mut(id).ok_or(StoreError::NotFound)?;
        if slot.token_jti != token_jti || !slot.enabled {
            return Err(StoreError::PreconditionFailed);
        }
        slot.last_heartbeat = Some(at);
        slot.health = health;
        slot.status = Liveness::Active;
        slot.version += 1;
        Ok(slot.clone())
    }

    async fn delete(&self, id: &PluginId, expected_jti: Option<String>) -> Result<(), StoreError> {
        let mut map = self.records.write().unwrap_or_else(PoisonError::into_inner);
        let slot = map.get(id).ok_or(StoreError::NotFound)?;
        if expected_jti.is_some_and(|j| j != slot.token_jti) {
            return Err(StoreError::PreconditionFailed);
        }
        map.remove(id);
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// An in-process [`EventBus`] over a tokio broadcast channel: single process only.
/// A subscriber that falls more than `capacity` events behind loses the oldest.
#[derive(Debug)]
pub struct InMemoryEventBus {
    tx: broadcast::Sender<BusEvent>,
}

impl InMemoryEventBus {
    /// A bus that buffers up to `capacity` events per subscriber.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }

    /// Receives every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.tx.subscribe()
    }
}

#[async_trait]
impl EventBus for InMemoryEventBus {
    async fn publish(&self, event: BusEvent) -> Result<(), BusError> {
        // No subscriber is not an error: the event is simply not wanted.
        let _ = self.tx.send(event);
        Ok(())
    }
}

/// An in-memory [`AuditLog`] that keeps the newest `capacity` entries (a ring), so a
/// long-running demo cannot grow without bound. Not tamper-evident, not durable: for
/// tests and demos.
#[derive(Debug)]
pub struct InMemoryAuditLog {
    capacity: usize,
    entries: Mutex<VecDeque<AuditEntry>>,
}

impl InMemoryAuditLog {
    /// A log keeping the newest `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: Mutex::new(VecDeque::new()),
        }
    }

    /// A copy of the entries kept, oldest first.
    pub fn entries(&self) -> Vec<AuditEntry> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

#[async_trait]
impl AuditLog for InMemoryAuditLog {
    async fn append(&self, entry: AuditEntry) -> Result<(), AuditError> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() == self.capacity {
            entries.pop_front();
        }
        entries.push_back(entry);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_memory_store_passes_the_conformance_suite() {
        vivified_ports::testing::plugin_store_conformance(Arc::new(InMemoryPluginStore::new()))
            .await;
    }

    #[tokio::test]
    async fn audit_ring_keeps_the_newest() {
        let log = InMemoryAuditLog::new(2);
        for i in 0..3 {
            log.append(AuditEntry {
                at: vivified_ports::testing::t0(),
                actor: "system".into(),
                action: format!("a{i}"),
                target: "-".into(),
                outcome: vivified_ports::AuditOutcome::Success,
                reason: "r".into(),
                trace_id: "t".into(),
                details: serde_json::Value::Null,
            })
            .await
            .unwrap();
        }
        let actions: Vec<_> = log.entries().into_iter().map(|e| e.action).collect();
        assert_eq!(actions, ["a1", "a2"]);
    }

    #[tokio::test]
    async fn bus_delivers_to_subscribers() {
        let bus = InMemoryEventBus::new(4);
        let mut rx = bus.subscribe();
        let ev = BusEvent {
            event_id: "e1".into(),
            event_type: "plugin.registered".into(),
            trace_id: "t".into(),
            source: "core".into(),
            data_traits: vec![],
            at: vivified_ports::testing::t0(),
            payload: serde_json::json!({"plugin_id": "x"}),
        };
        bus.publish(ev.clone()).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), ev);
    }
}
