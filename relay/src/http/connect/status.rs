//! `GET /connect/status/{channel}` (`docs/reference/http-api.md` §3.5): the channel's real numbers, for a holder
//! of its token; `connected` is true only while a connection is registered.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use webhook_connect_protocol::Timestamp;

use super::{TokenSource, check_allowed_ip, client_ip, presented_token};
use crate::http::error::{ApiError, json_response};
use crate::state::AppState;
use crate::stats::channel_stats;

/// The status handler.
pub async fn handler(
    State(state): State<Arc<AppState>>,
    Path(channel): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let token = match presented_token(
        &state,
        &headers,
        None,
        TokenSource::HeaderOnly,
        "Invalid token",
    ) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let Some(channel) = state.registry.authorize(&channel, &token) else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "Invalid token").into_response();
    };
    if let Err(e) = check_allowed_ip(&channel, client_ip(&state, peer, &headers)) {
        return e.into_response();
    }
    let stats = match channel_stats(&channel).await {
        Ok(s) => s,
        Err(_) => return ApiError::unavailable().into_response(),
    };
    let body = serde_json::json!({
        "channel": channel.name,
        "connected": !channel.hub.connections().is_empty(),
        "stats": stats,
        "server_time": Timestamp::now(),
    });
    json_response(StatusCode::OK, body.to_string())
}
