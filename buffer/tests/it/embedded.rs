//! The conformance suite on the embedded backend, plus its own guarantees: the file lock
//! crash safety under SIGKILL, and stats and sweep read from indexes that stay
//! exact.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use webhook_connect_buffer::{
    Buffer, BufferError, ChannelStats, DeadLetterQuery, DeadLetterReason, EmbeddedBuffer,
    EmbeddedOptions, Lease, QueueSettings, Settle, Settled, SharedBuffer,
};
use webhook_connect_protocol::{Envelope, Timestamp};

use crate::conformance::conformance_suite;
use crate::support::{
    Harness, ensure, envelope, lease, lease_one, publish, requeue_after, settings, unique,
};

/// A store file in its own temporary directory, removed on drop.
pub struct EmbeddedHarness {
    dir: PathBuf,
}

impl EmbeddedHarness {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("wc-buffer-test"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        EmbeddedHarness { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("buffer.db")
    }

    async fn open_store(&self) -> EmbeddedBuffer {
        EmbeddedBuffer::open(self.path(), EmbeddedOptions::default())
            .await
            .expect("open embedded store")
    }
}

impl Drop for EmbeddedHarness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[async_trait]
impl Harness for EmbeddedHarness {
    async fn open(&self) -> SharedBuffer {
        Arc::new(self.open_store().await)
    }

    async fn peer(&self, buffer: &SharedBuffer) -> SharedBuffer {
        buffer.clone()
    }

    async fn reopen(&self, buffer: SharedBuffer) -> SharedBuffer {
        buffer.close().await.expect("close");
        drop(buffer);
        self.open().await
    }
}

conformance_suite!(EmbeddedHarness::new());

#[tokio::test]
async fn second_open_of_the_same_file_is_locked_r70() {
    let h = EmbeddedHarness::new();
    let first = h.open_store().await;
    let second = EmbeddedBuffer::open(h.path(), EmbeddedOptions::default()).await;
    assert!(matches!(second, Err(BufferError::Locked(_))), "{second:?}");
    first.close().await.expect("close");
    assert!(matches!(
        first.health_check().await,
        Err(BufferError::Closed)
    ));
    let again = EmbeddedBuffer::open(h.path(), EmbeddedOptions::default()).await;
    assert!(again.is_ok(), "lock not released by close");
}

#[tokio::test]
async fn second_process_on_the_same_file_is_locked_r70() {
    let h = EmbeddedHarness::new();
    let first = h.open_store().await;
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "embedded::lock_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_PATH_ENV, h.path())
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("LOCKED"), "child said: {stdout}");
    first.close().await.expect("close");
}

const CHILD_PATH_ENV: &str = "WC_BUFFER_TEST_CHILD_PATH";

/// Helper process of `second_process_on_the_same_file_is_locked_r70`.
#[tokio::test]
#[ignore = "helper process, started by another test"]
async fn lock_child() {
    let Some(path) = std::env::var_os(CHILD_PATH_ENV) else {
        return;
    };
    match EmbeddedBuffer::open(PathBuf::from(path), EmbeddedOptions::default()).await {
        Err(BufferError::Locked(_)) => println!("LOCKED"),
        other => println!("NOT LOCKED: {other:?}"),
    }
}

