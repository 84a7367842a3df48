//! A real local HTTP target that records every request it receives and answers with a scripted
//! status sequence. Used by end-to-end tests and by the quickstart's `webhook-connect-sink`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers (lower-case names, values as text).
    pub headers: Vec<(String, String)>,
    /// Exact body bytes.
    pub body: Vec<u8>,
    /// When it arrived (wall clock, for end-to-end latency).
    pub at: std::time::SystemTime,
}

impl Received {
    /// The first value of `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// How many times `name` appears.
    pub fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }
}

#[derive(Debug, Default)]
struct Inner {
    received: Mutex<Vec<Received>>,
    /// Statuses and bodies to answer, in order; once used up, `200` with no body.
    script: Mutex<Vec<(u16, String)>>,
    arrived: Notify,
    print: bool,
}

/// A running sink.
#[derive(Debug, Clone)]
pub struct Sink {
    /// Where it listens.
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    stop: CancellationToken,
}

async fn record(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let received = Received {
        method: method.to_string(),
        uri: uri.to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        at: std::time::SystemTime::now(),
    };
    if inner.print {
        println!("--- {} {} ---", received.method, received.uri);
        for (n, v) in &received.headers {
            if n.starts_with("x-") || n == "content-type" {
                println!("{n}: {v}");
            }
        }
        println!("{}\n", String::from_utf8_lossy(&received.body));
    }
    let (status, answer) = {
        let mut script = inner.script.lock().unwrap_or_else(|p| p.into_inner());
        if script.is_empty() {
            (200, String::new())
        } else {
            script.remove(0)
        }
    };
    inner
        .received
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(received);
    inner.arrived.notify_waiters();
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        answer,
    )
}

impl Sink {
    /// Starts a sink on `addr` (use `127.0.0.1:0` in tests); `print` writes each request to
    /// standard output.
    pub async fn start(addr: SocketAddr, print: bool) -> std::io::Result<Sink> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            print,
            ..Default::default()
        });
        let stop = CancellationToken::new();
        let app = Router::new().fallback(record).with_state(inner.clone());
        let shutdown = stop.clone();
        tokio::spawn(async move {
            let listener =
                axum::serve::ListenerExt::tap_io(listener, |s: &mut tokio::net::TcpStream| {
                    let _ = s.set_nodelay(true);
                });
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
        });
        Ok(Sink { addr, inner, stop })
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next requests with these statuses (then `200`).
    pub fn script(&self, statuses: &[u16]) {
        *self.inner.script.lock().unwrap_or_else(|p| p.into_inner()) =
            statuses.iter().map(|s| (*s, String::new())).collect();
    }

    /// Answers the next requests with these statuses and bodies (then `200`).
    pub fn script_answers(&self, answers: &[(u16, &str)]) {
        *self.inner.script.lock().unwrap_or_else(|p| p.into_inner()) =
            answers.iter().map(|(s, b)| (*s, (*b).to_owned())).collect();
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner
            .received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until at least `n` requests arrived or `wait` passed; returns the count.
    pub async fn wait_for(&self, n: usize, wait: std::time::Duration) -> usize {
        self.wait_until(n, wait, |received| received.len()).await
    }

    /// Waits until at least `n` distinct bodies arrived or `wait` passed; returns how many
    /// distinct bodies arrived. Redeliveries after a failure may repeat a body, so counting
    /// requests could stop too early.
    pub async fn wait_for_distinct(&self, n: usize, wait: std::time::Duration) -> usize {
        self.wait_until(n, wait, |received| {
            received
                .iter()
                .map(|r| &r.body)
                .collect::<std::collections::HashSet<_>>()
                .len()
        })
        .await
    }

    async fn wait_until(
        &self,
        n: usize,
        wait: std::time::Duration,
        count: impl Fn(&[Received]) -> usize,
    ) -> usize {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.inner.arrived.notified();
            let now = count(&self.received());
            if now >= n {
                return now;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return count(&self.received());
            }
        }
    }

    /// Stops it.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}
