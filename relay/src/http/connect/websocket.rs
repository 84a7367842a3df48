//! `GET /connect/stream/{channel}` over WebSocket (`docs/reference/wire-protocol.md` A.1, B.3–B.6, C.1).
//!
//! One writer loop owns the socket's sink (deliveries, replies, timer-driven heartbeats, close);
//! one reader task keeps reading at all times, so pings are answered and acks processed even
//! while deliveries are blocked. Any client frame counts as life; silence past
//! `heartbeat_timeout` evicts the connection with a real close frame.
//!
//! Closing is graceful whichever side starts it: after the relay's close frame the reader keeps
//! reading until the client's close (at most [`CLOSE_HANDSHAKE`]), and the connection is
//! unregistered — its remaining leases released — only once every settle its frames started has
//! finished (at most the hub's settle wait, the shutdown deadline). An ack sent just before a
//! close is never lost to the release.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use webhook_connect_protocol::frames::{AckResult, Connected, Heartbeat};
use webhook_connect_protocol::version::PROTOCOL_HEADER;
use webhook_connect_protocol::{
    ClientFrame, CloseReason, ConnectionKind, ProtocolVersion, ServerFrame, Timestamp,
};

use super::accept_stream;
use crate::admission::ConnHandle;
use crate::channels::Channel;
use crate::delivery::requests::{Action, settle_ids};
use crate::delivery::{Conn, ConnInfo, Hub, Outbound};
use crate::state::AppState;

/// The upgrade handler: checks 1–4, then the upgrade itself (400 when invalid).
pub async fn handler(
    State(state): State<Arc<AppState>>,
    Path(channel): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    connection: Option<Extension<ConnHandle>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let request = match accept_stream(
        &state,
        &channel,
        ConnectionKind::WebSocket,
        &headers,
        raw_query.as_deref(),
        peer,
        connection.as_ref().map(|Extension(c)| c),
    ) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    let (channel, info, slot) = (request.channel, request.info, request.slot);
    let version = info.version;
    let max_frame = state.config.file.streaming.max_client_frame_bytes as usize;
    // Small per-connection buffers keep 10,000 idle connectors within the memory budget (the
    // library default is 128 KiB each way); frames are flushed as they are sent anyway.
    let mut response = upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(max_frame)
        .max_frame_size(max_frame)
        .on_upgrade(move |socket| async move {
            // The stream's place in the connection budget lasts as long as the session.
            let _slot = slot;
            serve(state, channel, info, socket).await
        });
    if version.is_v2() {
        response
            .headers_mut()
            .insert(PROTOCOL_HEADER, HeaderValue::from_static("2"));
    }
    response
}

fn text(json: String) -> Message {
    Message::Text(json.into())
}

fn close_message(reason: CloseReason, version: ProtocolVersion) -> Message {
    Message::Close(Some(CloseFrame {
        code: reason.code(version),
        reason: reason.message().into(),
    }))
}

async fn serve(state: Arc<AppState>, channel: Arc<Channel>, info: ConnInfo, socket: WebSocket) {
    let hub = channel.hub.clone();
    let version = info.version;
    let (mut sink, stream) = socket.split();
    let Some((conn, mut outbound)) = hub.register_stream(info) else {
        let _ = sink
            .send(close_message(CloseReason::MaxConnections, version))
            .await;
        return;
    };
    tracing::info!(channel = %channel.name, connection_id = %conn.id, protocol = "websocket", "Connector connected");
    let settings = hub.settings();
    let interval = settings.heartbeat_interval();
    let timeout = interval * state.config.file.streaming.stale_multiplier as u32;
    let connected = connected_frame(
        &conn,
        &channel.name,
        version,
        interval,
        timeout,
        settings.ack_timeout(),
    );
    let (reply_tx, mut replies) = mpsc::channel::<String>(64);
    // One reader task per WebSocket (the admission budget bounds the sockets).
    let mut reader = tokio::spawn(read_loop(
        stream,
        conn.clone(),
        hub.clone(),
        reply_tx,
        version,
        state.config.file.streaming.max_malformed_frames_per_minute as usize,
    ));
    let mut reader_done = false;
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let close: Option<CloseReason> = if sink.send(text(connected)).await.is_err() {
        None
    } else {
        loop {
            let message = tokio::select! {
                Some(out) = outbound.recv() => match out {
                    Outbound::Webhook { json, .. } => text(json),
                },
                Some(reply) = replies.recv() => text(reply),
                _ = heartbeat.tick() => {
                    if conn.silent_for() > timeout {
                        break Some(CloseReason::Evicted);
                    }
                    let counts = version.is_v2().then(|| (conn.in_flight() as u64, 0));
                    text(ServerFrame::Heartbeat(Heartbeat::now(counts)).to_json())
                }
                _ = conn.closed.cancelled() => break Some(conn.close_reason().unwrap_or(CloseReason::Normal)),
                // The reader may end because it asked for a close (too many malformed frames,
                // an oversized frame); that close must still be sent.
                _ = &mut reader => {
                    reader_done = true;
                    break conn.close_reason();
                }
            };
            let sent = tokio::time::timeout(interval, sink.send(message)).await;
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break None,
                Err(_) => break Some(CloseReason::Evicted),
            }
        }
    };
    // Settles still running cannot reply any more; they must not wait for room to.
    drop(replies);
    if let Some(reason) = close {
        tracing::info!(channel = %channel.name, connection_id = %conn.id, reason = reason.as_str(), "Closing connection");
        if version.is_v2() && reason != CloseReason::Normal {
            let notice = ServerFrame::Close(reason.notice(Some(1000))).to_json();
            let _ = tokio::time::timeout(CLOSE_HANDSHAKE, sink.send(text(notice))).await;
        }
        let _ =
            tokio::time::timeout(CLOSE_HANDSHAKE, sink.send(close_message(reason, version))).await;
    }
    if !reader_done {
        // Acks the client sent before it saw the close are still read and settled.
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE, &mut reader).await;
    }
    reader.abort();
    hub.unregister_when_settled(&conn).await;
    tracing::info!(channel = %channel.name, connection_id = %conn.id, "Connector disconnected");
}

