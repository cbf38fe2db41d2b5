//! An online-consistent copy of the SQLite store, taken while the core runs.
//!
//! [`backup_sqlite`] opens the store read-only and runs `VACUUM INTO` on it: one read
//! transaction, so the copy is the database as of one instant (WAL mode lets the core
//! go on writing meanwhile), and it is a compact, self-contained file (rollback
//! journal, no `-wal`/`-shm` beside it). The copy is written under a temporary name
//! next to the target, checked (`PRAGMA quick_check`, the Vivified tables present),
//! made private (mode 0600), flushed to disk (SQLite does not `fsync` a `VACUUM INTO`
//! file) and only then linked to its name, which must not exist: a backup never
//! overwrites a file, and a file at the target name is always a complete, checked copy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

/// Why a backup was not written. Each message is one line and names the file.
#[derive(Debug, thiserror::Error)]
pub enum SqliteBackupError {
    /// The store file does not exist.
    #[error("{}: no such file", .0.display())]
    SourceMissing(PathBuf),
    /// The target exists already.
    #[error("{}: already exists; a backup never overwrites a file", .0.display())]
    OutputExists(PathBuf),
    /// The target's directory does not exist.
    #[error("{}: no such directory", .0.display())]
    OutputDirMissing(PathBuf),
    /// A path SQLite cannot be given (not UTF-8).
    #[error("{}: the path is not valid UTF-8", .0.display())]
    NotUtf8(PathBuf),
    /// The file is an SQLite database but not a Vivified store.
    #[error("{}: not a Vivified store ({reason})", path.display())]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// What is missing.
        reason: &'static str,
    },
    /// The store could not be opened or read (not an SQLite file, no permission, busy).
    #[error("cannot read {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The driver's reason, on one line.
        reason: String,
    },
    /// The copy could not be written.
    #[error("cannot write {}: {reason}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The reason, on one line.
        reason: String,
    },
    /// The copy failed its check (it was removed).
    #[error("the copy of {} failed its integrity check: {reason}", path.display())]
    Corrupt {
        /// The store that was copied.
        path: PathBuf,
        /// SQLite's first complaint.
        reason: String,
    },
}

/// What a backup holds, read from the copy itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteBackup {
    /// Size of the backup file in bytes.
    pub bytes: u64,
    /// The newest migration applied to the store (the schema version).
    pub schema_version: i64,
    /// Plugin records.
    pub plugins: u64,
    /// The last sealed entry of the audit chain (0: none).
    pub audit_head: u64,
    /// Audit entries appended but not sealed yet (the core seals them once it runs on
    /// the restored file).
    pub audit_pending: u64,
}

/// Copies the SQLite store at `source` into the new file `out` while the core may be
/// running on it, and describes the copy.
///
/// # Errors
/// [`SqliteBackupError`]: `out` exists or its directory does not, `source` is missing,
/// unreadable or not a Vivified store, or the copy could not be written or failed its
/// check. Nothing is left at `out` on any error.
pub async fn backup_sqlite(source: &Path, out: &Path) -> Result<SqliteBackup, SqliteBackupError> {
    if out.symlink_metadata().is_ok() {
        return Err(SqliteBackupError::OutputExists(out.to_owned()));
    }
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(SqliteBackupError::OutputDirMissing(dir));
    }
    if !source.is_file() {
        return Err(SqliteBackupError::SourceMissing(source.to_owned()));
    }
    let name = out
        .file_name()
        .ok_or_else(|| SqliteBackupError::Write {
            path: out.to_owned(),
            reason: "not a file name".into(),
        })?
        .to_string_lossy()
        .into_owned();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let partial = Partial(dir.join(format!(".{name}.partial-{}-{nanos}", std::process::id())));
    let partial_str = partial
        .0
        .to_str()
        .ok_or_else(|| SqliteBackupError::NotUtf8(out.to_owned()))?
        .to_owned();

    let write_err = |e: std::io::Error| SqliteBackupError::Write {
        path: out.to_owned(),
        reason: e.to_string(),
    };
    // The copy is owner-only from its first byte: the file is created empty with mode
    // 0600 before `VACUUM INTO` fills it (SQLite accepts an existing empty file), so no
    // other local user can open it while it is written.
    {
        let mut create = std::fs::OpenOptions::new();
        create.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
        create.open(&partial.0).map_err(write_err)?;
    }
    copy(source, &partial_str).await?;
    let summary = check(source, &partial.0).await?;
    // Owner only, like the store's directory: the records and the audit trail.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&partial.0, std::fs::Permissions::from_mode(0o600))
            .map_err(write_err)?;
    }
    std::fs::File::open(&partial.0)
        .and_then(|f| f.sync_all())
        .map_err(write_err)?;
    link_new(&partial.0, out)?;
    // The name is durable once the directory is (best effort: not every platform can
    // open a directory).
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    drop(partial);
    let bytes = std::fs::metadata(out).map_err(write_err)?.len();
    Ok(SqliteBackup { bytes, ..summary })
}

