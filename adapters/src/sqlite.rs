//! `SqlitePluginStore`: the embedded default. One file, WAL journal, `synchronous=FULL`
//! so that an acknowledged write survives a crash of the process or the machine.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlSafeStr, SqlitePool};
use time::OffsetDateTime;
use vivified_ports::{Health, PluginId, PluginRecord, PluginStore, StoreError};

use crate::sql::{PluginRow, limit_i64, manifest_text, map_err, to_micros, version_i64};

macro_rules! cols {
    () => {
        "plugin_id, manifest, status, health, enabled, disabled_reason, registered_at, last_heartbeat, token_jti, version"
    };
}

/// The embedded migrations of the SQLite store, in order.
pub fn migrator() -> Migrator {
    Migrator::with_migrations(vec![Migration::new(
        1,
        "plugins".into(),
        MigrationType::Simple,
        include_str!("../migrations/sqlite/0001_plugins.sql").into_sql_str(),
        false,
    )])
}

/// A [`PluginStore`] in one SQLite file.
#[derive(Clone, Debug)]
pub struct SqlitePluginStore {
    pool: SqlitePool,
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
        Self::with_options(options).await
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
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(map_err)?;
        Self::from_pool(pool).await
    }

    async fn from_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        migrator()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        Ok(Self { pool })
    }

    /// The connection pool (for tests and tools that inspect the file).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn exists(&self, id: &PluginId) -> Result<bool, StoreError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM plugins WHERE plugin_id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(row.is_some())
    }

    async fn missed(&self, id: &PluginId) -> StoreError {
        match self.exists(id).await {
            Ok(true) => StoreError::PreconditionFailed,
            Ok(false) => StoreError::NotFound,
            Err(e) => e,
        }
    }
}

#[async_trait]
impl PluginStore for SqlitePluginStore {
    async fn insert(&self, record: PluginRecord) -> Result<PluginRecord, StoreError> {
        let row: PluginRow = sqlx::query_as(concat!(
            "INSERT INTO plugins (",
            cols!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1) RETURNING ",
            cols!()
        ))
        .bind(record.plugin_id.as_str())
        .bind(manifest_text(&record)?)
        .bind(record.status.as_str())
        .bind(record.health.as_str())
        .bind(record.enabled)
        .bind(record.disabled_reason.as_deref())
        .bind(to_micros(record.registered_at))
        .bind(record.last_heartbeat.map(to_micros))
        .bind(&record.token_jti)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        row.try_into()
    }

    async fn get(&self, id: &PluginId) -> Result<Option<PluginRecord>, StoreError> {
        let row: Option<PluginRow> = sqlx::query_as(concat!(
            "SELECT ",
            cols!(),
            " FROM plugins WHERE plugin_id = ?"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.map(PluginRecord::try_from).transpose()
    }

    async fn list(
        &self,
        after: Option<PluginId>,
        limit: usize,
    ) -> Result<Vec<PluginRecord>, StoreError> {
        let rows: Vec<PluginRow> = sqlx::query_as(concat!(
            "SELECT ",
            cols!(),
            " FROM plugins WHERE plugin_id > ? ORDER BY plugin_id LIMIT ?"
        ))
        .bind(after.as_ref().map_or("", PluginId::as_str))
        .bind(limit_i64(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.into_iter().map(PluginRecord::try_from).collect()
    }

    async fn replace(
        &self,
        record: PluginRecord,
        expected_version: u64,
    ) -> Result<PluginRecord, StoreError> {
        let row: Option<PluginRow> = sqlx::query_as(concat!(
            "UPDATE plugins SET manifest = ?, status = ?, health = ?, enabled = ?, disabled_reason = ?, ",
            "registered_at = ?, last_heartbeat = ?, token_jti = ?, version = version + 1 ",
            "WHERE plugin_id = ? AND version = ? RETURNING ",
            cols!()
        ))
        .bind(manifest_text(&record)?)
        .bind(record.status.as_str())
        .bind(record.health.as_str())
        .bind(record.enabled)
        .bind(record.disabled_reason.as_deref())
        .bind(to_micros(record.registered_at))
        .bind(record.last_heartbeat.map(to_micros))
        .bind(&record.token_jti)
        .bind(record.plugin_id.as_str())
        .bind(version_i64(expected_version)?)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
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
    ) -> Result<PluginRecord, StoreError> {
        let row: Option<PluginRow> = sqlx::query_as(concat!(
            "UPDATE plugins SET last_heartbeat = ?, health = ?, status = 'active', version = version + 1 ",
            "WHERE plugin_id = ? AND token_jti = ? AND enabled RETURNING ",
            cols!()
        ))
        .bind(to_micros(at))
        .bind(health.as_str())
        .bind(id.as_str())
        .bind(token_jti)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        match row {
            Some(row) => row.try_into(),
            None => Err(self.missed(id).await),
        }
    }

    async fn delete(&self, id: &PluginId, expected_jti: Option<String>) -> Result<(), StoreError> {
        let done =
            sqlx::query("DELETE FROM plugins WHERE plugin_id = ? AND (? IS NULL OR token_jti = ?)")
                .bind(id.as_str())
                .bind(expected_jti.as_deref())
                .bind(expected_jti.as_deref())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(self.missed(id).await)
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_err)
            .map(|_| ())
    }
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
        vivified_ports::testing::plugin_store_conformance(Arc::new(store.clone())).await;
        store.pool().close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn sqlite_memory_store_passes_the_conformance_suite() {
        let store = SqlitePluginStore::in_memory().await.unwrap();
        vivified_ports::testing::plugin_store_conformance(Arc::new(store)).await;
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir =
            std::env::temp_dir().join(format!("vivified-sqlite-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("reopen.db");
        let store = SqlitePluginStore::open(&path).await.unwrap();
        store
            .insert(vivified_ports::testing::record("kept", "j1"))
            .await
            .unwrap();
        store.pool().close().await;
        let again = SqlitePluginStore::open(&path).await.unwrap();
        let got = again
            .get(&PluginId::parse("kept").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.token_jti, "j1");
        again.pool().close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
