//! `POST /connect/ack` (`docs/reference/wire-protocol.md` A.4, B.9): checks in the spec's order, so a caller
//! without a valid token learns nothing about connections, and a caller outside the
//! channel's `allowed_ips` learns nothing either.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use webhook_connect_protocol::ConnectionId;
use webhook_connect_protocol::ack::{AckBatchError, AckRequest, MAX_ACK_BODY_BYTES, parse_batch};
use webhook_connect_protocol::frames::AckStatus;
use webhook_connect_protocol::version::{CONNECTION_ID_HEADER, PROTOCOL_HEADER};

use super::{TokenSource, check_allowed_ip, client_ip, presented_token, requested_version};
use crate::delivery::requests::settle_detached;
use crate::http::error::{ApiError, json_response};
use crate::peer_acks::PeerOutcome;
use crate::state::AppState;

/// The ack handler.
pub async fn handler(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let version = requested_version(&headers);
    let request = AckInput {
        raw_query: raw_query.as_deref(),
        headers: &headers,
        body: &body,
        peer,
    };
    let mut response = match handle(&state, &request, version).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if version.is_v2() {
        response
            .headers_mut()
            .insert(PROTOCOL_HEADER, HeaderValue::from_static("2"));
    }
    response
}

/// What the ack handler reads from the request.
struct AckInput<'a> {
    raw_query: Option<&'a str>,
    headers: &'a HeaderMap,
    body: &'a [u8],
    peer: SocketAddr,
}

async fn handle(
    state: &AppState,
    input: &AckInput<'_>,
    version: webhook_connect_protocol::ProtocolVersion,
) -> Result<Response, ApiError> {
    let AckInput {
        raw_query,
        headers,
        body,
        peer,
    } = *input;
    if body.len() > MAX_ACK_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too many acknowledgments in one request (max 1000)",
        ));
    }
    // 1. Parameters.
    let query = crate::http::query::parse_query(raw_query);
    let single =
        AckRequest::from_query(query.iter().map(|(k, v)| (k.as_str(), v.as_str())), version)
            .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let connection_id = headers
        .get(CONNECTION_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(ConnectionId::from_peer)
        .ok_or_else(|| ApiError::unprocessable("X-Connection-ID header is required"))?;
    let batch = match &single {
        Some(r) => vec![r.clone()],
        None => parse_batch(body).map_err(|e| match e {
            AckBatchError::TooMany => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
            AckBatchError::Malformed(m) => ApiError::unprocessable(m),
        })?,
    };
    // 2–3. Token.
    let token = presented_token(
        state,
        headers,
        None,
        TokenSource::HeaderOnly,
        "Invalid token",
    )?;
    let channels = state.registry.channels_for_token(&token);
    if channels.is_empty() {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "Invalid token"));
    }
    // 3a. The client IP must be allowed by the channel, before any connection lookup,
    // so a caller outside `allowed_ips` learns nothing about connections. A token valid for
    // several channels keeps only those that allow the client.
    let ip = client_ip(state, peer, headers);
    let mut refused = None;
    let channels: Vec<_> = channels
        .into_iter()
        .filter(|c| match check_allowed_ip(c, ip) {
            Ok(()) => true,
            Err(e) => {
                refused = Some(e);
                false
            }
        })
        .collect();
    if channels.is_empty() {
        return Err(
            refused.unwrap_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "IP not allowed"))
        );
    }
    // 4. Connection on one of those channels: held here, or by another instance.
    let found = channels
        .iter()
        .find_map(|c| c.hub.find(&connection_id).map(|conn| (c.clone(), conn)));
    // 5–6. Settle.
    let results = match (found, &state.peer_acks) {
        (Some((channel, conn)), _) => {
            conn.touch_alive();
            settle_detached(&channel.hub, conn, batch).await
        }
        (None, Some(peers)) => {
            let names = channels.iter().map(|c| c.name.clone()).collect();
            match peers.settle(names, &connection_id, &batch).await {
                PeerOutcome::Settled(results) => results,
                PeerOutcome::NotFound => {
                    return Err(ApiError::new(StatusCode::NOT_FOUND, "Connection not found"));
                }
                PeerOutcome::Unavailable => {
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Failed to process acknowledgment",
                    )
                    .retry_after(1));
                }
            }
        }
        (None, None) => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "Connection not found"));
        }
    };
    if let Some(r) = &single {
        let Some(item) = results.first() else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Failed to process acknowledgment",
            )
            .retry_after(1));
        };
        return match item.status {
            AckStatus::Ok => {
                let mut body = serde_json::json!({"status": "ok", "message_id": r.message_id});
                if version.is_v2()
                    && let Some(outcome) = item.outcome
                {
                    body["outcome"] = serde_json::to_value(outcome).unwrap_or_default();
                }
                Ok(json_response(StatusCode::OK, body.to_string()))
            }
            AckStatus::NotInFlight | AckStatus::Unknown => {
                let mut e = ApiError::new(StatusCode::NOT_FOUND, "Message not in flight");
                e.ack_status = version.is_v2().then_some("not_in_flight");
                Err(e)
            }
            AckStatus::Error => {
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Failed to process acknowledgment",
                )
                .retry_after(1);
                e.ack_status = version.is_v2().then_some("error");
                Err(e)
            }
        };
    }
    let body = serde_json::json!({ "results": results });
    Ok(json_response(StatusCode::OK, body.to_string()))
}
