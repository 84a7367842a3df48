//! The buffer conformance suite: every case is written once, as a function of a
//! [`Harness`], and [`conformance_suite!`] instantiates all of them for one backend.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use webhook_connect_buffer::{
    BufferError, DeadLetterQuery, DeadLetterReason, QueueSettings, Settle, Settled, SharedBuffer,
};

use crate::support::{
    Harness, body_n, ensure, envelope, lease, lease_one, publish, requeue_after, settings,
};

/// Instantiates every conformance case for the harness built by `$make`.
macro_rules! conformance_suite {
    ($make:expr) => {
        conformance_suite!(@cases $make;
            publish_lease_ack_removes_the_message_r01,
            publish_refuses_unknown_channel_and_oversized_body,
            nack_with_retry_requeues_after_the_delay_and_counts_r20,
            lease_expiry_redelivers_and_late_ack_is_not_in_flight_r19,
            release_requeues_as_a_failed_attempt_r22,
            max_attempts_moves_the_message_to_dead_letters_r20,
            nack_without_retry_dead_letters_at_once_with_reason_r21,
            expired_messages_are_dead_lettered_not_delivered_nor_queued_r28,
            sweep_moves_expired_messages_to_dead_letters_r28,
            full_queue_refuses_atomically_and_consumes_no_sequence_r03_r11,
            sequence_increases_and_survives_reopen_r24,
            delivery_count_survives_reopen_r23,
            replay_restores_id_sequence_body_and_resets_count_r56,
            replay_into_a_full_queue_fails_and_keeps_the_dead_letter_r56,
            replay_gives_a_fresh_ttl_so_an_expired_message_is_deliverable_again_r56,
            purge_reports_counts_r56,
            dead_letter_listing_is_read_only_and_paged_newest_first_r48_r49,
            competing_consumers_never_hold_one_message_at_once,
            ordered_channel_never_has_two_in_flight_and_keeps_order_r29,
            stats_are_exact_r50,
            names_are_isolated_r64,
            webhook_queues_are_served_round_robin,
            lease_waits_for_a_publish,
            touch_extends_the_lease,
            delete_channel_removes_messages_and_dead_letters,
            health_check_succeeds,
            closed_handle_refuses_operations,
            stale_token_cannot_settle_a_newer_lease_on_any_instance,
            large_backlog_is_delivered_completely_r61,
            ensure_channel_is_idempotent_and_keeps_messages,
            publish_into_an_undeclared_queue_is_refused_r11,
            removed_webhook_queue_is_drained_before_it_disappears,
            lease_running_when_the_ttl_passes_still_accepts_its_ack,
            expired_leases_count_toward_max_attempts_r19_r20,
            long_nack_reason_is_kept_bounded,
            cancelled_lease_call_costs_no_attempt_r27,
            large_binary_body_round_trips_byte_exact_r06,
            returned_lease_is_ready_at_once_without_counting_r27,
            lease_held_at_restart_counts_as_an_attempt_r23,
            a_channel_turned_unordered_still_delivers_its_requeued_message
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $make;
                $crate::conformance::$case(&harness).await;
            }
        )*
    };
}
pub(crate) use conformance_suite;

fn dlq_all() -> DeadLetterQuery {
    DeadLetterQuery {
        limit: 1000,
        ..DeadLetterQuery::default()
    }
}

async fn open_with(
    h: &dyn Harness,
    channel: &str,
    ids: &[&str],
    settings: &QueueSettings,
) -> SharedBuffer {
    let b = h.open().await;
    ensure(&b, channel, ids, settings).await;
    b
}

pub async fn publish_lease_ack_removes_the_message_r01(h: &dyn Harness) {
    let b = open_with(h, "orders", &["stripe"], &settings()).await;
    let sent = publish(&b, "orders", "stripe", 7).await;
    assert!(sent.sequence >= 1);
    let l = lease_one(&b, "orders").await;
    assert_eq!(l.envelope.message_id, sent.message_id);
    assert_eq!(l.envelope.body, sent.body);
    assert_eq!(l.envelope.sequence, sent.sequence);
    assert_eq!(l.envelope.webhook_id, "stripe");
    assert_eq!(l.delivery_count, 1);
    assert_eq!(l.token.queue, "stripe");
    assert_eq!(
        b.settle(&l.token, Settle::Ack).await.unwrap(),
        Settled::Acked
    );
    assert_eq!(
        b.settle(&l.token, Settle::Ack).await.unwrap(),
        Settled::NotInFlight
    );
    assert!(lease(&b, "orders", 10, 200).await.is_empty());
    let s = b.stats("orders").await.unwrap();
    assert_eq!(s.total.queued, 0);
    assert_eq!(s.total.in_flight, 0);
    assert_eq!(s.total.delivered, 1);
    assert_eq!(s.total.published, 1);
}

pub async fn publish_refuses_unknown_channel_and_oversized_body(h: &dyn Harness) {
    let small = QueueSettings {
        max_message_size: 8,
        ..settings()
    };
    let b = open_with(h, "orders", &["stripe"], &small).await;
    let mut e = envelope("orders", "stripe", 123_456_789);
    assert!(matches!(
        b.publish("stripe", &mut e).await,
        Err(BufferError::TooLarge)
    ));
    let mut e = envelope("nowhere", "stripe", 1);
    assert!(matches!(
        b.publish("stripe", &mut e).await,
        Err(BufferError::UnknownChannel(_))
    ));
    assert!(matches!(
        b.lease("nowhere", 1, Duration::ZERO, "c").await,
        Err(BufferError::UnknownChannel(_))
    ));
    let s = b.stats("orders").await.unwrap();
    assert_eq!(s.total.queued, 0);
    assert_eq!(s.total.published, 0);
}

