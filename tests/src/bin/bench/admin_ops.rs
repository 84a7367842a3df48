//! Admin operations on deep queues, through the `Buffer` trait: stats with `n` messages
//! queued, then with `n` dead letters the newest page of the listing and replaying them all.
//! Every backend reads only about a page: an index (embedded, Redis) or the newest windows of a
//! stream (RabbitMQ, `docs/rabbitmq.md`).

use std::sync::Arc;
use std::time::Instant;

use webhook_connect_buffer::{Buffer, DeadLetterQuery, Settle};
use webhook_connect_tests::stack::{Backend, TempDir};

use super::buffers::{self, CHANNEL};
use super::{Row, percentile};

/// Calls of each timed operation.
const CALLS: usize = 10;

/// Times `CALLS` runs of `op`: (calls per second, p50 ms, p99 ms), or `None` when one failed.
async fn timed<F, Fut, T, E>(op: F) -> Option<(f64, f64, f64)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut ms = Vec::with_capacity(CALLS);
    let started = Instant::now();
    for _ in 0..CALLS {
        let t = Instant::now();
        op().await.ok()?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let rate = CALLS as f64 / started.elapsed().as_secs_f64();
    ms.sort_by(f64::total_cmp);
    Some((rate, percentile(&ms, 0.5), percentile(&ms, 0.99)))
}

fn row(name: String, (rate, p50, p99): (f64, f64, f64), note: String) -> Row {
    Row {
        name,
        rate,
        p50_ms: p50,
        p95_ms: f64::NAN,
        p99_ms: p99,
        note,
    }
}

/// The admin rows of one backend with `n` messages.
pub async fn admin_ops(backend: &Backend, n: usize) -> Vec<Row> {
    let Ok(dir) = TempDir::new("bench-admin") else {
        return Vec::new();
    };
    let backend = backend.fresh();
    let Some(buffer) = buffers::open(&backend, &dir).await else {
        return Vec::new();
    };
    let rows = if buffers::ensure(&buffer).await {
        measure(&buffer, n).await
    } else {
        Vec::new()
    };
    let _ = buffer.delete_channel(CHANNEL).await;
    let _ = buffer.close().await;
    backend.cleanup().await;
    rows
}

async fn measure(buffer: &Arc<dyn Buffer>, n: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    buffers::publish_all(buffer, n).await;
    if let Some(t) = timed(|| buffer.stats(CHANNEL)).await {
        rows.push(row("admin stats".into(), t, format!("{n} queued; calls/s")));
    }
    let reject = Settle::Nack {
        retry: false,
        delay: None,
        reason: Some("bench".into()),
    };
    let started = Instant::now();
    let buried = buffers::settle_all(buffer, n, &reject).await;
    rows.push(Row {
        name: "admin dead-letter (nack)".into(),
        rate: buried as f64 / started.elapsed().as_secs_f64(),
        note: format!("{buried} rejected in lease batches of {}", buffers::BATCH),
        ..Row::default()
    });
    let page = DeadLetterQuery {
        limit: 100,
        ..DeadLetterQuery::default()
    };
    if let Some(t) = timed(|| buffer.dead_letters(CHANNEL, &page)).await {
        rows.push(row(
            "admin list dead letters".into(),
            t,
            format!("newest 100 of {buried}; calls/s"),
        ));
    }
    if let Some(t) = timed(|| buffer.stats(CHANNEL)).await {
        rows.push(row(
            "admin stats (dead letters)".into(),
            t,
            format!("{buried} dead letters; calls/s"),
        ));
    }
    let started = Instant::now();
    if let Ok(replayed) = buffer.replay_dead_letters(CHANNEL, None, None).await {
        rows.push(Row {
            name: "admin replay all".into(),
            rate: replayed as f64 / started.elapsed().as_secs_f64(),
            note: format!("{replayed} dead letters back to the queue"),
            ..Row::default()
        });
    }
    rows
}
