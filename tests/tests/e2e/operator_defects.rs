//! Operator-facing behaviour of relay and connector together (issue 23): the connector's proxy
//! carries the relay connection only, and a token rotated without grace is followed as soon as
//! `token_file` holds the new token instead of after `max_reconnect_delay`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use webhook_connect_tests::sink::Sink;
use webhook_connect_tests::stack::{Connector, Relay, TempDir, relay_toml};
use webhook_connector::config::{
    ChannelConfig, ConnectorConfig, Protocol, TargetConfig, TokenSource,
};

const TOKEN: &str = "operator-channel-token-0123456789";
const ADMIN: &str = "operator-admin-token-0123456789";

fn channel() -> String {
    format!(
        "[admin]\ntoken = \"{ADMIN}\"\n\n[[channels]]\nname = \"hooks\"\ntoken = \"{TOKEN}\"\n\
         [channels.webhooks.plain]\n"
    )
}

async fn relay_and_sink(tag: &str) -> (TempDir, Relay, Sink) {
    let dir = TempDir::new(tag).unwrap();
    let relay = Relay::start(&dir.0, &relay_toml(&dir.0, &channel()), "127.0.0.1:0")
        .await
        .unwrap();
    let sink = Sink::start("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    (dir, relay, sink)
}

async fn post(relay: &Relay, body: &str) {
    let status = reqwest::Client::new()
        .post(format!("{}/webhook/plain", relay.base))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

/// A forward proxy that records the first line of every request and answers 502.
async fn recording_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]);
                let first = text.lines().next().unwrap_or_default().to_owned();
                record.lock().unwrap().push(first);
                let _ = stream
                    .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn the_proxy_carries_the_relay_connection_only_never_local_deliveries() {
    let (_dir, relay, sink) = relay_and_sink("proxy-scope").await;
    let (proxy, seen) = recording_proxy().await;
    // The relay is reached as `localhost`, listed in `no_proxy`; the target is 127.0.0.1, which
    // the proxy settings would cover if they applied to targets.
    let relay_url = format!("http://localhost:{}", relay.addr.port());
    let mut channel = ChannelConfig::new("hooks", TOKEN);
    channel.protocol = Protocol::Sse;
    let mut target = TargetConfig::new(sink.url());
    target.retry.max_attempts = 1;
    channel.default_target = Some(target);
    let mut config = ConnectorConfig::new(relay_url, channel);
    config.reconnect.initial = Duration::from_millis(100);
    config.reconnect.max = Duration::from_millis(500);
    config.proxy = Some(proxy);
    config.no_proxy = vec!["localhost".to_owned()];
    let mut connector = Connector::start_with(config).await.unwrap();

    post(&relay, r#"{"order": 1}"#).await;
    assert_eq!(
        sink.wait_for(1, Duration::from_secs(30)).await,
        1,
        "the delivery did not reach the target directly; the proxy saw {:?}",
        seen.lock().unwrap()
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "requests went to the proxy: {:?}",
        seen.lock().unwrap()
    );
    connector.stop().await;
}

#[tokio::test]
async fn a_token_rotated_without_grace_is_followed_once_token_file_changes() {
    let (dir, relay, sink) = relay_and_sink("token-rotation").await;
    let token_file = dir.0.join("channel.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut channel = ChannelConfig::new("hooks", "unused");
    channel.token = TokenSource::File(token_file.clone());
    channel.protocol = Protocol::WebSocket;
    channel.default_target = Some(TargetConfig::new(sink.url()));
    let mut config = ConnectorConfig::new(relay.base.clone(), channel);
    config.reconnect.initial = Duration::from_millis(100);
    // Waiting out the maximum would take minutes: the test can only pass by noticing the file.
    config.reconnect.max = Duration::from_secs(300);
    let mut connector = Connector::start_with(config).await.unwrap();

    post(&relay, r#"{"before": true}"#).await;
    assert_eq!(sink.wait_for(1, Duration::from_secs(30)).await, 1);

    let http = reqwest::Client::new();
    let rotated: serde_json::Value = http
        .post(format!(
            "{}/admin/webhook-connect/channels/hooks/rotate-token",
            relay.base
        ))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"grace_period_seconds": 0}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_token = rotated["new_token"].as_str().unwrap().to_owned();
    // Let the relay close the connection (4001) and the connector settle into its wait.
    tokio::time::sleep(Duration::from_secs(2)).await;
    std::fs::write(&token_file, format!("{new_token}\n")).unwrap();

    post(&relay, r#"{"after": true}"#).await;
    assert_eq!(
        sink.wait_for(2, Duration::from_secs(20)).await,
        2,
        "the connector did not come back with the new token from token_file"
    );
    connector.stop().await;
}
