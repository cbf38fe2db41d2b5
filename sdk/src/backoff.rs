//! Capped exponential backoff with jitter.

use std::time::Duration;

/// How long to wait between failed attempts: `initial`, doubling per failure, never
/// more than `max`, with "equal jitter" (each delay is uniformly random between half
/// and all of the exponential value), so plugins restarted together do not retry in
/// lockstep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay (before jitter).
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
        }
    }
}

/// The state of one backoff sequence.
#[derive(Debug)]
pub(crate) struct BackoffState {
    policy: Backoff,
    failures: u32,
}

impl BackoffState {
    pub(crate) fn new(policy: Backoff) -> Self {
        Self {
            policy,
            failures: 0,
        }
    }

    /// Failures since the last reset.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let exp = self
            .policy
            .initial
            .saturating_mul(1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX));
        let cap = exp.min(self.policy.max).max(Duration::from_millis(1));
        self.failures = self.failures.saturating_add(1);
        let half = cap / 2;
        let span = u64::try_from((cap - half).as_nanos()).unwrap_or(u64::MAX);
        // Jitter from `fastrand`'s per-thread generator (seeded by the OS).
        half + Duration::from_nanos(fastrand::u64(..=span))
    }

    /// Back to the first delay (after a success).
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_within_jitter_and_caps() {
        let policy = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        let mut b = BackoffState::new(policy);
        let expected_caps = [100u64, 200, 400, 800, 1000, 1000, 1000];
        for cap in expected_caps {
            let d = b.next_delay();
            let cap = Duration::from_millis(cap);
            assert!(
                d >= cap / 2 && d <= cap,
                "{d:?} not in [{:?}, {cap:?}]",
                cap / 2
            );
        }
        assert_eq!(b.failures(), 7);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
        // Many failures never overflow.
        for _ in 0..200 {
            assert!(b.next_delay() <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn jitter_varies() {
        let mut b = BackoffState::new(Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(10),
        });
        let delays: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| b.next_delay()).collect();
        assert!(delays.len() > 10, "jitter should spread delays: {delays:?}");
    }
}
