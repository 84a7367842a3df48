//! Channel settings that take effect (R-12), the `default` webhook that never creates queues
//! (R-13), and no success answer for a message that was not stored (R-15), on a real relay.

use std::time::Duration;

use crate::support::{Store, TOKEN, TestRelay};

const WAIT: Duration = Duration::from_secs(10);
const CATCHALL_TOKEN: &str = "catchall-channel-token-0123456789";

#[tokio::test]
async fn rate_limit_allowed_ips_and_timings_of_a_channel_take_effect_r12() {
    let limited = TestRelay::start(
        "r12-rate",
        "rate_limit_per_second = 3\nheartbeat_interval_seconds = 7\nack_timeout_seconds = 11",
        "",
    )
    .await;
    // Sent as fast as possible: within one second at most three are accepted.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(limited.post("shop", "{}").await.status().as_u16());
    }
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        (1..=3).contains(&accepted) && statuses.contains(&429),
        "rate limit 3/s: {statuses:?}"
    );
    let mut ws = limited.ws(true, &[]).await;
    let connected = ws.next_of("connected", WAIT).await;
    assert_eq!(connected["heartbeat_interval_ms"], 7_000, "{connected}");
    assert_eq!(connected["ack_timeout_ms"], 11_000, "{connected}");

    // The connector endpoints of a channel that allows only another network refuse this one.
    let fenced = TestRelay::start("r12-ips", "allowed_ips = [\"10.0.0.0/8\"]", "").await;
    let stream = fenced
        .http
        .get(format!("{}/connect/stream/orders/sse", fenced.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 403);
    let status = fenced
        .http
        .get(format!("{}/connect/status/orders", fenced.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 403);
    // Senders are not connectors: ingest is not fenced by `allowed_ips`.
    assert_eq!(fenced.post("shop", "{}").await.status(), 200);
}

#[tokio::test]
async fn unknown_ids_go_to_the_default_queue_and_create_no_other_r13() {
    let off = TestRelay::start("r13-off", "", "").await;
    assert_eq!(off.post("never-configured", "{}").await.status(), 404);

    // The original's catch-all: a `default` entry of `webhooks.json`, on its own channel.
    let files = crate::support::temp_dir("r13-files");
    let webhooks = files.join("webhooks.json");
    std::fs::write(
        &webhooks,
        format!(
            r#"{{"default": {{"module": "webhook_connect", "module-config": {{"channel": "catchall", "channel_token": "{CATCHALL_TOKEN}"}}}}}}"#
        ),
    )
    .unwrap();
    let relay = TestRelay::start_on(
        Store::Redis,
        "r13",
        "",
        &format!(
            "[ingest]\nwebhooks_file = \"{}\"\nallow_default_webhook = true",
            webhooks.display()
        ),
    )
    .await;
    for i in 0..100 {
        let r = relay.post(&format!("unknown-{i}"), "{}").await;
        assert_eq!(r.status(), 200, "unknown-{i}");
    }
    let prefix = relay.redis_prefix.clone().unwrap();
    let client = redis::Client::open(crate::support::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        keys.iter().all(|k| !k.contains("unknown-")),
        "no queue per unknown id: {keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.contains(":7:default:")),
        "the default queue holds them: {keys:?}"
    );
    let mut ids = std::collections::BTreeSet::new();
    while ids.len() < 100 {
        let polled: serde_json::Value = relay
            .http
            .get(format!(
                "{}/connect/stream/catchall/poll?max_messages=100&timeout=5",
                relay.base
            ))
            .bearer_auth(CATCHALL_TOKEN)
            .header("x-connector-id", "r13")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let messages = polled["messages"].as_array().cloned().unwrap_or_default();
        assert!(!messages.is_empty(), "all 100 are delivered: {polled}");
        for m in messages {
            ids.insert(m["webhook_id"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(ids.len(), 100, "each message keeps its path id");
    assert!(ids.iter().all(|id| id.starts_with("unknown-")), "{ids:?}");
    let _ = std::fs::remove_dir_all(files);
}

#[tokio::test]
async fn a_message_that_was_not_stored_never_gets_a_success_answer_r15() {
    // A body over the channel's limit, and a full queue: each refusal is a 4xx, and only the
    // messages that got 200 are there to be delivered.
    let relay = TestRelay::start("r15", "max_message_size = 64\nmax_queue_size = 2", "").await;
    let mut stored = Vec::new();
    for i in 0..4 {
        let r = relay
            .post(
                "shop",
                &format!(
                    r#"{{"i":{i},"pad":"{}"}}"#,
                    "x".repeat(if i == 3 { 100 } else { 0 })
                ),
            )
            .await;
        let status = r.status().as_u16();
        assert_ne!(status, 202, "never 202");
        if status == 200 {
            let body: serde_json::Value = r.json().await.unwrap();
            stored.push(body["message_id"].as_str().unwrap().to_owned());
        } else {
            assert!(
                status == 413 || status == 429,
                "refusal {status} for message {i}"
            );
        }
    }
    let status = relay.status().await;
    assert_eq!(
        status["stats"]["messages_queued"],
        stored.len(),
        "exactly the accepted ones are queued: {status}"
    );
    let mut ws = relay.ws(true, &[]).await;
    ws.next_of("connected", WAIT).await;
    for id in &stored {
        let frame = ws.next_of("webhook", WAIT).await;
        assert_eq!(frame["message_id"].as_str(), Some(id.as_str()));
    }
}
