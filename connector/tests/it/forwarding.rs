//! HTTP forwarding against a real local target (`docs/reference/module-contract.md` §7.1; R-75, R-76, R-77, R-82, R-88).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use webhook_connect_protocol::{ProtocolVersion, WebhookMessage};
use webhook_connector::ack::AckSink;
use webhook_connector::ack::Decision;
use webhook_connector::completion::CompletionRecord;
use webhook_connector::config::{ChannelConfig, CompletionRecordConfig, TargetConfig};
use webhook_connector::dispatch::Dispatcher;
use webhook_connector::forward;
use webhook_connector::health::ChannelState;

use crate::support::{Target, webhook_frame};

fn msg(json: &str) -> WebhookMessage {
    serde_json::from_str(json).unwrap()
}

fn v2_message(id: &str, body: &[u8]) -> WebhookMessage {
    let frame = webhook_frame(id, 1, body, "application/json");
    let mut v: serde_json::Value = serde_json::from_str(&frame).unwrap();
    v.as_object_mut().unwrap().remove("type");
    serde_json::from_value(v).unwrap()
}

fn fast_target(url: String) -> TargetConfig {
    let mut t = TargetConfig::new(url);
    t.retry.delay = Duration::from_millis(10);
    t.retry.max_delay = Duration::from_millis(20);
    t.timeout = Duration::from_secs(5);
    t
}

async fn deliver(target: &TargetConfig, m: &WebhookMessage) -> forward::Delivery {
    let client = forward::target_client(None).unwrap();
    let permits = Semaphore::new(1);
    forward::deliver(
        &client,
        m,
        target,
        "orders",
        &permits,
        &CancellationToken::new(),
        &CancellationToken::new(),
    )
    .await
}

#[tokio::test]
async fn raw_body_and_signature_header_arrive_byte_identical_r76() {
    let target = Target::start().await;
    // Whitespace and key order that a re-serialisation would change.
    let body = br#"{ "id" : "evt_1",  "amount": 1.10, "note": "gr\u00fc\u00df" }"#;
    let mut m = v2_message("msg_0190f7c2a1b34c5d8e9f0a1b2c3d4e5f", body);
    m.headers
        .insert("stripe-signature", "t=1773480421,v1=5257a869e7");
    let d = deliver(&fast_target(target.url("/hook")), &m).await;
    assert_eq!(d.decision, Decision::Ack);
    let seen = target.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(&seen[0].body[..], &body[..]);
    assert_eq!(seen[0].method, axum::http::Method::POST);
    let h = &seen[0].headers;
    assert_eq!(h["stripe-signature"], "t=1773480421,v1=5257a869e7");
    assert_eq!(
        h["x-original-stripe-signature"],
        "t=1773480421,v1=5257a869e7"
    );
    assert_eq!(h.get_all("content-type").iter().count(), 1);
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(
        h["x-webhook-message-id"],
        "msg_0190f7c2a1b34c5d8e9f0a1b2c3d4e5f"
    );
    assert_eq!(h["x-webhook-id"], "shop-orders");
    assert_eq!(h["x-webhook-attempt"], "1");
    assert_eq!(h["x-webhook-channel"], "orders");
    assert_eq!(h["x-webhook-delivery-count"], "1");
}

