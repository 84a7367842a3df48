//! SSE client (`docs/reference/wire-protocol.md` A.2, B.7): a streaming reqwest response decoded by the
//! protocol crate's byte-level [`SseDecoder`], acks over `POST /connect/ack` with the
//! stream's client, stale detection on any received bytes, comments included.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;
use webhook_connect_protocol::frames::Connected;
use webhook_connect_protocol::sse::{SseDecoder, SseEvent, SseTooLarge};
use webhook_connect_protocol::version::PROTOCOL_HEADER;
use webhook_connect_protocol::{ProtocolVersion, ServerFrame};

use super::{Ended, Failure, MessageLimit, SessionCtx, SessionEnd, maybe, status_failure};
use crate::ack::Decision;
use crate::ack::{AckSink, HttpAcker};

/// Runs one SSE session.
pub async fn run(ctx: &SessionCtx<'_>) -> SessionEnd {
    let config = &ctx.shared.config;
    let request = ctx
        .shared
        .relay_client
        .get(ctx.stream_url("/sse"))
        .headers(ctx.stream_headers())
        .header(http::header::ACCEPT, "text/event-stream")
        .header(http::header::CACHE_CONTROL, "no-cache");
    let response = match tokio::time::timeout(config.connection_timeout, request.send()).await {
        Err(_) => return SessionEnd::Failed(Failure::Other("SSE connect timed out".into())),
        Ok(Err(e)) => {
            return SessionEnd::Failed(Failure::Other(format!("SSE connect failed: {e}")));
        }
        Ok(Ok(r)) => r,
    };
    let status = response.status().as_u16();
    if status != 200 {
        return SessionEnd::Failed(status_failure(status, "SSE request"));
    }
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
    let mut body = response.bytes_stream();
    // One event carries one frame: bounded by the message limit plus framing, so a relay that
    // never ends an event cannot make the connector buffer without limit.
    let limit = ctx.limit();
    let mut decoder = SseDecoder::with_limits(limit.sse_event_bytes(), limit.sse_event_bytes());
    let mut events: Vec<SseEvent> = Vec::new();
    let mut pending = std::collections::VecDeque::new();

    // Wait for `connected`; a buffering proxy shows up as silence here (C.7 rule 4).
    let wait_connected = async {
        loop {
            while let Some(event) = pending.pop_front() {
                let event: SseEvent = event;
                match ServerFrame::from_sse(event.name(), &event.data) {
                    Ok(ServerFrame::Connected(c)) => return Ok(c),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "Skipping unreadable event"),
                }
            }
            match body.next().await {
                Some(Ok(chunk)) => {
                    if let Err(e) = decoder.feed(&chunk, &mut events) {
                        return Err(Failure::TooLarge(limit_text(&e, limit)));
                    }
                    pending.extend(events.drain(..));
                }
                Some(Err(e)) => return Err(Failure::Other(format!("SSE read failed: {e}"))),
                None => return Err(Failure::Other("SSE stream ended before `connected`".into())),
            }
        }
    };
    let connected: Connected =
        match tokio::time::timeout(config.connection_timeout, wait_connected).await {
            Ok(Ok(c)) => c,
            Ok(Err(f)) => return SessionEnd::Failed(f),
            Err(_) => {
                return SessionEnd::Failed(Failure::Unusable(
                    "no `connected` event within connection_timeout (buffered by a proxy?)".into(),
                ));
            }
        };
    let connected_at = Instant::now();
    ctx.state
        .connected("sse", u8::from(version), &connected.connection_id);
    tracing::info!(channel = %ctx.channel.channel, connection_id = %connected.connection_id, protocol_version = u8::from(version), "Connected over SSE");
    let acks = AckSink::Http(HttpAcker::new(
        ctx.shared.relay_client.clone(),
        format!("{}/connect/ack", config.cloud_url),
        ctx.token.clone(),
        connected.connection_id.clone(),
        ctx.wants_v2(),
        version.is_v2(),
        config.ack_timeout,
    ));
    let stale_timeout = ctx.stale_timeout(&connected);
    let ordered = connected.max_in_flight == Some(1);
    let mut last = Instant::now();
    let mut notice_retry: Option<Duration> = None;
    let mut closing: Option<u16> = None;
    let mut draining: Option<
        std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>>,
    > = None;

    loop {
        // Events already decoded go first.
        while let Some(event) = pending.pop_front() {
            match ServerFrame::from_sse(event.name(), &event.data) {
                Ok(ServerFrame::Webhook(msg)) => {
                    if draining.is_some() {
                        let nack = Decision::Nack {
                            retry: true,
                            reason: "connector shutting down".into(),
                            delay_ms: None,
                        };
                        let _ = acks.send(&msg.message_id, &nack).await;
                        continue;
                    }
                    let Some(held) = ctx.dispatcher.hold().await else {
                        continue;
                    };
                    last = Instant::now();
                    ctx.dispatcher
                        .dispatch(msg, held, acks.clone(), ordered)
                        .await;
                }
                Ok(ServerFrame::Close(notice)) => {
                    tracing::info!(code = notice.code, reason = %notice.reason, "Relay is closing the stream");
                    notice_retry = notice.retry_after_ms.map(Duration::from_millis);
                    closing = Some(notice.code);
                }
                Ok(ServerFrame::Error(e)) => {
                    tracing::warn!(code = ?e.code, message = %e.message, "Relay reported an error")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "Skipping unreadable event"),
            }
        }
        let stale_at = last + stale_timeout;
        tokio::select! {
            biased;
            () = ctx.shutdown.cancelled(), if draining.is_none() => {
                tracing::info!(channel = %ctx.channel.channel, in_flight = ctx.dispatcher.in_flight(), "Draining");
                draining = Some(Box::pin(ctx.dispatcher.drain(config.drain_timeout)));
            }
            _ = maybe(&mut draining) => {
                // Acks went out over HTTP; ending the response closes the stream.
                return SessionEnd::Drained;
            }
            chunk = body.next() => {
                last = Instant::now();
                ctx.state.frame_seen();
                match chunk {
                    Some(Ok(bytes)) => {
                        if let Err(e) = decoder.feed(&bytes, &mut events) {
                            return SessionEnd::Ended { lasted: connected_at.elapsed(), why: Ended::TooLarge(limit_text(&e, limit)) };
                        }
                        pending.extend(events.drain(..));
                    }
                    Some(Err(e)) if draining.is_none() => {
                        return SessionEnd::Ended { lasted: connected_at.elapsed(), why: Ended::Error(e.to_string()) };
                    }
                    None if draining.is_none() => {
                        let why = match closing {
                            Some(4001) => Ended::TokenInvalid,
                            Some(4002) => Ended::ChannelDeleted,
                            Some(4005) => notice_retry.map(Ended::RetryAfter).unwrap_or(Ended::Closed("admin disconnect".into())),
                            Some(code) => Ended::Closed(format!("close notice {code}")),
                            None => Ended::Closed("stream ended".into()),
                        };
                        return SessionEnd::Ended { lasted: connected_at.elapsed(), why };
                    }
                    // Stream gone while draining: keep waiting for the drain (acks use HTTP).
                    _ => {
                        if let Some(d) = draining.as_mut() {
                            d.as_mut().await;
                        }
                        return SessionEnd::Drained;
                    }
                }
            }
            () = tokio::time::sleep_until(stale_at), if draining.is_none() => {
                tracing::warn!(channel = %ctx.channel.channel, silent_ms = stale_timeout.as_millis() as u64, "Stream is stale; reconnecting");
                return SessionEnd::Ended { lasted: connected_at.elapsed(), why: Ended::Stale };
            }
        }
    }
}

/// The decoder's error with the limit it enforces spelled out.
fn limit_text(e: &SseTooLarge, limit: MessageLimit) -> String {
    format!("{e} ({}, plus framing)", limit.describe())
}
