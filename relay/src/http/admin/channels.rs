//! Channel routes of the admin API (`docs/reference/http-api.md` §5.1–§5.7, §5.9, §6.4).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use webhook_connect_protocol::{CloseReason, ConnectionId, Timestamp};

use super::views::{self, ChannelDetails};
use crate::channels::{Channel, TokenState, hash_token};
use crate::http::error::ApiError;
use crate::http::error::typed_body;
use crate::lifecycle::install_tokens;
use crate::state::AppState;
use crate::state_store::hex;
use crate::stats::{ChannelStats, channel_stats};

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

/// The admin health answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminHealth {
    /// `healthy` or `unhealthy`.
    status: &'static str,
    /// Buffer reachable.
    buffer: bool,
    #[schema(value_type = String, format = DateTime)]
    timestamp: Timestamp,
    /// Only for admins, or with `admin.public_health_details`.
    #[serde(skip_serializing_if = "Option::is_none")]
    channels_count: Option<usize>,
    /// Only for admins, or with `admin.public_health_details`.
    #[serde(skip_serializing_if = "Option::is_none")]
    connections_count: Option<usize>,
}

/// `GET /health` (no authentication; counts only for admins or when public).
pub async fn health(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let healthy = state.buffer_ok() && state.state_store.health_check().await;
    let admin = state.admin.is_admin(
        headers
            .get(axum::http::header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
    );
    let counts = admin || state.config.file.admin.public_health_details;
    let body = AdminHealth {
        status: if healthy { "healthy" } else { "unhealthy" },
        buffer: state.buffer_ok(),
        timestamp: Timestamp::now(),
        channels_count: counts.then(|| state.registry.channels().len()),
        connections_count: counts.then(|| connections_count(&state)),
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    typed_body(status, &body)
}

/// `GET /channels`
pub async fn list(State(state): State<Arc<AppState>>) -> Response {
    let mut channels = state.registry.channels();
    channels.sort_by(|a, b| a.name.cmp(&b.name));
    let list: Vec<views::ChannelSummary> = channels.iter().map(|c| views::summary(c)).collect();
    typed_body(StatusCode::OK, &list)
}

/// The channel-details object of §5.3.
pub(super) async fn details_of(channel: &Channel) -> Result<ChannelDetails, ApiError> {
    let mut stats = channel_stats(channel)
        .await
        .map_err(|_| ApiError::unavailable())?;
    let per_queue = channel
        .hub
        .buffer()
        .stats(&channel.name)
        .await
        .map_err(|_| ApiError::unavailable())?;
    stats.webhook_stats = Some(
        per_queue
            .queues
            .iter()
            .map(|q| (q.webhook_id.clone(), q.queued))
            .collect(),
    );
    Ok(ChannelDetails {
        name: channel.name.clone(),
        webhook_id: channel.webhook_ids.first().cloned().unwrap_or_default(),
        created_at: channel.created_at,
        config: views::channel_config(channel),
        stats,
        connected_clients: channel
            .hub
            .connections()
            .iter()
            .map(|c| views::connection(&channel.name, c))
            .collect(),
        token: None,
    })
}

/// `GET /channels/{channel}`
pub async fn details(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let channel = find(&state, &name)?;
    Ok(typed_body(StatusCode::OK, &details_of(&channel).await?))
}

impl RotateRequest {
    /// Reads the body: empty, or `{"grace_period_seconds": 0..=604800}`.
    fn parse(body: &[u8]) -> Result<RotateRequest, ApiError> {
        let bad = || {
            ApiError::unprocessable("grace_period_seconds must be an integer between 0 and 604800")
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(RotateRequest {
                grace_period_seconds: None,
            });
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|_| ApiError::unprocessable("Body must be a JSON object"))?;
        let Value::Object(map) = value else {
            return Err(ApiError::unprocessable("Body must be a JSON object"));
        };
        if let Some(key) = map.keys().find(|k| *k != "grace_period_seconds") {
            return Err(ApiError::unprocessable(format!("{key}: unknown field")));
        }
        let grace_period_seconds = match map.get("grace_period_seconds") {
            None => None,
            Some(Value::Number(n)) => Some(
                n.as_u64()
                    .filter(|g| *g <= MAX_GRACE_SECONDS)
                    .ok_or_else(bad)?,
            ),
            Some(_) => return Err(bad()),
        };
        Ok(RotateRequest {
            grace_period_seconds,
        })
    }
}

/// The grace period a rotation body asks for (3600 s when it names none).
pub(crate) fn parse_grace(body: &[u8]) -> Result<u64, ApiError> {
    Ok(RotateRequest::parse(body)?
        .grace_period_seconds
        .unwrap_or(3600))
}

/// A new channel token: `ch_tok_` + 48 hex digits from a CSPRNG.
pub fn new_token() -> String {
    let bytes: [u8; 24] = rand::random();
    format!("ch_tok_{}", hex::encode(bytes))
}

/// The body of `POST /channels/{channel}/rotate-token` (empty means the default).
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// Seconds the old token stays valid, 0–604800 (default 3600).
    #[schema(maximum = 604800)]
    pub grace_period_seconds: Option<u64>,
}

/// The answer to a token rotation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotated {
    channel: String,
    /// The new token, shown only here.
    new_token: String,
    #[schema(value_type = String, format = DateTime)]
    old_token_expires_at: Timestamp,
    message: String,
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
    Ok(typed_body(
        StatusCode::OK,
        &Rotated {
            channel: name,
            new_token: token,
            old_token_expires_at: expires,
            message: format!("Old token valid for {grace} seconds grace period"),
        },
    ))
}

