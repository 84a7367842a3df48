//! Health endpoint, stale exit and several channels (R-85, R-86). Scripted-peer tests; end-to-end
//! tests against the real relay live in tests/ and come with the relay.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use webhook_connector::RunOutcome;
use webhook_connector::config::{ChannelConfig, Protocol, TargetConfig};
use webhook_connector::health::ConnState;

use crate::support::{
    Peer, Target, accept_ws, connected_frame_v1, connector_config, eventually, respond,
    webhook_frame,
};

const LONG: Duration = Duration::from_secs(20);

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A peer that answers 503 until `open` is set, then accepts WebSocket and idles (sending a
/// heartbeat every 100 ms).
async fn gated_peer(open: Arc<AtomicUsize>) -> Peer {
    Peer::start(move |mut stream, req| {
        let open = open.clone();
        async move {
            if open.load(Ordering::SeqCst) == 0 {
                respond(&mut stream, 503, &[("retry-after", "1")], r#"{"detail":"Service unavailable"}"#).await;
                return;
            }
            let mut ws = accept_ws(stream, &req, false).await;
            let _ = ws.send(Message::Text(connected_frame_v1("wsc_h").into())).await;
            loop {
                tokio::select! {
                    m = ws.next() => if !matches!(m, Some(Ok(_))) { return },
                    () = tokio::time::sleep(Duration::from_millis(100)) => {
                        let hb = r#"{"type":"heartbeat","timestamp":"2026-03-14T09:27:23.590010+00:00","server_time":"2026-03-14T09:27:23.590010+00:00"}"#;
                        if ws.send(Message::Text(hb.into())).await.is_err() { return; }
                    }
                }
            }
        }
    })
    .await
}

#[tokio::test]
async fn readyz_is_503_while_disconnected_and_200_once_connected_r85() {
    let target = Target::start().await;
    let open = Arc::new(AtomicUsize::new(0));
    let peer = gated_peer(open.clone()).await;
    let mut config = connector_config(peer.addr, &target.url("/hook"));
    config.channels[0].protocol = Protocol::WebSocket;
    config.health_listen = Some("127.0.0.1:0".parse().unwrap());
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    let base = format!("http://{}", handle.health_addr.unwrap());
    let (status, body) = get(&format!("{base}/healthz")).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 503);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "not_ready");
    assert_ne!(v["channels"]["orders"]["state"], "connected");
    open.store(1, Ordering::SeqCst);
    assert!(eventually(LONG, || handle.states[0].state() == ConnState::Connected).await);
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["channels"]["orders"]["state"], "connected");
    assert_eq!(v["channels"]["orders"]["protocol"], "websocket");
    assert_eq!(v["channels"]["orders"]["protocol_version"], 1);
    assert_eq!(v["channels"]["orders"]["connection_id"], "wsc_h");
    let (status, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("webhook_connector_stream_stale{channel=\"orders\"} 0"));
    assert!(metrics.contains(
        "webhook_connector_reconnects_total{channel=\"orders\",reason=\"connect_failed\"}"
    ));
    shutdown.cancel();
    assert_eq!(handle.wait().await, RunOutcome::Shutdown);
}

#[tokio::test]
async fn exit_on_stale_seconds_ends_with_status_3_r85() {
    let target = Target::start().await;
    let peer = gated_peer(Arc::new(AtomicUsize::new(0))).await;
    let mut config = connector_config(peer.addr, &target.url("/hook"));
    config.channels[0].protocol = Protocol::WebSocket;
    config.exit_on_stale = Some(Duration::from_millis(500));
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    let outcome = tokio::time::timeout(LONG, handle.wait()).await.unwrap();
    assert_eq!(outcome, RunOutcome::StaleExit);
    assert_eq!(outcome.exit_code(), 3);
}

#[tokio::test]
async fn two_channels_are_served_with_their_own_health_r86() {
    let target = Target::start().await;
    let peer = Peer::start(|stream, req| async move {
        let channel = req.path().rsplit('/').next().unwrap_or("").to_owned();
        let mut ws = accept_ws(stream, &req, false).await;
        let _ = ws
            .send(Message::Text(
                connected_frame_v1(&format!("wsc_{channel}")).into(),
            ))
            .await;
        let hook = webhook_frame(&format!("msg_{channel}"), 1, b"{}", "application/json");
        let _ = ws.send(Message::Text(hook.into())).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    let mut config = connector_config(peer.addr, &target.url("/a"));
    config.channels[0].protocol = Protocol::WebSocket;
    let mut second = ChannelConfig::new("payments", "tok2");
    second.protocol = Protocol::WebSocket;
    second.default_target = Some(TargetConfig::new(target.url("/b")));
    config.channels.push(second);
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(eventually(LONG, || target.hits("/a") == 1 && target.hits("/b") == 1).await);
    assert_eq!(handle.states.len(), 2);
    assert_eq!(handle.states[1].channel, "payments");
    assert!(
        eventually(LONG, || handle
            .states
            .iter()
            .all(|s| s.state() == ConnState::Connected))
        .await
    );
    shutdown.cancel();
    handle.wait().await;
}
