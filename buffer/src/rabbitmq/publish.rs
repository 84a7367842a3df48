//! Publishing: per channel, concurrent publishes are gathered into batches; one batch holds the
//! channel record while it checks capacity, draws sequence numbers and waits for the confirms.

use std::collections::HashMap;

use lapin::options::BasicPublishOptions;
use tokio::sync::oneshot;
use webhook_connect_protocol::Envelope;

use super::link::poll_once;
use super::message::Meta;
use super::record::CRASH_GAP;
use super::{Inner, lock, topology};
use crate::BufferError;
use crate::millis::now_ms;

/// Most messages one batch publishes.
const MAX_BATCH: usize = 512;

/// A publish waiting for its batch.
#[derive(Debug)]
pub(crate) struct Pending {
    queue: String,
    meta: Meta,
    body: Vec<u8>,
    body_len: u64,
    reply: oneshot::Sender<Result<u64, BufferError>>,
}

impl Inner {
    pub(crate) async fn publish(
        &self,
        queue: &str,
        envelope: &mut Envelope,
    ) -> Result<u64, BufferError> {
        let channel = envelope.channel.clone();
        let (tx, rx) = oneshot::channel();
        let gate = self.gate(&channel);
        lock(&gate.pending).push(Pending {
            queue: queue.to_owned(),
            meta: Meta::fresh(queue, envelope),
            body: envelope.encode(),
            body_len: envelope.body.len() as u64,
            reply: tx,
        });
        // Whoever takes the lock publishes everything pending; a publish answered by someone
        // else's batch stops waiting for the lock at once (waiting in line would run a batch
        // of one per waiter).
        let mut rx = rx;
        let answer = loop {
            tokio::select! {
                biased;
                answer = &mut rx => break answer,
                _held = gate.lock.lock() => {
                    let batch: Vec<Pending> = {
                        let mut p = lock(&gate.pending);
                        let n = p.len().min(MAX_BATCH);
                        p.drain(..n).collect()
                    };
                    if !batch.is_empty() {
                        self.run_batch(&channel, batch).await;
                    }
                }
            }
        };
        let seq = answer
            .map_err(|_| BufferError::Unavailable("rabbitmq: publish batch lost".into()))??;
        envelope.sequence = seq;
        self.notifiers.wake(&channel);
        Ok(seq)
    }

    /// Publishes one batch and answers each of its publishes.
    async fn run_batch(&self, channel: &str, batch: Vec<Pending>) {
        let mut locked = match self.lock_record(channel).await {
            Ok(l) => l,
            Err(e) => {
                for p in batch {
                    let _ = p.reply.send(Err(same_error(&e)));
                }
                return;
            }
        };
        if locked.crashed {
            locked.data.next_seq += CRASH_GAP;
        }
        let names = self.names(channel);
        let max_size = locked.data.settings_max_message_size();
        let max_len = locked.data.settings_max_queue_size();
        let mut room: HashMap<String, u64> = HashMap::new();
        let mut accepted = Vec::new();
        for p in batch {
            if !locked.data.queues.contains(&p.queue) {
                let _ = p.reply.send(Err(BufferError::UnknownChannel(format!(
                    "{channel}/{}",
                    p.queue
                ))));
                continue;
            }
            if p.body_len > max_size {
                let _ = p.reply.send(Err(BufferError::TooLarge));
                continue;
            }
            if !room.contains_key(&p.queue) {
                let depth = match topology::depth(&self.link, &names.queue(&p.queue)).await {
                    Ok(d) => d.unwrap_or(0),
                    Err(e) => {
                        let _ = p.reply.send(Err(e));
                        continue;
                    }
                };
                if depth == 0 {
                    lock(&self.heads).insert(
                        (channel.to_owned(), p.queue.clone()),
                        [now_ms(), p.meta.received_ms],
                    );
                }
                room.insert(p.queue.clone(), max_len.saturating_sub(depth));
            }
            let left = room.entry(p.queue.clone()).or_default();
            if *left == 0 {
                let _ = p.reply.send(Err(BufferError::QueueFull));
                continue;
            }
            *left -= 1;
            accepted.push(p);
        }
        for p in &mut accepted {
            p.meta.sequence = locked.data.next_seq;
            locked.data.next_seq += 1;
        }
        let routings: Vec<String> = accepted.iter().map(|p| names.queue(&p.queue)).collect();
        // A publish queues its frames on its first poll: starting them all in order sends the
        // batch in sequence order without waiting for each write in turn.
        let mut sends = Vec::with_capacity(accepted.len());
        for (p, routing) in accepted.iter().zip(&routings) {
            let mut send = Box::pin(self.link.bounded(locked.chan().basic_publish(
                &self.exchange,
                routing,
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &p.body,
                p.meta.properties(true),
            )));
            let early = poll_once(&mut send).await;
            sends.push((send, early));
        }
        let mut sent = Vec::with_capacity(sends.len());
        for (send, early) in sends {
            sent.push(match early {
                Some(r) => r,
                None => send.await,
            });
        }
        let mut answers = Vec::with_capacity(accepted.len());
        for (p, sent) in accepted.into_iter().zip(sent) {
            let result = match sent {
                Ok(confirm) => self.link.confirmed(confirm).await,
                Err(e) => Err(self.link.error(e)),
            };
            if result.is_ok() {
                locked
                    .data
                    .counters
                    .entry(p.queue.clone())
                    .or_default()
                    .published += 1;
            }
            answers.push((p, result));
        }
        // Only now, with every message of the batch in its queue, is the record released: the
        // next holder's depth check sees them.
        let written = self.write_record(channel, locked).await;
        for (p, result) in answers {
            let answer = match (&written, result) {
                (_, Err(e)) => Err(e),
                // Stored and confirmed; the record is taken back by the broker and the next
                // holder skips ahead, so the number stays unique.
                (_, Ok(())) => Ok(p.meta.sequence),
            };
            let _ = p.reply.send(answer);
        }
    }
}

/// A copy of a batch-wide error for each publish of the batch.
fn same_error(e: &BufferError) -> BufferError {
    match e {
        BufferError::QueueFull => BufferError::QueueFull,
        BufferError::TooLarge => BufferError::TooLarge,
        BufferError::UnknownChannel(c) => BufferError::UnknownChannel(c.clone()),
        BufferError::Timeout => BufferError::Timeout,
        BufferError::Locked(s) => BufferError::Locked(s.clone()),
        BufferError::Corrupt(s) => BufferError::Corrupt(s.clone()),
        BufferError::Invalid(s) => BufferError::Invalid(s.clone()),
        BufferError::Closed => BufferError::Closed,
        BufferError::Unavailable(s) => BufferError::Unavailable(s.clone()),
    }
}
