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
