//! The failure answer of an ingest check: status, `detail` text and extra headers.

use http::{HeaderName, HeaderValue, StatusCode};

/// A request rejected by an ingest check. The handler answers `status` with
/// `{"detail": detail}` and adds `headers` (for example `WWW-Authenticate` or `Retry-After`).
///
/// `detail` never contains a presented or expected credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The HTTP status to answer.
    pub status: StatusCode,
    /// The `detail` text of the error body.
    pub detail: String,
    /// Extra response headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Rejection {
    /// A rejection without extra headers.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Rejection {
            status,
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 401 Unauthorized.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    /// 403 Forbidden.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }

    /// 429 with `Retry-After: max(1, seconds)`.
    pub fn too_many_requests(detail: impl Into<String>, retry_after_seconds: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, detail).with_retry_after(retry_after_seconds)
    }

    /// 503 with `Retry-After: max(1, seconds)`.
    pub fn unavailable(detail: impl Into<String>, retry_after_seconds: u64) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail).with_retry_after(retry_after_seconds)
    }

    /// Adds `Retry-After` (at least 1 second).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.headers
            .push((http::header::RETRY_AFTER, HeaderValue::from(seconds.max(1))));
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The `Retry-After` value, if set.
    pub fn retry_after(&self) -> Option<u64> {
        self.headers
            .iter()
            .find(|(n, _)| n == http::header::RETRY_AFTER)
            .and_then(|(_, v)| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }

    /// The `{"detail": …}` error body.
    pub fn body(&self) -> String {
        serde_json::json!({ "detail": self.detail }).to_string()
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.detail)
    }
}

impl std::error::Error for Rejection {}
