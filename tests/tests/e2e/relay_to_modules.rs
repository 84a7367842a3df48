//! Module mode end to end: webhooks posted to the relay reach `save_to_disk`, and PostgreSQL and
//! Redis through a two-module chain, via the connector's module pipeline, and are acked (the
//! relay's queue empties) only after they were written.

use std::time::Duration;

use serde_json::{Value, json};
use webhook_connect_tests::stack::{Connector, Relay, TempDir, relay_toml};

const TOKEN: &str = "e2e-modules-token-0123456789";

async fn queue_settled(http: &reqwest::Client, relay: &Relay) -> Value {
    queue_settled_on(http, relay, "files").await
}

async fn queue_settled_on(http: &reqwest::Client, relay: &Relay, channel: &str) -> Value {
    let mut stats = Value::Null;
    for _ in 0..100 {
        let status: Value = http
            .get(format!("{}/connect/status/{channel}", relay.base))
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

fn postgres_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

/// Drops the test's tables however the test ends.
struct DropTables(Vec<String>);

impl Drop for DropTables {
    fn drop(&mut self) {
        let tables = std::mem::take(&mut self.0);
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&postgres_url()).await {
                    for t in tables {
                        let _ = sqlx::query(&format!("DROP TABLE IF EXISTS \"{t}\""))
                            .execute(&pool)
                            .await;
                    }
                }
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_reaches_postgresql_and_redis_through_a_two_module_chain_and_is_acked_r103() {
    use futures_util::StreamExt;
    use sqlx::Row;

    let tag = format!("{:08x}", rand::random::<u32>());
    let orders_table = format!("wc_e2e_orders_{tag}");
    let audit_table = format!("wc_e2e_audit_{tag}");
    let _tables = DropTables(vec![orders_table.clone(), audit_table.clone()]);
    let events = format!("wc_e2e_events_{tag}");
    let dir = TempDir::new("chain").unwrap();
    let channels = format!(
        "[[channels]]\nname = \"shop\"\ntoken = \"{TOKEN}\"\n[channels.webhooks.orders]\n[channels.webhooks.audit]\n"
    );
    let mut relay = Relay::start(&dir.0, &relay_toml(&dir.0, &channels), "127.0.0.1:0")
        .await
        .unwrap();
    let webhooks = dir.0.join("webhooks.json");
    let connections = dir.0.join("connections.json");
    std::fs::write(
        &connections,
        json!({
            "db": {"type": "postgresql", "connection_string": postgres_url()},
            "cache": {"type": "redis", "url": redis_url()},
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        &webhooks,
        json!({
            // Two modules in order, each on its own connection; stop at the first failure.
            "orders": {
                "chain": [
                    {"module": "postgresql", "connection": "db",
                     "module-config": {"table": orders_table}},
                    {"module": "redis_publish", "connection": "cache",
                     "module-config": {"channel": events}},
                ],
                "chain-config": {"execution": "sequential", "continue_on_error": false},
            },
            // string items inherit the webhook-level connection and module-config.
            "audit": {
                "connection": "db",
                "module-config": {"table": audit_table},
                "chain": ["log", "postgresql"],
            },
        })
        .to_string(),
    )
    .unwrap();
    let redis = redis::Client::open(redis_url()).unwrap();
    let mut pubsub = redis.get_async_pubsub().await.unwrap();
    pubsub.subscribe(&events).await.unwrap();
    let (config, problems) = webhook_connector::config::load_from_value(json!({
        "cloud_url": relay.base, "channel": "shop", "token": TOKEN, "protocol": "websocket",
        "webhooks_config": webhooks.to_str().unwrap(),
        "connections_config": connections.to_str().unwrap(),
        "reconnect_delay": 0.1, "max_reconnect_delay": 0.5
    }))
    .unwrap();
    assert!(problems.errors.is_empty(), "{problems:?}");
    let mut connector = Connector::start_with(config).await.unwrap();

    let http = reqwest::Client::new();
    for (webhook, n) in [("orders", 3), ("audit", 2)] {
        for i in 0..n {
            let resp = http
                .post(format!("{}/webhook/{webhook}", relay.base))
                .header("content-type", "application/json")
                .body(json!({"webhook": webhook, "n": i}).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 200);
        }
    }
    let stats = queue_settled_on(&http, &relay, "shop").await;
    assert_eq!(stats["messages_queued"], 0, "{stats}");
    assert_eq!(stats["messages_in_flight"], 0, "all acked: {stats}");

    let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    let rows_of = |table: String| {
        let pool = pool.clone();
        async move {
            let mut rows: Vec<Value> =
                sqlx::query(&format!("SELECT payload::text AS payload FROM \"{table}\""))
                    .fetch_all(&pool)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| serde_json::from_str(&r.get::<String, _>("payload")).unwrap())
                    .collect();
            rows.sort_by_key(|v| v["n"].as_i64());
            rows
        }
    };
    let orders = rows_of(orders_table.clone()).await;
    assert_eq!(
        orders,
        (0..3)
            .map(|i| json!({"webhook": "orders", "n": i}))
            .collect::<Vec<_>>()
    );
    let audit = rows_of(audit_table.clone()).await;
    assert_eq!(
        audit,
        (0..2)
            .map(|i| json!({"webhook": "audit", "n": i}))
            .collect::<Vec<_>>(),
        "the inherited connection wrote to PostgreSQL (R-103)"
    );
    let mut published = Vec::new();
    let mut stream = pubsub.on_message();
    while published.len() < 3 {
        let msg = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("three events on Redis")
            .expect("subscription open");
        let v: Value = serde_json::from_str(&msg.get_payload::<String>().unwrap()).unwrap();
        published.push(v["payload"]["n"].as_i64().unwrap());
    }
    published.sort_unstable();
    assert_eq!(published, vec![0, 1, 2]);
    assert_eq!(
        connector.stop().await,
        Some(webhook_connector::RunOutcome::Shutdown)
    );
    relay.stop().await.unwrap();
}
