//! The message as the buffer stores it: everything needed to deliver it on any transport and
//! version, including the exact raw body bytes (`docs/reference/http-api.md` §1.4).
//!
//! Stored form ([`Envelope::encode`]): the magic `WCE1`, a 4-byte big-endian length, that many
//! bytes of compact JSON metadata (every field but the body), then the raw body bytes as they
//! are. The body is never re-encoded, so a 10 MiB body costs 10 MiB on disk, not 13.3.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use crate::webhook::DataType;
use crate::webhook::{PayloadEncoding, WebhookMessage};
use crate::{Headers, MessageId, ProtocolVersion, Timestamp};

const MAGIC: &[u8; 4] = b"WCE1";

/// A stored envelope could not be read (R-63: the buffer dead-letters such entries).
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Too short, or not starting with the magic bytes.
    #[error("not a stored envelope")]
    BadFrame,
    /// The metadata is not the expected JSON.
    #[error("unreadable envelope metadata: {0}")]
    Metadata(#[from] serde_json::Error),
}

/// A message as stored in its webhook queue. The delivery count and lease live beside it in the
/// buffer; this part never changes after ingest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// New id assigned at ingest.
    pub message_id: MessageId,
    /// Channel of the webhook.
    pub channel: String,
    /// The webhook id from the path (also when stored in the `default` queue).
    pub webhook_id: String,
    /// The `{namespace}` path segment, when the namespaced route was used.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Per-channel number, increasing in ingest order.
    pub sequence: u64,
    /// When the relay accepted the message.
    pub received_at: Timestamp,
    /// `received_at + ttl`; never delivered after it.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// Relayed headers (lower-case names, consumed credentials and hop-by-hop removed).
    #[serde(default)]
    pub headers: Headers,
    /// The same headers in received order and case, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_headers: Option<Vec<(String, String)>>,
    /// The webhook's data type.
    #[serde(default)]
    pub data_type: DataType,
    /// The ingest `Content-Type`, verbatim.
    #[serde(default)]
    pub content_type: Option<String>,
    /// The v1 `payload`, compact JSON.
    pub payload: Box<RawValue>,
    /// `base64` for a non-UTF-8 blob body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_encoding: Option<PayloadEncoding>,
    /// True when the body must not be relayed (credential cleanup).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub body_omitted: bool,
    /// The exact raw request body. Not part of the metadata JSON.
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// Per-delivery facts added to a v2 `webhook` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryInfo {
    /// Leases of the message, this one included.
    pub delivery_count: u32,
    /// Deadline of this lease.
    pub lease_expires_at: Timestamp,
}

