//! `POST /connect/ack` (`wire-protocol.md` A.4, B.9): checks in the spec's order, so a caller
//! without a valid token learns nothing about connections.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use webhook_connect_protocol::ConnectionId;
use webhook_connect_protocol::ack::{
    AckAction, AckBatchError, AckRequest, MAX_ACK_BODY_BYTES, parse_batch,
};
use webhook_connect_protocol::frames::AckStatus;
use webhook_connect_protocol::version::{CONNECTION_ID_HEADER, PROTOCOL_HEADER};

use super::settle::{Action, settle_ids};
use super::{TokenSource, presented_token, requested_version};
use crate::app::AppState;
use crate::http_error::{ApiError, json_response};

fn action_of(r: &AckRequest) -> Action {
    match r.action {
        AckAction::Ack => Action::Ack,
        AckAction::Touch => Action::Touch,
        AckAction::Nack => Action::Nack {
            retry: r.retry,
            delay_ms: r.delay_ms,
            reason: r.reason.clone(),
        },
    }
}

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
    let query = crate::app::parse_query(raw_query);
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
    // 4. Connection on one of those channels.
    let found = channels
        .iter()
        .find_map(|c| c.hub.find(&connection_id).map(|conn| (c.clone(), conn)));
    let Some((channel, conn)) = found else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "Connection not found"));
    };
    conn.touch_alive();
    // 5–6. Settle.
    if single.is_some() {
        let r = &batch[0];
        let results = settle_ids(
            &channel.hub,
            &conn,
            std::slice::from_ref(&r.message_id),
            &action_of(r),
        )
        .await;
        let item = &results[0];
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
    // Entries are settled concurrently so they share durable commits; an id repeated in the
    // batch is settled once (its first entry) and reported for each occurrence.
    let mut first: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let unique: Vec<&AckRequest> = batch
        .iter()
        .filter(|r| {
            let next = first.len();
            *first.entry(r.message_id.as_str()).or_insert(next) == next
        })
        .collect();
    let actions: Vec<Action> = unique.iter().map(|r| action_of(r)).collect();
    let settled = futures_util::future::join_all(unique.iter().zip(&actions).map(|(r, action)| {
        settle_ids(
            &channel.hub,
            &conn,
            std::slice::from_ref(&r.message_id),
            action,
        )
    }))
    .await;
    let results: Vec<_> = batch
        .iter()
        .filter_map(|r| {
            let i = first.get(r.message_id.as_str())?;
            settled.get(*i)?.first().cloned()
        })
        .collect();
    let body = serde_json::json!({ "results": results });
    Ok(json_response(StatusCode::OK, body.to_string()))
}
