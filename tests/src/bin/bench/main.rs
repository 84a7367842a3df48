//! `webhook-connect-bench`: measures the relay and connector on this machine and prints a table
//! (and `--json FILE`). Not a test: numbers depend on the machine and what else runs on it.
//!
//!   webhook-connect-bench --all [--messages N] [--json FILE]   (everything below, one run)
//!   webhook-connect-bench [--backend embedded|redis|rabbitmq|all] [--messages N] [--json FILE]
//!                         [--only limit|admin|ingest|websocket|sse|long_poll|hostile|cluster|drain]
//!                         [--scale 1000,10000] [--depth N]
//!
//! Measurements, each on a fresh relay started in this process:
//! 1. ingest: HMAC-signed 1 KiB webhooks at concurrency 1, 16 and 64 → accepted/s, p50/p99;
//! 2. end to end: relay → connector (WebSocket, SSE, long-poll) → local HTTP sink → ack, at saturation and at a
//!    fixed 1,000/s → messages/s, p50/p95/p99 from POST to arrival, lost and duplicated;
//! 3. `--scale 1000,10000` (and `--all`): relay RSS with that many idle WebSocket, SSE and
//!    long-poll connectors, then relay and connector RSS idle and at their peak under load, each
//!    run as a separate process from the release binaries next to this one;
//! 4. the limit: the same backend driven directly through the Buffer trait (publish, lease, ack)
//!    and, in the same run, what is underneath it alone: for the embedded store a bare
//!    append+fsync loop, for RabbitMQ the broker driven with lapin directly (publish with
//!    confirms, consume, ack, same message size). The buffer rows say what fraction they reach;
//! 5. admin (`admin_ops.rs`): stats with N queued, dead-lettering N, listing the newest page of
//!    N dead letters, stats with them, replaying them all;
//! 6. hostile (`hostile.rs`, `--only hostile` and `--all`): the release relay with a file limit
//!    of 1,024 under idle, slow-header and large-body attackers while a legitimate sender posts;
//! 7. Redis Cluster (`redis_cluster.rs`, `--only cluster` and `--all`): publish and drain with
//!    the webhooks spread over 12 channels, on the single Redis and on the 3-master cluster.
//! 8. drain and depth (`drain.rs`, `--only drain`, `--depth N` and `--all`): the bare-hop limit
//!    (the connector's own HTTP client, no relay), N queued then drained by one connector process
//!    per transport with the ratio to the bare hop and CPU per message, and for `--depth N` the
//!    embedded store's memory, disk and restart with N queued.

mod admin_ops;
mod buffers;
mod drain;
mod hostile;
mod redis_cluster;
mod rss;

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use webhook_connect_buffer::Settle;

use crate::rss::rss_of;
use webhook_connect_tests::sink::Sink;
use webhook_connect_tests::stack::{Backend, Connector, Relay, TempDir, relay_toml_with};
use webhook_connector::config::Protocol;

const TOKEN: &str = "bench-channel-token-0123456789";
const SECRET: &str = "bench-secret";

fn channel_toml() -> String {
    channel_toml_with(1_000_000)
}

/// The bench channel, holding up to `max_queue_size` messages.
fn channel_toml_with(max_queue_size: u64) -> String {
    format!(
        "[[channels]]\nname = \"bench\"\ntoken = \"{TOKEN}\"\nmax_queue_size = {max_queue_size}\nmax_in_flight = 1000\n[channels.webhooks.github]\nhmac = {{ preset = \"github\", secret = \"{SECRET}\" }}\n"
    )
}

fn sign(body: &[u8]) -> String {
    webhook_connect_tests::github_signature(SECRET, body)
}

fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

