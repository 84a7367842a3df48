//! The single writer thread of the embedded store: group commit.
//!
//! Every operation is a [`Cmd`] sent over a bounded channel. The writer takes the first waiting
//! command, keeps collecting for up to `commit_max_delay` while other callers still have
//! operations on the way, applies the whole batch inside ONE redb write transaction, commits it
//! durably once, and only then answers every caller. Many concurrent publishes thus share one
//! sync. A batch that wrote nothing (e.g. an idle lease poll) is aborted, costing no sync.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redb::{Builder, Database};
use tokio::sync::{mpsc, oneshot};
use webhook_connect_protocol::Envelope;

use super::state::{Batch, Fail, LeaseOut, Mem, SResult, Tables};
use crate::notify::Notifiers;
use crate::{
    BufferError, ChannelStats, DeadLetterPage, DeadLetterQuery, LeaseToken, QueueSettings, Settle,
    Settled,
};

/// redb's page cache. Everything about queued messages is read from the file through it, so it
/// bounds the store's memory whatever the backlog (redb's own default is 1 GiB).
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Most commands in one transaction.
const MAX_BATCH: usize = 1024;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, BufferError>>;

/// One operation for the writer.
#[derive(Debug)]
pub(crate) enum Cmd {
    Ensure {
        channel: String,
        webhook_ids: Vec<String>,
        settings: QueueSettings,
        reply: Reply<()>,
    },
    Delete {
        channel: String,
        reply: Reply<()>,
    },
    Publish {
        queue: String,
        envelope: Box<Envelope>,
        reply: Reply<u64>,
    },
    Lease {
        channel: String,
        max: usize,
        reply: Reply<LeaseOut>,
    },
    Settle {
        token: LeaseToken,
        action: Settle,
        reply: Reply<Settled>,
    },
    DeadLetters {
        channel: String,
        query: DeadLetterQuery,
        reply: Reply<DeadLetterPage>,
    },
    Replay {
        channel: String,
        webhook_id: Option<String>,
        message_id: Option<String>,
        reply: Reply<u64>,
    },
    Purge {
        channel: String,
        webhook_id: Option<String>,
        message_id: Option<String>,
        reply: Reply<u64>,
    },
    Stats {
        channel: String,
        reply: Reply<ChannelStats>,
    },
    Sweep {
        reply: Reply<u64>,
    },
    Health {
        reply: Reply<()>,
    },
    /// Hand back leases a cancelled `lease` call received but never read.
    Unlease {
        tokens: Vec<LeaseToken>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// An answer held back until the batch is committed.
trait Finish: Send {
    /// Answers the caller. Returns the leases of an answer nobody took (the caller gave up), so
    /// they can be handed back.
    fn finish(self: Box<Self>, failure: Option<&str>) -> Vec<LeaseToken>;
}

struct Done<T> {
    reply: Reply<T>,
    result: Result<T, BufferError>,
}

impl<T: Send> Finish for Done<T> {
    fn finish(self: Box<Self>, failure: Option<&str>) -> Vec<LeaseToken> {
        let result = match failure {
            Some(msg) => Err(BufferError::Unavailable(msg.to_owned())),
            None => self.result,
        };
        // The caller may have given up (timeout); nothing to undo for these.
        let _ = self.reply.send(result);
        Vec::new()
    }
}

/// The answer to a lease: when its caller is gone (cancelled, timed out), the leases it would
/// have received are handed back without counting an attempt.
struct DoneLease {
    reply: Reply<LeaseOut>,
    result: Result<LeaseOut, BufferError>,
}

impl Finish for DoneLease {
    fn finish(self: Box<Self>, failure: Option<&str>) -> Vec<LeaseToken> {
        let result = match failure {
            Some(msg) => Err(BufferError::Unavailable(msg.to_owned())),
            None => self.result,
        };
        match self.reply.send(result) {
            Err(Ok(out)) => out.leases.into_iter().map(|l| l.token).collect(),
            _ => Vec::new(),
        }
    }
}

fn done<T: Send + 'static>(reply: Reply<T>, result: Result<T, BufferError>) -> Box<dyn Finish> {
    Box::new(Done { reply, result })
}

pub(crate) struct Writer {
    db: Database,
    /// `None` after a failed batch until the index is reloaded from the file.
    mem: Option<Mem>,
    rx: mpsc::Receiver<Cmd>,
    notifiers: Arc<Notifiers>,
    outstanding: Arc<AtomicUsize>,
    commit_max_delay: Duration,
}

/// Opens (or creates) the store file, restores it and loads the index.
pub(crate) fn open_store(path: &PathBuf) -> Result<(Database, Mem), BufferError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            BufferError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
    }
    create_private(path)
        .map_err(|e| BufferError::Unavailable(format!("cannot create {}: {e}", path.display())))?;
    let db = Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                BufferError::Locked(path.display().to_string())
            }
            other => BufferError::Unavailable(format!("cannot open {}: {other}", path.display())),
        })?;
    let mem = load(&db, true).map_err(|f| BufferError::Corrupt(f.0))?;
    Ok((db, mem))
}

