//! Per-address rate limits of the routes that take credentials from strangers:
//! registration and enrollment. Every refused registration is audited, so without a
//! bound one address could fill the audit trail; with it, the flood costs the caller
//! 429s that cost the core almost nothing. `governor`'s GCRA, keyed by IP address.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// The address a request came from (the TCP peer), put in each request's extensions by
/// the connection's service. Behind a proxy it is the proxy's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Addresses remembered before the ones that are back to a full allowance are dropped.
const MAX_TRACKED: usize = 10_000;

/// A per-address limit: `per_minute` requests a minute, all of which may come at once.
pub struct AddressLimit {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

impl AddressLimit {
    /// `per_minute` requests per address and minute; 0 turns the limit off.
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            limiter: NonZeroU32::new(per_minute)
                .map(|n| RateLimiter::keyed(Quota::per_minute(n).allow_burst(n))),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from `addr`'s allowance, or says how long until there is one.
    /// A request without an address (an in-process caller) is never limited.
    ///
    /// # Errors
    /// The wait before `addr` may ask again.
    pub fn check(&self, addr: Option<IpAddr>) -> Result<(), Duration> {
        let (Some(limiter), Some(addr)) = (&self.limiter, addr) else {
            return Ok(());
        };
        if limiter.len() > MAX_TRACKED {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter
            .check_key(&addr)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// What a lock-out is keyed by: the client's address, or the credential presented.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FailureKey {
    /// The TCP peer.
    Address(IpAddr),
    /// The public part of a credential: an operator token's prefix, a plugin token's
    /// subject (its plugin id, read without verifying), or a hash of anything else.
    Credential(String),
}

/// Failed authentications a minute per key; a key that fails more is locked out until
/// its allowance is back: its requests are answered 429 before anything is verified,
/// so guessing goes no faster than the limit. `governor`'s GCRA counts the failures.
pub struct FailureLimit {
    limiter: Option<DefaultKeyedRateLimiter<FailureKey>>,
    clock: DefaultClock,
    /// Keys locked out, until when.
    locked: std::sync::Mutex<std::collections::HashMap<FailureKey, std::time::Instant>>,
    /// Whether any key is locked out (the common case reads only this).
    any_locked: std::sync::atomic::AtomicBool,
}

impl FailureLimit {
    /// `per_minute` failures per key and minute; 0 turns the limit off.
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            limiter: NonZeroU32::new(per_minute)
                .map(|n| RateLimiter::keyed(Quota::per_minute(n).allow_burst(n))),
            clock: DefaultClock::default(),
            locked: std::sync::Mutex::new(std::collections::HashMap::new()),
            any_locked: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn locked(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<FailureKey, std::time::Instant>> {
        self.locked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether failures are limited at all.
    pub fn is_on(&self) -> bool {
        self.limiter.is_some()
    }

    /// Whether any key may be locked out now.
    pub fn any_locked(&self) -> bool {
        self.any_locked.load(std::sync::atomic::Ordering::Acquire)
    }

    /// How long the longest lock-out among `keys` still lasts, if any.
    pub fn blocked<'k>(&self, keys: impl IntoIterator<Item = &'k FailureKey>) -> Option<Duration> {
        if !self.any_locked() {
            return None;
        }
        let now = std::time::Instant::now();
        let mut locked = self.locked();
        locked.retain(|_, until| *until > now);
        if locked.is_empty() {
            self.any_locked
                .store(false, std::sync::atomic::Ordering::Release);
            return None;
        }
        keys.into_iter()
            .filter_map(|k| locked.get(k))
            .map(|until| until.saturating_duration_since(now))
            .max()
    }

    /// Counts one failure against each of `keys`; returns the keys this failure locked
    /// out (their allowance is used up), with how long.
    pub fn failed(&self, keys: &[FailureKey]) -> Vec<(FailureKey, Duration)> {
        let Some(limiter) = &self.limiter else {
            return Vec::new();
        };
        if limiter.len() > MAX_TRACKED {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let now = std::time::Instant::now();
        let mut newly = Vec::new();
        for key in keys {
            if let Err(not_until) = limiter.check_key(key) {
                let wait = not_until.wait_time_from(self.clock.now());
                let mut locked = self.locked();
                if locked.len() >= MAX_TRACKED {
                    locked.retain(|_, until| *until > now);
                }
                if locked.len() < MAX_TRACKED {
                    locked.insert(key.clone(), now + wait);
                    self.any_locked
                        .store(true, std::sync::atomic::Ordering::Release);
                    newly.push((key.clone(), wait));
                }
            }
        }
        newly
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_allowance() {
        let limit = AddressLimit::per_minute(3);
        let (a, b) = (
            Some(IpAddr::from([192, 0, 2, 1])),
            Some(IpAddr::from([192, 0, 2, 2])),
        );
        for _ in 0..3 {
            assert!(limit.check(a).is_ok());
        }
        let wait = limit.check(a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(limit.check(b).is_ok(), "another address is not affected");
        assert!(limit.check(None).is_ok(), "no address: not limited");
        let off = AddressLimit::per_minute(0);
        assert!((0..1000).all(|_| off.check(a).is_ok()));
    }
}
