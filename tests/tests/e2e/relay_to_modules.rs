//! Module mode end to end: webhooks posted to the relay reach `save_to_disk` through the
//! connector's module pipeline, and are acked (the relay's queue empties) only after the file
//! was written.

use std::time::Duration;

use serde_json::{Value, json};
use webhook_connect_tests::stack::{Connector, Relay, TempDir, relay_toml};

const TOKEN: &str = "e2e-modules-token-0123456789";

async fn queue_settled(http: &reqwest::Client, relay: &Relay) -> Value {
    let mut stats = Value::Null;
    for _ in 0..100 {
        let status: Value = http
            .get(format!("{}/connect/status/files", relay.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stats = status["stats"].clone();
        if stats["messages_queued"] == 0 && stats["messages_in_flight"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_to_connector_module_mode_writes_files_with_save_to_disk() {
    let dir = TempDir::new("modules").unwrap();
    let channels = format!(
        "[[channels]]\nname = \"files\"\ntoken = \"{TOKEN}\"\n[channels.webhooks.orders]\n"
    );
    let mut relay = Relay::start(&dir.0, &relay_toml(&dir.0, &channels), "127.0.0.1:0")
        .await
        .unwrap();
    let out = dir.0.join("out");
    let webhooks = dir.0.join("webhooks.json");
    std::fs::write(
        &webhooks,
        json!({"orders": {"module": "save_to_disk",
                          "module-config": {"base_dir": dir.0.to_str().unwrap(), "path": "out",
                                            "include_headers": true}}})
        .to_string(),
    )
    .unwrap();
    let (config, problems) = webhook_connector::config::load_from_value(json!({
        "cloud_url": relay.base, "channel": "files", "token": TOKEN, "protocol": "websocket",
        "webhooks_config": webhooks.to_str().unwrap(), "reconnect_delay": 0.1, "max_reconnect_delay": 0.5
    }))
    .unwrap();
    assert!(problems.warnings.is_empty(), "{problems:?}");
    let mut connector = Connector::start_with(config).await.unwrap();

    let http = reqwest::Client::new();
    let mut sent = Vec::new();
    for i in 0..5 {
        let body = json!({"order": i, "note": "grüß"});
        let resp = http
            .post(format!("{}/webhook/orders", relay.base))
            .header("content-type", "application/json")
            .header("x-trace", format!("t{i}"))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        sent.push(body);
    }
    let stats = queue_settled(&http, &relay).await;
    assert_eq!(stats["messages_queued"], 0, "{stats}");
    assert_eq!(stats["messages_in_flight"], 0, "{stats}");

    let mut written: Vec<Value> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let id = v["message_id"].as_str().unwrap().to_owned();
            assert_eq!(
                path.file_name().unwrap().to_str().unwrap(),
                format!("{id}.json")
            );
            assert_eq!(v["webhook_id"], "orders");
            v
        })
        .collect();
    assert_eq!(
        written.len(),
        5,
        "one file per message, every message acked after its file"
    );
    written.sort_by_key(|v| v["payload"]["order"].as_i64());
    for (i, v) in written.iter().enumerate() {
        assert_eq!(v["payload"], sent[i]);
        assert_eq!(v["headers"]["x-trace"], format!("t{i}"));
    }
    assert_eq!(
        connector.stop().await,
        Some(webhook_connector::RunOutcome::Shutdown)
    );
    relay.stop().await.unwrap();
}
