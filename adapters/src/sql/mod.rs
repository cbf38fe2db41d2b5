//! What the SQL stores share: the row shape and its conversion to a `PluginRecord`
//! (`plugin_row.rs`), time encoding (microseconds since the epoch, so every backend
//! stores a time exactly) and error mapping at the boundary (`is_unique_violation()` →
//! `StoreError::Conflict`).

pub(crate) mod audit;
mod enrollments;
pub(crate) mod group;
pub(crate) mod operators;
mod plugin_row;
mod statements;

pub(crate) use enrollments::{EnrollmentRow, enrollment, enrollment_cols};
pub(crate) use plugin_row::{PluginRow, instances_text};
pub(crate) use statements::{Queries, TCP_STATEMENT_BYTES, statement_chunks};

use time::OffsetDateTime;
use vivified_ports::{PluginRecord, StoreError};

fn corrupt(what: &str) -> StoreError {
    StoreError::Unavailable(format!("corrupt plugin row: {what}").into())
}

pub(crate) fn to_micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

pub(crate) fn from_micros(us: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).map_err(|_| corrupt("time"))
}

/// Maps a driver error at the boundary; driver types never leak upward.
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Unavailable(Box::new(e)),
    }
}

pub(crate) fn version_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::PreconditionFailed)
}

/// The approved traits as stored: a JSON array, or NULL.
pub(crate) fn approved_text(record: &PluginRecord) -> Option<String> {
    record
        .approved_traits
        .as_ref()
        .map(|t| serde_json::to_string(t).unwrap_or_else(|_| "[]".to_owned()))
}

pub(crate) fn manifest_text(record: &PluginRecord) -> String {
    record.manifest.to_json().into_owned()
}

/// A record's liveness columns as one object of [`Queries::write_liveness`]'s array.
pub(crate) fn liveness_json(record: &PluginRecord) -> serde_json::Value {
    serde_json::json!({
        "id": record.plugin_id.as_str(),
        "version": record.version,
        "status": record.status.as_str(),
        "health": record.health.as_str(),
        "last_heartbeat": record.last_heartbeat.map(to_micros),
        "next_deadline": record.next_deadline.map(to_micros),
        "instances": instances_text(record),
    })
}

pub(crate) fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The sqlx database of a SQL store.
pub(crate) trait HasDb {
    type Db: sqlx::Database;

    /// Inserts a pending audit entry inside the caller's transaction.
    fn insert_audit<'t>(
        tx: &'t mut sqlx::Transaction<'_, Self::Db>,
        row: &'t crate::sql::audit::PendingRow,
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send + 't;
}

/// The audit entry as a row, or `Unavailable` if it breaks a limit (nothing written).
pub(crate) fn pending_row(
    entry: &vivified_ports::AuditEntry,
) -> Result<crate::sql::audit::PendingRow, StoreError> {
    crate::sql::audit::PendingRow::new(entry).map_err(|e| StoreError::Unavailable(Box::new(e)))
}

/// Binds a record's insert parameters `$1..$11` (id, manifest, status, health, enabled,
/// disabled reason, registered at, last heartbeat, instances, next deadline, approved
/// traits).
macro_rules! bind_insert {
    ($q:expr, $record:expr) => {
        $q.bind($record.plugin_id.as_str())
            .bind($crate::sql::manifest_text(&$record))
            .bind($record.status.as_str())
            .bind($record.health.as_str())
            .bind($record.enabled)
            .bind($record.disabled_reason.as_deref())
            .bind($crate::sql::to_micros($record.registered_at))
            .bind($record.last_heartbeat.map($crate::sql::to_micros))
            .bind($crate::sql::instances_text(&$record))
            .bind($record.next_deadline.map($crate::sql::to_micros))
            .bind($crate::sql::approved_text(&$record))
    };
}
pub(crate) use bind_insert;

/// Binds a record's replace parameters `$1..$12` (the columns, then id and expected
/// version, then the approved traits).
macro_rules! bind_replace {
    ($q:expr, $record:expr, $version:expr) => {
        $q.bind($crate::sql::manifest_text(&$record))
            .bind($record.status.as_str())
            .bind($record.health.as_str())
            .bind($record.enabled)
            .bind($record.disabled_reason.as_deref())
            .bind($crate::sql::to_micros($record.registered_at))
            .bind($record.last_heartbeat.map($crate::sql::to_micros))
            .bind($crate::sql::instances_text(&$record))
            .bind($record.next_deadline.map($crate::sql::to_micros))
            .bind($record.plugin_id.as_str())
            .bind($crate::sql::version_i64($version)?)
            .bind($crate::sql::approved_text(&$record))
    };
}
pub(crate) use bind_replace;

