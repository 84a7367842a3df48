//! Completion record (`docs/reference/wire-protocol.md` C.8, R-82): message ids whose local work completed, so a
//! redelivery (its ack was lost) is acked without calling the target again. Bounded by capacity
//! (oldest evicted first) and by age.
//!
//! With `completion_record.path` the record is also appended to a file (`<unix seconds> <id>`
//! per line), read back at start-up and compacted when it grows past twice the capacity, so
//! deduplication survives restarts. Writes are not fsynced: after a crash the last few ids may
//! be missing, which costs at most a duplicate delivery.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::{Duration, Instant};

use crate::config::CompletionRecordConfig;

/// Bounded, time-limited set of completed message ids, shared by a channel's workers.
#[derive(Debug)]
pub struct CompletionRecord {
    capacity: usize,
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Persisted {
    path: PathBuf,
    file: File,
    lines: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// (id, when recorded, unix seconds when recorded)
    order: VecDeque<(String, Instant, u64)>,
    ids: HashMap<String, Instant>,
    persisted: Option<Persisted>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn storable(id: &str) -> bool {
    !id.is_empty() && id.len() <= 256 && !id.chars().any(char::is_whitespace)
}

impl CompletionRecord {
    /// An empty in-memory record (`path` is ignored).
    pub fn new(config: &CompletionRecordConfig) -> Self {
        CompletionRecord {
            capacity: config.capacity.max(1),
            ttl: config.ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The record of `config`, loaded from and appended to `config.path` when set; `channel`
    /// keeps the records of several channels apart (`<path>.<channel>`).
    pub fn open(config: &CompletionRecordConfig, channel: &str) -> Result<Self, String> {
        let record = Self::new(config);
        let Some(base) = &config.path else {
            return Ok(record);
        };
        let path = PathBuf::from(format!("{}.{channel}", base.display()));
        {
            let mut inner = record.lock();
            load(&path, &mut inner, record.ttl, record.capacity).map_err(|e| {
                format!(
                    "completion_record.path: cannot read {}: {e}",
                    path.display()
                )
            })?;
            let file = rewrite(&path, &inner.order).map_err(|e| {
                format!(
                    "completion_record.path: cannot write {}: {e}",
                    path.display()
                )
            })?;
            let lines = inner.order.len();
            inner.persisted = Some(Persisted { path, file, lines });
        }
        Ok(record)
    }

    /// True when `message_id` completed within the TTL.
    pub fn contains(&self, message_id: &str) -> bool {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.expire(now, self.ttl);
        inner.ids.contains_key(message_id)
    }

    /// Records `message_id` as fully complete.
    pub fn record(&self, message_id: &str) {
        let now = Instant::now();
        let unix = unix_now();
        let mut inner = self.lock();
        inner.expire(now, self.ttl);
        if inner.ids.insert(message_id.to_owned(), now).is_some() {
            inner.order.retain(|(id, _, _)| id != message_id);
        }
        inner.order.push_back((message_id.to_owned(), now, unix));
        while inner.order.len() > self.capacity {
            if let Some((id, _, _)) = inner.order.pop_front() {
                inner.ids.remove(&id);
            }
        }
        if storable(message_id) {
            inner.append(message_id, unix, self.capacity);
        }
    }

    /// Number of ids held.
    pub fn len(&self) -> usize {
        self.lock().ids.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn load(path: &Path, inner: &mut Inner, ttl: Duration, capacity: usize) -> std::io::Result<()> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let now = Instant::now();
    let unix = unix_now();
    for line in BufReader::new(file).lines() {
        let line = line?;
        let Some((secs, id)) = line.split_once(' ') else {
            continue;
        };
        let Ok(secs) = secs.parse::<u64>() else {
            continue;
        };
        let age = Duration::from_secs(unix.saturating_sub(secs));
        if age >= ttl || !storable(id) {
            continue;
        }
        let at = now.checked_sub(age).unwrap_or(now);
        if inner.ids.insert(id.to_owned(), at).is_some() {
            inner.order.retain(|(x, _, _)| x != id);
        }
        inner.order.push_back((id.to_owned(), at, secs));
        while inner.order.len() > capacity {
            if let Some((old, _, _)) = inner.order.pop_front() {
                inner.ids.remove(&old);
            }
        }
    }
    Ok(())
}

/// Writes `order` to `path` (through a temporary file) and returns it opened for appending.
fn rewrite(path: &Path, order: &VecDeque<(String, Instant, u64)>) -> std::io::Result<File> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    {
        let mut out = std::io::BufWriter::new(File::create(&tmp)?);
        for (id, _, secs) in order {
            writeln!(out, "{secs} {id}")?;
        }
        out.flush()?;
    }
    std::fs::rename(&tmp, path)?;
    OpenOptions::new().append(true).open(path)
}

impl Inner {
    fn expire(&mut self, now: Instant, ttl: Duration) {
        while let Some((id, at, _)) = self.order.front() {
            if now.duration_since(*at) < ttl {
                break;
            }
            self.ids.remove(id);
            self.order.pop_front();
        }
    }

    fn append(&mut self, id: &str, unix: u64, capacity: usize) {
        let Some(p) = &mut self.persisted else {
            return;
        };
        if let Err(e) = writeln!(p.file, "{unix} {id}") {
            tracing::warn!(path = %p.path.display(), error = %e, "Cannot append to the completion record; continuing in memory");
            self.persisted = None;
            return;
        }
        p.lines += 1;
        if p.lines > capacity.saturating_mul(2).max(64) {
            match rewrite(&p.path, &self.order) {
                Ok(file) => {
                    p.file = file;
                    p.lines = self.order.len();
                }
                Err(e) => {
                    tracing::warn!(path = %p.path.display(), error = %e, "Cannot compact the completion record; continuing in memory");
                    self.persisted = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(capacity: usize, ttl_secs: u64, path: Option<PathBuf>) -> CompletionRecordConfig {
        CompletionRecordConfig {
            capacity,
            ttl: Duration::from_secs(ttl_secs),
            path,
        }
    }

    #[test]
    fn capacity_bounds_the_record_oldest_first_r82() {
        let r = CompletionRecord::new(&config(3, 3600, None));
        for id in ["a", "b", "c", "d"] {
            r.record(id);
        }
        assert_eq!(r.len(), 3);
        assert!(!r.contains("a"));
        assert!(r.contains("d"));
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl_r82() {
        let r = CompletionRecord::new(&config(10, 60, None));
        r.record("a");
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(r.contains("a"));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!r.contains("a"));
        assert!(r.is_empty());
    }

    #[test]
    fn persisted_record_survives_a_restart_and_stays_compact_r82() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("completed");
        let c = config(100, 3600, Some(base.clone()));
        {
            let r = CompletionRecord::open(&c, "orders").unwrap();
            for i in 0..500 {
                r.record(&format!("msg_{i}"));
            }
            r.record("has space");
        }
        let file = dir.path().join("completed.orders");
        let lines = std::fs::read_to_string(&file).unwrap().lines().count();
        assert!(lines <= 2 * 100 + 64, "compacted: {lines} lines");
        let r = CompletionRecord::open(&c, "orders").unwrap();
        assert_eq!(r.len(), 100);
        assert!(r.contains("msg_499"));
        assert!(!r.contains("msg_0"));
        assert!(!r.contains("has space"));
        // Another channel has its own file.
        let other = CompletionRecord::open(&c, "payments").unwrap();
        assert!(other.is_empty());
    }

    #[test]
    fn unreadable_record_path_is_a_start_up_error() {
        let c = config(100, 3600, Some(PathBuf::from("/nonexistent-dir/x")));
        assert!(CompletionRecord::open(&c, "orders").is_err());
    }
}
