//! HTTP forwarding mode (`docs/reference/module-contract.md` §7.1): builds the request for a target, makes the local
//! attempts with backoff, and decides ack or nack.
//!
//! The concurrency permit is taken for each attempt and released while a retry delay sleeps
//! (R-77), so one slow-to-recover message does not block the others.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use webhook_connect_protocol::WebhookMessage;
use webhook_connect_protocol::backoff::Backoff;
use webhook_connect_protocol::headers::never_forwarded;
use webhook_connect_protocol::report::{DeliveryReport, MAX_SNIPPET_BYTES};

use crate::ack::Decision;
use crate::config::{BodyMode, ForwardHeaders, TargetConfig};
use crate::failure::{error_chain, is_tls_error, retry_after};
use crate::lease::{LEASE_LOST, Lease};
use crate::outbound;

/// Result of one attempt.
#[derive(Debug)]
enum Attempt {
    Success,
    /// Worth another local attempt; after the last one, nack with retry.
    Retryable {
        reason: String,
        kind: &'static str,
        retry_after: Option<Duration>,
    },
    /// Final at once.
    Final(Decision, &'static str),
}

/// Outcome of [`deliver`], with what the metrics need.
#[derive(Debug)]
pub struct Delivery {
    /// Ack or nack.
    pub decision: Decision,
    /// Attempts made.
    pub attempts: u32,
    /// Error kinds seen (`timeout`, `connection`, `tls`, `status_5xx`, …), one per failed attempt.
    pub error_kinds: Vec<&'static str>,
    /// What the last attempt got from the target, for the relay's message trace (sent with
    /// the ack or nack on v2).
    pub report: Option<DeliveryReport>,
}

/// A plain HTTP client for local targets: no redirects, default TLS (the connector itself uses
/// one built with its TLS settings). Without `proxy` it connects directly, ignoring the
/// standard proxy variables, as the connector's own target client does.
pub fn target_client(proxy: Option<&str>) -> Result<reqwest::Client, reqwest::Error> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(30));
    b = match proxy {
        Some(url) => b.proxy(reqwest::Proxy::all(url)?),
        None => b.no_proxy(),
    };
    b.build()
}

/// Delivers `msg` to `target`, making up to the policy's attempts, each under one permit of
/// `permits`. `channel` feeds the `X-Webhook-Channel` header. Cancelling `cancel` stops between
/// or during attempts with a nack `retry:true`; once `lease` is lost no further attempt starts
/// and a retryable failure is final (`docs/reference/module-contract.md` §6 "Bounded by the lease").
pub async fn deliver(
    client: &reqwest::Client,
    msg: &WebhookMessage,
    target: &TargetConfig,
    channel: &str,
    permits: &Semaphore,
    cancel: &CancellationToken,
    lease: &Lease,
) -> Delivery {
    let attempts = target.retry.attempts();
    let mut error_kinds = Vec::new();
    let mut report = None;
    let mut attempt = 1u32;
    loop {
        let result = {
            let permit = tokio::select! {
                p = permits.acquire() => p,
                () = cancel.cancelled() => {
                    return Delivery { decision: Decision::nack(true, "connector shutting down"), attempts: attempt - 1, error_kinds, report };
                }
            };
            let Ok(_permit) = permit else {
                return Delivery {
                    decision: Decision::nack(true, "connector shutting down"),
                    attempts: attempt - 1,
                    error_kinds,
                    report,
                };
            };
            tokio::select! {
                (r, got) = one_attempt(client, msg, target, channel, attempt) => {
                    report = Some(got);
                    r
                }
                () = cancel.cancelled() => Attempt::Final(Decision::nack(true, "connector shutting down"), "cancelled"),
            }
        };
        match result {
            Attempt::Success => {
                return Delivery {
                    decision: Decision::Ack,
                    attempts: attempt,
                    error_kinds,
                    report,
                };
            }
            Attempt::Final(decision, kind) => {
                if kind != "cancelled" {
                    error_kinds.push(kind);
                }
                return Delivery {
                    decision,
                    attempts: attempt,
                    error_kinds,
                    report,
                };
            }
            Attempt::Retryable {
                reason,
                kind,
                retry_after,
            } => {
                error_kinds.push(kind);
                if attempt >= attempts {
                    return Delivery {
                        decision: Decision::nack(true, reason),
                        attempts: attempt,
                        error_kinds,
                        report,
                    };
                }
                let delay = match retry_after {
                    Some(hint) => hint.min(target.retry.max_delay),
                    None => retry_delay(target, attempt),
                };
                tracing::debug!(message_id = %msg.message_id, attempt, delay_ms = delay.as_millis() as u64, reason = %reason, "Retrying delivery");
                // The permit is not held here (R-77).
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => {
                        return Delivery { decision: Decision::nack(true, reason), attempts: attempt, error_kinds, report };
                    }
                    () = lease.cancelled() => {
                        return Delivery { decision: Decision::nack(true, format!("{reason}; {LEASE_LOST}")), attempts: attempt, error_kinds, report };
                    }
                    () = tokio::time::sleep(delay) => {}
                }
                attempt += 1;
            }
        }
    }
}

