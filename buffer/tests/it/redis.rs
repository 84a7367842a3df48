//! The conformance suite on the Redis backend, on the real Redis at
//! `WEBHOOK_CONNECT_TEST_REDIS_URL` (default `redis://127.0.0.1:6379/0`). Each test uses its own
//! key prefix and deletes its keys when done.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use webhook_connect_buffer::{
    BufferError, DeadLetterReason, RedisBuffer, RedisOptions, Settle, Settled, SharedBuffer,
};

use webhook_connect_buffer::redis::maintenance::{delete_keys_everywhere, test_cluster_nodes};

use crate::conformance::conformance_suite;
use crate::support::{Harness, ensure, lease, publish, settings, unique};

fn url() -> String {
    std::env::var("WEBHOOK_CONNECT_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

/// A unique key prefix on the single test Redis or on the test Redis Cluster; every key under
/// it is deleted on drop.
pub struct RedisHarness {
    prefix: String,
    /// Empty: the single server at [`url`].
    cluster: Vec<String>,
}

impl RedisHarness {
    pub fn new() -> Self {
        RedisHarness {
            prefix: unique("wct").replace(['-'], "_"),
            cluster: Vec::new(),
        }
    }

    /// On the test Redis Cluster.
    pub fn cluster() -> Self {
        let mut h = RedisHarness::new();
        h.cluster = test_cluster_nodes();
        h
    }

    /// The key prefix of this test's keys.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn options(&self) -> RedisOptions {
        RedisOptions {
            url: url(),
            cluster_nodes: self.cluster.clone(),
            key_prefix: self.prefix.clone(),
            operation_timeout: Duration::from_secs(5),
            ..RedisOptions::default()
        }
    }

    async fn connect(&self) -> RedisBuffer {
        RedisBuffer::connect(self.options())
            .await
            .expect("connect to the test Redis")
    }
}

impl Drop for RedisHarness {
    fn drop(&mut self) {
        delete_keys_everywhere(&url(), &self.cluster, &format!("{}:*", self.prefix));
    }
}

#[async_trait]
impl Harness for RedisHarness {
    async fn open(&self) -> SharedBuffer {
        Arc::new(self.connect().await)
    }

    async fn peer(&self, _buffer: &SharedBuffer) -> SharedBuffer {
        self.open().await
    }

    async fn reopen(&self, buffer: SharedBuffer) -> SharedBuffer {
        buffer.close().await.expect("close");
        drop(buffer);
        self.open().await
    }
}

conformance_suite!(RedisHarness::new());

#[tokio::test]
async fn bad_prefix_is_refused() {
    let err = RedisBuffer::connect(RedisOptions {
        key_prefix: "a:b".into(),
        ..RedisOptions::default()
    })
    .await;
    assert!(matches!(err, Err(BufferError::Invalid(_))));
}

#[tokio::test]
async fn unreachable_redis_is_unavailable_not_a_hang() {
    let err = RedisBuffer::connect(RedisOptions {
        url: "redis://127.0.0.1:1/0".into(),
        operation_timeout: Duration::from_millis(500),
        ..RedisOptions::default()
    })
    .await;
    assert!(
        matches!(err, Err(BufferError::Unavailable(_) | BufferError::Timeout)),
        "{err:?}"
    );
}

#[tokio::test]
async fn unreadable_stored_entry_is_dead_lettered_r63() {
    let h = RedisHarness::new();
    let b = h.open().await;
    ensure(&b, "c", &["w"], &settings()).await;
    // Write garbage the way a broken writer would: an entry of the queue's stream.
    let client = redis::Client::open(url()).unwrap();
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let stream = format!("{}:{{1:c}}:q:1:w:s", h.prefix);
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("m")
        .arg(b"\x00garbage".as_slice())
        .arg("id")
        .arg("msg_bad")
        .arg("seq")
        .arg(1)
        .arg("rcv")
        .arg(0)
        .arg("exp")
        .arg("")
        .query_async(&mut conn)
        .await
        .unwrap();
    let good = publish(&b, "c", "w", 1).await;
    let got = lease(&b, "c", 10, 2_000).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].envelope.message_id, good.message_id);
    let page = b
        .dead_letters("c", &webhook_connect_buffer::DeadLetterQuery::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        page.items[0].reason,
        webhook_connect_buffer::DeadLetterReason::Rejected
    );
    assert_eq!(
        page.items[0].last_error.as_deref(),
        Some("unreadable stored message")
    );
    assert_eq!(page.items[0].envelope.body, b"\x00garbage");
}

