//! How network modules turn a [`Delivery`] into what they send or store: the `body` choice
//! (`json` = the payload's JSON, `raw` = the exact body bytes with their content type), the
//! envelope object some sinks carry, and the message's stable UUID for primary keys
//! (`docs/reference/module-contract.md` §2.3: the idempotency key is always `message_id`).

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{Delivery, ErrorCategory, OutputError};
use crate::settings::Problems;
use crate::settings::Reader;

/// Namespace of [`message_uuid`]; fixed forever, so a redelivery maps to the same id.
const MESSAGE_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a4e_9b7d_4c1a_8e35_0d2b_7f64_a9c3);

/// `UUIDv5(fixed namespace, message_id)`: the primary key of a message in database sinks.
pub(crate) fn message_uuid(message_id: &str) -> Uuid {
    Uuid::new_v5(&MESSAGE_NAMESPACE, message_id.as_bytes())
}

/// What a module sends as the message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFormat {
    /// The JSON text of `payload`, as `application/json`.
    Json,
    /// The exact received body bytes with their original content type.
    Raw,
}

impl BodyFormat {
    /// Reads `key` (`"json"` or `"raw"`, default `json`).
    pub(crate) fn read(r: &mut Reader<'_>, p: &mut Problems, key: &'static str) -> Self {
        match r.choice(p, key, "json", &["json", "raw"]) {
            "raw" => BodyFormat::Raw,
            _ => BodyFormat::Json,
        }
    }
}

/// An encoded body and its content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Encoded {
    pub(crate) bytes: Vec<u8>,
    pub(crate) content_type: String,
}

/// Encodes `d` as `format` says. `raw` without body bytes is `Permanent`/`invalid_data`.
pub(crate) fn encode(d: &Delivery, format: BodyFormat) -> Result<Encoded, OutputError> {
    match format {
        BodyFormat::Json => Ok(Encoded {
            bytes: d.payload_json().into_bytes(),
            content_type: "application/json".to_owned(),
        }),
        BodyFormat::Raw if d.body.is_empty() => Err(OutputError::permanent(
            ErrorCategory::InvalidData,
            "body \"raw\" needs the raw body bytes, and this message has none",
        )),
        BodyFormat::Raw => Ok(Encoded {
            bytes: d.body.to_vec(),
            content_type: d
                .content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".to_owned()),
        }),
    }
}

/// The headers as a JSON object.
pub(crate) fn headers_json(d: &Delivery) -> Value {
    Value::Object(
        d.headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

/// `{"payload","headers","message_id","webhook_id"}`: the original's `{payload, headers}` plus
/// the ids a consumer needs to deduplicate.
pub(crate) fn envelope(d: &Delivery) -> Value {
    json!({
        "payload": d.payload,
        "headers": headers_json(d),
        "message_id": d.message_id,
        "webhook_id": d.webhook_id,
    })
}

/// When the message was received (RFC 3339), or now when the relay did not say.
pub(crate) fn received_at(d: &Delivery) -> String {
    d.received_at
        .clone()
        .unwrap_or_else(|| chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;

    /// A delivery for unit tests.
    pub(crate) fn delivery(body: &[u8]) -> Delivery {
        Delivery {
            message_id: "msg_1".into(),
            webhook_id: "orders".into(),
            channel: "ch".into(),
            sequence: 1,
            delivery_count: 1,
            received_at: None,
            headers: BTreeMap::from([("x-a".to_owned(), "1".to_owned())]),
            payload: json!({"n": 1}),
            body: Arc::from(body),
            content_type: Some("text/plain".into()),
            data_type: "json".into(),
        }
    }

    #[test]
    fn message_uuid_is_stable_and_distinct() {
        assert_eq!(message_uuid("a"), message_uuid("a"));
        assert_ne!(message_uuid("a"), message_uuid("b"));
        assert_eq!(message_uuid("a").get_version_num(), 5);
    }

    #[test]
    fn raw_needs_a_body_and_keeps_its_content_type() {
        let e = encode(&delivery(b""), BodyFormat::Raw).expect_err("no body");
        assert_eq!(e.kind, super::super::ErrorKind::Permanent);
        let raw = encode(&delivery(b"hi"), BodyFormat::Raw).expect("raw");
        assert_eq!(
            (raw.bytes.as_slice(), raw.content_type.as_str()),
            (&b"hi"[..], "text/plain")
        );
        let j = encode(&delivery(b"hi"), BodyFormat::Json).expect("json");
        assert_eq!(j.bytes, br#"{"n":1}"#);
    }
}
