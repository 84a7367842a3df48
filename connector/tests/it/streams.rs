//! Scripted-peer tests; end-to-end tests against the real relay live in tests/ and come with the
//! relay.
//!
//! Each test starts the real connector in-process against a small relay peer that speaks the
//! wire protocol exactly as `docs/reference/wire-protocol.md` specifies, frame for frame from its examples, and
//! a real local HTTP target.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use webhook_connector::RunOutcome;
use webhook_connector::config::{Protocol, TokenSource};
use webhook_connector::health::ConnState;

use crate::support::{
    AckSeen, Peer, Target, accept_ws, connected_frame, connected_frame_v1, connector_config,
    eventually, handle_http_ack, respond, start_sse, webhook_frame,
};

const LONG: Duration = Duration::from_secs(20);

/// What the WebSocket peer observed.
#[derive(Default)]
struct WsLog {
    frames: Mutex<Vec<serde_json::Value>>,
    close_codes: Mutex<Vec<u16>>,
    connections: AtomicUsize,
    auth: Mutex<Vec<String>>,
    protocol_headers: Mutex<Vec<Option<String>>>,
    max_in_flight: Mutex<Vec<Option<String>>>,
}

impl WsLog {
    fn acks(&self) -> Vec<serde_json::Value> {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f["type"] == "ack" || f["type"] == "nack")
            .cloned()
            .collect()
    }

    fn count(&self, kind: &str) -> usize {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f["type"] == kind)
            .count()
    }
}

/// A WebSocket relay peer: on every connection sends `connected` then `script`, then keeps
/// reading and logging client frames.
async fn ws_peer(log: Arc<WsLog>, v2: bool, script: Vec<String>) -> Peer {
    let script = Arc::new(script);
    Peer::start(move |stream, req| {
        let log = log.clone();
        let script = script.clone();
        async move {
            let n = log.connections.fetch_add(1, Ordering::SeqCst);
            log.auth
                .lock()
                .unwrap()
                .push(req.header("authorization").unwrap_or("").to_owned());
            log.protocol_headers
                .lock()
                .unwrap()
                .push(req.header("x-webhook-connect-protocol").map(str::to_owned));
            log.max_in_flight.lock().unwrap().push(
                req.header("x-webhook-connect-max-in-flight")
                    .map(str::to_owned),
            );
            let mut ws = accept_ws(stream, &req, v2).await;
            let connected = if v2 {
                connected_frame(&format!("wsc_{n:032x}"), 20)
            } else {
                connected_frame_v1(&format!("wsc_{n:032x}"))
            };
            ws.send(Message::Text(connected.into())).await.unwrap();
            for frame in script.iter() {
                if ws.send(Message::Text(frame.clone().into())).await.is_err() {
                    return;
                }
            }
            while let Some(Ok(m)) = ws.next().await {
                match m {
                    Message::Text(t) => {
                        if let Ok(v) = serde_json::from_str(&t) {
                            log.frames.lock().unwrap().push(v);
                        }
                    }
                    Message::Close(f) => {
                        log.close_codes
                            .lock()
                            .unwrap()
                            .push(f.map(|f| u16::from(f.code)).unwrap_or(1005));
                        let _ = ws.close(None).await;
                        return;
                    }
                    _ => {}
                }
            }
        }
    })
    .await
}

