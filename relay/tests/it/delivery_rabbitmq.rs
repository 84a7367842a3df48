//! The core delivery and ingest cases again, on the RabbitMQ buffer (real broker, unique
//! exchange and queues per test, deleted afterwards). The case bodies live with their embedded
//! versions.

use std::time::Duration;

use webhook_connect_buffer::{Buffer, RabbitBuffer, RabbitOptions};
use webhook_connect_protocol::{DataType, Envelope, Headers, MessageId, Timestamp};

use crate::support::Store::RabbitMq;
use crate::support::{TestRelay, eventually};
use crate::{
    delivery_http as http, delivery_ws as ws, flow_control as flow, ingest_store as ingest,
    liveness_order as liveness,
};

#[tokio::test]
async fn long_poll_acks_and_max_messages_on_rabbitmq_r17_r18() {
    http::long_poll_returns_leased_messages_that_http_acks_settle_r17_r18_on(RabbitMq).await;
}

#[tokio::test]
async fn unacked_leases_expire_and_are_delivered_again_on_rabbitmq_r19() {
    http::unacked_leases_expire_and_are_delivered_again_r19_on(RabbitMq).await;
}

#[tokio::test]
async fn sse_v2_and_http_acks_on_rabbitmq_r42() {
    http::v2_sse_starts_with_retry_and_carries_event_ids_and_acks_work_over_http_r42_on(RabbitMq)
        .await;
}

#[tokio::test]
async fn websocket_v1_ack_removes_on_rabbitmq() {
    ws::v1_websocket_gets_connected_then_flat_webhook_frames_and_ack_removes_on(RabbitMq).await;
}

#[tokio::test]
async fn websocket_v2_raw_body_and_dead_letter_on_rabbitmq_r06_r21() {
    ws::v2_websocket_gets_raw_body_and_ack_results_r06_r21_on(RabbitMq).await;
}

#[tokio::test]
async fn killed_connection_requeues_on_rabbitmq_r22() {
    ws::a_killed_connection_requeues_its_leases_with_a_higher_delivery_count_r22_on(RabbitMq).await;
}

#[tokio::test]
async fn nack_retry_until_max_attempts_on_rabbitmq_r20() {
    ws::nack_with_retry_redelivers_until_max_attempts_then_dead_letters_r20_on(RabbitMq).await;
}

#[tokio::test]
async fn full_queues_refuse_on_rabbitmq_r02() {
    ingest::full_queues_refuse_with_429_and_retry_after_r02_on(RabbitMq).await;
}

#[tokio::test]
async fn the_queue_limit_is_atomic_on_rabbitmq_r03() {
    ingest::the_queue_limit_is_atomic_under_concurrency_r03_on(RabbitMq).await;
}

#[tokio::test]
async fn in_flight_limit_on_rabbitmq_r25() {
    flow::a_connection_never_holds_more_than_its_in_flight_limit_r25_on(RabbitMq).await;
}

#[tokio::test]
async fn a_stalled_connector_does_not_stall_the_channel_on_rabbitmq_r26() {
    flow::a_stalled_connector_does_not_stall_the_channel_r26_on(RabbitMq).await;
}

#[tokio::test]
async fn ordered_channels_on_rabbitmq_r29() {
    liveness::ordered_channels_keep_order_and_never_lease_two_at_once_r29_on(RabbitMq).await;
}

#[tokio::test]
async fn eviction_closes_the_socket_on_rabbitmq_r33() {
    liveness::a_silent_websocket_is_evicted_with_a_real_close_frame_and_its_lease_requeued_r33_on(
        RabbitMq,
    )
    .await;
}

/// A message for `orders`/`shop` with body `{"copy":true}`.
fn shop_message() -> Envelope {
    let now = Timestamp::now();
    let body = br#"{"copy":true}"#.to_vec();
    Envelope {
        message_id: MessageId::generate(),
        channel: "orders".into(),
        webhook_id: "shop".into(),
        namespace: None,
        sequence: 0,
        received_at: now,
        expires_at: Some(now.plus_millis(86_400_000)),
        headers: Headers::new(),
        raw_headers: None,
        data_type: DataType::Json,
        content_type: Some("application/json".into()),
        payload: serde_json::value::RawValue::from_string(
            String::from_utf8_lossy(&body).into_owned(),
        )
        .unwrap(),
        payload_encoding: None,
        body_omitted: false,
        body,
    }
}

/// RabbitMQ can hold two copies of one message: a requeue publishes the new copy before it
/// acks the old one, and a restart in between leaves both. When one connection is handed both
/// copies, it gets the message once, and its one ack settles both leases: nothing stays in
/// flight until the lease runs out (which is what a relay restart on RabbitMQ used to leave).
#[tokio::test]
async fn two_copies_of_one_message_reach_a_connection_once_and_one_ack_settles_both() {
    const WAIT: Duration = Duration::from_secs(10);
    let relay = TestRelay::start_on(RabbitMq, "rabbit-copies", "", "").await;
    let url = std::env::var("WEBHOOK_CONNECT_TEST_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let peer = RabbitBuffer::connect(RabbitOptions {
        url,
        exchange: relay.rabbit_exchange.clone().unwrap(),
        ..RabbitOptions::default()
    })
    .await
    .unwrap();
    // Wait for the relay to create the channel, then put two copies of one message.
    let message = shop_message();
    assert!(
        eventually(WAIT, || async {
            peer.publish("shop", &mut message.clone()).await.is_ok()
        })
        .await
    );
    peer.publish("shop", &mut message.clone()).await.unwrap();
    peer.close().await.unwrap();
    let id = message.message_id.as_str().to_owned();
    let mut ws = relay.ws(true, &[]).await;
    ws.next_of("connected", WAIT).await;
    assert_eq!(ws.next_of("webhook", WAIT).await["message_id"], id);
    assert!(
        tokio::time::timeout(Duration::from_secs(2), ws.next_of("webhook", WAIT))
            .await
            .is_err(),
        "the second copy was sent as well"
    );
    ws.send(&format!(r#"{{"type":"ack","message_id":"{id}"}}"#))
        .await;
    let result = ws.next_of("ack_result", WAIT).await;
    assert_eq!(result["results"][0]["status"], "ok", "{result}");
    assert_eq!(result["results"][0]["outcome"], "acked", "{result}");
    let settled = eventually(WAIT, || async {
        let stats = relay.status().await["stats"].clone();
        stats["messages_in_flight"] == 0 && stats["messages_queued"] == 0
    })
    .await;
    assert!(settled, "{}", relay.status().await);
}
