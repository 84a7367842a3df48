//! `POST /connect/ack` honours the channel's `allowed_ips` like the stream and status endpoints
//! (R-12): `403` right after the token check and before any connection lookup, so a caller
//! outside the allow-list learns nothing about connections (R-125).

use std::time::Duration;

use webhook_connect_protocol::sse::SseDecoder;

use crate::support::{TOKEN, TestRelay, temp_dir};

const WAIT: Duration = Duration::from_secs(10);

async fn ack(
    relay: &TestRelay,
    forwarded_for: &str,
    connection: &str,
    token: &str,
) -> (u16, String) {
    let r = relay
        .http
        .post(format!(
            "{}/connect/ack?message_id=msg_0190f7c2a1b34c5d8e9f0a1b2c3d4e5f",
            relay.base
        ))
        .bearer_auth(token)
        .header("x-forwarded-for", forwarded_for)
        .header("x-connection-id", connection)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn ack_from_an_ip_outside_allowed_ips_is_refused_before_the_connection_lookup_r12() {
    // The test client reaches the relay through a "proxy" on loopback, so X-Forwarded-For
    // chooses the client address the relay sees.
    let relay = TestRelay::start_with_server(
        temp_dir("ack-ips"),
        "trusted_proxies = [\"127.0.0.1\"]",
        "allowed_ips = [\"10.0.0.0/8\"]",
        "",
    )
    .await;
    // A live SSE connection from an allowed address.
    let response = relay
        .http
        .get(format!("{}/connect/stream/orders/sse", relay.base))
        .bearer_auth(TOKEN)
        .header("x-forwarded-for", "10.1.2.3")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut response = response;
    let mut decoder = SseDecoder::new();
    let live = 'found: loop {
        let chunk = tokio::time::timeout(WAIT, response.chunk())
            .await
            .expect("no SSE event in time")
            .unwrap()
            .expect("SSE stream ended");
        let mut events = Vec::new();
        decoder.feed(&chunk, &mut events).unwrap();
        for event in events {
            if event.name() == "connected" {
                let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
                break 'found data["connection_id"].as_str().unwrap().to_owned();
            }
        }
    };

    // Outside the allow-list: 403 for a live connection and for an unknown one alike.
    for connection in [live.as_str(), "sse_0c5d7e2f9a8b4c6d1e3f5a7b9c0d2e4f"] {
        let (status, body) = ack(&relay, "203.0.113.9", connection, TOKEN).await;
        assert_eq!(status, 403, "{connection}: {body}");
        assert_eq!(body, r#"{"detail":"IP not allowed"}"#);
    }
    // The token is checked first: a wrong token is 401 whatever the address.
    let (status, body) = ack(&relay, "203.0.113.9", &live, "not-the-token").await;
    assert_eq!(status, 401, "{body}");
    // From an allowed address the request reaches the connection lookup and the lease check.
    let (status, body) = ack(&relay, "10.9.9.9", &live, TOKEN).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body, r#"{"detail":"Message not in flight"}"#);
    let (status, body) = ack(
        &relay,
        "10.9.9.9",
        "sse_0c5d7e2f9a8b4c6d1e3f5a7b9c0d2e4f",
        TOKEN,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body, r#"{"detail":"Connection not found"}"#);
}
