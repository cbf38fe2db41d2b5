//! Dev-mode secrets: generated when not configured, and kept in the data directory
//! (`dev-secrets.json`, mode 0600) when the store is persistent, so that a restarted
//! dev core accepts the tokens it issued before, keeps its admin token, and goes on
//! sealing its audit chain with the same key.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vivified_ports::Secret;

/// File name inside the data directory.
pub const FILE: &str = "dev-secrets.json";

#[derive(Default, Serialize, Deserialize)]
struct Stored {
    admin_token: Option<String>,
    jwt_secret: Option<String>,
    /// Absent from files written before the audit chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audit_key: Option<String>,
}

/// The dev secrets in force and which of them this start generated.
#[derive(Clone, Debug, Default)]
pub struct DevSecrets {
    /// The admin token.
    pub admin_token: Option<Secret>,
    /// The JWT secret.
    pub jwt_secret: Option<Secret>,
    /// The HMAC key of the audit chain.
    pub audit_key: Option<Secret>,
    /// The admin token was generated at this start (show it once).
    pub generated_admin_token: bool,
    /// The JWT secret was generated at this start.
    pub generated_jwt_secret: bool,
    /// The audit key was generated at this start.
    pub generated_audit_key: bool,
    /// The admin token came from the secrets file (generated at an earlier start).
    pub kept_admin_token: bool,
    /// Where they are kept, if anywhere.
    pub path: Option<PathBuf>,
}

/// Errors reading or writing the secrets file.
#[derive(Debug, thiserror::Error)]
pub enum DevSecretsError {
    /// The file or directory cannot be read or written.
    #[error("VIVIFIED_DATA_DIR: cannot use {path}: {reason}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No randomness.
    #[error("cannot generate a secret: {0}")]
    Random(String),
}

/// A fresh random secret: `bytes` random bytes, hex-encoded.
///
/// # Errors
/// [`DevSecretsError::Random`] if the OS has no randomness to give.
pub fn random_secret(bytes: usize) -> Result<Secret, DevSecretsError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| DevSecretsError::Random(e.to_string()))?;
    Ok(Secret::new(hex::encode(buf)))
}

/// Fills in what `admin_token`, `jwt_secret` and `audit_key` lack: from `data_dir` if
/// given and the file holds them, else freshly generated (and written there).
///
/// # Errors
/// [`DevSecretsError`] if the file cannot be read or written.
pub fn resolve(
    admin_token: Option<Secret>,
    jwt_secret: Option<Secret>,
    audit_key: Option<Secret>,
    data_dir: Option<&Path>,
) -> Result<DevSecrets, DevSecretsError> {
    let path = data_dir.map(|d| d.join(FILE));
    let mut stored = match &path {
        Some(p) => read(p)?,
        None => Stored::default(),
    };
    let mut out = DevSecrets {
        path: path.clone(),
        ..DevSecrets::default()
    };
    let mut dirty = false;
    out.admin_token = match admin_token {
        Some(t) => Some(t),
        None => match stored.admin_token.clone() {
            Some(t) => {
                out.kept_admin_token = true;
                Some(Secret::new(t))
            }
            None => {
                let t = random_secret(24)?;
                stored.admin_token = Some(t.expose().to_owned());
                out.generated_admin_token = true;
                dirty = true;
                Some(t)
            }
        },
    };
    out.jwt_secret = match jwt_secret {
        Some(s) => Some(s),
        None => match stored.jwt_secret.clone() {
            Some(s) => Some(Secret::new(s)),
            None => {
                let s = random_secret(32)?;
                stored.jwt_secret = Some(s.expose().to_owned());
                out.generated_jwt_secret = true;
                dirty = true;
                Some(s)
            }
        },
    };
    out.audit_key = match audit_key {
        Some(k) => Some(k),
        None => match stored.audit_key.clone() {
            Some(k) => Some(Secret::new(k)),
            None => {
                let k = random_secret(32)?;
                stored.audit_key = Some(k.expose().to_owned());
                out.generated_audit_key = true;
                dirty = true;
                Some(k)
            }
        },
    };
    if dirty && let Some(p) = &path {
        write(p, &stored)?;
    }
    Ok(out)
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> DevSecretsError {
    DevSecretsError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

fn read(path: &Path) -> Result<Stored, DevSecretsError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| io_err(path, format!("not a secrets file: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Stored::default()),
        Err(e) => Err(io_err(path, e)),
    }
}

/// Writes atomically (temp file + rename), readable by the owner only.
fn write(path: &Path, stored: &Stored) -> Result<(), DevSecretsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir).map_err(|e| io_err(dir, e))?;
    let tmp = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(|e| io_err(&tmp, e))?;
    let bytes = serde_json::to_vec_pretty(stored).map_err(|e| io_err(&tmp, e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

/// Creates the data directory (mode 0700 on Unix) if it is missing.
///
/// # Errors
/// The I/O error.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused() {
        let dir = std::env::temp_dir().join(format!(
            "vivified-dev-secrets-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let first = resolve(None, None, None, Some(&dir)).unwrap();
        assert!(
            first.generated_admin_token && first.generated_jwt_secret && first.generated_audit_key
        );
        let second = resolve(None, None, None, Some(&dir)).unwrap();
        assert!(
            !second.generated_admin_token
                && !second.generated_jwt_secret
                && !second.generated_audit_key
        );
        assert_eq!(first.admin_token, second.admin_token);
        assert_eq!(first.jwt_secret, second.jwt_secret);
        assert_eq!(first.audit_key, second.audit_key);
        assert!(
            first.audit_key.unwrap().expose().len() >= 32,
            "long enough for the chain"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let given = resolve(Some(Secret::new("given")), None, None, Some(&dir)).unwrap();
        assert_eq!(
            given.admin_token.unwrap().expose(),
            "given",
            "configured values win"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let ephemeral = resolve(None, None, None, None).unwrap();
        assert!(ephemeral.generated_admin_token && ephemeral.path.is_none());
        assert!(
            ephemeral.generated_audit_key,
            "generated per start without a file"
        );
    }

    /// A secrets file from before the audit chain gains an audit key and keeps the rest.
    #[test]
    fn an_older_file_gains_an_audit_key() {
        let dir = std::env::temp_dir().join(format!(
            "vivified-dev-secrets-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(FILE),
            r#"{"admin_token": "old-admin", "jwt_secret": "old-jwt"}"#,
        )
        .unwrap();
        let got = resolve(None, None, None, Some(&dir)).unwrap();
        assert_eq!(got.admin_token.unwrap().expose(), "old-admin");
        assert_eq!(got.jwt_secret.unwrap().expose(), "old-jwt");
        assert!(got.generated_audit_key && !got.generated_admin_token);
        let again = resolve(None, None, None, Some(&dir)).unwrap();
        assert_eq!(again.audit_key, got.audit_key, "kept");
        let given = resolve(None, None, Some(Secret::new("k".repeat(32))), Some(&dir)).unwrap();
        assert_eq!(
            given.audit_key.unwrap().expose(),
            "k".repeat(32),
            "configured wins"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
