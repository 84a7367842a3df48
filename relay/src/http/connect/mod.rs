//! The streaming endpoints connectors use (`docs/reference/wire-protocol.md` A, `docs/reference/http-api.md` §3): WebSocket,
//! SSE, long-poll, `POST /connect/ack` and `GET /connect/status/{channel}`, with the shared
//! channel-token and allow-list checks.

pub mod ack;
pub mod long_poll;
pub mod sse;
pub mod status;
pub mod websocket;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use webhook_connect_protocol::names::sanitize_connector_id;
use webhook_connect_protocol::token::{PresentedToken, parse_authorization};
use webhook_connect_protocol::version::{
    CONNECTOR_ID_HEADER, MAX_IN_FLIGHT_HEADER, PROTOCOL_HEADER, parse_max_in_flight,
};
use webhook_connect_protocol::{ConnectionKind, ProtocolVersion};

use crate::admission::{ConnHandle, StreamSlot};
use crate::channels::{Channel, TokenHash, hash_token};
use crate::delivery::{ConnInfo, effective_limit};
use crate::http::error::ApiError;
use crate::state::AppState;

/// Where a token may come from on this endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// Header only (`/connect/ack`, `/connect/status`).
    HeaderOnly,
    /// Header, or `?token=` when `streaming.allow_query_token` is on and no header is present.
    HeaderOrQuery,
}

/// The presented token's hash, or the 401 to answer.
pub fn presented_token(
    state: &AppState,
    headers: &HeaderMap,
    query_token: Option<&str>,
    source: TokenSource,
    invalid_detail: &str,
) -> Result<TokenHash, ApiError> {
    let header = headers.get(axum::http::header::AUTHORIZATION);
    let parsed = match header {
        Some(v) => parse_authorization(Some(v.as_bytes())),
        None if source == TokenSource::HeaderOrQuery
            && state.config.file.streaming.allow_query_token =>
        {
            match query_token {
                Some(t) if !t.is_empty() => PresentedToken::Token(t.as_bytes()),
                _ => PresentedToken::Missing,
            }
        }
        None => PresentedToken::Missing,
    };
    match parsed {
        PresentedToken::Missing => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Missing authorization token",
        )),
        PresentedToken::Invalid => Err(ApiError::new(StatusCode::UNAUTHORIZED, invalid_detail)),
        PresentedToken::Token(t) => Ok(hash_token(t)),
    }
}

/// The client address: the peer, or the forwarded address when the peer is a trusted proxy.
pub fn client_ip(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    crate::auth::client_ip(peer.ip(), headers, &state.trusted_proxies)
}

/// Checks 1–4 of `docs/reference/wire-protocol.md` A.1.1: ready, token present, token valid for the channel
/// (unknown channels fail the same way), client IP allowed.
pub fn authorize_stream(
    state: &AppState,
    channel: &str,
    headers: &HeaderMap,
    query_token: Option<&str>,
    peer: SocketAddr,
    source: TokenSource,
) -> Result<(Arc<Channel>, IpAddr, TokenHash), ApiError> {
    if !state.is_ready() {
        return Err(ApiError::unavailable());
    }
    let token = presented_token(state, headers, query_token, source, "Invalid channel token")?;
    let Some(channel) = state.registry.authorize(channel, &token) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Invalid channel token",
        ));
    };
    let ip = client_ip(state, peer, headers);
    check_allowed_ip(&channel, ip)?;
    Ok((channel, ip, token))
}

/// A stream request (WebSocket, SSE or long-poll) that passed checks 1–4.
#[derive(Debug)]
pub struct StreamRequest {
    /// The channel.
    pub channel: Arc<Channel>,
    /// The new connection's identity and limits.
    pub info: ConnInfo,
    /// The decoded query string.
    pub query: Vec<(String, String)>,
    /// The connection's place among the streams (held as long as the stream lives); `None`
    /// when the request did not come through the relay's own listener (in-process tests).
    pub slot: Option<StreamSlot>,
}

/// Checks 1–4 of a stream request and describes the connection it opens.
pub fn accept_stream(
    state: &AppState,
    channel: &str,
    kind: ConnectionKind,
    headers: &HeaderMap,
    raw_query: Option<&str>,
    peer: SocketAddr,
    connection: Option<&ConnHandle>,
) -> Result<StreamRequest, ApiError> {
    let query = crate::http::query::parse_query(raw_query);
    let (channel, ip, token) = authorize_stream(
        state,
        channel,
        headers,
        query_token(&query),
        peer,
        TokenSource::HeaderOrQuery,
    )?;
    let info = conn_info(&channel, kind, headers, ip, token);
    let slot = match connection {
        Some(connection) => Some(connection.claim_stream().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many connector streams on this relay",
            )
            .retry_after(5)
        })?),
        None => None,
    };
    Ok(StreamRequest {
        channel,
        info,
        query,
        slot,
    })
}

/// The channel's `allowed_ips` (when set) must contain `ip`.
pub fn check_allowed_ip(channel: &Channel, ip: IpAddr) -> Result<(), ApiError> {
    if let Some(allowed) = &channel.settings().allowed_ips {
        let ip = crate::auth::client_ip::normalize(ip);
        if !allowed.iter().any(|net| net.contains(&ip)) {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "IP not allowed"));
        }
    }
    Ok(())
}

/// The version a request asks for.
pub fn requested_version(headers: &HeaderMap) -> ProtocolVersion {
    ProtocolVersion::from_request_header(headers.get(PROTOCOL_HEADER).map(|v| v.as_bytes()))
}

/// Identity and limits of a new connection from its request headers.
pub fn conn_info(
    channel: &Channel,
    kind: ConnectionKind,
    headers: &HeaderMap,
    ip: IpAddr,
    token: TokenHash,
) -> ConnInfo {
    let sent = headers
        .get(CONNECTOR_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(sanitize_connector_id);
    let connector_id_sent = sent.is_some();
    let connector_id = sent.unwrap_or_else(|| kind.default_connector_id().to_owned());
    let requested = parse_max_in_flight(headers.get(MAX_IN_FLIGHT_HEADER).map(|v| v.as_bytes()));
    ConnInfo {
        kind,
        version: requested_version(headers),
        connector_id,
        connector_id_sent,
        limit: effective_limit(&channel.settings(), requested),
        remote_ip: Some(ip),
        user_agent: headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect()),
        token,
    }
}

/// `?token=` of the query string, if any.
pub fn query_token(query: &[(String, String)]) -> Option<&str> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.as_str())
}
