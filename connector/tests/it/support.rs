//! Real local peers for the connector tests: an HTTP target (axum) that records every request,
//! and a scripted relay peer on raw TCP that speaks the wire protocol exactly as
//! `docs/reference/wire-protocol.md` specifies (frame for frame from the spec examples).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use webhook_connector::config::{ChannelConfig, ConnectorConfig, ReconnectPolicy, TargetConfig};

/// One request seen by the target.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
struct TargetState {
    seen: Mutex<Vec<Seen>>,
    /// Status scripts by path; the default is 200.
    scripts: Mutex<HashMap<String, VecDeque<u16>>>,
    delay: Mutex<Duration>,
}

/// A local HTTP target.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    state: Arc<TargetState>,
}

impl Target {
    pub async fn start() -> Target {
        let state = Arc::new(TargetState::default());
        let app = axum::Router::new()
            .fallback(target_handler)
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Target { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests to `path` with these statuses, then 200.
    pub fn script(&self, path: &str, statuses: &[u16]) {
        self.state
            .scripts
            .lock()
            .unwrap()
            .insert(path.to_owned(), statuses.iter().copied().collect());
    }

    /// Every answer waits this long.
    pub fn set_delay(&self, d: Duration) {
        *self.state.delay.lock().unwrap() = d;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn hits(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path == path).count()
    }
}

async fn target_handler(
    State(state): State<Arc<TargetState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let path = uri.path().to_owned();
    state.seen.lock().unwrap().push(Seen {
        method,
        path: path.clone(),
        headers,
        body,
    });
    let delay = *state.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = state
        .scripts
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(|q| q.pop_front())
        .unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

/// Polls `cond` every 10 ms until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A connector configuration for tests: short timeouts, fast reconnects.
pub fn connector_config(relay: SocketAddr, target_url: &str) -> ConnectorConfig {
    let mut channel = ChannelConfig::new("orders", "ch_tok_test");
    let mut target = TargetConfig::new(target_url);
    target.retry.delay = Duration::from_millis(10);
    target.retry.max_delay = Duration::from_millis(50);
    target.timeout = Duration::from_secs(5);
    channel.default_target = Some(target);
    let mut config = ConnectorConfig::new(format!("http://{relay}"), channel);
    config.reconnect = ReconnectPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        multiplier: 2.0,
    };
    config.connection_timeout = Duration::from_secs(3);
    config.ack_timeout = Duration::from_secs(3);
    config.drain_timeout = Duration::from_secs(5);
    config
}

// ---------------------------------------------------------------------------------------------
// Scripted relay peer.

/// A parsed HTTP request head (and body).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn query(&self, key: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key).then(|| percent_decode(v))
        })
    }
}

/// A query value: `+` is a space, then `%XX` escapes are decoded.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Reads one HTTP/1.1 request from `stream`.
pub async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.push(byte[0]);
        if buf.len() > 64 * 1024 {
            return None;
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.ok()?;
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

/// Writes a complete response with a body.
pub async fn respond(stream: &mut TcpStream, status: u16, headers: &[(&str, &str)], body: &str) {
    let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("connection: close\r\n\r\n");
    out.push_str(body);
    let _ = stream.write_all(out.as_bytes()).await;
    let _ = stream.flush().await;
}

/// Answers a WebSocket upgrade with 101 (echoing v2 when `v2`) and returns the socket.
pub async fn accept_ws(
    mut stream: TcpStream,
    req: &Request,
    v2: bool,
) -> WebSocketStream<TcpStream> {
    let key = req.header("sec-websocket-key").unwrap_or("");
    let accept = derive_accept_key(key.as_bytes());
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n"
    );
    if v2 {
        out.push_str("x-webhook-connect-protocol: 2\r\n");
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes()).await.unwrap();
    WebSocketStream::from_raw_socket(stream, Role::Server, None).await
}

/// Starts the SSE response head (chunked transfer encoding is avoided: the body is written raw
/// and ends with the connection, as HTTP/1.1 allows with `connection: close`).
pub async fn start_sse(stream: &mut TcpStream, v2: bool) {
    let mut out = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\nx-accel-buffering: no\r\nconnection: close\r\n",
    );
    if v2 {
        out.push_str("x-webhook-connect-protocol: 2\r\n");
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
}