#[tokio::test]
async fn v1_payload_forms_are_forwarded_faithfully_r76() {
    let target = Target::start().await;
    let t = fast_target(target.url("/hook"));
    let cases = [
        (r#"null"#, &b"null"[..], "application/json"),
        (r#"true"#, &b"true"[..], "application/json"),
        (r#"[1,2]"#, &b"[1,2]"[..], "application/json"),
        (r#"{"a":1.10}"#, &br#"{"a":1.10}"#[..], "application/json"),
    ];
    for (payload, _, _) in &cases {
        let m = msg(&format!(
            r#"{{"type":"webhook","message_id":"msg_1","sequence":1,"webhook_id":"w","headers":{{"content-type":"application/json"}},"payload":{payload}}}"#
        ));
        assert_eq!(deliver(&t, &m).await.decision, Decision::Ack);
    }
    let form = msg(
        r#"{"type":"webhook","message_id":"msg_2","sequence":2,"webhook_id":"w","headers":{"content-type":"application/x-www-form-urlencoded"},"payload":"a=1&b=%C3%BC"}"#,
    );
    assert_eq!(deliver(&t, &form).await.decision, Decision::Ack);
    let seen = target.seen();
    for (i, (_, want, ct)) in cases.iter().enumerate() {
        assert_eq!(&seen[i].body[..], *want);
        assert_eq!(seen[i].headers.get_all("content-type").iter().count(), 1);
        assert_eq!(seen[i].headers["content-type"], *ct);
    }
    assert_eq!(&seen[4].body[..], b"a=1&b=%C3%BC");
    assert_eq!(
        seen[4].headers["content-type"],
        "application/x-www-form-urlencoded"
    );
}

#[tokio::test]
async fn server_error_then_success_is_delivered_once_after_a_local_retry_r75() {
    let target = Target::start().await;
    target.script("/hook", &[500]);
    let m = v2_message("msg_a", b"{}");
    let d = deliver(&fast_target(target.url("/hook")), &m).await;
    assert_eq!(d.decision, Decision::Ack);
    assert_eq!(d.attempts, 2);
    let seen = target.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].headers["x-webhook-attempt"], "1");
    assert_eq!(seen[1].headers["x-webhook-attempt"], "2");
}

#[tokio::test]
async fn client_error_is_nacked_without_retry_after_one_attempt_r75() {
    let target = Target::start().await;
    target.script("/hook", &[400]);
    target.script("/missing", &[404]);
    let t = fast_target(target.url("/hook"));
    let d = deliver(&t, &v2_message("msg_a", b"{}")).await;
    assert!(
        matches!(d.decision, Decision::Nack { retry: false, ref reason, .. } if reason == "target returned 400")
    );
    assert_eq!(d.attempts, 1);
    let d = deliver(
        &fast_target(target.url("/missing")),
        &v2_message("msg_b", b"{}"),
    )
    .await;
    assert!(matches!(d.decision, Decision::Nack { retry: false, .. }));
    assert_eq!(target.hits("/missing"), 1);
}

#[tokio::test]
async fn rate_limited_and_unavailable_are_retried_locally_then_nacked_with_retry_r75() {
    let target = Target::start().await;
    target.script("/limited", &[429, 429, 429]);
    target.script("/down", &[503, 503, 503]);
    for path in ["/limited", "/down"] {
        let d = deliver(&fast_target(target.url(path)), &v2_message("msg_a", b"{}")).await;
        assert!(
            matches!(d.decision, Decision::Nack { retry: true, .. }),
            "{path}"
        );
        assert_eq!(d.attempts, 3);
        assert_eq!(target.hits(path), 3);
    }
}

#[tokio::test]
async fn retry_disabled_and_zero_attempts_make_exactly_one_attempt_r75() {
    let target = Target::start().await;
    target.script("/a", &[503, 503, 503]);
    target.script("/b", &[503, 503, 503]);
    let mut t = fast_target(target.url("/a"));
    t.retry.enabled = false;
    let d = deliver(&t, &v2_message("msg_a", b"{}")).await;
    assert!(matches!(d.decision, Decision::Nack { retry: true, .. }));
    assert_eq!(target.hits("/a"), 1);
    // `retry_max_attempts: 0` loads as one attempt.
    let (config, _) = webhook_connector::config::load_from_value(serde_json::json!({
        "cloud_url": "http://relay", "channel": "orders", "token": "t",
        "default_target": {"url": target.url("/b"), "retry_max_attempts": 0, "retry_delay_seconds": 0}
    }))
    .unwrap();
    let t = config.channels[0].default_target.clone().unwrap();
    let d = deliver(&t, &v2_message("msg_b", b"{}")).await;
    assert_eq!(d.attempts, 1);
    assert_eq!(target.hits("/b"), 1);
}

#[tokio::test]
async fn unreachable_target_is_retried_then_nacked_with_retry() {
    // A port that was just free: connection refused.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let d = deliver(
        &fast_target(format!("http://{addr}/hook")),
        &v2_message("msg_a", b"{}"),
    )
    .await;
    assert!(matches!(d.decision, Decision::Nack { retry: true, .. }));
    assert_eq!(d.attempts, 3);
    assert!(d.error_kinds.iter().all(|k| *k == "connection"));
}

// ---- Dispatcher: permits, dedup, bounds ----------------------------------------------------

fn channel_with(target: TargetConfig, mcr: usize) -> Arc<ChannelConfig> {
    let mut c = ChannelConfig::new("orders", "t");
    c.max_concurrent_requests = mcr;
    c.default_target = Some(target);
    Arc::new(c)
}

fn dispatcher(channel: Arc<ChannelConfig>) -> (Dispatcher, Arc<ChannelState>) {
    let state = Arc::new(ChannelState::new("orders"));
    let record = Arc::new(CompletionRecord::new(&CompletionRecordConfig::default()));
    let d = Dispatcher::new(
        channel,
        forward::target_client(None).unwrap(),
        record,
        state.clone(),
    );
    (d, state)
}

fn ws_sink(capacity: usize) -> (AckSink, mpsc::Receiver<Message>) {
    let (tx, rx) = mpsc::channel(capacity);
    (
        AckSink::WebSocket {
            tx,
            version: ProtocolVersion::V2,
            timeout: Duration::from_secs(5),
        },
        rx,
    )
}

/// The next ack or nack frame (lease `touch` frames are skipped).
async fn next_ack(rx: &mut mpsc::Receiver<Message>) -> serde_json::Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("ack within 20 s")
            .expect("sink open");
        let v: serde_json::Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        if v["type"] != "touch" {
            return v;
        }
    }
}

