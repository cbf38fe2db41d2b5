//! What the SQL stores share: the row shape, its conversion to a `PluginRecord`, time
//! encoding (microseconds since the epoch, so every backend stores a time exactly) and
//! error mapping at the boundary (`is_unique_violation()` → `StoreError::Conflict`).

use time::OffsetDateTime;
use vivified_ports::{PluginId, PluginRecord, StoreError};

/// One row of `plugins`, as both backends return it.
#[derive(Debug)]
pub(crate) struct PluginRow {
    pub plugin_id: String,
    pub manifest: String,
    pub status: String,
    pub health: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub registered_at: i64,
    pub last_heartbeat: Option<i64>,
    pub token_jti: String,
    pub version: i64,
}

// Written out rather than derived: sqlx's `derive` feature would compile every
// database driver a second time into its proc macro.
impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for PluginRow
where
    &'static str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            plugin_id: row.try_get("plugin_id")?,
            manifest: row.try_get("manifest")?,
            status: row.try_get("status")?,
            health: row.try_get("health")?,
            enabled: row.try_get("enabled")?,
            disabled_reason: row.try_get("disabled_reason")?,
            registered_at: row.try_get("registered_at")?,
            last_heartbeat: row.try_get("last_heartbeat")?,
            token_jti: row.try_get("token_jti")?,
            version: row.try_get("version")?,
        })
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Unavailable(format!("corrupt plugin row: {what}").into())
}

pub(crate) fn to_micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

pub(crate) fn from_micros(us: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).map_err(|_| corrupt("time"))
}

impl TryFrom<PluginRow> for PluginRecord {
    type Error = StoreError;

    fn try_from(r: PluginRow) -> Result<Self, StoreError> {
        Ok(Self {
            plugin_id: PluginId::parse(&r.plugin_id).map_err(|_| corrupt("id"))?,
            manifest: std::sync::Arc::new(
                serde_json::from_str(&r.manifest).map_err(|_| corrupt("manifest"))?,
            ),
            status: r.status.parse().map_err(|()| corrupt("status"))?,
            health: r.health.parse().map_err(|()| corrupt("health"))?,
            enabled: r.enabled,
            disabled_reason: r.disabled_reason,
            registered_at: from_micros(r.registered_at)?,
            last_heartbeat: r.last_heartbeat.map(from_micros).transpose()?,
            token_jti: r.token_jti,
            version: u64::try_from(r.version).map_err(|_| corrupt("version"))?,
        })
    }
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

pub(crate) fn manifest_text(record: &PluginRecord) -> Result<String, StoreError> {
    serde_json::to_string(&record.manifest).map_err(|e| StoreError::Unavailable(Box::new(e)))
}

pub(crate) fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
