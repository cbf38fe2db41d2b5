//! `SqlitePluginStore`: the embedded default. One file, WAL journal, `synchronous=FULL`
//! so that an acknowledged write survives a crash of the process or the machine.

mod audit;
mod checkpoint_file;
pub use audit::SqliteAuditLog;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlSafeStr, SqlitePool};
use time::OffsetDateTime;
use vivified_ports::{
    Health, HeartbeatOutcome, LivenessCounts, OutboxEntry, PluginId, PluginRecord, PluginStore,
    StoreError,
};

use crate::sql::{Queries, map_err, sql_plugin_store};

macro_rules! cols {
    () => {
        "plugin_id, manifest, status, health, enabled, disabled_reason, registered_at, last_heartbeat, next_deadline, version, approved_traits, instances"
    };
}

/// The embedded migrations of the SQLite store, in order.
pub fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "plugins".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0001_plugins.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "deadlines".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0002_deadlines.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "outbox".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0003_outbox.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            "audit".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0004_audit.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            "audit_checkpoint".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0005_audit_checkpoint.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            6,
            "token_issued_at".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0006_token_issued_at.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            "enrollments".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0007_enrollments.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            8,
            "approved_traits".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0008_approved_traits.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            9,
            "instances".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0009_instances.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            10,
            "operators".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0010_operators.sql").into_sql_str(),
            false,
        ),
    ])
}

/// A [`PluginStore`] in one SQLite file.
#[derive(Clone, Debug)]
pub struct SqlitePluginStore {
    /// Reads: several connections, which WAL lets read while one writes.
    pool: SqlitePool,
    /// Writes: one connection. SQLite takes one writer at a time; two connections of
    /// this process that both wanted to write would make one sleep in SQLite's busy
    /// handler (1, 2, 5, 10, … ms), where waiting here for the connection is a fair
    /// queue that hands it over as soon as it is free.
    writer: SqlitePool,
    /// The database file (`None`: in memory).
    path: Option<std::path::PathBuf>,
    /// Record writes committed in groups (`with_group_commit`); `None`: each alone.
    group: Option<std::sync::Arc<crate::sql::group::GroupCommit>>,
}

impl SqlitePluginStore {
    /// Opens (creating if missing) the database file at `path` and runs the migrations.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if the file cannot be opened or migrated.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let mut store = Self::with_options(options).await?;
        store.path = Some(path.to_path_buf());
        Ok(store)
    }

    /// A private in-memory database (for tests); gone when the store is dropped.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if it cannot be created.
    pub async fn in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").map_err(map_err)?;
        // One connection: every connection to `:memory:` is its own database.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(map_err)?;
        Self::from_pool(pool).await
    }

    async fn with_options(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        // The writer first: it creates the file and runs the migrations.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await
            .map_err(map_err)?;
        let mut store = Self::from_pool(writer).await?;
        store.pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(map_err)?;
        Ok(store)
    }

    /// A store whose reads and writes share `pool`.
    async fn from_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        migrator()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        Ok(Self {
            writer: pool.clone(),
            pool,
            path: None,
            group: None,
        })
    }

    /// The connection pool (for tests and tools that inspect the file).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the store's connections (its reads' and its writer's), waiting for those
    /// in use to come back.
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    /// The one connection writes go through (the audit log's too).
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// The database file (`None` for an in-memory database).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

