//! Several relay instances sharing one Redis (buffer and state store, `docs/reference/http-api.md` §7): admin
//! state lives in Redis, not in a file of one instance, and changes made through one instance
//! take effect on the others. Every case runs on a single Redis server and on a Redis Cluster
//! (`docs/redis-cluster.md`).

use std::time::Duration;

use crate::delivery_http::{ack, poll};
use crate::support::{Store, TOKEN, TestRelay, eventually};

const ADMIN: &str = "multi-instance-admin-token-0123";
const WAIT: Duration = Duration::from_secs(10);

fn admin_section() -> String {
    format!("[admin]\ntoken = \"{ADMIN}\"")
}

async fn admin(
    relay: &TestRelay,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    relay.admin_call(ADMIN, method, path, body).await
}

/// Status of `GET /connect/status/{channel}` with `token`: 200 when the token is valid.
async fn status_with(relay: &TestRelay, channel: &str, token: &str) -> u16 {
    relay
        .http
        .get(format!("{}/connect/status/{channel}", relay.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn rotate(relay: &TestRelay) -> String {
    let (status, body) = admin(
        relay,
        reqwest::Method::POST,
        "/channels/orders/rotate-token",
        Some(r#"{"grace_period_seconds": 0}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["new_token"].as_str().unwrap().to_owned()
}

async fn a_rotated_token_survives_a_restart_that_keeps_no_local_file(store: Store) {
    let mut first = TestRelay::start_on(store, "multi-restart", "", &admin_section()).await;
    let prefix = first.redis_prefix.clone().unwrap();
    let new_token = rotate(&first).await;
    first.stop().await;
    // A fresh directory: no state file. What the relay knows comes from Redis.
    let second =
        TestRelay::start_on_redis(store, &prefix, "multi-restart-2", "", &admin_section()).await;
    assert_eq!(status_with(&second, "orders", TOKEN).await, 401);
    assert_eq!(status_with(&second, "orders", &new_token).await, 200);
    let ready: serde_json::Value = second
        .http
        .get(format!("{}/readyz", second.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["state_store"], true, "{ready}");
}

/// Two instances on one fresh Redis prefix; the first owns (and deletes) the keys.
async fn pair(store: Store, tag: &str) -> (TestRelay, TestRelay) {
    pair_with(store, tag, "").await
}

/// Like [`pair`], with `extra_channel` in channel `orders` of both.
async fn pair_with(store: Store, tag: &str, extra_channel: &str) -> (TestRelay, TestRelay) {
    let a = TestRelay::start_on(store, tag, extra_channel, &admin_section()).await;
    let prefix = a.redis_prefix.clone().unwrap();
    let b = TestRelay::start_on_redis(
        store,
        &prefix,
        &format!("{tag}-b"),
        extra_channel,
        &admin_section(),
    )
    .await;
    (a, b)
}

async fn a_rotation_on_one_instance_applies_on_the_other_and_closes_its_old_connections(
    store: Store,
) {
    let (a, b) = pair(store, "multi-rotate").await;
    let mut ws = b.ws(true, &[]).await;
    ws.next_of("connected", WAIT).await;
    let new_token = rotate(&a).await;
    assert!(
        eventually(WAIT, || async {
            status_with(&b, "orders", TOKEN).await == 401
                && status_with(&b, "orders", &new_token).await == 200
        })
        .await,
        "instance b took over the rotation"
    );
    let notice = ws.next_of("close", WAIT).await;
    assert_eq!(notice["code"].as_u64(), Some(4001), "{notice}");
}

async fn pausing_on_one_instance_stops_deliveries_from_the_other(store: Store) {
    let (a, b) = pair(store, "multi-pause").await;
    let (status, body) = admin(&a, reqwest::Method::POST, "/channels/orders/pause", None).await;
    assert_eq!(status, 200, "{body}");
    let paused = || async {
        let (status, body) = admin(&b, reqwest::Method::GET, "/channels/orders", None).await;
        status == 200 && body["stats"]["paused"] == true
    };
    assert!(
        eventually(WAIT, paused).await,
        "instance b sees the pause: {:?}",
        admin(&b, reqwest::Method::GET, "/channels/orders", None).await
    );
    let mut ws = b.ws(true, &[]).await;
    ws.next_of("connected", WAIT).await;
    let id = b.post_ok("shop", "{}").await;
    let (status, _) = admin(&a, reqwest::Method::POST, "/channels/orders/resume", None).await;
    assert_eq!(status, 200);
    let frame = ws.next_of("webhook", WAIT).await;
    assert_eq!(
        frame["message_id"].as_str(),
        Some(id.as_str()),
        "delivered only after the resume on the other instance"
    );
}

async fn a_channel_created_and_deleted_on_one_instance_follows_on_the_other(store: Store) {
    let (a, b) = pair(store, "multi-create").await;
    let (status, created) = admin(
        &a,
        reqwest::Method::POST,
        "/channels",
        Some(r#"{"name": "billing", "webhooks": {"invoice": {}}}"#),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(
        eventually(WAIT, || async {
            b.post("invoice", "{}").await.status() == 200
                && status_with(&b, "billing", &token).await == 200
        })
        .await,
        "instance b accepts webhooks and the token of the new channel"
    );
    let (status, body) = admin(
        &a,
        reqwest::Method::DELETE,
        "/channels/billing?force=true",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        eventually(WAIT, || async {
            b.post("invoice", "{}").await.status() == 404
        })
        .await,
        "instance b forgot the deleted channel"
    );
}

async fn cumulative_counters_are_shared_by_instances_and_survive_a_restart_r58(store: Store) {
    let (a, mut b) = pair(store, "multi-counters").await;
    let id = a.post_ok("shop", "{}").await;
    let mut ws = a.ws(true, &[]).await;
    ws.next_of("connected", WAIT).await;
    ws.next_of("webhook", WAIT).await;
    ws.send(&format!(r#"{{"type":"ack","message_id":"{id}"}}"#))
        .await;
    ws.next_of("ack_result", WAIT).await;
    assert!(
        eventually(WAIT, || async { delivered(&b).await == Some(1) }).await,
        "the other instance reports the ack"
    );
    b.stop().await;
    let prefix = a.redis_prefix.clone().unwrap();
    let c =
        TestRelay::start_on_redis(store, &prefix, "multi-counters-c", "", &admin_section()).await;
    assert_eq!(
        delivered(&c).await,
        Some(1),
        "the counter survived a restart"
    );
}

/// `messages_delivered` of channel `orders` as `relay` reports it.
async fn delivered(relay: &TestRelay) -> Option<u64> {
    let (status, body) = admin(relay, reqwest::Method::GET, "/channels/orders/stats", None).await;
    assert_eq!(status, 200, "{body}");
    body["messages_delivered"].as_u64()
}

async fn an_ack_sent_to_the_other_instance_settles_the_lease_r31(store: Store) {
    // Short leases: a message whose ack was lost would come back within the test.
    let (a, b) = pair_with(
        store,
        "multi-ack",
        "ack_timeout_seconds = 1\nmax_lease_seconds = 1\nrequeue_delay_initial_ms = 0\nrequeue_delay_max_ms = 0",
    )
    .await;
    let id = a.post_ok("shop", "{}").await;
    let first: serde_json::Value = poll(&a, "timeout=5", "behind-a-balancer")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["messages"][0]["message_id"], id.as_str(), "{first}");
    let session = first["connection_id"].as_str().unwrap().to_owned();
    let (status, body) = ack(&b, &session, &format!("message_id={id}"), TOKEN).await;
    assert_eq!(
        status, 200,
        "instance b settled a lease instance a holds: {body}"
    );
    // Three lease lengths later nothing comes back, on either instance.
    for relay in [&a, &b] {
        let again = poll(relay, "timeout=3", "behind-a-balancer").await;
        assert_eq!(again.status(), 204, "not delivered again");
    }
    assert!(
        eventually(WAIT, || async { delivered(&a).await == Some(1) }).await,
        "the ack counts once"
    );
    // An ack for a connection no instance holds is refused at once, not after a timeout.
    let started = std::time::Instant::now();
    let (status, body) = ack(&b, "conn_unknown", &format!("message_id={id}"), TOKEN).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("Connection not found"), "{body}");
    assert!(
        started.elapsed() < webhook_relay::peer_acks::ANSWER_WITHIN,
        "every instance answered"
    );
    // A wrong token learns nothing, even about the other instance's connections.
    let (status, _) = ack(
        &b,
        &session,
        &format!("message_id={id}"),
        "wrong-token-0123456789",
    )
    .await;
    assert_eq!(status, 401);
}

async fn a_v2_batch_sent_to_the_other_instance_reports_each_outcome_r31(store: Store) {
    let (a, b) = pair(store, "multi-ack-batch").await;
    let kept = a.post_ok("shop", r#"{"n":1}"#).await;
    let refused = a.post_ok("shop", r#"{"n":2}"#).await;
    let leased: serde_json::Value = poll(&a, "timeout=5&max_messages=2", "batch")
        .await
        .json()
        .await
        .unwrap();
    let session = leased["connection_id"].as_str().unwrap().to_owned();
    let mut ids: Vec<&str> = leased["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["message_id"].as_str())
        .collect();
    ids.sort_unstable();
    let mut want = vec![kept.as_str(), refused.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want, "{leased}");
    let body = format!(
        r#"{{"acks":[{{"message_id":"{kept}","status":"ack"}},{{"message_id":"{refused}","status":"nack","retry":false,"reason":"bad order"}},{{"message_id":"msg_never_sent","status":"ack"}}]}}"#
    );
    let response = b
        .http
        .post(format!("{}/connect/ack", b.base))
        .bearer_auth(TOKEN)
        .header("x-webhook-connect-protocol", "2")
        .header("x-connection-id", &session)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let results: serde_json::Value = response.json().await.unwrap();
    let got: Vec<(&str, &str, &str)> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["message_id"].as_str().unwrap_or_default(),
                r["status"].as_str().unwrap_or_default(),
                r["outcome"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (kept.as_str(), "ok", "acked"),
            (refused.as_str(), "ok", "dead_lettered"),
            ("msg_never_sent", "not_in_flight", ""),
        ],
        "{results}"
    );
    let (status, dead) = admin(
        &b,
        reqwest::Method::GET,
        "/channels/orders/dead-letters",
        None,
    )
    .await;
    assert_eq!(status, 200, "{dead}");
    assert!(dead.to_string().contains(&refused), "{dead}");
}

/// Runs each case on a single Redis (module `single`) and on the Redis Cluster (`cluster`).
macro_rules! on_single_and_cluster {
    ($($case:ident),* $(,)?) => {
        mod single {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(crate::support::Store::Redis).await;
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(crate::support::Store::RedisCluster).await;
                }
            )*
        }
    };
}

on_single_and_cluster!(
    a_rotated_token_survives_a_restart_that_keeps_no_local_file,
    a_rotation_on_one_instance_applies_on_the_other_and_closes_its_old_connections,
    pausing_on_one_instance_stops_deliveries_from_the_other,
    a_channel_created_and_deleted_on_one_instance_follows_on_the_other,
    cumulative_counters_are_shared_by_instances_and_survive_a_restart_r58,
    an_ack_sent_to_the_other_instance_settles_the_lease_r31,
    a_v2_batch_sent_to_the_other_instance_reports_each_outcome_r31,
);
