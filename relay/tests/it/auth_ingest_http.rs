//! Inbound validation through the real ingest handler (in-process relay): statuses, bodies and
//! headers on the wire, and what reaches a connector.

use std::time::Duration;

use crate::support::TestRelay;

const WAIT: Duration = Duration::from_secs(10);

const WEBHOOKS: &str = r#"
[channels.webhooks.gh]
data_type = "blob"
authorization = "Bearer relay-token"
hmac = { preset = "github", secret = "It's a Secret to Everybody" }
[channels.webhooks.limited]
header_auth = { api_key = "k1" }
rate_limit = { max_requests = 2, window_seconds = 60 }
[channels.webhooks.digest]
digest_auth = { username = "alice", password = "wonder" }
[channels.webhooks.walled]
ip_whitelist = ["10.0.0.0/8"]
[channels.webhooks.schema]
json_schema = { type = "object", required = ["id"] }
[channels.webhooks.proxied]
ip_whitelist = ["203.0.113.0/24"]
trusted_proxies = ["127.0.0.1"]
[channels.webhooks.oauth]
oauth1 = { consumer_key = "ck", consumer_secret = "cs" }
[channels.webhooks.cleaned]
credential_cleanup = { enabled = true, mode = "mask" }
"#;

async fn post(
    relay: &TestRelay,
    id: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> reqwest::Response {
    let mut r = relay
        .http
        .post(format!("{}/webhook/{id}", relay.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.expect("request")
}

async fn detail(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v: serde_json::Value = r.json().await.expect("json error body");
    (status, v["detail"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn github_signature_reaches_connector_and_consumed_bearer_does_not_r130_r131() {
    let relay = TestRelay::start("auth-gh", WEBHOOKS, "").await;
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let bad = post(
        &relay,
        "gh",
        &[
            ("authorization", "Bearer relay-token"),
            ("x-hub-signature-256", sig),
        ],
        "Hello, World?",
    )
    .await;
    assert_eq!(
        detail(bad).await,
        (401, "Invalid HMAC signature".to_string())
    );
    let ok = post(
        &relay,
        "gh",
        &[
            ("authorization", "Bearer relay-token"),
            ("x-hub-signature-256", sig),
        ],
        "Hello, World!",
    )
    .await;
    assert_eq!(ok.status(), 200);

    let mut ws = relay.ws(false, &[]).await;
    let _ = ws.next_of("connected", WAIT).await;
    let webhook = ws.next_of("webhook", WAIT).await;
    let headers = webhook["headers"].as_object().expect("headers object");
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("x-hub-signature-256"), Some(serde_json::json!(sig)));
    assert_eq!(get("authorization"), None, "consumed credential stripped");
    drop(ws);
}

#[tokio::test]
async fn failed_authentication_does_not_use_rate_limit_and_429_has_retry_after_r07() {
    let relay = TestRelay::start("auth-r07", WEBHOOKS, "").await;
    for _ in 0..5 {
        let r = post(&relay, "limited", &[("x-api-key", "wrong")], "{}").await;
        assert_eq!(
            detail(r).await,
            (401, "Invalid API key in header: X-API-Key".to_string())
        );
    }
    for _ in 0..2 {
        let r = post(&relay, "limited", &[("x-api-key", "k1")], "{}").await;
        assert_eq!(r.status(), 200);
    }
    let r = post(&relay, "limited", &[("x-api-key", "k1")], "{}").await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry));
    let (_, text) = detail(r).await;
    assert_eq!(
        text,
        format!("Rate limit exceeded. Retry after {retry} seconds")
    );
}

#[tokio::test]
async fn digest_401_carries_a_challenge_on_the_wire_r129() {
    let relay = TestRelay::start("auth-digest", WEBHOOKS, "").await;
    let r = post(&relay, "digest", &[], "{}").await;
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("challenge");
    assert!(
        challenge
            .starts_with("Digest realm=\"Webhook API\", qop=\"auth\", algorithm=MD5, nonce=\"")
    );
    assert_eq!(
        detail(r).await,
        (401, "Missing Authorization header".to_string())
    );
}

#[tokio::test]
async fn ip_whitelist_refuses_the_peer_with_403_r09() {
    let relay = TestRelay::start("auth-ip", WEBHOOKS, "").await;
    let r = post(&relay, "walled", &[], "{}").await;
    assert_eq!(
        detail(r).await,
        (403, "IP 127.0.0.1 not in whitelist".to_string())
    );
}

#[tokio::test]
async fn schema_and_depth_failures_answer_400_r08_r14() {
    let relay = TestRelay::start("auth-schema", WEBHOOKS, "").await;
    let r = post(&relay, "schema", &[], r#"{"x":1}"#).await;
    assert_eq!(
        detail(r).await,
        (400, "JSON schema validation failed".to_string())
    );
    assert_eq!(
        post(&relay, "schema", &[], r#"{"id":1}"#).await.status(),
        200
    );
    let deep = format!("{}1{}", "[".repeat(51), "]".repeat(51));
    let r = post(&relay, "shop", &[], &deep).await;
    assert_eq!(
        detail(r).await,
        (
            400,
            "JSON too deeply nested: 51 levels (max: 50)".to_string()
        )
    );
    let r = post(&relay, "shop", &[], "{\"a\":").await;
    assert_eq!(detail(r).await, (400, "Malformed JSON payload".to_string()));
}

#[tokio::test]
async fn credential_cleanup_masks_payload_and_headers_when_enabled_r131() {
    let relay = TestRelay::start("auth-cleanup", WEBHOOKS, "").await;
    let body = r#"{"user":"a","password":"p","nested":{"api_key":"k","n":1},"amount":10.50}"#;
    let r = post(&relay, "cleaned", &[("x-api-key", "hdr-secret")], body).await;
    assert_eq!(r.status(), 200);
    // Not enabled elsewhere: business payloads are relayed unchanged (off by default).
    assert_eq!(
        post(&relay, "shop", &[], r#"{"password":"p"}"#)
            .await
            .status(),
        200
    );

    let mut ws = relay.ws(false, &[]).await;
    let _ = ws.next_of("connected", WAIT).await;
    let cleaned = ws.next_of("webhook", WAIT).await;
    let expected: serde_json::Value = serde_json::from_str(
        r#"{"user":"a","password":"***REDACTED***","nested":{"api_key":"***REDACTED***","n":1},"amount":10.50}"#,
    )
    .expect("json");
    assert_eq!(cleaned["payload"], expected, "masked, number text kept");
    let header = cleaned["headers"]
        .as_object()
        .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case("x-api-key")))
        .map(|(_, v)| v.clone());
    assert_eq!(header, Some(serde_json::json!("***REDACTED***")));
    let plain = ws.next_of("webhook", WAIT).await;
    assert_eq!(plain["payload"], serde_json::json!({"password":"p"}));
}

#[tokio::test]
async fn forwarded_client_is_rightmost_untrusted_entry_on_the_wire_r127() {
    let relay = TestRelay::start("auth-xff", WEBHOOKS, "").await;
    // The sender forged the leftmost entry; the proxy (the trusted peer) appended the real one.
    let ok = post(
        &relay,
        "proxied",
        &[("x-forwarded-for", "198.51.100.1, 203.0.113.5")],
        "{}",
    )
    .await;
    assert_eq!(ok.status(), 200);
    let r = post(
        &relay,
        "proxied",
        &[("x-forwarded-for", "203.0.113.5, 198.51.100.1")],
        "{}",
    )
    .await;
    assert_eq!(
        detail(r).await,
        (403, "IP 198.51.100.1 not in whitelist".to_string())
    );
}

#[tokio::test]
async fn oauth1_standard_client_with_query_verifies_over_http_and_replay_fails_r128() {
    let relay = TestRelay::start("auth-oauth1", WEBHOOKS, "").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let url = format!("{}/webhook/oauth?b=2&a=%C3%A9", relay.base);
    let header = crate::auth_digest_oauth1::oauth1_header(&url, "n-http-1", now, "cs");
    let send = || {
        relay
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("authorization", &header)
            .body("{}")
            .send()
    };
    let r = send().await.expect("request");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = send().await.expect("request");
    assert_eq!(
        detail(r).await,
        (401, "OAuth 1.0 nonce already used".to_string())
    );
}