pub async fn nack_with_retry_requeues_after_the_delay_and_counts_r20(h: &dyn Harness) {
    let delay = Duration::from_millis(800);
    let s = QueueSettings {
        requeue_delay_initial: delay,
        requeue_delay_max: Duration::from_secs(2),
        ..settings()
    };
    let b = open_with(h, "orders", &["stripe"], &s).await;
    let sent = publish(&b, "orders", "stripe", 1).await;
    let first = lease_one(&b, "orders").await;
    let nacked_at = Instant::now();
    let settled = b
        .settle(
            &first.token,
            Settle::Nack {
                retry: true,
                delay: None,
                reason: Some("target down".into()),
            },
        )
        .await
        .unwrap();
    assert!(matches!(settled, Settled::Requeued { .. }), "{settled:?}");
    // Waiting out its delay, the message still counts as queued.
    let waiting = b.stats("orders").await.unwrap();
    assert_eq!(
        (waiting.total.queued, waiting.total.in_flight),
        (1, 0),
        "{waiting:?}"
    );
    let second = lease_one(&b, "orders").await;
    let spacing = nacked_at.elapsed();
    assert!(
        spacing >= delay.mul_f64(0.8),
        "redelivered after {spacing:?}, delay {delay:?}"
    );
    assert_eq!(second.envelope.message_id, sent.message_id);
    assert_eq!(second.delivery_count, 2);
    // An explicit delay replaces the computed one.
    let at = Instant::now();
    requeue_after(&b, &second, 300).await;
    let third = lease_one(&b, "orders").await;
    assert!(at.elapsed() >= Duration::from_millis(240));
    assert_eq!(third.delivery_count, 3);
    let st = b.stats("orders").await.unwrap();
    assert_eq!(st.total.nacked, 2);
    assert_eq!(st.total.in_flight, 1);
}

pub async fn lease_expiry_redelivers_and_late_ack_is_not_in_flight_r19(h: &dyn Harness) {
    let s = QueueSettings {
        ack_timeout: Duration::from_millis(400),
        requeue_delay_initial: Duration::from_millis(20),
        requeue_delay_max: Duration::from_millis(20),
        ..settings()
    };
    let b = open_with(h, "orders", &["stripe"], &s).await;
    let sent = publish(&b, "orders", "stripe", 1).await;
    let first = lease_one(&b, "orders").await;
    let second = lease_one(&b, "orders").await;
    assert_eq!(second.envelope.message_id, sent.message_id);
    assert_eq!(second.delivery_count, 2);
    assert_ne!(second.token, first.token);
    assert_eq!(
        b.settle(&first.token, Settle::Ack).await.unwrap(),
        Settled::NotInFlight
    );
    // The current holder's ack still works (if its short lease is still running).
    match b.settle(&second.token, Settle::Ack).await.unwrap() {
        Settled::Acked => {}
        Settled::NotInFlight => {
            // The machine was too slow for the 400 ms lease; it must come back again then.
            let third = lease_one(&b, "orders").await;
            assert_eq!(third.delivery_count, 3);
        }
        other => panic!("unexpected {other:?}"),
    }
}

pub async fn release_requeues_as_a_failed_attempt_r22(h: &dyn Harness) {
    let b = open_with(h, "orders", &["stripe"], &settings()).await;
    publish(&b, "orders", "stripe", 1).await;
    let first = lease_one(&b, "orders").await;
    let r = b.settle(&first.token, Settle::Release).await.unwrap();
    assert!(matches!(r, Settled::Requeued { .. }), "{r:?}");
    let again = lease_one(&b, "orders").await;
    assert_eq!(again.delivery_count, 2);
    assert_eq!(again.envelope.message_id, first.envelope.message_id);
}

pub async fn max_attempts_moves_the_message_to_dead_letters_r20(h: &dyn Harness) {
    let s = QueueSettings {
        max_delivery_attempts: 3,
        requeue_delay_initial: Duration::from_millis(10),
        requeue_delay_max: Duration::from_millis(20),
        ..settings()
    };
    let b = open_with(h, "orders", &["stripe"], &s).await;
    let sent = publish(&b, "orders", "stripe", 1).await;
    for attempt in 1..=3u32 {
        let l = lease_one(&b, "orders").await;
        assert_eq!(l.delivery_count, attempt);
        let r = b
            .settle(
                &l.token,
                Settle::Nack {
                    retry: true,
                    delay: None,
                    reason: Some(format!("fail {attempt}")),
                },
            )
            .await
            .unwrap();
        if attempt < 3 {
            assert!(matches!(r, Settled::Requeued { .. }), "{r:?}");
        } else {
            assert_eq!(r, Settled::DeadLettered(DeadLetterReason::MaxAttempts));
        }
    }
    assert!(lease(&b, "orders", 10, 300).await.is_empty());
    let page = b.dead_letters("orders", &dlq_all()).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let d = &page.items[0];
    assert_eq!(d.reason, DeadLetterReason::MaxAttempts);
    assert_eq!(d.delivery_count, 3);
    assert_eq!(d.envelope.message_id, sent.message_id);
    assert_eq!(d.last_error.as_deref(), Some("fail 3"));
    assert_eq!(d.queue, "stripe");
    let st = b.stats("orders").await.unwrap();
    assert_eq!(st.total.queued, 0);
    assert_eq!(st.total.dead_letters, 1);
    assert_eq!(st.total.dead_lettered, 1);
}

pub async fn nack_without_retry_dead_letters_at_once_with_reason_r21(h: &dyn Harness) {
    let b = open_with(h, "orders", &["stripe"], &settings()).await;
    let sent = publish(&b, "orders", "stripe", 1).await;
    let l = lease_one(&b, "orders").await;
    let r = b
        .settle(
            &l.token,
            Settle::Nack {
                retry: false,
                delay: None,
                reason: Some("schema mismatch".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(r, Settled::DeadLettered(DeadLetterReason::Rejected));
    assert!(lease(&b, "orders", 10, 200).await.is_empty());
    let page = b.dead_letters("orders", &dlq_all()).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let d = &page.items[0];
    assert_eq!(d.reason, DeadLetterReason::Rejected);
    assert_eq!(d.last_error.as_deref(), Some("schema mismatch"));
    assert_eq!(d.delivery_count, 1);
    assert_eq!(d.envelope.message_id, sent.message_id);
    assert_eq!(d.envelope.body, sent.body);
}

pub async fn expired_messages_are_dead_lettered_not_delivered_nor_queued_r28(h: &dyn Harness) {
    let b = open_with(h, "orders", &["stripe"], &settings()).await;
    let mut e = envelope("orders", "stripe", 1);
    e.expires_at = Some(e.received_at.plus_millis(300));
    b.publish("stripe", &mut e).await.unwrap();
    let live = publish(&b, "orders", "stripe", 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let st = b.stats("orders").await.unwrap();
    assert_eq!(st.total.queued, 1, "expired message counted as queued");
    let got = lease(&b, "orders", 10, 300).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].envelope.message_id, live.message_id);
    let page = b.dead_letters("orders", &dlq_all()).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].reason, DeadLetterReason::Expired);
    assert_eq!(page.items[0].envelope.message_id, e.message_id);
    assert_eq!(page.items[0].delivery_count, 0);
    let st = b.stats("orders").await.unwrap();
    assert_eq!(st.total.expired, 1);
    assert_eq!(st.total.queued, 0);
}

