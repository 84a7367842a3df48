//! Times as the stores keep them: Unix milliseconds, and durations in whole milliseconds.

use std::time::Duration;

use webhook_connect_protocol::Timestamp;

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    Timestamp::now().unix_millis()
}

/// A timestamp from Unix milliseconds (now for values out of range).
pub(crate) fn ts(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(ms).unwrap_or_else(Timestamp::now)
}

/// `d` in whole milliseconds (saturating).
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `d` in whole milliseconds, to add to a Unix time (saturating).
pub(crate) fn signed_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_saturate_instead_of_wrapping() {
        assert_eq!(ms(Duration::from_micros(2_999)), 2);
        assert_eq!(signed_ms(Duration::from_millis(5)), 5);
        assert_eq!(ms(Duration::MAX), u64::MAX);
        assert_eq!(signed_ms(Duration::MAX), i64::MAX);
        assert_eq!(
            ts(i64::MAX).unix_millis() / 1000,
            Timestamp::now().unix_millis() / 1000
        );
    }
}
