//! Schemas of the connector-facing and operational bodies (`docs/reference/wire-protocol.md`,
//! `docs/reference/http-api.md` §2–§3). The wire types themselves live in the protocol crate,
//! which stays free of documentation dependencies; these mirror them for the document, and the
//! `openapi_responses` test validates real answers against them. Wire bodies are lenient (a
//! newer relay may add members), so these schemas allow unknown members.

// Schema-only types: the document describes them; nothing builds them.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::stats::ChannelStats;

/// `200` of ingest: the message is stored durably.
#[derive(Debug, ToSchema)]
pub struct IngestAccepted {
    /// Always `200 OK`.
    message: String,
    /// The stored message's id.
    message_id: String,
}

/// One message as a connector receives it (poll, SSE `webhook` event, WebSocket frame).
#[derive(Debug, ToSchema)]
pub struct WebhookMessage {
    /// Always `webhook`.
    r#type: String,
    message_id: String,
    sequence: u64,
    webhook_id: String,
    #[schema(format = DateTime)]
    timestamp: Option<String>,
    /// Names lower-cased, repeated headers joined with `, `.
    headers: BTreeMap<String, String>,
    /// The body as JSON, or as `payload_encoding` says.
    payload: Value,
    /// v2: `base64` or `text` when the body is not JSON.
    payload_encoding: Option<String>,
    channel: Option<String>,
    #[schema(format = DateTime)]
    received_at: Option<String>,
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    delivery_count: Option<u32>,
    #[schema(format = DateTime)]
    lease_expires_at: Option<String>,
    data_type: Option<String>,
    content_type: Option<String>,
    body: Option<String>,
    body_omitted: Option<bool>,
    namespace: Option<String>,
    raw_headers: Option<Vec<Vec<String>>>,
    relay_signature: Option<String>,
}

/// `200` of a long-poll.
#[derive(Debug, ToSchema)]
pub struct PollResponse {
    messages: Vec<WebhookMessage>,
    /// For `X-Connection-ID` on acks.
    connection_id: String,
    channel: String,
    #[schema(format = DateTime)]
    timestamp: Option<String>,
    /// v2: always 2.
    protocol: Option<u8>,
    /// v2: lease length.
    ack_timeout_ms: Option<u64>,
    /// v2: more messages are ready; poll again at once.
    more: Option<bool>,
}

/// Query of the long-poll.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PollQuery {
    /// Seconds to wait for a message, 1–60.
    #[param(minimum = 1, maximum = 60)]
    timeout: Option<u64>,
    /// Messages per answer, 1–100.
    #[param(minimum = 1, maximum = 100)]
    max_messages: Option<u32>,
    /// The channel token, where a header cannot be set (prefer `Authorization`).
    token: Option<String>,
}

/// Query of the single-message ack form.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AckQuery {
    /// The message.
    message_id: Option<String>,
    /// `ack` (default), `nack` or `touch` (v2).
    status: Option<String>,
    /// For nack: requeue (default) or dead-letter.
    retry: Option<bool>,
    /// v2 nack: requested requeue delay.
    delay_ms: Option<u64>,
    /// v2 nack: reason text.
    reason: Option<String>,
}

/// One entry of the v2 batch ack body.
#[derive(Debug, ToSchema)]
pub struct AckEntry {
    message_id: String,
    /// `ack` (default), `nack` or `touch`.
    status: Option<String>,
    retry: Option<bool>,
    delay_ms: Option<u64>,
    reason: Option<String>,
}

/// The v2 batch ack body (1–1000 entries).
#[derive(Debug, ToSchema)]
pub struct AckBatch {
    acks: Vec<AckEntry>,
}

/// The result for one message.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct AckResult {
    message_id: String,
    /// `ok`, `not_in_flight` or `error`.
    status: String,
    /// v2: what happened (`acked`, `requeued`, `dead_lettered`, `extended`, …).
    outcome: Option<String>,
}

/// `200` of an ack: the single form's result, or the batch form's results.
#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(untagged)]
pub enum AckResponse {
    /// Single form.
    One(AckResult),
    /// Batch form.
    Batch {
        /// In request order.
        results: Vec<AckResult>,
    },
}

/// `200` of `GET /connect/status/{channel}`.
#[derive(Debug, ToSchema)]
pub struct ConnectStatus {
    channel: String,
    /// A connector is connected to the channel.
    connected: bool,
    stats: ChannelStats,
    #[schema(format = DateTime)]
    server_time: String,
}

/// `GET /healthz`.
#[derive(Debug, ToSchema)]
pub struct Liveness {
    /// Always `ok`.
    status: String,
}

/// `GET /readyz`.
#[derive(Debug, ToSchema)]
pub struct Readiness {
    /// `ready`, `not_ready` or `shutting_down`.
    status: String,
    buffer: bool,
    state_store: bool,
}

/// Components of the compatibility health answer.
#[derive(Debug, ToSchema)]
pub struct HealthComponents {
    /// `healthy` or `unavailable`.
    webhook_connect: String,
}

/// `GET /health`, in the original's format.
#[derive(Debug, ToSchema)]
pub struct CompatHealth {
    /// `healthy` or `unhealthy`.
    status: String,
    /// Always `webhook-relay`.
    service: String,
    /// Unix seconds.
    timestamp: f64,
    components: HealthComponents,
}
