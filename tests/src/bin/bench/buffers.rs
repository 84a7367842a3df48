//! A buffer of each backend driven directly through the `Buffer` trait, with the steps the
//! limit and admin rows share: open it, create the channel, publish many messages, settle
//! them in lease batches.

use std::sync::Arc;
use std::time::Duration;

use webhook_connect_buffer::{Buffer, QueueSettings, Settle};
use webhook_connect_protocol::{DataType, Envelope, Headers, MessageId, Timestamp};
use webhook_connect_tests::stack::{Backend, TempDir};

/// The channel every buffer row uses (one webhook queue, `w`).
pub const CHANNEL: &str = "limit";
/// Concurrent publishers.
pub const CONCURRENCY: usize = 64;
/// Leases per lease call.
pub const BATCH: u16 = 1000;

/// Message `i`: a 1 KiB body.
pub fn envelope(i: usize) -> Envelope {
    let now = Timestamp::now();
    Envelope {
        message_id: MessageId::generate(),
        channel: CHANNEL.into(),
        webhook_id: "w".into(),
        namespace: None,
        sequence: 0,
        received_at: now,
        expires_at: Some(now.plus_millis(86_400_000)),
        headers: Headers::new(),
        raw_headers: None,
        data_type: DataType::Json,
        content_type: Some("application/json".into()),
        payload: serde_json::value::to_raw_value(&i).unwrap_or_default(),
        payload_encoding: None,
        body_omitted: false,
        body: vec![b'x'; 1024],
    }
}

/// A buffer of `backend` (the embedded store in `dir`), or `None` when it cannot be opened.
pub async fn open(backend: &Backend, dir: &TempDir) -> Option<Arc<dyn Buffer>> {
    let timeout = Duration::from_secs(30);
    let buffer: Arc<dyn Buffer> = match backend {
        Backend::Embedded => {
            let options = webhook_connect_buffer::EmbeddedOptions {
                commit_max_delay: Duration::from_millis(2),
                operation_timeout: timeout,
            };
            Arc::new(
                webhook_connect_buffer::EmbeddedBuffer::open(dir.0.join("limit.db"), options)
                    .await
                    .ok()?,
            )
        }
        Backend::Redis { prefix } => {
            let options = webhook_connect_buffer::RedisOptions {
                url: Backend::redis_url(),
                key_prefix: prefix.clone(),
                operation_timeout: timeout,
                ..Default::default()
            };
            Arc::new(
                webhook_connect_buffer::RedisBuffer::connect(options)
                    .await
                    .ok()?,
            )
        }
        Backend::RabbitMq { exchange } => {
            let options = webhook_connect_buffer::RabbitOptions {
                url: Backend::rabbitmq_url(),
                exchange: exchange.clone(),
                // Room for one lease batch.
                prefetch: BATCH,
                operation_timeout: timeout,
            };
            Arc::new(
                webhook_connect_buffer::RabbitBuffer::connect(options)
                    .await
                    .ok()?,
            )
        }
    };
    Some(buffer)
}

/// Creates [`CHANNEL`] with room for any message count the bench uses.
pub async fn ensure(buffer: &Arc<dyn Buffer>) -> bool {
    let settings = QueueSettings {
        max_queue_size: 10_000_000,
        ..QueueSettings::default()
    };
    buffer
        .ensure_channel(CHANNEL, &["w".into()], &settings)
        .await
        .is_ok()
}

/// Publishes `n` messages from [`CONCURRENCY`] tasks.
pub async fn publish_all(buffer: &Arc<dyn Buffer>, n: usize) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (buffer, next) = (buffer.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n {
                    break;
                }
                let _ = buffer.publish("w", &mut envelope(i)).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Leases up to `n` messages in batches of [`BATCH`] and settles each batch with `action`, all
/// of a batch at once; returns how many were settled.
pub async fn settle_all(buffer: &Arc<dyn Buffer>, n: usize, action: &Settle) -> usize {
    let mut done = 0;
    while done < n {
        let Ok(leases) = buffer
            .lease(
                CHANNEL,
                usize::from(BATCH),
                Duration::from_millis(100),
                "bench",
            )
            .await
        else {
            break;
        };
        if leases.is_empty() {
            break;
        }
        let settled = futures_util::future::join_all(
            leases
                .iter()
                .map(|l| buffer.settle(&l.token, action.clone())),
        )
        .await;
        done += settled.iter().filter(|r| r.is_ok()).count();
    }
    done
}
