//! Settling leases: ack, requeue (directly, through a delay queue, or inside the ordered
//! token), dead-lettering.

use super::lease::{Held, put_token};
use super::names::delay_exchange;
use super::topology::{MIN_DELAY_MS, bucket, bucket_headers};
use super::{Inner, lock};
use crate::lease_policy::{AfterFailure, LeasePolicy};
use crate::millis::{ms, now_ms, signed_ms, ts};
use crate::{BufferError, DeadLetterReason, LeaseToken, Settle, Settled};

/// The lease id in a handle `{instance}-{generation}-{id}`.
fn lease_id(handle: &str) -> Option<u64> {
    handle.rsplit('-').next()?.parse().ok()
}

impl Inner {
    pub(crate) async fn settle(
        &self,
        token: &LeaseToken,
        action: Settle,
    ) -> Result<Settled, BufferError> {
        let Some(id) = lease_id(&token.handle) else {
            return Ok(Settled::NotInFlight);
        };
        let held = {
            let mut map = lock(&self.leases);
            match map.get(&id) {
                Some(h) if h.handle == token.handle && h.channel == token.channel => {
                    map.remove(&id)
                }
                _ => None,
            }
        };
        let Some(mut held) = held else {
            return Ok(Settled::NotInFlight);
        };
        if !held.chan.status().connected() || held.generation != self.link.generation() {
            // The broker has given the message back already.
            return Ok(Settled::NotInFlight);
        }
        let channel = held.channel.clone();
        let now = now_ms();
        if held.expires_ms <= now {
            let _ = self.requeue(held, None, None, true).await;
            self.notifiers.wake(&channel);
            return Ok(Settled::NotInFlight);
        }
        let result = match action {
            Settle::Ack => {
                self.ack(&held.chan, held.tag).await?;
                self.release_token(&held).await?;
                self.add_delta(&held.channel, &held.queue, |c| c.delivered += 1);
                Ok(Settled::Acked)
            }
            Settle::Nack {
                retry: true,
                delay,
                reason,
            } => self.requeue(held, delay, reason, true).await,
            Settle::Release => self.requeue(held, None, None, true).await,
            Settle::Nack {
                retry: false,
                reason,
                ..
            } => {
                self.add_delta(&held.channel, &held.queue, |c| c.nacked += 1);
                self.bury(held, DeadLetterReason::Rejected, reason).await?;
                Ok(Settled::DeadLettered(DeadLetterReason::Rejected))
            }
            Settle::Touch => {
                let until = now
                    .saturating_add(signed_ms(held.settings.ack_timeout))
                    .min(
                        held.delivered_ms
                            .saturating_add(signed_ms(held.settings.max_lease)),
                    )
                    .max(held.expires_ms);
                held.expires_ms = until;
                lock(&self.leases).insert(id, held);
                return Ok(Settled::Extended(ts(until)));
            }
            Settle::Return => {
                self.requeue(held, Some(std::time::Duration::ZERO), None, false)
                    .await
            }
        };
        self.notifiers.wake(&channel);
        result
    }

    /// Puts the ordered-delivery token back empty after its message left (ack, dead letter).
    async fn release_token(&self, held: &Held) -> Result<(), BufferError> {
        let order = self.names(&held.channel).order();
        if held.carried {
            put_token(&self.link, &order, None).await?;
            // The token delivery was acked (or will be) as the message itself.
        } else if let Some(tag) = held.token_tag {
            put_token(&self.link, &order, None).await?;
            self.ack(&held.chan, tag).await?;
        }
        Ok(())
    }

    /// Requeues a lease as a failed attempt (`counted`) or hands it back uncounted.
    pub(crate) async fn requeue(
        &self,
        held: Held,
        delay: Option<std::time::Duration>,
        reason: Option<String>,
        counted: bool,
    ) -> Result<Settled, BufferError> {
        let delay_ms = if counted {
            self.add_delta(&held.channel, &held.queue, |c| c.nacked += 1);
            match LeasePolicy::of(&held.settings).after_failure(held.count, delay) {
                AfterFailure::Requeue(d) => ms(d),
                AfterFailure::DeadLetter => {
                    self.bury(held, DeadLetterReason::MaxAttempts, reason)
                        .await?;
                    return Ok(Settled::DeadLettered(DeadLetterReason::MaxAttempts));
                }
            }
        } else {
            0
        };
        let mut meta = held.meta.clone();
        meta.count = if counted { held.count } else { held.count - 1 };
        if reason.is_some() {
            meta.last_error = reason;
        }
        let now = now_ms();
        if held.ordered() {
            let ready = now.saturating_add(i64::try_from(delay_ms).unwrap_or(i64::MAX));
            meta.ready_ms = Some(ready);
            put_token(
                &self.link,
                &self.names(&held.channel).order(),
                Some((&meta, &held.body)),
            )
            .await?;
            self.add_delta(&held.channel, &held.queue, |c| c.waiting += 1);
            self.ack(&held.chan, held.tag).await?;
            if let Some(tag) = held.token_tag {
                self.ack(&held.chan, tag).await?;
            }
            return Ok(Settled::Requeued {
                ready_at: ts(ready),
            });
        }
        let routing = self.names(&held.channel).queue(&held.queue);
        let (exchange, props, wait) = if delay_ms < MIN_DELAY_MS {
            (self.exchange.clone(), meta.properties(true), 0)
        } else {
            let b = bucket(delay_ms);
            let props = meta.properties(false);
            let headers = bucket_headers(b, props.headers().clone().unwrap_or_default());
            (
                delay_exchange(&self.exchange),
                props.with_headers(headers),
                b,
            )
        };
        self.publish_copy(&exchange, &routing, &held.body, props)
            .await?;
        if wait > 0 {
            self.note_delayed(
                &held.channel,
                &held.queue,
                now.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX)),
            );
        }
        self.ack(&held.chan, held.tag).await?;
        Ok(Settled::Requeued {
            ready_at: ts(now.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX))),
        })
    }

    /// Publishes a copy (mandatory, confirmed) on the shared confirm channel.
    pub(crate) async fn publish_copy(
        &self,
        exchange: &str,
        routing: &str,
        body: &[u8],
        props: lapin::BasicProperties,
    ) -> Result<(), BufferError> {
        let confirm = self.link.publish(exchange, routing, body, props).await?;
        self.link.confirmed(confirm).await
    }

    /// Moves a held delivery to its DLQ: publishes the dead letter, then acks the delivery.
    pub(crate) async fn bury(
        &self,
        held: Held,
        reason: DeadLetterReason,
        last_error: Option<String>,
    ) -> Result<(), BufferError> {
        let names = self.names(&held.channel);
        let mut meta = held.meta.clone();
        meta.count = held.count;
        meta.ready_ms = None;
        meta.reason = Some(reason);
        meta.dead_at_ms = Some(now_ms());
        if last_error.is_some() {
            meta.last_error = last_error;
        }
        self.publish_copy(
            "",
            &names.dead_stream(&held.queue),
            &held.body,
            meta.properties(false),
        )
        .await?;
        self.ack(&held.chan, held.tag).await?;
        self.release_token(&held).await?;
        self.add_delta(&held.channel, &held.queue, |c| {
            c.dead_lettered += 1;
            c.dead_depth += 1;
            if reason == DeadLetterReason::Expired {
                c.expired += 1;
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ids_come_from_the_handle_end() {
        assert_eq!(lease_id("ab12-3-42"), Some(42));
        assert_eq!(lease_id("ab12-3-42x"), None);
        assert_eq!(lease_id(""), None);
    }
}