pub async fn sweep_moves_expired_messages_to_dead_letters_r28(h: &dyn Harness) {
    let b = open_with(h, "orders", &["stripe", "github"], &settings()).await;
    for (webhook, n) in [("stripe", 1), ("github", 2)] {
        let mut e = envelope("orders", webhook, n);
        e.expires_at = Some(e.received_at.plus_millis(200));
        b.publish(webhook, &mut e).await.unwrap();
    }
    publish(&b, "orders", "stripe", 3).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(b.sweep_expired().await.unwrap(), 2);
    assert_eq!(b.sweep_expired().await.unwrap(), 0);
    let page = b.dead_letters("orders", &dlq_all()).await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(
        page.items
            .iter()
            .all(|d| d.reason == DeadLetterReason::Expired)
    );
    let st = b.stats("orders").await.unwrap();
    assert_eq!(st.total.queued, 1);
    assert_eq!(st.total.expired, 2);
    assert_eq!(st.total.dead_letters, 2);
}

pub async fn full_queue_refuses_atomically_and_consumes_no_sequence_r03_r11(h: &dyn Harness) {
    let s = QueueSettings {
        max_queue_size: 10,
        ..settings()
    };
    let b = open_with(h, "orders", &["stripe", "github"], &s).await;
    let results = join_all((0..50).map(|n| {
        let b = b.clone();
        async move {
            let mut e = envelope("orders", "stripe", n);
            b.publish("stripe", &mut e).await.map(|seq| (seq, e))
        }
    }))
    .await;
    let mut stored = Vec::new();
    let mut full = 0;
    for r in results {
        match r {
            Ok((seq, e)) => {
                assert_eq!(seq, e.sequence);
                stored.push(seq);
            }
            Err(BufferError::QueueFull) => full += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    stored.sort_unstable();
    assert_eq!(stored.len(), 10);
    assert_eq!(full, 40);
    // No refused publish consumed a number: the ten stored ones are consecutive.
    assert_eq!(stored[9] - stored[0], 9, "{stored:?}");
    let st = b.stats("orders").await.unwrap();
    assert_eq!(st.total.queued, 10);
    assert_eq!(st.total.published, 10);
    // Other queues of the channel are not affected.
    let other = publish(&b, "orders", "github", 99).await;
    assert_eq!(other.sequence, stored[9] + 1);
    // Every stored message is whole.
    let mut seen = 0;
    while seen < 11 {
        let got = lease(&b, "orders", 100, 2_000).await;
        assert!(!got.is_empty());
        for l in got {
            assert!(body_n(&l) < 100);
            b.settle(&l.token, Settle::Ack).await.unwrap();
            seen += 1;
        }
    }
    let next = publish(&b, "orders", "stripe", 100).await;
    assert_eq!(next.sequence, stored[9] + 2);
}

pub async fn sequence_increases_and_survives_reopen_r24(h: &dyn Harness) {
    let b = open_with(h, "orders", &["stripe", "github"], &settings()).await;
    let mut last = 0;
    for n in 0..5 {
        let e = publish(
            &b,
            "orders",
            if n % 2 == 0 { "stripe" } else { "github" },
            n,
        )
        .await;
        assert!(e.sequence > last, "{} after {last}", e.sequence);
        last = e.sequence;
    }
    let b = h.reopen(b).await;
    let e = publish(&b, "orders", "stripe", 9).await;
    assert!(e.sequence > last);
    let st = b.stats("orders").await.unwrap();
    assert_eq!(st.total.queued, 6);
    assert_eq!(st.total.published, 6);
}

pub async fn delivery_count_survives_reopen_r23(h: &dyn Harness) {
    let s = QueueSettings {
        ack_timeout: Duration::from_millis(1500),
        ..settings()
    };
    let b = open_with(h, "orders", &["stripe"], &s).await;
    let sent = publish(&b, "orders", "stripe", 1).await;
    let first = lease_one(&b, "orders").await;
    b.settle(
        &first.token,
        Settle::Nack {
            retry: true,
            delay: Some(Duration::ZERO),
            reason: None,
        },
    )
    .await
    .unwrap();
    let second = lease_one(&b, "orders").await;
    assert_eq!(second.delivery_count, 2);
    // Restart with the second delivery still out.
    let b = h.reopen(b).await;
    let third = lease_one(&b, "orders").await;
    assert_eq!(third.envelope.message_id, sent.message_id);
    assert_eq!(third.delivery_count, 3);
    assert_eq!(
        b.settle(&second.token, Settle::Ack).await.unwrap(),
        Settled::NotInFlight
    );
    assert_eq!(
        b.settle(&third.token, Settle::Ack).await.unwrap(),
        Settled::Acked
    );
}

async fn dead_letter_n(b: &SharedBuffer, channel: &str, webhook: &str, n: u64) -> u64 {
    let e = publish(b, channel, webhook, n).await;
    let l = lease_one(b, channel).await;
    assert_eq!(l.envelope.message_id, e.message_id);
    let r = b
        .settle(
            &l.token,
            Settle::Nack {
                retry: false,
                delay: None,
                reason: Some(format!("bad {n}")),
            },
        )
        .await
        .unwrap();
    assert_eq!(r, Settled::DeadLettered(DeadLetterReason::Rejected));
    e.sequence
}

pub async fn replay_restores_id_sequence_body_and_resets_count_r56(h: &dyn Harness) {
    let b = open_with(h, "orders", &["stripe", "github"], &settings()).await;
    dead_letter_n(&b, "orders", "stripe", 1).await;
    dead_letter_n(&b, "orders", "stripe", 2).await;
    dead_letter_n(&b, "orders", "github", 3).await;
    let page = b.dead_letters("orders", &dlq_all()).await.unwrap();
    assert_eq!(page.items.len(), 3);
    let one = page
        .items
        .iter()
        .find(|d| d.queue == "stripe")
        .expect("a stripe dead letter")
        .clone();
    let n = b
        .replay_dead_letters("orders", None, Some(one.envelope.message_id.as_str()))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let l = lease_one(&b, "orders").await;
    assert_eq!(l.envelope.message_id, one.envelope.message_id);
    assert_eq!(l.envelope.sequence, one.envelope.sequence);
    assert_eq!(l.envelope.body, one.envelope.body);
    assert_eq!(l.delivery_count, 1);
    b.settle(&l.token, Settle::Ack).await.unwrap();
    // Replay all of one webhook, then the rest.
    assert_eq!(
        b.replay_dead_letters("orders", Some("github"), None)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        b.replay_dead_letters("orders", None, None).await.unwrap(),
        1
    );
    assert_eq!(
        b.replay_dead_letters("orders", None, None).await.unwrap(),
        0
    );
    let st = b.stats("orders").await.unwrap();
    assert_eq!(st.total.dead_letters, 0);
    assert_eq!(st.total.queued, 2);
    let got = lease(&b, "orders", 10, 2_000).await;
    let mut got = got;
    if got.len() < 2 {
        got.extend(lease(&b, "orders", 10, 2_000).await);
    }
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|l| l.delivery_count == 1));
}

