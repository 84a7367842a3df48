//! The relay's one HTTP error type: `{"detail": "..."}` with the right status and headers, and
//! fixed texts for 5xx so internals never leak (`http-api.md` §0).

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

/// A JSON success response with `status`.
pub fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
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
