//! Stream clients and the per-channel connect loop (`docs/reference/wire-protocol.md` C.7): reconnect with
//! jittered exponential backoff, `auto` transport fallback on transport-level failures only
//! `unauthorized` handling with the maximum delay and a re-read token file.

pub(crate) mod long_poll;
pub(crate) mod proxy;
mod reconnect;
pub(crate) mod sse;
pub(crate) mod websocket;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use tokio_util::sync::CancellationToken;
use webhook_connect_protocol::config_values::Secret;
use webhook_connect_protocol::frames::Connected;
use webhook_connect_protocol::version::{
    CONNECTOR_ID_HEADER, MAX_IN_FLIGHT_HEADER, PROTOCOL_HEADER,
};

use self::reconnect::Backoff;
use crate::config::{ChannelConfig, ConnectorConfig, Protocol, TokenSource, VersionPreference};
use crate::dispatch::Dispatcher;
use crate::health::{ChannelState, ConnState};

/// Framing allowed on top of the frames: SSE `event:` / `id:` lines and `data: ` prefixes, the
/// long-poll response's envelope.
pub const FRAMING_OVERHEAD_BYTES: usize = 64 * 1024;

/// What one frame, SSE event or long-poll response may hold, derived from the configured
/// `max_message_size` (docs/reference/wire-protocol.md A.5: connectors accept server frames up to
/// `3 × max_message_size + 64 KiB`, since a v2 frame carries the body twice and base64 or JSON
/// escaping grows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLimit {
    max_message_size: usize,
}

impl MessageLimit {
    /// The limits for bodies of at most `max_message_size` bytes.
    pub fn new(max_message_size: u64) -> Self {
        MessageLimit {
            max_message_size: usize::try_from(max_message_size).unwrap_or(usize::MAX),
        }
    }

    /// Largest server frame (one message in its wire form), on every transport.
    pub fn frame_bytes(self) -> usize {
        self.max_message_size
            .saturating_mul(3)
            .saturating_add(FRAMING_OVERHEAD_BYTES)
    }

    /// Most bytes one SSE event may buffer (one frame plus framing).
    pub fn sse_event_bytes(self) -> usize {
        self.frame_bytes().saturating_add(FRAMING_OVERHEAD_BYTES)
    }

    /// Most bytes of one long-poll response asking for `messages` messages: that many frames
    /// plus framing. This is the memory those messages may take once held anyway.
    pub fn poll_response_bytes(self, messages: usize) -> usize {
        messages
            .max(1)
            .saturating_mul(self.frame_bytes())
            .saturating_add(FRAMING_OVERHEAD_BYTES)
    }

    /// How a violation names the limit in its log line.
    pub fn describe(self) -> String {
        format!(
            "frame limit {} bytes = 3 × max_message_size {} + {} KiB",
            self.frame_bytes(),
            self.max_message_size,
            FRAMING_OVERHEAD_BYTES / 1024
        )
    }
}

/// What every session of the process shares.
#[derive(Debug)]
pub struct Shared {
    /// The whole configuration.
    pub config: Arc<ConnectorConfig>,
    /// HTTP client for SSE, long-poll and acks (relay TLS and proxy settings).
    pub relay_client: reqwest::Client,
    /// TLS for WebSocket connections (the same settings).
    pub tls: Arc<rustls::ClientConfig>,
}

/// One connection attempt's inputs.
#[derive(Debug)]
pub struct SessionCtx<'a> {
    /// Process-wide pieces.
    pub shared: &'a Shared,
    /// The channel.
    pub channel: &'a ChannelConfig,
    /// The token read for this attempt.
    pub token: Secret,
    /// The channel's dispatcher.
    pub dispatcher: &'a Dispatcher,
    /// The channel's health.
    pub state: &'a ChannelState,
    /// Cancelled when the process shuts down: the session drains and ends.
    pub shutdown: &'a CancellationToken,
}

