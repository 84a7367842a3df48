//! What the relay keeps about the leases a connection holds: only what routing an ack needs.
//!
//! The buffer owns lease state (`docs/design.md`: "the buffer owns lease state, the relay only
//! routes acks to connections"). Whether a lease is still valid is always the buffer's answer:
//! an ack, nack or touch for any message in this table goes to the buffer with the token it
//! issued, and the buffer says `NotInFlight` when the lease is over. The relay never compares
//! the buffer's timestamps with its own clock.
//!
//! The relay still needs a timer of its own for one thing: a lease the connector never settles
//! must stop taking one of the connection's `max_in_flight` slots. That timer runs on the
//! relay's monotonic clock only: a lease *lapses* `ack_timeout` after the relay asked for it
//! (earlier than the buffer's expiry by the lease call's latency, never later), and a touch
//! moves it by exactly as much as the buffer moved its own expiry (a difference of two buffer
//! timestamps, so the two clocks are never mixed). A lapsed entry frees its slot but stays
//! routable for another `ack_timeout` (its late ack still reaches the buffer, which decides).
//!
//! Nothing here does I/O; the settle path (`settle.rs`) takes entries out and puts results back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use webhook_connect_buffer::{Lease, LeaseToken, Settled};
use webhook_connect_protocol::Timestamp;

/// A lease of one message held by one connection.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    /// The lease the message was sent under.
    pub(crate) token: LeaseToken,
    /// Further leases of the same message that arrived while this one was live: a backend can
    /// hold two copies of one message (RabbitMQ, when a requeue's publish-then-ack was cut short
    /// by a restart). They are not sent again; they are settled with this entry.
    pub(crate) copies: Vec<LeaseToken>,
    /// When the relay accepted the message (for the end-to-end latency histogram).
    pub(crate) received_at: Timestamp,
    /// The buffer's expiry of the lease, on the buffer's clock: only ever subtracted from
    /// another buffer timestamp.
    expires_at: Timestamp,
    /// When the entry stops taking a slot (relay clock).
    lapses_at: Instant,
    /// How long a lapsed entry stays routable.
    grace: Duration,
    /// An ack or nack of it is under way.
    settling: bool,
    /// It lapsed: it takes no slot, and is forgotten at `lapses_at + grace`.
    lapsed: bool,
}

impl Held {
    /// A new entry for `lease`, asked for at `asked_at` with lease length `ack_timeout`.
    pub(crate) fn new(lease: &Lease, asked_at: Instant, ack_timeout: Duration) -> Held {
        Held {
            token: lease.token.clone(),
            copies: Vec::new(),
            received_at: lease.envelope.received_at,
            expires_at: lease.lease_expires_at,
            lapses_at: asked_at + ack_timeout,
            grace: ack_timeout,
            settling: false,
            lapsed: false,
        }
    }

    fn takes_slot(&self) -> bool {
        !self.lapsed && !self.settling
    }

    /// Takes a slot and its lease has not run out on the relay's clock, even if no sweep has
    /// marked it lapsed yet. Once `lapses_at` has passed, the buffer may already have leased
    /// the message again (its expiry is never earlier than `lapses_at`): that new lease is the
    /// message's next delivery, not a second copy of this one.
    fn live_at(&self, now: Instant) -> bool {
        self.takes_slot() && now < self.lapses_at
    }
}

/// A settle taken out of the table: the leases to settle, handed back with [`Leases::finish`].
#[derive(Debug, Clone)]
pub(crate) struct Claim {
    pub(crate) message_id: String,
    pub(crate) entry: Held,
    /// A touch leaves the entry in place (and in its slot).
    pub(crate) touch: bool,
}

/// What [`Leases::hold`] did with a new lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holding {
    /// A new entry: send the message.
    New,
    /// A live entry of the message is already held: kept as a copy, not sent.
    Copy,
}

/// Leases that lapsed in one [`Leases::lapse`] pass.
#[derive(Debug, Default)]
pub(crate) struct Lapsed {
    /// Message ids whose lease lapsed (each expires in the buffer and comes back).
    pub(crate) message_ids: Vec<String>,
    /// Copies held with them: acked, so each message comes back once (a copy left to expire
    /// would use up an attempt without any delivery).
    pub(crate) copies: Vec<LeaseToken>,
}

/// The leases one connection holds, by message id.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    held: HashMap<String, Held>,
}

impl Leases {
    /// Entries taking a slot (live, not being settled).
    pub(crate) fn occupied(&self) -> usize {
        self.held.values().filter(|h| h.takes_slot()).count()
    }

    /// Entries whose lease the connector may still settle (live, settling included): what
    /// "in flight" reports, and what a graceful stop waits for.
    pub(crate) fn in_flight(&self) -> usize {
        self.held.values().filter(|h| !h.lapsed).count()
    }

