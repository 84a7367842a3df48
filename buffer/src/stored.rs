//! Stored envelopes: the envelope bytes, with the facts that can change after publishing
//! (sequence, expiry) kept beside them.
//!
//! Two stored forms are read by every backend:
//! - [`Envelope::encode`] (`WCE1…`): metadata JSON, then the raw body.
//! - **Payload-is-body** (`WCB1` + the same frame with `payload: null`), written by
//!   [`encode_stored`] when the compact JSON `payload` is byte for byte the body (a compact JSON
//!   webhook, the common case): the body is stored once instead of twice, and the payload is
//!   taken back from the body when read.

use serde_json::value::RawValue;
use webhook_connect_protocol::Envelope;

use crate::millis::ts;

/// Marks the payload-is-body form.
const PAYLOAD_IS_BODY: &[u8; 4] = b"WCB1";

/// The stored form of `envelope`, without a second copy of the body when the payload is the
/// body. `envelope` is left as it was.
pub(crate) fn encode_stored(envelope: &mut Envelope) -> Vec<u8> {
    if envelope.payload_encoding.is_some() || envelope.payload.get().as_bytes() != envelope.body {
        return envelope.encode();
    }
    let payload = std::mem::replace(&mut envelope.payload, RawValue::NULL.to_owned());
    let frame = envelope.encode();
    envelope.payload = payload;
    let mut out = Vec::with_capacity(PAYLOAD_IS_BODY.len() + frame.len());
    out.extend_from_slice(PAYLOAD_IS_BODY);
    out.extend_from_slice(&frame);
    out
}

/// Reads a stored envelope (either form), putting back the facts kept beside it.
pub(crate) fn decode_stored(raw: &[u8], seq: u64, expires_ms: Option<i64>) -> Option<Envelope> {
    let mut e = match raw.strip_prefix(PAYLOAD_IS_BODY) {
        Some(frame) => {
            let mut e = Envelope::decode(frame).ok()?;
            if e.payload.get() != "null" {
                return None;
            }
            let text = String::from_utf8(e.body.clone()).ok()?;
            e.payload = RawValue::from_string(text).ok()?;
            e
        }
        None => Envelope::decode(raw).ok()?,
    };
    e.sequence = seq;
    if expires_ms != e.expires_at.map(|x| x.unix_millis()) {
        e.expires_at = expires_ms.map(ts);
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use webhook_connect_protocol::{DataType, Headers, MessageId, Timestamp};

    fn envelope(payload: &str, body: &[u8]) -> Envelope {
        Envelope {
            message_id: MessageId::generate(),
            channel: "c".into(),
            webhook_id: "w".into(),
            namespace: None,
            sequence: 0,
            received_at: Timestamp::now(),
            expires_at: None,
            headers: Headers::new(),
            raw_headers: None,
            data_type: DataType::Json,
            content_type: None,
            payload: RawValue::from_string(payload.into()).unwrap(),
            payload_encoding: None,
            body_omitted: false,
            body: body.to_vec(),
        }
    }

    #[test]
    fn payload_equal_to_body_is_stored_once_and_read_back() {
        let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1000));
        let mut e = envelope(&body, body.as_bytes());
        let stored = encode_stored(&mut e);
        assert_eq!(e.payload.get(), body, "the caller's envelope is unchanged");
        assert!(stored.starts_with(PAYLOAD_IS_BODY));
        assert!(stored.len() < body.len() + 400, "{} bytes", stored.len());
        let back = decode_stored(&stored, 7, None).unwrap();
        assert_eq!(back.payload.get(), body);
        assert_eq!(back.body, body.as_bytes());
        assert_eq!(back.sequence, 7);
    }

    #[test]
    fn payload_differing_from_body_keeps_both() {
        let mut e = envelope(r#"{"a":1}"#, b"{ \"a\": 1 }");
        let stored = encode_stored(&mut e);
        assert!(stored.starts_with(b"WCE1"));
        let back = decode_stored(&stored, 1, None).unwrap();
        assert_eq!(back.payload.get(), r#"{"a":1}"#);
        assert_eq!(back.body, b"{ \"a\": 1 }");
    }

    #[test]
    fn payload_is_body_frame_with_bad_body_is_unreadable() {
        let mut e = envelope("null", b"not json");
        let frame = e.encode();
        let mut raw = PAYLOAD_IS_BODY.to_vec();
        raw.extend_from_slice(&frame);
        assert!(decode_stored(&raw, 1, None).is_none());
        e.payload = RawValue::from_string("1".into()).unwrap();
        let mut raw = PAYLOAD_IS_BODY.to_vec();
        raw.extend_from_slice(&e.encode());
        assert!(decode_stored(&raw, 1, None).is_none());
        assert!(decode_stored(b"WCB1", 1, None).is_none());
    }
}