/// A ~1 KiB JSON body carrying its send time and a sequence number.
fn body(i: usize) -> Vec<u8> {
    format!(
        "{{\"i\":{i},\"sent_us\":{},\"pad\":\"{}\"}}",
        now_micros(),
        "x".repeat(960)
    )
    .into_bytes()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[derive(Debug, Clone)]
struct Row {
    name: String,
    rate: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    note: String,
}

/// A row with a rate only: its latency columns print as `-`.
impl Default for Row {
    fn default() -> Self {
        Row {
            name: String::new(),
            rate: 0.0,
            p50_ms: f64::NAN,
            p95_ms: f64::NAN,
            p99_ms: f64::NAN,
            note: String::new(),
        }
    }
}

async fn post_all(
    base: &str,
    n: usize,
    concurrency: usize,
    pace: Option<f64>,
) -> (f64, Vec<f64>, usize) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap_or_default();
    let url = format!("{base}/webhook/github");
    let started = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n {
                    break;
                }
                if let Some(rate) = pace {
                    let due = started + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let b = body(i);
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-hub-signature-256", sign(&b))
                    .body(b)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                    _ => failed += 1,
                }
            }
            (lat, failed)
        }));
    }
    let mut lat = Vec::new();
    let mut failed = 0;
    for t in tasks {
        if let Ok((l, f)) = t.await {
            lat.extend(l);
            failed += f;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    (n as f64 / secs, lat, failed)
}

async fn ingest(backend: &Backend, n: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    for concurrency in [1usize, 16, 64] {
        let Ok(dir) = TempDir::new("bench-ingest") else {
            continue;
        };
        let backend = backend.fresh();
        let toml = relay_toml_with(&dir.0, &backend, &channel_toml());
        let Ok(mut relay) = Relay::start(&dir.0, &toml, "127.0.0.1:0").await else {
            continue;
        };
        let count = if concurrency == 1 { n / 4 } else { n };
        let (rate, lat, failed) = post_all(&relay.base, count, concurrency, None).await;
        rows.push(Row {
            name: format!("ingest c={concurrency}"),
            rate,
            p50_ms: percentile(&lat, 0.5),
            p95_ms: percentile(&lat, 0.95),
            p99_ms: percentile(&lat, 0.99),
            note: format!("{count} x 1 KiB, HMAC, {failed} failed"),
        });
        let _ = relay.stop().await;
        backend.cleanup().await;
    }
    rows
}

async fn end_to_end(
    backend: &Backend,
    protocol: Protocol,
    n: usize,
    pace: Option<f64>,
    linger_ms: Option<u64>,
) -> Option<Row> {
    let dir = TempDir::new("bench-e2e").ok()?;
    let backend = backend.fresh();
    let mut toml = relay_toml_with(&dir.0, &backend, &channel_toml());
    if let Some(ms) = linger_ms {
        toml.push_str(&format!("\n[streaming]\nlong_poll_linger_ms = {ms}\n"));
    }
    let mut relay = Relay::start(&dir.0, &toml, "127.0.0.1:0").await.ok()?;
    let sink = Sink::start("127.0.0.1:0".parse().ok()?, false).await.ok()?;
    let mut ch = webhook_connector::config::ChannelConfig::new("bench", TOKEN);
    ch.protocol = protocol;
    ch.max_concurrent_requests = 64;
    ch.default_target = Some(webhook_connector::config::TargetConfig::new(sink.url()));
    let mut connector =
        Connector::start_with(webhook_connector::ConnectorConfig::new(&relay.base, ch))
            .await
            .ok()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let (_, _, failed) = post_all(&relay.base, n, 32, pace).await;
    let got = sink.wait_for(n, Duration::from_secs(120)).await;
    let secs = started.elapsed().as_secs_f64();
    let received = sink.received();
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    let mut lat = Vec::new();
    for r in &received {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        if !seen.insert(v["i"].as_u64()) {
            duplicates += 1;
        }
        let sent = v["sent_us"].as_u64().unwrap_or(0) as u128;
        let at =
            r.at.duration_since(UNIX_EPOCH)
                .map(|d| d.as_micros())
                .unwrap_or(0);
        lat.push(at.saturating_sub(sent) as f64 / 1000.0);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let lost = n.saturating_sub(seen.len());
    connector.stop().await;
    sink.stop();
    let _ = relay.stop().await;
    backend.cleanup().await;
    Some(Row {
        name: {
            let p = match protocol {
                Protocol::WebSocket => "ws",
                Protocol::Sse => "sse",
                Protocol::LongPoll => "poll",
                Protocol::Auto => "auto",
            };
            let base = match pace {
                Some(r) => format!("e2e {p} at {r}/s"),
                None => format!("e2e {p} saturation"),
            };
            match linger_ms {
                Some(ms) => format!("{base}, linger {ms}"),
                None => base,
            }
        },
        rate: got as f64 / secs,
        p50_ms: percentile(&lat, 0.5),
        p95_ms: percentile(&lat, 0.95),
        p99_ms: percentile(&lat, 0.99),
        note: format!("{n} msgs, lost {lost}, duplicated {duplicates}, post failures {failed}"),
    })
}

/// The backend through the Buffer trait alone: 64 concurrent publishers, then lease+ack.
async fn buffer_limit(backend: &Backend, n: usize) -> Vec<Row> {
    let Ok(dir) = TempDir::new("bench-limit") else {
        return Vec::new();
    };
    let backend = backend.fresh();
    let Some(buffer) = buffers::open(&backend, &dir).await else {
        return Vec::new();
    };
    if !buffers::ensure(&buffer).await {
        return Vec::new();
    }
    let started = Instant::now();
    buffers::publish_all(&buffer, n).await;
    let publish_rate = n as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let done = buffers::settle_all(&buffer, n, &Settle::Ack).await;
    let consume_rate = done as f64 / started.elapsed().as_secs_f64();
    let _ = buffer.delete_channel(buffers::CHANNEL).await;
    let _ = buffer.close().await;
    let mut rows = vec![
        Row {
            name: format!("buffer publish c={LIMIT_CONCURRENCY}"),
            rate: publish_rate,
            note: format!("{n} x 1 KiB via the Buffer trait"),
            ..Row::default()
        },
        Row {
            name: "buffer lease+ack".into(),
            rate: consume_rate,
            note: format!("{done} leased in batches of {LIMIT_BATCH}, acks concurrent"),
            ..Row::default()
        },
    ];
    let size = buffers::envelope(0).encode().len();
    match &backend {
        Backend::RabbitMq { exchange } => {
            rows.extend(raw_broker_limit(&format!("{exchange}.raw"), n, size).await);
        }
        Backend::Redis { prefix } => rows.extend(raw_redis_limit(prefix, n, size).await),
        Backend::Embedded => {}
    }
    backend.cleanup().await;
    rows
}

/// Waits for publishing tasks that each return how many they published: (total, per second
/// since `started`). The first task that failed gives the error.
async fn publishers_done<E>(
    tasks: Vec<tokio::task::JoinHandle<Result<usize, E>>>,
    started: Instant,
) -> Result<(usize, f64), E> {
    let mut published = 0;
    for t in tasks {
        if let Ok(r) = t.await {
            published += r?;
        }
    }
    Ok((
        published,
        published as f64 / started.elapsed().as_secs_f64(),
    ))
}

/// Publishers and lease batch size of the limit rows.
const LIMIT_CONCURRENCY: usize = buffers::CONCURRENCY;
const LIMIT_BATCH: u16 = buffers::BATCH;

/// The broker alone, driven with lapin directly: a durable queue, persistent messages of
/// `size` bytes from [`LIMIT_CONCURRENCY`] publishers each waiting for its confirm, then
/// consumed with a prefetch of [`LIMIT_BATCH`] and acked one by one. The most the RabbitMQ
/// backend could reach on this machine.
async fn raw_broker_limit(queue: &str, n: usize, size: usize) -> Vec<Row> {
    within_limit("raw broker limit", raw_broker(queue, n, size)).await
}

/// The rows of a raw-limit run, or none (with the reason on standard error) when it fails or
/// takes more than 600 s.
async fn within_limit<E: std::fmt::Display>(
    what: &str,
    run: impl std::future::Future<Output = Result<Vec<Row>, E>>,
) -> Vec<Row> {
    match tokio::time::timeout(Duration::from_secs(600), run).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => {
            eprintln!("{what}: {e}");
            Vec::new()
        }
        Err(_) => {
            eprintln!("{what}: no result within 600 s");
            Vec::new()
        }
    }
}

async fn raw_broker(queue: &str, n: usize, size: usize) -> Result<Vec<Row>, lapin::Error> {
    use futures_util::StreamExt;
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
    };
    use lapin::types::FieldTable;

    let conn = lapin::Connection::connect(
        &Backend::rabbitmq_url(),
        lapin::ConnectionProperties::default(),
    )
    .await?;
    let chan = conn.create_channel().await?;
    chan.confirm_select(ConfirmSelectOptions::default()).await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    chan.queue_declare(queue, durable, FieldTable::default())
        .await?;
    let body = std::sync::Arc::new(vec![b'x'; size]);
    let started = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..LIMIT_CONCURRENCY {
        let (chan, next, body, queue) =
            (chan.clone(), next.clone(), body.clone(), queue.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut confirmed = 0usize;
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < n {
                let confirm = chan
                    .basic_publish(
                        "",
                        &queue,
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        &body,
                        lapin::BasicProperties::default().with_delivery_mode(2),
                    )
                    .await?;
                if confirm.await?.is_ack() {
                    confirmed += 1;
                }
            }
            Ok::<usize, lapin::Error>(confirmed)
        }));
    }
    let (published, publish_rate) = publishers_done(tasks, started).await?;
    let consumer_chan = conn.create_channel().await?;
    consumer_chan
        .basic_qos(LIMIT_BATCH, BasicQosOptions::default())
        .await?;
    let mut consumer = consumer_chan
        .basic_consume(
            queue,
            "bench",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let started = Instant::now();
    let mut consumed = 0;
    let mut acks = Vec::new();
    while consumed < published {
        let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_secs(10), consumer.next()).await
        else {
            break;
        };
        let delivery = delivery?;
        acks.push(async move { delivery.ack(BasicAckOptions::default()).await });
        consumed += 1;
        // Acks go out together once the prefetch is used up, as the buffer rows do.
        if acks.len() >= usize::from(LIMIT_BATCH) || consumed == published {
            for r in futures_util::future::join_all(acks.drain(..)).await {
                r?;
            }
        }
    }
    let consume_rate = consumed as f64 / started.elapsed().as_secs_f64();
    chan.queue_delete(queue, QueueDeleteOptions::default())
        .await?;
    let _ = conn.close(200, "done").await;
    Ok(vec![
        Row {
            name: format!("raw broker publish c={LIMIT_CONCURRENCY}"),
            rate: publish_rate,
            note: format!("{published} x {size} B persistent, confirm awaited each, lapin alone"),
            ..Row::default()
        },
        Row {
            name: "raw broker consume+ack".into(),
            rate: consume_rate,
            note: format!("{consumed} consumed, prefetch {LIMIT_BATCH}, acked one by one"),
            ..Row::default()
        },
    ])
}

