//! A walk over one queue (a DLQ): every message that was in it when the walk started is taken
//! once with `basic.get` on a private channel and held unacked. Ending the walk closes the
//! channel, which puts back whatever was not acked in its original order, so a walk that acks
//! nothing changes nothing. The caller keeps only what it needs from each message, so a walk
//! over any number of messages uses bounded memory on this side.
//!
//! A walk can also move messages: it publishes a copy elsewhere and acks the original only once
//! the copy is confirmed, so a failure leaves the original in place (never neither). Copies are
//! confirmed in waves, not one round trip each.

use std::collections::VecDeque;

use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::publisher_confirm::PublisherConfirm;
use lapin::{BasicProperties, Channel as AmqpChannel};

use super::link::{Link, not_found, poll_once};
use crate::BufferError;

/// Most gets sent back to back before their answers are read (as many messages are held in
/// memory at once; the lease path uses the same wave size).
const WAVE: u64 = 128;

/// An open walk; end it with [`Walk::done`].
pub(crate) struct Walk<'a> {
    link: &'a Link,
    /// The private channel holding the taken messages.
    chan: AmqpChannel,
    queue: String,
    /// Taken, not yet handed out.
    taken: VecDeque<BasicGetMessage>,
    /// Messages still to take: the depth when the walk started, less what was taken. Messages
    /// added during the walk are left alone, so a walk always ends.
    left: u64,
    /// Copies published by [`Walk::move_to`], not confirmed yet, with the original's delivery.
    moving: Vec<(PublisherConfirm, u64)>,
    /// Moves completed: copy confirmed, original removed.
    moved: u64,
}

impl<'a> Walk<'a> {
    /// Starts a walk over `queue` (a missing queue walks nothing).
    pub(crate) async fn start(link: &'a Link, queue: &str) -> Result<Walk<'a>, BufferError> {
        let chan = link.channel().await?;
        let mut walk = Walk {
            link,
            chan,
            queue: queue.to_owned(),
            taken: VecDeque::new(),
            left: 1,
            moving: Vec::new(),
            moved: 0,
        };
        // The first get says how many follow it.
        match walk.get_wave(1).await {
            Ok(()) => {
                walk.left = walk.taken.front().map_or(0, |m| u64::from(m.message_count));
                Ok(walk)
            }
            Err(e) => {
                walk.done().await;
                Err(e)
            }
        }
    }

    /// The next message, or `None` when every message present at the start was visited.
    pub(crate) async fn next(&mut self) -> Result<Option<BasicGetMessage>, BufferError> {
        if self.taken.is_empty() && self.left > 0 {
            self.get_wave(self.left.min(WAVE)).await?;
        }
        Ok(self.taken.pop_front())
    }

    /// Sends `n` gets back to back (the broker answers them in order) and keeps the answers.
    async fn get_wave(&mut self, n: u64) -> Result<(), BufferError> {
        let mut wave = Vec::new();
        for _ in 0..n {
            let mut get = Box::pin(
                self.link.bounded(
                    self.chan
                        .basic_get(&self.queue, BasicGetOptions { no_ack: false }),
                ),
            );
            let early = poll_once(&mut get).await;
            wave.push((get, early));
        }
        let mut failed = None;
        for (get, early) in wave {
            let got = match early {
                Some(r) => r,
                None => get.await,
            };
            match got {
                Ok(Some(m)) => {
                    self.left = self.left.saturating_sub(1);
                    self.taken.push_back(m);
                }
                Ok(None) => self.left = 0,
                Err(e) if not_found(&e) => self.left = 0,
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) => Err(self.link.error(e)),
            None => Ok(()),
        }
    }

    /// Moves a taken message: publishes `body` with `props` to `exchange`/`routing` (mandatory,
    /// on the shared confirm channel) and removes the original once the copy is confirmed, at
    /// the latest in [`Walk::finish_moves`].
    pub(crate) async fn move_to(
        &mut self,
        m: &BasicGetMessage,
        exchange: &str,
        routing: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), BufferError> {
        let confirm = self.link.publish(exchange, routing, body, props).await?;
        self.moving.push((confirm, m.delivery.delivery_tag));
        if (self.moving.len() as u64) < WAVE {
            return Ok(());
        }
        self.finish_moves().await
    }

    /// Waits for the confirms of the moves under way and removes their originals. Stops at the
    /// first failure (the originals not removed stay).
    pub(crate) async fn finish_moves(&mut self) -> Result<(), BufferError> {
        for (confirm, tag) in std::mem::take(&mut self.moving) {
            self.link.confirmed(confirm).await?;
            self.link
                .bounded(self.chan.basic_ack(tag, BasicAckOptions::default()))
                .await
                .map_err(|e| self.link.error(e))?;
            self.moved += 1;
        }
        Ok(())
    }

    /// Moves completed so far (also when a later one failed).
    pub(crate) fn moved(&self) -> u64 {
        self.moved
    }

    /// Ends the walk: everything not acked goes back, in order.
    pub(crate) async fn done(self) {
        let _ = self.chan.close(200, "walk done").await;
    }
}