/// Creates the store file readable and writable by its owner only (0600 on Unix), so the
/// queued webhooks (bodies, headers with credentials) are not readable by other local users.
/// An existing file is left as it is; redb initialises the empty file.
fn create_private(path: &PathBuf) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn load(db: &Database, restore: bool) -> SResult<Mem> {
    let txn = db.begin_write()?;
    let mut batch = Batch::default();
    let mem = {
        let mut t = Tables::open(&txn)?;
        let mem = Mem::load(&mut t, &mut batch, restore)?;
        mem.flush(&mut t, &mut batch)?;
        mem
    };
    // Opening the tables creates them on a new file, so always commit here.
    txn.commit()?;
    Ok(mem)
}

impl Writer {
    pub(crate) fn new(
        db: Database,
        mem: Mem,
        rx: mpsc::Receiver<Cmd>,
        notifiers: Arc<Notifiers>,
        outstanding: Arc<AtomicUsize>,
        commit_max_delay: Duration,
    ) -> Self {
        Writer {
            db,
            mem: Some(mem),
            rx,
            notifiers,
            outstanding,
            commit_max_delay,
        }
    }

    /// Runs until every handle is dropped or `Close` arrives; then the file is released.
    pub(crate) fn run(mut self) {
        while let Some(first) = self.rx.blocking_recv() {
            let mut batch = vec![first];
            let deadline = Instant::now() + self.commit_max_delay;
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        // Wait only while some caller is still on its way with an operation.
                        let waiting = self.outstanding.load(Ordering::Acquire);
                        let now = Instant::now();
                        if waiting <= batch.len() || now >= deadline {
                            break;
                        }
                        std::thread::sleep((deadline - now).min(Duration::from_micros(50)));
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            }
            let mut close = None;
            let mut work = Vec::with_capacity(batch.len());
            for cmd in batch {
                match cmd {
                    Cmd::Close { reply } => close = Some(reply),
                    other => work.push(other),
                }
            }
            self.run_batch(work);
            if let Some(reply) = close {
                self.rx.close();
                // Answer whatever slipped in after Close, then release the file before replying.
                while let Ok(cmd) = self.rx.try_recv() {
                    if let Cmd::Close { reply } = cmd {
                        let _ = reply.send(());
                    }
                }
                drop(self.db);
                let _ = reply.send(());
                return;
            }
        }
    }

    fn run_batch(&mut self, cmds: Vec<Cmd>) {
        if cmds.is_empty() {
            return;
        }
        if self.mem.is_none() {
            match load(&self.db, false) {
                Ok(mem) => self.mem = Some(mem),
                Err(f) => {
                    tracing::error!(error = %f.0, "Embedded store unreadable; operations fail");
                    // Dropping the commands answers their callers with `Unavailable`.
                    return;
                }
            }
        }
        let mut finished: Vec<Box<dyn Finish>> = Vec::with_capacity(cmds.len());
        match self.apply_all(cmds, &mut finished) {
            Ok(batch) => {
                let mut orphans = Vec::new();
                for f in finished {
                    orphans.extend(f.finish(None));
                }
                for channel in &batch.wake {
                    self.notifiers.wake(channel);
                }
                if !orphans.is_empty() {
                    self.unlease(&orphans);
                }
            }
            Err(fail) => {
                tracing::error!(error = %fail.0, "Embedded store write failed; batch aborted");
                self.mem = None;
                let msg = format!("embedded store write failed: {}", fail.0);
                for f in finished {
                    f.finish(Some(&msg));
                }
            }
        }
    }

    /// Hands back leases whose caller was gone: ready again at once, attempt not counted.
    fn unlease(&mut self, tokens: &[LeaseToken]) {
        let Some(mem) = self.mem.as_mut() else {
            return;
        };
        let db = &self.db;
        let result = (|| -> Result<Batch, Fail> {
            let txn = db.begin_write()?;
            let mut b = Batch::default();
            {
                let mut t = Tables::open(&txn)?;
                for token in tokens {
                    mem.unlease(&mut t, &mut b, token)?;
                }
                mem.flush(&mut t, &mut b)?;
            }
            txn.commit()?;
            Ok(b)
        })();
        match result {
            Ok(b) => {
                tracing::debug!(
                    count = tokens.len(),
                    "Leases of a cancelled lease call handed back"
                );
                for channel in &b.wake {
                    self.notifiers.wake(channel);
                }
            }
            Err(fail) => {
                tracing::warn!(error = %fail.0, "Could not hand back leases; they will expire");
                self.mem = None;
            }
        }
    }

    fn apply_all(
        &mut self,
        cmds: Vec<Cmd>,
        finished: &mut Vec<Box<dyn Finish>>,
    ) -> Result<Batch, Fail> {
        let Some(mem) = self.mem.as_mut() else {
            return Err(Fail("store not loaded".into()));
        };
        let n = cmds.len();
        let t0 = Instant::now();
        let txn = self.db.begin_write()?;
        let mut b = Batch::default();
        {
            let mut t = Tables::open(&txn)?;
            for cmd in cmds {
                apply(mem, &mut t, &mut b, cmd, finished)?;
            }
            mem.flush(&mut t, &mut b)?;
        }
        let t1 = Instant::now();
        if b.wrote {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        tracing::trace!(
            commands = n,
            apply_us = (t1 - t0).as_micros() as u64,
            commit_us = t1.elapsed().as_micros() as u64,
            wrote = b.wrote,
            "Embedded store batch done"
        );
        Ok(b)
    }
}

