//! Per-channel health state and metrics, and the optional local listener serving `/healthz`,
//! `/readyz` and `/metrics` (`docs/reference/http-api.md` §8, R-85).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use webhook_connect_protocol::Timestamp;
use webhook_connect_protocol::exposition::{
    Histogram, write_family, write_histogram, write_runtime, write_sample,
};

/// Connection state of one channel as reported on `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Trying to connect.
    Connecting,
    /// Connected and not stale.
    Connected,
    /// Connected, but nothing received for the stale timeout (C.1.8).
    Stale,
    /// The relay rejected the token.
    Unauthorized,
    /// Not connected.
    Disconnected,
}

impl ConnState {
    /// The spelling on `/readyz`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::Connected => "connected",
            ConnState::Stale => "stale",
            ConnState::Unauthorized => "unauthorized",
            ConnState::Disconnected => "disconnected",
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: ConnState,
    since: Instant,
    protocol: Option<&'static str>,
    protocol_version: Option<u8>,
    connection_id: Option<String>,
    last_frame_at: Option<Timestamp>,
}

/// Health and counters of one module instance (module mode, `docs/reference/module-contract.md` §2.2).
#[derive(Debug)]
pub struct ModuleStatus {
    /// `orders` or `orders.chain[1]`.
    pub label: String,
    /// Canonical module name.
    pub module: &'static str,
    /// `None` while set up; the setup error's text while unavailable.
    failing: Mutex<Option<String>>,
    /// `process` results by outcome (`ok`, `transient`, `permanent`, `unavailable`) and category.
    calls: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl ModuleStatus {
    /// A module whose setup has not run yet (failing).
    pub fn new(label: &str, module: &'static str) -> Self {
        ModuleStatus {
            label: label.to_owned(),
            module,
            failing: Mutex::new(Some("setup has not run yet".into())),
            calls: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records the result of a setup: `None` is up, `Some(error)` is failing.
    pub fn set_up(&self, error: Option<String>) {
        *lock(&self.failing) = error;
    }

    /// True while the module is set up.
    pub fn is_up(&self) -> bool {
        lock(&self.failing).is_none()
    }

    /// Counts one `process` result.
    pub fn call_done(&self, result: Result<(), &crate::output::OutputError>) {
        let key = match result {
            Ok(()) => ("ok", ""),
            Err(e) => (
                match e.kind {
                    crate::output::ErrorKind::Transient => "transient",
                    crate::output::ErrorKind::Permanent => "permanent",
                    crate::output::ErrorKind::Unavailable => "unavailable",
                },
                e.category.as_str(),
            ),
        };
        *lock(&self.calls).entry(key).or_insert(0) += 1;
    }

    /// Calls counted with `result` (`ok`, `transient`, …), over every category.
    pub fn calls(&self, result: &str) -> u64 {
        lock(&self.calls)
            .iter()
            .filter(|((r, _), _)| *r == result)
            .map(|(_, n)| n)
            .sum()
    }
}

/// Health and metrics of one channel.
#[derive(Debug)]
pub struct ChannelState {
    /// Channel name.
    pub channel: String,
    inner: Mutex<Inner>,
    /// Messages received from the relay.
    pub received: AtomicU64,
    /// Acks sent.
    pub acked: AtomicU64,
    /// Nacks sent with `retry:true`.
    pub nacked_retry: AtomicU64,
    /// Nacks sent with `retry:false`.
    pub nacked_no_retry: AtomicU64,
    /// Redeliveries acked from the completion record.
    pub deduplicated: AtomicU64,
    /// Messages currently held (received, not yet acked or nacked).
    pub in_flight: AtomicU64,
    /// Target calls made (attempts).
    pub target_attempts: AtomicU64,
    reconnects: Mutex<BTreeMap<&'static str, u64>>,
    durations: Mutex<BTreeMap<String, Histogram>>,
    target_errors: Mutex<BTreeMap<(String, &'static str), u64>>,
    modules: Mutex<Vec<Arc<ModuleStatus>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ChannelState {
    /// A channel that has not connected yet.
    pub fn new(channel: &str) -> Self {
        ChannelState {
            channel: channel.to_owned(),
            inner: Mutex::new(Inner {
                state: ConnState::Connecting,
                since: Instant::now(),
                protocol: None,
                protocol_version: None,
                connection_id: None,
                last_frame_at: None,
            }),
            received: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            nacked_retry: AtomicU64::new(0),
            nacked_no_retry: AtomicU64::new(0),
            deduplicated: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            target_attempts: AtomicU64::new(0),
            reconnects: Mutex::new(BTreeMap::new()),
            durations: Mutex::new(BTreeMap::new()),
            target_errors: Mutex::new(BTreeMap::new()),
            modules: Mutex::new(Vec::new()),
        }
    }

    /// Current state.
    pub fn state(&self) -> ConnState {
        lock(&self.inner).state
    }

    /// Since when the channel has been not connected (or stale); `None` while connected.
    pub fn unhealthy_for(&self) -> Option<Duration> {
        let inner = lock(&self.inner);
        (inner.state != ConnState::Connected).then(|| inner.since.elapsed())
    }

    /// Moves to `state`, keeping the time of the last change between healthy and not.
    pub fn set_state(&self, state: ConnState) {
        let mut inner = lock(&self.inner);
        let was_ok = inner.state == ConnState::Connected;
        let is_ok = state == ConnState::Connected;
        if was_ok != is_ok {
            inner.since = Instant::now();
        }
        inner.state = state;
        if !is_ok && state != ConnState::Stale {
            inner.connection_id = None;
        }
    }

    /// Marks the channel not connected, unless it is `stale` or `unauthorized`: those stay until
    /// the next successful connect (`docs/reference/http-api.md` §8).
    pub fn set_disconnected(&self) {
        let current = self.state();
        if !matches!(current, ConnState::Stale | ConnState::Unauthorized) {
            self.set_state(ConnState::Disconnected);
        }
    }

    /// A connect attempt starts: `connecting`, unless `stale` or `unauthorized` must stay.
    pub fn set_connecting(&self) {
        let current = self.state();
        if !matches!(current, ConnState::Stale | ConnState::Unauthorized) {
            self.set_state(ConnState::Connecting);
        }
    }

    /// A connection was established.
    pub fn connected(&self, protocol: &'static str, version: u8, connection_id: &str) {
        {
            let mut inner = lock(&self.inner);
            inner.protocol = Some(protocol);
            inner.protocol_version = Some(version);
            inner.connection_id = Some(connection_id.to_owned());
            inner.last_frame_at = Some(Timestamp::now());
        }
        self.set_state(ConnState::Connected);
    }

    /// Something arrived on the stream.
    pub fn frame_seen(&self) {
        lock(&self.inner).last_frame_at = Some(Timestamp::now());
    }

    /// Counts a reconnect with its reason (`closed`, `error`, `stale`, `unauthorized`, …).
    pub fn reconnect(&self, reason: &'static str) {
        *lock(&self.reconnects).entry(reason).or_insert(0) += 1;
    }

    /// Records one finished delivery to `target`.
    pub fn delivery_done(&self, target: &str, seconds: f64, errors: &[&'static str]) {
        {
            let mut d = lock(&self.durations);
            d.entry(target.to_owned()).or_default().observe(seconds);
        }
        if !errors.is_empty() {
            let mut e = lock(&self.target_errors);
            for kind in errors {
                *e.entry((target.to_owned(), kind)).or_insert(0) += 1;
            }
        }
    }

    /// Shows these module instances on `/readyz` and `/metrics`.
    pub fn attach_modules(&self, modules: Vec<Arc<ModuleStatus>>) {
        *lock(&self.modules) = modules;
    }

    /// The module instances shown (module mode).
    pub fn modules(&self) -> Vec<Arc<ModuleStatus>> {
        lock(&self.modules).clone()
    }

    /// Connected and every module instance set up.
    pub fn is_ready(&self) -> bool {
        self.state() == ConnState::Connected && lock(&self.modules).iter().all(|m| m.is_up())
    }

    fn readiness(&self) -> serde_json::Value {
        let modules: serde_json::Map<String, serde_json::Value> = lock(&self.modules)
            .iter()
            .map(|m| {
                let failing = lock(&m.failing).clone();
                (
                    m.label.clone(),
                    json!({
                        "module": m.module,
                        "state": if failing.is_none() { "up" } else { "unavailable" },
                        "error": failing,
                    }),
                )
            })
            .collect();
        let inner = lock(&self.inner);
        json!({
            "modules": modules,
            "state": inner.state.as_str(),
            "protocol": inner.protocol,
            "protocol_version": inner.protocol_version,
            "connection_id": inner.connection_id,
            "last_frame_at": inner.last_frame_at.map(|t| t.to_string()),
            "in_flight": self.in_flight.load(Ordering::Relaxed),
        })
    }
}

/// The state of every channel of the process.
pub type States = Arc<Vec<Arc<ChannelState>>>;

/// `/readyz` body and whether every channel is connected.
pub fn readiness(states: &States) -> (bool, serde_json::Value) {
    let ready = states.iter().all(|s| s.is_ready());
    let channels: serde_json::Map<String, serde_json::Value> = states
        .iter()
        .map(|s| (s.channel.clone(), s.readiness()))
        .collect();
    (
        ready,
        json!({"status": if ready { "ready" } else { "not_ready" }, "channels": channels}),
    )
}

/// Prometheus text exposition of every channel's metrics, then `webhook_connector_build_info`
/// and the `process_*` families.
pub fn metrics_text(states: &States) -> String {
    let mut out = String::new();
    let p = "webhook_connector";
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let name = format!("{p}_{name}");
        write_family(out, &name, kind, help);
        name
    };
    type Getter = fn(&ChannelState) -> u64;
    let simple: [(&str, &str, &str, Getter); 4] = [
        (
            "messages_received_total",
            "counter",
            "Messages received from the relay.",
            |s| s.received.load(Ordering::Relaxed),
        ),
        ("messages_acked_total", "counter", "Acks sent.", |s| {
            s.acked.load(Ordering::Relaxed)
        }),
        (
            "messages_deduplicated_total",
            "counter",
            "Redeliveries acked from the completion record.",
            |s| s.deduplicated.load(Ordering::Relaxed),
        ),
        ("in_flight", "gauge", "Messages held.", |s| {
            s.in_flight.load(Ordering::Relaxed)
        }),
    ];
    for (name, kind, help, get) in simple {
        let name = family(&mut out, name, kind, help);
        for s in states.iter() {
            write_sample(&mut out, &name, &[("channel", &s.channel)], get(s));
        }
    }
    let name = family(&mut out, "messages_nacked_total", "counter", "Nacks sent.");
    for s in states.iter() {
        for (retry, n) in [("true", &s.nacked_retry), ("false", &s.nacked_no_retry)] {
            let labels = [("channel", s.channel.as_str()), ("retry", retry)];
            write_sample(&mut out, &name, &labels, n.load(Ordering::Relaxed));
        }
    }
    let name = family(
        &mut out,
        "stream_stale",
        "gauge",
        "1 while the stream is stale or disconnected.",
    );
    for s in states.iter() {
        let stale = u8::from(s.state() != ConnState::Connected);
        write_sample(&mut out, &name, &[("channel", &s.channel)], stale);
    }
    let name = family(
        &mut out,
        "reconnects_total",
        "counter",
        "Reconnects by reason.",
    );
    for s in states.iter() {
        for (reason, n) in lock(&s.reconnects).iter() {
            let labels = [("channel", s.channel.as_str()), ("reason", reason)];
            write_sample(&mut out, &name, &labels, n);
        }
    }
    let name = family(
        &mut out,
        "target_errors_total",
        "counter",
        "Failed target attempts.",
    );
    for s in states.iter() {
        for ((target, kind), n) in lock(&s.target_errors).iter() {
            let labels = [
                ("channel", s.channel.as_str()),
                ("target", target.as_str()),
                ("kind", kind),
            ];
            write_sample(&mut out, &name, &labels, n);
        }
    }
    let name = family(
        &mut out,
        "module_up",
        "gauge",
        "1 while a module instance is set up.",
    );
    for s in states.iter() {
        for m in lock(&s.modules).iter() {
            let labels = [
                ("channel", s.channel.as_str()),
                ("instance", m.label.as_str()),
                ("module", m.module),
            ];
            write_sample(&mut out, &name, &labels, u8::from(m.is_up()));
        }
    }
    let name = family(
        &mut out,
        "module_calls_total",
        "counter",
        "Module process calls by result and error category.",
    );
    for s in states.iter() {
        for m in lock(&s.modules).iter() {
            for ((result, category), n) in lock(&m.calls).iter() {
                let labels = [
                    ("channel", s.channel.as_str()),
                    ("instance", m.label.as_str()),
                    ("module", m.module),
                    ("result", result),
                    ("category", category),
                ];
                write_sample(&mut out, &name, &labels, n);
            }
        }
    }
    let name = family(
        &mut out,
        "delivery_duration_seconds",
        "histogram",
        "Local delivery time.",
    );
    for s in states.iter() {
        for (target, h) in lock(&s.durations).iter() {
            let labels = [("channel", s.channel.as_str()), ("target", target.as_str())];
            write_histogram(&mut out, &name, &labels, h);
        }
    }
    write_runtime(&mut out, p, env!("CARGO_PKG_VERSION"));
    out
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn readyz(State(states): State<States>) -> impl IntoResponse {
    let (ready, body) = readiness(&states);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

async fn metrics(State(states): State<States>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics_text(&states),
    )
}

/// Binds the health listener; returns its address and the serving future's handle.
pub async fn serve(
    addr: SocketAddr,
    states: States,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(states);
    // The health listener: one per process.
    let handle = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "Health listener failed");
        }
    });
    Ok((local, handle))
}
