//! The audit log's SQL core, shared by the SQLite and Postgres dialects
//! ([`crate::sqlite::SqliteAuditLog`], [`crate::postgres::PostgresAuditLog`]) on the
//! store's pool (tables `audit_pending` and `audit_entries`, migration `0004_audit.sql`).
//!
//! - **Append** is one plain `INSERT INTO audit_pending` (each dialect's
//!   `insert_pending`, beside its store): no lock on the chain head, so a store can
//!   write it in the same transaction as the state change it records.
//! - **Seal** moves a batch from `audit_pending` (oldest `id` first) to
//!   `audit_entries` in one transaction: `DELETE … RETURNING` the batch, read the head,
//!   chain the entries with `vivified_ports::audit::seal_entries` (the hasher the caller
//!   passes: the domain's chain key), insert them.
//!   One sealer at a time: on Postgres `pg_try_advisory_xact_lock` (a second sealer,
//!   in any process, gets `busy` at once); on SQLite the one process, with a flag in
//!   the log (and `BEGIN IMMEDIATE`, the database's single writer). The primary key on
//!   `seq` refuses a fork whatever happens.
//! - **Reads** decode row by row: a row altered to values the log never writes is
//!   `AuditError::CorruptEntry { seq }`, which verification reports at its place.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vivified_ports::audit::MAX_PAGE;
use vivified_ports::audit::{
    ChainHash, ChainHead, ChainMark, SealPlan, canonical_details, from_micros, outcome_str,
    parse_outcome, to_micros, validate_entry,
};
use vivified_ports::{AuditEntry, AuditError, AuditQuery, SealReport, SealedEntry};

pub(crate) const ENTRY_COLS: &str = "at, actor, action, target, outcome, reason, trace_id, details";

pub(crate) fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> AuditError {
    AuditError::Unavailable(Box::new(e))
}

pub(crate) fn unavailable_msg(msg: String) -> AuditError {
    AuditError::Unavailable(msg.into())
}

pub(crate) fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// An entry ready for `audit_pending`: validated, time in microseconds, details in
/// canonical JSON. Build it before opening the transaction it is inserted in.
#[derive(Clone, Debug)]
pub(crate) struct PendingRow {
    pub(crate) at: i64,
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) target: String,
    pub(crate) outcome: &'static str,
    pub(crate) reason: String,
    pub(crate) trace_id: String,
    pub(crate) details: String,
}

impl PendingRow {
    /// Validates and encodes `entry`.
    ///
    /// # Errors
    /// [`AuditError::InvalidEntry`] if it breaks a limit of `AuditEntry`.
    pub(crate) fn new(entry: &AuditEntry) -> Result<Self, AuditError> {
        let details = validate_entry(entry)?;
        Ok(Self {
            at: to_micros(entry.at),
            actor: entry.actor.clone(),
            action: entry.action.clone(),
            target: entry.target.clone(),
            outcome: outcome_str(entry.outcome),
            reason: entry.reason.clone(),
            trace_id: entry.trace_id.clone(),
            details,
        })
    }
}

/// The entry fields of a row of either table.
pub(crate) fn decode_entry<'r, R>(row: &'r R) -> Option<AuditEntry>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let text = |col: &'static str| row.try_get::<String, _>(col).ok();
    Some(AuditEntry {
        at: from_micros(row.try_get::<i64, _>("at").ok()?)?,
        actor: text("actor")?,
        action: text("action")?,
        target: text("target")?,
        outcome: parse_outcome(&text("outcome")?)?,
        reason: text("reason")?,
        trace_id: text("trace_id")?,
        details: serde_json::from_str(&text("details")?).ok()?,
    })
}

/// A row of `audit_entries`, decoded alone: a row that does not decode is
/// `CorruptEntry` at its `seq`, not a failure of the whole page.
pub(crate) fn decode_sealed<'r, R>(row: &'r R) -> Result<SealedEntry, AuditError>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let seq: i64 = row.try_get("seq").map_err(unavailable)?;
    // Every statement selects `seq > 0` only.
    let seq = u64::try_from(seq).map_err(|_| unavailable_msg(format!("audit seq {seq}")))?;
    let corrupt = AuditError::CorruptEntry { seq };
    let Some(entry) = decode_entry(row) else {
        return Err(corrupt);
    };
    let hash = row
        .try_get::<Vec<u8>, _>("hash")
        .ok()
        .and_then(|h| ChainHash::from_slice(&h))
        .ok_or(corrupt)?;
    Ok(SealedEntry { seq, entry, hash })
}

