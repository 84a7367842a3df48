//! `POST /webhook/{webhook_id}` and `POST /webhook/{namespace}/{webhook_id}` (`docs/reference/http-api.md` §1).
//!
//! The checks run in the spec's order and stop at the first failure; a rejected request changes
//! nothing. Checks that need no body (IP list, credentials in headers or the query, and
//! the rate limits when authentication is complete) run before the body is read. The body is read
//! against the limit (413 as soon as it is passed, R-04) and the global body memory budget (503),
//! large bodies are parsed on the blocking pool, and the answer is `200` only after the buffer
//! confirmed the message is stored.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::value::RawValue;
use webhook_connect_buffer::BufferError;
use webhook_connect_protocol::headers::is_hop_by_hop;
use webhook_connect_protocol::names::{validate_namespace, validate_webhook_id};
use webhook_connect_protocol::webhook::{PayloadEncoding, blob_payload};
use webhook_connect_protocol::{DataType, Envelope, Headers, MessageId, Timestamp};

use crate::auth::{Rejection, RequestView};
use crate::body::budget::{ReadError, read_body};
use crate::body::{BodyLimits, HeaderLimits, check_headers, parse_json_body};
use crate::channels::WebhookRoute;
use crate::http::error::{ApiError, json_response};
use crate::state::AppState;
use crate::trace::TraceEvent;

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        ApiError {
            status: r.status,
            detail: r.detail,
            headers: r.headers,
            ack_status: None,
        }
    }
}

/// `POST /webhook/{webhook_id}`
pub async fn plain(
    State(state): State<Arc<AppState>>,
    Path(webhook_id): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let result = ingest(
        &state,
        None,
        &webhook_id,
        peer,
        &method,
        &uri,
        &headers,
        body,
    )
    .await;
    respond(&state, &webhook_id, started, result)
}

/// `POST /webhook/{namespace}/{webhook_id}`
pub async fn namespaced(
    State(state): State<Arc<AppState>>,
    Path((namespace, webhook_id)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let result = ingest(
        &state,
        Some(&namespace),
        &webhook_id,
        peer,
        &method,
        &uri,
        &headers,
        body,
    )
    .await;
    respond(&state, &webhook_id, started, result)
}

/// The `webhook_id` label: the id when it is configured, else a fixed value, so senders cannot
/// grow the label set.
fn metric_label<'a>(state: &AppState, webhook_id: &'a str) -> &'a str {
    if state.registry.has_route(webhook_id) {
        webhook_id
    } else {
        "_unknown"
    }
}

