//! `VerifiedTokens`: a bounded memory of tokens whose signature and claims checked
//! out, so a plugin's heartbeats pay for its token's HMAC and JSON once, and an
//! operator's single sign-on token for its provider's signature once.
//!
//! Kept because the load harness measures it: 39 % of heartbeat throughput per
//! server-CPU-second (`docs/PERFORMANCE.md`, "Maintained crates on the hot paths"). It
//! only ever holds the answer a fresh verification gave for the same bytes, so it never
//! changes what a token verifies to.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, PoisonError};

use subtle::ConstantTimeEq;
use vivified_ports::TokenClaims;

/// How many verified tokens are remembered by default (a few hundred bytes each).
pub const DEFAULT_CAPACITY: usize = 4096;

/// Tokens whose signature and claims (all but the times) have been verified, with
/// those claims.
///
/// - Only a token that passed every check but the time checks enters; the caller runs
///   the time checks on every use, against its clock.
/// - An entry is found by a hash of the token keyed with this process's random
///   SipHash key and used only if the token equals it byte for byte, compared in
///   constant time: neither the look-up nor the comparison lets a caller learn a
///   remembered token's bytes by timing.
/// - The keys that verify a plugin token are fixed for the issuer's life, so an entry
///   never goes stale; a remembered answer is exactly what a fresh verification would
///   give. An identity provider's keys change: its verifier empties the memory
///   ([`Self::clear`]) whenever it fetches them again.
/// - Bounded: when full, it is emptied (the tokens in use come back on their next
///   request). Only correctly signed tokens enter, so a caller without the secret
///   cannot fill it.
pub struct VerifiedTokens<C = TokenClaims> {
    hasher: RandomState,
    capacity: usize,
    entries: Mutex<HashMap<u64, (Box<str>, C)>>,
}

impl<C: Clone> VerifiedTokens<C> {
    /// Remembers at most `capacity` tokens (0: none).
    pub fn new(capacity: usize) -> Self {
        Self {
            hasher: RandomState::new(),
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The look-up key of `token` (computed once, passed to [`Self::get`] and
    /// [`Self::insert`]).
    pub fn key(&self, token: &str) -> u64 {
        self.hasher.hash_one(token.as_bytes())
    }

    /// The claims remembered for exactly `token`, if any.
    pub fn get(&self, key: u64, token: &str) -> Option<C> {
        if self.capacity == 0 {
            return None;
        }
        let entries = self.lock();
        let (known, claims) = entries.get(&key)?;
        bool::from(known.as_bytes().ct_eq(token.as_bytes())).then(|| claims.clone())
    }

    /// Remembers that `token` verified to `claims`.
    pub fn insert(&self, key: u64, token: &str, claims: &C) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, (token.into(), claims.clone()));
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every token.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Box<str>, C)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts `token` under `key` whatever its hash (tests: a forged collision).
    #[cfg(test)]
    pub(crate) fn insert_at(&self, key: u64, token: &str, claims: C) {
        self.lock().insert(key, (token.into(), claims));
    }
}

impl<C: Clone> std::fmt::Debug for VerifiedTokens<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTokens")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;
    use vivified_ports::PluginId;

    fn claims(id: &str) -> TokenClaims {
        let t = OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap();
        TokenClaims {
            plugin_id: PluginId::parse(id).unwrap(),
            jti: format!("jti-{id}"),
            issued_at: t,
            expires_at: t,
        }
    }

    #[test]
    fn answers_only_for_the_same_bytes() {
        let v: VerifiedTokens = VerifiedTokens::new(4);
        let k = v.key("a.b.c");
        assert!(v.get(k, "a.b.c").is_none());
        v.insert(k, "a.b.c", &claims("p1"));
        assert_eq!(v.get(k, "a.b.c"), Some(claims("p1")));
        assert!(v.get(k, "a.b.d").is_none(), "same slot, other bytes");
        assert!(v.get(v.key("a.b.d"), "a.b.d").is_none());
    }

    #[test]
    fn bounded_by_emptying() {
        let v: VerifiedTokens = VerifiedTokens::new(3);
        for n in 0..10 {
            let t = format!("t{n}");
            v.insert(v.key(&t), &t, &claims("p1"));
            assert!(v.len() <= 3);
        }
        // The last one inserted is always there.
        assert!(v.get(v.key("t9"), "t9").is_some());
        // Re-inserting a present token never empties.
        let before = v.len();
        v.insert(v.key("t9"), "t9", &claims("p1"));
        assert_eq!(v.len(), before);
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let v: VerifiedTokens = VerifiedTokens::new(0);
        v.insert(v.key("t"), "t", &claims("p1"));
        assert!(v.is_empty());
        assert!(v.get(v.key("t"), "t").is_none());
    }
}
