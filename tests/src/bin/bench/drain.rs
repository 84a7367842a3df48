//! Drain and depth rows (`--only drain`, `--depth N`, both in `--all`): the release relay and
//! connector as separate processes, measured against the bare hop.
//!
//! - **bare hop**: the connector's own target HTTP client ([`webhook_connector::target_http_client`]) posting
//!   the requests its forward path builds for the same 1 KiB bodies to the same counting sink at
//!   the same concurrency, no relay: the limit every drain row is printed against.
//! - **drain**: N webhooks queued with no connector, then one connector process drains them
//!   into the sink: messages/s from first to last arrival, the ratio to the bare hop, and the
//!   CPU time (user + system, `/proc/<pid>/stat`) of relay and connector per delivered message.
//! - **depth**: N queued in the embedded store: relay RSS while ingesting, bytes on disk per
//!   message against the payload, start-up time and RSS after a `kill -9` and restart, then the
//!   drain of that backlog and the file after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use tokio::sync::Notify;
use webhook_connect_tests::stack::TempDir;
use webhook_connector::config::{ChannelConfig, ConnectorConfig, Protocol, TargetConfig};

use crate::rss::{PeakRss, rss_of};
use crate::{
    Row, TOKEN, body, channel_toml_with, post_all, spawn_connector, start_release_relay_at,
};

/// Concurrency of the connector's target requests in these rows, and of the bare hop.
const CONCURRENCY: usize = 64;

/// A target that only counts: requests, distinct bench bodies (by their `"i"`), first and last
/// arrival. Holds a bit per message, so a deep drain does not keep the bodies.
struct Counter {
    requests: AtomicUsize,
    distinct: AtomicUsize,
    seen: Vec<AtomicU64>,
    first_us: AtomicU64,
    last_us: AtomicU64,
    origin: Instant,
    arrived: Notify,
}

impl Counter {
    fn record(&self, body: &[u8]) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let at = self.origin.elapsed().as_micros() as u64 + 1;
        let _ = self
            .first_us
            .compare_exchange(0, at, Ordering::AcqRel, Ordering::Acquire);
        self.last_us.fetch_max(at, Ordering::AcqRel);
        if let Some(i) = bench_index(body) {
            let (word, bit) = (i / 64, 1u64 << (i % 64));
            if let Some(w) = self.seen.get(word)
                && w.fetch_or(bit, Ordering::AcqRel) & bit == 0
            {
                self.distinct.fetch_add(1, Ordering::AcqRel);
                self.arrived.notify_waiters();
            }
        }
    }

    /// Seconds from the first to the last arrival.
    fn span_secs(&self) -> f64 {
        let (first, last) = (
            self.first_us.load(Ordering::Acquire),
            self.last_us.load(Ordering::Acquire),
        );
        last.saturating_sub(first).max(1) as f64 / 1e6
    }
}

/// The `"i"` of a bench body (`{"i":N,…`), also when delivered base64-free as the raw body.
fn bench_index(body: &[u8]) -> Option<usize> {
    let rest = body.strip_prefix(b"{\"i\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

async fn count(State(c): State<Arc<Counter>>, body: Bytes) -> &'static str {
    c.record(&body);
    "ok"
}

struct CountingSink {
    counter: Arc<Counter>,
    url: String,
    stop: tokio_util::sync::CancellationToken,
}

impl CountingSink {
    async fn start(n: usize) -> Option<CountingSink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
        let url = format!("http://{}", listener.local_addr().ok()?);
        let counter = Arc::new(Counter {
            requests: AtomicUsize::new(0),
            distinct: AtomicUsize::new(0),
            seen: (0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            first_us: AtomicU64::new(0),
            last_us: AtomicU64::new(0),
            origin: Instant::now(),
            arrived: Notify::new(),
        });
        let app = Router::new().fallback(count).with_state(counter.clone());
        let stop = tokio_util::sync::CancellationToken::new();
        let shutdown = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
        });
        Some(CountingSink { counter, url, stop })
    }

    /// Waits until `n` distinct bodies arrived or `wait` passed; returns how many did.
    async fn wait_for(&self, n: usize, wait: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.counter.arrived.notified();
            let now = self.counter.distinct.load(Ordering::Acquire);
            if now >= n || tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.counter.distinct.load(Ordering::Acquire);
            }
        }
    }
}

impl Drop for CountingSink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// User + system CPU seconds of a process so far (`/proc/<pid>/stat`, fields 14 and 15).
fn cpu_secs(pid: u32) -> f64 {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.to_owned();
            let f: Vec<u64> = after
                .split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|v| v.parse().ok())
                .collect();
            (f.len() == 2).then(|| f[0] + f[1])
        })
        .unwrap_or(0);
    ticks as f64 / clock_ticks()
}

