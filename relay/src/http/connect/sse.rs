//! `GET /connect/stream/{channel}/sse` (`docs/reference/wire-protocol.md` A.2, B.7, C.1).
//!
//! `max_connections` is decided before the `200`; heartbeats are timer-driven whatever the
//! traffic; the stream ends (with a v2 `close` event) when the relay closes the connection, and
//! the connection is unregistered once the response body is dropped and the settles its
//! connector started have finished.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use webhook_connect_protocol::frames::Heartbeat;
use webhook_connect_protocol::sse::{SseEvent, frame_to_event, retry_line};
use webhook_connect_protocol::version::PROTOCOL_HEADER;
use webhook_connect_protocol::{CloseReason, ConnectionKind, ServerFrame};

use super::accept_stream;
use crate::admission::{ConnHandle, StreamSlot};
use crate::delivery::{Conn, Hub, Outbound};
use crate::http::error::ApiError;
use crate::state::AppState;

/// Unregisters the connection when the response body is dropped (client gone, or stream ended).
struct Registration {
    hub: Arc<Hub>,
    conn: Arc<Conn>,
    /// The stream's place in the connection budget, released with the stream.
    _slot: Option<StreamSlot>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Acks of this stream come over `POST /connect/ack`; those under way finish first.
        self.hub.unregister_later(&self.conn);
        tracing::info!(channel = %self.hub.channel(), connection_id = %self.conn.id, "Connector disconnected");
    }
}

struct StreamState {
    registration: Registration,
    outbound: mpsc::Receiver<Outbound>,
    heartbeat: tokio::time::Interval,
    pending: Option<String>,
    finished: bool,
}

/// The SSE handler.
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
        ConnectionKind::Sse,
        &headers,
        raw_query.as_deref(),
        peer,
        connection.as_ref().map(|Extension(c)| c),
    ) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let (channel, info, slot) = (request.channel, request.info, request.slot);
    let version = info.version;
    let hub = channel.hub.clone();
    let Some((conn, outbound)) = hub.register_stream(info) else {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Max connections reached")
            .retry_after(5)
            .into_response();
    };
    tracing::info!(channel = %channel.name, connection_id = %conn.id, protocol = "sse", "Connector connected");
    let multiplier = state.config.file.streaming.stale_multiplier as u32;
    let mut first = String::new();
    if version.is_v2() {
        first.push_str(&retry_line(state.config.file.streaming.sse_retry_ms));
    }
    let connected = super::websocket::connected_json(&conn, &channel.name, &hub, multiplier);
    let connected_event = if version.is_v2() {
        SseEvent::new("connected", connected)
    } else {
        SseEvent::new(
            "connected",
            serde_json::json!({"connection_id": conn.id.as_str(), "channel": channel.name})
                .to_string(),
        )
    };
    connected_event.write_to(&mut first);
    let interval = hub.settings().heartbeat_interval();
    let stream_state = StreamState {
        registration: Registration {
            hub,
            conn,
            _slot: slot,
        },
        outbound,
        heartbeat: tokio::time::interval_at(tokio::time::Instant::now() + interval, interval),
        pending: Some(first),
        finished: false,
    };
    let stream = futures_util::stream::unfold(stream_state, move |mut s| async move {
        if let Some(first) = s.pending.take() {
            return Some((Ok::<Bytes, Infallible>(Bytes::from(first)), s));
        }
        if s.finished {
            return None;
        }
        let conn = s.registration.conn.clone();
        let chunk = tokio::select! {
            Some(out) = s.outbound.recv() => match out {
                Outbound::Webhook { message_id, json } => {
                    let mut e = SseEvent::new("webhook", json);
                    if version.is_v2() {
                        e.id = Some(message_id);
                    }
                    e.encode()
                }
            },
            _ = s.heartbeat.tick() => {
                let counts = version.is_v2().then(|| (conn.in_flight() as u64, 0));
                frame_to_event(&ServerFrame::Heartbeat(Heartbeat::now(counts)), version)
                    .map(|e| e.encode())
                    .unwrap_or_default()
            }
            _ = conn.closed.cancelled() => {
                s.finished = true;
                let reason = conn.close_reason().unwrap_or(CloseReason::Normal);
                frame_to_event(&ServerFrame::Close(reason.notice(Some(1000))), version)
                    .map(|e| e.encode())
                    .unwrap_or_default()
            }
        };
        Some((Ok(Bytes::from(chunk)), s))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if version.is_v2() {
        h.insert(PROTOCOL_HEADER, HeaderValue::from_static("2"));
    }
    response
}