/// A row of `audit_pending` (`id` and the entry).
pub(crate) fn decode_pending<'r, R>(row: &'r R) -> Result<(i64, AuditEntry), AuditError>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let id: i64 = row.try_get("id").map_err(unavailable)?;
    let entry = decode_entry(row)
        .ok_or_else(|| unavailable_msg(format!("pending audit row {id} cannot be decoded")))?;
    Ok((id, entry))
}

/// A value bound to a built query.
pub(crate) enum Bind {
    Int(i64),
    Text(String),
}

/// `SELECT … FROM audit_entries` for `query`, from fixed fragments only (no input in
/// the SQL text), with its binds. `pg`: `$n` placeholders, else `?`.
pub(crate) fn build_query(query: &AuditQuery, pg: bool) -> (String, Vec<Bind>) {
    let mut sql = format!("SELECT seq, {ENTRY_COLS}, hash FROM audit_entries WHERE seq > 0");
    let mut binds = Vec::new();
    let mut push = |sql: &mut String, fragment: &str, bind: Bind| {
        binds.push(bind);
        sql.push_str(fragment);
        if pg {
            sql.push_str(&format!("${}", binds.len()));
        } else {
            sql.push('?');
        }
    };
    if let Some(after) = query.after {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let op = if query.newest_first {
            " AND seq < "
        } else {
            " AND seq > "
        };
        push(&mut sql, op, Bind::Int(after));
    }
    if let Some(actor) = &query.actor {
        push(&mut sql, " AND actor = ", Bind::Text(actor.clone()));
    }
    if let Some(action) = &query.action {
        push(&mut sql, " AND action = ", Bind::Text(action.clone()));
    }
    if let Some(outcome) = query.outcome {
        push(
            &mut sql,
            " AND outcome = ",
            Bind::Text(outcome_str(outcome).to_owned()),
        );
    }
    let order = if query.newest_first {
        " ORDER BY seq DESC LIMIT "
    } else {
        " ORDER BY seq LIMIT "
    };
    push(
        &mut sql,
        order,
        Bind::Int(limit_i64(query.limit.min(MAX_PAGE))),
    );
    (sql, binds)
}

/// Implements the backend-independent part of `AuditLog` for `$log` (a struct with a
/// `pool` field and a `writer()` method) in `$ph` placeholder style; `seal` is each
/// backend's own.
macro_rules! sql_audit_reads {
    ($log:ty, pg = $pg:expr, range = $range:expr, head = $head:expr, insert = $insert:path) => {
        #[async_trait]
        impl AuditLog for $log {
            async fn append(&self, entry: AuditEntry) -> Result<(), AuditError> {
                let row = PendingRow::new(&entry)?;
                $insert(self.writer(), &row).await.map_err(unavailable)
            }

            async fn seal(
                &self,
                keys: &(dyn ChainKeyRing + 'static),
                limit: usize,
            ) -> Result<SealReport, AuditError> {
                self.seal_batch(keys, limit.min(MAX_SEAL_BATCH)).await
            }

            async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, AuditError> {
                let row = sqlx::query(READ_CHECKPOINT)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                let mut out: Vec<StoredCheckpoint> = row
                    .map(|r| StoredCheckpoint {
                        place: CHECKPOINT_TABLE.to_owned(),
                        mark: mark_of_row(&r),
                    })
                    .into_iter()
                    .collect();
                out.extend(self.other_checkpoints());
                Ok(out)
            }

            async fn range(
                &self,
                from_seq: u64,
                limit: usize,
            ) -> Result<Vec<SealedEntry>, AuditError> {
                let limit = limit.min(MAX_PAGE);
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let from = i64::try_from(from_seq).unwrap_or(i64::MAX);
                let rows = sqlx::query($range)
                    .bind(from)
                    .bind(limit_i64(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
                rows.iter().map(decode_sealed).collect()
            }

            async fn head(&self) -> Result<Option<ChainHead>, AuditError> {
                let row = sqlx::query($head)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(unavailable)?;
                row.as_ref().map(head_of).transpose()
            }

            async fn pending(&self) -> Result<u64, AuditError> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_pending")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(unavailable)?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn query(&self, query: &AuditQuery) -> Result<Vec<SealedEntry>, AuditError> {
                if query.limit == 0 {
                    return Ok(Vec::new());
                }
                let (sql, binds) = build_query(query, $pg);
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for b in binds {
                    q = match b {
                        Bind::Int(i) => q.bind(i),
                        Bind::Text(s) => q.bind(s),
                    };
                }
                let rows = q.fetch_all(&self.pool).await.map_err(unavailable)?;
                rows.iter().map(decode_sealed).collect()
            }
        }
    };
}
pub(crate) use sql_audit_reads;

/// The checkpoint of a row of `audit_checkpoint`; `None` when it does not decode.
pub(crate) fn mark_of_row<'r, R>(row: &'r R) -> Option<ChainMark>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let seq = u64::try_from(row.try_get::<i64, _>("seq").ok()?).ok()?;
    let bytes = |col: &'static str| {
        row.try_get::<Vec<u8>, _>(col)
            .ok()
            .and_then(|b| ChainHash::from_slice(&b))
    };
    Some(ChainMark {
        head: ChainHead {
            seq,
            hash: bytes("hash")?,
        },
        mac: bytes("mac")?,
    })
}

