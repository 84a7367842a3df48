//! `GET /healthz`, `GET /readyz` and the original's `GET /health` (`docs/reference/http-api.md` §2.1–2.3).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use webhook_connect_protocol::ConnectionKind;
use webhook_connect_protocol::token::{PresentedToken, parse_authorization};

use crate::metrics::{Detail, GaugeSample};
use serde_json::json;

use crate::http::error::{ApiError, json_response, status_body};
use crate::state::AppState;

/// Process up.
pub async fn healthz() -> Response {
    status_body(StatusCode::OK, json!({"status": "ok"}))
}

/// Buffer reachable and not shutting down.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let buffer = state.buffer_ok();
    let state_store = state.state_store.health_check().await;
    if state.shutdown.is_cancelled() {
        return status_body(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "shutting_down", "buffer": buffer, "state_store": state_store}),
        );
    }
    if buffer && state_store {
        status_body(
            StatusCode::OK,
            json!({"status": "ready", "buffer": true, "state_store": true}),
        )
    } else {
        status_body(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready", "buffer": buffer, "state_store": state_store}),
        )
    }
}

/// The original's health probe.
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    if state.buffer_ok() {
        status_body(
            StatusCode::OK,
            json!({"status": "healthy", "service": "webhook-relay", "timestamp": now, "components": {"webhook_connect": "healthy"}}),
        )
    } else {
        status_body(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unhealthy", "service": "webhook-relay", "timestamp": now, "components": {"webhook_connect": "unavailable"}}),
        )
    }
}

/// True when `headers` carry the configured metrics bearer token (compared in constant time).
fn metrics_token_ok(settings: &crate::config::file::MetricsSection, headers: &HeaderMap) -> bool {
    let presented = parse_authorization(
        headers
            .get(http::header::AUTHORIZATION)
            .map(http::HeaderValue::as_bytes),
    );
    match presented {
        PresentedToken::Token(token) => {
            crate::auth::ct::ct_eq(token, settings.bearer_token.expose().as_bytes())
        }
        _ => false,
    }
}

/// `GET /metrics`: counters and histograms, plus gauges read now from the buffer and hubs.
pub async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let settings = &state.config.file.metrics;
    if !settings.enabled {
        return ApiError::new(StatusCode::NOT_FOUND, "Not Found").into_response();
    }
    if !settings.bearer_token.is_empty() && !metrics_token_ok(settings, &headers) {
        let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    let mut gauges = vec![GaugeSample {
        name: "webhook_relay_body_bytes_in_use",
        labels: Vec::new(),
        value: state.body_budget.in_use() as f64,
    }];
    for channel in state.registry.channels() {
        let name = channel.name.clone();
        if let Ok(stats) = state.buffer.stats(&name).await {
            for q in &stats.queues {
                gauges.push(GaugeSample {
                    name: "webhook_relay_queue_depth",
                    labels: vec![
                        ("channel", name.clone()),
                        ("webhook_id", q.webhook_id.clone()),
                    ],
                    value: q.queued as f64,
                });
            }
            let t = &stats.total;
            for (family, value) in [
                ("webhook_relay_in_flight", t.in_flight as f64),
                ("webhook_relay_dead_letters", t.dead_letters as f64),
                (
                    "webhook_relay_oldest_message_age_seconds",
                    t.oldest_queued_age_seconds.unwrap_or(0.0),
                ),
            ] {
                gauges.push(GaugeSample {
                    name: family,
                    labels: vec![("channel", name.clone())],
                    value,
                });
            }
        }
        for kind in [
            ConnectionKind::WebSocket,
            ConnectionKind::Sse,
            ConnectionKind::LongPoll,
        ] {
            let n = channel
                .hub
                .connections()
                .iter()
                .filter(|c| c.info.kind == kind)
                .count();
            gauges.push(GaugeSample {
                name: "webhook_relay_connections",
                labels: vec![
                    ("channel", name.clone()),
                    ("protocol", kind.as_str().to_owned()),
                ],
                value: n as f64,
            });
        }
    }
    let (requests, streams, overflow) = state.admission.counts();
    for (kind, n) in [
        ("request", requests),
        ("stream", streams),
        ("overflow", overflow),
    ] {
        gauges.push(GaugeSample {
            name: "webhook_relay_open_connections",
            labels: vec![("kind", kind.to_owned())],
            value: n as f64,
        });
    }
    // On the main listener without a bearer token, anyone can scrape: totals only, no channel,
    // webhook or method names. A token, or a listener of its own, shows every label.
    let detail = if settings.listen.is_empty() && settings.bearer_token.is_empty() {
        Detail::Aggregate
    } else {
        Detail::Full
    };
    let mut response = state.metrics.render_as(&gauges, detail).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `GET /openapi.json`, served from memory (`404` when `server.openapi = false`).
pub async fn openapi(State(state): State<Arc<AppState>>) -> Response {
    if !state.config.file.server.openapi {
        return ApiError::new(StatusCode::NOT_FOUND, "Not Found").into_response();
    }
    json_response(StatusCode::OK, state.openapi.clone())
}
