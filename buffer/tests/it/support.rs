//! Shared helpers of the buffer tests: a harness per backend and message builders.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;
use webhook_connect_buffer::{Lease, QueueSettings, Settle, SharedBuffer};
use webhook_connect_protocol::{DataType, Envelope, Headers, MessageId, Timestamp};

/// Opens stores of one backend for one test; cleans up when dropped.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The store under test (fresh for this test; the same store on later calls).
    async fn open(&self) -> SharedBuffer;
    /// Another handle on the same store, as a second relay instance would have. Backends made
    /// for one instance return the same handle.
    async fn peer(&self, buffer: &SharedBuffer) -> SharedBuffer;
    /// Closes `buffer` and opens the same store again, as a relay restart does.
    async fn reopen(&self, buffer: SharedBuffer) -> SharedBuffer;
    /// Whether an instance can settle a lease taken by another instance (C.2 rule 4). The
    /// RabbitMQ backend cannot: a delivery can only be acked on the AMQP channel that received
    /// it, so another instance answers `NotInFlight` and the message comes back after
    /// its lease.
    fn settles_peer_leases(&self) -> bool {
        true
    }
}

/// Settings for tests: short delays, default limits.
pub fn settings() -> QueueSettings {
    QueueSettings {
        requeue_delay_initial: Duration::from_millis(50),
        requeue_delay_max: Duration::from_millis(200),
        ..QueueSettings::default()
    }
}

/// A JSON message for `channel`/`webhook_id` with body `{"n":n}` and a one-day TTL.
pub fn envelope(channel: &str, webhook_id: &str, n: u64) -> Envelope {
    let now = Timestamp::now();
    let body = format!("{{\"n\":{n}}}");
    Envelope {
        message_id: MessageId::generate(),
        channel: channel.to_owned(),
        webhook_id: webhook_id.to_owned(),
        namespace: None,
        sequence: 0,
        received_at: now,
        expires_at: Some(now.plus_millis(86_400_000)),
        headers: Headers::new(),
        raw_headers: None,
        data_type: DataType::Json,
        content_type: Some("application/json".into()),
        payload: RawValue::from_string(body.clone()).expect("valid json"),
        payload_encoding: None,
        body_omitted: false,
        body: body.into_bytes(),
    }
}

/// Publishes one message into its own webhook queue.
pub async fn publish(buffer: &SharedBuffer, channel: &str, webhook_id: &str, n: u64) -> Envelope {
    let mut e = envelope(channel, webhook_id, n);
    buffer
        .publish(webhook_id, &mut e)
        .await
        .expect("publish accepted");
    e
}

/// Leases up to `max`, waiting up to `wait`.
pub async fn lease(buffer: &SharedBuffer, channel: &str, max: usize, wait_ms: u64) -> Vec<Lease> {
    buffer
        .lease(
            channel,
            max,
            Duration::from_millis(wait_ms),
            "test-consumer",
        )
        .await
        .expect("lease")
}

/// Nacks `lease` with retry, asking for a requeue delay of `delay_ms`.
pub async fn requeue_after(buffer: &SharedBuffer, lease: &Lease, delay_ms: u64) {
    buffer
        .settle(
            &lease.token,
            Settle::Nack {
                retry: true,
                delay: Some(Duration::from_millis(delay_ms)),
                reason: None,
            },
        )
        .await
        .expect("nack accepted");
}

/// Leases exactly one message, waiting up to 10 s for it.
pub async fn lease_one(buffer: &SharedBuffer, channel: &str) -> Lease {
    let mut got = lease(buffer, channel, 1, 10_000).await;
    assert_eq!(got.len(), 1, "expected one message on {channel}");
    got.remove(0)
}

/// The `n` of a test body.
pub fn body_n(lease: &Lease) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(&lease.envelope.body).expect("json body");
    v["n"].as_u64().expect("n")
}

/// Ensures `channel` with the given webhook ids and settings.
pub async fn ensure(buffer: &SharedBuffer, channel: &str, ids: &[&str], settings: &QueueSettings) {
    let ids: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    buffer
        .ensure_channel(channel, &ids, settings)
        .await
        .expect("ensure_channel");
}

/// Unique suffix for names of this test run.
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{tag}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        Timestamp::now().unix_micros()
    )
}
