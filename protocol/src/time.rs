//! Timestamps as the relay writes them and as receivers must read them (`docs/reference/wire-protocol.md` §0.5).
//!
//! Written: UTC, RFC 3339, exactly six fractional digits, offset `+00:00`, e.g.
//! `2026-03-14T09:26:53.589793+00:00`. Read: any RFC 3339 timestamp (`Z`, no fraction, other
//! offsets), plus the original's offset-less form, which it always meant as UTC.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time on the wire. Serialises in the canonical form; parses leniently.
///
/// ```
/// use webhook_connect_protocol::Timestamp;
/// let t: Timestamp = "2026-03-14T09:26:53Z".parse().unwrap();
/// assert_eq!(t.to_string(), "2026-03-14T09:26:53.000000+00:00");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub DateTime<Utc>);

/// The text could not be read as a timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp: expected RFC 3339")]
pub struct TimestampError;

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Timestamp(Utc::now())
    }

    /// From milliseconds since the Unix epoch; `None` when out of range.
    pub fn from_unix_millis(ms: i64) -> Option<Self> {
        DateTime::from_timestamp_millis(ms).map(Timestamp)
    }

    /// From microseconds since the Unix epoch; `None` when out of range.
    pub fn from_unix_micros(us: i64) -> Option<Self> {
        DateTime::from_timestamp_micros(us).map(Timestamp)
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(&self) -> i64 {
        self.0.timestamp_millis()
    }

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(&self) -> i64 {
        self.0.timestamp_micros()
    }

    /// Whole seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> i64 {
        self.0.timestamp()
    }

    /// This time plus `ms` milliseconds (saturating at the representable range).
    pub fn plus_millis(&self, ms: u64) -> Self {
        let delta = chrono::TimeDelta::try_milliseconds(i64::try_from(ms).unwrap_or(i64::MAX))
            .unwrap_or(chrono::TimeDelta::MAX);
        Timestamp(
            self.0
                .checked_add_signed(delta)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Micros, false))
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(Timestamp(t.with_timezone(&Utc)));
        }
        // The original wrote `datetime.isoformat()` of naive UTC times in places.
        for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
            if let Ok(naive) = NaiveDateTime::parse_from_str(s, format) {
                return Ok(Timestamp(naive.and_utc()));
            }
        }
        Err(TimestampError)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_six_fraction_digits_and_plus_zero_offset() {
        let t: Timestamp = "2026-03-14T09:26:53.589793+00:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-03-14T09:26:53.589793+00:00");
        let whole: Timestamp = "2026-03-14T09:26:53+00:00".parse().unwrap();
        assert_eq!(whole.to_string(), "2026-03-14T09:26:53.000000+00:00");
    }

    #[test]
    fn reads_z_suffix_other_offsets_and_naive_utc() {
        let z: Timestamp = "2026-03-14T09:26:53.5Z".parse().unwrap();
        let offset: Timestamp = "2026-03-14T11:26:53.5+02:00".parse().unwrap();
        let naive: Timestamp = "2026-03-14T09:26:53.500000".parse().unwrap();
        assert_eq!(z, offset);
        assert_eq!(z, naive);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!("yesterday".parse::<Timestamp>(), Err(TimestampError));
        assert!("".parse::<Timestamp>().is_err());
    }

    #[test]
    fn plus_millis_saturates() {
        let t = Timestamp::now();
        assert!(t.plus_millis(u64::MAX) > t);
        assert_eq!(t.plus_millis(1500).unix_millis() - t.unix_millis(), 1500);
    }
}
