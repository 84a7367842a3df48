//! Stored entries that cannot be decoded: they go to the dead letters with reason
//! `rejected` and this `last_error`, and are listed with a stand-in envelope holding the raw
//! stored bytes as body.

use serde_json::value::RawValue;
use webhook_connect_protocol::{DataType, Envelope, Headers, MessageId};

use crate::millis::ts;

/// `last_error` of an unreadable stored entry.
pub(crate) const UNREADABLE: &str = "unreadable stored message";

/// What is known of an unreadable entry besides its bytes.
#[derive(Debug)]
pub(crate) struct Known<'a> {
    pub channel: &'a str,
    pub queue: &'a str,
    pub sequence: u64,
    pub message_id: &'a str,
    pub received_ms: i64,
    pub expires_ms: Option<i64>,
}

/// A stand-in envelope: known facts, `payload` null, `body` the raw stored bytes.
pub(crate) fn placeholder(known: Known<'_>, raw: Vec<u8>) -> Envelope {
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
