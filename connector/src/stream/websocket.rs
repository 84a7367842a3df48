//! WebSocket client (`docs/reference/wire-protocol.md` A.1, B): handshake with v2 negotiation, `connected`,
//! webhook frames to the dispatcher, acks as frames, heartbeat echo (C.1.7), stale detection on
//! any frame (C.1.8, R-79), close codes (B.6) and drain with close 1000 (C.5.4, R-81).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use webhook_connect_protocol::frames::{AckStatus, Connected};
use webhook_connect_protocol::version::PROTOCOL_HEADER;
use webhook_connect_protocol::{ClientFrame, CloseReason, ProtocolVersion, ServerFrame, Timestamp};

use super::{Ended, Failure, SessionCtx, SessionEnd, maybe, proxy, status_failure};
use crate::ack::AckSink;
use crate::ack::Decision;

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

fn ws_url(ctx: &SessionCtx<'_>) -> String {
    let url = ctx.stream_url("");
    if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url
    }
}

fn host_port(url: &str) -> Option<(String, u16, bool)> {
    let (secure, rest) = if let Some(r) = url.strip_prefix("wss://") {
        (true, r)
    } else {
        (false, url.strip_prefix("ws://")?)
    };
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit('@').next()?;
    let (host, port) = if let Some(stripped) = authority.strip_prefix('[') {
        let (h, p) = stripped.split_once(']')?;
        (
            h.to_owned(),
            p.strip_prefix(':').and_then(|p| p.parse().ok()),
        )
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().ok()),
            None => (authority.to_owned(), None),
        }
    };
    Some((host, port.unwrap_or(if secure { 443 } else { 80 }), secure))
}

async fn connect(ctx: &SessionCtx<'_>) -> Result<(Ws, ProtocolVersion), Failure> {
    let url = ws_url(ctx);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| Failure::Other(format!("invalid relay URL: {e}")))?;
    request.headers_mut().extend(ctx.stream_headers());
    let frame_bytes = ctx.limit().frame_bytes();
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(frame_bytes))
        .max_frame_size(Some(frame_bytes));
    let Some((host, port, secure)) = host_port(&url) else {
        return Err(Failure::Other("invalid relay URL".into()));
    };
    let connector = if secure {
        Connector::Rustls(ctx.shared.tls.clone())
    } else {
        Connector::Plain
    };
    let config = &ctx.shared.config;
    let timeout = config.connection_timeout;
    let proxy_url = proxy::ws_proxy(config.proxy.as_deref(), &config.no_proxy, secure, &host);
    let attempt = async {
        match &proxy_url {
            Some(p) => {
                let tunnel = match proxy::connect_tunnel(p, &host, port, timeout).await {
                    Ok(t) => t,
                    Err(e) if e.starts_with("only http://") => return Err(Failure::Unusable(e)),
                    Err(e) => return Err(Failure::Other(e)),
                };
                tokio_tungstenite::client_async_tls_with_config(
                    request,
                    tunnel,
                    Some(ws_config),
                    Some(connector),
                )
                .await
                .map_err(classify)
            }
            None => tokio_tungstenite::connect_async_tls_with_config(
                request,
                Some(ws_config),
                true,
                Some(connector),
            )
            .await
            .map_err(classify),
        }
    };
    let (ws, response) = tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| Failure::Other("WebSocket handshake timed out".into()))??;
    let granted = ProtocolVersion::from_response_header(
        response
            .headers()
            .get(PROTOCOL_HEADER)
            .map(|v| v.as_bytes()),
    );
    let version = if ctx.wants_v2() {
        granted
    } else {
        ProtocolVersion::V1
    };
    Ok((ws, version))
}

fn classify(e: WsError) -> Failure {
    match e {
        WsError::Http(response) => status_failure(response.status().as_u16(), "WebSocket upgrade"),
        other => Failure::Other(format!("WebSocket connect failed: {other}")),
    }
}

fn close_failure(frame: Option<&CloseFrame>) -> Failure {
    let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
    match CloseReason::from_code(code) {
        Some(CloseReason::TokenInvalid) => Failure::Unauthorized(format!("closed with {code}")),
        _ => Failure::Other(format!("closed with {code} before `connected`")),
    }
}

