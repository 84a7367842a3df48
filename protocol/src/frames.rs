//! WebSocket frames in both directions (`docs/reference/wire-protocol.md` A.1.2–A.1.3, B.3–B.6).
//!
//! Encoding is exact: [`ServerFrame::to_json`] writes the members in the spec's order. Decoding
//! is lenient: unknown members are ignored and unknown types come back as `Unknown`. Malformed
//! input is an error value with the v2 error code, never a panic.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::close::CloseNotice;
use crate::report::DeliveryReport;
use crate::{Timestamp, WebhookMessage};

/// Most ids in one v2 ack, nack or touch frame.
pub const MAX_IDS_PER_FRAME: usize = 1000;
/// Longest `ref` a client may send.
pub const MAX_REF_LEN: usize = 64;
/// Longest nack `reason` kept (longer ones are cut).
pub const MAX_REASON_CHARS: usize = 1024;

/// `connected`: first frame of every connection.
///
/// ```json
/// {"type":"connected","connection_id":"wsc_6f1c0e9a2b3d4c5e8f7a6b5c4d3e2f10","channel":"orders","timestamp":"2026-03-14T09:26:53.589793+00:00"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connected {
    /// Id of this connection.
    pub connection_id: String,
    /// Channel name.
    pub channel: String,
    /// Time of registration (absent in the v1 SSE event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// v2: always 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    /// v2: the relay's heartbeat period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_ms: Option<u64>,
    /// v2: silence after which the relay evicts the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout_ms: Option<u64>,
    /// v2: lease length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_timeout_ms: Option<u64>,
    /// v2: effective in-flight limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// v2: relay clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_time: Option<Timestamp>,
}

/// `heartbeat` from the relay.
///
/// ```json
/// {"type":"heartbeat","timestamp":"2026-03-14T09:27:23.590010+00:00","server_time":"2026-03-14T09:27:23.590010+00:00"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Send time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// Send time again (compatibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_time: Option<Timestamp>,
    /// v2: messages leased to this connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u64>,
    /// v2: messages waiting in the channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<u64>,
}

impl Heartbeat {
    /// A heartbeat sent now; `counts` = `(in_flight, queued)` for v2.
    pub fn now(counts: Option<(u64, u64)>) -> Self {
        let now = Timestamp::now();
        Heartbeat {
            timestamp: Some(now),
            server_time: Some(now),
            in_flight: counts.map(|c| c.0),
            queued: counts.map(|c| c.1),
        }
    }
}

/// Result status of one id in an `ack_result` (B.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// Done and durable.
    Ok,
    /// Unknown id, lease expired or leased elsewhere; nothing changed.
    NotInFlight,
    /// The buffer failed; the lease is unchanged.
    Error,
    /// A status this version does not know.
    #[serde(other)]
    Unknown,
}

/// What an `ok` ack, nack or touch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckOutcome {
    /// Removed from the buffer.
    Acked,
    /// Pending again after a delay.
    Requeued,
    /// Moved to the dead letters.
    DeadLettered,
    /// Lease extended (touch).
    Extended,
    /// An outcome this version does not know.
    #[serde(other)]
    Unknown,
}

/// One entry of `ack_result.results` (and of the HTTP batch ack response).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckItemResult {
    /// The id as sent.
    pub message_id: String,
    /// What happened.
    pub status: AckStatus,
    /// Present only when `status` is `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AckOutcome>,
}

/// `ack_result`: the relay's one answer to each v2 ack, nack or touch frame.
///
/// ```json
/// {"type":"ack_result","ref":"b17","results":[{"message_id":"msg_1","status":"ok","outcome":"acked"},{"message_id":"msg_2","status":"not_in_flight"}]}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckResult {
    /// The client's `ref`, or null.
    #[serde(rename = "ref", default)]
    pub reference: Option<String>,
    /// One entry per id, in request order.
    #[serde(default)]
    pub results: Vec<AckItemResult>,
}

/// Codes of the v2 `error` frame (B.5) and SSE `error` event (B.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameErrorCode {
    /// Not UTF-8 or JSON, not an object, binary, or no string `type`.
    MalformedFrame,
    /// A known field of the wrong type or out of range.
    InvalidField,
    /// More than 1000 ids.
    TooManyIds,
    /// Relay-side failure (SSE `error` event).
    Internal,
    /// A code this version does not know.
    #[serde(other)]
    Unknown,
}

