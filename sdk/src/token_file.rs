//! Keeps the plugin's token on disk between restarts: a small JSON file
//! (`{"plugin_id": …, "instance_id": …, "token": …}`), written atomically (temp file,
//! fsync, rename) with mode 0600, in a directory created with mode 0700 when missing.
//! The instance id outlives a dead token (the file then keeps an empty token).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The token file cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[error("token file {}: {reason}", .path.display())]
pub struct TokenFileError {
    /// The file.
    pub path: PathBuf,
    /// Why (an I/O or format error; never the token).
    pub reason: String,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    plugin_id: String,
    /// Absent in files written before instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance_id: Option<String>,
    token: String,
}

/// What a token file keeps for a plugin.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    /// Its token, if it has a live one.
    pub(crate) token: Option<Secret>,
    /// Its instance id, if one was kept.
    pub(crate) instance_id: Option<String>,
}

/// A token file at a path.
#[derive(Clone, Debug)]
pub(crate) struct TokenFile {
    path: PathBuf,
}

impl TokenFile {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, reason: impl ToString) -> TokenFileError {
        TokenFileError {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    /// The token kept for `plugin_id`; `Ok(None)` when there is no file, it belongs to
    /// another plugin id, or its token is dead.
    #[cfg(test)]
    pub(crate) fn load(&self, plugin_id: &str) -> Result<Option<Secret>, TokenFileError> {
        self.load_kept(plugin_id).map(|k| k.token)
    }

    /// What is kept for `plugin_id`: nothing when there is no file or it belongs to
    /// another plugin id.
    pub(crate) fn load_kept(&self, plugin_id: &str) -> Result<Kept, TokenFileError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Kept::default()),
            Err(e) => return Err(self.err(e)),
        };
        // The parse error would quote the content: report only its position.
        let on_disk: OnDisk = serde_json::from_slice(&bytes).map_err(|e| {
            self.err(format!(
                "not a token file (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if on_disk.plugin_id != plugin_id {
            return Ok(Kept::default());
        }
        Ok(Kept {
            token: (!on_disk.token.is_empty()).then(|| Secret::new(on_disk.token)),
            instance_id: on_disk
                .instance_id
                .filter(|i| crate::config::is_instance_id(i)),
        })
    }

    /// Replaces the file with `token` for `plugin_id`.
    #[cfg(test)]
    pub(crate) fn save(&self, plugin_id: &str, token: &Secret) -> Result<(), TokenFileError> {
        self.save_kept(plugin_id, None, Some(token))
    }

    /// Replaces the file with `token` (none: a dead one) and `instance_id` for
    /// `plugin_id`.
    pub(crate) fn save_kept(
        &self,
        plugin_id: &str,
        instance_id: Option<&str>,
        token: Option<&Secret>,
    ) -> Result<(), TokenFileError> {
        let body = serde_json::to_vec(&OnDisk {
            plugin_id: plugin_id.to_owned(),
            instance_id: instance_id.map(str::to_owned),
            token: token.map(|t| t.expose().to_owned()).unwrap_or_default(),
        })
        .map_err(|e| self.err(e))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            create_private_dir(dir).map_err(|e| self.err(e))?;
        }
        let file_name = self
            .path
            .file_name()
            .ok_or_else(|| self.err("not a file path"))?
            .to_string_lossy()
            .into_owned();
        let tmp = self
            .path
            .with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
        let result = (|| -> std::io::Result<()> {
            let mut f = open_private(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                // Make the rename durable; not every platform can open a directory.
                if let Ok(d) = std::fs::File::open(dir) {
                    let _ = d.sync_all();
                }
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(|e| self.err(e))
    }

    /// Removes the file (the token is dead); a missing file is fine.
    pub(crate) fn remove(&self) -> Result<(), TokenFileError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "vivified-sdk-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn round_trip_private_and_per_plugin() {
        let dir = temp_dir("tokenfile");
        let file = TokenFile::new(dir.join("nested/state/token.json"));
        assert!(file.load("p").unwrap().is_none(), "no file yet");
        file.save("p", &Secret::new("tok-1")).unwrap();
        assert_eq!(file.load("p").unwrap().unwrap().expose(), "tok-1");
        assert!(
            file.load("other").unwrap().is_none(),
            "another plugin's token"
        );
        file.save("p", &Secret::new("tok-2")).unwrap();
        assert_eq!(file.load("p").unwrap().unwrap().expose(), "tok-2");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let dmode = std::fs::metadata(dir.join("nested/state"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(dmode & 0o777, 0o700);
        }
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(dir.join("nested/state"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["token.json"]);
        file.remove().unwrap();
        file.remove().unwrap();
        assert!(file.load("p").unwrap().is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn garbage_is_an_error_that_does_not_echo_it() {
        let dir = temp_dir("garbage");
        let path = dir.join("token.json");
        std::fs::write(&path, "eyJsecret-looking garbage").unwrap();
        let e = TokenFile::new(path).load("p").unwrap_err().to_string();
        assert!(e.contains("not a token file"), "{e}");
        assert!(!e.contains("eyJ"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
