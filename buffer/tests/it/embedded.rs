//! The conformance suite on the embedded backend, plus its own guarantees: the file lock
//! and crash safety under SIGKILL.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use webhook_connect_buffer::{
    Buffer, BufferError, EmbeddedBuffer, EmbeddedOptions, Settle, SharedBuffer,
};

use crate::conformance::conformance_suite;
use crate::support::{Harness, ensure, envelope, lease, settings, unique};

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
    let after = crate::support::publish(&b, "crash", "w", 0).await;
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
