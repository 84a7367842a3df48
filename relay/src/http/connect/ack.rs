//! `POST /connect/ack` (`wire-protocol.md` A.4, B.9): checks in the spec's order, so a caller
//! without a valid token learns nothing about connections.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use webhook_connect_protocol::ConnectionId;
use webhook_connect_protocol::ack::{AckBatchError, AckRequest, MAX_ACK_BODY_BYTES, parse_batch};
use webhook_connect_protocol::frames::AckStatus;
use webhook_connect_protocol::version::{CONNECTION_ID_HEADER, PROTOCOL_HEADER};

use super::{TokenSource, presented_token, requested_version};
use crate::delivery::settle::settle_requests;
use crate::http::error::{ApiError, json_response};
use crate::peer_acks::PeerOutcome;
use crate::state::AppState;

/// The ack handler.
pub async fn handler(
    State(state): State<Arc<AppState>>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let version = requested_version(&headers);
    let mut response = match handle(&state, raw_query.as_deref(), &headers, &body, version).await {
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

async fn handle(
    state: &AppState,
    raw_query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    version: webhook_connect_protocol::ProtocolVersion,
) -> Result<Response, ApiError> {
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
    // 4. Connection on one of those channels: held here, or by another instance.
    let found = channels
        .iter()
        .find_map(|c| c.hub.find(&connection_id).map(|conn| (c.clone(), conn)));
    // 5–6. Settle.
    let results = match (found, &state.peer_acks) {
        (Some((channel, conn)), _) => {
            conn.touch_alive();
            settle_requests(&channel.hub, &conn, &batch).await
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
