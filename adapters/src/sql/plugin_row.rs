//! Rows of the `plugins` table, shared by both dialects: the columns, the `instances`
//! JSON column, and their conversion to a `PluginRecord`.

use serde::{Deserialize, Serialize};
use vivified_ports::{
    InstanceId, InstanceRecord, PluginId, PluginRecord, StoreError, StoredManifest,
};

use super::{corrupt, from_micros, to_micros};

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
    pub next_deadline: Option<i64>,
    pub version: i64,
    pub approved_traits: Option<String>,
    pub instances: Option<String>,
}

/// One instance as the `instances` column keeps it (a JSON array of these): times in
/// microseconds since the epoch, like the columns, so a migration can write them.
#[derive(Serialize, Deserialize)]
struct StoredInstance {
    instance_id: String,
    token_jti: String,
    token_issued_at: Option<i64>,
    registered_at: i64,
    status: String,
    health: String,
    last_heartbeat: Option<i64>,
    next_deadline: Option<i64>,
}

/// The `instances` column of a record.
pub(crate) fn instances_text(record: &PluginRecord) -> String {
    let stored: Vec<StoredInstance> = record
        .instances
        .iter()
        .map(|i| StoredInstance {
            instance_id: i.instance_id.to_string(),
            token_jti: i.token_jti.clone(),
            token_issued_at: i.token_issued_at.map(to_micros),
            registered_at: to_micros(i.registered_at),
            status: i.status.as_str().to_owned(),
            health: i.health.as_str().to_owned(),
            last_heartbeat: i.last_heartbeat.map(to_micros),
            next_deadline: i.next_deadline.map(to_micros),
        })
        .collect();
    // Serialising strings and integers cannot fail.
    serde_json::to_string(&stored).unwrap_or_else(|_| "[]".to_owned())
}

fn instances_of(text: Option<&str>) -> Result<Vec<InstanceRecord>, StoreError> {
    let stored: Vec<StoredInstance> =
        serde_json::from_str(text.ok_or_else(|| corrupt("instances"))?)
            .map_err(|_| corrupt("instances"))?;
    stored
        .into_iter()
        .map(|i| {
            Ok(InstanceRecord {
                instance_id: InstanceId::parse(&i.instance_id)
                    .map_err(|_| corrupt("instance id"))?,
                token_jti: i.token_jti,
                token_issued_at: i.token_issued_at.map(from_micros).transpose()?,
                registered_at: from_micros(i.registered_at)?,
                status: i.status.parse().map_err(|()| corrupt("instance status"))?,
                health: i.health.parse().map_err(|()| corrupt("instance health"))?,
                last_heartbeat: i.last_heartbeat.map(from_micros).transpose()?,
                next_deadline: i.next_deadline.map(from_micros).transpose()?,
            })
        })
        .collect()
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
            next_deadline: row.try_get("next_deadline")?,
            version: row.try_get("version")?,
            approved_traits: row.try_get("approved_traits")?,
            instances: row.try_get("instances")?,
        })
    }
}

impl TryFrom<PluginRow> for PluginRecord {
    type Error = StoreError;

    fn try_from(r: PluginRow) -> Result<Self, StoreError> {
        Ok(Self {
            plugin_id: PluginId::parse(&r.plugin_id).map_err(|_| corrupt("id"))?,
            manifest: StoredManifest::from_json(&r.manifest).map_err(|_| corrupt("manifest"))?,
            status: r.status.parse().map_err(|()| corrupt("status"))?,
            health: r.health.parse().map_err(|()| corrupt("health"))?,
            enabled: r.enabled,
            disabled_reason: r.disabled_reason,
            registered_at: from_micros(r.registered_at)?,
            last_heartbeat: r.last_heartbeat.map(from_micros).transpose()?,
            instances: instances_of(r.instances.as_deref())?,
            approved_traits: r
                .approved_traits
                .map(|t| serde_json::from_str(&t).map_err(|_| corrupt("approved traits")))
                .transpose()?,
            next_deadline: r.next_deadline.map(from_micros).transpose()?,
            version: u64::try_from(r.version).map_err(|_| corrupt("version"))?,
        })
    }
}
