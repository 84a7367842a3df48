//! Admin authentication (`docs/reference/http-api.md` §4.1, R-47): token configured, header present, token
//! valid (constant time, on bytes), fewer than `max_failed_auth_per_minute` failures from the
//! client IP in the last 60 s. Runs before anything else, including 404 and 422.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::admin_guard::AdminDenied;
use crate::http::error::ApiError;
use crate::state::AppState;

impl From<AdminDenied> for ApiError {
    fn from(denied: AdminDenied) -> Self {
        match denied {
            AdminDenied::Disabled => ApiError::new(
                StatusCode::FORBIDDEN,
                "Admin API disabled. Set WEBHOOK_CONNECT_ADMIN_TOKEN environment variable.",
            ),
            AdminDenied::TooManyFailures => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed admin authentication attempts",
            )
            .retry_after(60),
            AdminDenied::Missing => {
                ApiError::new(StatusCode::UNAUTHORIZED, "Missing authorization header")
            }
            AdminDenied::Invalid => ApiError::new(StatusCode::UNAUTHORIZED, "Invalid admin token"),
        }
    }
}

/// Middleware for every guarded admin route.
pub async fn require_admin(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let ip = crate::http::connect::client_ip(&state, peer, request.headers());
    let authorization = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    if let Err(e) = state.admin.check(authorization.as_deref(), ip) {
        return ApiError::from(e).into_response();
    }
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::admin_guard::AdminGuard;

    /// The guard's decision as the HTTP answer the middleware gives.
    trait CheckHttp {
        fn check_http(&self, authorization: Option<&[u8]>, ip: IpAddr) -> Result<(), ApiError>;
    }

    impl CheckHttp for AdminGuard {
        fn check_http(&self, authorization: Option<&[u8]>, ip: IpAddr) -> Result<(), ApiError> {
            self.check(authorization, ip).map_err(ApiError::from)
        }
    }

    #[test]
    fn admin_checks_follow_the_spec_order_r47() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let disabled = AdminGuard::new("", 10);
        assert_eq!(
            disabled
                .check_http(Some(b"Bearer x"), ip)
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
        let guard = AdminGuard::new("admin-token-0123456789", 3);
        assert_eq!(
            guard.check_http(None, ip).unwrap_err().detail,
            "Missing authorization header"
        );
        assert_eq!(
            guard
                .check_http(Some(b"Bearer nope"), ip)
                .unwrap_err()
                .detail,
            "Invalid admin token"
        );
        assert!(
            guard
                .check_http(
                    Some(b"Bearer admin-token-0123456789"),
                    "10.0.0.2".parse().unwrap()
                )
                .is_ok()
        );
        assert_eq!(
            guard
                .check_http(Some("Bearer tök".as_bytes()), ip)
                .unwrap_err()
                .status,
            StatusCode::UNAUTHORIZED
        );
        // Three failures from 10.0.0.1: even the right token is now refused.
        let e = guard
            .check_http(Some(b"Bearer admin-token-0123456789"), ip)
            .unwrap_err();
        assert_eq!(
            (e.status, e.detail.as_str()),
            (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed admin authentication attempts"
            )
        );
    }
}
