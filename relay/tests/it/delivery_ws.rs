//! WebSocket delivery against a real in-process relay on the embedded store (raw client).

use std::time::Duration;

use crate::support::Store;
use crate::support::{TestRelay, WsEvent, eventually};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn v1_websocket_gets_connected_then_flat_webhook_frames_and_ack_removes() {
    v1_websocket_gets_connected_then_flat_webhook_frames_and_ack_removes_on(Store::Embedded).await;
}

pub(crate) async fn v1_websocket_gets_connected_then_flat_webhook_frames_and_ack_removes_on(
    store: Store,
) {
    let relay = TestRelay::start_on(store, "ws-v1", "", "").await;
    let id = relay
        .post_ok("shop", r#"{"id": "t1", "amount": 10.50}"#)
        .await;
    let mut ws = relay.ws(false, &[]).await;
    assert_eq!(ws.granted, None, "v1 gets no protocol header");
    let connected = ws.next_of("connected", WAIT).await;
    let keys: Vec<&str> = connected
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, vec!["type", "connection_id", "channel", "timestamp"]);
    assert!(
        connected["connection_id"]
            .as_str()
            .unwrap()
            .starts_with("wsc_")
    );
    let webhook = ws.next_of("webhook", WAIT).await;
    let keys: Vec<&str> = webhook
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        vec![
            "type",
            "message_id",
            "sequence",
            "webhook_id",
            "timestamp",
            "headers",
            "payload"
        ]
    );
    assert_eq!(webhook["message_id"], id);
    assert_eq!(webhook["webhook_id"], "shop");
    assert_eq!(webhook["sequence"], 1);
    assert_eq!(
        webhook["payload"]["amount"].to_string(),
        "10.50",
        "number text kept"
    );
    ws.send(&format!(r#"{{"type":"ack","message_id":"{id}"}}"#))
        .await;
    assert!(
        eventually(WAIT, || async {
            relay.status().await["stats"]["messages_delivered"] == 1
        })
        .await,
        "ack was not recorded"
    );
    let stats = relay.status().await["stats"].clone();
    assert_eq!(
        (
            stats["messages_queued"].as_u64(),
            stats["messages_in_flight"].as_u64()
        ),
        (Some(0), Some(0))
    );
}

#[tokio::test]
async fn v2_websocket_gets_raw_body_and_ack_results_r06_r21() {
    v2_websocket_gets_raw_body_and_ack_results_r06_r21_on(Store::Embedded).await;
}

pub(crate) async fn v2_websocket_gets_raw_body_and_ack_results_r06_r21_on(store: Store) {
    let relay = TestRelay::start_on(store, "ws-v2", "", "").await;
    let body = "{ \"id\" : \"evt_1\",\n \"n\": 1e3 }";
    let id = relay.post_ok("shop", body).await;
    let mut ws = relay.ws(true, &[]).await;
    assert_eq!(ws.granted.as_deref(), Some("2"));
    let connected = ws.next_of("connected", WAIT).await;
    assert_eq!(connected["protocol"], 2);
    assert_eq!(connected["ack_timeout_ms"], 30_000);
    let webhook = ws.next_of("webhook", WAIT).await;
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(webhook["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(raw, body.as_bytes(), "R-06: body is byte-exact");
    assert_eq!(webhook["delivery_count"], 1);
    assert_eq!(webhook["channel"], "orders");
    ws.send(&format!(
        r#"{{"type":"nack","message_id":"{id}","retry":false,"reason":"bad","ref":"r1"}}"#
    ))
    .await;
    let result = ws.next_of("ack_result", WAIT).await;
    assert_eq!(result["ref"], "r1");
    assert_eq!(result["results"][0]["status"], "ok");
    assert_eq!(result["results"][0]["outcome"], "dead_lettered");
    ws.send(&format!(
        r#"{{"type":"ack","message_ids":["{id}","{id}"],"ref":"r2"}}"#
    ))
    .await;
    let late = ws.next_of("ack_result", WAIT).await;
    assert_eq!(
        late["results"].as_array().unwrap().len(),
        2,
        "each occurrence reported"
    );
    assert_eq!(late["results"][0]["status"], "not_in_flight");
    let stats = relay.status().await["stats"].clone();
    assert_eq!(
        stats["dead_letters_queued"], 1,
        "R-21: retry:false dead-letters at once"
    );
}

#[tokio::test]
async fn malformed_frames_do_not_kill_the_reader_and_too_many_close_r36() {
    let relay = TestRelay::start("ws-malformed", "", "").await;
    let id = relay.post_ok("shop", "{}").await;
    let mut ws = relay.ws(true, &[]).await;
    ws.next_of("connected", WAIT).await;
    ws.next_of("webhook", WAIT).await;
    ws.send("not json").await;
    assert_eq!(ws.next_of("error", WAIT).await["code"], "malformed_frame");
    ws.send_binary(b"\x00\x01").await;
    assert_eq!(ws.next_of("error", WAIT).await["code"], "malformed_frame");
    ws.send(r#"{"type":5}"#).await;
    assert_eq!(ws.next_of("error", WAIT).await["code"], "malformed_frame");
    ws.send(r#"{"type":"from-the-future","x":1}"#).await; // R-43: ignored silently
    ws.send(&format!(
        r#"{{"type":"ack","message_id":"{id}","ref":"ok"}}"#
    ))
    .await;
    let result = ws.next_of("ack_result", WAIT).await;
    assert_eq!(
        result["ref"], "ok",
        "the unknown type produced no error frame"
    );
    assert_eq!(result["results"][0]["outcome"], "acked");
    for _ in 0..18 {
        ws.send("garbage").await;
    }
    let closed = loop {
        match ws.next(WAIT).await {
            WsEvent::Closed(code) => break code,
            WsEvent::Json(_) => continue,
        }
    };
    assert_eq!(
        closed,
        Some(4007),
        "more than 20 malformed frames in 60 s close with 4007"
    );
}

#[tokio::test]
async fn bad_token_and_unknown_channel_get_the_same_http_401_r41() {
    let relay = TestRelay::start("ws-401", "", "").await;
    let attempt = |channel: &'static str, token: &'static str| {
        let addr = relay.addr;
        async move {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut request = format!("ws://{addr}/connect/stream/{channel}")
                .into_client_request()
                .unwrap();
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            match tokio_tungstenite::connect_async(request).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => (
                    response.status().as_u16(),
                    response
                        .into_body()
                        .map(|b| String::from_utf8_lossy(&b).into_owned()),
                ),
                other => panic!("expected an HTTP refusal, got {:?}", other.map(|_| ())),
            }
        }
    };
    let wrong = attempt("orders", "nope").await;
    let unknown = attempt("no-such-channel", crate::support::TOKEN).await;
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong, unknown);
    assert_eq!(
        wrong.1.as_deref(),
        Some(r#"{"detail":"Invalid channel token"}"#)
    );
}

#[tokio::test]
async fn max_connections_closes_the_extra_socket_with_4003_and_a_closed_socket_frees_its_slot_r35()
{
    let relay = TestRelay::start("ws-max", "max_connections = 1", "").await;
    let mut first = relay.ws(false, &[]).await;
    first.next_of("connected", WAIT).await;
    let mut second = relay.ws(false, &[]).await;
    assert!(matches!(
        second.next(WAIT).await,
        WsEvent::Closed(Some(4003))
    ));
    first.socket.close(None).await.unwrap();
    assert!(
        eventually(Duration::from_secs(1), || async {
            relay.status().await["connected"] == false
        })
        .await,
        "R-35: the slot is freed within 1 s"
    );
    let mut third = relay.ws(false, &[]).await;
    third.next_of("connected", WAIT).await;
}

#[tokio::test]
async fn a_killed_connection_requeues_its_leases_with_a_higher_delivery_count_r22() {
    a_killed_connection_requeues_its_leases_with_a_higher_delivery_count_r22_on(Store::Embedded)
        .await;
}

pub(crate) async fn a_killed_connection_requeues_its_leases_with_a_higher_delivery_count_r22_on(
    store: Store,
) {
    let relay = TestRelay::start_on(
        store,
        "ws-r22",
        "requeue_delay_initial_ms = 0\nrequeue_delay_max_ms = 0",
        "",
    )
    .await;
    let id = relay.post_ok("shop", r#"{"k":1}"#).await;
    let mut first = relay.ws(true, &[]).await;
    first.next_of("connected", WAIT).await;
    assert_eq!(first.next_of("webhook", WAIT).await["delivery_count"], 1);
    drop(first);
    let mut second = relay.ws(true, &[]).await;
    second.next_of("connected", WAIT).await;
    let again = second.next_of("webhook", WAIT).await;
    assert_eq!(again["message_id"], id);
    assert_eq!(again["delivery_count"], 2);
}

#[tokio::test]
async fn nack_with_retry_redelivers_until_max_attempts_then_dead_letters_r20() {
    nack_with_retry_redelivers_until_max_attempts_then_dead_letters_r20_on(Store::Embedded).await;
}

pub(crate) async fn nack_with_retry_redelivers_until_max_attempts_then_dead_letters_r20_on(
    store: Store,
) {
    let relay = TestRelay::start_on(
        store,
        "ws-r20",
        "max_delivery_attempts = 3\nrequeue_delay_initial_ms = 100\nrequeue_delay_max_ms = 400",
        "",
    )
    .await;
    let id = relay.post_ok("shop", "{}").await;
    let mut ws = relay.ws(true, &[]).await;
    ws.next_of("connected", WAIT).await;
    let mut last = None::<tokio::time::Instant>;
    for attempt in 1..=3u64 {
        let w = ws.next_of("webhook", WAIT).await;
        assert_eq!(w["message_id"], id);
        assert_eq!(w["delivery_count"], attempt);
        let now = tokio::time::Instant::now();
        if let Some(prev) = last {
            let base = 100u64 << (attempt - 2);
            assert!(
                now - prev >= Duration::from_millis(base * 8 / 10),
                "attempt {attempt} came too early"
            );
        }
        last = Some(now);
        ws.send(&format!(
            r#"{{"type":"nack","message_id":"{id}","retry":true}}"#
        ))
        .await;
        let r = ws.next_of("ack_result", WAIT).await;
        let expected = if attempt == 3 {
            "dead_lettered"
        } else {
            "requeued"
        };
        assert_eq!(r["results"][0]["outcome"], expected);
    }
    assert_eq!(relay.status().await["stats"]["dead_letters_queued"], 1);
}

#[tokio::test]
async fn load_is_balanced_between_two_connections_r25() {
    let relay = TestRelay::start("ws-r25", "max_in_flight = 5", "").await;
    let mut a = relay.ws(true, &[]).await;
    let mut b = relay.ws(true, &[]).await;
    a.next_of("connected", WAIT).await;
    b.next_of("connected", WAIT).await;
    for i in 0..200 {
        relay.post_ok("shop", &format!(r#"{{"i":{i}}}"#)).await;
    }
    let mut counts = [0usize; 2];
    let mut total = 0;
    while total < 200 {
        for (i, ws) in [&mut a, &mut b].into_iter().enumerate() {
            if let Ok(WsEvent::Json(v)) =
                tokio::time::timeout(Duration::from_millis(20), ws.next(WAIT)).await
                && v["type"] == "webhook"
            {
                counts[i] += 1;
                total += 1;
                ws.send(&format!(
                    r#"{{"type":"ack","message_id":{}}}"#,
                    v["message_id"]
                ))
                .await;
            }
        }
    }
    assert!(
        (60..=140).contains(&counts[0]),
        "split {counts:?} is not between 30 % and 70 %"
    );
}

#[tokio::test]
async fn client_frames_larger_than_the_read_buffer_arrive_whole() {
    let relay = TestRelay::start("ws-big-frame", "", "").await;
    let id = relay.post_ok("shop", "{}").await;
    let mut ws = relay.ws(true, &[]).await;
    ws.next_of("connected", WAIT).await;
    ws.next_of("webhook", WAIT).await;
    // ~40 KiB: 999 unknown ids and the real one, far above the 4 KiB read buffer.
    let mut ids: Vec<String> = (0..999).map(|i| format!("\"msg_{i:036}\"")).collect();
    ids.push(format!("\"{id}\""));
    ws.send(&format!(
        r#"{{"type":"ack","message_ids":[{}],"ref":"big"}}"#,
        ids.join(",")
    ))
    .await;
    let result = ws.next_of("ack_result", WAIT).await;
    assert_eq!(result["ref"], "big");
    assert_eq!(result["results"].as_array().unwrap().len(), 1000);
    assert_eq!(result["results"][999]["outcome"], "acked");
}
