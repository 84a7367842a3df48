//! `/metrics` on the main listener without `metrics.bearer_token` is public, so it shows totals
//! only: no channel, webhook or authentication-method names (`docs/configuration.md`).

use crate::support::TestRelay;

const HOOKS: &str = r#"
[channels.webhooks.secret-hook-name]
header_auth = { api_key = "k1" }
"#;

async fn scrape(relay: &TestRelay, token: Option<&str>) -> (u16, String) {
    let mut r = relay.http.get(format!("{}/metrics", relay.base));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn traffic(relay: &TestRelay) {
    relay.post_ok("shop", "{}").await;
    assert_eq!(relay.post("secret-hook-name", "{}").await.status(), 401);
}

#[tokio::test]
async fn public_metrics_on_the_main_listener_name_no_channel_webhook_or_method() {
    let relay = TestRelay::start("metrics-public", HOOKS, "").await;
    traffic(&relay).await;
    let (status, text) = scrape(&relay, None).await;
    assert_eq!(status, 200);
    for name in [
        "orders",
        "shop",
        "secret-hook-name",
        "header_auth",
        "channel=",
        "webhook_id=",
        "method=",
    ] {
        assert!(!text.contains(name), "{name} exposed:\n{text}");
    }
    // Totals are still there.
    assert!(
        text.lines()
            .any(|l| l == "webhook_relay_messages_accepted_total 1"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == "webhook_relay_auth_failures_total 1"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == "webhook_relay_ingest_requests_total{status=\"401\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn with_a_bearer_token_metrics_on_the_main_listener_show_every_label() {
    let relay = TestRelay::start(
        "metrics-token-labels",
        HOOKS,
        "[metrics]\nbearer_token = \"metrics-scrape-token-0123\"",
    )
    .await;
    traffic(&relay).await;
    assert_eq!(scrape(&relay, None).await.0, 401);
    let (status, text) = scrape(&relay, Some("metrics-scrape-token-0123")).await;
    assert_eq!(status, 200);
    assert!(
        text.contains(
            "webhook_relay_auth_failures_total{webhook_id=\"secret-hook-name\",method=\"header_auth\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "webhook_relay_messages_accepted_total{channel=\"orders\",webhook_id=\"shop\"} 1"
        ),
        "{text}"
    );
}