/// Binds a pending audit row's eight columns after the parameters bound so far.
macro_rules! bind_audit {
    ($q:expr, $row:expr) => {
        $q.bind($row.at)
            .bind(&$row.actor)
            .bind(&$row.action)
            .bind(&$row.target)
            .bind($row.outcome)
            .bind(&$row.reason)
            .bind(&$row.trace_id)
            .bind(&$row.details)
    };
}
pub(crate) use bind_audit;

/// Implements `PluginStore` for a store type with a `pool` field (reads) and a `writer()`
/// method (where writes go), running `$queries`.
/// One implementation for every SQL backend: only the dialect differs.
macro_rules! sql_plugin_store {
    ($store:ty, $queries:expr) => {
        impl $store {
            /// Writes one outbox entry, inside the caller's transaction.
            async fn write_outbox(
                &self,
                tx: &mut sqlx::Transaction<'_, <$store as $crate::sql::HasDb>::Db>,
                entry: &OutboxEntry,
            ) -> Result<(), StoreError> {
                sqlx::query($queries.outbox_insert)
                    .bind(&entry.event_type)
                    .bind(entry.plugin_id.as_str())
                    .bind(&entry.registration)
                    .bind($crate::sql::version_i64(entry.version)?)
                    .bind($crate::sql::to_micros(entry.at))
                    .execute(&mut **tx)
                    .await
                    .map_err($crate::sql::map_err)?;
                Ok(())
            }

            /// One sweep step of `before` (as read): the record written or deleted,
            /// conditional on its version, with its outbox entry, in one transaction.
            /// `None` if another write changed the record first (nothing written).
            async fn apply_step(
                &self,
                before: &PluginRecord,
                mut step: vivified_ports::Swept,
                now: OffsetDateTime,
            ) -> Result<Option<vivified_ports::Swept>, StoreError> {
                let mut tx = self.writer().begin().await.map_err($crate::sql::map_err)?;
                if step.event == Some("plugin.deregistered") {
                    let done = sqlx::query($queries.delete)
                        .bind(before.plugin_id.as_str())
                        .bind(Some($crate::sql::version_i64(before.version)?))
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::sql::map_err)?;
                    if done.rows_affected() != 1 {
                        return Ok(None);
                    }
                } else {
                    let row: Option<$crate::sql::PluginRow> = $crate::sql::bind_replace!(
                        sqlx::query_as($queries.replace),
                        step.record,
                        before.version
                    )
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err($crate::sql::map_err)?;
                    let Some(row) = row else {
                        return Ok(None);
                    };
                    step.record = row.try_into()?;
                }
                if let Some(entry) = OutboxEntry::of(&step, now) {
                    self.write_outbox(&mut tx, &entry).await?;
                }
                tx.commit().await.map_err($crate::sql::map_err)?;
                Ok(Some(step))
            }

            /// `NotFound` if the record is gone, else `PreconditionFailed`.
            async fn missed(&self, id: &PluginId) -> StoreError {
                match sqlx::query($queries.exists)
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await
                {
                    Ok(Some(_)) => StoreError::PreconditionFailed,
                    Ok(None) => StoreError::NotFound,
                    Err(e) => $crate::sql::map_err(e),
                }
            }
        }

        #[async_trait::async_trait]
        impl PluginStore for $store {
            async fn insert(&self, mut record: PluginRecord) -> Result<PluginRecord, StoreError> {
                record.settle();
                if let Some(done) = self.group_insert(&record, None).await {
                    return done;
                }
                let row: $crate::sql::PluginRow =
                    $crate::sql::bind_insert!(sqlx::query_as($queries.insert), record)
                        .fetch_one(self.writer())
                        .await
                        .map_err($crate::sql::map_err)?;
                row.try_into()
            }

            async fn get(&self, id: &PluginId) -> Result<Option<PluginRecord>, StoreError> {
                let row: Option<$crate::sql::PluginRow> = sqlx::query_as($queries.get)
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::map_err)?;
                row.map(PluginRecord::try_from).transpose()
            }

            async fn list(
                &self,
                after: Option<PluginId>,
                limit: usize,
            ) -> Result<Vec<PluginRecord>, StoreError> {
                let rows: Vec<$crate::sql::PluginRow> = sqlx::query_as($queries.list)
                    .bind(after.as_ref().map_or("", PluginId::as_str))
                    .bind($crate::sql::limit_i64(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::sql::map_err)?;
                rows.into_iter().map(PluginRecord::try_from).collect()
            }

            async fn replace(
                &self,
                mut record: PluginRecord,
                expected_version: u64,
            ) -> Result<PluginRecord, StoreError> {
                record.settle();
                if let Some(done) = self.group_replace(&record, expected_version, None).await {
                    return done;
                }
                let row: Option<$crate::sql::PluginRow> = $crate::sql::bind_replace!(
                    sqlx::query_as($queries.replace),
                    record,
                    expected_version
                )
                .fetch_optional(self.writer())
                .await
                .map_err($crate::sql::map_err)?;
                match row {
                    Some(row) => row.try_into(),
                    None => Err(self.missed(&record.plugin_id).await),
                }
            }

            async fn record_heartbeat(
                &self,
                id: &PluginId,
                token_jti: &str,
                health: Health,
                at: OffsetDateTime,
                next_deadline: OffsetDateTime,
            ) -> Result<HeartbeatOutcome, StoreError> {
                // Lock the row, apply the rule, write: one transaction, so concurrent
                // heartbeats of several instances queue instead of retrying.
                let mut tx = self.writer().begin().await.map_err($crate::sql::map_err)?;
                let row: Option<$crate::sql::PluginRow> = sqlx::query_as($queries.lock)
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err($crate::sql::map_err)?;
                let mut record = PluginRecord::try_from(row.ok_or(StoreError::NotFound)?)?;
                let version = record.version;
                let recovered = record.apply_heartbeat(token_jti, health, at, next_deadline)?;
                let row: Option<$crate::sql::PluginRow> =
                    $crate::sql::bind_replace!(sqlx::query_as($queries.replace), record, version)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err($crate::sql::map_err)?;
                let record = PluginRecord::try_from(row.ok_or(StoreError::PreconditionFailed)?)?;
                tx.commit().await.map_err($crate::sql::map_err)?;
                Ok(HeartbeatOutcome { record, recovered })
            }

            async fn record_heartbeats(
                &self,
                beats: &[vivified_ports::BufferedBeat],
            ) -> Result<u64, StoreError> {
                // Read the records, apply the beats, write every changed record in one
                // statement conditional on the version read; those another write changed
                // meanwhile are read again.
                let mut todo: std::collections::BTreeMap<
                    &PluginId,
                    Vec<&vivified_ports::BufferedBeat>,
                > = std::collections::BTreeMap::new();
                for beat in beats {
                    todo.entry(&beat.plugin_id).or_default().push(beat);
                }
                // Each round, at least one of several racing writers of a record wins.
                let mut written = 0;
                for _ in 0..64 {
                    if todo.is_empty() {
                        return Ok(written);
                    }
                    let ids: Vec<&str> = todo.keys().map(|id| id.as_str()).collect();
                    let rows: Vec<$crate::sql::PluginRow> = sqlx::query_as($queries.get_many)
                        .bind(
                            serde_json::to_string(&ids)
                                .map_err(|e| StoreError::Unavailable(Box::new(e)))?,
                        )
                        .fetch_all(&self.pool)
                        .await
                        .map_err($crate::sql::map_err)?;
                    let mut changed = Vec::new();
                    let mut changed_ids = std::collections::BTreeSet::new();
                    for row in rows {
                        let mut record = PluginRecord::try_from(row)?;
                        let mut any = false;
                        for beat in todo.get(&record.plugin_id).into_iter().flatten() {
                            any |= record.apply_buffered_beat(beat);
                        }
                        if any {
                            changed.push($crate::sql::liveness_json(&record));
                            changed_ids.insert(record.plugin_id.as_str().to_owned());
                        }
                    }
                    let mut done: Vec<(String,)> = Vec::new();
                    let size =
                        |v: &serde_json::Value| v["instances"].as_str().map_or(0, str::len) + 256;
                    for chunk in
                        $crate::sql::statement_chunks(&changed, $queries.statement_bytes, size)
                    {
                        done.extend(
                            sqlx::query_as::<_, (String,)>($queries.write_liveness)
                                .bind(serde_json::Value::Array(chunk.to_vec()).to_string())
                                .fetch_all(self.writer())
                                .await
                                .map_err($crate::sql::map_err)?,
                        );
                    }
                    written += u64::try_from(done.len()).unwrap_or(0);
                    for (id,) in done {
                        changed_ids.remove(&id);
                    }
                    // Left: records that lost their version race.
                    todo.retain(|id, _| changed_ids.contains(id.as_str()));
                }
                if todo.is_empty() {
                    Ok(written)
                } else {
                    Err(StoreError::Unavailable(
                        "records kept changing while heartbeats were written".into(),
                    ))
                }
            }

            async fn earliest_deadline(&self) -> Result<Option<OffsetDateTime>, StoreError> {
                let row: Option<(i64,)> = sqlx::query_as($queries.earliest_deadline)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::map_err)?;
                row.map(|(us,)| $crate::sql::from_micros(us)).transpose()
            }

            async fn liveness_counts(
                &self,
                now: OffsetDateTime,
            ) -> Result<LivenessCounts, StoreError> {
                let (live, due): (i64, i64) = sqlx::query_as($queries.liveness_counts)
                    .bind($crate::sql::to_micros(now))
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::sql::map_err)?;
                Ok(LivenessCounts {
                    live: u64::try_from(live).unwrap_or(0),
                    due: u64::try_from(due).unwrap_or(0),
                })
            }

            async fn sweep(
                &self,
                now: OffsetDateTime,
                deregister_in: Option<std::time::Duration>,
                limit: usize,
            ) -> Result<Vec<vivified_ports::Swept>, StoreError> {
                let rows: Vec<$crate::sql::PluginRow> = sqlx::query_as($queries.due)
                    .bind($crate::sql::to_micros(now))
                    .bind($crate::sql::limit_i64(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::sql::map_err)?;
                let mut swept = Vec::with_capacity(rows.len());
                for row in rows {
                    let before = PluginRecord::try_from(row)?;
                    let mut after = before.clone();
                    let Some(step) = after.sweep_step(now, deregister_in) else {
                        continue;
                    };
                    if let Some(step) = self.apply_step(&before, step, now).await? {
                        swept.push(step);
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
                let rows: Vec<(String, String, String, i64, i64)> =
                    sqlx::query_as($queries.claim_outbox)
                        .bind($crate::sql::to_micros(older_than))
                        .bind($crate::sql::to_micros(now))
                        .bind($crate::sql::limit_i64(limit))
                        .fetch_all(self.writer())
                        .await
                        .map_err($crate::sql::map_err)?;
                let corrupt = || StoreError::Unavailable("corrupt outbox row".into());
                rows.into_iter()
                    .map(|(event_type, id, registration, version, at)| {
                        Ok(OutboxEntry {
                            event_type,
                            plugin_id: PluginId::parse(&id).map_err(|_| corrupt())?,
                            registration,
                            version: u64::try_from(version).map_err(|_| corrupt())?,
                            at: $crate::sql::from_micros(at)?,
                        })
                    })
                    .collect()
            }

            async fn ack_outbox(&self, entries: &[OutboxEntry]) -> Result<(), StoreError> {
                if entries.is_empty() {
                    return Ok(());
                }
                let mut tx = self.writer().begin().await.map_err($crate::sql::map_err)?;
                for e in entries {
                    sqlx::query($queries.ack_outbox)
                        .bind(&e.event_type)
                        .bind(e.plugin_id.as_str())
                        .bind(&e.registration)
                        .bind($crate::sql::version_i64(e.version)?)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::sql::map_err)?;
                }
                tx.commit().await.map_err($crate::sql::map_err)
            }

            async fn delete(
                &self,
                id: &PluginId,
                expected_version: Option<u64>,
            ) -> Result<(), StoreError> {
                if let Some(done) = self.group_delete(id, expected_version, None).await {
                    return done;
                }
                let done = sqlx::query($queries.delete)
                    .bind(id.as_str())
                    .bind(expected_version.map($crate::sql::version_i64).transpose()?)
                    .execute(self.writer())
                    .await
                    .map_err($crate::sql::map_err)?;
                if done.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(self.missed(id).await)
                }
            }

            async fn insert_audited(
                &self,
                mut record: PluginRecord,
                entry: &vivified_ports::AuditEntry,
            ) -> Result<PluginRecord, StoreError> {
                record.settle();
                if let Some(done) = self.group_insert(&record, Some(entry)).await {
                    return done;
                }
                let row = $crate::sql::pending_row(entry)?;
                if let Some(sql) = $queries.insert_audited {
                    let stored: $crate::sql::PluginRow = $crate::sql::bind_audit!(
                        $crate::sql::bind_insert!(sqlx::query_as(sql), record),
                        row
                    )
                    .fetch_one(self.writer())
                    .await
                    .map_err($crate::sql::map_err)?;
                    return stored.try_into();
                }
                let mut tx = self.writer().begin().await.map_err($crate::sql::map_err)?;
                let stored: $crate::sql::PluginRow =
                    $crate::sql::bind_insert!(sqlx::query_as($queries.insert), record)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err($crate::sql::map_err)?;
                <$store as $crate::sql::HasDb>::insert_audit(&mut tx, &row)
                    .await
                    .map_err($crate::sql::map_err)?;
                tx.commit().await.map_err($crate::sql::map_err)?;
                stored.try_into()
            }

            async fn replace_audited(
                &self,
                mut record: PluginRecord,
                expected_version: u64,
                entry: &vivified_ports::AuditEntry,
            ) -> Result<PluginRecord, StoreError> {
                record.settle();
                if let Some(done) = self
                    .group_replace(&record, expected_version, Some(entry))
                    .await
                {
                    return done;
                }
                let row = $crate::sql::pending_row(entry)?;
                if let Some(sql) = $queries.replace_audited {
                    let stored: Option<$crate::sql::PluginRow> = $crate::sql::bind_audit!(
                        $crate::sql::bind_replace!(sqlx::query_as(sql), record, expected_version),
                        row
                    )
                    .fetch_optional(self.writer())
                    .await
                    .map_err($crate::sql::map_err)?;
                    return match stored {
                        Some(stored) => stored.try_into(),
                        None => Err(self.missed(&record.plugin_id).await),
                    };
                }
                let mut tx = self.writer().begin().await.map_err($crate::sql::map_err)?;
                let stored: Option<$crate::sql::PluginRow> = $crate::sql::bind_replace!(
                    sqlx::query_as($queries.replace),
                    record,
                    expected_version
                )
                .fetch_optional(&mut *tx)
                .await
                .map_err($crate::sql::map_err)?;
                let Some(stored) = stored else {
                    drop(tx);
                    return Err(self.missed(&record.plugin_id).await);
                };
                <$store as $crate::sql::HasDb>::insert_audit(&mut tx, &row)
                    .await
                    .map_err($crate::sql::map_err)?;
                tx.commit().await.map_err($crate::sql::map_err)?;
                stored.try_into()
            }

            async fn delete_audited(
                &self,
                id: &PluginId,
                expected_version: Option<u64>,
                entry: &vivified_ports::AuditEntry,
            ) -> Result<(), StoreError> {
                if let Some(done) = self.group_delete(id, expected_version, Some(entry)).await {
                    return done;
                }
                let row = $crate::sql::pending_row(entry)?;
                if let Some(sql) = $queries.delete_audited {
                    let query = sqlx::query_as(sql)
                        .bind(id.as_str())
                        .bind(expected_version.map($crate::sql::version_i64).transpose()?);
                    let (deleted,): (i64,) = $crate::sql::bind_audit!(query, row)
                        .fetch_one(self.writer())
                        .await
                        .map_err($crate::sql::map_err)?;
                    return if deleted == 1 {
                        Ok(())
                    } else {
                        Err(self.missed(id).await)
                    };
                }
                let mut tx = self.writer().begin().await.map_err($crate::sql::map_err)?;
                let done = sqlx::query($queries.delete)
                    .bind(id.as_str())
                    .bind(expected_version.map($crate::sql::version_i64).transpose()?)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::sql::map_err)?;
                if done.rows_affected() != 1 {
                    drop(tx);
                    return Err(self.missed(id).await);
                }
                <$store as $crate::sql::HasDb>::insert_audit(&mut tx, &row)
                    .await
                    .map_err($crate::sql::map_err)?;
                tx.commit().await.map_err($crate::sql::map_err)
            }

            async fn revoke_tokens_issued_before(
                &self,
                before: OffsetDateTime,
            ) -> Result<u64, StoreError> {
                // Page by id; each record revoked by a conditional write, read again
                // and retried if another write came first.
                let mut revoked = 0;
                let mut after = None;
                loop {
                    let page = self.list(after.clone(), 500).await?;
                    let Some(last) = page.last() else {
                        break;
                    };
                    after = Some(last.plugin_id.clone());
                    for mut record in page {
                        let mut attempts = 0;
                        loop {
                            let version = record.version;
                            if !record.revoke_issued_before(before) {
                                break;
                            }
                            match self.replace(record.clone(), version).await {
                                Ok(_) => {
                                    revoked += 1;
                                    break;
                                }
                                Err(StoreError::PreconditionFailed) if attempts < 8 => {
                                    attempts += 1;
                                }
                                Err(StoreError::NotFound) => break,
                                Err(StoreError::PreconditionFailed) => {
                                    return Err(StoreError::Unavailable(
                                        "a record kept changing during a revocation".into(),
                                    ));
                                }
                                Err(e) => return Err(e),
                            }
                            match self.get(&record.plugin_id).await? {
                                Some(again) => record = again,
                                None => break,
                            }
                        }
                    }
                }
                Ok(revoked)
            }

            async fn create_enrollment(
                &self,
                e: &vivified_ports::Enrollment,
            ) -> Result<(), StoreError> {
                sqlx::query($queries.enrollment_insert)
                    .bind(&e.id)
                    .bind(&e.token_hash)
                    .bind(e.plugin_id.as_str())
                    .bind($crate::sql::to_micros(e.created_at))
                    .bind($crate::sql::to_micros(e.expires_at))
                    .bind(&e.created_by)
                    .execute(self.writer())
                    .await
                    .map_err($crate::sql::map_err)
                    .map(drop)
            }

            async fn enrollment(
                &self,
                token_hash: &str,
            ) -> Result<Option<vivified_ports::Enrollment>, StoreError> {
                let row: Option<$crate::sql::EnrollmentRow> =
                    sqlx::query_as($queries.enrollment_get)
                        .bind(token_hash)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::sql::map_err)?;
                row.map($crate::sql::enrollment).transpose()
            }

            async fn use_enrollment(
                &self,
                token_hash: &str,
                now: OffsetDateTime,
            ) -> Result<vivified_ports::Enrollment, StoreError> {
                let row: Option<$crate::sql::EnrollmentRow> =
                    sqlx::query_as($queries.enrollment_use)
                        .bind(token_hash)
                        .bind($crate::sql::to_micros(now))
                        .fetch_optional(self.writer())
                        .await
                        .map_err($crate::sql::map_err)?;
                match row {
                    Some(row) => $crate::sql::enrollment(row),
                    None => match self.enrollment(token_hash).await? {
                        Some(_) => Err(StoreError::PreconditionFailed),
                        None => Err(StoreError::NotFound),
                    },
                }
            }

            async fn release_enrollment(
                &self,
                token_hash: &str,
                used_at: OffsetDateTime,
            ) -> Result<(), StoreError> {
                sqlx::query($queries.enrollment_release)
                    .bind(token_hash)
                    .bind($crate::sql::to_micros(used_at))
                    .execute(self.writer())
                    .await
                    .map_err($crate::sql::map_err)
                    .map(drop)
            }

            async fn list_enrollments(
                &self,
                plugin_id: Option<vivified_ports::PluginId>,
                limit: usize,
            ) -> Result<Vec<vivified_ports::Enrollment>, StoreError> {
                let rows: Vec<$crate::sql::EnrollmentRow> =
                    sqlx::query_as($queries.enrollment_list)
                        .bind(plugin_id.as_ref().map(vivified_ports::PluginId::as_str))
                        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                        .fetch_all(&self.pool)
                        .await
                        .map_err($crate::sql::map_err)?;
                rows.into_iter().map($crate::sql::enrollment).collect()
            }

            async fn cancel_enrollment(
                &self,
                id: &str,
            ) -> Result<vivified_ports::Enrollment, StoreError> {
                let row: Option<$crate::sql::EnrollmentRow> =
                    sqlx::query_as($queries.enrollment_cancel)
                        .bind(id)
                        .fetch_optional(self.writer())
                        .await
                        .map_err($crate::sql::map_err)?;
                if let Some(row) = row {
                    return $crate::sql::enrollment(row);
                }
                let exists: Option<$crate::sql::EnrollmentRow> =
                    sqlx::query_as($queries.enrollment_by_id)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::sql::map_err)?;
                Err(match exists {
                    Some(_) => StoreError::PreconditionFailed,
                    None => StoreError::NotFound,
                })
            }

            async fn purge_enrollments(
                &self,
                ended_before: OffsetDateTime,
            ) -> Result<u64, StoreError> {
                let done = sqlx::query($queries.enrollment_purge)
                    .bind($crate::sql::to_micros(ended_before))
                    .execute(self.writer())
                    .await
                    .map_err($crate::sql::map_err)?;
                Ok(done.rows_affected())
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::map_err)
                    .map(|_| ())
            }
        }
    };
}
pub(crate) use sql_plugin_store;
