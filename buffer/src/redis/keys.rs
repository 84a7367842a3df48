//! Key names of the Redis backend. Every name is written with its length before it, so no
//! channel or webhook id can produce another's key: `a` + `b.c` and `a.b` + `c` differ,
//! and `a` is never a prefix match of `a.b` or `a-b`.

/// Checks a key prefix: `^[A-Za-z0-9_.-]{1,64}$` (`docs/reference/config-formats.md` §2.3).
pub fn valid_prefix(prefix: &str) -> bool {
    (1..=64).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Base of every key of one channel. The braces make the channel's keys one Redis Cluster
/// hash slot.
pub(crate) fn channel_base(prefix: &str, channel: &str) -> String {
    format!("{prefix}:{{{}:{channel}}}", channel.len())
}

/// Key `x` of queue `queue` (mirrors `qk` in the scripts).
pub(crate) fn queue_key(base: &str, queue: &str, x: &str) -> String {
    format!("{base}:q:{}:{queue}:{x}", queue.len())
}

/// The keys a script is given (`KEYS[]`): first the channel's keys named in `channel` (the
/// first is always `meta`, which routes the call to the channel's node on a Redis Cluster),
/// then queue `queue`'s keys named in `queue_keys`. See `scripts.rs` for the layout.
pub(crate) fn script_keys(
    base: &str,
    channel: &[&str],
    queue: Option<(&str, &[&str])>,
) -> Vec<String> {
    let mut keys: Vec<String> = channel.iter().map(|x| format!("{base}:{x}")).collect();
    if let Some((q, xs)) = queue {
        keys.extend(xs.iter().map(|x| queue_key(base, q, x)));
    }
    keys
}

/// The set of all channel names (not in any channel's slot: written by plain commands, never
/// by a script).
pub(crate) fn channels_key(prefix: &str) -> String {
    format!("{prefix}:channels")
}

/// Pub/Sub channel on which every change that may let a waiting lease proceed is announced
/// (payload: the channel name), so instances wake each other.
pub(crate) fn wake_channel(prefix: &str) -> String {
    format!("{prefix}:wake")
}

/// Written by health checks.
pub(crate) fn health_key(prefix: &str) -> String {
    format!("{prefix}:health")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similar_names_get_distinct_keys_r64() {
        let a = channel_base("p", "a");
        let ab = channel_base("p", "a.b");
        let a_b = channel_base("p", "a-b");
        assert!(!ab.starts_with(&a) && !a_b.starts_with(&a));
        assert_ne!(
            queue_key(&channel_base("p", "a"), "b.c", "s"),
            queue_key(&channel_base("p", "a.b"), "c", "s")
        );
        assert_ne!(queue_key(&a, "x", "s"), queue_key(&a, "x.y", "s"));
        assert_eq!(queue_key(&a, "x", "s"), "p:{1:a}:q:1:x:s");
    }

    #[test]
    fn prefix_rules() {
        assert!(valid_prefix("webhook_connect"));
        assert!(valid_prefix("a.b-c_1"));
        assert!(!valid_prefix(""));
        assert!(!valid_prefix("a:b"));
        assert!(!valid_prefix("a*"));
        assert!(!valid_prefix(&"x".repeat(65)));
    }
}
