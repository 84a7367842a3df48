//! Stored envelopes of the broker backends (Redis, RabbitMQ): the envelope bytes, with the
//! facts that can change after publishing (sequence, expiry) kept beside them.

use webhook_connect_protocol::Envelope;

use crate::millis::ts;

/// Reads a stored envelope, putting back the facts kept beside it.
pub(crate) fn decode_stored(raw: &[u8], seq: u64, expires_ms: Option<i64>) -> Option<Envelope> {
    let mut e = Envelope::decode(raw).ok()?;
    e.sequence = seq;
    if expires_ms != e.expires_at.map(|x| x.unix_millis()) {
        e.expires_at = expires_ms.map(ts);
    }
    Some(e)
}
