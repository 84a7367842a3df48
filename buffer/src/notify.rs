//! Wake-ups for `lease` calls waiting on a channel (publish, requeue, replay, settle).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Most channels with their own wake-up; beyond it, channels share one (spurious wake-ups only).
const MAX_CHANNELS: usize = 65_536;

/// One `Notify` per channel, bounded.
#[derive(Debug, Default)]
pub(crate) struct Notifiers {
    map: Mutex<HashMap<String, Arc<Notify>>>,
    shared: Arc<Notify>,
}

impl Notifiers {
    /// The wake-up of `channel`.
    pub(crate) fn get(&self, channel: &str) -> Arc<Notify> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get(channel) {
            return n.clone();
        }
        if map.len() >= MAX_CHANNELS {
            return self.shared.clone();
        }
        let n = Arc::new(Notify::new());
        map.insert(channel.to_owned(), n.clone());
        n
    }

    /// Wakes every waiter of `channel`.
    pub(crate) fn wake(&self, channel: &str) {
        let n = {
            let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.get(channel).cloned()
        };
        if let Some(n) = n {
            n.notify_waiters();
        }
        self.shared.notify_waiters();
    }

    /// Wakes the waiters of each channel.
    pub(crate) fn wake_all<'a>(&self, channels: impl Iterator<Item = &'a str>) {
        for channel in channels {
            self.wake(channel);
        }
    }

    /// Forgets `channel` after waking its waiters.
    pub(crate) fn remove(&self, channel: &str) {
        let n = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.remove(channel)
        };
        if let Some(n) = n {
            n.notify_waiters();
        }
    }
}
