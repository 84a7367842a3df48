//! `GET /connect/stream/{channel}/poll` (`docs/reference/wire-protocol.md` A.3, B.8, C.2.4).
//!
//! Returned messages are leased, not removed: the session (and its poll client) stays valid for
//! at least `ack_timeout` after the poll returns, so `POST /connect/ack` succeeds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use webhook_connect_protocol::poll::PollParams;
use webhook_connect_protocol::version::{CONNECTION_ID_HEADER, PROTOCOL_HEADER};
use webhook_connect_protocol::{ConnectionId, ConnectionKind, Timestamp};

use super::accept_stream;
use crate::admission::ConnHandle;
use crate::delivery::{Conn, Hub, PollOpenError};
use crate::http::error::{ApiError, json_response};
use crate::state::AppState;

/// Closes the poll when the request ends, however it ends.
struct OpenPoll {
    hub: Arc<Hub>,
    client: Arc<Conn>,
    session: ConnectionId,
    closed: bool,
}

impl OpenPoll {
    fn finish(&mut self) -> Vec<String> {
        self.closed = true;
        self.hub.close_poll(&self.client, &self.session)
    }
}

impl Drop for OpenPoll {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.hub.close_poll(&self.client, &self.session);
        }
    }
}

/// The long-poll handler.
pub async fn handler(
    State(state): State<Arc<AppState>>,
    Path(channel): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    connection: Option<Extension<ConnHandle>>,
) -> Response {
    let request = match accept_stream(
        &state,
        &channel,
        ConnectionKind::LongPoll,
        &headers,
        raw_query.as_deref(),
        peer,
        connection.as_ref().map(|Extension(c)| c),
    ) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let (channel, info) = (request.channel, request.info);
    let query = request.query;
    // The poll counts as a connector's stream until its answer is built.
    let _slot = request.slot;
    let params = match PollParams::from_query(query.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(p) => p,
        Err(e) => return ApiError::unprocessable(e.to_string()).into_response(),
    };
    let version = info.version;
    let resume = if version.is_v2() {
        headers
            .get(CONNECTION_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(ConnectionId::from_peer)
    } else {
        None
    };
    let hub = channel.hub.clone();
    let (client, session, notify) =
        match hub.open_poll(info, resume.as_ref(), params.max_messages as usize) {
            Ok(ok) => ok,
            Err(PollOpenError::MaxConnections) => {
                return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Max connections reached")
                    .retry_after(5)
                    .into_response();
            }
            Err(PollOpenError::InProgress) => {
                return ApiError::new(
                    StatusCode::CONFLICT,
                    "Poll already in progress for this connection",
                )
                .into_response();
            }
        };
    let mut poll = OpenPoll {
        hub: hub.clone(),
        client: client.clone(),
        session: session.clone(),
        closed: false,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(params.timeout_secs);
    let linger = Duration::from_millis(state.config.file.streaming.long_poll_linger_ms);
    let shutdown = state.shutdown.clone();
    loop {
        if hub.poll_ready(&client, &session) > 0 || client.closed.is_cancelled() {
            break;
        }
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep_until(deadline) => break,
            _ = client.closed.cancelled() => break,
            _ = shutdown.cancelled() => break,
        }
    }
    if hub.poll_ready(&client, &session) > 0 && !hub.poll_full(&client, &session) {
        let until = tokio::time::Instant::now() + linger;
        while !hub.poll_full(&client, &session) {
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep_until(until) => break,
            }
        }
    }
    let messages = poll.finish();
    client.touch_alive();
    if messages.is_empty() {
        let mut response = StatusCode::NO_CONTENT.into_response();
        if version.is_v2() {
            let h = response.headers_mut();
            h.insert(PROTOCOL_HEADER, HeaderValue::from_static("2"));
            if let Ok(v) = HeaderValue::from_str(session.as_str()) {
                h.insert(CONNECTION_ID_HEADER, v);
            }
        }
        return response;
    }
    let count = messages.len();
    let mut body = String::with_capacity(messages.iter().map(String::len).sum::<usize>() + 256);
    body.push_str("{\"messages\":[");
    body.push_str(&messages.join(","));
    body.push_str("],\"connection_id\":");
    body.push_str(&serde_json::Value::String(session.as_str().to_owned()).to_string());
    body.push_str(",\"channel\":");
    body.push_str(&serde_json::Value::String(channel.name.clone()).to_string());
    body.push_str(&format!(",\"timestamp\":\"{}\"", Timestamp::now()));
    if version.is_v2() {
        let more = count >= params.max_messages as usize;
        body.push_str(&format!(
            ",\"protocol\":2,\"ack_timeout_ms\":{},\"more\":{more}",
            channel.settings().ack_timeout().as_millis()
        ));
    }
    body.push('}');
    let mut response = json_response(StatusCode::OK, body);
    if version.is_v2() {
        response
            .headers_mut()
            .insert(PROTOCOL_HEADER, HeaderValue::from_static("2"));
    }
    response
}