fn respond(
    state: &AppState,
    webhook_id: &str,
    started: Instant,
    result: Result<MessageId, ApiError>,
) -> Response {
    let label = metric_label(state, webhook_id);
    let status = match &result {
        Ok(_) => "200".to_owned(),
        Err(e) => e.status.as_u16().to_string(),
    };
    state.metrics.inc(
        "webhook_relay_ingest_requests_total",
        &[("webhook_id", label), ("status", &status)],
    );
    state.metrics.observe(
        "webhook_relay_ingest_duration_seconds",
        &[("webhook_id", label)],
        started.elapsed().as_secs_f64(),
    );
    match result {
        Ok(id) => json_response(
            StatusCode::OK,
            serde_json::json!({"message": "200 OK", "message_id": id.as_str()}).to_string(),
        ),
        Err(e) => e.into_response(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn ingest(
    state: &AppState,
    namespace: Option<&str>,
    webhook_id: &str,
    peer: SocketAddr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<MessageId, ApiError> {
    let server = &state.config.file.server;
    // 1. Ready.
    if !state.is_ready() {
        return Err(ApiError::unavailable());
    }
    // 2. Namespace.
    if let Some(ns) = namespace {
        validate_namespace(ns)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    }
    // 3. Webhook id rules.
    validate_webhook_id(webhook_id)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    // 4. Known webhook.
    let route = state
        .registry
        .route(webhook_id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "Webhook ID not found"))?;
    // 5. Headers.
    check_headers(
        headers,
        &HeaderLimits {
            max_header_count: server.max_header_count as usize,
            max_header_bytes: server.max_header_bytes as usize,
        },
    )?;
    // 6. Content-Encoding.
    if let Some(enc) = headers.get(header::CONTENT_ENCODING)
        && !enc.as_bytes().eq_ignore_ascii_case(b"identity")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Content-Encoding",
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| latin1(v.as_bytes()));
    // 7. Media type for json.
    if route.data_type == DataType::Json
        && let Some(ct) = &content_type
    {
        let media = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if media == "application/x-www-form-urlencoded" || media == "multipart/form-data" {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type for data_type json",
            ));
        }
    }
    // 8. Declared length.
    let settings = route.channel.settings();
    let limit = server.max_body_bytes.min(settings.max_message_size);
    if let Some(len) = declared_length(headers)
        && len > limit
    {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Payload too large: {len} bytes (max: {limit})"),
        ));
    }
    // 9. IP allow-list.
    let client_ip = route.auth.resolve_client_ip(peer.ip(), headers)?;
    route.auth.check_ip(client_ip)?;
    let peer_trusted = route.auth.trusted_proxies().contains(peer.ip())
        || state.trusted_proxies.contains(peer.ip());
    let full_url =
        crate::auth::request_url(&server.public_base_url, false, peer_trusted, headers, uri);
    let view = RequestView {
        method,
        uri,
        full_url: full_url.as_deref(),
        headers,
        client_ip,
    };
    let now = std::time::SystemTime::now();
    // 10. Authentication that needs neither the body nor the network, before the body is read.
    route
        .auth
        .authenticate_before_body(&view, now)
        .await
        .map_err(|failure| auth_failed(state, webhook_id, failure))?;
    // 11. The rate limits, here when authentication is already complete.
    let mut admission = None;
    if route.auth.authenticated_before_body() {
        admission = Some(RateAdmission::take(&route, client_ip)?);
    }
    // 12. Body, bounded in size, time and the global body memory budget.
    let mut reservation = state.body_budget.reservation();
    let body = read_body(
        body,
        usize::try_from(limit).unwrap_or(usize::MAX),
        declared_length(headers),
        Duration::from_secs(server.body_read_timeout_seconds),
        &mut reservation,
    )
    .await
    .map_err(|e| match e {
        ReadError::TooLarge => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Payload too large: more than {limit} bytes (max: {limit})"),
        ),
        ReadError::Timeout => ApiError::new(StatusCode::REQUEST_TIMEOUT, "Request body timeout"),
        ReadError::OverBudget => {
            state
                .metrics
                .inc("webhook_relay_body_budget_refusals_total", &[]);
            tracing::warn!(
                webhook_id,
                in_use = state.body_budget.in_use(),
                limit = state.body_budget.limit(),
                "Body memory budget spent; request refused"
            );
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable")
                .retry_after(BODY_BUDGET_RETRY_AFTER_SECONDS)
        }
        ReadError::Broken => ApiError::new(StatusCode::BAD_REQUEST, "Could not read request body"),
    })?;
    // 13. The other authentication methods: those that read the body, then network ones.
    let pass = route
        .auth
        .authenticate_after_body(&view, &body, now)
        .await
        .map_err(|failure| auth_failed(state, webhook_id, failure))?;
    // 14. The rate limits, unless taken at step 11. From here on a rejection hands the
    // admission back (dropping it), so rejected requests change nothing.
    let admission = match admission {
        Some(a) => a,
        None => RateAdmission::take(&route, client_ip)?,
    };
    // 15–17. Payload; a large body is parsed off the async workers so it never delays other
    // requests or the readiness probe.
    let limits = BodyLimits {
        max_json_depth: server.max_json_depth as usize,
        max_string_length: usize::try_from(server.max_string_length).unwrap_or(usize::MAX),
    };
    let (payload, payload_encoding, body) = if body.len() >= BLOCKING_PAYLOAD_BYTES {
        let route = route.clone();
        let content_type = content_type.clone();
        let permit = PAYLOAD_SLOTS
            .acquire()
            .await
            .map_err(|_| ApiError::internal())?;
        // The reservation travels with the body, so its memory stays counted even when the
        // request ends while the blocking task still runs.
        let held = std::mem::replace(&mut reservation, state.body_budget.reservation());
        let (payload, body, held) = tokio::task::spawn_blocking(move || {
            let payload = build_payload(&route, &body, content_type.as_deref(), &limits);
            (payload, body, held)
        })
        .await
        .map_err(|_| ApiError::internal())?;
        reservation = held;
        drop(permit);
        let (payload, encoding) = payload?;
        (payload, encoding, body)
    } else {
        let (payload, encoding) = build_payload(&route, &body, content_type.as_deref(), &limits)?;
        (payload, encoding, body)
    };
    // 16. Store.
    let relayed = relayed_headers(headers, &pass.consumed_headers, &route);
    let received_at = Timestamp::now();
    let mut envelope = Envelope {
        message_id: MessageId::generate(),
        channel: route.channel.name.clone(),
        webhook_id: webhook_id.to_owned(),
        namespace: namespace.map(str::to_owned),
        sequence: 0,
        received_at,
        expires_at: Some(received_at.plus_millis(settings.ttl_seconds.saturating_mul(1000))),
        headers: relayed,
        raw_headers: None,
        data_type: route.data_type,
        content_type,
        payload,
        payload_encoding,
        body_omitted: route.auth.credential_cleanup().is_some(),
        body,
    };
    let stored = state.buffer.publish(&route.queue, &mut envelope).await;
    // The body's memory is given back when the request ends (here, or on any early return).
    drop(reservation);
    match stored {
        Ok(_) => {
            admission.keep();
            state.note_buffer_success();
            state.metrics.inc(
                "webhook_relay_messages_accepted_total",
                &[
                    ("channel", &envelope.channel),
                    ("webhook_id", metric_label(state, webhook_id)),
                ],
            );
            state.trace.record(
                &envelope.channel,
                envelope.message_id.as_str(),
                TraceEvent::Accepted {
                    at: envelope.received_at,
                    webhook_id: envelope.webhook_id.clone(),
                    expires_at: envelope.expires_at,
                },
            );
            tracing::debug!(channel = %envelope.channel, webhook_id, message_id = %envelope.message_id, "Webhook stored");
            Ok(envelope.message_id)
        }
        Err(BufferError::QueueFull) => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Queue full, retry later",
        )
        .retry_after(state.config.file.ingest.queue_full_retry_after_seconds)),
        Err(BufferError::TooLarge) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Payload too large: {} bytes (max: {limit})",
                envelope.body.len()
            ),
        )),
        Err(BufferError::UnknownChannel(_)) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "Webhook ID not found"))
        }
        Err(e) => {
            state
                .metrics
                .inc("webhook_relay_buffer_errors_total", &[("op", "publish")]);
            tracing::warn!(channel = %envelope.channel, webhook_id, error = %e, "Store failed");
            Err(ApiError::unavailable())
        }
    }
}

