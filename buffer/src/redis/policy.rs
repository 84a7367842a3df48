//! The lease policy in the Redis scripts. The scripts that can requeue (lease and stats, which
//! end expired leases, and settle with `retry`) take the policy's answers as two arguments
//! instead of computing them: the settings it was built from (`maxatt rqi rqm`, as stored in
//! `base:meta`) and the requeue delay in ms of attempts 1, 2, … (the last one for every later
//! attempt), see [`LeasePolicy::requeue_delays`].
//!
//! The stored settings stay the truth shared by every instance: a script given a policy built
//! from other settings (changed through another instance, or a channel this process has not
//! seen yet) changes nothing and answers `{-2, maxatt, rqi, rqm}`; the caller learns them and
//! runs it again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use ::redis::Value;

use super::{bad_reply, int};
use crate::QueueSettings;
use crate::lease_policy::LeasePolicy;
use crate::millis::ms;

/// First element of a script's reply when the policy it was given is not the channel's.
const STALE: i64 = -2;

/// Most channels whose settings are remembered; beyond it, each call learns them again.
const MAX_CHANNELS: usize = 65_536;

/// What a channel's lease policy is built from, in the units stored in `base:meta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PolicySettings {
    max_attempts: u32,
    initial_ms: u64,
    max_ms: u64,
}

impl PolicySettings {
    /// The stored form of `settings` (whole milliseconds, as `ensure_channel` writes them).
    pub(crate) fn of(settings: &QueueSettings) -> Self {
        PolicySettings {
            max_attempts: settings.max_delivery_attempts,
            initial_ms: ms(settings.requeue_delay_initial),
            max_ms: ms(settings.requeue_delay_max),
        }
    }

    /// The policy.
    pub(crate) fn policy(&self) -> LeasePolicy {
        LeasePolicy::new(
            self.max_attempts,
            Duration::from_millis(self.initial_ms),
            Duration::from_millis(self.max_ms),
        )
    }

    /// The two script arguments: the settings, and the requeue delays in ms.
    fn args(&self) -> [Vec<u8>; 2] {
        let built = format!("{} {} {}", self.max_attempts, self.initial_ms, self.max_ms);
        let delays: Vec<String> = self
            .policy()
            .requeue_delays()
            .into_iter()
            .map(|d| ms(d).to_string())
            .collect();
        [built.into_bytes(), delays.join(",").into_bytes()]
    }
}

/// The script arguments for a policy, or for none (which the scripts answer with the channel's
/// settings).
pub(crate) fn args(settings: Option<&PolicySettings>) -> [Vec<u8>; 2] {
    settings.map_or([Vec::new(), Vec::new()], PolicySettings::args)
}

/// The channel's settings when `reply` says the policy given was not built from them.
pub(crate) fn stale(reply: &Value) -> Result<Option<PolicySettings>, super::BufferError> {
    let Value::Array(items) = reply else {
        return Ok(None);
    };
    if items.first().and_then(int) != Some(STALE) {
        return Ok(None);
    }
    let number = |i: usize| {
        items
            .get(i)
            .and_then(int)
            .ok_or_else(|| bad_reply("policy"))
    };
    Ok(Some(PolicySettings {
        max_attempts: u32::try_from(number(1)?).map_err(|_| bad_reply("policy"))?,
        initial_ms: u64::try_from(number(2)?).map_err(|_| bad_reply("policy"))?,
        max_ms: u64::try_from(number(3)?).map_err(|_| bad_reply("policy"))?,
    }))
}

/// The settings last seen per channel, bounded.
#[derive(Debug, Default)]
pub(crate) struct Policies {
    map: Mutex<HashMap<String, PolicySettings>>,
}

impl Policies {
    /// The settings of `channel`, if seen.
    pub(crate) fn get(&self, channel: &str) -> Option<PolicySettings> {
        self.lock().get(channel).copied()
    }

    /// Remembers the settings of `channel`.
    pub(crate) fn remember(&self, channel: &str, settings: PolicySettings) {
        let mut map = self.lock();
        if map.len() < MAX_CHANNELS || map.contains_key(channel) {
            map.insert(channel.to_owned(), settings);
        }
    }

    /// Forgets `channel`.
    pub(crate) fn forget(&self, channel: &str) {
        self.lock().remove(channel);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PolicySettings>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_name_the_stored_settings_and_list_the_delays() {
        let s = PolicySettings::of(&QueueSettings {
            max_delivery_attempts: 4,
            requeue_delay_initial: Duration::from_millis(100),
            requeue_delay_max: Duration::from_micros(250_900),
            ..QueueSettings::default()
        });
        let [built, delays] = args(Some(&s));
        assert_eq!(built, b"4 100 250");
        let delays: Vec<u64> = String::from_utf8(delays)
            .unwrap()
            .split(',')
            .map(|d| d.parse().unwrap())
            .collect();
        assert_eq!(delays.len(), 3, "{delays:?}");
        for (d, base) in delays.iter().zip([100u64, 200, 250]) {
            assert!(*d >= base * 8 / 10 && *d <= base * 12 / 10, "{d} vs {base}");
        }
        assert_eq!(args(None), [Vec::<u8>::new(), Vec::new()]);
    }

    #[test]
    fn a_stale_reply_gives_the_stored_settings() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![Value::Int(-2), bulk("3"), bulk("10"), bulk("20")]);
        let s = stale(&reply).unwrap().unwrap();
        assert_eq!(
            s,
            PolicySettings {
                max_attempts: 3,
                initial_ms: 10,
                max_ms: 20
            }
        );
        assert!(
            stale(&Value::Array(vec![Value::Int(-1)]))
                .unwrap()
                .is_none()
        );
        assert!(stale(&Value::Array(vec![Value::Int(-2), bulk("x")])).is_err());
    }

    #[test]
    fn known_settings_are_bounded() {
        let known = Policies::default();
        let s = PolicySettings {
            max_attempts: 1,
            initial_ms: 0,
            max_ms: 0,
        };
        for i in 0..MAX_CHANNELS + 10 {
            known.remember(&format!("c{i}"), s);
        }
        assert_eq!(known.lock().len(), MAX_CHANNELS);
        assert!(known.get("c0").is_some());
        known.forget("c0");
        assert!(known.get("c0").is_none());
    }
}
