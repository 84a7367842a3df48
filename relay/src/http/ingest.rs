//! `POST /webhook/{webhook_id}` and `POST /webhook/{namespace}/{webhook_id}` (`http-api.md` §1).
//!
//! The checks run in the spec's order and stop at the first failure; a rejected request changes
//! nothing. The body is read against the limit (413 as soon as it is passed, R-04) and the
//! answer is `200` only after the buffer confirmed the message is stored.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use webhook_connect_buffer::BufferError;
use webhook_connect_protocol::headers::is_hop_by_hop;
use webhook_connect_protocol::names::{validate_namespace, validate_webhook_id};
use webhook_connect_protocol::webhook::blob_payload;
use webhook_connect_protocol::{DataType, Envelope, Headers, MessageId, Timestamp};

use crate::auth::{Rejection, RequestView};
use crate::body::{BodyLimits, HeaderLimits, check_headers, parse_json_body};
use crate::channels::WebhookRoute;
use crate::http::error::{ApiError, json_response};
use crate::state::AppState;

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
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
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
    // 10. Body, bounded in size and time.
    let read = axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX));
    let body =
        match tokio::time::timeout(Duration::from_secs(server.body_read_timeout_seconds), read)
            .await
        {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "Request body timeout",
                ));
            }
            Ok(Err(e)) => {
                let too_large = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                    || e.to_string().contains("length limit");
                if too_large {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("Payload too large: more than {limit} bytes (max: {limit})"),
                    ));
                }
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "Could not read request body",
                ));
            }
            Ok(Ok(b)) => b,
        };
    // 11. Authentication.
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
    let pass = match route
        .auth
        .authenticate_at(&view, &body, std::time::SystemTime::now())
        .await
    {
        Ok(pass) => pass,
        Err((method, rejection)) => {
            state.metrics.inc(
                "webhook_relay_auth_failures_total",
                &[
                    ("webhook_id", metric_label(state, webhook_id)),
                    ("method", method),
                ],
            );
            return Err(rejection.into());
        }
    };
    // 12. Rate limits: the webhook's, then the channel's.
    route.auth.check_rate_limit(client_ip, Instant::now())?;
    // From here on a rejection hands the rate-limit admission back.
    let refund = || route.auth.refund_rate_limit(client_ip, Instant::now());
    route.channel.check_rate_limit().inspect_err(|_| refund())?;
    // 13–15. Payload.
    let (payload, payload_encoding) = match route.data_type {
        DataType::Json => {
            let limits = BodyLimits {
                max_json_depth: server.max_json_depth as usize,
                max_string_length: usize::try_from(server.max_string_length).unwrap_or(usize::MAX),
            };
            let parsed = parse_json_body(&body, content_type.as_deref(), &limits)
                .inspect_err(|_| refund())?;
            route
                .auth
                .validate_schema(&parsed.value)
                .inspect_err(|_| refund())?;
            match route.auth.credential_cleanup() {
                Some(cleanup) => {
                    let mut value = parsed.value;
                    cleanup.clean_payload(&mut value);
                    (
                        serde_json::value::to_raw_value(&value)
                            .map_err(|_| ApiError::internal())?,
                        None,
                    )
                }
                None => (parsed.compact, None),
            }
        }
        DataType::Blob => blob_payload(&body),
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
        body: body.to_vec(),
    };
    let stored = state.buffer.publish(&route.queue, &mut envelope).await;
    if stored.is_err() {
        refund();
    }
    match stored {
        Ok(_) => {
            state.metrics.inc(
                "webhook_relay_messages_accepted_total",
                &[
                    ("channel", &envelope.channel),
                    ("webhook_id", metric_label(state, webhook_id)),
                ],
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