/// The answer to pause and resume.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseState {
    channel: String,
    paused: bool,
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
    Ok(typed_body(
        StatusCode::OK,
        &PauseState {
            channel: name.to_owned(),
            paused,
        },
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
    let stats: ChannelStats = channel_stats(&channel)
        .await
        .map_err(|_| ApiError::unavailable())?;
    Ok(typed_body(StatusCode::OK, &stats))
}

/// Queue numbers of one webhook id.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueNumbers {
    pending: u64,
    in_flight: u64,
    dead_letters: u64,
}

/// The answer to `GET /channels/{channel}/webhook-stats`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookStats {
    channel: String,
    /// By webhook id.
    webhooks: std::collections::BTreeMap<String, QueueNumbers>,
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
    let webhooks = stats
        .queues
        .iter()
        .map(|q| {
            (
                q.webhook_id.clone(),
                QueueNumbers {
                    pending: q.queued,
                    in_flight: q.in_flight,
                    dead_letters: q.dead_letters,
                },
            )
        })
        .collect();
    Ok(typed_body(
        StatusCode::OK,
        &WebhookStats {
            channel: channel.name.clone(),
            webhooks,
        },
    ))
}

/// The answer to a disconnect.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Disconnected {
    /// Always `disconnected`.
    status: &'static str,
    connection_id: String,
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
    channel.hub.unregister_when_settled(&conn).await;
    audit("disconnect", &name, "ok", peer);
    Ok(typed_body(
        StatusCode::OK,
        &Disconnected {
            status: "disconnected",
            connection_id,
        },
    ))
}

/// One channel in the overview.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverviewChannel {
    webhook_id: String,
    connected_clients: usize,
    max_connections: u32,
    ttl_seconds: u64,
    /// `null` when the buffer could not be asked.
    messages_queued: Option<u64>,
    paused: bool,
}

/// Health numbers of the overview.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverviewHealth {
    buffer: bool,
    channels_count: usize,
    connections_count: usize,
}

/// The answer to `GET /overview`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Overview {
    #[schema(value_type = String, format = DateTime)]
    timestamp: Timestamp,
    health: OverviewHealth,
    total_channels: usize,
    total_connections: usize,
    /// By channel name.
    channels: std::collections::BTreeMap<String, OverviewChannel>,
}

/// `GET /overview`
pub async fn overview(State(state): State<Arc<AppState>>) -> Response {
    let mut channels = std::collections::BTreeMap::new();
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
            OverviewChannel {
                webhook_id: c.webhook_ids.first().cloned().unwrap_or_default(),
                connected_clients: c.hub.connections().len(),
                max_connections: s.max_connections,
                ttl_seconds: s.ttl_seconds,
                messages_queued: queued,
                paused: c.hub.is_paused(),
            },
        );
    }
    let connections = connections_count(&state);
    typed_body(
        StatusCode::OK,
        &Overview {
            timestamp: Timestamp::now(),
            health: OverviewHealth {
                buffer: state.buffer_ok(),
                channels_count: all.len(),
                connections_count: connections,
            },
            total_channels: all.len(),
            total_connections: connections,
            channels,
        },
    )
}
