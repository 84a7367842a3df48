//! The message trace's retention (`docs/operations.md` "Message trace"): bounded by
//! `[trace] max_messages_per_channel`, in memory on the embedded state store and in Redis
//! shared by every instance on the Redis one; replays are recorded.

use std::time::Duration;

use crate::support::{Store, TestRelay, eventually};

const ADMIN: &str = "trace-retention-admin-token-0123";
const WAIT: Duration = Duration::from_secs(10);

fn extra() -> String {
    format!("[admin]\ntoken = \"{ADMIN}\"\n[trace]\nmax_messages_per_channel = 3\n")
}

async fn trace_status(relay: &TestRelay, id: &str) -> u16 {
    relay
        .admin_call(
            ADMIN,
            reqwest::Method::GET,
            &format!("/messages/{id}"),
            None,
        )
        .await
        .0
}

async fn keeps_the_newest_per_channel(first: &TestRelay, reader: &TestRelay) {
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(first.post_ok("shop", &format!("{{\"n\":{i}}}")).await);
    }
    let newest = ids[4].clone();
    assert!(
        eventually(WAIT, || async {
            trace_status(reader, &newest).await == 200
        })
        .await,
        "the newest message has a trace"
    );
    assert!(
        eventually(WAIT, || async {
            trace_status(reader, &ids[0]).await == 404 && trace_status(reader, &ids[1]).await == 404
        })
        .await,
        "the two oldest are past the bound of 3"
    );
    for id in &ids[2..] {
        let (status, body) = reader
            .admin_call(
                ADMIN,
                reqwest::Method::GET,
                &format!("/messages/{id}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["state"], "queued", "{body}");
        assert_eq!(body["webhook_id"], "shop", "{body}");
        assert_eq!(body["channel"], "orders", "{body}");
        assert!(body["accepted_at"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn trace_keeps_at_most_max_messages_per_channel_in_memory() {
    let relay = TestRelay::start_on(Store::Embedded, "trace-bound", "", &extra()).await;
    keeps_the_newest_per_channel(&relay, &relay).await;
}

/// Two instances on one Redis (`store`) share the trace, bounded per channel.
async fn shared_by_instances_and_bounded(store: Store) {
    let a = TestRelay::start_on(store, "trace-redis-a", "", &extra()).await;
    let prefix = a.redis_prefix.clone().unwrap();
    let b = TestRelay::start_on_redis(store, &prefix, "trace-redis-b", "", &extra()).await;
    keeps_the_newest_per_channel(&a, &b).await;
}

#[tokio::test]
async fn trace_on_redis_is_shared_by_instances_and_bounded() {
    shared_by_instances_and_bounded(Store::Redis).await;
}

#[tokio::test]
async fn trace_on_redis_cluster_is_shared_by_instances_and_bounded() {
    shared_by_instances_and_bounded(Store::RedisCluster).await;
}

#[tokio::test]
async fn trace_off_answers_404() {
    let relay = TestRelay::start(
        "trace-off",
        "",
        &format!("[admin]\ntoken = \"{ADMIN}\"\n[trace]\nmax_messages_per_channel = 0\n"),
    )
    .await;
    let id = relay.post_ok("shop", "{}").await;
    assert_eq!(trace_status(&relay, &id).await, 404);
    assert_eq!(trace_status(&relay, "not an id").await, 422);
}
