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