    /// True when nothing at all is held (lapsed entries included).
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Records a lease of `message_id` about to be sent. A live entry of the same message keeps
    /// the new lease as a copy; a lapsed or settling one is replaced (its lease is over: the
    /// buffer leased the message again).
    pub(crate) fn hold(&mut self, message_id: &str, entry: Held) -> Holding {
        let now = Instant::now();
        if let Some(live) = self.held.get_mut(message_id).filter(|h| h.live_at(now)) {
            live.copies.push(entry.token);
            return Holding::Copy;
        }
        self.held.insert(message_id.to_owned(), entry);
        Holding::New
    }

    /// True when a live entry of `message_id` is held (a new lease would be a copy).
    pub(crate) fn holds_live(&self, message_id: &str) -> bool {
        let now = Instant::now();
        self.held.get(message_id).is_some_and(|h| h.live_at(now))
    }

    /// Takes `message_id` out for a settle. `None` when it is not held, or another ack or nack
    /// of it is under way. An ack or nack marks the entry (it keeps being routable until the
    /// buffer answers, and gives up its slot); a touch leaves it as it is.
    pub(crate) fn claim(&mut self, message_id: &str, touch: bool) -> Option<Claim> {
        let entry = self.held.get_mut(message_id).filter(|h| !h.settling)?;
        if !touch {
            entry.settling = true;
        }
        Some(Claim {
            message_id: message_id.to_owned(),
            entry: entry.clone(),
            touch,
        })
    }

    /// Puts the buffer's answer to `claim` back. Only the entry of the same lease is touched: a
    /// newer lease of the message that arrived meanwhile is never overwritten. `None` is a
    /// buffer error (the lease is unchanged: the entry stays, live again).
    pub(crate) fn finish(&mut self, claim: &Claim, answer: Option<&Settled>) {
        let Some(entry) = self
            .held
            .get_mut(&claim.message_id)
            .filter(|h| h.token == claim.entry.token)
        else {
            return;
        };
        match answer {
            None => entry.settling = false,
            Some(Settled::Extended(until)) => {
                // The buffer moved its expiry by this much on its own clock; the lapse moves
                // by the same amount on ours.
                let moved = (until.0 - entry.expires_at.0).to_std().unwrap_or_default();
                entry.expires_at = *until;
                entry.lapses_at += moved;
                if entry.lapsed && entry.lapses_at > Instant::now() {
                    entry.lapsed = false;
                }
            }
            Some(Settled::NotInFlight) if claim.touch => {
                // Touching a lease the buffer no longer holds: it is over.
                self.held.remove(&claim.message_id);
            }
            Some(_) => {
                self.held.remove(&claim.message_id);
            }
        }
    }

    /// Marks entries whose lease ran out at `now` as lapsed and forgets lapsed entries past
    /// their grace.
    pub(crate) fn lapse(&mut self, now: Instant) -> Lapsed {
        let mut lapsed = Lapsed::default();
        self.held.retain(|id, h| {
            if h.lapsed {
                return now < h.lapses_at + h.grace;
            }
            if !h.settling && h.lapses_at <= now {
                h.lapsed = true;
                lapsed.message_ids.push(id.clone());
                lapsed.copies.append(&mut h.copies);
            }
            true
        });
        lapsed
    }

