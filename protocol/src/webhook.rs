//! The flat `webhook` message carried by every transport (`docs/reference/wire-protocol.md` A.1.2, A.5, B.2).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{Headers, Timestamp};

/// How a webhook's body is interpreted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// The body is JSON; `payload` is its parsed value.
    #[default]
    Json,
    /// The body is opaque bytes; `payload` is a string (text or base64).
    Blob,
}

/// How `payload` encodes a `blob` body that is not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadEncoding {
    /// Standard base64 with padding.
    Base64,
}

/// One delivered message. v1 fields always; v2 fields (`Option`s) only on v2 connections.
///
/// v1 example:
/// ```json
/// {"type":"webhook","message_id":"msg_0190f7c2a1b34c5d8e9f0a1b2c3d4e5f","sequence":42,"webhook_id":"shop-orders","timestamp":"2026-03-14T09:27:01.004512+00:00","headers":{"content-type":"application/json"},"payload":{"id":"t1","hello":"world"}}
/// ```
///
/// The `type` member is written by [`crate::ServerFrame`]; reading ignores it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookMessage {
    /// Message id; the same on every redelivery.
    pub message_id: String,
    /// Per-channel number assigned at ingest (0 when a peer did not send one).
    #[serde(default)]
    pub sequence: u64,
    /// The webhook id from the ingest path.
    pub webhook_id: String,
    /// When the relay accepted the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// The ingest request headers (lower-case names).
    #[serde(default)]
    pub headers: Headers,
    /// The parsed body (json), or the body as a string (blob), compact JSON.
    #[serde(default = "null_payload")]
    pub payload: Box<RawValue>,
    /// Present only as `base64` for a non-UTF-8 blob body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_encoding: Option<PayloadEncoding>,
    /// v2: channel name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// v2: equals `timestamp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<Timestamp>,
    /// v2: `received_at + ttl`, or null.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    pub expires_at: Option<Option<Timestamp>>,
    /// v2: leases of this message, this one included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_count: Option<u32>,
    /// v2: deadline for ack or nack of this delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<Timestamp>,
    /// v2: the webhook's data type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<DataType>,
    /// v2: the ingest `Content-Type`, verbatim, or null.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    pub content_type: Option<Option<String>>,
    /// v2: the exact raw body bytes, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// v2: true when `body` was left out on purpose (credential cleanup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_omitted: Option<bool>,
    /// v2: the namespace of the namespaced ingest route, or null.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    pub namespace: Option<Option<String>>,
    /// v2, optional: headers in received order with their original case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_headers: Option<Vec<(String, String)>>,
    /// v2, optional: `v1,<base64 HMAC-SHA256>` by the relay (B.10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_signature: Option<String>,
    /// v2, optional: how often an administrator replayed this message from the dead letters
    /// (absent or 0: never). The connector says so to the target in `X-Webhook-Replayed` and
    /// `X-Webhook-Replay-Count` (`docs/reference/wire-protocol.md` B.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_count: Option<u32>,
}

fn null_payload() -> Box<RawValue> {
    null_raw()
}

/// The JSON `null` as a raw value.
pub(crate) fn null_raw() -> Box<RawValue> {
    Box::<RawValue>::default()
}

impl WebhookMessage {
    /// The exact body bytes when the relay sent `body` (v2); `None` on v1 or when omitted.
    pub fn raw_body(&self) -> Option<Result<Vec<u8>, base64::DecodeError>> {
        self.body.as_ref().map(|b| BASE64.decode(b))
    }

    /// The bytes to hand to a local target when no `body` is present (v1): a string payload is
    /// sent as its text (or its decoded bytes for `payload_encoding: base64`); any other JSON
    /// value as compact JSON text (`null`, `true`, `[1,2]`; R-76).
    pub fn payload_bytes(&self) -> Vec<u8> {
        let raw = self.payload.get();
        if raw.starts_with('"')
            && let Ok(text) = serde_json::from_str::<String>(raw)
        {
            if self.payload_encoding == Some(PayloadEncoding::Base64)
                && let Ok(bytes) = BASE64.decode(text.as_bytes())
            {
                return bytes;
            }
            return text.into_bytes();
        }
        raw.as_bytes().to_vec()
    }