fn connected_frame(
    conn: &Conn,
    channel: &str,
    version: ProtocolVersion,
    interval: Duration,
    timeout: Duration,
    ack_timeout: Duration,
) -> String {
    let v2 = version.is_v2();
    let now = Timestamp::now();
    ServerFrame::Connected(Connected {
        connection_id: conn.id.as_str().to_owned(),
        channel: channel.to_owned(),
        timestamp: Some(now),
        protocol: v2.then_some(2),
        heartbeat_interval_ms: v2.then_some(interval.as_millis() as u64),
        heartbeat_timeout_ms: v2.then_some(timeout.as_millis() as u64),
        ack_timeout_ms: v2.then_some(ack_timeout.as_millis() as u64),
        max_in_flight: v2.then_some(conn.info.limit),
        server_time: v2.then_some(now),
    })
    .to_json()
}

/// The v2 connected frame, shared with SSE.
pub fn connected_json(conn: &Conn, channel: &str, hub: &Hub, stale_multiplier: u32) -> String {
    let settings = hub.settings();
    let interval = settings.heartbeat_interval();
    connected_frame(
        conn,
        channel,
        conn.info.version,
        interval,
        interval * stale_multiplier,
        settings.ack_timeout(),
    )
}

/// Read buffer of one WebSocket; larger frames still arrive whole (up to the frame limit).
const READ_BUFFER_BYTES: usize = 4096;

/// Ack, nack and touch frames of one connection being settled at the same time.
const MAX_CONCURRENT_SETTLES: usize = 256;

/// How long each step of a close may take: sending the close frame, and reading until the
/// client's close.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(1);

async fn read_loop(
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    conn: Arc<Conn>,
    hub: Arc<Hub>,
    replies: mpsc::Sender<String>,
    version: ProtocolVersion,
    max_malformed: usize,
) {
    let mut malformed: VecDeque<Instant> = VecDeque::new();
    let settling = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_SETTLES));
    while let Some(message) = stream.next().await {
        conn.touch_alive();
        let decoded = match message {
            Ok(Message::Text(t)) => ClientFrame::decode(t.as_str()),
            Ok(Message::Binary(b)) => ClientFrame::decode_binary(&b),
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
            Ok(Message::Close(_)) => break,
            Err(e) => {
                let text = e.to_string();
                if text.contains("too long")
                    || text.contains("too big")
                    || text.contains("Space limit")
                {
                    conn.close(CloseReason::FrameTooLarge);
                }
                break;
            }
        };
        match decoded {
            Err(error) => {
                tracing::debug!(connection_id = %conn.id, error = %error, "Malformed client frame");
                hub.metrics().inc(
                    "webhook_relay_protocol_errors_total",
                    &[
                        ("channel", hub.channel()),
                        (
                            "kind",
                            if error.code
                                == webhook_connect_protocol::FrameErrorCode::MalformedFrame
                            {
                                "malformed_frame"
                            } else {
                                "invalid_field"
                            },
                        ),
                    ],
                );
                let now = Instant::now();
                malformed.push_back(now);
                while malformed
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
                {
                    malformed.pop_front();
                }
                if malformed.len() > max_malformed {
                    conn.close(CloseReason::ProtocolError);
                    break;
                }
                if version.is_v2() && replies.send(error.to_frame().to_json()).await.is_err() {
                    break;
                }
            }
            Ok(frame) => {
                let (ids, action, reference, report) = match frame {
                    ClientFrame::Ack {
                        message_ids,
                        reference,
                        report,
                    } => (message_ids, Action::Ack, reference, report),
                    ClientFrame::Nack {
                        message_ids,
                        retry,
                        delay_ms,
                        reason,
                        reference,
                        report,
                    } => (
                        message_ids,
                        Action::Nack {
                            retry,
                            delay_ms,
                            reason,
                        },
                        reference,
                        report,
                    ),
                    ClientFrame::Touch {
                        message_ids,
                        reference,
                    } => (message_ids, Action::Touch, reference, None),
                    ClientFrame::Heartbeat { .. } | ClientFrame::Unknown(_) => continue,
                };
                // Settle frames concurrently (at most MAX_CONCURRENT_SETTLES tasks), so that
                // many acks share one durable commit and the reader keeps reading meanwhile
                // (pings, more acks). The hub runs them to their end even if the socket goes.
                let Ok(permit) = settling.clone().acquire_owned().await else {
                    break;
                };
                let (settler, conn_ref, replies) = (hub.clone(), conn.clone(), replies.clone());
                hub.start_settle(&conn, async move {
                    let results =
                        settle_ids(&settler, &conn_ref, &ids, &action, report.as_ref()).await;
                    if version.is_v2() {
                        let reply =
                            ServerFrame::AckResult(AckResult { reference, results }).to_json();
                        let _ = replies.send(reply).await;
                    }
                    drop(permit);
                });
            }
        }
    }
}