#[tokio::test]
async fn backoff_sleep_releases_the_concurrency_permit_r77() {
    let target = Target::start().await;
    target.script("/hook/flaky", &[503]);
    let mut t = TargetConfig::new(target.url("/hook/flaky"));
    // The spec's scenario: a 2 s wait between retries with max_concurrent_requests = 1.
    t.retry.delay = Duration::from_secs(2);
    let mut channel = ChannelConfig::new("orders", "t");
    channel.max_concurrent_requests = 1;
    channel.targets.insert("flaky".into(), t);
    channel.default_target = Some(TargetConfig::new(target.url("/hook/fast")));
    let (d, _) = dispatcher(Arc::new(channel));
    let (acks, mut rx) = ws_sink(16);
    let mut first = v2_message("msg_flaky", b"{}");
    first.webhook_id = "flaky".into();
    let second = v2_message("msg_fast", b"{}");
    let held = d.hold().await.unwrap();
    d.dispatch(Box::new(first), held, acks.clone(), false).await;
    // Let the first message fail once and start its backoff sleep.
    assert!(
        crate::support::eventually(Duration::from_secs(10), || target.hits("/hook/flaky") == 1)
            .await
    );
    let held = d.hold().await.unwrap();
    d.dispatch(Box::new(second), held, acks, false).await;
    let a = next_ack(&mut rx).await;
    assert_eq!(
        a["message_id"], "msg_fast",
        "the second message is delivered during the backoff"
    );
    let b = next_ack(&mut rx).await;
    assert_eq!(b["message_id"], "msg_flaky");
    assert_eq!(b["type"], "ack");
    assert_eq!(target.hits("/hook/flaky"), 2);
}

