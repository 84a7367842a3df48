//! `/metrics` after real traffic: the counters and gauges moved as the traffic says.

use std::time::Duration;

use crate::support::{TestRelay, eventually};

const WAIT: Duration = Duration::from_secs(10);

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_ingest_deliveries_acks_nacks_and_dead_letters() {
    // With a bearer token the main listener shows every label (without one it shows totals
    // only, see `metrics_exposure`).
    let relay = TestRelay::start(
        "metrics",
        "",
        "[metrics]\nbearer_token = \"metrics-scrape-token-0123\"",
    )
    .await;
    let a = relay.post_ok("shop", "{}").await;
    let b = relay.post_ok("shop", "{}").await;
    assert_eq!(relay.post("no-such-hook", "{}").await.status(), 404);
    let mut ws = relay.ws(true, &[]).await;
    ws.next_of("connected", WAIT).await;
    ws.next_of("webhook", WAIT).await;
    ws.next_of("webhook", WAIT).await;
    ws.send(&format!(r#"{{"type":"ack","message_id":"{a}"}}"#))
        .await;
    ws.next_of("ack_result", WAIT).await;
    ws.send(&format!(
        r#"{{"type":"nack","message_id":"{b}","retry":false}}"#
    ))
    .await;
    ws.next_of("ack_result", WAIT).await;
    ws.send("garbage").await;
    ws.next_of("error", WAIT).await;
    let scrape = || async {
        relay
            .http
            .get(format!("{}/metrics", relay.base))
            .bearer_auth("metrics-scrape-token-0123")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert!(
        eventually(WAIT, || async {
            value(
                &scrape().await,
                "webhook_relay_messages_acked_total{channel=\"orders\"}",
            ) == Some(1.0)
        })
        .await
    );
    let text = scrape().await;
    let check = |series: &str, expected: f64| {
        assert_eq!(value(&text, series), Some(expected), "{series}\n{text}");
    };
    check(
        "webhook_relay_ingest_requests_total{webhook_id=\"shop\",status=\"200\"}",
        2.0,
    );
    check(
        "webhook_relay_ingest_requests_total{webhook_id=\"_unknown\",status=\"404\"}",
        1.0,
    );
    check(
        "webhook_relay_messages_accepted_total{channel=\"orders\",webhook_id=\"shop\"}",
        2.0,
    );
    check(
        "webhook_relay_messages_delivered_total{channel=\"orders\"}",
        2.0,
    );
    check(
        "webhook_relay_messages_nacked_total{channel=\"orders\",retry=\"false\"}",
        1.0,
    );
    check(
        "webhook_relay_dead_lettered_total{channel=\"orders\",reason=\"rejected\"}",
        1.0,
    );
    check(
        "webhook_relay_protocol_errors_total{channel=\"orders\",kind=\"malformed_frame\"}",
        1.0,
    );
    check(
        "webhook_relay_connections{channel=\"orders\",protocol=\"websocket\"}",
        1.0,
    );
    check("webhook_relay_dead_letters{channel=\"orders\"}", 1.0);
    check(
        "webhook_relay_queue_depth{channel=\"orders\",webhook_id=\"shop\"}",
        0.0,
    );
    check(
        "webhook_relay_ingest_duration_seconds_count{webhook_id=\"shop\"}",
        2.0,
    );
    // Only the acked message counts towards end-to-end latency; its age is positive and below
    // the test's own duration.
    check(
        "webhook_relay_end_to_end_seconds_count{channel=\"orders\"}",
        1.0,
    );
    let e2e_sum = value(
        &text,
        "webhook_relay_end_to_end_seconds_sum{channel=\"orders\"}",
    )
    .expect("end-to-end sum");
    assert!(e2e_sum > 0.0 && e2e_sum < 60.0, "{e2e_sum}");
}

#[tokio::test]
async fn a_metrics_bearer_token_is_required_when_configured() {
    let relay = TestRelay::start(
        "metrics-token",
        "",
        "[metrics]\nbearer_token = \"metrics-scrape-token-0123\"",
    )
    .await;
    let url = format!("{}/metrics", relay.base);
    let none = relay.http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(
        none.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    let wrong = relay
        .http
        .get(&url)
        .bearer_auth("metrics-scrape-token-0124")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = relay
        .http
        .get(&url)
        .bearer_auth("metrics-scrape-token-0123")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert!(
        right
            .text()
            .await
            .unwrap()
            .contains("# TYPE webhook_relay_connections gauge")
    );
}

#[tokio::test]
async fn with_metrics_listen_metrics_are_served_only_there() {
    let port = crate::support::free_port();
    let relay = TestRelay::start(
        "metrics-listen",
        "",
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\""),
    )
    .await;
    relay.post_ok("shop", "{}").await;
    let main = relay
        .http
        .get(format!("{}/metrics", relay.base))
        .send()
        .await
        .unwrap();
    assert_eq!(main.status(), 404);
    let side = format!("http://127.0.0.1:{port}/metrics");
    let text = crate::support::get_when_up(&relay.http, &side, None).await;
    assert_eq!(
        value(
            &text,
            "webhook_relay_messages_accepted_total{channel=\"orders\",webhook_id=\"shop\"}"
        ),
        Some(1.0),
        "{text}"
    );
    let other = relay
        .http
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        404,
        "the metrics listener serves only /metrics"
    );
}
