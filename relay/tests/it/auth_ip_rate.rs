//! IP allow-list with CIDR and trusted proxies (§4, R-09, R-127) and the rate limit (§5, R-07).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use http::HeaderMap;
use serde_json::{Value, json};
use webhook_relay::auth::{AuthBuildOptions, TrustedProxies, WebhookAuth, client_ip};

use crate::auth_support::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn xff(values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append("x-forwarded-for", v.parse().expect("value"));
    }
    h
}

#[test]
fn cidr_whitelist_admits_inside_and_refuses_outside_r09() {
    let auth = build(json!({"ip_whitelist": ["10.0.0.0/24", "203.0.113.7", "2001:db8::/32"]}));
    assert!(auth.check_ip(ip("10.0.0.7")).is_ok());
    assert!(auth.check_ip(ip("203.0.113.7")).is_ok());
    assert!(auth.check_ip(ip("2001:db8::1")).is_ok());
    assert!(auth.check_ip(ip("::ffff:10.0.0.9")).is_ok());
    let r = auth.check_ip(ip("203.0.113.9")).expect_err("refused");
    assert_eq!(
        (r.status.as_u16(), r.detail.as_str()),
        (403, "IP 203.0.113.9 not in whitelist")
    );
    // No allow-list: everything passes.
    assert!(build(json!({})).check_ip(ip("1.2.3.4")).is_ok());
}

#[test]
fn client_behind_trusted_proxy_is_rightmost_untrusted_entry_r127() {
    let Value::Object(entry) =
        json!({"ip_whitelist": ["198.51.100.0/24"], "trusted_proxies": ["10.0.0.0/8"]})
    else {
        unreachable!()
    };
    let opts = AuthBuildOptions {
        server_trusted_proxies: TrustedProxies::parse(&["192.0.2.1".to_string()]).expect("proxies"),
        ..Default::default()
    };
    let auth = WebhookAuth::from_entry(&entry, "x", &opts).expect("builds");
    // The client forged the leftmost entry; the proxy chain appended the real address.
    let h = xff(&["198.51.100.66, 203.0.113.50", "10.1.1.1"]);
    let client = auth
        .resolve_client_ip(ip("192.0.2.1"), &h)
        .expect("determined");
    assert_eq!(client, ip("203.0.113.50"));
    assert!(auth.check_ip(client).is_err());
    // An untrusted peer's forwarding headers are ignored.
    let client = auth
        .resolve_client_ip(ip("198.51.100.5"), &xff(&["203.0.113.50"]))
        .expect("peer");
    assert_eq!(client, ip("198.51.100.5"));
    assert!(auth.check_ip(client).is_ok());
    // An unparsable entry behind a trusted proxy: the client cannot be determined.
    let r = auth
        .resolve_client_ip(ip("10.0.0.1"), &xff(&["198.51.100.5, bogus"]))
        .expect_err("undeterminable");
    assert_eq!(
        (r.status.as_u16(), r.detail.as_str()),
        (403, "Could not determine client IP")
    );
    // The free function gives the same answer as the webhook's resolver.
    let trusted = auth.trusted_proxies().clone();
    assert_eq!(
        client_ip(ip("10.0.0.1"), &xff(&["198.51.100.5"]), &trusted),
        ip("198.51.100.5")
    );
}

#[tokio::test]
async fn failed_authentication_never_uses_rate_limit_budget_r07() {
    let auth = build(json!({
        "authorization": "Bearer t",
        "rate_limit": {"max_requests": 2, "window_seconds": 30}
    }));
    let t0 = Instant::now();
    let client = ip("203.0.113.7");
    // The handler calls check_rate_limit only after authenticate passed.
    for _ in 0..20 {
        let r = auth_now(&auth, &Req::post("/w").header("Authorization", "Bearer x")).await;
        assert_eq!(failure(r).0, 401);
    }
    for i in 0..2 {
        auth_now(&auth, &Req::post("/w").header("Authorization", "Bearer t"))
            .await
            .expect("authenticated");
        assert!(
            auth.check_rate_limit(client, t0 + Duration::from_secs(i))
                .is_ok()
        );
    }
    let r = auth
        .check_rate_limit(client, t0 + Duration::from_millis(1500))
        .expect_err("limited");
    assert_eq!(r.status.as_u16(), 429);
    assert_eq!(r.detail, "Rate limit exceeded. Retry after 29 seconds");
    assert_eq!(r.retry_after(), Some(29));
    assert!(
        auth.check_rate_limit(client, t0 + Duration::from_secs(30))
            .is_ok()
    );
}

#[test]
fn rate_limit_by_client_ip_keeps_separate_budgets() {
    let auth =
        build(json!({"rate_limit": {"max_requests": 1, "window_seconds": 60, "key": "client_ip"}}));
    let t0 = Instant::now();
    assert!(auth.check_rate_limit(ip("1.1.1.1"), t0).is_ok());
    assert!(auth.check_rate_limit(ip("2.2.2.2"), t0).is_ok());
    assert!(auth.check_rate_limit(ip("1.1.1.1"), t0).is_err());
}
