//! JSON shapes of admin responses (`docs/reference/http-api.md` §4.3): channel summaries and
//! details, `ChannelConfig`, `Connection` and `DeadLetter`, as types that the handlers serialize
//! and the OpenAPI document describes (`crate::openapi`). Tokens never appear.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use webhook_connect_buffer::{DeadLetter as StoredDeadLetter, DeadLetterReason as StoredReason};
use webhook_connect_protocol::Timestamp;

use crate::channels::Channel;
use crate::config::ChannelSource;
use crate::delivery::Conn;
use crate::stats::ChannelStats;

/// Where a channel was defined.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The configuration file (read-only through the API).
    Config,
    /// `POST /channels`.
    Admin,
}

fn source(channel: &Channel) -> Source {
    match channel.source {
        ChannelSource::Config => Source::Config,
        ChannelSource::Admin => Source::Admin,
    }
}

fn first_webhook(channel: &Channel) -> String {
    channel.webhook_ids.first().cloned().unwrap_or_default()
}

/// An entry of `GET /channels`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSummary {
    name: String,
    /// The first webhook id (the original's single-webhook field).
    webhook_id: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    ttl_seconds: u64,
    max_queue_size: u64,
    max_connections: u32,
    connected_clients: usize,
    webhook_ids: Vec<String>,
    paused: bool,
    source: Source,
}

/// The summary of `channel`.
pub fn summary(channel: &Channel) -> ChannelSummary {
    let s = channel.settings();
    ChannelSummary {
        name: channel.name.clone(),
        webhook_id: first_webhook(channel),
        created_at: channel.created_at,
        ttl_seconds: s.ttl_seconds,
        max_queue_size: s.max_queue_size,
        max_connections: s.max_connections,
        connected_clients: channel.hub.connections().len(),
        webhook_ids: channel.webhook_ids.clone(),
        paused: channel.hub.is_paused(),
        source: source(channel),
    }
}

/// The `ChannelConfig` object: the settings a channel runs with.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    name: String,
    webhook_id: String,
    ttl_seconds: u64,
    max_queue_size: u64,
    max_message_size: u64,
    max_in_flight: u32,
    ack_timeout_seconds: u64,
    max_connections: u32,
    heartbeat_interval_seconds: u64,
    /// Connector allow-list (CIDR); `null` allows every address.
    allowed_ips: Option<Vec<String>>,
    rate_limit_per_second: Option<u64>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Timestamp,
    webhook_ids: Vec<String>,
    max_delivery_attempts: u32,
    ordered: bool,
    paused: bool,
    requeue_delay_initial_ms: u64,
    requeue_delay_max_ms: u64,
    source: Source,
    #[schema(value_type = Option<String>, format = DateTime)]
    token_rotated_at: Option<Timestamp>,
    /// While the previous token is still accepted after a rotation.
    #[schema(value_type = Option<String>, format = DateTime)]
    old_token_expires_at: Option<Timestamp>,
}

/// The `ChannelConfig` of `channel`.
pub fn channel_config(channel: &Channel) -> ChannelConfig {
    let s = channel.settings();
    let tokens = channel.tokens();
    ChannelConfig {
        name: channel.name.clone(),
        webhook_id: first_webhook(channel),
        ttl_seconds: s.ttl_seconds,
        max_queue_size: s.max_queue_size,
        max_message_size: s.max_message_size,
        max_in_flight: s.max_in_flight,
        ack_timeout_seconds: s.ack_timeout_seconds,
        max_connections: s.max_connections,
        heartbeat_interval_seconds: s.heartbeat_interval_seconds,
        allowed_ips: s
            .allowed_ips
            .as_ref()
            .map(|l| l.iter().map(ToString::to_string).collect()),
        rate_limit_per_second: s.rate_limit_per_second,
        created_at: channel.created_at,
        updated_at: tokens.rotated_at.unwrap_or(channel.created_at),
        webhook_ids: channel.webhook_ids.clone(),
        max_delivery_attempts: s.max_delivery_attempts,
        ordered: s.ordered,
        paused: channel.hub.is_paused(),
        requeue_delay_initial_ms: s.requeue_delay_initial_ms,
        requeue_delay_max_ms: s.requeue_delay_max_ms,
        source: source(channel),
        token_rotated_at: tokens.rotated_at,
        old_token_expires_at: tokens.previous.map(|(_, at)| at),
    }
}

/// State of a connection.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Open.
    Connected,
    /// Being closed.
    Disconnecting,
}

