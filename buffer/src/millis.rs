//! Times as the stores keep them: Unix milliseconds.

use webhook_connect_protocol::Timestamp;

/// A timestamp from Unix milliseconds (now for values out of range).
pub(crate) fn ts(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(ms).unwrap_or_else(Timestamp::now)
}