/// A temporary file removed when dropped (a no-op once it was linked and removed).
struct Partial(PathBuf);

impl Drop for Partial {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One line of a driver error.
fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

async fn connect(options: SqliteConnectOptions) -> Result<SqlitePool, sqlx::Error> {
    SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
}

/// `VACUUM INTO partial` on a read-only connection to `source`.
async fn copy(source: &Path, partial: &str) -> Result<(), SqliteBackupError> {
    let read_err = |e: sqlx::Error| SqliteBackupError::Read {
        path: source.to_owned(),
        reason: one_line(e),
    };
    let options = SqliteConnectOptions::new()
        .filename(source)
        .read_only(true)
        .create_if_missing(false)
        // The core's writers hold the lock only briefly.
        .busy_timeout(Duration::from_secs(10));
    let pool = connect(options).await.map_err(read_err)?;
    let result = async {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name IN ('plugins', '_sqlx_migrations')",
        )
        .fetch_all(&pool)
        .await
        .map_err(read_err)?;
        if !tables.iter().any(|t| t == "plugins") {
            return Err(SqliteBackupError::NotAStore {
                path: source.to_owned(),
                reason: "no plugins table",
            });
        }
        if !tables.iter().any(|t| t == "_sqlx_migrations") {
            return Err(SqliteBackupError::NotAStore {
                path: source.to_owned(),
                reason: "no migrations table",
            });
        }
        sqlx::query("VACUUM INTO ?1")
            .bind(partial)
            .execute(&pool)
            .await
            .map_err(|e| SqliteBackupError::Write {
                path: PathBuf::from(partial),
                reason: one_line(e),
            })?;
        Ok(())
    }
    .await;
    pool.close().await;
    result
}

/// Checks the copy and reads its summary (the size is filled in later).
async fn check(source: &Path, partial: &Path) -> Result<SqliteBackup, SqliteBackupError> {
    let err = |e: sqlx::Error| SqliteBackupError::Corrupt {
        path: source.to_owned(),
        reason: one_line(e),
    };
    let options = SqliteConnectOptions::new()
        .filename(partial)
        .create_if_missing(false)
        // A single self-contained file, whatever the source's mode.
        .journal_mode(SqliteJournalMode::Delete);
    let pool = connect(options).await.map_err(err)?;
    let result = async {
        let verdict: Vec<String> = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_all(&pool)
            .await
            .map_err(err)?;
        if verdict.as_slice() != ["ok"] {
            return Err(SqliteBackupError::Corrupt {
                path: source.to_owned(),
                reason: verdict.into_iter().next().unwrap_or_default(),
            });
        }
        let schema_version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
        )
        .fetch_one(&pool)
        .await
        .map_err(err)?;
        let plugins: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM plugins")
            .fetch_one(&pool)
            .await
            .map_err(err)?;
        // A store from before the audit chain (migration 4) has no audit tables.
        let (audit_head, audit_pending) = if schema_version >= 4 {
            let row = sqlx::query(
                "SELECT (SELECT COALESCE(MAX(seq), 0) FROM audit_entries), \
                 (SELECT COUNT(*) FROM audit_pending)",
            )
            .fetch_one(&pool)
            .await
            .map_err(err)?;
            (
                row.try_get::<i64, _>(0).map_err(err)?,
                row.try_get(1).map_err(err)?,
            )
        } else {
            (0, 0)
        };
        Ok(SqliteBackup {
            bytes: 0,
            schema_version,
            plugins: u64::try_from(plugins).unwrap_or(0),
            audit_head: u64::try_from(audit_head).unwrap_or(0),
            audit_pending: u64::try_from(audit_pending).unwrap_or(0),
        })
    }
    .await;
    pool.close().await;
    result
}

