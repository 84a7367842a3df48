//! The conformance suite on the RabbitMQ backend, on the real broker at
//! `WEBHOOK_CONNECT_TEST_RABBITMQ_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`). Each
//! test uses its own exchange name (so its own queues) and deletes them when done.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use webhook_connect_buffer::{
    Buffer, BufferError, DeadLetterQuery, DeadLetterReason, QueueSettings, RabbitBuffer,
    RabbitOptions, Settle, Settled, SharedBuffer,
};

use crate::conformance::conformance_suite;
use crate::support::{Harness, ensure, envelope, lease, lease_one, publish, settings, unique};

fn url() -> String {
    std::env::var("WEBHOOK_CONNECT_TEST_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A unique exchange name; every queue and exchange under it is deleted on drop.
pub struct RabbitHarness {
    exchange: String,
}

impl RabbitHarness {
    pub fn new() -> Self {
        RabbitHarness {
            exchange: unique("wct"),
        }
    }

    fn options(&self) -> RabbitOptions {
        RabbitOptions {
            url: url(),
            exchange: self.exchange.clone(),
            prefetch: 1000,
            operation_timeout: Duration::from_secs(5),
        }
    }

    async fn connect(&self) -> RabbitBuffer {
        RabbitBuffer::connect(self.options())
            .await
            .expect("connect to the test RabbitMQ")
    }
}

impl Drop for RabbitHarness {
    fn drop(&mut self) {
        let options = self.options();
        // Drop runs inside the test's runtime; clean up from a thread with its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(b) = RabbitBuffer::connect(options).await {
                    let _ = b.destroy_all().await;
                    let _ = b.close().await;
                }
            });
        })
        .join();
    }
}

#[async_trait]
impl Harness for RabbitHarness {
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

    fn settles_peer_leases(&self) -> bool {
        false
    }
}

conformance_suite!(RabbitHarness::new());

#[tokio::test]
async fn bad_exchange_and_url_are_refused() {
    let err = RabbitBuffer::connect(RabbitOptions {
        exchange: "a b".into(),
        ..RabbitOptions::default()
    })
    .await;
    assert!(matches!(err, Err(BufferError::Invalid(_))));
    let err = RabbitBuffer::connect(RabbitOptions {
        url: "http://127.0.0.1/".into(),
        ..RabbitOptions::default()
    })
    .await;
    assert!(matches!(err, Err(BufferError::Invalid(_))));
}

