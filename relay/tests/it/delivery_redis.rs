//! The core delivery and ingest cases again, on the Redis buffer (real server, unique key
//! prefix per test, keys removed afterwards). The case bodies live with their embedded versions.

use crate::support::Store::Redis;
use crate::{
    delivery_http as http, delivery_ws as ws, flow_control as flow, ingest_store as ingest,
    liveness_order as liveness,
};

#[tokio::test]
async fn long_poll_acks_and_max_messages_on_redis_r17_r18() {
    http::long_poll_returns_leased_messages_that_http_acks_settle_r17_r18_on(Redis).await;
}

#[tokio::test]
async fn unacked_leases_expire_and_are_delivered_again_on_redis_r19() {
    http::unacked_leases_expire_and_are_delivered_again_r19_on(Redis).await;
}

#[tokio::test]
async fn sse_v2_and_http_acks_on_redis_r42() {
    http::v2_sse_starts_with_retry_and_carries_event_ids_and_acks_work_over_http_r42_on(Redis)
        .await;
}

#[tokio::test]
async fn websocket_v1_ack_removes_on_redis() {
    ws::v1_websocket_gets_connected_then_flat_webhook_frames_and_ack_removes_on(Redis).await;
}

#[tokio::test]
async fn websocket_v2_raw_body_and_dead_letter_on_redis_r06_r21() {
    ws::v2_websocket_gets_raw_body_and_ack_results_r06_r21_on(Redis).await;
}

#[tokio::test]
async fn killed_connection_requeues_on_redis_r22() {
    ws::a_killed_connection_requeues_its_leases_with_a_higher_delivery_count_r22_on(Redis).await;
}

#[tokio::test]
async fn nack_retry_until_max_attempts_on_redis_r20() {
    ws::nack_with_retry_redelivers_until_max_attempts_then_dead_letters_r20_on(Redis).await;
}

#[tokio::test]
async fn full_queues_refuse_on_redis_r02() {
    ingest::full_queues_refuse_with_429_and_retry_after_r02_on(Redis).await;
}

#[tokio::test]
async fn the_queue_limit_is_atomic_on_redis_r03() {
    ingest::the_queue_limit_is_atomic_under_concurrency_r03_on(Redis).await;
}

#[tokio::test]
async fn in_flight_limit_on_redis_r25() {
    flow::a_connection_never_holds_more_than_its_in_flight_limit_r25_on(Redis).await;
}

#[tokio::test]
async fn a_stalled_connector_does_not_stall_the_channel_on_redis_r26() {
    flow::a_stalled_connector_does_not_stall_the_channel_r26_on(Redis).await;
}

#[tokio::test]
async fn ordered_channels_on_redis_r29() {
    liveness::ordered_channels_keep_order_and_never_lease_two_at_once_r29_on(Redis).await;
}

#[tokio::test]
async fn eviction_closes_the_socket_on_redis_r33() {
    liveness::a_silent_websocket_is_evicted_with_a_real_close_frame_and_its_lease_requeued_r33_on(
        Redis,
    )
    .await;
}
