//! `GET /healthz`, `GET /readyz` and the original's `GET /health` (`http-api.md` §2.1–2.3).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::app::{AppState, status_body};

/// Process up.
pub async fn healthz() -> Response {
    status_body(StatusCode::OK, json!({"status": "ok"}))
}

/// Buffer reachable and not shutting down.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let buffer = state.buffer_ok();
    if state.shutdown.is_cancelled() {
        return status_body(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "shutting_down", "buffer": buffer, "state_store": buffer}),
        );
    }
    if buffer {
        status_body(
            StatusCode::OK,
            json!({"status": "ready", "buffer": true, "state_store": true}),
        )
    } else {
        status_body(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready", "buffer": false, "state_store": false}),
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
