//! Group commit: the record writes of one store (inserts, replaces, deletes, each with
//! its audit entry) that arrive together are written in one transaction, so a burst of
//! registrations costs one durable commit instead of one each.
//!
//! A write waits at most `wait` after it arrived for others to join it, and only while
//! its group is smaller than the one before (so a lone write at low load is committed
//! at once, and under a steady load a group goes as soon as as many writers as last
//! time have come); a group holds at most [`MAX_GROUP`] writes. Each write in a group still succeeds or
//! fails alone: a taken id, a changed version or a missing record is found by the
//! statement itself (`ON CONFLICT DO NOTHING`, a conditional `UPDATE`/`DELETE`) and
//! fails that write only. A statement or commit that fails fails every write of the
//! group, none of them applied. Nothing is answered before its group's commit.

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use vivified_ports::{PluginId, PluginRecord, StoreError};

use crate::sql::audit::PendingRow;

/// The most writes one group commits.
pub(crate) const MAX_GROUP: usize = 128;

/// Writes waiting for a group, at most; a writer beyond it waits for room.
const QUEUE: usize = 4096;

/// One record write.
pub(crate) enum Op {
    /// Insert; `Conflict` if the id is taken.
    Insert(PluginRecord),
    /// Replace if the version matches.
    Replace(PluginRecord, u64),
    /// Delete, if the version matches when given.
    Delete(PluginId, Option<u64>),
}

impl Op {
    /// The record written (groups are written in id order, so that two replicas'
    /// groups lock rows in one order).
    pub(crate) fn id(&self) -> &PluginId {
        match self {
            Self::Insert(r) | Self::Replace(r, _) => &r.plugin_id,
            Self::Delete(id, _) => id,
        }
    }
}

/// What a write did.
pub(crate) enum Done {
    /// The record as stored.
    Record(PluginRecord),
    /// Deleted.
    Deleted,
}

impl Done {
    pub(crate) fn record(self) -> Result<PluginRecord, StoreError> {
        match self {
            Self::Record(r) => Ok(r),
            Self::Deleted => Err(StoreError::Unavailable(
                "a write answered as a delete".into(),
            )),
        }
    }
}

/// A write waiting for its group.
pub(crate) struct Job {
    /// The write.
    pub(crate) op: Op,
    /// Its audit entry, written in the same transaction.
    pub(crate) audit: Option<PendingRow>,
    arrived: Instant,
    reply: oneshot::Sender<Result<Done, StoreError>>,
}

impl Job {
    /// Answers the writer.
    pub(crate) fn answer(self, result: Result<Done, StoreError>) {
        // A writer that went away (its request cancelled) needs no answer.
        let _ = self.reply.send(result);
    }
}

/// The queue of a store's writes and the task committing them in groups.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    sender: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the committing task: `commit` writes one group and answers each job; at
    /// most `lanes` groups are being committed at once (1 for a database with one
    /// writer). The task ends when the last handle to this queue is dropped.
    pub(crate) fn start<F, Fut>(wait: Duration, lanes: usize, commit: F) -> Self
    where
        F: Fn(Vec<Job>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (sender, mut receiver) = mpsc::channel::<Job>(QUEUE);
        let lanes = Arc::new(Semaphore::new(lanes.max(1)));
        let commit = Arc::new(commit);
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(MAX_GROUP);
            // Wait for more only while fewer writers came than to the group before:
            // when as many as last time are here (all the writers there are, under a
            // steady load) or the wait is up, commit.
            let mut last = 1;
            while receiver.recv_many(&mut group, MAX_GROUP).await > 0 {
                let until = group[0].arrived + wait;
                while group.len() < last {
                    let room = MAX_GROUP - group.len();
                    match tokio::time::timeout_at(until, receiver.recv_many(&mut group, room)).await
                    {
                        Ok(n) if n > 0 => {}
                        _ => break,
                    }
                }
                // A free lane; the writes that came meanwhile join this group.
                let Ok(lane) = Arc::clone(&lanes).acquire_owned().await else {
                    return;
                };
                while group.len() < MAX_GROUP {
                    match receiver.try_recv() {
                        Ok(job) => group.push(job),
                        Err(_) => break,
                    }
                }
                last = group.len();
                let waited = group[0].arrived.elapsed();
                let jobs = std::mem::replace(&mut group, Vec::with_capacity(MAX_GROUP));
                let commit = Arc::clone(&commit);
                tokio::spawn(async move {
                    let started = Instant::now();
                    let writes = jobs.len();
                    commit(jobs).await;
                    drop(lane);
                    tracing::debug!(
                        writes,
                        waited_us = u64::try_from(waited.as_micros()).unwrap_or(0),
                        commit_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(0),
                        "group committed"
                    );
                });
            }
        });
        Self { sender }
    }

    /// Queues `op` (with `audit`) and waits for its group's commit.
    pub(crate) async fn submit(
        &self,
        op: Op,
        audit: Option<PendingRow>,
    ) -> Result<Done, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            op,
            audit,
            arrived: Instant::now(),
            reply,
        };
        let gone = || StoreError::Unavailable("the group commit task has stopped".into());
        self.sender.send(job).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Every job of a group that failed as a whole gets this error.