/// Delay before attempt k+1 (k ≥ 1 done): `min(delay × multiplier^(k−1), max_delay)` reduced by
/// up to 20 % at random.
pub fn retry_delay(target: &TargetConfig, done: u32) -> Duration {
    let r = &target.retry;
    Backoff::new(r.delay, r.max_delay, r.multiplier)
        .with_jitter(0.2)
        .delay_for(done)
}

/// One request to the target: how it went, and what to report about it (status and, for a
/// failure, the start of the body; for no answer, the error).
async fn one_attempt(
    client: &reqwest::Client,
    msg: &WebhookMessage,
    target: &TargetConfig,
    channel: &str,
    attempt: u32,
) -> (Attempt, DeliveryReport) {
    let request = match build_request(msg, target, channel, attempt) {
        Ok(r) => r,
        Err(reason) => {
            let report = DeliveryReport::failed(reason.clone());
            return (
                Attempt::Final(Decision::nack(false, reason), "invalid_data"),
                report,
            );
        }
    };
    let mut builder = client
        .request(target.method.clone(), &target.url)
        .timeout(target.timeout)
        .headers(request.headers);
    if target.method != http::Method::GET || !request.body.is_empty() {
        builder = builder.body(request.body);
    }
    match builder.send().await {
        Ok(mut response) => {
            let status = response.status();
            let retry_after = retry_after(response.headers());
            let attempt = classify_status(status.as_u16(), retry_after);
            let report = if matches!(attempt, Attempt::Success) {
                DeliveryReport::answered(status.as_u16(), b"", None)
            } else {
                let body = body_start(&mut response).await;
                DeliveryReport::answered(status.as_u16(), &body, attempt.reason())
            };
            (attempt, report)
        }
        Err(e) => {
            let attempt = classify_error(&e);
            let report =
                DeliveryReport::failed(attempt.reason().unwrap_or_else(|| error_chain(&e)));
            (attempt, report)
        }
    }
}

/// The first [`MAX_SNIPPET_BYTES`] of a response body (less when it ends or fails first).
async fn body_start(response: &mut reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < MAX_SNIPPET_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    out.truncate(MAX_SNIPPET_BYTES);
    out
}

impl Attempt {
    /// The reason text of a failed attempt.
    fn reason(&self) -> Option<String> {
        match self {
            Attempt::Success => None,
            Attempt::Retryable { reason, .. } => Some(reason.clone()),
            Attempt::Final(Decision::Nack { reason, .. }, _) => Some(reason.clone()),
            Attempt::Final(Decision::Ack, _) => None,
        }
    }
}

fn classify_status(status: u16, retry_after: Option<Duration>) -> Attempt {
    match status {
        200..=299 => Attempt::Success,
        408 | 429 => Attempt::Retryable {
            reason: format!("target returned {status}"),
            kind: if status == 429 {
                "rate_limited"
            } else {
                "timeout"
            },
            retry_after,
        },
        500..=599 => Attempt::Retryable {
            reason: format!("target returned {status}"),
            kind: "server_error",
            retry_after: None,
        },
        _ => Attempt::Final(
            Decision::nack(false, format!("target returned {status}")),
            "client_error",
        ),
    }
}

fn classify_error(e: &reqwest::Error) -> Attempt {
    if e.is_timeout() {
        return Attempt::Retryable {
            reason: "target timed out".into(),
            kind: "timeout",
            retry_after: None,
        };
    }
    if let Some(refused) = outbound::refusal_in(e) {
        // An operator must change the configuration; the message waits in the relay.
        return Attempt::Final(Decision::nack(true, refused.to_string()), "policy");
    }
    if is_tls_error(e) {
        return Attempt::Final(
            Decision::nack(true, "TLS failure talking to the target"),
            "tls",
        );
    }
    Attempt::Retryable {
        reason: format!("cannot reach the target: {}", error_chain(e)),
        kind: "connection",
        retry_after: None,
    }
}

