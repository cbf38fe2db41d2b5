//! `SqliteAuditLog` and `PostgresAuditLog`: the audit chain in the SQL store's
//! database, on the store's pool (tables `audit_pending` and `audit_entries`,
//! migration `0004_audit.sql`).
//!
//! - **Append** is one plain `INSERT INTO audit_pending` ([`insert_pending_sqlite`],
//!   [`insert_pending_postgres`]): no lock on the chain head, so a store can write it in
//!   the same transaction as the state change it records.
//! - **Seal** moves a batch from `audit_pending` (oldest `id` first) to
//!   `audit_entries` in one transaction: `DELETE … RETURNING` the batch, read the head,
//!   chain the entries with `vivified_ports::audit_chain::seal_entries`, insert them.
//!   One sealer at a time: on Postgres `pg_try_advisory_xact_lock` (a second sealer,
//!   in any process, gets `busy` at once); on SQLite the one process, with a flag in
//!   the log (and `BEGIN IMMEDIATE`, the database's single writer). The primary key on
//!   `seq` refuses a fork whatever happens.
//! - **Reads** decode row by row: a row altered to values the log never writes is
//!   `AuditError::CorruptEntry { seq }`, which verification reports at its place.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use vivified_ports::audit::{MAX_PAGE, MAX_SEAL_BATCH};
use vivified_ports::audit_chain::{
    ChainHash, ChainHead, ChainKey, canonical_details, from_micros, outcome_str, parse_outcome,
    seal_entries, to_micros, validate_entry,
};
use vivified_ports::{AuditEntry, AuditError, AuditLog, AuditQuery, SealReport, SealedEntry};

const ENTRY_COLS: &str = "at, actor, action, target, outcome, reason, trace_id, details";

/// The advisory lock key of the Postgres sealer ("vivi" "aud1").
#[cfg(feature = "postgres")]
const SEAL_LOCK: i64 = 0x7669_7669_6175_6431;

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> AuditError {
    AuditError::Unavailable(Box::new(e))
}

fn unavailable_msg(msg: String) -> AuditError {
    AuditError::Unavailable(msg.into())
}

fn limit_i64(limit: usize) -> i64 {
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

/// Inserts one pending entry with `exec` — a pool, a connection, or the transaction of
/// the state change it records (`&mut *tx`): the transactional append. Takes no lock
/// beyond the row it inserts.
///
/// # Errors
/// The driver's error, for the caller to map.
#[cfg(feature = "sqlite")]
pub(crate) async fn insert_pending_sqlite<'e, E>(
    exec: E,
    row: &PendingRow,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    sqlx::query(
        "INSERT INTO audit_pending (at, actor, action, target, outcome, reason, trace_id, details) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(row.at)
    .bind(&row.actor)
    .bind(&row.action)
    .bind(&row.target)
    .bind(row.outcome)
    .bind(&row.reason)
    .bind(&row.trace_id)
    .bind(&row.details)
    .execute(exec)
    .await
    .map(drop)
}

/// As [`insert_pending_sqlite`], for Postgres.
///
/// # Errors
/// The driver's error, for the caller to map.
#[cfg(feature = "postgres")]
pub(crate) async fn insert_pending_postgres<'e, E>(
    exec: E,
    row: &PendingRow,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    sqlx::query(
        "INSERT INTO audit_pending (at, actor, action, target, outcome, reason, trace_id, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(row.at)
    .bind(&row.actor)
    .bind(&row.action)
    .bind(&row.target)
    .bind(row.outcome)
    .bind(&row.reason)
    .bind(&row.trace_id)
    .bind(&row.details)
    .execute(exec)
    .await
    .map(drop)
}

/// The entry fields of a row of either table.
fn decode_entry<'r, R>(row: &'r R) -> Option<AuditEntry>
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
fn decode_sealed<'r, R>(row: &'r R) -> Result<SealedEntry, AuditError>
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
fn decode_pending<'r, R>(row: &'r R) -> Result<(i64, AuditEntry), AuditError>
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
enum Bind {
    Int(i64),
    Text(String),
}