/// `docs/reference/http-api.md` (replay): a replayed message lives `ttl_seconds` from the replay, so an expired
/// dead letter comes back deliverable instead of expiring again at once.
pub async fn replay_gives_a_fresh_ttl_so_an_expired_message_is_deliverable_again_r56(
    h: &dyn Harness,
) {
    let ttl = Duration::from_secs(3600);
    let s = QueueSettings { ttl, ..settings() };
    let b = open_with(h, "orders", &["stripe"], &s).await;
    let mut e = envelope("orders", "stripe", 1);
    e.expires_at = Some(e.received_at.plus_millis(200));
    b.publish("stripe", &mut e).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        lease(&b, "orders", 1, 300).await.is_empty(),
        "expired, not delivered"
    );
    b.sweep_expired().await.unwrap();
    let page = b.dead_letters("orders", &dlq_all()).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].reason, DeadLetterReason::Expired);
    let before = webhook_connect_protocol::Timestamp::now().unix_millis();
    assert_eq!(
        b.replay_dead_letters("orders", None, None).await.unwrap(),
        1
    );
    let after = webhook_connect_protocol::Timestamp::now().unix_millis();
    let l = lease_one(&b, "orders").await;
    assert_eq!(l.envelope.message_id, e.message_id);
    let expires = l.envelope.expires_at.expect("an expiry").unix_millis();
    let ttl_ms = ttl.as_millis() as i64;
    assert!(
        (before + ttl_ms..=after + ttl_ms).contains(&expires),
        "expires {expires}, replayed between {before} and {after}"
    );
}

pub async fn replay_into_a_full_queue_fails_and_keeps_the_dead_letter_r56(h: &dyn Harness) {
    let s = QueueSettings {
        max_queue_size: 2,
        ..settings()
    };
    let b = open_with(h, "orders", &["stripe"], &s).await;
    dead_letter_n(&b, "orders", "stripe", 1).await;
    // after its message was dead-lettered, the queue accepts two new ones.
    publish(&b, "orders", "stripe", 2).await;
    publish(&b, "orders", "stripe", 3).await;
    let page = b.dead_letters("orders", &dlq_all()).await.unwrap();
    let id = page.items[0].envelope.message_id.clone();
    assert!(matches!(
        b.replay_dead_letters("orders", None, Some(id.as_str()))
            .await,
        Err(BufferError::QueueFull)
    ));
    assert!(matches!(
        b.replay_dead_letters("orders", None, None).await,
        Err(BufferError::QueueFull)
    ));
    let page = b.dead_letters("orders", &dlq_all()).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let st = b.stats("orders").await.unwrap();
    assert_eq!(st.total.queued, 2);
    assert_eq!(st.total.dead_letters, 1);
}