#[tokio::test]
async fn unreachable_broker_is_unavailable_not_a_hang_and_hides_the_password() {
    let err = RabbitBuffer::connect(RabbitOptions {
        url: "amqp://user:s3cret-pw@127.0.0.1:1/%2f".into(),
        operation_timeout: Duration::from_millis(500),
        ..RabbitOptions::default()
    })
    .await
    .expect_err("nothing listens on port 1");
    assert!(
        matches!(err, BufferError::Unavailable(_) | BufferError::Timeout),
        "{err:?}"
    );
    assert!(!err.to_string().contains("s3cret-pw"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_refuses_at_publish_and_keeps_the_oldest_r67() {
    let h = RabbitHarness::new();
    let b = h.open().await;
    let s = QueueSettings {
        max_queue_size: 3,
        ..settings()
    };
    ensure(&b, "c", &["w"], &s).await;
    let first = publish(&b, "c", "w", 0).await;
    for n in 1..3 {
        publish(&b, "c", "w", n).await;
    }
    for n in 3..6 {
        let mut e = envelope("c", "w", n);
        assert!(matches!(
            b.publish("w", &mut e).await,
            Err(BufferError::QueueFull)
        ));
    }
    // The oldest message is still the first one out: nothing was dropped to make room.
    let l = lease_one(&b, "c").await;
    assert_eq!(l.envelope.message_id, first.message_id);
    assert_eq!(b.stats("c").await.unwrap().total.queued, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_from_a_dropped_connection_is_not_in_flight_and_redelivered_r68() {
    let h = RabbitHarness::new();
    let b = h.open().await;
    ensure(&b, "c", &["w"], &settings()).await;
    let sent = publish(&b, "c", "w", 1).await;
    let held = lease_one(&b, "c").await;
    // The broker connection of the holder goes away (as when the broker restarts).
    b.close().await.unwrap();
    let b2 = h.open().await;
    assert_eq!(
        b2.settle(&held.token, Settle::Ack).await.unwrap(),
        Settled::NotInFlight
    );
    let again = lease_one(&b2, "c").await;
    assert_eq!(again.envelope.message_id, sent.message_id);
    assert_eq!(again.delivery_count, 2, "the lost delivery counts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_change_applies_to_new_messages_without_redeclaring_r65() {
    let h = RabbitHarness::new();
    let b = h.open().await;
    ensure(&b, "c", &["w"], &settings()).await;
    let changed = QueueSettings {
        ttl: Duration::from_secs(2),
        max_queue_size: 50,
        ..settings()
    };
    // Different settings on the same queues: no PRECONDITION_FAILED.
    ensure(&b, "c", &["w"], &changed).await;
    let mut e = envelope("c", "w", 1);
    e.expires_at = Some(e.received_at.plus_millis(200));
    b.publish("w", &mut e).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(lease(&b, "c", 10, 200).await.is_empty());
    let page = b
        .dead_letters("c", &DeadLetterQuery::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].reason, DeadLetterReason::Expired);
}

/// Dead-letters the next `left` messages of `channel`, a batch of leases at a time, settling
/// each batch at once.
async fn reject_all(b: &SharedBuffer, channel: &str, mut left: usize) {
    while left > 0 {
        let batch = lease(b, channel, left.min(1000), 2_000).await;
        assert!(!batch.is_empty(), "{left} messages still to dead-letter");
        left -= batch.len();
        let settled = futures_util::future::join_all(batch.iter().map(|l| {
            b.settle(
                &l.token,
                Settle::Nack {
                    retry: false,
                    delay: None,
                    reason: Some("bulk".into()),
                },
            )
        }))
        .await;
        for s in settled {
            assert!(matches!(s, Ok(Settled::DeadLettered(_))), "{s:?}");
        }
    }
}

/// R-49 at any depth: a dead-letter queue deeper than the 10 000 an earlier version scanned
/// still lists exactly newest first, pages on, and finds a single message for purge and replay
/// at its far end; nothing is consumed by listing, and replaying all moves every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_beyond_ten_thousand_list_newest_first_r49() {
    const BULK: usize = 10_200;
    let h = RabbitHarness::new();
    let b = h.open().await;
    let s = QueueSettings {
        max_queue_size: 20_000,
        ..settings()
    };
    ensure(&b, "c", &["w"], &s).await;
    let publishes = futures_util::future::join_all((0..BULK as u64).map(|n| {
        let b = b.clone();
        async move {
            let mut e = envelope("c", "w", n);
            b.publish("w", &mut e).await.map(|_| ())
        }
    }))
    .await;
    assert!(publishes.iter().all(Result::is_ok));
    reject_all(&b, "c", BULK).await;
    // Three later ones, each dead-lettered after the one before: they sit at the far end.
    let mut late = Vec::new();
    for n in 0..3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        late.push(publish(&b, "c", "w", 100_000 + n).await.message_id);
        reject_all(&b, "c", 1).await;
    }
    let first = b
        .dead_letters(
            "c",
            &DeadLetterQuery {
                limit: 3,
                ..DeadLetterQuery::default()
            },
        )
        .await
        .unwrap();
    let ids: Vec<_> = first
        .items
        .iter()
        .map(|d| d.envelope.message_id.clone())
        .collect();
    assert_eq!(ids, late.iter().rev().cloned().collect::<Vec<_>>());
    // The next page continues strictly older, with no entry twice.
    let second = b
        .dead_letters(
            "c",
            &DeadLetterQuery {
                limit: 1000,
                cursor: first.next_cursor.clone(),
                ..DeadLetterQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(second.items.len(), 1000);
    assert!(second.next_cursor.is_some());
    let mut seen: std::collections::HashSet<_> = ids.into_iter().collect();
    let mut last = first.items.last().map(|d| d.dead_lettered_at);
    for d in &second.items {
        assert!(last.is_none_or(|k| d.dead_lettered_at <= k), "newest first");
        last = Some(d.dead_lettered_at);
        assert!(seen.insert(d.envelope.message_id.clone()), "listed twice");
    }
    assert_eq!(
        b.stats("c").await.unwrap().total.dead_letters,
        (BULK + 3) as u64
    );
    // Purge and replay find single messages at the far end.
    assert_eq!(
        b.purge_dead_letters("c", None, Some(late[2].as_str()))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        b.replay_dead_letters("c", None, Some(late[1].as_str()))
            .await
            .unwrap(),
        1
    );
    assert_eq!(lease_one(&b, "c").await.envelope.message_id, late[1]);
    let stats = b.stats("c").await.unwrap();
    assert_eq!(stats.total.dead_letters, (BULK + 1) as u64);
    // Replay of all moves every remaining one back.
    assert_eq!(
        b.replay_dead_letters("c", None, None).await.unwrap(),
        (BULK + 1) as u64
    );
    let stats = b.stats("c").await.unwrap();
    assert_eq!(
        (stats.total.dead_letters, stats.total.queued),
        (0, (BULK + 1) as u64)
    );
}

/// Waits up to 5 s for `b`'s stats of `channel` to show `(queued, in_flight)`; returns the
/// last seen.
async fn stats_become(b: &SharedBuffer, channel: &str, want: (u64, u64)) -> (u64, u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let t = b.stats(channel).await.unwrap().total;
        let got = (t.queued, t.in_flight);
        if got == want || std::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Several relay instances on one broker: each one's stats count the leases and the delayed
/// requeues of every instance, not only its own. When an instance closes, its leases are back
/// in the queue and its copies in a delay queue still count as queued until they come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_add_up_the_leases_and_delays_of_every_instance() {
    let h = RabbitHarness::new();
    let a = h.open().await;
    let b = h.peer(&a).await;
    ensure(&a, "c", &["w"], &settings()).await;
    for n in 0..6 {
        publish(&a, "c", "w", n).await;
    }
    let held_a = lease(&a, "c", 2, 2_000).await;
    let held_b = lease(&b, "c", 2, 2_000).await;
    assert_eq!((held_a.len(), held_b.len()), (2, 2));
    crate::support::requeue_after(&b, &held_b[0], 60_000).await;
    // 2 ready + 1 waiting out its delay; 2 leases on a, 1 on b.
    assert_eq!(stats_become(&a, "c", (3, 3)).await, (3, 3));
    assert_eq!(stats_become(&b, "c", (3, 3)).await, (3, 3));
    b.close().await.unwrap();
    // b's lease is back in the queue; its delayed copy still counts.
    assert_eq!(stats_become(&a, "c", (4, 2)).await, (4, 2));
}

/// A channel whose dead letters the older topology kept in a classic `….dlq` (with its webhook
/// queue and channel record) is taken over on the first `ensure_channel`: the dead letters move
/// into the stream with their reason and last error, the queued message is delivered with its
/// sequence, numbers go on after the recorded ones, and the channel's limit holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_of_the_older_topology_are_taken_over_on_first_start() {
    use lapin::options::{
        BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
        QueueDeclareOptions,
    };
    use lapin::types::{AMQPValue, FieldTable, LongString};
    use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

    let h = RabbitHarness::new();
    let ex = h.exchange.clone();
    let base = format!("{ex}.1:c");
    let queue = format!("{base}.1:w");
    let dlq = format!("{queue}.dlq");
    let text = |s: &str| AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()));
    let conn = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .unwrap();
    let chan = conn.create_channel().await.unwrap();
    chan.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let xopts = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    chan.exchange_declare(&ex, ExchangeKind::Topic, xopts, FieldTable::default())
        .await
        .unwrap();
    let dlx = format!("{ex}.dlx");
    chan.exchange_declare(&dlx, ExchangeKind::Direct, xopts, FieldTable::default())
        .await
        .unwrap();
    chan.queue_declare(&dlq, durable, FieldTable::default())
        .await
        .unwrap();
    chan.queue_bind(
        &dlq,
        &dlx,
        &dlq,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(20_000));
    args.insert("x-overflow".into(), text("reject-publish"));
    args.insert("x-dead-letter-exchange".into(), text(&dlx));
    args.insert("x-dead-letter-routing-key".into(), text(&dlq));
    chan.queue_declare(&queue, durable, args).await.unwrap();
    chan.queue_bind(
        &queue,
        &ex,
        &queue,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let put = |q: String, body: Vec<u8>, headers: Vec<(&'static str, AMQPValue)>| {
        let chan = chan.clone();
        async move {
            let mut h = FieldTable::default();
            for (k, v) in headers {
                h.insert(k.into(), v);
            }
            chan.basic_publish(
                "",
                &q,
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_headers(h),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
    };
    let queued = envelope("c", "w", 1);
    let dead = envelope("c", "w", 2);
    let meta = |e: &webhook_connect_protocol::Envelope, seq: i64| {
        vec![
            ("wc-queue", text("w")),
            ("wc-id", text(e.message_id.as_str())),
            ("wc-seq", AMQPValue::LongLongInt(seq)),
            (
                "wc-rcv",
                AMQPValue::LongLongInt(e.received_at.unix_millis()),
            ),
            ("wc-count", AMQPValue::LongLongInt(0)),
        ]
    };
    put(queue.clone(), queued.encode(), meta(&queued, 3)).await;
    let mut dead_meta = meta(&dead, 4);
    dead_meta.extend([
        ("wc-reason", text("rejected")),
        ("wc-err", text("old version")),
        (
            "wc-at",
            AMQPValue::LongLongInt(dead.received_at.unix_millis()),
        ),
    ]);
    put(dlq.clone(), dead.encode(), dead_meta).await;
    let record = serde_json::json!({"v": 1, "data": {
        "settings": {"ttl_ms": 86_400_000u64, "max_queue_size": 10_000, "max_message_size": 1_048_576,
            "max_delivery_attempts": 10, "ack_timeout_ms": 30_000, "max_lease_ms": 3_600_000u64,
            "requeue_delay_initial_ms": 50, "requeue_delay_max_ms": 200, "ordered": false},
        "queues": ["w"], "retired": [], "next_seq": 5,
        "counters": {"w": {"published": 2, "delivered": 0, "nacked": 1, "expired": 0,
            "dead_lettered": 1, "dead_depth": 1}},
        "order_token": false}});
    for (q, body) in [
        (format!("{base}.record"), record),
        (
            format!("{ex}.channels"),
            serde_json::json!({"v": 1, "data": {"channels": ["c"]}}),
        ),
    ] {
        chan.queue_declare(&q, durable, FieldTable::default())
            .await
            .unwrap();
        put(q, serde_json::to_vec(&body).unwrap(), Vec::new()).await;
    }

    let b = h.open().await;
    let s = QueueSettings {
        max_queue_size: 2,
        ..settings()
    };
    ensure(&b, "c", &["w"], &s).await;
    let dlq_depth = chan
        .queue_declare(
            &dlq,
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count();
    assert_eq!(dlq_depth, 0, "the old dead letters moved into the stream");
    let page = b
        .dead_letters("c", &DeadLetterQuery::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].envelope.message_id, dead.message_id);
    assert_eq!(page.items[0].reason, DeadLetterReason::Rejected);
    assert_eq!(page.items[0].last_error.as_deref(), Some("old version"));
    let st = b.stats("c").await.unwrap().total;
    assert_eq!((st.queued, st.dead_letters, st.published), (1, 1, 2));
    // The limit of 2 holds.
    let next = publish(&b, "c", "w", 3).await;
    assert!(next.sequence >= 5, "numbers go on after the recorded ones");
    let mut e = envelope("c", "w", 4);
    assert!(matches!(
        b.publish("w", &mut e).await,
        Err(BufferError::QueueFull)
    ));
    for want in [queued.message_id.clone(), next.message_id.clone()] {
        let l = lease_one(&b, "c").await;
        assert_eq!(l.envelope.message_id, want);
        assert_eq!(l.delivery_count, 1);
        if want == queued.message_id {
            assert_eq!(l.envelope.sequence, 3);
        }
        assert_eq!(
            b.settle(&l.token, Settle::Ack).await.unwrap(),
            Settled::Acked
        );
    }
    // Empty again: two more fit, not a third.
    for n in 5..7 {
        publish(&b, "c", "w", n).await;
    }
    let mut e = envelope("c", "w", 7);
    assert!(matches!(
        b.publish("w", &mut e).await,
        Err(BufferError::QueueFull)
    ));
    let _ = conn.close(200, "done").await;
}

/// The oldest queued age moves on as messages are leased (it is not the age of the first
/// message since the queue was last empty), and an instance that never touched the queue
/// reports the same from the leasing instance's view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oldest_queued_age_follows_the_head_on_every_instance_r50() {
    let h = RabbitHarness::new();
    let a = h.open().await;
    let b = h.peer(&a).await;
    ensure(&a, "c", &["w"], &settings()).await;
    let now = webhook_connect_protocol::Timestamp::now();
    for age_ms in [600_000, 60_000, 60_000] {
        let mut e = envelope("c", "w", 0);
        e.received_at =
            webhook_connect_protocol::Timestamp::from_unix_millis(now.unix_millis() - age_ms)
                .unwrap();
        a.publish("w", &mut e).await.unwrap();
    }
    let age =
        |s: webhook_connect_buffer::ChannelStats| s.total.oldest_queued_age_seconds.unwrap_or(0.0);
    assert!(age(a.stats("c").await.unwrap()) >= 600.0);
    // Two leased: what is left arrived a minute ago.
    assert_eq!(lease(&a, "c", 2, 2_000).await.len(), 2);
    let fresh = |s: f64| (60.0..120.0).contains(&s);
    assert!(fresh(age(a.stats("c").await.unwrap())));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut seen = 0.0;
    while std::time::Instant::now() < deadline {
        seen = age(b.stats("c").await.unwrap());
        if fresh(seen) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fresh(seen), "the other instance reports {seen}");
}
