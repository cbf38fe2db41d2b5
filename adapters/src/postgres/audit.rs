//! `PostgresAuditLog`: the audit chain in the Postgres store's database (see
//! [`crate::sql::audit`]).

use sqlx::PgPool;

use async_trait::async_trait;
use vivified_ports::audit::{ChainHead, ChainKeyRing, SealPlan, outcome_str, to_micros};
use vivified_ports::audit::{MAX_PAGE, MAX_SEAL_BATCH};
use vivified_ports::{
    AuditEntry, AuditError, AuditLog, AuditQuery, SealReport, SealedEntry, StoredCheckpoint,
};

use super::{PostgresPluginStore, insert_pending};
use crate::sql::audit::*;

/// The advisory lock key of the Postgres sealer ("vivi" "aud1").
const SEAL_LOCK: i64 = 0x7669_7669_6175_6431;

const RANGE: &str = "SELECT seq, at, actor, action, target, outcome, reason, trace_id, details, hash \
                     FROM audit_entries WHERE seq > 0 AND seq >= $1 ORDER BY seq LIMIT $2";
const HEAD: &str = "SELECT seq, hash FROM audit_entries WHERE seq > 0 ORDER BY seq DESC LIMIT 1";
// Exactly the rows returned are deleted (one statement), so a row committed by a
// concurrent append meanwhile is never removed unsealed.
const TAKE_PENDING: &str = "DELETE FROM audit_pending WHERE id IN \
     (SELECT id FROM audit_pending ORDER BY id LIMIT $1) \
     RETURNING id, at, actor, action, target, outcome, reason, trace_id, details";
const INSERT_SEALED: &str = "INSERT INTO audit_entries \
     (seq, at, actor, action, target, outcome, reason, trace_id, details, hash) \
     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
     $6::text[], $7::text[], $8::text[], $9::text[], $10::bytea[])";
const WRITE_CHECKPOINT: &str = "INSERT INTO audit_checkpoint (id, seq, hash, mac) VALUES (1, $1, $2, $3) \
     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac";

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

    /// Where appends go: the same pool, as for the store.
    fn writer(&self) -> &PgPool {
        &self.pool
    }

    /// Only the row of `audit_checkpoint`: replicas share no file.
    fn other_checkpoints(&self) -> Option<StoredCheckpoint> {
        None
    }

    async fn seal_batch(
        &self,
        keys: &dyn ChainKeyRing,
        limit: usize,
    ) -> Result<SealReport, AuditError> {
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
        let result = Self::seal_in(&mut tx, keys, limit).await;
        finish(tx, result).await
    }

    async fn seal_in(
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        keys: &dyn ChainKeyRing,
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
        let stored = sqlx::query(READ_CHECKPOINT)
            .fetch_optional(&mut **tx)
            .await
            .map_err(unavailable)?
            .as_ref()
            .and_then(mark_of_row);
        let plan = SealPlan::new(keys, head, stored.iter())?;
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
        let sealed = chain_taken(&plan, head, taken)?;
        let details = sealed_details(&sealed)?;
        let rows: Vec<(&SealedEntry, String)> = sealed.iter().zip(details).collect();
        // Statements of at most about 8 KB (see `sql::statement_chunks`).
        let size = |(e, d): &(&SealedEntry, String)| d.len() + e.entry.target.len() + 256;
        for chunk in crate::sql::statement_chunks(&rows, crate::sql::TCP_STATEMENT_BYTES, size) {
            let n = chunk.len();
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
            let (mut details, mut hash) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for (e, d) in chunk {
                seq.push(seq_i64(e.seq)?);
                at.push(to_micros(e.entry.at));
                actor.push(e.entry.actor.clone());
                action.push(e.entry.action.clone());
                target.push(e.entry.target.clone());
                outcome.push(outcome_str(e.entry.outcome).to_owned());
                reason.push(e.entry.reason.clone());
                trace.push(e.entry.trace_id.clone());
                details.push(d.clone());
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
        }
        let report = seal_report(&sealed, head);
        if let Some(head) = report.head {
            let (seq, hash, mac) = checkpoint_row(plan.checkpoint(head))?;
            sqlx::query(WRITE_CHECKPOINT)
                .bind(seq)
                .bind(hash)
                .bind(mac)
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
        }
        Ok(report)
    }
}

sql_audit_reads!(
    PostgresAuditLog,
    pg = true,
    range = RANGE,
    head = HEAD,
    insert = insert_pending
);
