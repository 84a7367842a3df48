//! The requeue delay after a failed attempt (`wire-protocol.md` C.2 rule 6).

use std::time::Duration;

use rand::Rng;

/// Delay before the next delivery of a message whose `delivery_count` is `n` (≥ 1):
/// `min(initial × 2^(n−1), max)` times a random factor in [0.8, 1.2].
pub fn requeue_delay(n: u32, initial: Duration, max: Duration) -> Duration {
    let exp = n.saturating_sub(1).min(40);
    let base = initial.saturating_mul(1u32 << exp.min(31)).min(max);
    let base = if exp > 31 { max } else { base };
    let factor = rand::rng().random_range(0.8..=1.2);
    base.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_up_to_the_max_with_jitter() {
        let initial = Duration::from_millis(500);
        let max = Duration::from_millis(60_000);
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
}
