//! `oauth1` (RFC 5849, §7.2, R-128): base string with query and form parameters, nonce cache.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use webhook_connect_protocol::config_values::Secret;

use super::codec::{oauth_encode, percent_decode};
use super::ct::ct_eq;
use super::hmac_sig::{HmacAlgorithm, hmac};
use super::nonce_cache::{NonceCache, NonceOutcome, nonce_key};
use super::rejection::Rejection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OAuth1Method {
    HmacSha1,
    HmacSha256,
    Plaintext,
}

impl OAuth1Method {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().as_str() {
            "HMAC-SHA1" => Some(OAuth1Method::HmacSha1),
            "HMAC-SHA256" => Some(OAuth1Method::HmacSha256),
            "PLAINTEXT" => Some(OAuth1Method::Plaintext),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BaseUriMode {
    Full,
    Path,
}

#[derive(Debug)]
pub(crate) struct OAuth1 {
    pub consumer_key: Secret,
    pub consumer_secret: Secret,
    pub token_secret: Secret,
    pub method: OAuth1Method,
    pub verify_timestamp: bool,
    pub timestamp_window: i64,
    pub verify_nonce: bool,
    pub base_uri_mode: BaseUriMode,
    pub nonces: NonceCache,
}

/// The inputs of the signature base string for one request.
pub(crate) struct OAuth1Request<'a> {
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    pub full_url: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

fn unauthorized(detail: impl Into<String>) -> Rejection {
    Rejection::unauthorized(detail)
}

/// Parses `OAuth name="value", …` parameters (values percent-decoded).
fn parse_header_params(rest: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for item in rest.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((name, value)) = item.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        out.push((percent_decode(name.trim()), percent_decode(value)));
    }
    out
}

/// `scheme://host[:port]/path` of a URL: scheme and host lower-cased, default port omitted, no
/// query or fragment.
pub(crate) fn normalize_base_uri(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    let host = authority.host().to_ascii_lowercase();
    let port = match (scheme.as_str(), authority.port_u16()) {
        ("http", Some(80)) | ("https", Some(443)) | (_, None) => String::new(),
        (_, Some(p)) => format!(":{p}"),
    };
    let path = if uri.path().is_empty() {
        "/"
    } else {
        uri.path()
    };
    Some(format!("{scheme}://{host}{port}{path}"))
}

/// The URL a request was made to, for the OAuth 1.0 base string (§7.2 rule 7), to pass as
/// [`RequestView::full_url`](super::RequestView::full_url):
///
/// - with `public_base_url` set: that URL (scheme, host, port and path prefix) + path + query;
/// - otherwise `https` when the request arrived over TLS, or when the peer is a trusted proxy
///   that sent `X-Forwarded-Proto: https`; the host from `Host`, or from `X-Forwarded-Host`
///   when the peer is a trusted proxy.
///
/// `None` when no host is known.
pub fn request_url(
    public_base_url: &str,
    tls: bool,
    peer_is_trusted_proxy: bool,
    headers: &HeaderMap,
    uri: &http::Uri,
) -> Option<String> {
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let base = public_base_url.trim();
    if !base.is_empty() {
        return Some(format!("{}{path_and_query}", base.trim_end_matches('/')));
    }
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let forwarded_https = peer_is_trusted_proxy
        && first("x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let scheme = if tls || forwarded_https {
        "https"
    } else {
        "http"
    };
    let host = peer_is_trusted_proxy
        .then(|| first("x-forwarded-host"))
        .flatten()
        .or_else(|| first("host"))
        .or_else(|| uri.authority().map(|a| a.as_str()))?;
    Some(format!("{scheme}://{host}{path_and_query}"))
}

/// The signature base string (RFC 5849 §3.4.1).
pub(crate) fn base_string(
    req: &OAuth1Request<'_>,
    mode: BaseUriMode,
    oauth_params: &[(String, String)],
) -> String {
    let base_uri = match mode {
        BaseUriMode::Path => req.uri.path().to_string(),
        BaseUriMode::Full => req
            .full_url
            .and_then(normalize_base_uri)
            .or_else(|| normalize_base_uri(&req.uri.to_string()))
            .or_else(|| {
                let host = req.headers.get(http::header::HOST)?.to_str().ok()?;
                normalize_base_uri(&format!("http://{host}{}", req.uri.path()))
            })
            .unwrap_or_else(|| req.uri.path().to_string()),
    };
    let mut pairs: Vec<(String, String)> = oauth_params
        .iter()
        .filter(|(n, _)| n != "oauth_signature" && n != "realm")
        .map(|(n, v)| (oauth_encode(n), oauth_encode(v)))
        .collect();
    if let Some(q) = req.uri.query() {
        pairs.extend(
            form_urlencoded::parse(q.as_bytes()).map(|(n, v)| (oauth_encode(&n), oauth_encode(&v))),
        );
    }
    let is_form = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if is_form {
        pairs.extend(
            form_urlencoded::parse(req.body).map(|(n, v)| (oauth_encode(&n), oauth_encode(&v))),
        );
    }
    pairs.sort();
    let normalized = pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}&{}&{}",
        req.method.as_str().to_ascii_uppercase(),
        oauth_encode(&base_uri),
        oauth_encode(&normalized)
    )
}

impl OAuth1 {
    fn signing_key(&self) -> String {
        format!(
            "{}&{}",
            oauth_encode(self.consumer_secret.expose()),
            oauth_encode(self.token_secret.expose())
        )
    }

