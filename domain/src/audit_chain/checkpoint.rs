//! Checkpoints: signed statements of the chain's head, kept outside the database.

use std::fmt;
use std::str::FromStr;

use hmac::Mac;
use serde::{Deserialize, Serialize};
use vivified_ports::audit::{ChainHash, ChainHead};

use super::{CANONICAL_VERSION, CHECKPOINT_TAG, ChainKey, HmacSha256};

/// A signed statement "the chain had `hash` at `seq`", kept outside the database
/// (structured log, a bus subject). A bare chain cannot show that rows were cut from
/// its end; verifying against a checkpoint can.
///
/// `mac = HMAC-SHA-256(key, "vivified.audit.checkpoint" 0x00 0x01 || seq (u64 BE) ||
/// hash)`. Written as text `SEQ:HASH:MAC` (hex), e.g. in a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The sequence number it covers.
    pub seq: u64,
    /// The chain hash at `seq`.
    pub hash: ChainHash,
    /// The MAC over `seq` and `hash`.
    pub mac: ChainHash,
}

impl Checkpoint {
    /// Signs `head`.
    pub fn new(key: &ChainKey, head: ChainHead) -> Self {
        let mac = Self::keyed(key, head.seq, &head.hash)
            .finalize()
            .into_bytes()
            .into();
        Self {
            seq: head.seq,
            hash: head.hash,
            mac: ChainHash::from_bytes(mac),
        }
    }

    /// Whether `mac` was made with one of `keys` (a [`ChainKey`], or an
    /// [`super::AuditKeys`]) over this `seq` and `hash` (constant time per key).
    pub fn is_authentic(&self, keys: &(impl AsRef<[ChainKey]> + ?Sized)) -> bool {
        keys.as_ref().iter().any(|key| {
            Self::keyed(key, self.seq, &self.hash)
                .verify_slice(self.mac.as_bytes())
                .is_ok()
        })
    }

    /// The position it vouches for.
    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.hash,
        }
    }

    fn keyed(key: &ChainKey, seq: u64, hash: &ChainHash) -> HmacSha256 {
        key.keyed(&[
            CHECKPOINT_TAG,
            &[0, CANONICAL_VERSION],
            &seq.to_be_bytes(),
            hash.as_bytes(),
        ])
    }
}

impl From<vivified_ports::ChainMark> for Checkpoint {
    fn from(mark: vivified_ports::ChainMark) -> Self {
        Self {
            seq: mark.head.seq,
            hash: mark.head.hash,
            mac: mark.mac,
        }
    }
}

impl From<Checkpoint> for vivified_ports::ChainMark {
    fn from(cp: Checkpoint) -> Self {
        Self {
            head: cp.head(),
            mac: cp.mac,
        }
    }
}

/// Text that is not `SEQ:HASH:MAC`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a checkpoint (expected SEQ:HASH:MAC in hex)")]
pub struct InvalidCheckpoint;

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.seq, self.hash, self.mac)
    }
}

impl FromStr for Checkpoint {
    type Err = InvalidCheckpoint;

    fn from_str(s: &str) -> Result<Self, InvalidCheckpoint> {
        let mut parts = s.trim().split(':');
        let (Some(seq), Some(hash), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(InvalidCheckpoint);
        };
        Ok(Self {
            seq: seq.parse().map_err(|_| InvalidCheckpoint)?,
            hash: hash.parse().map_err(|_| InvalidCheckpoint)?,
            mac: mac.parse().map_err(|_| InvalidCheckpoint)?,
        })
    }
}
