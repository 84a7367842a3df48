//! Admin authentication (`http-api.md` §4.1, R-47): token configured, header present, token
//! valid (constant time, on bytes), fewer than `max_failed_auth_per_minute` failures from the
//! client IP in the last 60 s. Runs before anything else, including 404 and 422.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use webhook_connect_protocol::token::{PresentedToken, parse_authorization};

use crate::app::AppState;
use crate::channels::{TokenHash, hash_token};
use crate::http_error::ApiError;

/// Most client IPs tracked for failures (oldest evicted beyond this).
const MAX_TRACKED: usize = 10_000;

/// The admin token and the failure counters.
#[derive(Debug)]
pub struct AdminGuard {
    token: Option<TokenHash>,
    max_failures: usize,
    failures: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

impl AdminGuard {
    /// A guard for `token` (empty: admin API disabled).
    pub fn new(token: &str, max_failures: u64) -> Self {
        AdminGuard {
            token: (!token.is_empty()).then(|| hash_token(token.as_bytes())),
            max_failures: usize::try_from(max_failures).unwrap_or(usize::MAX),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn recent_failures(&self, ip: IpAddr) -> usize {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(list) = map.get_mut(&ip) else {
            return 0;
        };
        list.retain(|t| t.elapsed() < Duration::from_secs(60));
        let n = list.len();
        if n == 0 {
            map.remove(&ip);
        }
        n
    }

    fn record_failure(&self, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            map.retain(|_, l| l.iter().any(|t| t.elapsed() < Duration::from_secs(60)));
            if map.len() >= MAX_TRACKED
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, l)| l.last().copied())
                    .map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
        }
        let list = map.entry(ip).or_default();
        list.push(Instant::now());
        if list.len() > 1000 {
            list.remove(0);
        }
    }

    /// Checks a request's `Authorization` value from `ip`.
    pub fn check(&self, authorization: Option<&[u8]>, ip: IpAddr) -> Result<(), ApiError> {
        let Some(expected) = &self.token else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "Admin API disabled. Set WEBHOOK_CONNECT_ADMIN_TOKEN environment variable.",
            ));
        };
        let limited = || {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed admin authentication attempts",
            )
            .retry_after(60)
        };
        if self.recent_failures(ip) >= self.max_failures {
            return Err(limited());
        }
        let ok = match parse_authorization(authorization) {
            PresentedToken::Missing => {
                self.record_failure(ip);
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "Missing authorization header",
                ));
            }
            PresentedToken::Invalid => false,
            PresentedToken::Token(t) => bool::from(hash_token(t).ct_eq(expected)),
        };
        if ok {
            Ok(())
        } else {
            self.record_failure(ip);
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Invalid admin token",
            ))
        }
    }

    /// True when `authorization` holds the admin token (no counting; for optional details).
    pub fn is_admin(&self, authorization: Option<&[u8]>) -> bool {
        match (&self.token, parse_authorization(authorization)) {
            (Some(expected), PresentedToken::Token(t)) => bool::from(hash_token(t).ct_eq(expected)),
            _ => false,
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
    let ip = crate::transport::client_ip(&state, peer, request.headers());
    let authorization = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    if let Err(e) = state.admin.check(authorization.as_deref(), ip) {
        return e.into_response();
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
    use super::*;

    #[test]
    fn admin_checks_follow_the_spec_order_r47() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let disabled = AdminGuard::new("", 10);
        assert_eq!(
            disabled.check(Some(b"Bearer x"), ip).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        let guard = AdminGuard::new("admin-token-0123456789", 3);
        assert_eq!(
            guard.check(None, ip).unwrap_err().detail,
            "Missing authorization header"
        );
        assert_eq!(
            guard.check(Some(b"Bearer nope"), ip).unwrap_err().detail,
            "Invalid admin token"
        );
        assert!(
            guard
                .check(
                    Some(b"Bearer admin-token-0123456789"),
                    "10.0.0.2".parse().unwrap()
                )
                .is_ok()
        );
        assert_eq!(
            guard
                .check(Some("Bearer tök".as_bytes()), ip)
                .unwrap_err()
                .status,
            StatusCode::UNAUTHORIZED
        );
        // Three failures from 10.0.0.1: even the right token is now refused.
        let e = guard
            .check(Some(b"Bearer admin-token-0123456789"), ip)
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