/// Runs one WebSocket session.
pub async fn run(ctx: &SessionCtx<'_>) -> SessionEnd {
    let (ws, version) = match connect(ctx).await {
        Ok(x) => x,
        Err(f) => return SessionEnd::Failed(f),
    };
    let (mut sink, mut stream) = ws.split();
    let config = &ctx.shared.config;

    // The first frame must be `connected`.
    let wait_connected = async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Text(text))) => match ServerFrame::decode(&text) {
                    Ok(ServerFrame::Connected(c)) => return Ok(c),
                    Ok(other) => {
                        tracing::debug!(
                            frame = other.type_name(),
                            "Frame before `connected` ignored"
                        )
                    }
                    Err(e) => tracing::warn!(error = %e, "Skipping unreadable frame"),
                },
                Some(Ok(Message::Close(frame))) => return Err(close_failure(frame.as_ref())),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(Failure::Other(format!("WebSocket error: {e}"))),
                None => return Err(Failure::Other("closed before `connected`".into())),
            }
        }
    };
    let connected: Connected =
        match tokio::time::timeout(config.connection_timeout, wait_connected).await {
            Ok(Ok(c)) => c,
            Ok(Err(f)) => return SessionEnd::Failed(f),
            Err(_) => {
                return SessionEnd::Failed(Failure::Other(
                    "no `connected` frame within connection_timeout".into(),
                ));
            }
        };
    let connected_at = Instant::now();
    ctx.state
        .connected("websocket", u8::from(version), &connected.connection_id);
    tracing::info!(channel = %ctx.channel.channel, connection_id = %connected.connection_id, protocol_version = u8::from(version), "Connected over WebSocket");
    let stale_timeout = ctx.stale_timeout(&connected);
    let ordered = connected.max_in_flight == Some(1);
    let queue = ctx.dispatcher.capacity() * 2 + 16;
    let (tx, mut rx) = mpsc::channel::<Message>(queue);
    let acks = AckSink::WebSocket {
        tx: tx.clone(),
        version,
        timeout: config.ack_timeout,
    };
    let write_timeout = config.ack_timeout;
    let mut last = Instant::now();
    let mut notice_retry: Option<Duration> = None;
    let mut pending = PendingRefs::new(queue * 2);
    let mut draining: Option<
        std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>>,
    > = None;
    let lasted = |at: Instant| at.elapsed();

    loop {
        let stale_at = last + stale_timeout;
        tokio::select! {
            biased;
            () = ctx.shutdown.cancelled(), if draining.is_none() => {
                tracing::info!(channel = %ctx.channel.channel, in_flight = ctx.dispatcher.in_flight(), "Draining");
                draining = Some(Box::pin(ctx.dispatcher.drain(config.drain_timeout)));
            }
            _ = maybe(&mut draining) => {
                // Every ack is queued before its message counts as finished: flush them, and
                // on v2 wait for their results, so the relay has settled them before the close.
                while let Ok(m) = rx.try_recv() {
                    let m = if version.is_v2() { pending.track(m) } else { m };
                    if tokio::time::timeout(write_timeout, sink.send(m)).await.is_err() {
                        break;
                    }
                }
                let _ = tokio::time::timeout(write_timeout, async {
                    while !pending.is_empty() {
                        let text = match stream.next().await {
                            Some(Ok(Message::Text(text))) => text,
                            Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                            Some(Ok(_)) => continue,
                        };
                        let Ok(ServerFrame::AckResult(r)) = ServerFrame::decode(&text) else { continue };
                        let failed = r.results.iter().any(|i| i.status == AckStatus::Error);
                        if let Some(retry) = pending.settle(r.reference.as_deref(), failed)
                            && sink.send(retry).await.is_err()
                        {
                            break;
                        }
                    }
                }).await;
                let close = Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "connector shutdown".into() }));
                let _ = tokio::time::timeout(write_timeout, sink.send(close)).await;
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while let Some(Ok(m)) = stream.next().await {
                        if matches!(m, Message::Close(_)) { break; }
                    }
                }).await;
                return SessionEnd::Drained;
            }
            Some(out) = rx.recv() => {
                let out = if version.is_v2() { pending.track(out) } else { out };
                match tokio::time::timeout(write_timeout, sink.send(out)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return SessionEnd::Ended { lasted: lasted(connected_at), why: Ended::Error(e.to_string()) },
                    Err(_) => return SessionEnd::Ended { lasted: lasted(connected_at), why: Ended::Error("write timed out".into()) },
                }
            }
            frame = stream.next() => {
                last = Instant::now();
                ctx.state.frame_seen();
                let message = match frame {
                    None => return SessionEnd::Ended { lasted: lasted(connected_at), why: Ended::Closed("connection ended".into()) },
                    Some(Err(e)) => return SessionEnd::Ended { lasted: lasted(connected_at), why: Ended::Error(e.to_string()) },
                    Some(Ok(m)) => m,
                };
                match message {
                    Message::Text(text) => match ServerFrame::decode(&text) {
                        Ok(ServerFrame::Webhook(msg)) => {
                            if draining.is_some() {
                                // Draining: take nothing new; hand it back at once.
                                let nack = Decision::Nack { retry: true, reason: "connector shutting down".into(), delay_ms: None };
                                let _ = acks.send(&msg.message_id, &nack).await;
                                continue;
                            }
                            let Some(held) = ctx.dispatcher.hold().await else { continue };
                            // Waiting for room is not silence from the relay.
                            last = Instant::now();
                            ctx.dispatcher.dispatch(msg, held, acks.clone(), ordered).await;
                        }
                        Ok(ServerFrame::Heartbeat(_)) => {
                            let echo = ClientFrame::Heartbeat { timestamp: Some(Timestamp::now().to_string()) };
                            if tx.try_send(Message::Text(echo.to_json().into())).is_err() {
                                tracing::debug!("Outbound queue full; heartbeat echo skipped");
                            }
                        }
                        Ok(ServerFrame::AckResult(r)) => {
                            for item in r.results.iter().filter(|i| i.status != AckStatus::Ok) {
                                tracing::warn!(message_id = %item.message_id, status = ?item.status, "Relay did not apply ack/nack/touch");
                                if item.status == AckStatus::NotInFlight {
                                    ctx.dispatcher.lease_lost(&item.message_id);
                                }
                            }
                            let failed = r.results.iter().any(|i| i.status == AckStatus::Error);
                            if let Some(retry) = pending.settle(r.reference.as_deref(), failed) {
                                tracing::debug!("Relay failed to apply an ack; sending it again");
                                if tokio::time::timeout(write_timeout, sink.send(retry)).await.is_err() {
                                    return SessionEnd::Ended { lasted: lasted(connected_at), why: Ended::Error("write timed out".into()) };
                                }
                            }
                        }
                        Ok(ServerFrame::Error(e)) => tracing::warn!(code = ?e.code, message = %e.message, "Relay reported an error"),
                        Ok(ServerFrame::Close(notice)) => {
                            tracing::info!(code = notice.code, reason = %notice.reason, "Relay is closing the connection");
                            notice_retry = notice.retry_after_ms.map(Duration::from_millis);
                        }
                        Ok(ServerFrame::Connected(_)) | Ok(ServerFrame::Unknown(_)) => {}
                        Err(e) => tracing::warn!(error = %e, "Skipping unreadable frame"),
                    },
                    Message::Close(frame) => {
                        let code = frame.as_ref().map(|f| u16::from(f.code)).unwrap_or(1005);
                        let why = match CloseReason::from_code(code) {
                            Some(CloseReason::TokenInvalid) if version.is_v2() => Ended::TokenInvalid,
                            Some(CloseReason::ChannelDeleted) if version.is_v2() => Ended::ChannelDeleted,
                            Some(CloseReason::AdminDisconnect) => match notice_retry {
                                Some(d) => Ended::RetryAfter(d),
                                None => Ended::Closed(format!("closed with {code}")),
                            },
                            _ => Ended::Closed(format!("closed with {code}")),
                        };
                        if draining.is_some() {
                            // The relay went away while draining; nothing more can be acked.
                            return SessionEnd::Drained;
                        }
                        return SessionEnd::Ended { lasted: lasted(connected_at), why };
                    }
                    // Pings are answered by the library; pongs and binary frames only count as life.
                    _ => {}
                }
            }
            () = tokio::time::sleep_until(stale_at), if draining.is_none() => {
                tracing::warn!(channel = %ctx.channel.channel, silent_ms = stale_timeout.as_millis() as u64, "Stream is stale; reconnecting");
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(None))).await;
                return SessionEnd::Ended { lasted: lasted(connected_at), why: Ended::Stale };
            }
        }
    }
}

