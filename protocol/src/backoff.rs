//! One retry/backoff policy for every loop that waits between attempts (reconnects, retries of a
//! delivery, a module's setup): the wait starts at `initial`, is multiplied by `factor` after
//! each attempt up to `max`, and is reduced at random by up to `jitter` of itself, so it never
//! exceeds `max`.
//!
//! Pure: no I/O, no clock and no sleeping — the caller sleeps. The jitter draws from the
//! thread-local generator; the `*_from` methods take the random draw `u` in [0, 1) instead, for
//! tests.

use std::time::Duration;

use rand::Rng;

/// A backoff policy and the state of one sequence of attempts.
///
/// ```
/// use std::time::Duration;
/// use webhook_connect_protocol::backoff::Backoff;
/// let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(4), 2.0);
/// let waits: Vec<u64> = (0..4).map(|_| b.next_delay().as_secs()).collect();
/// assert_eq!(waits, [1, 2, 4, 4]);
/// b.reset();
/// assert_eq!(b.current(), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    factor: f64,
    jitter: f64,
    current: Duration,
}

impl Backoff {
    /// Waits `initial`, then `factor` times the previous wait, at most `max`; no jitter.
    pub fn new(initial: Duration, max: Duration, factor: f64) -> Self {
        Backoff {
            initial,
            max,
            factor: if factor.is_finite() {
                factor.max(0.0)
            } else {
                1.0
            },
            jitter: 0.0,
            current: initial,
        }
    }

    /// Each wait `d` becomes `d × (1 − fraction × u)` with `u` uniform in [0, 1): up to
    /// `fraction` (clamped to 0–1) shorter, never longer.
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The wait the next [`Self::next_delay`] starts from, before jitter.
    pub fn current(&self) -> Duration {
        self.current
    }

    /// The largest wait.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The wait before the next attempt (jittered); the following one grows by `factor`.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_from(unit())
    }

    /// [`Self::next_delay`] with the random draw `u` in [0, 1).
    pub fn next_delay_from(&mut self, u: f64) -> Duration {
        let d = self.current;
        self.current = self.capped(d.as_secs_f64() * self.factor);
        self.jittered(d, u)
    }

    /// Starts over at `initial` (after a success).
    pub fn reset(&mut self) {
        self.current = self.initial;
    }

    /// Continues from `max`, so the next wait is the largest one.
    pub fn jump_to_max(&mut self) {
        self.current = self.max;
    }

    /// The jittered wait before retry `n` (1 for the first retry) of a sequence whose state is
    /// not kept: `min(initial × factor^(n−1), max)`, less up to `jitter` of it.
    pub fn delay_for(&self, n: u32) -> Duration {
        self.delay_for_from(n, unit())
    }

    /// [`Self::delay_for`] with the random draw `u` in [0, 1).
    pub fn delay_for_from(&self, n: u32, u: f64) -> Duration {
        let exp = self
            .factor
            .powi(i32::try_from(n.saturating_sub(1).min(64)).unwrap_or(64));
        self.jittered(self.capped(self.initial.as_secs_f64() * exp), u)
    }

    /// `secs`, at most `max` (and at least zero).
    fn capped(&self, secs: f64) -> Duration {
        let secs = secs.min(self.max.as_secs_f64()).max(0.0);
        Duration::try_from_secs_f64(secs).unwrap_or(self.max)
    }

    fn jittered(&self, d: Duration, u: f64) -> Duration {
        if self.jitter == 0.0 {
            return d;
        }
        let factor = 1.0 - self.jitter * u.clamp(0.0, 1.0);
        Duration::try_from_secs_f64((d.as_secs_f64() * factor).max(0.0)).unwrap_or(d)
    }
}

/// A draw uniform in [0, 1).
fn unit() -> f64 {
    rand::rng().random_range(0.0..1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn waits_grow_by_the_factor_up_to_the_max_and_reset_to_the_initial() {
        let mut b = Backoff::new(secs(0.5), secs(3.0), 2.0);
        let waits: Vec<f64> = (0..5).map(|_| b.next_delay().as_secs_f64()).collect();
        assert_eq!(waits, [0.5, 1.0, 2.0, 3.0, 3.0]);
        b.reset();
        assert_eq!(b.next_delay(), secs(0.5));
        b.jump_to_max();
        assert_eq!(b.next_delay(), secs(3.0));
        assert_eq!(b.current(), secs(3.0));
    }

    #[test]
    fn jitter_only_shortens_a_wait_by_up_to_its_fraction() {
        let mut b = Backoff::new(secs(1.0), secs(8.0), 2.0).with_jitter(0.3);
        assert_eq!(b.next_delay_from(0.0), secs(1.0));
        assert_eq!(b.next_delay_from(0.5), secs(1.7));
        for _ in 0..50 {
            let before = b.current();
            let wait = b.next_delay();
            assert!(
                wait <= before && wait >= before.mul_f64(0.7),
                "{wait:?} {before:?}"
            );
        }
    }

    #[test]
    fn delay_for_the_nth_retry_is_stateless_and_capped() {
        let b = Backoff::new(secs(1.0), secs(10.0), 3.0).with_jitter(0.2);
        assert_eq!(b.delay_for_from(1, 0.0), secs(1.0));
        assert_eq!(b.delay_for_from(2, 0.0), secs(3.0));
        assert_eq!(b.delay_for_from(3, 0.5), secs(9.0 * 0.9));
        assert_eq!(b.delay_for_from(u32::MAX, 0.0), secs(10.0));
        assert_eq!(b.delay_for_from(0, 0.0), secs(1.0));
    }

    #[test]
    fn odd_parameters_never_panic() {
        let mut b = Backoff::new(secs(1.0), Duration::MAX, f64::INFINITY).with_jitter(f64::NAN);
        b.next_delay();
        b.next_delay();
        let mut b = Backoff::new(secs(1.0), secs(5.0), -2.0).with_jitter(7.0);
        assert_eq!(b.next_delay_from(1.0), Duration::ZERO);
        assert_eq!(b.next_delay_from(0.0), Duration::ZERO);
        assert!(b.delay_for(40) <= secs(5.0));
    }
}
