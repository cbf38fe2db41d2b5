//! `vivified backup --sqlite DB --out FILE`: an online-consistent copy of the SQLite
//! store, taken while the core runs on it (`VACUUM INTO` in one read transaction, from
//! `vivified_adapters::sqlite_backup`). The core image has no `sqlite3` shell; this is
//! its supported way to back up the embedded store. Postgres is backed up with
//! `pg_dump -Fc` (docs/operations.md, "Backup and restore").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use vivified_adapters::sqlite_backup::backup_sqlite;

use crate::Error;
use crate::error::runtime;

/// The dev-mode secrets file kept next to the default SQLite file.
const DEV_SECRETS: &str = "dev-secrets.json";

/// `vivified backup --sqlite DB --out FILE`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The core's SQLite file (default location `./vivified-data/vivified.db`; in the
    /// image `/var/lib/vivified/vivified.db`). It is only read.
    #[arg(long, value_name = "DB")]
    sqlite: PathBuf,
    /// The backup file to create; it must not exist.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Writes the backup and prints what it holds.
pub fn run(args: &Args) -> Result<ExitCode, Error> {
    let summary = runtime()?
        .block_on(backup_sqlite(&args.sqlite, &args.out))
        .map_err(|e| Error::Backup(e.into()))?;
    let mut out = format!(
        "backed up {} to {}: {} plugin{}, audit chain up to seq {}",
        args.sqlite.display(),
        args.out.display(),
        summary.plugins,
        if summary.plugins == 1 { "" } else { "s" },
        summary.audit_head,
    );
    if summary.audit_pending > 0 {
        out.push_str(&format!(
            " (+{} pending, sealed when a core runs on the copy)",
            summary.audit_pending
        ));
    }
    out.push_str(&format!(
        ", schema {}, {} bytes\n",
        summary.schema_version, summary.bytes
    ));
    if let Some(secrets) = dev_secrets_beside(&args.sqlite) {
        out.push_str(&format!(
            "keep {} with it: in dev mode it holds the keys of the tokens and of the audit chain\n",
            secrets.display()
        ));
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// `dev-secrets.json` in the store's directory, if there is one.
fn dev_secrets_beside(db: &Path) -> Option<PathBuf> {
    let dir = db.parent().filter(|d| !d.as_os_str().is_empty());
    let path = dir.map_or_else(|| PathBuf::from(DEV_SECRETS), |d| d.join(DEV_SECRETS));
    path.is_file().then_some(path)
}
