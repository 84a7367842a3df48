//! The route tables: the only module that names HTTP handlers. The main listener carries
//! ingest, the connector endpoints, health and (unless they have their own listeners) the admin
//! API and `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::http::error::{ApiError, json_errors};
use crate::http::{admin, connect, dashboard, health, ingest};
use crate::state::AppState;

async fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "Not Found").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed").into_response()
}

async fn security_headers(response: Response) -> Response {
    let mut response = response;
    response.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The HTTP routes of the relay.
pub fn router(state: Arc<AppState>) -> Router {
    let main = Router::new()
        .route("/webhook/{webhook_id}", post(ingest::plain))
        .route(
            "/webhook/{namespace}/{webhook_id}",
            post(ingest::namespaced),
        )
        .route(
            "/connect/stream/{channel}",
            get(connect::websocket::handler),
        )
        .route("/connect/stream/{channel}/sse", get(connect::sse::handler))
        .route(
            "/connect/stream/{channel}/poll",
            get(connect::long_poll::handler),
        )
        .route("/connect/ack", post(connect::ack::handler))
        .route("/connect/status/{channel}", get(connect::status::handler))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/health", get(health::health))
        .route("/openapi.json", get(health::openapi));
    // With `metrics.listen` set, `/metrics` is served only there (docs/reference/http-api.md §2.4).
    let main = if state.config.file.metrics.listen.is_empty() {
        main.route("/metrics", get(health::metrics))
    } else {
        main
    };
    // With `admin.listen` set, the admin routes live only on that listener (docs/reference/http-api.md §4).
    let main = if state.config.file.admin.listen.is_empty() {
        main.merge(admin_routes(state.clone()))
    } else {
        main
    };
    finish(main, state)
}

/// The paths the main router serves, read from the router itself (its `Debug` form lists every
/// path it matches): the test `openapi_routes` compares them with the OpenAPI document.
#[doc(hidden)]
pub fn served_paths(state: Arc<AppState>) -> Vec<String> {
    let text = format!("{:?}", router(state));
    // The fallback router (after `fallback_router`) holds the catch-all routes, not served paths.
    let served = text.split("fallback_router").next().unwrap_or_default();
    let mut paths: Vec<String> = served
        .split('"')
        .filter(|s| s.starts_with('/') && !s.contains("__private__axum"))
        .map(str::to_owned)
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// The admin routes alone, for the separate `admin.listen` listener.
pub fn admin_router(state: Arc<AppState>) -> Router {
    finish(admin_routes(state.clone()), state)
}

/// The admin API and the dashboard that uses it.
fn admin_routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .nest("/admin/webhook-connect", admin::router(state))
        .route(dashboard::PREFIX, get(dashboard::redirect))
        .route("/admin/ui/", get(dashboard::index))
        .route("/admin/ui/{file}", get(dashboard::file))
}

/// `/metrics` alone, for the separate `metrics.listen` listener.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    finish(Router::new().route("/metrics", get(health::metrics)), state)
}

fn finish(routes: Router<Arc<AppState>>, state: Arc<AppState>) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}
