//! SSE, long-poll and `POST /connect/ack` against a real in-process relay (raw clients).

use std::time::Duration;

use crate::support::Store;
use crate::support::{TOKEN, TestRelay, eventually};

const WAIT: Duration = Duration::from_secs(10);

pub(crate) async fn poll(relay: &TestRelay, query: &str, connector: &str) -> reqwest::Response {
    relay
        .http
        .get(format!("{}/connect/stream/orders/poll?{query}", relay.base))
        .bearer_auth(TOKEN)
        .header("x-connector-id", connector)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn ack(
    relay: &TestRelay,
    connection: &str,
    query: &str,
    token: &str,
) -> (u16, String) {
    let r = relay
        .http
        .post(format!("{}/connect/ack?{query}", relay.base))
        .bearer_auth(token)
        .header("x-connection-id", connection)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn long_poll_returns_leased_messages_that_http_acks_settle_r17_r18() {
    long_poll_returns_leased_messages_that_http_acks_settle_r17_r18_on(Store::Embedded).await;
}

pub(crate) async fn long_poll_returns_leased_messages_that_http_acks_settle_r17_r18_on(
    store: Store,
) {
    let relay = TestRelay::start_on(store, "poll-r17", "", "").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(relay.post_ok("shop", &format!(r#"{{"i":{i}}}"#)).await);
    }
    let first = poll(&relay, "timeout=5&max_messages=2", "c1").await;
    assert_eq!(first.status(), 200);
    let body: serde_json::Value = first.json().await.unwrap();
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "R-18: max_messages honoured");
    assert!(messages.iter().all(|m| m["type"] == "webhook"));
    let session = body["connection_id"].as_str().unwrap().to_owned();
    assert!(session.starts_with("poll_"));
    // A later poll of the same X-Connector-ID; acks naming the later session also succeed.
    let second: serde_json::Value = poll(&relay, "timeout=5&max_messages=10", "c1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["messages"].as_array().unwrap().len(), 1);
    let later = second["connection_id"].as_str().unwrap().to_owned();
    for m in messages {
        let id = m["message_id"].as_str().unwrap();
        let (status, text) = ack(&relay, &later, &format!("message_id={id}"), TOKEN).await;
        assert_eq!(status, 200, "R-17: {text}");
        assert_eq!(text, format!(r#"{{"status":"ok","message_id":"{id}"}}"#));
    }
    let third_id = second["messages"][0]["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = ack(&relay, &session, &format!("message_id={third_id}"), TOKEN).await;
    assert_eq!(status, 200);
    let (status, text) = ack(&relay, &session, &format!("message_id={third_id}"), TOKEN).await;
    assert_eq!(
        (status, text.as_str()),
        (404, r#"{"detail":"Message not in flight"}"#)
    );
    let stats = relay.status().await["stats"].clone();
    assert_eq!(
        (
            stats["messages_delivered"].as_u64(),
            stats["messages_queued"].as_u64()
        ),
        (Some(3), Some(0))
    );
    let empty = poll(&relay, "timeout=1", "c1").await;
    assert_eq!(empty.status(), 204, "nothing is delivered again");
}

#[tokio::test]
async fn ack_checks_run_in_order_and_reveal_nothing_without_a_token_r125() {
    let relay = TestRelay::start("ack-order", "", "").await;
    relay.post_ok("shop", "{}").await;
    let body: serde_json::Value = poll(&relay, "timeout=5", "c2").await.json().await.unwrap();
    let session = body["connection_id"].as_str().unwrap().to_owned();
    assert_eq!(
        ack(&relay, &session, "message_id=x", "wrong").await,
        (401, r#"{"detail":"Invalid token"}"#.into())
    );
    assert_eq!(
        ack(&relay, "poll_nope", "message_id=x", "wrong").await,
        (401, r#"{"detail":"Invalid token"}"#.into())
    );
    assert_eq!(
        ack(&relay, "poll_nope", "message_id=x", TOKEN).await,
        (404, r#"{"detail":"Connection not found"}"#.into())
    );
    assert_eq!(
        ack(&relay, &session, "message_id=x&status=maybe", TOKEN).await,
        (422, r#"{"detail":"status must be 'ack' or 'nack'"}"#.into())
    );
    assert_eq!(
        ack(&relay, &session, "", TOKEN).await,
        (422, r#"{"detail":"message_id is required"}"#.into())
    );
}

#[tokio::test]
async fn poll_parameters_out_of_range_get_422() {
    let relay = TestRelay::start("poll-422", "", "").await;
    let r = poll(&relay, "timeout=61", "c").await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"detail":"timeout must be an integer between 1 and 60"}"#
    );
    let r = poll(&relay, "max_messages=0", "c").await;
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"detail":"max_messages must be an integer between 1 and 100"}"#
    );
}

#[tokio::test]
async fn v2_sse_starts_with_retry_and_carries_event_ids_and_acks_work_over_http_r42() {
    v2_sse_starts_with_retry_and_carries_event_ids_and_acks_work_over_http_r42_on(Store::Embedded)
        .await;
}

pub(crate) async fn v2_sse_starts_with_retry_and_carries_event_ids_and_acks_work_over_http_r42_on(
    store: Store,
) {
    let relay = TestRelay::start_on(store, "sse-v2", "", "").await;
    let id = relay.post_ok("shop", r#"{"a":1}"#).await;
    let mut sse = relay.sse(true).await;
    let connected = sse.next_named("connected", WAIT).await;
    let c: serde_json::Value = serde_json::from_str(&connected.data).unwrap();
    assert_eq!(c["protocol"], 2);
    let connection = c["connection_id"].as_str().unwrap().to_owned();
    let webhook = sse.next_named("webhook", WAIT).await;
    assert_eq!(webhook.id.as_deref(), Some(id.as_str()), "R-42: id line");
    let (status, text) = ack(&relay, &connection, &format!("message_id={id}"), TOKEN).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        eventually(WAIT, || async {
            relay.status().await["stats"]["messages_delivered"] == 1
        })
        .await
    );
}

#[tokio::test]
async fn v1_sse_connected_event_has_only_id_and_channel() {
    let relay = TestRelay::start("sse-v1", "", "").await;
    let mut sse = relay.sse(false).await;
    let connected = sse.next_named("connected", WAIT).await;
    let c: serde_json::Value = serde_json::from_str(&connected.data).unwrap();
    let keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, vec!["connection_id", "channel"]);
    assert!(connected.id.is_none());
}

#[tokio::test]
async fn sse_at_capacity_answers_503_before_any_200_r40() {
    let relay = TestRelay::start("sse-r40", "max_connections = 1", "").await;
    let mut first = relay.sse(false).await;
    first.next_named("connected", WAIT).await;
    let r = relay
        .http
        .get(format!("{}/connect/stream/orders/sse", relay.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers().get("retry-after").unwrap(), "5");
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"detail":"Max connections reached"}"#
    );
}

#[tokio::test]
async fn status_tells_the_truth_about_connections_and_depth_r50_r52() {
    let relay = TestRelay::start("status", "", "").await;
    for _ in 0..5 {
        relay.post_ok("other", "{}").await;
    }
    let status = relay.status().await;
    assert_eq!(status["connected"], false);
    assert_eq!(status["stats"]["messages_queued"], 5, "R-50");
    assert_eq!(
        status["stats"]["messages_in_flight"], 0,
        "R-27: nothing consumed without a connector"
    );
    let mut sse = relay.sse(false).await;
    sse.next_named("connected", WAIT).await;
    assert_eq!(relay.status().await["connected"], true);
}

#[tokio::test]
async fn unacked_leases_expire_and_are_delivered_again_r19() {
    unacked_leases_expire_and_are_delivered_again_r19_on(Store::Embedded).await;
}

pub(crate) async fn unacked_leases_expire_and_are_delivered_again_r19_on(store: Store) {
    let relay = TestRelay::start_on(store, "r19", "ack_timeout_seconds = 1\nmax_lease_seconds = 1\nrequeue_delay_initial_ms = 0\nrequeue_delay_max_ms = 0", "").await;
    let id = relay.post_ok("shop", "{}").await;
    let first: serde_json::Value = poll(&relay, "timeout=5", "slow")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["messages"][0]["message_id"], id);
    let session = first["connection_id"].as_str().unwrap().to_owned();
    let second = poll(&relay, "timeout=10", "other").await;
    assert_eq!(second.status(), 200);
    let second: serde_json::Value = second.json().await.unwrap();
    assert_eq!(
        second["messages"][0]["message_id"], id,
        "redelivered after ack_timeout"
    );
    let (status, _) = ack(&relay, &session, &format!("message_id={id}"), TOKEN).await;
    assert_eq!(status, 404, "the late ack reports not in flight");
}

#[tokio::test]
async fn shutdown_closes_websockets_with_1001_for_v1_and_4006_for_v2_and_keeps_messages_r46() {
    let mut relay = TestRelay::start("r46", "", "").await;
    let id = relay.post_ok("shop", "{}").await;
    let mut v1 = relay.ws(false, &[]).await;
    let mut v2 = relay.ws(true, &[]).await;
    v1.next_of("connected", WAIT).await;
    v2.next_of("connected", WAIT).await;
    relay.stop().await;
    let mut codes = Vec::new();
    for ws in [&mut v1, &mut v2] {
        loop {
            match ws.next(WAIT).await {
                crate::support::WsEvent::Closed(code) => {
                    codes.push(code);
                    break;
                }
                crate::support::WsEvent::Json(_) => continue,
            }
        }
    }
    assert_eq!(codes, vec![Some(1001), Some(4006)]);
    // The unacked message is still there after a restart.
    let dir = relay.dir.clone();
    let restarted = TestRelay::start_in(dir, "", "").await;
    let body: serde_json::Value = poll(&restarted, "timeout=10", "after")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["messages"][0]["message_id"], id);
}

#[tokio::test]
async fn v2_batch_acks_settle_each_entry_and_report_repeats_once_settled() {
    let relay = TestRelay::start("batch-ack", "", "").await;
    let a = relay.post_ok("shop", r#"{"a":1}"#).await;
    let b = relay.post_ok("shop", r#"{"b":1}"#).await;
    let polled: serde_json::Value = relay
        .http
        .get(format!(
            "{}/connect/stream/orders/poll?timeout=5&max_messages=10",
            relay.base
        ))
        .bearer_auth(TOKEN)
        .header("x-webhook-connect-protocol", "2")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(polled["messages"].as_array().unwrap().len(), 2);
    let session = polled["connection_id"].as_str().unwrap();
    let body = format!(
        r#"{{"acks":[{{"message_id":"{a}"}},{{"message_id":"{b}","status":"nack","retry":false,"reason":"bad"}},{{"message_id":"{a}"}},{{"message_id":"msg_unknown"}}]}}"#
    );
    let response = relay
        .http
        .post(format!("{}/connect/ack", relay.base))
        .bearer_auth(TOKEN)
        .header("x-webhook-connect-protocol", "2")
        .header("x-connection-id", session)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let results: serde_json::Value = response.json().await.unwrap();
    let got: Vec<(String, String)> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["status"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("ok", "acked"),
        ("ok", "dead_lettered"),
        ("ok", "acked"),
        ("not_in_flight", "-"),
    ]
    .iter()
    .map(|(s, o)| (s.to_string(), o.to_string()))
    .collect();
    assert_eq!(got, expected);
    let too_many = format!(
        r#"{{"acks":[{}]}}"#,
        vec![format!(r#"{{"message_id":"{a}"}}"#); 1001].join(",")
    );
    let response = relay
        .http
        .post(format!("{}/connect/ack", relay.base))
        .bearer_auth(TOKEN)
        .header("x-webhook-connect-protocol", "2")
        .header("x-connection-id", session)
        .body(too_many)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn query_string_tokens_are_refused_unless_enabled_and_a_header_wins_r123() {
    let sse = |relay: &TestRelay, bearer: Option<&str>| {
        let mut r = relay.http.get(format!(
            "{}/connect/stream/orders/sse?token={TOKEN}",
            relay.base
        ));
        if let Some(b) = bearer {
            r = r.bearer_auth(b);
        }
        r.send()
    };
    let off = TestRelay::start("r123-off", "", "").await;
    assert_eq!(
        sse(&off, None).await.unwrap().status(),
        401,
        "off by default"
    );
    let on = TestRelay::start("r123-on", "", "[streaming]\nallow_query_token = true").await;
    let accepted = sse(&on, None).await.unwrap();
    assert_eq!(accepted.status(), 200, "accepted when enabled");
    drop(accepted);
    assert_eq!(
        sse(&on, Some("wrong-token-0123456789"))
            .await
            .unwrap()
            .status(),
        401,
        "a header always wins over the query"
    );
    // `/connect/ack` never reads a query token.
    let r = on
        .http
        .post(format!(
            "{}/connect/ack?message_id=msg_x&token={TOKEN}",
            on.base
        ))
        .header("x-connection-id", "sse_x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