/// Helper process of the crash test: publishes from 8 tasks until killed, printing the id of
/// every confirmed message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process, started by another test"]
async fn crash_child() {
    let Some(path) = std::env::var_os(CHILD_PATH_ENV) else {
        return;
    };
    let b: SharedBuffer = Arc::new(
        EmbeddedBuffer::open(PathBuf::from(path), EmbeddedOptions::default())
            .await
            .expect("open"),
    );
    let s = webhook_connect_buffer::QueueSettings {
        max_queue_size: 1_000_000,
        ..settings()
    };
    ensure(&b, "crash", &["w"], &s).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1024);
    for task in 0..8u64 {
        let b = b.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            for n in 0.. {
                let mut e = envelope("crash", "w", task * 1_000_000 + n);
                if b.publish("w", &mut e).await.is_ok() {
                    let _ = tx.send(e.message_id.to_string()).await;
                }
            }
        });
    }
    drop(tx);
    let mut out = std::io::stdout().lock();
    while let Some(id) = rx.recv().await {
        let _ = writeln!(out, "CONFIRMED {id}");
        let _ = out.flush();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_confirmed_publish_survives_sigkill_r30() {
    let h = EmbeddedHarness::new();
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "embedded::crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_PATH_ENV, h.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(id) = line.strip_prefix("CONFIRMED ")
                && tx.send(id.to_owned()).is_err()
            {
                break;
            }
        }
    });
    // Let it confirm a good number of messages, then kill it mid-flight.
    let mut confirmed = Vec::new();
    let started = Instant::now();
    while confirmed.len() < 300 && started.elapsed() < Duration::from_secs(60) {
        if let Ok(id) = rx.recv_timeout(Duration::from_millis(100)) {
            confirmed.push(id);
        }
    }
    child.kill().expect("SIGKILL child");
    child.wait().expect("reap child");
    reader.join().expect("reader thread");
    confirmed.extend(rx.try_iter());
    assert!(
        confirmed.len() >= 300,
        "child confirmed only {}",
        confirmed.len()
    );

    let b = h.open().await;
    let mut stored = std::collections::HashSet::new();
    let mut max_sequence = 0;
    loop {
        let got = lease(&b, "crash", 1000, 300).await;
        if got.is_empty() {
            break;
        }
        for l in got {
            assert_eq!(l.delivery_count, 1, "never leased before the crash");
            max_sequence = max_sequence.max(l.envelope.sequence);
            stored.insert(l.envelope.message_id.to_string());
            b.settle(&l.token, Settle::Ack).await.expect("ack");
        }
    }
    // numbering goes on above everything stored before the crash.
    let after = publish(&b, "crash", "w", 0).await;
    assert!(after.sequence > max_sequence);
    let missing: Vec<&String> = confirmed
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} confirmed messages lost",
        missing.len(),
        confirmed.len()
    );
}

/// Settings whose requeue delay may be a minute, so a nacked message stays delayed for the test.
fn long_delay_settings() -> QueueSettings {
    QueueSettings {
        requeue_delay_max: Duration::from_secs(60),
        ..settings()
    }
}

/// Publishes a message into `webhook_id` that expires at `expires_at`.
async fn publish_expiring(
    b: &SharedBuffer,
    channel: &str,
    webhook_id: &str,
    n: u64,
    expires_at: Timestamp,
) -> Envelope {
    let mut e = envelope(channel, webhook_id, n);
    e.expires_at = Some(expires_at);
    b.publish(webhook_id, &mut e)
        .await
        .expect("publish accepted");
    e
}

/// Leases the next message of `channel` and checks it is `sent`.
async fn lease_this(b: &SharedBuffer, channel: &str, sent: &Envelope) -> Lease {
    let l = lease_one(b, channel).await;
    assert_eq!(
        l.envelope.message_id, sent.message_id,
        "setup leased another"
    );
    l
}