pub(crate) fn group_failed(e: &StoreError) -> StoreError {
    let cause = std::error::Error::source(e).map_or_else(|| e.to_string(), ToString::to_string);
    StoreError::Unavailable(
        format!("the group of writes this one was committed with failed: {cause}").into(),
    )
}

/// Gives a SQL store type (with a `writer()` method and a `group` field) its group commit: the
/// `with_group_commit` switch and the function that writes one group.
macro_rules! sql_group_commit {
    ($store:ty, $queries:expr) => {
        impl $store {
            /// Commits this store's record writes (registrations, refreshes, state
            /// changes, with their audit entries) in groups: a write waits at most
            /// `wait` for others (zero: each alone, the default). Needs a Tokio runtime.
            #[must_use]
            pub fn with_group_commit(mut self, wait: std::time::Duration) -> Self {
                self.group = (!wait.is_zero()).then(|| {
                    let pool = self.writer().clone();
                    std::sync::Arc::new($crate::sql::group::GroupCommit::start(
                        wait,
                        $queries.group_lanes,
                        move |jobs| {
                            let pool = pool.clone();
                            async move { Self::commit_group(&pool, jobs).await }
                        },
                    ))
                });
                self
            }

            /// Inserts through the group commit if it is on; `None` if it is off.
            async fn group_insert(
                &self,
                record: &PluginRecord,
                audit: Option<&vivified_ports::AuditEntry>,
            ) -> Option<Result<PluginRecord, StoreError>> {
                let done = self
                    .grouped($crate::sql::group::Op::Insert(record.clone()), audit)
                    .await?;
                Some(done.and_then($crate::sql::group::Done::record))
            }

            /// Replaces through the group commit if it is on; `None` if it is off.
            async fn group_replace(
                &self,
                record: &PluginRecord,
                expected_version: u64,
                audit: Option<&vivified_ports::AuditEntry>,
            ) -> Option<Result<PluginRecord, StoreError>> {
                let op = $crate::sql::group::Op::Replace(record.clone(), expected_version);
                let done = self.grouped(op, audit).await?;
                Some(done.and_then($crate::sql::group::Done::record))
            }

            /// Deletes through the group commit if it is on; `None` if it is off.
            async fn group_delete(
                &self,
                id: &PluginId,
                expected_version: Option<u64>,
                audit: Option<&vivified_ports::AuditEntry>,
            ) -> Option<Result<(), StoreError>> {
                let op = $crate::sql::group::Op::Delete(id.clone(), expected_version);
                Some(self.grouped(op, audit).await?.map(drop))
            }

            /// Writes `op` through the group commit if it is on; `None` if it is off.
            async fn grouped(
                &self,
                op: $crate::sql::group::Op,
                audit: Option<&vivified_ports::AuditEntry>,
            ) -> Option<Result<$crate::sql::group::Done, StoreError>> {
                let group = self.group.as_ref()?;
                let audit = match audit.map($crate::sql::pending_row).transpose() {
                    Ok(audit) => audit,
                    Err(e) => return Some(Err(e)),
                };
                Some(group.submit(op, audit).await)
            }

            /// Writes one group in one transaction and answers each job: the new records
            /// in multi-row statements and their audit entries likewise, then the other
            /// writes one by one in id order.
            async fn commit_group(
                pool: &sqlx::Pool<<$store as $crate::sql::HasDb>::Db>,
                jobs: Vec<$crate::sql::group::Job>,
            ) {
                use $crate::sql::group::Op;
                let mut order: Vec<usize> = (0..jobs.len()).collect();
                order.sort_by(|&a, &b| jobs[a].op.id().cmp(jobs[b].op.id()));
                let applied = async {
                    let mut tx = pool.begin().await.map_err($crate::sql::map_err)?;
                    let mut out: Vec<Option<Result<$crate::sql::group::Done, StoreError>>> =
                        (0..jobs.len()).map(|_| None).collect();
                    // Inserts: the first of each id is tried; a later one of the same id
                    // fails as taken, whoever wins.
                    let mut first = std::collections::BTreeMap::new();
                    for (i, job) in jobs.iter().enumerate() {
                        if let Op::Insert(record) = &job.op {
                            if first.contains_key(&record.plugin_id) {
                                out[i] = Some(Err(StoreError::Conflict));
                            } else {
                                first.insert(record.plugin_id.clone(), i);
                            }
                        }
                    }
                    if !first.is_empty() {
                        let mut inserted = Self::insert_many(&mut tx, &jobs, &first).await?;
                        let mut audited = Vec::new();
                        for (id, &i) in &first {
                            out[i] = Some(match inserted.remove(id) {
                                Some(row) => {
                                    audited.push(i);
                                    PluginRecord::try_from(row)
                                        .map($crate::sql::group::Done::Record)
                                }
                                None => Err(StoreError::Conflict),
                            });
                        }
                        // The entries in the order their writes arrived.
                        audited.sort_unstable();
                        Self::audit_many(&mut tx, &jobs, &audited).await?;
                    }
                    for &i in &order {
                        if out[i].is_none() {
                            out[i] = Some(Self::apply_job(&mut tx, &jobs[i]).await?);
                        }
                    }
                    tx.commit().await.map_err($crate::sql::map_err)?;
                    Ok::<_, StoreError>(out)
                }
                .await;
                match applied {
                    Ok(out) => {
                        for (job, result) in jobs.into_iter().zip(out) {
                            job.answer(result.unwrap_or_else(|| {
                                Err(StoreError::Unavailable("a write was left out".into()))
                            }));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, writes = jobs.len(), "a group commit failed");
                        for job in jobs {
                            job.answer(Err($crate::sql::group::group_failed(&e)));
                        }
                    }
                }
            }

            /// One job inside the group's transaction: `Err` fails the whole group (a
            /// statement failed), `Ok(Err(_))` this job only.
            async fn apply_job(
                tx: &mut sqlx::Transaction<'static, <$store as $crate::sql::HasDb>::Db>,
                job: &$crate::sql::group::Job,
            ) -> Result<Result<$crate::sql::group::Done, StoreError>, StoreError> {
                use $crate::sql::group::{Done, Op};
                let record_of = |row: Option<$crate::sql::PluginRow>| {
                    row.map(|row| PluginRecord::try_from(row).map(Done::Record))
                };
                match &job.op {
                    Op::Insert(record) => {
                        let row: Option<$crate::sql::PluginRow> =
                            $crate::sql::bind_insert!(sqlx::query_as($queries.insert_skip), (*record))
                                .fetch_optional(&mut **tx)
                                .await
                                .map_err($crate::sql::map_err)?;
                        if row.is_some() {
                            Self::audit_in(tx, job).await?;
                        }
                        Ok(record_of(row).unwrap_or(Err(StoreError::Conflict)))
                    }
                    Op::Replace(record, version) => {
                        let row: Option<$crate::sql::PluginRow> = $crate::sql::bind_replace!(
                            sqlx::query_as($queries.replace),
                            (*record),
                            *version
                        )
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err($crate::sql::map_err)?;
                        match record_of(row) {
                            Some(done) => {
                                Self::audit_in(tx, job).await?;
                                Ok(done)
                            }
                            None => Ok(Err(Self::missed_in(tx, &record.plugin_id).await?)),
                        }
                    }
                    Op::Delete(id, version) => {
                        let done = sqlx::query($queries.delete)
                            .bind(id.as_str())
                            .bind(version.map($crate::sql::version_i64).transpose()?)
                            .execute(&mut **tx)
                            .await
                            .map_err($crate::sql::map_err)?;
                        if done.rows_affected() == 1 {
                            Self::audit_in(tx, job).await?;
                            Ok(Ok(Done::Deleted))
                        } else {
                            Ok(Err(Self::missed_in(tx, id).await?))
                        }
                    }
                }
            }

            /// Inserts the records of `jobs` at the indices of `first` (one per id, in id
            /// order) in as few statements as stay under about 8 KB each, skipping taken
            /// ids; returns the rows inserted.
            async fn insert_many(
                tx: &mut sqlx::Transaction<'static, <$store as $crate::sql::HasDb>::Db>,
                jobs: &[$crate::sql::group::Job],
                first: &std::collections::BTreeMap<PluginId, usize>,
            ) -> Result<std::collections::BTreeMap<PluginId, $crate::sql::PluginRow>, StoreError> {
                let records: Vec<&PluginRecord> = first
                    .values()
                    .filter_map(|&i| match &jobs[i].op {
                        $crate::sql::group::Op::Insert(record) => Some(record),
                        _ => None,
                    })
                    .collect();
                let mut by_id = std::collections::BTreeMap::new();
                let size = |r: &&PluginRecord| r.manifest.to_json().len() + 512;
                for chunk in
                    $crate::sql::statement_chunks(&records, $queries.statement_bytes, size)
                {
                    let mut query = sqlx::QueryBuilder::<<$store as $crate::sql::HasDb>::Db>::new(
                        "INSERT INTO plugins (plugin_id, manifest, status, health, enabled, \
                         disabled_reason, registered_at, last_heartbeat, instances, next_deadline, \
                         version, approved_traits, token_jti) ",
                    );
                    query.push_values(chunk, |mut row, r| {
                        row.push_bind(r.plugin_id.as_str().to_owned())
                            .push_bind($crate::sql::manifest_text(r))
                            .push_unseparated($queries.json_cast)
                            .push_bind(r.status.as_str())
                            .push_bind(r.health.as_str())
                            .push_bind(r.enabled)
                            .push_bind(r.disabled_reason.clone())
                            .push_bind($crate::sql::to_micros(r.registered_at))
                            .push_bind(r.last_heartbeat.map($crate::sql::to_micros))
                            .push_bind($crate::sql::instances_text(r))
                            .push_unseparated($queries.json_cast)
                            .push_bind(r.next_deadline.map($crate::sql::to_micros))
                            .push("1")
                            .push_bind($crate::sql::approved_text(r))
                            .push("'-'");
                    });
                    query.push(" ON CONFLICT (plugin_id) DO NOTHING RETURNING ");
                    query.push($queries.cols);
                    let rows: Vec<$crate::sql::PluginRow> = query
                        .build_query_as()
                        .persistent(false)
                        .fetch_all(&mut **tx)
                        .await
                        .map_err($crate::sql::map_err)?;
                    for row in rows {
                        let id = PluginId::parse(&row.plugin_id)
                            .map_err(|_| StoreError::Unavailable("corrupt plugin row: id".into()))?;
                        by_id.insert(id, row);
                    }
                }
                Ok(by_id)
            }

            /// Inserts the audit entries of `jobs` at `indices`, in as few statements as
            /// stay under about 8 KB each.
            async fn audit_many(
                tx: &mut sqlx::Transaction<'static, <$store as $crate::sql::HasDb>::Db>,
                jobs: &[$crate::sql::group::Job],
                indices: &[usize],
            ) -> Result<(), StoreError> {
                let rows: Vec<&$crate::sql::audit::PendingRow> =
                    indices.iter().filter_map(|&i| jobs[i].audit.as_ref()).collect();
                let size = |row: &&$crate::sql::audit::PendingRow| row.details.len() + 512;
                for chunk in $crate::sql::statement_chunks(&rows, $queries.statement_bytes, size)
                {
                    let mut query = sqlx::QueryBuilder::<<$store as $crate::sql::HasDb>::Db>::new(
                        "INSERT INTO audit_pending (at, actor, action, target, outcome, reason, \
                         trace_id, details) ",
                    );
                    query.push_values(chunk, |mut b, row| {
                        b.push_bind(row.at)
                            .push_bind(row.actor.clone())
                            .push_bind(row.action.clone())
                            .push_bind(row.target.clone())
                            .push_bind(row.outcome)
                            .push_bind(row.reason.clone())
                            .push_bind(row.trace_id.clone())
                            .push_bind(row.details.clone());
                    });
                    query
                        .build()
                        .persistent(false)
                        .execute(&mut **tx)
                        .await
                        .map_err($crate::sql::map_err)?;
                }
                Ok(())
            }

            async fn audit_in(
                tx: &mut sqlx::Transaction<'static, <$store as $crate::sql::HasDb>::Db>,
                job: &$crate::sql::group::Job,
            ) -> Result<(), StoreError> {
                match &job.audit {
                    Some(row) => <$store as $crate::sql::HasDb>::insert_audit(tx, row)
                        .await
                        .map_err($crate::sql::map_err),
                    None => Ok(()),
                }
            }

            /// `NotFound` if the record is gone, else `PreconditionFailed`.
            async fn missed_in(
                tx: &mut sqlx::Transaction<'static, <$store as $crate::sql::HasDb>::Db>,
                id: &PluginId,
            ) -> Result<StoreError, StoreError> {
                let exists: Option<(i32,)> = sqlx::query_as($queries.exists)
                    .bind(id.as_str())
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err($crate::sql::map_err)?;
                Ok(if exists.is_some() {
                    StoreError::PreconditionFailed
                } else {
                    StoreError::NotFound
                })
            }
        }
    };
}
pub(crate) use sql_group_commit;
