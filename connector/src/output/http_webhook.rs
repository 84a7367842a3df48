//! `http_webhook` (`docs/reference/module-contract.md` §3.3): one HTTP request per message to a configured URL, over
//! one pooled client per instance, redirects not followed. The outbound policy applies to the
//! URL; header, TLS and error classification rules are shared with HTTP forwarding.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::error_mapping;
use super::{Delivery, ErrorCategory, ModuleSettings, Output, OutputError};
use crate::failure::retry_after;
use crate::outbound::PolicyResolver;
use crate::settings::Problems;
use webhook_connect_protocol::headers::never_forwarded;

/// Longest header name accepted.
const MAX_HEADER_NAME: usize = 200;
/// Longest header value accepted.
const MAX_HEADER_VALUE: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Auto,
    Raw,
    Json,
}

/// The `http_webhook` module.
#[derive(Debug)]
pub struct HttpWebhook {
    client: reqwest::Client,
    url: String,
    method: http::Method,
    headers: HeaderMap,
    forward_headers: bool,
    allowed_headers: Option<Vec<String>>,
    body: Body,
}

/// Why a header may not be sent, if it may not (§3.3 "Headers").
pub(crate) fn header_problem(name: &str, value: &str) -> Option<&'static str> {
    if name.is_empty()
        || name.len() > MAX_HEADER_NAME
        || HeaderName::from_bytes(name.as_bytes()).is_err()
    {
        return Some("not a valid header name (a token of at most 200 characters)");
    }
    if value.chars().count() > MAX_HEADER_VALUE {
        return Some("value longer than 8192 characters");
    }
    if value.contains(['\r', '\n', '\0', '\u{2028}', '\u{2029}']) {
        return Some("value contains CR, LF, NUL, U+2028 or U+2029");
    }
    None
}

/// Reads a `headers` object into a map; invalid headers are skipped with a warning.
pub(crate) fn static_headers(
    settings: &ModuleSettings<'_>,
    pairs: Vec<(String, String)>,
    problems: &mut Problems,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        match header_problem(&name, &value) {
            Some(why) => settings.warn(
                problems,
                &format!("module-config.headers.{name}"),
                format!("{why}; skipped"),
            ),
            None => {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(&value),
                ) {
                    headers.append(n, v);
                }
            }
        }
    }
    headers
}

/// Builds `http_webhook`.
pub fn build(settings: &ModuleSettings<'_>, problems: &mut Problems) -> Option<Box<dyn Output>> {
    let before = problems.errors.len();
    let mut r = settings.config_reader();
    let url = r.string(problems, "url");
    let method = r.choice(problems, "method", "POST", &["POST", "PUT", "PATCH"]);
    let header_pairs = r.string_map(problems, "headers").unwrap_or_default();
    let timeout = r.number_in(
        problems,
        "timeout",
        30.0,
        |n| n > 0.0 && n <= 3600.0,
        "in (0, 3600]",
    );
    let forward_headers = r.boolean(problems, "forward_headers", false);
    let allowed_headers = r
        .string_list(problems, "allowed_headers")
        .map(|l| l.into_iter().map(|h| h.to_ascii_lowercase()).collect());
    let allowed_hosts = r.string_list(problems, "allowed_hosts").unwrap_or_default();
    let body = match r.choice(problems, "body", "auto", &["auto", "raw", "json"]) {
        "raw" => Body::Raw,
        "json" => Body::Json,
        _ => Body::Auto,
    };
    let verify = r.boolean(problems, "verify_ssl", true);
    let ca = r.string(problems, "ca_cert_path");
    r.finish(problems, false);
    let Some(url) = url else {
        r.error(problems, "url", "missing field");
        return None;
    };
    settings.check_url(problems, "url", &url, &["http", "https"], &allowed_hosts);
    let headers = static_headers(settings, header_pairs, problems);
    // Reached directly: the connector's proxy is for the relay connection only.
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs_f64(timeout))
        .pool_idle_timeout(Duration::from_secs(60))
        .dns_resolver(PolicyResolver::new(
            settings.outbound_strict,
            &allowed_hosts,
        ))
        .danger_accept_invalid_certs(!verify);
    if let Some(path) = ca {
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|pem| reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string()))
        {
            Ok(cert) => builder = builder.add_root_certificate(cert),
            Err(e) => r.error(problems, "ca_cert_path", format!("cannot use {path}: {e}")),
        }
    }
    if problems.errors.len() > before {
        return None;
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            r.error(
                problems,
                "url",
                format!("cannot build the HTTP client: {e}"),
            );
            return None;
        }
    };
    Some(Box::new(HttpWebhook {
        client,
        url,
        method: http::Method::from_bytes(method.as_bytes()).unwrap_or(http::Method::POST),
        headers,
        forward_headers,
        allowed_headers,
        body,
    }))
}

