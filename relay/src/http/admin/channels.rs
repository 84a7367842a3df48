//! Channel routes of the admin API (`docs/reference/http-api.md` §5.1–§5.7, §5.9, §6.4).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use webhook_connect_protocol::{CloseReason, ConnectionId, Timestamp};

use super::views;
use crate::channels::{Channel, TokenState, hash_token};
use crate::http::error::ApiError;
use crate::http::error::status_body;
use crate::lifecycle::install_tokens;
use crate::state::AppState;
use crate::state_store::hex;
use crate::stats::channel_stats_json;

/// Longest rotation grace period.
const MAX_GRACE_SECONDS: u64 = 604_800;

pub(super) fn find(state: &AppState, name: &str) -> Result<Arc<Channel>, ApiError> {
    state
        .registry
        .channel(name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "Channel not found"))
}

fn audit(action: &str, channel: &str, result: &str, peer: SocketAddr) {
    tracing::info!(action, channel, result, client_ip = %peer.ip(), "Admin change");
}

fn connections_count(state: &AppState) -> usize {
    state
        .registry
        .channels()
        .iter()
        .map(|c| c.hub.connections().len())
        .sum()
}

/// `GET /health` (no authentication; counts only for admins or when public).
pub async fn health(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let healthy = state.buffer_ok() && state.state_store.health_check().await;
    let mut body = json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "buffer": state.buffer_ok(),
        "timestamp": Timestamp::now(),
    });
    let admin = state.admin.is_admin(
        headers
            .get(axum::http::header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
    );
    if admin || state.config.file.admin.public_health_details {
        body["channels_count"] = json!(state.registry.channels().len());
        body["connections_count"] = json!(connections_count(&state));
    }
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    status_body(status, body)
}

/// `GET /channels`
pub async fn list(State(state): State<Arc<AppState>>) -> Response {
    let mut channels = state.registry.channels();
    channels.sort_by(|a, b| a.name.cmp(&b.name));
    status_body(
        StatusCode::OK,
        Value::Array(channels.iter().map(|c| views::summary(c)).collect()),
    )
}

/// The channel-details object of §5.3.
pub(super) async fn details_json(channel: &Channel) -> Result<Value, ApiError> {
    let mut stats = channel_stats_json(channel)
        .await
        .map_err(|_| ApiError::unavailable())?;
    let per_queue = channel
        .hub
        .buffer()
        .stats(&channel.name)
        .await
        .map_err(|_| ApiError::unavailable())?;
    let webhook_stats: serde_json::Map<String, Value> = per_queue
        .queues
        .iter()
        .map(|q| (q.webhook_id.clone(), json!(q.queued)))
        .collect();
    stats["webhook_stats"] = Value::Object(webhook_stats);
    let connections: Vec<Value> = channel
        .hub
        .connections()
        .iter()
        .map(|c| views::connection(&channel.name, c))
        .collect();
    Ok(json!({
        "name": channel.name,
        "webhook_id": channel.webhook_ids.first().cloned().unwrap_or_default(),
        "created_at": channel.created_at,
        "config": views::channel_config(channel),
        "stats": stats,
        "connected_clients": connections,
    }))
}

/// `GET /channels/{channel}`
pub async fn details(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let channel = find(&state, &name)?;
    Ok(status_body(StatusCode::OK, details_json(&channel).await?))
}

pub(crate) fn parse_grace(body: &[u8]) -> Result<u64, ApiError> {
    let bad =
        || ApiError::unprocessable("grace_period_seconds must be an integer between 0 and 604800");
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(3600);
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::unprocessable("Body must be a JSON object"))?;
    let Value::Object(map) = value else {
        return Err(ApiError::unprocessable("Body must be a JSON object"));
    };
    if let Some(key) = map.keys().find(|k| *k != "grace_period_seconds") {
        return Err(ApiError::unprocessable(format!("{key}: unknown field")));
    }
    match map.get("grace_period_seconds") {
        None => Ok(3600),
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|g| *g <= MAX_GRACE_SECONDS)
            .ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

/// A new channel token: `ch_tok_` + 48 hex digits from a CSPRNG.
pub fn new_token() -> String {
    let bytes: [u8; 24] = rand::random();
    format!("ch_tok_{}", hex::encode(bytes))
}