/// Redis alone, driven with the redis crate directly: `XADD` of `size`-byte entries from
/// [`LIMIT_CONCURRENCY`] tasks on one multiplexed connection (so commands are pipelined), then
/// `XREADGROUP` in batches of [`LIMIT_BATCH`] with one `XACK` per entry, all of a batch's acks
/// in flight together. The most the Redis backend could reach on this machine for the same work
/// (it also runs a script per publish to count and check the queue).
async fn raw_redis_limit(prefix: &str, n: usize, size: usize) -> Vec<Row> {
    within_limit("raw redis limit", raw_redis(prefix, n, size)).await
}

async fn raw_redis(prefix: &str, n: usize, size: usize) -> redis::RedisResult<Vec<Row>> {
    use redis::AsyncCommands;
    use redis::streams::{StreamReadOptions, StreamReadReply};

    let client = redis::Client::open(Backend::redis_url())?;
    let conn = client.get_multiplexed_async_connection().await?;
    let key = format!("{prefix}:raw");
    let body = std::sync::Arc::new(vec![b'x'; size]);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..LIMIT_CONCURRENCY {
        let (mut conn, next, body, key) = (conn.clone(), next.clone(), body.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut added = 0usize;
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < n {
                let _: String = conn.xadd(&key, "*", &[("e", body.as_slice())]).await?;
                added += 1;
            }
            Ok::<usize, redis::RedisError>(added)
        }));
    }
    let (published, publish_rate) = publishers_done(tasks, started).await?;
    let mut reader = conn.clone();
    let _: () = reader.xgroup_create(&key, "bench", "0").await?;
    let options = StreamReadOptions::default()
        .group("bench", "c1")
        .count(usize::from(LIMIT_BATCH));
    let started = Instant::now();
    let mut consumed = 0;
    while consumed < published {
        let reply: StreamReadReply = reader.xread_options(&[&key], &[">"], &options).await?;
        let ids: Vec<String> = reply
            .keys
            .into_iter()
            .flat_map(|k| k.ids)
            .map(|entry| entry.id)
            .collect();
        if ids.is_empty() {
            break;
        }
        let acks = ids.iter().map(|id| {
            let mut conn = conn.clone();
            let key = key.clone();
            async move { conn.xack::<_, _, _, u64>(&key, "bench", &[id]).await }
        });
        for r in futures_util::future::join_all(acks).await {
            r?;
        }
        consumed += ids.len();
    }
    let consume_rate = consumed as f64 / started.elapsed().as_secs_f64();
    let _: u64 = reader.del(&key).await?;
    Ok(vec![
        Row {
            name: format!("raw broker publish c={LIMIT_CONCURRENCY}"),
            rate: publish_rate,
            note: format!("{published} x {size} B, XADD each, redis crate alone"),
            ..Row::default()
        },
        Row {
            name: "raw broker consume+ack".into(),
            rate: consume_rate,
            note: format!("{consumed} read by XREADGROUP COUNT {LIMIT_BATCH}, XACK each"),
            ..Row::default()
        },
    ])
}

