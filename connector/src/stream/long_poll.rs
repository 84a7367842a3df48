//! Long-poll client (`docs/reference/wire-protocol.md` A.3, B.8): one request per batch, asking for no more
//! messages than the dispatcher has room for, keeping the v2 session across polls, acks
//! over `POST /connect/ack` with the session id. In `auto` mode long-poll is used only against a
//! relay that grants v2 (A.6).

use std::time::Duration;

use tokio::time::Instant;
use webhook_connect_protocol::poll::PollResponse;
use webhook_connect_protocol::version::{CONNECTION_ID_HEADER, PROTOCOL_HEADER};
use webhook_connect_protocol::{ProtocolVersion, WebhookMessage};

use super::{Ended, Failure, MessageLimit, SessionCtx, SessionEnd, status_failure};
use crate::ack::{AckSink, HttpAcker};

/// Seconds the relay may hold each poll.
pub const POLL_TIMEOUT_SECS: u64 = 30;
/// Most messages asked for in one poll.
pub const MAX_MESSAGES: usize = 100;

/// Runs long-poll until an error or shutdown. `auto` means v1 relays are refused (A.6).
pub async fn run(ctx: &SessionCtx<'_>, auto: bool) -> SessionEnd {
    let config = &ctx.shared.config;
    let mut session: Option<String> = None;
    let mut connected_at: Option<Instant> = None;
    let mut acker: Option<(String, AckSink)> = None;
    let ended = |at: Option<Instant>, why: Ended| match at {
        Some(at) => SessionEnd::Ended {
            lasted: at.elapsed(),
            why,
        },
        None => match why {
            Ended::TooLarge(why) => SessionEnd::Failed(Failure::TooLarge(why)),
            why => SessionEnd::Failed(Failure::Other(format!("{why:?}"))),
        },
    };
    loop {
        if ctx.shutdown.is_cancelled() {
            ctx.dispatcher.drain(config.drain_timeout).await;
            return SessionEnd::Drained;
        }
        // Ask only for what can be held.
        if ctx.dispatcher.available() == 0 {
            tokio::select! {
                held = ctx.dispatcher.hold() => drop(held),
                () = ctx.shutdown.cancelled() => continue,
            }
        }
        let max = ctx.dispatcher.available().clamp(1, MAX_MESSAGES);
        let mut request = ctx
            .shared
            .relay_client
            .get(ctx.stream_url("/poll"))
            .query(&[
                ("timeout", POLL_TIMEOUT_SECS.to_string()),
                ("max_messages", max.to_string()),
            ])
            .headers(ctx.stream_headers())
            .timeout(Duration::from_secs(POLL_TIMEOUT_SECS) + config.connection_timeout);
        if let Some(id) = &session
            && ctx.wants_v2()
        {
            request = request.header(CONNECTION_ID_HEADER, id);
        }
        let response = tokio::select! {
            r = request.send() => r,
            () = ctx.shutdown.cancelled() => continue,
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => return ended(connected_at, Ended::Error(format!("poll failed: {e}"))),
        };
        let status = response.status().as_u16();
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
        if matches!(status, 200 | 204) && auto && !version.is_v2() {
            return SessionEnd::Failed(Failure::Unusable(
                "relay did not grant v2; long-poll acks need v2".into(),
            ));
        }
        match status {
            204 => {
                if let Some(id) = response
                    .headers()
                    .get(CONNECTION_ID_HEADER)
                    .and_then(|v| v.to_str().ok())
                {
                    session = Some(id.to_owned());
                }
                mark_connected(ctx, &mut connected_at, version, session.as_deref());
            }
            200 => {
                let body = match read_bounded(response, max, ctx.limit()).await {
                    Ok(b) => b,
                    Err(why) => return ended(connected_at, why),
                };
                ctx.state.frame_seen();
                let poll: PollResponse = match serde_json::from_slice(&body) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, "Skipping unreadable poll response");
                        continue;
                    }
                };
                session = Some(poll.connection_id.clone());
                mark_connected(ctx, &mut connected_at, version, session.as_deref());
                // One acker per session: v2 keeps the session across polls.
                let acks = match &acker {
                    Some((id, a)) if *id == poll.connection_id => a.clone(),
                    _ => {
                        let a = AckSink::Http(HttpAcker::new(
                            ctx.shared.relay_client.clone(),
                            format!("{}/connect/ack", config.cloud_url),
                            ctx.token.clone(),
                            poll.connection_id.clone(),
                            ctx.wants_v2(),
                            version.is_v2(),
                            config.ack_timeout,
                        ));
                        acker = Some((poll.connection_id.clone(), a.clone()));
                        a
                    }
                };
                for msg in poll.messages {
                    let msg: WebhookMessage = msg;
                    let Some(held) = ctx.dispatcher.hold().await else {
                        continue;
                    };
                    ctx.dispatcher
                        .dispatch(Box::new(msg), held, acks.clone(), false)
                        .await;
                }
            }
            409 => {
                // Our previous poll is still open at the relay: start a new session.
                session = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => {
                let failure = status_failure(other, "long-poll");
                return match (connected_at, failure) {
                    (_, Failure::Unauthorized(m)) => SessionEnd::Failed(Failure::Unauthorized(m)),
                    (Some(at), f) => SessionEnd::Ended {
                        lasted: at.elapsed(),
                        why: Ended::Error(format!("{f:?}")),
                    },
                    (None, f) => SessionEnd::Failed(f),
                };
            }
        }
    }
}

/// Reads a poll response of at most [`MessageLimit::poll_response_bytes`]`(asked)` bytes: a
/// declared `Content-Length` over the limit is refused before reading, a body that grows past it
/// is dropped with the connection.
async fn read_bounded(
    mut response: reqwest::Response,
    asked: usize,
    message_limit: MessageLimit,
) -> Result<Vec<u8>, Ended> {
    let limit = message_limit.poll_response_bytes(asked);
    let too_large = |got: String| {
        Ended::TooLarge(format!(
            "long-poll response of {got} bytes is larger than {limit} bytes \
             ({asked} messages asked, {}, plus framing)",
            message_limit.describe()
        ))
    };
    if let Some(declared) = response.content_length()
        && declared > limit as u64
    {
        return Err(too_large(declared.to_string()));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(too_large(format!("more than {}", body.len() + chunk.len())));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(Ended::Error(format!("poll read failed: {e}"))),
        }
    }
}

fn mark_connected(
    ctx: &SessionCtx<'_>,
    connected_at: &mut Option<Instant>,
    version: ProtocolVersion,
    session: Option<&str>,
) {
    if connected_at.is_none() {
        *connected_at = Some(Instant::now());
        ctx.state
            .connected("long_poll", u8::from(version), session.unwrap_or(""));
        tracing::info!(channel = %ctx.channel.channel, protocol_version = u8::from(version), "Polling");
    } else {
        ctx.state.frame_seen();
    }
}
