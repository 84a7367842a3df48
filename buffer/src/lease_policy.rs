//! The lease policy (`docs/reference/wire-protocol.md` C.2 rules 6 and 7): how long a message waits after a
//! failed attempt (nack with retry, lease expiry, connection loss), and when it goes to the dead
//! letters instead. Written once: the embedded store and RabbitMQ call it, and the Redis scripts
//! get its answers as arguments.

use std::time::Duration;

use rand::Rng;

use crate::QueueSettings;

/// The requeue backoff and attempt cap of one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeasePolicy {
    /// Deliveries before dead-lettering with `max_attempts`.
    max_attempts: u32,
    /// First requeue delay.
    initial: Duration,
    /// Largest requeue delay, and the bound of a requested one.
    max: Duration,
}

/// What becomes of a message after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Pending again after this delay.
    Requeue(Duration),
    /// Out of attempts: to the dead letters with reason `max_attempts`.
    DeadLetter,
}

impl LeasePolicy {
    /// The policy of `max_attempts` deliveries and delays from `initial` doubling up to `max`.
    pub(crate) fn new(max_attempts: u32, initial: Duration, max: Duration) -> Self {
        LeasePolicy {
            max_attempts,
            initial,
            max,
        }
    }

    /// The policy of a channel's settings.
    pub(crate) fn of(settings: &QueueSettings) -> Self {
        LeasePolicy::new(
            settings.max_delivery_attempts,
            settings.requeue_delay_initial,
            settings.requeue_delay_max,
        )
    }

    /// Whether a message delivered `attempts` times (this delivery included) has had its last
    /// attempt.
    pub(crate) fn exhausted(&self, attempts: u32) -> bool {
        attempts >= self.max_attempts
    }

    /// What becomes of a message whose `attempts`-th delivery failed: dead-lettered when it was
    /// the last allowed one, else requeued after `requested` (a v2 `delay_ms`, clamped to the
    /// largest delay) or the computed [`requeue_delay`](LeasePolicy::requeue_delay).
    pub(crate) fn after_failure(&self, attempts: u32, requested: Option<Duration>) -> AfterFailure {
        if self.exhausted(attempts) {
            return AfterFailure::DeadLetter;
        }
        AfterFailure::Requeue(match requested {
            Some(d) => self.requested_delay(d),
            None => self.requeue_delay(attempts),
        })
    }

    /// A requested delay (v2 `delay_ms`), clamped to the largest delay.
    pub(crate) fn requested_delay(&self, requested: Duration) -> Duration {
        requested.min(self.max)
    }

    /// `min(initial × 2^(n−1), max)` for a message whose `delivery_count` is `n` (0 counts as
    /// 1), exactly, for every `n`.
    pub(crate) fn base_delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1);
        let initial = self.initial.as_nanos();
        // Saturating at u128::MAX, far above any Duration.
        let doubled = match 1u128.checked_shl(exp) {
            Some(factor) => initial.saturating_mul(factor),
            None if initial == 0 => 0,
            None => u128::MAX,
        };
        let nanos = doubled.min(self.max.as_nanos());
        // At most `max`, so it fits a Duration.
        let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
        let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
        Duration::new(secs, sub)
    }

    /// The delay before the next delivery of a message whose `delivery_count` is `attempt`:
    /// [`base_delay`](LeasePolicy::base_delay) times a random factor in [0.8, 1.2].
    pub(crate) fn requeue_delay(&self, attempt: u32) -> Duration {
        let base = self.base_delay(attempt);
        let factor = rand::rng().random_range(0.8..=1.2);
        Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(Duration::MAX)
    }

    /// The requeue delays of attempts 1, 2, …, each with its own random factor, up to the last
    /// attempt that requeues or the first one from which the base delay stops changing (the
    /// cap, or zero), whichever comes first; at least one. The Redis scripts take the delay of
    /// attempt `n` from this list, and its last entry for every later `n`.
    pub(crate) fn requeue_delays(&self) -> Vec<Duration> {
        let mut out = Vec::new();
        let mut attempt = 1u32;
        loop {
            out.push(self.requeue_delay(attempt));
            let next = attempt.saturating_add(1);
            if next >= self.max_attempts
                || next == attempt
                || self.base_delay(next) == self.base_delay(attempt)
            {
                return out;
            }
            attempt = next;
        }
    }
}

