//! Reconnect backoff (`docs/reference/wire-protocol.md` C.7): base delay from `reconnect_delay`, multiplied after
//! each failure up to `max_reconnect_delay`; the wait is uniform in [0.7 d, d] so it never exceeds
//! the maximum. The base resets only after a connection stayed up for 10 s. The policy is
//! the protocol's [`Backoff`] with 30 % jitter.

use std::time::Duration;

use webhook_connect_protocol::backoff::Backoff as Policy;

use crate::config::ReconnectPolicy;

/// How long a connection must last before the backoff resets.
pub const RESET_AFTER: Duration = Duration::from_secs(10);

/// Reconnect backoff state of one channel.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: Policy,
}

impl Backoff {
    /// Starts at `reconnect_delay`.
    pub fn new(policy: ReconnectPolicy) -> Self {
        Backoff {
            policy: Policy::new(policy.initial, policy.max, policy.multiplier).with_jitter(0.3),
        }
    }

    /// The current base delay d (before jitter).
    #[cfg(test)]
    fn base(&self) -> Duration {
        self.policy.current()
    }

    /// The wait before the next attempt, in [0.7 d, d]; then d grows.
    pub fn next_delay(&mut self) -> Duration {
        self.policy.next_delay()
    }

    /// The wait after rejected credentials: the maximum delay, jittered within [0.7 max, max].
    pub fn max_delay(&mut self) -> Duration {
        self.policy.jump_to_max();
        self.policy.next_delay()
    }

    /// Called when a connection ended after being up for `lasted`: resets after 10 s.
    pub fn connection_ended(&mut self, lasted: Duration) {
        if lasted >= RESET_AFTER {
            self.policy.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ReconnectPolicy {
        ReconnectPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(8),
            multiplier: 2.0,
        }
    }

    #[test]
    fn wait_stays_within_point_seven_d_and_d_and_never_exceeds_the_max_r84() {
        let mut b = Backoff::new(policy());
        let mut expected = 1.0f64;
        for _ in 0..20 {
            let wait = b.next_delay().as_secs_f64();
            assert!(
                wait >= 0.7 * expected - 1e-9 && wait <= expected + 1e-9,
                "{wait} vs {expected}"
            );
            assert!(wait <= 8.0);
            expected = (expected * 2.0).min(8.0);
        }
    }

    #[test]
    fn backoff_resets_only_after_ten_seconds_connected_r84() {
        let mut b = Backoff::new(policy());
        b.next_delay();
        b.next_delay();
        assert_eq!(b.base(), Duration::from_secs(4));
        b.connection_ended(Duration::from_secs(9));
        assert_eq!(b.base(), Duration::from_secs(4));
        b.connection_ended(Duration::from_secs(10));
        assert_eq!(b.base(), Duration::from_secs(1));
    }

    #[test]
    fn rejected_credentials_wait_the_maximum_r84() {
        let mut b = Backoff::new(policy());
        let w = b.max_delay();
        assert!(w >= Duration::from_secs_f64(5.6) && w <= Duration::from_secs(8));
    }
}