/// An ack or nack the peer received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckSeen {
    pub message_id: String,
    pub status: String,
    pub retry: Option<bool>,
    pub connection_id: Option<String>,
}

/// A relay peer on 127.0.0.1:0 that runs `handler` for every TCP connection.
pub struct Peer {
    pub addr: SocketAddr,
}

impl Peer {
    pub async fn start<F, Fut>(handler: F) -> Peer
    where
        F: Fn(TcpStream, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = Arc::new(handler);
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    if let Some(req) = read_request(&mut stream).await {
                        handler(stream, req).await;
                    }
                });
            }
        });
        Peer { addr }
    }
}

/// Records HTTP acks (`POST /connect/ack`, single query form or v2 batch body) and answers as
/// the spec shows.
pub async fn handle_http_ack(mut stream: TcpStream, req: &Request, acks: &Mutex<Vec<AckSeen>>) {
    let connection_id = req.header("x-connection-id").map(str::to_owned);
    if req.query("message_id").is_none() {
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let entries = body["acks"].as_array().cloned().unwrap_or_default();
        let mut results = Vec::new();
        for e in &entries {
            let id = e["message_id"].as_str().unwrap_or("").to_owned();
            let status = e["status"].as_str().unwrap_or("ack").to_owned();
            acks.lock().unwrap().push(AckSeen {
                message_id: id.clone(),
                status: status.clone(),
                retry: e["retry"].as_bool(),
                connection_id: connection_id.clone(),
            });
            let outcome = match status.as_str() {
                "ack" => "acked",
                "touch" => "extended",
                _ => "requeued",
            };
            results.push(serde_json::json!({"message_id": id, "status": "ok", "outcome": outcome}));
        }
        let body = serde_json::json!({ "results": results }).to_string();
        respond(
            &mut stream,
            200,
            &[("content-type", "application/json")],
            &body,
        )
        .await;
        return;
    }
    let id = req.query("message_id").unwrap_or_default();
    acks.lock().unwrap().push(AckSeen {
        message_id: id.clone(),
        status: req.query("status").unwrap_or_else(|| "ack".into()),
        retry: req.query("retry").map(|r| r == "true"),
        connection_id,
    });
    respond(
        &mut stream,
        200,
        &[("content-type", "application/json")],
        &format!(r#"{{"status":"ok","message_id":"{id}"}}"#),
    )
    .await;
}

/// A spec-shaped v2 webhook frame carrying `body` exactly.
pub fn webhook_frame(message_id: &str, sequence: u64, body: &[u8], content_type: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(body);
    let payload = serde_json::from_slice::<serde_json::Value>(body)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(body).into()).to_string()
        });
    format!(
        r#"{{"type":"webhook","message_id":"{message_id}","sequence":{sequence},"webhook_id":"shop-orders","timestamp":"2026-03-14T09:27:01.004512+00:00","headers":{{"content-type":"{content_type}","x-shopify-hmac-sha256":"k3bq=","content-length":"{}"}},"payload":{payload},"channel":"orders","received_at":"2026-03-14T09:27:01.004512+00:00","expires_at":null,"delivery_count":1,"lease_expires_at":"2026-03-14T09:27:31.010204+00:00","data_type":"json","content_type":"{content_type}","body":"{b64}","namespace":null}}"#,
        body.len()
    )
}

/// The v2 `connected` frame of the spec's example session (short heartbeat for tests).
pub fn connected_frame(connection_id: &str, max_in_flight: u32) -> String {
    format!(
        r#"{{"type":"connected","connection_id":"{connection_id}","channel":"orders","timestamp":"2026-03-14T09:26:53.589793+00:00","protocol":2,"heartbeat_interval_ms":30000,"heartbeat_timeout_ms":90000,"ack_timeout_ms":30000,"max_in_flight":{max_in_flight},"server_time":"2026-03-14T09:26:53.589793+00:00"}}"#
    )
}

/// The v1 `connected` frame (A.1.2).
pub fn connected_frame_v1(connection_id: &str) -> String {
    format!(
        r#"{{"type":"connected","connection_id":"{connection_id}","channel":"orders","timestamp":"2026-03-14T09:26:53.589793+00:00"}}"#
    )
}