#[tokio::test]
async fn queue_depth_counts_only_live_messages_r62() {
    let h = RedisHarness::new();
    let b = h.open().await;
    let s = webhook_connect_buffer::QueueSettings {
        max_queue_size: 2,
        ..settings()
    };
    ensure(&b, "c", &["w"], &s).await;
    for n in 0..2 {
        publish(&b, "c", "w", n).await;
    }
    for l in lease(&b, "c", 10, 2_000).await {
        b.settle(&l.token, webhook_connect_buffer::Settle::Ack)
            .await
            .unwrap();
    }
    // Acked entries are gone from the stream, so two more fit.
    publish(&b, "c", "w", 3).await;
    publish(&b, "c", "w", 4).await;
    let mut e = crate::support::envelope("c", "w", 5);
    assert!(matches!(
        b.publish("w", &mut e).await,
        Err(BufferError::QueueFull)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_lease_on_one_instance_gets_a_publish_from_another() {
    let h = RedisHarness::new();
    let a = h.open().await;
    let b = h.open().await;
    ensure(&a, "c", &["w"], &settings()).await;
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            b.lease("c", 1, Duration::from_secs(10), "other-instance")
                .await
                .expect("lease")
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent = publish(&a, "c", "w", 1).await;
    let got = waiter.await.expect("waiter");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].envelope.message_id, sent.message_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeues_follow_settings_changed_through_another_instance() {
    let h = RedisHarness::new();
    let a = h.open().await;
    let b = h.open().await;
    ensure(&a, "c", &["w"], &settings()).await;
    publish(&a, "c", "w", 1).await;
    let first = lease(&a, "c", 1, 5_000).await.remove(0);
    // `a` built its lease policy from 10 attempts; `b` allows one.
    let one = webhook_connect_buffer::QueueSettings {
        max_delivery_attempts: 1,
        ..settings()
    };
    ensure(&b, "c", &["w"], &one).await;
    let settled = a
        .settle(
            &first.token,
            Settle::Nack {
                retry: true,
                delay: None,
                reason: None,
            },
        )
        .await
        .expect("settle");
    assert_eq!(
        settled,
        Settled::DeadLettered(DeadLetterReason::MaxAttempts)
    );
    // And back to a long delay: `b` learns it from the store on its first requeue.
    let slow = webhook_connect_buffer::QueueSettings {
        requeue_delay_initial: Duration::from_secs(30),
        requeue_delay_max: Duration::from_secs(30),
        ..settings()
    };
    ensure(&a, "c", &["w"], &slow).await;
    publish(&a, "c", "w", 2).await;
    let second = lease(&b, "c", 1, 5_000).await.remove(0);
    let settled = b
        .settle(&second.token, Settle::Release)
        .await
        .expect("settle");
    let Settled::Requeued { ready_at } = settled else {
        panic!("unexpected {settled:?}");
    };
    let wait_ms = ready_at.unix_millis() - webhook_connect_protocol::Timestamp::now().unix_millis();
    assert!(wait_ms >= 20_000, "requeued for {wait_ms} ms only");
}

/// Filtered replay and purge walk the dead letters a page (500) at a time: a message found on
/// a later page, and "all of a webhook" across pages, each exactly once.
#[tokio::test]
async fn filtered_dead_letter_operations_walk_every_page_once() {
    let h = RedisHarness::new();
    let b = h.open().await;
    ensure(&b, "c", &["w"], &settings()).await;
    let total = 1_100;
    let mut newest = None;
    for n in 0..total {
        newest = Some(publish(&b, "c", "w", n).await.message_id);
    }
    let mut dead = 0;
    while dead < total {
        for l in lease(&b, "c", 256, 1_000).await {
            let nack = Settle::Nack {
                retry: false,
                delay: None,
                reason: None,
            };
            assert_eq!(
                b.settle(&l.token, nack).await.unwrap(),
                Settled::DeadLettered(DeadLetterReason::Rejected)
            );
            dead += 1;
        }
    }
    let newest = newest.expect("published");
    assert_eq!(
        b.purge_dead_letters("c", Some("w"), Some(newest.as_str()))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        b.replay_dead_letters("c", Some("w"), None).await.unwrap(),
        total - 1
    );
    let stats = b.stats("c").await.unwrap().total;
    assert_eq!((stats.dead_letters, stats.queued), (0, total - 1));
}