const QUERIES: Queries = Queries {
    insert: concat!(
        "INSERT INTO plugins (plugin_id, manifest, status, health, enabled, disabled_reason, ",
        "registered_at, last_heartbeat, instances, next_deadline, version, approved_traits, token_jti) ",
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 1, ?11, '-') RETURNING ",
        cols!()
    ),
    insert_skip: concat!(
        "INSERT INTO plugins (plugin_id, manifest, status, health, enabled, disabled_reason, ",
        "registered_at, last_heartbeat, instances, next_deadline, version, approved_traits, token_jti) ",
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 1, ?11, '-') ON CONFLICT (plugin_id) DO NOTHING RETURNING ",
        cols!()
    ),
    cols: cols!(),
    json_cast: "",
    get: concat!("SELECT ", cols!(), " FROM plugins WHERE plugin_id = ?"),
    list: concat!(
        "SELECT ",
        cols!(),
        " FROM plugins WHERE plugin_id > ? ORDER BY plugin_id LIMIT ?"
    ),
    replace: concat!(
        "UPDATE plugins SET manifest = ?1, status = ?2, health = ?3, enabled = ?4, disabled_reason = ?5, ",
        "registered_at = ?6, last_heartbeat = ?7, instances = ?8, next_deadline = ?9, ",
        "approved_traits = ?12, version = version + 1 ",
        "WHERE plugin_id = ?10 AND version = ?11 RETURNING ",
        cols!()
    ),
    get_many: concat!(
        "SELECT ",
        cols!(),
        " FROM plugins WHERE plugin_id IN (SELECT value FROM json_each(?1))"
    ),
    write_liveness: "UPDATE plugins SET status = j.value ->> 'status', health = j.value ->> 'health', \
                     last_heartbeat = j.value ->> 'last_heartbeat', \
                     next_deadline = j.value ->> 'next_deadline', instances = j.value ->> 'instances', \
                     version = plugins.version + 1 FROM json_each(?1) AS j \
                     WHERE plugins.plugin_id = j.value ->> 'id' AND plugins.version = j.value ->> 'version' \
                     RETURNING plugins.plugin_id",
    earliest_deadline: "SELECT next_deadline FROM plugins WHERE next_deadline IS NOT NULL \
                        ORDER BY next_deadline LIMIT 1",
    liveness_counts: "SELECT COUNT(*), COALESCE(SUM(CASE WHEN next_deadline <= ? THEN 1 ELSE 0 END), 0) \
                      FROM plugins WHERE enabled AND status IN ('registered', 'active')",
    due: concat!(
        "SELECT ",
        cols!(),
        " FROM plugins WHERE enabled AND next_deadline <= ?1 ORDER BY next_deadline LIMIT ?2"
    ),
    // `?1`/`?2`: the version is bound once and used twice.
    delete: "DELETE FROM plugins WHERE plugin_id = ?1 AND (?2 IS NULL OR version = ?2)",
    lock: concat!(
        "UPDATE plugins SET version = version WHERE plugin_id = ?1 RETURNING ",
        cols!()
    ),
    enrollment_insert: "INSERT INTO enrollments (enrollment_id, token_hash, plugin_id, created_at, \
                        expires_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    enrollment_get: concat!(
        "SELECT ",
        crate::sql::enrollment_cols!(),
        " FROM enrollments WHERE token_hash = ?1"
    ),
    enrollment_use: concat!(
        "UPDATE enrollments SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL \
         AND expires_at > ?2 RETURNING ",
        crate::sql::enrollment_cols!()
    ),
    enrollment_release: "UPDATE enrollments SET used_at = NULL WHERE token_hash = ?1 AND used_at = ?2",
    enrollment_list: concat!(
        "SELECT ",
        crate::sql::enrollment_cols!(),
        " FROM enrollments WHERE (?1 IS NULL OR plugin_id = ?1) \
         ORDER BY created_at DESC, enrollment_id LIMIT ?2"
    ),
    enrollment_cancel: concat!(
        "DELETE FROM enrollments WHERE enrollment_id = ?1 AND used_at IS NULL RETURNING ",
        crate::sql::enrollment_cols!()
    ),
    enrollment_by_id: concat!(
        "SELECT ",
        crate::sql::enrollment_cols!(),
        " FROM enrollments WHERE enrollment_id = ?1"
    ),
    enrollment_purge: "DELETE FROM enrollments WHERE used_at < ?1 OR expires_at < ?1",
    exists: "SELECT 1 FROM plugins WHERE plugin_id = ?",
    outbox_insert: "INSERT INTO lifecycle_outbox (event_type, plugin_id, token_jti, version, at) \
                    VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    claim_outbox: "UPDATE lifecycle_outbox SET at = ?2 WHERE rowid IN (SELECT rowid FROM lifecycle_outbox \
                   WHERE at <= ?1 ORDER BY at LIMIT ?3) \
                   RETURNING event_type, plugin_id, token_jti, version, at",
    ack_outbox: "DELETE FROM lifecycle_outbox WHERE event_type = ? AND plugin_id = ? \
                 AND token_jti = ? AND version = ?",
    // SQLite has no data-modifying CTEs: a transaction of two statements (in process,
    // so no round trips to save).
    insert_audited: None,
    replace_audited: None,
    delete_audited: None,
    // In-process: no socket to stall; a group's rows (at most 128) go in one statement.
    statement_bytes: usize::MAX,
    group_lanes: 1,
};