/// The v2 `error` frame.
///
/// ```json
/// {"type":"error","code":"malformed_frame","message":"Frame is not a JSON object","ref":null}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// What went wrong.
    #[serde(default = "unknown_code")]
    pub code: FrameErrorCode,
    /// Human-readable text (`error` in the v1 SSE event).
    #[serde(default, alias = "error")]
    pub message: String,
    /// The client's `ref` when it could be read.
    #[serde(rename = "ref", default)]
    pub reference: Option<String>,
}

fn unknown_code() -> FrameErrorCode {
    FrameErrorCode::Unknown
}

/// A frame from the relay to a connector.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame.
    Connected(Connected),
    /// A delivered message.
    Webhook(Box<WebhookMessage>),
    /// Liveness.
    Heartbeat(Heartbeat),
    /// v2 answer to an ack, nack or touch.
    AckResult(AckResult),
    /// v2 answer to a frame the relay could not process.
    Error(ErrorFrame),
    /// v2 notice before the relay closes.
    Close(CloseNotice),
    /// A frame or event of a type this version does not know (never encoded).
    #[serde(skip)]
    Unknown(String),
}

/// A server frame or SSE event could not be read (the connector logs and skips it, C.6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable server frame: {0}")]
pub struct ServerFrameError(pub String);

#[derive(Deserialize)]
struct TypeOnly<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

impl ServerFrame {
    /// Compact JSON of this frame. `Unknown` frames encode as `{}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The name of this frame's type / SSE event.
    pub fn type_name(&self) -> &str {
        match self {
            ServerFrame::Connected(_) => "connected",
            ServerFrame::Webhook(_) => "webhook",
            ServerFrame::Heartbeat(_) => "heartbeat",
            ServerFrame::AckResult(_) => "ack_result",
            ServerFrame::Error(_) => "error",
            ServerFrame::Close(_) => "close",
            ServerFrame::Unknown(name) => name,
        }
    }

    /// Reads a WebSocket text frame from the relay.
    pub fn decode(text: &str) -> Result<ServerFrame, ServerFrameError> {
        let head: TypeOnly<'_> =
            serde_json::from_str(text).map_err(|e| ServerFrameError(e.to_string()))?;
        let kind = head
            .kind
            .ok_or_else(|| ServerFrameError("frame has no string 'type'".into()))?;
        Self::decode_typed(&kind, text)
    }

    /// Reads an SSE event from the relay: the event name selects the type, and `data` holds
    /// the object (which in v1 has no `type` member).
    pub fn from_sse(event: &str, data: &str) -> Result<ServerFrame, ServerFrameError> {
        Self::decode_typed(event, data)
    }

    fn decode_typed(kind: &str, text: &str) -> Result<ServerFrame, ServerFrameError> {
        fn parse<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, ServerFrameError> {
            serde_json::from_str(text).map_err(|e| ServerFrameError(e.to_string()))
        }
        Ok(match kind {
            "connected" => ServerFrame::Connected(parse(text)?),
            "webhook" => ServerFrame::Webhook(Box::new(parse(text)?)),
            "heartbeat" => ServerFrame::Heartbeat(parse(text)?),
            "ack_result" => ServerFrame::AckResult(parse(text)?),
            "error" => ServerFrame::Error(parse(text)?),
            "close" => ServerFrame::Close(parse(text)?),
            other => {
                // Still require a JSON object, so garbage is not mistaken for a new type.
                let _: Map<String, Value> = parse(text)?;
                ServerFrame::Unknown(other.to_owned())
            }
        })
    }
}

/// A v2 client frame could not be processed; the relay answers with an `error` frame (v2) or
/// counts it (v1) and keeps reading (C.6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FrameError {
    /// The `error` frame code.
    pub code: FrameErrorCode,
    /// Human-readable text.
    pub message: String,
    /// The client's `ref`, when it could be read.
    pub reference: Option<String>,
}

impl FrameError {
    fn malformed(message: &str) -> Self {
        FrameError {
            code: FrameErrorCode::MalformedFrame,
            message: message.to_owned(),
            reference: None,
        }
    }

    fn invalid(message: impl Into<String>, reference: &Option<String>) -> Self {
        FrameError {
            code: FrameErrorCode::InvalidField,
            message: message.into(),
            reference: reference.clone(),
        }
    }

    /// The `error` frame answering this failure.
    pub fn to_frame(&self) -> ServerFrame {
        ServerFrame::Error(ErrorFrame {
            code: self.code,
            message: self.message.clone(),
            reference: self.reference.clone(),
        })
    }
}