/// `SELECT … FROM audit_entries` for `query`, from fixed fragments only (no input in
/// the SQL text), with its binds. `pg`: `$n` placeholders, else `?`.
fn build_query(query: &AuditQuery, pg: bool) -> (String, Vec<Bind>) {
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
/// `pool` field) in `$ph` placeholder style; `seal` is each backend's own.
macro_rules! sql_audit_reads {
    ($log:ty, pg = $pg:expr, range = $range:expr, head = $head:expr, insert = $insert:path) => {
        #[async_trait]
        impl AuditLog for $log {
            async fn append(&self, entry: AuditEntry) -> Result<(), AuditError> {
                let row = PendingRow::new(&entry)?;
                $insert(&self.pool, &row).await.map_err(unavailable)
            }

            async fn seal(&self, key: &ChainKey, limit: usize) -> Result<SealReport, AuditError> {
                self.seal_batch(key, limit.min(MAX_SEAL_BATCH)).await
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

/// `(seq, hash)` of a head row.
fn head_of<'r, R>(row: &'r R) -> Result<ChainHead, AuditError>
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
fn sealed_details(sealed: &[SealedEntry]) -> Result<Vec<String>, AuditError> {
    sealed
        .iter()
        .map(|e| canonical_details(&e.entry.details).map_err(AuditError::from))
        .collect()
}

/// Chains `taken` (pending rows, any order) after `head`, oldest `id` first.
fn chain_taken(
    key: &ChainKey,
    head: Option<ChainHead>,
    mut taken: Vec<(i64, AuditEntry)>,
) -> Result<Vec<SealedEntry>, AuditError> {
    taken.sort_by_key(|(id, _)| *id);
    seal_entries(key, head, taken.into_iter().map(|(_, e)| e)).map_err(|e| {
        unavailable_msg(format!(
            "a pending audit entry cannot be sealed: {e}; sealing is stalled"
        ))
    })
}

fn seal_report(sealed: &[SealedEntry], head: Option<ChainHead>) -> SealReport {
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

fn seq_i64(seq: u64) -> Result<i64, AuditError> {
    i64::try_from(seq).map_err(|_| unavailable_msg(format!("audit seq {seq} overflows")))
}

/// Commits a seal's transaction if it succeeded, else rolls it back — explicitly, so
/// the write lock (and on Postgres the advisory lock) is released before the caller
/// hears back; a dropped transaction is rolled back only later, on its connection.
async fn finish<DB: sqlx::Database>(
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
struct SealingGuard(Arc<AtomicBool>);

impl Drop for SealingGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

// ---------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------

#[cfg(feature = "sqlite")]
pub use self::sqlite::SqliteAuditLog;

#[cfg(feature = "sqlite")]
mod sqlite {
    use sqlx::SqlitePool;

    use super::*;
    use crate::sqlite::SqlitePluginStore;

    const RANGE: &str = "SELECT seq, at, actor, action, target, outcome, reason, trace_id, details, hash \
                         FROM audit_entries WHERE seq > 0 AND seq >= ? ORDER BY seq LIMIT ?";
    const HEAD: &str =
        "SELECT seq, hash FROM audit_entries WHERE seq > 0 ORDER BY seq DESC LIMIT 1";
    const TAKE_PENDING: &str = "DELETE FROM audit_pending WHERE id IN \
         (SELECT id FROM audit_pending ORDER BY id LIMIT ?) \
         RETURNING id, at, actor, action, target, outcome, reason, trace_id, details";
    const INSERT_SEALED: &str = "INSERT INTO audit_entries \
         (seq, at, actor, action, target, outcome, reason, trace_id, details, hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

    /// An [`AuditLog`] in the SQLite store's file, on its pool. Build one per process
    /// and share it (`Arc`): its sealing flag is what keeps one sealer at a time.
    #[derive(Clone, Debug)]
    pub struct SqliteAuditLog {
        pool: SqlitePool,
        sealing: Arc<AtomicBool>,
    }

    impl SqliteAuditLog {
        /// The audit log of `store`'s database (whose migrations created its tables).
        pub fn new(store: &SqlitePluginStore) -> Self {
            Self {
                pool: store.pool().clone(),
                sealing: Arc::new(AtomicBool::new(false)),
            }
        }

        async fn seal_batch(&self, key: &ChainKey, limit: usize) -> Result<SealReport, AuditError> {
            if self.sealing.swap(true, Ordering::AcqRel) {
                return Ok(SealReport {
                    sealed: 0,
                    head: self.head().await?,
                    busy: true,
                });
            }
            let _guard = SealingGuard(Arc::clone(&self.sealing));
            if limit == 0 {
                return Ok(seal_report(&[], self.head().await?));
            }
            // The write lock first: no other writer between reading the head and
            // writing after it.
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(unavailable)?;
            let result = Self::seal_in(&mut tx, key, limit).await;
            finish(tx, result).await
        }

        async fn seal_in(
            tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
            key: &ChainKey,
            limit: usize,
        ) -> Result<SealReport, AuditError> {
            let rows = sqlx::query(TAKE_PENDING)
                .bind(limit_i64(limit))
                .fetch_all(&mut **tx)
                .await
                .map_err(unavailable)?;
            let taken = rows
                .iter()
                .map(decode_pending)
                .collect::<Result<Vec<_>, _>>()?;
            let head = sqlx::query(HEAD)
                .fetch_optional(&mut **tx)
                .await
                .map_err(unavailable)?
                .as_ref()
                .map(head_of)
                .transpose()?;
            let sealed = chain_taken(key, head, taken)?;
            let details = sealed_details(&sealed)?;
            for (e, details) in sealed.iter().zip(details) {
                sqlx::query(INSERT_SEALED)
                    .bind(seq_i64(e.seq)?)
                    .bind(to_micros(e.entry.at))
                    .bind(&e.entry.actor)
                    .bind(&e.entry.action)
                    .bind(&e.entry.target)
                    .bind(outcome_str(e.entry.outcome))
                    .bind(&e.entry.reason)
                    .bind(&e.entry.trace_id)
                    .bind(details)
                    .bind(e.hash.as_bytes().to_vec())
                    .execute(&mut **tx)
                    .await
                    .map_err(unavailable)?;
            }
            Ok(seal_report(&sealed, head))
        }
    }

    sql_audit_reads!(
        SqliteAuditLog,
        pg = false,
        range = RANGE,
        head = HEAD,
        insert = insert_pending_sqlite
    );
}

// ---------------------------------------------------------------------------
// Postgres
// ---------------------------------------------------------------------------

#[cfg(feature = "postgres")]
pub use self::postgres::PostgresAuditLog;

#[cfg(feature = "postgres")]
mod postgres {
    use sqlx::PgPool;

    use super::*;
    use crate::postgres::PostgresPluginStore;

    const RANGE: &str = "SELECT seq, at, actor, action, target, outcome, reason, trace_id, details, hash \
                         FROM audit_entries WHERE seq > 0 AND seq >= $1 ORDER BY seq LIMIT $2";
    const HEAD: &str =
        "SELECT seq, hash FROM audit_entries WHERE seq > 0 ORDER BY seq DESC LIMIT 1";
    // Exactly the rows returned are deleted (one statement), so a row committed by a
    // concurrent append meanwhile is never removed unsealed.
    const TAKE_PENDING: &str = "DELETE FROM audit_pending WHERE id IN \
         (SELECT id FROM audit_pending ORDER BY id LIMIT $1) \
         RETURNING id, at, actor, action, target, outcome, reason, trace_id, details";
    const INSERT_SEALED: &str = "INSERT INTO audit_entries \
         (seq, at, actor, action, target, outcome, reason, trace_id, details, hash) \
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
         $6::text[], $7::text[], $8::text[], $9::text[], $10::bytea[])";

    /// An [`AuditLog`] in the Postgres store's database, on its pool. Any number of
    /// replicas may append and seal: one sealer at a time holds an advisory lock.
    #[derive(Clone, Debug)]
    pub struct PostgresAuditLog {
        pool: PgPool,
    }

    impl PostgresAuditLog {
        /// The audit log of `store`'s database (whose migrations created its tables).
        pub fn new(store: &PostgresPluginStore) -> Self {
            Self {
                pool: store.pool().clone(),
            }
        }

        async fn seal_batch(&self, key: &ChainKey, limit: usize) -> Result<SealReport, AuditError> {
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .bind(SEAL_LOCK)
                .fetch_one(&mut *tx)
                .await
                .map_err(unavailable)?;
            if !locked {
                tx.rollback().await.map_err(unavailable)?;
                return Ok(SealReport {
                    sealed: 0,
                    head: self.head().await?,
                    busy: true,
                });
            }
            let result = Self::seal_in(&mut tx, key, limit).await;
            finish(tx, result).await
        }

        async fn seal_in(
            tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
            key: &ChainKey,
            limit: usize,
        ) -> Result<SealReport, AuditError> {
            let head = sqlx::query(HEAD)
                .fetch_optional(&mut **tx)
                .await
                .map_err(unavailable)?
                .as_ref()
                .map(head_of)
                .transpose()?;
            if limit == 0 {
                return Ok(seal_report(&[], head));
            }
            let rows = sqlx::query(TAKE_PENDING)
                .bind(limit_i64(limit))
                .fetch_all(&mut **tx)
                .await
                .map_err(unavailable)?;
            let taken = rows
                .iter()
                .map(decode_pending)
                .collect::<Result<Vec<_>, _>>()?;
            if taken.is_empty() {
                return Ok(seal_report(&[], head));
            }
            let sealed = chain_taken(key, head, taken)?;
            let n = sealed.len();
            let (mut seq, mut at) = (Vec::with_capacity(n), Vec::with_capacity(n));
            let (mut actor, mut action, mut target) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            let (mut outcome, mut reason, mut trace) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            let mut hash = Vec::with_capacity(n);
            let details = sealed_details(&sealed)?;
            for e in &sealed {
                seq.push(seq_i64(e.seq)?);
                at.push(to_micros(e.entry.at));
                actor.push(e.entry.actor.clone());
                action.push(e.entry.action.clone());
                target.push(e.entry.target.clone());
                outcome.push(outcome_str(e.entry.outcome).to_owned());
                reason.push(e.entry.reason.clone());
                trace.push(e.entry.trace_id.clone());
                hash.push(e.hash.as_bytes().to_vec());
            }
            sqlx::query(INSERT_SEALED)
                .bind(seq)
                .bind(at)
                .bind(actor)
                .bind(action)
                .bind(target)
                .bind(outcome)
                .bind(reason)
                .bind(trace)
                .bind(details)
                .bind(hash)
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
            Ok(seal_report(&sealed, head))
        }
    }

    sql_audit_reads!(
        PostgresAuditLog,
        pg = true,
        range = RANGE,
        head = HEAD,
        insert = insert_pending_postgres
    );
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use vivified_ports::AuditOutcome;
    use vivified_ports::audit_testing::{audit_entry, test_chain_key};

    use super::*;
    use crate::sqlite::SqlitePluginStore;

    /// The transactional append a store will use: the pending entry commits or rolls
    /// back with the transaction it was written in.
    #[tokio::test]
    async fn pending_insert_shares_the_callers_transaction() {
        let store = SqlitePluginStore::in_memory().await.unwrap();
        let log = SqliteAuditLog::new(&store);
        let row = PendingRow::new(&audit_entry(
            "admin",
            "plugin.disable",
            AuditOutcome::Success,
            1,
        ))
        .unwrap();

        let mut tx = store.pool().begin().await.unwrap();
        insert_pending_sqlite(&mut *tx, &row).await.unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(
            log.pending().await.unwrap(),
            0,
            "rolled back with the change"
        );

        let mut tx = store.pool().begin().await.unwrap();
        insert_pending_sqlite(&mut *tx, &row).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(log.pending().await.unwrap(), 1, "committed with the change");
        assert_eq!(log.seal(&test_chain_key(), 10).await.unwrap().sealed, 1);
    }

    #[test]
    fn invalid_entries_never_reach_sql() {
        let mut e = audit_entry("admin", "x", AuditOutcome::Denied, 1);
        e.details = serde_json::json!(0.25);
        assert!(matches!(
            PendingRow::new(&e),
            Err(AuditError::InvalidEntry(_))
        ));
    }

    #[test]
    fn queries_are_built_from_fixed_fragments() {
        let q = AuditQuery {
            after: Some(9),
            limit: 5,
            newest_first: true,
            actor: Some("x' OR 1=1 --".into()),
            action: None,
            outcome: Some(AuditOutcome::Denied),
        };
        let (pg, binds) = build_query(&q, true);
        assert_eq!(
            pg,
            "SELECT seq, at, actor, action, target, outcome, reason, trace_id, details, hash \
             FROM audit_entries WHERE seq > 0 AND seq < $1 AND actor = $2 AND outcome = $3 \
             ORDER BY seq DESC LIMIT $4"
        );
        assert_eq!(binds.len(), 4);
        let (lite, _) = build_query(&q, false);
        assert!(lite.contains("AND actor = ? AND outcome = ? ORDER BY seq DESC LIMIT ?"));
        assert!(!lite.contains("OR 1=1"));
    }
}
