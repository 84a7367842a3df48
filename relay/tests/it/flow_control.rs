//! Flow control on a real relay with raw clients: the per-connection in-flight limit (R-25), a
//! stalled connector that does not stall its channel (R-26), and what keeps a WebSocket alive
//! (R-38). The `_on` cases also run on Redis and RabbitMQ (`delivery_redis.rs`,
//! `delivery_rabbitmq.rs`).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Store, TestRelay, Ws, WsEvent};

const WAIT: Duration = Duration::from_secs(10);
/// How long "nothing more arrives" is watched for.
const QUIET: Duration = Duration::from_millis(700);

/// The next `webhook` frame within `within`, answering heartbeats; `None` when none came.
async fn webhook_within(ws: &mut Ws, within: Duration) -> Option<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, ws.next(WAIT)).await {
            Err(_) => return None,
            Ok(WsEvent::Json(v)) if v["type"] == "webhook" => return Some(v),
            Ok(WsEvent::Json(v)) if v["type"] == "heartbeat" => {
                ws.send(r#"{"type":"heartbeat"}"#).await;
            }
            Ok(other) => panic!("expected a webhook, got {other:?}"),
        }
    }
}

async fn ack(ws: &mut Ws, frame: &serde_json::Value) {
    ws.send(&format!(
        r#"{{"type":"ack","message_id":{}}}"#,
        frame["message_id"]
    ))
    .await;
    ws.next_of("ack_result", WAIT).await;
}

#[tokio::test]
async fn a_connection_never_holds_more_than_its_in_flight_limit_r25() {
    a_connection_never_holds_more_than_its_in_flight_limit_r25_on(Store::Embedded).await;
}

pub(crate) async fn a_connection_never_holds_more_than_its_in_flight_limit_r25_on(store: Store) {
    let relay = TestRelay::start_on(store, "r25-limit", "max_in_flight = 3", "").await;
    for i in 0..6 {
        relay.post_ok("shop", &format!(r#"{{"i":{i}}}"#)).await;
    }
    let mut ws = relay.ws(true, &[]).await;
    let connected = ws.next_of("connected", WAIT).await;
    assert_eq!(connected["max_in_flight"], 3, "{connected}");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            webhook_within(&mut ws, WAIT)
                .await
                .expect("one of the first three"),
        );
    }
    assert!(
        webhook_within(&mut ws, QUIET).await.is_none(),
        "a fourth message while three are in flight"
    );
    ack(&mut ws, &held[0]).await;
    assert!(
        webhook_within(&mut ws, WAIT).await.is_some(),
        "an ack frees exactly one slot"
    );
    assert!(
        webhook_within(&mut ws, QUIET).await.is_none(),
        "one ack let two messages out"
    );
}

#[tokio::test]
async fn a_stalled_connector_does_not_stall_the_channel_r26() {
    a_stalled_connector_does_not_stall_the_channel_r26_on(Store::Embedded).await;
}

pub(crate) async fn a_stalled_connector_does_not_stall_the_channel_r26_on(store: Store) {
    let relay = TestRelay::start_on(
        store,
        "r26",
        "max_in_flight = 2\nheartbeat_interval_seconds = 5\nrequeue_delay_initial_ms = 0\nrequeue_delay_max_ms = 0",
        "",
    )
    .await;
    // A sits at its limit and never acks.
    let mut stalled = relay.ws(true, &[]).await;
    stalled.next_of("connected", WAIT).await;
    for i in 0..2 {
        relay.post_ok("shop", &format!(r#"{{"held":{i}}}"#)).await;
        webhook_within(&mut stalled, WAIT)
            .await
            .expect("A gets its first two");
    }
    let mut live = relay.ws(true, &[]).await;
    live.next_of("connected", WAIT).await;
    for i in 0..5 {
        let id = relay.post_ok("shop", &format!(r#"{{"later":{i}}}"#)).await;
        let frame = webhook_within(&mut live, Duration::from_secs(2))
            .await
            .expect("B receives each later message soon after ingest");
        assert_eq!(frame["message_id"].as_str(), Some(id.as_str()));
        ack(&mut live, &frame).await;
    }
    // A connection that goes away gives its messages back to the live one; so does an SSE
    // client that vanishes (noticed at the latest when a heartbeat cannot be written).
    drop(stalled);
    let mut back = Vec::new();
    while back.len() < 2 {
        let frame = webhook_within(&mut live, WAIT)
            .await
            .expect("A's two messages come back to B");
        assert_eq!(frame["delivery_count"], 2, "{frame}");
        back.push(frame);
    }
    for frame in &back {
        ack(&mut live, frame).await;
    }
    let mut sse = relay.sse(true).await;
    sse.next_named("connected", WAIT).await;
    for i in 0..2 {
        relay.post_ok("shop", &format!(r#"{{"sse":{i}}}"#)).await;
    }
    // Whoever got them (B or the SSE client), two more go out; then the SSE client vanishes.
    let mut to_b = Vec::new();
    while let Some(frame) = webhook_within(&mut live, QUIET).await {
        to_b.push(frame);
    }
    drop(sse);
    let owed = 2 - to_b.len();
    assert!(
        owed >= 1,
        "fewest-in-flight gave the SSE client one of the two"
    );
    for frame in &to_b {
        ack(&mut live, frame).await;
    }
    let mut returned = Vec::new();
    while returned.len() < owed {
        returned.push(
            webhook_within(&mut live, WAIT)
                .await
                .expect("the vanished SSE client's messages come back"),
        );
    }
    for frame in &returned {
        ack(&mut live, frame).await;
    }
    let status = relay.status().await;
    assert_eq!(status["stats"]["messages_queued"], 0, "{status}");
    assert_eq!(status["stats"]["messages_in_flight"], 0, "{status}");
}

#[tokio::test]
async fn pings_and_acks_alone_keep_a_websocket_alive_even_at_its_limit_r38() {
    // Silence is evicted after 2 × 5 s (the shortest interval allowed).
    let relay = TestRelay::start(
        "r38",
        "heartbeat_interval_seconds = 5\nmax_in_flight = 1",
        "[streaming]\nstale_multiplier = 2",
    )
    .await;
    relay.post_ok("shop", "{}").await;
    let mut ws = relay.ws(true, &[]).await;
    ws.next_of("connected", WAIT).await;
    let held = webhook_within(&mut ws, WAIT)
        .await
        .expect("the one message");
    // At the in-flight limit, only WebSocket pings for 12 s: each is answered, nothing closes.
    for round in 0..12u8 {
        ws.socket
            .send(Message::Ping(vec![round].into()))
            .await
            .unwrap();
        loop {
            match tokio::time::timeout(WAIT, ws.socket.next()).await {
                Ok(Some(Ok(Message::Pong(p)))) => {
                    assert_eq!(p.as_ref(), [round]);
                    break;
                }
                Ok(Some(Ok(Message::Text(_)))) => continue,
                other => panic!("ping {round} not answered: {other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Then only acks for 12 s: each is the connection's sole sign of life for 4 s.
    let mut frame = held;
    for i in 0..3 {
        ack(&mut ws, &frame).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        relay.post_ok("shop", &format!(r#"{{"i":{i}}}"#)).await;
        // `next_of` skips the relay's heartbeats without answering them.
        frame = ws.next_of("webhook", WAIT).await;
    }
}
