//! `PostgresPluginStore`: for production, and for several core replicas on one
//! database. Every write is one conditional statement; uniqueness is the primary key's.

mod audit;
pub use audit::PostgresAuditLog;

use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, SqlSafeStr};
use time::OffsetDateTime;
use vivified_ports::{
    Health, HeartbeatOutcome, LivenessCounts, OutboxEntry, PluginId, PluginRecord, PluginStore,
    StoreError,
};

use crate::sql::{Queries, map_err, sql_plugin_store};

macro_rules! cols {
    () => {
        "plugin_id, manifest::text AS manifest, status, health, enabled, disabled_reason, registered_at, last_heartbeat, next_deadline, version, approved_traits, instances::text AS instances"
    };
}

/// `INSERT INTO plugins (…) VALUES (…)` of a new record, `$1..$11`.
macro_rules! insert_row {
    () => {
        concat!(
            "INSERT INTO plugins (plugin_id, manifest, status, health, enabled, disabled_reason, ",
            "registered_at, last_heartbeat, instances, next_deadline, version, approved_traits, token_jti) ",
            "VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, 1, $11, '-')"
        )
    };
}

/// The `SET` list of a replace, `$1..$9` and `$12`.
macro_rules! replace_set {
    () => {
        concat!(
            "manifest = $1::jsonb, status = $2, health = $3, enabled = $4, disabled_reason = $5, ",
            "registered_at = $6, last_heartbeat = $7, instances = $8::jsonb, next_deadline = $9, ",
            "approved_traits = $12, version = version + 1"
        )
    };
}

/// The embedded migrations of the Postgres store, in order. Running them takes a
/// Postgres advisory lock, so replicas starting together migrate once.
pub fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "plugins".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0001_plugins.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "deadlines".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0002_deadlines.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "outbox".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0003_outbox.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            "audit".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0004_audit.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            "audit_checkpoint".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0005_audit_checkpoint.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            6,
            "token_issued_at".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0006_token_issued_at.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            "enrollments".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0007_enrollments.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            8,
            "approved_traits".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0008_approved_traits.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            9,
            "instances".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0009_instances.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            10,
            "operators".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0010_operators.sql").into_sql_str(),
            false,
        ),
    ])
}

/// Settings of a [`PostgresPluginStore`].
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// Connection pool size.
    pub max_connections: u32,
    /// How long a request waits for a connection before the store reports
    /// `Unavailable` (so an outage answers 503 quickly instead of hanging).
    pub acquire_timeout: Duration,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

/// A [`PluginStore`] in Postgres.
#[derive(Clone, Debug)]
pub struct PostgresPluginStore {
    pool: PgPool,
    /// Record writes committed in groups (`with_group_commit`); `None`: each alone.
    group: Option<std::sync::Arc<crate::sql::group::GroupCommit>>,
}