    /// Empties the table (the connection went away): the live entries not being settled, to be
    /// released. Lapsed entries have given their copies back already and their lease is over;
    /// settling ones are finished by their settle.
    pub(crate) fn drain(&mut self) -> Vec<(String, Held)> {
        self.held.drain().filter(|(_, h)| h.takes_slot()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webhook_connect_protocol::MessageId;

    fn token(handle: &str) -> LeaseToken {
        LeaseToken {
            channel: "c".into(),
            queue: "q".into(),
            message_id: MessageId::parse("m").expect("valid id"),
            handle: handle.into(),
        }
    }

    fn held(handle: &str, expires_at: Timestamp, now: Instant, ack_timeout: Duration) -> Held {
        Held {
            token: token(handle),
            copies: Vec::new(),
            received_at: Timestamp::now(),
            expires_at,
            lapses_at: now + ack_timeout,
            grace: ack_timeout,
            settling: false,
            lapsed: false,
        }
    }

    const ACK_TIMEOUT: Duration = Duration::from_secs(30);

    #[test]
    fn a_failed_settle_never_overwrites_a_newer_lease_of_the_same_message() {
        let now = Instant::now();
        let mut leases = Leases::default();
        leases.hold("m", held("old", Timestamp::now(), now, ACK_TIMEOUT));
        let claim = leases.claim("m", false).expect("held");
        // While the buffer call is under way the message is leased again (the old lease ran
        // out in the buffer) and sent to this connection.
        assert_eq!(
            leases.hold("m", held("new", Timestamp::now(), now, ACK_TIMEOUT)),
            Holding::New
        );
        leases.finish(&claim, None);
        let again = leases.claim("m", false).expect("the newer lease is held");
        assert_eq!(again.entry.token.handle, "new");
        // And a success of the old settle does not remove the newer lease either.
        leases.finish(&claim, Some(&Settled::Acked));
        assert_eq!(leases.in_flight(), 1);
    }

    #[test]
    fn a_failed_settle_keeps_the_lease_live_and_claimable() {
        let now = Instant::now();
        let mut leases = Leases::default();
        leases.hold("m", held("a", Timestamp::now(), now, ACK_TIMEOUT));
        let claim = leases.claim("m", false).expect("held");
        assert_eq!(leases.occupied(), 0, "a settling entry gives up its slot");
        assert!(leases.claim("m", false).is_none(), "one settle at a time");
        leases.finish(&claim, None);
        assert_eq!(leases.occupied(), 1);
        assert!(leases.claim("m", false).is_some());
    }

    #[test]
    fn a_lease_past_its_lapse_but_not_yet_swept_is_replaced_not_joined_by_the_next() {
        // The buffer leased the message again after its lease ran out, before the sweep marked
        // the old entry lapsed: that is the next delivery, to be sent, never a copy (a copy is
        // acked at lapse, which would remove the message without delivering it).
        let now = Instant::now();
        let mut leases = Leases::default();
        leases.hold("m", held("first", Timestamp::now(), now, Duration::ZERO));
        assert!(!leases.holds_live("m"));
        assert_eq!(
            leases.hold("m", held("next", Timestamp::now(), now, ACK_TIMEOUT)),
            Holding::New
        );
        let claim = leases.claim("m", false).expect("the next lease is held");
        assert_eq!(claim.entry.token.handle, "next");
        assert!(claim.entry.copies.is_empty());
    }

    #[test]
    fn copies_are_handed_back_when_their_lease_lapses() {
        let now = Instant::now();
        let mut leases = Leases::default();
        leases.hold("m", held("primary", Timestamp::now(), now, ACK_TIMEOUT));
        assert_eq!(
            leases.hold("m", held("copy", Timestamp::now(), now, ACK_TIMEOUT)),
            Holding::Copy
        );
        assert!(leases.lapse(now).message_ids.is_empty());
        let lapsed = leases.lapse(now + ACK_TIMEOUT);
        assert_eq!(lapsed.message_ids, vec!["m".to_owned()]);
        let handles: Vec<&str> = lapsed.copies.iter().map(|t| t.handle.as_str()).collect();
        assert_eq!(
            handles,
            vec!["copy"],
            "the copy must be settled, not dropped"
        );
        assert_eq!(leases.occupied(), 0);
        assert!(leases.drain().is_empty(), "lapsed entries are not released");
    }

    #[test]
    fn a_lapsed_lease_stays_routable_for_its_grace_then_is_forgotten() {
        let now = Instant::now();
        let mut leases = Leases::default();
        leases.hold("m", held("a", Timestamp::now(), now, ACK_TIMEOUT));
        leases.lapse(now + ACK_TIMEOUT);
        assert_eq!((leases.occupied(), leases.in_flight()), (0, 0));
        assert!(
            leases.claim("m", false).is_some(),
            "a late ack still goes to the buffer"
        );
        let mut leases = Leases::default();
        leases.hold("m", held("a", Timestamp::now(), now, ACK_TIMEOUT));
        leases.lapse(now + ACK_TIMEOUT);
        leases.lapse(now + ACK_TIMEOUT * 2);
        assert!(leases.is_empty());
    }

    #[test]
    fn lapse_is_measured_on_the_relay_clock_whatever_the_buffer_clock_says() {
        // The buffer's clock is a minute behind: its expiry looks long past to the relay.
        let now = Instant::now();
        let skewed = Timestamp(Timestamp::now().0 - Duration::from_secs(60));
        let mut leases = Leases::default();
        leases.hold("m", held("a", skewed, now, ACK_TIMEOUT));
        assert!(leases.lapse(now + ACK_TIMEOUT / 2).message_ids.is_empty());
        assert_eq!(leases.occupied(), 1);
    }

    #[test]
    fn a_touch_moves_the_lapse_by_what_the_buffer_moved_its_expiry() {
        let now = Instant::now();
        // Buffer clock an hour ahead of ours: only the difference of its two timestamps counts.
        let buffer_now = Timestamp(Timestamp::now().0 + Duration::from_secs(3600));
        let mut leases = Leases::default();
        leases.hold(
            "m",
            held(
                "a",
                Timestamp(buffer_now.0 + Duration::from_secs(30)),
                now,
                ACK_TIMEOUT,
            ),
        );
        let claim = leases.claim("m", true).expect("held");
        assert_eq!(leases.occupied(), 1, "a touch keeps the slot");
        leases.finish(
            &claim,
            Some(&Settled::Extended(Timestamp(
                buffer_now.0 + Duration::from_secs(50),
            ))),
        );
        assert!(leases.lapse(now + ACK_TIMEOUT).message_ids.is_empty());
        assert_eq!(
            leases.lapse(now + Duration::from_secs(50)).message_ids,
            vec!["m".to_owned()]
        );
    }
}
