//! Stored entries that cannot be decoded: they go to the dead letters with reason
//! `rejected` and this `last_error`, and are listed with a stand-in envelope holding the raw
//! stored bytes as body ([`dead_letter_envelope`], used by every backend).

use serde_json::value::RawValue;
use webhook_connect_protocol::{DataType, Envelope, Headers, MessageId};

use crate::millis::ts;
use crate::stored::decode_stored;

/// `last_error` of an unreadable stored entry.
pub(crate) const UNREADABLE: &str = "unreadable stored message";

/// What is stored beside an entry's bytes.
#[derive(Debug)]
pub(crate) struct Known<'a> {
    pub channel: &'a str,
    pub queue: &'a str,
    pub sequence: u64,
    pub message_id: &'a str,
    pub received_ms: i64,
    pub expires_ms: Option<i64>,
}

/// The envelope of a dead letter stored as `raw`: the stored envelope, or for an unreadable
/// entry a stand-in.
pub(crate) fn dead_letter_envelope(known: Known<'_>, raw: &[u8]) -> Envelope {
    decode_stored(raw, known.sequence, known.expires_ms)
        .unwrap_or_else(|| placeholder(known, raw.to_vec()))
}

/// A stand-in envelope: known facts, `payload` null, `body` the raw stored bytes.
fn placeholder(known: Known<'_>, raw: Vec<u8>) -> Envelope {
    Envelope {
        message_id: MessageId::parse(known.message_id).unwrap_or_else(|_| MessageId::generate()),
        channel: known.channel.to_owned(),
        webhook_id: known.queue.to_owned(),
        namespace: None,
        sequence: known.sequence,
        received_at: ts(known.received_ms),
        expires_at: known.expires_ms.map(ts),
        headers: Headers::new(),
        raw_headers: None,
        data_type: DataType::Blob,
        content_type: None,
        payload: RawValue::NULL.to_owned(),
        payload_encoding: None,
        body_omitted: false,
        body: raw,
    }
}