impl PostgresPluginStore {
    /// Connects to `url` (`postgres://…`), and runs the migrations. TLS follows the
    /// URL's `sslmode` (`disable`, `prefer` — the default —, `require`, `verify-ca`,
    /// `verify-full`) and `sslrootcert` (a PEM CA file, trusted besides the system's
    /// roots); `sslcert` and `sslkey` give a client certificate.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if the URL is malformed, the server cannot be reached
    /// or the migrations fail. The error never contains the URL's password.
    pub async fn connect(url: &str, config: &PostgresConfig) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|_| StoreError::Unavailable("not a valid postgres:// URL".into()))?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(map_err)?;
        Self::from_pool(pool).await
    }

    /// Uses an existing pool and runs the migrations.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if the migrations fail.
    pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        migrator()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        Ok(Self { pool, group: None })
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Where writes go: the same pool (Postgres takes concurrent writers).
    pub(crate) fn writer(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

const QUERIES: Queries = Queries {
    insert: concat!(insert_row!(), " RETURNING ", cols!()),
    cols: cols!(),
    json_cast: "::jsonb",
    insert_skip: concat!(
        insert_row!(),
        " ON CONFLICT (plugin_id) DO NOTHING RETURNING ",
        cols!()
    ),
    get: concat!("SELECT ", cols!(), " FROM plugins WHERE plugin_id = $1"),
    list: concat!(
        "SELECT ",
        cols!(),
        " FROM plugins WHERE plugin_id > $1 ORDER BY plugin_id LIMIT $2"
    ),
    replace: concat!(
        "UPDATE plugins SET ",
        replace_set!(),
        " WHERE plugin_id = $10 AND version = $11 RETURNING ",
        cols!()
    ),
    get_many: concat!(
        "SELECT ",
        cols!(),
        " FROM plugins WHERE plugin_id IN (SELECT jsonb_array_elements_text($1::jsonb))"
    ),
    write_liveness: "UPDATE plugins AS p SET status = j.status, health = j.health, \
                     last_heartbeat = j.last_heartbeat, next_deadline = j.next_deadline, \
                     instances = j.instances::jsonb, version = p.version + 1 \
                     FROM jsonb_to_recordset($1::jsonb) AS j(id text, version bigint, status text, \
                     health text, last_heartbeat bigint, next_deadline bigint, instances text) \
                     WHERE p.plugin_id = j.id AND p.version = j.version RETURNING p.plugin_id",
    earliest_deadline: "SELECT next_deadline FROM plugins WHERE next_deadline IS NOT NULL \
                        ORDER BY next_deadline LIMIT 1",
    liveness_counts: "SELECT COUNT(*), COALESCE(SUM(CASE WHEN next_deadline <= $1 THEN 1 ELSE 0 END), 0)::bigint \
                      FROM plugins WHERE enabled AND status IN ('registered', 'active')",
    // Replicas sweeping together may read the same rows: each change is conditional on
    // the version read, so a record changes once.
    due: concat!(
        "SELECT ",
        cols!(),
        " FROM plugins WHERE enabled AND next_deadline <= $1 ORDER BY next_deadline LIMIT $2"
    ),
    delete: "DELETE FROM plugins WHERE plugin_id = $1 AND ($2::bigint IS NULL OR version = $2)",
    lock: concat!(
        "UPDATE plugins SET version = version WHERE plugin_id = $1 RETURNING ",
        cols!()
    ),
    enrollment_insert: "INSERT INTO enrollments (enrollment_id, token_hash, plugin_id, created_at, \
                        expires_at, created_by) VALUES ($1, $2, $3, $4, $5, $6)",
    enrollment_get: concat!(
        "SELECT ",
        crate::sql::enrollment_cols!(),
        " FROM enrollments WHERE token_hash = $1"
    ),
    enrollment_use: concat!(
        "UPDATE enrollments SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL \
         AND expires_at > $2 RETURNING ",
        crate::sql::enrollment_cols!()
    ),
    enrollment_release: "UPDATE enrollments SET used_at = NULL WHERE token_hash = $1 AND used_at = $2",
    enrollment_list: concat!(
        "SELECT ",
        crate::sql::enrollment_cols!(),
        " FROM enrollments WHERE ($1 IS NULL OR plugin_id = $1) \
         ORDER BY created_at DESC, enrollment_id LIMIT $2"
    ),
    enrollment_cancel: concat!(
        "DELETE FROM enrollments WHERE enrollment_id = $1 AND used_at IS NULL RETURNING ",
        crate::sql::enrollment_cols!()
    ),
    enrollment_by_id: concat!(
        "SELECT ",
        crate::sql::enrollment_cols!(),
        " FROM enrollments WHERE enrollment_id = $1"
    ),
    enrollment_purge: "DELETE FROM enrollments WHERE used_at < $1 OR expires_at < $1",
    exists: "SELECT 1 FROM plugins WHERE plugin_id = $1",
    outbox_insert: "INSERT INTO lifecycle_outbox (event_type, plugin_id, token_jti, version, at) \
                    VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    claim_outbox: "WITH due AS (SELECT event_type AS t, plugin_id AS p, token_jti AS j, version AS v \
                   FROM lifecycle_outbox WHERE at <= $1 ORDER BY at LIMIT $3 FOR UPDATE SKIP LOCKED) \
                   UPDATE lifecycle_outbox SET at = $2 FROM due WHERE event_type = due.t \
                   AND plugin_id = due.p AND token_jti = due.j AND version = due.v AND at <= $1 \
                   RETURNING event_type, plugin_id, token_jti, version, at",
    ack_outbox: "DELETE FROM lifecycle_outbox WHERE event_type = $1 AND plugin_id = $2 \
                 AND token_jti = $3 AND version = $4",
    // One statement each: the record write and its pending audit entry commit
    // together (one round trip instead of BEGIN, two writes and COMMIT).
    insert_audited: Some(concat!(
        "WITH rec AS (",
        insert_row!(),
        " RETURNING ",
        cols!(),
        "), aud AS (INSERT INTO audit_pending (at, actor, action, target, outcome, reason, trace_id, details) ",
        "SELECT $12, $13, $14, $15, $16, $17, $18, $19 FROM rec) SELECT * FROM rec"
    )),
    replace_audited: Some(concat!(
        "WITH rec AS (UPDATE plugins SET ",
        replace_set!(),
        " WHERE plugin_id = $10 AND version = $11 RETURNING ",
        cols!(),
        "), aud AS (INSERT INTO audit_pending (at, actor, action, target, outcome, reason, trace_id, details) ",
        "SELECT $13, $14, $15, $16, $17, $18, $19, $20 FROM rec) SELECT * FROM rec"
    )),
    delete_audited: Some(concat!(
        "WITH rec AS (DELETE FROM plugins WHERE plugin_id = $1 AND ($2::bigint IS NULL OR version = $2) ",
        "RETURNING plugin_id), aud AS (INSERT INTO audit_pending ",
        "(at, actor, action, target, outcome, reason, trace_id, details) ",
        "SELECT $3, $4, $5, $6, $7, $8, $9, $10 FROM rec) SELECT count(*) FROM rec"
    )),
    statement_bytes: crate::sql::TCP_STATEMENT_BYTES,
    group_lanes: 4,
};

impl crate::sql::HasDb for PostgresPluginStore {
    type Db = sqlx::Postgres;

    fn insert_audit<'t>(
        tx: &'t mut sqlx::Transaction<'_, sqlx::Postgres>,
        row: &'t crate::sql::audit::PendingRow,
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send + 't {
        insert_pending(&mut **tx, row)
    }
}

sql_plugin_store!(PostgresPluginStore, QUERIES);
crate::sql::operators::sql_operator_store!(PostgresPluginStore, crate::sql::operators::POSTGRES);
crate::sql::group::sql_group_commit!(PostgresPluginStore, QUERIES);
/// Inserts one pending audit entry with `exec` — a pool, a connection, or the
/// transaction of the state change it records (`&mut *tx`): the transactional append.
///
/// # Errors
/// The driver's error, for the caller to map.
pub(crate) async fn insert_pending<'e, E>(
    exec: E,
    row: &crate::sql::audit::PendingRow,
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