/// A frame from a connector to the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// Ack of one or more in-flight messages.
    Ack {
        /// The ids (one for `message_id`, several for v2 `message_ids`).
        message_ids: Vec<String>,
        /// v2 `ref`, echoed in `ack_result`.
        reference: Option<String>,
        /// v2 `report`: the local delivery, for the message trace (ignored when absent).
        report: Option<DeliveryReport>,
    },
    /// Nack of one or more in-flight messages.
    Nack {
        /// The ids.
        message_ids: Vec<String>,
        /// Requeue (`true`, the default) or dead-letter at once.
        retry: bool,
        /// v2 requested requeue delay (clamped by the relay).
        delay_ms: Option<u64>,
        /// v2 reason text, cut to 1024 characters.
        reason: Option<String>,
        /// v2 `ref`.
        reference: Option<String>,
        /// v2 `report`: the local delivery, for the message trace (ignored when absent).
        report: Option<DeliveryReport>,
    },
    /// v2 lease extension.
    Touch {
        /// The ids.
        message_ids: Vec<String>,
        /// v2 `ref`.
        reference: Option<String>,
    },
    /// Liveness echo.
    Heartbeat {
        /// Optional client time, as sent.
        timestamp: Option<String>,
    },
    /// A frame of a type this version does not know: ignored without an error (C.6).
    Unknown(String),
}

impl ClientFrame {
    /// Reads a binary client frame: always malformed (C.6).
    pub fn decode_binary(_bytes: &[u8]) -> Result<ClientFrame, FrameError> {
        Err(FrameError::malformed("Binary frames are not supported"))
    }

