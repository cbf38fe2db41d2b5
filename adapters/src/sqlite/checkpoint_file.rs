//! The SQLite chain's checkpoint also kept as a file beside the database
//! (`vivified.db-checkpoint`, `SEQ:HASH:MAC` in hex): a copy outside the database
//! file, so that rows cut from the chain's end *and* from `audit_checkpoint` with a
//! SQLite shell are still found. Written after each seal that sealed entries (a new
//! file, flushed, then renamed over the old one); a file older than the database —
//! a crash between the commit and the rename — is still a valid lower bound.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use vivified_ports::audit::{ChainHash, ChainHead};
use vivified_ports::{ChainMark, StoredCheckpoint};

/// The file and what it held when last read or written.
#[derive(Debug)]
pub(super) struct CheckpointFile {
    path: PathBuf,
    /// `None`: no file; `Some(None)`: a file that is not a checkpoint.
    last: Mutex<Option<Option<ChainMark>>>,
}

impl CheckpointFile {
    /// The file beside `db` (`DB-checkpoint`), read now.
    pub(super) fn beside(db: &Path) -> Self {
        let mut name = db.as_os_str().to_owned();
        name.push("-checkpoint");
        let path = PathBuf::from(name);
        let last = match std::fs::read_to_string(&path) {
            Ok(text) => Some(parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(_) => Some(None),
        };
        Self {
            path,
            last: Mutex::new(last),
        }
    }

    /// What the file held, as a stored checkpoint (nothing when there is no file).
    pub(super) fn stored(&self) -> Option<StoredCheckpoint> {
        let last = *self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.map(|mark| StoredCheckpoint {
            place: format!("file {}", self.path.display()),
            mark,
        })
    }

    /// The file's checkpoint, if it holds one.
    pub(super) fn mark(&self) -> Option<ChainMark> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flatten()
    }

    /// Replaces the file with `mark`, durably (mode 0600).
    pub(super) fn write(&self, mark: ChainMark) -> std::io::Result<()> {
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        writeln!(file, "{}:{}:{}", mark.head.seq, mark.head.hash, mark.mac)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(Some(mark));
        Ok(())
    }
}

fn parse(text: &str) -> Option<ChainMark> {
    let mut parts = text.trim().split(':');
    let (Some(seq), Some(hash), Some(mac), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    Some(ChainMark {
        head: ChainHead {
            seq: seq.parse().ok()?,
            hash: hash.parse::<ChainHash>().ok()?,
        },
        mac: mac.parse::<ChainHash>().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_marks_read_back_and_garbage_is_not_a_mark() {
        let dir = std::env::temp_dir().join(format!("vivified-cpfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("v.db");
        let file = CheckpointFile::beside(&db);
        assert_eq!(file.stored(), None);
        let mark = ChainMark {
            head: ChainHead {
                seq: 42,
                hash: ChainHash::from_bytes([7; 32]),
            },
            mac: ChainHash::from_bytes([9; 32]),
        };
        file.write(mark).unwrap();
        assert_eq!(CheckpointFile::beside(&db).mark(), Some(mark));
        std::fs::write(dir.join("v.db-checkpoint"), "42:zz").unwrap();
        let garbage = CheckpointFile::beside(&db);
        assert_eq!(garbage.mark(), None);
        assert_eq!(garbage.stored().map(|s| s.mark), Some(None));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
