//! The command's errors: one line each, and the exit code each one means.

use crate::client::ClientError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Talking to the core failed (usage, transport or an answer of the core).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The manifest schema embedded in the binary did not compile (a build defect).
    #[error(transparent)]
    Schema(#[from] vivified_domain::manifest::SchemaError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Writing to stdout failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// `vivified new-plugin` wrote nothing.
    #[error(transparent)]
    NewPlugin(#[from] crate::new_plugin::NewPluginError),
    /// An option's value is unusable (checked before anything is asked).
    #[error("{0}: {1}")]
    BadArgument(&'static str, &'static str),
    /// `vivified audit verify --export`: the keys or the export are unusable.
    #[error("{0}")]
    Export(String),
    /// `vivified audit verify` could not tell whether the chain is intact.
    #[error(transparent)]
    Unverified(Box<Error>),
    /// `vivified serve`: a setting is wrong or the core could not start.
    #[cfg(feature = "serve")]
    #[error(transparent)]
    Startup(#[from] vivified_server::StartupError),
    /// `vivified serve`: a setting is wrong.
    #[cfg(feature = "serve")]
    #[error(transparent)]
    Settings(#[from] vivified_server::settings::SettingsError),
    /// `vivified backup` wrote no backup.
    #[cfg(feature = "serve")]
    #[error(transparent)]
    Backup(#[from] BackupError),
}

impl Error {
    /// 2 for usage and configuration errors (the command never got to ask), else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Client(e) if e.is_usage() => 2,
            Self::Schema(_) | Self::BadArgument(..) | Self::Unverified(_) => 2,
            Self::NewPlugin(e) => e.exit_code(),
            #[cfg(feature = "serve")]
            Self::Startup(_) | Self::Settings(_) => 2,
            #[cfg(feature = "serve")]
            Self::Backup(e) => e.exit_code(),
            _ => 1,
        }
    }

    /// A closed stdout (`vivified plugins list | head -1`) is not worth a message.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Self::Output(e) => e.kind() == std::io::ErrorKind::BrokenPipe,
            Self::Unverified(e) => e.is_broken_pipe(),
            _ => false,
        }
    }
}

/// A current-thread runtime for the HTTP commands.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

#[cfg(feature = "serve")]
/// Why `vivified backup` failed: the adapter's reason, with the exit code it means.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BackupError(#[from] vivified_adapters::sqlite_backup::SqliteBackupError);

#[cfg(feature = "serve")]
impl BackupError {
    /// 2 when the command could not start (a path is wrong, the file is not a store),
    /// 1 when the copy itself failed.
    pub fn exit_code(&self) -> u8 {
        match self.0 {
            vivified_adapters::sqlite_backup::SqliteBackupError::Write { .. }
            | vivified_adapters::sqlite_backup::SqliteBackupError::Corrupt { .. } => 1,
            _ => 2,
        }
    }
}