/// Appends to each buffer row's note the fraction of its raw counterpart it reaches.
fn note_ratios(rows: &mut [Row]) {
    let rate = |rows: &[Row], prefix: &str| {
        rows.iter()
            .find(|r| r.name.starts_with(prefix))
            .map(|r| r.rate)
    };
    let pairs = [
        ("buffer publish", "raw broker publish"),
        ("buffer lease+ack", "raw broker consume+ack"),
        ("buffer publish", "bare append+fsync"),
    ];
    for (buffer, raw) in pairs {
        let (Some(b), Some(r)) = (rate(rows, buffer), rate(rows, raw)) else {
            continue;
        };
        if r > 0.0
            && let Some(row) = rows.iter_mut().find(|x| x.name.starts_with(buffer))
        {
            row.note.push_str(&format!("; {:.2}x the {raw} row", b / r));
        }
    }
}

/// A bare append + fsync loop: the floor an embedded store pays without group commit.
fn fsync_floor(n: usize) -> Option<Row> {
    use std::io::Write;
    let dir = TempDir::new("bench-fsync").ok()?;
    let mut f = std::fs::File::create(dir.0.join("append.log")).ok()?;
    let block = vec![b'x'; 1024];
    let started = Instant::now();
    for _ in 0..n {
        f.write_all(&block).ok()?;
        f.sync_data().ok()?;
    }
    Some(Row {
        name: "bare append+fsync".into(),
        rate: n as f64 / started.elapsed().as_secs_f64(),
        note: format!("{n} x 1 KiB, one fsync each"),
        ..Row::default()
    })
}