    /// The body bytes to deliver locally: `body` when present and decodable, else
    /// [`WebhookMessage::payload_bytes`].
    pub fn delivery_body(&self) -> Vec<u8> {
        match self.raw_body() {
            Some(Ok(bytes)) => bytes,
            _ => self.payload_bytes(),
        }
    }
}

/// The `payload` of a `blob` body: a JSON string of the text when UTF-8, else the base64 text
/// with [`PayloadEncoding::Base64`] (`docs/reference/wire-protocol.md` A.5).
///
/// ```
/// use webhook_connect_protocol::webhook::blob_payload;
/// let (payload, enc) = blob_payload(b"a=1&b=2");
/// assert_eq!(payload.get(), r#""a=1&b=2""#);
/// assert!(enc.is_none());
/// ```
pub fn blob_payload(body: &[u8]) -> (Box<RawValue>, Option<PayloadEncoding>) {
    let (text, encoding) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), None),
        Err(_) => (BASE64.encode(body), Some(PayloadEncoding::Base64)),
    };
    let raw = serde_json::value::to_raw_value(&text).unwrap_or_else(|_| null_raw());
    (raw, encoding)
}

/// Serde helper for "absent / null / value" fields: `None` = absent, `Some(None)` = null.
pub(crate) mod nullable {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S: Serializer, T: Serialize>(
        value: &Option<Option<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: &str, encoding: Option<PayloadEncoding>) -> WebhookMessage {
        let json = format!(
            r#"{{"message_id":"m","webhook_id":"w","payload":{payload}{}}}"#,
            if encoding.is_some() {
                r#","payload_encoding":"base64""#
            } else {
                ""
            }
        );
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn non_string_payloads_are_forwarded_as_json_text_r76() {
        assert_eq!(message("null", None).payload_bytes(), b"null");
        assert_eq!(message("true", None).payload_bytes(), b"true");
        assert_eq!(message("[1,2]", None).payload_bytes(), b"[1,2]");
        assert_eq!(
            message(r#"{"a":1.10}"#, None).payload_bytes(),
            br#"{"a":1.10}"#
        );
    }

    #[test]
    fn string_payloads_are_forwarded_as_their_text_r05() {
        assert_eq!(
            message(r#""a=1&b=\"x\"""#, None).payload_bytes(),
            br#"a=1&b="x""#
        );
        assert_eq!(
            message(r#""//79""#, Some(PayloadEncoding::Base64)).payload_bytes(),
            [0xff, 0xfe, 0xfd]
        );
    }

    #[test]
    fn blob_payload_uses_base64_only_for_non_utf8_r05() {
        let (p, e) = blob_payload("grüß\n".as_bytes());
        assert_eq!(p.get(), "\"grüß\\n\"");
        assert_eq!(e, None);
        let (p, e) = blob_payload(&[0xff, 0x00]);
        assert_eq!(p.get(), "\"/wA=\"");
        assert_eq!(e, Some(PayloadEncoding::Base64));
    }

    #[test]
    fn delivery_body_prefers_the_raw_body() {
        let mut m = message(r#"{"a":1}"#, None);
        m.body = Some(BASE64.encode(b"{ \"a\" : 1 }"));
        assert_eq!(m.delivery_body(), b"{ \"a\" : 1 }");
        m.body = Some("!!".into());
        assert_eq!(m.delivery_body(), br#"{"a":1}"#);
    }

    #[test]
    fn missing_optional_fields_get_defaults() {
        let m: WebhookMessage =
            serde_json::from_str(r#"{"message_id":"m","webhook_id":"w","extra":{"x":1}}"#).unwrap();
        assert_eq!(m.sequence, 0);
        assert_eq!(m.payload.get(), "null");
        assert!(m.headers.is_empty());
        assert!(m.expires_at.is_none());
    }
}