#[tokio::test]
async fn completed_redelivery_is_acked_without_calling_the_target_again_r82() {
    let target = Target::start().await;
    let (d, state) = dispatcher(channel_with(fast_target(target.url("/hook")), 2));
    let (acks, mut rx) = ws_sink(16);
    for _ in 0..2 {
        let held = d.hold().await.unwrap();
        d.dispatch(
            Box::new(v2_message("msg_same", b"{}")),
            held,
            acks.clone(),
            false,
        )
        .await;
        let a = next_ack(&mut rx).await;
        assert_eq!(
            (a["type"].as_str(), a["message_id"].as_str()),
            (Some("ack"), Some("msg_same"))
        );
    }
    assert_eq!(target.hits("/hook"), 1);
    assert_eq!(
        state
            .deduplicated
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn message_without_target_is_nacked_without_retry() {
    let mut c = ChannelConfig::new("orders", "t");
    c.targets
        .insert("other".into(), TargetConfig::new("http://127.0.0.1:9/x"));
    let (d, _) = dispatcher(Arc::new(c));
    let (acks, mut rx) = ws_sink(4);
    let held = d.hold().await.unwrap();
    d.dispatch(Box::new(v2_message("msg_x", b"{}")), held, acks, false)
        .await;
    let a = next_ack(&mut rx).await;
    assert_eq!(a["type"], "nack");
    assert_eq!(a["retry"], false);
    assert!(a["reason"].as_str().unwrap().contains("no target"));
}

#[tokio::test]
async fn held_messages_never_exceed_twice_max_concurrent_requests_r88() {
    let target = Target::start().await;
    target.set_delay(Duration::from_millis(500));
    let (d, state) = dispatcher(channel_with(fast_target(target.url("/hook")), 2));
    assert_eq!(d.capacity(), 4);
    let (acks, mut rx) = ws_sink(64);
    for i in 0..4 {
        let held = d.hold().await.unwrap();
        d.dispatch(
            Box::new(v2_message(&format!("msg_{i}"), b"{}")),
            held,
            acks.clone(),
            false,
        )
        .await;
    }
    assert_eq!(d.available(), 0);
    // A fifth message must wait until one of the four is finished.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), d.hold())
            .await
            .is_err()
    );
    assert!(state.in_flight.load(std::sync::atomic::Ordering::Relaxed) <= 4);
    let _ = next_ack(&mut rx).await;
    let held = tokio::time::timeout(Duration::from_secs(10), d.hold()).await;
    assert!(held.is_ok());
}

#[tokio::test]
async fn ordered_messages_are_delivered_one_at_a_time_in_order() {
    let target = Target::start().await;
    target.set_delay(Duration::from_millis(30));
    let (d, _) = dispatcher(channel_with(fast_target(target.url("/hook")), 4));
    let (acks, mut rx) = ws_sink(64);
    for i in 0..6 {
        let held = d.hold().await.unwrap();
        d.dispatch(
            Box::new(v2_message(&format!("msg_{i}"), b"{}")),
            held,
            acks.clone(),
            true,
        )
        .await;
    }
    for i in 0..6 {
        assert_eq!(next_ack(&mut rx).await["message_id"], format!("msg_{i}"));
    }
    let order: Vec<String> = target
        .seen()
        .iter()
        .map(|s| {
            s.headers["x-webhook-message-id"]
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        order,
        (0..6).map(|i| format!("msg_{i}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn redelivery_during_work_waits_for_it_instead_of_calling_the_target_twice_r82() {
    let target = Target::start().await;
    target.set_delay(Duration::from_millis(400));
    let (d, _) = dispatcher(channel_with(fast_target(target.url("/hook")), 4));
    // The first delivery's connection is gone by the time it finishes; the redelivery arrives
    // on a new connection while the first is still at the target.
    let (old_acks, old_rx) = ws_sink(4);
    let (new_acks, mut new_rx) = ws_sink(4);
    let held = d.hold().await.unwrap();
    d.dispatch(
        Box::new(v2_message("msg_twice", b"{}")),
        held,
        old_acks,
        false,
    )
    .await;
    assert!(
        crate::support::eventually(Duration::from_secs(10), || target.hits("/hook") == 1).await
    );
    drop(old_rx);
    let held = d.hold().await.unwrap();
    d.dispatch(
        Box::new(v2_message("msg_twice", b"{}")),
        held,
        new_acks,
        false,
    )
    .await;
    let a = next_ack(&mut new_rx).await;
    assert_eq!(
        (a["type"].as_str(), a["message_id"].as_str()),
        (Some("ack"), Some("msg_twice"))
    );
    assert_eq!(target.hits("/hook"), 1);
}