#[tokio::test]
async fn websocket_v2_delivers_exact_body_and_acks_with_a_frame() {
    let target = Target::start().await;
    let log = Arc::new(WsLog::default());
    let body = "{\"id\":\"t1\", \"name\":\"Grüße\"}".as_bytes();
    let peer = ws_peer(
        log.clone(),
        true,
        vec![webhook_frame(
            "msg_0190f7c2a1b34c5d8e9f0a1b2c3d4e5f",
            42,
            body,
            "application/json; charset=utf-8",
        )],
    )
    .await;
    let mut config = connector_config(peer.addr, &target.url("/hook"));
    config.channels[0].protocol = Protocol::WebSocket;
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(eventually(LONG, || !log.acks().is_empty()).await);
    let acks = log.acks();
    assert_eq!(acks[0]["type"], "ack");
    assert_eq!(
        acks[0]["message_id"],
        "msg_0190f7c2a1b34c5d8e9f0a1b2c3d4e5f"
    );
    let seen = target.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(&seen[0].body[..], body);
    assert_eq!(seen[0].headers["x-shopify-hmac-sha256"], "k3bq=");
    assert_eq!(
        seen[0].headers["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(seen[0].headers["x-webhook-sequence"], "42");
    // Negotiation headers (B.1): v2 asked for, in-flight limit = 2 × max_concurrent_requests.
    assert_eq!(
        log.protocol_headers.lock().unwrap()[0].as_deref(),
        Some("2")
    );
    assert_eq!(log.max_in_flight.lock().unwrap()[0].as_deref(), Some("20"));
    assert_eq!(log.auth.lock().unwrap()[0], "Bearer ch_tok_test");
    assert_eq!(handle.states[0].state(), ConnState::Connected);
    shutdown.cancel();
    assert_eq!(handle.wait().await, RunOutcome::Shutdown);
}

#[tokio::test]
async fn websocket_heartbeat_is_echoed() {
    let target = Target::start().await;
    let log = Arc::new(WsLog::default());
    let peer = ws_peer(
        log.clone(),
        false,
        vec![r#"{"type":"heartbeat","timestamp":"2026-03-14T09:27:23.590010+00:00","server_time":"2026-03-14T09:27:23.590010+00:00"}"#.to_owned()],
    )
    .await;
    let mut config = connector_config(peer.addr, &target.url("/hook"));
    config.channels[0].protocol = Protocol::WebSocket;
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(eventually(LONG, || log.count("heartbeat") == 1).await);
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test]
async fn v1_relay_gets_v1_nacks_and_no_v2_fields_r75() {
    let target = Target::start().await;
    target.script("/hook", &[404]);
    let log = Arc::new(WsLog::default());
    let v1_webhook = r#"{"type":"webhook","message_id":"msg_0190f7c2a1b34c5d","sequence":1,"webhook_id":"shop-orders","timestamp":"2026-03-14T09:27:01+00:00","headers":{"content-type":"application/json"},"payload":[1,2]}"#;
    let peer = ws_peer(log.clone(), false, vec![v1_webhook.to_owned()]).await;
    let mut config = connector_config(peer.addr, &target.url("/hook"));
    config.channels[0].protocol = Protocol::WebSocket;
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(eventually(LONG, || !log.acks().is_empty()).await);
    let nack = &log.acks()[0];
    assert_eq!(nack["type"], "nack");
    assert_eq!(nack["retry"], false);
    assert!(nack.get("reason").is_none(), "v1 frames carry no reason");
    assert_eq!(&target.seen()[0].body[..], b"[1,2]");
    assert_eq!(target.hits("/hook"), 1);
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test]
async fn silent_stream_is_detected_as_stale_and_reopened_r79() {
    let target = Target::start().await;
    let log = Arc::new(WsLog::default());
    // v1: no heartbeat interval, so the connector's own heartbeat_timeout applies.
    let peer = ws_peer(log.clone(), false, vec![]).await;
    let mut config = connector_config(peer.addr, &target.url("/hook"));
    config.channels[0].protocol = Protocol::WebSocket;
    config.heartbeat_timeout = Duration::from_millis(300);
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    // Each silent connection is closed and reopened; the stale clock restarts on every connect,
    // so every connection gets its own full timeout.
    assert!(eventually(LONG, || log.connections.load(Ordering::SeqCst) >= 3).await);
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test]
async fn stale_channel_stays_stale_on_readyz_until_the_next_connect_r79_r85() {
    let target = Target::start().await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    // First connection: `connected`, then silence. Later attempts: 503.
    let peer = Peer::start(move |mut stream, req| {
        let a = a.clone();
        async move {
            if a.fetch_add(1, Ordering::SeqCst) == 0 {
                let mut ws = accept_ws(stream, &req, false).await;
                let _ = ws
                    .send(Message::Text(connected_frame_v1("wsc_s").into()))
                    .await;
                while let Some(Ok(_)) = ws.next().await {}
            } else {
                respond(&mut stream, 503, &[], r#"{"detail":"Service unavailable"}"#).await;
            }
        }
    })
    .await;
    let mut config = connector_config(peer.addr, &target.url("/hook"));
    config.channels[0].protocol = Protocol::WebSocket;
    config.heartbeat_timeout = Duration::from_millis(300);
    config.health_listen = Some("127.0.0.1:0".parse().unwrap());
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(eventually(LONG, || attempts.load(Ordering::SeqCst) >= 3).await);
    assert_eq!(handle.states[0].state(), ConnState::Stale);
    let url = format!("http://{}/readyz", handle.health_addr.unwrap());
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["channels"]["orders"]["state"], "stale");
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test]
async fn any_frame_counts_as_life_and_keeps_the_stream_r79() {
    let target = Target::start().await;
    let connections = Arc::new(AtomicUsize::new(0));
    let c = connections.clone();
    // A peer that sends an unknown frame type every 100 ms (never a heartbeat).
    let peer = Peer::start(move |stream, req| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            let mut ws = accept_ws(stream, &req, false).await;
            ws.send(Message::Text(connected_frame_v1("wsc_1").into()))
                .await
                .unwrap();
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if ws
                    .send(Message::Text(r#"{"type":"future_thing","x":1}"#.into()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    })
    .await;
    let mut config = connector_config(peer.addr, &target.url("/hook"));
    config.channels[0].protocol = Protocol::WebSocket;
    config.heartbeat_timeout = Duration::from_millis(1500);
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(eventually(LONG, || handle.states[0].state() == ConnState::Connected).await);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "no reconnect while frames keep coming"
    );
    shutdown.cancel();
    handle.wait().await;
}

/// A peer that refuses WebSocket with `ws_status` and serves SSE (v2) with one webhook.
async fn refusing_ws_peer(
    ws_status: u16,
    sse_hits: Arc<AtomicUsize>,
    acks: Arc<Mutex<Vec<AckSeen>>>,
) -> Peer {
    Peer::start(move |mut stream, req| {
        let sse_hits = sse_hits.clone();
        let acks = acks.clone();
        async move {
            let path = req.path().to_owned();
            if req.method == "POST" && path == "/connect/ack" {
                handle_http_ack(stream, &req, &acks).await;
            } else if path.ends_with("/sse") {
                sse_hits.fetch_add(1, Ordering::SeqCst);
                start_sse(&mut stream, true).await;
                let connected = connected_frame("sse_0c5d7e2f9a8b4c6d1e3f5a7b9c0d2e4f", 20);
                let hook = webhook_frame("msg_sse_1", 1, b"{\"a\":1}", "application/json");
                let text = format!(
                    "retry: 2000\n\nevent: connected\ndata: {connected}\n\nid: msg_sse_1\nevent: webhook\ndata: {hook}\n\n"
                );
                let _ = stream.write_all(text.as_bytes()).await;
                // Keep the stream open with comments.
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if stream.write_all(b": keep-alive\n\n").await.is_err() {
                        return;
                    }
                }
            } else if path.starts_with("/connect/stream/") {
                let body = if ws_status == 401 {
                    r#"{"detail":"Invalid channel token"}"#
                } else {
                    r#"{"detail":"Not Found"}"#
                };
                respond(&mut stream, ws_status, &[("content-type", "application/json")], body).await;
            } else {
                respond(&mut stream, 404, &[], "").await;
            }
        }
    })
    .await
}

#[tokio::test]
async fn auto_falls_back_to_sse_when_the_upgrade_is_refused_r87() {
    for status in [404, 200] {
        let target = Target::start().await;
        let sse_hits = Arc::new(AtomicUsize::new(0));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let peer = refusing_ws_peer(status, sse_hits.clone(), acks.clone()).await;
        let config = connector_config(peer.addr, &target.url("/hook"));
        assert_eq!(config.channels[0].protocol, Protocol::Auto);
        let shutdown = CancellationToken::new();
        let handle = webhook_connector::start(config, shutdown.clone())
            .await
            .unwrap();
        assert!(
            eventually(LONG, || !acks.lock().unwrap().is_empty()).await,
            "status {status}: delivered over SSE"
        );
        let ack = acks.lock().unwrap()[0].clone();
        assert_eq!(ack.message_id, "msg_sse_1");
        assert_eq!(ack.status, "ack");
        assert_eq!(
            ack.connection_id.as_deref(),
            Some("sse_0c5d7e2f9a8b4c6d1e3f5a7b9c0d2e4f")
        );
        assert_eq!(target.hits("/hook"), 1);
        shutdown.cancel();
        handle.wait().await;
    }
}

#[tokio::test]
async fn auto_does_not_fall_back_on_401_and_reports_unauthorized_r87_r84() {
    let target = Target::start().await;
    let sse_hits = Arc::new(AtomicUsize::new(0));
    let acks = Arc::new(Mutex::new(Vec::new()));
    let peer = refusing_ws_peer(401, sse_hits.clone(), acks).await;
    let config = connector_config(peer.addr, &target.url("/hook"));
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(eventually(LONG, || handle.states[0].state() == ConnState::Unauthorized).await);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        sse_hits.load(Ordering::SeqCst),
        0,
        "auth failures never switch transport"
    );
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test]
async fn unauthorized_rereads_the_token_file_before_each_attempt_r84() {
    let target = Target::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_path = dir.path().join("token");
    std::fs::write(&token_path, "old-token\n").unwrap();
    let seen_auth = Arc::new(Mutex::new(Vec::<String>::new()));
    let s = seen_auth.clone();
    let peer = Peer::start(move |mut stream, req| {
        let s = s.clone();
        async move {
            let auth = req.header("authorization").unwrap_or("").to_owned();
            s.lock().unwrap().push(auth.clone());
            if auth == "Bearer new-token" {
                let mut ws = accept_ws(stream, &req, false).await;
                let _ = ws
                    .send(Message::Text(connected_frame_v1("wsc_1").into()))
                    .await;
                while let Some(Ok(_)) = ws.next().await {}
            } else {
                respond(
                    &mut stream,
                    401,
                    &[],
                    r#"{"detail":"Invalid channel token"}"#,
                )
                .await;
            }
        }
    })
    .await;
    let mut config = connector_config(peer.addr, &target.url("/hook"));
    config.channels[0].protocol = Protocol::WebSocket;
    config.channels[0].token = TokenSource::File(token_path.clone());
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(eventually(LONG, || handle.states[0].state() == ConnState::Unauthorized).await);
    std::fs::write(&token_path, "new-token\n").unwrap();
    assert!(eventually(LONG, || handle.states[0].state() == ConnState::Connected).await);
    let auth = seen_auth.lock().unwrap().clone();
    assert_eq!(auth.first().map(String::as_str), Some("Bearer old-token"));
    assert_eq!(auth.last().map(String::as_str), Some("Bearer new-token"));
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test]
async fn sse_events_split_at_awkward_chunk_boundaries_arrive_intact_r78() {
    let target = Target::start().await;
    let acks = Arc::new(Mutex::new(Vec::new()));
    let a = acks.clone();
    let body = "{\"text\":\"Grüße € 😀\"}".as_bytes().to_vec();
    let hook = webhook_frame("msg_split", 7, &body, "application/json");
    // The webhook JSON split over two `data:` lines (joined with "\n", still valid JSON), CRLF
    // and CR line ends, a comment, and the stream cut into 3-byte chunks so that multi-byte
    // characters and line ends fall across chunk boundaries.
    let (left, right) = hook.split_at(hook.find(",\"sequence\"").unwrap());
    let stream_text = format!(
        "retry: 2000\r\n\r\n: comment line\r\nevent: connected\rdata: {}\r\r: another comment\nid: msg_split\r\nevent: webhook\r\ndata: {left}\r\ndata:{right}\n\n",
        connected_frame("sse_1", 20)
    );
    let bytes = stream_text.into_bytes();
    let peer = Peer::start(move |mut stream, req| {
        let a = a.clone();
        let bytes = bytes.clone();
        async move {
            if req.method == "POST" {
                handle_http_ack(stream, &req, &a).await;
                return;
            }
            start_sse(&mut stream, true).await;
            for chunk in bytes.chunks(3) {
                if stream.write_all(chunk).await.is_err() {
                    return;
                }
                let _ = stream.flush().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if stream.write_all(b":\n").await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let mut config = connector_config(peer.addr, &target.url("/hook"));
    config.channels[0].protocol = Protocol::Sse;
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(eventually(LONG, || !acks.lock().unwrap().is_empty()).await);
    assert_eq!(acks.lock().unwrap()[0].message_id, "msg_split");
    assert_eq!(
        acks.lock().unwrap()[0].connection_id.as_deref(),
        Some("sse_1")
    );
    assert_eq!(&target.seen()[0].body[..], &body[..]);
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test]
async fn long_poll_v2_delivers_and_acks_with_the_session_id() {
    let target = Target::start().await;
    let acks = Arc::new(Mutex::new(Vec::new()));
    let polls = Arc::new(AtomicUsize::new(0));
    let (a, p) = (acks.clone(), polls.clone());
    let peer = Peer::start(move |mut stream, req| {
        let (a, p) = (a.clone(), p.clone());
        async move {
            if req.method == "POST" {
                handle_http_ack(stream, &req, &a).await;
                return;
            }
            assert!(req.path().ends_with("/poll"));
            let n = p.fetch_add(1, Ordering::SeqCst);
            if n == 0 {
                let m1 = webhook_frame("msg_p1", 42, b"{\"id\":\"t1\"}", "application/json");
                let m2 = webhook_frame("msg_p2", 43, b"{\"id\":\"t2\"}", "application/json");
                let body = format!(
                    r#"{{"messages":[{m1},{m2}],"connection_id":"poll_9b8a7c6d5e4f40312a1b0c9d8e7f6a5b","channel":"orders","timestamp":"2026-03-14T09:27:01.171802+00:00","protocol":2,"ack_timeout_ms":30000,"more":false}}"#
                );
                respond(
                    &mut stream,
                    200,
                    &[("content-type", "application/json"), ("x-webhook-connect-protocol", "2")],
                    &body,
                )
                .await;
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                respond(
                    &mut stream,
                    204,
                    &[("x-webhook-connect-protocol", "2"), ("x-connection-id", "poll_9b8a7c6d5e4f40312a1b0c9d8e7f6a5b")],
                    "",
                )
                .await;
            }
        }
    })
    .await;
    let mut config = connector_config(peer.addr, &target.url("/hook"));
    config.channels[0].protocol = Protocol::LongPoll;
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(eventually(LONG, || acks.lock().unwrap().len() == 2).await);
    for ack in acks.lock().unwrap().iter() {
        assert_eq!(ack.status, "ack");
        assert_eq!(
            ack.connection_id.as_deref(),
            Some("poll_9b8a7c6d5e4f40312a1b0c9d8e7f6a5b")
        );
    }
    assert_eq!(target.hits("/hook"), 2);
    shutdown.cancel();
    assert_eq!(handle.wait().await, RunOutcome::Shutdown);
}

#[tokio::test]
async fn shutdown_drains_in_flight_messages_then_closes_with_1000_r81() {
    let target = Target::start().await;
    target.set_delay(Duration::from_millis(700));
    let log = Arc::new(WsLog::default());
    let frames: Vec<String> = (0..5)
        .map(|i| webhook_frame(&format!("msg_d{i}"), i + 1, b"{}", "application/json"))
        .collect();
    let peer = ws_peer(log.clone(), true, frames).await;
    let mut config = connector_config(peer.addr, &target.url("/hook"));
    config.channels[0].protocol = Protocol::WebSocket;
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    // All five are in progress at the target when the shutdown starts.
    assert!(eventually(LONG, || target.hits("/hook") == 5).await);
    shutdown.cancel();
    assert_eq!(handle.wait().await, RunOutcome::Shutdown);
    let acks = log.acks();
    assert_eq!(
        acks.len(),
        5,
        "every in-flight message is acked before the close"
    );
    assert!(acks.iter().all(|a| a["type"] == "ack"));
    assert!(
        eventually(Duration::from_secs(5), || !log
            .close_codes
            .lock()
            .unwrap()
            .is_empty())
        .await
    );
    assert_eq!(log.close_codes.lock().unwrap()[0], 1000);
    assert_eq!(target.hits("/hook"), 5, "no new message started");
}

#[tokio::test]
async fn slow_delivery_over_v2_extends_the_lease_with_touch() {
    let target = Target::start().await;
    target.set_delay(Duration::from_millis(1500));
    let log = Arc::new(WsLog::default());
    let lease = webhook_connect_protocol::Timestamp::now().plus_millis(1000);
    let frame = webhook_frame("msg_slow", 1, b"{}", "application/json")
        .replace("2026-03-14T09:27:31.010204+00:00", &lease.to_string());
    let peer = ws_peer(log.clone(), true, vec![frame]).await;
    let mut config = connector_config(peer.addr, &target.url("/hook"));
    config.channels[0].protocol = Protocol::WebSocket;
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(eventually(LONG, || !log.acks().is_empty()).await);
    let frames = log.frames.lock().unwrap().clone();
    let touch = frames.iter().position(|f| f["type"] == "touch");
    let ack = frames.iter().position(|f| f["type"] == "ack");
    assert!(
        touch.is_some() && touch < ack,
        "a touch precedes the ack: {frames:?}"
    );
    assert_eq!(frames[touch.unwrap()]["message_id"], "msg_slow");
    shutdown.cancel();
    handle.wait().await;
}

/// A minimal HTTP CONNECT proxy that counts tunnels.
async fn connect_proxy(tunnels: Arc<AtomicUsize>) -> std::net::SocketAddr {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let tunnels = tunnels.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let mut parts = head.split_whitespace();
                let (Some("CONNECT"), Some(dest)) = (parts.next(), parts.next()) else {
                    let _ = client
                        .write_all(b"HTTP/1.1 405 No\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(dest).await else {
                    let _ = client
                        .write_all(b"HTTP/1.1 502 Bad\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                };
                tunnels.fetch_add(1, Ordering::SeqCst);
                let _ = client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn websocket_goes_through_the_configured_http_proxy() {
    let target = Target::start().await;
    let log = Arc::new(WsLog::default());
    let peer = ws_peer(
        log.clone(),
        true,
        vec![webhook_frame("msg_proxied", 1, b"{}", "application/json")],
    )
    .await;
    let tunnels = Arc::new(AtomicUsize::new(0));
    let proxy = connect_proxy(tunnels.clone()).await;
    let mut config = connector_config(peer.addr, &target.url("/hook"));
    config.channels[0].protocol = Protocol::WebSocket;
    // The relay is reached by name through the proxy; the local target (127.0.0.1) is listed
    // in no_proxy, as the spec expects for local targets.
    config.cloud_url = format!("http://localhost:{}", peer.addr.port());
    config.proxy = Some(format!("http://{proxy}"));
    config.no_proxy = vec!["127.0.0.1".into()];
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(eventually(LONG, || !log.acks().is_empty()).await);
    assert_eq!(tunnels.load(Ordering::SeqCst), 1);
    assert_eq!(target.hits("/hook"), 1);
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test]
async fn ack_is_sent_again_when_the_relay_answers_error_in_ack_result() {
    let target = Target::start().await;
    let acks = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let a = acks.clone();
    let peer = Peer::start(move |stream, req| {
        let a = a.clone();
        async move {
            let mut ws = accept_ws(stream, &req, true).await;
            let _ = ws.send(Message::Text(connected_frame("wsc_r", 20).into())).await;
            let hook = webhook_frame("msg_retry", 1, b"{}", "application/json");
            let _ = ws.send(Message::Text(hook.into())).await;
            while let Some(Ok(Message::Text(t))) = ws.next().await {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["type"] != "ack" {
                    continue;
                }
                let n = {
                    let mut acks = a.lock().unwrap();
                    acks.push(v.clone());
                    acks.len()
                };
                // First answer: the buffer failed. Second: done.
                let (status, outcome) = if n == 1 { ("error", "") } else { ("ok", r#","outcome":"acked""#) };
                let result = format!(
                    r#"{{"type":"ack_result","ref":{},"results":[{{"message_id":"msg_retry","status":"{status}"{outcome}}}]}}"#,
                    v["ref"]
                );
                let _ = ws.send(Message::Text(result.into())).await;
            }
        }
    })
    .await;
    let mut config = connector_config(peer.addr, &target.url("/hook"));
    config.channels[0].protocol = Protocol::WebSocket;
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(eventually(LONG, || acks.lock().unwrap().len() == 2).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let acks = acks.lock().unwrap().clone();
    assert_eq!(
        acks.len(),
        2,
        "sent once more after the error, not again after ok"
    );
    assert!(acks.iter().all(|a| a["message_id"] == "msg_retry"));
    assert_ne!(acks[0]["ref"], acks[1]["ref"]);
    assert_eq!(target.hits("/hook"), 1);
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test]
async fn v1_sse_relay_gets_query_form_acks_and_nacks() {
    let target = Target::start().await;
    target.script("/hook", &[400]);
    let acks = Arc::new(Mutex::new(Vec::new()));
    let a = acks.clone();
    let peer = Peer::start(move |mut stream, req| {
        let a = a.clone();
        async move {
            if req.method == "POST" {
                assert!(req.header("x-webhook-connect-protocol").is_some(), "v2 is still asked for");
                handle_http_ack(stream, &req, &a).await;
                return;
            }
            start_sse(&mut stream, false).await;
            // The v1 event forms of A.2.2.
            let v1 = |id: &str| format!(
                r#"{{"type":"webhook","message_id":"{id}","sequence":1,"webhook_id":"shop-orders","timestamp":"2026-03-14T09:27:01.004512+00:00","headers":{{"content-type":"application/json"}},"payload":{{"id":"t1"}}}}"#
            );
            let text = format!(
                "event: connected\ndata: {{\"connection_id\":\"sse_v1\",\"channel\":\"orders\"}}\n\nevent: webhook\ndata: {}\n\nevent: webhook\ndata: {}\n\nevent: heartbeat\ndata: {{\"timestamp\":\"2026-03-14T09:27:31.004990+00:00\"}}\n\n",
                v1("msg_v1a"),
                v1("msg_v1b")
            );
            let _ = stream.write_all(text.as_bytes()).await;
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if stream.write_all(b": ping\n\n").await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let mut config = connector_config(peer.addr, &target.url("/hook"));
    config.channels[0].protocol = Protocol::Sse;
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(eventually(LONG, || acks.lock().unwrap().len() == 2).await);
    let mut acks = acks.lock().unwrap().clone();
    acks.sort_by(|x, y| x.status.cmp(&y.status));
    assert_eq!(acks[0].status, "ack");
    assert_eq!(acks[1].status, "nack");
    assert_eq!(acks[1].retry, Some(false));
    assert!(
        acks.iter()
            .all(|a| a.connection_id.as_deref() == Some("sse_v1"))
    );
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test]
async fn unfinished_work_is_nacked_with_retry_when_the_drain_timeout_ends_r81() {
    let target = Target::start().await;
    target.set_delay(Duration::from_secs(5));
    let log = Arc::new(WsLog::default());
    let peer = ws_peer(
        log.clone(),
        true,
        vec![webhook_frame(
            "msg_slow_drain",
            1,
            b"{}",
            "application/json",
        )],
    )
    .await;
    let mut config = connector_config(peer.addr, &target.url("/hook"));
    config.channels[0].protocol = Protocol::WebSocket;
    config.drain_timeout = Duration::from_millis(300);
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(eventually(LONG, || target.hits("/hook") == 1).await);
    shutdown.cancel();
    assert_eq!(
        tokio::time::timeout(LONG, handle.wait()).await.unwrap(),
        RunOutcome::Shutdown
    );
    let acks = log.acks();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0]["type"], "nack");
    assert_eq!(acks[0]["retry"], true);
    assert!(
        eventually(Duration::from_secs(5), || !log
            .close_codes
            .lock()
            .unwrap()
            .is_empty())
        .await
    );
    assert_eq!(log.close_codes.lock().unwrap()[0], 1000);
}

#[tokio::test]
async fn token_invalid_close_is_counted_and_reconnects_after_the_maximum_delay() {
    let target = Target::start().await;
    let connections = Arc::new(AtomicUsize::new(0));
    let c = connections.clone();
    let peer = Peer::start(move |stream, req| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            let mut ws = accept_ws(stream, &req, true).await;
            let _ = ws.send(Message::Text(connected_frame("wsc_t", 20).into())).await;
            let notice = r#"{"type":"close","code":4001,"reason":"token_invalid","message":"Token no longer valid","reconnect":false}"#;
            let _ = ws.send(Message::Text(notice.into())).await;
            let _ = ws
                .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code: 4001.into(),
                    reason: "token_invalid".into(),
                }))
                .await;
        }
    })
    .await;
    let mut config = connector_config(peer.addr, &target.url("/hook"));
    config.channels[0].protocol = Protocol::WebSocket;
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(eventually(LONG, || connections.load(Ordering::SeqCst) >= 2).await);
    let metrics = webhook_connector::health::metrics_text(&handle.states);
    assert!(
        metrics.contains(
            "webhook_connector_reconnects_total{channel=\"orders\",reason=\"token_invalid\"}"
        ),
        "{metrics}"
    );
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test]
async fn protocol_version_1_asks_for_no_v2() {
    let target = Target::start().await;
    let log = Arc::new(WsLog::default());
    let peer = ws_peer(log.clone(), true, vec![]).await;
    let mut config = connector_config(peer.addr, &target.url("/hook"));
    config.channels[0].protocol = Protocol::WebSocket;
    config.channels[0].protocol_version = webhook_connector::config::VersionPreference::V1;
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(eventually(LONG, || handle.states[0].state() == ConnState::Connected).await);
    assert_eq!(log.protocol_headers.lock().unwrap()[0], None);
    shutdown.cancel();
    handle.wait().await;
}