    pub fn check(&self, req: &OAuth1Request<'_>, now: i64) -> Result<(), Rejection> {
        let Some(value) = req.headers.get(http::header::AUTHORIZATION) else {
            return Err(unauthorized("Missing Authorization header"));
        };
        let text = String::from_utf8_lossy(value.as_bytes());
        let text = text.trim();
        let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
        if !scheme.eq_ignore_ascii_case("oauth") {
            return Err(unauthorized("OAuth 1.0 authentication required"));
        }
        let params = parse_header_params(rest);
        let get = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let require = |name: &str| {
            get(name).ok_or_else(|| {
                unauthorized(format!("Missing required OAuth 1.0 parameter: {name}"))
            })
        };
        let consumer_key = require("oauth_consumer_key")?;
        let method = require("oauth_signature_method")?;
        let signature = require("oauth_signature")?;
        if !ct_eq(
            consumer_key.as_bytes(),
            self.consumer_key.expose().as_bytes(),
        ) {
            return Err(unauthorized("Invalid OAuth 1.0 consumer key"));
        }
        if OAuth1Method::parse(method) != Some(self.method) {
            return Err(unauthorized(format!(
                "Invalid OAuth 1.0 signature method: {method}"
            )));
        }
        if self.verify_timestamp {
            let ts = require("oauth_timestamp")?;
            let ts: i64 = ts
                .parse()
                .ok()
                .filter(|_| !ts.starts_with('+'))
                .ok_or_else(|| unauthorized("Invalid OAuth 1.0 timestamp"))?;
            let diff = now.saturating_sub(ts).saturating_abs();
            if diff > self.timestamp_window {
                return Err(unauthorized(format!(
                    "OAuth 1.0 timestamp out of window (diff: {diff}s, max: {}s)",
                    self.timestamp_window
                )));
            }
        }
        let mut nonce_cache_key = None;
        if self.verify_nonce {
            let nonce = require("oauth_nonce")?;
            if nonce.is_empty() {
                return Err(unauthorized("Invalid OAuth 1.0 nonce format"));
            }
            let key = nonce_key(&[consumer_key, nonce]);
            if self.nonces.contains(&key, now) {
                return Err(unauthorized("OAuth 1.0 nonce already used"));
            }
            nonce_cache_key = Some(key);
        }
        let key = self.signing_key();
        let expected = match self.method {
            OAuth1Method::Plaintext => key,
            OAuth1Method::HmacSha1 | OAuth1Method::HmacSha256 => {
                let alg = if self.method == OAuth1Method::HmacSha1 {
                    HmacAlgorithm::Sha1
                } else {
                    HmacAlgorithm::Sha256
                };
                let base = base_string(req, self.base_uri_mode, &params);
                STANDARD.encode(hmac(alg, key.as_bytes(), &[base.as_bytes()]))
            }
        };
        if !ct_eq(signature.as_bytes(), expected.as_bytes()) {
            return Err(unauthorized("Invalid OAuth 1.0 signature"));
        }
        if let Some(key) = nonce_cache_key {
            match self.nonces.insert(key, now) {
                NonceOutcome::Fresh => {}
                NonceOutcome::Replayed => {
                    return Err(unauthorized("OAuth 1.0 nonce already used"));
                }
                NonceOutcome::Full => {
                    return Err(Rejection::unavailable(
                        "Server nonce storage full, please retry later",
                        1,
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_url_prefers_public_base_url_then_trusted_forwarding_headers() {
        let uri: http::Uri = "/webhook/h?a=1".parse().expect("uri");
        let mut h = HeaderMap::new();
        h.insert("host", "relay.internal:8000".parse().expect("v"));
        h.insert("x-forwarded-proto", "https".parse().expect("v"));
        h.insert("x-forwarded-host", "hooks.example.com".parse().expect("v"));
        assert_eq!(
            request_url("https://pub.example.com/relay/", false, true, &h, &uri).as_deref(),
            Some("https://pub.example.com/relay/webhook/h?a=1")
        );
        assert_eq!(
            request_url("", false, true, &h, &uri).as_deref(),
            Some("https://hooks.example.com/webhook/h?a=1")
        );
        assert_eq!(
            request_url("", false, false, &h, &uri).as_deref(),
            Some("http://relay.internal:8000/webhook/h?a=1")
        );
        assert_eq!(
            request_url("", true, false, &h, &uri).as_deref(),
            Some("https://relay.internal:8000/webhook/h?a=1")
        );
        assert_eq!(request_url("", false, false, &HeaderMap::new(), &uri), None);
    }

    #[test]
    fn base_uri_is_normalised() {
        assert_eq!(
            normalize_base_uri("HTTP://Example.COM:80/r%20v/X?id=123").as_deref(),
            Some("http://example.com/r%20v/X")
        );
        assert_eq!(
            normalize_base_uri("https://www.example.net:8080/?q=1").as_deref(),
            Some("https://www.example.net:8080/")
        );
    }

    #[test]
    fn rfc5849_section_3_4_1_1_example_base_string_r128() {
        // RFC 5849 §3.4.1.1 (the example with query, form body and repeated parameters).
        let method = http::Method::POST;
        let uri: http::Uri = "/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b"
            .parse()
            .expect("uri");
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().expect("ct"),
        );
        let req = OAuth1Request {
            method: &method,
            uri: &uri,
            full_url: Some("http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b"),
            headers: &headers,
            body: b"c2&a3=2+q",
        };
        let params = parse_header_params(
            r#"realm="Example", oauth_consumer_key="9djdj82h48djs9d2", oauth_token="kkk9d7dh3k39sjv7", oauth_signature_method="HMAC-SHA1", oauth_timestamp="137131201", oauth_nonce="7d8f3e4a", oauth_signature="djosJKDKJSD8743243%2Fjdk33klY%3D""#,
        );
        let expected = "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q\
%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9dj\
dj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1\
%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk9d7dh3k39sjv7";
        assert_eq!(base_string(&req, BaseUriMode::Full, &params), expected);
    }
}
