//! Recognising and describing failed outbound requests, for the HTTP forwarding of
//! [`crate::forward`] and the output modules alike: the error and its sources as one text, TLS
//! failures, and the `Retry-After` delay of a refusal.

use std::time::Duration;

use http::HeaderMap;

/// The `Retry-After` delay of a response, when given in seconds.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// True when a request failed on TLS (certificate, handshake).
pub(crate) fn is_tls_error(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        let text = err.to_string().to_ascii_lowercase();
        if text.contains("certificate") || text.contains("tls handshake") {
            return true;
        }
        source = err.source();
    }
    false
}

/// The error and its sources, joined with `: `.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// True when `e` is a failed TLS handshake (certificate refused, alert from the peer): a
/// `rustls::Error` anywhere in its sources, also inside an `io::Error`. Drivers that wrap the
/// I/O error so that its `rustls::Error` is out of reach are recognised by rustls's messages.
#[cfg_attr(
    not(any(feature = "mqtt", feature = "nats", feature = "redis")),
    allow(dead_code)
)] // only mqtt, nats and redis use it
pub(crate) fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        {
            return true;
        }
        source = err.source();
    }
    let text = e.to_string();
    [
        "invalid peer certificate",
        "received fatal alert",
        "peer is incompatible",
        "peer misbehaved",
    ]
    .iter()
    .any(|m| text.contains(m))
}
