//! Helpers for the auth tests: building a webhook's checks and running them on a request.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde_json::Value;
use webhook_relay::auth::{AuthBuildOptions, AuthPass, Rejection, RequestView, WebhookAuth};

/// Builds the checks of one entry, panicking on load errors.
pub fn build(entry: Value) -> WebhookAuth {
    try_build(entry).unwrap_or_else(|e| panic!("load errors: {e:?}"))
}

/// Builds the checks of one entry.
pub fn try_build(entry: Value) -> Result<WebhookAuth, Vec<String>> {
    let Value::Object(map) = entry else {
        panic!("entry must be an object")
    };
    WebhookAuth::from_entry(&map, "webhooks.json: hook", &AuthBuildOptions::default())
}

/// A request to authenticate.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub uri: Uri,
    pub full_url: Option<String>,
    pub headers: HeaderMap,
    pub client_ip: IpAddr,
    pub body: Vec<u8>,
}

impl Req {
    pub fn post(uri: &str) -> Self {
        Req {
            method: Method::POST,
            uri: uri.parse().expect("uri"),
            full_url: None,
            headers: HeaderMap::new(),
            client_ip: "203.0.113.7".parse().expect("ip"),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
        self
    }

    pub fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    pub fn full_url(mut self, url: &str) -> Self {
        self.full_url = Some(url.to_string());
        self
    }
}

/// A time as unix seconds.
pub fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

/// The current unix time.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs `authenticate_at` on a request.
pub async fn auth_at(
    auth: &WebhookAuth,
    req: &Req,
    now: SystemTime,
) -> Result<AuthPass, Rejection> {
    let view = RequestView {
        method: &req.method,
        uri: &req.uri,
        full_url: req.full_url.as_deref(),
        headers: &req.headers,
        client_ip: req.client_ip,
    };
    auth.authenticate_at(&view, &req.body, now)
        .await
        .map_err(|(_, r)| r)
}

/// Runs `authenticate` (current time) on a request.
pub async fn auth_now(auth: &WebhookAuth, req: &Req) -> Result<AuthPass, Rejection> {
    let view = RequestView {
        method: &req.method,
        uri: &req.uri,
        full_url: req.full_url.as_deref(),
        headers: &req.headers,
        client_ip: req.client_ip,
    };
    auth.authenticate(&view, &req.body).await
}

/// The `(status, detail)` of a failure; panics on success.
pub fn failure(result: Result<AuthPass, Rejection>) -> (u16, String) {
    match result {
        Ok(p) => panic!("expected a rejection, got {p:?}"),
        Err(r) => (r.status.as_u16(), r.detail),
    }
}

/// Asserts a 401 with `detail`.
pub fn assert_401(result: Result<AuthPass, Rejection>, detail: &str) {
    assert_eq!(failure(result), (401, detail.to_string()));
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// HMAC-SHA256.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("key");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}