impl crate::sql::HasDb for SqlitePluginStore {
    type Db = sqlx::Sqlite;

    fn insert_audit<'t>(
        tx: &'t mut sqlx::Transaction<'_, sqlx::Sqlite>,
        row: &'t crate::sql::audit::PendingRow,
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send + 't {
        insert_pending(&mut **tx, row)
    }
}

sql_plugin_store!(SqlitePluginStore, QUERIES);
crate::sql::operators::sql_operator_store!(SqlitePluginStore, crate::sql::operators::SQLITE);
crate::sql::group::sql_group_commit!(SqlitePluginStore, QUERIES);

/// Inserts one pending entry with `exec` — a pool, a connection, or the transaction of
/// the state change it records (`&mut *tx`): the transactional append. Takes no lock
/// beyond the row it inserts.
///
/// # Errors
/// The driver's error, for the caller to map.
pub(crate) async fn insert_pending<'e, E>(
    exec: E,
    row: &crate::sql::audit::PendingRow,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_file_store_passes_the_conformance_suite() {
        let dir =
            std::env::temp_dir().join(format!("vivified-sqlite-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqlitePluginStore::open(&dir.join("conformance.db"))
            .await
            .unwrap();
        vivified_conformance::store::plugin_store_conformance(Arc::new(store.clone())).await;
        vivified_conformance::operators::operator_store_conformance(Arc::new(store.clone())).await;
        store.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // One thread: writes started together are all queued before the committing task
    // runs, so they share a group.
    #[tokio::test]
    async fn group_commit_passes_its_conformance_suite() {
        let dir =
            std::env::temp_dir().join(format!("vivified-sqlite-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("group.db");
        let a = SqlitePluginStore::open(&path).await.unwrap();
        sqlx::query(
            "CREATE TRIGGER poison BEFORE INSERT ON plugins WHEN NEW.plugin_id = 'g-poison' \
             BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
        )
        .execute(a.pool())
        .await
        .unwrap();
        let wait = Duration::from_millis(200);
        let a = a.with_group_commit(wait);
        let b = SqlitePluginStore::open(&path)
            .await
            .unwrap()
            .with_group_commit(wait);
        vivified_conformance::store::group_commit_conformance(
            Arc::new(a.clone()),
            Arc::new(b.clone()),
            "g-poison",
        )
        .await;
        a.close().await;
        b.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn sqlite_memory_store_passes_the_conformance_suite() {
        let store = SqlitePluginStore::in_memory().await.unwrap();
        vivified_conformance::store::plugin_store_conformance(Arc::new(store.clone())).await;
        vivified_conformance::operators::operator_store_conformance(Arc::new(store)).await;
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir =
            std::env::temp_dir().join(format!("vivified-sqlite-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("reopen.db");
        let store = SqlitePluginStore::open(&path).await.unwrap();
        store
            .insert(vivified_conformance::store::record("kept", "j1"))
            .await
            .unwrap();
        store.close().await;
        let again = SqlitePluginStore::open(&path).await.unwrap();
        let got = again
            .get(&PluginId::parse("kept").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.instances[0].token_jti, "j1");
        again.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_plugin_stored_before_instances_becomes_the_instance_default() {
        let dir =
            std::env::temp_dir().join(format!("vivified-sqlite-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("old.db");
        // The database as the previous version left it: migrations 1 to 8, one plugin.
        let pool = SqlitePoolOptions::new()
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true),
            )
            .await
            .unwrap();
        let mut old = migrator();
        old.migrations = std::borrow::Cow::Owned(old.migrations[..8].to_vec());
        old.run(&pool).await.unwrap();
        sqlx::query(vivified_conformance::store::PLUGIN_BEFORE_INSTANCES)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let store = SqlitePluginStore::open(&path).await.unwrap();
        let got = store
            .get(&PluginId::parse("old").unwrap())
            .await
            .unwrap()
            .unwrap();
        vivified_conformance::store::assert_migrated_to_default_instance(&got);
        // Its token keeps working.
        let at = got.last_heartbeat.unwrap() + time::Duration::seconds(1);
        store
            .record_heartbeat(&got.plugin_id, "jti-old", Health::Healthy, at, at)
            .await
            .expect("the kept token heartbeats");
        store.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