/// `Retry-After` of the `503` for a body that does not fit in the body memory budget.
const BODY_BUDGET_RETRY_AFTER_SECONDS: u64 = 1;

/// Bodies at least this large are turned into the stored payload on the blocking pool.
const BLOCKING_PAYLOAD_BYTES: usize = 64 * 1024;

/// At most this many large payloads are built at once, so big bodies cannot fill the blocking
/// pool and the CPU with parsing.
static PAYLOAD_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// Counts and logs an authentication failure (`docs/reference/auth-methods.md` §1.4) and gives its answer.
fn auth_failed(
    state: &AppState,
    webhook_id: &str,
    (method, rejection): (&'static str, Rejection),
) -> ApiError {
    state.metrics.inc(
        "webhook_relay_auth_failures_total",
        &[
            ("webhook_id", metric_label(state, webhook_id)),
            ("method", method),
        ],
    );
    rejection.into()
}

/// The declared `Content-Length`, when it is a number.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// An admission by the webhook's and the channel's rate limits, handed back on drop unless the
/// message was stored ([`RateAdmission::keep`]), so a rejected request changes nothing.
struct RateAdmission {
    route: Arc<WebhookRoute>,
    client_ip: IpAddr,
    at: Instant,
    kept: bool,
}

impl RateAdmission {
    /// The webhook's `rate_limit`, then the channel's `rate_limit_per_second` (429).
    fn take(route: &Arc<WebhookRoute>, client_ip: IpAddr) -> Result<Self, ApiError> {
        let at = Instant::now();
        route.auth.check_rate_limit(client_ip, at)?;
        let admission = RateAdmission {
            route: route.clone(),
            client_ip,
            at,
            kept: false,
        };
        // On failure the webhook's admission is handed back by the drop.
        route.channel.check_rate_limit()?;
        Ok(admission)
    }

    /// The message was stored: the admission stands.
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for RateAdmission {
    fn drop(&mut self) {
        if !self.kept {
            self.route.auth.refund_rate_limit(self.client_ip, self.at);
        }
    }
}

/// Steps 15–17 and credential cleanup: the stored payload of `body`.
fn build_payload(
    route: &WebhookRoute,
    body: &[u8],
    content_type: Option<&str>,
    limits: &BodyLimits,
) -> Result<(Box<RawValue>, Option<PayloadEncoding>), ApiError> {
    match route.data_type {
        DataType::Json => {
            let parsed = parse_json_body(body, content_type, limits)?;
            route.auth.validate_schema(&parsed.value)?;
            match route.auth.credential_cleanup() {
                Some(cleanup) => {
                    let mut value = parsed.value;
                    cleanup.clean_payload(&mut value);
                    Ok((
                        serde_json::value::to_raw_value(&value)
                            .map_err(|_| ApiError::internal())?,
                        None,
                    ))
                }
                None => Ok((parsed.compact, None)),
            }
        }
        DataType::Blob => Ok(blob_payload(body)),
    }
}

/// Header bytes as text: UTF-8 when valid, else ISO-8859-1.
fn latin1(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// The headers relayed with the message: lower-case names, repeated values joined, hop-by-hop
/// and consumed credential headers removed (`consumed` is empty when the webhook or the relay
/// turned stripping off), credential cleanup applied when configured.
fn relayed_headers(
    headers: &HeaderMap,
    consumed: &[axum::http::HeaderName],
    route: &WebhookRoute,
) -> Headers {
    let mut pairs: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| !is_hop_by_hop(name.as_str()))
        .filter(|(name, _)| !consumed.contains(name))
        .map(|(name, value)| (name.as_str().to_owned(), latin1(value.as_bytes())))
        .collect();
    if let Some(cleanup) = route.auth.credential_cleanup() {
        cleanup.clean_header_pairs(&mut pairs);
    }
    let mut out = Headers::new();
    for (name, value) in pairs {
        out.append(&name, &value);
    }
    out
}