impl Envelope {
    /// The stored form: magic, metadata length, metadata JSON, raw body.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising a struct of strings, numbers and raw JSON cannot fail.
        let meta = serde_json::to_vec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(8 + meta.len() + self.body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.body);
        out
    }

    /// Reads the stored form; never panics on bad input.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let rest = bytes.strip_prefix(MAGIC).ok_or(EnvelopeError::BadFrame)?;
        let (len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or(EnvelopeError::BadFrame)?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(EnvelopeError::BadFrame);
        }
        let (meta, body) = rest.split_at(len);
        let mut envelope: Envelope = serde_json::from_slice(meta)?;
        envelope.body = body.to_vec();
        Ok(envelope)
    }

    /// True when `expires_at` has passed at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }

    /// The `webhook` message for a connection of `version`. v2 fields are filled only for v2,
    /// from `delivery`.
    pub fn to_webhook(&self, version: ProtocolVersion, delivery: DeliveryInfo) -> WebhookMessage {
        let mut message = WebhookMessage {
            message_id: self.message_id.as_str().to_owned(),
            sequence: self.sequence,
            webhook_id: self.webhook_id.clone(),
            timestamp: Some(self.received_at),
            headers: self.headers.clone(),
            payload: self.payload.clone(),
            payload_encoding: self.payload_encoding,
            channel: None,
            received_at: None,
            expires_at: None,
            delivery_count: None,
            lease_expires_at: None,
            data_type: None,
            content_type: None,
            body: None,
            body_omitted: None,
            namespace: None,
            raw_headers: None,
            relay_signature: None,
            replay_count: None,
        };
        if version.is_v2() {
            message.channel = Some(self.channel.clone());
            message.received_at = Some(self.received_at);
            message.expires_at = Some(self.expires_at);
            message.delivery_count = Some(delivery.delivery_count);
            message.lease_expires_at = Some(delivery.lease_expires_at);
            message.data_type = Some(self.data_type);
            message.content_type = Some(self.content_type.clone());
            if self.body_omitted {
                message.body_omitted = Some(true);
            } else {
                message.body = Some(BASE64.encode(&self.body));
            }
            message.namespace = Some(self.namespace.clone());
            message.raw_headers = self.raw_headers.clone();
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Envelope {
        let mut headers = Headers::new();
        headers.append("Content-Type", "application/json; charset=utf-8");
        headers.append("Stripe-Signature", "t=1773480421,v1=5257a869");
        Envelope {
            message_id: MessageId::parse("msg_0190f7c2a1b34c5d8e9f0a1b2c3d4e5f").unwrap(),
            channel: "payments".into(),
            webhook_id: "stripe".into(),
            namespace: None,
            sequence: 42,
            received_at: "2026-03-14T09:27:01.004512+00:00".parse().unwrap(),
            expires_at: Some("2026-03-15T09:27:01.004512+00:00".parse().unwrap()),
            headers,
            raw_headers: None,
            data_type: DataType::Json,
            content_type: Some("application/json; charset=utf-8".into()),
            payload: RawValue::from_string(r#"{"id":"evt_1","type":"charge.succeeded"}"#.into())
                .unwrap(),
            payload_encoding: None,
            body_omitted: false,
            body: br#"{"id":"evt_1","type":"charge.succeeded"}"#.to_vec(),
        }
    }

    #[test]
    fn encode_decode_round_trips_with_exact_body() {
        let mut e = sample();
        e.body = vec![0, 255, b'\n', 13, b' '];
        let decoded = Envelope::decode(&e.encode()).unwrap();
        assert_eq!(decoded.body, e.body);
        assert_eq!(decoded.message_id, e.message_id);
        assert_eq!(decoded.payload.get(), e.payload.get());
        assert_eq!(decoded.headers, e.headers);
        assert_eq!(decoded.expires_at, e.expires_at);
    }

    #[test]
    fn unreadable_stored_bytes_are_errors_r63() {
        assert!(matches!(
            Envelope::decode(b""),
            Err(EnvelopeError::BadFrame)
        ));
        assert!(matches!(
            Envelope::decode(b"WCE1\0\0\0\x09{}"),
            Err(EnvelopeError::BadFrame)
        ));
        assert!(matches!(
            Envelope::decode(b"WCE1\0\0\0\x02{}"),
            Err(EnvelopeError::Metadata(_))
        ));
        assert!(matches!(
            Envelope::decode(b"XXXX\0\0\0\0"),
            Err(EnvelopeError::BadFrame)
        ));
    }

    #[test]
    fn v2_webhook_matches_the_spec_example() {
        let e = sample();
        let delivery = DeliveryInfo {
            delivery_count: 1,
            lease_expires_at: "2026-03-14T09:27:31.010204+00:00".parse().unwrap(),
        };
        let frame =
            crate::ServerFrame::Webhook(Box::new(e.to_webhook(ProtocolVersion::V2, delivery)));
        let expected = r#"{"type":"webhook","message_id":"msg_0190f7c2a1b34c5d8e9f0a1b2c3d4e5f","sequence":42,"webhook_id":"stripe","timestamp":"2026-03-14T09:27:01.004512+00:00","headers":{"content-type":"application/json; charset=utf-8","stripe-signature":"t=1773480421,v1=5257a869"},"payload":{"id":"evt_1","type":"charge.succeeded"},"channel":"payments","received_at":"2026-03-14T09:27:01.004512+00:00","expires_at":"2026-03-15T09:27:01.004512+00:00","delivery_count":1,"lease_expires_at":"2026-03-14T09:27:31.010204+00:00","data_type":"json","content_type":"application/json; charset=utf-8","body":"eyJpZCI6ImV2dF8xIiwidHlwZSI6ImNoYXJnZS5zdWNjZWVkZWQifQ==","namespace":null}"#;
        assert_eq!(frame.to_json(), expected);
    }

    #[test]
    fn v1_webhook_has_only_v1_fields() {
        let e = sample();
        let delivery = DeliveryInfo {
            delivery_count: 3,
            lease_expires_at: Timestamp::now(),
        };
        let frame =
            crate::ServerFrame::Webhook(Box::new(e.to_webhook(ProtocolVersion::V1, delivery)));
        let expected = r#"{"type":"webhook","message_id":"msg_0190f7c2a1b34c5d8e9f0a1b2c3d4e5f","sequence":42,"webhook_id":"stripe","timestamp":"2026-03-14T09:27:01.004512+00:00","headers":{"content-type":"application/json; charset=utf-8","stripe-signature":"t=1773480421,v1=5257a869"},"payload":{"id":"evt_1","type":"charge.succeeded"}}"#;
        assert_eq!(frame.to_json(), expected);
    }

    #[test]
    fn omitted_body_is_flagged_not_sent() {
        let mut e = sample();
        e.body_omitted = true;
        let delivery = DeliveryInfo {
            delivery_count: 1,
            lease_expires_at: Timestamp::now(),
        };
        let m = e.to_webhook(ProtocolVersion::V2, delivery);
        assert_eq!(m.body, None);
        assert_eq!(m.body_omitted, Some(true));
    }

    #[test]
    fn expiry_is_inclusive_of_the_deadline() {
        let e = sample();
        let deadline = e.expires_at.unwrap();
        assert!(e.is_expired(deadline));
        assert!(!e.is_expired(e.received_at));
    }
}