/// A `Connection` object: one connector stream of a channel.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    connection_id: String,
    connector_id: String,
    channel: String,
    /// `websocket`, `sse` or `long_poll`.
    protocol: &'static str,
    #[schema(value_type = String, format = DateTime)]
    connected_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    last_heartbeat_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    last_message_at: Option<Timestamp>,
    state: ConnectionState,
    in_flight_count: u64,
    messages_received: u64,
    messages_acked: u64,
    messages_nacked: u64,
    remote_ip: Option<String>,
    protocol_version: u8,
    max_in_flight: u32,
    user_agent: Option<String>,
}

/// The `Connection` object of `conn` on `channel`.
pub fn connection(channel: &str, conn: &Conn) -> Connection {
    let s = conn.snapshot();
    Connection {
        connection_id: conn.id.as_str().to_owned(),
        connector_id: conn.info.connector_id.clone(),
        channel: channel.to_owned(),
        protocol: conn.info.kind.as_str(),
        connected_at: conn.connected_at,
        last_heartbeat_at: s.last_seen_at,
        last_message_at: s.last_message_at,
        state: if s.closing {
            ConnectionState::Disconnecting
        } else {
            ConnectionState::Connected
        },
        in_flight_count: s.in_flight,
        messages_received: s.received,
        messages_acked: s.acked,
        messages_nacked: s.nacked,
        remote_ip: conn.info.remote_ip.map(|ip| ip.to_string()),
        protocol_version: u8::from(conn.info.version),
        max_in_flight: conn.info.limit,
        user_agent: conn.info.user_agent.clone(),
    }
}

/// Where a stored message came from.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Always `webhook-relay`.
    source: &'static str,
    /// The namespace of `POST /webhook/{namespace}/{webhook_id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
}

/// Why a message was dead-lettered.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// The connector nacked it without retry.
    Rejected,
    /// `max_delivery_attempts` deliveries failed.
    MaxAttempts,
    /// Its time to live ran out.
    Expired,
}

/// A `DeadLetter` object.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetter {
    message_id: String,
    channel: String,
    webhook_id: String,
    /// When the relay accepted it.
    #[schema(value_type = String, format = DateTime)]
    timestamp: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<Timestamp>,
    metadata: Metadata,
    /// Request headers, names lower-cased, repeated headers joined with `, `.
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    headers: webhook_connect_protocol::Headers,
    /// The body as JSON when it was JSON, else as the wire protocol encodes it.
    payload: Value,
    sequence: u64,
    delivery_count: u32,
    /// Always `dead_lettered`.
    state: &'static str,
    dead_letter_reason: DeadLetterReason,
    #[schema(value_type = String, format = DateTime)]
    dead_lettered_at: Timestamp,
    last_error: Option<String>,
    /// `json`, `text` or `binary`.
    #[schema(value_type = String)]
    data_type: webhook_connect_protocol::DataType,
    content_type: Option<String>,
    /// The exact body bytes, base64 (one dead letter, or a listing with `include_body=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
}

/// A `DeadLetter` object; `body` only when `with_body`.
pub fn dead_letter(d: &StoredDeadLetter, with_body: bool) -> DeadLetter {
    let e = &d.envelope;
    DeadLetter {
        message_id: e.message_id.as_str().to_owned(),
        channel: e.channel.clone(),
        webhook_id: e.webhook_id.clone(),
        timestamp: e.received_at,
        expires_at: e.expires_at,
        metadata: Metadata {
            source: "webhook-relay",
            namespace: e.namespace.clone(),
        },
        headers: e.headers.clone(),
        payload: serde_json::from_str(e.payload.get()).unwrap_or(Value::Null),
        sequence: e.sequence,
        delivery_count: d.delivery_count,
        state: "dead_lettered",
        dead_letter_reason: match d.reason {
            StoredReason::Rejected => DeadLetterReason::Rejected,
            StoredReason::MaxAttempts => DeadLetterReason::MaxAttempts,
            StoredReason::Expired => DeadLetterReason::Expired,
        },
        dead_lettered_at: d.dead_lettered_at,
        last_error: d.last_error.clone(),
        data_type: e.data_type,
        content_type: e.content_type.clone(),
        body: (with_body && !e.body_omitted).then(|| BASE64.encode(&e.body)),
    }
}

/// The channel-details object of §5.3 (and, with `token`, the answer to `POST /channels`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelDetails {
    pub(super) name: String,
    pub(super) webhook_id: String,
    #[schema(value_type = String, format = DateTime)]
    pub(super) created_at: Timestamp,
    pub(super) config: ChannelConfig,
    pub(super) stats: ChannelStats,
    pub(super) connected_clients: Vec<Connection>,
    /// The channel token, only in the answer to `POST /channels` (shown once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) token: Option<String>,
}