/// Relay RSS with 0 and then `steps` idle WebSocket connectors. The relay is the release binary
/// next to this one, run as its own process so its memory is measured alone.
/// How `scale` holds its idle connectors open.
#[derive(Debug, Clone, Copy)]
enum Idle {
    WebSocket,
    Sse,
    LongPoll,
}

/// One idle connector of `kind` on the relay at `port`; the value keeps it open.
async fn open_idle(
    kind: Idle,
    port: u16,
    http: &reqwest::Client,
) -> Option<Box<dyn std::any::Any + Send>> {
    match kind {
        Idle::WebSocket => {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut request = format!("ws://127.0.0.1:{port}/connect/stream/bench")
                .into_client_request()
                .ok()?;
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {TOKEN}").parse().ok()?);
            let (ws, _) = tokio_tungstenite::connect_async(request).await.ok()?;
            Some(Box::new(ws))
        }
        Idle::Sse => {
            let r = http
                .get(format!("http://127.0.0.1:{port}/connect/stream/bench/sse"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .ok()?;
            (r.status() == 200).then(|| Box::new(r) as Box<dyn std::any::Any + Send>)
        }
        Idle::LongPoll => {
            // A poll held open by the relay (nothing to deliver) until its 60 s timeout.
            let request = http
                .get(format!(
                    "http://127.0.0.1:{port}/connect/stream/bench/poll?timeout=60"
                ))
                .bearer_auth(TOKEN)
                .send();
            let task = tokio::spawn(request);
            Some(Box::new(AbortOnDrop(task)))
        }
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the release relay (beside this binary) as its own process on a free port, with the
/// embedded store in `dir` and `rest` appended to its configuration (channels, limits); with
/// `open_files`, under that `ulimit -n`. Returns once `/readyz` answers 200.
async fn start_release_relay(
    dir: &TempDir,
    rest: &str,
    open_files: Option<u32>,
) -> Option<(std::process::Child, u16)> {
    start_release_relay_at(dir, "", rest, open_files).await
}

/// [`start_release_relay`] with the store file `db` in `dir` (empty: one per port), so a
/// relay started again finds the same store.
async fn start_release_relay_at(
    dir: &TempDir,
    db: &str,
    rest: &str,
    open_files: Option<u32>,
) -> Option<(std::process::Child, u16)> {
    let relay_bin = std::env::current_exe()
        .ok()?
        .with_file_name("webhook-relay");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .ok()?
        .port();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[buffer.embedded]\npath = \"{db}\"\n[state]\npath = \"{state}\"\n[log]\nlevel = \"warn\"\n{rest}",
        db = if db.is_empty() {
            dir.0.join(format!("r{port}.db"))
        } else {
            dir.0.join(db)
        }
        .display(),
        state = dir.0.join(format!("s{port}.json")).display(),
    );
    let path = dir.0.join(format!("relay{port}.toml"));
    std::fs::write(&path, config).ok()?;
    let limit = open_files.map_or_else(String::new, |n| format!("ulimit -n {n} && "));
    let Ok(child) = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{limit}exec \"$0\" --config \"$1\""))
        .arg(&relay_bin)
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .spawn()
    else {
        eprintln!("cannot start {}", relay_bin.display());
        return None;
    };
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{base}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return Some((child, port));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("the relay at {base} did not become ready");
    None
}

/// The relay of the scale and RSS rows: one channel open to 10,000 connectors.
async fn start_scale_relay(dir: &TempDir) -> Option<(std::process::Child, u16)> {
    start_release_relay(
        dir,
        &format!("[limits]\nmax_connections_total = 100000\n[[channels]]\nname = \"bench\"\ntoken = \"{TOKEN}\"\nmax_connections = 10000\n[channels.webhooks.github]\n"),
        None,
    )
    .await
}

/// Relay RSS with 0 and then `steps` idle connectors of each transport, a fresh relay process
/// per transport.
async fn scale(steps: &[usize]) -> Vec<Row> {
    let mut rows = Vec::new();
    let Ok(dir) = TempDir::new("bench-scale") else {
        return rows;
    };
    let http = match reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(120))
        .build()
    {
        Ok(c) => c,
        Err(_) => return rows,
    };
    for (kind, label) in [
        (Idle::WebSocket, "WebSocket"),
        (Idle::Sse, "SSE"),
        (Idle::LongPoll, "long-poll"),
    ] {
        let Some((mut child, port)) = start_scale_relay(&dir).await else {
            return rows;
        };
        let pid = child.id();
        rows.push(Row {
            name: format!("relay RSS, 0 {label}"),
            rate: rss_of(pid),
            note: "MB (in the per-second column)".into(),
            ..Row::default()
        });
        let mut held = Vec::new();
        let mut failed = 0;
        for &target in steps {
            let started = Instant::now();
            while held.len() < target && failed <= 100 {
                match open_idle(kind, port, &http).await {
                    Some(c) => held.push(c),
                    None => failed += 1,
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            rows.push(Row {
                name: format!("relay RSS, {} {label}", held.len()),
                rate: rss_of(pid),
                note: format!(
                    "MB; opened in {:.1} s, {failed} failed",
                    started.elapsed().as_secs_f64()
                ),
                ..Row::default()
            });
        }
        drop(held);
        let _ = child.kill();
        let _ = child.wait();
    }
    rows
}

/// Relay and connector as separate release processes (the binaries next to this one), one
/// WebSocket channel to a local sink: their RSS idle, then the peak of each while `n` webhooks
/// go through at concurrency 64.
async fn process_rss(n: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    let Ok(dir) = TempDir::new("bench-rss") else {
        return rows;
    };
    let Some((mut relay, port)) = start_scale_relay(&dir).await else {
        return rows;
    };
    let base = format!("http://127.0.0.1:{port}");
    let Some(sink) = Sink::start(([127, 0, 0, 1], 0).into(), false).await.ok() else {
        return rows;
    };
    let Some(mut connector) = spawn_connector(&dir, &base, "websocket", &sink.url()) else {
        let _ = relay.kill();
        return rows;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (relay_pid, connector_pid) = (relay.id(), connector.id());
    let mb = |name: &str, v: f64, note: String| Row {
        name: name.into(),
        rate: v,
        note,
        ..Row::default()
    };
    rows.push(mb(
        "relay RSS idle, 1 conn",
        rss_of(relay_pid),
        "MB; one WebSocket connector".into(),
    ));
    rows.push(mb(
        "connector RSS idle",
        rss_of(connector_pid),
        "MB; one WebSocket channel".into(),
    ));
    let sampler = rss::PeakRss::watch(&[relay_pid, connector_pid], Duration::from_millis(50));
    let started = Instant::now();
    let (_, _, failed) = post_all(&base, n, 64, None).await;
    let got = sink.wait_for_distinct(n, Duration::from_secs(180)).await;
    let rate = got as f64 / started.elapsed().as_secs_f64();
    let peaks = sampler.finish().await;
    let (relay_peak, connector_peak) = (peaks[0], peaks[1]);
    let note = format!(
        "MB peak; {n} x 1 KiB at c=64, {got} arrived ({rate:.0}/s), {failed} post failures"
    );
    rows.push(mb("relay RSS under load", relay_peak, note.clone()));
    rows.push(mb("connector RSS under load", connector_peak, note));
    for child in [&mut connector, &mut relay] {
        let _ = child.kill();
        let _ = child.wait();
    }
    sink.stop();
    rows
}

/// Starts the release connector (beside this binary) for the bench channel of the relay at
/// `base`, on `protocol`, delivering to `target` with 64 concurrent requests.
fn spawn_connector(
    dir: &TempDir,
    base: &str,
    protocol: &str,
    target: &str,
) -> Option<std::process::Child> {
    let config = serde_json::json!({
        "cloud_url": base, "channel": "bench", "token": TOKEN, "protocol": protocol,
        "max_concurrent_requests": 64, "log_level": "warn",
        "default_target": {"url": target}
    });
    let path = dir.0.join(format!("connector-{protocol}.json"));
    let connector_bin = std::env::current_exe()
        .map(|p| p.with_file_name("webhook-connector"))
        .unwrap_or_default();
    let spawned = std::fs::write(&path, config.to_string()).and_then(|()| {
        std::process::Command::new(&connector_bin)
            .arg("--config")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .spawn()
    });
    match spawned {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("cannot start {}: {e}", connector_bin.display());
            None
        }
    }
}

/// mimalloc instead of the system allocator: allocation was about a sixth of the CPU profile
/// of the message path (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Every measurement of one backend (or the `--only` group).
async fn run_backend(backend: &Backend, n: usize, only: Option<&str>) -> Vec<Row> {
    let wanted = |group: &str| only.is_none_or(|o| o == group);
    let mut rows = Vec::new();
    if wanted("limit") {
        rows.extend(buffer_limit(backend, n).await);
        if matches!(backend, Backend::Embedded) {
            rows.extend(fsync_floor(2000));
        }
        note_ratios(&mut rows);
    }
    if wanted("admin") {
        rows.extend(admin_ops::admin_ops(backend, n).await);
    }
    if wanted("ingest") {
        rows.extend(ingest(backend, n).await);
    }
    for (group, protocol) in [
        ("websocket", Protocol::WebSocket),
        ("sse", Protocol::Sse),
        ("long_poll", Protocol::LongPoll),
    ] {
        if wanted(group) {
            rows.extend(end_to_end(backend, protocol, n, None, None).await);
            rows.extend(end_to_end(backend, protocol, 10_000.min(n), Some(1000.0), None).await);
        }
    }
    if wanted("long_poll") {
        // The default linger (50 ms) bounds long-poll latency by design; this row shows the
        // transport without it.
        rows.extend(
            end_to_end(
                backend,
                Protocol::LongPoll,
                10_000.min(n),
                Some(1000.0),
                Some(0),
            )
            .await,
        );
    }
    rows
}

fn print_table(label: &str, rows: &[Row]) {
    println!(
        "backend: {label}   cores: {}   process RSS after run: {:.1} MB",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        rss::own_rss()
    );
    println!(
        "{:<28} {:>12} {:>9} {:>9} {:>9}  notes",
        "measurement", "per second", "p50 ms", "p95 ms", "p99 ms"
    );
    let fmt = |v: f64| {
        if v.is_nan() {
            "-".to_owned()
        } else {
            format!("{v:.2}")
        }
    };
    for r in rows {
        println!(
            "{:<28} {:>12.1} {:>9} {:>9} {:>9}  {}",
            r.name,
            r.rate,
            fmt(r.p50_ms),
            fmt(r.p95_ms),
            fmt(r.p99_ms),
            r.note
        );
    }
    println!();
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    // `--all`: every backend, then the process rows (scale and RSS under load).
    let all = args.iter().any(|a| a == "--all");
    let backends = match (all, arg("--backend").as_deref()) {
        (true, _) | (false, Some("all")) => {
            vec![Backend::Embedded, Backend::redis(), Backend::rabbitmq()]
        }
        (false, Some("redis")) => vec![Backend::redis()],
        (false, Some("rabbitmq")) => vec![Backend::rabbitmq()],
        (false, Some("embedded")) => vec![Backend::Embedded],
        // `--scale` alone measures only the relay process.
        (false, None) if arg("--scale").is_some() => Vec::new(),
        (false, None) => vec![Backend::Embedded],
        (false, Some(other)) => {
            eprintln!("unknown backend {other}; use embedded, redis, rabbitmq or all");
            std::process::exit(2);
        }
    };
    let n: usize = arg("--messages")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let steps: Option<Vec<usize>> = match arg("--scale") {
        Some(list) => Some(
            list.split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect(),
        ),
        None if all => Some(vec![1000, 10_000]),
        None => None,
    };
    // `--only limit|admin|ingest|websocket|sse|long_poll|hostile` runs one group.
    let only = arg("--only");
    let hostile_only = only.as_deref() == Some("hostile");
    let cluster_only = only.as_deref() == Some("cluster");
    let mut tables: Vec<(String, Vec<Row>)> = Vec::new();
    // The bare hop first, so every end-to-end row can be printed against it.
    let depth: Option<usize> = arg("--depth").and_then(|v| v.parse().ok());
    let bare = if all || only.as_deref() == Some("drain") || depth.is_some() {
        drain::bare_hop(n).await
    } else {
        None
    };
    for backend in backends
        .iter()
        .filter(|_| !hostile_only && !cluster_only && only.as_deref() != Some("drain"))
    {
        let label = match backend {
            Backend::Embedded => "embedded",
            Backend::Redis { .. } => "redis",
            Backend::RabbitMq { .. } => "rabbitmq",
        };
        let mut rows = run_backend(backend, n, only.as_deref()).await;
        if let Some(bare) = &bare {
            drain::note_ratio_to_bare_hop(&mut rows, bare.rate);
        }
        print_table(label, &rows);
        tables.push((label.to_owned(), rows));
    }
    if let Some(steps) = steps {
        let mut rows = scale(&steps).await;
        rows.extend(process_rss(n).await);
        print_table(
            "processes (release relay and connector, embedded store; MB)",
            &rows,
        );
        tables.push(("processes".to_owned(), rows));
    }
    if all || cluster_only {
        let rows = redis_cluster::rows(n).await;
        print_table(
            "redis cluster (Buffer trait, 12 channels; single Redis and 3 masters)",
            &rows,
        );
        tables.push(("redis-cluster".to_owned(), rows));
    }
    // `--only drain` (and `--all`): the bare hop and the drain rows; `--depth N`: N queued.
    if all || only.as_deref() == Some("drain") || depth.is_some() {
        let limit = bare.as_ref().map(|r| r.rate);
        let mut rows: Vec<Row> = bare.into_iter().collect();
        if all || only.as_deref() == Some("drain") {
            rows.extend(drain::drain_rows(n, limit).await);
        }
        if let Some(depth) = depth {
            rows.extend(drain::depth(depth, limit).await);
        }
        print_table(
            "drain (release relay and connector processes, embedded store)",
            &rows,
        );
        tables.push(("drain".to_owned(), rows));
    }
    if all || hostile_only {
        let rows = hostile::hostile().await;
        print_table(
            "hostile (release relay, embedded store, file limit 1,024)",
            &rows,
        );
        tables.push(("hostile".to_owned(), rows));
    }
    if let Some(path) = arg("--json") {
        let json: Vec<serde_json::Value> = tables
            .iter()
            .flat_map(|(label, rows)| {
                rows.iter().map(move |r| serde_json::json!({"backend": label, "name": r.name, "per_second": r.rate, "p50_ms": r.p50_ms, "p95_ms": r.p95_ms, "p99_ms": r.p99_ms, "note": r.note}))
            })
            .collect();
        if let Err(e) = std::fs::write(
            &path,
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        ) {
            eprintln!("cannot write {path}: {e}");
        }
    }
}
