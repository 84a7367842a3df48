//! JSON shapes of admin responses (`docs/reference/http-api.md` §4.3): channel summaries and details,
//! `ChannelConfig`, `Connection` and `DeadLetter`. Tokens never appear.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use webhook_connect_buffer::DeadLetter;

use crate::channels::Channel;
use crate::config::ChannelSource;
use crate::delivery::Conn;

fn source(channel: &Channel) -> &'static str {
    match channel.source {
        ChannelSource::Config => "config",
        ChannelSource::Admin => "admin",
    }
}

fn first_webhook(channel: &Channel) -> String {
    channel.webhook_ids.first().cloned().unwrap_or_default()
}

/// An entry of `GET /channels`.
pub fn summary(channel: &Channel) -> Value {
    let s = channel.settings();
    json!({
        "name": channel.name,
        "webhook_id": first_webhook(channel),
        "created_at": channel.created_at,
        "ttl_seconds": s.ttl_seconds,
        "max_queue_size": s.max_queue_size,
        "max_connections": s.max_connections,
        "connected_clients": channel.hub.connections().len(),
        "webhook_ids": channel.webhook_ids,
        "paused": channel.hub.is_paused(),
        "source": source(channel),
    })
}

/// The `ChannelConfig` object.
pub fn channel_config(channel: &Channel) -> Value {
    let s = channel.settings();
    let tokens = channel.tokens();
    json!({
        "name": channel.name,
        "webhook_id": first_webhook(channel),
        "ttl_seconds": s.ttl_seconds,
        "max_queue_size": s.max_queue_size,
        "max_message_size": s.max_message_size,
        "max_in_flight": s.max_in_flight,
        "ack_timeout_seconds": s.ack_timeout_seconds,
        "max_connections": s.max_connections,
        "heartbeat_interval_seconds": s.heartbeat_interval_seconds,
        "allowed_ips": s.allowed_ips.as_ref().map(|l| l.iter().map(ToString::to_string).collect::<Vec<_>>()),
        "rate_limit_per_second": s.rate_limit_per_second,
        "created_at": channel.created_at,
        "updated_at": tokens.rotated_at.unwrap_or(channel.created_at),
        "webhook_ids": channel.webhook_ids,
        "max_delivery_attempts": s.max_delivery_attempts,
        "ordered": s.ordered,
        "paused": channel.hub.is_paused(),
        "requeue_delay_initial_ms": s.requeue_delay_initial_ms,
        "requeue_delay_max_ms": s.requeue_delay_max_ms,
        "source": source(channel),
        "token_rotated_at": tokens.rotated_at,
        "old_token_expires_at": tokens.previous.map(|(_, at)| at),
    })
}

/// A `Connection` object.
pub fn connection(channel: &str, conn: &Conn) -> Value {
    let s = conn.snapshot();
    json!({
        "connection_id": conn.id.as_str(),
        "connector_id": conn.info.connector_id,
        "channel": channel,
        "protocol": conn.info.kind.as_str(),
        "connected_at": conn.connected_at,
        "last_heartbeat_at": s.last_seen_at,
        "last_message_at": s.last_message_at,
        "state": if s.closing { "disconnecting" } else { "connected" },
        "in_flight_count": s.in_flight,
        "messages_received": s.received,
        "messages_acked": s.acked,
        "messages_nacked": s.nacked,
        "remote_ip": conn.info.remote_ip.map(|ip| ip.to_string()),
        "protocol_version": u8::from(conn.info.version),
        "max_in_flight": conn.info.limit,
        "user_agent": conn.info.user_agent,
    })
}

/// A `DeadLetter` object; `body` only when `with_body`.
pub fn dead_letter(d: &DeadLetter, with_body: bool) -> Value {
    let e = &d.envelope;
    let payload: Value = serde_json::from_str(e.payload.get()).unwrap_or(Value::Null);
    let mut metadata = json!({"source": "webhook-relay"});
    if let Some(ns) = &e.namespace {
        metadata["namespace"] = json!(ns);
    }
    let mut v = json!({
        "message_id": e.message_id.as_str(),
        "channel": e.channel,
        "webhook_id": e.webhook_id,
        "timestamp": e.received_at,
        "expires_at": e.expires_at,
        "metadata": metadata,
        "headers": e.headers,
        "payload": payload,
        "sequence": e.sequence,
        "delivery_count": d.delivery_count,
        "state": "dead_lettered",
        "dead_letter_reason": d.reason.as_str(),
        "dead_lettered_at": d.dead_lettered_at,
        "last_error": d.last_error,
        "data_type": e.data_type,
        "content_type": e.content_type,
    });
    if with_body && !e.body_omitted {
        v["body"] = json!(BASE64.encode(&e.body));
    }
    v
}