impl HttpWebhook {
    /// Headers and body of the request for `d`.
    fn request(&self, d: &Delivery) -> Result<(HeaderMap, Vec<u8>), OutputError> {
        let mut headers = HeaderMap::new();
        if self.forward_headers {
            for (name, value) in &d.headers {
                if never_forwarded(name) || name == "content-type" {
                    continue;
                }
                if self
                    .allowed_headers
                    .as_ref()
                    .is_some_and(|a| !a.contains(name))
                {
                    continue;
                }
                if header_problem(name, value).is_some() {
                    continue;
                }
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    headers.insert(n, v);
                }
            }
        }
        // Static headers win over forwarded ones.
        for name in self.headers.keys() {
            headers.remove(name);
        }
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        let raw_available = d.content_type.is_some() && !d.body.is_empty();
        let (body, content_type) = match self.body {
            Body::Raw if d.body.is_empty() => {
                return Err(OutputError::permanent(
                    ErrorCategory::InvalidData,
                    "body raw: the message has no body",
                ));
            }
            Body::Raw => (d.body.to_vec(), d.content_type.clone()),
            Body::Auto if raw_available => (d.body.to_vec(), d.content_type.clone()),
            Body::Auto | Body::Json => (
                d.payload_json().into_bytes(),
                Some("application/json".into()),
            ),
        };
        if !headers.contains_key(http::header::CONTENT_TYPE)
            && let Some(v) = content_type.and_then(|ct| HeaderValue::from_str(&ct).ok())
        {
            headers.insert(http::header::CONTENT_TYPE, v);
        }
        for (name, value) in [
            ("x-webhook-message-id", d.message_id.as_str()),
            ("x-webhook-id", d.webhook_id.as_str()),
        ] {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
        Ok((headers, body))
    }
}

/// Maps a response status (§3.3 "Errors").
fn classify_status(status: u16, hint: Option<Duration>) -> Result<(), OutputError> {
    let reason = format!("target returned {status}");
    match status {
        200..=299 => Ok(()),
        408 => Err(OutputError::transient(ErrorCategory::Timeout, reason)),
        429 => Err(OutputError::transient(ErrorCategory::RateLimited, reason)),
        425 => Err(OutputError::transient(ErrorCategory::ClientError, reason)),
        500..=599 => Err(OutputError::transient(ErrorCategory::ServerError, reason)),
        _ => Err(OutputError::permanent(ErrorCategory::ClientError, reason)),
    }
    .map_err(|e| match hint {
        Some(h) if e.kind == super::ErrorKind::Transient => e.with_retry_after(h),
        _ => e,
    })
}

#[async_trait::async_trait]
impl Output for HttpWebhook {
    async fn setup(&self) -> Result<(), OutputError> {
        Ok(())
    }

    async fn process(&self, delivery: &Delivery) -> Result<(), OutputError> {
        let (headers, body) = self.request(delivery)?;
        let sent = self
            .client
            .request(self.method.clone(), &self.url)
            .headers(headers)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => {
                classify_status(response.status().as_u16(), retry_after(response.headers()))
            }
            Err(e) => Err(error_mapping::http_error("target", &e)),
        }
    }

    async fn teardown(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        use super::super::ErrorKind::*;
        let kind = |s| classify_status(s, None).err().map(|e| e.kind);
        assert_eq!(kind(204), None);
        for s in [408, 425, 429, 500, 503] {
            assert_eq!(kind(s), Some(Transient), "{s}");
        }
        for s in [301, 400, 404, 422] {
            assert_eq!(kind(s), Some(Permanent), "{s}");
        }
        let e = classify_status(429, Some(Duration::from_secs(7))).unwrap_err();
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(
            classify_status(422, None).unwrap_err().message,
            "target returned 422"
        );
    }

    #[test]
    fn bad_headers_are_detected() {
        assert!(header_problem("x-ok", "v").is_none());
        assert!(header_problem("bad header", "v").is_some());
        assert!(header_problem("x", "a\u{2028}b").is_some());
        assert!(header_problem(&"h".repeat(201), "v").is_some());
    }
}
