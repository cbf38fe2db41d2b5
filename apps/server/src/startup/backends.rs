//! The store and audit log the settings choose, opened (migrations run) on one
//! database.

use super::*;
use vivified_ports::OperatorStore;

/// The plugin store and the audit log, on one database: the audit log follows the
/// store (SQLite → `SqliteAuditLog` on the same pool, Postgres → `PostgresAuditLog`,
/// memory → `InMemoryAuditLog`).
pub struct Backends {
    /// Plugin records.
    pub store: Arc<dyn PluginStore>,
    /// Operators and their tokens (the same database).
    pub operators: Arc<dyn OperatorStore>,
    /// The audit chain's entries.
    pub audit: Arc<dyn AuditLog>,
}

/// Entries the in-memory audit log keeps (the newest; older sealed ones are dropped).
pub const MEMORY_AUDIT_CAPACITY: usize = 10_000;

/// Opens the store the settings choose (running its migrations) and its audit log.
///
/// # Errors
/// [`StartupError::Store`] naming the setting, never the URL.
pub async fn open_backends(settings: &Settings) -> Result<Backends, StartupError> {
    let fail = |kind: &'static str, e: vivified_ports::StoreError| StartupError::Store {
        setting: settings.store_source.clone(),
        kind,
        reason: std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string),
    };
    Ok(match &settings.store {
        StoreSetting::Memory => {
            let store = Arc::new(InMemoryPluginStore::new());
            Backends {
                store: store.clone(),
                operators: store,
                audit: Arc::new(InMemoryAuditLog::new(MEMORY_AUDIT_CAPACITY)),
            }
        }
        StoreSetting::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                crate::dev_secrets::create_private_dir(dir).map_err(|e| StartupError::Store {
                    setting: settings.store_source.clone(),
                    kind: "sqlite",
                    reason: format!("cannot create {}: {e}", dir.display()),
                })?;
            }
            let store = SqlitePluginStore::open(path)
                .await
                .map_err(|e| fail("sqlite", e))?
                .with_group_commit(settings.group_commit_wait);
            let store = Arc::new(store);
            Backends {
                audit: Arc::new(SqliteAuditLog::new(&store)),
                store: store.clone(),
                operators: store,
            }
        }
        StoreSetting::Postgres(url) => {
            let config = PostgresConfig {
                max_connections: settings.db_max_connections,
                ..PostgresConfig::default()
            };
            let store = PostgresPluginStore::connect(url.expose(), &config)
                .await
                .map_err(|e| fail("postgres", e))?
                .with_group_commit(settings.group_commit_wait);
            let store = Arc::new(store);
            Backends {
                audit: Arc::new(PostgresAuditLog::new(&store)),
                store: store.clone(),
                operators: store,
            }
        }
    })
}

/// Opens the store the settings choose (running its migrations).
///
/// # Errors
/// [`StartupError::Store`] naming the setting, never the URL.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn PluginStore>, StartupError> {
    open_backends(settings).await.map(|b| b.store)
}