    /// Reads a client text frame given as raw bytes (checks UTF-8 first).
    pub fn decode_bytes(bytes: &[u8]) -> Result<ClientFrame, FrameError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| FrameError::malformed("Frame is not valid UTF-8"))?;
        Self::decode(text)
    }

    /// Reads a client text frame.
    ///
    /// ```
    /// use webhook_connect_protocol::ClientFrame;
    /// let f = ClientFrame::decode(r#"{"type":"nack","message_id":"msg_1"}"#).unwrap();
    /// assert!(matches!(f, ClientFrame::Nack { retry: true, .. }));
    /// ```
    pub fn decode(text: &str) -> Result<ClientFrame, FrameError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|_| FrameError::malformed("Frame is not valid JSON"))?;
        let Value::Object(object) = value else {
            return Err(FrameError::malformed("Frame is not a JSON object"));
        };
        let reference = match object.get("ref") {
            None | Some(Value::Null) => None,
            Some(Value::String(r)) if r.chars().count() <= MAX_REF_LEN => Some(r.clone()),
            Some(_) => {
                let kind_ok = matches!(object.get("type"), Some(Value::String(_)));
                let mut err =
                    FrameError::invalid("'ref' must be a string of at most 64 characters", &None);
                if !kind_ok {
                    err.code = FrameErrorCode::MalformedFrame;
                    err.message = "Frame has no string 'type'".into();
                }
                return Err(err);
            }
        };
        let Some(Value::String(kind)) = object.get("type") else {
            let mut err = FrameError::malformed("Frame has no string 'type'");
            err.reference = reference;
            return Err(err);
        };
        match kind.as_str() {
            "ack" => Ok(ClientFrame::Ack {
                message_ids: ids(&object, &reference)?,
                reference,
                report: DeliveryReport::from_value(object.get("report")),
            }),
            "touch" => Ok(ClientFrame::Touch {
                message_ids: ids(&object, &reference)?,
                reference,
            }),
            "nack" => {
                let message_ids = ids(&object, &reference)?;
                let retry = match object.get("retry") {
                    None | Some(Value::Null) => true,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => {
                        return Err(FrameError::invalid("'retry' must be a boolean", &reference));
                    }
                };
                let delay_ms = match object.get("delay_ms") {
                    None | Some(Value::Null) => None,
                    Some(Value::Number(n)) => match n.as_u64() {
                        Some(ms) => Some(ms),
                        None => {
                            return Err(FrameError::invalid(
                                "'delay_ms' must be a non-negative integer",
                                &reference,
                            ));
                        }
                    },
                    Some(_) => {
                        return Err(FrameError::invalid(
                            "'delay_ms' must be a non-negative integer",
                            &reference,
                        ));
                    }
                };
                let reason = match object.get("reason") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(r)) => Some(r.chars().take(MAX_REASON_CHARS).collect()),
                    Some(_) => {
                        return Err(FrameError::invalid("'reason' must be a string", &reference));
                    }
                };
                Ok(ClientFrame::Nack {
                    message_ids,
                    retry,
                    delay_ms,
                    reason,
                    reference,
                    report: DeliveryReport::from_value(object.get("report")),
                })
            }
            "heartbeat" => {
                let timestamp = match object.get("timestamp") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(t)) => Some(t.clone()),
                    Some(_) => {
                        return Err(FrameError::invalid(
                            "'timestamp' must be a string",
                            &reference,
                        ));
                    }
                };
                Ok(ClientFrame::Heartbeat { timestamp })
            }
            other => Ok(ClientFrame::Unknown(other.to_owned())),
        }
    }

    /// Compact JSON of this frame as a connector sends it. `Unknown` encodes as `{}`.
    ///
    /// ```
    /// use webhook_connect_protocol::ClientFrame;
    /// let ack = ClientFrame::Ack { message_ids: vec!["msg_1".into()], reference: None, report: None };
    /// assert_eq!(ack.to_json(), r#"{"type":"ack","message_id":"msg_1"}"#);
    /// ```
    pub fn to_json(&self) -> String {
        let mut out = Map::new();
        let put_ids = |out: &mut Map<String, Value>, ids: &[String]| {
            if let [one] = ids {
                out.insert("message_id".into(), Value::String(one.clone()));
            } else {
                out.insert(
                    "message_ids".into(),
                    ids.iter().cloned().map(Value::String).collect(),
                );
            }
        };
        let put_ref = |out: &mut Map<String, Value>, r: &Option<String>| {
            if let Some(r) = r {
                out.insert("ref".into(), Value::String(r.clone()));
            }
        };
        let put_report = |out: &mut Map<String, Value>, r: &Option<DeliveryReport>| {
            if let Some(r) = r.as_ref().filter(|r| !r.is_empty()) {
                out.insert("report".into(), r.to_value());
            }
        };
        match self {
            ClientFrame::Ack {
                message_ids,
                reference,
                report,
            } => {
                out.insert("type".into(), "ack".into());
                put_ids(&mut out, message_ids);
                put_ref(&mut out, reference);
                put_report(&mut out, report);
            }
            ClientFrame::Touch {
                message_ids,
                reference,
            } => {
                out.insert("type".into(), "touch".into());
                put_ids(&mut out, message_ids);
                put_ref(&mut out, reference);
            }
            ClientFrame::Nack {
                message_ids,
                retry,
                delay_ms,
                reason,
                reference,
                report,
            } => {
                out.insert("type".into(), "nack".into());
                put_ids(&mut out, message_ids);
                out.insert("retry".into(), Value::Bool(*retry));
                if let Some(ms) = delay_ms {
                    out.insert("delay_ms".into(), Value::from(*ms));
                }
                if let Some(r) = reason {
                    out.insert("reason".into(), Value::String(r.clone()));
                }
                put_ref(&mut out, reference);
                put_report(&mut out, report);
            }
            ClientFrame::Heartbeat { timestamp } => {
                out.insert("type".into(), "heartbeat".into());
                if let Some(t) = timestamp {
                    out.insert("timestamp".into(), Value::String(t.clone()));
                }
            }
            ClientFrame::Unknown(_) => {}
        }
        Value::Object(out).to_string()
    }
}

fn ids(object: &Map<String, Value>, reference: &Option<String>) -> Result<Vec<String>, FrameError> {
    match (object.get("message_id"), object.get("message_ids")) {
        (Some(Value::String(id)), None) => Ok(vec![id.clone()]),
        (None, Some(Value::Array(list))) => {
            if list.is_empty() {
                return Err(FrameError::invalid(
                    "'message_ids' must not be empty",
                    reference,
                ));
            }
            if list.len() > MAX_IDS_PER_FRAME {
                return Err(FrameError {
                    code: FrameErrorCode::TooManyIds,
                    message: format!("'message_ids' holds {} entries (max: 1000)", list.len()),
                    reference: reference.clone(),
                });
            }
            list.iter()
                .map(|v| match v {
                    Value::String(id) => Ok(id.clone()),
                    _ => Err(FrameError::invalid(
                        "'message_ids' must hold strings",
                        reference,
                    )),
                })
                .collect()
        }
        (Some(_), None) => Err(FrameError::invalid(
            "'message_id' must be a string",
            reference,
        )),
        (None, Some(_)) => Err(FrameError::invalid(
            "'message_ids' must be an array",
            reference,
        )),
        _ => Err(FrameError::invalid(
            "Exactly one of 'message_id' and 'message_ids' is required",
            reference,
        )),
    }
}

#[cfg(test)]
mod tests;