/// Clock ticks per second of `/proc` times.
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The bare hop: the connector's target client and request builder, no relay.
pub(crate) async fn bare_hop(n: usize) -> Option<Row> {
    let sink = CountingSink::start(n).await?;
    let config = ConnectorConfig::new("http://127.0.0.1:1", ChannelConfig::new("bench", TOKEN));
    let client = webhook_connector::target_http_client(&config).ok()?;
    let target = Arc::new(TargetConfig::new(sink.url.clone()));
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, target, next, failed) =
            (client.clone(), target.clone(), next.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let msg = message(i);
                let Ok(req) = webhook_connector::forward::build_request(&msg, &target, "bench", 1)
                else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let sent = client
                    .request(target.method.clone(), &target.url)
                    .timeout(target.timeout)
                    .headers(req.headers)
                    .body(req.body)
                    .send()
                    .await;
                if !sent.is_ok_and(|r| r.status().is_success()) {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let got = sink.counter.distinct.load(Ordering::Acquire);
    Some(Row {
        name: "bare hop (limit)".into(),
        rate: got as f64 / secs,
        note: format!(
            "{n} x 1 KiB, connector's target client, c={CONCURRENCY}, no relay; {} failed",
            failed.load(Ordering::Relaxed)
        ),
        ..Row::default()
    })
}

/// The message the connector would receive for bench body `i` (v2, as delivered).
fn message(i: usize) -> webhook_connect_protocol::WebhookMessage {
    let raw = body(i);
    let text = String::from_utf8(raw.clone()).unwrap_or_default();
    let mut headers = webhook_connect_protocol::Headers::new();
    headers.append("content-type", "application/json");
    let envelope = webhook_connect_protocol::Envelope {
        message_id: webhook_connect_protocol::MessageId::generate(),
        channel: "bench".into(),
        webhook_id: "github".into(),
        namespace: None,
        sequence: i as u64 + 1,
        received_at: webhook_connect_protocol::Timestamp::now(),
        expires_at: None,
        headers,
        raw_headers: None,
        data_type: webhook_connect_protocol::DataType::Json,
        content_type: Some("application/json".into()),
        payload: serde_json::value::RawValue::from_string(text)
            .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned()),
        payload_encoding: None,
        body_omitted: false,
        body: raw,
    };
    envelope.to_webhook(
        webhook_connect_protocol::ProtocolVersion::V2,
        webhook_connect_protocol::envelope::DeliveryInfo {
            delivery_count: 1,
            lease_expires_at: webhook_connect_protocol::Timestamp::now(),
        },
    )
}

/// Appends to every end-to-end row measured before (`e2e …`) its ratio to the bare hop.
pub(crate) fn note_ratio_to_bare_hop(rows: &mut [Row], bare: f64) {
    for row in rows {
        if row.name.starts_with("e2e ") && bare > 0.0 {
            row.note = format!("{}; {:.3} x bare hop", row.note, row.rate / bare);
        }
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::WebSocket => "websocket",
        Protocol::Sse => "sse",
        Protocol::LongPoll => "long_poll",
        Protocol::Auto => "auto",
    }
}

/// What one drain measured.
struct Drained {
    got: usize,
    rate: f64,
    cpu_us_per_msg: f64,
    connector_rss_peak: f64,
    relay_rss_peak: f64,
}

/// Starts a connector process on `protocol` and waits until `n` messages arrived in `sink`.
async fn drain_into(
    dir: &TempDir,
    port: u16,
    relay_pid: u32,
    protocol: Protocol,
    sink: &CountingSink,
    n: usize,
) -> Option<Drained> {
    let relay_cpu = cpu_secs(relay_pid);
    let base = format!("http://127.0.0.1:{port}");
    let mut connector = spawn_connector(dir, &base, protocol_name(protocol), &sink.url)?;
    let connector_pid = connector.id();
    let sampler = PeakRss::watch(&[relay_pid, connector_pid], Duration::from_millis(100));
    let wait = Duration::from_secs(60 + (n / 500) as u64);
    let got = sink.wait_for(n, wait).await;
    let cpu = cpu_secs(relay_pid) - relay_cpu + cpu_secs(connector_pid);
    let peaks = sampler.finish().await;
    let _ = connector.kill();
    let _ = connector.wait();
    let (relay_rss_peak, connector_rss_peak) = (peaks[0], peaks[1]);
    Some(Drained {
        got,
        rate: got as f64 / sink.counter.span_secs(),
        cpu_us_per_msg: cpu * 1e6 / got.max(1) as f64,
        connector_rss_peak,
        relay_rss_peak,
    })
}

/// The drain rows' note: count, ratio to the bare hop and CPU per message.
fn drain_note(n: usize, d: &Drained, bare: Option<f64>, posted_failures: usize) -> String {
    let ratio = bare.map_or_else(|| "-".to_owned(), |b| format!("{:.3}", d.rate / b));
    format!(
        "{n} queued, {} arrived; {ratio} x bare hop; CPU {:.1} us/msg (relay+connector); {posted_failures} post failures",
        d.got, d.cpu_us_per_msg
    )
}

