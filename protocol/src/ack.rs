//! `POST /connect/ack`: query parameters (v1 and v2), the v2 batch body, and response bodies
//! (`docs/reference/wire-protocol.md` A.4, B.9).

use serde::{Deserialize, Serialize};

use crate::ProtocolVersion;
use crate::frames::{AckItemResult, AckOutcome, AckStatus, MAX_IDS_PER_FRAME, MAX_REASON_CHARS};
use crate::report::DeliveryReport;

/// Largest ack request body (`413` above).
pub const MAX_ACK_BODY_BYTES: usize = 1024 * 1024;

/// What an ack request asks for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckAction {
    /// Remove from the buffer.
    Ack,
    /// Requeue or dead-letter.
    Nack,
    /// v2: extend the lease.
    Touch,
}

/// One settled message of an ack request (single query form or one batch entry).
///
/// Its serde form (the field names as written) is what relay instances pass to each other
/// when an ack reaches one that does not hold the connection; requests from connectors are
/// read by [`AckRequest::from_query`] and [`parse_batch`], never by serde.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRequest {
    /// The message.
    pub message_id: String,
    /// Ack, nack or touch.
    pub action: AckAction,
    /// For nack: requeue (default) or dead-letter.
    pub retry: bool,
    /// v2 nack: requested requeue delay.
    pub delay_ms: Option<u64>,
    /// v2 nack: reason text (cut to 1024 characters).
    pub reason: Option<String>,
    /// v2 ack or nack: the connector's report of its local delivery (for the message trace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<DeliveryReport>,
}

/// A query or body problem; `Display` is the `422` detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AckParamError(pub String);

/// Parses a boolean query value: `true/false/1/0/yes/no/on/off`, any case.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

impl AckRequest {
    /// Reads the query form. `Ok(None)` when there is no `message_id` and the request is v2 (the
    /// caller then reads the batch body); for v1 a missing `message_id` is an error.
    ///
    /// ```
    /// use webhook_connect_protocol::ack::{AckAction, AckRequest};
    /// use webhook_connect_protocol::ProtocolVersion;
    /// let q = [("message_id", "msg_1"), ("status", "nack"), ("retry", "NO")];
    /// let r = AckRequest::from_query(q, ProtocolVersion::V1).unwrap().unwrap();
    /// assert_eq!((r.action, r.retry), (AckAction::Nack, false));
    /// ```
    pub fn from_query<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        version: ProtocolVersion,
    ) -> Result<Option<Self>, AckParamError> {
        let (mut message_id, mut status, mut retry, mut delay, mut reason) =
            (None, None, None, None, None);
        for (key, value) in pairs {
            match key {
                "message_id" => message_id = Some(value),
                "status" => status = Some(value),
                "retry" => retry = Some(value),
                "delay_ms" if version.is_v2() => delay = Some(value),
                "reason" if version.is_v2() => reason = Some(value),
                _ => {}
            }
        }
        let action = match (status, version.is_v2()) {
            (None, _) | (Some("ack"), _) => AckAction::Ack,
            (Some("nack"), _) => AckAction::Nack,
            (Some("touch"), true) => AckAction::Touch,
            (Some(_), false) => return Err(AckParamError("status must be 'ack' or 'nack'".into())),
            (Some(_), true) => {
                return Err(AckParamError(
                    "status must be 'ack', 'nack' or 'touch'".into(),
                ));
            }
        };
        let retry = match retry {
            None => true,
            Some(v) => {
                parse_bool(v).ok_or_else(|| AckParamError("retry must be a boolean".into()))?
            }
        };
        let delay_ms = match delay {
            None => None,
            Some(v) => Some(
                v.parse::<u64>()
                    .map_err(|_| AckParamError("delay_ms must be a non-negative integer".into()))?,
            ),
        };
        let Some(message_id) = message_id.filter(|m| !m.is_empty()) else {
            return if version.is_v2() && message_id.is_none() {
                Ok(None)
            } else {
                Err(AckParamError("message_id is required".into()))
            };
        };
        Ok(Some(AckRequest {
            message_id: message_id.to_owned(),
            action,
            retry,
            delay_ms,
            reason: reason.map(|r| r.chars().take(MAX_REASON_CHARS).collect()),
            report: None,
        }))
    }
}

/// One entry of the v2 batch body.
#[derive(Debug, Clone, Deserialize)]
struct BatchEntry {
    message_id: String,
    #[serde(default = "default_status")]
    status: AckAction,
    #[serde(default)]
    retry: Option<bool>,
    #[serde(default)]
    delay_ms: Option<u64>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    report: Option<serde_json::Value>,
}

fn default_status() -> AckAction {
    AckAction::Ack
}

#[derive(Debug, Clone, Deserialize)]
struct BatchBody {
    acks: Vec<serde_json::Value>,
}

/// The batch body could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckBatchError {
    /// More than 1000 entries (`413`).
    #[error("Too many acknowledgments in one request (max 1000)")]
    TooMany,
    /// Not the documented shape (`422`).
    #[error("{0}")]
    Malformed(String),
}

