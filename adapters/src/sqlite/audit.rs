//! `SqliteAuditLog`: the audit chain in the SQLite store's file (see [`crate::sql::audit`]).

use sqlx::SqlitePool;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use vivified_ports::audit::{ChainHead, ChainKeyRing, SealPlan, outcome_str, to_micros};
use vivified_ports::audit::{MAX_PAGE, MAX_SEAL_BATCH};
use vivified_ports::{
    AuditEntry, AuditError, AuditLog, AuditQuery, ChainMark, SealReport, SealedEntry,
    StoredCheckpoint,
};

use super::checkpoint_file::CheckpointFile;
use super::{SqlitePluginStore, insert_pending};
use crate::sql::audit::*;

const RANGE: &str = "SELECT seq, at, actor, action, target, outcome, reason, trace_id, details, hash \
                     FROM audit_entries WHERE seq > 0 AND seq >= ? ORDER BY seq LIMIT ?";
const HEAD: &str = "SELECT seq, hash FROM audit_entries WHERE seq > 0 ORDER BY seq DESC LIMIT 1";
const TAKE_PENDING: &str = "DELETE FROM audit_pending WHERE id IN \
     (SELECT id FROM audit_pending ORDER BY id LIMIT ?) \
     RETURNING id, at, actor, action, target, outcome, reason, trace_id, details";
const INSERT_SEALED: &str = "INSERT INTO audit_entries \
     (seq, at, actor, action, target, outcome, reason, trace_id, details, hash) ";
/// Sealed entries written by one statement (10 parameters each, well under SQLite's
/// limit of 32,766).
const SEALED_PER_STATEMENT: usize = 500;
const WRITE_CHECKPOINT: &str = "INSERT INTO audit_checkpoint (id, seq, hash, mac) VALUES (1, ?, ?, ?) \
     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac";

/// An [`AuditLog`] in the SQLite store's file, on its pool. Build one per process
/// and share it (`Arc`): its sealing flag is what keeps one sealer at a time.
///
/// Each seal stores the new head's checkpoint in `audit_checkpoint` (same
/// transaction) and, for a database file, in `DB-checkpoint` beside it.
#[derive(Clone, Debug)]
pub struct SqliteAuditLog {
    pool: SqlitePool,
    /// The store's one writing connection: appends and seals.
    writer: SqlitePool,
    sealing: Arc<AtomicBool>,
    file: Option<Arc<CheckpointFile>>,
}

impl SqliteAuditLog {
    /// The audit log of `store`'s database (whose migrations created its tables);
    /// for a database file, reads the checkpoint file beside it.
    pub fn new(store: &SqlitePluginStore) -> Self {
        Self {
            pool: store.pool().clone(),
            writer: store.writer().clone(),
            sealing: Arc::new(AtomicBool::new(false)),
            file: store.path().map(|db| Arc::new(CheckpointFile::beside(db))),
        }
    }

    /// Where appends and seals go: the store's one writing connection.
    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    fn other_checkpoints(&self) -> Option<StoredCheckpoint> {
        self.file.as_ref().and_then(|f| f.stored())
    }

    async fn seal_batch(
        &self,
        keys: &dyn ChainKeyRing,
        limit: usize,
    ) -> Result<SealReport, AuditError> {
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
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        let file_mark = self.file.as_ref().and_then(|f| f.mark());
        let result = Self::seal_in(&mut tx, keys, limit, file_mark).await;
        let (report, mark) = match result {
            Ok((report, mark)) => (finish(tx, Ok(report)).await?, mark),
            Err(e) => return finish(tx, Err(e)).await,
        };
        if let (Some(file), Some(mark)) = (&self.file, mark) {
            // Its fsync blocks: off the runtime's threads, so that requests go on.
            let file = Arc::clone(file);
            let written = tokio::task::spawn_blocking(move || file.write(mark))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            if let Err(e) = written {
                // The row in the database holds the same checkpoint; the file catches
                // up at the next seal.
                tracing::warn!(error = %e, "the audit checkpoint file could not be written");
            }
        }
        Ok(report)
    }

    async fn seal_in(
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        keys: &dyn ChainKeyRing,
        limit: usize,
        file_mark: Option<ChainMark>,
    ) -> Result<(SealReport, Option<ChainMark>), AuditError> {
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
        let row_mark = sqlx::query(READ_CHECKPOINT)
            .fetch_optional(&mut **tx)
            .await
            .map_err(unavailable)?
            .as_ref()
            .and_then(mark_of_row);
        let plan = SealPlan::new(keys, head, row_mark.iter().chain(file_mark.iter()))?;
        let sealed = chain_taken(&plan, head, taken)?;
        let details = sealed_details(&sealed)?;
        // Many rows a statement: the write lock is held for less time.
        let rows: Vec<(&SealedEntry, String)> = sealed.iter().zip(details).collect();
        for chunk in rows.chunks(SEALED_PER_STATEMENT) {
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(INSERT_SEALED);
            let mut bad_seq = None;
            insert.push_values(chunk, |mut row, (e, details)| {
                let seq = seq_i64(e.seq).unwrap_or_else(|err| {
                    bad_seq = Some(err);
                    0
                });
                row.push_bind(seq)
                    .push_bind(to_micros(e.entry.at))
                    .push_bind(e.entry.actor.clone())
                    .push_bind(e.entry.action.clone())
                    .push_bind(e.entry.target.clone())
                    .push_bind(outcome_str(e.entry.outcome))
                    .push_bind(e.entry.reason.clone())
                    .push_bind(e.entry.trace_id.clone())
                    .push_bind(details.clone())
                    .push_bind(e.hash.as_bytes().to_vec());
            });
            if let Some(err) = bad_seq {
                return Err(err);
            }
            insert
                .build()
                .persistent(false)
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
        }
        let report = seal_report(&sealed, head);
        let mut mark = None;
        if let (false, Some(head)) = (sealed.is_empty(), report.head) {
            let checkpoint = plan.checkpoint(head);
            let (seq, hash, mac) = checkpoint_row(checkpoint)?;
            sqlx::query(WRITE_CHECKPOINT)
                .bind(seq)
                .bind(hash)
                .bind(mac)
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
            mark = Some(checkpoint);
        }
        Ok((report, mark))
    }
}

sql_audit_reads!(
    SqliteAuditLog,
    pg = false,
    range = RANGE,
    head = HEAD,
    insert = insert_pending
);

#[cfg(test)]
mod tests {
    use vivified_conformance::audit::{audit_entry, test_chain_key};
    use vivified_ports::AuditOutcome;

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
        insert_pending(&mut *tx, &row).await.unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(
            log.pending().await.unwrap(),
            0,
            "rolled back with the change"
        );

        let mut tx = store.pool().begin().await.unwrap();
        insert_pending(&mut *tx, &row).await.unwrap();
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