/// v2 ack, nack and touch frames waiting for their `ack_result` (B.4), by `ref`. A frame whose
/// result reports `error` (the buffer failed; the lease is unchanged) is sent again, at most
/// [`MAX_FRAME_RETRIES`] times. Bounded: the oldest entries are forgotten first.
#[derive(Debug)]
struct PendingRefs {
    next: u64,
    capacity: usize,
    frames: std::collections::HashMap<String, (serde_json::Value, u8)>,
    order: std::collections::VecDeque<String>,
}

/// How often one ack frame is sent again after an `error` result.
const MAX_FRAME_RETRIES: u8 = 3;

impl PendingRefs {
    fn new(capacity: usize) -> Self {
        PendingRefs {
            next: 0,
            capacity: capacity.max(16),
            frames: std::collections::HashMap::new(),
            order: std::collections::VecDeque::new(),
        }
    }

    /// True when no ack, nack or touch is waiting for its result.
    fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Gives an ack/nack/touch frame a `ref` and remembers it; other frames pass unchanged.
    fn track(&mut self, out: Message) -> Message {
        self.track_with(out, 0)
    }

    fn track_with(&mut self, out: Message, tries: u8) -> Message {
        let Message::Text(text) = &out else {
            return out;
        };
        let Ok(serde_json::Value::Object(mut frame)) = serde_json::from_str(text) else {
            return out;
        };
        if !matches!(
            frame.get("type").and_then(|t| t.as_str()),
            Some("ack" | "nack" | "touch")
        ) {
            return out;
        }
        self.next += 1;
        let reference = format!("c{}", self.next);
        frame.insert("ref".into(), serde_json::Value::String(reference.clone()));
        let value = serde_json::Value::Object(frame);
        let text = value.to_string();
        if self.order.len() >= self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.frames.remove(&old);
        }
        self.order.push_back(reference.clone());
        self.frames.insert(reference, (value, tries));
        Message::Text(text.into())
    }

    /// Forgets `reference`; returns the frame to send again when the result was an error.
    fn settle(&mut self, reference: Option<&str>, failed: bool) -> Option<Message> {
        let reference = reference?;
        let (mut frame, tries) = self.frames.remove(reference)?;
        self.order.retain(|r| r != reference);
        if !failed || tries >= MAX_FRAME_RETRIES {
            return None;
        }
        if let serde_json::Value::Object(map) = &mut frame {
            map.remove("ref");
        }
        Some(self.track_with(Message::Text(frame.to_string().into()), tries + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_ack_frames_are_sent_again_a_bounded_number_of_times() {
        let mut p = PendingRefs::new(16);
        let heartbeat = Message::Text(r#"{"type":"heartbeat"}"#.into());
        assert_eq!(p.track(heartbeat.clone()), heartbeat);
        let sent = p.track(Message::Text(r#"{"type":"ack","message_id":"m1"}"#.into()));
        assert_eq!(
            sent.to_text().unwrap(),
            r#"{"type":"ack","message_id":"m1","ref":"c1"}"#
        );
        // An ok result forgets the frame.
        assert!(p.settle(Some("c1"), false).is_none());
        assert!(p.settle(Some("c1"), true).is_none());
        // An error result sends it again, with a new ref, at most three times.
        p.track(Message::Text(
            r#"{"type":"nack","message_id":"m2","retry":true}"#.into(),
        ));
        let mut reference = "c2".to_owned();
        for _ in 0..MAX_FRAME_RETRIES {
            let again = p.settle(Some(&reference), true).expect("sent again");
            let v: serde_json::Value = serde_json::from_str(again.to_text().unwrap()).unwrap();
            assert_eq!(v["message_id"], "m2");
            reference = v["ref"].as_str().unwrap().to_owned();
        }
        assert!(p.settle(Some(&reference), true).is_none());
        assert!(p.frames.is_empty() && p.order.is_empty());
    }

    #[test]
    fn pending_refs_are_bounded() {
        let mut p = PendingRefs::new(16);
        for i in 0..100 {
            p.track(Message::Text(
                format!(r#"{{"type":"ack","message_id":"m{i}"}}"#).into(),
            ));
        }
        assert_eq!(p.frames.len(), 16);
        assert_eq!(p.order.len(), 16);
    }

    #[test]
    fn host_and_port_come_from_the_url() {
        assert_eq!(
            host_port("ws://127.0.0.1:8080/connect/stream/x"),
            Some(("127.0.0.1".into(), 8080, false))
        );
        assert_eq!(
            host_port("wss://relay.example.com/connect/stream/x"),
            Some(("relay.example.com".into(), 443, true))
        );
        assert_eq!(host_port("wss://[::1]:9/x"), Some(("::1".into(), 9, true)));
    }
}
