//! Redis Cluster rows (`--only cluster`, and `--all`): the Redis buffer driven through the
//! `Buffer` trait with the webhooks spread over [`CHANNELS`] channels, once on the single Redis
//! and once on the 3-master test cluster (`scripts/services.sh redis-cluster`, or the seeds in
//! `WEBHOOK_CONNECT_TEST_REDIS_CLUSTER`), in the same run: ingest (publish from
//! [`PUBLISHERS`] tasks) and drain (one consumer per channel leasing batches and acking each).
//! A channel lives in one slot, so the channels spread over the masters.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use webhook_connect_buffer::redis::maintenance::{delete_keys_everywhere, test_cluster_nodes};
use webhook_connect_buffer::{Buffer, QueueSettings, RedisBuffer, RedisOptions, Settle};
use webhook_connect_tests::stack::Backend;

use super::Row;

/// Channels the webhooks are spread over.
const CHANNELS: usize = 12;
/// Concurrent publishers.
const PUBLISHERS: usize = 64;
/// Leases per lease call.
const BATCH: usize = 100;

fn channel(i: usize) -> String {
    format!("spread-{}", i % CHANNELS)
}

/// The rows of the single Redis and of the cluster, `n` webhooks each.
pub async fn rows(n: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    for (label, cluster) in [
        ("redis single", Vec::new()),
        ("redis cluster", test_cluster_nodes()),
    ] {
        match measure(label, &cluster, n).await {
            Ok(mut r) => rows.append(&mut r),
            Err(e) => eprintln!("{label}: skipped ({e})"),
        }
    }
    rows
}

async fn measure(label: &str, cluster: &[String], n: usize) -> Result<Vec<Row>, String> {
    let prefix = format!("wc_bench_{:016x}", rand::random::<u64>());
    let options = RedisOptions {
        url: Backend::redis_url(),
        cluster_nodes: cluster.to_vec(),
        key_prefix: prefix.clone(),
        operation_timeout: Duration::from_secs(30),
        ..RedisOptions::default()
    };
    let buffer: Arc<dyn Buffer> = Arc::new(
        RedisBuffer::connect(options)
            .await
            .map_err(|e| e.to_string())?,
    );
    let result = run(label, &buffer, n).await;
    let _ = buffer.close().await;
    delete_keys_everywhere(&Backend::redis_url(), cluster, &format!("{prefix}:*"));
    result
}

async fn run(label: &str, buffer: &Arc<dyn Buffer>, n: usize) -> Result<Vec<Row>, String> {
    let settings = QueueSettings {
        max_queue_size: 10_000_000,
        ..QueueSettings::default()
    };
    for c in 0..CHANNELS {
        buffer
            .ensure_channel(&channel(c), &["w".into()], &settings)
            .await
            .map_err(|e| e.to_string())?;
    }
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..PUBLISHERS {
        let (buffer, next) = (buffer.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut published = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return published;
                }
                let mut e = super::buffers::envelope(i);
                e.channel = channel(i);
                if buffer.publish("w", &mut e).await.is_ok() {
                    published += 1;
                }
            }
        }));
    }
    let mut published = 0;
    for t in tasks {
        published += t.await.unwrap_or(0);
    }
    let publish_rate = published as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut consumers = Vec::new();
    for c in 0..CHANNELS {
        let buffer = buffer.clone();
        consumers.push(tokio::spawn(
            async move { drain(&buffer, &channel(c)).await },
        ));
    }
    let mut drained = 0;
    for t in consumers {
        drained += t.await.unwrap_or(0);
    }
    let drain_rate = drained as f64 / started.elapsed().as_secs_f64();
    Ok(vec![
        Row {
            name: format!("{label} publish c={PUBLISHERS}"),
            rate: publish_rate,
            note: format!("{published} of {n} x 1 KiB over {CHANNELS} channels"),
            ..Row::default()
        },
        Row {
            name: format!("{label} drain"),
            rate: drain_rate,
            note: format!(
                "{drained} leased in batches of {BATCH} and acked, one consumer per channel"
            ),
            ..Row::default()
        },
    ])
}

/// Leases and acks until `channel` is empty; returns how many were acked.
async fn drain(buffer: &Arc<dyn Buffer>, channel: &str) -> usize {
    let mut done = 0;
    loop {
        let Ok(leases) = buffer
            .lease(channel, BATCH, Duration::from_millis(200), "bench")
            .await
        else {
            return done;
        };
        if leases.is_empty() {
            return done;
        }
        let settled = futures_util::future::join_all(
            leases.iter().map(|l| buffer.settle(&l.token, Settle::Ack)),
        )
        .await;
        done += settled.iter().filter(|r| r.is_ok()).count();
    }
}
