//! In-memory adapters: ephemeral, one process. The in-memory store passes the same
//! conformance suite as the SQL stores, which is what makes it a trustworthy fake.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{PoisonError, RwLock};

use async_trait::async_trait;
use time::OffsetDateTime;
use vivified_ports::Enrollment;
use vivified_ports::{BreakGlass, Operator, OperatorName, OperatorStore, OperatorToken, Role};
use vivified_ports::{
    BufferedBeat, Health, HeartbeatOutcome, LivenessCounts, OutboxEntry, PluginId, PluginRecord,
    PluginStore, StoreError, Swept,
};

/// A [`PluginStore`] in a `BTreeMap` behind a lock: every operation is atomic. An
/// ordered set of `(next_deadline, id)` beside it makes a sweep cost what expires.
#[derive(Debug, Default)]
pub struct InMemoryPluginStore {
    inner: RwLock<Records>,
}

#[derive(Debug, Default)]
struct Records {
    by_id: BTreeMap<PluginId, PluginRecord>,
    deadlines: BTreeSet<(OffsetDateTime, PluginId)>,
    /// Unacknowledged lifecycle events: (type, plugin, registration, version) → written
    /// at.
    outbox: BTreeMap<OutboxKey, OffsetDateTime>,
    /// Enrollments by token hash.
    enrollments: BTreeMap<String, Enrollment>,
    /// Operators by name.
    operators: BTreeMap<OperatorName, Operator>,
    /// Operator tokens by prefix.
    operator_tokens: BTreeMap<String, OperatorToken>,
}

type OutboxKey = (String, PluginId, String, u64);

fn outbox_key(e: &OutboxEntry) -> OutboxKey {
    (
        e.event_type.clone(),
        e.plugin_id.clone(),
        e.registration.clone(),
        e.version,
    )
}

impl Records {
    /// Stores `record`, keeping the deadline index in step.
    fn put(&mut self, record: PluginRecord) {
        let id = record.plugin_id.clone();
        if let Some(d) = self.by_id.get(&id).and_then(|old| old.next_deadline) {
            self.deadlines.remove(&(d, id.clone()));
        }
        if let Some(d) = record.next_deadline {
            self.deadlines.insert((d, id.clone()));
        }
        self.by_id.insert(id, record);
    }

    fn remove(&mut self, id: &PluginId) -> Option<PluginRecord> {
        let old = self.by_id.remove(id)?;
        if let Some(d) = old.next_deadline {
            self.deadlines.remove(&(d, id.clone()));
        }
        Some(old)
    }

    /// Ids of enabled records with `next_deadline <= now`, earliest first.
    fn due(&self, now: OffsetDateTime, limit: usize) -> Vec<PluginId> {
        self.deadlines
            .iter()
            .take_while(|(d, _)| *d <= now)
            .filter(|(_, id)| self.by_id.get(id).is_some_and(|r| r.enabled))
            .take(limit)
            .map(|(_, id)| id.clone())
            .collect()
    }
}

impl InMemoryPluginStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Records> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Records> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl PluginStore for InMemoryPluginStore {
    async fn insert(&self, mut record: PluginRecord) -> Result<PluginRecord, StoreError> {
        let mut guard = self.write();
        let inner = &mut *guard;
        // One search of the map for the check and the insert (a new id has no deadline
        // to remove).
        let Entry::Vacant(slot) = inner.by_id.entry(record.plugin_id.clone()) else {
            return Err(StoreError::Conflict);
        };
        record.version = 1;
        record.settle();
        if let Some(d) = record.next_deadline {
            inner.deadlines.insert((d, record.plugin_id.clone()));
        }
        slot.insert(record.clone());
        Ok(record)
    }

    async fn get(&self, id: &PluginId) -> Result<Option<PluginRecord>, StoreError> {
        Ok(self.read().by_id.get(id).cloned())
    }

