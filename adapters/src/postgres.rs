//! `PostgresPluginStore`: for production, and for several core replicas on one
//! database. Every write is one conditional statement; uniqueness is the primary key's.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, SqlSafeStr};
use time::OffsetDateTime;
use vivified_ports::{Health, PluginId, PluginRecord, PluginStore, StoreError};

use crate::sql::{PluginRow, limit_i64, manifest_text, map_err, to_micros, version_i64};

macro_rules! cols {
    () => {
        "plugin_id, manifest::text AS manifest, status, health, enabled, disabled_reason, registered_at, last_heartbeat, token_jti, version"
    };
}

/// The embedded migrations of the Postgres store, in order. Running them takes a
/// Postgres advisory lock, so replicas starting together migrate once.
pub fn migrator() -> Migrator {
    Migrator::with_migrations(vec![Migration::new(
        1,
        "plugins".into(),
        MigrationType::Simple,
        include_str!("../migrations/postgres/0001_plugins.sql").into_sql_str(),
        false,
    )])
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
}

impl PostgresPluginStore {
    /// Connects to `url` (`postgres://…`), and runs the migrations.
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
        Ok(Self { pool })
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn missed(&self, id: &PluginId) -> StoreError {
        let row: Result<Option<(i32,)>, _> =
            sqlx::query_as("SELECT 1 FROM plugins WHERE plugin_id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await;
        match row {
            Ok(Some(_)) => StoreError::PreconditionFailed,
            Ok(None) => StoreError::NotFound,
            Err(e) => map_err(e),
        }
    }
}

#[async_trait]
impl PluginStore for PostgresPluginStore {
    async fn insert(&self, record: PluginRecord) -> Result<PluginRecord, StoreError> {
        let row: PluginRow = sqlx::query_as(concat!(
            "INSERT INTO plugins (plugin_id, manifest, status, health, enabled, disabled_reason, ",
            "registered_at, last_heartbeat, token_jti, version) ",
            "VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7, $8, $9, 1) RETURNING ",
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
            " FROM plugins WHERE plugin_id = $1"
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
            " FROM plugins WHERE plugin_id > $1 ORDER BY plugin_id LIMIT $2"
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
            "UPDATE plugins SET manifest = $1::jsonb, status = $2, health = $3, enabled = $4, disabled_reason = $5, ",
            "registered_at = $6, last_heartbeat = $7, token_jti = $8, version = version + 1 ",
            "WHERE plugin_id = $9 AND version = $10 RETURNING ",
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
            "UPDATE plugins SET last_heartbeat = $1, health = $2, status = 'active', version = version + 1 ",
            "WHERE plugin_id = $3 AND token_jti = $4 AND enabled RETURNING ",
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
        let done = sqlx::query(
            "DELETE FROM plugins WHERE plugin_id = $1 AND ($2::text IS NULL OR token_jti = $2)",
        )
        .bind(id.as_str())
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