/// A connection attempt that never reached `connected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// `401`/`403` or a 4001 close before `connected`.
    Unauthorized(String),
    /// The transport itself is unusable here (C.7 rule 4): `auto` moves to the next one.
    Unusable(String),
    /// Anything else (network, `503`, timeouts): back off on the same transport.
    Other(String),
    /// The relay sent an event or response larger than the message limit: back off on the
    /// same transport, counted apart.
    TooLarge(String),
}

/// Why an established connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Nothing received for the stale timeout (C.1.8).
    Stale,
    /// The relay closed the connection.
    Closed(String),
    /// v2 4001: the token is no longer valid.
    TokenInvalid,
    /// v2 4002: the channel was deleted.
    ChannelDeleted,
    /// The relay asked for a specific wait (4005 `retry_after_ms`).
    RetryAfter(Duration),
    /// A transport error.
    Error(String),
    /// The relay sent an event or response larger than the message limit.
    TooLarge(String),
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// Never connected.
    Failed(Failure),
    /// Was connected for `lasted`.
    Ended {
        /// How long the connection was up.
        lasted: Duration,
        /// Why it ended.
        why: Ended,
    },
    /// Shut down after draining.
    Drained,
}

/// Transports in `auto` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket.
    WebSocket,
    /// Server-Sent Events.
    Sse,
    /// Long-poll.
    LongPoll,
}

impl Transport {
    /// Name used in logs and on `/readyz`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
            Transport::LongPoll => "long_poll",
        }
    }
}

/// Percent-encodes `segment` as one path segment.
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl SessionCtx<'_> {
    /// `{base}/connect/stream/{channel}` plus `suffix`.
    pub fn stream_url(&self, suffix: &str) -> String {
        format!(
            "{}/connect/stream/{}{suffix}",
            self.shared.config.cloud_url,
            encode_segment(&self.channel.channel)
        )
    }

    /// The size limits of what the relay sends, from `max_message_size`.
    pub fn limit(&self) -> MessageLimit {
        MessageLimit::new(self.shared.config.max_message_size)
    }

    /// True when v2 is asked for.
    pub fn wants_v2(&self) -> bool {
        self.channel.protocol_version != VersionPreference::V1
    }

    /// Headers sent on every stream request: token, version, in-flight limit, connector id.
    pub fn stream_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", self.token.expose())) {
            let mut v = v;
            v.set_sensitive(true);
            h.insert(http::header::AUTHORIZATION, v);
        }
        if self.wants_v2() {
            h.insert(
                HeaderName::from_static(PROTOCOL_HEADER),
                HeaderValue::from_static("2"),
            );
        }
        h.insert(
            HeaderName::from_static(MAX_IN_FLIGHT_HEADER),
            HeaderValue::from(self.dispatcher.capacity().max(1) as u64),
        );
        if let Some(id) = &self.channel.connector_id
            && let Ok(v) = HeaderValue::from_str(id)
        {
            h.insert(HeaderName::from_static(CONNECTOR_ID_HEADER), v);
        }
        h
    }

    /// The stale timeout: `heartbeat_timeout`, or with v2
    /// `max(heartbeat_timeout, 2 × heartbeat_interval_ms + 5 s)` (C.1.8).
    pub fn stale_timeout(&self, connected: &Connected) -> Duration {
        let base = self.shared.config.heartbeat_timeout;
        match connected.heartbeat_interval_ms {
            Some(ms) => {
                base.max(Duration::from_millis(ms.saturating_mul(2)) + Duration::from_secs(5))
            }
            None => base,
        }
    }
}

