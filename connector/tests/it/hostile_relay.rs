//! A hostile relay on a real socket (issue 17, item 5): one SSE event that never ends, and
//! long-poll responses larger than the message limit. With `max_message_size` set to 4 MiB, one
//! frame may hold 3 × 4 MiB + 64 KiB (docs/reference/wire-protocol.md A.5); the connector drops
//! the connection once the event passes a frame + 64 KiB framing, or the poll response passes a
//! frame per message asked for + 64 KiB, counts it as `reconnects_total{reason="too_large"}`,
//! reconnects, and a normal stream then works (R-88).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use webhook_connector::config::Protocol;

use crate::support::{
    Peer, Target, connected_frame, connector_config, eventually, handle_http_ack, respond,
    start_sse, webhook_frame,
};

/// The connector's `max_message_size` in these tests.
const MAX_MESSAGE_SIZE: u64 = 4 * 1024 * 1024;
/// Its frame limit: 3 × `max_message_size` + 64 KiB.
const FRAME: u64 = 3 * MAX_MESSAGE_SIZE + 64 * 1024;
/// Its limit for one SSE event, and a poll's on top of its frames: 64 KiB of framing.
const LIMIT: u64 = FRAME + 64 * 1024;
/// What the kernel may hold in socket buffers between the two ends when the connector lets go.
const SOCKET_SLACK: u64 = 32 * 1024 * 1024;
/// The fake stops writing here, well past every bound asserted below (the poll asks for two
/// frames), so a connector without the bound fails the test rather than the machine.
const CAP: u64 = 2 * (2 * LIMIT + SOCKET_SLACK);
const LONG: Duration = Duration::from_secs(60);

