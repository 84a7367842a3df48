//! The body of `GET /admin/webhook-connect/messages/{message_id}` (`docs/reference/http-api.md`
//! §5.10): a message's trace folded into its state, its delivery attempts (each delivery paired
//! with how it ended) and the other steps of its life. Typed, so the OpenAPI document describes
//! exactly what is sent.

use serde::Serialize;
use utoipa::ToSchema;
use webhook_connect_protocol::Timestamp;

/// One message's trace.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageTraceView {
    /// The message.
    pub message_id: String,
    /// Its channel.
    pub channel: String,
    /// Its webhook id (`null` when its acceptance is no longer kept).
    pub webhook_id: Option<String>,
    /// `queued`, `in_flight`, `delivered`, `dead_lettered` or `expired`.
    pub state: String,
    /// When ingest stored it (`null` when no longer kept).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub accepted_at: Option<Timestamp>,
    /// How often an administrator replayed it from the dead letters.
    pub replays: u32,
    /// Every delivery, oldest first.
    pub attempts: Vec<Attempt>,
    /// Dead-letterings and replays, oldest first.
    pub events: Vec<HistoryEvent>,
}

/// One delivery to a connection and how it ended.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Attempt {
    /// When it was sent.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// The connection (or long-poll client) it went to.
    pub connection_id: String,
    /// `websocket`, `sse` or `long_poll`.
    pub transport: String,
    /// Deliveries so far, this one included.
    pub delivery_count: u32,
    /// `in_flight`, `acked`, `nacked`, `lease_expired` or `connection_lost`.
    pub outcome: String,
    /// The nack's reason text.
    pub reason: Option<String>,
    /// The HTTP status the target answered, as the connector reported it.
    pub target_status: Option<u16>,
    /// Why the local delivery failed, as the connector reported it.
    pub error: Option<String>,
    /// The start of the target's answer, as the connector reported it.
    pub response_snippet: Option<String>,
    /// When it ended (`null` while in flight).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub settled_at: Option<Timestamp>,
}

/// A step other than a delivery.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryEvent {
    /// `dead_lettered` or `replayed`.
    pub event: String,
    /// When.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// Why it was dead-lettered (`rejected`, `max_attempts`, `expired`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
