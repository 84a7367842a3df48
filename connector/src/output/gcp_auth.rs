//! Google service-account credentials for `gcp_pubsub` (`docs/reference/module-contract.md` §3.11, conn
//! `credentials_path`): the OAuth 2.0 JWT-bearer grant (RFC 7523) that Google's client
//! libraries use for a service-account JSON key.
//!
//! An RS256-signed assertion `{iss: client_email, scope, aud: token_uri, iat, exp}` is posted
//! to the key file's `token_uri`; the access token it returns is cached until
//! [`REFRESH_MARGIN`] before it expires. The cache lives in the connection's shared client, so
//! every instance on one connection entry uses one token, and concurrent callers refresh it
//! once.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use webhook_connect_protocol::config_values::Secret;

use super::error_mapping;
use super::{ErrorCategory, OutputError};

/// The OAuth scope of Pub/Sub.
pub(crate) const PUBSUB_SCOPE: &str = "https://www.googleapis.com/auth/pubsub";
/// Google's token endpoint, when the key file names none.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Lifetime asked for in the assertion (Google's maximum).
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);
/// A cached token is replaced this long before it expires.
pub(crate) const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Longest answer read from the token endpoint.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;

/// The parts of a service-account key file that the grant needs. The private key is held as a
/// parsed signing key; `Debug` shows only the account.
#[derive(Clone)]
pub(crate) struct ServiceAccount {
    pub(crate) client_email: String,
    pub(crate) token_uri: String,
    private_key_id: Option<String>,
    key: EncodingKey,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Parses the text of a service-account JSON key file. The error says which field is wrong
    /// and never quotes the key.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| format!("not a JSON key file: {e}"))?;
        let field = |name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
        match field("type").as_deref() {
            Some("service_account") => {}
            Some(other) => {
                return Err(format!(
                    "type is {other:?}; only \"service_account\" keys are supported"
                ));
            }
            None => return Err("missing field \"type\"".into()),
        }
        let client_email = field("client_email")
            .filter(|e| !e.is_empty())
            .ok_or("missing field \"client_email\"")?;
        let pem = Secret::new(field("private_key").ok_or("missing field \"private_key\"")?);
        let key = EncodingKey::from_rsa_pem(pem.expose().as_bytes())
            .map_err(|e| format!("private_key is not an RSA PEM key: {e}"))?;
        let token_uri = field("token_uri").unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
        if !(token_uri.starts_with("https://") || token_uri.starts_with("http://")) {
            return Err(format!("token_uri {token_uri:?} is not an http(s) URL"));
        }
        Ok(ServiceAccount {
            client_email,
            token_uri,
            private_key_id: field("private_key_id"),
            key,
        })
    }

    /// The signed assertion for `scope`, issued at `now` (seconds since the epoch).
    pub(crate) fn assertion(&self, scope: &str, now: i64) -> Result<String, OutputError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.private_key_id.clone();
        let lifetime = i64::try_from(ASSERTION_LIFETIME.as_secs()).unwrap_or(3600);
        let claims = json!({
            "iss": self.client_email,
            "scope": scope,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + lifetime,
        });
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| {
            OutputError::unavailable(
                ErrorCategory::Auth,
                format!("signing the service-account assertion: {e}"),
            )
        })
    }
}

/// A cached access token.
#[derive(Debug)]
struct Cached {
    token: Secret,
    refresh_at: Instant,
}

/// One token per connection: fetched on first use, refreshed shortly before expiry.
#[derive(Debug)]
pub(crate) struct TokenSource {
    account: ServiceAccount,
    scope: &'static str,
    cached: tokio::sync::Mutex<Option<Cached>>,
}

impl TokenSource {
    pub(crate) fn new(account: ServiceAccount, scope: &'static str) -> Self {
        TokenSource {
            account,
            scope,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// A valid access token, from the cache or from the token endpoint. Holding the lock across
    /// the exchange makes concurrent callers wait for one refresh instead of starting their own.
    pub(crate) async fn token(&self, http: &reqwest::Client) -> Result<Secret, OutputError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = self.exchange(http).await?;
        let refresh_at = Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN);
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at,
        });
        Ok(token)
    }

    /// Forgets the cached token (after the API refused it with 401).
    pub(crate) async fn invalidate(&self) {
        self.cached.lock().await.take();
    }

    async fn exchange(&self, http: &reqwest::Client) -> Result<(Secret, Duration), OutputError> {
        let now = chrono::Utc::now().timestamp();
        let assertion = self.account.assertion(self.scope, now)?;
        let what = format!("token request to {}", self.account.token_uri);
        let response = http
            .post(&self.account.token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| error_mapping::http_error(&what, &e))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| error_mapping::http_error(&what, &e))?;
        let body = &body[..body.len().min(MAX_TOKEN_ANSWER)];
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            // {"error": "invalid_grant", "error_description": "…"} — no secrets in either.
            let code = v.get("error").and_then(Value::as_str).unwrap_or("");
            let text = v
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("");
            let message = format!("{what}: HTTP {status} {code} {text}")
                .trim_end()
                .to_owned();
            return Err(if status == 429 || status >= 500 || status == 408 {
                OutputError::transient(ErrorCategory::ServerError, message)
            } else {
                OutputError::unavailable(ErrorCategory::Auth, message)
            });
        }
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                OutputError::unavailable(
                    ErrorCategory::Auth,
                    format!("{what}: the answer has no access_token"),
                )
            })?;
        let lifetime = v
            .get("expires_in")
            .and_then(Value::as_u64)
            .map_or(ASSERTION_LIFETIME, Duration::from_secs);
        Ok((Secret::new(token), lifetime))
    }
}

/// A network failure or timeout: `Transient`.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_checked_without_quoting_the_key() {
        let err = ServiceAccount::parse("{").unwrap_err();
        assert!(err.starts_with("not a JSON key file"), "{err}");
        let err = ServiceAccount::parse(r#"{"type":"authorized_user"}"#).unwrap_err();
        assert!(err.contains("service_account"), "{err}");
        let err = ServiceAccount::parse(
            r#"{"type":"service_account","client_email":"a@b","private_key":"not-a-key-SECRET"}"#,
        )
        .unwrap_err();
        assert!(err.contains("private_key is not an RSA PEM key"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
        let err =
            ServiceAccount::parse(r#"{"type":"service_account","private_key":"x"}"#).unwrap_err();
        assert!(err.contains("client_email"), "{err}");
    }
}