/// The headers and body of one request to a target.
#[derive(Debug)]
pub struct TargetRequest {
    /// Headers in the order of §7.1.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Builds headers and body for one attempt (§7.1 steps 2–6).
pub fn build_request(
    msg: &WebhookMessage,
    target: &TargetConfig,
    channel: &str,
    attempt: u32,
) -> Result<TargetRequest, String> {
    let mut headers = HeaderMap::new();
    // 2. Target headers first.
    for (name, value) in &target.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
    let target_has = |h: &HeaderMap, name: &str| -> bool {
        target
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
            || h.contains_key(name)
    };
    // 3. Original headers.
    let prefixed = matches!(
        target.forward_headers,
        ForwardHeaders::Both | ForwardHeaders::Prefixed
    );
    let original = matches!(
        target.forward_headers,
        ForwardHeaders::Both | ForwardHeaders::Original
    );
    let mut added = HeaderMap::new();
    for (name, value) in msg.headers.iter() {
        if never_forwarded(name) {
            continue;
        }
        let Ok(v) = HeaderValue::from_str(value) else {
            continue;
        };
        if prefixed {
            let pname = format!("x-original-{name}");
            if let Ok(n) = HeaderName::from_bytes(pname.as_bytes())
                && !target_has(&headers, n.as_str())
            {
                added.insert(n, v.clone());
            }
        }
        if original
            && !name.eq_ignore_ascii_case("content-type")
            && let Ok(n) = HeaderName::from_bytes(name.as_bytes())
            && !target_has(&headers, n.as_str())
        {
            added.insert(n, v);
        }
    }
    for (n, v) in added.iter() {
        headers.insert(n.clone(), v.clone());
    }
    // 4. Body.
    let raw = match msg.raw_body() {
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(_)) => None,
        None => None,
    };
    let (body, raw_sent) = match target.body {
        BodyMode::Auto => match raw {
            Some(b) => (b, true),
            None => (msg.payload_bytes(), false),
        },
        BodyMode::Raw => match raw {
            Some(b) => (b, true),
            None => return Err("target wants the raw body, but the message has none".into()),
        },
        BodyMode::Json => (msg.payload_bytes(), false),
    };
    // 5. Exactly one Content-Type.
    if !target_has(&headers, "content-type") {
        let original_ct = match &msg.content_type {
            Some(Some(ct)) => Some(ct.as_str()),
            _ => msg.headers.get("content-type"),
        };
        let payload_is_string = msg.payload.get().starts_with('"');
        let ct = if raw_sent {
            original_ct.unwrap_or("application/octet-stream")
        } else if payload_is_string {
            // A string payload is sent as its text: over v1 that is the original body of a
            // `blob` webhook (form posts, XML), so its own Content-Type fits it.
            original_ct
                .filter(|ct| !ct.to_ascii_lowercase().contains("json"))
                .unwrap_or("text/plain; charset=utf-8")
        } else {
            "application/json"
        };
        if let Ok(v) = HeaderValue::from_str(ct) {
            headers.insert(http::header::CONTENT_TYPE, v);
        }
    }
    // 6. Added headers override target headers of the same name.
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    set("x-webhook-message-id", msg.message_id.clone());
    set("x-webhook-id", msg.webhook_id.clone());
    set("x-webhook-attempt", attempt.to_string());
    if let Some(n) = msg.delivery_count {
        set("x-webhook-delivery-count", n.to_string());
    }
    if msg.sequence > 0 {
        set("x-webhook-sequence", msg.sequence.to_string());
    }
    if let Some(n) = msg.replay_count.filter(|n| *n > 0) {
        set("x-webhook-replayed", "true".to_owned());
        set("x-webhook-replay-count", n.to_string());
    }
    set("x-webhook-channel", channel.to_owned());
    Ok(TargetRequest { headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(json: &str) -> WebhookMessage {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn v2_sends_the_raw_body_with_its_content_type_and_one_content_type_r76() {
        let m = msg(
            r#"{"message_id":"msg_1","webhook_id":"stripe","sequence":4,"delivery_count":2,"headers":{"content-type":"application/json; charset=utf-8","stripe-signature":"t=1,v1=ab","host":"relay","content-length":"27","connection":"keep-alive"},"payload":{"id":"evt_1"},"content_type":"application/json; charset=utf-8","body":"eyAiaWQiOiAiZXZ0XzEiIH0="}"#,
        );
        let req = build_request(&m, &TargetConfig::new("http://x"), "payments", 1).unwrap();
        assert_eq!(req.body, br#"{ "id": "evt_1" }"#);
        let ct: Vec<_> = req.headers.get_all("content-type").iter().collect();
        assert_eq!(ct, vec!["application/json; charset=utf-8"]);
        assert_eq!(req.headers["stripe-signature"], "t=1,v1=ab");
        assert_eq!(req.headers["x-original-stripe-signature"], "t=1,v1=ab");
        assert!(req.headers.get("host").is_none());
        assert!(req.headers.get("content-length").is_none());
        assert!(req.headers.get("x-original-content-length").is_none());
        assert!(req.headers.get("connection").is_none());
        assert_eq!(req.headers["x-webhook-message-id"], "msg_1");
        assert_eq!(req.headers["x-webhook-id"], "stripe");
        assert_eq!(req.headers["x-webhook-attempt"], "1");
        assert_eq!(req.headers["x-webhook-delivery-count"], "2");
        assert_eq!(req.headers["x-webhook-sequence"], "4");
        assert_eq!(req.headers["x-webhook-channel"], "payments");
    }

    #[test]
    fn a_replayed_message_says_so_in_its_headers() {
        let m = msg(r#"{"message_id":"m","webhook_id":"w","payload":{},"replay_count":2}"#);
        let req = build_request(&m, &TargetConfig::new("http://x"), "c", 1).unwrap();
        assert_eq!(req.headers["x-webhook-replayed"], "true");
        assert_eq!(req.headers["x-webhook-replay-count"], "2");
        let fresh = msg(r#"{"message_id":"m","webhook_id":"w","payload":{}}"#);
        let req = build_request(&fresh, &TargetConfig::new("http://x"), "c", 1).unwrap();
        assert!(req.headers.get("x-webhook-replayed").is_none());
    }

    #[test]
    fn v1_non_string_payloads_are_sent_as_json_r76() {
        for (payload, want) in [("null", "null"), ("true", "true"), ("[1,2]", "[1,2]")] {
            let m = msg(&format!(
                r#"{{"message_id":"m","webhook_id":"w","headers":{{"content-type":"application/json"}},"payload":{payload}}}"#
            ));
            let req = build_request(&m, &TargetConfig::new("http://x"), "c", 1).unwrap();
            assert_eq!(req.body, want.as_bytes());
            assert_eq!(req.headers.get_all("content-type").iter().count(), 1);
            assert_eq!(req.headers["content-type"], "application/json");
        }
    }

    #[test]
    fn v1_string_payload_is_sent_as_its_text_with_its_content_type_r76() {
        let m = msg(
            r#"{"message_id":"m","webhook_id":"w","headers":{"content-type":"application/x-www-form-urlencoded"},"payload":"a=1&b=2"}"#,
        );
        let req = build_request(&m, &TargetConfig::new("http://x"), "c", 1).unwrap();
        assert_eq!(req.body, b"a=1&b=2");
        assert_eq!(
            req.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
    }

    #[test]
    fn target_headers_win_over_forwarded_ones_but_not_over_added_ones() {
        let m = msg(
            r#"{"message_id":"m","webhook_id":"w","headers":{"x-api-key":"from-sender","content-type":"text/xml"},"payload":"<a/>"}"#,
        );
        let mut t = TargetConfig::new("http://x");
        t.headers = vec![
            ("X-Api-Key".into(), "local".into()),
            ("Content-Type".into(), "application/xml".into()),
            ("X-Webhook-Id".into(), "spoof".into()),
        ];
        let req = build_request(&m, &t, "c", 2).unwrap();
        assert_eq!(req.headers["x-api-key"], "local");
        assert_eq!(req.headers.get_all("content-type").iter().count(), 1);
        assert_eq!(req.headers["content-type"], "application/xml");
        assert_eq!(req.headers["x-webhook-id"], "w");
        assert_eq!(req.headers["x-webhook-attempt"], "2");
    }

    #[test]
    fn forward_headers_none_and_raw_without_body() {
        let m = msg(r#"{"message_id":"m","webhook_id":"w","headers":{"x-a":"1"},"payload":{}}"#);
        let mut t = TargetConfig::new("http://x");
        t.forward_headers = ForwardHeaders::None;
        let req = build_request(&m, &t, "c", 1).unwrap();
        assert!(req.headers.get("x-a").is_none() && req.headers.get("x-original-x-a").is_none());
        t.body = BodyMode::Raw;
        assert!(build_request(&m, &t, "c", 1).is_err());
    }

    #[test]
    fn status_classification_follows_the_table() {
        assert!(matches!(classify_status(204, None), Attempt::Success));
        assert!(matches!(
            classify_status(429, None),
            Attempt::Retryable { .. }
        ));
        assert!(matches!(
            classify_status(408, None),
            Attempt::Retryable { .. }
        ));
        assert!(matches!(
            classify_status(503, None),
            Attempt::Retryable { .. }
        ));
        assert!(matches!(
            classify_status(404, None),
            Attempt::Final(Decision::Nack { retry: false, .. }, _)
        ));
        assert!(matches!(
            classify_status(302, None),
            Attempt::Final(Decision::Nack { retry: false, .. }, _)
        ));
    }

    #[test]
    fn retry_delay_follows_the_policy_with_up_to_twenty_percent_less() {
        let mut t = TargetConfig::new("http://x");
        t.retry.delay = Duration::from_secs(1);
        t.retry.max_delay = Duration::from_secs(3);
        for (done, base) in [(1, 1.0), (2, 2.0), (3, 3.0), (9, 3.0)] {
            let d = retry_delay(&t, done).as_secs_f64();
            assert!(d <= base + 1e-9 && d >= 0.8 * base - 1e-9, "{done}: {d}");
        }
    }
}
