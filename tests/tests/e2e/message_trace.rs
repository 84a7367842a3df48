//! The message trace end to end: a real relay, our connector and a real local target whose
//! answers the connector reports in its nacks (wire protocol B.4 "Delivery report"); the trace
//! (`GET /admin/webhook-connect/messages/{id}`) shows every attempt with the target's status
//! and the start of its body, on the embedded and on the Redis state store.

use std::time::Duration;

use serde_json::Value;
use webhook_connect_tests::sink::Sink;
use webhook_connect_tests::stack::{Backend, Connector, Relay, TempDir, relay_toml_with};
use webhook_connector::config::{ChannelConfig, ConnectorConfig, Protocol, TargetConfig};

const TOKEN: &str = "trace-channel-token-0123456789";
const ADMIN: &str = "trace-admin-token-0123456789";

fn config(dir: &std::path::Path, backend: &Backend) -> String {
    let channels = format!(
        "[[channels]]\nname = \"orders\"\ntoken = \"{TOKEN}\"\nrequeue_delay_initial_ms = 100\n[channels.webhooks.shop]\n"
    );
    format!(
        "[admin]\ntoken = \"{ADMIN}\"\n{}",
        relay_toml_with(dir, backend, &channels)
    )
}

async fn connector(relay: &Relay, sink: &Sink, protocol: Protocol) -> Connector {
    let mut target = TargetConfig::new(sink.url());
    // One local attempt per delivery, so each relay delivery is one row of the trace.
    target.retry.enabled = false;
    let mut channel = ChannelConfig::new("orders", TOKEN);
    channel.protocol = protocol;
    channel.default_target = Some(target);
    let mut config = ConnectorConfig::new(&relay.base, channel);
    config.reconnect.initial = Duration::from_millis(100);
    config.reconnect.max = Duration::from_millis(500);
    config.drain_timeout = Duration::from_secs(5);
    Connector::start_with(config).await.unwrap()
}

async fn trace(http: &reqwest::Client, relay: &Relay, id: &str) -> (u16, Value) {
    let response = http
        .get(format!(
            "{}/admin/webhook-connect/messages/{id}",
            relay.base
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until the trace of `id` is in `state` (the Redis store writes in the background).
async fn trace_in_state(http: &reqwest::Client, relay: &Relay, id: &str, state: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..150 {
        let (status, body) = trace(http, relay, id).await;
        if status == 200 && body["state"] == state {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("trace of {id} never reached {state}: {last}");
}

async fn failing_target_then_rejecting(backend: Backend, protocol: Protocol, tag: &str) {
    let dir = TempDir::new(tag).unwrap();
    let mut relay = Relay::start(&dir.0, &config(&dir.0, &backend), "127.0.0.1:0")
        .await
        .unwrap();
    let sink = Sink::start("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    // 500 → nack with retry (redelivered), then 400 → nack without retry (dead letter).
    sink.script_answers(&[
        (500, "{\"error\":\"database is down\"}"),
        (400, &format!("bad signature {}", "x".repeat(2000))),
    ]);
    let http = reqwest::Client::new();
    let accepted: Value = http
        .post(format!("{}/webhook/shop", relay.base))
        .header("content-type", "application/json")
        .body("{\"order\":1}")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = accepted["message_id"].as_str().unwrap().to_owned();
    let queued = trace_in_state(&http, &relay, &id, "queued").await;
    assert!(queued["accepted_at"].is_string(), "{queued}");
    assert_eq!(queued["attempts"], serde_json::json!([]));

    let mut connector = connector(&relay, &sink, protocol).await;
    let dead = trace_in_state(&http, &relay, &id, "dead_lettered").await;
    assert_eq!(dead["message_id"], id.as_str());
    assert_eq!(dead["channel"], "orders");
    assert_eq!(dead["webhook_id"], "shop");
    let attempts = dead["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{dead}");
    assert_eq!(attempts[0]["outcome"], "nacked");
    assert_eq!(attempts[0]["target_status"], 500);
    assert_eq!(
        attempts[0]["response_snippet"],
        "{\"error\":\"database is down\"}"
    );
    assert_eq!(attempts[0]["error"], "target returned 500");
    assert_eq!(attempts[1]["outcome"], "nacked");
    assert_eq!(attempts[1]["target_status"], 400);
    let snippet = attempts[1]["response_snippet"].as_str().unwrap();
    assert!(snippet.starts_with("bad signature xxx"), "{snippet}");
    assert_eq!(snippet.len(), 1024, "the snippet is the first 1 KiB");
    for a in attempts {
        assert!(a["at"].is_string() && a["connection_id"].is_string(), "{a}");
        assert_eq!(
            a["transport"],
            match protocol {
                Protocol::WebSocket => "websocket",
                Protocol::Sse => "sse",
                _ => "long_poll",
            }
        );
    }
    assert_eq!(dead["events"][0]["event"], "dead_lettered");
    assert_eq!(dead["events"][0]["reason"], "rejected");

    // Unknown and malformed ids.
    assert_eq!(trace(&http, &relay, "msg_unknown").await.0, 404);
    assert_eq!(trace(&http, &relay, "bad%20id").await.0, 422);

    // The CLI prints the same trace.
    let shown = webhook_relay::admin_cli::run(
        &webhook_relay::admin_cli::Task::Messages(webhook_relay::admin_cli::MessageTask::Show {
            message_id: id.clone(),
        }),
        &webhook_relay::admin_cli::Target::new(&relay.base, ADMIN),
    )
    .await
    .unwrap();
    assert!(
        shown.contains("dead_lettered") && shown.contains("500") && shown.contains("400"),
        "{shown}"
    );

    connector.stop().await;
    relay.stop().await.unwrap();
    backend.cleanup().await;
}

#[tokio::test]
async fn trace_shows_each_attempt_with_the_targets_answer_embedded_websocket() {
    failing_target_then_rejecting(Backend::Embedded, Protocol::WebSocket, "trace-ws").await;
}

#[tokio::test]
async fn trace_shows_each_attempt_with_the_targets_answer_embedded_sse() {
    failing_target_then_rejecting(Backend::Embedded, Protocol::Sse, "trace-sse").await;
}

#[tokio::test]
async fn trace_shows_each_attempt_with_the_targets_answer_on_redis() {
    failing_target_then_rejecting(Backend::redis(), Protocol::WebSocket, "trace-redis").await;
}
