//! Starting a real relay in-process on `127.0.0.1:0`, with the embedded store in a temporary
//! directory, and small raw clients (HTTP, WebSocket, SSE) that talk to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_util::sync::CancellationToken;
use webhook_connect_protocol::sse::{SseDecoder, SseEvent};
use webhook_relay::config::{FlagOverrides, LoadOptions, load};

/// The token of every test channel.
pub const TOKEN: &str = "test-channel-token-0123456789";

/// Which buffer a test relay runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The embedded store in the test directory.
    Embedded,
    /// Redis at `WEBHOOK_CONNECT_TEST_REDIS_URL` (default loopback) under a unique key prefix,
    /// whose keys are deleted on drop.
    Redis,
    /// RabbitMQ at `WEBHOOK_CONNECT_TEST_RABBITMQ_URL` (default loopback) under a unique
    /// exchange name, whose queues are deleted on drop; the state store stays embedded.
    RabbitMq,
    /// Like [`Store::Redis`] on the test Redis Cluster (`scripts/services.sh redis-cluster`,
    /// or the comma-separated seeds in `WEBHOOK_CONNECT_TEST_REDIS_CLUSTER`).
    RedisCluster,
}

fn rabbitmq_url() -> String {
    std::env::var("WEBHOOK_CONNECT_TEST_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn redis_url() -> String {
    std::env::var("WEBHOOK_CONNECT_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// The `[buffer.redis]` line that points at `store`'s Redis (one server or the cluster).
pub fn redis_target_toml(store: Store) -> String {
    match store {
        Store::RedisCluster => {
            let nodes: Vec<String> =
                webhook_connect_buffer::redis::maintenance::test_cluster_nodes()
                    .iter()
                    .map(|n| format!("\"{n}\""))
                    .collect();
            format!("cluster_nodes = [{}]", nodes.join(", "))
        }
        _ => format!("url = \"{}\"", redis_url()),
    }
}

/// A running relay; stopped (and its directory removed) on drop.
pub struct TestRelay {
    pub addr: SocketAddr,
    pub base: String,
    pub shutdown: CancellationToken,
    pub join: Option<JoinHandle<Result<(), webhook_relay::StartError>>>,
    pub dir: PathBuf,
    pub http: reqwest::Client,
    pub redis_prefix: Option<String>,
    /// Where `redis_prefix` lives: [`Store::Redis`] or [`Store::RedisCluster`].
    pub redis_store: Store,
    pub rabbit_exchange: Option<String>,
}

/// A loopback port that was free a moment ago (for listeners the relay binds itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GETs `url` until it answers 200 (a side listener starts alongside the main one) and returns
/// the body.
pub async fn get_when_up(http: &reqwest::Client, url: &str, bearer: Option<&str>) -> String {
    for _ in 0..100 {
        let mut request = http.get(url);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Ok(r) = request.send().await
            && r.status() == 200
        {
            return r.text().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never answered 200");
}

/// A fresh temporary directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wc-relay-it-{tag}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A CA and a server certificate for 127.0.0.1 written as PEM files (`cert.pem`, `key.pem`)
/// into `dir`; returns the CA's PEM (for the client).
pub fn write_pki(dir: &Path) -> String {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    ca.pem()
}

/// The `[server]` lines that make a relay serve the certificate of [`write_pki`] from `dir`.
pub fn tls_settings(dir: &Path) -> String {
    format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    )
}

impl TestRelay {
    /// A relay with one channel `orders` (webhook ids `shop` and `other`), `extra_channel`
    /// settings appended to its `[[channels]]` entry, and `extra` appended to the file.
    pub async fn start(tag: &str, extra_channel: &str, extra: &str) -> TestRelay {
        Self::start_in(temp_dir(tag), extra_channel, extra).await
    }

    /// Like [`TestRelay::start`] on `store`.
    pub async fn start_on(store: Store, tag: &str, extra_channel: &str, extra: &str) -> TestRelay {
        match store {
            Store::Embedded => Self::start(tag, extra_channel, extra).await,
            Store::Redis | Store::RedisCluster => {
                let prefix = format!("wc_relay_it_{:016x}", rand::random::<u64>());
                let mut relay =
                    Self::start_on_redis(store, &prefix, tag, extra_channel, extra).await;
                relay.redis_prefix = Some(prefix);
                relay
            }
            Store::RabbitMq => {
                let exchange = format!("wc_relay_it_{:016x}", rand::random::<u64>());
                let extra = format!(
                    "{extra}\n[buffer]\nbackend = \"rabbitmq\"\n[buffer.rabbitmq]\nurl = \"{}\"\nexchange = \"{exchange}\"\n",
                    rabbitmq_url()
                );
                let mut relay = Self::start_in(temp_dir(tag), extra_channel, &extra).await;
                relay.rabbit_exchange = Some(exchange);
                relay
            }
        }
    }

    /// A relay whose buffer and state store are Redis under `prefix` on `store`'s Redis (one
    /// server or the cluster), in a fresh directory: a second instance beside another one, or
    /// a restart that keeps nothing on disk. It does not delete the keys on drop (the instance
    /// that made the prefix does).
    pub async fn start_on_redis(
        store: Store,
        prefix: &str,
        tag: &str,
        extra_channel: &str,
        extra: &str,
    ) -> TestRelay {
        let mut relay =
            Self::start_on_redis_toml(&redis_target_toml(store), prefix, tag, extra_channel, extra)
                .await;
        relay.redis_store = store;
        relay
    }

    /// Like [`TestRelay::start_on_redis`] with `target` as the `[buffer.redis]` lines that say
    /// where Redis is (and how to use it). Deletes nothing on drop.
    pub async fn start_on_redis_toml(
        target: &str,
        prefix: &str,
        tag: &str,
        extra_channel: &str,
        extra: &str,
    ) -> TestRelay {
        // `extra` lands right after the `[state]` table's `path`, so its first line is a key of
        // that table.
        let extra = format!(
            "key_prefix = \"{prefix}\"\n[buffer]\nbackend = \"redis\"\n[buffer.redis]\n{target}\nkey_prefix = \"{prefix}\"\n{extra}"
        );
        Self::start_in(temp_dir(tag), extra_channel, &extra).await
    }

    /// Like [`TestRelay::start`] in an existing directory (restarts keep the store).
    pub async fn start_in(dir: PathBuf, extra_channel: &str, extra: &str) -> TestRelay {
        Self::start_with_server(dir, "", extra_channel, extra).await
    }

    /// Like [`TestRelay::start_in`] with `server` appended to the `[server]` table.
    pub async fn start_with_server(
        dir: PathBuf,
        server: &str,
        extra_channel: &str,
        extra: &str,
    ) -> TestRelay {
        let toml = format!(
            r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace_seconds = 1
{server}
[buffer.embedded]
path = "{db}"
commit_max_delay_ms = 1
[state]
path = "{state}"
{extra}
[[channels]]
name = "orders"
token = "{TOKEN}"
{extra_channel}
[channels.webhooks.shop]
[channels.webhooks.other]
"#,
            db = dir.join("relay.db").display(),
            state = dir.join("state.json").display(),
        );
        let path = dir.join("relay.toml");
        std::fs::write(&path, toml).unwrap();
        let config = load(&LoadOptions {
            config_path: Some(path),
            flags: FlagOverrides::default(),
            env: vec![],
        })
        .unwrap_or_else(|e| panic!("config: {e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let join = tokio::spawn(webhook_relay::run(config, listener, shutdown.clone()));
        TestRelay {
            addr,
            base: format!("http://{addr}"),
            shutdown,
            join: Some(join),
            dir,
            redis_prefix: None,
            redis_store: Store::Redis,
            rabbit_exchange: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// An admin API call with `admin_token`: status and JSON body (a string when not JSON).
    pub async fn admin_call(
        &self,
        admin_token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut r = self
            .http
            .request(method, format!("{}/admin/webhook-connect{path}", self.base))
            .bearer_auth(admin_token);
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let response = r.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// `GET /openapi.json`.
    pub async fn openapi(&self) -> serde_json::Value {
        self.http
            .get(format!("{}/openapi.json", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Stops the relay and waits for it (keeps the directory).
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(join) = self.join.take() {
            tokio::time::timeout(Duration::from_secs(20), join)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }

    /// `POST /webhook/{id}` with a JSON body.
    pub async fn post(&self, webhook_id: &str, body: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/webhook/{webhook_id}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// Posts and asserts `200`; returns the message id.
    pub async fn post_ok(&self, webhook_id: &str, body: &str) -> String {
        let r = self.post(webhook_id, body).await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        let v: serde_json::Value = r.json().await.unwrap();
        v["message_id"].as_str().unwrap().to_owned()
    }

    /// `GET /connect/status/orders` → stats object.
    pub async fn status(&self) -> serde_json::Value {
        self.http
            .get(format!("{}/connect/status/orders", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Opens a WebSocket on `orders`; `v2` adds the protocol header.
    pub async fn ws(&self, v2: bool, extra: &[(&str, &str)]) -> Ws {
        let mut request = format!("ws://{}/connect/stream/orders", self.addr)
            .into_client_request()
            .unwrap();
        let h = request.headers_mut();
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap(),
        );
        if v2 {
            h.insert("x-webhook-connect-protocol", HeaderValue::from_static("2"));
        }
        for (k, v) in extra {
            h.insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let (socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        let granted = response
            .headers()
            .get("x-webhook-connect-protocol")
            .map(|v| v.to_str().unwrap().to_owned());
        Ws { socket, granted }
    }

    /// Opens an SSE stream on `orders`.
    pub async fn sse(&self, v2: bool) -> Sse {
        let mut r = self
            .http
            .get(format!("{}/connect/stream/orders/sse", self.base))
            .bearer_auth(TOKEN);
        if v2 {
            r = r.header("x-webhook-connect-protocol", "2");
        }
        let response = r.send().await.unwrap();
        assert_eq!(response.status(), 200);
        Sse {
            response,
            decoder: SseDecoder::new(),
            events: Vec::new(),
        }
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(prefix) = &self.redis_prefix {
            let cluster = match self.redis_store {
                Store::RedisCluster => {
                    webhook_connect_buffer::redis::maintenance::test_cluster_nodes()
                }
                _ => Vec::new(),
            };
            webhook_connect_buffer::redis::maintenance::delete_keys_everywhere(
                &redis_url(),
                &cluster,
                &format!("{prefix}:*"),
            );
        }
        if let Some(exchange) = self.rabbit_exchange.take() {
            // Drop runs inside the test's runtime; clean up from a thread with its own.
            let _ = std::thread::spawn(move || {
                use webhook_connect_buffer::{Buffer, RabbitBuffer, RabbitOptions};
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    let options = RabbitOptions {
                        url: rabbitmq_url(),
                        exchange,
                        ..RabbitOptions::default()
                    };
                    if let Ok(b) = RabbitBuffer::connect(options).await {
                        let _ = b.destroy_all().await;
                        let _ = b.close().await;
                    }
                });
            })
            .join();
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw WebSocket client.
pub struct Ws {
    pub socket: Socket,
    pub granted: Option<String>,
}

/// What the next read gave.
#[derive(Debug)]
pub enum WsEvent {
    Json(serde_json::Value),
    Closed(Option<u16>),
}

impl Ws {
    /// The next text frame as JSON, or the close; skips pings. Fails after `wait`.
    pub async fn next(&mut self, wait: Duration) -> WsEvent {
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let msg = tokio::time::timeout(wait, self.socket.next())
                .await
                .expect("no frame in time");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return WsEvent::Json(serde_json::from_str(t.as_str()).unwrap());
                }
                Some(Ok(Message::Close(frame))) => {
                    return WsEvent::Closed(frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return WsEvent::Closed(None),
            }
        }
    }

    /// The next frame of `type`, skipping heartbeats.
    pub async fn next_of(&mut self, kind: &str, wait: Duration) -> serde_json::Value {
        loop {
            match self.next(wait).await {
                WsEvent::Json(v) if v["type"] == kind => return v,
                WsEvent::Json(v) if v["type"] == "heartbeat" => continue,
                other => panic!("expected {kind}, got {other:?}"),
            }
        }
    }

    /// Sends a text frame.
    pub async fn send(&mut self, text: &str) {
        use futures_util::SinkExt;
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await
            .unwrap();
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, bytes: &[u8]) {
        use futures_util::SinkExt;
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::Binary(
                bytes.to_vec().into(),
            ))
            .await
            .unwrap();
    }
}

/// A raw SSE client.
pub struct Sse {
    response: reqwest::Response,
    decoder: SseDecoder,
    events: Vec<SseEvent>,
}

impl Sse {
    /// The next event; fails after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if !self.events.is_empty() {
                return Some(self.events.remove(0));
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("no SSE event in time");
            match chunk.unwrap() {
                Some(bytes) => self.decoder.feed(&bytes, &mut self.events).unwrap(),
                None => return None,
            }
        }
    }

    /// The next event named `name`, skipping heartbeats.
    pub async fn next_named(&mut self, name: &str, wait: Duration) -> SseEvent {
        loop {
            let e = self.next(wait).await.expect("stream ended");
            if e.name() == name {
                return e;
            }
            assert_eq!(e.name(), "heartbeat", "unexpected event {e:?}");
        }
    }
}

/// Polls `check` until it holds or `wait` passes.
pub async fn eventually<F, Fut>(wait: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