/// Gives `partial` the name `out`, never replacing a file that appeared meanwhile: a
/// hard link fails if `out` exists. Where hard links are not supported, a rename after
/// a last check (a file created in between would be replaced).
fn link_new(partial: &Path, out: &Path) -> Result<(), SqliteBackupError> {
    match std::fs::hard_link(partial, out) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(SqliteBackupError::OutputExists(out.to_owned()))
        }
        Err(_) if out.symlink_metadata().is_err() => {
            std::fs::rename(partial, out).map_err(|e| SqliteBackupError::Write {
                path: out.to_owned(),
                reason: e.to_string(),
            })
        }
        Err(_) => Err(SqliteBackupError::OutputExists(out.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use vivified_ports::PluginStore;

    use super::*;
    use crate::sqlite::SqlitePluginStore;

    struct Dir(PathBuf);

    impl Dir {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!(
                "vivified-sqlite-backup-{}",
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Only `names` are in the directory (no partial file left behind).
    fn assert_only(dir: &Path, names: &[&str]) {
        let mut found: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        found.sort();
        let mut want: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        assert_eq!(found, want);
    }

    #[tokio::test]
    async fn copies_an_open_store_and_describes_the_copy() {
        let dir = Dir::new();
        let db = dir.0.join("vivified.db");
        let store = SqlitePluginStore::open(&db).await.unwrap();
        for (id, jti) in [("alpha", "j1"), ("beta", "j2")] {
            store
                .insert(vivified_conformance::store::record(id, jti))
                .await
                .unwrap();
        }
        let backups = dir.0.join("backups");
        std::fs::create_dir(&backups).unwrap();
        let out = backups.join("copy.db");

        // The store stays open (and writable) during the copy.
        let summary = backup_sqlite(&db, &out).await.unwrap();
        store
            .insert(vivified_conformance::store::record("gamma", "j3"))
            .await
            .unwrap();

        assert_eq!(summary.plugins, 2);
        let newest = crate::sqlite::migrator()
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap();
        assert_eq!(summary.schema_version, newest);
        assert_eq!(summary.audit_head, 0);
        assert_eq!(summary.bytes, std::fs::metadata(&out).unwrap().len());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&out).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        assert_only(&backups, &["copy.db"]);

        let copy = SqlitePluginStore::open(&out).await.unwrap();
        let ids: Vec<String> = copy
            .list(None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.plugin_id.as_str().to_owned())
            .collect();
        assert_eq!(ids, ["alpha", "beta"]);
        copy.close().await;

        // A closed store (its -wal and -shm gone with the last connection) too.
        store.close().await;
        let again = backups.join("closed.db");
        let summary = backup_sqlite(&db, &again).await.unwrap();
        assert_eq!(summary.plugins, 3);
        assert_only(&backups, &["copy.db", "closed.db"]);
    }

    #[tokio::test]
    async fn never_overwrites_and_names_what_is_wrong() {
        let dir = Dir::new();
        let db = dir.0.join("vivified.db");
        let store = SqlitePluginStore::open(&db).await.unwrap();

        let existing = dir.0.join("existing.db");
        std::fs::write(&existing, b"keep me").unwrap();
        let e = backup_sqlite(&db, &existing).await.unwrap_err();
        assert!(matches!(e, SqliteBackupError::OutputExists(_)), "{e}");
        assert!(
            e.to_string()
                .ends_with("already exists; a backup never overwrites a file")
        );
        assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");

        let e = backup_sqlite(&db, &dir.0.join("nope/copy.db"))
            .await
            .unwrap_err();
        assert!(matches!(e, SqliteBackupError::OutputDirMissing(_)), "{e}");

        let e = backup_sqlite(&dir.0.join("missing.db"), &dir.0.join("a.db"))
            .await
            .unwrap_err();
        assert!(matches!(e, SqliteBackupError::SourceMissing(_)), "{e}");

        let e = backup_sqlite(&existing, &dir.0.join("b.db"))
            .await
            .unwrap_err();
        assert!(matches!(e, SqliteBackupError::Read { .. }), "{e}");
        assert!(!e.to_string().contains('\n'), "{e}");

        let other = dir.0.join("other.db");
        let pool = connect(
            SqliteConnectOptions::new()
                .filename(&other)
                .create_if_missing(true),
        )
        .await
        .unwrap();
        sqlx::query("CREATE TABLE t (x)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let e = backup_sqlite(&other, &dir.0.join("c.db"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                SqliteBackupError::NotAStore {
                    reason: "no plugins table",
                    ..
                }
            ),
            "{e}"
        );

        store.close().await;
        assert!(!dir.0.join("a.db").exists() && !dir.0.join("b.db").exists());
        assert!(!dir.0.join("c.db").exists());
        let leftovers: Vec<_> = std::fs::read_dir(&dir.0)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                name.contains(".partial-").then_some(name)
            })
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