/// `POST /channels/{channel}/rotate-token`
pub async fn rotate_token(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let channel = find(&state, &name)?;
    let grace = parse_grace(&body)?;
    let token = new_token();
    let new_hash = hash_token(token.as_bytes());
    let old = channel.tokens();
    let now = Timestamp::now();
    let expires = now.plus_millis(grace * 1000);
    let stored = state
        .state_store
        .update(&name, |r| {
            r.current_token = hex(&new_hash);
            r.previous_token = (grace > 0).then(|| (hex(&old.current), expires));
            r.rotated_at = Some(now);
        })
        .await;
    if stored.is_err() {
        audit("rotate-token", &name, "failed", peer);
        return Err(
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Failed to rotate token").retry_after(1),
        );
    }
    install_tokens(
        &state,
        &channel,
        TokenState {
            current: new_hash,
            previous: (grace > 0).then_some((old.current, expires)),
            rotated_at: Some(now),
        },
    );
    audit("rotate-token", &name, "ok", peer);
    Ok(status_body(
        StatusCode::OK,
        json!({
            "channel": name,
            "new_token": token,
            "old_token_expires_at": expires,
            "message": format!("Old token valid for {grace} seconds grace period"),
        }),
    ))
}

async fn set_paused(
    state: &AppState,
    name: &str,
    paused: bool,
    peer: SocketAddr,
) -> Result<Response, ApiError> {
    let channel = find(state, name)?;
    if state
        .state_store
        .update(name, |r| r.paused = paused)
        .await
        .is_err()
    {
        return Err(ApiError::unavailable());
    }
    channel.hub.set_paused(paused);
    audit(if paused { "pause" } else { "resume" }, name, "ok", peer);
    Ok(status_body(
        StatusCode::OK,
        json!({"channel": name, "paused": paused}),
    ))
}

/// `POST /channels/{channel}/pause`
pub async fn pause(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    set_paused(&state, &name, true, peer).await
}

/// `POST /channels/{channel}/resume`
pub async fn resume(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    set_paused(&state, &name, false, peer).await
}

/// `GET /channels/{channel}/stats`
pub async fn stats(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let channel = find(&state, &name)?;
    let stats = channel_stats_json(&channel)
        .await
        .map_err(|_| ApiError::unavailable())?;
    Ok(status_body(StatusCode::OK, stats))
}

/// `GET /channels/{channel}/webhook-stats`
pub async fn webhook_stats(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let channel = find(&state, &name)?;
    let stats = state
        .buffer
        .stats(&name)
        .await
        .map_err(|_| ApiError::unavailable())?;
    let webhooks: serde_json::Map<String, Value> = stats
        .queues
        .iter()
        .map(|q| {
            (q.webhook_id.clone(), json!({"pending": q.queued, "in_flight": q.in_flight, "dead_letters": q.dead_letters}))
        })
        .collect();
    Ok(status_body(
        StatusCode::OK,
        json!({"channel": channel.name, "webhooks": webhooks}),
    ))
}

/// `DELETE /channels/{channel}/connections/{connection_id}`: closes the transport for real and
/// releases the leases before answering.
pub async fn disconnect(
    State(state): State<Arc<AppState>>,
    Path((name, connection_id)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    let channel = find(&state, &name)?;
    let id = ConnectionId::from_peer(connection_id.clone());
    let Some(conn) = channel.hub.find(&id) else {
        let elsewhere = state
            .registry
            .channels()
            .iter()
            .any(|c| c.hub.find(&id).is_some());
        return Err(if elsewhere {
            ApiError::new(StatusCode::BAD_REQUEST, "Connection not on this channel")
        } else {
            ApiError::new(StatusCode::NOT_FOUND, "Connection not found")
        });
    };
    conn.close(CloseReason::AdminDisconnect);
    channel.hub.unregister(&conn);
    audit("disconnect", &name, "ok", peer);
    Ok(status_body(
        StatusCode::OK,
        json!({"status": "disconnected", "connection_id": connection_id}),
    ))
}

/// `GET /overview`
pub async fn overview(State(state): State<Arc<AppState>>) -> Response {
    let mut channels = serde_json::Map::new();
    let all = state.registry.channels();
    for c in &all {
        let queued = state
            .buffer
            .stats(&c.name)
            .await
            .map(|s| s.total.queued)
            .ok();
        let s = c.settings();
        channels.insert(
            c.name.clone(),
            json!({
                "webhook_id": c.webhook_ids.first().cloned().unwrap_or_default(),
                "connected_clients": c.hub.connections().len(),
                "max_connections": s.max_connections,
                "ttl_seconds": s.ttl_seconds,
                "messages_queued": queued,
                "paused": c.hub.is_paused(),
            }),
        );
    }
    let connections = connections_count(&state);
    status_body(
        StatusCode::OK,
        json!({
            "timestamp": Timestamp::now(),
            "health": {"buffer": state.buffer_ok(), "channels_count": all.len(), "connections_count": connections},
            "total_channels": all.len(),
            "total_connections": connections,
            "channels": channels,
        }),
    )
}
