//! `oauth2` (§7.1): token introspection with SSRF policy and a bounded cache, or JWT mode.

use std::collections::HashMap;
use std::sync::Mutex;

use http::HeaderMap;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use webhook_connect_protocol::config_values::Secret;

use super::jwt::{JwsAlg, JwsError, JwtKeys, audience_matches, numeric_claim, verify_jws};
use super::outbound::form_body;
use super::rejection::Rejection;

/// Most introspection results kept.
pub(crate) const INTROSPECTION_CACHE_MAX: usize = 10_000;

#[derive(Debug)]
pub(crate) struct Introspection {
    pub endpoint: String,
    pub client_id: Option<Secret>,
    pub client_secret: Option<Secret>,
    pub client: reqwest::Client,
    pub cache_seconds: i64,
    pub cache: Mutex<IntrospectionCache>,
}

#[derive(Debug)]
pub(crate) struct JwtMode {
    pub algorithms: Vec<JwsAlg>,
    pub keys: JwtKeys,
}

#[derive(Debug)]
pub(crate) struct OAuth2Method {
    pub token_type: String,
    pub required_scope: Vec<String>,
    pub introspection: Option<Introspection>,
    pub jwt: Option<JwtMode>,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub verify_exp: bool,
}

fn unauthorized(detail: &str) -> Rejection {
    Rejection::unauthorized(detail)
}

fn unavailable() -> Rejection {
    Rejection::unavailable("OAuth 2.0 token introspection unavailable", 5)
}

/// Scopes from a space-separated string or a list.
fn scopes(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

impl OAuth2Method {
    fn has_scopes(&self, granted: &[String]) -> bool {
        self.required_scope.iter().all(|r| granted.contains(r))
    }

    /// Reads the token from the `Authorization` header.
    fn token<'h>(&self, headers: &'h HeaderMap) -> Result<&'h str, Rejection> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(unauthorized("Missing Authorization header"));
        };
        let raw = value.as_bytes();
        if raw.iter().any(|&b| b == b'\r' || b == b'\n') {
            return Err(unauthorized(
                "Invalid Authorization header format (newlines not allowed)",
            ));
        }
        let text = value.to_str().map_err(|_| {
            Rejection::unauthorized(format!("OAuth 2.0 {} token required", self.token_type))
        })?;
        let text = text.trim();
        let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
        if !scheme.eq_ignore_ascii_case(&self.token_type) {
            return Err(Rejection::unauthorized(format!(
                "OAuth 2.0 {} token required",
                self.token_type
            )));
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(unauthorized("Empty OAuth 2.0 token"));
        }
        Ok(token)
    }

    pub async fn check(&self, headers: &HeaderMap, now: i64) -> Result<(), Rejection> {
        let token = self.token(headers)?;
        if let Some(intro) = &self.introspection {
            return self.introspect(intro, token, now).await;
        }
        if let Some(jwt) = &self.jwt {
            return self.check_jwt(jwt, token, now);
        }
        // validate_token: false — a present token is enough.
        Ok(())
    }

    fn check_jwt(&self, jwt: &JwtMode, token: &str, now: i64) -> Result<(), Rejection> {
        let claims = verify_jws(token, &jwt.algorithms, &jwt.keys).map_err(|e| match e {
            JwsError::Format | JwsError::Algorithm | JwsError::Signature => {
                unauthorized("Invalid OAuth 2.0 JWT token")
            }
        })?;
        let invalid = || unauthorized("Invalid OAuth 2.0 JWT token");
        if self.verify_exp
            && let Some(exp) = numeric_claim(&claims, "exp").map_err(|()| invalid())?
            && (now as f64) >= exp
        {
            return Err(unauthorized("OAuth 2.0 token expired"));
        }
        if let Some(nbf) = numeric_claim(&claims, "nbf").map_err(|()| invalid())?
            && (now as f64) < nbf
        {
            return Err(invalid());
        }
        if let Some(aud) = &self.audience
            && !audience_matches(&claims, aud)
        {
            return Err(unauthorized("OAuth 2.0 token audience mismatch"));
        }
        if let Some(iss) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(iss.as_str())
        {
            return Err(unauthorized("OAuth 2.0 token issuer mismatch"));
        }
        let mut granted = scopes(claims.get("scope"));
        granted.extend(scopes(claims.get("scp")));
        if !self.has_scopes(&granted) {
            return Err(unauthorized("OAuth 2.0 token missing required scope"));
        }
        Ok(())
    }

    async fn introspect(
        &self,
        intro: &Introspection,
        token: &str,
        now: i64,
    ) -> Result<(), Rejection> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        {
            let cache = intro.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.entries.get(&key).is_some_and(|&exp| exp > now) {
                return Ok(());
            }
        }
        let mut request = intro
            .client
            .post(&intro.endpoint)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(form_body(&[
                ("token", token),
                ("token_type_hint", "access_token"),
            ]));
        if let Some(id) = &intro.client_id {
            request = request.basic_auth(
                id.expose(),
                intro.client_secret.as_ref().map(Secret::expose),
            );
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e.without_url(), "OAuth 2.0 introspection failed");
                return Err(unavailable());
            }
        };
        if response.status().is_server_error() {
            tracing::warn!(status = %response.status(), "OAuth 2.0 introspection failed");
            return Err(unavailable());
        }
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e.without_url(), "OAuth 2.0 introspection failed");
                return Err(unavailable());
            }
        };
        let Ok(result) = serde_json::from_slice::<Map<String, Value>>(&body) else {
            tracing::warn!("OAuth 2.0 introspection answered non-JSON");
            return Err(unavailable());
        };
        if result.get("active") != Some(&Value::Bool(true)) {
            return Err(unauthorized("OAuth 2.0 token is not active"));
        }
        if !self.has_scopes(&scopes(result.get("scope"))) {
            return Err(unauthorized("OAuth 2.0 token missing required scope"));
        }
        let mut until = now.saturating_add(intro.cache_seconds);
        if let Some(exp) = result
            .get("exp")
            .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f.floor() as i64)))
        {
            until = until.min(exp);
        }
        if until > now {
            let mut cache = intro.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.insert(key, until, now);
        }
        Ok(())
    }
}

/// Positive introspection results: SHA-256 of the token → expiry (unix seconds), at most
/// [`INTROSPECTION_CACHE_MAX`] entries.
#[derive(Debug, Default)]
pub(crate) struct IntrospectionCache {
    entries: HashMap<[u8; 32], i64>,
    /// Expired entries are swept at most once per second, when the cache is full.
    next_sweep: i64,
}

impl IntrospectionCache {
    /// Remembers a positive result until `until`; nothing is added while the cache is full.
    fn insert(&mut self, key: [u8; 32], until: i64, now: i64) {
        if self.entries.len() >= INTROSPECTION_CACHE_MAX && now >= self.next_sweep {
            self.entries.retain(|_, exp| *exp > now);
            self.next_sweep = now + 1;
        }
        if self.entries.len() < INTROSPECTION_CACHE_MAX {
            self.entries.insert(key, until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn introspection_cache_stays_bounded_r134() {
        let mut cache = IntrospectionCache::default();
        for i in 0..1_000_000u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            cache.insert(key, 1060, 1000);
        }
        assert_eq!(cache.entries.len(), INTROSPECTION_CACHE_MAX);
        // After expiry, room is made again.
        cache.insert([0; 32], 2060, 2000);
        assert_eq!(cache.entries.len(), 1);
    }
}