fn apply(
    mem: &mut Mem,
    t: &mut Tables<'_>,
    b: &mut Batch,
    cmd: Cmd,
    finished: &mut Vec<Box<dyn Finish>>,
) -> SResult<()> {
    let f = match cmd {
        Cmd::Ensure {
            channel,
            webhook_ids,
            settings,
            reply,
        } => done(
            reply,
            mem.ensure_channel(t, b, &channel, &webhook_ids, &settings)?,
        ),
        Cmd::Delete { channel, reply } => done(reply, mem.delete_channel(t, b, &channel)?),
        Cmd::Publish {
            queue,
            mut envelope,
            reply,
        } => done(reply, mem.publish(t, b, &queue, &mut envelope)?),
        Cmd::Lease {
            channel,
            max,
            reply,
        } => Box::new(DoneLease {
            reply,
            result: mem.lease(t, b, &channel, max)?,
        }),
        Cmd::Settle {
            token,
            action,
            reply,
        } => done(reply, mem.settle(t, b, &token, action)?),
        Cmd::DeadLetters {
            channel,
            query,
            reply,
        } => done(reply, mem.dead_letters(t, &channel, &query)?),
        Cmd::Replay {
            channel,
            webhook_id,
            message_id,
            reply,
        } => done(
            reply,
            mem.replay(t, b, &channel, webhook_id.as_deref(), message_id.as_deref())?,
        ),
        Cmd::Purge {
            channel,
            webhook_id,
            message_id,
            reply,
        } => done(
            reply,
            mem.purge(t, b, &channel, webhook_id.as_deref(), message_id.as_deref())?,
        ),
        Cmd::Stats { channel, reply } => done(reply, mem.stats(t, b, &channel)?),
        Cmd::Sweep { reply } => done(reply, Ok(mem.sweep(t, b)?)),
        Cmd::Health { reply } => {
            mem.health(t, b)?;
            done(reply, Ok(()))
        }
        Cmd::Unlease { tokens } => {
            for token in &tokens {
                mem.unlease(t, b, token)?;
            }
            return Ok(());
        }
        Cmd::Close { reply } => {
            let _ = reply.send(());
            return Ok(());
        }
    };
    finished.push(f);
    Ok(())
}