pub async fn purge_reports_counts_r56(h: &dyn Harness) {
    let b = open_with(h, "orders", &["stripe", "github"], &settings()).await;
    for n in 0..3 {
        dead_letter_n(&b, "orders", "stripe", n).await;
    }
    for n in 3..5 {
        dead_letter_n(&b, "orders", "github", n).await;
    }
    let page = b.dead_letters("orders", &dlq_all()).await.unwrap();
    let one = page.items[0].envelope.message_id.clone();
    let one_queue = page.items[0].queue.clone();
    assert_eq!(
        b.purge_dead_letters("orders", None, Some(one.as_str()))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        b.purge_dead_letters("orders", None, Some(one.as_str()))
            .await
            .unwrap(),
        0
    );
    let expected_stripe = if one_queue == "stripe" { 2 } else { 3 };
    assert_eq!(
        b.purge_dead_letters("orders", Some("stripe"), None)
            .await
            .unwrap(),
        expected_stripe
    );
    assert_eq!(
        b.purge_dead_letters("orders", None, None).await.unwrap(),
        4 - expected_stripe
    );
    let st = b.stats("orders").await.unwrap();
    assert_eq!(st.total.dead_letters, 0);
    assert!(
        b.dead_letters("orders", &dlq_all())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

pub async fn dead_letter_listing_is_read_only_and_paged_newest_first_r48_r49(h: &dyn Harness) {
    let b = open_with(h, "orders", &["stripe", "github"], &settings()).await;
    let mut seqs = Vec::new();
    for n in 0..5 {
        seqs.push(dead_letter_n(&b, "orders", "stripe", n).await);
    }
    dead_letter_n(&b, "orders", "github", 5).await;
    let q = |cursor: Option<String>| DeadLetterQuery {
        webhook_id: Some("stripe".into()),
        limit: 2,
        cursor,
    };
    let p1 = b.dead_letters("orders", &q(None)).await.unwrap();
    let p1_again = b.dead_letters("orders", &q(None)).await.unwrap();
    let ids = |p: &webhook_connect_buffer::DeadLetterPage| {
        p.items
            .iter()
            .map(|d| d.envelope.sequence)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&p1), vec![seqs[4], seqs[3]]);
    assert_eq!(ids(&p1), ids(&p1_again));
    let p2 = b
        .dead_letters("orders", &q(p1.next_cursor.clone()))
        .await
        .unwrap();
    assert_eq!(ids(&p2), vec![seqs[2], seqs[1]]);
    let p3 = b
        .dead_letters("orders", &q(p2.next_cursor.clone()))
        .await
        .unwrap();
    assert_eq!(ids(&p3), vec![seqs[0]]);
    assert_eq!(p3.next_cursor, None);
    let all = b.dead_letters("orders", &dlq_all()).await.unwrap();
    assert_eq!(all.items.len(), 6);
    assert_eq!(all.items[0].queue, "github");
    let st = b.stats("orders").await.unwrap();
    assert_eq!(st.total.dead_letters, 6);
    assert!(matches!(
        b.dead_letters(
            "orders",
            &DeadLetterQuery {
                limit: 0,
                ..DeadLetterQuery::default()
            }
        )
        .await,
        Err(BufferError::Invalid(_))
    ));
    assert!(matches!(
        b.dead_letters(
            "orders",
            &DeadLetterQuery {
                limit: 1001,
                ..DeadLetterQuery::default()
            }
        )
        .await,
        Err(BufferError::Invalid(_))
    ));
}

pub async fn competing_consumers_never_hold_one_message_at_once(h: &dyn Harness) {
    const N: u64 = 60;
    let b = open_with(h, "orders", &["stripe", "github"], &settings()).await;
    let peer = h.peer(&b).await;
    for n in 0..N {
        publish(
            &b,
            "orders",
            if n % 3 == 0 { "github" } else { "stripe" },
            n,
        )
        .await;
    }
    let held: Arc<Mutex<HashSet<String>>> = Arc::default();
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let consumers = [b.clone(), peer].into_iter().enumerate().map(|(i, buf)| {
        let held = held.clone();
        let acked = acked.clone();
        tokio::spawn(async move {
            loop {
                let got = buf
                    .lease("orders", 4, Duration::from_millis(300), &format!("c{i}"))
                    .await
                    .expect("lease");
                if got.is_empty() {
                    return;
                }
                for l in &got {
                    let fresh = held
                        .lock()
                        .expect("lock")
                        .insert(l.envelope.message_id.to_string());
                    assert!(fresh, "{} held twice", l.envelope.message_id);
                }
                tokio::task::yield_now().await;
                for l in got {
                    assert_eq!(
                        buf.settle(&l.token, Settle::Ack).await.expect("ack"),
                        Settled::Acked
                    );
                    held.lock()
                        .expect("lock")
                        .remove(l.envelope.message_id.as_str());
                    acked.lock().expect("lock").push(body_n(&l));
                }
            }
        })
    });
    for c in join_all(consumers).await {
        c.expect("consumer task");
    }
    let mut acked = acked.lock().expect("lock").clone();
    acked.sort_unstable();
    assert_eq!(acked, (0..N).collect::<Vec<_>>());
}

pub async fn ordered_channel_never_has_two_in_flight_and_keeps_order_r29(h: &dyn Harness) {
    let s = QueueSettings {
        ordered: true,
        ..settings()
    };
    let b = open_with(h, "orders", &["stripe"], &s).await;
    let peer = h.peer(&b).await;
    for n in 1..=3 {
        publish(&b, "orders", "stripe", n).await;
    }
    let first = lease(&b, "orders", 10, 2_000).await;
    assert_eq!(first.len(), 1);
    assert_eq!(body_n(&first[0]), 1);
    assert!(lease(&peer, "orders", 10, 200).await.is_empty());
    requeue_after(&b, &first[0], 100).await;
    // The requeued head is still queued, wherever the backend keeps it during its delay.
    let st = b.stats("orders").await.unwrap();
    assert_eq!((st.total.queued, st.total.in_flight), (3, 0), "{st:?}");
    let mut order = Vec::new();
    let mut counts = Vec::new();
    while order.len() < 3 {
        let got = lease(&peer, "orders", 10, 5_000).await;
        assert_eq!(got.len(), 1, "ordered channel leased {}", got.len());
        assert!(lease(&b, "orders", 10, 0).await.is_empty());
        order.push(body_n(&got[0]));
        counts.push(got[0].delivery_count);
        peer.settle(&got[0].token, Settle::Ack).await.unwrap();
    }
    assert_eq!(order, vec![1, 2, 3]);
    assert_eq!(counts, vec![2, 1, 1]);
}

pub async fn stats_are_exact_r50(h: &dyn Harness) {
    let b = open_with(h, "orders", &["stripe", "github", "idle"], &settings()).await;
    for n in 0..3 {
        publish(&b, "orders", "stripe", n).await;
    }
    for n in 3..5 {
        publish(&b, "orders", "github", n).await;
    }
    let st = b.stats("orders").await.unwrap();
    assert_eq!(st.channel, "orders");
    assert_eq!(st.total.queued, 5);
    assert_eq!(st.total.in_flight, 0);
    assert!(st.total.oldest_queued_age_seconds.is_some());
    let per: HashMap<_, _> = st
        .queues
        .iter()
        .map(|q| (q.webhook_id.clone(), q))
        .collect();
    assert_eq!(per["stripe"].queued, 3);
    assert_eq!(per["github"].queued, 2);
    assert_eq!(per["idle"].queued, 0);
    assert_eq!(per["idle"].oldest_queued_age_seconds, None);
    let got = lease(&b, "orders", 2, 2_000).await;
    assert_eq!(got.len(), 2);
    let st = b.stats("orders").await.unwrap();
    assert_eq!(st.total.queued, 3);
    assert_eq!(st.total.in_flight, 2);
    b.settle(&got[0].token, Settle::Ack).await.unwrap();
    b.settle(
        &got[1].token,
        Settle::Nack {
            retry: false,
            delay: None,
            reason: None,
        },
    )
    .await
    .unwrap();
    let st = b.stats("orders").await.unwrap();
    assert_eq!(st.total.queued, 3);
    assert_eq!(st.total.in_flight, 0);
    assert_eq!(st.total.delivered, 1);
    assert_eq!(st.total.nacked, 1);
    assert_eq!(st.total.dead_letters, 1);
    assert_eq!(st.total.dead_lettered, 1);
    assert_eq!(st.total.published, 5);
    let sum: u64 = st.queues.iter().map(|q| q.queued).sum();
    assert_eq!(sum, 3);
}

pub async fn names_are_isolated_r64(h: &dyn Harness) {
    let b = h.open().await;
    let channels = ["a", "a.b", "a-b", "ab"];
    let ids = ["x", "x.y", "x-y", "xy"];
    for c in channels {
        ensure(&b, c, &ids, &settings()).await;
    }
    let mut n = 0;
    for c in channels {
        for w in ids {
            let mut e = envelope(c, w, n);
            e.webhook_id = w.to_owned();
            b.publish(w, &mut e).await.unwrap();
            n += 1;
        }
    }
    for c in channels {
        let st = b.stats(c).await.unwrap();
        assert_eq!(st.total.queued, 4, "channel {c}");
        let mut got = Vec::new();
        while got.len() < 4 {
            let more = lease(&b, c, 10, 2_000).await;
            assert!(!more.is_empty(), "channel {c}");
            got.extend(more);
        }
        assert!(lease(&b, c, 10, 100).await.is_empty());
        let mut seen: Vec<(String, String)> = got
            .iter()
            .map(|l| (l.envelope.channel.clone(), l.token.queue.clone()))
            .collect();
        assert!(got.iter().all(|l| l.envelope.webhook_id == l.token.queue));
        seen.sort();
        let mut want: Vec<(String, String)> = ids
            .iter()
            .map(|w| (c.to_owned(), (*w).to_owned()))
            .collect();
        want.sort();
        assert_eq!(seen, want);
    }
}

pub async fn webhook_queues_are_served_round_robin(h: &dyn Harness) {
    let b = open_with(h, "orders", &["busy", "quiet"], &settings()).await;
    for n in 0..20 {
        publish(&b, "orders", "busy", n).await;
    }
    publish(&b, "orders", "quiet", 100).await;
    publish(&b, "orders", "quiet", 101).await;
    let mut first_four = Vec::new();
    while first_four.len() < 4 {
        let got = lease(&b, "orders", 1, 2_000).await;
        assert_eq!(got.len(), 1);
        first_four.push(got[0].token.queue.clone());
    }
    let quiet = first_four.iter().filter(|q| *q == "quiet").count();
    assert_eq!(quiet, 2, "{first_four:?}");
}

pub async fn lease_waits_for_a_publish(h: &dyn Harness) {
    let b = open_with(h, "orders", &["stripe"], &settings()).await;
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            b.lease("orders", 5, Duration::from_secs(10), "c")
                .await
                .expect("lease")
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let sent = publish(&b, "orders", "stripe", 1).await;
    let got = waiter.await.expect("waiter");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].envelope.message_id, sent.message_id);
}