/// Delay before the next delivery of a message whose `delivery_count` is `n` (≥ 1):
/// `min(initial × 2^(n−1), max)` times a random factor in [0.8, 1.2]
/// ([`LeasePolicy::requeue_delay`]).
pub fn requeue_delay(n: u32, initial: Duration, max: Duration) -> Duration {
    LeasePolicy::new(u32::MAX, initial, max).requeue_delay(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn policy(max_attempts: u32, initial_ms: u64, max_ms: u64) -> LeasePolicy {
        LeasePolicy::new(max_attempts, ms(initial_ms), ms(max_ms))
    }

    /// `d` is `base` times a factor in [0.8, 1.2].
    fn jittered(d: Duration, base: Duration) -> bool {
        d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2)
    }

    #[test]
    fn delay_doubles_up_to_the_max_with_jitter() {
        let initial = ms(500);
        let max = ms(60_000);
        for (n, base) in [
            (1, 500u64),
            (2, 1000),
            (3, 2000),
            (8, 60_000),
            (30, 60_000),
            (u32::MAX, 60_000),
        ] {
            for _ in 0..50 {
                let d = requeue_delay(n, initial, max).as_millis() as u64;
                assert!(
                    d >= base * 8 / 10 && d <= base * 12 / 10,
                    "n={n} d={d} base={base}"
                );
            }
        }
        assert_eq!(requeue_delay(3, Duration::ZERO, max), Duration::ZERO);
    }

    #[test]
    fn base_delay_is_the_formula_and_stops_at_the_cap() {
        let p = policy(10, 500, 60_000);
        assert_eq!(p.base_delay(0), ms(500), "0 counts as the first attempt");
        assert_eq!(p.base_delay(1), ms(500));
        assert_eq!(p.base_delay(2), ms(1000));
        assert_eq!(p.base_delay(7), ms(32_000));
        assert_eq!(p.base_delay(8), ms(60_000));
        assert_eq!(p.base_delay(9), ms(60_000));
    }

    #[test]
    fn base_delay_does_not_overflow_at_large_attempt_numbers() {
        let p = policy(u32::MAX, 500, 3_600_000);
        for n in [
            31,
            32,
            33,
            41,
            64,
            65,
            127,
            128,
            129,
            1000,
            u32::MAX - 1,
            u32::MAX,
        ] {
            assert_eq!(p.base_delay(n), ms(3_600_000), "n={n}");
            assert!(jittered(p.requeue_delay(n), ms(3_600_000)), "n={n}");
        }
        // The largest settings: still capped, never a panic.
        let huge = LeasePolicy::new(u32::MAX, Duration::MAX, Duration::MAX);
        assert_eq!(huge.base_delay(u32::MAX), Duration::MAX);
        assert!(huge.requeue_delay(u32::MAX) >= Duration::from_secs(u64::MAX / 10 * 7));
        let tiny = LeasePolicy::new(u32::MAX, Duration::from_nanos(1), Duration::MAX);
        assert_eq!(tiny.base_delay(33), Duration::from_nanos(1 << 32));
        assert_eq!(tiny.base_delay(u32::MAX), Duration::MAX);
    }

    #[test]
    fn zero_initial_delay_stays_zero_at_every_attempt() {
        let p = policy(100, 0, 60_000);
        for n in [0, 1, 2, 32, 33, 34, 100, u32::MAX] {
            assert_eq!(p.base_delay(n), Duration::ZERO, "n={n}");
            assert_eq!(p.requeue_delay(n), Duration::ZERO, "n={n}");
        }
    }

    #[test]
    fn the_max_attempts_th_failure_dead_letters() {
        let p = policy(3, 10, 20);
        assert!(
            matches!(p.after_failure(1, None), AfterFailure::Requeue(d) if jittered(d, ms(10)))
        );
        assert!(
            matches!(p.after_failure(2, None), AfterFailure::Requeue(d) if jittered(d, ms(20)))
        );
        assert_eq!(p.after_failure(3, None), AfterFailure::DeadLetter);
        assert_eq!(p.after_failure(4, None), AfterFailure::DeadLetter);
        assert_eq!(
            p.after_failure(u32::MAX, Some(ms(1))),
            AfterFailure::DeadLetter
        );
        assert!(!p.exhausted(2));
        assert!(p.exhausted(3));
        // One attempt allowed: the first failure is the last.
        assert_eq!(
            policy(1, 10, 20).after_failure(1, None),
            AfterFailure::DeadLetter
        );
    }

    #[test]
    fn a_requested_delay_replaces_the_computed_one_clamped_to_the_max() {
        let p = policy(10, 500, 2_000);
        assert_eq!(
            p.after_failure(1, Some(ms(300))),
            AfterFailure::Requeue(ms(300))
        );
        assert_eq!(
            p.after_failure(1, Some(ms(5_000))),
            AfterFailure::Requeue(ms(2_000))
        );
        assert_eq!(
            p.after_failure(9, Some(Duration::ZERO)),
            AfterFailure::Requeue(Duration::ZERO)
        );
        assert_eq!(
            p.after_failure(1, Some(Duration::MAX)),
            AfterFailure::Requeue(ms(2_000))
        );
    }

    #[test]
    fn delay_list_ends_where_the_delay_stops_changing() {
        // 500, 1000, …, 32 000, then 60 000 from the 8th attempt on.
        let d = policy(10, 500, 60_000).requeue_delays();
        assert_eq!(d.len(), 8);
        for (i, delay) in d.iter().enumerate() {
            let n = i as u32 + 1;
            assert!(
                jittered(*delay, policy(10, 500, 60_000).base_delay(n)),
                "n={n}"
            );
        }
        // Only the attempts that requeue: the 3rd failure of 3 dead-letters.
        assert_eq!(policy(3, 500, 60_000).requeue_delays().len(), 2);
        // At least one entry, even when nothing requeues or nothing changes.
        assert_eq!(policy(1, 500, 60_000).requeue_delays().len(), 1);
        assert_eq!(policy(0, 500, 60_000).requeue_delays().len(), 1);
        assert_eq!(
            policy(100, 0, 60_000).requeue_delays(),
            vec![Duration::ZERO]
        );
        assert_eq!(policy(100, 50, 50).requeue_delays().len(), 1);
        // Bounded at any attempt cap.
        assert!(policy(u32::MAX, 1, 3_600_000).requeue_delays().len() <= 64);
        assert!(
            LeasePolicy::new(u32::MAX, Duration::from_nanos(1), Duration::MAX)
                .requeue_delays()
                .len()
                <= 128
        );
    }
}