fn too_large_count(handle: &webhook_connector::ConnectorHandle) -> u64 {
    let text = webhook_connector::health::metrics_text(&handle.states);
    text.lines()
        .find(|l| l.contains("reconnects_total") && l.contains("reason=\"too_large\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Writes `data:` lines of 1 MiB of one event that never ends, until the connector lets go or
/// [`CAP`] is reached; returns the bytes written.
async fn endless_event(stream: &mut tokio::net::TcpStream) -> u64 {
    let line = format!("data: {}\n", "a".repeat(1024 * 1024));
    let mut written = 0u64;
    if stream.write_all(b"event: webhook\n").await.is_err() {
        return written;
    }
    while written < CAP {
        if stream.write_all(line.as_bytes()).await.is_err() {
            return written;
        }
        written += line.len() as u64;
    }
    // Unbounded at the connector: hold the socket so no reconnect happens.
    tokio::time::sleep(LONG * 2).await;
    written
}

#[tokio::test]
async fn sse_event_larger_than_the_message_limit_drops_the_connection_and_reconnects() {
    let target = Target::start().await;
    let acks = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let first_written = Arc::new(AtomicU64::new(0));
    let (a, n, w) = (acks.clone(), connections.clone(), first_written.clone());
    let peer = Peer::start(move |mut stream, req| {
        let (a, n, w) = (a.clone(), n.clone(), w.clone());
        async move {
            if req.method == "POST" {
                handle_http_ack(stream, &req, &a).await;
                return;
            }
            let i = n.fetch_add(1, Ordering::SeqCst);
            start_sse(&mut stream, true).await;
            let connected = format!(
                "event: connected\ndata: {}\n\n",
                connected_frame(&format!("sse_{i}"), 20)
            );
            if stream.write_all(connected.as_bytes()).await.is_err() {
                return;
            }
            if i == 0 {
                w.store(endless_event(&mut stream).await, Ordering::SeqCst);
                return;
            }
            // A normal stream: one webhook, then comments as keep-alive.
            let hook = webhook_frame("msg_after", 1, b"{\"ok\":true}", "application/json");
            let event = format!("id: msg_after\nevent: webhook\ndata: {hook}\n\n");
            if stream.write_all(event.as_bytes()).await.is_err() {
                return;
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
    config.max_message_size = MAX_MESSAGE_SIZE;
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(
        eventually(LONG, || connections.load(Ordering::SeqCst) >= 2).await,
        "the connector never let go of the endless event"
    );
    assert!(eventually(LONG, || first_written.load(Ordering::SeqCst) > 0).await);
    let written = first_written.load(Ordering::SeqCst);
    assert!(
        written <= LIMIT + SOCKET_SLACK,
        "{written} bytes written before the connector dropped the stream"
    );
    assert!(eventually(LONG, || !acks.lock().unwrap().is_empty()).await);
    assert_eq!(acks.lock().unwrap()[0].message_id, "msg_after");
    assert_eq!(acks.lock().unwrap()[0].status, "ack");
    assert_eq!(target.hits("/hook"), 1);
    assert_eq!(too_large_count(&handle), 1);
    shutdown.cancel();
    handle.wait().await;
}

#[tokio::test]
async fn long_poll_response_larger_than_the_message_limit_is_dropped_and_polling_goes_on() {
    let target = Target::start().await;
    let acks = Arc::new(Mutex::new(Vec::new()));
    let polls = Arc::new(AtomicUsize::new(0));
    let endless_written = Arc::new(AtomicU64::new(0));
    let endless_asked = Arc::new(AtomicU64::new(0));
    let (a, p, w, m) = (
        acks.clone(),
        polls.clone(),
        endless_written.clone(),
        endless_asked.clone(),
    );
    let session = "poll_9b8a7c6d5e4f40312a1b0c9d8e7f6a5b";
    let peer = Peer::start(move |mut stream, req| {
        let (a, p, w, m) = (a.clone(), p.clone(), w.clone(), m.clone());
        async move {
            if req.method == "POST" {
                handle_http_ack(stream, &req, &a).await;
                return;
            }
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-webhook-connect-protocol: 2\r\nconnection: close\r\n";
            match p.fetch_add(1, Ordering::SeqCst) {
                // Declares a body far over the limit: refused before reading it.
                0 => {
                    let out = format!("{head}content-length: 10737418240\r\n\r\n{{\"messages\":[");
                    let _ = stream.write_all(out.as_bytes()).await;
                    tokio::time::sleep(LONG * 2).await;
                }
                // No length, a body that never ends (read until close).
                1 => {
                    let asked = req.query("max_messages").and_then(|n| n.parse().ok());
                    m.store(asked.unwrap_or(0), Ordering::SeqCst);
                    let out = format!("{head}\r\n{{\"messages\":[{{\"payload\":\"");
                    if stream.write_all(out.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = vec![b'a'; 1024 * 1024];
                    let mut written = 0u64;
                    while written < CAP {
                        if stream.write_all(&chunk).await.is_err() {
                            break;
                        }
                        written += chunk.len() as u64;
                    }
                    w.store(written, Ordering::SeqCst);
                    if written >= CAP {
                        tokio::time::sleep(LONG * 2).await;
                    }
                }
                2 => {
                    let m = webhook_frame("msg_poll", 42, b"{\"id\":\"t1\"}", "application/json");
                    let body = format!(
                        r#"{{"messages":[{m}],"connection_id":"{session}","channel":"orders","timestamp":"2026-03-14T09:27:01.171802+00:00"}}"#
                    );
                    respond(
                        &mut stream,
                        200,
                        &[("content-type", "application/json"), ("x-webhook-connect-protocol", "2")],
                        &body,
                    )
                    .await;
                }
                _ => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    respond(
                        &mut stream,
                        204,
                        &[("x-webhook-connect-protocol", "2"), ("x-connection-id", session)],
                        "",
                    )
                    .await;
                }
            }
        }
    })
    .await;
    let mut config = connector_config(peer.addr, &target.url("/hook"));
    config.channels[0].protocol = Protocol::LongPoll;
    config.channels[0].max_concurrent_requests = 1;
    config.max_message_size = MAX_MESSAGE_SIZE;
    let shutdown = CancellationToken::new();
    let handle = webhook_connector::start(config, shutdown.clone())
        .await
        .unwrap();
    assert!(eventually(LONG, || !acks.lock().unwrap().is_empty()).await);
    assert_eq!(acks.lock().unwrap()[0].message_id, "msg_poll");
    assert_eq!(
        acks.lock().unwrap()[0].connection_id.as_deref(),
        Some(session)
    );
    assert!(eventually(LONG, || endless_written.load(Ordering::SeqCst) > 0).await);
    let written = endless_written.load(Ordering::SeqCst);
    // The dispatcher holds up to 2 × max_concurrent_requests messages (R-88), so the poll asks
    // for 2: its limit is 2 frames plus framing.
    let asked = endless_asked.load(Ordering::SeqCst);
    assert_eq!(asked, 2);
    assert!(
        written <= asked * FRAME + 64 * 1024 + SOCKET_SLACK,
        "{written} bytes written before the connector dropped a poll asking for {asked}"
    );
    assert_eq!(too_large_count(&handle), 2);
    assert_eq!(target.hits("/hook"), 1);
    shutdown.cancel();
    handle.wait().await;
}