    async fn list(
        &self,
        after: Option<PluginId>,
        limit: usize,
    ) -> Result<Vec<PluginRecord>, StoreError> {
        let inner = self.read();
        let lower = match &after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        Ok(inner
            .by_id
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
        let mut inner = self.write();
        let slot = inner
            .by_id
            .get(&record.plugin_id)
            .ok_or(StoreError::NotFound)?;
        if slot.version != expected_version {
            return Err(StoreError::PreconditionFailed);
        }
        record.version = expected_version + 1;
        record.settle();
        inner.put(record.clone());
        Ok(record)
    }

    async fn record_heartbeat(
        &self,
        id: &PluginId,
        token_jti: &str,
        health: Health,
        at: OffsetDateTime,
        next_deadline: OffsetDateTime,
    ) -> Result<HeartbeatOutcome, StoreError> {
        let mut guard = self.write();
        let inner = &mut *guard;
        // Updated in place (one copy, for the answer), the deadline index in step.
        let slot = inner.by_id.get_mut(id).ok_or(StoreError::NotFound)?;
        let old_deadline = slot.next_deadline;
        let recovered = slot.apply_heartbeat(token_jti, health, at, next_deadline)?;
        slot.version += 1;
        let record = slot.clone();
        if old_deadline != record.next_deadline {
            if let Some(d) = old_deadline {
                inner.deadlines.remove(&(d, id.clone()));
            }
            if let Some(d) = record.next_deadline {
                inner.deadlines.insert((d, id.clone()));
            }
        }
        Ok(HeartbeatOutcome { record, recovered })
    }

    async fn record_heartbeats(&self, beats: &[BufferedBeat]) -> Result<u64, StoreError> {
        let mut inner = self.write();
        let mut changed = BTreeSet::new();
        for beat in beats {
            let Some(record) = inner.by_id.get(&beat.plugin_id) else {
                continue;
            };
            let mut record = record.clone();
            if record.apply_buffered_beat(beat) {
                if changed.insert(beat.plugin_id.clone()) {
                    record.version += 1;
                }
                inner.put(record);
            }
        }
        Ok(u64::try_from(changed.len()).unwrap_or(u64::MAX))
    }

    async fn delete(&self, id: &PluginId, expected_version: Option<u64>) -> Result<(), StoreError> {
        let mut inner = self.write();
        let slot = inner.by_id.get(id).ok_or(StoreError::NotFound)?;
        if expected_version.is_some_and(|v| v != slot.version) {
            return Err(StoreError::PreconditionFailed);
        }
        inner.remove(id);
        Ok(())
    }

    async fn earliest_deadline(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        Ok(self.read().deadlines.first().map(|(d, _)| *d))
    }

    async fn liveness_counts(&self, now: OffsetDateTime) -> Result<LivenessCounts, StoreError> {
        let inner = self.read();
        let mut counts = LivenessCounts::default();
        for r in inner.by_id.values() {
            if r.enabled && r.status.is_live() {
                counts.live += 1;
                if r.next_deadline.is_some_and(|d| d <= now) {
                    counts.due += 1;
                }
            }
        }
        Ok(counts)
    }

    async fn sweep(
        &self,
        now: OffsetDateTime,
        deregister_in: Option<std::time::Duration>,
        limit: usize,
    ) -> Result<Vec<Swept>, StoreError> {
        let mut inner = self.write();
        let due = inner.due(now, limit);
        let mut swept = Vec::with_capacity(due.len());
        for id in due {
            let Some(mut r) = inner.by_id.get(&id).cloned() else {
                continue;
            };
            let Some(mut step) = r.sweep_step(now, deregister_in) else {
                continue;
            };
            if step.event == Some("plugin.deregistered") {
                inner.remove(&id);
            } else {
                r.version += 1;
                step.record.version = r.version;
                inner.put(r);
            }
            if let Some(entry) = OutboxEntry::of(&step, now) {
                inner.outbox.insert(outbox_key(&entry), now);
            }
            swept.push(step);
        }
        Ok(swept)
    }

    async fn claim_outbox(
        &self,
        older_than: OffsetDateTime,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut inner = self.write();
        let mut due: Vec<(OffsetDateTime, OutboxKey)> = inner
            .outbox
            .iter()
            .filter(|(_, at)| **at <= older_than)
            .map(|(k, at)| (*at, k.clone()))
            .collect();
        due.sort();
        due.truncate(limit);
        Ok(due
            .into_iter()
            .map(|(_, key)| {
                inner.outbox.insert(key.clone(), now);
                let (event_type, plugin_id, registration, version) = key;
                OutboxEntry {
                    event_type,
                    plugin_id,
                    registration,
                    version,
                    at: now,
                }
            })
            .collect())
    }

    async fn ack_outbox(&self, entries: &[OutboxEntry]) -> Result<(), StoreError> {
        let mut inner = self.write();
        for e in entries {
            inner.outbox.remove(&outbox_key(e));
        }
        Ok(())
    }

    async fn revoke_tokens_issued_before(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let mut inner = self.write();
        let mut revoked = 0;
        for slot in inner.by_id.values_mut() {
            if slot.revoke_issued_before(before) {
                slot.version += 1;
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    async fn create_enrollment(&self, enrollment: &Enrollment) -> Result<(), StoreError> {
        let mut inner = self.write();
        if inner.enrollments.contains_key(&enrollment.token_hash)
            || inner.enrollments.values().any(|e| e.id == enrollment.id)
        {
            return Err(StoreError::Conflict);
        }
        inner
            .enrollments
            .insert(enrollment.token_hash.clone(), enrollment.clone());
        Ok(())
    }

    async fn enrollment(&self, token_hash: &str) -> Result<Option<Enrollment>, StoreError> {
        Ok(self.read().enrollments.get(token_hash).cloned())
    }

    async fn use_enrollment(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Enrollment, StoreError> {
        let mut inner = self.write();
        let e = inner
            .enrollments
            .get_mut(token_hash)
            .ok_or(StoreError::NotFound)?;
        if e.used_at.is_some() || now >= e.expires_at {
            return Err(StoreError::PreconditionFailed);
        }
        e.used_at = Some(now);
        Ok(e.clone())
    }

    async fn release_enrollment(
        &self,
        token_hash: &str,
        used_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if let Some(e) = self.write().enrollments.get_mut(token_hash)
            && e.used_at == Some(used_at)
        {
            e.used_at = None;
        }
        Ok(())
    }

    async fn list_enrollments(
        &self,
        plugin_id: Option<PluginId>,
        limit: usize,
    ) -> Result<Vec<Enrollment>, StoreError> {
        let inner = self.read();
        let mut out: Vec<Enrollment> = inner
            .enrollments
            .values()
            .filter(|e| plugin_id.as_ref().is_none_or(|p| *p == e.plugin_id))
            .cloned()
            .collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        out.truncate(limit);
        Ok(out)
    }

    async fn cancel_enrollment(&self, id: &str) -> Result<Enrollment, StoreError> {
        let mut inner = self.write();
        let (hash, e) = inner
            .enrollments
            .iter()
            .find(|(_, e)| e.id == id)
            .ok_or(StoreError::NotFound)?;
        if e.used_at.is_some() {
            return Err(StoreError::PreconditionFailed);
        }
        let hash = hash.clone();
        inner.enrollments.remove(&hash).ok_or(StoreError::NotFound)
    }

    async fn purge_enrollments(&self, ended_before: OffsetDateTime) -> Result<u64, StoreError> {
        let mut inner = self.write();
        let before = inner.enrollments.len();
        inner.enrollments.retain(|_, e| {
            e.expires_at >= ended_before && e.used_at.is_none_or(|u| u >= ended_before)
        });
        Ok((before - inner.enrollments.len()) as u64)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

pub use crate::memory_bus::{InMemoryBusConfig, InMemoryEventBus};

pub use crate::audit_memory::InMemoryAuditLog;

#[async_trait]
impl OperatorStore for InMemoryPluginStore {
    async fn create_operator(&self, operator: &Operator) -> Result<(), StoreError> {
        match self.write().operators.entry(operator.name.clone()) {
            Entry::Occupied(_) => Err(StoreError::Conflict),
            Entry::Vacant(v) => {
                v.insert(operator.clone());
                Ok(())
            }
        }
    }

    async fn operator(&self, name: &OperatorName) -> Result<Option<Operator>, StoreError> {
        Ok(self.read().operators.get(name).cloned())
    }

    async fn list_operators(
        &self,
        after: Option<&OperatorName>,
        limit: usize,
    ) -> Result<Vec<Operator>, StoreError> {
        let inner = self.read();
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(inner
            .operators
            .range((from, Bound::Unbounded))
            .take(limit)
            .map(|(_, o)| o.clone())
            .collect())
    }

    async fn delete_operator(&self, name: &OperatorName) -> Result<Operator, StoreError> {
        let mut inner = self.write();
        let removed = inner.operators.remove(name).ok_or(StoreError::NotFound)?;
        inner.operator_tokens.retain(|_, t| &t.operator != name);
        Ok(removed)
    }

    async fn create_operator_token(&self, token: &OperatorToken) -> Result<(), StoreError> {
        let mut inner = self.write();
        if !inner.operators.contains_key(&token.operator) {
            return Err(StoreError::NotFound);
        }
        if inner.operator_tokens.contains_key(&token.prefix)
            || inner
                .operator_tokens
                .values()
                .any(|t| t.token_hash == token.token_hash)
        {
            return Err(StoreError::Conflict);
        }
        inner
            .operator_tokens
            .insert(token.prefix.clone(), token.clone());
        Ok(())
    }

    async fn operator_token(
        &self,
        prefix: &str,
    ) -> Result<Option<(OperatorToken, Operator)>, StoreError> {
        let inner = self.read();
        Ok(inner.operator_tokens.get(prefix).and_then(|t| {
            inner
                .operators
                .get(&t.operator)
                .map(|o| (t.clone(), o.clone()))
        }))
    }

    async fn operator_tokens(&self, name: &OperatorName) -> Result<Vec<OperatorToken>, StoreError> {
        let mut tokens: Vec<OperatorToken> = self
            .read()
            .operator_tokens
            .values()
            .filter(|t| &t.operator == name)
            .cloned()
            .collect();
        tokens.sort_by(|a, b| (a.created_at, &a.prefix).cmp(&(b.created_at, &b.prefix)));
        Ok(tokens)
    }

    async fn delete_operator_token(
        &self,
        name: &OperatorName,
        prefix: &str,
    ) -> Result<OperatorToken, StoreError> {
        let mut inner = self.write();
        match inner.operator_tokens.entry(prefix.to_owned()) {
            Entry::Occupied(e) if &e.get().operator == name => Ok(e.remove()),
            _ => Err(StoreError::NotFound),
        }
    }

    async fn set_break_glass(
        &self,
        name: &OperatorName,
        grant: Option<&BreakGlass>,
    ) -> Result<Operator, StoreError> {
        let mut inner = self.write();
        let operator = inner.operators.get_mut(name).ok_or(StoreError::NotFound)?;
        operator.break_glass = grant.cloned();
        Ok(operator.clone())
    }

    async fn count_operators(&self, role: Role, now: OffsetDateTime) -> Result<u64, StoreError> {
        let n = self
            .read()
            .operators
            .values()
            .filter(|o| o.role == role && o.is_current(now))
            .count();
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_memory_store_passes_the_conformance_suite() {
        vivified_conformance::store::plugin_store_conformance(Arc::new(InMemoryPluginStore::new()))
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_memory_store_passes_the_operator_conformance_suite() {
        vivified_conformance::operators::operator_store_conformance(Arc::new(
            InMemoryPluginStore::new(),
        ))
        .await;
    }
}