pub async fn touch_extends_the_lease(h: &dyn Harness) {
    let s = QueueSettings {
        ack_timeout: Duration::from_secs(2),
        max_lease: Duration::from_secs(60),
        ..settings()
    };
    let b = open_with(h, "orders", &["stripe"], &s).await;
    publish(&b, "orders", "stripe", 1).await;
    let l = lease_one(&b, "orders").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    match b.settle(&l.token, Settle::Touch).await.unwrap() {
        Settled::Extended(until) => assert!(until > l.lease_expires_at),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        b.settle(&l.token, Settle::Ack).await.unwrap(),
        Settled::Acked
    );
    assert_eq!(
        b.settle(&l.token, Settle::Touch).await.unwrap(),
        Settled::NotInFlight
    );
}

pub async fn delete_channel_removes_messages_and_dead_letters(h: &dyn Harness) {
    let b = open_with(h, "orders", &["stripe"], &settings()).await;
    ensure(&b, "other", &["stripe"], &settings()).await;
    dead_letter_n(&b, "orders", "stripe", 1).await;
    publish(&b, "orders", "stripe", 2).await;
    publish(&b, "other", "stripe", 3).await;
    b.delete_channel("orders").await.unwrap();
    assert!(matches!(
        b.stats("orders").await,
        Err(BufferError::UnknownChannel(_))
    ));
    ensure(&b, "orders", &["stripe"], &settings()).await;
    let st = b.stats("orders").await.unwrap();
    assert_eq!(st.total.queued, 0);
    assert_eq!(st.total.dead_letters, 0);
    assert!(lease(&b, "orders", 10, 100).await.is_empty());
    assert_eq!(b.stats("other").await.unwrap().total.queued, 1);
}

pub async fn health_check_succeeds(h: &dyn Harness) {
    let b = h.open().await;
    b.health_check().await.unwrap();
}

pub async fn closed_handle_refuses_operations(h: &dyn Harness) {
    let b = h.open().await;
    b.close().await.unwrap();
    assert!(matches!(b.health_check().await, Err(BufferError::Closed)));
}

pub async fn stale_token_cannot_settle_a_newer_lease_on_any_instance(h: &dyn Harness) {
    let s = QueueSettings {
        requeue_delay_initial: Duration::ZERO,
        ..settings()
    };
    let b = open_with(h, "orders", &["stripe"], &s).await;
    let peer = h.peer(&b).await;
    publish(&b, "orders", "stripe", 1).await;
    let first = lease_one(&b, "orders").await;
    let r = b.settle(&first.token, Settle::Release).await.unwrap();
    assert!(matches!(r, Settled::Requeued { .. }), "{r:?}");
    let second = lease_one(&peer, "orders").await;
    assert_eq!(second.delivery_count, 2);
    for action in [
        Settle::Ack,
        Settle::Touch,
        Settle::Release,
        Settle::Nack {
            retry: false,
            delay: None,
            reason: None,
        },
    ] {
        assert_eq!(
            b.settle(&first.token, action.clone()).await.unwrap(),
            Settled::NotInFlight,
            "{action:?} with a stale token"
        );
        assert_eq!(
            peer.settle(&first.token, action).await.unwrap(),
            Settled::NotInFlight
        );
    }
    // A forged handle changes nothing either.
    let mut forged = second.token.clone();
    forged.handle.push('9');
    assert_eq!(
        b.settle(&forged, Settle::Ack).await.unwrap(),
        Settled::NotInFlight
    );
    if h.settles_peer_leases() {
        // The current holder's ack works from the other instance (C.2 rule 4).
        assert_eq!(
            b.settle(&second.token, Settle::Ack).await.unwrap(),
            Settled::Acked
        );
    } else {
        // This backend settles a lease only on the instance holding it: elsewhere the ack is
        // refused honestly, never reported as done, and the holder's ack still works.
        assert_eq!(
            b.settle(&second.token, Settle::Ack).await.unwrap(),
            Settled::NotInFlight
        );
        assert_eq!(
            peer.settle(&second.token, Settle::Ack).await.unwrap(),
            Settled::Acked
        );
    }
}

