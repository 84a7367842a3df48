//! What each relay instance holds of a channel that the broker's queue depths do not show: its
//! leases (deliveries held unacked) and the copies it sent into the shared delay queues. Every
//! instance writes its own view into the channel record whenever it writes the record, and at
//! least every [`HEARTBEAT`] while the view is not empty; stats add up the views of all
//! instances.
//!
//! A view whose instance stopped writing for [`VIEW_TTL_MS`] has gone away: the broker has given
//! its leases back to the queues, so they no longer count. Its delayed copies still count until
//! they are due, since they wait in a delay queue whoever sent them there.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How often an instance with leases or delayed copies rewrites its view.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(3);
/// A view not rewritten for this long belongs to an instance that is gone (several heartbeats,
/// so that a busy broker or some clock skew between instances does not drop a live one).
pub(crate) const VIEW_TTL_MS: i64 = 15_000;

/// One instance's view of one channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct View {
    /// When the instance wrote it (its clock, Unix ms).
    pub at_ms: i64,
    /// Leases held, per webhook queue.
    #[serde(default)]
    pub in_flight: BTreeMap<String, u64>,
    /// Copies in a delay queue, per webhook queue: due time rounded up to the second (Unix s)
    /// → how many.
    #[serde(default)]
    pub delayed: BTreeMap<String, BTreeMap<i64, u64>>,
    /// The instance's latest look at each webhook queue's head: `[seen_ms, received_ms]` (the
    /// receive time of the oldest message it knows to be queued). Carried along with the
    /// holdings, never a reason to write.
    #[serde(default)]
    pub heads: BTreeMap<String, [i64; 2]>,
}

/// The most recent of two looks at a queue head (`[seen_ms, received_ms]`).
pub(crate) fn latest(a: Option<[i64; 2]>, b: Option<[i64; 2]>) -> Option<[i64; 2]> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y[0] > x[0] { y } else { x }),
        (x, y) => x.or(y),
    }
}

/// The second a copy due at `ms` is counted until.
pub(crate) fn due_second(ms: i64) -> i64 {
    ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) != 0)
}

impl View {
    pub(crate) fn is_empty(&self) -> bool {
        self.in_flight.is_empty() && self.delayed.is_empty()
    }

    /// The same holdings, whenever written.
    pub(crate) fn same_holdings(&self, other: &View) -> bool {
        self.in_flight == other.in_flight && self.delayed == other.delayed
    }

    fn live(&self, now_ms: i64) -> bool {
        now_ms.saturating_sub(self.at_ms) < VIEW_TTL_MS
    }

    /// Drops what is over at `now_ms`: the leases and head looks of a gone instance, copies
    /// already due.
    fn prune(&mut self, now_ms: i64) {
        if !self.live(now_ms) {
            self.in_flight.clear();
            self.heads.clear();
        }
        for due in self.delayed.values_mut() {
            due.retain(|s, _| s.saturating_mul(1000) > now_ms);
        }
        self.delayed.retain(|_, due| !due.is_empty());
    }
}

/// Keeps the views that still hold something at `now_ms`.
pub(crate) fn prune(views: &mut BTreeMap<u64, View>, now_ms: i64) {
    for v in views.values_mut() {
        v.prune(now_ms);
    }
    views.retain(|_, v| !v.is_empty());
}

/// What the instances other than `me` hold at `now_ms`, per webhook queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Others {
    pub leases: u64,
    pub delayed: u64,
    /// Their most recent look at the queue's head.
    pub head: Option<[i64; 2]>,
}

/// What the instances other than `me` hold at `now_ms`, per webhook queue.
pub(crate) fn others(
    views: &BTreeMap<u64, View>,
    me: u64,
    now_ms: i64,
) -> BTreeMap<String, Others> {
    let mut out: BTreeMap<String, Others> = BTreeMap::new();
    for (id, v) in views {
        if *id == me {
            continue;
        }
        let mut v = v.clone();
        v.prune(now_ms);
        for (q, n) in v.in_flight {
            out.entry(q).or_default().leases += n;
        }
        for (q, due) in v.delayed {
            out.entry(q).or_default().delayed += due.values().sum::<u64>();
        }
        for (q, head) in v.heads {
            let o = out.entry(q).or_default();
            o.head = latest(o.head, Some(head));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(at_ms: i64, leases: u64, due: &[(i64, u64)]) -> View {
        View {
            at_ms,
            in_flight: BTreeMap::from([("w".to_owned(), leases)]),
            delayed: BTreeMap::from([("w".to_owned(), due.iter().copied().collect())]),
            heads: BTreeMap::from([("w".to_owned(), [at_ms, at_ms - 500])]),
        }
    }

    #[test]
    fn due_times_round_up_to_the_second() {
        assert_eq!(due_second(5_000), 5);
        assert_eq!(due_second(5_001), 6);
        assert_eq!(due_second(-1), 0);
    }

    #[test]
    fn other_instances_add_up_and_the_asking_one_is_left_out() {
        let views = BTreeMap::from([
            (1, view(10_000, 2, &[(20, 1)])),
            (2, view(10_000, 3, &[(20, 4), (30, 1)])),
            (3, view(9_000, 1, &[])),
        ]);
        let sum = others(&views, 1, 11_000)["w"];
        assert_eq!((sum.leases, sum.delayed), (4, 5));
        assert_eq!(sum.head, Some([10_000, 9_500]), "the most recent look");
    }

    #[test]
    fn a_gone_instance_loses_its_leases_but_its_delayed_copies_count_until_due() {
        let mut views = BTreeMap::from([(7, view(0, 5, &[(20, 2), (40, 1)]))]);
        let gone = others(&views, 1, VIEW_TTL_MS)["w"];
        assert_eq!((gone.leases, gone.delayed, gone.head), (0, 3, None));
        assert_eq!(others(&views, 1, 25_000)["w"].delayed, 1);
        prune(&mut views, 25_000);
        assert_eq!(views[&7].delayed["w"].len(), 1);
        prune(&mut views, 40_000);
        assert!(views.is_empty(), "nothing left to count");
    }
}