/// Sleeps until `at` has passed (by a margin, so the store's clock agrees).
async fn sleep_past(at: Timestamp) {
    let left = at.unix_millis() + 200 - Timestamp::now().unix_millis();
    if let Ok(ms) = u64::try_from(left) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// Stats of `channel` with the wall-clock interval (unix ms) in which they were taken.
async fn timed_stats(b: &SharedBuffer, channel: &str) -> (ChannelStats, i64, i64) {
    let before = Timestamp::now().unix_millis();
    let st = b.stats(channel).await.expect("stats");
    (st, before, Timestamp::now().unix_millis())
}

/// Asserts that `age` (seconds, as stats report it) is the age of a message received at
/// `received` for a stats call made between `before` and `after` (unix ms).
fn assert_age_of(age: Option<f64>, received: &Envelope, before: i64, after: i64) {
    let age = age.expect("an oldest queued age");
    let received = received.received_at.unix_millis();
    let lo = (before - received) as f64 / 1000.0;
    let hi = (after - received) as f64 / 1000.0;
    assert!(
        age >= lo - 0.0005 && age <= hi + 0.0005,
        "oldest age {age} s is not the expected message's ({lo}..={hi} s)"
    );
}

/// R-50 with R-28: `queued` counts exactly the waiting messages that have not expired, over a
/// mix of ready, delayed (nacked with a delay), leased and expired ones, where expired ones are
/// ready, delayed, and leased past their expiry. The stats call itself dead-letters the expired
/// waiting ones (reason `expired`), so a sweep right after finds nothing.
#[tokio::test]
async fn stats_are_exact_over_ready_delayed_leased_and_expired_messages_r50_r28() {
    let h = EmbeddedHarness::new();
    let b = h.open().await;
    ensure(&b, "mix", &["w"], &long_delay_settings()).await;
    let expiry = Timestamp::now().plus_millis(2_000);

    let expired_delayed = publish_expiring(&b, "mix", "w", 1, expiry).await;
    let l = lease_this(&b, "mix", &expired_delayed).await;
    requeue_after(&b, &l, 60_000).await;
    let expired_leased = publish_expiring(&b, "mix", "w", 2, expiry).await;
    let held_past_expiry = lease_this(&b, "mix", &expired_leased).await;
    let live_delayed = publish(&b, "mix", "w", 3).await;
    let l = lease_this(&b, "mix", &live_delayed).await;
    requeue_after(&b, &l, 60_000).await;
    let live_leased = publish(&b, "mix", "w", 4).await;
    let held = lease_this(&b, "mix", &live_leased).await;
    let expired_ready = publish_expiring(&b, "mix", "w", 5, expiry).await;
    publish(&b, "mix", "w", 6).await;
    publish(&b, "mix", "w", 7).await;
    let st = b.stats("mix").await.unwrap();
    assert_eq!(
        st.total.queued, 5,
        "before the expiry: two delayed, three ready"
    );
    assert_eq!(st.total.in_flight, 2);

    sleep_past(expiry).await;
    let (st, before, after) = timed_stats(&b, "mix").await;
    assert_eq!(st.total.queued, 3, "one delayed and two ready are live");
    assert_eq!(
        st.total.in_flight, 2,
        "a lease runs on past the message's expiry"
    );
    assert_eq!(st.total.expired, 2);
    assert_eq!(st.total.dead_letters, 2);
    assert_age_of(
        st.total.oldest_queued_age_seconds,
        &live_delayed,
        before,
        after,
    );
    let buried = expired_dead_letters(&b, "mix").await;
    let mut want = vec![expired_delayed.message_id, expired_ready.message_id];
    want.sort();
    assert_eq!(buried, want);
    assert_eq!(b.sweep_expired().await.unwrap(), 0, "stats buried them");

    assert_eq!(
        b.settle(&held_past_expiry.token, Settle::Ack)
            .await
            .unwrap(),
        Settled::Acked
    );
    b.settle(&held.token, Settle::Release).await.unwrap();
    let st = b.stats("mix").await.unwrap();
    assert_eq!(st.total.queued, 4, "the released message waits again");
    assert_eq!(st.total.in_flight, 0);
}

/// R-56 with R-50: a replayed dead letter keeps its received time, so once it waits again the
/// oldest queued age is its age, not that of a message published after it; once it is leased
/// the age is the next one's.
#[tokio::test]
async fn oldest_queued_age_is_the_replayed_dead_letters_r56_r50() {
    let h = EmbeddedHarness::new();
    let b = h.open().await;
    ensure(&b, "replay", &["w"], &settings()).await;
    let old = publish(&b, "replay", "w", 1).await;
    let l = lease_this(&b, "replay", &old).await;
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
    tokio::time::sleep(Duration::from_millis(400)).await;
    let young = publish(&b, "replay", "w", 2).await;
    let (st, before, after) = timed_stats(&b, "replay").await;
    assert_age_of(st.total.oldest_queued_age_seconds, &young, before, after);

    let replayed = b
        .replay_dead_letters("replay", None, Some(old.message_id.as_str()))
        .await
        .unwrap();
    assert_eq!(replayed, 1);
    let (st, before, after) = timed_stats(&b, "replay").await;
    assert_eq!(st.total.queued, 2);
    assert_eq!(st.total.dead_letters, 0);
    assert_age_of(st.total.oldest_queued_age_seconds, &old, before, after);

    let l = lease_this(&b, "replay", &old).await;
    let (st, before, after) = timed_stats(&b, "replay").await;
    assert_eq!(st.total.queued, 1);
    assert_age_of(st.total.oldest_queued_age_seconds, &young, before, after);
    b.settle(&l.token, Settle::Ack).await.unwrap();
}

/// R-28 across a restart: the indexes rebuilt at open find exactly the expired messages, ready,
/// delayed, and leased at the restart (ended as a failed attempt, then waiting), and sweep
/// dead-letters those and nothing else.
#[tokio::test]
async fn sweep_after_reopen_buries_exactly_the_expired_messages_r28() {
    let h = EmbeddedHarness::new();
    let b = h.open().await;
    ensure(&b, "reopen", &["w", "v"], &long_delay_settings()).await;
    let expiry = Timestamp::now().plus_millis(2_000);

    let expired_delayed = publish_expiring(&b, "reopen", "w", 1, expiry).await;
    let l = lease_this(&b, "reopen", &expired_delayed).await;
    requeue_after(&b, &l, 60_000).await;
    let expired_leased = publish_expiring(&b, "reopen", "w", 2, expiry).await;
    let _held = lease_this(&b, "reopen", &expired_leased).await;
    let live_delayed = publish(&b, "reopen", "w", 3).await;
    let l = lease_this(&b, "reopen", &live_delayed).await;
    requeue_after(&b, &l, 60_000).await;
    let expired_ready = publish_expiring(&b, "reopen", "v", 4, expiry).await;
    publish(&b, "reopen", "v", 5).await;
    publish(&b, "reopen", "w", 6).await;

    let b = h.reopen(b).await;
    sleep_past(expiry).await;
    assert_eq!(b.sweep_expired().await.unwrap(), 3);
    assert_eq!(b.sweep_expired().await.unwrap(), 0);
    let buried = expired_dead_letters(&b, "reopen").await;
    let mut want = vec![
        expired_delayed.message_id,
        expired_leased.message_id,
        expired_ready.message_id,
    ];
    want.sort();
    assert_eq!(buried, want);
    let (st, before, after) = timed_stats(&b, "reopen").await;
    assert_eq!(st.total.queued, 3, "one delayed and two ready are live");
    assert_eq!(st.total.in_flight, 0);
    assert_eq!(st.total.expired, 3);
    assert_age_of(
        st.total.oldest_queued_age_seconds,
        &live_delayed,
        before,
        after,
    );
}

/// The ids of `channel`'s dead letters, sorted, each checked to be there for reason `expired`.
async fn expired_dead_letters(
    b: &SharedBuffer,
    channel: &str,
) -> Vec<webhook_connect_protocol::MessageId> {
    let page = b
        .dead_letters(channel, &DeadLetterQuery::default())
        .await
        .unwrap();
    let mut ids: Vec<_> = page
        .items
        .iter()
        .map(|d| {
            assert_eq!(d.reason, DeadLetterReason::Expired);
            d.envelope.message_id.clone()
        })
        .collect();
    ids.sort();
    ids
}

/// A store file written before the index tables existed (messages and dead letters only) is
/// indexed once when opened: every message is leasable in order, and stats and dead letters
/// count as before.
#[tokio::test]
async fn file_without_index_tables_is_indexed_at_open_r50() {
    use redb::{Database, TableDefinition, TableHandle};
    let h = EmbeddedHarness::new();
    let b = h.open().await;
    ensure(&b, "legacy", &["w"], &settings()).await;
    let sent = [
        publish(&b, "legacy", "w", 1).await,
        publish(&b, "legacy", "w", 2).await,
        publish(&b, "legacy", "w", 3).await,
    ];
    let first = lease_one(&b, "legacy").await;
    assert_eq!(first.envelope.message_id, sent[0].message_id);
    let nacked = Settle::Nack {
        retry: false,
        delay: None,
        reason: Some("no".into()),
    };
    b.settle(&first.token, nacked).await.unwrap();
    b.close().await.unwrap();
    drop(b);

    // Take the file back to the earlier layout: no index tables, sizes or format mark.
    {
        let db = Database::create(h.path()).unwrap();
        let txn = db.begin_write().unwrap();
        let names: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_owned())
            .filter(|n| n.starts_with("index_") || n == "queue_sizes")
            .collect();
        assert_eq!(names.len(), 6, "{names:?}");
        for name in names {
            let def: TableDefinition<'_, &[u8], ()> = TableDefinition::new(&name);
            let _ = txn.delete_table(def);
        }
        {
            let mut misc = txn
                .open_table(TableDefinition::<&str, u64>::new("misc"))
                .unwrap();
            assert!(misc.remove("index_format").unwrap().is_some());
        }
        txn.commit().unwrap();
    }

    let b = h.open().await;
    let st = b.stats("legacy").await.unwrap();
    assert_eq!(st.total.queued, 2);
    assert_eq!(st.total.dead_letters, 1);
    let got = lease(&b, "legacy", 10, 2_000).await;
    let ids: Vec<_> = got.iter().map(|l| l.envelope.message_id.clone()).collect();
    assert_eq!(
        ids,
        vec![sent[1].message_id.clone(), sent[2].message_id.clone()]
    );
    for l in &got {
        assert_eq!(
            b.settle(&l.token, Settle::Ack).await.unwrap(),
            Settled::Acked
        );
    }
    let st = b.stats("legacy").await.unwrap();
    assert_eq!((st.total.queued, st.total.in_flight), (0, 0));
    b.close().await.unwrap();
}