/// Reads the v2 batch body `{"acks":[{"message_id","status","retry","delay_ms","reason"}…]}`.
pub fn parse_batch(body: &[u8]) -> Result<Vec<AckRequest>, AckBatchError> {
    let parsed: BatchBody = serde_json::from_slice(body)
        .map_err(|_| AckBatchError::Malformed("Body must be {\"acks\":[…]}".into()))?;
    if parsed.acks.len() > MAX_IDS_PER_FRAME {
        return Err(AckBatchError::TooMany);
    }
    if parsed.acks.is_empty() {
        return Err(AckBatchError::Malformed(
            "acks must hold 1 to 1000 entries".into(),
        ));
    }
    parsed
        .acks
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let e: BatchEntry = serde_json::from_value(v)
                .map_err(|err| AckBatchError::Malformed(format!("acks[{i}]: {err}")))?;
            Ok(AckRequest {
                message_id: e.message_id,
                action: e.status,
                retry: e.retry.unwrap_or(true),
                delay_ms: e.delay_ms,
                reason: e.reason.map(|r| r.chars().take(MAX_REASON_CHARS).collect()),
                report: DeliveryReport::from_value(e.report.as_ref()),
            })
        })
        .collect()
}

/// `200` body of the single form: `{"status":"ok","message_id":"…"}` (+ `outcome` in v2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckResponse {
    /// `ok`, or `not_in_flight` / `error` on v2 failures.
    pub status: AckStatus,
    /// The message.
    pub message_id: String,
    /// v2: what happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AckOutcome>,
}

/// `200` body of the v2 batch form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckBatchResponse {
    /// One result per entry, in request order.
    pub results: Vec<AckItemResult>,
}

/// The error body of every relay error response: `{"detail":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What is wrong; always a string on our relay.
    pub detail: serde_json::Value,
    /// v2 ack failures: `not_in_flight` or `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AckStatus>,
}

impl ErrorBody {
    /// `{"detail": text}`.
    pub fn new(detail: impl Into<String>) -> Self {
        ErrorBody {
            detail: serde_json::Value::String(detail.into()),
            status: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(
        pairs: &[(&'static str, &'static str)],
        v: ProtocolVersion,
    ) -> Result<Option<AckRequest>, AckParamError> {
        AckRequest::from_query(pairs.iter().copied(), v)
    }

    #[test]
    fn query_defaults_are_ack_and_retry_true() {
        let r = q(&[("message_id", "m")], ProtocolVersion::V1)
            .unwrap()
            .unwrap();
        assert_eq!(r.action, AckAction::Ack);
        assert!(r.retry);
    }

    #[test]
    fn query_errors_have_the_spec_details() {
        use ProtocolVersion::*;
        assert_eq!(
            q(&[("message_id", "m"), ("status", "ok")], V1)
                .unwrap_err()
                .0,
            "status must be 'ack' or 'nack'"
        );
        assert_eq!(
            q(&[("message_id", "m"), ("status", "touch")], V1)
                .unwrap_err()
                .0,
            "status must be 'ack' or 'nack'"
        );
        assert_eq!(
            q(&[("message_id", "m"), ("retry", "maybe")], V1)
                .unwrap_err()
                .0,
            "retry must be a boolean"
        );
        assert_eq!(q(&[], V1).unwrap_err().0, "message_id is required");
        assert_eq!(
            q(&[("message_id", "")], V2).unwrap_err().0,
            "message_id is required"
        );
        assert_eq!(q(&[], V2).unwrap(), None);
        let touch = q(&[("message_id", "m"), ("status", "touch")], V2)
            .unwrap()
            .unwrap();
        assert_eq!(touch.action, AckAction::Touch);
    }

    #[test]
    fn booleans_accept_the_documented_spellings() {
        for t in ["true", "TRUE", "1", "yes", "On"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["false", "0", "No", "OFF"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("2"), None);
    }

    #[test]
    fn batch_body_is_bounded_and_typed() {
        let ok = parse_batch(br#"{"acks":[{"message_id":"a"},{"message_id":"b","status":"nack","retry":false,"delay_ms":5,"reason":"x"}]}"#).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].action, AckAction::Nack);
        assert!(!ok[1].retry);
        let too_many = format!(
            r#"{{"acks":[{}]}}"#,
            vec![r#"{"message_id":"a"}"#; 1001].join(",")
        );
        assert_eq!(
            parse_batch(too_many.as_bytes()).unwrap_err(),
            AckBatchError::TooMany
        );
        assert!(matches!(
            parse_batch(b"{}"),
            Err(AckBatchError::Malformed(_))
        ));
        assert!(matches!(
            parse_batch(br#"{"acks":[]}"#),
            Err(AckBatchError::Malformed(_))
        ));
        assert!(matches!(
            parse_batch(br#"{"acks":[{"message_id":1}]}"#),
            Err(AckBatchError::Malformed(_))
        ));
        assert!(matches!(
            parse_batch(br#"{"acks":[{"message_id":"a","status":"later"}]}"#),
            Err(AckBatchError::Malformed(_))
        ));
    }

    #[test]
    fn response_bodies_match_the_spec() {
        let r = AckResponse {
            status: AckStatus::Ok,
            message_id: "msg_1".into(),
            outcome: None,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"status":"ok","message_id":"msg_1"}"#
        );
        assert_eq!(
            serde_json::to_string(&ErrorBody::new("Message not in flight")).unwrap(),
            r#"{"detail":"Message not in flight"}"#
        );
    }
}