/// Queue `n`, then drain with one connector per transport (embedded store, release processes).
pub(crate) async fn drain_rows(n: usize, bare: Option<f64>) -> Vec<Row> {
    let mut rows = Vec::new();
    for protocol in [Protocol::WebSocket, Protocol::Sse, Protocol::LongPoll] {
        let Ok(dir) = TempDir::new("bench-drain") else {
            return rows;
        };
        let Some((mut relay, port)) =
            start_release_relay_at(&dir, "drain.db", &channel_toml_with(n as u64 + 1000), None)
                .await
        else {
            return rows;
        };
        let base = format!("http://127.0.0.1:{port}");
        let (_, _, failed) = post_all(&base, n, 64, None).await;
        if let Some(sink) = CountingSink::start(n).await
            && let Some(d) = drain_into(&dir, port, relay.id(), protocol, &sink, n).await
        {
            rows.push(Row {
                name: format!("drain {}, embedded", protocol_name(protocol)),
                rate: d.rate,
                note: drain_note(n, &d, bare, failed),
                ..Row::default()
            });
        }
        let _ = relay.kill();
        let _ = relay.wait();
    }
    rows
}

/// Payload bytes of bench bodies 0..n.
fn payload_bytes(n: usize) -> u64 {
    let base = body(0).len() as u64 - 1;
    (0..n).map(|i| base + i.to_string().len() as u64).sum()
}

fn mb_row(name: String, mb: f64, note: String) -> Row {
    Row {
        name,
        rate: mb,
        note,
        ..Row::default()
    }
}

/// `n` queued in the embedded store: memory, disk, restart and the drain of the backlog.
pub(crate) async fn depth(n: usize, bare: Option<f64>) -> Vec<Row> {
    let mut rows = Vec::new();
    let Ok(dir) = TempDir::new("bench-depth") else {
        return rows;
    };
    let rest = channel_toml_with(n as u64 + 1000);
    let Some((mut relay, port)) = start_release_relay_at(&dir, "depth.db", &rest, None).await
    else {
        return rows;
    };
    let db = dir.0.join("depth.db");
    let pid = relay.id();
    let sampler = PeakRss::watch(&[pid], Duration::from_millis(200));
    let started = Instant::now();
    let (rate, _, failed) = post_all(&format!("http://127.0.0.1:{port}"), n, 64, None).await;
    let peak = sampler.finish().await[0];
    let queued = n - failed;
    rows.push(mb_row(
        format!("depth {n}: relay RSS ingesting"),
        peak,
        format!(
            "MB peak; {queued} x 1 KiB queued at {rate:.0}/s in {:.0} s, {failed} failed",
            started.elapsed().as_secs_f64()
        ),
    ));
    rows.push(mb_row(
        format!("depth {n}: relay RSS queued"),
        rss_of(pid),
        "MB, after ingest".into(),
    ));
    let payload = payload_bytes(n) as f64;
    let disk = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) as f64;
    rows.push(mb_row(
        format!("depth {n}: store file"),
        disk / 1e6,
        format!(
            "MB; {:.0} B per message, {:.2} x the payload ({:.0} B per message)",
            disk / queued.max(1) as f64,
            disk / payload,
            payload / n.max(1) as f64
        ),
    ));
    // kill -9, then the same file again.
    let _ = relay.kill();
    let _ = relay.wait();
    let restarted = Instant::now();
    let Some((mut relay, port)) = start_release_relay_at(&dir, "depth.db", &rest, None).await
    else {
        rows.push(mb_row(
            format!("depth {n}: restart"),
            f64::NAN,
            "the relay did not come back".into(),
        ));
        return rows;
    };
    // `start_release_relay_at` waits 0.5 s after ready: subtract it.
    let startup = restarted.elapsed().as_secs_f64() - 0.5;
    tokio::time::sleep(Duration::from_secs(2)).await;
    rows.push(mb_row(
        format!("depth {n}: relay RSS restarted"),
        rss_of(relay.id()),
        format!("MB, after kill -9 and restart; ready in {startup:.2} s"),
    ));
    if let Some(sink) = CountingSink::start(n).await
        && let Some(d) =
            drain_into(&dir, port, relay.id(), Protocol::WebSocket, &sink, queued).await
    {
        rows.push(Row {
            name: format!("drain of depth {n}, websocket"),
            rate: d.rate,
            note: format!(
                "{}; relay RSS peak {:.0} MB, connector {:.0} MB",
                drain_note(queued, &d, bare, failed),
                d.relay_rss_peak,
                d.connector_rss_peak
            ),
            ..Row::default()
        });
    }
    let disk_after = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) as f64;
    rows.push(mb_row(
        format!("depth {n}: store file drained"),
        disk_after / 1e6,
        "MB after the drain (redb keeps freed pages for reuse)".into(),
    ));
    let _ = relay.kill();
    let _ = relay.wait();
    rows
}
