//! The relay's one HTTP error type: `{"detail": "..."}` with the right status and headers, and
//! fixed texts for 5xx so internals never leak (`docs/reference/http-api.md` §0).

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The `detail` text.
    pub detail: String,
    /// Extra headers (`Retry-After`, `WWW-Authenticate`, …).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// v2 ack failures: `status` member of the body.
    pub ack_status: Option<&'static str>,
}

impl ApiError {
    /// An error with `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: detail.into(),
            headers: Vec::new(),
            ack_status: None,
        }
    }

    /// Adds `Retry-After: secs` (at least 1).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.headers.push((
            axum::http::header::RETRY_AFTER,
            HeaderValue::from(secs.max(1)),
        ));
        self
    }

    /// `503 Service unavailable` with `Retry-After`.
    pub fn unavailable() -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable").retry_after(5)
    }

    /// `500 Internal server error`.
    pub fn internal() -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }

    /// `422` with `detail`.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert("detail".into(), serde_json::Value::String(self.detail));
        if let Some(status) = self.ack_status {
            body.insert("status".into(), serde_json::Value::String(status.into()));
        }
        let mut response =
            (self.status, axum::Json(serde_json::Value::Object(body))).into_response();
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

/// The most of a non-JSON error body [`json_errors`] reads to use as its `detail`.
const MAX_REJECTION_TEXT: usize = 4096;
/// The longest `detail` [`json_errors`] keeps from such a body.
const MAX_DETAIL_CHARS: usize = 512;

/// Gives every error answer the JSON shape of `docs/reference/http-api.md` §0, `{"detail": "<text>"}`: the
/// framework's own rejections (a path, query or body extractor that failed, a bad WebSocket
/// upgrade, a body over the extractor's limit) and the empty `404`/`405` of nested routers
/// answer in plain text or with no body at all. A 4xx keeps its text (or, when empty, the
/// status's reason phrase); a 5xx gets only its reason phrase, never internals. Headers such as
/// `Allow` and `Retry-After` are kept.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("application/json"));
    if is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let reason = status.canonical_reason().unwrap_or("Error");
    let detail = if status.is_server_error() {
        reason.to_owned()
    } else {
        match axum::body::to_bytes(body, MAX_REJECTION_TEXT).await {
            Ok(bytes) => match std::str::from_utf8(&bytes).map(str::trim) {
                Ok(text) if !text.is_empty() => text.chars().take(MAX_DETAIL_CHARS).collect(),
                _ => reason.to_owned(),
            },
            Err(_) => reason.to_owned(),
        }
    };
    let body = serde_json::json!({ "detail": detail }).to_string();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// A JSON success response with `status`.
pub fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `body` serialized as a JSON success response with `status`.
pub fn typed_body<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_string(body) {
        Ok(text) => json_response(status, text),
        Err(_) => ApiError::internal().into_response(),
    }
}

/// The shape of every error answer (the OpenAPI document's `Error`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What went wrong (for a 5xx only the status's reason phrase).
    pub detail: String,
    /// v2 ack failures only: `not_in_flight` or `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// A JSON `{"status":…}` body.
pub fn status_body(status: StatusCode, body: serde_json::Value) -> Response {
    json_response(status, body.to_string())
}

impl From<crate::channels::RateLimited> for ApiError {
    fn from(_: crate::channels::RateLimited) -> Self {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit exceeded. Retry after 1 seconds",
        )
        .retry_after(1)
    }
}

impl From<crate::lifecycle::DefinitionError> for ApiError {
    fn from(e: crate::lifecycle::DefinitionError) -> Self {
        use crate::lifecycle::DefinitionError;
        match e {
            DefinitionError::Invalid(detail) => ApiError::unprocessable(detail),
            DefinitionError::WebhookIdInUse(_) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
        }
    }
}
