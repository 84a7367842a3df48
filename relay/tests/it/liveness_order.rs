//! Liveness (eviction, timer-driven heartbeats) and ordered channels, on a real relay. The `_on`
//! cases also run on Redis and RabbitMQ.

use std::time::Duration;

use crate::support::{Store, TestRelay, WsEvent};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_silent_websocket_is_evicted_with_a_real_close_frame_and_its_lease_requeued_r33() {
    a_silent_websocket_is_evicted_with_a_real_close_frame_and_its_lease_requeued_r33_on(
        Store::Embedded,
    )
    .await;
}

pub(crate) async fn a_silent_websocket_is_evicted_with_a_real_close_frame_and_its_lease_requeued_r33_on(
    store: Store,
) {
    let relay = TestRelay::start_on(
        store,
        "r33",
        "heartbeat_interval_seconds = 5\nrequeue_delay_initial_ms = 0\nrequeue_delay_max_ms = 0",
        "[streaming]\nstale_multiplier = 2",
    )
    .await;
    let id = relay.post_ok("shop", "{}").await;
    let mut silent = relay.ws(true, &[]).await;
    silent.next_of("connected", WAIT).await;
    silent.next_of("webhook", WAIT).await;
    let started = tokio::time::Instant::now();
    let code = loop {
        match silent.next(Duration::from_secs(20)).await {
            WsEvent::Closed(code) => break code,
            WsEvent::Json(_) => continue,
        }
    };
    assert_eq!(code, Some(4004));
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "evicted only after heartbeat_timeout"
    );
    let mut next = relay.ws(true, &[]).await;
    next.next_of("connected", WAIT).await;
    let again = next.next_of("webhook", WAIT).await;
    assert_eq!(
        (
            again["message_id"].as_str(),
            again["delivery_count"].as_u64()
        ),
        (Some(id.as_str()), Some(2))
    );
}

#[tokio::test]
async fn heartbeats_keep_their_schedule_under_steady_traffic_r37() {
    let relay = TestRelay::start("r37", "heartbeat_interval_seconds = 5", "").await;
    let mut sse = relay.sse(false).await;
    sse.next_named("connected", WAIT).await;
    let poster = {
        let http = relay.http.clone();
        let url = format!("{}/webhook/shop", relay.base);
        tokio::spawn(async move {
            for i in 0..70 {
                let _ = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(format!("{{\"i\":{i}}}"))
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let started = tokio::time::Instant::now();
    let mut webhooks = 0;
    loop {
        let event = sse.next(WAIT).await.expect("stream ended");
        match event.name() {
            "heartbeat" => break,
            "webhook" => webhooks += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_millis(6500),
        "heartbeat came after {:?}",
        started.elapsed()
    );
    assert!(
        webhooks > 10,
        "traffic was flowing ({webhooks} webhooks before the heartbeat)"
    );
    poster.abort();
}

#[tokio::test]
async fn ordered_channels_keep_order_and_never_lease_two_at_once_r29() {
    ordered_channels_keep_order_and_never_lease_two_at_once_r29_on(Store::Embedded).await;
}

pub(crate) async fn ordered_channels_keep_order_and_never_lease_two_at_once_r29_on(store: Store) {
    let relay = TestRelay::start_on(
        store,
        "r29",
        "ordered = true\nrequeue_delay_initial_ms = 50\nrequeue_delay_max_ms = 50",
        "",
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            relay
                .post_ok(
                    if i == 1 { "other" } else { "shop" },
                    &format!(r#"{{"i":{i}}}"#),
                )
                .await,
        );
    }
    let mut ws = relay.ws(true, &[]).await;
    ws.next_of("connected", WAIT).await;
    let mut seen = Vec::new();
    let mut nacked_first = false;
    // The next delivery may be written before the ack_result of the settle that freed it.
    let mut early: Option<serde_json::Value> = None;
    while seen.len() < 3 {
        let w = match early.take() {
            Some(w) => w,
            None => ws.next_of("webhook", WAIT).await,
        };
        let id = w["message_id"].as_str().unwrap().to_owned();
        // Nothing else may be leased while this one is out.
        match tokio::time::timeout(Duration::from_millis(300), ws.next(WAIT)).await {
            Err(_) => {}
            Ok(WsEvent::Json(v)) if v["type"] == "heartbeat" => {}
            Ok(other) => panic!("a second frame while one message is in flight: {other:?}"),
        }
        if !nacked_first {
            nacked_first = true;
            ws.send(&format!(
                r#"{{"type":"nack","message_id":"{id}","retry":true}}"#
            ))
            .await;
        } else {
            ws.send(&format!(r#"{{"type":"ack","message_id":"{id}"}}"#))
                .await;
            seen.push(id);
        }
        loop {
            match ws.next(WAIT).await {
                WsEvent::Json(v) if v["type"] == "ack_result" => break,
                WsEvent::Json(v) if v["type"] == "heartbeat" => {}
                WsEvent::Json(v) if v["type"] == "webhook" && early.is_none() => early = Some(v),
                other => panic!("expected ack_result, got {other:?}"),
            }
        }
    }
    assert_eq!(
        seen, ids,
        "deliveries follow ingest order, the nacked head first"
    );
}
