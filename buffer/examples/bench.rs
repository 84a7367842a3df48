//! Throughput of each buffer backend (not a test):
//!
//! ```text
//! cargo run --release -p webhook-connect-buffer --example bench
//! ```
//!
//! Prints publish/s (64 concurrent publishers, as concurrent ingest requests;
//! `BENCH_PUBLISHERS` changes it) and
//! publish→lease→ack/s (the same publishers with 4 consumers leasing up to 100 at a time and
//! acking each message) for the embedded store and for Redis
//! (`WEBHOOK_CONNECT_TEST_REDIS_URL`, default `redis://127.0.0.1:6379/0`; skipped when
//! unreachable). `BENCH_MESSAGES` sets the message count (default 20 000).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use webhook_connect_buffer::{
    EmbeddedBuffer, EmbeddedOptions, QueueSettings, RedisBuffer, RedisOptions, Settle, SharedBuffer,
};
use webhook_connect_protocol::{DataType, Envelope, Headers, MessageId, Timestamp};

/// Concurrent publishers (like concurrent ingest requests); `BENCH_PUBLISHERS` overrides.
fn publishers() -> u64 {
    std::env::var("BENCH_PUBLISHERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}
const CONSUMERS: usize = 4;

fn envelope(channel: &str, n: u64) -> anyhow::Result<Envelope> {
    let body = format!(
        r#"{{"id":"evt_{n}","type":"charge.succeeded","amount":1234,"currency":"eur","padding":"{}"}}"#,
        "x".repeat(300)
    );
    let now = Timestamp::now();
    let mut headers = Headers::new();
    headers.append("content-type", "application/json");
    headers.append(
        "stripe-signature",
        "t=1773480421,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd",
    );
    Ok(Envelope {
        message_id: MessageId::generate(),
        channel: channel.to_owned(),
        webhook_id: "stripe".into(),
        namespace: None,
        sequence: 0,
        received_at: now,
        expires_at: Some(now.plus_millis(86_400_000)),
        headers,
        raw_headers: None,
        data_type: DataType::Json,
        content_type: Some("application/json".into()),
        payload: RawValue::from_string(body.clone())?,
        payload_encoding: None,
        body_omitted: false,
        body: body.into_bytes(),
    })
}

async fn publish_all(b: &SharedBuffer, channel: &str, total: u64) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..publishers() {
        let b = b.clone();
        let next = next.clone();
        let channel = channel.to_owned();
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return anyhow::Ok(());
                }
                let mut e = envelope(&channel, n)?;
                b.publish("stripe", &mut e).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn consume_all(b: &SharedBuffer, channel: &str, total: u64) -> anyhow::Result<()> {
    let acked = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..CONSUMERS {
        let b = b.clone();
        let acked = acked.clone();
        let channel = channel.to_owned();
        tasks.push(tokio::spawn(async move {
            while acked.load(Ordering::Relaxed) < total {
                let leases = b
                    .lease(
                        &channel,
                        100,
                        Duration::from_millis(100),
                        &format!("bench-{i}"),
                    )
                    .await?;
                let acks = leases.iter().map(|l| b.settle(&l.token, Settle::Ack));
                for r in futures_util::future::join_all(acks).await {
                    r?;
                }
                acked.fetch_add(leases.len() as u64, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn run(name: &str, b: SharedBuffer, total: u64) -> anyhow::Result<()> {
    let settings = QueueSettings {
        max_queue_size: 10_000_000,
        ..QueueSettings::default()
    };
    b.ensure_channel("bench-publish", &["stripe".into()], &settings)
        .await?;
    b.ensure_channel("bench-e2e", &["stripe".into()], &settings)
        .await?;

    let started = Instant::now();
    publish_all(&b, "bench-publish", total).await?;
    let publish_rate = total as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let producer = {
        let b = b.clone();
        tokio::spawn(async move { publish_all(&b, "bench-e2e", total).await })
    };
    consume_all(&b, "bench-e2e", total).await?;
    producer.await??;
    let e2e_rate = total as f64 / started.elapsed().as_secs_f64();

    println!(
        "{name:<9} publish: {publish_rate:>8.0} msg/s   publish→lease→ack: {e2e_rate:>8.0} msg/s   ({total} messages, {} publishers)",
        publishers()
    );
    b.delete_channel("bench-publish").await?;
    b.delete_channel("bench-e2e").await?;
    b.close().await?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let total: u64 = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);

    let dir = std::env::temp_dir().join(format!("wc-buffer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let embedded = EmbeddedBuffer::open(dir.join("bench.db"), EmbeddedOptions::default()).await?;
    let result = run("embedded", Arc::new(embedded), total).await;
    let _ = std::fs::remove_dir_all(&dir);
    result?;

    let url = std::env::var("WEBHOOK_CONNECT_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned());
    let prefix = format!("wc_bench_{}", std::process::id());
    match RedisBuffer::connect(RedisOptions {
        url: url.clone(),
        key_prefix: prefix.clone(),
        operation_timeout: Duration::from_secs(5),
        ..RedisOptions::default()
    })
    .await
    {
        Ok(redis) => {
            let result = run("redis", Arc::new(redis), total).await;
            remove_keys(&url, &prefix);
            result?;
        }
        Err(e) => println!("redis     skipped: {e}"),
    }
    Ok(())
}

/// Deletes what the bench left under its key prefix (sequences, counters).
fn remove_keys(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut conn)
        .unwrap_or_default();
    if !keys.is_empty() {
        let _ = redis::cmd("DEL").arg(&keys).query::<i64>(&mut conn);
    }
}
