//! The admin token check: constant-time comparison on the token's hash, and a per-client-IP
//! limit on failed attempts in the last minute. The HTTP middleware in
//! [`crate::http::admin`] turns a refusal into its response.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;
use webhook_connect_protocol::token::{PresentedToken, parse_authorization};

use crate::channels::{TokenHash, hash_token};

/// Why an admin request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminDenied {
    /// No admin token is configured: the admin API is off.
    Disabled,
    /// Too many failed attempts from this client in the last minute.
    TooManyFailures,
    /// No `Authorization` header.
    Missing,
    /// A token that is not the admin token.
    Invalid,
}

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
    pub fn check(&self, authorization: Option<&[u8]>, ip: IpAddr) -> Result<(), AdminDenied> {
        let Some(expected) = &self.token else {
            return Err(AdminDenied::Disabled);
        };
        if self.recent_failures(ip) >= self.max_failures {
            return Err(AdminDenied::TooManyFailures);
        }
        let ok = match parse_authorization(authorization) {
            PresentedToken::Missing => {
                self.record_failure(ip);
                return Err(AdminDenied::Missing);
            }
            PresentedToken::Invalid => false,
            PresentedToken::Token(t) => bool::from(hash_token(t).ct_eq(expected)),
        };
        if ok {
            Ok(())
        } else {
            self.record_failure(ip);
            Err(AdminDenied::Invalid)
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