pub async fn large_backlog_is_delivered_completely_r61(h: &dyn Harness) {
    const N: u64 = 15_000;
    let s = QueueSettings {
        max_queue_size: 20_000,
        ..settings()
    };
    let b = open_with(h, "orders", &["stripe"], &s).await;
    let publishers = (0..32u64).map(|p| {
        let b = b.clone();
        tokio::spawn(async move {
            let mut n = p;
            while n < N {
                let mut e = envelope("orders", "stripe", n);
                b.publish("stripe", &mut e).await.expect("publish");
                n += 32;
            }
        })
    });
    for p in join_all(publishers).await {
        p.expect("publisher");
    }
    assert_eq!(b.stats("orders").await.unwrap().total.queued, N);
    let mut seen = vec![false; N as usize];
    let mut count = 0;
    while count < N {
        let got = lease(&b, "orders", 1000, 2_000).await;
        assert!(!got.is_empty(), "only {count} of {N} delivered");
        let acks = got.iter().map(|l| b.settle(&l.token, Settle::Ack));
        for r in join_all(acks).await {
            assert_eq!(r.unwrap(), Settled::Acked);
        }
        for l in &got {
            let n = body_n(l) as usize;
            assert!(!seen[n], "{n} delivered twice");
            seen[n] = true;
            count += 1;
        }
    }
    let st = b.stats("orders").await.unwrap();
    assert_eq!(st.total.queued, 0);
    assert_eq!(st.total.delivered, N);
}

pub async fn ensure_channel_is_idempotent_and_keeps_messages(h: &dyn Harness) {
    let b = open_with(h, "orders", &["stripe"], &settings()).await;
    dead_letter_n(&b, "orders", "stripe", 2).await;
    let first = publish(&b, "orders", "stripe", 1).await;
    let changed = QueueSettings {
        max_queue_size: 5,
        ..settings()
    };
    ensure(&b, "orders", &["stripe"], &changed).await;
    ensure(&b, "orders", &["stripe"], &changed).await;
    let st = b.stats("orders").await.unwrap();
    assert_eq!(st.total.queued, 1);
    assert_eq!(st.total.dead_letters, 1);
    assert_eq!(st.total.published, 2);
    let next = publish(&b, "orders", "stripe", 3).await;
    assert!(next.sequence > first.sequence);
    // The new limit applies.
    // Live: `first`, `next` and three more make five; the dead letter does not count.
    for n in 4..7 {
        publish(&b, "orders", "stripe", n).await;
    }
    let mut e = envelope("orders", "stripe", 9);
    assert!(matches!(
        b.publish("stripe", &mut e).await,
        Err(BufferError::QueueFull)
    ));
}

pub async fn publish_into_an_undeclared_queue_is_refused_r11(h: &dyn Harness) {
    let b = open_with(h, "orders", &["stripe"], &settings()).await;
    let mut e = envelope("orders", "github", 1);
    assert!(matches!(
        b.publish("github", &mut e).await,
        Err(BufferError::UnknownChannel(_))
    ));
    let next = publish(&b, "orders", "stripe", 2).await;
    assert_eq!(
        next.sequence, 1,
        "a refused publish consumed a sequence number"
    );
    assert_eq!(b.stats("orders").await.unwrap().total.queued, 1);
}

pub async fn removed_webhook_queue_is_drained_before_it_disappears(h: &dyn Harness) {
    let b = open_with(h, "orders", &["stripe", "github"], &settings()).await;
    let kept = publish(&b, "orders", "github", 1).await;
    ensure(&b, "orders", &["stripe"], &settings()).await;
    let mut e = envelope("orders", "github", 2);
    assert!(matches!(
        b.publish("github", &mut e).await,
        Err(BufferError::UnknownChannel(_))
    ));
    let st = b.stats("orders").await.unwrap();
    assert_eq!(st.total.queued, 1);
    let l = lease_one(&b, "orders").await;
    assert_eq!(l.envelope.message_id, kept.message_id);
    assert_eq!(
        b.settle(&l.token, Settle::Ack).await.unwrap(),
        Settled::Acked
    );
    ensure(&b, "orders", &["stripe"], &settings()).await;
    let st = b.stats("orders").await.unwrap();
    let names: Vec<&str> = st.queues.iter().map(|q| q.webhook_id.as_str()).collect();
    assert_eq!(names, vec!["stripe"]);
}

pub async fn lease_running_when_the_ttl_passes_still_accepts_its_ack(h: &dyn Harness) {
    let b = open_with(h, "orders", &["stripe"], &settings()).await;
    let mut e = envelope("orders", "stripe", 1);
    e.expires_at = Some(e.received_at.plus_millis(1_000));
    b.publish("stripe", &mut e).await.unwrap();
    let got = lease(&b, "orders", 1, 2_000).await;
    if got.is_empty() {
        // Too slow a machine: the message expired before the first lease; it must be a dead
        // letter then, never delivered.
        let page = b.dead_letters("orders", &dlq_all()).await.unwrap();
        assert_eq!(page.items[0].reason, DeadLetterReason::Expired);
        return;
    }
    let wait = got[0]
        .envelope
        .expires_at
        .map(|t| t.unix_millis() - webhook_connect_protocol::Timestamp::now().unix_millis())
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64 + 200)).await;
    assert_eq!(b.stats("orders").await.unwrap().total.in_flight, 1);
    assert_eq!(
        b.settle(&got[0].token, Settle::Ack).await.unwrap(),
        Settled::Acked
    );
    assert!(
        b.dead_letters("orders", &dlq_all())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

pub async fn expired_leases_count_toward_max_attempts_r19_r20(h: &dyn Harness) {
    let s = QueueSettings {
        max_delivery_attempts: 2,
        ack_timeout: Duration::from_millis(300),
        requeue_delay_initial: Duration::from_millis(10),
        requeue_delay_max: Duration::from_millis(10),
        ..settings()
    };
    let b = open_with(h, "orders", &["stripe"], &s).await;
    let sent = publish(&b, "orders", "stripe", 1).await;
    let first = lease_one(&b, "orders").await;
    assert_eq!(first.delivery_count, 1);
    let second = lease_one(&b, "orders").await;
    assert_eq!(second.delivery_count, 2);
    // The second lease runs out too: that was the last attempt.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(lease(&b, "orders", 10, 300).await.is_empty());
    let page = b.dead_letters("orders", &dlq_all()).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].reason, DeadLetterReason::MaxAttempts);
    assert_eq!(page.items[0].delivery_count, 2);
    assert_eq!(page.items[0].envelope.message_id, sent.message_id);
}