/// The values of the checkpoint row for `mark` (`seq`, `hash`, `mac`), in the order
/// both dialects' upserts bind them.
pub(crate) fn checkpoint_row(mark: ChainMark) -> Result<(i64, Vec<u8>, Vec<u8>), AuditError> {
    Ok((
        seq_i64(mark.head.seq)?,
        mark.head.hash.as_bytes().to_vec(),
        mark.mac.as_bytes().to_vec(),
    ))
}

/// The place name of the checkpoint row.
pub(crate) const CHECKPOINT_TABLE: &str = "table audit_checkpoint";

/// Reads the checkpoint row (either dialect: no parameters).
pub(crate) const READ_CHECKPOINT: &str = "SELECT seq, hash, mac FROM audit_checkpoint WHERE id = 1";

/// `(seq, hash)` of a head row.
pub(crate) fn head_of<'r, R>(row: &'r R) -> Result<ChainHead, AuditError>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let seq: i64 = row.try_get("seq").map_err(unavailable)?;
    let seq = u64::try_from(seq).map_err(|_| unavailable_msg(format!("audit seq {seq}")))?;
    let hash = row
        .try_get::<Vec<u8>, _>("hash")
        .ok()
        .and_then(|h| ChainHash::from_slice(&h))
        .ok_or(AuditError::CorruptEntry { seq })?;
    Ok(ChainHead { seq, hash })
}

/// The entries of `sealed` as rows to insert (details re-encoded canonically).
pub(crate) fn sealed_details(sealed: &[SealedEntry]) -> Result<Vec<String>, AuditError> {
    sealed
        .iter()
        .map(|e| canonical_details(&e.entry.details).map_err(AuditError::from))
        .collect()
}

/// Chains `taken` (pending rows, any order) after `head`, oldest `id` first, as
/// `plan` says (after a rotation entry, if it rotates).
pub(crate) fn chain_taken(
    plan: &SealPlan<'_>,
    head: Option<ChainHead>,
    mut taken: Vec<(i64, AuditEntry)>,
) -> Result<Vec<SealedEntry>, AuditError> {
    taken.sort_by_key(|(id, _)| *id);
    plan.seal(head, taken.into_iter().map(|(_, e)| e).collect())
        .map_err(|e| {
            unavailable_msg(format!(
                "a pending audit entry cannot be sealed: {e}; sealing is stalled"
            ))
        })
}

pub(crate) fn seal_report(sealed: &[SealedEntry], head: Option<ChainHead>) -> SealReport {
    SealReport {
        sealed: sealed.len() as u64,
        head: sealed
            .last()
            .map(|e| ChainHead {
                seq: e.seq,
                hash: e.hash,
            })
            .or(head),
        busy: false,
    }
}

pub(crate) fn seq_i64(seq: u64) -> Result<i64, AuditError> {
    i64::try_from(seq).map_err(|_| unavailable_msg(format!("audit seq {seq} overflows")))
}

/// Commits a seal's transaction if it succeeded, else rolls it back — explicitly, so
/// the write lock (and on Postgres the advisory lock) is released before the caller
/// hears back; a dropped transaction is rolled back only later, on its connection.
pub(crate) async fn finish<DB: sqlx::Database>(
    tx: sqlx::Transaction<'static, DB>,
    result: Result<SealReport, AuditError>,
) -> Result<SealReport, AuditError> {
    match result {
        Ok(report) => {
            tx.commit().await.map_err(unavailable)?;
            Ok(report)
        }
        Err(e) => {
            // The error that matters is the seal's; a failed rollback ends with the
            // connection anyway.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// Clears a sealing flag when a seal ends, however it ends.
pub(crate) struct SealingGuard(pub(crate) Arc<AtomicBool>);

impl Drop for SealingGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
