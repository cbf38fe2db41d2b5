//! `BufferedHeartbeats`: a [`PluginStore`] in front of a durable one that answers a
//! heartbeat changing nothing but times from memory, and writes such beats in batches
//! ([`BufferedHeartbeats::flush`], driven by its owner at least every flush interval).
//!
//! Heartbeats are the steady load of a core: with every beat its own durable commit,
//! a store on disk answers no faster than it can sync. Here a beat is answered once it
//! is authenticated against the replica's **view** of its plugin (the record as last
//! read or written through this store) and recorded in memory. What stays true:
//! - A beat that changes a state (an instance becoming active, a stale plugin
//!   recovering, a new health) is written at once, as before.
//! - A view older than `view_ttl` is read again first, so a plugin disabled, revoked or
//!   deregistered through another replica is refused within `view_ttl`; through this
//!   one, at once.
//! - A buffered beat only moves deadlines later and never makes an instance active
//!   ([`PluginRecord::apply_buffered_beat`]); a crash loses at most the beats since the
//!   last flush, which can only leave a stored deadline earlier.
//! - A sweep through this store flushes first, and fails if the flush fails: no plugin
//!   whose beats are held here is swept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use time::OffsetDateTime;
use vivified_ports::{
    AuditEntry, BufferedBeat, Clock, Enrollment, Health, HeartbeatOutcome, LivenessCounts,
    OutboxEntry, PluginId, PluginRecord, PluginStore, StoreError, Swept,
};