/// Awaits the future in `slot`, or never when the slot is empty (for `select!` branches).
pub(crate) async fn maybe<F: Future + ?Sized>(slot: &mut Option<Pin<Box<F>>>) -> F::Output {
    match slot {
        Some(f) => f.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Classifies an HTTP status answered instead of a stream (C.7 rules 3 and 4).
pub(crate) fn status_failure(status: u16, what: &str) -> Failure {
    match status {
        401 | 403 => Failure::Unauthorized(format!("{what} rejected with {status}")),
        200 | 400 | 404 | 405 | 426 | 501 => {
            Failure::Unusable(format!("{what} refused with {status}"))
        }
        _ => Failure::Other(format!("{what} answered {status}")),
    }
}

/// Runs one channel until `shutdown`: connect, serve, reconnect.
pub async fn run_channel(
    shared: Arc<Shared>,
    channel: Arc<ChannelConfig>,
    dispatcher: Arc<Dispatcher>,
    state: Arc<ChannelState>,
    shutdown: CancellationToken,
) {
    let config = shared.config.clone();
    let order: Vec<Transport> = match channel.protocol {
        Protocol::Auto => vec![Transport::WebSocket, Transport::Sse, Transport::LongPoll],
        Protocol::WebSocket => vec![Transport::WebSocket],
        Protocol::Sse => vec![Transport::Sse],
        Protocol::LongPoll => vec![Transport::LongPoll],
    };
    let mut idx = 0usize;
    let mut backoff = Backoff::new(config.reconnect.clone());
    // Every connection error names the relay it tried.
    let relay = webhook_connect_protocol::redact::mask_url(&config.cloud_url);
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        state.set_connecting();
        let token = match channel.token.read() {
            Ok(t) if t.is_empty() => {
                tracing::error!(channel = %channel.channel, "The token file is empty");
                state.set_disconnected();
                if !sleep_or_stop(backoff.next_delay(), &shutdown).await {
                    break;
                }
                continue;
            }
            Ok(t) => t,
            Err(e) => {
                tracing::error!(channel = %channel.channel, error = %e, "Cannot read token_file");
                state.set_disconnected();
                if !sleep_or_stop(backoff.next_delay(), &shutdown).await {
                    break;
                }
                continue;
            }
        };
        let transport = order[idx % order.len()];
        let ctx = SessionCtx {
            shared: &shared,
            channel: &channel,
            token,
            dispatcher: &dispatcher,
            state: &state,
            shutdown: &shutdown,
        };
        tracing::debug!(channel = %channel.channel, transport = transport.as_str(), "Connecting");
        let end = match transport {
            Transport::WebSocket => websocket::run(&ctx).await,
            Transport::Sse => sse::run(&ctx).await,
            Transport::LongPoll => long_poll::run(&ctx, order.len() > 1).await,
        };
        // After a rejected token the wait ends early when `token_file` changes.
        let mut token_rejected = false;
        let wait = match end {
            SessionEnd::Drained => return,
            SessionEnd::Failed(Failure::Unauthorized(why)) => {
                let wait = backoff.max_delay();
                tracing::error!(channel = %channel.channel, relay = %relay, transport = transport.as_str(), reason = %why, retry_in_s = wait.as_secs(), "Relay rejected the channel token: {}", TOKEN_HINT);
                state.set_state(ConnState::Unauthorized);
                state.reconnect("unauthorized");
                token_rejected = true;
                wait
            }
            SessionEnd::Failed(Failure::Unusable(why)) if order.len() > 1 => {
                idx = (idx + 1) % order.len();
                let next = order[idx];
                tracing::warn!(channel = %channel.channel, relay = %relay, transport = transport.as_str(), next = next.as_str(), reason = %why, "Transport unusable; falling back");
                state.set_disconnected();
                state.reconnect("fallback");
                if idx == 0 {
                    backoff.next_delay()
                } else {
                    Duration::ZERO
                }
            }
            SessionEnd::Failed(Failure::TooLarge(why))
            | SessionEnd::Ended {
                why: Ended::TooLarge(why),
                ..
            } => {
                too_large(&state, &channel.channel, transport, &why);
                backoff.next_delay()
            }
            SessionEnd::Failed(Failure::Unusable(why))
            | SessionEnd::Failed(Failure::Other(why)) => {
                tracing::warn!(channel = %channel.channel, relay = %relay, transport = transport.as_str(), reason = %why, "Connect failed");
                state.set_disconnected();
                state.reconnect("connect_failed");
                backoff.next_delay()
            }
            SessionEnd::Ended { lasted, why } => {
                backoff.connection_ended(lasted);
                if !matches!(why, Ended::TokenInvalid) {
                    tracing::info!(channel = %channel.channel, transport = transport.as_str(), reason = ?why, lasted_ms = lasted.as_millis() as u64, "Connection ended");
                }
                match why {
                    Ended::Stale => {
                        state.set_state(ConnState::Stale);
                        state.reconnect("stale");
                        backoff.next_delay()
                    }
                    Ended::TokenInvalid => {
                        state.set_state(ConnState::Unauthorized);
                        state.reconnect("token_invalid");
                        if token_changed(&channel.token, &ctx.token) {
                            tracing::warn!(channel = %channel.channel, transport = transport.as_str(), "The relay no longer accepts the channel token; token_file holds a new one, reconnecting");
                            backoff.next_delay()
                        } else {
                            let wait = backoff.max_delay();
                            tracing::error!(channel = %channel.channel, relay = %relay, transport = transport.as_str(), lasted_ms = lasted.as_millis() as u64, retry_in_s = wait.as_secs(), "The relay no longer accepts the channel token (rotated without grace, or revoked): {}", TOKEN_HINT);
                            token_rejected = true;
                            wait
                        }
                    }
                    Ended::ChannelDeleted => {
                        state.set_state(ConnState::Disconnected);
                        state.reconnect("channel_deleted");
                        backoff.max_delay()
                    }
                    Ended::RetryAfter(d) => {
                        state.set_state(ConnState::Disconnected);
                        state.reconnect("closed");
                        d.min(config.reconnect.max)
                    }
                    Ended::Closed(_) | Ended::Error(_) | Ended::TooLarge(_) => {
                        state.set_state(ConnState::Disconnected);
                        state.reconnect("closed");
                        backoff.next_delay()
                    }
                }
            }
        };
        let waited = if token_rejected {
            sleep_until_new_token(wait, &channel.token, &ctx.token, &shutdown).await
        } else {
            sleep_or_stop(wait, &shutdown).await
        };
        if !waited {
            break;
        }
    }
    // Shut down while not connected: let held work finish (its acks may no longer reach the
    // relay, which then redelivers; the completion record makes that cheap).
    dispatcher.drain(config.drain_timeout).await;
    state.set_state(ConnState::Disconnected);
}

/// The relay sent more than the message limit on one event or response (`why` names the
/// limit): the session has dropped the connection; one warning and
/// `reconnects_total{reason="too_large"}`.
fn too_large(state: &ChannelState, channel: &str, transport: Transport, why: &str) {
    tracing::warn!(
        channel = %channel,
        transport = transport.as_str(),
        reason = %why,
        "Relay sent more than the message limit; dropped the connection, reconnecting"
    );
    state.set_disconnected();
    state.reconnect("too_large");
}

/// What an operator does about a rejected token.
const TOKEN_HINT: &str = "set the channel's current token (a token_file is read again before every \
     connect, and a change is picked up within a second; an inline token needs a restart)";

/// How often a `token_file` is read while waiting after a rejected token.
const TOKEN_POLL: Duration = Duration::from_secs(1);

/// True when the token source now holds a token other than `used`.
fn token_changed(source: &TokenSource, used: &Secret) -> bool {
    matches!(source.read(), Ok(now) if !now.is_empty() && now != *used)
}

/// Waits `wait` after a rejected token, ending early when `token_file` holds a new token, so a
/// rotation is followed at once instead of after `max_reconnect_delay`. False on shutdown.
async fn sleep_until_new_token(
    wait: Duration,
    source: &TokenSource,
    used: &Secret,
    shutdown: &CancellationToken,
) -> bool {
    if !matches!(source, TokenSource::File(_)) {
        return sleep_or_stop(wait, shutdown).await;
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return true;
        }
        if !sleep_or_stop(TOKEN_POLL.min(deadline - now), shutdown).await {
            return false;
        }
        if token_changed(source, used) {
            return true;
        }
    }
}

async fn sleep_or_stop(wait: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        () = shutdown.cancelled() => false,
    }
}