pub async fn long_nack_reason_is_kept_bounded(h: &dyn Harness) {
    let b = open_with(h, "orders", &["stripe"], &settings()).await;
    publish(&b, "orders", "stripe", 1).await;
    let l = lease_one(&b, "orders").await;
    let reason = "é".repeat(100_000);
    b.settle(
        &l.token,
        Settle::Nack {
            retry: false,
            delay: None,
            reason: Some(reason.clone()),
        },
    )
    .await
    .unwrap();
    let page = b.dead_letters("orders", &dlq_all()).await.unwrap();
    let kept = page.items[0].last_error.clone().unwrap_or_default();
    assert!(
        !kept.is_empty() && kept.len() <= 1024,
        "{} bytes kept",
        kept.len()
    );
    assert!(reason.starts_with(&kept));
}

pub async fn cancelled_lease_call_costs_no_attempt_r27(h: &dyn Harness) {
    let b = open_with(h, "orders", &["stripe"], &settings()).await;
    let mut cancelled = 0;
    for n in 0..20 {
        let sent = publish(&b, "orders", "stripe", n).await;
        // One poll puts the request on its way; dropping the call then is what a relay does
        // when the last connection leaves while it waits.
        let mut call = b.lease("orders", 10, Duration::from_secs(5), "c");
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx))).await;
        drop(call);
        let l = match first {
            // On a busy machine the call can complete within that one poll; not a cancel then.
            std::task::Poll::Ready(got) => {
                let mut got = got.unwrap();
                assert_eq!(got.len(), 1);
                got.remove(0)
            }
            std::task::Poll::Pending => {
                cancelled += 1;
                lease_one(&b, "orders").await
            }
        };
        assert_eq!(l.envelope.message_id, sent.message_id);
        assert_eq!(
            l.delivery_count, 1,
            "a cancelled lease call counted an attempt"
        );
        assert_eq!(
            b.settle(&l.token, Settle::Ack).await.unwrap(),
            Settled::Acked
        );
        if cancelled == 3 {
            break;
        }
    }
    assert!(cancelled > 0, "no lease call could be cancelled");
    assert_eq!(b.stats("orders").await.unwrap().total.nacked, 0);
}

pub async fn large_binary_body_round_trips_byte_exact_r06(h: &dyn Harness) {
    let b = open_with(h, "orders", &["stripe"], &settings()).await;
    let mut e = envelope("orders", "stripe", 1);
    // 2 MiB of every byte value, not UTF-8, with CR/LF and NULs.
    e.body = (0..2 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    e.data_type = webhook_connect_protocol::DataType::Blob;
    e.raw_headers = Some(vec![("X-Signature".into(), "t=1,v1=abc".into())]);
    b.publish("stripe", &mut e).await.unwrap();
    let l = lease_one(&b, "orders").await;
    assert_eq!(l.envelope.body, e.body);
    assert_eq!(l.envelope.raw_headers, e.raw_headers);
    assert_eq!(
        l.envelope.data_type,
        webhook_connect_protocol::DataType::Blob
    );
    b.settle(
        &l.token,
        Settle::Nack {
            retry: false,
            delay: None,
            reason: None,
        },
    )
    .await
    .unwrap();
    let page = b.dead_letters("orders", &dlq_all()).await.unwrap();
    assert_eq!(page.items[0].envelope.body, e.body);
}

pub async fn returned_lease_is_ready_at_once_without_counting_r27(h: &dyn Harness) {
    let s = QueueSettings {
        requeue_delay_initial: Duration::from_secs(30),
        requeue_delay_max: Duration::from_secs(30),
        ..settings()
    };
    let b = open_with(h, "orders", &["stripe"], &s).await;
    let sent = publish(&b, "orders", "stripe", 1).await;
    let first = lease_one(&b, "orders").await;
    assert_eq!(first.delivery_count, 1);
    let r = b.settle(&first.token, Settle::Return).await.unwrap();
    assert!(matches!(r, Settled::Requeued { .. }), "{r:?}");
    // Ready at once (the 30 s requeue delay does not apply), and still the first delivery.
    let again = lease_one(&b, "orders").await;
    assert_eq!(again.envelope.message_id, sent.message_id);
    assert_eq!(again.delivery_count, 1);
    assert_eq!(
        b.settle(&first.token, Settle::Return).await.unwrap(),
        Settled::NotInFlight
    );
    assert_eq!(
        b.settle(&again.token, Settle::Ack).await.unwrap(),
        Settled::Acked
    );
    let st = b.stats("orders").await.unwrap();
    assert_eq!(st.total.nacked, 0);
}

pub async fn lease_held_at_restart_counts_as_an_attempt_r23(h: &dyn Harness) {
    let s = QueueSettings {
        max_delivery_attempts: 1,
        ack_timeout: Duration::from_millis(800),
        ..settings()
    };
    let b = open_with(h, "orders", &["stripe"], &s).await;
    let sent = publish(&b, "orders", "stripe", 1).await;
    let held = lease_one(&b, "orders").await;
    let b = h.reopen(b).await;
    // The only allowed attempt was used by the lease that the restart ended.
    assert!(lease(&b, "orders", 10, 2_000).await.is_empty());
    let page = b.dead_letters("orders", &dlq_all()).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].reason, DeadLetterReason::MaxAttempts);
    assert_eq!(page.items[0].envelope.message_id, sent.message_id);
    assert_eq!(
        b.settle(&held.token, Settle::Ack).await.unwrap(),
        Settled::NotInFlight
    );
}

pub async fn a_channel_turned_unordered_still_delivers_its_requeued_message(h: &dyn Harness) {
    let ordered = QueueSettings {
        ordered: true,
        ..settings()
    };
    let b = open_with(h, "orders", &["stripe"], &ordered).await;
    for n in 1..=2 {
        publish(&b, "orders", "stripe", n).await;
    }
    let first = lease(&b, "orders", 10, 2_000).await;
    assert_eq!(first.len(), 1);
    requeue_after(&b, &first[0], 300).await;
    b.ensure_channel("orders", &["stripe".to_owned()], &settings())
        .await
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 2 && Instant::now() < deadline {
        for l in lease(&b, "orders", 10, 1_000).await {
            got.push((body_n(&l), l.delivery_count));
            b.settle(&l.token, Settle::Ack).await.unwrap();
        }
    }
    got.sort_unstable();
    assert_eq!(
        got,
        vec![(1, 2), (2, 1)],
        "both delivered once the channel is unordered"
    );
    let st = b.stats("orders").await.unwrap();
    assert_eq!((st.total.queued, st.total.in_flight), (0, 0), "{st:?}");
}