/// A [`PluginStore`] that buffers heartbeats in front of `inner` (see the module).
pub struct BufferedHeartbeats {
    inner: Arc<dyn PluginStore>,
    clock: Arc<dyn Clock>,
    view_ttl: time::Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The record of each plugin as last read or written here (with the beats of
    /// `pending` applied), and when it was read.
    views: HashMap<PluginId, View>,
    /// Beats answered and not yet written: the newest of each instance.
    pending: HashMap<PluginId, Vec<BufferedBeat>>,
}

struct View {
    record: PluginRecord,
    read_at: OffsetDateTime,
}

impl BufferedHeartbeats {
    /// Buffers heartbeats in front of `inner`; a view of a plugin is trusted for
    /// `view_ttl` after it was read (by `clock`).
    pub fn new(
        inner: Arc<dyn PluginStore>,
        clock: Arc<dyn Clock>,
        view_ttl: std::time::Duration,
    ) -> Self {
        Self {
            inner,
            clock,
            view_ttl: time::Duration::try_from(view_ttl).unwrap_or(time::Duration::MAX),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many beats are answered and not yet written.
    pub fn pending(&self) -> usize {
        self.state().pending.values().map(Vec::len).sum()
    }

    /// Writes every buffered beat, in one batch ([`PluginStore::record_heartbeats`]).
    /// Returns how many records changed. On failure the beats are kept for the next
    /// flush (a newer beat of the same instance replaces its older one).
    ///
    /// # Errors
    /// The store's error.
    pub async fn flush(&self) -> Result<u64, StoreError> {
        let beats: Vec<BufferedBeat> = {
            let mut state = self.state();
            let now = self.clock.now();
            // A view past its ttl is read again before it is used: drop it.
            let ttl = self.view_ttl;
            state.views.retain(|_, v| now - v.read_at < ttl);
            state.pending.drain().flat_map(|(_, b)| b).collect()
        };
        if beats.is_empty() {
            return Ok(0);
        }
        match self.inner.record_heartbeats(&beats).await {
            Ok(n) => Ok(n),
            Err(e) => {
                let mut state = self.state();
                for beat in beats {
                    keep_newest(&mut state.pending, beat);
                }
                Err(e)
            }
        }
    }

    /// Buffers `beat` if `view` allows it; returns the answer.
    fn try_buffer(
        state: &mut State,
        beat: &BufferedBeat,
        health: Health,
    ) -> Option<HeartbeatOutcome> {
        let view = state.views.get_mut(&beat.plugin_id)?;
        if !view.record.beat_changes_only_times(&beat.token_jti, health) {
            return None;
        }
        view.record.apply_buffered_beat(beat);
        let record = view.record.clone();
        keep_newest(&mut state.pending, beat.clone());
        Some(HeartbeatOutcome {
            record,
            recovered: false,
        })
    }

    /// Remembers `record` as just read or written (with the beats still buffered
    /// applied) and returns that view of it. Only the heartbeat path starts a view;
    /// other reads and writes refresh one that exists.
    fn remember(&self, mut record: PluginRecord, start: bool) -> PluginRecord {
        let mut state = self.state();
        overlay(&state.pending, &mut record);
        if start || state.views.contains_key(&record.plugin_id) {
            state.views.insert(
                record.plugin_id.clone(),
                View {
                    record: record.clone(),
                    read_at: self.clock.now(),
                },
            );
        }
        record
    }

    fn forget(&self, id: &PluginId) {
        self.state().views.remove(id);
    }

    /// `result` of a write of `id`: the view follows it.
    fn after_write(
        &self,
        id: &PluginId,
        result: Result<PluginRecord, StoreError>,
    ) -> Result<PluginRecord, StoreError> {
        match result {
            Ok(record) => Ok(self.remember(record, false)),
            Err(e) => {
                self.forget(id);
                Err(e)
            }
        }
    }

    fn after_delete(
        &self,
        id: &PluginId,
        result: Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        state.views.remove(id);
        if result.is_ok() {
            state.pending.remove(id);
        }
        result
    }
}

/// Applies the buffered beats of `record`'s plugin to it.
fn overlay(pending: &HashMap<PluginId, Vec<BufferedBeat>>, record: &mut PluginRecord) {
    for beat in pending.get(&record.plugin_id).into_iter().flatten() {
        record.apply_buffered_beat(beat);
    }
}

fn keep_newest(pending: &mut HashMap<PluginId, Vec<BufferedBeat>>, beat: BufferedBeat) {
    let beats = pending.entry(beat.plugin_id.clone()).or_default();
    match beats.iter_mut().find(|b| b.token_jti == beat.token_jti) {
        Some(old) if old.at >= beat.at => {}
        Some(old) => *old = beat,
        None => beats.push(beat),
    }
}

#[async_trait]
impl PluginStore for BufferedHeartbeats {
    async fn insert(&self, record: PluginRecord) -> Result<PluginRecord, StoreError> {
        let id = record.plugin_id.clone();
        let result = self.inner.insert(record).await;
        self.after_write(&id, result)
    }

    async fn get(&self, id: &PluginId) -> Result<Option<PluginRecord>, StoreError> {
        match self.inner.get(id).await? {
            Some(record) => Ok(Some(self.remember(record, false))),
            None => {
                self.forget(id);
                Ok(None)
            }
        }
    }

    async fn list(
        &self,
        after: Option<PluginId>,
        limit: usize,
    ) -> Result<Vec<PluginRecord>, StoreError> {
        let mut records = self.inner.list(after, limit).await?;
        let state = self.state();
        for record in &mut records {
            overlay(&state.pending, record);
        }
        Ok(records)
    }

    async fn replace(
        &self,
        record: PluginRecord,
        expected_version: u64,
    ) -> Result<PluginRecord, StoreError> {
        let id = record.plugin_id.clone();
        let result = self.inner.replace(record, expected_version).await;
        self.after_write(&id, result)
    }

    async fn record_heartbeat(
        &self,
        id: &PluginId,
        token_jti: &str,
        health: Health,
        at: OffsetDateTime,
        next_deadline: OffsetDateTime,
    ) -> Result<HeartbeatOutcome, StoreError> {
        let beat = BufferedBeat {
            plugin_id: id.clone(),
            token_jti: token_jti.to_owned(),
            health,
            at,
            next_deadline,
        };
        let fresh = {
            let mut state = self.state();
            let now = self.clock.now();
            let fresh = state
                .views
                .get(id)
                .is_some_and(|v| now - v.read_at < self.view_ttl);
            if fresh && let Some(answer) = Self::try_buffer(&mut state, &beat, health) {
                return Ok(answer);
            }
            fresh
        };
        if !fresh {
            // Read through: another replica may have changed the plugin.
            let Some(record) = self.inner.get(id).await? else {
                self.forget(id);
                return Err(StoreError::NotFound);
            };
            self.remember(record, true);
            if let Some(answer) = Self::try_buffer(&mut self.state(), &beat, health) {
                return Ok(answer);
            }
        }
        // A state changes (or the beat is refused): written at once, as it always was.
        match self
            .inner
            .record_heartbeat(id, token_jti, health, at, next_deadline)
            .await
        {
            Ok(outcome) => {
                {
                    let mut state = self.state();
                    if let Some(beats) = state.pending.get_mut(id) {
                        beats.retain(|b| b.token_jti != token_jti || b.at > at);
                    }
                }
                Ok(HeartbeatOutcome {
                    record: self.remember(outcome.record, true),
                    recovered: outcome.recovered,
                })
            }
            Err(e) => {
                self.forget(id);
                Err(e)
            }
        }
    }

    async fn record_heartbeats(&self, beats: &[BufferedBeat]) -> Result<u64, StoreError> {
        self.inner.record_heartbeats(beats).await
    }

    async fn delete(&self, id: &PluginId, expected_version: Option<u64>) -> Result<(), StoreError> {
        let result = self.inner.delete(id, expected_version).await;
        self.after_delete(id, result)
    }

    async fn earliest_deadline(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        self.inner.earliest_deadline().await
    }

    async fn liveness_counts(&self, due_by: OffsetDateTime) -> Result<LivenessCounts, StoreError> {
        self.inner.liveness_counts(due_by).await
    }

    async fn sweep(
        &self,
        now: OffsetDateTime,
        deregister_in: Option<std::time::Duration>,
        limit: usize,
    ) -> Result<Vec<Swept>, StoreError> {
        // Never sweep a plugin whose beats are held here.
        self.flush().await?;
        let swept = self.inner.sweep(now, deregister_in, limit).await?;
        for step in &swept {
            if step.event == Some("plugin.deregistered") {
                self.after_delete(&step.record.plugin_id, Ok(())).ok();
            } else {
                self.remember(step.record.clone(), false);
            }
        }
        Ok(swept)
    }

    async fn claim_outbox(
        &self,
        older_than: OffsetDateTime,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.inner.claim_outbox(older_than, now, limit).await
    }

    async fn ack_outbox(&self, entries: &[OutboxEntry]) -> Result<(), StoreError> {
        self.inner.ack_outbox(entries).await
    }

    async fn revoke_tokens_issued_before(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let result = self.inner.revoke_tokens_issued_before(before).await;
        self.state().views.clear();
        result
    }

    async fn create_enrollment(&self, enrollment: &Enrollment) -> Result<(), StoreError> {
        self.inner.create_enrollment(enrollment).await
    }

    async fn enrollment(&self, token_hash: &str) -> Result<Option<Enrollment>, StoreError> {
        self.inner.enrollment(token_hash).await
    }

    async fn use_enrollment(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Enrollment, StoreError> {
        self.inner.use_enrollment(token_hash, now).await
    }

    async fn release_enrollment(
        &self,
        token_hash: &str,
        used_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.inner.release_enrollment(token_hash, used_at).await
    }

    async fn list_enrollments(
        &self,
        plugin_id: Option<PluginId>,
        limit: usize,
    ) -> Result<Vec<Enrollment>, StoreError> {
        self.inner.list_enrollments(plugin_id, limit).await
    }

    async fn cancel_enrollment(&self, id: &str) -> Result<Enrollment, StoreError> {
        self.inner.cancel_enrollment(id).await
    }

    async fn purge_enrollments(&self, ended_before: OffsetDateTime) -> Result<u64, StoreError> {
        self.inner.purge_enrollments(ended_before).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn insert_audited(
        &self,
        record: PluginRecord,
        entry: &AuditEntry,
    ) -> Result<PluginRecord, StoreError> {
        let id = record.plugin_id.clone();
        let result = self.inner.insert_audited(record, entry).await;
        self.after_write(&id, result)
    }

    async fn replace_audited(
        &self,
        record: PluginRecord,
        expected_version: u64,
        entry: &AuditEntry,
    ) -> Result<PluginRecord, StoreError> {
        let id = record.plugin_id.clone();
        let result = self
            .inner
            .replace_audited(record, expected_version, entry)
            .await;
        self.after_write(&id, result)
    }

    async fn delete_audited(
        &self,
        id: &PluginId,
        expected_version: Option<u64>,
        entry: &AuditEntry,
    ) -> Result<(), StoreError> {
        let result = self.inner.delete_audited(id, expected_version, entry).await;
        self.after_delete(id, result)
    }
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::memory::InMemoryPluginStore;
    use time::Duration;
    use vivified_conformance::store::{record, t0};
    use vivified_ports::Liveness;

    const TTL: Duration = Duration::seconds(30);

    struct Fixture {
        inner: Arc<InMemoryPluginStore>,
        clock: Arc<ManualClock>,
        store: BufferedHeartbeats,
    }

    fn id(s: &str) -> PluginId {
        PluginId::parse(s).unwrap()
    }

    /// A buffer over a memory store holding plugin `p` (token `j`), active after one
    /// beat at t0.
    async fn fixture() -> Fixture {
        let inner = Arc::new(InMemoryPluginStore::new());
        let clock = Arc::new(ManualClock::new(t0()));
        let store = BufferedHeartbeats::new(
            inner.clone(),
            clock.clone(),
            std::time::Duration::from_secs(1),
        );
        store.insert(record("p", "j")).await.unwrap();
        let first = store
            .record_heartbeat(&id("p"), "j", Health::Healthy, t0(), t0() + TTL)
            .await
            .unwrap();
        assert_eq!(first.record.status, Liveness::Active);
        assert_eq!(store.pending(), 0, "becoming active is written at once");
        Fixture {
            inner,
            clock,
            store,
        }
    }

    impl Fixture {
        async fn beat(&self, jti: &str, health: Health) -> Result<HeartbeatOutcome, StoreError> {
            let now = self.clock.now();
            self.store
                .record_heartbeat(&id("p"), jti, health, now, now + TTL)
                .await
        }

        async fn stored(&self) -> PluginRecord {
            self.inner.get(&id("p")).await.unwrap().unwrap()
        }
    }

    #[tokio::test]
    async fn a_steady_beat_is_answered_from_memory_and_written_at_the_flush() {
        let f = fixture().await;
        let before = f.stored().await;
        f.clock.advance(Duration::milliseconds(300));
        let answer = f.beat("j", Health::Healthy).await.unwrap();
        let at = t0() + Duration::milliseconds(300);
        assert_eq!(answer.record.last_heartbeat, Some(at));
        assert_eq!(answer.record.next_deadline, Some(at + TTL));
        assert_eq!(f.stored().await, before, "not written yet");
        assert_eq!(f.store.pending(), 1);
        let seen = f.store.get(&id("p")).await.unwrap().unwrap();
        assert_eq!(seen.last_heartbeat, Some(at), "reads include it");
        let listed = f.store.list(None, 10).await.unwrap();
        assert_eq!(listed[0].last_heartbeat, Some(at));
        assert_eq!(f.store.flush().await.unwrap(), 1);
        let stored = f.stored().await;
        assert_eq!(
            (stored.last_heartbeat, stored.next_deadline, stored.version),
            (Some(at), Some(at + TTL), before.version + 1)
        );
        assert_eq!(f.store.pending(), 0);
        assert_eq!(f.store.flush().await.unwrap(), 0, "nothing left");
    }

    #[tokio::test]
    async fn a_beat_that_changes_a_state_is_written_at_once() {
        let f = fixture().await;
        let before = f.stored().await;
        f.clock.advance(Duration::milliseconds(100));
        f.beat("j", Health::Degraded).await.unwrap();
        let stored = f.stored().await;
        assert_eq!(
            (stored.health, stored.version),
            (Health::Degraded, before.version + 1),
            "a new health is written at once"
        );
        // Stale (by a sweep through this store), then recovering: written at once.
        f.clock.advance(TTL);
        let now = f.clock.now();
        let swept = f.store.sweep(now, None, 10).await.unwrap();
        assert_eq!(swept[0].event, Some("plugin.stale"));
        f.clock.advance(Duration::milliseconds(100));
        let answer = f.beat("j", Health::Degraded).await.unwrap();
        assert!(answer.recovered);
        assert_eq!(f.stored().await.status, Liveness::Active);
        assert_eq!(f.store.pending(), 0);
    }

    #[tokio::test]
    async fn writes_through_this_store_are_seen_at_once() {
        let f = fixture().await;
        let mut revoked = f.store.get(&id("p")).await.unwrap().unwrap();
        revoked.instances[0].token_jti = "other".into();
        f.store
            .replace(revoked.clone(), revoked.version)
            .await
            .unwrap();
        let err = f.beat("j", Health::Healthy).await.unwrap_err();
        assert!(matches!(err, StoreError::PreconditionFailed), "{err:?}");
        let current = f.store.get(&id("p")).await.unwrap().unwrap();
        f.store
            .delete(&id("p"), Some(current.version))
            .await
            .unwrap();
        let err = f.beat("other", Health::Healthy).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound), "{err:?}");
    }

    #[tokio::test]
    async fn another_replicas_write_is_seen_once_the_view_is_older_than_its_ttl() {
        let f = fixture().await;
        // Another replica disables the plugin (straight in the shared store).
        let mut disabled = f.stored().await;
        disabled.enabled = false;
        f.inner
            .replace(disabled.clone(), disabled.version)
            .await
            .unwrap();
        f.clock.advance(Duration::milliseconds(500));
        f.beat("j", Health::Healthy)
            .await
            .expect("within the view's ttl the view answers");
        f.clock.advance(Duration::milliseconds(600));
        let err = f.beat("j", Health::Healthy).await.unwrap_err();
        assert!(matches!(err, StoreError::PreconditionFailed), "{err:?}");
        f.store.flush().await.unwrap();
        assert_eq!(
            f.stored().await.last_heartbeat,
            disabled.last_heartbeat,
            "the beat answered meanwhile is dropped: the plugin is disabled"
        );
    }

    #[tokio::test]
    async fn a_sweep_writes_the_beats_held_first() {
        let f = fixture().await;
        f.clock.advance(Duration::seconds(20));
        f.beat("j", Health::Healthy).await.unwrap();
        // Past the stored deadline (t0 + 30 s), before the beat's (t0 + 50 s).
        f.clock.advance(Duration::seconds(15));
        let now = f.clock.now();
        assert!(
            f.stored().await.next_deadline < Some(now),
            "stored deadline passed"
        );
        assert!(f.store.sweep(now, None, 10).await.unwrap().is_empty());
        assert_eq!(f.stored().await.status, Liveness::Active);
    }

    #[tokio::test]
    async fn a_failed_flush_keeps_the_beats_for_the_next() {
        let mut mock = vivified_ports::store::MockPluginStore::new();
        let mut active = record("p", "j");
        active.instances[0].status = Liveness::Active;
        active.instances[0].health = Health::Healthy;
        active.instances[0].next_deadline = Some(t0() + TTL);
        active.settle();
        mock.expect_get()
            .returning(move |_| Ok(Some(active.clone())));
        let calls = std::sync::atomic::AtomicUsize::new(0);
        mock.expect_record_heartbeats()
            .times(2)
            .returning(move |beats| {
                if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    return Err(StoreError::Unavailable("down".into()));
                }
                assert_eq!(beats.len(), 1);
                assert_eq!(beats[0].at, t0() + Duration::seconds(2), "the newest");
                Ok(1)
            });
        let clock = Arc::new(ManualClock::new(t0() + Duration::seconds(1)));
        let store = BufferedHeartbeats::new(
            Arc::new(mock),
            clock.clone(),
            std::time::Duration::from_secs(1),
        );
        let at = t0() + Duration::seconds(1);
        store
            .record_heartbeat(&id("p"), "j", Health::Healthy, at, at + TTL)
            .await
            .unwrap();
        assert!(store.flush().await.is_err());
        assert_eq!(store.pending(), 1, "kept");
        let at = t0() + Duration::seconds(2);
        store
            .record_heartbeat(&id("p"), "j", Health::Healthy, at, at + TTL)
            .await
            .unwrap();
        assert_eq!(store.pending(), 1, "the newer beat replaces the older");
        assert_eq!(store.flush().await.unwrap(), 1);
        assert_eq!(store.pending(), 0);
    }
}
